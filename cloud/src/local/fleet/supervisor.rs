//! Instances as processes: an image's `rootfs.tar.zst` unpacked into
//! `fleet/instances/<id>/root/`, and `searchd` started from it exactly as
//! the image's systemd unit says (`ExecStartPre=`, `ExecStart=`, its
//! `EnvironmentFile=`), with the paths the unit names resolved inside the
//! instance's root and `SEARCHD_LISTEN` set to the instance's own loopback
//! address. The image id reaches searchd as `KILN_IMAGE_ID`.
//!
//! Liveness is a lock, as for builders: the instance's processes hold
//! `instance.lock` (it is their stdin) for as long as any of them lives,
//! so a restarted daemon can tell a running instance it did not start
//! from a dead one, and `kill -9` of the daemon loses nothing. Each
//! instance runs in its own process group (a terminal's Ctrl-C to `roll`
//! never reaches it); stopping it is SIGTERM to the group (searchd drains),
//! then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{CloudError, Result};
use crate::ids::{ImageId, InstanceId};
use crate::local::pack;
use crate::wait::{WaitParams, wait_until};

/// Where the image keeps its unit and the unit's environment file.
const UNIT: &str = "etc/systemd/system/searchd.service";

/// How long an instance gets to drain and exit on SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// A fresh instance id.
pub fn new_id() -> InstanceId {
    InstanceId::new(format!("i-{:016x}", fastrand::u64(..)))
}

/// A random loopback address in 127.64.0.0/10 (never 127.0.0.1, which
/// people run things on): instances of concurrent fleets do not collide,
/// and one that does fails to bind and is replaced on another address.
pub fn new_address(port: u16) -> SocketAddr {
    let a = Ipv4Addr::new(
        127,
        64 + fastrand::u8(..64),
        fastrand::u8(..),
        fastrand::u8(1..255),
    );
    SocketAddr::from((a, port))
}

/// The command lines and environment the image's unit describes, resolved
/// for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCommand {
    pub pre: Vec<Vec<String>>,
    pub start: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Reads `KEY=VALUE` lines (`#` comments, blank lines; optional quotes).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            env.insert(k.trim().to_owned(), v.to_owned());
        }
    }
    env
}

/// `${VAR}` and `$VAR` as systemd expands them in `Exec*=` lines (a
/// `${VAR}` token stays one word; unknown variables expand to nothing).
fn expand(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            out.push_str(env.get(&inner[..end]).map(String::as_str).unwrap_or(""));
            rest = &inner[end + 1..];
            continue;
        }
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end == 0 {
            out.push('$');
        } else {
            out.push_str(env.get(&after[..end]).map(String::as_str).unwrap_or(""));
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Absolute paths in a command line point into the instance's root.
fn rooted(word: String, root: &Path) -> String {
    match word.strip_prefix('/') {
        Some(rel) if !rel.is_empty() => root.join(rel).to_string_lossy().into_owned(),
        _ => word,
    }
}

/// Resolves the unit of the image unpacked at `root` for an instance that
/// listens on `listen` and runs `image`.
pub fn unit_command(root: &Path, listen: SocketAddr, image: &ImageId) -> Result<UnitCommand> {
    let unit_path = root.join(UNIT);
    let unit = std::fs::read_to_string(&unit_path).map_err(|e| {
        CloudError::invalid(
            "image",
            format!("{image} has no unit at /{UNIT}: {e} (was it baked by kiln?)"),
        )
    })?;
    let mut env = BTreeMap::new();
    let mut pre = Vec::new();
    let mut start = None;
    for line in unit.lines() {
        let line = line.trim();
        if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let optional = file.starts_with('-');
            let path = rooted(file.trim_start_matches('-').to_owned(), root);
            match std::fs::read_to_string(&path) {
                Ok(text) => env.extend(parse_env_file(&text)),
                Err(_) if optional => {}
                Err(e) => {
                    return Err(CloudError::invalid(
                        "image",
                        format!("{image}: the unit's EnvironmentFile {file}: {e}"),
                    ));
                }
            }
        } else if let Some(cmd) = line.strip_prefix("ExecStartPre=") {
            pre.push(cmd.to_owned());
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            start = Some(cmd.to_owned());
        }
    }
    let start = start.ok_or_else(|| {
        CloudError::invalid("image", format!("{image}: the unit has no ExecStart="))
    })?;
    env.insert("SEARCHD_LISTEN".into(), listen.to_string());
    env.insert("KILN_IMAGE_ID".into(), image.to_string());
    let resolve = |cmd: &str| -> Vec<String> {
        // `-` (failure ignored) and `@` prefixes are systemd's; kiln's unit
        // uses neither, but they must not become part of the path.
        let cmd = cmd.trim_start_matches(['-', '@', ':', '+', '!']);
        cmd.split_whitespace()
            .map(|w| rooted(expand(w, &env), root))
            .collect()
    };
    Ok(UnitCommand {
        pre: pre.iter().map(|c| resolve(c)).collect(),
        start: resolve(&start),
        env,
    })
}

