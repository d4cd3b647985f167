//! FC's side: HTTP/1.1 connections. One exchange at a time per connection;
//! pipelined requests wait in the read buffer and are answered in order.
//!
//! Lifecycle of a connection (see LIFECYCLE.md): `Idle` (reading a head,
//! idle/head timers armed) → a local answer (hooks, errors), `Init`
//! (`/initialize` waiting for readiness) or `Invoke` (spliced to a plane) →
//! back to `Idle` when the response is written and the request body consumed,
//! or closed when either side cannot continue.
//!
//! This file owns the client: its `Phase` changes here only. Invoke steps
//! (`client/invoke.rs`) return a [`Step`]; [`Server::end_exchange`] is the one place
//! an exchange ends — the phase goes, the FC `End` marker is written, the
//! answer is queued and the connection goes on or closes.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::Interest;

mod invoke;

use super::{ClientKey, ClientTimer, Server, Sessions, Timer};
use crate::answers::Answer;
use crate::fc::dispatch::{self, Endpoint, Peer, RequestId};
use crate::fc::InvokeError;
use crate::fc::{Marker, OutQueue};
use crate::http1::request::{HeadParser, RequestHead};
use crate::http1::{Limits, RequestError};
use crate::logsafe::Escaped;
use invoke::{Invoke, Step};

/// Read size while a head is expected, and while a body streams.
const HEAD_READ: usize = 8 * 1024;
const BODY_READ: usize = 64 * 1024;
const BODY_READ_MIN: usize = 4 * 1024;

/// Stop reading a client whose unprocessed input exceeds this (pipelined
/// requests queue up to here, then TCP flow control pushes back).
const MAX_BUFFERED_INPUT: usize = 256 * 1024;

/// Stop answering pipelined requests while this much output waits for a
/// client that does not read (its responses would otherwise pile up here).
pub const MAX_PENDING_OUTPUT: usize = 256 * 1024;

/// An answer sent before the request body was read keeps the connection
/// when the rest of the body has a known length up to this: it is read and
/// dropped (`Phase::Discard`). Longer or chunked rests close, lingering.
pub const DISCARD_MAX: u64 = 64 * 1024;

/// The loop's landing buffer for idle and lingering reads (lingering drops
/// input into it); zeroed once, at start.
pub const LANDING: usize = 64 * 1024;

/// The exchange in progress on a connection. `Invoke` is held inline, not
/// boxed: the phase lives in the connection's slab entry, which is reused, so
/// an invocation costs no allocation; the price is its size (under 1 KiB) in
/// every connection's entry.
#[allow(clippy::large_enum_variant)]
pub enum Phase {
    Idle,
    /// Answered at once (`/pre-freeze`, an invocation refused before it
    /// started): set only to pass through `end_exchange` in the same call.
    Answered {
        marker: Marker,
        request_id: RequestId,
        keep_alive: bool,
        event: bool,
        rest: Rest,
    },
    /// `/initialize` waiting for the planes and the profile push.
    Init {
        keep_alive: bool,
        request_id: RequestId,
    },
    /// `/pre-stop` waiting for in-flight invokes to drain (then it closes:
    /// the instance is going away).
    PreStop {
        request_id: RequestId,
    },
    Invoke(Invoke),
    /// Answered before the request body was read; the rest of the body is
    /// small and of known length: read and drop it, then the next request.
    Discard {
        left: u64,
    },
    /// Lingering close (nginx's `lingering_close`): the answer is written and
    /// our side shut down; input is read and dropped until the client closes,
    /// or a time bound passes (no input for `NOSLATE_FC_LINGER_TIMEOUT_MS`,
    /// all of `NOSLATE_FC_LINGER_MS`: nginx's `lingering_timeout` and
    /// `lingering_time`). Closing with unread input would make the kernel
    /// send RST, and a client still uploading would lose the answer
    /// (`Connection reset by peer`). No byte bound: input is dropped into
    /// the landing buffer, so it costs no memory, and a byte cap cut
    /// clients uploading more than it before they read.
    Linger {
        until: Instant,
        last_read: Instant,
    },
}

impl Phase {
    pub fn invoke(&self) -> Option<&Invoke> {
        match self {
            Phase::Invoke(inv) => Some(inv),
            _ => None,
        }
    }

    pub fn invoke_mut(&mut self) -> Option<&mut Invoke> {
        match self {
            Phase::Invoke(inv) => Some(inv),
            _ => None,
        }
    }
}

/// What is left of a request when its exchange ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// A hook: nothing to skip (it is only answered reusable without a body).
    Nothing,
    /// An invocation's unread body: none, a known length, unknown (chunked).
    Body(Option<u64>),
}

/// How an exchange ends (`Server::end_exchange`).
pub enum Ending {
    /// The response is complete.
    Complete,
    /// Answer the exchange with this.
    Answer(Answer),
    /// The invocation failed: an error answer before the response head,
    /// else the response is cut (no last chunk, short of Content-Length).
    Failed(InvokeError),
    /// The request body broke its framing: answer before the head and close,
    /// else drop what is queued and close.
    BodyRefused(RequestError),
    /// The client went away, or the connection is closing under it.
    Abandoned(&'static str),
}

/// FC's HTTP/1.1 connections, owned here: the slab of `Client`s and the
/// counter of exchange generations. `Client`'s fields are private to this
/// file and its child `invoke`; the rest of server/ names a client by key
/// and asks `key_at`, `keys` and `is_current`.
#[derive(Default)]
pub struct Clients {
    slab: Sessions<ClientKey, Client>,
    next_gen: u64,
}

impl Clients {
    /// The live key of slot `index` (a socket token names the slot).
    pub(in crate::server) fn key_at(&self, index: usize) -> Option<ClientKey> {
        self.slab.key_at(index)
    }

