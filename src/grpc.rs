//! gRPC over HTTP/2, the parts above HTTP/2 frames (docs/noslated-protocol.md §4.2–4.5,
//! gRPC `PROTOCOL-HTTP2.md`), sans-IO.
//!
//! This module owns:
//!
//! * length-prefixed message framing: [`write_prefix`] for the send side and
//!   the [`Deframer`] for the receive side, which turns DATA payloads (pushed
//!   as `Bytes`) back into whole messages, zero-copy whenever a message lies
//!   inside one pushed slice;
//! * the `grpc-timeout` header value ([`encode_timeout`], [`parse_timeout`]);
//! * call outcome: [`Status`] / [`Code`] from trailers or synthesized from a
//!   bad response head or an RST_STREAM.
//!
//! Invariants: no function panics on any input; a [`Deframer`] that returned
//! an error keeps returning it (the offending prefix is not consumed), so the
//! caller can simply fail the stream.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Length of the message prefix: 1 flag byte, 4 bytes big-endian length.
pub const MESSAGE_PREFIX_LEN: usize = 5;

/// Largest message payload Noslated accepts: its 10 MiB limit
/// (`grpc.max_{send,receive}_message_length` = 10485760) is compared with
/// prefix + payload (docs/noslated-protocol.md §4.2).
pub const MAX_MESSAGE_LEN: usize = 10 * 1024 * 1024 - MESSAGE_PREFIX_LEN;

/// Largest number `grpc-timeout` may carry: "1 to 8 ASCII digits" (docs/noslated-protocol.md §4.3).
const MAX_TIMEOUT_DIGITS_VALUE: u64 = 99_999_999;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A gRPC-layer protocol failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrpcError {
    /// A message with the compressed flag: we never advertise compression.
    Compressed,
    /// A prefix flag other than 0 or 1.
    BadFlag(u8),
    /// A message longer than the configured limit.
    TooLarge { len: usize, max: usize },
    /// Trailers without `grpc-status`.
    MissingStatus,
    /// A `grpc-status` that is not a decimal number.
    BadStatus(String),
}

impl fmt::Display for GrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcError::Compressed => f.write_str("compressed gRPC message not supported"),
            GrpcError::BadFlag(flag) => write!(f, "invalid gRPC message flag {flag}"),
            GrpcError::TooLarge { len, max } => {
                write!(f, "gRPC message of {len} bytes exceeds the limit of {max}")
            }
            GrpcError::MissingStatus => f.write_str("missing grpc-status"),
            GrpcError::BadStatus(v) => write!(f, "invalid grpc-status {v:?}"),
        }
    }
}

impl std::error::Error for GrpcError {}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/// Writes an uncompressed message prefix for a `len`-byte payload.
pub fn write_prefix(dst: &mut [u8; MESSAGE_PREFIX_LEN], len: u32) {
    dst[0] = 0;
    dst[1..].copy_from_slice(&len.to_be_bytes());
}

/// An uncompressed message prefix for a `len`-byte payload.
pub fn message_prefix(len: u32) -> [u8; MESSAGE_PREFIX_LEN] {
    let mut p = [0u8; MESSAGE_PREFIX_LEN];
    write_prefix(&mut p, len);
    p
}

/// Reassembles length-prefixed messages from the DATA payloads of one
/// stream. Message and DATA-frame boundaries are independent (docs/noslated-protocol.md §4.2).
#[derive(Debug)]
pub struct Deframer {
    max_len: usize,
    chunks: VecDeque<Bytes>,
    buffered: usize,
}

impl Default for Deframer {
    /// A deframer with Noslated's limit, [`MAX_MESSAGE_LEN`].
    fn default() -> Self {
        Deframer::new(MAX_MESSAGE_LEN)
    }
}

