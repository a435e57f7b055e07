//! Images as AMIs. Identity and metadata live in tags (`kiln:digest`,
//! `kiln:name`, …); the full manifest (installed files, golden answers) is
//! too big for tags and lives in S3 under a key named by the digest, which
//! the image's `kiln:manifest` tag points to.
//!
//! Snapshots: CreateImage makes them, untagged. They are tagged (run id and
//! all) with CreateTags as soon as DescribeImages lists them, and deleted
//! with the image, since DeregisterImage leaves them behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, Image, ImageState as Ec2ImageState, LaunchPermission, LaunchPermissionModifications,
    ResourceType,
};
use aws_sdk_s3::primitives::ByteStream;

use super::error::{is_gone, sdk_error};
use super::sdk::{
    Ctx, all_pages, ec2_tags, manifest_key, run_tags, s3_tagging, tag_spec, tags_from_ec2,
};
use crate::error::{CloudError, Result};
use crate::ids::{AccountId, ImageId, InstanceId, Region, Tags, tags};
use crate::images::{
    BaseImage, BaseSelector, CopySpec, ImageInfo, ImageManifest, ImageSpec, ImageState, Images,
};
use crate::time::parse_rfc3339;
use crate::wait::{WaitParams, wait_until};

/// Tag naming the S3 object (`s3://bucket/key`) holding the manifest.
pub const MANIFEST_TAG: &str = "kiln:manifest";

pub(crate) struct AwsImages {
    ctx: Arc<Ctx>,
    /// Tags for the snapshots of images this process created and has not
    /// yet seen snapshots for.
    snapshot_tags: Mutex<HashMap<ImageId, Tags>>,
}

impl AwsImages {
    pub fn new(ctx: Arc<Ctx>) -> AwsImages {
        AwsImages {
            ctx,
            snapshot_tags: Mutex::new(HashMap::new()),
        }
    }

    /// The copies of `image` in the regions its bake copied it to
    /// (`kiln:copies`): a copy has the source's AMI name, unique per region
    /// and account.
    async fn copies_of(&self, image: &Image) -> Result<Vec<(Region, ImageId)>> {
        let mut found = Vec::new();
        let Some(name) = image.name() else {
            return Ok(found);
        };
        for region in crate::images::copy_regions(&tags_from_ec2(image.tags())) {
            if region == self.ctx.region {
                continue;
            }
            let out = self
                .ctx
                .ec2_in(&region)
                .describe_images()
                .owners("self")
                .filters(Filter::builder().name("name").values(name).build())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeImages", format!("{name} in {region}"), e))?;
            for copy in out.images() {
                if let Some(c) = copy.image_id() {
                    found.push((region.clone(), ImageId::from(c)));
                }
            }
        }
        Ok(found)
    }

    async fn describe_raw(&self, id: &ImageId) -> Result<Option<Image>> {
        describe_in(&self.ctx.ec2, id, &self.ctx.region).await
    }

    /// Self-owned images matching `filters`, newest first.
    async fn find(&self, filters: Vec<Filter>, what: &str) -> Result<Vec<ImageInfo>> {
        let ctx = &self.ctx;
        let images = owned_images(&ctx.ec2, filters)
            .await
            .map_err(|e| sdk_error("DescribeImages", format!("{what} {}", ctx.place()), e))?;
        let mut found: Vec<ImageInfo> = images.iter().map(|i| info(i, &ctx.region)).collect();
        newest_first(&mut found);
        Ok(found)
    }

