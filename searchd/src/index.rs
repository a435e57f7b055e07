//! The opened index: a snapshot's sections wired up for searching, plus the
//! metadata stored with it. Opening validates structure and metadata and
//! builds a few small lookup tables; no per-document work happens here.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::def::{Boost, GoldenQuery, IdKind, Similarity, Weight};
use crate::phonetic;
use crate::snapshot::{Bytes, Kind, NO_CATEGORY, Snapshot, SnapshotError, U32s, U64s, Verify};
use crate::tokenizer::{Tokenizer, TokenizerSpec};

/// Index-wide metadata, stored as JSON in the snapshot's `Meta` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    pub id_kind: IdKind,
    pub documents: u64,
    pub searching: TokenizerSpec,
    pub categories: Vec<MetaCategory>,
    pub boosts: Vec<Boost>,
    pub golden: Vec<GoldenAnswer>,
    pub source: SourceInfo,
    pub searchd_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaCategory {
    pub name: String,
    pub qualifiers: Vec<String>,
    /// Whether the category has a partial index (else partial lookups use
    /// the exact one).
    pub partial: bool,
    pub similarity: Similarity,
    pub weight: Weight,
}

/// A golden query with the answer recorded at index time (duration 0).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoldenAnswer {
    pub query: GoldenQuery,
    pub total: u64,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    pub file: String,
    pub sha256: String,
}

/// The phonetic code of `word` under `similarity`, if it has one.
pub fn encode(similarity: Similarity, word: &str) -> Option<String> {
    match similarity {
        Similarity::None => None,
        Similarity::DoubleMetaphone { .. } => Some(phonetic::double_metaphone(word).0),
        Similarity::Metaphone { .. } => Some(phonetic::metaphone(word)),
        Similarity::Soundex { .. } => phonetic::soundex(word),
    }
}

/// One posting list inside the mapped file: ascending document numbers,
/// each a little-endian u32 (read as 4-byte words: loading one compiles to
/// a plain load, with no alignment to prove).
#[derive(Clone, Copy, Debug)]
pub struct PostingList<'a> {
    words: &'a [[u8; 4]],
}

impl<'a> PostingList<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> PostingList<'a> {
        PostingList {
            words: bytes.as_chunks::<4>().0,
        }
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        u32::from_le_bytes(self.words[i])
    }
    /// The raw words, for loops that read many (intersections).
    #[inline]
    pub fn words(&self) -> &'a [[u8; 4]] {
        self.words
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.words.iter().map(|&w| u32::from_le_bytes(w))
    }
}

/// A term -> posting list table (an exact or a partial index).
pub struct Postings {
    fst: fst::Map<Bytes>,
    starts: Starts,
    offsets: U64s,
    data: U32s,
}

/// The top three levels of a table's fst, decoded once at open. They are
/// its widest nodes, the costliest to decode, and every lookup passes
/// through them: terms of up to two bytes are found without decoding a
/// node, longer ones start three bytes down.
struct Starts {
    /// The term number of the empty term, if it is in the table.
    empty: Option<u64>,
    /// The term numbers of the one-byte terms, by byte.
    one: Box<[Option<u64>; 256]>,
    /// The term numbers of the two-byte terms (first byte high), sorted.
    two: Vec<(u16, u64)>,
    /// Per three-byte prefix (first byte highest): the output so far and
    /// the node it leads to, sorted by prefix.
    three: Vec<(u32, u64, fst::raw::CompiledAddr)>,
}

