//! The aws backend against a real moto server (one per test, started and
//! killed by the test): base resolution, lookups, error messages, launch
//! hygiene, gc. The install-and-snapshot path is in `conformance.rs`.

use std::time::Duration;

use crate::support::{self, FAST};
use cloud::aws::ApiCalls;
use cloud::{BaseSelector, BuilderSettings, BuilderSpec, Cloud, Payload, RunId, Tags};
use motokit::{Census, Emulator, EmulatorOptions, Moto, TEST_KEY};

const BUCKET: &str = "kiln-test";
const AL2023: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

async fn connect(moto: &Moto, key: &str, secret: &str, create_bucket: bool) -> (Cloud, ApiCalls) {
    support::connect(moto, BUCKET, (key, secret), create_bucket).await
}

async fn census(moto: &Moto) -> Census {
    support::census(moto, BUCKET).await
}

#[tokio::test]
async fn moto_resolves_ssm_and_filters_newest_first() {
    let moto = Moto::start();
    let (cloud, calls) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let images = cloud.images();

    let ssm = images
        .resolve_base(&BaseSelector::SsmParameter {
            name: AL2023.into(),
        })
        .await
        .expect("SSM parameter resolves");
    assert!(ssm.id.as_str().starts_with("ami-"), "{ssm:?}");
    assert!(ssm.name.starts_with("al2023-ami-"), "{ssm:?}");
    assert_eq!(calls.count("GetParameter"), 1);

    // The same AMI by filter: moto seeds Amazon's AL2023 images.
    let by_filter = images
        .resolve_base(&BaseSelector::AmiFilter {
            owners: vec!["amazon".into()],
            name: "al2023-ami-2023.*-x86_64".into(),
            architecture: "x86_64".into(),
        })
        .await
        .expect("filter resolves");
    assert!(
        by_filter.name.starts_with("al2023-ami-2023."),
        "{by_filter:?}"
    );

    let missing = images
        .resolve_base(&BaseSelector::SsmParameter {
            name: "/kiln/no/such/parameter".into(),
        })
        .await
        .expect_err("missing parameter");
    assert!(missing.is_bad_input(), "{missing}");
    assert!(
        missing.to_string().contains("/kiln/no/such/parameter"),
        "{missing}"
    );

    let none = images
        .resolve_base(&BaseSelector::AmiFilter {
            owners: vec!["self".into()],
            name: "nothing-like-this-*".into(),
            architecture: "x86_64".into(),
        })
        .await
        .expect_err("no match");
    assert!(none.to_string().contains("nothing-like-this-*"), "{none}");

    let local = images
        .resolve_base(&BaseSelector::Scratch)
        .await
        .expect_err("scratch is local only");
    assert!(local.is_bad_input(), "{local}");
}

#[tokio::test]
async fn moto_newer_base_ami_wins() {
    let moto = Moto::start();
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let filter = BaseSelector::AmiFilter {
        owners: vec![motokit::ACCOUNT.into()],
        name: "kiln-test-base-*".into(),
        architecture: "x86_64".into(),
    };
    let first = moto.register_base("kiln-test-base-1").await;
    let got = cloud.images().resolve_base(&filter).await.expect("resolve");
    assert_eq!(got.id.as_str(), first);
    // CreationDate has one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = moto.register_base("kiln-test-base-2").await;
    let got = cloud.images().resolve_base(&filter).await.expect("resolve");
    assert_eq!(
        got.id.as_str(),
        second,
        "the newest matching AMI is the base"
    );
}

#[tokio::test]
async fn moto_lookups_of_unknown_things() {
    let moto = Moto::start();
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let images = cloud.images();
    let digest = "ab".repeat(32);
    assert!(
        images
            .find_by_digest(&digest)
            .await
            .expect("find")
            .is_none()
    );
    let err = images
        .describe(&cloud::ImageId::from("ami-00000000000000000"))
        .await
        .expect_err("no such image");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("us-east-1"), "{err}");
    images
        .deregister(&cloud::ImageId::from("ami-00000000000000000"))
        .await
        .expect("deregistering nothing is Ok");
    assert!(images.list().await.expect("list").is_empty());
}

