//! Request parameters, parsed the way Picky's stack parses them (Rack 2.2's
//! `parse_nested_query` under Sinatra 3), so that every URL an existing
//! client sends means the same thing here.
//!
//! What Rack does, and so what [`parse`] does:
//! - the query string is split at `&` and `;`, each separator swallowing the
//!   spaces after it; empty pieces are ignored;
//! - each piece is `key=value` (split at the first `=`; no `=` gives a `nil`
//!   value); both halves are %-decoded with `+` as a space, and a `%` not
//!   followed by two hex digits refuses the whole query string;
//! - keys are structured: `query[]=x` appends to an array, `query[a]=x`
//!   fills a hash, nested forms combine (`query[][a]=x`), and a key used
//!   both as a string and as an array or hash refuses the query string;
//! - the last value of a repeated key wins.
//!
//! Picky then reads `params[:query]` and converts it with Ruby's `to_s`: an
//! array or hash is printed the way Ruby 3.1 prints it (`["x"]`,
//! `{"a"=>"x"}`) and that text is what gets tokenized. `ids` and `offset` go
//! through `String#to_i`. [`search_params`] does the same, except where
//! Picky fails (see PICKY.md): it returns an error for the server to answer
//! 400 with, and never panics.
//!
//! Decoded values are bytes, not text: Rack does not validate UTF-8 in
//! values (`ids=%E9` is a valid `0`), only in keys. `tests/rack/` holds the
//! answers of the real Rack for a few hundred query strings.

use std::borrow::Cow;

/// `ids` when the request has none: Picky's default page size.
pub const DEFAULT_IDS: i64 = 20;
/// `offset` when the request has none.
pub const DEFAULT_OFFSET: i64 = 0;
/// Rack's `params_limit`: a query string with this many `&`/`;` separators
/// or more is refused.
pub const MAX_PARAMS: usize = 4096;
/// Rack's `param_depth_limit`: how deeply `a[b][c]...` may nest.
pub const MAX_DEPTH: usize = 100;

/// A decoded parameter value, shaped like Rack's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// A key without `=` (`?query`): Ruby's `nil`.
    Nil,
    Str(Cow<'a, [u8]>),
    List(Vec<Value<'a>>),
    Map(Map<'a>),
}

impl Value<'_> {
    /// Ruby's class name, as Rack's error messages show it.
    fn class_name(&self) -> &'static str {
        match self {
            Value::Nil => "NilClass",
            Value::Str(_) => "String",
            Value::List(_) => "Array",
            Value::Map(_) => "Rack::QueryParser::Params",
        }
    }

    /// Ruby truthiness for `||=`: only `nil` is false here.
    fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

/// An insertion-ordered map, like a Ruby hash: reassigning a key keeps its
/// position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Map<'a> {
    entries: Vec<(Cow<'a, [u8]>, Value<'a>)>,
}

