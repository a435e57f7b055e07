//! Local images: `images/<id>/{rootfs.tar.zst,manifest.json}`.
//! The id is `img-` + 24 hex digits of sha256(rootfs sha256, input digest):
//! the same content baked for the same inputs is the same image.
//!
//! So a bake may create an image that exists already. A finished one
//! (`kiln:state` complete, or unmarked) stays as it is: it belongs to the
//! run that made it. An unfinished one (`baking`) of a dead run becomes the
//! new run's (its manifest is replaced; the rootfs is the same bytes); one
//! of a live run is refused (`Locked`): another bake of the same inputs is
//! making it right now. All of that under the state lock, which `bake gc`
//! also takes before removing a dead run's `baking` image, after checking
//! again that it still is one.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{BACKEND, LocalCloud, REGION, pack};
use crate::error::{CloudError, Result};
use crate::ids::{AccountId, ImageId, InstanceId, Region, RunId, Tags, tags};
use crate::images::{
    BakeState, BaseImage, BaseSelector, CopySpec, ImageInfo, ImageManifest, ImageSpec, ImageState,
    Images, RootfsRecord,
};
use crate::state::{sync_dir, write_atomically};

pub const ROOTFS: &str = "rootfs.tar.zst";
pub const MANIFEST: &str = "manifest.json";

