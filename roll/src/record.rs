//! The roll record: everything a roll must remember, kept in the service
//! group's tags (locally in the fleet daemon's state, on aws as Auto
//! Scaling tags), never only in the roll process. `kill -9` of `roll`
//! loses nothing: the next run reads the record and continues.
//!
//! One tag per field (aws tag values are at most 256 characters), all
//! under `kiln:roll-…`, plus the blue/green standby (`kiln:standby-…`)
//! and the last image a roll finished from (`kiln:previous-image`), which
//! `roll back` returns to.

use cloud::{GroupName, ImageId, Tags};
use serde::{Deserialize, Serialize};

pub mod keys {
    pub const ID: &str = "kiln:roll-id";
    pub const KIND: &str = "kiln:roll-kind";
    pub const STRATEGY: &str = "kiln:roll-strategy";
    pub const PHASE: &str = "kiln:roll-phase";
    pub const FROM: &str = "kiln:roll-from";
    pub const TO: &str = "kiln:roll-to";
    pub const SIZE: &str = "kiln:roll-size";
    pub const DESIRED: &str = "kiln:roll-desired";
    pub const DESIRED_PREV: &str = "kiln:roll-desired-prev";
    pub const STARTED: &str = "kiln:roll-started";
    pub const BAKE_STARTED: &str = "kiln:roll-bake-started";
    pub const BAKE_DONE: &str = "kiln:roll-bake-done";
    pub const REASON: &str = "kiln:roll-reason";
    /// The group the new image comes up in (not `cloud::tags::ROLL_GROUP`,
    /// the ownership tag `roll up` writes).
    pub const GROUP: &str = "kiln:roll-into";
    pub const MIN_ORIG: &str = "kiln:roll-min-orig";
    pub const MAX_ORIG: &str = "kiln:roll-max-orig";
    /// An instance refresh the roll started (`--strategy
    /// instance-refresh`): a rerun watches it instead of starting one.
    pub const REFRESH: &str = "kiln:roll-refresh";
    /// Blue/green `--canary`: the percent of new requests the roll last
    /// asked the listener to send to the new set, and since when (ms),
    /// written before it asks.
    pub const CANARY: &str = "kiln:roll-canary";
    pub const CANARY_SINCE: &str = "kiln:roll-canary-since";
    pub const STANDBY: &str = "kiln:standby";
    pub const STANDBY_IMAGE: &str = "kiln:standby-image";
    pub const STANDBY_UNTIL: &str = "kiln:standby-until";
    pub const PREVIOUS: &str = "kiln:previous-image";

    /// Every key a roll in progress writes (cleared when it finishes).
    pub const ROLL: [&str; 19] = [
        ID,
        KIND,
        STRATEGY,
        PHASE,
        FROM,
        TO,
        SIZE,
        DESIRED,
        DESIRED_PREV,
        STARTED,
        BAKE_STARTED,
        BAKE_DONE,
        REASON,
        GROUP,
        MIN_ORIG,
        MAX_ORIG,
        REFRESH,
        CANARY,
        CANARY_SINCE,
    ];
    pub const STANDBY_ALL: [&str; 3] = [STANDBY, STANDBY_IMAGE, STANDBY_UNTIL];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Rolling,
    BlueGreen,
    /// Auto Scaling's instance refresh, started and watched by
    /// `refresh.rs` (never planned by `plan.rs`).
    InstanceRefresh,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue-green",
            Strategy::InstanceRefresh => "instance-refresh",
        }
    }
    fn parse(s: &str) -> Option<Strategy> {
        match s {
            "rolling" => Some(Strategy::Rolling),
            "blue-green" => Some(Strategy::BlueGreen),
            "instance-refresh" => Some(Strategy::InstanceRefresh),
            _ => None,
        }
    }
}

/// Which command began the roll: a rerun of the same command continues
/// it, another one supersedes or reverses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Out,
    Back,
    Scale,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Out => "out",
            Kind::Back => "back",
            Kind::Scale => "scale",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "out" => Some(Kind::Out),
            "back" => Some(Kind::Back),
            "scale" => Some(Kind::Scale),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Towards `to`.
    Rolling,
    /// A gate failed: back towards `from` (exit 1).
    RollingBack,
    /// `roll back` asked to undo an unfinished roll: back towards `from`
    /// (exit 0).
    Reverting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Rolling => "rolling",
            Phase::RollingBack => "rolling-back",
            Phase::Reverting => "reverting",
        }
    }
    fn parse(s: &str) -> Option<Phase> {
        match s {
            "rolling" => Some(Phase::Rolling),
            "rolling-back" => Some(Phase::RollingBack),
            "reverting" => Some(Phase::Reverting),
            _ => None,
        }
    }
}

