//! The conformance suite for the fleet seam: [`crate::Groups`],
//! [`crate::LoadBalancers`], [`crate::Probes`] and leases. Each check takes
//! a [`Cloud`] and a [`FleetFixture`] (two complete images the backend can
//! launch), creates what it needs under fresh names, asserts behaviour the
//! local fleet daemon, the fake cloud (and one day aws) must share, and
//! deletes what it created. Waits go through [`wait_until`] on tokio's
//! clock, so the same checks run in real time against real processes and
//! in paused time against the fake.
//!
//! [`run_all`] runs them in order; [`cleanup`] last, because it asserts
//! that no group is left at all (so the checks before it cleaned up).
//!
//! A backend that cannot make listeners or groups from nothing (aws:
//! listeners and target groups come from Terraform, and roll creates a
//! group only as the twin of an existing one) gets them from its harness
//! as [`Premade`] resources: the checks then use the premade listener and
//! target groups instead of creating and deleting their own, and make
//! every group `like` the premade one. Without `premade` (local, fake)
//! every check is exactly what it always was.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{
    Cloud, CloudError, GateOutcome, GateSpec, GroupInfo, GroupInstance, GroupName, GroupSpec,
    HealthCheck, ImageId, InstanceId, InstanceState, LeaseHolder, Lifecycle, ListenerId,
    ListenerSpec, ResourceKind, Result, ScheduledDesired, Tags, Target, TargetGroupId,
    TargetHealth, TargetStatus, time, wait_until,
};

/// What a backend's harness provides.
#[derive(Debug, Clone)]
pub struct FleetFixture {
    /// A complete image the backend can launch and gate.
    pub image: ImageId,
    /// A second one (another template version).
    pub other: ImageId,
    /// Where listeners listen (`127.0.0.1:0` for the local fleet).
    pub listen: SocketAddr,
    /// The health checks of every listener the checks create.
    pub health_check: HealthCheck,
    pub deregistration_delay_ms: u64,
    /// The longest any one wait may take.
    pub timeout: Duration,
    /// Resources the backend cannot create through the seam, made by the
    /// harness; `None` where the checks create everything themselves.
    pub premade: Option<Premade>,
}

/// What a harness makes the way a user would (aws: Terraform), for a
/// backend whose `create_listener` is Unsupported and whose
/// `create_group` needs [`GroupSpec::like`].
#[derive(Debug, Clone)]
pub struct Premade {
    /// A listener forwarding to `a`, naming `a` and `b` in that order,
    /// plain HTTP. The checks switch it and leave it forwarding to `a`.
    pub listener: ListenerId,
    /// With the [`FleetFixture`]'s health check and deregistration delay.
    pub a: TargetGroupId,
    /// Likewise, and empty.
    pub b: TargetGroupId,
    /// An existing group every group the checks create is made like
    /// (not tagged `kiln:roll-group`, so [`cleanup`] still sees no group).
    pub like: GroupName,
}

impl FleetFixture {
    /// Fast checks (every 100 ms, 2 up / 2 down), a 2 s deregistration
    /// delay, 60 s per wait, listeners on `127.0.0.1:0`.
    pub fn new(image: ImageId, other: ImageId) -> FleetFixture {
        FleetFixture {
            image,
            other,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            health_check: HealthCheck {
                path: "/ready".into(),
                interval_ms: 100,
                timeout_ms: 500,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
            },
            deregistration_delay_ms: 2_000,
            timeout: Duration::from_secs(60),
            premade: None,
        }
    }

    /// The group spec a check asks for: made like the premade group where
    /// there is one.
    fn group(&self, spec: GroupSpec) -> GroupSpec {
        GroupSpec {
            like: self.premade.as_ref().map(|p| p.like.clone()),
            ..spec
        }
    }
}

/// How long "nothing else happens" is watched for (several ticks of the
/// local daemon).
const SETTLE: Duration = Duration::from_millis(300);

/// The tag every group the checks create carries.
const TAG: &str = "kiln:conformance";

fn fail(cloud: &Cloud, what: &str) -> String {
    format!("fleet conformance ({}): {what}", cloud.backend())
}

/// A fresh name: checks never see each other's (or an earlier run's)
/// resources.
fn unique(what: &str) -> String {
    format!("conf-{what}-{:06x}", fastrand::u32(..0x100_0000))
}

fn expect_not_found<T: std::fmt::Debug>(cloud: &Cloud, what: &str, r: Result<T>) {
    match r {
        Err(e) if e.is_not_found() => {}
        other => panic!(
            "{}",
            fail(cloud, &format!("{what}: want NotFound, got {other:?}"))
        ),
    }
}

fn expect_bad_input<T: std::fmt::Debug>(cloud: &Cloud, what: &str, r: Result<T>) {
    match r {
        Err(e) if e.is_bad_input() => {}
        other => panic!(
            "{}",
            fail(cloud, &format!("{what}: want bad input, got {other:?}"))
        ),
    }
}

async fn wait_for<T, F, Fut>(cloud: &Cloud, fx: &FleetFixture, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let params = cloud.wait_params().with_timeout(fx.timeout);
    wait_until(params, what, check)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("waiting for {what}: {e}"))))
}

fn live(g: &GroupInfo) -> Vec<&GroupInstance> {
    g.instances
        .iter()
        .filter(|i| i.lifecycle != Lifecycle::Terminating)
        .collect()
}

