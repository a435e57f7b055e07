//! Image recipes (`images/searchd.toml`): parsed strictly (unknown fields
//! are errors) and validated into a [`Recipe`] whose every path is resolved
//! against the recipe's directory, so a copied `images/` bakes the same.
//! Errors name the field (`builder.volume_gb: …`).

use std::collections::BTreeMap;
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

/// Where the snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Build it from this index definition (deterministic bytes).
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

        if raw.name.is_empty()
            || raw.name.len() > 64
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(field(
                "name",
                format!("{:?}: 1-64 characters from [A-Za-z0-9._-]", raw.name),
            ));
        }

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

        let b = raw.builder;
        if let Some(t) = &b.instance_type {
            let ok = t.split_once('.').is_some_and(|(f, s)| {
                !f.is_empty()
                    && !s.is_empty()
                    && t.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                    })
            });
            if !ok {
                return Err(field(
                    "builder.instance_type",
                    format!("{t:?} is not an instance type like \"t3.small\""),
                ));
            }
        }
        if let Some(s) = &b.subnet
            && !(s.starts_with("subnet-")
                && s.len() > 7
                && s[7..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(field(
                "builder.subnet",
                format!("{s:?} is not a subnet id like \"subnet-0abc\""),
            ));
        }
        let volume_gb = match b.volume_gb {
            None => 8,
            Some(v @ 1..=16384) => v as u32,
            Some(v) => {
                return Err(field(
                    "builder.volume_gb",
                    format!("{v} is not between 1 and 16384"),
                ));
            }
        };

        for (k, v) in &raw.tags {
            let lower = k.to_ascii_lowercase();
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(field(
                    &format!("tags.{k}"),
                    "keys 1-128 characters, values up to 256".into(),
                ));
            }
            if lower.starts_with("kiln:") || lower.starts_with("aws:") {
                return Err(field(
                    &format!("tags.{k}"),
                    "the kiln: and aws: prefixes are reserved".into(),
                ));
            }
        }
        for r in &raw.publish.regions {
            if !is_region(r) {
                return Err(field(
                    "publish.regions",
                    format!("{r:?} is not a region like \"eu-west-1\""),
                ));
            }
        }
        for a in &raw.publish.share_accounts {
            if a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()) {
                return Err(field(
                    "publish.share_accounts",
                    format!("{a:?} is not a 12-digit account id"),
                ));
            }
        }

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
            builder: cloud::BuilderSettings {
                instance_type: b.instance_type,
                subnet: b.subnet,
                volume_gb,
            },
            tags: raw.tags,
            regions: raw.publish.regions,
            share_accounts: raw.publish.share_accounts,
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
}
