//! The load generator: a closed-loop keep-alive HTTP/1.1 client, N
//! connections on one mio event loop in this thread. Every connection sends
//! `POST /invoke` with a fixed body, reads the whole (echoed) answer while
//! still uploading, checks it byte for byte, and sends the next one.
//!
//! Bounded in time (warm-up + measured window + a grace for requests in
//! flight) and in count (at most `max_requests` measured). Loopback only.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Deterministic body: byte i = (i * 31 + 7) % 251 (the fixture's pattern).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// One `POST /invoke` request with a Content-Length body.
pub struct Request {
    pub bytes: Vec<u8>,
    pub body_at: usize,
}

impl Request {
    pub fn invoke(port: u16, body: &[u8]) -> Arc<Request> {
        let head = format!("POST /invoke HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {}\r\n\r\n", body.len());
        let mut bytes = head.into_bytes();
        let body_at = bytes.len();
        bytes.extend_from_slice(body);
        Arc::new(Request { bytes, body_at })
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..]
    }
}

pub struct Spec {
    pub addr: SocketAddr,
    pub conns: usize,
    pub request: Arc<Request>,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: u64,
    /// One request may take this long before it counts as an error.
    pub timeout: Duration,
}

/// What a run measured: completions inside the window after the warm-up.
#[derive(Default, Debug, Clone)]
pub struct Outcome {
    /// Successful answers completed inside the measured window.
    pub ok: u64,
    /// Successful answers over the whole run (warm-up and drain included),
    /// to divide CPU time by.
    pub all_ok: u64,
    pub errors: u64,
    pub window: Duration,
    pub lat_ns: Vec<u64>,
    pub body_bytes: u64,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn failed(why: String) -> Outcome {
        Outcome { errors: 1, first_error: Some(why), ..Default::default() }
    }

    pub fn rps(&self) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.window.as_secs_f64()
        }
    }

    /// Echoed body bytes per second, each way. One connection: bytes over
    /// the summed request latencies (exact for a closed loop, no partial
    /// requests at the window's edges); more: bytes over the window.
    pub fn mib_per_s(&self, conns: usize) -> f64 {
        let secs = if conns == 1 { self.lat_ns.iter().sum::<u64>() as f64 / 1e9 } else { self.window.as_secs_f64() };
        if secs == 0.0 {
            0.0
        } else {
            self.body_bytes as f64 / secs / (1024.0 * 1024.0)
        }
    }
}

/// Incremental HTTP/1.1 response reader (status, Content-Length or chunked
/// body, keep-alive) that compares the body with the request's.
#[derive(Debug)]
enum St {
    Head,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

pub struct RespParser {
    st: St,
    line: Vec<u8>,
    pub status: u16,
    pub keep_alive: bool,
    pub body_len: usize,
    pub mismatch: bool,
    /// The start of a non-200 answer's body, for error reports.
    pub error_body: Vec<u8>,
}

impl Default for RespParser {
    fn default() -> Self {
        RespParser {
            st: St::Head,
            line: Vec::new(),
            status: 0,
            keep_alive: true,
            body_len: 0,
            mismatch: false,
            error_body: Vec::new(),
        }
    }
}

impl RespParser {
    pub fn reset(&mut self) {
        self.st = St::Head;
        self.line.clear();
        self.status = 0;
        self.keep_alive = true;
        self.body_len = 0;
        self.mismatch = false;
        self.error_body.clear();
    }

    pub fn done(&self) -> bool {
        matches!(self.st, St::Done)
    }

    fn body(&mut self, data: &[u8], expect: &[u8]) {
        if self.status == 200 {
            let end = self.body_len + data.len();
            if end > expect.len() || expect[self.body_len..end] != *data {
                self.mismatch = true;
            }
        } else if self.error_body.len() < 200 {
            let n = data.len().min(200 - self.error_body.len());
            self.error_body.extend_from_slice(&data[..n]);
        }
        self.body_len += data.len();
    }