fn ids(g: &GroupInfo) -> BTreeSet<InstanceId> {
    live(g).into_iter().map(|i| i.id.clone()).collect()
}

fn target_of(i: &GroupInstance) -> Target {
    Target {
        instance: i.id.clone(),
        port: i.address.map_or(0, |a| a.port()),
    }
}

fn find<'a>(ts: &'a [TargetStatus], id: &InstanceId) -> Option<&'a TargetStatus> {
    ts.iter().find(|t| &t.target.instance == id)
}

/// A listener with target groups `a` and `b` (forwarding to `a`) and a
/// group in `a`.
struct Scene {
    group: GroupName,
    listener: ListenerId,
    a: TargetGroupId,
    b: TargetGroupId,
}

impl Scene {
    fn spec(&self, fx: &FleetFixture, desired: u32, min: u32, max: u32) -> GroupSpec {
        let mut tags = Tags::new();
        tags.insert(TAG.into(), self.group.to_string());
        fx.group(GroupSpec {
            name: self.group.clone(),
            image: fx.image.clone(),
            desired,
            min,
            max,
            target_group: Some(self.a.clone()),
            tags,
            like: None,
        })
    }
}

async fn scene(cloud: &Cloud, fx: &FleetFixture, what: &str, size: [u32; 3]) -> Scene {
    let base = unique(what);
    let s = match &fx.premade {
        Some(p) => Scene {
            group: GroupName::new(base.clone()),
            listener: p.listener.clone(),
            a: p.a.clone(),
            b: p.b.clone(),
        },
        None => Scene {
            group: GroupName::new(base.clone()),
            listener: ListenerId::new(format!("{base}-l")),
            a: TargetGroupId::new(format!("{base}-a")),
            b: TargetGroupId::new(format!("{base}-b")),
        },
    };
    if fx.premade.is_some() {
        let l = cloud
            .lbs()
            .listener(&s.listener)
            .await
            .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("listener: {e}"))));
        assert_eq!(l.id, s.listener, "{}", fail(cloud, "listener id"));
        assert_eq!(
            l.forward,
            s.a,
            "{}",
            fail(cloud, "the premade listener forwards to a")
        );
        assert_eq!(l.target_groups, vec![s.a.clone(), s.b.clone()]);
        assert!(!l.tls);
    } else {
        create_listener(cloud, fx, &s).await;
    }

    let [desired, min, max] = size;
    let spec = s.spec(fx, desired, min, max);
    let g = cloud
        .groups()
        .create_group(&spec)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("create_group: {e}"))));
    assert_eq!(g.name, s.group);
    assert_eq!((g.desired, g.min, g.max), (desired, min, max));
    assert_eq!(
        g.current.image,
        fx.image,
        "{}",
        fail(cloud, "current image")
    );
    if fx.premade.is_none() {
        // A group made like another shares its template's history.
        assert!(g.previous.is_empty());
    }
    assert_eq!(g.target_group.as_ref(), Some(&s.a));
    assert_eq!(
        g.tag(TAG),
        Some(s.group.as_str()),
        "{}",
        fail(cloud, "tags at creation")
    );
    assert!(!g.hold_launches);
    assert_eq!(g.scheduled, None);
    s
}

async fn create_listener(cloud: &Cloud, fx: &FleetFixture, s: &Scene) {
    let spec = ListenerSpec {
        id: s.listener.clone(),
        address: fx.listen,
        admin: None,
        tls: None,
        health_check: fx.health_check.clone(),
        deregistration_delay_ms: fx.deregistration_delay_ms,
        target_groups: vec![s.a.clone(), s.b.clone()],
        forward: s.a.clone(),
    };
    let l = cloud
        .lbs()
        .create_listener(&spec)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("create_listener: {e}"))));
    assert_eq!(l.id, s.listener, "{}", fail(cloud, "listener id"));
    assert_eq!(l.forward, s.a, "{}", fail(cloud, "forwards where asked"));
    assert_eq!(l.target_groups, vec![s.a.clone(), s.b.clone()]);
    assert!(!l.tls);
    let again = cloud.lbs().create_listener(&spec).await.expect("again");
    assert_eq!(again, l, "{}", fail(cloud, "create_listener is idempotent"));
}

async fn teardown(cloud: &Cloud, fx: &FleetFixture, s: &Scene) {
    cloud
        .groups()
        .delete_group(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("delete_group: {e}"))));
    if fx.premade.is_none() {
        cloud
            .lbs()
            .delete_listener(&s.listener)
            .await
            .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("delete_listener: {e}"))));
    }
    expect_not_found(
        cloud,
        "a deleted group",
        cloud.groups().describe_group(&s.group).await,
    );
}

/// Waits until the group has exactly `n` live instances, all in service
/// and healthy in target group `a`.
async fn wait_serving(cloud: &Cloud, fx: &FleetFixture, s: &Scene, n: usize) -> GroupInfo {
    let what = format!("{n} instances of {} in service and healthy", s.group);
    wait_for(cloud, fx, &what, || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        let live = live(&g);
        if live.len() != n || live.iter().any(|i| i.lifecycle != Lifecycle::InService) {
            return Ok(None);
        }
        let ts = cloud.lbs().targets(&s.a).await?;
        let healthy = live
            .iter()
            .all(|i| find(&ts, &i.id).is_some_and(|t| t.health == TargetHealth::Healthy));
        Ok(healthy.then_some(g))
    })
    .await
}

