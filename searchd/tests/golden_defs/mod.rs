//! The routes of our own recorded Picky apps (tests/golden/*/picky_app.rb),
//! replayed through the engine (compat_engine.rs) and over HTTP
//! (compat_http.rs).

/// catalog: one definition (`catalog/<route>.toml`) and one recording
/// (`catalog/<route>_recorded.jsonl`) per set of Search options.
pub const CATALOG_ROUTES: [&str; 9] = [
    "plain",
    "max",
    "early",
    "early2",
    "ignore",
    "only",
    "unassigned",
    "unique",
    "all",
];

/// catalog facets: `(route, category)`, recorded in
/// `catalog/facets_<route>_<category>_recorded.jsonl`.
pub const CATALOG_FACETS: [(&str, &str); 5] = [
    ("plain", "title"),
    ("plain", "author"),
    ("plain", "blurb"),
    ("all", "author"),
    ("all", "blurb"),
];

/// keys: one definition and recording per key format.
pub const KEY_ROUTES: [&str; 3] = ["float", "string", "symbol"];

/// media: one search over three indexes (books, films, music: Picky's
/// `Search.new(books, films, music)`), one search definition
/// (`media/<route>.toml`) and recording per set of Search options, the
/// same sets as catalog's.
pub const MEDIA_ROUTES: [&str; 9] = CATALOG_ROUTES;

/// places: ranged and geo categories; `plain` is `places/index.toml`, the
/// others `places/<route>.toml`.
pub const PLACES_ROUTES: [&str; 2] = ["plain", "boosted"];
