//! The synthetic corpus for the scale benchmark: documents shaped like the
//! books example (id, title, author, year) with a realistic word
//! distribution, the index definition that indexes them like
//! `images/books/index.toml`, and a query mix shaped like the books mix.
//! For the comparison with tantivy-cli: a stream of distinct queries
//! (single words, two-word ANDs, author names) as request paths for both
//! engines, wrk scripts walking them, and tantivy's schema for the same
//! documents.
//!
//! Words are generated, pronounceable, lower-case ASCII (so the
//! double-metaphone similarity has something to work with) and drawn with
//! Zipf's law; frequent words are short, as in natural language. Everything
//! is a pure function of the seed.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::rng::{Rng, Zipf};

/// Words Picky-style tokenizers drop (the books definition's stopwords):
/// never generated as vocabulary.
const STOPWORDS: &[&str] = &["and", "the", "of", "it", "in", "for"];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "io", "y",
];
const CODAS: &[&str] = &[
    "", "", "", "", "n", "r", "s", "l", "m", "t", "nd", "st", "rk", "ng",
];

/// The shape of the generated corpus.
#[derive(Debug, Clone)]
pub struct Config {
    /// Title vocabulary size.
    pub vocabulary: usize,
    /// Distinct last names.
    pub surnames: usize,
    /// Distinct first names.
    pub first_names: usize,
    /// Zipf exponent of title words (about 1.0 in natural language).
    pub zipf: f64,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vocabulary: 50_000,
            surnames: 20_000,
            first_names: 2_000,
            zipf: 1.0,
            seed: 1,
        }
    }
}

/// Output format of the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV with a header row `id,title,author,year`.
    Csv,
    /// JSON Lines: `{"id":1,"title":…,"author":…,"year":1999}`.
    Jsonl,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// One document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub id: u64,
    /// Title words, lower case, stopwords included.
    pub title: Vec<String>,
    pub last: String,
    pub first: String,
    pub year: u16,
}

impl Doc {
    /// The title as written in the data: each word capitalised.
    pub fn title_text(&self) -> String {
        let mut s = String::new();
        for (i, w) in self.title.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&capitalise(w));
        }
        s
    }

    /// "Last, First".
    pub fn author_text(&self) -> String {
        format!("{}, {}", capitalise(&self.last), capitalise(&self.first))
    }
}

/// The vocabularies and distributions of a corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub words: Vec<String>,
    pub surnames: Vec<String>,
    pub first_names: Vec<String>,
    word_zipf: Zipf,
    surname_zipf: Zipf,
    first_zipf: Zipf,
    seed: u64,
}

impl Corpus {
    pub fn new(cfg: &Config) -> Corpus {
        let mut rng = Rng::new(cfg.seed ^ 0x5EED_0000_0000_0001);
        let mut seen: HashSet<String> = STOPWORDS.iter().map(|s| (*s).to_owned()).collect();
        let words = vocabulary(&mut rng, cfg.vocabulary.max(1), &mut seen);
        // Names may repeat title words (as "Baker" or "Bell" do): own set.
        let mut seen_names = seen_stopwords();
        let surnames = vocabulary(&mut rng, cfg.surnames.max(1), &mut seen_names);
        let first_names = vocabulary(&mut rng, cfg.first_names.max(1), &mut seen_names);
        Corpus {
            word_zipf: Zipf::new(words.len(), cfg.zipf),
            surname_zipf: Zipf::new(surnames.len(), 0.9),
            first_zipf: Zipf::new(first_names.len(), 1.0),
            words,
            surnames,
            first_names,
            seed: cfg.seed,
        }
    }