/// Errors name the operation, the resource and the region; a denied call
/// says which action was denied.
#[tokio::test]
async fn moto_errors_name_operation_and_region() {
    let moto = Moto::start();
    let nobody = moto.iam_user("nobody", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}"#);
    moto.enforce_iam();
    let (cloud, _) = connect(&moto, &nobody.key, &nobody.secret, false).await;
    let err = cloud
        .images()
        .find_by_digest(&"cd".repeat(32))
        .await
        .expect_err("denied");
    let msg = err.to_string();
    assert!(msg.contains("DescribeImages"), "{msg}");
    assert!(msg.contains("us-east-1"), "{msg}");
    assert!(
        msg.contains("UnauthorizedOperation") || msg.contains("AccessDenied"),
        "{msg}"
    );
    assert!(
        !err.is_bad_input(),
        "an API refusal is not bad input: {msg}"
    );
}

/// A bucket that does not exist is an error naming it, unless kiln may
/// create it.
#[tokio::test]
async fn moto_bucket_is_created_only_when_allowed() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_with_dummy_payload(&cloud_base(&moto).await, dir.path());
    let before = census(&moto).await;
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, false).await;
    let err = cloud
        .builders()
        .launch_builder(&spec)
        .await
        .expect_err("no bucket");
    assert!(err.to_string().contains(BUCKET), "{err}");
    assert_eq!(census(&moto).await, before, "nothing launched");
}

async fn cloud_base(moto: &Moto) -> cloud::BaseImage {
    let (cloud, _) = connect(moto, TEST_KEY, TEST_KEY, true).await;
    cloud
        .images()
        .resolve_base(&BaseSelector::SsmParameter {
            name: AL2023.into(),
        })
        .await
        .expect("base")
}

fn spec_with_dummy_payload(base: &cloud::BaseImage, dir: &std::path::Path) -> BuilderSpec {
    let archive = dir.join("payload.tar.zst");
    std::fs::write(&archive, b"payload").expect("write payload");
    let script = dir.join("install.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    BuilderSpec {
        run: RunId::generate(),
        base: base.clone(),
        payload: Payload {
            archive,
            sha256: "00".repeat(32),
            bytes: 7,
        },
        install_script: script,
        settings: BuilderSettings {
            instance_type: None,
            subnet: None,
            volume_gb: 8,
        },
        tags: Tags::new(),
    }
}

/// The builder as launched: no public IP, IMDSv2 only, encrypted gp3 root,
/// its own security group with no inbound rules, everything tagged with
/// the run at creation; terminate removes all of it.
#[tokio::test]
async fn moto_builder_is_locked_down_and_cleaned_up() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = cloud_base(&moto).await;
    let (cloud, calls) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let spec = spec_with_dummy_payload(&base, dir.path());
    let before = census(&moto).await;
    let id = cloud
        .builders()
        .launch_builder(&spec)
        .await
        .expect("launch");

    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let inst = ec2
        .describe_instances()
        .instance_ids(id.as_str())
        .send()
        .await
        .expect("DescribeInstances")
        .reservations()[0]
        .instances()[0]
        .clone();
    assert!(inst.public_ip_address().is_none(), "no public IP");
    let md = inst.metadata_options().expect("metadata options");
    assert_eq!(
        md.http_tokens(),
        Some(&aws_sdk_ec2::types::HttpTokensState::Required),
        "IMDSv2 only"
    );
    let tags: Vec<(String, String)> = inst
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or("").into(), t.value().unwrap_or("").into()))
        .collect();
    assert!(
        tags.contains(&("kiln:bake".into(), spec.run.to_string())),
        "{tags:?}"
    );
    assert!(tags.iter().any(|(k, _)| k == "kiln:created"), "{tags:?}");

    // Launched through a network interface spec, so the group is on it.
    let eni = &inst.network_interfaces()[0];
    assert!(
        eni.association().and_then(|a| a.public_ip()).is_none(),
        "no public IP"
    );
    let groups = eni.groups();
    assert_eq!(groups.len(), 1, "{eni:?}");
    let sg = ec2
        .describe_security_groups()
        .group_ids(groups[0].group_id().expect("sg id"))
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()[0]
        .clone();
    assert!(sg.ip_permissions().is_empty(), "no inbound rules: {sg:?}");
    assert!(sg.tags().iter().any(|t| t.key() == Some("kiln:bake")));

    let vol_id = inst.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.volume_id())
        .expect("root volume")
        .to_owned();
    let vol = ec2
        .describe_volumes()
        .volume_ids(&vol_id)
        .send()
        .await
        .expect("DescribeVolumes")
        .volumes()[0]
        .clone();
    assert_eq!(vol.encrypted(), Some(true), "{vol:?}");
    assert_eq!(
        vol.volume_type(),
        Some(&aws_sdk_ec2::types::VolumeType::Gp3),
        "{vol:?}"
    );

    // The payload is in S3, tagged with the run.
    let s3 = moto.s3(TEST_KEY, TEST_KEY).await;
    let key = format!("kiln/runs/{}/payload.tar.zst", spec.run);
    let tagging = s3
        .get_object_tagging()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .expect("GetObjectTagging");
    assert!(
        tagging
            .tag_set()
            .iter()
            .any(|t| t.key() == "kiln:bake" && t.value() == spec.run.as_str())
    );

    let during = census(&moto).await;
    assert_eq!(during.instances, before.instances + 1);
    assert_eq!(during.security_groups, before.security_groups + 1);
    assert_eq!(during.objects, before.objects + 1);

    cloud.builders().terminate(&id).await.expect("terminate");
    assert_eq!(census(&moto).await, before, "terminate leaves nothing");
    cloud
        .builders()
        .terminate(&id)
        .await
        .expect("terminate is idempotent");
    assert!(calls.count("RunInstances") == 1, "{:?}", calls.snapshot());
}

