//! `bake` end to end on the aws backend: the real binary against a real moto
//! server (one per test, started and killed by the test), with the instance
//! emulator (tools/motokit) playing each builder: it runs the user-data kiln
//! rendered, which runs images/install.sh on the real payload and reports
//! through moto's S3. So these bakes really install, check and snapshot.
//!
//! Leaks are counted with [`Census`] (instances not terminated, security
//! groups, key pairs, S3 objects, snapshots, images) before and after.
#![cfg(feature = "aws")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use motokit::{
    Census, Emulator, EmulatorOptions, Fault, FaultProxy, IamUser, Moto, Reply, TEST_KEY, Tamper,
};

const BUCKET: &str = "kiln-bake-test";

/// A copy of `images/` in a temp dir (so tests may edit data and recipe),
/// a state dir, and the keys bake runs with.
struct Fixture {
    dir: tempfile::TempDir,
    key: String,
    secret: String,
    /// Where bake sends its calls instead of moto (a [`FaultProxy`]).
    endpoint: Option<String>,
}

impl Fixture {
    fn new(moto: &Moto) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &motokit::workspace_root().join("images"),
            &dir.path().join("images"),
        );
        let f = Fixture {
            dir,
            key: TEST_KEY.into(),
            secret: TEST_KEY.into(),
            endpoint: None,
        };
        f.base(r#"ssm_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64""#);
        let _ = moto;
        f
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    fn recipe(&self) -> PathBuf {
        self.images().join("searchd.toml")
    }

    /// Replaces the recipe's `[base.aws]` body.
    fn base(&self, body: &str) {
        let text = std::fs::read_to_string(self.recipe()).expect("recipe");
        let start = text.find("[base.aws]").expect("[base.aws] in the recipe");
        let end = text[start..]
            .find("\n[install]")
            .map(|i| start + i)
            .expect("[install] after [base.aws]");
        let new = format!("{}[base.aws]\n{body}\n{}", &text[..start], &text[end..]);
        std::fs::write(self.recipe(), new).expect("write recipe");
    }

    /// Sets the recipe's `[publish]` regions and accounts.
    fn publish(&self, regions: &[&str], accounts: &[&str]) {
        let list = |v: &[&str]| {
            v.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = std::fs::read_to_string(self.recipe()).expect("recipe");
        assert!(text.contains("regions = []") && text.contains("share_accounts = []"));
        let text = text
            .replace("regions = []", &format!("regions = [{}]", list(regions)))
            .replace(
                "share_accounts = []",
                &format!("share_accounts = [{}]", list(accounts)),
            );
        std::fs::write(self.recipe(), text).expect("write recipe");
    }

    fn bake(&self, moto: &Moto, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bake"));
        c.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KILN_BACKEND", "aws")
            .env("KILN_STATE_DIR", self.dir.path().join(".kiln"))
            .env("KILN_AWS_BUCKET", BUCKET)
            .env("KILN_STATIC_SEARCHD", motokit::static_searchd())
            .stdin(Stdio::null());
        for (k, v) in moto.env(&self.key, &self.secret) {
            c.env(k, v);
        }
        if let Some(e) = &self.endpoint {
            c.env("AWS_ENDPOINT_URL", e);
        }
        c
    }

    fn build(&self, moto: &Moto, extra: &[&str]) -> Output {
        let recipe = self.recipe();
        let mut args = vec!["build", recipe.to_str().expect("utf-8 path"), "--json"];
        args.extend_from_slice(extra);
        self.bake(moto, &args).output().expect("run bake")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// moto with the bucket, a fault proxy in front of it (bake and the
/// emulated builder both talk through it), the instance emulator, and a
/// fixture pointed at the proxy. Bindings drop in reverse: fixture,
/// emulator, proxy, then moto.
struct Proxied {
    moto: Moto,
    proxy: FaultProxy,
    _emu: Emulator,
    fx: Fixture,
}

async fn proxied() -> Proxied {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let proxy = FaultProxy::start(&moto);
    let _emu = Emulator::start(
        &moto,
        EmulatorOptions {
            proxy_port: Some(proxy.port()),
            ..EmulatorOptions::default()
        },
    );
    let mut fx = Fixture::new(&moto);
    fx.endpoint = Some(proxy.endpoint());
    Proxied {
        moto,
        proxy,
        _emu,
        fx,
    }
}

/// The bucket must exist: `policies/bake.json` does not allow creating it.
async fn make_bucket(moto: &Moto) {
    moto.s3(TEST_KEY, TEST_KEY)
        .await
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
}

async fn census(moto: &Moto) -> Census {
    Census::take(
        &moto.ec2(TEST_KEY, TEST_KEY).await,
        &moto.s3(TEST_KEY, TEST_KEY).await,
        BUCKET,
    )
    .await
}

fn ok_json(out: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bake failed ({:?}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}\n{stderr}", out.stdout))
}

fn image(v: &serde_json::Value) -> String {
    v["image"].as_str().expect("image id").to_owned()
}

fn calls(v: &serde_json::Value) -> u64 {
    v["api_calls"]
        .as_object()
        .map(|m| m.values().filter_map(|n| n.as_u64()).sum())
        .unwrap_or(0)
}

/// Bake twice: the same image id, and the second run launches nothing. The
/// API calls of both runs are printed (the README's table comes from here).
#[tokio::test(flavor = "multi_thread")]
async fn moto_bake_twice_same_id_second_launches_nothing() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let emu = Emulator::start(&moto, EmulatorOptions::default());
    let fx = Fixture::new(&moto);

    let first = ok_json(&fx.build(&moto, &[]));
    let id = image(&first);
    assert!(id.starts_with("ami-"), "{first}");
    assert_eq!(first["found"], false);
    assert_eq!(first["launched"], 1);
    let handled = emu.handled();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!(handled[0].status, Some(0), "{}", handled[0].output);

    // The image carries its identity and lineage as tags.
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let img = ec2
        .describe_images()
        .image_ids(&id)
        .send()
        .await
        .expect("DescribeImages")
        .images()[0]
        .clone();
    let tag = |k: &str| {
        img.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("kiln:digest").as_deref(), first["digest"].as_str());
    for k in [
        "kiln:name",
        "kiln:base",
        "kiln:searchd-version",
        "kiln:index-digest",
        "kiln:created",
        "kiln:bake",
    ] {
        assert!(tag(k).is_some(), "image tag {k} missing: {:?}", img.tags());
    }
    // Its snapshot is tagged with the run too (CreateTags after CreateImage).
    let snap = img.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("snapshot")
        .to_owned();
    let snaps = ec2
        .describe_snapshots()
        .snapshot_ids(&snap)
        .send()
        .await
        .expect("DescribeSnapshots");
    assert!(
        snaps.snapshots()[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("kiln:bake")),
        "{snaps:?}"
    );
    // The builder, its group and the run's objects are gone; the manifest
    // stays with the image.
    let after_first = census(&moto).await;
    assert_eq!(after_first.instances, 0, "{after_first:?}");
    assert_eq!(after_first.security_groups, 0, "{after_first:?}");
    assert_eq!(after_first.objects, 1, "only the manifest: {after_first:?}");

    let second = ok_json(&fx.build(&moto, &[]));
    assert_eq!(image(&second), id);
    assert_eq!(second["found"], true);
    assert_eq!(second["launched"], 0);
    assert_eq!(emu.handled().len(), 1, "the second bake launched nothing");
    assert_eq!(
        second["api_calls"]["EC2.RunInstances"],
        serde_json::Value::Null
    );

    eprintln!(
        "API calls, first bake ({} total): {}",
        calls(&first),
        first["api_calls"]
    );
    eprintln!(
        "API calls, unchanged bake ({} total): {}",
        calls(&second),
        second["api_calls"]
    );
    assert!(
        calls(&second) <= 3,
        "an unchanged bake is a lookup: {}",
        second["api_calls"]
    );

    // `bake show` and `bake list` read it back (manifest from S3).
    let out = fx.bake(&moto, &["show", &id]).output().expect("bake show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fx.bake(&moto, &["list"]).output().expect("bake list");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
}

/// One changed data row → a new input digest → a new image.
#[tokio::test(flavor = "multi_thread")]
async fn moto_changed_data_row_gives_a_new_image() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let _emu = Emulator::start(&moto, EmulatorOptions::default());
    let fx = Fixture::new(&moto);
    let first = image(&ok_json(&fx.build(&moto, &[])));

    let csv = fx.images().join("books/books.csv");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Change a word in the last data row.
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen(|c: char| c.is_ascii_lowercase(), "q", 1);
    std::fs::write(&csv, lines.join("\n") + "\n").expect("write csv");

    let second = ok_json(&fx.build(&moto, &[]));
    assert_ne!(image(&second), first);
    assert_eq!(second["launched"], 1);
}

/// A newer base AMI matching the recipe's filter → a new image.
#[tokio::test(flavor = "multi_thread")]
async fn moto_new_base_ami_gives_a_new_image() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let _emu = Emulator::start(&moto, EmulatorOptions::default());
    let fx = Fixture::new(&moto);
    fx.base(&format!(
        "owners = [\"{}\"]\nname = \"kiln-test-base-*\"\narchitecture = \"x86_64\"",
        motokit::ACCOUNT
    ));
    let base1 = moto.register_base("kiln-test-base-1").await;
    let first = ok_json(&fx.build(&moto, &[]));
    assert_eq!(first["base"], base1.as_str());
    // CreationDate has one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let base2 = moto.register_base("kiln-test-base-2").await;
    let second = ok_json(&fx.build(&moto, &[]));
    assert_eq!(second["base"], base2.as_str());
    assert_ne!(image(&second), image(&first));
    assert_ne!(second["digest"], first["digest"]);
}

/// The builder refuses a payload whose sha256 does not match (moto cannot
/// corrupt a download, so the emulator overwrites the S3 object first):
/// bake exits 1 with the builder's reason and leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn moto_wrong_payload_sha256_fails_and_leaves_nothing() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let _emu = Emulator::start(
        &moto,
        EmulatorOptions {
            tamper: Tamper::CorruptPayload,
            ..EmulatorOptions::default()
        },
    );
    let fx = Fixture::new(&moto);
    let before = census(&moto).await;
    let out = fx.build(&moto, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("verify-payload"), "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert!(out.stdout.is_empty(), "no image id on failure");
    assert_eq!(census(&moto).await, before, "nothing left behind");
}

