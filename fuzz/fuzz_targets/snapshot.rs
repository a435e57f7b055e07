//! Arbitrary bytes as a snapshot: refused with an error or opened and
//! searchable, never a panic. Structure-only verification, so mutations get
//! past the checksum and exercise the section parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use searchd::index::Engine;
use searchd::snapshot::{Snapshot, Verify};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    let Ok(snap) = Snapshot::from_bytes(path, data.to_vec(), Verify::Structure) else { return };
    let Ok(engine) = Engine::from_snapshot(snap) else { return };
    for q in ["alan", "a b", "hemingwai~", "title:hist*", "a|b", "\"x\""] {
        let _ = engine.search(q, 20, 0).map(|r| r.to_json_string(0.0));
    }
    let _ = engine.check_golden();
});
