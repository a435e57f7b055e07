//! Posting lists as the snapshot stores them: ascending document numbers,
//! compressed, read in place from the mapped file.
//!
//! ```text
//! LIST (at the byte offset a term table's fst gives for the term)
//!   varint      n * 2 + dense: n, the number of documents, and whether the
//!               list is a bitmap
//! PACKED (dense = 0)
//!   [u32; B]    the last number of each full block (B = n / 128)
//!   [u8; B]     each full block's bit width w (0..=32)
//!   B blocks    128 numbers each, delta-coded (each number minus the one
//!               before, minus 1; the first block's first number as it
//!               is) and bit-packed at w bits: 16 * w bytes
//!   tail        the n - 128 * B numbers left, each a varint of the same
//!               delta as in a block
//! BITMAP (dense = 1)
//!   varint      W, the number of words
//!   [u64; W]    bit x % 64 of word x / 64 set for each number x
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low first, at most 5 bytes). Blocks
//! are `bitpacking`'s BitPacker4x layout (SIMD-decoded where the CPU has
//! SSE3). A list's length is in its first bytes, so weights and totals cost
//! nothing; the block maxima let a lookup skip to the one block that may
//! hold a number, so an intersection of a short list with a long one
//! decodes a few blocks, not the long list. A list holding at least one
//! document in [`DENSE`] is a bitmap instead (roaring's idea, per list):
//! bigger than its packed form, but intersecting anything with it is a bit
//! test per number, and two of them intersect a word at a time. Identical
//! lists are stored
//! once per category: the exact and partial tables point into the same
//! section (a prefix that only one word has shares that word's list).
//!
//! Reads are checked: a damaged list decodes to wrong numbers or ends
//! early, never reads outside its section and never panics.

use std::ops::Range;

use bitpacking::{BitPacker, BitPacker4x};

/// Numbers per block.
pub const BLOCK: usize = BitPacker4x::BLOCK_LEN;

/// A list with at least one in this many of the index's documents is
/// stored as a bitmap. At 1M documents that is lists of 62,500 or more: a
/// few dozen one- and two-letter prefixes, 125 KB each.
pub const DENSE: usize = 16;

/// Appends `list` (strictly ascending numbers below `documents`) in the
/// format above, as a bitmap if it is dense.
pub fn encode(list: &[u32], documents: usize, out: &mut Vec<u8>) {
    if list.len().saturating_mul(DENSE) >= documents && !list.is_empty() {
        encode_bitmap(list, out);
    } else {
        encode_packed(list, out);
    }
}

/// [`encode`] as a bitmap.
pub fn encode_bitmap(list: &[u32], out: &mut Vec<u8>) {
    debug_assert!(list.is_sorted_by(|a, b| a < b));
    push_varint(list.len() as u64 * 2 + 1, out);
    let words = list.last().map_or(0, |&x| x as usize / 64 + 1);
    push_varint(words as u64, out);
    let start = out.len();
    out.resize(start + 8 * words, 0);
    for &x in list {
        let byte = start + x as usize / 8;
        out[byte] |= 1 << (x % 8);
    }
}

/// [`encode`] delta-coded and bit-packed.
pub fn encode_packed(list: &[u32], out: &mut Vec<u8>) {
    debug_assert!(list.is_sorted_by(|a, b| a < b));
    push_varint(list.len() as u64 * 2, out);
    let blocks = list.len() / BLOCK;
    let (full, tail) = list.split_at(blocks * BLOCK);
    for block in full.chunks_exact(BLOCK) {
        out.extend_from_slice(&block[BLOCK - 1].to_le_bytes());
    }
    let packer = BitPacker4x::new();
    let initial = |b: usize| b.checked_sub(1).map(|p| full[p * BLOCK + BLOCK - 1]);
    for (b, block) in full.chunks_exact(BLOCK).enumerate() {
        out.push(packer.num_bits_strictly_sorted(initial(b), block));
    }
    let mut packed = [0u8; 4 * BLOCK];
    for (b, block) in full.chunks_exact(BLOCK).enumerate() {
        let width = packer.num_bits_strictly_sorted(initial(b), block);
        let n = packer.compress_strictly_sorted(initial(b), block, &mut packed, width);
        out.extend_from_slice(&packed[..n]);
    }
    let mut prev = initial(blocks);
    for &x in tail {
        push_varint(u64::from(delta(prev, x)), out);
        prev = Some(x);
    }
}