/// A snapshot that fails `searchd check` inside the builder: bake exits 1
/// naming step `check`, and leaves nothing behind. (The emulator damages
/// the snapshot inside the payload; see motokit::Tamper::BreakFile.)
#[tokio::test(flavor = "multi_thread")]
async fn moto_failing_searchd_check_fails_and_leaves_nothing() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let _emu = Emulator::start(
        &moto,
        EmulatorOptions {
            tamper: Tamper::BreakFile(".idx".into()),
            ..EmulatorOptions::default()
        },
    );
    let fx = Fixture::new(&moto);
    let before = census(&moto).await;
    let out = fx.build(&moto, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`check`"), "{stderr}");
    assert_eq!(census(&moto).await, before, "nothing left behind");
}

/// Waits for a builder to exist, with the bake still running.
fn launched(emu: &Emulator, child: &mut std::process::Child) {
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end {
        if !emu.handled().is_empty() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("bake ended before launching a builder: {status:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no builder launched within 120 s");
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

/// Ctrl-C while bake waits for its builder: it cleans up everything and
/// exits 130.
#[tokio::test(flavor = "multi_thread")]
async fn moto_sigint_mid_bake_leaves_nothing() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let emu = Emulator::start(
        &moto,
        EmulatorOptions {
            hold: true,
            ..EmulatorOptions::default()
        },
    );
    let fx = Fixture::new(&moto);
    let before = census(&moto).await;
    let recipe = fx.recipe();
    let mut child = fx
        .bake(&moto, &["build", recipe.to_str().expect("path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bake");
    launched(&emu, &mut child);
    let during = census(&moto).await;
    assert_eq!(during.instances, before.instances + 1, "{during:?}");
    signal(&child, "-INT");
    let out = child.wait_with_output().expect("wait bake");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        census(&moto).await,
        before,
        "nothing left behind:\n{stderr}"
    );
}

/// kill -9 while bake waits for its builder leaves tagged resources;
/// `bake gc --older-than 0` removes every one of them.
#[tokio::test(flavor = "multi_thread")]
async fn moto_kill9_then_gc_leaves_nothing() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let emu = Emulator::start(
        &moto,
        EmulatorOptions {
            hold: true,
            ..EmulatorOptions::default()
        },
    );
    let fx = Fixture::new(&moto);
    let before = census(&moto).await;
    let recipe = fx.recipe();
    let mut child = fx
        .bake(&moto, &["build", recipe.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bake");
    launched(&emu, &mut child);
    signal(&child, "-KILL");
    let _ = child.wait();
    let leaked = census(&moto).await;
    assert!(leaked.instances > before.instances, "{leaked:?}");
    assert!(
        leaked.security_groups > before.security_groups,
        "{leaked:?}"
    );
    assert!(leaked.objects > before.objects, "{leaked:?}");

    // Young leftovers are not touched by default (a bake may be running).
    let out = fx.bake(&moto, &["gc"]).output().expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(census(&moto).await, leaked);

    let out = fx
        .bake(&moto, &["gc", "--older-than", "0"])
        .output()
        .expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(census(&moto).await, before, "gc leaves nothing");
}

/// A malformed recipe is bad input (exit 2) naming the field, before any
/// call to AWS.
#[tokio::test(flavor = "multi_thread")]
async fn moto_malformed_recipe_names_the_field() {
    let moto = Moto::start();
    let fx = Fixture::new(&moto);
    fx.base("owners = [\"amazon\"]");
    let out = fx.build(&moto, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("base.aws"), "{stderr}");
}

/// With moto's IAM enforcement on, bake succeeds with exactly
/// `policies/bake.json`, and fails with a clear message (exit 3, naming the
/// call) when one action is removed from it.
#[tokio::test(flavor = "multi_thread")]
async fn moto_iam_bake_policy_is_sufficient_and_each_action_matters() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let policy = std::fs::read_to_string(motokit::workspace_root().join("policies/bake.json"))
        .expect("policies/bake.json");
    let admin = moto.iam_user(
        "admin",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    );
    let baker = moto.iam_user("baker", &policy);
    let without = policy.replace("\"ec2:CreateImage\",", "");
    assert_ne!(without, policy, "the policy grants ec2:CreateImage");
    let crippled = moto.iam_user("crippled", &without);
    moto.enforce_iam();

    let emu = Emulator::start(
        &moto,
        EmulatorOptions {
            key: admin.key.clone(),
            secret: admin.secret.clone(),
            presign_signer: Some((baker.key.clone(), baker.secret.clone())),
            ..EmulatorOptions::default()
        },
    );
    let mut fx = Fixture::new(&moto);
    as_user(&mut fx, &baker);
    let out = ok_json(&fx.build(&moto, &[]));
    assert_eq!(out["launched"], 1, "{out}");
    assert!(emu.errors().is_empty(), "{:?}", emu.errors());

    drop(emu);
    let _emu = Emulator::start(
        &moto,
        EmulatorOptions {
            key: admin.key.clone(),
            secret: admin.secret.clone(),
            presign_signer: Some((crippled.key.clone(), crippled.secret.clone())),
            ..EmulatorOptions::default()
        },
    );
    as_user(&mut fx, &crippled);
    let before = admin_census(&moto, &admin).await;
    let out = fx.build(&moto, &["--force"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("CreateImage"), "{stderr}");
    assert!(stderr.contains("us-east-1"), "{stderr}");
    assert!(
        stderr.contains("AccessDenied") || stderr.contains("UnauthorizedOperation"),
        "{stderr}"
    );
    assert_eq!(
        admin_census(&moto, &admin).await,
        before,
        "nothing left behind"
    );
}

fn as_user(fx: &mut Fixture, user: &IamUser) {
    fx.key = user.key.clone();
    fx.secret = user.secret.clone();
}

async fn admin_census(moto: &Moto, admin: &IamUser) -> Census {
    Census::take(
        &moto.ec2(&admin.key, &admin.secret).await,
        &moto.s3(&admin.key, &admin.secret).await,
        BUCKET,
    )
    .await
}

/// `[publish]`: an encrypted, tagged copy in each extra region and launch
/// permission for each account. The copy outlives the bake (only failed
/// bakes remove their copies).
#[tokio::test(flavor = "multi_thread")]
async fn moto_publish_copies_encrypted_and_shares() {
    let moto = Moto::start();
    make_bucket(&moto).await;
    let _emu = Emulator::start(&moto, EmulatorOptions::default());
    let fx = Fixture::new(&moto);
    fx.publish(&["us-west-2"], &["111122223333"]);
    let before = regions_census(&moto, &["us-west-2"]).await;
    let out = ok_json(&fx.build(&moto, &[]));
    let id = image(&out);
    eprintln!(
        "API calls, bake with one copy and one share: {}",
        out["api_calls"]
    );

    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let perms = ec2
        .describe_image_attribute()
        .image_id(&id)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .expect("DescribeImageAttribute");
    assert!(
        perms
            .launch_permissions()
            .iter()
            .any(|p| p.user_id() == Some("111122223333")),
        "{perms:?}"
    );

    let conf = moto.sdk_config(TEST_KEY, TEST_KEY).await;
    let west = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&conf)
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build(),
    );
    let copies = west
        .describe_images()
        .owners("self")
        .send()
        .await
        .expect("DescribeImages us-west-2");
    let copy = copies.images().first().expect("a copy in us-west-2");
    assert!(
        copy.tags()
            .iter()
            .any(|t| t.key() == Some("kiln:digest") && t.value() == out["digest"].as_str()),
        "the copy carries the digest: {copy:?}"
    );
    // Kept: the image and the copy, each with its snapshot.
    let after = regions_census(&moto, &["us-west-2"]).await;
    for region in ["us-east-1", "us-west-2"] {
        let (b, a) = (before[region], after[region]);
        assert_eq!(a.images, b.images + 1, "{region}: {b:?} -> {a:?}");
        assert_eq!(a.snapshots, b.snapshots + 1, "{region}: {b:?} -> {a:?}");
    }
}

async fn regions_census(
    moto: &Moto,
    others: &[&str],
) -> std::collections::BTreeMap<String, Census> {
    Census::regions(moto, TEST_KEY, TEST_KEY, BUCKET, others).await
}

/// The copy to the second region fails (EC2 refuses a region the account
/// has not opted into; the fault proxy answers the same for moto) after
/// the first copy exists: bake exits 3 naming the call and the region, and
/// removes the first copy along with the image — nothing left anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn moto_failed_second_copy_leaves_nothing_in_any_region() {
    let Proxied {
        moto,
        proxy,
        _emu,
        fx,
    } = proxied().await;
    proxy.on(
        "CopyImage",
        "eu-west-2",
        Fault::Fail(Reply::ec2_error(
            "OptInRequired",
            "You are not subscribed to this service. Please go to http://aws.amazon.com to subscribe.",
        )),
    );
    fx.publish(&["eu-west-1", "eu-west-2"], &[]);
    let regions = ["eu-west-1", "eu-west-2"];
    let before = regions_census(&moto, &regions).await;

    let out = fx.build(&moto, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("copied to eu-west-1: ami-"), "{stderr}");
    assert!(
        stderr.contains("CopyImage") && stderr.contains("to eu-west-2"),
        "{stderr}"
    );
    assert!(stderr.contains("OptInRequired"), "{stderr}");
    assert!(out.stdout.is_empty(), "no image id on failure");
    assert_eq!(proxy.hits(), ["CopyImage@eu-west-2"]);
    eprintln!("what a failed copy looks like:\n{stderr}");
    assert_eq!(
        regions_census(&moto, &regions).await,
        before,
        "nothing left in any region:\n{stderr}"
    );
}

