//! `roll out --strategy instance-refresh` against the scripted fake cloud
//! with paused time: the refresh driver (`roll/src/refresh.rs`) starting
//! and watching the fake's instance refresh (`cloud/src/fake/refresh.rs`),
//! with kiln's gate, record, report and `roll back` around it.
//!
//! moto answers every instance-refresh call (StartInstanceRefresh,
//! DescribeInstanceRefreshes, CancelInstanceRefresh,
//! RollbackInstanceRefresh) with a 500: nothing here can run there. Each
//! test says what in particular moto could not show; `tests/aws_refresh.rs`
//! checks on moto only that the binary reaches StartInstanceRefresh and
//! fails naming it.

#[path = "scenarios/support.rs"]
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud::fake::{GateScript, HealthScript, ImageScript};
use cloud::{Groups, Lifecycle, RefreshState};
use roll::error::RollError;
use roll::exec::{Progress, Service};
use roll::plan::{Goal, Intent, Outcome};
use roll::record::{Phase, Strategy, keys};
use roll::refresh::{RefreshDriver, RefreshOptions};
use roll::report::Report;
use support::{Fleet, SIZE, Sample, V1, V2, exec_options, img, now, out, sample, web};

const N: usize = SIZE as usize;

struct Steps(Arc<Mutex<Vec<String>>>);

