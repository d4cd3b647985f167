//! Fuzz the HTTP/1.1 request path: head parser, then body decoder, looping
//! over pipelined requests, with the input delivered in pieces.
//!
//! Byte 0 picks the piece size (and so the `max` handed to the body decoder);
//! bit 7 of byte 1 selects tiny limits so the 431/414/413 paths are reached.
//! Invariants checked: no panic, termination, `Data` never empty nor longer
//! than `max`, and the verdict on the first head does not depend on how the
//! input was split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use noslate_fc::http1::{BodyDecoder, Decoded, HeadParser, Limits};

fuzz_target!(|input: &[u8]| {
    let [split, flags, data @ ..] = input else {
        return;
    };
    let step = usize::from(*split % 64) + 1;
    let limits = if flags & 0x80 != 0 {
        Limits { max_head: 256, max_target: 64, max_body: 1024, max_headers: 8 }
    } else {
        Limits::default()
    };

    // The first head's verdict must not depend on the split.
    let whole = first_head(data, data.len().max(1), &limits);
    let split = first_head(data, step, &limits);
    assert_eq!(whole, split, "split {step} changed the verdict");

    drive(data, step, &limits);
});

/// Outcome of parsing the first head, comparable across splits.
fn first_head(data: &[u8], step: usize, limits: &Limits) -> Option<Result<String, u16>> {
    let mut parser = HeadParser::new();
    let mut buf = BytesMut::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        match parser.parse(&mut buf, limits) {
            Ok(None) => {}
            Ok(Some(head)) => {
                return Some(Ok(format!(
                    "{:?} {:?} {:?} {} {:?} {} {}",
                    head.method(),
                    head.target(),
                    head.version(),
                    head.head_len(),
                    head.framing(),
                    head.keep_alive(),
                    head.expects_continue(),
                )))
            }
            Err(err) => return Some(Err(err.status())),
        }
    }
    None
}

/// Full connection loop: heads and bodies of pipelined requests.
fn drive(data: &[u8], step: usize, limits: &Limits) {
    let mut pieces = data.chunks(step);
    let mut parser = HeadParser::new();
    let mut buf = BytesMut::new();
    // Each request consumes at least one byte (its head), so the number of
    // requests is bounded by the input; this guard only backs that up.
    for _ in 0..=data.len() {
        let head = loop {
            match parser.parse(&mut buf, limits) {
                Ok(Some(head)) => break head,
                Ok(None) => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return,
                },
                Err(err) => {
                    let _ = (err.status(), err.reason(), err.to_string());
                    return;
                }
            }
        };
        assert!(head.head_len() > 0);
        let _ = (head.path(), head.headers().count(), head.header("host"));
        let mut body = BodyDecoder::new(head.framing(), limits);
        loop {
            match body.decode(&mut buf, step) {
                Ok(Decoded::Data(bytes)) => {
                    assert!(!bytes.is_empty() && bytes.len() <= step);
                }
                Ok(Decoded::NeedMore) => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return,
                },
                Ok(Decoded::End) => {
                    assert!(body.is_done());
                    break;
                }
                Err(err) => {
                    let _ = err.status();
                    return;
                }
            }
        }
        if !head.keep_alive() {
            return;
        }
    }
}
