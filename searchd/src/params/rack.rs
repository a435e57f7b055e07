//! Rack 2.2's `parse_nested_query(qs, '&;')`, which Sinatra 3 hands Picky
//! its parameters with; [`parse`] does what it does:
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
//! Decoded values are bytes, not text: Rack does not validate UTF-8 in
//! values (`ids=%E9` is a valid `0`), only in keys. `tests/rack/` holds the
//! answers of the real Rack for a few hundred query strings.
//!
//! What the parameters mean to Picky is the parent module's business.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_anchors_in_keys() {
        // Ruby's `^`/`$` match at newlines inside the key.
        assert_eq!(array_child_key(b"x\n[][a]"), Some(5..6));
        assert_eq!(array_child_key(b"[]a\nb"), Some(2..3));
        assert_eq!(array_child_key(b"[][a\nb]"), Some(3..6));
        assert_eq!(array_child_key(b"[a]"), None);
    }
}
