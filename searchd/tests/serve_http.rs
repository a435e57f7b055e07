//! The HTTP server in process (`searchd::server::serve` on 127.0.0.1:0):
//! health endpoints and the readiness latch, /version, /metrics, bearer
//! auth, limits, error bodies, keep-alive and pipelining, and hostile
//! input that must never produce a 5xx.

mod serve_support;

use std::time::Duration;

use proptest::prelude::*;
use searchd::server::{Config, Phase, Route, auth::Tokens};
use serve_support::{Conn, Server, books_engine, workspace_root, zero_duration};

fn tokens() -> Tokens {
    Tokens::parse(
        "# test tokens\nt0ken-one\nsecond.token\n",
        std::path::Path::new("t"),
    )
    .unwrap()
}

#[test]
fn ready_is_a_latch_live_always_answers() {
    let mut server = Server::start_unloaded(Config::default());
    assert_eq!(server.get("/live").status, 200);
    let r = server.get("/ready");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (503, Some("starting"))
    );
    // Nothing to search yet: every other path says so, /version too.
    assert_eq!(server.get("/books?query=alan").error_code(), "not_ready");
    assert_eq!(server.get("/version").status, 503);

    server.state.install(books_engine()).unwrap();
    assert_eq!(server.state.phase(), Phase::Ready);
    assert_eq!(server.get("/ready").status, 200);
    assert_eq!(server.get("/books?query=alan").status, 200);

    server.state.begin_drain();
    let r = server.get("/ready");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (503, Some("draining"))
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(server.get("/live").status, 200);
    // Searches still work while draining.
    assert_eq!(server.get("/books?query=alan").status, 200);
    server.signal_shutdown();
}

#[test]
fn a_refused_snapshot_leaves_the_server_starting() {
    use searchd::server::{LoadError, State};
    use searchd::snapshot::Verify;
    let state = State::new(Config::default());
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.idx");
    std::fs::write(&garbage, b"not a snapshot at all").unwrap();
    for path in [
        garbage.as_path(),
        std::path::Path::new("/nonexistent/books.idx"),
    ] {
        let err = state.load(path, Verify::Full).unwrap_err();
        assert!(matches!(err, LoadError::Snapshot(_)), "{err}");
        assert_eq!(state.phase(), Phase::Starting);
    }
    state
        .load(serve_support::books_snapshot(), Verify::Structure)
        .unwrap();
    assert_eq!(state.phase(), Phase::Ready);
    // Installing after a drain began does not make the server ready again.
    let draining = State::new(Config::default());
    draining.begin_drain();
    draining.install(books_engine()).unwrap();
    assert_eq!(draining.phase(), Phase::Draining);
}

