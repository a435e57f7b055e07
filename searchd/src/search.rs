//! Answering a query the way Picky does: words -> tokens (qualifiers, `|`
//! alternatives, `*` partial, `"` exact, `~` similar) -> per-token
//! combinations -> allocations (their cartesian product), scored, sorted,
//! intersected and paged; then rendered as Picky's JSON.
//!
//! The product is walked depth-first in Picky's order (first token slowest)
//! and a branch stops as soon as its intersection is empty: such allocations
//! never show in an answer, so pruning them changes nothing but the cost.

use std::borrow::Cow;

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

/// One query word after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// Allowed categories, in the order given (duplicates kept); `None`
    /// means every category in index order.
    categories: Option<Vec<usize>>,
    text: String,
    original: String,
    similar: bool,
    partial: Option<bool>,
    /// `a…b`: the text split at the first range character, taken before
    /// `"`, `~` and `*` are removed (as Picky does).
    range: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    One(Part),
    /// `a|b`: its parts' combinations merged into one.
    Or(Vec<Part>),
}

/// Ruby's `String#split(",")`/`split("|")`: trailing empty parts dropped.
fn ruby_split(s: &str, sep: char) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

impl Engine {
    fn parse_part(&self, raw: &str, original: Option<&str>) -> Part {
        let (categories, text) = match raw.split_once(':') {
            Some((quals, text)) => {
                let cats = ruby_split(quals, ',')
                    .into_iter()
                    .filter_map(|q| self.qualifiers.get(q).copied())
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
        let range = text
            .split_once(RANGE_CHARACTER)
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let clean: String = text
            .chars()
            .filter(|c| !matches!(c, '"' | '~' | '*'))
            .collect();
        let original = match original {
            Some(o) => o.to_owned(),
            None if categories.is_some() => raw.to_owned(),
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

    /// Parses the query into tokens; `None` where Picky fails (a word that
    /// is only `|`), which searchd answers with an empty result.
    fn parse(&self, query: &str) -> Option<Vec<Token>> {
        let words = self.with_tokenizer(|t| {
            let pre = t.preprocess(query);
            let mut words = Vec::new();
            t.each_word(&pre, |w| words.push(w.into_owned()));
            words
        });
        let mut tokens = Vec::with_capacity(words.len());
        for word in &words {
            if !word.contains('|') {
                tokens.push(Token::One(self.parse_part(word, None)));
                continue;
            }
            let parts = ruby_split(word, '|');
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
            let parts: &mut [Part] = match last {
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

impl Engine {
    fn part_combinations<'a>(
        &'a self,
        part: &'a Part,
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
                            original: Cow::Owned(word.to_owned()),
                            text: Cow::Owned(word.to_owned()),
                        });
                    }
                }
            }
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
                    return Err(SearchError::RangeTooLarge(part.text.clone()));
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
            let ids = match &texts {
                None => table
                    .get(&part.text)
                    .map(|list| (cat.weight_of(list), Ids::Index(list))),
                // Picky sums the weights of the texts found and concatenates
                // their lists (duplicates kept).
                Some(texts) => {
                    let mut weight: Option<f64> = None;
                    let mut ordered = Vec::new();
                    for t in texts {
                        if let Some(list) = table.get(t) {
                            weight = Some(cat.weight_of(list) + weight.unwrap_or(0.0));
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

    fn token_combinations<'a>(
        &'a self,
        token: &'a Token,
    ) -> Result<Vec<Combination<'a>>, SearchError> {
        let mut out = Vec::new();
        match token {
            Token::One(p) => self.part_combinations(p, &mut out)?,
            Token::Or(parts) => {
                let mut all = Vec::new();
                for p in parts {
                    self.part_combinations(p, &mut all)?;
                }
                if all.is_empty() {
                    return Ok(out);
                }
                let join = |f: &dyn Fn(&Combination<'a>) -> String| {
                    all.iter().map(f).collect::<Vec<_>>().join("|")
                };
                let label = join(&|c| match &c.label {
                    Label::Category(ci) => self.categories[*ci].name.clone(),
                    Label::Joined(s) => s.clone(),
                });
                let original = join(&|c| c.original.to_string());
                let text = join(&|c| c.text.to_string());
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
            }
        }
        Ok(out)
    }
}

/// The running intersection of a branch of the product walk.
#[derive(Debug, Clone)]
enum Set<'a> {
    Index(PostingList<'a>),
    Owned(Vec<u32>),
}

impl Set<'_> {
    fn len(&self) -> usize {
        match self {
            Set::Index(l) => l.len(),
            Set::Owned(v) => v.len(),
        }
    }
    fn get(&self, i: usize) -> u32 {
        match self {
            Set::Index(l) => l.get(i),
            Set::Owned(v) => v[i],
        }
    }
    fn contains(&self, x: u32) -> bool {
        match self {
            Set::Owned(v) => v.binary_search(&x).is_ok(),
            Set::Index(l) => {
                let (mut lo, mut hi) = (0, l.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match l.get(mid).cmp(&x) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return true,
                    }
                }
                false
            }
        }
    }
}

trait Sorted {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> u32;
}
impl Sorted for PostingList<'_> {
    fn len(&self) -> usize {
        PostingList::len(self)
    }
    fn at(&self, i: usize) -> u32 {
        self.get(i)
    }
}
impl Sorted for [u32] {
    fn len(&self) -> usize {
        <[u32]>::len(self)
    }
    fn at(&self, i: usize) -> u32 {
        self[i]
    }
}
impl Sorted for Set<'_> {
    fn len(&self) -> usize {
        Set::len(self)
    }
    fn at(&self, i: usize) -> u32 {
        self.get(i)
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

/// Sorted intersection: walks the shorter list, gallops through the longer.
fn intersect(a: &(impl Sorted + ?Sized), b: &(impl Sorted + ?Sized)) -> Vec<u32> {
    let (short, long): (&dyn Fn(usize) -> u32, &dyn Fn(usize) -> u32);
    let (ns, nl);
    let sa = |i| a.at(i);
    let sb = |i| b.at(i);
    if a.len() <= b.len() {
        (short, long, ns, nl) = (&sa, &sb, a.len(), b.len());
    } else {
        (short, long, ns, nl) = (&sb, &sa, b.len(), a.len());
    }
    struct F<'f>(&'f dyn Fn(usize) -> u32, usize);
    impl Sorted for F<'_> {
        fn len(&self) -> usize {
            self.1
        }
        fn at(&self, i: usize) -> u32 {
            (self.0)(i)
        }
    }
    let long = F(long, nl);
    let mut out = Vec::with_capacity(ns.min(nl));
    let mut j = 0;
    for i in 0..ns {
        let x = short(i);
        j = gallop(&long, j, x);
        if j >= nl {
            break;
        }
        if long.at(j) == x {
            out.push(x);
            j += 1;
        }
    }
    out
}

fn intersect_with<'a>(set: &Set<'a>, ids: &Ids<'a>) -> Set<'a> {
    match ids {
        Ids::Index(l) => Set::Owned(intersect(set, l)),
        Ids::Merged { sorted, .. } => Set::Owned(intersect(set, sorted.as_slice())),
    }
}

/// One allocation that survived the walk.
#[derive(Debug)]
struct Found<'a> {
    picks: Vec<usize>,
    score: f64,
    set: Set<'a>,
}

