//! Request parameters, parsed the way Picky's stack parses them, so that
//! every URL an existing client sends means the same thing here: first
//! Rack 2.2's `parse_nested_query` under Sinatra 3 (`rack.rs`: the query
//! string into keys and values), then what Picky makes of those.
//!
//! Picky reads `params[:query]` and converts it with Ruby's `to_s`: an
//! array or hash is printed the way Ruby 3.1 prints it (`["x"]`,
//! `{"a"=>"x"}`) and that text is what gets tokenized. `ids` and `offset` go
//! through `String#to_i`. [`search_params`] does the same, except where
//! Picky fails (see PICKY.md): it returns an error for the server to answer
//! 400 with, and never panics.

mod rack;

use std::borrow::Cow;

pub use rack::{MAX_DEPTH, MAX_PARAMS, Map, ParamsError, Value, parse, unescape};

use crate::ruby;

/// `ids` when the request has none: Picky's default page size.
pub const DEFAULT_IDS: i64 = 20;
/// `offset` when the request has none.
pub const DEFAULT_OFFSET: i64 = 0;

/// The parameters of one search request, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParams<'a> {
    pub query: Cow<'a, str>,
    pub ids: i64,
    pub offset: i64,
}

/// Why a search request's parameters were refused (each answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("the query parameter is not valid UTF-8 after %-decoding")]
    QueryNotUtf8,
    #[error("parameter `{name}` must be an integer, not {kind}")]
    NotAnInteger {
        name: &'static str,
        kind: &'static str,
    },
    #[error("parameter `{name}` is out of range: {value} does not fit in a signed 64-bit integer")]
    OutOfRange { name: &'static str, value: String },
}

impl ParamError {
    /// The machine-readable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ParamError::Params(ParamsError::InvalidEncoding { .. }) => "invalid_encoding",
            ParamError::Params(ParamsError::TooMany { .. }) => "too_many_parameters",
            ParamError::Params(_) => "invalid_parameters",
            ParamError::QueryNotUtf8 => "invalid_utf8",
            ParamError::NotAnInteger { .. } => "invalid_integer",
            ParamError::OutOfRange { .. } => "integer_out_of_range",
        }
    }
}

/// Parses a search request's query string into what Picky would search for.
///
/// Deliberate differences from Picky (see PICKY.md): a missing or `nil`
/// `query` searches for nothing (Picky: 500); a `query` that is not UTF-8,
/// `ids`/`offset` given as arrays or hashes, and integers beyond 64 bits
/// are refused with an error (Picky: 500).
pub fn search_params(qs: &[u8]) -> Result<SearchParams<'_>, ParamError> {
    let mut params = parse(qs)?;
    let query = match params.take(b"query") {
        None | Some(Value::Nil) => Cow::Borrowed(""),
        Some(Value::Str(Cow::Borrowed(b))) => {
            Cow::Borrowed(std::str::from_utf8(b).map_err(|_| ParamError::QueryNotUtf8)?)
        }
        Some(Value::Str(Cow::Owned(b))) => {
            Cow::Owned(String::from_utf8(b).map_err(|_| ParamError::QueryNotUtf8)?)
        }
        Some(v) => {
            let mut out = Vec::new();
            inspect(&v, &mut out);
            // `inspect` escapes every invalid byte, so this cannot fail.
            Cow::Owned(String::from_utf8_lossy(&out).into_owned())
        }
    };
    let ids = integer(&params, "ids", DEFAULT_IDS)?;
    let offset = integer(&params, "offset", DEFAULT_OFFSET)?;
    Ok(SearchParams { query, ids, offset })
}

/// The parameters of a facets request (`GET /<index>/facets/<category>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetParams<'a> {
    /// `filter`: a query whose results the counts are taken over (absent:
    /// every document; empty: still a filter, as in Picky).
    pub filter: Option<Cow<'a, str>>,
    /// `at_least` (Ruby's `to_i`): leave out words counted fewer times.
    pub at_least: Option<i64>,
    /// `counts=false`: the words only, as a JSON array.
    pub counts: bool,
}

