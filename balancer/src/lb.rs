//! [`Balancer`], the handle the fleet daemon holds, and [`State`], what its
//! tasks share: target groups, which one is forwarded to, shadowing,
//! counters and the upstream pool.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Error, TargetSpec};
use crate::metrics::{self, Stats, TargetGauge, TargetStats, TargetStatsMap};
use crate::pool::{Group, InFlight, Pick, Settings, lock, read, write};
use crate::server::{self, Connections};
use crate::shadow::ShadowSlot;
use crate::tls;
use crate::types::{LbCounters, ShadowReport, TargetView};

pub(crate) struct State {
    pub(crate) settings: Arc<Settings>,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    /// Where new requests go; swapped whole, so a request sees one
    /// routing.
    forward: RwLock<Forward>,
    /// Counts requests while a weighted forward splits them.
    split_seq: AtomicU64,
    pub(crate) shadow: ShadowSlot,
    pub(crate) stats: Stats,
    target_stats: Mutex<TargetStatsMap>,
    /// `X-Forwarded-Proto` and `X-Forwarded-Port`: the same on every
    /// request of this listener.
    pub(crate) forwarded_proto: HeaderValue,
    pub(crate) forwarded_port: HeaderValue,
}

/// Where new requests go: one target group (`main`), or a share of them
/// (`weighted`: percent 1..=99) to a second one — a blue/green canary.
#[derive(Clone)]
struct Forward {
    main: Arc<Group>,
    weighted: Option<(Arc<Group>, u32)>,
}

/// Whether request number `n` of a split goes to the weighted group:
/// exactly `percent` of every 100 in a row, spread evenly (not in a
/// burst), so a short test sees the share it asked for.
fn to_weighted(n: u64, percent: u32) -> bool {
    let k = n % 100;
    let p = u64::from(percent.min(100));
    (k + 1) * p / 100 > k * p / 100
}

impl State {
    /// The main target group new requests go to.
    pub(crate) fn forwarded(&self) -> Arc<Group> {
        Arc::clone(&read(&self.forward).main)
    }

    /// A target for a new request and the group it is in: the group the
    /// weights choose; while split, a healthy target of the other group
    /// rather than failing open in one whose targets are all unhealthy.
    pub(crate) fn pick(&self) -> Option<(Arc<Group>, InFlight)> {
        let fwd = read(&self.forward).clone();
        let Some((weighted, percent)) = fwd.weighted else {
            let claim = fwd.main.pick(Pick::FailOpen, None)?;
            return Some((fwd.main, claim));
        };
        let n = self.split_seq.fetch_add(1, Ordering::Relaxed);
        let (first, second) = if to_weighted(n, percent) {
            (weighted, fwd.main)
        } else {
            (fwd.main, weighted)
        };
        for g in [&first, &second] {
            if let Some(claim) = g.pick(Pick::HealthyOnly, None) {
                return Some((Arc::clone(g), claim));
            }
        }
        let claim = first.pick(Pick::FailOpen, None)?;
        Some((first, claim))
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
        let shadow = self.shadow.current().map(|s| s.counts());
        metrics::render(
            &self.settings.listener,
            &self.stats,
            &targets,
            &names,
            &gauges,
            shadow.as_ref(),
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
            forward: RwLock::new(Forward {
                main: forwarded,
                weighted: None,
            }),
            split_seq: AtomicU64::new(0),
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
        let fwd = read(&state.forward).clone();
        if Arc::ptr_eq(group, &fwd.main)
            || fwd.weighted.is_some_and(|(w, _)| Arc::ptr_eq(group, &w))
        {
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

    /// Sends new requests to `tg` (all of them: a weighted split ends);
    /// requests in flight finish where they are.
    pub fn forward_to(&self, tg: &str) -> Result<(), Error> {
        let state = self.state();
        let group = state.group(tg)?;
        let previous = std::mem::replace(
            &mut *write(&state.forward),
            Forward {
                main: group,
                weighted: None,
            },
        );
        if previous.main.name.as_ref() != tg || previous.weighted.is_some() {
            tracing::info!(
                listener = %state.settings.listener,
                from = %previous.main.name,
                to = tg,
                "forwarding switched"
            );
        }
        Ok(())
    }

    /// Sends `percent` (0..=100) of new requests to `tg` and the rest to
    /// the other target group of the routing: the one forwarded to now,
    /// or — when that is `tg` — the one it splits with. 100 is
    /// [`Balancer::forward_to`]; 0 sends everything to the other one.
    /// Each group keeps its own health checks and least-outstanding
    /// choice; requests in flight finish where they are.
    pub fn set_weight(&self, tg: &str, percent: u32) -> Result<(), Error> {
        let state = self.state();
        let group = state.group(tg)?;
        let percent = percent.min(100);
        if percent == 100 {
            return self.forward_to(tg);
        }
        let mut fwd = write(&state.forward);
        let next = if Arc::ptr_eq(&fwd.main, &group) {
            let Some((other, _)) = fwd.weighted.clone() else {
                return Err(Error::NothingToSplit(tg.to_string()));
            };
            match percent {
                0 => Forward {
                    main: other,
                    weighted: None,
                },
                p => Forward {
                    main: group,
                    weighted: Some((other, 100 - p)),
                },
            }
        } else {
            Forward {
                main: Arc::clone(&fwd.main),
                weighted: (percent > 0).then_some((group, percent)),
            }
        };
        tracing::info!(
            listener = %state.settings.listener,
            main = %next.main.name,
            to = tg,
            percent,
            "forwarding weighted"
        );
        *fwd = next;
        Ok(())
    }

    pub fn forwarding(&self) -> String {
        self.state().forwarded().name.to_string()
    }

    /// Percent of new requests per target group that gets any, the main
    /// one first.
    pub fn weights(&self) -> Vec<(String, u32)> {
        let fwd = read(&self.state().forward).clone();
        match fwd.weighted {
            None => vec![(fwd.main.name.to_string(), 100)],
            Some((w, p)) => vec![
                (fwd.main.name.to_string(), 100 - p),
                (w.name.to_string(), p),
            ],
        }
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

#[cfg(test)]
mod tests {
    use super::to_weighted;

    #[test]
    fn a_split_sends_exactly_its_share_spread_out() {
        for p in 0..=100 {
            let n = (0..1000).filter(|&n| to_weighted(n, p)).count();
            assert_eq!(n, 10 * p as usize, "{p}%");
        }
        // 50%: every other request, not 50 in a row.
        assert!((0..10).filter(|&n| to_weighted(n, 50)).count() == 5);
        // 10%: one in each run of ten.
        for start in (0..100).step_by(10) {
            assert_eq!(
                (start..start + 10).filter(|&n| to_weighted(n, 10)).count(),
                1
            );
        }
    }
}
