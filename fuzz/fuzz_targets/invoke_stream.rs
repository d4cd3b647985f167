//! The response side of an invoke through the real cores: an
//! `h2::ClientConnection` with one `PushServer/invoke` stream open, server
//! bytes delivered in arbitrary splits, every event polled, and the stream's
//! HEADERS and DATA handed to `fc::ResponseSplice` — the FC core that
//! `server/invoke.rs` calls — which makes the HTTP/1.1 response; flow-control
//! credit is released now or later, as the client's output drains.
//!
//! The input is read with `arbitrary::Unstructured`. Its first byte picks:
//!
//! * even — **splice alone**: a valid `InvokeResponse` message stream is
//!   generated (head, body-only chunks, also non-minimal varints, bodies of
//!   up to 1 MiB, results with headers, errors, empty results), fed to a
//!   `ResponseDecoder` at random splits, and the pieces (consecutive body
//!   slices joined) and the verdict must equal both a model computed from
//!   the full protobuf decoder and the decoding of the stream in one piece.
//!
//! * odd — **h2 + splice**: the server's bytes are a generated sequence of
//!   frames (SETTINGS, HEADERS with gRPC heads and trailers, DATA cutting a
//!   generated message stream into frames of any size, padding, WINDOW_UPDATE,
//!   PING, RST_STREAM, GOAWAY, frames for other streams, raw bytes). No
//!   panic; the decoder never buffers more than `MAX_BUFFERED_MESSAGE` plus a
//!   prefix; the client's output always drains; the pieces equal those of
//!   the DATA that reached the decoder decoded in one piece; and the HTTP/1.1
//!   response `fc::ResponseSplice` wrote (head, de-chunked body, whether it
//!   ended cleanly, the error) equals the one it writes for that DATA in one
//!   piece and the same trailers.
#![no_main]

use std::io::IoSlice;

use arbitrary::{Result, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use noslate_fc::fc::{InvokeError, OutQueue, Progress, ResponseSplice, Scratch};
use noslate_fc::grpc::{self, MESSAGE_PREFIX_LEN};
use noslate_fc::h2::frame::{self, flag, kind};
use noslate_fc::h2::{ClientConnection, Config, ErrorCode, Event, FrameHead, HeaderList};
use noslate_fc::hpack;
use noslate_fc::http1::{HeadParser, Limits};
use noslate_fc::proto::{self, InvokeErrorResponse, InvokeResponse, InvokeResult};
use noslate_fc::splice::{Failure, Piece, ResponseDecoder, SpliceError, MAX_BUFFERED_MESSAGE};

/// Largest generated message stream (keeps executions fast).
const MAX_STREAM: usize = (3 << 20) / 2;

/// The request head noslate-fc sends (`grpc::request_fields`).
const PATH: &[u8] = b"/noslated.data.PushServer/invoke";

// ----- pieces, normalized -------------------------------------------------

#[derive(Debug, PartialEq)]
enum Norm {
    Head {
        status: u16,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Consecutive body slices, joined.
    Body(Vec<u8>),
    Error(Failure),
}

#[derive(Debug, Default, PartialEq)]
struct Output {
    pieces: Vec<Norm>,
    error: Option<SpliceError>,
}

impl Output {
    fn push(&mut self, piece: Piece) {
        match piece {
            Piece::Body(b) => {
                assert!(!b.is_empty(), "empty body piece");
                if let Some(Norm::Body(last)) = self.pieces.last_mut() {
                    last.extend_from_slice(&b);
                } else {
                    self.pieces.push(Norm::Body(b.to_vec()));
                }
            }
            ref p @ Piece::Head { status, .. } => self.pieces.push(Norm::Head {
                status,
                headers: p.head_fields().iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            }),
            Piece::Error(f) => self.pieces.push(Norm::Error(f)),
        }
    }

    fn body(&mut self, b: &[u8]) {
        if !b.is_empty() {
            self.push(Piece::Body(Bytes::copy_from_slice(b)));
        }
    }
}

thread_local! {
    static POOL: std::cell::RefCell<noslate_fc::pool::BufPool> = std::cell::RefCell::new(noslate_fc::pool::BufPool::new(4));
}

/// Feed one payload; false once the decoder has failed (the invoke fails
/// and nothing more is fed).
fn feed(d: &mut ResponseDecoder, data: Bytes, out: &mut Output) -> bool {
    if out.error.is_some() {
        return false;
    }
    // One pool for the whole run, as in the loop: assembly buffers come
    // back and are reused across messages and decoders.
    let result = POOL.with(|pool| d.feed(data, &mut |p| out.push(p), &mut pool.borrow_mut()));
    assert!(d.buffered() <= MAX_BUFFERED_MESSAGE + MESSAGE_PREFIX_LEN, "decoder buffers {} bytes", d.buffered());
    if let Err(e) = result {
        let _ = e.to_string();
        out.error = Some(e);
        return false;
    }
    true
}

fn one_piece(stream: &[u8]) -> Output {
    let mut d = ResponseDecoder::default();
    let mut out = Output::default();
    if !stream.is_empty() {
        feed(&mut d, Bytes::copy_from_slice(stream), &mut out);
    }
    out
}

// ----- generated message streams -------------------------------------------

/// True one time in `d`; false once the input is used up (which makes
/// `Unstructured` answer the low end of every range), so exhausted inputs
/// stay cheap.
fn rare(u: &mut Unstructured<'_>, d: u32) -> Result<bool> {
    Ok(u.int_in_range(0..=d - 1)? == d - 1)
}

fn small_bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=max)?.min(u.len());
    Ok(u.bytes(n)?.to_vec())
}

