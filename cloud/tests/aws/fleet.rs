//! Groups and load balancers on aws (Auto Scaling, ELBv2) against a real
//! moto server, on a fleet made the way Terraform would make it
//! (`motokit::Moto::fleet`: launch template, Auto Scaling group, ALB, two
//! target groups, a listener): the fleet conformance checks moto can
//! run, then what is aws's own.
//!
//! Not run on moto, and why (the scripted fake, `cloud::fake`, and roll's
//! scenario tests cover these paths):
//! - `fleet::hold_and_put_in_service`: moto stores lifecycle hooks but
//!   never fires them (its instances go InService at once, never
//!   `Pending:Wait`), answers CompleteLifecycleAction with a 500, and the
//!   aws gate (`Probes`, through a test listener) is a later slice.
//! - Health transitions (initial, unhealthy, flapping): moto's
//!   DescribeTargetHealth only ever says `healthy`.
//! - Draining: moto's DeregisterTargets is instant, never `draining`,
//!   whatever the deregistration delay.
//! - Instance refresh: every call answers 500.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support;
use cloud::aws::ApiCalls;
use cloud::conformance::fleet::{self, FleetFixture, Premade};
use cloud::{
    Cloud, CloudError, GroupName, GroupSpec, HealthCheck, ImageId, InstanceId, LeaseHolder,
    Lifecycle, ListenerId, Tags, Target, TargetGroupId, tags,
};
use motokit::{Fleet, FleetSpec, Moto};

const BUCKET: &str = "kiln-fleet";

/// moto with a Terraform-made fleet `web` (1 instance of image 0 in target
/// group a), three seeded images, and the aws backend on it.
struct Setup {
    moto: Moto,
    cloud: Cloud,
    calls: ApiCalls,
    fleet: Fleet,
    images: Vec<ImageId>,
}

async fn setup_with(spec: impl FnOnce(&str) -> FleetSpec) -> Setup {
    let moto = Moto::start();
    let images = moto.seeded_images(3).await;
    let fleet = moto.fleet(&spec(&images[0])).await;
    let (cloud, calls) =
        support::connect(&moto, BUCKET, (motokit::TEST_KEY, motokit::TEST_KEY), false).await;
    Setup {
        moto,
        cloud,
        calls,
        fleet,
        images: images.into_iter().map(ImageId::new).collect(),
    }
}

async fn setup() -> Setup {
    setup_with(|image| FleetSpec::new("web", image)).await
}

impl Setup {
    /// The conformance fixture: images 0 and 1, the premade listener and
    /// target groups, groups made like `web`.
    fn fixture(&self) -> FleetFixture {
        let (path, interval, timeout, up, down) = motokit::HEALTH_CHECK;
        FleetFixture {
            health_check: HealthCheck {
                path: path.into(),
                interval_ms: interval * 1000,
                timeout_ms: timeout * 1000,
                healthy_threshold: up,
                unhealthy_threshold: down,
            },
            deregistration_delay_ms: motokit::DEREGISTRATION_DELAY.as_millis() as u64,
            premade: Some(Premade {
                listener: self.listener(),
                a: self.a(),
                b: self.b(),
                like: self.group(),
            }),
            ..FleetFixture::new(self.images[0].clone(), self.images[1].clone())
        }
    }

    fn group(&self) -> GroupName {
        GroupName::new(self.fleet.group.clone())
    }
    fn listener(&self) -> ListenerId {
        ListenerId::new(self.fleet.listener.clone())
    }
    fn a(&self) -> TargetGroupId {
        TargetGroupId::new(self.fleet.tg_a.clone())
    }
    fn b(&self) -> TargetGroupId {
        TargetGroupId::new(self.fleet.tg_b.clone())
    }