impl Starts {
    fn new(fst: &fst::raw::Fst<Bytes>) -> Starts {
        let root = fst.root();
        let mut one = Box::new([None; 256]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        // Transitions come in byte order, so every table is built sorted.
        for t in root.transitions() {
            let node = fst.node(t.addr);
            let out = t.out.value();
            if node.is_final() {
                one[usize::from(t.inp)] = Some(out.wrapping_add(node.final_output().value()));
            }
            for u in node.transitions() {
                let node = fst.node(u.addr);
                let out = out.wrapping_add(u.out.value());
                let prefix = u16::from(t.inp) << 8 | u16::from(u.inp);
                if node.is_final() {
                    two.push((prefix, out.wrapping_add(node.final_output().value())));
                }
                for v in node.transitions() {
                    let prefix = u32::from(prefix) << 8 | u32::from(v.inp);
                    three.push((prefix, out.wrapping_add(v.out.value()), v.addr));
                }
            }
        }
        Starts {
            empty: root.is_final().then(|| root.final_output().value()),
            one,
            two,
            three,
        }
    }
}

impl Postings {
    fn open(snap: &Snapshot, kinds: [Kind; 3], category: u32) -> Result<Postings, SnapshotError> {
        let fst = fst::Map::new(snap.section(kinds[0], category)?)
            .map_err(|e| snap.corrupt(format!("{:?} of category {category}: {e}", kinds[0])))?;
        let offsets = U64s(snap.section(kinds[1], category)?);
        let data = U32s(snap.section(kinds[2], category)?);
        if offsets.len() != fst.len() + 1 || offsets.get(fst.len()) != Some(data.len() as u64) {
            return Err(snap.corrupt(format!(
                "{:?} of category {category} does not match its terms",
                kinds[1]
            )));
        }
        let starts = Starts::new(fst.as_fst());
        Ok(Postings {
            fst,
            starts,
            offsets,
            data,
        })
    }

    /// [`fst::Map::get`], starting three bytes down (see [`Starts`]).
    pub fn get(&self, term: &str) -> Option<PostingList<'_>> {
        let starts = &self.starts;
        let (prefix, rest) = match *term.as_bytes() {
            [] => return starts.empty.and_then(|n| self.term(n)),
            [a] => return starts.one[usize::from(a)].and_then(|n| self.term(n)),
            [a, b] => {
                let prefix = u16::from(a) << 8 | u16::from(b);
                let i = starts.two.binary_search_by_key(&prefix, |e| e.0).ok()?;
                return self.term(starts.two[i].1);
            }
            [a, b, c, ref rest @ ..] => (u32::from_be_bytes([0, a, b, c]), rest),
        };
        let i = starts.three.binary_search_by_key(&prefix, |e| e.0).ok()?;
        let (_, mut out, addr) = starts.three[i];
        let fst = self.fst.as_fst();
        let mut node = fst.node(addr);
        for &b in rest {
            let t = node.transition(node.find_input(b)?);
            out = out.wrapping_add(t.out.value());
            node = fst.node(t.addr);
        }
        if !node.is_final() {
            return None;
        }
        self.term(out.wrapping_add(node.final_output().value()))
    }

    /// The list of term number `n`; `None` if the file is inconsistent.
    pub fn term(&self, n: u64) -> Option<PostingList<'_>> {
        let n = usize::try_from(n).ok()?;
        let (a, b) = (self.offsets.get(n)?, self.offsets.get(n + 1)?);
        let bytes = self
            .data
            .slice_bytes(usize::try_from(a).ok()?..usize::try_from(b).ok()?)?;
        Some(PostingList::new(bytes))
    }

    pub fn terms(&self) -> usize {
        self.fst.len()
    }
}

/// Similarity table: phonetic code -> list number -> similar words, each
/// stored as a u32 length and its UTF-8 bytes, in Picky's order.
struct SimilarTable {
    fst: fst::Map<Bytes>,
    offsets: U64s,
    words: Bytes,
}

impl SimilarTable {
    fn words(&self, code: &str) -> impl Iterator<Item = &str> {
        let range = self.fst.get(code).and_then(|n| {
            let n = usize::try_from(n).ok()?;
            Some((
                self.offsets.get(n)? as usize,
                self.offsets.get(n + 1)? as usize,
            ))
        });
        let bytes = range
            .and_then(|(a, b)| self.words.as_ref().get(a..b))
            .unwrap_or(&[]);
        let mut rest = bytes;
        std::iter::from_fn(move || {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let word = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            std::str::from_utf8(word).ok()
        })
    }
}

pub struct Category {
    pub name: String,
    pub exact: Postings,
    pub partial: Option<Postings>,
    pub similarity: Similarity,
    pub weight: Weight,
    similar: Option<SimilarTable>,
    /// `name` as a JSON string (answers label combinations with it).
    name_json: Vec<u8>,
}

/// Lists shorter than this get their logarithmic weight from a table.
const LOG_WEIGHTS: usize = 1024;

/// Picky's logarithmic weight of a list of `n` ids: `ln(n)` rounded to 3
/// places.
fn log_weight(n: usize) -> f64 {
    crate::ruby::round((n as f64).ln(), 3)
}