/// A run that dies after launching (kill -9) leaves tagged resources; the
/// janitor finds every one of them and removes them.
#[tokio::test]
async fn moto_janitor_removes_what_a_dead_run_left() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = cloud_base(&moto).await;
    let before = census(&moto).await;
    {
        // This "process" launches and forgets: no terminate.
        let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
        let spec = spec_with_dummy_payload(&base, dir.path());
        cloud
            .builders()
            .launch_builder(&spec)
            .await
            .expect("launch");
    }
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, false).await;
    let janitor = cloud.janitor();
    let young = janitor
        .leftovers(Duration::from_secs(3600), &[])
        .await
        .expect("leftovers");
    assert!(young.is_empty(), "nothing is an hour old yet: {young:?}");
    let found = janitor
        .leftovers(Duration::ZERO, &[])
        .await
        .expect("leftovers");
    let kinds: Vec<_> = found.iter().map(|l| l.kind).collect();
    assert!(kinds.contains(&cloud::ResourceKind::Instance), "{found:?}");
    assert!(
        kinds.contains(&cloud::ResourceKind::SecurityGroup),
        "{found:?}"
    );
    assert!(kinds.contains(&cloud::ResourceKind::Object), "{found:?}");
    for item in &found {
        janitor.remove(item).await.expect("remove");
    }
    assert_eq!(census(&moto).await, before, "gc leaves nothing");
    assert!(
        janitor
            .leftovers(Duration::ZERO, &[])
            .await
            .expect("again")
            .is_empty()
    );
}

/// The emulator plays a builder whose install script fails: the report says
/// which step and why.
#[tokio::test]
async fn moto_emulated_builder_reports_failure() {
    let moto = Moto::start();
    let emu = Emulator::start(&moto, EmulatorOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let base = cloud_base(&moto).await;
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let mut spec = spec_with_dummy_payload(&base, dir.path());
    std::fs::write(
        &spec.install_script,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in --result) r=$2;; esac; shift; done\nprintf 'failed unit\\nno systemd here\\n' > \"$r\"\n",
    )
    .expect("script");
    spec.payload.bytes = 7;
    let b = cloud
        .builders()
        .launch_builder(&spec)
        .await
        .expect("launch");
    cloud
        .builders()
        .wait_stopped(&b, FAST)
        .await
        .unwrap_or_else(|e| panic!("{e}; emulator: {:?} {:?}", emu.errors(), emu.handled()));
    let report = cloud
        .builders()
        .result(&b)
        .await
        .expect("result")
        .expect("a report");
    assert!(!report.ok);
    assert_eq!(report.step, "unit");
    assert_eq!(report.output, "no systemd here");
    cloud.builders().terminate(&b).await.expect("terminate");
}

