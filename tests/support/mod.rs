//! Test harness: starts the real `noslate-fc` binary and the Noslated test
//! fixtures (tests/peer) on temporary unix sockets, talks raw HTTP/1.1 over
//! loopback TCP, and kills every process it started, by PID, on drop.
#![allow(dead_code)]

pub mod proc_tree;
pub mod real_env;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A unique temporary directory, removed on drop. Kept short: unix socket
/// paths are limited to 107 bytes.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/nfc-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("socks")).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn socks(&self) -> PathBuf {
        self.0.join("socks")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL by PID) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig` by PID; panics if the kill fails (a signal that was not
    /// delivered would make a test judge the wrong thing).
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
        assert!(status.as_ref().is_ok_and(|s| s.success()), "kill -{sig} {} failed: {status:?}", self.pid());
    }

    /// SIGKILL by PID and reap (no-op if it already exited).
    pub fn kill_and_wait(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A process that has already exited: a slot to fill at once.
    fn placeholder() -> Proc {
        let mut child =
            Command::new("true").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let _ = child.wait();
        Proc { child, stderr: Arc::new(Mutex::new(String::new())) }
    }

    /// The process state letter from /proc/<pid>/stat (R, S, T, Z...).
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    /// Wait for exit up to `limit`; None if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Whether it had already exited (a crash is a finding), before the kill.
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process said, and whether it died
        // on its own: the likeliest cause of a refused connection.
        if std::thread::panicking() {
            let stderr = self.stderr_text();
            let tail: String =
                stderr.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            eprintln!("--- pid {} (exited on its own: {exited:?}), last lines of stderr:\n{tail}", self.child.id());
        }
    }
}

fn collect_stderr(child: &mut Child, first_line: Option<std::sync::mpsc::Sender<String>>) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut first_line = first_line;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &first_line {
                if line.contains("listening on") && tx.send(line.clone()).is_ok() {
                    first_line = None;
                }
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    buf
}

pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peer")
}

/// Which implementation plays the Noslated planes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerKind {
    /// @grpc/grpc-js 1.8.8, what Noslated runs.
    Node,
    /// grpcio (C-core HTTP/2), an independent implementation.
    Python,
}

/// The fixture control plane's `--profile-delay`. 0, as Noslated: `set:
/// true` comes once the connected data plane has the profiles (and a data
/// plane that (re)connects gets them right after). A test of the window in
/// which the data plane does not know a pushed function yet (code 5) asks
/// for a delay with `Peer::start_with`. `NOSLATE_TEST_PROFILE_DELAY_MS`
/// changes the default (tests/fixtures/plane.sh reads it too), e.g. to see
/// which tests depend on the window.
pub const PROFILE_DELAY_MS: u64 = 0;

fn profile_delay_ms() -> String {
    std::env::var("NOSLATE_TEST_PROFILE_DELAY_MS").unwrap_or_else(|_| PROFILE_DELAY_MS.to_string())
}

/// The functions every test stack registers (NOSLATE_FUNCTION_PROFILES written
/// by `Fc::start` unless a test gives its own): the fixture's behaviours, and
/// the parametric names the tests use. The fixture, like Noslated, answers
/// code 5 for any other name.
pub const FIXTURE_FUNCTIONS: &[&str] = &[
    "echo",
    "echo-buffered",
    "inspect",
    "error-before-head",
    "head-timeout",
    "rate-limit",
    "circuit-breaker",
    "no-worker",
    "queue-timeout",
    "error-after-head",
    "grpc-error",
    "never",
    "crash",
    "stall",
    "early",
    "status-200",
    "status-201",
    "status-404",
    "status-500",
    "slow-300",
    "slow-500",
    "slow-1500",
    "slow-5000",
    "big-100000",
    "big-1048576",
    "big-3000000",
    "big-33554432",
    "big-fast-33554432",
    // tests/hardening.rs (tests/peer/hardening-behaviours.js)
    "status-100",
    "status-101",
    "status-103",
    "status-199",
    "status-600",
    "status-999",
    "status-204",
    "status-599",
    "big-head",
    "forged-error",
    "forged-grpc",
];

