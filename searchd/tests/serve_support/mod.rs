//! Fixtures for the server tests: the books snapshot (built once per test
//! process), an in-process server on 127.0.0.1:0 that shuts down
//! deterministically, the real `searchd serve` binary, and a small HTTP/1.1
//! client that sends request targets byte for byte (no normalisation), so
//! tests can send what real clients and attackers send.

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use searchd::index::Engine;
use searchd::server::{Config, Drained, State};
use searchd::snapshot::Verify;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The books snapshot, built once per test process.
pub fn books_snapshot() -> &'static Path {
    static SNAPSHOT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SNAPSHOT
        .get_or_init(|| {
            let def =
                searchd::def::IndexDef::load(&workspace_root().join("images/books/index.toml"))
                    .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("books.idx");
            searchd::build::build(&def, &out).unwrap();
            (dir, out)
        })
        .1
}

pub fn books_engine() -> Engine {
    Engine::open(books_snapshot(), Verify::Full).unwrap()
}

/// A server running `searchd::server::serve` on its own runtime thread.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Drained>>,
}

impl Server {
    /// Serves the books index with `config`.
    pub fn start(config: Config) -> Server {
        let server = Server::start_unloaded(config);
        server.state.install(books_engine()).unwrap();
        server
    }

    /// A server whose index is not installed yet (`/ready` is 503).
    pub fn start_unloaded(config: Config) -> Server {
        let state = Arc::new(State::new(config));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(searchd::server::WORKER_STACK_BYTES)
                .enable_all()
                .build()
                .unwrap();
            let drained = rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                searchd::server::serve(listener, st, async move {
                    let _ = stop_rx.await;
                })
                .await
            });
            rt.shutdown_background();
            drained
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Signals shutdown without waiting for it.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits until `serve` returns.
    pub fn shutdown(mut self) -> Drained {
        self.signal_shutdown();
        self.thread.take().unwrap().join().unwrap()
    }

    pub fn get(&self, target: &str) -> Response {
        get(self.addr, target)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts a JSON error answer and returns its `error` code.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert!(v["message"].is_string(), "no message: {v}");
        v["error"].as_str().expect("error code").to_string()
    }
}

/// A client connection that writes requests byte for byte.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Sends `METHOD target HTTP/1.1` with a Host header and `extra` header
    /// lines (each without CRLF).
    pub fn send(&mut self, method: &str, target: &[u8], extra: &[&str]) {
        let mut req = Vec::new();
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\n");
        for h in extra {
            req.extend_from_slice(h.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        self.send_raw(&req);
    }

    pub fn request(&mut self, method: &str, target: &[u8], extra: &[&str]) -> Response {
        self.send(method, target, extra);
        self.read_response(method == "HEAD").expect("a response")
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.request("GET", target.as_bytes(), &[])
    }

    /// Reads one response; `None` if the server closed the connection
    /// before sending a status line.
    pub fn read_response(&mut self, head: bool) -> Option<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let mut body = Vec::new();
        if !head {
            match length {
                Some(n) => {
                    body.resize(n, 0);
                    self.reader.read_exact(&mut body).unwrap();
                }
                None => {
                    self.reader.read_to_end(&mut body).unwrap();
                }
            }
        }
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// Whether the server has closed the connection (EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// `GET target` on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    Conn::open(addr).get(target)
}

/// `duration` set to 0, as the golden recordings have it.
pub fn zero_duration(body: &str) -> String {
    let Some(start) = body.find("\"duration\":") else {
        return body.to_string();
    };
    let value = start + "\"duration\":".len();
    let end = body[value..]
        .find([',', '}'])
        .map_or(body.len(), |i| value + i);
    format!("{}0{}", &body[..value], &body[end..])
}

/// The real `searchd serve`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `searchd serve --snapshot <books> --listen 127.0.0.1:0 <args>`
    /// and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Daemon {
        let snapshot = books_snapshot().to_str().unwrap().to_string();
        let mut all = vec!["serve", "--snapshot", &snapshot, "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Daemon::start_raw(&all).unwrap_or_else(|(code, err)| {
            panic!("searchd serve exited with {code:?}:\n{err}");
        })
    }

    /// Starts `searchd <args>`; `Err((exit code, stderr))` if it exits
    /// before printing `listening on`.
    pub fn start_raw(args: &[&str]) -> Result<Daemon, (Option<i32>, String)> {
        Daemon::start_env(args, &[])
    }

    /// [`Daemon::start_raw`] with extra environment variables (the
    /// variables searchd reads are otherwise removed).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Daemon, (Option<i32>, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_searchd"))
            .args(args)
            .env_remove("KILN_IMAGE_ID")
            .env_remove("SEARCHD_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("searchd: listening on ") {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let mut reader = Some(reader);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(20)) {
                return Ok(Daemon {
                    child,
                    addr,
                    stderr: lines,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                // The pipe closed with the process: the reader ends once it
                // has every line (a fixed wait lost them on a busy machine).
                if let Some(reader) = reader.take() {
                    let _ = reader.join();
                }
                let text = lines.lock().unwrap().join("\n");
                return Err((status.code(), text));
            }
            assert!(Instant::now() < deadline, "searchd did not start");
        }
    }

    pub fn get(&self, target: &str) -> Response {
        get(self.addr, target)
    }

    /// Polls `target` until it answers `status` (or panics after 10s).
    pub fn wait_for(&self, target: &str, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(s) = TcpStream::connect(self.addr) {
                drop(s);
                if self.get(target).status == status {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{target} never answered {status}");
    }

    pub fn signal(&self, signal: i32) {
        // std's Child::kill only sends SIGKILL; other signals go through
        // kill(1).
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its code and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "searchd still running after {limit:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;