/// A varint padded to `width` bytes (valid protobuf, not minimal).
fn put_wide_varint(dst: &mut Vec<u8>, v: u64, width: usize) {
    let mut v = v;
    for i in 0..width {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        dst.push(if i + 1 < width { low | 0x80 } else { low });
    }
}

/// `result{body}` with each length written in `width` bytes (1 = minimal).
fn body_only(body: &[u8], width: usize) -> Vec<u8> {
    let w = |v: usize| if width <= 1 { proto::varint_len(v as u64) } else { width };
    let inner = 1 + w(body.len()) + body.len();
    let mut m = Vec::with_capacity(1 + w(inner) + inner);
    m.push(0x12);
    put_wide_varint(&mut m, inner as u64, w(inner));
    m.push(0x1a);
    put_wide_varint(&mut m, body.len() as u64, w(body.len()));
    m.extend_from_slice(body);
    m
}

const NAMES: &[&[u8]] = &[b"content-type", b"x-a", b"set-cookie", b"content-length", b"x-fc-status", b""];

/// One generated `InvokeResponse` payload.
fn message(u: &mut Unstructured<'_>, budget: usize) -> Result<Vec<u8>> {
    let mut m = Vec::new();
    match u.int_in_range(0..=7u8)? {
        0 => {
            // A head: status, headers, maybe a body.
            let status =
                *u.choose(&[None, Some(0), Some(200), Some(204), Some(404), Some(100), Some(999), Some(-1)])?;
            let mut owned = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                owned.push((u.choose(NAMES)?.to_vec(), small_bytes(u, 24)?));
            }
            let body = if u.arbitrary()? { Some(small_bytes(u, 64)?) } else { None };
            let headers = owned.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            InvokeResponse::Result(InvokeResult { status, headers, body: body.as_deref() }).encode(&mut m);
        }
        1 => m = body_only(&small_bytes(u, 300)?, 1),
        2 => {
            // At most one message near the buffering limit per stream: they
            // are slow to feed a few bytes at a time.
            let len = if budget > MAX_BUFFERED_MESSAGE && rare(u, 32)? {
                u.int_in_range(MAX_BUFFERED_MESSAGE - 64..=MAX_BUFFERED_MESSAGE + 64)?
            } else {
                u.int_in_range(0..=4_000)?
            };
            let byte: u8 = u.arbitrary()?;
            m = body_only(&vec![byte; len], 1);
        }
        3 => m = body_only(&small_bytes(u, 40)?, u.int_in_range(1..=5)?),
        4 => {
            let name = small_bytes(u, 12)?;
            let message = small_bytes(u, 40)?;
            let stack = small_bytes(u, 40)?;
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let (name, message, stack) = (text(&name), text(&message), text(&stack));
            let code = if u.arbitrary()? { Some(u.arbitrary()?) } else { None };
            InvokeResponse::Error(InvokeErrorResponse {
                name: Some(&name).filter(|n| !n.is_empty()).map(|s| s.as_str()),
                message: Some(message.as_str()),
                stack: Some(stack.as_str()).filter(|_| rare(u, 2).unwrap_or(false)),
                code,
                ..Default::default()
            })
            .encode(&mut m);
        }
        5 => {
            // result{unknown field, body}: not the fast-path shape.
            let body = small_bytes(u, 64)?;
            let mut inner = vec![0x48, 0x01]; // field 9, varint 1
            proto::put_bytes(&mut inner, 3, &body);
            proto::put_bytes(&mut m, 2, &inner);
        }
        6 => InvokeResponse::Result(InvokeResult::default()).encode(&mut m),
        _ => {
            // result{body} split over two body fields (the last wins).
            let a = small_bytes(u, 16)?;
            let b = small_bytes(u, 16)?;
            let mut inner = Vec::new();
            proto::put_bytes(&mut inner, 3, &a);
            proto::put_bytes(&mut inner, 3, &b);
            proto::put_bytes(&mut m, 2, &inner);
        }
    }
    Ok(m)
}

