//! The aws backend: EC2 builders and AMIs, payloads and reports in S3, base
//! images from an AMI filter or an SSM parameter; groups as Auto Scaling
//! groups, load balancers as ELBv2. See README.md beside this file for the
//! flow, the API calls one bake and each group/load-balancer method make,
//! and how that compares with Packer's amazon-ebs builder.
//!
//! What this module owns:
//! - [`connect`]: the SDK configuration (region, `AWS_ENDPOINT_URL`, retries,
//!   timeouts) and one client per service, all sharing an [`ApiCalls`]
//!   counter.
//! - [`crate::Images`] on AMIs (`images.rs`), [`crate::Builders`] on EC2
//!   instances (`builders.rs`), [`crate::Janitor`] by the `kiln:bake` tag
//!   (`janitor.rs`).
//! - [`crate::Groups`] on Auto Scaling groups with numerically pinned
//!   launch-template versions (`groups.rs`, the launch-data copy in
//!   `template.rs`, the lease in `lease.rs`), [`crate::LoadBalancers`] on
//!   ELBv2 listeners and target groups (`lb.rs`), gates ([`crate::Probes`])
//!   by the target group's `/ready` health check or over the instance's
//!   private IP (`probe.rs`).
//!
//! Every resource a run creates carries `kiln:bake=<run>` and
//! `kiln:created=<rfc3339>` from its creation call (TagSpecifications, S3
//! object tagging), except EBS snapshots made by CreateImage, which are
//! tagged right after (moto answers 500 to a snapshot TagSpecification on
//! CreateImage; real EC2 accepts both).

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::wait::WaitParams;
use crate::{Cloud, CloudParts};

mod builders;
mod calls;
mod error;
mod groups;
mod images;
mod janitor;
mod lb;
mod lease;
mod probe;
mod refresh;
mod sdk;
pub mod setup;
mod template;
mod userdata;

pub use calls::ApiCalls;
pub use groups::{
    DUE_WITHIN_MS, HEARTBEAT_S, HOOK, PREVIOUS, ROLL_CREATED, SCHEDULE, STANDBY_SUSPENDED,
};
pub use lease::{LEASE, LEASE_HOLDER, RENEW_EVERY, TTL as LEASE_TTL};
pub use probe::{AwsGate, HEALTH_GATE};
pub use userdata::{EMULATOR_POWEROFF_ENV, EMULATOR_ROOT_ENV};

pub const BACKEND: &str = "aws";

/// Tracing directives that keep the SDK's own logs at WARN; binaries add
/// them to their default filter.
pub const QUIET_SDK_LOGS: &str = "aws_config=warn,aws_smithy_runtime=warn,\
aws_smithy_runtime_api=warn,aws_smithy_http_client=warn,aws_sdk_ec2=warn,aws_sdk_s3=warn,\
aws_sdk_ssm=warn,aws_sdk_autoscaling=warn,aws_sdk_elasticloadbalancingv2=warn,\
aws_sdk_cloudwatch=warn,aws_sigv4=warn,hyper=warn,hyper_util=warn,rustls=warn";

/// S3 key prefix for everything kiln writes: run scratch objects under
/// `runs/<run>/`, image manifests under `images/`.
pub const KEY_PREFIX: &str = "kiln/";

/// How to reach AWS. Everything unset falls back to the SDK's usual
/// sources (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance roles).
#[derive(Debug, Clone)]
pub struct AwsOptions {
    pub region: Option<String>,
    /// Overrides `AWS_ENDPOINT_URL` (tests point this at moto). When any
    /// endpoint override is in force, S3 uses path-style addressing.
    pub endpoint_url: Option<String>,
    /// Static keys (access key id, secret) instead of the default chain.
    pub static_credentials: Option<(String, String)>,
    /// The bucket for payloads, reports and image manifests.
    pub bucket: Option<String>,
    /// Create the bucket if it is missing (off by default: a typo in a
    /// bucket name should fail, not create a stray bucket).
    pub create_bucket: bool,
    /// SDK retries (standard mode). Tests turn them off: a moto 500 means
    /// "not emulated", and retrying only hides it.
    pub retries: bool,
    pub wait: WaitParams,
    /// Lifetime of the presigned payload and report URLs: long enough for
    /// a builder to boot and install.
    pub presign_ttl: Duration,
    /// How new instances are gated (see `probe.rs`).
    pub gate: AwsGate,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            region: None,
            endpoint_url: None,
            static_credentials: None,
            bucket: None,
            create_bucket: false,
            retries: true,
            wait: WaitParams::CLOUD,
            presign_ttl: Duration::from_secs(2 * 3600),
            gate: AwsGate::default(),
        }
    }
}

/// Connects (loads configuration; no API call yet) and returns the aws
/// [`Cloud`] plus the counter of API calls its clients make.
pub async fn connect(opts: AwsOptions) -> Result<(Cloud, ApiCalls)> {
    let gate = opts.gate;
    let ctx = Arc::new(sdk::Ctx::load(opts).await?);
    let calls = ctx.calls.clone();
    let cloud = Cloud::new(CloudParts {
        backend: BACKEND,
        region: ctx.region.clone(),
        images: Arc::new(images::AwsImages::new(ctx.clone())),
        builders: Arc::new(builders::AwsBuilders::new(ctx.clone())),
        groups: Arc::new(groups::AwsGroups::new(ctx.clone())),
        lbs: Arc::new(lb::AwsLoadBalancers::new(ctx.clone())),
        probes: Arc::new(probe::AwsProbes::new(ctx.clone(), gate)),
        janitor: Arc::new(janitor::AwsJanitor::new(ctx.clone())),
        wait: ctx.wait,
    });
    let counter = calls.clone();
    let cloud = cloud.with_api_calls(Arc::new(move || counter.snapshot()));
    Ok((cloud, calls))
}
