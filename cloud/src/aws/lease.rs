//! A group's lease on aws: two tags on the Auto Scaling group,
//! `kiln:lease` = `<holder id>;<expiry, Unix ms>;<pid>@<host>` and `kiln:lease-holder`
//! = the holder as people read it (its `Display`, cut to Auto Scaling's
//! 256 characters).
//!
//! **Taking it.** Read the group's tags (DescribeAutoScalingGroups: a
//! missing group is NotFound); an unexpired lease of another holder is
//! [`CloudError::Busy`] naming it; otherwise write ours (CreateOrUpdateTags),
//! wait one poll interval of the backend (`WaitParams::interval`: 2 s in
//! production) and read it back (DescribeTags). Only if the read-back id
//! is ours is the lease ours: of two rolls racing for a free lease, the
//! last writer wins and the other sees it on its read-back, as long as
//! no write takes longer than that interval to land after its read.
//! An expired lease is taken over the same way, and so is one whose
//! holder ran on this host and is no longer alive (`kill -9`, a crashed CI
//! step rerun on the same runner): the value carries `pid@host` for that,
//! so a rerun continues at once instead of waiting out the [`TTL`].
//!
//! **Keeping it.** The lease lasts [`TTL`] (5 min) from its last write. A
//! background task renews it every [`RENEW_EVERY`] while the `Lease`
//! lives (rewriting the expiry only while the lease is still ours), and
//! [`Lease::renew`] does the same at once. A holder killed with `kill -9`
//! stops renewing: its lease expires within [`TTL`] and the next roll
//! takes it over. Expiry compares the writer's clock with the reader's;
//! clocks a minute apart matter little against five.
//!
//! **Letting go.** Dropping the lease stops the renewal and deletes both
//! tags if the lease is still ours. On a multi-threaded runtime (roll's)
//! that happens before the drop returns (at most [`RELEASE_TIMEOUT`]), so
//! the next roll finds the group free at once; on a current-thread runtime
//! it runs as a task, which this process awaits before it takes the same
//! group's lease again; without a runtime the lease simply expires.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_autoscaling::types::{Filter, Tag};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::error::sdk_error;
use super::groups::{asg_tags, check_tags};
use super::sdk::Ctx;
use crate::error::{CloudError, Result};
use crate::groups::{Lease, LeaseHolder};
use crate::ids::{GroupName, Tags};
use crate::time::{now_ms, rfc3339};

/// The lease itself: `<holder id>;<expiry, Unix ms>`.
pub const LEASE: &str = "kiln:lease";
/// Who holds it, for people.
pub const LEASE_HOLDER: &str = "kiln:lease-holder";
/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(300);
/// How often a held lease renews itself.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long dropping a lease waits for its release.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// A lease as the tags say it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: String,
    expires_ms: u64,
    holder: String,
    /// Where the holder runs, if the lease says.
    pid_host: Option<(u32, String)>,
}

fn parse(tags: &Tags) -> Option<Seen> {
    let mut parts = tags.get(LEASE)?.split(';');
    let id = parts.next()?;
    let expiry = parts.next()?;
    let pid_host = parts.next().and_then(|p| {
        let (pid, host) = p.split_once('@')?;
        Some((pid.parse().ok()?, host.to_owned()))
    });
    Some(Seen {
        id: id.to_owned(),
        expires_ms: expiry.parse().ok()?,
        pid_host,
        holder: tags
            .get(LEASE_HOLDER)
            .cloned()
            .unwrap_or_else(|| id.to_owned()),
    })
}

/// Whether process `pid` is alive on this host.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `seen` was held by a process on `host` (ours) that is gone.
fn dead_here(seen: &Seen, host: &str, alive: impl Fn(u32) -> bool) -> bool {
    seen.pid_host
        .as_ref()
        .is_some_and(|(pid, h)| h == host && *pid != std::process::id() && !alive(*pid))
}

/// [`CloudError::Busy`] if `seen` is someone else's unexpired lease.
fn foreign(group: &GroupName, seen: Option<&Seen>, ours: &str, now: u64) -> Result<()> {
    match seen {
        Some(s) if s.id != ours && s.expires_ms > now => Err(CloudError::Busy {
            what: format!("group {group}"),
            holder: format!(
                "{} (its lease runs until {} unless renewed)",
                s.holder,
                rfc3339(s.expires_ms / 1000)
            ),
        }),
        _ => Ok(()),
    }
}