/// A stream of gRPC-framed messages and the pieces the decoder must give.
fn message_stream(u: &mut Unstructured<'_>) -> (Vec<u8>, Output) {
    let mut stream = Vec::new();
    let mut expected = Output::default();
    let mut head_seen = false;
    for _ in 0..64 {
        if u.is_empty() || stream.len() >= MAX_STREAM {
            break;
        }
        let big_left = if stream.len() > MAX_BUFFERED_MESSAGE { 0 } else { MAX_STREAM - stream.len() };
        let Ok(m) = message(u, big_left) else { break };
        stream.extend_from_slice(&grpc::message_prefix(m.len() as u32));
        stream.extend_from_slice(&m);
        if expected.error.is_some() {
            continue;
        }
        model(&m, &mut head_seen, &mut expected);
    }
    (stream, expected)
}

/// What `ResponseDecoder` must make of one message, from the full decoder.
fn model(m: &[u8], head_seen: &mut bool, out: &mut Output) {
    let probe = &m[..m.len().min(proto::BODY_ONLY_PREFIX_MAX)];
    let fast = if *head_seen { proto::body_only_result(probe, m.len()) } else { None };
    if let Some(offset) = fast {
        out.body(&m[offset..]);
        return;
    }
    if m.len() > MAX_BUFFERED_MESSAGE {
        out.error = Some(SpliceError::TooLarge(m.len()));
        return;
    }
    match InvokeResponse::decode(m) {
        Err(e) => out.error = Some(SpliceError::Malformed(e)),
        Ok(InvokeResponse::Result(r)) => {
            if !*head_seen {
                *head_seen = true;
                let status = match r.status {
                    None | Some(0) => 200,
                    Some(s @ 100..=999) => s as u16,
                    Some(s) => {
                        out.error = Some(SpliceError::BadStatus(s));
                        return;
                    }
                };
                let headers = r.headers.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                out.pieces.push(Norm::Head { status, headers });
            }
            out.body(r.body.unwrap_or_default());
        }
        Ok(InvokeResponse::Error(e)) => out.pieces.push(Norm::Error(Failure {
            name: e.name.unwrap_or("Error").to_string(),
            message: e.message.unwrap_or("").to_string(),
            code: e.code,
            stack: e.stack.map(str::to_string),
            peer_stack: e.peer_stack.map(str::to_string),
        })),
    }
}