async fn describe(cloud: &Cloud, name: &GroupName) -> GroupInfo {
    cloud
        .groups()
        .describe_group(name)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("describe_group {name}: {e}"))))
}

async fn targets(cloud: &Cloud, tg: &TargetGroupId) -> Vec<TargetStatus> {
    cloud
        .lbs()
        .targets(tg)
        .await
        .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("targets {tg}: {e}"))))
}

/// Things that do not exist: typed NotFound, idempotent deletes, and
/// creations refused without leaving anything behind.
pub async fn missing_things(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let lbs = cloud.lbs();
    let base = unique("ghost");
    let g = GroupName::new(base.clone());
    let l = ListenerId::new(format!("{base}-l"));
    let tg = TargetGroupId::new(format!("{base}-a"));
    let i = InstanceId::from("i-0000000000000000");
    let t = [Target {
        instance: i.clone(),
        port: 8080,
    }];

    expect_not_found(cloud, "describe_group", groups.describe_group(&g).await);
    expect_not_found(cloud, "set_desired", groups.set_desired(&g, 1).await);
    expect_not_found(cloud, "set_limits", groups.set_limits(&g, 0, 1).await);
    expect_not_found(cloud, "set_image", groups.set_image(&g, &fx.image).await);
    expect_not_found(
        cloud,
        "tag_group",
        groups.tag_group(&g, &Tags::new(), &[]).await,
    );
    expect_not_found(cloud, "hold_launches", groups.hold_launches(&g, true).await);
    expect_not_found(cloud, "put_in_service", groups.put_in_service(&g, &i).await);
    expect_not_found(
        cloud,
        "terminate_instance in a missing group",
        groups.terminate_instance(&g, &i, false).await,
    );
    expect_not_found(
        cloud,
        "schedule_desired",
        groups.schedule_desired(&g, None).await,
    );
    expect_not_found(cloud, "listener", lbs.listener(&l).await);
    expect_not_found(cloud, "target_group", lbs.target_group(&tg).await);
    expect_not_found(cloud, "targets", lbs.targets(&tg).await);
    expect_not_found(cloud, "switch", lbs.switch(&l, &tg).await);
    expect_not_found(cloud, "register", lbs.register(&tg, &t).await);
    expect_not_found(cloud, "deregister", lbs.deregister(&tg, &t).await);
    groups
        .delete_group(&g)
        .await
        .expect("deleting a missing group is Ok");
    if fx.premade.is_none() {
        lbs.delete_listener(&l)
            .await
            .expect("deleting a missing listener is Ok");
    }

    // Refused creations leave nothing.
    let spec = GroupSpec {
        target_group: None,
        ..GroupSpec::fixed(g.clone(), fx.image.clone(), 1)
    };
    let bad_name = GroupSpec {
        name: GroupName::from("not a group name"),
        ..spec.clone()
    };
    expect_bad_input(
        cloud,
        "a bad group name",
        groups.create_group(&bad_name).await,
    );
    let too_big = GroupSpec {
        desired: 3,
        max: 2,
        ..spec.clone()
    };
    expect_bad_input(
        cloud,
        "desired above max",
        groups.create_group(&too_big).await,
    );
    let ghost_image = GroupSpec {
        image: ImageId::from("img-000000000000000000000000"),
        ..spec.clone()
    };
    expect_not_found(
        cloud,
        "a group of a missing image",
        groups.create_group(&ghost_image).await,
    );
    let ghost_tg = GroupSpec {
        target_group: Some(tg.clone()),
        ..spec.clone()
    };
    expect_not_found(
        cloud,
        "a group in a missing target group",
        groups.create_group(&ghost_tg).await,
    );
    expect_not_found(
        cloud,
        "a group whose creation was refused",
        groups.describe_group(&g).await,
    );
    let listener = ListenerSpec {
        id: l.clone(),
        address: fx.listen,
        admin: None,
        tls: None,
        health_check: fx.health_check.clone(),
        deregistration_delay_ms: fx.deregistration_delay_ms,
        target_groups: vec![tg.clone()],
        forward: TargetGroupId::new(format!("{base}-b")),
    };
    expect_bad_input(
        cloud,
        "a listener forwarding outside its target groups",
        lbs.create_listener(&listener).await,
    );
    expect_not_found(
        cloud,
        "a listener whose creation was refused",
        lbs.listener(&l).await,
    );
    let listed = groups.list_groups().await.expect("list_groups");
    assert!(
        listed.iter().all(|x| x.name != g),
        "{}",
        fail(cloud, "refused creations are not listed")
    );
}

