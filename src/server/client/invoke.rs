//! The invoke splice: one FC request ↔ one `PushServer/invoke` stream.
//!
//! The protocol is `fc::Invocation`'s (first message, body messages,
//! response bytes); this file ties it to a plane connection and a stream and
//! moves bytes as the sockets allow. Every step returns a [`Step`] — go on,
//! done, or failed with a typed error — and never changes the client's phase
//! or writes an FC marker: `client.rs` (`Server::settle`, `end_exchange`)
//! does, in one place.
//!
//! Request body bytes go from the client's read buffer into DATA frames as
//! `[gRPC prefix + field-7 key and length][slice]` — the slice is the read
//! buffer itself (a refcount, no copy). Response pieces become the HTTP/1.1
//! response, again as slices.
//!
//! Backpressure both ways: body bytes are read from the client only while the
//! stream has send capacity (`h2::ClientConnection::send_capacity`: what the
//! windows take at once, or a small queue allowance under a budget shared by
//! all streams), so request memory is bounded by the h2 budgets, not by the
//! number of clients — except that an invoke parked for readiness holds a
//! body of at most `INLINE_BODY_MAX` (64 KiB each, within
//! NOSLATE_FC_MAX_CONNECTIONS), to send it whole in the first message, which
//! is kept for a retry. Above `CLIENT_HIGH_WATER` bytes queued to the client
//! we stop returning flow-control window to the data plane, so response
//! memory is bounded by the stream and connection windows.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::fc::dispatch::RequestId;
use crate::fc::{dispatch, invocation, Invocation, InvokeError, Now, PlaneFault, Progress, RequestSink};
use crate::grpc;
use crate::h2::{ClientConnection, HeaderList, OpenError, StreamRef};
use crate::http1::request::RequestHead;
use crate::http1::response;
use crate::http1::RequestError;
use crate::route::Origin;
use crate::server::{ClientKey, ClientTimer, ConnKey, Server, StreamNews};

/// Stop returning window to the data plane while this much waits for the client.
const CLIENT_HIGH_WATER: usize = 256 * 1024;

/// What an invoke step came to.
#[derive(Debug)]
pub enum Step {
    /// Still in progress.
    Continue,
    /// Both directions are done: the response is complete.
    Done,
    /// The invocation failed.
    Failed(InvokeError),
    /// The request body broke its own framing.
    BodyRefused(RequestError),
}

/// An invocation refused before it started (no function, draining).
pub struct Refused {
    pub head: RequestHead,
    pub origin: Origin,
    pub request_id: RequestId,
    pub error: InvokeError,
}

/// An invoke's request stream, as the FC core sends on it
/// (`fc::RequestSink`).
struct StreamSink<'a> {
    h2: &'a mut ClientConnection,
    stream: StreamRef,
}

impl RequestSink for StreamSink<'_> {
    fn send(&mut self, bytes: Bytes) {
        self.h2.send_data_more(self.stream, bytes);
    }

    fn flush(&mut self, end: bool) {
        if end {
            self.h2.send_end(self.stream);
        } else {
            self.h2.flush_stream(self.stream);
        }
    }

    fn capacity(&self) -> usize {
        self.h2.send_capacity(self.stream)
    }

    fn queued(&self) -> usize {
        self.h2.queued(self.stream)
    }

    fn want_capacity(&mut self) {
        self.h2.want_capacity(self.stream);
    }
}

/// Where an invoke's request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Nowhere yet: parked for readiness, or between a failed stream and
    /// its retry.
    Detached,
    /// A stream on a data-plane connection.
    Attached { conn: ConnKey, stream: StreamRef },
}

impl Upstream {
    pub fn is_attached(self) -> bool {
        matches!(self, Upstream::Attached { .. })
    }
}

/// An invoking client's state: the FC core's `Invocation` and what ties it
/// to a data plane.
pub struct Invoke {
    pub call: Invocation,
    pub upstream: Upstream,
    /// DATA bytes received but not yet credited back to the data plane.
    pub unreleased: usize,
    pub retries: u8,
    /// Every wait for readiness (a data plane; for a function of the
    /// profiles, the profiles in force, or a retry after the data plane did
    /// not know it) ends by this time: set when the invoke first waits, so
    /// all its waits share one `NOSLATE_FC_READY_WAIT_MS`; moved on by a thaw
    /// (`Server::thaw`).
    pub wait_until: Option<Instant>,
    /// A `PlaneWait` timer is pending for this invoke.
    wait_armed: bool,
    /// The last pause before retrying a function the data plane did not know.
    unknown_backoff: Duration,
}