/// Split lengths, cycled: 1..=64, or 1..=64 KiB; scaled up by one per
/// 64 KiB of input so that a megabyte is not fed a byte at a time.
fn splits(u: &mut Unstructured<'_>) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for _ in 0..u.int_in_range(1..=16)? {
        let s: u8 = u.arbitrary()?;
        v.push(if s & 0x80 != 0 { (usize::from(s & 0x7f) + 1) * 512 } else { usize::from(s & 0x3f) + 1 });
    }
    if v.is_empty() {
        v.push(1);
    }
    Ok(v)
}

fn splice_alone(u: &mut Unstructured<'_>) -> Result<()> {
    let cuts = splits(u)?;
    let (stream, expected) = message_stream(u);
    let whole = one_piece(&stream);
    assert_eq!(whole, expected, "one-piece decoding differs from the model");

    let mut d = ResponseDecoder::default();
    let mut got = Output::default();
    let stream = Bytes::from(stream);
    let mut pos = 0;
    let scale = 1 + stream.len() / 65_536;
    for &n in cuts.iter().cycle() {
        if pos >= stream.len() {
            break;
        }
        let end = pos + (n * scale).min(stream.len() - pos);
        if !feed(&mut d, stream.slice(pos..end), &mut got) {
            break;
        }
        pos = end;
    }
    assert_eq!(got, expected, "split decoding differs from the model");
    if got.error.is_none() {
        assert!(d.is_idle(), "whole messages fed, yet the decoder is not idle");
    }
    Ok(())
}

// ----- h2 + splice ------------------------------------------------------------

fn put_frame(dst: &mut BytesMut, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    dst.extend_from_slice(&FrameHead { len: payload.len() as u32, kind, flags, stream_id }.encode());
    dst.extend_from_slice(payload);
}

fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    hpack::Encoder::new().encode(fields.iter().copied(), &mut b);
    b
}

