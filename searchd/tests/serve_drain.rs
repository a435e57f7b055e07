//! The real `searchd serve` process: start-up (listening line, readiness,
//! exit codes for bad flags, busy ports and refused snapshots), logging,
//! and shutdown on SIGTERM/SIGINT: `/ready` flips to 503, the listener
//! closes, in-flight requests finish, and the process exits 0 within the
//! drain timeout.

mod serve_support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serve_support::{Conn, Daemon, SIGINT, SIGTERM, books_snapshot};

#[test]
fn sigterm_flips_ready_keeps_keep_alive_answers_and_exits_zero() {
    let mut d = Daemon::start(&["--shutdown-delay", "1s", "--drain-timeout", "5s"]);
    d.wait_for("/ready", 200);
    let mut conn = Conn::open(d.addr);
    assert_eq!(conn.get("/books?query=alan").status, 200);

    let signalled = Instant::now();
    d.signal(SIGTERM);
    // During the shutdown delay new connections are still accepted and
    // told that this instance is going away.
    d.wait_for("/ready", 503);
    assert_eq!(d.get("/ready").json()["status"], "draining");
    // The open keep-alive connection gets its answer, with a request to
    // close.
    let r = conn.get("/books?query=alan");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));

    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the delay"
    );
    assert!(TcpStream::connect(d.addr).is_err(), "still accepting");
    let log = d.stderr_text();
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn an_in_flight_request_finishes_during_the_drain() {
    let mut d = Daemon::start(&["--drain-timeout", "10s"]);
    d.wait_for("/ready", 200);
    // A request whose head is half sent is in flight: hyper has started
    // reading it and must finish it before the connection may close. (On
    // a keep-alive connection hyper counts a half-read *second* request as
    // idle and closes it; the client retries elsewhere.)
    let mut conn = Conn::open(d.addr);
    conn.send_raw(b"GET /books?query=alan HTTP/1.1\r\nHost: t\r\n");
    std::thread::sleep(Duration::from_millis(200));
    d.signal(SIGTERM);
    // The listener closes at once (no shutdown delay)...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(d.addr).is_ok() {
        assert!(Instant::now() < deadline, "listener still open");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...but the process waits for the request in flight.
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "exited before the drain"
    );
    conn.send_raw(b"\r\n");
    let r = conn.read_response(false).expect("the in-flight answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"], 3);
    assert!(conn.is_closed(Duration::from_secs(5)));
    let (code, took) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} after the last answer"
    );
}

#[test]
fn the_drain_timeout_bounds_the_exit() {
    let mut d = Daemon::start(&["--drain-timeout", "500ms", "--header-timeout", "60s"]);
    d.wait_for("/ready", 200);
    // A client that never finishes its request (and an idle one).
    let mut stuck = Conn::open(d.addr);
    stuck.send_raw(b"GET /live HTTP/1.1\r\n");
    let _idle = Conn::open(d.addr);
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    d.signal(SIGINT);
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", d.stderr_text());
    assert!(took >= Duration::from_millis(450), "exited after {took:?}");
    assert!(took < Duration::from_secs(4), "exited after {took:?}");
    assert!(
        d.stderr_text().contains("drain timeout"),
        "{}",
        d.stderr_text()
    );
}

