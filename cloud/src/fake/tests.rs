//! The fake itself, under paused time: every timing the module doc
//! promises, to the millisecond, and the fleet conformance suite.

use std::time::Duration;

use super::*;
use crate::conformance::fleet::{self, FleetFixture};
use crate::lb::HealthCheck;

const A: &str = "img-aaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "img-bbbbbbbbbbbbbbbbbbbbbbbb";

fn golden(answer: &str) -> Vec<GoldenRecord> {
    vec![GoldenRecord {
        query: "alan".into(),
        ids: 20,
        offset: 0,
        min_total: 1,
        total: 1,
        answer: answer.into(),
    }]
}

/// A fake with images `A` and `B`.
fn fake() -> FakeCloud {
    let f = FakeCloud::new();
    f.add_image(A, &"a".repeat(64), golden(r#"{"total":1,"duration":0}"#));
    f.add_image(B, &"b".repeat(64), golden(r#"{"total":2,"duration":0}"#));
    f
}

fn hc(interval_ms: u64, healthy: u32, unhealthy: u32) -> HealthCheck {
    HealthCheck {
        path: "/ready".into(),
        interval_ms,
        timeout_ms: interval_ms,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
    }
}

fn tg(s: &str) -> TargetGroupId {
    TargetGroupId::from(s)
}

fn web() -> GroupName {
    GroupName::from("web")
}

/// Listener `lb` (target groups `blue`, `green`; forward `blue`) and group
/// `web` of image `A` in `blue`.
async fn setup(cloud: &Cloud, check: HealthCheck, delay_ms: u64, size: [u32; 3]) {
    cloud
        .lbs()
        .create_listener(&ListenerSpec {
            id: ListenerId::from("lb"),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            tls: None,
            health_check: check,
            deregistration_delay_ms: delay_ms,
            target_groups: vec![tg("blue"), tg("green")],
            forward: tg("blue"),
        })
        .await
        .unwrap();
    let [desired, min, max] = size;
    cloud
        .groups()
        .create_group(&GroupSpec {
            name: web(),
            image: ImageId::from(A),
            desired,
            min,
            max,
            target_group: Some(tg("blue")),
            tags: Tags::new(),
            like: None,
        })
        .await
        .unwrap();
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

async fn group(cloud: &Cloud) -> GroupInfo {
    cloud.groups().describe_group(&web()).await.unwrap()
}

async fn health(cloud: &Cloud, tg_: &str) -> Vec<(InstanceId, TargetHealth, u64)> {
    cloud
        .lbs()
        .targets(&tg(tg_))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.target.instance, t.health, t.since_ms))
        .collect()
}

fn lifecycles(g: &GroupInfo) -> Vec<Lifecycle> {
    g.instances.iter().map(|i| i.lifecycle).collect()
}

#[tokio::test(start_paused = true)]
async fn launches_to_desired_then_in_service_then_healthy() {
    let f = fake();
    let cloud = f.cloud();
    assert_eq!(cloud.backend(), "fake");
    let t0 = f.now_ms();
    setup(&cloud, hc(1000, 2, 2), 5000, [2, 0, 3]).await;
    let g = group(&cloud).await;
    assert_eq!(lifecycles(&g), vec![Lifecycle::Pending; 2]);
    for i in &g.instances {
        assert_eq!(i.launched_ms, t0);
        assert_eq!(i.image, ImageId::from(A));
        assert_eq!(i.state, InstanceState::Running);
        assert!(i.address.is_some_and(|a| a.port() == PORT));
    }
    assert!(health(&cloud, "blue").await.is_empty());

    advance(99).await;
    assert_eq!(
        lifecycles(&group(&cloud).await),
        vec![Lifecycle::Pending; 2]
    );
    advance(1).await;
    assert_eq!(
        lifecycles(&group(&cloud).await),
        vec![Lifecycle::InService; 2]
    );
    let h = health(&cloud, "blue").await;
    assert_eq!(h.len(), 2);
    assert!(
        h.iter()
            .all(|(_, s, since)| *s == TargetHealth::Initial && *since == t0 + 100)
    );
    // The first check runs at registration, the second one interval later.
    advance(999).await;
    assert!(
        health(&cloud, "blue")
            .await
            .iter()
            .all(|(_, s, _)| *s == TargetHealth::Initial)
    );
    advance(1).await;
    let h = health(&cloud, "blue").await;
    assert!(
        h.iter()
            .all(|(_, s, since)| *s == TargetHealth::Healthy && *since == t0 + 1100),
        "{h:?}"
    );
    advance(3_600_000).await;
    assert_eq!(health(&cloud, "blue").await, h, "steady for an hour");
    assert_eq!(f.launched().len(), 2, "nothing launched twice");
    assert_eq!(f.next_event_ms(), None, "nothing left to happen");
}

#[tokio::test(start_paused = true)]
async fn held_launches_wait_for_put_in_service() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 3]).await;
    advance(1100).await;
    let groups = cloud.groups();
    groups.hold_launches(&web(), true).await.unwrap();
    groups.set_desired(&web(), 2).await.unwrap();
    let g = group(&cloud).await;
    let new = g.instances[1].clone();
    assert_eq!(new.lifecycle, Lifecycle::PendingWait);
    let spec = GateSpec::from_manifest(
        &ImageId::from(A),
        &cloud.images().manifest(&ImageId::from(A)).await.unwrap(),
    );
    assert!(matches!(
        cloud.probes().gate(&new, &spec).await.unwrap(),
        GateOutcome::NotReady { .. }
    ));
    advance(10_000).await;
    assert_eq!(
        cloud.probes().gate(&new, &spec).await.unwrap(),
        GateOutcome::Passed
    );
    assert_eq!(
        group(&cloud).await.instances[1].lifecycle,
        Lifecycle::PendingWait
    );
    assert_eq!(health(&cloud, "blue").await.len(), 1);

    let t = f.now_ms();
    groups.put_in_service(&web(), &new.id).await.unwrap();
    assert_eq!(
        group(&cloud).await.instances[1].lifecycle,
        Lifecycle::InService
    );
    assert!(
        health(&cloud, "blue")
            .await
            .contains(&(new.id.clone(), TargetHealth::Initial, t))
    );
    advance(1000).await;
    assert!(health(&cloud, "blue").await.contains(&(
        new.id.clone(),
        TargetHealth::Healthy,
        t + 1000
    )));

    // Released: a waiting instance is gated by the group like any launch.
    groups.set_desired(&web(), 3).await.unwrap();
    assert_eq!(
        group(&cloud).await.instances[2].lifecycle,
        Lifecycle::PendingWait
    );
    advance(500).await;
    groups.hold_launches(&web(), false).await.unwrap();
    assert_eq!(
        group(&cloud).await.instances[2].lifecycle,
        Lifecycle::InService,
        "ready long ago: in service at once"
    );
}