/// A group keeps `desired` instances in service and healthy; creating it
/// again returns it as it is; sizes outside the limits are bad input;
/// limits clamp desired; a new image is a new template version with the
/// old one kept; tags are set and removed in one call.
pub async fn group_lifecycle(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let s = scene(cloud, fx, "life", [2, 1, 3]).await;
    let g = wait_serving(cloud, fx, &s, 2).await;
    let first = ids(&g);
    for i in &g.instances {
        assert_eq!(
            i.image,
            fx.image,
            "{}",
            fail(cloud, "instances run the image")
        );
        assert!(i.address.is_some(), "{}", fail(cloud, "a serving address"));
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.launch_error, None);
    }
    assert_eq!(g.instances.len(), 2);
    let listed = groups.list_groups().await.expect("list_groups");
    assert!(
        listed.iter().any(|x| x.name == s.group),
        "{}",
        fail(cloud, "list_groups lists the group")
    );

    // Idempotent creation: returned as it is, nothing launched.
    let again = groups
        .create_group(&s.spec(fx, 3, 1, 3))
        .await
        .expect("create again");
    assert_eq!(
        (again.desired, &again.current),
        (2, &g.current),
        "{}",
        fail(
            cloud,
            "create_group of an existing group returns it as it is"
        )
    );
    tokio::time::sleep(SETTLE).await;
    let g = describe(cloud, &s.group).await;
    assert_eq!(g.instances.len(), 2, "{}", fail(cloud, "no extra launch"));
    assert_eq!(ids(&g), first);

    // Limits.
    expect_bad_input(
        cloud,
        "desired above max",
        groups.set_desired(&s.group, 4).await,
    );
    expect_bad_input(
        cloud,
        "desired below min",
        groups.set_desired(&s.group, 0).await,
    );
    expect_bad_input(
        cloud,
        "min above max",
        groups.set_limits(&s.group, 3, 2).await,
    );
    let g = describe(cloud, &s.group).await;
    assert_eq!((g.desired, g.min, g.max), (2, 1, 3));
    groups.set_limits(&s.group, 0, 1).await.expect("set_limits");
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        (g.desired, g.min, g.max),
        (1, 0, 1),
        "{}",
        fail(cloud, "limits clamp desired")
    );
    let g = wait_serving(cloud, fx, &s, 1).await;
    assert!(
        ids(&g).is_subset(&first),
        "{}",
        fail(cloud, "scaling in launches nothing")
    );
    groups.set_limits(&s.group, 1, 3).await.expect("set_limits");
    groups.set_desired(&s.group, 2).await.expect("set_desired");
    wait_serving(cloud, fx, &s, 2).await;

    // Template versions.
    let before = describe(cloud, &s.group).await;
    let v = groups
        .set_image(&s.group, &fx.other)
        .await
        .expect("set_image");
    assert_eq!(v.image, fx.other);
    assert_eq!(
        v.version,
        before.current.version + 1,
        "{}",
        fail(cloud, "a new image is the next version")
    );
    let g = describe(cloud, &s.group).await;
    assert_eq!(g.current, v);
    assert_eq!(g.previous.len(), before.previous.len() + 1);
    assert_eq!(
        g.previous.first(),
        Some(&before.current),
        "{}",
        fail(cloud, "the old version is kept, newest first")
    );
    assert!(
        g.instances.iter().all(|i| i.image == fx.image),
        "{}",
        fail(cloud, "a new image does not touch running instances")
    );
    let same = groups
        .set_image(&s.group, &fx.other)
        .await
        .expect("set_image again");
    assert_eq!(
        same,
        v,
        "{}",
        fail(cloud, "the same image again is no new version")
    );
    assert_eq!(
        describe(cloud, &s.group).await.previous.len(),
        g.previous.len()
    );
    expect_not_found(
        cloud,
        "set_image of a missing image",
        groups
            .set_image(&s.group, &ImageId::from("img-000000000000000000000000"))
            .await,
    );

    // Tags.
    let set: Tags = [("conf-a", "1"), ("conf-b", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    groups
        .tag_group(&s.group, &set, &[])
        .await
        .expect("tag_group");
    let g = describe(cloud, &s.group).await;
    assert_eq!((g.tag("conf-a"), g.tag("conf-b")), (Some("1"), Some("2")));
    let set: Tags = [("conf-c".to_owned(), "3".to_owned())]
        .into_iter()
        .collect();
    groups
        .tag_group(&s.group, &set, &["conf-b".to_owned()])
        .await
        .expect("tag_group");
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        (g.tag("conf-a"), g.tag("conf-b"), g.tag("conf-c")),
        (Some("1"), None, Some("3")),
        "{}",
        fail(cloud, "tags set and removed in one call")
    );
    assert_eq!(g.tag(TAG), Some(s.group.as_str()));
    teardown(cloud, fx, &s).await;
}

