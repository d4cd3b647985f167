//! HTTP/1.1 server side: the protocol FC speaks to the container.
//!
//! Sans-IO: nothing here touches a socket. The event loop owns a read buffer
//! (`bytes::BytesMut`), feeds it to [`HeadParser::parse`] until a
//! [`RequestHead`] comes out, then drives a [`BodyDecoder`] over the same
//! buffer; body data is handed on as zero-copy `Bytes` slices of that buffer.
//! Whatever follows the body stays in the buffer for the next (pipelined)
//! request. Responses are framed by [`response::write_head`] and the chunk
//! helpers in [`response`].
//!
//! Invariants:
//! * every refusal is a [`RequestError`]; its [`RequestError::status`] is the
//!   answer to send before closing the connection, because after a framing
//!   error the position of the next request in the byte stream is unknown;
//! * no input makes any function here panic or loop without consuming input.

pub mod body;
pub mod chunked;
pub mod request;
pub mod response;

pub use body::BodyDecoder;
pub use chunked::{ChunkedDecoder, ChunkedError, Decoded};
pub use request::{BodyFraming, HeadParser, RequestHead, Version};
pub use response::{reason_phrase, write_head, ChunkHead, ResponseFraming};

use std::fmt;

/// Request head (request line + fields) size limit. FC lets a caller send 8 KB
/// of header keys and values and a 4 KB path (docs/fc-contract.md §8.1), then
/// adds its own ~20 `x-fc-*` fields (an STS token among them) and the bytes
/// of every `: ` and CRLF: a head FC forwards can pass 14 KB on the wire.
/// 32 KiB takes all of it with room (nginx's large_client_header_buffers
/// default holds as much); a connection holds only what it was sent.
pub const DEFAULT_MAX_HEAD: usize = 32 * 1024;
/// Request-target: FC's 4 KB path and query (docs/fc-contract.md §8.1) plus
/// the base path FC puts in front of it on its default domain.
pub const DEFAULT_MAX_TARGET: usize = 8192;
/// Synchronous invocation body limit: 32 MB (docs/fc-contract.md §8.1).
pub const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;
/// Field-line count bound. FC does not state one; 128 lines of at least
/// `x:\r\n` still fit well inside the head limit, so this only stops abuse.
pub const DEFAULT_MAX_HEADERS: usize = 128;

/// Limits (defaults from the FC contract, docs/fc-contract.md §8.1).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest accepted head, request line through the empty line, in bytes.
    pub max_head: usize,
    /// Longest accepted request-target, in bytes.
    pub max_target: usize,
    /// Largest accepted body (Content-Length or sum of chunk sizes).
    pub max_body: u64,
    /// Most header field lines accepted.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: DEFAULT_MAX_HEAD,
            max_target: DEFAULT_MAX_TARGET,
            max_body: DEFAULT_MAX_BODY,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// Every way a request can be refused. One enum for the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 400: malformed or ambiguous message; the payload names the cause.
    BadRequest(&'static str),
    /// 431: head longer than `max_head` or more than `max_headers` fields.
    HeadTooLarge,
    /// 414: request-target longer than `max_target`.
    UriTooLong,
    /// 413: declared or decoded body longer than `max_body`.
    BodyTooLarge,
    /// 501: a transfer coding other than `chunked` (RFC 9112 §6.1).
    UnsupportedTransferCoding,
}

impl RequestError {
    /// Status code of the answer to send before closing the connection.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::BodyTooLarge => 413,
            RequestError::UnsupportedTransferCoding => 501,
        }
    }

    /// Short message naming the cause; safe to send as a response body.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BadRequest(reason) => reason,
            RequestError::HeadTooLarge => "request head too large",
            RequestError::UriTooLong => "request-target too long",
            RequestError::BodyTooLarge => "request body too large",
            RequestError::UnsupportedTransferCoding => "unsupported transfer coding",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_display() {
        let cases = [
            (RequestError::BadRequest("x"), 400),
            (RequestError::HeadTooLarge, 431),
            (RequestError::UriTooLong, 414),
            (RequestError::BodyTooLarge, 413),
            (RequestError::UnsupportedTransferCoding, 501),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status);
            assert!(err.to_string().starts_with(&status.to_string()));
        }
        assert_eq!(RequestError::BadRequest("bare LF").reason(), "bare LF");
    }

    #[test]
    fn default_limits_match_fc_contract() {
        let limits = Limits::default();
        assert_eq!(limits.max_head, 32 * 1024);
        assert_eq!(limits.max_target, 8192);
        assert_eq!(limits.max_body, 33_554_432);
        assert_eq!(limits.max_headers, 128);
    }
}