/// A run killed after CreateImage (its builder and security group still
/// exist) left an image that must not count as baked: the janitor removes
/// it with its snapshots, its manifest and the builder's resources.
#[tokio::test]
async fn moto_janitor_removes_an_image_of_an_unfinished_run() {
    let moto = Moto::start();
    let _emu = Emulator::start(&moto, EmulatorOptions::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let base = cloud_base(&moto).await;
    let before = census(&moto).await;
    {
        let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
        let mut spec = spec_with_dummy_payload(&base, dir.path());
        std::fs::write(
            &spec.install_script,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in --result) r=$2;; esac; shift; done\nprintf 'ok\\n{}\\n' > \"$r\"\n",
        )
        .expect("script");
        spec.tags.insert("kiln:name".into(), "crashy".into());
        let b = cloud
            .builders()
            .launch_builder(&spec)
            .await
            .expect("launch");
        cloud
            .builders()
            .wait_stopped(&b, FAST)
            .await
            .expect("stopped");
        let digest = "ef".repeat(32);
        let mut tags = spec.tags.clone();
        tags.insert("kiln:digest".into(), digest.clone());
        let manifest = serde_json::from_value::<cloud::ImageManifest>(serde_json::json!({
            "format": 1, "id": "", "name": "crashy", "digest": digest,
            "base": {"id": base.id, "name": base.name, "tarball": null},
            "parents": [], "files": [], "tags": {}, "searchd_version": "test",
            "index": {"name": "t", "digest": "0", "documents": 0, "path": "/x", "golden": []},
            "created": "2026-01-01T00:00:00Z", "created_unix": 0, "run": spec.run, "rootfs": null
        }))
        .expect("manifest");
        let id = cloud
            .images()
            .create_image(
                &b,
                &cloud::ImageSpec {
                    name: "crashy".into(),
                    run: spec.run.clone(),
                    tags,
                    manifest,
                },
            )
            .await
            .expect("create image");
        cloud
            .images()
            .wait_available(&id, FAST)
            .await
            .expect("available");
        // ...and the process dies here: no terminate, no deregister.
    }
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, false).await;
    let found = cloud
        .janitor()
        .leftovers(Duration::ZERO, &[])
        .await
        .expect("leftovers");
    let kinds: Vec<_> = found.iter().map(|l| l.kind).collect();
    assert!(kinds.contains(&cloud::ResourceKind::Image), "{found:?}");
    for item in &found {
        cloud.janitor().remove(item).await.expect("remove");
    }
    assert_eq!(census(&moto).await, before, "gc leaves nothing");
}

