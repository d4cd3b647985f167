//! HPACK: decoding the response blocks a Node.js (nghttp2) gRPC server sends,
//! and encoding our gRPC request block.
//!
//! The response blocks are built here the way nghttp2 builds them: a field
//! found whole in the static table is indexed (`:status 200`), every other
//! field is a literal with incremental indexing (naming the static entry
//! when the name is there), and strings are Huffman-coded when that is
//! shorter (RFC 7541 §5.2, §6.1, §6.2.1). Throughput is bytes of header
//! block, decoded or produced.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use noslate_fc::grpc;
use noslate_fc::hpack::{encode_integer, huffman, Decoder, Encoder, DEFAULT_TABLE_SIZE};

/// SETTINGS_MAX_HEADER_LIST_SIZE for decoding: large enough never to bind.
const MAX_LIST_SIZE: usize = 64 * 1024;

/// Static table indices used below (RFC 7541 Appendix A).
const STATUS_200: usize = 8;
const CONTENT_TYPE: usize = 31;
const DATE: usize = 33;

const RESPONSE_HEAD: [(&[u8], &[u8]); 5] = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc+proto"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
    (b"grpc-encoding", b"identity"),
    (b"date", b"Tue, 14 May 2024 08:12:45 GMT"),
];

const RESPONSE_TRAILERS: [(&[u8], &[u8]); 2] = [(b"grpc-status", b"0"), (b"grpc-message", b"OK")];

/// §5.2 string literal, Huffman-coded when shorter (as nghttp2 decides).
fn put_string(value: &[u8], dst: &mut Vec<u8>) {
    let huffman_len = huffman::encoded_len(value);
    if huffman_len < value.len() {
        encode_integer(huffman_len, 7, 0x80, dst);
        huffman::encode(value, dst);
    } else {
        encode_integer(value.len(), 7, 0, dst);
        dst.extend_from_slice(value);
    }
}

/// §6.1 indexed field.
fn put_indexed(index: usize, dst: &mut Vec<u8>) {
    encode_integer(index, 7, 0x80, dst);
}

/// §6.2.1 literal with incremental indexing; `name_index` 0 means a new name.
fn put_literal_indexed(name_index: usize, name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
    encode_integer(name_index, 6, 0x40, dst);
    if name_index == 0 {
        put_string(name, dst);
    }
    put_string(value, dst);
}

/// The first response head on a connection: every field but `:status` is
/// new to the dynamic table.
fn first_head_block() -> Vec<u8> {
    let mut block = Vec::new();
    put_indexed(STATUS_200, &mut block);
    for &(name, value) in &RESPONSE_HEAD[1..] {
        let name_index = match name {
            b"content-type" => CONTENT_TYPE,
            b"date" => DATE,
            _ => 0,
        };
        put_literal_indexed(name_index, name, value, &mut block);
    }
    block
}

fn first_trailers_block() -> Vec<u8> {
    let mut block = Vec::new();
    for &(name, value) in &RESPONSE_TRAILERS {
        put_literal_indexed(0, name, value, &mut block);
    }
    block
}

/// Dynamic table after the first head and trailers, newest first (index 62
/// onward): grpc-message, grpc-status, date, grpc-encoding,
/// grpc-accept-encoding, content-type.
const DYNAMIC_BASE: usize = 62;

/// Later responses on the same connection: every field is one indexed byte.
fn repeat_head_block() -> Vec<u8> {
    let mut block = Vec::new();
    put_indexed(STATUS_200, &mut block);
    for position in [5, 4, 3, 2] {
        put_indexed(DYNAMIC_BASE + position, &mut block);
    }
    block
}

fn repeat_trailers_block() -> Vec<u8> {
    let mut block = Vec::new();
    for position in [1, 0] {
        put_indexed(DYNAMIC_BASE + position, &mut block);
    }
    block
}

