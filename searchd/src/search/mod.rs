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
//!
//! This module is the search half of [`Engine`] (the other half, opening a
//! snapshot and wiring up its sections, is `index.rs`): the entry points,
//! the answer types and the per-thread scratch buffers. One step per
//! submodule, in the order a query takes them:
//! - `query`: the query's words and their parsing into tokens;
//! - `combine`: each token's combinations (category, weight, ids);
//! - `walk`: the allocations walked, scored, sorted and paged;
//! - `sets`: the sorted id lists the walk intersects;
//! - `render`: allocations handed to a [`Results`] or written as JSON.
//!
//! The Ruby these steps follow (`String#split`, `String#upto`,
//! `Array#[start, length]`, `Float#to_s`, the json gem's escaping) is in
//! [`crate::ruby`].

mod combine;
mod query;
mod render;
mod sets;
mod walk;

use std::ops::Range;

use crate::def::Number;
use crate::index::Engine;
use combine::Combos;
use query::{Part, Token, Words};
use render::{Answer, JSON_HEAD, JsonAnswer, write_json_tail};
use walk::{Member, WalkScratch};

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

/// Picky's Search options ([`crate::def::SearchOptions`]) with category
/// numbers for names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) max_allocations: Option<usize>,
    pub(crate) terminate_early: Option<i64>,
    /// Per category: left out of allocations after the cut.
    pub(crate) ignored: Vec<bool>,
    pub(crate) ignore_combinations: Vec<Vec<usize>>,
    pub(crate) only: Vec<Vec<usize>>,
    pub(crate) ignore_unassigned: bool,
    pub(crate) unique: bool,
}

impl Options {
    /// `category` gives a name's number; `None` if it gives none for a
    /// name. A number past `categories` (an index of a search without the
    /// category) matches no allocation.
    pub(crate) fn resolve(
        o: &crate::def::SearchOptions,
        category: impl Fn(&str) -> Option<usize>,
        categories: usize,
    ) -> Option<Options> {
        let seq = |names: &Vec<String>| -> Option<Vec<usize>> {
            names.iter().map(|n| category(n)).collect()
        };
        let mut ignored = vec![false; categories];
        for n in &o.ignore_categories {
            if let Some(i) = ignored.get_mut(category(n)?) {
                *i = true;
            }
        }
        Some(Options {
            max_allocations: o
                .max_allocations
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            terminate_early: o
                .terminate_early
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            ignored,
            ignore_combinations: o
                .ignore_combinations
                .iter()
                .map(seq)
                .collect::<Option<_>>()?,
            only: o.only.iter().map(seq).collect::<Option<_>>()?,
            ignore_unassigned: o.ignore_unassigned_tokens,
            unique: o.unique,
        })
    }

    /// Whether an allocation must run through every allocation of the
    /// product, empty ones included: they take `max_allocations` slots and
    /// count as `terminate_early`'s extra allocations in Picky.
    pub(crate) fn keeps_empty(&self) -> bool {
        self.max_allocations.is_some() || self.terminate_early.is_some()
    }
}

/// More facet words than this with a filter (one search each) is refused.
pub const MAX_FACET_SEARCHES: usize = 10_000;

/// Why facets were not answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FacetError {
    #[error("no category {0:?}")]
    UnknownCategory(String),
    #[error("category {0:?} has no facets (set facets = true on it in the index definition)")]
    NotFaceted(String),
    #[error(
        "the category has {0} words; facets with a filter run one search per word, at most {MAX_FACET_SEARCHES}"
    )]
    TooMany(usize),
    #[error(
        "facets are per index, and this is a search over several indexes (Picky's Search#facets refuses them too)"
    )]
    SeveralIndexes,
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// An answer that only counts (facets need just the total).
struct Count;

impl render::Answer for Count {
    fn allocation(
        &mut self,
        _index: usize,
        _score: Number,
        _count: u64,
        _parts: &[Range<u32>],
        _fragments: &[u8],
        _ids: render::PageIds<'_>,
    ) {
    }
}