#[tokio::test(start_paused = true)]
async fn health_thresholds_count_checks_one_interval_apart() {
    let f = fake();
    f.script(
        A,
        ImageScript {
            ready_after: Duration::from_millis(2000),
            ..ImageScript::default()
        },
    );
    let cloud = f.cloud();
    setup(&cloud, hc(500, 3, 2), 5000, [1, 0, 1]).await;
    cloud.groups().hold_launches(&web(), true).await.unwrap();
    // The group launched before the hold: it is Pending, and gated at 2 s;
    // put it in service by hand before it answers at all.
    let t0 = f.now_ms();
    let id = group(&cloud).await.instances[0].id.clone();
    cloud.groups().put_in_service(&web(), &id).await.unwrap();
    // Checks at 0 and 500 fail (refused): unhealthy at 500.
    advance(499).await;
    assert_eq!(health(&cloud, "blue").await[0].1, TargetHealth::Initial);
    advance(1).await;
    assert_eq!(
        health(&cloud, "blue").await[0],
        (
            id.clone(),
            TargetHealth::Unhealthy {
                reason: "connection refused".into()
            },
            t0 + 500
        )
    );
    // Ready at 2000: checks at 2000, 2500, 3000 pass: healthy at 3000.
    advance(2499).await;
    assert!(matches!(
        health(&cloud, "blue").await[0].1,
        TargetHealth::Unhealthy { .. }
    ));
    advance(1).await;
    assert_eq!(
        health(&cloud, "blue").await[0],
        (id, TargetHealth::Healthy, t0 + 3000)
    );
}

