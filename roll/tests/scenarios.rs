//! The real executor and planner against the scripted fake cloud with
//! paused time: every wait is on tokio's clock, so a roll of minutes takes
//! milliseconds. Each scenario checks the end state, the outcome and the
//! invariants over the whole run (`support`'s watch samples the fleet at
//! every step and while the executor waits): never more than size + surge
//! instances, never fewer than min-healthy serving, no traffic before a
//! passed gate, no terminate before the drain, no instance launched twice,
//! nothing left mirroring.
//!
//! Besides the single scenarios, `break_in_every_place!` takes each kind
//! of roll (rolling, with bake time, busy drains and warmup, without
//! surge, all at once, blue/green; and ones whose v2 fails in each way)
//! and stops it at every step (`kill -9` before the step's call, Ctrl-C
//! after it), fails every call it makes once (before and after the call
//! did its work), drops it while it waits, and runs `roll back` after a
//! `kill -9` at every step: rerunning ends where the clean run does.

#[path = "scenarios/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cloud::ShadowReport;
use cloud::fake::{GateScript, HealthScript, ImageScript};
use cloud::{CloudError, GroupName, Groups, InstanceId, LeaseHolder, Lifecycle};
use roll::error::RollError;
use roll::plan::{Action, Intent, Outcome, Surge};
use roll::record::{Phase, Strategy};
use support::{
    DEREGISTRATION_DELAY_MS, Fleet, Hook, Run, SIZE, Then, V1, V2, V3, img, now, out, sample, tg,
    twin, web,
};

const N: usize = SIZE as usize;

fn slow(ready_after_ms: u64) -> ImageScript {
    ImageScript {
        ready_after: Duration::from_millis(ready_after_ms),
        ..ImageScript::default()
    }
}

/// Healthy, then failing its health checks from 3 s to 5 s after
/// registration.
fn flapping() -> ImageScript {
    ImageScript {
        health: HealthScript::Flap {
            at: Duration::from_secs(3),
            lasting: Duration::from_secs(2),
        },
        ..ImageScript::default()
    }
}

/// The `n`-th instance of `image` launched, if any.
fn launched(f: &Fleet, image: &str, n: usize) -> Option<InstanceId> {
    f.fake
        .launched()
        .into_iter()
        .filter(|(_, i)| i.as_str() == image)
        .nth(n)
        .map(|(id, _)| id)
}

/// A roll that rolled out, every new instance gated before it took
/// traffic.
fn assert_rolled_out(run: &Run) {
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    run.assert_gated_before_traffic();
}

// ---- the baseline ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_rolling_roll_replaces_every_instance_within_its_bounds() {
    let f = Fleet::up().await;
    let run = f.run(f.goal(out(V2, Strategy::Rolling)).await, None).await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.launches(V2), N);
    assert_eq!(f.record().previous, Some(img(V1)));
    // Rerunning the command is a no-op.
    let again = f.run(f.goal(out(V2, Strategy::Rolling)).await, None).await;
    assert_eq!(again.outcome(), Outcome::NothingToDo);
    assert_eq!(f.launches(V2), N);
}

// ---- slow-to-ready instances -----------------------------------------------

const GATE_TIMEOUT_MS: u64 = 10_000;

#[tokio::test(start_paused = true)]
async fn instances_ready_within_the_gate_timeout_roll_out() {
    let f = Fleet::up().await;
    f.script(V2, slow(GATE_TIMEOUT_MS * 9 / 10));
    let goal = roll::plan::Goal {
        gate_timeout_ms: GATE_TIMEOUT_MS,
        ..f.goal(out(V2, Strategy::Rolling)).await
    };
    let run = f.run(goal, None).await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.launches(V2), N);
    // Each one waited (one at a time: surge 1).
    assert!(
        run.report.duration_ms >= 3 * GATE_TIMEOUT_MS * 9 / 10,
        "{}",
        run.report.duration_ms
    );
}

#[tokio::test(start_paused = true)]
async fn instances_ready_after_the_gate_timeout_roll_back() {
    let f = Fleet::up().await;
    f.script(V2, slow(GATE_TIMEOUT_MS * 11 / 10));
    let goal = roll::plan::Goal {
        gate_timeout_ms: GATE_TIMEOUT_MS,
        ..f.goal(out(V2, Strategy::Rolling)).await
    };
    let run = f.run(goal, None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_gated_before_traffic();
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V1, N).await;
    let first = launched(&f, V2, 0).expect("a v2 launch");
    let reason = run.report.reason.clone().expect("a reason");
    assert!(
        reason.contains(first.as_str()) && reason.contains(&format!("within {GATE_TIMEOUT_MS} ms")),
        "{reason}"
    );
    assert_eq!(f.launches(V2), 1, "one slow instance is enough to know");
    assert_eq!(f.launches(V1), N, "the old instances never left");
}

// ---- health flapping during bake time --------------------------------------

#[tokio::test(start_paused = true)]
async fn flapping_during_a_rolling_bake_rolls_back_before_a_new_instance_serves() {
    let f = Fleet::up().await;
    f.script(V2, flapping());
    let goal = roll::plan::Goal {
        bake_ms: 10_000,
        ..f.goal(out(V2, Strategy::Rolling)).await
    };
    let run = f.run(goal, None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_gated_before_traffic();
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V1, N).await;
    let reason = run.report.reason.clone().expect("a reason");
    assert!(
        reason.contains("health checks") && reason.contains("bake time"),
        "{reason}"
    );
    // The canary answered mirrored traffic only: no v2 instance was ever
    // in the live target group, none was put in service.
    for s in &run.log().samples {
        assert!(
            s.listed_of(&tg(&web()), &img(V2)).is_empty(),
            "v2 in web at {}: {:?}",
            s.at_ms,
            s.step
        );
    }
    assert!(
        !run.actions().any(|a| matches!(a, Action::Register { .. })),
        "{}",
        run.story()
    );
    assert!(run.actions().any(|a| matches!(a, Action::Canary { .. })));
    assert_eq!(f.fake.calls().get("put_in_service"), None);
    assert_eq!(f.launches(V2), 1);
}

