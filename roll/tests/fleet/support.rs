//! Fixtures for roll's end-to-end tests on the local backend: a temp state
//! dir with two real images baked by the real `bake` (v1 from the books,
//! v2 from the books plus one more), the real `roll` binary, a bounded
//! load generator that sends requests through the balancer the whole time
//! and checks every answer, and "forged" bad images (a real image copied
//! with one thing broken) for the gate-failure tests.
//!
//! Everything binds 127.0.0.0/8 only. Every fleet is stopped when its
//! fixture drops (roll down, then SIGKILL to whatever is left), whatever
//! the test did.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn roll_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roll"))
}

/// The `bake` binary of the same build (the workspace test build makes
/// it; `make test` runs that).
pub fn bake_bin() -> PathBuf {
    let p = roll_bin().parent().expect("target dir").join("bake");
    assert!(
        p.is_file(),
        "no bake binary at {} (build the workspace: `cargo build -p bake`)",
        p.display()
    );
    p
}

pub fn searchd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_STATIC_SEARCHD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
    }
    let p = roll_bin().parent().expect("target dir").join("searchd");
    assert!(
        p.is_file(),
        "no searchd binary: run `make static` (KILN_STATIC_SEARCHD) or `cargo build -p searchd`"
    );
    p
}

fn images_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")
}

/// The extra book v2 carries.
/// (books.csv has no newline at its end.)
pub const V2_BOOK: &str =
    "\n541,\"Alan Turing: The Enigma\",\"Hodges, Andrew\",1983,Simon & Schuster,Biography\n";

/// Queries the load generator sends; some answer differently on v2.
pub const QUERIES: [&str; 6] = [
    "alan",
    "title:turing",
    "hemingwai~",
    "author:hodges",
    "history",
    "enigma",
];

pub struct Fx {
    pub dir: tempfile::TempDir,
    pub v1: String,
    pub v2: String,
    /// Groups this fixture brought up (stopped on drop).
    groups: Mutex<Vec<String>>,
}

