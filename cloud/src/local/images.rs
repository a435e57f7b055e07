//! Local images: `images/<id>/{rootfs.tar.zst,manifest.json}`.
//! The id is `img-` + 24 hex digits of sha256(rootfs sha256, input digest):
//! the same content baked for the same inputs is the same image.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{BACKEND, LocalCloud, REGION, pack};
use crate::error::{CloudError, Result};
use crate::ids::{AccountId, ImageId, InstanceId, Region, Tags};
use crate::images::{
    BaseImage, BaseSelector, CopySpec, ImageInfo, ImageManifest, ImageSpec, ImageState, Images,
    RootfsRecord,
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

    fn all_manifests(&self) -> Result<Vec<ImageManifest>> {
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
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(id);
        }
        std::fs::rename(&staging, &target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            CloudError::io("rename", &target, e)
        })?;
        sync_dir(&images);
        Ok(id)
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
        let dir = self.image_dir(id)?;
        let _lock = self.state.lock()?;
        let mut m = self.read_manifest(&dir, id)?;
        m.tags.extend(tags.clone());
        let path = dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&m).map_err(|e| CloudError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_atomically(&path, &json)
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
        let Ok(dir) = self.image_dir(id) else {
            return Ok(());
        };
        let images = self.state.path("images");
        let trash = images.join(format!(".trash-{id}-{:08x}", fastrand::u32(..)));
        {
            let _lock = self.state.lock()?;
            match std::fs::rename(&dir, &trash) {
                Ok(()) => sync_dir(&images),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(CloudError::io("remove", &dir, e)),
            }
        }
        // Renamed away first, so readers never see a half-deleted image.
        std::fs::remove_dir_all(&trash).map_err(|e| CloudError::io("remove", &trash, e))
    }
}