    /// Tags the image's snapshots with the tags remembered at creation, if
    /// DescribeImages lists them yet. Returns whether it did.
    async fn tag_snapshots(&self, image: &Image) -> Result<bool> {
        let id = ImageId::from(image.image_id().unwrap_or_default());
        let Some(tags) = self
            .snapshot_tags
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        else {
            return Ok(true);
        };
        let snaps = snapshot_ids(image);
        if snaps.is_empty() {
            return Ok(false);
        }
        let ctx = &self.ctx;
        ctx.ec2
            .create_tags()
            .set_resources(Some(snaps.clone()))
            .set_tags(Some(ec2_tags(&tags)))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "CreateTags",
                    format!("{} (snapshots of {id}) {}", snaps.join(","), ctx.place()),
                    e,
                )
            })?;
        if let Ok(mut m) = self.snapshot_tags.lock() {
            m.remove(&id);
        }
        Ok(true)
    }

    async fn resolve_filter(
        &self,
        owners: &[String],
        name: &str,
        architecture: &str,
    ) -> Result<BaseImage> {
        let ctx = &self.ctx;
        let what = format!(
            "name={name} architecture={architecture} owners={}",
            owners.join(",")
        );
        let out = ctx
            .ec2
            .describe_images()
            .set_owners(Some(owners.to_vec()))
            .filters(Filter::builder().name("name").values(name).build())
            .filters(
                Filter::builder()
                    .name("architecture")
                    .values(architecture)
                    .build(),
            )
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeImages", format!("{what} {}", ctx.place()), e))?;
        // Newest by CreationDate; the id breaks ties so the choice is stable.
        let best = out
            .images
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.image_id().is_some())
            .max_by_key(|i| {
                (
                    i.creation_date().and_then(parse_rfc3339).unwrap_or(0),
                    i.image_id().unwrap_or_default().to_owned(),
                )
            })
            .ok_or_else(|| {
                CloudError::invalid(
                    "base image",
                    format!("no available AMI matches {what} in {}", ctx.region),
                )
            })?;
        let base = BaseImage {
            id: ImageId::from(best.image_id().unwrap_or_default()),
            name: best.name().unwrap_or_default().to_owned(),
            tarball: None,
        };
        ctx.remember_base(best);
        Ok(base)
    }

    async fn resolve_ssm(&self, parameter: &str) -> Result<BaseImage> {
        let ctx = &self.ctx;
        let value = match ctx.ssm.get_parameter().name(parameter).send().await {
            Ok(out) => out.parameter.and_then(|p| p.value).ok_or_else(|| {
                CloudError::invalid(
                    "base image",
                    format!("SSM parameter {parameter} has no value"),
                )
            })?,
            Err(e) if is_gone(&e) => {
                return Err(CloudError::invalid(
                    "base image",
                    format!("SSM parameter {parameter} does not exist in {}", ctx.region),
                ));
            }
            Err(e) => {
                return Err(sdk_error(
                    "GetParameter",
                    format!("{parameter} {}", ctx.place()),
                    e,
                ));
            }
        };
        let id = ImageId::from(value.trim());
        let image = self.describe_raw(&id).await?.ok_or_else(|| {
            CloudError::invalid(
                "base image",
                format!(
                    "SSM parameter {parameter} names {id}, which does not exist in {}",
                    ctx.region
                ),
            )
        })?;
        let base = BaseImage {
            name: image.name().unwrap_or_default().to_owned(),
            id,
            tarball: None,
        };
        ctx.remember_base(image);
        Ok(base)
    }
}

#[async_trait]
impl Images for AwsImages {
    async fn resolve_base(&self, base: &BaseSelector) -> Result<BaseImage> {
        match base {
            BaseSelector::AmiFilter {
                owners,
                name,
                architecture,
            } => self.resolve_filter(owners, name, architecture).await,
            BaseSelector::SsmParameter { name } => self.resolve_ssm(name).await,
            BaseSelector::Scratch | BaseSelector::Tarball { .. } => Err(CloudError::Unsupported {
                backend: super::BACKEND,
                op: "a local base image (scratch or tarball); use an AMI filter or SSM parameter",
            }),
        }
    }

    async fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>> {
        self.find(
            vec![
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            ],
            &format!("tag {key}={value}"),
        )
        .await
    }

    async fn describe(&self, id: &ImageId) -> Result<ImageInfo> {
        let image = self
            .describe_raw(id)
            .await?
            .ok_or_else(|| CloudError::not_found("image", id, &self.ctx.region))?;
        Ok(info(&image, &self.ctx.region))
    }

