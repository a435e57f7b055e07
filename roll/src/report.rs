//! The evidence report (`--report FILE`, JSON): what the roll did and
//! when, every gate result, what the balancer saw during the roll
//! (requests, answers by status, retries, per image), the shadow
//! comparison, and the outcome. Its [`Report::summary`] is the line roll
//! prints on stderr at the end.

use std::collections::BTreeMap;

use cloud::{
    GateOutcome, ImageId, InstanceId, LbCounters, RefreshState, ShadowReport, TargetCounters,
};
use serde::Serialize;

use crate::plan::{Action, Outcome};

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateEvent {
    pub at_ms: u64,
    pub instance: InstanceId,
    pub image: ImageId,
    #[serde(flatten)]
    pub outcome: GateOutcome,
}

/// What the balancer counted between the start and the end of the roll.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    pub requests: u64,
    pub failed: u64,
    pub retries: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Answers by the image of the instance that gave them.
    pub per_image: BTreeMap<ImageId, TargetCounters>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub group: String,
    pub command: String,
    pub roll_id: String,
    pub strategy: String,
    pub from: Option<ImageId>,
    pub to: Option<ImageId>,
    pub instances: u32,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    pub outcome: Option<Outcome>,
    /// Why the roll went back (the failed check, expected and actual).
    pub reason: Option<String>,
    pub timeline: Vec<Event>,
    pub gates: Vec<GateEvent>,
    pub traffic: Option<Traffic>,
    pub shadow: Option<ShadowReport>,
    /// How long the blue/green switch (or switch back) took.
    pub switch_ms: Option<u64>,
    /// Blue/green `--canary`: every weight step asked of the listener.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<CanaryStep>,
    /// The command that undoes this roll.
    pub rollback: String,
    /// An error that ended the run (exit 2, 3, 130).
    pub error: Option<String>,
    /// `--strategy instance-refresh`: the refresh and what it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshReport>,
}

/// An instance refresh as roll watched it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshReport {
    pub id: String,
    /// Every change of its status, percentage, count or reason seen.
    pub history: Vec<RefreshEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshEvent {
    pub at_ms: u64,
    pub status: RefreshState,
    pub percent_complete: u32,
    pub instances_to_update: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RefreshReport {
    /// Adds a look at the refresh unless it says what the last one did.
    pub fn saw(&mut self, at_ms: u64, s: &cloud::RefreshStatus) {
        let e = RefreshEvent {
            at_ms,
            status: s.state,
            percent_complete: s.percent_complete,
            instances_to_update: s.instances_to_update,
            reason: s.reason.clone(),
        };
        if self
            .history
            .last()
            .is_some_and(|l| RefreshEvent { at_ms, ..l.clone() } == e)
        {
            return;
        }
        self.history.push(e);
    }
}

/// One canary step: `percent` of new requests to `target_group` from
/// `at_ms` (0: all of them back to the live set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryStep {
    pub at_ms: u64,
    pub target_group: String,
    pub percent: u32,
}

impl Report {
    pub fn canary_step(&mut self, at_ms: u64, tg: &cloud::TargetGroupId, percent: u32) {
        self.canary.push(CanaryStep {
            at_ms,
            target_group: tg.to_string(),
            percent,
        });
    }

    /// Adds an action to the timeline; repeated waits are kept once.
    pub fn action(&mut self, at_ms: u64, action: &Action) {
        if let Some(last) = self.timeline.last()
            && same_kind(&last.action, action)
        {
            return;
        }
        self.timeline.push(Event {
            at_ms,
            action: action.clone(),
        });
    }

    pub fn gate(
        &mut self,
        at_ms: u64,
        instance: &InstanceId,
        image: &ImageId,
        outcome: &GateOutcome,
    ) {
        // A still-starting instance is probed many times: keep the first
        // "not ready" and every verdict.
        if matches!(outcome, GateOutcome::NotReady { .. })
            && self.gates.iter().any(|g| {
                &g.instance == instance && matches!(g.outcome, GateOutcome::NotReady { .. })
            })
        {
            return;
        }
        self.gates.push(GateEvent {
            at_ms,
            instance: instance.clone(),
            image: image.clone(),
            outcome: outcome.clone(),
        });
    }

