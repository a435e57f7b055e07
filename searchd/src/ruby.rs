//! Ruby's conversions, reproduced where Picky's clients can see them:
//! `String#to_i` for ids and paging parameters, `Float#to_s` and
//! `Float#round` for scores and durations, `String#downcase` for indexed
//! and searched words, and the json gem's string escaping.

use std::borrow::Cow;

/// Ruby's `String#to_i`: leading whitespace, an optional sign, then digits
/// (single underscores between digits allowed); anything else ends the
/// number. No digits gives 0. Saturates at the i64 range.
pub fn to_i(s: &str) -> i64 {
    to_i_checked(s.as_bytes()).unwrap_or_else(|| {
        let t = s.trim_start_matches([' ', '\t', '\n', '\x0B', '\x0C', '\r']);
        if t.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        }
    })
}

/// Ruby's `String#to_i` on bytes, `None` where Ruby would give a number
/// beyond the i64 range (a Bignum).
pub fn to_i_checked(b: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r') {
        i += 1;
    }
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    let mut saw_digit = false;
    while i < b.len() {
        match b[i] {
            d @ b'0'..=b'9' => {
                saw_digit = true;
                let d = i64::from(d - b'0');
                // Accumulate on the sign's side so that i64::MIN fits.
                value = value.checked_mul(10)?;
                value = if negative {
                    value.checked_sub(d)?
                } else {
                    value.checked_add(d)?
                };
            }
            b'_' if saw_digit && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => break,
        }
        i += 1;
    }
    Some(value)
}

/// Ruby's `Float#to_s`: the shortest representation that round-trips,
/// always with a `.` or an exponent (`1.0`, `7.260999999999999`, `9.1e-05`,
/// `1.0e+16`).
pub fn write_float(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    if x < 0.0 {
        out.push(b'-');
    }
    if let Some(micros) = whole_micros(x.abs()) {
        // The digits of `micros` are the shortest round-trip digits of
        // `x` (see `whole_micros`); no float formatting needed.
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(micros).as_bytes();
        let decpt = digits.len() as i32 - 6;
        let significant = digits.len() - digits.iter().rev().take_while(|&&c| c == b'0').count();
        write_decimal(&digits[..significant], decpt, out);
    } else {
        write_shortest(x.abs(), out);
    }
}

/// `x` (positive, finite) in Ruby's layout, from ryu's shortest digits.
fn write_shortest(x: f64, out: &mut Vec<u8>) {
    // ryu gives the shortest round-trip digits ("7.260999999999999",
    // "9.1e-5", "1e16"); take them apart into digits and exponent.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x).as_bytes();
    let (mantissa, exp) = match text.iter().position(|&c| c == b'e') {
        Some(i) => (&text[..i], parse_exponent(&text[i + 1..])),
        None => (text, 0),
    };
    let point = mantissa.iter().position(|&c| c == b'.');
    let int_len = point.unwrap_or(mantissa.len());
    let mut digits_buf = [0u8; 40];
    let mut nd = 0;
    for &c in mantissa.iter().filter(|&&c| c != b'.') {
        if nd < digits_buf.len() {
            digits_buf[nd] = c;
            nd += 1;
        }
    }
    // Strip leading zeros ("0.0001" -> "1") and trailing zeros ("1.0" -> "1"),
    // keeping track of where the decimal point falls.
    let lead = digits_buf[..nd].iter().take_while(|&&c| c == b'0').count();
    let mut end = nd;
    while end > lead + 1 && digits_buf[end - 1] == b'0' {
        end -= 1;
    }
    // Ruby's decpt: value = 0.DIGITS * 10^decpt.
    let decpt = exp + int_len as i32 - lead as i32;
    write_decimal(&digits_buf[lead..end], decpt, out);
}

/// `x` (positive) as a whole number of millionths, when that decimal is
/// exactly what `x` is nearest to, so that its digits are `x`'s shortest
/// round-trip representation: any decimal with fewer significant digits is
/// at least 1e-7 away from it, far more than half a unit in the last place
/// of any `x` below 1e6, so it cannot round to `x`; of those with as many
/// digits it is the closest. Scores (sums of 3-decimal weights) and
/// durations (rounded to 6 places) nearly always are such numbers.
fn whole_micros(x: f64) -> Option<u64> {
    if !(1e-6..1e6).contains(&x) {
        return None;
    }
    let m = (x * 1e6).round();
    // m < 1e12 < 2^53 is exact, and the division is correctly rounded.
    (m / 1e6 == x).then_some(m as u64)
}

fn parse_exponent(b: &[u8]) -> i32 {
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let e = digits.iter().fold(0i32, |e, &c| {
        e.saturating_mul(10).saturating_add(i32::from(c - b'0'))
    });
    if negative { -e } else { e }
}

/// Ruby's layout of a float's significant `digits` (no leading or trailing
/// zeros, at least one digit) with decimal exponent `decpt` (value =
/// 0.DIGITS * 10^decpt): plain between 1e-4 and 1e16, else `d.ddde+XX`.
fn write_decimal(digits: &[u8], decpt: i32, out: &mut Vec<u8>) {
    let nd = digits.len() as i32;
    if 0 < decpt && decpt <= 16 {
        if decpt >= nd {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', (decpt - nd) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[decpt as usize..]);
        }
    } else if -4 < decpt && decpt <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(digits);
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if nd > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        out.extend_from_slice(if e < 0 { b"e-" } else { b"e+" });
        let e = e.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    }
}

