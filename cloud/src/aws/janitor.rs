//! `bake gc` on aws: everything a crashed run left, found by the
//! `kiln:bake` tag (EC2) or the `kiln/runs/<run>/` key prefix (S3), aged by
//! the `kiln:created` tag or the resource's own timestamp.
//!
//! Images carry the run tag too, finished or not; what tells them apart is
//! `kiln:state` ([`image_leftover`]):
//! - `baking`: the bake has not finished publishing it. Its run is alive
//!   only as long as `--older-than` allows, so the image, its snapshots
//!   and its copies are leftovers once the run's oldest `baking` image is
//!   that old — dated by the run, not each on its own, so a copy made
//!   minutes after its image goes in the same pass as the image.
//! - `complete`: a release, never a leftover — except a copy (marked
//!   before its image, see bake) whose image here is still `baking`.
//! - unmarked (made before the marker): the old rule, a leftover while its
//!   run is visibly unfinished (its builder or security group exists) or
//!   if it has no digest.
//!
//! Copies live in other regions. A `baking` image names them in its
//! `kiln:copies` tag, so gc scans those regions for a dead run's copies
//! without being told; `regions` adds more (copies of unmarked images). A
//! region gc only learned of from a tag and cannot scan is skipped with a
//! warning, and the images naming it stay (with their marker), so a later
//! gc finds their copies. Copies are removed before the images they were
//! made from, for the same reason.
//!
//! Snapshots count once no image that stays refers to them; manifests once
//! no image that stays points to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, Image, Snapshot};

use super::KEY_PREFIX;
use super::builders::AwsBuilders;
use super::error::{is_gone, sdk_error};
use super::images::{AwsImages, MANIFEST_TAG, snapshot_ids};
use super::sdk::{Ctx, all_pages, tags_from_ec2};
use crate::error::{CloudError, Result};
use crate::ids::{ImageId, Region, RunId, Tags, tags};
use crate::images::{BakeState, Images, copy_regions};
use crate::sweep::{Janitor, Leftover, ResourceKind};
use crate::time::now_unix;
use crate::time::parse_rfc3339;

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

    /// Builders not terminated yet, their security groups and key pairs
    /// (the configured region).
    async fn builders(&self) -> Result<Vec<Found>> {
        let ctx = &self.ctx;
        let place = ctx.place();
        let mut found: Vec<Found> = Vec::new();
        let reservations = all_pages("DescribeInstances", |token| {
            let req = ctx
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
                .max_results(1000)
                .set_next_token(token);
            async move {
                let out = req.send().await?;
                Ok((out.reservations.unwrap_or_default(), out.next_token))
            }
        })
        .await
        .map_err(|e| {
            sdk_error(
                "DescribeInstances",
                format!("tagged {} {place}", tags::RUN),
                e,
            )
        })?;
        for i in reservations.iter().flat_map(|r| r.instances()) {
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

        let groups = all_pages("DescribeSecurityGroups", |token| {
            let req = ctx
                .ec2
                .describe_security_groups()
                .filters(Self::run_filter())
                .max_results(1000)
                .set_next_token(token);
            async move {
                let out = req.send().await?;
                Ok((out.security_groups.unwrap_or_default(), out.next_token))
            }
        })
        .await
        .map_err(|e| {
            sdk_error(
                "DescribeSecurityGroups",
                format!("tagged {} {place}", tags::RUN),
                e,
            )
        })?;
        for g in &groups {
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

        Ok(found)
    }

    /// Images and snapshots in the other regions: those asked for (an
    /// error there is gc's) and those `named` by dead runs' images (an
    /// error there holds the runs naming it, in `runs.hold`).
    async fn elsewhere<'r>(
        &self,
        named: &'r BTreeMap<Region, BTreeSet<RunId>>,
        regions: &'r [Region],
        runs: &mut Runs,
    ) -> Result<Vec<(&'r Region, (Vec<Image>, Vec<Snapshot>))>> {
        let ctx = &self.ctx;
        let mut elsewhere: BTreeMap<&Region, Option<&BTreeSet<RunId>>> = BTreeMap::new();
        for (r, rs) in named {
            elsewhere.insert(r, Some(rs));
        }
        for r in regions {
            elsewhere.insert(r, None);
        }
        elsewhere.remove(&ctx.region);
        let mut scanned = Vec::new();
        for (region, naming) in elsewhere {
            match Self::images_and_snapshots(&ctx.ec2_in(region), region).await {
                Ok(v) => scanned.push((region, v)),
                Err(e) => match naming {
                    None => return Err(e),
                    Some(rs) => {
                        tracing::warn!(
                            "cannot look for image copies in {region} ({e}); keeping the images of {} for a later gc",
                            rs.iter().map(RunId::as_str).collect::<Vec<_>>().join(", ")
                        );
                        runs.hold.extend(rs.iter().cloned());
                    }
                },
            }
        }

        Ok(scanned)
    }

    /// S3: run scratch objects, and manifests no kept image points to.
    async fn objects(&self, kept_manifests: &BTreeSet<String>) -> Result<Vec<Found>> {
        let ctx = &self.ctx;
        let mut found = Vec::new();
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

        Ok(found)
    }

    fn run_filter() -> Filter {
        Filter::builder().name("tag-key").values(tags::RUN).build()
    }

    /// Self-owned images and the run-tagged snapshots in one region.
    async fn images_and_snapshots(
        ec2: &aws_sdk_ec2::Client,
        region: &Region,
    ) -> Result<(Vec<Image>, Vec<Snapshot>)> {
        let images = super::images::owned_images(ec2, Vec::new())
            .await
            .map_err(|e| sdk_error("DescribeImages", format!("owned by self in {region}"), e))?;
        let snapshots = all_pages("DescribeSnapshots", |token| {
            let req = ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(Self::run_filter())
                .max_results(1000)
                .set_next_token(token);
            async move {
                let out = req.send().await?;
                Ok((out.snapshots.unwrap_or_default(), out.next_token))
            }
        })
        .await
        .map_err(|e| {
            sdk_error(
                "DescribeSnapshots",
                format!("tagged {} in {region}", tags::RUN),
                e,
            )
        })?;
        Ok((images, snapshots))
    }
}

