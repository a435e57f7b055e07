//! Where a service's pieces are. Locally `roll up` made them with known
//! names (listener `G`, target groups `G` and `G--b`, the twin group
//! `G--b`). On aws they usually come from Terraform: the Auto Scaling
//! group, its listener and the two target groups are named in `roll.toml`
//! (`--config`) or by flags, which win.
//!
//! ```toml
//! [aws]
//! region = "eu-west-1"
//! bucket = "kiln-artifacts"      # where bake keeps image manifests
//! gate = "health"                # or "private-ip" when roll runs in the VPC
//!
//! [group.web-asg]                 # roll --group web-asg
//! listener = "arn:aws:elasticloadbalancing:…:listener/app/web/…"
//! target_groups = ["arn:…:targetgroup/web-blue/…", "arn:…:targetgroup/web-green/…"]
//! twin = "web-asg--b"             # blue/green's second group (default: <group>--b)
//! test_listener = "arn:…"         # optional: blue/green sets are gated through it
//! test_address = "127.0.0.1:8081" # optional: where roll reaches it (a tunnel)
//! alarms = ["web-5xx"]            # optional: ALARM while a roll out runs fails it
//! ```
//!
//! Without Terraform, `roll up --backend aws` makes the service; it reads
//! its network and instance settings from the same section (flags win)
//! and, with `--write-config`, adds the listener and target groups it made
//! to it:
//!
//! ```toml
//! [group.web]
//! subnets = ["subnet-0a…", "subnet-0b…"]   # private: the instances
//! lb_subnets = ["subnet-1a…", "subnet-1b…"]  # the balancer (default: subnets)
//! instance_type = "t3.small"
//! service_port = 8080
//! certificate_arn = "arn:aws:acm:…"         # HTTPS on 443
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cloud::{GroupName, ListenerId, TargetGroupId};
use serde::Deserialize;

use crate::error::RollError;
use crate::exec::{Service, twin_of};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    #[serde(default)]
    pub aws: AwsSection,
    #[serde(default)]
    pub group: BTreeMap<String, GroupSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// How new instances are gated: "health" or "private-ip".
    pub gate: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    pub listener: Option<String>,
    #[serde(default)]
    pub target_groups: Vec<String>,
    pub twin: Option<String>,
    pub test_listener: Option<String>,
    pub test_address: Option<String>,
    #[serde(default)]
    pub alarms: Vec<String>,
    // What `roll up --backend aws` makes the service with (flags win).
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub lb_subnets: Vec<String>,
    pub vpc: Option<String>,
    pub load_balancer: Option<String>,
    pub internet_facing: Option<bool>,
    pub port: Option<u16>,
    pub service_port: Option<u16>,
    pub instance_type: Option<String>,
    pub certificate_arn: Option<String>,
}

/// Adds `listener` and `target_groups` to `[group.<group>]` in the file at
/// `path` (the section is made if missing; the rest of the file, comments
/// included, stays as it is). Already there with the same values: nothing
/// changes. With other values: refused, naming them.
pub fn write_service(
    path: &Path,
    group: &GroupName,
    listener: &str,
    target_groups: &[String],
) -> Result<bool, RollError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(RollError::Usage(format!(
                "cannot read the config {}: {e}",
                path.display()
            )));
        }
    };
    let parsed: RollConfig = toml::from_str(&text)
        .map_err(|e| RollError::Usage(format!("config {}: {e}", path.display())))?;
    let lines = format!(
        "listener = {listener:?}\ntarget_groups = [{}]\n",
        target_groups
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let new = match parsed.group.get(group.as_str()) {
        Some(s) if s.listener.as_deref() == Some(listener) && s.target_groups == target_groups => {
            return Ok(false);
        }
        Some(s) if s.listener.is_some() || !s.target_groups.is_empty() => {
            return Err(RollError::Usage(format!(
                "{}: [group.{group}] already names listener {} and target groups {:?}; \
                 roll up made {listener} and {target_groups:?}: edit the file",
                path.display(),
                s.listener.as_deref().unwrap_or("(none)"),
                s.target_groups
            )));
        }
        Some(_) => {
            // Right after the section's header line.
            let header = format!("[group.{group}]");
            let mut out = String::new();
            let mut done = false;
            for line in text.lines() {
                out.push_str(line);
                out.push('\n');
                if !done && line.trim() == header {
                    out.push_str(&lines);
                    done = true;
                }
            }
            if !done {
                return Err(RollError::Usage(format!(
                    "{}: cannot find the line {header} to add the listener to: edit the file",
                    path.display()
                )));
            }
            out
        }
        None => {
            let mut out = text.clone();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[group.{group}]\n{lines}"));
            out
        }
    };
    // Checked before it replaces the file.
    toml::from_str::<RollConfig>(&new).map_err(|e| {
        RollError::Failed(format!("the new {} would not parse: {e}", path.display()))
    })?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &new)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| RollError::Io {
            what: format!("cannot write {}", path.display()),
            source: e,
        })?;
    Ok(true)
}