pub fn float_to_s(x: f64) -> String {
    let mut v = Vec::new();
    write_float(x, &mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// Ruby's `String#downcase`: every character's full Unicode lowercase
/// mapping (`İ` -> `i̇`, titlecase `ǅ` -> `ǆ`), one character at a time.
///
/// Rust's `str::to_lowercase` also applies Unicode's one context-dependent
/// rule, Final_Sigma: a capital sigma ending a word becomes `ς`. Ruby 3.1
/// has no such rule (`"ΟΔΟΣ".downcase == "οδοσ"`), so Picky indexes and
/// searches `οδοσ`, and so must we: mapping each character on its own does
/// exactly that, `Σ` always becoming `σ` (an `ς` already in the text stays).
/// Characters whose mapping Ruby 3.1's Unicode 13 tables do not have (ones
/// added since) are lowercased here and left as they are by Picky; that
/// difference is deliberate.
pub fn downcase(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        };
    }
    // Only a character that lowercases to something else changes the text
    // (`is_uppercase` would miss titlecase letters such as `ǅ`).
    let changes = |c: char| {
        let mut l = c.to_lowercase();
        l.next() != Some(c) || l.next().is_some()
    };
    let Some(first) = s.find(changes) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            // What `char::to_lowercase` gives too; spelled out because it
            // is the one place where `str::to_lowercase` differs.
            'Σ' => out.push('σ'),
            c => out.extend(c.to_lowercase()),
        }
    }
    Cow::Owned(out)
}

/// `Float#round(digits)` for the magnitudes Picky rounds (weights, seconds).
pub fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    let r = (x * s).round() / s;
    if r.is_finite() { r } else { x }
}

/// Appends `s` as a JSON string the way Ruby's json gem writes it: `"` and
/// `\` escaped, control characters as `\b \f \n \r \t` or `\u00xx`, `/` and
/// non-ASCII left as they are.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Nearly every string has nothing to escape: check all bytes without
    // branching per byte, then copy them at once.
    let plain = !bytes.iter().fold(false, |esc, &b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Ruby 3.1.2 answers for `s.downcase`.
    #[test]
    fn downcase_like_ruby() {
        for (s, ruby) in [
            ("ΟΔΟΣ", "οδοσ"),
            ("ΟΔΟΣ ΣΑΣ", "οδοσ σασ"),
            ("Σ", "σ"),
            ("ΣΣ", "σσ"),
            ("Οδός", "οδός"),
            ("ΟΔΌΣ.", "οδόσ."),
            ("ǅemal", "ǆemal"),
            ("ǄEMAL", "ǆemal"),
            ("İstanbul", "i\u{307}stanbul"),
            ("MÜLLER", "müller"),
            ("Alan", "alan"),
            ("alan", "alan"),
            ("", ""),
        ] {
            assert_eq!(downcase(s), ruby, "{s:?}");
        }
        // Deliberate difference: a letter of Unicode 14 (after Ruby 3.1's
        // tables), which Ruby leaves as it is.
        assert_eq!(downcase("\u{2C2F}"), "\u{2C5F}");
        assert!(matches!(downcase("σας"), Cow::Borrowed(_)));
        assert!(matches!(downcase("alan"), Cow::Borrowed(_)));
    }

    #[test]
    fn to_i_like_ruby() {
        for (s, v) in [
            ("3x", 3),
            ("2.9", 2),
            ("abc", 0),
            ("-1", -1),
            ("  1", 1),
            ("+7", 7),
            ("1_000", 1000),
            ("1__0", 1),
            ("_1", 0),
            ("", 0),
            ("- 1", 0),
            ("99999999999999999999999", i64::MAX),
            ("-99999999999999999999999", i64::MIN),
        ] {
            assert_eq!(to_i(s), v, "{s:?}");
        }
    }

    #[test]
    fn floats_like_ruby() {
        for (x, s) in [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (0.693, "0.693"),
            (7.260999999999999, "7.260999999999999"),
            (9.1e-05, "9.1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1.0e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (0.000217, "0.000217"),
            (1.5e-7, "1.5e-07"),
        ] {
            assert_eq!(float_to_s(x), s, "{x}");
        }
    }

    /// The millionths shortcut gives exactly ryu's digits.
    #[test]
    fn whole_micros_agree_with_ryu() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        let mut values: Vec<f64> = (1..20_000).map(|m| m as f64 / 1e6).collect();
        for _ in 0..200_000 {
            let r = next();
            values.push((r % 1_000_000_000_000) as f64 / 1e6);
            values.push((r % 100_000) as f64 / 1e3 + (r >> 40) as f64 % 4.0);
            values.push(((r % 20_000) as f64 / 1e3 + (r >> 32) as f64 % 3000.0 / 1e3) * 3.0);
            values.push(f64::from_bits(r) % 1e6);
        }
        for x in values {
            if !x.is_finite() || x <= 0.0 || whole_micros(x).is_none() {
                continue;
            }
            checked += 1;
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            write_float(x, &mut fast);
            write_shortest(x, &mut slow);
            assert_eq!(fast, slow, "{x:e}");
        }
        assert!(checked > 400_000, "{checked}");
    }

    #[test]
    fn json_strings_like_the_json_gem() {
        let mut v = Vec::new();
        write_json_str("a\"b\\c/d\u{1}é\n", &mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "\"a\\\"b\\\\c/d\\u0001é\\n\""
        );
    }
}
