//! Index definitions: the TOML file that names an index, its data source, its
//! categories and tokenizers, its boosts and its golden queries.
//!
//! Parsing is two-stage: serde reads the raw TOML ([`RawDef`]), then
//! [`IndexDef::load`] validates it into an [`IndexDef`] that nothing later
//! re-checks. Every error names the file and the offending field.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tokenizer::TokenizerSpec;

/// Errors from reading or validating an index definition.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    #[error("cannot read index definition {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index definition {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("index definition {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    name: String,
    /// Picky's `result_identifier`: what answers name the index.
    result_identifier: Option<String>,
    #[serde(default)]
    id: RawId,
    source: RawSource,
    #[serde(default)]
    indexing: TokenizerSpec,
    #[serde(default)]
    searching: TokenizerSpec,
    #[serde(default, rename = "category")]
    categories: Vec<RawCategory>,
    #[serde(default, rename = "boost")]
    boosts: Vec<RawBoost>,
    #[serde(default, rename = "golden")]
    golden: Vec<RawGolden>,
    #[serde(default)]
    search: RawSearch,
}

/// `[search]`: Picky's Search options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    max_allocations: Option<i64>,
    terminate_early: Option<i64>,
    /// Category names (strings) and combinations (arrays of names), as
    /// Picky's `ignore :text, [:author, :title]`.
    #[serde(default)]
    ignore: Vec<toml::Value>,
    #[serde(default)]
    only: Vec<toml::Value>,
    #[serde(default)]
    ignore_unassigned_tokens: bool,
    #[serde(default)]
    unique: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawId {
    #[serde(default = "default_id_field")]
    field: String,
    #[serde(default)]
    kind: IdKind,
}

impl Default for RawId {
    fn default() -> Self {
        RawId {
            field: default_id_field(),
            kind: IdKind::Integer,
        }
    }
}

fn default_id_field() -> String {
    "id".to_owned()
}

/// How document ids are typed in answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// JSON integers, parsed like Ruby's `String#to_i` (Picky's `key_format :to_i`).
    #[default]
    Integer,
    /// JSON strings, as given in the data (Picky's `key_format :to_s`,
    /// `:to_sym`, or none).
    String,
    /// JSON floats, parsed like Ruby's `String#to_f` and printed like
    /// Ruby's `Float#to_s` (Picky's `key_format :to_f`: `12.0`, `1.0e+16`).
    Float,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: PathBuf,
    format: SourceFormat,
    #[serde(default = "yes")]
    header: bool,
    #[serde(default)]
    columns: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The format of an index's data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: String,
    field: Option<String>,
    qualifiers: Option<Vec<String>>,
    /// Default: postfix, or none for a ranged category (as in Picky).
    partial: Option<Partial>,
    #[serde(default)]
    similarity: Similarity,
    /// Picky's `ranged_category` (and each half of `geo_categories`).
    ranged: Option<RawRanged>,
    /// A table (see [`Weight`]) or a bare number: Picky's `weight: 2`
    /// shortcut, a logarithmic weight with that offset.
    weight: Option<toml::Value>,
    /// Picky's per-category `indexing: { … }`: replaces the index's
    /// indexing tokenizer for this category (not merged with it).
    indexing: Option<TokenizerSpec>,
    /// Picky's `tokenize: false`: the field is an array of tokens.
    #[serde(default = "yes")]
    tokenize: bool,
    /// Keep the words' first-seen order for Picky's facets.
    #[serde(default)]
    facets: bool,
}

/// `ranged = { range = 2.5, precision = 1, anchor = 0.0 }`, or a geo
/// half: `lat_radius_km = 1.5` / `lng_radius_km = 1.5` instead of `range`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRanged {
    range: Option<Number>,
    lat_radius_km: Option<Number>,
    lng_radius_km: Option<Number>,
    #[serde(default = "one_u32")]
    precision: u32,
    #[serde(default)]
    anchor: Number,
}

fn one_u32() -> u32 {
    1
}

/// Picky's `ranged_category :age, range, precision:, anchor:` (a
/// `Calculations::Location`): a number is found by the documents whose
/// values lie within about `range` of it. Each value `v` is indexed under
/// the grid cells `cell(v) - precision ..= cell(v) + precision`, a query
/// word looked up under `cell(to_f(word))`. Geo categories are two of
/// these, their ranges a radius in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ranged {
    pub range: f64,
    pub precision: u32,
    pub anchor: f64,
}

/// Kilometres to degrees of latitude and (on the 45th parallel, as Picky
/// takes it) of longitude: Picky's `geo_categories` factors.
pub const KM_LAT: f64 = 0.00898312;
pub const KM_LNG: f64 = 0.01796624;

/// A grid cell further than this from the anchor is refused at index time
/// (integers beyond 2^53 are not exact in a float); a query's is found
/// nowhere.
pub const MAX_CELL: f64 = 9_007_199_254_740_992.0;

impl Ranged {
    fn grid(&self) -> f64 {
        self.range / (f64::from(self.precision) + 0.5)
    }

    /// Ruby: `((location - @anchor) / @grid).floor`, the anchor moved
    /// down by one range and one grid (`Calculations::Location#anchor=`).
    pub fn cell(&self, value: f64) -> Option<i64> {
        let grid = self.grid();
        let anchor = self.anchor - self.range - grid;
        let cell = ((value - anchor) / grid).floor();
        (cell.is_finite() && cell.abs() <= MAX_CELL).then_some(cell as i64)
    }

