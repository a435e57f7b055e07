//! Image recipes (`images/searchd.toml`): parsed strictly (unknown fields
//! are errors) and validated into a [`Recipe`] whose every path is resolved
//! against the recipe's directory, so a copied `images/` bakes the same.
//! Errors name the field (`builder.volume_gb: …`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cloud::BaseSelector;
use serde::Deserialize;

/// Where `install.searchd` defaults to, relative to the current directory.
pub const DEFAULT_SEARCHD: &str = "target/x86_64-unknown-linux-gnu/release/searchd";
pub const SEARCHD_ENV: &str = "KILN_STATIC_SEARCHD";

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recipe {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("recipe {path}: {field}: {why}")]
    Field {
        path: PathBuf,
        field: String,
        why: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    description: Option<String>,
    base: RawBase,
    install: RawInstall,
    #[serde(default)]
    builder: RawBuilder,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    publish: RawPublish,
    #[serde(default)]
    logs: Option<RawLogs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    aws: Option<RawAwsBase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAwsBase {
    #[serde(default)]
    ssm_parameter: Option<String>,
    #[serde(default)]
    owners: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    #[serde(default)]
    searchd: Option<PathBuf>,
    #[serde(default)]
    index: Option<PathBuf>,
    #[serde(default)]
    snapshot: Option<PathBuf>,
    config: PathBuf,
    #[serde(default)]
    script: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilder {
    #[serde(default)]
    instance_type: Option<String>,
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    volume_gb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    share_accounts: Vec<String>,
}

/// `[logs]`: forward the journal to a collector. TLS is the only way
/// there is: no field turns it off or picks a plain-text protocol, so such
/// a field is an unknown-field error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    #[serde(default)]
    forward: Option<String>,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    permitted_peer: Option<String>,
}

/// Where the snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Build it from this index (or search) definition (deterministic
    /// bytes).
    Index(PathBuf),
    /// Install this prebuilt snapshot file.
    Prebuilt(PathBuf),
}

/// A validated recipe. Paths are absolute or relative to the current
/// directory (already joined with the recipe's directory).
#[derive(Debug, Clone)]
pub struct Recipe {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub base_local: Option<BaseSelector>,
    pub base_aws: Option<BaseSelector>,
    pub searchd: PathBuf,
    pub snapshot: SnapshotSource,
    pub config: PathBuf,
    /// The install script every builder runs (default `install.sh` beside
    /// the recipe).
    pub install_script: PathBuf,
    pub builder: cloud::BuilderSettings,
    pub tags: BTreeMap<String, String>,
    pub regions: Vec<String>,
    pub share_accounts: Vec<String>,
    /// `[logs]`: forward the journal over TLS (none: the journal stays on
    /// the instance).
    pub logs: Option<Logs>,
}

/// A validated `[logs]` section. The values are safe to write into
/// install.sh's settings file and a quoted rsyslog string as they are:
/// host names, IP addresses and ports only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// The collector: a DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The name the collector's certificate must carry (rsyslog's
    /// `StreamDriverPermittedPeers`; `*.example.com` allowed).
    pub permitted_peer: String,
    /// The CA that signed the collector's certificate: a PEM file holding
    /// at least one certificate and nothing secret.
    pub ca: PathBuf,
}