impl<'a> Map<'a> {
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value<'a>> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    fn insert(&mut self, key: Cow<'a, [u8]>, value: Value<'a>) {
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Takes a value out (its slot is left `nil`, position kept).
    pub fn take(&mut self, key: &[u8]) -> Option<Value<'a>> {
        self.get_mut(key).map(|v| std::mem::replace(v, Value::Nil))
    }

    /// Ruby's `params[k] ||= default`: the slot for `k`, filled with
    /// `default()` when it is missing or `nil`.
    fn or_insert_with(
        &mut self,
        key: Cow<'a, [u8]>,
        default: impl FnOnce() -> Value<'a>,
    ) -> &mut Value<'a> {
        let i = match self.entries.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                if self.entries[i].1.is_nil() {
                    self.entries[i].1 = default();
                }
                i
            }
            None => {
                self.entries.push((key, default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a query string was refused as a whole (Rack raises for these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A `%` not followed by two hex digits (Rack's message, with the raw
    /// key or value).
    #[error("invalid %-encoding ({raw})")]
    InvalidEncoding { raw: String },
    /// A key used both as a plain value and as an array or hash.
    #[error("expected {expected} (got {got}) for parameter `{key}`")]
    TypeConflict {
        key: String,
        expected: &'static str,
        got: &'static str,
    },
    /// A key that is not valid UTF-8 after %-decoding.
    #[error("a parameter name is not valid UTF-8")]
    NameNotUtf8,
    #[error("too many parameters: {count} (at most {MAX_PARAMS})")]
    TooMany { count: usize },
    #[error("parameter names nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Parses a raw query string (without the `?`) like Rack's
/// `parse_nested_query(qs, '&;')`.
pub fn parse(qs: &[u8]) -> Result<Map<'_>, ParamsError> {
    let separators = qs.iter().filter(|&&b| b == b'&' || b == b';').count();
    if separators >= MAX_PARAMS {
        return Err(ParamsError::TooMany {
            count: separators + 1,
        });
    }
    let mut params = Map::default();
    for piece in pieces(qs) {
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], Some(&piece[i + 1..])),
            None => (piece, None),
        };
        let k = unescape(k)?;
        let v = v.map(unescape).transpose()?;
        if std::str::from_utf8(&k).is_err() {
            // Rack matches a regex against the key, which Ruby refuses to
            // do on a broken string.
            return Err(ParamsError::NameNotUtf8);
        }
        let v = v.map_or(Value::Nil, Value::Str);
        normalize(&mut params, k, v, MAX_DEPTH)?;
    }
    Ok(params)
}

/// Splits at `&`/`;`; each separator also eats the spaces after it (Rack's
/// `/[&;] */`).
fn pieces(qs: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(qs);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.iter().position(|&b| b == b'&' || b == b';') {
            Some(i) => {
                let mut j = i + 1;
                while s.get(j) == Some(&b' ') {
                    j += 1;
                }
                rest = Some(&s[j..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Ruby's `URI.decode_www_form_component`: `+` is a space, `%XX` a byte,
/// and any other `%` an error. Borrows when there is nothing to decode.
pub fn unescape(s: &[u8]) -> Result<Cow<'_, [u8]>, ParamsError> {
    let Some(first) = s.iter().position(|&b| b == b'%' || b == b'+') else {
        return Ok(Cow::Borrowed(s));
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        match s[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    return Err(ParamsError::InvalidEncoding {
                        raw: String::from_utf8_lossy(s).into_owned(),
                    });
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// What one `normalize_params` call returns to its caller: the hash it was
/// given (now updated), or a value that replaces it.
enum Normalized<'a> {
    Same,
    Other(Value<'a>),
}

fn is_bracket(b: u8) -> bool {
    b == b'[' || b == b']'
}

/// A sub-slice of a name, still borrowing from the query string when the
/// name does.
fn sub<'a>(name: &Cow<'a, [u8]>, range: std::ops::Range<usize>) -> Cow<'a, [u8]> {
    match name {
        Cow::Borrowed(b) => Cow::Borrowed(&b[range]),
        Cow::Owned(o) => Cow::Owned(o[range].to_vec()),
    }
}

/// Rack's `normalize_params`, step by step (its regexes are spelled out
/// below). `name` is already known to be valid UTF-8.
fn normalize<'a>(
    params: &mut Map<'a>,
    name: Cow<'a, [u8]>,
    v: Value<'a>,
    depth: usize,
) -> Result<Normalized<'a>, ParamsError> {
    if depth == 0 {
        return Err(ParamsError::TooDeep);
    }
    // %r(\A[\[\]]*([^\[\]]+)\]*): k is the first run of non-brackets
    // after the leading brackets; `after` follows the `]`s closing it.
    let lead = name.iter().take_while(|&&b| is_bracket(b)).count();
    let k_len = name[lead..].iter().take_while(|&&b| !is_bracket(b)).count();
    if k_len == 0 {
        return Ok(if name.as_ref() == b"[]" && !v.is_nil() {
            Normalized::Other(Value::List(vec![v]))
        } else {
            Normalized::Other(Value::Nil)
        });
    }
    let k_end = lead + k_len;
    let closing = name[k_end..].iter().take_while(|&&b| b == b']').count();
    let after_start = k_end + closing;
    let after = &name[after_start..];

    if after.is_empty() {
        params.insert(sub(&name, lead..k_end), v);
    } else if after == b"[" {
        params.insert(name, v);
    } else if after == b"[]" {
        let slot = params.or_insert_with(sub(&name, lead..k_end), || Value::List(Vec::new()));
        let Value::List(list) = slot else {
            return Err(conflict(&name[lead..k_end], "Array", slot));
        };
        list.push(v);
    } else if let Some(child) = array_child_key(after) {
        let child = sub(&name, after_start + child.start..after_start + child.end);
        let slot = params.or_insert_with(sub(&name, lead..k_end), || Value::List(Vec::new()));
        let Value::List(list) = slot else {
            return Err(conflict(&name[lead..k_end], "Array", slot));
        };
        match list.last_mut() {
            Some(Value::Map(last)) if !has_key(last, &child) => {
                normalize(last, child, v, depth - 1)?;
            }
            _ => {
                let mut fresh = Map::default();
                let value = match normalize(&mut fresh, child, v, depth - 1)? {
                    Normalized::Same => Value::Map(fresh),
                    Normalized::Other(x) => x,
                };
                list.push(value);
            }
        }
    } else {
        let after = sub(&name, after_start..name.len());
        let slot = params.or_insert_with(sub(&name, lead..k_end), || Value::Map(Map::default()));
        let Value::Map(inner) = slot else {
            return Err(conflict(&name[lead..k_end], "Hash", slot));
        };
        let mut inner = std::mem::take(inner);
        // On error the whole parse is abandoned, so the slot may stay empty.
        *slot = match normalize(&mut inner, after, v, depth - 1)? {
            Normalized::Same => Value::Map(inner),
            Normalized::Other(x) => x,
        };
    }
    Ok(Normalized::Same)
}

fn conflict(k: &[u8], expected: &'static str, got: &Value<'_>) -> ParamsError {
    ParamsError::TypeConflict {
        key: String::from_utf8_lossy(k).into_owned(),
        expected,
        got: got.class_name(),
    }
}

/// Lines of `s` as Ruby's `^`/`$` see them: (start, end) of each line, the
/// end excluding its `\n`.
fn lines(s: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let st = start?;
        match s[st..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                start = Some(st + i + 1);
                Some((st, st + i))
            }
            None => {
                start = None;
                Some((st, s.len()))
            }
        }
    })
}

/// Rack's `after =~ %r(^\[\]\[([^\[\]]+)\]$) || after =~ %r(^\[\](.+)$)`,
/// returning `$1`. `^` and `$` are Ruby line anchors and `.` stops at a
/// newline, so a key with `%0A` in it is matched line by line, like Ruby.
fn array_child_key(after: &[u8]) -> Option<std::ops::Range<usize>> {
    // First form: at a line start, `[][`, then non-brackets (newlines
    // included), then `]` at a line end.
    for (st, _) in lines(after) {
        let s = &after[st..];
        if let Some(rest) = s.strip_prefix(b"[][") {
            let n = rest.iter().take_while(|&&b| !is_bracket(b)).count();
            let end_ok = matches!(rest.get(n + 1), None | Some(b'\n'));
            if n > 0 && rest.get(n) == Some(&b']') && end_ok {
                return Some(st + 3..st + 3 + n);
            }
        }
    }
    // Second form: `[]` at a line start, then the rest of that line (at
    // least one character).
    for (st, en) in lines(after) {
        let line = &after[st..en];
        if line.starts_with(b"[]") && line.len() > 2 {
            return Some(st + 2..en);
        }
    }
    None
}

/// Rack's `params_hash_has_key?`: whether the bracket path `key` already
/// exists in `map`.
fn has_key(map: &Map<'_>, key: &[u8]) -> bool {
    if key.windows(2).any(|w| w == b"[]") {
        return false;
    }
    let mut current: Option<&Map<'_>> = Some(map);
    for part in key.split(|&b| is_bracket(b)).filter(|p| !p.is_empty()) {
        let Some(m) = current else { return false };
        match m.get(part) {
            Some(Value::Map(inner)) => current = Some(inner),
            Some(_) => current = None,
            None => return false,
        }
    }
    true
}

// --- what Picky does with the parameters -----------------------------------

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
    crate::ruby::to_i_checked(b)
}

