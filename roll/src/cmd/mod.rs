//! Subcommands, one module each. clap parses raw flags into [`Cli`]; each
//! module resolves them into a plan (the only place flags are checked) and
//! runs it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cloud::{Cloud, CloudError, GroupName, ImageId, StateDir};

use crate::error::RollError;
use crate::exec::Progress;

pub mod back;
pub mod down;
pub mod fleetd;
pub mod out;
pub mod scale;
pub mod status;
pub mod up;

pub const AFTER_HELP: &str = "\
Exit codes:
    0  rolled out (or nothing to do; roll back: back on the previous image)
    1  the new image failed its gate; the group is back on the previous image
    2  bad input: flags, an unknown image or group, an image that is not complete
    3  the cloud or the machine failed, or another roll holds the group;
       the roll is recorded in the group: rerunning the same command converges
  130  interrupted (SIGINT/SIGTERM); rerunning the same command converges

Durations: 500ms, 10s, 5m, 1h (a plain number is seconds).

Logs: KILN_LOG (or --log) filters the tracing output on stderr (`warn`, the
default; `debug` shows every backend call). Progress lines (`roll: ...`) are
not logs and always show; results go to stdout (`--json`: one object).
The local fleet daemon logs to <state dir>/fleet/daemon.log, filtered by
KILN_FLEET_LOG (`info`, the default; `balancer=debug` adds an access log
line per request).";

/// Roll an image out to a fleet behind a load balancer, and back.
#[derive(Debug, Parser)]
#[command(name = "roll", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// State directory (local images, the local fleet, leases).
    #[arg(
        long,
        global = true,
        env = "KILN_STATE_DIR",
        default_value = ".kiln",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Which cloud the group lives in.
    #[arg(
        long,
        global = true,
        env = "KILN_BACKEND",
        default_value = "local",
        value_parser = ["local", "aws"]
    )]
    pub backend: String,
    /// Log filter for stderr: a level or tracing directives.
    #[arg(
        long,
        global = true,
        env = "KILN_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    pub log: String,
    /// How often roll looks at the cloud while it waits (default: 50ms on
    /// local, 2s on aws, where every look is a few API calls).
    #[arg(long, global = true, env = "KILN_ROLL_POLL", value_name = "D", value_parser = parse_duration)]
    pub poll: Option<Duration>,
    #[command(flatten)]
    pub aws: crate::config::AwsArgs,
}

impl Global {
    /// The executor's pause between looks at the cloud.
    pub fn poll(&self) -> Duration {
        self.poll
            .unwrap_or(Duration::from_millis(if self.backend == "local" {
                50
            } else {
                2000
            }))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a group and its load balancer, and wait until every instance
    /// is healthy behind it (local: a balancer on --listen; aws: security
    /// groups, launch template, target groups, ALB, listener and Auto
    /// Scaling group, each tagged kiln:roll-up). Rerunning it is a no-op.
    #[command(after_help = AFTER_HELP)]
    Up(Box<up::Args>),
    /// Roll the group out to a new image, gated, with automatic rollback.
    #[command(after_help = AFTER_HELP)]
    Out(out::Args),
    /// Back to the previous image: a switch to the blue/green standby while
    /// it is kept, else a rolling roll.
    #[command(after_help = AFTER_HELP)]
    Back(back::Args),
    /// Instances, targets and their health, images, a roll in progress, the
    /// standby.
    #[command(after_help = AFTER_HELP)]
    Status(status::Args),
    /// Add or remove instances (new ones pass the gate first; removed ones
    /// are drained first).
    #[command(after_help = AFTER_HELP)]
    Scale(scale::Args),
    /// Stop the group, its blue/green twin and its load balancer (aws:
    /// remove exactly what roll up made, by its kiln:roll-up tag).
    #[command(after_help = AFTER_HELP)]
    Down(down::Args),
    /// The local fleet daemon (started by roll itself when needed).
    #[command(hide = true)]
    Fleetd,
}

/// Flags about gating that `out`, `back` and `scale` share.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// Extra instances during a rolling roll: a count (0: take one out
    /// before its replacement comes, which needs --min-healthy below
    /// 100%) or a percentage of the size (rounded up, at least 1).
    #[arg(long, value_name = "N|P%", default_value = "1", value_parser = parse_surge)]
    pub max_surge: crate::plan::Surge,
    /// Instances that must stay in service, as a percentage of the size
    /// (rounded up).
    #[arg(long, value_name = "P%", default_value = "100%", value_parser = parse_percent)]
    pub min_healthy: u32,
    /// How long a new instance must be healthy before it counts as in
    /// service (on aws at least two --poll intervals: healthy on three
    /// consecutive looks).
    #[arg(long, value_name = "D", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long a new instance has from launch to passing its gate (/ready,
    /// /version, the golden queries) and the balancer's health checks.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration)]
    pub gate_timeout: Duration,
    /// Write the evidence report (JSON) here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub use kiln_common::parse_duration;

/// `50%` or `50` (percent, 0..=100).
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches('%');
    let v: u32 = t
        .parse()
        .map_err(|_| format!("{s:?}: expected a percentage like 100%"))?;
    if v > 100 {
        return Err(format!("{s:?}: at most 100%"));
    }
    Ok(v)
}

