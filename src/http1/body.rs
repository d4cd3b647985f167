//! Request body decoding: one decoder per framing (RFC 9112 §6.3).
//!
//! [`BodyDecoder`] picks the decoder from the head's [`BodyFraming`] and gives
//! all of them the contract of [`ChunkedDecoder::decode`]: data comes out as
//! zero-copy `Bytes` split off the read buffer, `NeedMore` when the buffer
//! holds nothing usable, `End` once the body is complete, with the next
//! pipelined request left untouched in the buffer.

use bytes::BytesMut;

use super::chunked::{ChunkedDecoder, Decoded};
use super::request::BodyFraming;
use super::{Limits, RequestError};

/// Decoder for one request body.
#[derive(Clone, Debug)]
pub enum BodyDecoder {
    /// `Content-Length`: this many bytes are still to come.
    Length { remaining: u64 },
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// No body (neither header present).
    Empty,
}

impl BodyDecoder {
    /// `Length` values were checked against `limits.max_body` by the head
    /// parser; chunked bodies are checked as they arrive.
    pub fn new(framing: BodyFraming, limits: &Limits) -> Self {
        match framing {
            BodyFraming::None => BodyDecoder::Empty,
            BodyFraming::Length(remaining) => BodyDecoder::Length { remaining },
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(limits.max_body)),
        }
    }

    /// Same contract as [`ChunkedDecoder::decode`]: `Length` yields
    /// min(remaining, max, buf.len()) bytes (`max` 0 taken as 1) and `End`
    /// once nothing remains; `Empty` is `End` at once.
    pub fn decode(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, RequestError> {
        match self {
            BodyDecoder::Empty | BodyDecoder::Length { remaining: 0 } => Ok(Decoded::End),
            BodyDecoder::Length { remaining } => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let available = buf.len().min(max.max(1));
                // `remaining` may exceed usize on 32-bit targets.
                let n = usize::try_from(*remaining).map_or(available, |r| r.min(available));
                *remaining -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            BodyDecoder::Chunked(chunked) => Ok(chunked.decode(buf, max)?),
        }
    }

    /// Data bytes known to follow without further framing: the rest of a
    /// Content-Length body, or of the current chunk.
    pub fn unit_remaining(&self) -> u64 {
        match self {
            BodyDecoder::Empty => 0,
            BodyDecoder::Length { remaining } => *remaining,
            BodyDecoder::Chunked(chunked) => chunked.chunk_remaining(),
        }
    }

    /// Whether the whole body was consumed.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Empty => true,
            BodyDecoder::Length { remaining } => *remaining == 0,
            BodyDecoder::Chunked(chunked) => chunked.is_done(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Feed `input` split at `at`, collecting data until `End`.
    fn drain(framing: BodyFraming, input: &[u8], at: usize, max: usize) -> Result<(Vec<u8>, Vec<u8>), RequestError> {
        let mut decoder = BodyDecoder::new(framing, &Limits::default());
        let mut buf = BytesMut::from(&input[..at]);
        let mut fed_rest = false;
        let mut data = Vec::new();
        loop {
            match decoder.decode(&mut buf, max)? {
                Decoded::Data(bytes) => {
                    assert!(!bytes.is_empty() && bytes.len() <= max.max(1));
                    data.extend_from_slice(&bytes);
                }
                Decoded::NeedMore => {
                    assert!(!fed_rest, "ran out of input");
                    buf.extend_from_slice(&input[at..]);
                    fed_rest = true;
                }
                Decoded::End => {
                    assert!(decoder.is_done());
                    if !fed_rest {
                        buf.extend_from_slice(&input[at..]);
                    }
                    return Ok((data, buf.to_vec()));
                }
            }
        }
    }

    #[test]
    fn content_length_body_at_every_split() {
        let input = b"helloNEXT";
        for at in 0..=input.len() {
            for max in [0, 1, 2, 100] {
                let (data, rest) = drain(BodyFraming::Length(5), input, at, max).unwrap();
                assert_eq!(data, b"hello");
                assert_eq!(rest, b"NEXT");
            }
        }
    }

    /// A body is done only once all of it was consumed, whatever its framing.
    #[test]
    fn done_only_at_the_end() {
        for (framing, input) in
            [(BodyFraming::Length(3), &b"abc"[..]), (BodyFraming::Chunked, b"3\r\nabc\r\n0\r\n\r\n")]
        {
            let mut decoder = BodyDecoder::new(framing, &Limits::default());
            let mut buf = BytesMut::new();
            for (i, &b) in input.iter().enumerate() {
                assert!(!decoder.is_done(), "{framing:?}: done after {i} bytes");
                buf.extend_from_slice(&[b]);
                while let Ok(Decoded::Data(_)) = decoder.decode(&mut buf, usize::MAX) {}
            }
            assert!(decoder.is_done(), "{framing:?}");
        }
    }

    #[test]
    fn empty_and_zero_length() {
        for framing in [BodyFraming::None, BodyFraming::Length(0)] {
            let decoder = BodyDecoder::new(framing, &Limits::default());
            assert!(decoder.is_done());
            let (data, rest) = drain(framing, b"GET", 3, 10).unwrap();
            assert!(data.is_empty());
            assert_eq!(rest, b"GET");
        }
    }

    #[test]
    fn chunked_body_and_error_conversion() {
        let input = b"2\r\nhi\r\n0\r\n\r\nX";
        for at in 0..=input.len() {
            let (data, rest) = drain(BodyFraming::Chunked, input, at, 1).unwrap();
            assert_eq!(data, b"hi");
            assert_eq!(rest, b"X");
        }
        let err = drain(BodyFraming::Chunked, b"2\nhi", 4, 1).unwrap_err();
        assert_eq!(err.status(), 400);
        let limits = Limits { max_body: 1, ..Limits::default() };
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, &limits);
        let mut buf = BytesMut::from(&b"2\r\nhi"[..]);
        assert_eq!(decoder.decode(&mut buf, 10), Err(RequestError::BodyTooLarge));
    }

    #[test]
    fn length_data_is_zero_copy() {
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        let start = buf.as_ptr() as usize;
        let mut decoder = BodyDecoder::new(BodyFraming::Length(4), &Limits::default());
        let Ok(Decoded::Data(first)) = decoder.decode(&mut buf, 3) else { panic!() };
        assert_eq!(first.as_ptr() as usize, start);
        assert_eq!(decoder.decode(&mut buf, 3), Ok(Decoded::Data(Bytes::from_static(b"d"))));
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(&mut buf, 3), Ok(Decoded::End));
        assert_eq!(&buf[..], b"ef");
    }
}
