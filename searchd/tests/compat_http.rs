//! Replays every answer recorded from the real Picky server
//! (tests/golden/picky_recorded.jsonl and picky_examples.jsonl) over HTTP,
//! sending each record's exact request target. Picky's 200 answers must
//! come back byte for byte (duration set to 0, as the recorder did); where
//! Picky failed (500) or refused (400), searchd's documented deliberate
//! behaviour is asserted case by case (PICKY.md, src/params/).

mod golden_defs;
mod serve_support;

use std::collections::HashMap;
use std::path::PathBuf;

use searchd::server::Config;
use serde_json::Value;
use serve_support::{Conn, Server, zero_duration};

/// What searchd answers where Picky did not answer 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliberate {
    /// 200 with no allocations (Picky: 500 for a missing query or a word
    /// made only of `|`).
    Empty,
    /// 400 with this JSON error code.
    Refused(&'static str),
    /// 200 with whatever the engine answers (Picky: 500 from an integer
    /// overflow deep inside its paging).
    EngineAnswer,
}

fn deliberate() -> HashMap<&'static str, Deliberate> {
    use Deliberate::*;
    let mut m = HashMap::new();
    // A word that is only `|`.
    for id in ["p0532", "p0563", "p0564"] {
        m.insert(id, Empty);
    }
    // No `query` parameter at all (`Query=`, `query` without `=`, `query[`).
    for id in [
        "p0821", "p0822", "p0823", "p0830", "p0831", "p0871", "p0890",
    ] {
        m.insert(id, Empty);
    }
    // ids/offset beyond 64 bits.
    for id in ["p0756", "p0767", "p0769", "p0788"] {
        m.insert(id, Refused("integer_out_of_range"));
    }
    // offset = i64::MIN fits; Picky overflowed only while paging.
    m.insert("p0789", EngineAnswer);
    // ids[]= / offset[]=.
    for id in ["p0819", "p0820"] {
        m.insert(id, Refused("invalid_integer"));
    }
    // Invalid UTF-8 in the query after %-decoding.
    for id in ["p0840", "p0841", "p0842", "p0881", "p0882"] {
        m.insert(id, Refused("invalid_utf8"));
    }
    // Rack's limits: more than 4096 parameters, nesting of 100 levels.
    m.insert("p0887", Refused("too_many_parameters"));
    m.insert("p0889", Refused("invalid_parameters"));
    m
}

