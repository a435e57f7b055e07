//! The opened index: a snapshot's sections wired up for searching, plus the
//! metadata stored with it. Opening validates structure and metadata, walks
//! every term table's fst once (see [`check_fst`]) and builds a few small
//! lookup tables; no per-document work happens here.
//!
//! What a query reads of the snapshot is safe on any bytes: the fst nodes a
//! lookup can reach were all decoded at open, and every other read (posting
//! lists, similar words, document ids) goes through a checked accessor, so
//! a bad offset reads as a missing term or a `null` id, never past a slice.
//! Damaged posting lists (`postings.rs`) decode to wrong numbers or end
//! early, and none is taken to be longer than the index has documents;
//! numbers out of order or past the table give wrong answers, not panics:
//! the set operations (`search/sets.rs`) index only below the lengths they
//! were given, and rendering ([`Docs::json`]) checks the id table. Proving
//! order and range at open would decode every list (tens of MB); the
//! sha256 (before `/ready`, or in the background) is what proves the
//! answers.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::def::{Boost, GoldenQuery, IdKind, Number, Ranged, SearchOptions, Similarity, Weight};
use crate::phonetic;
use crate::snapshot::{Bytes, Kind, NO_CATEGORY, Snapshot, SnapshotError, U64s, Verify};
use crate::tokenizer::{Tokenizer, TokenizerSpec};

/// Index-wide metadata, stored as JSON in the snapshot's `Meta` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    /// What answers name the index, if not `name` (Picky's
    /// `result_identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_identifier: Option<String>,
    pub id_kind: IdKind,
    pub documents: u64,
    pub searching: TokenizerSpec,
    pub categories: Vec<MetaCategory>,
    pub boosts: Vec<Boost>,
    /// Picky's Search options (absent: Picky's defaults).
    #[serde(default)]
    pub search: SearchOptions,
    pub golden: Vec<GoldenAnswer>,
    pub source: SourceInfo,
    /// A search over several indexes: their names, in order, each a
    /// snapshot nested in a [`Kind::Index`] section (the search has no
    /// categories or documents of its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<String>,
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
    /// Whether the snapshot holds its facet words.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub facets: bool,
    /// Whether some lists are not ascending (documents merged from a
    /// repeated id) and have their Picky order stored beside them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
    /// A ranged category: its words are grid cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranged: Option<Ranged>,
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

/// Each category name with its number.
fn numbers_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    names.enumerate().map(|(i, n)| (n, i)).collect()
}

