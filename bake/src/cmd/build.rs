//! `bake build RECIPE`: resolve base → digest → look up → builder →
//! report → image (`kiln:state=baking`) → publish → mark complete → clean
//! up. Stdout: the image id (or one JSON object with `--json`); progress on
//! stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cloud::{
    BakeState, BuilderSpec, Cloud, FileRecord, GoldenRecord, ImageId, ImageManifest, ImageSpec,
    IndexRecord, MANIFEST_FORMAT, Payload, Region, RunId, StateDir, Tags, tags, time,
};
use serde::Serialize;

use super::Global;
use crate::cleanup::{Action, Cleanup};
use crate::error::BakeError;
use crate::exit;
use crate::identity::{self, InputFile};
use crate::payload;
use crate::recipe::{Recipe, SEARCHD_ENV, SnapshotSource};
use cloud::run::Cancel;
use cloud::run::Progress;

/// Where the install script puts things (its contract; see images/install.sh).
pub const BIN_PATH: &str = "/opt/kiln/bin/searchd";
pub const CONFIG_PATH: &str = "/etc/kiln/searchd.env";
pub const INDEX_DIR: &str = "/var/lib/kiln";
/// The collector's CA on the image (with `[logs]`).
pub const LOG_CA_PATH: &str = "/etc/kiln/log-ca.pem";

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// The image recipe (e.g. images/searchd.toml).
    #[arg(value_name = "RECIPE")]
    pub recipe: Option<PathBuf>,
    /// Bake even if an image with the same input digest exists.
    #[arg(long)]
    pub force: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The validated plan: nothing after [`plan`] looks at flags again.
#[derive(Debug)]
pub struct Plan {
    pub recipe: Recipe,
    pub force: bool,
    pub json: bool,
    /// Fault injection for tests (`KILN_TEST_FAULT`), never set in use.
    pub fault: Option<Fault>,
}

/// Faults the integration tests inject to exercise failure paths end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Announce a wrong payload sha256 to the builder (`payload-sha256`).
    PayloadSha256,
    /// Wait (up to [`HOLD_SECS`], or until interrupted) with the image
    /// made and published but not yet marked complete
    /// (`hold-before-complete`): the local backend publishes nothing, so
    /// nothing else holds a bake in that window for a test to kill it.
    HoldBeforeComplete,
}

/// How long [`Fault::HoldBeforeComplete`] holds.
pub const HOLD_SECS: u64 = 120;

pub const FAULT_ENV: &str = "KILN_TEST_FAULT";

pub fn plan(args: Args) -> Result<Plan, BakeError> {
    let path = args.recipe.ok_or_else(|| {
        BakeError::Usage("missing RECIPE (e.g. `bake build images/searchd.toml`)".into())
    })?;
    let env = std::env::var(SEARCHD_ENV).ok();
    let recipe = Recipe::load(&path, env.as_deref())?;
    let fault = match std::env::var(FAULT_ENV).as_deref() {
        Err(_) | Ok("") => None,
        Ok("payload-sha256") => Some(Fault::PayloadSha256),
        Ok("hold-before-complete") => Some(Fault::HoldBeforeComplete),
        Ok(other) => {
            return Err(BakeError::Usage(format!(
                "{FAULT_ENV}={other:?}: unknown fault"
            )));
        }
    };
    Ok(Plan {
        recipe,
        force: args.force,
        json: args.json,
        fault,
    })
}

/// What a bake reports (`--json`).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub image: ImageId,
    pub name: String,
    pub digest: String,
    /// An image with this digest already existed.
    pub found: bool,
    /// Builders this run launched (0 when found).
    pub launched: u32,
    pub backend: &'static str,
    pub run: RunId,
    pub base: ImageId,
    pub seconds: f64,
    /// Provider API calls this run made, by operation (aws; empty locally).
    pub api_calls: std::collections::BTreeMap<String, u64>,
    /// The image's copies in other regions (the recipe's `publish.regions`;
    /// aws), made by this run or, when found, by the bake that made it.
    pub copies: Vec<CopyOutcome>,
}