    pub(in crate::server) fn keys(&self) -> Vec<ClientKey> {
        self.slab.keys()
    }

    /// The client is still connected and in exchange `gen`.
    pub(in crate::server) fn is_current(&self, key: ClientKey, gen: u64) -> bool {
        self.slab.get(key).is_some_and(|c| c.gen == gen)
    }

    /// A generation no exchange had before.
    fn fresh_gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn get(&self, key: ClientKey) -> Option<&Client> {
        self.slab.get(key)
    }

    fn get_mut(&mut self, key: ClientKey) -> Option<&mut Client> {
        self.slab.get_mut(key)
    }

    fn contains(&self, key: ClientKey) -> bool {
        self.slab.contains(key)
    }

    fn vacant_key(&self) -> ClientKey {
        self.slab.vacant_key()
    }

    fn insert(&mut self, client: Client) -> ClientKey {
        self.slab.insert(client)
    }

    fn try_remove(&mut self, key: ClientKey) -> Option<Client> {
        self.slab.try_remove(key)
    }

    fn len(&self) -> usize {
        self.slab.len()
    }

    fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (ClientKey, &Client)> {
        self.slab.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (ClientKey, &mut Client)> {
        self.slab.iter_mut()
    }
}

impl std::ops::Index<ClientKey> for Clients {
    type Output = Client;
    fn index(&self, key: ClientKey) -> &Client {
        &self.slab[key]
    }
}

impl std::ops::IndexMut<ClientKey> for Clients {
    fn index_mut(&mut self, key: ClientKey) -> &mut Client {
        &mut self.slab[key]
    }
}

pub struct Client {
    /// Who is at the other end (`NOSLATE_FC_TRUSTED_PEERS`): a process in
    /// the container gets what an end user gets.
    peer: Peer,
    /// Every timer added for this connection that may still be queued;
    /// cancelled when the exchange ends or the connection closes.
    timer_keys: Vec<crate::timer::TimerKey>,
    sock: TcpStream,
    /// Changes with every exchange, so timers of a finished exchange are void.
    gen: u64,
    rbuf: BytesMut,
    /// `rbuf` is a slice of the loop's scratch arena (what an idle read
    /// brought, exactly), not a pooled buffer of its own: it is never parked.
    rbuf_carved: bool,
    out: OutQueue,
    parser: HeadParser,
    phase: Phase,
    /// The client closed its side (EOF) or failed.
    peer_gone: bool,
    /// The socket may have unread input: set by a readable event, cleared
    /// by a read that came back short (the socket was drained then, and an
    /// edge-triggered poll reports any byte that arrives later), so that a
    /// read that would only say EAGAIN is not made.
    readable: bool,
    /// The poll said the peer closed its side: a short read does not mean
    /// drained then (the end of stream is still to be read, and no further
    /// event will announce it).
    read_closed: bool,
    /// Close once `out` is flushed.
    closing: bool,
    /// The slowloris timer of the current head is armed.
    head_timer_armed: bool,
    /// The head must be complete by then (408); moved on by a thaw.
    head_deadline: Instant,
    /// Fixed for the connection's life (its first generation): the idle
    /// timer belongs to the connection, not to one exchange.
    conn_id: u64,
    /// An idle keep-alive connection is closed once this passes.
    idle_deadline: Instant,
    /// The connection's one idle timer is in the timer set. Re-arming per
    /// exchange would leave an entry behind for every request for the whole
    /// idle timeout (600 s by default): memory growing with the request rate.
    idle_timer_pending: bool,
    /// The socket is registered for writable too: a write came back short
    /// and output waits. Cleared (readable only again) once `out` drains.
    write_armed: bool,
}

impl Server {
    pub(super) fn accept(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((sock, addr)) => {
                    let _ = sock.set_nodelay(true);
                    if self.clients.len() >= self.max_connections {
                        refuse_overload(sock);
                        continue;
                    }
                    let peer = if self.warm_up.is_own(addr) {
                        Peer::Fc
                    } else {
                        self.cfg.trusted_peers.peer(addr.ip(), own_address)
                    };
                    self.add_client(sock, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the pending connection stays in
                    // the backlog; stop accepting briefly instead of spinning.
                    eprintln!("noslate-fc: accept failed: {e}; pausing accepts for 100 ms");
                    self.accept_paused = true;
                    self.timers.add(self.now + std::time::Duration::from_millis(100), Timer::ResumeAccept);
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, mut sock: TcpStream, peer: Peer) {
        let key = self.clients.vacant_key();
        // Readable only: writable interest is added while output waits
        // (`flush_client`), so a peer's reads raise no empty wake-ups.
        if self.poll.registry().register(&mut sock, key.token(), Interest::READABLE).is_err() {
            return;
        }
        let gen = self.clients.fresh_gen();
        self.clients.insert(Client {
            sock,
            peer,
            gen,
            rbuf: BytesMut::new(),
            rbuf_carved: false,
            out: OutQueue::default(),
            parser: HeadParser::default(),
            phase: Phase::Idle,
            peer_gone: false,
            readable: true,
            read_closed: false,
            closing: false,
            head_timer_armed: false,
            head_deadline: self.now,
            conn_id: gen,
            idle_deadline: self.now,
            idle_timer_pending: false,
            timer_keys: Vec::new(),
            write_armed: false,
        });
        self.arm_idle(key);
    }

    /// Restart the idle period; add the connection's idle timer only if it
    /// is not pending already (when it fires early, it looks again).
    fn arm_idle(&mut self, key: ClientKey) {
        let at = self.now + self.cfg.idle_timeout;
        let c = &mut self.clients[key];
        c.idle_deadline = at;
        if !c.idle_timer_pending {
            c.idle_timer_pending = true;
            let conn = c.conn_id;
            self.client_timer_add(key, at, conn, ClientTimer::Idle);
        }
    }

    fn limits(&self) -> Limits {
        Limits { max_head: self.cfg.max_head, max_body: self.cfg.max_body, ..Limits::default() }
    }

    pub(super) fn client_event(&mut self, key: ClientKey, readable: bool, read_closed: bool, writable: bool) {
        if !self.clients.contains(key) {
            return;
        }
        if writable {
            self.flush_client(key);
        }
        if readable {
            if let Some(c) = self.clients.get_mut(key) {
                c.readable = true;
                c.read_closed |= read_closed;
            }
            self.pump_client(key);
        }
    }

    /// Read what the current phase can use, and act on it.
    pub(super) fn pump_client(&mut self, key: ClientKey) {
        // Bounded: each turn either consumes input or stops.
        for _ in 0..1024 {
            let Some(c) = self.clients.get_mut(key) else { return };
            if c.closing {
                return;
            }
            self.process_client(key);
            let Some(c) = self.clients.get_mut(key) else { return };
            if c.closing || c.peer_gone || !c.readable || !self.wants_input(key) {
                return;
            }
            match self.read_client(key) {
                Ok(0) => {
                    self.client_eof(key);
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.clients[key].readable = false;
                    return;
                }
                Err(_) => {
                    self.client_failed(key);
                    return;
                }
            }
        }
    }

    fn wants_input(&self, key: ClientKey) -> bool {
        let c = &self.clients[key];
        if c.rbuf.len() >= MAX_BUFFERED_INPUT {
            return false;
        }
        match &c.phase {
            Phase::Idle => c.out.len() < MAX_PENDING_OUTPUT,
            // A body only as the stream takes it (while parked, one that fits
            // the first message); after the body, a little, to notice a
            // client that goes away (or pipelines).
            Phase::Invoke(inv) if !inv.call.body.is_done() => {
                inv.wants_body(self) || inv.parked_body_wanted(c.rbuf.len()) > 0
            }
            Phase::Invoke(_) => c.rbuf.len() < HEAD_READ,
            // Keep reading a little to notice a client that goes away.
            Phase::Init { .. } | Phase::PreStop { .. } | Phase::Answered { .. } => c.rbuf.len() < HEAD_READ,
            Phase::Discard { .. } | Phase::Linger { .. } => true,
        }
    }

    fn read_client(&mut self, key: ClientKey) -> io::Result<usize> {
        // Only a body being forwarded needs the large buffer; an invoke that
        // waits for its response reads just to notice EOF (or pipelining).
        let c = &self.clients[key];
        let capacity = match &c.phase {
            Phase::Invoke(inv) => inv.send_capacity(self).max(inv.parked_body_wanted(c.rbuf.len())),
            _ => 0,
        };
        let body = capacity > 0;
        let c = &mut self.clients[key];
        if let Phase::Linger { last_read, .. } = &mut c.phase {
            let sink = &mut self.landing[..];
            let n = io::Read::read(&mut c.sock, sink)?;
            c.readable = n == sink.len() || c.read_closed;
            *last_read = self.now;
            return Ok(n);
        }
        if !body && c.rbuf.is_empty() {
            // Idle, or waiting for a response: most reads find nothing (or
            // EOF), so read into the loop's landing buffer (shared, zeroed
            // once) and keep only what came. At most one head's worth
            // (HEAD_READ) is copied.
            let landing = &mut self.landing[..HEAD_READ];
            let n = io::Read::read(&mut c.sock, landing)?;
            c.readable = n == landing.len() || c.read_closed;
            if n > 0 {
                // Exactly what came, carved from the scratch arena: the head
                // and a small body are sliced from it, and a connection
                // holds no buffer of its own until a body needs reading.
                c.rbuf = self.scratch.carve(&landing[..n]);
                c.rbuf_carved = true;
            }
            return Ok(n);
        }
        // A body is read only as far as the data plane's windows take it at
        // once (at least BODY_READ_MIN, to keep syscalls few): the rest waits
        // in the kernel, not in our memory.
        let want = if body { capacity.clamp(BODY_READ_MIN, BODY_READ) } else { HEAD_READ };
        if c.rbuf.capacity() - c.rbuf.len() < want / 4 {
            // Buffers come in power-of-two sizes, so that a parked one fits
            // the next ask; what is held (a partial head or chunk line, a
            // body the windows did not take yet) shares the size asked for.
            let class = want.next_power_of_two();
            let ask = want.min(class - c.rbuf.len().min(class / 2));
            self.pool.refill_read(&mut c.rbuf, &mut c.rbuf_carved, ask, class);
        }
        let asked = want.min(c.rbuf.capacity() - c.rbuf.len());
        let n = crate::sys::read_into(c.sock.as_raw_fd(), &mut c.rbuf, want)?;
        c.readable = n == asked || c.read_closed;
        Ok(n)
    }

    /// Parse and dispatch whatever complete input is buffered.
    fn process_client(&mut self, key: ClientKey) {
        loop {
            let Some(c) = self.clients.get_mut(key) else { return };
            if c.closing {
                return;
            }
            match c.phase {
                Phase::Idle => {
                    if c.rbuf.is_empty() || c.out.len() >= MAX_PENDING_OUTPUT {
                        return;
                    }
                    let limits = self.limits();
                    let c = &mut self.clients[key];
                    let had_partial = !c.rbuf.is_empty();
                    match c.parser.parse_in(&mut c.rbuf, &limits, &mut self.scratch) {
                        Ok(Some(head)) => {
                            self.on_request(key, head);
                            // Loop: a pipelined request may be buffered already.
                            if !matches!(self.clients.get(key).map(|c| &c.phase), Some(Phase::Idle)) {
                                return;
                            }
                        }
                        Ok(None) => {
                            if had_partial {
                                self.arm_head_timer(key);
                            }
                            return;
                        }
                        Err(e) => {
                            self.refuse(key, &e);
                            return;
                        }
                    }
                }
                Phase::Invoke(_) => {
                    let step = self.pump_invoke_body(key);
                    self.settle(key, step);
                    return;
                }
                Phase::Init { .. } | Phase::PreStop { .. } | Phase::Answered { .. } | Phase::Linger { .. } => return,
                Phase::Discard { ref mut left } => {
                    let n = usize::try_from(*left).map_or(c.rbuf.len(), |l| l.min(c.rbuf.len()));
                    let _ = c.rbuf.split_to(n);
                    *left -= n as u64;
                    if *left == 0 {
                        // Loops through `finish_exchange` to a pipelined request.
                        self.finish_exchange(key, true);
                    }
                    return;
                }
            }
        }
    }

    /// Arm the slowloris timer once per exchange (the first partial head).
    fn arm_head_timer(&mut self, key: ClientKey) {
        let c = &mut self.clients[key];
        if c.head_timer_armed {
            return;
        }
        c.head_timer_armed = true;
        let gen = c.gen;
        let at = self.now + self.cfg.header_timeout;
        c.head_deadline = at;
        self.client_timer_add(key, at, gen, ClientTimer::Head);
    }

    /// Back from a stop of the whole process (FC's freeze, SIGSTOP; see
    /// `Server::notice_freeze`): time spent stopped is not the client's
    /// idleness or slowness, so the idle, head and plane-wait periods restart
    /// from now. Their timers, already due, look again when they fire and
    /// find the new deadlines. Every socket may hold input that arrived
    /// during the stop, so the next pump reads instead of trusting the flag.
    pub(super) fn thaw(&mut self, now: Instant) {
        let (idle, head, wait) = (self.cfg.idle_timeout, self.cfg.header_timeout, self.cfg.ready_wait);
        let linger_timeout = self.cfg.linger_timeout;
        for (_, c) in self.clients.iter_mut() {
            c.readable = true;
            c.idle_deadline = c.idle_deadline.max(now + idle);
            if c.head_timer_armed {
                c.head_deadline = c.head_deadline.max(now + head);
            }
            match &mut c.phase {
                Phase::Invoke(inv) if !inv.upstream.is_attached() => {
                    if let Some(until) = &mut inv.wait_until {
                        *until = (*until).max(now + wait);
                    }
                }
                // A client that uploaded during the stop still gets its answer.
                Phase::Linger { until, last_read, .. } => {
                    *last_read = (*last_read).max(now);
                    *until = (*until).max(now + linger_timeout);
                }
                _ => {}
            }
        }
    }

    /// Before a timer closes or refuses a connection for want of input,
    /// look at the socket: a request may be waiting there that the poll has
    /// not reported yet (after a stop, the overdue timer comes first). True
    /// when the connection is still in the same exchange and still idle.
    fn look_before_timeout(&mut self, key: ClientKey, gen: u64, is_idle_timer: bool) -> bool {
        if let Some(c) = self.clients.get_mut(key) {
            c.readable = true;
        }
        self.pump_client(key);
        match self.clients.get(key) {
            Some(c) if !c.closing && !c.peer_gone && matches!(c.phase, Phase::Idle) => {
                if is_idle_timer {
                    c.conn_id == gen
                } else {
                    c.gen == gen
                }
            }
            _ => false,
        }
    }

    /// A malformed or over-limit request: answer and close (RFC 9112 §9.6:
    /// after a framing error the connection cannot be reused).
    fn refuse(&mut self, key: ClientKey, e: &RequestError) {
        self.queue_answer(key, &Answer::refused(e), false);
    }

    /// Queue a complete answer; `keep_alive` false closes after it.
    fn queue_answer(&mut self, key: ClientKey, answer: &Answer, keep_alive: bool) {
        let Some(c) = self.clients.get_mut(key) else { return };
        c.out.push(answer.encode(keep_alive));
        if !keep_alive {
            c.closing = true;
        }
        self.mark_client(key);
    }

    /// Route one request head (docs/fc-contract.md §3; `fc::dispatch`).
    fn on_request(&mut self, key: ClientKey, head: RequestHead) {
        self.clients[key].gen = self.clients.fresh_gen();
        // The head arrived: its slowloris timer (and any other of the last
        // exchange) is void. Local answers never pass through
        // `finish_exchange`, so the idle period restarts here too.
        let c = &mut self.clients[key];
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        self.arm_idle(key);
        // Local answers never read the body: keep the connection only when
        // there is none to skip. A routing header given twice or an unknown
        // control path: nothing runs, the body is not read, it closes.
        let reusable = dispatch::reusable_without_body(&head);
        match dispatch::endpoint(&head, self.clients[key].peer) {
            Endpoint::Ambiguous(name) => self.queue_answer(key, &Answer::ambiguous(name), false),
            Endpoint::WrongMethod(allow) => self.queue_answer(key, &Answer::wrong_method(allow), reusable),
            Endpoint::BadControlPath => self.queue_answer(key, &Answer::bad_control_path(), false),
            Endpoint::Invoke(origin) => {
                let request_id = dispatch::request_id(&head);
                self.log.start(Marker::Invoke, &request_id);
                match self.new_invoke(head, origin, request_id) {
                    Ok(inv) => {
                        let gen = self.clients[key].gen;
                        self.client_timer_add(key, inv.call.deadline, gen, ClientTimer::Deadline);
                        self.clients[key].phase = Phase::Invoke(inv);
                        let step = self.dispatch_invoke(key);
                        self.settle(key, step);
                    }
                    Err(refused) => {
                        let refused = *refused;
                        self.clients[key].phase = Phase::Answered {
                            marker: Marker::Invoke,
                            keep_alive: refused.head.keep_alive(),
                            event: refused.origin.is_event(),
                            rest: Rest::Body(dispatch::unread_body(&refused.head)),
                            request_id: refused.request_id,
                        };
                        self.end_exchange(key, Ending::Failed(refused.error));
                    }
                }
            }
            Endpoint::PreFreeze => {
                let request_id = dispatch::request_id(&head);
                self.log.start(Marker::PreFreeze, &request_id);
                // FC freezes the instance after this answer (docs/fc-contract.md §10.2).
                self.pre_freeze_at = Some(self.now);
                self.clients[key].phase = Phase::Answered {
                    marker: Marker::PreFreeze,
                    request_id,
                    keep_alive: reusable,
                    event: false,
                    rest: Rest::Nothing,
                };
                self.end_exchange(key, Ending::Answer(Answer::pre_freeze()));
            }
            Endpoint::PreStop => {
                let request_id = dispatch::request_id(&head);
                self.log.start(Marker::PreStop, &request_id);
                self.clients[key].phase = Phase::PreStop { request_id };
                self.defer(super::Effect::BeginShutdown("/pre-stop"));
            }
            Endpoint::Initialize => {
                let request_id = dispatch::request_id(&head);
                self.log.start(Marker::Initialize, &request_id);
                let timeout = dispatch::init_timeout(&head, self.cfg.init_timeout);
                self.clients[key].phase = Phase::Init { keep_alive: reusable, request_id };
                let gen = self.clients[key].gen;
                self.client_timer_add(key, self.now + timeout, gen, ClientTimer::Init);
                self.defer(super::Effect::CheckInitialize);
            }
        }
    }

    /// An exchange ended or a client left: while draining, the drain may be
    /// over now (checked once the event is handled). Running, nothing to
    /// check, and nothing is queued on the per-request path.
    fn drain_check(&mut self) {
        if self.life.draining() {
            self.defer(super::Effect::DrainCheck);
        }
    }

    /// Act on what an invoke step came to.
    pub(super) fn settle(&mut self, key: ClientKey, step: Step) {
        match step {
            Step::Continue => {}
            Step::Done => self.end_exchange(key, Ending::Complete),
            Step::Failed(e) => self.end_exchange(key, Ending::Failed(e)),
            Step::BodyRefused(e) => self.end_exchange(key, Ending::BodyRefused(e)),
        }
    }

    /// The invocation in progress failed (no-op for any other phase).
    pub(super) fn fail_invoke(&mut self, key: ClientKey, err: InvokeError) {
        if self.clients.get(key).is_some_and(|c| c.phase.invoke().is_some()) {
            self.end_exchange(key, Ending::Failed(err));
        }
    }

    /// The one place an exchange ends: its phase goes, its FC `End` marker
    /// is written, its stream (if any) is detached, the answer is queued, and
    /// the connection goes on (perhaps after dropping a small unread body)
    /// or closes. A phase with nothing in progress is left alone.
    pub(super) fn end_exchange(&mut self, key: ClientKey, ending: Ending) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let phase = std::mem::replace(&mut c.phase, Phase::Idle);
        let immediate = matches!(phase, Phase::Answered { .. });
        let (marker, request_id, keep_alive, event, rest, waiting, streamed) = match phase {
            Phase::Invoke(inv) => {
                self.detach_stream(&inv);
                let call = inv.call;
                let rest = Rest::Body(call.unread_body());
                let waiting = call.response.writer.is_waiting();
                let (keep_alive, event) = (call.keep_alive(), call.origin.is_event());
                // The exchange's reusable storage goes back for the next one.
                let (head, request_id, response) = (call.head, call.request_id, call.response);
                response.recycle(&mut self.pool);
                self.clients[key].parser.recycle(head);
                (Marker::Invoke, request_id, keep_alive, event, rest, waiting, true)
            }
            Phase::Answered { marker, request_id, keep_alive, event, rest } => {
                (marker, request_id, keep_alive, event, rest, true, false)
            }
            Phase::Init { keep_alive, request_id } => {
                (Marker::Initialize, request_id, keep_alive, false, Rest::Nothing, true, false)
            }
            Phase::PreStop { request_id } => (Marker::PreStop, request_id, false, false, Rest::Nothing, true, false),
            idle @ (Phase::Idle | Phase::Discard { .. } | Phase::Linger { .. }) => {
                self.clients[key].phase = idle;
                return;
            }
        };
        let after = after_exchange(rest, keep_alive, immediate, self.cfg.linger);
        let keep = after.keeps();
        let answer = match ending {
            Ending::Complete => None,
            Ending::Answer(answer) => Some(answer),
            Ending::Failed(err) => {
                if streamed {
                    eprintln!("noslate-fc: invoke {request_id} failed: {}", Escaped(err.log_text()));
                }
                if waiting {
                    Some(Answer::invoke_failed(&err, event, self.cfg.expose_stack))
                } else {
                    // Headers are out: close without a clean end (no last
                    // chunk, or short of Content-Length). What was queued is
                    // still sent.
                    self.log.end(marker, &request_id);
                    return self.close_after_output(key, false);
                }
            }
            Ending::BodyRefused(e) => {
                // The body broke its own framing mid-stream: answer the
                // client if we still can, and close.
                self.log.end(marker, &request_id);
                if waiting {
                    return self.queue_answer(key, &Answer::body_refused(&e), false);
                }
                return self.close_after_output(key, true);
            }
            Ending::Abandoned(why) => {
                if streamed {
                    eprintln!("noslate-fc: invoke {request_id} cancelled: {}", Escaped(why));
                }
                self.log.end(marker, &request_id);
                return;
            }
        };
        if let Some(answer) = &answer {
            self.queue_answer(key, answer, keep);
        }
        self.log.end(marker, &request_id);
        if marker == Marker::PreFreeze {
            // The instance may be frozen right after this answer.
            self.log.flush();
        }
        match after {
            AfterExchange::Keep => self.finish_exchange(key, true),
            AfterExchange::Discard { left } => self.finish_exchange_discarding(key, left),
            AfterExchange::Close => self.finish_exchange(key, false),
            AfterExchange::InPlace { .. } => {}
        }
    }

    /// Close once the output is written (`drop_queued`: without it).
    fn close_after_output(&mut self, key: ClientKey, drop_queued: bool) {
        let c = &mut self.clients[key];
        if drop_queued {
            c.out.clear();
        }
        c.closing = true;
        self.mark_client(key);
    }

    /// Answer every `/initialize` that waits.
    pub(super) fn answer_initialize(&mut self, answer: &Answer) {
        let waiting: Vec<ClientKey> =
            self.clients.iter().filter(|(_, c)| matches!(c.phase, Phase::Init { .. })).map(|(k, _)| k).collect();
        for key in waiting {
            self.end_exchange(key, Ending::Answer(answer.clone()));
        }
    }

    /// Answer every waiting `/pre-stop`: the instance is going away, whether
    /// the drain ended or a child died during it (FC must not be left hanging).
    pub(super) fn answer_pre_stops(&mut self) {
        let waiting: Vec<ClientKey> =
            self.clients.iter().filter(|(_, c)| matches!(c.phase, Phase::PreStop { .. })).map(|(k, _)| k).collect();
        for key in waiting {
            self.end_exchange(key, Ending::Answer(Answer::pre_stop()));
        }
    }

    /// Invocations in progress (a drain waits for them).
    pub(super) fn invokes_in_flight(&self) -> usize {
        self.clients.iter().filter(|(_, c)| c.phase.invoke().is_some()).count()
    }

    /// The current exchange is over; go back to reading the next request.
    fn finish_exchange(&mut self, key: ClientKey, keep_alive: bool) {
        let gen = self.clients.fresh_gen();
        let Some(c) = self.clients.get_mut(key) else { return };
        c.phase = Phase::Idle;
        c.gen = gen;
        c.head_timer_armed = false;
        // The exchange's timers (head, deadline, waits) are void now; the
        // idle timer is re-armed below.
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        if !keep_alive || c.peer_gone {
            c.closing = true;
            self.mark_client(key);
        } else {
            // Give memory back between requests: idle connections hold no buffer.
            if c.rbuf.is_empty() {
                self.pool.release(&mut c.rbuf, &mut c.rbuf_carved);
            }
            self.arm_idle(key);
            self.mark_client(key);
            self.pump_client(key);
        }
        // A drain waits for exchanges, not connections: FC keeps its
        // keep-alive connections open while it waits for /pre-stop.
        self.drain_check();
    }

    /// Like `finish_exchange(key, true)`, after an answer that left `left`
    /// bytes of the body unread (`after_exchange` said `Discard`): they are
    /// read and dropped first, within `NOSLATE_FC_LINGER_MS`.
    fn finish_exchange_discarding(&mut self, key: ClientKey, left: u64) {
        let gen = self.clients.fresh_gen();
        let Some(c) = self.clients.get_mut(key) else { return };
        c.phase = Phase::Discard { left };
        c.gen = gen;
        c.head_timer_armed = false;
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        let at = self.now + self.cfg.linger;
        self.client_timer_add(key, at, gen, ClientTimer::Linger);
        self.mark_client(key);
        self.drain_check();
        self.pump_client(key);
    }

    /// The answer is written and the connection is to close. With input
    /// still possibly coming (the client has not closed its side), close
    /// lingering: shut down our side (the client sees the end of the answer)
    /// and read and drop until the client closes or a bound passes.
    fn close_or_linger(&mut self, key: ClientKey) {
        let Some(c) = self.clients.get(key) else { return };
        if !lingers(c.peer_gone, self.cfg.linger, matches!(c.phase, Phase::Linger { .. })) {
            return self.close_client(key);
        }
        // Whatever was still in progress (a response cut short) is over.
        self.end_exchange(key, Ending::Abandoned("connection closed"));
        let now = self.now;
        let gen = self.clients.fresh_gen();
        let c = &mut self.clients[key];
        if c.sock.shutdown(std::net::Shutdown::Write).is_err() {
            return self.close_client(key);
        }
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        c.head_timer_armed = false;
        c.closing = false;
        c.gen = gen;
        self.pool.release(&mut c.rbuf, &mut c.rbuf_carved);
        c.readable = true;
        let until = now + self.cfg.linger;
        c.phase = Phase::Linger { until, last_read: now };
        let at = linger_bound(until, now, self.cfg.linger_timeout);
        self.client_timer_add(key, at, gen, ClientTimer::Linger);
        self.pump_client(key);
    }

    pub(super) fn flush_client(&mut self, key: ClientKey) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let written = c.out.write_to(&mut c.sock);
        // Output waits exactly when the write came back short: only then
        // does the socket need writable interest (sozu's lesson, without a
        // wake-up for every read the peer makes).
        if let Ok(drained) = written {
            if drained == c.write_armed {
                let interest = if drained { Interest::READABLE } else { Interest::READABLE | Interest::WRITABLE };
                if self.poll.registry().reregister(&mut c.sock, key.token(), interest).is_err() {
                    self.client_failed(key);
                    return;
                }
                c.write_armed = !drained;
            }
        }
        match written {
            Ok(true) => {
                if c.closing {
                    self.close_or_linger(key);
                    return;
                }
            }
            Ok(false) => {}
            Err(_) => {
                self.client_failed(key);
                return;
            }
        }
        self.client_drained(key);
    }

