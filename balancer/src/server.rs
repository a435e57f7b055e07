//! Accepting connections: the proxy listener (plain or TLS, HTTP/1.1 with
//! keep-alive) and the admin listener (`/metrics`, `/live`), and how both
//! stop.
//!
//! Shutdown is two signals: `stop` ends accepting and asks open
//! connections to close after their current request (hyper's graceful
//! shutdown); `force` drops whatever is still open once the grace is over.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::lb::State;
use crate::proxy::{self, Conn};

/// A client connection may wait this long between requests (ALB's idle
/// timeout); it is also how long a request head may take to arrive.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once `signal` is (or was already) raised.
async fn raised(signal: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can raise it any more, so
    // wait forever rather than stop on our own.
    if signal.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Accepts and serves client connections until `stop`; returns the
/// connections still open, for the caller to wait out.
pub(crate) async fn proxy(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = raised(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    backoff(&e).await;
                    continue;
                }
            },
        };
        // Small answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn::new(Arc::clone(&state), peer));
        let watcher = graceful.watcher();
        let mut force = force.clone();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = async {
                match tls {
                    None => serve(&http, TokioIo::new(stream), conn, watcher).await,
                    Some(tls) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                serve(&http, TokioIo::new(stream), conn, watcher).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = raised(&mut force) => {}
            }
        });
    }
    graceful
}

async fn serve<I>(http: &http1::Builder, io: TokioIo<I>, conn: Arc<Conn>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(Arc::clone(&conn), req));
    if let Err(e) = watcher.watch(http.serve_connection(io, service)).await {
        // Client-side trouble (reset, malformed request): hyper already
        // answered what could be answered.
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Serves `/metrics` and `/live` until `stop`.
pub(crate) async fn admin(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            biased;
            () = raised(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    backoff(&e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(admin_answer(&state, &req)) }
            });
            tokio::select! {
                _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service) => {}
                () = raised(&mut stop) => {}
            }
        });
    }
}

fn admin_answer(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(state.render_metrics()),
        ),
        (&Method::GET, "/live") => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// After a failed accept: per-connection errors just move on; running out
/// of descriptors or memory waits a little instead of spinning.
async fn backoff(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if !matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        tracing::warn!(error = %e, "accept failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
