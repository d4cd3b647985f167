//! Sending request bodies: each stream's send queue, the round-robin that
//! frames them into DATA, and the capacity the caller is offered.
//!
//! Owned here: every stream's [`SendQueue`] (the caller's `Bytes` segments,
//! not yet framed) and the connection's [`SendSchedule`] (the round-robin
//! `ready` list, the `capacity_waiters` line and the octets queued in all).
//!
//! Invariants:
//! * `queued` is the length of a stream's segments, and `total_queued` the
//!   sum of every stream's `queued`; a stream that closes drops its queue;
//! * a stream is in `ready` at most once, exactly while `in_ready` is set,
//!   and only when it has an id and send work (queued octets, or an
//!   END_STREAM owed); one DATA frame per stream per pass, so no stream
//!   starves another (§5.3 leaves the order to us);
//! * DATA never exceeds the stream's send window, the connection's send
//!   window, or the peer's SETTINGS_MAX_FRAME_SIZE (§6.9.1, §4.2); an empty
//!   DATA frame with END_STREAM needs no window;
//! * a stream blocked only by the connection window keeps its turn in
//!   `ready`; one blocked by its own window leaves `ready` with `want_ready`
//!   set and comes back with the peer's WINDOW_UPDATE;
//! * a stream is in `capacity_waiters` at most once, exactly while
//!   `want_capacity` is set; one [`Event::SendReady`] answers both
//!   `want_ready` and `want_capacity`, and none is sent to a stream that
//!   ended its body or closed;
//! * [`ClientConnection::send_capacity`] is 0 while the output is over
//!   `output_budget`, so a caller that sends only on capacity keeps about
//!   `output_budget + queue_budget` in memory, whatever the peer's windows.
//!
//! Nothing here allocates per frame: segments are sliced, not copied, and a
//! DATA head goes into the connection's scratch buffer.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{ClientConnection, Event, Key, Stream, StreamRef, SEND_LOW_WATER};
use crate::h2::frame;

/// What a stream told it may send is expected to queue at most, when
/// sharing out the output budget ([`ClientConnection::want_capacity`]).
const NOTIFY_ESTIMATE: usize = 64 * 1024;

/// One stream's unsent body and its place in the schedule.
#[derive(Default)]
pub(super) struct SendQueue {
    segments: VecDeque<Bytes>,
    /// Octets in `segments`.
    queued: usize,
    /// In the connection's round-robin `ready` list.
    in_ready: bool,
    /// Owes an [`Event::SendReady`].
    want_ready: bool,
    /// In `capacity_waiters`: owes an [`Event::SendReady`] once it has
    /// send capacity ([`ClientConnection::want_capacity`]).
    want_capacity: bool,
}

impl SendQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.queued == 0
    }
}

/// The connection's side of sending.
#[derive(Default)]
pub(super) struct SendSchedule {
    /// Streams with something to send, served round-robin.
    ready: VecDeque<Key>,
    /// Streams that asked to hear when they can send
    /// ([`ClientConnection::want_capacity`]), oldest first.
    capacity_waiters: VecDeque<Key>,
    /// Sum of every stream's `queued`.
    total_queued: usize,
    /// Emptied queues of closed streams, kept with their capacity so that
    /// opening a stream allocates nothing (at most `SPARE_QUEUES`).
    spare: Vec<VecDeque<Bytes>>,
}

/// Spare segment queues kept for new streams.
const SPARE_QUEUES: usize = 64;

impl SendQueue {
    /// An empty queue, reusing a closed stream's storage when there is one.
    pub(super) fn new(schedule: &mut SendSchedule) -> SendQueue {
        SendQueue { segments: schedule.spare.pop().unwrap_or_default(), ..SendQueue::default() }
    }

    /// Give the storage back for the next stream (the stream is gone).
    pub(super) fn recycle(self, schedule: &mut SendSchedule) {
        let mut segments = self.segments;
        if schedule.spare.len() < SPARE_QUEUES && segments.capacity() <= 64 {
            segments.clear();
            schedule.spare.push(segments);
        }
    }
}

impl SendSchedule {
    /// A connection error: nothing more will be framed.
    pub(super) fn clear_ready(&mut self) {
        self.ready.clear();
    }
}

/// Octets queued, or an END_STREAM owed.
fn has_send_work(s: &Stream) -> bool {
    s.send.queued > 0 || s.state.end_pending()
}

impl ClientConnection {
    /// How much more the caller should queue on the stream now: what its
    /// own and the connection's send windows take at once beyond its queue,
    /// or what is left of `queue_allowance` (while all streams together
    /// queue less than `queue_budget`), whichever is more. 0 while the output
    /// is over `output_budget`, and for a stream that ended. A caller that
    /// reads its source only this far keeps about `output_budget` plus
    /// `queue_budget` in memory, whatever the peer's windows and however
    /// many streams there are.
    pub fn send_capacity(&self, stream: StreamRef) -> usize {
        self.key(stream).map_or(0, |key| self.capacity_of(key))
    }

