//! A pass-through proxy in front of moto that fails or holds chosen calls:
//! the failures moto cannot produce by itself. A CopyImage refused in one
//! region only (as EC2 refuses an opt-in region the account has not
//! enabled), or a call that does not answer yet, to interrupt or kill a
//! bake at a chosen step. Everything else goes to moto unchanged.
//!
//! A call is matched by its EC2 query-API `Action` and the region its
//! SigV4 credential scope names, and optionally by a piece of its
//! (form-encoded) body, to pick one of several calls of the same action. Plain HTTP/1.1, one request per
//! connection (answers carry `Connection: close`), a thread per connection
//! so a held call blocks nothing else; it stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Moto, Reply};

/// What to do with a matched call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this instead of asking moto.
    Fail(Reply),
    /// Never answer (until the caller hangs up or the proxy is dropped);
    /// moto is never asked.
    Hang,
    /// Wait, then pass the call on to moto.
    Delay(Duration),
    /// Answer this instead of asking moto, for the first matching call
    /// only (the rule then goes): a throttled or failed call that a retry
    /// gets through.
    FailOnce(Reply),
    /// Pass the call on to moto, then answer this instead of moto's answer,
    /// for the first matching call only: an applied call whose answer was
    /// lost, which a retry (or rerun) must not apply twice.
    LoseAnswerOnce(Reply),
}

#[derive(Debug, Clone)]
struct Rule {
    action: String,
    region: String,
    /// Also required in the request body, as sent (form-encoded).
    body: Option<String>,
    fault: Fault,
}

pub struct FaultProxy {
    port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `moto`.
    pub fn start(moto: &Moto) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let upstream = moto.port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, st) = (rules.clone(), hits.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (r, h, st) = (r.clone(), h.clone(), st.clone());
                            std::thread::spawn(move || {
                                let _ = serve(conn, upstream, &r, &h, &st);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => return,
                    }
                }
            })
            .expect("proxy thread");
        FaultProxy {
            port,
            rules,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Point the code under test here (`AWS_ENDPOINT_URL`) instead of at
    /// moto.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// For [`crate::EmulatorOptions::proxy_port`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Applies `fault` to every EC2 call of `action` (e.g. `CopyImage`)
    /// signed for `region`.
    pub fn on(&self, action: &str, region: &str, fault: Fault) -> &Self {
        self.add(action, region, None, fault)
    }

    /// Like [`FaultProxy::on`], for the calls whose form-encoded body
    /// contains `body` (e.g. `Value=complete` for one CreateTags).
    pub fn on_body(&self, action: &str, region: &str, body: &str, fault: Fault) -> &Self {
        self.add(action, region, Some(body.to_owned()), fault)
    }

    /// Drops every rule: from now on all calls pass. Calls already held
    /// stay held.
    pub fn clear(&self) {
        if let Ok(mut r) = self.rules.lock() {
            r.clear();
        }
    }

    fn add(&self, action: &str, region: &str, body: Option<String>, fault: Fault) -> &Self {
        if let Ok(mut r) = self.rules.lock() {
            r.push(Rule {
                action: action.to_owned(),
                region: region.to_owned(),
                body,
                fault,
            });
        }
        self
    }

    /// `Action@region` of each call a fault was applied to, in the order
    /// they arrived (recorded on arrival, before the fault acts).
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Waits (real time, bounded) until a call of `action` in `region` has
    /// arrived.
    pub fn wait_for_hit(&self, action: &str, region: &str, timeout: Duration) -> bool {
        let want = format!("{action}@{region}");
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.hits().contains(&want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Connection threads see the flag within one poll and end.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    client: TcpStream,
    upstream: u16,
    rules: &Mutex<Vec<Rule>>,
    hits: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;

    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        headers.push(h.trim_end().to_owned());
    }
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if let Some(n) = header("content-length") {
        let mut b = vec![0u8; n.parse().unwrap_or(0)];
        reader.read_exact(&mut b)?;
        b
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut reader)?
    } else {
        Vec::new()
    };

    let form =
        header("content-type").is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let action = form
        .then(|| {
            String::from_utf8_lossy(&body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .map(str::to_owned)
        })
        .flatten();
    // `Credential=KEY/DATE/REGION/SERVICE/aws4_request`
    let region = header("authorization")
        .and_then(|a| a.split_once("Credential=")?.1.split('/').nth(2))
        .map(str::to_owned);
    let text = String::from_utf8_lossy(&body);
    let fault = match (&action, &region) {
        (Some(a), Some(r)) => rules.lock().ok().and_then(|mut rules| {
            let i = rules.iter().position(|rule| {
                &rule.action == a
                    && &rule.region == r
                    && rule.body.as_ref().is_none_or(|b| text.contains(b.as_str()))
            })?;
            let fault = rules[i].fault.clone();
            if matches!(fault, Fault::FailOnce(_) | Fault::LoseAnswerOnce(_)) {
                rules.remove(i);
            }
            Some(fault)
        }),
        _ => None,
    };
    let mut lose: Option<Reply> = None;
    if let (Some(f), Some(a), Some(r)) = (&fault, &action, &region) {
        if let Ok(mut h) = hits.lock() {
            h.push(format!("{a}@{r}"));
        }
        match f {
            Fault::Fail(reply) | Fault::FailOnce(reply) => {
                return write!(
                    client,
                    "HTTP/1.1 {} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
            }
            Fault::Hang => {
                hang(&client, stop);
                return Ok(());
            }
            Fault::LoseAnswerOnce(reply) => lose = Some(reply.clone()),
            Fault::Delay(d) => {
                let end = Instant::now() + *d;
                while Instant::now() < end {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    // Forward: same request, but one per connection, so moto closes after
    // answering and the answer is everything until EOF.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = request_line;
    for h in &headers {
        let name = h.split(':').next().unwrap_or("").trim();
        if [
            "connection",
            "expect",
            "transfer-encoding",
            "content-length",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        head.push_str(h);
        head.push_str("\r\n");
    }
    // The body is whole (de-chunked), so its length is known.
    if header("content-length").is_some() || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if let Some(reply) = lose {
        // moto applied it; the caller never hears so.
        return write!(
            client,
            "HTTP/1.1 {} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            reply.status,
            reply.body.len(),
            reply.body
        );
    }

    // Tell the caller not to reuse this connection.
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end in moto's answer"))?;
    let answer_head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut out = String::new();
    for line in answer_head.split("\r\n") {
        if line
            .split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(&answer[split + 4..])?;
    client.flush()
}

/// Holds the connection without answering until the caller hangs up or
/// the proxy stops.
fn hang(client: &TcpStream, stop: &AtomicBool) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    let mut probe = client;
    let mut byte = [0u8; 1];
    while !stop.load(Ordering::SeqCst) {
        match probe.read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A chunked body, de-chunked (trailers dropped).
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::other(format!("bad chunk size {line:?}: {e}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}
