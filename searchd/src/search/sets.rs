//! Sorted lists of document numbers and their intersection: posting lists
//! straight from the snapshot (compressed, see [`crate::postings`]) or
//! `u32`s in memory. Lists in memory are intersected by merging, scanning
//! or galloping depending on how their lengths compare; a posting list is
//! either decoded (the shorter side) or sought through block by block with
//! a [`Cursor`] (the longer side), so a short list against a long one
//! decodes only the long one's blocks that may hold its numbers.

use crate::postings::{BLOCK, Bitmap, BlockPos, PostingList};

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

impl<'a> View<'a> {
    fn bitmap(&self) -> Option<Bitmap<'a>> {
        match self {
            View::List(l) => l.bitmap(),
            View::Slice(_) => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            View::List(l) => l.len(),
            View::Slice(s) => s.len(),
        }
    }
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
        self.view().len()
    }
    pub(super) fn contains(&self, x: u32) -> bool {
        match self.view() {
            View::Slice(s) => s.binary_search(&x).is_ok(),
            View::List(l) => match l.bitmap() {
                Some(b) => b.contains(x),
                None => Cursor::new(l).seek(x) == Some(x),
            },
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
/// A posting list's block maxima (little-endian words).
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
    match (a.bitmap(), b.bitmap()) {
        (Some(x), Some(y)) => return x.and_into(&y, out),
        (Some(bitmap), None) => return filter(b, bitmap, out),
        (None, Some(bitmap)) => return filter(a, bitmap, out),
        (None, None) => {}
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let similar = long.len() < short.len().saturating_mul(SCAN_RATIO);
    let start = out.len();
    match (short, long) {
        (View::Slice(s), View::Slice(l)) => intersect_sorted(s, l, out),
        // Similar lengths: both decoded and merged, as lists in memory are.
        (View::List(s), View::List(l)) if similar => {
            s.decode_into(out);
            let mid = out.len();
            l.decode_into(out);
            let (head, decoded_long) = out.split_at_mut(mid);
            let kept = merge_in_place(&mut head[start..], decoded_long);
            out.truncate(start + kept);
        }
        (View::List(list), View::Slice(slice)) | (View::Slice(slice), View::List(list))
            if similar =>
        {
            list.decode_into(out);
            let kept = merge_in_place(&mut out[start..], slice);
            out.truncate(start + kept);
        }
        // The short one decoded, each of its numbers sought in the long one.
        (View::Slice(s), View::List(l)) => {
            let mut long = Cursor::new(l);
            out.reserve(s.len());
            for &x in s {
                match long.seek(x) {
                    Some(y) if y == x => out.push(x),
                    Some(_) => {}
                    None => break,
                }
            }
        }
        (View::List(s), View::List(l)) => {
            s.decode_into(out);
            let mut long = Cursor::new(l);
            retain_found(out, start, |x| long.seek(x));
        }
        (View::List(s), View::Slice(l)) => {
            s.decode_into(out);
            let far = (out.len() - start).saturating_mul(GALLOP_RATIO) <= l.len();
            let mut j = 0;
            retain_found(out, start, |x| {
                j = if far { gallop(l, j, x) } else { scan(l, j, x) };
                l.get(j).copied()
            });
        }
    }
}

/// The numbers of `list` that `bitmap` holds: a bit test each, without a
/// branch on the answer.
fn filter(list: View<'_>, bitmap: Bitmap<'_>, out: &mut Vec<u32>) {
    let start = out.len();
    match list {
        View::List(l) => l.decode_into(out),
        View::Slice(s) => out.extend_from_slice(s),
    }
    let mut kept = start;
    for i in start..out.len() {
        let x = out[i];
        out[kept] = x;
        kept += usize::from(bitmap.contains(x));
    }
    // A damaged bitmap may hold more numbers than it says.
    out.truncate(kept.min(start + bitmap.len()));
}

/// [`merge`] of `a` and `b` written over `a`: returns how many matches
/// now start `a`. A match uses up a number of `a`, so each is written at
/// or before the number it was read from.
fn merge_in_place(a: &mut [u32], b: &[u32]) -> usize {
    let (na, nb) = (a.len(), b.len());
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < na && j < nb {
        let (x, y) = (a[i], b[j]);
        a[k] = x;
        k += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    k
}

/// Keeps the numbers of `out[start..]` (ascending) that `seek` finds:
/// `seek(x)` answers the first number `>= x` of the other list (moving
/// forward only), `None` past its end. Filters in place: what is kept is
/// written at or before where it was read.
fn retain_found(out: &mut Vec<u32>, start: usize, mut seek: impl FnMut(u32) -> Option<u32>) {
    let mut kept = start;
    for i in start..out.len() {
        let x = out[i];
        match seek(x) {
            Some(y) => {
                out[kept] = x;
                kept += usize::from(y == x);
            }
            None => break,
        }
    }
    out.truncate(kept);
}

/// A forward-only reader of a posting list that finds the first number
/// not below a given one, decoding only the block that may hold it (the
/// first whose maximum is not below it).
pub(crate) struct Cursor<'a> {
    list: PostingList<'a>,
    pos: BlockPos,
    /// Whether `buf` holds block `pos.block`.
    loaded: bool,
    buf: [u32; BLOCK],
    /// How many numbers `buf` holds, and the one the cursor is at.
    n: usize,
    i: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(list: PostingList<'a>) -> Cursor<'a> {
        Cursor {
            list,
            pos: BlockPos::default(),
            loaded: false,
            buf: [0; BLOCK],
            n: 0,
            i: 0,
        }
    }

    /// The first number `>= x` from the cursor on, moving there; `None`
    /// past the end. `x` must not decrease from call to call.
    pub(crate) fn seek(&mut self, x: u32) -> Option<u32> {
        if let Some(b) = self.list.bitmap() {
            return b.next_at_least(x);
        }
        loop {
            let next = if self.loaded {
                self.i = scan(&self.buf[..self.n], self.i, x);
                if self.i < self.n {
                    return Some(self.buf[self.i]);
                }
                // The tail (or a damaged block) ends the list.
                if self.n < BLOCK {
                    return None;
                }
                self.pos.block() + 1
            } else {
                0
            };
            let lasts = self.list.lasts();
            // The tail when no full block from `next` on reaches `x`.
            let b = gallop(lasts, next.min(lasts.len()), x).max(next);
            self.list.advance(&mut self.pos, b);
            self.n = self.list.decode(self.pos, &mut self.buf);
            self.loaded = true;
            self.i = 0;
        }
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

    /// `v` (ascending) as a posting list's bytes, packed.
    fn bytes(v: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::postings::encode_packed(v, &mut out);
        out
    }

    /// `v` as a bitmap, unless its numbers are huge.
    fn bitmap_bytes(v: &[u32]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        v.last().is_none_or(|&x| x < 1 << 22).then(|| {
            crate::postings::encode_bitmap(v, &mut out);
            out
        })
    }

    /// Every way `a` and `b` can be held: in memory, packed, bitmaps.
    fn forms<'a>(a: &'a [u32], stored: &'a [Vec<u8>]) -> Vec<View<'a>> {
        let mut v = vec![View::Slice(a)];
        v.extend(stored.iter().map(|b| View::List(list(b))));
        v
    }

    fn stored(v: &[u32]) -> Vec<Vec<u8>> {
        let mut all = vec![bytes(v)];
        all.extend(bitmap_bytes(v));
        all
    }

    fn list(bytes: &[u8]) -> PostingList<'_> {
        PostingList::parse(bytes).expect("an encoded list")
    }

    fn inter(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        intersect(View::Slice(a), View::Slice(b), &mut out);
        // The same through posting lists, packed and bitmaps.
        let (sa, sb) = (stored(a), stored(b));
        for x in forms(a, &sa) {
            for y in forms(b, &sb) {
                let mut other = Vec::new();
                intersect(x, y, &mut other);
                assert_eq!(other, out);
            }
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
            let (sa, sb) = (stored(&a), stored(&b));
            for (x, y) in forms(&a, &sa).into_iter().flat_map(|x| forms(&b, &sb).into_iter().map(move |y| (x, y))) {
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
            let words = le_words(&a);
            let words = &words[..];
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
            let words = le_words(&b);
            let words = &words[..];
            prop_assert_eq!(gallop(&b[..], from, x), expected);
            prop_assert_eq!(gallop(words, from, x), expected);
            prop_assert_eq!(scan(&b[..], from, x), expected);
            prop_assert_eq!(scan(words, from, x), expected);
        }

        /// A cursor finds the first number not below each of a rising
        /// sequence of probes, whatever the gaps (within a block, to the
        /// next, across many, into the tail, past the end).
        #[test]
        fn cursor_seeks_like_the_set(b in sorted(1000), mut probes in prop::collection::vec(number(), 0..60)) {
            probes.sort_unstable();
            for bb in stored(&b) {
                let mut cursor = Cursor::new(list(&bb));
                for &x in &probes {
                    let expected = b.iter().copied().find(|&v| v >= x);
                    prop_assert_eq!(cursor.seek(x), expected, "seek {}", x);
                }
            }
        }

        /// `Set::contains` and `Set::len` agree with the set, however the
        /// set is held.
        #[test]
        fn sets_contain_what_the_set_does(b in sorted(300), probes in prop::collection::vec(number(), 0..40)) {
            let model: BTreeSet<u32> = b.iter().copied().collect();
            let bb = stored(&b);
            let mut sets: Vec<Set<'_>> = bb.iter().map(|s| Set::Index(list(s))).collect();
            sets.extend([Set::Slice(&b), Set::Owned(b.clone())]);
            for set in &sets {
                prop_assert_eq!(set.len(), model.len());
                for &x in probes.iter().chain(&b) {
                    prop_assert_eq!(set.contains(x), model.contains(&x));
                }
            }
        }

        /// Lists out of order or with duplicates, or posting lists damaged
        /// (a snapshot whose checksum has not been checked yet) give wrong
        /// answers, never a panic: every operation indexes only below the
        /// lengths given.
        #[test]
        fn unsorted_lists_never_panic(
            a in prop::collection::vec(number(), 0..100),
            b in prop::collection::vec(number(), 0..3000),
            (sa, sb) in pair(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            x in number(),
            from in any::<prop::sample::Index>(),
        ) {
            let (mut ba, mut bb) = (bytes(&sa), bitmap_bytes(&sb).unwrap_or_else(|| bytes(&sb)));
            for (i, (at, mask)) in damage.into_iter().enumerate() {
                let bytes = if i % 2 == 0 { &mut ba } else { &mut bb };
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            let (la, lb) = (PostingList::parse(&ba), PostingList::parse(&bb));
            let mut views = vec![View::Slice(&a), View::Slice(&b)];
            views.extend(la.map(View::List));
            views.extend(lb.map(View::List));
            for &x in &views {
                for &y in &views {
                    let mut out = Vec::new();
                    intersect(x, y, &mut out);
                    prop_assert!(out.len() <= x.len().min(y.len()));
                }
            }
            let mut out = Vec::new();
            merge(&a[..], &b[..], &mut out);
            search_through(&a[..], &b[..], &mut out);
            search_through(&b[..], &a[..], &mut out);
            let from = from.index(b.len() + 1);
            let words = le_words(&b);
            for i in [gallop(&b[..], from, x), scan(&b[..], from, x), scan(&words[..], from, x)] {
                prop_assert!((from..=b.len()).contains(&i));
            }
            for set in [la.map(Set::Index), lb.map(Set::Index), Some(Set::Slice(&b))].into_iter().flatten() {
                let _ = set.contains(x);
            }
        }
    }

    /// `v` as little-endian words (how block maxima are stored).
    fn le_words(v: &[u32]) -> Vec<[u8; 4]> {
        v.iter().map(|x| x.to_le_bytes()).collect()
    }
}
