//! Tokenizers: turn a field value (at index time) or a query (at search time)
//! into words, the way Picky's tokenizer does.
//!
//! Order of the steps, as Picky applies them: character substitution, removal
//! of characters, stopwords (skipped when the text is a "single word"),
//! splitting, normalizing each word (the first matching pattern, all its
//! matches), rejecting words (empty ones by default), an optional cap on
//! the number of words, lowercasing (Ruby's `downcase`, see
//! [`crate::ruby::downcase`]).

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
    /// Picky's `Polish`: NFKD, `Ł`/`ł` -> `L`/`l`, then combining marks
    /// dropped (`Łódź` -> `Lodz`; no `ß` or umlaut rule).
    Polish,
}

/// Which words are dropped after normalizing (Picky's `rejects_token_if`,
/// its common forms; it sees the word before lowercasing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reject {
    /// Empty words (Picky's default, `:empty?.to_proc`).
    #[default]
    Empty,
    /// Words of whitespace only, or empty (`:blank?.to_proc`).
    Blank,
    /// Words of fewer than `chars` characters (`lambda { |t| t.size < n }`).
    ShorterThan { chars: usize },
}

impl Reject {
    fn is_default(&self) -> bool {
        *self == Reject::Empty
    }

    fn rejects(self, word: &str) -> bool {
        match self {
            Reject::Empty => word.is_empty(),
            Reject::Blank => word.chars().all(char::is_whitespace),
            Reject::ShorterThan { chars } => word.chars().count() < chars,
        }
    }
}

/// A tokenizer's options as written in the definition and stored in the
/// snapshot. [`TokenizerSpec::compile`] turns it into a [`Tokenizer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerSpec {
    pub substitute: Substitution,
    pub remove: Option<String>,
    pub stopwords: Option<String>,
    pub split: Option<String>,
    /// Picky's `normalizes_words`: `[pattern, replacement]` pairs, the
    /// replacement in Ruby's syntax (`\1`, `\0`, `\k<name>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub normalize: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Reject::is_default")]
    pub reject: Reject,
    pub case_sensitive: bool,
    pub max_words: Option<usize>,
}

/// Picky's default split pattern: every single whitespace character.
const DEFAULT_SPLIT: &str = r"[ \t\n\x0B\x0C\r]";

impl TokenizerSpec {
    /// Validates the patterns; on error returns the offending field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, pattern) in [
            ("remove", &self.remove),
            ("stopwords", &self.stopwords),
            ("split", &self.split),
        ] {
            if let Some(p) = pattern {
                compile_pattern(p).map_err(|e| (field, e))?;
            }
        }
        for (pattern, replacement) in &self.normalize {
            compile_pattern(pattern).map_err(|e| ("normalize", e))?;
            ruby_replacement(replacement).map_err(|e| ("normalize", e))?;
        }
        if self.max_words == Some(0) {
            return Err(("max_words", "must be at least 1 when given".into()));
        }
        if self.reject == (Reject::ShorterThan { chars: 0 }) {
            return Err((
                "reject.chars",
                "must be at least 1 (0 rejects nothing)".into(),
            ));
        }
        Ok(())
    }

    pub fn compile(&self) -> Result<Tokenizer, String> {
        let opt = |p: &Option<String>| p.as_deref().map(compile_pattern).transpose();
        Ok(Tokenizer {
            substitute: self.substitute,
            remove: opt(&self.remove)?,
            stopwords: opt(&self.stopwords)?,
            split: compile_pattern(self.split.as_deref().unwrap_or(DEFAULT_SPLIT))?,
            normalize: self
                .normalize
                .iter()
                .map(|(p, r)| Ok((compile_pattern(p)?, ruby_replacement(r)?)))
                .collect::<Result<_, String>>()?,
            reject: self.reject,
            case_sensitive: self.case_sensitive,
            max_words: self.max_words,
        })
    }
}

