//! The local backend's groups, load balancers and gates, as calls to the
//! fleet daemon ([`super::daemon`]) over its socket, plus the one thing
//! that stays in the caller's process: a roll's lease (a lock file the
//! kernel releases when the holder dies, so takeover is exact).
//!
//! The daemon is started on first use when the client knows how
//! ([`DaemonCommand`]: `roll` passes itself); without that (`bake`), reads
//! fall back to the persisted state so `bake prune` sees the groups, and
//! changes fail with a message saying roll starts the daemon.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::daemon::Paths;
use super::model::Model;
use super::proto::{Answer, Pong, Request};
use crate::error::{CloudError, Result};
use crate::groups::{
    GroupInfo, GroupInstance, GroupSpec, Groups, Lease, LeaseHolder, ScheduledDesired,
    TemplateVersion,
};
use crate::ids::{GroupName, ImageId, InstanceId, ListenerId, Tags, TargetGroupId};
use crate::lb::{
    LbCounters, ListenerInfo, ListenerSpec, LoadBalancers, ShadowReport, ShadowSpec, Target,
    TargetGroupInfo, TargetStatus,
};
use crate::local::LocalCloud;
use crate::probe::{GateOutcome, GateSpec, Probes};
use crate::state::StateDir;

/// How to start the fleet daemon: `program args… --state-dir DIR` (roll:
/// its own executable and its hidden `fleetd` subcommand).
#[derive(Debug, Clone)]
pub struct DaemonCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// How long a started daemon gets to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct FleetClient {
    state: StateDir,
    paths: Paths,
    launcher: Option<DaemonCommand>,
}

enum Reach {
    Answered(Answer),
    NoDaemon,
}

