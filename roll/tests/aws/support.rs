//! Fixtures for roll's end-to-end tests on moto: a moto server, two
//! complete kiln images (AMIs made the way bake makes them, through the
//! cloud crate's `create_image`, with manifests in S3 and the completion
//! marker), a service as Terraform would leave it (launch template pinned
//! by number, Auto Scaling group, internal ALB, two target groups behind
//! one weighted listener: `motokit::Moto::fleet`), and the real `roll`
//! binary pointed at all of it.
//!
//! What moto cannot show (so these tests do not claim it): targets are
//! healthy at once and never draining, lifecycle hooks never fire (new
//! instances go InService at once, so the `kiln-gate` hold is stored but
//! not exercised), instance refresh is missing. Those paths run on the
//! scripted fake with paused time (`roll/tests/scenarios.rs`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use cloud::{
    BaseImage, Cloud, GoldenRecord, ImageId, ImageManifest, ImageSpec, IndexRecord, InstanceId,
    MANIFEST_FORMAT, RunId, Tags, tags,
};
use motokit::{Fleet, FleetSpec, Moto, TEST_KEY};

pub const BUCKET: &str = "kiln-roll-test";

pub fn roll_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roll"))
}

/// A connection to moto through the cloud crate (as roll makes one).
pub async fn cloud(moto: &Moto) -> Cloud {
    let (cloud, _calls) = cloud::aws::connect(cloud::aws::AwsOptions {
        endpoint_url: Some(moto.endpoint()),
        static_credentials: Some((TEST_KEY.into(), TEST_KEY.into())),
        region: Some(motokit::REGION.into()),
        bucket: Some(BUCKET.into()),
        create_bucket: true,
        retries: false,
        ..cloud::aws::AwsOptions::default()
    })
    .await
    .expect("connect to moto");
    cloud
}

/// A complete kiln image `name` (`n` makes its digests its own): a
/// builder launched from a seeded AMI, imaged through the cloud crate with
/// a manifest in S3, then marked complete, as `bake build` leaves it.
pub async fn kiln_image(moto: &Moto, cloud: &Cloud, name: &str, n: u8) -> ImageId {
    let (builder, seed) = moto.run_seeded().await;
    let digest = format!("{n:02x}").repeat(32);
    let index_digest = index_digest(n);
    let mut t = Tags::new();
    t.insert(tags::NAME.into(), name.into());
    t.insert(tags::DIGEST.into(), digest.clone());
    t.insert(tags::STATE.into(), tags::STATE_BAKING.into());
    t.insert(tags::INDEX_DIGEST.into(), index_digest.clone());
    t.insert(tags::SEARCHD_VERSION.into(), "test".into());
    let now = cloud::time::now_unix();
    let manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        id: ImageId::from(""),
        name: name.into(),
        digest: digest.clone(),
        base: BaseImage {
            id: ImageId::new(seed.clone()),
            name: "al2023".into(),
            tarball: None,
        },
        parents: vec![],
        files: vec![],
        tags: t.clone(),
        searchd_version: "test".into(),
        index: IndexRecord {
            name: "books".into(),
            digest: index_digest,
            documents: 540,
            path: "/var/lib/kiln/books.idx".into(),
            golden: vec![GoldenRecord {
                query: "alan".into(),
                ids: 20,
                offset: 0,
                min_total: 1,
                total: 1,
                answer: "{}".into(),
            }],
        },
        created: cloud::time::rfc3339(now),
        created_unix: now,
        run: RunId::from(format!("test-{n}").as_str()),
        rootfs: None,
    };
    let id = cloud
        .images()
        .create_image(
            &InstanceId::new(builder.clone()),
            &ImageSpec {
                name: name.into(),
                run: manifest.run.clone(),
                tags: t,
                manifest,
            },
        )
        .await
        .expect("create_image");
    let mut done = Tags::new();
    done.insert(tags::STATE.into(), tags::STATE_COMPLETE.into());
    cloud.images().tag(&id, &done).await.expect("mark complete");
    moto.terminate(&builder).await;
    id
}

