//! roll on aws, end to end: the real `roll` binary against a moto server
//! started by each test (see `support.rs` for the service it makes and
//! what moto cannot show).

mod support;

use std::time::Duration;

use motokit::{Fault, FaultProxy, REGION};
use support::{Fx, StandIn, index_digest, json};

/// A rolling roll replaces every instance with one of v2 through a new,
/// numbered launch-template version carrying the old version's launch
/// data; MaxSize is raised for the surge and restored; the record is
/// cleared and the previous image kept in the group's tags. Hours later
/// (a new process, the roll long finished) `roll back` returns the group
/// to v1 the same way.
#[tokio::test(flavor = "multi_thread")]
async fn moto_rolling_roll_then_back_after_it_finished() {
    let fx = Fx::new(2).await;
    let before = fx.group("web").await.expect("web");
    let v_before = before
        .launch_template()
        .and_then(|l| l.version())
        .map(str::to_owned);
    assert_eq!(v_before.as_deref(), Some("1"));

    let out = fx.roll(&["out", "--group", "web", "--image", fx.v2.as_str(), "--json"]);
    let v = json(&out, 0);
    assert_eq!(v["outcome"], "rolled-out", "{v}");
    assert_eq!(fx.images_of("web").await, vec![fx.v2.to_string(); 2]);
    let g = fx.group("web").await.expect("web");
    let version = g
        .launch_template()
        .and_then(|l| l.version())
        .expect("a version");
    assert_eq!(version, "2", "pinned by number to the version roll made");
    assert_eq!(
        (g.min_size(), g.max_size(), g.desired_capacity()),
        (Some(1), Some(2), Some(2)),
        "limits restored"
    );
    let t = fx.tags_of("web").await;
    assert!(
        !t.keys()
            .any(|k| k.starts_with("kiln:roll-id") || k == "kiln:lease"),
        "{t:?}"
    );
    assert_eq!(
        t.get("kiln:previous-image").map(String::as_str),
        Some(fx.v1.as_str()),
        "{t:?}"
    );
    assert_eq!(
        t.get("kiln:roll-group").map(String::as_str),
        Some("web"),
        "owned from now on: {t:?}"
    );
    // The live target group serves exactly the new instances.
    let mut serving: Vec<String> = fx
        .moto
        .targets(&fx.fleet.tg_a)
        .await
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    serving.sort();
    let mut members = fx.moto.group_instances("web").await;
    members.sort();
    assert_eq!(serving, members);

    let out = fx.roll(&["back", "--group", "web", "--json"]);
    let v = json(&out, 0);
    assert_eq!(v["image"], fx.v1.as_str(), "{v}");
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);
    let g = fx.group("web").await.expect("web");
    let version: u64 = g
        .launch_template()
        .and_then(|l| l.version())
        .expect("a version")
        .parse()
        .expect("numeric");
    assert!(version >= 2, "a numbered version, never $Latest: {version}");
}

/// Blue/green: the twin group `web--b` is made like `web` (same launch
/// template, its own numbered version for v2, attached to the idle target
/// group), one ModifyListener moves the weighted forward to it, and the old
/// group stays as the standby, attached and tagged with its window. `roll
/// back` inside the window is one ModifyListener back, and v2 becomes the
/// standby.
#[tokio::test(flavor = "multi_thread")]
async fn moto_blue_green_then_back_is_one_switch() {
    let fx = Fx::new(2).await;
    let out = fx.roll(&[
        "out",
        "--group",
        "web",
        "--image",
        fx.v2.as_str(),
        "--strategy",
        "blue-green",
        "--json",
    ]);
    let v = json(&out, 0);
    assert_eq!(v["outcome"], "rolled-out", "{v}");
    assert_eq!(
        fx.live().await,
        fx.fleet.tg_b,
        "the listener forwards to the twin's target group"
    );
    let twin = fx.group("web--b").await.expect("the twin group");
    assert_eq!(
        twin.target_group_arns(),
        std::slice::from_ref(&fx.fleet.tg_b)
    );
    assert!(
        twin.launch_template()
            .and_then(|l| l.version())
            .is_some_and(|v| v.parse::<u64>().is_ok())
    );
    assert_eq!(fx.images_of("web--b").await, vec![fx.v2.to_string(); 2]);
    // The old set is the standby: still running v1, still attached.
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);
    let t = fx.tags_of("web").await;
    assert!(t.contains_key("kiln:standby-until"), "{t:?}");
    let tt = fx.tags_of("web--b").await;
    assert_eq!(
        tt.get("kiln:roll-created").map(String::as_str),
        Some("true"),
        "{tt:?}"
    );
    // The standby launches nothing and no policy scales it.
    assert_eq!(fx.suspended("web").await, cloud::aws::STANDBY_SUSPENDED);
    assert!(fx.suspended("web--b").await.is_empty());

    let out = fx.roll(&["back", "--group", "web", "--json"]);
    let v = json(&out, 0);
    assert_eq!(v["image"], fx.v1.as_str(), "{v}");
    assert_eq!(fx.live().await, fx.fleet.tg_a, "switched back");
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);
    assert_eq!(v["outcome"], "switched-back", "{v}");
    assert!(fx.suspended("web").await.is_empty(), "serving again");
    assert_eq!(fx.suspended("web--b").await, cloud::aws::STANDBY_SUSPENDED);
    // Nothing launched for the switch back; v2 is now the standby, for
    // its own window.
    assert_eq!(fx.images_of("web--b").await, vec![fx.v2.to_string(); 2]);
    let t = fx.tags_of("web").await;
    assert_eq!(
        t.get("kiln:standby-image").map(String::as_str),
        Some(fx.v2.as_str()),
        "{t:?}"
    );
}

