//! One access-log line per request at debug level, none at info. A test
//! binary of its own: it installs the process-wide log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The balancer's own log events so far.
    fn events(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| {
                v["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("balancer"))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_logs_one_debug_line_and_nothing_at_info() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .init();

    let a = Backend::start("a").await;
    let lb = balancer(config(fast_health())).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    let info_before = captured
        .events()
        .iter()
        .filter(|e| e["level"] == "INFO")
        .count();

    let mut client = Client::connect(lb.address()).await;
    for path in ["/", "/status/404", "/echo?x=1"] {
        client.get(path).await.unwrap();
    }
    lb.forward_to("green").unwrap();
    client.get("/nobody").await.unwrap();
    lb.forward_to("blue").unwrap();

    let events = captured.events();
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    for e in &requests {
        assert_eq!(e["level"], "DEBUG");
        let f = &e["fields"];
        assert_eq!(f["method"], "GET");
        assert!(f["ms"].as_f64().is_some(), "{e}");
    }
    let line = |i: usize| &requests[i]["fields"];
    assert_eq!(
        (line(0)["path"].as_str(), line(0)["status"].as_u64()),
        (Some("/"), Some(200))
    );
    assert_eq!(line(0)["target"], "a");
    assert_eq!(line(1)["status"], 404);
    assert_eq!(line(2)["path"], "/echo?x=1");
    assert_eq!(
        (line(3)["status"].as_u64(), line(3)["target"].as_str()),
        (Some(503), Some("-"))
    );

    // Info lines: only the two switches, nothing per request.
    let infos: Vec<&Value> = events.iter().filter(|e| e["level"] == "INFO").collect();
    assert_eq!(infos.len() - info_before, 2, "{infos:#?}");
    lb.shutdown(Duration::from_secs(1)).await;
}
