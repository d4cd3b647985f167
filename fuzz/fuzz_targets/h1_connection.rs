//! The input side of a whole HTTP/1.1 server connection through the FC
//! exchange core, as the event loop drives it: the loop's own steps are
//! `HeadParser::parse` then, per head, `fc::dispatch::endpoint` and an
//! `fc::Invocation` — `start` (the first `InvokeRequest`, with the body
//! inside when it is all buffered) and `pump_body` (body messages announced
//! whole, filled slice by slice, and the request's end) — sending through a
//! recording `fc::RequestSink`, the trait the server implements over an h2
//! stream. Only the reading of the socket and the stream's backpressure are
//! played here: the bytes arrive in pieces chosen by the input, the sink
//! says "full" after a number of sends chosen by the input (the pump stops
//! with bytes still buffered), and a piece may arrive "early" — while the
//! body is still being worked through buffered bytes, as when the loop reads
//! again before the body is drained. Every request is treated as an invoke
//! (the body is consumed); any refusal ends the connection.
//!
//! Input layout:
//!   byte 0  flags: bit 0 tiny limits; bit 1 take the body inline when it is
//!           all buffered (as the loop does when it opens the stream)
//!   byte 1  bit 0 forward credentials; bits 1..2 the origin (FC event, FC
//!           HTTP, local event, local HTTP) for the first message; bits 3..7
//!           the sink is full after that many sends (0: never)
//!   byte 2  n = number of schedule bytes (0..=31), then n schedule bytes,
//!           cycled: piece length = (s & 0x3f) + 1, × 16 if bit 6; bit 7 =
//!           deliver the piece early. n = 0: one piece.
//!   rest    the client's bytes.
//!
//! Invariants: no panic; every step consumes input, reads a piece or stops
//! (the number of steps is bounded by the input); `Ok(None)` from the parser
//! leaves the buffer as it was; body pieces are never empty nor above
//! `CHUNK_MAX`; the first message and the body messages are valid gRPC
//! framing of `InvokeRequest`s whose bodies, joined, are the request body;
//! the request is ended exactly once, exactly when the body is done, and
//! nothing is sent after its end;
//! without inlining a Content-Length body takes exactly ⌈n / CHUNK_MAX⌉
//! messages however it arrives; a complete Content-Length body has exactly
//! that length; and the transcript — every head and its route, each body,
//! each request's outcome, how the connection ended — equals that of the
//! same bytes handed over in one piece without inlining.
#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use noslate_fc::fc::dispatch::RequestId;
use noslate_fc::fc::invocation::UPSTREAM_HIGH_WATER;
use noslate_fc::fc::request::CHUNK_MAX;
use noslate_fc::fc::{dispatch, Invocation, Now, RequestSink, Scratch};
use noslate_fc::grpc::Deframer;
use noslate_fc::http1::{BodyFraming, HeadParser, Limits, RequestHead};
use noslate_fc::proto::InvokeRequest;
use noslate_fc::route::{
    function_name, function_url, Choice, FunctionHeader, FunctionName, Origin, Policy, Request as Choosing, Routes,
};