/// Decodes `block`, returning the fields (used to check the inputs).
fn decode_fields(decoder: &mut Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fields = Vec::new();
    decoder
        .decode(block, MAX_LIST_SIZE, &mut |name, value| fields.push((name.to_vec(), value.to_vec())))
        .expect("valid block");
    fields
}

fn owned(fields: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

/// One decode, folding every field into a value the optimiser must keep.
fn decode_once(decoder: &mut Decoder, block: &[u8]) -> usize {
    let mut seen = 0;
    decoder
        .decode(black_box(block), MAX_LIST_SIZE, &mut |name, value| {
            seen += black_box(name).len() + black_box(value).len();
        })
        .expect("valid block");
    seen
}

fn bench_decode(c: &mut Criterion) {
    let first_head = first_head_block();
    let first_trailers = first_trailers_block();
    let repeat_head = repeat_head_block();
    let repeat_trailers = repeat_trailers_block();

    // The inputs decode to what nghttp2 would have meant, and the warmed
    // decoder resolves the repeat blocks to the same fields.
    let mut warmed = Decoder::new(DEFAULT_TABLE_SIZE);
    assert_eq!(decode_fields(&mut warmed, &first_head), owned(&RESPONSE_HEAD));
    assert_eq!(decode_fields(&mut warmed, &first_trailers), owned(&RESPONSE_TRAILERS));
    assert_eq!(decode_fields(&mut warmed, &repeat_head), owned(&RESPONSE_HEAD));
    assert_eq!(decode_fields(&mut warmed, &repeat_trailers), owned(&RESPONSE_TRAILERS));
    let table_len = warmed.table_len();

    let mut group = c.benchmark_group("hpack/decode");

    // A fresh decoder per iteration (made outside the timed region): Huffman
    // decoding plus insertion into the dynamic table.
    group.throughput(Throughput::Bytes(first_head.len() as u64));
    group.bench_function("head_first_huffman_incremental", |b| {
        b.iter_batched_ref(
            || Decoder::new(DEFAULT_TABLE_SIZE),
            |decoder| decode_once(decoder, &first_head),
            BatchSize::SmallInput,
        )
    });

    // Trailers on a decoder that has seen the head, as on the wire.
    group.throughput(Throughput::Bytes(first_trailers.len() as u64));
    group.bench_function("trailers_first_huffman_incremental", |b| {
        b.iter_batched_ref(
            || {
                let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE);
                decode_once(&mut decoder, &first_head);
                decoder
            },
            |decoder| decode_once(decoder, &first_trailers),
            BatchSize::SmallInput,
        )
    });

    // Fully indexed blocks leave the table unchanged, so one warmed decoder
    // serves every iteration.
    group.throughput(Throughput::Bytes(repeat_head.len() as u64));
    group.bench_function("head_repeat_fully_indexed", |b| b.iter(|| decode_once(&mut warmed, &repeat_head)));
    group.throughput(Throughput::Bytes(repeat_trailers.len() as u64));
    group.bench_function("trailers_repeat_fully_indexed", |b| b.iter(|| decode_once(&mut warmed, &repeat_trailers)));
    assert_eq!(warmed.table_len(), table_len);
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    // The request block of an invoke stream (`fc::Invocation::grpc_path`).
    let timeout = grpc::encode_timeout(61_000);
    let fields = grpc::request_fields(b"/noslated.data.PushServer/invoke", &timeout);
    let mut encoder = Encoder::new();
    let mut block = Vec::with_capacity(256);
    encoder.encode(fields.iter().copied(), &mut block);
    assert_eq!(decode_fields(&mut Decoder::new(DEFAULT_TABLE_SIZE), &block), owned(&fields));

    let mut group = c.benchmark_group("hpack/encode");
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("grpc_request_7_fields", |b| {
        b.iter(|| {
            block.clear();
            encoder.encode(black_box(&fields).iter().copied(), &mut block);
            black_box(block.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
