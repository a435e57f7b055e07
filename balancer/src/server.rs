//! Accepting connections: the proxy listener (plain or TLS, HTTP/1.1 with
//! keep-alive) and the admin listener (`/metrics`, `/live`), and how both
//! stop.
//!
//! Shutdown: `stop` (a watch channel) ends accepting; then every open
//! client connection is asked to close after its current request
//! (hyper's graceful shutdown) and, once the grace is over, dropped. Each
//! connection has its own [`Control`] for that rather than one shared
//! channel: a connection task checks it with an atomic load on every
//! poll, where a shared channel would take a shared lock each time.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::lb::State;
use crate::pool::lock;
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

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// How one client connection is told to close.
struct Control {
    state: AtomicU8,
    /// The connection's task, registered on its first poll.
    task: OnceLock<Waker>,
}

impl Control {
    fn set(&self, state: u8) {
        // SeqCst here and in `Tracked`: either the task sees the new state
        // or this sees the task's waker.
        self.state.fetch_max(state, SeqCst);
        if let Some(task) = self.task.get() {
            task.wake_by_ref();
        }
    }
}

/// The open client connections of a listener.
pub(crate) struct Connections {
    controls: Mutex<Vec<Weak<Control>>>,
    open: AtomicUsize,
    all_closed: Notify,
}

impl Connections {
    pub(crate) fn new() -> Connections {
        Connections {
            controls: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
        }
    }

    fn track(self: &Arc<Self>) -> Tracked {
        let control = Arc::new(Control {
            state: AtomicU8::new(OPEN),
            task: OnceLock::new(),
        });
        let open = self.open.fetch_add(1, SeqCst) + 1;
        let mut controls = lock(&self.controls);
        // Forget closed connections now and then (amortised).
        if controls.len() >= 64 && controls.len() >= 2 * open {
            controls.retain(|c| c.strong_count() > 0);
        }
        controls.push(Arc::downgrade(&control));
        Tracked {
            connections: Arc::clone(self),
            control,
        }
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(SeqCst)
    }

    /// Asks every open connection to close after its current request
    /// (`force`: at once).
    pub(crate) fn close(&self, force: bool) {
        let state = if force { CLOSED } else { CLOSING };
        for control in lock(&self.controls).iter().filter_map(Weak::upgrade) {
            control.set(state);
        }
    }

    /// Resolves once no connection is open.
    pub(crate) async fn closed(&self) {
        loop {
            let mut notified = pin!(self.all_closed.notified());
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection, counted until dropped.
struct Tracked {
    connections: Arc<Connections>,
    control: Arc<Control>,
}

impl Tracked {
    /// Runs a connection's future until it ends or the connection is
    /// closed by force.
    async fn run(&self, connection: impl Future<Output = ()>) {
        let mut connection = pin!(connection);
        poll_fn(|cx| {
            self.control.task.get_or_init(|| cx.waker().clone());
            if self.control.state.load(SeqCst) == CLOSED {
                return Poll::Ready(());
            }
            connection.as_mut().poll(cx)
        })
        .await;
    }

    fn closing(&self) -> bool {
        self.control.state.load(SeqCst) != OPEN
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.connections.open.fetch_sub(1, SeqCst) == 1 {
            self.connections.all_closed.notify_waiters();
        }
    }
}

/// Accepts and serves client connections until `stop`.
pub(crate) async fn proxy(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) {
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
        let tracked = connections.track();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            tracked
                .run(async {
                    match tls {
                        None => serve(&http, TokioIo::new(stream), conn, &tracked).await,
                        Some(tls) => {
                            let handshake =
                                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                            match handshake.await {
                                Ok(Ok(stream)) => {
                                    serve(&http, TokioIo::new(stream), conn, &tracked).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    }
                })
                .await;
        });
    }
}

async fn serve<I>(http: &http1::Builder, io: TokioIo<I>, conn: Arc<Conn>, tracked: &Tracked)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(Arc::clone(&conn), req));
    let mut connection = pin!(http.serve_connection(io, service));
    let mut closing = false;
    let served = poll_fn(|cx| {
        if !closing && tracked.closing() {
            closing = true;
            // Finishes the request in progress, if any, then closes.
            connection.as_mut().graceful_shutdown();
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = served {
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
