//! Allocations handed out page by page, to a [`Results`] being built or
//! straight into Picky's JSON (what the server sends), and the JSON of a
//! [`Results`].

use std::ops::Range;

use super::combine::{Combination, Label};
use super::sets::{Set, View};
use super::{Allocation, Results};
use crate::def::Number;
use crate::index::Engine;
use crate::ruby;

/// The ids of one allocation on the page.
pub(super) enum PageIds<'x> {
    /// A merged list's own order.
    Slice(&'x [u32]),
    /// Positions in the allocation's intersection.
    Set(&'x Set<'x>, Range<usize>),
}

impl PageIds<'_> {
    fn for_each(&self, f: impl FnMut(u32)) {
        match self {
            PageIds::Slice(v) => v.iter().copied().for_each(f),
            PageIds::Set(set, r) => match set.view() {
                View::List(l) => l.for_each_in(r.clone(), f),
                View::Slice(v) => v[r.clone()].iter().copied().for_each(f),
            },
        }
    }
}

/// What the paging loop hands each allocation to: a [`Results`] being
/// built, or JSON being written.
pub(super) trait Answer {
    /// One allocation: which of the search's indexes it is of (0 for an
    /// index), its score, count, combination (`parts` of `fragments`, one
    /// per token) and the ids it shows on this page.
    fn allocation(
        &mut self,
        index: usize,
        score: Number,
        count: u64,
        parts: &[Range<u32>],
        fragments: &[u8],
        ids: PageIds<'_>,
    );
}

impl Answer for Results<'_> {
    fn allocation(
        &mut self,
        index: usize,
        score: Number,
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
            index,
            score,
            count,
            ids: page,
            parts: first..self.parts.len(),
        });
    }
}

/// Writes each allocation as JSON as soon as it is paged.
pub(super) struct JsonAnswer<'o, 'e> {
    out: &'o mut Vec<u8>,
    engine: &'e Engine,
    first: bool,
}

impl<'o, 'e> JsonAnswer<'o, 'e> {
    /// Writes `engine`'s allocations to `out` (after [`JSON_HEAD`]).
    pub(super) fn new(out: &'o mut Vec<u8>, engine: &'e Engine) -> Self {
        JsonAnswer {
            out,
            engine,
            first: true,
        }
    }
}

impl Answer for JsonAnswer<'_, '_> {
    fn allocation(
        &mut self,
        index: usize,
        score: Number,
        count: u64,
        parts: &[Range<u32>],
        fragments: &[u8],
        ids: PageIds<'_>,
    ) {
        let out = &mut *self.out;
        // Each allocation names its own index and shows its own ids.
        let index = self.engine.index_at(index);
        if !write_allocation_head(out, &mut self.first, index.name_json(), score, count) {
            return;
        }
        write_parts(out, parts.iter().map(|r| fragment(fragments, r)));
        let docs = index.docs();
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

pub(super) const JSON_HEAD: &[u8] = b"{\"allocations\":[";

fn fragment<'f>(fragments: &'f [u8], r: &Range<u32>) -> &'f [u8] {
    &fragments[r.start as usize..r.end as usize]
}

/// Writes `[name,score,count,` (after a `,` unless it is the first);
/// false for an allocation without ids, which Picky leaves out.
fn write_allocation_head(
    out: &mut Vec<u8>,
    first: &mut bool,
    name: &[u8],
    score: Number,
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
    ruby::write_number(score, out);
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
pub(super) fn write_json_tail(offset: i64, duration: f64, total: u64, out: &mut Vec<u8>) {
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
        let mut json = JsonAnswer::new(&mut *out, self.engine);
        for a in &self.allocations {
            json.allocation(
                a.index,
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

impl Engine {
    /// Appends `["category","original","text"]`; returns where it is.
    pub(super) fn render_combination(&self, c: &Combination<'_>, out: &mut Vec<u8>) -> Range<u32> {
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
}
