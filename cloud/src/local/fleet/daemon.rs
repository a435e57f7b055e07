//! The fleet daemon: one per state dir, the local backend's Auto Scaling
//! and ELB. It answers the seam's group and load-balancer calls on
//! `fleet/daemon.sock` ([`super::proto`]), runs one [`Balancer`] per
//! listener, and reconciles every group about ten times a second:
//!
//! 1. a scheduled size change that is due is applied;
//! 2. an instance whose processes are gone (its lock is free) is removed,
//!    deregistered, and — not being terminated — replaced;
//! 3. a `Pending` instance (launches not held) is gated
//!    ([`crate::probe::gate_http`] with its image's manifest) and, once it
//!    passes, put in service: registered in the group's target group;
//! 4. fewer live instances than desired: launch from the current template
//!    (backing off after launches that died before going in service);
//!    more: the extra ones (not in service first, then other images, then
//!    the oldest) are deregistered and terminated;
//! 5. a terminating instance is stopped once the balancer has drained it.
//!
//! Every change is persisted (`fleet/state.json`, atomically) before it is
//! answered. Started again — even after `kill -9` — the daemon re-adopts
//! running instances (by their locks), re-binds each listener on its old
//! address and re-registers its targets with their last known health.
//! It exits once it serves no group and no listener.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use balancer::{Balancer, TargetSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use super::model::{GroupRec, InstanceRec, ListenerRec, Model, TargetRec};
use super::proto::{Answer, Pong, Request, WireError};
use super::supervisor;
use crate::error::{CloudError, Result};
use crate::groups::{GroupInfo, GroupSpec, Lifecycle, TemplateVersion};
use crate::ids::{GroupName, ImageId, InstanceId, ListenerId, TargetGroupId};
use crate::images::Images;
use crate::lb::{ListenerInfo, ListenerSpec, Target, TargetGroupInfo, TargetHealth, TargetStatus};
use crate::local::LocalCloud;
use crate::probe::{GateOutcome, GateSpec};
use crate::state::StateDir;
use crate::time::{now_ms, now_unix};

/// How often groups are reconciled when nothing wakes the loop sooner.
const TICK: Duration = Duration::from_millis(100);
/// Without groups or listeners for this long, a daemon that was started
/// but never given anything exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// The longest a request line may be.
const MAX_REQUEST: usize = 1 << 20;

/// The daemon's files under the state dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(state: &StateDir) -> Paths {
        Paths {
            dir: state.path("fleet"),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("daemon.sock")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// The running daemon's pid (informational: liveness is the lock).
    pub fn pid(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    pub fn instance(&self, id: &InstanceId) -> PathBuf {
        supervisor::instance_dir(&self.dir, id)
    }
}

struct Inner {
    model: Model,
    balancers: BTreeMap<ListenerId, Balancer>,
    /// Instances whose launch (unpack, start) is still running.
    launching: HashSet<InstanceId>,
    /// Instances with a gate probe in flight.
    checking: HashSet<InstanceId>,
    /// Instances being stopped.
    stopping: HashSet<InstanceId>,
    gates: HashMap<ImageId, GateSpec>,
    /// Persist before answering / at the end of the tick.
    dirty: bool,
}

pub struct Fleet {
    state: StateDir,
    paths: Paths,
    images: LocalCloud,
    inner: Mutex<Inner>,
    /// One change at a time (requests and the reconcile tick), so a
    /// listener being bound or a group being deleted is never seen half
    /// done by another change.
    ops: tokio::sync::Mutex<()>,
    /// Writes of `state.json`, one at a time and in the order their
    /// snapshots were taken (a later snapshot is never overwritten by an
    /// earlier one).
    persisting: Mutex<()>,
    /// The balancers' runtime: the data path never shares a worker with
    /// the control plane (requests, the tick, fsyncs of the state).
    data: tokio::runtime::Handle,
    wake: Notify,
    stop: Notify,
}

/// Runs the daemon for `state` until it serves nothing (or SIGTERM).
/// Returns `Ok(false)` without doing anything if another daemon holds the
/// state dir.
pub async fn run(state: StateDir) -> Result<bool> {
    let paths = Paths::new(&state);
    std::fs::create_dir_all(paths.dir.join("instances"))
        .map_err(|e| CloudError::io("create", &paths.dir, e))?;
    let Some(_lock) = take_lock(&paths).await? else {
        return Ok(false);
    };
    let _ = std::fs::write(paths.pid(), format!("{}\n", std::process::id()));
    let data = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kiln-balancer")
        .enable_all()
        .build()
        .map_err(|e| CloudError::io("start", "the balancer runtime", e))?;
    let result = serve(state, paths, data.handle().clone()).await;
    // Dropping a runtime inside another one is not allowed; its tasks are
    // over (every balancer was shut down) or abandoned with the process.
    data.shutdown_background();
    result
}

async fn serve(state: StateDir, paths: Paths, data: tokio::runtime::Handle) -> Result<bool> {
    let fleet = Arc::new(Fleet::open(state, paths, data)?);
    fleet.adopt().await?;
    let socket = fleet.paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| CloudError::io("bind", &socket, e))?;
    tracing::info!(pid = std::process::id(), socket = %socket.display(), "fleet daemon up");

    let serving = {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let fleet = fleet.clone();
                        tokio::spawn(async move { fleet.serve_connection(stream).await });
                    }
                    Err(e) => {
                        tracing::warn!("accept on the fleet socket: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };
    let ticking = {
        let fleet = fleet.clone();
        tokio::spawn(async move { fleet.reconcile_forever().await })
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CloudError::io("install", "SIGTERM handler", e))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| CloudError::io("install", "SIGHUP handler", e))?;
    // Since when the daemon has served nothing (a daemon started for a
    // request that then failed exits after a while).
    let mut empty_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: fleet daemon stopping (instances keep running)");
                break;
            }
            _ = hup.recv() => {}
            _ = fleet.stop.notified() => {
                tracing::info!("no groups and no listeners left: fleet daemon exiting");
                break;
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !fleet.is_empty() {
                    empty_since = None;
                } else if empty_since.get_or_insert_with(tokio::time::Instant::now).elapsed() > IDLE_EXIT {
                    tracing::info!("idle with nothing to serve: fleet daemon exiting");
                    break;
                }
            }
        }
    }
    serving.abort();
    ticking.abort();
    // Launches in flight finish first: one whose group is gone cleans up
    // after itself, the others are recorded with their process groups
    // (else a started instance would be neither stopped nor adopted).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !fleet.lock().launching.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_file(&socket);
    let balancers: Vec<Balancer> = fleet.lock().balancers.values().cloned().collect();
    for b in balancers {
        fleet.stop_balancer(b, Duration::from_secs(2)).await;
    }
    fleet.persist().await?;
    Ok(true)
}