    /// The index keys of a value: its cell and `precision` cells on each
    /// side, in Picky's order (ascending).
    pub fn keys(&self, value: f64) -> Option<impl Iterator<Item = i64>> {
        let cell = self.cell(value)?;
        let p = i64::from(self.precision);
        Some(cell - p..=cell + p)
    }
}

/// Most cells on each side of a value.
pub const MAX_PRECISION: u32 = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoost {
    categories: Vec<String>,
    value: Number,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGolden {
    query: String,
    #[serde(default = "default_ids")]
    ids: i64,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    min_total: u64,
}

fn default_ids() -> i64 {
    20
}

impl RawGolden {
    fn validated(self) -> GoldenQuery {
        GoldenQuery {
            query: self.query,
            ids: self.ids,
            offset: self.offset,
            min_total: self.min_total,
        }
    }
}

/// A search definition: one search over several indexes (Picky's
/// `Search.new(books, films)`), with the search's own query tokenizer,
/// boosts and options. The indexes' own `[searching]`, `[[boost]]` and
/// `[search]` are for their own searches and play no part here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearchDef {
    name: String,
    /// Index definitions, relative to this file, in the search's order.
    indexes: Vec<PathBuf>,
    #[serde(default)]
    searching: TokenizerSpec,
    #[serde(default, rename = "boost")]
    boosts: Vec<RawBoost>,
    #[serde(default, rename = "golden")]
    golden: Vec<RawGolden>,
    #[serde(default)]
    search: RawSearch,
}

/// Most indexes one search may hold.
pub const MAX_SEARCH_INDEXES: usize = 64;

/// A validated search definition (see [`Definition`]).
#[derive(Debug, Clone)]
pub struct SearchDef {
    pub path: PathBuf,
    /// The path served (`/<name>`) and the snapshot's name.
    pub name: String,
    /// In the search's order: allocations of equal score keep it.
    pub indexes: Vec<IndexDef>,
    pub searching: TokenizerSpec,
    /// By category name: an allocation of an index without one of the
    /// categories never matches it.
    pub boosts: Vec<Boost>,
    pub golden: Vec<GoldenQuery>,
    pub search: SearchOptions,
    pub warnings: Vec<String>,
}

/// What `searchd index --def` reads: an index definition, or a search
/// definition (it has `indexes = [...]`) over several of them.
// Read once per build: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Definition {
    Index(IndexDef),
    Search(SearchDef),
}

impl Definition {
    pub fn load(path: &Path) -> Result<Definition, DefError> {
        let text = std::fs::read_to_string(path).map_err(|source| DefError::Read {
            path: path.to_owned(),
            source,
        })?;
        let is_search =
            toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("indexes"));
        if is_search {
            SearchDef::parse(path, &text).map(Definition::Search)
        } else {
            IndexDef::parse(path, &text).map(Definition::Index)
        }
    }

    /// The path served (`/<name>`).
    pub fn name(&self) -> &str {
        match self {
            Definition::Index(d) => &d.name,
            Definition::Search(d) => &d.name,
        }
    }

    /// What is valid but probably not meant.
    pub fn warnings(&self) -> &[String] {
        match self {
            Definition::Index(d) => &d.warnings,
            Definition::Search(d) => &d.warnings,
        }
    }
}

impl SearchDef {
    /// Validates search definition text and loads each index definition
    /// it names (relative to `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<SearchDef, DefError> {
        let raw: RawSearchDef = read_toml(path, text)?;
        let invalid = |field: &str, message: String| invalid(path, field, message);
        check_name(path, &raw.name)?;
        if raw.indexes.is_empty() || raw.indexes.len() > MAX_SEARCH_INDEXES {
            return Err(invalid(
                "indexes",
                format!(
                    "names 1 to {MAX_SEARCH_INDEXES} index definitions (got {})",
                    raw.indexes.len()
                ),
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut indexes: Vec<IndexDef> = Vec::with_capacity(raw.indexes.len());
        for (i, p) in raw.indexes.iter().enumerate() {
            let p = dir.join(p);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                invalid(
                    &format!("indexes[{i}]"),
                    format!("cannot read index definition {}: {e}", p.display()),
                )
            })?;
            if toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("indexes")) {
                return Err(invalid(
                    &format!("indexes[{i}]"),
                    format!(
                        "{} is a search definition; a search holds indexes, not searches",
                        p.display()
                    ),
                ));
            }
            let def = IndexDef::parse(&p, &text)?;
            if let Some(j) = indexes.iter().position(|d| d.name == def.name) {
                return Err(invalid(
                    &format!("indexes[{i}]"),
                    format!("index {:?} is indexes[{j}] already", def.name),
                ));
            }
            indexes.push(def);
        }
        // Names known to some index: a boost or option naming none of them
        // is a typo (one an index lacks just never matches its allocations).
        let known: HashSet<String> = indexes
            .iter()
            .flat_map(|d| d.categories.iter().map(|c| c.name.clone()))
            .collect();
        let (boosts, search) = boosts_and_options(path, raw.boosts, raw.search, &known)?;
        raw.searching
            .validate()
            .map_err(|(field, message)| invalid(&format!("searching.{field}"), message))?;
        let warnings = indexes.iter().flat_map(|d| d.warnings.clone()).collect();
        Ok(SearchDef {
            path: path.to_owned(),
            name: raw.name,
            indexes,
            searching: raw.searching,
            boosts,
            golden: raw.golden.into_iter().map(RawGolden::validated).collect(),
            search,
            warnings,
        })
    }
}

