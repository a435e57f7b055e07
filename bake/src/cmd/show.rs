//! `bake show ID`: one image's manifest, with its tags as they are now
//! (the manifest keeps those it was created with; `kiln:state` changes
//! when the bake completes) and its bake state.

use cloud::{BakeState, ImageId, ImageManifest};
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

/// `--json`: the manifest (with the current tags) and the bake state.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    manifest: &'a ImageManifest,
    bake_state: BakeState,
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
    if args.json {
        super::print_json(&Shown {
            manifest: &m,
            bake_state: state,
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
    for f in &m.files {
        outln!(
            out,
            "file:            {} {} ({} bytes)",
            f.sha256,
            f.path,
            f.bytes
        );
    }
    for (k, v) in &m.tags {
        outln!(out, "tag:             {k}={v}");
    }
    super::write_stdout(&out)?;
    Ok(exit::OK)
}
