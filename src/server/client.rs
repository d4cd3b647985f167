//! FC's side: HTTP/1.1 connections. One exchange at a time per connection;
//! pipelined requests wait in the read buffer and are answered in order.
//!
//! Lifecycle of a connection (see LIFECYCLE.md): `Idle` (reading a head,
//! idle/head timers armed) → a local answer (hooks, errors), `Init`
//! (`/initialize` waiting for readiness) or `Invoke` (spliced to a plane) →
//! back to `Idle` when the response is written and the request body consumed,
//! or closed when either side cannot continue.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::Interest;

use super::invoke::Invoke;
use super::{client_token, log, ClientTimer, OutQueue, Server, Timer};
use crate::answers;
use crate::http1::request::{BodyFraming, HeadParser, RequestHead, Version};
use crate::http1::response::{self, ResponseFraming};
use crate::http1::{Limits, RequestError};

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

/// Lingering reads drop input into a buffer on the stack, this large.
const LINGER_READ: usize = 64 * 1024;

pub enum Phase {
    Idle,
    /// `/initialize` waiting for the planes and the profile push.
    Init {
        keep_alive: bool,
        request_id: String,
    },
    /// `/pre-stop` waiting for in-flight invokes to drain.
    PreStop {
        keep_alive: bool,
        request_id: String,
    },
    Invoke(Box<Invoke>),
    /// Answered before the request body was read; the rest of the body is
    /// small and of known length: read and drop it, then the next request.
    Discard {
        left: u64,
    },
    /// Lingering close (nginx's `lingering_close`): the answer is written and
    /// our side shut down; input is read and dropped until the client closes,
    /// or a bound passes (no input for `NOSLATE_FC_LINGER_TIMEOUT_MS`, all of
    /// `NOSLATE_FC_LINGER_MS`, more than `NOSLATE_FC_LINGER_BYTES`). Closing
    /// with unread input would make the kernel send RST, and a client still
    /// uploading would lose the answer (`Connection reset by peer`).
    Linger {
        until: Instant,
        last_read: Instant,
        bytes_left: u64,
    },
}

pub struct Client {
    /// Every timer added for this connection that may still be queued;
    /// cancelled when the exchange ends or the connection closes.
    pub timer_keys: Vec<crate::timer::TimerKey>,
    pub sock: TcpStream,
    /// Changes with every exchange, so timers of a finished exchange are void.
    pub gen: u64,
    pub rbuf: BytesMut,
    pub out: OutQueue,
    pub parser: HeadParser,
    pub phase: Phase,
    /// The client closed its side (EOF) or failed.
    pub peer_gone: bool,
    /// The socket may have unread input: set by a readable event, cleared
    /// by a read that came back short (the socket was drained then, and an
    /// edge-triggered poll reports any byte that arrives later), so that a
    /// read that would only say EAGAIN is not made.
    pub readable: bool,
    /// The poll said the peer closed its side: a short read does not mean
    /// drained then (the end of stream is still to be read, and no further
    /// event will announce it).
    pub read_closed: bool,
    /// Close once `out` is flushed.
    pub closing: bool,
    /// The slowloris timer of the current head is armed.
    pub head_timer_armed: bool,
    /// The head must be complete by then (408); moved on by a thaw.
    pub head_deadline: Instant,
    /// Fixed for the connection's life (its first generation): the idle
    /// timer belongs to the connection, not to one exchange.
    pub conn_id: u64,
    /// An idle keep-alive connection is closed once this passes.
    pub idle_deadline: Instant,
    /// The connection's one idle timer is in the timer set. Re-arming per
    /// exchange would leave an entry behind for every request for the whole
    /// idle timeout (600 s by default): memory growing with the request rate.
    pub idle_timer_pending: bool,
}

