//! The event loop: one thread, one mio `Poll`, every socket non-blocking and
//! edge-triggered.
//!
//! It owns three kinds of sockets — the TCP listener and FC's HTTP/1.1
//! connections (`client.rs`), the unix-socket HTTP/2 connections to the
//! Noslated planes (`plane.rs`), and the signalfd that carries SIGCHLD and
//! SIGTERM (`lifecycle.rs`) — plus a timer set whose earliest deadline is the
//! poll timeout. `client/invoke.rs` joins a client to a plane stream.
//!
//! No FC or HTTP policy lives here: what a request asks for, the messages it
//! becomes and the response bytes are `crate::fc`'s (sans-IO), every answer
//! we make up is `crate::answers`'s. This module reads and writes sockets,
//! arms timers and acts on what those functions return; `client.rs` alone
//! changes a client's phase (LIFECYCLE.md, "Who owns what").
//!
//! Tokens: 0 = listener, 1 = signals, even = client `2 + 2k`, odd = plane
//! connection `3 + 2k`, and from `usize::MAX - 1` down the warm-up events'
//! connections (`warm_up.rs`). Every socket is registered for readable; writable
//! interest is added only while a write came back short and removed once
//! the output drains (a unix socket raises an EPOLLOUT edge every time its
//! peer reads, which would otherwise wake the loop for nothing). Because
//! readiness is edge-triggered, whatever queues bytes for a socket also marks
//! it dirty, and dirty sockets are flushed at the end of each loop turn
//! (sozu's lesson: otherwise a session stalls forever); a socket with output
//! still pending after that flush is always registered for writable.

mod client;
mod lifecycle;
mod plane;
mod warm_up;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use bytes::Bytes;

use crate::config::Config;
use crate::fc::dispatch::RequestId;
use crate::fc::{Marker, PlaneFault, Scratch};
use crate::h2::{HeaderList, StreamRef};
use crate::pool::BufPool;
use crate::sys::SignalFd;
use crate::timer::Timers;

use client::Clients;
use lifecycle::Lifecycle;
use plane::Planes;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);

/// Read buffers kept for reuse (4 to 64 KiB each, at most 1 MiB in all):
/// enough for the exchanges in flight at once on a small instance; beyond,
/// buffers are freed as usual.
const READ_BUFFERS: usize = 16;

/// A client connection: its slot in `Server::clients` and the serial of
/// the session that filled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    index: usize,
    serial: u32,
}

/// A plane connection: its slot in `Planes`' connections and the serial of the
/// connection that filled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    index: usize,
    serial: u32,
}

/// A key of one kind of session; kinds cannot be mixed up. It names a slot
/// and the serial of the session that filled it (as h2's `StreamRef`, as
/// h2's `store::Key`): a key kept past its session's end reaches nothing,
/// even once a new session has the same slot.
pub(crate) trait Key: Copy {
    fn new(index: usize, serial: u32) -> Self;
    fn index(self) -> usize;
    fn serial(self) -> u32;
}

impl Key for ClientKey {
    fn new(index: usize, serial: u32) -> Self {
        ClientKey { index, serial }
    }
    fn index(self) -> usize {
        self.index
    }
    fn serial(self) -> u32 {
        self.serial
    }
}

impl Key for ConnKey {
    fn new(index: usize, serial: u32) -> Self {
        ConnKey { index, serial }
    }
    fn index(self) -> usize {
        self.index
    }
    fn serial(self) -> u32 {
        self.serial
    }
}

impl ClientKey {
    fn token(self) -> Token {
        Token(2 + self.index * 2)
    }
}

impl ConnKey {
    fn token(self) -> Token {
        Token(3 + self.index * 2)
    }
}

/// A slab addressed by one kind of key only (sozu's session slab), whose
/// keys carry the serial of their session (see [`Key`]).
pub(crate) struct Sessions<K, T> {
    slab: Slab<(u32, T)>,
    next_serial: u32,
    kind: PhantomData<K>,
}

impl<K: Key, T> Default for Sessions<K, T> {
    fn default() -> Self {
        Sessions { slab: Slab::new(), next_serial: 0, kind: PhantomData }
    }
}

impl<K: Key, T> Sessions<K, T> {
    pub fn get(&self, k: K) -> Option<&T> {
        self.slab.get(k.index()).filter(|(serial, _)| *serial == k.serial()).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, k: K) -> Option<&mut T> {
        self.slab.get_mut(k.index()).filter(|(serial, _)| *serial == k.serial()).map(|(_, v)| v)
    }

