//! A real snapshot (the books) damaged inside its sections, where only the
//! sha256 would notice: opened with structure-only verification (as
//! `serve --verify structure`, and `serve` before its background hash), it
//! must be refused with an error or answer queries and the golden check,
//! never panic. libfuzzer-sys aborts on any panic, even one the engine's
//! last-net `catch_unwind` would have caught, so the checks themselves are
//! what is fuzzed.
//!
//! The input is a list of damages, 4 bytes each (so libFuzzer's first,
//! shortest inputs damage already): the section (low 5 bits of the first
//! byte: its index in the table, modulo the count), an offset in it (the
//! first byte's top 3 bits above the next two, little-endian: 19 bits,
//! modulo the section's length) and the byte written there. The header,
//! section table and trailer are left alone, so every input gets past the
//! structure check.
#![no_main]

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use searchd::index::Engine;
use searchd::snapshot::{Snapshot, Verify};

/// The books snapshot's bytes and its sections' byte ranges.
fn books() -> &'static (Vec<u8>, Vec<Range<usize>>) {
    static B: OnceLock<(Vec<u8>, Vec<Range<usize>>)> = OnceLock::new();
    B.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let def = searchd::def::IndexDef::load(&root.join("images/books/index.toml"))
            .expect("books definition");
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("books.idx");
        searchd::build::build(&def, &out).expect("index builds");
        let bytes = std::fs::read(&out).expect("snapshot readable");
        let snap = Snapshot::open(&out, Verify::Full).expect("snapshot opens");
        let sections = snap
            .sections()
            .map(|(_, _, r)| r)
            .filter(|r| !r.is_empty())
            .collect();
        (bytes, sections)
    })
}

/// Every kind of lookup: exact, partial (last word and `*`), similar,
/// qualifiers, alternatives, ranges, phrases, paging.
const QUERIES: &[(&str, i64, i64)] = &[
    ("alan", 20, 0),
    ("a b", 20, 0),
    ("a", 5, 10),
    ("hemingwai~", 20, 0),
    ("soc~ pyth~", 20, 0),
    ("title:hist*", 20, 0),
    ("author:alan title:s", 20, 0),
    ("title,author:peter", 20, 0),
    ("a|b", 20, 0),
    ("\"the history\"", 20, 0),
    ("year:1990…1999", 20, 0),
    ("1999 p", 100, 0),
    ("zzzz", 20, 0),
];

fuzz_target!(|data: &[u8]| {
    let (good, sections) = books();
    let mut bytes = good.clone();
    for d in data.chunks_exact(4) {
        let section = &sections[usize::from(d[0] & 0x1f) % sections.len()];
        let offset = usize::from(d[0] >> 5) << 16 | usize::from(u16::from_le_bytes([d[1], d[2]]));
        bytes[section.start + offset % section.len()] = d[3];
    }
    let path = Path::new("damaged.idx");
    let snap = Snapshot::from_bytes(path, bytes, Verify::Structure)
        .expect("damage inside sections passes the structure check");
    let Ok(engine) = Engine::from_snapshot(snap) else {
        return;
    };
    let mut out = Vec::new();
    for &(q, ids, offset) in QUERIES {
        let _ = engine.search(q, ids, offset).map(|r| r.to_json_string(0.0));
        out.clear();
        let _ = engine.search_json(q, ids, offset, &mut out, || 0.0);
    }
    let _ = engine.check_golden();
});