/// A second roll while the first holds the group's lease fails fast with
/// exit 3, naming the holder; nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn moto_a_second_roll_meets_the_lease() {
    let fx = Fx::new(1).await;
    let holder = cloud::LeaseHolder {
        id: "other-roll".into(),
        host: "ci-runner-7".into(),
        pid: 4242,
        command: "roll out".into(),
        since_ms: cloud::time::now_ms(),
    };
    let lease = fx
        .cloud
        .groups()
        .acquire_lease(&cloud::GroupName::from("web"), &holder)
        .await
        .expect("the first roll's lease");
    let out = fx.roll(&["out", "--group", "web", "--image", fx.v2.as_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("ci-runner-7"), "{err}");
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string()]);
    drop(lease);
}

/// `kill -9` of `roll out` while its first call of `action` is on the wire
/// (everything before it applied, it not), then the same command again:
/// the rerun takes over the dead roll's lease (same host, pid gone),
/// reads where it stood from the group's tags and each instance's actual
/// image, and converges — every instance on v2, limits restored, no record,
/// no lease, no hook, and no more v2 instances launched than a clean roll
/// launches.
async fn killed_at(strategy: &str, action: &str) {
    let fx = Fx::new(2).await;
    let proxy = FaultProxy::start(&fx.moto);
    proxy.on(action, REGION, Fault::Hang);
    let args = [
        "out",
        "--group",
        "web",
        "--image",
        fx.v2.as_str(),
        "--strategy",
        strategy,
    ];
    let mut child = fx
        .roll_via(&proxy.endpoint(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("roll out");
    let hit = proxy.wait_for_hit(action, REGION, Duration::from_secs(60));
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert!(
        hit,
        "{strategy}: roll never called {action}: {:?}",
        proxy.hits()
    );
    proxy.clear();

    let mut again = args.to_vec();
    again.push("--json");
    let out = fx.roll(&again);
    let v = json(&out, 0);
    assert_eq!(
        v["outcome"], "rolled-out",
        "{strategy}, killed at {action}: {v}"
    );
    let what = format!("{strategy}, killed at {action}");
    match strategy {
        "rolling" => {
            fx.assert_settled("web", &fx.v2, 2).await;
            assert_eq!(fx.launched(&fx.v2).await, 2, "{what}: v2 launched twice");
        }
        _ => {
            assert_eq!(fx.live().await, fx.fleet.tg_b, "{what}");
            assert_eq!(
                fx.images_of("web--b").await,
                vec![fx.v2.to_string(); 2],
                "{what}"
            );
            assert_eq!(
                fx.images_of("web").await,
                vec![fx.v1.to_string(); 2],
                "{what}: the standby"
            );
            assert_eq!(fx.launched(&fx.v2).await, 2, "{what}: v2 launched twice");
        }
    }
}

macro_rules! killed_at {
    ($($name:ident: $strategy:literal at $action:literal,)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            killed_at($strategy, $action).await;
        }
    )*};
}