fn records(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn replay(server: &Server, file: &str) -> (usize, Vec<String>) {
    let deliberate = deliberate();
    let mut conn = Conn::open(server.addr);
    let mut failures = Vec::new();
    let recs = records(file);
    for rec in &recs {
        let id = rec["id"].as_str().unwrap();
        let url = rec["url"].as_str().unwrap();
        let picky_status = rec["status"].as_u64().unwrap();
        let resp = conn.get(url);
        let body = String::from_utf8(resp.body.clone()).unwrap();
        let mut fail = |why: String| {
            failures.push(format!(
                "{id} {:?}: {why}\n  searchd: {} {body}",
                &url[..url.len().min(120)],
                resp.status
            ))
        };
        if resp.header("content-type") != Some("application/json") {
            fail(format!("content type {:?}", resp.header("content-type")));
            continue;
        }
        let empty = |offset: &str| {
            format!("{{\"allocations\":[],\"offset\":{offset},\"duration\":0,\"total\":0}}")
        };
        match (picky_status, deliberate.get(id)) {
            (200, None) => {
                let want = rec["body_text"].as_str().unwrap();
                if resp.status != 200 || zero_duration(&body) != want {
                    fail(format!("picky: 200 {want}"));
                }
            }
            (_, Some(Deliberate::Empty)) => {
                if resp.status != 200 || zero_duration(&body) != empty("0") {
                    fail("expected 200 with an empty result".into());
                }
            }
            (_, Some(Deliberate::Refused(code))) => {
                if resp.status != 400 || resp.error_code() != *code {
                    fail(format!("expected 400 {code}"));
                }
            }
            (_, Some(Deliberate::EngineAnswer)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if resp.status != 200 || !v["allocations"].is_array() || !v["total"].is_u64() {
                    fail("expected 200 with the engine's answer".into());
                }
            }
            (400, None) => {
                let picky = rec["body_text"].as_str().unwrap_or("");
                let code = resp.error_code();
                let message = resp.json()["message"].as_str().unwrap_or("").to_string();
                let ok = if rec["content_type"].is_null() {
                    // Puma's own refusal of a query string over 10240 bytes.
                    code == "query_too_long"
                } else if let Some(m) = picky.strip_prefix("Invalid query parameters: invalid") {
                    // Same message as Rack's, without Sinatra's prefix.
                    code == "invalid_encoding" && message == format!("invalid{m}")
                } else if picky.contains("expected Array (got String)") {
                    code == "invalid_parameters"
                } else {
                    false
                };
                if resp.status != 400 || !ok {
                    fail(format!("picky: 400 {picky:?}"));
                }
            }
            (status, None) => fail(format!(
                "picky answered {status} and no deliberate behaviour is documented for it"
            )),
        }
    }
    (recs.len(), failures)
}

fn assert_replay(file: &str, min: usize) {
    let server = Server::start(Config::default());
    let (n, failures) = replay(&server, file);
    assert!(n >= min, "only {n} records in {file}");
    assert!(
        failures.is_empty(),
        "{} of {n} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was a 5xx, and every request was counted.
    let m = server.state.metrics();
    let search = searchd::server::Route::Search;
    let counted: u64 = [200u16, 400].iter().map(|&s| m.requests(search, s)).sum();
    assert_eq!(counted, n as u64);
}

#[test]
fn recorded_answers_replay_over_http() {
    assert_replay("picky_recorded.jsonl", 1000);
}

#[test]
fn shared_examples_replay_over_http() {
    assert_replay("picky_examples.jsonl", 20);
}

#[test]
fn every_deliberate_difference_is_a_recorded_failure() {
    // The table above only lists requests Picky did not answer with 200.
    let recs = records("picky_recorded.jsonl");
    for (id, _) in deliberate() {
        let rec = recs.iter().find(|r| r["id"] == id).unwrap();
        assert_ne!(rec["status"], 200, "{id}");
    }
}

#[test]
fn head_answers_like_get_without_a_body() {
    let server = Server::start(Config::default());
    let mut conn = Conn::open(server.addr);
    let get = conn.get("/books?query=alan");
    let head = conn.request("HEAD", b"/books?query=alan", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Same answer, so the same length but for the duration's digits
    // (`0.000217` vs `9.1e-05`), which differ from request to request.
    let len = |r: &Option<&str>| {
        r.and_then(|v| v.parse::<i64>().ok())
            .expect("content-length")
    };
    let (h, g) = (
        len(&head.header("content-length")),
        len(&get.header("content-length")),
    );
    assert!((h - g).abs() <= 12, "HEAD says {h} bytes, GET sent {g}");
    assert_eq!(g, get.body.len() as i64);
    assert_eq!(head.header("content-type"), Some("application/json"));
    // The connection is still usable after the HEAD.
    assert_eq!(conn.get("/live").status, 200);
}

#[test]
fn picky_security_headers_are_kept() {
    let server = Server::start(Config::default());
    let r = server.get("/books?query=alan");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("x-xss-protection"), Some("1; mode=block"));
    assert_eq!(server.get("/books/").status, 404);
}

/// Our own recorded definitions (tests/golden/*/: agora, records, shelf,
/// streets, keys, dupes, catalog with its search options and facets,
/// media: searches over three indexes, places: ranged and geo categories)
/// replayed over HTTP: each record's request target, its Picky route
/// swapped for the path searchd serves the definition at, answers byte for
/// byte (the engine replays are in compat_engine.rs).
#[test]
fn own_definitions_replay_over_http() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<(String, String, String)> = [
        ("agora/index.toml", "agora/agora_recorded.jsonl", "/agora"),
        (
            "records/index.toml",
            "records/records_recorded.jsonl",
            "/records",
        ),
        ("shelf/index.toml", "shelf/shelf_recorded.jsonl", "/shelf"),
        (
            "streets/index.toml",
            "streets/streets_recorded.jsonl",
            "/streets",
        ),
        ("dupes/index.toml", "dupes/dupes_recorded.jsonl", "/dupes"),
        (
            "dupes/index.toml",
            "dupes/facets_author_recorded.jsonl",
            "/dupes",
        ),
    ]
    .iter()
    .map(|(d, f, r)| (d.to_string(), f.to_string(), r.to_string()))
    .collect();
    for key in golden_defs::KEY_ROUTES {
        cases.push((
            format!("keys/{key}.toml"),
            format!("keys/{key}_recorded.jsonl"),
            format!("/{key}"),
        ));
    }
    for route in golden_defs::CATALOG_ROUTES {
        cases.push((
            format!("catalog/{route}.toml"),
            format!("catalog/{route}_recorded.jsonl"),
            format!("/{route}"),
        ));
    }
    for route in golden_defs::MEDIA_ROUTES {
        cases.push((
            format!("media/{route}.toml"),
            format!("media/{route}_recorded.jsonl"),
            format!("/{route}"),
        ));
    }
    for route in golden_defs::PLACES_ROUTES {
        let def = if route == "plain" { "index" } else { route };
        cases.push((
            format!("places/{def}.toml"),
            format!("places/{route}_recorded.jsonl"),
            format!("/{route}"),
        ));
    }
    for (route, category) in golden_defs::CATALOG_FACETS {
        cases.push((
            format!("catalog/{route}.toml"),
            format!("catalog/facets_{route}_{category}_recorded.jsonl"),
            format!("/{route}"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for (def, file, route) in &cases {
        let def = searchd::def::Definition::load(&root.join(def)).unwrap();
        let out = dir.path().join(format!("{replayed}.idx"));
        searchd::build::build_definition(&def, &out).unwrap();
        let server = Server::start_unloaded(Config::default());
        server
            .state
            .install(searchd::index::Engine::open(&out, searchd::snapshot::Verify::Full).unwrap())
            .unwrap();
        let mut conn = Conn::open(server.addr);
        for rec in records(file) {
            let url = rec["url"].as_str().unwrap();
            let target = format!(
                "/{}{}",
                def.name(),
                url.strip_prefix(route.as_str()).unwrap()
            );
            let resp = conn.get(&target);
            let body = String::from_utf8(resp.body.clone()).unwrap();
            let want = rec["body_text"].as_str().unwrap();
            if ["pl063", "pl064", "pl065", "pl066", "pl068"].contains(&rec["id"].as_str().unwrap())
            {
                // A number whose grid cell is infinite: Picky raises
                // FloatDomainError (500); searchd finds it nowhere.
                assert_eq!(rec["status"], 500, "{file} {target}");
                assert_eq!(resp.status, 200, "{file} {target}: {body}");
                assert!(
                    body.starts_with("{\"allocations\":[]"),
                    "{file} {target}: {body}"
                );
                continue;
            }
            if rec["id"] == "r014" {
                // A range beyond MAX_RANGE_TEXTS (compat_engine.rs says why).
                assert_eq!(
                    (resp.status, resp.error_code().as_str()),
                    (400, "range_too_large")
                );
                continue;
            }
            assert_eq!(resp.status, 200, "{file} {target}: {body}");
            assert_eq!(zero_duration(&body), want, "{file} {target}");
            replayed += 1;
        }
    }
    assert_eq!(replayed, 4496, "answers replayed");
}
