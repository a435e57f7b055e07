//! Local builders: `builders/<run>--<instance>/` holding `root/` (the
//! machine's disk, populated from the base), `payload.tar.zst`,
//! `install.sh`, and after the run `result` and `stopped`.
//!
//! The "machine" is `sh` running the same install script the aws builder
//! runs, in its own process group (so a terminal's Ctrl-C reaches bake,
//! which then terminates it in order) with `instance.lock` as its stdin:
//! the lock is held for as long as any of its processes live, even if bake
//! is killed, so `gc` can tell a running orphan from a dead one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

use super::{Child, LocalCloud, pack};
use crate::error::{CloudError, Result};
use crate::ids::InstanceId;
use crate::instances::{BuildReport, BuilderSpec, Builders, InstanceState};
use crate::wait::{WaitParams, wait_until};

/// Test hook: seconds a local builder waits before installing, so tests can
/// interrupt a bake while its builder runs.
pub const HOLD_ENV: &str = "KILN_LOCAL_BUILDER_HOLD";

/// The local equivalent of the aws user-data: run the install script, then
/// "power off" by writing `stopped` (atomically, with the exit status).
const BOOT: &str = r#"
hold="${KILN_LOCAL_BUILDER_HOLD:-0}"
case "$hold" in ''|*[!0-9]*) hold=0 ;; esac
[ "$hold" -gt 0 ] && sleep "$hold"
sh ./install.sh --root "$PWD/root" --payload "$PWD/payload.tar.zst" --sha256 "$KILN_PAYLOAD_SHA256" --result "$PWD/result"
echo "$?" > stopped.tmp && mv stopped.tmp stopped
"#;

impl LocalCloud {
    /// `builders/<run>--<id>` for an instance id, if it exists.
    pub(super) fn builder_dir(&self, id: &InstanceId) -> Result<PathBuf> {
        let valid = id.as_str().starts_with("i-")
            && id.as_str()[2..].chars().all(|c| c.is_ascii_hexdigit());
        let dir = self.state.path("builders");
        let suffix = format!("--{id}");
        if valid {
            for e in std::fs::read_dir(&dir).map_err(|e| CloudError::io("read", &dir, e))? {
                let e = e.map_err(|e| CloudError::io("read", &dir, e))?;
                if e.file_name().to_string_lossy().ends_with(&suffix) {
                    return Ok(e.path());
                }
            }
        }
        Err(CloudError::not_found(
            "builder",
            id,
            self.state.root().display(),
        ))
    }
}