/// Parses a facets request's query string.
pub fn facet_params(qs: &[u8]) -> Result<FacetParams<'_>, ParamError> {
    let mut params = parse(qs)?;
    let filter = match params.take(b"filter") {
        None | Some(Value::Nil) => None,
        Some(Value::Str(Cow::Borrowed(b))) => Some(Cow::Borrowed(
            std::str::from_utf8(b).map_err(|_| ParamError::QueryNotUtf8)?,
        )),
        Some(Value::Str(Cow::Owned(b))) => Some(Cow::Owned(
            String::from_utf8(b).map_err(|_| ParamError::QueryNotUtf8)?,
        )),
        Some(v) => {
            let mut out = Vec::new();
            inspect(&v, &mut out);
            Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
        }
    };
    let at_least = match params.get(b"at_least") {
        None | Some(Value::Nil) => None,
        Some(_) => Some(integer(&params, "at_least", 0)?),
    };
    let counts = !matches!(params.get(b"counts"), Some(Value::Str(s)) if s.as_ref() == b"false");
    Ok(FacetParams {
        filter,
        at_least,
        counts,
    })
}

/// Picky's `(params[name] || default).to_i`.
fn integer(params: &Map<'_>, name: &'static str, default: i64) -> Result<i64, ParamError> {
    match params.get(name.as_bytes()) {
        None | Some(Value::Nil) => Ok(default),
        Some(Value::Str(s)) => to_i(s).ok_or_else(|| ParamError::OutOfRange {
            name,
            value: String::from_utf8_lossy(s).into_owned(),
        }),
        Some(v) => Err(ParamError::NotAnInteger {
            name,
            kind: match v {
                Value::List(_) => "an array",
                _ => "a hash",
            },
        }),
    }
}

/// Ruby's `String#to_i` on bytes, `None` where Ruby would give a number
/// beyond the i64 range (a Bignum, which makes Picky fail).
pub fn to_i(b: &[u8]) -> Option<i64> {
    ruby::to_i_checked(b)
}

