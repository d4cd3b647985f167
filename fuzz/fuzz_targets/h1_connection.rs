//! The input side of a whole HTTP/1.1 server connection, driven the way the
//! event loop drives it (`server/client.rs` `process_client`, and
//! `server/invoke.rs` `encode_first_message` + `pump_invoke_body`):
//!
//! Idle: parse a head from the read buffer (only when it is not empty), a
//! fresh `HeadParser` after every head; then the body: a small
//! `Content-Length` body already buffered is taken in one piece (the inline
//! first message), else a `BodyDecoder` hands out slices of at most `max`
//! bytes; `NeedMore` reads the next piece; `End` goes back to Idle if the
//! request keeps the connection alive. Pipelined requests follow one another
//! in the same buffer. Every request is treated as an invoke (the body is
//! consumed); any refusal ends the connection.
//!
//! The bytes arrive in pieces chosen by the input, and a piece may arrive
//! "early" — while the decoder is still working through buffered bytes, as
//! when the loop reads again before the body is drained.
//!
//! Input layout:
//!   byte 0  flags: bit 0 tiny limits; bit 1 inline bodies (max = bits 2..7 × 4)
//!   byte 1  `max` handed to the body decoder (0..=63; 0 is taken as 1)
//!   byte 2  n = number of schedule bytes (0..=31), then n schedule bytes,
//!           cycled: piece length = (s & 0x3f) + 1, × 16 if bit 6; bit 7 =
//!           deliver the piece early. n = 0: one piece.
//!   rest    the client's bytes.
//!
//! Invariants: no panic; every step consumes input, reads a piece or stops
//! (the number of steps is bounded by the input); `Ok(None)` from the parser
//! leaves the buffer as it was; `Data` is never empty nor above `max`; after
//! `End` the decoder is done; a complete `Content-Length` body has exactly
//! that length; and the transcript — every head, the concatenation of each
//! body's slices, each request's outcome, how the connection ended — equals
//! that of the same bytes handed over in one piece with unbounded `max`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use noslate_fc::http1::{BodyDecoder, BodyFraming, Decoded, HeadParser, Limits};

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
    max: usize,
    inline_max: Option<u64>,
}

fn describe(head: &noslate_fc::http1::RequestHead) -> String {
    let headers: Vec<_> = head.headers().collect();
    let text = |b: &[u8]| b.escape_ascii().to_string();
    let headers: Vec<_> = headers.iter().map(|(n, v)| (text(n), text(v))).collect();
    format!(
        "{} {} {} {:?} {} {:?} {} {} {:?}",
        text(head.method()),
        text(head.target()),
        text(head.path()),
        head.version(),
        head.head_len(),
        head.framing(),
        head.keep_alive(),
        head.expects_continue(),
        headers,
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

        // The body.
        let mut decoder = BodyDecoder::new(head.framing(), &p.limits);
        let mut body = Vec::new();
        let mut done = head.framing() == BodyFraming::None;
        if let (BodyFraming::Length(n), Some(inline_max)) = (head.framing(), p.inline_max) {
            if n <= inline_max && feed.buf.len() as u64 >= n {
                step();
                let n = n as usize;
                match decoder.decode(&mut feed.buf, n) {
                    Ok(Decoded::Data(data)) => {
                        assert_eq!(data.len(), n);
                        body.extend_from_slice(&data);
                        done = true;
                    }
                    Ok(Decoded::End) => {
                        assert_eq!(n, 0);
                        done = true;
                    }
                    other => panic!("inline body of {n} buffered bytes: {other:?}"),
                }
                assert!(decoder.is_done());
            }
        }
        let mut outcome = Outcome::Complete;
        while !done {
            step();
            match decoder.decode(&mut feed.buf, p.max) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty() && data.len() <= p.max.max(1), "Data of {} bytes", data.len());
                    body.extend_from_slice(&data);
                    feed.maybe_early();
                }
                Ok(Decoded::NeedMore) => {
                    if matches!(decoder, BodyDecoder::Length { .. }) {
                        assert!(feed.buf.is_empty());
                    }
                    if !feed.read() {
                        outcome = Outcome::Incomplete;
                        break;
                    }
                }
                Ok(Decoded::End) => {
                    assert!(decoder.is_done());
                    done = true;
                }
                Err(e) => {
                    outcome = Outcome::Refused(e.status());
                    break;
                }
            }
        }
        if outcome == Outcome::Complete {
            match head.framing() {
                BodyFraming::Length(n) => assert_eq!(body.len() as u64, n),
                BodyFraming::None => assert!(body.is_empty()),
                BodyFraming::Chunked => assert!(body.len() as u64 <= p.limits.max_body),
            }
        }
        let keep_alive = head.keep_alive();
        let complete = outcome == Outcome::Complete;
        requests.push(Request { head: describe(&head), body, outcome });
        if !complete {
            return Transcript { requests, end: End::BodyStopped };
        }
        if !keep_alive {
            return Transcript { requests, end: End::Close };
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, max, n, rest @ ..] = input else {
        return;
    };
    let n = usize::from(*n % 32).min(rest.len());
    let (schedule, data) = rest.split_at(n);
    let limits = if flags & 1 != 0 {
        Limits { max_head: 256, max_target: 64, max_body: 1024, max_headers: 8 }
    } else {
        Limits::default()
    };
    let inline_max = (flags & 2 != 0).then(|| u64::from(flags >> 2) * 4);
    let split = Params { limits: limits.clone(), max: usize::from(*max % 64), inline_max };
    let whole = Params { limits, max: usize::MAX, inline_max: None };

    let mut feed = Feed { data, pos: 0, schedule, next: 0, buf: BytesMut::new() };
    let got = run(&mut feed, &split);
    let mut feed = Feed { data, pos: 0, schedule: &[], next: 0, buf: BytesMut::new() };
    let expected = run(&mut feed, &whole);
    assert_eq!(got, expected, "the split changed the transcript");
});
