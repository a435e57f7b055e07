//! Fixture helpers for bake's integration tests: a private copy of
//! `images/` and a temp state dir per test, and the real `bake` binary.
//!
//! searchd binary: `$KILN_STATIC_SEARCHD` when it exists (`make test` builds
//! and exports the static one), else the debug `searchd` next to this test
//! binary (`cargo test --workspace` builds it). The local builder runs it
//! without a chroot, so a dynamically linked debug binary works too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Fx {
    pub dir: tempfile::TempDir,
}

pub fn searchd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_STATIC_SEARCHD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/searchd
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("searchd"))
        .expect("target dir");
    assert!(
        p.is_file(),
        "no searchd binary: run `make static` (KILN_STATIC_SEARCHD) or `cargo build -p searchd` ({})",
        p.display()
    );
    p
}

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")
}

impl Fx {
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("images");
        std::fs::create_dir_all(img.join("books")).unwrap();
        let src = images_dir();
        for f in [
            "searchd.toml",
            "searchd.env",
            "install.sh",
            "books/index.toml",
            "books/books.csv",
        ] {
            std::fs::copy(src.join(f), img.join(f)).unwrap();
        }
        Fx { dir }
    }

    pub fn recipe(&self) -> PathBuf {
        self.dir.path().join("images/searchd.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Rewrites the recipe with `f`.
    pub fn edit_recipe(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.recipe()).unwrap();
        std::fs::write(self.recipe(), f(text)).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bake"));
        c.arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("KILN_STATIC_SEARCHD", searchd_bin())
            .env_remove("KILN_TEST_FAULT")
            .env_remove("KILN_LOCAL_BUILDER_HOLD")
            .env_remove("KILN_LOG")
            .env_remove("KILN_BACKEND");
        c
    }

    pub fn bake(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run bake")
    }

    /// `bake build --json RECIPE`, asserting success; the parsed result.
    pub fn build_json(&self) -> serde_json::Value {
        let recipe = self.recipe();
        let out = self.bake(&["build", "--json", recipe.to_str().unwrap()]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).expect("json on stdout")
    }

    pub fn launches(&self) -> u64 {
        std::fs::read_to_string(self.state().join("stats/launches"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Everything a run may leave behind; empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["builders", "tmp", "runs"] {
            if let Ok(rd) = std::fs::read_dir(self.state().join(sub)) {
                for e in rd.flatten() {
                    v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.state().join("images")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    v.push(format!("images/{n}"));
                }
            }
        }
        v.sort();
        v
    }

    pub fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state().join("images"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "bake failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Builds a snapshot of the fixture's books with the searchd binary.
pub fn build_snapshot(fx: &Fx, out: &Path) {
    let status = Command::new(searchd_bin())
        .args(["index", "--def"])
        .arg(fx.path("images/books/index.toml"))
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether a process (group leader) still exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `f` every 20 ms for up to `secs`.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// The local fleet daemon (`cloud::local::fleet::run`) running inside this
/// test process, on the caller's tokio runtime (multi-thread, so it keeps
/// serving while the test thread runs other things). Dropped — test
/// passed or panicked — it aborts the daemon and SIGKILLs every instance
/// process group the fleet started, so no searchd outlives the test.
pub struct InProcessFleet {
    state: cloud::StateDir,
    daemon: Option<tokio::task::JoinHandle<cloud::Result<bool>>>,
}

impl InProcessFleet {
    /// Starts the daemon and waits until it answers on its socket.
    pub async fn start(state: &cloud::StateDir) -> InProcessFleet {
        let fleet = InProcessFleet {
            state: state.clone(),
            daemon: Some(tokio::spawn(cloud::local::fleet::run(state.clone()))),
        };
        let client = cloud::local::LocalCloud::new(state.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while client.fleet().daemon_pid().await != Some(std::process::id()) {
            let daemon = fleet.daemon.as_ref().expect("running");
            assert!(
                !daemon.is_finished(),
                "the fleet daemon stopped while starting"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the fleet daemon did not answer within 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        fleet
    }

    /// Waits for the daemon to exit — it does once it serves no group and
    /// no listener — and checks it stopped every instance.
    pub async fn stopped(mut self) {
        let daemon = self.daemon.take().expect("running");
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), daemon)
            .await
            .expect("the fleet daemon exits once it serves nothing")
            .expect("the daemon task");
        assert!(matches!(out, Ok(true)), "the fleet daemon: {out:?}");
        let left = fleet_instance_dirs(self.state.root());
        assert!(left.is_empty(), "instances left behind: {left:?}");
    }
}

impl Drop for InProcessFleet {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.abort();
        }
        kill_fleet_instances(self.state.root());
    }
}

/// `fleet/instances/*` under the state dir.
pub fn fleet_instance_dirs(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("fleet/instances"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// SIGKILLs the process group of every instance the fleet under `state`
/// knows (its `pgid` file, and its state.json); returns them.
pub fn kill_fleet_instances(state: &Path) -> Vec<u32> {
    let mut pgids: Vec<u32> = fleet_instance_dirs(state)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("pgid")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if let Ok(model) = cloud::local::fleet::model::Model::load(&state.join("fleet/state.json")) {
        pgids.extend(
            model
                .groups
                .values()
                .flat_map(|g| g.instances.iter().filter_map(|i| i.pgid)),
        );
    }
    pgids.sort();
    pgids.dedup();
    for &pgid in &pgids {
        cloud::local::fleet::supervisor::kill(pgid);
    }
    pgids
}

/// The payload entries every image has: the static searchd, the snapshot
/// `idx` as index/books.idx, and images/searchd.env.
pub fn base_entries(fx: &Fx, idx: PathBuf) -> Vec<bake::payload::Entry> {
    vec![
        bake::payload::Entry {
            name: "bin/searchd".into(),
            source: searchd_bin(),
            executable: true,
        },
        bake::payload::Entry {
            name: "index/books.idx".into(),
            source: idx,
            executable: false,
        },
        bake::payload::Entry {
            name: "etc/searchd.env".into(),
            source: fx.path("images/searchd.env"),
            executable: false,
        },
    ]
}
