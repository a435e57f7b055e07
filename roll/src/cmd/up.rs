//! `roll up --group G --image ID --size N --listen ADDR`: the local
//! backend's "Terraform": a load balancer listening on ADDR with two
//! target groups (`G`, and `G--b` for blue/green), and a group of N
//! instances of the image behind the first. Returns once every instance
//! passed its gate and is healthy behind the balancer. Rerunning it with
//! the same arguments is a no-op; with others it says which command
//! changes that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cloud::{
    Cloud, CloudError, GroupName, GroupSpec, HealthCheck, ImageId, Lifecycle, ListenerId,
    ListenerInfo, ListenerSpec, Tags, TargetGroupId, TargetHealth, TlsFiles, tags,
};
use serde::Serialize;

use super::{
    Global, check_image, open, parse_duration, parse_group, parse_image, print_json, write_stdout,
};
use crate::error::RollError;
use crate::exec::twin_of;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
    /// The image its instances run (a complete bake).
    #[arg(long, value_parser = parse_image)]
    pub image: ImageId,
    /// Number of instances.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub size: u32,
    /// Where the load balancer listens (port 0: any free port; `roll
    /// status` shows it).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Where the balancer's /metrics answers (default: a free port on the
    /// listener's address).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Health check path.
    #[arg(long, value_name = "PATH", default_value = "/ready")]
    pub health_path: String,
    /// Time between health checks of a target.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// A health check answering later than this failed.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Consecutive passed checks before a target takes traffic.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub healthy_threshold: u32,
    /// Consecutive failed checks before a target stops taking traffic.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub unhealthy_threshold: u32,
    /// How long a deregistered target may finish its in-flight requests
    /// (it leaves sooner once it has none).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = parse_duration)]
    pub deregistration_delay: Duration,
    /// How long to wait for every instance to be healthy.
    #[arg(long, value_name = "D", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct UpResult<'a> {
    group: &'a str,
    image: &'a ImageId,
    size: u32,
    url: String,
    listener: &'a ListenerInfo,
    /// Whether this run created the group (false: it was there already).
    created: bool,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    if global.backend != "local" {
        return Err(RollError::Usage(
            "roll up creates local fleets; on aws the group, template and balancer come from \
             Terraform (or roll's aws setup, not in this build)"
                .into(),
        ));
    }
    if a.health_timeout > a.health_interval {
        return Err(RollError::Usage(format!(
            "--health-timeout {:?} must not exceed --health-interval {:?}",
            a.health_timeout, a.health_interval
        )));
    }
    if !a.health_path.starts_with('/') {
        return Err(RollError::Usage(format!(
            "--health-path {:?} must start with /",
            a.health_path
        )));
    }
    let cloud = open(global).await?;
    check_image(&cloud, &a.image).await?;
    let listener_id = ListenerId::new(a.group.as_str());
    let existing_group = match cloud.groups().describe_group(&a.group).await {
        Ok(g) => Some(g),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let existing_listener = match cloud.lbs().listener(&listener_id).await {
        Ok(l) => Some(l),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(g) = &existing_group {
        if g.current.image != a.image {
            return Err(RollError::Usage(format!(
                "group {} exists and runs {}: `roll out --group {} --image {}` changes that",
                a.group, g.current.image, a.group, a.image
            )));
        }
        if g.desired != a.size {
            return Err(RollError::Usage(format!(
                "group {} exists with {} instances: `roll scale --group {} --size {}` changes that",
                a.group, g.desired, a.group, a.size
            )));
        }
    }
    if let Some(l) = &existing_listener
        && a.listen.port() != 0
        && l.address != a.listen.to_string()
    {
        return Err(RollError::Usage(format!(
            "group {}'s balancer listens on {}, not {}: `roll down` first to move it",
            a.group, l.address, a.listen
        )));
    }
    let tg = TargetGroupId::new(a.group.as_str());
    let mut created_listener = false;
    let listener = match existing_listener {
        Some(l) => l,
        None => {
            let spec = ListenerSpec {
                id: listener_id.clone(),
                address: a.listen,
                admin: Some(a.admin.unwrap_or_else(|| SocketAddr::new(a.listen.ip(), 0))),
                tls: match (&a.tls_cert, &a.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                    }),
                    _ => None,
                },
                health_check: HealthCheck {
                    path: a.health_path.clone(),
                    interval_ms: a.health_interval.as_millis() as u64,
                    timeout_ms: a.health_timeout.as_millis() as u64,
                    healthy_threshold: a.healthy_threshold,
                    unhealthy_threshold: a.unhealthy_threshold,
                },
                deregistration_delay_ms: a.deregistration_delay.as_millis() as u64,
                target_groups: vec![tg.clone(), TargetGroupId::new(twin_of(&a.group).as_str())],
                forward: tg.clone(),
            };
            created_listener = true;
            cloud.lbs().create_listener(&spec).await?
        }
    };
    let created = existing_group.is_none();
    if created {
        let mut t = Tags::new();
        t.insert(tags::ROLL_GROUP.into(), a.group.to_string());
        let spec = GroupSpec {
            name: a.group.clone(),
            image: a.image.clone(),
            desired: a.size,
            min: 0,
            max: a.size,
            target_group: Some(tg.clone()),
            tags: t,
            like: None,
        };
        if let Err(e) = cloud.groups().create_group(&spec).await {
            if created_listener {
                let _ = cloud.lbs().delete_listener(&listener_id).await;
            }
            return Err(e.into());
        }
        eprintln!(
            "roll: {}: {} instances of {} behind {}",
            a.group,
            a.size,
            a.image,
            listener.url()
        );
    }
    match wait_healthy(&cloud, &a.group, &tg, a.size, a.timeout).await {
        Ok(()) => {}
        Err(WaitError::Gate(why)) => {
            eprintln!("roll: error: {why}");
            if created {
                // Nothing half-created: the group and balancer this run
                // made go away again.
                cloud.groups().delete_group(&a.group).await?;
                if created_listener {
                    cloud.lbs().delete_listener(&listener_id).await?;
                }
                eprintln!("roll: {}: removed again", a.group);
            }
            return Ok(exit::ROLLED_BACK);
        }
        Err(WaitError::Other(e)) => return Err(e),
    }
    eprintln!(
        "roll: {}: {} healthy instances of {} behind {}",
        a.group,
        a.size,
        a.image,
        listener.url()
    );
    if a.json {
        print_json(&UpResult {
            group: a.group.as_str(),
            image: &a.image,
            size: a.size,
            url: listener.url(),
            listener: &listener,
            created,
        })?;
    } else {
        write_stdout(&format!("{}\n", listener.url()))?;
    }
    Ok(exit::OK)
}

