//! The allocations: the cartesian product of the tokens' combinations,
//! walked depth-first and pruned at empty intersections, each allocation
//! found scored (weights and boosts), then stably sorted by score and paged
//! like Ruby's `Array#[offset, amount]`, its ids in Picky's order.

use std::borrow::Cow;

use super::combine::{Combos, Ids, Label};
use super::render::{Answer, PageIds};
use super::sets::{Set, View, intersect};
use super::{AnswerScratch, MAX_QUERY_WORK, SearchError};
use crate::def::Number;
use crate::index::Engine;
use crate::ruby;

/// One allocation that survived the walk; its picks are
/// `picks[at..at + tokens]` of the walk's flat list, indices into its
/// index's combinations.
#[derive(Debug)]
struct Found<'a> {
    at: usize,
    score: Number,
    set: Set<'a>,
    /// Its index: a position in `answer_all`'s members.
    member: usize,
}

/// The ids an allocation shows on the page.
enum Page {
    /// Positions in its ids (in Picky's order).
    Range(std::ops::Range<usize>),
    /// `unique`'s own selection.
    Owned(Vec<u32>),
}

/// Picky's paging over the sorted allocations (`Allocations#process!`
/// and, with `unique`, `process_unique!`): what is left of the page and
/// the offset, the extra allocations `terminate_early` allows once the
/// page is full, and the ids `unique` has shown.
struct Paging<'e> {
    amount: i64,
    off: i64,
    extra: Option<i64>,
    /// `unique` compares ids as Ruby does (`Array#-`): by value, so the
    /// same id in two indexes of a search is one; their JSON says it.
    seen: Option<std::collections::HashSet<&'e [u8]>>,
}

impl<'e> Paging<'e> {
    /// The count and the page of an allocation of `engine` with `count`
    /// ids (`all` lists them in Picky's order).
    fn page<'s>(
        &mut self,
        engine: &'e Engine,
        count: usize,
        all: impl FnOnce() -> Box<dyn Iterator<Item = u32> + 's>,
    ) -> (usize, Page) {
        let Some(seen) = &mut self.seen else {
            let page = match ruby::slice(count, self.off, self.amount) {
                Some(r) if !r.is_empty() => r,
                _ => 0..0,
            };
            if page.is_empty() {
                if self.off != 0 {
                    self.off = self.off.saturating_sub(count as i64);
                }
            } else {
                self.amount -= page.len() as i64;
                self.off = 0;
            }
            return (count, Page::Range(page));
        };
        // Picky's `process_with_illegals!`, quirks included: the ids seen
        // on the page so far are left out (so counts and the total depend
        // on `ids`), the page is taken from the start, then the offset
        // dropped from it.
        let docs = engine.docs();
        let mut calc: Vec<u32> = all().filter(|&x| !seen.contains(docs.json(x))).collect();
        let count = calc.len();
        calc.truncate(usize::try_from(self.amount).unwrap_or(0));
        seen.extend(calc.iter().map(|&x| docs.json(x)));
        let projected = self.off.saturating_sub(count as i64);
        if projected <= 0 {
            let drop = usize::try_from(self.off).unwrap_or(0).min(calc.len());
            calc.drain(..drop);
        }
        self.off = projected;
        if !calc.is_empty() {
            self.amount -= calc.len() as i64;
            self.off = 0;
        }
        (count, Page::Owned(calc))
    }

    /// `terminate_early`: once the page is full, this many more
    /// allocations, then stop.
    fn terminated(&mut self) -> bool {
        match &mut self.extra {
            Some(te) if self.amount <= 0 => {
                if *te <= 0 {
                    return true;
                }
                *te -= 1;
                false
            }
            _ => false,
        }
    }
}

/// A set's ids, ascending.
fn set_ids<'s>(set: &'s Set<'_>) -> Box<dyn Iterator<Item = u32> + 's> {
    match set.view() {
        View::List(l) => Box::new(l.iter()),
        View::Slice(s) => Box::new(s.iter().copied()),
    }
}

/// One index's part of an answer: the index and the query's combinations
/// in it (a search over several indexes has one each).
pub(super) struct Member<'a, 'c> {
    /// Which of the search's indexes (0 for an index).
    pub(super) index: usize,
    pub(super) engine: &'a Engine,
    pub(super) combos: &'c Combos<'a, 'c>,
}

