//! Answering a query the way Picky does: words -> tokens (qualifiers, `|`
//! alternatives, `*` partial, `"` exact, `~` similar) -> per-token
//! combinations -> allocations (their cartesian product), scored, sorted,
//! intersected and paged; then rendered as Picky's JSON.
//!
//! The product is walked depth-first in Picky's order (first token slowest)
//! and a branch stops as soon as its intersection is empty: such allocations
//! never show in an answer, so pruning them changes nothing but the cost.
//!
//! Every query runs this path (answers are cached only in the server), so
//! it allocates per query, not per allocation or per word: the words share
//! one string and the tokens borrow from it, combinations are one flat list,
//! picks one flat list of indices into it, intersection buffers are reused
//! along the walk, and each combination used in an answer is rendered as
//! JSON once and copied into every allocation that shows it.

use std::borrow::Cow;
use std::ops::Range;

use crate::def::Weight;
use crate::index::{Engine, PostingList};
use crate::ruby;

/// Picky's range character: `1990…2000` matches every text from one end to
/// the other (Ruby's `String#upto`). West European substitution turns `…`
/// into `...` first, so indexes that substitute (like the books example)
/// never see ranges, exactly as in Picky.
pub const RANGE_CHARACTER: char = '…';

/// Most texts one range may expand to.
pub const MAX_RANGE_TEXTS: usize = 10_000;

/// Work limit for one query's product walk: one unit per allocation
/// visited, plus the number of tokens per allocation found. Picky has none
/// and can be made to run for hours (`a a a a ...`); past this searchd
/// answers 400 instead, after a few milliseconds at most.
pub const MAX_QUERY_WORK: usize = 200_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SearchError {
    #[error(
        "query is too complex: its allocations need more than {MAX_QUERY_WORK} steps to compute"
    )]
    TooComplex,
    #[error("range {0:?} expands to more than {MAX_RANGE_TEXTS} values")]
    RangeTooLarge(String),
}

/// The query's words after the search tokenizer, back to back in one
/// string (`ends[i]` is where word `i` ends).
#[derive(Default)]
struct Words {
    text: String,
    ends: Vec<usize>,
}

impl Words {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let word = &self.text[start..end];
            start = end;
            word
        })
    }
}

/// One query word after parsing; borrows from the [`Words`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part<'w> {
    /// Allowed categories, in the order given (duplicates kept); `None`
    /// means every category in index order.
    categories: Option<Vec<usize>>,
    text: Cow<'w, str>,
    original: Cow<'w, str>,
    similar: bool,
    partial: Option<bool>,
    /// `a…b`: the text split at the first range character, taken before
    /// `"`, `~` and `*` are removed (as Picky does).
    range: Option<(&'w str, &'w str)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'w> {
    One(Part<'w>),
    /// `a|b`: its parts' combinations merged into one.
    Or(Vec<Part<'w>>),
}

/// Ruby's `String#split(",")`/`split("|")`: trailing empty parts dropped
/// (which is splitting without the trailing separators; nothing is left of
/// a string that is only separators).
fn ruby_split(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let s = s.trim_end_matches(sep);
    s.split(sep).take_while(move |_| !s.is_empty())
}

impl Engine {
    fn parse_part<'w>(&self, raw: &'w str, original: Option<&'w str>) -> Part<'w> {
        let (categories, text) = match raw.split_once(':') {
            Some((quals, text)) => {
                let cats = ruby_split(quals, ',')
                    .filter_map(|q| self.qualifier(q))
                    .collect();
                (Some(cats), text)
            }
            None => (None, raw),
        };
        let similar = !text.ends_with('"') && text.ends_with('~');
        let partial = if similar || text.ends_with('"') {
            Some(false)
        } else if text.ends_with('*') {
            Some(true)
        } else {
            None
        };
        let range = text.split_once(RANGE_CHARACTER);
        let clean: Cow<'w, str> = if text.contains(['"', '~', '*']) {
            Cow::Owned(
                text.chars()
                    .filter(|c| !matches!(c, '"' | '~' | '*'))
                    .collect(),
            )
        } else {
            Cow::Borrowed(text)
        };
        let original = match original {
            Some(o) => Cow::Borrowed(o),
            None if categories.is_some() => Cow::Borrowed(raw),
            None => clean.clone(),
        };
        Part {
            categories,
            text: clean,
            original,
            similar,
            partial,
            range,
        }
    }

    /// Sets `words` to the query's words, as the search tokenizer gives them.
    fn words(&self, query: &str, words: &mut Words) {
        words.text.clear();
        words.ends.clear();
        self.with_tokenizer(|t| {
            let pre = t.preprocess(query);
            t.each_word(&pre, |w| {
                words.text.push_str(&w);
                words.ends.push(words.text.len());
            });
        });
    }

    /// Parses the words into tokens; `None` where Picky fails (a word that
    /// is only `|`), which searchd answers with an empty result.
    fn parse<'w>(&self, words: &'w Words) -> Option<Vec<Token<'w>>> {
        let mut tokens = Vec::with_capacity(words.ends.len());
        for word in words.iter() {
            if !word.contains('|') {
                tokens.push(Token::One(self.parse_part(word, None)));
                continue;
            }
            let parts: Vec<&str> = ruby_split(word, '|').collect();
            match parts.len() {
                0 => return None,
                1 => tokens.push(Token::One(self.parse_part(parts[0], Some(word)))),
                _ => tokens.push(Token::Or(
                    parts.iter().map(|p| self.parse_part(p, Some(p))).collect(),
                )),
            }
        }
        // The last token is partial unless it said otherwise.
        if let Some(last) = tokens.last_mut() {
            let parts: &mut [Part<'w>] = match last {
                Token::One(p) => std::slice::from_mut(p),
                Token::Or(ps) => ps,
            };
            for p in parts {
                p.partial.get_or_insert(true);
            }
        }
        Some(tokens)
    }
}

