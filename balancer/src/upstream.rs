//! Connections to targets: HTTP/1.1 keep-alive connections, pooled per
//! target, driven by the task of the request that uses them.
//!
//! hyper's pooled client runs every connection as a task of its own, so a
//! proxied request would cross tasks (often threads) on the way out and
//! again on the way back. Here a connection is polled by whoever holds it:
//! the request's service future until the answer's head arrives, then the
//! answer's body ([`UpstreamBody`]) as the client connection writes it
//! out. A request costs its client connection's task and nothing else,
//! like one event loop iteration in HAProxy.
//!
//! A connection goes back to its target's pool once its answer was read in
//! full; an answer cut short closes it. The pool lives in the
//! [`Target`], so a pooled connection can only ever carry requests for the
//! target it was opened to. Idle connections are dropped after
//! [`IDLE_TIMEOUT`], or once the target closed them, which is noticed
//! whenever the pool looks at them: at checkout and on every health-check
//! interval ([`Pool::sweep`]).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::health::{hyper_reason, io_reason};
use crate::pool::{Target, lock};

/// Idle connections older than this are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A target that does not accept within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per target; more are closed when they come back.
const MAX_IDLE: usize = 256;

/// A request body on its way to a target.
pub(crate) enum UpBody {
    /// The client's body, streamed.
    Client(Incoming),
    /// No body (also every retry and mirror: only bodiless requests are
    /// repeated).
    Empty,
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Client(body) => Pin::new(body).poll_frame(cx),
            UpBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Client(body) => body.is_end_stream(),
            UpBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Client(body) => body.size_hint(),
            UpBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// One connection to a target.
pub(crate) struct Upstream {
    sender: SendRequest<UpBody>,
    io: Io,
    rounds: Rounds,
}

/// The connection's I/O; makes progress only when polled.
struct Io {
    driver: Connection<TokioIo<TcpStream>, UpBody>,
    closed: bool,
}

impl Io {
    /// Lets the connection make progress; `false` once it is closed.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closed && Pin::new(&mut self.driver).poll(cx).is_ready() {
            // Closed by either side, or broken: either way done.
            self.closed = true;
        }
        !self.closed
    }
}

impl Upstream {
    /// Connects; `Err` is a short reason ("connection refused"). Boxed
    /// once here, so handing the connection between pool, request and
    /// answer body moves a pointer, not hyper's connection state.
    pub(crate) async fn open(addr: SocketAddr) -> Result<Box<Upstream>, String> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(io_reason(&e)),
            Err(_) => {
                return Err(format!(
                    "connect timed out after {}s",
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        };
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_reason(&e))?;
        Ok(Box::new(Upstream {
            sender,
            io: Io {
                driver,
                closed: false,
            },
            rounds: Rounds::new(),
        }))
    }

    /// Whether a new request can go out on it now. Polls once without a
    /// waker: enough to notice a close that already arrived, and to let
    /// an answered connection become idle.
    fn reusable(&mut self) -> bool {
        self.io.drive(&mut Context::from_waker(Waker::noop())) && self.sender.is_ready()
    }

    /// Sends a request and waits for the answer's head. A request the
    /// connection never took (it had closed) comes back in the error.
    pub(crate) async fn send(
        &mut self,
        req: Request<UpBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpBody>>> {
        let Upstream { sender, io, rounds } = self;
        let mut answer = std::pin::pin!(sender.try_send_request(req));
        poll_fn(|cx| {
            rounds.run(cx, |cx| {
                if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
                    return Poll::Ready(answer);
                }
                // Writes the request, reads the answer; the answer may be
                // in right after.
                io.drive(cx);
                answer.as_mut().poll(cx)
            })
        })
        .await
    }
}

/// Keeps the wake-ups a connection causes while its own task polls it
/// inside that poll.
///
/// Driving the connection fills the answer's channels, and filling a
/// channel wakes whoever waits on it: the very task that is polling. Tokio
/// reschedules a task that woke itself as a yield, and a yield also wakes
/// an idle worker to steal it: a futex call, and often a thread hop, per
/// request. So hyper's futures are polled with this waker: a wake-up while
/// [`Rounds::run`] runs only asks for another round there; one from
/// outside (the socket became readable) wakes the task as usual.
struct Rounds {
    shared: Arc<RoundsShared>,
    waker: Waker,
}

struct RoundsShared {
    /// `RUNNING` and `WOKEN` bits.
    state: AtomicU8,
    /// The task polling the connection now (or last).
    task: Mutex<Option<Waker>>,
}

const RUNNING: u8 = 1;
const WOKEN: u8 = 2;
/// Rounds in one poll before yielding to other tasks anyway.
const MAX_ROUNDS: usize = 32;

impl Wake for RoundsShared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // One atomic step, so a wake-up is either seen by the round that
        // is running or goes to the task: never lost in between.
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & RUNNING == 0
            && let Some(task) = lock(&self.task).as_ref()
        {
            task.wake_by_ref();
        }
    }
}