    /// The client's output drained: resume what waited on it.
    fn client_drained(&mut self, key: ClientKey) {
        match self.clients.get(key).map(|c| (&c.phase, c.out.len(), c.rbuf.is_empty())) {
            Some((Phase::Invoke(_), _, _)) => self.release_window(key),
            // Pipelined requests held back by a client that was not reading.
            Some((Phase::Idle, out, false)) if out < MAX_PENDING_OUTPUT => self.pump_client(key),
            _ => {}
        }
    }

    /// The client's EOF: finish if nothing is in progress, else abort.
    fn client_eof(&mut self, key: ClientKey) {
        let c = &mut self.clients[key];
        c.peer_gone = true;
        match c.phase {
            Phase::Idle => {
                c.closing = true;
                self.mark_client(key);
            }
            _ => self.client_failed(key),
        }
    }

    /// The client went away or broke: cancel what it started, close.
    fn client_failed(&mut self, key: ClientKey) {
        if let Some(c) = self.clients.get_mut(key) {
            c.peer_gone = true;
            c.out.clear();
        }
        self.end_exchange(key, Ending::Abandoned("client went away"));
        self.close_client(key);
    }

    fn close_client(&mut self, key: ClientKey) {
        if !self.clients.contains(key) {
            return;
        }
        self.end_exchange(key, Ending::Abandoned("connection closed"));
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            for t in c.timer_keys {
                self.timers.cancel(t);
            }
        }
        if self.clients.is_empty() {
            // Give a burst's freed memory back to the system once idle.
            crate::sys::trim_heap();
        }
        self.drain_check();
    }

