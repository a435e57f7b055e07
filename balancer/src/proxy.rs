//! The data path: one client request -> one target of the forwarded group
//! (one retry for an idempotent request that failed before any answer) ->
//! the answer streamed back.
//!
//! Per request this takes no lock across an await and allocates little
//! beyond what hyper does: the forwarded group and its members are read
//! under short read locks, counters are atomics, per-connection values
//! (`X-Forwarded-For`) are built once per connection, and the upstream
//! connection comes from the picked target's own keep-alive pool
//! ([`crate::upstream`]). The only copy is of the headers of a GET or
//! HEAD, kept to retry it (or mirror it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use hyper::http::uri::PathAndQuery;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::body::ProxyBody;
use crate::lb::State;
use crate::pool::{Group, InFlight, Pick, Target};
use crate::shadow::{Mirror, Sample};
use crate::upstream::{self, Failure, Lease, UpBody, UpstreamBody};

/// How long a target may take to start answering (ALB's idle timeout).
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

const NO_TARGET: &str = r#"{"error":"no target available"}"#;
const UPSTREAM_ERROR: &str = r#"{"error":"upstream error"}"#;
const UPSTREAM_TIMED_OUT: &str = r#"{"error":"upstream timeout"}"#;

/// One client connection.
pub(crate) struct Conn {
    pub(crate) state: Arc<State>,
    /// The client's IP as an `X-Forwarded-For` value, built once.
    client_ip: HeaderValue,
}

impl Conn {
    pub(crate) fn new(state: Arc<State>, peer: SocketAddr) -> Conn {
        let client_ip = HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Conn { state, client_ip }
    }
}

/// What the access log line needs.
struct Access<'a> {
    method: &'a Method,
    path: &'a PathAndQuery,
    start: Instant,
}

impl Access<'_> {
    fn log(&self, status: u16, target: &str) {
        tracing::debug!(
            method = %self.method,
            path = %self.path,
            status,
            target,
            ms = self.start.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    }
}

/// The service of every client connection.
pub(crate) async fn handle(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let state = &conn.state;
    state.stats.request();
    let (parts, body) = req.into_parts();
    let (method, mut headers) = (parts.method, parts.headers);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let access = Access {
        method: &method,
        path: &path,
        start,
    };

    let bodiless = !has_body(&headers);
    let idempotent = bodiless && (method == Method::GET || method == Method::HEAD);
    let sample = if idempotent && method == Method::GET {
        state.shadow.sample()
    } else {
        None
    };
    rewrite_request(&mut headers, &conn);

    let Some((group, claim)) = state.pick() else {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(local(state, &access, status, NO_TARGET));
    };
    // For a retry or a mirror; the first attempt takes the original.
    let spare = idempotent.then(|| headers.clone());
    let body = if bodiless {
        UpBody::Empty
    } else {
        UpBody::Client(body)
    };
    let attempt = Attempt {
        state,
        group: &group,
        method: &method,
        path: &path,
        // One deadline for the request, retry included; from `start`,
        // which saves reading the clock again.
        deadline: start + UPSTREAM_TIMEOUT,
    };
    match attempt.forward(claim, headers, body, spare.as_ref()).await {
        Ok((claim, resp, lease)) => {
            let mirror = sample.zip(spare).map(|(sample, headers)| {
                let path = path.clone();
                (sample, Mirror { path, headers })
            });
            Ok(relay(state, &access, claim, resp, lease, mirror))
        }
        Err(failure) => {
            tracing::debug!(%method, %path, error = %failure, "no answer from a target");
            let (status, body) = match failure {
                Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, UPSTREAM_TIMED_OUT),
                Failure::Connect(_) | Failure::Broken(_) => {
                    (StatusCode::BAD_GATEWAY, UPSTREAM_ERROR)
                }
            };
            Ok(local(state, &access, status, body))
        }
    }
}

/// One request on its way to the forwarded group.
struct Attempt<'a> {
    state: &'a State,
    group: &'a Group,
    method: &'a Method,
    path: &'a PathAndQuery,
    deadline: Instant,
}