/// What gc knows about runs once it has looked at the configured region.
#[derive(Debug, Default)]
struct Runs {
    /// Runs with a builder or security group (visibly unfinished: the old
    /// rule, for unmarked images).
    unfinished: BTreeSet<RunId>,
    /// Runs with a `baking` image here, and when the oldest was created:
    /// the run's age.
    baking: BTreeMap<RunId, Option<u64>>,
    /// Runs with a `complete` image here.
    complete: BTreeSet<RunId>,
    /// Runs whose images here must stay this pass: a region their copies
    /// may be in could not be scanned.
    hold: BTreeSet<RunId>,
}

impl Runs {
    /// When `run` started to count, for its resources' age: the oldest of
    /// the resource's own time and its run's `baking` image.
    fn created(&self, run: Option<&RunId>, own: Option<u64>) -> Option<u64> {
        match run.and_then(|r| self.baking.get(r)) {
            Some(Some(r)) => Some(own.map_or(*r, |o| o.min(*r))),
            _ => own,
        }
    }
}

/// Pure: whether an image kiln tagged (`t`) is left over from a run that
/// did not finish, age aside. See the module docs.
fn image_leftover(t: &Tags, runs: &Runs) -> bool {
    let run = run_of(t);
    let Some(run) = run else {
        // Not made by a bake (no run tag), or it lost it: a baking one was
        // still kiln's, and unfinished.
        return BakeState::of(t) == BakeState::Baking;
    };
    match BakeState::of(t) {
        // A copy of a finished run's image cannot be baking (copies are
        // marked first); keep it rather than guess.
        BakeState::Baking => !runs.complete.contains(&run),
        BakeState::Complete => runs.baking.contains_key(&run),
        BakeState::Unmarked => {
            runs.unfinished.contains(&run)
                || runs.baking.contains_key(&run)
                || !t.contains_key(tags::DIGEST)
        }
    }
}