    pub fn contains(&self, k: K) -> bool {
        self.get(k).is_some()
    }

    /// The key of the session in slot `index` (a socket's token names the
    /// slot only).
    pub fn key_at(&self, index: usize) -> Option<K> {
        self.slab.get(index).map(|(serial, _)| K::new(index, *serial))
    }

    /// The key the next `insert` will use.
    pub fn vacant_key(&self) -> K {
        K::new(self.slab.vacant_key(), self.next_serial)
    }

    pub fn insert(&mut self, v: T) -> K {
        let serial = self.next_serial;
        self.next_serial = serial.wrapping_add(1);
        K::new(self.slab.insert((serial, v)), serial)
    }

    pub fn try_remove(&mut self, k: K) -> Option<T> {
        self.contains(k).then(|| self.slab.remove(k.index()).1)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slab.iter().map(|(i, (serial, v))| (K::new(i, *serial), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut T)> {
        self.slab.iter_mut().map(|(i, (serial, v))| (K::new(i, *serial), v))
    }

    pub fn keys(&self) -> Vec<K> {
        self.iter().map(|(k, _)| k).collect()
    }
}

/// Indexing wants a live key: a stale one is a bug, as a vacant slot is.
impl<K: Key, T> std::ops::Index<K> for Sessions<K, T> {
    type Output = T;
    fn index(&self, k: K) -> &T {
        self.get(k).expect("a live session key")
    }
}

impl<K: Key, T> std::ops::IndexMut<K> for Sessions<K, T> {
    fn index_mut(&mut self, k: K) -> &mut T {
        self.get_mut(k).expect("a live session key")
    }
}

/// Work that one session's event leaves for others: queued where it arises
/// (`Server::defer`) and applied by the loop once that event is handled
/// (`Server::apply_effects`), so that no call chain starting at one socket
/// runs on into another session's code (LIFECYCLE.md, "Who owns what").
#[derive(Debug)]
enum Effect {
    /// News from a plane stream for the invoke of client `client` in
    /// exchange `gen`. Applied only while that invoke is still attached to
    /// `(conn, stream)`; otherwise its DATA's window is credited back.
    Stream { client: ClientKey, gen: u64, conn: ConnKey, stream: StreamRef, news: StreamNews },
    /// A data plane came up or the profiles came into force: try the
    /// invokes parked for readiness.
    WakeWaiters,
    /// Readiness may have changed: answer the `/initialize`s that wait.
    CheckInitialize,
    /// `/pre-stop`: start the drain.
    BeginShutdown(&'static str),
    /// An exchange ended: a drain may be complete.
    DrainCheck,
}

/// What happened on an invoke's stream (see [`Effect::Stream`]).
#[derive(Debug)]
enum StreamNews {
    /// The gRPC response head, or trailers.
    Headers { fields: HeaderList, end_stream: bool },
    /// Response bytes.
    Data(Bytes),
    /// The stream can take more request body.
    SendReady,
    /// The stream is gone (reset, connection lost); `retryable`: the data
    /// plane did not process it.
    Failed { fault: PlaneFault, retryable: bool },
}

/// A poll that returns this much later than its timeout allowed was not
/// sleeping: the process was stopped (FC's freeze, SIGSTOP) while the
/// monotonic clock went on. Then idle-type timers restart from now instead
/// of firing (LIFECYCLE.md, "Freeze and thaw"). A false alarm (a very late
/// scheduling on a busy host) only gives connections one more idle period.
const FREEZE_JUMP: std::time::Duration = std::time::Duration::from_millis(250);

/// What a timer is for. Client timers carry the connection's generation so
/// a timer outliving its connection (or its exchange) is ignored.
#[derive(Debug, Clone, Copy)]
enum Timer {
    Client {
        key: ClientKey,
        gen: u64,
        what: ClientTimer,
    },
    PlaneRetry {
        plane: usize,
    },
    WarmUpPoll {
        plane: usize,
    },
    /// A failed health check or push on a plane's connection, made again.
    SetupRetry {
        plane: usize,
        call: plane::Unary,
    },
    Drain,
    KillChildren,
    ResumeAccept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientTimer {
    /// The request head must be complete by now (408).
    Head,
    /// Idle keep-alive connection: close silently.
    Idle,
    /// The invocation's deadline (504).
    Deadline,
    /// The readiness wait: a data plane, or the profiles in force (503).
    PlaneWait,
    /// The pause before retrying a function the data plane did not know.
    Retry,
    /// `/initialize` readiness wait (404).
    Init,
    /// The bound of a lingering close or of a small body's discard.
    Linger,
}

/// A line-buffered stdout for FC's log markers, flushed once per loop turn
/// (one write per turn, not per line).
#[derive(Default)]
pub struct Log(Vec<u8>);

impl Log {
    pub fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
        self.0.push(b'\n');
    }

    /// `FC <Hook> Start RequestId: <id>`, from bytes (no formatting).
    pub fn start(&mut self, marker: Marker, request_id: &RequestId) {
        self.marker(marker, b" Start RequestId: ", request_id);
    }

    /// `FC <Hook> End RequestId: <id>`.
    pub fn end(&mut self, marker: Marker, request_id: &RequestId) {
        self.marker(marker, b" End RequestId: ", request_id);
    }

    fn marker(&mut self, marker: Marker, what: &[u8], request_id: &RequestId) {
        for part in [b"FC ", marker.name().as_bytes(), what, request_id.as_bytes(), b"\n"] {
            self.0.extend_from_slice(part);
        }
    }

    pub fn flush(&mut self) {
        if !self.0.is_empty() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&self.0);
            let _ = out.flush();
            self.0.clear();
        }
    }
}

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: SignalFd,
    cfg: Config,
    clients: Clients,
    planes: Planes,
    timers: Timers<Timer>,
    dirty_clients: Vec<ClientKey>,
    dirty_conns: Vec<ConnKey>,
    /// The dirty lists being flushed (swapped, so no list is reallocated).
    flushing_clients: Vec<ClientKey>,
    flushing_conns: Vec<ConnKey>,
    scratch: Scratch,
    /// Read buffers of clients and planes, parked while their slices are in
    /// flight and reused once free (`crate::pool`).
    pool: BufPool,
    /// Where idle and lingering reads land before what came is kept
    /// (`client::LANDING` bytes, zeroed once: not per read).
    landing: Box<[u8]>,
    /// Reused between DATA frames (splice pieces of one frame).
    pieces: Vec<crate::splice::Piece>,
    log: Log,
    /// Effects waiting for the current event to finish (`apply_effects`).
    effects: VecDeque<Effect>,
    life: Lifecycle,
    /// `NOSLATE_FC_WARM_UP_EVENT`'s requests (`warm_up.rs`).
    warm_up: warm_up::WarmUp,
    accept_paused: bool,
    max_connections: usize,
    exit_code: Option<i32>,
    /// When `/pre-freeze` was last answered: FC freezes the instance right
    /// after it, so the first wake-up at least `FREEZE_JUMP` later counts as
    /// a thaw even when no timer was overdue.
    pre_freeze_at: Option<Instant>,
    /// The loop turn's clock, read once when the poll returns: what the hot
    /// path (deadlines, idle periods) measures from, instead of reading the
    /// clock again per request.
    now: Instant,
    /// The wall clock (ms since the epoch) for this turn, read by the first
    /// invocation that needs it (its `deadline` field), at most once a turn.
    epoch_ms: std::cell::Cell<Option<f64>>,
}

