//! The snapshot file: one immutable, checksummed file per index, mmapped at
//! start and never parsed into per-document heap objects.
//!
//! ```text
//! FORMAT (all integers little-endian)
//!   header   "KILNIDX\0"  magic, 8 bytes
//!            u32          format version (VERSION)
//!            u32          section count N
//!            N x entry    u32 kind, u32 category, u64 offset, u64 length
//!   payload  sections, each starting at an 8-byte aligned offset
//!   trailer  [u8; 32]     sha256 of every byte before the trailer
//!            "KILNSUM\0"  trailer magic, 8 bytes
//! ```
//!
//! The sha256 in the trailer is the snapshot's digest (`/version`'s
//! `index_digest`). Section kinds are listed in [`Kind`]; `category` is the
//! category's position in the metadata, or `u32::MAX` for index-wide sections.
//! Term tables are an `fst` map (term -> byte offset of its posting list);
//! a category's exact and partial tables share one section of compressed
//! lists (format: [`crate::postings`]). Similarity tables map a phonetic code to a
//! list number whose words are stored inline, so opening needs no lookups.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"KILNIDX\0";
pub const TRAILER_MAGIC: &[u8; 8] = b"KILNSUM\0";
/// 2: Ruby's lowercasing (every capital sigma to `σ`) and Picky's
/// last-declared qualifier owner; a version 1 snapshot may hold words a
/// version 2 query can no longer reach, so it is refused (rebuild it).
/// 3: compressed posting lists, one section per category shared by its
/// exact and partial tables (see [`crate::postings`]).
pub const VERSION: u32 = 3;
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 24;
const TRAILER_LEN: usize = 40;
/// No real index has more sections than this; a larger count is corruption.
const MAX_SECTIONS: u32 = 1 << 16;
pub const NO_CATEGORY: u32 = u32::MAX;

/// Section kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// JSON metadata: definition, tokenizers, golden answers.
    Meta = 1,
    /// u64 offsets into `DocBytes`, one per document plus one end.
    DocOffsets = 2,
    /// Each document's id, pre-rendered as JSON.
    DocBytes = 3,
    /// Exact words: term -> byte offset of its list in `Lists`.
    ExactFst = 10,
    /// The category's posting lists (format: [`crate::postings`]), each
    /// distinct list once.
    Lists = 13,
    /// Exact words whose list is not ascending (documents merged from a
    /// repeated id): term -> byte offset of its Picky order in `Orders`.
    ExactOrder = 14,
    /// The Picky orders of `ExactOrder` and `PartialOrder` (see
    /// [`crate::postings::encode_order`]).
    Orders = 15,
    /// Partial words: term -> byte offset of its list in `Lists`.
    PartialFst = 20,
    /// As `ExactOrder`, for partial words.
    PartialOrder = 24,
    /// Similarity: phonetic code -> list number.
    SimilarFst = 30,
    SimilarOffsets = 31,
    /// The similar words (u32 length + UTF-8 each), in Picky's order.
    SimilarWords = 32,
    /// A faceted category's exact words (u32 length + UTF-8 each) in the
    /// order Picky first met them (its facets' order).
    FacetWords = 40,
    /// A search over several indexes: index `category` of the search, a
    /// whole snapshot of its own (header, sections, trailer) nested here.
    Index = 50,
}

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is truncated ({len} bytes; {why})")]
    Truncated {
        path: PathBuf,
        len: u64,
        why: String,
    },
    #[error("{path} is not a kiln snapshot (bad magic number)")]
    BadMagic { path: PathBuf },
    #[error("snapshot {path} has format version {found}; this searchd reads version {VERSION}")]
    BadVersion { path: PathBuf, found: u32 },
    #[error("snapshot {path} is corrupt: checksum mismatch (stored {stored}, computed {computed})")]
    Checksum {
        path: PathBuf,
        stored: String,
        computed: String,
    },
    #[error("snapshot {path} is corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },
}

