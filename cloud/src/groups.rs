//! Groups: a set of identical instances launched from one image (aws: an
//! Auto Scaling group with a launch template; local: supervised processes).
//! `roll` drives these; `bake prune` reads them to keep images in use.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{GroupName, ImageId, InstanceId, TargetGroupId};
use crate::instances::InstanceState;

/// One launch-template version: which image new instances boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u64,
    pub image: ImageId,
    pub created_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInstance {
    pub id: InstanceId,
    /// The image it actually runs (on aws, compare this, not the template
    /// version the group reports).
    pub image: ImageId,
    pub state: InstanceState,
    pub address: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: GroupName,
    pub desired: u32,
    /// The version new instances launch from.
    pub current: TemplateVersion,
    /// Earlier versions, newest first (rollback targets).
    pub previous: Vec<TemplateVersion>,
    pub instances: Vec<GroupInstance>,
    pub target_group: Option<TargetGroupId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: GroupName,
    pub image: ImageId,
    pub desired: u32,
    pub target_group: Option<TargetGroupId>,
}

#[async_trait]
pub trait Groups: Send + Sync {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>>;

    /// [`crate::CloudError::NotFound`] if there is no such group.
    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo>;

    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo>;

    /// Makes `image` the group's desired image (aws: a new launch template
    /// version, set as default, full data — moto ignores SourceVersion).
    /// Running instances are not touched.
    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion>;

    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()>;

    /// Terminates one member; `decrement` lowers desired capacity with it
    /// (else the group replaces it).
    async fn terminate_instance(
        &self,
        name: &GroupName,
        id: &InstanceId,
        decrement: bool,
    ) -> Result<()>;

    async fn delete_group(&self, name: &GroupName) -> Result<()>;
}

/// Images `bake prune` must keep: every group's current image, the images
/// its instances run, and its `rollback_versions` most recent previous
/// versions (the rollback window). Pure.
pub fn protected_images(groups: &[GroupInfo], rollback_versions: usize) -> BTreeSet<ImageId> {
    let mut keep = BTreeSet::new();
    for g in groups {
        keep.insert(g.current.image.clone());
        keep.extend(g.instances.iter().map(|i| i.image.clone()));
        keep.extend(
            g.previous
                .iter()
                .take(rollback_versions)
                .map(|v| v.image.clone()),
        );
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64, img: &str) -> TemplateVersion {
        TemplateVersion {
            version: n,
            image: ImageId::from(img),
            created_unix: n,
        }
    }

    #[test]
    fn keeps_current_instances_and_window() {
        let g = GroupInfo {
            name: GroupName::from("web"),
            desired: 1,
            current: v(4, "d"),
            previous: vec![v(3, "c"), v(2, "b"), v(1, "a")],
            instances: vec![GroupInstance {
                id: InstanceId::from("i-1"),
                image: ImageId::from("x"),
                state: InstanceState::Running,
                address: None,
            }],
            target_group: None,
        };
        let keep: Vec<String> = protected_images(&[g], 2).into_iter().map(|i| i.0).collect();
        assert_eq!(keep, vec!["b", "c", "d", "x"]);
    }
}