/// [`log_weight`] of the short lists most combinations have, computed once
/// (by the same function, so bit for bit the same).
static LOG_WEIGHT_TABLE: std::sync::LazyLock<Vec<f64>> =
    std::sync::LazyLock::new(|| (0..LOG_WEIGHTS).map(log_weight).collect());

impl Category {
    pub fn weight_of(&self, list: PostingList<'_>) -> f64 {
        match self.weight {
            Weight::Logarithmic => LOG_WEIGHT_TABLE
                .get(list.len())
                .copied()
                .unwrap_or_else(|| log_weight(list.len())),
            Weight::Constant { value } => value,
        }
    }

    /// [`Category::name`] as a JSON string.
    pub(crate) fn name_json(&self) -> &[u8] {
        &self.name_json
    }

    /// The words similar to phonetic `code`, best first.
    pub fn similar(&self, code: &str) -> impl Iterator<Item = &str> {
        self.similar.iter().flat_map(move |t| t.words(code))
    }
}

static NEXT_ENGINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// This thread's copy of the last engine's searching tokenizer. A cloned
    /// `Regex` has its own match-state pool, so server threads do not
    /// contend on the shared one.
    static TOKENIZER: std::cell::RefCell<Option<(u64, Tokenizer)>> = const { std::cell::RefCell::new(None) };
}

impl Engine {
    /// Runs `f` with a tokenizer owned by this thread.
    pub(crate) fn with_tokenizer<R>(&self, f: impl FnOnce(&Tokenizer) -> R) -> R {
        TOKENIZER.with(|cell| {
            let mut slot = cell.borrow_mut();
            match &*slot {
                Some((id, _)) if *id == self.id => {}
                _ => *slot = Some((self.id, self.tokenizer.clone())),
            }
            match &*slot {
                Some((_, t)) => f(t),
                None => f(&self.tokenizer),
            }
        })
    }
}

/// The document id table: ids pre-rendered as JSON, back to back, and
/// where each starts (u64 little-endian, one per document plus the end).
#[derive(Clone, Copy)]
pub(crate) struct Docs<'a> {
    offsets: &'a [[u8; 8]],
    bytes: &'a [u8],
}

impl<'a> Docs<'a> {
    /// Document `ord`'s id as JSON bytes (`null` past the table).
    #[inline]
    pub(crate) fn json(&self, ord: u32) -> &'a [u8] {
        let i = ord as usize;
        let range = match self.offsets.get(i..).and_then(|o| o.first_chunk::<2>()) {
            Some([a, b]) => u64::from_le_bytes(*a) as usize..u64::from_le_bytes(*b) as usize,
            None => return b"null",
        };
        self.bytes.get(range).unwrap_or(b"null")
    }
}

/// An opened index, ready to answer queries. Shared by all request tasks.
pub struct Engine {
    snapshot: Snapshot,
    meta: Meta,
    digest: String,
    pub(crate) tokenizer: Tokenizer,
    /// Unique per opened engine: keys the per-thread tokenizer copies.
    pub(crate) id: u64,
    pub(crate) categories: Vec<Category>,
    /// Qualifier -> category, sorted by qualifier (the last category
    /// naming a qualifier owns it, as in Picky). A handful of short
    /// strings: binary search beats hashing them.
    qualifiers: Vec<(String, usize)>,
    /// Boosts as category-number sequences.
    pub(crate) boosts: Vec<(Vec<usize>, f64)>,
    /// The index name as a JSON string (every allocation starts with it).
    name_json: Vec<u8>,
    doc_offsets: U64s,
    doc_bytes: Bytes,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.meta.name)
            .field("digest", &self.digest)
            .finish()
    }
}

impl Engine {
    pub fn open(path: &Path, verify: Verify) -> Result<Engine, SnapshotError> {
        Self::from_snapshot(Snapshot::open(path, verify)?)
    }

