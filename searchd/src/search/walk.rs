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
/// `picks[at..at + tokens]` of the walk's flat list.
#[derive(Debug)]
struct Found<'a> {
    at: usize,
    score: Number,
    set: Set<'a>,
}

impl Engine {
    /// Walks, scores, sorts and pages the allocations of `combos`, handing
    /// each to `answer`; returns the total.
    pub(super) fn answer(
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
            // Ruby: `combinations.inject(0) { |total, c| total + c.weight }
            // + boost` (the boost 0 without one).
            let mut score = Number::Int(0);
            for &c in p {
                score = score + combos.all[c].weight;
            }
            score = score + self.boost(p.iter().map(|&c| &combos.all[c].label), seq);
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
                .value()
                .partial_cmp(&a.score.value())
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
            let page = match ruby::slice(count, off, amount) {
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
pub(super) struct WalkScratch {
    /// Per depth, the combination tried there; `cur[..n]` at the last
    /// depth are an allocation's picks.
    pub(super) cur: Vec<usize>,
    /// `levels[d - 1]`: the intersection of the branch down to depth `d`
    /// (depth 0's is its combination's own list).
    pub(super) levels: Vec<Vec<u32>>,
    /// Free buffers for the allocations found.
    pub(super) spare: Vec<Vec<u32>>,
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