    /// Add a timer owned by this connection (cancelled when it closes).
    pub(super) fn client_timer_add(&mut self, key: ClientKey, at: Instant, gen: u64, what: ClientTimer) {
        let t = self.timers.add(at, Timer::Client { key, gen, what });
        if let Some(c) = self.clients.get_mut(key) {
            c.timer_keys.push(t);
        }
    }

    pub(super) fn client_timer(&mut self, key: ClientKey, gen: u64, what: ClientTimer) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let owner = if what == ClientTimer::Idle { c.conn_id } else { c.gen };
        if owner != gen || c.closing {
            return;
        }
        match what {
            ClientTimer::Idle => {
                c.idle_timer_pending = false;
                if !matches!(c.phase, Phase::Idle) {
                    // In an exchange: `finish_exchange` re-arms.
                } else if self.now < c.idle_deadline {
                    // Used since the timer was set (or thawed): wait out the rest.
                    c.idle_timer_pending = true;
                    let (at, conn) = (c.idle_deadline, c.conn_id);
                    self.client_timer_add(key, at, conn, ClientTimer::Idle);
                } else if !self.look_before_timeout(key, gen, true) {
                    // A request was waiting: it is being served (and the
                    // exchange re-arms the idle timer), or the client left.
                } else {
                    let c = &self.clients[key];
                    if c.idle_timer_pending {
                        // The look answered a request in place: re-armed.
                    } else if c.rbuf.is_empty() && c.out.is_empty() {
                        self.close_client(key);
                    } else {
                        // Something is still moving: look again later.
                        self.arm_idle(key);
                    }
                }
            }
            ClientTimer::Head => {
                if !matches!(c.phase, Phase::Idle) {
                } else if self.now < c.head_deadline {
                    // Thawed since: the head's time restarted.
                    let at = c.head_deadline;
                    self.client_timer_add(key, at, gen, ClientTimer::Head);
                } else if self.look_before_timeout(key, gen, false) {
                    self.queue_answer(key, &Answer::head_timeout(), false);
                }
            }
            ClientTimer::Linger => self.linger_timer(key, gen),
            ClientTimer::Deadline => self.fail_invoke(key, InvokeError::Deadline),
            ClientTimer::PlaneWait => {
                let step = self.invoke_plane_wait_expired(key);
                self.settle(key, step);
            }
            ClientTimer::Retry => {
                let step = self.invoke_retry_due(key);
                self.settle(key, step);
            }
            ClientTimer::Init => {
                if matches!(c.phase, Phase::Init { .. }) {
                    let answer = Answer::not_initialized(&self.readiness_problem());
                    self.end_exchange(key, Ending::Answer(answer));
                }
            }
        }
    }
}