impl Invoke {
    pub fn wants_body(&self, server: &Server) -> bool {
        self.send_capacity(server) > 0
    }

    /// Body bytes to read while parked (no stream): a Content-Length body
    /// that fits the first message is read while the invoke waits, so it
    /// rides in that message, which the invocation keeps — a stream the
    /// data plane refuses can then be retried without losing a byte
    /// (`Server::retry_unknown_function`). Bounded by `INLINE_BODY_MAX`.
    pub fn parked_body_wanted(&self, buffered: usize) -> usize {
        if self.upstream.is_attached() {
            return 0;
        }
        self.call.body.inline_missing(buffered)
    }

    /// How much more body the stream can send at once (0 once the body is
    /// done, or while there is no stream). Body bytes are read from the
    /// client only while this is above zero, so a data plane that takes
    /// them slowly keeps them in the client's socket, not in our memory.
    pub fn send_capacity(&self, server: &Server) -> usize {
        if self.call.body.is_done() {
            return 0;
        }
        match self.upstream {
            Upstream::Attached { conn, stream } => server.planes.send_capacity(conn, stream),
            Upstream::Detached => 0,
        }
    }
}

impl Server {
    /// An invocation for this head: its function and deadline, or why not.
    /// (Refusals are rare: boxed, to keep the common result small.)
    pub(super) fn new_invoke(
        &self,
        head: RequestHead,
        origin: Origin,
        request_id: RequestId,
    ) -> Result<Invoke, Box<Refused>> {
        let choice = dispatch::choose(&head, origin, &self.cfg.routing, self.life.default_function.as_deref());
        let choice = match choice {
            Ok(choice) if !self.life.draining() => choice,
            Ok(_) => return Err(Box::new(Refused { head, origin, request_id, error: InvokeError::Draining })),
            Err(error) => return Err(Box::new(Refused { head, origin, request_id, error: error.into() })),
        };
        let timeout = dispatch::function_timeout(&head, origin, self.cfg.timeout);
        // The turn's monotonic clock; the wall clock only for the deadline field.
        let epoch_ms = self.epoch_ms.get().unwrap_or_else(|| {
            let ms = crate::sys::epoch_millis();
            self.epoch_ms.set(Some(ms));
            ms
        });
        let now = Now { instant: self.now, epoch_ms };
        let call = Invocation::new(head, origin, request_id, choice, timeout, now, self.cfg.max_body);
        Ok(Invoke {
            call,
            upstream: Upstream::Detached,
            unreleased: 0,
            retries: 0,
            wait_until: None,
            wait_armed: false,
            unknown_backoff: Duration::ZERO,
        })
    }

    /// Put a waiting invoke on a data plane connection, or wait for one (and,
    /// for a function of the profiles, for the profiles to be in force).
    pub(super) fn dispatch_invoke(&mut self, key: ClientKey) -> Step {
        let Some(inv) = self.clients.get(key).and_then(|c| c.phase.invoke()) else { return Step::Continue };
        if inv.upstream.is_attached() {
            // Already on a stream (a wake-up that came twice).
            return Step::Continue;
        }
        let held = self.awaits_profiles(&inv.call);
        let Some(conn) = (if held { None } else { self.pick_data_conn() }) else {
            return self.park_invoke(key);
        };
        match self.open_invoke_stream(key, conn) {
            Ok(()) => self.pump_invoke_body(key),
            Err(e) => Step::Failed(InvokeError::PlaneLost(PlaneFault::Open(e))),
        }
    }

    /// Whether this invocation must wait for the profiles: its function is
    /// one of NOSLATE_FUNCTION_PROFILES and they are not in force. Other
    /// names go straight through (Noslated's 404 is their right answer);
    /// so do services, whose function Noslated chooses.
    fn awaits_profiles(&self, call: &Invocation) -> bool {
        !call.choice.service && !self.profiles_in_force() && self.life.in_profiles(call.choice.name.as_str())
    }