/// `N` (instances) or `P%` (of the size).
pub fn parse_surge(s: &str) -> Result<crate::plan::Surge, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: u32 = p
            .parse()
            .map_err(|_| format!("{s:?}: expected a count or a percentage"))?;
        if v == 0 || v > 100 {
            return Err(format!("{s:?}: a surge percentage lies in 1%..=100%"));
        }
        return Ok(crate::plan::Surge::Percent(v));
    }
    let v: u32 = t
        .parse()
        .map_err(|_| format!("{s:?}: expected a count or a percentage"))?;
    if v > 1000 {
        return Err(format!("{s:?}: at most 1000 extra instances"));
    }
    Ok(crate::plan::Surge::Count(v))
}

/// A group name as both backends accept it.
pub fn parse_group(s: &str) -> Result<GroupName, String> {
    let ok = !s.is_empty()
        && s.len() <= 60
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.ends_with("--b");
    if ok {
        Ok(GroupName::new(s))
    } else {
        Err(format!(
            "{s:?}: use 1 to 60 letters, digits, '-' and '_' (not ending in --b, the blue/green twin's suffix)"
        ))
    }
}

pub fn parse_image(s: &str) -> Result<ImageId, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?}: not an image id"));
    }
    Ok(ImageId::new(t))
}

/// Opens the state dir and the backend; locally, roll starts the fleet
/// daemon (itself, `roll fleetd`) when a call needs it.
pub async fn open(global: &Global) -> Result<Cloud, RollError> {
    let state = StateDir::open(&global.state_dir)?;
    match global.backend.as_str() {
        "local" => {
            let exe = std::env::current_exe().map_err(|e| RollError::Io {
                what: "cannot find roll's own executable".into(),
                source: e,
            })?;
            let local = cloud::local::LocalCloud::new(state).with_fleet_daemon(
                cloud::local::fleet::DaemonCommand {
                    program: exe,
                    args: vec!["fleetd".into()],
                },
            );
            Ok(local.into_cloud())
        }
        #[cfg(feature = "aws")]
        "aws" => {
            let account = global.aws.account()?;
            let gate = match account.gate {
                Some(g) => g
                    .parse()
                    .map_err(|e: CloudError| RollError::Usage(format!("roll.toml [aws] {e}")))?,
                None => cloud::aws::AwsGate::default(),
            };
            let opts = cloud::aws::AwsOptions {
                region: account.region,
                bucket: account.bucket,
                gate,
                wait: cloud::WaitParams {
                    interval: global.poll(),
                    ..cloud::WaitParams::CLOUD
                },
                ..cloud::aws::AwsOptions::default()
            };
            let (cloud, _calls) = cloud::aws::connect(opts).await?;
            Ok(cloud)
        }
        other => Err(RollError::Usage(format!(
            "the {other} backend is not built into this roll"
        ))),
    }
}

/// The aws service setup `roll up`/`roll down --backend aws` use (its own
/// clients, configured as [`open`] configures the cloud's).
#[cfg(feature = "aws")]
pub async fn open_setup(global: &Global) -> Result<cloud::aws::setup::Setup, RollError> {
    let opts = cloud::aws::AwsOptions {
        region: global.aws.account()?.region,
        wait: cloud::WaitParams {
            interval: global.poll(),
            ..cloud::WaitParams::CLOUD
        },
        ..cloud::aws::AwsOptions::default()
    };
    Ok(cloud::aws::setup::Setup::connect(opts).await?)
}