impl Engine {
    /// Walks, scores, filters (`only`, ignored combinations), sorts, cuts
    /// (`max_allocations`) and pages the allocations of `combos` (with
    /// `terminate_early` and `unique` as Picky does), handing each
    /// processed one to `answer`; returns the total.
    pub(super) fn answer(
        &self,
        combos: &Combos<'_, '_>,
        ids: i64,
        offset: i64,
        unique: bool,
        scratch: &mut AnswerScratch,
        answer: &mut impl Answer,
    ) -> Result<u64, SearchError> {
        let members = [Member {
            index: 0,
            engine: self,
            combos,
        }];
        answer_all(&self.opts, &members, ids, offset, unique, scratch, answer)
    }
}

/// [`Engine::answer`] over the indexes of a search: each index's
/// allocations walked, scored and filtered with its own combinations and
/// categories, in the search's order; then all of them sorted (stably:
/// equal scores keep that order), cut and paged as one list, with the
/// search's options (`opts`).
pub(super) fn answer_all(
    opts: &super::Options,
    members: &[Member<'_, '_>],
    ids: i64,
    offset: i64,
    unique: bool,
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
    // Where each index's combinations start in the numbering of all of
    // them (`ignored` and `rendered` are indexed by it).
    let mut bases = Vec::with_capacity(members.len());
    let mut combinations = 0;
    for m in members {
        bases.push(combinations);
        combinations += m.combos.all.len();
    }
    // Per combination: whether its category is ignored (`ignore :name`);
    // empty (no allocation) when none is.
    let ignored: Vec<bool> = if members
        .iter()
        .any(|m| m.engine.opts.ignored.contains(&true))
    {
        members
            .iter()
            .flat_map(|m| {
                m.combos
                    .all
                    .iter()
                    .map(|c| matches!(c.label, Label::Category(ci) if m.engine.opts.ignored[ci]))
            })
            .collect()
    } else {
        Vec::new()
    };
    let is_ignored = |c: usize| ignored.get(c).copied().unwrap_or(false);
    let mut found = walk_all(opts, members, &bases, &ignored, walk_scratch, picks, seq)?;
    // Stable: equal scores keep the product order.
    found.sort_by(|a, b| {
        b.score
            .value()
            .partial_cmp(&a.score.value())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if let Some(max) = opts.max_allocations {
        for f in found.drain(max.min(found.len())..) {
            if let Set::Owned(v) = f.set {
                walk_scratch.spare.push(v);
            }
        }
    }

    fragments.clear();
    // A rendered combination is never empty: empty means not yet.
    rendered.clear();
    rendered.resize(combinations, 0..0);
    let mut total = 0u64;
    let mut paging = Paging {
        amount: ids,
        off: offset,
        extra: opts.terminate_early,
        seen: unique.then(std::collections::HashSet::new),
    };
    let mut kept: Vec<usize> = Vec::new();
    for f in found {
        let Member {
            index,
            engine,
            combos,
        } = members[f.member];
        let base = bases[f.member];
        let n = combos.tokens();
        kept.clear();
        kept.extend(
            picks[f.at..f.at + n]
                .iter()
                .copied()
                .filter(|&c| !is_ignored(base + c)),
        );
        let ordered = ordered_ids(combos, &kept, &f.set);
        let (count, page) = match &ordered {
            Some(v) => paging.page(engine, v.len(), || Box::new(v.iter().copied())),
            None => paging.page(engine, f.set.len(), || set_ids(&f.set)),
        };
        total += count as u64;
        parts.clear();
        for &c in &kept {
            if rendered[base + c].is_empty() {
                rendered[base + c] = engine.render_combination(&combos.all[c], fragments);
            }
            parts.push(rendered[base + c].clone());
        }
        let ids = match (&page, &ordered) {
            (Page::Owned(v), _) => PageIds::Slice(v),
            (Page::Range(r), Some(v)) => PageIds::Slice(&v[r.clone()]),
            (Page::Range(r), None) => PageIds::Set(&f.set, r.clone()),
        };
        answer.allocation(index, f.score, count as u64, parts, fragments, ids);
        if let Set::Owned(v) = f.set {
            walk_scratch.spare.push(v);
        }
        if paging.terminated() {
            break;
        }
    }
    Ok(total)
}

/// Each index's allocations walked in the search's order (depth-first,
/// first token slowest), filtered (`only`, ignored combinations) and
/// scored; their picks appended to `picks`.
fn walk_all<'c>(
    opts: &super::Options,
    members: &[Member<'_, 'c>],
    bases: &[usize],
    ignored: &[bool],
    walk_scratch: &mut WalkScratch,
    picks: &mut Vec<usize>,
    seq: &mut Vec<usize>,
) -> Result<Vec<Found<'c>>, SearchError> {
    let mut found: Vec<Found<'c>> = Vec::with_capacity(8);
    picks.clear();
    walk_scratch.work = 0;
    for (member, (m, &base)) in members.iter().zip(bases).enumerate() {
        let (engine, combos) = (m.engine, m.combos);
        let rules = Walk {
            ignored: ignored.get(base..base + combos.all.len()).unwrap_or(&[]),
            keep_empty: opts.keeps_empty(),
        };
        walk(combos, walk_scratch, &rules, &mut |p, set| {
            let labels = || p.iter().map(|&c| &combos.all[c].label);
            if !engine.allowed(labels(), seq) {
                return false;
            }
            // Ruby: `combinations.inject(0) { |total, c| total + c.weight }
            // + boost` (the boost 0 without one).
            let mut score = Number::Int(0);
            for &c in p {
                score = score + combos.all[c].weight;
            }
            score = score + engine.boost(labels(), seq);
            found.push(Found {
                at: picks.len(),
                score,
                set,
                member,
            });
            picks.extend_from_slice(p);
            true
        })?;
    }
    Ok(found)
}