/// While launches are held a new instance waits in `PendingWait`, out of
/// the target group, even once its gate passes; `put_in_service`
/// registers it and it becomes healthy. A gate against another image's
/// manifest fails on the image.
pub async fn hold_and_put_in_service(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let s = scene(cloud, fx, "hold", [1, 0, 3]).await;
    let old = ids(&wait_serving(cloud, fx, &s, 1).await);
    groups
        .hold_launches(&s.group, true)
        .await
        .expect("hold_launches");
    assert!(describe(cloud, &s.group).await.hold_launches);
    groups.set_desired(&s.group, 2).await.expect("set_desired");
    let new = wait_for(cloud, fx, "a held launch with an address", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok(live(&g)
            .into_iter()
            .find(|i| !old.contains(&i.id) && i.address.is_some())
            .cloned())
    })
    .await;
    assert_eq!(
        new.lifecycle,
        Lifecycle::PendingWait,
        "{}",
        fail(cloud, "held launches wait")
    );
    assert_eq!(new.image, fx.image);

    let manifest = cloud.images().manifest(&fx.image).await.expect("manifest");
    let spec = GateSpec::from_manifest(&fx.image, &manifest);
    let outcome = wait_for(cloud, fx, "the held instance's gate to answer", || async {
        Ok(match cloud.probes().gate(&new, &spec).await? {
            GateOutcome::NotReady { .. } => None,
            other => Some(other),
        })
    })
    .await;
    assert_eq!(
        outcome,
        GateOutcome::Passed,
        "{}",
        fail(cloud, "the gate passes on its own image")
    );
    let other = cloud.images().manifest(&fx.other).await.expect("manifest");
    match cloud
        .probes()
        .gate(&new, &GateSpec::from_manifest(&fx.other, &other))
        .await
        .expect("gate")
    {
        GateOutcome::Failed { check, .. } if check.contains("image") => {}
        other => panic!(
            "{}",
            fail(
                cloud,
                &format!("a gate for another image must fail on the image: {other:?}")
            )
        ),
    }

    tokio::time::sleep(SETTLE).await;
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        g.instance(&new.id).map(|i| i.lifecycle),
        Some(Lifecycle::PendingWait),
        "{}",
        fail(cloud, "a held instance waits even once its gate passes")
    );
    assert!(
        find(&targets(cloud, &s.a).await, &new.id).is_none(),
        "{}",
        fail(cloud, "a waiting instance is not registered")
    );

    groups
        .put_in_service(&s.group, &new.id)
        .await
        .expect("put_in_service");
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        g.instance(&new.id).map(|i| i.lifecycle),
        Some(Lifecycle::InService)
    );
    let t = targets(cloud, &s.a).await;
    assert!(
        find(&t, &new.id)
            .is_some_and(|t| matches!(t.health, TargetHealth::Initial | TargetHealth::Healthy)),
        "{}",
        fail(cloud, &format!("put_in_service registers: {t:?}"))
    );
    groups
        .put_in_service(&s.group, &new.id)
        .await
        .expect("put_in_service is idempotent");
    wait_serving(cloud, fx, &s, 2).await;
    expect_not_found(
        cloud,
        "put_in_service of a missing instance",
        groups
            .put_in_service(&s.group, &InstanceId::from("i-0000000000000000"))
            .await,
    );
    groups
        .hold_launches(&s.group, false)
        .await
        .expect("release");
    assert!(!describe(cloud, &s.group).await.hold_launches);
    teardown(cloud, fx, &s).await;
}

/// A deregistered target drains and leaves (its instance stays in
/// service: that is the balancer's business); terminating with
/// `decrement` lowers desired and the instance goes, without a
/// replacement; without it, it is replaced; below min is bad input;
/// terminating what is gone is `Ok`.
pub async fn drain_before_terminate(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let lbs = cloud.lbs();
    let s = scene(cloud, fx, "drain", [2, 0, 2]).await;
    let g = wait_serving(cloud, fx, &s, 2).await;
    let all = live(&g);
    let (x, y) = (all[0].clone(), all[1].clone());

    lbs.deregister(&s.a, &[target_of(&x)])
        .await
        .expect("deregister");
    let h = lbs.health(&s.a, &target_of(&x)).await.expect("health");
    assert!(
        matches!(h, TargetHealth::Draining | TargetHealth::Unused),
        "{}",
        fail(cloud, &format!("deregistered: draining or gone, not {h:?}"))
    );
    wait_for(cloud, fx, "the deregistered target to leave", || async {
        Ok(find(&lbs.targets(&s.a).await?, &x.id)
            .is_none()
            .then_some(()))
    })
    .await;
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        g.instance(&x.id).map(|i| i.lifecycle),
        Some(Lifecycle::InService),
        "{}",
        fail(cloud, "deregistering does not change the group")
    );

    groups
        .terminate_instance(&s.group, &x.id, true)
        .await
        .expect("terminate");
    let g = describe(cloud, &s.group).await;
    assert_eq!(g.desired, 1, "{}", fail(cloud, "decrement lowers desired"));
    assert!(
        g.instance(&x.id)
            .is_none_or(|i| i.lifecycle == Lifecycle::Terminating),
        "{}",
        fail(cloud, "a terminated instance is terminating or gone")
    );
    wait_for(cloud, fx, "the terminated instance to go", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok(g.instance(&x.id).is_none().then_some(()))
    })
    .await;
    let g = wait_serving(cloud, fx, &s, 1).await;
    assert_eq!(
        ids(&g),
        BTreeSet::from([y.id.clone()]),
        "{}",
        fail(cloud, "no replacement after a decrement")
    );
    groups
        .terminate_instance(&s.group, &x.id, true)
        .await
        .expect("terminating a gone instance is Ok");
    groups
        .terminate_instance(&s.group, &InstanceId::from("i-0000000000000000"), true)
        .await
        .expect("terminating an unknown instance is Ok");

    // Without decrement: drained, stopped and replaced.
    groups
        .terminate_instance(&s.group, &y.id, false)
        .await
        .expect("terminate");
    let g = describe(cloud, &s.group).await;
    assert_eq!(g.desired, 1);
    assert!(
        g.instance(&y.id)
            .is_none_or(|i| i.lifecycle == Lifecycle::Terminating)
    );
    let h = lbs.health(&s.a, &target_of(&y)).await.expect("health");
    assert!(
        matches!(h, TargetHealth::Draining | TargetHealth::Unused),
        "{}",
        fail(cloud, &format!("terminating deregisters first, not {h:?}"))
    );
    let g = wait_serving(cloud, fx, &s, 1).await;
    let z = live(&g)[0].id.clone();
    assert_ne!(z, y.id, "{}", fail(cloud, "a replacement"));
    wait_for(cloud, fx, "the replaced instance to go", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok(g.instance(&y.id).is_none().then_some(()))
    })
    .await;

    groups.set_limits(&s.group, 1, 2).await.expect("set_limits");
    expect_bad_input(
        cloud,
        "decrementing below min",
        groups.terminate_instance(&s.group, &z, true).await,
    );
    let g = describe(cloud, &s.group).await;
    assert_eq!(
        g.instance(&z).map(|i| i.lifecycle),
        Some(Lifecycle::InService)
    );
    teardown(cloud, fx, &s).await;
}

