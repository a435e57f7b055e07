//! Counters and the admin address (`/metrics`, `/live`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_answers_failures_and_targets() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    lb.register("blue", spec(&b)).unwrap();
    wait_healthy(&lb, "blue", &["a", "b"]).await;

    let mut client = Client::connect(lb.address()).await;
    for path in ["/", "/", "/", "/", "/status/404", "/status/500"] {
        client.get(path).await.unwrap();
    }
    let c = lb.counters();
    assert_eq!(c.requests, 6);
    assert_eq!(c.by_status, BTreeMap::from([(200, 4), (404, 1), (500, 1)]));
    assert_eq!((c.failed, c.retries), (1, 0));
    let per_target: u64 = c.per_target.values().map(|t| t.requests).sum();
    assert_eq!(per_target, 6);
    assert_eq!(c.per_target["a"].requests, 3);
    assert_eq!(c.per_target["b"].requests, 3);

    // A balancer-made 503 counts for the client, not for a target.
    lb.forward_to("green").unwrap();
    assert_eq!(client.get("/").await.unwrap().status, 503);
    let d = lb.counters().since(&c);
    assert_eq!(d.requests, 1);
    assert_eq!(d.by_status, BTreeMap::from([(503, 1)]));
    assert_eq!(d.failed, 1);
    assert!(d.per_target.is_empty());

    // Counters of a target outlive its registration.
    lb.deregister("blue", "a").unwrap();
    assert_eq!(lb.counters().per_target["a"].requests, 3);
    lb.shutdown(Duration::from_secs(1)).await;
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_line(line: &str) -> Sample {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line}"));
            let mut labels = BTreeMap::new();
            for pair in body.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("unquoted label: {line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name: {line}"
                );
                labels.insert(k.to_string(), v.to_string());
            }
            (name, labels)
        }
    };
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name: {line}"
    );
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let a = Backend::start("a").await;
    let mut cfg = config(fast_health());
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    let lb = balancer(cfg).await;
    let admin = lb.admin_address().unwrap();
    assert_ne!(admin.port(), 0);
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;

    let mut client = Client::connect(lb.address()).await;
    for _ in 0..3 {
        client.get("/").await.unwrap();
    }
    client.get("/status/503").await.unwrap();

    let live = get(admin, "/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(get(admin, "/nope").await.status, 404);

    let metrics = get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    let mut samples = Vec::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_string());
        } else if line.starts_with("# HELP ") {
        } else {
            assert!(
                !line.is_empty() && !line.starts_with('#'),
                "stray line {line:?}"
            );
            samples.push(parse_line(line));
        }
    }
    for family in [
        "kiln_lb_requests_total",
        "kiln_lb_responses_total",
        "kiln_lb_failed_total",
        "kiln_lb_retries_total",
        "kiln_lb_target_requests_total",
        "kiln_lb_request_duration_seconds",
        "kiln_lb_targets",
        "kiln_lb_target_in_flight",
        "kiln_lb_shadow_mirrored_total",
        "kiln_lb_shadow_compared_total",
        "kiln_lb_shadow_differing_total",
        "kiln_lb_shadow_errors_total",
        "kiln_lb_shadow_skipped_total",
    ] {
        assert!(typed.iter().any(|t| t == family), "no TYPE for {family}");
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
    for s in &samples {
        assert_eq!(s.labels["listener"], "web", "{s:?}");
    }
    let value = |name, labels: &[(&str, &str)]| {
        find(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
            .value
    };
    assert_eq!(value("kiln_lb_requests_total", &[]), 4.0);
    assert_eq!(value("kiln_lb_responses_total", &[("code", "200")]), 3.0);
    assert_eq!(value("kiln_lb_responses_total", &[("code", "503")]), 1.0);
    assert_eq!(value("kiln_lb_failed_total", &[]), 1.0);
    assert_eq!(value("kiln_lb_retries_total", &[]), 0.0);
    assert_eq!(
        value(
            "kiln_lb_target_requests_total",
            &[("target_group", "blue"), ("target", "a"), ("code", "200")]
        ),
        3.0
    );
    assert_eq!(value("kiln_lb_request_duration_seconds_count", &[]), 4.0);
    assert_eq!(
        value("kiln_lb_request_duration_seconds_bucket", &[("le", "+Inf")]),
        4.0
    );
    assert!(value("kiln_lb_request_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(
        value(
            "kiln_lb_targets",
            &[("target_group", "blue"), ("health", "healthy")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "kiln_lb_targets",
            &[("target_group", "green"), ("health", "healthy")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "kiln_lb_target_in_flight",
            &[("target_group", "blue"), ("target", "a")]
        ),
        0.0
    );
    // Buckets are cumulative.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "kiln_lb_request_duration_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert_eq!(buckets.len(), 15);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    // No comparison runs: the shadow families have no samples.
    assert!(
        !samples
            .iter()
            .any(|s| s.name.starts_with("kiln_lb_shadow_"))
    );

    // A comparison towards a group without a healthy target skips its
    // samples; the scrape shows the running comparison's counters.
    lb.start_shadow("green", 100).unwrap();
    client.get("/").await.unwrap();
    let mut skipped = None;
    for _ in 0..100 {
        let text = get(admin, "/metrics").await.text();
        let samples: Vec<Sample> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(parse_line)
            .collect();
        skipped = find(
            &samples,
            "kiln_lb_shadow_skipped_total",
            &[("target_group", "green")],
        )
        .map(|s| s.value);
        if skipped == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(skipped, Some(1.0));
    lb.shutdown(Duration::from_secs(1)).await;
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "admin still up"
    );
}
