//! The conformance suites against the local backend, with a real
//! payload: the searchd binary, a books snapshot and the config, installed
//! by `images/install.sh`.
//! - `cloud::conformance`: images and builders;
//! - `cloud::conformance::fleet`: groups, load balancers, gates and leases,
//!   against the fleet daemon run in this process, launching real searchd
//!   instances from two images baked here.

use std::path::Path;

use crate::common::*;
use cloud::conformance::fleet::{self, FleetFixture};
use cloud::conformance::{self, Fixture};
use cloud::{
    BaseSelector, BuilderSettings, BuilderSpec, Cloud, GoldenRecord, ImageId, ImageManifest,
    ImageSpec, IndexRecord, MANIFEST_FORMAT, Payload, RunId, StateDir, Tags, tags, time,
};

fn fixture(fx: &Fx) -> Fixture {
    let idx = fx.path("books.idx");
    build_snapshot(fx, &idx);
    fixture_with(fx, &idx, "payload.tar.zst")
}

/// A payload of searchd, the snapshot `idx` and the images/ config.
fn fixture_with(fx: &Fx, idx: &Path, archive: &str) -> Fixture {
    let idx = idx.to_owned();
    let archive = fx.path(archive);
    let entries = base_entries(fx, idx);
    let (sha256, bytes) = bake::payload::write(&entries, &archive).unwrap();
    Fixture {
        base: BaseSelector::Scratch,
        payload: Payload {
            archive,
            sha256,
            bytes,
        },
        install_script: fx.path("images/install.sh"),
        settings: BuilderSettings::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_conforms() {
    let fx = Fx::new();
    let state = StateDir::open(fx.state()).unwrap();
    let cloud = Cloud::local(&state);
    let fixture = fixture(&fx);
    conformance::missing_things(&cloud).await;
    conformance::bake_round_trip(&cloud, &fixture).await;
    conformance::bad_payload_is_refused(&cloud, &fixture).await;
    // Nothing left: no builders, no images, no partial files.
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images(), Vec::<String>::new());
}

#[tokio::test]
async fn local_backend_refuses_aws_only_things_as_bad_input() {
    let fx = Fx::new();
    let cloud = Cloud::local(&StateDir::open(fx.state()).unwrap());
    let err = cloud
        .images()
        .resolve_base(&BaseSelector::SsmParameter {
            name: "/aws/service/x".into(),
        })
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let err = cloud
        .images()
        .resolve_base(&BaseSelector::Tarball {
            path: fx.path("nope.tar"),
        })
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("nope.tar"), "{err}");
    // No regions, so no copies to tag or remove.
    let west = cloud::Region::from("eu-west-1");
    let img = cloud::ImageId::from("img-000000000000000000000000");
    let err = cloud
        .images()
        .tag_copy(&img, &west, &cloud::Tags::new())
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let err = cloud
        .images()
        .deregister_copy(&img, &west)
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}

/// The manifest's index record as bake writes it: name, digest (what
/// searchd's `/version` reports) and the golden answers of the snapshot.
fn index_record(idx: &Path) -> IndexRecord {
    let e = searchd::index::Engine::open(idx, searchd::snapshot::Verify::Full).expect("snapshot");
    IndexRecord {
        name: e.name().to_owned(),
        digest: e.digest().to_owned(),
        documents: e.documents(),
        path: "/var/lib/kiln/books.idx".into(),
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
    }
}