impl Deframer {
    /// A deframer rejecting payloads above `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Deframer { max_len, chunks: VecDeque::new(), buffered: 0 }
    }

    /// Queues received bytes (a DATA payload or any slice of one).
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buffered += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Bytes queued and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// True when no partial message is pending. At END_STREAM a non-idle
    /// deframer means the last message was truncated.
    pub fn is_idle(&self) -> bool {
        self.buffered == 0
    }

    /// The next complete message payload, `Ok(None)` if more bytes are
    /// needed. A message inside one pushed slice is returned as a
    /// sub-slice of it (no copy); one spanning slices is copied once.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, GrpcError> {
        let Some(prefix) = self.peek_prefix() else {
            return Ok(None);
        };
        match prefix[0] {
            0 => {}
            1 => return Err(GrpcError::Compressed),
            flag => return Err(GrpcError::BadFlag(flag)),
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max_len {
            return Err(GrpcError::TooLarge { len, max: self.max_len });
        }
        if self.buffered - MESSAGE_PREFIX_LEN < len {
            return Ok(None);
        }
        self.advance(MESSAGE_PREFIX_LEN);
        Ok(Some(self.take(len)))
    }

    /// Copies the first five queued bytes, if there are five.
    fn peek_prefix(&self) -> Option<[u8; MESSAGE_PREFIX_LEN]> {
        if self.buffered < MESSAGE_PREFIX_LEN {
            return None;
        }
        let mut out = [0u8; MESSAGE_PREFIX_LEN];
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(MESSAGE_PREFIX_LEN - filled);
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == MESSAGE_PREFIX_LEN {
                break;
            }
        }
        Some(out)
    }

    /// Drops `n` queued bytes (`n <= buffered`).
    fn advance(&mut self, mut n: usize) {
        self.buffered -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() > n {
                let _ = front.split_to(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Removes and returns the next `len` queued bytes (`len <= buffered`).
    fn take(&mut self, len: usize) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        if let Some(front) = self.chunks.front_mut() {
            if front.len() >= len {
                let msg = front.split_to(len);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.buffered -= len;
                return msg;
            }
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(len - out.len());
            out.extend_from_slice(&front[..n]);
            if n == front.len() {
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(n);
            }
        }
        self.buffered -= out.len();
        out.freeze()
    }
}

// ---------------------------------------------------------------------------
// grpc-timeout
// ---------------------------------------------------------------------------

/// A `grpc-timeout` value on the stack: at most 8 digits and a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutValue {
    buf: [u8; 9],
    len: u8,
}

impl TimeoutValue {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and a unit letter are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    fn new(value: u64, unit: u8) -> Self {
        let mut digits = [0u8; 8];
        let mut n = 0;
        let mut v = value.min(MAX_TIMEOUT_DIGITS_VALUE);
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut buf = [0u8; 9];
        for i in 0..n {
            buf[i] = digits[n - 1 - i];
        }
        buf[n] = unit;
        TimeoutValue { buf, len: (n + 1) as u8 }
    }
}

impl fmt::Display for TimeoutValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `grpc-timeout` for `ms` milliseconds (at least 1): `<ms>m` when it fits
/// in 8 digits, else whole seconds `S` rounded up, else hours `H` rounded up
/// (saturating at 99999999H). Rounding up never shortens the deadline.
///
/// Note: the grpc-js 1.8.8 server truncates the value to a 32-bit number of
/// milliseconds (docs/noslated-protocol.md §4.3); callers should stay below about 24.8 days.
pub fn encode_timeout(ms: u64) -> TimeoutValue {
    let ms = ms.max(1);
    if ms <= MAX_TIMEOUT_DIGITS_VALUE {
        return TimeoutValue::new(ms, b'm');
    }
    let secs = ms.div_ceil(1000);
    if secs <= MAX_TIMEOUT_DIGITS_VALUE {
        return TimeoutValue::new(secs, b'S');
    }
    TimeoutValue::new(ms.div_ceil(3_600_000), b'H')
}

/// Parses a `grpc-timeout` value strictly: 1–8 digits and one unit of
/// `H M S m u n`.
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------

/// A gRPC status code (docs/noslated-protocol.md §4.5). Values outside 0..=16 are kept as
/// received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u32);

impl Code {
    pub const OK: Code = Code(0);
    pub const CANCELLED: Code = Code(1);
    pub const UNKNOWN: Code = Code(2);
    pub const INVALID_ARGUMENT: Code = Code(3);
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    pub const NOT_FOUND: Code = Code(5);
    pub const ALREADY_EXISTS: Code = Code(6);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    pub const FAILED_PRECONDITION: Code = Code(9);
    pub const ABORTED: Code = Code(10);
    pub const OUT_OF_RANGE: Code = Code(11);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const DATA_LOSS: Code = Code(15);
    pub const UNAUTHENTICATED: Code = Code(16);

