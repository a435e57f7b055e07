//! `roll status --group G [--json]`: instances (image, life cycle, health,
//! address), the balancer and its targets, the images (current, previous),
//! a roll in progress and its phase, the blue/green standby and until
//! when it is kept.

use cloud::{GroupInfo, GroupName, ImageId, ListenerInfo, TargetHealth, TargetStatus};
use serde::Serialize;

use super::{Global, group_error, open, parse_group, print_json, write_stdout};
use crate::error::RollError;
use crate::exec::twin_of;
use crate::exit;
use crate::record::{Record, Roll, Standby};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct GroupStatus {
    #[serde(flatten)]
    pub info: GroupInfo,
    /// Whether the listener forwards to this group's target group.
    pub live: bool,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub group: String,
    pub listener: Option<ListenerInfo>,
    pub groups: Vec<GroupStatus>,
    /// The image the live group runs.
    pub current: Option<ImageId>,
    /// What `roll back` returns to.
    pub previous: Option<ImageId>,
    pub roll: Option<Roll>,
    pub standby: Option<Standby>,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    let cloud = open(global).await?;
    let main = cloud
        .groups()
        .describe_group(&a.group)
        .await
        .map_err(|e| group_error(&a.group, e))?;
    let record = Record::from_tags(&main.tags);
    // On aws the listener and the twin are what roll.toml or the flags
    // name (as for `roll out`); without a listener, the groups alone.
    let svc = crate::config::service_if_named(&global.backend, &a.group, &global.aws)?;
    let listener = match &svc {
        Some(s) => match cloud.lbs().listener(&s.listener).await {
            Ok(l) => Some(l),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let twin = svc.map_or_else(|| twin_of(&a.group), |s| s.twin);
    let mut infos = vec![main];
    match cloud.groups().describe_group(&twin).await {
        Ok(t) => infos.push(t),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let mut groups = Vec::new();
    for info in infos {
        let targets = match &info.target_group {
            Some(tg) => cloud.lbs().targets(tg).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let live = listener
            .as_ref()
            .is_some_and(|l| info.target_group.as_ref() == Some(&l.forward));
        groups.push(GroupStatus {
            info,
            live,
            targets,
        });
    }
    let current = groups
        .iter()
        .find(|g| g.live)
        .map(|g| g.info.current.image.clone());
    let previous = record.previous.clone().or_else(|| {
        groups
            .iter()
            .find(|g| g.live)
            .and_then(|g| g.info.previous.first().map(|v| v.image.clone()))
    });
    let status = Status {
        group: a.group.to_string(),
        listener,
        groups,
        current,
        previous,
        roll: record.roll,
        standby: record.standby,
    };
    if a.json {
        print_json(&status)?;
    } else {
        write_stdout(&render(&status))?;
    }
    Ok(exit::OK)
}

fn health(t: Option<&TargetStatus>) -> String {
    match t.map(|t| &t.health) {
        None => "-".into(),
        Some(TargetHealth::Unhealthy { reason }) => format!("unhealthy ({reason})"),
        Some(h) => h.as_str().into(),
    }
}

/// The human view.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    if let Some(l) = &s.listener {
        out.push_str(&format!(
            "balancer  {}  -> {}  (metrics: {})\n",
            l.url(),
            l.forward,
            l.admin
                .as_deref()
                .map_or("-".to_owned(), |a| format!("http://{a}/metrics"))
        ));
    }
    for g in &s.groups {
        let role = if g.live {
            "live"
        } else if s.standby.as_ref().is_some_and(|sb| sb.group == g.info.name) {
            "standby"
        } else {
            "idle"
        };
        out.push_str(&format!(
            "group {}  {role}  image {} (template v{})  desired {} (min {}, max {}){}\n",
            g.info.name,
            g.info.current.image,
            g.info.current.version,
            g.info.desired,
            g.info.min,
            g.info.max,
            if g.info.hold_launches {
                "  launches held"
            } else {
                ""
            }
        ));
        if !g.info.instances.is_empty() {
            out.push_str(&format!(
                "  {:<20} {:<28} {:<13} {:<22} {}\n",
                "INSTANCE", "IMAGE", "LIFECYCLE", "HEALTH", "ADDRESS"
            ));
        }
        for i in &g.info.instances {
            let t = g.targets.iter().find(|t| t.target.instance == i.id);
            out.push_str(&format!(
                "  {:<20} {:<28} {:<13} {:<22} {}\n",
                i.id,
                i.image,
                i.lifecycle.as_str(),
                health(t),
                i.address.map_or("-".to_owned(), |a| a.to_string())
            ));
            if let Some(e) = &i.launch_error {
                out.push_str(&format!("    launch check failed: {e}\n"));
            }
        }
    }
    match &s.roll {
        Some(r) => out.push_str(&format!(
            "roll {}  {} -> {}  {}  phase {}{}  (rerun the roll to continue it)\n",
            r.id,
            r.from,
            r.to,
            r.strategy.as_str(),
            r.phase.as_str(),
            r.reason
                .as_deref()
                .map_or(String::new(), |x| format!(": {x}"))
        )),
        None => out.push_str("no roll in progress\n"),
    }
    if let Some(sb) = &s.standby {
        let until = cloud::time::rfc3339(sb.until_ms / 1000);
        if sb.until_ms > cloud::time::now_ms() {
            out.push_str(&format!(
                "standby {} on {} kept until {until} (roll back switches to it)\n",
                sb.group, sb.image
            ));
        } else {
            out.push_str(&format!(
                "standby {} on {}: window ended {until}, stopped (roll back rolls)\n",
                sb.group, sb.image
            ));
        }
    }
    if let Some(p) = &s.previous {
        out.push_str(&format!(
            "previous image {p}: roll back --group {}\n",
            s.group
        ));
    }
    out
}
