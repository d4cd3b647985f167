//! The response half of an invocation, sans-IO: Noslated's `InvokeResponse`
//! stream (gRPC head, DATA, trailers) becomes HTTP/1.1 response bytes in the
//! client's [`OutQueue`].
//!
//! [`ResponseWriter`] frames the function's head and body (docs/fc-contract.md
//! §8.2): chunked coding, or `Content-Length` when the function set one, or
//! until close for HTTP/1.0, or no body (HEAD, 204, 304). Only a final
//! status (200–599) and a bounded head are passed on.
//! [`ResponseSplice`] feeds DATA to `splice::ResponseDecoder` and the pieces
//! to the writer, and judges the gRPC head and trailers. Body bytes are never
//! copied: they go to the queue as slices of the DATA payloads, each chunk
//! between an owned size line and a static CRLF.

use bytes::Bytes;

use super::dispatch::supports_chunked;
use super::error::{InvokeError, ProtocolError, ResponseError};
use super::out::{Fields, OutQueue, Scratch};
use crate::grpc;
use crate::h2::HeaderList;
use crate::http1::request::RequestHead;
use crate::http1::response::{self, ChunkHead, ResponseFraming};
use crate::pool::BufPool;
use crate::proto::InvokeResult;
use crate::splice::{Piece, ResponseDecoder};

/// Response head fields kept on the stack; more spill to the heap.
const INLINE_FIELDS: usize = 32;
/// Room made in the scratch buffer before a head is written into it.
const HEAD_RESERVE: usize = 1024;
/// Largest function response head we pass on, counted as the header lines
/// we would write (name, `: `, value, CRLF). FC answers `502 BadResponse`
/// above 8 KB of response headers (docs/fc-contract.md §8.2); twice that
/// leaves room for an uncertain limit, and a function sending up to the 1 MiB
/// gRPC message bound gets our own clear 502 instead of FC's.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Statuses a function may answer with: a final status (RFC 9110 §15).
/// An interim 1xx as the final answer would leave the client waiting for
/// another (or, with 101, switch protocols on a connection we keep), and
/// 600–999 is no HTTP status at all.
pub const FINAL_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;
/// Response headers FC manages itself (docs/fc-contract.md §8.2); our HTTP/1.1
/// layer writes its own framing.
const RESPONSE_DROP: &[&[u8]] = &[
    b"connection",
    b"content-length",
    b"date",
    b"keep-alive",
    b"server",
    b"transfer-encoding",
    b"trailer",
    b"upgrade",
];

/// Where the HTTP/1.1 response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resp {
    /// No response head written yet.
    Waiting,
    Chunked,
    /// `Content-Length`, with this many bytes still to send.
    Length(u64),
    /// HTTP/1.0 without a length: the body ends when we close.
    UntilClose,
    /// HEAD request, 204 or 304: headers only.
    NoBody,
    /// The response is complete.
    Done,
}

/// Frames one HTTP/1.1 response from the function's head and body pieces.
#[derive(Debug)]
pub struct ResponseWriter {
    resp: Resp,
    keep_alive: bool,
    head_request: bool,
    chunked_ok: bool,
}

/// Whether a function's response header reaches FC as given.
fn passes(name: &[u8], value: &[u8]) -> bool {
    let forbidden = RESPONSE_DROP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"x-fc-"))
        || (name.eq_ignore_ascii_case(b"content-disposition") && is_attachment(value));
    let valid = !name.is_empty()
        && name.iter().all(|b| b.is_ascii_graphic() && *b != b':')
        && value.iter().all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
    !forbidden && valid
}

/// Whether a `Content-Disposition` value's type is `attachment` (RFC 6266
/// §4.1: the type is a case-insensitive token before any `;` parameters),
/// which FC forbids in a response (docs/fc-contract.md §8.2); `inline` and
/// other types pass.
fn is_attachment(value: &[u8]) -> bool {
    let kind = value.split(|b| *b == b';').next().unwrap_or_default();
    kind.trim_ascii().eq_ignore_ascii_case(b"attachment")
}