    async fn manifest(&self, id: &ImageId) -> Result<ImageManifest> {
        let ctx = &self.ctx;
        let info = self.describe(id).await?;
        let loc = info.tags.get(MANIFEST_TAG).ok_or_else(|| {
            CloudError::not_found(
                "manifest of image",
                id,
                format!("{} (no {MANIFEST_TAG} tag)", ctx.region),
            )
        })?;
        let (bucket, key) = loc
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .ok_or_else(|| {
                CloudError::invalid(MANIFEST_TAG, format!("{loc} is not s3://bucket/key"))
            })?;
        let out = match ctx.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => o,
            Err(e) if is_gone(&e) => {
                return Err(CloudError::not_found("manifest", loc, &ctx.region));
            }
            Err(e) => return Err(sdk_error("GetObject", loc, e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| CloudError::Api {
                op: format!("GetObject {loc}"),
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?
            .into_bytes();
        serde_json::from_slice(&bytes).map_err(|e| CloudError::Corrupt {
            path: loc.into(),
            why: e.to_string(),
        })
    }

    async fn list(&self) -> Result<Vec<ImageInfo>> {
        self.find(
            vec![
                Filter::builder()
                    .name("tag-key")
                    .values(tags::DIGEST)
                    .build(),
            ],
            &format!("tagged {}", tags::DIGEST),
        )
        .await
    }

    async fn create_image(&self, builder: &InstanceId, spec: &ImageSpec) -> Result<ImageId> {
        let ctx = &self.ctx;
        let bucket = ctx.ensure_bucket().await?;
        let key = manifest_key(&spec.manifest.digest);
        let mut tags = run_tags(&spec.run, &spec.tags);
        tags.insert(MANIFEST_TAG.into(), format!("s3://{bucket}/{key}"));
        // AMI names are unique per account and region; the run id keeps a
        // forced rebake of the same digest from colliding.
        let name = ami_name(&spec.name, &spec.manifest.digest, spec.run.as_str());
        let id = ctx
            .ec2
            .create_image()
            .instance_id(builder.as_str())
            .name(&name)
            // Dashes, not spaces: see the security group's description.
            .description(
                format!("kiln-image-{}-digest-{}", spec.name, spec.manifest.digest)
                    .replace(' ', "-"),
            )
            .tag_specifications(tag_spec(ResourceType::Image, &tags))
            .send()
            .await
            .map_err(|e| sdk_error("CreateImage", format!("from {builder} {}", ctx.place()), e))?
            .image_id
            .map(|s| ImageId::from(s.as_str()))
            .ok_or_else(|| CloudError::Api {
                op: "CreateImage".into(),
                message: "the answer had no image id".into(),
                source: None,
            })?;
        if let Ok(mut m) = self.snapshot_tags.lock() {
            m.insert(id.clone(), tags.clone());
        }
        let mut manifest = spec.manifest.clone();
        manifest.id = id.clone();
        manifest.tags = tags.clone();
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| CloudError::invalid("manifest", e.to_string()))?;
        let put = ctx
            .s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .content_type("application/json")
            .tagging(s3_tagging(&run_tags(&spec.run, &Tags::new())))
            .send()
            .await;
        if let Err(e) = put {
            // The image is useless without its manifest: do not leave it.
            let err = sdk_error("PutObject", format!("s3://{bucket}/{key}"), e);
            if let Err(e2) = self.deregister(&id).await {
                tracing::warn!("removing {id} after a failed manifest upload: {e2}");
            }
            return Err(err);
        }
        // wait_available tags the snapshots on its first poll. Until then a
        // crash leaves them untagged, but gc deletes them with the image
        // (found through its block device mappings).
        Ok(id)
    }

    async fn wait_available(&self, id: &ImageId, params: WaitParams) -> Result<ImageInfo> {
        let ctx = &self.ctx;
        wait_until(
            params,
            &format!("image {id} to become available"),
            || async {
                let image = self
                    .describe_raw(id)
                    .await?
                    .ok_or_else(|| CloudError::not_found("image", id, &ctx.region))?;
                // Snapshots appear while the image is pending: tag them as soon
                // as they do, so a crash from here on leaves them findable.
                self.tag_snapshots(&image).await?;
                let info = info(&image, &ctx.region);
                match info.state {
                    ImageState::Available => Ok(Some(info)),
                    ImageState::Pending => Ok(None),
                    ImageState::Failed => Err(CloudError::Api {
                        op: format!("CreateImage {id} {}", ctx.place()),
                        message: image
                            .state_reason()
                            .and_then(|r| r.message())
                            .unwrap_or("the image failed")
                            .to_owned(),
                        source: None,
                    }),
                }
            },
        )
        .await
    }

    async fn tag(&self, id: &ImageId, tags: &Tags) -> Result<()> {
        let ctx = &self.ctx;
        ctx.ec2
            .create_tags()
            .resources(id.as_str())
            .set_tags(Some(ec2_tags(tags)))
            .send()
            .await
            .map_err(|e| sdk_error("CreateTags", format!("{id} {}", ctx.place()), e))?;
        Ok(())
    }

    async fn copies(&self, id: &ImageId) -> Result<Vec<(Region, ImageId)>> {
        match self.describe_raw(id).await? {
            Some(image) => self.copies_of(&image).await,
            None => Err(CloudError::not_found("image", id, &self.ctx.region)),
        }
    }

    async fn deprecate(&self, id: &ImageId, at: Option<u64>) -> Result<Vec<(Region, ImageId)>> {
        let ctx = &self.ctx;
        let image = self
            .describe_raw(id)
            .await?
            .ok_or_else(|| CloudError::not_found("image", id, &ctx.region))?;
        let copies = self.copies_of(&image).await?;
        let all = std::iter::once((ctx.region.clone(), id.clone())).chain(copies.iter().cloned());
        // EC2 first, then the tag kiln reads: a failure in between leaves
        // the tag unchanged and a rerun does both again.
        for (region, img) in all {
            let ec2 = ctx.ec2_in(&region);
            let place = format!("{img} in {region}");
            match at {
                Some(t) => {
                    // EC2 keeps whole minutes and refuses the past: the
                    // next whole minute from `t` (kiln's tag keeps `t`).
                    let when = aws_sdk_ec2::primitives::DateTime::from_secs(
                        i64::try_from((t / 60 + 1) * 60).unwrap_or(i64::MAX),
                    );
                    ec2.enable_image_deprecation()
                        .image_id(img.as_str())
                        .deprecate_at(when)
                        .send()
                        .await
                        .map_err(|e| sdk_error("EnableImageDeprecation", place.clone(), e))?;
                    let mut t2 = Tags::new();
                    t2.insert(tags::DEPRECATE_AT.into(), crate::time::rfc3339(t));
                    ec2.create_tags()
                        .resources(img.as_str())
                        .set_tags(Some(ec2_tags(&t2)))
                        .send()
                        .await
                        .map_err(|e| sdk_error("CreateTags", place.clone(), e))?;
                }
                None => {
                    ec2.disable_image_deprecation()
                        .image_id(img.as_str())
                        .send()
                        .await
                        .map_err(|e| sdk_error("DisableImageDeprecation", place.clone(), e))?;
                    ec2.delete_tags()
                        .resources(img.as_str())
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key(tags::DEPRECATE_AT)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| sdk_error("DeleteTags", place.clone(), e))?;
                }
            }
        }
        Ok(copies)
    }

    async fn tag_copy(&self, id: &ImageId, region: &Region, tags: &Tags) -> Result<()> {
        self.ctx
            .ec2_in(region)
            .create_tags()
            .resources(id.as_str())
            .set_tags(Some(ec2_tags(tags)))
            .send()
            .await
            .map_err(|e| sdk_error("CreateTags", format!("{id} in {region}"), e))?;
        Ok(())
    }

    async fn copy_to_region(
        &self,
        id: &ImageId,
        region: &Region,
        spec: &CopySpec,
    ) -> Result<ImageId> {
        let ctx = &self.ctx;
        // The copy is the same image elsewhere: it gets the source's tags
        // (digest, name, lineage…) and its AMI name, which is unique per
        // region (it holds the digest and the run), plus the spec's tags.
        let source = self
            .describe_raw(id)
            .await?
            .ok_or_else(|| CloudError::not_found("image", id, &ctx.region))?;
        let mut tags: Tags = tags_from_ec2(source.tags())
            .into_iter()
            .filter(|(k, _)| !k.starts_with("aws:"))
            .collect();
        tags.extend(run_tags(&spec.run, &spec.tags));
        let name = source.name().unwrap_or(&spec.name).to_owned();
        let dest = ctx.ec2_in(region);
        let out = dest
            .copy_image()
            .source_image_id(id.as_str())
            .source_region(ctx.region.as_str())
            .name(&name)
            .encrypted(spec.encrypted)
            // Idempotent: a retried copy of the same image by the same run
            // returns the first copy.
            .client_token(
                format!("kiln-{}-{id}", spec.run)
                    .chars()
                    .take(64)
                    .collect::<String>(),
            )
            .tag_specifications(tag_spec(ResourceType::Image, &tags))
            // EC2 tags the copy's snapshots at creation too, so a crash
            // leaves nothing gc cannot find by tag (moto ignores both).
            .tag_specifications(tag_spec(ResourceType::Snapshot, &tags))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "CopyImage",
                    format!("{id} from {} to {region}", ctx.region),
                    e,
                )
            })?;
        let copy = out
            .image_id
            .map(|s| ImageId::from(s.as_str()))
            .ok_or_else(|| CloudError::Api {
                op: format!("CopyImage {id} to {region}"),
                message: "the answer had no image id".into(),
                source: None,
            })?;
        // moto ignores CopyImage's TagSpecifications (real EC2 applies
        // them); tagging again is idempotent and makes both agree.
        let tagged = dest
            .create_tags()
            .resources(copy.as_str())
            .set_tags(Some(ec2_tags(&tags)))
            .send()
            .await;
        if let Err(e) = tagged {
            // The caller never learns this id: do not leave the copy.
            let err = sdk_error("CreateTags", format!("{copy} in {region}"), e);
            if let Err(e2) = deregister_in(&dest, &copy, region).await {
                tracing::warn!("removing {copy} in {region} after failed tagging: {e2}");
            }
            return Err(err);
        }
        Ok(copy)
    }

    async fn share(&self, id: &ImageId, accounts: &[AccountId]) -> Result<()> {
        if accounts.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        let add = accounts
            .iter()
            .map(|a| LaunchPermission::builder().user_id(a.as_str()).build())
            .collect();
        ctx.ec2
            .modify_image_attribute()
            .image_id(id.as_str())
            .launch_permission(
                LaunchPermissionModifications::builder()
                    .set_add(Some(add))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                let who: Vec<&str> = accounts.iter().map(AccountId::as_str).collect();
                sdk_error(
                    "ModifyImageAttribute",
                    format!(
                        "{id} launch permission for {} {}",
                        who.join(","),
                        ctx.place()
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    async fn deregister(&self, id: &ImageId) -> Result<()> {
        let ctx = &self.ctx;
        let Some(image) = deregister_in(&ctx.ec2, id, &ctx.region).await? else {
            return Ok(());
        };
        // Its copies, with their snapshots.
        for (region, copy) in self.copies_of(&image).await? {
            deregister_in(&ctx.ec2_in(&region), &copy, &region).await?;
        }
        let manifest = tags_from_ec2(image.tags()).get(MANIFEST_TAG).cloned();
        if let Some((bucket, key)) = manifest
            .as_deref()
            .and_then(|m| m.strip_prefix("s3://"))
            .and_then(|r| r.split_once('/'))
        {
            // Another image (a forced rebake) may share the digest and so the
            // manifest key: keep it while one does.
            let digest = tags_from_ec2(image.tags()).get(tags::DIGEST).cloned();
            let shared = match &digest {
                Some(d) => self
                    .find_by_tag(tags::DIGEST, d)
                    .await?
                    .iter()
                    .any(|i| &i.id != id),
                None => false,
            };
            if !shared {
                match ctx.s3.delete_object().bucket(bucket).key(key).send().await {
                    Ok(_) => {}
                    Err(e) if is_gone(&e) => {}
                    Err(e) => {
                        return Err(sdk_error("DeleteObject", format!("s3://{bucket}/{key}"), e));
                    }
                }
            }
        }
        if let Ok(mut m) = self.snapshot_tags.lock() {
            m.remove(id);
        }
        Ok(())
    }

    async fn deregister_copy(&self, id: &ImageId, region: &Region) -> Result<()> {
        // Only the image and its snapshots: the manifest is the source's.
        deregister_in(&self.ctx.ec2_in(region), id, region).await?;
        Ok(())
    }
}

/// Every image this account owns matching `filters`, paged to the end.
pub(crate) async fn owned_images(
    ec2: &aws_sdk_ec2::Client,
    filters: Vec<Filter>,
) -> std::result::Result<
    Vec<Image>,
    aws_sdk_ec2::error::SdkError<
        aws_sdk_ec2::operation::describe_images::DescribeImagesError,
        aws_smithy_runtime_api::http::Response,
    >,
> {
    all_pages("DescribeImages", |token| {
        let req = ec2
            .describe_images()
            .owners("self")
            .set_filters((!filters.is_empty()).then(|| filters.clone()))
            .max_results(1000)
            .set_next_token(token);
        async move {
            let out = req.send().await?;
            Ok((out.images.unwrap_or_default(), out.next_token))
        }
    })
    .await
}

/// DescribeImages of one image with `ec2`, a client for `region`; `None`
/// if it does not exist.
pub(crate) async fn describe_in(
    ec2: &aws_sdk_ec2::Client,
    id: &ImageId,
    region: &Region,
) -> Result<Option<Image>> {
    match ec2.describe_images().image_ids(id.as_str()).send().await {
        Ok(out) => Ok(out
            .images
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.image_id() == Some(id.as_str()))),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(sdk_error("DescribeImages", format!("{id} in {region}"), e)),
    }
}

/// DeregisterImage, then DeleteSnapshot of each of its snapshots, with
/// `ec2`, a client for `region`. Returns the image as it was before, or
/// `None` if it was already gone (then there is nothing to do).
pub(crate) async fn deregister_in(
    ec2: &aws_sdk_ec2::Client,
    id: &ImageId,
    region: &Region,
) -> Result<Option<Image>> {
    let Some(image) = describe_in(ec2, id, region).await? else {
        return Ok(None);
    };
    match ec2.deregister_image().image_id(id.as_str()).send().await {
        Ok(_) => {}
        Err(e) if is_gone(&e) => {}
        Err(e) => {
            return Err(sdk_error("DeregisterImage", format!("{id} in {region}"), e));
        }
    }
    // DeregisterImage leaves the snapshots (on EC2 as on moto).
    for snap in snapshot_ids(&image) {
        match ec2.delete_snapshot().snapshot_id(&snap).send().await {
            Ok(_) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                return Err(sdk_error(
                    "DeleteSnapshot",
                    format!("{snap} (of {id}) in {region}"),
                    e,
                ));
            }
        }
    }
    Ok(Some(image))
}

pub(crate) fn snapshot_ids(image: &Image) -> Vec<String> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
        .collect()
}

