//! The response half of the invoke splice, sans-IO: turns the DATA payloads of
//! a `PushServer/invoke` stream into HTTP pieces — one head, body slices, or an
//! error — without buffering body bytes.
//!
//! Invariant: body bytes are never copied. A message that is exactly
//! `result{body}` (every message after the head, as Noslated sends them) is
//! recognised from its first few bytes and its body is handed on as slices of
//! the DATA payloads, however many frames it spans. A head or error message
//! that arrives within one payload is sliced from it too; only one spread
//! over several payloads is assembled (bounded by `MAX_BUFFERED_MESSAGE`),
//! in a buffer from the loop's pool.
//!
//! Nothing here allocates per message in the steady state: the head's
//! fields stay in the message bytes ([`Piece::Head`]) and are read out by
//! whoever writes them.

use bytes::{Buf, Bytes, BytesMut};

use crate::grpc::MESSAGE_PREFIX_LEN;
use crate::pool::BufPool;
use crate::proto::{self, InvokeResult, ResponseMember};

/// Largest head or error message we assemble. A head carries the response
/// headers (FC allows 8 KiB of them) and an error a JS stack; 1 MiB is ample.
pub const MAX_BUFFERED_MESSAGE: usize = 1 << 20;

/// Bytes of payload needed to recognise `result{body}` (two keys and two
/// varints of at most 5 bytes each).
const SHAPE_PROBE: usize = 12;

/// The smallest assembly buffer taken from the pool.
const PENDING_MIN: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub name: String,
    pub message: String,
    pub code: Option<i32>,
    pub stack: Option<String>,
    pub peer_stack: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Piece {
    /// The response head. `result` is the whole `InvokeResultResponse`,
    /// already checked: [`Piece::head_fields`] or
    /// `InvokeResult::decode_each` reads its header pairs.
    Head {
        status: u16,
        result: Bytes,
    },
    Body(Bytes),
    Error(Failure),
}

impl Piece {
    /// A head's header pairs, in order (empty for other pieces).
    pub fn head_fields(&self) -> Vec<(&[u8], &[u8])> {
        let mut fields = Vec::new();
        if let Piece::Head { result, .. } = self {
            let _checked = InvokeResult::decode_each(result, |k, v| fields.push((k, v)));
        }
        fields
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpliceError {
    Compressed,
    TooLarge(usize),
    Malformed(proto::DecodeError),
    BadStatus(i32),
}

impl std::fmt::Display for SpliceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceError::Compressed => f.write_str("compressed response message (we never accept compression)"),
            SpliceError::TooLarge(n) => write!(f, "response message of {n} bytes exceeds the buffering limit"),
            SpliceError::Malformed(e) => write!(f, "malformed InvokeResponse: {e}"),
            SpliceError::BadStatus(s) => write!(f, "function returned invalid HTTP status {s}"),
        }
    }
}

impl std::error::Error for SpliceError {}

enum State {
    /// Collecting the 5-byte prefix, and after the head enough payload to probe the shape.
    Prefix,
    /// Assembling a whole message of `len` payload bytes in `pending`.
    Whole { len: usize },
    /// Streaming `remaining` body bytes of a `result{body}` message.
    Body { remaining: usize },
}

pub struct ResponseDecoder {
    state: State,
    pending: BytesMut,
    head_seen: bool,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        ResponseDecoder { state: State::Prefix, pending: BytesMut::new(), head_seen: false }
    }
}