struct Held {
    ctx: Arc<Ctx>,
    group: GroupName,
    holder: LeaseHolder,
}

impl Held {
    /// The lease tags now (DescribeTags; a missing group has none).
    async fn read(&self) -> Result<Option<Seen>> {
        read_tags(&self.ctx, &self.group).await.map(|t| parse(&t))
    }

    async fn write(&self) -> Result<()> {
        let mut t = Tags::new();
        t.insert(
            LEASE.into(),
            format!(
                "{};{};{}@{}",
                self.holder.id,
                now_ms() + u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX),
                self.holder.pid,
                self.holder.host
            ),
        );
        t.insert(
            LEASE_HOLDER.into(),
            self.holder.to_string().chars().take(256).collect(),
        );
        check_tags(&t)?;
        self.ctx
            .autoscaling
            .create_or_update_tags()
            .set_tags(Some(asg_tags(&self.group, &t)))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "CreateOrUpdateTags",
                    format!("{LEASE} of {} {}", self.group, self.ctx.place()),
                    e,
                )
            })?;
        Ok(())
    }

    /// Rewrites the expiry unless someone else holds the lease now.
    async fn renew(&self) -> Result<()> {
        let seen = self.read().await?;
        foreign(&self.group, seen.as_ref(), &self.holder.id, now_ms())?;
        self.write().await
    }

    /// Deletes the lease tags if they are still ours.
    async fn release(&self) -> Result<()> {
        let Some(seen) = self.read().await? else {
            return Ok(());
        };
        if seen.id != self.holder.id {
            return Ok(());
        }
        let keys = [LEASE, LEASE_HOLDER]
            .iter()
            .map(|k| {
                Tag::builder()
                    .resource_id(self.group.as_str())
                    .resource_type("auto-scaling-group")
                    .key(*k)
                    .build()
            })
            .collect();
        self.ctx
            .autoscaling
            .delete_tags()
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DeleteTags",
                    format!("{LEASE} of {} {}", self.group, self.ctx.place()),
                    e,
                )
            })?;
        Ok(())
    }
}

async fn read_tags(ctx: &Ctx, group: &GroupName) -> Result<Tags> {
    let out = ctx
        .autoscaling
        .describe_tags()
        .filters(
            Filter::builder()
                .name("auto-scaling-group")
                .values(group.as_str())
                .build(),
        )
        .filters(
            Filter::builder()
                .name("key")
                .values(LEASE)
                .values(LEASE_HOLDER)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTags", format!("{group} {}", ctx.place()), e))?;
    Ok(out
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.resource_id.as_deref() == Some(group.as_str()))
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect())
}

pub(crate) struct AwsLease {
    held: Arc<Held>,
    renewal: tokio::task::JoinHandle<()>,
}

pub(crate) async fn acquire(
    ctx: Arc<Ctx>,
    group: &GroupName,
    holder: &LeaseHolder,
) -> Result<Box<dyn Lease>> {
    // Our own release of this group's lease, still running, lands first.
    let pending = ctx
        .releases
        .lock()
        .ok()
        .and_then(|mut m| m.remove(group.as_str()));
    if let Some(p) = pending {
        let _ = p.await;
    }
    let out = ctx
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group.as_str())
        .send()
        .await
        .map_err(|e| {
            sdk_error(
                "DescribeAutoScalingGroups",
                format!("{group} {}", ctx.place()),
                e,
            )
        })?;
    let g = out
        .auto_scaling_groups
        .unwrap_or_default()
        .into_iter()
        .find(|g| g.auto_scaling_group_name.as_deref() == Some(group.as_str()))
        .ok_or_else(|| CloudError::not_found("group", group, &ctx.region))?;
    let tags: Tags = g
        .tags()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect();
    let seen = parse(&tags).filter(|s| {
        let dead = dead_here(s, &holder.host, alive);
        if dead {
            tracing::warn!(
                group = %group,
                holder = %s.holder,
                "taking over the lease of a roll that died on this host"
            );
        }
        !dead
    });
    foreign(group, seen.as_ref(), &holder.id, now_ms())?;
    let held = Arc::new(Held {
        ctx: ctx.clone(),
        group: group.clone(),
        holder: holder.clone(),
    });
    held.write().await?;
    tokio::time::sleep(ctx.wait.interval).await;
    match held.read().await? {
        Some(s) if s.id == holder.id => {}
        other => {
            foreign(group, other.as_ref(), &holder.id, now_ms())?;
            // Ours vanished (released or overwritten by an expired
            // writer): nobody holds it, but neither do we.
            return Err(CloudError::Busy {
                what: format!("group {group}"),
                holder: "another roll that took and released it meanwhile (try again)".into(),
            });
        }
    }
    let renewal = {
        let held = held.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if let Err(e) = held.renew().await {
                    tracing::warn!(group = %held.group, error = %e, "renewing the lease failed");
                }
            }
        })
    };
    Ok(Box::new(AwsLease { held, renewal }))
}