    fn capacity_of(&self, key: Key) -> usize {
        match self.streams.get(key) {
            Some(s) if s.state.accepts_data() && self.output_len() < self.cfg.output_budget => {
                let windows = match s.state.id() {
                    Some(_) => s.send_window.usable().min(self.conn_send.usable()),
                    None => 0,
                };
                let allowance =
                    if self.sends.total_queued < self.cfg.queue_budget { self.cfg.queue_allowance } else { 0 };
                windows.max(allowance).saturating_sub(s.send.queued)
            }
            _ => 0,
        }
    }

    /// Ask for an [`Event::SendReady`] once [`Self::send_capacity`] is above
    /// zero (a window update, the stream getting its id, or the output
    /// falling below the budget). Lets a caller
    /// read its source only as fast as the peer takes the bytes.
    pub fn want_capacity(&mut self, stream: StreamRef) {
        let Some(key) = self.key(stream) else { return };
        if let Some(s) = self.streams.get_mut(key) {
            if !s.state.is_closed() && !s.send.want_capacity {
                s.send.want_capacity = true;
                self.sends.capacity_waiters.push_back(key);
            }
        }
    }

    /// Tell waiting streams that they can send, oldest first. While the
    /// output budget is what holds them back, only as many as the free
    /// budget can take are told (a thundering herd of readers would mostly
    /// find it gone again); the others keep their place in the line.
    pub(super) fn notify_capacity(&mut self) {
        // Nobody can be told: no waiters, the output is over budget, or no
        // window is open and the queue budget is spent.
        let no_allowance = self.sends.total_queued >= self.cfg.queue_budget && self.conn_send.usable() == 0;
        if self.sends.capacity_waiters.is_empty() || self.output_len() >= self.cfg.output_budget || no_allowance {
            return;
        }
        let mut budget = self.cfg.output_budget.saturating_sub(self.output_len());
        // One pass over the line, in order: those not told go to the back,
        // so they end up in their old order (and no second queue is built).
        for _ in 0..self.sends.capacity_waiters.len() {
            let Some(key) = self.sends.capacity_waiters.pop_front() else {
                break;
            };
            let live = self.streams.get(key).is_some_and(|s| s.state.accepts_data() && s.send.want_capacity);
            if !live {
                continue;
            }
            let capacity = self.capacity_of(key);
            if capacity == 0 || budget == 0 {
                self.sends.capacity_waiters.push_back(key);
                continue;
            }
            budget = budget.saturating_sub(capacity.min(NOTIFY_ESTIMATE));
            let s = &mut self.streams[key];
            s.send.want_capacity = false;
            s.send.want_ready = false;
            self.events.push_back(Event::SendReady { stream: StreamRef { key, serial: s.serial } });
        }
    }

    /// Queue request body bytes (already gRPC-framed) on the stream and
    /// frame what the windows allow. Ignored after `send_end`, `reset` or
    /// once the stream is closed.
    pub fn send_data(&mut self, stream: StreamRef, data: Bytes) {
        let Some(key) = self.key(stream) else { return };
        self.queue_data(key, data);
        self.flush_key(key);
    }

    /// Like [`Self::send_data`], but more follows at once: nothing is framed
    /// until the next `send_data`, `flush_stream` or `send_end`, so a message
    /// prefix and its payload (or the last bytes and END_STREAM) share one
    /// DATA frame.
    pub fn send_data_more(&mut self, stream: StreamRef, data: Bytes) {
        if let Some(key) = self.key(stream) {
            self.queue_data(key, data);
        }
    }

    /// Frame whatever the windows allow and tell capacity waiters. For the
    /// caller to run before it writes: state can change between frames
    /// without a window update (a reset frees a concurrency slot and queue
    /// budget, another stream's send drains a queue), and a waiter must not
    /// be left to hear of it only when the peer next sends something.
    pub fn settle(&mut self) {
        self.flush_sends();
        self.notify_capacity();
    }

    /// Frame what `send_data_more` queued, as far as the windows allow.
    pub fn flush_stream(&mut self, stream: StreamRef) {
        if let Some(key) = self.key(stream) {
            self.flush_key(key);
        }
    }

    fn flush_key(&mut self, key: Key) {
        if self.streams.get(key).is_none_or(|s| s.send.queued == 0) {
            return;
        }
        self.mark_ready(key);
        self.flush_sends();
        if let Some(s) = self.streams.get_mut(key) {
            if s.send.queued > SEND_LOW_WATER {
                s.send.want_ready = true;
            }
        }
    }