    /// Feed bytes; returns how many were used (stops at the end of the response).
    pub fn feed(&mut self, mut data: &[u8], expect: &[u8]) -> Result<usize, String> {
        let total = data.len();
        while !data.is_empty() {
            match self.st {
                St::Done => break,
                St::Head => {
                    let from = self.line.len().saturating_sub(3);
                    self.line.extend_from_slice(data);
                    let Some(pos) = find(&self.line[from..], b"\r\n\r\n").map(|p| p + from + 4) else {
                        if self.line.len() > 64 * 1024 {
                            return Err("response head too large".into());
                        }
                        data = &[];
                        continue;
                    };
                    let used = data.len() - (self.line.len() - pos);
                    data = &data[used..];
                    self.line.truncate(pos);
                    self.parse_head()?;
                    self.line.clear();
                }
                St::Length(left) => {
                    let n = (left as usize).min(data.len());
                    self.body(&data[..n], expect);
                    data = &data[n..];
                    self.st = if left == n as u64 { St::Done } else { St::Length(left - n as u64) };
                }
                St::ChunkSize | St::ChunkEnd | St::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', data) else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > 4096 {
                            return Err("chunk line too long".into());
                        }
                        data = &[];
                        continue;
                    };
                    self.line.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    let text = line.strip_suffix(b"\r\n").ok_or("bare LF in chunked body")?;
                    self.st = match self.st {
                        St::ChunkSize => {
                            let hex = text.split(|b| *b == b';').next().unwrap_or(b"");
                            let s = std::str::from_utf8(hex).map_err(|_| "bad chunk size")?;
                            let size = u64::from_str_radix(s.trim(), 16).map_err(|_| "bad chunk size")?;
                            if size == 0 {
                                St::Trailers
                            } else {
                                St::ChunkData(size)
                            }
                        }
                        St::ChunkEnd if text.is_empty() => St::ChunkSize,
                        St::ChunkEnd => return Err("missing CRLF after chunk".into()),
                        _ if text.is_empty() => St::Done,
                        _ => St::Trailers,
                    };
                }
                St::ChunkData(left) => {
                    let n = (left as usize).min(data.len());
                    self.body(&data[..n], expect);
                    data = &data[n..];
                    self.st = if left == n as u64 { St::ChunkEnd } else { St::ChunkData(left - n as u64) };
                }
            }
        }
        Ok(total - data.len())
    }

    fn parse_head(&mut self) -> Result<(), String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&self.line) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("partial head".into()),
            Err(e) => return Err(format!("bad response head: {e}")),
        }
        let status = resp.code.unwrap_or(0);
        let mut length = None;
        let mut chunked = false;
        self.keep_alive = resp.version == Some(1);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if v.contains("close") {
                    self.keep_alive = false;
                }
            }
        }
        if (100..200).contains(&status) {
            // 100 Continue and friends: the real head follows.
            self.st = St::Head;
            return Ok(());
        }
        self.status = status;
        self.st = if chunked {
            St::ChunkSize
        } else if let Some(n) = length {
            if n == 0 {
                St::Done
            } else {
                St::Length(n)
            }
        } else {
            return Err("response without length or chunked framing".into());
        };
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// One request on a fresh blocking connection. Ok(status) once the answer is
/// complete; the body must echo the request's for a 200.
pub fn one_request(addr: SocketAddr, req: &Request, timeout: Duration) -> Result<u16, String> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    request_on(s, req, timeout)
}

/// One request on a connected stream (see `one_request`).
pub fn request_on(mut s: std::net::TcpStream, req: &Request, timeout: Duration) -> Result<u16, String> {
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.write_all(&req.bytes).map_err(|e| e.to_string())?;
    let mut p = RespParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    while !p.done() {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the answer ended".into());
        }
        p.feed(&buf[..n], req.body())?;
    }
    if p.status == 200 && (p.mismatch || p.body_len != req.body().len()) {
        return Err(format!("echo mismatch ({} of {} bytes)", p.body_len, req.body().len()));
    }
    Ok(p.status)
}

