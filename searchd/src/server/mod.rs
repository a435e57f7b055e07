//! The HTTP server of `searchd serve`: routing, Picky's search endpoint, the
//! health/version/metrics endpoints, limits, authentication and graceful
//! shutdown. It owns the [`State`] shared by all connections (the engine
//! once loaded, the readiness latch, the counters) and the accept loop
//! [`serve`].
//!
//! Endpoints:
//! - `GET /<index>?query=&ids=&offset=`: Picky's search (see PICKY.md);
//!   parameters are parsed by [`crate::params`] exactly like Rack does.
//! - `GET /<index>/facets/<category>?filter=&at_least=&counts=false`:
//!   Picky's `Search#facets` of a category with `facets = true` (404 for
//!   any other category).
//! - `GET /live`: 200 while the process runs.
//! - `GET /ready`: 200 once the snapshot is loaded and its golden queries
//!   answered as recorded; 503 before that and again while draining.
//! - `GET /version`: `{"version","index_digest","image"}` (503 until the
//!   snapshot is loaded).
//! - `GET /metrics`: Prometheus text ([`metrics`]).
//!
//! With a tokens file, search, facets and `/metrics` need a bearer token ([`auth`]);
//! the health endpoints stay open for load balancers.
//!
//! Every answer is JSON (`application/json`) except `/metrics`; errors are
//! `{"error":"<code>","message":"<text>"}` with a 4xx/503 status. No input
//! produces a 500: the handler has no fallible path that is not mapped to a
//! status here. Deliberate differences from Picky are listed in PICKY.md
//! and in [`crate::params`].
//!
//! Why it is fast: the handler is synchronous and answers in a ready
//! future (no boxing, no task per request); the only per-request heap
//! allocations are the header map, the JSON body and what the engine
//! needs; counters are relaxed atomics sharded per thread; the header
//! timeout is one timer per connection, not one per request (hyper's own
//! arms a timer for every request head); connections get `TCP_NODELAY`;
//! static bodies are `Bytes::from_static` and the `/version` body is built
//! once.

pub mod auth;
pub mod cache;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::index::Engine;
use crate::search::{FacetError, SearchError};
use crate::snapshot::{SnapshotError, Verify};
use crate::{params, ruby};

pub use metrics::{Metrics, Route};

/// Stack size for the threads that run [`serve`]'s connections: tokio's
/// default 2 MiB plus headroom. The engine's walk over a query's
/// allocations is iterative (a 10,000-word query needs no deep stack), and
/// its work is bounded by [`crate::search::MAX_QUERY_WORK`].
pub const WORKER_STACK_BYTES: usize = 4 << 20;

/// The response body type of every answer.
pub type Body = Full<Bytes>;

/// Limits and behaviour of one server (resolved from `searchd serve`'s
/// flags; [`Config::default`] has the flags' defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest accepted query string (after `?`), in bytes. Puma's limit.
    pub max_query_bytes: usize,
    /// Longest accepted request head (request line and headers), in bytes;
    /// hyper answers 431 beyond it.
    pub max_head_bytes: usize,
    /// Time a client has, after connecting or after its previous request,
    /// to send a complete request head: this closes idle keep-alive
    /// connections and clients that send their headers too slowly.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the listen
    /// backlog.
    pub max_connections: usize,
    /// After a shutdown signal: how long to keep accepting (with `/ready`
    /// answering 503) so that load balancers notice before the listener
    /// closes.
    pub shutdown_delay: Duration,
    /// After the listener closes: how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// Bearer tokens required on search and `/metrics`, if any.
    pub tokens: Option<auth::Tokens>,
    /// The machine image this server runs in, reported by `/version`.
    pub image: Option<String>,
    /// Bytes of search answers to cache (0: no cache); see [`cache`].
    pub cache_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_query_bytes: 10_240,
            max_head_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(75),
            max_connections: 4096,
            shutdown_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
            tokens: None,
            image: None,
            cache_bytes: 64 << 20,
        }
    }
}

