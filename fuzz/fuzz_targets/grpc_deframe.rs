//! Pushes the input into a Deframer in pseudo-random slices (driven by the
//! first two bytes) and checks the result equals deframing it in one push.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use noslate_fc::grpc::{Deframer, GrpcError};

/// Small limit so the TooLarge path is reachable.
const LIMIT: usize = 4096;

fn drain(d: &mut Deframer, out: &mut Vec<Bytes>) -> Option<GrpcError> {
    loop {
        match d.next_message() {
            Ok(Some(m)) => {
                assert!(m.len() <= LIMIT);
                out.push(m);
            }
            Ok(None) => return None,
            Err(e) => {
                // Errors are sticky.
                assert_eq!(d.next_message(), Err(e.clone()));
                return Some(e);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut seed = u32::from(data[0]) << 8 | u32::from(data[1]);
    let stream = Bytes::copy_from_slice(&data[2..]);

    let mut whole = Deframer::new(LIMIT);
    whole.push(stream.clone());
    let mut expected = Vec::new();
    let expected_err = drain(&mut whole, &mut expected);

    let mut split = Deframer::new(LIMIT);
    let mut got = Vec::new();
    let mut got_err = None;
    let mut pos = 0;
    while pos < stream.len() && got_err.is_none() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((seed >> 16) as usize % 17).min(stream.len() - pos);
        split.push(stream.slice(pos..pos + n));
        pos += n;
        got_err = drain(&mut split, &mut got);
    }
    assert_eq!(got, expected);
    assert_eq!(got_err, expected_err);
    if expected_err.is_none() {
        assert_eq!(split.buffered(), whole.buffered());
        assert_eq!(split.is_idle(), whole.is_idle());
    }
});
