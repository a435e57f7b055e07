//! The local backend: a cloud made of files and processes under a
//! [`StateDir`]. Images are content-addressed directories, a builder is a
//! throwaway root directory plus the install script running as a child
//! process group, and groups and load balancers are the fleet daemon's
//! ([`fleet`]): searchd processes behind a real reverse proxy.
//!
//! Immutability: an image directory is written under a temporary name
//! (`images/.tmp-<run>-…`), fsynced, and renamed into place; only its tags
//! (in `manifest.json`, rewritten atomically) ever change afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::{InstanceId, Region};
use crate::state::StateDir;
use crate::wait::WaitParams;
use crate::{Cloud, CloudParts};

mod builders;
pub mod fleet;
mod images;
mod janitor;
pub mod pack;

pub use builders::HOLD_ENV;

pub const BACKEND: &str = "local";
pub const REGION: &str = "local";

/// A running local builder this process launched.
struct Child {
    process: tokio::process::Child,
    // Held for the builder's life; also inherited by its processes (as
    // their stdin), so the lock outlives us if we are killed.
    _lock: std::fs::File,
}

pub struct LocalCloud {
    state: StateDir,
    children: Mutex<HashMap<InstanceId, Child>>,
    fleet: fleet::FleetClient,
}

impl LocalCloud {
    /// The local backend; groups and load balancers are read from the
    /// fleet's persisted state unless a daemon runs (see
    /// [`LocalCloud::with_fleet_daemon`]).
    pub fn new(state: StateDir) -> LocalCloud {
        LocalCloud {
            fleet: fleet::FleetClient::new(state.clone(), None),
            state,
            children: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the fleet daemon with `cmd` when a call needs it and none
    /// runs (roll passes its own executable).
    pub fn with_fleet_daemon(mut self, cmd: fleet::DaemonCommand) -> LocalCloud {
        self.fleet = fleet::FleetClient::new(self.state.clone(), Some(cmd));
        self
    }

    pub fn fleet(&self) -> &fleet::FleetClient {
        &self.fleet
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    pub fn into_cloud(self) -> Cloud {
        let me = Arc::new(self);
        Cloud::new(CloudParts {
            backend: BACKEND,
            region: Region::from(REGION),
            images: me.clone(),
            builders: me.clone(),
            groups: me.clone(),
            lbs: me.clone(),
            probes: me.clone(),
            janitor: me,
            wait: WaitParams::LOCAL,
        })
    }
}