/// The header pairs of an `InvokeResultResponse` for [`ResponseWriter::head`]
/// (the message was checked when its piece was made).
fn result_headers<'h>(result: &'h [u8]) -> impl Fn(&mut dyn FnMut(&'h [u8], &'h [u8])) + 'h {
    move |f| {
        let _checked = InvokeResult::decode_each(result, &mut *f);
    }
}

impl ResponseWriter {
    pub fn new(request: &RequestHead) -> ResponseWriter {
        ResponseWriter {
            resp: Resp::Waiting,
            keep_alive: request.keep_alive(),
            head_request: request.method() == b"HEAD",
            chunked_ok: supports_chunked(request),
        }
    }

    pub fn state(&self) -> Resp {
        self.resp
    }

    /// No byte of the response is out yet: a failure can still be answered.
    pub fn is_waiting(&self) -> bool {
        self.resp == Resp::Waiting
    }

    /// Whether the connection may carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The function's head: status line, its headers (minus those FC
    /// forbids, plus `x-fc-status: 200`) and our framing. `headers` lists
    /// the function's header pairs to the callback it is given (the pairs
    /// stay where they are: nothing is collected unless there are very many).
    ///
    /// Refused, with nothing written (the invocation can still be answered
    /// with a 502): a status outside `FINAL_STATUSES`, and a head over
    /// `MAX_RESPONSE_HEAD`.
    pub fn head<'h>(
        &mut self,
        status: u16,
        headers: impl Fn(&mut dyn FnMut(&'h [u8], &'h [u8])),
        out: &mut OutQueue,
        scratch: &mut Scratch,
    ) -> Result<(), ResponseError> {
        if !FINAL_STATUSES.contains(&status) {
            return Err(ResponseError::BadStatus(status));
        }
        let mut length = None;
        let mut head_len = 0usize;
        // The fields to write, on the stack unless there are very many; none
        // once the head is known to be too large.
        let mut fields: Fields<'_, INLINE_FIELDS> = Fields::new();
        headers(&mut |name, value| {
            if name.eq_ignore_ascii_case(b"content-length") {
                length = crate::fc::dispatch::decimal(value.trim_ascii());
            }
            if passes(name, value) && head_len <= MAX_RESPONSE_HEAD {
                head_len = head_len.saturating_add(name.len() + value.len() + 4);
                fields.push((name, value));
            }
        });
        if head_len > MAX_RESPONSE_HEAD {
            return Err(ResponseError::HeadTooLarge);
        }
        fields.push((b"x-fc-status", b"200"));
        let no_body = self.head_request || status == 204 || status == 304;
        let (framing, resp) = if no_body {
            (ResponseFraming::NoBody, Resp::NoBody)
        } else if let Some(n) = length {
            (ResponseFraming::Length(n), Resp::Length(n))
        } else if self.chunked_ok {
            (ResponseFraming::Chunked, Resp::Chunked)
        } else {
            self.keep_alive = false;
            (ResponseFraming::NoBody, Resp::UntilClose)
        };
        // HEAD keeps the function's length visible without sending a body.
        let framing = match (framing, length) {
            (ResponseFraming::NoBody, Some(n)) if self.head_request => ResponseFraming::Length(n),
            (f, _) => f,
        };
        self.resp = resp;
        // Written into the loop's scratch buffer: a refcount, not an
        // allocation, per head.
        scratch.reserve(HEAD_RESERVE);
        response::write_head(scratch.buf(), status, fields.as_slice(), framing, self.keep_alive);
        out.push(scratch.take());
        Ok(())
    }

    /// A body slice, framed as the head said. More than the function's
    /// `content-length` is never sent.
    pub fn body(&mut self, body: Bytes, out: &mut OutQueue, scratch: &mut Scratch) -> Result<(), ResponseError> {
        if body.is_empty() {
            // A zero-size chunk is the last chunk (RFC 9112 §7.1): an empty
            // piece would end a chunked answer early. It carries nothing.
            return Ok(());
        }
        match self.resp {
            Resp::Chunked => {
                let size = ChunkHead::new(body.len());
                out.push(scratch.bytes(&[size.as_bytes()]));
                out.push(body);
                out.push(Bytes::from_static(response::CHUNK_END));
            }
            Resp::Length(left) => {
                if body.len() as u64 > left {
                    return Err(ResponseError::LongerThanContentLength);
                }
                self.resp = Resp::Length(left - body.len() as u64);
                out.push(body);
            }
            Resp::UntilClose => out.push(body),
            Resp::NoBody | Resp::Done | Resp::Waiting => {}
        }
        Ok(())
    }

    /// The function's response ended well: finish the HTTP response.
    pub fn end(&mut self, out: &mut OutQueue) -> Result<(), ResponseError> {
        match self.resp {
            Resp::Chunked => out.push(Bytes::from_static(response::LAST_CHUNK)),
            Resp::Length(0) | Resp::NoBody => {}
            Resp::Length(_) => return Err(ResponseError::ShorterThanContentLength),
            Resp::UntilClose => self.keep_alive = false,
            Resp::Waiting | Resp::Done => {}
        }
        self.resp = Resp::Done;
        Ok(())
    }
}