/// A posting list as a combination sees it.
#[derive(Debug, Clone)]
enum Ids<'a> {
    /// Straight from the index: ascending.
    Index(PostingList<'a>),
    /// An OR token's merged list, in Picky's order, plus a sorted copy for
    /// intersecting.
    Merged { ordered: Vec<u32>, sorted: Vec<u32> },
}

impl Ids<'_> {
    /// No ids: a constant-weight candidate for a text its category lacks.
    fn empty() -> Self {
        Ids::Merged {
            ordered: Vec::new(),
            sorted: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Ids::Index(l) => l.len(),
            Ids::Merged { ordered, .. } => ordered.len(),
        }
    }
}

/// What a combination is labelled with in the answer.
#[derive(Debug, Clone)]
enum Label {
    Category(usize),
    /// An OR token's joined category names; never boosted.
    Joined(String),
}

#[derive(Debug, Clone)]
struct Combination<'a> {
    label: Label,
    weight: f64,
    ids: Ids<'a>,
    original: Cow<'a, str>,
    text: Cow<'a, str>,
}

/// Every token's combinations in one list: token `t` has
/// `all[starts[t]..starts[t + 1]]`. Picks are indices into `all`.
struct Combos<'a, 's> {
    all: Vec<Combination<'a>>,
    starts: &'s [usize],
}

impl Combos<'_, '_> {
    fn tokens(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
}

impl Engine {
    fn part_combinations<'a>(
        &'a self,
        part: &'a Part<'_>,
        out: &mut Vec<Combination<'a>>,
    ) -> Result<(), SearchError> {
        if part.similar {
            // Picky ignores qualifiers for similar tokens and returns the
            // listed similar words, not the typed one.
            for (ci, cat) in self.categories.iter().enumerate() {
                let Some(code) = crate::index::encode(cat.similarity, &part.text) else {
                    continue;
                };
                for word in cat.similar(&code) {
                    if let Some(list) = cat.exact.get(word) {
                        out.push(Combination {
                            label: Label::Category(ci),
                            weight: cat.weight_of(list),
                            ids: Ids::Index(list),
                            original: Cow::Borrowed(word),
                            text: Cow::Borrowed(word),
                        });
                    }
                }
            }
            return Ok(());
        }
        if part.categories.as_ref().is_some_and(Vec::is_empty) {
            // Qualifiers that name no category: Picky looks nothing up,
            // so a range is not expanded either (nor refused as too large).
            return Ok(());
        }
        let partial = part.partial == Some(true);
        let texts = match &part.range {
            Some((a, b)) => {
                let mut texts = Vec::new();
                ruby_upto(a, b, &mut |t| {
                    texts.push(t);
                    texts.len() <= MAX_RANGE_TEXTS
                });
                if texts.len() > MAX_RANGE_TEXTS {
                    return Err(SearchError::RangeTooLarge(part.text.to_string()));
                }
                Some(texts)
            }
            None => None,
        };
        let mut visit = |ci: usize| {
            let cat = &self.categories[ci];
            let table = match (&cat.partial, partial) {
                (Some(p), true) => p,
                _ => &cat.exact,
            };
            // Picky makes a combination wherever the category's weights
            // give the text a weight. Stored (logarithmic) weights exist
            // only for indexed texts; a constant weight answers for every
            // text, so there every word is a candidate, with no ids when
            // it is not indexed (such allocations are empty and vanish,
            // but the candidate shows in `|` labels and range scores).
            let constant = match cat.weight {
                Weight::Constant { value } => Some(value),
                Weight::Logarithmic => None,
            };
            let ids = match &texts {
                None => match table.get(&part.text) {
                    Some(list) => Some((cat.weight_of(list), Ids::Index(list))),
                    None => constant.map(|w| (w, Ids::empty())),
                },
                // Picky sums the weights of the texts that have one (with a
                // constant weight: every text of the range) and concatenates
                // the lists of those found (duplicates kept).
                Some(texts) => {
                    let mut weight: Option<f64> = None;
                    let mut ordered = Vec::new();
                    for t in texts {
                        let found = table.get(t);
                        if let Some(w) = found.map(|list| cat.weight_of(list)).or(constant) {
                            weight = Some(w + weight.unwrap_or(0.0));
                        }
                        if let Some(list) = found {
                            ordered.extend(list.iter());
                        }
                    }
                    weight.map(|w| {
                        let mut sorted = ordered.clone();
                        sorted.sort_unstable();
                        sorted.dedup();
                        (w, Ids::Merged { ordered, sorted })
                    })
                }
            };
            if let Some((weight, ids)) = ids {
                out.push(Combination {
                    label: Label::Category(ci),
                    weight,
                    ids,
                    original: Cow::Borrowed(&part.original),
                    text: Cow::Borrowed(&part.text),
                });
            }
        };
        match &part.categories {
            Some(cats) => cats.iter().for_each(|&ci| visit(ci)),
            None => (0..self.categories.len()).for_each(visit),
        }
        Ok(())
    }