    /// A blue/green twin of `web`, as roll makes one.
    async fn twin(&self, name: &str, image: &ImageId, desired: u32) -> cloud::GroupInfo {
        let mut t = Tags::new();
        t.insert(tags::ROLL_GROUP.into(), "web".into());
        self.cloud
            .groups()
            .create_group(&GroupSpec {
                name: GroupName::from(name),
                image: image.clone(),
                desired,
                min: 0,
                max: 4,
                target_group: Some(self.b()),
                tags: t,
                like: Some(self.group()),
            })
            .await
            .expect("create the twin")
    }

    /// The raw Auto Scaling view of a group.
    async fn asg(&self, name: &str) -> aws_sdk_autoscaling::types::AutoScalingGroup {
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
            .remove(0)
    }

    async fn asg_tags(&self, name: &str) -> Tags {
        self.asg(name)
            .await
            .tags()
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
            .collect()
    }
}

fn holder(id: &str) -> LeaseHolder {
    LeaseHolder {
        id: id.into(),
        pid: std::process::id(),
        host: "moto".into(),
        command: "roll out --group web".into(),
        since_ms: cloud::time::now_ms(),
    }
}

// ---- the fleet conformance checks moto can run --------------------------

#[tokio::test]
async fn moto_fleet_conformance_missing_things() {
    let s = setup().await;
    fleet::missing_things(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_group_lifecycle() {
    let s = setup().await;
    fleet::group_lifecycle(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_drain_before_terminate() {
    let s = setup().await;
    fleet::drain_before_terminate(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_switch() {
    let s = setup().await;
    fleet::switch(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_weights() {
    let s = setup().await;
    fleet::weights(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_lease() {
    let s = setup().await;
    fleet::lease_of_groups(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_schedule_desired() {
    let s = setup().await;
    fleet::schedule_desired(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_janitor_spares_the_fleet() {
    let s = setup().await;
    fleet::janitor_spares_the_fleet(&s.cloud, &s.fixture()).await;
}

#[tokio::test]
async fn moto_fleet_conformance_cleanup() {
    let s = setup().await;
    fleet::cleanup(&s.cloud, &s.fixture()).await;
}

// ---- aws's own ----------------------------------------------------------

/// `set_image` makes a new launch-template version carrying the full
/// launch data of the current one with only the image replaced, and the
/// group names its number; the same image again makes nothing; going back
/// is another new version, the old ones kept as rollback targets.
#[tokio::test]
async fn moto_set_image_pins_a_numbered_version_with_full_launch_data() {
    // With user-data: nothing launches from the new version here (moto
    // would answer 500, see `FleetSpec::user_data`).
    let s = setup_with(|image| FleetSpec {
        user_data: true,
        ..FleetSpec::new("web", image)
    })
    .await;
    let (a, b) = (&s.images[0], &s.images[1]);
    let groups = s.cloud.groups();
    let web = s.group();
    let v = groups.set_image(&web, b).await.expect("set_image");
    assert_eq!((v.version, &v.image), (2, b));
    assert_eq!(s.calls.count("CreateLaunchTemplateVersion"), 1);
    let asg = s.asg("web").await;
    assert_eq!(
        asg.launch_template.and_then(|t| t.version).as_deref(),
        Some("2"),
        "the group names the number, never $Latest"
    );

    let ec2 = s.moto.ec2(motokit::TEST_KEY, motokit::TEST_KEY).await;
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_id(&s.fleet.launch_template)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions")
        .launch_template_versions
        .unwrap_or_default();
    let data = |n: i64| {
        let mut d = versions
            .iter()
            .find(|v| v.version_number == Some(n))
            .and_then(|v| v.launch_template_data.clone())
            .unwrap_or_else(|| panic!("version {n}"));
        let image = d.image_id.take();
        (image, d)
    };
    let (one_image, one) = data(1);
    let (two_image, two) = data(2);
    assert_eq!(one_image.as_deref(), Some(a.as_str()));
    assert_eq!(two_image.as_deref(), Some(b.as_str()));
    assert_eq!(two, one, "everything but the image is carried over");
    assert!(two.instance_type.is_some() && two.user_data.is_some());
    assert!(
        !two.block_device_mappings
            .clone()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(two.metadata_options.is_some() && two.tag_specifications.is_some());

    let same = groups.set_image(&web, b).await.expect("again");
    assert_eq!(same, v);
    assert_eq!(
        s.calls.count("CreateLaunchTemplateVersion"),
        1,
        "no new version"
    );

    let back = groups.set_image(&web, a).await.expect("back");
    assert_eq!((back.version, &back.image), (3, a));
    let g = groups.describe_group(&web).await.expect("describe");
    assert_eq!(g.current, back);
    let previous: Vec<(u64, &ImageId)> = g.previous.iter().map(|v| (v.version, &v.image)).collect();
    assert_eq!(
        previous,
        vec![(2, b), (1, a)],
        "older versions, newest first"
    );

    let missing = groups
        .set_image(&web, &ImageId::from("ami-00000000000000000"))
        .await
        .expect_err("a missing image");
    assert!(missing.is_not_found(), "{missing}");
}

/// A group that names `$Latest` (or `$Default`) is refused with the
/// reason, by every method that reads its version: nothing is changed.
#[tokio::test]
async fn moto_a_group_on_latest_is_refused_saying_why() {
    let s = setup_with(|image| FleetSpec {
        version: "$Latest".into(),
        group_tags: vec![(tags::ROLL_GROUP.into(), "web".into())],
        ..FleetSpec::new("web", image)
    })
    .await;
    let groups = s.cloud.groups();
    let web = s.group();
    for e in [
        groups
            .describe_group(&web)
            .await
            .map(|_| ())
            .expect_err("describe"),
        groups.list_groups().await.map(|_| ()).expect_err("list"),
        groups
            .set_image(&web, &s.images[1])
            .await
            .map(|_| ())
            .expect_err("set_image"),
    ] {
        assert!(e.is_bad_input(), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("$Latest") && m.contains("numeric") && m.contains("web"),
            "{m}"
        );
    }
    assert_eq!(s.calls.count("CreateLaunchTemplateVersion"), 0);
    assert_eq!(
        s.asg("web")
            .await
            .launch_template
            .and_then(|t| t.version)
            .as_deref(),
        Some("$Latest")
    );
}

/// What an instance runs is its EC2 ImageId: after a new image and a
/// scale-out, and after a replacement, each instance reports the image it
/// was launched from, whatever version moto says it came from.
#[tokio::test]
async fn moto_describe_reports_each_instances_actual_image() {
    let s = setup_with(|image| FleetSpec {
        desired: 2,
        ..FleetSpec::new("web", image)
    })
    .await;
    let (a, b) = (&s.images[0], &s.images[1]);
    let groups = s.cloud.groups();
    let web = s.group();
    groups.set_image(&web, b).await.expect("set_image");
    groups.set_desired(&web, 3).await.expect("scale out");
    let g = groups.describe_group(&web).await.expect("describe");
    let images = |g: &cloud::GroupInfo| -> Vec<ImageId> {
        let mut v: Vec<ImageId> = g.instances.iter().map(|i| i.image.clone()).collect();
        v.sort();
        v
    };
    let mut want = vec![a.clone(), a.clone(), b.clone()];
    want.sort();
    assert_eq!(images(&g), want);
    // moto's own per-instance version is not to be trusted.
    let reported: BTreeSet<String> = s
        .asg("web")
        .await
        .instances()
        .iter()
        .filter_map(|i| i.launch_template.as_ref()?.version.clone())
        .collect();
    println!("moto reports instance template versions {reported:?}");
    for i in &g.instances {
        assert_eq!(i.lifecycle, Lifecycle::InService);
        assert_eq!(i.state, cloud::InstanceState::Running);
        let addr = i.address.expect("an address");
        assert_eq!(
            addr.port(),
            motokit::FLEET_PORT,
            "private IP and the service port"
        );
        assert!(i.launched_ms > 0);
    }
    assert!(
        g.instances
            .windows(2)
            .all(|w| w[0].launched_ms <= w[1].launched_ms),
        "oldest launch first"
    );

    let old = g
        .instances
        .iter()
        .find(|i| &i.image == a)
        .expect("an old one")
        .id
        .clone();
    groups
        .terminate_instance(&web, &old, false)
        .await
        .expect("terminate");
    let g = groups.describe_group(&web).await.expect("describe");
    let mut want = vec![a.clone(), b.clone(), b.clone()];
    want.sort();
    assert_eq!(images(&g), want, "the replacement runs the new image");
}

/// `list_groups` is exactly the groups tagged `kiln:roll-group`: not a
/// Terraform group roll has not touched; a twin roll created is tagged
/// at creation (and marked as roll's).
#[tokio::test]
async fn moto_list_groups_is_exactly_the_kiln_tagged_groups() {
    let s = setup().await;
    let api = FleetSpec {
        group_tags: vec![(tags::ROLL_GROUP.into(), "api".into())],
        ..FleetSpec::new("api", s.images[0].as_str())
    };
    s.moto
        .auto_scaling_group(&api, &s.fleet.launch_template, &s.fleet.subnets, None)
        .await;
    let twin = s.twin("web--b", &s.images[1], 1).await;
    assert_eq!(twin.tag(tags::ROLL_GROUP), Some("web"));
    assert_eq!(twin.tag(cloud::aws::ROLL_CREATED), Some("true"));
    assert_eq!(twin.current.image, s.images[1]);
    assert_eq!(twin.current.version, 2, "its own numbered version");
    assert_eq!(
        s.asg("web")
            .await
            .launch_template
            .and_then(|t| t.version)
            .as_deref(),
        Some("1"),
        "the model group is untouched"
    );
    let listed: BTreeSet<String> = s
        .cloud
        .groups()
        .list_groups()
        .await
        .expect("list")
        .into_iter()
        .map(|g| g.name.0)
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from(["api".to_owned(), "web--b".to_owned()])
    );
}

/// The lease: taken and named on the group, refused to a second holder,
/// an expired one taken over, renewal rewrites the expiry, a foreign
/// lease written over ours makes renew fail, and dropping releases it
/// before the drop returns (multi-threaded runtime, as roll's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_lease_conflict_expiry_and_takeover() {
    let s = setup().await;
    let groups = s.cloud.groups();
    let web = s.group();
    let first = groups
        .acquire_lease(&web, &holder("roll-1"))
        .await
        .expect("a free lease");
    let t = s.asg_tags("web").await;
    let lease = t.get(cloud::aws::LEASE).expect("the lease tag");
    let parts: Vec<&str> = lease.split(';').collect();
    let [id, expiry, pid_host] = parts[..] else {
        panic!("id;expiry;pid@host: {lease}");
    };
    assert_eq!(id, "roll-1");
    assert!(pid_host.contains('@'), "{lease}");
    let expiry: u64 = expiry.parse().expect("ms");
    let ttl = cloud::aws::LEASE_TTL.as_millis() as u64;
    assert!(expiry > cloud::time::now_ms() + ttl - 60_000, "{lease}");
    assert!(t[cloud::aws::LEASE_HOLDER].starts_with("roll-1 (pid "));

    match groups.acquire_lease(&web, &holder("roll-2")).await {
        Err(e @ CloudError::Busy { .. }) => {
            let m = e.to_string();
            assert!(m.contains("group web") && m.contains("roll-1"), "{m}");
        }
        Err(e) => panic!("want Busy, got {e}"),
        Ok(_) => panic!("a held lease was given out twice"),
    }
    first.renew().await.expect("renew");
    let renewed: u64 = s.asg_tags("web").await[cloud::aws::LEASE]
        .split(';')
        .nth(1)
        .and_then(|e| e.parse().ok())
        .expect("expiry");
    assert!(renewed >= expiry);

    // Someone wrote over it (our lease had expired and was taken over).
    let mut over = Tags::new();
    over.insert(
        cloud::aws::LEASE.into(),
        format!("roll-9;{}", cloud::time::now_ms() + 60_000),
    );
    over.insert(cloud::aws::LEASE_HOLDER.into(), "roll-9 (elsewhere)".into());
    groups.tag_group(&web, &over, &[]).await.expect("tag");
    let e = first.renew().await.expect_err("no longer ours");
    assert!(e.to_string().contains("roll-9"), "{e}");
    drop(first);
    assert!(
        s.asg_tags("web").await.contains_key(cloud::aws::LEASE),
        "dropping a lease that is not ours leaves the holder's"
    );

    // An expired lease (its holder was killed) is taken over.
    let mut dead = Tags::new();
    dead.insert(
        cloud::aws::LEASE.into(),
        format!("roll-dead;{}", cloud::time::now_ms() - 1),
    );
    dead.insert(cloud::aws::LEASE_HOLDER.into(), "roll-dead (killed)".into());
    groups.tag_group(&web, &dead, &[]).await.expect("tag");
    let taken = groups
        .acquire_lease(&web, &holder("roll-3"))
        .await
        .expect("an expired lease is taken over");
    assert_eq!(taken.holder().id, "roll-3");
    drop(taken);

    // An unexpired lease whose holder ran on this host and is gone (kill -9,
    // then the same command again) is taken over at once.
    let mut zombie = Tags::new();
    zombie.insert(
        cloud::aws::LEASE.into(),
        format!(
            "roll-zombie;{};4194303@moto",
            cloud::time::now_ms() + 60_000
        ),
    );
    zombie.insert(
        cloud::aws::LEASE_HOLDER.into(),
        "roll-zombie (killed)".into(),
    );
    groups.tag_group(&web, &zombie, &[]).await.expect("tag");
    let taken = groups
        .acquire_lease(&web, &holder("roll-4"))
        .await
        .expect("a dead holder's lease on this host is taken over");
    assert_eq!(taken.holder().id, "roll-4");
    drop(taken);
    let t = s.asg_tags("web").await;
    assert!(
        !t.contains_key(cloud::aws::LEASE) && !t.contains_key(cloud::aws::LEASE_HOLDER),
        "released before the drop returned: {t:?}"
    );
    let again = groups
        .acquire_lease(&web, &holder("roll-4"))
        .await
        .expect("free again");
    drop(again);

    let missing = groups
        .acquire_lease(&GroupName::from("nope"), &holder("roll-5"))
        .await
        .err()
        .expect("no such group");
    assert!(missing.is_not_found(), "{missing}");
}

/// Terminating deregisters the instance from the group's target group
/// first (moto would leave it registered and "healthy"); with decrement,
/// desired goes down and nothing replaces it.
#[tokio::test]
async fn moto_terminate_deregisters_first() {
    let s = setup_with(|image| FleetSpec {
        desired: 2,
        ..FleetSpec::new("web", image)
    })
    .await;
    let groups = s.cloud.groups();
    let web = s.group();
    let g = groups.describe_group(&web).await.expect("describe");
    let (x, y) = (g.instances[0].id.clone(), g.instances[1].id.clone());
    let registered =
        |ts: &[(String, String)], id: &InstanceId| ts.iter().any(|(t, _)| t == id.as_str());
    assert!(registered(&s.moto.targets(&s.fleet.tg_a).await, &x));
    groups
        .terminate_instance(&web, &x, false)
        .await
        .expect("terminate");
    let ts = s.moto.targets(&s.fleet.tg_a).await;
    assert!(!registered(&ts, &x), "deregistered: {ts:?}");
    let g = groups.describe_group(&web).await.expect("describe");
    assert_eq!(g.desired, 2);
    assert!(g.instance(&x).is_none());
    assert_eq!(g.instances.len(), 2, "replaced");

    groups
        .terminate_instance(&web, &y, true)
        .await
        .expect("terminate");
    let g = groups.describe_group(&web).await.expect("describe");
    assert_eq!((g.desired, g.instances.len()), (1, 1));
    assert!(!registered(&s.moto.targets(&s.fleet.tg_a).await, &y));
}

/// The listener: address, target groups from its weighted forward; a
/// switch moves the weight and keeps both named; an unknown target group
/// is NotFound and changes nothing; a one-group listener names both after
/// its first switch.
#[tokio::test]
async fn moto_switch_moves_the_weighted_forward() {
    let s = setup().await;
    let lbs = s.cloud.lbs();
    let (a, b) = (s.a(), s.b());
    let l = lbs.listener(&s.listener()).await.expect("listener");
    assert_eq!(l.address, s.fleet.address);
    assert_eq!(l.url(), format!("http://{}", s.fleet.address));
    assert_eq!(
        (l.target_groups.clone(), l.forward.clone()),
        (vec![a.clone(), b.clone()], a.clone())
    );

    lbs.switch(&s.listener(), &b).await.expect("switch");
    let weights = || async {
        let out = s
            .moto
            .elb()
            .await
            .describe_listeners()
            .listener_arns(&s.fleet.listener)
            .send()
            .await
            .expect("DescribeListeners");
        let action = out.listeners.unwrap_or_default()[0]
            .default_actions
            .clone()
            .unwrap_or_default()
            .remove(0);
        match action.forward_config.and_then(|f| f.target_groups) {
            Some(t) => t
                .into_iter()
                .map(|t| {
                    (
                        t.target_group_arn.unwrap_or_default(),
                        t.weight.unwrap_or(1),
                    )
                })
                .collect::<Vec<_>>(),
            None => vec![(action.target_group_arn.unwrap_or_default(), 1)],
        }
    };
    assert_eq!(weights().await, vec![(a.0.clone(), 0), (b.0.clone(), 1)]);
    assert_eq!(
        lbs.listener(&s.listener()).await.expect("listener").forward,
        b
    );

    // An ARN-shaped target group that does not exist (moto's ModifyListener
    // would take it).
    let ghost = TargetGroupId::new(format!("{}0000", &a.0[..a.0.len() - 4]));
    let e = lbs
        .switch(&s.listener(), &ghost)
        .await
        .expect_err("unknown");
    assert!(e.is_not_found(), "{e}");
    assert_eq!(weights().await, vec![(a.0.clone(), 0), (b.0.clone(), 1)]);

    // A listener that forwards to one target group.
    s.moto
        .elb()
        .await
        .modify_listener()
        .listener_arn(&s.fleet.listener)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                .target_group_arn(&a.0)
                .build(),
        )
        .send()
        .await
        .expect("ModifyListener");
    let l = lbs.listener(&s.listener()).await.expect("listener");
    assert_eq!((l.target_groups, l.forward), (vec![a.clone()], a.clone()));
    lbs.switch(&s.listener(), &b).await.expect("switch");
    let l = lbs.listener(&s.listener()).await.expect("listener");
    assert_eq!(
        (l.target_groups, l.forward),
        (vec![a.clone(), b.clone()], b.clone())
    );
}

/// NotFound for ARN-shaped ids that name nothing (the conformance check
/// uses names that are no ARNs), and the refusals aws adds: no group from
/// nothing, never deleting a group roll did not create, tags too long
/// refused before any call.
#[tokio::test]
async fn moto_not_found_and_refusals() {
    let s = setup().await;
    let (groups, lbs) = (s.cloud.groups(), s.cloud.lbs());
    let arn = |x: &str| format!("{}0000", &x[..x.len() - 4]);
    let tg = TargetGroupId::new(arn(&s.fleet.tg_a));
    let l = ListenerId::new(arn(&s.fleet.listener));
    let t = [Target {
        instance: InstanceId::from("i-0000000000000000"),
        port: motokit::FLEET_PORT,
    }];
    for e in [
        lbs.targets(&tg).await.map(|_| ()).expect_err("targets"),
        lbs.target_group(&tg)
            .await
            .map(|_| ())
            .expect_err("target_group"),
        lbs.register(&tg, &t).await.expect_err("register"),
        lbs.deregister(&tg, &t).await.expect_err("deregister"),
        lbs.listener(&l).await.map(|_| ()).expect_err("listener"),
        lbs.switch(&l, &s.a()).await.expect_err("switch"),
    ] {
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().contains("us-east-1"), "{e}");
    }
    let e = lbs
        .create_listener(&cloud::ListenerSpec {
            id: l.clone(),
            address: "127.0.0.1:80".parse().expect("addr"),
            admin: None,
            tls: None,
            health_check: HealthCheck::default(),
            deregistration_delay_ms: 0,
            target_groups: vec![s.a()],
            forward: s.a(),
        })
        .await
        .expect_err("not yet");
    assert!(matches!(e, CloudError::Unsupported { .. }), "{e}");

    let e = groups
        .create_group(&GroupSpec::fixed(
            GroupName::from("web2"),
            s.images[0].clone(),
            1,
        ))
        .await
        .expect_err("no group from nothing");
    assert!(
        e.is_bad_input() && e.to_string().contains("Terraform"),
        "{e}"
    );
    let e = groups
        .create_group(&GroupSpec {
            like: Some(GroupName::from("nope")),
            ..GroupSpec::fixed(GroupName::from("web2"), s.images[0].clone(), 1)
        })
        .await
        .expect_err("like a missing group");
    assert!(e.is_not_found() && e.to_string().contains("nope"), "{e}");

    let e = groups
        .delete_group(&s.group())
        .await
        .expect_err("Terraform's");
    assert!(
        e.is_bad_input() && e.to_string().contains("not created by roll"),
        "{e}"
    );
    assert!(
        groups.describe_group(&s.group()).await.is_ok(),
        "still there"
    );
    let twin = s.twin("web--b", &s.images[0], 1).await;
    groups.delete_group(&twin.name).await.expect("roll's own");
    assert!(
        groups
            .describe_group(&twin.name)
            .await
            .unwrap_err()
            .is_not_found()
    );

    let before = s.calls.total();
    let mut long = Tags::new();
    long.insert("kiln:x".into(), "y".repeat(257));
    let e = groups
        .tag_group(&s.group(), &long, &[])
        .await
        .expect_err("too long");
    assert!(e.is_bad_input(), "{e}");
    assert_eq!(s.calls.total(), before, "refused before any call");

    // Holding launches is the hook; moto stores it (and never fires it).
    groups.hold_launches(&s.group(), true).await.expect("hold");
    assert!(
        groups
            .describe_group(&s.group())
            .await
            .expect("describe")
            .hold_launches
    );
    groups
        .hold_launches(&s.group(), false)
        .await
        .expect("release");
    groups
        .hold_launches(&s.group(), false)
        .await
        .expect("released twice");
    let g = groups.describe_group(&s.group()).await.expect("describe");
    assert!(!g.hold_launches);
    groups
        .put_in_service(&s.group(), &g.instances[0].id)
        .await
        .expect("in service already");
}

/// The calls each method makes, counted by the SDK interceptor (the
/// numbers in cloud/src/aws/README.md; `--no-capture` prints them).
#[tokio::test]
async fn moto_api_calls_per_method() {
    let s = setup().await;
    let (groups, lbs) = (s.cloud.groups(), s.cloud.lbs());
    let web = s.group();
    let step = |what: &str, before: &std::collections::BTreeMap<String, u64>| {
        let now = s.calls.snapshot();
        let diff: Vec<String> = now
            .iter()
            .filter_map(|(k, v)| {
                let d = v - before.get(k).copied().unwrap_or(0);
                (d > 0).then(|| format!("{k} {d}"))
            })
            .collect();
        println!("{what}: {}", diff.join(", "));
        diff
    };
    let b = s.calls.snapshot();
    groups.describe_group(&web).await.expect("describe");
    assert_eq!(
        step("describe_group (first)", &b),
        [
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.DescribeLifecycleHooks 1",
            "Auto Scaling.DescribeScheduledActions 1",
            "EC2.DescribeInstances 1",
            "EC2.DescribeLaunchTemplateVersions 1",
            "Elastic Load Balancing v2.DescribeTargetGroups 1",
        ]
    );
    let b = s.calls.snapshot();
    groups.describe_group(&web).await.expect("describe");
    assert_eq!(
        step("describe_group (again)", &b),
        [
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.DescribeLifecycleHooks 1",
            "Auto Scaling.DescribeScheduledActions 1",
            "EC2.DescribeInstances 1",
        ],
        "versions and ports are read once"
    );
    let b = s.calls.snapshot();
    groups
        .set_image(&web, &s.images[1])
        .await
        .expect("set_image");
    assert_eq!(
        step("set_image", &b),
        [
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.UpdateAutoScalingGroup 1",
            "EC2.CreateLaunchTemplateVersion 1",
            "EC2.DescribeImages 1",
            // Versions made already for this image are read back first.
            "EC2.DescribeLaunchTemplateVersions 1",
        ]
    );
    let b = s.calls.snapshot();
    groups.set_desired(&web, 2).await.expect("set_desired");
    assert_eq!(
        step("set_desired", &b),
        [
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.SetDesiredCapacity 1"
        ]
    );
    let mut t = Tags::new();
    t.insert("kiln:phase".into(), "rolling".into());
    let b = s.calls.snapshot();
    groups
        .tag_group(&web, &t, &["kiln:old".into()])
        .await
        .expect("tag");
    assert_eq!(
        step("tag_group", &b),
        [
            "Auto Scaling.CreateOrUpdateTags 1",
            "Auto Scaling.DeleteTags 1"
        ]
    );
    let g = groups.describe_group(&web).await.expect("describe");
    let b = s.calls.snapshot();
    groups
        .terminate_instance(&web, &g.instances[0].id, true)
        .await
        .expect("terminate");
    assert_eq!(
        step("terminate_instance", &b),
        [
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.TerminateInstanceInAutoScalingGroup 1",
            "Elastic Load Balancing v2.DeregisterTargets 1",
        ]
    );
    let b = s.calls.snapshot();
    lbs.targets(&s.a()).await.expect("targets");
    assert_eq!(
        step("targets", &b),
        [
            "EC2.DescribeInstances 1",
            "Elastic Load Balancing v2.DescribeTargetHealth 1"
        ]
    );
    let b = s.calls.snapshot();
    lbs.listener(&s.listener()).await.expect("listener");
    assert_eq!(
        step("listener", &b),
        [
            "Elastic Load Balancing v2.DescribeListeners 1",
            "Elastic Load Balancing v2.DescribeLoadBalancers 1",
        ]
    );
    let b = s.calls.snapshot();
    lbs.switch(&s.listener(), &s.b()).await.expect("switch");
    assert_eq!(
        step("switch", &b),
        [
            "Elastic Load Balancing v2.DescribeListeners 1",
            "Elastic Load Balancing v2.DescribeTargetGroups 1",
            "Elastic Load Balancing v2.ModifyListener 1",
        ]
    );
    let b = s.calls.snapshot();
    let lease = groups
        .acquire_lease(&web, &holder("roll-1"))
        .await
        .expect("lease");
    assert_eq!(
        step("acquire_lease", &b),
        [
            "Auto Scaling.CreateOrUpdateTags 1",
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.DescribeTags 1",
        ]
    );
    let b = s.calls.snapshot();
    drop(lease);
    // The release runs as a task on this (current-thread) runtime; taking
    // the lease again waits for it.
    let again = groups
        .acquire_lease(&web, &holder("roll-2"))
        .await
        .expect("released");
    let released: Vec<String> = step("release (drop) + acquire_lease", &b);
    assert_eq!(
        released,
        [
            "Auto Scaling.CreateOrUpdateTags 1",
            "Auto Scaling.DeleteTags 1",
            "Auto Scaling.DescribeAutoScalingGroups 1",
            "Auto Scaling.DescribeTags 2",
        ]
    );
    drop(again);
    tokio::time::sleep(Duration::from_millis(200)).await;
}