impl Server {
    /// The bound of a `Discard` or `Linger` phase may have passed. Read what
    /// is there first (that may end it: the client closed, or the rest of a
    /// small body arrived), then close if it still holds.
    fn linger_timer(&mut self, key: ClientKey, gen: u64) {
        if let Some(c) = self.clients.get_mut(key) {
            c.readable = true;
        }
        self.pump_client(key);
        let Some(c) = self.clients.get_mut(key) else { return };
        if c.gen != gen || c.closing {
            return;
        }
        let now = self.now;
        match c.phase {
            Phase::Linger { until, last_read, .. } => {
                let next = linger_bound(until, last_read, self.cfg.linger_timeout);
                if now >= next {
                    self.close_client(key);
                } else {
                    self.client_timer_add(key, next, gen, ClientTimer::Linger);
                }
            }
            // The small rest of the body did not come in time: give up on
            // the connection (lingering, like any close after an answer).
            Phase::Discard { .. } => {
                c.closing = true;
                self.mark_client(key);
            }
            _ => {}
        }
    }
}

/// What a connection does once an exchange has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExchange {
    /// Read the next request.
    Keep,
    /// Read and drop the `left` unread bytes of the body first
    /// (`Phase::Discard`, within `NOSLATE_FC_LINGER_MS`), then go on.
    Discard { left: u64 },
    /// Close once the answer is written (lingering, `close_or_linger`).
    Close,
    /// Answered while its head was being processed (`/pre-freeze`):
    /// `process_client` goes on to a pipelined request itself (no recursion
    /// per pipelined request); `keep` is what the answer says.
    InPlace { keep: bool },
}

