//! A scripted fake AWS endpoint for what moto cannot emulate: images that
//! stay `pending` and get their snapshots late, images that fail, security
//! groups still in use by a terminating instance. It answers EC2 query-API
//! calls (by `Action=`) and S3 calls (by method) from a script, in order,
//! and records what was asked. Plain HTTP/1.1 on a loopback port, one
//! request per connection; it stops when dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer: HTTP status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
        }
    }

    /// An error answer of the Query protocol's other services (Auto
    /// Scaling, ELBv2, IAM: `<ErrorResponse><Error>…`), e.g. `Throttling`
    /// with 400, `InternalFailure` with 500.
    pub fn query_error(status: u16, code: &str, message: &str) -> Reply {
        Reply {
            status,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ErrorResponse><Error><Type>{}</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error><RequestId>scripted</RequestId></ErrorResponse>",
                if status < 500 { "Sender" } else { "Receiver" }
            ),
        }
    }

    /// An EC2 error answer (`<Response><Errors>…`).
    pub fn ec2_error(code: &str, message: &str) -> Reply {
        Reply {
            status: 400,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
                 <Message>{message}</Message></Error></Errors><RequestID>scripted</RequestID></Response>"
            ),
        }
    }
}

type Script = HashMap<String, VecDeque<Reply>>;

pub struct Scripted {
    port: u16,
    script: Arc<Mutex<Script>>,
    log: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    pub fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let script: Arc<Mutex<Script>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, l, b, st) = (script.clone(), log.clone(), bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &s, &l, &b),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return,
                }
            }
        });
        Scripted {
            port,
            script,
            log,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues `reply` for the next call of `action` (an EC2 action such as
    /// `DescribeImages`, or `S3:GET`, `S3:PUT`, `S3:DELETE`).
    pub fn then(&self, action: &str, reply: Reply) -> &Self {
        if let Ok(mut s) = self.script.lock() {
            s.entry(action.to_owned()).or_default().push_back(reply);
        }
        self
    }

    /// The actions asked so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The request bodies so far, in order (query-API parameters,
    /// URL-encoded: `Action=EnableImageDeprecation&ImageId=ami-1&…`).
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Scripted replies not used (a test asserts this is empty).
    pub fn unused(&self) -> Vec<String> {
        self.script
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(k, q)| format!("{k} x{}", q.len()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    script: &Mutex<Script>,
    log: &Mutex<Vec<String>>,
    bodies: &Mutex<Vec<String>>,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let method = line.split_whitespace().next().unwrap_or("").to_owned();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body);
    let action = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("S3:{method}"));
    if let Ok(mut l) = log.lock() {
        l.push(action.clone());
    }
    if let Ok(mut b) = bodies.lock() {
        b.push(body.clone().into_owned());
    }
    let reply = script
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(&action).and_then(VecDeque::pop_front))
        .unwrap_or_else(|| {
            Reply::ec2_error("Unscripted", &format!("no reply scripted for {action}"))
        });
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = conn.flush();
}