impl Rounds {
    fn new() -> Rounds {
        let shared = Arc::new(RoundsShared {
            state: AtomicU8::new(0),
            task: Mutex::new(None),
        });
        Rounds {
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }

    /// Polls `f` with the connection's waker until it is ready or nothing
    /// woke it during a round.
    fn run<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut task = lock(&self.shared.task);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..MAX_ROUNDS {
            self.shared.state.store(RUNNING, Ordering::Release);
            let polled = f(&mut inner);
            let woken = self.shared.state.swap(0, Ordering::AcqRel) & WOKEN != 0;
            // A wake-up during a round that ended ready needs nothing: the
            // caller polls again for what comes next.
            if polled.is_ready() || !woken {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The idle connections of one target.
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Box<Upstream>,
    /// When a sweep first saw it idle (the clock is read per sweep, not
    /// per request).
    seen: Option<Instant>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle connection that is still open (the
    /// likeliest to be, and it lets the others time out).
    fn checkout(&self) -> Option<Box<Upstream>> {
        loop {
            let mut idle = lock(&self.idle).pop()?;
            if idle.conn.reusable() {
                return Some(idle.conn);
            }
        }
    }

    fn checkin(&self, mut conn: Box<Upstream>) {
        if !conn.reusable() {
            return;
        }
        // Nobody to wake while it idles.
        *lock(&conn.rounds.shared.task) = None;
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, seen: None });
        }
    }

    /// Closes idle connections that timed out or that the target closed.
    /// Called every health-check interval: a connection is closed between
    /// [`IDLE_TIMEOUT`] and that plus one interval after its last use.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        lock(&self.idle).retain_mut(|i| {
            let seen = *i.seen.get_or_insert(now);
            now.duration_since(seen) < IDLE_TIMEOUT && i.conn.reusable()
        });
    }

    pub(crate) fn clear(&self) {
        lock(&self.idle).clear();
    }
}

/// Why a target gave no answer.
pub(crate) enum Failure {
    /// No connection (refused, unreachable, connect timeout).
    Connect(String),
    /// The connection broke before the answer's head (reset, closed,
    /// malformed answer).
    Broken(String),
    /// No answer head before the deadline.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(reason) | Failure::Broken(reason) => f.write_str(reason),
            Failure::Timeout => f.write_str("no answer in time"),
        }
    }
}

/// Sends `req` to `target` on a pooled connection, or a new one, and
/// waits until `deadline` at most for the answer's head. A failed connect
/// counts as a failed health check at once (passive health), so a dead
/// instance leaves rotation without waiting for the next active check.
pub(crate) async fn send(
    target: &Arc<Target>,
    mut req: Request<UpBody>,
    deadline: tokio::time::Instant,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let attempt = async {
        while let Some(mut conn) = target.pool.checkout() {
            match conn.send(req).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // Closed by the target before the request went out:
                    // nothing was sent, try the next connection.
                    Some(unsent) => req = unsent,
                    None => return Err(Failure::Broken(hyper_reason(&e.into_error()))),
                },
            }
        }
        let mut conn = Upstream::open(target.addr).await.map_err(|reason| {
            target.record_check(Err(reason.clone()));
            Failure::Connect(reason)
        })?;
        match conn.send(req).await {
            Ok(resp) => Ok((resp, conn)),
            Err(e) => Err(Failure::Broken(hyper_reason(&e.into_error()))),
        }
    };
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(Ok((resp, conn))) => Ok((
            resp,
            Lease {
                conn,
                target: Arc::clone(target),
            },
        )),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::Timeout),
    }
}

/// A connection lent to one answer until its body is read.
pub(crate) struct Lease {
    conn: Box<Upstream>,
    target: Arc<Target>,
}

/// An answer's body, read through the connection it arrives on; the
/// connection goes back to its target's pool once the body is complete.
pub(crate) struct UpstreamBody {
    body: Incoming,
    conn: Option<Lease>,
}

impl UpstreamBody {
    pub(crate) fn new(body: Incoming, conn: Lease) -> UpstreamBody {
        UpstreamBody {
            body,
            conn: Some(conn),
        }
    }

    fn release(&mut self) {
        if let Some(Lease { conn, target }) = self.conn.take()
            && target.takes_connections()
        {
            target.pool.checkin(conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let body = &mut this.body;
        let polled = match &mut this.conn {
            Some(lease) => {
                let Upstream { io, rounds, .. } = &mut *lease.conn;
                rounds.run(cx, |cx| {
                    let polled = Pin::new(&mut *body).poll_frame(cx);
                    if polled.is_ready() {
                        return polled;
                    }
                    // Reading the connection feeds the body; it may be
                    // ready now.
                    io.drive(cx);
                    Pin::new(&mut *body).poll_frame(cx)
                })
            }
            None => Pin::new(&mut *body).poll_frame(cx),
        };
        let frame = ready!(polled);
        match &frame {
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            // Cut short: the connection is in no state to carry another.
            Some(Err(_)) => this.conn = None,
            None => this.release(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper stops polling a body that says it ended, so the end may
        // only be seen here. Anything else was abandoned mid-way.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