impl AfterExchange {
    /// Whether the answer tells the client the connection stays open.
    pub fn keeps(self) -> bool {
        matches!(self, AfterExchange::Keep | AfterExchange::Discard { .. } | AfterExchange::InPlace { keep: true })
    }
}

/// How a connection goes on after an exchange. `rest` is what is left of the
/// request unread, `keep_alive` whether both sides allow another request,
/// `immediate` whether the answer was made while its head was processed,
/// `linger` is `NOSLATE_FC_LINGER_MS` (0: never read on after an answer).
/// A hook is reusable only without a body; an invocation's unread rest is
/// dropped to keep the connection only when it is short and of known length.
pub fn after_exchange(rest: Rest, keep_alive: bool, immediate: bool, linger: Duration) -> AfterExchange {
    match rest {
        Rest::Nothing if immediate => AfterExchange::InPlace { keep: keep_alive },
        // Nothing unread: no lingering needed, whatever the linger time.
        Rest::Nothing | Rest::Body(Some(0)) if keep_alive => AfterExchange::Keep,
        Rest::Body(Some(left)) if keep_alive && !linger.is_zero() && left <= DISCARD_MAX => {
            AfterExchange::Discard { left }
        }
        _ => AfterExchange::Close,
    }
}

/// Whether a connection that is to close lingers (reads and drops input
/// after shutting down its side) instead of closing at once: not when the
/// client is gone, lingering is off, or it lingers already.
pub fn lingers(peer_gone: bool, linger: Duration, lingering: bool) -> bool {
    !peer_gone && !linger.is_zero() && !lingering
}

