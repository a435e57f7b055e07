//! A minimal HTTP/1.1 client for probes: one keep-alive connection, GETs
//! with a timeout, bodies collected (instances answer small JSON). The
//! balancer's data path has its own pooled client; this is for gates and
//! health checks, where one connection per check is the point.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Bodies larger than this are refused (an instance answering megabytes to
/// a probe is broken).
const MAX_BODY: usize = 4 << 20;

pub struct Http1 {
    sender: SendRequest<Empty<Bytes>>,
    host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("body: {0}")]
    Body(String),
}

impl Http1 {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Http1, HttpError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
            .map_err(HttpError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http1 {
            sender,
            host: addr.to_string(),
        })
    }

    /// `GET path` → (status, body).
    pub async fn get(&mut self, path: &str, timeout: Duration) -> Result<(u16, Bytes), HttpError> {
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::USER_AGENT, "kiln-probe")
            .body(Empty::new())
            .map_err(|e| HttpError::Body(e.to_string()))?;
        let work = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}

/// One GET on a fresh connection.
pub async fn get_once(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), HttpError> {
    let start = tokio::time::Instant::now();
    let mut c = Http1::connect(addr, timeout).await?;
    let left = timeout.saturating_sub(start.elapsed());
    c.get(path, left.max(Duration::from_millis(1))).await
}