/// Bakes `fixture` the way `conformance::bake_round_trip` does (builder,
/// report, image from the stopped builder), with the manifest bake would
/// write for snapshot `idx`, and marks it complete.
async fn bake_image(cloud: &Cloud, fixture: &Fixture, idx: &Path, name: &str) -> ImageId {
    let run = RunId::generate();
    let images = cloud.images();
    let builders = cloud.builders();
    let base = images.resolve_base(&fixture.base).await.expect("base");
    let mut run_tags = Tags::new();
    run_tags.insert(tags::RUN.into(), run.to_string());
    let b = builders
        .launch_builder(&BuilderSpec {
            run: run.clone(),
            base: base.clone(),
            payload: fixture.payload.clone(),
            install_script: fixture.install_script.clone(),
            settings: fixture.settings.clone(),
            tags: run_tags.clone(),
        })
        .await
        .expect("launch");
    builders
        .wait_stopped(&b, cloud.wait_params())
        .await
        .expect("builder stops");
    let report = builders.result(&b).await.expect("result").expect("report");
    assert!(report.ok, "{report:?}");
    let index = index_record(idx);
    let digest = format!(
        "{:064x}",
        u128::from(std::process::id()) << 64 | now_nanos()
    );
    let mut t = run_tags;
    t.insert(tags::DIGEST.into(), digest.clone());
    t.insert(tags::NAME.into(), name.into());
    t.insert(tags::STATE.into(), tags::STATE_BAKING.into());
    t.insert(tags::INDEX_DIGEST.into(), index.digest.clone());
    let now = time::now_unix();
    let manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        id: ImageId::from(""),
        name: name.into(),
        digest,
        base,
        parents: vec![],
        files: vec![],
        tags: t.clone(),
        searchd_version: "test".into(),
        index,
        created: time::rfc3339(now),
        created_unix: now,
        run: run.clone(),
        rootfs: None,
    };
    let id = images
        .create_image(
            &b,
            &ImageSpec {
                name: name.into(),
                run,
                tags: t,
                manifest,
            },
        )
        .await
        .expect("create image");
    images
        .wait_available(&id, cloud.wait_params())
        .await
        .expect("available");
    let mut done = Tags::new();
    done.insert(tags::STATE.into(), tags::STATE_COMPLETE.into());
    images.tag(&id, &done).await.expect("mark complete");
    builders.terminate(&b).await.expect("terminate the builder");
    id
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        & u128::from(u64::MAX)
}

/// The extra book of the second image.
const MORE: &str =
    "\n541,\"Alan Turing: The Enigma\",\"Hodges, Andrew\",1983,Simon & Schuster,Biography\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_fleet_conforms() {
    let fx = Fx::new();
    let state = StateDir::open(fx.state()).unwrap();
    let cloud = Cloud::local(&state);
    // Two images: the books, and the books plus one (another snapshot).
    let first = fx.path("books.idx");
    build_snapshot(&fx, &first);
    let csv = fx.path("images/books/books.csv");
    let mut books = std::fs::read_to_string(&csv).unwrap();
    books.push_str(MORE);
    std::fs::write(&csv, books).unwrap();
    let second = fx.path("books-2.idx");
    build_snapshot(&fx, &second);
    let image = bake_image(
        &cloud,
        &fixture_with(&fx, &first, "payload-1.tar.zst"),
        &first,
        "fleet-1",
    )
    .await;
    let other = bake_image(
        &cloud,
        &fixture_with(&fx, &second, "payload-2.tar.zst"),
        &second,
        "fleet-2",
    )
    .await;
    assert_ne!(image, other);

    let fleet_daemon = InProcessFleet::start(&state).await;
    // The daemon exits as soon as it serves nothing; a listener of the
    // harness's own keeps it up between the checks (and is not a group,
    // so `fleet::cleanup` still sees none).
    let keeper = cloud::ListenerSpec {
        id: cloud::ListenerId::from("conf-keeper"),
        address: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        tls: None,
        health_check: cloud::HealthCheck::default(),
        deregistration_delay_ms: 0,
        target_groups: vec![cloud::TargetGroupId::from("conf-keeper")],
        forward: cloud::TargetGroupId::from("conf-keeper"),
    };
    cloud.lbs().create_listener(&keeper).await.expect("keeper");

    let ffx = FleetFixture::new(image, other);
    fleet::run_all(&cloud, &ffx).await;

    cloud
        .lbs()
        .delete_listener(&keeper.id)
        .await
        .expect("delete keeper");
    fleet_daemon.stopped().await;
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}
