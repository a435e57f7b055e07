use std::process::ExitCode;

use clap::Parser;
use searchd::cmd::{Cli, run};

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse()))
}