impl ResponseDecoder {
    /// True when no message is partially received (a clean end of stream).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Prefix) && self.pending.is_empty()
    }

    pub fn head_seen(&self) -> bool {
        self.head_seen
    }

    /// Bytes held back from the pieces: a message prefix and probe, or a head
    /// or error message being assembled. Never above `MAX_BUFFERED_MESSAGE`
    /// plus the 5-byte prefix.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// The assembly buffer, for the next decoder.
    pub fn recycle(self, pool: &mut BufPool) {
        if self.pending.capacity() > 0 {
            pool.put(self.pending);
        }
    }

    /// Append to the message being assembled (room from `pool`). `room` is
    /// how many bytes are still to come, these included: the buffer grows
    /// once to hold them all, so a message sent in many small DATA frames
    /// is copied once, not once per frame (which was quadratic).
    fn pend(&mut self, bytes: &[u8], room: usize, pool: &mut BufPool) {
        if self.pending.capacity() - self.pending.len() < bytes.len() {
            pool.refill(&mut self.pending, room.max(bytes.len()), PENDING_MIN);
        }
        self.pending.extend_from_slice(bytes);
    }

    /// A whole message at the front of `data`, taken without copying: a
    /// body-only message becomes `Body` state, any other is finished.
    /// Returns false (nothing taken) when `data` holds too little to say.
    fn take_direct(&mut self, data: &mut Bytes, out: &mut dyn FnMut(Piece)) -> Result<bool, SpliceError> {
        if data.len() < MESSAGE_PREFIX_LEN {
            return Ok(false);
        }
        let len = message_len(data)?;
        let payload = &data[MESSAGE_PREFIX_LEN..];
        if self.head_seen && payload.len() >= SHAPE_PROBE.min(len) {
            if let Some(offset) = proto::body_only_result(payload, len) {
                data.advance(MESSAGE_PREFIX_LEN + offset);
                let remaining = len - offset;
                self.state = if remaining == 0 { State::Prefix } else { State::Body { remaining } };
                return Ok(true);
            }
        }
        if payload.len() < len {
            return Ok(false);
        }
        if len > MAX_BUFFERED_MESSAGE {
            return Err(SpliceError::TooLarge(len));
        }
        let message = data.split_to(MESSAGE_PREFIX_LEN + len).slice(MESSAGE_PREFIX_LEN..);
        self.finish_message(message, out)?;
        Ok(true)
    }

    /// Feed one DATA payload; pieces are passed to `out` in order. A
    /// message spread over payloads is assembled in a buffer from `pool`.
    pub fn feed(&mut self, mut data: Bytes, out: &mut dyn FnMut(Piece), pool: &mut BufPool) -> Result<(), SpliceError> {
        while !data.is_empty() {
            if matches!(self.state, State::Prefix) && self.pending.is_empty() && self.take_direct(&mut data, out)? {
                continue;
            }
            match self.state {
                State::Body { remaining } => {
                    let n = remaining.min(data.len());
                    out(Piece::Body(data.split_to(n)));
                    self.state = if n == remaining { State::Prefix } else { State::Body { remaining: remaining - n } };
                }
                State::Whole { len } => {
                    let want = MESSAGE_PREFIX_LEN + len - self.pending.len();
                    let n = want.min(data.len());
                    self.pend(&data.split_to(n), want, pool);
                    if n == want {
                        self.finish_whole(out)?;
                    }
                }
                State::Prefix => {
                    let probe = if self.head_seen { SHAPE_PROBE } else { 0 };
                    let have = self.pending.len();
                    if have < MESSAGE_PREFIX_LEN {
                        let n = (MESSAGE_PREFIX_LEN - have).min(data.len());
                        self.pend(&data.split_to(n), n, pool);
                        continue;
                    }
                    let len = message_len(&self.pending)?;
                    let payload_have = have - MESSAGE_PREFIX_LEN;
                    let probe_len = probe.min(len);
                    if payload_have < probe_len {
                        let n = (probe_len - payload_have).min(data.len());
                        self.pend(&data.split_to(n), n, pool);
                        if self.pending.len() - MESSAGE_PREFIX_LEN < probe_len {
                            continue;
                        }
                    }
                    self.classify(len, out)?;
                }
            }
        }
        // A message whose prefix completed exactly at the end of this payload
        // still needs classifying (an empty message completes here).
        if let State::Prefix = self.state {
            if self.pending.len() >= MESSAGE_PREFIX_LEN {
                let len = message_len(&self.pending)?;
                let probe = if self.head_seen { SHAPE_PROBE.min(len) } else { 0 };
                if self.pending.len() - MESSAGE_PREFIX_LEN >= probe {
                    self.classify(len, out)?;
                }
            }
        }
        Ok(())
    }

    /// Decide how to receive a message whose prefix (and probe) is in `pending`.
    fn classify(&mut self, len: usize, out: &mut dyn FnMut(Piece)) -> Result<(), SpliceError> {
        if self.head_seen {
            if let Some(offset) = proto::body_only_result(&self.pending[MESSAGE_PREFIX_LEN..], len) {
                let already = self.pending.split().freeze();
                let body_start = MESSAGE_PREFIX_LEN + offset;
                if already.len() > body_start {
                    out(Piece::Body(already.slice(body_start..)));
                }
                let consumed = already.len().saturating_sub(MESSAGE_PREFIX_LEN);
                self.state = if consumed >= len { State::Prefix } else { State::Body { remaining: len - consumed } };
                return Ok(());
            }
        }
        if len > MAX_BUFFERED_MESSAGE {
            return Err(SpliceError::TooLarge(len));
        }
        self.state = State::Whole { len };
        if self.pending.len() == MESSAGE_PREFIX_LEN + len {
            self.finish_whole(out)?;
        }
        Ok(())
    }

    fn finish_whole(&mut self, out: &mut dyn FnMut(Piece)) -> Result<(), SpliceError> {
        let message = self.pending.split().freeze().slice(MESSAGE_PREFIX_LEN..);
        self.finish_message(message, out)
    }

    /// A whole message (without its prefix): a head, body or error.
    fn finish_message(&mut self, message: Bytes, out: &mut dyn FnMut(Piece)) -> Result<(), SpliceError> {
        self.state = State::Prefix;
        let decoded = ResponseMember::decode(&message).map_err(SpliceError::Malformed)?;
        match decoded {
            ResponseMember::Result { raw: result, status, body } => {
                if !self.head_seen {
                    self.head_seen = true;
                    let status = match status {
                        None | Some(0) => 200,
                        Some(s @ 100..=999) => s as u16,
                        Some(s) => return Err(SpliceError::BadStatus(s)),
                    };
                    out(Piece::Head { status, result: message.slice_ref(result) });
                }
                if let Some(body) = body.filter(|b| !b.is_empty()) {
                    out(Piece::Body(message.slice_ref(body)));
                }
            }
            ResponseMember::Error(e) => {
                let text = |s: Option<&str>| s.map(str::to_string);
                out(Piece::Error(Failure {
                    name: e.name.unwrap_or("Error").to_string(),
                    message: e.message.unwrap_or("").to_string(),
                    code: e.code,
                    stack: text(e.stack),
                    peer_stack: text(e.peer_stack),
                }));
            }
        }
        Ok(())
    }
}

