//! `searchd serve`: the HTTP server (see [`crate::server`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file to serve.
    #[arg(long, value_name = "PATH")]
    pub snapshot: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

pub fn run(args: Args) -> u8 {
    super::fail(
        exit::FAILURE,
        format!("serve is not built yet ({})", args.listen),
    )
}