/// Whether the response half goes on or is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Continue,
    /// Trailers said OK and the HTTP/1.1 response is complete.
    Done,
}

/// The response half of one invocation: gRPC head, DATA and trailers in,
/// HTTP/1.1 bytes out.
pub struct ResponseSplice {
    decoder: ResponseDecoder,
    pub writer: ResponseWriter,
    trailers_ok: bool,
}

impl ResponseSplice {
    pub fn new(request: &RequestHead) -> ResponseSplice {
        ResponseSplice { decoder: ResponseDecoder::default(), writer: ResponseWriter::new(request), trailers_ok: false }
    }

    /// Hand back the reusable storage (the decoder's assembly buffer).
    pub fn recycle(self, pool: &mut BufPool) {
        self.decoder.recycle(pool);
    }

    /// Start over for a retry on another stream (nothing was received that
    /// reached the client).
    pub fn restart(&mut self) {
        self.decoder = ResponseDecoder::default();
        self.trailers_ok = false;
    }

    /// The stream ended with an OK status (it needs no reset).
    pub fn ended_ok(&self) -> bool {
        self.trailers_ok
    }

    /// HEADERS on the stream: the gRPC response head, or the trailers.
    pub fn on_headers(
        &mut self,
        fields: &HeaderList,
        end_stream: bool,
        out: &mut OutQueue,
    ) -> Result<Progress, InvokeError> {
        let pairs = || fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        if !end_stream {
            grpc::check_response_head(pairs()).map_err(|s| InvokeError::Protocol(ProtocolError::Head(s)))?;
            return Ok(Progress::Continue);
        }
        let status =
            grpc::status_from_trailers(pairs()).map_err(|e| InvokeError::Protocol(ProtocolError::Trailers(e)))?;
        if !status.is_ok() {
            return Err(InvokeError::Status(status));
        }
        if !self.decoder.is_idle() {
            return Err(ResponseError::EndedInsideMessage.into());
        }
        if !self.decoder.head_seen() {
            return Err(ResponseError::NoHead.into());
        }
        self.trailers_ok = true;
        self.writer.end(out)?;
        Ok(Progress::Done)
    }