    /// Appends `token`'s combinations to `out`.
    fn token_combinations<'a>(
        &'a self,
        token: &'a Token<'_>,
        out: &mut Vec<Combination<'a>>,
    ) -> Result<(), SearchError> {
        let parts = match token {
            Token::One(p) => return self.part_combinations(p, out),
            Token::Or(parts) => parts,
        };
        let mut all = Vec::new();
        for p in parts {
            self.part_combinations(p, &mut all)?;
        }
        if all.is_empty() {
            return Ok(());
        }
        let join = |f: &dyn for<'x> Fn(&'x Combination<'a>) -> &'x str| {
            all.iter().map(f).collect::<Vec<_>>().join("|")
        };
        let label = join(&|c| match &c.label {
            Label::Category(ci) => &self.categories[*ci].name,
            Label::Joined(s) => s,
        });
        let original = join(&|c| &c.original);
        let text = join(&|c| &c.text);
        let mut seen = std::collections::HashSet::new();
        let mut ordered = Vec::new();
        for c in &all {
            let mut add = |id: u32| {
                if seen.insert(id) {
                    ordered.push(id);
                }
            };
            match &c.ids {
                Ids::Index(l) => l.iter().for_each(&mut add),
                Ids::Merged { ordered: o, .. } => o.iter().copied().for_each(&mut add),
            }
        }
        let mut sorted = ordered.clone();
        sorted.sort_unstable();
        // Boosts compare category names: a merged label that is a
        // plain name (one combination) is boosted like that category.
        let label = match self.categories.iter().position(|c| c.name == label) {
            Some(ci) => Label::Category(ci),
            None => Label::Joined(label),
        };
        out.push(Combination {
            label,
            weight: 0.0,
            ids: Ids::Merged { ordered, sorted },
            original: Cow::Owned(original),
            text: Cow::Owned(text),
        });
        Ok(())
    }
}

/// The running intersection of a branch of the product walk.
#[derive(Debug, Clone)]
enum Set<'a> {
    Index(PostingList<'a>),
    /// A merged list's sorted copy, borrowed from its combination.
    Slice(&'a [u32]),
    Owned(Vec<u32>),
}

/// A sorted list, whichever kind.
#[derive(Clone, Copy)]
enum View<'a> {
    List(PostingList<'a>),
    Slice(&'a [u32]),
}

impl<'a> Set<'a> {
    fn view(&self) -> View<'_> {
        match self {
            Set::Index(l) => View::List(*l),
            Set::Slice(s) => View::Slice(s),
            Set::Owned(v) => View::Slice(v),
        }
    }
    fn len(&self) -> usize {
        match self.view() {
            View::List(l) => l.len(),
            View::Slice(s) => s.len(),
        }
    }
    fn contains(&self, x: u32) -> bool {
        match self.view() {
            View::Slice(s) => s.binary_search(&x).is_ok(),
            View::List(l) => {
                let i = gallop(l.words(), 0, x);
                i < l.len() && l.get(i) == x
            }
        }
    }
}

impl<'a> Ids<'a> {
    fn view(&self) -> View<'_> {
        match self {
            Ids::Index(l) => View::List(*l),
            Ids::Merged { sorted, .. } => View::Slice(sorted),
        }
    }
}

/// A sorted list of document numbers, however stored.
trait Sorted {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> u32;
    /// How many of the 8 numbers from `i` on are below `x` (`i + 8 <=
    /// len`). Counting instead of searching has no branches and compiles
    /// to vector compares.
    fn below_in_8(&self, i: usize, x: u32) -> usize;
}
/// A posting list's words.
impl Sorted for [[u8; 4]] {
    fn len(&self) -> usize {
        <[[u8; 4]]>::len(self)
    }
    #[inline]
    fn at(&self, i: usize) -> u32 {
        u32::from_le_bytes(self[i])
    }
    #[inline]
    fn below_in_8(&self, i: usize, x: u32) -> usize {
        let block: &[[u8; 4]; 8] = self[i..].first_chunk().expect("8 numbers left");
        block
            .iter()
            .map(|&w| usize::from(u32::from_le_bytes(w) < x))
            .sum()
    }
}
impl Sorted for [u32] {
    fn len(&self) -> usize {
        <[u32]>::len(self)
    }
    #[inline]
    fn at(&self, i: usize) -> u32 {
        self[i]
    }
    #[inline]
    fn below_in_8(&self, i: usize, x: u32) -> usize {
        let block: &[u32; 8] = self[i..].first_chunk().expect("8 numbers left");
        block.iter().map(|&v| usize::from(v < x)).sum()
    }
}