/// The daemon lock, waited for a little (a daemon that is exiting still
/// holds it); `None` if a live daemon keeps it.
async fn take_lock(paths: &Paths) -> Result<Option<std::fs::File>> {
    let path = paths.lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CloudError::io("open", &path, e))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                if tokio::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(CloudError::io("lock", &path, e)),
        }
    }
}

fn valid_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CloudError::invalid(
            what,
            format!("{name:?}: use 1 to 64 letters, digits, '-' and '_'"),
        ))
    }
}

fn target_status(v: balancer::TargetView) -> TargetStatus {
    TargetStatus {
        target: Target {
            instance: InstanceId::new(v.id),
            port: v.addr.port(),
        },
        address: Some(v.addr),
        health: v.health,
        since_ms: v.since_ms,
        in_flight: v.in_flight,
    }
}

fn lb_error(e: balancer::Error) -> CloudError {
    match e {
        balancer::Error::UnknownTargetGroup(tg) => {
            CloudError::not_found("target group", tg, "the local fleet")
        }
        e @ balancer::Error::NothingToSplit(_) => CloudError::invalid("weights", e.to_string()),
        other => CloudError::Api {
            op: "local balancer".into(),
            message: other.to_string(),
            source: None,
        },
    }
}

/// Launch backoff after `n` launches in a row died before going in
/// service: 1 s, 2 s, 4 s … 60 s.
fn backoff_ms(n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        (1000u64 << (n - 1).min(6)).min(60_000)
    }
}

impl Fleet {
    fn open(state: StateDir, paths: Paths, data: tokio::runtime::Handle) -> Result<Fleet> {
        let model = Model::load(&paths.model())?;
        Ok(Fleet {
            images: LocalCloud::new(state.clone()),
            state,
            paths,
            inner: Mutex::new(Inner {
                model,
                balancers: BTreeMap::new(),
                launching: HashSet::new(),
                checking: HashSet::new(),
                stopping: HashSet::new(),
                gates: HashMap::new(),
                dirty: false,
            }),
            ops: tokio::sync::Mutex::new(()),
            persisting: Mutex::new(()),
            data,
            wake: Notify::new(),
            stop: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the state it
        // guards is still consistent enough to serve and persist.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.model.groups.is_empty() && inner.model.listeners.is_empty()
    }

    fn persist_now(&self) -> Result<()> {
        let _one = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let model = {
            let mut inner = self.lock();
            inner.dirty = false;
            inner.model.clone()
        };
        model.save(&self.paths.model())
    }

    /// Persists on the blocking pool (an fsync may take long on a busy
    /// disk; it must not stall a runtime worker).
    async fn persist(self: &Arc<Self>) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.persist_now())
            .await
            .map_err(|e| CloudError::io("persist", "state.json", std::io::Error::other(e)))?
    }

