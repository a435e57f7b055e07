//! `bake prune --keep N`: delete all but the newest N images of each name,
//! never one a group uses or may roll back to ([`cloud::protected_images`]).
//! A deprecated image (`bake deprecate`, its time passed) is not one of
//! the N and goes whatever its age, unless protected.
//! Only releases count: an image still `baking` (`kiln:state`) is a bake
//! in progress or a dead run's leftover — `bake gc`'s to judge, never
//! prune's — so it is neither one of the N nor deleted.
//! The decision is the pure [`plan`]; the command only executes it.

use std::collections::{BTreeMap, BTreeSet};

use cloud::{BakeState, ImageId, ImageInfo, protected_images, tags};
use serde::Serialize;

use super::Global;
use crate::error::BakeError;
use crate::exit;

/// Previous launch-template versions of each group that count as in use.
pub const ROLLBACK_VERSIONS: usize = 2;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to keep per name (newest first).
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// How many previous launch-template versions of each group stay
    /// protected (the rollback window).
    #[arg(long, value_name = "N", default_value_t = ROLLBACK_VERSIONS)]
    pub rollback_versions: usize,
    /// Delete only images older than this (e.g. 30d, 12h): younger ones
    /// beyond the newest N stay too.
    #[arg(long, value_name = "D", value_parser = super::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    pub delete: Vec<ImageId>,
    pub keep: Vec<ImageId>,
    /// Older than the newest N, but in use or a rollback target.
    pub protected: Vec<ImageId>,
    /// Not releases (`baking`): left to `bake gc`.
    pub unfinished: Vec<ImageId>,
    /// Older than the newest N, but younger than `--older-than`.
    pub recent: Vec<ImageId>,
    /// Of `delete` and `protected`: those deprecated (`bake deprecate`).
    pub deprecated: Vec<ImageId>,
}

