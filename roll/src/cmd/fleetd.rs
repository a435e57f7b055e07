//! `roll fleetd` (hidden): the local fleet daemon, started by roll itself
//! in the background when a call needs it. It runs until the state dir
//! serves no group and no listener (`roll down`), or SIGTERM.

use super::{Global, fail};
use crate::error::RollError;
use crate::exit;

pub fn run(global: &Global) -> u8 {
    let state = match cloud::StateDir::open(&global.state_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e.into()),
    };
    // Two workers: the balancer's data path and the daemon's control work.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&RollError::Io {
                what: "cannot start the runtime".into(),
                source: e,
            });
        }
    };
    match rt.block_on(cloud::local::fleet::run(state)) {
        Ok(_) => exit::OK,
        Err(e) => fail(&e.into()),
    }
}