/// Which prefixes (or infixes) of a token go into a category's partial index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Partial {
    /// No partial index: partial lookups use the exact index.
    None,
    /// Prefixes from length `from` (negative: counted from the end, -1 = the
    /// whole word) up to `to` (default -1, the whole word). Picky's `Substring`.
    Substring {
        #[serde(default = "one")]
        from: i32,
        #[serde(default = "minus_one")]
        to: i32,
    },
    /// Picky's default `Postfix`: prefixes from `from` (default -3) to the whole word.
    Postfix {
        #[serde(default = "minus_three")]
        from: i32,
    },
    /// Every substring of length `min` up to `max` (negative: from the end).
    Infix {
        #[serde(default = "one")]
        min: i32,
        #[serde(default = "minus_one")]
        max: i32,
    },
}

impl Default for Partial {
    /// Picky's default partial strategy is `Postfix.new(from: -3)`.
    fn default() -> Self {
        Partial::Postfix { from: -3 }
    }
}

fn one() -> i32 {
    1
}
fn minus_one() -> i32 {
    -1
}
fn minus_three() -> i32 {
    -3
}

/// Phonetic similarity for `word~` queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Similarity {
    #[default]
    None,
    DoubleMetaphone {
        #[serde(default = "three")]
        amount: u32,
    },
    Metaphone {
        #[serde(default = "three")]
        amount: u32,
    },
    Soundex {
        #[serde(default = "three")]
        amount: u32,
    },
}

fn three() -> u32 {
    3
}

/// A number as the definition writes it. Ruby keeps integers and floats
/// apart, and so do answers: a score made only of integers (constant
/// integer weights, integer boosts) prints as `2`, not `2.0`. TOML (and
/// the snapshot's JSON metadata) keep the difference: `2` is an integer,
/// `2.0` a float.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Default for Number {
    fn default() -> Self {
        Number::Float(0.0)
    }
}

impl Number {
    pub fn value(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, Number::Int(_))
    }

    /// Finite, and an integer small enough to add up exactly as a float.
    fn is_usable(self) -> bool {
        match self {
            Number::Int(i) => i.unsigned_abs() <= 1 << 40,
            Number::Float(f) => f.is_finite(),
        }
    }
}

/// Ruby's `+`: integers stay integers, anything with a float is a float
/// (the integer converted first).
impl std::ops::Add for Number {
    type Output = Number;

    fn add(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => match a.checked_add(b) {
                Some(sum) => Number::Int(sum),
                None => Number::Float(a as f64 + b as f64),
            },
            (a, b) => Number::Float(a.value() + b.value()),
        }
    }
}

/// How a token's weight derives from its posting-list length.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Weight {
    /// `offset + round(ln(n), 3)` (Picky's default `Logarithmic`, and
    /// `Logarithmic.new(offset)`; `weight = 2` is the shortcut, as Picky's
    /// `weight: 2`). Always a float, whatever the offset.
    Logarithmic {
        #[serde(default)]
        offset: Number,
    },
    /// The same weight for every text, indexed or not (Picky's
    /// `Weights::Constant`): every query word is a candidate in the
    /// category, and a range there weighs `value` per text of the range.
    /// An integer `value` keeps scores integers.
    Constant { value: Number },
}

impl Default for Weight {
    fn default() -> Self {
        Weight::Logarithmic {
            offset: Number::default(),
        }
    }
}

/// A validated category.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryDef {
    pub name: String,
    pub field: String,
    pub qualifiers: Vec<String>,
    pub partial: Partial,
    pub similarity: Similarity,
    pub weight: Weight,
    /// Its own indexing tokenizer, if it has one (searching is the
    /// index's, always).
    pub indexing: Option<TokenizerSpec>,
    /// False: the data gives its tokens (a JSON array), indexed as given.
    pub tokenize: bool,
    /// Answers facets (`GET /<index>/facets/<category>`).
    pub facets: bool,
    /// Picky's `ranged_category` (or half of `geo_categories`).
    pub ranged: Option<Ranged>,
}

/// A validated boost: an exact category sequence (neighbouring duplicates
/// merged) and the value added to an allocation's score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Boost {
    pub categories: Vec<String>,
    pub value: Number,
}

/// Picky's Search options, as `[search]` spells them. Category
/// combinations are names in order, neighbouring duplicates never merged
/// here (an allocation's categories are, before they are compared).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// Keep the best N allocations (Picky's `max_allocations`), empty ones
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allocations: Option<u64>,
    /// Once the page is full, process this many more allocations and stop
    /// (Picky's `terminate_early`): the total counts only those processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_early: Option<u64>,
    /// Categories left out of every allocation after the cut (Picky's
    /// `ignore :name`): scores keep them, ids and the rendering do not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_categories: Vec<String>,
    /// Allocations whose categories are one of these are dropped (Picky's
    /// `ignore [:a, :b]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_combinations: Vec<Vec<String>>,
    /// If not empty, only allocations whose categories are one of these
    /// (Picky's `only [:a, :b], [:b]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<Vec<String>>,
    /// A word found in no category is left out instead of making the
    /// answer empty (Picky's `ignore_unassigned_tokens`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_unassigned_tokens: bool,
    /// Each id at most once on a page (Picky's `search(…, unique: true)`,
    /// with its paging, reproduced exactly).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
}

/// A golden query, answered at index time and replayed by `searchd check`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoldenQuery {
    pub query: String,
    pub ids: i64,
    pub offset: i64,
    pub min_total: u64,
}