/// The image must exist and its bake must have completed.
pub async fn check_image(
    cloud: &Cloud,
    image: &ImageId,
) -> Result<cloud::ImageManifest, RollError> {
    let info = match cloud.images().describe(image).await {
        Ok(i) => i,
        Err(e) if e.is_not_found() => {
            return Err(RollError::Usage(format!(
                "image {image} not found (bake list shows the images)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if info.bake_state() != cloud::BakeState::Complete {
        return Err(RollError::Usage(format!(
            "image {image} is not complete (its bake is {}): bake it again",
            info.bake_state().as_str()
        )));
    }
    Ok(cloud.images().manifest(image).await?)
}

/// Sends `tracing` events to stderr, filtered by `filter`.
pub fn init_logging(filter: &str) -> Result<(), RollError> {
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| RollError::Usage(format!("--log / KILN_LOG {filter:?}: {e}")))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Ok(())
}

/// roll's steps on stderr: each kept as a line (they are the roll's
/// story), the latest also as the spinner's message on a terminal.
impl Progress for cloud::run::Progress {
    fn step(&mut self, text: &str) {
        self.mark(text);
    }
}

/// Cancelled on SIGINT/SIGTERM: the executor stops between actions (exit
/// 130). Without signal handling (it cannot fail on Linux) a roll simply
/// cannot be interrupted cleanly.
pub fn cancel_on_signals() -> cloud::run::Cancel {
    let cancel = cloud::run::Cancel::default();
    let _ = cancel.on_signals();
    cancel
}

/// A roll id: time-ordered, unique enough.
pub fn roll_id() -> String {
    format!(
        "roll-{}-{:06x}",
        cloud::time::now_unix(),
        fastrand::u32(..0x100_0000)
    )
}

/// Who this roll is, for the lease.
pub fn holder(id: &str) -> cloud::LeaseHolder {
    let command: Vec<String> = std::env::args().collect();
    let mut command = command.join(" ");
    if command.len() > 200 {
        command.truncate(200);
    }
    cloud::LeaseHolder {
        id: id.to_owned(),
        pid: std::process::id(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into()),
        command,
        since_ms: cloud::time::now_ms(),
    }
}

pub fn run(cli: Cli) -> u8 {
    if let Command::Fleetd = cli.command {
        // The daemon's own log (fleet/daemon.log): what it launched,
        // gated, put in service, drained and stopped, whatever the roll
        // that started it logs.
        let filter = std::env::var("KILN_FLEET_LOG").unwrap_or_else(|_| "info".into());
        if let Err(e) = init_logging(&filter) {
            return fail(&e);
        }
        return fleetd::run(&cli.global);
    }
    if let Err(e) = init_logging(&cli.global.log) {
        return fail(&e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&RollError::Io {
                what: "cannot start the runtime".into(),
                source: e,
            });
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Up(a) => up::run(&cli.global, *a).await,
            Command::Out(a) => out::run(&cli.global, a).await,
            Command::Back(a) => back::run(&cli.global, a).await,
            Command::Status(a) => status::run(&cli.global, a).await,
            Command::Scale(a) => scale::run(&cli.global, a).await,
            Command::Down(a) => down::run(&cli.global, a).await,
            Command::Fleetd => Ok(crate::exit::OK),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

pub fn fail(err: &RollError) -> u8 {
    eprintln!("roll: error: {err}");
    err.exit_code()
}

/// Writes the result to stdout; a closed pipe is not worth a panic.
pub fn write_stdout(text: &str) -> Result<(), RollError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(RollError::Io {
            what: "cannot write stdout".into(),
            source: e,
        }),
    }
}

pub fn print_json(value: &impl serde::Serialize) -> Result<(), RollError> {
    let text = serde_json::to_string(value)
        .map_err(|e| RollError::Failed(format!("cannot encode JSON: {e}")))?;
    write_stdout(&format!("{text}\n"))
}

/// Maps "no such group" to bad input with a hint.
pub fn group_error(group: &GroupName, e: CloudError) -> RollError {
    if e.is_not_found() {
        RollError::Usage(format!("there is no group {group} (roll up creates it)"))
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Surge;

    #[test]
    fn durations_percentages_and_surges_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1w").is_err());
        assert_eq!(parse_percent("66%"), Ok(66));
        assert!(parse_percent("101%").is_err());
        assert_eq!(parse_surge("2"), Ok(Surge::Count(2)));
        assert_eq!(parse_surge("25%"), Ok(Surge::Percent(25)));
        assert!(parse_surge("0%").is_err());
        assert!(parse_group("web").is_ok());
        assert!(parse_group("web--b").is_err());
        assert!(parse_group("we b").is_err());
    }

    #[test]
    fn subcommands_parse() {
        let c = Cli::try_parse_from([
            "roll",
            "out",
            "--group",
            "web",
            "--image",
            "img-1",
            "--strategy",
            "blue-green",
            "--max-surge",
            "50%",
            "--bake-time",
            "10s",
        ])
        .unwrap();
        let Command::Out(a) = c.command else {
            panic!("out")
        };
        assert_eq!(a.gate.max_surge, Surge::Percent(50));
        assert_eq!(a.bake_time, Duration::from_secs(10));
        assert!(Cli::try_parse_from(["roll", "out", "--group", "web"]).is_err());
        assert!(
            Cli::try_parse_from([
                "roll",
                "up",
                "--group",
                "web",
                "--image",
                "i",
                "--size",
                "0",
                "--listen",
                "127.0.0.1:1"
            ])
            .is_err()
        );
    }
}
