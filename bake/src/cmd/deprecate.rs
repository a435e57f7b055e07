//! `bake deprecate ID --at TIME`: mark an image as on its way out. From
//! that time `bake list` shows it deprecated and `bake prune` no longer
//! counts it among the newest N, so it goes at the next prune unless a
//! group uses it or may roll back to it. On aws EC2 deprecates it too
//! (EnableImageDeprecation, on it and its copies): other accounts no
//! longer see it listed, launches by id still work. `--cancel` undoes it.

use cloud::ImageId;
use serde::Serialize;

use super::Global;
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["at", "cancel"])))]
pub struct Args {
    /// The image id (as `bake build` or `bake list` printed it).
    #[arg(value_name = "ID")]
    pub id: String,
    /// When: `now`, a time from now (`30d`, `12h`, `90m`), or an RFC 3339
    /// time (`2027-01-31T00:00:00Z`); never in the past. (EC2 keeps whole
    /// minutes: on aws its own deprecation starts at the next one.)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Cancel the image's deprecation.
    #[arg(long)]
    pub cancel: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Done<'a> {
    id: &'a str,
    /// RFC 3339, or null when cancelled.
    deprecate_at: Option<String>,
    /// Copies in other regions deprecated with it.
    copies: Vec<String>,
}

/// Unix seconds for `--at`, given `now`.
pub fn parse_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    let t = if s == "now" {
        now
    } else if let Some(t) = cloud::time::parse_rfc3339(s) {
        if t < now {
            return Err(format!(
                "--at {s}: that is in the past (now is {})",
                cloud::time::rfc3339(now)
            ));
        }
        t
    } else if s.starts_with(|c: char| c.is_ascii_digit()) {
        now.saturating_add(super::parse_duration(s)?.as_secs())
    } else {
        return Err(format!(
            "--at {s:?}: expected `now`, a duration from now (30d, 12h) or an RFC 3339 time (2027-01-31T00:00:00Z)"
        ));
    };
    Ok(t)
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let at = match &args.at {
        Some(s) => Some(parse_at(s, cloud::time::now_unix()).map_err(BakeError::Usage)?),
        None => None,
    };
    let (_state, cloud) = super::open(global).await?;
    let id = ImageId::new(args.id.clone());
    let copies = match cloud.images().deprecate(&id, at).await {
        Ok(copies) => copies,
        // A wrong id is the caller's input, not a failing cloud.
        Err(e @ cloud::CloudError::NotFound { .. }) => return Err(BakeError::Usage(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let when = at.map(cloud::time::rfc3339);
    match &when {
        Some(t) => eprintln!(
            "bake: {id} deprecated from {t} (and {} copies)",
            copies.len()
        ),
        None => eprintln!(
            "bake: {id}: deprecation cancelled (and on {} copies)",
            copies.len()
        ),
    }
    if args.json {
        super::print_json(&Done {
            id: id.as_str(),
            deprecate_at: when,
            copies: copies.iter().map(|(r, c)| format!("{r}:{c}")).collect(),
        })?;
    } else {
        let mut out = String::new();
        outln!(out, "{id}\t{}", when.as_deref().unwrap_or("-"));
        super::write_stdout(&out)?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::parse_at;

    const NOW: u64 = 1_800_000_030;

    #[test]
    fn at_accepts_now_durations_and_times_in_whole_minutes() {
        assert_eq!(parse_at("now", NOW), Ok(NOW));
        assert_eq!(parse_at("1h", NOW), Ok(NOW + 3600));
        assert_eq!(parse_at("30d", NOW), Ok(NOW + 30 * 86_400));
        let t = cloud::time::rfc3339(1_800_086_400);
        assert_eq!(parse_at(&t, NOW), Ok(1_800_086_400));
        assert_eq!(parse_at("2027-01-31T00:01:00Z", 0), Ok(1_801_353_660));
    }

    #[test]
    fn at_refuses_the_past_and_nonsense() {
        let past = cloud::time::rfc3339(NOW - 3600);
        assert!(parse_at(&past, NOW).unwrap_err().contains("in the past"));
        assert!(parse_at("tomorrow", NOW).unwrap_err().contains("RFC 3339"));
        assert!(parse_at("3w", NOW).is_err());
    }
}