/// One copy of the image in `bake build --json`.
#[derive(Debug, Serialize)]
pub struct CopyOutcome {
    pub region: Region,
    pub image: ImageId,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let plan = plan(args)?;
    let (state, cloud) = super::open(global).await?;
    let run = RunId::generate();
    let guard = state.begin_run(&run)?;
    let progress = Progress::new("bake");
    let cancel = Cancel::default();
    cancel
        .on_signals()
        .map_err(|e| BakeError::Failed(format!("cannot watch signals: {e}")))?;
    let cleanup = Cleanup::new(run.clone());
    let cx = RunCx {
        cloud: &cloud,
        state: &state,
        run: &run,
        tmp: guard.tmp(),
        cleanup: &cleanup,
        cancel: &cancel,
        progress: &progress,
    };

    let result = bake(&cx, &plan).await;

    // The same cleanup on every path; the kept image is already off the list.
    if !cleanup.is_empty() {
        progress.step("cleaning up");
    }
    let errors = cleanup.run(&cloud).await;
    drop(guard);
    progress.finish();
    for e in &errors {
        eprintln!("bake: warning: {e} (run `bake gc` later)");
    }
    let mut outcome = result?;
    // Counted after cleanup, so the total is what the whole run cost.
    outcome.api_calls = cloud.api_calls();
    if plan.json {
        super::print_json(&outcome)?;
    } else {
        super::write_stdout(&format!("{}\n", outcome.image))?;
    }
    Ok(exit::OK)
}

/// One bake run: the cloud, the run's id, state and scratch dir, what to
/// undo if it does not finish, and the cancellation and progress every
/// run shares (`cloud::run`, as roll's executor). Every step takes it
/// instead of seven arguments.
struct RunCx<'a> {
    cloud: &'a Cloud,
    state: &'a StateDir,
    run: &'a RunId,
    tmp: &'a Path,
    cleanup: &'a Cleanup,
    cancel: &'a Cancel,
    progress: &'a Progress,
}

impl RunCx<'_> {
    /// `fut`, unless the run is cancelled first.
    async fn or_cancelled<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, BakeError>>,
    ) -> Result<T, BakeError> {
        self.cancel.or_cancelled(fut).await
    }
}

pub(crate) struct Inputs {
    pub files: Vec<InputFile>,
    snapshot: PathBuf,
    index_name: String,
}

/// What the digest is made of, resolved: the inputs, the base, the digest.
struct Resolved {
    inputs: Inputs,
    base: cloud::BaseImage,
    digest: String,
}

async fn bake(cx: &RunCx<'_>, plan: &Plan) -> Result<Outcome, BakeError> {
    let r = &plan.recipe;
    let resolved = resolve(cx, r).await?;
    let Resolved {
        inputs,
        base,
        digest,
    } = &resolved;
    let outcome = |image: ImageId, found: bool, launched: u32, copies| Outcome {
        image,
        name: r.name.clone(),
        digest: digest.clone(),
        found,
        launched,
        backend: cx.cloud.backend(),
        run: cx.run.clone(),
        base: base.id.clone(),
        seconds: cx.progress.elapsed().as_secs_f64(),
        api_calls: Default::default(),
        copies,
    };

    // One bake of these inputs at a time on this machine: a second one
    // waits for the first, then finds its image below.
    let _same_inputs = lock_inputs(cx, digest).await?;
    if !plan.force
        && let Some(img) = cx.cloud.images().find_by_digest(digest).await?
    {
        cx.progress.note(format!(
            "found {} with this digest; nothing to bake",
            img.id
        ));
        // Only an image whose bake copied it asks the cloud for its copies.
        let copies = if img.copy_regions().is_empty() {
            Vec::new()
        } else {
            cx.cloud.images().copies(&img.id).await?
        };
        return Ok(outcome(img.id, true, 0, copy_outcomes(copies)));
    }
    cx.cancel.check()?;

    let payload = pack(cx, plan, inputs).await?;
    let searchd_version = searchd_version(&r.searchd).await;
    let index = index_record(inputs);
    cx.cancel.check()?;
    let builder = install(cx, r, base, payload, &index).await?;
    let image = image_from(cx, r, &resolved, index, searchd_version, &builder).await?;

    let copies = publish(cx, r, &image).await?;
    if plan.fault == Some(Fault::HoldBeforeComplete) {
        cx.progress.note(format!(
            "test fault: holding before marking {image} complete"
        ));
        cx.or_cancelled(async {
            tokio::time::sleep(Duration::from_secs(HOLD_SECS)).await;
            Ok(())
        })
        .await?;
    }
    mark_complete(cx, &image, &copies).await?;

    // The result: off the cleanup list, so only the builder is removed.
    for c in &copies {
        cx.cleanup.keep(c);
    }
    cx.cleanup.keep(&Action::DeregisterImage(image.clone()));
    cx.progress.note(format!(
        "baked {image} in {:.2}s",
        cx.progress.elapsed().as_secs_f64()
    ));
    let made = copies
        .iter()
        .filter_map(|c| match c {
            Action::DeregisterCopy { image, region } => Some((region.clone(), image.clone())),
            _ => None,
        })
        .collect();
    Ok(outcome(image, false, 1, copy_outcomes(made)))
}