#[tokio::test(start_paused = true)]
async fn flapping_during_a_blue_green_bake_rolls_back_without_switching() {
    let f = Fleet::up().await;
    f.script(V2, flapping());
    let goal = roll::plan::Goal {
        bake_ms: 10_000,
        ..f.goal(out(V2, Strategy::BlueGreen)).await
    };
    let run = f.run(goal, None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_gated_before_traffic();
    run.assert_bounds(&web(), N, N);
    run.assert_bounds(&twin(), N, N);
    let reason = run.report.reason.clone().expect("a reason");
    assert!(reason.contains("health checks"), "{reason}");
    for s in &run.log().samples {
        assert_eq!(
            s.forward,
            tg(&web()),
            "switched at {} ({:?})",
            s.at_ms,
            s.step
        );
    }
    assert!(!run.actions().any(|a| matches!(a, Action::Switch { .. })));
    assert!(run.actions().any(|a| matches!(a, Action::StartBake { .. })));
    f.assert_settled(&web(), V1, N).await;
    f.assert_empty(&twin());
    assert_eq!(f.launches(V2), N);
}

// ---- an instance dying mid-roll --------------------------------------------

/// Kills `victim(fleet)` right before the `nth` new instance goes in
/// service.
fn kill_at_in_service(nth: usize, victim: fn(&support::Sample) -> InstanceId) -> Hook {
    let mut seen = 0;
    Box::new(move |_, text, fake| {
        if text.ends_with(": in service") {
            seen += 1;
            if seen == nth {
                let s = sample(fake, None);
                let id = victim(&s);
                assert!(fake.kill(&id), "{id} to kill");
            }
        }
        Then::Go
    })
}

fn oldest_serving(s: &support::Sample, image: &str) -> InstanceId {
    s.group(&web())
        .expect("web")
        .instances
        .iter()
        .filter(|i| i.image.as_str() == image && i.lifecycle == Lifecycle::InService)
        .min_by_key(|i| i.launched_ms)
        .map(|i| i.id.clone())
        .expect("an instance in service")
}

#[tokio::test(start_paused = true)]
async fn an_old_instance_dying_mid_roll_is_replaced_and_the_roll_converges() {
    let f = Fleet::up().await;
    let hook = kill_at_in_service(1, |s| oldest_serving(s, V1));
    let run = f
        .run(f.goal(out(V2, Strategy::Rolling)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    // The death itself takes one out of service.
    run.assert_bounds(&web(), N + 1, N - 1);
    f.assert_settled(&web(), V2, N).await;
    assert!(f.launches(V2) <= N, "{} v2 launches", f.launches(V2));
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_dying_mid_roll_is_replaced_and_the_roll_converges() {
    let f = Fleet::up().await;
    let hook = kill_at_in_service(2, |s| oldest_serving(s, V2));
    let run = f
        .run(f.goal(out(V2, Strategy::Rolling)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N + 1, N - 1);
    f.assert_settled(&web(), V2, N).await;
    assert!(f.launches(V2) <= N + 1, "{} v2 launches", f.launches(V2));
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_dying_before_its_gate_is_replaced_and_the_roll_converges() {
    let f = Fleet::up().await;
    f.script(V2, slow(2_000));
    let mut killed = false;
    let hook: Hook = Box::new(move |_, text, fake| {
        if let Some(id) = text
            .strip_prefix("waiting for ")
            .and_then(|t| t.strip_suffix(" to pass its gate"))
            && !killed
        {
            killed = true;
            assert!(fake.kill(&InstanceId::from(id)), "{id} to kill");
        }
        Then::Go
    });
    let run = f
        .run(f.goal(out(V2, Strategy::Rolling)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.launches(V2), N + 1, "the one killed, replaced once");
}

// ---- someone else resizing the group (drift) -------------------------------

fn adopted(run: &Run, size: u32) -> bool {
    run.actions()
        .any(|a| matches!(a, Action::Adopt { size: s, .. } if *s == size))
}

#[tokio::test(start_paused = true)]
async fn a_resize_before_the_first_launch_is_adopted() {
    let f = Fleet::up().await;
    // Someone scales to 4 while the roll points the template at v2.
    let hook: Hook = Box::new(|_, text, fake| {
        if text.contains("new instances launch from") {
            now(fake.set_desired(&web(), 4)).expect("set_desired");
        }
        Then::Go
    });
    let run = f
        .run(f.goal(out(V2, Strategy::Rolling)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    assert!(adopted(&run, 4), "{}", run.story());
    run.assert_bounds(&web(), 4 + 1, N);
    f.assert_settled(&web(), V2, 4).await;
    assert!(f.launches(V2) <= 4, "{} v2 launches", f.launches(V2));
}

#[tokio::test(start_paused = true)]
async fn a_resize_mid_roll_is_adopted() {
    let f = Fleet::up().await;
    // While the roll surges to 4, someone asks for one more (raising the
    // max the roll set, as `roll scale` or a person would).
    let mut done = false;
    let hook: Hook = Box::new(move |_, text, fake| {
        if !done && text.ends_with(": in service") {
            done = true;
            let g = now(fake.describe_group(&web())).unwrap();
            assert_eq!(g.desired, 4, "surging");
            now(fake.set_limits(&web(), 0, 5)).unwrap();
            now(fake.set_desired(&web(), 5)).unwrap();
        }
        Then::Go
    });
    let run = f
        .run(f.goal(out(V2, Strategy::Rolling)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    assert!(adopted(&run, 4), "{}", run.story());
    run.assert_bounds(&web(), 4 + 1, N);
    let g = now(f.fake.describe_group(&web())).unwrap();
    assert_eq!(g.desired, 4, "{}", run.story());
    let s = sample(&f.fake, None);
    assert_eq!(s.serving().len(), 4);
    assert!(g.instances.iter().all(|i| i.image.as_str() == V2));
    assert!(f.launches(V2) <= 4, "{} v2 launches", f.launches(V2));
}

// ---- failed calls, kill -9 and Ctrl-C, at every point ----------------------

/// A roll out of v2 to break in every place: the flags, how v2 behaves,
/// and how the roll ends when nothing breaks.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    strategy: Strategy,
    bake_ms: u64,
    warmup_ms: u64,
    gate_timeout_ms: u64,
    surge: Surge,
    min_healthy: u32,
    v2: ImageScript,
    /// What the mirrored traffic shows during bake time.
    shadow: ShadowReport,
    /// The old instances always have requests in flight: every drain
    /// takes the whole deregistration delay.
    busy: bool,
    end: Outcome,
    /// Instances of v2 the roll launches when nothing breaks.
    v2_launches: usize,
    /// Blue/green `--canary` steps.
    canary: Vec<u32>,
}

fn failed_gate() -> ImageScript {
    ImageScript {
        gate: GateScript::Fail {
            check: "golden /books?query=alan&ids=20&offset=0".into(),
            expected: r#"{"total":2}"#.into(),
            actual: r#"{"total":0}"#.into(),
        },
        ..ImageScript::default()
    }
}

fn rolling() -> Case {
    Case {
        name: "rolling",
        strategy: Strategy::Rolling,
        bake_ms: 0,
        warmup_ms: 0,
        gate_timeout_ms: 60_000,
        surge: Surge::Count(1),
        min_healthy: 100,
        v2: ImageScript::default(),
        shadow: ShadowReport::default(),
        busy: false,
        end: Outcome::RolledOut,
        v2_launches: N,
        canary: Vec::new(),
    }
}

fn rolling_bake() -> Case {
    Case {
        name: "rolling with bake time",
        bake_ms: 1_000,
        ..rolling()
    }
}

fn rolling_busy() -> Case {
    Case {
        name: "rolling, busy old instances, warmup",
        busy: true,
        warmup_ms: 500,
        v2: slow(700),
        ..rolling()
    }
}

fn rolling_no_surge() -> Case {
    Case {
        name: "rolling without surge, min-healthy 66%",
        surge: Surge::Count(0),
        min_healthy: 66,
        ..rolling()
    }
}

fn rolling_all_at_once() -> Case {
    Case {
        name: "rolling, surge 100%",
        surge: Surge::Percent(100),
        ..rolling()
    }
}

fn blue_green() -> Case {
    Case {
        name: "blue/green",
        strategy: Strategy::BlueGreen,
        ..rolling()
    }
}

fn blue_green_bake() -> Case {
    Case {
        name: "blue/green with bake time, busy old instances",
        bake_ms: 1_000,
        busy: true,
        ..blue_green()
    }
}

fn rolling_bad_gate() -> Case {
    Case {
        name: "rolling, v2 fails its gate",
        v2: failed_gate(),
        end: Outcome::RolledBack,
        v2_launches: 1,
        ..rolling()
    }
}

fn rolling_too_slow() -> Case {
    Case {
        name: "rolling, v2 ready after the gate timeout",
        gate_timeout_ms: 2_000,
        v2: slow(2_200),
        end: Outcome::RolledBack,
        v2_launches: 1,
        ..rolling()
    }
}

fn rolling_unhealthy() -> Case {
    Case {
        name: "rolling, v2 fails the balancer's health checks",
        v2: ImageScript {
            health: HealthScript::UnhealthyAfter(Duration::ZERO),
            ..ImageScript::default()
        },
        end: Outcome::RolledBack,
        v2_launches: 1,
        ..rolling()
    }
}

fn rolling_flapping_bake() -> Case {
    Case {
        name: "rolling, v2 flaps during bake time",
        bake_ms: 10_000,
        v2: flapping(),
        end: Outcome::RolledBack,
        v2_launches: 1,
        ..rolling()
    }
}

fn rolling_shadow_errors() -> Case {
    Case {
        name: "rolling, v2 answers mirrored traffic with errors",
        bake_ms: 2_000,
        shadow: ShadowReport {
            mirrored: 40,
            compared: 40,
            errors: 3,
            ..ShadowReport::default()
        },
        end: Outcome::RolledBack,
        v2_launches: 1,
        ..rolling()
    }
}

fn blue_green_flapping_bake() -> Case {
    Case {
        name: "blue/green, v2 flaps during bake time",
        bake_ms: 10_000,
        v2: flapping(),
        end: Outcome::RolledBack,
        v2_launches: N,
        ..blue_green()
    }
}

fn blue_green_canary() -> Case {
    Case {
        name: "blue/green with canary steps 10%, 50%",
        bake_ms: 1_000,
        canary: vec![10, 50],
        ..blue_green()
    }
}

fn blue_green_bad_gate() -> Case {
    Case {
        name: "blue/green, v2 fails its gate",
        v2: failed_gate(),
        end: Outcome::RolledBack,
        v2_launches: N,
        ..blue_green()
    }
}

impl Case {
    async fn fleet(&self) -> (Fleet, roll::plan::Goal) {
        let f = Fleet::up().await;
        f.script(V2, self.v2.clone());
        f.fake.script_shadow(self.shadow.clone());
        if self.busy {
            for (id, _) in f.fake.launched() {
                f.fake
                    .set_in_flight(&id, 2, Duration::from_secs(24 * 3_600));
            }
        }
        let goal = roll::plan::Goal {
            bake_ms: self.bake_ms,
            warmup_ms: self.warmup_ms,
            gate_timeout_ms: self.gate_timeout_ms,
            max_surge: self.surge,
            min_healthy_pct: self.min_healthy,
            canary: self.canary.clone(),
            ..f.goal(out(V2, self.strategy)).await
        };
        (f, goal)
    }

    fn surge(&self) -> usize {
        match self.surge {
            Surge::Count(n) => n as usize,
            Surge::Percent(p) => (N * p as usize).div_ceil(100).max(1),
        }
    }

    fn min_serving(&self) -> usize {
        (N * self.min_healthy as usize).div_ceil(100)
    }

    /// Where v2 comes up.
    fn group(&self) -> GroupName {
        match self.strategy {
            Strategy::Rolling | Strategy::InstanceRefresh => web(),
            Strategy::BlueGreen => twin(),
        }
    }

    fn assert_run(&self, run: &Run) {
        run.assert_gated_before_traffic();
        match self.strategy {
            Strategy::Rolling | Strategy::InstanceRefresh => {
                run.assert_bounds(&web(), N + self.surge(), self.min_serving())
            }
            Strategy::BlueGreen => {
                run.assert_bounds(&web(), N, N);
                run.assert_bounds(&twin(), N, N);
            }
        }
    }

    /// Whether the roll is over (its record cleared after it did
    /// something): a rerun of the command is then a new roll.
    fn over(&self, f: &Fleet) -> bool {
        let record = f.record();
        record.roll.is_none()
            && match self.end {
                Outcome::RolledOut => record.previous == Some(img(V1)),
                _ => f.launches(V2) > 0,
            }
    }

    async fn assert_end(&self, f: &Fleet, what: &str) {
        assert_eq!(
            f.weight(&f.forward()),
            100,
            "{what}: every new request on one set"
        );
        match self.end {
            Outcome::RolledOut => {
                f.assert_settled(&self.group(), V2, N).await;
                assert_eq!(f.forward(), tg(&self.group()), "{what}");
            }
            _ => {
                f.assert_settled(&web(), V1, N).await;
                assert_eq!(f.forward(), tg(&web()), "{what}");
                if self.strategy == Strategy::BlueGreen {
                    f.assert_empty(&twin());
                }
            }
        }
        assert_eq!(
            f.launches(V2),
            self.v2_launches,
            "{what}: v2 launched more than once per instance"
        );
    }

    /// After a first run that stopped early: the same command again (a
    /// new roll id) ends as the case does, or does nothing if the first
    /// one ended after all.
    async fn rerun(&self, f: &Fleet, goal: roll::plan::Goal, first: &Run, what: &str) {
        self.assert_run(first);
        let over = self.over(f);
        if over && self.end != Outcome::RolledOut {
            // Rolled back: rerunning would try v2 again.
            self.assert_end(f, what).await;
            return;
        }
        let second = f
            .run(
                roll::plan::Goal {
                    roll_id: format!("{}-rerun", goal.roll_id),
                    ..goal
                },
                None,
            )
            .await;
        let want = if over { Outcome::NothingToDo } else { self.end };
        assert_eq!(
            second.outcome(),
            want,
            "{what}: first run:\n{}\nrerun:\n{}",
            first.story(),
            second.story()
        );
        self.assert_run(&second);
        self.assert_end(f, what).await;
    }

    /// Calls by operation of a run where nothing breaks.
    async fn clean_calls(&self) -> BTreeMap<String, u64> {
        let (f, goal) = self.fleet().await;
        let before = f.fake.calls();
        let run = f.run_opts(goal, None, false, None).await;
        assert_eq!(run.outcome(), self.end, "{}: {}", self.name, run.story());
        self.assert_end(&f, self.name).await;
        let mut calls = f.fake.calls();
        for (op, n) in before {
            *calls.entry(op).or_default() -= n;
        }
        calls
    }
}

/// Every call that changes something, and the reads of what a gate needs.
const FAULTY: &[&str] = &[
    "create_group",
    "set_image",
    "set_desired",
    "set_limits",
    "terminate_instance",
    "tag_group",
    "hold_launches",
    "put_in_service",
    "schedule_desired",
    "register",
    "deregister",
    "switch",
    "set_weights",
    "start_shadow",
    "stop_shadow",
    "gate",
    "manifest",
];

/// Fails every call of every operation in [`FAULTY`] the roll makes,
/// once before it does anything and once after it did its work: the run
/// exits 3 with the cloud's error, and rerunning the command converges
/// without launching anything twice.
async fn every_failed_call(case: Case) {
    let calls = case.clean_calls().await;
    let mut tried = 0;
    for (op, count) in calls.iter().filter(|(op, _)| FAULTY.contains(&op.as_str())) {
        for nth in 1..=*count {
            for applied in [false, true] {
                let what = format!("{}: {op} #{nth} (applied: {applied})", case.name);
                let (f, goal) = case.fleet().await;
                if applied {
                    f.fake.fail_nth_applied(op, nth);
                } else {
                    f.fake.fail_nth(op, nth);
                }
                let first = f.run(goal.clone(), None).await;
                match &first.result {
                    Some(Err(e @ RollError::Cloud(CloudError::Api { op: failed, .. }))) => {
                        assert_eq!(failed, op, "{what}");
                        assert_eq!(e.exit_code(), 3, "{what}");
                    }
                    // A failed stop_shadow while rolling back loses only
                    // evidence (the finish stops the mirror).
                    Some(Ok(o)) if op == "stop_shadow" && *o == case.end => {
                        case.assert_run(&first);
                        case.assert_end(&f, &what).await;
                        continue;
                    }
                    other => panic!(
                        "{what}: {:?}\n{}",
                        other.as_ref().map(|r| r.as_ref().err()),
                        first.story()
                    ),
                }
                case.rerun(&f, goal, &first, &what).await;
                tried += 1;
            }
        }
    }
    assert!(tried >= 10, "{}: only {tried} faults", case.name);
}

#[tokio::test(start_paused = true)]
async fn failed_reads_exit_3_and_rerunning_converges() {
    // The watch reads through these too: not sampled, so the faults
    // are the executor's.
    for (op, nth) in [
        ("describe_group", 3),
        ("targets", 7),
        ("listener", 5),
        ("target_group", 2),
        ("counters", 1),
        ("shadow", 1),
    ] {
        let case = if op == "shadow" {
            rolling_bake()
        } else {
            rolling()
        };
        let (f, goal) = case.fleet().await;
        f.fake.fail_nth(op, nth);
        let what = format!("{op} #{nth}");
        let first = f.run_opts(goal.clone(), None, false, None).await;
        match &first.result {
            Some(Err(e @ RollError::Cloud(CloudError::Api { op: failed, .. }))) => {
                assert_eq!(failed, op, "{what}");
                assert_eq!(e.exit_code(), 3, "{what}");
            }
            other => panic!("{what}: {:?}", other.as_ref().map(|r| r.as_ref().err())),
        }
        case.rerun(&f, goal, &first, &what).await;
    }
}

/// Stops the first run at step `k` (`Crash`: before the step's call;
/// `Interrupt`: after it), reruns, and checks the end. Returns whether
/// step `k` was reached.
async fn stop_at(case: &Case, k: usize, how: Then) -> bool {
    let (f, goal) = case.fleet().await;
    let hook: Hook = Box::new(move |n, _, _| if n == k { how } else { Then::Go });
    let first = f.run(goal.clone(), Some(hook)).await;
    let what = format!("{}: step {k} ({how:?})", case.name);
    if first.log().steps.len() < k {
        // Past the last step: the roll ran to its end.
        assert_eq!(first.outcome(), case.end, "{what}");
        return false;
    }
    match (&first.result, how) {
        (None, Then::Crash) => {}
        (Some(Err(RollError::Interrupted)), Then::Interrupt) => {}
        // Interrupted in its last step: the roll ended anyway.
        (Some(Ok(o)), Then::Interrupt) if *o == case.end => {}
        (r, _) => panic!(
            "{what}: {:?}\n{}",
            r.as_ref().map(|r| r.as_ref().err()),
            first.story()
        ),
    }
    case.rerun(&f, goal, &first, &what).await;
    true
}

async fn stop_at_every_step(case: Case, how: Then) {
    let mut k = 1;
    while stop_at(&case, k, how).await {
        k += 1;
    }
    assert!(k > 4, "{}: only {k} steps", case.name);
}

/// `kill -9` of the roll at step `k`, then `roll back`: an interrupted
/// roll is undone (`Reverted`) without launching v2 again, and the
/// service ends where it began. Returns whether step `k` was reached.
async fn revert_at(case: &Case, k: usize) -> bool {
    let (f, goal) = case.fleet().await;
    let hook: Hook = Box::new(move |n, _, _| if n == k { Then::Crash } else { Then::Go });
    let first = f.run(goal.clone(), Some(hook)).await;
    let what = format!("{}: roll back after kill -9 at step {k}", case.name);
    if first.result.is_some() {
        return false;
    }
    case.assert_run(&first);
    let Some(roll) = f.record().roll else {
        // Before the record, or after it was cleared: nothing to undo.
        return true;
    };
    // A roll already going back goes on doing so.
    let want = match roll.phase {
        Phase::Rolling => Outcome::Reverted,
        _ => Outcome::RolledBack,
    };
    let v2 = f.launches(V2);
    // `roll back` with the same flags.
    let back = roll::plan::Goal {
        intent: Intent::Back { to: None },
        roll_id: format!("{}-back", goal.roll_id),
        ..goal
    };
    let back = f.run(back, None).await;
    assert_eq!(
        back.result.as_ref().map(|r| r.as_ref().ok()),
        Some(Some(&want)),
        "{what}: first run:\n{}\nroll back:\n{}",
        first.story(),
        back.story()
    );
    back.assert_gated_before_traffic();
    back.assert_bounds(&web(), N + case.surge(), case.min_serving());
    assert_eq!(f.launches(V2), v2, "{what}: roll back launched v2");
    f.assert_settled(&web(), V1, N).await;
    assert_eq!(f.forward(), tg(&web()), "{what}: {}", back.story());
    assert_eq!(f.weight(&tg(&web())), 100, "{what}: {}", back.story());
    if case.strategy == Strategy::BlueGreen {
        f.assert_empty(&twin());
    }
    true
}

async fn revert_at_every_step(case: Case) {
    let mut k = 1;
    while revert_at(&case, k).await {
        k += 1;
    }
    assert!(k > 4, "{}: only {k} steps", case.name);
}

/// Drops the executor (`kill -9`) while it waits, at 16 points of the
/// roll, and reruns.
async fn dropped_while_waiting(case: Case) {
    let clean = {
        let (f, goal) = case.fleet().await;
        let run = f.run(goal, None).await;
        assert_eq!(run.outcome(), case.end, "{}", run.story());
        run.report.duration_ms
    };
    for ms in (1..16).map(|i| clean * i / 16) {
        let (f, goal) = case.fleet().await;
        let first = f
            .run_opts(goal.clone(), None, true, Some(Duration::from_millis(ms)))
            .await;
        let what = format!("{}: dropped at {ms} ms", case.name);
        assert!(
            first.result.is_none(),
            "{what}: done already\n{}",
            first.story()
        );
        case.rerun(&f, goal, &first, &what).await;
    }
}

/// The roll, with nothing broken.
async fn clean(case: Case) {
    let (f, goal) = case.fleet().await;
    let run = f.run(goal, None).await;
    assert_eq!(run.outcome(), case.end, "{}: {}", case.name, run.story());
    case.assert_run(&run);
    case.assert_end(&f, case.name).await;
    match case.end {
        Outcome::RolledOut => assert_eq!(f.record().previous, Some(img(V1))),
        _ => assert!(run.report.reason.is_some(), "{}", run.story()),
    }
}

/// Each case, run clean, stopped at every step (`kill -9` before the
/// step's call, Ctrl-C after it), with every call failing once (before
/// and after doing its work), and dropped while waiting: every run keeps
/// the invariants, and rerunning the command ends where the clean run
/// does, without launching anything twice.
macro_rules! break_in_every_place {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn clean() {
                super::clean(super::$case()).await;
            }

            #[tokio::test(start_paused = true)]
            async fn kill_9_at_every_step_then_rerun() {
                stop_at_every_step(super::$case(), Then::Crash).await;
            }

            #[tokio::test(start_paused = true)]
            async fn interrupted_at_every_step_then_rerun() {
                stop_at_every_step(super::$case(), Then::Interrupt).await;
            }

            #[tokio::test(start_paused = true)]
            async fn every_call_failing_then_rerun() {
                every_failed_call(super::$case()).await;
            }

            #[tokio::test(start_paused = true)]
            async fn kill_9_at_every_step_then_roll_back() {
                revert_at_every_step(super::$case()).await;
            }

            #[tokio::test(start_paused = true)]
            async fn dropped_while_waiting_then_rerun() {
                dropped_while_waiting(super::$case()).await;
            }
        }
    )*};
}

break_in_every_place!(
    rolling,
    rolling_bake,
    rolling_busy,
    rolling_no_surge,
    rolling_all_at_once,
    blue_green,
    blue_green_bake,
    rolling_bad_gate,
    rolling_too_slow,
    rolling_unhealthy,
    rolling_flapping_bake,
    rolling_shadow_errors,
    blue_green_flapping_bake,
    blue_green_bad_gate,
    blue_green_canary,
);

// ---- a failed golden query -------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_failed_golden_query_rolls_back_with_the_evidence() {
    let f = Fleet::up().await;
    f.script(V2, failed_gate());
    let run = f.run(f.goal(out(V2, Strategy::Rolling)).await, None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_gated_before_traffic();
    run.assert_bounds(&web(), N + 1, N);
    f.assert_settled(&web(), V1, N).await;
    let bad = launched(&f, V2, 0).expect("a v2 launch");
    let failed: Vec<_> = run
        .report
        .gates
        .iter()
        .filter(|g| matches!(g.outcome, cloud::GateOutcome::Failed { .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", run.report.gates);
    assert_eq!(failed[0].instance, bad);
    assert_eq!(failed[0].image, img(V2));
    assert_eq!(
        failed[0].outcome,
        cloud::GateOutcome::failed(
            "golden /books?query=alan&ids=20&offset=0",
            r#"{"total":2}"#,
            r#"{"total":0}"#
        )
    );
    let reason = run.report.reason.clone().expect("a reason");
    assert!(
        reason.contains(bad.as_str())
            && reason.contains(r#"expected {"total":2}, got {"total":0}"#),
        "{reason}"
    );
    assert_eq!(f.launches(V2), 1);
}

// ---- blue/green, then roll back --------------------------------------------

async fn blue_green_out(f: &Fleet) {
    let run = f
        .run(f.goal(out(V2, Strategy::BlueGreen)).await, None)
        .await;
    assert_rolled_out(&run);
    run.assert_bounds(&twin(), N, N);
    run.assert_bounds(&web(), N, N);
    assert_eq!(f.forward(), tg(&twin()));
    assert_eq!(run.report.switch_ms, Some(0));
    f.assert_settled(&twin(), V2, N).await;
    let standby = f.record().standby.expect("a standby");
    assert_eq!((standby.group, standby.image), (web(), img(V1)));
    assert_eq!(f.record().previous, Some(img(V1)));
}

const KEEP: Duration = Duration::from_secs(3_600);

/// Past the keep window and the scheduled scale-in's drain.
async fn past_the_keep_window() {
    tokio::time::advance(KEEP + Duration::from_millis(DEREGISTRATION_DELAY_MS + 1_000)).await;
}

#[tokio::test(start_paused = true)]
async fn roll_back_inside_the_keep_window_switches_without_a_launch() {
    let f = Fleet::up().await;
    blue_green_out(&f).await;
    // The kept set is marked a standby (aws: launches and scaling
    // suspended), the serving one is not.
    assert!(f.fake.is_standby(&web()) && !f.fake.is_standby(&twin()));
    let before = f.fake.launched().len();
    let run = f.run(f.goal(Intent::Back { to: None }).await, None).await;
    assert_eq!(run.outcome(), Outcome::SwitchedBack, "{}", run.story());
    assert!(
        !f.fake.is_standby(&web()) && f.fake.is_standby(&twin()),
        "the standby serves again; the set switched away from is kept"
    );
    assert_eq!(f.fake.launched().len(), before, "no launch to switch back");
    assert_eq!(f.forward(), tg(&web()));
    run.assert_bounds(&web(), N, N);
    assert!(run.report.switch_ms.is_some());
    f.assert_settled(&web(), V1, N).await;
    // The set rolled out is the standby now.
    let standby = f.record().standby.expect("a standby");
    assert_eq!((standby.group, standby.image), (twin(), img(V2)));
    assert_eq!(f.record().previous, Some(img(V2)));
    // Once the window is over, the standby is stopped…
    past_the_keep_window().await;
    f.assert_empty(&twin());
    f.assert_settled(&web(), V1, N).await;
    // …and `roll back` is a rolling roll (to the image it switched away
    // from) on the serving group.
    let run = f.run(f.goal(Intent::Back { to: None }).await, None).await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N + 1, N);
    assert_eq!(f.forward(), tg(&web()));
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.record().standby, None);
}

#[tokio::test(start_paused = true)]
async fn roll_back_after_the_keep_window_is_a_rolling_roll_to_the_previous_image() {
    let f = Fleet::up().await;
    blue_green_out(&f).await;
    past_the_keep_window().await;
    f.assert_empty(&web());
    let before = f.launches(V1);
    let run = f.run(f.goal(Intent::Back { to: None }).await, None).await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    run.assert_gated_before_traffic();
    run.assert_bounds(&twin(), N + 1, N);
    assert!(!run.actions().any(|a| matches!(a, Action::Switch { .. })));
    assert_eq!(f.forward(), tg(&twin()));
    f.assert_settled(&twin(), V1, N).await;
    assert_eq!(f.launches(V1) - before, N);
    assert_eq!(f.record().standby, None);
}

// ---- one roll per group ----------------------------------------------------

fn holder(id: &str) -> LeaseHolder {
    LeaseHolder {
        id: id.into(),
        pid: 4242,
        host: "test".into(),
        command: format!("roll out --group web ({id})"),
        since_ms: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_roll_of_the_same_group_is_busy_naming_the_first() {
    let f = Fleet::up().await;
    let goal = f.goal(out(V2, Strategy::Rolling)).await;
    // As `roll out` does: the lease first, held for the whole run.
    let lease = f
        .cloud
        .groups()
        .acquire_lease(&web(), &holder(&goal.roll_id))
        .await
        .expect("the first roll's lease");
    let first = goal.roll_id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let hook: Hook = Box::new(move |n, _, fake| {
        if n % 5 == 0 {
            // A second `roll out` starting now.
            let e = now(fake.acquire_lease(&web(), &holder("roll-second")))
                .err()
                .map(|e| e.to_string());
            tx.send(e).unwrap();
        }
        Then::Go
    });
    let run = f.run(goal, Some(hook)).await;
    assert_rolled_out(&run);
    let refused: Vec<Option<String>> = rx.try_iter().collect();
    assert!(refused.len() >= 3, "{refused:?}");
    for e in &refused {
        let e = e.as_deref().expect("busy");
        assert!(e.contains(&first), "{e}");
    }
    let busy = f
        .cloud
        .groups()
        .acquire_lease(&web(), &holder("roll-second"))
        .await
        .err()
        .expect("busy");
    match &busy {
        CloudError::Busy { what, holder } => {
            assert_eq!(what, "group web");
            assert!(holder.starts_with(&first), "{holder}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(RollError::from(busy).exit_code(), 3);
    // The first roll is over: its lease goes, the second gets one.
    drop(lease);
    let second = f
        .cloud
        .groups()
        .acquire_lease(&web(), &holder("roll-second"))
        .await
        .expect("free after the first");
    assert_eq!(second.holder().id, "roll-second");
    // Another group is not busy at all.
    f.cloud
        .groups()
        .acquire_lease(&GroupName::from("other"), &holder("roll-third"))
        .await
        .expect("another group's lease");
}

// ---- blue/green over a standby, scaling, blue/green kills and drift ------

/// Blue/green to v2, then to v3: the standby (v1 in `web`) is dropped and
/// its group rebuilt with v3 while v2 keeps serving, then the switch.
/// Stopped at every step of the second roll (`kill -9` and Ctrl-C), the
/// rerun gets there too.
#[tokio::test(start_paused = true)]
async fn blue_green_over_a_standby_replaces_it_at_every_step() {
    for how in [Then::Go, Then::Crash, Then::Interrupt] {
        for k in 1.. {
            let f = Fleet::up().await;
            blue_green_out(&f).await;
            let v1 = f.launches(V1);
            let goal = f.goal(out(V3, Strategy::BlueGreen)).await;
            let hook: Hook = Box::new(move |n, _, _| if n == k { how } else { Then::Go });
            let first = f.run(goal.clone(), Some(hook)).await;
            let what = format!("step {k} ({how:?})");
            let reached = first.log().steps.len() >= k && how != Then::Go;
            first.assert_gated_before_traffic();
            first.assert_bounds(&web(), N, N);
            first.assert_bounds(&twin(), N, N);
            let record = f.record();
            if first.result.is_none() || matches!(first.result, Some(Err(_))) {
                let rerun = roll::plan::Goal {
                    roll_id: format!("{}-rerun", goal.roll_id),
                    ..goal
                };
                let second = f.run(rerun, None).await;
                let want = if record.roll.is_none() && record.previous == Some(img(V2)) {
                    Outcome::NothingToDo
                } else {
                    Outcome::RolledOut
                };
                assert_eq!(second.outcome(), want, "{what}: {}", second.story());
                second.assert_gated_before_traffic();
                second.assert_bounds(&web(), N, N);
                second.assert_bounds(&twin(), N, N);
            } else {
                assert_eq!(first.outcome(), Outcome::RolledOut, "{what}");
            }
            f.assert_settled(&web(), V3, N).await;
            assert_eq!(f.forward(), tg(&web()), "{what}");
            let standby = f.record().standby.expect("a standby");
            assert_eq!((standby.group, standby.image), (twin(), img(V2)), "{what}");
            assert_eq!(f.record().previous, Some(img(V2)), "{what}");
            assert_eq!(f.launches(V3), N, "{what}");
            assert_eq!(f.launches(V1), v1, "{what}");
            if !reached {
                break;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn scaling_up_and_down_keeps_the_invariants_at_every_step() {
    for (size, max, min_serving) in [(5u32, 6, N), (2, N, 2)] {
        for how in [Then::Go, Then::Crash, Then::Interrupt] {
            for k in 1.. {
                let f = Fleet::up().await;
                let goal = f.goal(Intent::Scale { size }).await;
                let hook: Hook = Box::new(move |n, _, _| if n == k { how } else { Then::Go });
                let first = f.run(goal.clone(), Some(hook)).await;
                let what = format!("size {size}, step {k} ({how:?})");
                let reached = first.log().steps.len() >= k && how != Then::Go;
                first.assert_gated_before_traffic();
                first.assert_bounds(&web(), max, min_serving);
                if !matches!(first.result, Some(Ok(_))) {
                    let rerun = roll::plan::Goal {
                        roll_id: format!("{}-rerun", goal.roll_id),
                        ..goal
                    };
                    let second = f.run(rerun, None).await;
                    assert!(
                        matches!(
                            second.result,
                            Some(Ok(Outcome::RolledOut | Outcome::NothingToDo))
                        ),
                        "{what}: {}",
                        second.story()
                    );
                    second.assert_gated_before_traffic();
                    second.assert_bounds(&web(), max, min_serving);
                } else {
                    assert_eq!(first.outcome(), Outcome::RolledOut, "{what}");
                }
                f.assert_settled(&web(), V1, size as usize).await;
                assert_eq!(
                    f.launches(V1),
                    N + (size as usize).saturating_sub(N),
                    "{what}: launched twice"
                );
                if !reached {
                    break;
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_dying_mid_blue_green_is_replaced_and_the_roll_converges() {
    let f = Fleet::up().await;
    // The first new instance dies right before the second goes in service.
    let hook = {
        let mut seen = 0;
        Box::new(move |_, text: &str, fake: &cloud::fake::FakeCloud| {
            if text.ends_with(": in service") {
                seen += 1;
                if seen == 2 {
                    let s = sample(fake, None);
                    let first = s.group(&twin()).expect("web--b").instances[0].id.clone();
                    assert!(fake.kill(&first));
                }
            }
            Then::Go
        }) as Hook
    };
    let run = f
        .run(f.goal(out(V2, Strategy::BlueGreen)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    run.assert_bounds(&twin(), N, N);
    run.assert_bounds(&web(), N, N);
    f.assert_settled(&twin(), V2, N).await;
    assert_eq!(f.forward(), tg(&twin()));
    assert_eq!(f.launches(V2), N + 1, "the one killed, replaced once");
}

#[tokio::test(start_paused = true)]
async fn a_resize_of_the_new_blue_green_set_is_adopted() {
    let f = Fleet::up().await;
    // Someone asks the new set for one more right after it was sized.
    let mut done = false;
    let hook: Hook = Box::new(move |_, text, fake| {
        if !done && text.starts_with("waiting for") {
            done = true;
            now(fake.set_limits(&twin(), 0, 4)).unwrap();
            now(fake.set_desired(&twin(), 4)).unwrap();
        }
        Then::Go
    });
    let run = f
        .run(f.goal(out(V2, Strategy::BlueGreen)).await, Some(hook))
        .await;
    assert_rolled_out(&run);
    assert!(adopted(&run, 4), "{}", run.story());
    run.assert_bounds(&twin(), 4, N);
    f.assert_settled(&twin(), V2, 4).await;
    assert_eq!(f.forward(), tg(&twin()));
    assert_eq!(f.launches(V2), 4);
}

#[tokio::test(start_paused = true)]
async fn slow_instances_within_the_gate_timeout_switch_blue_green() {
    let f = Fleet::up().await;
    f.script(V2, slow(GATE_TIMEOUT_MS * 9 / 10));
    let goal = roll::plan::Goal {
        gate_timeout_ms: GATE_TIMEOUT_MS,
        ..f.goal(out(V2, Strategy::BlueGreen)).await
    };
    let run = f.run(goal, None).await;
    assert_rolled_out(&run);
    run.assert_bounds(&twin(), N, N);
    f.assert_settled(&twin(), V2, N).await;
    assert_eq!(f.forward(), tg(&twin()));
}

#[tokio::test(start_paused = true)]
async fn slow_instances_past_the_gate_timeout_roll_blue_green_back() {
    let f = Fleet::up().await;
    f.script(V2, slow(GATE_TIMEOUT_MS * 11 / 10));
    let goal = roll::plan::Goal {
        gate_timeout_ms: GATE_TIMEOUT_MS,
        ..f.goal(out(V2, Strategy::BlueGreen)).await
    };
    let run = f.run(goal, None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_bounds(&twin(), N, N);
    let reason = run.report.reason.clone().expect("a reason");
    assert!(
        reason.contains(&format!("within {GATE_TIMEOUT_MS} ms")),
        "{reason}"
    );
    f.assert_settled(&web(), V1, N).await;
    f.assert_empty(&twin());
    assert_eq!(f.forward(), tg(&web()));
}

// ---- alarms (`--alarm`) ------------------------------------------------------

/// An alarm that starts firing while the roll out runs fails it at
/// once, whatever it was doing (here: waiting out a gate that never
/// passes, or the bake time), and the roll goes back to v1 with the alarm
/// named. moto can only flip an alarm's state (`SetAlarmState`, see the
/// aws end-to-end test); when it happens relative to each step needs the
/// fake's clock.
#[tokio::test(start_paused = true)]
async fn an_alarm_during_the_roll_rolls_it_back() {
    for (what, bake_ms, after_ms) in [("the gate", 0, 2_000), ("the bake time", 600_000, 30_000)] {
        let f = Fleet::up().await;
        if bake_ms == 0 {
            f.script(
                V2,
                ImageScript {
                    ready_after: Duration::from_secs(30),
                    ..ImageScript::default()
                },
            );
        }
        f.fake.alarm("web-5xx", Some(f.fake.now_ms() + after_ms));
        f.fake.alarm("web-latency", None);
        *f.alarms.lock().unwrap() = vec!["web-5xx".into(), "web-latency".into()];
        let goal = roll::plan::Goal {
            bake_ms,
            ..f.goal(out(V2, Strategy::Rolling)).await
        };
        let run = f.run(goal, None).await;
        assert_eq!(
            run.outcome(),
            Outcome::RolledBack,
            "{what}: {}",
            run.story()
        );
        let reason = run.report.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("alarm web-5xx is in ALARM"),
            "{what}: {reason}"
        );
        assert!(!reason.contains("web-latency"), "{what}: {reason}");
        f.assert_settled(&web(), V1, N).await;
    }
}

/// A firing alarm never stops `roll back` (it is usually why).
#[tokio::test(start_paused = true)]
async fn an_alarm_does_not_stop_a_roll_back() {
    let f = Fleet::up().await;
    let run = f.run(f.goal(out(V2, Strategy::Rolling)).await, None).await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    f.fake.alarm("web-5xx", Some(f.fake.now_ms()));
    *f.alarms.lock().unwrap() = vec!["web-5xx".into()];
    let back = roll::plan::Goal {
        intent: Intent::Back { to: None },
        ..f.goal(out(V2, Strategy::Rolling)).await
    };
    let run = f.run(back, None).await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    f.assert_settled(&web(), V1, N).await;
}

// ---- blue/green through a test listener --------------------------------------

/// With a test listener (forwarding to the idle target group), the new
/// blue/green set passes the gate through it before bake time and the
/// switch: a set that answers wrongly there is rolled back before it ever
/// took traffic, with the failed check in the report; one that is not
/// ready yet is probed again until the gate timeout; one that passes is
/// switched to. (moto has no instances to answer through a listener; the
/// aws end-to-end test gates through a stand-in server at
/// `--test-address`.)
#[tokio::test(start_paused = true)]
async fn blue_green_sets_are_gated_through_the_test_listener() {
    use cloud::GateOutcome;
    let wrong = GateOutcome::failed("/version image", "v2", "v1");
    let not_ready = GateOutcome::NotReady {
        why: "/ready answered 503".into(),
    };
    for (what, script, end) in [
        (
            "passes",
            vec![not_ready.clone(), GateOutcome::Passed],
            Outcome::RolledOut,
        ),
        ("answers wrongly", vec![wrong.clone()], Outcome::RolledBack),
        ("never ready", vec![not_ready.clone()], Outcome::RolledBack),
    ] {
        let f = Fleet::up().await;
        f.fake.script_set_gate(script);
        let goal = roll::plan::Goal {
            gate_set: true,
            ..f.goal(out(V2, Strategy::BlueGreen)).await
        };
        let run = f.run(goal, None).await;
        assert_eq!(run.outcome(), end, "{what}: {}", run.story());
        let through: Vec<_> = run
            .report
            .gates
            .iter()
            .filter(|g| g.instance.as_str().starts_with("test-listener"))
            .collect();
        assert!(
            !through.is_empty(),
            "{what}: no gate through the test listener"
        );
        match end {
            Outcome::RolledOut => {
                assert_eq!(f.forward(), tg(&twin()), "{what}");
                assert!(
                    through.last().is_some_and(|g| g.outcome.is_passed()),
                    "{what}"
                );
            }
            _ => {
                assert_eq!(f.forward(), tg(&web()), "{what}: never switched");
                f.assert_settled(&web(), V1, N).await;
                let reason = run.report.reason.clone().unwrap_or_default();
                assert!(reason.contains("test listener"), "{what}: {reason}");
            }
        }
    }
}

// ---- blue/green canary steps (--canary) ------------------------------------

const CANARY_BAKE_MS: u64 = 2_000;

async fn canary_goal(f: &Fleet) -> roll::plan::Goal {
    roll::plan::Goal {
        bake_ms: CANARY_BAKE_MS,
        canary: vec![10, 50],
        ..f.goal(out(V2, Strategy::BlueGreen)).await
    }
}

/// The weight steps the report shows, in order.
fn steps(run: &Run) -> Vec<u32> {
    run.report.canary.iter().map(|c| c.percent).collect()
}

/// Every sample where the new set got a share shows all its targets
/// healthy at the step that gave it (the weight is asked right after).
fn assert_weighed_only_onto_healthy_sets(run: &Run) {
    for s in &run.log().samples {
        let Some(step) = &s.step else { continue };
        if !step.contains("% of new requests to") {
            continue;
        }
        let ts = &s.targets[&tg(&twin())];
        assert!(
            !ts.is_empty() && ts.iter().all(|t| t.health == cloud::TargetHealth::Healthy),
            "weighed onto {:?} at {step}\n{}",
            ts,
            run.story()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn canary_steps_are_held_for_the_bake_time_then_switched() {
    let f = Fleet::up().await;
    let run = f.run(canary_goal(&f).await, None).await;
    assert_rolled_out(&run);
    run.assert_bounds(&web(), N, N);
    run.assert_bounds(&twin(), N, N);
    assert_weighed_only_onto_healthy_sets(&run);
    assert_eq!(steps(&run), [10, 50], "{}", run.story());
    let c = &run.report.canary;
    assert!(c.iter().all(|c| c.target_group == tg(&twin()).as_str()));
    // Each step held for the bake time, the switch after the last one.
    assert!(c[1].at_ms >= c[0].at_ms + CANARY_BAKE_MS, "{c:?}");
    let switched = run
        .report
        .timeline
        .iter()
        .find(|e| matches!(e.action, Action::Switch { .. }))
        .expect("a switch");
    assert!(switched.at_ms >= c[1].at_ms + CANARY_BAKE_MS, "{c:?}");
    // What the listener said while the steps held (samples at the next
    // step, before its call).
    let log = run.log();
    let at = |needle: &str| {
        log.samples
            .iter()
            .find(|s| s.step.as_deref().is_some_and(|t| t.contains(needle)))
            .unwrap_or_else(|| panic!("no step {needle}"))
            .weights
            .clone()
    };
    assert_eq!(at("canary 50%"), [(tg(&web()), 90), (tg(&twin()), 10)]);
    // The 50% step: a tie, and the listener still forwards to the old set.
    for s in log
        .samples
        .iter()
        .filter(|s| s.weights.contains(&(tg(&twin()), 50)) && s.weights.contains(&(tg(&web()), 50)))
    {
        assert_eq!(s.forward, tg(&web()), "at {:?}", s.step);
    }
    drop(log);
    assert_eq!(f.forward(), tg(&twin()));
    assert_eq!(f.weight(&tg(&twin())), 100);
    assert!(f.record().canary.is_none(), "cleared with the roll");
    assert!(
        run.report.summary().contains("canary 10% 50%"),
        "{}",
        run.report.summary()
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_set_failing_at_10_percent_rolls_back_with_every_request_on_the_old_set() {
    let f = Fleet::up().await;
    // The new set turns unhealthy right after the 10% step.
    let hook: Hook = Box::new(|_, text, fake| {
        if text.contains("canary 10%") {
            fake.script(
                V2,
                ImageScript {
                    health: HealthScript::UnhealthyAfter(Duration::ZERO),
                    ..ImageScript::default()
                },
            );
        }
        Then::Go
    });
    let run = f.run(canary_goal(&f).await, Some(hook)).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    run.assert_bounds(&web(), N, N);
    assert_weighed_only_onto_healthy_sets(&run);
    let reason = run.report.reason.clone().expect("a reason");
    assert!(reason.contains("health checks"), "{reason}");
    // 10%, then everything back before the set went away; never 50%,
    // never switched.
    assert_eq!(steps(&run), [10, 0], "{}", run.story());
    assert!(
        !run.actions().any(|a| matches!(a, Action::Switch { .. })),
        "{}",
        run.story()
    );
    for s in &run.log().samples {
        assert_eq!(s.forward, tg(&web()), "at {:?}", s.step);
    }
    assert_eq!(f.weight(&tg(&web())), 100);
    f.assert_settled(&web(), V1, N).await;
    f.assert_empty(&twin());
}

#[tokio::test(start_paused = true)]
async fn an_alarm_during_a_canary_step_rolls_back_with_every_request_on_the_old_set() {
    let f = Fleet::up().await;
    f.fake.alarm("web-5xx", None);
    *f.alarms.lock().unwrap() = vec!["web-5xx".into()];
    let hook: Hook = Box::new(|_, text, fake| {
        if text.contains("canary 50%") {
            fake.alarm("web-5xx", Some(fake.now_ms() + 500));
        }
        Then::Go
    });
    let run = f.run(canary_goal(&f).await, Some(hook)).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    assert_eq!(steps(&run), [10, 50, 0], "{}", run.story());
    let reason = run.report.reason.clone().expect("a reason");
    assert!(reason.contains("web-5xx"), "{reason}");
    assert_eq!(f.weight(&tg(&web())), 100);
    assert_eq!(f.forward(), tg(&web()));
    f.assert_settled(&web(), V1, N).await;
    f.assert_empty(&twin());
}

#[tokio::test(start_paused = true)]
async fn a_rerun_after_kill_9_mid_canary_resumes_at_its_step() {
    for (at, first_again) in [("canary 10%", 10), ("canary 50%", 50)] {
        let f = Fleet::up().await;
        // Killed after recording the step, before asking the listener.
        let hook: Hook = Box::new(move |_, text, _| {
            if text.contains(at) {
                Then::Crash
            } else {
                Then::Go
            }
        });
        let goal = canary_goal(&f).await;
        let first = f.run(goal.clone(), Some(hook)).await;
        assert!(first.result.is_none(), "{at}: {}", first.story());
        assert_eq!(
            f.record().canary.map(|c| c.percent),
            Some(first_again),
            "{at}: recorded before asked"
        );
        let rerun = f
            .run(
                roll::plan::Goal {
                    roll_id: format!("{}-rerun", goal.roll_id),
                    ..goal
                },
                None,
            )
            .await;
        assert_rolled_out(&rerun);
        // The step it was killed at is asked again, none before it.
        assert_eq!(
            steps(&rerun).first(),
            Some(&first_again),
            "{at}: {}",
            rerun.story()
        );
        assert!(steps(&rerun).iter().all(|p| *p >= first_again));
        assert_eq!(f.forward(), tg(&twin()));
        assert_eq!(f.weight(&tg(&twin())), 100);
        assert_eq!(f.launches(V2), N, "{at}: nothing launched twice");
    }
}

#[tokio::test(start_paused = true)]
async fn roll_back_mid_canary_takes_every_request_back_then_the_new_set() {
    let f = Fleet::up().await;
    // Stopped while the 50% step holds.
    let hook: Hook = Box::new(|_, text, _| {
        if text.starts_with("waiting for canary: 50%") {
            Then::Crash
        } else {
            Then::Go
        }
    });
    let goal = canary_goal(&f).await;
    let first = f.run(goal.clone(), Some(hook)).await;
    assert!(first.result.is_none(), "{}", first.story());
    assert_eq!(f.weight(&tg(&twin())), 50, "{}", first.story());
    let back = roll::plan::Goal {
        intent: Intent::Back { to: None },
        roll_id: format!("{}-back", goal.roll_id),
        ..goal
    };
    let back = f.run(back, None).await;
    assert_eq!(back.outcome(), Outcome::Reverted, "{}", back.story());
    assert_eq!(steps(&back), [0], "{}", back.story());
    assert!(back.report.duration_ms < 60_000, "{}", back.story());
    back.assert_bounds(&web(), N, N);
    assert_eq!((f.forward(), f.weight(&tg(&web()))), (tg(&web()), 100));
    f.assert_settled(&web(), V1, N).await;
    f.assert_empty(&twin());
    assert_eq!(f.launches(V2), N);
}
