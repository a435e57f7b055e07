use std::process::ExitCode;

use clap::Parser;
use roll::cmd::{Cli, run};

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse()))
}