    /// Re-binds listeners, re-adopts live instances, drops dead ones.
    async fn adopt(&self) -> Result<()> {
        let listeners: Vec<ListenerRec> = self.lock().model.listeners.values().cloned().collect();
        for rec in listeners {
            let mut spec = rec.spec.clone();
            spec.address = rec.bound;
            spec.admin = rec.admin_bound.or(spec.admin);
            let b = start_balancer(&self.data, &spec, &rec.forward).await?;
            if let Some((tg, percent)) = &rec.split {
                b.set_weight(tg.as_str(), *percent).map_err(lb_error)?;
            }
            self.lock().balancers.insert(rec.spec.id.clone(), b);
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        for g in inner.model.groups.values_mut() {
            g.instances.retain(|i| {
                let dir = self.paths.instance(&i.id);
                let alive = i.pgid.is_some() && supervisor::alive(&dir);
                if !alive {
                    tracing::info!(instance = %i.id, group = %g.name, "not running any more: dropped (the group replaces it)");
                    let _ = supervisor::remove_dir(&dir);
                }
                alive
            });
        }
        let model = &mut inner.model;
        for l in model.listeners.values_mut() {
            let Some(b) = inner.balancers.get(&l.spec.id) else {
                continue;
            };
            for (tg, targets) in l.targets.iter_mut() {
                targets.retain(|t| {
                    model.groups.values().any(|g| {
                        g.instances
                            .iter()
                            .any(|i| i.id == t.instance && i.lifecycle != Lifecycle::Terminating)
                    })
                });
                for t in targets.iter() {
                    let _ = b.register(
                        tg.as_str(),
                        TargetSpec {
                            id: t.instance.to_string(),
                            addr: t.address,
                            initial: if t.healthy {
                                TargetHealth::Healthy
                            } else {
                                TargetHealth::Initial
                            },
                        },
                    );
                }
            }
        }
        inner.dirty = true;
        drop(guard);
        self.persist_now()
    }

    async fn serve_connection(self: Arc<Self>, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
        let answer = match reader.read_line(&mut line).await {
            Ok(0) => return,
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(req) => match self.handle(req).await {
                    Ok(v) => Answer::Ok(v),
                    Err(e) => Answer::Error(WireError::from(&e)),
                },
                Err(e) => Answer::Error(WireError::Invalid {
                    what: "fleet request".into(),
                    why: e.to_string(),
                }),
            },
            Err(e) => Answer::Error(WireError::Failed {
                message: format!("reading the request: {e}"),
            }),
        };
        let mut text = serde_json::to_string(&answer).unwrap_or_else(|e| {
            format!(r#"{{"error":{{"kind":"failed","message":"cannot encode the answer: {e}"}}}}"#)
        });
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
        let _ = write.shutdown().await;
    }

    async fn handle(self: &Arc<Self>, req: Request) -> Result<serde_json::Value> {
        let read = req.is_read();
        let _op = if read {
            None
        } else {
            Some(self.ops.lock().await)
        };
        let out = self.dispatch(req).await;
        if !read {
            if self.lock().dirty {
                // Persist before answering: an answered change survives
                // kill -9 of the daemon.
                self.persist().await?;
            }
            self.wake.notify_one();
            if self.is_empty() {
                self.stop.notify_one();
            }
        }
        out
    }

    async fn dispatch(&self, req: Request) -> Result<serde_json::Value> {
        fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value> {
            serde_json::to_value(v).map_err(|e| CloudError::Api {
                op: "fleet daemon".into(),
                message: format!("cannot encode: {e}"),
                source: None,
            })
        }
        match req {
            Request::Ping => json(Pong {
                pid: std::process::id(),
                state_dir: self.state.root().display().to_string(),
            }),
            Request::ListGroups => {
                let inner = self.lock();
                json(
                    inner
                        .model
                        .groups
                        .values()
                        .map(GroupRec::info)
                        .collect::<Vec<GroupInfo>>(),
                )
            }
            Request::DescribeGroup { name } => json(self.group(&name, |g| Ok(g.info()))?),
            Request::CreateGroup { spec } => json(self.create_group(spec)?),
            Request::SetImage { name, image } => json(self.set_image(&name, &image)?),
            Request::SetDesired { name, desired } => json(self.group_mut(&name, |g| {
                crate::groups::check_desired(&name, desired, g.min, g.max)?;
                g.desired = desired;
                Ok(())
            })?),
            Request::SetLimits { name, min, max } => json(self.group_mut(&name, |g| {
                crate::groups::check_limits(min, max)?;
                g.min = min;
                g.max = max;
                g.desired = g.desired.clamp(min, max);
                Ok(())
            })?),
            Request::TerminateInstance {
                name,
                id,
                decrement,
            } => json(self.terminate(&name, &id, decrement)?),
            Request::DeleteGroup { name } => json(self.delete_group(&name).await?),
            Request::TagGroup { name, set, remove } => json(self.group_mut(&name, |g| {
                for k in &remove {
                    g.tags.remove(k);
                }
                g.tags.extend(set.clone());
                Ok(())
            })?),
            Request::HoldLaunches { name, hold } => json(self.group_mut(&name, |g| {
                g.hold_launches = hold;
                if !hold {
                    // Released: waiting instances are gated by the group
                    // itself, like any launch.
                    for i in g.instances.iter_mut() {
                        if i.lifecycle == Lifecycle::PendingWait {
                            i.lifecycle = Lifecycle::Pending;
                        }
                    }
                }
                Ok(())
            })?),
            Request::PutInService { name, id } => json(self.put_in_service(&name, &id)?),
            Request::ScheduleDesired { name, scheduled } => json(self.group_mut(&name, |g| {
                g.scheduled = scheduled;
                Ok(())
            })?),
            Request::Targets { tg } => json(self.targets(&tg)?),
            Request::Register { tg, targets } => json(self.register(&tg, &targets)?),
            Request::Deregister { tg, targets } => json(self.deregister(&tg, &targets)?),
            Request::TargetGroup { tg } => json(self.target_group(&tg)?),
            Request::CreateListener { spec } => json(self.create_listener(spec).await?),
            Request::DeleteListener { id } => json(self.delete_listener(&id).await?),
            Request::Listener { id } => json(self.listener_info(&id)?),
            Request::Switch { id, tg } => json(self.with_balancer(&id, |b, rec| {
                b.forward_to(tg.as_str()).map_err(lb_error)?;
                rec.forward = tg.clone();
                rec.split = None;
                tracing::info!(listener = %id, to = %tg, "listener switched");
                Ok(())
            })?),
            Request::SetWeights { id, tg, percent } => {
                json(self.with_balancer(&id, |b, rec| {
                    if !rec.spec.target_groups.contains(&tg) {
                        return Err(CloudError::not_found(
                            "target group",
                            &tg,
                            "the local fleet",
                        ));
                    }
                    b.set_weight(tg.as_str(), percent).map_err(lb_error)?;
                    let mut weights = b.weights().into_iter();
                    if let Some((main, _)) = weights.next() {
                        rec.forward = TargetGroupId::new(main);
                    }
                    rec.split = weights.next().map(|(t, p)| (TargetGroupId::new(t), p));
                    tracing::info!(listener = %id, to = %tg, percent, "listener weighted");
                    Ok(())
                })?)
            }
            Request::StartShadow { id, spec } => json(self.with_balancer(&id, |b, _| {
                b.start_shadow(spec.target_group.as_str(), spec.percent)
                    .map_err(lb_error)
            })?),
            Request::StopShadow { id } => {
                json(self.with_balancer(&id, |b, _| Ok(b.stop_shadow().unwrap_or_default()))?)
            }
            Request::Shadow { id } => json(self.with_balancer(&id, |b, _| Ok(b.shadow()))?),
            Request::Counters { id } => json(self.with_balancer(&id, |b, _| Ok(b.counters()))?),
        }
    }

    fn not_found_group(&self, name: &GroupName) -> CloudError {
        CloudError::not_found("group", name, self.state.root().display())
    }

    fn group<T>(&self, name: &GroupName, f: impl FnOnce(&GroupRec) -> Result<T>) -> Result<T> {
        let inner = self.lock();
        let g = inner
            .model
            .groups
            .get(name)
            .ok_or_else(|| self.not_found_group(name))?;
        f(g)
    }

    fn group_mut<T>(
        &self,
        name: &GroupName,
        f: impl FnOnce(&mut GroupRec) -> Result<T>,
    ) -> Result<T> {
        let mut inner = self.lock();
        let g = inner
            .model
            .groups
            .get_mut(name)
            .ok_or_else(|| self.not_found_group(name))?;
        let out = f(g)?;
        inner.dirty = true;
        Ok(out)
    }

    fn check_image(&self, image: &ImageId) -> Result<()> {
        self.images.rootfs_path(image).map(|_| ())
    }

    fn create_group(&self, spec: GroupSpec) -> Result<GroupInfo> {
        valid_name("group name", spec.name.as_str())?;
        if let Some(g) = self.lock().model.groups.get(&spec.name) {
            return Ok(g.info());
        }
        crate::groups::check_spec_size(&spec)?;
        self.check_image(&spec.image)?;
        let mut inner = self.lock();
        if let Some(tg) = &spec.target_group
            && inner.model.listener_of(tg).is_none()
        {
            return Err(CloudError::not_found(
                "target group",
                tg,
                self.state.root().display(),
            ));
        }
        let rec = GroupRec {
            name: spec.name.clone(),
            desired: spec.desired,
            min: spec.min,
            max: spec.max,
            current: TemplateVersion {
                version: 1,
                image: spec.image.clone(),
                created_unix: now_unix(),
            },
            previous: Vec::new(),
            target_group: spec.target_group.clone(),
            tags: spec.tags.clone(),
            hold_launches: false,
            scheduled: None,
            instances: Vec::new(),
            failed_launches: 0,
            next_launch_ms: 0,
        };
        let info = rec.info();
        inner.model.groups.insert(spec.name.clone(), rec);
        inner.dirty = true;
        tracing::info!(group = %spec.name, image = %spec.image, desired = spec.desired, "group created");
        Ok(info)
    }

    fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion> {
        self.check_image(image)?;
        self.group_mut(name, |g| {
            if &g.current.image == image {
                return Ok(g.current.clone());
            }
            let v = TemplateVersion {
                version: g.current.version + 1,
                image: image.clone(),
                created_unix: now_unix(),
            };
            let old = std::mem::replace(&mut g.current, v.clone());
            g.previous.insert(0, old);
            g.failed_launches = 0;
            g.next_launch_ms = 0;
            tracing::info!(group = %name, image = %image, version = v.version, "template version");
            Ok(v)
        })
    }

    /// Marks an instance terminating and deregisters it; the tick stops it
    /// once the balancer drained it.
    fn terminate(&self, name: &GroupName, id: &InstanceId, decrement: bool) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let g = inner
            .model
            .groups
            .get_mut(name)
            .ok_or_else(|| self.not_found_group(name))?;
        let Some(i) = g.instances.iter_mut().find(|i| &i.id == id) else {
            return Ok(());
        };
        if i.lifecycle == Lifecycle::Terminating {
            return Ok(());
        }
        if decrement {
            g.desired = crate::groups::decremented(name, g.desired, g.min)?;
        }
        i.lifecycle = Lifecycle::Terminating;
        tracing::info!(group = %name, instance = %id, decrement, "terminating");
        deregister_everywhere(&mut inner.model, &inner.balancers, id);
        inner.dirty = true;
        Ok(())
    }

