//! The instance emulator: moto runs no machines, so this plays the bake
//! builder. It polls moto for instances tagged `kiln:bake` that are pending
//! or running, reads each one's user-data (DescribeInstanceAttribute
//! userData), and runs it with `sh`: the real script kiln rendered, which
//! downloads the payload from moto's S3 by its presigned GET URL, runs the
//! real install script against a temp root (instead of `/`), and PUTs the
//! result by its presigned URL. Then it calls StopInstances, as a machine
//! that powered itself off would end up `stopped`.
//!
//! It runs on its own thread with its own runtime, so sync tests (driving
//! the `bake` binary) and async tests use it alike; dropping it stops it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, InstanceAttributeName};
use sha2::{Digest, Sha256};

use crate::{Moto, unbase64};

/// A fault to inject between kiln and its builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// Replace the payload object in S3 before the builder downloads it,
    /// so its sha256 no longer matches the one in the user-data.
    CorruptPayload,
    /// Flip a byte in the middle of the first payload file whose path ends
    /// with this suffix, re-pack, re-upload and give the builder the new
    /// archive's sha256: a payload that arrives intact but holds a bad
    /// file (e.g. a snapshot that fails `searchd check`).
    BreakFile(String),
}

#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    pub tamper: Tamper,
    /// Leave builders running forever (never run the user-data), to
    /// interrupt a bake while it waits for its builder.
    pub hold: bool,
    /// Keys for the emulator's own calls (admin in IAM tests).
    pub key: String,
    pub secret: String,
    /// With IAM enforcement on, moto 5.2.5 answers 500 to presigned URLs
    /// (it looks for an `Authorization` header). Then the emulator makes
    /// the builder's two transfers itself, signed with these keys — those
    /// of the user who presigned the URLs (checked against the URLs) — and
    /// hands the script local `file://` URLs. So the bake user's S3
    /// permissions are still what moto checks.
    pub presign_signer: Option<(String, String)>,
    /// The port of a [`crate::FaultProxy`] in front of moto: the code
    /// under test presigns its URLs for the proxy, so the builder's
    /// transfers go through it.
    pub proxy_port: Option<u16>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            tamper: Tamper::None,
            hold: false,
            key: crate::TEST_KEY.to_owned(),
            secret: crate::TEST_KEY.to_owned(),
            presign_signer: None,
            proxy_port: None,
        }
    }
}

/// One builder the emulator played.
#[derive(Debug, Clone)]
pub struct Handled {
    pub instance: String,
    /// The user-data's exit status and output (empty while held).
    pub status: Option<i32>,
    pub output: String,
}

pub struct Emulator {
    stop: Arc<AtomicBool>,
    handled: Arc<Mutex<Vec<Handled>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    pub fn start(moto: &Moto, opts: EmulatorOptions) -> Emulator {
        Emulator::start_at(moto.endpoint(), moto.port(), opts)
    }