#[tokio::test(start_paused = true)]
async fn flapping_and_failing_targets_follow_their_script() {
    let f = fake();
    f.script(
        A,
        ImageScript {
            health: HealthScript::Flap {
                at: Duration::from_secs(10),
                lasting: Duration::from_secs(3),
            },
            ..ImageScript::default()
        },
    );
    f.script(
        B,
        ImageScript {
            health: HealthScript::UnhealthyAfter(Duration::from_secs(5)),
            ..ImageScript::default()
        },
    );
    let cloud = f.cloud();
    let r = f.now_ms() + 100;
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 2]).await;
    advance(100 + 1000).await;
    assert_eq!(health(&cloud, "blue").await[0].1, TargetHealth::Healthy);
    // Failing checks at r+10 s and r+11 s: unhealthy at r+11 s.
    advance(9_999).await;
    assert_eq!(health(&cloud, "blue").await[0].1, TargetHealth::Healthy);
    advance(1).await;
    let (_, h, since) = health(&cloud, "blue").await.remove(0);
    assert_eq!(
        (h, since),
        (
            TargetHealth::Unhealthy {
                reason: "status 503".into()
            },
            r + 11_000
        )
    );
    // Passing again from r+13 s: healthy at r+14 s, and then for good.
    advance(3_000).await;
    let (_, h, since) = health(&cloud, "blue").await.remove(0);
    assert_eq!((h, since), (TargetHealth::Healthy, r + 14_000));
    advance(86_400_000).await;
    assert_eq!(health(&cloud, "blue").await[0].1, TargetHealth::Healthy);

    // B: healthy, then failing for good from 5 s after registration; the
    // group keeps it (only a dead instance is replaced).
    cloud
        .groups()
        .set_image(&web(), &ImageId::from(B))
        .await
        .unwrap();
    cloud.groups().set_desired(&web(), 2).await.unwrap();
    let rb = f.now_ms() + 100;
    advance(100 + 1000).await;
    let b_id = group(&cloud).await.instances[1].id.clone();
    let of_b = |h: Vec<(InstanceId, TargetHealth, u64)>| {
        h.into_iter().find(|(i, _, _)| i == &b_id).unwrap()
    };
    assert_eq!(of_b(health(&cloud, "blue").await).1, TargetHealth::Healthy);
    advance(5_000).await;
    let (_, h, since) = of_b(health(&cloud, "blue").await);
    assert_eq!(since, rb + 6_000, "{h:?}");
    advance(86_400_000).await;
    assert!(matches!(
        of_b(health(&cloud, "blue").await).1,
        TargetHealth::Unhealthy { .. }
    ));
    assert_eq!(
        lifecycles(&group(&cloud).await),
        vec![Lifecycle::InService; 2]
    );
    assert_eq!(f.launched().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn draining_ends_at_the_next_beat_or_when_requests_finish() {
    let f = fake();
    let cloud = f.cloud();
    let r = f.now_ms() + 100;
    setup(&cloud, hc(1000, 2, 2), 5000, [3, 0, 3]).await;
    advance(1100).await;
    let ids: Vec<InstanceId> = group(&cloud)
        .await
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let target = |id: &InstanceId| Target {
        instance: id.clone(),
        port: PORT,
    };
    let lbs = cloud.lbs();

    // Nothing in flight: gone at the next beat (r + 2 s).
    advance(400).await;
    lbs.deregister(&tg("blue"), &[target(&ids[0])])
        .await
        .unwrap();
    let h = health(&cloud, "blue").await;
    assert_eq!(h[0], (ids[0].clone(), TargetHealth::Draining, r + 1_400));
    advance(599).await;
    assert_eq!(health(&cloud, "blue").await.len(), 3);
    advance(1).await;
    assert_eq!(health(&cloud, "blue").await.len(), 2);

    // Requests in flight for 3 s: gone when they finish.
    f.set_in_flight(&ids[1], 4, Duration::from_secs(3));
    let t = f.now_ms();
    let ts = lbs.targets(&tg("blue")).await.unwrap();
    assert_eq!(ts[0].in_flight, 4);
    lbs.deregister(&tg("blue"), &[target(&ids[1])])
        .await
        .unwrap();
    advance(2_999).await;
    assert_eq!(health(&cloud, "blue").await[0].1, TargetHealth::Draining);
    advance(1).await;
    assert_eq!(health(&cloud, "blue").await.len(), 1);
    assert_eq!(f.now_ms(), t + 3_000);

    // Requests that outlast the deregistration delay: gone after it.
    f.set_in_flight(&ids[2], 1, Duration::from_secs(60));
    lbs.deregister(&tg("blue"), &[target(&ids[2])])
        .await
        .unwrap();
    advance(4_999).await;
    assert_eq!(health(&cloud, "blue").await.len(), 1);
    advance(1).await;
    assert!(health(&cloud, "blue").await.is_empty());
    // The instances themselves are still in service.
    assert_eq!(
        lifecycles(&group(&cloud).await),
        vec![Lifecycle::InService; 3]
    );
}

#[tokio::test(start_paused = true)]
async fn terminating_drains_then_stops_and_replaces_unless_decremented() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [2, 1, 2]).await;
    advance(1100).await;
    let g = group(&cloud).await;
    let (x, y) = (g.instances[0].id.clone(), g.instances[1].id.clone());
    let groups = cloud.groups();

    groups.terminate_instance(&web(), &x, false).await.unwrap();
    let g = group(&cloud).await;
    assert_eq!(g.instance(&x).unwrap().lifecycle, Lifecycle::Terminating);
    assert_eq!(g.instance(&x).unwrap().state, InstanceState::ShuttingDown);
    assert_eq!(g.desired, 2);
    // Replaced at once; the old one leaves when drained (next beat).
    assert_eq!(g.instances.len(), 3);
    assert_eq!(
        health(&cloud, "blue").await[0],
        (x.clone(), TargetHealth::Draining, f.now_ms())
    );
    advance(1000).await;
    let g = group(&cloud).await;
    assert!(g.instance(&x).is_none());
    assert_eq!(g.instances.len(), 2);
    assert_eq!(f.launched().len(), 3);

    groups.set_limits(&web(), 2, 2).await.unwrap();
    expect_bad_input(groups.terminate_instance(&web(), &y, true).await);
    groups.set_limits(&web(), 0, 2).await.unwrap();
    groups.terminate_instance(&web(), &y, true).await.unwrap();
    advance(1000).await;
    let g = group(&cloud).await;
    assert_eq!((g.desired, g.instances.len()), (1, 1));
    assert_eq!(f.launched().len(), 3, "no replacement after a decrement");
    groups.terminate_instance(&web(), &y, true).await.unwrap();

    // Deleting stops at once, nothing drains.
    groups.delete_group(&web()).await.unwrap();
    assert!(health(&cloud, "blue").await.is_empty());
    assert!(groups.list_groups().await.unwrap().is_empty());
}

