//! One invocation's protocol state, from its request head to the end of its
//! response: which function, the deadline, the first message (kept for a
//! retry), the request body as messages and the response splice.
//!
//! The event loop (`server/client/invoke.rs`) owns an `Invocation` per invoking
//! client and adds only what ties it to sockets: the plane connection, the
//! stream, the flow-control credit it holds.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::dispatch::RequestId;
use super::out::Scratch;
use super::request::{first_message, BodyStep, InvokeTarget, RequestBody};
use super::response::ResponseSplice;
use crate::grpc::{self, TimeoutValue};
use crate::http1::request::RequestHead;
use crate::http1::RequestError;
use crate::route::{Choice, Origin};

/// `grpc-timeout` is the deadline plus this, so the data plane's own timeout
/// fires first with a meaningful error (docs/noslated-protocol.md §8).
pub const GRPC_TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// A stream refused before any processing is retried this often.
pub const MAX_RETRIES: u8 = 3;
/// Pauses before retrying a function of the profiles that the data plane
/// did not know (`Server::retry_unknown_function`): short, since the window
/// is usually a control plane's push in flight; capped so a data plane that
/// gets the profiles late is tried again within a quarter second.
pub const UNKNOWN_RETRY_MIN: Duration = Duration::from_millis(20);
pub const UNKNOWN_RETRY_MAX: Duration = Duration::from_millis(250);

/// One instant on both clocks: the monotonic one (timers) and the wall
/// clock (the `deadline` field, ms since the Unix epoch).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub epoch_ms: f64,
}

impl Now {
    pub fn read() -> Now {
        Now { instant: Instant::now(), epoch_ms: crate::sys::epoch_millis() }
    }
}

/// Stop moving already-read body bytes onto a stream with this much queued
/// (reading more from the client stops earlier, at the sink's capacity).
pub const UPSTREAM_HIGH_WATER: usize = 256 * 1024;

/// Where an invocation's request goes: one upstream stream. The server
/// implements it over an HTTP/2 stream of a plane connection; tests and the
/// fuzz targets over a recording. The invocation decides what goes out, in
/// which order, and where the request ends ([`Invocation::start`],
/// [`Invocation::pump_body`]); the sink only carries it.
pub trait RequestSink {
    /// Queue bytes; more may follow at once, to share a DATA frame.
    fn send(&mut self, bytes: Bytes);
    /// Frame what was queued, as far as the windows allow; with `end`, the
    /// request ends after it (END_STREAM).
    fn flush(&mut self, end: bool);
    /// How much more the stream takes now.
    fn capacity(&self) -> usize;
    /// Bytes queued and not yet framed.
    fn queued(&self) -> usize;
    /// Be told when [`RequestSink::capacity`] is above zero again.
    fn want_capacity(&mut self);
}

pub struct Invocation {
    pub head: RequestHead,
    pub origin: Origin,
    pub request_id: RequestId,
    pub choice: Choice,
    pub deadline: Instant,
    /// The same deadline as ms since the Unix epoch (the `deadline` field).
    pub deadline_ms: f64,
    pub body: RequestBody,
    pub response: ResponseSplice,
    /// The first message (head part, inline body), kept (refcounted) so a
    /// stream refused before any processing can be retried elsewhere.
    first: Option<(Bytes, Bytes)>,
    continue_sent: bool,
}

impl Invocation {
    pub fn new(
        head: RequestHead,
        origin: Origin,
        request_id: RequestId,
        choice: Choice,
        timeout: Duration,
        now: Now,
        max_body: u64,
    ) -> Invocation {
        Invocation {
            body: RequestBody::new(head.framing(), max_body),
            response: ResponseSplice::new(&head),
            origin,
            request_id,
            choice,
            deadline: now.instant + timeout,
            deadline_ms: now.epoch_ms + timeout.as_secs_f64() * 1000.0,
            first: None,
            continue_sent: false,
            head,
        }
    }