/// First index `>= from` in `b` whose value is `>= x` (galloping search).
fn gallop(b: &(impl Sorted + ?Sized), from: usize, x: u32) -> usize {
    let n = b.len();
    let mut step = 1;
    let mut lo = from;
    let mut hi = from;
    while hi < n && b.at(hi) < x {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let mut hi = hi.min(n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if b.at(mid) < x {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// First index `>= from` in `b` whose value is `>= x`, looking at 8
/// numbers at a time: for gaps of up to a few dozen numbers, cheaper than
/// galloping.
#[inline]
fn scan(b: &(impl Sorted + ?Sized), mut from: usize, x: u32) -> usize {
    let n = b.len();
    while from + 8 <= n {
        let below = b.below_in_8(from, x);
        from += below;
        if below < 8 {
            return from;
        }
    }
    while from < n && b.at(from) < x {
        from += 1;
    }
    from
}

/// Sorted intersection of `a` and `b`, appended to `out`.
fn intersect(a: View<'_>, b: View<'_>, out: &mut Vec<u32>) {
    match (a, b) {
        (View::List(a), View::List(b)) => intersect_sorted(a.words(), b.words(), out),
        (View::List(a), View::Slice(b)) => intersect_sorted(a.words(), b, out),
        (View::Slice(a), View::List(b)) => intersect_sorted(a, b.words(), out),
        (View::Slice(a), View::Slice(b)) => intersect_sorted(a, b, out),
    }
}

/// How the shorter list's numbers are looked up in the longer one: lists
/// of similar length are merged; a list up to `GALLOP_RATIO` times longer
/// is scanned 8 numbers at a time; a longer one galloped through.
const SCAN_RATIO: usize = 3;
const GALLOP_RATIO: usize = 64;

fn intersect_sorted(a: &(impl Sorted + ?Sized), b: &(impl Sorted + ?Sized), out: &mut Vec<u32>) {
    let (na, nb) = (a.len(), b.len());
    if na.max(nb) < na.min(nb).saturating_mul(SCAN_RATIO) {
        merge(a, b, out);
    } else if na <= nb {
        search_through(a, b, out);
    } else {
        search_through(b, a, out);
    }
}

/// Steps through both lists at once. Neither the steps nor the output
/// branch on the numbers (every candidate is written, the output only
/// advances on a match), so unpredictable matches cost nothing extra.
fn merge(a: &(impl Sorted + ?Sized), b: &(impl Sorted + ?Sized), out: &mut Vec<u32>) {
    let (na, nb) = (a.len(), b.len());
    let start = out.len();
    out.resize(start + na.min(nb), 0);
    let buf = &mut out[start..];
    let (mut i, mut j, mut k) = (0, 0, 0);
    // Each match uses up one number of each list, so while both have
    // numbers left, fewer than `buf.len()` matches have been written.
    while i < na && j < nb {
        let (x, y) = (a.at(i), b.at(j));
        buf[k] = x;
        k += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.truncate(start + k);
}

/// Looks up each number of the shorter list in the longer one, moving
/// forward only.
fn search_through(
    short: &(impl Sorted + ?Sized),
    long: &(impl Sorted + ?Sized),
    out: &mut Vec<u32>,
) {
    let nl = long.len();
    out.reserve(short.len());
    let far = short.len().saturating_mul(GALLOP_RATIO) <= nl;
    let mut j = 0;
    for i in 0..short.len() {
        let x = short.at(i);
        j = if far {
            gallop(long, j, x)
        } else {
            scan(long, j, x)
        };
        if j >= nl {
            break;
        }
        if long.at(j) == x {
            out.push(x);
            j += 1;
        }
    }
}

/// One allocation that survived the walk; its picks are
/// `picks[at..at + tokens]` of the walk's flat list.
#[derive(Debug)]
struct Found<'a> {
    at: usize,
    score: f64,
    set: Set<'a>,
}

/// One allocation in an answer.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub score: f64,
    pub count: u64,
    /// Document numbers on this page.
    pub ids: Vec<u32>,
    /// Its combination (one `[category, original, text]` per token): these
    /// entries of [`Results::parts`].
    parts: Range<usize>,
}

/// A query's answer, ready to render.
#[derive(Debug)]
pub struct Results<'e> {
    engine: &'e Engine,
    pub allocations: Vec<Allocation>,
    pub offset: i64,
    pub total: u64,
    /// Every combination shown, rendered once as JSON
    /// (`["title","alan","alan"]`), back to back.
    fragments: Vec<u8>,
    /// Per token of each allocation: its combination's bytes in `fragments`.
    parts: Vec<Range<u32>>,
}

/// Ruby's `Array#[start, length]` as a range; `None` is Ruby's `nil`.
fn ruby_slice(len: usize, start: i64, amount: i64) -> Option<std::ops::Range<usize>> {
    let len = len as i64;
    let mut s = start;
    if s < 0 {
        s = s.checked_add(len)?;
        if s < 0 {
            return None;
        }
    }
    if s > len || amount < 0 {
        return None;
    }
    let e = len.min(s.saturating_add(amount));
    Some(s as usize..e as usize)
}

/// Buffers a thread reuses from query to query, so that a query allocates
/// little besides its answer. None of them holds a borrow between queries.
#[derive(Default)]
struct Scratch {
    words: Words,
    starts: Vec<usize>,
    answer: AnswerScratch,
}

/// The buffers of [`Engine::answer`].
#[derive(Default)]
struct AnswerScratch {
    walk: WalkScratch,
    /// Each found allocation's picks, back to back.
    picks: Vec<usize>,
    /// Every combination shown, rendered once as JSON
    /// (`["title","alan","alan"]`), back to back.
    fragments: Vec<u8>,
    /// Per combination: its JSON in `fragments`, once rendered.
    rendered: Vec<Range<u32>>,
    /// The allocation being handed out: its combination's fragments.
    parts: Vec<Range<u32>>,
    seq: Vec<usize>,
}

/// What a scratch buffer may keep between queries (elements); a larger one
/// is freed, so one huge query does not pin its memory in every thread.
const SCRATCH_KEEP: usize = 1 << 14;

/// How many intersection buffers (of each kind) a thread keeps.
const SCRATCH_KEEP_LISTS: usize = 16;

impl Scratch {
    fn trim(&mut self) {
        fn keep<T>(v: &mut Vec<T>) {
            if v.capacity() > SCRATCH_KEEP {
                *v = Vec::new();
            }
        }
        keep(&mut self.words.ends);
        if self.words.text.capacity() > SCRATCH_KEEP {
            self.words.text = String::new();
        }
        keep(&mut self.starts);
        let a = &mut self.answer;
        keep(&mut a.picks);
        keep(&mut a.fragments);
        keep(&mut a.rendered);
        keep(&mut a.parts);
        keep(&mut a.seq);
        keep(&mut a.walk.cur);
        a.walk.levels.truncate(SCRATCH_KEEP_LISTS);
        a.walk.levels.iter_mut().for_each(keep);
        a.walk.spare.truncate(SCRATCH_KEEP_LISTS);
        a.walk.spare.retain(|v| v.capacity() <= SCRATCH_KEEP);
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in
/// use or the thread is exiting).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH
        .try_with(|c| c.take())
        .ok()
        .flatten()
        .unwrap_or_default();
    let r = f(&mut scratch);
    scratch.trim();
    let _ = SCRATCH.try_with(|c| c.set(Some(scratch)));
    r
}

impl Engine {
    /// Answers `query` with `ids` results per page starting at `offset`.
    pub fn search(&self, query: &str, ids: i64, offset: i64) -> Result<Results<'_>, SearchError> {
        let mut results = Results {
            engine: self,
            allocations: Vec::new(),
            offset,
            total: 0,
            fragments: Vec::new(),
            parts: Vec::new(),
        };
        with_scratch(|s| {
            results.total = self.search_with(query, ids, offset, s, &mut results)?;
            results.fragments.extend_from_slice(&s.answer.fragments);
            Ok(())
        })?;
        Ok(results)
    }

    /// Answers `query` like [`Engine::search`], writing Picky's JSON to
    /// `out` as it goes (what `write_json` would write, without building
    /// the [`Results`]). `duration` is asked for once the allocations are
    /// written. On an error `out` holds a partial answer.
    pub fn search_json(
        &self,
        query: &str,
        ids: i64,
        offset: i64,
        out: &mut Vec<u8>,
        duration: impl FnOnce() -> f64,
    ) -> Result<(), SearchError> {
        out.extend_from_slice(JSON_HEAD);
        let mut json = JsonAnswer {
            out,
            name: self.name_json(),
            docs: self.docs(),
            first: true,
        };
        let total = with_scratch(|s| self.search_with(query, ids, offset, s, &mut json))?;
        write_json_tail(offset, duration(), total, out);
        Ok(())
    }

    /// Parses `query`, finds its combinations and hands each allocation
    /// of the page to `answer`; returns the total.
    fn search_with(
        &self,
        query: &str,
        ids: i64,
        offset: i64,
        s: &mut Scratch,
        answer: &mut impl Answer,
    ) -> Result<u64, SearchError> {
        let Scratch {
            words,
            starts,
            answer: scratch,
        } = s;
        self.words(query, words);
        let Some(tokens) = self.parse(words) else {
            return Ok(0);
        };
        if tokens.is_empty() {
            return Ok(0);
        }
        let mut all = Vec::with_capacity(tokens.len() * self.categories.len());
        let mut any_empty = false;
        starts.clear();
        for t in &tokens {
            let start = all.len();
            starts.push(start);
            self.token_combinations(t, &mut all)?;
            any_empty |= all.len() == start;
        }
        starts.push(all.len());
        if any_empty {
            return Ok(0);
        }
        let combos = Combos { all, starts };
        self.answer(&combos, ids, offset, scratch, answer)
    }

    /// Walks, scores, sorts and pages the allocations of `combos`, handing
    /// each to `answer`; returns the total.
    fn answer(
        &self,
        combos: &Combos<'_, '_>,
        ids: i64,
        offset: i64,
        scratch: &mut AnswerScratch,
        answer: &mut impl Answer,
    ) -> Result<u64, SearchError> {
        let AnswerScratch {
            walk: walk_scratch,
            picks,
            fragments,
            rendered,
            parts,
            seq,
        } = scratch;
        let n = combos.tokens();
        // Depth-first walk of the product, first token slowest.
        let mut found: Vec<Found<'_>> = Vec::with_capacity(8);
        picks.clear();
        walk(combos, walk_scratch, &mut |p, set| {
            let mut score = 0.0;
            for &c in p {
                score += combos.all[c].weight;
            }
            score += self.boost(p.iter().map(|&c| &combos.all[c].label), seq);
            found.push(Found {
                at: picks.len(),
                score,
                set,
            });
            picks.extend_from_slice(p);
        })?;
        // Stable: equal scores keep the product order.
        found.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });

        fragments.clear();
        // A rendered combination is never empty: empty means not yet.
        rendered.clear();
        rendered.resize(combos.all.len(), 0..0);
        let mut total = 0u64;
        let mut amount = ids;
        let mut off = offset;
        for f in found {
            let picks = &picks[f.at..f.at + n];
            let ordered = ordered_ids(combos, picks, &f.set);
            let count = ordered.as_ref().map_or(f.set.len(), |o| o.len());
            total += count as u64;
            let page = match ruby_slice(count, off, amount) {
                Some(r) if !r.is_empty() => r,
                _ => 0..0,
            };
            if page.is_empty() {
                if off != 0 {
                    off = off.saturating_sub(count as i64);
                }
            } else {
                amount -= page.len() as i64;
                off = 0;
            }
            parts.clear();
            for &c in picks {
                if rendered[c].is_empty() {
                    rendered[c] = self.render_combination(&combos.all[c], fragments);
                }
                parts.push(rendered[c].clone());
            }
            let ids = match &ordered {
                Some(v) => PageIds::Slice(&v[page]),
                None => PageIds::Set(&f.set, page),
            };
            answer.allocation(f.score, count as u64, parts, fragments, ids);
            if let Set::Owned(v) = f.set {
                walk_scratch.spare.push(v);
            }
        }
        Ok(total)
    }

    /// Appends `["category","original","text"]`; returns where it is.
    fn render_combination(&self, c: &Combination<'_>, out: &mut Vec<u8>) -> Range<u32> {
        let start = out.len();
        out.push(b'[');
        match &c.label {
            Label::Category(ci) => out.extend_from_slice(self.categories[*ci].name_json()),
            Label::Joined(s) => ruby::write_json_str(s, out),
        }
        out.push(b',');
        let original = out.len();
        ruby::write_json_str(&c.original, out);
        if c.text == c.original {
            // Usually the same word: copy its JSON.
            let end = out.len();
            out.push(b',');
            out.extend_from_within(original..end);
        } else {
            out.push(b',');
            ruby::write_json_str(&c.text, out);
        }
        out.push(b']');
        // Answers are far below 4 GiB (a query's text is at most a few KiB).
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        at(start)..at(out.len())
    }

    /// Boost for an allocation's category sequence, neighbouring duplicates
    /// merged; joined (OR) labels match no boost. `seq` is scratch space.
    fn boost<'l>(&self, labels: impl Iterator<Item = &'l Label>, seq: &mut Vec<usize>) -> f64 {
        if self.boosts.is_empty() {
            return 0.0;
        }
        seq.clear();
        for l in labels {
            match l {
                Label::Category(ci) => {
                    if seq.last() != Some(ci) {
                        seq.push(*ci);
                    }
                }
                Label::Joined(_) => return 0.0,
            }
        }
        self.boosts
            .iter()
            .find(|(b, _)| b == seq)
            .map_or(0.0, |(_, v)| *v)
    }
}

