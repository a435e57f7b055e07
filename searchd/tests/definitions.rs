//! Index definitions beyond the books example: JSON Lines and CSV with a
//! header, string ids, qualifier aliases, partial strategies, other
//! similarities, constant weights, word caps, ranges, and the errors a bad
//! definition or data file gets.

use std::path::PathBuf;

use searchd::def::IndexDef;
use searchd::index::Engine;
use searchd::snapshot::Verify;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build(&self) -> Result<Engine, String> {
        let def = IndexDef::load(&self.path("index.toml")).map_err(|e| e.to_string())?;
        let out = self.path("out.idx");
        searchd::build::build(&def, &out).map_err(|e| e.to_string())?;
        Ok(Engine::open(&out, Verify::Full).unwrap())
    }
}

fn answer(e: &Engine, q: &str) -> serde_json::Value {
    serde_json::from_str(&e.search(q, 20, 0).unwrap().to_json_string(0.0)).unwrap()
}

/// `[[category, original, text]...], [ids...]` of each allocation.
fn allocs(e: &Engine, q: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    answer(e, q)["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let cats: Vec<String> = a[3]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c[0].as_str().unwrap().to_owned())
                .collect();
            (cats.join(","), a[4].as_array().unwrap().clone())
        })
        .collect()
}

const MOVIES: &str = r#"
name = "movies"
[id]
field = "slug"
kind = "string"
[source]
path = "movies.jsonl"
format = "jsonl"
[searching]
split = '[ \t]+'
max_words = 2
[[category]]
name = "title"
qualifiers = ["title", "t"]
partial = { kind = "postfix" }
similarity = { kind = "soundex", amount = 2 }
[[category]]
name = "year"
partial = { kind = "none" }
weight = { kind = "constant", value = 0.5 }
[[category]]
name = "tags"
partial = { kind = "infix", min = 3 }
similarity = { kind = "metaphone", amount = 1 }
[[golden]]
query = "alien"
min_total = 1
"#;

const MOVIES_DATA: &str = r#"{"slug": "alien", "title": "Alien", "year": 1979, "tags": ["space", "horror"]}
{"slug": "aliens", "title": "Aliens", "year": 1986, "tags": "space action"}

{"slug": "blade-runner", "title": "Blade Runner", "year": 1982, "tags": null}
{"slug": "robert", "title": "Robert", "year": 1990}
{"slug": "rupert", "title": "Rupert", "year": 1991}
"#;

fn movies() -> (Fixture, Engine) {
    let f = Fixture::new(&[("index.toml", MOVIES), ("movies.jsonl", MOVIES_DATA)]);
    let e = f.build().unwrap();
    (f, e)
}

#[test]
fn jsonl_with_string_ids_and_aliases() {
    let (_f, e) = movies();
    assert_eq!(e.documents(), 5);
    let a = answer(&e, "t:alien");
    assert_eq!(a["total"], 2, "{a}");
    assert_eq!(
        a["allocations"][0][4],
        serde_json::json!(["alien", "aliens"])
    );
    // Numbers are indexed as their text; constant weight 0.5 for year.
    let a = answer(&e, "1979");
    assert_eq!(a["allocations"][0][1], 0.5);
    assert_eq!(a["allocations"][0][4], serde_json::json!(["alien"]));
}

#[test]
fn postfix_partial_stops_at_len_minus_2() {
    let (_f, e) = movies();
    // "aliens" (6 chars): partials aliens, alien, alie; "alien" (5 chars):
    // alien, alie, ali. So "ali" finds only "alien", and "al" nothing.
    assert_eq!(answer(&e, "alie")["total"], 2);
    assert_eq!(
        allocs(&e, "ali"),
        [("title".to_owned(), vec!["alien".into()])]
    );
    assert_eq!(answer(&e, "al")["total"], 0);
}

#[test]
fn infix_partial_matches_inside_words() {
    let (_f, e) = movies();
    let a = allocs(&e, "tags:pac");
    assert_eq!(
        a,
        [("tags".to_owned(), vec!["alien".into(), "aliens".into()])]
    );
    assert!(allocs(&e, "tags:pa").is_empty(), "infix min is 3");
}