/// Pure: the leftovers among one region's images and snapshots
/// (`region`: `None` for the configured one). Images that stay keep their
/// snapshots and their manifests (added to `kept_manifests`).
fn classify(
    images: &[Image],
    snapshots: &[Snapshot],
    region: Option<&Region>,
    runs: &Runs,
    now: u64,
    older_than: Duration,
    kept_manifests: &mut BTreeSet<String>,
) -> Vec<Found> {
    let mut found = Vec::new();
    let mut kept_snaps = BTreeSet::new();
    for img in images {
        let t = tags_from_ec2(img.tags());
        let run = run_of(&t);
        let created = runs.created(
            run.as_ref(),
            img.creation_date()
                .and_then(parse_rfc3339)
                .or_else(|| created_of(&t)),
        );
        let held = region.is_none() && run.as_ref().is_some_and(|r| runs.hold.contains(r));
        if !held && image_leftover(&t, runs) && age(now, created) >= older_than {
            found.push(Found {
                kind: ResourceKind::Image,
                id: img.image_id().unwrap_or_default().to_owned(),
                run,
                created,
                region: region.cloned(),
            });
        } else {
            kept_snaps.extend(snapshot_ids(img));
            if let Some(m) = t.get(MANIFEST_TAG) {
                kept_manifests.insert(m.clone());
            }
        }
    }
    for s in snapshots {
        let id = s.snapshot_id().unwrap_or_default().to_owned();
        if kept_snaps.contains(&id) {
            continue;
        }
        let t = tags_from_ec2(s.tags());
        let run = run_of(&t);
        found.push(Found {
            kind: ResourceKind::Snapshot,
            id,
            created: runs.created(
                run.as_ref(),
                created_of(&t)
                    .or_else(|| s.start_time().and_then(|d| u64::try_from(d.secs()).ok())),
            ),
            run,
            region: region.cloned(),
        });
    }
    found
}

/// Pure: what the listed builders, groups and this region's images say
/// about runs, and the regions dead runs' copies went to (runs younger
/// than `older_than` left out).
fn runs_from(
    found: &[Found],
    images: &[Image],
    now: u64,
    older_than: Duration,
) -> (Runs, BTreeMap<Region, BTreeSet<RunId>>) {
    // Runs that visibly did not finish.
    let mut runs = Runs {
        unfinished: found
            .iter()
            .filter(|f| matches!(f.kind, ResourceKind::Instance | ResourceKind::SecurityGroup))
            .filter_map(|f| f.run.clone())
            .collect(),
        ..Runs::default()
    };

    let mut named: BTreeMap<Region, BTreeSet<RunId>> = BTreeMap::new();
    for img in images {
        let t = tags_from_ec2(img.tags());
        let Some(run) = run_of(&t) else { continue };
        match BakeState::of(&t) {
            BakeState::Baking => {
                let created = img
                    .creation_date()
                    .and_then(parse_rfc3339)
                    .or_else(|| created_of(&t));
                let oldest = runs.baking.entry(run.clone()).or_insert(created);
                *oldest = match (*oldest, created) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                for r in copy_regions(&t) {
                    named.entry(r).or_default().insert(run.clone());
                }
            }
            BakeState::Complete => {
                runs.complete.insert(run);
            }
            BakeState::Unmarked => {}
        }
    }
    // Only a dead run's copies are leftovers: skip regions that only
    // live runs name.
    named.retain(|_, rs| {
        rs.retain(|r| age(now, runs.created(Some(r), None)) >= older_than);
        !rs.is_empty()
    });

    (runs, named)
}