    /// Wires up the sections. A snapshot opened with [`Verify::Structure`]
    /// may hold damaged term tables that pass every structural check; the
    /// `fst` crate panics on some damaged nodes, so decoding them at open
    /// turns such a panic into [`SnapshotError::Corrupt`] here rather than
    /// a stuck start-up.
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Engine, SnapshotError> {
        let path = snapshot.path().to_owned();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::wire(snapshot)))
            .unwrap_or_else(|_| {
                Err(SnapshotError::Corrupt {
                    path,
                    why: "a term table is damaged (decoding it failed)".into(),
                })
            })
    }

    fn wire(snapshot: Snapshot) -> Result<Engine, SnapshotError> {
        let meta_bytes = snapshot.section(Kind::Meta, NO_CATEGORY)?;
        let meta: Meta = serde_json::from_slice(meta_bytes.as_ref())
            .map_err(|e| snapshot.corrupt(format!("metadata is not valid: {e}")))?;
        let tokenizer = meta
            .searching
            .compile()
            .map_err(|e| snapshot.corrupt(format!("searching tokenizer: {e}")))?;
        let mut categories = Vec::with_capacity(meta.categories.len());
        let mut qualifiers: Vec<(String, usize)> = Vec::new();
        for (i, mc) in meta.categories.iter().enumerate() {
            let c = i as u32;
            let exact = Postings::open(
                &snapshot,
                [Kind::ExactFst, Kind::ExactOffsets, Kind::ExactPostings],
                c,
            )?;
            let partial = if mc.partial {
                Some(Postings::open(
                    &snapshot,
                    [
                        Kind::PartialFst,
                        Kind::PartialOffsets,
                        Kind::PartialPostings,
                    ],
                    c,
                )?)
            } else {
                None
            };
            let similar = if mc.similarity != Similarity::None {
                let table = SimilarTable {
                    fst: fst::Map::new(snapshot.section(Kind::SimilarFst, c)?).map_err(|e| {
                        snapshot.corrupt(format!("similarity of category {c}: {e}"))
                    })?,
                    offsets: U64s(snapshot.section(Kind::SimilarOffsets, c)?),
                    words: snapshot.section(Kind::SimilarWords, c)?,
                };
                if table.offsets.len() != table.fst.len() + 1
                    || table.offsets.get(table.fst.len()) != Some(table.words.as_ref().len() as u64)
                {
                    return Err(snapshot.corrupt(format!(
                        "similarity of category {c} does not match its codes"
                    )));
                }
                Some(table)
            } else {
                None
            };
            for q in &mc.qualifiers {
                qualifiers.push((q.clone(), i));
            }
            let mut name_json = Vec::new();
            crate::ruby::write_json_str(&mc.name, &mut name_json);
            categories.push(Category {
                name_json,
                name: mc.name.clone(),
                exact,
                partial,
                similarity: mc.similarity,
                weight: mc.weight,
                similar,
            });
        }
        // A qualifier listed by two categories belongs to the one declared
        // last, as in Picky (its QualifierMapper overwrites, with a warning
        // that `searchd index` repeats). The sort is stable, so each run of
        // equal qualifiers is in declaration order: the entry kept takes
        // the category of each later one it absorbs.
        qualifiers.sort_by(|a, b| a.0.cmp(&b.0));
        qualifiers.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        let by_name: HashMap<&str, usize> = meta
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut boosts = Vec::with_capacity(meta.boosts.len());
        for b in &meta.boosts {
            let seq: Option<Vec<usize>> = b
                .categories
                .iter()
                .map(|n| by_name.get(n.as_str()).copied())
                .collect();
            let seq = seq.ok_or_else(|| snapshot.corrupt("a boost names an unknown category"))?;
            boosts.push((seq, b.value));
        }
        let doc_offsets = U64s(snapshot.section(Kind::DocOffsets, NO_CATEGORY)?);
        let doc_bytes = snapshot.section(Kind::DocBytes, NO_CATEGORY)?;
        if doc_offsets.len() as u64 != meta.documents + 1
            || doc_offsets.get(doc_offsets.len().saturating_sub(1))
                != Some(doc_bytes.as_ref().len() as u64)
        {
            return Err(snapshot.corrupt("document table does not match the document count"));
        }
        let digest = snapshot.digest_hex();
        let mut name_json = Vec::new();
        crate::ruby::write_json_str(&meta.name, &mut name_json);
        Ok(Engine {
            snapshot,
            meta,
            digest,
            tokenizer,
            id: NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            categories,
            qualifiers,
            boosts,
            name_json,
            doc_offsets,
            doc_bytes,
        })
    }

    /// The snapshot file (names it in messages).
    pub fn path(&self) -> &Path {
        self.snapshot.path()
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The category qualifier `q` names.
    pub(crate) fn qualifier(&self, q: &str) -> Option<usize> {
        self.qualifiers
            .binary_search_by(|(k, _)| k.as_str().cmp(q))
            .ok()
            .map(|i| self.qualifiers[i].1)
    }

    /// [`Engine::name`] as a JSON string.
    pub(crate) fn name_json(&self) -> &[u8] {
        &self.name_json
    }

    /// The snapshot's sha256 (hex).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Hashes the whole snapshot against its stored sha256 (see
    /// [`Snapshot::verify_checksum`]).
    pub fn verify_checksum(&self) -> Result<(), SnapshotError> {
        self.snapshot.verify_checksum()
    }

    pub fn documents(&self) -> u64 {
        self.meta.documents
    }

    pub fn category(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Document `ord`'s id as JSON bytes.
    pub fn doc_json(&self, ord: u32) -> &[u8] {
        self.docs().json(ord)
    }

    /// The document id table, for rendering many ids.
    pub(crate) fn docs(&self) -> Docs<'_> {
        Docs {
            offsets: self.doc_offsets.0.as_ref().as_chunks::<8>().0,
            bytes: self.doc_bytes.as_ref(),
        }
    }

    /// Replays the golden queries stored in the snapshot. Returns one
    /// message per query whose answer differs from the recorded one.
    pub fn check_golden(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for g in &self.meta.golden {
            match self.search(&g.query.query, g.query.ids, g.query.offset) {
                Ok(r) => {
                    let got = r.to_json_string(0.0);
                    if got != g.answer {
                        failures.push(format!(
                            "golden query {:?}: answer differs\n  recorded: {}\n  now:      {}",
                            g.query.query, g.answer, got
                        ));
                    } else if r.total < g.query.min_total {
                        failures.push(format!(
                            "golden query {:?}: {} results, fewer than min_total {}",
                            g.query.query, r.total, g.query.min_total
                        ));
                    }
                }
                Err(e) => failures.push(format!("golden query {:?}: {e}", g.query.query)),
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Writer, u32s_to_bytes, u64s_to_bytes};
    use std::path::Path;

    /// Lookups that start two bytes down find exactly what the fst finds:
    /// every term, every prefix of one, and misses, of every length.
    #[test]
    fn postings_find_what_the_fst_finds() {
        let mut terms: Vec<String> = [
            "", "a", "ab", "abc", "abd", "b", "ba", "bcd", "é", "éa", "zz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..300u32 {
            terms.push(format!(
                "{}{}",
                char::from(b'a' + (i % 26) as u8),
                i * 7919 % 1000
            ));
        }
        terms.sort();
        terms.dedup();
        let mut builder = fst::MapBuilder::memory();
        let (mut offsets, mut data) = (vec![0u64], Vec::new());
        for (n, t) in terms.iter().enumerate() {
            builder.insert(t, n as u64).unwrap();
            data.extend([n as u32, n as u32 + 1]);
            offsets.push(data.len() as u64);
        }
        let fst_bytes = builder.into_inner().unwrap();
        let mut w = Writer::default();
        w.add(Kind::ExactFst, 0, fst_bytes.clone());
        w.add(Kind::ExactOffsets, 0, u64s_to_bytes(&offsets));
        w.add(Kind::ExactPostings, 0, u32s_to_bytes(&data));
        let snap = Snapshot::from_bytes(Path::new("t.idx"), w.finish().0, Verify::Full).unwrap();
        let postings = Postings::open(
            &snap,
            [Kind::ExactFst, Kind::ExactOffsets, Kind::ExactPostings],
            0,
        )
        .unwrap();
        let map = fst::Map::new(fst_bytes).unwrap();
        let mut probes: Vec<String> = Vec::new();
        for t in &terms {
            for end in (0..=t.len()).filter(|&e| t.is_char_boundary(e)) {
                probes.push(t[..end].to_string());
            }
            probes.push(format!("{t}x"));
        }
        probes.extend(["q", "qq", "zzz", "é", "ée", "\u{0}"].map(String::from));
        for p in &probes {
            let expected = map.get(p).map(|n| vec![n as u32, n as u32 + 1]);
            let got = postings.get(p).map(|l| l.iter().collect::<Vec<_>>());
            assert_eq!(got, expected, "{p:?}");
        }
    }
}