/// Pure: which images to delete. `images` in any order; `created_after`
/// (Unix seconds, from `--older-than`): images created after it stay;
/// `now`: images deprecated by then are not kept.
pub fn plan(
    images: &[ImageInfo],
    protected: &BTreeSet<ImageId>,
    keep: usize,
    created_after: Option<u64>,
    now: u64,
) -> PrunePlan {
    let mut by_name: BTreeMap<&str, Vec<&ImageInfo>> = BTreeMap::new();
    let mut p = PrunePlan::default();
    for i in images {
        if i.bake_state() == BakeState::Baking {
            p.unfinished.push(i.id.clone());
            continue;
        }
        let name = i
            .tags
            .get(tags::NAME)
            .map_or(i.name.as_str(), String::as_str);
        by_name.entry(name).or_default().push(i);
    }
    p.unfinished.sort();
    for (_, mut list) in by_name {
        list.sort_by(|a, b| {
            b.created_unix
                .cmp(&a.created_unix)
                .then_with(|| b.id.cmp(&a.id))
        });
        let mut kept = 0;
        for i in list {
            let deprecated = i.is_deprecated(now);
            if deprecated {
                p.deprecated.push(i.id.clone());
            }
            if kept < keep && !deprecated {
                kept += 1;
                p.keep.push(i.id.clone());
            } else if protected.contains(&i.id) {
                p.protected.push(i.id.clone());
            } else if !deprecated && created_after.is_some_and(|t| i.created_unix > t) {
                p.recent.push(i.id.clone());
            } else {
                p.delete.push(i.id.clone());
            }
        }
    }
    p
}

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a PrunePlan,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let images = cloud.images().list().await?;
    let groups = cloud.groups().list_groups().await?;
    let protected = protected_images(&groups, args.rollback_versions);
    let now = cloud::time::now_unix();
    let created_after = args.older_than.map(|d| now.saturating_sub(d.as_secs()));
    let p = plan(&images, &protected, args.keep, created_after, now);
    for id in &p.recent {
        eprintln!("bake: keeping {id}: younger than --older-than");
    }
    for id in &p.protected {
        eprintln!("bake: keeping {id}: a group uses it or may roll back to it");
    }
    for id in p.deprecated.iter().filter(|id| p.delete.contains(id)) {
        eprintln!("bake: {id} is deprecated: not one of the newest --keep");
    }
    for id in &p.unfinished {
        eprintln!(
            "bake: skipping {id}: its bake has not completed (`bake gc` removes it once its run is dead)"
        );
    }
    if !args.dry_run {
        for id in &p.delete {
            cloud.images().deregister(id).await?;
            eprintln!("bake: deleted {id}");
        }
    }
    if args.json {
        super::print_json(&Report {
            dry_run: args.dry_run,
            plan: &p,
        })?;
    } else {
        let mut out = String::new();
        for id in &p.delete {
            outln!(out, "{id}");
        }
        super::write_stdout(&out)?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, name: &str, t: u64) -> ImageInfo {
        with_state(id, name, t, tags::STATE_COMPLETE)
    }

    fn with_state(id: &str, name: &str, t: u64, state: &str) -> ImageInfo {
        let mut tags = cloud::Tags::new();
        tags.insert(tags::NAME.into(), name.into());
        if !state.is_empty() {
            tags.insert(tags::STATE.into(), state.into());
        }
        ImageInfo {
            id: ImageId::from(id),
            name: name.into(),
            region: cloud::Region::from("local"),
            state: cloud::ImageState::Available,
            created_unix: t,
            tags,
            size_bytes: None,
        }
    }

    #[test]
    fn keeps_newest_per_name_and_protected() {
        let images = vec![
            img("a1", "a", 1),
            img("a3", "a", 3),
            img("a2", "a", 2),
            img("b1", "b", 1),
        ];
        let protected: BTreeSet<ImageId> = [ImageId::from("a1")].into();
        let p = plan(&images, &protected, 1, None, 0);
        assert_eq!(p.keep, vec![ImageId::from("a3"), ImageId::from("b1")]);
        assert_eq!(p.delete, vec![ImageId::from("a2")]);
        assert_eq!(p.protected, vec![ImageId::from("a1")]);
        assert_eq!(plan(&images, &protected, 0, None, 0).keep, vec![]);
    }

    #[test]
    fn baking_images_are_neither_releases_nor_deleted() {
        let images = vec![
            img("a1", "a", 1),
            // Newest, but unfinished: must not push a1 out of the newest 1.
            with_state("a2", "a", 2, tags::STATE_BAKING),
            // Made before the marker: a release like a complete one.
            with_state("a0", "a", 0, ""),
        ];
        let p = plan(&images, &BTreeSet::new(), 1, None, 0);
        assert_eq!(p.keep, vec![ImageId::from("a1")]);
        assert_eq!(p.delete, vec![ImageId::from("a0")]);
        assert_eq!(p.unfinished, vec![ImageId::from("a2")]);
        let p = plan(&images, &BTreeSet::new(), 0, None, 0);
        assert_eq!(p.delete, vec![ImageId::from("a1"), ImageId::from("a0")]);
        assert_eq!(p.unfinished, vec![ImageId::from("a2")]);
    }

    #[test]
    fn older_than_keeps_the_young_beyond_the_newest() {
        let images = vec![
            img("a1", "a", 100),
            img("a2", "a", 200),
            img("a3", "a", 300),
        ];
        // Created after 150: a2 stays although it is beyond the newest 1.
        let p = plan(&images, &BTreeSet::new(), 1, Some(150), 0);
        assert_eq!(p.keep, vec![ImageId::from("a3")]);
        assert_eq!(p.recent, vec![ImageId::from("a2")]);
        assert_eq!(p.delete, vec![ImageId::from("a1")]);
        let p = plan(&images, &BTreeSet::new(), 0, Some(350), 0);
        assert_eq!(p.delete.len(), 3, "all made before the cutoff");
        let p = plan(&images, &BTreeSet::new(), 0, Some(50), 0);
        assert_eq!(
            (p.delete.len(), p.recent.len()),
            (0, 3),
            "all made after it"
        );
    }

    #[test]
    fn deprecated_images_are_not_kept_but_protection_wins() {
        let mut a3 = img("a3", "a", 300);
        a3.tags
            .insert(tags::DEPRECATE_AT.into(), cloud::time::rfc3339(1000));
        let mut a1 = img("a1", "a", 100);
        a1.tags
            .insert(tags::DEPRECATE_AT.into(), cloud::time::rfc3339(1000));
        let images = vec![a1, img("a2", "a", 200), a3];
        let protected: BTreeSet<ImageId> = [ImageId::from("a1")].into();
        // Before the time: nothing changes.
        let p = plan(&images, &protected, 1, None, 999);
        assert_eq!(p.keep, vec![ImageId::from("a3")]);
        assert!(p.deprecated.is_empty());
        // From it: a3 (newest) is not one of the 1 kept, a2 is; a3 goes
        // even though --older-than would keep it; a1 stays (protected).
        let p = plan(&images, &protected, 1, Some(50), 1000);
        assert_eq!(p.keep, vec![ImageId::from("a2")]);
        assert_eq!(p.delete, vec![ImageId::from("a3")]);
        assert_eq!(p.protected, vec![ImageId::from("a1")]);
        assert_eq!(p.deprecated, vec![ImageId::from("a3"), ImageId::from("a1")]);
    }
}
