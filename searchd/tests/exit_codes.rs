//! README's "Exit codes" table, row by row, through the real binary: each
//! subcommand a row applies to exits with the row's code and says on stderr
//! what went wrong. `--help` and README must say what `searchd::exit::TABLE`
//! says.
//!
//! Tests run as root, where permission bits stop nothing: "exists but
//! cannot be read" is a sysctl file that refuses reads even to root, and
//! "cannot be written" is a path below a regular file.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use searchd::exit;
use serve_support::{Daemon, SIGTERM, books_snapshot, workspace_root};
use sha2::{Digest, Sha256};

/// Exists, but reading it is refused, root included (mode 0200; sysctl
/// files ignore CAP_DAC_OVERRIDE).
const UNREADABLE: &str = "/proc/sys/vm/drop_caches";

fn searchd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_searchd"))
        .args(args)
        .env_remove("KILN_IMAGE_ID")
        .env_remove("SEARCHD_LOG")
        .output()
        .unwrap()
}

/// Runs `searchd args`; asserts the exit code and that stderr has `needle`.
fn expect(args: &[&str], code: u8, needle: &str) -> Output {
    let out = searchd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(code)),
        "searchd {args:?}:\n{err}"
    );
    assert!(
        err.contains(needle),
        "searchd {args:?}: want {needle:?} on stderr:\n{err}"
    );
    out
}

/// Runs `searchd serve args` on 127.0.0.1 until it exits by itself (or
/// panics after 20 s; the process is killed either way); its code and
/// stderr.
fn serve(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    if !args.contains(&"--listen") {
        all.extend(["--listen", "127.0.0.1:0"]);
    }
    match Daemon::start_raw(&all) {
        Err(e) => e,
        Ok(mut d) => {
            let (code, _) = d.wait_exit(Duration::from_secs(20));
            // The reader thread may still hold the last lines.
            std::thread::sleep(Duration::from_millis(200));
            (code, d.stderr_text())
        }
    }
}