/// Picky's order of an allocation's ids is that of its longest list (the
/// last of the lists stably sorted by length), restricted to the
/// intersection. For index lists that is ascending, the set's own order
/// (`None`); a merged list (OR, range) gives its own order, duplicates kept.
fn ordered_ids<'c>(
    combos: &'c Combos<'_, '_>,
    picks: &[usize],
    set: &Set<'_>,
) -> Option<Cow<'c, [u32]>> {
    let mut longest: Option<&Ids<'_>> = None;
    for &c in picks {
        let ids = &combos.all[c].ids;
        if longest.is_none_or(|l| ids.len() >= l.len()) {
            longest = Some(ids);
        }
    }
    match longest {
        Some(Ids::Merged { ordered, .. }) if picks.len() == 1 => Some(Cow::Borrowed(ordered)),
        Some(Ids::Merged { ordered, .. }) => Some(Cow::Owned(
            ordered
                .iter()
                .copied()
                .filter(|&x| set.contains(x))
                .collect(),
        )),
        _ => None,
    }
}

/// The walk's buffers.
#[derive(Default)]
struct WalkScratch {
    /// Per depth, the combination tried there; `cur[..n]` at the last
    /// depth are an allocation's picks.
    cur: Vec<usize>,
    /// `levels[d - 1]`: the intersection of the branch down to depth `d`
    /// (depth 0's is its combination's own list).
    levels: Vec<Vec<u32>>,
    /// Free buffers for the allocations found.
    spare: Vec<Vec<u32>>,
}