fn expect_bad_input<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(e) if e.is_bad_input() => {}
        other => panic!("want bad input, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_killed_instance_is_replaced_from_the_current_template() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [2, 0, 2]).await;
    advance(1100).await;
    let x = group(&cloud).await.instances[0].id.clone();
    cloud
        .groups()
        .set_image(&web(), &ImageId::from(B))
        .await
        .unwrap();
    assert!(f.kill(&x));
    assert!(!f.kill(&x));
    let g = group(&cloud).await;
    assert!(g.instance(&x).is_none());
    assert_eq!(g.instances.len(), 2);
    assert_eq!(g.instances[1].image, ImageId::from(B));
    assert_eq!(
        health(&cloud, "blue").await.len(),
        1,
        "a dead target leaves at once"
    );
    assert_eq!(f.launched().len(), 3);
    assert_eq!(f.launched()[2].1, ImageId::from(B));

    // An instance that dies before going in service: relaunches back off.
    f.script(
        B,
        ImageScript {
            gate: GateScript::NeverReady,
            ..ImageScript::default()
        },
    );
    cloud.groups().set_desired(&web(), 1).await.unwrap();
    advance(1000).await;
    cloud.groups().set_desired(&web(), 2).await.unwrap();
    let g = group(&cloud).await;
    let pending = g.instances[1].id.clone();
    assert_eq!(g.instances[1].lifecycle, Lifecycle::Pending);
    assert!(f.kill(&pending));
    assert_eq!(group(&cloud).await.instances.len(), 1);
    advance(999).await;
    assert_eq!(group(&cloud).await.instances.len(), 1);
    advance(1).await;
    let g = group(&cloud).await;
    assert_eq!(g.instances.len(), 2, "relaunched after 1 s");
    assert!(f.kill(&g.instances[1].id));
    advance(1999).await;
    assert_eq!(group(&cloud).await.instances.len(), 1);
    advance(1).await;
    assert_eq!(group(&cloud).await.instances.len(), 2, "then after 2 s");
}

