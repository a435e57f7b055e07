//! `bake gc` on aws: everything a crashed run left, found by the
//! `kiln:bake` tag (EC2) or the `kiln/runs/<run>/` key prefix (S3), aged by
//! the `kiln:created` tag or the resource's own timestamp.
//!
//! Images carry the run tag too, finished or not, so an image counts as a
//! leftover only while its run is visibly unfinished: the run's security
//! group or a live builder still exists (a finished bake deletes both before
//! it returns). Snapshots count once no image refers to them; manifests once
//! no image points to them.
//!
//! Copies in other regions (`copy_to_region`) are found the same way, in
//! the regions the caller names: their run's builder and security group
//! are here, so a copy counts as a leftover while its run is visibly
//! unfinished here. Hence one gc pass must name every region: a pass
//! without them removes the builder that marks the run as unfinished.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;

use super::KEY_PREFIX;
use super::builders::AwsBuilders;
use super::error::{is_gone, sdk_error};
use super::images::{AwsImages, MANIFEST_TAG, snapshot_ids};
use super::sdk::{Ctx, parse_rfc3339, tags_from_ec2};
use crate::error::{CloudError, Result};
use crate::ids::{ImageId, Region, RunId, Tags, tags};
use crate::images::Images;
use crate::sweep::{Janitor, Leftover, ResourceKind};
use crate::time::now_unix;

pub(crate) struct AwsJanitor {
    ctx: Arc<Ctx>,
    images: AwsImages,
    builders: AwsBuilders,
}

impl AwsJanitor {
    pub fn new(ctx: Arc<Ctx>) -> AwsJanitor {
        AwsJanitor {
            images: AwsImages::new(ctx.clone()),
            builders: AwsBuilders::new(ctx.clone()),
            ctx,
        }
    }

    fn run_filter() -> Filter {
        Filter::builder().name("tag-key").values(tags::RUN).build()
    }

    /// Images and snapshots in one region (`elsewhere`: not the configured
    /// one). kiln's images of unfinished runs are leftovers, as are images
    /// a run tagged but never gave a digest; snapshots are leftovers once
    /// no other image there refers to them. The images that stay keep
    /// their manifests (added to `kept_manifests`).
    async fn images_and_snapshots(
        &self,
        ec2: &aws_sdk_ec2::Client,
        region: &Region,
        elsewhere: bool,
        unfinished: &BTreeSet<RunId>,
        found: &mut Vec<Found>,
        kept_manifests: &mut BTreeSet<String>,
    ) -> Result<()> {
        let at = elsewhere.then(|| region.clone());
        // All self-owned images: kiln's unfinished ones are leftovers; the
        // rest keep their snapshots and manifests alive.
        let out = ec2
            .describe_images()
            .owners("self")
            .send()
            .await
            .map_err(|e| sdk_error("DescribeImages", format!("owned by self in {region}"), e))?;
        let mut kept_snaps = BTreeSet::new();
        for img in out.images() {
            let t = tags_from_ec2(img.tags());
            let run = run_of(&t);
            let leftover = run.as_ref().is_some_and(|r| unfinished.contains(r))
                || (run.is_some() && !t.contains_key(tags::DIGEST));
            if leftover {
                found.push(Found {
                    kind: ResourceKind::Image,
                    id: img.image_id().unwrap_or_default().to_owned(),
                    run,
                    created: img
                        .creation_date()
                        .and_then(parse_rfc3339)
                        .or_else(|| created_of(&t)),
                    region: at.clone(),
                });
            } else {
                kept_snaps.extend(snapshot_ids(img));
                if let Some(m) = t.get(MANIFEST_TAG) {
                    kept_manifests.insert(m.clone());
                }
            }
        }

        let out = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(Self::run_filter())
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeSnapshots",
                    format!("tagged {} in {region}", tags::RUN),
                    e,
                )
            })?;
        for s in out.snapshots() {
            let id = s.snapshot_id().unwrap_or_default().to_owned();
            if kept_snaps.contains(&id) {
                continue;
            }
            let t = tags_from_ec2(s.tags());
            found.push(Found {
                kind: ResourceKind::Snapshot,
                id,
                run: run_of(&t),
                created: created_of(&t)
                    .or_else(|| s.start_time().and_then(|d| u64::try_from(d.secs()).ok())),
                region: at.clone(),
            });
        }
        Ok(())
    }
}

