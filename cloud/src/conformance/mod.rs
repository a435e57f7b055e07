//! The conformance suite for the image/builder seam. Each backend's tests
//! call these functions with a [`Cloud`] and a [`Fixture`] valid for it;
//! they assert behaviour every backend must share (idempotent lookups and
//! deletes, tags at creation, typed not-found errors, builder reports).
//! Compiled with `cfg(test)` or the `conformance` feature.
//!
//! [`fleet`] holds the same kind of checks for groups, load balancers,
//! gates and leases (the local fleet daemon and the fake cloud).

use std::path::PathBuf;

pub mod fleet;

use crate::{
    BakeState, BaseSelector, BuilderSettings, BuilderSpec, Cloud, CloudError, ImageId,
    ImageManifest, ImageSpec, ImageState, IndexRecord, InstanceState, MANIFEST_FORMAT, Payload,
    RunId, Tags, tags, time,
};

/// What a backend's test harness provides.
pub struct Fixture {
    pub base: BaseSelector,
    /// A payload the install script accepts.
    pub payload: Payload,
    pub install_script: PathBuf,
    pub settings: BuilderSettings,
}

fn fail(what: &str) -> String {
    format!("conformance: {what}")
}

/// Lookups of things that do not exist: typed errors, idempotent deletes.
pub async fn missing_things(cloud: &Cloud) {
    let images = cloud.images();
    let nobody = format!("{:064x}", fastrand::u128(..));
    assert!(
        images
            .find_by_digest(&nobody)
            .await
            .expect("find")
            .is_none(),
        "{}",
        fail("find_by_digest of an unknown digest must be None")
    );
    let ghost = ImageId::from("img-000000000000000000000000");
    let err = images.describe(&ghost).await.expect_err("describe ghost");
    assert!(err.is_not_found(), "{}: {err}", fail("describe → NotFound"));
    images
        .deregister(&ghost)
        .await
        .expect("deregistering a missing image is Ok");
    cloud
        .builders()
        .terminate(&crate::InstanceId::from("i-0000000000000000"))
        .await
        .expect("terminating a missing builder is Ok");
}

/// The whole happy path: base → builder → report → image with tags →
/// found by digest → deregistered. Returns nothing left behind.
pub async fn bake_round_trip(cloud: &Cloud, fx: &Fixture) {
    let images = cloud.images();
    let builders = cloud.builders();
    let run = RunId::generate();
    let base = images.resolve_base(&fx.base).await.expect("resolve base");
    let again = images.resolve_base(&fx.base).await.expect("resolve base");
    assert_eq!(base.id, again.id, "{}", fail("resolving is stable"));

    let mut run_tags = Tags::new();
    run_tags.insert(tags::RUN.into(), run.to_string());
    let spec = BuilderSpec {
        run: run.clone(),
        base: base.clone(),
        payload: fx.payload.clone(),
        install_script: fx.install_script.clone(),
        settings: fx.settings.clone(),
        tags: run_tags.clone(),
    };
    let b = builders.launch_builder(&spec).await.expect("launch");
    builders
        .wait_stopped(&b, cloud.wait_params())
        .await
        .expect("builder stops");
    assert_eq!(
        builders.state(&b).await.expect("state"),
        InstanceState::Stopped
    );
    let report = builders
        .result(&b)
        .await
        .expect("result")
        .expect("a report");
    assert!(report.ok, "{}: {report:?}", fail("good payload installs"));

    let digest = format!("{:064x}", fastrand::u128(..));
    let mut t = run_tags.clone();
    t.insert(tags::DIGEST.into(), digest.clone());
    t.insert(tags::NAME.into(), "conformance".into());
    t.insert(tags::STATE.into(), tags::STATE_BAKING.into());
    let now = time::now_unix();
    let manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        id: ImageId::from(""),
        name: "conformance".into(),
        digest: digest.clone(),
        base,
        parents: vec![],
        files: vec![],
        tags: t.clone(),
        searchd_version: "test".into(),
        index: IndexRecord {
            name: "test".into(),
            digest: "0".repeat(64),
            documents: 0,
            path: "/var/lib/kiln/test.idx".into(),
            golden: vec![],
        },
        created: time::rfc3339(now),
        created_unix: now,
        run: run.clone(),
        rootfs: None,
    };
    let id = images
        .create_image(
            &b,
            &ImageSpec {
                name: "conformance".into(),
                run: run.clone(),
                tags: t,
                manifest,
            },
        )
        .await
        .expect("create image");
    let info = images
        .wait_available(&id, cloud.wait_params())
        .await
        .expect("available");
    assert_eq!(info.state, ImageState::Available);
    assert_eq!(
        info.digest(),
        Some(digest.as_str()),
        "{}",
        fail("tags at creation")
    );
    assert_eq!(info.tags.get(tags::RUN), Some(&run.to_string()));
    assert_eq!(info.bake_state(), BakeState::Baking);
    assert!(
        images
            .find_by_digest(&digest)
            .await
            .expect("find")
            .is_none(),
        "{}",
        fail("a baking image is not a digest hit")
    );
    let mut done = Tags::new();
    done.insert(tags::STATE.into(), tags::STATE_COMPLETE.into());
    images.tag(&id, &done).await.expect("mark complete");
    let found = images.find_by_digest(&digest).await.expect("find");
    assert_eq!(
        found.map(|i| i.id),
        Some(id.clone()),
        "{}",
        fail("found by digest")
    );
    assert!(
        images
            .list()
            .await
            .expect("list")
            .iter()
            .any(|i| i.id == id)
    );
    assert_eq!(images.manifest(&id).await.expect("manifest").digest, digest);

    let mut extra = Tags::new();
    extra.insert("kiln:test".into(), "yes".into());
    images.tag(&id, &extra).await.expect("tag");
    let info = images.describe(&id).await.expect("describe");
    assert_eq!(info.tags.get("kiln:test").map(String::as_str), Some("yes"));
    assert_eq!(
        info.digest(),
        Some(digest.as_str()),
        "{}",
        fail("tag keeps tags")
    );

    builders.terminate(&b).await.expect("terminate");
    builders.terminate(&b).await.expect("terminate twice");
    images.deregister(&id).await.expect("deregister");
    images.deregister(&id).await.expect("deregister twice");
    let err = images.describe(&id).await.expect_err("gone");
    assert!(matches!(err, CloudError::NotFound { .. }));
    assert!(
        images
            .find_by_digest(&digest)
            .await
            .expect("find")
            .is_none()
    );
}

/// A payload whose sha256 does not match: the builder refuses it at step
/// `verify-payload` and reports why.
pub async fn bad_payload_is_refused(cloud: &Cloud, fx: &Fixture) {
    let builders = cloud.builders();
    let run = RunId::generate();
    let base = cloud
        .images()
        .resolve_base(&fx.base)
        .await
        .expect("resolve base");
    let mut payload = fx.payload.clone();
    payload.sha256 = "0".repeat(64);
    let b = builders
        .launch_builder(&BuilderSpec {
            run,
            base,
            payload,
            install_script: fx.install_script.clone(),
            settings: fx.settings.clone(),
            tags: Tags::new(),
        })
        .await
        .expect("launch");
    builders
        .wait_stopped(&b, cloud.wait_params())
        .await
        .expect("builder stops");
    let report = builders
        .result(&b)
        .await
        .expect("result")
        .expect("a report");
    assert!(!report.ok, "{}", fail("a wrong sha256 must fail"));
    assert_eq!(report.step, "verify-payload", "{report:?}");
    builders.terminate(&b).await.expect("terminate");
}
