//! Noslated's side: HTTP/2 connections to the data and control planes on unix
//! sockets, kept up with capped exponential backoff.
//!
//! A plane has at most one *active* connection that takes new streams. A
//! connection that got GOAWAY, or that has sent many RST_STREAMs (Node's
//! HTTP/2 drops a connection after ~1,000 resets, docs/noslated-protocol.md §3.4),
//! is *retired*: it finishes its streams while a fresh one takes new work, and
//! closes when empty. Readiness of a plane = connected and `checkHealth` said
//! healthy; invokes may use a connection as soon as it exists (HTTP/2 lets us
//! send before the handshake completes), which keeps start-up latency low.

use crate::idmap::IdMap;
use crate::logsafe::Escaped;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::net::UnixStream;
use mio::Interest;

use super::{ClientKey, ConnKey, Effect, Server, Sessions, StreamNews, Timer};
use crate::config::Config;
use crate::fc::{IoOp, PlaneFault};
use crate::grpc::{self, Deframer};
use crate::h2::{ClientConnection, Config as H2Config, ErrorCode, Event, OpenError, StreamRef};

/// Move new streams to a fresh connection after this many resets (Node 20
/// allows about 1,000 in a burst before GOAWAY).
const RESET_BUDGET: u64 = 500;
/// Reconnect backoff: 20 ms doubling to 500 ms, so a restarted plane is
/// served again well within a second of its socket reappearing.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Until a plane has been healthy once, it is retried every 10 ms (for at
/// most 30 s): at start-up the planes take seconds to listen, and each
/// doubling of the backoff would add up to its length to the cold start. A
/// connect to a socket that is not there yet costs one failed syscall.
const STARTUP_RETRY: Duration = Duration::from_millis(10);
const STARTUP_WINDOW: Duration = Duration::from_secs(30);
/// Read size for plane connections (one full default frame plus head).
const PLANE_READ: usize = 64 * 1024;
/// How often the control plane is asked whether warm-up workers are ready.
const WARM_UP_POLL: Duration = Duration::from_millis(20);
/// Deadline for the unary calls we make (checkHealth, profile pushes).
const UNARY_TIMEOUT_MS: u64 = 5000;
/// A health check or a push that failed on a plane's current connection is
/// made again after this pause: a connection that stays open would otherwise
/// never become ready, and for a control plane the profiles would never be
/// pushed on it (the gate of LIFECYCLE.md, "Function readiness", stays shut).
const SETUP_RETRY: Duration = Duration::from_millis(200);
/// Our receive window per stream; small enough that a stalled client holds
/// little, large enough for one round trip of a fast response. Window is
/// returned only as the client drains, so the connection window bounds the
/// response bytes waiting in our memory for all clients together; 64 stalled
/// clients (8 MiB / 128 KiB) would have to hold theirs before the others wait.
const STREAM_WINDOW: u32 = 128 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The pause before the next connect to a plane, and the backoff after it:
/// every `STARTUP_RETRY` until the plane has been healthy once (for at most
/// `STARTUP_WINDOW` since the first retry, `since_first`), then `backoff`,
/// doubling up to `BACKOFF_MAX` (a plane that becomes healthy resets it to
/// `BACKOFF_MIN`).
fn reconnect_pause(since_first: Duration, ever_healthy: bool, backoff: Duration) -> (Duration, Duration) {
    if !ever_healthy && since_first < STARTUP_WINDOW {
        return (STARTUP_RETRY, backoff);
    }
    (backoff, (backoff * 2).min(BACKOFF_MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneKind {
    Data,
    Control,
}

pub struct Plane {
    pub kind: PlaneKind,
    pub path: PathBuf,
    pub active: Option<ConnKey>,
    pub healthy: bool,
    pub backoff: Duration,
    pub retry_pending: bool,
    /// Healthy at least once; before that, [`STARTUP_RETRY`] since `first_retry`.
    pub ever_healthy: bool,
    pub first_retry: Option<Instant>,
    /// Control planes: the profile and env pushes have been acknowledged on
    /// the current connection.
    pub profiles_pushed: bool,
    pub env_pushed: bool,
    /// Control planes: every `NOSLATE_FC_WARM_UP` function has a ready worker.
    pub workers_warm: bool,
    pub last_error: Option<String>,
}

impl Plane {
    pub fn all(cfg: &Config) -> Vec<Plane> {
        let mk = |kind, name: String| Plane {
            kind,
            path: cfg.sock_dir.join(name),
            active: None,
            healthy: false,
            backoff: BACKOFF_MIN,
            retry_pending: false,
            ever_healthy: false,
            first_retry: None,
            profiles_pushed: false,
            env_pushed: false,
            workers_warm: false,
            last_error: None,
        };
        let mut v: Vec<Plane> = (0..cfg.data_planes).map(|i| mk(PlaneKind::Data, format!("dp-{i}.sock"))).collect();
        v.extend((0..cfg.control_planes).map(|i| mk(PlaneKind::Control, format!("cp-{i}.sock"))));
        v
    }
}

/// What the stack asks of every control plane before it is ready: the
/// pushes that exist, and warm workers when `NOSLATE_FC_WARM_UP` names any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    pub profiles: bool,
    pub env: bool,
    pub warm_up: bool,
}

/// The first thing a plane still lacks for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Not connected, or `checkHealth` has not said healthy.
    NotReady,
    /// The control plane has not accepted the function profiles.
    Profiles,
    /// The control plane has not accepted the platform environment.
    Env,
    /// The warm-up functions have no ready worker yet.
    Workers,
}

impl Plane {
    /// The first thing this plane lacks (`None`: ready), in the order the
    /// stack gets there: connected and healthy; then, for a control plane,
    /// the profile and environment pushes that `wants` asks for accepted on
    /// the current connection, and the warm-up workers ready. A data plane
    /// is ready once healthy (LIFECYCLE.md, "Function readiness").
    pub fn gap(&self, wants: Wants) -> Option<Gap> {
        if self.active.is_none() || !self.healthy {
            Some(Gap::NotReady)
        } else if self.kind == PlaneKind::Data {
            None
        } else if wants.profiles && !self.profiles_pushed {
            Some(Gap::Profiles)
        } else if wants.env && !self.env_pushed {
            Some(Gap::Env)
        } else if wants.warm_up && !self.workers_warm {
            Some(Gap::Workers)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Health,
    PushProfiles,
    PushEnv,
    /// `getWorkerStatsSnapshot`, polled until the warm-up workers are ready.
    WorkerStats,
}

impl Unary {
    /// A call that makes a connection ready (retried on failure, SETUP_RETRY).
    fn sets_up(self) -> bool {
        matches!(self, Unary::Health | Unary::PushProfiles | Unary::PushEnv)
    }
}

/// Whether a connection in this state still needs `call` made: a health
/// check until healthy; a push once healthy, until it was accepted.
fn setup_needed(call: Unary, healthy: bool, profiles_pushed: bool, env_pushed: bool) -> bool {
    match call {
        Unary::Health => !healthy,
        Unary::PushProfiles => healthy && !profiles_pushed,
        Unary::PushEnv => healthy && !env_pushed,
        Unary::WorkerStats => false,
    }
}

enum Owner {
    /// A client's invoke: (client key, exchange generation).
    Invoke(ClientKey, u64),
    Unary {
        call: Unary,
        response: Option<Bytes>,
    },
}

/// The Noslated planes and the connections to them, with the plane
/// scheduling (round robin over data planes, connections to read again,
/// invokes parked until a data plane or the profiles are ready). Fields are
/// private to this file: the rest of server/ reaches an invoke's own stream
/// through the methods below, and reads readiness through `iter`.
pub struct Planes {
    list: Vec<Plane>,
    conns: Sessions<ConnKey, PlaneConn>,
    /// Where the data-plane round robin goes on (`Server::pick_data_conn`).
    next: usize,
    /// Connections whose read was cut short for fairness: read again next turn.
    reread: Vec<ConnKey>,
    /// Invokes parked for readiness, by client and exchange.
    parked: Vec<(ClientKey, u64)>,
}

impl Planes {
    pub fn new(cfg: &Config) -> Planes {
        Planes { list: Plane::all(cfg), conns: Sessions::default(), next: 0, reread: Vec::new(), parked: Vec::new() }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plane> {
        self.list.iter()
    }

    /// The live key of connection slot `index` (a socket token names the slot).
    pub fn conn_key_at(&self, index: usize) -> Option<ConnKey> {
        self.conns.key_at(index)
    }

    /// A read was cut short: the loop must not sleep.
    pub fn reread_due(&self) -> bool {
        !self.reread.is_empty()
    }

    /// The h2 state of a connection, for the stream an invoke owns on it.
    pub fn h2(&mut self, conn: ConnKey) -> Option<&mut ClientConnection> {
        self.conns.get_mut(conn).map(|pc| &mut pc.h2)
    }

    /// What the stream takes at once (0 for a connection gone).
    pub fn send_capacity(&self, conn: ConnKey, stream: StreamRef) -> usize {
        self.conns.get(conn).map_or(0, |pc| pc.h2.send_capacity(stream))
    }

    /// Open an invoke stream for client `key` in exchange `gen`.
    pub fn open_invoke(
        &mut self,
        conn: ConnKey,
        fields: &[(&[u8], &[u8])],
        key: ClientKey,
        gen: u64,
    ) -> Result<StreamRef, OpenError> {
        let pc = &mut self.conns[conn];
        let stream = pc.h2.open(fields, false)?;
        pc.owners.insert(stream, Owner::Invoke(key, gen));
        Ok(stream)
    }

    /// An invoke lets go of its stream: credit `unreleased`, and cancel the
    /// stream if `cancel`. False when the connection is gone.
    pub fn let_go(&mut self, conn: ConnKey, stream: StreamRef, unreleased: usize, cancel: bool) -> bool {
        let Some(pc) = self.conns.get_mut(conn) else { return false };
        pc.owners.remove(&stream);
        pc.h2.release(stream, unreleased);
        if cancel {
            pc.h2.reset(stream, ErrorCode::CANCEL);
        }
        true
    }

    /// Park an invoke until readiness (once).
    pub fn park(&mut self, key: ClientKey, gen: u64) {
        if !self.parked.contains(&(key, gen)) {
            self.parked.push((key, gen));
        }
    }

    pub fn unpark(&mut self, key: ClientKey, gen: u64) {
        self.parked.retain(|w| *w != (key, gen));
    }

    /// Every parked invoke, taken off the list.
    pub fn take_parked(&mut self) -> Vec<(ClientKey, u64)> {
        std::mem::take(&mut self.parked)
    }
}

struct PlaneConn {
    plane: usize,
    sock: UnixStream,
    h2: ClientConnection,
    rbuf: BytesMut,
    owners: IdMap<StreamRef, Owner>,
    deframers: IdMap<StreamRef, Deframer>,
    retired: bool,
    /// Registered for writable too, while output waits (see `write_conn`).
    write_armed: bool,
}

impl Server {
    pub(super) fn connect_all_planes(&mut self) {
        for i in 0..self.planes.list.len() {
            self.connect_plane(i);
        }
    }

    pub(super) fn connect_plane(&mut self, plane: usize) {
        let p = &mut self.planes.list[plane];
        p.retry_pending = false;
        if p.active.is_some() || self.life.stopping() {
            return;
        }
        match UnixStream::connect(&p.path) {
            Ok(sock) => self.add_conn(plane, sock),
            Err(e) => {
                // ENOENT before the plane's first start, ECONNREFUSED on a
                // stale socket file: both mean "not up yet" (docs/noslated-protocol.md §2.4).
                p.last_error = Some(format!("{}: {e}", p.path.display()));
                self.schedule_retry(plane);
            }
        }
    }

    fn schedule_retry(&mut self, plane: usize) {
        let p = &mut self.planes.list[plane];
        if p.retry_pending || self.life.stopping() {
            return;
        }
        p.retry_pending = true;
        let now = self.now;
        let first = *p.first_retry.get_or_insert(now);
        let (pause, backoff) = reconnect_pause(now.saturating_duration_since(first), p.ever_healthy, p.backoff);
        p.backoff = backoff;
        self.timers.add(now + pause, Timer::PlaneRetry { plane });
    }

    fn add_conn(&mut self, plane: usize, mut sock: UnixStream) {
        let key = self.planes.conns.vacant_key();
        if let Err(e) = self.poll.registry().register(&mut sock, key.token(), Interest::READABLE) {
            self.planes.list[plane].last_error = Some(format!("register: {e}"));
            self.schedule_retry(plane);
            return;
        }
        let h2 = ClientConnection::new(H2Config {
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            ..H2Config::default()
        });
        self.planes.conns.insert(PlaneConn {
            plane,
            sock,
            h2,
            rbuf: BytesMut::new(),
            owners: IdMap::default(),
            deframers: IdMap::default(),
            retired: false,
            write_armed: false,
        });
        let p = &mut self.planes.list[plane];
        p.active = Some(key);
        p.healthy = false;
        p.profiles_pushed = false;
        p.env_pushed = false;
        p.workers_warm = false;
        self.mark_conn(key);
        self.unary(key, Unary::Health);
        if self.planes.list[plane].kind == PlaneKind::Data {
            self.defer(Effect::WakeWaiters);
        }
    }

    /// A data-plane connection that can take a new stream, round robin over
    /// planes so several data planes share the load.
    pub(super) fn pick_data_conn(&mut self) -> Option<ConnKey> {
        let n = self.planes.list.len();
        for step in 0..n {
            let i = (self.planes.next + step) % n;
            let p = &self.planes.list[i];
            if p.kind != PlaneKind::Data {
                continue;
            }
            if let Some(key) = p.active {
                if self.planes.conns.get(key).is_some_and(|c| c.h2.is_open_for_streams()) {
                    self.planes.next = i + 1;
                    return Some(key);
                }
            }
        }
        None
    }

    /// Start a unary call on a connection.
    pub(super) fn unary(&mut self, key: ConnKey, call: Unary) {
        let (path, body): (&[u8], Vec<u8>) = match call {
            Unary::Health => match self.planes.list[self.planes.conns[key].plane].kind {
                PlaneKind::Data => (b"/noslated.data.DataPlane/checkHealth", Vec::new()),
                PlaneKind::Control => (b"/noslated.control.ControlPlane/checkHealth", Vec::new()),
            },
            Unary::PushProfiles => match &self.life.profiles_message {
                Some(m) => (b"/noslated.control.ControlPlane/setFunctionProfile", m.clone()),
                None => return,
            },
            Unary::PushEnv => match &self.life.env_message {
                Some(m) => (b"/noslated.control.ControlPlane/setPlatformEnvironmentVariables", m.clone()),
                None => return,
            },
            Unary::WorkerStats => (b"/noslated.control.ControlPlane/getWorkerStatsSnapshot", Vec::new()),
        };
        let timeout = grpc::encode_timeout(UNARY_TIMEOUT_MS);
        let fields = grpc::request_fields(path, &timeout);
        let pc = &mut self.planes.conns[key];
        let Ok(stream) = pc.h2.open(&fields, false) else { return };
        let mut msg = Vec::with_capacity(grpc::MESSAGE_PREFIX_LEN + body.len());
        msg.extend_from_slice(&grpc::message_prefix(body.len() as u32));
        msg.extend_from_slice(&body);
        pc.h2.send_data(stream, Bytes::from(msg));
        pc.h2.send_end(stream);
        pc.owners.insert(stream, Owner::Unary { call, response: None });
        pc.deframers.insert(stream, Deframer::new(1 << 20));
        self.mark_conn(key);
    }

    pub(super) fn plane_event(&mut self, key: ConnKey, readable: bool, read_closed: bool, writable: bool) {
        if !self.planes.conns.contains(key) {
            return;
        }
        if writable {
            self.flush_conn(key);
        }
        if readable {
            self.read_conn(key, read_closed);
        }
    }

    /// Read and handle what the plane sent. `to_end`: the peer closed its
    /// side, so read on to the end of stream even after a short read.
    fn read_conn(&mut self, key: ConnKey, to_end: bool) {
        // Bounded so one busy connection cannot starve the others.
        for _ in 0..64 {
            let Some(pc) = self.planes.conns.get_mut(key) else { return };
            if pc.rbuf.capacity() - pc.rbuf.len() < 16 * 1024 {
                self.pool.refill(&mut pc.rbuf, 16 * 1024, PLANE_READ);
            }
            let asked = pc.rbuf.capacity() - pc.rbuf.len();
            match crate::sys::read_into(pc.sock.as_raw_fd(), &mut pc.rbuf, usize::MAX) {
                Ok(0) => return self.conn_lost(key, PlaneFault::Closed),
                Ok(n) => {
                    let pc = &mut self.planes.conns[key];
                    let result = pc.h2.recv(&mut pc.rbuf);
                    self.dispatch_conn_events(key);
                    if let Err(e) = result {
                        self.flush_conn(key);
                        return self.conn_lost(key, PlaneFault::Connection(e));
                    }
                    self.mark_conn(key);
                    if n < asked && !to_end {
                        // Drained: the edge-triggered poll reports what
                        // arrives next, so no read just to hear EAGAIN.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.conn_lost(key, PlaneFault::Io(IoOp::Read, e.kind())),
            }
        }
        // More may be pending: come back on the next turn via a zero timer.
        self.mark_conn(key);
        self.planes.reread.push(key);
    }

    pub(super) fn reread_conns(&mut self) {
        for key in std::mem::take(&mut self.planes.reread) {
            self.read_conn(key, true);
        }
    }

    /// Handle what the connection's h2 state reported. What concerns a
    /// client's invoke is queued for the loop to apply after this event
    /// ([`Effect::Stream`]); unary calls are this file's own.
    fn dispatch_conn_events(&mut self, key: ConnKey) {
        loop {
            let Some(pc) = self.planes.conns.get_mut(key) else { return };
            let Some(event) = pc.h2.poll_event() else { return };
            let (client, gen, stream, news) = match event {
                Event::Headers { stream, fields, end_stream } => match pc.owners.get(&stream) {
                    Some(&Owner::Invoke(client, gen)) => {
                        (client, gen, stream, StreamNews::Headers { fields, end_stream })
                    }
                    Some(Owner::Unary { .. }) if end_stream => {
                        let status = grpc::status_from_trailers(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
                        // The list's storage serves the next header block.
                        pc.h2.recycle_headers(fields);
                        self.unary_done(key, stream, status.map_err(|e| e.to_string()));
                        continue;
                    }
                    _ => {
                        pc.h2.recycle_headers(fields);
                        continue;
                    }
                },
                Event::Data { stream, data, .. } => {
                    let len = data.len();
                    match pc.owners.get_mut(&stream) {
                        Some(&mut Owner::Invoke(client, gen)) => (client, gen, stream, StreamNews::Data(data)),
                        Some(Owner::Unary { response, .. }) => {
                            if let Some(d) = pc.deframers.get_mut(&stream) {
                                d.push(data);
                                if let Ok(Some(m)) = d.next_message() {
                                    *response = Some(m);
                                }
                            }
                            pc.h2.release(stream, len);
                            continue;
                        }
                        None => {
                            pc.h2.release(stream, len);
                            continue;
                        }
                    }
                }
                Event::Reset { stream, code, retryable } => {
                    let owner = pc.owners.remove(&stream);
                    pc.deframers.remove(&stream);
                    match owner {
                        Some(Owner::Invoke(client, gen)) => {
                            (client, gen, stream, StreamNews::Failed { fault: PlaneFault::Reset(code), retryable })
                        }
                        Some(Owner::Unary { call, .. }) => {
                            self.unary_failed(key, call, format!("stream reset ({code})"));
                            continue;
                        }
                        None => continue,
                    }
                }
                Event::SendReady { stream } => match pc.owners.get(&stream) {
                    Some(&Owner::Invoke(client, gen)) => (client, gen, stream, StreamNews::SendReady),
                    _ => continue,
                },
                Event::GoAway { last_stream_id, code, .. } => {
                    // Routine (docs/noslated-protocol.md §3.4): stop using this connection for new
                    // streams, let it finish, and connect afresh now.
                    eprintln!("noslate-fc: plane connection got GOAWAY({code}, last stream {last_stream_id})");
                    self.retire_conn(key);
                    continue;
                }
                Event::Closed { stream } => {
                    pc.owners.remove(&stream);
                    pc.deframers.remove(&stream);
                    self.conn_maybe_retire(key);
                    continue;
                }
            };
            self.defer(Effect::Stream { client, gen, conn: key, stream, news });
        }
    }

    fn unary_done(&mut self, key: ConnKey, stream: StreamRef, status: Result<grpc::Status, String>) {
        let pc = &mut self.planes.conns[key];
        pc.deframers.remove(&stream);
        let Some(Owner::Unary { call, response }) = pc.owners.remove(&stream) else { return };
        let result = match status {
            Ok(s) if s.code.0 == 0 => response.ok_or_else(|| "no response message".to_string()),
            Ok(s) => Err(format!("gRPC status {}: {}", s.code.0, s.message)),
            Err(e) => Err(e),
        };
        match result {
            Ok(message) => self.unary_ok(key, call, &message),
            Err(why) => self.unary_failed(key, call, why),
        }
    }

    fn unary_ok(&mut self, key: ConnKey, call: Unary, message: &[u8]) {
        let plane = self.planes.conns[key].plane;
        let is_active = self.planes.list[plane].active == Some(key);
        match call {
            Unary::Health => {
                let healthy = crate::proto::PlaneHealthyResponse::decode(message)
                    .map(|r| r.health == Some(true))
                    .unwrap_or(false);
                if !healthy {
                    return self.unary_failed(key, call, "checkHealth answered unhealthy".into());
                }
                if is_active {
                    let p = &mut self.planes.list[plane];
                    p.healthy = true;
                    p.ever_healthy = true;
                    p.backoff = BACKOFF_MIN;
                    p.last_error = None;
                    if p.kind == PlaneKind::Control {
                        self.unary(key, Unary::PushProfiles);
                        self.unary(key, Unary::PushEnv);
                    }
                }
            }
            Unary::PushProfiles | Unary::PushEnv => {
                use crate::proto::Message;
                let set = crate::proto::SetFunctionProfileResponse::decode(message).map(|r| r.set == Some(true));
                if set != Ok(true) {
                    let what =
                        if call == Unary::PushProfiles { "Function profile" } else { "Platform environment variables" };
                    return self.unary_failed(key, call, format!("{what} didn't set."));
                }
                if is_active {
                    let p = &mut self.planes.list[plane];
                    match call {
                        Unary::PushProfiles => p.profiles_pushed = true,
                        _ => p.env_pushed = true,
                    }
                    if call == Unary::PushProfiles && !self.cfg.warm_up.is_empty() {
                        self.unary(key, Unary::WorkerStats);
                    }
                    // Invokes of the profiles' functions wait for this.
                    if self.profiles_in_force() {
                        self.defer(Effect::WakeWaiters);
                    }
                }
            }
            Unary::WorkerStats => {
                use crate::proto::Message;
                let stats = crate::proto::WorkerStatsSnapshotResponse::decode(message);
                let warm = stats.is_ok_and(|s| {
                    self.cfg.warm_up.iter().all(|name| {
                        s.brokers
                            .iter()
                            .any(|b| b.name.as_deref() == Some(name.as_str()) && b.active_worker_count.unwrap_or(0) > 0)
                    })
                });
                if !is_active {
                    return;
                }
                if warm {
                    self.planes.list[plane].workers_warm = true;
                } else {
                    self.timers.add(self.now + WARM_UP_POLL, Timer::WarmUpPoll { plane });
                }
            }
        }
        self.defer(Effect::CheckInitialize);
    }

    /// Make a failed health check or push again, if the plane's current
    /// connection still needs it and no such call is in flight on it (a
    /// connection made since does its own).
    pub(super) fn retry_setup(&mut self, plane: usize, call: Unary) {
        let p = &self.planes.list[plane];
        let Some(key) = p.active else { return };
        let in_flight =
            self.planes.conns[key].owners.values().any(|o| matches!(o, Owner::Unary { call: c, .. } if *c == call));
        if setup_needed(call, p.healthy, p.profiles_pushed, p.env_pushed) && !in_flight {
            self.unary(key, call);
        }
    }

    /// Ask the control plane again whether the warm-up workers are ready.
    pub(super) fn poll_warm_up(&mut self, plane: usize) {
        if let Some(key) = self.planes.list[plane].active.filter(|_| self.planes.list[plane].profiles_pushed) {
            self.unary(key, Unary::WorkerStats);
        }
    }

    fn unary_failed(&mut self, key: ConnKey, call: Unary, why: String) {
        let Some(pc) = self.planes.conns.get(key) else { return };
        let plane = pc.plane;
        eprintln!("noslate-fc: {} {call:?} failed: {}", self.planes.list[plane].path.display(), Escaped(&why));
        self.planes.list[plane].last_error = Some(format!("{call:?}: {why}"));
        if call.sets_up() && self.planes.list[plane].active == Some(key) {
            self.timers.add(self.now + SETUP_RETRY, Timer::SetupRetry { plane, call });
        }
        if call == Unary::WorkerStats && self.planes.list[plane].active == Some(key) {
            self.timers.add(self.now + WARM_UP_POLL, Timer::WarmUpPoll { plane });
        }
        self.defer(Effect::CheckInitialize);
    }

    /// Stop giving this connection new streams; it closes when empty.
    fn retire_conn(&mut self, key: ConnKey) {
        let Some(pc) = self.planes.conns.get_mut(key) else { return };
        pc.retired = true;
        let plane = pc.plane;
        if self.planes.list[plane].active == Some(key) {
            self.planes.list[plane].active = None;
            self.planes.list[plane].healthy = false;
            self.connect_plane(plane);
        }
        self.conn_maybe_retire(key);
    }

    /// Retire a connection that used up its reset budget; close a retired
    /// one that has no streams left.
    pub(super) fn conn_maybe_retire(&mut self, key: ConnKey) {
        let Some(pc) = self.planes.conns.get(key) else { return };
        if !pc.retired && pc.h2.resets_sent() >= RESET_BUDGET {
            eprintln!("noslate-fc: plane connection sent {RESET_BUDGET} resets: moving new streams to a fresh one");
            return self.retire_conn(key);
        }
        if pc.retired && pc.owners.is_empty() {
            self.flush_conn(key);
            self.drop_conn(key);
        }
    }

    pub(super) fn flush_conn(&mut self, key: ConnKey) {
        let opening = self
            .planes
            .conns
            .get(key)
            .is_some_and(|pc| !pc.h2.is_open_for_streams() && self.planes.list[pc.plane].kind == PlaneKind::Data);
        if let Some(pc) = self.planes.conns.get_mut(key) {
            pc.h2.settle();
        }
        self.write_conn(key);
        // Writing can give streams send capacity again (the output budget).
        if self.planes.conns.get(key).is_some_and(|pc| pc.h2.has_events()) {
            self.dispatch_conn_events(key);
        }
        // Invokes parked while no data plane was up are woken in `add_conn`,
        // but a connection takes streams only once its handshake is written;
        // they would wait out NOSLATE_FC_READY_WAIT_MS. Wake them again now.
        if opening && self.planes.conns.get(key).is_some_and(|pc| pc.h2.is_open_for_streams()) {
            self.defer(Effect::WakeWaiters);
        }
    }

    fn write_conn(&mut self, key: ConnKey) {
        let Some(pc) = self.planes.conns.get_mut(key) else { return };
        loop {
            if !pc.h2.has_output() {
                return self.set_conn_writable(key, false);
            }
            let mut iov = [io::IoSlice::new(&[]); crate::fc::out::MAX_IOVECS];
            let n = pc.h2.fill_iovecs(&mut iov);
            match io::Write::write_vectored(&mut pc.sock, &iov[..n]) {
                Ok(0) => return self.conn_lost(key, PlaneFault::Io(IoOp::Write, io::ErrorKind::WriteZero)),
                Ok(written) => pc.h2.advance_output(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.set_conn_writable(key, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.conn_lost(key, PlaneFault::Io(IoOp::Write, e.kind())),
            }
        }
    }

    /// Writable interest only while output waits: registered readable
    /// alone, a unix socket would wake the loop with an EPOLLOUT edge every
    /// time the plane reads from it.
    fn set_conn_writable(&mut self, key: ConnKey, armed: bool) {
        let Some(pc) = self.planes.conns.get_mut(key) else { return };
        if pc.write_armed == armed {
            return;
        }
        let interest = if armed { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        match self.poll.registry().reregister(&mut pc.sock, key.token(), interest) {
            Ok(()) => pc.write_armed = armed,
            Err(e) => self.conn_lost(key, PlaneFault::Io(IoOp::Write, e.kind())),
        }
    }

    /// The connection died: fail what ran on it, reconnect.
    pub(super) fn conn_lost(&mut self, key: ConnKey, fault: PlaneFault) {
        let Some(pc) = self.planes.conns.get_mut(key) else { return };
        let plane = pc.plane;
        let owners: Vec<(StreamRef, Owner)> = pc.owners.drain().collect();
        eprintln!("noslate-fc: {}: {}", self.planes.list[plane].path.display(), Escaped(&fault));
        self.drop_conn(key);
        self.planes.list[plane].last_error = Some(fault.to_string());
        for (stream, owner) in owners {
            if let Owner::Invoke(client, gen) = owner {
                let news = StreamNews::Failed { fault, retryable: false };
                self.defer(Effect::Stream { client, gen, conn: key, stream, news });
            }
        }
        self.defer(Effect::CheckInitialize);
    }

    fn drop_conn(&mut self, key: ConnKey) {
        let Some(mut pc) = self.planes.conns.try_remove(key) else { return };
        let _ = self.poll.registry().deregister(&mut pc.sock);
        let plane = pc.plane;
        if self.planes.list[plane].active == Some(key) {
            let p = &mut self.planes.list[plane];
            p.active = None;
            p.healthy = false;
            p.profiles_pushed = false;
            p.env_pushed = false;
            p.workers_warm = false;
            self.schedule_retry(plane);
        }
    }

    /// Graceful close of every plane connection (shutdown).
    pub(super) fn close_planes(&mut self) {
        for key in self.planes.conns.keys() {
            self.planes.conns[key].h2.close(ErrorCode::NO_ERROR);
            self.flush_conn(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn setup_calls_needed_by_state() {
        use Unary::*;
        // call, healthy, profiles pushed, env pushed => needed
        let table = [
            (Health, false, false, false, true),
            (Health, true, false, false, false),
            (PushProfiles, false, false, false, false), // health first
            (PushProfiles, true, false, true, true),
            (PushProfiles, true, true, false, false),
            (PushEnv, true, true, false, true),
            (PushEnv, true, false, true, false),
            (WorkerStats, true, true, true, false),
        ];
        for (call, healthy, profiles, env, want) in table {
            assert_eq!(setup_needed(call, healthy, profiles, env), want, "{call:?} {healthy} {profiles} {env}");
            assert_eq!(call.sets_up(), call != WorkerStats);
        }
    }

    use super::*;

    /// A plane's readiness, by kind, state and what the stack asks for.
    #[test]
    fn gap_table() {
        use Gap::*;
        use PlaneKind::{Control, Data};
        let plane = |kind, connected: bool, healthy, [profiles, env, warm]: [bool; 3]| Plane {
            kind,
            path: PathBuf::new(),
            active: connected.then_some(ConnKey { index: 0, serial: 0 }),
            healthy,
            backoff: BACKOFF_MIN,
            retry_pending: false,
            ever_healthy: healthy,
            first_retry: None,
            profiles_pushed: profiles,
            env_pushed: env,
            workers_warm: warm,
            last_error: None,
        };
        let all = Wants { profiles: true, env: true, warm_up: true };
        let none = Wants::default();
        let (t, f) = (true, false);
        type Row = (PlaneKind, bool, bool, [bool; 3], Wants, Option<Gap>);
        #[rustfmt::skip]
        let table: &[Row] = &[
            // kind, connected, healthy, [profiles, env, workers warm], wants => gap
            (Data, f, f, [f, f, f], none, Some(NotReady)),
            (Data, t, f, [f, f, f], none, Some(NotReady)),
            (Data, f, t, [f, f, f], none, Some(NotReady)), // healthy once, connection gone
            (Data, t, t, [f, f, f], all, None),             // pushes are the control plane's
            (Control, t, f, [t, t, t], all, Some(NotReady)),
            (Control, t, t, [f, f, f], none, None),
            (Control, t, t, [f, f, f], all, Some(Profiles)),
            (Control, t, t, [t, f, f], all, Some(Env)),
            (Control, t, t, [t, t, f], all, Some(Workers)),
            (Control, t, t, [t, t, t], all, None),
            (Control, t, t, [f, t, t], Wants { profiles: false, ..all }, None),
            (Control, t, t, [t, f, t], Wants { env: false, ..all }, None),
            (Control, t, t, [t, t, f], Wants { warm_up: false, ..all }, None),
        ];
        for &(kind, connected, healthy, state, wants, want) in table {
            let got = plane(kind, connected, healthy, state).gap(wants);
            assert_eq!(got, want, "{kind:?} connected={connected} healthy={healthy} {state:?} {wants:?}");
        }
    }

    /// Reconnecting: quick fixed retries while the stack starts, then a
    /// doubling backoff with a cap.
    #[test]
    fn reconnect_pause_table() {
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let table: &[(Duration, bool, Duration, (Duration, Duration))] = &[
            // since first retry, ever healthy, backoff => (pause, next backoff)
            (ms(0), false, BACKOFF_MIN, (STARTUP_RETRY, BACKOFF_MIN)),
            (STARTUP_WINDOW - ms(1), false, BACKOFF_MIN, (STARTUP_RETRY, BACKOFF_MIN)),
            (STARTUP_WINDOW, false, BACKOFF_MIN, (BACKOFF_MIN, BACKOFF_MIN * 2)),
            (ms(0), true, BACKOFF_MIN, (BACKOFF_MIN, BACKOFF_MIN * 2)),
            (ms(0), true, ms(40), (ms(40), ms(80))),
            (ms(0), true, ms(320), (ms(320), BACKOFF_MAX)),
            (ms(0), true, BACKOFF_MAX, (BACKOFF_MAX, BACKOFF_MAX)),
        ];
        for &(since_first, ever_healthy, backoff, want) in table {
            assert_eq!(
                reconnect_pause(since_first, ever_healthy, backoff),
                want,
                "{since_first:?} {ever_healthy} {backoff:?}"
            );
        }
        // From the minimum, the cap is reached and held.
        let mut backoff = BACKOFF_MIN;
        let pauses: Vec<Duration> = (0..7)
            .map(|_| {
                let (pause, next) = reconnect_pause(STARTUP_WINDOW, true, backoff);
                backoff = next;
                pause
            })
            .collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 500, 500].map(ms));
    }
}