    /// The canonical name, `None` for codes outside 0..=16.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        NAMES.get(self.0 as usize).copied()
    }

    /// The status a client reports for an RST_STREAM with `error_code`
    /// (RFC 9113 §7), per gRPC `PROTOCOL-HTTP2.md`: CANCEL → CANCELLED,
    /// REFUSED_STREAM → UNAVAILABLE (safe to retry), ENHANCE_YOUR_CALM →
    /// RESOURCE_EXHAUSTED, INADEQUATE_SECURITY → PERMISSION_DENIED, any other
    /// → INTERNAL.
    pub fn from_h2_reset(error_code: u32) -> Code {
        match error_code {
            0x7 => Code::UNAVAILABLE,
            0x8 => Code::CANCELLED,
            0xb => Code::RESOURCE_EXHAUSTED,
            0xc => Code::PERMISSION_DENIED,
            _ => Code::INTERNAL,
        }
    }

    /// The status a client synthesizes for a non-200 HTTP response
    /// (gRPC `http-grpc-status-mapping.md`).
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "CODE_{}", self.0),
        }
    }
}

/// The outcome of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    /// Percent-decoded `grpc-message` (or a synthesized explanation).
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status { code, message: message.into() }
    }

    pub fn is_ok(&self) -> bool {
        self.code == Code::OK
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.code.0, self.message)
    }
}

/// The call status from trailers (or a Trailers-Only response): the first
/// `grpc-status` (decimal) and, unless the status is OK, the first
/// `grpc-message` (percent-decoded).
pub fn status_from_trailers<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Result<Status, GrpcError> {
    let mut status = None;
    let mut message = None;
    for (name, value) in fields {
        match name {
            b"grpc-status" if status.is_none() => status = Some(value),
            b"grpc-message" if message.is_none() => message = Some(value),
            _ => {}
        }
    }
    let raw = status.ok_or(GrpcError::MissingStatus)?;
    let code = parse_status(raw).ok_or_else(|| GrpcError::BadStatus(String::from_utf8_lossy(raw).into_owned()))?;
    // An OK call's message is never shown: not decoding it keeps the
    // per-invoke path free of an allocation.
    let message = match message {
        Some(m) if code != Code::OK => percent_decode(m),
        _ => String::new(),
    };
    Ok(Status { code, message })
}

fn parse_status(v: &[u8]) -> Option<Code> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(n).ok().map(Code)
}

