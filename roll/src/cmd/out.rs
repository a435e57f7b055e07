//! `roll out --group G --image ID`: the gated roll to a new image, and the
//! runner `back` and `scale` share: lease, executor, report, summary,
//! result, exit code.

use std::path::PathBuf;
use std::time::Duration;

use cloud::{Cloud, GroupName, ImageId};
use serde::Serialize;

use super::{
    GateArgs, Global, cancel_on_signals, check_image, group_error, holder, open, parse_duration,
    parse_group, parse_image, parse_percent, print_json, roll_id, write_stdout,
};
use crate::error::RollError;
use crate::exec::{ExecOptions, Executor, Service};
use crate::exit;
use crate::plan::{Goal, Intent, Outcome};
use crate::record::Strategy;
use crate::refresh::{RefreshDriver, RefreshOptions};
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyArg {
    /// Replace instances a few at a time (surge first, then drain old).
    Rolling,
    /// A full second set, gated, then one atomic switch; the old set is
    /// kept (out of service) for the rollback window.
    BlueGreen,
    /// Auto Scaling's instance refresh (aws): Auto Scaling replaces the
    /// instances (--min-healthy and --max-surge as its MinHealthy and
    /// MaxHealthy percentages, --warmup, --checkpoints, --skip-matching,
    /// --alarm, auto rollback to the previous launch-template version),
    /// roll watches it to the end with its own gate on top and rolls it
    /// back when an instance of the new image fails that gate within
    /// --gate-timeout or an alarm fires.
    InstanceRefresh,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group to roll.
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
    /// The image to roll out (a complete bake: `bake list`).
    #[arg(long, value_parser = parse_image)]
    pub image: ImageId,
    /// How the instances are replaced.
    #[arg(long, value_enum, default_value = "rolling")]
    pub strategy: StrategyArg,
    #[command(flatten)]
    pub gate: GateArgs,
    /// Shadow comparison before the new image takes traffic: for this long
    /// the balancer mirrors live GETs to the first new instance (rolling)
    /// or the new set (blue/green) and compares the answers with the old
    /// image's. An error where the old image answered 200 fails the roll;
    /// with an unchanged index digest (a security rebake) any difference
    /// does; otherwise differences are counted in the report.
    #[arg(long, value_name = "D", default_value = "0s", value_parser = parse_duration)]
    pub bake_time: Duration,
    /// Share of live GETs mirrored during bake time.
    #[arg(long, value_name = "P%", default_value = "10%", value_parser = parse_percent)]
    pub shadow_percent: u32,
    /// Blue/green: how long the old set is kept running (health-checked,
    /// out of service) so `roll back` is one switch; then it is stopped.
    #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_duration)]
    pub keep: Duration,
    /// Blue/green: before the switch, move these shares of new requests
    /// to the new set (weighted forward; strictly increasing, each in
    /// 1%..=99%), each held for --bake-time (needed) while the new set's
    /// health and the alarms are watched; then the full switch. Unhealthy
    /// or an alarm: every request back on the old set, and rolled back.
    #[arg(long, value_name = "P%,...", value_delimiter = ',', value_parser = parse_percent)]
    pub canary: Vec<u32>,
    /// Instance refresh: pause when these shares of the instances are
    /// replaced (ascending; 100% is added when missing, so every instance
    /// is replaced).
    #[arg(long, value_name = "P%,...", value_delimiter = ',', value_parser = parse_percent)]
    pub checkpoints: Vec<u32>,
    /// Instance refresh: how long each checkpoint pauses.
    #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_duration)]
    pub checkpoint_delay: Duration,
    /// Instance refresh: leave instances that already run the new image's
    /// launch-template version (SkipMatching).
    #[arg(long)]
    pub skip_matching: bool,
}

/// What a roll run prints with `--json`.
#[derive(Debug, Serialize)]
pub struct RollResult<'a> {
    pub group: &'a str,
    pub outcome: Option<Outcome>,
    /// The image the group runs now.
    pub image: Option<&'a ImageId>,
    pub from: Option<&'a ImageId>,
    pub to: Option<&'a ImageId>,
    pub strategy: &'a str,
    pub instances: u32,
    pub duration_ms: u64,
    pub requests: Option<u64>,
    pub failed: Option<u64>,
    pub switch_ms: Option<u64>,
    pub reason: Option<&'a str>,
    pub report: Option<&'a PathBuf>,
}

