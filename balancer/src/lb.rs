//! [`Balancer`], the handle the fleet daemon holds, and [`State`], what its
//! tasks share: target groups, which one is forwarded to, shadowing,
//! counters and the upstream pool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Error, TargetSpec};
use crate::metrics::{self, Stats, TargetGauge, TargetStats, TargetStatsMap};
use crate::pool::{Group, Settings, lock, read, write};
use crate::server::{self, Connections};
use crate::shadow::ShadowSlot;
use crate::tls;
use crate::types::{LbCounters, ShadowReport, TargetView};

pub(crate) struct State {
    pub(crate) settings: Arc<Settings>,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    /// Where new requests go; swapped whole, so a request sees one group.
    forward: RwLock<Arc<Group>>,
    pub(crate) shadow: ShadowSlot,
    pub(crate) stats: Stats,
    target_stats: Mutex<TargetStatsMap>,
    /// `X-Forwarded-Proto` and `X-Forwarded-Port`: the same on every
    /// request of this listener.
    pub(crate) forwarded_proto: HeaderValue,
    pub(crate) forwarded_port: HeaderValue,
}

impl State {
    pub(crate) fn forwarded(&self) -> Arc<Group> {
        Arc::clone(&read(&self.forward))
    }

    fn group(&self, tg: &str) -> Result<Arc<Group>, Error> {
        read(&self.groups)
            .get(tg)
            .cloned()
            .ok_or_else(|| Error::UnknownTargetGroup(tg.to_string()))
    }

    pub(crate) fn render_metrics(&self) -> String {
        let members: Vec<(Arc<Group>, Vec<_>)> = read(&self.groups)
            .values()
            .map(|g| (Arc::clone(g), g.members()))
            .collect();
        let gauges: Vec<TargetGauge<'_>> = members
            .iter()
            .flat_map(|(g, targets)| {
                targets.iter().map(move |t| TargetGauge {
                    target_group: &g.name,
                    target: &t.id,
                    health: t.health_str(),
                    in_flight: t.in_flight(),
                })
            })
            .collect();
        let names: Vec<String> = members.iter().map(|(g, _)| g.name.to_string()).collect();
        let targets = lock(&self.target_stats).clone();
        metrics::render(
            &self.settings.listener,
            &self.stats,
            &targets,
            &names,
            &gauges,
        )
    }
}

/// One listener of the local load balancer. Cheap to clone; all clones
/// drive the same listener. It runs until [`Balancer::shutdown`] (dropping
/// the handles does not stop it).
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    address: SocketAddr,
    admin_address: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accepting: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Connections>,
}

impl Balancer {
    /// Binds the listener (and admin address), starts serving and health
    /// checking. The target groups exist from the start; `forward` must be
    /// one of them.
    pub async fn start(
        cfg: Config,
        target_groups: &[String],
        forward: &str,
    ) -> Result<Balancer, Error> {
        let rt = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        if !target_groups.iter().any(|tg| tg == forward) {
            return Err(Error::UnknownTargetGroup(forward.to_string()));
        }
        let tls = cfg.tls.as_ref().map(tls::acceptor).transpose()?;
        let (listener, address) = bind(cfg.listen).await?;
        let admin = match cfg.admin {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };

        let settings = Arc::new(Settings {
            listener: cfg.name,
            health: cfg.health,
            deregistration_delay: cfg.deregistration_delay,
            rt: rt.clone(),
        });
        let groups: BTreeMap<String, Arc<Group>> = target_groups
            .iter()
            .map(|tg| (tg.clone(), Arc::new(Group::new(tg, Arc::clone(&settings)))))
            .collect();
        let forwarded = groups
            .get(forward)
            .cloned()
            .ok_or_else(|| Error::UnknownTargetGroup(forward.to_string()))?;
        let state = Arc::new(State {
            settings: Arc::clone(&settings),
            groups: RwLock::new(groups),
            forward: RwLock::new(forwarded),
            shadow: ShadowSlot::new(),
            stats: Stats::new(),
            target_stats: Mutex::new(BTreeMap::new()),
            forwarded_proto: HeaderValue::from_static(if tls.is_some() { "https" } else { "http" }),
            forwarded_port: HeaderValue::from(address.port()),
        });

        let (stop, stop_rx) = watch::channel(false);
        let is_tls = tls.is_some();
        let connections = Arc::new(Connections::new());
        let accepting = rt.spawn(server::proxy(
            listener,
            Arc::clone(&state),
            tls,
            Arc::clone(&connections),
            stop_rx.clone(),
        ));
        let admin_address = admin.map(|(listener, addr)| {
            rt.spawn(server::admin(listener, Arc::clone(&state), stop_rx));
            addr
        });
        tracing::info!(
            listener = %settings.listener,
            %address,
            admin = ?admin_address,
            tls = is_tls,
            forward,
            "balancer listening"
        );
        Ok(Balancer {
            inner: Arc::new(Inner {
                state,
                address,
                admin_address,
                stop,
                accepting: Mutex::new(Some(accepting)),
                connections,
            }),
        })
    }