killed_at! {
    moto_kill_9_rolling_at_the_lease: "rolling" at "CreateOrUpdateTags",
    moto_kill_9_rolling_at_the_hook: "rolling" at "PutLifecycleHook",
    moto_kill_9_rolling_at_the_new_version: "rolling" at "CreateLaunchTemplateVersion",
    moto_kill_9_rolling_at_the_group_update: "rolling" at "UpdateAutoScalingGroup",
    moto_kill_9_rolling_at_the_surge: "rolling" at "SetDesiredCapacity",
    moto_kill_9_rolling_at_the_drain: "rolling" at "DeregisterTargets",
    moto_kill_9_rolling_at_the_terminate: "rolling" at "TerminateInstanceInAutoScalingGroup",
    moto_kill_9_rolling_at_the_hook_removal: "rolling" at "DeleteLifecycleHook",
    moto_kill_9_rolling_at_the_record_clear: "rolling" at "DeleteTags",
    moto_kill_9_blue_green_at_the_twin: "blue-green" at "CreateAutoScalingGroup",
    moto_kill_9_blue_green_at_the_switch: "blue-green" at "ModifyListener",
    moto_kill_9_blue_green_at_the_twin_size: "blue-green" at "SetDesiredCapacity",
}

/// With the target group's health check as the gate (the default on aws),
/// a target group that health-checks anything but /ready is refused
/// before anything changes: exit 2, saying why and what to do.
#[tokio::test(flavor = "multi_thread")]
async fn moto_a_health_check_that_is_not_the_gate_is_refused() {
    let fx = Fx::new(1).await;
    fx.moto
        .elb()
        .await
        .modify_target_group()
        .target_group_arn(&fx.fleet.tg_b)
        .health_check_path("/")
        .send()
        .await
        .expect("ModifyTargetGroup");
    let out = fx.roll(&["out", "--group", "web", "--image", fx.v2.as_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&fx.fleet.tg_b)
            && err.contains("/ready")
            && err.contains("--gate-via private-ip"),
        "{err}"
    );
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string()]);
    let t = fx.tags_of("web").await;
    assert!(
        !t.keys().any(|k| k.starts_with("kiln:")),
        "nothing written: {t:?}"
    );
}