impl Progress for Steps {
    fn step(&mut self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

struct Drive {
    /// `None`: dropped at the deadline (`kill -9`).
    result: Option<Result<Outcome, RollError>>,
    report: Report,
    steps: Vec<String>,
    samples: Vec<Sample>,
}

impl Drive {
    fn outcome(&self) -> Outcome {
        match &self.result {
            Some(Ok(o)) => *o,
            other => panic!(
                "the roll ended {:?}\nsteps:\n  {}",
                other
                    .as_ref()
                    .map(|r| r.as_ref().map_err(|e| e.to_string())),
                self.steps.join("\n  ")
            ),
        }
    }

    fn story(&self) -> String {
        format!(
            "steps:\n  {}\nreason: {:?}",
            self.steps.join("\n  "),
            self.report.reason
        )
    }

    /// The refresh's statuses as roll saw them, in order.
    fn states(&self) -> Vec<RefreshState> {
        let mut v: Vec<RefreshState> = Vec::new();
        for e in &self.report.refresh.as_ref().expect("a refresh").history {
            if v.last() != Some(&e.status) {
                v.push(e.status);
            }
        }
        v
    }

    /// Never more than `max` live (not terminating) instances in web,
    /// never fewer than `min` healthy behind the listener.
    fn assert_bounds(&self, max: usize, min: usize) {
        for s in &self.samples {
            let live = s.group(&web()).map_or(0, |g| {
                g.instances
                    .iter()
                    .filter(|i| i.lifecycle != Lifecycle::Terminating)
                    .count()
            });
            assert!(
                live <= max && s.serving().len() >= min,
                "at {}: {live} live instances (at most {max}), {} serving (at least {min})\n{}",
                s.at_ms,
                s.serving().len(),
                self.story()
            );
        }
    }
}

fn refresh_out() -> Intent {
    out(V2, Strategy::InstanceRefresh)
}

/// v2 instances answer 2 s after launch: a batch takes about 2.2 s, the
/// refresh of 3 about 7 s (a kill or an alarm at 3 s lands mid-way).
fn slow_v2(f: &Fleet) {
    f.script(
        V2,
        ImageScript {
            ready_after: Duration::from_secs(2),
            ..ImageScript::default()
        },
    );
}

const MID_WAY: Duration = Duration::from_secs(3);

/// Runs the refresh driver as `roll out`/`roll back` runs it (without the
/// lease, which `run_roll` takes around it), sampling the fleet every
/// 25 ms of the fake's clock.
async fn drive(f: &Fleet, goal: Goal, opts: RefreshOptions, deadline: Option<Duration>) -> Drive {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (fake, samples) = (f.fake.clone(), samples.clone());
        tokio::spawn(async move {
            loop {
                samples.lock().unwrap().push(sample(&fake, None));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let svc = Service {
        alarms: f.alarms.lock().unwrap().clone(),
        ..Service::named(&web())
    };
    let mut driver = RefreshDriver::new(
        &f.cloud,
        svc,
        goal,
        opts,
        exec_options(),
        Box::new(Steps(steps.clone())),
        cloud::run::Cancel::default(),
    );
    let result = match deadline {
        Some(d) => tokio::time::timeout(d, driver.run()).await.ok(),
        None => Some(driver.run().await),
    };
    sampler.abort();
    let report = driver.report;
    let steps = steps.lock().unwrap().clone();
    let samples = samples.lock().unwrap().clone();
    Drive {
        result,
        report,
        steps,
        samples,
    }
}

fn calls(f: &Fleet, op: &str) -> u64 {
    f.fake.calls().get(op).copied().unwrap_or(0)
}

/// A clean refresh: Auto Scaling (here the fake) replaces every instance,
/// one surge at a time (MaxHealthy 134% from `--max-surge 1` of 3,
/// MinHealthy 100%), never with fewer than 3 healthy behind the listener;
/// at its end the group names the numbered template version made for v2,
/// the record is cleared and `kiln:previous-image` names v1. A rerun does
/// nothing.
///
/// moto cannot: it answers StartInstanceRefresh with a 500, so neither the
/// replacement nor the template version the group names afterwards can
/// be seen there.
#[tokio::test(start_paused = true)]
async fn a_refresh_replaces_every_instance_and_pins_the_new_version() {
    let f = Fleet::up().await;
    let run = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    run.assert_bounds(N + 1, N);
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.launches(V2), N, "each replaced once");
    assert_eq!(calls(&f, "start_refresh"), 1);
    let g = now(f.fake.describe_group(&web())).unwrap();
    assert_eq!((g.current.version, g.current.image.as_str()), (2, V2));
    assert_eq!(f.record().previous, Some(img(V1)));
    assert!(!g.tags.contains_key(keys::REFRESH), "{:?}", g.tags);
    assert_eq!(
        run.states().last(),
        Some(&RefreshState::Successful),
        "{:?}",
        run.states()
    );
    assert_eq!(run.report.strategy, "instance-refresh");
    assert!(
        run.report.summary().contains("instance refresh")
            && run.report.summary().contains("Successful"),
        "{}",
        run.report.summary()
    );
    // Every new instance passed kiln's gate too.
    let passed = run
        .report
        .gates
        .iter()
        .filter(|g| g.outcome.is_passed())
        .count();
    assert_eq!(passed, N, "{:?}", run.report.gates);

    let again = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(again.outcome(), Outcome::NothingToDo);
    assert_eq!(calls(&f, "start_refresh"), 1);
}

/// New instances that turn unhealthy in the target group fail the
/// refresh; its auto rollback replaces them with v1 again, and the roll
/// ends rolled back with the refresh's reason naming the instance.
///
/// moto cannot: no instance refresh, and its target health is only ever
/// "healthy" (no unhealthy transition to fail on).
#[tokio::test(start_paused = true)]
async fn unhealthy_new_instances_fail_the_refresh_and_auto_rollback_restores_v1() {
    let f = Fleet::up().await;
    f.script(
        V2,
        ImageScript {
            ready_after: Duration::from_secs(2),
            health: HealthScript::UnhealthyAfter(Duration::from_millis(700)),
            ..ImageScript::default()
        },
    );
    let run = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    f.assert_settled(&web(), V1, N).await;
    let reason = run.report.reason.clone().expect("a reason");
    assert!(reason.contains("failed its health checks"), "{reason}");
    let states = run.states();
    assert!(
        states.contains(&RefreshState::RollbackInProgress)
            && states.last() == Some(&RefreshState::RollbackSuccessful),
        "{states:?}"
    );
    let g = now(f.fake.describe_group(&web())).unwrap();
    assert_eq!(
        (g.current.version, g.current.image.as_str()),
        (1, V1),
        "the group never stopped naming v1's version"
    );
    assert_eq!(f.record().previous, None, "nothing rolled out");
}

/// An `--alarm` that fires mid-refresh (it is the refresh's
/// AlarmSpecification, and kiln watches it too) rolls the refresh back.
///
/// moto cannot: no instance refresh; its alarms are never evaluated.
#[tokio::test(start_paused = true)]
async fn an_alarm_firing_mid_refresh_rolls_it_back() {
    let f = Fleet::up().await;
    slow_v2(&f);
    f.fake.alarm("web-5xx", Some(f.fake.now_ms() + 3_000));
    *f.alarms.lock().unwrap() = vec!["web-5xx".into()];
    let run = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    f.assert_settled(&web(), V1, N).await;
    let reason = run.report.reason.clone().expect("a reason");
    assert!(reason.contains("alarm web-5xx is in ALARM"), "{reason}");
    assert!(f.launches(V2) >= 1, "it was under way");
    assert_eq!(run.states().last(), Some(&RefreshState::RollbackSuccessful));
}

/// kiln's own gate on top of the refresh's: v2 never answers `/ready`, so
/// Auto Scaling would wait (the fake: up to 10 minutes) while no v2
/// instance serves; kiln rolls the refresh back after `--gate-timeout`.
///
/// moto cannot: no instance refresh, no RollbackInstanceRefresh, and its
/// instances are healthy at once.
#[tokio::test(start_paused = true)]
async fn kilns_gate_rolls_back_a_refresh_auto_scaling_would_still_wait_on() {
    let f = Fleet::up().await;
    f.script(
        V2,
        ImageScript {
            gate: GateScript::NeverReady,
            ..ImageScript::default()
        },
    );
    let goal = Goal {
        gate_timeout_ms: 20_000,
        ..f.goal(refresh_out()).await
    };
    let run = drive(&f, goal, RefreshOptions::default(), None).await;
    assert_eq!(run.outcome(), Outcome::RolledBack, "{}", run.story());
    f.assert_settled(&web(), V1, N).await;
    let reason = run.report.reason.clone().expect("a reason");
    assert!(
        reason.contains("within 20000 ms") && reason.contains("/ready"),
        "{reason}"
    );
    assert_eq!(calls(&f, "rollback_refresh"), 1);
    assert!(
        run.report.duration_ms < 60_000,
        "kiln did not wait for Auto Scaling: {} ms",
        run.report.duration_ms
    );
}

/// `kill -9` of roll mid-refresh: the refresh goes on without it; the
/// same command again finds the refresh id in the group's record and
/// watches that refresh to its end — no second StartInstanceRefresh, no
/// instance launched twice.
///
/// moto cannot: no instance refresh to adopt.
#[tokio::test(start_paused = true)]
async fn kill_9_mid_refresh_then_the_rerun_adopts_the_same_refresh() {
    let f = Fleet::up().await;
    slow_v2(&f);
    let first = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        Some(MID_WAY),
    )
    .await;
    assert!(first.result.is_none(), "{}", first.story());
    let record = f.record();
    let r = record.roll.expect("the roll is recorded");
    assert_eq!(
        (r.strategy, r.phase),
        (Strategy::InstanceRefresh, Phase::Rolling)
    );
    let id = sample(&f.fake, None)
        .group(&web())
        .and_then(|g| g.tags.get(keys::REFRESH).cloned())
        .expect("the refresh id is recorded");
    assert!(f.launches(V2) < N, "killed mid-way: {}", f.launches(V2));

    let second = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(second.outcome(), Outcome::RolledOut, "{}", second.story());
    assert_eq!(calls(&f, "start_refresh"), 1, "adopted, not started again");
    assert_eq!(second.report.refresh.as_ref().unwrap().id, id);
    assert_eq!(f.launches(V2), N, "no instance launched twice");
    f.assert_settled(&web(), V2, N).await;
}

/// A run that dies between StartInstanceRefresh and recording its id
/// (here: that tag write fails): the rerun starts again, and the start,
/// idempotent, answers the refresh already heading for v2.
///
/// moto cannot: StartInstanceRefresh is a 500 there (and on aws the
/// adoption goes through InstanceRefreshInProgress + DescribeInstanceRefreshes).
#[tokio::test(start_paused = true)]
async fn a_start_whose_id_was_not_recorded_is_adopted_on_the_rerun() {
    let f = Fleet::up().await;
    // tag_group 1: the record; 2: the refresh id.
    f.fake.fail_nth("tag_group", 2);
    let first = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert!(
        matches!(first.result, Some(Err(RollError::Cloud(_)))),
        "{}",
        first.story()
    );
    let second = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(second.outcome(), Outcome::RolledOut, "{}", second.story());
    assert_eq!(calls(&f, "start_refresh"), 2);
    assert_eq!(f.launches(V2), N, "one refresh: no instance launched twice");
    f.assert_settled(&web(), V2, N).await;
}

/// Hours after a refresh finished, `roll back` (the executor's rolling
/// path, from `kiln:previous-image`) returns the group to v1.
///
/// moto cannot: the refresh before it (a 500).
#[tokio::test(start_paused = true)]
async fn roll_back_after_a_finished_refresh_returns_to_v1() {
    let f = Fleet::up().await;
    let run = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let back = f.run(f.goal(Intent::Back { to: None }).await, None).await;
    back.outcome();
    f.assert_settled(&web(), V1, N).await;
    assert_eq!(f.record().previous, Some(img(V2)));
}

/// `roll back` while a refresh runs: the refresh is rolled back
/// (RollbackInstanceRefresh) and the roll ends reverted (exit 0).
///
/// moto cannot: RollbackInstanceRefresh is a 500 there.
#[tokio::test(start_paused = true)]
async fn roll_back_during_a_refresh_rolls_the_refresh_back() {
    let f = Fleet::up().await;
    slow_v2(&f);
    let first = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        Some(MID_WAY),
    )
    .await;
    assert!(first.result.is_none());
    let back = drive(
        &f,
        f.goal(Intent::Back { to: None }).await,
        RefreshOptions::default(),
        None,
    )
    .await;
    assert_eq!(back.outcome(), Outcome::Reverted, "{}", back.story());
    assert_eq!(calls(&f, "rollback_refresh"), 1);
    f.assert_settled(&web(), V1, N).await;
}

/// Checkpoints pause the refresh: with `--checkpoints 50%` (100% added)
/// and a 2-minute delay, it stops once 2 of 3 instances are replaced and
/// goes on only after the delay; roll reports the pause.
///
/// moto cannot: no instance refresh, so no checkpoints.
#[tokio::test(start_paused = true)]
async fn checkpoints_pause_the_refresh() {
    let f = Fleet::up().await;
    let opts = RefreshOptions {
        checkpoints: vec![50, 100],
        checkpoint_delay: Duration::from_secs(120),
        ..RefreshOptions::default()
    };
    let run = drive(&f, f.goal(refresh_out()).await, opts, None).await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    f.assert_settled(&web(), V2, N).await;
    let history = &run.report.refresh.as_ref().unwrap().history;
    let paused = history
        .iter()
        .find(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| r.contains("checkpoint 50%"))
        })
        .unwrap_or_else(|| panic!("no pause reported: {history:?}"));
    assert_eq!(paused.percent_complete, 66, "{paused:?}");
    assert!(
        run.report.duration_ms >= 120_000,
        "{} ms",
        run.report.duration_ms
    );
    // During the pause, one v1 instance kept serving.
    let mid = run
        .samples
        .iter()
        .find(|s| s.at_ms > paused.at_ms + 60_000)
        .expect("a sample in the pause");
    let images: Vec<&str> = mid
        .group(&web())
        .unwrap()
        .instances
        .iter()
        .map(|i| i.image.as_str())
        .collect();
    assert_eq!(images.iter().filter(|i| **i == V1).count(), 1, "{images:?}");
}