/// Gathers the inputs (builds the snapshot), resolves the base and
/// computes the input digest.
async fn resolve(cx: &RunCx<'_>, r: &Recipe) -> Result<Resolved, BakeError> {
    let selector = r.base_for(cx.cloud.backend())?;
    cx.progress.step("gathering inputs");
    let inputs = {
        let (r, tmp) = (r.clone(), cx.tmp.to_owned());
        tokio::task::spawn_blocking(move || gather(&r, &tmp))
            .await
            .map_err(|e| BakeError::Failed(format!("gathering inputs: {e}")))??
    };
    cx.cancel.check()?;
    cx.progress.step("resolving the base image");
    let base = cx.cloud.images().resolve_base(selector).await?;
    let canonical = identity::canonical(base.id.as_str(), &inputs.files, r);
    let digest = identity::digest(&canonical);
    cx.progress
        .note(format!("input digest {digest} (base {})", base.id));
    Ok(Resolved {
        inputs,
        base,
        digest,
    })
}

/// The per-digest lock: held until the bake ends; waits (cancellably)
/// while another bake of the same inputs holds it.
async fn lock_inputs(cx: &RunCx<'_>, digest: &str) -> Result<cloud::state::StateLock, BakeError> {
    let name = format!("digest-{digest}");
    if let Some(l) = cx.state.try_lock_named(&name)? {
        return Ok(l);
    }
    cx.progress
        .note("another bake of the same inputs is running here; waiting for it");
    let state = cx.state.clone();
    cx.or_cancelled(async move {
        tokio::task::spawn_blocking(move || state.lock_named(&name))
            .await
            .map_err(|e| BakeError::Failed(format!("waiting for the other bake: {e}")))?
            .map_err(BakeError::from)
    })
    .await
}

/// Packs the payload (searchd, the snapshot, its config, the log
/// forwarder's settings and CA) into the run's scratch dir.
async fn pack(cx: &RunCx<'_>, plan: &Plan, inputs: &Inputs) -> Result<Payload, BakeError> {
    let r = &plan.recipe;
    cx.progress.step("packing the payload");
    let mut entries = vec![
        payload::Entry {
            name: "bin/searchd".into(),
            source: r.searchd.clone(),
            executable: true,
        },
        payload::Entry {
            name: format!("index/{}.idx", inputs.index_name),
            source: inputs.snapshot.clone(),
            executable: false,
        },
        payload::Entry {
            name: "etc/searchd.env".into(),
            source: r.config.clone(),
            executable: false,
        },
    ];
    if let Some(logs) = &r.logs {
        let settings = cx.tmp.join("logs.env");
        std::fs::write(&settings, logs.settings())
            .map_err(|e| BakeError::io("cannot write", &settings, e))?;
        entries.push(payload::Entry {
            name: payload::LOG_SETTINGS.into(),
            source: settings,
            executable: false,
        });
        entries.push(payload::Entry {
            name: payload::LOG_CA.into(),
            source: logs.ca.clone(),
            executable: false,
        });
    }
    let archive = cx.tmp.join("payload.tar.zst");
    let (sha256, bytes) = {
        let out = archive.clone();
        tokio::task::spawn_blocking(move || payload::write(&entries, &out))
            .await
            .map_err(|e| BakeError::Failed(format!("packing the payload: {e}")))?
            .map_err(|e| BakeError::io("cannot write the payload", &archive, e))?
    };
    let sha256 = match plan.fault {
        Some(Fault::PayloadSha256) => "0".repeat(64),
        _ => sha256,
    };
    Ok(Payload {
        archive,
        sha256,
        bytes,
    })
}

