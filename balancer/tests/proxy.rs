//! The data path: what is forwarded, keep-alive pooling, least outstanding
//! requests, fail-open, 503/502/504, retries, broken bodies, switching,
//! weighted splits.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Health checks that never change anything during a test: targets keep
/// the health they were registered with.
fn still_health() -> balancer::HealthCheck {
    balancer::HealthCheck {
        interval_ms: 3_600_000,
        unhealthy_threshold: 1_000,
        ..fast_health()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_method_path_headers_and_body_and_strips_hop_by_hop() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let mut client = Client::connect(lb.address()).await;
    let req = Request::post("/echo/x?q=1&r=two")
        .header("host", "kiln.test")
        .header("x-custom", "kept")
        .header("x-forwarded-for", "10.0.0.1")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-connection", "keep-alive")
        .body(Full::new(Bytes::from_static(b"hello body")))
        .unwrap();
    let answer = client.send(req).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "hello body");
    assert_eq!(answer.headers["x-echo"], "yes");
    for hop in ["keep-alive", "proxy-connection", "trailer"] {
        assert!(
            answer.headers.get(hop).is_none(),
            "{hop} reached the client"
        );
    }

    let seen = a.last().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/echo/x?q=1&r=two");
    assert_eq!(seen.body, "hello body");
    let h = &seen.headers;
    assert_eq!(h["host"], "kiln.test");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["x-forwarded-port"],
        lb.address().port().to_string().as_str()
    );
    assert_eq!(h["content-length"], "10");
    for hop in ["x-hop", "keep-alive", "te", "proxy-connection"] {
        assert!(h.get(hop).is_none(), "{hop} reached the target");
    }
    // `connection` may be set by the client connection to the target, but
    // never with the client's tokens.
    assert!(
        h.get("connection")
            .is_none_or(|v| !v.to_str().unwrap().contains("x-hop"))
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_is_forwarded_and_keep_alive_holds() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    // A raw client: two requests on one connection, the first chunked.
    let mut stream = TcpStream::connect(lb.address()).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: raw\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.ends_with("hello world"), "{first}");
    let seen = a.last().unwrap();
    assert_eq!(seen.body, "hello world");
    assert!(seen.headers.get("content-length").is_none() || seen.headers["content-length"] == "11");

    stream
        .write_all(b"GET /echo/again HTTP/1.1\r\nHost: raw\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(a.last().unwrap().uri, "/echo/again");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_bodies_stream_both_ways() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let mut client = Client::connect(lb.address()).await;
    let big: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::put("/echo")
        .header("host", "kiln.test")
        .body(Full::new(big.clone()))
        .unwrap();
    let answer = client.send(req).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.body == big, "the body changed on the way");
    let answer = client.get("/big/5000000").await.unwrap();
    assert_eq!(answer.body.len(), 5_000_000);
    lb.shutdown(Duration::from_secs(1)).await;
}

