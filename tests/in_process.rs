//! The event loop in-process, against a Rust fake data plane.
//!
//! `noslate_fc::server::Server` runs on a thread of this test process and is
//! driven over loopback HTTP/1.1, as FC drives it. Its data plane is
//! [`FakePlane`]: **a test fixture that plays the Noslated data plane; not
//! Noslated.** It speaks HTTP/2 and gRPC on a temporary unix socket with the
//! crate's own frame, HPACK and protobuf codecs, answers `checkHealth`, and
//! answers `PushServer/invoke` with an echo, like the `echo` function of the
//! Node fixture (tests/peer/noslated-peer.js).
//!
//! Why besides the Node fixture: no child process and no Node, so the tests
//! are deterministic and quick, and the fixture sees every frame the gateway
//! writes. That is what lets these tests assert frame-level facts the Node
//! fixture cannot show, such as "a finished invoke is never reset" (Noslated
//! counts client resets, docs/noslated-protocol.md §3.4) or "a refused
//! stream is retried on the same connection".
//!
//! Nothing here can hang: every socket has timeouts, every loop is bounded in
//! time, and every thread is joined against a deadline.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use noslate_fc::config::{Command, Config};
use noslate_fc::grpc::{message_prefix, Deframer};
use noslate_fc::h2::frame::{setting, DEFAULT_INITIAL_WINDOW_SIZE, DEFAULT_MAX_FRAME_SIZE};
use noslate_fc::h2::{decode_frame, ErrorCode, Frame};
use noslate_fc::hpack::{Decoder, Encoder};
use noslate_fc::proto::{InvokeRequest, InvokeResponse, InvokeResult, PlaneHealthyResponse};
use noslate_fc::server::Server;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const INVOKE: &str = "/noslated.data.PushServer/invoke";
const CHECK_HEALTH: &str = "/noslated.data.DataPlane/checkHealth";

/// Read/write timeout of every socket in this file.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the event loop may take to exit after `/pre-stop`.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// The fixture's read timeout: how often it looks at its stop flag.
const FAKE_POLL: Duration = Duration::from_millis(20);
/// A fixture thread gives up after this, whatever happens.
const FAKE_LIFETIME: Duration = Duration::from_secs(120);
/// Body bytes per response message, as the Node fixture writes them.
const BODY_CHUNK: usize = 64 * 1024;
/// Largest response head or chunk-size line the client accepts.
const MAX_LINE: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// What the fixture saw
// ---------------------------------------------------------------------------

/// One thing the fixture saw or did, in order. `conn` numbers the gateway's
/// connections to the fixture from 0.
#[derive(Clone, Debug)]
enum Seen {
    Connected {
        conn: usize,
    },
    /// Every frame the gateway sent: its type and stream.
    Frame {
        conn: usize,
        kind: &'static str,
        stream: u32,
    },
    /// A request HEADERS block opened `stream` for `path`.
    Open {
        conn: usize,
        stream: u32,
        path: String,
    },
    /// The fixture refused the stream with RST_STREAM(REFUSED_STREAM).
    Refused {
        conn: usize,
        stream: u32,
    },
    /// A complete invoke request, as decoded.
    Invoke(InvokeSeen),
    /// RST_STREAM from the gateway.
    Reset {
        conn: usize,
        stream: u32,
        code: ErrorCode,
    },
    /// The gateway broke HTTP/2 or gRPC as the fixture understands it.
    Bad {
        conn: usize,
        why: String,
    },
}

#[derive(Clone, Debug)]
struct InvokeSeen {
    conn: usize,
    stream: u32,
    name: Option<String>,
    request_id: Option<String>,
    body_len: usize,
    messages: usize,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, seen: Seen) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
}

/// The fixture's log once everything has stopped, with the questions the
/// tests ask of it.
struct Report {
    seen: Vec<Seen>,
}

impl Report {
    /// What `pick` takes from each thing seen, in order.
    fn select<'a, T>(&'a self, pick: impl Fn(&'a Seen) -> Option<T>) -> Vec<T> {
        self.seen.iter().filter_map(pick).collect()
    }