impl RollConfig {
    pub fn load(path: &Path) -> Result<RollConfig, RollError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RollError::Usage(format!("cannot read the config {}: {e}", path.display()))
        })?;
        toml::from_str(&text)
            .map_err(|e| RollError::Usage(format!("config {}: {e}", path.display())))
    }
}

/// Flags that name aws resources (they override roll.toml).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// roll.toml: the aws region and bucket, and per group its listener,
    /// target groups, twin, test listener and alarms (see README).
    #[arg(
        long,
        global = true,
        env = "KILN_ROLL_CONFIG",
        value_name = "FILE",
        help_heading = "AWS"
    )]
    pub config: Option<PathBuf>,
    /// aws: the region (default: AWS_REGION / the profile's).
    #[arg(long, global = true, value_name = "REGION", help_heading = "AWS")]
    pub region: Option<String>,
    /// aws: the S3 bucket bake keeps image manifests in (the gate reads
    /// the golden queries from them).
    #[arg(
        long,
        global = true,
        env = "KILN_AWS_BUCKET",
        value_name = "BUCKET",
        help_heading = "AWS"
    )]
    pub aws_bucket: Option<String>,
    /// aws: how new instances are gated before they take traffic. health:
    /// the target group's /ready health check (searchd's /ready replays
    /// the golden queries; the image is checked from EC2), for roll
    /// outside the VPC. private-ip: the full gate (/ready, /version, every
    /// golden query) against each instance's private IP while Auto Scaling
    /// holds it, for roll inside the VPC. Default: health.
    #[arg(long, global = true, value_name = "HOW", value_parser = ["health", "private-ip"], help_heading = "AWS")]
    pub gate_via: Option<String>,
    /// aws: the listener (ARN) in front of the group.
    #[arg(long, global = true, value_name = "ARN", help_heading = "AWS")]
    pub listener: Option<String>,
    /// aws: the listener's two target groups (ARNs; give it twice): the
    /// live one and the one blue/green and canaries use.
    #[arg(
        long = "target-group",
        global = true,
        value_name = "ARN",
        help_heading = "AWS"
    )]
    pub target_groups: Vec<String>,
    /// aws: blue/green's second Auto Scaling group (default: GROUP--b,
    /// made like GROUP when missing).
    #[arg(long, global = true, value_name = "NAME", help_heading = "AWS")]
    pub twin: Option<String>,
    /// aws: a test listener (ARN, plain HTTP) forwarding to the idle target
    /// group: a blue/green set passes the gate through it (/ready,
    /// /version image and index digest, every golden query, repeated so
    /// the balancer spreads it over the set) before the switch.
    #[arg(long, global = true, value_name = "ARN", help_heading = "AWS")]
    pub test_listener: Option<String>,
    /// aws: where roll reaches the test listener (HOST:PORT) when not at
    /// the balancer's DNS name (an internal ALB through a tunnel or a
    /// proxy into the VPC).
    #[arg(long, global = true, value_name = "HOST:PORT", help_heading = "AWS")]
    pub test_address: Option<String>,
    /// aws: a CloudWatch alarm (repeatable; metric or composite) in ALARM
    /// while a roll out runs (gates, bake time, replacing the rest) fails
    /// it and rolls back. A name that does not exist is refused at start.
    #[arg(
        long = "alarm",
        global = true,
        value_name = "NAME",
        help_heading = "AWS"
    )]
    pub alarms: Vec<String>,
}

/// The aws account settings: flags win over roll.toml's `[aws]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsAccount {
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// How new instances are gated: "health" or "private-ip".
    pub gate: Option<String>,
}

impl AwsArgs {
    /// roll.toml (`--config`), or an empty one.
    pub fn file(&self) -> Result<RollConfig, RollError> {
        match &self.config {
            Some(p) => RollConfig::load(p),
            None => Ok(RollConfig::default()),
        }
    }

    /// Region, bucket and gate from the flags, else roll.toml.
    pub fn account(&self) -> Result<AwsAccount, RollError> {
        let file = self.file()?;
        Ok(AwsAccount {
            region: self.region.clone().or(file.aws.region),
            bucket: self.aws_bucket.clone().or(file.aws.bucket),
            gate: self.gate_via.clone().or(file.aws.gate),
        })
    }
}

/// The service `group` is, on `backend`.
pub fn service(backend: &str, group: &GroupName, aws: &AwsArgs) -> Result<Service, RollError> {
    service_if_named(backend, group, aws)?.ok_or_else(|| {
        RollError::Usage(format!(
            "on aws, name the listener in front of {group}: --listener ARN or [group.{group}] listener in roll.toml"
        ))
    })
}

