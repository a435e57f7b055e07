//! Test fixtures: real hyper backends on 127.0.0.1:0 that can be made
//! unhealthy, slow or killed, a small HTTP client, and a polling helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use balancer::{Balancer, Config, HealthCheck, TargetHealth, TargetSpec};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Health checks fast enough for tests: every 50 ms, 1 success to become
/// healthy, 2 failures to become unhealthy.
pub fn fast_health() -> HealthCheck {
    HealthCheck {
        path: "/ready".into(),
        interval_ms: 50,
        timeout_ms: 500,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

pub fn config(health: HealthCheck) -> Config {
    Config {
        name: "web".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        tls: None,
        health,
        deregistration_delay: Duration::from_secs(10),
    }
}

pub fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A balancer forwarding to "blue" (groups "blue" and "green").
pub async fn balancer(cfg: Config) -> Balancer {
    Balancer::start(cfg, &groups(&["blue", "green"]), "blue")
        .await
        .expect("balancer starts")
}

pub fn spec(b: &Backend) -> TargetSpec {
    TargetSpec {
        id: b.name.clone(),
        addr: b.addr,
        initial: TargetHealth::Initial,
    }
}

pub fn healthy_spec(b: &Backend) -> TargetSpec {
    TargetSpec {
        initial: TargetHealth::Healthy,
        ..spec(b)
    }
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after
/// `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn health_of(lb: &Balancer, tg: &str, id: &str) -> Option<TargetHealth> {
    lb.targets(tg)
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.health)
}

pub async fn wait_healthy(lb: &Balancer, tg: &str, ids: &[&str]) {
    wait_until(Duration::from_secs(5), "targets healthy", || {
        ids.iter()
            .all(|id| health_of(lb, tg, id) == Some(TargetHealth::Healthy))
    })
    .await;
}

/// What a backend saw of the last `/echo` request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real HTTP/1.1 server with a few behaviours picked by path:
/// - `/ready`: the health check, answering `ready` (200 by default);
/// - `/echo...`: records the request ([`Backend::last`]) and answers with
///   some hop-by-hop headers that must not reach the client;
/// - `/sleep/<ms>`: answers after `ms` milliseconds;
/// - `/break`: sends the head and part of the body, then breaks off;
/// - `/big/<n>`: an `n`-byte body;
/// - `/status/<code>`: answers `code`;
/// - `/search?...`: a Picky-like JSON answer whose `duration` differs on
///   every call (`total` is 2 instead of 1 on a `variant` backend when the
///   query contains `differ`);
/// - anything else: 200 with the backend's name.
///
/// Every answer carries `x-backend: <name>`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub ready: Arc<AtomicU16>,
    /// Extra delay before `/ready` answers.
    pub ready_delay_ms: Arc<AtomicU64>,
    /// Requests other than health checks.
    pub requests: Arc<AtomicU64>,
    pub checks: Arc<AtomicU64>,
    /// Connections that carried at least one request other than a health
    /// check.
    pub connections: Arc<AtomicU64>,
    pub variant: Arc<AtomicBool>,
    /// When not 0, every request but health checks is answered with it.
    pub force_status: Arc<AtomicU16>,
    /// Extra delay before any request but a health check is answered.
    pub delay_ms: Arc<AtomicU64>,
    pub last: Arc<Mutex<Option<Seen>>>,
    kill: watch::Sender<bool>,
}

