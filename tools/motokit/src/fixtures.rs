//! A real payload for builder tests: the searchd binary, the books
//! snapshot it builds, and searchd's config, in the layout
//! `images/install.sh` reads (see bake's payload module).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{static_searchd, workspace_root};

/// What `cloud::Payload` holds, without depending on `cloud`.
#[derive(Debug, Clone)]
pub struct PayloadFile {
    pub archive: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// `images/install.sh`.
pub fn install_script() -> PathBuf {
    workspace_root().join("images/install.sh")
}

/// Builds the books snapshot with the static searchd and packs a payload
/// into `dir`.
pub fn books_payload(dir: &Path) -> PayloadFile {
    let searchd = static_searchd();
    let root = workspace_root();
    let idx = dir.join("books.idx");
    let out = Command::new(&searchd)
        .arg("index")
        .arg("--def")
        .arg(root.join("images/books/index.toml"))
        .arg("--out")
        .arg(&idx)
        .output()
        .expect("run searchd index");
    assert!(
        out.status.success(),
        "searchd index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = dir.join("payload.tar.zst");
    let file = std::fs::File::create(&archive).expect("create payload");
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3).expect("zstd").auto_finish());
    for (name, src, mode) in [
        ("bin/searchd", searchd.as_path(), 0o755),
        ("etc/searchd.env", &root.join("images/searchd.env"), 0o644),
        ("index/books.idx", idx.as_path(), 0o644),
    ] {
        let data = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..])
            .expect("tar append");
    }
    tar.into_inner().expect("finish payload");
    let mut f = std::fs::File::open(&archive).expect("open payload");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read payload");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    PayloadFile {
        archive,
        sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        bytes,
    }
}