/// Everything a launch does on disk before the machine boots. Blocking.
fn prepare(dir: &Path, spec: &BuilderSpec) -> Result<std::fs::File> {
    let lock_path = dir.join("instance.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| CloudError::io("create", &lock_path, e))?;
    lock.lock()
        .map_err(|e| CloudError::io("lock", &lock_path, e))?;
    let script = dir.join("install.sh");
    std::fs::copy(&spec.install_script, &script)
        .map_err(|e| CloudError::io("copy install script", &spec.install_script, e))?;
    let payload = dir.join("payload.tar.zst");
    // Delivering the payload: a hard link when possible (same file
    // system), else a copy. Either way the builder verifies its sha256.
    if std::fs::hard_link(&spec.payload.archive, &payload).is_err() {
        std::fs::copy(&spec.payload.archive, &payload)
            .map_err(|e| CloudError::io("deliver payload", &spec.payload.archive, e))?;
    }
    let root = dir.join("root");
    std::fs::create_dir(&root).map_err(|e| CloudError::io("create", &root, e))?;
    if let Some(tarball) = &spec.base.tarball {
        pack::unpack(tarball, &root).map_err(|e| {
            CloudError::invalid(
                "base tarball",
                format!("cannot unpack {}: {e}", tarball.display()),
            )
        })?;
    }
    Ok(lock)
}

impl LocalCloud {
    async fn launch(&self, dir: &Path, spec: &BuilderSpec) -> Result<Child> {
        let lock = {
            let (dir, spec) = (dir.to_owned(), spec.clone());
            tokio::task::spawn_blocking(move || prepare(&dir, &spec))
                .await
                .map_err(|e| CloudError::io("prepare builder", "", std::io::Error::other(e)))??
        };
        let stdin = lock
            .try_clone()
            .map_err(|e| CloudError::io("dup", dir, e))?;
        let console = dir.join("console.log");
        let out =
            std::fs::File::create(&console).map_err(|e| CloudError::io("create", &console, e))?;
        let err = out
            .try_clone()
            .map_err(|e| CloudError::io("dup", &console, e))?;
        let process = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(BOOT)
            .current_dir(dir)
            .env("KILN_PAYLOAD_SHA256", &spec.payload.sha256)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()
            .map_err(|e| CloudError::io("start builder in", dir, e))?;
        if let Some(pid) = process.id() {
            let p = dir.join("pgid");
            std::fs::write(&p, format!("{pid}\n")).map_err(|e| CloudError::io("write", &p, e))?;
        }
        Ok(Child {
            process,
            _lock: lock,
        })
    }
}

/// SIGKILL to a whole process group (the builder's shell and whatever it
/// started).
async fn kill_group(pgid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Whether some process still holds the builder's lock.
fn lock_held(dir: &Path) -> bool {
    match std::fs::File::open(dir.join("instance.lock")) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Stops an orphaned builder (its launcher died) and waits until all of its
/// processes are gone.
pub(super) async fn stop_orphan(dir: &Path) -> Result<()> {
    if !lock_held(dir) {
        return Ok(());
    }
    let pgid = std::fs::read_to_string(dir.join("pgid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(pgid) = pgid {
        kill_group(pgid).await;
    }
    let params = WaitParams::LOCAL.with_timeout(Duration::from_secs(10));
    wait_until(
        params,
        &format!("builder {} to exit", dir.display()),
        || async { Ok((!lock_held(dir)).then_some(())) },
    )
    .await
}

#[async_trait]
impl Builders for LocalCloud {
    async fn launch_builder(&self, spec: &BuilderSpec) -> Result<InstanceId> {
        let id = InstanceId::new(format!("i-{:016x}", fastrand::u64(..)));
        let dir = self
            .state
            .path("builders")
            .join(format!("{}--{id}", spec.run));
        std::fs::create_dir(&dir).map_err(|e| CloudError::io("create", &dir, e))?;
        match self.launch(&dir, spec).await {
            Ok(child) => {
                if let Ok(mut map) = self.children.lock() {
                    map.insert(id.clone(), child);
                }
                self.state.bump("launches")?;
                Ok(id)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    async fn state(&self, id: &InstanceId) -> Result<InstanceState> {
        let dir = self.builder_dir(id)?;
        if dir.join("stopped").exists() {
            // Reap the finished shell so it does not linger as a zombie.
            if let Ok(mut map) = self.children.lock()
                && let Some(c) = map.get_mut(id)
            {
                let _ = c.process.try_wait();
            }
            Ok(InstanceState::Stopped)
        } else {
            Ok(InstanceState::Running)
        }
    }

    async fn result(&self, id: &InstanceId) -> Result<Option<BuildReport>> {
        let dir = self.builder_dir(id)?;
        let path = dir.join("result");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(BuildReport::parse(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CloudError::io("read", &path, e)),
        }
    }

    async fn terminate(&self, id: &InstanceId) -> Result<()> {
        let child = self.children.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(mut c) = child {
            if let Some(pgid) = c.process.id() {
                kill_group(pgid).await;
            }
            let _ = c.process.wait().await;
        }
        let dir = match self.builder_dir(id) {
            Ok(d) => d,
            Err(CloudError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Grandchildren may outlive the shell; wait for every holder of
        // the lock before deleting the disk under them.
        stop_orphan(&dir).await?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CloudError::io("remove", &dir, e)),
        }
    }
}