    /// The bound address (port 0 resolved).
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.inner.admin_address
    }

    fn state(&self) -> &State {
        &self.inner.state
    }

    /// Adds an empty target group; one that exists is left as it is.
    pub fn add_target_group(&self, tg: &str) {
        let state = self.state();
        write(&state.groups)
            .entry(tg.to_string())
            .or_insert_with(|| Arc::new(Group::new(tg, Arc::clone(&state.settings))));
    }

    /// Removes a target group and its targets (requests in flight finish).
    /// Refuses the one forwarded to and the one mirrored to.
    pub fn remove_target_group(&self, tg: &str) -> Result<(), Error> {
        let state = self.state();
        let mut groups = write(&state.groups);
        let Some(group) = groups.get(tg) else {
            return Ok(());
        };
        let in_use = |role| {
            Err(Error::TargetGroupInUse {
                target_group: tg.to_string(),
                role,
            })
        };
        if Arc::ptr_eq(group, &read(&state.forward)) {
            return in_use("forwarded to");
        }
        if state
            .shadow
            .current()
            .is_some_and(|s| Arc::ptr_eq(&s.group, group))
        {
            return in_use("mirrored to (stop shadowing first)");
        }
        if let Some(group) = groups.remove(tg) {
            group.close();
        }
        Ok(())
    }

    pub fn target_groups(&self) -> Vec<String> {
        read(&self.state().groups).keys().cloned().collect()
    }

    /// Registers a target. Idempotent: a registered target keeps its state;
    /// a draining one becomes initial again and takes requests once
    /// healthy; the same id at a new address replaces the old target.
    pub fn register(&self, tg: &str, target: TargetSpec) -> Result<(), Error> {
        let state = self.state();
        let group = state.group(tg)?;
        let stats = Arc::clone(
            lock(&state.target_stats)
                .entry((tg.to_string(), target.id.clone()))
                .or_insert_with(|| Arc::new(TargetStats::new())),
        );
        group.register(target, stats);
        Ok(())
    }

    /// Starts draining a target (no new requests; gone once its requests
    /// finished or the deregistration delay passed). An unknown id is not
    /// an error.
    pub fn deregister(&self, tg: &str, id: &str) -> Result<(), Error> {
        self.state().group(tg)?.deregister(id);
        Ok(())
    }

    /// Sends new requests to `tg`; requests in flight finish where they
    /// are.
    pub fn forward_to(&self, tg: &str) -> Result<(), Error> {
        let state = self.state();
        let group = state.group(tg)?;
        let previous = std::mem::replace(&mut *write(&state.forward), group);
        if previous.name.as_ref() != tg {
            tracing::info!(
                listener = %state.settings.listener,
                from = %previous.name,
                to = tg,
                "forwarding switched"
            );
        }
        Ok(())
    }

    pub fn forwarding(&self) -> String {
        self.state().forwarded().name.to_string()
    }

    /// Registered and draining targets, sorted by id.
    pub fn targets(&self, tg: &str) -> Result<Vec<TargetView>, Error> {
        Ok(self.state().group(tg)?.views())
    }

    /// Mirrors `percent`% (clamped to 1..=100) of live GETs to `tg`;
    /// results start from zero.
    pub fn start_shadow(&self, tg: &str, percent: u32) -> Result<(), Error> {
        let state = self.state();
        let group = state.group(tg)?;
        state.shadow.start(group, percent);
        tracing::info!(
            listener = %state.settings.listener,
            target_group = tg,
            percent = percent.clamp(1, 100),
            "shadowing started"
        );
        Ok(())
    }

    /// Stops mirroring and returns the final report (comparisons still
    /// running are not waited for).
    pub fn stop_shadow(&self) -> Option<ShadowReport> {
        let report = self.state().shadow.stop()?.report();
        tracing::info!(
            listener = %self.state().settings.listener,
            target_group = %report.target_group,
            compared = report.compared,
            differing = report.differing,
            errors = report.errors,
            "shadowing stopped"
        );
        Some(report)
    }

    /// The current report while mirroring.
    pub fn shadow(&self) -> Option<ShadowReport> {
        self.state().shadow.current().map(|s| s.report())
    }

    pub fn counters(&self) -> LbCounters {
        let state = self.state();
        let targets = lock(&state.target_stats).clone();
        metrics::counters(&state.stats, &targets)
    }

    /// Stops accepting, lets requests in flight finish for at most
    /// `grace` (idle keep-alive connections close at once), then closes
    /// what is left, stops health checks and closes idle connections to
    /// targets.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        let _ = inner.stop.send(true);
        let accepting = lock(&inner.accepting).take();
        if let Some(task) = accepting {
            // The listener is closed once the accept loop is over.
            let _ = task.await;
        }
        inner.connections.close(false);
        if tokio::time::timeout(grace, inner.connections.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = %inner.state.settings.listener,
                connections = inner.connections.open(),
                "grace period over: closing connections still busy"
            );
        }
        inner.connections.close(true);
        for group in read(&inner.state.groups).values() {
            group.stop();
        }
        tracing::info!(listener = %inner.state.settings.listener, "balancer stopped");
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}