    /// Wait for readiness: woken by `wake_plane_waiters`, given up by the
    /// `PlaneWait` timer at `wait_until`.
    fn park_invoke(&mut self, key: ClientKey) -> Step {
        let wait = self.cfg.ready_wait;
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let gen = c.gen;
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        let until = *inv.wait_until.get_or_insert(self.now + wait);
        if !std::mem::replace(&mut inv.wait_armed, true) {
            self.client_timer_add(key, until, gen, ClientTimer::PlaneWait);
        }
        self.planes.park(key, gen);
        Step::Continue
    }

    /// HEADERS + the first `InvokeRequest` (with the body when it is small
    /// and buffered, and END_STREAM when that is all).
    fn open_invoke_stream(&mut self, key: ClientKey, conn: ConnKey) -> Result<(), OpenError> {
        let forward_credentials = self.cfg.forward_credentials;
        let Some(c) = self.clients.get_mut(key) else { return Ok(()) };
        let gen = c.gen;
        let Some(inv) = c.phase.invoke_mut() else { return Ok(()) };
        let timeout = inv.call.grpc_timeout(self.now);
        let fields = grpc::request_fields(inv.call.grpc_path(), &timeout);
        let stream = self.planes.open_invoke(conn, &fields, key, gen)?;
        inv.upstream = Upstream::Attached { conn, stream };
        let h2 = self.planes.h2(conn).expect("the stream was just opened on it");
        let mut sink = StreamSink { h2, stream };
        let expects_continue = inv.call.start(&mut sink, &mut c.rbuf, forward_credentials, &mut self.scratch);
        self.mark_conn(conn);
        if expects_continue {
            self.clients[key].out.push(Bytes::from_static(response::CONTINUE));
            self.mark_client(key);
        }
        Ok(())
    }

    /// Move request body bytes from the client's buffer into the stream, as
    /// long as the stream takes them (`Invocation::pump_body` decides what
    /// goes and where the request ends).
    pub(super) fn pump_invoke_body(&mut self, key: ClientKey) -> Step {
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        let Upstream::Attached { conn, stream } = inv.upstream else { return Step::Continue };
        if inv.call.body.is_done() {
            // END_STREAM went out with the last of it.
            return Step::Continue;
        }
        let Some(h2) = self.planes.h2(conn) else { return Step::Continue };
        let result = inv.call.pump_body(&mut StreamSink { h2, stream }, &mut c.rbuf, &mut self.scratch);
        let body_done = inv.call.body.is_done();
        if body_done && c.rbuf.is_empty() {
            // The body's read buffer now lives only as long as its slices
            // wait to be written; the wait for the answer holds none.
            self.pool.release(&mut c.rbuf, &mut c.rbuf_carved);
        }
        let done = body_done && inv.call.response.writer.state() == crate::fc::Resp::Done;
        self.mark_conn(conn);
        match result {
            Err(e) => Step::BodyRefused(e),
            Ok(()) if done => Step::Done,
            Ok(()) => Step::Continue,
        }
    }

