//! The fleet daemon's wire protocol on `fleet/daemon.sock`: one JSON
//! request per connection, one JSON answer (`{"ok": …}` or
//! `{"error": …}`), each on one line. Errors cross the socket as
//! [`WireError`] and come back as the same [`CloudError`] variant, so a
//! client classifies them (bad input, not found, busy) as if the call had
//! been local.

use serde::{Deserialize, Serialize};

use crate::error::CloudError;
use crate::groups::{GroupSpec, ScheduledDesired};
use crate::ids::{GroupName, ImageId, InstanceId, ListenerId, Tags, TargetGroupId};
use crate::lb::{ListenerSpec, ShadowSpec, Target};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    /// Who is there: the daemon's pid and state dir.
    Ping,
    ListGroups,
    DescribeGroup {
        name: GroupName,
    },
    CreateGroup {
        spec: GroupSpec,
    },
    SetImage {
        name: GroupName,
        image: ImageId,
    },
    SetDesired {
        name: GroupName,
        desired: u32,
    },
    SetLimits {
        name: GroupName,
        min: u32,
        max: u32,
    },
    TerminateInstance {
        name: GroupName,
        id: InstanceId,
        decrement: bool,
    },
    DeleteGroup {
        name: GroupName,
    },
    TagGroup {
        name: GroupName,
        set: Tags,
        remove: Vec<String>,
    },
    HoldLaunches {
        name: GroupName,
        hold: bool,
    },
    PutInService {
        name: GroupName,
        id: InstanceId,
    },
    ScheduleDesired {
        name: GroupName,
        scheduled: Option<ScheduledDesired>,
    },
    Targets {
        tg: TargetGroupId,
    },
    Register {
        tg: TargetGroupId,
        targets: Vec<Target>,
    },
    Deregister {
        tg: TargetGroupId,
        targets: Vec<Target>,
    },
    TargetGroup {
        tg: TargetGroupId,
    },
    CreateListener {
        spec: ListenerSpec,
    },
    DeleteListener {
        id: ListenerId,
    },
    Listener {
        id: ListenerId,
    },
    Switch {
        id: ListenerId,
        tg: TargetGroupId,
    },
    /// `percent` of new requests to `tg`, the rest to the other one.
    SetWeights {
        id: ListenerId,
        tg: TargetGroupId,
        percent: u32,
    },
    StartShadow {
        id: ListenerId,
        spec: ShadowSpec,
    },
    StopShadow {
        id: ListenerId,
    },
    Shadow {
        id: ListenerId,
    },
    Counters {
        id: ListenerId,
    },
}

impl Request {
    /// Whether the request only reads (answered without touching state).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Request::Ping
                | Request::ListGroups
                | Request::DescribeGroup { .. }
                | Request::Targets { .. }
                | Request::TargetGroup { .. }
                | Request::Listener { .. }
                | Request::Shadow { .. }
                | Request::Counters { .. }
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ok(serde_json::Value),
    Error(WireError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    pub pid: u32,
    pub state_dir: String,
}

/// A [`CloudError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WireError {
    NotFound {
        what: String,
        id: String,
        place: String,
    },
    Invalid {
        what: String,
        why: String,
    },
    Unsupported {
        op: String,
    },
    Busy {
        what: String,
        holder: String,
    },
    Timeout {
        what: String,
        after_ms: u64,
    },
    Failed {
        message: String,
    },
}

/// `NotFound` kinds are `&'static str` in [`CloudError`]: the ones the
/// daemon uses come back as themselves.
fn static_kind(kind: &str) -> &'static str {
    match kind {
        "group" => "group",
        "listener" => "listener",
        "target group" => "target group",
        "instance" => "instance",
        "image" => "image",
        _ => "resource",
    }
}

impl From<&CloudError> for WireError {
    fn from(e: &CloudError) -> WireError {
        match e {
            CloudError::NotFound { kind, id, place } => WireError::NotFound {
                what: (*kind).to_owned(),
                id: id.clone(),
                place: place.clone(),
            },
            CloudError::Invalid { what, why } => WireError::Invalid {
                what: what.clone(),
                why: why.clone(),
            },
            CloudError::Unsupported { op, .. } => WireError::Unsupported {
                op: (*op).to_owned(),
            },
            CloudError::Busy { what, holder } => WireError::Busy {
                what: what.clone(),
                holder: holder.clone(),
            },
            CloudError::Timeout { what, after } => WireError::Timeout {
                what: what.clone(),
                after_ms: after.as_millis() as u64,
            },
            other => WireError::Failed {
                message: other.to_string(),
            },
        }
    }
}

impl From<WireError> for CloudError {
    fn from(e: WireError) -> CloudError {
        match e {
            WireError::NotFound { what, id, place } => CloudError::NotFound {
                kind: static_kind(&what),
                id,
                place,
            },
            WireError::Invalid { what, why } => CloudError::Invalid { what, why },
            WireError::Unsupported { op } => CloudError::Invalid {
                what: "request".into(),
                why: format!("the local fleet does not support {op}"),
            },
            WireError::Busy { what, holder } => CloudError::Busy { what, holder },
            WireError::Timeout { what, after_ms } => CloudError::Timeout {
                what,
                after: std::time::Duration::from_millis(after_ms),
            },
            WireError::Failed { message } => CloudError::Api {
                op: "fleet daemon".into(),
                message,
                source: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_class_across_the_socket() {
        let cases = [
            CloudError::not_found("group", "web", "/s"),
            CloudError::invalid("size", "must be > 0"),
            CloudError::Busy {
                what: "group web".into(),
                holder: "roll-1".into(),
            },
        ];
        for e in cases {
            let wire = WireError::from(&e);
            let json = serde_json::to_string(&wire).unwrap();
            let back: CloudError = serde_json::from_str::<WireError>(&json).unwrap().into();
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.is_bad_input(), e.is_bad_input());
            assert_eq!(back.is_not_found(), e.is_not_found());
        }
    }

    #[test]
    fn requests_are_tagged_by_op() {
        let r = Request::SetDesired {
            name: GroupName::from("web"),
            desired: 4,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"op":"set_desired","name":"web","desired":4}"#);
    }
}
