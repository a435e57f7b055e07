//! Active health checks: one task per target that sends `GET <path>` every
//! interval on a connection of its own (never a pooled one, so a check
//! proves the target still accepts connections) and feeds the outcome to
//! the target's state machine ([`Target::record_check`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::pool::Target;
use crate::types::HealthCheck;

/// Starts checking `target`; the first check runs at once, so a new
/// target can be healthy after `healthy_threshold - 1` intervals.
pub(crate) fn spawn(target: Arc<Target>) -> AbortHandle {
    let rt = target.settings().rt.clone();
    rt.spawn(run(target)).abort_handle()
}

async fn run(target: Arc<Target>) {
    let hc = target.settings().health.clone();
    let interval = Duration::from_millis(hc.interval_ms.max(1));
    loop {
        if target.checked() {
            let outcome = check(target.addr, &hc).await;
            target.record_check(outcome);
        }
        // The checker's beat also closes idle connections that went stale.
        target.pool.sweep();
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = target.recheck_requested() => {}
        }
    }
}

/// One check: `Ok` for a 200, else why not ("connection refused",
/// "status 503", "timed out after 2s").
pub(crate) async fn check(addr: SocketAddr, hc: &HealthCheck) -> Result<(), String> {
    let timeout = Duration::from_millis(hc.timeout_ms.max(1));
    match tokio::time::timeout(timeout, probe(addr, &hc.path)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {}", human(timeout))),
    }
}

async fn probe(addr: SocketAddr, path: &str) -> Result<(), String> {
    let uri = Uri::try_from(path).map_err(|_| format!("invalid health check path {path:?}"))?;
    let stream = TcpStream::connect(addr).await.map_err(|e| io_reason(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    if let Ok(host) = HeaderValue::try_from(addr.to_string()) {
        headers.insert(HOST, host);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    // The connection is driven here, not spawned: when the check is over
    // (or timed out) it is dropped and closed with it.
    tokio::pin!(conn);
    let send = sender.send_request(req);
    tokio::pin!(send);
    let resp = tokio::select! {
        biased;
        resp = &mut send => resp,
        ended = &mut conn => match ended {
            // With `Connection: close` the connection may end as soon as
            // the answer is in; the answer is then ready to take.
            Ok(()) => send.await,
            Err(e) => return Err(hyper_reason(&e)),
        },
    }
    .map_err(|e| hyper_reason(&e))?;
    match resp.status() {
        StatusCode::OK => Ok(()),
        status => Err(format!("status {}", status.as_u16())),
    }
}

/// A short reason for a failed connection.
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => e.to_string(),
    }
}

/// The innermost I/O error's reason if there is one, else hyper's words.
pub(crate) fn hyper_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io_reason(io);
        }
        source = err.source();
    }
    e.to_string()
}

/// `2s`, `1.5s`, `250ms`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(100) {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_elb_reasons() {
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
