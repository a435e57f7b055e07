use std::process::ExitCode;

use clap::Parser;
use searchd::cmd::{Cli, run};

fn main() -> ExitCode {
    // clap exits by itself on flags it refuses (2, `exit::USAGE`) and after
    // --help/--version (0); every other code comes from `run`, which maps
    // the subcommand's error to its code (`Error::exit_code`).
    ExitCode::from(run(Cli::parse()))
}
