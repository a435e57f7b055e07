//! The builder's user-data: a POSIX shell script that cloud-init runs once
//! at first boot. It carries the install script inline (no second download
//! to secure), fetches the payload from a presigned GET URL, runs
//! `install.sh --root / …` exactly as the local builder does, PUTs the
//! result file to a presigned URL and powers the machine off. The instance
//! is launched with shutdown behaviour `stop`, so power-off means state
//! `stopped`, which is what bake waits for.
//!
//! Nothing secret is in it: presigned URLs grant one GET of the payload and
//! one PUT of the report, for a bounded time.

use crate::error::{CloudError, Result};

/// Test hook for the instance emulator: install into this directory
/// instead of `/`. cloud-init never sets it.
pub const EMULATOR_ROOT_ENV: &str = "KILN_BUILDER_ROOT";
/// Test hook for the instance emulator: the command that "powers off"
/// (the emulator passes `true` and stops the instance through the API).
pub const EMULATOR_POWEROFF_ENV: &str = "KILN_BUILDER_POWEROFF";

/// EC2 refuses user-data over 16 KiB (before base64).
const MAX_USER_DATA: usize = 16 * 1024;
const HEREDOC_END: &str = "__KILN_INSTALL_SH_END__";

#[derive(Clone, Copy)]
pub struct UserData<'a> {
    pub run: &'a str,
    pub install_script: &'a str,
    pub payload_url: &'a str,
    pub result_url: &'a str,
    pub sha256: &'a str,
}

impl UserData<'_> {
    pub fn render(&self) -> Result<String> {
        if self.install_script.lines().any(|l| l == HEREDOC_END) {
            return Err(CloudError::invalid(
                "install script",
                format!("it contains the line {HEREDOC_END}, which ends its embedding"),
            ));
        }
        for (what, v) in [
            ("payload URL", self.payload_url),
            ("result URL", self.result_url),
            ("payload sha256", self.sha256),
            ("run id", self.run),
        ] {
            // Single-quoted in the script: a quote or newline would break out.
            if v.contains(['\'', '\n', '\r']) {
                return Err(CloudError::invalid(what, "contains a quote or newline"));
            }
        }
        let script = format!(
            r#"#!/bin/sh
# kiln builder for run {run}: install the payload, report, power off.
set -u
root="${{{root_env}:-/}}"
work="$(mktemp -d)"
cat > "$work/install.sh" <<'{end}'
{install}
{end}
payload_url='{payload}'
result_url='{result}'
sha256='{sha}'
# Bounded retries: S3 may need a moment after the instance's network is up.
if curl -fsS --retry 5 --retry-connrefused --max-time 600 -o "$work/payload.tar.zst" "$payload_url" 2>"$work/download.err"; then
  sh "$work/install.sh" --root "$root" --payload "$work/payload.tar.zst" --sha256 "$sha256" --result "$work/result" >"$work/install.log" 2>&1
else
  {{ echo "failed download"; cat "$work/download.err"; }} >"$work/result"
fi
# The script writes the result itself; if it died before that, report its log.
if [ ! -s "$work/result" ]; then
  {{ echo "failed install"; tail -c 8000 "$work/install.log"; }} >"$work/result"
fi
curl -fsS --retry 5 --retry-connrefused --max-time 120 -X PUT --upload-file "$work/result" "$result_url" || echo "kiln: could not upload the result" >&2
${{{poweroff_env}:-poweroff}}
"#,
            run = self.run,
            root_env = EMULATOR_ROOT_ENV,
            poweroff_env = EMULATOR_POWEROFF_ENV,
            end = HEREDOC_END,
            install = self.install_script.trim_end_matches('\n'),
            payload = self.payload_url,
            result = self.result_url,
            sha = self.sha256,
        );
        if script.len() > MAX_USER_DATA {
            return Err(CloudError::invalid(
                "install script",
                format!(
                    "the builder's user-data would be {} bytes; EC2 allows {MAX_USER_DATA}",
                    script.len()
                ),
            ));
        }
        Ok(script)
    }
}

/// Standard base64 with padding: EC2's user-data encoding.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_padded_standard_base64() {
        assert_eq!(base64(b"#!/bin/sh\necho hi\n"), "IyEvYmluL3NoCmVjaG8gaGkK");
        assert_eq!(base64(b"fo"), "Zm8=");
    }

    #[test]
    fn refuses_what_would_break_the_script() {
        let ok = UserData {
            run: "run-1",
            install_script: "#!/bin/sh\necho hi\n",
            payload_url: "http://x/p?a=b&c=d",
            result_url: "http://x/r",
            sha256: "ab",
        };
        let s = ok.render().expect("renders");
        assert!(s.contains("payload_url='http://x/p?a=b&c=d'"));
        let bad = UserData {
            payload_url: "http://x/'; rm -rf /",
            ..ok
        };
        assert!(bad.render().is_err());
        let big = "#".repeat(MAX_USER_DATA);
        let bad = UserData {
            install_script: &big,
            ..ok
        };
        assert!(bad.render().is_err());
    }
}