/// `--alarm`: a CloudWatch alarm flipped to ALARM (`SetAlarmState`) while
/// the roll out runs fails it; the group goes back to v1 and the report
/// names the alarm. A name that does not exist is refused at start (exit
/// 2), nothing changed. (The surge call is slowed by the fault proxy so
/// the flip lands mid-roll; when an alarm fires relative to each step is
/// tested on the fake, `scenarios.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn moto_an_alarm_in_alarm_rolls_back() {
    let fx = Fx::new(2).await;
    let cw = aws_sdk_cloudwatch::Client::new(
        &fx.moto
            .sdk_config(motokit::TEST_KEY, motokit::TEST_KEY)
            .await,
    );
    cw.put_metric_alarm()
        .alarm_name("web-5xx")
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");

    let out = fx.roll(&[
        "out",
        "--group",
        "web",
        "--image",
        fx.v2.as_str(),
        "--alarm",
        "web-typo",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("web-typo"), "{err}");
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);

    let proxy = FaultProxy::start(&fx.moto);
    proxy.on(
        "SetDesiredCapacity",
        REGION,
        Fault::Delay(Duration::from_secs(2)),
    );
    let report = fx.dir.path().join("report.json");
    let child = fx
        .roll_via(
            &proxy.endpoint(),
            &[
                "out",
                "--group",
                "web",
                "--image",
                fx.v2.as_str(),
                "--alarm",
                "web-5xx",
                "--json",
                "--report",
                report.to_str().expect("utf-8"),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roll out");
    assert!(
        proxy.wait_for_hit("SetDesiredCapacity", REGION, Duration::from_secs(60)),
        "{:?}",
        proxy.hits()
    );
    cw.set_alarm_state()
        .alarm_name("web-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("5xx above 10 per minute")
        .send()
        .await
        .expect("SetAlarmState");
    proxy.clear();
    let out = child.wait_with_output().expect("roll out ends");
    let v = json(&out, 1);
    assert_eq!(v["outcome"], "rolled-back", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("alarm web-5xx is in ALARM")),
        "{v}"
    );
    fx.assert_settled("web", &fx.v1, 2).await;
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
    assert!(
        r["reason"].as_str().is_some_and(|s| s.contains("web-5xx")),
        "{r}"
    );
}

/// An instance killed through EC2 (TerminateInstances, as a crash or a
/// spot reclaim would) while the roll runs: the roll still ends with
/// every instance on v2 and the limits restored. (moto keeps a terminated
/// instance in its group until Auto Scaling's own health check would
/// replace it, which moto does not run: kiln reads EC2's state, not the
/// group's, so it sees the instance gone.)
#[tokio::test(flavor = "multi_thread")]
async fn moto_an_instance_killed_through_ec2_mid_roll() {
    let fx = Fx::new(2).await;
    let victim = fx.moto.group_instances("web").await.remove(0);
    let proxy = FaultProxy::start(&fx.moto);
    proxy.on(
        "SetDesiredCapacity",
        REGION,
        Fault::Delay(Duration::from_secs(2)),
    );
    let child = fx
        .roll_via(
            &proxy.endpoint(),
            &["out", "--group", "web", "--image", fx.v2.as_str(), "--json"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roll out");
    assert!(
        proxy.wait_for_hit("SetDesiredCapacity", REGION, Duration::from_secs(60)),
        "{:?}",
        proxy.hits()
    );
    fx.moto
        .ec2(motokit::TEST_KEY, motokit::TEST_KEY)
        .await
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .expect("TerminateInstances");
    proxy.clear();
    let out = child.wait_with_output().expect("roll out ends");
    let v = json(&out, 0);
    assert_eq!(v["outcome"], "rolled-out", "{v}");
    fx.assert_settled("web", &fx.v2, 2).await;
}

/// Blue/green through a test listener: the new set passes the gate
/// through it (`/ready`, `/version` image and index digest, the golden
/// queries, repeated) before the switch. moto runs no instances, so a
/// stand-in server answers for the set at `--test-address` (where a real
/// roll would reach an internal ALB through a tunnel): answering as v2 the
/// roll switches; answering as v1 (the wrong image behind the test
/// listener) it never switches and rolls back, naming the check.
#[tokio::test(flavor = "multi_thread")]
async fn moto_blue_green_gated_through_a_test_listener() {
    for (answer_as, n, code) in [("v2", 2, 0), ("v1", 1, 1)] {
        let fx = Fx::new(2).await;
        let test = fx.test_listener().await;
        let image = if n == 2 { &fx.v2 } else { &fx.v1 };
        let stand_in = StandIn::start(image.as_str(), &index_digest(n));
        let report = fx.dir.path().join("report.json");
        let out = fx.roll(&[
            "out",
            "--group",
            "web",
            "--image",
            fx.v2.as_str(),
            "--strategy",
            "blue-green",
            "--test-listener",
            &test,
            "--test-address",
            &stand_in.address,
            "--report",
            report.to_str().expect("utf-8"),
            "--json",
        ]);
        let v = json(&out, code);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
        let through: Vec<&serde_json::Value> = r["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .filter(|g| {
                g["instance"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("test-listener"))
            })
            .collect();
        assert!(!through.is_empty(), "answering as {answer_as}: {r}");
        if code == 0 {
            assert_eq!(v["outcome"], "rolled-out", "{v}");
            assert_eq!(fx.live().await, fx.fleet.tg_b);
        } else {
            assert_eq!(v["outcome"], "rolled-back", "{v}");
            assert_eq!(fx.live().await, fx.fleet.tg_a, "never switched");
            let reason = v["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("test listener") && reason.contains("/version image"),
                "{reason}"
            );
            fx.assert_settled("web", &fx.v1, 2).await;
        }
    }
}

/// Throttling, a 5xx and applied calls whose answers were lost, with the
/// SDK's standard retries on (as in production): Auto Scaling throttles
/// the surge once, and UpdateAutoScalingGroup and the blue/green switch
/// (ModifyListener) reach moto but their answers are replaced by a 500; the
/// retries apply nothing twice. Then a lost answer of
/// CreateLaunchTemplateVersion with retries off: roll stops (exit 3) and
/// the rerun reads the version back instead of making another one. (moto
/// ignores that call's ClientToken, which makes the SDK's own retry of it
/// idempotent on EC2; a lost answer of TerminateInstanceInAutoScalingGroup
/// is tested on the fake, `every_call_failing_then_rerun`: moto answers the
/// retry for an instance already gone with a 500 instead of Auto Scaling's
/// ValidationError.)
#[tokio::test(flavor = "multi_thread")]
async fn moto_throttling_and_lost_answers_are_retried_idempotently() {
    use motokit::Reply;
    let lost = || Fault::LoseAnswerOnce(Reply::query_error(500, "InternalFailure", "lost"));
    for strategy in ["rolling", "blue-green"] {
        let fx = Fx::new(2).await;
        let proxy = FaultProxy::start(&fx.moto);
        proxy.on(
            "SetDesiredCapacity",
            REGION,
            Fault::FailOnce(Reply::query_error(400, "Throttling", "Rate exceeded")),
        );
        proxy.on("UpdateAutoScalingGroup", REGION, lost());
        proxy.on("ModifyListener", REGION, lost());
        let args = [
            "out",
            "--group",
            "web",
            "--image",
            fx.v2.as_str(),
            "--strategy",
            strategy,
            "--json",
        ];
        let out = fx
            .roll_via(&proxy.endpoint(), &args)
            .env("AWS_MAX_ATTEMPTS", "3")
            .output()
            .expect("roll out");
        let v = json(&out, 0);
        assert_eq!(v["outcome"], "rolled-out", "{strategy}: {v}");
        let hits = proxy.hits();
        let calls: &[&str] = match strategy {
            "rolling" => &["SetDesiredCapacity", "UpdateAutoScalingGroup"],
            _ => &["SetDesiredCapacity", "ModifyListener"],
        };
        for call in calls {
            assert!(
                hits.iter().any(|h| h.starts_with(call)),
                "{strategy}: {call} {hits:?}"
            );
        }
        assert_eq!(
            fx.launched(&fx.v2).await,
            2,
            "{strategy}: v2 launched twice"
        );
        assert_eq!(
            fx.template_versions().await,
            2,
            "{strategy}: one new version"
        );
        match strategy {
            "rolling" => fx.assert_settled("web", &fx.v2, 2).await,
            _ => {
                assert_eq!(fx.live().await, fx.fleet.tg_b, "{strategy}");
                assert_eq!(fx.images_of("web--b").await, vec![fx.v2.to_string(); 2]);
            }
        }
    }

    let fx = Fx::new(2).await;
    let proxy = FaultProxy::start(&fx.moto);
    proxy.on("CreateLaunchTemplateVersion", REGION, lost());
    let args = ["out", "--group", "web", "--image", fx.v2.as_str(), "--json"];
    let out = fx
        .roll_via(&proxy.endpoint(), &args)
        .output()
        .expect("roll out");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fx.template_versions().await, 2, "the lost one was made");
    let v = json(&fx.roll(&args), 0);
    assert_eq!(v["outcome"], "rolled-out", "{v}");
    assert_eq!(fx.template_versions().await, 2, "read back, not made again");
    fx.assert_settled("web", &fx.v2, 2).await;
}

/// `--canary 10%,50%` on an ALB (moto): each step is a ModifyListener
/// with a weighted forward (old set first, new set at the step's weight,
/// stickiness kept), recorded in the group's tags before it is asked and
/// held for the bake time; then the full switch leaves the twin at 100.
/// moto routes no traffic, so the split itself is checked on the local
/// balancer (`tests/fleet`), not here.
#[tokio::test(flavor = "multi_thread")]
async fn moto_blue_green_canary_steps_are_weighted_forwards() {
    let fx = Fx::new(2).await;
    let mut child = fx
        .roll_cmd(&[
            "out",
            "--group",
            "web",
            "--image",
            fx.v2.as_str(),
            "--strategy",
            "blue-green",
            "--canary",
            "10%,50%",
            "--bake-time",
            "3s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roll out");
    let (a, b) = (fx.fleet.tg_a.clone(), fx.fleet.tg_b.clone());
    let mut seen: Vec<Vec<(String, i32)>> = Vec::new();
    let mut recorded: Vec<String> = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(
            std::time::Instant::now() < end,
            "roll out --canary took over 180 s"
        );
        let w = fx.weights().await;
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        if let Some(c) = fx.tags_of("web").await.get("kiln:roll-canary")
            && recorded.last() != Some(c)
        {
            recorded.push(c.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().expect("roll out");
    let v = json(&out, 0);
    assert_eq!(v["outcome"], "rolled-out", "{v}");
    // The listener went 100/0 -> 90/10 -> 50/50 -> 0/100, in that order.
    let split = |wa: i32, wb: i32| vec![(a.clone(), wa), (b.clone(), wb)];
    let steps: Vec<&Vec<(String, i32)>> = seen
        .iter()
        .filter(|w| **w == split(90, 10) || **w == split(50, 50))
        .collect();
    assert_eq!(steps, [&split(90, 10), &split(50, 50)], "{seen:?}");
    assert_eq!(recorded, ["10", "50"], "recorded before asked");
    assert_eq!(
        fx.weights().await,
        split(0, 1),
        "the switch after the steps"
    );
    assert_eq!(fx.live().await, b);
    let t = fx.tags_of("web").await;
    assert!(
        !t.keys().any(|k| k.starts_with("kiln:roll-canary")),
        "cleared with the roll: {t:?}"
    );
    assert_eq!(fx.images_of("web--b").await, vec![fx.v2.to_string(); 2]);
}