#[derive(Clone)]
struct Shared {
    name: String,
    ready: Arc<AtomicU16>,
    ready_delay_ms: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    checks: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    variant: Arc<AtomicBool>,
    force_status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    last: Arc<Mutex<Option<Seen>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let backend = Backend {
            name: name.to_string(),
            addr,
            ready: Arc::new(AtomicU16::new(200)),
            ready_delay_ms: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            checks: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicU64::new(0)),
            variant: Arc::new(AtomicBool::new(false)),
            force_status: Arc::new(AtomicU16::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            last: Arc::new(Mutex::new(None)),
            kill,
        };
        let shared = Shared {
            name: name.to_string(),
            ready: backend.ready.clone(),
            ready_delay_ms: backend.ready_delay_ms.clone(),
            requests: backend.requests.clone(),
            checks: backend.checks.clone(),
            connections: backend.connections.clone(),
            variant: backend.variant.clone(),
            force_status: backend.force_status.clone(),
            delay_ms: backend.delay_ms.clone(),
            last: backend.last.clone(),
        };
        tokio::spawn(async move {
            let mut stop = killed.clone();
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.wait_for(|k| *k) => return,
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut killed = killed.clone();
                tokio::spawn(async move {
                    let used = Arc::new(AtomicBool::new(false));
                    let service = service_fn(move |req: Request<Incoming>| {
                        if req.uri().path() != "/ready" && !used.swap(true, SeqCst) {
                            shared.connections.fetch_add(1, SeqCst);
                        }
                        answer(shared.clone(), req)
                    });
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    // Killed: the connection is dropped as it is, whatever
                    // it was doing.
                    tokio::select! {
                        _ = conn => {}
                        _ = killed.wait_for(|k| *k) => {}
                    }
                });
            }
        });
        backend
    }

    /// Drops the listener and every connection at once, like a crashed
    /// process.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    pub fn set_ready(&self, status: u16) {
        self.ready.store(status, SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    pub fn last(&self) -> Option<Seen> {
        self.last.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(s: Shared, req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/ready" {
        s.checks.fetch_add(1, SeqCst);
        let delay = s.ready_delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let status = StatusCode::from_u16(s.ready.load(SeqCst)).unwrap();
        return Ok(reply(&s, status, Bytes::from_static(b"ready")));
    }
    s.requests.fetch_add(1, SeqCst);
    let delay = s.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let forced = s.force_status.load(SeqCst);
    if forced != 0 {
        let status = StatusCode::from_u16(forced).unwrap();
        return Ok(reply(&s, status, Bytes::from(format!("forced {forced}"))));
    }
    if path.starts_with("/echo") {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        *s.last.lock().unwrap() = Some(Seen {
            method,
            uri,
            headers,
            body: body.clone(),
        });
        let mut resp = reply(&s, StatusCode::OK, body);
        let h = resp.headers_mut();
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("trailer", "x-checksum".parse().unwrap());
        h.insert("x-echo", "yes".parse().unwrap());
        return Ok(resp);
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(reply(&s, StatusCode::OK, Bytes::from(s.name.clone())));
    }
    if path == "/break" {
        let mut resp = Response::new(TestBody::Broken(Broken::Start));
        resp.headers_mut()
            .insert("content-length", "100".parse().unwrap());
        return Ok(resp);
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let n: usize = n.parse().unwrap();
        return Ok(reply(&s, StatusCode::OK, Bytes::from(vec![b'x'; n])));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return Ok(reply(&s, status, Bytes::from(format!("status {code}"))));
    }
    if path == "/search" {
        let query = req.uri().query().unwrap_or("").to_string();
        let total = if s.variant.load(SeqCst) && query.contains("differ") {
            2
        } else {
            1
        };
        let duration = fastrand::f64() / 1000.0;
        let body = format!(
            r#"{{"allocations":[],"query":"{query}","offset":0,"duration":{duration},"total":{total}}}"#
        );
        return Ok(reply(&s, StatusCode::OK, Bytes::from(body)));
    }
    Ok(reply(&s, StatusCode::OK, Bytes::from(s.name.clone())))
}

fn reply(s: &Shared, status: StatusCode, body: Bytes) -> Response<TestBody> {
    let mut resp = Response::new(TestBody::Full(Some(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-backend", s.name.parse().unwrap());
    resp
}

/// A full body, or one that sends 10 bytes of the 100 it announced,
/// waits a little (so they reach the client) and then fails: the
/// connection is cut mid-body.
pub enum TestBody {
    Full(Option<Bytes>),
    Broken(Broken),
}

pub enum Broken {
    Start,
    Waiting(Pin<Box<tokio::time::Sleep>>),
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            TestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            TestBody::Broken(state @ Broken::Start) => {
                *state = Broken::Waiting(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
            }
            TestBody::Broken(Broken::Waiting(sleep)) => {
                std::task::ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(std::io::Error::other("broken"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, TestBody::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            TestBody::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            TestBody::Full(None) => hyper::body::SizeHint::with_exact(0),
            TestBody::Broken(_) => hyper::body::SizeHint::with_exact(100),
        }
    }
}

/// One keep-alive client connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

/// An answer as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn backend(&self) -> String {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let (head, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send(get_request(path)).await
    }
}

pub fn get_request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "kiln.test")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    Client::connect(addr).await.get(path).await.unwrap()
}

/// How many answers came from each backend.
pub fn by_backend(answers: &[Answer]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in answers {
        *m.entry(a.backend()).or_default() += 1;
    }
    m
}
