//! Damage only the sha256 would catch, inside every section of a small
//! snapshot: opened with structure-only verification (`serve --verify
//! structure`, and `serve` before its background hash), each damaged copy
//! is refused at open or answers queries and the golden check. Never a
//! panic: a panic hook counts panics on this thread, so one caught by the
//! engine's last-net `catch_unwind` fails the test too. (Without the term
//! table walk at open, `check_fst` in index.rs, this test panics inside
//! the `fst` crate within the first damaged fst section.)

mod common;

use std::cell::Cell;
use std::path::Path;

use searchd::index::Engine;
use searchd::snapshot::{Kind, Snapshot, Verify};

/// A small books index: exact, partial and similarity tables for two
/// categories, a constant-weight category without partial, boosts and
/// golden queries. Small tables put the damage near the nodes every lookup
/// decodes (an fst's root is its last bytes).
const DEF: &str = r#"
name = "books"

[id]
field = "id"
kind = "integer"

[source]
path = "books.csv"
format = "csv"
header = false
columns = ["id", "title", "author", "year", "publisher", "subject"]

[indexing]
remove = '[^a-zA-Z0-9 \t\n\x0B\x0C\r/\-_:"&.]'
stopwords = '(?i)\b(and|the|of|it|in|for)\b'
split = '[ \t\n\x0B\x0C\r/\-_:"&.]'

[searching]
remove = '[^\p{L}\p{N} \t\n\x0B\x0C\r/\-_&."~*:,|…]'
stopwords = '(?i)\b(and|the|of|it|in|for)\b'
split = '[ \t\n\x0B\x0C\r/\-&]+'

[[category]]
name = "title"
partial = { kind = "substring", from = 1 }
similarity = { kind = "double_metaphone", amount = 3 }

[[category]]
name = "author"
partial = { kind = "postfix", from = -3 }
similarity = { kind = "soundex", amount = 2 }
facets = true

[[category]]
name = "year"
partial = { kind = "none" }
weight = { kind = "constant", value = 1.5 }

[[category]]
name = "decade"
field = "year"
ranged = { range = 10 }

[[boost]]
categories = ["title", "author"]
value = 3

[[golden]]
query = "a"

[[golden]]
query = "history~ s"

[[golden]]
query = "year:1990…2000"
"#;

/// Every kind of lookup: exact, partial (last word and `*`), similar,
/// qualifiers, alternatives, ranges, phrases, paging.
const QUERIES: &[(&str, i64, i64)] = &[
    ("a", 20, 0),
    ("a", 3, 4),
    ("history s", 20, 0),
    ("histori~ weinberk~", 20, 0),
    ("title:hist* author:j", 20, 0),
    ("title,author:s", 20, 0),
    ("a|b|c", 20, 0),
    ("\"american\"", 20, 0),
    ("year:1990…2003 e", 20, 0),
    ("decade:1995 history", 20, 0),
    ("zzzz", 20, 0),
];

thread_local! {
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Counts this thread's panics in `PANICS` (the default hook still
/// prints them), for as long as the test runs.
fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.with(|p| p.set(p.get() + 1));
        previous(info);
    }));
}

/// A deterministic xorshift: the same offsets on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn build() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = std::fs::read_to_string(common::root().join("images/books/books.csv")).unwrap();
    // Every book: the longest lists are bitmaps (see searchd::postings;
    // damaged packed blocks are covered by its property tests, as 539
    // documents make every list long enough for a block a bitmap).
    let mut rows: Vec<&str> = csv.lines().collect();
    // A repeated id (merged into book 1 after later books): lists in
    // Picky's order, stored beside the sorted ones.
    rows.push("1,Zebra History of Abel,Zimmer Anna,1999,x,y");
    std::fs::write(dir.path().join("books.csv"), rows.join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("index.toml"), DEF).unwrap();
    std::fs::write(dir.path().join("index.toml"), DEF).unwrap();
    // The same books as a second index, and a search over both.
    std::fs::write(
        dir.path().join("more.toml"),
        DEF.replacen("name = \"books\"", "name = \"more\"", 1),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("search.toml"),
        "name = \"both\"\nindexes = [\"index.toml\", \"more.toml\"]\n[search]\nunique = true\n\
         [[golden]]\nquery = \"history\"\n",
    )
    .unwrap();
    let def = searchd::def::IndexDef::load(&dir.path().join("index.toml")).expect("definition");
    let out = dir.path().join("small.idx");
    searchd::build::build(&def, &out).expect("index builds");
    (dir, out)
}

