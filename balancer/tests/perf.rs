//! A rough throughput and latency check of the data path (ignored by
//! default; run with
//! `cargo test --release -p balancer --test perf -- --ignored --nocapture`).
//! It compares clients talking to two fixed-body backends directly with
//! the same clients going through the balancer, all on one runtime, like
//! `make bench` compares the balancer with HAProxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balancer::{Balancer, Config, HealthCheck, TargetHealth, TargetSpec};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

async fn fixed_body_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'x'; 1024]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `connections` keep-alive clients, round robin over `addrs`, for
/// `duration`: (requests per second, p50 µs, p99 µs).
async fn load(addrs: &[SocketAddr], connections: usize, duration: Duration) -> (f64, u64, u64) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let addr = addrs[i % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            while start.elapsed() < duration {
                let req = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), 1024);
                latencies.push(t.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run in release"]
async fn throughput_and_latency_against_direct() {
    let backends = [fixed_body_server().await, fixed_body_server().await];
    let cfg = Config {
        name: "bench".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        tls: None,
        health: HealthCheck::default(),
        deregistration_delay: Duration::from_secs(1),
    };
    let lb = Balancer::start(cfg, &["tg".to_string()], "tg")
        .await
        .unwrap();
    for (i, addr) in backends.iter().enumerate() {
        lb.register(
            "tg",
            TargetSpec {
                id: format!("b{i}"),
                addr: *addr,
                initial: TargetHealth::Healthy,
            },
        )
        .unwrap();
    }
    let run = Duration::from_secs(3);
    // Warm up both paths.
    load(&backends, 8, Duration::from_millis(500)).await;
    load(&[lb.address()], 8, Duration::from_millis(500)).await;

    // BALANCER_PERF_CONNECTIONS=8 runs one case only (for a profiler).
    let cases: Vec<usize> = match std::env::var("BALANCER_PERF_CONNECTIONS") {
        Ok(n) => vec![n.parse().unwrap()],
        Err(_) => vec![1, 8],
    };
    for connections in cases {
        let direct = load(&backends, connections, run).await;
        let proxied = load(&[lb.address()], connections, run).await;
        println!(
            "{connections} connections: direct {:.0} req/s p50 {}µs p99 {}µs | balancer {:.0} req/s p50 {}µs p99 {}µs ({:.2}x)",
            direct.0,
            direct.1,
            direct.2,
            proxied.0,
            proxied.1,
            proxied.2,
            proxied.0 / direct.0
        );
    }
    let c = lb.counters();
    assert_eq!(c.failed, 0);
    lb.shutdown(Duration::from_secs(1)).await;
}