/// Appends a list in its own (Picky's) order, not necessarily ascending:
/// a varint count, then each number as a varint. Only lists of documents
/// merged from a repeated id are stored so, beside their sorted form.
pub fn encode_order(list: &[u32], out: &mut Vec<u8>) {
    push_varint(list.len() as u64, out);
    for &x in list {
        push_varint(u64::from(x), out);
    }
}

/// The numbers of an order stored by [`encode_order`] at the start of
/// `bytes`, at most `max` of them; a damaged one ends early.
pub fn decode_order(bytes: &[u8], max: usize) -> Vec<u32> {
    let mut at = 0;
    let n = read_varint(bytes, &mut at).map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let mut out = Vec::with_capacity(n.min(max).min(bytes.len()));
    while out.len() < n.min(max) {
        match read_varint(bytes, &mut at).and_then(|x| u32::try_from(x).ok()) {
            Some(x) => out.push(x),
            None => break,
        }
    }
    out
}

/// What a block stores for `x` after `prev` (BitPacker4x's strictly
/// sorted delta: `x` itself for the first number).
fn delta(prev: Option<u32>, x: u32) -> u32 {
    match prev {
        Some(p) => x.wrapping_sub(p).wrapping_sub(1),
        None => x,
    }
}

fn push_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at `bytes[*at..]`, moving `at` past it; `None` if it runs
/// off the end or past 5 bytes (35 bits, enough for any header or delta).
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in [0, 7, 14, 21, 28] {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// One posting list inside the mapped file.
#[derive(Clone, Copy, Debug)]
pub struct PostingList<'a> {
    len: usize,
    /// Set for a dense list (the packed fields are then empty).
    bitmap: Option<Bitmap<'a>>,
    /// Each full block's last number.
    lasts: &'a [[u8; 4]],
    widths: &'a [u8],
    /// The blocks, then the tail (and whatever follows in the section).
    packed: &'a [u8],
}

/// Where a block starts: block `block` at byte `byte` of the packed data.
/// Moving forward sums the widths in between.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockPos {
    block: usize,
    byte: usize,
}

impl BlockPos {
    /// The block this is the start of.
    pub fn block(&self) -> usize {
        self.block
    }
}

impl<'a> PostingList<'a> {
    /// The list at the start of `bytes` (a section from the list's offset
    /// on); `None` if its header does not fit.
    pub fn parse(bytes: &'a [u8]) -> Option<PostingList<'a>> {
        let mut at = 0;
        let header = read_varint(bytes, &mut at)?;
        let len = usize::try_from(header / 2).ok()?;
        if header % 2 == 1 {
            let words = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
            let words = bytes.get(at..)?.get(..words.checked_mul(8)?)?;
            return Some(PostingList {
                len,
                bitmap: Some(Bitmap {
                    words: words.as_chunks::<8>().0,
                    len,
                }),
                lasts: &[],
                widths: &[],
                packed: &[],
            });
        }
        let blocks = len / BLOCK;
        let rest = bytes.get(at..)?;
        let (lasts, rest) = rest.split_at_checked(blocks.checked_mul(4)?)?;
        let (widths, packed) = rest.split_at_checked(blocks)?;
        Some(PostingList {
            len,
            bitmap: None,
            lasts: lasts.as_chunks::<4>().0,
            widths,
            packed,
        })
    }

    /// The bitmap, if this is a dense list.
    #[inline]
    pub fn bitmap(&self) -> Option<Bitmap<'a>> {
        self.bitmap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of full blocks; block `blocks()` is the tail.
    pub fn blocks(&self) -> usize {
        self.lasts.len()
    }

    /// Each full block's last number (ascending in a sound list).
    pub fn lasts(&self) -> &'a [[u8; 4]] {
        self.lasts
    }

    /// Moves `pos` forward to block `to` (`to >= pos.block`).
    pub fn advance(&self, pos: &mut BlockPos, to: usize) {
        let widths = self.widths.get(pos.block..to).unwrap_or(&[]);
        pos.byte += widths.iter().map(|&w| 16 * usize::from(w)).sum::<usize>();
        pos.block = to;
    }