/// A validated index definition.
#[derive(Debug, Clone)]
pub struct IndexDef {
    pub path: PathBuf,
    pub name: String,
    /// Shown first in every allocation instead of `name` (Picky's
    /// `result_identifier`); `name` stays the path served.
    pub result_identifier: Option<String>,
    pub id_field: String,
    pub id_kind: IdKind,
    pub source_path: PathBuf,
    pub source_format: SourceFormat,
    pub csv_header: bool,
    pub csv_columns: Vec<String>,
    pub indexing: TokenizerSpec,
    pub searching: TokenizerSpec,
    pub categories: Vec<CategoryDef>,
    pub boosts: Vec<Boost>,
    pub golden: Vec<GoldenQuery>,
    pub search: SearchOptions,
    /// What is valid but probably not meant (a qualifier listed by two
    /// categories); `searchd index` prints them on stderr.
    pub warnings: Vec<String>,
}

impl IndexDef {
    /// Reads and validates a definition. Relative source paths are resolved
    /// against the definition's own directory.
    pub fn load(path: &Path) -> Result<IndexDef, DefError> {
        let text = std::fs::read_to_string(path).map_err(|source| DefError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates definition text; `path` is used for messages and to resolve
    /// relative source paths.
    pub fn parse(path: &Path, text: &str) -> Result<IndexDef, DefError> {
        let raw: RawDef = read_toml(path, text)?;
        let invalid = |field: &str, message: String| invalid(path, field, message);
        check_name(path, &raw.name)?;
        if raw.categories.is_empty() {
            return Err(invalid(
                "category",
                "at least one [[category]] is required".into(),
            ));
        }

        let mut seen = HashSet::new();
        let mut categories = Vec::with_capacity(raw.categories.len());
        for (i, c) in raw.categories.into_iter().enumerate() {
            let c = category(c, &mut seen)
                .map_err(|(field, message)| invalid(&format!("category[{i}].{field}"), message))?;
            // Its own indexing options, checked as the index's are.
            if let Some(t) = &c.indexing {
                t.validate().map_err(|(field, message)| {
                    invalid(&format!("category[{i}].indexing.{field}"), message)
                })?;
            }
            categories.push(c);
        }

        let warnings = shared_qualifiers(path, &categories);

        let (boosts, search) = boosts_and_options(path, raw.boosts, raw.search, &seen)?;

        let source_path = if raw.source.path.is_absolute() {
            raw.source.path.clone()
        } else {
            path.parent()
                .unwrap_or(Path::new("."))
                .join(&raw.source.path)
        };
        if raw.source.format == SourceFormat::Csv
            && let Some(i) = categories.iter().position(|c| !c.tokenize)
        {
            return Err(invalid(
                &format!("category[{i}].tokenize"),
                "false needs a JSON Lines source whose field is an array of tokens (a CSV field is \
                 text, which Picky cannot take as tokens either)"
                    .into(),
            ));
        }
        if raw.source.format == SourceFormat::Csv
            && !raw.source.header
            && raw.source.columns.is_empty()
        {
            return Err(invalid(
                "source.columns",
                "a CSV source without a header row must name its columns".into(),
            ));
        }
        let known_fields: Option<HashSet<&str>> = match (raw.source.format, raw.source.header) {
            (SourceFormat::Csv, false) => {
                Some(raw.source.columns.iter().map(String::as_str).collect())
            }
            _ => None,
        };
        if let Some(fields) = &known_fields {
            if !fields.contains(raw.id.field.as_str()) {
                return Err(invalid(
                    "id.field",
                    format!("{:?} is not one of source.columns", raw.id.field),
                ));
            }
            for (i, c) in categories.iter().enumerate() {
                if !fields.contains(c.field.as_str()) {
                    return Err(invalid(
                        &format!("category[{i}].field"),
                        format!("{:?} is not one of source.columns", c.field),
                    ));
                }
            }
        }

        raw.indexing
            .validate()
            .map_err(|(field, message)| invalid(&format!("indexing.{field}"), message))?;
        raw.searching
            .validate()
            .map_err(|(field, message)| invalid(&format!("searching.{field}"), message))?;
        let (indexing, searching) = (raw.indexing, raw.searching);

        let golden = raw.golden.into_iter().map(RawGolden::validated).collect();

        Ok(IndexDef {
            path: path.to_owned(),
            name: raw.name,
            result_identifier: raw.result_identifier,
            id_field: raw.id.field,
            id_kind: raw.id.kind,
            source_path,
            source_format: raw.source.format,
            csv_header: raw.source.header,
            csv_columns: raw.source.columns,
            indexing,
            searching,
            categories,
            boosts,
            golden,
            search,
            warnings,
        })
    }
}

/// One `[[category]]`, checked; an error names the field within it.
fn category(
    c: RawCategory,
    seen: &mut HashSet<String>,
) -> Result<CategoryDef, (&'static str, String)> {
    if !valid_name(&c.name) {
        return Err((
            "name",
            format!(
                "{:?} must be 1-64 characters of a-z, 0-9, '_' or '-'",
                c.name
            ),
        ));
    }
    if !seen.insert(c.name.clone()) {
        return Err(("name", format!("duplicate category {:?}", c.name)));
    }
    let qualifiers = c.qualifiers.unwrap_or_else(|| vec![c.name.clone()]);
    for q in &qualifiers {
        if q.is_empty() || q.contains([':', ',', '|']) || q.chars().any(char::is_whitespace) {
            return Err((
                "qualifiers",
                format!(
                    "{q:?} is not a usable qualifier (empty, or contains ':', ',', '|' or a space)"
                ),
            ));
        }
        if crate::ruby::downcase(q) != q.as_str() {
            return Err((
                "qualifiers",
                format!(
                    "{q:?} has uppercase letters; queries are lowercased before qualifiers are read"
                ),
            ));
        }
    }
    let ranged = c.ranged.map(ranged).transpose()?;
    if ranged.is_some() {
        let conflict = if c.partial.is_some_and(|p| p != Partial::None) {
            Some("partial")
        } else if c.similarity != Similarity::None {
            Some("similarity")
        } else if c.facets {
            Some("facets")
        } else {
            None
        };
        if let Some(field) = conflict {
            return Err((
                field,
                "a ranged category looks numbers up by grid cell; it has no partial, similar or \
                 facet words (as in Picky, whose ranged categories replace both their indexes)"
                    .into(),
            ));
        }
    }
    let partial = match (c.partial, &ranged) {
        (Some(p), _) => p,
        (None, Some(_)) => Partial::None,
        (None, None) => Partial::default(),
    };
    match partial {
        Partial::Substring { from, to } if from == 0 || to == 0 => {
            return Err(("partial", "from and to must not be 0".into()));
        }
        Partial::Postfix { from: 0 } => {
            return Err(("partial", "from must not be 0".into()));
        }
        Partial::Infix { min, max } if min == 0 || max == 0 => {
            return Err(("partial", "min and max must not be 0".into()));
        }
        _ => {}
    }
    if let Similarity::DoubleMetaphone { amount }
    | Similarity::Metaphone { amount }
    | Similarity::Soundex { amount } = c.similarity
        && amount == 0
    {
        return Err(("similarity.amount", "must be at least 1".into()));
    }
    let weight = match c.weight {
        None => Weight::default(),
        Some(toml::Value::Integer(i)) => Weight::Logarithmic {
            offset: Number::Int(i),
        },
        Some(toml::Value::Float(f)) => Weight::Logarithmic {
            offset: Number::Float(f),
        },
        Some(toml::Value::Table(t))
            if t.get("kind").and_then(|k| k.as_str()) == Some("dynamic") =>
        {
            return Err((
                "weight",
                "Picky's dynamic weights are Ruby code run at search time, which an immutable \
                 snapshot cannot hold: compute the weight into a field and use a constant or \
                 logarithmic weight (see PICKY.md)"
                    .into(),
            ));
        }
        Some(v @ toml::Value::Table(_)) => v
            .try_into()
            .map_err(|e: toml::de::Error| ("weight", e.message().to_owned()))?,
        Some(other) => {
            return Err((
                "weight",
                format!(
                    "must be a table (kind = \"logarithmic\" or \"constant\") or a number (a logarithmic weight's offset), not a {}",
                    other.type_str()
                ),
            ));
        }
    };
    match weight {
        Weight::Constant { value } if !value.is_usable() => {
            return Err(("weight.value", "must be a finite number".into()));
        }
        Weight::Logarithmic { offset } if !offset.is_usable() => {
            return Err(("weight.offset", "must be a finite number".into()));
        }
        _ => {}
    }
    Ok(CategoryDef {
        field: c.field.unwrap_or_else(|| c.name.clone()),
        name: c.name,
        qualifiers,
        partial,
        similarity: c.similarity,
        weight,
        indexing: c.indexing,
        tokenize: c.tokenize,
        facets: c.facets,
        ranged,
    })
}

/// `ranged = { … }`: one of range, lat_radius_km, lng_radius_km, positive
/// and finite; a precision that keeps the keys per value few.
fn ranged(r: RawRanged) -> Result<Ranged, (&'static str, String)> {
    let range = match (r.range, r.lat_radius_km, r.lng_radius_km) {
        (Some(range), None, None) => ("ranged.range", range.value()),
        (None, Some(km), None) => ("ranged.lat_radius_km", km.value() * KM_LAT),
        (None, None, Some(km)) => ("ranged.lng_radius_km", km.value() * KM_LNG),
        _ => {
            return Err((
                "ranged",
                "takes one of range (Picky's ranged_category), lat_radius_km or lng_radius_km \
                 (a half of its geo_categories)"
                    .into(),
            ));
        }
    };
    if !(range.1.is_finite() && range.1 > 0.0) {
        return Err((range.0, "must be a positive number".into()));
    }
    if r.precision > MAX_PRECISION {
        return Err((
            "ranged.precision",
            format!("must be at most {MAX_PRECISION} (Picky suggests 1 to 5)"),
        ));
    }
    if !r.anchor.is_usable() {
        return Err(("ranged.anchor", "must be a finite number".into()));
    }
    Ok(Ranged {
        range: range.1,
        precision: r.precision,
        anchor: r.anchor.value(),
    })
}

/// What a Picky application may write where index.toml has another
/// spelling, or nothing on purpose: the hint added to "unknown field".
const PICKY_HINTS: &[(&str, &str)] = &[
    (
        "removes_characters",
        "index.toml spells Picky's removes_characters `remove`",
    ),
    (
        "splits_text_on",
        "index.toml spells Picky's splits_text_on `split` (a pattern)",
    ),
    (
        "normalizes_words",
        "index.toml spells Picky's normalizes_words `normalize`",
    ),
    (
        "rejects_token_if",
        "index.toml spells Picky's rejects_token_if `reject` (kind = \"shorter_than\", \"blank\" or \"empty\")",
    ),
    (
        "substitutes_characters_with",
        "index.toml spells Picky's substitutes_characters_with `substitute` (\"west_european\", \"polish\")",
    ),
    (
        "key_format",
        "index.toml spells Picky's key_format `[id] kind` (\"integer\", \"float\", \"string\")",
    ),
    ("qualifier", "index.toml takes a list: `qualifiers = [...]`"),
    ("from", "index.toml spells Picky's from: `field`"),
    ("weights", "a category's weight is `weight`"),
    ("boosts", "boosts are `[[boost]]` tables"),
    (
        "stems_with",
        "stemmers are Ruby objects run on every word, which a definition cannot hold: \
      stem the data before indexing, or use `normalize` patterns (see PICKY.md)",
    ),
    (
        "tokenizer",
        "custom tokenizer objects are Ruby code: use the tokenizer options \
      (remove, split, normalize, reject, substitute; see PICKY.md)",
    ),
    (
        "backend",
        "a snapshot is always one immutable, memory-mapped file; realtime backends \
      (Redis, SQLite) and index.add/remove/replace do not apply: rebuild the snapshot and roll it out",
    ),
    (
        "realtime",
        "a snapshot never changes: rebuild it (searchd index) and roll the new image out",
    ),
    (
        "hints",
        "Picky's hints only tune its own memory use; searchd needs none",
    ),
    (
        "ranging",
        "index.toml spells Picky's ranged_category `ranged = { range = 2.5, precision = 1, \
      anchor = 0.0 }` on the category (geo_categories: `ranged = { lat_radius_km = 1.5 }` and \
      `ranged = { lng_radius_km = 1.5 }` on two categories)",
    ),
    (
        "geo",
        "index.toml spells Picky's geo_categories as two categories with `ranged = { \
      lat_radius_km = 1.5 }` and `ranged = { lng_radius_km = 1.5 }`",
    ),
];

/// `message` with a hint for Picky's spelling of an unknown field.
fn with_picky_hint(message: String) -> String {
    let Some(field) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return message;
    };
    match PICKY_HINTS.iter().find(|(name, _)| *name == field) {
        Some((_, hint)) => format!("{message}\n{hint}"),
        None => message,
    }
}

/// `[[boost]]` and `[search]`, naming only `categories`.
fn boosts_and_options(
    path: &Path,
    raw_boosts: Vec<RawBoost>,
    raw_search: RawSearch,
    categories: &HashSet<String>,
) -> Result<(Vec<Boost>, SearchOptions), DefError> {
    let mut boosts = Vec::with_capacity(raw_boosts.len());
    for (i, b) in raw_boosts.into_iter().enumerate() {
        boosts.push(
            boost(b, categories).map_err(|(field, message)| {
                invalid(path, &format!("boost[{i}].{field}"), message)
            })?,
        );
    }
    let search = search_options(raw_search, categories)
        .map_err(|(field, message)| invalid(path, &format!("search.{field}"), message))?;
    Ok((boosts, search))
}

/// `[search]`: known categories, combinations that can match, counts that
/// are not negative.
fn search_options(
    raw: RawSearch,
    categories: &HashSet<String>,
) -> Result<SearchOptions, (&'static str, String)> {
    let count = |field: &'static str, v: Option<i64>| match v {
        Some(n) if n < 0 => Err((field, format!("must not be negative (got {n})"))),
        v => Ok(v.map(|n| n as u64)),
    };
    let combination = |field: &'static str, names: Vec<String>| {
        if names.is_empty() {
            return Err((field, "a combination names at least one category".into()));
        }
        if let Some(unknown) = names.iter().find(|n| !categories.contains(*n)) {
            return Err((field, format!("unknown category {unknown:?}")));
        }
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err((
                field,
                format!(
                    "{names:?} repeats a category: allocations are compared with neighbouring \
                     repeats merged, so it could never match (write it once)"
                ),
            ));
        }
        Ok(names)
    };
    let mut opts = SearchOptions {
        max_allocations: count("max_allocations", raw.max_allocations)?,
        terminate_early: count("terminate_early", raw.terminate_early)?,
        ignore_unassigned_tokens: raw.ignore_unassigned_tokens,
        unique: raw.unique,
        ..SearchOptions::default()
    };
    for v in raw.ignore {
        match v {
            toml::Value::String(name) if categories.contains(&name) => {
                opts.ignore_categories.push(name);
            }
            toml::Value::String(name) => {
                return Err(("ignore", format!("unknown category {name:?}")));
            }
            toml::Value::Array(names) => {
                let names: Option<Vec<String>> = names
                    .into_iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect();
                let names = names.ok_or((
                    "ignore",
                    "a combination is an array of category names".to_owned(),
                ))?;
                opts.ignore_combinations.push(combination("ignore", names)?);
            }
            other => {
                return Err((
                    "ignore",
                    format!(
                        "takes category names and arrays of them (combinations), not a {}",
                        other.type_str()
                    ),
                ));
            }
        }
    }
    for v in raw.only {
        let names: Option<Vec<String>> = v
            .as_array()
            .and_then(|a| a.iter().map(|n| n.as_str().map(str::to_owned)).collect());
        let names = names.ok_or_else(|| {
            (
                "only",
                format!(
                    "takes combinations, arrays of category names ({v} is not one; Picky's \
                     `only :name` keeps no allocation at all, `only [:name]` is written [[\"name\"]])"
                ),
            )
        })?;
        opts.only.push(combination("only", names)?);
    }
    Ok(opts)
}