/// Ctrl-C while a copy is in flight: bake lets the CopyImage finish (its
/// copy would otherwise be made behind its back), then removes both copies
/// and the image and exits 130.
#[tokio::test(flavor = "multi_thread")]
async fn moto_sigint_while_copying_leaves_nothing_in_any_region() {
    let Proxied {
        moto,
        proxy,
        _emu,
        fx,
    } = proxied().await;
    proxy.on(
        "CopyImage",
        "eu-west-2",
        Fault::Delay(Duration::from_secs(2)),
    );
    fx.publish(&["eu-west-1", "eu-west-2"], &[]);
    let regions = ["eu-west-1", "eu-west-2"];
    let before = regions_census(&moto, &regions).await;

    let recipe = fx.recipe();
    let child = fx
        .bake(&moto, &["build", recipe.to_str().expect("path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bake");
    assert!(
        proxy.wait_for_hit("CopyImage", "eu-west-2", Duration::from_secs(120)),
        "bake never copied to eu-west-2"
    );
    signal(&child, "-INT");
    let out = child.wait_with_output().expect("wait bake");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("copied to eu-west-2: ami-"), "{stderr}");
    assert_eq!(
        regions_census(&moto, &regions).await,
        before,
        "nothing left in any region:\n{stderr}"
    );
}

/// kill -9 while sharing, after the copy exists: the copy in eu-west-1 is
/// left with the builder and the image; `bake gc --region eu-west-1`
/// removes all of it, the copy in its own region.
#[tokio::test(flavor = "multi_thread")]
async fn moto_kill9_after_copy_then_gc_with_region_leaves_nothing() {
    let Proxied {
        moto,
        proxy,
        _emu,
        mut fx,
    } = proxied().await;
    proxy.on("ModifyImageAttribute", "us-east-1", Fault::Hang);
    fx.publish(&["eu-west-1"], &["111122223333"]);
    let before = regions_census(&moto, &["eu-west-1"]).await;

    let recipe = fx.recipe();
    let mut child = fx
        .bake(&moto, &["build", recipe.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bake");
    assert!(
        proxy.wait_for_hit(
            "ModifyImageAttribute",
            "us-east-1",
            Duration::from_secs(120)
        ),
        "bake never got to sharing"
    );
    signal(&child, "-KILL");
    let _ = child.wait();
    let leaked = regions_census(&moto, &["eu-west-1"]).await;
    assert_eq!(
        leaked["eu-west-1"].images,
        before["eu-west-1"].images + 1,
        "the copy exists: {leaked:?}"
    );
    assert!(leaked["us-east-1"].instances > before["us-east-1"].instances);

    fx.endpoint = None;
    let dry = fx
        .bake(
            &moto,
            &[
                "gc",
                "--older-than",
                "0",
                "--region",
                "eu-west-1",
                "--dry-run",
            ],
        )
        .output()
        .expect("bake gc --dry-run");
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(listed.contains("image@eu-west-1\tami-"), "{listed}");
    assert!(listed.contains("instance\ti-"), "{listed}");
    assert_eq!(regions_census(&moto, &["eu-west-1"]).await, leaked);

    let out = fx
        .bake(
            &moto,
            &["gc", "--older-than", "0", "--region", "eu-west-1", "--json"],
        )
        .output()
        .expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        report["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .any(|l| l["kind"] == "image" && l["region"] == "eu-west-1"),
        "{report}"
    );
    assert_eq!(
        regions_census(&moto, &["eu-west-1"]).await,
        before,
        "gc leaves nothing in either region"
    );
}

/// The account's images in `region`.
async fn owned_images(moto: &Moto, region: &str) -> Vec<aws_sdk_ec2::types::Image> {
    moto.ec2_in(TEST_KEY, TEST_KEY, region)
        .await
        .describe_images()
        .owners("self")
        .send()
        .await
        .expect("DescribeImages")
        .images()
        .to_vec()
}

fn tag_of(img: &aws_sdk_ec2::types::Image, key: &str) -> Option<String> {
    img.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_owned)
}

/// Spawns `bake build` (through the fault proxy) and waits until the call
/// `action@region` the proxy holds has arrived, then kills bake (-9).
fn bake_killed_at(fx: &Fixture, moto: &Moto, proxy: &FaultProxy, action: &str, region: &str) {
    let recipe = fx.recipe();
    let mut child = fx
        .bake(moto, &["build", recipe.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bake");
    assert!(
        proxy.wait_for_hit(action, region, Duration::from_secs(120)),
        "bake never got to {action} in {region}"
    );
    signal(&child, "-KILL");
    let _ = child.wait();
}

/// The bug this guards against: bake killed after its image became
/// available but before publishing finished (here: while sharing, with
/// the copy made). The image is `baking`, so the next bake of the same
/// inputs does not answer "nothing to bake" but bakes again, publishes
/// and marks its image (and copy) complete; the bake after that finds
/// it. `bake gc` — without `--region` — then removes the dead run's image,
/// its snapshot and its copy in eu-west-1 (found from the image's
/// `kiln:copies` tag), and nothing of the good one.
#[tokio::test(flavor = "multi_thread")]
async fn moto_kill9_while_publishing_then_the_same_inputs_bake_again_and_gc_finds_the_copy() {
    let Proxied {
        moto,
        proxy,
        _emu: emu,
        mut fx,
    } = proxied().await;
    proxy.on("ModifyImageAttribute", "us-east-1", Fault::Hang);
    fx.publish(&["eu-west-1"], &["111122223333"]);
    let before = regions_census(&moto, &["eu-west-1"]).await;

    bake_killed_at(&fx, &moto, &proxy, "ModifyImageAttribute", "us-east-1");
    let dead = owned_images(&moto, "us-east-1").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead_id = dead[0].image_id().expect("id").to_owned();
    assert_eq!(tag_of(&dead[0], "kiln:state").as_deref(), Some("baking"));
    assert_eq!(
        tag_of(&dead[0], "kiln:copies").as_deref(),
        Some("eu-west-1")
    );
    let dead_copy = owned_images(&moto, "eu-west-1").await;
    assert_eq!(dead_copy.len(), 1, "the copy exists: {dead_copy:?}");
    assert_eq!(
        tag_of(&dead_copy[0], "kiln:state").as_deref(),
        Some("baking")
    );
    let dead_copy_id = dead_copy[0].image_id().expect("id").to_owned();
    // `bake list` says so.
    fx.endpoint = None;
    let out = fx.bake(&moto, &["list", "--json"]).output().expect("list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list[0]["bake_state"], "baking", "{list}");

    proxy.clear();
    fx.endpoint = Some(proxy.endpoint());
    let out = fx.build(&moto, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("nothing to bake"), "{stderr}");
    let second = ok_json(&out);
    assert_eq!(second["found"], false, "{stderr}");
    assert_eq!(second["launched"], 1);
    assert_eq!(emu.handled().len(), 2);
    let good = image(&second);
    assert_ne!(good, dead_id);
    eprintln!(
        "API calls, bake with one copy, one share and the completion marks ({} total): {}",
        calls(&second),
        second["api_calls"]
    );
    let here = owned_images(&moto, "us-east-1").await;
    let img = here
        .iter()
        .find(|i| i.image_id() == Some(good.as_str()))
        .expect("the new image");
    assert_eq!(tag_of(img, "kiln:state").as_deref(), Some("complete"));
    let copies = owned_images(&moto, "eu-west-1").await;
    let copy = copies
        .iter()
        .find(|i| i.image_id() != Some(dead_copy_id.as_str()))
        .expect("the new copy");
    assert_eq!(tag_of(copy, "kiln:state").as_deref(), Some("complete"));
    assert_eq!(tag_of(copy, "kiln:bake"), tag_of(img, "kiln:bake"));

    let third = ok_json(&fx.build(&moto, &[]));
    assert_eq!(third["found"], true);
    assert_eq!(image(&third), good);
    assert_eq!(emu.handled().len(), 2, "the third bake launched nothing");

    // gc without --region: the dead run's copy is found from its image.
    fx.endpoint = None;
    let out = fx
        .bake(&moto, &["gc", "--older-than", "0", "--json"])
        .output()
        .expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let removed = report["removed"].as_array().expect("removed");
    let has = |kind: &str, id: &str, region: Option<&str>| {
        removed.iter().any(|l| {
            l["kind"] == kind && l["id"] == id && l.get("region").and_then(|r| r.as_str()) == region
        })
    };
    assert!(has("image", &dead_id, None), "{report}");
    assert!(has("image", &dead_copy_id, Some("eu-west-1")), "{report}");
    assert!(
        !removed.iter().any(|l| l["id"] == good.as_str()),
        "{report}"
    );
    let after = regions_census(&moto, &["eu-west-1"]).await;
    for region in ["us-east-1", "eu-west-1"] {
        let (b, a) = (before[region], after[region]);
        assert_eq!(a.images, b.images + 1, "{region}: {b:?} -> {a:?}");
        assert_eq!(a.snapshots, b.snapshots + 1, "{region}: {b:?} -> {a:?}");
    }
    let (b, a) = (before["us-east-1"], after["us-east-1"]);
    assert_eq!(
        (a.instances, a.security_groups, a.objects),
        (b.instances, b.security_groups, b.objects + 1),
        "only the manifest stays: {b:?} -> {a:?}"
    );
    // And the good image is still the answer.
    let fourth = ok_json(&fx.build(&moto, &[]));
    assert_eq!(image(&fourth), good);
    assert_eq!(fourth["found"], true);
}

/// The narrowest window: everything published and the copies marked
/// complete, the image's own mark held (the proxy holds that CreateTags)
/// when bake is killed. The image stays `baking`, so the run did not
/// finish: a young run is left alone by the default `--older-than`, and
/// `gc --older-than 0` without `--region` removes the image and both
/// copies — complete or not — in their regions. A region gc cannot scan
/// (its DescribeImages refused) holds the image back, so a later gc still
/// finds that region's copy.
#[tokio::test(flavor = "multi_thread")]
async fn moto_kill9_before_the_image_is_marked_then_gc_removes_image_and_marked_copies() {
    let Proxied {
        moto,
        proxy,
        _emu,
        fx,
    } = proxied().await;
    proxy.on_body("CreateTags", "us-east-1", "Value=complete", Fault::Hang);
    fx.publish(&["eu-west-1", "eu-west-2"], &[]);
    let regions = ["eu-west-1", "eu-west-2"];
    let before = regions_census(&moto, &regions).await;

    bake_killed_at(&fx, &moto, &proxy, "CreateTags", "us-east-1");
    let leaked = regions_census(&moto, &regions).await;
    let dead = owned_images(&moto, "us-east-1").await;
    assert_eq!(tag_of(&dead[0], "kiln:state").as_deref(), Some("baking"));
    for region in regions {
        let copies = owned_images(&moto, region).await;
        assert_eq!(copies.len(), 1, "{region}: {copies:?}");
        assert_eq!(
            tag_of(&copies[0], "kiln:state").as_deref(),
            Some("complete"),
            "{region}: copies are marked before the image"
        );
    }

    // A young run may be alive: the default --older-than (1h) keeps it.
    let out = fx.bake(&moto, &["gc"]).output().expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(regions_census(&moto, &regions).await, leaked);

    // eu-west-2 cannot be scanned: its copy and the image stay.
    proxy.clear();
    proxy.on(
        "DescribeImages",
        "eu-west-2",
        Fault::Fail(Reply::ec2_error(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        )),
    );
    let out = fx
        .bake(&moto, &["gc", "--older-than", "0"])
        .output()
        .expect("bake gc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("eu-west-2"), "{stderr}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("image@eu-west-1\tami-"), "{listed}");
    let partial = regions_census(&moto, &regions).await;
    // (The bucket is the same from every region: the image's manifest
    // stays with it.)
    let images_snaps = |c: Census| (c.images, c.snapshots);
    assert_eq!(
        images_snaps(partial["eu-west-1"]),
        images_snaps(before["eu-west-1"]),
        "{partial:?}"
    );
    assert_eq!(
        images_snaps(partial["eu-west-2"]),
        images_snaps(leaked["eu-west-2"]),
        "{partial:?}"
    );
    assert_eq!(
        partial["us-east-1"].images, leaked["us-east-1"].images,
        "the image is held back: {partial:?}"
    );
    assert_eq!(
        partial["us-east-1"].instances,
        before["us-east-1"].instances
    );

    proxy.clear();
    let out = fx
        .bake(&moto, &["gc", "--older-than", "0"])
        .output()
        .expect("bake gc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        regions_census(&moto, &regions).await,
        before,
        "gc leaves nothing in any region"
    );
}

/// A complete kiln image named `name` with a digest of its own (what
/// `bake build` leaves, without the bake): an AMI made from a seeded one,
/// tagged at creation. Returns its id.
async fn release_image(moto: &Moto, name: &str, n: u8) -> String {
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let (inst, _) = moto.run_seeded().await;
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let id = ec2
        .create_image()
        .instance_id(&inst)
        .name(format!("{name}-{n}"))
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Image)
                .tags(tag(cloud::tags::NAME, name))
                .tags(tag(cloud::tags::DIGEST, &format!("{n:02x}").repeat(32)))
                .tags(tag(cloud::tags::STATE, cloud::tags::STATE_COMPLETE))
                .build(),
        )
        .send()
        .await
        .expect("CreateImage")
        .image_id
        .expect("id");
    moto.terminate(&inst).await;
    id
}

/// `bake prune --keep 0` on aws keeps what a group roll manages uses or
/// may roll back to: the Auto Scaling group (tagged `kiln:roll-group`, as
/// Terraform made it) launches image A from launch-template version 2 and
/// has version 1 with image B; an unrelated image C of the same name goes.
#[tokio::test(flavor = "multi_thread")]
async fn moto_prune_keeps_what_a_group_runs_and_may_roll_back_to() {
    let moto = Moto::start();
    let fx = Fixture::new(&moto);
    let b = release_image(&moto, "searchd", 1).await;
    let a = release_image(&moto, "searchd", 2).await;
    let c = release_image(&moto, "searchd", 3).await;
    let fleet = moto
        .fleet(&motokit::FleetSpec {
            group_tags: vec![(cloud::tags::ROLL_GROUP.into(), "web".into())],
            ..motokit::FleetSpec::new("web", &b)
        })
        .await;
    // Version 2 runs A; the group is pinned to it and its instance replaced.
    let two = moto.template_version(&fleet.launch_template, &a).await;
    moto.pin_group("web", &fleet.launch_template, &two.to_string())
        .await;
    for old in moto.group_instances("web").await {
        moto.replace_member(&old).await;
    }

    let out = fx
        .bake(&moto, &["prune", "--keep", "0", "--json"])
        .output()
        .expect("bake prune");
    let v = ok_json(&out);
    let ids = |k: &str| -> Vec<String> {
        let mut v: Vec<String> = v[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let mut kept = vec![a.clone(), b.clone()];
    kept.sort();
    assert_eq!(ids("protected"), kept, "{v}");
    assert_eq!(ids("delete"), vec![c.clone()], "{v}");
    let left: Vec<String> = owned_images(&moto, "us-east-1")
        .await
        .iter()
        .filter_map(|i| i.image_id().map(str::to_owned))
        .collect();
    assert!(left.contains(&a) && left.contains(&b), "{left:?}");
    assert!(!left.contains(&c), "{left:?}");
}
