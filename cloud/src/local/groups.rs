//! Local groups, minimal until `roll` brings the fleet daemon: a group is
//! `groups/<name>.json` recording its launch-template history and desired
//! size. Enough for `bake prune` to know which images are in use.

use async_trait::async_trait;

use super::{BACKEND, LocalCloud};
use crate::error::{CloudError, Result};
use crate::groups::{GroupInfo, GroupSpec, Groups, TemplateVersion};
use crate::ids::{GroupName, ImageId, InstanceId};
use crate::state::write_atomically;
use crate::time::now_unix;

impl LocalCloud {
    fn group_path(&self, name: &GroupName) -> Result<std::path::PathBuf> {
        let ok = !name.as_str().is_empty()
            && name
                .as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(CloudError::invalid(
                "group name",
                format!("{name:?}: use letters, digits, '-' and '_'"),
            ));
        }
        Ok(self
            .state
            .path("groups")
            .join(format!("{}.json", name.as_str())))
    }

    fn read_group(&self, name: &GroupName) -> Result<GroupInfo> {
        let path = self.group_path(name)?;
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CloudError::not_found(
                    "group",
                    name,
                    self.state.root().display(),
                ));
            }
            Err(e) => return Err(CloudError::io("read", &path, e)),
        };
        serde_json::from_slice(&text).map_err(|e| CloudError::Corrupt {
            path,
            why: e.to_string(),
        })
    }

    fn write_group(&self, g: &GroupInfo) -> Result<()> {
        let path = self.group_path(&g.name)?;
        let json = serde_json::to_vec_pretty(g).map_err(|e| CloudError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_atomically(&path, &json)
    }
}

#[async_trait]
impl Groups for LocalCloud {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let dir = self.state.path("groups");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| CloudError::io("read", &dir, e))? {
            let e = e.map_err(|e| CloudError::io("read", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".json")
                && !n.starts_with('.')
            {
                out.push(self.read_group(&GroupName::from(n))?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo> {
        self.read_group(name)
    }

    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        let _lock = self.state.lock()?;
        match self.read_group(&spec.name) {
            Ok(g) => return Ok(g),
            Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let g = GroupInfo {
            name: spec.name.clone(),
            desired: spec.desired,
            current: TemplateVersion {
                version: 1,
                image: spec.image.clone(),
                created_unix: now_unix(),
            },
            previous: Vec::new(),
            instances: Vec::new(),
            target_group: spec.target_group.clone(),
        };
        self.write_group(&g)?;
        Ok(g)
    }

    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion> {
        let _lock = self.state.lock()?;
        let mut g = self.read_group(name)?;
        let v = TemplateVersion {
            version: g.current.version + 1,
            image: image.clone(),
            created_unix: now_unix(),
        };
        let old = std::mem::replace(&mut g.current, v.clone());
        g.previous.insert(0, old);
        self.write_group(&g)?;
        Ok(v)
    }

    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()> {
        let _lock = self.state.lock()?;
        let mut g = self.read_group(name)?;
        g.desired = desired;
        self.write_group(&g)
    }

    async fn terminate_instance(
        &self,
        _name: &GroupName,
        _id: &InstanceId,
        _decrement: bool,
    ) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: BACKEND,
            op: "group instances (yet)",
        })
    }

    async fn delete_group(&self, name: &GroupName) -> Result<()> {
        let path = self.group_path(name)?;
        let _lock = self.state.lock()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CloudError::io("remove", &path, e)),
        }
    }
}