/// One `[[boost]]`: known categories, a finite value.
fn boost(b: RawBoost, categories: &HashSet<String>) -> Result<Boost, (&'static str, String)> {
    if b.categories.is_empty() {
        return Err(("categories", "must name at least one category".into()));
    }
    if let Some(unknown) = b.categories.iter().find(|n| !categories.contains(*n)) {
        return Err(("categories", format!("unknown category {unknown:?}")));
    }
    if !b.value.is_usable() {
        return Err(("value", "must be a finite number".into()));
    }
    Ok(Boost {
        categories: b.categories,
        value: b.value,
    })
}

/// One warning per qualifier listed by two categories (or twice by one).
/// Picky's qualifier mapping lets the category declared last own it and
/// warns; so does searchd (the engine resolves it the same way, see
/// `index::Engine`), and `searchd index` prints these.
fn shared_qualifiers(path: &Path, categories: &[CategoryDef]) -> Vec<String> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut warnings = Vec::new();
    for (i, c) in categories.iter().enumerate() {
        for q in &c.qualifiers {
            let Some(earlier) = owner.insert(q, i) else {
                continue;
            };
            let listed = if earlier == i {
                format!("is listed twice by category {:?}", c.name)
            } else {
                format!(
                    "is listed by categories {:?} and {:?}; {:?}, declared last, owns it (as in Picky)",
                    categories[earlier].name, c.name, c.name
                )
            };
            warnings.push(format!(
                "index definition {}: category[{i}].qualifiers: qualifier {q:?} {listed}",
                path.display()
            ));
        }
    }
    warnings
}