/// The payload length in a 5-byte gRPC message prefix (`prefix` holds at
/// least 5 bytes); compression is refused.
fn message_len(prefix: &[u8]) -> Result<usize, SpliceError> {
    if prefix[0] != 0 {
        return Err(SpliceError::Compressed);
    }
    Ok(u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize)
}

/// Worked bytes from docs/noslated-protocol.md §7.6, for this module's tests and
/// the FC core's.
#[cfg(test)]
pub(crate) mod samples {
    pub fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// A 200 head with `content-type: text/plain`.
    pub const HEAD: &str = "00 00 00 00 21 12 1f 08 c8 01 12 1a 0a 0c 63 6f 6e 74 65 6e 74 2d 74 79 70 65 12 0a 74 65 78 74 2f 70 6c 61 69 6e";
    /// A body chunk `hi`.
    pub const BODY_HI: &str = "00 00 00 00 06 12 04 1a 02 68 69";
    /// The head, then `hi` twice.
    pub fn head_hi_hi() -> Vec<u8> {
        [HEAD, BODY_HI, BODY_HI].iter().flat_map(|m| hex(m)).collect()
    }

    /// An error: `rate limit exceeded`, code 8.
    pub const ERROR: &str = "00 00 00 00 20 0a 1e 0a 05 45 72 72 6f 72 12 13 72 61 74 65 20 6c 69 6d 69 74 20 65 78 63 65 65 64 65 64 38 08";
}

