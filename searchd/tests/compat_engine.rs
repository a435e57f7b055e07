//! Replays answers recorded from the real Picky server (see
//! tests/golden/README.md) through the engine and requires byte equality of
//! every 200 answer whose parameters were sent as plain key/value pairs.
//! (Raw query strings are replayed through the HTTP server in compat_http.rs.)
//! Besides the books example, definitions of our own (tests/golden/agora,
//! records, shelf) recorded from Picky apps of the same definition:
//! constant weights, qualifiers listed by two categories, Greek capitals,
//! logarithmic offsets, integer scores.

mod common;
mod golden_defs;

use common::{books as engine, golden};
use searchd::index::Engine;
use searchd::search::SearchError;

/// Replays `file`'s 200 answers through `engine`, except the records named
/// in `deliberate` (checked by the caller). Returns how many were compared
/// and the differences.
fn replay_with(engine: &Engine, file: &str, deliberate: &[&str]) -> (usize, Vec<String>) {
    let path = golden(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut compared = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["status"] != 200 || deliberate.iter().any(|id| rec["id"] == *id) {
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
        match engine.search(query, ids, offset) {
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

/// Replays `file`'s facets answers for `category` through `engine`
/// (`filter`, `at_least` with Ruby's to_i, `counts=false`), byte for byte;
/// returns how many were compared.
fn replay_facets(engine: &Engine, category: &str, file: &str) -> usize {
    let text = std::fs::read_to_string(golden(file)).unwrap();
    let mut compared = 0;
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let params = &rec["params"];
        let filter = params["filter"].as_str();
        let at_least = params["at_least"].as_str().map(searchd::ruby::to_i);
        let counts = params["counts"].as_str() != Some("false");
        let mut body = Vec::new();
        engine
            .facets_json(category, filter, at_least, counts, &mut body)
            .unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            rec["body_text"].as_str().unwrap(),
            "{file} {}: {params}",
            rec["id"]
        );
        compared += 1;
    }
    compared
}

fn replay(file: &str) -> (usize, Vec<String>) {
    replay_with(engine(), file, &[])
}

fn assert_replay(file: &str, min: usize) {
    assert_compared(file, min, replay(file));
}

fn assert_compared(file: &str, min: usize, (compared, failures): (usize, Vec<String>)) {
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

/// The agora catalogue (Greek and West European text, a constant-weight
/// category, the qualifiers `name` and `t` listed by two categories each):
/// every answer of the Picky app of the same definition, byte for byte.
#[test]
fn agora_answers_match_picky() {
    let (_dir, agora) = common::build_def("agora/index.toml");
    assert_compared(
        "agora/agora_recorded.jsonl",
        86,
        replay_with(&agora, "agora/agora_recorded.jsonl", &[]),
    );
}

/// The records catalogue (ranges over constant and logarithmic weights,
/// a constant weight of 0, shared qualifiers, lowercasing without
/// substitution): every answer of the Picky app but one, byte for byte.
#[test]
fn records_answers_match_picky() {
    let (_dir, records) = common::build_def("records/index.toml");
    // Deliberate difference: `year:1990…1995"` is a range up to `1995"`,
    // which Ruby's String#upto walks through 98,010 texts; searchd refuses
    // ranges beyond MAX_RANGE_TEXTS instead (a 400 over HTTP).
    assert!(matches!(
        records.search("year:1990…1995\"", 20, 0),
        Err(SearchError::RangeTooLarge(_))
    ));
    assert_compared(
        "records/records_recorded.jsonl",
        69,
        replay_with(&records, "records/records_recorded.jsonl", &["r014"]),
    );
}

/// The shelf catalogue (logarithmic weights with an integer and a float
/// offset, integer constant weights and boosts, whose scores print as
/// integers, a negative boost, ranges over an integer constant): every
/// answer of the Picky app, byte for byte.
#[test]
fn shelf_answers_match_picky() {
    let (_dir, shelf) = common::build_def("shelf/index.toml");
    let r = shelf.search("stock:a1 format:paperback", 20, 0).unwrap();
    assert_eq!(r.allocations[0].score, searchd::def::Number::Int(6));
    assert_compared(
        "shelf/shelf_recorded.jsonl",
        90,
        replay_with(&shelf, "shelf/shelf_recorded.jsonl", &[]),
    );
}

/// The catalog with each set of Picky's Search options (one definition per
/// route of the Picky app: max_allocations, terminate_early with 0 and 2
/// extra allocations, ignored categories and combinations, only,
/// ignore_unassigned_tokens, unique, and all of them at once), every query
/// at six pages: every answer byte for byte.
#[test]
fn catalog_search_options_match_picky() {
    for route in golden_defs::CATALOG_ROUTES {
        let (_dir, engine) = common::build_def(&format!("catalog/{route}.toml"));
        let file = format!("catalog/{route}_recorded.jsonl");
        assert_compared(&file, 174, replay_with(&engine, &file, &[]));
    }
}

/// The street directory (Picky's tokenizer options: the Polish
/// substituter, normalizes_words with back-references, rejects_token_if
/// on words shorter than two characters, a category with its own indexing
/// options): every answer of the Picky app, byte for byte.
#[test]
fn streets_answers_match_picky() {
    let (_dir, streets) = common::build_def("streets/index.toml");
    assert_compared(
        "streets/streets_recorded.jsonl",
        100,
        replay_with(&streets, "streets/streets_recorded.jsonl", &[]),
    );
}

/// The same JSON Lines data under Picky's key formats (`to_f`: ids as
/// Ruby floats, `1.0e+16`, `2.5e-05`; `to_s` and `to_sym`: strings), a
/// result identifier other than the index name, and `tokenize = false`
/// (arrays of tokens indexed as given, not lowercased): every answer of
/// the Picky app, byte for byte.
#[test]
fn keys_answers_match_picky() {
    for route in golden_defs::KEY_ROUTES {
        let (_dir, engine) = common::build_def(&format!("keys/{route}.toml"));
        let file = format!("keys/{route}_recorded.jsonl");
        assert_compared(&file, 51, replay_with(&engine, &file, &[]));
    }
}

/// Picky's facets of the catalog (`Search#facets`), of the plain search
/// and of the one with every search option: no filter, filters, at_least
/// (applied before the filter searches too), counts=false; every answer
/// byte for byte.
#[test]
fn catalog_facets_match_picky() {
    for (route, category) in golden_defs::CATALOG_FACETS {
        let (_dir, engine) = common::build_def(&format!("catalog/{route}.toml"));
        let file = format!("catalog/facets_{route}_{category}_recorded.jsonl");
        let compared = replay_facets(&engine, category, &file);
        assert_eq!(compared, 26, "{file}");
    }
}

/// Records sharing ids (`"1"`, `"01"`, `"1x"` are all id 1 under to_i),
/// merged into one document each as Picky merges them: lists in Picky's
/// order (an id a later record adds a word to comes after the documents
/// that had it), exact, partial and similar, and facets counting each
/// document once: every answer byte for byte.
#[test]
fn dupes_answers_match_picky() {
    let (_dir, dupes) = common::build_def("dupes/index.toml");
    assert_eq!(dupes.documents(), 6);
    assert_compared(
        "dupes/dupes_recorded.jsonl",
        55,
        replay_with(&dupes, "dupes/dupes_recorded.jsonl", &[]),
    );
    assert_eq!(
        replay_facets(&dupes, "author", "dupes/facets_author_recorded.jsonl"),
        4
    );
}

/// One search over three indexes (Picky's `Search.new(books, films,
/// music)`: integer ids shared by books and films, string ids and a result
/// identifier in music, qualifiers each index maps to its own category),
/// with each set of Search options: every answer byte for byte.
#[test]
fn media_searches_over_several_indexes_match_picky() {
    for route in golden_defs::MEDIA_ROUTES {
        let (_dir, engine) = common::build_def(&format!("media/{route}.toml"));
        assert_eq!(engine.indexes().len(), 3);
        let file = format!("media/{route}_recorded.jsonl");
        assert_compared(&file, 150, replay_with(&engine, &file, &[]));
    }
}

/// Picky's ranged categories and geo categories (`ranged_category`,
/// `geo_categories`: values by grid cell, a ranged category tokenized by
/// Picky's default tokenizer, non-numbers at 0.0, `…` ranges over cells),
/// recorded from Picky 4.31.3 with the two fixes it needs to index and
/// load them (golden/places/picky_ranged_fixes.patch): every 200 answer
/// byte for byte (Picky's 500s, numbers whose cell is infinite, are found
/// nowhere here: compat_http.rs checks them).
#[test]
fn places_ranged_and_geo_answers_match_picky() {
    for route in golden_defs::PLACES_ROUTES {
        let def = if route == "plain" { "index" } else { route };
        let (_dir, engine) = common::build_def(&format!("places/{def}.toml"));
        let file = format!("places/{route}_recorded.jsonl");
        assert_compared(&file, 217, replay_with(&engine, &file, &[]));
    }
}
