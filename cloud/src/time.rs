//! Wall-clock helpers without a date library: kiln only needs "now" and
//! RFC 3339 in UTC for tags and manifests.
//!
//! [`now_ms`] is the clock roll's decisions run on: Unix milliseconds read
//! through tokio's clock, so a test that pauses time (`tokio::time::pause`)
//! moves it with `tokio::time::advance` and nothing sleeps for real.
//! Outside a paused runtime it is the wall clock.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in milliseconds on tokio's clock: the wall clock when this
/// process first asked, plus however far tokio's (possibly paused)
/// clock moved since. Two processes agree to within their start-up skew.
/// (One paused runtime per process, as nextest runs tests: a second
/// runtime's clock may start behind the first one's and read as stopped
/// until it catches up.)
pub fn now_ms() -> u64 {
    static BASE: OnceLock<(u64, std::time::Instant)> = OnceLock::new();
    let now = tokio::time::Instant::now().into_std();
    let (wall, at) = *BASE.get_or_init(|| (wall_ms(), now));
    wall + now.saturating_duration_since(at).as_millis() as u64
}

/// `2024-05-01T12:00:00Z` for seconds since the epoch (proleptic Gregorian,
/// Howard Hinnant's days-to-civil algorithm).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }
}
