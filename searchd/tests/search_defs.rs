//! Search definitions: one search over several indexes (Picky's
//! `Search.new(books, films)`), built into one snapshot that nests each
//! index's own. What Picky answers is replayed in compat_engine.rs and
//! compat_http.rs (tests/golden/media); here: validation, the snapshot,
//! and the rules Picky's answers do not show on their own.

use std::path::PathBuf;

use searchd::def::Definition;
use searchd::index::Engine;
use searchd::search::FacetError;
use searchd::snapshot::{Kind, Verify};

struct Fixture {
    dir: tempfile::TempDir,
}

const BOOKS: &str = r#"
name = "books"
[source]
path = "books.csv"
format = "csv"
[[category]]
name = "title"
[[category]]
name = "author"
qualifiers = ["author", "by"]
[[boost]]
categories = ["author"]
value = 100
"#;

const BOOKS_CSV: &str =
    "id,title,author\n1,Winter Light,Ann Moss\n2,Summer Rain,Bo Lind\n3,Light Years,Ann Moss\n";

const FILMS: &str = r#"
name = "films"
result_identifier = "movies"
[id]
kind = "string"
[source]
path = "films.csv"
format = "csv"
[[category]]
name = "title"
[[category]]
name = "director"
qualifiers = ["director", "by"]
"#;

const FILMS_CSV: &str =
    "id,title,director\nf1,Winter Light,Ingmar Bergman\nf2,Northern Light,Ann Moss\n";

