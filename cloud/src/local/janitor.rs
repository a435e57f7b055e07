//! Local leftovers: everything under the state dir that names a run whose
//! lock is free (the run ended or was killed). Ids are paths relative to the
//! state dir, except builders, which are instance ids (removing one
//! terminates it: kill its process group, then delete its root), and
//! images: an image still `baking` (`kiln:state`) whose run is dead never
//! finished its bake; removing it checks that again under the state lock.

use std::path::{Component, Path};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::LocalCloud;
use super::images::MANIFEST;
use crate::error::{CloudError, Result};
use crate::ids::{ImageId, InstanceId, Region, RunId};
use crate::images::BakeState;
use crate::instances::Builders;
use crate::sweep::{Janitor, Leftover, ResourceKind};

fn age(path: &Path) -> Duration {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

fn names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| CloudError::io("read", dir, e))? {
        let e = e.map_err(|e| CloudError::io("read", dir, e))?;
        v.push(e.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

impl LocalCloud {
    fn dead(&self, run: &RunId) -> bool {
        !self.state.run_alive(run)
    }
}

#[async_trait]
impl Janitor for LocalCloud {
    async fn leftovers(&self, older_than: Duration, regions: &[Region]) -> Result<Vec<Leftover>> {
        if !regions.is_empty() {
            return Err(CloudError::Unsupported {
                backend: super::BACKEND,
                op: "other regions (local images are never copied)",
            });
        }
        let root = self.state.root().to_owned();
        let mut out = Vec::new();
        let mut push = |kind, id: String, run: Option<RunId>, path: &Path| {
            let age = age(path);
            if age >= older_than {
                out.push(Leftover {
                    kind,
                    id,
                    run,
                    age,
                    region: None,
                });
            }
        };

        for name in names(&root.join("builders"))? {
            let path = root.join("builders").join(&name);
            match name.split_once("--") {
                Some((run, id)) => {
                    let run = RunId::from(run);
                    if self.dead(&run) {
                        push(ResourceKind::Instance, id.to_owned(), Some(run), &path);
                    }
                }
                // Not a name launch_builder makes: remove by age alone.
                None => push(ResourceKind::Dir, format!("builders/{name}"), None, &path),
            }
        }
        for name in names(&root.join("tmp"))? {
            let run = RunId::new(name.clone());
            if self.dead(&run) {
                let path = root.join("tmp").join(&name);
                push(ResourceKind::Dir, format!("tmp/{name}"), Some(run), &path);
            }
        }
        for name in names(&root.join("images"))? {
            let path = root.join("images").join(&name);
            if let Some(rest) = name.strip_prefix(".tmp-") {
                let run = RunId::new(rest.rsplit_once('-').map_or(rest, |(r, _)| r));
                if self.dead(&run) {
                    push(
                        ResourceKind::Dir,
                        format!("images/{name}"),
                        Some(run),
                        &path,
                    );
                }
            } else if name.starts_with(".trash-") {
                push(ResourceKind::Dir, format!("images/{name}"), None, &path);
            }
        }
        // Images whose bake never finished: a complete (or unmarked) one is
        // a release, whatever its run.
        for m in self.all_manifests()? {
            let run = super::images::run_of(&m);
            if BakeState::of(&m.tags) == BakeState::Baking && self.dead(&run) {
                let path = root.join("images").join(m.id.as_str()).join(MANIFEST);
                push(ResourceKind::Image, m.id.to_string(), Some(run), &path);
            }
        }
        // Run locks last: they are what marks the rest as alive.
        for run in self.state.runs()? {
            if self.dead(&run) {
                let path = self.state.run_lock_path(&run);
                push(
                    ResourceKind::File,
                    format!("runs/{run}.lock"),
                    Some(run),
                    &path,
                );
            }
        }
        Ok(out)
    }

    async fn remove(&self, item: &Leftover) -> Result<()> {
        if let Some(r) = &item.region {
            return Err(CloudError::invalid(
                "leftover",
                format!(
                    "{:?} {} is in region {r}; local has none",
                    item.kind, item.id
                ),
            ));
        }
        match item.kind {
            ResourceKind::Instance => self.terminate(&InstanceId::new(item.id.clone())).await,
            ResourceKind::Image => {
                self.deregister_unfinished(&ImageId::new(item.id.clone()), item.run.as_ref())
            }
            ResourceKind::Dir | ResourceKind::File => {
                let rel = Path::new(&item.id);
                if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                    return Err(CloudError::invalid(
                        "leftover",
                        format!("{}: not a path inside the state dir", item.id),
                    ));
                }
                let path = self.state.root().join(rel);
                let r = if item.kind == ResourceKind::Dir {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match r {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(CloudError::io("remove", &path, e)),
                }
            }
            _ => Err(CloudError::invalid(
                "leftover",
                format!("{:?} {} is not a local resource", item.kind, item.id),
            )),
        }
    }
}