    /// The gateway's connections to the fixture, by number.
    fn connections(&self) -> Vec<usize> {
        self.select(|s| match s {
            Seen::Connected { conn } => Some(*conn),
            _ => None,
        })
    }

    /// `(conn, stream)` of every stream opened for `path`.
    fn opened(&self, path: &str) -> Vec<(usize, u32)> {
        self.select(|s| match s {
            Seen::Open { conn, stream, path: p } if p == path => Some((*conn, *stream)),
            _ => None,
        })
    }

    fn refused(&self) -> Vec<(usize, u32)> {
        self.select(|s| match s {
            Seen::Refused { conn, stream } => Some((*conn, *stream)),
            _ => None,
        })
    }

    fn resets(&self) -> Vec<String> {
        self.select(|s| match s {
            Seen::Reset { conn, stream, code } => Some(format!("conn {conn} stream {stream}: {code}")),
            _ => None,
        })
    }

    fn bad(&self) -> Vec<String> {
        self.select(|s| match s {
            Seen::Bad { conn, why } => Some(format!("conn {conn}: {why}")),
            _ => None,
        })
    }

    fn invokes(&self) -> Vec<&InvokeSeen> {
        self.select(|s| match s {
            Seen::Invoke(i) => Some(i),
            _ => None,
        })
    }

    /// `(type, stream)` of the frames the gateway sent on `conn`.
    fn frames(&self, conn: usize) -> Vec<(&'static str, u32)> {
        self.select(|s| match s {
            Seen::Frame { conn: c, kind, stream } if *c == conn => Some((*kind, *stream)),
            _ => None,
        })
    }

    /// What every test expects: the gateway stayed on one connection, broke
    /// no rule, and reset no stream (each invoke here finishes normally).
    fn assert_clean(&self) {
        assert_eq!(self.bad(), Vec::<String>::new(), "the fixture rejected what the gateway sent");
        assert_eq!(self.resets(), Vec::<String>::new(), "finished streams must never be reset");
        assert_eq!(self.connections(), [0], "one data-plane connection for the whole test");
        assert_eq!(self.opened(CHECK_HEALTH).len(), 1, "checkHealth once per connection");
        assert_eq!(self.frames(0).first(), Some(&("SETTINGS", 0)), "the gateway's first frame");
    }
}

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct FakeOptions {
    /// Refuse this many invoke streams (the first ones) with
    /// RST_STREAM(REFUSED_STREAM) on their HEADERS, before any processing.
    refuse_invokes: usize,
}

/// A test fixture that plays the Noslated data plane; not Noslated.
///
/// One thread accepts on the unix socket, one thread serves each connection
/// with blocking I/O and a short read timeout (so it can also send response
/// DATA as the gateway's WINDOW_UPDATEs come in).
struct FakePlane {
    stop: Arc<AtomicBool>,
    log: Log,
    acceptor: JoinHandle<()>,
}

impl FakePlane {
    /// Binds `sock` now, so the gateway finds it on its first connect.
    fn start(sock: &Path, opts: FakeOptions) -> FakePlane {
        let listener = UnixListener::bind(sock).expect("bind the fake data plane socket");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let refuse = Arc::new(AtomicUsize::new(opts.refuse_invokes));
        let acceptor = {
            let (stop, log) = (stop.clone(), log.clone());
            thread::Builder::new()
                .name("fake-plane-accept".into())
                .spawn(move || accept_loop(listener, stop, log, refuse))
                .expect("spawn the fixture")
        };
        FakePlane { stop, log, acceptor }
    }

    fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        join_within(self.acceptor, IO_TIMEOUT, "the fake data plane");
        let seen = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        Report { seen }
    }
}