/// [`service`], or `None` on aws when neither flags nor roll.toml name the
/// group's listener (`roll status` then shows the groups alone).
pub fn service_if_named(
    backend: &str,
    group: &GroupName,
    aws: &AwsArgs,
) -> Result<Option<Service>, RollError> {
    if backend != "aws" {
        // `--alarm` is refused by the backend itself when the roll starts.
        let svc = Service {
            alarms: aws.alarms.clone(),
            ..Service::named(group)
        };
        return Ok(Some(svc));
    }
    let file = aws.file()?;
    let section = file.group.get(group.as_str()).cloned().unwrap_or_default();
    let Some(listener) = aws.listener.clone().or(section.listener) else {
        return Ok(None);
    };
    let tgs = if aws.target_groups.is_empty() {
        section.target_groups
    } else {
        aws.target_groups.clone()
    };
    let target_groups = match tgs.as_slice() {
        [] => None,
        [a, b] if a != b => Some((TargetGroupId::new(a.clone()), TargetGroupId::new(b.clone()))),
        _ => {
            return Err(RollError::Usage(format!(
                "{group}: name two different target groups (the live one and the idle one), got {}",
                tgs.len()
            )));
        }
    };
    let twin = aws
        .twin
        .clone()
        .or(section.twin)
        .map(GroupName::new)
        .unwrap_or_else(|| twin_of(group));
    let mut alarms = section.alarms;
    alarms.extend(aws.alarms.iter().cloned());
    alarms.sort();
    alarms.dedup();
    Ok(Some(Service {
        group: group.clone(),
        twin,
        listener: ListenerId::new(listener),
        target_groups,
        alarms,
        test_listener: aws
            .test_listener
            .clone()
            .or(section.test_listener)
            .map(ListenerId::new),
        test_address: aws.test_address.clone().or(section.test_address),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_services_are_named_after_the_group() {
        let s = service("local", &GroupName::from("web"), &AwsArgs::default()).unwrap();
        assert_eq!(s.listener.as_str(), "web");
        assert_eq!(s.twin.as_str(), "web--b");
        assert!(s.target_groups.is_none());
    }

    #[test]
    fn aws_services_come_from_the_file_and_flags_win() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("roll.toml");
        std::fs::write(
            &p,
            r#"
[aws]
region = "eu-west-1"
bucket = "b"
[group.web]
listener = "arn:l"
target_groups = ["arn:a", "arn:b"]
alarms = ["x"]
"#,
        )
        .unwrap();
        let args = AwsArgs {
            config: Some(p.clone()),
            alarms: vec!["y".into()],
            ..AwsArgs::default()
        };
        let s = service("aws", &GroupName::from("web"), &args).unwrap();
        let a = args.account().unwrap();
        assert_eq!(s.listener.as_str(), "arn:l");
        assert_eq!(
            s.target_groups,
            Some((TargetGroupId::from("arn:a"), TargetGroupId::from("arn:b")))
        );
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.alarms, vec!["x", "y"]);
        let args = AwsArgs {
            listener: Some("arn:flag".into()),
            ..args
        };
        let s = service("aws", &GroupName::from("web"), &args).unwrap();
        assert_eq!(s.listener.as_str(), "arn:flag");
        // No listener at all: bad input naming both ways to give one.
        let err = service("aws", &GroupName::from("api"), &AwsArgs::default()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--listener"), "{err}");
        // roll up's lines go into the section, the rest stays.
        assert!(
            write_service(
                &p,
                &GroupName::from("api"),
                "arn:l2",
                &["arn:c".into(), "arn:d".into()]
            )
            .unwrap()
        );
        assert!(
            !write_service(
                &p,
                &GroupName::from("api"),
                "arn:l2",
                &["arn:c".into(), "arn:d".into()]
            )
            .unwrap()
        );
        let s = service(
            "aws",
            &GroupName::from("api"),
            &AwsArgs {
                config: Some(p.clone()),
                ..AwsArgs::default()
            },
        )
        .unwrap();
        assert_eq!(s.listener.as_str(), "arn:l2");
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("alarms = [\"x\"]")
        );
        let err = write_service(&p, &GroupName::from("web"), "arn:other", &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        std::fs::write(&p, "[group.db]\nsubnets = [\"subnet-1\"]\n").unwrap();
        assert!(
            write_service(
                &p,
                &GroupName::from("db"),
                "arn:l3",
                &["arn:e".into(), "arn:f".into()]
            )
            .unwrap()
        );
        let c = RollConfig::load(&p).unwrap();
        assert_eq!(c.group["db"].listener.as_deref(), Some("arn:l3"));
        assert_eq!(c.group["db"].subnets, vec!["subnet-1"]);
        // A typo in the file is refused, naming it.
        std::fs::write(&p, "[group.web]\nlistner = \"x\"\n").unwrap();
        let err = RollConfig::load(&p).unwrap_err();
        assert!(err.to_string().contains("listner"), "{err}");
    }
}