// --- Ruby's inspect, for array and hash queries ----------------------------

/// Appends Ruby 3.1's `inspect` of `v` (UTF-8 locale): `nil`, `"str"`,
/// `["a", nil]`, `{"k"=>"v"}`.
pub fn inspect(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"nil"),
        Value::Str(s) => inspect_str(s, out),
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
                inspect_str(k, out);
                out.extend_from_slice(b"=>");
                inspect(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Ruby's `String#inspect` for a UTF-8 string: quotes, backslash escapes for
/// `"`, `\`, `#{`/`#$`/`#@` and control characters, `\xNN` for each byte of
/// an invalid sequence, `\uXXXX` for characters Ruby does not print.
///
/// Ruby prints every *assigned* printable character as is; telling assigned
/// from unassigned code points would need the Unicode 13 tables, so here
/// only controls, line/paragraph separators and noncharacters are escaped
/// (an unassigned code point prints raw instead of as `\u....`; the
/// tokenizer drops both, so only the `u....` word differs).
fn inspect_str(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid();
        let mut chars = valid.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let named = match c {
                '"' => Some(b'"'),
                '\\' => Some(b'\\'),
                '\n' => Some(b'n'),
                '\r' => Some(b'r'),
                '\t' => Some(b't'),
                '\x0C' => Some(b'f'),
                '\x0B' => Some(b'v'),
                '\x08' => Some(b'b'),
                '\x07' => Some(b'a'),
                '\x1B' => Some(b'e'),
                _ => None,
            };
            if let Some(e) = named {
                out.push(b'\\');
                out.push(e);
            } else if c == '#' && matches!(chars.peek(), Some((_, '{' | '$' | '@'))) {
                out.extend_from_slice(b"\\#");
            } else if printable(c) {
                out.extend_from_slice(&valid.as_bytes()[i..i + c.len_utf8()]);
            } else {
                let code = c as u32;
                if code < 0x10000 {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[((code >> shift) & 0xF) as usize]);
                    }
                } else {
                    out.extend_from_slice(format!("\\u{{{code:X}}}").as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            out.extend_from_slice(b"\\x");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        }
    }
    out.push(b'"');
}

/// Ruby's (Onigmo's) idea of a printable character, minus the unassigned
/// code points (see [`inspect_str`]). U+0085 counts as printable there.
fn printable(c: char) -> bool {
    let code = c as u32;
    !(code < 0x20
        || (0x7F..=0x9F).contains(&code) && code != 0x85
        || code == 0x2028
        || code == 0x2029
        || (0xFDD0..=0xFDEF).contains(&code)
        || code & 0xFFFE == 0xFFFE)
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

    #[test]
    fn line_anchors_in_keys() {
        // Ruby's `^`/`$` match at newlines inside the key.
        assert_eq!(array_child_key(b"x\n[][a]"), Some(5..6));
        assert_eq!(array_child_key(b"[]a\nb"), Some(2..3));
        assert_eq!(array_child_key(b"[][a\nb]"), Some(3..6));
        assert_eq!(array_child_key(b"[a]"), None);
    }
}