fn accept_loop(listener: UnixListener, stop: Arc<AtomicBool>, log: Log, refuse: Arc<AtomicUsize>) {
    let started = Instant::now();
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < FAKE_LIFETIME {
        match listener.accept() {
            Ok((sock, _)) => {
                let id = conns.len();
                record(&log, Seen::Connected { conn: id });
                let conn = FakeConn::new(id, sock, log.clone(), refuse.clone(), stop.clone());
                let handle = thread::Builder::new()
                    .name(format!("fake-plane-{id}"))
                    .spawn(move || conn.serve())
                    .expect("spawn a fixture connection");
                conns.push(handle);
            }
            // A short bounded poll: std has no accept with a timeout.
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                record(&log, Seen::Bad { conn: usize::MAX, why: format!("accept: {e}") });
                break;
            }
        }
    }
    for handle in conns {
        join_within(handle, IO_TIMEOUT, "a fake data plane connection");
    }
}

/// One request stream, as the fixture tracks it.
struct Stream {
    /// The header block, until END_HEADERS.
    block: Vec<u8>,
    path: Option<String>,
    /// The request's gRPC messages.
    deframer: Deframer,
    /// The gateway sent END_STREAM.
    ended: bool,
    /// The fixture refused it: everything after is ignored.
    refused: bool,
    /// The fixture's send window on this stream.
    window: i64,
    /// Response messages not yet sent, while answering; the trailers follow
    /// the last one.
    out: Option<VecDeque<Bytes>>,
}

struct FakeConn {
    id: usize,
    sock: UnixStream,
    log: Log,
    refuse: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    preface_seen: bool,
    dec: Decoder,
    enc: Encoder,
    /// Ordered, so responses are sent round-robin by stream id.
    streams: BTreeMap<u32, Stream>,
    /// Stream whose header block goes on in CONTINUATION frames.
    continuing: Option<u32>,
    /// Send windows: the connection's, and the gateway's initial stream
    /// window (its SETTINGS_INITIAL_WINDOW_SIZE).
    conn_window: i64,
    initial_window: i64,
    peer_max_frame: usize,
}