/// How much of the file to verify when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Structure and the sha256 over the whole file.
    Full,
    /// Structure only (header, section table, trailer); the checksum is
    /// trusted. For tools that verified the file before.
    Structure,
}

/// What a snapshot's bytes live in: the mmapped file, or memory while
/// `searchd index` answers the golden queries before writing the file.
pub enum Backing {
    Mmap(Mmap),
    Memory(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Memory(v) => v,
        }
    }
}

/// A read-only view of one section of the snapshot. Cheap to clone.
#[derive(Clone)]
pub struct Bytes {
    map: Arc<Backing>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({:?})", self.range)
    }
}

/// An opened, structurally valid snapshot.
pub struct Snapshot {
    path: PathBuf,
    map: Arc<Backing>,
    /// Where in `map` this snapshot lies (all of it, unless nested).
    whole: Range<usize>,
    sections: Vec<(u32, u32, Range<usize>)>,
    digest: [u8; 32],
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("path", &self.path)
            .field("digest", &self.digest_hex())
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Compares the sha256 of `body` with the digest stored in the trailer.
fn check_sum(path: &Path, body: &[u8], stored: &[u8; 32]) -> Result<(), SnapshotError> {
    let computed: [u8; 32] = Sha256::digest(body).into();
    if &computed != stored {
        return Err(SnapshotError::Checksum {
            path: path.to_owned(),
            stored: hex(stored),
            computed: hex(&computed),
        });
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Snapshot {
    pub fn open(path: &Path, verify: Verify) -> Result<Snapshot, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < (HEADER_LEN + TRAILER_LEN) as u64 {
            if len >= 8 && !is_magic_prefix(&file) {
                return Err(SnapshotError::BadMagic {
                    path: path.to_owned(),
                });
            }
            return Err(SnapshotError::Truncated {
                path: path.to_owned(),
                len,
                why: "shorter than header and trailer".into(),
            });
        }
        // SAFETY: the snapshot is an immutable file: searchd never writes
        // it, and writers (`searchd index`, bake) create a new file and
        // rename it into place, so the mapped bytes do not change under us.
        // Every read below is bounds-checked against the mapping.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_backing(path, Backing::Mmap(map), verify)
    }

    /// Opens a snapshot held in memory; `path` only names it in messages.
    pub fn from_bytes(
        path: &Path,
        bytes: Vec<u8>,
        verify: Verify,
    ) -> Result<Snapshot, SnapshotError> {
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(SnapshotError::Truncated {
                path: path.to_owned(),
                len: bytes.len() as u64,
                why: "shorter than header and trailer".into(),
            });
        }
        Self::from_backing(path, Backing::Memory(bytes), verify)
    }

    fn from_backing(path: &Path, map: Backing, verify: Verify) -> Result<Snapshot, SnapshotError> {
        let map = Arc::new(map);
        let whole = 0..map.len();
        Self::within(path, map, whole, verify)
    }

    /// The snapshot nested in section `(kind, category)` (an index of a
    /// search, [`Kind::Index`]): its ranges stay offsets into the same
    /// mapping. Its own sha256 is checked with `verify` (the enclosing
    /// file's covers it too).
    pub fn nested(
        &self,
        kind: Kind,
        category: u32,
        verify: Verify,
    ) -> Result<Snapshot, SnapshotError> {
        let range = self.section(kind, category)?.range;
        if range.len() < HEADER_LEN + TRAILER_LEN {
            return Err(self.corrupt(format!(
                "section {kind:?} {category} is too short to hold a snapshot"
            )));
        }
        Self::within(&self.path, self.map.clone(), range, verify)
    }

    /// Opens the snapshot in `map[range]` (at least header and trailer
    /// long); section ranges are kept as offsets into `map`.
    fn within(
        path: &Path,
        map: Arc<Backing>,
        range: Range<usize>,
        verify: Verify,
    ) -> Result<Snapshot, SnapshotError> {
        let base = range.start;
        let b: &[u8] = &map[range];
        let len = b.len();
        let corrupt = |why: String| SnapshotError::Corrupt {
            path: path.to_owned(),
            why,
        };
        if &b[..8] != MAGIC {
            return Err(SnapshotError::BadMagic {
                path: path.to_owned(),
            });
        }
        let version = u32_at(b, 8);
        if &b[len - 8..] != TRAILER_MAGIC {
            // A file cut short loses its trailer first: say so rather than
            // blaming the version.
            return Err(SnapshotError::Truncated {
                path: path.to_owned(),
                len: len as u64,
                why: "trailer missing".into(),
            });
        }
        if version != VERSION {
            return Err(SnapshotError::BadVersion {
                path: path.to_owned(),
                found: version,
            });
        }
        let body_end = len - TRAILER_LEN;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[body_end..body_end + 32]);
        if verify == Verify::Full {
            check_sum(path, &b[..body_end], &digest)?;
        }
        let count = u32_at(b, 12);
        if count > MAX_SECTIONS {
            return Err(corrupt(format!("section count {count} is implausible")));
        }
        let table_end = HEADER_LEN + count as usize * ENTRY_LEN;
        if table_end > body_end {
            return Err(corrupt(format!(
                "section table of {count} entries runs past the end"
            )));
        }
        let mut sections = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = HEADER_LEN + i * ENTRY_LEN;
            let (kind, cat) = (u32_at(b, at), u32_at(b, at + 4));
            let (off, slen) = (u64_at(b, at + 8), u64_at(b, at + 16));
            let end = off.checked_add(slen);
            match end {
                Some(end) if off >= table_end as u64 && end <= body_end as u64 => {
                    sections.push((kind, cat, base + off as usize..base + end as usize));
                }
                _ => {
                    return Err(corrupt(format!(
                        "section {i} (kind {kind}) at {off}+{slen} lies outside the payload"
                    )));
                }
            }
        }
        Ok(Snapshot {
            path: path.to_owned(),
            map,
            whole: base..base + len,
            sections,
            digest,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole-file sha256 check that [`Verify::Structure`] skipped: for
    /// a server that starts on the structure check and hashes afterwards.
    pub fn verify_checksum(&self) -> Result<(), SnapshotError> {
        let b: &[u8] = &self.map[self.whole.clone()];
        check_sum(&self.path, &b[..b.len() - TRAILER_LEN], &self.digest)
    }

    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }

    pub fn len(&self) -> usize {
        self.whole.len()
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// A section's bytes, or a `Corrupt` error naming what is missing.
    pub fn section(&self, kind: Kind, category: u32) -> Result<Bytes, SnapshotError> {
        self.sections
            .iter()
            .find(|(k, c, _)| *k == kind as u32 && *c == category)
            .map(|(_, _, r)| Bytes {
                map: self.map.clone(),
                range: r.clone(),
            })
            .ok_or_else(|| SnapshotError::Corrupt {
                path: self.path.clone(),
                why: format!("section {kind:?} for category {category} is missing"),
            })
    }

    /// Every section as `(kind, category, byte range in the file)`, in
    /// table order: for tools and tests that look at the layout (the
    /// damage fuzzer aims inside sections with it).
    pub fn sections(&self) -> impl Iterator<Item = (u32, u32, Range<usize>)> + '_ {
        self.sections.iter().cloned()
    }

    pub fn has_section(&self, kind: Kind, category: u32) -> bool {
        self.sections
            .iter()
            .any(|(k, c, _)| *k == kind as u32 && *c == category)
    }

    pub fn corrupt(&self, why: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            why: why.into(),
        }
    }
}