/// The server's bytes: frames, with DATA on stream 1 cutting `messages`.
fn server_bytes(u: &mut Unstructured<'_>, messages: &[u8]) -> Result<BytesMut> {
    let mut out = BytesMut::new();
    let mut cursor = 0;
    if !rare(u, 16)? {
        frame::encode_settings(&mut out, &[]);
    }
    for _ in 0..256 {
        if u.is_empty() {
            break;
        }
        let stream_id = if !rare(u, 8)? { 1 } else { *u.choose(&[0, 2, 3, 5, 0x7fff_ffff])? };
        match u.int_in_range(0..=15u8)? {
            0..=5 => {
                // DATA frames cutting the message stream.
                let frames = u.int_in_range(1..=80)?;
                let len: usize = u.int_in_range(0..=16_384)?;
                let pad = if rare(u, 8)? { Some(u.arbitrary::<u8>()?) } else { None };
                let end_stream = rare(u, 16)?;
                for i in 0..frames {
                    let n = len.min(messages.len() - cursor);
                    let payload = &messages[cursor..cursor + n];
                    cursor += n;
                    let last = i + 1 == frames;
                    let fl = if last && end_stream { flag::END_STREAM } else { 0 };
                    match pad {
                        Some(p) if payload.len() + usize::from(p) < 16_384 => {
                            let mut padded = vec![p];
                            padded.extend_from_slice(payload);
                            padded.resize(padded.len() + usize::from(p), 0);
                            put_frame(&mut out, kind::DATA, fl | flag::PADDED, stream_id, &padded);
                        }
                        _ => put_frame(&mut out, kind::DATA, fl, stream_id, payload),
                    }
                    if n == 0 && !last && i > 0 {
                        break;
                    }
                }
            }
            6 => {
                let fields: &[(&[u8], &[u8])] = match u.int_in_range(0..=3u8)? {
                    0 => &[(b":status", b"200"), (b"content-type", b"application/grpc")],
                    1 => &[(b":status", b"200"), (b"content-type", b"application/grpc+proto")],
                    2 => &[(b":status", b"503"), (b"content-type", b"text/plain")],
                    _ => &[(b":status", b"100")],
                };
                frame::encode_headers(&mut out, stream_id, &block(fields), rare(u, 8)?, 16_384);
            }
            7 => {
                let fields: &[(&[u8], &[u8])] = match u.int_in_range(0..=3u8)? {
                    0 => &[(b"grpc-status", b"0")],
                    1 => &[(b"grpc-status", b"13"), (b"grpc-message", b"boom%20x")],
                    2 => &[(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"14")],
                    _ => &[(b"grpc-status", b"x")],
                };
                frame::encode_headers(&mut out, stream_id, &block(fields), true, 16_384);
            }
            8 => {
                let mut params = Vec::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    let id = u.int_in_range(1..=7u16)?;
                    let value = *u.choose(&[0, 1, 100, 16_384, 65_535, 1 << 20, 0x7fff_ffff, 0x8000_0000])?;
                    params.push((id, value));
                }
                frame::encode_settings(&mut out, &params);
            }
            9 => frame::encode_settings_ack(&mut out),
            10 => {
                let inc = *u.choose(&[1, 1000, 65_535, 1 << 20, 0x7fff_ffff])?;
                frame::encode_window_update(&mut out, stream_id.min(1), inc);
            }
            11 => frame::encode_ping(&mut out, u.arbitrary()?, u.arbitrary()?),
            12 => {
                let code = ErrorCode(*u.choose(&[0, 2, 7, 8, 0xb, 0xff])?);
                frame::encode_rst_stream(&mut out, stream_id, code);
            }
            13 => {
                let last = *u.choose(&[0, 1, 3])?;
                let code = ErrorCode(*u.choose(&[0, 2, 0xb])?);
                frame::encode_goaway(&mut out, last, code, b"bye");
            }
            14 => {
                let kind = u.int_in_range(0..=12u8)?;
                let flags = u.arbitrary()?;
                let payload = small_bytes(u, 32)?;
                put_frame(&mut out, kind, flags, stream_id, &payload);
            }
            _ => out.extend_from_slice(&small_bytes(u, 24)?),
        }
    }
    // Whatever is left of the messages, in one last run of frames.
    if u.ratio(1, 2).unwrap_or(true) {
        for chunk in messages[cursor..].chunks(16_384) {
            put_frame(&mut out, kind::DATA, 0, 1, chunk);
        }
    }
    Ok(out)
}

fn drain_output(conn: &mut ClientConnection, step: usize) {
    let mut guard = 0;
    while conn.has_output() {
        let mut iov = [IoSlice::new(&[]); 8];
        let n = conn.fill_iovecs(&mut iov);
        let len: usize = iov[..n].iter().map(|s| s.len()).sum();
        assert!(n > 0 && len > 0, "has_output but nothing to write");
        conn.advance_output(len.min(step));
        guard += 1;
        assert!(guard < 1_000_000, "output never drains");
    }
}

// ----- the HTTP/1.1 side ----------------------------------------------------

/// What the client would make of the response bytes: the head, the body
/// (de-chunked), whether it ended cleanly, and how the invocation ended.
#[derive(Debug, PartialEq)]
struct Http {
    head: Vec<u8>,
    body: Vec<u8>,
    last_chunk: bool,
    outcome: Option<std::result::Result<Progress, InvokeError>>,
}