#[async_trait]
impl Lease for AwsLease {
    fn holder(&self) -> &LeaseHolder {
        &self.held.holder
    }

    async fn renew(&self) -> Result<()> {
        self.held.renew().await
    }
}

impl Drop for AwsLease {
    fn drop(&mut self) {
        self.renewal.abort();
        let held = self.held.clone();
        let release = async move {
            match tokio::time::timeout(RELEASE_TIMEOUT, held.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(group = %held.group, error = %e, "releasing the lease failed; it expires");
                }
                Err(_) => {
                    tracing::warn!(group = %held.group, "releasing the lease timed out; it expires");
                }
            }
        };
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(release));
            }
            Ok(h) => {
                let task = h.spawn(release);
                if let Ok(mut m) = self.held.ctx.releases.lock() {
                    m.insert(self.held.group.0.clone(), task);
                }
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(lease: &str) -> Tags {
        let mut t = Tags::new();
        t.insert(LEASE.into(), lease.into());
        t.insert(
            LEASE_HOLDER.into(),
            "roll-1 (pid 1 on ci, `roll out`, since …)".into(),
        );
        t
    }

    #[test]
    fn an_unexpired_foreign_lease_is_busy_and_names_its_holder() {
        let g = GroupName::from("web");
        let seen = parse(&tags("roll-1;2000"));
        let e = foreign(&g, seen.as_ref(), "roll-2", 1999).expect_err("busy");
        let s = e.to_string();
        assert!(
            s.contains("group web") && s.contains("roll-1 (pid 1 on ci"),
            "{s}"
        );
        assert!(
            foreign(&g, seen.as_ref(), "roll-2", 2000).is_ok(),
            "expired"
        );
        assert!(foreign(&g, seen.as_ref(), "roll-1", 0).is_ok(), "ours");
        assert!(foreign(&g, None, "roll-2", 0).is_ok(), "free");
        assert_eq!(parse(&tags("garbage")), None, "unreadable is free");
        assert_eq!(
            parse(&tags("roll-1;5;42@ci")).map(|s| (s.id, s.expires_ms, s.pid_host)),
            Some(("roll-1".to_owned(), 5, Some((42, "ci".to_owned()))))
        );
        assert_eq!(
            parse(&tags("roll-1;5")).map(|s| s.pid_host),
            Some(None),
            "an older lease without pid@host"
        );
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over_and_nothing_else() {
        let seen = parse(&tags("roll-1;99999999999999;42@ci")).expect("a lease");
        assert!(dead_here(&seen, "ci", |_| false), "dead, here");
        assert!(!dead_here(&seen, "ci", |_| true), "alive, here");
        assert!(
            !dead_here(&seen, "other", |_| false),
            "another host: only the TTL frees it"
        );
        let old = parse(&tags("roll-1;99999999999999")).expect("a lease");
        assert!(
            !dead_here(&old, "ci", |_| false),
            "no pid@host: only the TTL"
        );
        let ours = parse(&tags(&format!("roll-1;9;{}@ci", std::process::id()))).expect("a lease");
        assert!(!dead_here(&ours, "ci", |_| false), "never our own pid");
    }
}