/// Launches the builder, waits for it to install, check and power off,
/// and reads its report; the index it checked must be the one recorded.
async fn install(
    cx: &RunCx<'_>,
    r: &Recipe,
    base: &cloud::BaseImage,
    payload: Payload,
    index: &IndexRecord,
) -> Result<cloud::InstanceId, BakeError> {
    let cloud = cx.cloud;
    cx.progress.step("launching the builder");
    let builder = cloud
        .builders()
        .launch_builder(&BuilderSpec {
            run: cx.run.clone(),
            base: base.clone(),
            payload,
            install_script: r.install_script.clone(),
            settings: r.builder.clone(),
            tags: run_tags(cx.run),
        })
        .await?;
    cx.cleanup.push(Action::TerminateBuilder(builder.clone()));
    cx.progress
        .note(format!("builder {builder} launched (run {})", cx.run));

    cx.progress
        .step(format!("builder {builder}: installing and checking"));
    cx.or_cancelled(async {
        Ok(cloud
            .builders()
            .wait_stopped(&builder, cloud.wait_params())
            .await?)
    })
    .await?;
    let report = cloud.builders().result(&builder).await?.ok_or_else(|| {
        BakeError::Failed(format!(
            "builder {builder} stopped without reporting a result"
        ))
    })?;
    if !report.ok {
        return Err(BakeError::BuilderFailed {
            step: report.step,
            output: report.output,
        });
    }
    verify_check(&report.output, index)?;
    cx.cancel.check()?;
    Ok(builder)
}

fn run_tags(run: &RunId) -> Tags {
    let mut t = Tags::new();
    t.insert(tags::RUN.into(), run.to_string());
    t
}

/// Images the stopped builder, tagged `baking` with its lineage and
/// recorded in its manifest, and waits until it is available.
async fn image_from(
    cx: &RunCx<'_>,
    r: &Recipe,
    resolved: &Resolved,
    index: IndexRecord,
    searchd_version: String,
    builder: &cloud::InstanceId,
) -> Result<ImageId, BakeError> {
    let cloud = cx.cloud;
    let Resolved {
        inputs,
        base,
        digest,
    } = resolved;
    let run = cx.run;
    cx.progress.step("creating the image");
    // The previous release: an unfinished image is nobody's parent.
    let parent = cloud
        .images()
        .find_by_tag(tags::NAME, &r.name)
        .await?
        .into_iter()
        .find(|i| i.digest() != Some(digest.as_str()) && i.bake_state() != BakeState::Baking)
        .map(|i| i.id);
    let now = time::now_unix();
    let mut image_tags = run_tags(run);
    image_tags.extend(r.tags.clone());
    image_tags.insert(tags::NAME.into(), r.name.clone());
    image_tags.insert(tags::DIGEST.into(), digest.clone());
    image_tags.insert(tags::BASE.into(), base.id.to_string());
    image_tags.insert(tags::SEARCHD_VERSION.into(), searchd_version.clone());
    image_tags.insert(tags::INDEX_DIGEST.into(), index.digest.clone());
    image_tags.insert(tags::CREATED.into(), time::rfc3339(now));
    if let Some(p) = &parent {
        image_tags.insert(tags::PARENT.into(), p.to_string());
    }
    // Not a digest hit until the whole bake succeeded (see `mark_complete`).
    image_tags.insert(tags::STATE.into(), tags::STATE_BAKING.into());
    // Where the copies will be, on the image from the start: `bake gc`
    // finds a dead run's copies from it.
    if !r.regions.is_empty() {
        image_tags.insert(tags::COPIES.into(), r.regions.join(","));
    }
    let manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        id: ImageId::from(""),
        name: r.name.clone(),
        digest: digest.clone(),
        base: base.clone(),
        parents: parent.into_iter().collect(),
        files: inputs
            .files
            .iter()
            .filter(|f| f.path.starts_with('/'))
            .map(|f| FileRecord {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
                bytes: file_size(&f.path, r, inputs),
            })
            .collect(),
        tags: image_tags.clone(),
        searchd_version,
        index,
        created: time::rfc3339(now),
        created_unix: now,
        run: run.clone(),
        rootfs: None,
    };
    let image = cloud
        .images()
        .create_image(
            builder,
            &ImageSpec {
                name: r.name.clone(),
                run: run.clone(),
                tags: image_tags,
                manifest,
            },
        )
        .await?;
    cx.cleanup.push(Action::DeregisterImage(image.clone()));
    let info = cx
        .or_cancelled(async {
            Ok(cloud
                .images()
                .wait_available(&image, cloud.wait_params())
                .await?)
        })
        .await?;
    if let Some(maker) = info.tags.get(tags::RUN).filter(|m| *m != run.as_str()) {
        // Local: the same content for the same inputs is the same image,
        // and a finished one stays its maker's (cleanup leaves it alone).
        cx.progress
            .note(format!("{image} exists already (baked by {maker})"));
    }
    cx.cancel.check()?;
    Ok(image)
}

