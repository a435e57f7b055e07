//! Tokenizers: turn a field value (at index time) or a query (at search time)
//! into words, the way Picky's tokenizer does.
//!
//! Order of the steps, as Picky applies them: character substitution, removal
//! of characters, stopwords (skipped when the text is a "single word"),
//! splitting, dropping empty pieces, lowercasing (Ruby's `downcase`, see
//! [`crate::ruby::downcase`]), and an optional cap on the number of words.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Character substitution applied before anything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Substitution {
    #[default]
    None,
    /// Picky's `WestEuropean`: NFKD, `ß` -> `ss`, umlauts -> `ae`/`oe`/`ue`,
    /// then combining marks dropped (`gómez` -> `gomez`).
    WestEuropean,
}

/// A tokenizer's options as written in the definition and stored in the
/// snapshot. [`TokenizerSpec::compile`] turns it into a [`Tokenizer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenizerSpec {
    pub substitute: Substitution,
    pub remove: Option<String>,
    pub stopwords: Option<String>,
    pub split: Option<String>,
    pub case_sensitive: bool,
    pub max_words: Option<usize>,
}

/// Picky's default split pattern: every single whitespace character.
const DEFAULT_SPLIT: &str = r"[ \t\n\x0B\x0C\r]";

impl TokenizerSpec {
    /// Validates the patterns; on error returns the offending field and why.
    pub fn from_raw(
        substitute: Substitution,
        remove: Option<String>,
        stopwords: Option<String>,
        split: Option<String>,
        case_sensitive: bool,
        max_words: Option<usize>,
    ) -> Result<TokenizerSpec, (&'static str, String)> {
        let spec = TokenizerSpec {
            substitute,
            remove,
            stopwords,
            split,
            case_sensitive,
            max_words,
        };
        for (field, pattern) in [
            ("remove", &spec.remove),
            ("stopwords", &spec.stopwords),
            ("split", &spec.split),
        ] {
            if let Some(p) = pattern {
                compile_pattern(p).map_err(|e| (field, e))?;
            }
        }
        if spec.max_words == Some(0) {
            return Err(("max_words", "must be at least 1 when given".into()));
        }
        Ok(spec)
    }

    pub fn compile(&self) -> Result<Tokenizer, String> {
        let opt = |p: &Option<String>| p.as_deref().map(compile_pattern).transpose();
        Ok(Tokenizer {
            substitute: self.substitute,
            remove: opt(&self.remove)?,
            stopwords: opt(&self.stopwords)?,
            split: compile_pattern(self.split.as_deref().unwrap_or(DEFAULT_SPLIT))?,
            case_sensitive: self.case_sensitive,
            max_words: self.max_words,
        })
    }
}

fn compile_pattern(p: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid pattern {p:?}: {e}"))
}

/// A compiled tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    substitute: Substitution,
    remove: Option<Regex>,
    stopwords: Option<Regex>,
    split: Regex,
    case_sensitive: bool,
    max_words: Option<usize>,
}

/// Picky keeps stopwords when some line of the text is a "single word": a
/// run of ASCII word characters and colons starting and ending with a word
/// character, an optional `.`, `*` or `~`, and at most one whitespace.
/// (`\b` is Unicode-aware in both Ruby and here; `\w` and `\s` are ASCII.)
static SINGLE_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\b[A-Za-z0-9_:]+?\b[.*~]?[ \t\n\x0B\x0C\r]?$").expect("static pattern")
});

impl Tokenizer {
    /// Runs every step up to (not including) splitting.
    pub fn preprocess<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text: Cow<'a, str> = match self.substitute {
            Substitution::None => Cow::Borrowed(text),
            // ASCII is NFKD-invariant and has nothing to substitute.
            Substitution::WestEuropean if text.is_ascii() => Cow::Borrowed(text),
            Substitution::WestEuropean => Cow::Owned(west_european(text)),
        };
        if let Some(re) = &self.remove
            && let Cow::Owned(s) = re.replace_all(&text, "")
        {
            text = Cow::Owned(s);
        }
        if let Some(re) = &self.stopwords
            && !SINGLE_WORD.is_match(&text)
            && let Cow::Owned(s) = re.replace_all(&text, "")
        {
            text = Cow::Owned(s);
        }
        text
    }

    /// Splits preprocessed text into lowercased words, calling `f` for each.
    pub fn each_word(&self, text: &str, mut f: impl FnMut(Cow<'_, str>)) {
        let mut n = 0usize;
        for piece in self.split.split(text) {
            if piece.is_empty() {
                continue;
            }
            if self.max_words.is_some_and(|m| n >= m) {
                break;
            }
            n += 1;
            if self.case_sensitive {
                f(Cow::Borrowed(piece));
            } else {
                f(crate::ruby::downcase(piece));
            }
        }
    }

    /// The whole pipeline: text in, words out.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let pre = self.preprocess(text);
        let mut out = Vec::new();
        self.each_word(&pre, |w| out.push(w.into_owned()));
        out
    }
}