fn is_magic_prefix(mut file: &File) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    file.read_exact(&mut head).is_ok() && &head == MAGIC
}

/// Builds a snapshot in memory section by section, then writes it
/// atomically (temporary file, fsync, rename).
#[derive(Default)]
pub struct Writer {
    sections: Vec<(u32, u32, Vec<u8>)>,
}

impl Writer {
    pub fn add(&mut self, kind: Kind, category: u32, bytes: Vec<u8>) {
        self.sections.push((kind as u32, category, bytes));
    }

    /// Removes the last section added (used to swap the metadata).
    pub fn pop(&mut self) {
        self.sections.pop();
    }

    /// Serialises the whole file and returns it with its digest.
    pub fn finish(&self) -> (Vec<u8>, [u8; 32]) {
        let count = self.sections.len();
        let table_end = HEADER_LEN + count * ENTRY_LEN;
        let payload: usize = self.sections.iter().map(|(_, _, b)| b.len() + 8).sum();
        let mut out = Vec::with_capacity(table_end + payload + TRAILER_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        let mut offset = align8(table_end);
        for (kind, cat, bytes) in &self.sections {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&cat.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            offset = align8(offset + bytes.len());
        }
        for (_, _, bytes) in &self.sections {
            out.resize(align8(out.len()), 0);
            out.extend_from_slice(bytes);
        }
        let digest: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&digest);
        out.extend_from_slice(TRAILER_MAGIC);
        (out, digest)
    }