enum WaitError {
    /// An instance failed its launch check (the image is bad).
    Gate(String),
    Other(RollError),
}

impl From<CloudError> for WaitError {
    fn from(e: CloudError) -> WaitError {
        WaitError::Other(e.into())
    }
}

/// Until `size` instances are in service and healthy in `tg`.
async fn wait_healthy(
    cloud: &Cloud,
    group: &GroupName,
    tg: &TargetGroupId,
    size: u32,
    timeout: Duration,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let g = cloud.groups().describe_group(group).await?;
        if let Some(bad) = g.instances.iter().find(|i| i.launch_error.is_some()) {
            return Err(WaitError::Gate(format!(
                "{} ({}) failed its gate: {}",
                bad.id,
                bad.image,
                bad.launch_error.as_deref().unwrap_or("")
            )));
        }
        let targets = cloud.lbs().targets(tg).await?;
        let healthy = g
            .instances
            .iter()
            .filter(|i| i.lifecycle == Lifecycle::InService)
            .filter(|i| {
                targets
                    .iter()
                    .any(|t| t.target.instance == i.id && t.health == TargetHealth::Healthy)
            })
            .count() as u32;
        if healthy >= size {
            return Ok(());
        }
        let now = format!("{healthy}/{size} instances healthy");
        if now != last {
            eprintln!("roll: {group}: {now}");
            last = now;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitError::Other(RollError::Failed(format!(
                "group {group}: only {healthy} of {size} instances healthy after {timeout:?} \
                 (roll status shows why; rerunning roll up waits again)"
            ))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