/// Everything a roll run needs beyond the intent.
pub struct RunSpec {
    pub svc: Service,
    pub group: GroupName,
    pub intent: Intent,
    pub gate: GateArgs,
    pub bake: Duration,
    pub shadow_percent: u32,
    pub keep: Duration,
    /// The pause between looks at the cloud ([`Global::poll`]).
    pub poll: Duration,
    /// Blue/green `--canary` steps (checked).
    pub canary: Vec<u32>,
    /// `--strategy instance-refresh`'s own knobs.
    pub refresh: RefreshOptions,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    let cloud = open(global).await?;
    let svc = crate::config::service(&global.backend, &a.group, &global.aws)?;
    let strategy = match a.strategy {
        StrategyArg::Rolling => Strategy::Rolling,
        StrategyArg::BlueGreen => Strategy::BlueGreen,
        StrategyArg::InstanceRefresh => Strategy::InstanceRefresh,
    };
    check_canary(&a.canary, strategy, a.bake_time)?;
    let is_refresh = strategy == Strategy::InstanceRefresh;
    if is_refresh && !cloud.groups().has_instance_refresh() {
        return Err(no_refresh(&cloud));
    }
    check_image(&cloud, &a.image).await?;
    let refresh_only = [
        (!a.checkpoints.is_empty(), "--checkpoints"),
        (a.skip_matching, "--skip-matching"),
    ];
    if let Some((_, flag)) = refresh_only.iter().find(|(set, _)| *set && !is_refresh) {
        return Err(RollError::Usage(format!(
            "{flag} is a knob of --strategy instance-refresh"
        )));
    }
    let mut checkpoints = a.checkpoints.clone();
    if checkpoints.contains(&0) || !checkpoints.is_sorted_by(|x, y| x < y) {
        return Err(RollError::Usage(format!(
            "--checkpoints {checkpoints:?}: ascending shares within 1%..=100%"
        )));
    }
    if !checkpoints.is_empty() && checkpoints.last() != Some(&100) {
        checkpoints.push(100);
    }
    run_roll(
        &cloud,
        RunSpec {
            svc,
            group: a.group,
            intent: Intent::Out {
                image: a.image,
                strategy,
            },
            gate: a.gate,
            bake: a.bake_time,
            shadow_percent: a.shadow_percent.max(1),
            keep: a.keep,
            poll: global.poll(),
            canary: a.canary,
            refresh: RefreshOptions {
                checkpoints,
                checkpoint_delay: a.checkpoint_delay,
                skip_matching: a.skip_matching,
                bake: a.bake_time,
            },
        },
    )
    .await
}

/// `--canary`: blue/green only, strictly increasing steps within
/// 1%..=99% (100% is the switch that follows them), each held for the
/// bake time, so there must be one.
fn check_canary(steps: &[u32], strategy: Strategy, bake: Duration) -> Result<(), RollError> {
    if steps.is_empty() {
        return Ok(());
    }
    let list = steps
        .iter()
        .map(|p| format!("{p}%"))
        .collect::<Vec<_>>()
        .join(",");
    if strategy != Strategy::BlueGreen {
        return Err(RollError::Usage(format!(
            "--canary {list} moves a share of requests to a new blue/green set: it needs --strategy blue-green"
        )));
    }
    if steps.iter().any(|p| !(1..=99).contains(p)) || !steps.is_sorted_by(|x, y| x < y) {
        return Err(RollError::Usage(format!(
            "--canary {list}: strictly increasing steps within 1%..=99% (the switch after them is 100%)"
        )));
    }
    if bake.is_zero() {
        return Err(RollError::Usage(format!(
            "--canary {list}: each step is held for --bake-time, so give one (e.g. --bake-time 5m)"
        )));
    }
    Ok(())
}

fn no_refresh(cloud: &Cloud) -> RollError {
    RollError::Usage(format!(
        "--strategy instance-refresh hands the roll to Auto Scaling's instance refresh, which \
         the {} backend does not have: use --strategy rolling (or blue-green)",
        cloud.backend()
    ))
}

/// Whether the index an image serves is the one the group serves now (a
/// rebake that changed only the base or the binary): then any shadow
/// difference is a failure.
async fn same_index(cloud: &Cloud, group: &GroupName, intent: &Intent) -> Result<bool, RollError> {
    let Intent::Out { image, .. } = intent else {
        return Ok(false);
    };
    let g = cloud
        .groups()
        .describe_group(group)
        .await
        .map_err(|e| group_error(group, e))?;
    let current = cloud.images().manifest(&g.current.image).await;
    let new = cloud.images().manifest(image).await?;
    Ok(current.is_ok_and(|m| m.index.digest == new.index.digest))
}