impl Fixture {
    fn new(search: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("books.toml", BOOKS),
            ("books.csv", BOOKS_CSV),
            ("films.toml", FILMS),
            ("films.csv", FILMS_CSV),
            ("search.toml", search),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load(&self) -> Result<Definition, String> {
        Definition::load(&self.path("search.toml")).map_err(|e| e.to_string())
    }

    fn build(&self) -> Engine {
        let def = self.load().unwrap();
        let out = self.path("search.idx");
        searchd::build::build_definition(&def, &out).unwrap();
        Engine::open(&out, Verify::Full).unwrap()
    }
}

const MEDIA: &str = r#"
name = "media"
indexes = ["books.toml", "films.toml"]
[[boost]]
categories = ["director"]
value = 1
"#;

fn answer(e: &Engine, q: &str) -> String {
    e.search(q, 20, 0).unwrap().to_json_string(0.0)
}

#[test]
fn a_search_answers_from_every_index_with_its_own_identifier_and_ids() {
    let f = Fixture::new(MEDIA);
    let e = f.build();
    assert_eq!(e.name(), "media");
    assert_eq!(e.documents(), 5);
    assert_eq!(e.indexes().len(), 2);
    // Equal scores keep the search's order (books first); each allocation
    // names its own index (films' result identifier) and shows its ids.
    assert_eq!(
        answer(&e, "winter"),
        r#"{"allocations":[["books",0.0,1,[["title","winter","winter"]],[1]],["movies",0.0,1,[["title","winter","winter"]],["f1"]]],"offset":0,"duration":0,"total":2}"#
    );
    // The search's boosts apply, not the indexes' own (books' author +100
    // is for its own search): director +1 puts films first.
    let moss = answer(&e, "moss");
    assert!(
        moss.starts_with(r#"{"allocations":[["movies",1.0,1,[["director","moss","moss"]],["f2"]],["books",0.693,2,[["author","moss","moss"]],[1,3]]"#),
        "{moss}"
    );
    // A qualifier maps to each index's own category.
    let by = answer(&e, "by:moss");
    assert!(
        by.contains(r#"["books",0.693,2,[["author","by:moss","moss"]]"#),
        "{by}"
    );
    assert!(
        by.contains(r#"["movies",1.0,1,[["director","by:moss","moss"]]"#),
        "{by}"
    );
    // A qualifier only one index knows: the other has no category for the
    // word, so no allocation.
    let director = answer(&e, "director:moss");
    assert!(!director.contains("books"), "{director}");
    // A word one index lacks leaves that index out, not the others.
    let years = answer(&e, "light years");
    assert!(
        years.contains("\"books\"") && !years.contains("movies"),
        "{years}"
    );
}

#[test]
fn unique_compares_ids_across_indexes_by_value() {
    // Both indexes with integer ids 1..: the same id in two indexes is one
    // for `unique` (Ruby's Array#-), as in Picky.
    let films_int = FILMS
        .replace(
            "result_identifier = \"movies\"\n[id]\nkind = \"string\"\n",
            "",
        )
        .replace("path = \"films.csv\"", "path = \"films2.csv\"");
    let f = Fixture::new(&format!("{MEDIA}[search]\nunique = true\n"));
    std::fs::write(f.path("films.toml"), films_int).unwrap();
    std::fs::write(
        f.path("films2.csv"),
        "id,title,director\n1,Winter Light,Ingmar Bergman\n2,Northern Light,Ann Moss\n",
    )
    .unwrap();
    let e = f.build();
    let light = answer(&e, "light");
    // books has 1 and 3, films 1 and 2: films shows only 2.
    assert!(
        light.contains(r#"["films",0.693,1,[["title","light","light"]],[2]]"#),
        "{light}"
    );
}

#[test]
fn search_definitions_are_checked() {
    let refused = |search: &str, needle: &str| {
        let err = Fixture::new(search).load().unwrap_err();
        assert!(err.contains(needle), "{search}\n -> {err}");
    };
    refused("name = \"m\"\nindexes = []\n", "indexes: names 1 to 64");
    refused(
        "name = \"m\"\nindexes = [\"books.toml\", \"books.toml\"]\n",
        "index \"books\" is indexes[0] already",
    );
    refused(
        "name = \"m\"\nindexes = [\"nope.toml\"]\n",
        "indexes[0]: cannot read index definition",
    );
    refused(
        "name = \"m\"\nindexes = [\"search.toml\"]\n",
        "a search holds indexes, not searches",
    );
    // Names no index has are typos; one only some have is fine.
    refused(
        "name = \"m\"\nindexes = [\"books.toml\", \"films.toml\"]\n[[boost]]\ncategories = [\"titel\"]\nvalue = 1\n",
        "boost[0].categories: unknown category \"titel\"",
    );
    refused(
        "name = \"m\"\nindexes = [\"books.toml\"]\n[search]\nonly = [[\"director\"]]\n",
        "search.only: unknown category \"director\"",
    );
    refused(
        "name = \"m\"\nindexes = [\"books.toml\"]\n[source]\npath = \"x\"\n",
        "unknown field `source`",
    );
    // A fault in an index definition names that file.
    let f = Fixture::new(MEDIA);
    std::fs::write(
        f.path("films.toml"),
        FILMS.replace("[[category]]", "[[categry]]"),
    )
    .unwrap();
    let err = f.load().unwrap_err();
    assert!(err.contains("films.toml"), "{err}");
}

#[test]
fn the_snapshot_nests_each_index_and_is_deterministic() {
    let f = Fixture::new(MEDIA);
    let e = f.build();
    let snap = e.snapshot();
    assert!(snap.has_section(Kind::Index, 0) && snap.has_section(Kind::Index, 1));
    // Each nested snapshot is what `searchd index` writes for the index.
    let books = Definition::load(&f.path("books.toml")).unwrap();
    let alone = f.path("books.idx");
    searchd::build::build_definition(&books, &alone).unwrap();
    let nested = snap.section(Kind::Index, 0).unwrap();
    assert_eq!(nested.as_ref(), std::fs::read(&alone).unwrap());
    // Same inputs, same bytes.
    let first = std::fs::read(f.path("search.idx")).unwrap();
    drop(e);
    f.build();
    assert_eq!(first, std::fs::read(f.path("search.idx")).unwrap());
}

#[test]
fn facets_are_refused_on_a_search() {
    let f = Fixture::new(MEDIA);
    let e = f.build();
    assert_eq!(
        e.facets("title", None, None),
        Err(FacetError::SeveralIndexes)
    );
}

#[test]
fn a_damaged_nested_index_is_refused() {
    let f = Fixture::new(MEDIA);
    let e = f.build();
    let out = f.path("search.idx");
    let (_, _, range) = e
        .snapshot()
        .sections()
        .find(|(k, c, _)| *k == Kind::Index as u32 && *c == 1)
        .unwrap();
    drop(e);
    let mut bytes = std::fs::read(&out).unwrap();
    // The nested snapshot's magic: refused at open even without the sha256.
    bytes[range.start] ^= 0xff;
    std::fs::write(&out, &bytes).unwrap();
    let err = Engine::open(&out, Verify::Structure)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a kiln snapshot"), "{err}");
    // With the sha256, the outer checksum catches it first.
    let err = Engine::open(&out, Verify::Full).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn the_indexes_of_a_search_share_one_work_limit() {
    // Each index alone answers a query just below the limit; the search
    // over both refuses it, as one query may do MAX_QUERY_WORK steps.
    let f = Fixture::new("name = \"m\"\nindexes = [\"books.toml\", \"classics.toml\"]\n");
    std::fs::write(
        f.path("classics.toml"),
        BOOKS.replacen("name = \"books\"", "name = \"classics\"", 1),
    )
    .unwrap();
    // A word in both categories: n words have 2^n allocations.
    std::fs::write(f.path("books.csv"), "id,title,author\n1,echo,echo\n").unwrap();
    let e = f.build();
    let books = e.index_at(0);
    // The most words one index answers; the search over two refuses them.
    let query = |n: usize| vec!["echo"; n].join(" ");
    let mut n = 1;
    while books.search(&query(n + 1), 20, 0).is_ok() && n < 64 {
        n += 1;
    }
    assert!(books.search(&query(n), 20, 0).is_ok());
    assert!(n < 64, "no query reached the limit");
    assert_eq!(
        e.search(&query(n), 20, 0).unwrap_err(),
        searchd::search::SearchError::TooComplex
    );
}

#[test]
fn a_search_nested_in_a_search_is_refused() {
    // Not writable from definitions (a search holds indexes, not
    // searches), but a snapshot's bytes may say anything: nesting stays
    // one level deep.
    let f = Fixture::new(MEDIA);
    let e = f.build();
    let inner = std::fs::read(f.path("search.idx")).unwrap();
    let mut meta: searchd::index::Meta =
        serde_json::from_slice(e.snapshot().section(Kind::Meta, u32::MAX).unwrap().as_ref())
            .unwrap();
    meta.name = "outer".into();
    meta.indexes = vec!["media".into()];
    let mut w = searchd::snapshot::Writer::default();
    w.add(Kind::Index, 0, inner);
    w.add(
        Kind::DocOffsets,
        u32::MAX,
        searchd::snapshot::u64s_to_bytes(&[0]),
    );
    w.add(Kind::DocBytes, u32::MAX, Vec::new());
    w.add(Kind::Meta, u32::MAX, serde_json::to_vec(&meta).unwrap());
    let out = f.path("outer.idx");
    w.write_to(&out).unwrap();
    let err = Engine::open(&out, Verify::Full).unwrap_err().to_string();
    assert!(
        err.contains("an index of a search holds indexes itself"),
        "{err}"
    );
}