/// Picky's West European character substitution.
pub fn west_european(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.nfkd().peekable();
    while let Some(c) = chars.next() {
        match c {
            'ß' => out.push_str("ss"),
            'a' | 'o' | 'u' | 'A' | 'O' | 'U' if chars.peek() == Some(&'\u{0308}') => {
                chars.next();
                out.push(c);
                out.push('e');
            }
            '\u{0300}'..='\u{035F}' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books_indexing() -> Tokenizer {
        TokenizerSpec {
            remove: Some(r#"[^a-zA-Z0-9 \t\n\x0B\x0C\r/\-_:"&.]"#.into()),
            stopwords: Some(r"(?i)\b(and|the|of|it|in|for)\b".into()),
            split: Some(r#"[ \t\n\x0B\x0C\r/\-_:"&.]"#.into()),
            ..Default::default()
        }
        .compile()
        .unwrap()
    }

    fn books_searching() -> Tokenizer {
        TokenizerSpec {
            substitute: Substitution::WestEuropean,
            remove: Some(r#"[^\p{L}\p{N} \t\n\x0B\x0C\r/\-_&."~*:,|]"#.into()),
            stopwords: Some(r"(?i)\b(and|the|of|it|in|for)\b".into()),
            split: Some(r"[ \t\n\x0B\x0C\r/\-&]+".into()),
            ..Default::default()
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn indexing_follows_picky() {
        let t = books_indexing();
        assert_eq!(
            t.tokenize("First Three Minutes, The"),
            ["first", "three", "minutes"]
        );
        assert_eq!(
            t.tokenize("Gómez-Quiñones, Juan"),
            ["gmez", "quiones", "juan"]
        );
        assert_eq!(
            t.tokenize("Taylor's Jr. 1838-1945"),
            ["taylors", "jr", "1838", "1945"]
        );
        // A single word keeps its stopword.
        assert_eq!(t.tokenize("The"), ["the"]);
    }

    #[test]
    fn searching_follows_picky() {
        let t = books_searching();
        assert_eq!(t.tokenize("the alan"), ["alan"]);
        assert_eq!(t.tokenize("the"), ["the"]);
        assert_eq!(t.tokenize("title:the"), ["title:the"]);
        assert_eq!(t.tokenize("the\nalan"), ["the", "alan"]);
        assert_eq!(
            t.tokenize("Müller GÓMEZ straße"),
            ["mueller", "gomez", "strasse"]
        );
        assert_eq!(
            t.tokenize("ﬁsh alan. history_theory"),
            ["fish", "alan.", "history_theory"]
        );
        assert_eq!(t.tokenize("a-b/c&d  e"), ["a", "b", "c", "d", "e"]);
        // Ruby's downcase: no final sigma (NFKD turns ǅ into Dz first).
        assert_eq!(t.tokenize("ΟΔΟΣ ΣΑΣ ǅemal"), ["οδοσ", "σασ", "dzemal"]);
    }

    #[test]
    fn lowercases_like_ruby() {
        let t = TokenizerSpec::default().compile().unwrap();
        assert_eq!(t.tokenize("ΟΔΟΣ Οδός ǅemal"), ["οδοσ", "οδός", "ǆemal"]);
        let t = TokenizerSpec {
            case_sensitive: true,
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert_eq!(t.tokenize("ΟΔΟΣ ǅemal"), ["ΟΔΟΣ", "ǅemal"]);
    }

    #[test]
    fn max_words_caps() {
        let t = TokenizerSpec {
            max_words: Some(2),
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert_eq!(t.tokenize("a b c"), ["a", "b"]);
    }
}