    /// The `PushServer` method this invocation calls.
    pub fn grpc_path(&self) -> &'static [u8] {
        if self.choice.service {
            b"/noslated.data.PushServer/invokeService"
        } else {
            b"/noslated.data.PushServer/invoke"
        }
    }

    /// `grpc-timeout` for a stream opened at `now`.
    pub fn grpc_timeout(&self, now: Instant) -> TimeoutValue {
        let left = self.deadline.saturating_duration_since(now) + GRPC_TIMEOUT_SLACK;
        grpc::encode_timeout(left.as_millis() as u64)
    }

    /// The first message — head part and inline body — made once, from the
    /// head and whatever of the body `rbuf` holds; the same bytes on a retry.
    pub fn first_message(
        &mut self,
        rbuf: &mut BytesMut,
        forward_credentials: bool,
        scratch: &mut Scratch,
    ) -> (Bytes, Bytes) {
        if let Some(first) = &self.first {
            return first.clone();
        }
        let inline = self.body.take_inline(rbuf);
        let target = InvokeTarget {
            function: &self.choice.name,
            url_skip: self.choice.url_skip,
            origin: self.origin,
            deadline_ms: self.deadline_ms,
            request_id: self.request_id.as_bytes(),
        };
        let head = first_message(&self.head, &target, forward_credentials, inline.len(), scratch);
        self.first = Some((head.clone(), inline.clone()));
        (head, inline)
    }

    /// Start the request on a new stream: the first message (the head, and
    /// the body when it is small and already here), ended at once when that
    /// is the whole body. Returns whether the client is owed `100 Continue`
    /// now. Made again, byte for byte, on a retry (`first_message` is kept).
    pub fn start(
        &mut self,
        sink: &mut impl RequestSink,
        rbuf: &mut BytesMut,
        forward_credentials: bool,
        scratch: &mut Scratch,
    ) -> bool {
        let (head, inline) = self.first_message(rbuf, forward_credentials, scratch);
        // One DATA frame for the head, an inline body and END_STREAM.
        sink.send(head);
        sink.send(inline);
        sink.flush(self.body.is_done());
        self.take_continue()
    }

    /// Move request body bytes from `rbuf` into the stream while it takes
    /// them, as messages announced whole; the request ends with the last of
    /// them (END_STREAM goes out exactly when the body is done, so the
    /// body's state is the one record of it). When the stream takes no more
    /// and the body is not done, the sink is asked to say when it does.
    /// An error: the body broke its own framing (nothing more is sent).
    pub fn pump_body(
        &mut self,
        sink: &mut impl RequestSink,
        rbuf: &mut BytesMut,
        scratch: &mut Scratch,
    ) -> Result<(), RequestError> {
        if self.body.is_done() {
            return Ok(());
        }
        let mut refused = None;
        while !self.body.is_done() && sink.queued() < UPSTREAM_HIGH_WATER {
            match self.body.next(rbuf) {
                Ok(BodyStep::Data { prefix, data }) => {
                    if let Some(prefix) = prefix {
                        sink.send(scratch.bytes(&[prefix.as_bytes()]));
                    }
                    // Framed below, with END_STREAM if the body ends here.
                    sink.send(data);
                }
                Ok(BodyStep::NeedMore) => break,
                Ok(BodyStep::End) => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let done = self.body.is_done();
        sink.flush(done);
        match refused {
            Some(e) => Err(e),
            None => {
                if !done && sink.capacity() == 0 {
                    // Reading stops here; hear when the windows open again.
                    sink.want_capacity();
                }
                Ok(())
            }
        }
    }

    /// `Expect: 100-continue` is answered once, when a stream takes the body
    /// (RFC 9110 §10.1.1) and only if the body is still to come.
    pub fn take_continue(&mut self) -> bool {
        let due = self.head.expects_continue() && !self.body.is_done() && !self.continue_sent;
        self.continue_sent |= due;
        due
    }

    /// The unread rest of the body that the client will send: unknown
    /// (None) when it expects 100-continue and was not sent our 100 — it may
    /// send no body at all after a final answer (RFC 9110 §10.1.1), so the
    /// rest cannot be dropped to find the next request.
    pub fn unread_body(&self) -> Option<u64> {
        match self.body.unread() {
            Some(n) if n > 0 && self.head.expects_continue() && !self.continue_sent => None,
            rest => rest,
        }
    }

    /// Whether the connection may carry another request afterwards.
    pub fn keep_alive(&self) -> bool {
        self.response.writer.keep_alive()
    }

    /// Whether a refused stream may be retried on another connection: no
    /// body message and no response byte went out yet.
    pub fn retryable(&self) -> bool {
        !self.body.chunks_sent() && self.response.writer.is_waiting()
    }
}

/// Whether an invocation whose stream failed underneath it is sent again on
/// another stream: the failure says the data plane processed nothing of it
/// (`refused`: REFUSED_STREAM, or beyond a GOAWAY's last stream id), the
/// invocation still holds every byte it sent (`Invocation::retryable`), and
/// it has been retried fewer than `MAX_RETRIES` times.
pub fn retries_stream(refused: bool, retryable: bool, retries: u8) -> bool {
    refused && retryable && retries < MAX_RETRIES
}

/// The pause before asking again for a function the data plane did not know
/// yet: the last pause (`last`, zero at first) doubled, within
/// `UNKNOWN_RETRY_MIN..=UNKNOWN_RETRY_MAX`, if the retry still comes before
/// `until` (the end of the readiness wait). `None`: answer with the failure.
pub fn unknown_function_pause(now: Instant, until: Instant, last: Duration) -> Option<Duration> {
    let pause = (last * 2).clamp(UNKNOWN_RETRY_MIN, UNKNOWN_RETRY_MAX);
    (now + pause < until).then_some(pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fc::testing::head;
    use crate::grpc::Deframer;
    use crate::proto::InvokeRequest;

    fn invocation(text: &str, service: bool) -> Invocation {
        let choice = Choice { name: "f".into(), service, url_skip: 0 };
        let h = head(text);
        let now = Now { instant: Instant::now(), epoch_ms: 1000.0 };
        Invocation::new(h, Origin::FcEvent, RequestId::from_bytes(b"id"), choice, Duration::from_secs(3), now, 1 << 20)
    }

    #[test]
    fn first_message_is_made_once() {
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n", false);
        assert_eq!(inv.deadline_ms, 4000.0);
        assert_eq!(inv.grpc_path(), b"/noslated.data.PushServer/invoke");
        let half_second_left = inv.deadline - Duration::from_millis(500);
        assert_eq!(inv.grpc_timeout(half_second_left).as_str(), "1500m", "deadline + 1 s");
        let mut rbuf = BytesMut::from(&b"ok"[..]);
        let (a, body) = inv.first_message(&mut rbuf, false, &mut Scratch::default());
        assert_eq!(&body[..], b"ok");
        assert!(!inv.take_continue(), "the body came inline: no 100 Continue");
        let (b, again) = inv.first_message(&mut BytesMut::from(&b"zz"[..]), false, &mut Scratch::default());
        assert_eq!((a.clone(), body.clone()), (b, again));
        let mut d = Deframer::new(1 << 20);
        d.push(a);
        d.push(body);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(InvokeRequest::decode(&m).unwrap().body, Some(&b"ok"[..]));
        assert!(inv.retryable());
    }

    #[test]
    fn retryable_only_while_every_byte_is_held() {
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ncontent-length: 10\r\n\r\n", false);
        inv.first_message(&mut BytesMut::new(), false, &mut Scratch::default());
        assert!(inv.retryable(), "nothing but the first message went out");
        let mut rbuf = BytesMut::from(&b"0123456789"[..]);
        assert!(matches!(inv.body.next(&mut rbuf), Ok(crate::fc::request::BodyStep::Data { .. })));
        assert!(inv.response.writer.is_waiting());
        assert!(!inv.retryable(), "a body message went out: the data plane may have read it");
    }

    #[test]
    fn keep_alive_follows_the_request() {
        assert!(invocation("POST /invoke HTTP/1.1\r\ncontent-length: 0\r\n\r\n", false).keep_alive());
        assert!(
            !invocation("POST /invoke HTTP/1.1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", false).keep_alive()
        );
    }

    #[test]
    fn continue_once_when_the_body_is_to_come() {
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n", true);
        assert_eq!(inv.grpc_path(), b"/noslated.data.PushServer/invokeService");
        inv.first_message(&mut BytesMut::new(), false, &mut Scratch::default());
        // Issue #20 item 3: before our 100 the client may never send the
        // body, so its rest is unknown (the connection closes after an
        // answer); after it, the client sends it and it can be dropped.
        assert_eq!(inv.unread_body(), None);
        assert!(inv.take_continue());
        assert_eq!(inv.unread_body(), Some(2));
        assert!(!inv.take_continue());
    }

    /// A failed stream is retried only when refused, lossless, and under the
    /// retry budget.
    #[test]
    fn retries_stream_table() {
        #[rustfmt::skip]
        let table: &[(bool, bool, u8, bool)] = &[
            // refused, retryable, retries so far => retry
            (true, true, 0, true),
            (true, true, MAX_RETRIES - 1, true),
            (true, true, MAX_RETRIES, false),
            (false, true, 0, false), // the data plane may have processed it
            (true, false, 0, false), // body or response bytes are gone
        ];
        for &(refused, retryable, retries, want) in table {
            assert_eq!(retries_stream(refused, retryable, retries), want, "{refused} {retryable} {retries}");
        }
    }

    /// Unknown-function retries double from the minimum up to the cap, and
    /// stop when the next one would not come before the readiness wait ends.
    #[test]
    fn unknown_function_pause_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let table: &[(Duration, Duration, Option<Duration>)] = &[
            // until - now, last pause => pause
            (ms(10_000), Duration::ZERO, Some(UNKNOWN_RETRY_MIN)),
            (ms(10_000), ms(20), Some(ms(40))),
            (ms(10_000), ms(100), Some(ms(200))),
            (ms(10_000), ms(200), Some(UNKNOWN_RETRY_MAX)),
            (ms(10_000), UNKNOWN_RETRY_MAX, Some(UNKNOWN_RETRY_MAX)),
            (ms(41), ms(20), Some(ms(40))),
            (ms(40), ms(20), None), // would come at the end of the wait
            (ms(0), Duration::ZERO, None),
        ];
        for &(left, last, want) in table {
            assert_eq!(unknown_function_pause(t0, t0 + left, last), want, "{left:?} {last:?}");
        }
    }

    /// A sink that records what the invocation sent, with a capacity the
    /// test sets.
    #[derive(Default)]
    struct Recording {
        sent: Vec<u8>,
        unflushed: usize,
        ends: usize,
        sent_after_end: bool,
        capacity: usize,
        wanted: usize,
    }

    impl RequestSink for Recording {
        fn send(&mut self, bytes: Bytes) {
            self.sent_after_end |= self.ends > 0 && !bytes.is_empty();
            self.unflushed += bytes.len();
            self.sent.extend_from_slice(&bytes);
        }
        fn flush(&mut self, end: bool) {
            self.unflushed = 0;
            self.ends += end as usize;
        }
        fn capacity(&self) -> usize {
            self.capacity
        }
        fn queued(&self) -> usize {
            self.unflushed
        }
        fn want_capacity(&mut self) {
            self.wanted += 1;
        }
    }

    /// The bodies the data plane would read from what was sent.
    fn bodies(sent: &[u8]) -> Vec<u8> {
        let mut d = Deframer::new(1 << 22);
        d.push(Bytes::copy_from_slice(sent));
        let mut body = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            body.extend_from_slice(InvokeRequest::decode(&m).unwrap().body.unwrap_or_default());
        }
        assert!(d.is_idle(), "a message was cut");
        body
    }

    /// The invocation drives the request through the sink: the first
    /// message, then body messages as bytes arrive, and the end exactly
    /// once, exactly when the body is done, with nothing after it; a sink
    /// without capacity is asked to say when it has some. Over
    /// Content-Length bodies (inline or not) and chunked ones, arriving
    /// whole or in pieces.
    #[test]
    fn the_invocation_drives_the_request_through_a_sink() {
        let big: Vec<u8> = (0..200_000usize).map(|i| (i * 31 % 251) as u8).collect();
        let chunked = |b: &[u8]| {
            let mut out = Vec::new();
            for piece in b.chunks(70_000) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        };
        let cases: Vec<(String, Vec<u8>, Vec<u8>)> = vec![
            ("content-length: 0".into(), vec![], vec![]),
            ("content-length: 5".into(), b"hello".to_vec(), b"hello".to_vec()),
            (format!("content-length: {}", big.len()), big.clone(), big.clone()),
            ("transfer-encoding: chunked".into(), chunked(&big), big.clone()),
        ];
        for (framing, wire, want) in cases {
            for piece in [usize::MAX, 1000, 7] {
                let text = format!("POST /invoke HTTP/1.1\r\n{framing}\r\n\r\n");
                let mut inv = invocation(&text, false);
                let mut sink = Recording { capacity: usize::MAX, ..Recording::default() };
                let mut scratch = Scratch::default();
                let mut pieces = wire.chunks(piece.max(1));
                let mut rbuf = BytesMut::from(pieces.next().unwrap_or_default());
                assert!(!inv.start(&mut sink, &mut rbuf, false, &mut scratch), "no Expect: no 100 Continue");
                let mut turns = 0;
                loop {
                    inv.pump_body(&mut sink, &mut rbuf, &mut scratch).unwrap();
                    assert_eq!(sink.ends, inv.body.is_done() as usize, "{framing}, pieces of {piece}");
                    let Some(next) = pieces.next() else { break };
                    rbuf.extend_from_slice(next);
                    turns += 1;
                    assert!(turns < 1_000_000);
                }
                inv.pump_body(&mut sink, &mut rbuf, &mut scratch).unwrap();
                assert_eq!(sink.ends, 1, "{framing}, pieces of {piece}: the request ends once");
                assert!(!sink.sent_after_end, "{framing}, pieces of {piece}: bytes after the end");
                assert!(bodies(&sink.sent) == want, "{framing}, pieces of {piece}: the body differs");
                assert_eq!(sink.wanted, 0, "capacity never ran out");
            }
        }
        // No capacity: the body waits, and the sink is asked to tell.
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ncontent-length: 100000\r\n\r\n", false);
        let mut sink = Recording::default();
        let mut rbuf = BytesMut::from(&big[..1000]);
        inv.start(&mut sink, &mut rbuf, false, &mut Scratch::default());
        inv.pump_body(&mut sink, &mut rbuf, &mut Scratch::default()).unwrap();
        assert_eq!((sink.ends, sink.wanted), (0, 1));
        // A body that breaks its framing is refused, and the request not ended.
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", false);
        let mut sink = Recording { capacity: usize::MAX, ..Recording::default() };
        let mut rbuf = BytesMut::from(&b"zz\r\n"[..]);
        inv.start(&mut sink, &mut rbuf, false, &mut Scratch::default());
        assert!(inv.pump_body(&mut sink, &mut rbuf, &mut Scratch::default()).is_err());
        assert_eq!(sink.ends, 0);
    }

    /// A retry starts the request again with the same bytes.
    #[test]
    fn a_restart_sends_the_same_first_message() {
        let mut inv = invocation("POST /invoke HTTP/1.1\r\ncontent-length: 5\r\n\r\n", false);
        let (mut a, mut b) = (Recording::default(), Recording::default());
        inv.start(&mut a, &mut BytesMut::from(&b"hello"[..]), false, &mut Scratch::default());
        inv.start(&mut b, &mut BytesMut::new(), false, &mut Scratch::default());
        assert_eq!((a.sent, a.ends), (b.sent, b.ends));
        assert_eq!(a.ends, 1);
    }
}