/// A profiles.json document registering `names` (aworker, the minimum the
/// gateway's schema asks for).
/// A fixture of `kind` and noslate-fc in front of it, ready (one
/// `/initialize` answered 200, as FC sends it: `Fc::wait_ready`).
pub fn stack_kind(kind: PeerKind, tag: &str, env: &[(&str, &str)]) -> (TempDir, Peer, Fc) {
    let dir = TempDir::new(tag);
    let peer = Peer::start_kind(kind, &dir, &[]);
    let fc = Fc::start(&dir, env);
    fc.wait_ready();
    (dir, peer, fc)
}

/// [`stack_kind`] with the Node fixture.
pub fn stack(tag: &str, env: &[(&str, &str)]) -> (TempDir, Peer, Fc) {
    stack_kind(PeerKind::Node, tag, env)
}

pub fn profiles_json(names: &[&str]) -> String {
    let items: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                r#"{{"name":"{n}","runtime":"aworker","url":"file:///code/{n}","signature":"md5:0","sourceFile":"index.js"}}"#
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The Noslated test fixture (tests/peer): the data plane and the control
/// plane. With the Node fixture they are two processes, each killable and
/// restartable alone; the control plane forwards profiles to the data plane
/// `PROFILE_DELAY_MS` after `set: true`. The Python fixture runs both planes
/// in one process (`cp` is None).
pub struct Peer {
    /// The data plane (both planes for the Python fixture).
    pub proc: Proc,
    /// The control plane (Node fixture).
    pub cp: Option<Proc>,
    pub events: PathBuf,
    kind: PeerKind,
    dp_sock: PathBuf,
    cp_sock: PathBuf,
    dp_extra: Vec<String>,
    cp_extra: Vec<String>,
}

impl Peer {
    pub fn start(dir: &TempDir, extra: &[&str]) -> Peer {
        Peer::start_kind(PeerKind::Node, dir, extra)
    }

    /// `extra` goes to the data plane (`--unhealthy`, `--service`, limits...).
    pub fn start_kind(kind: PeerKind, dir: &TempDir, extra: &[&str]) -> Peer {
        Peer::start_with(kind, dir, extra, &[])
    }

    /// A data plane with no control plane (Node fixture); `extra` as for
    /// `start` (e.g. `--known <function>`, since nothing forwards profiles).
    pub fn start_dp_only(dir: &TempDir, extra: &[&str]) -> Peer {
        let mut peer = Peer::bare(PeerKind::Node, dir, extra, &[]);
        peer.proc = peer.spawn_plane("dp");
        peer
    }

    fn bare(kind: PeerKind, dir: &TempDir, dp_extra: &[&str], cp_extra: &[&str]) -> Peer {
        Peer {
            proc: Proc::placeholder(),
            cp: None,
            events: dir.path().join("events.jsonl"),
            kind,
            dp_sock: dir.socks().join("dp-0.sock"),
            cp_sock: dir.socks().join("cp-0.sock"),
            dp_extra: dp_extra.iter().map(|s| s.to_string()).collect(),
            cp_extra: cp_extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `dp_extra` for the data plane, `cp_extra` for the control plane (e.g.
    /// `--profile-delay`, which then replaces the default).
    pub fn start_with(kind: PeerKind, dir: &TempDir, dp_extra: &[&str], cp_extra: &[&str]) -> Peer {
        let mut peer = Peer::bare(kind, dir, dp_extra, cp_extra);
        match kind {
            PeerKind::Node => {
                peer.proc = peer.spawn_plane("dp");
                peer.cp = Some(peer.spawn_plane("cp"));
            }
            PeerKind::Python => peer.proc = peer.spawn_plane("both"),
        }
        peer
    }

    fn delay_args(&self) -> Vec<String> {
        if self.cp_extra.iter().any(|a| a.starts_with("--profile-delay")) {
            self.cp_extra.clone()
        } else {
            let mut args = vec!["--profile-delay".to_string(), profile_delay_ms()];
            args.extend(self.cp_extra.iter().cloned());
            args
        }
    }

    fn spawn_plane(&self, which: &str) -> Proc {
        let mut cmd = match self.kind {
            PeerKind::Node => {
                assert!(
                    peer_dir().join("node_modules/@grpc/grpc-js").exists(),
                    "tests/peer/node_modules missing: run `npm ci` in tests/peer (.ci/run does)"
                );
                let mut c = Command::new("node");
                c.arg(peer_dir().join("noslated-peer.js"));
                c
            }
            PeerKind::Python => {
                let python = peer_dir().join("py/.venv/bin/python");
                assert!(python.exists(), "tests/peer/py/.venv missing: .ci/run creates it");
                let mut c = Command::new(python);
                c.arg(peer_dir().join("py/noslated_peer.py"));
                c
            }
        };
        cmd.arg("--events").arg(&self.events);
        match which {
            "dp" => {
                cmd.arg("--dp").arg(&self.dp_sock).args(&self.dp_extra);
            }
            "cp" => {
                cmd.arg("--cp").arg(&self.cp_sock).arg("--forward-dp").arg(&self.dp_sock).args(self.delay_args());
            }
            _ => {
                cmd.arg("--dp").arg(&self.dp_sock).arg("--cp").arg(&self.cp_sock);
                cmd.args(&self.dp_extra).args(self.delay_args());
            }
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("start peer");
        let stdout = child.stdout.take().unwrap();
        let stderr = collect_stderr(&mut child, None);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "READY" {
                    let _ = tx.send(());
                }
            }
        });
        let proc = Proc { child, stderr };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!("peer ({which}) did not become ready: {}", proc.stderr_text());
        }
        proc
    }

    /// The control plane process (Node fixture only).
    pub fn cp(&mut self) -> &mut Proc {
        self.cp.as_mut().expect("the Python fixture runs both planes in one process")
    }

    /// SIGKILL the data plane and wait for its exit. Its socket file stays,
    /// as after a crash.
    pub fn kill_dp(&mut self) {
        self.proc.kill_and_wait();
    }

    /// A new data plane process on the same socket (it knows no function
    /// until the control plane re-sends the profiles).
    pub fn restart_dp(&mut self) {
        self.proc.kill_and_wait();
        self.proc = self.spawn_plane(if self.kind == PeerKind::Node { "dp" } else { "both" });
    }

    /// SIGKILL the control plane and wait for its exit.
    pub fn kill_cp(&mut self) {
        self.cp().kill_and_wait();
    }

    /// A new control plane process: it knows no profile and forwards its
    /// empty list to the data plane at once, as Noslated's does.
    pub fn restart_cp(&mut self) {
        self.kill_cp();
        let fresh = self.spawn_plane("cp");
        self.cp = Some(fresh);
    }

    /// Events the fixture recorded, one JSON object per line.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait until an event matching `pred` shows up.
    pub fn wait_event(&self, limit: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Some(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// The noslate-fc binary under test.
pub struct Fc {
    pub proc: Proc,
    pub port: u16,
}

impl Fc {
    /// Start on an ephemeral port with the planes' sockets in `dir`.
    pub fn start(dir: &TempDir, env: &[(&str, &str)]) -> Fc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_noslate-fc"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SERVER_PORT", "0")
            .env("NOSLATE_FC_LISTEN", "127.0.0.1")
            .env("NOSLATE_FC_TRUSTED_PEERS", "any")
            .env("NOSLATE_FC_SOCK_DIR", dir.socks())
            .env("NOSLATE_FC_READY_WAIT_MS", "3000");
        // The fixture is strict on names (as Noslated): register the ones
        // the tests use, unless the test brings its own profiles.
        if !env.iter().any(|(k, _)| *k == "NOSLATE_FUNCTION_PROFILES") {
            let file = dir.path().join("fixture-profiles.json");
            std::fs::write(&file, profiles_json(FIXTURE_FUNCTIONS)).unwrap();
            cmd.env("NOSLATE_FUNCTION_PROFILES", file);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        Fc::spawn(cmd)
    }

    pub fn spawn(mut cmd: Command) -> Fc {
        let mut child = cmd.spawn().expect("start noslate-fc");
        let stdout = child.stdout.take().unwrap();
        // Drain stdout (FC log markers) into a shared buffer too.
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        STDOUTS.lock().unwrap().push((child.id(), out));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = collect_stderr(&mut child, Some(tx));
        let proc = Proc { child, stderr };
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => panic!("noslate-fc did not start: {}", proc.stderr_text()),
        };
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Fc { proc, port }
    }

    /// Stdout once it contains `needle` (the reader thread may lag a little).
    pub fn stdout_until(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.stdout_text();
            if out.contains(needle) || start.elapsed() > Duration::from_secs(3) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stdout_text(&self) -> String {
        let pid = self.proc.pid();
        STDOUTS
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, s)| s.lock().unwrap().clone())
            .unwrap_or_default()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// One request on a fresh connection; the full response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        read_response(&mut s).expect("response")
    }

    /// Send raw bytes and read everything until the server closes (or 10 s).
    pub fn raw_exchange(&self, raw: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// POST /invoke of `body` to `function` (Content-Length framing).
    pub fn invoke(&self, function: &str, body: &[u8]) -> Response {
        let head = format!(
            "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.request(&raw)
    }

    /// Wait until the planes are connected: /initialize answers 200.
    /// One `/initialize`, as FC sends it: noslate-fc itself waits (up to the
    /// initialization timeout) for the planes, so its first answer must be
    /// 200; nothing is retried.
    pub fn wait_ready(&self) {
        let r = self.request(
            b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 20\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(r.status, 200, "/initialize: {}", String::from_utf8_lossy(&r.body));
    }
}

static STDOUTS: Mutex<Vec<(u32, Arc<Mutex<String>>)>> = Mutex::new(Vec::new());

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended properly (last chunk / full length), not by a cut.
    pub complete: bool,
    pub chunked: bool,
    /// Raw bytes of each interim (1xx) response head that came before this
    /// one, in order, so tests can assert on them (e.g. that no `100
    /// Continue` was sent, or exactly one).
    pub interim: Vec<Vec<u8>>,
    /// Raw bytes of the final head (status line to the blank line).
    pub raw_head: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one HTTP/1.1 response from a stream; interim 1xx heads before it are
/// kept in `interim`. A body cut short is returned with `complete = false`;
/// None if no final head arrived.
pub fn read_response<R: Read>(r: &mut R) -> Option<Response> {
    read_response_to(r, None)
}

pub fn read_response_to<R: Read>(r: &mut R, head_request: Option<bool>) -> Option<Response> {
    let mut reader = ByteReader { inner: r, buf: Vec::new(), pos: 0, ended: None };
    let mut interim = Vec::new();
    loop {
        let Some(head) = reader.read_until(b"\r\n\r\n") else {
            let left = &reader.buf[reader.pos..];
            eprintln!(
                "read_response: no response head: {} after {} bytes of it: {:?}",
                reader.ended.as_deref().unwrap_or("?"),
                left.len(),
                String::from_utf8_lossy(&left[..left.len().min(300)])
            );
            return None;
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next()?;
        let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        if (100..200).contains(&status) {
            interim.push(head);
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
            complete: false,
            chunked: false,
            interim: std::mem::take(&mut interim),
            raw_head: head,
        };
        if head_request == Some(true) || status == 204 || status == 304 {
            resp.complete = true;
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            resp.chunked = true;
            loop {
                let Some(line) = reader.read_until(b"\r\n") else { return Some(reader.cut(resp)) };
                let size_text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
                    return Some(resp);
                };
                if size == 0 {
                    if reader.read_until(b"\r\n").is_some() {
                        resp.complete = true;
                    }
                    return Some(resp);
                }
                let Some(data) = reader.read_exact(size + 2) else { return Some(reader.cut(resp)) };
                resp.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(len) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if let Some(data) = reader.read_exact(len) {
                resp.body = data;
                resp.complete = true;
            } else {
                resp.body = reader.rest();
                return Some(reader.cut(resp));
            }
            return Some(resp);
        } else {
            resp.body = reader.read_to_end();
            resp.complete = true;
            return Some(resp);
        }
    }
}

struct ByteReader<'a, R: Read> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    /// How the input ended, for a failure message.
    ended: Option<String>,
}

impl<R: Read> ByteReader<'_, R> {
    /// A response whose body was cut: say how the input ended.
    fn cut(&self, resp: Response) -> Response {
        eprintln!("read_response: body cut after {} bytes: {}", resp.body.len(), self.ended.as_deref().unwrap_or("?"));
        resp
    }

    /// Read at most `max` more bytes: never past the current response, so
    /// pipelined responses behind it stay in the stream for the next call.
    fn fill(&mut self, max: usize) -> bool {
        let mut chunk = [0u8; 65536];
        let max = max.clamp(1, chunk.len());
        // A read of a socket with a read timeout (SO_RCVTIMEO) fails with
        // EINTR when any signal with a handler reaches the thread, whatever
        // SA_RESTART says (signal(7)); that is no end of input: read again.
        let read = loop {
            match self.inner.read(&mut chunk[..max]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                self.ended = Some("end of input".into());
                false
            }
            Err(e) => {
                self.ended = Some(format!("read failed ({:?}: {e})", e.kind()));
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn read_until(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(delim.len()).position(|w| w == delim) {
                let end = self.pos + i + delim.len();
                let out = self.buf[self.pos..end].to_vec();
                self.pos = end;
                return Some(out);
            }
            if !self.fill(1) {
                return None;
            }
        }
    }

    fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            if !self.fill(n - (self.buf.len() - self.pos)) {
                return None;
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(out)
    }

    fn rest(&mut self) -> Vec<u8> {
        let out = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        out
    }

    fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill(65536) {}
        self.rest()
    }
}

/// The deterministic pattern the fixture's `big-<n>` function sends.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Does the response bytes start with this status?
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One try of a retry after a fault, judged by the test.
#[derive(Debug)]
pub enum Attempt {
    /// The right answer, complete.
    Served,
    /// A clear error answer, named (see `error_key`).
    Transient(String),
    /// Anything else: a wrong, stale or misrouted answer, a cut, no answer.
    Wrong(String),
}

/// What `until_served` saw before the first success.
#[derive(Debug)]
pub struct Served {
    pub attempts: usize,
    /// Each transient error name with how often it came, in first-seen order.
    pub transient: Vec<(String, usize)>,
    pub took: Duration,
}

/// Retry after a fault, judging every try: before the first success only
/// the errors named in `allowed` may come (they are counted and reported);
/// any other answer — another error, a wrong or stale body, a cut, no answer
/// — fails the test at once, as it would fail a user. Gives up after `limit`.
pub fn until_served(
    what: &str,
    limit: Duration,
    allowed: &[&str],
    mut attempt: impl FnMut(usize) -> Attempt,
) -> Served {
    let start = Instant::now();
    let mut transient: Vec<(String, usize)> = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n) {
            Attempt::Served => {
                let served = Served { attempts: n, transient, took: start.elapsed() };
                eprintln!("{what}: served at attempt {n} after {:?}; before it {:?}", served.took, served.transient);
                return served;
            }
            Attempt::Transient(name) if allowed.contains(&name.as_str()) => {
                match transient.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, count)) => *count += 1,
                    None => transient.push((name, 1)),
                }
            }
            Attempt::Transient(name) => panic!(
                "{what}: attempt {n} got {name:?}, not an expected transient error (allowed {allowed:?}; before it \
                 {transient:?})"
            ),
            Attempt::Wrong(why) => panic!("{what}: attempt {n} was wrong: {why} (before it {transient:?})"),
        }
        assert!(start.elapsed() < limit, "{what}: not served after {limit:?} ({n} attempts: {transient:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The name of a gateway error answer (`x-fc-status: 404` and a JSON body):
/// its `errorName`, with the `errorMessage` after it when the name is
/// Noslated's generic `Error`/`NoslatedError`. None if it is not one.
pub fn error_key(r: &Response) -> Option<String> {
    if r.header("x-fc-status") != Some("404") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    let name = v["errorName"].as_str()?;
    match name {
        "Error" | "NoslatedError" => Some(format!("{name}: {}", v["errorMessage"].as_str().unwrap_or(""))),
        _ => Some(name.to_string()),
    }
}

/// The transient error of an invoke that reached a data plane not knowing
/// `function` yet (Noslated code 5).
pub fn not_registered(function: &str) -> String {
    format!("Error: No function named {function} registered in this node.")
}

/// One `echo` invoke with a body only `id` produces, judged: the exact body
/// (and, when the function echoes it, the request id) is `Served`; a gateway
/// error answer is `Transient(error_key)`; anything else is `Wrong`.
pub fn echo_attempt(fc: &Fc, id: &str) -> Attempt {
    echo_attempt_at(fc.port, id)
}

/// `echo_attempt` by port (usable from any thread).
pub fn echo_attempt_at(port: u16, id: &str) -> Attempt {
    let body = format!("{id}:{}", id.len() * 7919).into_bytes();
    let head = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\nx-fc-request-id: {id}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return Attempt::Wrong(format!("{id}: connect: {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if let Err(e) = s.write_all(&[head.as_bytes(), &body].concat()) {
        return Attempt::Wrong(format!("{id}: write: {e}"));
    }
    let mut seen = Recorded { inner: &mut s, bytes: Vec::new(), error: None };
    let Some(r) = read_response(&mut seen) else { return Attempt::Wrong(format!("{id}: no response: {}", seen.why())) };
    judge_echo(&r, id, &body)
}

/// A reader that keeps the bytes that passed through it and the error that
/// ended it, so that "no response" can say what came instead.
pub struct Recorded<'a, R: Read> {
    pub inner: &'a mut R,
    pub bytes: Vec<u8>,
    pub error: Option<std::io::Error>,
}

impl<R: Read> Read for Recorded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

impl<R: Read> Recorded<'_, R> {
    /// How the reading ended, and the first bytes read.
    pub fn why(&self) -> String {
        let ended = match &self.error {
            Some(e) => format!("read failed ({:?}: {e})", e.kind()),
            None => "the connection ended".to_string(),
        };
        let shown = &self.bytes[..self.bytes.len().min(300)];
        format!("{ended} after {} bytes: {:?}", self.bytes.len(), String::from_utf8_lossy(shown))
    }
}

/// Judge an echo answer against the body sent (see `echo_attempt`).
pub fn judge_echo(r: &Response, id: &str, body: &[u8]) -> Attempt {
    if r.status == 200 {
        if let Some(echoed) = r.header("x-request-id") {
            if echoed != id {
                return Attempt::Wrong(format!("{id}: answered for request {echoed}"));
            }
        }
        if r.complete && r.body == body {
            return Attempt::Served;
        }
        return Attempt::Wrong(format!("{id}: 200 with {:?} (complete: {})", r.text(), r.complete));
    }
    match error_key(r) {
        Some(name) => Attempt::Transient(name),
        None => Attempt::Wrong(format!("{id}: {} {:?}: {}", r.status, r.header("x-fc-status"), r.text())),
    }
}