/// Where the server is in its life; `/ready` is 200 only in `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Snapshot not loaded or not yet self-checked.
    Starting,
    Ready,
    /// A shutdown signal arrived.
    Draining,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Why [`State::load`] or [`State::install`] refused a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{} golden queries answered differently from the recording:\n{}", .0.len(), .0.join("\n"))]
    Golden(Vec<String>),
}

/// Everything the connections share.
pub struct State {
    config: Config,
    /// Time origin of the connections' activity clocks.
    epoch: Instant,
    engine: OnceLock<Loaded>,
    phase: AtomicU8,
    metrics: Metrics,
    cache: Option<cache::Cache>,
}

/// The engine plus what is derived from it once.
struct Loaded {
    engine: Engine,
    /// `/` + the index name: the search route.
    path: String,
    version_body: Bytes,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("phase", &self.phase())
            .field("engine", &self.engine().map(Engine::name))
            .finish()
    }
}

#[derive(serde::Serialize)]
struct VersionBody<'a> {
    version: &'a str,
    index_digest: &'a str,
    image: Option<&'a str>,
}

impl State {
    /// A server without an index yet: `/live` answers, `/ready` is 503
    /// until [`State::install`] or [`State::load`] succeeds.
    pub fn new(config: Config) -> State {
        State {
            cache: cache::Cache::new(config.cache_bytes),
            config,
            epoch: Instant::now(),
            engine: OnceLock::new(),
            phase: AtomicU8::new(STARTING),
            metrics: Metrics::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.engine.get().map(|l| &l.engine)
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            STARTING => Phase::Starting,
            READY => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Opens the snapshot and installs it (see [`State::install`]).
    pub fn load(&self, path: &Path, verify: Verify) -> Result<(), LoadError> {
        self.install(Engine::open(path, verify)?)
    }

    /// Replays the engine's golden queries and, if they all answer as
    /// recorded, starts serving it and flips `/ready` to 200 (unless the
    /// server is already draining). An engine is installed at most once.
    pub fn install(&self, engine: Engine) -> Result<(), LoadError> {
        // The last net only: every read of snapshot bytes is checked and
        // the term tables were walked when the engine was wired, so the
        // replay cannot panic on damaged data. Were it to, that is a
        // refused snapshot, not a start-up stuck on a dead loading thread.
        let failures =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.check_golden()))
                .map_err(|_| SnapshotError::Corrupt {
                    path: engine.path().to_owned(),
                    why: "replaying the golden queries failed on damaged data".into(),
                })?;
        if !failures.is_empty() {
            return Err(LoadError::Golden(failures));
        }
        let version_body = serde_json::to_vec(&VersionBody {
            version: env!("CARGO_PKG_VERSION"),
            index_digest: engine.digest(),
            image: self.config.image.as_deref(),
        })
        .expect("serializing strings cannot fail");
        let loaded = Loaded {
            path: format!("/{}", engine.name()),
            version_body: Bytes::from(version_body),
            engine,
        };
        if self.engine.set(loaded).is_ok() {
            let _ =
                self.phase
                    .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
        }
        Ok(())
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Flips `/ready` to 503 for good: a shutdown has begun.
    pub fn begin_drain(&self) {
        self.phase.store(DRAINING, Ordering::Release);
    }

    /// Answers one request. Public so that tests and embedders can drive
    /// the router without a socket; [`serve`] calls it for every request.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Body> {
        self.handle_at(req, Instant::now())
    }