    /// The same for a moto server this process did not start (the
    /// `moto-builder` binary): its endpoint URL and port.
    pub fn start_at(endpoint: String, moto_port: u16, opts: EmulatorOptions) -> Emulator {
        let stop = Arc::new(AtomicBool::new(false));
        let handled = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let port = opts.proxy_port.unwrap_or(moto_port);
        let (s, h, e) = (stop.clone(), handled.clone(), errors.clone());
        let thread = std::thread::Builder::new()
            .name("instance-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(run(endpoint, port, opts, s, h, e));
            })
            .expect("emulator thread");
        Emulator {
            stop,
            handled,
            errors,
            thread: Some(thread),
        }
    }

    /// Builders played so far (one per RunInstances a bake made).
    pub fn handled(&self) -> Vec<Handled> {
        self.handled.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits (real time, bounded) until `n` builders have been seen.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.handled().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Problems the emulator itself hit (not the builder's failures).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    endpoint: String,
    port: u16,
    opts: EmulatorOptions,
    stop: Arc<AtomicBool>,
    handled: Arc<Mutex<Vec<Handled>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new(crate::REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            &opts.key,
            &opts.secret,
            None,
            None,
            "emulator",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let signer_s3 = match &opts.presign_signer {
        Some((k, sec)) => {
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&endpoint)
                .region(aws_config::Region::new(crate::REGION))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    k, sec, None, None, "signer",
                ))
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .load()
                .await;
            Some((
                k.clone(),
                aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&conf)
                        .force_path_style(true)
                        .build(),
                ),
            ))
        }
        None => None,
    };
    let mut seen = BTreeSet::new();
    let note = |e: String| {
        if let Ok(mut v) = errors.lock() {
            v.push(e);
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let out = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values("kiln:bake")
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await;
        let ids: Vec<String> = match out {
            Ok(o) => o
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect(),
            Err(e) => {
                note(format!("DescribeInstances: {e:?}"));
                Vec::new()
            }
        };
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            let mut h = Handled {
                instance: id.clone(),
                status: None,
                output: String::new(),
            };
            if !opts.hold {
                match play(&ec2, &s3, signer_s3.as_ref(), port, &id, &opts.tamper).await {
                    Ok((status, output)) => {
                        h.status = status;
                        h.output = output;
                    }
                    Err(e) => note(format!("{id}: {e}")),
                }
                if let Err(e) = ec2.stop_instances().instance_ids(&id).send().await {
                    note(format!("StopInstances {id}: {e:?}"));
                }
            }
            if let Ok(mut v) = handled.lock() {
                v.push(h);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one builder's user-data; returns its exit status and output.
async fn play(
    ec2: &aws_sdk_ec2::Client,
    s3: &aws_sdk_s3::Client,
    signer: Option<&(String, aws_sdk_s3::Client)>,
    port: u16,
    id: &str,
    tamper: &Tamper,
) -> Result<(Option<i32>, String), String> {
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| format!("DescribeInstanceAttribute: {e:?}"))?;
    let b64 = attr
        .user_data()
        .and_then(|u| u.value())
        .ok_or("no user-data")?;
    let mut script = String::from_utf8(unbase64(b64).ok_or("user-data is not base64")?)
        .map_err(|_| "user-data is not UTF-8")?;
    // Every URL the builder fetches must be this moto (or the proxy in
    // front of it), never elsewhere.
    let payload_url = quoted(&script, "payload_url=").ok_or("no payload_url in user-data")?;
    let result_url = quoted(&script, "result_url=").ok_or("no result_url in user-data")?;
    for u in [&payload_url, &result_url] {
        if !u.starts_with(&format!("http://127.0.0.1:{port}/")) {
            return Err(format!("user-data URL {u} is not this moto"));
        }
    }
    match tamper {
        Tamper::None => {}
        Tamper::CorruptPayload => {
            let (bucket, key) = bucket_key(&payload_url)?;
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(b"not the payload kiln uploaded".to_vec().into())
                .send()
                .await
                .map_err(|e| format!("PutObject (tamper): {e:?}"))?;
        }
        Tamper::BreakFile(suffix) => {
            let (bucket, key) = bucket_key(&payload_url)?;
            let obj = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| format!("GetObject (tamper): {e:?}"))?;
            let bytes = obj
                .body
                .collect()
                .await
                .map_err(|e| format!("payload body: {e}"))?
                .into_bytes();
            let broken = break_file(&bytes, suffix)?;
            let sha = hex(&Sha256::digest(&broken));
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(broken.into())
                .send()
                .await
                .map_err(|e| format!("PutObject (tamper): {e:?}"))?;
            let old = quoted(&script, "sha256=").ok_or("no sha256 in user-data")?;
            script = script.replace(&format!("sha256='{old}'"), &format!("sha256='{sha}'"));
        }
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let upload = dir.path().join("result.upload");
    if let Some((key, client)) = signer {
        for u in [&payload_url, &result_url] {
            if !u.contains(&format!("{key}%2F")) && !u.contains(&format!("{key}/")) {
                return Err(format!("{u} is not presigned by {key}"));
            }
        }
        let (bucket, k) = bucket_key(&payload_url)?;
        let body = client
            .get_object()
            .bucket(bucket)
            .key(k)
            .send()
            .await
            .map_err(|e| format!("GetObject as the URL's signer: {e:?}"))?
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let local = dir.path().join("payload.download");
        std::fs::write(&local, &body).map_err(|e| e.to_string())?;
        script = script
            .replace(
                &format!("payload_url='{payload_url}'"),
                &format!("payload_url='file://{}'", local.display()),
            )
            .replace(
                &format!("result_url='{result_url}'"),
                &format!("result_url='file://{}'", upload.display()),
            );
    }
    let file = dir.path().join("user-data");
    std::fs::write(&file, &script).map_err(|e| e.to_string())?;
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("sh")
            .arg(&file)
            .current_dir(dir.path())
            .env("KILN_BUILDER_ROOT", &root)
            .env("KILN_BUILDER_POWEROFF", "true")
            .env("TMPDIR", dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "user-data ran over 300 s".to_owned())?
    .map_err(|e| format!("running user-data: {e}"))?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Some((_, client)) = signer {
        let (bucket, k) = bucket_key(&result_url)?;
        let body = std::fs::read(&upload).map_err(|e| format!("the builder's result: {e}"))?;
        client
            .put_object()
            .bucket(bucket)
            .key(k)
            .body(body.into())
            .send()
            .await
            .map_err(|e| format!("PutObject as the URL's signer: {e:?}"))?;
    }
    Ok((out.status.code(), output))
}

/// The single-quoted value after `prefix` at the start of a line.
fn quoted(script: &str, prefix: &str) -> Option<String> {
    script.lines().find_map(|l| {
        let v = l.strip_prefix(prefix)?.strip_prefix('\'')?;
        Some(v.split('\'').next()?.to_owned())
    })
}

/// (bucket, key) of a path-style S3 URL.
fn bucket_key(url: &str) -> Result<(String, String), String> {
    let path = url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, p)| p.split('?').next().unwrap_or(p))
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let (bucket, key) = path
        .split_once('/')
        .ok_or_else(|| format!("no key in {url}"))?;
    Ok((percent_decode(bucket), percent_decode(key)))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Re-packs a tar.zst with one byte flipped in the first file whose path
/// ends with `suffix`.
fn break_file(archive: &[u8], suffix: &str) -> Result<Vec<u8>, String> {
    let tar_bytes = zstd::decode_all(archive).map_err(|e| format!("payload zstd: {e}"))?;
    let mut reader = tar::Archive::new(&tar_bytes[..]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut broke = false;
    for entry in reader.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path: PathBuf = entry.path().map_err(|e| e.to_string())?.into_owned();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
        if !broke && is_match(&path, suffix) && !data.is_empty() {
            let mid = data.len() / 2;
            data[mid] ^= 0x5a;
            broke = true;
        }
        builder
            .append_data(&mut header, &path, &data[..])
            .map_err(|e| e.to_string())?;
    }
    if !broke {
        return Err(format!("no file ending with {suffix} in the payload"));
    }
    let tar_out = builder.into_inner().map_err(|e| e.to_string())?;
    zstd::encode_all(&tar_out[..], 3).map_err(|e| e.to_string())
}

fn is_match(path: &Path, suffix: &str) -> bool {
    path.to_string_lossy().ends_with(suffix)
}