/// A roll in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roll {
    pub id: String,
    pub kind: Kind,
    pub strategy: Strategy,
    pub phase: Phase,
    pub from: ImageId,
    pub to: ImageId,
    /// Instances the service should have when the roll is done.
    pub size: u32,
    /// The desired size the roll last asked for on the group it changes,
    /// written before asking, and the one before that: a group showing
    /// neither was resized by someone else (drift).
    pub desired: u32,
    pub desired_prev: u32,
    pub started_ms: u64,
    pub bake_started_ms: Option<u64>,
    pub bake_done: bool,
    /// Why it is rolling back.
    pub reason: Option<String>,
    /// The group the new image comes up in (blue/green: the idle one).
    pub group: GroupName,
    pub min_orig: u32,
    pub max_orig: u32,
}

impl Roll {
    /// The image the roll is heading to now.
    pub fn target(&self) -> &ImageId {
        match self.phase {
            Phase::Rolling => &self.to,
            Phase::RollingBack | Phase::Reverting => &self.from,
        }
    }
}

/// A blue/green standby: the previous set, kept running (out of service)
/// until `until_ms` so `roll back` is one switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standby {
    pub group: GroupName,
    pub image: ImageId,
    pub until_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub roll: Option<Roll>,
    pub standby: Option<Standby>,
    /// What `roll back` returns to by default.
    pub previous: Option<ImageId>,
    /// The blue/green canary step of the roll in progress.
    pub canary: Option<Canary>,
}

/// A blue/green canary step: `percent` of new requests asked of the
/// listener for the new set at `since_ms` (kept beside the roll's own
/// fields, cleared with them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub percent: u32,
    pub since_ms: u64,
}

impl Canary {
    pub fn to_tags(&self) -> Tags {
        let mut t = Tags::new();
        t.insert(keys::CANARY.into(), self.percent.to_string());
        t.insert(keys::CANARY_SINCE.into(), self.since_ms.to_string());
        t
    }
}

fn num(t: &Tags, k: &str) -> Option<u64> {
    t.get(k).and_then(|v| v.parse().ok())
}

impl Record {
    /// Reads the record from a group's tags. A roll whose tags are
    /// incomplete (a write cut short) reads as no roll: its images are
    /// still visible on the instances, and the next roll starts over.
    pub fn from_tags(t: &Tags) -> Record {
        let get = |k: &str| t.get(k).cloned();
        let roll = (|| {
            Some(Roll {
                id: get(keys::ID)?,
                kind: Kind::parse(&get(keys::KIND)?)?,
                strategy: Strategy::parse(&get(keys::STRATEGY)?)?,
                phase: Phase::parse(&get(keys::PHASE)?)?,
                from: ImageId::new(get(keys::FROM)?),
                to: ImageId::new(get(keys::TO)?),
                size: num(t, keys::SIZE)? as u32,
                desired: num(t, keys::DESIRED)? as u32,
                desired_prev: num(t, keys::DESIRED_PREV)? as u32,
                started_ms: num(t, keys::STARTED)?,
                bake_started_ms: num(t, keys::BAKE_STARTED),
                bake_done: get(keys::BAKE_DONE).as_deref() == Some("true"),
                reason: get(keys::REASON),
                group: GroupName::new(get(keys::GROUP)?),
                min_orig: num(t, keys::MIN_ORIG)? as u32,
                max_orig: num(t, keys::MAX_ORIG)? as u32,
            })
        })();
        let standby = (|| {
            Some(Standby {
                group: GroupName::new(get(keys::STANDBY)?),
                image: ImageId::new(get(keys::STANDBY_IMAGE)?),
                until_ms: num(t, keys::STANDBY_UNTIL)?,
            })
        })();
        let canary = (|| {
            Some(Canary {
                percent: num(t, keys::CANARY)? as u32,
                since_ms: num(t, keys::CANARY_SINCE)?,
            })
        })()
        .filter(|_| roll.is_some());
        Record {
            roll,
            standby,
            previous: get(keys::PREVIOUS).map(ImageId::new),
            canary,
        }
    }
}