/// Boosts as category-number sequences; `None` if `category` gives no
/// number for a name.
fn resolve_boosts(
    boosts: &[Boost],
    category: impl Fn(&str) -> Option<usize>,
) -> Option<Vec<(Vec<usize>, Number)>> {
    boosts
        .iter()
        .map(|b| {
            let seq: Option<Vec<usize>> = b.categories.iter().map(|n| category(n)).collect();
            Some((seq?, b.value))
        })
        .collect()
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

pub use crate::postings::PostingList;

/// A term -> posting list table (an exact or a partial index): the fst
/// maps each term to its list's byte offset in the category's lists
/// section (which the exact and partial tables share, see
/// [`crate::postings`]).
pub struct Postings {
    fst: fst::Map<Bytes>,
    starts: Starts,
    lists: Bytes,
    /// Terms whose list is not ascending: term -> its Picky order in the
    /// orders section.
    orders: Option<(fst::Map<Bytes>, Bytes)>,
    /// The index's document count: no sound list is longer, so a damaged
    /// length cannot make a query decode more than this.
    documents: usize,
}

/// The top three levels of a table's fst, decoded once at open. They are
/// its widest nodes, the costliest to decode, and every lookup passes
/// through them: terms of up to two bytes are found without decoding a
/// node, longer ones start three bytes down.
struct Starts {
    /// The list offset of the empty term, if it is in the table.
    empty: Option<u64>,
    /// The list offsets of the one-byte terms, by byte.
    one: Box<[Option<u64>; 256]>,
    /// The list offsets of the two-byte terms (first byte high), sorted.
    two: Vec<(u16, u64)>,
    /// Per three-byte prefix (first byte highest): the output so far and
    /// the node it leads to, sorted by prefix.
    three: Vec<(u32, u64, fst::raw::CompiledAddr)>,
}

impl Starts {
    fn new<D: AsRef<[u8]>>(fst: &fst::raw::Fst<D>) -> Starts {
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

/// The format version of the fsts `searchd index` writes (fst 0.4's); the
/// node layout [`check_fst_node`] knows is this version's.
const FST_VERSION: u64 = 3;
/// A node with more transitions than this carries a 256-byte index from
/// input byte to transition (fst's `TRANS_INDEX_THRESHOLD`).
const FST_INDEX_THRESHOLD: usize = 32;
/// fst's `EMPTY_ADDRESS`: the final node without transitions or output,
/// which has no bytes.
const FST_EMPTY: usize = 0;

/// Opens section `kind` of `category` as an fst map and checks it (see
/// [`check_fst`]); the error names the section.
fn open_fst(snap: &Snapshot, kind: Kind, category: u32) -> Result<fst::Map<Bytes>, SnapshotError> {
    let damaged = |e: String| snap.corrupt(format!("{kind:?} of category {category}: {e}"));
    let map = fst::Map::new(snap.section(kind, category)?).map_err(|e| damaged(e.to_string()))?;
    check_fst(map.as_fst()).map_err(damaged)?;
    Ok(map)
}

/// Walks every node reachable from the root of `fst` once and proves what
/// lookups rely on: every byte decoding a node reads lies inside the fst,
/// with pack sizes fst accepts (it indexes its bytes unchecked and would
/// panic otherwise), and every transition leads to a lower address (so
/// there are no cycles). It also checks what makes answers right rather
/// than safe and costs nothing extra: inputs strictly increasing (so the
/// keys are, as `fst::Map` streams them) and the input index of wide nodes
/// agreeing with the inputs. A term number out of range is caught where it
/// is used ([`Postings::term`], [`SimilarTable::words`]), and no output sum
/// is computed with fst's overflow-checked addition ([`fst_get`]).
///
/// Lookups decode only nodes reachable from the root, so after this
/// nothing a query does with the fst can read out of bounds. Work: one
/// decoding per node, a bit per byte of fst to remember the visited ones.
fn check_fst<D: AsRef<[u8]>>(fst: &fst::raw::Fst<D>) -> Result<(), String> {
    let b = fst.as_bytes();
    let len = b.len();
    // `fst::Map::new` refused anything shorter than 36 bytes.
    let word = |at: usize| {
        b.get(at..)
            .and_then(|s| s.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
    };
    let version = word(0).ok_or("too short")?;
    if version != FST_VERSION {
        return Err(format!(
            "fst format version {version}, expected {FST_VERSION}"
        ));
    }
    // Version 3 ends with the key count, the root address and a checksum;
    // the root node's last byte is right before them (an fst holding just
    // the empty key with output 0 has the bytes-less root `FST_EMPTY`).
    let root = word(len.checked_sub(12).ok_or("too short")?).ok_or("too short")?;
    let root = usize::try_from(root).map_err(|_| "root address out of range")?;
    let expected = if root == FST_EMPTY {
        Some(36)
    } else {
        root.checked_add(21)
    };
    if expected != Some(len) {
        return Err(format!(
            "root address {root} does not end the fst ({len} bytes)"
        ));
    }
    let mut seen = vec![0u64; len.div_ceil(64)];
    let mut todo = vec![root];
    seen[root / 64] |= 1 << (root % 64);
    while let Some(addr) = todo.pop() {
        check_fst_node(b, addr, |target| {
            // `check_fst_node` proved `target < addr`.
            let (word, bit) = (target / 64, 1 << (target % 64));
            if seen[word] & bit == 0 {
                seen[word] |= bit;
                todo.push(target);
            }
        })?;
        if cfg!(debug_assertions) {
            // Tests and the fuzzers: the fst crate decodes the node alike.
            let node = fst.node(addr);
            let mut theirs = (0..node.len()).map(|i| node.transition_addr(i));
            check_fst_node(b, addr, |t| {
                assert_eq!(theirs.next(), Some(t), "fst node at byte {addr}")
            })?;
            assert_eq!(theirs.next(), None, "fst node at byte {addr}");
        }
    }
    Ok(())
}

/// Decodes the node whose last byte is at `addr` as fst 0.4 does
/// (`raw/node.rs`) and checks it: everything fst reads of it lies in
/// `b[..=addr]`, pack sizes are ones fst can unpack, each transition leads
/// below the node, inputs increase and a wide node's index agrees with
/// them. Calls `target` with each transition's target. The layout, from
/// the last byte down:
///
/// ```text
/// one transition to the node just before, no output:
///   [input, unless common] state=0b11|common input
/// one transition:
///   output(osize) address delta(tsize) sizes [input, unless common] state=0b10|common input
/// any number of transitions (n), inputs stored last transition first:
///   [final output(osize)] outputs(n x osize) deltas(n x tsize) inputs(n)
///   [index(256) if n > 32] sizes [n, unless it fits the state] state=0b0|final|n
/// ```
///
/// Outputs take no bytes (osize 0) when they are all zero. `sizes` holds
/// tsize (high nibble) and osize (low), each at most 8. A transition's
/// target is the node's first byte minus its delta, or [`FST_EMPTY`] for
/// delta 0.
fn check_fst_node(b: &[u8], addr: usize, mut target: impl FnMut(usize)) -> Result<(), String> {
    if addr == FST_EMPTY {
        return Ok(());
    }
    let bad = |what: &str| format!("node at byte {addr}: {what}");
    let state = *b.get(addr).ok_or_else(|| bad("outside the fst"))?;
    let inline = state & 0b0011_1111;
    let back = |at: usize, n: usize| at.checked_sub(n).ok_or_else(|| bad("runs before the fst"));
    let sizes = |at: usize| {
        let v = b[at];
        let (tsize, osize) = (usize::from(v >> 4), usize::from(v & 0x0f));
        if tsize > 8 || osize > 8 {
            return Err(bad("bad pack sizes"));
        }
        Ok((tsize, osize))
    };
    // The node's first byte, where its address deltas are, how many.
    let (start, deltas, n, tsize) = match state >> 6 {
        0b11 => {
            // The target is the byte before the node; `inline` is a common
            // input, else the input takes a byte.
            let start = addr - usize::from(inline == 0);
            if start == 0 {
                return Err(bad("leads before the fst"));
            }
            target(start - 1);
            return Ok(());
        }
        0b10 => {
            let sizes_at = back(addr, 1 + usize::from(inline == 0))?;
            let (tsize, osize) = sizes(sizes_at)?;
            if tsize == 0 {
                return Err(bad("transition without an address"));
            }
            let deltas = back(sizes_at, tsize)?;
            (back(deltas, osize)?, deltas, 1, tsize)
        }
        _ => {
            let is_final = state & 0b0100_0000 != 0;
            let sizes_at = back(addr, 1 + usize::from(inline == 0))?;
            let n = match inline {
                0 => match b[addr - 1] {
                    1 => 256,
                    n => usize::from(n),
                },
                n => usize::from(n),
            };
            let (tsize, osize) = sizes(sizes_at)?;
            if n > 0 && tsize == 0 {
                return Err(bad("transitions without addresses"));
            }
            let index = if n > FST_INDEX_THRESHOLD { 256 } else { 0 };
            let inputs = back(sizes_at, index + n)?;
            let deltas = back(inputs, n * tsize)?;
            let outputs = n * osize + if is_final { osize } else { 0 };
            let start = back(deltas, outputs)?;
            // Stored last transition first: strictly decreasing here.
            let stored = &b[inputs..inputs + n];
            if stored.windows(2).any(|w| w[0] <= w[1]) {
                return Err(bad("inputs out of order"));
            }
            if index > 0 {
                // `find_input` reads the index: entry `v` is the number of
                // the transition on byte `v`, or anything >= n for none.
                let table = &b[inputs + n..sizes_at];
                let mut found = 0;
                for (v, &i) in table.iter().enumerate() {
                    let i = usize::from(i);
                    if i < n {
                        if usize::from(stored[n - 1 - i]) != v {
                            return Err(bad("input index disagrees with the inputs"));
                        }
                        found += 1;
                    }
                }
                if found != n {
                    return Err(bad("input index misses inputs"));
                }
            }
            (start, deltas, n, tsize)
        }
    };
    // Little-endian, `tsize` bytes: one 8-byte load where there is room.
    let mask = u64::MAX >> (64 - 8 * tsize.max(1));
    let unpack = |at: usize| match b.get(at..).and_then(|s| s.first_chunk::<8>()) {
        Some(word) => u64::from_le_bytes(*word) & mask,
        None => b[at..at + tsize]
            .iter()
            .rev()
            .fold(0, |d, &byte| d << 8 | u64::from(byte)),
    };
    // Stored last transition first, like the inputs.
    for at in (deltas..deltas + n * tsize).step_by(tsize.max(1)).rev() {
        let delta = unpack(at);
        match usize::try_from(delta) {
            Ok(0) => target(FST_EMPTY),
            Ok(delta) if delta <= start => target(start - delta),
            _ => return Err(bad("leads before the fst")),
        }
    }
    Ok(())
}

/// [`fst::Map::get`] with the outputs summed wrapping: fst's own sum is
/// overflow-checked in debug builds, so damaged outputs would panic there.
/// A wrapped sum is just a term number out of range, which every caller
/// checks.
fn fst_get<D: AsRef<[u8]>>(fst: &fst::raw::Fst<D>, key: &[u8]) -> Option<u64> {
    let mut node = fst.root();
    let mut out = 0u64;
    for &b in key {
        let t = node.transition(node.find_input(b)?);
        out = out.wrapping_add(t.out.value());
        node = fst.node(t.addr);
    }
    node.is_final()
        .then(|| out.wrapping_add(node.final_output().value()))
}

impl Postings {
    fn open(
        snap: &Snapshot,
        kind: Kind,
        category: u32,
        documents: usize,
    ) -> Result<Postings, SnapshotError> {
        let fst = open_fst(snap, kind, category)?;
        let lists = snap.section(Kind::Lists, category)?;
        let starts = Starts::new(fst.as_fst());
        Ok(Postings {
            fst,
            starts,
            lists,
            orders: None,
            documents,
        })
    }

    /// Reads the Picky orders of the terms whose lists are not ascending.
    fn with_orders(
        mut self,
        snap: &Snapshot,
        kind: Kind,
        category: u32,
    ) -> Result<Postings, SnapshotError> {
        self.orders = Some((
            open_fst(snap, kind, category)?,
            snap.section(Kind::Orders, category)?,
        ));
        Ok(self)
    }

    /// `term`'s documents in Picky's order, if that is not ascending (its
    /// list merged documents of a repeated id); `None` otherwise.
    pub fn picky_order(&self, term: &str) -> Option<Vec<u32>> {
        let (fst, orders) = self.orders.as_ref()?;
        let at = usize::try_from(fst_get(fst.as_fst(), term.as_bytes())?).ok()?;
        let bytes = orders.as_ref().get(at..)?;
        Some(crate::postings::decode_order(bytes, self.documents))
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

    /// The list at byte `offset` of the lists section; `None` if the file
    /// is inconsistent (the offset or the list's header out of range).
    pub fn term(&self, offset: u64) -> Option<PostingList<'_>> {
        let bytes = self.lists.as_ref().get(usize::try_from(offset).ok()?..)?;
        PostingList::parse(bytes).filter(|l| !l.is_empty() && l.len() <= self.documents)
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
        let range = fst_get(self.fst.as_fst(), code.as_bytes()).and_then(|n| {
            let n = usize::try_from(n).ok()?;
            Some((
                usize::try_from(self.offsets.get(n)?).ok()?,
                usize::try_from(self.offsets.get(n.checked_add(1)?)?).ok()?,
            ))
        });
        let bytes = range
            .and_then(|(a, b)| self.words.as_ref().get(a..b))
            .unwrap_or(&[]);
        let mut rest = bytes;
        std::iter::from_fn(move || {
            let (len, after) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            let (word, after) = after.split_at_checked(len)?;
            rest = after;
            std::str::from_utf8(word).ok()
        })
    }
}

pub struct Category {
    pub name: String,
    /// A ranged category: words are looked up by grid cell ([`Category::key`]).
    pub ranged: Option<Ranged>,
    pub exact: Postings,
    pub partial: Option<Postings>,
    pub similarity: Similarity,
    pub weight: Weight,
    similar: Option<SimilarTable>,
    /// Its exact words in first-seen order (facets), if kept.
    facet_words: Option<Bytes>,
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
    /// What `text` is looked up as: itself, or in a ranged category its
    /// grid cell (Picky's `Calculation#ids`: `calculate(text.to_f).to_s`);
    /// `None` for a number no cell holds.
    pub fn key<'t>(&self, text: &'t str) -> Option<std::borrow::Cow<'t, str>> {
        match self.ranged {
            None => Some(std::borrow::Cow::Borrowed(text)),
            Some(r) => r
                .cell(crate::ruby::to_f(text))
                .map(|c| std::borrow::Cow::Owned(c.to_string())),
        }
    }

    /// Picky's weight of a text found with `list`: `offset +
    /// round(ln(n), 3)` (a float, whatever the offset) or the constant.
    pub fn weight_of(&self, list: PostingList<'_>) -> Number {
        match self.weight {
            Weight::Logarithmic { offset } => {
                let log = LOG_WEIGHT_TABLE
                    .get(list.len())
                    .copied()
                    .unwrap_or_else(|| log_weight(list.len()));
                Number::Float(offset.value() + log)
            }
            Weight::Constant { value } => value,
        }
    }

    /// [`Category::name`] as a JSON string.
    pub(crate) fn name_json(&self) -> &[u8] {
        &self.name_json
    }

    /// Its facet words in the order Picky first met them; `None` unless
    /// the category keeps them. A damaged section ends the list early.
    pub fn facet_keys(&self) -> Option<impl Iterator<Item = &str>> {
        let mut rest = self.facet_words.as_ref()?.as_ref();
        Some(std::iter::from_fn(move || {
            let (len, after) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            let (word, after) = after.split_at_checked(len)?;
            rest = after;
            std::str::from_utf8(word).ok()
        }))
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
    pub(crate) boosts: Vec<(Vec<usize>, Number)>,
    /// Picky's Search options, by category number.
    pub(crate) opts: crate::search::Options,
    /// The index name as a JSON string (every allocation starts with it).
    name_json: Vec<u8>,
    doc_offsets: U64s,
    doc_bytes: Bytes,
    /// A search over several indexes: them, in order (empty for an index).
    /// The search itself has no categories or documents; its tokenizer
    /// reads the query, its paging options page the allocations of all.
    pub(crate) members: Vec<Engine>,
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
    /// (or served before its background sha256 finished) may hold damaged
    /// sections that pass every structural check: every read is checked
    /// and every term table walked ([`check_fst`]), so such a file is
    /// refused with [`SnapshotError::Corrupt`] naming the section, or
    /// answers queries without panicking.
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Engine, SnapshotError> {
        let path = snapshot.path().to_owned();
        // The last net only: nothing in `wire` is expected to panic on any
        // bytes (the damage fuzzer and tests/damaged.rs fail if it does).
        // Should a case slip through, it is still a refused snapshot rather
        // than a dead start-up.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::wire(snapshot, true)))
            .unwrap_or_else(|_| {
                Err(SnapshotError::Corrupt {
                    path,
                    why: "a section is damaged (wiring it up panicked)".into(),
                })
            })
    }

    /// `top`: not nested in a search (only there may a snapshot hold
    /// indexes of its own, so nesting is one level deep on any bytes).
    fn wire(snapshot: Snapshot, top: bool) -> Result<Engine, SnapshotError> {
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
            let documents = usize::try_from(meta.documents).unwrap_or(usize::MAX);
            let mut exact = Postings::open(&snapshot, Kind::ExactFst, c, documents)?;
            if mc.ordered {
                exact = exact.with_orders(&snapshot, Kind::ExactOrder, c)?;
            }
            let partial = if mc.partial {
                let partial = Postings::open(&snapshot, Kind::PartialFst, c, documents)?;
                Some(if mc.ordered {
                    partial.with_orders(&snapshot, Kind::PartialOrder, c)?
                } else {
                    partial
                })
            } else {
                None
            };
            let similar = if mc.similarity != Similarity::None {
                let table = SimilarTable {
                    fst: open_fst(&snapshot, Kind::SimilarFst, c)?,
                    offsets: U64s(snapshot.section(Kind::SimilarOffsets, c)?),
                    words: snapshot.section(Kind::SimilarWords, c)?,
                };
                if table.fst.len().checked_add(1) != Some(table.offsets.len())
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
            let facet_words = if mc.facets {
                Some(snapshot.section(Kind::FacetWords, c)?)
            } else {
                None
            };
            let mut name_json = Vec::new();
            crate::ruby::write_json_str(&mc.name, &mut name_json);
            categories.push(Category {
                ranged: mc.ranged,
                facet_words,
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
        let by_name = numbers_by_name(meta.categories.iter().map(|c| c.name.as_str()));
        if !top && !meta.indexes.is_empty() {
            return Err(snapshot.corrupt("an index of a search holds indexes itself"));
        }
        let members = Self::wire_members(&snapshot, &meta)?;
        // A search's own names are its indexes' (each resolves them).
        let search = !members.is_empty();
        let strict = |n: &str| match by_name.get(n) {
            Some(&i) => Some(i),
            None => search.then_some(usize::MAX),
        };
        let boosts = resolve_boosts(&meta.boosts, strict)
            .ok_or_else(|| snapshot.corrupt("a boost names an unknown category"))?;
        let opts = crate::search::Options::resolve(&meta.search, strict, categories.len())
            .ok_or_else(|| snapshot.corrupt("the search options name an unknown category"))?;
        let doc_offsets = U64s(snapshot.section(Kind::DocOffsets, NO_CATEGORY)?);
        let doc_bytes = snapshot.section(Kind::DocBytes, NO_CATEGORY)?;
        // A search's documents are its indexes'.
        let own_documents = if members.is_empty() {
            meta.documents
        } else {
            0
        };
        if own_documents.checked_add(1) != Some(doc_offsets.len() as u64)
            || doc_offsets.get(doc_offsets.len().saturating_sub(1))
                != Some(doc_bytes.as_ref().len() as u64)
        {
            return Err(snapshot.corrupt("document table does not match the document count"));
        }
        let digest = snapshot.digest_hex();
        let mut name_json = Vec::new();
        let shown = meta.result_identifier.as_deref().unwrap_or(&meta.name);
        crate::ruby::write_json_str(shown, &mut name_json);
        Ok(Engine {
            snapshot,
            meta,
            digest,
            tokenizer,
            id: NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            categories,
            qualifiers,
            boosts,
            opts,
            name_json,
            doc_offsets,
            doc_bytes,
            members,
        })
    }

    /// A search's indexes (none for an index), each opened from its nested
    /// snapshot, with the search's boosts and options in place of its own
    /// (resolved by category name: what names a category an index lacks
    /// matches none of its allocations).
    fn wire_members(snapshot: &Snapshot, meta: &Meta) -> Result<Vec<Engine>, SnapshotError> {
        if meta.indexes.len() > crate::def::MAX_SEARCH_INDEXES {
            return Err(snapshot.corrupt("the search holds too many indexes"));
        }
        let mut members = Vec::with_capacity(meta.indexes.len());
        for (i, name) in meta.indexes.iter().enumerate() {
            let nested = snapshot.nested(Kind::Index, i as u32, Verify::Structure)?;
            let mut m = Self::wire(nested, false)?;
            if m.meta.name != *name {
                return Err(snapshot.corrupt(format!(
                    "index {i} of the search is not the index {name:?} it names"
                )));
            }
            let by_name = numbers_by_name(m.categories.iter().map(|c| c.name.as_str()));
            let lenient = |n: &str| Some(by_name.get(n).copied().unwrap_or(usize::MAX));
            let boosts = resolve_boosts(&meta.boosts, lenient).unwrap_or_default();
            let opts = crate::search::Options::resolve(&meta.search, lenient, m.categories.len())
                .unwrap_or_default();
            drop(by_name);
            m.boosts = boosts;
            m.opts = opts;
            members.push(m);
        }
        Ok(members)
    }

    /// Index `i` of a search over several indexes; an index is its own
    /// index 0 (and any other).
    pub fn index_at(&self, i: usize) -> &Engine {
        self.members.get(i).unwrap_or(self)
    }

    /// A search's indexes, in order (empty for an index).
    pub fn indexes(&self) -> &[Engine] {
        &self.members
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
    use crate::snapshot::Writer;
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
        let mut lists = Vec::new();
        for (n, t) in terms.iter().enumerate() {
            builder.insert(t, lists.len() as u64).unwrap();
            crate::postings::encode_packed(&[n as u32, n as u32 + 1], &mut lists);
        }
        let fst_bytes = builder.into_inner().unwrap();
        let mut w = Writer::default();
        w.add(Kind::ExactFst, 0, fst_bytes.clone());
        w.add(Kind::Lists, 0, lists);
        let snap = Snapshot::from_bytes(Path::new("t.idx"), w.finish().0, Verify::Full).unwrap();
        let postings = Postings::open(&snap, Kind::ExactFst, 0, 1000).unwrap();
        let map = fst::Map::new(fst_bytes).unwrap();
        let number: HashMap<&str, u32> = terms
            .iter()
            .enumerate()
            .map(|(n, t)| (t.as_str(), n as u32))
            .collect();
        let mut probes: Vec<String> = Vec::new();
        for t in &terms {
            for end in (0..=t.len()).filter(|&e| t.is_char_boundary(e)) {
                probes.push(t[..end].to_string());
            }
            probes.push(format!("{t}x"));
        }
        probes.extend(["q", "qq", "zzz", "é", "ée", "\u{0}"].map(String::from));
        for p in &probes {
            let expected = map.get(p).map(|_| {
                let n = number[p.as_str()];
                vec![n, n + 1]
            });
            let got = postings.get(p).map(|l| l.iter().collect::<Vec<_>>());
            assert_eq!(got, expected, "{p:?}");
        }
    }

    /// An fst map of `keys` (sorted, distinct) to their positions, as
    /// `searchd index` writes term tables.
    fn fst_of(keys: &[Vec<u8>]) -> Vec<u8> {
        let mut builder = fst::MapBuilder::memory();
        for (n, k) in keys.iter().enumerate() {
            builder.insert(k, n as u64).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn check(bytes: Vec<u8>) -> Result<fst::Map<Vec<u8>>, String> {
        let map = fst::Map::new(bytes).map_err(|e| e.to_string())?;
        check_fst(map.as_fst())?;
        Ok(map)
    }

    /// Shapes the builder writes: empty, only the empty key, one-byte
    /// nodes, wide nodes with an input index (33 and 256 transitions),
    /// long chains, outputs of several bytes.
    fn shapes() -> Vec<Vec<Vec<u8>>> {
        let mut wide: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b'a', b]).collect();
        wide.extend((0..40u8).map(|b| vec![b'b', b'0' + b]));
        wide.extend((0..=255u8).map(|b| vec![b]));
        wide.push(b"c".repeat(300));
        let mut words: Vec<Vec<u8>> = (0..400u32)
            .map(|i| {
                format!("{}{}", char::from(b'a' + (i % 26) as u8), i * 7919 % 5003).into_bytes()
            })
            .collect();
        words.push(Vec::new());
        for keys in [&mut wide, &mut words] {
            keys.sort();
            keys.dedup();
        }
        vec![
            Vec::new(),
            vec![Vec::new()],
            vec![b"x".to_vec()],
            wide,
            words,
        ]
    }

    #[test]
    fn check_fst_accepts_what_the_builder_writes() {
        for keys in shapes() {
            let map = check(fst_of(&keys)).unwrap_or_else(|e| panic!("{} keys: {e}", keys.len()));
            assert_eq!(map.len(), keys.len());
            for (n, k) in keys.iter().enumerate() {
                assert_eq!(fst_get(map.as_fst(), k), Some(n as u64), "{k:?}");
            }
        }
    }

    /// Damage anywhere in an fst: refused by [`check_fst`], or every
    /// lookup a query makes (`Postings::get` through [`Starts`], and
    /// [`fst_get`] as the similarity table uses) answers without a panic.
    /// Take the check out and this test panics inside `fst`.
    #[test]
    fn damaged_fsts_are_refused_or_safe_to_query() {
        let shapes = shapes();
        let (mut refused, mut tried) = (0, 0);
        for keys in &shapes[3..] {
            let good = fst_of(keys);
            let probes: Vec<&[u8]> = keys.iter().step_by(7).map(Vec::as_slice).collect();
            for at in 0..good.len() {
                for mask in [0x01, 0x30, 0xff] {
                    let mut bad = good.clone();
                    bad[at] ^= mask;
                    tried += 1;
                    let Ok(map) = check(bad) else {
                        refused += 1;
                        continue;
                    };
                    let starts = Starts::new(map.as_fst());
                    for p in &probes {
                        let _ = fst_get(map.as_fst(), p);
                        // `Postings::get`'s walk below the prefix table.
                        if let [a, b, c, rest @ ..] = p {
                            let prefix = u32::from_be_bytes([0, *a, *b, *c]);
                            if let Ok(i) = starts.three.binary_search_by_key(&prefix, |e| e.0) {
                                let mut node = map.as_fst().node(starts.three[i].2);
                                for &b in rest {
                                    let Some(t) = node.find_input(b) else { break };
                                    node = map.as_fst().node(node.transition(t).addr);
                                }
                                let _ = node.is_final().then(|| node.final_output());
                            }
                        }
                    }
                }
            }
        }
        // The check is not a no-op: about half of this damage is noticed
        // (the rest changes outputs, or inputs in order).
        assert!(refused > tried / 3, "{refused} of {tried} refused");
    }
}
