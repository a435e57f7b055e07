//! `searchd serve`: flags -> a validated [`Plan`] -> a tokio runtime running
//! [`crate::server::serve`] until SIGTERM/SIGINT.
//!
//! Start-up order: the listener is bound first (so `/live` answers and
//! `/ready` says 503 while the snapshot loads), then the snapshot is opened
//! and self-checked on a blocking thread, then `/ready` turns 200. A bind
//! failure exits 3; a snapshot refused or whose golden queries answer
//! differently, 1; a snapshot that does not exist, 2 (the codes come from
//! [`Error::exit_code`]).
//!
//! With `--verify background` (the default) the whole-file sha256 runs
//! after `/ready` turned 200, on the same blocking thread: a mismatch flips
//! `/ready` to 503, drains like a shutdown and exits 1. Start-up time then
//! does not grow with the snapshot (a 1M-document snapshot hashes in a few
//! hundred ms), and a corrupt file still takes the instance out of service
//! within that time — after the golden queries, which run before `/ready`
//! in every mode, already answered correctly from it.

use kiln_common::parse_duration;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::error::Error;
use crate::server::{self, Config, State, auth::Tokens};
use crate::snapshot::Verify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyArg {
    /// Check the structure before serving, then the sha256 over the whole
    /// file in the background; a mismatch stops the server (exit 1).
    Background,
    /// Check the structure and the sha256 over the whole file before
    /// serving.
    Full,
    /// Check the structure only, trusting the checksum: for huge snapshots
    /// that `bake`/`searchd check` already verified.
    Structure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file to serve (mmapped).
    #[arg(long, value_name = "PATH")]
    pub snapshot: PathBuf,
    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed as `listening on ADDR` on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How to verify the snapshot. The structure is always checked and the
    /// golden queries always replayed before `/ready`; the whole-file
    /// sha256 runs after `/ready` (`background`: a mismatch drains and
    /// exits 1), before it (`full`: start-up time grows with the file), or
    /// not at all (`structure`: for files `searchd check` verified).
    #[arg(long, value_enum, default_value = "background")]
    pub verify: VerifyArg,
    /// Require `Authorization: Bearer <token>` on search, facets and /metrics;
    /// the file holds one token a line (`#` comments). /live, /ready and
    /// /version stay open for health checks.
    #[arg(long, value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Image id reported by /version.
    #[arg(long, value_name = "ID", env = "KILN_IMAGE_ID")]
    pub image: Option<String>,
    /// Longest accepted query string in bytes (longer: 400). Puma's limit.
    #[arg(long, value_name = "BYTES", default_value_t = 10_240)]
    pub max_query_bytes: usize,
    /// Longest accepted request line + headers in bytes (longer: 431).
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    pub max_head_bytes: usize,
    /// Time a client has to send a request's headers; also how long an
    /// idle keep-alive connection is kept (keep it above the load
    /// balancer's idle timeout, 60s on AWS). Units: ms, s, m.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
    /// On SIGTERM/SIGINT, keep accepting for this long with /ready at 503
    /// (lets a load balancer's health check notice) before closing the
    /// listener.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// After the listener closes, wait at most this long for in-flight
    /// requests; then exit 0 regardless.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Memory for the search answer cache, in MiB (keys + bodies; 0 turns
    /// the cache off). Safe to leave on: the snapshot is immutable, so an
    /// answer never goes stale; only the `duration` of a cached answer is
    /// recomputed (it reports the lookup's time). A full cache shard is
    /// cleared; watch searchd_cache_hits_total / searchd_cache_misses_total.
    #[arg(long, value_name = "MB", default_value_t = 64)]
    pub cache_mb: usize,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter: a level (`info`, `debug` logs one line per request) or
    /// tracing directives (`searchd=debug,hyper=warn`).
    #[arg(
        long,
        value_name = "FILTER",
        env = "SEARCHD_LOG",
        default_value = "info"
    )]
    pub log: String,
}

/// The resolved flags: nothing after [`plan`] re-checks them.
pub struct Plan {
    pub snapshot: PathBuf,
    pub listen: SocketAddr,
    pub verify: Verify,
    /// Hash the whole file after `/ready` (`--verify background`).
    pub verify_after_ready: bool,
    pub workers: usize,
    pub config: Config,
    pub log_format: LogFormat,
    pub log: String,
}