#[tokio::test(start_paused = true)]
async fn the_registered_instance_of_another_group_fails_once_dead() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 1]).await;
    advance(1100).await;
    let x = group(&cloud).await.instances[0].id.clone();
    let t = Target {
        instance: x.clone(),
        port: PORT,
    };
    cloud.lbs().register(&tg("green"), &[t]).await.unwrap();
    advance(1000).await;
    assert_eq!(health(&cloud, "green").await[0].1, TargetHealth::Healthy);
    // Healthy for good: its checks skip ahead; a kill must still show.
    advance(60_000).await;
    f.kill(&x);
    advance(2_000).await;
    assert!(matches!(
        health(&cloud, "green").await[0].1,
        TargetHealth::Unhealthy { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn scale_in_takes_waiting_then_other_images_then_the_oldest() {
    let f = fake();
    let cloud = f.cloud();
    let groups = cloud.groups();
    setup(&cloud, hc(1000, 2, 2), 5000, [2, 0, 5]).await;
    advance(1100).await;
    let a: Vec<InstanceId> = group(&cloud)
        .await
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    groups.set_image(&web(), &ImageId::from(B)).await.unwrap();
    groups.set_desired(&web(), 3).await.unwrap();
    advance(1100).await;
    let b1 = group(&cloud).await.instances[2].id.clone();
    groups.hold_launches(&web(), true).await.unwrap();
    groups.set_desired(&web(), 4).await.unwrap();
    let b2 = group(&cloud).await.instances[3].id.clone();
    let terminating = |g: &GroupInfo| -> Vec<InstanceId> {
        g.instances
            .iter()
            .filter(|i| i.lifecycle == Lifecycle::Terminating)
            .map(|i| i.id.clone())
            .collect()
    };
    groups.set_desired(&web(), 3).await.unwrap();
    assert!(
        group(&cloud).await.instance(&b2).is_none(),
        "not in service: stopped at once"
    );
    groups.set_desired(&web(), 2).await.unwrap();
    assert_eq!(terminating(&group(&cloud).await), vec![a[0].clone()]);
    groups.set_desired(&web(), 1).await.unwrap();
    assert_eq!(
        terminating(&group(&cloud).await),
        vec![a[0].clone(), a[1].clone()]
    );
    advance(1000).await;
    let g = group(&cloud).await;
    assert_eq!(g.instances.len(), 1);
    assert_eq!(g.instances[0].id, b1);
}

#[tokio::test(start_paused = true)]
async fn a_schedule_applies_at_its_time() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [2, 2, 3]).await;
    let at = f.now_ms() + 10_000;
    cloud
        .groups()
        .schedule_desired(
            &web(),
            Some(ScheduledDesired {
                at_ms: at,
                desired: 1,
            }),
        )
        .await
        .unwrap();
    advance(9_999).await;
    let g = group(&cloud).await;
    assert_eq!((g.desired, g.min), (2, 2));
    assert!(g.scheduled.is_some());
    advance(1).await;
    let g = group(&cloud).await;
    assert_eq!((g.desired, g.min, g.scheduled), (1, 1, None));
    assert_eq!(
        g.instances
            .iter()
            .filter(|i| i.lifecycle == Lifecycle::Terminating)
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn gate_scripts_fail_or_never_answer() {
    let f = fake();
    f.script(
        A,
        ImageScript {
            gate: GateScript::Fail {
                check: "golden /books?query=alan".into(),
                expected: "1".into(),
                actual: "2".into(),
            },
            ..ImageScript::default()
        },
    );
    f.script(
        B,
        ImageScript {
            gate: GateScript::NeverReady,
            ..ImageScript::default()
        },
    );
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 2]).await;
    advance(100).await;
    let g = group(&cloud).await;
    let i = g.instances[0].clone();
    assert_eq!(
        i.lifecycle,
        Lifecycle::Pending,
        "a failed launch check stays pending"
    );
    assert_eq!(
        i.launch_error.as_deref(),
        Some("golden /books?query=alan: expected 1, got 2")
    );
    let spec_a = GateSpec::from_manifest(
        &ImageId::from(A),
        &cloud.images().manifest(&ImageId::from(A)).await.unwrap(),
    );
    assert!(matches!(
        cloud.probes().gate(&i, &spec_a).await.unwrap(),
        GateOutcome::Failed { .. }
    ));
    advance(60_000).await;
    assert_eq!(group(&cloud).await.instances.len(), 1, "kept, not replaced");

    cloud
        .groups()
        .set_image(&web(), &ImageId::from(B))
        .await
        .unwrap();
    cloud.groups().set_desired(&web(), 2).await.unwrap();
    advance(60_000).await;
    let g = group(&cloud).await;
    let j = g.instances[1].clone();
    assert_eq!(
        (j.lifecycle, j.launch_error.as_deref()),
        (Lifecycle::Pending, None)
    );
    let spec_b = GateSpec::from_manifest(
        &ImageId::from(B),
        &cloud.images().manifest(&ImageId::from(B)).await.unwrap(),
    );
    assert!(matches!(
        cloud.probes().gate(&j, &spec_b).await.unwrap(),
        GateOutcome::NotReady { .. }
    ));

    // A passing image against the wrong spec: image, then index, then
    // golden answers.
    f.script(B, ImageScript::default());
    advance(1).await;
    assert_eq!(
        group(&cloud).await.instances[1].lifecycle,
        Lifecycle::InService
    );
    match cloud.probes().gate(&j, &spec_a).await.unwrap() {
        GateOutcome::Failed { check, .. } => assert_eq!(check, "/version image"),
        other => panic!("{other:?}"),
    }
    let mut wrong = spec_b.clone();
    wrong.index_digest = "c".repeat(64);
    match cloud.probes().gate(&j, &wrong).await.unwrap() {
        GateOutcome::Failed { check, .. } => assert_eq!(check, "/version index_digest"),
        other => panic!("{other:?}"),
    }
    let mut wrong = spec_b.clone();
    wrong.golden[0].answer = r#"{"total":3,"duration":0.5}"#.into();
    match cloud.probes().gate(&j, &wrong).await.unwrap() {
        GateOutcome::Failed { check, .. } => assert!(check.starts_with("golden /books?query=alan")),
        other => panic!("{other:?}"),
    }
    // `duration` never counts.
    let mut same = spec_b.clone();
    same.golden[0].answer = r#"{"total":2,"duration":0.25}"#.into();
    assert_eq!(
        cloud.probes().gate(&j, &same).await.unwrap(),
        GateOutcome::Passed
    );
}

#[tokio::test(start_paused = true)]
async fn faults_fail_the_nth_call_before_or_after_its_work() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 3]).await;
    let groups = cloud.groups();
    f.fail_nth("set_desired", 2);
    groups.set_desired(&web(), 2).await.unwrap();
    let err = groups.set_desired(&web(), 3).await.unwrap_err();
    assert!(matches!(err, CloudError::Api { .. }), "{err}");
    assert!(!err.is_bad_input());
    assert_eq!(group(&cloud).await.desired, 2, "refused: nothing done");
    groups.set_desired(&web(), 3).await.unwrap();
    assert_eq!(group(&cloud).await.desired, 3);

    f.fail_nth_applied("tag_group", 1);
    let set: Tags = [("k".to_owned(), "v".to_owned())].into_iter().collect();
    assert!(groups.tag_group(&web(), &set, &[]).await.is_err());
    assert_eq!(
        group(&cloud).await.tag("k"),
        Some("v"),
        "applied, then failed"
    );
    groups.tag_group(&web(), &set, &[]).await.unwrap();

    f.fail_nth("describe_group", 1);
    assert!(groups.describe_group(&web()).await.is_err());
    let calls = f.calls();
    assert_eq!(calls["set_desired"], 3);
    assert_eq!(calls["tag_group"], 2);
    assert_eq!(calls["create_group"], 1);
    assert_eq!(cloud.api_calls(), f.calls());
    assert_eq!(f.launched().len(), 3);
}

