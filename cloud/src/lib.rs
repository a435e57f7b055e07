//! cloud: kiln's provider seam.
//!
//! One small async trait per thing a cloud offers — [`Images`],
//! [`Builders`], [`Groups`], [`LoadBalancers`] and the [`Janitor`] that
//! sweeps up after crashed runs — with typed ids ([`ImageId`],
//! [`InstanceId`], [`RunId`]…) and one error type ([`CloudError`]) whose
//! variants name the resource and where it was looked for. A [`Cloud`]
//! bundles one backend's implementations; `bake` and `roll` only ever see
//! the traits.
//!
//! Backends: [`local`] (the default; images, builders and groups are files
//! and processes under a [`StateDir`]) and `aws` (behind the `aws` feature,
//! in `src/aws/`). Both are held to the same behaviour by [`conformance`].
//! For tests there is a third: `fake` (feature `fake`), an in-memory
//! scripted fleet on tokio's clock, held to the local fleet's behaviour by
//! `conformance::fleet`.
//!
//! Rules every backend follows (see README.md for the full contract):
//! - Every resource a run creates is tagged with the run id *at creation*
//!   ([`tags::RUN`]), so cleanup and [`Janitor`] can find it after a crash.
//! - Lookups are idempotent and come before creation; deletes are
//!   idempotent (deleting what is gone is `Ok`).
//! - Nothing sleeps on its own: waiting goes through [`wait::wait_until`]
//!   with explicit [`WaitParams`], on tokio's clock.
//! - Methods do one API-sized thing; decisions (what to prune, whether to
//!   bake) are pure functions in the callers or in this crate.

use std::sync::Arc;

#[cfg(feature = "aws")]
pub mod aws;
pub mod error;
pub mod groups;
pub mod http;
pub mod ids;
pub mod images;
pub mod instances;
pub mod lb;
pub mod local;
pub mod probe;
pub mod run;
pub mod state;
pub mod sweep;
pub mod time;
pub mod wait;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use error::{CloudError, Result};
pub use groups::{
    GroupInfo, GroupInstance, GroupSpec, Groups, Lease, LeaseHolder, Lifecycle, RefreshId,
    RefreshSpec, RefreshState, RefreshStatus, ScaleInCandidate, ScheduledDesired, TemplateVersion,
    image_uses, protected_images, scale_in_victims,
};
pub use ids::{
    AccountId, GroupName, ImageId, InstanceId, ListenerId, Region, RunId, Tags, TargetGroupId, tags,
};
pub use images::{
    BakeState, BaseImage, BaseSelector, CopySpec, FileRecord, GoldenRecord, ImageInfo,
    ImageManifest, ImageSpec, ImageState, Images, IndexRecord, MANIFEST_FORMAT, RootfsRecord,
};
pub use instances::{BuildReport, BuilderSettings, BuilderSpec, Builders, InstanceState, Payload};
pub use lb::{
    HealthCheck, LatencySummary, LbCounters, ListenerInfo, ListenerSpec, LoadBalancers,
    ShadowExample, ShadowReport, ShadowSpec, Target, TargetCounters, TargetGroupInfo, TargetHealth,
    TargetStatus, TlsFiles,
};
pub use probe::{GateOutcome, GateSpec, Probes};
pub use state::{RunGuard, StateDir};
pub use sweep::{Janitor, Leftover, ResourceKind};
pub use wait::{WaitParams, wait_consecutive, wait_until};

/// One backend's implementations of every trait, cheap to clone.
#[derive(Clone)]
pub struct Cloud {
    backend: &'static str,
    region: Region,
    images: Arc<dyn Images>,
    builders: Arc<dyn Builders>,
    groups: Arc<dyn Groups>,
    lbs: Arc<dyn LoadBalancers>,
    probes: Arc<dyn Probes>,
    janitor: Arc<dyn Janitor>,
    wait: WaitParams,
    api_calls: Option<ApiCallCounter>,
}

/// Reads a backend's count of provider API calls so far, by operation
/// (`EC2.RunInstances` → 1). Set with [`Cloud::with_api_calls`].
pub type ApiCallCounter = Arc<dyn Fn() -> std::collections::BTreeMap<String, u64> + Send + Sync>;

/// What a backend hands to [`Cloud::new`].
pub struct CloudParts {
    /// `"local"` or `"aws"`: shown to users and recorded in results.
    pub backend: &'static str,
    pub region: Region,
    pub images: Arc<dyn Images>,
    pub builders: Arc<dyn Builders>,
    pub groups: Arc<dyn Groups>,
    pub lbs: Arc<dyn LoadBalancers>,
    pub probes: Arc<dyn Probes>,
    pub janitor: Arc<dyn Janitor>,
    /// How this backend's waits should poll by default.
    pub wait: WaitParams,
}

impl Cloud {
    pub fn new(parts: CloudParts) -> Cloud {
        Cloud {
            backend: parts.backend,
            region: parts.region,
            images: parts.images,
            builders: parts.builders,
            groups: parts.groups,
            lbs: parts.lbs,
            probes: parts.probes,
            janitor: parts.janitor,
            wait: parts.wait,
            api_calls: None,
        }
    }

    /// Attaches a counter of the provider API calls this cloud makes (the
    /// aws backend's SDK interceptor), reported by `bake --json`.
    pub fn with_api_calls(mut self, counter: ApiCallCounter) -> Cloud {
        self.api_calls = Some(counter);
        self
    }

    /// API calls made so far, by operation; empty for backends that make
    /// none (local).
    pub fn api_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.api_calls.as_ref().map(|f| f()).unwrap_or_default()
    }

    /// The local backend on `state`.
    pub fn local(state: &StateDir) -> Cloud {
        local::LocalCloud::new(state.clone()).into_cloud()
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }
    pub fn region(&self) -> &Region {
        &self.region
    }
    pub fn images(&self) -> &dyn Images {
        self.images.as_ref()
    }
    pub fn builders(&self) -> &dyn Builders {
        self.builders.as_ref()
    }
    pub fn groups(&self) -> &dyn Groups {
        self.groups.as_ref()
    }
    pub fn lbs(&self) -> &dyn LoadBalancers {
        self.lbs.as_ref()
    }
    pub fn probes(&self) -> &dyn Probes {
        self.probes.as_ref()
    }
    pub fn janitor(&self) -> &dyn Janitor {
        self.janitor.as_ref()
    }
    pub fn wait_params(&self) -> WaitParams {
        self.wait
    }
}