/// Walks the product depth-first, first token slowest, without recursion
/// (a query may have thousands of words). Each allocation visited costs one
/// unit of work and each one found as many units as the query has tokens
/// (its picks are copied and its score summed), so both wide and deep
/// queries stop at the same bound. `emit` gets the picks (indices into
/// `combos.all`) and the intersection of each allocation found.
fn walk<'a>(
    combos: &'a Combos<'a, '_>,
    scratch: &mut WalkScratch,
    emit: &mut dyn FnMut(&[usize], Set<'a>),
) -> Result<(), SearchError> {
    let n = combos.tokens();
    let WalkScratch { cur, levels, spare } = scratch;
    cur.clear();
    cur.extend_from_slice(&combos.starts[..n]);
    if levels.len() + 1 < n {
        levels.resize_with(n - 1, Vec::new);
    }
    let mut work = 0usize;
    let mut depth = 0usize;
    loop {
        if cur[depth] >= combos.starts[depth + 1] {
            cur[depth] = combos.starts[depth];
            if depth == 0 {
                return Ok(());
            }
            depth -= 1;
            cur[depth] += 1;
            continue;
        }
        let c = cur[depth];
        work += 1;
        if work > MAX_QUERY_WORK {
            return Err(SearchError::TooComplex);
        }
        let ids = &combos.all[c].ids;
        // Depth `depth`'s intersection goes to `out`; the branch so far
        // is in `done`.
        let (done, out) = levels.split_at_mut(depth.saturating_sub(1));
        let prev = match depth {
            0 => None,
            1 => Some(combos.all[cur[0]].ids.view()),
            d => Some(View::Slice(&done[d - 2])),
        };
        if depth + 1 < n {
            let nonempty = match prev {
                None => ids.len() > 0,
                Some(prev) => {
                    let buf = &mut out[0];
                    buf.clear();
                    intersect(prev, ids.view(), buf);
                    !buf.is_empty()
                }
            };
            if nonempty {
                depth += 1;
            } else {
                cur[depth] += 1;
            }
            continue;
        }
        let set = match prev {
            None => match ids {
                Ids::Index(l) => Set::Index(*l),
                Ids::Merged { sorted, .. } => Set::Slice(sorted),
            },
            Some(prev) => {
                let mut buf = spare.pop().unwrap_or_default();
                buf.clear();
                intersect(prev, ids.view(), &mut buf);
                Set::Owned(buf)
            }
        };
        if set.len() == 0 {
            if let Set::Owned(v) = set {
                spare.push(v);
            }
            cur[depth] += 1;
            continue;
        }
        work += n;
        if work > MAX_QUERY_WORK {
            return Err(SearchError::TooComplex);
        }
        emit(&cur[..n], set);
        cur[depth] += 1;
    }
}

