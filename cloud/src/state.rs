//! The state directory (`.kiln/`, `--state-dir`, `KILN_STATE_DIR`): bake's
//! local workspace on every backend, and the local backend's whole cloud.
//!
//! ```text
//! .kiln/
//!   lock                  flock: held while changing shared state
//!   runs/<run>.lock       flock: held by a live run for its whole life
//!   tmp/<run>/            a run's scratch files (payload, snapshot)
//!   images/<id>/          local images: rootfs.tar.zst + manifest.json
//!   images/.tmp-<run>-*   an image being written (renamed into place)
//!   builders/<instance>/  a local builder: root/, payload, result, run
//!   fleet/                the fleet daemon: groups, balancers, instances (local/fleet/)
//!   stats/launches        how many builders this state dir ever launched
//! ```
//!
//! Liveness is a lock, not a pid: the kernel drops a dead process's flock,
//! so after `kill -9` every `runs/<run>.lock` of that run is free and `gc`
//! knows all of the run's files are garbage.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{CloudError, Result};
use crate::ids::RunId;

const SUBDIRS: [&str; 6] = ["runs", "tmp", "images", "builders", "fleet", "stats"];

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Proof that the state lock is held; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// A live run: its lock and its scratch directory. Dropping it releases
/// the lock and removes both.
#[derive(Debug)]
pub struct RunGuard {
    run: RunId,
    lock_path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir> {
        let root = root.into();
        for sub in SUBDIRS {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| CloudError::io("create", &p, e))?;
        }
        Ok(StateDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// Blocks until the state lock is ours. Held only around
    /// read-modify-write sequences, never across a whole bake.
    pub fn lock(&self) -> Result<StateLock> {
        let path = self.root.join("lock");
        let file = open_lock_file(&path)?;
        file.lock().map_err(|e| CloudError::io("lock", &path, e))?;
        Ok(StateLock { _file: file })
    }

    /// A lock of its own for `name` (`locks/<name>.lock`), held for as long
    /// as the returned guard lives: `Ok(None)` if another process holds it
    /// now. Bakes of the same inputs on one machine take the digest's, so
    /// the second waits for the first instead of baking again.
    pub fn try_lock_named(&self, name: &str) -> Result<Option<StateLock>> {
        let path = self.named_lock_path(name)?;
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StateLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(CloudError::io("lock", &path, e)),
        }
    }

    /// [`StateDir::try_lock_named`], waiting (blocking the thread) until it
    /// is free.
    pub fn lock_named(&self, name: &str) -> Result<StateLock> {
        let path = self.named_lock_path(name)?;
        let file = open_lock_file(&path)?;
        file.lock().map_err(|e| CloudError::io("lock", &path, e))?;
        Ok(StateLock { _file: file })
    }

    fn named_lock_path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(CloudError::invalid("lock name", format!("{name:?}")));
        }
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| CloudError::io("create", &dir, e))?;
        Ok(dir.join(format!("{name}.lock")))
    }

    /// Registers a live run. Fails if the run id is somehow taken.
    pub fn begin_run(&self, run: &RunId) -> Result<RunGuard> {
        let lock_path = self.run_lock_path(run);
        if lock_path.exists() {
            return Err(CloudError::Locked {
                what: "run",
                path: lock_path,
            });
        }
        // Locked under a private name, then renamed into place (the lock
        // follows the inode): `gc` never sees the run's lock file unlocked
        // while the run is alive.
        let staging = self
            .root
            .join("runs")
            .join(format!(".{run}.{}.new", std::process::id()));
        let file = open_lock_file(&staging)?;
        if let Err(e) = file.lock() {
            let _ = std::fs::remove_file(&staging);
            return Err(CloudError::io("lock", &staging, e));
        }
        std::fs::rename(&staging, &lock_path).map_err(|e| {
            let _ = std::fs::remove_file(&staging);
            CloudError::io("rename", &lock_path, e)
        })?;
        let tmp = self.run_tmp(run);
        std::fs::create_dir_all(&tmp).map_err(|e| CloudError::io("create", &tmp, e))?;
        Ok(RunGuard {
            run: run.clone(),
            lock_path,
            tmp,
            file: Some(file),
        })
    }

    /// Whether a run is still alive (its lock is held by someone).
    pub fn run_alive(&self, run: &RunId) -> bool {
        let path = self.run_lock_path(run);
        let Ok(file) = File::open(&path) else {
            return false;
        };
        // Taking the lock ourselves proves nobody holds it; it is released
        // again when `file` drops.
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// Runs that left a lock file behind (alive or not).
    pub fn runs(&self) -> Result<Vec<RunId>> {
        let dir = self.root.join("runs");
        let mut runs = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| CloudError::io("read", &dir, e))? {
            let e = e.map_err(|e| CloudError::io("read", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(run) = name.strip_suffix(".lock") {
                runs.push(RunId::new(run));
            }
        }
        runs.sort();
        Ok(runs)
    }

    pub fn run_lock_path(&self, run: &RunId) -> PathBuf {
        self.root.join("runs").join(format!("{run}.lock"))
    }

    pub fn run_tmp(&self, run: &RunId) -> PathBuf {
        self.root.join("tmp").join(run.as_str())
    }

    /// Adds one to a counter in `stats/` (under the state lock) and returns
    /// the new value. Used to prove what a run did (e.g. builders launched).
    pub fn bump(&self, counter: &str) -> Result<u64> {
        let _lock = self.lock()?;
        let path = self.root.join("stats").join(counter);
        let n = self.counter_at(&path) + 1;
        write_atomically(&path, format!("{n}\n").as_bytes())?;
        Ok(n)
    }

    pub fn counter(&self, counter: &str) -> u64 {
        self.counter_at(&self.root.join("stats").join(counter))
    }

    fn counter_at(&self, path: &Path) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl RunGuard {
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The run's scratch directory (removed when the guard drops).
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        // Scratch first, lock last: while the lock file exists and is held,
        // gc leaves the scratch alone.
        let _ = std::fs::remove_dir_all(&self.tmp);
        let _ = std::fs::remove_file(&self.lock_path);
        self.file.take();
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| CloudError::io("open", path, e))
}

/// [`kiln_common::write_atomically`], with kiln's error.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    kiln_common::write_atomically(path, bytes).map_err(|e| CloudError::io("write", path, e))
}

pub use kiln_common::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lock_marks_liveness() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let run = RunId::from("run-1");
        assert!(!s.run_alive(&run));
        let g = s.begin_run(&run).unwrap();
        assert!(s.run_alive(&run));
        assert!(g.tmp().is_dir());
        assert!(s.begin_run(&run).is_err());
        drop(g);
        assert!(!s.run_alive(&run));
        assert!(s.runs().unwrap().is_empty());
    }

    #[test]
    fn counters_count() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.counter("launches"), 0);
        assert_eq!(s.bump("launches").unwrap(), 1);
        assert_eq!(s.bump("launches").unwrap(), 2);
        assert_eq!(s.counter("launches"), 2);
    }
}
