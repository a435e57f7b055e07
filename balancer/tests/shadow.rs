//! Shadow comparison: mirrored GETs, compared without `duration`.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use balancer::{Balancer, ShadowReport, TargetHealth, TargetSpec};
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

async fn wait_report(
    lb: &Balancer,
    what: &str,
    cond: impl Fn(&ShadowReport) -> bool,
) -> ShadowReport {
    wait_until(Duration::from_secs(5), what, || {
        lb.shadow().is_some_and(|r| cond(&r))
    })
    .await;
    lb.shadow().unwrap()
}

/// Live "blue" with `a`, shadow "green" with `s`.
async fn live_and_shadow() -> (Balancer, Backend, Backend) {
    let (a, s) = (Backend::start("a").await, Backend::start("s").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    lb.register("green", spec(&s)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    wait_healthy(&lb, "green", &["s"]).await;
    (lb, a, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_answers_are_compared_without_duration() {
    let (lb, a, s) = live_and_shadow().await;
    s.variant.store(true, SeqCst);
    assert!(lb.shadow().is_none());
    lb.start_shadow("green", 100).unwrap();

    let mut client = Client::connect(lb.address()).await;
    for i in 0..20 {
        let q = if i % 7 == 3 { "differ" } else { "same" };
        let answer = client.get(&format!("/search?q={q}{i}")).await.unwrap();
        // The client gets the live answer, whatever the shadow says.
        assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
        assert!(answer.text().contains(r#""total":1"#), "{}", answer.text());
    }
    // Not mirrored: anything but GET.
    let post = Request::post("/search?q=post")
        .header("host", "kiln.test")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    client.send(post).await.unwrap();

    let report = wait_report(&lb, "20 comparisons", |r| r.compared == 20).await;
    assert_eq!(report.target_group, "green");
    assert_eq!(report.mirrored, 20);
    assert_eq!(report.differing, 3, "{report:?}");
    assert_eq!((report.errors, report.skipped), (0, 0));
    assert_eq!(report.examples.len(), 3);
    let ex = &report.examples[0];
    assert_eq!(ex.request, "/search?q=differ3");
    assert_eq!(
        (ex.live_target.as_str(), ex.shadow_target.as_str()),
        ("a", "s")
    );
    assert_eq!((ex.live_status, ex.shadow_status), (200, 200));
    assert!(ex.live_body.contains(r#""total":1"#));
    assert!(ex.shadow_body.contains(r#""total":2"#));
    assert_eq!(report.live_latency.count, 20);
    assert_eq!(report.shadow_latency.count, 20);
    assert!(report.shadow_latency.p50_ms > 0.0);
    assert!(report.shadow_latency.p99_ms >= report.shadow_latency.p50_ms);
    assert_eq!(s.requests(), 20);
    assert_eq!(a.requests(), 21);
    // Mirrored requests are not answers to clients.
    let counters = lb.counters();
    assert_eq!(counters.requests, 21);
    assert!(!counters.per_target.contains_key("s"));

    let last = lb.stop_shadow().unwrap();
    assert_eq!(last.compared, 20);
    assert!(lb.shadow().is_none());
    assert!(lb.stop_shadow().is_none());
    client.get("/search?q=after").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.requests(), 20, "mirrored after stop");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_skips_are_counted() {
    let (lb, _a, s) = live_and_shadow().await;
    lb.start_shadow("green", 100).unwrap();
    let mut client = Client::connect(lb.address()).await;

    // The shadow answers 500 where live answered 200.
    s.force_status.store(500, SeqCst);
    client.get("/search?q=x").await.unwrap();
    let report = wait_report(&lb, "a comparison", |r| r.compared == 1).await;
    assert_eq!((report.errors, report.differing), (1, 1));
    assert_eq!(report.examples[0].shadow_status, 500);
    s.force_status.store(0, SeqCst);

    // Bigger than 1 MiB: not mirrored.
    let big = client.get("/big/2000000").await.unwrap();
    assert_eq!(big.body.len(), 2_000_000);
    let report = wait_report(&lb, "a skip", |r| r.skipped == 1).await;
    assert_eq!(report.mirrored, 1);

    // Starting again resets the results.
    lb.start_shadow("green", 100).unwrap();
    assert_eq!(lb.shadow().unwrap().compared, 0);

    // A shadow target that refuses connections: the mirror fails.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    lb.add_target_group("void");
    lb.register(
        "void",
        TargetSpec {
            id: "dead".into(),
            addr: dead,
            initial: TargetHealth::Healthy,
        },
    )
    .unwrap();
    lb.start_shadow("void", 100).unwrap();
    client.get("/search?q=y").await.unwrap();
    let report = wait_report(&lb, "an error", |r| r.errors == 1).await;
    assert_eq!(report.compared, 0);
    assert_eq!(report.examples[0].shadow_status, 0);
    assert_eq!(report.examples[0].shadow_body, "connection refused");

    // No healthy target in the shadow group: skipped.
    wait_until(Duration::from_secs(3), "dead unhealthy", || {
        matches!(
            health_of(&lb, "void", "dead"),
            Some(TargetHealth::Unhealthy { .. })
        )
    })
    .await;
    lb.start_shadow("void", 100).unwrap();
    client.get("/search?q=z").await.unwrap();
    let report = wait_report(&lb, "a skip", |r| r.skipped == 1).await;
    assert_eq!(report.mirrored, 0);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_16_mirrors_run_at_once_the_rest_are_skipped() {
    let (lb, _a, s) = live_and_shadow().await;
    s.delay_ms.store(500, SeqCst);
    lb.start_shadow("green", 100).unwrap();
    let addr = lb.address();
    let clients: Vec<_> = (0..24)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/search?q={i}")).await }))
        .collect();
    for c in clients {
        // Live answers do not wait for the slow shadow.
        let answer = tokio::time::timeout(Duration::from_millis(400), c)
            .await
            .expect("live answer in time")
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    let report = wait_report(&lb, "24 sampled requests accounted for", |r| {
        r.compared + r.skipped == 24
    })
    .await;
    assert_eq!(report.mirrored, report.compared);
    assert!(report.mirrored <= 16, "{report:?}");
    assert!(report.skipped >= 8, "{report:?}");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_asked_percentage_is_mirrored() {
    let (lb, _a, s) = live_and_shadow().await;
    lb.start_shadow("green", 10).unwrap();
    let mut client = Client::connect(lb.address()).await;
    for i in 0..300 {
        client.get(&format!("/search?q={i}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = lb.stop_shadow().unwrap();
    // 10% of 300 is 30; the bounds are many standard deviations wide.
    assert!((5..=70).contains(&report.mirrored), "{report:?}");
    assert_eq!(report.compared, report.mirrored);
    assert_eq!(report.differing, 0);
    assert_eq!(s.requests(), report.mirrored);
    // Out of range percentages are clamped.
    lb.start_shadow("green", 0).unwrap();
    lb.start_shadow("green", 1000).unwrap();
    assert!(lb.start_shadow("nope", 10).is_err());
    lb.shutdown(Duration::from_secs(1)).await;
}
