//! Each token's combinations: the categories its word is found in (or,
//! with a constant weight, may be), each with its weight and posting list.
//! The combinations of an OR token's parts are merged into one; the texts
//! of a range into one per category.

use std::borrow::Cow;

use super::query::{Part, Token};
use super::sets::View;
use super::{MAX_RANGE_TEXTS, SearchError};
use crate::def::{Number, Weight};
use crate::index::{Engine, PostingList, Postings};
use crate::ruby;

/// A posting list as a combination sees it.
#[derive(Debug, Clone)]
pub(super) enum Ids<'a> {
    /// Straight from the index: ascending.
    Index(PostingList<'a>),
    /// An OR token's merged list, in Picky's order, plus a sorted copy for
    /// intersecting.
    Merged { ordered: Vec<u32>, sorted: Vec<u32> },
}

impl<'a> Ids<'a> {
    /// `text`'s ids from `table` (its list `list`): in Picky's order when
    /// that is not ascending (documents merged from a repeated id).
    fn of(table: &'a Postings, text: &str, list: PostingList<'a>) -> Ids<'a> {
        match table.picky_order(text) {
            Some(ordered) => {
                let mut sorted = Vec::with_capacity(list.len());
                list.decode_into(&mut sorted);
                Ids::Merged { ordered, sorted }
            }
            None => Ids::Index(list),
        }
    }

    /// No ids: a constant-weight candidate for a text its category lacks.
    fn empty() -> Self {
        Ids::Merged {
            ordered: Vec::new(),
            sorted: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Ids::Index(l) => l.len(),
            Ids::Merged { ordered, .. } => ordered.len(),
        }
    }

    /// The ids in ascending order, for intersecting.
    pub(super) fn view(&self) -> View<'_> {
        match self {
            Ids::Index(l) => View::List(*l),
            Ids::Merged { sorted, .. } => View::Slice(sorted),
        }
    }
}

/// What a combination is labelled with in the answer.
#[derive(Debug, Clone)]
pub(super) enum Label {
    Category(usize),
    /// An OR token's joined category names; never boosted.
    Joined(String),
}

#[derive(Debug, Clone)]
pub(super) struct Combination<'a> {
    pub(super) label: Label,
    pub(super) weight: Number,
    pub(super) ids: Ids<'a>,
    pub(super) original: Cow<'a, str>,
    pub(super) text: Cow<'a, str>,
}

/// Every token's combinations in one list: token `t` has
/// `all[starts[t]..starts[t + 1]]`. Picks are indices into `all`.
pub(super) struct Combos<'a, 's> {
    pub(super) all: Vec<Combination<'a>>,
    pub(super) starts: &'s [usize],
}

impl Combos<'_, '_> {
    pub(super) fn tokens(&self) -> usize {
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
                            ids: Ids::of(&cat.exact, word, list),
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
                ruby::upto(a, b, &mut |t| {
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
                Weight::Logarithmic { .. } => None,
            };
            let ids = match &texts {
                None => match cat.key(&part.text).and_then(|k| Some((table.get(&k)?, k))) {
                    Some((list, k)) => Some((cat.weight_of(list), Ids::of(table, &k, list))),
                    None => constant.map(|w| (w, Ids::empty())),
                },
                // Picky sums the weights of the texts that have one (with a
                // constant weight: every text of the range) and concatenates
                // the lists of those found (duplicates kept).
                Some(texts) => {
                    let mut weight: Option<Number> = None;
                    let mut ordered = Vec::new();
                    for t in texts {
                        let Some(t) = cat.key(t) else { continue };
                        let t = &*t;
                        let found = table.get(t);
                        if let Some(w) = found.map(|list| cat.weight_of(list)).or(constant) {
                            // Ruby's `weight + (sum || 0)`.
                            weight = Some(w + weight.unwrap_or(Number::Int(0)));
                        }
                        if let Some(list) = found {
                            match table.picky_order(t) {
                                Some(order) => ordered.extend(order),
                                None => ordered.extend(list.iter()),
                            }
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
    pub(super) fn token_combinations<'a>(
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
            // Picky's Or combination starts with 0.0 and keeps it.
            weight: Number::Float(0.0),
            ids: Ids::Merged { ordered, sorted },
            original: Cow::Owned(original),
            text: Cow::Owned(text),
        });
        Ok(())
    }
}