impl Logs {
    /// `forward` as the recipe spells it, normalised (`[::1]:6514`).
    pub fn forward(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The payload's settings file (`etc/kiln/logs.env`) that tells
    /// install.sh to write the forwarder. Deterministic: its bytes follow
    /// from the recipe alone.
    pub fn settings(&self) -> String {
        format!(
            "# kiln log forwarding, from the recipe's [logs] (read by install.sh)\n\
             KILN_LOG_HOST={}\nKILN_LOG_PORT={}\nKILN_LOG_PEER={}\n",
            self.host, self.port, self.permitted_peer
        )
    }
}

impl Recipe {
    /// Reads and validates a recipe. `searchd_env` is the value of
    /// `KILN_STATIC_SEARCHD` (passed in so tests do not touch the process
    /// environment).
    pub fn load(path: &Path, searchd_env: Option<&str>) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_owned(),
            source,
        })?;
        Recipe::parse(path, &text, searchd_env)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        searchd_env: Option<&str>,
    ) -> Result<Recipe, RecipeError> {
        let raw: Raw = toml::from_str(text).map_err(|e| RecipeError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let field = |field: &str, why: String| RecipeError::Field {
            path: path.to_owned(),
            field: field.to_owned(),
            why,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let existing = |name: &str, p: PathBuf| -> Result<PathBuf, RecipeError> {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => Ok(p),
                Ok(_) => Err(field(name, format!("{} is not a file", p.display()))),
                Err(e) => Err(field(name, format!("cannot read {}: {e}", p.display()))),
            }
        };

        check_name(&raw.name).map_err(|why| field("name", why))?;

        let base_local = match raw.base.local.as_deref() {
            None => None,
            Some("scratch") => Some(BaseSelector::Scratch),
            Some("") => {
                return Err(field(
                    "base.local",
                    "empty: use \"scratch\" or a tarball path".into(),
                ));
            }
            Some(p) => Some(BaseSelector::Tarball {
                path: existing("base.local", rel(Path::new(p)))?,
            }),
        };
        let base_aws = match raw.base.aws {
            None => None,
            Some(a) => Some(aws_base(a).map_err(|(f, why)| field(&format!("base.aws.{f}"), why))?),
        };
        if base_local.is_none() && base_aws.is_none() {
            return Err(field(
                "base",
                "name a base: `local = \"scratch\"` or [base.aws]".into(),
            ));
        }

        let searchd = match (&raw.install.searchd, searchd_env) {
            (Some(p), _) => existing("install.searchd", rel(p))?,
            (None, Some(env)) if !env.is_empty() => existing(
                &format!("install.searchd (from ${SEARCHD_ENV})"),
                PathBuf::from(env),
            )?,
            _ => existing(
                "install.searchd (default; run `make static` or set KILN_STATIC_SEARCHD)",
                PathBuf::from(DEFAULT_SEARCHD),
            )?,
        };
        let snapshot = match (&raw.install.index, &raw.install.snapshot) {
            (Some(i), None) => SnapshotSource::Index(existing("install.index", rel(i))?),
            (None, Some(s)) => SnapshotSource::Prebuilt(existing("install.snapshot", rel(s))?),
            (Some(_), Some(_)) => {
                return Err(field(
                    "install",
                    "give `index` or `snapshot`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(field(
                    "install",
                    "missing `index` (a definition to build) or `snapshot` (a prebuilt file)"
                        .into(),
                ));
            }
        };
        let config = existing("install.config", rel(&raw.install.config))?;
        let install_script = existing(
            "install.script",
            rel(raw
                .install
                .script
                .as_deref()
                .unwrap_or(Path::new("install.sh"))),
        )?;

        let builder =
            builder(raw.builder).map_err(|(f, why)| field(&format!("builder.{f}"), why))?;
        check_tags(&raw.tags).map_err(|(k, why)| field(&format!("tags.{k}"), why))?;
        check_publish(&raw.publish).map_err(|(f, why)| field(&format!("publish.{f}"), why))?;

        let logs = match raw.logs {
            None => None,
            Some(l) => Some(logs(l, &rel).map_err(|(f, why)| field(&format!("logs.{f}"), why))?),
        };

        Ok(Recipe {
            path: path.to_owned(),
            name: raw.name,
            description: raw.description,
            base_local,
            base_aws,
            searchd,
            snapshot,
            config,
            install_script,
            builder,
            tags: raw.tags,
            regions: raw.publish.regions,
            share_accounts: raw.publish.share_accounts,
            logs,
        })
    }

    /// The base selector for a backend, or an error naming the missing
    /// field.
    pub fn base_for(&self, backend: &str) -> Result<&BaseSelector, RecipeError> {
        let (sel, f) = match backend {
            "aws" => (self.base_aws.as_ref(), "base.aws"),
            _ => (self.base_local.as_ref(), "base.local"),
        };
        sel.ok_or_else(|| RecipeError::Field {
            path: self.path.clone(),
            field: f.to_owned(),
            why: format!("missing: the {backend} backend needs it"),
        })
    }
}

