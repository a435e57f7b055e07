//! Groups, load balancers and gates on aws (Auto Scaling, ELBv2, a test
//! listener) arrive with roll's aws issue; until then every call says so
//! instead of pretending.

use async_trait::async_trait;

use crate::error::{CloudError, Result};
use crate::groups::{
    GroupInfo, GroupInstance, GroupSpec, Groups, Lease, LeaseHolder, ScheduledDesired,
    TemplateVersion,
};
use crate::ids::{GroupName, ImageId, InstanceId, ListenerId, Tags, TargetGroupId};
use crate::lb::{ListenerInfo, ListenerSpec, LoadBalancers, Target, TargetGroupInfo, TargetStatus};
use crate::probe::{GateOutcome, GateSpec, Probes};

pub(crate) struct NotYet;

const GROUPS: &str = "groups (Auto Scaling arrives with roll on aws)";
const LBS: &str = "load balancers (ELBv2 arrives with roll on aws)";

fn no(op: &'static str) -> CloudError {
    CloudError::Unsupported {
        backend: super::BACKEND,
        op,
    }
}

#[async_trait]
impl Groups for NotYet {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        // Nothing can use an image through a group kiln cannot see yet;
        // an empty list keeps `bake prune` usable (it protects nothing
        // more than it would without groups).
        Ok(Vec::new())
    }
    async fn describe_group(&self, _: &GroupName) -> Result<GroupInfo> {
        Err(no(GROUPS))
    }
    async fn create_group(&self, _: &GroupSpec) -> Result<GroupInfo> {
        Err(no(GROUPS))
    }
    async fn set_image(&self, _: &GroupName, _: &ImageId) -> Result<TemplateVersion> {
        Err(no(GROUPS))
    }
    async fn set_desired(&self, _: &GroupName, _: u32) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn set_limits(&self, _: &GroupName, _: u32, _: u32) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn terminate_instance(&self, _: &GroupName, _: &InstanceId, _: bool) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn delete_group(&self, _: &GroupName) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn tag_group(&self, _: &GroupName, _: &Tags, _: &[String]) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn hold_launches(&self, _: &GroupName, _: bool) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn put_in_service(&self, _: &GroupName, _: &InstanceId) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn schedule_desired(&self, _: &GroupName, _: Option<ScheduledDesired>) -> Result<()> {
        Err(no(GROUPS))
    }
    async fn acquire_lease(&self, _: &GroupName, _: &LeaseHolder) -> Result<Box<dyn Lease>> {
        Err(no(GROUPS))
    }
}

#[async_trait]
impl LoadBalancers for NotYet {
    async fn targets(&self, _: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        Err(no(LBS))
    }
    async fn register(&self, _: &TargetGroupId, _: &[Target]) -> Result<()> {
        Err(no(LBS))
    }
    async fn deregister(&self, _: &TargetGroupId, _: &[Target]) -> Result<()> {
        Err(no(LBS))
    }
    async fn target_group(&self, _: &TargetGroupId) -> Result<TargetGroupInfo> {
        Err(no(LBS))
    }
    async fn create_listener(&self, _: &ListenerSpec) -> Result<ListenerInfo> {
        Err(no(LBS))
    }
    async fn delete_listener(&self, _: &ListenerId) -> Result<()> {
        Err(no(LBS))
    }
    async fn listener(&self, _: &ListenerId) -> Result<ListenerInfo> {
        Err(no(LBS))
    }
    async fn switch(&self, _: &ListenerId, _: &TargetGroupId) -> Result<()> {
        Err(no(LBS))
    }
}

#[async_trait]
impl Probes for NotYet {
    async fn gate(&self, _: &GroupInstance, _: &GateSpec) -> Result<GateOutcome> {
        Err(no("gates (a test listener arrives with roll on aws)"))
    }
}
