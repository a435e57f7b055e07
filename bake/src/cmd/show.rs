//! `bake show ID`: one image's manifest, with its tags as they are now
//! (the manifest keeps those it was created with; `kiln:state` changes
//! when the bake completes) and its bake state; its lineage (each parent
//! back to the first bake of the name, with the base each one started
//! from), its copies, its deprecation, its files with their sha256 and its
//! golden queries.

use cloud::{BakeState, Cloud, ImageId, ImageManifest};
use serde::Serialize;

use super::Global;
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image id (as `bake build` or `bake list` printed it).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print the whole manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--json`: the manifest (with the current tags), the bake state, the
/// lineage and the copies.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    manifest: &'a ImageManifest,
    bake_state: BakeState,
    /// Parent first, then its parent, and so on.
    lineage: Vec<Ancestor>,
    copies: Vec<Copy>,
    deprecate_at: Option<String>,
}

#[derive(Serialize)]
struct Ancestor {
    id: ImageId,
    /// Deleted (pruned) images are named but no longer described.
    exists: bool,
    created: Option<String>,
    base: Option<String>,
    digest: Option<String>,
}

#[derive(Serialize)]
struct Copy {
    region: String,
    id: ImageId,
}

/// How far back the lineage is followed.
const MAX_LINEAGE: usize = 50;

/// The parents of `m`, nearest first, until one has no parent, is gone,
/// or the chain repeats.
async fn lineage(cloud: &Cloud, m: &ImageManifest) -> Result<Vec<Ancestor>, BakeError> {
    let mut out: Vec<Ancestor> = Vec::new();
    let mut next = m.parents.first().cloned();
    while let Some(id) = next.take() {
        if out.len() >= MAX_LINEAGE || id == m.id || out.iter().any(|a| a.id == id) {
            break;
        }
        match cloud.images().manifest(&id).await {
            Ok(p) => {
                next = p.parents.first().cloned();
                out.push(Ancestor {
                    id,
                    exists: true,
                    created: Some(p.created),
                    base: Some(format!("{} ({})", p.base.id, p.base.name)),
                    digest: Some(p.digest),
                });
            }
            Err(cloud::CloudError::NotFound { .. }) => out.push(Ancestor {
                id,
                exists: false,
                created: None,
                base: None,
                digest: None,
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let id = ImageId::new(args.id);
    let (info, mut m) = match cloud.images().describe(&id).await {
        Ok(info) => (info, cloud.images().manifest(&id).await?),
        // A wrong id is the caller's input, not a failing cloud.
        Err(e @ cloud::CloudError::NotFound { .. }) => return Err(BakeError::Usage(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    m.tags = info.tags.clone();
    let state = info.bake_state();
    let lineage = lineage(&cloud, &m).await?;
    let copies: Vec<Copy> = cloud
        .images()
        .copies(&id)
        .await?
        .into_iter()
        .map(|(region, id)| Copy {
            region: region.to_string(),
            id,
        })
        .collect();
    let deprecate_at = info.deprecate_at().map(cloud::time::rfc3339);
    if args.json {
        super::print_json(&Shown {
            manifest: &m,
            bake_state: state,
            lineage,
            copies,
            deprecate_at,
        })?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    outln!(out, "id:              {}", m.id);
    outln!(out, "name:            {}", m.name);
    outln!(out, "state:           {}", state.as_str());
    outln!(out, "digest:          {}", m.digest);
    outln!(out, "created:         {}", m.created);
    outln!(out, "base:            {} ({})", m.base.id, m.base.name);
    let parents: Vec<String> = m.parents.iter().map(ToString::to_string).collect();
    outln!(
        out,
        "parents:         {}",
        if parents.is_empty() {
            "-".into()
        } else {
            parents.join(", ")
        }
    );
    outln!(out, "searchd:         {}", m.searchd_version);
    outln!(
        out,
        "index:           {} ({} documents, digest {}, {} golden queries)",
        m.index.name,
        m.index.documents,
        m.index.digest,
        m.index.golden.len()
    );
    if let Some(r) = &m.rootfs {
        outln!(
            out,
            "rootfs:          {} ({} bytes, sha256 {})",
            r.file,
            r.bytes,
            r.sha256
        );
    }
    outln!(out, "run:             {}", m.run);
    if let Some(t) = &deprecate_at {
        outln!(out, "deprecate at:    {t}");
    }
    for a in &lineage {
        if a.exists {
            outln!(
                out,
                "lineage:         {} created {}, base {}, digest {}",
                a.id,
                a.created.as_deref().unwrap_or("-"),
                a.base.as_deref().unwrap_or("-"),
                a.digest.as_deref().unwrap_or("-")
            );
        } else {
            outln!(out, "lineage:         {} (deleted)", a.id);
        }
    }
    for c in &copies {
        outln!(out, "copy:            {} {}", c.region, c.id);
    }
    for f in &m.files {
        outln!(
            out,
            "file:            {} {} ({} bytes)",
            f.sha256,
            f.path,
            f.bytes
        );
    }
    for g in &m.index.golden {
        outln!(
            out,
            "golden:          {:?} ids={} offset={} total={}",
            g.query,
            g.ids,
            g.offset,
            g.total
        );
    }
    for (k, v) in &m.tags {
        outln!(out, "tag:             {k}={v}");
    }
    super::write_stdout(&out)?;
    Ok(exit::OK)
}