/// Blue/green: an instance registered in the idle target group becomes
/// healthy there; `switch` moves the listener's forward at once; an
/// unknown target group is NotFound and changes nothing.
pub async fn switch(cloud: &Cloud, fx: &FleetFixture) {
    let lbs = cloud.lbs();
    let s = scene(cloud, fx, "switch", [1, 0, 1]).await;
    let g = wait_serving(cloud, fx, &s, 1).await;
    let x = live(&g)[0].clone();
    assert!(targets(cloud, &s.b).await.is_empty());
    let b = lbs.target_group(&s.b).await.expect("target_group");
    assert_eq!(b.id, s.b);
    assert_eq!(
        (&b.health_check, b.deregistration_delay_ms),
        (&fx.health_check, fx.deregistration_delay_ms),
        "{}",
        fail(cloud, "target groups carry the listener's settings")
    );

    lbs.register(&s.b, &[target_of(&x)])
        .await
        .expect("register");
    lbs.register(&s.b, &[target_of(&x)])
        .await
        .expect("register is idempotent");
    wait_for(cloud, fx, "the target to be healthy in b", || async {
        let ts = lbs.targets(&s.b).await?;
        Ok(find(&ts, &x.id)
            .is_some_and(|t| t.health == TargetHealth::Healthy)
            .then_some(()))
    })
    .await;
    assert_eq!(targets(cloud, &s.b).await.len(), 1);

    lbs.switch(&s.listener, &s.b).await.expect("switch");
    let l = lbs.listener(&s.listener).await.expect("listener");
    assert_eq!(l.forward, s.b, "{}", fail(cloud, "switch moves forward"));
    let ghost = TargetGroupId::new(unique("ghost"));
    expect_not_found(
        cloud,
        "switch to an unknown target group",
        lbs.switch(&s.listener, &ghost).await,
    );
    assert_eq!(
        lbs.listener(&s.listener).await.expect("listener").forward,
        s.b,
        "{}",
        fail(cloud, "a refused switch changes nothing")
    );
    lbs.switch(&s.listener, &s.a).await.expect("switch back");
    assert_eq!(
        lbs.listener(&s.listener).await.expect("listener").forward,
        s.a
    );

    lbs.deregister(&s.b, &[target_of(&x)])
        .await
        .expect("deregister");
    wait_for(cloud, fx, "b to be empty", || async {
        Ok(lbs.targets(&s.b).await?.is_empty().then_some(()))
    })
    .await;
    teardown(cloud, fx, &s).await;
}

/// A weighted forward (a blue/green canary): `set_weights` splits new
/// requests between the listener's two target groups and `listener`
/// reads the split back; `forward` stays the one that had them all while
/// it is the heavier; 100 is a switch, a `switch` ends a split, 0 sends
/// everything back; an unknown target group is NotFound and changes
/// nothing. (Which request goes where is the balancer's business: the
/// local one is tested in the balancer crate and roll's fleet tests.)
pub async fn weights(cloud: &Cloud, fx: &FleetFixture) {
    let lbs = cloud.lbs();
    let s = scene(cloud, fx, "weights", [0, 0, 1]).await;
    let read = || async {
        let l = lbs.listener(&s.listener).await.expect("listener");
        (l.forward.clone(), l.weight_of(&s.a), l.weight_of(&s.b))
    };
    let sums = || async {
        let l = lbs.listener(&s.listener).await.expect("listener");
        l.weights.iter().map(|(_, w)| w).sum::<u32>()
    };
    assert_eq!(
        read().await,
        (s.a.clone(), 100, 0),
        "{}",
        fail(cloud, "no split at first")
    );

    lbs.set_weights(&s.listener, &s.b, 10)
        .await
        .expect("set_weights");
    assert_eq!(
        read().await,
        (s.a.clone(), 90, 10),
        "{}",
        fail(cloud, "10% to b")
    );
    assert_eq!(sums().await, 100, "{}", fail(cloud, "weights sum to 100"));
    lbs.set_weights(&s.listener, &s.b, 50)
        .await
        .expect("set_weights");
    assert_eq!(
        read().await,
        (s.a.clone(), 50, 50),
        "{}",
        fail(cloud, "a tie keeps the forward")
    );
    // The forward's own weight: the rest to the one it splits with.
    lbs.set_weights(&s.listener, &s.a, 80)
        .await
        .expect("set_weights");
    assert_eq!(
        read().await,
        (s.a.clone(), 80, 20),
        "{}",
        fail(cloud, "80% to a")
    );

    let ghost = TargetGroupId::new(unique("ghost"));
    expect_not_found(
        cloud,
        "weights for an unknown target group",
        lbs.set_weights(&s.listener, &ghost, 10).await,
    );
    assert_eq!(
        read().await,
        (s.a.clone(), 80, 20),
        "{}",
        fail(cloud, "a refused split changes nothing")
    );

    // 100 is a switch.
    lbs.set_weights(&s.listener, &s.b, 100)
        .await
        .expect("set_weights");
    assert_eq!(
        read().await,
        (s.b.clone(), 0, 100),
        "{}",
        fail(cloud, "100% is a switch")
    );
    // A switch ends a split.
    lbs.set_weights(&s.listener, &s.a, 30)
        .await
        .expect("set_weights");
    assert_eq!(read().await, (s.b.clone(), 30, 70));
    lbs.switch(&s.listener, &s.b).await.expect("switch");
    assert_eq!(
        read().await,
        (s.b.clone(), 0, 100),
        "{}",
        fail(cloud, "a switch ends a split")
    );
    // 0: everything to the other one (the way a roll back undoes a canary).
    lbs.set_weights(&s.listener, &s.a, 10)
        .await
        .expect("set_weights");
    lbs.set_weights(&s.listener, &s.a, 0)
        .await
        .expect("set_weights");
    assert_eq!(
        read().await,
        (s.b.clone(), 0, 100),
        "{}",
        fail(cloud, "0% takes a out")
    );
    lbs.switch(&s.listener, &s.a).await.expect("switch back");
    assert_eq!(read().await, (s.a.clone(), 100, 0));
    teardown(cloud, fx, &s).await;
}