impl Fx {
    /// A state dir with v1 and v2 baked.
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut fx = Fx {
            dir,
            v1: String::new(),
            v2: String::new(),
            groups: Mutex::new(Vec::new()),
        };
        fx.v1 = fx.bake_variant("v1", "");
        fx.v2 = fx.bake_variant("v2", V2_BOOK);
        fx
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// Bakes images/ with `extra` appended to the books.
    pub fn bake_variant(&self, name: &str, extra: &str) -> String {
        let img = self.path(name);
        std::fs::create_dir_all(img.join("books")).unwrap();
        for f in [
            "searchd.toml",
            "searchd.env",
            "install.sh",
            "books/index.toml",
            "books/books.csv",
        ] {
            std::fs::copy(images_src().join(f), img.join(f)).unwrap();
        }
        if !extra.is_empty() {
            let mut csv = std::fs::read_to_string(img.join("books/books.csv")).unwrap();
            csv.push_str(extra);
            std::fs::write(img.join("books/books.csv"), csv).unwrap();
        }
        let out = Command::new(bake_bin())
            .args(["--state-dir"])
            .arg(self.state())
            .arg("build")
            .arg(img.join("searchd.toml"))
            .env("KILN_STATIC_SEARCHD", searchd_bin())
            .env_remove("KILN_BACKEND")
            .output()
            .expect("run bake");
        assert!(
            out.status.success(),
            "bake {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn roll_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(roll_bin());
        c.arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env_remove("KILN_BACKEND")
            .env("KILN_LOG", "warn");
        c
    }

    pub fn roll(&self, args: &[&str]) -> Output {
        self.roll_cmd(args).output().expect("run roll")
    }

    /// `roll up` with fast health checks; returns the balancer's address.
    pub fn up(&self, group: &str, image: &str, size: u32) -> SocketAddr {
        self.groups.lock().unwrap().push(group.to_owned());
        let size = size.to_string();
        let out = self.roll(&[
            "up",
            "--group",
            group,
            "--image",
            image,
            "--size",
            &size,
            "--listen",
            "127.0.0.1:0",
            // Fast, but not so tight that a busy CI machine fails a check:
            // unhealthy takes 3 missed checks of 300 ms.
            "--health-interval",
            "300ms",
            "--health-timeout",
            "300ms",
            "--unhealthy-threshold",
            "3",
            "--deregistration-delay",
            "5s",
            "--timeout",
            "60s",
        ]);
        assert_ok(&out, "roll up");
        let url = String::from_utf8(out.stdout).unwrap();
        url.trim()
            .trim_start_matches("http://")
            .parse()
            .expect("roll up prints the balancer's URL")
    }

    pub fn status(&self, group: &str) -> serde_json::Value {
        let out = self.roll(&["status", "--group", group, "--json"]);
        assert_ok(&out, "roll status");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// (instance id, image, lifecycle, health) of the live group.
    pub fn live_instances(&self, group: &str) -> Vec<(String, String, String, String)> {
        let s = self.status(group);
        let mut out = Vec::new();
        for g in s["groups"].as_array().unwrap() {
            if g["live"] != true {
                continue;
            }
            for i in g["instances"].as_array().unwrap() {
                let id = i["id"].as_str().unwrap().to_owned();
                let health = g["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["target"]["instance"] == i["id"])
                    .map(|t| t["health"]["state"].as_str().unwrap().to_owned())
                    .unwrap_or_else(|| "-".into());
                out.push((
                    id,
                    i["image"].as_str().unwrap().to_owned(),
                    i["lifecycle"].as_str().unwrap().to_owned(),
                    health,
                ));
            }
        }
        out
    }

    /// Asserts the live group runs `n` healthy in-service instances of
    /// `image` and nothing else.
    pub fn assert_fleet(&self, group: &str, image: &str, n: usize) {
        let got = self.live_instances(group);
        assert_eq!(got.len(), n, "{got:?}");
        for (id, img, lc, h) in &got {
            assert_eq!(img, image, "{id} runs {img}: {got:?}");
            assert_eq!(lc, "in_service", "{id}: {got:?}");
            assert_eq!(h, "healthy", "{id}: {got:?}");
        }
    }

    /// How many instances the fleet ever launched.
    pub fn launches(&self) -> u64 {
        std::fs::read_to_string(self.state().join("stats/instance-launches"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state().join("fleet/daemon.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Process group of each instance, from the fleet's state.
    pub fn instance_pgids(&self) -> BTreeMap<String, i32> {
        let text =
            std::fs::read_to_string(self.state().join("fleet/state.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut out = BTreeMap::new();
        if let Some(groups) = v["groups"].as_object() {
            for g in groups.values() {
                for i in g["instances"].as_array().into_iter().flatten() {
                    if let Some(p) = i["pgid"].as_i64() {
                        out.insert(i["id"].as_str().unwrap_or("").to_owned(), p as i32);
                    }
                }
            }
        }
        out
    }

    /// A copy of image `from` under a new id, with `mutate` applied to its
    /// unpacked root and manifest: a real image with one thing broken.
    pub fn forge(
        &self,
        from: &str,
        tag: &str,
        mutate_root: impl FnOnce(&Path),
        mutate_manifest: impl FnOnce(&mut serde_json::Value),
    ) -> String {
        let images = self.state().join("images");
        let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
        let id = format!("img-{hex:0>24.24}");
        let dir = images.join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let root = self.path(&format!("forge-{tag}"));
        std::fs::create_dir_all(&root).unwrap();
        let src = images.join(from);
        sh(&format!(
            "zstd -q -dc {} | tar -x -C {}",
            src.join("rootfs.tar.zst").display(),
            root.display()
        ));
        mutate_root(&root);
        sh(&format!(
            "tar -C {} -cf - . | zstd -q -o {}",
            root.display(),
            dir.join("rootfs.tar.zst").display()
        ));
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(src.join("manifest.json")).unwrap()).unwrap();
        m["id"] = serde_json::Value::String(id.clone());
        // A forged image is its own: a digest nobody else has.
        let digest = format!("{hex:0>64.64}");
        m["digest"] = serde_json::Value::String(digest.clone());
        m["tags"]["kiln:digest"] = serde_json::Value::String(digest);
        m["rootfs"] = serde_json::Value::Null;
        mutate_manifest(&mut m);
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
        id
    }

    /// Stops `group` now (roll down).
    pub fn down(&self, group: &str) {
        let out = self.roll(&["down", "--group", group]);
        assert_ok(&out, "roll down");
        self.groups.lock().unwrap().retain(|g| g != group);
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        for g in self.groups.lock().map(|g| g.clone()).unwrap_or_default() {
            let _ = self
                .roll_cmd(&["down", "--group", &g])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Whatever survived (a test that failed half-way): kill it.
        for pgid in self.instance_pgids().values() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
        if let Some(pid) = self.daemon_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

pub fn sh(script: &str) {
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "sh: {script}");
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `roll` in the background (stderr captured to a file).
pub fn spawn(fx: &Fx, args: &[&str], log: &str) -> Child {
    let f = std::fs::File::create(fx.path(log)).unwrap();
    fx.roll_cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap()
}

/// Waits (bounded) until `cond`.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// What the load generator saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    /// Transport errors and non-200 answers, with examples.
    pub failed: u64,
    pub examples: Vec<String>,
    /// Normalised answers per query.
    pub answers: BTreeMap<String, std::collections::BTreeSet<Vec<u8>>>,
}

/// A bounded load generator: `conns` keep-alive connections sending GETs
/// of [`QUERIES`] through the balancer until stopped (or `max` requests,
/// or `max_time`).
pub struct Load {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<LoadResult>>,
}

impl Load {
    pub fn start(addr: SocketAddr, conns: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), count.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(load(addr, conns, s, c, 200_000, Duration::from_secs(120)))
        });
        let l = Load {
            stop,
            count,
            handle: Some(handle),
        };
        // Running before the caller goes on.
        eventually(10, "the load generator's first answers", || l.count() > 20);
        l
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn stop(mut self) -> LoadResult {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

async fn load(
    addr: SocketAddr,
    conns: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    max: u64,
    max_time: Duration,
) -> LoadResult {
    let result = Arc::new(Mutex::new(LoadResult::default()));
    let end = tokio::time::Instant::now() + max_time;
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (stop, count, result) = (stop.clone(), count.clone(), result.clone());
        tasks.push(tokio::spawn(async move {
            let timeout = Duration::from_secs(10);
            let mut conn: Option<cloud::http::Http1> = None;
            let mut n = w;
            while !stop.load(Ordering::SeqCst)
                && count.load(Ordering::SeqCst) < max
                && tokio::time::Instant::now() < end
            {
                n += 1;
                let q = QUERIES[n % QUERIES.len()];
                let path = format!("/books?query={}&ids=20", cloud::probe::form_encode(q));
                if conn.is_none() {
                    match cloud::http::Http1::connect(addr, timeout).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            {
                                let mut r = result.lock().unwrap();
                                r.failed += 1;
                                r.requests += 1;
                                if r.examples.len() < 5 {
                                    r.examples.push(format!("connect: {e}"));
                                }
                            }
                            count.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let got = c.get(&path, timeout).await;
                count.fetch_add(1, Ordering::SeqCst);
                let mut r = result.lock().unwrap();
                r.requests += 1;
                match got {
                    Ok((200, body)) => {
                        let norm = cloud::probe::without_duration(&body).into_owned();
                        r.answers.entry(q.to_owned()).or_default().insert(norm);
                    }
                    Ok((status, body)) => {
                        r.failed += 1;
                        if r.examples.len() < 5 {
                            r.examples
                                .push(format!("{status} {}", String::from_utf8_lossy(&body)));
                        }
                    }
                    Err(e) => {
                        r.failed += 1;
                        if r.examples.len() < 5 {
                            r.examples.push(format!("{path}: {e}"));
                        }
                        conn = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    std::mem::take(&mut *result.lock().unwrap())
}

/// The normalised answer of each query on `addr` now.
pub fn answers(addr: SocketAddr) -> BTreeMap<String, Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = BTreeMap::new();
        for q in QUERIES {
            let path = format!("/books?query={}&ids=20", cloud::probe::form_encode(q));
            let (status, body) = cloud::http::get_once(addr, &path, Duration::from_secs(5))
                .await
                .expect("query through the balancer");
            assert_eq!(status, 200);
            out.insert(
                q.to_owned(),
                cloud::probe::without_duration(&body).into_owned(),
            );
        }
        out
    })
}

/// Every answer the load saw was one of the expected ones (v1's or v2's)
/// and nothing failed.
pub fn assert_clean(load: &LoadResult, allowed: &[&BTreeMap<String, Vec<u8>>]) {
    assert!(load.requests > 0, "the load sent nothing");
    assert_eq!(
        load.failed, 0,
        "{} of {} requests failed: {:?}",
        load.failed, load.requests, load.examples
    );
    for (q, seen) in &load.answers {
        for body in seen {
            assert!(
                allowed.iter().any(|a| a.get(q) == Some(body)),
                "query {q}: an answer from neither image: {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