    async fn delete_group(&self, name: &GroupName) -> Result<()> {
        let victims: Vec<(InstanceId, Option<u32>)> = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let Some(g) = inner.model.groups.get_mut(name) else {
                return Ok(());
            };
            g.desired = 0;
            g.min = 0;
            let ids: Vec<(InstanceId, Option<u32>)> =
                g.instances.iter().map(|i| (i.id.clone(), i.pgid)).collect();
            for i in g.instances.iter_mut() {
                i.lifecycle = Lifecycle::Terminating;
            }
            for (id, _) in &ids {
                deregister_everywhere(&mut inner.model, &inner.balancers, id);
            }
            // An instance still being launched (unpacking into its
            // directory) is its launch's to clean up: the launch finds the
            // group gone, stops what it started and removes the directory.
            // Removing it here races the unpacking (ENOTEMPTY).
            ids.into_iter()
                .filter(|(id, _)| !inner.launching.contains(id))
                .collect()
        };
        // Deleting stops at once (nothing drains a group being deleted;
        // roll down takes the listener away first).
        let stops = victims.iter().map(|(id, pgid)| {
            let dir = self.paths.instance(id);
            async move {
                if let Some(pgid) = pgid {
                    supervisor::stop(&dir, *pgid, supervisor::STOP_GRACE).await?;
                }
                supervisor::remove_dir(&dir)
            }
        });
        for stop in stops {
            stop.await?;
        }
        let mut inner = self.lock();
        inner.model.groups.remove(name);
        inner.dirty = true;
        tracing::info!(group = %name, "group deleted");
        Ok(())
    }

    fn put_in_service(&self, name: &GroupName, id: &InstanceId) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let g = inner
            .model
            .groups
            .get_mut(name)
            .ok_or_else(|| self.not_found_group(name))?;
        let tg = g.target_group.clone();
        let i = g
            .instances
            .iter_mut()
            .find(|i| &i.id == id)
            .ok_or_else(|| CloudError::not_found("instance", id, format!("group {name}")))?;
        match i.lifecycle {
            Lifecycle::InService => return Ok(()),
            Lifecycle::Terminating => {
                return Err(CloudError::invalid(
                    "instance",
                    format!("{id} is terminating; it cannot go in service"),
                ));
            }
            Lifecycle::Pending | Lifecycle::PendingWait => {}
        }
        let Some(address) = i.address else {
            return Err(CloudError::invalid(
                "instance",
                format!("{id} has not started yet"),
            ));
        };
        i.lifecycle = Lifecycle::InService;
        i.launch_error = None;
        g.failed_launches = 0;
        if let Some(tg) = tg {
            register_in(&mut inner.model, &inner.balancers, &tg, id, address)?;
        }
        inner.dirty = true;
        tracing::info!(group = %name, instance = %id, "in service");
        Ok(())
    }

    fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        let inner = self.lock();
        let l = inner
            .model
            .listener_of(tg)
            .ok_or_else(|| CloudError::not_found("target group", tg, "the local fleet"))?;
        let b = inner
            .balancers
            .get(&l.spec.id)
            .ok_or_else(|| CloudError::not_found("listener", &l.spec.id, "the local fleet"))?;
        Ok(b.targets(tg.as_str())
            .map_err(lb_error)?
            .into_iter()
            .map(target_status)
            .collect())
    }

    fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for t in targets {
            let address = inner
                .model
                .instance(&t.instance)
                .and_then(|(_, i)| i.address)
                .ok_or_else(|| CloudError::not_found("instance", &t.instance, "the local fleet"))?;
            register_in(&mut inner.model, &inner.balancers, tg, &t.instance, address)?;
        }
        inner.dirty = true;
        Ok(())
    }

    fn deregister(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.model.listener_of(tg).is_none() {
            return Err(CloudError::not_found("target group", tg, "the local fleet"));
        }
        for t in targets {
            deregister_from(&mut inner.model, &inner.balancers, tg, &t.instance);
        }
        inner.dirty = true;
        Ok(())
    }

    fn target_group(&self, tg: &TargetGroupId) -> Result<TargetGroupInfo> {
        let targets = self.targets(tg)?;
        let inner = self.lock();
        let l = inner
            .model
            .listener_of(tg)
            .ok_or_else(|| CloudError::not_found("target group", tg, "the local fleet"))?;
        Ok(TargetGroupInfo {
            id: tg.clone(),
            health_check: l.spec.health_check.clone(),
            deregistration_delay_ms: l.spec.deregistration_delay_ms,
            targets,
        })
    }

    fn listener_info(&self, id: &ListenerId) -> Result<ListenerInfo> {
        let inner = self.lock();
        let l = inner
            .model
            .listeners
            .get(id)
            .ok_or_else(|| CloudError::not_found("listener", id, "the local fleet"))?;
        Ok(listener_info(l))
    }

    async fn create_listener(&self, spec: ListenerSpec) -> Result<ListenerInfo> {
        valid_name("listener id", spec.id.as_str())?;
        {
            let inner = self.lock();
            if let Some(l) = inner.model.listeners.get(&spec.id) {
                return Ok(listener_info(l));
            }
            if spec.target_groups.is_empty() || !spec.target_groups.contains(&spec.forward) {
                return Err(CloudError::invalid(
                    "listener",
                    "it forwards to one of its own target groups",
                ));
            }
            for tg in &spec.target_groups {
                valid_name("target group id", tg.as_str())?;
                if let Some(other) = inner.model.listener_of(tg) {
                    return Err(CloudError::invalid(
                        "target group",
                        format!("{tg} already belongs to listener {}", other.spec.id),
                    ));
                }
            }
        }
        let b = start_balancer(&self.data, &spec, &spec.forward).await?;
        let rec = ListenerRec {
            bound: b.address(),
            admin_bound: b.admin_address(),
            forward: spec.forward.clone(),
            split: None,
            targets: spec
                .target_groups
                .iter()
                .map(|tg| (tg.clone(), Vec::new()))
                .collect(),
            spec: spec.clone(),
        };
        let info = listener_info(&rec);
        let mut inner = self.lock();
        inner.balancers.insert(spec.id.clone(), b);
        inner.model.listeners.insert(spec.id.clone(), rec);
        inner.dirty = true;
        tracing::info!(listener = %spec.id, address = %info.address, "listener up");
        Ok(info)
    }

    async fn delete_listener(&self, id: &ListenerId) -> Result<()> {
        let b = {
            let mut inner = self.lock();
            inner.model.listeners.remove(id);
            inner.dirty = true;
            inner.balancers.remove(id)
        };
        if let Some(b) = b {
            self.stop_balancer(b, Duration::from_secs(10)).await;
            tracing::info!(listener = %id, "listener down");
        }
        Ok(())
    }

    fn with_balancer<T>(
        &self,
        id: &ListenerId,
        f: impl FnOnce(&Balancer, &mut ListenerRec) -> Result<T>,
    ) -> Result<T> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let rec = inner
            .model
            .listeners
            .get_mut(id)
            .ok_or_else(|| CloudError::not_found("listener", id, "the local fleet"))?;
        let b = inner
            .balancers
            .get(id)
            .ok_or_else(|| CloudError::not_found("listener", id, "the local fleet"))?;
        let out = f(b, rec)?;
        inner.dirty = true;
        Ok(out)
    }

    /// Shuts a balancer down on its own runtime.
    async fn stop_balancer(&self, b: Balancer, grace: Duration) {
        let _ = self
            .data
            .spawn(async move { b.shutdown(grace).await })
            .await;
    }

    async fn reconcile_forever(self: Arc<Self>) {
        loop {
            {
                let _op = self.ops.lock().await;
                self.clone().tick().await;
            }
            // Outside the ops lock: a slow disk delays the next tick, never
            // a request.
            if self.lock().dirty
                && let Err(e) = self.persist().await
            {
                tracing::error!("persisting the fleet state: {e}");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One reconciliation of every group (see the module doc).
    async fn tick(self: Arc<Self>) {
        let now = now_ms();
        let mut launches: Vec<(GroupName, InstanceId, ImageId)> = Vec::new();
        let mut gates: Vec<(GroupName, InstanceId, std::net::SocketAddr, ImageId)> = Vec::new();
        let mut stops: Vec<(InstanceId, Option<u32>)> = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            self.refresh_health(inner);
            let names: Vec<GroupName> = inner.model.groups.keys().cloned().collect();
            for name in names {
                let Some(g) = inner.model.groups.get_mut(&name) else {
                    continue;
                };
                // 1. A scheduled size change that is due.
                if let Some(s) = g.scheduled
                    && s.at_ms <= now
                {
                    g.min = g.min.min(s.desired);
                    g.desired = s.desired.min(g.max);
                    g.scheduled = None;
                    inner.dirty = true;
                    tracing::info!(group = %name, desired = g.desired, "scheduled size applied");
                }
                // 2. Instances whose processes are gone.
                let mut dead = Vec::new();
                for i in &g.instances {
                    let busy = inner.launching.contains(&i.id) || inner.stopping.contains(&i.id);
                    if !busy && !supervisor::alive(&self.paths.instance(&i.id)) {
                        dead.push((i.id.clone(), i.lifecycle));
                    }
                }
                for (id, lifecycle) in &dead {
                    g.instances.retain(|i| &i.id != id);
                    let _ = supervisor::remove_dir(&self.paths.instance(id));
                    if *lifecycle != Lifecycle::Terminating {
                        tracing::warn!(group = %name, instance = %id, "instance died; the group replaces it");
                        if *lifecycle != Lifecycle::InService {
                            g.failed_launches += 1;
                            g.next_launch_ms = now + backoff_ms(g.failed_launches);
                        }
                    }
                }
                for (id, _) in &dead {
                    inner.checking.remove(id);
                    inner.dirty = true;
                    // A dead target has nothing in flight worth waiting
                    // for: it leaves every target group now.
                    deregister_everywhere(&mut inner.model, &inner.balancers, id);
                }
                let Some(g) = inner.model.groups.get_mut(&name) else {
                    continue;
                };
                // 3. Pending instances are gated by the group itself.
                for i in &g.instances {
                    if i.lifecycle == Lifecycle::Pending
                        && i.launch_error.is_none()
                        && !inner.checking.contains(&i.id)
                        && let Some(addr) = i.address
                    {
                        inner.checking.insert(i.id.clone());
                        gates.push((name.clone(), i.id.clone(), addr, i.image.clone()));
                    }
                }
                // 4. Size.
                let live = g.live() as u32;
                if live < g.desired && now >= g.next_launch_ms {
                    for _ in live..g.desired {
                        let id = supervisor::new_id();
                        g.instances.push(InstanceRec {
                            id: id.clone(),
                            image: g.current.image.clone(),
                            address: None,
                            launched_ms: now,
                            lifecycle: if g.hold_launches {
                                Lifecycle::PendingWait
                            } else {
                                Lifecycle::Pending
                            },
                            launch_error: None,
                            pgid: None,
                        });
                        inner.launching.insert(id.clone());
                        launches.push((name.clone(), id, g.current.image.clone()));
                    }
                    inner.dirty = true;
                } else if live > g.desired {
                    let victims = crate::groups::scale_in_victims(
                        g.instances.iter().map(InstanceRec::candidate),
                        &g.current.image,
                        (live - g.desired) as usize,
                    );
                    for id in &victims {
                        if let Some(i) = g.instance_mut(id) {
                            i.lifecycle = Lifecycle::Terminating;
                        }
                        tracing::info!(group = %name, instance = %id, "scaling in");
                    }
                    for id in &victims {
                        deregister_everywhere(&mut inner.model, &inner.balancers, id);
                    }
                    inner.dirty = true;
                }
                // 5. Terminating instances the balancer has drained.
                let Some(g) = inner.model.groups.get(&name) else {
                    continue;
                };
                for i in &g.instances {
                    if i.lifecycle != Lifecycle::Terminating
                        || inner.stopping.contains(&i.id)
                        || inner.launching.contains(&i.id)
                    {
                        continue;
                    }
                    let draining = in_balancer(&inner.model, &inner.balancers, &i.id);
                    if !draining {
                        inner.stopping.insert(i.id.clone());
                        stops.push((i.id.clone(), i.pgid));
                    }
                }
            }
        }
        for (group, id, image) in launches {
            let fleet = self.clone();
            tokio::spawn(async move { fleet.launch(group, id, image).await });
        }
        for (group, id, addr, image) in gates {
            let fleet = self.clone();
            tokio::spawn(async move { fleet.gate(group, id, addr, image).await });
        }
        for (id, pgid) in stops {
            let fleet = self.clone();
            tokio::spawn(async move { fleet.stop_instance(id, pgid).await });
        }
    }

    /// Copies the balancer's view of health into the model, so a restart
    /// starts from it.
    fn refresh_health(&self, inner: &mut Inner) {
        for l in inner.model.listeners.values_mut() {
            let Some(b) = inner.balancers.get(&l.spec.id) else {
                continue;
            };
            for (tg, targets) in l.targets.iter_mut() {
                let Ok(views) = b.targets(tg.as_str()) else {
                    continue;
                };
                for t in targets.iter_mut() {
                    let healthy = views
                        .iter()
                        .any(|v| v.id == t.instance.as_str() && v.health == TargetHealth::Healthy);
                    if healthy != t.healthy {
                        t.healthy = healthy;
                        inner.dirty = true;
                    }
                }
            }
        }
    }

    async fn launch(self: Arc<Self>, group: GroupName, id: InstanceId, image: ImageId) {
        let dir = self.paths.instance(&id);
        let result = match self.images.rootfs_path(&image) {
            Ok(rootfs) => supervisor::start(&dir, &rootfs, &image, None).await,
            Err(e) => Err(e),
        };
        if result.is_ok() {
            // Evidence for tests and operators: how many instances this
            // state dir ever launched (no instance is launched twice).
            let _ = self.state.bump("instance-launches");
        }
        // The group went away while we unpacked (delete_group leaves the
        // instance to us): whatever was started is stopped, its directory
        // removed, once the lock is released — and only then is the
        // launch over (the daemon waits for launches before it exits).
        let orphan = {
            let mut inner = self.lock();
            inner.dirty = true;
            let rec = inner
                .model
                .groups
                .get_mut(&group)
                .and_then(|g| g.instance_mut(&id));
            let mut orphan = None;
            match (result, rec) {
                (Ok(started), Some(rec)) => {
                    rec.pgid = Some(started.pgid);
                    rec.address = Some(started.address);
                    tracing::info!(group = %group, instance = %id, image = %image, address = %started.address, "instance launched");
                    let mut child = started.child;
                    tokio::spawn(async move {
                        // Reaps it when it exits; the tick notices by its lock.
                        let _ = child.wait().await;
                    });
                }
                (Ok(started), None) => {
                    let mut child = started.child;
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                    orphan = Some(Some(started.pgid));
                }
                (Err(e), rec) => {
                    tracing::error!(group = %group, instance = %id, "launch failed: {e}");
                    match rec {
                        // No process holds its lock: the tick drops it and
                        // launches again after a backoff.
                        Some(rec) => rec.launch_error = Some(e.to_string()),
                        None => orphan = Some(None),
                    }
                }
            }
            if orphan.is_none() {
                inner.launching.remove(&id);
            }
            orphan
        };
        if let Some(pgid) = orphan {
            // It never took traffic: no grace.
            if let Some(pgid) = pgid
                && let Err(e) = supervisor::stop(&dir, pgid, Duration::ZERO).await
            {
                tracing::error!(instance = %id, "stopping an instance of a deleted group: {e}");
            }
            let _ = supervisor::remove_dir(&dir);
            self.lock().launching.remove(&id);
        }
    }

    async fn gate(
        self: Arc<Self>,
        group: GroupName,
        id: InstanceId,
        addr: std::net::SocketAddr,
        image: ImageId,
    ) {
        let spec = match self.gate_spec(&image).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(instance = %id, "cannot gate: {e}");
                self.lock().checking.remove(&id);
                return;
            }
        };
        let outcome = crate::probe::gate_http(addr, &spec).await;
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.checking.remove(&id);
        let Some(g) = inner.model.groups.get_mut(&group) else {
            return;
        };
        let tg = g.target_group.clone();
        let Some(i) = g.instance_mut(&id) else {
            return;
        };
        if i.lifecycle != Lifecycle::Pending {
            return;
        }
        match outcome {
            GateOutcome::Passed => {
                i.lifecycle = Lifecycle::InService;
                g.failed_launches = 0;
                if let Some(tg) = tg {
                    let _ = register_in(&mut inner.model, &inner.balancers, &tg, &id, addr);
                }
                tracing::info!(group = %group, instance = %id, "passed its launch check: in service");
                inner.dirty = true;
            }
            GateOutcome::Failed { .. } => {
                tracing::warn!(group = %group, instance = %id, "failed its launch check: {outcome}");
                i.launch_error = Some(outcome.to_string());
                inner.dirty = true;
            }
            GateOutcome::NotReady { .. } => {}
        }
    }

    async fn gate_spec(&self, image: &ImageId) -> Result<GateSpec> {
        if let Some(s) = self.lock().gates.get(image) {
            return Ok(s.clone());
        }
        let m = self.images.manifest(image).await?;
        let spec = GateSpec::from_manifest(image, &m);
        self.lock().gates.insert(image.clone(), spec.clone());
        Ok(spec)
    }

    async fn stop_instance(self: Arc<Self>, id: InstanceId, pgid: Option<u32>) {
        let dir = self.paths.instance(&id);
        let stopped = match pgid {
            Some(pgid) => supervisor::stop(&dir, pgid, supervisor::STOP_GRACE).await,
            None => Ok(()),
        };
        if let Err(e) = &stopped {
            tracing::error!(instance = %id, "stopping: {e}");
        }
        let _ = supervisor::remove_dir(&dir);
        let mut inner = self.lock();
        inner.stopping.remove(&id);
        if stopped.is_ok() {
            for g in inner.model.groups.values_mut() {
                g.instances.retain(|i| i.id != id);
            }
            tracing::info!(instance = %id, "terminated");
        }
        inner.dirty = true;
        drop(inner);
        self.wake.notify_one();
    }
}

