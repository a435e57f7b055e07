use std::process::ExitCode;

use bake::cmd::{Cli, run};
use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse()))
}
