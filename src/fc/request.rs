//! The request half of an invocation, sans-IO: an HTTP/1.1 request head
//! becomes the first `InvokeRequest` (fc-protocol.md §3, README "Routing"),
//! and the body becomes `InvokeRequest{body}` messages.
//!
//! The first message carries the head fields, and the whole body when it is
//! at most `INLINE_BODY_MAX` and already buffered. Further body bytes become
//! messages announced whole — the rest of the Content-Length body or of the
//! current chunk, up to `CHUNK_MAX` — and filled slice by slice as bytes
//! arrive: how much the loop reads at a time does not change how many
//! messages the data plane decodes. Body slices are the read buffer itself
//! (a refcount, never a copy); only the small message prefixes are owned.

use bytes::{Bytes, BytesMut};

use super::out::{Fields, Scratch};
use crate::grpc;
use crate::http1::body::BodyDecoder;
use crate::http1::chunked::Decoded;
use crate::http1::request::{BodyFraming, RequestHead};
use crate::http1::RequestError;
use crate::proto::{self, BodyChunkPrefix, InvokeRequestHead};
use crate::route::Origin;

/// Largest body that rides inside the first `InvokeRequest`.
pub const INLINE_BODY_MAX: usize = 64 * 1024;
/// Largest body chunk message (well under Noslated's 10 MiB message limit).
pub const CHUNK_MAX: usize = 64 * 1024;
/// Forwarded request header fields kept on the stack; more spill to the heap.
const INLINE_HEADERS: usize = 64;

/// Hop-by-hop headers never forwarded (RFC 9110 §7.6.1), and FC's credentials
/// unless the operator allows them (fc-protocol.md §3).
const HOP_BY_HOP: &[&[u8]] = &[b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer"];
const CREDENTIALS: &[&[u8]] = &[b"x-fc-access-key-id", b"x-fc-access-key-secret", b"x-fc-security-token"];
/// FC context headers that travel as baggage, and their baggage keys.
const BAGGAGE: [(&str, &[u8]); 5] = [
    ("x-fc-region", b"fc-region"),
    ("x-fc-account-id", b"fc-account-id"),
    ("x-fc-qualifier", b"fc-qualifier"),
    ("x-fc-function-name", b"fc-function-name"),
    ("x-fc-service-name", b"fc-service-name"),
];

/// Where the first message goes and what it says besides the head.
#[derive(Clone, Copy, Debug)]
pub struct InvokeTarget<'a> {
    pub function: &'a str,
    /// Bytes of the target the function does not see (`route::function_url`).
    pub url_skip: usize,
    pub origin: Origin,
    /// Absolute deadline, ms since the Unix epoch.
    pub deadline_ms: f64,
    pub request_id: &'a [u8],
}

/// Whether a request header is forwarded to the function.
fn forwarded(name: &[u8], forward_credentials: bool) -> bool {
    let hop = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-"));
    let secret = !forward_credentials && CREDENTIALS.iter().any(|h| name.eq_ignore_ascii_case(h));
    !hop && !secret
}

/// The first `InvokeRequest` up to its body: gRPC prefix, head fields and,
/// when `inline_len > 0`, the field-7 key and length; the caller sends the
/// `inline_len` body bytes right after it.
pub fn first_message(
    head: &RequestHead,
    to: &InvokeTarget<'_>,
    forward_credentials: bool,
    inline_len: usize,
    scratch: &mut Scratch,
) -> Bytes {
    // The forwarded fields, on the stack unless there are very many (the
    // encoder lower-cases their names as it writes them).
    let mut headers: Fields<'_, INLINE_HEADERS> = Fields::new();
    for field in head.headers().filter(|(name, _)| forwarded(name, forward_credentials)) {
        headers.push(field);
    }
    // Without FC's x-fc-base-path prefix, and without the route prefix
    // when NOSLATE_FC_ROUTES_STRIP says so (fc-protocol.md §9.5).
    let url = crate::route::function_url(head.target(), to.url_skip);
    let mut baggage: [(&[u8], &[u8]); BAGGAGE.len() + 1] = [(b"", b""); BAGGAGE.len() + 1];
    let mut n = 0;
    for (name, key) in BAGGAGE {
        if let Some(v) = head.header(name) {
            baggage[n] = (key, v);
            n += 1;
        }
    }
    baggage[n] = (b"fc-invocation-type", if to.origin.is_event() { b"event" } else { b"http" });
    let msg = InvokeRequestHead {
        name: to.function,
        url: Some(&url),
        method: Some(head.method()),
        headers: headers.as_slice(),
        baggage: &baggage[..=n],
        deadline: Some(to.deadline_ms),
        request_id: Some(to.request_id),
    };
    let len = msg.encoded_len(inline_len);
    scratch.encoded(|buf| {
        buf.extend_from_slice(&grpc::message_prefix(len as u32));
        msg.encode_with_body_prefix(inline_len, buf);
    })
}

