//! Decoder for the chunked transfer coding of a request body (RFC 9112 §7.1).
//!
//! Sans-IO, like httparse: [`ChunkedDecoder::decode`] consumes framing from
//! the front of the connection's read buffer and hands chunk data on as
//! zero-copy `Bytes` split off that buffer. It never buffers data of its own
//! (a single available data byte is returned at once) and never waits for
//! more bytes than the next framing element needs. Partial framing lines stay
//! in the buffer; the decoder remembers how far it already looked for their
//! end, so a body arriving one byte at a time costs O(n).
//!
//! Invariants: the sum of chunk sizes and chunk-extension bytes never
//! exceeds `max_body` (checked when a size line is read, before its data
//! arrives), and extension bytes alone never exceed `MAX_CHUNK_EXTENSIONS`
//! per body; size lines and the trailer section are bounded; after `End` the bytes of the next pipelined request
//! are untouched in the buffer.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::request::{field_line_error, is_tchar};
use super::RequestError;

/// Longest chunk-size line without its CRLF. RFC 9112 §7.1.1 sets no bound
/// on extensions, and we ignore them, so allow a generous page of them.
pub const MAX_CHUNK_SIZE_LINE: usize = 4096;

/// Most chunk-extension bytes (after the size digits, up to the CRLF) in one
/// body, all lines together (hyper's `CHUNKED_EXTENSIONS_LIMIT`). Without a
/// total, 4 KiB of extensions per one-byte chunk made a body within the
/// limit cost thousands of times its size in framing to read.
pub const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;

/// Largest trailer section, CRLFs included, after the last chunk. Trailer
/// fields are ignored (RFC 9112 §7.1.2 allows discarding them); the bound
/// matches the 8 KB head limit of the FC contract (docs/fc-contract.md §8.1).
pub const MAX_TRAILER_SECTION: usize = 8192;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// Chunk size is not 1*HEXDIG, or is followed by something other than
    /// an extension.
    BadChunkSize,
    /// Chunk size does not fit in 64 bits.
    ChunkSizeOverflow,
    /// A line ends in LF without CR.
    BareLf,
    /// Chunk data is not followed by CRLF.
    MissingCrlfAfterData,
    /// Malformed chunk extension.
    BadExtension,
    /// Chunk-size line longer than [`MAX_CHUNK_SIZE_LINE`].
    SizeLineTooLong,
    /// Malformed trailer field line.
    BadTrailer,
    /// Trailer section longer than [`MAX_TRAILER_SECTION`].
    TrailerTooLarge,
    /// Sum of chunk sizes (and extension bytes) exceeds the body limit.
    BodyTooLarge,
    /// Extension bytes of the body exceed [`MAX_CHUNK_EXTENSIONS`].
    ExtensionsTooLarge,
}

impl ChunkedError {
    /// Short message naming the cause.
    pub fn reason(&self) -> &'static str {
        match self {
            ChunkedError::BadChunkSize => "invalid chunk size",
            ChunkedError::ChunkSizeOverflow => "chunk size overflow",
            ChunkedError::BareLf => "bare LF in chunked framing",
            ChunkedError::MissingCrlfAfterData => "missing CRLF after chunk data",
            ChunkedError::BadExtension => "invalid chunk extension",
            ChunkedError::SizeLineTooLong => "chunk size line too long",
            ChunkedError::BadTrailer => "invalid trailer field",
            ChunkedError::TrailerTooLarge => "trailer section too large",
            ChunkedError::BodyTooLarge => "request body too large",
            ChunkedError::ExtensionsTooLarge => "chunk extensions too large",
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkedError {}

impl From<ChunkedError> for RequestError {
    fn from(err: ChunkedError) -> Self {
        match err {
            ChunkedError::BodyTooLarge => RequestError::BodyTooLarge,
            other => RequestError::BadRequest(other.reason()),
        }
    }
}

/// One step of body decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, split off the read buffer (never empty).
    Data(Bytes),
    /// Everything usable was consumed; read more into the buffer.
    NeedMore,
    /// The body is complete; later bytes belong to the next request.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting `chunk-size [chunk-ext] CRLF`.
    SizeLine,
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF that closes chunk data.
    DataCrlf,
    /// After the last chunk: trailer lines until an empty line.
    Trailers {
        consumed: usize,
    },
    Done,
}

/// Chunked body decoder (RFC 9112 §7.1).
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Sum of chunk sizes and extension bytes announced so far.
    total: u64,
    /// Extension bytes seen so far.
    extensions: u64,
    max_body: u64,
    /// Bytes at the front of the buffer already searched for the current
    /// line's LF.
    scanned: usize,
}