    /// Documents with ids `1..=n`, in order.
    pub fn documents(&self, n: u64) -> impl Iterator<Item = Doc> + '_ {
        let mut rng = Rng::new(self.seed ^ 0xD0C5_0000_0000_0002);
        (1..=n).map(move |id| self.document(&mut rng, id))
    }

    fn document(&self, rng: &mut Rng, id: u64) -> Doc {
        // 2..=10 content words, mostly 3 to 6, plus a few stopwords while
        // the title stays within 10 words.
        let content = 2 + rng.weighted(&[10, 18, 20, 17, 12, 9, 6, 5, 3]);
        let mut title = Vec::with_capacity(10);
        if content < 10 && rng.chance(0.2) {
            title.push("the".to_owned());
        }
        for i in 0..content {
            let w = &self.words[self.word_zipf.sample(rng)];
            title.push(w.clone());
            let remaining = content - i - 1;
            if remaining > 0 && title.len() + remaining < 10 && rng.chance(0.08) {
                title.push(if rng.chance(0.6) { "of" } else { "and" }.to_owned());
            }
        }
        let last = self.surnames[self.surname_zipf.sample(rng)].clone();
        let first = self.first_names[self.first_zipf.sample(rng)].clone();
        // More recent years are more frequent: density grows linearly.
        let year = 1900 + (125.0 * rng.unit().sqrt()) as u16;
        Doc {
            id,
            title,
            last,
            first,
            year: year.min(2024),
        }
    }
}

fn seen_stopwords() -> HashSet<String> {
    STOPWORDS.iter().map(|s| (*s).to_owned()).collect()
}

