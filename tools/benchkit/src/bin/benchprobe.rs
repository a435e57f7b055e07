//! `benchprobe`: small measuring tools for `bench/run.sh`.
//!
//! - `free-port`: prints a free TCP port on 127.0.0.1.
//! - `wait`: polls `GET PATH` on a loopback address until it answers 200.
//! - `startup`: runs a server command repeatedly and measures the time from
//!   spawning the process to the first 200 from `/ready` (polled tightly).
//! - `json`: values out of a JSON document by JSON pointer (the shell reads
//!   `roll status --json` and roll's reports with it; no jq needed).
//! - `report`: turns the raw measurements into the table and results.json.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use benchkit::report;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "benchprobe", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Wait until `GET PATH` on ADDR answers 200 (exit 1 on timeout).
    Wait {
        /// Loopback address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/ready")]
        path: String,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Give up as soon as this process has exited.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Time from spawning CMD to the first 200 from `GET PATH`, over RUNS
    /// runs. Every `{port}` in CMD is replaced by a fresh free port. Prints
    /// JSON: {"runs", "ms": [...], "min_ms", "median_ms", "max_ms"}.
    Startup {
        #[arg(long, default_value_t = 10)]
        runs: u32,
        #[arg(long, default_value = "/ready")]
        path: String,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// The server command, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print the values at POINTERs (RFC 6901, e.g. /traffic/failed) of the
    /// JSON document in FILE, one per line: strings without quotes, other
    /// values as JSON, `null` when absent.
    Json {
        file: PathBuf,
        #[arg(required = true)]
        pointers: Vec<String>,
    },
    /// Print the bench table from raw JSON Lines and write results.json.
    Report {
        #[arg(long = "in", value_name = "RAW")]
        input: PathBuf,
        #[arg(long, value_name = "JSON")]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("benchprobe: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Cmd::FreePort => {
            println!("{}", free_port()?);
            Ok(0)
        }
        Cmd::Wait {
            addr,
            path,
            timeout_ms,
            pid,
        } => {
            ensure_loopback(addr)?;
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            while Instant::now() < deadline {
                if let Some(pid) = pid
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    eprintln!("benchprobe: process {pid} exited before {path} answered 200");
                    return Ok(1);
                }
                if status(addr, &path).ok() == Some(200) {
                    return Ok(0);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            eprintln!("benchprobe: {addr}{path} did not answer 200 within {timeout_ms} ms");
            Ok(1)
        }
        Cmd::Startup {
            runs,
            path,
            timeout_ms,
            cmd,
        } => {
            let mut ms = Vec::new();
            for _ in 0..runs.max(1) {
                ms.push(startup_once(
                    &cmd,
                    &path,
                    Duration::from_millis(timeout_ms),
                )?);
            }
            let median = report::median(&ms);
            let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ms.iter().copied().fold(0.0, f64::max);
            println!(
                "{}",
                serde_json::json!({"runs": ms.len(), "ms": ms, "min_ms": min,
                                   "median_ms": median, "max_ms": max})
            );
            Ok(0)
        }
        Cmd::Json { file, pointers } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            for p in &pointers {
                match doc.pointer(p) {
                    Some(serde_json::Value::String(s)) => println!("{s}"),
                    Some(v) => println!("{v}"),
                    None => println!("null"),
                }
            }
            Ok(0)
        }
        Cmd::Report { input, out } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let raw = report::Raw::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
            let rep = report::build(&raw);
            print!("{}", rep.table);
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut body = serde_json::to_string_pretty(&rep.json)?;
            body.push('\n');
            std::fs::write(&out, body)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("\nresults: {}", out.display());
            Ok(if rep.failed { 1 } else { 0 })
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address");
    }
    Ok(())
}

/// The HTTP status of `GET path` (one connection, `Connection: close`).
fn status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    // "HTTP/1.1 200" is 12 bytes.
    while n < 12 {
        let k = s.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = std::str::from_utf8(&buf[..n]).unwrap_or("");
    head.split(' ')
        .nth(1)
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))
}

fn startup_once(cmd: &[String], path: &str, timeout: Duration) -> anyhow::Result<f64> {
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let argv: Vec<String> = cmd
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let log = std::env::temp_dir().join(format!("benchprobe-startup-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log)?;
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", argv[0]))?;
    let result = loop {
        if let Some(st) = child.try_wait()? {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            break Err(anyhow::anyhow!(
                "{} exited ({st}) before {path} answered 200:\n{out}",
                argv.join(" ")
            ));
        }
        if status(addr, path).ok() == Some(200) {
            break Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!(
                "{path} did not answer 200 within {} ms",
                timeout.as_millis()
            ));
        }
        // Poll tightly: a refused connect costs a few microseconds.
        std::thread::sleep(Duration::from_micros(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    result
}
