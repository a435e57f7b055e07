//! Any query string, ids and offset: the engine must answer (or refuse with
//! `TooComplex`) and never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use searchd::index::Engine;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let def = searchd::def::IndexDef::load(&root.join("images/books/index.toml")).expect("books definition");
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("books.idx");
        searchd::build::build(&def, &out).expect("index builds");
        let e = Engine::open(&out, searchd::snapshot::Verify::Full).expect("snapshot opens");
        // The mapping stays valid after the file is unlinked.
        drop(dir);
        e
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ids = i64::from(data[0] as i8);
    let offset = i64::from(data[1] as i8);
    let query = String::from_utf8_lossy(&data[2..]);
    if let Ok(r) = engine().search(&query, ids, offset) {
        let json = r.to_json_string(0.0);
        assert!(json.starts_with("{\"allocations\":["));
    }
});