/// One allocation in an answer.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub score: f64,
    pub count: u64,
    /// `[category, original, text]` per token.
    pub combination: Vec<[String; 3]>,
    /// Document numbers on this page.
    pub ids: Vec<u32>,
}

/// A query's answer, ready to render.
#[derive(Debug)]
pub struct Results<'e> {
    engine: &'e Engine,
    pub allocations: Vec<Allocation>,
    pub offset: i64,
    pub total: u64,
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

impl Engine {
    /// Answers `query` with `ids` results per page starting at `offset`.
    pub fn search(&self, query: &str, ids: i64, offset: i64) -> Result<Results<'_>, SearchError> {
        let empty = |engine| Results {
            engine,
            allocations: Vec::new(),
            offset,
            total: 0,
        };
        let Some(tokens) = self.parse(query) else {
            return Ok(empty(self));
        };
        if tokens.is_empty() {
            return Ok(empty(self));
        }
        let combos = tokens
            .iter()
            .map(|t| self.token_combinations(t))
            .collect::<Result<Vec<_>, _>>()?;
        if combos.iter().any(Vec::is_empty) {
            return Ok(empty(self));
        }

        // Depth-first walk of the product, first token slowest.
        let mut found: Vec<Found<'_>> = Vec::new();
        walk(&combos, &mut |picks, set| {
            let mut score = 0.0;
            for (t, &k) in picks.iter().enumerate() {
                score += combos[t][k].weight;
            }
            score += self.boost(picks.iter().enumerate().map(|(t, &k)| &combos[t][k].label));
            found.push(Found {
                picks: picks.to_vec(),
                score,
                set: set.clone(),
            });
        })?;
        // Stable: equal scores keep the product order.
        found.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });

        let mut amount = ids;
        let mut off = offset;
        let mut total = 0u64;
        let mut allocations = Vec::with_capacity(found.len());
        for f in found {
            let ordered = ordered_ids(&combos, &f);
            let count = ordered.as_ref().map_or(f.set.len(), Vec::len);
            total += count as u64;
            let page_ids = match ruby_slice(count, off, amount) {
                Some(r) if !r.is_empty() => match &ordered {
                    Some(v) => v[r].to_vec(),
                    None => r.map(|i| f.set.get(i)).collect(),
                },
                _ => Vec::new(),
            };
            if page_ids.is_empty() {
                if off != 0 {
                    off = off.saturating_sub(count as i64);
                }
            } else {
                amount -= page_ids.len() as i64;
                off = 0;
            }
            let combination = f
                .picks
                .iter()
                .enumerate()
                .map(|(t, &k)| {
                    let c = &combos[t][k];
                    let label = match &c.label {
                        Label::Category(ci) => self.categories[*ci].name.clone(),
                        Label::Joined(s) => s.clone(),
                    };
                    [label, c.original.to_string(), c.text.to_string()]
                })
                .collect();
            allocations.push(Allocation {
                score: f.score,
                count: count as u64,
                combination,
                ids: page_ids,
            });
        }
        Ok(Results {
            engine: self,
            allocations,
            offset,
            total,
        })
    }

    /// Boost for an allocation's category sequence, neighbouring duplicates
    /// merged; joined (OR) labels match no boost.
    fn boost<'l>(&self, labels: impl Iterator<Item = &'l Label>) -> f64 {
        let mut seq: Vec<usize> = Vec::new();
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
            .find(|(b, _)| *b == seq)
            .map_or(0.0, |(_, v)| *v)
    }
}

