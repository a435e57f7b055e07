//! `searchd index`: reads a definition's data source, builds the exact,
//! partial and similarity indexes of every category the way Picky does, and
//! writes one snapshot file.
//!
//! The output is deterministic: the same definition and data give the same
//! bytes (and so the same digest), which bake's content addressing relies on.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// The index build's maps: keyed by words, hashed with foldhash (a fixed
/// seed; iteration order never reaches the snapshot: every map is sorted
/// into a `BTreeMap` before it is written). SipHash's DoS resistance buys
/// nothing for a file the operator chose, and cost a third of the build.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::def::{
    Definition, GoldenQuery, IdKind, IndexDef, Partial, SearchDef, Similarity, SourceFormat,
};
use crate::index::{Engine, GoldenAnswer, Meta, MetaCategory, SourceInfo};
use crate::phonetic::levenshtein;
use crate::snapshot::{self, Kind, NO_CATEGORY, Snapshot, Verify, Writer};
use crate::{index, postings, ruby};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read data source {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data source {path}, record {record}: {message}")]
    Record {
        path: PathBuf,
        record: u64,
        message: String,
    },
    #[error("data source {path} has more than {max} documents", max = u32::MAX)]
    TooManyDocuments { path: PathBuf },
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "golden query {query:?} answered {total} results, fewer than its min_total {min_total}"
    )]
    GoldenTooFew {
        query: String,
        total: u64,
        min_total: u64,
    },
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("golden query {query:?} failed: {message}")]
    Golden { query: String, message: String },
    #[error(
        "data source {path}: ranged category {category:?}: {value:?} is not a number its grid can hold (infinite, or more than 2^53 cells from the anchor)"
    )]
    Ranged {
        path: PathBuf,
        category: String,
        value: String,
    },
}

/// What `searchd index` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub index: String,
    pub snapshot: PathBuf,
    pub digest: String,
    pub bytes: u64,
    pub documents: u64,
    pub source_sha256: String,
    pub golden: usize,
    /// The definition's warnings (also printed on stderr by [`build`]).
    pub warnings: Vec<String>,
}

/// One category's indexes while building. The partial index is not
/// collected per occurrence: a word's partials are a function of the word,
/// so [`partial_postings`] derives them from the exact index at the end
/// (each distinct word once, instead of every partial of every occurrence).
struct CategoryBuild {
    exact: HashMap<String, Vec<u32>>,
    partial: Partial,
    similar: Option<HashMap<String, Vec<String>>>,
    /// The exact words in the order first met (kept for facets only).
    order: Option<Vec<String>>,
    /// Set when a repeated id added words to a document after later ones:
    /// then lists are in Picky's order (each id where its word first met
    /// it), not ascending, and the partial index is built per occurrence
    /// (in that order) instead of derived from the exact one.
    ordered: Option<HashMap<String, Vec<u32>>>,
}

/// Adds `ord` to `key`'s list unless it is there; true if `key` is new.
/// Only a merged document (`anywhere`) can be in the list before its end.
fn push_unique(map: &mut HashMap<String, Vec<u32>>, key: &str, ord: u32, anywhere: bool) -> bool {
    match map.get_mut(key) {
        Some(list) => {
            let there = if anywhere {
                list.contains(&ord)
            } else {
                list.last() == Some(&ord)
            };
            if !there {
                list.push(ord);
            }
            false
        }
        None => {
            map.insert(key.to_owned(), vec![ord]);
            true
        }
    }
}

/// Character offsets of a token's partials: prefixes or infixes as
/// `(start, len)` in chars, in Picky's order.
pub fn partials(partial: Partial, nchars: usize, mut f: impl FnMut(usize, usize)) {
    let size = nchars as i64;
    // Ruby's `str[0..to]` length.
    let range_len = |to: i64| {
        if to < 0 {
            (size + to + 1).max(0)
        } else {
            (to + 1).min(size)
        }
    };
    let prefixes = |sub: i64, from: i64, f: &mut dyn FnMut(usize, usize)| {
        let mut from_len = if from < 0 { sub + from + 1 } else { from };
        if sub < from_len {
            from_len = sub;
        }
        from_len = from_len.max(1);
        if sub > 0 {
            f(0, sub as usize);
        }
        let mut l = sub - 1;
        while l >= from_len {
            f(0, l as usize);
            l -= 1;
        }
    };
    match partial {
        Partial::None => {}
        Partial::Substring { from, to } => {
            let (from, to) = (i64::from(from), i64::from(to));
            if from < 0 && to < 0 {
                prefixes(range_len(to), from - to - 1, &mut f);
            } else {
                prefixes(range_len(to), from, &mut f);
            }
        }
        // Picky's Postfix is a Substring whose `to` is the whole word.
        Partial::Postfix { from } => prefixes(size, i64::from(from), &mut f),
        Partial::Infix { min, max } => {
            let (mut min, mut max) = (i64::from(min), i64::from(max));
            if max < 0 {
                max = size + max + 1;
            }
            max = max.min(size).max(1);
            if min < 0 {
                min = size + min + 1;
            }
            min = min.max(1);
            let mut len = max;
            while len >= min && len > 0 {
                for start in 0..=(size - len) {
                    f(start as usize, len as usize);
                }
                len -= 1;
            }
        }
    }
}

