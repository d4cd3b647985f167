//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte head, one variant per frame
//! type, a decoder and the encoders the client needs.
//!
//! Decoding is incremental and zero-copy: [`decode_frame`] returns `Ok(None)`
//! until a whole frame is buffered, then splits exactly that frame off the
//! caller's `BytesMut` and hands out payloads (DATA, header block fragments,
//! GOAWAY debug data) as `Bytes` slices of the same allocation.
//!
//! Every check that RFC 9113 attaches to a single frame lives here (lengths,
//! stream id 0 rules, padding, setting values, zero window increments); checks
//! that need connection or stream state live in `conn`. A [`FrameError`] says
//! whether the violation is a connection error or a stream error (§5.4). On a
//! stream error the offending frame has been consumed, so decoding can go on;
//! after a connection error the buffer is left unspecified and the connection
//! must be torn down.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Every frame starts with a 9-octet head (§4.1).
pub const FRAME_HEAD_LEN: usize = 9;

/// Initial and smallest allowed SETTINGS_MAX_FRAME_SIZE (§6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest allowed SETTINGS_MAX_FRAME_SIZE: 2^24-1 (§6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;
/// Largest flow-control window and window increment: 2^31-1 (§6.9.1).
pub const MAX_WINDOW_SIZE: u32 = 0x7fff_ffff;
/// Initial stream and connection window before any SETTINGS (§6.9.2).
pub const DEFAULT_INITIAL_WINDOW_SIZE: u32 = 65_535;
/// Largest stream identifier: 2^31-1 (§5.1.1).
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;
/// The reserved high bit of stream identifiers is ignored on receipt (§4.1).
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// Frame type codes (§6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (§6). ACK and END_STREAM share bit 0 on different frame types.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameter identifiers (§6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// One SETTINGS parameter is 6 octets: 16-bit id, 32-bit value (§6.5.1).
const SETTING_LEN: usize = 6;
/// PRIORITY payload, and the priority fields of HEADERS: 5 octets (§6.3).
const PRIORITY_LEN: usize = 5;
/// PING payload is exactly 8 octets (§6.7).
const PING_LEN: usize = 8;
/// RST_STREAM payload: one 32-bit error code (§6.4).
const RST_STREAM_LEN: usize = 4;
/// WINDOW_UPDATE payload: one 31-bit increment (§6.9).
const WINDOW_UPDATE_LEN: usize = 4;
/// GOAWAY payload: last stream id and error code before the debug data (§6.8).
const GOAWAY_MIN_LEN: usize = 8;
/// PUSH_PROMISE carries a promised stream id before its fragment (§6.6).
const PROMISED_ID_LEN: usize = 4;

/// The 9-octet frame head (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length, 24 bits.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// 31 bits; the reserved bit is dropped on parse and never sent.
    pub stream_id: u32,
}

impl FrameHead {
    pub fn parse(head: &[u8; FRAME_HEAD_LEN]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, head[0], head[1], head[2]]),
            kind: head[3],
            flags: head[4],
            stream_id: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & STREAM_ID_MASK,
        }
    }

    /// `len` must fit in 24 bits; higher bits are dropped.
    pub fn encode(&self) -> [u8; FRAME_HEAD_LEN] {
        let len = self.len.to_be_bytes();
        let id = (self.stream_id & STREAM_ID_MASK).to_be_bytes();
        [len[1], len[2], len[3], self.kind, self.flags, id[0], id[1], id[2], id[3]]
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }
}