fn copy_outcomes(copies: Vec<(Region, ImageId)>) -> Vec<CopyOutcome> {
    copies
        .into_iter()
        .map(|(region, image)| CopyOutcome { region, image })
        .collect()
}

/// Copies and shares as the recipe asks; a backend that cannot (local)
/// says so and the bake goes on, so one recipe serves every backend.
///
/// Each copy goes on the cleanup list as soon as its id is known, so a
/// later failure (the next region, sharing) or Ctrl-C removes it with the
/// image; the caller keeps them only once the whole bake succeeded, with
/// the actions returned. A call in flight is not abandoned on Ctrl-C (a
/// CopyImage may succeed after we stop listening, and its copy would be
/// lost): cancellation is checked between calls.
async fn publish(cx: &RunCx<'_>, r: &Recipe, image: &ImageId) -> Result<Vec<Action>, BakeError> {
    let RunCx {
        cloud,
        run,
        cleanup,
        cancel,
        progress,
        ..
    } = *cx;
    let mut copies = Vec::new();
    for region in &r.regions {
        cancel.check()?;
        progress.step(format!("copying to {region}"));
        let spec = cloud::CopySpec {
            name: r.name.clone(),
            run: run.clone(),
            tags: Tags::new(),
            encrypted: true,
        };
        let region = Region::new(region.clone());
        match cloud.images().copy_to_region(image, &region, &spec).await {
            Ok(copy) => {
                progress.note(format!("copied to {region}: {copy}"));
                let action = Action::DeregisterCopy {
                    image: copy,
                    region,
                };
                cleanup.push(action.clone());
                copies.push(action);
            }
            Err(cloud::CloudError::Unsupported { .. }) => {
                progress.note(format!(
                    "{} backend: not copying to {region}",
                    cloud.backend()
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !r.share_accounts.is_empty() {
        cancel.check()?;
        let accounts: Vec<cloud::AccountId> = r
            .share_accounts
            .iter()
            .map(|a| cloud::AccountId::new(a.clone()))
            .collect();
        match cloud.images().share(image, &accounts).await {
            Ok(()) => progress.note(format!("shared with {} accounts", accounts.len())),
            Err(cloud::CloudError::Unsupported { .. }) => {
                progress.note(format!("{} backend: not sharing", cloud.backend()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    cancel.check()?;
    Ok(copies)
}

/// The last step of a successful bake, before the builder is cleaned up:
/// `kiln:state=complete` on each copy (in its region), then on the image.
/// Until the image's own tag is written, nothing finds it by digest, and a
/// dead run's image (copies included, marked or not) is `bake gc`'s; so
/// the image is never `complete` while a copy or share is missing.
/// Cancellation is checked between the calls, as while publishing.
async fn mark_complete(
    cx: &RunCx<'_>,
    image: &ImageId,
    copies: &[Action],
) -> Result<(), BakeError> {
    let RunCx {
        cloud,
        cancel,
        progress,
        ..
    } = *cx;
    progress.step("marking the image complete");
    let mut done = Tags::new();
    done.insert(tags::STATE.into(), tags::STATE_COMPLETE.into());
    for c in copies {
        if let Action::DeregisterCopy { image, region } = c {
            cancel.check()?;
            cloud.images().tag_copy(image, region, &done).await?;
        }
    }
    cancel.check()?;
    cloud.images().tag(image, &done).await?;
    Ok(())
}

/// Builds (or takes) the snapshot and hashes every installed file.
/// Blocking.
pub(crate) fn gather(r: &Recipe, tmp: &Path) -> Result<Inputs, BakeError> {
    let (snapshot, index_name) = match &r.snapshot {
        SnapshotSource::Index(def_path) => {
            let def =
                searchd::def::Definition::load(def_path).map_err(|e| BakeError::Snapshot {
                    path: def_path.clone(),
                    source: e.into(),
                })?;
            let out = tmp.join(format!("{}.idx", def.name()));
            searchd::build::build_definition(&def, &out).map_err(|e| BakeError::Snapshot {
                path: def_path.clone(),
                source: e.into(),
            })?;
            (out, def.name().to_owned())
        }
        SnapshotSource::Prebuilt(p) => {
            // Only the name is needed here; whether the snapshot is sound is
            // for the builder's `searchd check` to say.
            let name = searchd::index::Engine::open(p, searchd::snapshot::Verify::Structure)
                .map(|e| e.name().to_owned())
                .unwrap_or_else(|_| {
                    p.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "index".into())
                });
            (p.clone(), name)
        }
    };
    let hash = |p: &Path| {
        kiln_common::sha256_file(p)
            .map(|(h, _)| h)
            .map_err(|e| BakeError::io("cannot read", p, e))
    };
    let mut files = vec![
        InputFile {
            path: BIN_PATH.into(),
            sha256: hash(&r.searchd)?,
        },
        InputFile {
            path: format!("{INDEX_DIR}/{index_name}.idx"),
            sha256: hash(&snapshot)?,
        },
        InputFile {
            path: CONFIG_PATH.into(),
            sha256: hash(&r.config)?,
        },
        // Not installed, but it decides what is: part of the identity.
        InputFile {
            path: "install.sh".into(),
            sha256: hash(&r.install_script)?,
        },
    ];
    // The forwarder's settings are in the normalised recipe; the CA's
    // bytes are an installed file like any other.
    if let Some(logs) = &r.logs {
        files.push(InputFile {
            path: LOG_CA_PATH.into(),
            sha256: hash(&logs.ca)?,
        });
    }
    Ok(Inputs {
        files,
        snapshot,
        index_name,
    })
}

fn file_size(dest: &str, r: &Recipe, inputs: &Inputs) -> u64 {
    let src = match dest {
        BIN_PATH => r.searchd.clone(),
        CONFIG_PATH => r.config.clone(),
        LOG_CA_PATH => match &r.logs {
            Some(l) => l.ca.clone(),
            None => return 0,
        },
        _ => inputs.snapshot.clone(),
    };
    std::fs::metadata(src).map(|m| m.len()).unwrap_or(0)
}

/// The snapshot's name, digest and golden answers, for the manifest (so
/// `roll` can replay them against a new instance). Best effort: a snapshot
/// that cannot be opened fails the builder's check anyway.
fn index_record(inputs: &Inputs) -> IndexRecord {
    let path = format!("{INDEX_DIR}/{}.idx", inputs.index_name);
    match searchd::index::Engine::open(&inputs.snapshot, searchd::snapshot::Verify::Structure) {
        Ok(e) => IndexRecord {
            name: e.name().to_owned(),
            digest: e.digest().to_owned(),
            documents: e.documents(),
            path,
            golden: e
                .meta()
                .golden
                .iter()
                .map(|g| GoldenRecord {
                    query: g.query.query.clone(),
                    ids: g.query.ids,
                    offset: g.query.offset,
                    min_total: g.query.min_total,
                    total: g.total,
                    answer: g.answer.clone(),
                })
                .collect(),
        },
        Err(_) => IndexRecord {
            name: inputs.index_name.clone(),
            digest: String::new(),
            documents: 0,
            path,
            golden: Vec::new(),
        },
    }
}

/// The builder's `searchd check --json` must describe the snapshot we sent.
fn verify_check(output: &str, index: &IndexRecord) -> Result<(), BakeError> {
    let v: serde_json::Value = serde_json::from_str(output.trim()).map_err(|e| {
        BakeError::Failed(format!(
            "the builder's check output is not JSON ({e}): {output}"
        ))
    })?;
    let ok = v.get("ok").and_then(|b| b.as_bool()) == Some(true);
    let digest = v.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
    if !ok || digest != index.digest {
        return Err(BakeError::BuilderFailed {
            step: "check".into(),
            output: format!(
                "searchd check reported digest {digest:?}, expected {:?}: {output}",
                index.digest
            ),
        });
    }
    Ok(())
}

/// `searchd --version` of the binary being installed ("searchd 0.1.0").
async fn searchd_version(bin: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(bin).arg("--version").output(),
    )
    .await;
    match out {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .last()
            .unwrap_or("unknown")
            .to_owned(),
        _ => "unknown".into(),
    }
}