fn char_slice(s: &str, start: usize, len: usize) -> &str {
    let mut it = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    let a = it.nth(start).unwrap_or(s.len());
    let b = if len == 0 {
        a
    } else {
        it.nth(len - 1).unwrap_or(s.len())
    };
    &s[a..b]
}

impl CategoryBuild {
    /// Adds an occurrence of `token` in document `ord`; `merged`: a
    /// repeated id's words, added after later documents'.
    fn add(&mut self, def: &crate::def::CategoryDef, token: &str, ord: u32, merged: bool) {
        if push_unique(&mut self.exact, token, ord, merged)
            && let Some(order) = &mut self.order
        {
            order.push(token.to_owned());
        }
        if let Some(partial) = &mut self.ordered {
            partials(self.partial, token.chars().count(), |start, len| {
                push_unique(partial, char_slice(token, start, len), ord, merged);
            });
        }
        if let Some(similar) = &mut self.similar {
            let Some(code) = index::encode(def.similarity, token) else {
                return;
            };
            let amount = match def.similarity {
                Similarity::DoubleMetaphone { amount }
                | Similarity::Metaphone { amount }
                | Similarity::Soundex { amount } => amount as usize,
                Similarity::None => return,
            };
            let list = similar.entry(code).or_default();
            // Picky: remove the token, append it, stable-sort by distance to
            // it, keep the first `amount`. The word added last always comes
            // first (distance 0; the others are other words), and the rest
            // are already in that word's order: adding it again changes
            // nothing.
            if list.first().is_some_and(|w| w == token) {
                return;
            }
            list.retain(|w| w != token);
            list.push(token.to_owned());
            let mut keyed: Vec<(usize, String)> = list
                .drain(..)
                .map(|w| (levenshtein(&w, token), w))
                .collect();
            keyed.sort_by_key(|(d, _)| *d);
            list.extend(keyed.into_iter().take(amount).map(|(_, w)| w));
        }
    }
}

/// Builds the snapshot for `def` and writes it to `out`. The definition's
/// warnings go to stderr first (`searchd: warning: ...`), so every caller
/// (`searchd index`, bake) shows them, and into the report.
pub fn build(def: &IndexDef, out: &Path) -> Result<BuildReport, BuildError> {
    for w in &def.warnings {
        eprintln!("searchd: warning: {w}");
    }
    let (bytes, report) = snapshot_bytes(def, out)?;
    write(out, &bytes)?;
    Ok(report)
}

/// [`build`] for either kind of definition.
pub fn build_definition(def: &Definition, out: &Path) -> Result<BuildReport, BuildError> {
    match def {
        Definition::Index(d) => build(d, out),
        Definition::Search(d) => build_search(d, out),
    }
}