impl FakeConn {
    fn new(id: usize, sock: UnixStream, log: Log, refuse: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> FakeConn {
        FakeConn {
            id,
            sock,
            log,
            refuse,
            stop,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            preface_seen: false,
            dec: Decoder::new(4096),
            enc: Encoder::new(),
            streams: BTreeMap::new(),
            continuing: None,
            conn_window: i64::from(DEFAULT_INITIAL_WINDOW_SIZE),
            initial_window: i64::from(DEFAULT_INITIAL_WINDOW_SIZE),
            peer_max_frame: DEFAULT_MAX_FRAME_SIZE as usize,
        }
    }

    fn record(&self, seen: Seen) {
        record(&self.log, seen);
    }

    fn serve(mut self) {
        // The accepted socket must block (with timeouts), whatever the
        // listener's mode.
        let setup = self
            .sock
            .set_nonblocking(false)
            .and_then(|()| self.sock.set_read_timeout(Some(FAKE_POLL)))
            .and_then(|()| self.sock.set_write_timeout(Some(IO_TIMEOUT)));
        if let Err(e) = setup {
            self.record(Seen::Bad { conn: self.id, why: format!("socket setup: {e}") });
            return;
        }
        // An empty SETTINGS, as Noslated sends (docs/noslated-protocol.md §3.1).
        Frame::Settings { ack: false, params: vec![] }.encode(&mut self.wbuf);
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while !self.stop.load(Ordering::SeqCst) && started.elapsed() < FAKE_LIFETIME {
            if !self.wbuf.is_empty() {
                if self.sock.write_all(&self.wbuf).is_err() {
                    return; // the gateway went away (at exit)
                }
                self.wbuf.clear();
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return,
            }
            if let Err(why) = self.process() {
                self.record(Seen::Bad { conn: self.id, why });
                return;
            }
            self.send_pending();
        }
    }

    fn process(&mut self) -> Result<(), String> {
        if !self.preface_seen {
            if self.rbuf.len() < PREFACE.len() {
                return Ok(());
            }
            if &self.rbuf[..PREFACE.len()] != PREFACE {
                return Err("bad client preface".into());
            }
            self.rbuf.advance(PREFACE.len());
            self.preface_seen = true;
        }
        // We advertised no SETTINGS_MAX_FRAME_SIZE: the default applies.
        while let Some(frame) = decode_frame(&mut self.rbuf, DEFAULT_MAX_FRAME_SIZE).map_err(|e| e.to_string())? {
            self.on_frame(frame)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), String> {
        let (kind, stream) = kind_of(&frame);
        self.record(Seen::Frame { conn: self.id, kind, stream });
        if let Some(id) = self.continuing {
            if !matches!(frame, Frame::Continuation { stream_id, .. } if stream_id == id) {
                return Err(format!("{kind} while the header block of stream {id} goes on"));
            }
        }
        match frame {
            Frame::Settings { ack: false, params } => {
                for (id, value) in params {
                    match id {
                        setting::INITIAL_WINDOW_SIZE => {
                            let delta = i64::from(value) - self.initial_window;
                            for s in self.streams.values_mut() {
                                s.window += delta;
                            }
                            self.initial_window = i64::from(value);
                        }
                        setting::MAX_FRAME_SIZE => self.peer_max_frame = value as usize,
                        _ => {}
                    }
                }
                Frame::Settings { ack: true, params: vec![] }.encode(&mut self.wbuf);
            }
            Frame::Settings { ack: true, .. } => {}
            Frame::Ping { ack: false, payload } => Frame::Ping { ack: true, payload }.encode(&mut self.wbuf),
            Frame::Ping { ack: true, .. } => return Err("PING ack for a PING never sent".into()),
            Frame::WindowUpdate { stream_id: 0, increment } => self.conn_window += i64::from(increment),
            Frame::WindowUpdate { stream_id, increment } => {
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.window += i64::from(increment);
                }
            }
            Frame::Headers { stream_id, block, end_stream, end_headers } => {
                if self.streams.contains_key(&stream_id) {
                    return Err(format!("second HEADERS on stream {stream_id}"));
                }
                let s = Stream {
                    block: block.to_vec(),
                    path: None,
                    deframer: Deframer::default(),
                    ended: end_stream,
                    refused: false,
                    window: self.initial_window,
                    out: None,
                };
                self.streams.insert(stream_id, s);
                if end_headers {
                    self.headers_done(stream_id)?;
                } else {
                    self.continuing = Some(stream_id);
                }
            }
            Frame::Continuation { stream_id, block, end_headers } => {
                let Some(s) = self.streams.get_mut(&stream_id) else {
                    return Err(format!("CONTINUATION on idle stream {stream_id}"));
                };
                s.block.extend_from_slice(&block);
                if end_headers {
                    self.continuing = None;
                    self.headers_done(stream_id)?;
                }
            }
            Frame::Data { stream_id, payload, end_stream, flow_len } => {
                // Return the window at once, as Noslated does as it reads
                // (§3.2): else large bodies stall.
                if flow_len > 0 {
                    Frame::WindowUpdate { stream_id: 0, increment: flow_len }.encode(&mut self.wbuf);
                }
                let Some(s) = self.streams.get_mut(&stream_id) else {
                    return Err(format!("DATA on idle stream {stream_id}"));
                };
                if s.refused {
                    return Ok(()); // sent before our reset reached the gateway
                }
                if s.ended {
                    return Err(format!("DATA after END_STREAM on stream {stream_id}"));
                }
                if flow_len > 0 && !end_stream {
                    Frame::WindowUpdate { stream_id, increment: flow_len }.encode(&mut self.wbuf);
                }
                s.deframer.push(payload);
                if end_stream {
                    s.ended = true;
                    if s.path.is_some() {
                        self.answer(stream_id)?;
                    }
                }
            }
            Frame::RstStream { stream_id, code } => {
                self.record(Seen::Reset { conn: self.id, stream: stream_id, code });
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.out = None;
                }
            }
            Frame::PushPromise { .. } => return Err("PUSH_PROMISE from a client".into()),
            Frame::GoAway { .. } | Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// The header block of `id` is complete: read `:path`, refuse the
    /// stream if asked to, and answer if the request has already ended.
    fn headers_done(&mut self, id: u32) -> Result<(), String> {
        let s = self.streams.get_mut(&id).expect("stream exists");
        let mut path = None;
        self.dec
            .decode(&s.block, 1 << 20, &mut |name, value| {
                if name == b":path" {
                    path = Some(String::from_utf8_lossy(value).into_owned());
                }
            })
            .map_err(|e| format!("HPACK: {e}"))?;
        s.block = Vec::new();
        let path = path.ok_or_else(|| format!("stream {id} without :path"))?;
        record(&self.log, Seen::Open { conn: self.id, stream: id, path: path.clone() });
        if path == INVOKE && self.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            s.refused = true;
            Frame::RstStream { stream_id: id, code: ErrorCode::REFUSED_STREAM }.encode(&mut self.wbuf);
            record(&self.log, Seen::Refused { conn: self.id, stream: id });
            return Ok(());
        }
        let ended = s.ended;
        s.path = Some(path);
        if ended {
            self.answer(id)?;
        }
        Ok(())
    }

    /// The request on `id` is complete: queue its response.
    fn answer(&mut self, id: u32) -> Result<(), String> {
        let s = self.streams.get_mut(&id).expect("stream exists");
        let mut requests = Vec::new();
        while let Some(m) = s.deframer.next_message().map_err(|e| format!("stream {id}: {e}"))? {
            requests.push(m);
        }
        if !s.deframer.is_idle() {
            return Err(format!("stream {id} ended inside a gRPC message"));
        }
        let path = s.path.clone().unwrap_or_default();
        let messages = match path.as_str() {
            CHECK_HEALTH => {
                let health = PlaneHealthyResponse { name: Some("DataPlane"), health: Some(true), reason: None };
                vec![grpc_message(|dst| health.encode(dst))]
            }
            INVOKE => {
                // The head fields come from the first message only; the body
                // is the field 7 of every message, joined in order (§7.1).
                let mut body = Vec::new();
                let (mut name, mut request_id) = (None, None);
                for (i, m) in requests.iter().enumerate() {
                    let req = InvokeRequest::decode(m).map_err(|e| format!("stream {id}: InvokeRequest: {e}"))?;
                    if i == 0 {
                        name = req.name.map(str::to_owned);
                        request_id = req.request_id.map(str::to_owned);
                    }
                    body.extend_from_slice(req.body.unwrap_or_default());
                }
                if requests.is_empty() {
                    return Err(format!("invoke stream {id} without a first message"));
                }
                self.record(Seen::Invoke(InvokeSeen {
                    conn: self.id,
                    stream: id,
                    name,
                    request_id,
                    body_len: body.len(),
                    messages: requests.len(),
                }));
                let head = InvokeResult {
                    status: Some(200),
                    headers: vec![(&b"content-type"[..], &b"text/plain"[..])],
                    body: None,
                };
                let mut out = vec![grpc_message(|dst| InvokeResponse::Result(head).encode(dst))];
                for chunk in body.chunks(BODY_CHUNK) {
                    let chunk = InvokeResult { status: None, headers: vec![], body: Some(chunk) };
                    out.push(grpc_message(|dst| InvokeResponse::Result(chunk).encode(dst)));
                }
                out
            }
            other => return Err(format!("unexpected method {other:?}")),
        };
        let head = header_block(&mut self.enc, &[(":status", "200"), ("content-type", "application/grpc+proto")]);
        Frame::Headers { stream_id: id, block: head, end_stream: false, end_headers: true }.encode(&mut self.wbuf);
        let s = self.streams.get_mut(&id).expect("stream exists");
        s.out = Some(messages.into());
        Ok(())
    }

    /// Send response DATA as far as the windows allow (never a frame across
    /// two messages, like Node); the trailers once a response is all sent.
    fn send_pending(&mut self) {
        loop {
            let mut progressed = false;
            for (&id, s) in self.streams.iter_mut() {
                let Some(out) = s.out.as_mut() else { continue };
                if let Some(front) = out.front_mut() {
                    let allowed = self.conn_window.min(s.window).max(0) as usize;
                    let n = front.len().min(self.peer_max_frame).min(allowed);
                    if n == 0 {
                        continue;
                    }
                    let payload = front.split_to(n);
                    if front.is_empty() {
                        out.pop_front();
                    }
                    self.conn_window -= n as i64;
                    s.window -= n as i64;
                    Frame::Data { stream_id: id, payload, end_stream: false, flow_len: n as u32 }
                        .encode(&mut self.wbuf);
                    progressed = true;
                }
                if out.is_empty() {
                    let block = header_block(&mut self.enc, &[("grpc-status", "0"), ("grpc-message", "OK")]);
                    Frame::Headers { stream_id: id, block, end_stream: true, end_headers: true }.encode(&mut self.wbuf);
                    s.out = None;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

fn kind_of(frame: &Frame) -> (&'static str, u32) {
    match frame {
        Frame::Data { stream_id, .. } => ("DATA", *stream_id),
        Frame::Headers { stream_id, .. } => ("HEADERS", *stream_id),
        Frame::Priority { stream_id, .. } => ("PRIORITY", *stream_id),
        Frame::RstStream { stream_id, .. } => ("RST_STREAM", *stream_id),
        Frame::Settings { .. } => ("SETTINGS", 0),
        Frame::PushPromise { stream_id, .. } => ("PUSH_PROMISE", *stream_id),
        Frame::Ping { .. } => ("PING", 0),
        Frame::GoAway { .. } => ("GOAWAY", 0),
        Frame::WindowUpdate { stream_id, .. } => ("WINDOW_UPDATE", *stream_id),
        Frame::Continuation { stream_id, .. } => ("CONTINUATION", *stream_id),
        Frame::Unknown { stream_id, .. } => ("UNKNOWN", *stream_id),
    }
}

fn header_block(enc: &mut Encoder, fields: &[(&str, &str)]) -> Bytes {
    let mut block = Vec::new();
    enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
    Bytes::from(block)
}

/// One length-prefixed gRPC message (docs/noslated-protocol.md §4.2).
fn grpc_message(encode: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut msg = Vec::new();
    encode(&mut msg);
    let mut framed = message_prefix(msg.len() as u32).to_vec();
    framed.extend_from_slice(&msg);
    Bytes::from(framed)
}

// ---------------------------------------------------------------------------
// The gateway on a thread, and its harness
// ---------------------------------------------------------------------------

/// A unique temporary directory, removed on drop (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nfc-inproc-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Join `handle`, failing the test if it is still running after `limit`.
fn join_within<T>(handle: JoinHandle<T>, limit: Duration, what: &str) -> T {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "{what} did not finish within {limit:?}");
        thread::sleep(Duration::from_millis(5));
    }
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The fixture and the event loop for one test.
struct Harness {
    addr: SocketAddr,
    server: JoinHandle<i32>,
    fake: FakePlane,
    // Last: removed after the fixture's socket is gone.
    _dir: TempDir,
}

impl Harness {
    fn start(tag: &str, opts: FakeOptions) -> Harness {
        let dir = TempDir::new(tag);
        // Listening before the server starts: its first connect succeeds.
        let fake = FakePlane::start(&dir.0.join("dp-0.sock"), opts);
        let env: HashMap<String, String> = [
            ("SERVER_PORT", "0"),
            ("NOSLATE_FC_LISTEN", "127.0.0.1"),
            ("NOSLATE_FC_SOCK_DIR", dir.0.to_str().expect("utf-8 temp dir")),
            ("NOSLATE_FC_DATA_PLANES", "1"),
            ("NOSLATE_FC_CONTROL_PLANES", "0"),
            ("NOSLATE_FUNCTION", "echo"),
            ("NOSLATE_FC_TRUSTED_PEERS", "any"),
            ("NOSLATE_FC_READY_WAIT_MS", "5000"),
            ("NOSLATE_FC_DRAIN_MS", "2000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (tx, rx) = mpsc::channel();
        // The Server is made on its own thread: its signalfd blocks signals
        // for the thread that makes it, and it need not be Send.
        let server = thread::Builder::new()
            .name("noslate-fc".into())
            .spawn(move || {
                let cfg = match Config::from_args(Vec::<String>::new(), |k| env.get(k).cloned()) {
                    Ok(Command::Run(cfg)) => cfg,
                    Ok(_) => panic!("the config is not a run command"),
                    Err(e) => panic!("config: {e}"),
                };
                let mut server = match Server::new(*cfg) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(format!("Server::new: {e}")));
                        return -1;
                    }
                };
                let _ = tx.send(server.local_addr().ok_or_else(|| "no local address".to_string()));
                server.run()
            })
            .expect("spawn the event loop");
        let addr = rx.recv_timeout(EXIT_DEADLINE).expect("the event loop started").expect("the event loop");
        Harness { addr, server, fake, _dir: dir }
    }

    /// `/pre-stop`, then the loop must exit with 0 within the deadline.
    fn stop(self) -> Report {
        let mut client = Client::connect(self.addr);
        let r =
            client.request("GET", "/pre-stop", &[("x-fc-control-path", "/pre-stop"), ("x-fc-request-id", "stop")], b"");
        assert_eq!(r.status, 200, "/pre-stop: {}", String::from_utf8_lossy(&r.body));
        let code = join_within(self.server, EXIT_DEADLINE, "the event loop after /pre-stop");
        assert_eq!(code, 0, "run() exit code");
        self.fake.stop()
    }
}

// ---------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Client {
    sock: TcpStream,
    /// Bytes read but not yet consumed (keep-alive: the next response).
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the gateway");
        sock.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        sock.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
        sock.set_nodelay(true).expect("nodelay");
        Client { sock, buf: Vec::new() }
    }

    /// An event invocation as FC sends it.
    fn invoke(&mut self, request_id: &str, body: &[u8]) -> Response {
        self.request("POST", "/invoke", &[("x-fc-control-path", "/invoke"), ("x-fc-request-id", request_id)], body)
    }

    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.sock.write_all(&bytes).expect("write the request");
        self.read_response()
    }

    /// One response. A 1xx is returned as it is (no `Expect` is ever sent,
    /// so the caller's status check fails on it).
    fn read_response(&mut self) -> Response {
        let status_line = self.take_line();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.take_line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_string(), value.trim().to_string()));
            assert!(headers.len() < 200, "too many response headers");
        }
        let mut r = Response { status, headers, body: Vec::new() };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return r;
        }
        if r.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = self.take_line();
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
                if size == 0 {
                    // Trailer fields until the empty line.
                    while !self.take_line().is_empty() {}
                    break;
                }
                let chunk = self.take_exact(size);
                r.body.extend_from_slice(&chunk);
                assert_eq!(self.take_exact(2), b"\r\n", "chunk not followed by CRLF");
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().unwrap_or_else(|_| panic!("bad content-length {len:?}"));
            r.body = self.take_exact(len);
        } else {
            panic!("response {status} has neither content-length nor chunked encoding");
        }
        r
    }

    /// Read more; every read is bounded by the socket timeout.
    fn fill(&mut self) {
        let mut tmp = [0u8; 16 * 1024];
        match self.sock.read(&mut tmp) {
            Ok(0) => panic!("the gateway closed the connection mid-response"),
            Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("read from the gateway: {e}"),
        }
    }

    /// One line without its CRLF.
    fn take_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return String::from_utf8(line).expect("ASCII response line");
            }
            assert!(self.buf.len() < MAX_LINE, "response line longer than {MAX_LINE} bytes");
            self.fill();
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Byte i of a pattern body: (i * 31) % 251.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn echo_in_process() {
    let h = Harness::start("echo", FakeOptions::default());
    // At once: the gateway must hold the invoke until its plane connection
    // is up, not fail it.
    let mut client = Client::connect(h.addr);
    let r = client.invoke("r1", b"hello");
    assert_eq!(r.status, 200, "body {:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("content-type"), Some("text/plain"));

    // Same keep-alive connection; larger than every window on both sides,
    // so both directions go through flow control.
    let big = pattern(200 * 1024);
    let r = client.invoke("r2", &big);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "the 200 KiB echo differs");

    let report = h.stop();
    report.assert_clean();
    assert_eq!(report.opened(INVOKE).len(), 2, "one invoke stream per request");
    let invokes = report.invokes();
    let seen: Vec<_> = invokes.iter().map(|i| (i.request_id.as_deref(), i.body_len)).collect();
    assert_eq!(seen, [(Some("r1"), 5), (Some("r2"), big.len())]);
    for i in invokes {
        assert_eq!(i.name.as_deref(), Some("echo"), "stream {}", i.stream);
        assert!(i.messages >= 1, "conn {} stream {}: {} messages", i.conn, i.stream, i.messages);
    }
}

