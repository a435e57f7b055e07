//! Sorted lists of document numbers and their intersection: posting lists
//! straight from the snapshot (little-endian words) or `u32`s in memory,
//! intersected by merging, scanning or galloping depending on how their
//! lengths compare.

use crate::index::PostingList;

/// The running intersection of a branch of the product walk.
#[derive(Debug, Clone)]
pub(super) enum Set<'a> {
    Index(PostingList<'a>),
    /// A merged list's sorted copy, borrowed from its combination.
    Slice(&'a [u32]),
    Owned(Vec<u32>),
}

/// A sorted list, whichever kind.
#[derive(Clone, Copy)]
pub(super) enum View<'a> {
    List(PostingList<'a>),
    Slice(&'a [u32]),
}

impl<'a> Set<'a> {
    pub(super) fn view(&self) -> View<'_> {
        match self {
            Set::Index(l) => View::List(*l),
            Set::Slice(s) => View::Slice(s),
            Set::Owned(v) => View::Slice(v),
        }
    }
    pub(super) fn len(&self) -> usize {
        match self.view() {
            View::List(l) => l.len(),
            View::Slice(s) => s.len(),
        }
    }
    pub(super) fn contains(&self, x: u32) -> bool {
        match self.view() {
            View::Slice(s) => s.binary_search(&x).is_ok(),
            View::List(l) => {
                let i = gallop(l.words(), 0, x);
                i < l.len() && l.get(i) == x
            }
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
pub(super) fn intersect(a: View<'_>, b: View<'_>, out: &mut Vec<u32>) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// `v` as a posting list's bytes (little-endian words, as the mapped
    /// file holds them).
    fn bytes(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn inter(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        intersect(View::Slice(a), View::Slice(b), &mut out);
        // The same through posting lists.
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

    // Property tests: every set operation against a plain `BTreeSet`, over
    // both representations (the snapshot's little-endian words and `u32`s).

    /// Numbers that collide often (a small range), sit at the top of the
    /// range (where `x + 1` would overflow) or anywhere.
    fn number() -> impl Strategy<Value = u32> {
        prop_oneof![
            6 => 0u32..3000,
            1 => u32::MAX - 40..=u32::MAX,
            1 => any::<u32>(),
        ]
    }

    /// A sorted list without duplicates, of up to `max` numbers.
    fn sorted(max: usize) -> impl Strategy<Value = Vec<u32>> {
        prop::collection::btree_set(number(), 0..=max).prop_map(|s| s.into_iter().collect())
    }

    /// Two sorted lists whose lengths pick each way of intersecting:
    /// similar (merge), up to 64 times longer (scan), more (gallop); the
    /// short one partly drawn from the long one, so that they meet.
    fn pair() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
        let shaped = |short: usize, long: std::ops::RangeInclusive<usize>| {
            prop::collection::btree_set(number(), long)
                .prop_flat_map(move |long| {
                    let long: Vec<u32> = long.into_iter().collect();
                    let from_long =
                        prop::sample::subsequence(long.clone(), 0..=short.min(long.len()));
                    (Just(long), from_long, sorted(short))
                })
                .prop_map(|(long, mut short, other)| {
                    short.extend(other);
                    short.sort_unstable();
                    short.dedup();
                    (short, long)
                })
        };
        prop_oneof![
            (sorted(200), sorted(200)),
            shaped(20, 40..=1200),
            shaped(8, 600..=4000),
        ]
        .prop_flat_map(|(a, b)| prop_oneof![Just((a.clone(), b.clone())), Just((b, a))])
    }

    fn model(a: &[u32], b: &[u32]) -> Vec<u32> {
        let (a, b): (BTreeSet<u32>, BTreeSet<u32>) =
            (a.iter().copied().collect(), b.iter().copied().collect());
        a.intersection(&b).copied().collect()
    }

    /// What [`gallop`] and [`scan`] promise: the first index `>= from`
    /// whose number is `>= x`.
    fn first_at_least(b: &[u32], from: usize, x: u32) -> usize {
        from + b[from..].partition_point(|&v| v < x)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `intersect` equals the set intersection for every pair of
        /// representations, and appends to what `out` already holds.
        #[test]
        fn intersect_is_set_intersection((a, b) in pair(), prefix in sorted(3)) {
            let expected = model(&a, &b);
            let (ba, bb) = (bytes(&a), bytes(&b));
            let (la, lb) = (PostingList::new(&ba), PostingList::new(&bb));
            for (x, y) in [
                (View::Slice(&a), View::Slice(&b)),
                (View::List(la), View::List(lb)),
                (View::List(la), View::Slice(&b)),
                (View::Slice(&a), View::List(lb)),
            ] {
                let mut out = prefix.clone();
                intersect(x, y, &mut out);
                prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
                prop_assert_eq!(&out[prefix.len()..], &expected[..]);
            }
        }

        /// Each way of intersecting on its own, whatever the lengths.
        #[test]
        fn merge_and_search_through_are_set_intersection((a, b) in pair()) {
            let expected = model(&a, &b);
            let ba = bytes(&a);
            let words = PostingList::new(&ba).words();
            let mut out = Vec::new();
            merge(&a[..], &b[..], &mut out);
            prop_assert_eq!(&out, &expected);
            out.clear();
            merge(words, &b[..], &mut out);
            prop_assert_eq!(&out, &expected);
            out.clear();
            search_through(&a[..], &b[..], &mut out);
            prop_assert_eq!(&out, &expected);
            out.clear();
            search_through(&b[..], words, &mut out);
            prop_assert_eq!(&out, &expected);
        }

        /// `gallop` and `scan` find the first number `>= x` from `from` on,
        /// in both representations.
        #[test]
        fn gallop_and_scan_find_the_first_not_below(
            b in sorted(300),
            x in number(),
            from in any::<prop::sample::Index>(),
        ) {
            let from = from.index(b.len() + 1);
            let expected = first_at_least(&b, from, x);
            let bb = bytes(&b);
            let words = PostingList::new(&bb).words();
            prop_assert_eq!(gallop(&b[..], from, x), expected);
            prop_assert_eq!(gallop(words, from, x), expected);
            prop_assert_eq!(scan(&b[..], from, x), expected);
            prop_assert_eq!(scan(words, from, x), expected);
        }

        /// `Set::contains` and `Set::len` agree with the set, however the
        /// set is held.
        #[test]
        fn sets_contain_what_the_set_does(b in sorted(300), probes in prop::collection::vec(number(), 0..40)) {
            let model: BTreeSet<u32> = b.iter().copied().collect();
            let bb = bytes(&b);
            let sets = [
                Set::Index(PostingList::new(&bb)),
                Set::Slice(&b),
                Set::Owned(b.clone()),
            ];
            for set in &sets {
                prop_assert_eq!(set.len(), model.len());
                for &x in probes.iter().chain(&b) {
                    prop_assert_eq!(set.contains(x), model.contains(&x));
                }
            }
        }

        /// Lists out of order or with duplicates (a damaged snapshot whose
        /// checksum has not been checked yet) give wrong answers, never a
        /// panic: every operation indexes only below the lengths given.
        #[test]
        fn unsorted_lists_never_panic(
            a in prop::collection::vec(number(), 0..100),
            b in prop::collection::vec(number(), 0..3000),
            x in number(),
            from in any::<prop::sample::Index>(),
        ) {
            let (ba, bb) = (bytes(&a), bytes(&b));
            let (la, lb) = (PostingList::new(&ba), PostingList::new(&bb));
            for (x, y) in [
                (View::Slice(&a), View::Slice(&b)),
                (View::List(la), View::List(lb)),
                (View::List(la), View::Slice(&b)),
                (View::Slice(&a), View::List(lb)),
            ] {
                for (x, y) in [(x, y), (y, x)] {
                    let mut out = Vec::new();
                    intersect(x, y, &mut out);
                    prop_assert!(out.len() <= a.len().min(b.len()));
                }
            }
            let mut out = Vec::new();
            merge(&a[..], &b[..], &mut out);
            search_through(&a[..], &b[..], &mut out);
            search_through(&b[..], &a[..], &mut out);
            let from = from.index(b.len() + 1);
            for i in [gallop(&b[..], from, x), scan(&b[..], from, x), scan(lb.words(), from, x)] {
                prop_assert!((from..=b.len()).contains(&i));
            }
            for set in [Set::Index(lb), Set::Slice(&b)] {
                let _ = set.contains(x);
            }
        }
    }
}