fn expect_serve(args: &[&str], code: u8, needle: &str) {
    let (got, err) = serve(args);
    assert_eq!(got, Some(i32::from(code)), "serve {args:?}:\n{err}");
    assert!(
        err.contains(needle),
        "serve {args:?}: want {needle:?} on stderr:\n{err}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A private copy of the books definition and data, and derived
/// snapshots: sound, corrupt, truncated, and one whose golden answer was
/// recorded differently (with a valid checksum).
struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let books = workspace_root().join("images/books");
        for f in ["index.toml", "books.csv"] {
            std::fs::copy(books.join(f), dir.path().join(f)).unwrap();
        }
        Fx { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn def(&self) -> PathBuf {
        self.path("index.toml")
    }

    /// A copy of the definition with `from` replaced by `to`.
    fn def_with(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.def()).unwrap();
        assert!(text.contains(from), "the definition lacks {from:?}");
        let p = self.path(name);
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
        p
    }

    /// The books snapshot with `edit` applied to its bytes.
    fn snapshot_with(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = std::fs::read(books_snapshot()).unwrap();
        edit(&mut bytes);
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// One byte in the middle flipped: the checksum no longer matches.
    fn corrupt(&self) -> PathBuf {
        self.snapshot_with("corrupt.idx", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
        })
    }

    fn truncated(&self) -> PathBuf {
        self.snapshot_with("truncated.idx", |b| b.truncate(b.len() / 2))
    }

    /// The first recorded golden answer's total changed by one digit, and
    /// the trailer's sha256 recomputed: a sound file whose recording no
    /// longer matches what the engine answers.
    fn golden_differs(&self) -> PathBuf {
        self.snapshot_with("golden.idx", |b| {
            let needle = br#"\"total\":"#;
            let at = b
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("a recorded answer")
                + needle.len();
            assert!(b[at].is_ascii_digit());
            b[at] = if b[at] == b'9' { b'1' } else { b[at] + 1 };
            // Trailer: sha256 of everything before it, then 8 bytes magic.
            let body = b.len() - 40;
            let digest = Sha256::digest(&b[..body]);
            b[body..body + 32].copy_from_slice(&digest);
        })
    }
}

/// Reading `UNREADABLE` really fails with something other than "not
/// found", or the rows using it prove nothing.
fn assert_unreadable() {
    let e = std::fs::read(UNREADABLE).expect_err("UNREADABLE must not be readable");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
}

#[test]
fn row_0_success() {
    let fx = Fx::new();
    let out_path = fx.path("books.idx");
    let out = expect(
        &["index", "--def", s(&fx.def()), "--out", s(&out_path)],
        exit::OK,
        "indexed",
    );
    let digest = String::from_utf8(out.stdout).unwrap();
    let out = expect(
        &["check", "--snapshot", s(&out_path)],
        exit::OK,
        "golden queries answered as recorded",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), digest);
    let out = expect(&["query", "--snapshot", s(&out_path), "alan"], exit::OK, "");
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("\"total\":")
    );

    // serve: stopped by SIGTERM after draining.
    let mut d = Daemon::start_raw(&[
        "serve",
        "--snapshot",
        s(&out_path),
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    d.wait_for("/ready", 200);
    d.signal(SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(i32::from(exit::OK)), "{}", d.stderr_text());
}

#[test]
fn row_1_the_snapshot_failed_its_check() {
    let fx = Fx::new();
    let corrupt = fx.corrupt();
    let truncated = fx.truncated();
    let golden = fx.golden_differs();
    // Not a snapshot at all: the definition.
    let not_a_snapshot = fx.def();
    let refused = [
        (&corrupt, "checksum mismatch"),
        (&truncated, "truncated"),
        (&not_a_snapshot, "not a kiln snapshot"),
    ];

    for (snapshot, why) in refused {
        expect(
            &["check", "--snapshot", s(snapshot)],
            exit::CHECK_FAILED,
            why,
        );
        expect(
            &["query", "--snapshot", s(snapshot), "alan"],
            exit::CHECK_FAILED,
            why,
        );
    }
    let out = expect(
        &["check", "--snapshot", s(&golden)],
        exit::CHECK_FAILED,
        "answered differently",
    );
    assert!(out.stdout.is_empty(), "no digest on failure");
    // --json reports the failure on stdout too (bake's builder reads it).
    let out = expect(
        &["check", "--json", "--snapshot", s(&corrupt)],
        exit::CHECK_FAILED,
        "checksum mismatch",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");

    // serve, at start (the whole-file hash first) and for golden queries.
    expect_serve(
        &["--snapshot", s(&corrupt), "--verify", "full"],
        exit::CHECK_FAILED,
        "checksum mismatch",
    );
    expect_serve(
        &["--snapshot", s(&truncated)],
        exit::CHECK_FAILED,
        "truncated",
    );
    expect_serve(
        &["--snapshot", s(&golden), "--verify", "structure"],
        exit::CHECK_FAILED,
        "answered differently",
    );
}

#[test]
fn row_1_serve_after_its_background_sha256() {
    let fx = Fx::new();
    // The stored digest is wrong; structure and golden queries are fine,
    // so the server turns ready first, then stops.
    let bad_sum = fx.snapshot_with("bad-sum.idx", |b| {
        let at = b.len() - 40;
        b[at] ^= 0x01;
    });
    let (code, err) = serve(&["--snapshot", s(&bad_sum)]);
    assert_eq!(code, Some(i32::from(exit::CHECK_FAILED)), "{err}");
    assert!(err.contains("ready"), "loaded first:\n{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn row_2_bad_flags() {
    for (args, needle) in [
        (vec!["index", "--def", "x.toml"], "--out"),
        (vec!["check"], "--snapshot"),
        (
            vec!["query", "--snapshot", "x.idx", "--ids", "many", "q"],
            "many",
        ),
        (
            vec!["serve", "--snapshot", "x.idx", "--verify", "maybe"],
            "maybe",
        ),
        (vec!["reindex"], "reindex"),
    ] {
        expect(&args, exit::USAGE, needle);
    }
    // Flags clap accepts but the plan refuses: before binding.
    expect_serve(
        &["--snapshot", "x.idx", "--workers", "0"],
        exit::USAGE,
        "--workers",
    );
    expect_serve(
        &["--snapshot", "x.idx", "--log", "searchd=loud"],
        exit::USAGE,
        "--log",
    );
}

#[test]
fn row_2_bad_input_to_index() {
    let fx = Fx::new();
    let out = fx.path("out.idx");
    let not_toml = fx.path("not.toml");
    std::fs::write(&not_toml, "name = \n").unwrap();
    let invalid = fx.def_with("invalid.toml", "name = \"books\"", "name = \"\"");
    let no_data = fx.def_with(
        "no-data.toml",
        "path = \"books.csv\"",
        "path = \"gone.csv\"",
    );
    // A record that is not UTF-8 (bad data, not a machine failure).
    let bad_data = fx.path("bad.csv");
    let mut csv = std::fs::read(fx.path("books.csv")).unwrap();
    if !csv.ends_with(b"\n") {
        csv.push(b'\n');
    }
    csv.extend_from_slice(b"9999,Caf\xe9,Nobody,1999,x,y\n");
    std::fs::write(&bad_data, csv).unwrap();
    let bad = fx.def_with("bad.toml", "path = \"books.csv\"", "path = \"bad.csv\"");
    let too_few = fx.def_with("few.toml", "min_total = 3", "min_total = 3000");
    let missing = fx.path("missing.toml");

    for (def, needle) in [
        (&missing, "missing.toml"),
        (&not_toml, "not valid TOML"),
        (&invalid, "name"),
        (&no_data, "gone.csv"),
        (&bad, "record 541"),
        (&too_few, "min_total"),
    ] {
        expect(
            &["index", "--def", s(def), "--out", s(&out)],
            exit::USAGE,
            needle,
        );
    }
    assert!(!out.exists(), "nothing written on bad input");
}

#[test]
fn row_2_bad_input_to_the_readers() {
    let fx = Fx::new();
    let missing = fx.path("missing.idx");
    let books = s(books_snapshot());
    expect(
        &["check", "--snapshot", s(&missing)],
        exit::USAGE,
        "missing.idx",
    );
    expect(
        &["query", "--snapshot", s(&missing), "alan"],
        exit::USAGE,
        "missing.idx",
    );
    expect_serve(&["--snapshot", s(&missing)], exit::USAGE, "missing.idx");
    // A query that cannot be answered as asked.
    let hostile = vec!["a"; 30].join(" ");
    expect(
        &["query", "--snapshot", books, &hostile],
        exit::USAGE,
        "too complex",
    );
    // Tokens files: missing, or holding no token.
    let empty = fx.path("empty-tokens");
    std::fs::write(&empty, "# nobody\n").unwrap();
    for (tokens, needle) in [
        (fx.path("no-tokens"), "no-tokens"),
        (empty, "holds no token"),
    ] {
        expect_serve(
            &["--snapshot", books, "--tokens-file", s(&tokens)],
            exit::USAGE,
            needle,
        );
    }
}

#[test]
fn row_3_an_input_that_exists_cannot_be_read() {
    assert_unreadable();
    let fx = Fx::new();
    let out = fx.path("out.idx");
    expect(
        &["index", "--def", UNREADABLE, "--out", s(&out)],
        exit::FAILURE,
        "cannot read index definition",
    );
    let data = fx.def_with(
        "unreadable-data.toml",
        "path = \"books.csv\"",
        &format!("path = \"{UNREADABLE}\""),
    );
    expect(
        &["index", "--def", s(&data), "--out", s(&out)],
        exit::FAILURE,
        "cannot read data source",
    );
    expect(
        &["check", "--snapshot", UNREADABLE],
        exit::FAILURE,
        "cannot read snapshot",
    );
    expect(
        &["query", "--snapshot", UNREADABLE, "alan"],
        exit::FAILURE,
        "cannot read snapshot",
    );
    expect_serve(
        &["--snapshot", UNREADABLE],
        exit::FAILURE,
        "cannot read snapshot",
    );
    expect_serve(
        &[
            "--snapshot",
            s(books_snapshot()),
            "--tokens-file",
            UNREADABLE,
        ],
        exit::FAILURE,
        "cannot read tokens file",
    );
}

#[test]
fn row_3_the_snapshot_cannot_be_written() {
    let fx = Fx::new();
    // Below a regular file: no directory to write into, root or not.
    let blocked = fx.path("books.csv").join("books.idx");
    expect(
        &["index", "--def", s(&fx.def()), "--out", s(&blocked)],
        exit::FAILURE,
        "cannot write snapshot",
    );
}

#[test]
fn row_3_the_address_cannot_be_bound() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    expect_serve(
        &["--snapshot", s(books_snapshot()), "--listen", &addr],
        exit::FAILURE,
        &format!("cannot listen on {addr}"),
    );
}

/// Whitespace collapsed, so wrapped help text compares with one line.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn help_prints_the_table() {
    for args in [
        vec!["--help"],
        vec!["index", "--help"],
        vec!["serve", "--help"],
        vec!["query", "--help"],
        vec!["check", "--help"],
    ] {
        let out = expect(&args, exit::OK, "");
        let help = String::from_utf8(out.stdout).unwrap();
        let (_, table) = help
            .split_once("Exit codes:")
            .unwrap_or_else(|| panic!("{args:?}: no exit codes in\n{help}"));
        let table = words(table);
        let want = words(
            &exit::TABLE
                .iter()
                .map(|(code, meaning)| format!("{code} {meaning}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        assert_eq!(table, want, "{args:?}");
    }
}

#[test]
fn readme_has_the_table() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let (_, section) = readme.split_once("\n## Exit codes\n").unwrap();
    let section = section.split("\n## ").next().unwrap();
    // Column 1 of each table row: searchd's.
    let mut rows: Vec<(u8, String)> = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, code, searchd, ..] = cells[..]
            && let Ok(code) = code.parse::<u8>()
            && !searchd.is_empty()
        {
            rows.push((code, searchd.to_owned()));
        }
    }
    let want: Vec<(u8, String)> = exit::TABLE
        .iter()
        .map(|(c, m)| (*c, (*m).to_owned()))
        .collect();
    assert_eq!(rows, want, "README's searchd column and exit::TABLE differ");
}