/// Whether the process was stopped (frozen) and has just come back: the poll
/// that started at `slept_from` with `timeout` returned at `now` more than
/// `FREEZE_JUMP` late, or this is the first wake-up at least `FREEZE_JUMP`
/// after the `/pre-freeze` answered at `pre_freeze_at` (FC freezes right
/// after it, and a frozen poll with no timer never looks late).
fn thawed(
    now: Instant,
    slept_from: Instant,
    timeout: Option<std::time::Duration>,
    pre_freeze_at: Option<Instant>,
) -> bool {
    let overslept = timeout.is_some_and(|t| now.saturating_duration_since(slept_from) > t + FREEZE_JUMP);
    let after_pre_freeze = pre_freeze_at.is_some_and(|at| now.saturating_duration_since(at) >= FREEZE_JUMP);
    overslept || after_pre_freeze
}

/// The one clock of the event loop. `run` reads it once per turn (and `new`
/// once, for the work done before the first turn) into `Server::now`; every
/// deadline in server/ is set from that reading and checked against a later
/// one, never against a fresh read, so no decision mixes two clocks.
fn read_clock() -> Instant {
    Instant::now()
}

impl Server {
    pub fn new(cfg: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let signals = SignalFd::new()?;
        poll.registry().register(&mut mio::unix::SourceFd(&signals.raw_fd()), SIGNALS, Interest::READABLE)?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        // Leave room for plane sockets, children's pipes and the listener.
        let fd_limit = crate::sys::raise_nofile_limit() as usize;
        let max_connections = cfg.max_connections.min(fd_limit.saturating_sub(64).max(16));
        let life = Lifecycle::new(&cfg);
        let planes = Planes::new(&cfg);
        let mut server = Server {
            poll,
            listener: Some(listener),
            signals,
            cfg,
            clients: Clients::default(),
            planes,
            timers: Timers::default(),
            dirty_clients: Vec::new(),
            dirty_conns: Vec::new(),
            flushing_clients: Vec::new(),
            flushing_conns: Vec::new(),
            scratch: Scratch::default(),
            pool: BufPool::new(READ_BUFFERS),
            landing: vec![0; client::LANDING].into_boxed_slice(),
            pieces: Vec::new(),
            log: Log::default(),
            effects: VecDeque::new(),
            life,
            warm_up: warm_up::WarmUp::default(),
            accept_paused: false,
            max_connections,
            exit_code: None,
            pre_freeze_at: None,
            now: read_clock(),
            epoch_ms: std::cell::Cell::new(None),
        };
        server.start()?;
        Ok(server)
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Run until the process should exit; returns the exit code.
    pub fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(1024);
        self.flush_dirty();
        self.now = read_clock();
        loop {
            // Bytes queued outside a loop turn (the plane connections opened
            // by `start`) are flushed before sleeping: sockets are not
            // registered for writable, so no event would come for them.
            let queued = !self.dirty_conns.is_empty() || !self.dirty_clients.is_empty() || !self.effects.is_empty();
            // One clock read per turn, after waking: the sleep is timed from
            // it, so timers are late by at most this turn's own work.
            let slept_from = self.now;
            let timeout = if !self.planes.reread_due() && !queued {
                self.timers.next_timeout(slept_from)
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("noslate-fc: poll failed: {e}");
                    return 1;
                }
            }
            self.now = read_clock();
            self.epoch_ms.set(None);
            self.notice_freeze(slept_from, timeout);
            for event in events.iter() {
                // An error or hang-up is heard by reading (sockets are
                // registered for writable only while output waits).
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.on_signals(),
                    Token(t) if t > warm_up::WARM_UP_TOKENS - crate::config::MAX_WARM_UP => {
                        self.warm_up_event(warm_up::WARM_UP_TOKENS - t)
                    }
                    Token(t) if t % 2 == 0 => {
                        if let Some(key) = self.clients.key_at((t - 2) / 2) {
                            self.client_event(key, readable, event.is_read_closed(), event.is_writable());
                        }
                    }
                    Token(t) => {
                        if let Some(key) = self.planes.conn_key_at((t - 3) / 2) {
                            self.plane_event(key, readable, event.is_read_closed(), event.is_writable());
                        }
                    }
                }
                self.apply_effects();
            }
            self.fire_timers();
            self.reread_conns();
            self.apply_effects();
            // Log markers go out before the responses they describe.
            self.log.flush();
            self.flush_dirty();
            if let Some(code) = self.exit_code {
                return code;
            }
        }
    }

    /// Did the process just come back from a stop? Either the poll came back
    /// far later than its timeout allowed, or this is the first wake-up well
    /// after a `/pre-freeze`. Then the time spent stopped is not idle time.
    fn notice_freeze(&mut self, slept_from: Instant, timeout: Option<std::time::Duration>) {
        let now = self.now;
        if thawed(now, slept_from, timeout, self.pre_freeze_at) {
            self.pre_freeze_at = None;
            self.thaw(now);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Client { key, gen, what } => self.client_timer(key, gen, what),
                Timer::PlaneRetry { plane } => self.connect_plane(plane),
                Timer::WarmUpPoll { plane } => self.poll_warm_up(plane),
                Timer::SetupRetry { plane, call } => self.retry_setup(plane, call),
                Timer::Drain => self.drain_deadline(),
                Timer::KillChildren => self.kill_children_now(),
                Timer::ResumeAccept => {
                    self.accept_paused = false;
                    self.accept();
                }
            }
            self.apply_effects();
        }
    }

    /// Queue work for after the current event (see [`Effect`]). A wake-up
    /// or readiness check already queued is not queued twice.
    fn defer(&mut self, effect: Effect) {
        let twice = match effect {
            Effect::WakeWaiters => self.effects.iter().any(|e| matches!(e, Effect::WakeWaiters)),
            Effect::CheckInitialize => self.effects.iter().any(|e| matches!(e, Effect::CheckInitialize)),
            Effect::DrainCheck => self.effects.iter().any(|e| matches!(e, Effect::DrainCheck)),
            _ => false,
        };
        if !twice {
            self.effects.push_back(effect);
        }
    }

    /// Apply the queued effects in order, and those they queue in turn.
    fn apply_effects(&mut self) {
        while let Some(effect) = self.effects.pop_front() {
            match effect {
                Effect::Stream { client, gen, conn, stream, news } => self.stream_news(client, gen, conn, stream, news),
                Effect::WakeWaiters => self.wake_plane_waiters(),
                Effect::CheckInitialize => self.check_initialize(),
                Effect::BeginShutdown(why) => self.begin_shutdown(why),
                Effect::DrainCheck => self.after_client_closed(),
            }
        }
    }

    fn flush_dirty(&mut self) {
        // Flushing a plane connection can wake clients and vice versa; loop
        // until both lists are empty (bounded: flushing only moves bytes).
        for _ in 0..8 {
            if self.dirty_conns.is_empty() && self.dirty_clients.is_empty() && self.effects.is_empty() {
                break;
            }
            // Swap with spare lists, so both keep their capacity.
            std::mem::swap(&mut self.dirty_conns, &mut self.flushing_conns);
            for i in 0..self.flushing_conns.len() {
                self.flush_conn(self.flushing_conns[i]);
            }
            self.flushing_conns.clear();
            self.apply_effects();
            std::mem::swap(&mut self.dirty_clients, &mut self.flushing_clients);
            for i in 0..self.flushing_clients.len() {
                self.flush_client(self.flushing_clients[i]);
            }
            self.flushing_clients.clear();
            self.apply_effects();
        }
    }

    fn mark_client(&mut self, key: ClientKey) {
        self.dirty_clients.push(key);
    }

    fn mark_conn(&mut self, key: ConnKey) {
        self.dirty_conns.push(key);
    }
}