/// Where the target group's health check is the gate (aws outside the
/// VPC), it must check `/ready`: a health check on `/` would let an
/// instance whose golden queries fail take traffic.
async fn check_health_gate(
    cloud: &Cloud,
    svc: &Service,
    info: &cloud::GroupInfo,
) -> Result<(), RollError> {
    let Some(path) = cloud.probes().gate_health_path() else {
        return Ok(());
    };
    let mut tgs: Vec<cloud::TargetGroupId> = info.target_group.iter().cloned().collect();
    if let Some((a, b)) = &svc.target_groups {
        tgs.extend([a.clone(), b.clone()]);
    }
    tgs.sort();
    tgs.dedup();
    for tg in tgs {
        let t = cloud.lbs().target_group(&tg).await?;
        let p = t.health_check.path.split('?').next().unwrap_or_default();
        if p != path {
            return Err(RollError::Usage(format!(
                "target group {tg} health-checks {:?}: the target group's health check is the \
                 gate here, so it must be {path} (searchd answers it only after replaying the \
                 image's golden queries); change it, or gate each instance directly with \
                 --gate-via private-ip when roll runs inside the VPC",
                t.health_check.path
            )));
        }
    }
    Ok(())
}

/// How often a roll renews its lease on the group.
const LEASE_RENEW: Duration = Duration::from_secs(60);

pub async fn run_roll(cloud: &Cloud, spec: RunSpec) -> Result<u8, RollError> {
    let svc = spec.svc.clone();
    // Unknown group: bad input before anything else.
    let info = cloud
        .groups()
        .describe_group(&spec.group)
        .await
        .map_err(|e| group_error(&spec.group, e))?;
    check_health_gate(cloud, &svc, &info).await?;
    // Alarms that do not exist (or a backend without alarms): refused
    // before anything changes.
    if !svc.alarms.is_empty() {
        cloud
            .probes()
            .alarms_firing(&svc.alarms)
            .await
            .map_err(|e| match e.is_bad_input() {
                true => RollError::Usage(format!("--alarm: {e}")),
                false => e.into(),
            })?;
    }
    let record = crate::record::Record::from_tags(&info.tags);
    let by_refresh = crate::refresh::applies(&spec.intent, &record);
    if by_refresh && !cloud.groups().has_instance_refresh() {
        return Err(no_refresh(cloud));
    }
    if let (Intent::Out { .. }, Some(r)) = (&spec.intent, &record.roll)
        && !by_refresh
        && r.strategy == Strategy::InstanceRefresh
    {
        return Err(RollError::Usage(format!(
            "instance refresh roll {} ({} -> {}) is in progress on {}: rerun it (or roll back) first",
            r.id, r.from, r.to, spec.group
        )));
    }
    let id = roll_id();
    let lease = cloud
        .groups()
        .acquire_lease(&spec.group, &holder(&id))
        .await?;
    // The group is roll's to manage from now on: the ownership tag makes
    // it one `list_groups` answers (so `bake prune` keeps what it runs and
    // may roll back to), also for a group Terraform made.
    if !info.tags.contains_key(cloud::tags::ROLL_GROUP) {
        let mut t = cloud::Tags::new();
        t.insert(cloud::tags::ROLL_GROUP.into(), spec.group.to_string());
        cloud.groups().tag_group(&spec.group, &t, &[]).await?;
    }
    let strict = same_index(cloud, &spec.group, &spec.intent).await?;
    let goal = Goal {
        intent: spec.intent.clone(),
        roll_id: id,
        max_surge: spec.gate.max_surge,
        min_healthy_pct: spec.gate.min_healthy,
        // On a cloud balancer a new target must read healthy on three
        // consecutive looks (since the first, two polls), not once.
        warmup_ms: if cloud.backend() == "local" {
            spec.gate.warmup
        } else {
            spec.gate.warmup.max(2 * spec.poll)
        }
        .as_millis() as u64,
        bake_ms: spec.bake.as_millis() as u64,
        gate_timeout_ms: spec.gate.gate_timeout.as_millis() as u64,
        keep_ms: spec.keep.as_millis() as u64,
        probe_every_ms: 100,
        shadow_strict: strict,
        twin: svc.twin.clone(),
        gate_set: svc.test_listener.is_some() || svc.test_address.is_some(),
        canary: spec.canary.clone(),
    };
    let opts = ExecOptions {
        poll: spec.poll,
        shadow_percent: spec.shadow_percent,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // A lease that expires (aws) is renewed while the roll runs; one that
    // cannot be renewed ends the roll like a kill would (resumable).
    let renewing = async {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            if let Err(e) = lease.renew().await {
                return e;
            }
        }
    };
    let lost = |e: cloud::CloudError| {
        RollError::Failed(format!(
            "lost the lease on group {}: {e}; rerun the command to continue",
            spec.group
        ))
    };
    let (result, report) = if by_refresh {
        let mut driver = RefreshDriver::new(
            cloud,
            svc,
            goal,
            spec.refresh.clone(),
            opts,
            Box::new(cloud::run::Progress::new("roll")),
            cancel_on_signals(),
        );
        driver.report.command = command;
        let result = tokio::select! {
            r = driver.run() => r,
            e = renewing => Err(lost(e)),
        };
        (result, driver.report)
    } else {
        let mut exec = Executor::new(
            cloud,
            svc,
            goal,
            opts,
            Box::new(cloud::run::Progress::new("roll")),
            cancel_on_signals(),
        );
        exec.report.command = command;
        let result = tokio::select! {
            r = exec.run() => r,
            e = renewing => Err(lost(e)),
        };
        (result, exec.report)
    };
    if let Some(path) = &spec.gate.report {
        write_report(path, &report)?;
    }
    let outcome = result?;
    eprintln!("roll: {}", report.summary());
    let now_on = serving_image(cloud, &spec.svc).await;
    finish_output(&spec, &report, outcome, now_on.as_ref())
}