impl ChunkedDecoder {
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder { state: State::SizeLine, total: 0, extensions: 0, max_body, scanned: 0 }
    }

    /// Whether the last chunk and the trailer section were consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes of the current chunk not yet returned (0 between chunks).
    pub fn chunk_remaining(&self) -> u64 {
        match self.state {
            State::Data { remaining } => remaining,
            _ => 0,
        }
    }

    /// Consume framing from the front of `buf`; return the next run of data
    /// bytes as a zero-copy slice (split_to + freeze) of at most `max` bytes
    /// (`max` 0 is taken as 1, so every `Data` makes progress), or `NeedMore`
    /// (everything usable was consumed; partial framing lines remain in
    /// `buf`), or `End` (the last chunk and trailers were consumed; bytes
    /// after stay in `buf` for the next pipelined request).
    ///
    /// After an error the body's end is unknown: answer and close.
    pub fn decode(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, ChunkedError> {
        let max = max.max(1);
        loop {
            match self.state {
                State::SizeLine => {
                    let Some(lf) = self.find_line(buf, MAX_CHUNK_SIZE_LINE + 2, ChunkedError::SizeLineTooLong)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let (size, ext) = parse_size_line(buf.get(..lf - 1).unwrap_or_default())?;
                    self.extensions += ext as u64;
                    if self.extensions > MAX_CHUNK_EXTENSIONS {
                        return Err(ChunkedError::ExtensionsTooLarge);
                    }
                    self.total = self
                        .total
                        .checked_add(size)
                        .and_then(|total| total.checked_add(ext as u64))
                        .filter(|&total| total <= self.max_body)
                        .ok_or(ChunkedError::BodyTooLarge)?;
                    buf.advance(lf + 1);
                    self.state =
                        if size == 0 { State::Trailers { consumed: 0 } } else { State::Data { remaining: size } };
                }
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let available = buf.len().min(max);
                    // `remaining` may exceed usize on 32-bit targets; take the
                    // smaller without a lossy cast.
                    let n = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    let left = remaining - n as u64;
                    self.state = if left == 0 { State::DataCrlf } else { State::Data { remaining: left } };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::DataCrlf => match (buf.first(), buf.get(1)) {
                    (None, _) | (Some(b'\r'), None) => return Ok(Decoded::NeedMore),
                    (Some(b'\r'), Some(b'\n')) => {
                        buf.advance(2);
                        self.state = State::SizeLine;
                    }
                    (Some(b'\n'), _) => return Err(ChunkedError::BareLf),
                    _ => return Err(ChunkedError::MissingCrlfAfterData),
                },
                State::Trailers { consumed } => {
                    let budget = MAX_TRAILER_SECTION.saturating_sub(consumed);
                    let Some(lf) = self.find_line(buf, budget, ChunkedError::TrailerTooLarge)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if lf == 1 {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    if field_line_error(buf.get(..lf - 1).unwrap_or_default()).is_some() {
                        return Err(ChunkedError::BadTrailer);
                    }
                    buf.advance(lf + 1);
                    self.state = State::Trailers { consumed: consumed + lf + 1 };
                }
                State::Done => return Ok(Decoded::End),
            }
        }
    }

    /// Index of the LF ending the line at the front of `buf`, which must be
    /// preceded by CR and lie within the first `window` bytes (the longest
    /// line allowed, CRLF included). Resumes from `self.scanned`.
    fn find_line(&mut self, buf: &[u8], window: usize, too_long: ChunkedError) -> Result<Option<usize>, ChunkedError> {
        let end = buf.len().min(window);
        let from = self.scanned.min(end);
        match memchr::memchr(b'\n', buf.get(from..end).unwrap_or_default()) {
            Some(offset) => {
                let lf = from + offset;
                self.scanned = 0;
                if lf == 0 || buf.get(lf - 1) != Some(&b'\r') {
                    return Err(ChunkedError::BareLf);
                }
                Ok(Some(lf))
            }
            None if buf.len() >= window => Err(too_long),
            None => {
                self.scanned = end;
                Ok(None)
            }
        }
    }
}

/// `chunk-size [ chunk-ext ]` without the CRLF (RFC 9112 §7.1, §7.1.1): the
/// size, and how many bytes follow it (the extensions, with their BWS).
fn parse_size_line(line: &[u8]) -> Result<(u64, usize), ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkedError::BadChunkSize);
    }
    let (hex, rest) = line.split_at(digits);
    let size = hex.iter().try_fold(0u64, |size, &digit| {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => digit.wrapping_sub(b'A').wrapping_add(10),
        };
        size.checked_mul(16).and_then(|size| size.checked_add(u64::from(value))).ok_or(ChunkedError::ChunkSizeOverflow)
    })?;
    if rest.is_empty() {
        return Ok((size, 0));
    }
    // Only BWS and then `;` may follow the size.
    if skip_bws(rest).first() != Some(&b';') {
        return Err(ChunkedError::BadChunkSize);
    }
    parse_extensions(rest)?;
    Ok((size, rest.len()))
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, validated and
/// ignored: we know no extensions (RFC 9112 §7.1.1).
fn parse_extensions(mut s: &[u8]) -> Result<(), ChunkedError> {
    while !s.is_empty() {
        s = skip_bws(s);
        s = s.strip_prefix(b";").ok_or(ChunkedError::BadExtension)?;
        s = skip_token(skip_bws(s))?;
        if let Some(value) = skip_bws(s).strip_prefix(b"=") {
            let value = skip_bws(value);
            s = match value.strip_prefix(b"\"") {
                Some(quoted) => skip_quoted_string(quoted)?,
                None => skip_token(value)?,
            };
        }
    }
    Ok(())
}