/// Pure: the leftovers old enough, in removal order: instances before
/// their groups, copies before the images they were made from (which name
/// their regions), images before their snapshots, objects last.
fn finish(mut found: Vec<Found>, runs: &Runs, now: u64, older_than: Duration) -> Vec<Leftover> {
    let rank = |f: &Found| match f.kind {
        ResourceKind::Instance => 0,
        ResourceKind::Image if f.region.is_some() => 1,
        ResourceKind::Image => 2,
        ResourceKind::Snapshot => 3,
        ResourceKind::SecurityGroup => 4,
        ResourceKind::KeyPair => 5,
        _ => 6,
    };
    found.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.id.cmp(&b.id))
    });
    found
        .into_iter()
        .filter(|f| !f.id.is_empty())
        .map(|f| Leftover {
            age: age(now, runs.created(f.run.as_ref(), f.created)),
            kind: f.kind,
            id: f.id,
            run: f.run,
            region: f.region,
        })
        .filter(|l| l.age >= older_than)
        .collect()
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
    /// Lists (builders, their groups and key pairs; images and snapshots
    /// here and wherever a dead run's copies went; S3 objects), then
    /// decides with the pure [`runs_from`], [`classify`] and [`finish`].
    async fn leftovers(&self, older_than: Duration, regions: &[Region]) -> Result<Vec<Leftover>> {
        let ctx = &self.ctx;
        let now = now_unix();
        let mut found = self.builders().await?;
        // Images here date the runs that did not finish publishing and name
        // the regions their copies went to; so look here first.
        let (images, snapshots) = Self::images_and_snapshots(&ctx.ec2, &ctx.region).await?;
        let (mut runs, named) = runs_from(&found, &images, now, older_than);
        let scanned = self.elsewhere(&named, regions, &mut runs).await?;
        let mut kept_manifests = BTreeSet::new();
        found.extend(classify(
            &images,
            &snapshots,
            None,
            &runs,
            now,
            older_than,
            &mut kept_manifests,
        ));
        for (region, (images, snapshots)) in &scanned {
            found.extend(classify(
                images,
                snapshots,
                Some(region),
                &runs,
                now,
                older_than,
                &mut kept_manifests,
            ));
        }
        found.extend(self.objects(&kept_manifests).await?);
        Ok(finish(found, &runs, now, older_than))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(run: Option<&str>, state: Option<&str>, digest: bool) -> Tags {
        let mut t = Tags::new();
        if let Some(r) = run {
            t.insert(tags::RUN.into(), r.into());
        }
        if let Some(s) = state {
            t.insert(tags::STATE.into(), s.into());
        }
        if digest {
            t.insert(tags::DIGEST.into(), "d".into());
        }
        t
    }

    fn runs() -> Runs {
        Runs {
            unfinished: [RunId::from("building")].into(),
            baking: [(RunId::from("dead"), Some(100))].into(),
            complete: [RunId::from("done")].into(),
            hold: BTreeSet::new(),
        }
    }

    #[test]
    fn complete_images_are_releases_whatever_their_run() {
        let r = runs();
        for run in ["done", "building", "other"] {
            assert!(
                !image_leftover(&t(Some(run), Some("complete"), true), &r),
                "{run}"
            );
        }
        // ...except a copy marked before its image, which is still baking.
        assert!(image_leftover(&t(Some("dead"), Some("complete"), true), &r));
    }

    #[test]
    fn baking_images_are_leftovers_unless_their_run_finished() {
        let r = runs();
        assert!(image_leftover(&t(Some("dead"), Some("baking"), true), &r));
        // A copy elsewhere whose image is gone: its own age decides.
        assert!(image_leftover(&t(Some("other"), Some("baking"), true), &r));
        assert!(image_leftover(&t(None, Some("baking"), true), &r));
        assert!(!image_leftover(&t(Some("done"), Some("baking"), true), &r));
    }

    #[test]
    fn unmarked_images_keep_the_old_rule() {
        let r = runs();
        assert!(image_leftover(&t(Some("building"), None, true), &r));
        assert!(image_leftover(&t(Some("dead"), None, true), &r));
        assert!(image_leftover(&t(Some("other"), None, false), &r));
        assert!(!image_leftover(&t(Some("other"), None, true), &r));
        assert!(!image_leftover(&t(None, None, true), &r));
        assert!(!image_leftover(&t(None, Some("weird"), false), &r));
    }

    #[test]
    fn a_baking_run_dates_all_its_resources() {
        let r = runs();
        let dead = RunId::from("dead");
        assert_eq!(r.created(Some(&dead), Some(500)), Some(100));
        assert_eq!(r.created(Some(&dead), Some(50)), Some(50));
        assert_eq!(r.created(Some(&dead), None), Some(100));
        assert_eq!(r.created(Some(&RunId::from("other")), Some(500)), Some(500));
        assert_eq!(r.created(None, None), None);
    }

    fn image(id: &str, created: &str, t: &Tags) -> Image {
        Image::builder()
            .image_id(id)
            .creation_date(created)
            .set_tags(Some(crate::aws::sdk::ec2_tags(t)))
            .build()
    }

    fn found(kind: ResourceKind, id: &str, run: Option<&str>, region: Option<&str>) -> Found {
        Found {
            kind,
            id: id.into(),
            run: run.map(RunId::from),
            created: Some(0),
            region: region.map(Region::from),
        }
    }

    #[test]
    fn runs_come_from_builders_and_images_and_only_dead_runs_name_regions() {
        let now = 1_000_000;
        let mut dead = t(Some("dead"), Some("baking"), true);
        dead.insert(tags::COPIES.into(), "eu-west-1".into());
        let mut young = t(Some("young"), Some("baking"), true);
        young.insert(tags::COPIES.into(), "us-west-2".into());
        let images = [
            image("ami-1", "1970-01-01T00:01:40Z", &dead),
            image("ami-2", &crate::time::rfc3339(now - 10), &young),
            image(
                "ami-3",
                "1970-01-01T00:00:00Z",
                &t(Some("done"), Some("complete"), true),
            ),
            image(
                "ami-4",
                "1970-01-01T00:00:00Z",
                &t(None, Some("baking"), true),
            ),
        ];
        let builders = [
            found(ResourceKind::Instance, "i-1", Some("building"), None),
            found(ResourceKind::KeyPair, "k-1", Some("keys-only"), None),
        ];
        let (runs, named) = runs_from(&builders, &images, now, Duration::from_secs(3600));
        assert_eq!(runs.unfinished, [RunId::from("building")].into());
        assert_eq!(runs.baking[&RunId::from("dead")], Some(100));
        assert!(runs.baking.contains_key(&RunId::from("young")));
        assert_eq!(runs.complete, [RunId::from("done")].into());
        assert_eq!(
            named,
            [(Region::from("eu-west-1"), [RunId::from("dead")].into())].into(),
            "the young run's copy region is not scanned yet"
        );
    }

    #[test]
    fn finish_orders_removals_and_drops_the_young() {
        let runs = Runs {
            baking: [
                (RunId::from("young"), Some(990)),
                (RunId::from("old"), Some(500)),
            ]
            .into(),
            ..Runs::default()
        };
        let mut young = found(ResourceKind::Snapshot, "snap-young", Some("young"), None);
        young.created = Some(950);
        // Made late by a run that started long ago: the run dates it.
        let mut dated = found(ResourceKind::Snapshot, "snap-dated", Some("old"), None);
        dated.created = Some(995);
        let list = vec![
            found(ResourceKind::Object, "kiln/runs/r/x", Some("r"), None),
            found(ResourceKind::SecurityGroup, "sg-1", Some("r"), None),
            found(ResourceKind::Snapshot, "snap-1", Some("r"), None),
            found(ResourceKind::Image, "ami-src", Some("r"), None),
            found(
                ResourceKind::Image,
                "ami-copy",
                Some("r"),
                Some("eu-west-1"),
            ),
            found(ResourceKind::KeyPair, "key-1", Some("r"), None),
            found(ResourceKind::Instance, "i-1", Some("r"), None),
            found(ResourceKind::Instance, "", Some("r"), None),
            young,
            dated,
        ];
        let out = finish(list, &runs, 1000, Duration::from_secs(100));
        let ids: Vec<&str> = out.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "i-1",
                "ami-copy",
                "ami-src",
                "snap-1",
                "snap-dated",
                "sg-1",
                "key-1",
                "kiln/runs/r/x"
            ]
        );
        assert_eq!(out[0].age, Duration::from_secs(1000));
    }
}