    /// [`State::handle`] for a request that arrived at `started`.
    fn handle_at<B>(&self, req: &Request<B>, started: Instant) -> Response<Body> {
        let (route, mut response) = self.route(req, started);
        if self.phase.load(Ordering::Relaxed) == DRAINING {
            // Ask keep-alive clients to reconnect (to another instance).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics.record(route, status, elapsed);
        tracing::debug!(
            method = %req.method(),
            target = %req.uri(),
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        );
        response
    }

    fn route<B>(&self, req: &Request<B>, started: Instant) -> (Route, Response<Body>) {
        let path = req.uri().path();
        let loaded = self.engine.get();
        let route = match path {
            "/live" => Route::Live,
            "/ready" => Route::Ready,
            "/version" => Route::Version,
            "/metrics" => Route::Metrics,
            p if loaded.is_some_and(|l| l.path == p) => Route::Search,
            p if loaded.is_some_and(|l| facet_category(&l.path, p).is_some()) => Route::Facets,
            _ => Route::Other,
        };
        if route != Route::Other && !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET and HEAD are supported",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return (route, r);
        }
        let response = match route {
            Route::Live => json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"live\"}")),
            Route::Ready => match self.phase() {
                Phase::Ready => json(
                    StatusCode::OK,
                    Bytes::from_static(b"{\"status\":\"ready\"}"),
                ),
                Phase::Starting => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"{\"status\":\"starting\"}"),
                ),
                Phase::Draining => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"{\"status\":\"draining\"}"),
                ),
            },
            Route::Version => match loaded {
                Some(l) => json(StatusCode::OK, l.version_body.clone()),
                None => not_ready(),
            },
            Route::Metrics if !self.authorized(req) => unauthorized(),
            Route::Metrics => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(self.metrics.render(&self.info())),
            ),
            Route::Search if !self.authorized(req) => unauthorized(),
            Route::Search => match loaded {
                Some(l) => self.search(&l.engine, req.uri().query().unwrap_or(""), started),
                None => not_ready(),
            },
            Route::Facets if !self.authorized(req) => unauthorized(),
            Route::Facets => match loaded {
                Some(l) => {
                    let category = facet_category(&l.path, path).unwrap_or_default();
                    self.facets(&l.engine, category, req.uri().query().unwrap_or(""))
                }
                None => not_ready(),
            },
            Route::Other if loaded.is_none() => not_ready(),
            Route::Other => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint: search is at /<index>, health at /live and /ready",
            ),
        };
        (route, response)
    }

    /// The 400 for a query string longer than `--max-query-bytes`.
    fn too_long(&self, qs: &str) -> Option<Response<Body>> {
        (qs.len() > self.config.max_query_bytes).then(|| {
            error(
                StatusCode::BAD_REQUEST,
                "query_too_long",
                &format!(
                    "the query string is {} bytes long; at most {} are accepted",
                    qs.len(),
                    self.config.max_query_bytes
                ),
            )
        })
    }

    /// Picky's facets of `category` (`/<index>/facets/<category>`).
    fn facets(&self, engine: &Engine, category: &str, qs: &str) -> Response<Body> {
        if let Some(refused) = self.too_long(qs) {
            return refused;
        }
        let p = match params::facet_params(qs.as_bytes()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
        };
        let category = match params::unescape(category.as_bytes()) {
            Ok(c) => String::from_utf8_lossy(&c).into_owned(),
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_path", &e.to_string()),
        };
        let mut body = Vec::with_capacity(256);
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.facets_json(
                &category,
                p.filter.as_deref(),
                p.at_least,
                p.counts,
                &mut body,
            )
        }));
        match answer {
            Ok(Ok(())) => json(StatusCode::OK, Bytes::from(body)),
            Ok(Err(e)) => {
                // Exhaustive on purpose, as for searches: never a 500.
                let (status, code) = match &e {
                    FacetError::UnknownCategory(_)
                    | FacetError::NotFaceted(_)
                    | FacetError::SeveralIndexes => (StatusCode::NOT_FOUND, "no_facets"),
                    FacetError::TooMany(_) => (StatusCode::BAD_REQUEST, "too_many_facets"),
                    FacetError::Search(SearchError::TooComplex) => {
                        (StatusCode::BAD_REQUEST, "query_too_complex")
                    }
                    FacetError::Search(SearchError::RangeTooLarge(_)) => {
                        (StatusCode::BAD_REQUEST, "range_too_large")
                    }
                };
                error(status, code, &e.to_string())
            }
            Err(_) => {
                tracing::error!(category, "the facets panicked (a bug): answered 500");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the facets failed unexpectedly; this is a bug in searchd",
                )
            }
        }
    }

    /// Whether the request may use a guarded endpoint.
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(tokens) = &self.config.tokens else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        tokens.allows(given)
    }

    /// Picky's search. `started` is when the request arrived: the answer's
    /// `duration` counts from there (parameter parsing included, a fraction
    /// of a microsecond), which saves a clock read per request.
    fn search(&self, engine: &Engine, qs: &str, started: Instant) -> Response<Body> {
        if let Some(refused) = self.too_long(qs) {
            return refused;
        }
        let p = match params::search_params(qs.as_bytes()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
        };
        let key = match &self.cache {
            Some(c) => {
                let key = cache::key(&p.query, p.ids, p.offset);
                if let Some(body) = c.get(&key, || started.elapsed().as_secs_f64()) {
                    self.metrics.cache_hit();
                    return json(StatusCode::OK, body);
                }
                self.metrics.cache_miss();
                Some(key)
            }
            None => None,
        };
        let mut body = Vec::with_capacity(512);
        // The last net only: the engine reads the snapshot through checked
        // accessors and term tables validated at open, so no bytes make it
        // panic. Should a bug do so anyway, this request gets a 500 and the
        // connection (and its metrics) live on. No cost unless it unwinds.
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.search_json(&p.query, p.ids, p.offset, &mut body, || {
                started.elapsed().as_secs_f64()
            })
        }));
        let Ok(answer) = answer else {
            tracing::error!(query = %p.query, "the search panicked (a bug): answered 500");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the search failed unexpectedly; this is a bug in searchd",
            );
        };
        match answer {
            Ok(()) => {
                let body = Bytes::from(body);
                if let (Some(c), Some(key)) = (&self.cache, key) {
                    c.insert(key, body.clone());
                }
                json(StatusCode::OK, body)
            }
            // Exhaustive on purpose: a new engine error must get a 4xx
            // code here, never fall through to a 500.
            Err(e) => {
                let code = match e {
                    SearchError::TooComplex => "query_too_complex",
                    SearchError::RangeTooLarge(_) => "range_too_large",
                };
                error(StatusCode::BAD_REQUEST, code, &e.to_string())
            }
        }
    }

    fn info(&self) -> metrics::Info<'_> {
        let phase = self.phase();
        metrics::Info {
            version: env!("CARGO_PKG_VERSION"),
            index: self.engine().map(|e| (e.name(), e.digest(), e.documents())),
            image: self.config.image.as_deref(),
            ready: phase == Phase::Ready,
            draining: phase == Phase::Draining,
            cache_bytes: self.cache.as_ref().map(cache::Cache::bytes),
        }
    }
}

