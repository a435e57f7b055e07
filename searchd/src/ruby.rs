//! Ruby's conversions, reproduced where Picky's clients can see them:
//! `String#to_i` for ids and paging parameters, `Float#to_s` and
//! `Float#round` for scores and durations, and the json gem's string escaping.

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
    // ryu gives the shortest round-trip digits ("7.260999999999999",
    // "9.1e-5", "1e16"); take them apart into digits and exponent.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits_buf = [0u8; 40];
    let mut nd = 0;
    for &c in int_part.as_bytes().iter().chain(frac_part.as_bytes()) {
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
    let digits = std::str::from_utf8(&digits_buf[lead..end]).unwrap_or("0");
    let exp = exp + int_part.len() as i32 - 1 - lead as i32;
    // Ruby's decpt: value = 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    if x < 0.0 {
        out.push(b'-');
    }
    let nd = digits.len() as i32;
    if 0 < decpt && decpt <= 16 {
        if decpt >= nd {
            out.extend_from_slice(digits.as_bytes());
            out.extend(std::iter::repeat_n(b'0', (decpt - nd) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits.as_bytes()[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[decpt as usize..]);
        }
    } else if -4 < decpt && decpt <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(digits.as_bytes());
    } else {
        out.push(digits.as_bytes()[0]);
        out.push(b'.');
        if nd > 1 {
            out.extend_from_slice(&digits.as_bytes()[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        out.extend_from_slice(
            format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()).as_bytes(),
        );
    }
}

pub fn float_to_s(x: f64) -> String {
    let mut v = Vec::new();
    write_float(x, &mut v);
    String::from_utf8(v).unwrap_or_default()
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
    out.push(b'"');
    let bytes = s.as_bytes();
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
