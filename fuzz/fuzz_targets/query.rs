//! Any query string, ids and offset: the engine must answer (or refuse with
//! `TooComplex` or `RangeTooLarge`) and never panic. The first byte picks
//! the snapshot: the books, a search over three indexes with every search
//! option (tests/golden/media/all.toml), or ranged and geo categories
//! (tests/golden/places/index.toml).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use searchd::index::Engine;

fn build(def: &str) -> Engine {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let def = searchd::def::Definition::load(&root.join(def)).expect("definition");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("index.idx");
    searchd::build::build_definition(&def, &out).expect("index builds");
    let e = Engine::open(&out, searchd::snapshot::Verify::Full).expect("snapshot opens");
    // The mapping stays valid after the file is unlinked.
    drop(dir);
    e
}

fn engines() -> &'static [Engine; 3] {
    static E: OnceLock<[Engine; 3]> = OnceLock::new();
    E.get_or_init(|| {
        [
            build("images/books/index.toml"),
            build("searchd/tests/golden/media/all.toml"),
            build("searchd/tests/golden/places/index.toml"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let engine = &engines()[usize::from(data[0]) % 3];
    let ids = i64::from(data[1] as i8);
    let offset = i64::from(data[2] as i8);
    let query = String::from_utf8_lossy(&data[3..]);
    if let Ok(r) = engine.search(&query, ids, offset) {
        let json = r.to_json_string(0.0);
        assert!(json.starts_with("{\"allocations\":["));
    }
});
