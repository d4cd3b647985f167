//! Incremental parsing of an HTTP/1.1 request head (RFC 9112 §2–§6).
//!
//! [`HeadParser`] is fed the connection's read buffer after every read. It
//! scans only the bytes it has not seen yet (so a head arriving one byte at a
//! time costs O(n)), enforces the size limits while the head is still partial,
//! and calls httparse exactly once, when the whole head (up to the empty line)
//! is present — httparse's `Complete`/`Partial` contract then always answers
//! `Complete` or an error. On success the head's bytes are split off the front
//! of the buffer without copying and owned by the returned [`RequestHead`];
//! the body (and any pipelined request) stays in the buffer.
//!
//! We are stricter than httparse where leniency lets two parsers disagree about
//! where a message ends (request smuggling): bare LF, obs-fold, whitespace
//! before the colon, conflicting `Content-Length`, `Content-Length` together
//! with `Transfer-Encoding`, and any transfer coding but a lone `chunked` are
//! all refused. Every refusal must be answered and the connection closed.
//!
//! Invariant: between calls that return `Ok(None)` the caller only appends to
//! the buffer; the parser's remembered scan position refers to its front.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::{Limits, RequestError};
use crate::pool::Scratch;

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
/// received before the request-line. Some clients send a stray CRLF after a
/// body; more than a few is noise, not a request.
pub const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Field lines handed to httparse from a stack array; heads with more lines
/// (only possible when `Limits::max_headers` is raised) use a heap array.
const STACK_HEADERS: usize = 128;

/// A field list larger than this (in fields) is not kept for reuse.
const MAX_SPARE_FIELDS: usize = 256;

/// HTTP version of the request line; httparse knows no others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither Content-Length nor Transfer-Encoding: the body is empty.
    None,
    /// `Content-Length: n`, already checked against `Limits::max_body`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Owns the head bytes (a frozen `Bytes` split off the
/// read buffer, no copy); method, target and header names and values are byte
/// ranges into it.
#[derive(Clone, Debug)]
pub struct RequestHead {
    buf: Bytes,
    method: Range<usize>,
    target: Range<usize>,
    path_len: usize,
    version: Version,
    headers: Vec<(Range<usize>, Range<usize>)>,
    framing: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
    connection_options: bool,
}

impl RequestHead {
    fn slice(&self, range: &Range<usize>) -> &[u8] {
        // Ranges are computed from this very buffer; `get` only keeps the
        // no-panic promise should that ever be wrong.
        self.buf.get(range.clone()).unwrap_or_default()
    }

    /// Method token as received (case-sensitive, RFC 9110 §9.1).
    pub fn method(&self) -> &[u8] {
        self.slice(&self.method)
    }

    /// Request-target as received (path and query for origin-form).
    pub fn target(&self) -> &[u8] {
        self.slice(&self.target)
    }

    /// Request-target up to, not including, the first `?`.
    pub fn path(&self) -> &[u8] {
        self.target().get(..self.path_len).unwrap_or_default()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Field lines in order, duplicates kept, names as received; values
    /// without surrounding whitespace.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter().map(move |(name, value)| (self.slice(name), self.slice(value)))
    }

