//! Images: find by tag or digest, describe, list, create from a stopped
//! builder, tag, copy to a region (and tag the copy there), share,
//! deregister (with snapshots).

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AccountId, ImageId, InstanceId, Region, RunId, Tags, tags};
use crate::wait::{WaitParams, wait_until};

/// Where a bake starts from, as the recipe says it. A backend resolves the
/// selectors it understands and refuses the others with
/// [`crate::CloudError::Unsupported`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BaseSelector {
    /// An empty root (local only).
    Scratch,
    /// A rootfs tarball (`.tar`, `.tar.zst`) on this machine (local only).
    Tarball { path: PathBuf },
    /// The newest image matching owners/name pattern/architecture (aws).
    AmiFilter {
        owners: Vec<String>,
        name: String,
        architecture: String,
    },
    /// An SSM parameter holding an image id, e.g.
    /// `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`.
    SsmParameter { name: String },
}

/// A resolved base image: what the digest covers and what a builder boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// `scratch`, `sha256:<hex>` of a local tarball, or an AMI id. A new
    /// base (e.g. a security fix) means a new id and so a new image digest.
    pub id: ImageId,
    /// Human-readable: the AMI name or the tarball file name.
    pub name: String,
    /// Local backend: the tarball to unpack into the builder root.
    pub tarball: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    Pending,
    Available,
    Failed,
}

/// What `describe` and `list` return: enough to decide, without the
/// (possibly large) manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: ImageId,
    pub name: String,
    pub region: Region,
    pub state: ImageState,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    pub tags: Tags,
    /// Local: the rootfs archive size; aws: the root volume size.
    pub size_bytes: Option<u64>,
}

/// How far the bake that made an image got, from its [`tags::STATE`] tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BakeState {
    /// Created, but its bake has not (yet) published it everywhere: not a
    /// digest hit; a leftover once its run is dead.
    Baking,
    /// Its bake succeeded, copies and shares included.
    Complete,
    /// No (known) state tag: made before the marker existed. Not a digest
    /// hit (nothing proves it was published), but kept like a release.
    Unmarked,
}

impl BakeState {
    pub fn as_str(self) -> &'static str {
        match self {
            BakeState::Baking => tags::STATE_BAKING,
            BakeState::Complete => tags::STATE_COMPLETE,
            BakeState::Unmarked => "unmarked",
        }
    }

    /// From an image's tags.
    pub fn of(t: &Tags) -> BakeState {
        match t.get(tags::STATE).map(String::as_str) {
            Some(tags::STATE_BAKING) => BakeState::Baking,
            Some(tags::STATE_COMPLETE) => BakeState::Complete,
            _ => BakeState::Unmarked,
        }
    }
}

impl ImageInfo {
    pub fn digest(&self) -> Option<&str> {
        self.tags.get(tags::DIGEST).map(String::as_str)
    }

    pub fn bake_state(&self) -> BakeState {
        BakeState::of(&self.tags)
    }

    /// The regions its bake copies it to ([`tags::COPIES`]).
    pub fn copy_regions(&self) -> Vec<Region> {
        copy_regions(&self.tags)
    }

    /// When it is (or was) deprecated, Unix seconds ([`tags::DEPRECATE_AT`]).
    pub fn deprecate_at(&self) -> Option<u64> {
        self.tags
            .get(tags::DEPRECATE_AT)
            .and_then(|t| crate::time::parse_rfc3339(t))
    }

    /// Deprecated by `now` (Unix seconds).
    pub fn is_deprecated(&self, now: u64) -> bool {
        self.deprecate_at().is_some_and(|t| t <= now)
    }
}

/// The regions in a [`tags::COPIES`] tag.
pub fn copy_regions(t: &Tags) -> Vec<Region> {
    t.get(tags::COPIES)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(Region::from)
                .collect()
        })
        .unwrap_or_default()
}

/// One installed file as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Absolute path inside the image, e.g. `/opt/kiln/bin/searchd`.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A golden query and the answer recorded when the snapshot was built.
/// `roll` replays these against a new instance before it takes traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenRecord {
    pub query: String,
    pub ids: i64,
    pub offset: i64,
    pub min_total: u64,
    pub total: u64,
    /// Picky JSON with `duration` 0, byte for byte as searchd wrote it.
    pub answer: String,
}

/// The installed index, as `searchd check` reported it inside the builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRecord {
    pub name: String,
    /// sha256 of the snapshot file (searchd's `/version` `index_digest`).
    pub digest: String,
    pub documents: u64,
    /// Path inside the image.
    pub path: String,
    pub golden: Vec<GoldenRecord>,
}

/// The local backend's packed root file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsRecord {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Everything known about an image beyond its tags. The local backend
/// stores it as `manifest.json`; the aws backend stores it where it likes
/// (e.g. an S3 object named by a tag) and returns it from
/// [`Images::manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// Manifest format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// Filled in by the backend on creation.
    pub id: ImageId,
    pub name: String,
    /// The input digest (also the `kiln:digest` tag).
    pub digest: String,
    pub base: BaseImage,
    /// Previous images of the same name, newest first (lineage for humans;
    /// identity is the digest).
    pub parents: Vec<ImageId>,
    pub files: Vec<FileRecord>,
    pub tags: Tags,
    pub searchd_version: String,
    pub index: IndexRecord,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: u64,
    /// The run that baked it.
    pub run: RunId,
    /// Local backend only.
    pub rootfs: Option<RootfsRecord>,
}