    fn queue_data(&mut self, key: Key, data: Bytes) -> bool {
        let Some(s) = self.streams.get_mut(key) else {
            return false;
        };
        if !s.state.accepts_data() || data.is_empty() {
            return false;
        }
        s.send.queued += data.len();
        self.sends.total_queued += data.len();
        s.send.segments.push_back(data);
        true
    }

    /// Half-close once everything queued has been sent.
    pub fn send_end(&mut self, stream: StreamRef) {
        let Some(key) = self.key(stream) else {
            return;
        };
        if !self.streams[key].state.request_end() {
            return;
        }
        self.mark_ready(key);
        self.flush_sends();
    }

    /// Octets accepted by `send_data` and not yet framed into the output.
    pub fn queued(&self, stream: StreamRef) -> usize {
        self.key(stream).map_or(0, |key| self.streams[key].send.queued)
    }

    /// Drop what the stream has queued: it closed, or it is being finished
    /// without its body.
    pub(super) fn drop_send_queue(&mut self, key: Key) {
        let s = &mut self.streams[key];
        s.send.segments.clear();
        self.sends.total_queued -= s.send.queued;
        s.send.queued = 0;
    }

    /// Put the stream in the round-robin if it can send something.
    pub(super) fn mark_ready(&mut self, key: Key) {
        if let Some(s) = self.streams.get_mut(key) {
            if s.state.id().is_some() && !s.send.in_ready && has_send_work(s) {
                s.send.in_ready = true;
                self.sends.ready.push_back(key);
            }
        }
    }

    /// Emit DATA frames round-robin, one frame per stream per pass, as far
    /// as the windows and the peer's frame size allow.
    pub(super) fn flush_sends(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let mut progress = true;
        while progress {
            progress = false;
            for _ in 0..self.sends.ready.len() {
                let Some(key) = self.sends.ready.pop_front() else {
                    break;
                };
                let Some(s) = self.streams.get_mut(key) else {
                    continue;
                };
                s.send.in_ready = false;
                let Some(id) = s.state.id() else {
                    continue;
                };
                if s.send.queued == 0 {
                    if s.state.end_pending() {
                        // An empty DATA frame needs no window (§6.9.1).
                        self.emit_data(key, id, 0, true);
                        progress = true;
                    }
                    continue;
                }
                let limit = s.send_window.usable().min(self.conn_send.usable()).min(self.peer.max_frame_size as usize);
                if limit == 0 {
                    if s.send_window.usable() > 0 {
                        // Only the connection window is closed: keep its turn.
                        s.send.in_ready = true;
                        self.sends.ready.push_back(key);
                    } else {
                        // Parked until a WINDOW_UPDATE for this stream; the
                        // caller hears about the reopening.
                        s.send.want_ready = true;
                    }
                    continue;
                }
                let n = limit.min(s.send.queued);
                let end_stream = s.state.end_pending() && n == s.send.queued;
                self.emit_data(key, id, n, end_stream);
                progress = true;
                if end_stream {
                    continue;
                }
                let s = &mut self.streams[key];
                if s.send.want_ready && s.send.queued <= SEND_LOW_WATER && s.state.accepts_data() {
                    s.send.want_ready = false;
                    // One SendReady answers a capacity request too (the
                    // waiter list drops entries whose flag is clear).
                    s.send.want_capacity = false;
                    self.events.push_back(Event::SendReady { stream: StreamRef { key, serial: s.serial } });
                }
                if has_send_work(s) {
                    s.send.in_ready = true;
                    self.sends.ready.push_back(key);
                }
            }
        }
    }

    /// One DATA frame of the next `n` queued octets on stream `id`: a head
    /// in `scratch`, then the segments themselves (sliced, not copied). With
    /// `end_stream`, the stream half-closes, or closes if the response has
    /// ended (§5.1).
    pub(super) fn emit_data(&mut self, key: Key, id: u32, n: usize, end_stream: bool) {
        self.scratch_room(frame::FRAME_HEAD_LEN);
        let s = &mut self.streams[key];
        self.scratch.extend_from_slice(&frame::data_head(id, n as u32, end_stream));
        if n > 0 {
            if !self.scratch.is_empty() {
                let sealed = self.scratch.split().freeze();
                self.output_queued += sealed.len();
                self.output.push_back(sealed);
            }
            let mut left = n;
            while left > 0 {
                let Some(front) = s.send.segments.front_mut() else {
                    break;
                };
                let segment = if front.len() <= left {
                    s.send.segments.pop_front().unwrap_or_default()
                } else {
                    front.split_to(left)
                };
                left -= segment.len();
                self.output_queued += segment.len();
                self.output.push_back(segment);
            }
            s.send.queued -= n;
            self.sends.total_queued -= n;
            s.send_window.consume(n);
            self.conn_send.consume(n);
        }
        if end_stream {
            let end = s.state.sent_end_stream();
            self.after_end_stream(key, end);
        }
    }
}