/// Headers every answer carries besides its content type. Picky's stack
/// (Rack::Protection) sends the same three; they cost a few nanoseconds and
/// keep security scanners and browsers that open an API URL quiet.
fn headers(content_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        header::X_XSS_PROTECTION,
        HeaderValue::from_static("1; mode=block"),
    );
    headers
}

/// The headers of every JSON answer, built once: cloning them costs less
/// than hashing and inserting four names per response.
static JSON_HEADERS: std::sync::LazyLock<HeaderMap> =
    std::sync::LazyLock::new(|| headers("application/json"));

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    with_headers(status, headers(content_type), body)
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    with_headers(status, JSON_HEADERS.clone(), body)
}

/// `{"error":"<code>","message":"<text>"}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut body = Vec::with_capacity(32 + code.len() + message.len());
    body.extend_from_slice(b"{\"error\":");
    ruby::write_json_str(code, &mut body);
    body.extend_from_slice(b",\"message\":");
    ruby::write_json_str(message, &mut body);
    body.push(b'}');
    json(status, Bytes::from(body))
}

fn unauthorized() -> Response<Body> {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs an `Authorization: Bearer <token>` header with a valid token",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"searchd\""),
    );
    r
}

fn not_ready() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "the index is still loading",
    )
}

/// One connection's state: the server, and when its last request head
/// arrived (nanoseconds since [`State::epoch`]) for the header timeout.
struct Connection {
    state: Arc<State>,
    last_request: AtomicU64,
}