#[test]
fn an_idle_server_exits_at_once() {
    let mut d = Daemon::start(&[]);
    d.wait_for("/ready", 200);
    let mut idle = Conn::open(d.addr);
    assert_eq!(idle.get("/live").status, 200);
    let signalled = Instant::now();
    d.signal(SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    // The idle keep-alive connection does not hold the drain.
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert!(idle.is_closed(Duration::from_secs(1)));
}

#[test]
fn startup_errors_exit_with_their_codes() {
    let snapshot = books_snapshot().to_str().unwrap().to_string();
    let serve = |extra: &[&str]| -> (Option<i32>, String) {
        let mut args = vec!["serve", "--snapshot", &snapshot];
        args.extend_from_slice(extra);
        match Daemon::start_raw(&args) {
            Err(e) => e,
            Ok(mut d) => {
                let (code, _) = d.wait_exit(Duration::from_secs(10));
                (code, d.stderr_text())
            }
        }
    };

    // A busy port: 3.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = serve(&["--listen", &addr]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");

    // Bad flags and tokens files: 2, before binding.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-tokens");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let spaced = dir.path().join("spaced-tokens");
    std::fs::write(&spaced, "top secret\n").unwrap();
    let missing = dir.path().join("missing");
    for (flags, needle) in [
        (
            vec!["--tokens-file", missing.to_str().unwrap()],
            "cannot read tokens file",
        ),
        (
            vec!["--tokens-file", empty.to_str().unwrap()],
            "holds no token",
        ),
        (vec!["--tokens-file", spaced.to_str().unwrap()], "line 1"),
        (vec!["--drain-timeout", "soon"], "expected a duration"),
        (vec!["--workers", "0"], "--workers"),
        (vec!["--max-head-bytes", "100"], "--max-head-bytes"),
        (vec!["--verify", "maybe"], "maybe"),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(flags);
        let (code, err) = serve(&all);
        assert_eq!(code, Some(2), "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: {err}");
        assert!(!err.contains("top secret"), "a token leaked: {err}");
    }

    // A refused snapshot: 1, after `listening on`.
    let corrupt = dir.path().join("corrupt.idx");
    let mut bytes = std::fs::read(books_snapshot()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&corrupt, bytes).unwrap();
    let corrupt = corrupt.to_str().unwrap();
    let (code, err) = match Daemon::start_raw(&[
        "serve",
        "--snapshot",
        corrupt,
        "--listen",
        "127.0.0.1:0",
        "--verify",
        "full",
    ]) {
        Err(e) => e,
        Ok(mut d) => (d.wait_exit(Duration::from_secs(10)).0, d.stderr_text()),
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("checksum"), "{err}");
}

/// A snapshot whose stored sha256 is wrong but whose structure and golden
/// queries are fine: `--verify full` never turns ready, the default
/// (background) finds it after start-up and exits 1, `structure` serves it.
#[test]
fn background_verification_takes_a_bad_checksum_out_of_service() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-sum.idx");
    let mut bytes = std::fs::read(books_snapshot()).unwrap();
    // The trailer is the 32-byte digest then the 8-byte trailer magic.
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(&bad, bytes).unwrap();
    let bad = bad.to_str().unwrap();
    let base = ["serve", "--snapshot", bad, "--listen", "127.0.0.1:0"];

    for verify in [None, Some("full")] {
        let mut args = base.to_vec();
        args.extend(verify.iter().flat_map(|v| ["--verify", v]));
        let (code, err) = match Daemon::start_raw(&args) {
            Err(e) => e,
            Ok(mut d) => (d.wait_exit(Duration::from_secs(10)).0, d.stderr_text()),
        };
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("checksum mismatch"), "{args:?}: {err}");
        if verify.is_none() {
            assert!(err.contains("ready"), "background: loaded first\n{err}");
        }
    }

    let mut args = base.to_vec();
    args.extend(["--verify", "structure"]);
    let d = Daemon::start_raw(&args).map_err(|e| e.1).unwrap();
    d.wait_for("/ready", 200);
    assert_eq!(d.get("/books?query=alan").status, 200);
    // Longer than a background hash of the books snapshot takes.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.get("/ready").status, 200, "{}", d.stderr_text());
}

#[test]
fn structure_verification_serves_the_same_index() {
    let d = Daemon::start(&["--verify", "structure"]);
    d.wait_for("/ready", 200);
    let digest = searchd::index::Engine::open(books_snapshot(), searchd::snapshot::Verify::Full)
        .unwrap()
        .digest()
        .to_string();
    assert_eq!(d.get("/version").json()["index_digest"], digest.as_str());
}

#[test]
fn image_id_comes_from_the_flag_or_the_environment() {
    let snapshot = books_snapshot().to_str().unwrap().to_string();
    let base = ["serve", "--snapshot", &snapshot, "--listen", "127.0.0.1:0"];
    let d = Daemon::start_env(&base, &[("KILN_IMAGE_ID", "img-env")]).unwrap();
    d.wait_for("/ready", 200);
    assert_eq!(d.get("/version").json()["image"], "img-env");
    let mut with_flag = base.to_vec();
    with_flag.extend(["--image", "img-flag"]);
    let d = Daemon::start_env(&with_flag, &[("KILN_IMAGE_ID", "img-env")]).unwrap();
    d.wait_for("/ready", 200);
    assert_eq!(d.get("/version").json()["image"], "img-flag");
}

#[test]
fn debug_logs_one_json_line_per_request_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "very-secret-token\n").unwrap();
    let d = Daemon::start(&[
        "--log",
        "debug",
        "--log-format",
        "json",
        "--tokens-file",
        tokens.to_str().unwrap(),
    ]);
    d.wait_for("/ready", 200);
    let mut conn = Conn::open(d.addr);
    let r = conn.request(
        "GET",
        b"/books?query=peter",
        &["Authorization: Bearer very-secret-token"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        conn.request("GET", b"/books?query=x", &["Authorization: Bearer nope"])
            .status,
        401
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = d.stderr_text();
    let line = log
        .lines()
        .find(|l| l.contains("/books?query=peter"))
        .unwrap_or_else(|| panic!("no request line in\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["level"], "DEBUG");
    assert!(log.lines().any(|l| l.contains("\"status\":401")), "{log}");
    assert!(
        !log.contains("very-secret-token"),
        "token in the log:\n{log}"
    );
    assert!(!log.contains("nope"), "token in the log:\n{log}");
}

#[test]
fn help_documents_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_searchd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--snapshot",
        "--listen",
        "--verify",
        "--tokens-file",
        "--image",
        "--max-query-bytes",
        "--max-head-bytes",
        "--header-timeout",
        "--max-connections",
        "--shutdown-delay",
        "--drain-timeout",
        "--workers",
        "--log-format",
        "--log",
        "KILN_IMAGE_ID",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}
