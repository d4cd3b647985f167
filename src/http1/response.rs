//! HTTP/1.1 response framing: status line, header section and chunk lines.
//!
//! Sans-IO: everything is appended to a caller-owned `BytesMut` (or, for
//! chunk-size lines, built in a small stack buffer) so the event loop can
//! `writev` small owned heads interleaved with body slices borrowed from
//! elsewhere. Nothing here allocates except by growing the destination, which
//! `write_head` does at most once.
//!
//! Invariant: a head written here has exactly one framing, chosen by the
//! [`ResponseFraming`] argument. Caller headers that would contradict it
//! (`Content-Length`, `Transfer-Encoding`, `Connection`, `Keep-Alive`) are
//! dropped, as are headers whose bytes could split the response (RFC 9110
//! §5.5: CR, LF, NUL); docs/fc-contract.md §8.2 also asks the proxy to own these.

use bytes::{BufMut, BytesMut};

use super::request::is_tchar;

/// Interim response for `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// Last chunk with an empty trailer section (RFC 9112 §7.1).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No body and no framing header, e.g. HEAD or 204/304 (RFC 9112 §6.3).
    NoBody,
}

/// Headers the framing owns; a caller's copy would contradict it.
const FRAMING_HEADERS: [&[u8]; 4] = [b"content-length", b"transfer-encoding", b"connection", b"keep-alive"];

/// Whether a caller header may be written as given.
fn is_writable(name: &[u8], value: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        && !FRAMING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Appends `"HTTP/1.1 <status> <reason>\r\n"` + headers + framing header
/// (Content-Length / Transfer-Encoding: chunked) + "Connection: close" when
/// !keep_alive + "\r\n".
///
/// `status` should be 100..=999; it is written in decimal as given. Headers
/// dropped as described in the module doc are skipped silently.
pub fn write_head(
    dst: &mut BytesMut,
    status: u16,
    headers: &[(&[u8], &[u8])],
    framing: ResponseFraming,
    keep_alive: bool,
) {
    let mut status_digits = [0u8; 20];
    let status_digits = decimal(u64::from(status), &mut status_digits);
    let reason = reason_phrase(status).as_bytes();
    let mut length_digits = [0u8; 20];
    let length_digits = match framing {
        ResponseFraming::Length(n) => decimal(n, &mut length_digits),
        _ => &[],
    };

    // Size the whole head first so `dst` grows at most once.
    let mut len = b"HTTP/1.1 ".len() + status_digits.len() + 1 + reason.len() + 2;
    for (name, value) in headers.iter().filter(|(n, v)| is_writable(n, v)) {
        len = len.saturating_add(name.len() + 2 + value.len() + 2);
    }
    len += match framing {
        ResponseFraming::Length(_) => b"Content-Length: \r\n".len() + length_digits.len(),
        ResponseFraming::Chunked => b"Transfer-Encoding: chunked\r\n".len(),
        ResponseFraming::NoBody => 0,
    };
    if !keep_alive {
        len += b"Connection: close\r\n".len();
    }
    dst.reserve(len.saturating_add(2));

    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status_digits);
    dst.put_u8(b' ');
    dst.put_slice(reason);
    dst.put_slice(b"\r\n");
    for (name, value) in headers.iter().filter(|(n, v)| is_writable(n, v)) {
        dst.put_slice(name);
        dst.put_slice(b": ");
        dst.put_slice(value);
        dst.put_slice(b"\r\n");
    }
    match framing {
        ResponseFraming::Length(_) => {
            dst.put_slice(b"Content-Length: ");
            dst.put_slice(length_digits);
            dst.put_slice(b"\r\n");
        }
        ResponseFraming::Chunked => dst.put_slice(b"Transfer-Encoding: chunked\r\n"),
        ResponseFraming::NoBody => {}
    }
    if !keep_alive {
        dst.put_slice(b"Connection: close\r\n");
    }
    dst.put_slice(b"\r\n");
}

