//! The payload a builder installs: one deterministic tar.zst.
//!
//! ```text
//! FORMAT payload.tar.zst (read by images/install.sh)
//!   bin/searchd          the searchd binary (0755)
//!   index/<name>.idx     the snapshot, named after its index (0644)
//!   etc/searchd.env      searchd's environment (0644)
//!   etc/kiln/logs.env    only with the recipe's [logs]: KILN_LOG_HOST,
//!                        KILN_LOG_PORT, KILN_LOG_PEER (0644); its presence
//!                        asks install.sh for the TLS forwarder
//!   etc/kiln/log-ca.pem  only with [logs]: the collector's CA (0644)
//!   entries sorted, mtime 0, uid/gid 0; zstd level 3
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The forwarder's settings in the payload (see the format above).
pub const LOG_SETTINGS: &str = "etc/kiln/logs.env";
/// The collector's CA in the payload.
pub const LOG_CA: &str = "etc/kiln/log-ca.pem";

/// One file to put in the payload.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the payload, e.g. `bin/searchd`.
    pub name: String,
    pub source: PathBuf,
    pub executable: bool,
}

struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the payload to `out`; returns its sha256 and size.
pub fn write(entries: &[Entry], out: &Path) -> io::Result<(String, u64)> {
    let mut entries = entries.to_vec();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let file = File::create(out)?;
    let w = Hashing {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut tar = tar::Builder::new(zstd::Encoder::new(w, cloud::local::pack::ZSTD_LEVEL)?);
    let mut dirs: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.rsplit_once('/').map(|(d, _)| d))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, d, io::empty())?;
    }
    for e in &entries {
        let f = File::open(&e.source)?;
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(if e.executable { 0o755 } else { 0o644 });
        h.set_size(f.metadata()?.len());
        tar.append_data(&mut h, &e.name, f)?;
    }
    let mut w = tar.into_inner()?.finish()?;
    w.flush()?;
    let sha = kiln_common::hex(&w.hash.clone().finalize());
    let bytes = w.bytes;
    w.inner
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?
        .sync_all()?;
    Ok((sha, bytes))
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Names are ASCII constants here; a failure would be a bug, not input.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}
