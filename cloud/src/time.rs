//! Wall-clock helpers: "now", and RFC 3339 in UTC for tags, manifests and
//! deprecation times (formatting and parsing by the `time` crate).
//!
//! [`now_ms`] is the clock roll's decisions run on: Unix milliseconds read
//! through tokio's clock, so a test that pauses time (`tokio::time::pause`)
//! moves it with `tokio::time::advance` and nothing sleeps for real.
//! Outside a paused runtime it is the wall clock.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

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

/// `2024-05-01T12:00:00Z` for seconds since the epoch.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        // Beyond year 9999: not a time kiln writes; say so plainly.
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Seconds since the epoch of an RFC 3339 time (any offset, fractions
/// dropped), as EC2 prints them (`2024-05-01T12:00:00.000Z`); `None` if it
/// is not one or lies before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    u64::try_from(t.to_offset(UtcOffset::UTC).unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn parses_what_it_formats_and_what_ec2_prints() {
        for t in [0u64, 951_782_400, 1_714_564_800, 1_795_597_739] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.000Z"),
            Some(1_714_564_800)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00"),
            Some(1_714_564_800)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-05-01"), None);
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
    }
}