fn holder(id: &str) -> LeaseHolder {
    LeaseHolder {
        id: id.into(),
        pid: std::process::id(),
        host: "conformance".into(),
        command: "roll out".into(),
        since_ms: time::now_ms(),
    }
}

/// A lease is exclusive per group and names its holder; dropping it
/// releases it; another group's lease is independent.
pub async fn lease(cloud: &Cloud) {
    let g = GroupName::new(unique("lease"));
    let g2 = GroupName::new(unique("lease"));
    lease_checks(cloud, &g, &g2).await;
}

/// [`lease`] on two groups that exist, for backends whose lease lives on
/// the group (aws: its tags); made like the premade group where there is
/// one, and deleted afterwards.
pub async fn lease_of_groups(cloud: &Cloud, fx: &FleetFixture) {
    let a = scene(cloud, fx, "lease", [0, 0, 1]).await;
    let b = scene(cloud, fx, "lease", [0, 0, 1]).await;
    lease_checks(cloud, &a.group, &b.group).await;
    teardown(cloud, fx, &a).await;
    teardown(cloud, fx, &b).await;
}

async fn lease_checks(cloud: &Cloud, g: &GroupName, g2: &GroupName) {
    let (g, g2) = (g.clone(), g2.clone());
    let groups = cloud.groups();
    let first = groups
        .acquire_lease(&g, &holder("conf-roll-1"))
        .await
        .expect("a free lease");
    assert_eq!(first.holder().id, "conf-roll-1");
    first.renew().await.expect("renew");
    match groups.acquire_lease(&g, &holder("conf-roll-2")).await {
        Err(e @ CloudError::Busy { .. }) => assert!(
            e.to_string().contains("conf-roll-1"),
            "{}",
            fail(cloud, &format!("Busy names the holder: {e}"))
        ),
        Err(e) => panic!("{}", fail(cloud, &format!("want Busy, got {e}"))),
        Ok(_) => panic!("{}", fail(cloud, "a held lease was given out twice")),
    }
    let other = groups
        .acquire_lease(&g2, &holder("conf-roll-3"))
        .await
        .expect("another group's lease is independent");
    drop(first);
    let again = groups
        .acquire_lease(&g, &holder("conf-roll-2"))
        .await
        .expect("a dropped lease is free");
    assert_eq!(again.holder().id, "conf-roll-2");
    drop(again);
    drop(other);
}

/// A scheduled size change is shown until it applies; `None` cancels it;
/// one that is due applies (min lowered with it) and the group scales.
pub async fn schedule_desired(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let s = scene(cloud, fx, "sched", [1, 1, 2]).await;
    // Whole seconds: the resolution of Auto Scaling's scheduled actions.
    let later = ScheduledDesired {
        at_ms: (time::now_ms() / 1000 + 3_600) * 1000,
        desired: 0,
    };
    groups
        .schedule_desired(&s.group, Some(later))
        .await
        .expect("schedule");
    assert_eq!(describe(cloud, &s.group).await.scheduled, Some(later));
    groups
        .schedule_desired(&s.group, None)
        .await
        .expect("cancel");
    let g = describe(cloud, &s.group).await;
    assert_eq!(g.scheduled, None, "{}", fail(cloud, "None cancels"));
    assert_eq!((g.desired, g.min), (1, 1));

    let due = ScheduledDesired {
        at_ms: time::now_ms().saturating_sub(1_000),
        desired: 0,
    };
    groups
        .schedule_desired(&s.group, Some(due))
        .await
        .expect("schedule");
    let g = wait_for(cloud, fx, "the due schedule to apply", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok((g.scheduled.is_none() && g.desired == 0).then_some(g))
    })
    .await;
    assert_eq!(
        (g.min, g.max),
        (0, 2),
        "{}",
        fail(cloud, "a schedule below min lowers min")
    );
    wait_for(cloud, fx, "the group to scale to nothing", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok(g.instances.is_empty().then_some(()))
    })
    .await;
    teardown(cloud, fx, &s).await;
}

