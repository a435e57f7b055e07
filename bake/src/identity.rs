//! The input digest: what makes two bakes "the same image".
//!
//! digest = sha256 of the canonical JSON (sorted keys, no spaces) of
//! `{"kiln_identity": 1, "base": <resolved base id>, "files": [{path,
//! sha256}…], "recipe": <normalised recipe>}`. The normalised recipe keeps
//! what shapes the image (name, tags, volume size, and `[logs]` when the
//! recipe has it: the collector and the peer name its certificate must
//! carry; the CA's bytes are one of the `files`) and drops what must not
//! matter: file *locations* (their bytes are in `files`), the description,
//! the base *selector* (its resolved id is what counts: a new AMI behind the
//! same SSM parameter is a new image), where the builder runs (instance
//! type, subnet) and where the result is published (regions, accounts).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::recipe::Recipe;

pub const IDENTITY_VERSION: u32 = 1;

/// One input file: its destination (or role) and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
}

#[derive(Serialize)]
struct Normalised<'a> {
    name: &'a str,
    tags: &'a BTreeMap<String, String>,
    volume_gb: u32,
    /// Absent without `[logs]`, so recipes without it keep their identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    logs: Option<NormalisedLogs>,
}

#[derive(Serialize)]
struct NormalisedLogs {
    forward: String,
    permitted_peer: String,
}

#[derive(Serialize)]
struct Identity<'a> {
    kiln_identity: u32,
    base: &'a str,
    files: Vec<&'a InputFile>,
    recipe: Normalised<'a>,
}

/// The canonical JSON the digest is taken over (shown by `--json` for
/// debugging "why did this rebake").
pub fn canonical(base_id: &str, files: &[InputFile], recipe: &Recipe) -> String {
    let mut files: Vec<&InputFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let id = Identity {
        kiln_identity: IDENTITY_VERSION,
        base: base_id,
        files,
        recipe: Normalised {
            name: &recipe.name,
            tags: &recipe.tags,
            volume_gb: recipe.builder.volume_gb,
            logs: recipe.logs.as_ref().map(|l| NormalisedLogs {
                forward: l.forward(),
                permitted_peer: l.permitted_peer.clone(),
            }),
        },
    };
    // Through `Value`: its maps are sorted, which makes the text canonical
    // whatever the struct field order.
    serde_json::to_value(&id)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

pub fn digest(canonical: &str) -> String {
    kiln_common::hex(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::SnapshotSource;

    fn recipe() -> Recipe {
        Recipe {
            path: "r.toml".into(),
            name: "searchd".into(),
            description: Some("x".into()),
            base_local: Some(cloud::BaseSelector::Scratch),
            base_aws: None,
            searchd: "a".into(),
            snapshot: SnapshotSource::Index("b".into()),
            config: "c".into(),
            install_script: "d".into(),
            builder: cloud::BuilderSettings {
                instance_type: Some("t3.small".into()),
                subnet: None,
                volume_gb: 8,
            },
            tags: BTreeMap::new(),
            regions: vec![],
            share_accounts: vec![],
            logs: None,
        }
    }

    fn files() -> Vec<InputFile> {
        vec![
            InputFile {
                path: "/b".into(),
                sha256: "2".into(),
            },
            InputFile {
                path: "/a".into(),
                sha256: "1".into(),
            },
        ]
    }

    #[test]
    fn canonical_is_sorted_and_ignores_what_must_not_matter() {
        let r = recipe();
        let c = canonical("scratch", &files(), &r);
        assert_eq!(
            c,
            r#"{"base":"scratch","files":[{"path":"/a","sha256":"1"},{"path":"/b","sha256":"2"}],"kiln_identity":1,"recipe":{"name":"searchd","tags":{},"volume_gb":8}}"#
        );
        let mut moved = recipe();
        moved.description = None;
        moved.searchd = "elsewhere".into();
        moved.builder.instance_type = Some("m7i.large".into());
        moved.regions = vec!["eu-west-1".into()];
        assert_eq!(digest(&canonical("scratch", &files(), &moved)), digest(&c));
    }

    #[test]
    fn what_matters_changes_the_digest() {
        let r = recipe();
        let d = digest(&canonical("scratch", &files(), &r));
        assert_ne!(d, digest(&canonical("sha256:00", &files(), &r)));
        let mut f = files();
        f[0].sha256 = "3".into();
        assert_ne!(d, digest(&canonical("scratch", &f, &r)));
        let mut t = recipe();
        t.tags.insert("team".into(), "x".into());
        assert_ne!(d, digest(&canonical("scratch", &files(), &t)));
    }

    #[test]
    fn logs_are_part_of_the_identity_and_the_ca_location_is_not() {
        let r = recipe();
        let d = digest(&canonical("scratch", &files(), &r));
        let mut with = recipe();
        with.logs = Some(crate::recipe::Logs {
            host: "logs.example.com".into(),
            port: 6514,
            permitted_peer: "logs.example.com".into(),
            ca: "ca.pem".into(),
        });
        let c = canonical("scratch", &files(), &with);
        assert!(
            c.contains(
                r#""logs":{"forward":"logs.example.com:6514","permitted_peer":"logs.example.com"}"#
            ),
            "{c}"
        );
        let dl = digest(&c);
        assert_ne!(d, dl);
        let mut moved = with.clone();
        moved.logs.as_mut().unwrap().ca = "elsewhere/ca.pem".into();
        assert_eq!(dl, digest(&canonical("scratch", &files(), &moved)));
        for change in [
            |l: &mut crate::recipe::Logs| l.port = 10514,
            |l: &mut crate::recipe::Logs| l.host = "logs2.example.com".into(),
            |l: &mut crate::recipe::Logs| l.permitted_peer = "*.example.com".into(),
        ] {
            let mut other = with.clone();
            change(other.logs.as_mut().unwrap());
            assert_ne!(dl, digest(&canonical("scratch", &files(), &other)));
        }
    }
}