struct Conn {
    sock: TcpStream,
    wpos: usize,
    busy: bool,
    started: Instant,
    parser: RespParser,
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// Run the closed loop described by `spec`.
pub fn run(spec: &Spec) -> Outcome {
    match run_inner(spec) {
        Ok(o) => o,
        Err(e) => Outcome::failed(format!("load generator: {e}")),
    }
}

fn run_inner(spec: &Spec) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        let mut sock = connect(spec.addr)?;
        poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn { sock, wpos: 0, busy: false, started: Instant::now(), parser: RespParser::default() });
    }
    let req = spec.request.clone();
    let expect = req.body();
    let mut out = Outcome::default();
    let mut buf = vec![0u8; 256 * 1024];
    let t0 = Instant::now();
    let start = t0 + spec.warmup;
    let end = start + spec.duration;
    let mut stop_at: Option<Instant> = None;
    let mut last_sweep = t0;
    let mut pending: Vec<usize> = (0..spec.conns).collect();

    loop {
        // Start (or restart) requests on idle connections.
        for i in pending.drain(..) {
            let c = &mut conns[i];
            c.busy = true;
            c.wpos = 0;
            c.started = Instant::now();
            c.parser.reset();
            if let Err(e) = write_more(c, &req.bytes) {
                fail(&mut out, &format!("write: {e}"));
                reconnect(&poll, &mut conns[i], spec.addr, i)?;
                conns[i].busy = false;
            }
        }
        let now = Instant::now();
        if stop_at.is_none() && (now >= end || out.ok >= spec.max_requests) {
            stop_at = Some(now);
            out.window = now.saturating_duration_since(start);
        }
        if let Some(stop) = stop_at {
            let busy = conns.iter().any(|c| c.busy);
            if !busy || now > stop + spec.timeout {
                break;
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let mut finished: Vec<(usize, Result<bool, String>)> = Vec::new();
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if !c.busy {
                // Readable on an idle connection: the server closed it.
                if ev.is_readable() {
                    finished.push((i, Err("idle connection closed".into())));
                }
                continue;
            }
            if ev.is_writable() && c.wpos < req.bytes.len() {
                if let Err(e) = write_more(c, &req.bytes) {
                    finished.push((i, Err(format!("write: {e}"))));
                    continue;
                }
            }
            if ev.is_readable() {
                match read_more(c, &mut buf, expect) {
                    Ok(true) => finished.push((i, Ok(c.parser.keep_alive))),
                    Ok(false) => {}
                    Err(e) => finished.push((i, Err(e))),
                }
            }
        }
        let now = Instant::now();
        for (i, result) in finished {
            let c = &mut conns[i];
            let was_busy = c.busy;
            c.busy = false;
            let ok_answer = result
                .as_ref()
                .is_ok_and(|_| c.parser.status == 200 && !c.parser.mismatch && c.parser.body_len == expect.len());
            let keep = match &result {
                Ok(keep) if ok_answer => {
                    out.all_ok += 1;
                    let in_window = now >= start && stop_at.is_none_or(|s| now <= s);
                    if in_window && was_busy {
                        out.ok += 1;
                        out.body_bytes += expect.len() as u64;
                        out.lat_ns.push((now - c.started).as_nanos() as u64);
                    }
                    // An answer that came before the whole request went out
                    // leaves the connection unusable.
                    *keep && c.wpos == req.bytes.len()
                }
                Ok(keep) => {
                    fail(
                        &mut out,
                        &format!(
                            "status {} ({} bytes, mismatch {}): {}",
                            c.parser.status,
                            c.parser.body_len,
                            c.parser.mismatch,
                            String::from_utf8_lossy(&c.parser.error_body)
                        ),
                    );
                    *keep && c.wpos == req.bytes.len()
                }
                Err(e) => {
                    if was_busy || stop_at.is_none() {
                        fail(&mut out, e);
                    }
                    false
                }
            };
            if stop_at.is_some() {
                continue;
            }
            if !keep {
                reconnect(&poll, c, spec.addr, i)?;
            }
            pending.push(i);
        }
        // Requests stuck past the timeout count as errors.
        if now - last_sweep > Duration::from_millis(100) {
            last_sweep = now;
            for (i, c) in conns.iter_mut().enumerate() {
                if c.busy && now - c.started > spec.timeout {
                    fail(&mut out, "request timed out");
                    c.busy = false;
                    reconnect(&poll, c, spec.addr, i)?;
                    if stop_at.is_none() {
                        pending.push(i);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn fail(out: &mut Outcome, why: &str) {
    out.errors += 1;
    if out.first_error.is_none() {
        out.first_error = Some(why.to_string());
    }
}

fn reconnect(poll: &Poll, c: &mut Conn, addr: SocketAddr, i: usize) -> io::Result<()> {
    let _ = poll.registry().deregister(&mut c.sock);
    let mut sock = connect(addr)?;
    poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    c.sock = sock;
    c.parser.reset();
    Ok(())
}

fn write_more(c: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    while c.wpos < bytes.len() {
        match c.sock.write(&bytes[c.wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read until WouldBlock; Ok(true) when the response is complete.
fn read_more(c: &mut Conn, buf: &mut [u8], expect: &[u8]) -> Result<bool, String> {
    loop {
        match c.sock.read(buf) {
            Ok(0) => return Err("connection closed before the answer ended".into()),
            Ok(n) => {
                let used = c.parser.feed(&buf[..n], expect)?;
                if c.parser.done() {
                    if used != n {
                        return Err("bytes after the response".into());
                    }
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