/// Whether `r` is shaped like a region name (`eu-west-1`,
/// `us-gov-east-1`): lowercase words and digits joined by dashes, at least
/// three, the last a number. Whether it exists is for the cloud to say.
pub fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// The most a CA file may hold: a bundle of a few certificates is a few
/// KiB; anything near this is not a CA file.
const MAX_CA_BYTES: u64 = 1 << 20;

/// `name`: 1-64 characters from `[A-Za-z0-9._-]`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?}: 1-64 characters from [A-Za-z0-9._-]"))
    }
}

/// `[builder]`: an instance type like `t3.small`, a subnet id, 1-16384 GB.
fn builder(b: RawBuilder) -> Result<cloud::BuilderSettings, (&'static str, String)> {
    if let Some(t) = &b.instance_type {
        let ok = t.split_once('.').is_some_and(|(f, s)| {
            !f.is_empty()
                && !s.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        });
        if !ok {
            return Err((
                "instance_type",
                format!("{t:?} is not an instance type like \"t3.small\""),
            ));
        }
    }
    if let Some(s) = &b.subnet
        && !(s.starts_with("subnet-")
            && s.len() > 7
            && s[7..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err((
            "subnet",
            format!("{s:?} is not a subnet id like \"subnet-0abc\""),
        ));
    }
    let volume_gb = match b.volume_gb {
        None => 8,
        Some(v @ 1..=16384) => v as u32,
        Some(v) => return Err(("volume_gb", format!("{v} is not between 1 and 16384"))),
    };
    Ok(cloud::BuilderSettings {
        instance_type: b.instance_type,
        subnet: b.subnet,
        volume_gb,
    })
}

/// `[tags]`: keys 1-128 characters, values up to 256, no `kiln:` or
/// `aws:` prefix. The error names the key.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (k, v) in tags {
        let lower = k.to_ascii_lowercase();
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err((k.clone(), "keys 1-128 characters, values up to 256".into()));
        }
        if lower.starts_with("kiln:") || lower.starts_with("aws:") {
            return Err((k.clone(), "the kiln: and aws: prefixes are reserved".into()));
        }
    }
    Ok(())
}

/// `[publish]`: regions like `eu-west-1`, 12-digit account ids.
fn check_publish(p: &RawPublish) -> Result<(), (&'static str, String)> {
    if let Some(r) = p.regions.iter().find(|r| !is_region(r)) {
        return Err((
            "regions",
            format!("{r:?} is not a region like \"eu-west-1\""),
        ));
    }
    if let Some(a) = p
        .share_accounts
        .iter()
        .find(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()))
    {
        return Err((
            "share_accounts",
            format!("{a:?} is not a 12-digit account id"),
        ));
    }
    Ok(())
}

fn logs(l: RawLogs, rel: &dyn Fn(&Path) -> PathBuf) -> Result<Logs, (&'static str, String)> {
    let forward = l.forward.ok_or((
        "forward",
        "missing: the collector as host:port (e.g. \"logs.example.com:6514\")".to_owned(),
    ))?;
    let (host, port) = forward_addr(&forward).map_err(|why| ("forward", why))?;
    let permitted_peer = match l.permitted_peer {
        Some(p) => {
            if !is_peer_name(&p) {
                return Err((
                    "permitted_peer",
                    format!(
                        "{p:?} is not a name a certificate carries (like \"logs.example.com\" \
                         or \"*.example.com\")"
                    ),
                ));
            }
            p
        }
        None if host.parse::<IpAddr>().is_ok() => {
            return Err((
                "permitted_peer",
                format!(
                    "missing: `forward` names the address {host}, so give the name the \
                     collector's certificate carries (it is checked, x509/name)"
                ),
            ));
        }
        None => host.clone(),
    };
    let ca = rel(&l.ca.ok_or((
        "ca",
        "missing: the PEM file of the CA that signed the collector's certificate \
         (forwarding is TLS only)"
            .to_owned(),
    ))?);
    check_ca(&ca).map_err(|why| ("ca", why))?;
    Ok(Logs {
        host,
        port,
        permitted_peer,
        ca,
    })
}

