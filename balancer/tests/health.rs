//! Active and passive health checks.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use balancer::{HealthCheck, TargetHealth, TargetSpec};
use common::*;

fn unhealthy_because(lb: &balancer::Balancer, id: &str) -> Option<String> {
    match health_of(lb, "blue", id) {
        Some(TargetHealth::Unhealthy { reason }) => Some(reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_is_checked_at_once() {
    let a = Backend::start("a").await;
    // One check per minute: only a check at registration can make it
    // healthy within the test.
    let lb = balancer(config(HealthCheck {
        interval_ms: 60_000,
        ..fast_health()
    }))
    .await;
    let registered = Instant::now();
    lb.register("blue", spec(&a)).unwrap();
    assert_eq!(health_of(&lb, "blue", "a"), Some(TargetHealth::Initial));
    wait_healthy(&lb, "blue", &["a"]).await;
    assert!(registered.elapsed() < Duration::from_secs(2));
    assert_eq!(a.checks.load(SeqCst), 1);
    let view = &lb.targets("blue").unwrap()[0];
    assert_eq!((view.id.as_str(), view.addr), ("a", a.addr));
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_thresholds_and_says_why() {
    let a = Backend::start("a").await;
    let lb = balancer(config(HealthCheck {
        interval_ms: 30,
        healthy_threshold: 3,
        unhealthy_threshold: 3,
        ..fast_health()
    }))
    .await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    assert!(a.checks.load(SeqCst) >= 3);
    let healthy_since = lb.targets("blue").unwrap()[0].since_ms;

    let before = a.checks.load(SeqCst);
    a.set_ready(503);
    wait_until(Duration::from_secs(3), "a unhealthy", || {
        unhealthy_because(&lb, "a").is_some()
    })
    .await;
    assert!(
        a.checks.load(SeqCst) - before >= 3,
        "turned unhealthy too early"
    );
    assert_eq!(unhealthy_because(&lb, "a").unwrap(), "status 503");
    let view = &lb.targets("blue").unwrap()[0];
    assert!(view.since_ms >= healthy_since);

    let before = a.checks.load(SeqCst);
    a.set_ready(200);
    wait_healthy(&lb, "blue", &["a"]).await;
    assert!(
        a.checks.load(SeqCst) - before >= 3,
        "turned healthy too early"
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_slow_targets_are_unhealthy_with_reasons() {
    let refused = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let slow = Backend::start("slow").await;
    slow.ready_delay_ms.store(1_000, SeqCst);
    let lb = balancer(config(HealthCheck {
        timeout_ms: 100,
        ..fast_health()
    }))
    .await;
    lb.register(
        "blue",
        TargetSpec {
            id: "refused".into(),
            addr: refused,
            initial: TargetHealth::Initial,
        },
    )
    .unwrap();
    lb.register("blue", spec(&slow)).unwrap();
    wait_until(Duration::from_secs(3), "both unhealthy", || {
        unhealthy_because(&lb, "refused").is_some() && unhealthy_because(&lb, "slow").is_some()
    })
    .await;
    assert_eq!(
        unhealthy_because(&lb, "refused").unwrap(),
        "connection refused"
    );
    assert_eq!(
        unhealthy_because(&lb, "slow").unwrap(),
        "timed out after 100ms"
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_takes_the_target_out_at_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // Active checks once an hour: only the request path can notice.
    let lb = balancer(config(HealthCheck {
        interval_ms: 3_600_000,
        unhealthy_threshold: 1,
        ..fast_health()
    }))
    .await;
    lb.register("blue", healthy_spec(&a)).unwrap();
    lb.register("blue", healthy_spec(&b)).unwrap();
    // Let the checks made at registration pass before b dies.
    wait_until(Duration::from_secs(2), "first checks", || {
        a.checks.load(SeqCst) == 1 && b.checks.load(SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.kill();

    let mut client = Client::connect(lb.address()).await;
    for _ in 0..2 {
        let answer = client.get("/").await.unwrap();
        assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
    }
    assert_eq!(unhealthy_because(&lb, "b").unwrap(), "connection refused");
    let retries = lb.counters().retries;
    assert_eq!(retries, 1);
    for _ in 0..10 {
        assert_eq!(client.get("/").await.unwrap().backend(), "a");
    }
    assert_eq!(lb.counters().retries, retries, "b stayed in rotation");
    lb.shutdown(Duration::from_secs(1)).await;
}