    /// Value of the first field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, value)| value)
    }

    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive` and no `close`.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `Expect: 100-continue` on an HTTP/1.1 request. RFC 9110 §10.1.1: the
    /// expectation MUST be ignored in an HTTP/1.0 request.
    pub fn expects_continue(&self) -> bool {
        self.expects_continue
    }

    /// A `Connection` header names something besides `close` and
    /// `keep-alive`: header names that are for this hop only (RFC 9110
    /// §7.6.1). Found in the parse's one pass, so a forwarder need not look
    /// for them in the common case.
    pub fn connection_options(&self) -> bool {
        self.connection_options
    }

    /// Length of the head in bytes, request line through the empty line.
    /// Leading empty lines that were skipped are not counted.
    pub fn head_len(&self) -> usize {
        self.buf.len()
    }
}

/// Where the request-line scan is, for the early 414 check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RequestLineScan {
    #[default]
    Method,
    Target {
        len: usize,
    },
    /// Past the target (HTTP-version), or the line already ended.
    Rest,
}

/// Remembers how far the buffer was already scanned so a head arriving 1 byte
/// at a time costs O(n), not O(n²).
#[derive(Debug, Default)]
pub struct HeadParser {
    /// Bytes from the front of the buffer already scanned.
    scanned: usize,
    request_line: RequestLineScan,
    /// Index of the request line's LF once seen.
    request_line_end: Option<usize>,
    /// Start of the field line being scanned (after the previous LF).
    line_start: usize,
    /// Complete field lines seen so far.
    header_lines: usize,
    /// A finished head's field list, kept with its capacity for the next
    /// head ([`HeadParser::recycle`]).
    spare_fields: Vec<(Range<usize>, Range<usize>)>,
}

impl HeadParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ok(None): need more bytes (buffer unchanged). Ok(Some(head)): the
    /// head's bytes (and any empty lines before it) were taken off the front
    /// of `buf` (split off, or copied into `arena` if `buf` is much larger
    /// than the head, so that the head does not pin it); body bytes remain
    /// in `buf`.
    ///
    /// Err: the request must be answered with `err.status()` and the
    /// connection closed. The parser is reset after `Some` and after `Err`.
    pub fn parse_in(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        arena: &mut Scratch,
    ) -> Result<Option<RequestHead>, RequestError> {
        let found = self.scan(buf, limits);
        let (start, end) = match found {
            Ok(None) => return Ok(None),
            Ok(Some(bounds)) => bounds,
            Err(err) => {
                self.reset();
                return Err(err);
            }
        };
        let request_line_len = self.request_line_end.unwrap_or(start).saturating_sub(start);
        let header_lines = self.header_lines;
        self.reset();

        let head = buf.get(start..end).unwrap_or_default();
        let mut headers = std::mem::take(&mut self.spare_fields);
        headers.clear();
        let parsed = parse_head(head, request_line_len, header_lines, limits, &mut headers)?;
        buf.advance(start);
        // The head lives as long as its exchange. Split off a larger buffer
        // it would pin all of it (the start of a body, spare capacity) until
        // the response ends, so it is copied — a few hundred bytes, into the
        // arena — unless it is about the whole buffer.
        let len = end - start;
        let head_bytes = if buf.capacity() > 2 * len + 64 {
            let head = arena.bytes(&[&buf[..len]]);
            buf.advance(len);
            head
        } else {
            buf.split_to(len).freeze()
        };
        Ok(Some(RequestHead {
            buf: head_bytes,
            method: parsed.method,
            target: parsed.target,
            path_len: parsed.path_len,
            version: parsed.version,
            headers,
            framing: parsed.framing,
            keep_alive: parsed.keep_alive,
            expects_continue: parsed.expects_continue,
            connection_options: parsed.connection_options,
        }))
    }

    /// [`HeadParser::parse_in`] with an arena of its own (tests, tools).
    pub fn parse(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
        self.parse_in(buf, limits, &mut Scratch::default())
    }

    /// Take back a finished head's field list, for the next head.
    pub fn recycle(&mut self, head: RequestHead) {
        if head.headers.capacity() <= MAX_SPARE_FIELDS {
            self.spare_fields = head.headers;
        }
    }

    /// Forget the scan (keeping the spare field list).
    fn reset(&mut self) {
        let spare_fields = std::mem::take(&mut self.spare_fields);
        *self = HeadParser { spare_fields, ..HeadParser::default() };
    }

    /// Find the end of the head, checking line endings and limits on the way
    /// in byte order, so that the verdict does not depend on how the input was
    /// split. Returns (start of request line, end of head).
    fn scan(&mut self, bytes: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, RequestError> {
        if self.scanned > bytes.len() {
            // The caller replaced the buffer; start over rather than misread.
            *self = Self::default();
        }
        let Some(start) = skip_empty_lines(bytes)? else {
            return Ok(None);
        };
        // No valid head extends past this point, so nothing after it matters.
        let window_end = bytes.len().min(start.saturating_add(limits.max_head));
        let mut pos = self.scanned.max(start);

        if self.request_line_end.is_none() {
            while let Some(&b) = bytes.get(pos).filter(|_| pos < window_end) {
                if b == b'\n' {
                    if !preceded_by_cr(bytes, start, pos) {
                        return Err(RequestError::BadRequest("bare LF in request line"));
                    }
                    self.request_line_end = Some(pos);
                    self.request_line = RequestLineScan::Rest;
                    pos += 1;
                    self.line_start = pos;
                    break;
                }
                self.request_line = match self.request_line {
                    RequestLineScan::Method if b == b' ' => RequestLineScan::Target { len: 0 },
                    RequestLineScan::Target { .. } if b == b' ' || b == b'\r' => RequestLineScan::Rest,
                    RequestLineScan::Target { len } => {
                        if len >= limits.max_target {
                            return Err(RequestError::UriTooLong);
                        }
                        RequestLineScan::Target { len: len + 1 }
                    }
                    other => other,
                };
                pos += 1;
            }
        }

        if self.request_line_end.is_some() {
            let fields = bytes.get(pos..window_end).unwrap_or_default();
            for offset in memchr::memchr_iter(b'\n', fields) {
                let lf = pos + offset;
                if !preceded_by_cr(bytes, start, lf) {
                    return Err(RequestError::BadRequest("bare LF in header section"));
                }
                if lf - self.line_start == 1 {
                    // The line is just CR LF: end of the head.
                    return Ok(Some((start, lf + 1)));
                }
                self.header_lines += 1;
                if self.header_lines > limits.max_headers {
                    return Err(RequestError::HeadTooLarge);
                }
                self.line_start = lf + 1;
            }
            pos = pos.max(window_end);
        }

        self.scanned = pos;
        if window_end - start >= limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Skip empty lines before the request line (RFC 9112 §2.2). `Ok(None)` when
/// the bytes so far could still be an empty line.
fn skip_empty_lines(bytes: &[u8]) -> Result<Option<usize>, RequestError> {
    let mut pos = 0;
    let mut count = 0;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            count += 1;
            if count > MAX_LEADING_EMPTY_LINES {
                return Err(RequestError::BadRequest("too many empty lines before request"));
            }
            pos += 2;
        } else if rest.is_empty() || rest == b"\r" {
            return Ok(None);
        } else {
            return Ok(Some(pos));
        }
    }
}

fn preceded_by_cr(bytes: &[u8], start: usize, lf: usize) -> bool {
    lf > start && bytes.get(lf - 1) == Some(&b'\r')
}

/// The head as ranges relative to its first byte.
struct ParsedHead {
    method: Range<usize>,
    target: Range<usize>,
    path_len: usize,
    version: Version,
    framing: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
    connection_options: bool,
}

/// Validate a complete head (request line through the empty line).
fn parse_head(
    head: &[u8],
    request_line_len: usize,
    header_lines: usize,
    limits: &Limits,
    headers: &mut Vec<(Range<usize>, Range<usize>)>,
) -> Result<ParsedHead, RequestError> {
    // Our own field-line checks first: they name the cause precisely and are
    // stricter than httparse (obs-fold, whitespace before the colon).
    let fields_end = head.len().saturating_sub(2);
    let fields = head.get(request_line_len.saturating_add(1)..fields_end).unwrap_or_default();
    for line in fields.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(reason) = field_line_error(line) {
            return Err(RequestError::BadRequest(reason));
        }
    }

    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let scratch: &mut [MaybeUninit<httparse::Header<'_>>] = if header_lines <= STACK_HEADERS {
        stack.get_mut(..header_lines).unwrap_or_default()
    } else {
        heap.resize_with(header_lines, MaybeUninit::uninit);
        &mut heap
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, scratch) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(RequestError::BadRequest("malformed request head")),
        Err(err) => return Err(RequestError::BadRequest(httparse_reason(err))),
    }

    let method = range_in(head, request.method.unwrap_or_default().as_bytes());
    let target_bytes = request.path.unwrap_or_default().as_bytes();
    if target_bytes.len() > limits.max_target {
        return Err(RequestError::UriTooLong);
    }
    let target = range_in(head, target_bytes);
    let path_len = memchr::memchr(b'?', target_bytes).unwrap_or(target_bytes.len());
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(RequestError::BadRequest("unsupported HTTP version")),
    };

    let framing = body_framing(version, request.headers, limits)?;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expects_continue = false;
    let mut connection_options = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for token in list_elements(header.value) {
                let is_close = token.eq_ignore_ascii_case(b"close");
                let is_keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                close |= is_close;
                keep_alive_token |= is_keep_alive;
                connection_options |= !token.is_empty() && !is_close && !is_keep_alive;
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            expects_continue |= header.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let keep_alive = !close && (version == Version::Http11 || keep_alive_token);
    let expects_continue = expects_continue && version == Version::Http11;

    headers.extend(request.headers.iter().map(|h| (range_in(head, h.name.as_bytes()), range_in(head, h.value))));
    Ok(ParsedHead { method, target, path_len, version, framing, keep_alive, expects_continue, connection_options })
}

fn httparse_reason(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::TooManyHeaders => "too many headers",
        // Token (method or target), NewLine, Status: the request line.
        _ => "malformed request line",
    }
}

/// Position of `part` inside `base` (both from the same head).
fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => start..end,
        _ => 0..0,
    }
}

/// tchar (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why a field line (without its CRLF) is refused, if it is. Shared with the
/// chunked trailer section, which has the same grammar (RFC 9112 §7.1.2).
pub(crate) fn field_line_error(line: &[u8]) -> Option<&'static str> {
    // RFC 9112 §5.2: a server MUST reject obs-fold in a request or replace it;
    // replacing would change the bytes we hand on, so reject.
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Some("obsolete line folding");
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return Some("header line without colon");
    };
    let (name, value) = line.split_at(colon);
    if name.is_empty() {
        return Some("empty header name");
    }
    // RFC 9112 §5.1: whitespace between name and colon MUST be rejected (400).
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Some("whitespace before colon");
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Some("invalid header name");
    }
    // RFC 9110 §5.5: CR, LF and NUL MUST be rejected; other CTLs are refused
    // too since no legitimate FC header carries them.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Some("control character in header value");
    }
    None
}

/// Elements of a comma-separated list, OWS-trimmed; empty elements are kept
/// so callers can refuse them.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Body length rules of RFC 9112 §6.3, refusing everything ambiguous.
fn body_framing(
    version: Version,
    headers: &[httparse::Header<'_>],
    limits: &Limits,
) -> Result<BodyFraming, RequestError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut empty_coding = false;
    let mut other_coding = false;
    let mut chunked_not_last = false;
    let mut last_was_chunked = false;

    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3 item 5: a list of identical values may be taken
            // as that value; anything else is unrecoverable.
            for element in list_elements(header.value) {
                let n = parse_content_length(element)?;
                match content_length {
                    Some(previous) if previous != n => {
                        return Err(RequestError::BadRequest("conflicting Content-Length values"))
                    }
                    _ => content_length = Some(n),
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in list_elements(header.value) {
                if last_was_chunked {
                    chunked_not_last = true;
                }
                last_was_chunked = coding.eq_ignore_ascii_case(b"chunked");
                empty_coding |= coding.is_empty();
                other_coding |= !last_was_chunked;
            }
        }
    }

    if transfer_encoding {
        // RFC 9112 §6.1: a message with both MAY be refused, and must be
        // treated as an error before any forwarding; refusing is the only
        // safe answer in front of another parser.
        if content_length.is_some() {
            return Err(RequestError::BadRequest("both Content-Length and Transfer-Encoding present"));
        }
        // RFC 9112 §6.1: TE in HTTP/1.0 means a faulty framing intermediary.
        if version == Version::Http10 {
            return Err(RequestError::BadRequest("Transfer-Encoding in HTTP/1.0 request"));
        }
        if empty_coding {
            return Err(RequestError::BadRequest("empty Transfer-Encoding"));
        }
        // RFC 9112 §6.3 item 4: chunked not final in a request → 400.
        if chunked_not_last {
            return Err(RequestError::BadRequest("chunked is not the final transfer coding"));
        }
        if other_coding {
            return Err(RequestError::UnsupportedTransferCoding);
        }
        return Ok(BodyFraming::Chunked);
    }
    match content_length {
        None => Ok(BodyFraming::None),
        Some(n) if n > limits.max_body => Err(RequestError::BodyTooLarge),
        Some(n) => Ok(BodyFraming::Length(n)),
    }
}

/// Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, space, or radix prefix.
fn parse_content_length(digits: &[u8]) -> Result<u64, RequestError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::BadRequest("invalid Content-Length"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RequestError::BadRequest("Content-Length overflow"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPLIT_EVERYWHERE_MAX: usize = 1024;

    fn limits() -> Limits {
        Limits::default()
    }

    /// Parse `input` delivered as a whole.
    fn parse_whole(input: &[u8], limits: &Limits) -> (Result<Option<RequestHead>, RequestError>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let result = HeadParser::new().parse(&mut buf, limits);
        (result, buf)
    }

    /// Parse `input` delivered in pieces of `step` bytes; stops at the first
    /// `Some` or error.
    fn parse_stepped(
        input: &[u8],
        step: usize,
        limits: &Limits,
    ) -> (Result<Option<RequestHead>, RequestError>, BytesMut) {
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::new();
        let mut result = Ok(None);
        let mut fed = 0;
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            result = parser.parse(&mut buf, limits);
            if !matches!(result, Ok(None)) {
                break;
            }
        }
        // Whatever was not fed yet follows in the buffer.
        buf.extend_from_slice(&input[fed..]);
        (result, buf)
    }

    /// Parse `input` split once at every possible boundary.
    fn parse_split_everywhere(
        input: &[u8],
        limits: &Limits,
    ) -> Vec<(Result<Option<RequestHead>, RequestError>, BytesMut)> {
        (0..=input.len())
            .map(|at| {
                let mut parser = HeadParser::new();
                let mut buf = BytesMut::from(&input[..at]);
                let first = parser.parse(&mut buf, limits);
                buf.extend_from_slice(&input[at..]);
                if !matches!(first, Ok(None)) {
                    return (first, buf);
                }
                let second = parser.parse(&mut buf, limits);
                (second, buf)
            })
            .collect()
    }

    fn summary(result: &Result<Option<RequestHead>, RequestError>) -> String {
        match result {
            Ok(None) => "partial".into(),
            Ok(Some(head)) => format!(
                "{:?} {:?} {:?} {} {:?} ka={} ec={}",
                String::from_utf8_lossy(head.method()),
                String::from_utf8_lossy(head.target()),
                head.version(),
                head.head_len(),
                head.framing(),
                head.keep_alive(),
                head.expects_continue()
            ),
            Err(err) => format!("error {err}"),
        }
    }

    /// Whole, byte-at-a-time, and split-at-every-boundary feeding agree, and
    /// the same bytes remain in the buffer.
    fn check(input: &[u8], limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
        let (whole, whole_rest) = parse_whole(input, limits);
        let expected = summary(&whole);
        let (stepped, stepped_rest) = parse_stepped(input, 1, limits);
        assert_eq!(summary(&stepped), expected, "byte-at-a-time differs for {:?}", String::from_utf8_lossy(input));
        if whole.is_ok() {
            assert_eq!(stepped_rest, whole_rest);
        }
        // Every single split of the large limit-boundary heads is quadratic
        // and adds nothing over byte-at-a-time feeding; keep the suite fast.
        if input.len() > SPLIT_EVERYWHERE_MAX {
            return whole;
        }
        for (at, (split, rest)) in parse_split_everywhere(input, limits).into_iter().enumerate() {
            assert_eq!(summary(&split), expected, "split at {at} differs for {:?}", String::from_utf8_lossy(input));
            if whole.is_ok() {
                assert_eq!(rest, whole_rest);
            }
        }
        whole
    }

    fn ok(input: &[u8]) -> RequestHead {
        match check(input, &limits()) {
            Ok(Some(head)) => head,
            other => panic!("expected a head for {:?}, got {}", String::from_utf8_lossy(input), summary(&other)),
        }
    }

    fn err(input: &[u8]) -> RequestError {
        match check(input, &limits()) {
            Err(err) => err,
            other => panic!("expected an error for {:?}, got {}", String::from_utf8_lossy(input), summary(&other)),
        }
    }

    fn status(input: &[u8]) -> u16 {
        err(input).status()
    }

    /// A small head in a large read buffer is copied into the arena (so
    /// it does not pin the buffer for its exchange); a head that is about
    /// the whole buffer (capacity at most twice its length plus 64) is split
    /// off without a copy.
    #[test]
    fn a_head_is_copied_only_out_of_a_large_buffer() {
        let head = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        let len = head.len();
        for (capacity, copied) in [(len, false), (2 * len + 64, false), (2 * len + 65, true), (4096, true)] {
            let mut buf = BytesMut::with_capacity(capacity);
            buf.extend_from_slice(head);
            assert!(buf.capacity() >= capacity && buf.capacity() < capacity + 8, "capacity {}", buf.capacity());
            let capacity = buf.capacity();
            let start = buf.as_ptr() as usize;
            let parsed = HeadParser::new().parse(&mut buf, &limits()).unwrap().unwrap();
            let at = parsed.buf.as_ptr() as usize;
            let inside = (start..start + capacity).contains(&at);
            assert_eq!(!inside, copied, "capacity {capacity} for a head of {len}");
            assert_eq!(&parsed.buf[..], head);
        }
    }

    /// A finished head's field list serves the next head (no allocation per
    /// request), unless it grew beyond `MAX_SPARE_FIELDS`.
    #[test]
    fn field_lists_are_recycled() {
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\nGET / HTTP/1.1\r\nc: 3\r\n\r\n"[..]);
        let first = parser.parse(&mut buf, &limits()).unwrap().unwrap();
        let list = first.headers.as_ptr();
        parser.recycle(first);
        let second = parser.parse(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(second.headers.as_ptr(), list, "the list was not reused");
        assert_eq!(second.headers().count(), 1);
        let mut big = second;
        big.headers.reserve(MAX_SPARE_FIELDS + 1);
        let big_list = big.headers.as_ptr();
        parser.recycle(big);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let third = parser.parse(&mut buf, &limits()).unwrap().unwrap();
        assert_ne!(third.headers.as_ptr(), big_list, "an oversized list was kept");
    }

    /// Nothing but a CR (or nothing) before the request line is not yet a
    /// request: wait for more.
    #[test]
    fn a_lone_cr_waits_for_more() {
        for input in [&b""[..], b"\r", b"\r\n", b"\r\n\r"] {
            let (result, rest) = parse_whole(input, &limits());
            assert!(matches!(result, Ok(None)), "{:?}: {}", String::from_utf8_lossy(input), summary(&result));
            assert_eq!(&rest[..], input);
        }
    }

    /// The 400 bodies name what httparse refused.
    #[test]
    fn httparse_reasons_name_the_cause() {
        use httparse::Error::*;
        let table = [
            (Version, "unsupported HTTP version"),
            (HeaderName, "invalid header name"),
            (HeaderValue, "invalid header value"),
            (TooManyHeaders, "too many headers"),
            (Token, "malformed request line"),
            (NewLine, "malformed request line"),
        ];
        for (err, reason) in table {
            assert_eq!(httparse_reason(err), reason, "{err:?}");
        }
    }

    /// A part outside the head has no range in it.
    #[test]
    fn range_in_only_within_the_base() {
        let base = b"GET / HTTP/1.1";
        assert_eq!(range_in(base, &base[4..5]), 4..5);
        let other = b"elsewhere";
        assert_eq!(range_in(base, other), 0..0);
        assert_eq!(range_in(&base[..4], &base[2..6]), 0..0, "a part running past the end");
    }

    #[test]
    fn simple_get() {
        let head = ok(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: fc\r\nX-Two: 1\r\nx-two:  2 \r\n\r\n");
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/a/b?x=1&y");
        assert_eq!(head.path(), b"/a/b");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.framing(), BodyFraming::None);
        assert!(head.keep_alive());
        assert!(!head.expects_continue());
        let headers: Vec<_> = head.headers().collect();
        assert_eq!(headers, vec![(&b"Host"[..], &b"fc"[..]), (b"X-Two", b"1"), (b"x-two", b"2")]);
        assert_eq!(head.header("x-TWO"), Some(&b"1"[..]));
        assert_eq!(head.header("missing"), None);
        assert_eq!(head.head_len(), 59);
    }

    #[test]
    fn no_headers_and_path_without_query() {
        let head = ok(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(head.target(), b"*");
        assert_eq!(head.path(), b"*");
        assert_eq!(head.headers().count(), 0);
    }

    #[test]
    fn partial_leaves_buffer_unchanged() {
        let input = b"POST /invoke HTTP/1.1\r\nContent-Length: 3\r\n\r";
        let mut buf = BytesMut::from(&input[..]);
        let mut parser = HeadParser::new();
        assert!(matches!(parser.parse(&mut buf, &limits()), Ok(None)));
        assert_eq!(&buf[..], &input[..]);
    }

    #[test]
    fn body_and_pipelined_request_stay_in_buffer() {
        let input = b"POST /invoke HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let mut parser = HeadParser::new();
        let head = parser.parse(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(head.framing(), BodyFraming::Length(5));
        assert_eq!(&buf[..], b"helloGET / HTTP/1.1\r\n\r\n");
        buf.advance(5);
        let second = parser.parse(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(second.method(), b"GET");
        assert!(buf.is_empty());
        // Byte-split feeding leaves the same remainder.
        let _ = check(input, &limits());
    }

    #[test]
    fn head_is_zero_copy() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"[..]);
        let base = buf.as_ptr() as usize;
        let head = HeadParser::new().parse(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(head.method().as_ptr() as usize, base);
        assert_eq!(buf.as_ptr() as usize, base + head.head_len());
    }

    #[test]
    fn leading_empty_lines() {
        let head = ok(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.head_len(), 18);
        let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        many.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        ok(&many);
        let mut too_many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        too_many.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&too_many), 400);
        assert_eq!(status(b"\nGET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"\r\n\nGET / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn bare_lf_is_refused_everywhere() {
        assert_eq!(err(b"GET / HTTP/1.1\n\n"), RequestError::BadRequest("bare LF in request line"));
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: b\n\r\n"), RequestError::BadRequest("bare LF in header section"));
        assert_eq!(status(b"GET / HTTP/1.1\r\nA: b\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\n"), 400);
    }

    #[test]
    fn bare_cr_is_refused() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn field_line_errors() {
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), RequestError::BadRequest("obsolete line folding"));
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n"), RequestError::BadRequest("obsolete line folding"));
        assert_eq!(err(b"GET / HTTP/1.1\r\n A: b\r\n\r\n"), RequestError::BadRequest("obsolete line folding"));
        assert_eq!(err(b"GET / HTTP/1.1\r\nA : b\r\n\r\n"), RequestError::BadRequest("whitespace before colon"));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nContent-Length\t: 1\r\n\r\n"),
            RequestError::BadRequest("whitespace before colon")
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nA(b): c\r\n\r\n"), RequestError::BadRequest("invalid header name"));
        assert_eq!(err(b"GET / HTTP/1.1\r\n: c\r\n\r\n"), RequestError::BadRequest("empty header name"));
        assert_eq!(err(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), RequestError::BadRequest("header line without colon"));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n"),
            RequestError::BadRequest("control character in header value")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n"),
            RequestError::BadRequest("control character in header value")
        );
        // HT and obs-text are fine in values.
        let head = ok(b"GET / HTTP/1.1\r\nA: b\tc \xff\r\nEmpty:\r\n\r\n");
        assert_eq!(head.header("a"), Some(&b"b\tc \xff"[..]));
        assert_eq!(head.header("empty"), Some(&b""[..]));
    }

    #[test]
    fn request_line_errors() {
        assert_eq!(err(b"GET / HTTP/1.2\r\n\r\n"), RequestError::BadRequest("unsupported HTTP version"));
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), RequestError::BadRequest("unsupported HTTP version"));
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\n\r\n"), 400);
        assert_eq!(status(b"G(T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\x01 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\xff HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn content_length() {
        let cl = |value: &str| {
            let input = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            check(input.as_bytes(), &limits()).map(|h| h.unwrap().framing())
        };
        assert_eq!(cl("0"), Ok(BodyFraming::Length(0)));
        assert_eq!(cl("42"), Ok(BodyFraming::Length(42)));
        assert_eq!(cl("007"), Ok(BodyFraming::Length(7)));
        assert_eq!(cl("5, 5,5"), Ok(BodyFraming::Length(5)));
        for bad in ["", "+5", "-5", "0x5", "5 5", "5,", ",5", "5, 6", "abc", "5.0"] {
            assert_eq!(cl(bad).unwrap_err().status(), 400, "{bad:?}");
        }
        assert_eq!(cl("5, 6"), Err(RequestError::BadRequest("conflicting Content-Length values")));
        assert_eq!(cl("99999999999999999999999"), Err(RequestError::BadRequest("Content-Length overflow")));
        assert_eq!(cl("33554432"), Ok(BodyFraming::Length(33_554_432)));
        assert_eq!(cl("33554433"), Err(RequestError::BodyTooLarge));
        assert_eq!(cl("18446744073709551615"), Err(RequestError::BodyTooLarge));
    }

    #[test]
    fn duplicate_content_length_headers() {
        let head = ok(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(head.framing(), BodyFraming::Length(3));
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n"),
            RequestError::BadRequest("conflicting Content-Length values")
        );
        // A GET may carry a body.
        assert_eq!(ok(b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n").framing(), BodyFraming::Length(2));
    }

    #[test]
    fn transfer_encoding() {
        let te = |values: &[&str]| {
            let mut input = String::from("POST / HTTP/1.1\r\n");
            for value in values {
                input.push_str(&format!("Transfer-Encoding: {value}\r\n"));
            }
            input.push_str("\r\n");
            check(input.as_bytes(), &limits()).map(|h| h.unwrap().framing())
        };
        assert_eq!(te(&["chunked"]), Ok(BodyFraming::Chunked));
        assert_eq!(te(&["CHUNKED"]), Ok(BodyFraming::Chunked));
        assert_eq!(te(&[" chunked\t"]), Ok(BodyFraming::Chunked));
        for not_last in [&["chunked, gzip"][..], &["chunked", "gzip"], &["chunked, chunked"], &["chunked", "chunked"]] {
            assert_eq!(
                te(not_last),
                Err(RequestError::BadRequest("chunked is not the final transfer coding")),
                "{not_last:?}"
            );
        }
        for unsupported in
            [&["gzip, chunked"][..], &["gzip", "chunked"], &["gzip"], &["identity"], &["x-unknown"], &["chunked;q=1"]]
        {
            assert_eq!(te(unsupported), Err(RequestError::UnsupportedTransferCoding), "{unsupported:?}");
        }
        for empty in [&[""][..], &["chunked,"], &[",chunked"], &["gzip,,chunked"]] {
            assert_eq!(te(empty), Err(RequestError::BadRequest("empty Transfer-Encoding")), "{empty:?}");
        }
    }

    #[test]
    fn smuggling_framing_conflicts() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            RequestError::BadRequest("both Content-Length and Transfer-Encoding present")
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            RequestError::BadRequest("both Content-Length and Transfer-Encoding present")
        );
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            RequestError::BadRequest("Transfer-Encoding in HTTP/1.0 request")
        );
        // Classic obfuscations.
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"), 501);
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 1\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    }

    #[test]
    fn keep_alive_semantics() {
        let ka = |input: &[u8]| ok(input).keep_alive();
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version(), Version::Http10);
    }

    #[test]
    fn expect_continue() {
        assert!(ok(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").expects_continue());
        // Connection options besides close / keep-alive (RFC 9110 §7.6.1).
        assert!(!ok(b"GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n").connection_options());
        assert!(ok(b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Secret\r\n\r\n").connection_options());
        assert!(!ok(b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n").expects_continue());
        assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
    }

    /// A head of exactly `len` bytes with one filler header.
    fn head_of_len(len: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', len - fixed));
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(input.len(), len);
        input
    }

    #[test]
    fn head_size_limit() {
        let max = super::super::DEFAULT_MAX_HEAD;
        let head = ok(&head_of_len(max));
        assert_eq!(head.head_len(), max);
        assert_eq!(err(&head_of_len(max + 1)), RequestError::HeadTooLarge);
        // Leading empty lines don't count against the limit.
        let mut input = b"\r\n".to_vec();
        input.extend_from_slice(&head_of_len(max));
        ok(&input);
        // Detected without waiting for the end of the head.
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::from(&head_of_len(max + 808)[..max]);
        assert_eq!(parser.parse(&mut buf, &limits()).unwrap_err(), RequestError::HeadTooLarge);
        let small = Limits { max_head: 64, ..limits() };
        assert!(matches!(check(&head_of_len(64), &small), Ok(Some(_))));
        assert_eq!(check(&head_of_len(65), &small).unwrap_err(), RequestError::HeadTooLarge);
    }

    #[test]
    fn header_count_limit() {
        let with_headers = |n: usize| {
            let mut input = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                input.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
            }
            input.extend_from_slice(b"\r\n");
            input
        };
        assert_eq!(ok(&with_headers(128)).headers().count(), 128);
        assert_eq!(err(&with_headers(129)), RequestError::HeadTooLarge);
        // Above the stack array: the heap scratch path.
        let many = Limits { max_headers: 300, max_head: 1 << 16, ..limits() };
        let head = check(&with_headers(300), &many).unwrap().unwrap();
        assert_eq!(head.headers().count(), 300);
        assert_eq!(head.header("h299"), Some(&b"v"[..]));
    }

    #[test]
    fn target_limit() {
        let with_target = |len: usize| {
            let mut input = b"GET /".to_vec();
            input.extend(std::iter::repeat_n(b'a', len - 1));
            input.extend_from_slice(b" HTTP/1.1\r\n\r\n");
            input
        };
        assert_eq!(ok(&with_target(8192)).target().len(), 8192);
        assert_eq!(err(&with_target(8193)), RequestError::UriTooLong);
        // Detected while the request line is still arriving.
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::from(&with_target(8193)[..4 + 8193]);
        assert_eq!(parser.parse(&mut buf, &limits()).unwrap_err(), RequestError::UriTooLong);
        let mut buf = BytesMut::from(&with_target(8193)[..4 + 8192]);
        assert!(matches!(HeadParser::new().parse(&mut buf, &limits()), Ok(None)));
        // Target limit above head limit: the head limit wins.
        let small_head = Limits { max_head: 100, ..limits() };
        assert_eq!(check(&with_target(200), &small_head).unwrap_err(), RequestError::HeadTooLarge);
    }

    #[test]
    fn parser_resets_between_requests() {
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            buf.extend_from_slice(b"GET /x HTTP/1.1\r\nA: b\r\n\r\n");
        }
        for _ in 0..3 {
            let head = parser.parse(&mut buf, &limits()).unwrap().unwrap();
            assert_eq!(head.target(), b"/x");
        }
        assert!(matches!(parser.parse(&mut buf, &limits()), Ok(None)));
    }

    #[test]
    fn replaced_buffer_does_not_confuse_parser() {
        let mut parser = HeadParser::new();
        let mut buf = BytesMut::from(&b"GET /long/path/here HTTP/1.1\r\nA: b"[..]);
        assert!(matches!(parser.parse(&mut buf, &limits()), Ok(None)));
        let mut other = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(parser.parse(&mut other, &limits()).unwrap().is_some());
    }
}