#[test]
fn version_reports_the_snapshot_digest_and_image() {
    let engine = books_engine();
    let digest = engine.digest().to_string();
    let server = Server::start(Config {
        image: Some("img-0123".into()),
        ..Config::default()
    });
    let r = server.get("/version");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "{{\"version\":\"{}\",\"index_digest\":\"{digest}\",\"image\":\"img-0123\"}}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let plain = Server::start(Config::default());
    assert_eq!(
        plain.get("/version").json()["image"],
        serde_json::Value::Null
    );
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

#[test]
fn metrics_count_requests_by_route_and_status() {
    let server = Server::start(Config::default());
    let before = server.get("/metrics").text();
    let search_ok = r#"searchd_requests_total{route="search",status="200"}"#;
    assert_eq!(metric(&before, search_ok), 0.0);

    let mut conn = Conn::open(server.addr);
    for _ in 0..3 {
        assert_eq!(conn.get("/books?query=alan").status, 200);
    }
    assert_eq!(conn.get("/books?query=%zz").status, 400);
    assert_eq!(conn.get("/nope").status, 404);
    assert_eq!(conn.get("/live").status, 200);

    let text = server.get("/metrics").text();
    assert_eq!(metric(&text, search_ok), 3.0);
    assert_eq!(
        metric(
            &text,
            r#"searchd_requests_total{route="search",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"searchd_requests_total{route="other",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"searchd_request_duration_seconds_count{route="search"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            r#"searchd_request_duration_seconds_bucket{route="search",le="+Inf"}"#
        ),
        4.0
    );
    assert!(
        metric(
            &text,
            r#"searchd_request_duration_seconds_sum{route="search"}"#
        ) > 0.0
    );
    assert_eq!(
        metric(&text, r#"searchd_index_documents{index="books"}"#),
        540.0
    );
    let digest = books_engine().digest().to_string();
    assert_eq!(
        metric(
            &text,
            &format!(r#"searchd_snapshot_info{{index="books",digest="{digest}"}}"#)
        ),
        1.0
    );
    assert_eq!(metric(&text, "searchd_ready "), 1.0);
    assert!(metric(&text, "searchd_connections_accepted_total ") >= 3.0);
    assert!(metric(&text, "searchd_connections_open ") >= 1.0);
    let r = server.get("/metrics");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(server.state.metrics().requests(Route::Live, 200), 1);
}

#[test]
fn auth_guards_search_and_metrics_but_not_health() {
    let server = Server::start(Config {
        tokens: Some(tokens()),
        ..Config::default()
    });
    let mut conn = Conn::open(server.addr);
    for target in ["/books?query=alan", "/metrics"] {
        let r = conn.get(target);
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(r.error_code(), "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"searchd\"")
        );
        for bad in [
            "Authorization: Bearer wrong",
            "Authorization: Bearer t0ken-on",
            "Authorization: Basic dDBrZW4tb25l",
            "Authorization: t0ken-one",
        ] {
            assert_eq!(conn.request("GET", target.as_bytes(), &[bad]).status, 401);
        }
        for good in [
            "Authorization: Bearer t0ken-one",
            "authorization: bearer second.token",
        ] {
            assert_eq!(conn.request("GET", target.as_bytes(), &[good]).status, 200);
        }
    }
    for open in ["/live", "/ready", "/version"] {
        assert_eq!(conn.get(open).status, 200, "{open}");
    }
    // Auth is checked before anything about the request is looked at.
    assert_eq!(conn.get("/books?query=%").status, 401);
    assert_eq!(
        server.state.metrics().requests(Route::Search, 401),
        1 + 4 + 1
    );
}

#[test]
fn limits_answer_json_errors() {
    let server = Server::start(Config::default());
    let mut conn = Conn::open(server.addr);
    // Puma's limit: 10240 bytes of query string pass, one more does not.
    // A query string of exactly `n` bytes.
    let pad = |n: usize| format!("/books?query=alan&pad={}", "x".repeat(n - 15));
    assert_eq!(conn.get(&pad(10_240)).status, 200);
    let r = conn.get(&pad(10_241));
    assert_eq!((r.status, r.error_code().as_str()), (400, "query_too_long"));
    assert!(r.json()["message"].as_str().unwrap().contains("10241"));
    // A request head beyond --max-head-bytes is refused by hyper itself.
    let mut big = Conn::open(server.addr);
    let r = big.get(&format!("/books?query={}", "a".repeat(70_000)));
    assert!(r.status == 431 || r.status == 414, "{}", r.status);
    let r = conn.request(
        "GET",
        b"/live",
        &[&format!("X-Big: {}", "b".repeat(70_000))],
    );
    assert_eq!(r.status, 431);
}

#[test]
fn bad_parameters_answer_400_json() {
    let server = Server::start(Config::default());
    let mut conn = Conn::open(server.addr);
    for (target, code) in [
        ("/books?query=%", "invalid_encoding"),
        ("/books?query=alan%2", "invalid_encoding"),
        ("/books?query=a&x=%G0", "invalid_encoding"),
        ("/books?query=%E9", "invalid_utf8"),
        ("/books?query=%C3%28", "invalid_utf8"),
        (
            "/books?query=a&ids=9223372036854775808",
            "integer_out_of_range",
        ),
        (
            "/books?query=a&offset=-99999999999999999999",
            "integer_out_of_range",
        ),
        ("/books?query=a&ids[]=1", "invalid_integer"),
        ("/books?query=a&query[]=b", "invalid_parameters"),
        ("/books?%E9=1", "invalid_parameters"),
    ] {
        let r = conn.get(target);
        assert_eq!((r.status, r.error_code().as_str()), (400, code), "{target}");
    }
    let r = conn.get("/books?query=%");
    assert_eq!(
        r.text(),
        r#"{"error":"invalid_encoding","message":"invalid %-encoding (%)"}"#
    );
}

#[test]
fn methods_paths_and_keep_alive() {
    let server = Server::start(Config::default());
    let mut conn = Conn::open(server.addr);
    let r = conn.request("POST", b"/books?query=alan", &["Content-Length: 0"]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    for target in ["/", "/book", "/books/", "/BOOKS", "/books/x", "//books"] {
        let r = conn.get(target);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "not_found"),
            "{target}"
        );
    }
    // Many requests on one connection, then pipelined ones.
    for _ in 0..50 {
        assert_eq!(conn.get("/books?query=alan").status, 200);
    }
    let one = b"GET /books?query=peter HTTP/1.1\r\nHost: t\r\n\r\n";
    conn.send_raw(&[&one[..], one, b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n"].concat());
    let a = conn.read_response(false).unwrap();
    let b = conn.read_response(false).unwrap();
    let c = conn.read_response(false).unwrap();
    assert_eq!((a.status, b.status, c.status), (200, 200, 200));
    assert_eq!(zero_duration(&a.text()), zero_duration(&b.text()));
    assert_eq!(c.text(), r#"{"status":"live"}"#);
}

#[test]
fn hostile_inputs_never_get_a_5xx() {
    let server = Server::start(Config {
        // Let the huge queries reach the engine instead of the length limit.
        max_query_bytes: 60_000,
        ..Config::default()
    });
    let mut conn = Conn::open(server.addr);
    // 10,000 words, most of them matching nothing.
    let words = (0..10_000)
        .map(|i| {
            if i % 100 == 0 {
                "a".to_string()
            } else {
                format!("w{i}")
            }
        })
        .collect::<Vec<_>>()
        .join("+");
    let alternatives = vec!["a"; 5_000].join("%7C");
    // Every word matches in two categories: the engine's work limit ends
    // this walk. (Kept at 300 words: the engine's cost grows with words
    // times allocations, seconds for thousands of such words.)
    let many_words = vec!["a"; 300].join("+");
    let targets = [
        format!("/books?query={words}"),
        format!("/books?query={alternatives}"),
        format!("/books?query={many_words}"),
        "/books?query=a&ids=9223372036854775807&offset=9223372036854775807".into(),
        "/books?query=a&ids=-9223372036854775808&offset=-9223372036854775808".into(),
        "/books?query=a&ids=-1&offset=-1".into(),
        "/books?query=s&offset=-5&ids=3".into(),
        "/books?query=a*+b*+c*+d*+e*+f*+g*+h*".into(),
        "/books?query=1000%E2%80%A69999".into(),
        "/books?query=year:0%E2%80%A699999999".into(),
        "/books?query=~+~+~+~".into(),
        "/books?query=%00%01%02%7F".into(),
        "/books?query=%F0%9F%98%80%E2%80%A8%EF%BF%BF".into(),
        format!("/books?query{}=x", "[a]".repeat(150)),
        format!("/books?query{}=x", "[]".repeat(150)),
        format!("/books?{}", "&".repeat(5_000)),
    ];
    for target in &targets {
        let r = conn.get(target);
        assert!(
            r.status == 200 || r.status == 400,
            "{} -> {} {}",
            &target[..target.len().min(80)],
            r.status,
            r.text()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let _ = r.json();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes as the query string: hyper refuses what is not a valid
    /// request target (400, from hyper itself); everything else is answered
    /// 200 or 400 with JSON. Never a 5xx, and the server keeps serving.
    #[test]
    fn random_query_strings(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let server = shared_server();
        let mut target = b"/books?".to_vec();
        target.extend(bytes.iter().map(|&b| if b == b'\r' || b == b'\n' { b'_' } else { b }));
        let mut conn = Conn::open(server.addr);
        conn.send("GET", &target, &["Connection: close"]);
        if let Some(r) = conn.read_response(false) {
            prop_assert!(r.status < 500, "status {} for {:?}", r.status, String::from_utf8_lossy(&target));
            if r.header("content-type") == Some("application/json") {
                let _ = r.json();
            }
        }
        prop_assert_eq!(server.get("/live").status, 200);
    }

    /// Random printable query strings reach the handler and get JSON,
    /// except `"`, `<` and `>`, which are not allowed in a request target:
    /// hyper refuses those with a bare 400, as Puma does.
    #[test]
    fn random_printable_query_strings(qs in "[!-~]{0,120}") {
        let server = shared_server();
        let qs = qs.replace('#', "%23");
        let r = server.get(&format!("/books?{qs}"));
        prop_assert!(r.status == 200 || r.status == 400, "{} for {qs:?}", r.status);
        if qs.contains(['"', '<', '>']) {
            prop_assert_eq!(r.status, 400);
        } else {
            prop_assert_eq!(r.header("content-type"), Some("application/json"));
            let _ = r.json();
        }
    }
}

fn shared_server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| Server::start(Config::default()))
}

#[test]
fn slow_clients_are_cut_off_by_the_header_timeout() {
    let server = Server::start(Config {
        header_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let mut conn = Conn::open(server.addr);
    conn.send_raw(b"GET /live HTTP/1.1\r\nHost: t\r\n");
    // The connection is closed without an answer.
    let started = std::time::Instant::now();
    assert!(conn.read_response(false).is_none());
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The counter moves right after the socket closes.
    let timeouts = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.state.metrics().header_timeouts() < n {
            assert!(std::time::Instant::now() < deadline, "not counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(server.state.metrics().header_timeouts(), n);
    };
    timeouts(1);
    // An idle keep-alive connection is closed the same way, a busy one is
    // not: each request restarts the clock.
    let mut busy = Conn::open(server.addr);
    for _ in 0..6 {
        assert_eq!(busy.get("/live").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(busy.is_closed(Duration::from_secs(2)));
    timeouts(2);
}

#[test]
fn connections_beyond_the_limit_wait_in_the_backlog() {
    let server = Server::start(Config {
        max_connections: 1,
        ..Config::default()
    });
    let mut first = Conn::open(server.addr);
    assert_eq!(first.get("/live").status, 200);
    // The second client connects (the kernel completes the handshake) but
    // is not served while the first connection is open.
    let second = std::thread::spawn({
        let addr = server.addr;
        move || {
            let started = std::time::Instant::now();
            let r = serve_support::get(addr, "/live");
            (r.status, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    assert!(!second.is_finished(), "served beyond --max-connections");
    drop(first);
    let (status, waited) = second.join().unwrap();
    assert_eq!(status, 200);
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
}

/// Facets over HTTP (`/<index>/facets/<category>`): Picky's JSON, the
/// parameters parsed as for searches, and 404/400 JSON errors for what
/// has no facets or is refused (Picky raises: a 500).
#[test]
fn facets_answer_over_http() {
    let def_path = workspace_root().join("searchd/tests/golden/catalog/plain.toml");
    let def = searchd::def::IndexDef::load(&def_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("catalog.idx");
    searchd::build::build(&def, &out).unwrap();
    let server = Server::start_unloaded(Config::default());
    server
        .state
        .install(searchd::index::Engine::open(&out, searchd::snapshot::Verify::Full).unwrap())
        .unwrap();
    let mut conn = Conn::open(server.addr);
    let r = conn.get("/catalog/facets/author?at_least=5");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"anna":5,"peter":6,"mara":5}"#)
    );
    let r = conn.get("/catalog/facets/author?filter=river%20song&counts=false");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("[\"anna\""), "{}", r.text());
    for (target, status, code) in [
        ("/catalog/facets/nope", 404, "no_facets"),
        (
            "/catalog/facets/author?at_least[]=1",
            400,
            "invalid_integer",
        ),
        ("/catalog/facets/author?filter=%E9", 400, "invalid_utf8"),
        ("/catalog/facets/", 404, "not_found"),
        ("/catalog/facets/author/x", 404, "not_found"),
    ] {
        let r = conn.get(target);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{target}"
        );
    }
}