#[cfg(test)]
mod tests {
    /// The files of this module, and the siblings each one names.
    const FILES: [(&str, &str); 4] = [
        ("client", include_str!("client.rs")),
        ("invoke", include_str!("client/invoke.rs")),
        ("lifecycle", include_str!("lifecycle.rs")),
        ("plane", include_str!("plane.rs")),
    ];

    fn names(text: &str, sibling: &str) -> bool {
        let paths = [
            format!("super::{sibling}::"),
            format!("super::{{{sibling}"),
            format!("crate::server::{sibling}::"),
            // client.rs's child module `invoke`.
            format!("use {sibling}::"),
        ];
        paths.iter().any(|p| text.contains(p.as_str()))
    }

    /// No two files of the event loop import each other's types
    /// (LIFECYCLE.md, "Who owns what"). This reads `super::` paths only;
    /// calls between the files are `impl Server` methods, which need no
    /// import: `calls_between_files_are_pinned` watches those.
    #[test]
    fn no_two_files_import_each_other() {
        for (a, text_a) in FILES {
            for (b, text_b) in FILES {
                if a < b {
                    assert!(!(names(text_a, b) && names(text_b, a)), "{a}.rs and {b}.rs import each other");
                }
            }
        }
        assert!(names(FILES[0].1, "invoke"), "the check sees imports");
        // invoke.rs is a child of client.rs: `super::` there is client.rs,
        // which it must not import from either.
        let invoke = FILES.iter().find(|(f, _)| *f == "invoke").expect("invoke.rs").1;
        assert!(!code(invoke).contains("use super::"), "client/invoke.rs imports from client.rs");
    }