impl FleetClient {
    pub fn new(state: StateDir, launcher: Option<DaemonCommand>) -> FleetClient {
        FleetClient {
            paths: Paths::new(&state),
            state,
            launcher,
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    async fn send(&self, req: &Request) -> Result<Reach> {
        let socket = self.paths.socket();
        let stream = match UnixStream::connect(&socket).await {
            Ok(s) => s,
            Err(_) => return Ok(Reach::NoDaemon),
        };
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_string(req).map_err(|e| CloudError::Api {
            op: "fleet request".into(),
            message: e.to_string(),
            source: None,
        })?;
        line.push('\n');
        if write.write_all(line.as_bytes()).await.is_err() {
            return Ok(Reach::NoDaemon);
        }
        let mut answer = String::new();
        match BufReader::new(read).read_line(&mut answer).await {
            Ok(0) | Err(_) => Err(CloudError::Api {
                op: "fleet daemon".into(),
                message: format!(
                    "the daemon closed the connection without answering (see {})",
                    self.paths.log().display()
                ),
                source: None,
            }),
            Ok(_) => serde_json::from_str::<Answer>(&answer)
                .map(Reach::Answered)
                .map_err(|e| CloudError::Api {
                    op: "fleet daemon".into(),
                    message: format!("unreadable answer: {e}"),
                    source: None,
                }),
        }
    }

    /// Sends `req` to the daemon, starting it first if it is not running
    /// and this client may.
    pub async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        let answer = match self.send(&req).await? {
            Reach::Answered(a) => a,
            Reach::NoDaemon => {
                if let Some(v) = self.offline(&req)? {
                    return decode(v);
                }
                self.start().await?;
                match self.send(&req).await? {
                    Reach::Answered(a) => a,
                    Reach::NoDaemon => {
                        return Err(self.not_running("it stopped right after starting"));
                    }
                }
            }
        };
        match answer {
            Answer::Ok(v) => decode(v),
            Answer::Error(e) => Err(e.into()),
        }
    }

    fn not_running(&self, why: &str) -> CloudError {
        CloudError::Api {
            op: "fleet daemon".into(),
            message: format!(
                "the fleet daemon of {} is not running ({why}); see {}",
                self.state.root().display(),
                self.paths.log().display()
            ),
            source: None,
        }
    }

    /// What can be answered without a daemon: everything when nothing was
    /// ever created (reads say not found, deletes are done), and group
    /// reads from the persisted state for a client that cannot start one.
    fn offline(&self, req: &Request) -> Result<Option<serde_json::Value>> {
        let model = Model::load(&self.paths.model())?;
        let empty = model.groups.is_empty() && model.listeners.is_empty();
        let place = || self.state.root().display().to_string();
        let value = |v: serde_json::Value| Ok(Some(v));
        if empty {
            return match req {
                Request::ListGroups => value(serde_json::json!([])),
                Request::DescribeGroup { name } => {
                    Err(CloudError::not_found("group", name, place()))
                }
                Request::Listener { id } => Err(CloudError::not_found("listener", id, place())),
                Request::Targets { tg } | Request::TargetGroup { tg } => {
                    Err(CloudError::not_found("target group", tg, place()))
                }
                Request::DeleteGroup { .. } | Request::DeleteListener { .. } => {
                    value(serde_json::Value::Null)
                }
                _ => Ok(None),
            };
        }
        if self.launcher.is_some() {
            return Ok(None);
        }
        match req {
            Request::ListGroups => {
                let groups: Vec<GroupInfo> = model.groups.values().map(|g| g.info()).collect();
                value(serde_json::to_value(groups).unwrap_or_default())
            }
            Request::DescribeGroup { name } => match model.groups.get(name) {
                Some(g) => value(serde_json::to_value(g.info()).unwrap_or_default()),
                None => Err(CloudError::not_found("group", name, place())),
            },
            _ => Err(self.not_running("roll starts it")),
        }
    }

    /// Starts the daemon in the background and waits until it answers.
    async fn start(&self) -> Result<()> {
        let Some(cmd) = &self.launcher else {
            return Err(self.not_running("roll starts it"));
        };
        std::fs::create_dir_all(&self.paths.dir)
            .map_err(|e| CloudError::io("create", &self.paths.dir, e))?;
        let log_path = self.paths.log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| CloudError::io("open", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| CloudError::io("dup", &log_path, e))?;
        // Its own process group: a terminal's Ctrl-C to roll must not
        // take the fleet down with it.
        let mut child = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .arg("--state-dir")
            .arg(self.state.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log))
            .stderr(std::process::Stdio::from(log2))
            .process_group(0)
            .spawn()
            .map_err(|e| CloudError::io("start the fleet daemon", &cmd.program, e))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Reach::Answered(Answer::Ok(_)) = self.send(&Request::Ping).await? {
                // Reaped by whoever outlives it (init once roll exits).
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait()
                && !status.success()
            {
                return Err(self.not_running(&format!("it exited with {status}")));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_running("it did not answer within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The running daemon's pid, if one answers.
    pub async fn daemon_pid(&self) -> Option<u32> {
        match self.send(&Request::Ping).await {
            Ok(Reach::Answered(Answer::Ok(v))) => {
                serde_json::from_value::<Pong>(v).ok().map(|p| p.pid)
            }
            _ => None,
        }
    }
}

fn decode<T: DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| CloudError::Api {
        op: "fleet daemon".into(),
        message: format!("unexpected answer: {e}"),
        source: None,
    })
}

/// A group's lease: `fleet/leases/<group>.lock`, locked for the holder's
/// life, with the holder written into it for others to name.
struct LocalLease {
    holder: LeaseHolder,
    _file: std::fs::File,
}

#[async_trait]
impl Lease for LocalLease {
    fn holder(&self) -> &LeaseHolder {
        &self.holder
    }
    async fn renew(&self) -> Result<()> {
        Ok(())
    }
}

fn acquire_lease(paths: &Paths, name: &GroupName, holder: &LeaseHolder) -> Result<Box<dyn Lease>> {
    let dir = paths.dir.join("leases");
    std::fs::create_dir_all(&dir).map_err(|e| CloudError::io("create", &dir, e))?;
    let path = dir.join(format!("{}.lock", name.as_str()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| CloudError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {
            let json = serde_json::to_vec(holder).unwrap_or_default();
            let written = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(&json))
                .and_then(|()| file.sync_data());
            written.map_err(|e| CloudError::io("write", &path, e))?;
            Ok(Box::new(LocalLease {
                holder: holder.clone(),
                _file: file,
            }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let who = serde_json::from_str::<LeaseHolder>(&text)
                .map(|h| h.to_string())
                .unwrap_or_else(|_| format!("another process (lock {})", path.display()));
            Err(CloudError::Busy {
                what: format!("group {name}"),
                holder: who,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(CloudError::io("lock", &path, e)),
    }
}

#[async_trait]
impl Groups for LocalCloud {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        self.fleet.call(Request::ListGroups).await
    }
    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo> {
        self.fleet
            .call(Request::DescribeGroup { name: name.clone() })
            .await
    }
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        self.fleet
            .call(Request::CreateGroup { spec: spec.clone() })
            .await
    }
    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion> {
        self.fleet
            .call(Request::SetImage {
                name: name.clone(),
                image: image.clone(),
            })
            .await
    }
    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()> {
        self.fleet
            .call(Request::SetDesired {
                name: name.clone(),
                desired,
            })
            .await
    }
    async fn set_limits(&self, name: &GroupName, min: u32, max: u32) -> Result<()> {
        self.fleet
            .call(Request::SetLimits {
                name: name.clone(),
                min,
                max,
            })
            .await
    }
    async fn terminate_instance(
        &self,
        name: &GroupName,
        id: &InstanceId,
        decrement: bool,
    ) -> Result<()> {
        self.fleet
            .call(Request::TerminateInstance {
                name: name.clone(),
                id: id.clone(),
                decrement,
            })
            .await
    }
    async fn delete_group(&self, name: &GroupName) -> Result<()> {
        self.fleet
            .call(Request::DeleteGroup { name: name.clone() })
            .await
    }
    async fn tag_group(&self, name: &GroupName, set: &Tags, remove: &[String]) -> Result<()> {
        self.fleet
            .call(Request::TagGroup {
                name: name.clone(),
                set: set.clone(),
                remove: remove.to_vec(),
            })
            .await
    }
    async fn hold_launches(&self, name: &GroupName, hold: bool) -> Result<()> {
        self.fleet
            .call(Request::HoldLaunches {
                name: name.clone(),
                hold,
            })
            .await
    }
    async fn put_in_service(&self, name: &GroupName, id: &InstanceId) -> Result<()> {
        self.fleet
            .call(Request::PutInService {
                name: name.clone(),
                id: id.clone(),
            })
            .await
    }
    async fn schedule_desired(
        &self,
        name: &GroupName,
        scheduled: Option<ScheduledDesired>,
    ) -> Result<()> {
        self.fleet
            .call(Request::ScheduleDesired {
                name: name.clone(),
                scheduled,
            })
            .await
    }
    async fn acquire_lease(
        &self,
        name: &GroupName,
        holder: &LeaseHolder,
    ) -> Result<Box<dyn Lease>> {
        acquire_lease(self.fleet.paths(), name, holder)
    }
}

#[async_trait]
impl LoadBalancers for LocalCloud {
    async fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        self.fleet.call(Request::Targets { tg: tg.clone() }).await
    }
    async fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        self.fleet
            .call(Request::Register {
                tg: tg.clone(),
                targets: targets.to_vec(),
            })
            .await
    }
    async fn deregister(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        self.fleet
            .call(Request::Deregister {
                tg: tg.clone(),
                targets: targets.to_vec(),
            })
            .await
    }
    async fn target_group(&self, tg: &TargetGroupId) -> Result<TargetGroupInfo> {
        self.fleet
            .call(Request::TargetGroup { tg: tg.clone() })
            .await
    }
    async fn create_listener(&self, spec: &ListenerSpec) -> Result<ListenerInfo> {
        self.fleet
            .call(Request::CreateListener { spec: spec.clone() })
            .await
    }
    async fn delete_listener(&self, id: &ListenerId) -> Result<()> {
        self.fleet
            .call(Request::DeleteListener { id: id.clone() })
            .await
    }
    async fn listener(&self, id: &ListenerId) -> Result<ListenerInfo> {
        self.fleet.call(Request::Listener { id: id.clone() }).await
    }
    async fn switch(&self, id: &ListenerId, tg: &TargetGroupId) -> Result<()> {
        self.fleet
            .call(Request::Switch {
                id: id.clone(),
                tg: tg.clone(),
            })
            .await
    }
    async fn set_weights(&self, id: &ListenerId, tg: &TargetGroupId, percent: u32) -> Result<()> {
        self.fleet
            .call(Request::SetWeights {
                id: id.clone(),
                tg: tg.clone(),
                percent,
            })
            .await
    }
    async fn start_shadow(&self, id: &ListenerId, spec: &ShadowSpec) -> Result<()> {
        self.fleet
            .call(Request::StartShadow {
                id: id.clone(),
                spec: spec.clone(),
            })
            .await
    }
    async fn stop_shadow(&self, id: &ListenerId) -> Result<ShadowReport> {
        self.fleet
            .call(Request::StopShadow { id: id.clone() })
            .await
    }
    async fn shadow(&self, id: &ListenerId) -> Result<Option<ShadowReport>> {
        self.fleet.call(Request::Shadow { id: id.clone() }).await
    }
    async fn counters(&self, id: &ListenerId) -> Result<LbCounters> {
        self.fleet.call(Request::Counters { id: id.clone() }).await
    }
}

#[async_trait]
impl Probes for LocalCloud {
    async fn gate(&self, instance: &GroupInstance, spec: &GateSpec) -> Result<GateOutcome> {
        match instance.address {
            Some(addr) => Ok(crate::probe::gate_http(addr, spec).await),
            None => Ok(GateOutcome::NotReady {
                why: "not started yet".into(),
            }),
        }
    }

    async fn alarms_firing(&self, names: &[String]) -> Result<Vec<String>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Err(crate::CloudError::Unsupported {
            backend: "local",
            op: "alarms (CloudWatch alarms are aws's; locally the gate, the balancer's health checks and the shadow comparison watch a roll)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str) -> LeaseHolder {
        LeaseHolder {
            id: id.into(),
            pid: std::process::id(),
            host: "here".into(),
            command: "roll out".into(),
            since_ms: 0,
        }
    }

    #[test]
    fn a_lease_is_exclusive_and_names_its_holder() {
        let t = tempfile::tempdir().unwrap();
        let state = StateDir::open(t.path()).unwrap();
        let paths = Paths::new(&state);
        let web = GroupName::from("web");
        let first = acquire_lease(&paths, &web, &holder("roll-1")).unwrap();
        assert_eq!(first.holder().id, "roll-1");
        let err = acquire_lease(&paths, &web, &holder("roll-2"))
            .err()
            .expect("second lease");
        assert!(matches!(err, CloudError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("roll-1"), "{err}");
        // Another group is free.
        acquire_lease(&paths, &GroupName::from("api"), &holder("roll-3")).unwrap();
        drop(first);
        let again = acquire_lease(&paths, &web, &holder("roll-2")).unwrap();
        assert_eq!(again.holder().id, "roll-2");
    }
}