pub(crate) fn info(image: &Image, region: &Region) -> ImageInfo {
    let mut tags = tags_from_ec2(image.tags());
    // Deprecated by hand (console, CLI): EC2's time, when kiln's tag
    // (the exact time `bake deprecate` was given) is missing.
    if let Some(t) = image.deprecation_time().and_then(parse_rfc3339)
        && !tags.contains_key(tags::DEPRECATE_AT)
    {
        tags.insert(tags::DEPRECATE_AT.into(), crate::time::rfc3339(t));
    }
    let size_gb: i64 = image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.volume_size())
        .map(i64::from)
        .sum();
    ImageInfo {
        id: ImageId::from(image.image_id().unwrap_or_default()),
        name: tags
            .get(tags::NAME)
            .cloned()
            .or_else(|| image.name().map(str::to_owned))
            .unwrap_or_default(),
        region: region.clone(),
        state: match image.state() {
            Some(Ec2ImageState::Available) => ImageState::Available,
            Some(Ec2ImageState::Pending) | None => ImageState::Pending,
            Some(_) => ImageState::Failed,
        },
        created_unix: image
            .creation_date()
            .and_then(parse_rfc3339)
            .or_else(|| tags.get(tags::CREATED).and_then(|c| parse_rfc3339(c)))
            .unwrap_or(0),
        size_bytes: u64::try_from(size_gb)
            .ok()
            .filter(|&g| g > 0)
            .map(|g| g << 30),
        tags,
    }
}

/// Newest first; the id breaks ties (CreationDate has one-second
/// resolution) so the order is stable.
fn newest_first(v: &mut [ImageInfo]) {
    v.sort_by(|a, b| {
        b.created_unix
            .cmp(&a.created_unix)
            .then_with(|| b.id.cmp(&a.id))
    });
}

/// `name-<digest12>-<run>`, limited to the characters and 128-byte length
/// EC2 accepts in an AMI name.
fn ami_name(name: &str, digest: &str, run: &str) -> String {
    let raw = format!("{name}-{}-{run}", digest.get(..12).unwrap_or(digest));
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_names_are_valid() {
        let n = ami_name("searchd:books", &"ab".repeat(32), "run-1-ff");
        assert_eq!(n, "searchd-books-abababababab-run-1-ff");
        assert!(ami_name(&"x".repeat(300), "d", "r").len() <= 128);
    }
}