/// `bake gc`'s janitor never lists anything of a fleet — a serving
/// instance, a standby, their directories — and removing everything it
/// does list leaves both groups serving.
pub async fn janitor_spares_the_fleet(cloud: &Cloud, fx: &FleetFixture) {
    let groups = cloud.groups();
    let s = scene(cloud, fx, "gc", [2, 0, 2]).await;
    // A standby: a second group serving target group b, which takes no
    // traffic.
    let standby = GroupName::new(format!("{}-standby", s.group));
    groups
        .create_group(&fx.group(GroupSpec {
            name: standby.clone(),
            target_group: Some(s.b.clone()),
            ..GroupSpec::fixed(standby.clone(), fx.other.clone(), 1)
        }))
        .await
        .expect("create the standby");
    let serving = ids(&wait_serving(cloud, fx, &s, 2).await);
    let waiting = wait_for(cloud, fx, "the standby to be healthy", || async {
        let g = cloud.groups().describe_group(&standby).await?;
        let ts = cloud.lbs().targets(&s.b).await?;
        let ok = g.instances.len() == 1
            && g.instances.iter().all(|i| {
                i.lifecycle == Lifecycle::InService
                    && find(&ts, &i.id).is_some_and(|t| t.health == TargetHealth::Healthy)
            });
        Ok(ok.then(|| ids(&g)))
    })
    .await;
    let fleet: BTreeSet<&InstanceId> = serving.iter().chain(&waiting).collect();

    let leftovers = cloud
        .janitor()
        .leftovers(Duration::ZERO, &[])
        .await
        .expect("leftovers");
    for l in &leftovers {
        let touches = fleet.iter().any(|i| l.id.contains(i.as_str()))
            || l.id.starts_with("fleet")
            || (l.kind == ResourceKind::Image
                && (l.id == fx.image.as_str() || l.id == fx.other.as_str()));
        assert!(
            !touches,
            "{}",
            fail(cloud, &format!("the janitor lists part of a fleet: {l:?}"))
        );
    }
    for l in &leftovers {
        cloud
            .janitor()
            .remove(l)
            .await
            .unwrap_or_else(|e| panic!("{}", fail(cloud, &format!("removing {l:?}: {e}"))));
    }
    tokio::time::sleep(SETTLE).await;
    let g = wait_serving(cloud, fx, &s, 2).await;
    assert_eq!(
        ids(&g),
        serving,
        "{}",
        fail(cloud, "gc leaves serving instances alone")
    );
    let st = describe(cloud, &standby).await;
    assert_eq!(
        ids(&st),
        waiting,
        "{}",
        fail(cloud, "gc leaves a standby alone")
    );
    assert!(
        st.instances
            .iter()
            .all(|i| i.lifecycle == Lifecycle::InService)
    );
    groups.delete_group(&standby).await.expect("delete standby");
    teardown(cloud, fx, &s).await;
}

/// Deleting the listener and the group leaves nothing: both NotFound,
/// deletes again `Ok`, and no group listed at all (run it last: it also
/// proves every check before it cleaned up).
pub async fn cleanup(cloud: &Cloud, fx: &FleetFixture) {
    let s = scene(cloud, fx, "clean", [1, 0, 1]).await;
    wait_for(cloud, fx, "an instance", || async {
        let g = cloud.groups().describe_group(&s.group).await?;
        Ok((!g.instances.is_empty()).then_some(()))
    })
    .await;
    let lbs = cloud.lbs();
    if fx.premade.is_none() {
        lbs.delete_listener(&s.listener)
            .await
            .expect("delete_listener");
        expect_not_found(cloud, "a deleted listener", lbs.listener(&s.listener).await);
        expect_not_found(
            cloud,
            "a deleted listener's target group",
            lbs.target_group(&s.a).await,
        );
        lbs.delete_listener(&s.listener)
            .await
            .expect("deleting twice is Ok");
    }
    let groups = cloud.groups();
    groups.delete_group(&s.group).await.expect("delete_group");
    expect_not_found(
        cloud,
        "a deleted group",
        groups.describe_group(&s.group).await,
    );
    groups
        .delete_group(&s.group)
        .await
        .expect("deleting twice is Ok");
    let left = groups.list_groups().await.expect("list_groups");
    assert!(
        left.is_empty(),
        "{}",
        fail(cloud, &format!("groups left behind: {left:?}"))
    );
}

/// Every check, in an order that ends with [`cleanup`].
pub async fn run_all(cloud: &Cloud, fx: &FleetFixture) {
    missing_things(cloud, fx).await;
    lease(cloud).await;
    group_lifecycle(cloud, fx).await;
    hold_and_put_in_service(cloud, fx).await;
    drain_before_terminate(cloud, fx).await;
    switch(cloud, fx).await;
    weights(cloud, fx).await;
    schedule_desired(cloud, fx).await;
    janitor_spares_the_fleet(cloud, fx).await;
    cleanup(cloud, fx).await;
}