/// Damages `good[at] ^= mask` (in section `what`) and opens the copy:
/// true if it answered, false if it was refused; a panic fails the test.
fn open_and_query(good: &[u8], what: &str, at: usize, mask: u8) -> bool {
    let mut bad = good.to_vec();
    bad[at] ^= mask;
    let snap = Snapshot::from_bytes(Path::new("damaged.idx"), bad, Verify::Structure)
        .expect("damage inside a section passes the structure check");
    let opened = match Engine::from_snapshot(snap) {
        Ok(engine) => {
            let mut out = Vec::new();
            for &(q, ids, offset) in QUERIES {
                let _ = engine.search(q, ids, offset).map(|r| r.to_json_string(0.0));
                out.clear();
                let _ = engine.search_json(q, ids, offset, &mut out, || 0.0);
            }
            let _ = engine.check_golden();
            // Facet words (a filter only adds searches, covered above).
            out.clear();
            let _ = engine.facets_json("author", None, Some(2), true, &mut out);
            true
        }
        Err(_) => false,
    };
    let panics = PANICS.with(Cell::get);
    assert_eq!(panics, 0, "{what}: byte {at} ^ {mask:#04x} panicked");
    opened
}

#[test]
fn damage_inside_any_section_is_refused_or_answers_without_a_panic() {
    count_panics();
    let (_dir, path) = build();
    let good = std::fs::read(&path).unwrap();
    let snap = Snapshot::open(&path, Verify::Full).unwrap();
    let engine = Engine::from_snapshot(snap).expect("the undamaged snapshot opens");
    let title = engine.category("title").unwrap();
    let partial = title.partial.as_ref().unwrap();
    assert!(partial.get("s").expect("a partial list").bitmap().is_some());
    assert!(
        partial
            .get("sto")
            .expect("a partial list")
            .bitmap()
            .is_none()
    );
    // The merged record gave some lists Picky's (not ascending) order.
    assert!(title.exact.picky_order("zebra").is_none());
    assert!(title.exact.picky_order("history").is_some());
    assert!(engine.category("author").unwrap().facet_keys().is_some());
    let snap = Snapshot::open(&path, Verify::Full).unwrap();
    let sections: Vec<_> = snap.sections().collect();
    assert_eq!(sections.len(), 32, "every kind of section is present");
    let fst_kinds = [
        Kind::ExactFst,
        Kind::PartialFst,
        Kind::SimilarFst,
        Kind::ExactOrder,
        Kind::PartialOrder,
    ]
    .map(|k| k as u32);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut fst_cases, mut fst_refused, mut cases) = (0, 0, 0);
    for (kind, category, range) in sections {
        let what = format!("section kind {kind} of category {category}");
        let is_fst = fst_kinds.contains(&kind);
        // Fsts are decoded from the end (the root): every one of their last
        // 48 bytes, and random bytes anywhere in every section.
        let tail = if is_fst { range.len().min(48) } else { 8 };
        let mut offsets: Vec<usize> = (range.end - tail..range.end).collect();
        offsets.extend((0..40).map(|_| range.start + rng.next() as usize % range.len()));
        for at in offsets {
            let mask = (rng.next() % 255 + 1) as u8;
            let opened = open_and_query(&good, &what, at, mask);
            cases += 1;
            if is_fst {
                fst_cases += 1;
                fst_refused += usize::from(!opened);
            }
        }
    }
    let _ = std::panic::take_hook();
    assert!(cases > 1000, "{cases} cases");
    // The walk is not a no-op: most damage to an fst is refused at open.
    assert!(
        fst_refused * 2 > fst_cases,
        "{fst_refused} of {fst_cases} damaged fsts refused"
    );
}

