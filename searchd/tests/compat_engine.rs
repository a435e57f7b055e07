//! Replays answers recorded from the real Picky server (see
//! tests/golden/README.md) through the engine and requires byte equality of
//! every 200 answer whose parameters were sent as plain key/value pairs.
//! (Raw query strings are replayed through the HTTP server in compat_http.rs.)

mod common;

use common::{books as engine, golden};

fn replay(file: &str) -> (usize, Vec<String>) {
    let path = golden(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut compared = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["status"] != 200 {
            continue;
        }
        let Some(params) = rec["params"].as_object() else {
            continue;
        };
        let get = |k: &str| params.get(k).and_then(|v| v.as_str());
        let Some(query) = get("query") else { continue };
        let ids = get("ids").map_or(20, searchd::ruby::to_i);
        let offset = get("offset").map_or(0, searchd::ruby::to_i);
        let expected = rec["body_text"].as_str().unwrap();
        compared += 1;
        match engine().search(query, ids, offset) {
            Ok(r) => {
                let got = r.to_json_string(0.0);
                if got != expected {
                    failures.push(format!(
                        "{} {:?}\n  picky:   {expected}\n  searchd: {got}",
                        rec["id"], rec["url"]
                    ));
                }
            }
            Err(e) => failures.push(format!("{} {:?}: {e}", rec["id"], rec["url"])),
        }
    }
    (compared, failures)
}

fn assert_replay(file: &str, min: usize) {
    let (compared, failures) = replay(file);
    assert!(
        compared >= min,
        "only {compared} answers compared from {file}"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from Picky:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn shared_examples_match_picky() {
    assert_replay("picky_examples.jsonl", 20);
}

#[test]
fn recorded_answers_match_picky() {
    assert_replay("picky_recorded.jsonl", 700);
}

/// Picky's title similarity index (dumped from the real server) equals ours,
/// code by code and word by word, in order.
#[test]
fn title_similarity_lists_match_picky() {
    let path = golden("picky_title_similarity.json");
    let picky: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(picky.len() > 1000);
    let title = engine().category("title").unwrap();
    let mut differ = Vec::new();
    for (code, words) in &picky {
        let expected: Vec<&str> = words
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        let ours: Vec<&str> = title.similar(code).collect();
        if ours != expected {
            differ.push(format!("{code:?}: picky {expected:?}, searchd {ours:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} lists differ:\n{}",
        differ.len(),
        picky.len(),
        differ.join("\n")
    );
}