/// Checks a response head: `:status` must be 200 and `content-type` must
/// start with `application/grpc` (ASCII case-insensitive, as grpc-js
/// checks a prefix). Otherwise returns the error status a gRPC client
/// synthesizes (docs/noslated-protocol.md §4.4, §4.5, gRPC `http-grpc-status-mapping.md`).
pub fn check_response_head<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Result<(), Status> {
    const GRPC_CONTENT_TYPE: &[u8] = b"application/grpc";
    let mut status = None;
    let mut content_type = None;
    for (name, value) in fields {
        match name {
            b":status" if status.is_none() => status = Some(value),
            b"content-type" if content_type.is_none() => content_type = Some(value),
            _ => {}
        }
    }
    let Some(status) = status else {
        return Err(Status::new(Code::UNKNOWN, "missing :status"));
    };
    let parsed = std::str::from_utf8(status)
        .ok()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(http) = parsed else {
        return Err(Status::new(Code::UNKNOWN, format!("invalid :status {:?}", String::from_utf8_lossy(status))));
    };
    if http != 200 {
        return Err(Status::new(Code::from_http_status(http), format!("received HTTP status {http}")));
    }
    match content_type {
        Some(ct)
            if ct.len() >= GRPC_CONTENT_TYPE.len()
                && ct[..GRPC_CONTENT_TYPE.len()].eq_ignore_ascii_case(GRPC_CONTENT_TYPE) =>
        {
            Ok(())
        }
        Some(ct) => {
            Err(Status::new(Code::UNKNOWN, format!("unexpected content-type {:?}", String::from_utf8_lossy(ct))))
        }
        None => Err(Status::new(Code::UNKNOWN, "missing content-type")),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a `grpc-message` value: `%XX` (either hex case) becomes the byte,
/// an invalid or incomplete escape is kept literally, and the bytes are read
/// as UTF-8 with lossy replacement (gRPC `PROTOCOL-HTTP2.md`, "Responses").
pub fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if let (Some(h), Some(l)) =
                (v.get(i + 1).copied().and_then(hex_value), v.get(i + 2).copied().and_then(hex_value))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The request HEADERS of a gRPC call to Noslated (docs/noslated-protocol.md §4.1):
/// lower-case names, `:authority localhost` as grpc-js uses for unix targets.
pub fn request_fields<'a>(path: &'a [u8], timeout: &'a TimeoutValue) -> [(&'a [u8], &'a [u8]); 7] {
    [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"grpc-timeout", timeout.as_bytes()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = message_prefix(payload.len() as u32).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn prefix_layout() {
        assert_eq!(message_prefix(6), [0, 0, 0, 0, 6]);
        assert_eq!(message_prefix(0x0102_0304), [0, 1, 2, 3, 4]);
        let mut p = [9u8; 5];
        write_prefix(&mut p, 64);
        assert_eq!(p, [0, 0, 0, 0, 0x40]);
        assert_eq!(MAX_MESSAGE_LEN, 10_485_755);
    }

    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let messages: Vec<Vec<u8>> = vec![b"hello".to_vec(), Vec::new(), (0..=255u8).collect(), b"x".to_vec()];
        let mut wire = Vec::new();
        for m in &messages {
            wire.extend_from_slice(&framed(m));
        }
        (wire, messages)
    }

    fn drain(d: &mut Deframer, out: &mut Vec<Vec<u8>>) {
        while let Some(m) = d.next_message().unwrap() {
            out.push(m.to_vec());
        }
    }

    #[test]
    fn several_messages_in_one_push() {
        let (wire, messages) = stream();
        let mut d = Deframer::default();
        d.push(Bytes::from(wire));
        let mut got = Vec::new();
        drain(&mut d, &mut got);
        assert_eq!(got, messages);
        assert!(d.is_idle());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_at_every_boundary() {
        let (wire, messages) = stream();
        for cut in 0..=wire.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            d.push(Bytes::copy_from_slice(&wire[..cut]));
            drain(&mut d, &mut got);
            d.push(Bytes::copy_from_slice(&wire[cut..]));
            drain(&mut d, &mut got);
            assert_eq!(got, messages, "cut {cut}");
            assert!(d.is_idle());
        }
        // Two cuts.
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let mut d = Deframer::default();
                let mut got = Vec::new();
                for part in [&wire[..a], &wire[a..b], &wire[b..]] {
                    d.push(Bytes::copy_from_slice(part));
                    drain(&mut d, &mut got);
                }
                assert_eq!(got, messages, "cuts {a} {b}");
            }
        }
        // One byte at a time.
        let mut d = Deframer::default();
        let mut got = Vec::new();
        for b in &wire {
            d.push(Bytes::copy_from_slice(&[*b]));
            drain(&mut d, &mut got);
        }
        assert_eq!(got, messages);
        assert!(d.is_idle());
    }

    #[test]
    fn zero_copy_when_in_one_slice() {
        let (wire, _) = stream();
        let data = Bytes::from(wire);
        let base = data.as_ptr() as usize;
        let mut d = Deframer::default();
        d.push(data.clone());
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr() as usize, base + 5);
        let _ = d.next_message().unwrap().unwrap();
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr() as usize, base + 5 + 5 + 5 + 5);
        // A prefix split from its payload is still zero-copy for the payload.
        let mut d = Deframer::default();
        d.push(data.slice(..3));
        d.push(data.slice(3..));
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr() as usize, base + 5);
        // A payload that spans slices is assembled.
        let mut d = Deframer::default();
        d.push(data.slice(..7));
        d.push(data.slice(7..));
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(&m[..], b"hello");
        assert_ne!(m.as_ptr() as usize, base + 5);
    }

    #[test]
    fn truncation_is_visible() {
        let mut d = Deframer::default();
        d.push(Bytes::from_static(&[0, 0, 0, 0, 3, b'a']));
        assert_eq!(d.next_message(), Ok(None));
        assert!(!d.is_idle());
        assert_eq!(d.buffered(), 6);
        let mut d = Deframer::default();
        d.push(Bytes::from_static(&[0, 0]));
        assert_eq!(d.next_message(), Ok(None));
        assert!(!d.is_idle());
    }

    #[test]
    fn flags_and_limits() {
        let mut d = Deframer::default();
        d.push(Bytes::from_static(&[1, 0, 0, 0, 0]));
        assert_eq!(d.next_message(), Err(GrpcError::Compressed));
        assert_eq!(d.next_message(), Err(GrpcError::Compressed));
        let mut d = Deframer::default();
        d.push(Bytes::from_static(&[2, 0, 0, 0, 0]));
        assert_eq!(d.next_message(), Err(GrpcError::BadFlag(2)));

        let mut d = Deframer::new(4);
        d.push(Bytes::from(framed(b"1234")));
        assert_eq!(d.next_message().unwrap().as_deref(), Some(&b"1234"[..]));
        d.push(Bytes::from_static(&[0, 0, 0, 0, 5]));
        assert_eq!(d.next_message(), Err(GrpcError::TooLarge { len: 5, max: 4 }));
        // The default limit, reported before the payload arrives.
        let mut d = Deframer::default();
        let over = (MAX_MESSAGE_LEN + 1) as u32;
        d.push(Bytes::copy_from_slice(&message_prefix(over)));
        assert_eq!(d.next_message(), Err(GrpcError::TooLarge { len: MAX_MESSAGE_LEN + 1, max: MAX_MESSAGE_LEN }));
        let mut d = Deframer::default();
        d.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(d.next_message(), Err(GrpcError::TooLarge { .. })));
        // Empty pushes are ignored.
        let mut d = Deframer::default();
        d.push(Bytes::new());
        assert!(d.is_idle());
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn timeout_encoding_boundaries() {
        let cases: &[(u64, &str)] = &[
            (0, "1m"),
            (1, "1m"),
            (11_000, "11000m"),
            (99_999_999, "99999999m"),
            (100_000_000, "100000S"),
            (100_000_001, "100001S"),
            (99_999_999_000, "99999999S"),
            (99_999_999_001, "27778H"),
            (u64::MAX, "99999999H"),
        ];
        for (ms, want) in cases {
            let t = encode_timeout(*ms);
            assert_eq!(t.as_str(), *want, "{ms}");
            assert_eq!(t.as_bytes(), want.as_bytes());
            let back = parse_timeout(t.as_bytes()).unwrap();
            assert!(back >= Duration::from_millis((*ms).clamp(1, 99_999_999_000)));
        }
        assert_eq!(encode_timeout(5).to_string(), "5m");
    }

    #[test]
    fn timeout_parsing() {
        assert_eq!(parse_timeout(b"11000m"), Some(Duration::from_millis(11000)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout(b"7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_timeout(b"99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        for bad in [&b""[..], b"m", b"123456789m", b"1x", b"-1m", b"1 m", b"12"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"%5Bobject%20Object%5D"), "[object Object]");
        assert_eq!(percent_decode(b"Deadline%20exceeded"), "Deadline exceeded");
        assert_eq!(percent_decode(b"%zz%2"), "%zz%2");
        assert_eq!(percent_decode(b"%"), "%");
        assert_eq!(percent_decode(b"a%4"), "a%4");
        assert_eq!(percent_decode(b"%e2%82%ac"), "\u{20ac}");
        assert_eq!(percent_decode(b"%ff"), "\u{fffd}");
        assert_eq!(percent_decode(b"100%25+"), "100%+");
        assert_eq!(percent_decode(b""), "");
    }

    #[test]
    fn trailers() {
        let t: Vec<(&[u8], &[u8])> = vec![(b"grpc-status", b"0"), (b"grpc-message", b"OK")];
        let s = status_from_trailers(t).unwrap();
        assert!(s.is_ok());
        // An OK call's message is never shown, so it is not decoded.
        assert_eq!(s.message, "");

        let t: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b"content-type", b"application/grpc+proto"),
            (b"grpc-status", b"12"),
            (b"grpc-message", b"%5Bobject%20Object%5D"),
        ];
        assert_eq!(check_response_head(t.iter().copied()), Ok(()));
        let s = status_from_trailers(t.iter().copied()).unwrap();
        assert_eq!(s, Status::new(Code::UNIMPLEMENTED, "[object Object]"));
        assert_eq!(s.to_string(), "UNIMPLEMENTED (12): [object Object]");

        let none: Vec<(&[u8], &[u8])> = vec![(b"grpc-message", b"x")];
        assert_eq!(status_from_trailers(none), Err(GrpcError::MissingStatus));
        assert_eq!(GrpcError::MissingStatus.to_string(), "missing grpc-status");
        for bad in [&b""[..], b"x", b"-1", b"99999999999", b"4294967296"] {
            let t: Vec<(&[u8], &[u8])> = vec![(b"grpc-status", bad)];
            assert!(matches!(status_from_trailers(t), Err(GrpcError::BadStatus(_))));
        }
        let t: Vec<(&[u8], &[u8])> = vec![(b"grpc-status", b"4")];
        let s = status_from_trailers(t).unwrap();
        assert_eq!((s.code, s.message.as_str()), (Code::DEADLINE_EXCEEDED, ""));
        let t: Vec<(&[u8], &[u8])> = vec![(b"grpc-status", b"42")];
        assert_eq!(status_from_trailers(t).unwrap().code.to_string(), "CODE_42");
    }

    #[test]
    fn response_head_checks() {
        fn head(status: &'static [u8], ct: Option<&'static [u8]>) -> Result<(), Status> {
            let mut v: Vec<(&[u8], &[u8])> = vec![(b":status", status)];
            if let Some(ct) = ct {
                v.push((b"content-type", ct));
            }
            check_response_head(v)
        }
        let grpc = Some(&b"application/grpc"[..]);
        assert_eq!(head(b"200", grpc), Ok(()));
        assert_eq!(head(b"200", Some(b"Application/GRPC+proto")), Ok(()));
        for (status, code) in [
            (&b"400"[..], Code::INTERNAL),
            (b"401", Code::UNAUTHENTICATED),
            (b"403", Code::PERMISSION_DENIED),
            (b"404", Code::UNIMPLEMENTED),
            (b"429", Code::UNAVAILABLE),
            (b"502", Code::UNAVAILABLE),
            (b"503", Code::UNAVAILABLE),
            (b"504", Code::UNAVAILABLE),
            (b"415", Code::UNKNOWN),
            (b"500", Code::UNKNOWN),
        ] {
            let err = head(status, grpc).unwrap_err();
            assert_eq!(err.code, code, "{status:?}");
        }
        assert_eq!(head(b"200", Some(b"text/html")).unwrap_err().code, Code::UNKNOWN);
        assert_eq!(head(b"200", None).unwrap_err().code, Code::UNKNOWN);
        assert_eq!(head(b"20x", grpc).unwrap_err().code, Code::UNKNOWN);
        assert_eq!(head(b"2000", grpc).unwrap_err().code, Code::UNKNOWN);
        let empty: Vec<(&[u8], &[u8])> = Vec::new();
        assert_eq!(check_response_head(empty).unwrap_err().code, Code::UNKNOWN);
    }

    #[test]
    fn reset_codes() {
        assert_eq!(Code::from_h2_reset(0x8), Code::CANCELLED);
        assert_eq!(Code::from_h2_reset(0x7), Code::UNAVAILABLE);
        assert_eq!(Code::from_h2_reset(0x0), Code::INTERNAL);
        assert_eq!(Code::from_h2_reset(0x2), Code::INTERNAL);
        assert_eq!(Code::from_h2_reset(0xb), Code::RESOURCE_EXHAUSTED);
        assert_eq!(Code::from_h2_reset(0xc), Code::PERMISSION_DENIED);
        assert_eq!(Code::from_h2_reset(u32::MAX), Code::INTERNAL);
        assert_eq!(Code::UNAUTHENTICATED.to_string(), "UNAUTHENTICATED");
        assert_eq!(Code::OK.to_string(), "OK");
    }
}