/// An HTTP/2 error code (§7). Unknown codes are kept as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x1);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x2);
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x3);
    pub const SETTINGS_TIMEOUT: ErrorCode = ErrorCode(0x4);
    pub const STREAM_CLOSED: ErrorCode = ErrorCode(0x5);
    pub const FRAME_SIZE_ERROR: ErrorCode = ErrorCode(0x6);
    pub const REFUSED_STREAM: ErrorCode = ErrorCode(0x7);
    pub const CANCEL: ErrorCode = ErrorCode(0x8);
    pub const COMPRESSION_ERROR: ErrorCode = ErrorCode(0x9);
    pub const CONNECT_ERROR: ErrorCode = ErrorCode(0xa);
    pub const ENHANCE_YOUR_CALM: ErrorCode = ErrorCode(0xb);
    pub const INADEQUATE_SECURITY: ErrorCode = ErrorCode(0xc);
    pub const HTTP_1_1_REQUIRED: ErrorCode = ErrorCode(0xd);

    /// The RFC name, if the code is one RFC 9113 defines.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NO_ERROR => "NO_ERROR",
            Self::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Self::INTERNAL_ERROR => "INTERNAL_ERROR",
            Self::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            Self::SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            Self::STREAM_CLOSED => "STREAM_CLOSED",
            Self::FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            Self::REFUSED_STREAM => "REFUSED_STREAM",
            Self::CANCEL => "CANCEL",
            Self::COMPRESSION_ERROR => "COMPRESSION_ERROR",
            Self::CONNECT_ERROR => "CONNECT_ERROR",
            Self::ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            Self::INADEQUATE_SECURITY => "INADEQUATE_SECURITY",
            Self::HTTP_1_1_REQUIRED => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown error code {:#x}", self.0),
        }
    }
}

/// A frame that breaks a per-frame rule of RFC 9113.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    /// `Some(id)`: a stream error on that stream, the frame was consumed.
    /// `None`: a connection error (§5.4.1).
    pub stream_id: Option<u32>,
    pub reason: &'static str,
}

impl FrameError {
    fn conn(code: ErrorCode, reason: &'static str) -> FrameError {
        FrameError { code, stream_id: None, reason }
    }

    fn stream(stream_id: u32, code: ErrorCode, reason: &'static str) -> FrameError {
        FrameError { code, stream_id: Some(stream_id), reason }
    }

    pub fn is_connection_error(&self) -> bool {
        self.stream_id.is_none()
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stream_id {
            Some(id) => write!(f, "stream {id} error {}: {}", self.code, self.reason),
            None => write!(f, "connection error {}: {}", self.code, self.reason),
        }
    }
}

impl std::error::Error for FrameError {}

/// A decoded frame. Payload fields are slices of the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        /// Padding stripped.
        payload: Bytes,
        end_stream: bool,
        /// The whole frame payload length, padding included: what flow
        /// control counts (§6.9).
        flow_len: u32,
    },
    /// Priority fields and padding are dropped (§5.3.2: priority signalling
    /// is deprecated).
    Headers {
        stream_id: u32,
        block: Bytes,
        end_stream: bool,
        end_headers: bool,
    },
    Priority {
        stream_id: u32,
        dependency: u32,
        exclusive: bool,
        weight: u8,
    },
    RstStream {
        stream_id: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// (identifier, value) in wire order, unknown identifiers included.
        params: Vec<(u16, u32)>,
    },
    PushPromise {
        stream_id: u32,
        promised_id: u32,
        block: Bytes,
        end_headers: bool,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        debug: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        increment: u32,
    },
    Continuation {
        stream_id: u32,
        block: Bytes,
        end_headers: bool,
    },
    /// A frame type this implementation does not know: ignored (§4.1, §5.5).
    Unknown {
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: Bytes,
    },
}

/// Split one complete frame off the front of `buf`.
///
/// `Ok(None)`: not enough bytes yet (nothing consumed). `max_frame_size` is
/// the SETTINGS_MAX_FRAME_SIZE we advertised; a larger frame is a connection
/// FRAME_SIZE_ERROR (§4.2) detected from the head alone.
pub fn decode_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, FrameError> {
    let Some(head_bytes) = buf.first_chunk::<FRAME_HEAD_LEN>() else {
        return Ok(None);
    };
    let head = FrameHead::parse(head_bytes);
    if head.len > max_frame_size {
        return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
    }
    let total = FRAME_HEAD_LEN + head.len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(FRAME_HEAD_LEN);
    decode_payload(head, frame.freeze()).map(Some)
}