    /// HEADERS on the invoke stream: the gRPC response head, or trailers.
    pub(super) fn invoke_headers(&mut self, key: ClientKey, fields: &HeaderList, end_stream: bool) -> Step {
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        match inv.call.response.on_headers(fields, end_stream, &mut c.out) {
            Ok(Progress::Continue) => Step::Continue,
            Ok(Progress::Done) => {
                // A function that answered before the whole body arrived:
                // the rest cannot be forwarded any more, so the connection
                // cannot be reused (`end_exchange` closes it then).
                self.mark_client(key);
                Step::Done
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// DATA on the invoke stream: response bytes for the client.
    pub(super) fn invoke_data(&mut self, key: ClientKey, data: Bytes) -> Step {
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        inv.unreleased += data.len();
        let result = inv.call.response.on_data(data, &mut c.out, &mut self.scratch, &mut self.pieces, &mut self.pool);
        self.mark_client(key);
        if let Err(e) = result {
            if e.is_function_unknown() && self.retry_unknown_function(key) {
                return Step::Continue;
            }
            return Step::Failed(e);
        }
        self.release_window(key);
        Step::Continue
    }

    /// Unhook the invoke's stream: forget the owner, credit what was read,
    /// and cancel it unless it ended normally in both directions (a finished
    /// stream is never reset: Node counts resets, docs/noslated-protocol.md §3.4).
    pub(super) fn detach_stream(&mut self, inv: &Invoke) {
        let Upstream::Attached { conn, stream } = inv.upstream else { return };
        let cancel = !(inv.call.response.ended_ok() && inv.call.body.is_done());
        if !self.planes.let_go(conn, stream, inv.unreleased, cancel) {
            return;
        }
        self.mark_conn(conn);
        self.conn_maybe_retire(conn);
    }

    /// Give window back to the data plane once the client has taken the bytes.
    pub(super) fn release_window(&mut self, key: ClientKey) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let queued = c.out.len();
        let Some(inv) = c.phase.invoke_mut() else { return };
        if inv.unreleased == 0 || queued > CLIENT_HIGH_WATER {
            return;
        }
        let Upstream::Attached { conn, stream } = inv.upstream else { return };
        if let Some(h2) = self.planes.h2(conn) {
            h2.release(stream, inv.unreleased);
            inv.unreleased = 0;
            self.mark_conn(conn);
        }
    }

    /// The readiness wait may be over: fail a parked invoke (or re-arm after
    /// a thaw). An invoke on a stream by now lets the timer go; it is armed
    /// again if the invoke waits again.
    pub(super) fn invoke_plane_wait_expired(&mut self, key: ClientKey) -> Step {
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let gen = c.gen;
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        inv.wait_armed = false;
        let until = match inv.wait_until {
            Some(until) if !inv.upstream.is_attached() => until,
            _ => return Step::Continue,
        };
        if self.now < until {
            // Thawed since: the wait restarted (the plane was stopped too).
            inv.wait_armed = true;
            self.client_timer_add(key, until, gen, ClientTimer::PlaneWait);
            return Step::Continue;
        }
        self.planes.unpark(key, gen);
        let Some(inv) = self.clients.get(key).and_then(|c| c.phase.invoke()) else { return Step::Continue };
        if self.awaits_profiles(&inv.call) {
            return Step::Failed(InvokeError::ProfilesNotReady(self.readiness_problem()));
        }
        Step::Failed(InvokeError::NoDataPlane)
    }

    /// The data plane answered that it has no such function, for a function
    /// of the profiles: it has not got them yet, whatever the control plane
    /// said (a data plane restarted and not yet reached by the control
    /// plane; a push the control plane failed and only logged). Retry after
    /// a pause (`fc::invocation::unknown_function_pause`) within the
    /// readiness wait, if nothing of the request is lost by it: Noslated
    /// refused before giving anything to a function, and the invocation still
    /// holds every byte it sent (`Invocation::retryable`: the first message,
    /// inline body included; no body message went out). The stream is
    /// cancelled (Noslated never ends it). False: answer with the 404.
    fn retry_unknown_function(&mut self, key: ClientKey) -> bool {
        let now = self.now;
        let wait = self.cfg.ready_wait;
        let Some(c) = self.clients.get_mut(key) else { return false };
        let gen = c.gen;
        let Some(inv) = c.phase.invoke_mut() else { return false };
        let choice = &inv.call.choice;
        if choice.service || !self.life.in_profiles(choice.name.as_str()) || !inv.call.retryable() {
            return false;
        }
        let until = *inv.wait_until.get_or_insert(now + wait);
        let Some(pause) = invocation::unknown_function_pause(now, until, inv.unknown_backoff) else { return false };
        if inv.unknown_backoff.is_zero() {
            // Once per invoke: a restarted data plane can refuse every
            // invoke in flight a few times over.
            eprintln!(
                "noslate-fc: invoke {}: the data plane does not know {} yet; retrying for up to {:?}",
                inv.call.request_id,
                choice.name.as_str(),
                until - now
            );
        }
        inv.unknown_backoff = pause;
        let upstream = std::mem::replace(&mut inv.upstream, Upstream::Detached);
        let unreleased = std::mem::take(&mut inv.unreleased);
        inv.call.response.restart();
        if let Upstream::Attached { conn, stream } = upstream {
            if self.planes.let_go(conn, stream, unreleased, true) {
                self.mark_conn(conn);
                self.conn_maybe_retire(conn);
            }
        }
        self.client_timer_add(key, now + pause, gen, ClientTimer::Retry);
        true
    }

    /// The pause after an unknown function is over: dispatch again (it
    /// waits for the profiles again if they are not in force).
    pub(super) fn invoke_retry_due(&mut self, key: ClientKey) -> Step {
        let parked =
            self.clients.get(key).and_then(|c| c.phase.invoke()).is_some_and(|inv| !inv.upstream.is_attached());
        if !parked {
            return Step::Continue;
        }
        let step = self.dispatch_invoke(key);
        if matches!(step, Step::Continue) {
            // Body bytes left in the socket while the stream was gone.
            self.pump_client(key);
        }
        step
    }

    /// Invokes parked until a data plane appears (or the profiles are in
    /// force): try them now.
    pub(in crate::server) fn wake_plane_waiters(&mut self) {
        let waiting = self.planes.take_parked();
        for (key, gen) in waiting {
            let still = self.clients.get(key).is_some_and(|c| c.gen == gen);
            if still {
                let step = self.dispatch_invoke(key);
                self.settle(key, step);
                // A parked invoke stopped reading its body; the rest is
                // still in the socket, and an edge-triggered poll will not
                // say so again.
                self.pump_client(key);
            }
        }
    }

    /// News from the stream `(conn, stream)` for client `key`'s invoke in
    /// exchange `gen`, queued by the plane side and applied by the loop
    /// (`Server::apply_effects`). News for an exchange that ended, or for an
    /// invoke that moved to another stream since, is dropped: the window
    /// of its DATA is credited back, its header list's storage kept.
    pub(in crate::server) fn stream_news(
        &mut self,
        key: ClientKey,
        gen: u64,
        conn: ConnKey,
        stream: StreamRef,
        news: StreamNews,
    ) {
        let attached = self.clients.get(key).is_some_and(|c| {
            c.gen == gen && c.phase.invoke().is_some_and(|inv| inv.upstream == Upstream::Attached { conn, stream })
        });
        if !attached {
            if let Some(h2) = self.planes.h2(conn) {
                match news {
                    StreamNews::Data(data) => {
                        // The window update may be due now.
                        h2.release(stream, data.len());
                        self.mark_conn(conn);
                    }
                    StreamNews::Headers { fields, .. } => h2.recycle_headers(fields),
                    StreamNews::SendReady | StreamNews::Failed { .. } => {}
                }
            }
            return;
        }
        let step = match news {
            StreamNews::Headers { fields, end_stream } => {
                let step = self.invoke_headers(key, &fields, end_stream);
                // The list's storage serves the next header block.
                if let Some(h2) = self.planes.h2(conn) {
                    h2.recycle_headers(fields);
                }
                step
            }
            StreamNews::Data(data) => self.invoke_data(key, data),
            StreamNews::SendReady => {
                let step = self.pump_invoke_body(key);
                self.settle(key, step);
                self.pump_client(key);
                return;
            }
            StreamNews::Failed { fault, retryable } => self.invoke_stream_failed(key, fault, retryable),
        };
        self.settle(key, step);
    }

    /// The stream failed underneath an invoke (reset, GOAWAY, connection
    /// loss): retry it elsewhere if nothing of it was processed, else fail.
    pub(super) fn invoke_stream_failed(&mut self, key: ClientKey, fault: PlaneFault, retryable: bool) -> Step {
        let Some(c) = self.clients.get_mut(key) else { return Step::Continue };
        let Some(inv) = c.phase.invoke_mut() else { return Step::Continue };
        inv.upstream = Upstream::Detached;
        if !invocation::retries_stream(retryable, inv.call.retryable(), inv.retries) {
            return Step::Failed(InvokeError::PlaneLost(fault));
        }
        inv.retries += 1;
        inv.unreleased = 0;
        inv.call.response.restart();
        let step = self.dispatch_invoke(key);
        if !matches!(step, Step::Continue) {
            return step;
        }
        // Body bytes left in the socket while the stream was gone.
        self.pump_client(key);
        Step::Continue
    }
}
