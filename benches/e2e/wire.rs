//! Just enough protobuf and gRPC framing for the fast stub and the floor
//! client (docs/noslated-protocol.md §4.2, §6.4, §7.6). Deliberately independent
//! of noslate-fc's own `proto`/`grpc` modules: the stub must not share code
//! with the thing it measures.

use bytes::{Buf, Bytes, BytesMut};

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_FIXED32: u8 = 5;

/// gRPC message limit Noslated configures (10 MiB).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;

pub fn put_varint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub fn put_key(dst: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(dst, (u64::from(field) << 3) | u64::from(wire));
}

pub fn put_bytes(dst: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, v.len() as u64);
    dst.extend_from_slice(v);
}

pub fn put_pair(dst: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) {
    let inner = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(value.len() as u64) + value.len();
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, inner as u64);
    put_bytes(dst, 1, key);
    put_bytes(dst, 2, value);
}

/// The 5-byte gRPC message prefix (uncompressed).
pub fn prefix(len: usize) -> [u8; 5] {
    let l = (len as u32).to_be_bytes();
    [0, l[0], l[1], l[2], l[3]]
}

/// What a client sends as the first `InvokeRequest` (head fields plus an
/// inline body), framed with the gRPC prefix.
pub struct InvokeHead<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub baggage: &'a [(&'a str, &'a str)],
    pub deadline_ms: f64,
    pub request_id: &'a str,
    pub body: &'a [u8],
}

impl InvokeHead<'_> {
    pub fn framed(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(256 + self.body.len());
        put_bytes(&mut m, 1, self.name.as_bytes());
        put_bytes(&mut m, 2, self.url.as_bytes());
        put_bytes(&mut m, 3, self.method.as_bytes());
        for (k, v) in self.headers {
            put_pair(&mut m, 4, k.as_bytes(), v.as_bytes());
        }
        for (k, v) in self.baggage {
            put_pair(&mut m, 5, k.as_bytes(), v.as_bytes());
        }
        put_key(&mut m, 6, WIRE_FIXED64);
        m.extend_from_slice(&self.deadline_ms.to_le_bytes());
        if !self.body.is_empty() {
            put_bytes(&mut m, 7, self.body);
        }
        put_bytes(&mut m, 8, self.request_id.as_bytes());
        let mut out = Vec::with_capacity(5 + m.len());
        out.extend_from_slice(&prefix(m.len()));
        out.extend_from_slice(&m);
        out
    }
}

/// `InvokeResponse{result{status, headers}}`, framed.
pub fn result_head(status: u32, headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(128);
    put_key(&mut inner, 1, WIRE_VARINT);
    put_varint(&mut inner, u64::from(status));
    for (k, v) in headers {
        put_pair(&mut inner, 2, k, v);
    }
    let mut m = Vec::with_capacity(inner.len() + 8);
    put_bytes(&mut m, 2, &inner);
    let mut out = Vec::with_capacity(m.len() + 5);
    out.extend_from_slice(&prefix(m.len()));
    out.extend_from_slice(&m);
    out
}

/// `InvokeResponse{result{body}}`, framed, in one contiguous buffer.
pub fn result_body(body: &[u8]) -> Bytes {
    let inner_len = 1 + varint_len(body.len() as u64) + body.len();
    let msg_len = 1 + varint_len(inner_len as u64) + inner_len;
    let mut out = Vec::with_capacity(5 + msg_len);
    out.extend_from_slice(&prefix(msg_len));
    put_key(&mut out, 2, WIRE_LEN);
    put_varint(&mut out, inner_len as u64);
    put_bytes(&mut out, 3, body);
    Bytes::from(out)
}

/// `noslated.PlaneHealthyResponse{name: "DataPlane", health: true}`, framed.
pub fn health_ok() -> Bytes {
    let mut m = Vec::new();
    put_bytes(&mut m, 1, b"DataPlane");
    put_key(&mut m, 2, WIRE_VARINT);
    put_varint(&mut m, 1);
    let mut out = prefix(m.len()).to_vec();
    out.extend_from_slice(&m);
    Bytes::from(out)
}

/// A protobuf field value, borrowed from the message.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Walk a message's fields. `None` ends the walk (end of message or a
/// malformed field: the stub and the floor treat both as "no more fields").
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Val<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let key = get_varint(self.buf, &mut self.pos)?;
        let field = (key >> 3) as u32;
        let val = match (key & 7) as u8 {
            WIRE_VARINT => Val::Varint(get_varint(self.buf, &mut self.pos)?),
            WIRE_LEN => {
                let n = get_varint(self.buf, &mut self.pos)? as usize;
                let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len())?;
                let v = &self.buf[self.pos..end];
                self.pos = end;
                Val::Len(v)
            }
            WIRE_FIXED64 => {
                self.pos = self.pos.checked_add(8).filter(|e| *e <= self.buf.len())?;
                Val::Fixed
            }
            WIRE_FIXED32 => {
                self.pos = self.pos.checked_add(4).filter(|e| *e <= self.buf.len())?;
                Val::Fixed
            }
            _ => return None,
        };
        Some((field, val))
    }
}

/// Reassembles gRPC messages from DATA frames.
#[derive(Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message payload (prefix removed).
    pub fn next_message(&mut self) -> Result<Option<Bytes>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err("compressed gRPC message".into());
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(format!("gRPC message of {len} bytes"));
        }
        if self.buf.len() < 5 + len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(5);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The worked bytes of docs/noslated-protocol.md §7.6, checked at start-up (a
/// `harness = false` bench has no unit tests).
pub fn self_check() {
    assert_eq!(&result_body(b"hi")[..], [0, 0, 0, 0, 6, 0x12, 4, 0x1a, 2, b'h', b'i']);
    let head = result_head(200, &[(b"content-type", b"text/plain")]);
    assert_eq!(&head[..7], [0, 0, 0, 0, 0x21, 0x12, 0x1f]);
    let mut d = Deframer::default();
    d.push(&[0, 0, 0, 0, 6, 0x3a, 4, b'm', b'o']);
    assert_eq!(d.next_message(), Ok(None));
    d.push(b"re");
    let m = d.next_message().ok().flatten().unwrap_or_default();
    let body: Vec<_> = Fields::new(&m).collect();
    assert!(matches!(body[..], [(7, Val::Len(b"more"))]));
    assert!(d.is_empty());
}