fn read_http(out: &OutQueue, outcome: Option<std::result::Result<Progress, InvokeError>>) -> Http {
    let bytes: Vec<u8> = out.segments().flat_map(|s| s.iter().copied()).collect();
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        assert!(bytes.is_empty(), "a partial head was written");
        return Http { head: Vec::new(), body: Vec::new(), last_chunk: false, outcome };
    };
    let (head, rest) = (bytes[..end + 4].to_vec(), &bytes[end + 4..]);
    if !head.windows(26).any(|w| w == b"Transfer-Encoding: chunked") {
        return Http { head, body: rest.to_vec(), last_chunk: false, outcome };
    }
    // Chunked: every chunk is `<hex>\r\n<data>\r\n`, never empty but the last.
    let (mut body, mut at, mut last_chunk) = (Vec::new(), rest, false);
    while !at.is_empty() {
        let line = at.windows(2).position(|w| w == b"\r\n").expect("chunk-size line");
        let size = usize::from_str_radix(std::str::from_utf8(&at[..line]).unwrap(), 16).expect("hex size");
        at = &at[line + 2..];
        if size == 0 {
            assert_eq!(at, b"\r\n", "nothing after the last chunk");
            last_chunk = true;
            break;
        }
        body.extend_from_slice(&at[..size]);
        assert_eq!(&at[size..size + 2], b"\r\n");
        at = &at[size + 2..];
    }
    Http { head, body, last_chunk, outcome }
}