    /// DATA on the stream: its pieces become response bytes in `out`.
    /// `pieces` is the caller's reusable scratch list (left empty).
    pub fn on_data(
        &mut self,
        data: Bytes,
        out: &mut OutQueue,
        scratch: &mut Scratch,
        pieces: &mut Vec<Piece>,
        pool: &mut BufPool,
    ) -> Result<(), InvokeError> {
        pieces.clear();
        let result = self.decoder.feed(data, &mut |p| pieces.push(p), pool);
        let mut failed = None;
        for piece in pieces.drain(..) {
            if failed.is_some() {
                continue;
            }
            match piece {
                Piece::Head { status, result } => {
                    failed =
                        self.writer.head(status, result_headers(&result), out, scratch).err().map(InvokeError::from)
                }
                Piece::Body(b) => failed = self.writer.body(b, out, scratch).err().map(InvokeError::from),
                Piece::Error(f) => failed = Some(InvokeError::Noslated(f)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        result.map_err(|e| InvokeError::Protocol(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fc::testing::{head, queued};
    use crate::grpc::Code;
    use crate::splice::samples::{head_hi_hi, hex, BODY_HI, ERROR, HEAD};

    fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderList {
        pairs.iter().map(|(k, v)| (Bytes::from_static(k.as_bytes()), Bytes::from_static(v.as_bytes()))).collect()
    }

    /// A splice for `request` whose gRPC response head was accepted.
    fn after_grpc_head(request: &str) -> (ResponseSplice, OutQueue) {
        let mut s = ResponseSplice::new(&head(request));
        let mut out = OutQueue::default();
        let ok = fields(&[(":status", "200"), ("content-type", "application/grpc")]);
        assert_eq!(s.on_headers(&ok, false, &mut out), Ok(Progress::Continue));
        (s, out)
    }

    /// One DATA payload through the splice.
    fn data(s: &mut ResponseSplice, bytes: Bytes, out: &mut OutQueue) -> Result<(), InvokeError> {
        s.on_data(bytes, out, &mut Scratch::default(), &mut Vec::new(), &mut BufPool::default())
    }

    /// Run a whole response split at `split`: HTTP/1.1 bytes and the outcome.
    fn splice(request: &str, stream: &[u8], split: usize) -> (String, Result<Progress, InvokeError>) {
        let (mut s, mut out) = after_grpc_head(request);
        for chunk in stream.chunks(split.max(1)) {
            if let Err(e) = data(&mut s, Bytes::copy_from_slice(chunk), &mut out) {
                return (queued(&out), Err(e));
            }
        }
        let end = s.on_headers(&fields(&[("grpc-status", "0")]), true, &mut out);
        (queued(&out), end)
    }

    /// Only a stream that ended with grpc-status 0 needs no reset; a
    /// restart (retry on another stream) forgets how the old one ended.
    #[test]
    fn ended_ok_only_after_ok_trailers() {
        assert!(!ResponseSplice::new(&head("POST /invoke HTTP/1.1\r\n\r\n")).ended_ok(), "nothing received");
        let (mut s, mut out) = after_grpc_head("POST /invoke HTTP/1.1\r\n\r\n");
        data(&mut s, Bytes::from(head_hi_hi()), &mut out).unwrap();
        assert!(!s.ended_ok(), "no trailers yet");
        assert_eq!(s.on_headers(&fields(&[("grpc-status", "0")]), true, &mut out), Ok(Progress::Done));
        assert!(s.ended_ok());
        s.restart();
        assert!(!s.ended_ok(), "a restarted splice has not ended");
        let (mut failed, mut out) = after_grpc_head("POST /invoke HTTP/1.1\r\n\r\n");
        assert!(failed.on_headers(&fields(&[("grpc-status", "14")]), true, &mut out).is_err());
        assert!(!failed.ended_ok(), "a failed status is not OK");
    }

    /// 204 and 304 carry no body: no chunked framing, no length.
    #[test]
    fn no_body_statuses_get_no_framing() {
        for (status, varint) in [(204, "cc 01"), (304, "b0 02")] {
            let head_hex = HEAD.replace("c8 01", varint);
            let (text, end) = splice("POST /invoke HTTP/1.1\r\n\r\n", &hex(&head_hex), 1);
            assert_eq!(end, Ok(Progress::Done), "{status}");
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(!text.contains("chunked") && !text.to_ascii_lowercase().contains("content-length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"), "{status}: nothing after the head: {text:?}");
        }
    }

    /// Until the function's head is written a failure can still be
    /// answered; after it, never (it would write a second head).
    #[test]
    fn waiting_until_the_head_goes_out() {
        let (mut s, mut out) = after_grpc_head("POST /invoke HTTP/1.1\r\n\r\n");
        assert!(s.writer.is_waiting(), "gRPC head only: nothing went out yet");
        data(&mut s, Bytes::from(hex(HEAD)), &mut out).unwrap();
        assert!(!out.is_empty());
        assert!(!s.writer.is_waiting(), "the function's head went out");
    }

    /// A function's header reaches FC only when FC allows it and it is
    /// well formed: no hop-by-hop or framing field, no `x-fc-*`, a token
    /// name, a value without control bytes (a CR or LF would split the head).
    #[test]
    fn response_headers_that_pass() {
        for ok in [&b"content-type"[..], b"x-custom", b"X-Fc", b"x-fcx", b"set-cookie"] {
            assert!(passes(ok, b"v\tw"), "{}", String::from_utf8_lossy(ok));
        }
        for dropped in RESPONSE_DROP.iter().copied().chain([&b"Content-Length"[..], b"x-fc-status", b"X-FC-request-id"])
        {
            assert!(!passes(dropped, b"v"), "{}", String::from_utf8_lossy(dropped));
        }
        for bad_name in [&b""[..], b"a b", b"a:b", b"a\x7f", b"caf\xc3\xa9"] {
            assert!(!passes(bad_name, b"v"), "{:?}", bad_name);
        }
        for bad_value in [&b"a\rb"[..], b"a\nb", b"a\x00", b"a\x7f", b"\x1f"] {
            assert!(!passes(b"x-custom", bad_value), "{bad_value:?}");
        }
    }

    /// FC forbids `content-disposition: attachment` in a response: that
    /// type goes, with or without parameters and in any case; others stay.
    #[test]
    fn an_attachment_disposition_is_dropped() {
        for attachment in
            [&b"attachment"[..], b"Attachment", b" ATTACHMENT ", b"attachment; filename=\"a.csv\"", b"attachment;"]
        {
            assert!(!passes(b"Content-Disposition", attachment), "{}", String::from_utf8_lossy(attachment));
        }
        for kept in
            [&b"inline"[..], b"inline; filename=\"attachment\"", b"attachments", b"form-data; name=attachment", b""]
        {
            assert!(passes(b"content-disposition", kept), "{}", String::from_utf8_lossy(kept));
        }
    }

    /// An empty body piece writes nothing: framed as a chunk it would be
    /// the last chunk and end the answer before the function's body did.
    #[test]
    fn an_empty_piece_never_ends_a_chunked_answer() {
        let (mut s, mut out) = after_grpc_head("POST /invoke HTTP/1.1\r\n\r\n");
        data(&mut s, Bytes::from(hex(HEAD)), &mut out).unwrap();
        let before = queued(&out);
        assert!(before.contains("Transfer-Encoding: chunked"), "{before}");
        s.writer.body(Bytes::new(), &mut out, &mut Scratch::default()).unwrap();
        assert_eq!(queued(&out), before, "an empty piece wrote bytes");
    }

    #[test]
    fn chunked_response_at_every_split() {
        let stream = head_hi_hi();
        for split in 1..=stream.len() {
            let (text, end) = splice("POST /invoke HTTP/1.1\r\n\r\n", &stream, split);
            assert_eq!(end, Ok(Progress::Done));
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.contains("content-type: text/plain\r\nx-fc-status: 200\r\n"), "{text}");
            assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
            let body = text.split_once("\r\n\r\n").unwrap().1;
            let mut decoded = String::new();
            let mut rest = body;
            loop {
                let (size, after) = rest.split_once("\r\n").unwrap();
                let n = usize::from_str_radix(size, 16).unwrap();
                if n == 0 {
                    assert_eq!(after, "\r\n");
                    break;
                }
                decoded.push_str(&after[..n]);
                rest = &after[n + 2..];
            }
            assert_eq!(decoded, "hihi", "split {split}");
        }
    }

    #[test]
    fn http10_head_and_errors() {
        let mut stream = hex(HEAD);
        stream.extend(hex(BODY_HI));
        let (text, end) = splice("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", &stream, 4);
        assert_eq!(end, Ok(Progress::Done));
        assert!(text.contains("Connection: close") && text.ends_with("\r\n\r\nhi"), "{text}");
        let (text, _) = splice("HEAD / HTTP/1.1\r\n\r\n", &stream, 4);
        assert!(!text.contains("hi") && !text.contains("chunked"), "{text}");
        let (text, end) = splice("POST / HTTP/1.1\r\n\r\n", &hex(ERROR), 1);
        assert_eq!(text, "", "nothing is written before the head");
        match end {
            Err(InvokeError::Noslated(f)) => assert_eq!((f.name.as_str(), f.code), ("Error", Some(8))),
            other => panic!("{other:?}"),
        }
    }

    fn pairs<'h>(list: &'h [(Bytes, Bytes)]) -> impl Fn(&mut dyn FnMut(&'h [u8], &'h [u8])) + 'h {
        move |f| list.iter().for_each(|(k, v)| f(k, v))
    }

    #[test]
    fn many_headers_spill_in_order() {
        let h = head("GET / HTTP/1.1\r\n\r\n");
        for count in [0, 1, INLINE_FIELDS - 2, INLINE_FIELDS - 1, INLINE_FIELDS, INLINE_FIELDS + 8] {
            let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
            let names: Vec<String> = (0..count).map(|i| format!("h{i}")).collect();
            let headers: Vec<(Bytes, Bytes)> =
                names.iter().map(|n| (Bytes::from(n.clone()), Bytes::from(format!("v-{n}")))).collect();
            ResponseWriter::new(&h).head(200, pairs(&headers), &mut out, &mut scratch).unwrap();
            let text = queued(&out);
            let lines: Vec<&str> = text.split("\r\n").skip(1).take(names.len() + 1).collect();
            let want: Vec<String> =
                names.iter().map(|n| format!("{n}: v-{n}")).chain(["x-fc-status: 200".to_string()]).collect();
            assert_eq!(lines, want, "{count} headers");
        }
    }

    /// Issue #20 item 2: a 1xx or 600+ status from the function is refused
    /// before any byte of the head is written (main wrote
    /// `HTTP/1.1 101 Switching Protocols` as the final answer and kept the
    /// connection).
    #[test]
    fn only_final_statuses_pass() {
        let h = head("GET / HTTP/1.1\r\n\r\n");
        let headers = [(Bytes::from_static(b"upgrade"), Bytes::from_static(b"websocket"))];
        for status in [0, 1, 100, 101, 103, 199, 600, 999, 1000, u16::MAX] {
            let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
            let mut w = ResponseWriter::new(&h);
            assert_eq!(w.head(status, pairs(&headers), &mut out, &mut scratch), Err(ResponseError::BadStatus(status)));
            assert_eq!((queued(&out), w.is_waiting()), (String::new(), true), "{status}: nothing written");
            let err = InvokeError::from(ResponseError::BadStatus(status));
            assert_eq!(err.http_status(), 502);
            assert!(String::from_utf8(err.json_body(false)).unwrap().contains("\"BadStatus\""));
        }
        for status in [200, 204, 404, 599] {
            let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
            assert_eq!(ResponseWriter::new(&h).head(status, pairs(&headers), &mut out, &mut scratch), Ok(()));
            assert!(queued(&out).starts_with(&format!("HTTP/1.1 {status} ")), "{status}");
        }
    }

    /// Issue #20 item 8: a response head over `MAX_RESPONSE_HEAD` is refused
    /// before any byte of it is written (main passed heads up to the 1 MiB
    /// message bound).
    #[test]
    fn response_head_is_bounded() {
        let h = head("GET / HTTP/1.1\r\n\r\n");
        let value = Bytes::from(vec![b'v'; 1000]);
        for (count, ok) in [(15, true), (17, false), (1000, false)] {
            let headers: Vec<(Bytes, Bytes)> =
                (0..count).map(|i| (Bytes::from(format!("h{i:04}")), value.clone())).collect();
            let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
            let got = ResponseWriter::new(&h).head(200, pairs(&headers), &mut out, &mut scratch);
            if ok {
                assert_eq!(got, Ok(()), "{count}");
            } else {
                assert_eq!((got, queued(&out)), (Err(ResponseError::HeadTooLarge), String::new()), "{count}");
            }
        }
        let err = InvokeError::from(ResponseError::HeadTooLarge);
        assert_eq!(err.http_status(), 502);
    }

    #[test]
    fn content_length_is_held_to() {
        let h = head("GET / HTTP/1.1\r\n\r\n");
        let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
        let mut w = ResponseWriter::new(&h);
        let headers = [
            (Bytes::from_static(b"Content-Length"), Bytes::from_static(b"3")),
            (Bytes::from_static(b"x-fc-x"), Bytes::from_static(b"1")),
        ];
        w.head(201, pairs(&headers), &mut out, &mut scratch).unwrap();
        assert_eq!(w.state(), Resp::Length(3));
        let text = queued(&out);
        assert!(text.starts_with("HTTP/1.1 201 Created\r\n") && text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(!text.contains("x-fc-x"), "x-fc-* dropped: {text}");
        assert_eq!(w.body(Bytes::from_static(b"ab"), &mut out, &mut scratch), Ok(()));
        assert_eq!(w.end(&mut out), Err(ResponseError::ShorterThanContentLength));
        let mut w = ResponseWriter::new(&h);
        w.head(200, pairs(&headers), &mut out, &mut scratch).unwrap();
        assert_eq!(
            w.body(Bytes::from_static(b"abcd"), &mut out, &mut scratch),
            Err(ResponseError::LongerThanContentLength)
        );
        // Exactly the declared length, in two pieces: complete.
        let mut w = ResponseWriter::new(&h);
        w.head(200, pairs(&headers), &mut out, &mut scratch).unwrap();
        assert_eq!(w.body(Bytes::from_static(b"a"), &mut out, &mut scratch), Ok(()));
        assert_eq!(w.body(Bytes::from_static(b"bc"), &mut out, &mut scratch), Ok(()));
        assert_eq!(w.state(), Resp::Length(0));
        assert_eq!(w.end(&mut out), Ok(()));
    }

    #[test]
    fn heads_and_trailers_are_judged() {
        let h = head("GET / HTTP/1.1\r\n\r\n");
        let mut out = OutQueue::default();
        let mut s = ResponseSplice::new(&h);
        let bad = s.on_headers(&fields(&[(":status", "503"), ("content-type", "text/plain")]), false, &mut out);
        assert!(matches!(bad, Err(InvokeError::Protocol(ProtocolError::Head(_)))), "{bad:?}");
        let status = s.on_headers(&fields(&[("grpc-status", "14"), ("grpc-message", "down")]), true, &mut out);
        assert!(
            matches!(&status, Err(InvokeError::Status(st)) if st.code == Code(14) && st.message == "down"),
            "{status:?}"
        );
        let missing = s.on_headers(&fields(&[]), true, &mut out);
        assert!(matches!(missing, Err(InvokeError::Protocol(ProtocolError::Trailers(_)))));
        let no_head = s.on_headers(&fields(&[("grpc-status", "0")]), true, &mut out);
        assert_eq!(no_head, Err(InvokeError::Protocol(ProtocolError::Response(ResponseError::NoHead))));
        let (mut scratch, mut pieces) = (Scratch::default(), Vec::new());
        let half = &hex(HEAD)[..7];
        s.on_data(Bytes::copy_from_slice(half), &mut out, &mut scratch, &mut pieces, &mut BufPool::default()).unwrap();
        let inside = s.on_headers(&fields(&[("grpc-status", "0")]), true, &mut out);
        assert_eq!(inside, Err(InvokeError::Protocol(ProtocolError::Response(ResponseError::EndedInsideMessage))));
        let mut fresh = ResponseSplice::new(&h);
        let garbage = fresh.on_data(
            Bytes::from_static(&[1, 0, 0, 0, 0]),
            &mut out,
            &mut scratch,
            &mut pieces,
            &mut BufPool::default(),
        );
        assert_eq!(garbage, Err(InvokeError::Protocol(ProtocolError::Splice(crate::splice::SpliceError::Compressed))));
    }
}