    /// The code of a file, not its unit tests.
    fn code(text: &'static str) -> &'static str {
        text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or(text)
    }

    /// The functions a file defines: `fn name(` or `fn name<`.
    fn defined(text: &str) -> impl Iterator<Item = &str> {
        text.split("fn ").skip(1).filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            let (name, after) = rest.split_at(end);
            (!name.is_empty() && (after.starts_with('(') || after.starts_with('<'))).then_some(name)
        })
    }

    /// The methods a file calls on the server: `self.name(`.
    fn called(text: &str) -> impl Iterator<Item = &str> {
        text.split("self.").skip(1).filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            let (name, after) = rest.split_at(end);
            after.starts_with('(').then_some(name)
        })
    }

    /// Which sibling calls into which (`impl Server` methods defined in one
    /// file, called from another), pinned so that no new edge creeps in
    /// unseen. plane.rs calls no client or invoke code: what a plane event
    /// means for a client is an `Effect` the loop applies (mod.rs). The
    /// plane's own calls into lifecycle.rs are readiness questions.
    #[test]
    fn calls_between_files_are_pinned() {
        const PINNED: &[(&str, &str)] = &[
            ("client", "invoke"),
            ("client", "lifecycle"),
            ("invoke", "client"),
            ("invoke", "lifecycle"),
            ("invoke", "plane"),
            ("lifecycle", "client"),
            ("lifecycle", "plane"),
            ("plane", "lifecycle"),
        ];
        let owner = |name: &str| {
            let mut owners = FILES.iter().filter(|(_, text)| defined(code(text)).any(|d| d == name));
            match (owners.next(), owners.next()) {
                (Some((file, _)), None) => Some(*file),
                _ => None, // nowhere here (mod.rs, a field's method) or in several
            }
        };
        let mut edges: Vec<(&str, &str)> = Vec::new();
        for (file, text) in FILES {
            for name in called(code(text)) {
                if let Some(to) = owner(name).filter(|to| *to != file) {
                    if !edges.contains(&(file, to)) {
                        edges.push((file, to));
                    }
                }
            }
        }
        edges.sort();
        assert_eq!(edges, PINNED, "calls between the files of server/ changed");
    }

    /// The `impl Server` methods each method of server/ calls, by name, read
    /// from the code (mod.rs included; unit tests excluded).
    fn call_graph() -> Vec<(&'static str, Vec<&'static str>)> {
        let mut graph = Vec::new();
        for text in FILES.iter().map(|(_, text)| *text).chain([include_str!("mod.rs")]) {
            let text = code(text);
            let mut starts: Vec<(usize, &str)> = Vec::new();
            for (at, _) in text.match_indices("fn ") {
                if let Some(name) = defined(&text[at..]).next() {
                    if text[at..].starts_with(&format!("fn {name}")) {
                        starts.push((at, name));
                    }
                }
            }
            for (i, (at, name)) in starts.iter().enumerate() {
                let end = starts.get(i + 1).map_or(text.len(), |(next, _)| *next);
                graph.push((*name, called(&text[*at..end]).collect()));
            }
        }
        graph
    }

    fn reachable(graph: &[(&'static str, Vec<&'static str>)], from: &[&'static str]) -> Vec<&'static str> {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = from.to_vec();
        while let Some(name) = todo.pop() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            for (_, calls) in graph.iter().filter(|(n, _)| *n == name) {
                todo.extend(calls);
            }
        }
        seen
    }

    /// No call chain that starts at one session's event runs into code
    /// that acts on other sessions: from a client's event or timer, nothing
    /// reaches the code that wakes parked invokes, answers the waiting
    /// `/initialize`s or `/pre-stop`s, starts or ends the drain, or applies
    /// stream news; from a plane's event, nothing reaches any client's
    /// code. Those are `Effect`s, applied by the loop once the event is
    /// handled (`apply_effects`, which only the loop calls).
    #[test]
    fn no_event_runs_into_other_sessions_code() {
        let graph = call_graph();
        assert!(graph.iter().any(|(n, calls)| *n == "client_event" && !calls.is_empty()), "the graph sees calls");
        let others = [
            "apply_effects",
            "wake_plane_waiters",
            "stream_news",
            "answer_initialize",
            "answer_pre_stops",
            "check_initialize",
            "begin_shutdown",
            "after_client_closed",
        ];
        let client_code = [
            "settle",
            "end_exchange",
            "pump_client",
            "process_client",
            "dispatch_invoke",
            "invoke_headers",
            "invoke_data",
            "invoke_stream_failed",
            "pump_invoke_body",
            "fail_invoke",
        ];
        let from_client = reachable(&graph, &["client_event", "client_timer", "accept", "flush_client"]);
        let bad: Vec<_> = others.iter().filter(|f| from_client.contains(f)).collect();
        assert!(bad.is_empty(), "a client's event reaches {bad:?}");
        let from_plane = reachable(
            &graph,
            &["plane_event", "flush_conn", "reread_conns", "connect_plane", "retry_setup", "poll_warm_up"],
        );
        let bad: Vec<_> = others.iter().chain(&client_code).filter(|f| from_plane.contains(f)).collect();
        assert!(bad.is_empty(), "a plane's event reaches {bad:?}");
        let callers: Vec<_> =
            graph.iter().filter(|(_, calls)| calls.contains(&"apply_effects")).map(|(n, _)| *n).collect();
        assert_eq!(callers, ["run", "fire_timers", "flush_dirty"], "only the loop applies effects");
    }

    /// A key kept past its session's end reaches nothing, also once a new
    /// session fills the same slot; the live key of a slot is found from
    /// the slot alone (a socket's token).
    #[test]
    fn a_stale_session_key_reaches_nothing() {
        use super::{ConnKey, Key, Sessions};
        let mut s: Sessions<ConnKey, &str> = Sessions::default();
        let old = s.insert("old");
        assert_eq!(s.try_remove(old), Some("old"));
        assert_eq!(s.vacant_key().index(), old.index());
        let new = s.insert("new");
        assert_eq!(new.index(), old.index(), "the test needs the slot reused");
        assert_ne!(new, old);
        assert_eq!((s.get(old), s.contains(old)), (None, false));
        assert_eq!(s.try_remove(old), None);
        assert!(s.get_mut(old).is_none());
        assert_eq!((s.get(new), s.key_at(new.index())), (Some(&"new"), Some(new)));
        assert_eq!(s.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(), vec![(new, "new")]);
        assert_eq!(s[new], "new");
    }

    /// A thaw is a poll that came back more than `FREEZE_JUMP` late, or the
    /// first wake-up `FREEZE_JUMP` after `/pre-freeze`; a poll without a
    /// timeout is never late.
    #[test]
    fn thawed_table() {
        use super::{thawed, FREEZE_JUMP};
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let jump = FREEZE_JUMP;
        #[rustfmt::skip]
        let table: &[(Duration, Option<Duration>, Option<Duration>, bool)] = &[
            // now - slept_from, timeout, now - pre_freeze_at => thawed
            (ms(100), Some(ms(100)), None, false),
            (ms(100) + jump, Some(ms(100)), None, false),           // late by exactly the jump
            (ms(101) + jump, Some(ms(100)), None, true),            // later than that
            (ms(10) * 1000 + jump, None, None, false),              // no timeout: never late
            (ms(1), Some(ms(100)), Some(jump), true),               // woke the jump after /pre-freeze
            (ms(1), Some(ms(100)), Some(jump - ms(1)), false),      // too soon after /pre-freeze
            (ms(1), None, Some(jump * 3), true),
        ];
        let base = t0 + jump * 10;
        for &(slept, timeout, since_pre_freeze, want) in table {
            let pre_freeze_at = since_pre_freeze.map(|d| base - d);
            assert_eq!(
                thawed(base, base - slept, timeout, pre_freeze_at),
                want,
                "{slept:?} {timeout:?} {since_pre_freeze:?}"
            );
        }
    }

    /// One clock: every deadline in server/ is set from the turn's reading
    /// and checked against a later one. A second reader (the head deadline
    /// was set from `self.now` and checked against a fresh read) lets one
    /// decision mix two clocks, so `read_clock` must be the only one.
    #[test]
    fn read_clock_is_the_only_clock_read() {
        // The code, not its unit tests (a test may make up instants).
        let read = concat!("Instant", "::now()");
        let in_siblings: usize = FILES.iter().map(|(_, text)| code(text).matches(read).count()).sum();
        assert_eq!(in_siblings, 0, "client/invoke/lifecycle/plane.rs read the clock themselves");
        let here = code(include_str!("mod.rs"));
        let body = here.split("fn read_clock() -> Instant {").nth(1).and_then(|rest| rest.split('}').next());
        assert_eq!(body.map(|b| b.matches(read).count()), Some(1), "read_clock reads the clock");
        assert_eq!(here.matches(read).count(), 1, "mod.rs reads the clock outside read_clock");
    }
}