/// Decode a frame whose head has been parsed and whose payload is complete.
pub fn decode_payload(head: FrameHead, payload: Bytes) -> Result<Frame, FrameError> {
    let id = head.stream_id;
    match head.kind {
        kind::DATA => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "DATA on stream 0"));
            }
            let flow_len = payload.len() as u32;
            let payload = strip_padding(head, payload, 0)?;
            Ok(Frame::Data { stream_id: id, payload, end_stream: head.has(flag::END_STREAM), flow_len })
        }
        kind::HEADERS => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "HEADERS on stream 0"));
            }
            let priority = if head.has(flag::PRIORITY) { PRIORITY_LEN } else { 0 };
            let block = strip_padding(head, payload, priority)?;
            Ok(Frame::Headers {
                stream_id: id,
                block,
                end_stream: head.has(flag::END_STREAM),
                end_headers: head.has(flag::END_HEADERS),
            })
        }
        kind::PRIORITY => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "PRIORITY on stream 0"));
            }
            if payload.len() != PRIORITY_LEN {
                // §6.3: a stream error, the frame cannot touch shared state.
                return Err(FrameError::stream(id, ErrorCode::FRAME_SIZE_ERROR, "PRIORITY length is not 5"));
            }
            let word = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            let dependency = word & STREAM_ID_MASK;
            if dependency == id {
                return Err(FrameError::stream(id, ErrorCode::PROTOCOL_ERROR, "stream depends on itself"));
            }
            Ok(Frame::Priority {
                stream_id: id,
                dependency,
                exclusive: word & !STREAM_ID_MASK != 0,
                weight: payload[4],
            })
        }
        kind::RST_STREAM => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
            }
            if payload.len() != RST_STREAM_LEN {
                return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "RST_STREAM length is not 4"));
            }
            Ok(Frame::RstStream { stream_id: id, code: ErrorCode(read_u32(&payload)) })
        }
        kind::SETTINGS => decode_settings(head, payload),
        kind::PUSH_PROMISE => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "PUSH_PROMISE on stream 0"));
            }
            let mut rest = strip_padding(head, payload, 0)?;
            if rest.len() < PROMISED_ID_LEN {
                return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "PUSH_PROMISE too short"));
            }
            let promised_id = read_u32(&rest) & STREAM_ID_MASK;
            rest.advance(PROMISED_ID_LEN);
            Ok(Frame::PushPromise { stream_id: id, promised_id, block: rest, end_headers: head.has(flag::END_HEADERS) })
        }
        kind::PING => {
            if id != 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "PING on a stream"));
            }
            let Ok(payload) = <[u8; PING_LEN]>::try_from(&payload[..]) else {
                return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "PING length is not 8"));
            };
            Ok(Frame::Ping { ack: head.has(flag::ACK), payload })
        }
        kind::GOAWAY => {
            if id != 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "GOAWAY on a stream"));
            }
            if payload.len() < GOAWAY_MIN_LEN {
                return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "GOAWAY too short"));
            }
            let last_stream_id = read_u32(&payload) & STREAM_ID_MASK;
            let code = ErrorCode(read_u32(&payload[4..]));
            Ok(Frame::GoAway { last_stream_id, code, debug: payload.slice(GOAWAY_MIN_LEN..) })
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != WINDOW_UPDATE_LEN {
                return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "WINDOW_UPDATE length is not 4"));
            }
            let increment = read_u32(&payload) & STREAM_ID_MASK;
            if increment == 0 {
                let reason = "WINDOW_UPDATE increment of 0";
                return Err(if id == 0 {
                    FrameError::conn(ErrorCode::PROTOCOL_ERROR, reason)
                } else {
                    FrameError::stream(id, ErrorCode::PROTOCOL_ERROR, reason)
                });
            }
            Ok(Frame::WindowUpdate { stream_id: id, increment })
        }
        kind::CONTINUATION => {
            if id == 0 {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "CONTINUATION on stream 0"));
            }
            Ok(Frame::Continuation { stream_id: id, block: payload, end_headers: head.has(flag::END_HEADERS) })
        }
        _ => Ok(Frame::Unknown { kind: head.kind, flags: head.flags, stream_id: id, payload }),
    }
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Remove the Pad Length octet, `skip` octets of fixed fields and the
/// trailing padding (§6.1, §6.2, §6.6).
fn strip_padding(head: FrameHead, mut payload: Bytes, skip: usize) -> Result<Bytes, FrameError> {
    let pad = if head.has(flag::PADDED) {
        if payload.is_empty() {
            return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "PADDED frame without a Pad Length"));
        }
        let pad = payload[0] as usize;
        payload.advance(1);
        pad
    } else {
        0
    };
    if payload.len() < skip {
        return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "frame too short for its priority fields"));
    }
    payload.advance(skip);
    if pad > payload.len() {
        // §6.1: padding as long as the payload or longer.
        return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "padding exceeds the frame payload"));
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