pub const MANIFEST_FORMAT: u32 = 1;

/// What `create_image` needs besides the stopped builder.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    pub run: RunId,
    /// Applied at creation (name, digest, versions, run…), never later, so
    /// a crash cannot leave an untagged image.
    pub tags: Tags,
    /// The backend fills in `id` (and `rootfs` locally) and stores it.
    pub manifest: ImageManifest,
}

/// What `copy_to_region` needs.
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub name: String,
    pub run: RunId,
    pub tags: Tags,
    /// aws: CopyImage with `Encrypted=true`.
    pub encrypted: bool,
}

#[async_trait]
pub trait Images: Send + Sync {
    /// Resolves the recipe's base to one concrete image.
    async fn resolve_base(&self, base: &BaseSelector) -> Result<BaseImage>;

    /// Images carrying tag `key=value`, newest first.
    async fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>>;

    /// The available, complete ([`tags::STATE`]) image with this input
    /// digest, if any (the newest when several exist, e.g. after
    /// `--force`). An image whose bake is still publishing, or died doing
    /// so, is not one.
    async fn find_by_digest(&self, digest: &str) -> Result<Option<ImageInfo>> {
        Ok(self
            .find_by_tag(tags::DIGEST, digest)
            .await?
            .into_iter()
            .find(|i| i.state == ImageState::Available && i.bake_state() == BakeState::Complete))
    }

    /// [`crate::CloudError::NotFound`] if it does not exist.
    async fn describe(&self, id: &ImageId) -> Result<ImageInfo>;

    async fn manifest(&self, id: &ImageId) -> Result<ImageManifest>;

    /// Images kiln made (they carry `kiln:digest`), newest first.
    async fn list(&self) -> Result<Vec<ImageInfo>>;

    /// Snapshots a stopped builder into an image with `spec.tags` applied
    /// at creation. May return before the image is available; see
    /// [`Images::wait_available`].
    async fn create_image(&self, builder: &InstanceId, spec: &ImageSpec) -> Result<ImageId>;

    async fn wait_available(&self, id: &ImageId, params: WaitParams) -> Result<ImageInfo> {
        wait_until(
            params,
            &format!("image {id} to become available"),
            || async {
                let info = self.describe(id).await?;
                match info.state {
                    ImageState::Available => Ok(Some(info)),
                    ImageState::Pending => Ok(None),
                    ImageState::Failed => Err(crate::CloudError::Api {
                        op: format!("create image {id}"),
                        message: "the image failed".into(),
                        source: None,
                    }),
                }
            },
        )
        .await
    }

    /// Adds or overwrites tags.
    async fn tag(&self, id: &ImageId, tags: &Tags) -> Result<()>;

    /// Adds or overwrites tags on a copy that [`Images::copy_to_region`]
    /// made in `region`, there.
    async fn tag_copy(&self, id: &ImageId, region: &Region, tags: &Tags) -> Result<()>;

    /// Copies the image (aws: encrypted CopyImage) into `region`; returns
    /// the new id there.
    async fn copy_to_region(
        &self,
        id: &ImageId,
        region: &Region,
        spec: &CopySpec,
    ) -> Result<ImageId>;

    /// The copies [`Images::copy_to_region`] made of it, by region (aws:
    /// found by AMI name in each region of its [`tags::COPIES`] tag).
    async fn copies(&self, id: &ImageId) -> Result<Vec<(Region, ImageId)>> {
        let _ = id;
        Ok(Vec::new())
    }

    /// Deprecates the image from `at` (Unix seconds), or cancels its
    /// deprecation (`None`): the [`tags::DEPRECATE_AT`] tag on it (and its
    /// copies); aws also EnableImageDeprecation / DisableImageDeprecation
    /// on it and each copy, so EC2 hides it from other accounts' listings
    /// after that time. Idempotent. Returns the copies it deprecated too.
    async fn deprecate(&self, id: &ImageId, at: Option<u64>) -> Result<Vec<(Region, ImageId)>>;

    /// Grants launch permission to these accounts.
    async fn share(&self, id: &ImageId, accounts: &[AccountId]) -> Result<()>;

    /// Deletes the image and its storage (aws: the EBS snapshots too, and
    /// its copies in the regions its [`tags::COPIES`] tag names, with
    /// theirs). Idempotent: deleting a missing image is `Ok`.
    async fn deregister(&self, id: &ImageId) -> Result<()>;

    /// Deletes a copy that [`Images::copy_to_region`] made in `region`, with
    /// its storage there (aws: the copy's EBS snapshots). Idempotent. The
    /// manifest stays: it belongs to the source image, and
    /// [`Images::deregister`] removes it with that.
    async fn deregister_copy(&self, id: &ImageId, region: &Region) -> Result<()>;
}
