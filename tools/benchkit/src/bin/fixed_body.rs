//! `fixed-body`: the "practical limit of this machine" peer for `make bench`.
//!
//! A minimal hyper 1.x + tokio HTTP/1.1 server that answers every request
//! (any method, any path) with the same pre-built body of a given size,
//! `Content-Type: application/json`. It has the runtime settings of a good
//! production server — a multi-thread runtime with one worker per core,
//! TCP_NODELAY, keep-alive — and does no other work, so its throughput and
//! latency on the same query mix are what searchd's are compared against.
//!
//! Prints `listening on ADDR` on stderr once it accepts connections (like
//! `searchd serve`); with port 0 the printed address has the chosen port.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Answer every HTTP request with a fixed JSON body of a given size.
#[derive(Debug, Parser)]
#[command(name = "fixed-body", version)]
struct Args {
    /// Body size in bytes (the body is valid JSON when size >= 2).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Worker threads (default: one per core, like tokio's default).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let body = Bytes::from(benchkit::fixed_json_body(args.size));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    eprintln!("listening on {addr}");

    let mut stop = Box::pin(shutdown_signal());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: keep serving.
                Err(_) => continue,
            },
            () = &mut stop => return Ok(()),
        };
        // Best effort, as any server would: a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| {
                let mut resp = Response::new(Full::new(body.clone()));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(resp) }
            });
            // Client resets are normal at the end of a wrk run.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Resolves on SIGTERM or SIGINT, so the bench can stop it cleanly.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