/// When a lingering close gives up: at `until` (the whole linger time), or
/// `timeout` (`NOSLATE_FC_LINGER_TIMEOUT_MS`) after the last read, whichever
/// comes first.
pub fn linger_bound(until: Instant, last_read: Instant, timeout: Duration) -> Instant {
    until.min(last_read + timeout)
}

/// Whether `ip` is an address of this container (network namespace): a
/// socket can be bound to it. Asked once per accepted connection whose peer
/// is not loopback (FC's, in production), never per request. If the kernel
/// allowed non-local binds (`ip_nonlocal_bind`), every peer would look local
/// and nothing could speak for FC: it fails closed.
fn own_address(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Over the connection limit: a best-effort 503 and close, without
/// registering the socket (the write is one small non-blocking attempt).
fn refuse_overload(mut sock: TcpStream) {
    use std::io::Write;
    let _ = sock.write(&Answer::overloaded().encode(false));
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How an exchange ends, for every kind of rest: keep, drop the rest
    /// first, close, or leave it to the head's own processing.
    #[test]
    fn after_exchange_table() {
        use AfterExchange::*;
        let on = Duration::from_secs(30);
        let off = Duration::ZERO;
        #[rustfmt::skip]
        let table: &[(Rest, bool, bool, Duration, AfterExchange)] = &[
            // rest, keep_alive, immediate, linger => after
            (Rest::Nothing, true, false, on, Keep),
            (Rest::Nothing, false, false, on, Close),
            (Rest::Nothing, true, true, on, InPlace { keep: true }),
            (Rest::Nothing, false, true, on, InPlace { keep: false }),
            (Rest::Nothing, true, false, off, Keep),
            // A body read to the end leaves nothing to drop, linger or not.
            (Rest::Body(Some(0)), true, false, on, Keep),
            (Rest::Body(Some(0)), true, false, off, Keep),
            (Rest::Body(Some(0)), false, false, on, Close),
            // A short rest of known length is dropped, if lingering is on.
            (Rest::Body(Some(1)), true, false, on, Discard { left: 1 }),
            (Rest::Body(Some(DISCARD_MAX)), true, false, on, Discard { left: DISCARD_MAX }),
            (Rest::Body(Some(DISCARD_MAX)), true, true, on, Discard { left: DISCARD_MAX }),
            (Rest::Body(Some(1)), true, false, off, Close),
            (Rest::Body(Some(1)), false, false, on, Close),
            // Too long, or of unknown length (chunked, 100-continue unsent).
            (Rest::Body(Some(DISCARD_MAX + 1)), true, false, on, Close),
            (Rest::Body(None), true, false, on, Close),
            (Rest::Body(None), true, true, on, Close),
        ];
        for &(rest, keep_alive, immediate, linger, want) in table {
            let got = after_exchange(rest, keep_alive, immediate, linger);
            assert_eq!(got, want, "{rest:?} keep_alive={keep_alive} immediate={immediate} linger={linger:?}");
        }
        let keeps = [Keep, Discard { left: 1 }, Close, InPlace { keep: true }, InPlace { keep: false }]
            .map(AfterExchange::keeps);
        assert_eq!(keeps, [true, true, false, true, false]);
    }

    /// Closing after an answer: linger unless the client is gone, lingering
    /// is off or already on; and give up at the first of the two bounds.
    #[test]
    fn linger_table() {
        let on = Duration::from_secs(30);
        #[rustfmt::skip]
        let table: &[(bool, Duration, bool, bool)] = &[
            // peer_gone, linger, lingering => lingers
            (false, on, false, true),
            (true, on, false, false),
            (false, Duration::ZERO, false, false),
            (false, on, true, false),
        ];
        for &(peer_gone, linger, lingering, want) in table {
            assert_eq!(lingers(peer_gone, linger, lingering), want, "{peer_gone} {linger:?} {lingering}");
        }
        let t0 = Instant::now();
        let s = Duration::from_secs;
        #[rustfmt::skip]
        let bounds: &[(Instant, Instant, Duration, Instant)] = &[
            // until, last_read, timeout => bound
            (t0 + s(30), t0, s(5), t0 + s(5)),          // quiet client: the timeout
            (t0 + s(30), t0 + s(28), s(5), t0 + s(30)), // busy client: the whole time
            (t0 + s(30), t0 + s(25), s(5), t0 + s(30)), // both at once
            (t0 + s(5), t0, s(30), t0 + s(5)),          // timeout longer than linger
        ];
        for &(until, last_read, timeout, want) in bounds {
            assert_eq!(linger_bound(until, last_read, timeout), want);
        }
    }
}