/// One step of moving the body into messages.
#[derive(Debug)]
pub enum BodyStep {
    /// Body bytes; `prefix` opens a new message (announced whole) before them.
    Data { prefix: Option<BodyChunkPrefix>, data: Bytes },
    /// Nothing usable is buffered: read more.
    NeedMore,
    /// The body is complete (END_STREAM goes with what was sent last).
    End,
}

/// The request body of one invocation, as messages.
#[derive(Debug)]
pub struct RequestBody {
    decoder: BodyDecoder,
    /// Bytes still owed to the body message in progress (announced in its
    /// prefixes, not yet read from the client).
    msg_left: usize,
    done: bool,
    /// A body message left the first one: a refused stream cannot be
    /// retried any more.
    chunks_sent: bool,
}

impl RequestBody {
    pub fn new(framing: BodyFraming, max_body: u64) -> RequestBody {
        let limits = crate::http1::Limits { max_body, ..Default::default() };
        RequestBody {
            decoder: BodyDecoder::new(framing, &limits),
            msg_left: 0,
            done: framing == BodyFraming::None,
            chunks_sent: false,
        }
    }

    /// How many more bytes must be buffered (`buffered` are) before the
    /// whole body can ride in the first message; 0 when it can already, or
    /// never will (chunked, over `INLINE_BODY_MAX`, taken already).
    pub fn inline_missing(&self, buffered: usize) -> usize {
        match self.decoder {
            BodyDecoder::Length { remaining } if !self.done && remaining as usize <= INLINE_BODY_MAX => {
                (remaining as usize).saturating_sub(buffered)
            }
            _ => 0,
        }
    }

    /// The body for the first message: all of a Content-Length body of at
    /// most `INLINE_BODY_MAX` when it is all buffered already, else nothing.
    pub fn take_inline(&mut self, rbuf: &mut BytesMut) -> Bytes {
        let BodyDecoder::Length { remaining: n } = self.decoder else { return Bytes::new() };
        if n as usize > INLINE_BODY_MAX || (rbuf.len() as u64) < n {
            return Bytes::new();
        }
        let mut inline = Bytes::new();
        if let Ok(Decoded::Data(data)) = self.decoder.decode(rbuf, n as usize) {
            inline = data;
        }
        if inline.len() as u64 == n {
            self.done = true;
        }
        inline
    }

