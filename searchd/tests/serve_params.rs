//! Request parameter parsing (`searchd::params`) against the real Rack:
//! `tests/rack/params.jsonl` holds what Rack 2.2 + Sinatra 3 make of 2,000
//! query strings (every one recorded from Picky, hand-made structural
//! cases, random mixes, the limits), and properties that must hold for any
//! input.

use std::path::PathBuf;

use proptest::prelude::*;
use searchd::params::{self, ParamError, ParamsError, search_params};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rack/params.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What searchd must answer for one oracle record: `Ok((query, ids,
/// offset))` or the error code.
fn expected(rec: &Value) -> Result<(String, i64, i64), &'static str> {
    match rec["status"].as_i64() {
        // Rack's refusals (Sinatra answers 400).
        Some(400) => {
            let msg = rec["message"].as_str().unwrap();
            return Err(if msg.starts_with("invalid %-encoding") {
                "invalid_encoding"
            } else {
                "invalid_parameters"
            });
        }
        // Rack's limits (Picky answers 500): refused with 400 here.
        Some(500) => {
            let qs = rec["qs"].as_str().unwrap();
            let seps = qs.bytes().filter(|&b| b == b'&' || b == b';').count();
            return Err(if seps >= params::MAX_PARAMS {
                "too_many_parameters"
            } else {
                "invalid_parameters"
            });
        }
        _ => {}
    }
    if rec.get("query_bytes").is_some() {
        return Err("invalid_utf8");
    }
    let int = |v: &Value| -> Result<i64, &'static str> {
        if let Some(i) = v.as_i64() {
            Ok(i)
        } else if v.get("overflow").is_some() {
            Err("integer_out_of_range")
        } else {
            Err("invalid_integer")
        }
    };
    let ids = int(&rec["ids"])?;
    let offset = int(&rec["offset"])?;
    // A missing or nil query is searched as "" (Picky: 500).
    let query = rec["query"].as_str().unwrap_or("").to_string();
    Ok((query, ids, offset))
}

#[test]
fn parameters_parse_like_rack() {
    let cases = cases();
    assert!(cases.len() > 1500, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for rec in &cases {
        let qs = rec["qs"].as_str().unwrap();
        let want = expected(rec);
        let got = search_params(qs.as_bytes())
            .map(|p| (p.query.into_owned(), p.ids, p.offset))
            .map_err(|e| e.code());
        if got != want {
            failures.push(format!("{qs:?}\n  rack:    {want:?}\n  searchd: {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} query strings parse differently from Rack:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn error_messages_name_the_problem() {
    let err = search_params(b"query=alan%").unwrap_err();
    assert_eq!(err.to_string(), "invalid %-encoding (alan%)");
    let err = search_params(b"query=a&query[]=b").unwrap_err();
    assert!(matches!(
        err,
        ParamError::Params(ParamsError::TypeConflict { ref key, .. }) if key == "query"
    ));
    let err = search_params(b"query=a&ids=99999999999999999999").unwrap_err();
    assert!(err.to_string().contains("99999999999999999999"), "{err}");
}

fn simple_key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}"
}

fn any_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(.|\n){0,24}").unwrap()
}

/// Form-encodes like a browser: unreserved characters as is, space as `+`,
/// everything else %XX.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes: never a panic, and refusals are errors, not crashes.
    #[test]
    fn never_panics(qs in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = search_params(&qs);
        let _ = params::parse(&qs);
    }

    /// Bytes drawn from the characters that matter to the parser.
    #[test]
    fn never_panics_on_structure(qs in "[\\[\\]=&;%+ a-c0-9\n]{0,60}") {
        let _ = search_params(qs.as_bytes());
    }

    /// Encoded simple key/value pairs come back as they went in, the last
    /// value of a repeated key winning.
    #[test]
    fn simple_pairs_round_trip(
        pairs in proptest::collection::vec((simple_key(), any_text()), 0..8),
    ) {
        let qs: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let qs = qs.join("&");
        let parsed = params::parse(qs.as_bytes()).unwrap();
        let mut want: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &pairs {
            match want.iter_mut().find(|(wk, _)| wk == k) {
                Some(slot) => slot.1 = v,
                None => want.push((k, v)),
            }
        }
        prop_assert_eq!(parsed.len(), want.len());
        for ((k, v), (pk, pv)) in want.iter().zip(parsed.iter()) {
            prop_assert_eq!(k.as_bytes(), pk);
            prop_assert_eq!(pv, &params::Value::Str(v.as_bytes().to_vec().into()));
        }
    }

    /// The search parameters of an encoded query are the query itself, and
    /// `ids`/`offset` are Ruby's `to_i` of theirs.
    #[test]
    fn search_params_round_trip(query in any_text(), ids in any::<i64>(), offset in "[ -~]{0,12}") {
        let qs = format!("query={}&ids={ids}&offset={}", encode(&query), encode(&offset));
        let p = search_params(qs.as_bytes()).unwrap();
        prop_assert_eq!(p.query.as_ref(), query.as_str());
        prop_assert_eq!(p.ids, ids);
        prop_assert_eq!(Some(p.offset), params::to_i(offset.as_bytes()));
        prop_assert_eq!(p.offset, searchd::ruby::to_i(&offset));
    }

    /// Within the i64 range the checked `to_i` is Ruby's `to_i`.
    #[test]
    fn to_i_agrees_with_ruby_to_i(s in "[ +\\-_0-9a]{0,25}") {
        if let Some(v) = params::to_i(s.as_bytes()) {
            prop_assert_eq!(v, searchd::ruby::to_i(&s));
        }
    }
}