/// Reads one response with a content-length (the echo backend sends one).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if buf.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_per_target_and_ties_rotate() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = balancer(config(fast_health())).await;
    for t in [&a, &b, &c] {
        lb.register("blue", spec(t)).unwrap();
    }
    wait_healthy(&lb, "blue", &["a", "b", "c"]).await;

    let mut client = Client::connect(lb.address()).await;
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(client.get("/").await.unwrap());
    }
    // Equal targets (nothing in flight) share evenly.
    let counts = by_backend(&answers);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{counts:?}"
    );
    for a in &answers {
        // Each answer's body is the name of the backend that made it:
        // no pooled connection carried a request to another target.
        assert_eq!(a.text(), a.backend());
    }
    // Sequential requests need one keep-alive connection per target.
    for t in [&a, &b, &c] {
        assert_eq!(
            t.connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{}",
            t.name
        );
    }
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_requests_avoids_the_busy_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    lb.register("blue", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["a", "b"]).await;

    let addr = lb.address();
    let slow = tokio::spawn(async move { get(addr, "/sleep/600").await });
    wait_until(Duration::from_secs(2), "a request in flight", || {
        lb.targets("blue").unwrap().iter().any(|t| t.in_flight == 1)
    })
    .await;
    let busy = lb
        .targets("blue")
        .unwrap()
        .into_iter()
        .find(|t| t.in_flight == 1)
        .unwrap()
        .id;

    let mut client = Client::connect(addr).await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(client.get("/").await.unwrap());
    }
    let counts = by_backend(&answers);
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        !counts.contains_key(&busy),
        "{counts:?} went to the busy {busy}"
    );

    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.backend()), (200, busy));
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_to_unhealthy_targets_and_answers_503_without_any() {
    let a = Backend::start("a").await;
    a.set_ready(503);
    let lb = balancer(config(fast_health())).await;

    let empty = get(lb.address(), "/").await;
    assert_eq!(empty.status, 503);
    assert_eq!(empty.text(), r#"{"error":"no target available"}"#);
    assert_eq!(empty.headers["content-type"], "application/json");

    lb.register("blue", spec(&a)).unwrap();
    wait_until(Duration::from_secs(3), "a unhealthy", || {
        matches!(
            health_of(&lb, "blue", "a"),
            Some(balancer::TargetHealth::Unhealthy { .. })
        )
    })
    .await;
    let answer = get(lb.address(), "/").await;
    assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
    lb.shutdown(Duration::from_secs(1)).await;
}

/// A port nobody listens on.
async fn closed_port() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_elsewhere_others_get_502() {
    let a = Backend::start("a").await;
    let dead = closed_port().await;
    let lb = balancer(config(still_health())).await;
    lb.register("blue", healthy_spec(&a)).unwrap();
    let dead_spec = balancer::TargetSpec {
        id: "dead".into(),
        addr: dead,
        initial: balancer::TargetHealth::Healthy,
    };
    lb.register("blue", dead_spec.clone()).unwrap();

    let mut client = Client::connect(lb.address()).await;
    for _ in 0..10 {
        let answer = client.get("/").await.unwrap();
        assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
    }
    let after_gets = lb.counters();
    assert!(after_gets.retries >= 1, "{after_gets:?}");
    assert_eq!(after_gets.failed, 0);
    assert_eq!(after_gets.per_target["a"].requests, 10);
    assert!(!after_gets.per_target.contains_key("dead"));

    // A POST may have been half-processed: never repeated. Ties alternate,
    // so half of them try the dead target first.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let req = Request::post("/echo")
            .header("host", "kiln.test")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        statuses.push(client.send(req).await.unwrap().status);
    }
    let bad_gateway = statuses.iter().filter(|s| **s == 502).count();
    assert!(bad_gateway >= 1, "{statuses:?}");
    assert_eq!(
        bad_gateway + statuses.iter().filter(|s| **s == 200).count(),
        10
    );
    let d = lb.counters().since(&after_gets);
    assert_eq!(d.retries, 0);
    assert_eq!(d.failed, bad_gateway as u64);

    // With no other target, a GET has nowhere to go: 502 with a JSON body.
    lb.register("green", dead_spec).unwrap();
    lb.forward_to("green").unwrap();
    let answer = client.get("/").await.unwrap();
    assert_eq!(answer.status, 502);
    assert_eq!(answer.text(), r#"{"error":"upstream error"}"#);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_before_the_answer_is_retried() {
    // A target that reads the request and hangs up without answering.
    let rude = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = rude.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        }
    });
    let a = Backend::start("a").await;
    let lb = balancer(config(still_health())).await;
    lb.register("green", healthy_spec(&a)).unwrap();
    lb.register(
        "blue",
        balancer::TargetSpec {
            id: "rude".into(),
            addr: rude_addr,
            initial: balancer::TargetHealth::Healthy,
        },
    )
    .unwrap();
    lb.register("blue", healthy_spec(&a)).unwrap();

    let mut client = Client::connect(lb.address()).await;
    for _ in 0..6 {
        let answer = client.get("/").await.unwrap();
        assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
    }
    // Ties rotate and a retry takes a turn too, so how many first tries
    // went to the rude target depends on the order; some did.
    let c = lb.counters();
    assert!(c.retries >= 1, "{c:?}");
    assert_eq!(c.by_status, [(200, 6)].into());
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_target_that_never_answers_gets_504() {
    let a = Backend::start("a").await;
    let lb = balancer(config(still_health())).await;
    lb.register("blue", healthy_spec(&a)).unwrap();
    let mut client = Client::connect(lb.address()).await;
    // Warm the pool, so the slow request needs no new connection.
    assert_eq!(client.get("/").await.unwrap().status, 200);

    // Time is paused: the 60 s upstream timeout passes at once.
    let answer = client.get("/sleep/120000").await.unwrap();
    assert_eq!(answer.status, 504);
    assert_eq!(answer.text(), r#"{"error":"upstream timeout"}"#);
    let c = lb.counters();
    assert_eq!(c.retries, 0, "a timed out request is not repeated");
    assert_eq!(c.failed, 1);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_broken_mid_way_counts_as_failed() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let mut client = Client::connect(lb.address()).await;
    let err = client.get("/break").await.unwrap_err();
    assert!(err.starts_with("body"), "{err}");
    let c = lb.counters();
    assert_eq!(c.by_status, [(200, 1)].into());
    assert_eq!(c.failed, 1);
    wait_until(Duration::from_secs(2), "the request over", || {
        lb.targets("blue").unwrap()[0].in_flight == 0
    })
    .await;
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_moves_new_requests_and_lets_old_ones_finish() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    lb.register("green", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    wait_healthy(&lb, "green", &["b"]).await;
    assert_eq!(lb.forwarding(), "blue");

    let addr = lb.address();
    let slow = tokio::spawn(async move { get(addr, "/sleep/400").await });
    wait_until(Duration::from_secs(2), "a request on blue", || {
        lb.targets("blue").unwrap()[0].in_flight == 1
    })
    .await;

    lb.forward_to("green").unwrap();
    assert_eq!(lb.forwarding(), "green");
    let mut client = Client::connect(addr).await;
    for _ in 0..5 {
        assert_eq!(client.get("/").await.unwrap().backend(), "b");
    }
    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.backend().as_str()), (200, "a"));

    // The old group's targets stay registered and health-checked.
    a.set_ready(503);
    wait_until(Duration::from_secs(3), "a unhealthy on blue", || {
        matches!(
            health_of(&lb, "blue", "a"),
            Some(balancer::TargetHealth::Unhealthy { .. })
        )
    })
    .await;
    assert!(matches!(
        lb.forward_to("nope"),
        Err(balancer::Error::UnknownTargetGroup(_))
    ));
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_new_requests_between_two_groups() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    lb.register("green", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    wait_healthy(&lb, "green", &["b"]).await;
    assert!(matches!(
        lb.set_weight("blue", 50),
        Err(balancer::Error::NothingToSplit(_))
    ));
    let before = lb.counters();
    let addr = lb.address();
    let share = |n: usize| async move {
        let mut client = Client::connect(addr).await;
        let mut answers = Vec::new();
        for _ in 0..n {
            answers.push(client.get("/").await.unwrap());
        }
        by_backend(&answers)
    };

    lb.set_weight("green", 10).unwrap();
    assert_eq!(lb.forwarding(), "blue", "the main group stays");
    assert_eq!(lb.weights(), [("blue".into(), 90), ("green".into(), 10)]);
    let s = share(100).await;
    assert_eq!((s["a"], s["b"]), (90, 10), "{s:?}");

    lb.set_weight("green", 50).unwrap();
    let s = share(100).await;
    assert_eq!((s["a"], s["b"]), (50, 50), "{s:?}");
    // The main group's own weight: the rest goes to the other one.
    lb.set_weight("blue", 80).unwrap();
    assert_eq!(lb.weights(), [("blue".into(), 80), ("green".into(), 20)]);
    assert!(lb.remove_target_group("green").is_err(), "it takes traffic");

    // A group whose targets are all unhealthy gets none while split: the
    // other one's healthy targets answer instead of failing open.
    b.set_ready(503);
    wait_until(Duration::from_secs(3), "b unhealthy on green", || {
        matches!(
            health_of(&lb, "green", "b"),
            Some(balancer::TargetHealth::Unhealthy { .. })
        )
    })
    .await;
    let s = share(20).await;
    assert_eq!(s.get("a"), Some(&20), "{s:?}");
    b.set_ready(200);
    wait_healthy(&lb, "green", &["b"]).await;

    // 100 is a switch; 0 sends everything to the other one.
    lb.set_weight("green", 100).unwrap();
    assert_eq!(lb.weights(), [("green".into(), 100)]);
    let s = share(10).await;
    assert_eq!(s.get("b"), Some(&10), "{s:?}");
    lb.set_weight("blue", 30).unwrap();
    lb.set_weight("green", 0).unwrap();
    assert_eq!(
        (lb.forwarding(), lb.weights()),
        ("blue".into(), vec![("blue".into(), 100)])
    );
    // A switch ends a split.
    lb.set_weight("green", 40).unwrap();
    lb.forward_to("blue").unwrap();
    assert_eq!(lb.weights(), [("blue".into(), 100)]);
    assert!(matches!(
        lb.set_weight("nope", 10),
        Err(balancer::Error::UnknownTargetGroup(_))
    ));

    // Every answer was counted for its own target, none failed.
    let d = lb.counters().since(&before);
    assert_eq!(d.failed, 0);
    assert_eq!(
        d.per_target.values().map(|c| c.requests).sum::<u64>(),
        d.requests
    );
    assert_eq!(d.per_target["b"].requests, 10 + 50 + 10);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_groups_come_and_go_but_not_the_forwarded_one() {
    let lb = balancer(config(fast_health())).await;
    assert_eq!(lb.target_groups(), ["blue", "green"]);
    lb.add_target_group("canary");
    lb.add_target_group("canary");
    assert_eq!(lb.target_groups(), ["blue", "canary", "green"]);
    assert!(matches!(
        lb.remove_target_group("blue"),
        Err(balancer::Error::TargetGroupInUse { .. })
    ));
    lb.start_shadow("canary", 10).unwrap();
    assert!(lb.remove_target_group("canary").is_err());
    lb.stop_shadow();
    lb.remove_target_group("canary").unwrap();
    assert_eq!(lb.target_groups(), ["blue", "green"]);
    assert!(matches!(
        lb.targets("canary"),
        Err(balancer::Error::UnknownTargetGroup(_))
    ));
    assert!(
        balancer::Balancer::start(config(fast_health()), &groups(&["blue"]), "green")
            .await
            .is_err()
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    let addr = lb.address();
    let slow = tokio::spawn(async move { get(addr, "/sleep/300").await });
    wait_until(Duration::from_secs(2), "a request in flight", || {
        lb.targets("blue").unwrap()[0].in_flight == 1
    })
    .await;
    lb.shutdown(Duration::from_secs(5)).await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_requests_that_outlast_the_grace() {
    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    let addr = lb.address();
    // An idle keep-alive connection closes at once, a busy one is cut.
    let mut idle = Client::connect(addr).await;
    idle.get("/").await.unwrap();
    let stuck = tokio::spawn(async move { Client::connect(addr).await.get("/sleep/10000").await });
    wait_until(Duration::from_secs(2), "a request in flight", || {
        lb.targets("blue").unwrap()[0].in_flight == 1
    })
    .await;
    let started = std::time::Instant::now();
    lb.shutdown(Duration::from_millis(200)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let cut = tokio::time::timeout(Duration::from_secs(2), stuck)
        .await
        .expect("the stuck request ends with the shutdown")
        .unwrap();
    assert!(cut.is_err(), "{cut:?}");
    assert!(
        idle.get("/").await.is_err(),
        "the idle connection is still open"
    );
}