impl Engine {
    /// Picky's `only` and ignored combinations: an allocation's categories,
    /// neighbouring repeats merged, must be one of `only` (if any) and none
    /// of the ignored. Joined (OR) labels are no category's.
    fn allowed<'l>(&self, labels: impl Iterator<Item = &'l Label>, seq: &mut Vec<usize>) -> bool {
        let opts = &self.opts;
        if opts.only.is_empty() && opts.ignore_combinations.is_empty() {
            return true;
        }
        seq.clear();
        let mut joined = false;
        for l in labels {
            match l {
                Label::Category(ci) => {
                    if seq.last() != Some(ci) {
                        seq.push(*ci);
                    }
                }
                Label::Joined(_) => joined = true,
            }
        }
        if joined {
            return opts.only.is_empty();
        }
        (opts.only.is_empty() || opts.only.iter().any(|o| o == seq))
            && !opts.ignore_combinations.iter().any(|o| o == seq)
    }

    /// Boost for an allocation's category sequence, neighbouring duplicates
    /// merged; joined (OR) labels match no boost. `seq` is scratch space.
    fn boost<'l>(&self, labels: impl Iterator<Item = &'l Label>, seq: &mut Vec<usize>) -> Number {
        let none = Number::Int(0);
        if self.boosts.is_empty() {
            return none;
        }
        seq.clear();
        for l in labels {
            match l {
                Label::Category(ci) => {
                    if seq.last() != Some(ci) {
                        seq.push(*ci);
                    }
                }
                Label::Joined(_) => return none,
            }
        }
        self.boosts
            .iter()
            .find(|(b, _)| b == seq)
            .map_or(none, |(_, v)| *v)
    }
}