#[test]
#[should_panic(expected = "no operation")]
fn failing_an_unknown_operation_is_a_test_bug() {
    FakeCloud::new().fail_nth("set_desire", 1);
}

#[tokio::test(start_paused = true)]
async fn leases_shadowing_and_counters() {
    let f = fake();
    let cloud = f.cloud();
    setup(&cloud, hc(1000, 2, 2), 5000, [1, 0, 1]).await;
    let h = |id: &str| LeaseHolder {
        id: id.into(),
        pid: 1,
        host: "h".into(),
        command: "roll out".into(),
        since_ms: 0,
    };
    let held = cloud
        .groups()
        .acquire_lease(&web(), &h("roll-1"))
        .await
        .unwrap();
    let err = cloud
        .groups()
        .acquire_lease(&web(), &h("roll-2"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("roll-1"), "{err}");
    // Its holder was killed: the lease is free, and the old handle's drop
    // does not free the new holder's.
    f.break_lease(&web());
    let second = cloud
        .groups()
        .acquire_lease(&web(), &h("roll-2"))
        .await
        .unwrap();
    drop(held);
    assert!(
        cloud
            .groups()
            .acquire_lease(&web(), &h("roll-3"))
            .await
            .is_err()
    );
    drop(second);
    cloud
        .groups()
        .acquire_lease(&web(), &h("roll-3"))
        .await
        .unwrap();

    let lb = ListenerId::from("lb");
    let lbs = cloud.lbs();
    assert_eq!(lbs.shadow(&lb).await.unwrap(), None);
    f.script_shadow(ShadowReport {
        compared: 10,
        differing: 1,
        ..ShadowReport::default()
    });
    let spec = ShadowSpec {
        target_group: tg("green"),
        percent: 50,
    };
    lbs.start_shadow(&lb, &spec).await.unwrap();
    let report = lbs.shadow(&lb).await.unwrap().unwrap();
    assert_eq!(
        (report.target_group.as_str(), report.compared),
        ("green", 10)
    );
    assert_eq!(lbs.stop_shadow(&lb).await.unwrap().differing, 1);
    assert_eq!(lbs.shadow(&lb).await.unwrap(), None);
    let ghost = ShadowSpec {
        target_group: tg("nope"),
        percent: 50,
    };
    assert!(
        lbs.start_shadow(&lb, &ghost)
            .await
            .unwrap_err()
            .is_not_found()
    );

    assert_eq!(lbs.counters(&lb).await.unwrap(), LbCounters::default());
    let c = LbCounters {
        requests: 7,
        ..LbCounters::default()
    };
    f.set_counters(&lb, c.clone());
    assert_eq!(lbs.counters(&lb).await.unwrap(), c);
    assert!(
        lbs.counters(&ListenerId::from("nope"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(start_paused = true)]
async fn images_are_described_and_the_rest_is_unsupported() {
    let f = fake();
    let cloud = f.cloud();
    let images = cloud.images();
    let list: Vec<ImageId> = images
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        list,
        vec![ImageId::from(B), ImageId::from(A)],
        "newest first"
    );
    let a = images.describe(&ImageId::from(A)).await.unwrap();
    assert_eq!(a.bake_state(), crate::BakeState::Complete);
    let found = images
        .find_by_digest(a.digest().unwrap())
        .await
        .unwrap()
        .map(|i| i.id);
    assert_eq!(found, Some(ImageId::from(A)));
    let m = images.manifest(&ImageId::from(A)).await.unwrap();
    assert_eq!(m.index.digest, "a".repeat(64));
    assert_eq!(m.index.golden.len(), 1);
    assert!(
        images
            .describe(&ImageId::from("img-x"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        images
            .resolve_base(&BaseSelector::Scratch)
            .await
            .unwrap_err()
            .is_bad_input()
    );
    assert!(
        images
            .deregister(&ImageId::from(A))
            .await
            .unwrap_err()
            .is_bad_input()
    );
    assert!(
        cloud
            .builders()
            .terminate(&InstanceId::from("i-1"))
            .await
            .unwrap_err()
            .is_bad_input()
    );
    assert!(
        cloud
            .janitor()
            .leftovers(Duration::ZERO, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_month_of_fast_checks_is_cheap() {
    let f = fake();
    f.script(
        A,
        ImageScript {
            health: HealthScript::Flap {
                at: Duration::from_secs(3600),
                lasting: Duration::from_secs(60),
            },
            ..ImageScript::default()
        },
    );
    let cloud = f.cloud();
    setup(&cloud, hc(1, 2, 2), 5000, [3, 0, 3]).await;
    let started = std::time::Instant::now();
    advance(30 * 86_400_000).await;
    let h = health(&cloud, "blue").await;
    assert_eq!(h.len(), 3);
    assert!(h.iter().all(|(_, s, _)| *s == TargetHealth::Healthy));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

// ---- the fleet conformance suite, against the fake ---------------------

fn fixture() -> (FakeCloud, FleetFixture) {
    (
        fake(),
        FleetFixture::new(ImageId::from(A), ImageId::from(B)),
    )
}

#[tokio::test(start_paused = true)]
async fn conformance_missing_things() {
    let (f, fx) = fixture();
    fleet::missing_things(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_group_lifecycle() {
    let (f, fx) = fixture();
    fleet::group_lifecycle(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_hold_and_put_in_service() {
    let (f, fx) = fixture();
    fleet::hold_and_put_in_service(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_drain_before_terminate() {
    let (f, fx) = fixture();
    fleet::drain_before_terminate(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_switch() {
    let (f, fx) = fixture();
    fleet::switch(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_weights() {
    let (f, fx) = fixture();
    fleet::weights(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_lease() {
    let (f, _) = fixture();
    fleet::lease(&f.cloud()).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_schedule_desired() {
    let (f, fx) = fixture();
    fleet::schedule_desired(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_janitor_spares_the_fleet() {
    let (f, fx) = fixture();
    fleet::janitor_spares_the_fleet(&f.cloud(), &fx).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_run_all() {
    let (f, fx) = fixture();
    let cloud = f.cloud();
    fleet::run_all(&cloud, &fx).await;
    // Exactly the launches the checks cause (lifecycle 2 + 1 after a
    // scale-in, hold 1 + 1, drain 2 + 1 replacement, switch 1, schedule 1,
    // janitor 2 + 1 standby, cleanup 1): nothing relaunched behind their
    // backs.
    assert_eq!(f.launched().len(), 14, "{:?}", f.launched());
}