fn h2_splice(u: &mut Unstructured<'_>) -> Result<()> {
    let cfg = Config {
        stream_window: *u.choose(&[1 << 20, 65_535, 16_384, 1, 0])?,
        connection_window: *u.choose(&[16 << 20, 65_535, 1 << 20])?,
        ..Config::default()
    };
    let cuts = splits(u)?;
    let release_every: u8 = u.int_in_range(0..=7)?;
    let end_early = u.arbitrary::<bool>()?;
    let stream_len = u.int_in_range(0..=4096usize)?;
    let messages = {
        let mut sub = Unstructured::new(u.bytes(stream_len.min(u.len()))?);
        message_stream(&mut sub).0
    };
    let server = server_bytes(u, &messages)?;
    let request_text: &[u8] = u.choose(&[
        &b"POST /invoke HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
    ])?;
    let request = HeadParser::default()
        .parse(&mut BytesMut::from(request_text), &Limits::default())
        .expect("a valid request head")
        .expect("a complete request head");

    let timeout = grpc::encode_timeout(10_999);
    let fields = grpc::request_fields(PATH, &timeout);
    let mut conn = ClientConnection::new(cfg);
    let Ok(s) = conn.open(&fields, false) else { return Ok(()) };
    conn.send_data(s, Bytes::from_static(b"\0\0\0\0\x04\x0a\x02hi"));
    if end_early {
        conn.send_end(s);
    }
    drain_output(&mut conn, 4096);

    let server = server.freeze();
    let mut decoder = ResponseDecoder::default();
    let mut got = Output::default();
    let mut delivered = Vec::new();
    // The FC core, as `server/invoke.rs` calls it.
    let mut splice = ResponseSplice::new(&request);
    let (mut http, mut scratch, mut pieces) = (OutQueue::default(), Scratch::default(), Vec::new());
    let mut outcome: Option<std::result::Result<Progress, InvokeError>> = None;
    let mut head_fields: Option<HeaderList> = None;
    let mut trailers: Option<HeaderList> = None;
    let mut unreleased = 0usize;
    let mut live = true;
    let mut data_events = 0u32;
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let scale = 1 + server.len() / 65_536;
    for &n in cuts.iter().cycle() {
        if pos >= server.len() {
            break;
        }
        let end = pos + (n * scale).min(server.len() - pos);
        buf.extend_from_slice(&server[pos..end]);
        pos = end;
        let result = conn.recv(&mut buf);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Data { stream, data, end_stream: _ } => {
                    assert_eq!(stream, s, "DATA for a stream we never opened");
                    if live && got.error.is_none() {
                        delivered.extend_from_slice(&data);
                        unreleased += data.len();
                        if outcome.is_none() {
                            if let Err(e) = POOL.with(|pool| {
                                splice.on_data(
                                    data.clone(),
                                    &mut http,
                                    &mut scratch,
                                    &mut pieces,
                                    &mut pool.borrow_mut(),
                                )
                            }) {
                                outcome = Some(Err(e));
                            }
                        }
                        feed(&mut decoder, data, &mut got);
                        data_events += 1;
                        if release_every == 0 || data_events % u32::from(release_every) == 0 {
                            conn.release(s, unreleased);
                            unreleased = 0;
                        }
                    } else {
                        // The invoke is gone: credit what nobody will read.
                        conn.release(stream, data.len());
                    }
                }
                Event::Headers { stream, fields, end_stream } => {
                    assert_eq!(stream, s);
                    let pairs = || fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
                    if outcome.is_none() && live && got.error.is_none() {
                        match splice.on_headers(&fields, end_stream, &mut http) {
                            Ok(Progress::Continue) => head_fields = Some(fields.clone()),
                            done => {
                                outcome = Some(done);
                                if end_stream {
                                    trailers = Some(fields.clone());
                                } else {
                                    head_fields = Some(fields.clone());
                                }
                            }
                        }
                    }
                    if end_stream {
                        if let Ok(status) = grpc::status_from_trailers(pairs()) {
                            let _ = (status.is_ok(), decoder.is_idle(), decoder.head_seen());
                        }
                    } else {
                        let _ = grpc::check_response_head(pairs());
                    }
                }
                Event::SendReady { stream } => {
                    if !end_early {
                        conn.send_data(stream, Bytes::from_static(b"\0\0\0\0\x02\x3a\0"));
                        conn.send_end(stream);
                    }
                }
                Event::Reset { stream, .. } | Event::Closed { stream } => {
                    if stream == s {
                        live = false;
                    }
                }
                Event::GoAway { .. } => {}
            }
        }
        // The client's output drained: the rest of the credit goes back.
        if unreleased > 256 * 1024 {
            conn.release(s, unreleased);
            unreleased = 0;
        }
        drain_output(&mut conn, n * 7 + 1);
        if result.is_err() {
            assert!(!conn.is_open_for_streams());
            assert_eq!(conn.recv(&mut buf), result, "errors are sticky");
            break;
        }
    }
    if live {
        conn.reset(s, ErrorCode::CANCEL);
        drain_output(&mut conn, 1 << 20);
    }
    // However the DATA was framed and split, the decoder saw a byte stream.
    assert_eq!(got, one_piece(&delivered), "h2 framing changed the decoded pieces");
    // And the HTTP/1.1 response is that of the same DATA in one piece.
    if got.error.is_none() {
        let mut again = ResponseSplice::new(&request);
        let mut out = OutQueue::default();
        let mut replayed = None;
        if let Some(f) = &head_fields {
            if let Err(e) = again.on_headers(f, false, &mut out) {
                replayed = Some(Err(e));
            }
        }
        if replayed.is_none() && !delivered.is_empty() {
            if let Err(e) = POOL.with(|pool| {
                again.on_data(Bytes::from(delivered), &mut out, &mut scratch, &mut pieces, &mut pool.borrow_mut())
            }) {
                replayed = Some(Err(e));
            }
        }
        if let (None, Some(t)) = (&replayed, &trailers) {
            replayed = Some(again.on_headers(t, true, &mut out));
        }
        assert_eq!(read_http(&http, outcome), read_http(&out, replayed), "the split changed the HTTP/1.1 response");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mode) = u.arbitrary::<u8>() else { return };
    let _ = if mode % 2 == 0 { splice_alone(&mut u) } else { h2_splice(&mut u) };
});