#[test]
fn soundex_and_metaphone_similarity() {
    let (_f, e) = movies();
    // Robert and Rupert share Soundex R163; amount 2 keeps both.
    let a = answer(&e, "robbert~");
    let words: Vec<&str> = a["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[3][0][1].as_str().unwrap())
        .collect();
    assert_eq!(words.len(), 2, "{a}");
    assert!(
        words.contains(&"robert") && words.contains(&"rupert"),
        "{a}"
    );
    // Metaphone on tags: "horor~" sounds like "horror".
    let a = answer(&e, "horor~");
    assert_eq!(
        a["allocations"][0][3][0],
        serde_json::json!(["tags", "horror", "horror"]),
        "{a}"
    );
}

#[test]
fn max_words_caps_the_query() {
    let (_f, e) = movies();
    // The third word is dropped: "alien 1979 zzz" searches "alien 1979".
    assert_eq!(answer(&e, "alien 1979 zzz")["total"], 1);
}

#[test]
fn ranges_without_substitution() {
    let (_f, e) = movies();
    let a = answer(&e, "year:1980…1990");
    assert_eq!(a["total"], 3, "{a}");
    assert_eq!(
        a["allocations"][0][3][0],
        serde_json::json!(["year", "year:1980…1990", "1980…1990"])
    );
    assert_eq!(
        a["allocations"][0][4],
        serde_json::json!(["blade-runner", "aliens", "robert"])
    );
    // Weight: as in Picky, the sum of the constant weight of every year of
    // the range, found or not (11 x 0.5), not only of the three found.
    assert_eq!(a["allocations"][0][1], 5.5);
    assert!(
        e.search("year:1…99999999", 20, 0).is_err(),
        "huge ranges are refused"
    );
}

#[test]
fn golden_answers_are_recorded_and_replayed() {
    let (_f, e) = movies();
    assert_eq!(e.meta().golden.len(), 1);
    assert!(e.check_golden().is_empty());
}

#[test]
fn csv_with_a_header_row() {
    let f = Fixture::new(&[
        (
            "index.toml",
            "name = \"people\"\n[source]\npath = \"p.csv\"\nformat = \"csv\"\n[[category]]\nname = \"name\"\n",
        ),
        ("p.csv", "name,id\n\"Müller, Hans\",7\nAnna,8\n"),
    ]);
    let e = f.build().unwrap();
    assert_eq!(e.documents(), 2);
    // Indexing keeps non-ASCII letters when no remove pattern is set.
    assert_eq!(
        answer(&e, "müller")["allocations"][0][4],
        serde_json::json!([7])
    );
}

#[test]
fn bad_data_is_named() {
    let def = "name = \"x\"\n[source]\npath = \"d.jsonl\"\nformat = \"jsonl\"\n[[category]]\nname = \"t\"\n";
    let f = Fixture::new(&[
        ("index.toml", def),
        (
            "d.jsonl",
            "{\"id\": 1, \"t\": \"a\"}\n{\"id\": 2, \"t\": \n",
        ),
    ]);
    let err = f.build().unwrap_err();
    assert!(
        err.contains("record 2") && err.contains("invalid JSON"),
        "{err}"
    );

    let f = Fixture::new(&[("index.toml", def), ("d.jsonl", "{\"t\": \"a\"}\n")]);
    let err = f.build().unwrap_err();
    assert!(err.contains("record 1") && err.contains("\"id\""), "{err}");

    let f = Fixture::new(&[("index.toml", def)]);
    let err = f.build().unwrap_err();
    assert!(err.contains("d.jsonl"), "{err}");
}

#[test]
fn golden_min_total_is_enforced_at_index_time() {
    let def = "name = \"x\"\n[source]\npath = \"d.jsonl\"\nformat = \"jsonl\"\n[[category]]\nname = \"t\"\n[[golden]]\nquery = \"zebra\"\nmin_total = 1\n";
    let f = Fixture::new(&[
        ("index.toml", def),
        ("d.jsonl", "{\"id\": 1, \"t\": \"a\"}\n"),
    ]);
    let err = f.build().unwrap_err();
    assert!(err.contains("zebra") && err.contains("min_total"), "{err}");
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let (f, e) = movies();
    let first = std::fs::read(f.path("out.idx")).unwrap();
    let def = IndexDef::load(&f.path("index.toml")).unwrap();
    let again = f.path("again.idx");
    searchd::build::build(&def, &again).unwrap();
    assert_eq!(first, std::fs::read(&again).unwrap());
    assert_eq!(e.digest().len(), 64);
}

/// `searchd index` warns on stderr about a qualifier listed by two
/// categories, naming it and both categories, and builds anyway: the
/// category declared last owns it (tests/golden/agora: `name` is listed by
/// title and maker, `t` by title and tag).
#[test]
fn a_shared_qualifier_is_warned_about_at_index_time() {
    let def =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/agora/index.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_searchd"))
        .args(["index", "--def"])
        .arg(&def)
        .arg("--out")
        .arg(dir.path().join("agora.idx"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("searchd: warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    for (q, first, last) in [("name", "title", "maker"), ("t", "title", "tag")] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("qualifier {q:?}"))
                    && w.contains(&format!("categories {first:?} and {last:?}"))
                    && w.contains(&format!("{last:?}, declared last, owns it"))),
            "{q}: {stderr}"
        );
    }

    let e = Engine::open(&dir.path().join("agora.idx"), Verify::Full).unwrap();
    let cats = |q: &str| -> Vec<String> { allocs(&e, q).into_iter().map(|(c, _)| c).collect() };
    assert_eq!(cats("name:gomez"), ["maker"]);
    assert_eq!(cats("t:honey"), ["tag"]);
    assert_eq!(cats("title:honey"), ["title"]);
}

/// A repeated id is one document whose words are merged, as Picky merges
/// them: each id once per word, and a word the repeated record adds puts
/// the id after the documents that had it already (Picky's order, not the
/// ascending one), in exact and partial lists alike.
#[test]
fn repeated_ids_are_merged_in_pickys_order() {
    let def = "name = \"x\"\n[source]\npath = \"d.jsonl\"\nformat = \"jsonl\"\n\
               [[category]]\nname = \"t\"\npartial = { kind = \"substring\", from = 1 }\n";
    let f = Fixture::new(&[
        ("index.toml", def),
        (
            "d.jsonl",
            "{\"id\": 1, \"t\": \"alpha beta\"}\n{\"id\": 2, \"t\": \"beta gamma\"}\n\
             {\"id\": 1, \"t\": \"gamma beta alpha\"}\n{\"id\": 3, \"t\": \"gamma\"}\n",
        ),
    ]);
    let e = f.build().unwrap();
    assert_eq!(e.documents(), 3);
    let ids = |q: &str| answer(&e, q)["allocations"][0][4].clone();
    assert_eq!(ids("beta\""), serde_json::json!([1, 2]));
    // gamma: document 2 first, then the merged 1, then 3.
    assert_eq!(ids("gamma\""), serde_json::json!([2, 1, 3]));
    assert_eq!(ids("gam"), serde_json::json!([2, 1, 3]));
    assert_eq!(ids("alpha gamma"), serde_json::json!([1]));
    assert_eq!(
        answer(&e, "gamma\"")["allocations"][0][1],
        serde_json::json!(1.099)
    );
}

const PLACES: &str = "name = \"places\"\n[source]\npath = \"p.csv\"\nformat = \"csv\"\n[indexing]\nremove = '[.]'\n[[category]]\nname = \"name\"\n[[category]]\nname = \"height\"\nranged = { range = 2, precision = 1 }\n";

#[test]
fn ranged_categories_find_numbers_within_their_range() {
    // range 2, precision 1: grid 2 / 1.5, the anchor moved to -2 - grid;
    // 12.5 is cell 11 (keys 10..=12), 14 cell 13, 20 cell 17, 13.1 cell 12.
    let f = Fixture::new(&[
        ("index.toml", PLACES),
        (
            "p.csv",
            "id,name,height\n1,anna,12.5\n2,bob,14\n3,carl,20\n4,dora,13.1\n5,eve,n/a\n",
        ),
    ]);
    let e = f.build().unwrap();
    // The index's indexing (which removes '.') is not a ranged category's:
    // 12.5 stays 12.5 (Picky's default tokenizer).
    let near = |q: &str| -> Vec<serde_json::Value> {
        allocs(&e, q)
            .into_iter()
            .filter(|(c, _)| c == "height")
            .flat_map(|(_, ids)| ids)
            .collect()
    };
    assert_eq!(near("height:13"), [1, 2, 4]);
    assert_eq!(near("height:19"), [3]);
    assert_eq!(near("height:16"), [2]);
    assert_eq!(near("height:40"), Vec::<serde_json::Value>::new());
    // Ruby's to_f: not a number is 0.0, so "n/a" and "abc" meet at 0.
    assert_eq!(near("height:abc"), [5]);
    // The allocation shows the word typed, not its cell.
    assert_eq!(
        answer(&e, "height:13")["allocations"][0][3],
        serde_json::json!([["height", "height:13", "13"]])
    );
}

#[test]
fn ranged_categories_are_checked() {
    let refused = |ranged: &str, needle: &str| {
        let def = PLACES.replace("ranged = { range = 2, precision = 1 }", ranged);
        let err = Fixture::new(&[("index.toml", &def), ("p.csv", "id,name,height\n")])
            .build()
            .unwrap_err();
        assert!(err.contains(needle), "{ranged}\n -> {err}");
    };
    refused(
        "ranged = { precision = 1 }",
        "category[1].ranged: takes one of range",
    );
    refused(
        "ranged = { range = 1, lat_radius_km = 2 }",
        "category[1].ranged: takes one of range",
    );
    refused(
        "ranged = { range = 0 }",
        "ranged.range: must be a positive number",
    );
    refused(
        "ranged = { lng_radius_km = -1 }",
        "ranged.lng_radius_km: must be a positive number",
    );
    refused(
        "ranged = { range = 1, precision = 65 }",
        "ranged.precision: must be at most 64",
    );
    refused(
        "ranged = { range = 1, anchor = nan }",
        "ranged.anchor: must be a finite number",
    );
    refused(
        "ranged = { range = 1 }\npartial = { kind = \"substring\" }",
        "category[1].partial: a ranged category",
    );
    refused(
        "ranged = { range = 1 }\nsimilarity = { kind = \"soundex\" }",
        "category[1].similarity: a ranged category",
    );
    refused(
        "ranged = { range = 1 }\nfacets = true",
        "category[1].facets: a ranged category",
    );
    // Picky's spelling gets a hint.
    refused("ranging = true", "ranged = { range = 2.5");
    // A value no grid cell holds is named.
    let f = Fixture::new(&[
        ("index.toml", PLACES),
        ("p.csv", "id,name,height\n1,a,1e400\n"),
    ]);
    let err = f.build().unwrap_err();
    assert!(
        err.contains("ranged category \"height\": \"1e400\" is not a number its grid can hold"),
        "{err}"
    );
}