/// Appends Ruby 3.1's `inspect` of `v` (UTF-8 locale): `nil`, `"str"`,
/// `["a", nil]`, `{"k"=>"v"}`.
pub fn inspect(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"nil"),
        Value::Str(s) => ruby::write_inspect(s, out),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                inspect(item, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                ruby::write_inspect(k, out);
                out.extend_from_slice(b"=>");
                inspect(item, out);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(qs: &str) -> Result<SearchParams<'_>, ParamError> {
        search_params(qs.as_bytes())
    }

    fn query(qs: &str) -> String {
        q(qs).unwrap().query.into_owned()
    }

    #[test]
    fn plain_parameters() {
        let p = q("query=alan+peter&ids=5&offset=2").unwrap();
        assert_eq!(p.query, "alan peter");
        assert_eq!((p.ids, p.offset), (5, 2));
        assert!(matches!(p.query, Cow::Owned(_)));
        assert!(matches!(
            q("query=alan").unwrap().query,
            Cow::Borrowed("alan")
        ));
    }

    #[test]
    fn defaults_and_empty_values() {
        let p = q("").unwrap();
        assert_eq!((p.query.as_ref(), p.ids, p.offset), ("", 20, 0));
        // `ids=` is "".to_i = 0; `ids` alone is nil, so the default.
        assert_eq!(q("query=a&ids=").unwrap().ids, 0);
        assert_eq!(q("query=a&ids").unwrap().ids, 20);
        assert_eq!(query("query"), "");
        assert_eq!(query("Query=alan"), "");
    }

    #[test]
    fn separators_and_repeats() {
        assert_eq!(q("query=alan;ids=1").unwrap().ids, 1);
        assert_eq!(q("query=alan&&ids=1").unwrap().ids, 1);
        assert_eq!(q("query=alan&; ids=1").unwrap().ids, 1);
        assert_eq!(query("query=alan&query=peter"), "peter");
        assert_eq!(query("&query=alan"), "alan");
        assert_eq!(query("query==alan"), "=alan");
        assert_eq!(query("%71uery=al%61n"), "alan");
        assert_eq!(query("query]=alan"), "alan");
        assert_eq!(query("query[=alan"), "");
    }

    #[test]
    fn arrays_and_hashes_print_like_ruby() {
        assert_eq!(query("query[]=alan"), r#"["alan"]"#);
        assert_eq!(query("query[]=alan&query[]=peter"), r#"["alan", "peter"]"#);
        assert_eq!(query("query[a]=alan"), r#"{"a"=>"alan"}"#);
        assert_eq!(query("query[][a]=x"), r#"[{"a"=>"x"}]"#);
        assert_eq!(
            query("query[][a]=1&query[][b]=2"),
            r#"[{"a"=>"1", "b"=>"2"}]"#
        );
        assert_eq!(
            query("query[][a]=1&query[][a]=2"),
            r#"[{"a"=>"1"}, {"a"=>"2"}]"#
        );
        assert_eq!(query("query[a][b][c]=x"), r#"{"a"=>{"b"=>{"c"=>"x"}}}"#);
        assert_eq!(query("query[a][]=x"), r#"{"a"=>["x"]}"#);
        assert_eq!(query("query[][]=x"), r#"[["x"]]"#);
        assert_eq!(query("query[]]=x"), "[nil]");
        assert_eq!(query("query[]"), "[nil]");
        assert_eq!(query("query[[]]=x"), "");
        assert_eq!(query("query[]=b&query=a"), "a");
        assert_eq!(
            query("query[]=%E9&query[]=a%22%5C%23%7B"),
            r#"["\xE9", "a\"\\\#{"]"#
        );
        assert_eq!(
            query("query[]=%01%7F%C2%85%E2%80%A8%0A"),
            "[\"\\u0001\\u007F\u{85}\\u2028\\n\"]"
        );
    }

    #[test]
    fn refusals() {
        let code = |s: &str| q(s).unwrap_err().code();
        assert_eq!(code("query=%"), "invalid_encoding");
        assert_eq!(code("query=alan%2"), "invalid_encoding");
        assert_eq!(code("foo=%zz&query=a"), "invalid_encoding");
        assert_eq!(code("query=%E9"), "invalid_utf8");
        assert_eq!(code("%E9=x"), "invalid_parameters");
        assert_eq!(code("query=a&query[]=b"), "invalid_parameters");
        assert_eq!(code("foo=a&foo[b]=c"), "invalid_parameters");
        assert_eq!(code("query=a&ids[]=5"), "invalid_integer");
        assert_eq!(code("query=a&offset[x]=5"), "invalid_integer");
        assert_eq!(
            code("query=a&ids=9223372036854775808"),
            "integer_out_of_range"
        );
        assert_eq!(
            code("query=a&offset=-9223372036854775809"),
            "integer_out_of_range"
        );
        let many = "a&".repeat(MAX_PARAMS);
        assert_eq!(code(&many), "too_many_parameters");
        let deep = format!("query{}=x", "[a]".repeat(MAX_DEPTH));
        assert_eq!(code(&deep), "invalid_parameters");
        assert_eq!(
            q("query=alan%").unwrap_err().to_string(),
            "invalid %-encoding (alan%)"
        );
    }

    #[test]
    fn integers_like_ruby() {
        for (s, v) in [
            ("3x", Some(3)),
            ("2.9", Some(2)),
            ("abc", Some(0)),
            ("-1", Some(-1)),
            ("  1", Some(1)),
            ("1_0", Some(10)),
            ("1__0", Some(1)),
            ("", Some(0)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("00000000000000000000000000001", Some(1)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("99999999999999999999", None),
            ("\u{e9}1", Some(0)),
        ] {
            assert_eq!(to_i(s.as_bytes()), v, "{s:?}");
        }
    }
}
