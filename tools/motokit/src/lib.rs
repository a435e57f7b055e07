//! motokit: what kiln's aws tests need around a real moto server.
//!
//! - [`Moto`]: starts `moto_server` on a free loopback port, waits until
//!   `GET /moto-api/` answers, resets state, turns IAM enforcement on, and
//!   kills the server by pid when dropped, whatever happened in the test.
//! - [`Emulator`]: plays the bake builder: it finds instances tagged
//!   `kiln:bake`, runs their real user-data (which runs the real install
//!   script against a temp root, fetching and reporting through moto's S3
//!   presigned URLs), then stops the instance like a powered-off machine.
//! - [`Census`]: counts of everything a bake can leave behind, in one
//!   region or ([`Census::regions`]) in several.
//! - [`Scripted`]: a fake endpoint with scripted answers, for the paths
//!   moto cannot emulate (pending images, groups still in use).
//! - [`FaultProxy`]: moto behind a proxy that fails or holds chosen calls
//!   (one action in one region), for failures moto cannot produce.
//! - [`Moto::fleet`]: a service's fleet made like Terraform would (launch
//!   template, Auto Scaling group, ALB, two target groups, a listener),
//!   for the aws groups and load balancers.
//!
//! The server binary comes from `KILN_MOTO_SERVER` (the Makefile exports
//! it), else `build/moto-venv/bin/moto_server` under the workspace root.
//! If neither exists, starting panics with the command that installs it:
//! a missing moto must fail the test, never skip it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod census;
mod emulator;
mod faults;
mod fixtures;
mod fleet;
mod iam;
mod scripted;

pub use census::Census;
pub use emulator::{Emulator, EmulatorOptions, Handled, Tamper};
pub use faults::{Fault, FaultProxy};
pub use fixtures::{PayloadFile, books_payload, install_script};
pub use fleet::{DEREGISTRATION_DELAY, FLEET_PORT, Fleet, FleetSpec, HEALTH_CHECK};
pub use iam::IamUser;
pub use scripted::{Reply, Scripted};

/// moto's fixed account id.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// Static keys moto accepts while IAM enforcement is off.
pub const TEST_KEY: &str = "testing";