/// Who may choose the function, for a head from outside: under every header
/// mode and with routes, an allowlist and prefix stripping, a choice is an
/// allowed, well-formed name and a URL cut inside the target; a refusal
/// names a cause. (SECURITY.md's "function choice" lines.)
fn check_function_choice(head: &RequestHead) {
    let dispatch::Endpoint::Invoke(origin) = dispatch::endpoint(head, dispatch::Peer::Fc) else { return };
    let allowlist = Some(vec!["users".into(), "api".into(), "web".into(), "echo".into()]);
    for header in [FunctionHeader::Event, FunctionHeader::All, FunctionHeader::Off] {
        for strip in [false, true] {
            let routes = Routes::parse("/api/users=users,/api=api,/=web", strip).expect("valid routes");
            let policy = Policy { header, allowlist: allowlist.clone(), routes, base_path: None };
            for default in [None, Some("echo")] {
                let chosen = dispatch::choose(head, origin, &policy, default);
                if let Ok(choice) = &chosen {
                    assert!(function_name(choice.name.as_bytes()).is_some(), "{:?}", choice.name);
                    assert!(policy.allows(&choice.name), "{:?} not allowed", choice.name);
                    assert!(choice.url_skip <= head.target().len());
                    let _ = function_url(head.target(), choice.url_skip);
                }
                // A header that is not believed changes nothing: the same
                // request without it goes to the same place.
                let believed = match header {
                    FunctionHeader::Event => origin.trusted(),
                    FunctionHeader::All => true,
                    FunctionHeader::Off => false,
                };
                if !believed {
                    let bare = Choosing {
                        origin,
                        function: None,
                        service: None,
                        target: head.target(),
                        base_path: head.header("x-fc-base-path"),
                    };
                    assert_eq!(chosen, policy.choose(&bare, default), "an unbelieved header decided");
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ended (`End`).
    Complete,
    /// The input ran out inside the body.
    Incomplete,
    /// The body's framing was refused: answer with this status and close.
    Refused(u16),
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    head: String,
    body: Vec<u8>,
    outcome: Outcome,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Nothing buffered when the input ran out.
    Eof,
    /// The input ran out inside a head; this many bytes were buffered.
    HeadIncomplete(usize),
    /// A head was refused with this status.
    HeadRefused(u16),
    /// The last request did not keep the connection alive.
    Close,
    /// The last request's body did not complete.
    BodyStopped,
}

#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    requests: Vec<Request>,
    end: End,
}

/// How the bytes are delivered.
struct Feed<'a> {
    data: &'a [u8],
    pos: usize,
    schedule: &'a [u8],
    next: usize,
    buf: BytesMut,
}

impl Feed<'_> {
    /// Length and earliness of the next piece.
    fn peek(&self) -> (usize, bool) {
        if self.schedule.is_empty() {
            return (self.data.len(), false);
        }
        let s = self.schedule[self.next % self.schedule.len()];
        let len = (usize::from(s & 0x3f) + 1) * if s & 0x40 != 0 { 16 } else { 1 };
        (len, s & 0x80 != 0)
    }

    /// Append the next piece to the buffer; false when the input is used up.
    fn read(&mut self) -> bool {
        if self.pos >= self.data.len() {
            return false;
        }
        let (len, _) = self.peek();
        let end = self.pos + len.min(self.data.len() - self.pos);
        self.buf.extend_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        self.next += 1;
        true
    }

    /// Deliver the next piece now if it is an early one.
    fn maybe_early(&mut self) {
        if self.pos < self.data.len() && self.peek().1 {
            self.read();
        }
    }
}

struct Params {
    limits: Limits,
    inline: bool,
    forward_credentials: bool,
    origin: Origin,
    /// The sink is full after this many sends since its last flush (0: never).
    full_after: usize,
}

/// The stream of one request, recorded as the data plane would decode it:
/// the first message (with the inline body) and then the body messages.
struct Upstream {
    deframer: Deframer,
    p_forward_credentials: bool,
    /// Messages decoded; the first is the head.
    decoded: usize,
    /// Bytes of the body inside the first message.
    inline: usize,
    /// Body messages after the first.
    messages: usize,
    body: Vec<u8>,
    ends: usize,
    sent_after_end: bool,
    /// Sends since the last flush, and the bound that makes the sink full.
    unflushed: usize,
    full_after: usize,
}

impl Upstream {
    fn new(p: &Params) -> Upstream {
        Upstream {
            deframer: Deframer::new(usize::MAX),
            p_forward_credentials: p.forward_credentials,
            decoded: 0,
            inline: 0,
            messages: 0,
            body: Vec::new(),
            ends: 0,
            sent_after_end: false,
            unflushed: 0,
            full_after: p.full_after,
        }
    }
}

impl RequestSink for Upstream {
    fn send(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.sent_after_end |= self.ends > 0;
        self.unflushed += 1;
        self.deframer.push(bytes);
        while let Some(m) = self.deframer.next_message().expect("valid framing") {
            let m = InvokeRequest::decode(&m).expect("a message decodes");
            self.decoded += 1;
            if self.decoded == 1 {
                assert_eq!(m.name, Some("f"));
                assert_eq!(m.request_id, Some("id"));
                if !self.p_forward_credentials {
                    assert!(m.headers.iter().all(|(n, _)| !n.eq_ignore_ascii_case(b"x-fc-security-token")));
                }
                assert!(m.headers.iter().all(|(n, _)| !n.iter().any(u8::is_ascii_uppercase)), "names lower-cased");
                let inline = m.body.unwrap_or_default();
                self.inline = inline.len();
                self.body.extend_from_slice(inline);
                continue;
            }
            let body = m.body.expect("a body message has a body");
            assert!(!body.is_empty() && body.len() <= CHUNK_MAX);
            self.body.extend_from_slice(body);
            self.messages += 1;
        }
    }

    fn flush(&mut self, end: bool) {
        self.unflushed = 0;
        self.ends += usize::from(end);
    }

    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn queued(&self) -> usize {
        if self.full_after > 0 && self.unflushed >= self.full_after {
            UPSTREAM_HIGH_WATER
        } else {
            0
        }
    }

    fn want_capacity(&mut self) {
        unreachable!("the sink always has capacity");
    }
}

fn describe(head: &RequestHead) -> String {
    let headers: Vec<_> = head.headers().collect();
    let text = |b: &[u8]| b.escape_ascii().to_string();
    let headers: Vec<_> = headers.iter().map(|(n, v)| (text(n), text(v))).collect();
    format!(
        "{} {} {} {:?} {} {:?} {} {} {:?} {:?}",
        text(head.method()),
        text(head.target()),
        text(head.path()),
        head.version(),
        head.head_len(),
        head.framing(),
        head.keep_alive(),
        head.expects_continue(),
        headers,
        dispatch::endpoint(head, dispatch::Peer::Fc),
    )
}

fn run(feed: &mut Feed<'_>, p: &Params) -> Transcript {
    let mut requests = Vec::new();
    let mut parser = HeadParser::new();
    let mut steps = 0usize;
    let total = feed.data.len();
    let bound = 5 * total + 8;
    let mut step = || {
        steps += 1;
        assert!(steps <= bound, "no progress: {steps} steps for {total} bytes");
    };
    loop {
        // Idle: read a head.
        step();
        if feed.buf.is_empty() {
            if !feed.read() {
                return Transcript { requests, end: End::Eof };
            }
            continue;
        }
        let before = feed.buf.len();
        let head = match parser.parse(&mut feed.buf, &p.limits) {
            Ok(None) => {
                assert_eq!(feed.buf.len(), before, "Ok(None) changed the buffer");
                if !feed.read() {
                    return Transcript { requests, end: End::HeadIncomplete(feed.buf.len()) };
                }
                continue;
            }
            Err(e) => {
                let _ = (e.reason(), e.to_string());
                return Transcript { requests, end: End::HeadRefused(e.status()) };
            }
            Ok(Some(head)) => head,
        };
        assert!(head.head_len() > 0);
        assert!(before - feed.buf.len() >= head.head_len());
        parser = HeadParser::default();
        let _ = (head.header("host"), head.header("x-fc-control-path"));
        check_function_choice(&head);

        // The body, through the invocation and a recording sink.
        let (framing, keep_alive, described) = (head.framing(), head.keep_alive(), describe(&head));
        let name = FunctionName::new(b"f").expect("a valid name");
        let choice = Choice { name, service: false, url_skip: 0 };
        let now = Now { instant: Instant::now(), epoch_ms: 1e12 };
        let id = RequestId::from_bytes(b"id");
        let mut inv = Invocation::new(head, p.origin, id, choice, Duration::from_secs(1), now, p.limits.max_body);
        let mut upstream = Upstream::new(p);
        let mut scratch = Scratch::default();
        // Without inlining the stream opens before the body is looked at.
        let mut nothing = BytesMut::new();
        let buffered = if p.inline { &mut feed.buf } else { &mut nothing };
        inv.start(&mut upstream, buffered, p.forward_credentials, &mut scratch);
        assert_eq!(upstream.decoded, 1, "the first message is complete");
        let inlined = inv.body.is_done() && upstream.inline > 0;
        let mut outcome = Outcome::Complete;
        loop {
            assert_eq!(upstream.ends, usize::from(inv.body.is_done()), "the request ends with its body");
            if inv.body.is_done() {
                break;
            }
            step();
            let before = feed.buf.len();
            if let Err(e) = inv.pump_body(&mut upstream, &mut feed.buf, &mut scratch) {
                outcome = Outcome::Refused(e.status());
                break;
            }
            if inv.body.is_done() {
                continue;
            }
            let stalled = upstream.full_after > 0 && feed.buf.len() < before;
            if stalled && !feed.buf.is_empty() {
                // The stream was full with bytes still buffered: the loop
                // may read again before it pumps on.
                feed.maybe_early();
                continue;
            }
            if matches!(framing, BodyFraming::Length(_)) {
                assert!(feed.buf.is_empty(), "a Content-Length body waits with bytes buffered");
            }
            if !feed.read() {
                outcome = Outcome::Incomplete;
                break;
            }
        }
        assert!(!upstream.sent_after_end, "bytes after the end of the request");
        if outcome == Outcome::Complete {
            assert_eq!(upstream.ends, 1);
            assert!(upstream.deframer.next_message().unwrap().is_none(), "no message left half-announced");
            assert_eq!(inv.body.unread(), Some(0));
            if let (BodyFraming::Length(n), false) = (framing, inlined) {
                assert_eq!(upstream.messages as u64, n.div_ceil(CHUNK_MAX as u64), "messages announced whole");
            }
        } else {
            assert_eq!(upstream.ends, 0, "a request whose body did not complete is not ended");
        }
        let body = upstream.body;
        if outcome == Outcome::Complete {
            match framing {
                BodyFraming::Length(n) => assert_eq!(body.len() as u64, n),
                BodyFraming::None => assert!(body.is_empty()),
                BodyFraming::Chunked => assert!(body.len() as u64 <= p.limits.max_body),
            }
        }
        let complete = outcome == Outcome::Complete;
        requests.push(Request { head: described, body, outcome });
        if !complete {
            return Transcript { requests, end: End::BodyStopped };
        }
        if !keep_alive {
            return Transcript { requests, end: End::Close };
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, upstream, n, rest @ ..] = input else {
        return;
    };
    let n = usize::from(*n % 32).min(rest.len());
    let (schedule, data) = rest.split_at(n);
    let limits = if flags & 1 != 0 {
        Limits { max_head: 256, max_target: 64, max_body: 1024, max_headers: 8 }
    } else {
        Limits::default()
    };
    let forward_credentials = upstream & 1 != 0;
    let origin =
        [Origin::FcEvent, Origin::FcHttp, Origin::LocalEvent, Origin::LocalHttp][usize::from((upstream >> 1) & 3)];
    let full_after = usize::from(upstream >> 3);
    let split = Params { limits: limits.clone(), inline: flags & 2 != 0, forward_credentials, origin, full_after };
    let whole = Params { limits, inline: false, forward_credentials, origin, full_after: 0 };

    let mut feed = Feed { data, pos: 0, schedule, next: 0, buf: BytesMut::new() };
    let got = run(&mut feed, &split);
    let mut feed = Feed { data, pos: 0, schedule: &[], next: 0, buf: BytesMut::new() };
    let expected = run(&mut feed, &whole);
    assert_eq!(got, expected, "the split changed the transcript");
});