/// A definition's raw TOML; an unknown field that is Picky's spelling
/// gets a hint.
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, DefError> {
    toml::from_str(text).map_err(|e| DefError::Toml {
        path: path.to_owned(),
        message: with_picky_hint(e.to_string()),
    })
}

fn invalid(path: &Path, field: &str, message: String) -> DefError {
    DefError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        message,
    }
}

/// The name is a path segment (`/<name>`) and a file name.
fn check_name(path: &Path, name: &str) -> Result<(), DefError> {
    if valid_name(name) {
        return Ok(());
    }
    Err(invalid(
        path,
        "name",
        format!("{name:?} must be 1-64 characters of a-z, 0-9, '_' or '-'"),
    ))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKS: &str = include_str!("../../images/books/index.toml");

    fn parse(text: &str) -> Result<IndexDef, DefError> {
        IndexDef::parse(Path::new("/defs/books/index.toml"), text)
    }

    #[test]
    fn books_definition_is_valid() {
        let def = parse(BOOKS).unwrap();
        assert_eq!(def.name, "books");
        assert_eq!(def.source_path, Path::new("/defs/books/books.csv"));
        let names: Vec<_> = def.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["title", "author", "year"]);
        assert_eq!(
            def.categories[0].similarity,
            Similarity::DoubleMetaphone { amount: 3 }
        );
        assert_eq!(def.categories[2].partial, Partial::None);
        assert_eq!(def.boosts.len(), 2);
    }

    #[test]
    fn a_shared_qualifier_is_warned_about() {
        assert!(parse(BOOKS).unwrap().warnings.is_empty());
        let shared = BOOKS.replace(
            "name = \"author\"\n",
            "name = \"author\"\nqualifiers = [\"author\", \"title\", \"a\", \"a\"]\n",
        );
        let warnings = parse(&shared).unwrap().warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("category[1].qualifiers")
                && warnings[0].contains("qualifier \"title\"")
                && warnings[0].contains("categories \"title\" and \"author\"")
                && warnings[0].contains("\"author\", declared last, owns it"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("\"a\" is listed twice by category \"author\""),
            "{warnings:?}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let bad = BOOKS.replace(
            "name = \"year\"\npartial",
            "name = \"year\"\nfield = \"nope\"\npartial",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("category[2].field") && err.contains("nope"),
            "{err}"
        );

        let bad = BOOKS.replace("categories = [\"title\"]", "categories = [\"titel\"]");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("boost[1].categories") && err.contains("titel"),
            "{err}"
        );

        let bad = BOOKS.replace("stopwords = '(?i)", "stopwords = '(?i)(");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("indexing.stopwords"), "{err}");

        let err = parse("name = \"books\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    /// Weights as Picky writes them: `weight = 2` is a logarithmic weight
    /// with that offset (Picky's `weight: 2`), TOML integers stay integers,
    /// and anything else is refused naming the field.
    #[test]
    fn weights_keep_integers_and_name_their_errors() {
        let with = |w: &str| {
            BOOKS.replace(
                "name = \"year\"\n",
                &format!("name = \"year\"\nweight = {w}\n"),
            )
        };
        let year = |w: &str| parse(&with(w)).map(|d| d.categories[2].weight);
        assert_eq!(
            year("2").unwrap(),
            Weight::Logarithmic {
                offset: Number::Int(2)
            }
        );
        assert_eq!(
            year("0.5").unwrap(),
            Weight::Logarithmic {
                offset: Number::Float(0.5)
            }
        );
        assert_eq!(
            year("{ kind = \"logarithmic\", offset = -1 }").unwrap(),
            Weight::Logarithmic {
                offset: Number::Int(-1)
            }
        );
        assert_eq!(
            year("{ kind = \"constant\", value = 2 }").unwrap(),
            Weight::Constant {
                value: Number::Int(2)
            }
        );
        assert_eq!(
            year("{ kind = \"constant\", value = 2.0 }").unwrap(),
            Weight::Constant {
                value: Number::Float(2.0)
            }
        );
        for (bad, field) in [
            ("\"heavy\"", "category[2].weight"),
            ("{ kind = \"constant\" }", "category[2].weight"),
            (
                "{ kind = \"logarithmic\", offset = \"x\" }",
                "category[2].weight",
            ),
            ("{ kind = \"dynamic\" }", "Ruby code"),
            ("nan", "category[2].weight.offset"),
            (
                "{ kind = \"constant\", value = inf }",
                "category[2].weight.value",
            ),
        ] {
            let err = parse(&with(bad)).unwrap_err().to_string();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }

    /// `[search]`: Picky's Search options, with names checked and the
    /// combinations that could never match refused.
    #[test]
    fn search_options_are_checked() {
        let with = |t: &str| format!("{BOOKS}\n[search]\n{t}\n");
        let def = parse(&with(
            "max_allocations = 3\nterminate_early = 0\nignore = [\"year\", [\"title\", \"author\"]]\n\
             only = [[\"title\"]]\nignore_unassigned_tokens = true\nunique = true",
        ))
        .unwrap();
        assert_eq!(
            def.search,
            SearchOptions {
                max_allocations: Some(3),
                terminate_early: Some(0),
                ignore_categories: vec!["year".into()],
                ignore_combinations: vec![vec!["title".into(), "author".into()]],
                only: vec![vec!["title".into()]],
                ignore_unassigned_tokens: true,
                unique: true,
            }
        );
        assert_eq!(parse(BOOKS).unwrap().search, SearchOptions::default());
        for (bad, field, why) in [
            ("max_allocations = -1", "search.max_allocations", "negative"),
            ("terminate_early = -2", "search.terminate_early", "negative"),
            ("ignore = [\"titel\"]", "search.ignore", "titel"),
            (
                "ignore = [[\"title\", \"title\"]]",
                "search.ignore",
                "never match",
            ),
            ("ignore = [3]", "search.ignore", "integer"),
            ("only = [[\"title\", \"nope\"]]", "search.only", "nope"),
            ("only = [[]]", "search.only", "at least one"),
            ("only = [\"title\"]", "search.only", "[[\"name\"]]"),
            ("bogus = 1", "bogus", ""),
        ] {
            let err = parse(&with(bad)).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(why), "{bad}: {err}");
        }
    }

    /// Tokenizer options, the index's and a category's own, are checked
    /// naming the field.
    #[test]
    fn tokenizer_options_name_their_errors() {
        let ok = BOOKS.replace(
            "name = \"year\"\n",
            "name = \"year\"\nindexing = { split = ',', reject = { kind = \"blank\" } }\n",
        );
        let def = parse(&ok).unwrap();
        let own = def.categories[2].indexing.as_ref().unwrap();
        assert_eq!(own.split.as_deref(), Some(","));
        assert_eq!(own.remove, None, "not merged with the index's");
        for (from, to, field) in [
            (
                "[indexing]\n",
                "[indexing]\nnormalize = [['(', 'x']]\n",
                "indexing.normalize",
            ),
            (
                "[searching]\n",
                "[searching]\nnormalize = [['a', \"\\\\`\"]]\n",
                "searching.normalize",
            ),
            (
                "[indexing]\n",
                "[indexing]\nreject = { kind = \"shorter_than\", chars = 0 }\n",
                "indexing.reject.chars",
            ),
            (
                "substitute = \"none\"",
                "substitute = \"klingon\"",
                "klingon",
            ),
            (
                "name = \"year\"\n",
                "name = \"year\"\nindexing = { split = '(' }\n",
                "category[2].indexing.split",
            ),
            (
                "name = \"year\"\n",
                "name = \"year\"\nindexing = { reject = { kind = \"shorter_than\", chars = 0 } }\n",
                "category[2].indexing.reject.chars",
            ),
            (
                "name = \"year\"\n",
                "name = \"year\"\nindexing = { splits_text_on = ',' }\n",
                "splits_text_on",
            ),
        ] {
            let bad = BOOKS.replace(from, to);
            assert_ne!(bad, BOOKS, "{from:?} not in the books definition");
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(field), "{to}: {err}");
        }
    }

    #[test]
    fn result_identifier_and_ready_made_tokens() {
        let def = parse(&BOOKS.replace(
            "name = \"books\"\n",
            "name = \"books\"\nresult_identifier = \"livres\"\n",
        ))
        .unwrap();
        assert_eq!(
            (def.name.as_str(), def.result_identifier.as_deref()),
            ("books", Some("livres"))
        );
        // The books data is CSV: its fields are text, not arrays of tokens.
        let bad = BOOKS.replace("name = \"year\"\n", "name = \"year\"\ntokenize = false\n");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("category[2].tokenize") && err.contains("JSON Lines"),
            "{err}"
        );
    }

    /// An unknown field that is Picky's spelling of an option says what
    /// index.toml calls it, or why searchd has no such option.
    #[test]
    fn picky_spellings_get_a_hint() {
        for (from, to, hint) in [
            (
                "[indexing]\n",
                "[indexing]\nremoves_characters = 'x'\n",
                "`remove`",
            ),
            (
                "name = \"year\"\n",
                "name = \"year\"\nstems_with = 'porter'\n",
                "stem the data",
            ),
            (
                "name = \"year\"\n",
                "name = \"year\"\nbackend = 'redis'\n",
                "roll it out",
            ),
            ("[id]\n", "[id]\nkey_format = 'to_i'\n", "[id] kind"),
        ] {
            let bad = BOOKS.replace(from, to);
            assert_ne!(bad, BOOKS, "{from:?}");
            let err = parse(&bad).unwrap_err().to_string();
            assert!(
                err.contains("unknown field") && err.contains(hint),
                "{to}: {err}"
            );
        }
    }
}