/// Picky's order of an allocation's ids is that of its longest list (the
/// last of the lists stably sorted by length), restricted to the
/// intersection. For index lists that is ascending, the set's own order
/// (`None`); a merged list (OR, range) gives its own order, its duplicates
/// kept only when it is the allocation's one list.
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
        // Picky's intersection pushes each id of the longest list that it
        // can delete from the others' (a hash or array delete): once each,
        // where it first comes. A list alone is shown as it is.
        Some(Ids::Merged { ordered, .. }) => {
            let mut seen = std::collections::HashSet::new();
            Some(Cow::Owned(
                ordered
                    .iter()
                    .copied()
                    .filter(|&x| set.contains(x) && seen.insert(x))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// The walk's buffers.
#[derive(Default)]
pub(super) struct WalkScratch {
    /// Per depth, the combination tried there; `cur[..n]` at the last
    /// depth are an allocation's picks.
    pub(super) cur: Vec<usize>,
    /// `levels[d]`: the intersection of the branch down to depth `d`, when
    /// it had to be computed (see `Acc`).
    pub(super) levels: Vec<Vec<u32>>,
    /// Per depth, what the branch's intersection down to it is.
    accs: Vec<Acc>,
    /// Free buffers for the allocations found.
    pub(super) spare: Vec<Vec<u32>>,
    /// Work done so far on this query ([`MAX_QUERY_WORK`]): shared by the
    /// walks of a search's indexes.
    work: usize,
}

/// How the walk treats combinations.
pub(super) struct Walk<'r> {
    /// Per combination: its category is ignored (`ignore :name`), so it
    /// takes no part in intersections (Picky removes it after scoring);
    /// empty when no category is.
    pub(super) ignored: &'r [bool],
    /// Emit empty allocations too, instead of pruning them (see
    /// [`super::Options::keeps_empty`]); their intersections are not
    /// computed.
    pub(super) keep_empty: bool,
}

/// What a depth's intersection of the branch so far is.
#[derive(Clone, Copy)]
enum Acc {
    /// Every document: no combination taking part yet.
    All,
    /// One combination's own list.
    Combo(usize),
    /// `levels[d]`.
    Level(usize),
    /// Known to be empty.
    Empty,
}

/// Walks the product depth-first, first token slowest, without recursion
/// (a query may have thousands of words). Each allocation visited costs one
/// unit of work and each one found as many units as the query has tokens
/// (its picks are copied and its score summed), so both wide and deep
/// queries stop at the same bound; the count goes on in `scratch` from
/// walk to walk (a search's indexes share one bound). `emit` gets the picks (indices into
/// `combos.all`) and the intersection of each allocation found, and says
/// whether it kept the allocation (a filtered one costs no more work).
fn walk<'a>(
    combos: &'a Combos<'a, '_>,
    scratch: &mut WalkScratch,
    rules: &Walk<'_>,
    emit: &mut dyn FnMut(&[usize], Set<'a>) -> bool,
) -> Result<(), SearchError> {
    let n = combos.tokens();
    let WalkScratch {
        cur,
        levels,
        accs,
        spare,
        work,
    } = scratch;
    cur.clear();
    cur.extend_from_slice(&combos.starts[..n]);
    if levels.len() < n {
        levels.resize_with(n, Vec::new);
    }
    accs.clear();
    accs.resize(n, Acc::All);
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
        *work += 1;
        if *work > MAX_QUERY_WORK {
            return Err(SearchError::TooComplex);
        }
        let prev = match depth {
            0 => Acc::All,
            d => accs[d - 1],
        };
        let ids = &combos.all[c].ids;
        let acc = if rules.ignored.get(c).copied().unwrap_or(false) {
            prev
        } else {
            match prev {
                Acc::Empty => Acc::Empty,
                Acc::All if ids.len() == 0 => Acc::Empty,
                Acc::All => Acc::Combo(c),
                prev => {
                    // Depth `depth`'s intersection goes to its own level;
                    // the branch so far is in an earlier one.
                    let (done, rest) = levels.split_at_mut(depth);
                    let before = match prev {
                        Acc::Combo(p) => combos.all[p].ids.view(),
                        Acc::Level(d) => View::Slice(&done[d]),
                        Acc::All | Acc::Empty => View::Slice(&[]),
                    };
                    let buf = &mut rest[0];
                    buf.clear();
                    intersect(before, ids.view(), buf);
                    if buf.is_empty() {
                        Acc::Empty
                    } else {
                        Acc::Level(depth)
                    }
                }
            }
        };
        if matches!(acc, Acc::Empty) && !rules.keep_empty {
            cur[depth] += 1;
            continue;
        }
        if depth + 1 < n {
            accs[depth] = acc;
            depth += 1;
            continue;
        }
        let set = match acc {
            // Every combination ignored: nothing left to find ids with.
            Acc::All | Acc::Empty => Set::Owned(spare.pop().map_or_else(Vec::new, |mut v| {
                v.clear();
                v
            })),
            Acc::Combo(p) => match &combos.all[p].ids {
                Ids::Index(l) => Set::Index(*l),
                Ids::Merged { sorted, .. } => Set::Slice(sorted),
            },
            Acc::Level(d) => {
                let mut buf = spare.pop().unwrap_or_default();
                if d == depth {
                    std::mem::swap(&mut buf, &mut levels[d]);
                } else {
                    buf.clear();
                    buf.extend_from_slice(&levels[d]);
                }
                Set::Owned(buf)
            }
        };
        if set.len() == 0 && !rules.keep_empty {
            if let Set::Owned(v) = set {
                spare.push(v);
            }
            cur[depth] += 1;
            continue;
        }
        if emit(&cur[..n], set) {
            *work += n;
            if *work > MAX_QUERY_WORK {
                return Err(SearchError::TooComplex);
            }
        }
        cur[depth] += 1;
    }
}
