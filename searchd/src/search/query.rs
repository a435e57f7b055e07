//! A query's words and what they say: qualifiers (`title,author:`), `|`
//! alternatives, `*` partial, `"` exact, `~` similar and `…` ranges.

use std::borrow::Cow;

use super::RANGE_CHARACTER;
use crate::index::Engine;
use crate::ruby;

/// The query's words after the search tokenizer, back to back in one
/// string (`ends[i]` is where word `i` ends).
#[derive(Default)]
pub(super) struct Words {
    pub(super) text: String,
    pub(super) ends: Vec<usize>,
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
pub(super) struct Part<'w> {
    /// Allowed categories, in the order given (duplicates kept); `None`
    /// means every category in index order.
    pub(super) categories: Option<Vec<usize>>,
    pub(super) text: Cow<'w, str>,
    pub(super) original: Cow<'w, str>,
    pub(super) similar: bool,
    pub(super) partial: Option<bool>,
    /// `a…b`: the text split at the first range character, taken before
    /// `"`, `~` and `*` are removed (as Picky does).
    pub(super) range: Option<(&'w str, &'w str)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token<'w> {
    One(Part<'w>),
    /// `a|b`: its parts' combinations merged into one.
    Or(Vec<Part<'w>>),
}

impl<'w> Part<'w> {
    /// A word looked up as it is in one category only, exact (Picky's
    /// facet key token).
    pub(super) fn exact_in(category: usize, text: &'w str) -> Part<'w> {
        Part {
            categories: Some(vec![category]),
            text: Cow::Borrowed(text),
            original: Cow::Borrowed(text),
            similar: false,
            partial: Some(false),
            range: None,
        }
    }
}

impl Engine {
    fn parse_part<'w>(&self, raw: &'w str, original: Option<&'w str>) -> Part<'w> {
        let (categories, text) = match raw.split_once(':') {
            Some((quals, text)) => {
                let cats = ruby::split(quals, ',')
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
    pub(super) fn words(&self, query: &str, words: &mut Words) {
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
    pub(super) fn parse<'w>(&self, words: &'w Words) -> Option<Vec<Token<'w>>> {
        self.parse_with(words, true)
    }

    /// [`Engine::parse`]; `partial_last: false` leaves the last token as
    /// it is (Picky's `tokenized(text, false)`, facet filters).
    pub(super) fn parse_with<'w>(
        &self,
        words: &'w Words,
        partial_last: bool,
    ) -> Option<Vec<Token<'w>>> {
        let mut tokens = Vec::with_capacity(words.ends.len());
        for word in words.iter() {
            if !word.contains('|') {
                tokens.push(Token::One(self.parse_part(word, None)));
                continue;
            }
            let parts: Vec<&str> = ruby::split(word, '|').collect();
            match parts.len() {
                0 => return None,
                1 => tokens.push(Token::One(self.parse_part(parts[0], Some(word)))),
                _ => tokens.push(Token::Or(
                    parts.iter().map(|p| self.parse_part(p, Some(p))).collect(),
                )),
            }
        }
        // The last token is partial unless it said otherwise.
        if let Some(last) = tokens.last_mut().filter(|_| partial_last) {
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
