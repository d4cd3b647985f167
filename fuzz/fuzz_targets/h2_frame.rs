//! Fuzz the HTTP/2 frame decoder and the client connection with arbitrary
//! server bytes, delivered in arbitrary splits. Neither may panic, loop
//! forever, or grow without bound.
//!
//! Input layout: byte 0 picks the read size (1..=64 octets), byte 1 the
//! number of request streams opened up front; the rest is what the server
//! "sends".
#![no_main]

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use noslate_fc::grpc;
use noslate_fc::h2::{decode_frame, ClientConnection, Config, ErrorCode, Event};

/// The request head noslate-fc sends (`grpc::request_fields`).
const PATH: &[u8] = b"/noslated.data.PushServer/invoke";

fuzz_target!(|data: &[u8]| {
    let [step, streams, input @ ..] = data else {
        return;
    };
    let step = usize::from(*step % 64) + 1;

    // 1. The bare decoder.
    let mut buf = BytesMut::new();
    'outer: for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decode_frame(&mut buf, 16_384) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // A stream error consumed its frame: go on.
                Err(e) if !e.is_connection_error() => {}
                Err(_) => break 'outer,
            }
        }
    }

    // 2. A client connection with a few streams in flight.
    let timeout = grpc::encode_timeout(10_999);
    let request = grpc::request_fields(PATH, &timeout);
    let mut conn = ClientConnection::new(Config::default());
    let mut opened = Vec::new();
    for i in 0..(streams % 8) {
        if let Ok(s) = conn.open(&request, i % 3 == 0) {
            conn.send_data(s, Bytes::from(vec![i; 40_000]));
            opened.push(s);
        }
    }
    let mut buf = BytesMut::new();
    for (round, chunk) in input.chunks(step).enumerate() {
        buf.extend_from_slice(chunk);
        let result = conn.recv(&mut buf);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Data { stream, data, .. } => conn.release(stream, data.len()),
                Event::Headers { stream, end_stream: true, .. } => conn.send_end(stream),
                // Send as a body pump does: up to the capacity, then ask.
                Event::SendReady { stream } => {
                    let n = conn.send_capacity(stream).min(20_000);
                    if n > 0 {
                        conn.send_data(stream, Bytes::from(vec![7u8; n]));
                    }
                    if conn.send_capacity(stream) == 0 {
                        conn.want_capacity(stream);
                    }
                }
                _ => {}
            }
        }
        for &s in &opened {
            if conn.send_capacity(s) == 0 {
                conn.want_capacity(s);
            }
        }
        if round % 5 == 4 {
            if let Some(&s) = opened.get(round % opened.len().max(1)) {
                conn.reset(s, ErrorCode::CANCEL);
            }
        }
        // Drain the output as a socket would, in pieces.
        let mut guard = 0;
        while conn.has_output() && guard < 10_000 {
            let mut iov = [IoSlice::new(&[]); 16];
            let n = conn.fill_iovecs(&mut iov);
            let len: usize = iov[..n].iter().map(|s| s.len()).sum();
            assert!(n > 0 && len > 0);
            conn.advance_output(len.min(step * 97));
            guard += 1;
        }
        let _ = conn.active_streams();
        if result.is_err() {
            assert!(!conn.is_open_for_streams());
            break;
        }
    }
});
