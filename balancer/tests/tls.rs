//! The TLS listener, with a self-signed certificate made by `openssl` and
//! `curl -k` as the client.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use balancer::{Balancer, Error, TlsFiles};
use common::*;

fn self_signed(dir: &Path) -> TlsFiles {
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsFiles { cert, key }
}

/// `curl -k` in a blocking thread: (exit code, status line code, body).
async fn curl(url: String) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
            .arg(&url)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            out.status.code().unwrap_or(-1),
            code.to_string(),
            body.to_string(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start("a").await;
    let mut cfg = config(fast_health());
    cfg.tls = Some(self_signed(dir.path()));
    let lb = balancer(cfg).await;
    lb.register("blue", spec(&a)).unwrap();
    wait_healthy(&lb, "blue", &["a"]).await;
    let port = lb.address().port();

    let (exit, code, body) = curl(format!("https://127.0.0.1:{port}/echo?tls=1")).await;
    assert_eq!((exit, code.as_str()), (0, "200"), "{body}");
    let seen = a.last().unwrap();
    assert_eq!(seen.uri, "/echo?tls=1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let (exit, code, _) = curl(format!("http://127.0.0.1:{port}/")).await;
    assert!(exit != 0 || code != "200", "plain HTTP answered: {code}");
    assert_eq!(lb.counters().requests, 1);
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unusable_tls_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = self_signed(dir.path());
    let blue = groups(&["blue"]);
    let start = |tls: TlsFiles| {
        let mut cfg = config(fast_health());
        cfg.tls = Some(tls);
        Balancer::start(cfg, &blue, "blue")
    };
    let message = |r: Result<Balancer, Error>| match r {
        Err(Error::Tls(m)) => m,
        Err(e) => panic!("not a TLS error: {e}"),
        Ok(_) => panic!("started"),
    };

    let missing = dir.path().join("missing.pem");
    let m = message(
        start(TlsFiles {
            cert: good.cert.clone(),
            key: missing.clone(),
        })
        .await,
    );
    assert!(m.contains(&*missing.to_string_lossy()), "{m}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let m = message(
        start(TlsFiles {
            cert: garbage.clone(),
            key: good.key.clone(),
        })
        .await,
    );
    assert!(m.contains(&*garbage.to_string_lossy()), "{m}");
    assert!(m.contains("no certificate found"), "{m}");

    // The key of another certificate does not fit.
    let other = tempfile::tempdir().unwrap();
    let other = self_signed(other.path());
    let m = message(
        start(TlsFiles {
            cert: good.cert.clone(),
            key: other.key,
        })
        .await,
    );
    assert!(m.contains(&*good.cert.to_string_lossy()), "{m}");
}