/// `n` distinct pronounceable words; the first (most frequent) are short.
fn vocabulary(rng: &mut Rng, n: usize, seen: &mut HashSet<String>) -> Vec<String> {
    let mut words = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while words.len() < n {
        attempts += 1;
        let rank = words.len();
        // Syllables by rank (Zipf's law of abbreviation), growing when short
        // words run out.
        let (lo, hi) = match rank {
            0..100 => (1, 2),
            100..5_000 => (2, 3),
            _ => (2, 4),
        };
        let extra = attempts / (20 * n.max(1) + 1000);
        let syllables = rng.range(lo, hi) + extra;
        let w = word(rng, syllables);
        if w.len() >= 2 && seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn word(rng: &mut Rng, syllables: usize) -> String {
    let mut w = String::new();
    for i in 0..syllables {
        let onset = ONSETS[rng.below(ONSETS.len())];
        // A word starts with a consonant more often than not.
        if i > 0 || !onset.is_empty() || rng.chance(0.3) {
            w.push_str(onset);
        }
        w.push_str(VOWELS[rng.below(VOWELS.len())]);
        if i + 1 == syllables || rng.chance(0.25) {
            w.push_str(CODAS[rng.below(CODAS.len())]);
        }
    }
    w
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Writes the documents; returns the number of bytes written.
pub fn write_documents<W: Write>(
    out: &mut W,
    format: Format,
    docs: impl Iterator<Item = Doc>,
) -> io::Result<u64> {
    let mut n = 0u64;
    let mut line = String::with_capacity(256);
    if format == Format::Csv {
        line.push_str("id,title,author,year\n");
        out.write_all(line.as_bytes())?;
        n += line.len() as u64;
    }
    for d in docs {
        line.clear();
        match format {
            // Words are [a-z] only and titles have no comma or quote, so
            // quoting the two text fields is all CSV needs.
            Format::Csv => {
                let _ = writeln!(
                    line,
                    "{},\"{}\",\"{}\",{}",
                    d.id,
                    d.title_text(),
                    d.author_text(),
                    d.year
                );
            }
            Format::Jsonl => {
                let _ = writeln!(
                    line,
                    "{{\"id\":{},\"title\":{},\"author\":{},\"year\":{}}}",
                    d.id,
                    serde_json::Value::String(d.title_text()),
                    serde_json::Value::String(d.author_text()),
                    d.year
                );
            }
        }
        out.write_all(line.as_bytes())?;
        n += line.len() as u64;
    }
    Ok(n)
}

/// The index definition for the corpus: the books example's categories,
/// tokenizers and boosts (title and author with substring partials, title
/// with double-metaphone similarity, year exact), reading `data_file`
/// (relative to the definition).
pub fn index_definition(name: &str, data_file: &str, format: Format, golden: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Synthetic corpus for `make bench` (generated by benchkit's `corpus`).\n\
         # Modelled on images/books/index.toml: same tokenizers, categories and boosts.\n\
         name = {name:?}\n\n[id]\nfield = \"id\"\nkind = \"integer\"\n\n\
         [source]\npath = {data_file:?}\nformat = {:?}",
        format.extension()
    );
    if format == Format::Csv {
        s.push_str("header = true\n");
    }
    s.push_str(
        r#"
[indexing]
substitute = "none"
remove = '[^a-zA-Z0-9 \t\n\x0B\x0C\r/\-_:"&.]'
stopwords = '(?i)\b(and|the|of|it|in|for)\b'
split = '[ \t\n\x0B\x0C\r/\-_:"&.]'

[searching]
substitute = "west_european"
remove = '[^\p{L}\p{N} \t\n\x0B\x0C\r/\-_&."~*:,|]'
stopwords = '(?i)\b(and|the|of|it|in|for)\b'
split = '[ \t\n\x0B\x0C\r/\-&]+'

[[category]]
name = "title"
partial = { kind = "substring", from = 1 }
similarity = { kind = "double_metaphone", amount = 3 }

[[category]]
name = "author"
partial = { kind = "substring", from = 1 }

[[category]]
name = "year"
partial = { kind = "none" }

[[boost]]
categories = ["title", "author"]
value = 3

[[boost]]
categories = ["title"]
value = 1
"#,
    );
    for q in golden {
        let _ = write!(s, "\n[[golden]]\nquery = {q:?}\nmin_total = 1\n");
    }
    s
}

/// Golden queries for the definition: terms that occur in the first
/// documents, so they have answers at any corpus size.
pub fn golden_queries(sample: &[Doc]) -> Vec<String> {
    let mut g = Vec::new();
    if let Some(d) = sample.first() {
        if let Some(w) = content_words(d).next() {
            g.push(w.to_owned());
            g.push(format!("title:{}", &w[..w.len().min(3)]));
        }
        g.push(format!("author:{}", d.last));
    }
    g
}

fn content_words(d: &Doc) -> impl Iterator<Item = &str> {
    d.title
        .iter()
        .map(String::as_str)
        .filter(|w| !STOPWORDS.contains(w))
}

/// The query mix for the corpus: 20 request paths shaped like the books mix
/// in `bench/wrk_queries.lua` (single words of several frequencies,
/// prefixes, two-word AND, qualifiers, similarity, stopwords, a year, paging,
/// `ids=0`), drawn from the vocabulary and from `sample` documents so that
/// multi-word queries have answers.
pub fn query_paths(index: &str, corpus: &Corpus, sample: &[Doc]) -> Vec<String> {
    let w = |rank: usize| corpus.words[rank.min(corpus.words.len() - 1)].as_str();
    let prefix = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    // A sample document with at least two content words.
    let doc = sample
        .iter()
        .find(|d| content_words(d).count() >= 2)
        .or(sample.first());
    let (t1, t2, last, year) = match doc {
        Some(d) => {
            let mut cw = content_words(d);
            let a = cw.next().unwrap_or(w(0)).to_owned();
            let b = cw.next().unwrap_or(w(1)).to_owned();
            (a, b, d.last.clone(), d.year)
        }
        None => (w(0).to_owned(), w(1).to_owned(), w(2).to_owned(), 1999),
    };
    let queries: Vec<(String, &str)> = vec![
        (w(3).to_owned(), ""),
        (prefix(w(40), 3), ""),
        (prefix(w(5), 2), ""),
        (w(300).to_owned(), ""),
        (prefix(w(300), 4), ""),
        (format!("{t1} {t2}"), ""),
        (format!("{t1} {}", prefix(&t2, 1)), ""),
        // Like "a s": a very frequent short word, then a one-letter prefix.
        (format!("{} {}", w(0), prefix(w(2), 1)), ""),
        (format!("{last} {t1}"), ""),
        (format!("title:{}", w(10)), ""),
        (
            format!(
                "author:{}",
                corpus.surnames[5.min(corpus.surnames.len() - 1)]
            ),
            "",
        ),
        (format!("year:{year}"), ""),
        (
            format!(
                "title,author:{}",
                corpus.surnames[3.min(corpus.surnames.len() - 1)]
            ),
            "",
        ),
        (format!("{}~", misspell(w(20))), ""),
        (format!("{}~", misspell(w(150))), ""),
        (format!("the {} of", w(60)), ""),
        (format!("{year} {}", prefix(&t1, 1)), ""),
        (
            corpus.first_names[2.min(corpus.first_names.len() - 1)].clone(),
            "",
        ),
        (prefix(w(0), 1), "&ids=5&offset=10"),
        (w(1).to_owned(), "&ids=0"),
    ];
    queries
        .into_iter()
        .map(|(q, extra)| format!("/{index}?query={}{extra}", url_encode(&q)))
        .collect()
}

/// A plausible misspelling: the last vowel replaced by another one that
/// sounds alike (so double metaphone still finds the word).
pub fn misspell(word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if let Some(i) = chars.iter().rposition(|c| "aeiouy".contains(*c)) {
        chars[i] = match chars[i] {
            'a' => 'e',
            'e' => 'i',
            'i' => 'y',
            'o' => 'u',
            'u' => 'o',
            _ => 'i',
        };
    } else {
        chars.push('e');
    }
    chars.into_iter().collect()
}

/// Percent-encodes everything but unreserved characters (and `~`).
pub fn url_encode(s: &str) -> String {
    const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// A wrk script cycling through `paths`, with the same per-thread offsets
/// and the same `done` report as `bench/wrk_queries.lua`.
pub fn wrk_script(paths: &[String]) -> String {
    let mut s = String::from(
        "-- Generated by benchkit's `corpus`: the synthetic corpus's query mix.\n\
         -- Usage: wrk -t2 -c8 -d10s -s queries.lua http://127.0.0.1:PORT\nlocal paths = {\n",
    );
    for p in paths {
        let _ = writeln!(s, "  {p:?},");
    }
    s.push_str(wrk_tail());
    s
}

/// The part of `bench/wrk_queries.lua` after its `paths` table: one
/// script body for both query mixes.
fn wrk_tail() -> &'static str {
    const BOOKS: &str = include_str!("../../../bench/wrk_queries.lua");
    let at = BOOKS
        .find("\n}\n")
        .expect("bench/wrk_queries.lua closes its paths table with a `}` line");
    &BOOKS[at + 1..]
}

/// One query of the uncached stream: what a user would type, in a form
/// each engine reads the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamQuery {
    /// One title word.
    Word(String),
    /// Two words of one document's title, both required.
    And(String, String),
    /// An author's full name, both parts in the author field.
    Author { last: String, first: String },
}

impl StreamQuery {
    /// Picky's query language: words are ANDed, `author:` qualifies a word.
    pub fn searchd(&self) -> String {
        match self {
            StreamQuery::Word(w) => w.clone(),
            StreamQuery::And(a, b) => format!("{a} {b}"),
            StreamQuery::Author { last, first } => format!("author:{last} author:{first}"),
        }
    }

    /// tantivy's query parser: terms are ORed unless marked `+` (required);
    /// unqualified terms search the default fields (title and author).
    pub fn tantivy(&self) -> String {
        match self {
            StreamQuery::Word(w) => w.clone(),
            StreamQuery::And(a, b) => format!("+{a} +{b}"),
            StreamQuery::Author { last, first } => format!("+author:{last} +author:{first}"),
        }
    }

    fn kind(&self) -> usize {
        match self {
            StreamQuery::Word(_) => 0,
            StreamQuery::And(..) => 1,
            StreamQuery::Author { .. } => 2,
        }
    }
}

/// Shares of the stream, in fifths: single words, two-word ANDs, authors.
const STREAM_FIFTHS: [usize; 3] = [2, 2, 1];

impl Corpus {
    /// `n` distinct queries for the uncached throughput runs, drawn from the
    /// first `docs` documents (the ones the corpus holds, so every query has
    /// an answer): two fifths single title words, two fifths two words of
    /// one title, one fifth an author's full name. Words come from real
    /// titles, so frequent words are queried as often as they occur until
    /// each has been used once. Shuffled, so every slice of the stream has
    /// the same mix. Fewer than `n` when the documents run out of distinct
    /// queries (tiny corpora).
    pub fn query_stream(&self, docs: u64, n: usize) -> Vec<StreamQuery> {
        let mut rng = Rng::new(self.seed ^ 0x57EA_0000_0000_0003);
        let words_quota = n * STREAM_FIFTHS[0] / 5;
        let and_quota = n * STREAM_FIFTHS[1] / 5;
        let quota = [words_quota, and_quota, n - words_quota - and_quota];
        let mut got = [0usize; 3];
        let mut seen: HashSet<StreamQuery> = HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        for d in self.documents(docs) {
            if out.len() >= n {
                break;
            }
            let mut words: Vec<&str> = content_words(&d).collect();
            words.dedup();
            let left: Vec<u32> = (0..3).map(|k| (quota[k] - got[k]) as u32).collect();
            // Try the kind drawn by what is left to fill, then the others.
            let first = rng.weighted(&left);
            for kind in [first, (first + 1) % 3, (first + 2) % 3] {
                if left[kind] == 0 {
                    continue;
                }
                if let Some(q) = self.stream_candidate(&mut rng, kind, &d, &words, &seen) {
                    seen.insert(q.clone());
                    got[q.kind()] += 1;
                    out.push(q);
                    break;
                }
            }
        }
        // Fisher-Yates: the documents yield frequent words first.
        for i in (1..out.len()).rev() {
            let j = rng.below(i + 1);
            out.swap(i, j);
        }
        out
    }

    /// A query of `kind` from document `d` not in `seen`, if it has one.
    fn stream_candidate(
        &self,
        rng: &mut Rng,
        kind: usize,
        d: &Doc,
        words: &[&str],
        seen: &HashSet<StreamQuery>,
    ) -> Option<StreamQuery> {
        match kind {
            0 if !words.is_empty() => {
                let start = rng.below(words.len());
                (0..words.len())
                    .map(|i| StreamQuery::Word(words[(start + i) % words.len()].to_owned()))
                    .find(|q| !seen.contains(q))
            }
            1 if words.len() >= 2 => (0..4).find_map(|_| {
                let i = rng.below(words.len());
                let j = rng.below(words.len());
                let (i, j) = (i.min(j), i.max(j));
                let q = StreamQuery::And(words[i].to_owned(), words[j].to_owned());
                (words[i] != words[j] && !seen.contains(&q)).then_some(q)
            }),
            2 => {
                let q = StreamQuery::Author {
                    last: d.last.clone(),
                    first: d.first.clone(),
                };
                (!seen.contains(&q)).then_some(q)
            }
            _ => None,
        }
    }
}

/// The request path of a stream query for searchd (`index` is the URL
/// path of the corpus's index; Picky's default of 20 ids).
pub fn searchd_stream_path(index: &str, q: &StreamQuery) -> String {
    format!("/{index}?query={}", url_encode(&q.searchd()))
}

/// The request path of a stream query for `tantivy serve` (its only
/// route; 20 hits, like searchd's 20 ids).
pub fn tantivy_stream_path(q: &StreamQuery) -> String {
    format!("/api/?q={}&nhits=20", url_encode(&q.tantivy()))
}

/// Slices of a stream script: the most wrk threads the bench uses.
pub const STREAM_SLICES: usize = 2;

/// A wrk script walking the request paths in `paths_file` (one a line, read
/// by each thread at start: a table of 60,000 string constants is more than
/// LuaJIT takes in one chunk). Thread `k` starts at `k / STREAM_SLICES` of
/// the stream and walks forward, wrapping at its end, so no query repeats
/// within a run until a thread has sent `len / STREAM_SLICES` requests
/// (with one thread: `len`). The `done` report is `bench/wrk_queries.lua`'s.
pub fn stream_script(paths_file: &str, what: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "-- Generated by benchkit's `corpus`: {what}, a stream of distinct queries\n\
         -- (one request path a line in the file below; no query repeats within a run\n\
         -- while each thread sends fewer than 1/{STREAM_SLICES} of them).\n\
         -- Usage: wrk -t2 -c8 -d10s -s THIS http://127.0.0.1:PORT\n\
         local file = {paths_file:?}\n\
         local slices = {STREAM_SLICES}\n"
    );
    s.push_str(
        r#"local paths = {}
local counter = 0
local thread_id = 0
setup = function(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
init = function(args)
  for line in io.lines(file) do
    paths[#paths + 1] = line
  end
  if #paths == 0 then
    error("no request paths in " .. file)
  end
  counter = ((tid or 0) % slices) * math.floor(#paths / slices)
end
request = function()
  local p = paths[(counter % #paths) + 1]
  counter = counter + 1
  return wrk.format("GET", p)
end
"#,
    );
    let tail = wrk_tail();
    let at = tail
        .find("done = function")
        .expect("bench/wrk_queries.lua has a done function");
    s.push_str(&tail[at..]);
    s
}

/// tantivy's `meta.json` for an empty index of the corpus's documents,
/// what `tantivy new` would write for the answers: `id` and `year` u64
/// (indexed, stored), `title` and `author` text (the default tokenizer,
/// term frequencies and positions, field norms, stored). tantivy 0.24's
/// format (`IndexMeta`: settings, no segments, the schema, opstamp 0).
pub fn tantivy_meta() -> String {
    let num =
        serde_json::json!({"indexed": true, "fieldnorms": false, "fast": false, "stored": true});
    let text = serde_json::json!({
        "indexing": {"record": "position", "fieldnorms": true, "tokenizer": "default"},
        "stored": true,
        "fast": false
    });
    let meta = serde_json::json!({
        "index_settings": {"docstore_compression": "lz4", "docstore_blocksize": 16384},
        "segments": [],
        "schema": [
            {"name": "id", "type": "u64", "options": num},
            {"name": "title", "type": "text", "options": text},
            {"name": "author", "type": "text", "options": text},
            {"name": "year", "type": "u64", "options": num},
        ],
        "opstamp": 0
    });
    let mut s = serde_json::to_string_pretty(&meta).expect("a JSON value serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Corpus {
        Corpus::new(&Config {
            vocabulary: 2_000,
            surnames: 500,
            first_names: 100,
            ..Config::default()
        })
    }

    #[test]
    fn deterministic_from_the_seed() {
        let a: Vec<Doc> = small().documents(200).collect();
        let b: Vec<Doc> = small().documents(200).collect();
        assert_eq!(a, b);
        let other = Corpus::new(&Config {
            vocabulary: 2_000,
            surnames: 500,
            first_names: 100,
            seed: 2,
            ..Config::default()
        });
        let c: Vec<Doc> = other.documents(200).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn documents_have_the_promised_shape() {
        let c = small();
        let mut vocab_seen = HashSet::new();
        for d in c.documents(5_000) {
            let content = content_words(&d).count();
            assert!((2..=10).contains(&content), "{:?}", d.title);
            assert!(d.title.len() <= 10, "{:?}", d.title);
            assert!((1900..=2024).contains(&d.year));
            let author = d.author_text();
            assert!(author.contains(", "), "{author}");
            assert!(d.title_text().chars().next().unwrap().is_ascii_uppercase());
            for w in content_words(&d) {
                assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
                vocab_seen.insert(w.to_owned());
            }
        }
        // Zipf: many distinct words, the head far more frequent than the tail.
        assert!(vocab_seen.len() > 500, "{}", vocab_seen.len());
        assert!(c.words.iter().all(|w| !STOPWORDS.contains(&w.as_str())));
        let uniq: HashSet<&String> = c.words.iter().collect();
        assert_eq!(uniq.len(), c.words.len());
        // Frequent words are short.
        let head: usize = c.words[..100].iter().map(String::len).sum();
        let tail: usize = c.words[1_900..].iter().map(String::len).sum();
        assert!(head < tail, "{head} {tail}");
    }

    #[test]
    fn csv_and_jsonl_parse_back() {
        let c = small();
        let mut csv = Vec::new();
        let n = write_documents(&mut csv, Format::Csv, c.documents(50)).unwrap();
        assert_eq!(n as usize, csv.len());
        let text = String::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,title,author,year"));
        let first = lines.next().unwrap();
        assert!(first.starts_with("1,\""), "{first}");
        assert_eq!(text.lines().count(), 51);

        let mut jl = Vec::new();
        write_documents(&mut jl, Format::Jsonl, c.documents(50)).unwrap();
        let docs: Vec<Doc> = c.documents(50).collect();
        for (line, d) in String::from_utf8(jl).unwrap().lines().zip(&docs) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["id"], d.id);
            assert_eq!(v["title"], d.title_text());
            assert_eq!(v["author"], d.author_text());
            assert_eq!(v["year"], d.year);
        }
    }

    #[test]
    fn definition_is_valid_toml_with_the_books_categories() {
        let c = small();
        let sample: Vec<Doc> = c.documents(10).collect();
        let g = golden_queries(&sample);
        let def = index_definition("corpus", "corpus.csv", Format::Csv, &g);
        let v: toml::Table = def.parse().expect("valid TOML");
        assert_eq!(v["name"].as_str(), Some("corpus"));
        assert_eq!(v["source"]["path"].as_str(), Some("corpus.csv"));
        assert_eq!(v["source"]["header"].as_bool(), Some(true));
        let cats = v["category"].as_array().unwrap();
        assert_eq!(cats.len(), 3);
        assert_eq!(
            cats[0]["similarity"]["kind"].as_str(),
            Some("double_metaphone")
        );
        assert_eq!(v["golden"].as_array().unwrap().len(), g.len());
        let books = include_str!("../../../images/books/index.toml");
        let books: toml::Table = books.parse().unwrap();
        assert_eq!(v["indexing"], books["indexing"]);
        assert_eq!(v["searching"], books["searching"]);
        assert_eq!(v["category"], books["category"]);
        assert_eq!(v["boost"], books["boost"]);
    }

    #[test]
    fn query_mix_has_twenty_encoded_paths() {
        let c = small();
        let sample: Vec<Doc> = c.documents(100).collect();
        let paths = query_paths("corpus", &c, &sample);
        assert_eq!(paths.len(), 20);
        for p in &paths {
            assert!(p.starts_with("/corpus?query="), "{p}");
            assert!(!p.contains(' ') && !p.contains('"'), "{p}");
        }
        assert!(paths.iter().any(|p| p.contains("%3A")));
        assert!(paths.iter().any(|p| p.ends_with("&ids=0")));
        let lua = wrk_script(&paths);
        assert!(lua.contains("errors_status"));
        assert!(
            lua.ends_with("end\n") && lua.contains("\n}\nlocal counter = 0\n"),
            "{lua}"
        );
        assert_eq!(lua.matches("\"/corpus?query=").count(), 20);
        assert!(
            !lua.contains("/books?"),
            "the books paths leaked in:\n{lua}"
        );
    }

    #[test]
    fn misspell_changes_a_vowel() {
        assert_eq!(misspell("hemingway"), "hemingwai");
        assert_eq!(misspell("brst"), "brste");
        assert_ne!(misspell("tola"), "tola");
        assert_eq!(url_encode("a b:c,d~"), "a%20b%3Ac%2Cd~");
    }

    #[test]
    fn stream_is_distinct_mixed_and_deterministic() {
        let c = small();
        let a = c.query_stream(5_000, 3_000);
        assert_eq!(a, c.query_stream(5_000, 3_000));
        assert_eq!(a.len(), 3_000);
        let uniq: HashSet<&StreamQuery> = a.iter().collect();
        assert_eq!(uniq.len(), a.len());
        let mut kinds = [0usize; 3];
        for q in &a {
            kinds[q.kind()] += 1;
        }
        assert_eq!(kinds, [1_200, 1_200, 600]);
        // Shuffled: the first tenth already holds every kind.
        let head: HashSet<usize> = a[..300].iter().map(StreamQuery::kind).collect();
        assert_eq!(head.len(), 3);
        // Every query comes from a document: its words are in the corpus.
        let docs: Vec<Doc> = c.documents(5_000).collect();
        let titles: HashSet<&str> = docs.iter().flat_map(content_words).collect();
        let authors: HashSet<(&str, &str)> = docs
            .iter()
            .map(|d| (d.last.as_str(), d.first.as_str()))
            .collect();
        for q in &a {
            match q {
                StreamQuery::Word(w) => assert!(titles.contains(w.as_str()), "{w}"),
                StreamQuery::And(x, y) => {
                    assert_ne!(x, y);
                    assert!(titles.contains(x.as_str()) && titles.contains(y.as_str()));
                }
                StreamQuery::Author { last, first } => {
                    assert!(authors.contains(&(last.as_str(), first.as_str())))
                }
            }
        }
        // A tiny corpus runs out of distinct queries: fewer, still distinct.
        let few = c.query_stream(10, 3_000);
        assert!(!few.is_empty() && few.len() < 100, "{}", few.len());
    }

    #[test]
    fn stream_paths_for_both_engines() {
        let w = StreamQuery::Word("bratea".to_owned());
        let and = StreamQuery::And("bratea".to_owned(), "horkcang".to_owned());
        let au = StreamQuery::Author {
            last: "greapork".to_owned(),
            first: "cezerk".to_owned(),
        };
        assert_eq!(searchd_stream_path("corpus", &w), "/corpus?query=bratea");
        assert_eq!(
            searchd_stream_path("corpus", &and),
            "/corpus?query=bratea%20horkcang"
        );
        assert_eq!(
            searchd_stream_path("corpus", &au),
            "/corpus?query=author%3Agreapork%20author%3Acezerk"
        );
        assert_eq!(tantivy_stream_path(&w), "/api/?q=bratea&nhits=20");
        // `+` must be escaped: a literal one is a space in a query string.
        assert_eq!(
            tantivy_stream_path(&and),
            "/api/?q=%2Bbratea%20%2Bhorkcang&nhits=20"
        );
        assert_eq!(
            tantivy_stream_path(&au),
            "/api/?q=%2Bauthor%3Agreapork%20%2Bauthor%3Acezerk&nhits=20"
        );
        let lua = stream_script("/tmp/x/stream.txt", "searchd");
        assert!(
            lua.contains("local file = \"/tmp/x/stream.txt\"\n"),
            "{lua}"
        );
        assert!(lua.contains("local slices = 2\n"), "{lua}");
        assert!(
            lua.contains("errors_status") && lua.ends_with("end\n"),
            "{lua}"
        );
        assert_eq!(lua.matches("done = function").count(), 1, "{lua}");
    }

    #[test]
    fn tantivy_meta_has_the_schema() {
        let v: serde_json::Value = serde_json::from_str(&tantivy_meta()).unwrap();
        assert_eq!(v["segments"].as_array().unwrap().len(), 0);
        assert_eq!(v["opstamp"], 0);
        let fields = v["schema"].as_array().unwrap();
        let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["id", "title", "author", "year"]);
        for f in fields {
            assert_eq!(f["options"]["stored"], true, "{f}");
        }
        assert_eq!(fields[1]["options"]["indexing"]["record"], "position");
        assert_eq!(fields[2]["options"]["indexing"]["tokenizer"], "default");
        assert_eq!(fields[0]["type"], "u64");
        assert_eq!(fields[0]["options"]["indexed"], true);
    }
}
