//! Deterministic archives. A rootfs packed twice from the same files gives
//! the same bytes (and so the same image id): entries sorted by path, mtime
//! 0, uid/gid 0, modes normalised to 0755/0644, zstd level fixed,
//! single-threaded.
//!
//! ```text
//! FORMAT rootfs.tar.zst
//!   zstd frame (level 3) of a POSIX ustar/GNU tar stream
//!   entries  "./"-less relative paths, parents before children, sorted
//!   dirs     0755, files 0755 if any exec bit was set else 0644,
//!            symlinks kept as links, everything else refused
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const ZSTD_LEVEL: i32 = 3;

pub(crate) use kiln_common::{hex, sha256_file};

/// A writer that hashes and counts what passes through it.
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

/// Every path under `root`, relative, parents before children, sorted.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        // Depth-first in sorted order: push in reverse so the smallest name
        // is visited first.
        let mut dirs = Vec::new();
        for name in names {
            let p = rel.join(&name);
            let meta = std::fs::symlink_metadata(root.join(&p))?;
            out.push(p.clone());
            if meta.is_dir() {
                dirs.push(p);
            }
        }
        stack.extend(dirs.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

/// Packs `root` into `out` (tar + zstd) deterministically. Returns the
/// archive's sha256 and size.
pub fn pack_dir(root: &Path, out: &Path) -> io::Result<(String, u64)> {
    let file = File::create(out)?;
    let hashing = Hashing {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let enc = zstd::Encoder::new(hashing, ZSTD_LEVEL)?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    for rel in walk(root)? {
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full)?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, &rel, io::empty())?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            let target = std::fs::read_link(&full)?;
            tar.append_link(&mut h, &rel, &target)?;
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            tar.append_data(&mut h, &rel, File::open(&full)?)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a file, directory or symlink", full.display()),
            ));
        }
    }
    let enc = tar.into_inner()?;
    let mut hashing = enc.finish()?;
    hashing.flush()?;
    let sha = hex(&hashing.hash.clone().finalize());
    let bytes = hashing.bytes;
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    file.sync_all()?;
    Ok((sha, bytes))
}

/// Unpacks a `.tar` or zstd-compressed tar (detected by magic) into `dir`.
/// The tar crate refuses entries that would escape `dir`.
pub fn unpack(archive: &Path, dir: &Path) -> io::Result<()> {
    let mut f = BufReader::new(File::open(archive)?);
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    let f = BufReader::new(File::open(archive)?);
    let reader: Box<dyn Read> = if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::Decoder::with_buffer(f)?)
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    ar.unpack(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("b/c/d"), "d").unwrap();
        std::os::unix::fs::symlink("../a.txt", root.join("b/link")).unwrap();
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let (r1, r2) = (t.path().join("r1"), t.path().join("r2"));
        tree(&r1);
        tree(&r2);
        // Different mtimes must not matter.
        std::fs::write(r2.join("a.txt"), "a").unwrap();
        let (s1, _) = pack_dir(&r1, &t.path().join("1.tar.zst")).unwrap();
        let (s2, n2) = pack_dir(&r2, &t.path().join("2.tar.zst")).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(
            sha256_file(&t.path().join("2.tar.zst")).unwrap(),
            (s2.clone(), n2)
        );
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack(&t.path().join("1.tar.zst"), &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("b/c/d")).unwrap(), "d");
        assert_eq!(
            std::fs::read_link(out.join("b/link")).unwrap(),
            Path::new("../a.txt")
        );
    }
}