/// Ruby's `String#upto(end)` (what `Range#each` on strings does): calls
/// `f` for every text from `a` to `b`; `f` returns false to stop early.
fn ruby_upto(a: &str, b: &str, f: &mut dyn FnMut(String) -> bool) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.len() == 1 && b.len() == 1 && a.is_ascii() && b.is_ascii() {
        let (c, e) = (a.as_bytes()[0], b.as_bytes()[0]);
        for x in c..=e {
            if !f((x as char).to_string()) {
                return;
            }
        }
        return;
    }
    if digits(a) && digits(b) {
        // Numeric, zero-padded to the width of `a` (Ruby's "%.*ld").
        let width = a.len();
        let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            return;
        };
        for n in x..=y {
            if !f(format!("{n:0width$}")) {
                return;
            }
        }
        return;
    }
    if a > b {
        return;
    }
    let after_end = ruby_succ(b);
    let mut current = a.to_owned();
    while current != after_end {
        let next = (current != b).then(|| ruby_succ(&current));
        if !f(current.clone()) {
            return;
        }
        let Some(next) = next else { return };
        current = next;
        if current.len() > b.len() || current.is_empty() {
            return;
        }
    }
}

/// Ruby's `String#succ` for the ASCII alphanumerics ranges use: the
/// rightmost alphanumeric is incremented, carrying leftwards over other
/// alphanumerics (`az` -> `ba`, `zz` -> `aaa`, `1.9` -> `2.0`); without
/// alphanumerics the last character is incremented.
fn ruby_succ(s: &str) -> String {
    let mut b: Vec<u8> = s.as_bytes().to_vec();
    if b.is_empty() {
        return String::new();
    }
    if !b.iter().any(u8::is_ascii_alphanumeric) {
        let mut chars: Vec<char> = s.chars().collect();
        if let Some(last) = chars.last_mut() {
            *last = char::from_u32(*last as u32 + 1).unwrap_or(*last);
        }
        return chars.into_iter().collect();
    }
    let mut i = b.len();
    let mut leftmost = None;
    while i > 0 {
        i -= 1;
        let c = b[i];
        let (wrapped, carry_char) = match c {
            b'z' => (b'a', b'a'),
            b'Z' => (b'A', b'A'),
            b'9' => (b'0', b'1'),
            b'a'..=b'y' | b'A'..=b'Y' | b'0'..=b'8' => {
                b[i] = c + 1;
                return String::from_utf8(b).unwrap_or_default();
            }
            _ => continue,
        };
        b[i] = wrapped;
        leftmost = Some((i, carry_char));
    }
    if let Some((i, c)) = leftmost {
        b.insert(i, c);
    }
    String::from_utf8(b).unwrap_or_default()
}

/// The ids of one allocation on the page.
enum PageIds<'x> {
    /// A merged list's own order.
    Slice(&'x [u32]),
    /// Positions in the allocation's intersection.
    Set(&'x Set<'x>, Range<usize>),
}

impl PageIds<'_> {
    fn for_each(&self, mut f: impl FnMut(u32)) {
        match self {
            PageIds::Slice(v) => v.iter().copied().for_each(f),
            PageIds::Set(set, r) => match set.view() {
                View::List(l) => l.words()[r.clone()]
                    .iter()
                    .for_each(|&w| f(u32::from_le_bytes(w))),
                View::Slice(v) => v[r.clone()].iter().copied().for_each(f),
            },
        }
    }
}

/// What the paging loop hands each allocation to: a [`Results`] being
/// built, or JSON being written.
trait Answer {
    /// One allocation: its score, count, combination (`parts` of
    /// `fragments`, one per token) and the ids it shows on this page.
    fn allocation(
        &mut self,
        score: f64,
        count: u64,
        parts: &[Range<u32>],
        fragments: &[u8],
        ids: PageIds<'_>,
    );
}

impl Answer for Results<'_> {
    fn allocation(
        &mut self,
        score: f64,
        count: u64,
        parts: &[Range<u32>],
        _fragments: &[u8],
        ids: PageIds<'_>,
    ) {
        let first = self.parts.len();
        self.parts.extend_from_slice(parts);
        let mut page = Vec::new();
        ids.for_each(|id| page.push(id));
        self.allocations.push(Allocation {
            score,
            count,
            ids: page,
            parts: first..self.parts.len(),
        });
    }
}

/// Writes each allocation as JSON as soon as it is paged.
struct JsonAnswer<'o, 'e> {
    out: &'o mut Vec<u8>,
    name: &'e [u8],
    docs: crate::index::Docs<'e>,
    first: bool,
}

impl Answer for JsonAnswer<'_, '_> {
    fn allocation(
        &mut self,
        score: f64,
        count: u64,
        parts: &[Range<u32>],
        fragments: &[u8],
        ids: PageIds<'_>,
    ) {
        let out = &mut *self.out;
        if !write_allocation_head(out, &mut self.first, self.name, score, count) {
            return;
        }
        write_parts(out, parts.iter().map(|r| fragment(fragments, r)));
        let docs = self.docs;
        let mut first = true;
        ids.for_each(|id| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(docs.json(id));
        });
        out.extend_from_slice(b"]]");
    }
}

const JSON_HEAD: &[u8] = b"{\"allocations\":[";

fn fragment<'f>(fragments: &'f [u8], r: &Range<u32>) -> &'f [u8] {
    &fragments[r.start as usize..r.end as usize]
}