/// `n` in decimal, written to the end of `out`.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut start = out.len();
    loop {
        start -= 1;
        // u64::MAX has 20 digits, so `start` never underflows.
        out[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[start..]
}

/// Reason phrase for `status` (RFC 9110 §15); empty for codes it does not
/// name, which the status-line grammar allows (RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Longest chunk-size line: 16 hex digits of a 64-bit `usize` plus CRLF.
const CHUNK_HEAD_CAPACITY: usize = 18;

/// Chunk-size line `"<hex>\r\n"` in a small stack buffer (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct ChunkHead {
    bytes: [u8; CHUNK_HEAD_CAPACITY],
    start: usize,
}

impl ChunkHead {
    /// The size line for a chunk of `len` bytes (lowercase hex, no leading
    /// zeros). A zero `len` gives "0\r\n", the start of the last chunk.
    pub fn new(len: usize) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; CHUNK_HEAD_CAPACITY];
        bytes[CHUNK_HEAD_CAPACITY - 2] = b'\r';
        bytes[CHUNK_HEAD_CAPACITY - 1] = b'\n';
        let mut start = CHUNK_HEAD_CAPACITY - 2;
        // u64 widening keeps this correct for any usize up to 64 bits.
        let mut n = len as u64;
        loop {
            start -= 1;
            bytes[start] = HEX[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        ChunkHead { bytes, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&[u8], &[u8])], framing: ResponseFraming, keep_alive: bool) -> BytesMut {
        let mut dst = BytesMut::new();
        write_head(&mut dst, status, headers, framing, keep_alive);
        dst
    }

    #[test]
    fn content_length_head() {
        let dst = head(
            200,
            &[(b"content-type", b"application/json"), (b"x-fc-status", b"200")],
            ResponseFraming::Length(12),
            true,
        );
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-fc-status: 200\r\nContent-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn chunked_close_head() {
        let dst = head(502, &[], ResponseFraming::Chunked, false);
        assert_eq!(&dst[..], b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn no_body_and_unknown_status() {
        assert_eq!(&head(204, &[], ResponseFraming::NoBody, true)[..], b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(
            &head(599, &[], ResponseFraming::Length(0), true)[..],
            b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            &head(413, &[], ResponseFraming::Length(u64::MAX), true)[..],
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 18446744073709551615\r\n\r\n"
        );
    }

    #[test]
    fn framing_and_unsafe_headers_are_dropped() {
        let dst = head(
            200,
            &[
                (b"Content-Length", b"99"),
                (b"transfer-encoding", b"chunked"),
                (b"Connection", b"keep-alive"),
                (b"Keep-Alive", b"timeout=5"),
                (b"x-split", b"a\r\nSet-Cookie: evil"),
                (b"x-lf", b"a\nb"),
                (b"x-nul", b"a\0b"),
                (b"bad name", b"v"),
                (b"", b"v"),
                (b"x-ok", b"fine\tvalue"),
            ],
            ResponseFraming::Length(1),
            true,
        );
        assert_eq!(&dst[..], b"HTTP/1.1 200 OK\r\nx-ok: fine\tvalue\r\nContent-Length: 1\r\n\r\n");
    }

    #[test]
    fn write_head_grows_once_and_appends() {
        let mut dst = BytesMut::from(&b"prev"[..]);
        write_head(&mut dst, 200, &[(b"a", b"b")], ResponseFraming::Chunked, false);
        assert!(dst.starts_with(b"prevHTTP/1.1 200 OK\r\na: b\r\n"));
        let exact = dst.len() - 4;
        let mut fresh = BytesMut::new();
        write_head(&mut fresh, 200, &[(b"a", b"b")], ResponseFraming::Chunked, false);
        assert_eq!(fresh.len(), exact);
        assert!(fresh.capacity() >= exact);
    }

    /// The head is sized before it is written: an empty buffer is grown
    /// once, to exactly the head (its final CRLF included), for every
    /// framing, with and without headers and `Connection: close`.
    #[test]
    fn write_head_reserves_exactly() {
        let headers: &[(&[u8], &[u8])] = &[(b"content-type", b"text/plain"), (b"x-long", &[b'v'; 300])];
        for framing in [
            ResponseFraming::Length(0),
            ResponseFraming::Length(123_456),
            ResponseFraming::Chunked,
            ResponseFraming::NoBody,
        ] {
            for keep_alive in [true, false] {
                for (status, headers) in [(200, headers), (404, &[][..]), (599, headers)] {
                    let mut dst = BytesMut::new();
                    write_head(&mut dst, status, headers, framing, keep_alive);
                    assert_eq!(dst.capacity(), dst.len(), "{status} {framing:?} keep-alive {keep_alive}");
                }
            }
        }
    }

    /// Every reason phrase is RFC 9110 §15's (a status we do not list gets
    /// none, which RFC 9112 §4 allows).
    #[test]
    fn reason_phrases_are_rfc_9110s() {
        #[rustfmt::skip]
        let table: &[(u16, &str)] = &[
            (100, "Continue"), (101, "Switching Protocols"), (200, "OK"), (201, "Created"), (202, "Accepted"),
            (203, "Non-Authoritative Information"), (204, "No Content"), (205, "Reset Content"),
            (206, "Partial Content"), (300, "Multiple Choices"), (301, "Moved Permanently"), (302, "Found"),
            (303, "See Other"), (304, "Not Modified"), (307, "Temporary Redirect"), (308, "Permanent Redirect"),
            (400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found"),
            (405, "Method Not Allowed"), (406, "Not Acceptable"), (408, "Request Timeout"), (409, "Conflict"),
            (410, "Gone"), (411, "Length Required"), (412, "Precondition Failed"), (413, "Content Too Large"),
            (414, "URI Too Long"), (415, "Unsupported Media Type"), (416, "Range Not Satisfiable"),
            (417, "Expectation Failed"), (421, "Misdirected Request"), (422, "Unprocessable Content"),
            (426, "Upgrade Required"), (429, "Too Many Requests"), (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"), (501, "Not Implemented"), (502, "Bad Gateway"),
            (503, "Service Unavailable"), (504, "Gateway Timeout"), (505, "HTTP Version Not Supported"),
            (299, ""), (418, ""), (599, ""),
        ];
        for &(status, phrase) in table {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }

    #[test]
    fn chunk_heads() {
        assert_eq!(ChunkHead::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkHead::new(1).as_bytes(), b"1\r\n");
        assert_eq!(ChunkHead::new(0xff).as_bytes(), b"ff\r\n");
        assert_eq!(ChunkHead::new(0x1000).as_bytes(), b"1000\r\n");
        let max = ChunkHead::new(usize::MAX);
        let expected = format!("{:x}\r\n", usize::MAX);
        assert_eq!(max.as_bytes(), expected.as_bytes());
    }

    #[test]
    fn constants() {
        assert_eq!(CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
        assert_eq!(CHUNK_END, b"\r\n");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }

    /// Our own encoder and decoder agree.
    #[test]
    fn chunk_heads_round_trip_through_decoder() {
        use crate::http1::chunked::{ChunkedDecoder, Decoded};
        let mut wire = BytesMut::new();
        for piece in [&b"hello"[..], &[b'x'; 300][..]] {
            wire.extend_from_slice(ChunkHead::new(piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(CHUNK_END);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let mut decoder = ChunkedDecoder::new(1 << 20);
        let mut data = Vec::new();
        while let Decoded::Data(d) = decoder.decode(&mut wire, usize::MAX).unwrap() {
            data.extend_from_slice(&d);
        }
        assert!(decoder.is_done() && wire.is_empty());
        assert_eq!(data.len(), 305);
    }
}
