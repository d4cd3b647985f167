//! HTTP/2 receive path: splitting frames off the connection's read buffer,
//! and splicing the DATA payloads of an invoke stream into HTTP response
//! pieces. Throughput is bytes of input (frames, or DATA payloads), plus
//! frames per second for the small-frame case.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use noslate_fc::grpc::message_prefix;
use noslate_fc::h2::frame::DEFAULT_MAX_FRAME_SIZE;
use noslate_fc::h2::{decode_frame, Frame};
use noslate_fc::pool::BufPool;
use noslate_fc::proto::{InvokeResponse, InvokeResult};
use noslate_fc::splice::{Piece, ResponseDecoder};

/// DATA payload size: the default SETTINGS_MAX_FRAME_SIZE, which is what a
/// Node.js server sends large bodies in.
const DATA_PAYLOAD: usize = DEFAULT_MAX_FRAME_SIZE as usize;
/// Body of each streamed response message.
const BODY_MESSAGE_LEN: usize = 64 * 1024;
/// Body messages per spliced response (1 MiB of body).
const BODY_MESSAGES: usize = 16;
/// Responses in the frame-decoding buffer.
const STREAMS: u32 = 4;
/// Frames in the small-frame buffer, and their payload size.
const SMALL_FRAMES: usize = 256;
const SMALL_PAYLOAD: usize = 64;

/// A plausible HPACK block (contents do not matter to the frame layer).
fn header_block(len: usize) -> Bytes {
    Bytes::from(vec![0x88; len])
}

/// Per stream: response HEADERS, 64 KiB of body in four 16 KiB DATA frames,
/// trailing HEADERS with END_STREAM.
fn response_frames() -> (BytesMut, usize) {
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for stream_id in (0..STREAMS).map(|i| 2 * i + 1) {
        Frame::Headers { stream_id, block: header_block(60), end_stream: false, end_headers: true }.encode(&mut buf);
        for _ in 0..BODY_MESSAGE_LEN / DATA_PAYLOAD {
            Frame::Data {
                stream_id,
                payload: Bytes::from(vec![b'd'; DATA_PAYLOAD]),
                end_stream: false,
                flow_len: DATA_PAYLOAD as u32,
            }
            .encode(&mut buf);
        }
        Frame::Headers { stream_id, block: header_block(20), end_stream: true, end_headers: true }.encode(&mut buf);
        frames += 2 + BODY_MESSAGE_LEN / DATA_PAYLOAD;
    }
    (buf, frames)
}

fn small_frames() -> BytesMut {
    let mut buf = BytesMut::new();
    for _ in 0..SMALL_FRAMES {
        Frame::Data {
            stream_id: 1,
            payload: Bytes::from(vec![b's'; SMALL_PAYLOAD]),
            end_stream: false,
            flow_len: SMALL_PAYLOAD as u32,
        }
        .encode(&mut buf);
    }
    buf
}

/// Decodes every frame in `buf`, returning how many there were.
fn decode_all(mut buf: BytesMut) -> usize {
    let mut frames = 0;
    while let Some(frame) = decode_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).expect("valid frame") {
        black_box(frame);
        frames += 1;
    }
    assert!(buf.is_empty());
    frames
}

fn bench_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2/decode_frame");

    let (responses, frames) = response_frames();
    assert_eq!(decode_all(responses.clone()), frames);
    group.throughput(Throughput::Bytes(responses.len() as u64));
    group.bench_function("4_responses_headers_4x16KiB_data_trailers", |b| {
        b.iter_batched(|| responses.clone(), decode_all, BatchSize::SmallInput)
    });

    let small = small_frames();
    assert_eq!(decode_all(small.clone()), SMALL_FRAMES);
    group.throughput(Throughput::Elements(SMALL_FRAMES as u64));
    group
        .bench_function("256_data_frames_64B", |b| b.iter_batched(|| small.clone(), decode_all, BatchSize::SmallInput));
    group.finish();
}

/// One gRPC message: prefix then payload.
fn grpc_message(response: InvokeResponse<'_>, dst: &mut Vec<u8>) {
    let mut payload = Vec::new();
    response.encode(&mut payload);
    dst.extend_from_slice(&message_prefix(payload.len() as u32));
    dst.extend_from_slice(&payload);
}

/// The DATA payloads of an invoke response: head message, then
/// `BODY_MESSAGES` `result{body}` messages, cut into 16 KiB payloads with no
/// regard for message boundaries (as HTTP/2 does).
fn invoke_response_payloads() -> Vec<Bytes> {
    let mut stream = Vec::new();
    grpc_message(
        InvokeResponse::Result(InvokeResult {
            status: Some(200),
            headers: vec![(b"content-type", b"application/octet-stream")],
            body: None,
        }),
        &mut stream,
    );
    let body = vec![b'b'; BODY_MESSAGE_LEN];
    for _ in 0..BODY_MESSAGES {
        grpc_message(
            InvokeResponse::Result(InvokeResult { status: None, headers: Vec::new(), body: Some(&body) }),
            &mut stream,
        );
    }
    let stream = Bytes::from(stream);
    (0..stream.len())
        .step_by(DATA_PAYLOAD)
        .map(|start| stream.slice(start..(start + DATA_PAYLOAD).min(stream.len())))
        .collect()
}

/// Feeds every payload to a fresh decoder, returning the body bytes out.
fn splice_all(payloads: &[Bytes], pool: &mut BufPool) -> usize {
    let mut decoder = ResponseDecoder::default();
    let mut body = 0;
    for payload in payloads {
        let mut each = |piece| {
            if let Piece::Body(bytes) = black_box(piece) {
                body += bytes.len();
            }
        };
        decoder.feed(payload.clone(), &mut each, pool).expect("valid response");
    }
    assert!(decoder.is_idle() && decoder.head_seen());
    body
}

fn bench_splice(c: &mut Criterion) {
    let payloads = invoke_response_payloads();
    let mut pool = BufPool::default();
    assert_eq!(splice_all(&payloads, &mut pool), BODY_MESSAGES * BODY_MESSAGE_LEN);
    let input: usize = payloads.iter().map(Bytes::len).sum();

    let mut group = c.benchmark_group("h2/splice");
    group.throughput(Throughput::Bytes(input as u64));
    group.bench_function("response_16x64KiB_messages_16KiB_data", |b| {
        b.iter(|| splice_all(black_box(&payloads), &mut pool))
    });
    group.finish();
}

criterion_group!(benches, bench_frames, bench_splice);
criterion_main!(benches);