/// A Ruby `gsub` replacement (`\\0`/`\\&` the match, `\\1`..`\\9` groups,
/// `\\k<name>`, `\\\\` a backslash) in the regex crate's syntax.
fn ruby_replacement(r: &str) -> Result<String, String> {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d @ '0'..='9') => out.push_str(&format!("${{{d}}}")),
                Some('&') => out.push_str("${0}"),
                Some('\\') => out.push('\\'),
                Some('k') if chars.peek() == Some(&'<') => {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some(other @ ('`' | '\'')) => {
                    return Err(format!(
                        "replacement {r:?}: \\{other} (the text before/after the match) is not supported"
                    ));
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
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
    /// Patterns and replacements in the regex crate's syntax.
    normalize: Vec<(Regex, String)>,
    reject: Reject,
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
            Substitution::Polish if text.is_ascii() => Cow::Borrowed(text),
            Substitution::Polish => Cow::Owned(polish(text)),
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
            let word = self.normalized(piece);
            if self.reject.rejects(&word) {
                continue;
            }
            if self.max_words.is_some_and(|m| n >= m) {
                break;
            }
            n += 1;
            match word {
                word if self.case_sensitive => f(word),
                Cow::Borrowed(w) => f(crate::ruby::downcase(w)),
                Cow::Owned(w) => f(Cow::Owned(crate::ruby::downcase(&w).into_owned())),
            }
        }
    }

    /// `word` after the first normalizing pattern that matches it (every
    /// match of it replaced; the others are not tried).
    fn normalized<'w>(&self, word: &'w str) -> Cow<'w, str> {
        for (re, replacement) in &self.normalize {
            if re.is_match(word) {
                return re.replace_all(word, replacement.as_str());
            }
        }
        Cow::Borrowed(word)
    }

    /// The whole pipeline: text in, words out.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let pre = self.preprocess(text);
        let mut out = Vec::new();
        self.each_word(&pre, |w| out.push(w.into_owned()));
        out
    }
}

/// Picky's Polish character substitution.
pub fn polish(text: &str) -> String {
    text.nfkd()
        .filter_map(|c| match c {
            'Ł' => Some('L'),
            'ł' => Some('l'),
            '\u{0300}'..='\u{035F}' => None,
            c => Some(c),
        })
        .collect()
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

    /// normalizes_words as Picky applies it (its own examples): the first
    /// pattern that matches rewrites every match of it and ends the
    /// chain, before rejecting and lowercasing, and is not split again;
    /// Ruby's back-references become the regex crate's.
    #[test]
    fn normalizes_like_picky() {
        let t = |pairs: &[(&str, &str)], text: &str| {
            TokenizerSpec {
                normalize: pairs
                    .iter()
                    .map(|(p, r)| (p.to_string(), r.to_string()))
                    .collect(),
                ..Default::default()
            }
            .compile()
            .unwrap()
            .tokenize(text)
        };
        assert_eq!(t(&[("aa", "b"), ("b", "c")], "aaaa xbx"), ["bb", "xcx"]);
        assert_eq!(t(&[("aa", "b"), ("b", "c")], "aab"), ["bb"]);
        assert_eq!(t(&[("x", "a b")], "x y"), ["a b", "y"]);
        assert_eq!(t(&[("Foo", "bar")], "Foo foo"), ["bar", "foo"]);
        assert_eq!(t(&[("zz", "")], "zz yy"), ["yy"]);
        assert_eq!(
            t(&[(r"(?i)\A([a-z]+)strasse\z", r"\1 str")], "Hauptstrasse"),
            ["haupt str"]
        );
        assert_eq!(
            t(&[(r"(?<w>o+)", r"<\k<w>|\0|\&|$1>")], "foo"),
            ["f<oo|oo|oo|$1>"]
        );
        assert!(ruby_replacement(r"\'").is_err());
    }

    #[test]
    fn rejects_like_picky() {
        let t = |reject: Reject, substitute: Substitution, text: &str| {
            TokenizerSpec {
                reject,
                substitute,
                split: Some(",".into()),
                ..Default::default()
            }
            .compile()
            .unwrap()
            .tokenize(text)
        };
        let none = Substitution::None;
        assert_eq!(t(Reject::Empty, none, "a, ,b,,"), ["a", " ", "b"]);
        assert_eq!(t(Reject::Blank, none, "a, ,b,,\u{a0}"), ["a", "b"]);
        let short = Reject::ShorterThan { chars: 2 };
        assert_eq!(t(short, none, "Ä,ä,ab"), ["ab"]);
        // Characters are counted after substitution: Ä is Ae.
        assert_eq!(t(short, Substitution::WestEuropean, "Ä,b"), ["ae"]);
        // Seen before lowercasing.
        let t2 = TokenizerSpec {
            reject: Reject::ShorterThan { chars: 3 },
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert_eq!(t2.tokenize("İİ ab abc"), ["abc"]);
    }

    /// Picky's Polish substituter differs from WestEuropean on exactly the
    /// umlauts, ß and Ł.
    #[test]
    fn polish_like_picky() {
        assert_eq!(polish("Łódź Zażółć gęślą jaźń"), "Lodz Zazolc gesla jazn");
        assert_eq!(polish("Müller Straße Ä"), "Muller Straße A");
        assert_eq!(west_european("Müller Straße Ł"), "Mueller Strasse Ł");
        assert_eq!(polish("…\u{a0}ﬁ"), "... fi");
    }
}
