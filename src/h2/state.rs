//! The state of one request stream (RFC 9113 §5.1), as the client sees it.
//!
//! One enum instead of flags, after hyperium/h2's `proto/streams/state.rs`:
//! a stream has an id exactly when it has left the queue and is not closed,
//! it can be half-closed on one side only, and a response head must precede
//! the body — the variants cannot express anything else. Every transition is
//! a method here; [`super::conn`] reads the state through the queries and
//! does the bookkeeping (id map, events, RST_STREAM) that a transition asks
//! for.
//!
//! We are a client that never accepts pushes (SETTINGS_ENABLE_PUSH = 0), so
//! the "reserved" states of §5.1 never occur; and a stream gets its id only
//! when its HEADERS are queued, so the id-less **queued** state stands in for
//! §5.1 "idle" (nothing about it is on the wire yet).

use super::HeaderList;

/// See the module documentation.
#[derive(Debug)]
pub(super) struct State {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// Accepted by `open()` while the peer's SETTINGS_MAX_CONCURRENT_STREAMS
    /// is reached: no id, nothing sent. `head` is the request's header list,
    /// kept until the HEADERS go out.
    Queued { head: HeaderList, local: Local },
    /// §5.1 "open": HEADERS sent without END_STREAM.
    Open { id: u32, local: Local, remote: Remote },
    /// §5.1 "half-closed (local)": we sent END_STREAM; the response goes on.
    HalfClosedLocal { id: u32, remote: Remote },
    /// §5.1 "half-closed (remote)": the response ended (END_STREAM received);
    /// the request body may still be going out.
    HalfClosedRemote { id: u32, local: Local },
    /// §5.1 "closed": both sides ended, or a reset, GOAWAY or connection error
    /// ended it. The id is forgotten.
    Closed,
}

/// Our sending side while it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Local {
    /// The caller may queue more body.
    Streaming,
    /// The caller called `send_end`: END_STREAM goes out with (or after) the
    /// last queued octet.
    Ending,
}

/// The peer's sending side while it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Remote {
    /// No final (non-1xx) response head yet: DATA is a stream error (§8.1).
    AwaitingHead,
    /// The head arrived: DATA, then trailers or END_STREAM on DATA.
    Body,
}

/// What sending or receiving END_STREAM did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndStream {
    /// The other side is still open.
    HalfClosed,
    /// Both sides have ended (§5.1: half-closed → closed): the connection
    /// must forget `id` and report the stream closed.
    Closed { id: u32 },
}

impl State {
    /// A stream `open()` accepted, before it gets an id; `end_stream` when
    /// the request has no body.
    pub(super) fn queued(head: HeaderList, end_stream: bool) -> State {
        let local = if end_stream { Local::Ending } else { Local::Streaming };
        State { inner: Inner::Queued { head, local } }
    }

    // ----- queries ---------------------------------------------------------