/// The same for a search over two indexes: damage inside its own sections
/// and inside every section of each nested index snapshot.
#[test]
fn damage_inside_a_search_and_its_nested_indexes_never_panics() {
    count_panics();
    let (dir, _) = build();
    let def = searchd::def::Definition::load(&dir.path().join("search.toml")).expect("definition");
    let path = dir.path().join("both.idx");
    searchd::build::build_definition(&def, &path).expect("search builds");
    let good = std::fs::read(&path).unwrap();
    let snap = Snapshot::open(&path, Verify::Full).unwrap();
    let mut sections: Vec<_> = snap.sections().collect();
    for i in 0..2 {
        let nested = snap
            .nested(Kind::Index, i, Verify::Full)
            .expect("nested index");
        sections.extend(nested.sections());
    }
    assert_eq!(
        sections.len(),
        5 + 2 * 32,
        "the search's and both indexes' sections"
    );
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut cases, mut refused) = (0, 0);
    for (kind, category, range) in sections {
        let what = format!("section kind {kind} of category {category}");
        let mut offsets: Vec<usize> = (range.end - range.len().min(4)..range.end).collect();
        offsets.extend((0..6).map(|_| range.start + rng.next() as usize % range.len().max(1)));
        for at in offsets.into_iter().filter(|&at| at < good.len()) {
            let mask = (rng.next() % 255 + 1) as u8;
            refused += usize::from(!open_and_query(&good, &what, at, mask));
            cases += 1;
        }
    }
    let _ = std::panic::take_hook();
    assert!(cases > 500, "{cases} cases");
    assert!(refused > 0, "no damage was refused");
}

/// The same for posting lists of packed blocks (the books are too few for
/// any: their long lists are bitmaps): 4,000 synthetic documents whose
/// words are in 130 to 240 of them (one block of 128 and a varint tail),
/// and a few in more (bitmaps), queried alone, intersected with each other
/// (a short list seeking through a long one block by block) and paged.
#[test]
fn damage_inside_packed_posting_lists_never_panics() {
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,title,author\n");
    for i in 0..4000 {
        csv.push_str(&format!(
            "{i},w{} v{} c{},a{}\n",
            i % 17,
            i % 29,
            i % 2,
            i % 23
        ));
    }
    std::fs::write(dir.path().join("d.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("index.toml"),
        "name = \"packed\"\n[source]\npath = \"d.csv\"\nformat = \"csv\"\n\
         [[category]]\nname = \"title\"\npartial = { kind = \"none\" }\n\
         [[category]]\nname = \"author\"\npartial = { kind = \"none\" }\n",
    )
    .unwrap();
    let def = searchd::def::IndexDef::load(&dir.path().join("index.toml")).unwrap();
    let path = dir.path().join("packed.idx");
    searchd::build::build(&def, &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let snap = Snapshot::open(&path, Verify::Full).unwrap();
    let engine = Engine::from_snapshot(snap).unwrap();
    let title = engine.category("title").unwrap();
    let w3 = title.exact.get("w3").expect("w3");
    assert!(
        w3.bitmap().is_none() && w3.blocks() == 1 && w3.len() > 128,
        "w3 is packed"
    );
    assert!(
        title.exact.get("c1").unwrap().bitmap().is_some(),
        "c1 is a bitmap"
    );
    let queries: &[(&str, i64, i64)] = &[
        ("w3", 20, 0),
        ("w3", 5, 130),
        ("w3 v5", 20, 0),
        ("title:w3 author:a7", 20, 0),
        ("w3 c1", 20, 0),
        ("w3|w4 v2", 20, 0),
    ];
    for &(q, _, _) in queries {
        assert!(
            engine.search(q, 20, 0).unwrap().total > 0,
            "{q} finds nothing"
        );
    }
    let snap = Snapshot::open(&path, Verify::Full).unwrap();
    let lists: Vec<_> = snap
        .sections()
        .filter(|(kind, _, _)| *kind == Kind::Lists as u32)
        .collect();
    assert_eq!(lists.len(), 2);
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let mut cases = 0;
    for (_, category, range) in lists {
        for _ in 0..300 {
            let at = range.start + rng.next() as usize % range.len();
            let mut bad = good.clone();
            bad[at] ^= (rng.next() % 255 + 1) as u8;
            let snap = Snapshot::from_bytes(Path::new("damaged.idx"), bad, Verify::Structure)
                .expect("damage inside a section passes the structure check");
            if let Ok(engine) = Engine::from_snapshot(snap) {
                let mut out = Vec::new();
                for &(q, ids, offset) in queries {
                    let _ = engine.search(q, ids, offset).map(|r| r.to_json_string(0.0));
                    out.clear();
                    let _ = engine.search_json(q, ids, offset, &mut out, || 0.0);
                }
            }
            let panics = PANICS.with(Cell::get);
            assert_eq!(
                panics, 0,
                "lists of category {category}: byte {at} panicked"
            );
            cases += 1;
        }
    }
    let _ = std::panic::take_hook();
    assert_eq!(cases, 600);
}
