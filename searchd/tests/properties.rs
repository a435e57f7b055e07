//! Property tests: the snapshot format round-trips and refuses damage, and
//! the engine answers any query without panicking, with consistent totals.

mod common;

use std::path::Path;

use common::books;
use proptest::prelude::*;
use searchd::snapshot::{Kind, Snapshot, Verify, Writer};

/// Words from the data and the query language, so random queries hit.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alan",
            "al",
            "a",
            "history",
            "hist",
            "peter",
            "the",
            "of",
            "1999",
            "american",
            "politics",
            "title:",
            "author:",
            "year:",
            "title,author:",
            "|",
            "~",
            "*",
            "\"",
            ":",
            ",",
            "-",
            "é",
            "ß",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9~*\":,|éü -]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_query_is_answered_consistently(words in prop::collection::vec(word(), 0..6), ids in -30i64..60, offset in -30i64..60) {
        let query = words.join(" ");
        let r = books().search(&query, ids, offset).unwrap();
        let total: u64 = r.allocations.iter().map(|a| a.count).sum();
        prop_assert_eq!(total, r.total);
        let shown: usize = r.allocations.iter().map(|a| a.ids.len()).sum();
        prop_assert!(shown as i64 <= ids.max(0), "{} ids shown for ids={}", shown, ids);
        for a in &r.allocations {
            prop_assert!(a.ids.len() as u64 <= a.count);
        }
        // Scores are sorted, highest first.
        for w in r.allocations.windows(2) {
            prop_assert!(w[0].score.value() >= w[1].score.value());
        }
        let json: serde_json::Value = serde_json::from_str(&r.to_json_string(0.0)).unwrap();
        prop_assert_eq!(json["total"].as_u64(), Some(r.total));
    }

    #[test]
    fn arbitrary_text_never_panics(query in "\\PC{0,64}", ids in any::<i64>(), offset in any::<i64>()) {
        let _ = books().search(&query, ids, offset);
    }

    #[test]
    fn paging_covers_exactly_the_ids(query in prop::sample::select(vec!["a", "al", "history", "alan p", "a s"]), page in 1i64..7) {
        let all = books().search(query, 10_000, 0).unwrap();
        let expected: Vec<u32> = all.allocations.iter().flat_map(|a| a.ids.clone()).collect();
        let mut got = Vec::new();
        let mut offset = 0;
        while offset < expected.len() as i64 {
            let r = books().search(query, page, offset).unwrap();
            got.extend(r.allocations.iter().flat_map(|a| a.ids.clone()));
            offset += page;
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn snapshot_round_trips(sections in prop::collection::vec((1u32..40, 0u32..4, prop::collection::vec(any::<u8>(), 0..300)), 0..8)) {
        let mut w = Writer::default();
        for (k, c, b) in &sections {
            let kind = match k % 4 { 0 => Kind::Meta, 1 => Kind::ExactFst, 2 => Kind::DocBytes, _ => Kind::Lists };
            w.add(kind, *c, b.clone());
        }
        let (bytes, digest) = w.finish();
        let snap = Snapshot::from_bytes(Path::new("p.idx"), bytes.clone(), Verify::Full).unwrap();
        prop_assert_eq!(snap.digest_hex(), searchd::snapshot::hex(&digest));
        for (k, c, b) in &sections {
            let kind = match k % 4 { 0 => Kind::Meta, 1 => Kind::ExactFst, 2 => Kind::DocBytes, _ => Kind::Lists };
            // The first section of a kind/category wins; find it.
            let first = sections.iter().find(|(k2, c2, _)| k2 % 4 == k % 4 && c2 == c).map(|s| &s.2);
            let got = snap.section(kind, *c).unwrap();
            prop_assert_eq!(got.as_ref(), first.unwrap().as_slice());
            prop_assert!(first.unwrap().len() == b.len() || sections.iter().filter(|(k2, c2, _)| k2 % 4 == k % 4 && c2 == c).count() > 1);
        }
    }

    #[test]
    fn damaged_snapshots_are_refused(flip in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
        let good = std::fs::read(books().snapshot().path()).unwrap();
        let mut bad = good.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(Snapshot::from_bytes(Path::new("b.idx"), bad, Verify::Full).is_err());
        let n = cut.index(good.len());
        prop_assert!(Snapshot::from_bytes(Path::new("c.idx"), good[..n].to_vec(), Verify::Full).is_err());
    }
}

/// `a a a …` makes every word match two categories: 2^n allocations. The
/// work limit refuses it quickly, however long the query, and deep queries
/// need no deep stack (the walk is iterative).
#[test]
fn hostile_products_are_refused_fast() {
    for n in [20usize, 5_120, 20_000] {
        let query = vec!["a"; n].join(" ");
        let r = books().search(&query, 20, 0);
        assert_eq!(
            r.err(),
            Some(searchd::search::SearchError::TooComplex),
            "{n} words"
        );
    }
    // Many words of which one matches nothing: no product at all.
    let query = format!("{} zzzzqqq", vec!["a"; 5_000].join(" "));
    assert_eq!(books().search(&query, 20, 0).unwrap().total, 0);
}

/// Damage that only the sha256 would catch: with `--verify structure` (and
/// before the background hash of the default `serve`) a damaged term table
/// reaches the engine. Opening and the golden-query replay must refuse it
/// or serve it, never panic — not even a panic the last-net `catch_unwind`
/// would catch: every fst is checked at open, so the `fst` crate never
/// meets a damaged node (a panic on the loading thread would leave the
/// server starting forever).
#[test]
fn damaged_term_tables_never_panic_out_of_open_or_install() {
    // This process is the test's own (nextest): count every panic, caught
    // or not.
    let panics = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = panics.clone();
    std::panic::set_hook(Box::new(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let path = books().path().to_owned();
    let file = std::fs::read(&path).unwrap();
    let snapshot = Snapshot::open(&path, Verify::Full).unwrap();
    let mut refused = 0;
    let mut flipped = 0;
    for category in 0..3u32 {
        let fst = snapshot.section(Kind::ExactFst, category).unwrap();
        let fst: &[u8] = fst.as_ref();
        let start = file
            .windows(fst.len())
            .position(|w| w == fst)
            .expect("the section is in the file");
        // The root node is at the end of an fst: every lookup decodes it.
        let from = start + fst.len().saturating_sub(256);
        for at in (from..start + fst.len()).step_by(3) {
            let mut bad = file.clone();
            bad[at] ^= 0xa5;
            flipped += 1;
            let opened = Snapshot::from_bytes(&path, bad, Verify::Structure)
                .and_then(searchd::index::Engine::from_snapshot);
            let Ok(engine) = opened else {
                refused += 1;
                continue;
            };
            let state = searchd::server::State::new(searchd::server::Config::default());
            if state.install(engine).is_err() {
                refused += 1;
            }
        }
    }
    let _ = std::panic::take_hook();
    assert_eq!(
        panics.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a damaged fst reached a panic (caught by the last net)"
    );
    assert!(flipped > 200, "only {flipped} positions tried");
    // Most damage to a root node is noticed (by the golden queries if
    // nothing else); a test that refuses nothing proves nothing.
    assert!(refused > flipped / 4, "{refused} of {flipped} refused");
}