/// moto, images v1 and v2, and a service `web` of `size` instances on v1.
pub struct Fx {
    pub moto: Moto,
    pub cloud: Cloud,
    pub v1: ImageId,
    pub v2: ImageId,
    pub fleet: Fleet,
    pub dir: tempfile::TempDir,
}

impl Fx {
    pub async fn new(size: i32) -> Fx {
        let moto = Moto::start();
        let cloud = cloud(&moto).await;
        let v1 = kiln_image(&moto, &cloud, "searchd", 1).await;
        let v2 = kiln_image(&moto, &cloud, "searchd", 2).await;
        let fleet = moto
            .fleet(&FleetSpec {
                desired: size,
                min: size.min(1),
                max: size,
                ..FleetSpec::new("web", v1.as_str())
            })
            .await;
        Fx {
            moto,
            cloud,
            v1,
            v2,
            fleet,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `roll --backend aws …` with the service's listener and target
    /// groups from flags, polling every 100 ms.
    pub fn roll(&self, args: &[&str]) -> Output {
        self.roll_cmd(args).output().expect("run roll")
    }

    pub fn roll_cmd(&self, args: &[&str]) -> Command {
        self.roll_via(&self.moto.endpoint(), args)
    }

    /// `roll` talking to `endpoint` (a fault proxy in front of moto).
    pub fn roll_via(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = Command::new(roll_bin());
        c.args(args)
            .args([
                "--backend",
                "aws",
                "--state-dir",
                self.dir.path().join("state").to_str().expect("utf-8"),
                "--aws-bucket",
                BUCKET,
                "--listener",
                &self.fleet.listener,
                "--target-group",
                &self.fleet.tg_a,
                "--target-group",
                &self.fleet.tg_b,
                "--poll",
                "100ms",
            ])
            .envs(self.moto.env(TEST_KEY, TEST_KEY))
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("KILN_LOG", "warn");
        c
    }

    /// The image each of a group's instances runs, from EC2.
    pub async fn images_of(&self, group: &str) -> Vec<String> {
        let ids = self.moto.group_instances(group).await;
        if ids.is_empty() {
            return vec![];
        }
        let ec2 = self.moto.ec2(TEST_KEY, TEST_KEY).await;
        let mut images: Vec<String> = ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .expect("DescribeInstances")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.image_id().map(str::to_owned))
            .collect();
        images.sort();
        images
    }

    pub async fn group(&self, name: &str) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
        self.moto
            .autoscaling()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("DescribeAutoScalingGroups")
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .next()
    }

