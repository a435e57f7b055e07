//! `bake check RECIPE`: is a rebake due? Gathers the inputs and resolves
//! the base exactly as `bake build` does (the index is built, nothing is
//! launched), computes the input digest, and looks it up. Exit 0: an image
//! with that digest exists (printed); exit 10: a rebake is due, and why —
//! compared with the newest complete image of the same name: a new base
//! image, files that changed (by path), or else the recipe itself.

use std::collections::BTreeMap;

use cloud::{BakeState, ImageId, RunId, tags};
use serde::Serialize;

use super::Global;
use super::build::{Args as BuildArgs, gather, plan};
use crate::error::BakeError;
use crate::exit;
use crate::identity;
use cloud::run::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image recipe (e.g. images/searchd.toml).
    #[arg(value_name = "RECIPE")]
    pub recipe: Option<std::path::PathBuf>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `bake check` reports (`--json`).
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub digest: String,
    pub base: ImageId,
    /// A rebake is due (exit 10).
    pub due: bool,
    /// The image with this digest, when there is one.
    pub image: Option<ImageId>,
    /// The newest complete image of the same name it was compared with.
    pub previous: Option<ImageId>,
    /// Why a rebake is due, one line each.
    pub reasons: Vec<String>,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let json = args.json;
    let plan = plan(BuildArgs {
        recipe: args.recipe,
        force: false,
        json,
    })?;
    let r = &plan.recipe;
    let (state, cloud) = super::open(global).await?;
    let selector = r.base_for(cloud.backend())?;
    // A run of its own for the scratch space (the index is built there);
    // nothing in the cloud carries its id.
    let run = RunId::generate();
    let guard = state.begin_run(&run)?;
    let progress = Progress::new("bake");
    progress.step("gathering inputs");
    let inputs = {
        let (r, dir) = (r.clone(), guard.tmp().to_owned());
        tokio::task::spawn_blocking(move || gather(&r, &dir))
            .await
            .map_err(|e| BakeError::Failed(format!("gathering inputs: {e}")))??
    };
    progress.step("resolving the base image");
    let base = cloud.images().resolve_base(selector).await?;
    let digest = identity::digest(&identity::canonical(base.id.as_str(), &inputs.files, r));
    progress.finish();
    drop(guard);

    let found = cloud.images().find_by_digest(&digest).await?;
    let previous = match &found {
        Some(_) => None,
        None => cloud
            .images()
            .find_by_tag(tags::NAME, &r.name)
            .await?
            .into_iter()
            .filter(|i| i.bake_state() == BakeState::Complete)
            .max_by_key(|i| (i.created_unix, i.id.to_string())),
    };
    let mut reasons = Vec::new();
    if found.is_none() {
        match &previous {
            None => reasons.push(format!("no complete image of {} yet", r.name)),
            Some(p) => {
                let m = cloud.images().manifest(&p.id).await?;
                if m.base.id != base.id {
                    reasons.push(format!(
                        "new base image {} ({}; {} was baked on {})",
                        base.id, base.name, p.id, m.base.id
                    ));
                }
                let was: BTreeMap<&str, &str> = m
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.sha256.as_str()))
                    .collect();
                let now: BTreeMap<&str, &str> = inputs
                    .files
                    .iter()
                    .filter(|f| f.path.starts_with('/'))
                    .map(|f| (f.path.as_str(), f.sha256.as_str()))
                    .collect();
                for (path, sha) in &now {
                    match was.get(path) {
                        None => reasons.push(format!("new file {path}")),
                        Some(old) if old != sha => reasons.push(format!("changed file {path}")),
                        Some(_) => {}
                    }
                }
                for path in was.keys().filter(|p| !now.contains_key(*p)) {
                    reasons.push(format!("file {path} is gone"));
                }
                if reasons.is_empty() {
                    reasons.push(format!(
                        "the recipe changed (name, tags, volume size, [logs] or install script) since {}",
                        p.id
                    ));
                }
            }
        }
    }
    let check = Check {
        name: r.name.clone(),
        digest,
        base: base.id.clone(),
        due: found.is_none(),
        image: found.map(|i| i.id),
        previous: previous.map(|p| p.id),
        reasons,
    };
    if json {
        super::print_json(&check)?;
    } else if let Some(id) = &check.image {
        super::write_stdout(&format!("{id}\n"))?;
        eprintln!("bake: up to date: {id} has input digest {}", check.digest);
    } else {
        for why in &check.reasons {
            super::write_stdout(&format!("{why}\n"))?;
        }
        eprintln!(
            "bake: a rebake of {} is due (input digest {})",
            check.name, check.digest
        );
    }
    Ok(if check.due {
        exit::REBAKE_DUE
    } else {
        exit::OK
    })
}