/// Picky's order of an allocation's ids is that of its longest list (the
/// last of the lists stably sorted by length), restricted to the
/// intersection. For index lists that is ascending, the set's own order
/// (`None`); a merged list (OR, range) gives its own order, duplicates kept.
fn ordered_ids(combos: &[Vec<Combination<'_>>], f: &Found<'_>) -> Option<Vec<u32>> {
    let mut longest: Option<&Ids<'_>> = None;
    for (t, &k) in f.picks.iter().enumerate() {
        let ids = &combos[t][k].ids;
        if longest.is_none_or(|l| ids.len() >= l.len()) {
            longest = Some(ids);
        }
    }
    match longest {
        Some(Ids::Merged { ordered, .. }) if f.picks.len() == 1 => Some(ordered.clone()),
        Some(Ids::Merged { ordered, .. }) => Some(
            ordered
                .iter()
                .copied()
                .filter(|&x| f.set.contains(x))
                .collect(),
        ),
        _ => None,
    }
}

/// Walks the product depth-first, first token slowest, without recursion
/// (a query may have thousands of words). Each allocation visited costs one
/// unit of work and each one found as many units as the query has tokens
/// (its picks are copied and its score summed), so both wide and deep
/// queries stop at the same bound.
fn walk<'a>(
    combos: &'a [Vec<Combination<'a>>],
    emit: &mut dyn FnMut(&[usize], &Set<'a>),
) -> Result<(), SearchError> {
    let n = combos.len();
    let mut work = 0usize;
    let mut picks: Vec<usize> = Vec::with_capacity(n);
    let mut sets: Vec<Set<'a>> = Vec::with_capacity(n);
    let mut next = vec![0usize; n];
    let mut depth = 0usize;
    loop {
        if next[depth] >= combos[depth].len() {
            next[depth] = 0;
            if depth == 0 {
                return Ok(());
            }
            depth -= 1;
            picks.pop();
            sets.pop();
            continue;
        }
        let k = next[depth];
        next[depth] += 1;
        work += 1;
        if work > MAX_QUERY_WORK {
            return Err(SearchError::TooComplex);
        }
        let c = &combos[depth][k];
        let set = match sets.last() {
            None => match &c.ids {
                Ids::Index(l) => Set::Index(*l),
                Ids::Merged { sorted, .. } => Set::Owned(sorted.clone()),
            },
            Some(prev) => intersect_with(prev, &c.ids),
        };
        if set.len() == 0 {
            continue;
        }
        picks.push(k);
        if depth + 1 == n {
            work += n;
            if work > MAX_QUERY_WORK {
                return Err(SearchError::TooComplex);
            }
            emit(&picks, &set);
            picks.pop();
        } else {
            sets.push(set);
            depth += 1;
        }
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

impl Results<'_> {
    /// Picky's JSON, with `duration` in seconds (rounded to 6 places).
    pub fn write_json(&self, duration: f64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"allocations\":[");
        let mut first = true;
        for a in self.allocations.iter().filter(|a| a.count > 0) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'[');
            ruby::write_json_str(self.engine.name(), out);
            out.push(b',');
            ruby::write_float(a.score, out);
            out.push(b',');
            out.extend_from_slice(itoa::Buffer::new().format(a.count).as_bytes());
            out.extend_from_slice(b",[");
            for (i, [c, o, t]) in a.combination.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                ruby::write_json_str(c, out);
                out.push(b',');
                ruby::write_json_str(o, out);
                out.push(b',');
                ruby::write_json_str(t, out);
                out.push(b']');
            }
            out.extend_from_slice(b"],[");
            for (i, &id) in a.ids.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(self.engine.doc_json(id));
            }
            out.extend_from_slice(b"]]");
        }
        out.extend_from_slice(b"],\"offset\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.offset).as_bytes());
        out.extend_from_slice(b",\"duration\":");
        if duration == 0.0 {
            out.push(b'0');
        } else {
            ruby::write_float(ruby::round(duration, 6), out);
        }
        out.extend_from_slice(b",\"total\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.total).as_bytes());
        out.push(b'}');
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
        assert_eq!(ruby_split("a|b", '|'), ["a", "b"]);
        assert_eq!(ruby_split("a|", '|'), ["a"]);
        assert_eq!(ruby_split("|a", '|'), ["", "a"]);
        assert_eq!(ruby_split("a||b", '|'), ["a", "", "b"]);
        assert!(ruby_split("|", '|').is_empty());
        assert!(ruby_split("||", '|').is_empty());
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

    #[test]
    fn intersection_gallops_correctly() {
        let a = [1u32, 3, 5, 7, 9, 200];
        let b: Vec<u32> = (0..300).collect();
        assert_eq!(intersect(a.as_slice(), b.as_slice()), a);
        assert_eq!(intersect(b.as_slice(), a.as_slice()), a);
        assert_eq!(
            intersect([2u32, 4].as_slice(), a.as_slice()),
            Vec::<u32>::new()
        );
    }
}