impl Attempt<'_> {
    /// Sends the request to `claim`'s target. When that fails before any
    /// answer came back and `retry` has the headers of a bodiless GET or
    /// HEAD (harmless to repeat, and nothing reached the client yet), it
    /// goes once more to another target of the same group.
    async fn forward(
        &self,
        claim: InFlight,
        headers: HeaderMap,
        body: UpBody,
        retry: Option<&HeaderMap>,
    ) -> Result<(InFlight, Response<Incoming>, Lease), Failure> {
        let req = upstream_request(claim.target(), self.method, self.path, headers, body);
        let failure = match upstream::send(claim.target(), req, self.deadline).await {
            Ok((resp, lease)) => return Ok((claim, resp, lease)),
            // The target may still be working on it: not repeated.
            Err(Failure::Timeout) => return Err(Failure::Timeout),
            Err(failure) => failure,
        };
        let Some(headers) = retry else {
            return Err(failure);
        };
        let Some(second) = self.group.pick(Pick::FailOpen, Some(claim.target())) else {
            return Err(failure);
        };
        tracing::debug!(
            failed = %claim.target().id,
            retry = %second.target().id,
            error = %failure,
            "retrying on another target"
        );
        self.state.stats.retry();
        drop(claim);
        let req = upstream_request(
            second.target(),
            self.method,
            self.path,
            headers.clone(),
            UpBody::Empty,
        );
        let (resp, lease) = upstream::send(second.target(), req, self.deadline).await?;
        Ok((second, resp, lease))
    }
}

/// `true` when the request announces a body (only bodiless requests may be
/// repeated).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// The request as a target gets it: origin-form, with a `Host` header.
pub(crate) fn upstream_request(
    target: &Target,
    method: &Method,
    path: &PathAndQuery,
    mut headers: HeaderMap,
    body: UpBody,
) -> Request<UpBody> {
    if !headers.contains_key(HOST) {
        // HTTP/1.0 clients may send none; HTTP/1.1 requires one.
        headers.insert(HOST, target.host.clone());
    }
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = Uri::from(path.clone());
    *req.headers_mut() = headers;
    req
}

/// Hop-by-hop headers out, `X-Forwarded-*` in; `Host` stays.
fn rewrite_request(headers: &mut HeaderMap, conn: &Conn) {
    strip_hop_by_hop(headers);
    let mut prior = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    let forwarded_for = if prior.peek().is_none() {
        conn.client_ip.clone()
    } else {
        let mut joined = Vec::with_capacity(64);
        for v in prior {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(conn.client_ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| conn.client_ip.clone())
    };
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    headers.insert(X_FORWARDED_PROTO, conn.state.forwarded_proto.clone());
    headers.insert(X_FORWARDED_PORT, conn.state.forwarded_port.clone());
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: a scan of a few names is cheaper than
    // seven hashed removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers the `Connection` header names are hop-by-hop as well.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::try_from(token)
                && name != HOST
            {
                named.push(name);
            }
        }
    }
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The target's answer, on its way to the client.
fn relay(
    state: &Arc<State>,
    access: &Access<'_>,
    claim: InFlight,
    resp: Response<Incoming>,
    lease: Lease,
    mirror: Option<(Sample, Mirror)>,
) -> Response<ProxyBody> {
    let (mut head, body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let status = head.status.as_u16();
    let target = claim.target();
    target.stats.answered(status);
    state.stats.answered(status);
    access.log(status, &target.id);
    let tee = mirror.and_then(|(sample, mirror)| {
        let length = body.size_hint().exact();
        sample.tee(mirror, &target.id, status, length)
    });
    Response::from_parts(
        head,
        ProxyBody::relay(
            UpstreamBody::new(body, lease),
            claim,
            Arc::clone(state),
            access.start,
            tee,
        ),
    )
}

/// An answer the balancer makes itself (no target, or none answered).
fn local(
    state: &State,
    access: &Access<'_>,
    status: StatusCode,
    body: &'static str,
) -> Response<ProxyBody> {
    state.stats.answered(status.as_u16());
    state.stats.finished(access.start.elapsed());
    access.log(status.as_u16(), "-");
    let mut resp = Response::new(ProxyBody::local(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Trace, host"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert(HOST, HeaderValue::from_static("example"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept"]);
    }

    #[test]
    fn a_body_is_announced_by_length_or_chunking() {
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(has_body(&h));
        h.remove(CONTENT_LENGTH);
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(has_body(&h));
    }
}