/// Single-quoted for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The shell line that runs the unit: every `ExecStartPre=` in order
/// (any failure stops the instance), then `exec` of `ExecStart=`, so the
/// server itself holds the lock for the rest of the instance's life.
pub fn shell_line(cmd: &UnitCommand) -> String {
    let mut s = String::from("set -e; ");
    for p in &cmd.pre {
        let words: Vec<String> = p.iter().map(|w| quote(w)).collect();
        s.push_str(&words.join(" "));
        s.push_str("; ");
    }
    s.push_str("exec ");
    let words: Vec<String> = cmd.start.iter().map(|w| quote(w)).collect();
    s.push_str(&words.join(" "));
    s
}

/// The port an image's environment asks searchd to listen on.
pub fn image_port(root: &Path) -> u16 {
    std::fs::read_to_string(root.join("etc/kiln/searchd.env"))
        .ok()
        .and_then(|t| parse_env_file(&t).get("SEARCHD_LISTEN").cloned())
        .and_then(|l| l.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or(8080)
}

/// An instance started by this daemon: the shell (then searchd) and the
/// lock it holds.
pub struct Started {
    pub child: tokio::process::Child,
    pub pgid: u32,
    pub address: SocketAddr,
}

/// `fleet/instances/<id>`.
pub fn instance_dir(fleet: &Path, id: &InstanceId) -> PathBuf {
    fleet.join("instances").join(id.as_str())
}

/// Unpacks the image, reads its unit and starts the instance. Blocking
/// parts (unpacking) run on the blocking pool.
pub async fn start(
    dir: &Path,
    rootfs: &Path,
    image: &ImageId,
    address: Option<SocketAddr>,
) -> Result<Started> {
    let prep = {
        let (dir, rootfs, image) = (dir.to_owned(), rootfs.to_owned(), image.clone());
        tokio::task::spawn_blocking(move || prepare(&dir, &rootfs, &image, address))
            .await
            .map_err(|e| CloudError::io("prepare instance", "", std::io::Error::other(e)))??
    };
    let (lock, cmd, address) = prep;
    let console = dir.join("console.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&console)
        .map_err(|e| CloudError::io("create", &console, e))?;
    let err = out
        .try_clone()
        .map_err(|e| CloudError::io("dup", &console, e))?;
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(shell_line(&cmd))
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .envs(&cmd.env)
        .stdin(Stdio::from(lock))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(false);
    let child = command
        .spawn()
        .map_err(|e| CloudError::io("start instance in", dir, e))?;
    let pgid = child.id().unwrap_or(0);
    let p = dir.join("pgid");
    std::fs::write(&p, format!("{pgid}\n")).map_err(|e| CloudError::io("write", &p, e))?;
    Ok(Started {
        child,
        pgid,
        address,
    })
}

/// The instance's disk and lock; returns the lock (for the process's
/// stdin), its command and address.
fn prepare(
    dir: &Path,
    rootfs: &Path,
    image: &ImageId,
    address: Option<SocketAddr>,
) -> Result<(std::fs::File, UnitCommand, SocketAddr)> {
    std::fs::create_dir_all(dir).map_err(|e| CloudError::io("create", dir, e))?;
    let lock_path = dir.join("instance.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| CloudError::io("create", &lock_path, e))?;
    lock.lock()
        .map_err(|e| CloudError::io("lock", &lock_path, e))?;
    let root = dir.join("root");
    if !root.join(UNIT).exists() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).map_err(|e| CloudError::io("create", &root, e))?;
        pack::unpack(rootfs, &root).map_err(|e| CloudError::io("unpack image into", &root, e))?;
    }
    let address = address.unwrap_or_else(|| new_address(image_port(&root)));
    let cmd = unit_command(&root, address, image)?;
    Ok((lock, cmd, address))
}

/// Whether some process of the instance still holds its lock.
pub fn alive(dir: &Path) -> bool {
    match std::fs::File::open(dir.join("instance.lock")) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn signal_group(pgid: u32, sig: rustix::process::Signal) {
    if pgid <= 1 {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// SIGTERM to the instance's process group (searchd drains and exits);
/// SIGKILL if it is still there after `grace`. Returns once every process
/// of it is gone.
pub async fn stop(dir: &Path, pgid: u32, grace: Duration) -> Result<()> {
    if !alive(dir) {
        return Ok(());
    }
    signal_group(pgid, rustix::process::Signal::TERM);
    let params = WaitParams::LOCAL.with_timeout(grace);
    let what = format!("instance {} to stop", dir.display());
    if wait_until(params, &what, || async { Ok((!alive(dir)).then_some(())) })
        .await
        .is_ok()
    {
        return Ok(());
    }
    signal_group(pgid, rustix::process::Signal::KILL);
    wait_until(
        WaitParams::LOCAL.with_timeout(Duration::from_secs(10)),
        &what,
        || async { Ok((!alive(dir)).then_some(())) },
    )
    .await
}

/// SIGKILL to the whole process group at once (tests, and instances that
/// never took traffic).
pub fn kill(pgid: u32) {
    signal_group(pgid, rustix::process::Signal::KILL);
}

/// Removes an instance's directory (after it stopped).
pub fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CloudError::io("remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT_TEXT: &str = "[Service]\nEnvironmentFile=/etc/kiln/searchd.env\nExecStartPre=/opt/kiln/bin/searchd check --snapshot ${SEARCHD_SNAPSHOT}\nExecStart=/opt/kiln/bin/searchd serve --snapshot ${SEARCHD_SNAPSHOT} --listen ${SEARCHD_LISTEN}\n";

    #[test]
    fn the_unit_runs_inside_the_root_on_our_address() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
        std::fs::create_dir_all(root.join("etc/kiln")).unwrap();
        std::fs::write(root.join(UNIT), UNIT_TEXT).unwrap();
        std::fs::write(
            root.join("etc/kiln/searchd.env"),
            "# comment\nSEARCHD_LISTEN=0.0.0.0:8080\nSEARCHD_LOG=info\nSEARCHD_SNAPSHOT=/var/lib/kiln/books.idx\n",
        )
        .unwrap();
        assert_eq!(image_port(root), 8080);
        let addr: SocketAddr = "127.64.1.2:8080".parse().unwrap();
        let cmd = unit_command(root, addr, &ImageId::from("img-1")).unwrap();
        let r = root.to_string_lossy();
        assert_eq!(
            cmd.start,
            vec![
                format!("{r}/opt/kiln/bin/searchd"),
                "serve".into(),
                "--snapshot".into(),
                format!("{r}/var/lib/kiln/books.idx"),
                "--listen".into(),
                "127.64.1.2:8080".into(),
            ]
        );
        assert_eq!(cmd.pre.len(), 1);
        assert_eq!(cmd.pre[0][1], "check");
        assert_eq!(cmd.env["KILN_IMAGE_ID"], "img-1");
        assert_eq!(cmd.env["SEARCHD_LOG"], "info");
        let line = shell_line(&cmd);
        assert!(line.starts_with("set -e; '"), "{line}");
        assert!(line.contains("; exec '"), "{line}");
    }

    #[test]
    fn expansion_and_quoting() {
        let mut env = BTreeMap::new();
        env.insert("A".to_owned(), "x y".to_owned());
        assert_eq!(expand("${A}", &env), "x y");
        assert_eq!(expand("$A/z", &env), "x y/z");
        assert_eq!(expand("${B}-", &env), "-");
        assert_eq!(expand("a$", &env), "a$");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn addresses_are_loopback_and_not_127_0_0_1() {
        for _ in 0..1000 {
            let a = new_address(8080);
            assert!(a.ip().is_loopback());
            match a.ip() {
                std::net::IpAddr::V4(v4) => assert!(v4.octets()[1] >= 64),
                _ => panic!("v6"),
            }
        }
    }
}
