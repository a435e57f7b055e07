//! The janitor: finds and removes what crashed runs left behind (`bake gc`).
//! Every resource a run creates carries the run id (aws: the `kiln:bake`
//! tag at creation; local: the run id in its name or a marker file).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{Region, RunId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    Image,
    Snapshot,
    SecurityGroup,
    KeyPair,
    Object,
    /// Local: a builder root, partial image or temp directory.
    Dir,
    /// Local: a stale lock or temp file.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    pub kind: ResourceKind,
    /// Backend-specific id or path.
    pub id: String,
    pub run: Option<RunId>,
    pub age: Duration,
    /// Where it is when that is not the backend's own region (aws: an
    /// image copy and its snapshots in another region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

#[async_trait]
pub trait Janitor: Send + Sync {
    /// Resources of runs that are no longer alive and older than
    /// `older_than`, in the backend's own region, in the regions an
    /// unfinished image names ([`crate::tags::COPIES`]) and in `regions`
    /// (where [`crate::Images::copy_to_region`] may have put copies; a
    /// backend without regions refuses a non-empty list as
    /// [`crate::CloudError::Unsupported`]). An image still
    /// [`crate::tags::STATE_BAKING`] is one (with its snapshots and
    /// copies) once its run is dead; a complete one never is. Local knows
    /// liveness (a run holds a lock while it runs); aws only knows age, so
    /// pick `older_than` longer than a bake.
    async fn leftovers(&self, older_than: Duration, regions: &[Region]) -> Result<Vec<Leftover>>;

    /// Removes one leftover, in its region. Idempotent.
    async fn remove(&self, item: &Leftover) -> Result<()>;
}