pub fn plan(args: Args) -> Result<Plan, Error> {
    let usage = |why: &str| Err(Error::Usage(why.into()));
    let tokens = match &args.tokens_file {
        Some(path) => Some(Tokens::load(path)?),
        None => None,
    };
    if args.max_query_bytes == 0 {
        return usage("--max-query-bytes must be at least 1");
    }
    if args.max_head_bytes < 8192 {
        return usage("--max-head-bytes must be at least 8192 (hyper's minimum buffer)");
    }
    if args.max_connections == 0 {
        return usage("--max-connections must be at least 1");
    }
    if args.header_timeout.is_zero() {
        return usage("--header-timeout must be more than 0");
    }
    let workers = match args.workers {
        Some(0) => return usage("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, usize::from),
    };
    let image = args.image.filter(|s| !s.trim().is_empty());
    Ok(Plan {
        snapshot: args.snapshot,
        listen: args.listen,
        verify: match args.verify {
            VerifyArg::Full => Verify::Full,
            VerifyArg::Background | VerifyArg::Structure => Verify::Structure,
        },
        verify_after_ready: args.verify == VerifyArg::Background,
        workers,
        config: Config {
            max_query_bytes: args.max_query_bytes,
            max_head_bytes: args.max_head_bytes,
            header_timeout: args.header_timeout,
            max_connections: args.max_connections,
            shutdown_delay: args.shutdown_delay,
            drain_timeout: args.drain_timeout,
            tokens,
            image,
            cache_bytes: args
                .cache_mb
                .checked_mul(1 << 20)
                .ok_or_else(|| Error::Usage("--cache-mb is too large".into()))?,
        },
        log_format: args.log_format,
        log: args.log,
    })
}

fn init_logging(plan: &Plan) -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_new(&plan.log)
        .map_err(|e| Error::Usage(format!("--log {:?}: {e}", plan.log)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match plan.log_format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already initialised (an embedding test): keep that subscriber.
    let _ = result;
    Ok(())
}

/// Binds with a deep backlog and SO_REUSEADDR (restarts must not wait for
/// TIME_WAIT).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub fn run(args: Args) -> Result<(), Error> {
    let plan = plan(args)?;
    init_logging(&plan)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.workers)
        .thread_stack_size(server::WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "cannot start the runtime",
            source,
        })?;
    let result = runtime.block_on(run_server(plan));
    // Connections still open after the drain timeout are dropped here.
    runtime.shutdown_background();
    result
}

async fn run_server(plan: Plan) -> Result<(), Error> {
    let listener = bind(plan.listen).map_err(|source| Error::Listen {
        addr: plan.listen,
        source,
    })?;
    let addr = listener.local_addr().unwrap_or(plan.listen);
    eprintln!("searchd: listening on {addr}");
    let state = Arc::new(State::new(plan.config));

    // Load in the background; a failure stops the server with its error.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<Error>();
    {
        let state = state.clone();
        let path = plan.snapshot.clone();
        let verify = plan.verify;
        let verify_after_ready = plan.verify_after_ready;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match state.load(&path, verify) {
                Ok(()) => {
                    let e = state.engine().expect("installed");
                    tracing::info!(
                        index = e.name(),
                        documents = e.documents(),
                        digest = e.digest(),
                        millis = started.elapsed().as_secs_f64() * 1e3,
                        "snapshot loaded and self-checked; ready"
                    );
                    if verify_after_ready {
                        let started = std::time::Instant::now();
                        match e.verify_checksum() {
                            Ok(()) => tracing::info!(
                                millis = started.elapsed().as_secs_f64() * 1e3,
                                "snapshot sha256 verified"
                            ),
                            Err(err) => {
                                tracing::error!("{err}; stopping");
                                let _ = failed_tx.send(err.into());
                            }
                        }
                    }
                }
                Err(err) => {
                    tracing::error!("{err}");
                    let _ = failed_tx.send(err.into());
                }
            }
        });
    }

    let failed = Arc::new(std::sync::Mutex::new(None::<Error>));
    let shutdown = {
        let failed = failed.clone();
        async move {
            tokio::select! {
                () = signal() => {}
                err = failed_rx => {
                    if let Ok(err) = err {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                    }
                    // The sender dropped without an error: loading succeeded;
                    // wait for a signal as usual.
                    else {
                        signal().await;
                    }
                }
            }
        }
    };
    let drained = server::serve(listener, state, shutdown).await;
    let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failed {
        Some(err) => Err(err),
        None => {
            tracing::info!(abandoned = drained.abandoned, "stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e300").is_err());
    }
}
