//! Builders: a throwaway machine that installs a payload and reports.
//!
//! Contract (both backends): `launch_builder` boots the base image and runs
//! the install script (`images/install.sh`) as
//! `install.sh --root R --payload P --sha256 H --result F`, where R is `/`
//! on aws and a fresh directory locally. The script verifies the payload's
//! sha256, installs, runs `searchd check` from inside R and writes the
//! result file ([`BuildReport::parse`]); then the machine powers off
//! (state [`InstanceState::Stopped`]). Everything launch creates (aws:
//! instance, security group, S3 objects; local: the builder directory) is
//! tagged with the run id at creation and removed by `terminate`.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{InstanceId, RunId, Tags};
use crate::images::BaseImage;
use crate::wait::{WaitParams, wait_until};

/// The payload: one tar.zst with everything to install, and its sha256,
/// which the builder verifies before touching anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub archive: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// The recipe's builder settings. Local ignores everything but is happy to
/// carry them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuilderSettings {
    pub instance_type: Option<String>,
    pub subnet: Option<String>,
    pub volume_gb: u32,
}

#[derive(Debug, Clone)]
pub struct BuilderSpec {
    pub run: RunId,
    pub base: BaseImage,
    pub payload: Payload,
    /// The install script, run unchanged on every backend.
    pub install_script: PathBuf,
    pub settings: BuilderSettings,
    /// Applied at creation to everything the launch creates.
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

/// What the builder reported: success, or the failing step and its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildReport {
    pub ok: bool,
    /// The last step that ran (`verify-payload`, `unpack`, `layout`,
    /// `unit`, `check`, or `done` on success).
    pub step: String,
    /// The step's output (on success: `searchd check --json`'s line).
    pub output: String,
}

impl BuildReport {
    /// Parses the result file: first line `ok` or `failed <step>`, then the
    /// output. Anything else is reported as a failure of step `report`.
    pub fn parse(text: &str) -> BuildReport {
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        let output = rest.trim_end().to_owned();
        match first.trim().split_once(' ') {
            None if first.trim() == "ok" => BuildReport {
                ok: true,
                step: "done".into(),
                output,
            },
            Some(("failed", step)) => BuildReport {
                ok: false,
                step: step.trim().to_owned(),
                output,
            },
            _ => BuildReport {
                ok: false,
                step: "report".into(),
                output: format!("unreadable result file: {}", text.trim()),
            },
        }
    }
}

#[async_trait]
pub trait Builders: Send + Sync {
    /// Boots a builder with the payload delivered and the install script as
    /// its only job. Returns once it is launched (not finished).
    async fn launch_builder(&self, spec: &BuilderSpec) -> Result<InstanceId>;

    async fn state(&self, id: &InstanceId) -> Result<InstanceState>;

    /// Waits until the builder powered itself off.
    async fn wait_stopped(&self, id: &InstanceId, params: WaitParams) -> Result<()> {
        wait_until(params, &format!("builder {id} to stop"), || async {
            match self.state(id).await? {
                InstanceState::Stopped => Ok(Some(())),
                InstanceState::Terminated | InstanceState::ShuttingDown => {
                    Err(crate::CloudError::Api {
                        op: format!("builder {id}"),
                        message: "terminated before it reported".into(),
                        source: None,
                    })
                }
                _ => Ok(None),
            }
        })
        .await
    }

    /// The builder's report, or `None` if it stopped without writing one.
    async fn result(&self, id: &InstanceId) -> Result<Option<BuildReport>>;

    /// Terminates the builder and deletes everything its launch created.
    /// Idempotent.
    async fn terminate(&self, id: &InstanceId) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reports() {
        let ok = BuildReport::parse("ok\n{\"ok\":true}\n");
        assert!(ok.ok);
        assert_eq!(ok.output, "{\"ok\":true}");
        let bad = BuildReport::parse("failed verify-payload\nsha256 mismatch\n");
        assert!(!bad.ok);
        assert_eq!(bad.step, "verify-payload");
        assert_eq!(bad.output, "sha256 mismatch");
        let junk = BuildReport::parse("");
        assert_eq!(junk.step, "report");
    }
}