    /// The balancer's counters over the roll, split by image.
    pub fn traffic(
        &mut self,
        before: &LbCounters,
        after: &LbCounters,
        images: &BTreeMap<InstanceId, ImageId>,
    ) {
        let d = after.since(before);
        let mut per_image: BTreeMap<ImageId, TargetCounters> = BTreeMap::new();
        for (target, c) in &d.per_target {
            let image = images
                .get(&InstanceId::new(target.clone()))
                .cloned()
                .unwrap_or_else(|| ImageId::from("unknown"));
            let e = per_image.entry(image).or_default();
            e.requests += c.requests;
            for (s, n) in &c.by_status {
                *e.by_status.entry(*s).or_default() += n;
            }
        }
        self.traffic = Some(Traffic {
            requests: d.requests,
            failed: d.failed,
            retries: d.retries,
            by_status: d.by_status,
            per_image,
        });
    }

    /// "web: img-a -> img-b rolling, 3 instances, 4.1 s; 18,204 requests
    /// through the balancer, 0 failed; rollback: roll back --group web"
    pub fn summary(&self) -> String {
        let images = match (&self.from, &self.to) {
            (Some(f), Some(t)) if f != t => format!("{f} -> {t}"),
            (_, Some(t)) => t.to_string(),
            _ => "-".into(),
        };
        let outcome = match self.outcome {
            Some(Outcome::RolledBack) => " ROLLED BACK",
            Some(Outcome::Reverted) => " reverted",
            Some(Outcome::SwitchedBack) => " switched back",
            Some(Outcome::NothingToDo) => " (nothing to do)",
            _ => "",
        };
        let mut s = format!(
            "{}: {images} {}{outcome}, {} instances, {:.1} s",
            self.group,
            self.strategy,
            self.instances,
            self.duration_ms as f64 / 1000.0
        );
        if let Some(t) = &self.traffic {
            s.push_str(&format!(
                "; {} requests through the balancer, {} failed",
                thousands(t.requests),
                thousands(t.failed)
            ));
            if t.retries > 0 {
                s.push_str(&format!(" ({} retried)", thousands(t.retries)));
            }
        }
        if let Some(r) = &self.refresh
            && let Some(last) = r.history.last()
        {
            s.push_str(&format!("; instance refresh {} {}", r.id, last.status));
        }
        if !self.canary.is_empty() {
            let steps: Vec<String> = self
                .canary
                .iter()
                .map(|c| format!("{}%", c.percent))
                .collect();
            s.push_str(&format!("; canary {}", steps.join(" ")));
        }
        if let Some(ms) = self.switch_ms {
            s.push_str(&format!("; switch {ms} ms"));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!("; why: {r}"));
        }
        if !self.rollback.is_empty() {
            s.push_str(&format!("; rollback: {}", self.rollback));
        }
        s
    }
}

fn same_kind(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (Action::Wait { why: x, .. }, Action::Wait { why: y, .. }) => x == y,
        (Action::Drain { instance: x, .. }, Action::Drain { instance: y, .. }) => x == y,
        (Action::Gate { instances: x, .. }, Action::Gate { instances: y, .. }) => x == y,
        _ => false,
    }
}

/// 18204 -> "18,204".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(18_204), "18,204");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn the_summary_reads_like_the_issue_says() {
        let r = Report {
            group: "web".into(),
            strategy: "rolling".into(),
            from: Some(ImageId::from("img-a")),
            to: Some(ImageId::from("img-b")),
            instances: 3,
            duration_ms: 4100,
            outcome: Some(Outcome::RolledOut),
            traffic: Some(Traffic {
                requests: 18_204,
                ..Traffic::default()
            }),
            rollback: "roll back --group web".into(),
            ..Report::default()
        };
        assert_eq!(
            r.summary(),
            "web: img-a -> img-b rolling, 3 instances, 4.1 s; 18,204 requests through the balancer, 0 failed; rollback: roll back --group web"
        );
    }

    #[test]
    fn waits_are_not_repeated() {
        let mut r = Report::default();
        let w = Action::Wait {
            why: "x".into(),
            until_ms: None,
        };
        r.action(1, &w);
        r.action(2, &w);
        r.action(3, &Action::EndBake);
        r.action(4, &w);
        assert_eq!(r.timeline.len(), 3);
    }
}