/// Writes `[name,score,count,` (after a `,` unless it is the first);
/// false for an allocation without ids, which Picky leaves out.
fn write_allocation_head(
    out: &mut Vec<u8>,
    first: &mut bool,
    name: &[u8],
    score: f64,
    count: u64,
) -> bool {
    if count == 0 {
        return false;
    }
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'[');
    out.extend_from_slice(name);
    out.push(b',');
    ruby::write_float(score, out);
    out.push(b',');
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    true
}

/// Writes `,[part,...],[` (the ids follow).
fn write_parts<'f>(out: &mut Vec<u8>, parts: impl Iterator<Item = &'f [u8]>) {
    out.extend_from_slice(b",[");
    for (i, part) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"],[");
}

/// Writes `],"offset":…,"duration":…,"total":…}`, `duration` in seconds
/// rounded to 6 places (exactly 0 is written `0`).
fn write_json_tail(offset: i64, duration: f64, total: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"],\"offset\":");
    out.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
    out.extend_from_slice(b",\"duration\":");
    if duration == 0.0 {
        out.push(b'0');
    } else {
        ruby::write_float(ruby::round(duration, 6), out);
    }
    out.extend_from_slice(b",\"total\":");
    out.extend_from_slice(itoa::Buffer::new().format(total).as_bytes());
    out.push(b'}');
}

impl Results<'_> {
    /// Picky's JSON, with `duration` in seconds (rounded to 6 places).
    pub fn write_json(&self, duration: f64, out: &mut Vec<u8>) {
        out.extend_from_slice(JSON_HEAD);
        // The same writer the server's answers go through.
        let mut json = JsonAnswer {
            out: &mut *out,
            name: self.engine.name_json(),
            docs: self.engine.docs(),
            first: true,
        };
        for a in &self.allocations {
            json.allocation(
                a.score,
                a.count,
                &self.parts[a.parts.clone()],
                &self.fragments,
                PageIds::Slice(&a.ids),
            );
        }
        write_json_tail(self.offset, duration, self.total, out);
    }

    pub fn to_json_string(&self, duration: f64) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(duration, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_slice_matches_ruby() {
        assert_eq!(ruby_slice(3, 0, 20), Some(0..3));
        assert_eq!(ruby_slice(3, 3, 20), Some(3..3));
        assert_eq!(ruby_slice(3, 4, 20), None);
        assert_eq!(ruby_slice(3, -1, 20), Some(2..3));
        assert_eq!(ruby_slice(3, -4, 20), None);
        assert_eq!(ruby_slice(3, 0, -1), None);
        assert_eq!(ruby_slice(0, 0, 5), Some(0..0));
    }

    #[test]
    fn ruby_split_drops_trailing_empties() {
        let split = |s| ruby_split(s, '|').collect::<Vec<_>>();
        assert_eq!(split("a|b"), ["a", "b"]);
        assert_eq!(split("a|"), ["a"]);
        assert_eq!(split("|a"), ["", "a"]);
        assert_eq!(split("a||b"), ["a", "", "b"]);
        assert_eq!(split("a||b||"), ["a", "", "b"]);
        assert!(split("").is_empty());
        assert!(split("|").is_empty());
        assert!(split("||").is_empty());
    }

    #[test]
    fn upto_like_ruby() {
        let collect = |a: &str, b: &str| {
            let mut v = Vec::new();
            ruby_upto(a, b, &mut |t| {
                v.push(t);
                v.len() < 1000
            });
            v
        };
        assert_eq!(collect("1998", "2001"), ["1998", "1999", "2000", "2001"]);
        assert_eq!(collect("09", "11"), ["09", "10", "11"]);
        assert_eq!(collect("a", "d"), ["a", "b", "c", "d"]);
        assert_eq!(collect("az", "bb"), ["az", "ba", "bb"]);
        assert!(collect("2001", "1998").is_empty());
        assert_eq!(ruby_succ("zz"), "aaa");
        assert_eq!(ruby_succ("a9"), "b0");
        assert_eq!(ruby_succ("1.9"), "2.0");
        assert_eq!(ruby_succ("Zz"), "AAa");
    }

    fn inter(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        intersect(View::Slice(a), View::Slice(b), &mut out);
        // The same through posting lists (as the mapped file holds them).
        let bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (ba, bb) = (bytes(a), bytes(b));
        let (la, lb) = (PostingList::new(&ba), PostingList::new(&bb));
        for (x, y) in [
            (View::List(la), View::List(lb)),
            (View::List(la), View::Slice(b)),
            (View::Slice(a), View::List(lb)),
        ] {
            let mut other = Vec::new();
            intersect(x, y, &mut other);
            assert_eq!(other, out);
        }
        out
    }

    #[test]
    fn intersection_gallops_correctly() {
        let a = [1u32, 3, 5, 7, 9, 200];
        let b: Vec<u32> = (0..300).collect();
        assert_eq!(inter(&a, &b), a);
        assert_eq!(inter(&b, &a), a);
        assert_eq!(inter(&[2, 4], &a), Vec::<u32>::new());
    }

    /// Merging (similar lengths), scanning and galloping (one much longer)
    /// agree with a set intersection, at every length ratio around the
    /// switches.
    #[test]
    fn intersections_match_sets() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..400 {
            let (na, nb) = (next(60) as usize, next(60 * (1 + round % 100)) as usize);
            let span = 1 + next(3000);
            let mut list = |n: usize| {
                let mut v: Vec<u32> = (0..n).map(|_| next(span) as u32).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let (a, b) = (list(na), list(nb));
            let expected: Vec<u32> = a
                .iter()
                .copied()
                .filter(|x| b.binary_search(x).is_ok())
                .collect();
            assert_eq!(inter(&a, &b), expected);
            assert_eq!(inter(&b, &a), expected);
        }
    }
}
