//! `roll up --group G --image ID --size N --listen ADDR`: the local
//! backend's "Terraform": a load balancer listening on ADDR with two
//! target groups (`G`, and `G--b` for blue/green), and a group of N
//! instances of the image behind the first. Returns once every instance
//! passed its gate and is healthy behind the balancer. Rerunning it with
//! the same arguments is a no-op; with others it says which command
//! changes that.
//!
//! `roll up --backend aws --group G --image AMI --size N --subnets …`:
//! the same for users without Terraform, by `cloud::aws::setup` (security
//! groups, launch template, two target groups, an ALB or `--load-balancer`,
//! a listener, the Auto Scaling group, each tagged `kiln:roll-up=G`).

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
    /// local: where the load balancer listens (port 0: any free port;
    /// `roll status` shows it). Required locally.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
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
    /// Time between health checks of a target (default: 1s local, 10s
    /// aws, where ELBv2 takes 5s to 300s).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub health_interval: Option<Duration>,
    /// A health check answering later than this failed (default: 1s
    /// local, 5s aws).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,
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
    #[command(flatten)]
    pub aws: AwsUpArgs,
}

/// What `roll up --backend aws` makes the service with. Each may also
/// come from `[group.G]` in roll.toml (`--config`); flags win.
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "AWS (roll up --backend aws)")]
pub struct AwsUpArgs {
    /// Private subnets for the instances (repeat, or a comma list).
    /// Required on aws (or `subnets` in roll.toml).
    #[arg(
        long = "subnets",
        alias = "subnet",
        value_name = "ID",
        value_delimiter = ','
    )]
    pub subnets: Vec<String>,
    /// The balancer's subnets (default: --subnets; an internet-facing
    /// balancer needs public ones).
    #[arg(long = "lb-subnets", value_name = "ID", value_delimiter = ',')]
    pub lb_subnets: Vec<String>,
    /// The VPC (default: the subnets'; given, it must be theirs).
    #[arg(long, value_name = "ID")]
    pub vpc: Option<String>,
    /// Put the listener on this existing ALB (ARN) instead of making one;
    /// the instances then admit its security groups.
    #[arg(long, value_name = "ARN")]
    pub load_balancer: Option<String>,
    /// Make the ALB internet-facing (default: internal; its security group
    /// then admits the listener port from 0.0.0.0/0 rather than the VPC).
    #[arg(long)]
    pub internet_facing: bool,
    /// The listener port (default: 80, or 443 with --certificate-arn).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// The port searchd listens on in the image (the target groups' and the
    /// instances' security group's; images/searchd.env: 8080).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub service_port: Option<u16>,
    /// The instance type (default t3.small).
    #[arg(long, value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// HTTPS with this certificate (ACM or IAM ARN) and --tls-policy.
    #[arg(long, value_name = "ARN")]
    pub certificate_arn: Option<String>,
    /// The HTTPS listener's TLS policy.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    )]
    pub tls_policy: String,
    /// How long Auto Scaling ignores a new instance's ELB health.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration)]
    pub grace_period: Duration,
    /// Add the listener and target groups made to `[group.G]` in the
    /// --config file (made if missing), so `roll out` finds them.
    #[arg(long)]
    pub write_config: bool,
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
    if global.backend == "aws" {
        #[cfg(feature = "aws")]
        return aws::run(global, a).await;
    }
    if global.backend != "local" {
        return Err(RollError::Usage(format!(
            "the {} backend is not built into this roll",
            global.backend
        )));
    }
    let Some(listen) = a.listen else {
        return Err(RollError::Usage(
            "roll up on the local backend needs --listen ADDR (where the balancer listens)".into(),
        ));
    };
    let health_interval = a.health_interval.unwrap_or(Duration::from_secs(1));
    let health_timeout = a.health_timeout.unwrap_or(Duration::from_secs(1));
    if health_timeout > health_interval {
        return Err(RollError::Usage(format!(
            "--health-timeout {health_timeout:?} must not exceed --health-interval {health_interval:?}"
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
        && listen.port() != 0
        && l.address != listen.to_string()
    {
        return Err(RollError::Usage(format!(
            "group {}'s balancer listens on {}, not {}: `roll down` first to move it",
            a.group, l.address, listen
        )));
    }
    let tg = TargetGroupId::new(a.group.as_str());
    let mut created_listener = false;
    let listener = match existing_listener {
        Some(l) => l,
        None => {
            let spec = ListenerSpec {
                id: listener_id.clone(),
                address: listen,
                admin: Some(a.admin.unwrap_or_else(|| SocketAddr::new(listen.ip(), 0))),
                tls: match (&a.tls_cert, &a.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                    }),
                    _ => None,
                },
                health_check: HealthCheck {
                    path: a.health_path.clone(),
                    interval_ms: health_interval.as_millis() as u64,
                    timeout_ms: health_timeout.as_millis() as u64,
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

#[cfg(feature = "aws")]
mod aws {
    //! `roll up --backend aws`: flags and roll.toml resolved into a
    //! [`ServiceSpec`], made by `cloud::aws::setup`, then waited for.

    use cloud::aws::setup::{Change, Difference, Outcome, ServiceInfo, ServiceSpec};

    use super::*;
    use crate::config::RollConfig;

    #[derive(Debug, Serialize)]
    struct AwsUpResult<'a> {
        #[serde(flatten)]
        service: &'a ServiceInfo,
        /// The `[group.G]` lines `roll out` needs (in roll.toml).
        config: String,
        /// Whether --write-config changed the file.
        config_written: bool,
    }

    /// Flags, then roll.toml, then the defaults: the spec, checked.
    pub(super) fn spec(global: &Global, a: &Args) -> Result<ServiceSpec, RollError> {
        if a.listen.is_some() || a.admin.is_some() || a.tls_cert.is_some() {
            return Err(RollError::Usage(
                "--listen, --admin and --tls-cert/--tls-key are the local balancer's; on aws use \
                 --port and --certificate-arn"
                    .into(),
            ));
        }
        let file = match &global.aws.config {
            Some(p) if a.aws.write_config && !p.exists() => RollConfig::default(),
            Some(p) => RollConfig::load(p)?,
            None if a.aws.write_config => {
                return Err(RollError::Usage(
                    "--write-config writes into the --config file: name one".into(),
                ));
            }
            None => RollConfig::default(),
        };
        let sec = file
            .group
            .get(a.group.as_str())
            .cloned()
            .unwrap_or_default();
        let w = &a.aws;
        let pick = |flag: &Vec<String>, file: Vec<String>| {
            if flag.is_empty() { file } else { flag.clone() }
        };
        let subnets = pick(&w.subnets, sec.subnets);
        if subnets.is_empty() {
            return Err(RollError::Usage(format!(
                "roll up --backend aws needs the instances' private subnets: --subnets \
                 subnet-a,subnet-b (or subnets = [...] under [group.{}] in roll.toml)",
                a.group
            )));
        }
        let certificate_arn = w.certificate_arn.clone().or(sec.certificate_arn);
        let port = w
            .port
            .or(sec.port)
            .unwrap_or(if certificate_arn.is_some() { 443 } else { 80 });
        let spec = ServiceSpec {
            group: a.group.clone(),
            image: a.image.clone(),
            size: a.size,
            vpc: w.vpc.clone().or(sec.vpc),
            subnets,
            lb_subnets: pick(&w.lb_subnets, sec.lb_subnets),
            load_balancer: w.load_balancer.clone().or(sec.load_balancer),
            internet_facing: w.internet_facing || sec.internet_facing.unwrap_or(false),
            port,
            service_port: w.service_port.or(sec.service_port).unwrap_or(8080),
            instance_type: w
                .instance_type
                .clone()
                .or(sec.instance_type)
                .unwrap_or_else(|| "t3.small".into()),
            certificate_arn,
            tls_policy: w.tls_policy.clone(),
            health_check: HealthCheck {
                path: a.health_path.clone(),
                interval_ms: a
                    .health_interval
                    .unwrap_or(Duration::from_secs(10))
                    .as_millis() as u64,
                timeout_ms: a
                    .health_timeout
                    .unwrap_or(Duration::from_secs(5))
                    .as_millis() as u64,
                healthy_threshold: a.healthy_threshold,
                unhealthy_threshold: a.unhealthy_threshold,
            },
            deregistration_delay_s: a.deregistration_delay.as_secs() as u32,
            grace_period_s: a.aws.grace_period.as_secs() as u32,
        };
        // ELBv2's limits as flag errors (exit 2), before any call.
        spec.check().map_err(|e| RollError::Usage(e.to_string()))?;
        Ok(spec)
    }

    /// "what: have -> want (command)" for each difference.
    pub(super) fn explain(group: &GroupName, spec: &ServiceSpec, d: &[Difference]) -> String {
        let lines: Vec<String> = d
            .iter()
            .map(|d| {
                let how = match d.change {
                    Change::RollOut => {
                        format!(
                            "`roll out --backend aws --group {group} --image {}`",
                            spec.image
                        )
                    }
                    Change::RollScale => {
                        format!(
                            "`roll scale --backend aws --group {group} --size {}`",
                            spec.size
                        )
                    }
                    Change::Recreate => format!(
                        "nothing changes it in place: `roll down --backend aws --group {group}`, \
                         then roll up again"
                    ),
                };
                format!("  {}: {} -> {} ({how})", d.what, d.have, d.want)
            })
            .collect();
        format!(
            "group {group} exists and differs from these arguments (nothing was changed):\n{}",
            lines.join("\n")
        )
    }

    fn snippet(s: &ServiceInfo) -> String {
        format!(
            "[group.{}]\nlistener = {:?}\ntarget_groups = [{}]\n",
            s.group,
            s.listener,
            s.target_groups
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    pub(super) async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
        let spec = spec(global, &a)?;
        // --write-config makes the file; everything that reads it reads
        // an empty one meanwhile.
        if a.aws.write_config
            && let Some(p) = &global.aws.config
            && !p.exists()
        {
            std::fs::write(p, "").map_err(|e| RollError::Io {
                what: format!("cannot make {}", p.display()),
                source: e,
            })?;
        }
        let cloud = open(global).await?;
        check_image(&cloud, &a.image).await?;
        let setup = super::super::open_setup(global).await?;
        let info = match setup.up(&spec).await? {
            Outcome::Ready(i) => *i,
            Outcome::Differs(d) => {
                return Err(RollError::Usage(explain(&a.group, &spec, &d)));
            }
        };
        if info.created.is_empty() {
            eprintln!("roll: {}: everything exists already", a.group);
        } else {
            eprintln!("roll: {}: made {}", a.group, info.created.join(", "));
        }
        let tg = TargetGroupId::new(info.target_groups[0].clone());
        match wait_healthy(&cloud, &a.group, &tg, a.size, a.timeout).await {
            Ok(()) => {}
            // Nothing is removed on aws: the rest stays for a rerun or
            // `roll down`, which says what it removes.
            Err(WaitError::Gate(why)) => {
                return Err(RollError::Failed(format!(
                    "{why} (the service stays as made: `roll status`, or `roll down --backend aws \
                     --group {}` to remove it)",
                    a.group
                )));
            }
            Err(WaitError::Other(e)) => return Err(e),
        }
        eprintln!(
            "roll: {}: {} healthy instances of {} behind {}",
            a.group, a.size, a.image, info.url
        );
        let config = snippet(&info);
        let mut written = false;
        if a.aws.write_config
            && let Some(p) = &global.aws.config
        {
            written =
                crate::config::write_service(p, &a.group, &info.listener, &info.target_groups)?;
            if written {
                eprintln!(
                    "roll: {}: added [group.{}] to {}",
                    a.group,
                    a.group,
                    p.display()
                );
            }
        } else if !a.json {
            eprintln!("roll: for roll out, in roll.toml (or --write-config):\n{config}");
        }
        if a.json {
            print_json(&AwsUpResult {
                service: &info,
                config,
                config_written: written,
            })?;
        } else {
            write_stdout(&format!("{}\n", info.url))?;
        }
        Ok(exit::OK)
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::aws::{explain, spec};
    use cloud::aws::setup::{Change, Difference};

    fn parse(args: &[&str]) -> (super::Global, super::Args) {
        let c = Cli::try_parse_from(args).expect("parses");
        let Command::Up(a) = c.command else {
            panic!("up")
        };
        (c.global, *a)
    }

    #[test]
    fn aws_flags_resolve_into_a_spec_or_a_usage_error() {
        let base = ["roll", "--backend", "aws", "up", "--group", "web"];
        let (g, a) = parse(&[&base[..], &["--image", "ami-1", "--size", "2"]].concat());
        let e = spec(&g, &a).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--subnets"), "{e}");
        let (g, a) = parse(
            &[
                &base[..],
                &[
                    "--image",
                    "ami-1",
                    "--size",
                    "2",
                    "--subnets",
                    "subnet-1,subnet-2",
                    "--certificate-arn",
                    "arn:aws:acm:us-east-1:1:certificate/x",
                ],
            ]
            .concat(),
        );
        let s = spec(&g, &a).expect("a spec");
        assert_eq!(s.subnets, ["subnet-1", "subnet-2"]);
        assert_eq!((s.port, s.service_port), (443, 8080));
        assert_eq!(s.health_check.path, "/ready");
        assert_eq!(s.health_check.interval_ms, 10_000);
        assert_eq!(s.instance_type, "t3.small");
        // ELBv2's limits are flag errors.
        let (g, a) = parse(
            &[
                &base[..],
                &[
                    "--image",
                    "ami-1",
                    "--size",
                    "2",
                    "--subnets",
                    "subnet-1",
                    "--health-interval",
                    "1s",
                ],
            ]
            .concat(),
        );
        assert_eq!(spec(&g, &a).unwrap_err().exit_code(), 2);
        // The local balancer's flags are refused on aws.
        let (g, a) = parse(
            &[
                &base[..],
                &[
                    "--image",
                    "ami-1",
                    "--size",
                    "2",
                    "--subnets",
                    "subnet-1",
                    "--listen",
                    "127.0.0.1:80",
                ],
            ]
            .concat(),
        );
        assert!(spec(&g, &a).unwrap_err().to_string().contains("--port"));
        // --write-config needs --config.
        let (g, a) = parse(
            &[
                &base[..],
                &[
                    "--image",
                    "ami-1",
                    "--size",
                    "2",
                    "--subnets",
                    "subnet-1",
                    "--write-config",
                ],
            ]
            .concat(),
        );
        assert!(spec(&g, &a).unwrap_err().to_string().contains("--config"));
    }

    #[test]
    fn differences_name_the_command_that_changes_them() {
        let (g, a) = parse(&[
            "roll",
            "--backend",
            "aws",
            "up",
            "--group",
            "web",
            "--image",
            "ami-2",
            "--size",
            "3",
            "--subnets",
            "subnet-1",
        ]);
        let s = spec(&g, &a).unwrap();
        let d = |what: &str, change| Difference {
            what: what.into(),
            have: "x".into(),
            want: "y".into(),
            change,
        };
        let text = explain(
            &a.group,
            &s,
            &[
                d("image", Change::RollOut),
                d("size", Change::RollScale),
                d("listener port", Change::Recreate),
            ],
        );
        assert!(
            text.contains("roll out --backend aws --group web --image ami-2"),
            "{text}"
        );
        assert!(
            text.contains("roll scale --backend aws --group web --size 3"),
            "{text}"
        );
        assert!(
            text.contains("roll down --backend aws --group web"),
            "{text}"
        );
    }
}