    /// Decodes the block at `pos` (the tail if `pos.block == blocks()`)
    /// into `buf`; returns how many numbers it holds (128 for a full block,
    /// the rest for the tail), 0 past the end or where the bytes are
    /// damaged (a width over 32, bytes past the section).
    pub fn decode(&self, pos: BlockPos, buf: &mut [u32; BLOCK]) -> usize {
        let b = pos.block;
        let initial = b
            .checked_sub(1)
            .and_then(|p| self.lasts.get(p))
            .map(|&w| u32::from_le_bytes(w));
        if let Some(&width) = self.widths.get(b) {
            let Some(bytes) = (width <= 32)
                .then(|| {
                    self.packed
                        .get(pos.byte..pos.byte + 16 * usize::from(width))
                })
                .flatten()
            else {
                return 0;
            };
            BitPacker4x::new().decompress_strictly_sorted(initial, bytes, buf, width);
            return BLOCK;
        }
        if b != self.blocks() {
            return 0;
        }
        let count = self.len - BLOCK * b;
        let mut at = pos.byte;
        let mut prev = initial;
        for (i, slot) in buf.iter_mut().take(count).enumerate() {
            let Some(d) = read_varint(self.packed, &mut at).and_then(|d| u32::try_from(d).ok())
            else {
                return i;
            };
            let x = match prev {
                Some(p) => p.wrapping_add(d).wrapping_add(1),
                None => d,
            };
            *slot = x;
            prev = Some(x);
        }
        count
    }

    /// Calls `f` with the numbers at positions `range` (ascending).
    pub fn for_each_in(&self, range: Range<usize>, mut f: impl FnMut(u32)) {
        if range.is_empty() {
            return;
        }
        if let Some(b) = self.bitmap {
            return b.for_each_from(range.start, range.len(), f);
        }
        let mut pos = BlockPos::default();
        self.advance(&mut pos, range.start / BLOCK);
        let mut buf = [0u32; BLOCK];
        while pos.block * BLOCK < range.end.min(self.len) {
            let first = pos.block * BLOCK;
            let n = self.decode(pos, &mut buf);
            let from = range.start.saturating_sub(first).min(n);
            let to = (range.end - first).min(n);
            buf[from..to].iter().copied().for_each(&mut f);
            if n < BLOCK {
                return;
            }
            let next = pos.block + 1;
            self.advance(&mut pos, next);
        }
    }

    /// Appends every number to `out`, decoding straight into it.
    pub fn decode_into(&self, out: &mut Vec<u32>) {
        if let Some(b) = self.bitmap {
            return b.for_each_from(0, self.len, |x| out.push(x));
        }
        let mut pos = BlockPos::default();
        loop {
            let at = out.len();
            out.resize(at + BLOCK, 0);
            let n = match out[at..].first_chunk_mut::<BLOCK>() {
                Some(buf) => self.decode(pos, buf),
                None => 0,
            };
            out.truncate(at + n);
            if n < BLOCK {
                return;
            }
            let next = pos.block + 1;
            self.advance(&mut pos, next);
        }
    }

    /// The numbers in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let list = *self;
        let mut bits = self.bitmap.map(|b| b.iter());
        let mut pos = BlockPos::default();
        let mut buf = [0u32; BLOCK];
        let (mut i, mut n) = (0, 0);
        std::iter::from_fn(move || {
            if let Some(bits) = &mut bits {
                return bits.next();
            }
            if i == n {
                if n != 0 {
                    if n < BLOCK {
                        return None;
                    }
                    let next = pos.block + 1;
                    list.advance(&mut pos, next);
                }
                n = list.decode(pos, &mut buf);
                i = 0;
                if n == 0 {
                    return None;
                }
            }
            i += 1;
            Some(buf[i - 1])
        })
    }
}

/// A dense list: bit `x % 64` of word `x / 64` is set for each number `x`.
/// Reads past the words are absent numbers; at most `len` numbers are
/// ever produced, whatever the bits say.
#[derive(Clone, Copy, Debug)]
pub struct Bitmap<'a> {
    words: &'a [[u8; 8]],
    len: usize,
}

