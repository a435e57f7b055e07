//! The fully static `searchd` of `make static`: its ELF program headers
//! must have no interpreter (PT_INTERP) and its dynamic section, if any
//! (static-pie), no needed libraries (DT_NEEDED); and it must index, check
//! and serve the books example on its own.
//!
//! The binary is `$KILN_STATIC_SEARCHD` (the Makefile exports it), else
//! `target/x86_64-unknown-linux-gnu/release/searchd` in the workspace. When
//! neither exists the test fails: run `make static` first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn static_binary() -> PathBuf {
    let hint = "build it with `make static` (RUSTFLAGS=\"-C target-feature=+crt-static\" \
                cargo build --release -p searchd --target x86_64-unknown-linux-gnu)";
    let path = match std::env::var_os("KILN_STATIC_SEARCHD") {
        Some(p) => PathBuf::from(p),
        None => workspace().join("target/x86_64-unknown-linux-gnu/release/searchd"),
    };
    assert!(
        path.is_file(),
        "no static searchd at {} (KILN_STATIC_SEARCHD {}): {hint}",
        path.display(),
        if std::env::var_os("KILN_STATIC_SEARCHD").is_some() {
            "is set"
        } else {
            "is not set"
        },
    );
    path
}

/// What the program headers say about linking.
#[derive(Debug, Default, PartialEq, Eq)]
struct Linking {
    interpreter: Option<String>,
    needed: usize,
    has_dynamic: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads an x86_64 ELF file's program headers (ELF64, little-endian).
fn linking(elf: &[u8]) -> Result<Linking, String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    if u16_at(elf, 0x12) != 62 {
        return Err("not an x86_64 binary".into());
    }
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    if phentsize < 56 || phoff + phnum * phentsize > elf.len() {
        return Err("program header table out of bounds".into());
    }
    let mut out = Linking::default();
    for i in 0..phnum {
        let ph = &elf[phoff + i * phentsize..phoff + (i + 1) * phentsize];
        let (p_type, offset, filesz) = (
            u32_at(ph, 0),
            u64_at(ph, 8) as usize,
            u64_at(ph, 32) as usize,
        );
        let seg = elf
            .get(offset..offset + filesz)
            .ok_or("segment out of bounds")?;
        match p_type {
            PT_INTERP => {
                let s = seg.split(|&b| b == 0).next().unwrap_or(&[]);
                out.interpreter = Some(String::from_utf8_lossy(s).into_owned());
            }
            PT_DYNAMIC => {
                out.has_dynamic = true;
                for entry in seg.chunks_exact(16) {
                    match u64_at(entry, 0) {
                        DT_NULL => break,
                        DT_NEEDED => out.needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[test]
fn the_elf_reader_sees_a_dynamic_binary() {
    // The test binary itself is dynamically linked: the reader must see it.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let l = linking(&me).unwrap();
    assert!(l.interpreter.is_some(), "{l:?}");
    assert!(l.needed > 0, "{l:?}");
    assert!(linking(b"#!/bin/sh\n").is_err());
}

#[test]
fn static_searchd_has_no_interpreter_and_no_needed_libraries() {
    let bin = static_binary();
    let elf = std::fs::read(&bin).unwrap();
    let l = linking(&elf).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert_eq!(
        l.interpreter,
        None,
        "{} asks for a dynamic loader",
        bin.display()
    );
    assert_eq!(l.needed, 0, "{} needs shared libraries", bin.display());
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn static_searchd_indexes_checks_and_serves_the_books() {
    let bin = static_binary();
    let version = run(&bin, &["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "the static binary is from another version ({version:?}): run `make static`"
    );
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("books.idx");
    let def = workspace().join("images/books/index.toml");
    let digest = run(
        &bin,
        &[
            "index",
            "--def",
            def.to_str().unwrap(),
            "--out",
            snapshot.to_str().unwrap(),
        ],
    );
    let checked = run(&bin, &["check", "--snapshot", snapshot.to_str().unwrap()]);
    assert_eq!(digest.trim(), checked.trim());

    let mut child = Command::new(&bin)
        .args(["serve", "--snapshot", snapshot.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("searchd: listening on ") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/ready") != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(get(addr, "/books?query=alan"), Some(200));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
