//! Fixtures shared by searchd's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use searchd::def::IndexDef;
use searchd::index::Engine;
use searchd::snapshot::Verify;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A recorded-answer file under `tests/golden/`.
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The books index (images/books/index.toml), built once per test binary
/// into a temporary directory that lives as long as the process.
pub fn books() -> &'static Engine {
    static E: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    &E.get_or_init(|| {
        let def =
            IndexDef::load(&root().join("images/books/index.toml")).expect("books definition");
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("books.idx");
        searchd::build::build(&def, &out).expect("books index builds");
        let e = Engine::open(&out, Verify::Full).expect("books snapshot opens");
        (dir, e)
    })
    .1
}

/// Builds the definition `tests/golden/<def>` (its data next to it; an
/// index or a search definition) into a
/// temporary directory; the engine lives as long as the directory.
pub fn build_def(def: &str) -> (tempfile::TempDir, Engine) {
    let def = searchd::def::Definition::load(&golden(def)).expect("definition");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("index.idx");
    searchd::build::build_definition(&def, &out).expect("index builds");
    let e = Engine::open(&out, Verify::Full).expect("snapshot opens");
    (dir, e)
}