/// Builds the snapshot of a search over several indexes: each index's own
/// snapshot (the bytes [`build`] would write for it) nested in one
/// [`Kind::Index`] section, in the search's order, beside the search's
/// metadata (its tokenizer, boosts, options and golden answers) and an
/// empty document table. Deterministic like an index's.
pub fn build_search(def: &SearchDef, out: &Path) -> Result<BuildReport, BuildError> {
    for w in &def.warnings {
        eprintln!("searchd: warning: {w}");
    }
    let mut w = Writer::default();
    let mut documents = 0u64;
    let mut sources = Sha256::new();
    let mut files = Vec::with_capacity(def.indexes.len());
    for (i, index) in def.indexes.iter().enumerate() {
        let (bytes, report) = snapshot_bytes(index, out)?;
        documents += report.documents;
        sources.update(report.digest.as_bytes());
        files.push(report.index.clone());
        w.add(Kind::Index, i as u32, bytes);
    }
    w.add(Kind::DocOffsets, NO_CATEGORY, snapshot::u64s_to_bytes(&[0]));
    w.add(Kind::DocBytes, NO_CATEGORY, Vec::new());
    let mut meta = Meta {
        name: def.name.clone(),
        result_identifier: None,
        id_kind: IdKind::Integer,
        documents,
        searching: def.searching.clone(),
        categories: Vec::new(),
        boosts: def.boosts.clone(),
        search: def.search.clone(),
        golden: Vec::new(),
        source: SourceInfo {
            // The indexes, in order, and the sha256 of their snapshots'
            // digests.
            file: files.join(", "),
            sha256: snapshot::hex(&sources.finalize()),
        },
        indexes: def.indexes.iter().map(|d| d.name.clone()).collect(),
        searchd_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    meta.golden = golden_answers(&def.golden, out, &mut w, &meta)?;
    let golden = meta.golden.len();
    w.add(Kind::Meta, NO_CATEGORY, meta_bytes(&meta));
    let (bytes, digest) = w.finish();
    write(out, &bytes)?;
    Ok(BuildReport {
        index: def.name.clone(),
        snapshot: out.to_owned(),
        digest: snapshot::hex(&digest),
        bytes: bytes.len() as u64,
        documents,
        source_sha256: meta.source.sha256,
        golden,
        warnings: def.warnings.clone(),
    })
}

fn write(out: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    snapshot::write_atomically(out, bytes).map_err(|source| BuildError::Write {
        path: out.to_owned(),
        source,
    })
}

/// The bytes of `def`'s snapshot (`out` names it in messages) and the
/// report of building it.
fn snapshot_bytes(def: &IndexDef, out: &Path) -> Result<(Vec<u8>, BuildReport), BuildError> {
    let path = &def.source_path;
    let data = std::fs::read(path).map_err(|source| BuildError::Read {
        path: path.clone(),
        source,
    })?;
    let source_sha256 = snapshot::hex(&Sha256::digest(&data));
    let compile = |spec: &crate::tokenizer::TokenizerSpec| {
        spec.compile().map_err(|m| BuildError::Record {
            path: path.clone(),
            record: 0,
            message: m,
        })
    };
    let indexing = compile(&def.indexing)?;
    // A category with its own indexing options uses them instead of the
    // index's (Picky's per-category `indexing:`, not merged); a ranged
    // one, Picky's default tokenizer (`Category::Location#tokenizer`).
    let tokenizers = def
        .categories
        .iter()
        .map(|c| match (&c.indexing, c.ranged) {
            (Some(own), _) => compile(own),
            (None, Some(_)) => compile(&crate::tokenizer::TokenizerSpec::default()),
            (None, None) => Ok(indexing.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (cols, doc_json) = collect(def, &data)?;
    drop(data);
    let documents = doc_json.len() as u64;
    let mut w = Writer::default();
    write_documents(&mut w, doc_json);
    // Categories are independent: each is tokenized, indexed and encoded on
    // its own thread, and its sections added in category order (the same
    // bytes as one thread would write).
    let sections = std::thread::scope(|scope| {
        let jobs: Vec<_> = cols
            .into_iter()
            .zip(&def.categories)
            .zip(tokenizers)
            .map(|((col, cdef), indexing)| {
                scope.spawn(move || {
                    let c = index_column(cdef, &indexing, &col).map_err(|value| {
                        BuildError::Ranged {
                            path: path.clone(),
                            category: cdef.name.clone(),
                            value,
                        }
                    })?;
                    drop(col);
                    category_sections(out, c, documents as usize)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut ordered = Vec::with_capacity(sections.len());
    for (i, category) in sections.into_iter().enumerate() {
        ordered.push(category.iter().any(|(kind, _)| *kind == Kind::Orders));
        for (kind, bytes) in category {
            w.add(kind, i as u32, bytes);
        }
    }
    let mut meta = Meta {
        name: def.name.clone(),
        result_identifier: def.result_identifier.clone(),
        id_kind: def.id_kind,
        documents,
        searching: def.searching.clone(),
        categories: def
            .categories
            .iter()
            .zip(&ordered)
            .map(|(c, &ordered)| MetaCategory {
                ordered,
                name: c.name.clone(),
                qualifiers: c.qualifiers.clone(),
                partial: c.partial != Partial::None,
                similarity: c.similarity,
                weight: c.weight,
                facets: c.facets,
                ranged: c.ranged,
            })
            .collect(),
        boosts: def.boosts.clone(),
        search: def.search.clone(),
        golden: Vec::new(),
        source: SourceInfo {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: source_sha256.clone(),
        },
        indexes: Vec::new(),
        searchd_version: env!("CARGO_PKG_VERSION").to_owned(),
    };

    // First pass without answers: open it in memory and let the engine answer
    // the golden queries, so the stored answers are exactly what serve says.
    meta.golden = golden_answers(&def.golden, out, &mut w, &meta)?;
    let golden_count = meta.golden.len();
    w.add(Kind::Meta, NO_CATEGORY, meta_bytes(&meta));
    let (bytes, digest) = w.finish();
    let report = BuildReport {
        index: def.name.clone(),
        snapshot: out.to_owned(),
        digest: snapshot::hex(&digest),
        bytes: bytes.len() as u64,
        documents,
        source_sha256,
        golden: golden_count,
        warnings: def.warnings.clone(),
    };
    Ok((bytes, report))
}

/// One category's field of every record that has it, back to back: record
/// `ord`'s text ends at `end` (and starts where the one before ended).
#[derive(Default)]
struct Column {
    text: String,
    spans: Vec<(u32, usize)>,
}

impl Column {
    fn texts(&self) -> impl Iterator<Item = (u32, &str)> {
        let mut start = 0;
        self.spans.iter().map(move |&(ord, end)| {
            let text = &self.text[start..end];
            start = end;
            (ord, text)
        })
    }
}

/// Reads every record of the source: each category's field texts with
/// their documents, and each document's id as JSON (in record order).
fn collect(def: &IndexDef, data: &[u8]) -> Result<(Vec<Column>, Vec<Vec<u8>>), BuildError> {
    let path = &def.source_path;
    let mut cols: Vec<Column> = def.categories.iter().map(|_| Column::default()).collect();
    let mut ids: HashMap<Vec<u8>, (u32, u64)> = HashMap::default();
    let mut doc_json: Vec<Vec<u8>> = Vec::new();

    let mut add_record = |record: u64, id: &str, fields: &[Field<'_>]| {
        let mut json = Vec::with_capacity(8);
        match def.id_kind {
            IdKind::Integer => json.extend_from_slice(ruby::to_i(id).to_string().as_bytes()),
            IdKind::Float => ruby::write_float(ruby::to_f(id), &mut json),
            IdKind::String => ruby::write_json_str(id, &mut json),
        }
        // A repeated id is the same document: its words are merged into
        // it, as Picky merges them (each id once per word).
        let ord = match ids.get(&json) {
            Some(&(ord, _)) => ord,
            None => {
                let ord = u32::try_from(doc_json.len())
                    .map_err(|_| BuildError::TooManyDocuments { path: path.clone() })?;
                ids.insert(json.clone(), (ord, record));
                doc_json.push(json);
                ord
            }
        };
        for (col, field) in cols.iter_mut().zip(fields) {
            let mut push = |text: &str| {
                col.text.push_str(text);
                col.spans.push((ord, col.text.len()));
            };
            match field {
                Field::Text(Some(text)) => push(text),
                Field::Text(None) => {}
                Field::Tokens(tokens) => tokens.iter().for_each(|t| push(t)),
            }
        }
        Ok::<(), BuildError>(())
    };

    match def.source_format {
        SourceFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(def.csv_header)
                .flexible(true)
                .from_reader(data);
            let columns: Vec<String> = if def.csv_header {
                reader
                    .headers()
                    .map_err(|e| BuildError::Record {
                        path: path.clone(),
                        record: 0,
                        message: e.to_string(),
                    })?
                    .iter()
                    .map(str::to_owned)
                    .collect()
            } else {
                def.csv_columns.clone()
            };
            let col = |name: &str| columns.iter().position(|c| c == name);
            let Some(id_col) = col(&def.id_field) else {
                return Err(BuildError::Record {
                    path: path.clone(),
                    record: 0,
                    message: format!("no column named {:?} (the id field)", def.id_field),
                });
            };
            let mut fields_at: Vec<usize> = Vec::new();
            for c in &def.categories {
                let Some(i) = col(&c.field) else {
                    return Err(BuildError::Record {
                        path: path.clone(),
                        record: 0,
                        message: format!("no column named {:?} (category {})", c.field, c.name),
                    });
                };
                fields_at.push(i);
            }
            let mut rec = csv::StringRecord::new();
            let mut n = 0u64;
            loop {
                match reader.read_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => {
                        return Err(BuildError::Record {
                            path: path.clone(),
                            record: n + 1,
                            message: e.to_string(),
                        });
                    }
                }
                n += 1;
                let Some(id) = rec.get(id_col) else {
                    return Err(BuildError::Record {
                        path: path.clone(),
                        record: n,
                        message: format!("has no {:?} column (the id field)", def.id_field),
                    });
                };
                let fields: Vec<Field<'_>> =
                    fields_at.iter().map(|i| Field::Text(rec.get(*i))).collect();
                add_record(n, id, &fields)?;
            }
        }
        SourceFormat::Jsonl => {
            let text = std::str::from_utf8(data).map_err(|e| BuildError::Record {
                path: path.clone(),
                record: 0,
                message: format!("not UTF-8: {e}"),
            })?;
            let mut n = 0u64;
            for line in text.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                n += 1;
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                    .map_err(|e| BuildError::Record {
                        path: path.clone(),
                        record: n,
                        message: format!("invalid JSON: {e}"),
                    })?;
                let Some(id) = obj.get(&def.id_field).and_then(json_text) else {
                    return Err(BuildError::Record {
                        path: path.clone(),
                        record: n,
                        message: format!("has no {:?} field (the id)", def.id_field),
                    });
                };
                let texts: Vec<Option<Cow<'_, str>>> = def
                    .categories
                    .iter()
                    .map(|c| obj.get(&c.field).and_then(json_text))
                    .collect();
                let mut fields = Vec::with_capacity(texts.len());
                for (c, text) in def.categories.iter().zip(&texts) {
                    fields.push(if c.tokenize {
                        Field::Text(text.as_deref())
                    } else {
                        Field::Tokens(json_tokens(obj.get(&c.field)).map_err(|message| {
                            BuildError::Record {
                                path: path.clone(),
                                record: n,
                                message: format!("category {}: {message}", c.name),
                            }
                        })?)
                    });
                }
                add_record(n, &id, &fields)?;
            }
        }
    }

    Ok((cols, doc_json))
}

/// One category's value of a record: text to tokenize, or (with
/// `tokenize = false`) ready-made tokens.
enum Field<'a> {
    Text(Option<&'a str>),
    Tokens(Vec<Cow<'a, str>>),
}

/// A `tokenize = false` field's tokens, as Picky takes them: an array
/// whose strings are tokens as they are (not split, not lowercased),
/// numbers and booleans as Ruby's `to_s`, nulls skipped.
fn json_tokens(v: Option<&serde_json::Value>) -> Result<Vec<Cow<'_, str>>, String> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| match i {
                Value::Array(_) | Value::Object(_) => {
                    Err("a token is an array or an object, not a string or a number".to_owned())
                }
                i => Ok(json_text(i).unwrap_or_default()),
            })
            .collect(),
        Some(_) => Err(
            "has tokenize = false, so its field must be an array of tokens (Picky indexes each as given)"
                .into(),
        ),
    }
}

/// Tokenizes a category's column into its indexes; a value a ranged
/// category cannot place on its grid is the error.
fn index_column(
    def: &crate::def::CategoryDef,
    indexing: &crate::tokenizer::Tokenizer,
    col: &Column,
) -> Result<CategoryBuild, String> {
    let mut c = CategoryBuild {
        exact: HashMap::default(),
        partial: def.partial,
        similar: (def.similarity != Similarity::None).then(HashMap::default),
        order: def.facets.then(Vec::new),
        ordered: None,
    };
    // A repeated id's record comes after documents with higher numbers:
    // lists follow Picky's order then (see `CategoryBuild::ordered`).
    let mut highest = None;
    let merges = col.spans.iter().any(|&(ord, _)| {
        let merged = highest.is_some_and(|h| ord < h);
        highest = highest.max(Some(ord));
        merged
    });
    if merges && def.partial != Partial::None {
        c.ordered = Some(HashMap::default());
    }
    let mut highest = None;
    let mut unplaced = None;
    for (ord, text) in col.texts() {
        let merged = highest.is_some_and(|h| ord < h);
        highest = highest.max(Some(ord));
        let mut add = |word: &str| match def.ranged {
            // Picky's `Location#add`: the word's `to_f` under each of its
            // grid keys, in ascending order.
            Some(r) => match r.keys(ruby::to_f(word)) {
                Some(keys) => keys.for_each(|k| c.add(def, &k.to_string(), ord, merged)),
                None => {
                    unplaced.get_or_insert_with(|| word.to_owned());
                }
            },
            None => c.add(def, word, ord, merged),
        };
        if !def.tokenize {
            // Ready-made tokens: indexed as given (partials still made).
            add(text);
            continue;
        }
        let pre = indexing.preprocess(text);
        indexing.each_word(&pre, |w| add(&w));
    }
    match unplaced {
        Some(value) => Err(value),
        None => Ok(c),
    }
}

/// The documents' ids as JSON, and where each one starts.
fn write_documents(w: &mut Writer, doc_json: Vec<Vec<u8>>) {
    let mut offsets = Vec::with_capacity(doc_json.len() + 1);
    let mut doc_bytes = Vec::new();
    for j in &doc_json {
        offsets.push(doc_bytes.len() as u64);
        doc_bytes.extend_from_slice(j);
    }
    offsets.push(doc_bytes.len() as u64);
    w.add(
        Kind::DocOffsets,
        NO_CATEGORY,
        snapshot::u64s_to_bytes(&offsets),
    );
    w.add(Kind::DocBytes, NO_CATEGORY, doc_bytes);
}

/// A category's sections: the similarity codes' words, the exact words'
/// fst, the partial ones' when it has partial search, and the posting
/// lists both point into.
fn category_sections(
    out: &Path,
    c: CategoryBuild,
    documents: usize,
) -> Result<Vec<(Kind, Vec<u8>)>, BuildError> {
    let mut sections = Vec::new();
    if let Some(order) = &c.order {
        let mut bytes = Vec::new();
        for word in order {
            bytes.extend_from_slice(&(word.len() as u32).to_le_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        sections.push((Kind::FacetWords, bytes));
    }
    let mut exact: BTreeMap<String, Vec<u32>> = c.exact.into_iter().collect();
    let mut partial = match c.ordered {
        Some(per_occurrence) => Some(per_occurrence.into_iter().collect()),
        None => (c.partial != Partial::None).then(|| partial_postings(c.partial, &exact)),
    };
    // Lists out of ascending order (merged ids) are stored sorted, their
    // Picky order beside them.
    let exact_order = picky_orders(&mut exact);
    let partial_order = partial.as_mut().map(picky_orders).unwrap_or_default();
    if let Some(similar) = c.similar {
        let similar: BTreeMap<String, Vec<String>> = similar.into_iter().collect();
        let mut fst = fst::MapBuilder::memory();
        let mut offs = vec![0u64];
        let mut bytes = Vec::new();
        for (n, (code, words)) in similar.iter().enumerate() {
            fst.insert(code, n as u64).map_err(|e| fst_error(out, e))?;
            for word in words {
                bytes.extend_from_slice(&(word.len() as u32).to_le_bytes());
                bytes.extend_from_slice(word.as_bytes());
            }
            offs.push(bytes.len() as u64);
        }
        let fst = fst.into_inner().map_err(|e| fst_error(out, e))?;
        sections.push((Kind::SimilarFst, fst));
        sections.push((Kind::SimilarOffsets, snapshot::u64s_to_bytes(&offs)));
        sections.push((Kind::SimilarWords, bytes));
    }
    let mut lists = Lists {
        documents,
        ..Lists::default()
    };
    sections.push((Kind::ExactFst, lists.table(out, &exact)?));
    if let Some(partial) = partial {
        sections.push((Kind::PartialFst, lists.table(out, &partial)?));
    }
    sections.push((Kind::Lists, lists.bytes));
    if !exact_order.is_empty() || !partial_order.is_empty() {
        let mut orders = Vec::new();
        for (kind, table) in [
            (Kind::ExactOrder, exact_order),
            (Kind::PartialOrder, partial_order),
        ] {
            let mut fst = fst::MapBuilder::memory();
            for (term, ords) in &table {
                fst.insert(term, orders.len() as u64)
                    .map_err(|e| fst_error(out, e))?;
                postings::encode_order(ords, &mut orders);
            }
            sections.push((kind, fst.into_inner().map_err(|e| fst_error(out, e))?));
        }
        sections.push((Kind::Orders, orders));
    }
    Ok(sections)
}

/// Sorts every list of `table` that is not ascending and returns those
/// lists' original (Picky's) order, by term.
fn picky_orders(table: &mut BTreeMap<String, Vec<u32>>) -> BTreeMap<String, Vec<u32>> {
    let mut orders = BTreeMap::new();
    for (term, list) in table.iter_mut() {
        if !list.is_sorted() {
            orders.insert(term.clone(), list.clone());
            list.sort_unstable();
        }
    }
    orders
}

/// The partial index from the exact one: each word's partials (prefixes or
/// infixes, as [`partials`] says) get the word's documents; a partial
/// shared by several words gets the union, ascending and unique — what
/// adding every partial of every occurrence in document order gave.
fn partial_postings(
    kind: Partial,
    exact: &BTreeMap<String, Vec<u32>>,
) -> BTreeMap<String, Vec<u32>> {
    let mut partial: HashMap<&str, Vec<u32>> = HashMap::default();
    for (word, ords) in exact {
        partials(kind, word.chars().count(), |start, len| {
            partial
                .entry(char_slice(word, start, len))
                .or_default()
                .extend_from_slice(ords);
        });
    }
    partial
        .into_iter()
        .map(|(p, mut ords)| {
            ords.sort_unstable();
            ords.dedup();
            (p.to_owned(), ords)
        })
        .collect()
}

/// The golden queries answered by the engine itself over the snapshot
/// built so far (in memory, with `meta` as it will be, minus the answers).
fn golden_answers(
    golden: &[GoldenQuery],
    out: &Path,
    w: &mut Writer,
    meta: &Meta,
) -> Result<Vec<GoldenAnswer>, BuildError> {
    if golden.is_empty() {
        return Ok(Vec::new());
    }
    w.add(Kind::Meta, NO_CATEGORY, meta_bytes(meta));
    let (bytes, _) = w.finish();
    w.pop();
    let snap = Snapshot::from_bytes(out, bytes, Verify::Structure)?;
    let engine = Engine::from_snapshot(snap)?;
    let mut answers = Vec::with_capacity(golden.len());
    for g in golden {
        let result = engine
            .search(&g.query, g.ids, g.offset)
            .map_err(|e| BuildError::Golden {
                query: g.query.clone(),
                message: e.to_string(),
            })?;
        if result.total < g.min_total {
            return Err(BuildError::GoldenTooFew {
                query: g.query.clone(),
                total: result.total,
                min_total: g.min_total,
            });
        }
        answers.push(GoldenAnswer {
            query: g.clone(),
            total: result.total,
            answer: result.to_json_string(0.0),
        });
    }
    Ok(answers)
}

fn meta_bytes(meta: &Meta) -> Vec<u8> {
    serde_json::to_vec(meta).expect("metadata serialises")
}

fn fst_error(out: &Path, e: fst::Error) -> BuildError {
    BuildError::Write {
        path: out.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A category's lists section being written: each distinct list once
/// (a prefix only one word has shares that word's list, and many partials
/// share one), found again by a hash of its encoding.
#[derive(Default)]
struct Lists {
    /// The index's document count (dense lists are bitmaps).
    documents: usize,
    bytes: Vec<u8>,
    /// Hash of an encoded list -> where lists with that hash start and end.
    written: HashMap<u64, Vec<(usize, usize)>>,
    scratch: Vec<u8>,
}

impl Lists {
    /// Writes `map`'s lists (those not written yet) and returns the fst
    /// from each term to its list's offset.
    fn table(
        &mut self,
        out: &Path,
        map: &BTreeMap<String, Vec<u32>>,
    ) -> Result<Vec<u8>, BuildError> {
        let mut fst = fst::MapBuilder::memory();
        for (key, list) in map {
            let at = self.add(list);
            fst.insert(key, at as u64).map_err(|e| fst_error(out, e))?;
        }
        fst.into_inner().map_err(|e| fst_error(out, e))
    }

    /// The offset of `list`, written now unless an identical one was.
    fn add(&mut self, list: &[u32]) -> usize {
        use std::hash::BuildHasher;
        self.scratch.clear();
        postings::encode(list, self.documents, &mut self.scratch);
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(&self.scratch);
        let same = self.written.entry(hash).or_default();
        if let Some(&(start, _)) = same
            .iter()
            .find(|&&(start, end)| self.bytes[start..end] == self.scratch[..])
        {
            return start;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&self.scratch);
        same.push((start, self.bytes.len()));
        start
    }
}

/// A JSON value as field text: strings as they are, numbers and booleans as
/// written, arrays joined by spaces, null and objects as absent.
fn json_text(v: &serde_json::Value) -> Option<Cow<'_, str>> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Array(items) => {
            let parts: Vec<Cow<'_, str>> = items.iter().filter_map(json_text).collect();
            Some(Cow::Owned(parts.join(" ")))
        }
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(partial: Partial, word: &str) -> Vec<String> {
        let mut v = Vec::new();
        partials(partial, word.chars().count(), |s, l| {
            v.push(char_slice(word, s, l).to_owned())
        });
        v
    }

    proptest::proptest! {
        /// The partial index derived from the exact one at the end equals
        /// adding every partial of every occurrence in document order (how
        /// it was built before, and how Picky builds it), for every kind.
        #[test]
        fn partial_postings_equal_adding_every_occurrence(
            docs in proptest::collection::vec(
                proptest::collection::vec("[a-cé]{1,6}", 0..5), 0..30),
            from in -4i32..5,
            to in -3i32..0,
            min in 1u32..4,
            span in 0u32..4,
        ) {
            let kinds = [
                Partial::Substring { from, to },
                Partial::Postfix { from: from.min(-1) },
                Partial::Infix { min: min as i32, max: (min + span) as i32 },
            ];
            for kind in kinds {
                let mut exact: HashMap<String, Vec<u32>> = HashMap::default();
                let mut each: HashMap<String, Vec<u32>> = HashMap::default();
                for (ord, words) in docs.iter().enumerate() {
                    for w in words {
                        push_unique(&mut exact, w, ord as u32, false);
                        partials(kind, w.chars().count(), |start, len| {
                            push_unique(&mut each, char_slice(w, start, len), ord as u32, false);
                        });
                    }
                }
                let exact: BTreeMap<String, Vec<u32>> = exact.into_iter().collect();
                let each: BTreeMap<String, Vec<u32>> = each.into_iter().collect();
                proptest::prop_assert_eq!(partial_postings(kind, &exact), each, "{:?}", kind);
            }
        }
    }

    #[test]
    fn partials_like_picky() {
        assert_eq!(
            collect(Partial::Substring { from: 1, to: -1 }, "hello"),
            ["hello", "hell", "hel", "he", "h"]
        );
        assert_eq!(
            collect(Partial::Substring { from: 4, to: -1 }, "hello"),
            ["hello", "hell"]
        );
        assert_eq!(
            collect(Partial::Substring { from: 1, to: -2 }, "hello"),
            ["hell", "hel", "he", "h"]
        );
        assert_eq!(
            collect(Partial::Substring { from: 4, to: -2 }, "hello"),
            ["hell"]
        );
        assert_eq!(
            collect(Partial::Postfix { from: -3 }, "florian"),
            ["florian", "floria", "flori"]
        );
        assert_eq!(collect(Partial::Postfix { from: -3 }, "ab"), ["ab", "a"]);
        assert_eq!(
            collect(Partial::Substring { from: 1, to: -1 }, "né"),
            ["né", "n"]
        );
        assert_eq!(
            collect(Partial::Infix { min: 4, max: -1 }, "hello"),
            ["hello", "hell", "ello"]
        );
        assert_eq!(
            collect(Partial::Infix { min: 1, max: -1 }, "ab"),
            ["ab", "a", "b"]
        );
    }

    /// `tokenize = false` takes an array of tokens; anything else in that
    /// field is refused naming the record and the category.
    #[test]
    fn ready_made_tokens_must_be_arrays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("d.jsonl"),
            "{\"id\": 1, \"tags\": [\"A b\", 2, null]}\n{\"id\": 2, \"tags\": \"a b\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("index.toml"),
            "name = \"d\"\n[source]\npath = \"d.jsonl\"\nformat = \"jsonl\"\n\
             [[category]]\nname = \"tags\"\ntokenize = false\n",
        )
        .unwrap();
        let def = IndexDef::load(&dir.path().join("index.toml")).unwrap();
        let err = build(&def, &dir.path().join("d.idx"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record 2") && err.contains("tags") && err.contains("array"),
            "{err}"
        );
        assert_eq!(
            json_tokens(Some(&serde_json::json!(["A b", 2, null, true]))).unwrap(),
            ["A b", "2", "true"]
        );
    }
}
