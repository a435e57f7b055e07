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
    // The control plane (requests, reconciling, gates) is light: one
    // thread. The balancers get a runtime of their own (two workers),
    // made by the daemon.
    let rt = match tokio::runtime::Builder::new_current_thread()
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