/// A copy in another region: `deregister_copy` removes it there with its
/// snapshot (and again is `Ok`), leaving the source alone; the janitor
/// finds a dead run's copy only in the regions it is asked to scan, and
/// removes it there.
#[tokio::test]
async fn moto_copies_are_removed_in_their_region() {
    let moto = Moto::start();
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let source = cloud::ImageId::new(moto.register_base("kiln-copy-source").await);
    let west = cloud::Region::new("eu-west-1");
    let census = || Census::regions(&moto, TEST_KEY, TEST_KEY, BUCKET, &["eu-west-1"]);
    let before = census().await;
    let spec = cloud::CopySpec {
        name: "kiln-copy".into(),
        run: RunId::generate(),
        tags: Tags::new(),
        encrypted: true,
    };

    let copy = cloud
        .images()
        .copy_to_region(&source, &west, &spec)
        .await
        .expect("copy");
    // Tagged in its region (the completion mark of a bake).
    let mut done = Tags::new();
    done.insert("kiln:state".into(), "complete".into());
    cloud
        .images()
        .tag_copy(&copy, &west, &done)
        .await
        .expect("tag the copy");
    let tagged = moto
        .ec2_in(TEST_KEY, TEST_KEY, "eu-west-1")
        .await
        .describe_images()
        .image_ids(copy.as_str())
        .send()
        .await
        .expect("DescribeImages eu-west-1");
    assert!(
        tagged.images()[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("kiln:state") && t.value() == Some("complete")),
        "{tagged:?}"
    );
    let during = census().await;
    assert_eq!(during["eu-west-1"].images, before["eu-west-1"].images + 1);
    assert_eq!(
        during["eu-west-1"].snapshots,
        before["eu-west-1"].snapshots + 1
    );
    cloud
        .images()
        .deregister_copy(&copy, &west)
        .await
        .expect("deregister the copy");
    assert_eq!(census().await, before, "the copy and its snapshot are gone");
    cloud
        .images()
        .deregister_copy(&copy, &west)
        .await
        .expect("deregistering a missing copy is Ok");
    cloud
        .images()
        .describe(&source)
        .await
        .expect("the source stays");

    // A run that copied and died (the copy has its run tag and no digest).
    let copy = cloud
        .images()
        .copy_to_region(&source, &west, &spec)
        .await
        .expect("copy");
    let janitor = cloud.janitor();
    let here = janitor
        .leftovers(Duration::ZERO, &[])
        .await
        .expect("leftovers");
    assert!(here.iter().all(|l| l.region.is_none()), "{here:?}");
    let all = janitor
        .leftovers(Duration::ZERO, std::slice::from_ref(&west))
        .await
        .expect("leftovers");
    let found = all
        .iter()
        .find(|l| l.id == copy.as_str())
        .unwrap_or_else(|| panic!("the copy is a leftover in eu-west-1: {all:?}"));
    assert_eq!(found.kind, cloud::ResourceKind::Image);
    assert_eq!(found.region.as_ref(), Some(&west));
    for item in &all {
        janitor.remove(item).await.expect("remove");
    }
    assert_eq!(census().await, before, "gc leaves nothing in eu-west-1");
}

/// Deleting an image deletes its copies in the regions its `kiln:copies`
/// tag names, with their snapshots (what `bake prune` relies on), and
/// nothing else there.
#[tokio::test(flavor = "multi_thread")]
async fn moto_deregister_removes_the_copies_too() {
    let moto = Moto::start();
    let (cloud, _) = connect(&moto, TEST_KEY, TEST_KEY, true).await;
    let west = cloud::Region::new("eu-west-1");
    let census = || Census::regions(&moto, TEST_KEY, TEST_KEY, BUCKET, &["eu-west-1"]);
    // Another image in eu-west-1 that must survive.
    let bystander = moto.register_base("kiln-bystander").await;
    let bystander_copy = cloud
        .images()
        .copy_to_region(
            &cloud::ImageId::new(bystander),
            &west,
            &cloud::CopySpec {
                name: "kiln-bystander".into(),
                run: RunId::generate(),
                tags: Tags::new(),
                encrypted: true,
            },
        )
        .await
        .expect("copy the bystander");
    let before = census().await;
    let source = cloud::ImageId::new(moto.register_base("kiln-copied").await);
    let mut t = Tags::new();
    t.insert(cloud::tags::COPIES.into(), "eu-west-1".into());
    cloud.images().tag(&source, &t).await.expect("tag");
    let spec = cloud::CopySpec {
        name: "kiln-copied".into(),
        run: RunId::generate(),
        tags: Tags::new(),
        encrypted: true,
    };
    cloud
        .images()
        .copy_to_region(&source, &west, &spec)
        .await
        .expect("copy");
    let during = census().await;
    assert_eq!(during["eu-west-1"].images, before["eu-west-1"].images + 1);
    cloud
        .images()
        .deregister(&source)
        .await
        .expect("deregister");
    let after = census().await;
    assert_eq!(
        after["eu-west-1"], before["eu-west-1"],
        "the copy and its snapshot are gone"
    );
    assert_eq!(
        after["us-east-1"].images + 1,
        during["us-east-1"].images,
        "the source too"
    );
    let left = moto
        .ec2_in(TEST_KEY, TEST_KEY, "eu-west-1")
        .await
        .describe_images()
        .image_ids(bystander_copy.as_str())
        .send()
        .await
        .expect("DescribeImages");
    assert_eq!(left.images().len(), 1, "the bystander's copy stays");
}
