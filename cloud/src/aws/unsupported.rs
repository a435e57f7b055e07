//! Groups and load balancers on aws (Auto Scaling, ELBv2) arrive with
//! `roll`; until then every call says so instead of pretending.

use async_trait::async_trait;

use crate::error::{CloudError, Result};
use crate::groups::{GroupInfo, GroupSpec, Groups, TemplateVersion};
use crate::ids::{GroupName, ImageId, InstanceId, TargetGroupId};
use crate::lb::{LoadBalancers, Target, TargetStatus};

pub(crate) struct NotYet;

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
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
    async fn create_group(&self, _: &GroupSpec) -> Result<GroupInfo> {
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
    async fn set_image(&self, _: &GroupName, _: &ImageId) -> Result<TemplateVersion> {
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
    async fn set_desired(&self, _: &GroupName, _: u32) -> Result<()> {
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
    async fn terminate_instance(&self, _: &GroupName, _: &InstanceId, _: bool) -> Result<()> {
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
    async fn delete_group(&self, _: &GroupName) -> Result<()> {
        Err(no("groups (Auto Scaling arrives with roll)"))
    }
}

#[async_trait]
impl LoadBalancers for NotYet {
    async fn targets(&self, _: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        Err(no("load balancers (ELBv2 arrives with roll)"))
    }
    async fn register(&self, _: &TargetGroupId, _: &[Target]) -> Result<()> {
        Err(no("load balancers (ELBv2 arrives with roll)"))
    }
    async fn deregister(&self, _: &TargetGroupId, _: &[Target]) -> Result<()> {
        Err(no("load balancers (ELBv2 arrives with roll)"))
    }
}