    /// The next piece of the body from `rbuf`. A refusal (bad chunk framing,
    /// over the size limit) ends the body.
    pub fn next(&mut self, rbuf: &mut BytesMut) -> Result<BodyStep, RequestError> {
        if self.done {
            return Ok(BodyStep::End);
        }
        let max = if self.msg_left > 0 { self.msg_left } else { CHUNK_MAX };
        match self.decoder.decode(rbuf, max)? {
            Decoded::Data(data) => {
                let prefix = if self.msg_left == 0 {
                    let more = self.decoder.unit_remaining().min((CHUNK_MAX - data.len()) as u64) as usize;
                    self.msg_left = more;
                    Some(proto::body_chunk_prefix(data.len() + more))
                } else {
                    self.msg_left -= data.len();
                    None
                };
                self.chunks_sent = true;
                Ok(BodyStep::Data { prefix, data })
            }
            Decoded::NeedMore => Ok(BodyStep::NeedMore),
            Decoded::End => {
                debug_assert_eq!(self.msg_left, 0, "body ended inside an announced message");
                self.done = true;
                Ok(BodyStep::End)
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn chunks_sent(&self) -> bool {
        self.chunks_sent
    }

    /// The part of the body not read yet: none once it is done, the rest of
    /// a Content-Length body (buffered bytes still counted: they are dropped
    /// first), unknown (None) for a chunked one.
    pub fn unread(&self) -> Option<u64> {
        if self.done {
            return Some(0);
        }
        match self.decoder {
            BodyDecoder::Length { remaining } => Some(remaining),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fc::testing::head;
    use crate::grpc::Deframer;
    use crate::proto::InvokeRequest;

    fn target(origin: Origin, url_skip: usize) -> InvokeTarget<'static> {
        InvokeTarget { function: "echo", url_skip, origin, deadline_ms: 1.5e12, request_id: b"rid-1" }
    }

    /// Decode a stream of framed messages.
    fn messages(stream: &[u8]) -> Vec<Bytes> {
        let mut d = Deframer::new(1 << 24);
        d.push(Bytes::copy_from_slice(stream));
        std::iter::from_fn(|| d.next_message().unwrap()).collect()
    }

    #[test]
    fn first_message_filters_lowers_rewrites_and_adds_baggage() {
        let h = head(concat!(
            "POST /base/api/x?q=1 HTTP/1.1\r\nHost: h\r\nX-Custom: A\r\nConnection: keep-alive\r\nTE: trailers\r\n",
            "Proxy-Authorization: x\r\nx-fc-access-key-id: secret\r\nx-fc-region: cn-hangzhou\r\n",
            "x-fc-base-path: /base\r\nx-custom: b\r\n\r\n"
        ));
        for (creds, origin) in [(false, Origin::FcHttp), (true, Origin::FcEvent)] {
            let mut bytes = first_message(&h, &target(origin, 5), creds, 0, &mut Scratch::default()).to_vec();
            let msgs = messages(&bytes);
            assert_eq!(msgs.len(), 1);
            let m = InvokeRequest::decode(&msgs[0]).unwrap();
            assert_eq!(
                (m.name, m.url, m.method, m.request_id),
                (Some("echo"), Some("/api/x?q=1"), Some("POST"), Some("rid-1"))
            );
            assert_eq!(m.deadline, Some(1.5e12));
            assert_eq!(m.body, None);
            let names: Vec<&[u8]> = m.headers.iter().map(|(n, _)| *n).collect();
            let mut want: Vec<&[u8]> = vec![b"host", b"x-custom"];
            if creds {
                want.push(b"x-fc-access-key-id");
            }
            want.extend([b"x-fc-region" as &[u8], b"x-fc-base-path", b"x-custom"]);
            assert_eq!(names, want);
            assert_eq!(m.headers[1].1, b"A", "values as received");
            let kind: &[u8] = if origin.is_event() { b"event" } else { b"http" };
            assert_eq!(
                m.baggage,
                vec![(b"fc-region" as &[u8], b"cn-hangzhou" as &[u8]), (b"fc-invocation-type", kind)]
            );
            bytes.clear();
        }
    }

    #[test]
    fn inline_body_rides_in_the_first_message() {
        let text = "POST /invoke HTTP/1.1\r\ncontent-length: 5\r\n\r\n";
        let h = head(text);
        let mut body = RequestBody::new(h.framing(), 1 << 20);
        let mut rbuf = BytesMut::from(&b"hell"[..]);
        assert!(body.take_inline(&mut rbuf).is_empty(), "not all buffered: streamed instead");
        rbuf.extend_from_slice(b"oNEXT");
        let inline = body.take_inline(&mut rbuf);
        assert_eq!((&inline[..], &rbuf[..]), (&b"hello"[..], &b"NEXT"[..]));
        assert!(body.is_done() && !body.chunks_sent());
        assert_eq!(body.unread(), Some(0));
        let mut stream =
            first_message(&h, &target(Origin::LocalEvent, 0), false, inline.len(), &mut Scratch::default()).to_vec();
        stream.extend_from_slice(&inline);
        let m = messages(&stream);
        assert_eq!(InvokeRequest::decode(&m[0]).unwrap().body, Some(&b"hello"[..]));
        let big = RequestBody::new(BodyFraming::Length(INLINE_BODY_MAX as u64 + 1), u64::MAX)
            .take_inline(&mut BytesMut::from(&vec![0u8; INLINE_BODY_MAX + 1][..]));
        assert!(big.is_empty(), "too large to inline");
    }

    #[test]
    fn inline_missing_counts_what_a_small_length_body_still_lacks() {
        let small = RequestBody::new(BodyFraming::Length(5), u64::MAX);
        assert_eq!((small.inline_missing(0), small.inline_missing(3), small.inline_missing(9)), (5, 2, 0));
        let mut taken = RequestBody::new(BodyFraming::Length(5), u64::MAX);
        taken.take_inline(&mut BytesMut::from(&b"hello"[..]));
        assert_eq!(taken.inline_missing(0), 0, "already in the first message");
        let edge = RequestBody::new(BodyFraming::Length(INLINE_BODY_MAX as u64), u64::MAX);
        assert_eq!(edge.inline_missing(1), INLINE_BODY_MAX - 1);
        let big = RequestBody::new(BodyFraming::Length(INLINE_BODY_MAX as u64 + 1), u64::MAX);
        assert_eq!(big.inline_missing(0), 0, "too large to inline");
        assert_eq!(RequestBody::new(BodyFraming::Chunked, u64::MAX).inline_missing(0), 0);
        assert_eq!(RequestBody::new(BodyFraming::None, u64::MAX).inline_missing(0), 0);
    }

    /// Feed `wire` split at `split`, move the body into messages; the
    /// framed messages, their bodies and what is left in the buffer.
    fn stream_body(
        framing: BodyFraming,
        wire: &[u8],
        split: usize,
    ) -> (Vec<Bytes>, Vec<u8>, Vec<u8>, Result<(), RequestError>) {
        let mut body = RequestBody::new(framing, 1 << 20);
        let mut rbuf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = wire.chunks(split.max(1));
        let result = loop {
            match body.next(&mut rbuf) {
                Ok(BodyStep::Data { prefix, data }) => {
                    assert!(!data.is_empty() && data.len() <= CHUNK_MAX);
                    if let Some(p) = prefix {
                        out.extend_from_slice(p.as_bytes());
                    }
                    out.extend_from_slice(&data);
                }
                Ok(BodyStep::NeedMore) => match pieces.next() {
                    Some(p) => rbuf.extend_from_slice(p),
                    None => break Ok(()),
                },
                Ok(BodyStep::End) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let rest: Vec<u8> = rbuf.iter().copied().chain(pieces.flatten().copied()).collect();
        let msgs = messages(&out);
        let bodies = msgs.iter().flat_map(|m| InvokeRequest::decode(m).unwrap().body.unwrap().to_vec()).collect();
        (msgs, bodies, rest, result)
    }

    #[test]
    fn length_body_messages_at_every_split() {
        let data: Vec<u8> = (0..CHUNK_MAX * 2 + 10).map(|i| i as u8).collect();
        let mut wire = data.clone();
        wire.extend_from_slice(b"GET /next");
        for split in [1, 2, 3, 7, 100, 4096, 65_535, 65_536, 65_537, wire.len()] {
            let (msgs, bodies, rest, result) = stream_body(BodyFraming::Length(data.len() as u64), &wire, split);
            assert_eq!(result, Ok(()));
            assert_eq!(msgs.len(), 3, "announced whole: split {split}");
            assert_eq!(bodies, data, "split {split}");
            assert_eq!(rest, b"GET /next", "split {split}");
        }
    }

    #[test]
    fn chunked_body_messages_at_every_split() {
        let wire: &[u8] = b"5\r\nhello\r\n3;x=y\r\n, w\r\n4\r\norld\r\n0\r\n\r\nNEXT";
        for split in 1..=wire.len() {
            let (msgs, bodies, rest, result) = stream_body(BodyFraming::Chunked, wire, split);
            assert_eq!(result, Ok(()));
            assert_eq!(msgs.len(), 3, "one message per chunk: split {split}");
            assert_eq!(bodies, b"hello, world", "split {split}");
            assert_eq!(rest, b"NEXT", "split {split}");
        }
        let (_, _, _, result) = stream_body(BodyFraming::Chunked, b"zz\r\n", 1);
        assert_eq!(result.unwrap_err().status(), 400);
    }

    #[test]
    fn unread_rest() {
        let mut body = RequestBody::new(BodyFraming::Length(10), 100);
        let mut rbuf = BytesMut::from(&b"abc"[..]);
        assert!(matches!(body.next(&mut rbuf), Ok(BodyStep::Data { prefix: Some(_), .. })));
        assert_eq!(body.unread(), Some(7));
        assert!(body.chunks_sent());
        assert_eq!(RequestBody::new(BodyFraming::Chunked, 100).unread(), None);
        assert_eq!(RequestBody::new(BodyFraming::None, 100).unread(), Some(0));
    }
}