/// `host:port`, `a.b.c.d:port` or `[v6]:port`; the port is required.
fn forward_addr(s: &str) -> Result<(String, u16), String> {
    let example = "write host:port, e.g. \"logs.example.com:6514\"";
    if s.contains("://") {
        return Err(format!(
            "{s:?}: no scheme; forwarding is always syslog over TLS (TCP), {example}"
        ));
    }
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{s:?}: port 0; {example}"));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(format!("{s:?}: {} is not a collector's address", addr.ip()));
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?} has no port; {example} (6514 is syslog over TLS)"
        ));
    };
    if host.contains(':') || host.starts_with('[') {
        return Err(format!(
            "{s:?}: an IPv6 address goes in brackets, \"[2001:db8::1]:6514\""
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(format!("{s:?}: the port must be a number from 1 to 65535")),
    };
    if !is_dns_name(host) {
        return Err(format!(
            "{s:?}: {host:?} is not a host name or IP address; {example}"
        ));
    }
    Ok((host.to_owned(), port))
}

/// A DNS name: dot-separated labels of letters, digits and inner dashes,
/// at most 253 characters, not all digits (that would be a bad IPv4
/// address).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A name rsyslog can match against the certificate: a DNS name, or one
/// with a leading `*.` wildcard label.
fn is_peer_name(s: &str) -> bool {
    is_dns_name(s.strip_prefix("*.").unwrap_or(s))
}

/// The CA file: readable, small, PEM with at least one well-formed
/// CERTIFICATE block, and no private key (the file goes into every image).
fn check_ca(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > MAX_CA_BYTES {
        return Err(format!(
            "{} is {} bytes; a CA file is a few KiB of PEM",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if text
        .lines()
        .any(|l| l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY"))
    {
        return Err(format!(
            "{} holds a private key; only the CA's certificate belongs in the image",
            path.display()
        ));
    }
    let mut certs = 0;
    let mut lines = text.lines().map(str::trim_end);
    while let Some(line) = lines.next() {
        if line != "-----BEGIN CERTIFICATE-----" {
            continue;
        }
        let mut body = 0usize;
        let mut closed = false;
        for l in lines.by_ref() {
            if l == "-----END CERTIFICATE-----" {
                closed = true;
                break;
            }
            if !l
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                return Err(format!(
                    "{}: certificate {} is not base64 PEM",
                    path.display(),
                    certs + 1
                ));
            }
            body += l.len();
        }
        if !closed {
            return Err(format!(
                "{}: certificate {} is cut short (no -----END CERTIFICATE-----)",
                path.display(),
                certs + 1
            ));
        }
        if body == 0 {
            return Err(format!(
                "{}: certificate {} is empty",
                path.display(),
                certs + 1
            ));
        }
        certs += 1;
    }
    if certs == 0 {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file \
             converts with `openssl x509 -inform der -in ca.der -out ca.pem`",
            path.display()
        ));
    }
    Ok(())
}

fn aws_base(a: RawAwsBase) -> Result<BaseSelector, (&'static str, String)> {
    match (a.ssm_parameter, a.owners, a.name, a.architecture) {
        (Some(p), None, None, None) => {
            if !p.starts_with('/') {
                return Err(("ssm_parameter", format!("{p:?} must start with '/'")));
            }
            Ok(BaseSelector::SsmParameter { name: p })
        }
        (None, Some(owners), Some(name), arch) => {
            if owners.is_empty() || owners.iter().any(String::is_empty) {
                return Err((
                    "owners",
                    "list at least one owner (\"amazon\", \"self\" or an account id)".into(),
                ));
            }
            if name.is_empty() {
                return Err(("name", "empty name pattern".into()));
            }
            let architecture = arch.unwrap_or_else(|| "x86_64".into());
            if !matches!(architecture.as_str(), "x86_64" | "arm64") {
                return Err(("architecture", format!("{architecture:?}: x86_64 or arm64")));
            }
            Ok(BaseSelector::AmiFilter {
                owners,
                name,
                architecture,
            })
        }
        (Some(_), ..) => Err((
            "ssm_parameter",
            "give `ssm_parameter` alone, or `owners` + `name` (+ `architecture`)".into(),
        )),
        (None, None, _, _) => Err((
            "owners",
            "missing: give `ssm_parameter` or `owners` + `name`".into(),
        )),
        (None, Some(_), None, _) => Err(("name", "missing: the AMI name pattern".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        for f in ["searchd", "index.toml", "searchd.env", "install.sh"] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        let p = t.path().join("r.toml");
        (t, p)
    }

    const GOOD: &str = r#"
name = "searchd"
[base]
local = "scratch"
[install]
searchd = "searchd"
index = "index.toml"
config = "searchd.env"
"#;

    fn err(text: &str) -> String {
        let (_t, p) = setup();
        Recipe::parse(&p, text, None).unwrap_err().to_string()
    }

    #[test]
    fn good_recipe_resolves_relative_paths() {
        let (t, p) = setup();
        let r = Recipe::parse(&p, GOOD, None).unwrap();
        assert_eq!(r.searchd, t.path().join("searchd"));
        assert_eq!(
            r.snapshot,
            SnapshotSource::Index(t.path().join("index.toml"))
        );
        assert_eq!(r.builder.volume_gb, 8);
        assert_eq!(r.base_for("local").unwrap(), &BaseSelector::Scratch);
        assert!(
            r.base_for("aws")
                .unwrap_err()
                .to_string()
                .contains("base.aws")
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(&format!("{GOOD}\nbogus = 1")).contains("unknown field `bogus`"));
        assert!(err(&format!("{GOOD}\n[builder]\nvolume_gb = 0")).contains("builder.volume_gb"));
        assert!(
            err(&format!("{GOOD}\n[builder]\ninstance_type = \"big\""))
                .contains("builder.instance_type")
        );
        assert!(
            err(&format!("{GOOD}\n[tags]\n\"kiln:digest\" = \"x\"")).contains("tags.kiln:digest")
        );
        assert!(
            err(&format!("{GOOD}\n[publish]\nregions = [\"moon\"]")).contains("publish.regions")
        );
        assert!(
            err(&format!("{GOOD}\n[publish]\nshare_accounts = [\"12\"]"))
                .contains("publish.share_accounts")
        );
        assert!(err(&GOOD.replace("index.toml", "nope.toml")).contains("install.index"));
        assert!(err(&GOOD.replace("name = \"searchd\"", "name = \"a b\"")).contains("name"));
        assert!(
            err(&GOOD.replace("local = \"scratch\"", "local = \"nope.tar\""))
                .contains("base.local")
        );
        assert!(
            err(&format!("{GOOD}\n[base.aws]\nowners = [\"amazon\"]")).contains("base.aws.name")
        );
    }

    /// Shaped like a certificate: all the recipe checks (the TLS library
    /// reads it on the instance; bake's integration tests use real ones).
    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ29kZQ==\n-----END CERTIFICATE-----\n";

    /// GOOD plus a `[logs]` section (`ca` written to `logs-ca.pem` with
    /// `ca_text`); the parsed recipe or the error text.
    fn with_logs(section: &str, ca_text: &[u8]) -> Result<Recipe, String> {
        let (t, p) = setup();
        std::fs::write(t.path().join("logs-ca.pem"), ca_text).unwrap();
        Recipe::parse(&p, &format!("{GOOD}\n[logs]\n{section}"), None).map_err(|e| e.to_string())
    }

    const LOGS: &str = "forward = \"logs.example.com:6514\"\nca = \"logs-ca.pem\"\n";

    #[test]
    fn logs_parse_with_the_host_as_the_default_peer() {
        let r = with_logs(LOGS, PEM.as_bytes()).unwrap();
        let l = r.logs.unwrap();
        assert_eq!((l.host.as_str(), l.port), ("logs.example.com", 6514));
        assert_eq!(l.permitted_peer, "logs.example.com");
        assert!(l.ca.ends_with("logs-ca.pem") && l.ca.is_absolute(), "{l:?}");
        assert_eq!(
            l.settings(),
            "# kiln log forwarding, from the recipe's [logs] (read by install.sh)\n\
             KILN_LOG_HOST=logs.example.com\nKILN_LOG_PORT=6514\nKILN_LOG_PEER=logs.example.com\n"
        );
        assert!(
            with_logs("", PEM.as_bytes())
                .unwrap_err()
                .contains("logs.forward: missing")
        );
        assert!(
            Recipe::parse(&setup().1, GOOD, None)
                .unwrap()
                .logs
                .is_none()
        );

        let l = with_logs(
            &format!("{LOGS}permitted_peer = \"*.example.com\""),
            PEM.as_bytes(),
        )
        .unwrap()
        .logs
        .unwrap();
        assert_eq!(l.permitted_peer, "*.example.com");
        // Two certificates (a bundle) are fine.
        assert!(with_logs(LOGS, format!("{PEM}{PEM}").as_bytes()).is_ok());
    }

    #[test]
    fn an_address_needs_the_name_its_certificate_carries() {
        for (forward, host) in [
            ("10.0.0.5:6514", "10.0.0.5"),
            ("[2001:db8::1]:6514", "2001:db8::1"),
        ] {
            let text = format!("forward = \"{forward}\"\nca = \"logs-ca.pem\"\n");
            let e = with_logs(&text, PEM.as_bytes()).unwrap_err();
            assert!(e.contains("logs.permitted_peer: missing"), "{e}");
            let l = with_logs(
                &format!("{text}permitted_peer = \"logs.example.com\""),
                PEM.as_bytes(),
            )
            .unwrap()
            .logs
            .unwrap();
            assert_eq!(l.host, host);
            assert_eq!(l.forward(), forward);
        }
    }

    #[test]
    fn a_bad_forward_names_the_field_and_says_why() {
        for (forward, why) in [
            ("logs.example.com", "has no port"),
            ("logs.example.com:", "the port must be a number"),
            ("logs.example.com:0", "the port must be a number"),
            ("logs.example.com:65536", "the port must be a number"),
            ("logs.example.com:+6514", "the port must be a number"),
            ("tcp://logs.example.com:6514", "no scheme"),
            ("tls://logs.example.com:6514", "no scheme"),
            ("udp://logs.example.com:514", "no scheme"),
            (":6514", "not a host name"),
            ("logs example.com:6514", "not a host name"),
            ("logs\\\"example.com:6514", "not a host name"),
            ("-logs.example.com:6514", "not a host name"),
            ("logs..example.com:6514", "not a host name"),
            ("1.2.3:6514", "not a host name"),
            ("0.0.0.0:6514", "not a collector's address"),
            ("2001:db8::1:6514", "in brackets"),
            ("10.0.0.5:0", "port 0"),
        ] {
            let text = format!("forward = \"{forward}\"\nca = \"logs-ca.pem\"\n");
            let e = with_logs(&text, PEM.as_bytes()).unwrap_err();
            assert!(
                e.contains("logs.forward: ") && e.contains(why),
                "{forward}: {e}"
            );
        }
        for peer in [
            "",
            "*",
            "logs example.com",
            "a\\\"b",
            "*.*.example.com",
            "logs.example.com:6514",
        ] {
            let e = with_logs(
                &format!("{LOGS}permitted_peer = \"{peer}\""),
                PEM.as_bytes(),
            )
            .unwrap_err();
            assert!(e.contains("logs.permitted_peer: "), "{peer}: {e}");
        }
    }

    /// Whatever one character is put into the host, what is accepted is
    /// made only of the characters install.sh writes into quoted rsyslog
    /// strings: nothing can close the quote or start a new line.
    #[test]
    fn accepted_values_are_safe_in_a_quoted_rsyslog_string() {
        let safe = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'*'))
        };
        for c in (0u8..128).map(char::from) {
            for forward in [format!("logs{c}example.com:6514"), format!("[::{c}1]:6514")] {
                let text = format!(
                    "forward = {}\nca = \"logs-ca.pem\"\npermitted_peer = {}\n",
                    toml_string(&forward),
                    toml_string(&format!("logs{c}example.com"))
                );
                if let Ok(r) = with_logs(&text, PEM.as_bytes()) {
                    let l = r.logs.unwrap();
                    assert!(safe(&l.host) && safe(&l.permitted_peer), "{c:?}: {l:?}");
                }
            }
        }
    }

    fn toml_string(s: &str) -> String {
        toml::Value::String(s.to_owned()).to_string()
    }

    #[test]
    fn the_ca_must_exist_and_hold_a_pem_certificate_and_no_key() {
        let e = with_logs("forward = \"logs.example.com:6514\"\n", PEM.as_bytes()).unwrap_err();
        assert!(e.contains("logs.ca: missing"), "{e}");
        let e = with_logs(
            "forward = \"logs.example.com:6514\"\nca = \"nope.pem\"\n",
            PEM.as_bytes(),
        )
        .unwrap_err();
        assert!(
            e.contains("logs.ca: cannot read") && e.contains("nope.pem"),
            "{e}"
        );
        for (ca, why) in [
            (&b""[..], "holds no PEM certificate"),
            (b"x", "holds no PEM certificate"),
            // DER: the binary form of a certificate.
            (
                b"\x30\x82\x01\xb3\x30\x82\x01\x59\xa0\x03",
                "holds no PEM certificate",
            ),
            (
                b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ==\n-----END PUBLIC KEY-----\n",
                "holds no PEM certificate",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n",
                "cut short",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
                "is empty",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                "not base64",
            ),
        ] {
            let e = with_logs(LOGS, ca).unwrap_err();
            assert!(e.contains("logs.ca: ") && e.contains(why), "{ca:?}: {e}");
        }
        for key in [
            "PRIVATE KEY",
            "EC PRIVATE KEY",
            "RSA PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
        ] {
            let ca = format!("{PEM}-----BEGIN {key}-----\nMHcCAQEEIA==\n-----END {key}-----\n");
            let e = with_logs(LOGS, ca.as_bytes()).unwrap_err();
            assert!(
                e.contains("logs.ca: ") && e.contains("private key"),
                "{key}: {e}"
            );
        }
        let big = PEM.repeat((MAX_CA_BYTES as usize / PEM.len()) + 1);
        assert!(
            with_logs(LOGS, big.as_bytes())
                .unwrap_err()
                .contains("a few KiB")
        );
    }

    /// No field turns TLS off or picks another transport.
    #[test]
    fn there_is_no_plain_text_option() {
        for extra in [
            "tls = false",
            "protocol = \"udp\"",
            "protocol = \"tcp\"",
            "insecure = true",
            "auth_mode = \"anon\"",
            "stream_driver_mode = 0",
        ] {
            let e = with_logs(&format!("{LOGS}{extra}"), PEM.as_bytes()).unwrap_err();
            assert!(e.contains("unknown field"), "{extra}: {e}");
            assert!(
                e.contains("forward") && e.contains("permitted_peer"),
                "{extra}: {e}"
            );
        }
    }
}