fn skip_bws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// Skip a non-empty token.
fn skip_token(s: &[u8]) -> Result<&[u8], ChunkedError> {
    let len = s.iter().take_while(|&&b| is_tchar(b)).count();
    if len == 0 {
        return Err(ChunkedError::BadExtension);
    }
    Ok(s.get(len..).unwrap_or_default())
}

/// Skip the rest of a quoted-string after its opening DQUOTE (RFC 9110 §5.6.4).
fn skip_quoted_string(mut s: &[u8]) -> Result<&[u8], ChunkedError> {
    loop {
        match s {
            [b'"', rest @ ..] => return Ok(rest),
            [b'\\', escaped, rest @ ..] if *escaped == b'\t' || *escaped >= 0x20 && *escaped != 0x7f => s = rest,
            [b, rest @ ..] if *b == b'\t' || (*b >= 0x20 && *b != 0x7f && *b != b'\\') => s = rest,
            _ => return Err(ChunkedError::BadExtension),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: u64 = 1 << 20;

    /// How decoding a test input ended.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// Body data, and the bytes left for the next request.
        End(Vec<u8>, Vec<u8>),
        Err(ChunkedError),
        /// Input ran out before the last chunk.
        Incomplete,
    }

    /// Decode `input` fed in the given pieces, with `max` per call.
    fn decode_pieces(pieces: &[&[u8]], max: usize) -> Outcome {
        let mut decoder = ChunkedDecoder::new(MAX_BODY);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut pieces = pieces.iter();
        loop {
            let step = decoder.decode(&mut buf, max);
            if !matches!(step, Ok(Decoded::End)) {
                assert!(!decoder.is_done(), "done before the last chunk and trailers");
            }
            match step {
                Err(err) => return Outcome::Err(err),
                Ok(Decoded::Data(bytes)) => {
                    assert!(!bytes.is_empty() && bytes.len() <= max.max(1));
                    data.extend_from_slice(&bytes);
                }
                Ok(Decoded::NeedMore) => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return Outcome::Incomplete,
                },
                Ok(Decoded::End) => {
                    assert!(decoder.is_done());
                    assert_eq!(decoder.decode(&mut buf, max), Ok(Decoded::End));
                    let mut rest = buf.to_vec();
                    for piece in pieces {
                        rest.extend_from_slice(piece);
                    }
                    return Outcome::End(data, rest);
                }
            }
        }
    }

    fn decode_whole(input: &[u8]) -> Outcome {
        decode_pieces(&[input], usize::MAX)
    }

    /// Whole, byte-at-a-time, every single split and several `max` values all
    /// give the same outcome.
    fn check(input: &[u8]) -> Outcome {
        let whole = decode_whole(input);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        for max in [1, 2, 3, 7, usize::MAX] {
            assert_eq!(decode_pieces(&bytes, max), whole, "byte-at-a-time, max {max}");
            assert_eq!(decode_pieces(&[input], max), whole, "whole, max {max}");
        }
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(decode_pieces(&[a, b], usize::MAX), whole, "split at {at}");
            assert_eq!(decode_pieces(&[a, b], 3), whole, "split at {at}, max 3");
        }
        whole
    }

    fn data(input: &[u8]) -> Vec<u8> {
        match check(input) {
            Outcome::End(data, _) => data,
            other => panic!("expected a body for {:?}, got {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn error(input: &[u8]) -> ChunkedError {
        match check(input) {
            Outcome::Err(err) => err,
            other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn simple_body_and_pipelined_rest() {
        assert_eq!(
            check(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
            Outcome::End(b"hello world".to_vec(), b"GET / HTTP/1.1\r\n".to_vec())
        );
        assert_eq!(check(b"5\r\nhel"), Outcome::Incomplete);
        assert_eq!(check(b"0\r\nA: b\r\n"), Outcome::Incomplete);
        assert_eq!(data(b"0\r\n\r\n"), b"");
        assert_eq!(data(b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789");
        assert_eq!(data(b"00a\r\n0123456789\r\n000\r\n\r\n"), b"0123456789");
        assert_eq!(data(b"1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n").len(), 31);
    }

    #[test]
    fn extensions_are_accepted_and_ignored() {
        for line in ["5;a", "5;a=b", "5 ;a=b", "5\t; a = b", "5;a=\"quoted \\\" ;string\";b;c=d", "5;a=\"\""] {
            let input = format!("{line}\r\nhello\r\n0;last\r\n\r\n");
            assert_eq!(data(input.as_bytes()), b"hello", "{line:?}");
        }
        for line in ["5;", "5;=b", "5;a=", "5;a=\"open", "5;a b", "5;a ", "5;a=b c", "5;a=\"\x01\""] {
            let input = format!("{line}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(error(input.as_bytes()), ChunkedError::BadExtension, "{line:?}");
        }
    }

    #[test]
    fn bad_chunk_sizes() {
        for line in ["", " 5", "5 ", "+5", "-5", "0x5", "g", "5 5", "5,", "5\t"] {
            let input = format!("{line}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(error(input.as_bytes()), ChunkedError::BadChunkSize, "{line:?}");
        }
        assert_eq!(error(b"10000000000000000\r\n"), ChunkedError::ChunkSizeOverflow);
        assert_eq!(error(b"5\rx\r\n"), ChunkedError::BadChunkSize);
    }

    #[test]
    fn body_limit() {
        let mut decoder = ChunkedDecoder::new(10);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n5\r\nworld\r\n1\r\n"[..]);
        let mut got = Vec::new();
        let err = loop {
            match decoder.decode(&mut buf, 100) {
                Ok(Decoded::Data(d)) => got.extend_from_slice(&d),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(err) => break err,
            }
        };
        assert_eq!(got, b"helloworld");
        assert_eq!(err, ChunkedError::BodyTooLarge);
        assert_eq!(RequestError::from(err), RequestError::BodyTooLarge);
        // Refused at the size line, before any data arrives.
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
        assert_eq!(ChunkedDecoder::new(MAX_BODY).decode(&mut buf, 1), Err(ChunkedError::BodyTooLarge));
        // Exactly at the limit is fine.
        let mut decoder = ChunkedDecoder::new(5);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        assert!(matches!(decoder.decode(&mut buf, 100), Ok(Decoded::Data(_))));
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::End));
    }

    /// Issue #20 item 8: extension bytes count towards the body limit and
    /// have a total of their own; main let 4 KiB of them ride on every
    /// one-byte chunk, uncounted.
    #[test]
    fn extension_bytes_count_towards_limits() {
        // 5 data bytes + ";a=b" (4) is over a 8-byte limit.
        let mut buf = BytesMut::from(&b"5;a=b\r\nhello\r\n0\r\n\r\n"[..]);
        assert_eq!(ChunkedDecoder::new(8).decode(&mut buf, 100), Err(ChunkedError::BodyTooLarge));
        let mut buf = BytesMut::from(&b"5;a=b\r\nhello\r\n0\r\n\r\n"[..]);
        assert!(matches!(ChunkedDecoder::new(9).decode(&mut buf, 100), Ok(Decoded::Data(_))));
        // One-byte chunks each with a 1 KiB extension: refused once the
        // extensions pass their total, far below the 1 MiB body limit.
        let ext = "x".repeat(1024 - 3);
        let mut body = Vec::new();
        for _ in 0..32 {
            body.extend_from_slice(format!("1;a={ext}\r\nz\r\n").as_bytes());
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode_whole(&body), Outcome::Err(ChunkedError::ExtensionsTooLarge));
        let mut small = Vec::new();
        for _ in 0..15 {
            small.extend_from_slice(format!("1;a={ext}\r\nz\r\n").as_bytes());
        }
        small.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode_whole(&small), Outcome::End(vec![b'z'; 15], vec![]));
        assert_eq!(RequestError::from(ChunkedError::ExtensionsTooLarge).status(), 400);
    }

    #[test]
    fn line_endings() {
        assert_eq!(error(b"5\nhello\r\n0\r\n\r\n"), ChunkedError::BareLf);
        assert_eq!(error(b"5\r\nhello\n0\r\n\r\n"), ChunkedError::BareLf);
        assert_eq!(error(b"5\r\nhello\r\n0\n\r\n"), ChunkedError::BareLf);
        assert_eq!(error(b"5\r\nhello\r\n0\r\n\n"), ChunkedError::BareLf);
        assert_eq!(error(b"5\r\nhello\r\n0\r\nA: b\n\r\n"), ChunkedError::BareLf);
        assert_eq!(error(b"5\r\nhelloX\r\n0\r\n\r\n"), ChunkedError::MissingCrlfAfterData);
        assert_eq!(error(b"5\r\nhello\rX0\r\n\r\n"), ChunkedError::MissingCrlfAfterData);
        assert_eq!(error(b"\n"), ChunkedError::BareLf);
    }

    /// Extension bytes are counted over the whole body: exactly
    /// `MAX_CHUNK_EXTENSIONS` of them pass, one more is refused.
    #[test]
    fn extensions_limit_is_exact() {
        let body = |lens: &[usize]| {
            let mut body = Vec::new();
            for &len in lens {
                body.extend_from_slice(b"1;a=");
                body.extend(std::iter::repeat_n(b'x', len - 3));
                body.extend_from_slice(b"\r\nz\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            body
        };
        let max = MAX_CHUNK_EXTENSIONS as usize;
        let full = [4095, 4095, 4095, 4095, max - 4 * 4095];
        assert_eq!(full.iter().sum::<usize>(), max);
        assert_eq!(decode_whole(&body(&full)), Outcome::End(b"zzzzz".to_vec(), vec![]));
        let over = [4095, 4095, 4095, 4095, max - 4 * 4095 + 1];
        assert_eq!(decode_whole(&body(&over)), Outcome::Err(ChunkedError::ExtensionsTooLarge));
    }

    /// A quoted-pair in an extension value escapes HTAB, SP, VCHAR or
    /// obs-text, never another control character (RFC 9110 §5.6.4).
    #[test]
    fn quoted_pairs_in_extensions() {
        for (escaped, ok) in [
            (b'\t', true),
            (b' ', true),
            (b'x', true),
            (b'"', true),
            (0x80, true),
            (0x01, false),
            (0x7f, false),
            (0x1f, false),
        ] {
            let mut body = b"1;a=\"\\".to_vec();
            body.extend_from_slice(&[escaped, b'"']);
            body.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
            let want = if ok { Outcome::End(b"z".to_vec(), vec![]) } else { Outcome::Err(ChunkedError::BadExtension) };
            assert_eq!(decode_whole(&body), want, "escaped {escaped:#04x}");
        }
    }

    #[test]
    fn size_line_limit() {
        let ext = |len: usize| {
            let mut line = b"5;a=".to_vec();
            line.extend(std::iter::repeat_n(b'x', len - 4));
            line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            line
        };
        assert_eq!(decode_whole(&ext(MAX_CHUNK_SIZE_LINE)), Outcome::End(b"hello".to_vec(), vec![]));
        let too_long = ext(MAX_CHUNK_SIZE_LINE + 1);
        assert_eq!(decode_whole(&too_long), Outcome::Err(ChunkedError::SizeLineTooLong));
        let stepped: Vec<&[u8]> = too_long.chunks(1).collect();
        assert_eq!(decode_pieces(&stepped, 1), Outcome::Err(ChunkedError::SizeLineTooLong));
        // Detected before the line ends.
        let mut buf = BytesMut::from(&vec![b'0'; MAX_CHUNK_SIZE_LINE + 2][..]);
        assert_eq!(ChunkedDecoder::new(MAX_BODY).decode(&mut buf, 1), Err(ChunkedError::SizeLineTooLong));
        assert_eq!(RequestError::from(ChunkedError::SizeLineTooLong).status(), 400);
    }

    #[test]
    fn trailers() {
        assert_eq!(
            check(b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\nnext"),
            Outcome::End(b"abc".to_vec(), b"next".to_vec())
        );
        for bad in ["X-Sum 1", " X: 1", "X : 1", ": 1", "X: \x01"] {
            let input = format!("0\r\n{bad}\r\n\r\n");
            assert_eq!(error(input.as_bytes()), ChunkedError::BadTrailer, "{bad:?}");
        }
        // The whole section, final CRLF included, is bounded.
        let section = |len: usize| {
            let mut input = b"0\r\nX: ".to_vec();
            input.extend(std::iter::repeat_n(b'v', len - 7));
            input.extend_from_slice(b"\r\n\r\n");
            input
        };
        assert_eq!(decode_whole(&section(MAX_TRAILER_SECTION)), Outcome::End(vec![], vec![]));
        let too_large = section(MAX_TRAILER_SECTION + 1);
        assert_eq!(decode_whole(&too_large), Outcome::Err(ChunkedError::TrailerTooLarge));
        let stepped: Vec<&[u8]> = too_large.chunks(1).collect();
        assert_eq!(decode_pieces(&stepped, 1), Outcome::Err(ChunkedError::TrailerTooLarge));
        let many_lines = format!("0\r\n{}\r\n", "A: b\r\n".repeat(MAX_TRAILER_SECTION / 6 + 1));
        assert_eq!(decode_whole(many_lines.as_bytes()), Outcome::Err(ChunkedError::TrailerTooLarge));
    }

    #[test]
    fn max_is_honoured_and_data_is_zero_copy() {
        let mut buf = BytesMut::from(&b"a\r\n0123456789\r\n0\r\n\r\n"[..]);
        let data_start = buf.as_ptr() as usize + 3;
        let mut decoder = ChunkedDecoder::new(MAX_BODY);
        let mut pieces = Vec::new();
        loop {
            match decoder.decode(&mut buf, 4).unwrap() {
                Decoded::Data(d) => pieces.push(d),
                Decoded::End => break,
                Decoded::NeedMore => panic!("all bytes present"),
            }
        }
        let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lens, [4, 4, 2]);
        assert_eq!(pieces[0].as_ptr() as usize, data_start);
        assert_eq!(pieces[1].as_ptr() as usize, data_start + 4);
        // max 0 still makes progress.
        let mut buf = BytesMut::from(&b"1\r\nx\r\n0\r\n\r\n"[..]);
        let mut decoder = ChunkedDecoder::new(MAX_BODY);
        assert_eq!(decoder.decode(&mut buf, 0), Ok(Decoded::Data(Bytes::from_static(b"x"))));
    }

    #[test]
    fn data_is_returned_as_soon_as_available() {
        let mut decoder = ChunkedDecoder::new(MAX_BODY);
        let mut buf = BytesMut::from(&b"5\r\nh"[..]);
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::Data(Bytes::from_static(b"h"))));
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"ell");
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::Data(Bytes::from_static(b"ell"))));
        buf.extend_from_slice(b"o\r");
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::Data(Bytes::from_static(b"o"))));
        assert_eq!(decoder.decode(&mut buf, 100), Ok(Decoded::NeedMore));
        assert_eq!(&buf[..], b"\r");
    }

    #[test]
    fn errors_display_and_convert() {
        assert_eq!(ChunkedError::BareLf.to_string(), "bare LF in chunked framing");
        assert_eq!(
            RequestError::from(ChunkedError::MissingCrlfAfterData),
            RequestError::BadRequest("missing CRLF after chunk data")
        );
    }
}