impl<'a> Bitmap<'a> {
    #[inline]
    fn word(&self, i: usize) -> u64 {
        self.words.get(i).map_or(0, |w| u64::from_le_bytes(*w))
    }

    /// How many numbers the list says it has.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn contains(&self, x: u32) -> bool {
        self.word(x as usize / 64) >> (x % 64) & 1 == 1
    }

    /// The first number `>= x`.
    pub fn next_at_least(&self, x: u32) -> Option<u32> {
        let mut i = x as usize / 64;
        let mut word = self.word(i) & (u64::MAX << (x % 64));
        loop {
            if word != 0 {
                return u32::try_from(i * 64 + word.trailing_zeros() as usize).ok();
            }
            i += 1;
            if i >= self.words.len() {
                return None;
            }
            word = self.word(i);
        }
    }

    /// Calls `f` with the numbers at positions `skip..skip + take`.
    fn for_each_from(&self, mut skip: usize, take: usize, mut f: impl FnMut(u32)) {
        let mut left = take.min(self.len.saturating_sub(skip));
        for (i, w) in self.words.iter().enumerate() {
            if left == 0 {
                return;
            }
            let mut word = u64::from_le_bytes(*w);
            let ones = word.count_ones() as usize;
            if skip >= ones {
                skip -= ones;
                continue;
            }
            while word != 0 && left > 0 {
                let x = i * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                // Words past `u32::MAX / 64` hold no number a list can have.
                let Ok(x) = u32::try_from(x) else { return };
                f(x);
                left -= 1;
            }
        }
    }

    /// The numbers in order.
    fn iter(self) -> impl Iterator<Item = u32> + 'a {
        let (mut i, mut word, mut left) = (0, 0u64, self.len);
        std::iter::from_fn(move || {
            while word == 0 {
                if i >= self.words.len() {
                    return None;
                }
                word = self.word(i);
                i += 1;
            }
            if left == 0 {
                return None;
            }
            left -= 1;
            let x = (i - 1) * 64 + word.trailing_zeros() as usize;
            word &= word - 1;
            u32::try_from(x).ok()
        })
    }

    /// Appends the numbers in both `self` and `other`, ascending.
    pub fn and_into(&self, other: &Bitmap<'_>, out: &mut Vec<u32>) {
        let mut left = self.len.min(other.len);
        for (i, (a, b)) in self.words.iter().zip(other.words).enumerate() {
            let mut word = u64::from_le_bytes(*a) & u64::from_le_bytes(*b);
            while word != 0 && left > 0 {
                let Ok(x) = u32::try_from(i * 64 + word.trailing_zeros() as usize) else {
                    return;
                };
                out.push(x);
                word &= word - 1;
                left -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `list` in each form that fits: packed always, a bitmap unless its
    /// numbers are huge.
    fn encodings(list: &[u32]) -> Vec<Vec<u8>> {
        let mut packed = Vec::new();
        encode_packed(list, &mut packed);
        let mut all = vec![packed];
        if list.last().is_none_or(|&x| x < 1 << 22) {
            let mut bitmap = Vec::new();
            encode_bitmap(list, &mut bitmap);
            all.push(bitmap);
        }
        all
    }

    /// Strictly ascending lists of every length class (tail only, whole
    /// blocks, blocks and a tail), dense and sparse, up to `u32::MAX`.
    fn list() -> impl Strategy<Value = Vec<u32>> {
        let numbers = prop_oneof![
            3 => 0u32..2000,
            2 => 0u32..1_000_000,
            1 => any::<u32>(),
            1 => u32::MAX - 300..=u32::MAX,
        ];
        prop::collection::btree_set(numbers, 1..700).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every way of reading a list gives back what was encoded, in
        /// either form, with whatever follows it in the section ignored.
        #[test]
        fn lists_read_back(v in list(), junk in prop::collection::vec(any::<u8>(), 0..8), a in 0usize..800, b in 0usize..800, probes in prop::collection::vec(0u32..2100, 0..20)) {
            for mut bytes in encodings(&v) {
                bytes.extend(&junk);
                let l = PostingList::parse(&bytes).unwrap();
                prop_assert_eq!(l.len(), v.len());
                prop_assert_eq!(l.iter().collect::<Vec<_>>(), v.clone());
                let mut all = vec![7];
                l.decode_into(&mut all);
                prop_assert_eq!(&all[1..], &v[..]);
                let (a, b) = (a.min(b), a.max(b));
                let mut part = Vec::new();
                l.for_each_in(a..b, |x| part.push(x));
                prop_assert_eq!(&part[..], &v[a.min(v.len())..b.min(v.len())]);
                for (i, w) in l.lasts().iter().enumerate() {
                    prop_assert_eq!(u32::from_le_bytes(*w), v[i * BLOCK + BLOCK - 1]);
                }
                if let Some(bitmap) = l.bitmap() {
                    for &x in probes.iter().chain(&v) {
                        prop_assert_eq!(bitmap.contains(x), v.binary_search(&x).is_ok());
                        prop_assert_eq!(bitmap.next_at_least(x), v.iter().copied().find(|&y| y >= x));
                    }
                }
            }
        }

        /// Two bitmaps intersect as sets do.
        #[test]
        fn bitmaps_intersect(a in prop::collection::btree_set(0u32..3000, 1..400), b in prop::collection::btree_set(0u32..5000, 1..400)) {
            let (a, b): (Vec<u32>, Vec<u32>) = (a.into_iter().collect(), b.into_iter().collect());
            let (mut ba, mut bb) = (Vec::new(), Vec::new());
            encode_bitmap(&a, &mut ba);
            encode_bitmap(&b, &mut bb);
            let (la, lb) = (PostingList::parse(&ba).unwrap(), PostingList::parse(&bb).unwrap());
            let mut out = vec![1];
            la.bitmap().unwrap().and_into(&lb.bitmap().unwrap(), &mut out);
            let expected: Vec<u32> = a.iter().copied().filter(|x| b.binary_search(x).is_ok()).collect();
            prop_assert_eq!(&out[1..], &expected[..]);
        }

        /// Damage anywhere: the list reads without a panic and never
        /// yields more numbers than it claims.
        #[test]
        fn damaged_lists_never_panic(v in list(), at in any::<prop::sample::Index>(), mask in 1u8..=255, cut in any::<prop::sample::Index>()) {
            for mut bytes in encodings(&v) {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
                bytes.truncate(cut.index(bytes.len() + 1));
                if let Some(l) = PostingList::parse(&bytes) {
                    prop_assert!(l.iter().take(l.len() + 1).count() <= l.len());
                    let mut n = 0;
                    l.for_each_in(0..l.len(), |_| n += 1);
                    prop_assert!(n <= l.len());
                    let mut all = Vec::new();
                    l.decode_into(&mut all);
                    prop_assert!(all.len() <= l.len());
                    if let Some(b) = l.bitmap() {
                        let _ = (b.contains(v[0]), b.next_at_least(v[0]));
                    }
                }
            }
        }
    }

    #[test]
    fn dense_lists_pack_small() {
        let v: Vec<u32> = (0..100_000).map(|i| i * 3).collect();
        let mut packed = Vec::new();
        encode_packed(&v, &mut packed);
        // Gaps of 3 are deltas of 2: two bits a number, plus the block
        // maxima and widths.
        assert!(packed.len() < 100_000 * 2 / 8 + 100_000 / 128 * 5 + 200);
        let mut one = Vec::new();
        encode(&[4_000_000], 5_000_000, &mut one);
        assert_eq!(one.len(), 1 + 4);
    }

    /// `encode` makes a bitmap of a list with at least one in [`DENSE`]
    /// documents, and packs anything sparser.
    #[test]
    fn dense_lists_are_bitmaps() {
        let v: Vec<u32> = (0..1000).map(|i| i * 16).collect();
        for (documents, bitmap) in [(16_000, true), (16_001, false)] {
            let mut bytes = Vec::new();
            encode(&v, documents, &mut bytes);
            let l = PostingList::parse(&bytes).unwrap();
            assert_eq!(l.bitmap().is_some(), bitmap, "{documents} documents");
            assert_eq!(l.iter().collect::<Vec<_>>(), v);
        }
    }
}