impl LocalCloud {
    fn image_dir(&self, id: &ImageId) -> Result<PathBuf> {
        // Ids become path components: refuse anything that could escape.
        let ok = id.as_str().starts_with("img-")
            && id.as_str()[4..].chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            return Err(CloudError::not_found(
                "image",
                id,
                self.state.root().display(),
            ));
        }
        Ok(self.state.path("images").join(id.as_str()))
    }

    fn read_manifest(&self, dir: &Path, id: &ImageId) -> Result<ImageManifest> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CloudError::not_found(
                    "image",
                    id,
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

    /// The rootfs archive of an image (for `roll` and the demo to extract).
    pub fn rootfs_path(&self, id: &ImageId) -> Result<PathBuf> {
        let dir = self.image_dir(id)?;
        let p = dir.join(ROOTFS);
        if p.is_file() {
            Ok(p)
        } else {
            Err(CloudError::not_found(
                "image",
                id,
                self.state.root().display(),
            ))
        }
    }

    pub(super) fn all_manifests(&self) -> Result<Vec<ImageManifest>> {
        let dir = self.state.path("images");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| CloudError::io("read", &dir, e))?;
        for e in entries {
            let e = e.map_err(|e| CloudError::io("read", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Dot-names are images being written or deleted.
            if name.starts_with('.') {
                continue;
            }
            let id = ImageId::new(name);
            match self.read_manifest(&e.path(), &id) {
                Ok(m) => out.push(m),
                // Vanished between read_dir and read (a concurrent prune).
                Err(CloudError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        out.sort_by(|a, b| {
            b.created_unix
                .cmp(&a.created_unix)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(out)
    }

    fn create_blocking(&self, root: &Path, spec: &ImageSpec) -> Result<ImageId> {
        let images = self.state.path("images");
        let staging = images.join(format!(".tmp-{}-{:08x}", spec.run, fastrand::u32(..)));
        std::fs::create_dir(&staging).map_err(|e| CloudError::io("create", &staging, e))?;
        let result = self.fill_staging(root, spec, &staging);
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let target = images.join(id.as_str());
        let _lock = self.state.lock()?;
        if target.exists() {
            // Same rootfs for the same inputs: this image already exists.
            let result = self.reuse(&target, &id, spec, &staging);
            let _ = std::fs::remove_dir_all(&staging);
            return result.map(|()| id);
        }
        std::fs::rename(&staging, &target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            CloudError::io("rename", &target, e)
        })?;
        sync_dir(&images);
        Ok(id)
    }

    /// `create_image` found its image in place already (under the state
    /// lock): a finished one stays its maker's; a dead run's unfinished
    /// one becomes this run's, with the staged manifest; a live run's is
    /// refused.
    fn reuse(&self, target: &Path, id: &ImageId, spec: &ImageSpec, staging: &Path) -> Result<()> {
        let existing = self.read_manifest(target, id)?;
        if BakeState::of(&existing.tags) != BakeState::Baking {
            return Ok(());
        }
        let owner = run_of(&existing);
        if owner != spec.run && self.state.run_alive(&owner) {
            return Err(CloudError::Locked {
                what: "image (another bake of the same inputs is making it)",
                path: target.to_owned(),
            });
        }
        let staged = staging.join(MANIFEST);
        let json = std::fs::read(&staged).map_err(|e| CloudError::io("read", &staged, e))?;
        write_atomically(&target.join(MANIFEST), &json)
    }

    /// Removes `id` if it still is an unfinished (`baking`) image of the
    /// dead run `run` — checked under the state lock, so a bake that took
    /// it over meanwhile keeps it. `bake gc`'s removal of a local image.
    pub(super) fn deregister_unfinished(&self, id: &ImageId, run: Option<&RunId>) -> Result<()> {
        self.remove_image(
            id,
            Some(&|m: &ImageManifest| {
                let owner = run_of(m);
                BakeState::of(&m.tags) == BakeState::Baking
                    && run == Some(&owner)
                    && !self.state.run_alive(&owner)
            }),
        )
    }

    /// Renames the image away under the state lock — if `check` (when
    /// given) approves of its manifest — then deletes it. A missing image
    /// is `Ok`.
    fn remove_image(
        &self,
        id: &ImageId,
        check: Option<&dyn Fn(&ImageManifest) -> bool>,
    ) -> Result<()> {
        let Ok(dir) = self.image_dir(id) else {
            return Ok(());
        };
        let images = self.state.path("images");
        let trash = images.join(format!(".trash-{id}-{:08x}", fastrand::u32(..)));
        {
            let _lock = self.state.lock()?;
            if let Some(check) = check {
                match self.read_manifest(&dir, id) {
                    Ok(m) if check(&m) => {}
                    Ok(_) | Err(CloudError::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            match std::fs::rename(&dir, &trash) {
                Ok(()) => sync_dir(&images),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(CloudError::io("remove", &dir, e)),
            }
        }
        // Renamed away first, so readers never see a half-deleted image.
        std::fs::remove_dir_all(&trash).map_err(|e| CloudError::io("remove", &trash, e))
    }

    fn fill_staging(&self, root: &Path, spec: &ImageSpec, staging: &Path) -> Result<ImageId> {
        let rootfs = staging.join(ROOTFS);
        let (sha, bytes) =
            pack::pack_dir(root, &rootfs).map_err(|e| CloudError::io("pack", root, e))?;
        let mut h = Sha256::new();
        h.update(sha.as_bytes());
        h.update(b"\n");
        h.update(spec.manifest.digest.as_bytes());
        let id = ImageId::new(format!("img-{}", &pack::hex(&h.finalize())[..24]));
        let mut manifest = spec.manifest.clone();
        manifest.id = id.clone();
        manifest.name = spec.name.clone();
        manifest.run = spec.run.clone();
        manifest.tags.extend(spec.tags.clone());
        manifest.rootfs = Some(RootfsRecord {
            file: ROOTFS.into(),
            sha256: sha,
            bytes,
        });
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CloudError::Corrupt {
            path: staging.join(MANIFEST),
            why: e.to_string(),
        })?;
        write_atomically(&staging.join(MANIFEST), &json)?;
        sync_dir(staging);
        Ok(id)
    }
}

/// The run an image belongs to: its run tag (the manifest's `run` field
/// says the same; both change when a run takes an unfinished image over).
pub(super) fn run_of(m: &ImageManifest) -> RunId {
    m.tags
        .get(tags::RUN)
        .map_or_else(|| m.run.clone(), |r| RunId::from(r.as_str()))
}

fn info(m: &ImageManifest) -> ImageInfo {
    ImageInfo {
        id: m.id.clone(),
        name: m.name.clone(),
        region: Region::from(REGION),
        state: ImageState::Available,
        created_unix: m.created_unix,
        tags: m.tags.clone(),
        size_bytes: m.rootfs.as_ref().map(|r| r.bytes),
    }
}

impl LocalCloud {
    /// Rewrites an image's manifest with its tags changed by `f`.
    fn edit_tags(&self, id: &ImageId, f: impl FnOnce(&mut Tags)) -> Result<()> {
        let dir = self.image_dir(id)?;
        let _lock = self.state.lock()?;
        let mut m = self.read_manifest(&dir, id)?;
        f(&mut m.tags);
        let path = dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&m).map_err(|e| CloudError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_atomically(&path, &json)
    }
}

#[async_trait]
impl Images for LocalCloud {
    async fn resolve_base(&self, base: &BaseSelector) -> Result<BaseImage> {
        match base {
            BaseSelector::Scratch => Ok(BaseImage {
                id: ImageId::from("scratch"),
                name: "scratch".into(),
                tarball: None,
            }),
            BaseSelector::Tarball { path } => {
                let path = path.clone();
                let (sha, _) = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || pack::sha256_file(&path)
                })
                .await
                .map_err(|e| CloudError::io("hash", &path, std::io::Error::other(e)))?
                .map_err(|e| {
                    CloudError::invalid(
                        "base tarball",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Ok(BaseImage {
                    id: ImageId::new(format!("sha256:{sha}")),
                    name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    tarball: Some(path),
                })
            }
            BaseSelector::AmiFilter { .. } | BaseSelector::SsmParameter { .. } => {
                Err(CloudError::Unsupported {
                    backend: BACKEND,
                    op: "AMI base images (use `scratch` or a tarball)",
                })
            }
        }
    }

    async fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|i| i.tags.get(key).map(String::as_str) == Some(value))
            .collect())
    }

    async fn describe(&self, id: &ImageId) -> Result<ImageInfo> {
        Ok(info(&self.manifest(id).await?))
    }

    async fn manifest(&self, id: &ImageId) -> Result<ImageManifest> {
        let dir = self.image_dir(id)?;
        self.read_manifest(&dir, id)
    }

    async fn list(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.all_manifests()?.iter().map(info).collect())
    }

    async fn create_image(&self, builder: &InstanceId, spec: &ImageSpec) -> Result<ImageId> {
        let dir = self.builder_dir(builder)?;
        if !dir.join("stopped").exists() {
            return Err(CloudError::invalid(
                "builder",
                format!("{builder} has not stopped; only a stopped builder can be imaged"),
            ));
        }
        let root = dir.join("root");
        let spec = spec.clone();
        let state = self.state.clone();
        // Packing is CPU and disk work: keep it off the async workers. It
        // runs to completion even if the caller is cancelled, so the image
        // is either fully in place or not at all.
        let me = LocalCloud::new(state);
        tokio::task::spawn_blocking(move || me.create_blocking(&root, &spec))
            .await
            .map_err(|e| CloudError::io("pack", &dir, std::io::Error::other(e)))?
    }

    async fn tag(&self, id: &ImageId, tags: &Tags) -> Result<()> {
        self.edit_tags(id, |t| t.extend(tags.clone()))
    }

    async fn deprecate(&self, id: &ImageId, at: Option<u64>) -> Result<Vec<(Region, ImageId)>> {
        self.edit_tags(id, |t| match at {
            Some(at) => {
                t.insert(tags::DEPRECATE_AT.into(), crate::time::rfc3339(at));
            }
            None => {
                t.remove(tags::DEPRECATE_AT);
            }
        })?;
        Ok(Vec::new())
    }

    async fn copy_to_region(
        &self,
        _id: &ImageId,
        _region: &Region,
        _spec: &CopySpec,
    ) -> Result<ImageId> {
        Err(CloudError::Unsupported {
            backend: BACKEND,
            op: "copying images to other regions",
        })
    }

    async fn tag_copy(&self, _id: &ImageId, _region: &Region, _tags: &Tags) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: BACKEND,
            op: "copies in other regions",
        })
    }

    async fn deregister_copy(&self, _id: &ImageId, _region: &Region) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: BACKEND,
            op: "copies in other regions",
        })
    }

    async fn share(&self, _id: &ImageId, _accounts: &[AccountId]) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: BACKEND,
            op: "sharing images with accounts",
        })
    }

    async fn deregister(&self, id: &ImageId) -> Result<()> {
        self.remove_image(id, None)
    }
}