fn write_report(path: &PathBuf, report: &Report) -> Result<(), RollError> {
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| RollError::Failed(format!("cannot encode the report: {e}")))?;
    std::fs::write(path, json).map_err(|e| RollError::Io {
        what: format!("cannot write the report {}", path.display()),
        source: e,
    })
}

/// The image of the group behind the listener now.
async fn serving_image(cloud: &Cloud, svc: &Service) -> Option<ImageId> {
    let listener = cloud.lbs().listener(&svc.listener).await.ok()?;
    for g in [&svc.group, &svc.twin] {
        if let Ok(info) = cloud.groups().describe_group(g).await
            && info.target_group.as_ref() == Some(&listener.forward)
        {
            return Some(info.current.image);
        }
    }
    None
}

fn finish_output(
    spec: &RunSpec,
    report: &Report,
    outcome: Outcome,
    now_on: Option<&ImageId>,
) -> Result<u8, RollError> {
    if spec.gate.json {
        print_json(&RollResult {
            group: spec.group.as_str(),
            outcome: Some(outcome),
            image: now_on,
            from: report.from.as_ref(),
            to: report.to.as_ref(),
            strategy: &report.strategy,
            instances: report.instances,
            duration_ms: report.duration_ms,
            requests: report.traffic.as_ref().map(|t| t.requests),
            failed: report.traffic.as_ref().map(|t| t.failed),
            switch_ms: report.switch_ms,
            reason: report.reason.as_deref(),
            report: spec.gate.report.as_ref(),
        })?;
    } else if let Some(image) = now_on {
        write_stdout(&format!("{image}\n"))?;
    }
    Ok(match outcome {
        Outcome::RolledBack => exit::ROLLED_BACK,
        _ => exit::OK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_steps_are_checked() {
        let bg = Strategy::BlueGreen;
        let bake = Duration::from_secs(10);
        assert!(check_canary(&[], Strategy::Rolling, Duration::ZERO).is_ok());
        assert!(check_canary(&[10, 50], bg, bake).is_ok());
        assert!(check_canary(&[1, 99], bg, bake).is_ok());
        for (steps, strategy, bake, says) in [
            (
                &[10, 50][..],
                Strategy::Rolling,
                bake,
                "--strategy blue-green",
            ),
            (&[50, 10][..], bg, bake, "strictly increasing"),
            (&[10, 10][..], bg, bake, "strictly increasing"),
            (&[0, 10][..], bg, bake, "1%..=99%"),
            (&[10, 100][..], bg, bake, "1%..=99%"),
            (&[10, 50][..], bg, Duration::ZERO, "--bake-time"),
        ] {
            match check_canary(steps, strategy, bake) {
                Err(e @ RollError::Usage(_)) => {
                    assert!(e.to_string().contains(says), "{steps:?}: {e}");
                    assert_eq!(e.exit_code(), exit::USAGE);
                }
                other => panic!("{steps:?} {strategy:?}: {other:?}"),
            }
        }
    }
}