    /// Writes the file to `path` atomically; returns the digest.
    pub fn write_to(self, path: &Path) -> Result<[u8; 32], std::io::Error> {
        let (bytes, digest) = self.finish();
        write_atomically(path, &bytes)?;
        Ok(digest)
    }
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

pub use kiln_common::write_atomically;

/// Little-endian u64 array view over a section. Reads are checked: an
/// index past the end is `None`, never a panic.
#[derive(Clone, Debug)]
pub struct U64s(pub Bytes);

impl U64s {
    pub fn len(&self) -> usize {
        self.0.as_ref().len() / 8
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, i: usize) -> Option<u64> {
        let at = i.checked_mul(8)?;
        let word = self.0.as_ref().get(at..)?.first_chunk::<8>()?;
        Some(u64::from_le_bytes(*word))
    }
}

pub fn u64s_to_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::default();
        w.add(Kind::Meta, NO_CATEGORY, b"{\"a\":1}".to_vec());
        w.add(Kind::DocOffsets, 0, u64s_to_bytes(&[1, 2, 3]));
        w.finish().0
    }

    fn open_bytes(bytes: &[u8], verify: Verify) -> Result<Snapshot, SnapshotError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.idx");
        std::fs::write(&p, bytes).unwrap();
        Snapshot::open(&p, verify)
    }

    #[test]
    fn round_trip() {
        let s = open_bytes(&sample(), Verify::Full).unwrap();
        assert_eq!(
            s.section(Kind::Meta, NO_CATEGORY).unwrap().as_ref(),
            b"{\"a\":1}"
        );
        let p = U64s(s.section(Kind::DocOffsets, 0).unwrap());
        assert_eq!((p.len(), p.get(2), p.get(3)), (3, Some(3), None));
        assert!(s.section(Kind::PartialFst, 0).is_err());
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(
                open_bytes(&bad, Verify::Full).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let good = sample();
        for n in 0..good.len() {
            let err = open_bytes(&good[..n], Verify::Full).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("truncated") || msg.contains("magic"),
                "cut at {n}: {msg}"
            );
        }
    }

    #[test]
    fn wrong_version_and_magic_are_named() {
        let mut bad = sample();
        bad[8] = 9;
        let msg = open_bytes(&bad, Verify::Structure).unwrap_err().to_string();
        assert!(msg.contains("format version 9"), "{msg}");
        let mut bad = sample();
        bad[0] = b'X';
        let msg = open_bytes(&bad, Verify::Full).unwrap_err().to_string();
        assert!(msg.contains("not a kiln snapshot"), "{msg}");
    }
}
