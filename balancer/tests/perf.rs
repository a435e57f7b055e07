//! A rough throughput and latency measurement of the data path (ignored by
//! default; run with
//! `cargo test --release -p balancer --test perf -- --ignored --nocapture`).
//!
//! Keep-alive clients send GETs to two fixed-body backends directly, through
//! the simplest proxy hyper offers (hyper-util's pooled client, round
//! robin) and through the balancer; backends, clients and proxies each run
//! on a runtime of their own, as separate processes would. Environment:
//! `BALANCER_PERF_SECS` (per case, default 3), `BALANCER_PERF_CONNECTIONS`
//! (one case instead of 1 and 8), `BALANCER_PERF_ONLY=balancer|baseline`
//! (load one path only, for `perf stat` or `perf record`).

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

/// The simplest proxy hyper offers: round robin over `backends` through
/// hyper-util's pooled client; what the balancer should at least match.
async fn baseline_proxy(backends: [SocketAddr; 2]) -> SocketAddr {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<_, hyper::body::Incoming> =
        Client::builder(TokioExecutor::new()).build(http);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2;
                    let uri = format!("http://{}{}", backends[i], req.uri().path());
                    *req.uri_mut() = uri.parse().unwrap();
                    let client = client.clone();
                    async move { client.request(req).await }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// Backends, load generator and balancer each on a runtime of their own
/// (as separate processes would be), the balancer on 2 workers.
#[test]
#[ignore = "a measurement, not a check; run in release"]
fn throughput_and_latency_against_direct() {
    let backends_rt = runtime("backend", 2);
    let clients_rt = runtime("client", 2);
    let lb_rt = runtime("lb", 2);
    let backends =
        backends_rt.block_on(async { [fixed_body_server().await, fixed_body_server().await] });
    let (lb, baseline) = lb_rt.block_on(async {
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
        (lb, baseline_proxy(backends).await)
    });
    let run =
        Duration::from_secs(std::env::var("BALANCER_PERF_SECS").map_or(3, |v| v.parse().unwrap()));
    clients_rt.block_on(async {
        // Warm up.
        load(&backends, 8, Duration::from_millis(200)).await;
        load(&[lb.address()], 8, Duration::from_millis(200)).await;
        load(&[baseline], 8, Duration::from_millis(200)).await;
        let cases: Vec<usize> = match std::env::var("BALANCER_PERF_CONNECTIONS") {
            Ok(n) => vec![n.parse().unwrap()],
            Err(_) => vec![1, 8],
        };
        let only = std::env::var("BALANCER_PERF_ONLY").ok();
        for connections in cases {
            if let Some(only) = &only {
                let addr = if only == "balancer" { lb.address() } else { baseline };
                let (rate, p50, p99) = load(&[addr], connections, run).await;
                println!(
                    "{connections} connections: {only} {rate:.0} req/s p50 {p50}µs p99 {p99}µs, {:.0} requests",
                    rate * run.as_secs_f64()
                );
                continue;
            }
            let direct = load(&backends, connections, run).await;
            let plain = load(&[baseline], connections, run).await;
            let proxied = load(&[lb.address()], connections, run).await;
            let show = |(rate, p50, p99): (f64, u64, u64)| {
                format!("{rate:.0} req/s p50 {p50}µs p99 {p99}µs")
            };
            println!(
                "{connections} connections: direct {} | hyper pooled proxy {} | balancer {} ({:.2}x the pooled proxy)",
                show(direct),
                show(plain),
                show(proxied),
                proxied.0 / plain.0
            );
        }
    });
    assert_eq!(lb.counters().failed, 0);
    lb_rt.block_on(lb.shutdown(Duration::from_secs(1)));
}