    pub async fn tags_of(&self, name: &str) -> Tags {
        self.group(name)
            .await
            .map(|g| {
                g.tags()
                    .iter()
                    .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The weights of the listener's forward, by target group ARN.
    pub async fn weights(&self) -> Vec<(String, i32)> {
        let l = self
            .moto
            .elb()
            .await
            .describe_listeners()
            .listener_arns(&self.fleet.listener)
            .send()
            .await
            .expect("DescribeListeners")
            .listeners
            .unwrap_or_default()
            .remove(0);
        let a = l.default_actions()[0].clone();
        match a.forward_config().map(|f| f.target_groups()) {
            Some(t) if !t.is_empty() => t
                .iter()
                .map(|t| {
                    (
                        t.target_group_arn().unwrap_or_default().to_owned(),
                        t.weight().unwrap_or(1),
                    )
                })
                .collect(),
            _ => vec![(a.target_group_arn().unwrap_or_default().to_owned(), 1)],
        }
    }

    /// The live target group (the heaviest weight).
    pub async fn live(&self) -> String {
        let w = self.weights().await;
        w.iter()
            .max_by_key(|(_, w)| *w)
            .map(|(a, _)| a.clone())
            .expect("a target group")
    }
}

/// stdout as JSON, after checking the exit code.
pub fn json(out: &Output, code: i32) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr:\n{}\nstdout:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

impl Fx {
    /// Every EC2 instance ever launched from `image` (terminated ones too).
    pub async fn launched(&self, image: &ImageId) -> usize {
        let ec2 = self.moto.ec2(TEST_KEY, TEST_KEY).await;
        ec2.describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("image-id")
                    .values(image.as_str())
                    .build(),
            )
            .send()
            .await
            .expect("DescribeInstances")
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum()
    }

    /// The group converged on `image`: `n` instances of it, limits as
    /// Terraform left them (min 1, max n), no roll record, no lease, no
    /// kiln launch hook left.
    pub async fn assert_settled(&self, group: &str, image: &ImageId, n: usize) {
        assert_eq!(
            self.images_of(group).await,
            vec![image.to_string(); n],
            "{group}'s instances"
        );
        let g = self.group(group).await.expect("the group");
        assert_eq!(
            (g.min_size(), g.max_size(), g.desired_capacity()),
            (Some(1), Some(n as i32), Some(n as i32)),
            "{group}'s limits"
        );
        let t = self.tags_of(group).await;
        let left: Vec<&String> = t
            .keys()
            .filter(|k| {
                k.starts_with("kiln:roll-") && *k != "kiln:roll-group"
                    || k.starts_with("kiln:lease")
            })
            .collect();
        assert!(left.is_empty(), "{group}: roll record or lease left: {t:?}");
        let hooks = self
            .moto
            .autoscaling()
            .await
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .expect("DescribeLifecycleHooks");
        assert!(
            hooks.lifecycle_hooks().is_empty(),
            "{group}: hooks left: {hooks:?}"
        );
    }
}

/// A stand-in for the instances behind a test listener (moto runs no
/// instances): answers `/ready`, `/version` as `image` with `index_digest`,
/// and every other GET with `{}` (the fixtures' golden answer), HTTP/1.1
/// keep-alive, on 127.0.0.1. Stops when dropped.
pub struct StandIn {
    pub address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StandIn {
    pub fn start(image: &str, index_digest: &str) -> StandIn {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let address = l.local_addr().expect("addr").to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let version = format!(r#"{{"image":"{image}","index_digest":"{index_digest}"}}"#);
        let halt = stop.clone();
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok((conn, _)) = l.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let version = version.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    let mut w = conn.try_clone().expect("clone");
                    let mut r = BufReader::new(conn);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                                break;
                            }
                        }
                        let body = match path.as_str() {
                            "/ready" => "ok".to_owned(),
                            "/version" => version.clone(),
                            _ => "{}".to_owned(),
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if w.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StandIn { address, stop }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The index digest `kiln_image(.., n)` records.
pub fn index_digest(n: u8) -> String {
    format!("{:02x}", n + 100).repeat(32)
}

impl Fx {
    /// A plain-HTTP test listener on the service's balancer, port 8081,
    /// forwarding to the idle target group (b).
    pub async fn test_listener(&self) -> String {
        self.moto
            .elb()
            .await
            .create_listener()
            .load_balancer_arn(&self.fleet.load_balancer)
            .port(8081)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .default_actions(
                aws_sdk_elasticloadbalancingv2::types::Action::builder()
                    .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                    .target_group_arn(&self.fleet.tg_b)
                    .build(),
            )
            .send()
            .await
            .expect("CreateListener")
            .listeners()[0]
            .listener_arn()
            .expect("an ARN")
            .to_owned()
    }
}

impl Fx {
    /// How many versions the service's launch template has.
    pub async fn template_versions(&self) -> usize {
        self.moto
            .ec2(TEST_KEY, TEST_KEY)
            .await
            .describe_launch_template_versions()
            .launch_template_id(&self.fleet.launch_template)
            .send()
            .await
            .expect("DescribeLaunchTemplateVersions")
            .launch_template_versions()
            .len()
    }
}

impl Fx {
    /// The group's suspended Auto Scaling processes, sorted as kiln names
    /// them.
    pub async fn suspended(&self, group: &str) -> Vec<&'static str> {
        let g = self.group(group).await.expect("the group");
        let names: Vec<String> = g
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect();
        cloud::aws::STANDBY_SUSPENDED
            .into_iter()
            .filter(|p| names.iter().any(|n| n == p))
            .collect()
    }
}
