//! Deregistration and draining, registration idempotence, and the
//! zero-dropped-requests guarantee while instances die and drain.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use balancer::TargetHealth;
use common::*;

fn listed(lb: &balancer::Balancer, id: &str) -> bool {
    health_of(lb, "blue", id).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_waits_for_the_request_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let addr = lb.address();
    let slow = tokio::spawn(async move { get(addr, "/sleep/300").await });
    wait_until(Duration::from_secs(2), "a request in flight", || {
        lb.targets("blue").unwrap()[0].in_flight == 1
    })
    .await;
    lb.register("blue", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["b"]).await;

    lb.deregister("blue", "a").unwrap();
    let view = lb.targets("blue").unwrap();
    assert_eq!(view[0].id, "a");
    assert_eq!(view[0].health, TargetHealth::Draining);
    assert_eq!(view[0].in_flight, 1);
    // No new requests for a draining target.
    let mut client = Client::connect(addr).await;
    for _ in 0..5 {
        assert_eq!(client.get("/").await.unwrap().backend(), "b");
    }
    assert!(listed(&lb, "a"), "left before its request finished");

    let answer = slow.await.unwrap();
    assert_eq!((answer.status, answer.backend().as_str()), (200, "a"));
    // Gone as soon as the request is over, long before the 10 s delay.
    wait_until(Duration::from_secs(1), "a gone", || !listed(&lb, "a")).await;
    assert_eq!(lb.targets("blue").unwrap().len(), 1);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_is_cut_off_by_the_deregistration_delay() {
    let a = Backend::start("a").await;
    let mut cfg = config(fast_health());
    cfg.deregistration_delay = Duration::from_millis(300);
    let lb = balancer(cfg).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let addr = lb.address();
    let stuck = tokio::spawn(async move { get(addr, "/sleep/10000").await });
    wait_until(Duration::from_secs(2), "a request in flight", || {
        lb.targets("blue").unwrap()[0].in_flight == 1
    })
    .await;
    let deregistered = Instant::now();
    lb.deregister("blue", "a").unwrap();
    assert_eq!(health_of(&lb, "blue", "a"), Some(TargetHealth::Draining));
    wait_until(Duration::from_secs(3), "a gone", || !listed(&lb, "a")).await;
    let waited = deregistered.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "left after {waited:?}"
    );
    assert!(!stuck.is_finished());
    stuck.abort();
    lb.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent_and_brings_a_draining_target_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    let since = lb.targets("blue").unwrap()[0].since_ms;
    lb.register("blue", spec(&a)).unwrap();
    let view = &lb.targets("blue").unwrap()[0];
    assert_eq!(
        (view.health.clone(), view.since_ms),
        (TargetHealth::Healthy, since)
    );

    // An idle target leaves at once.
    lb.deregister("blue", "a").unwrap();
    assert!(!listed(&lb, "a"));
    lb.deregister("blue", "unknown").unwrap();
    assert!(lb.deregister("nope", "a").is_err());

    // A draining target registered again is initial, then healthy, and
    // takes requests again.
    lb.register("blue", spec(&a)).unwrap();
    lb.register("blue", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["a", "b"]).await;
    let addr = lb.address();
    let slow = tokio::spawn(async move { get(addr, "/sleep/300").await });
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
    lb.deregister("blue", &busy).unwrap();
    assert_eq!(health_of(&lb, "blue", &busy), Some(TargetHealth::Draining));
    lb.register("blue", spec(if busy == "a" { &a } else { &b }))
        .unwrap();
    // Initial, or already healthy: its first check runs at registration
    // and one success is the threshold here.
    let again = health_of(&lb, "blue", &busy);
    assert!(
        matches!(again, Some(TargetHealth::Initial | TargetHealth::Healthy)),
        "{again:?}"
    );
    wait_healthy(&lb, "blue", &[busy.as_str()]).await;
    assert_eq!(slow.await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(listed(&lb, &busy), "a target registered again was removed");
    let mut client = Client::connect(addr).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(client.get("/").await.unwrap());
    }
    assert_eq!(by_backend(&answers).len(), 2);
    lb.shutdown(Duration::from_secs(1)).await;
}

/// GETs over 8 keep-alive connections (at least 2000, at most 40000)
/// while one target is killed outright and another deregistered (and
/// stopped once it left): every request is answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_is_dropped_while_targets_die_and_drain() {
    const CONNECTIONS: usize = 8;
    const MAX_PER_CONNECTION: usize = 5_000;
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

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (sent, done) = (sent.clone(), done.clone());
        let addr = lb.address();
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut failures = Vec::new();
            for i in 0..MAX_PER_CONNECTION {
                if done.load(SeqCst) {
                    break;
                }
                match client.get(&format!("/?n={i}")).await {
                    Ok(answer) if answer.status == 200 => {}
                    Ok(answer) => failures.push(format!("{} {}", answer.status, answer.text())),
                    Err(e) => failures.push(e),
                }
                sent.fetch_add(1, SeqCst);
            }
            failures
        }));
    }
    let at_least = |n: u64| {
        let sent = sent.clone();
        async move {
            wait_until(Duration::from_secs(20), &format!("{n} requests"), || {
                sent.load(SeqCst) >= n
            })
            .await;
        }
    };

    at_least(400).await;
    a.kill();
    at_least(1000).await;
    let b_before_drain = b.requests();
    lb.deregister("blue", "b").unwrap();
    wait_until(Duration::from_secs(5), "b drained", || !listed(&lb, "b")).await;
    let b_after_drain = b.requests();
    b.kill();
    // The load goes on a while after both events.
    let after = sent.load(SeqCst) + 1000;
    at_least(after.max(2000)).await;
    done.store(true, SeqCst);

    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let counters = lb.counters();
    assert_eq!(counters.requests, sent.load(SeqCst));
    assert!(counters.requests >= 2000);
    assert_eq!(counters.by_status.get(&200), Some(&counters.requests));
    assert_eq!(counters.failed, 0);
    // Requests caught on the killed target were repeated elsewhere.
    assert!(counters.retries >= 1, "{counters:?}");
    // Draining stopped new requests to b (at most those in flight at the
    // deregistration finished there).
    assert!(b_after_drain - b_before_drain <= CONNECTIONS as u64);
    assert!(matches!(
        health_of(&lb, "blue", "a"),
        Some(TargetHealth::Unhealthy { .. })
    ));
    assert!(c.requests() > 0);
    lb.shutdown(Duration::from_secs(1)).await;
}