/// A running moto server, stopped (SIGKILL by pid, then reaped) on drop.
pub struct Moto {
    child: Child,
    port: u16,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts a fresh server. Panics with instructions if moto is missing
    /// or does not come up within 60 s.
    pub fn start() -> Moto {
        let bin = server_binary();
        let log = tempfile::NamedTempFile::new().expect("temp file for the moto log");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("moto log"))
            .stderr(log.reopen().expect("moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Moto {
            child,
            port,
            _log: log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = moto.http("GET", "/moto-api/", &[], b"") {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(moto._log.path()).unwrap_or_default();
                panic!("moto_server did not answer on port {port} within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.reset();
        moto
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears all state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = self
            .http("POST", "/moto-api/reset", &[], b"")
            .expect("POST /moto-api/reset");
        assert_eq!(
            status,
            200,
            "moto reset: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Turns on IAM enforcement: every later call is checked against the
    /// caller's IAM policies (`POST /moto-api/reset-auth` with body `0`).
    pub fn enforce_iam(&self) {
        let (status, body) = self
            .http("POST", "/moto-api/reset-auth", &[], b"0")
            .expect("POST /moto-api/reset-auth");
        assert_eq!(
            status,
            200,
            "moto reset-auth: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Environment for a child process (e.g. the `bake` binary) to talk to
    /// this server with the given keys: endpoint, region, no IMDS, no
    /// retries.
    pub fn env(&self, key: &str, secret: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint().as_str()),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_MAX_ATTEMPTS", "1"),
            // Keep a developer's profile and config out of the test.
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// SDK configuration for this server with the given keys (retries off,
    /// IMDS never consulted since the keys are static).
    pub async fn sdk_config(&self, key: &str, secret: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                key, secret, None, None, "motokit",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await
    }

    pub async fn ec2(&self, key: &str, secret: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(key, secret).await)
    }

    /// A new AMI named `name`, owned by the test account and made from a
    /// seeded Amazon Linux 2023 image: what a patched base image looks like
    /// to kiln. Returns its id.
    pub async fn register_base(&self, name: &str) -> String {
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        let (inst, _) = self.run_seeded().await;
        let id = ec2
            .create_image()
            .instance_id(&inst)
            .name(name)
            .send()
            .await
            .expect("CreateImage")
            .image_id
            .expect("id");
        self.terminate(&inst).await;
        id
    }

    /// One instance launched from a seeded AL2023 image (to make an image
    /// from): its id, and the seed's.
    pub async fn run_seeded(&self) -> (String, String) {
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        let seed = self.seeded_images(1).await.remove(0);
        let inst = ec2
            .run_instances()
            .image_id(&seed)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances")
            .instances()[0]
            .instance_id()
            .expect("id")
            .to_owned();
        (inst, seed)
    }

    /// TerminateInstances of one instance.
    pub async fn terminate(&self, instance: &str) {
        self.ec2(TEST_KEY, TEST_KEY)
            .await
            .terminate_instances()
            .instance_ids(instance)
            .send()
            .await
            .expect("TerminateInstances");
    }

    /// An EC2 client for another region (where image copies go).
    pub async fn ec2_in(&self, key: &str, secret: &str, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&self.sdk_config(key, secret).await)
                .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
                .build(),
        )
    }

    pub async fn s3(&self, key: &str, secret: &str) -> aws_sdk_s3::Client {
        let conf = self.sdk_config(key, secret).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
    }

    /// One plain HTTP/1.1 request to the server (moto's own API and IAM
    /// setup need nothing more).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text_end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
        let head = String::from_utf8_lossy(&resp[..text_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
        let mut body = resp[text_end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // By pid, always: a leaked moto would hold its port and memory.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its tracebacks say why it answered 500 (`KILN_MOTO_KEEP_LOG=dir`).
        if let Some(dir) = std::env::var_os("KILN_MOTO_KEEP_LOG").filter(|d| !d.is_empty()) {
            let _ = std::fs::copy(
                self._log.path(),
                Path::new(&dir).join(format!("moto-{}.log", self.port)),
            );
        }
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// The workspace root (this crate lives in `tools/motokit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `KILN_MOTO_SERVER`, else the Makefile's venv; panics saying how to get
/// one.
pub fn server_binary() -> PathBuf {
    find_server(std::env::var_os("KILN_MOTO_SERVER"), &workspace_root())
        .unwrap_or_else(|why| panic!("{why}"))
}

/// The lookup behind [`server_binary`], apart from the process environment
/// so it can be tested.
fn find_server(env: Option<std::ffi::OsString>, root: &Path) -> Result<PathBuf, String> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!(
            "KILN_MOTO_SERVER={} does not exist: run `make deps-moto` (installs moto 5.2.5 into build/moto-venv)",
            p.display()
        ));
    }
    let p = root.join("build/moto-venv/bin/moto_server");
    if p.is_file() {
        return Ok(p);
    }
    Err("moto is not installed: run `make deps-moto` (installs moto[server] 5.2.5 into build/moto-venv), \
         or set KILN_MOTO_SERVER to a moto_server binary. The aws tests need a real moto and never skip."
        .to_owned())
}

/// The static searchd the payloads carry: `KILN_STATIC_SEARCHD`, else
/// `make static`'s output. Panics saying how to build it.
pub fn static_searchd() -> PathBuf {
    let p = std::env::var_os("KILN_STATIC_SEARCHD")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/x86_64-unknown-linux-gnu/release/searchd")
        });
    assert!(
        p.is_file(),
        "{} is missing: run `make static` (or set KILN_STATIC_SEARCHD)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    // Bind port 0 and let go: moto binds it right after. A race with
    // another process grabbing it is possible but the start then fails
    // loudly (the server never answers), not silently.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Decodes standard base64 (EC2 user-data); whitespace is ignored.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let s: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_moto_is_an_error_saying_how_to_install_it() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_server(None, empty.path()).expect_err("no moto");
        assert!(err.contains("make deps-moto"), "{err}");
        let err = find_server(Some("/nonexistent/moto_server".into()), empty.path())
            .expect_err("bad env");
        assert!(
            err.contains("KILN_MOTO_SERVER=/nonexistent/moto_server"),
            "{err}"
        );
        assert!(err.contains("make deps-moto"), "{err}");
        let venv = empty.path().join("build/moto-venv/bin");
        std::fs::create_dir_all(&venv).expect("mkdir");
        std::fs::write(venv.join("moto_server"), "").expect("write");
        assert_eq!(
            find_server(None, empty.path()),
            Ok(venv.join("moto_server"))
        );
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(
            unbase64("IyEvYmluL3NoCmVjaG8gaGkK").as_deref(),
            Some(&b"#!/bin/sh\necho hi\n"[..])
        );
        assert_eq!(unbase64("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(unbase64("Zg==").as_deref(), Some(&b"f"[..]));
        assert!(unbase64("Zm8").is_none());
    }
}
