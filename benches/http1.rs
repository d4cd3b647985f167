//! HTTP/1.1 request side: head parsing and body framing, as the event loop
//! drives them over its read buffer.
//!
//! Every iteration gets a fresh copy of the input `BytesMut` (made in the
//! batch setup, outside the timed region), because the parsers consume the
//! buffer with `split_to`. Throughput is the bytes of wire input consumed.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use noslate_fc::fc::request::CHUNK_MAX;
use noslate_fc::http1::{BodyDecoder, BodyFraming, ChunkedDecoder, Decoded, HeadParser, Limits};

/// Body size of the framing benchmarks.
const BODY_LEN: usize = 64 * 1024;
/// Chunk size on the wire (chunked) and per-`decode` cap (Content-Length).
const PIECE_LEN: usize = 4 * 1024;
/// Target size of the large head (request line through the empty line).
const LARGE_HEAD_LEN: usize = 6 * 1024;
/// Field lines of the large head.
const LARGE_HEAD_FIELDS: usize = 60;

/// A head as Function Compute sends it to a custom container: ten fields.
fn small_head() -> Vec<u8> {
    let mut head = String::from("POST /invoke HTTP/1.1\r\n");
    for (name, value) in [
        ("Host", "127.0.0.1:9000"),
        ("x-fc-request-id", "1-6620b5f3-0f3e8a1c2b7d4e5f6a7b8c9d"),
        ("x-fc-function-name", "noslate-hello"),
        ("x-fc-function-handler", "index.handler"),
        ("x-fc-function-memory", "512"),
        ("x-fc-function-timeout", "60"),
        ("x-fc-region", "cn-hangzhou"),
        ("x-fc-account-id", "1234567890123456"),
        ("content-type", "application/octet-stream"),
        ("content-length", "1024"),
    ] {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sixty fields padded so the whole head is `LARGE_HEAD_LEN` bytes: close
/// to FC's 8 KB head limit, as with large cookies or tracing headers.
fn large_head() -> Vec<u8> {
    let request_line = "POST /invoke?tenant=acme&trace=on HTTP/1.1\r\n";
    // Each line is "x-custom-field-NN: " (19) + value + CRLF (2).
    let fixed = request_line.len() + 2 + LARGE_HEAD_FIELDS * (19 + 2);
    let value_budget = LARGE_HEAD_LEN - fixed;
    let mut head = String::from(request_line);
    for i in 0..LARGE_HEAD_FIELDS {
        let len = value_budget / LARGE_HEAD_FIELDS + usize::from(i < value_budget % LARGE_HEAD_FIELDS);
        let value: String = (0..len).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect();
        head.push_str(&format!("x-custom-field-{i:02}: {value}\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(head.len(), LARGE_HEAD_LEN);
    head.into_bytes()
}

fn chunked_body() -> Vec<u8> {
    let mut wire = Vec::with_capacity(BODY_LEN + BODY_LEN / PIECE_LEN * 8 + 5);
    for i in 0..BODY_LEN / PIECE_LEN {
        wire.extend_from_slice(format!("{PIECE_LEN:x}\r\n").as_bytes());
        wire.resize(wire.len() + PIECE_LEN, b'a' + i as u8);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

fn bench_heads(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http1/head");
    for (name, head, fields) in
        [("small_10_fields", small_head(), 10), ("large_60_fields_6KiB", large_head(), LARGE_HEAD_FIELDS)]
    {
        // Check once that the input parses as intended.
        let parsed = HeadParser::new()
            .parse(&mut BytesMut::from(&head[..]), &limits)
            .expect("valid head")
            .expect("complete head");
        assert_eq!(parsed.headers().count(), fields);

        let input = BytesMut::from(&head[..]);
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut parser = HeadParser::new();
                    black_box(parser.parse(black_box(&mut buf), &limits))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Runs `decode` until `End`, returning the body bytes seen.
fn drain(mut decode: impl FnMut() -> Decoded) -> usize {
    let mut total = 0;
    loop {
        match decode() {
            Decoded::Data(data) => total += black_box(data).len(),
            Decoded::End => return total,
            Decoded::NeedMore => panic!("whole body is buffered"),
        }
    }
}

fn bench_bodies(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http1/body");

    let length_body = BytesMut::from(&vec![b'x'; BODY_LEN][..]);
    let decode_length = |mut buf: BytesMut| {
        let mut decoder = BodyDecoder::new(BodyFraming::Length(BODY_LEN as u64), &limits);
        drain(|| decoder.decode(&mut buf, PIECE_LEN).expect("valid body"))
    };
    assert_eq!(decode_length(length_body.clone()), BODY_LEN);
    group.throughput(Throughput::Bytes(BODY_LEN as u64));
    group.bench_function("content_length_64KiB_4KiB_pieces", |b| {
        b.iter_batched(|| length_body.clone(), decode_length, BatchSize::SmallInput)
    });

    let chunked = BytesMut::from(&chunked_body()[..]);
    let decode_chunked = |mut buf: BytesMut| {
        let mut decoder = ChunkedDecoder::new(limits.max_body);
        // The FC core's per-call cap (its body message size).
        drain(|| decoder.decode(&mut buf, CHUNK_MAX).expect("valid body"))
    };
    assert_eq!(decode_chunked(chunked.clone()), BODY_LEN);
    group.throughput(Throughput::Bytes(chunked.len() as u64));
    group.bench_function("chunked_64KiB_4KiB_chunks", |b| {
        b.iter_batched(|| chunked.clone(), decode_chunked, BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, bench_heads, bench_bodies);
criterion_main!(benches);