struct Found {
    kind: ResourceKind,
    id: String,
    run: Option<RunId>,
    created: Option<u64>,
    /// `None`: the configured region.
    region: Option<Region>,
}

fn age(now: u64, created: Option<u64>) -> Duration {
    // No timestamp at all: treat as old; kiln always sets one, so this is
    // something that lost it, and it carries kiln's run tag.
    Duration::from_secs(created.map_or(u64::MAX / 2, |c| now.saturating_sub(c)))
}

fn created_of(t: &Tags) -> Option<u64> {
    t.get(tags::CREATED).and_then(|c| parse_rfc3339(c))
}

fn run_of(t: &Tags) -> Option<RunId> {
    t.get(tags::RUN).map(|r| RunId::from(r.as_str()))
}

#[async_trait]
impl Janitor for AwsJanitor {
    async fn leftovers(&self, older_than: Duration, regions: &[Region]) -> Result<Vec<Leftover>> {
        let ctx = &self.ctx;
        let place = ctx.place();
        let now = now_unix();
        let mut found: Vec<Found> = Vec::new();

        // Builders that are not terminated yet.
        let out = ctx
            .ec2
            .describe_instances()
            .filters(Self::run_filter())
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeInstances",
                    format!("tagged {} {place}", tags::RUN),
                    e,
                )
            })?;
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let t = tags_from_ec2(i.tags());
            found.push(Found {
                kind: ResourceKind::Instance,
                id: i.instance_id().unwrap_or_default().to_owned(),
                run: run_of(&t),
                created: created_of(&t)
                    .or_else(|| i.launch_time().and_then(|d| u64::try_from(d.secs()).ok())),
                region: None,
            });
        }

        let out = ctx
            .ec2
            .describe_security_groups()
            .filters(Self::run_filter())
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeSecurityGroups",
                    format!("tagged {} {place}", tags::RUN),
                    e,
                )
            })?;
        for g in out.security_groups() {
            let t = tags_from_ec2(g.tags());
            found.push(Found {
                kind: ResourceKind::SecurityGroup,
                id: g.group_id().unwrap_or_default().to_owned(),
                run: run_of(&t),
                created: created_of(&t),
                region: None,
            });
        }

        let out = ctx
            .ec2
            .describe_key_pairs()
            .filters(Self::run_filter())
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeKeyPairs",
                    format!("tagged {} {place}", tags::RUN),
                    e,
                )
            })?;
        for k in out.key_pairs() {
            let t = tags_from_ec2(k.tags());
            found.push(Found {
                kind: ResourceKind::KeyPair,
                id: k
                    .key_pair_id()
                    .or(k.key_name())
                    .unwrap_or_default()
                    .to_owned(),
                run: run_of(&t),
                created: created_of(&t)
                    .or_else(|| k.create_time().and_then(|d| u64::try_from(d.secs()).ok())),
                region: None,
            });
        }

        // Runs that visibly did not finish.
        let unfinished: BTreeSet<RunId> = found
            .iter()
            .filter(|f| matches!(f.kind, ResourceKind::Instance | ResourceKind::SecurityGroup))
            .filter_map(|f| f.run.clone())
            .collect();

        // Images and snapshots here and in the other regions asked for
        // (copies): a run's builder and security group live only here, so
        // whether a run finished is known before looking elsewhere.
        let mut kept_manifests = BTreeSet::new();
        self.images_and_snapshots(
            &ctx.ec2,
            &ctx.region,
            false,
            &unfinished,
            &mut found,
            &mut kept_manifests,
        )
        .await?;
        let elsewhere: BTreeSet<&Region> = regions.iter().filter(|r| **r != ctx.region).collect();
        for region in elsewhere {
            self.images_and_snapshots(
                &ctx.ec2_in(region),
                region,
                true,
                &unfinished,
                &mut found,
                &mut kept_manifests,
            )
            .await?;
        }

        // S3: run scratch objects, and manifests no image points to.
        if let Some(bucket) = ctx.bucket.as_deref() {
            let mut token = None;
            loop {
                let out = ctx
                    .s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(KEY_PREFIX)
                    .set_continuation_token(token.take())
                    .send()
                    .await;
                let out = match out {
                    Ok(o) => o,
                    // No bucket, nothing in it.
                    Err(e) if is_gone(&e) => break,
                    Err(e) => {
                        return Err(sdk_error(
                            "ListObjectsV2",
                            format!("s3://{bucket}/{KEY_PREFIX}"),
                            e,
                        ));
                    }
                };
                for o in out.contents() {
                    let Some(key) = o.key() else { continue };
                    let rest = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
                    let run = if let Some(r) = rest.strip_prefix("runs/") {
                        r.split('/').next().map(RunId::from)
                    } else if rest.starts_with("images/") {
                        if kept_manifests.contains(&format!("s3://{bucket}/{key}")) {
                            continue;
                        }
                        None
                    } else {
                        continue;
                    };
                    found.push(Found {
                        kind: ResourceKind::Object,
                        id: key.to_owned(),
                        run,
                        created: o.last_modified().and_then(|d| u64::try_from(d.secs()).ok()),
                        region: None,
                    });
                }
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }

        // Removal order: instances before their groups, images before
        // their snapshots, objects last.
        let rank = |k: ResourceKind| match k {
            ResourceKind::Instance => 0,
            ResourceKind::Image => 1,
            ResourceKind::Snapshot => 2,
            ResourceKind::SecurityGroup => 3,
            ResourceKind::KeyPair => 4,
            _ => 5,
        };
        found.sort_by(|a, b| {
            rank(a.kind)
                .cmp(&rank(b.kind))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(found
            .into_iter()
            .filter(|f| !f.id.is_empty())
            .map(|f| Leftover {
                age: age(now, f.created),
                kind: f.kind,
                id: f.id,
                run: f.run,
                region: f.region,
            })
            .filter(|l| l.age >= older_than)
            .collect())
    }

    async fn remove(&self, item: &Leftover) -> Result<()> {
        let ctx = &self.ctx;
        let id = item.id.as_str();
        if let Some(region) = item.region.as_ref().filter(|r| **r != ctx.region) {
            // Elsewhere kiln makes only image copies (and their snapshots).
            return match item.kind {
                ResourceKind::Image => {
                    self.images
                        .deregister_copy(&ImageId::from(id), region)
                        .await
                }
                ResourceKind::Snapshot => {
                    let ec2 = ctx.ec2_in(region);
                    match ec2.delete_snapshot().snapshot_id(id).send().await {
                        Ok(_) => Ok(()),
                        Err(e) if is_gone(&e) => Ok(()),
                        Err(e) => Err(sdk_error("DeleteSnapshot", format!("{id} in {region}"), e)),
                    }
                }
                other => Err(CloudError::invalid(
                    "leftover",
                    format!("{other:?} {id} in {region}: kiln makes only image copies there"),
                )),
            };
        }
        let place = ctx.place();
        match item.kind {
            ResourceKind::Instance => {
                match ctx.ec2.terminate_instances().instance_ids(id).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if is_gone(&e) => Ok(()),
                    Err(e) => Err(sdk_error("TerminateInstances", format!("{id} {place}"), e)),
                }
            }
            ResourceKind::Image => self.images.deregister(&ImageId::from(id)).await,
            ResourceKind::Snapshot => {
                match ctx.ec2.delete_snapshot().snapshot_id(id).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if is_gone(&e) => Ok(()),
                    Err(e) => Err(sdk_error("DeleteSnapshot", format!("{id} {place}"), e)),
                }
            }
            ResourceKind::SecurityGroup => {
                // Its builder may still be shutting down.
                self.builders.delete_group(id).await
            }
            ResourceKind::KeyPair => match ctx.ec2.delete_key_pair().key_pair_id(id).send().await {
                Ok(_) => Ok(()),
                Err(e) if is_gone(&e) => Ok(()),
                Err(e) => Err(sdk_error("DeleteKeyPair", format!("{id} {place}"), e)),
            },
            ResourceKind::Object => self.builders.delete_objects(&[id.to_owned()]).await,
            ResourceKind::Dir | ResourceKind::File => Err(CloudError::Unsupported {
                backend: super::BACKEND,
                op: "removing local files",
            }),
        }
    }
}