impl Server {
    pub(super) fn accept(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    if self.clients.len() >= self.max_connections {
                        refuse_overload(sock);
                        continue;
                    }
                    self.add_client(sock);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the pending connection stays in
                    // the backlog; stop accepting briefly instead of spinning.
                    eprintln!("noslate-fc: accept failed: {e}; pausing accepts for 100 ms");
                    self.accept_paused = true;
                    self.timers.add(Instant::now() + std::time::Duration::from_millis(100), Timer::ResumeAccept);
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, mut sock: TcpStream) {
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if self.poll.registry().register(&mut sock, client_token(key), Interest::READABLE | Interest::WRITABLE).is_err()
        {
            return;
        }
        let gen = {
            self.next_gen += 1;
            self.next_gen
        };
        entry.insert(Client {
            sock,
            gen,
            rbuf: BytesMut::new(),
            out: OutQueue::default(),
            parser: HeadParser::default(),
            phase: Phase::Idle,
            peer_gone: false,
            readable: true,
            read_closed: false,
            closing: false,
            head_timer_armed: false,
            head_deadline: Instant::now(),
            conn_id: gen,
            idle_deadline: Instant::now(),
            idle_timer_pending: false,
            timer_keys: Vec::new(),
        });
        self.arm_idle(key);
    }