/// `--skip-matching`: instances already on v2 stay.
///
/// moto cannot: no instance refresh, so nothing to skip.
#[tokio::test(start_paused = true)]
async fn skip_matching_leaves_instances_already_on_the_image() {
    let f = Fleet::up().await;
    slow_v2(&f);
    // One v2 instance already (someone's partial roll): kill -9 a refresh
    // after its first replacement, then cancel it where it stands.
    let first = drive(
        &f,
        f.goal(refresh_out()).await,
        RefreshOptions::default(),
        Some(MID_WAY),
    )
    .await;
    assert!(first.result.is_none());
    now(f.fake.cancel_refresh(&web())).unwrap();
    f.cloud
        .groups()
        .tag_group(
            &web(),
            &cloud::Tags::new(),
            &keys::ROLL.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let g = sample(&f.fake, None).group(&web()).cloned().unwrap();
    let kept: Vec<_> = g
        .instances
        .iter()
        .filter(|i| i.image.as_str() == V2)
        .map(|i| i.id.clone())
        .collect();
    let on_v1 = g.instances.len() - kept.len();
    assert!(!kept.is_empty() && on_v1 > 0, "{:?}", g.instances);
    let before = f.launches(V2);
    let opts = RefreshOptions {
        skip_matching: true,
        ..RefreshOptions::default()
    };
    let run = drive(&f, f.goal(refresh_out()).await, opts, None).await;
    assert_eq!(run.outcome(), Outcome::RolledOut, "{}", run.story());
    f.assert_settled(&web(), V2, N).await;
    assert_eq!(f.launches(V2), before + on_v1, "only the v1 ones replaced");
    let after = sample(&f.fake, None).group(&web()).cloned().unwrap();
    for id in &kept {
        assert!(after.instance(id).is_some(), "{id} was left alone");
    }
}

/// Preferences Auto Scaling refuses are refused before anything changes
/// (no record, no refresh): exit 2.
///
/// moto cannot: it does not check refresh preferences.
#[tokio::test(start_paused = true)]
async fn refused_preferences_change_nothing() {
    let f = Fleet::up().await;
    let goal = Goal {
        max_surge: roll::plan::Surge::Count(0),
        ..f.goal(refresh_out()).await
    };
    let run = drive(&f, goal, RefreshOptions::default(), None).await;
    match &run.result {
        Some(Err(e)) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().contains("no room"), "{e}");
        }
        other => panic!("{:?}", other.as_ref().map(|r| r.is_ok())),
    }
    assert_eq!(f.record().roll, None);
    assert_eq!(calls(&f, "start_refresh"), 0);
}

/// The local backend has no instance refresh: the real binary refuses
/// the strategy with exit 2 before it looks at anything (no image, no
/// group, no fleet daemon needed), saying what to use instead.
///
/// moto is not involved (the local backend).
#[test]
fn the_local_backend_refuses_instance_refresh_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roll"))
        .args(["out", "--group", "web", "--image", "img-x"])
        .args(["--strategy", "instance-refresh", "--backend", "local"])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("instance refresh") && stderr.contains("--strategy rolling"),
        "{stderr}"
    );
}
