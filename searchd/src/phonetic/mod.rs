//! Phonetic codes and edit distance for similarity search (`word~`).
//!
//! Picky builds its similarity index with Ruby's `text` gem (1.3.1), and a
//! drop-in replacement has to produce the very same codes, quirks included,
//! or similar words stop finding each other. This module owns those codes:
//!
//! * [`double_metaphone`] — `Text::Metaphone.double_metaphone`
//! * [`metaphone`] — `Text::Metaphone.metaphone`
//! * [`soundex`] — `Text::Soundex.soundex`
//! * [`levenshtein`] — `Text::Levenshtein.distance`, used to rank and cut
//!   the candidates that share a code.
//!
//! All functions accept any string (any case, digits, non-ASCII, empty) and
//! behave as the gem does on it; none of them panics. The test suite replays
//! `tests/golden/phonetic.tsv`, outputs recorded from the gem itself.

mod double_metaphone;
mod metaphone;
mod soundex;

pub use double_metaphone::double_metaphone;
pub use metaphone::metaphone;
pub use soundex::soundex;

/// Levenshtein distance between `a` and `b`, counted in Unicode scalar
/// values (insertions, deletions and substitutions all cost 1), like
/// `Text::Levenshtein.distance` without a maximum.
#[must_use]
pub fn levenshtein(a: &str, b: &str) -> usize {
    // Keep one row over the shorter string; distance is symmetric.
    let (long, short) = if a.chars().count() >= b.chars().count() {
        (a, b)
    } else {
        (b, a)
    };
    let short: Vec<char> = short.chars().collect();
    let mut row: Vec<usize> = (0..=short.len()).collect();
    for (i, lc) in long.chars().enumerate() {
        // `diag` is the previous row's value left of the current cell.
        let mut diag = i;
        row[0] = i + 1;
        for (j, &sc) in short.iter().enumerate() {
            let substitution = diag + usize::from(lc != sc);
            diag = row[j + 1];
            row[j + 1] = substitution.min(diag + 1).min(row[j] + 1);
        }
    }
    row[short.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("sitting", "kitten"), 3);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        // Characters, not bytes.
        assert_eq!(levenshtein("müller", "muller"), 1);
        assert_eq!(levenshtein("日本", "日本語"), 1);
    }

    /// Replays every row of the gem's recorded outputs and reports all
    /// mismatches at once, so a fix can be checked against the whole table.
    #[test]
    fn golden_table_matches_ruby_text_gem() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/phonetic.tsv");
        let table =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let mut lines = table.lines();
        assert_eq!(
            lines.next(),
            Some("word\tdm_primary\tdm_secondary\tmetaphone\tsoundex"),
            "unexpected header in {path}"
        );
        let none_if_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let mut rows = 0;
        let mut mismatches = Vec::new();
        for (n, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [word, primary, secondary, meta, sdx] = fields[..] else {
                mismatches.push(format!("line {}: expected 5 fields: {line:?}", n + 2));
                continue;
            };
            rows += 1;
            let expected = (
                (primary.to_string(), none_if_empty(secondary)),
                meta.to_string(),
                none_if_empty(sdx),
            );
            let got = (double_metaphone(word), metaphone(word), soundex(word));
            if got != expected {
                mismatches.push(format!("{word:?}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(rows > 0, "{path} has no rows");
        assert!(
            mismatches.is_empty(),
            "{} of {rows} rows differ from the gem:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }
}