    /// The id, from the HEADERS until the stream closes.
    pub(super) fn id(&self) -> Option<u32> {
        match self.inner {
            Inner::Open { id, .. } | Inner::HalfClosedLocal { id, .. } | Inner::HalfClosedRemote { id, .. } => Some(id),
            Inner::Queued { .. } | Inner::Closed => None,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        matches!(self.inner, Inner::Closed)
    }

    /// The caller may still queue body: not closed, and `send_end` not called.
    pub(super) fn accepts_data(&self) -> bool {
        self.local() == Some(Local::Streaming)
    }

    /// `send_end` was called and END_STREAM has not gone out yet.
    pub(super) fn end_pending(&self) -> bool {
        self.local() == Some(Local::Ending)
    }

    fn local(&self) -> Option<Local> {
        match self.inner {
            Inner::Queued { local, .. } | Inner::Open { local, .. } | Inner::HalfClosedRemote { local, .. } => {
                Some(local)
            }
            Inner::HalfClosedLocal { .. } | Inner::Closed => None,
        }
    }

    /// The peer's side, while it may still send: `None` once the response
    /// ended or the stream closed (`AwaitingHead` while queued: nothing can
    /// arrive before our HEADERS).
    pub(super) fn remote(&self) -> Option<Remote> {
        match self.inner {
            Inner::Open { remote, .. } | Inner::HalfClosedLocal { remote, .. } => Some(remote),
            Inner::Queued { .. } => Some(Remote::AwaitingHead),
            Inner::HalfClosedRemote { .. } | Inner::Closed => None,
        }
    }

    /// The id, while the peer may still send DATA on it (and so may need a
    /// WINDOW_UPDATE).
    pub(super) fn receiving_id(&self) -> Option<u32> {
        match self.inner {
            Inner::Open { id, .. } | Inner::HalfClosedLocal { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The id, once the response is complete and the stream is not closed
    /// (half-closed (remote)).
    pub(super) fn response_complete_id(&self) -> Option<u32> {
        match self.inner {
            Inner::HalfClosedRemote { id, .. } => Some(id),
            _ => None,
        }
    }

    // ----- transitions -----------------------------------------------------

    /// The head a queued stream is waiting to send (empty once taken, or if
    /// `open()` sent it at once).
    pub(super) fn take_head(&mut self) -> HeaderList {
        match &mut self.inner {
            Inner::Queued { head, .. } => std::mem::take(head),
            _ => HeaderList::new(),
        }
    }

    /// HEADERS queued with `id` (§5.1: idle → open, or → half-closed (local)
    /// when END_STREAM rides on the HEADERS because the request has no body
    /// left to send). Returns whether the HEADERS carry END_STREAM.
    pub(super) fn activate(&mut self, id: u32, queue_empty: bool) -> bool {
        let Inner::Queued { local, .. } = self.inner else {
            debug_assert!(false, "activate on {self:?}");
            return false;
        };
        let remote = Remote::AwaitingHead;
        if local == Local::Ending && queue_empty {
            self.inner = Inner::HalfClosedLocal { id, remote };
            true
        } else {
            self.inner = Inner::Open { id, local, remote };
            false
        }
    }

    /// The caller has no more body (`send_end`). False if it had said so
    /// already or the stream is closed: nothing changes.
    pub(super) fn request_end(&mut self) -> bool {
        match &mut self.inner {
            Inner::Queued { local, .. } | Inner::Open { local, .. } | Inner::HalfClosedRemote { local, .. }
                if *local == Local::Streaming =>
            {
                *local = Local::Ending;
                true
            }
            _ => false,
        }
    }

    /// We queued a frame with END_STREAM (§5.1: open → half-closed (local),
    /// half-closed (remote) → closed).
    pub(super) fn sent_end_stream(&mut self) -> EndStream {
        match self.inner {
            Inner::Open { id, remote, .. } => {
                self.inner = Inner::HalfClosedLocal { id, remote };
                EndStream::HalfClosed
            }
            Inner::HalfClosedRemote { id, .. } => {
                self.inner = Inner::Closed;
                EndStream::Closed { id }
            }
            _ => {
                debug_assert!(false, "END_STREAM sent on {self:?}");
                EndStream::HalfClosed
            }
        }
    }

    /// The final response head arrived (§8.1; 1xx heads change nothing).
    pub(super) fn received_head(&mut self) {
        match &mut self.inner {
            Inner::Open { remote, .. } | Inner::HalfClosedLocal { remote, .. } => *remote = Remote::Body,
            _ => debug_assert!(false, "head received on {self:?}"),
        }
    }

    /// The peer sent END_STREAM (§5.1: open → half-closed (remote),
    /// half-closed (local) → closed).
    pub(super) fn received_end_stream(&mut self) -> EndStream {
        match self.inner {
            Inner::Open { id, local, .. } => {
                self.inner = Inner::HalfClosedRemote { id, local };
                EndStream::HalfClosed
            }
            Inner::HalfClosedLocal { id, .. } => {
                self.inner = Inner::Closed;
                EndStream::Closed { id }
            }
            _ => {
                debug_assert!(false, "END_STREAM received on {self:?}");
                EndStream::HalfClosed
            }
        }
    }

    /// Any state → closed (§5.1: RST_STREAM sent or received; also GOAWAY
    /// and connection errors). Returns the id it had: `None` for a stream
    /// that was still queued (or already closed).
    pub(super) fn close(&mut self) -> Option<u32> {
        let id = self.id();
        self.inner = Inner::Closed;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(end_stream: bool, queue_empty: bool) -> (State, bool) {
        let mut state = State::queued(HeaderList::new(), end_stream);
        let end_on_headers = state.activate(1, queue_empty);
        (state, end_on_headers)
    }

    #[test]
    fn queued_stream_has_no_id_and_keeps_its_head() {
        let head = vec![(bytes::Bytes::from_static(b":method"), bytes::Bytes::from_static(b"POST"))];
        let mut state = State::queued(head.clone(), false);
        assert_eq!(state.id(), None);
        assert!(state.accepts_data());
        assert_eq!(state.take_head(), head);
        assert!(!state.activate(7, true), "no END_STREAM requested");
        assert_eq!(state.id(), Some(7));
    }

    #[test]
    fn end_stream_rides_on_headers_only_without_queued_body() {
        let (state, end) = opened(true, true);
        assert!(end);
        assert!(!state.end_pending() && !state.accepts_data());
        assert_eq!(state.receiving_id(), Some(1));
        let (state, end) = opened(true, false);
        assert!(!end);
        assert!(state.end_pending());
    }

    #[test]
    fn both_end_streams_close_in_either_order() {
        let (mut state, _) = opened(false, true);
        assert!(state.request_end());
        assert!(!state.request_end(), "once");
        assert_eq!(state.sent_end_stream(), EndStream::HalfClosed);
        state.received_head();
        assert_eq!(state.remote(), Some(Remote::Body));
        assert_eq!(state.received_end_stream(), EndStream::Closed { id: 1 });
        assert!(state.is_closed() && state.id().is_none());

        let (mut state, _) = opened(false, true);
        state.received_head();
        assert_eq!(state.received_end_stream(), EndStream::HalfClosed);
        assert_eq!(state.remote(), None);
        assert_eq!(state.response_complete_id(), Some(1));
        assert!(state.accepts_data(), "the request body may go on");
        assert_eq!(state.sent_end_stream(), EndStream::Closed { id: 1 });
        assert!(state.is_closed());
    }

    #[test]
    fn close_reports_the_id_it_had() {
        let mut queued = State::queued(HeaderList::new(), false);
        assert_eq!(queued.close(), None);
        let (mut open, _) = opened(false, true);
        assert_eq!(open.close(), Some(1));
        assert!(!open.accepts_data() && !open.end_pending() && open.remote().is_none());
        assert!(!open.request_end());
    }
}
