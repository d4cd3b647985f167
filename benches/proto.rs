//! `noslated.data` protobuf messages on the invoke path: the request head we
//! encode per invocation, the per-chunk body prefixes, and the response
//! messages we decode. Throughput is bytes encoded or decoded, or prefixes
//! built per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use noslate_fc::proto::{body_chunk_prefix, InvokeRequestHead, InvokeResponse, InvokeResult};

/// Body length announced after the request head (field 7 key and length).
const REQUEST_BODY_LEN: usize = 1024;
/// Body of one response body-chunk message.
const RESPONSE_BODY_LEN: usize = 64 * 1024;

const REQUEST_HEADERS: [(&[u8], &[u8]); 10] = [
    (b"host", b"127.0.0.1:9000"),
    (b"x-fc-request-id", b"1-6620b5f3-0f3e8a1c2b7d4e5f6a7b8c9d"),
    (b"x-fc-function-name", b"noslate-hello"),
    (b"x-fc-function-handler", b"index.handler"),
    (b"x-fc-function-memory", b"512"),
    (b"x-fc-function-timeout", b"60"),
    (b"x-fc-region", b"cn-hangzhou"),
    (b"x-fc-account-id", b"1234567890123456"),
    (b"content-type", b"application/json"),
    (b"content-length", b"1024"),
];

const BAGGAGE: [(&[u8], &[u8]); 5] = [
    (b"x-fc-request-id", b"1-6620b5f3-0f3e8a1c2b7d4e5f6a7b8c9d"),
    (b"x-fc-trace-id", b"5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c"),
    (b"x-fc-region", b"cn-hangzhou"),
    (b"x-fc-account-id", b"1234567890123456"),
    (b"x-fc-qualifier", b"LATEST"),
];

/// Body lengths of request chunks, covering every varint width the field-7
/// length takes within `grpc::MAX_MESSAGE_LEN` (1 to 4 bytes).
const CHUNK_LENS: [usize; 8] = [1, 100, 1000, 4096, 16_384, 65_536, 1 << 20, 8 << 20];

fn bench_encode(c: &mut Criterion) {
    let head = InvokeRequestHead {
        name: "noslate-hello",
        url: Some(b"/invoke?tenant=acme"),
        method: Some(b"POST"),
        headers: &REQUEST_HEADERS,
        baggage: &BAGGAGE,
        deadline: Some(1_715_674_365_000.0),
        request_id: Some(b"1-6620b5f3-0f3e8a1c2b7d4e5f6a7b8c9d"),
    };
    let mut dst = Vec::with_capacity(2048);
    head.encode_with_body_prefix(REQUEST_BODY_LEN, &mut dst);
    assert_eq!(dst.len() + REQUEST_BODY_LEN, head.encoded_len(REQUEST_BODY_LEN));

    let mut group = c.benchmark_group("proto/encode");
    group.throughput(Throughput::Bytes(dst.len() as u64));
    group.bench_function("invoke_request_head_10_headers_5_baggage", |b| {
        b.iter(|| {
            dst.clear();
            black_box(&head).encode_with_body_prefix(REQUEST_BODY_LEN, &mut dst);
            black_box(dst.len())
        })
    });

    group.throughput(Throughput::Elements(CHUNK_LENS.len() as u64));
    group.bench_function("body_chunk_prefix_x8", |b| {
        b.iter(|| {
            let mut total = 0;
            for &len in black_box(&CHUNK_LENS) {
                total += black_box(body_chunk_prefix(len)).as_bytes().len();
            }
            total
        })
    });
    group.finish();
}

fn encode_response(result: InvokeResult<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    InvokeResponse::Result(result).encode(&mut buf);
    buf
}

fn bench_decode(c: &mut Criterion) {
    // The first message of a response: status and headers, no body.
    let head = encode_response(InvokeResult {
        status: Some(200),
        headers: vec![
            (b"content-type", b"application/json; charset=utf-8"),
            (b"x-fc-request-id", b"1-6620b5f3-0f3e8a1c2b7d4e5f6a7b8c9d"),
            (b"cache-control", b"no-store"),
            (b"x-powered-by", b"noslate"),
            (b"set-cookie", b"session=4f2a9c; Path=/; HttpOnly"),
        ],
        body: None,
    });
    // Every later message: `result{body}`.
    let body = vec![b'b'; RESPONSE_BODY_LEN];
    let chunk = encode_response(InvokeResult { status: None, headers: Vec::new(), body: Some(&body) });
    assert!(matches!(
        InvokeResponse::decode(&head),
        Ok(InvokeResponse::Result(InvokeResult { status: Some(200), ref headers, .. })) if headers.len() == 5
    ));
    assert!(matches!(
        InvokeResponse::decode(&chunk),
        Ok(InvokeResponse::Result(InvokeResult { body: Some(b), .. })) if b.len() == RESPONSE_BODY_LEN
    ));

    let mut group = c.benchmark_group("proto/decode");
    for (name, message) in [("invoke_response_head_5_headers", &head), ("invoke_response_body_chunk_64KiB", &chunk)] {
        group.throughput(Throughput::Bytes(message.len() as u64));
        group.bench_function(name, |b| b.iter(|| black_box(InvokeResponse::decode(black_box(message)))));
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