/// Tag values: aws allows 256 characters.
fn short(s: &str) -> String {
    if s.len() <= 256 {
        return s.to_owned();
    }
    let mut end = 253;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Roll {
    pub fn to_tags(&self) -> Tags {
        let mut t = Tags::new();
        let mut put = |k: &str, v: String| {
            t.insert(k.to_owned(), short(&v));
        };
        put(keys::ID, self.id.clone());
        put(keys::KIND, self.kind.as_str().into());
        put(keys::STRATEGY, self.strategy.as_str().into());
        put(keys::PHASE, self.phase.as_str().into());
        put(keys::FROM, self.from.to_string());
        put(keys::TO, self.to.to_string());
        put(keys::SIZE, self.size.to_string());
        put(keys::DESIRED, self.desired.to_string());
        put(keys::DESIRED_PREV, self.desired_prev.to_string());
        put(keys::STARTED, self.started_ms.to_string());
        if let Some(b) = self.bake_started_ms {
            put(keys::BAKE_STARTED, b.to_string());
        }
        if self.bake_done {
            put(keys::BAKE_DONE, "true".into());
        }
        if let Some(r) = &self.reason {
            put(keys::REASON, r.clone());
        }
        put(keys::GROUP, self.group.to_string());
        put(keys::MIN_ORIG, self.min_orig.to_string());
        put(keys::MAX_ORIG, self.max_orig.to_string());
        t
    }
}

impl Standby {
    pub fn to_tags(&self) -> Tags {
        let mut t = Tags::new();
        t.insert(keys::STANDBY.into(), self.group.to_string());
        t.insert(keys::STANDBY_IMAGE.into(), self.image.to_string());
        t.insert(keys::STANDBY_UNTIL.into(), self.until_ms.to_string());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_tags() {
        let roll = Roll {
            id: "roll-1".into(),
            kind: Kind::Back,
            strategy: Strategy::BlueGreen,
            phase: Phase::RollingBack,
            from: ImageId::from("img-a"),
            to: ImageId::from("img-b"),
            size: 3,
            desired: 4,
            desired_prev: 3,
            started_ms: 1000,
            bake_started_ms: Some(2000),
            bake_done: true,
            reason: Some("x".repeat(300)),
            group: GroupName::from("web--b"),
            min_orig: 0,
            max_orig: 3,
        };
        let standby = Standby {
            group: GroupName::from("web"),
            image: ImageId::from("img-0"),
            until_ms: 99,
        };
        let mut tags = roll.to_tags();
        tags.extend(standby.to_tags());
        tags.insert(keys::PREVIOUS.into(), "img-0".into());
        let back = Record::from_tags(&tags);
        let r = back.roll.unwrap();
        assert_eq!(r.reason.as_ref().unwrap().len(), 256);
        assert_eq!(
            Roll {
                reason: roll.reason.clone().map(|s| short(&s)),
                ..roll.clone()
            },
            r
        );
        assert_eq!(back.standby, Some(standby));
        assert_eq!(back.previous, Some(ImageId::from("img-0")));
        for k in keys::ROLL {
            assert!(k.starts_with("kiln:roll-"));
            // Finish removes these: never the ownership tag roll up wrote.
            assert_ne!(k, cloud::tags::ROLL_GROUP);
        }
    }

    #[test]
    fn a_canary_step_reads_back_with_its_roll_only() {
        let roll = Roll {
            id: "roll-1".into(),
            kind: Kind::Out,
            strategy: Strategy::BlueGreen,
            phase: Phase::Rolling,
            from: ImageId::from("img-a"),
            to: ImageId::from("img-b"),
            size: 3,
            desired: 3,
            desired_prev: 0,
            started_ms: 1000,
            bake_started_ms: None,
            bake_done: false,
            reason: None,
            group: GroupName::from("web--b"),
            min_orig: 0,
            max_orig: 3,
        };
        let canary = Canary {
            percent: 10,
            since_ms: 2000,
        };
        let mut tags = roll.to_tags();
        tags.extend(canary.to_tags());
        assert_eq!(Record::from_tags(&tags).canary, Some(canary));
        for k in canary.to_tags().keys() {
            assert!(
                keys::ROLL.contains(&k.as_str()),
                "{k} is cleared with the roll"
            );
        }
        assert_eq!(Record::from_tags(&canary.to_tags()).canary, None);
    }

    #[test]
    fn an_incomplete_record_is_no_roll() {
        let mut tags = Tags::new();
        tags.insert(keys::ID.into(), "roll-1".into());
        assert_eq!(Record::from_tags(&tags).roll, None);
    }
}