/// Starts a balancer on the data runtime (its tasks stay there).
async fn start_balancer(
    data: &tokio::runtime::Handle,
    spec: &ListenerSpec,
    forward: &TargetGroupId,
) -> Result<Balancer> {
    let cfg = balancer::Config {
        name: spec.id.to_string(),
        listen: spec.address,
        admin: spec.admin,
        tls: spec.tls.clone(),
        health: spec.health_check.clone(),
        deregistration_delay: Duration::from_millis(spec.deregistration_delay_ms),
    };
    let tgs: Vec<String> = spec.target_groups.iter().map(|t| t.to_string()).collect();
    let forward = forward.to_string();
    let started = data
        .spawn(async move { Balancer::start(cfg, &tgs, &forward).await })
        .await
        .map_err(|e| CloudError::Api {
            op: format!("start listener {}", spec.id),
            message: e.to_string(),
            source: None,
        })?;
    started.map_err(|e| match e {
        balancer::Error::Tls(why) => CloudError::invalid("TLS", why),
        other => CloudError::Api {
            op: format!("start listener {} on {}", spec.id, spec.address),
            message: other.to_string(),
            source: None,
        },
    })
}

fn listener_info(l: &ListenerRec) -> ListenerInfo {
    ListenerInfo {
        id: l.spec.id.clone(),
        address: l.bound.to_string(),
        tls: l.spec.tls.is_some(),
        admin: l.admin_bound.map(|a| a.to_string()),
        target_groups: l.spec.target_groups.clone(),
        forward: match &l.split {
            Some((tg, p)) if *p > 50 => tg.clone(),
            _ => l.forward.clone(),
        },
        weights: l
            .spec
            .target_groups
            .iter()
            .map(|tg| {
                let w = match &l.split {
                    Some((s, p)) if s == tg => *p,
                    Some((_, p)) if *tg == l.forward => 100 - p,
                    None if *tg == l.forward => 100,
                    _ => 0,
                };
                (tg.clone(), w)
            })
            .collect(),
    }
}

