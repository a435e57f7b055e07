//! The fleet daemon's state, as persisted in `fleet/state.json` (written
//! atomically after every change): groups with their instances and
//! template history, listeners with their target groups and the targets
//! registered in them. Health and in-flight counts live in the balancer;
//! the last known health is saved with each target so a restarted daemon
//! keeps serving through healthy targets at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CloudError, Result};
use crate::groups::{GroupInfo, GroupInstance, Lifecycle, ScheduledDesired, TemplateVersion};
use crate::ids::{GroupName, ImageId, InstanceId, ListenerId, Tags, TargetGroupId};
use crate::instances::InstanceState;
use crate::lb::ListenerSpec;
use crate::state::write_atomically;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    pub groups: BTreeMap<GroupName, GroupRec>,
    pub listeners: BTreeMap<ListenerId, ListenerRec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRec {
    pub name: GroupName,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub current: TemplateVersion,
    pub previous: Vec<TemplateVersion>,
    pub target_group: Option<TargetGroupId>,
    pub tags: Tags,
    pub hold_launches: bool,
    pub scheduled: Option<ScheduledDesired>,
    pub instances: Vec<InstanceRec>,
    /// Launches that died before going in service, in a row: new
    /// launches back off (1 s doubling to 60 s) so a broken image does not
    /// spin.
    #[serde(default)]
    pub failed_launches: u32,
    #[serde(default)]
    pub next_launch_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRec {
    pub id: InstanceId,
    pub image: ImageId,
    /// Chosen when the launch has unpacked the image (its port is the
    /// image's).
    pub address: Option<SocketAddr>,
    pub launched_ms: u64,
    pub lifecycle: Lifecycle,
    pub launch_error: Option<String>,
    /// The process group; `None` while the launch is still unpacking.
    pub pgid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRec {
    pub spec: ListenerSpec,
    /// Where it is bound (the spec may ask for port 0).
    pub bound: SocketAddr,
    pub admin_bound: Option<SocketAddr>,
    pub forward: TargetGroupId,
    /// A weighted forward: this target group gets this percent (1..=99)
    /// of new requests, `forward` the rest; a restarted daemon splits
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<(TargetGroupId, u32)>,
    /// Registered targets by target group (draining ones are the
    /// balancer's business and not persisted: after a restart they are
    /// simply gone).
    pub targets: BTreeMap<TargetGroupId, Vec<TargetRec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRec {
    pub instance: InstanceId,
    pub address: SocketAddr,
    /// Last known health: a restarted daemon registers it healthy again.
    pub healthy: bool,
}

impl Model {
    pub fn load(path: &Path) -> Result<Model> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let m: Model = serde_json::from_slice(&bytes).map_err(|e| CloudError::Corrupt {
                    path: path.to_owned(),
                    why: e.to_string(),
                })?;
                if m.format != FORMAT {
                    return Err(CloudError::Corrupt {
                        path: path.to_owned(),
                        why: format!("format {} (this kiln reads {FORMAT})", m.format),
                    });
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Model {
                format: FORMAT,
                ..Model::default()
            }),
            Err(e) => Err(CloudError::io("read", path, e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| CloudError::Corrupt {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        write_atomically(path, &json)
    }

    /// The listener that owns a target group.
    pub fn listener_of(&self, tg: &TargetGroupId) -> Option<&ListenerRec> {
        self.listeners
            .values()
            .find(|l| l.spec.target_groups.contains(tg))
    }

    pub fn listener_of_mut(&mut self, tg: &TargetGroupId) -> Option<&mut ListenerRec> {
        self.listeners
            .values_mut()
            .find(|l| l.spec.target_groups.contains(tg))
    }

    /// An instance of any group, with its group's name.
    pub fn instance(&self, id: &InstanceId) -> Option<(&GroupName, &InstanceRec)> {
        self.groups.values().find_map(|g| {
            g.instances
                .iter()
                .find(|i| &i.id == id)
                .map(|i| (&g.name, i))
        })
    }
}

impl GroupRec {
    pub fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.name.clone(),
            desired: self.desired,
            min: self.min,
            max: self.max,
            current: self.current.clone(),
            previous: self.previous.clone(),
            instances: self.instances.iter().map(InstanceRec::info).collect(),
            target_group: self.target_group.clone(),
            tags: self.tags.clone(),
            hold_launches: self.hold_launches,
            scheduled: self.scheduled,
        }
    }

    /// Instances that count towards desired (not being stopped).
    pub fn live(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .count()
    }

    pub fn instance_mut(&mut self, id: &InstanceId) -> Option<&mut InstanceRec> {
        self.instances.iter_mut().find(|i| &i.id == id)
    }
}

impl InstanceRec {
    pub fn candidate(&self) -> crate::groups::ScaleInCandidate<'_> {
        crate::groups::ScaleInCandidate {
            id: &self.id,
            lifecycle: self.lifecycle,
            image: &self.image,
            launched_ms: self.launched_ms,
        }
    }

    pub fn info(&self) -> GroupInstance {
        GroupInstance {
            id: self.id.clone(),
            image: self.image.clone(),
            state: match (self.lifecycle, self.pgid) {
                (Lifecycle::Terminating, _) => InstanceState::ShuttingDown,
                (_, None) => InstanceState::Pending,
                _ => InstanceState::Running,
            },
            lifecycle: self.lifecycle,
            address: self.address,
            launched_ms: self.launched_ms,
            launch_error: self.launch_error.clone(),
        }
    }
}