#[test]
fn refused_stream_is_retried_in_process() {
    let h = Harness::start("refused", FakeOptions { refuse_invokes: 1 });
    let mut client = Client::connect(h.addr);
    let r = client.invoke("r1", b"hello");
    assert_eq!(r.status, 200, "body {:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, b"hello");

    let report = h.stop();
    report.assert_clean();
    let opened = report.opened(INVOKE);
    assert_eq!(opened.len(), 2, "the refused stream and its retry: {opened:?}");
    assert_eq!(report.refused(), vec![opened[0]], "the first invoke stream was the refused one");
    // The retry is a new stream on the same connection.
    assert_eq!(opened[1].0, opened[0].0);
    assert!(opened[1].1 > opened[0].1);
    let invokes = report.invokes();
    assert_eq!(invokes.len(), 1, "only the retry was processed");
    assert_eq!((invokes[0].conn, invokes[0].stream), opened[1]);
    assert_eq!(invokes[0].body_len, 5);
}

/// The body client `c` sends in its request `r`: its own tag repeated, of
/// a length between 1 and 4 KiB.
fn body_for(c: usize, r: usize) -> Vec<u8> {
    let tag = format!("c{c}-r{r};");
    let len = 1024 + (c * 97 + r * 131) % 3072;
    tag.repeat(len / tag.len() + 1).into_bytes()[..len].to_vec()
}

#[test]
fn many_concurrent_invokes_in_process() {
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 20;
    let h = Harness::start("many", FakeOptions::default());
    let addr = h.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for r in 0..REQUESTS {
                    let body = body_for(c, r);
                    let id = format!("c{c}-r{r}");
                    let resp = client.invoke(&id, &body);
                    assert_eq!(resp.status, 200, "{id}: {:?}", String::from_utf8_lossy(&resp.body));
                    assert!(
                        resp.body == body,
                        "{id}: {} bytes that are not its own body: {:?}",
                        resp.body.len(),
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(40)])
                    );
                }
            })
        })
        .collect();
    for client in clients {
        join_within(client, Duration::from_secs(60), "a client thread");
    }

    let report = h.stop();
    report.assert_clean();
    let opened = report.opened(INVOKE);
    assert_eq!(opened.len(), CLIENTS * REQUESTS);
    assert_eq!(opened.iter().collect::<HashSet<_>>().len(), opened.len(), "stream ids are never reused");
    let invokes = report.invokes();
    assert_eq!(invokes.len(), CLIENTS * REQUESTS);
    let mut ids = HashSet::new();
    for i in invokes {
        let id = i.request_id.clone().unwrap_or_default();
        let (c, r) = id
            .strip_prefix('c')
            .and_then(|rest| rest.split_once("-r"))
            .and_then(|(c, r)| Some((c.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("unexpected request id {id:?}"));
        assert_eq!(i.body_len, body_for(c, r).len(), "{id}: body length at the data plane");
        assert!(ids.insert(id), "request id twice at the data plane");
    }
}