fn register_in(
    model: &mut Model,
    balancers: &BTreeMap<ListenerId, Balancer>,
    tg: &TargetGroupId,
    id: &InstanceId,
    address: std::net::SocketAddr,
) -> Result<()> {
    let l = model
        .listener_of_mut(tg)
        .ok_or_else(|| CloudError::not_found("target group", tg, "the local fleet"))?;
    let b = balancers
        .get(&l.spec.id)
        .ok_or_else(|| CloudError::not_found("listener", &l.spec.id, "the local fleet"))?;
    b.register(
        tg.as_str(),
        TargetSpec {
            id: id.to_string(),
            addr: address,
            initial: TargetHealth::Initial,
        },
    )
    .map_err(lb_error)?;
    let targets = l.targets.entry(tg.clone()).or_default();
    if !targets.iter().any(|t| &t.instance == id) {
        targets.push(TargetRec {
            instance: id.clone(),
            address,
            healthy: false,
        });
    }
    Ok(())
}

fn deregister_from(
    model: &mut Model,
    balancers: &BTreeMap<ListenerId, Balancer>,
    tg: &TargetGroupId,
    id: &InstanceId,
) {
    if let Some(l) = model.listener_of_mut(tg) {
        if let Some(b) = balancers.get(&l.spec.id) {
            let _ = b.deregister(tg.as_str(), id.as_str());
        }
        if let Some(ts) = l.targets.get_mut(tg) {
            ts.retain(|t| &t.instance != id);
        }
    }
}

/// Out of every target group of every listener: an instance being stopped
/// may also sit in another group's target group (a rolling canary in the
/// idle one, a hand-registered target).
fn deregister_everywhere(
    model: &mut Model,
    balancers: &BTreeMap<ListenerId, Balancer>,
    id: &InstanceId,
) {
    let tgs: Vec<TargetGroupId> = model
        .listeners
        .values()
        .flat_map(|l| l.spec.target_groups.iter().cloned())
        .collect();
    for tg in tgs {
        deregister_from(model, balancers, &tg, id);
    }
}

/// Whether any balancer still lists the instance (registered or
/// draining) in any target group.
fn in_balancer(model: &Model, balancers: &BTreeMap<ListenerId, Balancer>, id: &InstanceId) -> bool {
    model.listeners.values().any(|l| {
        balancers.get(&l.spec.id).is_some_and(|b| {
            l.spec.target_groups.iter().any(|tg| {
                b.targets(tg.as_str())
                    .is_ok_and(|ts| ts.iter().any(|t| t.id == id.as_str()))
            })
        })
    })
}
