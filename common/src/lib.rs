//! What every kiln binary shares, and nothing else: [`write_atomically`],
//! [`sha256_file`] / [`hex`], and [`parse_duration`], the one duration
//! syntax of every flag (`500ms`, `10s`, `5m`, `2h`, `7d`, plain seconds).
//! No async, no I/O beyond the file named: searchd links it statically.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Writes `bytes` to a temporary sibling of `path` (`.NAME.tmp.PID`),
/// fsyncs it, renames it into place and fsyncs the directory, so readers
/// see the old file or the whole new one, never a torn one. A bare file
/// name is written in the current directory. On failure the temporary
/// file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        ));
    };
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Persists a rename; not every file system supports syncing a directory.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Hex sha256 of a file, streamed, and its length in bytes.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = BufReader::new(File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((hex(&h.finalize()), n))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The longest duration a flag takes: ten years.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// `500ms`, `10s`, `1.5s`, `5m`, `2h`, `7d`, or plain seconds (`30`,
/// `0.25`); at most [`MAX_DURATION`]. The error says what was expected,
/// for clap to print after the flag's name.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86_400.0)
    } else {
        (t, 1.0)
    };
    let expected = || format!("{s:?}: expected a duration like 500ms, 10s, 5m, 2h or 7d");
    let n = num.trim();
    // Digits and one dot only: no signs, exponents, `inf` or `NaN`.
    if n.is_empty()
        || !n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || n.matches('.').count() > 1
    {
        return Err(expected());
    }
    let v: f64 = n.parse().map_err(|_| expected())?;
    let secs = v * scale;
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("{s:?}: longer than ten years"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn durations_refuse_what_is_not_one() {
        for bad in [
            "", "s", "h", "2w", "-1s", "+1s", "1e3", "inf", "NaN", "1.2.3s", "ten", "5 m m",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("expected a duration"), "{bad}: {e}");
        }
        assert!(parse_duration("3651d").unwrap_err().contains("ten years"));
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_take_bare_names() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.json");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        // A bare name is relative to the current directory (the parent is
        // "", which is not a directory to open).
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(t.path()).unwrap();
        let r = write_atomically(Path::new("bare.txt"), b"x");
        std::env::set_current_dir(cwd).unwrap();
        r.unwrap();
        assert_eq!(std::fs::read(t.path().join("bare.txt")).unwrap(), b"x");
        // A failure leaves nothing behind.
        let missing = t.path().join("no/such/dir/f");
        assert!(write_atomically(&missing, b"x").is_err());
        assert!(write_atomically(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn file_hashes_are_streamed_sha256() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