/// One allocation in an answer.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// Which of the search's indexes it is of ([`Engine::index_at`]; 0 for
    /// an index).
    pub index: usize,
    /// An integer when every weight and the boost were (as in Ruby).
    pub score: Number,
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
        let mut json = JsonAnswer::new(out, self);
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
        if !self.members.is_empty() {
            return self.search_indexes(words, ids, offset, scratch, answer);
        }
        let Some(tokens) = self.parse(words) else {
            return Ok(0);
        };
        if tokens.is_empty() {
            return Ok(0);
        }
        let Some(combos) = self.combos(&tokens, starts)? else {
            return Ok(0);
        };
        self.answer(&combos, ids, offset, self.opts.unique, scratch, answer)
    }

    /// [`Engine::search_with`] for a search over several indexes: the
    /// words (read by the search's tokenizer) parsed by each index (its
    /// qualifiers), each index's combinations found, then all allocations
    /// answered as one list.
    fn search_indexes(
        &self,
        words: &Words,
        ids: i64,
        offset: i64,
        scratch: &mut AnswerScratch,
        answer: &mut impl Answer,
    ) -> Result<u64, SearchError> {
        let mut tokens = Vec::with_capacity(self.members.len());
        for m in &self.members {
            // Only the qualifiers' categories differ between indexes: a
            // word that fails to parse (only `|`) fails in every one.
            match m.parse(words) {
                Some(t) if !t.is_empty() => tokens.push(t),
                _ => return Ok(0),
            }
        }
        let mut starts = vec![Vec::new(); self.members.len()];
        let mut found = Vec::with_capacity(self.members.len());
        for (index, ((m, t), s)) in self
            .members
            .iter()
            .zip(&tokens)
            .zip(&mut starts)
            .enumerate()
        {
            // An index where some word is found nowhere has no allocations
            // (unless such words are ignored); the others still answer.
            if let Some(combos) = m.combos(t, s)? {
                found.push((index, m, combos));
            }
        }
        let members: Vec<Member<'_, '_>> = found
            .iter()
            .map(|(index, engine, combos)| Member {
                index: *index,
                engine,
                combos,
            })
            .collect();
        walk::answer_all(
            &self.opts,
            &members,
            ids,
            offset,
            self.opts.unique,
            scratch,
            answer,
        )
    }

    /// Every token's combinations; `None` when the query can have no
    /// allocation (a token found nowhere, unless such tokens are ignored).
    fn combos<'a, 's>(
        &'a self,
        tokens: &'a [Token<'_>],
        starts: &'s mut Vec<usize>,
    ) -> Result<Option<Combos<'a, 's>>, SearchError> {
        let mut all = Vec::with_capacity(tokens.len() * self.categories.len());
        let mut any_empty = false;
        starts.clear();
        for t in tokens {
            let start = all.len();
            self.token_combinations(t, &mut all)?;
            if all.len() == start {
                // `ignore_unassigned_tokens`: a word found nowhere is left
                // out; otherwise it leaves no allocation.
                any_empty |= !self.opts.ignore_unassigned;
            } else {
                starts.push(start);
            }
        }
        starts.push(all.len());
        if any_empty || starts.len() == 1 {
            return Ok(None);
        }
        Ok(Some(Combos { all, starts }))
    }

    /// [`Engine::facets`] as Picky's JSON: `{"word":count,…}`, or with
    /// `counts` false `["word",…]`.
    pub fn facets_json(
        &self,
        category: &str,
        filter: Option<&str>,
        at_least: Option<i64>,
        counts: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), FacetError> {
        let facets = self.facets(category, filter, at_least)?;
        out.push(if counts { b'{' } else { b'[' });
        for (i, (word, n)) in facets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::ruby::write_json_str(word, out);
            if counts {
                out.push(b':');
                out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            }
        }
        out.push(if counts { b'}' } else { b']' });
        Ok(())
    }

    /// Picky's facets of `category` (which must have `facets = true`):
    /// each word indexed there, in the order Picky first met it, with its
    /// count. Without a filter the count is its number of documents
    /// (`Index#facets`; `at_least` keeps those with at least that many).
    /// With one it is the total of the filter query plus that word,
    /// exact, in that category (`Search#facets`: the filter's last word not
    /// made partial, ids 1000 with `unique`, the search options applied;
    /// `at_least` defaults to 1 there).
    pub fn facets(
        &self,
        category: &str,
        filter: Option<&str>,
        at_least: Option<i64>,
    ) -> Result<Vec<(&str, u64)>, FacetError> {
        if !self.members.is_empty() {
            return Err(FacetError::SeveralIndexes);
        }
        let ci = self
            .categories
            .iter()
            .position(|c| c.name == category)
            .ok_or_else(|| FacetError::UnknownCategory(category.to_owned()))?;
        let cat = &self.categories[ci];
        let keys = cat
            .facet_keys()
            .ok_or_else(|| FacetError::NotFaceted(category.to_owned()))?;
        // `Index#facets`: every word with its documents, `at_least` (no
        // default) applied. With a filter Picky starts from these, so
        // `at_least` thins the words before the searches too.
        let counted = keys.filter_map(|k| {
            let n = cat.exact.get(k).map_or(0, |l| l.len()) as u64;
            at_least.is_none_or(|m| n as i64 >= m).then_some((k, n))
        });
        let Some(filter) = filter else {
            return Ok(counted.collect());
        };
        let minimal = at_least.unwrap_or(1);
        let keys: Vec<&str> = counted.map(|(k, _)| k).collect();
        if keys.len() > MAX_FACET_SEARCHES {
            return Err(FacetError::TooMany(keys.len()));
        }
        with_scratch(|s| {
            let Scratch {
                words,
                starts,
                answer: scratch,
            } = s;
            self.words(filter, words);
            // A word that is only `|` fails Picky's parse: no facet then.
            let Some(mut tokens) = self.parse_with(words, false) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for key in keys {
                tokens.push(Token::One(Part::exact_in(ci, key)));
                let total = match self.combos(&tokens, starts)? {
                    Some(combos) => self.answer(&combos, 1000, 0, true, scratch, &mut Count)?,
                    None => 0,
                };
                tokens.pop();
                if total as i64 >= minimal {
                    out.push((key, total));
                }
            }
            Ok(out)
        })
    }
}
