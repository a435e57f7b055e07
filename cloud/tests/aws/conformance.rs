//! The image/builder conformance suite (`cloud::conformance`) against the
//! aws backend on a real moto server, with the instance emulator playing
//! the builder: it runs the real user-data, which runs the real
//! `images/install.sh` on a real payload (static searchd + books snapshot)
//! fetched from and reported to moto's S3.

use crate::support::{self, FAST};
use cloud::conformance::{self, Fixture};
use cloud::{BaseSelector, BuilderSettings, BuilderSpec, Cloud, Payload, RunId, Tags};
use motokit::{Census, Emulator, EmulatorOptions, Moto, TEST_KEY, Tamper};

const BUCKET: &str = "kiln-conformance";

async fn connect(moto: &Moto) -> Cloud {
    support::connect(moto, BUCKET, (TEST_KEY, TEST_KEY), true)
        .await
        .0
}

fn fixture(dir: &std::path::Path) -> Fixture {
    let p = motokit::books_payload(dir);
    Fixture {
        base: BaseSelector::SsmParameter {
            name: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".into(),
        },
        payload: Payload {
            archive: p.archive,
            sha256: p.sha256,
            bytes: p.bytes,
        },
        install_script: motokit::install_script(),
        settings: BuilderSettings {
            instance_type: Some("t3.small".into()),
            subnet: None,
            volume_gb: 8,
        },
    }
}

async fn census(moto: &Moto) -> Census {
    support::census(moto, BUCKET).await
}

#[tokio::test]
async fn moto_conformance_missing_things() {
    let moto = Moto::start();
    let cloud = connect(&moto).await;
    conformance::missing_things(&cloud).await;
}

#[tokio::test]
async fn moto_conformance_bake_round_trip() {
    let moto = Moto::start();
    let emu = Emulator::start(&moto, EmulatorOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixture(dir.path());
    let cloud = connect(&moto).await;
    let before = census(&moto).await;
    conformance::bake_round_trip(&cloud, &fx).await;
    let handled = emu.handled();
    assert_eq!(handled.len(), 1, "one builder: {handled:?}");
    assert_eq!(handled[0].status, Some(0), "{}", handled[0].output);
    assert!(emu.errors().is_empty(), "{:?}", emu.errors());
    // The round trip deregistered its image: nothing may remain (snapshots
    // included, which DeregisterImage alone would leave).
    assert_eq!(census(&moto).await, before);
}

#[tokio::test]
async fn moto_conformance_bad_payload_is_refused() {
    let moto = Moto::start();
    let _emu = Emulator::start(&moto, EmulatorOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixture(dir.path());
    let cloud = connect(&moto).await;
    conformance::bad_payload_is_refused(&cloud, &fx).await;
}

/// A payload that arrives intact but holds a snapshot `searchd check`
/// refuses: the report names step `check` and carries searchd's reason.
/// moto cannot make a snapshot go bad, so the emulator flips a byte in
/// the payload's `.idx` (and hands the builder the new sha256).
#[tokio::test]
async fn moto_builder_reports_a_failing_check() {
    let moto = Moto::start();
    let _emu = Emulator::start(
        &moto,
        EmulatorOptions {
            tamper: Tamper::BreakFile(".idx".into()),
            ..EmulatorOptions::default()
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixture(dir.path());
    let cloud = connect(&moto).await;
    let base = cloud.images().resolve_base(&fx.base).await.expect("base");
    let b = cloud
        .builders()
        .launch_builder(&BuilderSpec {
            run: RunId::generate(),
            base,
            payload: fx.payload.clone(),
            install_script: fx.install_script.clone(),
            settings: fx.settings.clone(),
            tags: Tags::new(),
        })
        .await
        .expect("launch");
    cloud
        .builders()
        .wait_stopped(&b, FAST)
        .await
        .expect("stops");
    let report = cloud
        .builders()
        .result(&b)
        .await
        .expect("result")
        .expect("a report");
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.step, "check", "{report:?}");
    assert!(!report.output.is_empty(), "the reason is reported");
    cloud.builders().terminate(&b).await.expect("terminate");
}