#[cfg(test)]
mod tests {
    use super::samples::{self, hex, ERROR, HEAD};
    use super::*;

    /// These texts reach logs and error answers: each names its cause.
    #[test]
    fn splice_errors_name_their_cause() {
        assert_eq!(SpliceError::Compressed.to_string(), "compressed response message (we never accept compression)");
        assert_eq!(SpliceError::TooLarge(7).to_string(), "response message of 7 bytes exceeds the buffering limit");
        assert_eq!(SpliceError::BadStatus(99).to_string(), "function returned invalid HTTP status 99");
    }

    /// A protobuf varint.
    fn varint(mut v: usize, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A gRPC message: uncompressed, its length, `message`.
    fn grpc_message(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn run(stream: &[u8], split: usize) -> (Vec<u8>, Vec<Piece>) {
        let mut d = ResponseDecoder::default();
        let mut body = Vec::new();
        let mut other = Vec::new();
        for chunk in stream.chunks(split.max(1)) {
            d.feed(
                Bytes::copy_from_slice(chunk),
                &mut |p| match p {
                    Piece::Body(b) => body.extend_from_slice(&b),
                    p => other.push(p),
                },
                &mut BufPool::default(),
            )
            .unwrap();
        }
        assert!(d.is_idle());
        (body, other)
    }

    /// A body message is streamed, never assembled: at every split, what the
    /// decoder holds back stays within a message prefix plus the shape
    /// probe (the head message, assembled whole, is smaller than that).
    #[test]
    fn a_big_body_message_streams_without_being_assembled() {
        let want: Vec<u8> = (0..100_000usize).map(|i| (i * 31 % 251) as u8).collect();
        let mut inner = vec![0x1a];
        varint(want.len(), &mut inner);
        inner.extend_from_slice(&want);
        let mut outer = vec![0x12];
        varint(inner.len(), &mut outer);
        outer.extend_from_slice(&inner);
        let mut stream = hex(HEAD);
        stream.extend(grpc_message(&outer));
        let bound = (MESSAGE_PREFIX_LEN + SHAPE_PROBE).max(hex(HEAD).len());
        for split in [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 17, 38, 39, 40, 64, 1000, 4096, 65536, stream.len()] {
            let mut d = ResponseDecoder::default();
            let mut body = Vec::new();
            let mut held = 0;
            for chunk in stream.chunks(split) {
                d.feed(
                    Bytes::copy_from_slice(chunk),
                    &mut |p| {
                        if let Piece::Body(b) = p {
                            // An empty body piece would end a chunked answer.
                            assert!(!b.is_empty(), "an empty body piece");
                            body.extend_from_slice(&b)
                        }
                    },
                    &mut BufPool::default(),
                )
                .unwrap();
                held = held.max(d.buffered());
            }
            assert!(body == want, "split {split}: {} body bytes", body.len());
            assert!(d.is_idle(), "split {split}");
            assert!(held <= bound, "split {split}: {held} bytes held back (bound {bound})");
        }
    }

    /// A big error message sent in many small DATA payloads is assembled
    /// with one growth of the buffer, not one per payload (the copies that
    /// made the fuzz smoke report a slow unit: quadratic in the payloads).
    #[test]
    fn a_message_in_small_pieces_grows_its_buffer_once() {
        let text = vec![b'x'; 100_000];
        let mut inner = vec![0x0a, 0x05];
        inner.extend_from_slice(b"Error");
        inner.push(0x12);
        varint(text.len(), &mut inner);
        inner.extend_from_slice(&text);
        inner.extend_from_slice(&[0x38, 0x08]);
        let mut outer = vec![0x0a];
        varint(inner.len(), &mut outer);
        outer.extend_from_slice(&inner);
        let stream = grpc_message(&outer);
        for split in [1, 7, 100] {
            let mut d = ResponseDecoder::default();
            let mut pool = BufPool::default();
            let (mut growths, mut capacity, mut errors) = (0, 0, 0);
            for chunk in stream.chunks(split) {
                d.feed(
                    Bytes::copy_from_slice(chunk),
                    &mut |p| errors += matches!(p, Piece::Error(_)) as usize,
                    &mut pool,
                )
                .unwrap();
                if d.pending.capacity() > capacity {
                    growths += 1;
                }
                capacity = d.pending.capacity();
            }
            assert_eq!(errors, 1, "split {split}");
            assert!(growths <= 2, "split {split}: the buffer grew {growths} times");
        }
    }

    /// A head message so small that the shape probe holds all of it is
    /// finished at once, at every split (also when nothing follows).
    #[test]
    fn a_tiny_head_is_finished_at_once() {
        let tiny = hex("00 00 00 00 05 12 03 08 c8 01");
        for split in 1..=tiny.len() {
            let (body, other) = run(&tiny, split);
            assert!(body.is_empty() && matches!(other.as_slice(), [Piece::Head { status: 200, .. }]), "split {split}");
        }
        let mut stream = tiny.clone();
        stream.extend(hex(samples::BODY_HI));
        for split in 1..=stream.len() {
            let (body, other) = run(&stream, split);
            assert_eq!((body.as_slice(), other.len()), (&b"hi"[..], 1), "split {split}");
        }
        // After the head the probe can hold a whole small message: an
        // (empty) error is finished as soon as its last byte is in.
        let mut stream = hex(HEAD);
        stream.extend(hex("00 00 00 00 02 0a 00"));
        for split in 1..=stream.len() {
            let (_, other) = run(&stream, split);
            assert!(matches!(other.as_slice(), [Piece::Head { .. }, Piece::Error(_)]), "split {split}: {other:?}");
        }
    }

    /// A head message that carries body bytes too yields the head, then the
    /// body, at every split.
    #[test]
    fn a_head_with_a_body_yields_both() {
        let with_body = format!("{} 1a 02 6f 6b", HEAD.replacen("00 00 00 00 21 12 1f", "00 00 00 00 25 12 23", 1));
        let stream = hex(&with_body);
        for split in 1..=stream.len() {
            let (body, other) = run(&stream, split);
            assert_eq!(body, b"ok", "split {split}");
            assert!(matches!(other.as_slice(), [Piece::Head { status: 200, .. }]), "split {split}");
        }
    }

    /// An empty body message (`result{body: ""}`) yields no body piece at
    /// any split: an empty piece would be an empty chunk, which ends a
    /// chunked answer.
    #[test]
    fn an_empty_body_message_yields_no_piece() {
        let mut stream = hex(HEAD);
        stream.extend(hex("00 00 00 00 04 12 02 1a 00"));
        stream.extend(hex(samples::BODY_HI));
        for split in 1..=stream.len() {
            let mut d = ResponseDecoder::default();
            let mut body = Vec::new();
            for chunk in stream.chunks(split) {
                d.feed(
                    Bytes::copy_from_slice(chunk),
                    &mut |p| {
                        if let Piece::Body(b) = p {
                            assert!(!b.is_empty(), "split {split}: an empty body piece");
                            body.extend_from_slice(&b)
                        }
                    },
                    &mut BufPool::default(),
                )
                .unwrap();
            }
            assert_eq!(body, b"hi", "split {split}");
            assert!(d.is_idle());
        }
    }

    /// A stream that ends inside a message must not look like a clean end:
    /// not idle at any byte short of the whole stream, idle after it.
    #[test]
    fn not_idle_inside_a_message() {
        let stream = samples::head_hi_hi();
        for cut in 1..stream.len() {
            let mut d = ResponseDecoder::default();
            d.feed(Bytes::copy_from_slice(&stream[..cut]), &mut |_| {}, &mut BufPool::default()).unwrap();
            assert_eq!(d.is_idle(), boundaries(&stream).contains(&cut), "cut at {cut} of {}", stream.len());
        }
    }

    /// Where each gRPC message of `stream` ends.
    fn boundaries(stream: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        while at + MESSAGE_PREFIX_LEN <= stream.len() {
            let len = u32::from_be_bytes([stream[at + 1], stream[at + 2], stream[at + 3], stream[at + 4]]) as usize;
            at += MESSAGE_PREFIX_LEN + len;
            ends.push(at);
        }
        ends
    }

    #[test]
    fn head_then_bodies_at_every_split() {
        let stream = samples::head_hi_hi();
        for split in 1..=stream.len() {
            let (body, other) = run(&stream, split);
            assert_eq!(body, b"hihi", "split {split}");
            assert_eq!(other.len(), 1);
            match &other[0] {
                p @ Piece::Head { status, .. } => {
                    assert_eq!(*status, 200);
                    assert_eq!(p.head_fields(), [(&b"content-type"[..], &b"text/plain"[..])]);
                }
                p => panic!("unexpected {p:?}"),
            }
        }
    }

    #[test]
    fn error_before_head() {
        let (body, other) = run(&hex(ERROR), 3);
        assert!(body.is_empty());
        match &other[0] {
            Piece::Error(f) => {
                assert_eq!(f.name, "Error");
                assert_eq!(f.message, "rate limit exceeded");
                assert_eq!(f.code, Some(8));
            }
            p => panic!("unexpected {p:?}"),
        }
    }

    #[test]
    fn large_body_streams_without_buffering() {
        let mut stream = hex(HEAD);
        let body = vec![7u8; 100_000];
        // result{body}: 0x12 len(0x1a len body)
        let mut inner = vec![0x1a];
        proto::put_varint(&mut inner, body.len() as u64);
        let mut msg = vec![0x12];
        proto::put_varint(&mut msg, (inner.len() + body.len()) as u64);
        msg.extend(inner);
        msg.extend(&body);
        stream.extend([0, 0, 0, 0, 0]);
        let n = stream.len();
        stream[n - 4..].copy_from_slice(&(msg.len() as u32).to_be_bytes());
        stream.extend(msg);
        let mut d = ResponseDecoder::default();
        let mut got = 0;
        for chunk in stream.chunks(16384) {
            d.feed(
                Bytes::copy_from_slice(chunk),
                &mut |p| {
                    if let Piece::Body(b) = p {
                        assert!(b.len() <= 16384);
                        got += b.len();
                    }
                },
                &mut BufPool::default(),
            )
            .unwrap();
            assert!(d.pending.len() <= MESSAGE_PREFIX_LEN + SHAPE_PROBE + 64);
        }
        assert_eq!(got, body.len());
        assert!(d.is_idle());
    }

    #[test]
    fn rejects_compression_and_garbage() {
        let mut d = ResponseDecoder::default();
        assert_eq!(
            d.feed(Bytes::from_static(&[1, 0, 0, 0, 0]), &mut |_| {}, &mut BufPool::default()),
            Err(SpliceError::Compressed)
        );
        let mut d = ResponseDecoder::default();
        assert!(d
            .feed(Bytes::from_static(&[0, 0, 0, 0, 2, 0xff, 0xff]), &mut |_| {}, &mut BufPool::default())
            .is_err());
        let mut d = ResponseDecoder::default();
        assert!(matches!(
            d.feed(Bytes::from_static(&[0, 0x7f, 0, 0, 0]), &mut |_| {}, &mut BufPool::default()),
            Err(SpliceError::TooLarge(_))
        ));
    }
}
