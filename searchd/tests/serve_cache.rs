//! The search answer cache (`--cache-mb`): a repeated search is a hit whose
//! body differs from the miss only in `duration`; different parameters are
//! different entries; `--cache-mb 0` turns it off.

mod serve_support;

use searchd::server::Config;
use serve_support::{Daemon, Server, zero_duration};

fn duration_of(body: &serde_json::Value) -> f64 {
    body["duration"].as_f64().expect("duration is a number")
}

#[test]
fn a_repeated_search_is_a_hit_with_the_same_body() {
    let server = Server::start(Config::default());
    let reference = Server::start(Config {
        cache_bytes: 0,
        ..Config::default()
    });
    let m = server.state.metrics();
    let targets = [
        "/books?query=alan",
        "/books?query=alan&ids=5",
        "/books?query=alan&offset=1",
        "/books?query=alan&ids=5&offset=2",
        "/books?query=soc*%20phil",
        "/books?query=",
    ];
    for (i, target) in targets.iter().enumerate() {
        let miss = server.get(target);
        assert_eq!(miss.status, 200, "{target}");
        assert_eq!((m.cache_hits(), m.cache_misses()), (i as u64, i as u64 + 1));
        let hit = server.get(target);
        assert_eq!(hit.status, 200);
        assert_eq!(
            (m.cache_hits(), m.cache_misses()),
            (i as u64 + 1, i as u64 + 1),
            "{target}: the second request is a hit"
        );
        assert_eq!(hit.header("content-type"), Some("application/json"));
        assert_eq!(zero_duration(&hit.text()), zero_duration(&miss.text()));
        assert_eq!(
            zero_duration(&hit.text()),
            zero_duration(&reference.get(target).text()),
            "{target}: same answer as without the cache"
        );
        let d = duration_of(&hit.json());
        assert!((0.0..1.0).contains(&d), "{d}");
    }
    // Targets that Rack parses to the same parameters share an entry.
    let before = m.cache_hits();
    assert_eq!(server.get("/books?offset=0&query=alan&ids=20").status, 200);
    assert_eq!(server.get("/books?query=al%61n").status, 200);
    assert_eq!(m.cache_hits(), before + 2);
    // Errors are not cached (nor counted as lookups).
    let misses = m.cache_misses();
    for _ in 0..2 {
        assert_eq!(server.get("/books?query=%ff").status, 400);
    }
    assert_eq!(m.cache_misses(), misses);

    let text = server.get("/metrics").text();
    assert!(text.contains(&format!("searchd_cache_hits_total {}\n", m.cache_hits())));
    assert!(text.contains(&format!(
        "searchd_cache_misses_total {}\n",
        m.cache_misses()
    )));
    assert!(!text.contains("searchd_cache_bytes 0\n"), "{text}");
}

#[test]
fn cache_mb_0_turns_it_off() {
    let server = Server::start(Config {
        cache_bytes: 0,
        ..Config::default()
    });
    for _ in 0..3 {
        assert_eq!(server.get("/books?query=alan").status, 200);
    }
    let m = server.state.metrics();
    assert_eq!((m.cache_hits(), m.cache_misses()), (0, 0));

    // The real binary, flag included.
    let d = Daemon::start(&["--cache-mb", "0"]);
    d.wait_for("/ready", 200);
    for _ in 0..3 {
        assert_eq!(d.get("/books?query=alan").status, 200);
    }
    let text = d.get("/metrics").text();
    assert!(text.contains("searchd_cache_hits_total 0\n"), "{text}");
    assert!(text.contains("searchd_cache_bytes 0\n"), "{text}");

    let d = Daemon::start(&["--cache-mb", "1"]);
    d.wait_for("/ready", 200);
    for _ in 0..3 {
        assert_eq!(d.get("/books?query=alan").status, 200);
    }
    let text = d.get("/metrics").text();
    assert!(text.contains("searchd_cache_hits_total 2\n"), "{text}");
    assert!(text.contains("searchd_cache_misses_total 1\n"), "{text}");
}