fn decode_settings(head: FrameHead, payload: Bytes) -> Result<Frame, FrameError> {
    if head.stream_id != 0 {
        return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "SETTINGS on a stream"));
    }
    let ack = head.has(flag::ACK);
    if ack && !payload.is_empty() {
        return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
    }
    if !payload.len().is_multiple_of(SETTING_LEN) {
        return Err(FrameError::conn(ErrorCode::FRAME_SIZE_ERROR, "SETTINGS length is not a multiple of 6"));
    }
    let mut params = Vec::with_capacity(payload.len() / SETTING_LEN);
    for p in payload.chunks_exact(SETTING_LEN) {
        let id = u16::from_be_bytes([p[0], p[1]]);
        let value = read_u32(&p[2..]);
        match id {
            setting::ENABLE_PUSH if value > 1 => {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1"))
            }
            setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW_SIZE => {
                return Err(FrameError::conn(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                ))
            }
            setting::MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) => {
                return Err(FrameError::conn(ErrorCode::PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"))
            }
            _ => {}
        }
        params.push((id, value));
    }
    Ok(Frame::Settings { ack, params })
}

impl Frame {
    /// Encode the frame (copying its payload) into `dst`. The symmetric
    /// counterpart of [`decode_frame`]; the connection uses the specialised
    /// encoders below, which avoid copying DATA.
    ///
    /// DATA with `flow_len > payload.len()` is sent PADDED so that its flow
    /// length is reproduced (up to the 255 octets of padding a frame can
    /// carry); HEADERS and PUSH_PROMISE are sent unpadded.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Data { stream_id, payload, end_stream, flow_len } => {
                let mut flags = if *end_stream { flag::END_STREAM } else { 0 };
                let padding = (*flow_len as usize).checked_sub(payload.len() + 1).map(|p| p.min(u8::MAX as usize));
                if padding.is_some() {
                    flags |= flag::PADDED;
                }
                let len = payload.len() + padding.map_or(0, |p| p + 1);
                put_head(dst, len, kind::DATA, flags, *stream_id);
                if let Some(p) = padding {
                    dst.put_u8(p as u8);
                }
                dst.extend_from_slice(payload);
                if let Some(p) = padding {
                    dst.put_bytes(0, p);
                }
            }
            Frame::Headers { stream_id, block, end_stream, end_headers } => {
                let flags =
                    if *end_stream { flag::END_STREAM } else { 0 } | if *end_headers { flag::END_HEADERS } else { 0 };
                put_head(dst, block.len(), kind::HEADERS, flags, *stream_id);
                dst.extend_from_slice(block);
            }
            Frame::Priority { stream_id, dependency, exclusive, weight } => {
                put_head(dst, PRIORITY_LEN, kind::PRIORITY, 0, *stream_id);
                let excl = if *exclusive { !STREAM_ID_MASK } else { 0 };
                dst.put_u32((dependency & STREAM_ID_MASK) | excl);
                dst.put_u8(*weight);
            }
            Frame::RstStream { stream_id, code } => encode_rst_stream(dst, *stream_id, *code),
            Frame::Settings { ack: true, .. } => encode_settings_ack(dst),
            Frame::Settings { ack: false, params } => encode_settings(dst, params),
            Frame::PushPromise { stream_id, promised_id, block, end_headers } => {
                let flags = if *end_headers { flag::END_HEADERS } else { 0 };
                let len = PROMISED_ID_LEN + block.len();
                put_head(dst, len, kind::PUSH_PROMISE, flags, *stream_id);
                dst.put_u32(promised_id & STREAM_ID_MASK);
                dst.extend_from_slice(block);
            }
            Frame::Ping { ack, payload } => encode_ping(dst, *ack, *payload),
            Frame::GoAway { last_stream_id, code, debug } => encode_goaway(dst, *last_stream_id, *code, debug),
            Frame::WindowUpdate { stream_id, increment } => encode_window_update(dst, *stream_id, *increment),
            Frame::Continuation { stream_id, block, end_headers } => {
                let flags = if *end_headers { flag::END_HEADERS } else { 0 };
                put_head(dst, block.len(), kind::CONTINUATION, flags, *stream_id);
                dst.extend_from_slice(block);
            }
            Frame::Unknown { kind, flags, stream_id, payload } => {
                put_head(dst, payload.len(), *kind, *flags, *stream_id);
                dst.extend_from_slice(payload);
            }
        }
    }
}