impl Connection {
    fn new(state: Arc<State>) -> Connection {
        let now = state.nanos_since_epoch(Instant::now());
        Connection {
            state,
            last_request: AtomicU64::new(now),
        }
    }

    /// Resolves when the client has sent no complete request head for the
    /// header timeout. One timer per connection, re-armed only when it
    /// fires: cheaper than hyper's own header timeout, which arms a timer
    /// for every request.
    async fn idle_timeout(&self) {
        let timeout = self.state.config.header_timeout;
        let epoch = self.state.epoch;
        loop {
            let last = Duration::from_nanos(self.last_request.load(Ordering::Relaxed));
            let deadline = epoch + last + timeout;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// The hyper service of one connection: answers are ready immediately.
#[derive(Clone)]
struct Service(Arc<Connection>);

impl hyper::service::Service<Request<hyper::body::Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let now = Instant::now();
        let conn = &self.0;
        conn.last_request
            .store(conn.state.nanos_since_epoch(now), Ordering::Relaxed);
        std::future::ready(Ok(conn.state.handle_at(&req, now)))
    }
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the drain timeout ran out (0: every
    /// in-flight request finished).
    pub abandoned: usize,
}

/// Accepts connections on `listener` and serves them until `shutdown`
/// completes; then flips `/ready` to 503, keeps accepting for the
/// configured shutdown delay, closes the listener and waits up to the drain
/// timeout for in-flight requests. Idle keep-alive connections are closed
/// at once; busy ones after their current response.
///
/// Connections still open after the drain timeout are left to the caller's
/// runtime (dropping it closes them).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let config = state.config.clone();
    let mut http = http1::Builder::new();
    // No hyper timer: the header timeout is [`Connection::idle_timeout`].
    http.max_buf_size(config.max_head_bytes.max(8192))
        .max_header_size(config.max_head_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));

    let stop_accepting = async {
        shutdown.await;
        state.begin_drain();
        tracing::info!(
            delay_ms = config.shutdown_delay.as_millis() as u64,
            "shutdown signal: /ready now answers 503"
        );
        tokio::time::sleep(config.shutdown_delay).await;
    };
    tokio::pin!(stop_accepting);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut stop_accepting => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    state.metrics.accept_error();
                    tracing::warn!(error = %e, "accept failed");
                    // Out of descriptors or memory: back off instead of
                    // spinning; per-connection errors just move on.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                    ) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        state.metrics.connection_accepted();
        let conn = Arc::new(Connection::new(state.clone()));
        let http_conn = http.serve_connection(TokioIo::new(stream), Service(conn.clone()));
        let http_conn = graceful.watch(http_conn);
        tokio::spawn(async move {
            let metrics = &conn.state.metrics;
            tokio::select! {
                result = http_conn => {
                    if let Err(e) = &result {
                        // Client-side trouble (malformed request, reset):
                        // hyper already answered what could be answered.
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    metrics.connection_closed(result.is_err());
                }
                () = conn.idle_timeout() => {
                    tracing::debug!(%peer, "header timeout: closing the connection");
                    metrics.header_timeout();
                    metrics.connection_closed(false);
                }
            }
            drop(permit);
        });
    }
    drop(listener);

    let open = graceful.count();
    tracing::info!(
        connections = open,
        timeout_ms = config.drain_timeout.as_millis() as u64,
        "listener closed; draining"
    );
    match tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => Drained { abandoned: 0 },
        Err(_) => {
            let abandoned = state.metrics.open_connections() as usize;
            tracing::warn!(
                connections = abandoned,
                "drain timeout: closing connections that are still busy"
            );
            Drained { abandoned }
        }
    }
}

/// The category of a facets path `<search path>/facets/<category>`.
fn facet_category<'p>(search_path: &str, path: &'p str) -> Option<&'p str> {
    path.strip_prefix(search_path)?
        .strip_prefix("/facets/")
        .filter(|c| !c.is_empty() && !c.contains('/'))
}