    /// Restart the idle period; add the connection's idle timer only if it
    /// is not pending already (when it fires early, it looks again).
    fn arm_idle(&mut self, key: usize) {
        let at = Instant::now() + self.cfg.idle_timeout;
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

    pub(super) fn client_event(&mut self, key: usize, readable: bool, read_closed: bool, writable: bool) {
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
    pub(super) fn pump_client(&mut self, key: usize) {
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

    fn wants_input(&self, key: usize) -> bool {
        let c = &self.clients[key];
        if c.rbuf.len() >= MAX_BUFFERED_INPUT {
            return false;
        }
        match &c.phase {
            Phase::Idle => c.out.len() < MAX_PENDING_OUTPUT,
            // A body only as the stream takes it; after the body, a little,
            // to notice a client that goes away (or pipelines).
            Phase::Invoke(inv) if !inv.body_done => inv.wants_body(self),
            Phase::Invoke(_) => c.rbuf.len() < HEAD_READ,
            // Keep reading a little to notice a client that goes away.
            Phase::Init { .. } | Phase::PreStop { .. } => c.rbuf.len() < HEAD_READ,
            Phase::Discard { .. } | Phase::Linger { .. } => true,
        }
    }

    fn read_client(&mut self, key: usize) -> io::Result<usize> {
        // Only a body being forwarded needs the large buffer; an invoke that
        // waits for its response reads just to notice EOF (or pipelining).
        let capacity = match &self.clients[key].phase {
            Phase::Invoke(inv) => inv.send_capacity(self),
            _ => 0,
        };
        let body = capacity > 0;
        let c = &mut self.clients[key];
        if let Phase::Linger { last_read, bytes_left, .. } = &mut c.phase {
            let mut sink = [0u8; LINGER_READ];
            let n = io::Read::read(&mut c.sock, &mut sink)?;
            c.readable = n == sink.len() || c.read_closed;
            *last_read = Instant::now();
            match bytes_left.checked_sub(n as u64) {
                Some(left) => *bytes_left = left,
                // Still sending past the bound: cut (the caller closes).
                None => return Err(io::Error::other("lingering close: byte bound passed")),
            }
            return Ok(n);
        }
        if !body && c.rbuf.is_empty() {
            // Idle, or waiting for a response: most reads find nothing (or
            // EOF), so read onto the stack and allocate only for what came.
            // At most one head's worth (HEAD_READ) is copied.
            let mut stack = [0u8; HEAD_READ];
            let n = io::Read::read(&mut c.sock, &mut stack)?;
            c.readable = n == stack.len() || c.read_closed;
            if n > 0 {
                // Exactly what came: the head's bytes stay pinned for the
                // whole exchange, and usually they are all there is.
                c.rbuf = BytesMut::from(&stack[..n]);
            }
            return Ok(n);
        }
        // A body is read only as far as the data plane's windows take it at
        // once (at least BODY_READ_MIN, to keep syscalls few): the rest waits
        // in the kernel, not in our memory.
        let want = if body { capacity.clamp(BODY_READ_MIN, BODY_READ) } else { HEAD_READ };
        if c.rbuf.capacity() - c.rbuf.len() < want / 4 {
            c.rbuf.reserve(want);
        }
        let asked = want.min(c.rbuf.capacity() - c.rbuf.len());
        let n = crate::sys::read_into(c.sock.as_raw_fd(), &mut c.rbuf, want)?;
        c.readable = n == asked || c.read_closed;
        Ok(n)
    }

    /// Parse and dispatch whatever complete input is buffered.
    fn process_client(&mut self, key: usize) {
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
                    match c.parser.parse(&mut c.rbuf, &limits) {
                        Ok(Some(head)) => {
                            c.parser = HeadParser::default();
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
                    self.pump_invoke_body(key);
                    return;
                }
                Phase::Init { .. } | Phase::PreStop { .. } | Phase::Linger { .. } => return,
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
    fn arm_head_timer(&mut self, key: usize) {
        let c = &mut self.clients[key];
        if c.head_timer_armed {
            return;
        }
        c.head_timer_armed = true;
        let gen = c.gen;
        let at = Instant::now() + self.cfg.header_timeout;
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
                Phase::Invoke(inv) if inv.conn.is_none() => {
                    inv.plane_wait_until = inv.plane_wait_until.max(now + wait);
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
    fn look_before_timeout(&mut self, key: usize, gen: u64, is_idle_timer: bool) -> bool {
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
    fn refuse(&mut self, key: usize, e: &RequestError) {
        let status = e.status();
        self.answer(key, status, &answers::error_body(e.reason()), &[], false);
    }

    /// Queue a complete local response; `keep_alive` false closes after it.
    pub(super) fn answer(&mut self, key: usize, status: u16, body: &[u8], extra: &[(&[u8], &[u8])], keep_alive: bool) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(extra.len() + 1);
        headers.push((b"content-type", b"application/json"));
        headers.extend_from_slice(extra);
        let mut head = BytesMut::with_capacity(128 + body.len());
        response::write_head(&mut head, status, &headers, ResponseFraming::Length(body.len() as u64), keep_alive);
        head.extend_from_slice(body);
        c.out.push(head.freeze());
        if !keep_alive {
            c.closing = true;
        }
        self.mark_client(key);
    }

    /// Route one request head (fc-protocol.md §2, §4).
    fn on_request(&mut self, key: usize, head: RequestHead) {
        self.clients[key].gen = self.gen();
        // The head arrived: its slowloris timer (and any other of the last
        // exchange) is void. Local answers never pass through
        // `finish_exchange`, so the idle period restarts here too.
        let c = &mut self.clients[key];
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        self.arm_idle(key);
        let keep_alive = head.keep_alive();
        // A routing header given twice: which copy FC set cannot be known
        // (`/pre-stop` then `/http-invoke` must not run the hook), so nothing
        // runs; the body is not read, so the connection closes.
        if let Some(name) = crate::route::repeated_single_header(head.headers()) {
            let body = answers::error_body(&format!("{name} must appear at most once"));
            self.answer(key, 400, &body, &[(b"x-fc-status", b"404")], false);
            return;
        }
        let control = head.header("x-fc-control-path").map(<[u8]>::to_vec);
        let route = match control.as_deref() {
            Some(b"/invoke") => Route::Event,
            Some(b"/http-invoke") => Route::Http,
            Some(b"/initialize") => Route::Initialize,
            Some(b"/pre-freeze") => Route::PreFreeze,
            Some(b"/pre-stop") => Route::PreStop,
            Some(_) => Route::BadControlPath,
            None => match (head.method(), head.path()) {
                (b"POST", b"/invoke") => Route::Event,
                (b"POST", b"/initialize") => Route::Initialize,
                (b"GET", b"/pre-freeze") => Route::PreFreeze,
                (b"GET", b"/pre-stop") => Route::PreStop,
                (_, b"/initialize") => Route::WrongMethod(b"POST"),
                (_, b"/pre-freeze") => Route::WrongMethod(b"GET"),
                (_, b"/pre-stop") => Route::WrongMethod(b"GET"),
                (_, b"/invoke") => Route::WrongMethod(b"POST"),
                _ => Route::Http,
            },
        };
        // Local answers never read the body: keep the connection only when
        // there is none to skip.
        let reusable = keep_alive && head.framing() == BodyFraming::None;
        let request_id = request_id(&head);
        match route {
            Route::Event | Route::Http => self.start_invoke(key, head, route == Route::Event, request_id),
            Route::PreFreeze => {
                // FC freezes the instance after this answer (fc-protocol.md §2).
                self.pre_freeze_at = Some(Instant::now());
                log!(self, "FC PreFreeze Start RequestId: {request_id}");
                self.answer(key, 200, b"{\"preFreeze\":\"ok\"}", &[(b"x-fc-status", b"200")], reusable);
                log!(self, "FC PreFreeze End RequestId: {request_id}");
                self.log.flush();
            }
            Route::PreStop => {
                log!(self, "FC PreStop Start RequestId: {request_id}");
                self.clients[key].phase = Phase::PreStop { keep_alive: reusable, request_id };
                self.begin_shutdown("/pre-stop");
            }
            Route::Initialize => {
                log!(self, "FC Initialize Start RequestId: {request_id}");
                let timeout = head
                    .header("x-fc-initialization-timeout")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|s| *s > 0)
                    .map(std::time::Duration::from_secs)
                    .unwrap_or(self.cfg.init_timeout);
                self.clients[key].phase = Phase::Init { keep_alive: reusable, request_id };
                let gen = self.clients[key].gen;
                self.client_timer_add(key, Instant::now() + timeout, gen, ClientTimer::Init);
                self.check_initialize();
            }
            Route::WrongMethod(allow) => {
                let body = answers::error_body("method not allowed on this path");
                self.answer(key, 405, &body, &[(b"allow", allow)], reusable);
            }
            Route::BadControlPath => {
                let body = answers::error_body("unknown x-fc-control-path");
                self.answer(key, 400, &body, &[], false);
            }
        }
    }

    /// The current exchange is over; go back to reading the next request.
    pub(super) fn finish_exchange(&mut self, key: usize, keep_alive: bool) {
        let gen = self.gen();
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
                c.rbuf = BytesMut::new();
            }
            self.arm_idle(key);
            self.mark_client(key);
            self.pump_client(key);
        }
        // A drain waits for exchanges, not connections: FC keeps its
        // keep-alive connections open while it waits for /pre-stop.
        self.after_client_closed();
    }

    /// Can an exchange answered before its body was read keep the
    /// connection? `left` is the unread rest of the body (None: unknown, as
    /// with chunked coding).
    pub(super) fn can_discard(&self, left: Option<u64>) -> bool {
        !self.cfg.linger.is_zero() && left.is_some_and(|n| n <= DISCARD_MAX)
    }

    /// Like `finish_exchange(key, true)`, after an answer that left `left`
    /// bytes of the body unread (`can_discard` said yes): they are read and
    /// dropped first, within `NOSLATE_FC_LINGER_MS`.
    pub(super) fn finish_exchange_discarding(&mut self, key: usize, left: u64) {
        if left == 0 {
            return self.finish_exchange(key, true);
        }
        let gen = self.gen();
        let Some(c) = self.clients.get_mut(key) else { return };
        c.phase = Phase::Discard { left };
        c.gen = gen;
        c.head_timer_armed = false;
        for t in c.timer_keys.drain(..) {
            self.timers.cancel(t);
        }
        c.idle_timer_pending = false;
        let at = Instant::now() + self.cfg.linger;
        self.client_timer_add(key, at, gen, ClientTimer::Linger);
        self.mark_client(key);
        self.after_client_closed();
        self.pump_client(key);
    }

    /// The answer is written and the connection is to close. With input
    /// still possibly coming (the client has not closed its side), close
    /// lingering: shut down our side (the client sees the end of the answer)
    /// and read and drop until the client closes or a bound passes.
    fn close_or_linger(&mut self, key: usize) {
        let Some(c) = self.clients.get(key) else { return };
        if c.peer_gone || self.cfg.linger.is_zero() || matches!(c.phase, Phase::Linger { .. }) {
            return self.close_client(key);
        }
        // Whatever was still in progress (a response cut short) is over.
        self.abort_invoke(key, "connection closed");
        let now = Instant::now();
        let gen = self.gen();
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
        c.rbuf = BytesMut::new();
        c.readable = true;
        c.phase = Phase::Linger { until: now + self.cfg.linger, last_read: now, bytes_left: self.cfg.linger_bytes };
        let at = (now + self.cfg.linger_timeout).min(now + self.cfg.linger);
        self.client_timer_add(key, at, gen, ClientTimer::Linger);
        self.pump_client(key);
    }

    pub(super) fn flush_client(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else { return };
        match c.out.write_to(&mut c.sock) {
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

    /// The client's EOF: finish if nothing is in progress, else abort.
    fn client_eof(&mut self, key: usize) {
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
    pub(super) fn client_failed(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key) {
            c.peer_gone = true;
            c.out.clear();
        }
        self.abort_invoke(key, "client went away");
        self.close_client(key);
    }

    pub(super) fn close_client(&mut self, key: usize) {
        if !self.clients.contains(key) {
            return;
        }
        self.abort_invoke(key, "connection closed");
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
        self.after_client_closed();
    }

    /// Add a timer owned by this connection (cancelled when it closes).
    pub(super) fn client_timer_add(&mut self, key: usize, at: Instant, gen: u64, what: ClientTimer) {
        let t = self.timers.add(at, Timer::Client { key, gen, what });
        if let Some(c) = self.clients.get_mut(key) {
            c.timer_keys.push(t);
        }
    }

    pub(super) fn client_timer(&mut self, key: usize, gen: u64, what: ClientTimer) {
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
                } else if Instant::now() < c.idle_deadline {
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
                } else if Instant::now() < c.head_deadline {
                    // Thawed since: the head's time restarted.
                    let at = c.head_deadline;
                    self.client_timer_add(key, at, gen, ClientTimer::Head);
                } else if self.look_before_timeout(key, gen, false) {
                    let body = answers::error_body("request head not received in time");
                    self.answer(key, 408, &body, &[], false);
                }
            }
            ClientTimer::Linger => self.linger_timer(key, gen),
            ClientTimer::Deadline => self.invoke_deadline(key),
            ClientTimer::PlaneWait => self.invoke_plane_wait_expired(key),
            ClientTimer::Init => {
                if let Phase::Init { keep_alive, request_id } = std::mem::replace(&mut c.phase, Phase::Idle) {
                    let why = self.readiness_problem();
                    let mut body = String::from("{\"initialized\":false,\"reason\":");
                    answers::json_string(&mut body, &why);
                    body.push('}');
                    self.answer(key, 404, body.as_bytes(), &[(b"x-fc-status", b"404")], keep_alive);
                    log!(self, "FC Initialize End RequestId: {request_id}");
                    self.finish_exchange(key, keep_alive);
                }
            }
        }
    }
}

impl Server {
    /// The bound of a `Discard` or `Linger` phase may have passed. Read what
    /// is there first (that may end it: the client closed, or the rest of a
    /// small body arrived), then close if it still holds.
    fn linger_timer(&mut self, key: usize, gen: u64) {
        if let Some(c) = self.clients.get_mut(key) {
            c.readable = true;
        }
        self.pump_client(key);
        let Some(c) = self.clients.get_mut(key) else { return };
        if c.gen != gen || c.closing {
            return;
        }
        let now = Instant::now();
        match c.phase {
            Phase::Linger { until, last_read, .. } => {
                let next = until.min(last_read + self.cfg.linger_timeout);
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Event,
    Http,
    Initialize,
    PreFreeze,
    PreStop,
    WrongMethod(&'static [u8]),
    BadControlPath,
}

/// FC's request id, or one we make up (time + counter) for local callers.
fn request_id(head: &RequestHead) -> String {
    if let Some(id) = head.header("x-fc-request-id").and_then(|v| std::str::from_utf8(v).ok()) {
        if !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic()) {
            return id.to_string();
        }
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // getpid(2) once, not per request.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = crate::sys::epoch_millis() as u64;
    format!("nfc-{t:x}-{}-{n}", PID.get_or_init(std::process::id))
}

/// Over the connection limit: a best-effort 503 and close, without
/// registering the socket (the write is one small non-blocking attempt).
fn refuse_overload(mut sock: TcpStream) {
    use std::io::Write;
    let body = answers::error_body("too many connections");
    let mut msg = BytesMut::new();
    response::write_head(
        &mut msg,
        503,
        &[(b"content-type", b"application/json")],
        ResponseFraming::Length(body.len() as u64),
        false,
    );
    msg.extend_from_slice(&body);
    let _ = sock.write(&msg);
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// HTTP/1.0 clients cannot take chunked coding.
pub fn supports_chunked(head: &RequestHead) -> bool {
    head.version() == Version::Http11
}