fn put_head(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    let head = FrameHead { len: len as u32, kind, flags, stream_id };
    dst.extend_from_slice(&head.encode());
}

/// A SETTINGS frame carrying `params` in order (§6.5).
pub fn encode_settings(dst: &mut BytesMut, params: &[(u16, u32)]) {
    put_head(dst, params.len() * SETTING_LEN, kind::SETTINGS, 0, 0);
    for &(id, value) in params {
        dst.put_u16(id);
        dst.put_u32(value);
    }
}

/// The empty SETTINGS frame with ACK that every SETTINGS requires (§6.5.3).
pub fn encode_settings_ack(dst: &mut BytesMut) {
    put_head(dst, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn encode_ping(dst: &mut BytesMut, ack: bool, payload: [u8; 8]) {
    let flags = if ack { flag::ACK } else { 0 };
    put_head(dst, PING_LEN, kind::PING, flags, 0);
    dst.extend_from_slice(&payload);
}

/// The answer to a PING: same payload, ACK set (§6.7).
pub fn encode_ping_ack(dst: &mut BytesMut, payload: [u8; 8]) {
    encode_ping(dst, true, payload);
}

/// `increment` must be in 1..=2^31-1 (§6.9).
pub fn encode_window_update(dst: &mut BytesMut, stream_id: u32, increment: u32) {
    put_head(dst, WINDOW_UPDATE_LEN, kind::WINDOW_UPDATE, 0, stream_id);
    dst.put_u32(increment & STREAM_ID_MASK);
}

pub fn encode_rst_stream(dst: &mut BytesMut, stream_id: u32, code: ErrorCode) {
    put_head(dst, RST_STREAM_LEN, kind::RST_STREAM, 0, stream_id);
    dst.put_u32(code.0);
}

pub fn encode_goaway(dst: &mut BytesMut, last_stream_id: u32, code: ErrorCode, debug: &[u8]) {
    put_head(dst, GOAWAY_MIN_LEN + debug.len(), kind::GOAWAY, 0, 0);
    dst.put_u32(last_stream_id & STREAM_ID_MASK);
    dst.put_u32(code.0);
    dst.extend_from_slice(debug);
}

/// A header block as one HEADERS frame, followed by CONTINUATION frames when
/// it is larger than the peer's SETTINGS_MAX_FRAME_SIZE (§4.3, §6.10).
/// END_STREAM goes on the HEADERS frame, END_HEADERS on the last frame.
pub fn encode_headers(dst: &mut BytesMut, stream_id: u32, block: &[u8], end_stream: bool, max_frame_size: u32) {
    let max = max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE) as usize;
    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or(&[]);
    let mut kind = kind::HEADERS;
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    let mut fragment = first;
    loop {
        let next = chunks.next();
        if next.is_none() {
            flags |= flag::END_HEADERS;
        }
        dst.reserve(FRAME_HEAD_LEN + fragment.len());
        put_head(dst, fragment.len(), kind, flags, stream_id);
        dst.extend_from_slice(fragment);
        match next {
            Some(f) => fragment = f,
            None => return,
        }
        kind = kind::CONTINUATION;
        flags = 0;
    }
}

/// The head of a DATA frame of `len` octets; the payload follows it as a
/// separate, uncopied slice (§6.1).
pub fn data_head(stream_id: u32, len: u32, end_stream: bool) -> [u8; FRAME_HEAD_LEN] {
    FrameHead { len, kind: kind::DATA, flags: if end_stream { flag::END_STREAM } else { 0 }, stream_id }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = DEFAULT_MAX_FRAME_SIZE;

    fn encoded(f: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        b
    }

    fn decode_all(mut buf: BytesMut) -> Result<Frame, FrameError> {
        let f = decode_frame(&mut buf, MAX)?.expect("complete frame");
        assert!(buf.is_empty(), "frame fully consumed");
        Ok(f)
    }

    fn raw(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        put_head(&mut b, payload.len(), kind, flags, stream_id);
        b.extend_from_slice(payload);
        b
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Data { stream_id: 1, payload: Bytes::from_static(b"hello"), end_stream: false, flow_len: 5 },
            Frame::Data {
                stream_id: 3,
                payload: Bytes::from_static(b"padded"),
                end_stream: true,
                flow_len: 6 + 1 + 10,
            },
            Frame::Data { stream_id: 5, payload: Bytes::new(), end_stream: true, flow_len: 0 },
            Frame::Headers { stream_id: 1, block: Bytes::from_static(b"\x88"), end_stream: true, end_headers: true },
            Frame::Headers { stream_id: 7, block: Bytes::from_static(b"abc"), end_stream: false, end_headers: false },
            Frame::Priority { stream_id: 3, dependency: 1, exclusive: true, weight: 200 },
            Frame::RstStream { stream_id: 9, code: ErrorCode::CANCEL },
            Frame::Settings { ack: false, params: vec![(setting::MAX_CONCURRENT_STREAMS, 100), (0x99, 7)] },
            Frame::Settings { ack: false, params: vec![] },
            Frame::Settings { ack: true, params: vec![] },
            Frame::PushPromise { stream_id: 1, promised_id: 2, block: Bytes::from_static(b"blk"), end_headers: true },
            Frame::Ping { ack: false, payload: *b"12345678" },
            Frame::Ping { ack: true, payload: [0xff; 8] },
            Frame::GoAway {
                last_stream_id: 101,
                code: ErrorCode::ENHANCE_YOUR_CALM,
                debug: Bytes::from_static(b"calm down"),
            },
            Frame::WindowUpdate { stream_id: 0, increment: MAX_WINDOW_SIZE },
            Frame::WindowUpdate { stream_id: 11, increment: 1 },
            Frame::Continuation { stream_id: 7, block: Bytes::from_static(b"def"), end_headers: true },
            Frame::Unknown { kind: 0xfa, flags: 0x55, stream_id: 13, payload: Bytes::from_static(b"whatever") },
        ]
    }

    #[test]
    fn head_round_trip_and_reserved_bit() {
        let head = FrameHead { len: 0x12_3456, kind: 7, flags: 0xa5, stream_id: 0x7654_3210 };
        assert_eq!(FrameHead::parse(&head.encode()), head);
        let mut bytes = head.encode();
        bytes[5] |= 0x80;
        assert_eq!(FrameHead::parse(&bytes).stream_id, 0x7654_3210);
    }

    #[test]
    fn every_frame_type_round_trips() {
        for f in all_frames() {
            assert_eq!(decode_all(encoded(&f)).unwrap(), f, "{f:?}");
        }
    }

    #[test]
    fn decode_split_at_every_byte_boundary() {
        let mut stream = BytesMut::new();
        let frames = all_frames();
        for f in &frames {
            f.encode(&mut stream);
        }
        let whole = stream.freeze();
        for split in 0..=whole.len() {
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for part in [&whole[..split], &whole[split..]] {
                buf.extend_from_slice(part);
                while let Some(f) = decode_frame(&mut buf, MAX).unwrap() {
                    out.push(f);
                }
            }
            assert_eq!(out, frames, "split at {split}");
            assert!(buf.is_empty());
        }
        // And one byte at a time.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in whole.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = decode_frame(&mut buf, MAX).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn incomplete_frame_consumes_nothing() {
        let full = encoded(&all_frames()[0]);
        for n in 0..full.len() {
            let mut buf = BytesMut::from(&full[..n]);
            assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
            assert_eq!(buf.len(), n);
        }
    }

    #[test]
    fn payloads_are_zero_copy_slices() {
        let mut buf = raw(kind::DATA, flag::PADDED, 1, b"\x02hello\0\0");
        let start = buf.as_ptr() as usize;
        let Some(Frame::Data { payload, flow_len, .. }) = decode_frame(&mut buf, MAX).unwrap() else {
            panic!("not DATA");
        };
        assert_eq!(&payload[..], b"hello");
        assert_eq!(flow_len, 8);
        assert_eq!(payload.as_ptr() as usize, start + FRAME_HEAD_LEN + 1);
    }

    #[test]
    fn headers_priority_and_padding_are_stripped() {
        let payload = b"\x03\x80\x00\x00\x01\x10blk\0\0\0";
        let buf = raw(kind::HEADERS, flag::PADDED | flag::PRIORITY | flag::END_HEADERS, 3, payload);
        assert_eq!(
            decode_all(buf).unwrap(),
            Frame::Headers { stream_id: 3, block: Bytes::from_static(b"blk"), end_stream: false, end_headers: true }
        );
    }

    fn expect_err(buf: BytesMut, code: ErrorCode, stream: Option<u32>) {
        let mut buf = buf;
        let err = decode_frame(&mut buf, MAX).expect_err("frame must be rejected");
        assert_eq!(err.code, code, "{err}");
        assert_eq!(err.stream_id, stream, "{err}");
    }

    #[test]
    fn frame_errors() {
        use ErrorCode as E;
        let big = vec![0u8; MAX as usize + 1];
        // §4.2: too large, known from the head alone.
        expect_err(BytesMut::from(&raw(kind::DATA, 0, 1, &big)[..9]), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(0xee, 0, 1, &big), E::FRAME_SIZE_ERROR, None);
        // DATA
        expect_err(raw(kind::DATA, 0, 0, b"x"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::DATA, flag::PADDED, 1, b""), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::DATA, flag::PADDED, 1, b"\x01"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::DATA, flag::PADDED, 1, b"\x03ab"), E::PROTOCOL_ERROR, None);
        // HEADERS
        expect_err(raw(kind::HEADERS, flag::END_HEADERS, 0, b"x"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::HEADERS, flag::PRIORITY, 1, b"1234"), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::HEADERS, flag::PADDED, 1, b"\x05abcd"), E::PROTOCOL_ERROR, None);
        expect_err(
            raw(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, b"\x01\0\0\0\x03\x10"),
            E::PROTOCOL_ERROR,
            None,
        );
        // PRIORITY
        expect_err(raw(kind::PRIORITY, 0, 0, b"\0\0\0\x01\x10"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::PRIORITY, 0, 3, b"\0\0\0\x01"), E::FRAME_SIZE_ERROR, Some(3));
        expect_err(raw(kind::PRIORITY, 0, 3, b"\0\0\0\x03\x10"), E::PROTOCOL_ERROR, Some(3));
        // RST_STREAM
        expect_err(raw(kind::RST_STREAM, 0, 0, b"\0\0\0\x08"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::RST_STREAM, 0, 1, b"\0\0\x08"), E::FRAME_SIZE_ERROR, None);
        // SETTINGS
        expect_err(raw(kind::SETTINGS, 0, 1, b""), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::SETTINGS, flag::ACK, 0, b"\0\x01\0\0\0\0"), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::SETTINGS, 0, 0, b"\0\x01\0\0\0"), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::SETTINGS, 0, 0, b"\0\x02\0\0\0\x02"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::SETTINGS, 0, 0, b"\0\x04\x80\0\0\0"), E::FLOW_CONTROL_ERROR, None);
        expect_err(raw(kind::SETTINGS, 0, 0, b"\0\x05\0\0\x3f\xff"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::SETTINGS, 0, 0, b"\0\x05\x01\0\0\0"), E::PROTOCOL_ERROR, None);
        // PUSH_PROMISE
        expect_err(raw(kind::PUSH_PROMISE, 0, 0, b"\0\0\0\x02"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::PUSH_PROMISE, 0, 1, b"\0\0\x02"), E::FRAME_SIZE_ERROR, None);
        // PING
        expect_err(raw(kind::PING, 0, 1, b"12345678"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::PING, 0, 0, b"1234567"), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::PING, 0, 0, b"123456789"), E::FRAME_SIZE_ERROR, None);
        // GOAWAY
        expect_err(raw(kind::GOAWAY, 0, 1, b"\0\0\0\0\0\0\0\0"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::GOAWAY, 0, 0, b"\0\0\0\0\0\0\0"), E::FRAME_SIZE_ERROR, None);
        // WINDOW_UPDATE
        expect_err(raw(kind::WINDOW_UPDATE, 0, 0, b"\0\0\x01"), E::FRAME_SIZE_ERROR, None);
        expect_err(raw(kind::WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), E::PROTOCOL_ERROR, None);
        expect_err(raw(kind::WINDOW_UPDATE, 0, 5, b"\x80\0\0\0"), E::PROTOCOL_ERROR, Some(5));
        // CONTINUATION
        expect_err(raw(kind::CONTINUATION, 0, 0, b"x"), E::PROTOCOL_ERROR, None);
    }

    #[test]
    fn stream_error_consumes_the_frame() {
        let mut buf = raw(kind::WINDOW_UPDATE, 0, 5, b"\0\0\0\0");
        buf.extend_from_slice(&encoded(&Frame::Ping { ack: false, payload: [1; 8] }));
        assert!(decode_frame(&mut buf, MAX).is_err());
        assert!(matches!(decode_frame(&mut buf, MAX), Ok(Some(Frame::Ping { .. }))));
    }

    #[test]
    fn larger_max_frame_size_accepts_bigger_frames() {
        let body = vec![7u8; 20_000];
        let mut buf = raw(kind::DATA, 0, 1, &body);
        let f = decode_frame(&mut buf, 20_000).unwrap().unwrap();
        assert!(matches!(f, Frame::Data { flow_len: 20_000, .. }));
    }

    #[test]
    fn headers_split_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut dst = BytesMut::new();
        encode_headers(&mut dst, 5, &block, true, MAX);
        let mut frames = Vec::new();
        while let Some(f) = decode_frame(&mut dst, MAX).unwrap() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let last = i == frames.len() - 1;
            match f {
                Frame::Headers { stream_id: 5, block, end_stream: true, end_headers } if i == 0 => {
                    assert_eq!(*end_headers, last);
                    assert_eq!(block.len(), MAX as usize);
                    joined.extend_from_slice(block);
                }
                Frame::Continuation { stream_id: 5, block, end_headers } if i > 0 => {
                    assert_eq!(*end_headers, last);
                    joined.extend_from_slice(block);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(joined, block);

        // A small block is one HEADERS frame; an empty one too.
        for small in [&b"abc"[..], b""] {
            let mut dst = BytesMut::new();
            encode_headers(&mut dst, 1, small, false, MAX);
            assert_eq!(
                decode_all(dst).unwrap(),
                Frame::Headers {
                    stream_id: 1,
                    block: Bytes::copy_from_slice(small),
                    end_stream: false,
                    end_headers: true,
                }
            );
        }
    }

    #[test]
    fn data_head_matches_a_decoded_frame() {
        let mut buf = BytesMut::from(&data_head(9, 3, true)[..]);
        buf.extend_from_slice(b"abc");
        assert_eq!(
            decode_all(buf).unwrap(),
            Frame::Data { stream_id: 9, payload: Bytes::from_static(b"abc"), end_stream: true, flow_len: 3 }
        );
    }

    #[test]
    fn error_code_display() {
        assert_eq!(ErrorCode::REFUSED_STREAM.to_string(), "REFUSED_STREAM");
        assert_eq!(ErrorCode::HTTP_1_1_REQUIRED.to_string(), "HTTP_1_1_REQUIRED");
        assert_eq!(ErrorCode(0x42).to_string(), "unknown error code 0x42");
    }
}
