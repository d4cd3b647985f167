//! Protobuf (proto3) wire format for exactly the Noslated messages this proxy
//! uses (docs/noslated-protocol.md §6).
//!
//! The module owns two layers:
//!
//! * wire primitives: varint/key/field writers with matching `*_len`
//!   functions, and a zero-copy [`Reader`] that yields `(field, Value)` pairs
//!   borrowing from the input;
//! * the messages, each with `encoded_len` / `encode` / `decode`.
//!
//! Invariants:
//!
//! * **Presence** (docs/noslated-protocol.md §6.1): every optional scalar is an `Option`. `Some(0)`,
//!   `Some(false)` and `Some("")` are written, `None` is omitted. Decoding
//!   maps "field seen" to `Some`. Repeated fields are plain `Vec`s, since an
//!   empty repeated field and an absent one are the same bytes on the wire.
//! * Decoders accept fields in any order, skip unknown fields of every wire
//!   type, let the last occurrence of a scalar (or of a singular embedded
//!   message: protobufjs replaces, it does not merge) win, and append repeated
//!   elements. Groups (wire types 3/4), wire types 6/7, field number 0,
//!   truncated input and over-long varints are errors. Nothing panics.
//! * `encoded_len()` always equals the number of bytes `encode` appends; the
//!   invoke head relies on it to write the gRPC prefix before the message.
//! * Request heads carry raw HTTP bytes. Protobuf `string` must be UTF-8, so
//!   they go through [`sanitize`]: valid UTF-8 is copied unchanged, each
//!   maximal invalid sequence becomes U+FFFD (the `String::from_utf8_lossy`
//!   policy), computed without allocating.

use std::borrow::Cow;
use std::fmt;

use crate::grpc;

/// Wire type 0: `int32`, `uint32`, `bool`, enums.
pub const WIRE_VARINT: u8 = 0;
/// Wire type 1: `double`, 8 bytes little-endian.
pub const WIRE_FIXED64: u8 = 1;
/// Wire type 2: `string`, `bytes`, embedded messages.
pub const WIRE_LEN: u8 = 2;
/// Wire type 5: `float`, 4 bytes little-endian.
pub const WIRE_FIXED32: u8 = 5;

/// Largest field number protobuf allows (2^29 − 1).
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// A varint is at most 10 bytes (64 bits, 7 per byte).
const MAX_VARINT_LEN: usize = 10;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a protobuf payload was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a key, a varint, a fixed value or a
    /// length-delimited value.
    Truncated,
    /// A varint longer than 10 bytes, or a 10th byte above 1 (more than 64
    /// bits).
    BadVarint,
    /// Field number 0 or above 2^29 − 1.
    BadFieldNumber(u64),
    /// A wire type this decoder does not accept (groups 3/4, or 6/7).
    BadWireType { field: u32, wire: u8 },
    /// A known field arrived with a wire type that does not match its schema.
    WrongWireType { field: u32 },
    /// A `string` field that is not valid UTF-8.
    InvalidUtf8 { field: u32 },
    /// A `oneof` with none of its members set (`InvokeResponse`, docs/noslated-protocol.md §6.4).
    EmptyOneof,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("protobuf message truncated"),
            DecodeError::BadVarint => f.write_str("protobuf varint longer than 64 bits"),
            DecodeError::BadFieldNumber(n) => write!(f, "invalid protobuf field number {n}"),
            DecodeError::BadWireType { field, wire } => {
                write!(f, "unsupported protobuf wire type {wire} for field {field}")
            }
            DecodeError::WrongWireType { field } => {
                write!(f, "protobuf field {field} has the wrong wire type")
            }
            DecodeError::InvalidUtf8 { field } => {
                write!(f, "protobuf string field {field} is not valid UTF-8")
            }
            DecodeError::EmptyOneof => f.write_str("protobuf oneof has no member set"),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Encoding primitives
// ---------------------------------------------------------------------------

/// Number of bytes `put_varint(v)` writes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as a base-128 varint.
#[inline]
pub fn put_varint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Writes `v` as a varint into a stack buffer, returning the bytes used.
fn write_varint(dst: &mut [u8; MAX_VARINT_LEN], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        dst[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    dst[n] = v as u8;
    n + 1
}

#[inline]
fn key_value(field: u32, wire: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire)
}

/// Appends a field key.
#[inline]
pub fn put_key(dst: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(dst, key_value(field, wire));
}

/// Length of a field key (independent of the wire type).
#[inline]
pub fn key_len(field: u32) -> usize {
    varint_len(key_value(field, 0))
}

/// Length of a length-delimited field whose value is `len` bytes.
#[inline]
pub fn bytes_field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// Appends a `bytes` (or embedded message) field.
pub fn put_bytes(dst: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, v.len() as u64);
    dst.extend_from_slice(v);
}

/// Appends a `string` field.
pub fn put_string(dst: &mut Vec<u8>, field: u32, v: &str) {
    put_bytes(dst, field, v.as_bytes());
}

/// Appends a `double` field.
pub fn put_double(dst: &mut Vec<u8>, field: u32, v: f64) {
    put_key(dst, field, WIRE_FIXED64);
    dst.extend_from_slice(&v.to_le_bytes());
}

/// Length of a `double` field.
pub fn double_field_len(field: u32) -> usize {
    key_len(field) + 8
}

/// Appends a `float` field.
pub fn put_float(dst: &mut Vec<u8>, field: u32, v: f32) {
    put_key(dst, field, WIRE_FIXED32);
    dst.extend_from_slice(&v.to_le_bytes());
}

/// Length of a `float` field.
pub fn float_field_len(field: u32) -> usize {
    key_len(field) + 4
}

/// Appends a `bool` field.
pub fn put_bool(dst: &mut Vec<u8>, field: u32, v: bool) {
    put_key(dst, field, WIRE_VARINT);
    dst.push(u8::from(v));
}

/// Length of a `bool` field.
pub fn bool_field_len(field: u32) -> usize {
    key_len(field) + 1
}

/// `int32` travels sign-extended to 64 bits, so negatives take 10 bytes
/// (docs/noslated-protocol.md §6.1).
#[inline]
fn int32_wire(v: i32) -> u64 {
    i64::from(v) as u64
}

/// Appends an `int32` field.
pub fn put_int32(dst: &mut Vec<u8>, field: u32, v: i32) {
    put_key(dst, field, WIRE_VARINT);
    put_varint(dst, int32_wire(v));
}

/// Length of an `int32` field.
pub fn int32_field_len(field: u32, v: i32) -> usize {
    key_len(field) + varint_len(int32_wire(v))
}

/// The UTF-8 policy for raw HTTP bytes put into protobuf `string` fields:
/// valid UTF-8 is borrowed unchanged; otherwise every maximal invalid
/// sequence is replaced by U+FFFD (`String::from_utf8_lossy`).
pub fn sanitize(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

const REPLACEMENT: &str = "\u{FFFD}";

/// Length of `sanitize(bytes)` without allocating.
pub fn sanitized_len(bytes: &[u8]) -> usize {
    // ASCII (nearly every header) is valid as it is: one fast scan.
    if bytes.is_ascii() {
        return bytes.len();
    }
    bytes.utf8_chunks().map(|c| c.valid().len() + if c.invalid().is_empty() { 0 } else { REPLACEMENT.len() }).sum()
}

/// Length of a `string` field holding `sanitize(bytes)`.
pub fn sanitized_field_len(field: u32, bytes: &[u8]) -> usize {
    bytes_field_len(field, sanitized_len(bytes))
}

fn put_sanitized_value(dst: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_ascii() {
        dst.extend_from_slice(bytes);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        dst.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            dst.extend_from_slice(REPLACEMENT.as_bytes());
        }
    }
}

/// Appends a `string` field holding `sanitize(bytes)`, without allocating.
pub fn put_sanitized(dst: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, sanitized_len(bytes) as u64);
    put_sanitized_value(dst, bytes);
}

/// Body length of a `KeyValuePair` built from raw bytes.
fn raw_pair_body_len(key: &[u8], value: &[u8]) -> usize {
    sanitized_field_len(1, key) + sanitized_field_len(2, value)
}

fn raw_pair_field_len(field: u32, key: &[u8], value: &[u8]) -> usize {
    bytes_field_len(field, raw_pair_body_len(key, value))
}

/// Appends a `KeyValuePair` field from raw bytes (both members always
/// written, even when empty, as protobufjs does for set strings).
fn put_raw_pair(dst: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) {
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, raw_pair_body_len(key, value) as u64);
    put_sanitized(dst, 1, key);
    put_sanitized(dst, 2, value);
}

/// Appends a `KeyValuePair` field with both members copied verbatim (no
/// UTF-8 policy): the inverse of [`decode_raw_pair`].
fn put_verbatim_pair(dst: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) {
    put_key(dst, field, WIRE_LEN);
    put_varint(dst, verbatim_pair_body_len(key, value) as u64);
    put_bytes(dst, 1, key);
    put_bytes(dst, 2, value);
}

fn verbatim_pair_body_len(key: &[u8], value: &[u8]) -> usize {
    bytes_field_len(1, key.len()) + bytes_field_len(2, value.len())
}

// ---------------------------------------------------------------------------
// Decoding primitives
// ---------------------------------------------------------------------------

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// The raw varint (`uint32`, `uint64`, enums).
    pub fn as_u64(self, field: u32) -> Result<u64, DecodeError> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(DecodeError::WrongWireType { field }),
        }
    }

    /// `int32`: the low 32 bits of the varint, as protobuf specifies.
    pub fn as_i32(self, field: u32) -> Result<i32, DecodeError> {
        self.as_u64(field).map(|v| v as i32)
    }

    /// `bool`: any non-zero varint is true.
    pub fn as_bool(self, field: u32) -> Result<bool, DecodeError> {
        self.as_u64(field).map(|v| v != 0)
    }

    /// `double`.
    pub fn as_f64(self, field: u32) -> Result<f64, DecodeError> {
        match self {
            Value::Fixed64(v) => Ok(f64::from_bits(v)),
            _ => Err(DecodeError::WrongWireType { field }),
        }
    }

    /// `float`.
    pub fn as_f32(self, field: u32) -> Result<f32, DecodeError> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(DecodeError::WrongWireType { field }),
        }
    }

    /// `bytes` or an embedded message.
    pub fn as_bytes(self, field: u32) -> Result<&'a [u8], DecodeError> {
        match self {
            Value::Bytes(v) => Ok(v),
            _ => Err(DecodeError::WrongWireType { field }),
        }
    }

    /// `string`, checked for UTF-8.
    pub fn as_str(self, field: u32) -> Result<&'a str, DecodeError> {
        let bytes = self.as_bytes(field)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
    }
}

/// Reads one varint at `*pos`, advancing it.
fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let Some(&b) = buf.get(*pos) else {
            return Err(DecodeError::Truncated);
        };
        *pos += 1;
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(DecodeError::BadVarint);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError::BadVarint)
}

/// Zero-copy field iterator over one message.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next field, `Ok(None)` at the end of the message. Unknown fields
    /// are returned like known ones; the caller skips them by ignoring them.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = get_varint(self.buf, &mut self.pos)?;
        let wire = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > u64::from(MAX_FIELD_NUMBER) {
            return Err(DecodeError::BadFieldNumber(number));
        }
        let field = number as u32;
        let value = match wire {
            WIRE_VARINT => Value::Varint(get_varint(self.buf, &mut self.pos)?),
            WIRE_FIXED64 => Value::Fixed64(u64::from_le_bytes(self.take_array()?)),
            WIRE_LEN => {
                let len = get_varint(self.buf, &mut self.pos)?;
                let remaining = self.buf.len() - self.pos;
                let len = usize::try_from(len).ok().filter(|&l| l <= remaining).ok_or(DecodeError::Truncated)?;
                let v = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Value::Bytes(v)
            }
            WIRE_FIXED32 => Value::Fixed32(u32::from_le_bytes(self.take_array()?)),
            _ => return Err(DecodeError::BadWireType { field, wire }),
        };
        Ok(Some((field, value)))
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.buf.get(self.pos..self.pos + N).ok_or(DecodeError::Truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.pos += N;
        Ok(out)
    }
}

/// Decodes a `KeyValuePair` as raw bytes (missing members are empty). Used
/// for headers, which end up as HTTP bytes anyway, so UTF-8 is not checked.
fn decode_raw_pair(buf: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut key: &[u8] = b"";
    let mut value: &[u8] = b"";
    let mut r = Reader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => key = v.as_bytes(field)?,
            2 => value = v.as_bytes(field)?,
            _ => {}
        }
    }
    Ok((key, value))
}

// ---------------------------------------------------------------------------
// Generic field plumbing for owned messages
// ---------------------------------------------------------------------------

/// A protobuf scalar type this module encodes.
pub trait Scalar<'a>: Sized {
    fn field_len(&self, field: u32) -> usize;
    fn put(&self, field: u32, dst: &mut Vec<u8>);
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError>;
}

impl<'a> Scalar<'a> for i32 {
    fn field_len(&self, field: u32) -> usize {
        int32_field_len(field, *self)
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_int32(dst, field, *self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_i32(field)
    }
}

impl<'a> Scalar<'a> for bool {
    fn field_len(&self, field: u32) -> usize {
        bool_field_len(field)
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_bool(dst, field, *self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_bool(field)
    }
}

impl<'a> Scalar<'a> for f32 {
    fn field_len(&self, field: u32) -> usize {
        float_field_len(field)
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_float(dst, field, *self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_f32(field)
    }
}

impl<'a> Scalar<'a> for f64 {
    fn field_len(&self, field: u32) -> usize {
        double_field_len(field)
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_double(dst, field, *self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_f64(field)
    }
}

impl<'a> Scalar<'a> for String {
    fn field_len(&self, field: u32) -> usize {
        bytes_field_len(field, self.len())
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_string(dst, field, self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_str(field).map(str::to_owned)
    }
}

impl<'a> Scalar<'a> for &'a str {
    fn field_len(&self, field: u32) -> usize {
        bytes_field_len(field, self.len())
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_string(dst, field, self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_str(field)
    }
}

impl<'a> Scalar<'a> for &'a [u8] {
    fn field_len(&self, field: u32) -> usize {
        bytes_field_len(field, self.len())
    }
    fn put(&self, field: u32, dst: &mut Vec<u8>) {
        put_bytes(dst, field, self);
    }
    fn get(v: Value<'a>, field: u32) -> Result<Self, DecodeError> {
        v.as_bytes(field)
    }
}

/// An owned message: the encode/decode contract shared by every message.
pub trait Message: Sized {
    /// Exactly the number of bytes `encode` appends.
    fn encoded_len(&self) -> usize;
    fn encode(&self, dst: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Result<Self, DecodeError>;

    /// Convenience: the encoding as a fresh vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// `Option<scalar>`: written when `Some`.
mod opt {
    use super::{DecodeError, Scalar, Value};

    pub fn len<'a, T: Scalar<'a>>(field: u32, v: &Option<T>) -> usize {
        v.as_ref().map_or(0, |v| v.field_len(field))
    }
    pub fn put<'a, T: Scalar<'a>>(field: u32, v: &Option<T>, dst: &mut Vec<u8>) {
        if let Some(v) = v {
            v.put(field, dst);
        }
    }
    pub fn merge<'a, T: Scalar<'a>>(slot: &mut Option<T>, v: Value<'a>, field: u32) -> Result<(), DecodeError> {
        *slot = Some(T::get(v, field)?);
        Ok(())
    }
}

/// `repeated scalar` (unpacked; only strings occur here).
mod rep {
    use super::{DecodeError, Scalar, Value};

    pub fn len<'a, T: Scalar<'a>>(field: u32, v: &[T]) -> usize {
        v.iter().map(|e| e.field_len(field)).sum()
    }
    pub fn put<'a, T: Scalar<'a>>(field: u32, v: &[T], dst: &mut Vec<u8>) {
        for e in v {
            e.put(field, dst);
        }
    }
    pub fn merge<'a, T: Scalar<'a>>(slot: &mut Vec<T>, v: Value<'a>, field: u32) -> Result<(), DecodeError> {
        slot.push(T::get(v, field)?);
        Ok(())
    }
}

/// `Option<embedded message>`: written (possibly empty) when `Some`.
mod msg {
    use super::{bytes_field_len, put_key, put_varint, DecodeError, Message, Value, WIRE_LEN};

    pub fn len<T: Message>(field: u32, v: &Option<T>) -> usize {
        v.as_ref().map_or(0, |v| bytes_field_len(field, v.encoded_len()))
    }
    pub fn put<T: Message>(field: u32, v: &Option<T>, dst: &mut Vec<u8>) {
        if let Some(v) = v {
            put_key(dst, field, WIRE_LEN);
            put_varint(dst, v.encoded_len() as u64);
            v.encode(dst);
        }
    }
    pub fn merge<T: Message>(slot: &mut Option<T>, v: Value<'_>, field: u32) -> Result<(), DecodeError> {
        *slot = Some(T::decode(v.as_bytes(field)?)?);
        Ok(())
    }
}

/// `repeated embedded message`.
mod msgs {
    use super::{bytes_field_len, put_key, put_varint, DecodeError, Message, Value, WIRE_LEN};

    pub fn len<T: Message>(field: u32, v: &[T]) -> usize {
        v.iter().map(|e| bytes_field_len(field, e.encoded_len())).sum()
    }
    pub fn put<T: Message>(field: u32, v: &[T], dst: &mut Vec<u8>) {
        for e in v {
            put_key(dst, field, WIRE_LEN);
            put_varint(dst, e.encoded_len() as u64);
            e.encode(dst);
        }
    }
    pub fn merge<T: Message>(slot: &mut Vec<T>, v: Value<'_>, field: u32) -> Result<(), DecodeError> {
        slot.push(T::decode(v.as_bytes(field)?)?);
        Ok(())
    }
}

/// Declares an owned message from a table `number kind name: Type`, where
/// kind is `opt` (optional scalar), `rep` (repeated scalar), `msg` (optional
/// embedded message) or `msgs` (repeated embedded message). Fields are
/// encoded in table (= field-number) order.
macro_rules! owned_message {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $num:literal $kind:ident $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl Message for $name {
            fn encoded_len(&self) -> usize {
                0 $( + $kind::len($num, &self.$field) )+
            }

            fn encode(&self, dst: &mut Vec<u8>) {
                $( $kind::put($num, &self.$field, dst); )+
            }

            fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
                let mut m = Self::default();
                let mut r = Reader::new(buf);
                while let Some((field, value)) = r.next_field()? {
                    match field {
                        $( $num => $kind::merge(&mut m.$field, value, field)?, )+
                        _ => {}
                    }
                }
                Ok(m)
            }
        }
    };
}

// ---------------------------------------------------------------------------
// noslated common messages (docs/noslated-protocol.md §6.2, §6.3)
// ---------------------------------------------------------------------------

/// `noslated.Empty`: zero bytes. Decoding skips any (unknown) field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Empty;

impl Message for Empty {
    fn encoded_len(&self) -> usize {
        0
    }
    fn encode(&self, _dst: &mut Vec<u8>) {}
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        while r.next_field()?.is_some() {}
        Ok(Empty)
    }
}

/// `noslated.KeyValuePair`. Both members are always written (a key or value
/// the user set to `""` is still "set"); missing members decode as `""`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValuePair {
    pub key: String,
    pub value: String,
}

impl KeyValuePair {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValuePair { key: key.into(), value: value.into() }
    }
}

impl Message for KeyValuePair {
    fn encoded_len(&self) -> usize {
        bytes_field_len(1, self.key.len()) + bytes_field_len(2, self.value.len())
    }
    fn encode(&self, dst: &mut Vec<u8>) {
        put_string(dst, 1, &self.key);
        put_string(dst, 2, &self.value);
    }
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = KeyValuePair::default();
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => m.key = v.as_str(field)?.to_owned(),
                2 => m.value = v.as_str(field)?.to_owned(),
                _ => {}
            }
        }
        Ok(m)
    }
}

owned_message! {
    /// `noslated.ResourceLimit`.
    pub struct ResourceLimit {
        /// Bytes per worker.
        1 opt memory: Option<i32>,
        /// Fraction of one CPU.
        2 opt cpu: Option<f32>,
    }
}

owned_message! {
    /// `noslated.RateLimit`: a token bucket, applied when present.
    pub struct RateLimit {
        1 opt max_token_count: Option<i32>,
        2 opt tokens_per_fill: Option<i32>,
        3 opt fill_interval: Option<i32>,
    }
}

owned_message! {
    /// `noslated.FunctionProfileWorker` (docs/noslated-protocol.md §6.3, all 23 fields).
    pub struct FunctionProfileWorker {
        1 opt initialization_timeout: Option<i32>,
        2 opt max_activate_requests: Option<i32>,
        3 opt reservation_count: Option<i32>,
        4 opt fast_fail_requests_on_starting: Option<bool>,
        5 opt replica_count_limit: Option<i32>,
        6 rep v8_options: Vec<String>,
        7 opt shrink_strategy: Option<String>,
        8 rep exec_argv: Vec<String>,
        9 opt disposable: Option<bool>,
        10 opt disable_seed: Option<bool>,
        11 opt disable_request_queue: Option<bool>,
        12 opt dispatch_mode: Option<String>,
        13 opt concurrency_sliding_window_size: Option<i32>,
        14 opt concurrency_sliding_bucket_count: Option<i32>,
        15 opt ema_concurrency_alpha: Option<f32>,
        16 opt concurrency_expand_threshold: Option<f32>,
        17 opt concurrency_shrink_threshold: Option<f32>,
        18 opt expand_cooldown: Option<i32>,
        19 opt shrink_cooldown: Option<i32>,
        20 opt scale_factor: Option<f32>,
        21 opt precision_zero_threshold: Option<f32>,
        22 opt concurrency_stats_mode: Option<String>,
        23 opt shrink_cooldown_on_startup: Option<bool>,
    }
}

owned_message! {
    /// `noslated.FunctionProfile`.
    pub struct FunctionProfile {
        1 opt name: Option<String>,
        2 opt runtime: Option<String>,
        3 opt url: Option<String>,
        4 opt signature: Option<String>,
        5 opt handler: Option<String>,
        6 opt initializer: Option<String>,
        7 opt source_file: Option<String>,
        8 msg resource_limit: Option<ResourceLimit>,
        9 msg worker: Option<FunctionProfileWorker>,
        10 msgs environments: Vec<KeyValuePair>,
        11 msg rate_limit: Option<RateLimit>,
        12 opt namespace: Option<String>,
    }
}

owned_message! {
    /// `noslated.control.BrokerStats`: the fields warm-up reads (docs/noslated-protocol.md §6.5);
    /// the profile and worker list are skipped.
    pub struct BrokerStats {
        1 opt name: Option<String>,
        4 opt initiating_worker_count: Option<i32>,
        /// Workers in the Ready state.
        5 opt active_worker_count: Option<i32>,
    }
}

owned_message! {
    /// `noslated.control.WorkerStatsSnapshotResponse` (docs/noslated-protocol.md §6.5).
    pub struct WorkerStatsSnapshotResponse {
        1 msgs brokers: Vec<BrokerStats>,
    }
}

owned_message! {
    /// `noslated.SetFunctionProfileRequest`. Use [`encode_set_function_profile_request`]
    /// to encode from a borrowed slice.
    pub struct SetFunctionProfileRequest {
        1 msgs profiles: Vec<FunctionProfile>,
        /// `IMMEDIATELY` (what to send) or `WAIT`; ignored by the planes.
        2 opt mode: Option<String>,
    }
}

/// Encodes a `SetFunctionProfileRequest` without owning the profiles.
pub fn encode_set_function_profile_request(profiles: &[FunctionProfile], mode: Option<&str>, dst: &mut Vec<u8>) {
    msgs::put(1, profiles, dst);
    opt::put(2, &mode, dst);
}

/// Length of [`encode_set_function_profile_request`]'s output.
pub fn set_function_profile_request_len(profiles: &[FunctionProfile], mode: Option<&str>) -> usize {
    msgs::len(1, profiles) + opt::len(2, &mode)
}

owned_message! {
    /// `noslated.SetFunctionProfileResponse`; `Some(true)` is success (docs/noslated-protocol.md §10.2).
    pub struct SetFunctionProfileResponse {
        1 opt set: Option<bool>,
    }
}

owned_message! {
    /// `noslated.control.GetFunctionProfileResponse`.
    pub struct GetFunctionProfileResponse {
        1 msgs profiles: Vec<FunctionProfile>,
    }
}

owned_message! {
    /// `noslated.control.SetPlatformEnvironmentVariablesRequest`.
    pub struct SetPlatformEnvironmentVariablesRequest {
        1 msgs envs: Vec<KeyValuePair>,
    }
}

impl SetPlatformEnvironmentVariablesRequest {
    /// Length of [`Self::encode_pairs`]'s output.
    pub fn pairs_len(envs: &[(String, String)]) -> usize {
        envs.iter().map(|(k, v)| raw_pair_field_len(1, k.as_bytes(), v.as_bytes())).sum()
    }

    /// Encodes the request straight from `(key, value)` pairs.
    pub fn encode_pairs(envs: &[(String, String)], dst: &mut Vec<u8>) {
        for (k, v) in envs {
            put_raw_pair(dst, 1, k.as_bytes(), v.as_bytes());
        }
    }
}

owned_message! {
    /// `noslated.control.SetPlatformEnvironmentVariablesResponse`; `Some(true)`
    /// is success (docs/noslated-protocol.md §11).
    pub struct SetPlatformEnvironmentVariablesResponse {
        1 opt set: Option<bool>,
    }
}

/// `noslated.PlaneHealthyResponse`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaneHealthyResponse<'a> {
    pub name: Option<&'a str>,
    pub health: Option<bool>,
    pub reason: Option<&'a str>,
}

impl<'a> PlaneHealthyResponse<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut m = PlaneHealthyResponse::default();
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => opt::merge(&mut m.name, v, field)?,
                2 => opt::merge(&mut m.health, v, field)?,
                3 => opt::merge(&mut m.reason, v, field)?,
                _ => {}
            }
        }
        Ok(m)
    }

    pub fn encoded_len(&self) -> usize {
        opt::len(1, &self.name) + opt::len(2, &self.health) + opt::len(3, &self.reason)
    }

    pub fn encode(&self, dst: &mut Vec<u8>) {
        opt::put(1, &self.name, dst);
        opt::put(2, &self.health, dst);
        opt::put(3, &self.reason, dst);
    }
}

// ---------------------------------------------------------------------------
// Invoke messages (docs/noslated-protocol.md §6.4, §7)
// ---------------------------------------------------------------------------

/// The first `noslated.data.InvokeRequest` of an invoke stream, built from
/// borrowed HTTP request parts. Raw byte members are [`sanitize`]d. The body
/// is not part of the struct: the caller appends it after
/// [`encode_with_body_prefix`](Self::encode_with_body_prefix), so a request
/// body is never copied into the message.
#[derive(Clone, Copy, Debug)]
pub struct InvokeRequestHead<'a> {
    /// Field 1: function (or service) name. Always written.
    pub name: &'a str,
    /// Field 2.
    pub url: Option<&'a [u8]>,
    /// Field 3, upper-case (absent means `GET` to the data plane).
    pub method: Option<&'a [u8]>,
    /// Field 4: request headers in order, duplicates kept; names are
    /// written ASCII-lower-cased.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Field 5.
    pub baggage: &'a [(&'a [u8], &'a [u8])],
    /// Field 6: absolute deadline in ms since the Unix epoch.
    pub deadline: Option<f64>,
    /// Field 8.
    pub request_id: Option<&'a [u8]>,
}

impl InvokeRequestHead<'_> {
    fn head_len(&self) -> usize {
        bytes_field_len(1, self.name.len())
            + self.url.map_or(0, |u| sanitized_field_len(2, u))
            + self.method.map_or(0, |m| sanitized_field_len(3, m))
            + self.headers.iter().map(|(k, v)| raw_pair_field_len(4, k, v)).sum::<usize>()
            + self.baggage.iter().map(|(k, v)| raw_pair_field_len(5, k, v)).sum::<usize>()
            + self.deadline.map_or(0, |_| double_field_len(6))
            + self.request_id.map_or(0, |r| sanitized_field_len(8, r))
    }

    /// Total message length when a body of `body_len` bytes follows as field
    /// 7 (field 7 is omitted when `body_len == 0`).
    pub fn encoded_len(&self, body_len: usize) -> usize {
        self.head_len() + if body_len > 0 { bytes_field_len(7, body_len) } else { 0 }
    }

    /// Writes every head field, then (when `body_len > 0`) the field-7 key
    /// and length, but not the body bytes: the caller appends exactly
    /// `body_len` bytes of body. `requestId` (8) therefore precedes the body
    /// (7); decoders accept any order (docs/noslated-protocol.md §6.1).
    pub fn encode_with_body_prefix(&self, body_len: usize, dst: &mut Vec<u8>) {
        put_string(dst, 1, self.name);
        if let Some(u) = self.url {
            put_sanitized(dst, 2, u);
        }
        if let Some(m) = self.method {
            put_sanitized(dst, 3, m);
        }
        for (k, v) in self.headers {
            // Names go lower-case (as Node's HTTP server presents them),
            // in place: ASCII case changes neither length nor UTF-8.
            put_key(dst, 4, WIRE_LEN);
            put_varint(dst, raw_pair_body_len(k, v) as u64);
            put_sanitized(dst, 1, k);
            let end = dst.len();
            dst[end - sanitized_len(k)..].make_ascii_lowercase();
            put_sanitized(dst, 2, v);
        }
        for (k, v) in self.baggage {
            put_raw_pair(dst, 5, k, v);
        }
        if let Some(d) = self.deadline {
            put_double(dst, 6, d);
        }
        if let Some(r) = self.request_id {
            put_sanitized(dst, 8, r);
        }
        if body_len > 0 {
            put_key(dst, 7, WIRE_LEN);
            put_varint(dst, body_len as u64);
        }
    }
}

/// A decoded `noslated.data.InvokeRequest` (for tests and the test peer).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvokeRequest<'a> {
    pub name: Option<&'a str>,
    pub url: Option<&'a str>,
    pub method: Option<&'a str>,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub baggage: Vec<(&'a [u8], &'a [u8])>,
    pub deadline: Option<f64>,
    pub body: Option<&'a [u8]>,
    pub request_id: Option<&'a str>,
    pub debugger_tag: Option<&'a str>,
}

impl<'a> InvokeRequest<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut m = InvokeRequest::default();
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => opt::merge(&mut m.name, v, field)?,
                2 => opt::merge(&mut m.url, v, field)?,
                3 => opt::merge(&mut m.method, v, field)?,
                4 => m.headers.push(decode_raw_pair(v.as_bytes(field)?)?),
                5 => m.baggage.push(decode_raw_pair(v.as_bytes(field)?)?),
                6 => opt::merge(&mut m.deadline, v, field)?,
                7 => opt::merge(&mut m.body, v, field)?,
                8 => opt::merge(&mut m.request_id, v, field)?,
                9 => opt::merge(&mut m.debugger_tag, v, field)?,
                _ => {}
            }
        }
        Ok(m)
    }
}

/// Worst case of [`BodyChunkPrefix`]: 5-byte gRPC prefix, 1-byte key,
/// 10-byte varint.
const BODY_CHUNK_PREFIX_CAP: usize = grpc::MESSAGE_PREFIX_LEN + 1 + MAX_VARINT_LEN;

/// The complete head of a framed body-chunk message `InvokeRequest{body}`:
/// gRPC prefix, field-7 key (0x3a), body length. The body follows it.
#[derive(Clone, Copy, Debug)]
pub struct BodyChunkPrefix {
    buf: [u8; BODY_CHUNK_PREFIX_CAP],
    len: u8,
}

impl BodyChunkPrefix {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Builds the prefix for a chunk of `body_len` bytes. `body_len` must keep
/// the message within [`grpc::MAX_MESSAGE_LEN`]; a message above 4 GiB
/// cannot be framed at all and gets a saturated (wrong) length prefix.
pub fn body_chunk_prefix(body_len: usize) -> BodyChunkPrefix {
    let mut varint = [0u8; MAX_VARINT_LEN];
    let n = write_varint(&mut varint, body_len as u64);
    let msg_len = (1 + n).saturating_add(body_len);
    let msg_len = u32::try_from(msg_len).unwrap_or(u32::MAX);
    let mut buf = [0u8; BODY_CHUNK_PREFIX_CAP];
    let mut head = [0u8; grpc::MESSAGE_PREFIX_LEN];
    grpc::write_prefix(&mut head, msg_len);
    buf[..grpc::MESSAGE_PREFIX_LEN].copy_from_slice(&head);
    buf[grpc::MESSAGE_PREFIX_LEN] = key_value(7, WIRE_LEN) as u8;
    let start = grpc::MESSAGE_PREFIX_LEN + 1;
    buf[start..start + n].copy_from_slice(&varint[..n]);
    BodyChunkPrefix { buf, len: (start + n) as u8 }
}

/// `noslated.data.InvokeResultResponse`: the response head (status,
/// headers) or one body chunk. Header bytes are neither checked on decode
/// nor sanitized on encode, so `encode` is the exact inverse of `decode`
/// (a test peer can send non-UTF-8 headers on purpose).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvokeResult<'a> {
    /// HTTP status; absent or 0 means 200 (docs/noslated-protocol.md §6.4).
    pub status: Option<i32>,
    /// Raw header pairs (UTF-8 is not checked: they become HTTP bytes).
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: Option<&'a [u8]>,
}

impl<'a> InvokeResult<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut headers = Vec::new();
        let (status, body) = InvokeResult::decode_each(buf, |k, v| headers.push((k, v)))?;
        Ok(InvokeResult { status, headers, body })
    }

    /// [`InvokeResult::decode`] without collecting the headers: each pair
    /// is passed to `header`, in order; returns the status and body.
    pub fn decode_each(
        buf: &'a [u8],
        mut header: impl FnMut(&'a [u8], &'a [u8]),
    ) -> Result<(Option<i32>, Option<&'a [u8]>), DecodeError> {
        let (mut status, mut body) = (None, None);
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => opt::merge(&mut status, v, field)?,
                2 => {
                    let (k, v) = decode_raw_pair(v.as_bytes(field)?)?;
                    header(k, v);
                }
                3 => opt::merge(&mut body, v, field)?,
                _ => {}
            }
        }
        Ok((status, body))
    }

    pub fn encoded_len(&self) -> usize {
        opt::len(1, &self.status)
            + self.headers.iter().map(|(k, v)| bytes_field_len(2, verbatim_pair_body_len(k, v))).sum::<usize>()
            + opt::len(3, &self.body)
    }

    pub fn encode(&self, dst: &mut Vec<u8>) {
        opt::put(1, &self.status, dst);
        for (k, v) in &self.headers {
            put_verbatim_pair(dst, 2, k, v);
        }
        opt::put(3, &self.body, dst);
    }
}

/// `noslated.data.InvokeErrorResponse` (docs/noslated-protocol.md §6.4, §9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvokeErrorResponse<'a> {
    pub name: Option<&'a str>,
    pub message: Option<&'a str>,
    pub stack: Option<&'a str>,
    pub peer_message: Option<&'a str>,
    pub peer_stack: Option<&'a str>,
    pub operation: Option<&'a str>,
    /// gRPC status when `name == "Error"`, aworker `CanonicalCode` when
    /// `name == "NoslatedError"` (docs/noslated-protocol.md §9.2).
    pub code: Option<i32>,
}

impl<'a> InvokeErrorResponse<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut m = InvokeErrorResponse::default();
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => opt::merge(&mut m.name, v, field)?,
                2 => opt::merge(&mut m.message, v, field)?,
                3 => opt::merge(&mut m.stack, v, field)?,
                4 => opt::merge(&mut m.peer_message, v, field)?,
                5 => opt::merge(&mut m.peer_stack, v, field)?,
                6 => opt::merge(&mut m.operation, v, field)?,
                7 => opt::merge(&mut m.code, v, field)?,
                _ => {}
            }
        }
        Ok(m)
    }

    pub fn encoded_len(&self) -> usize {
        opt::len(1, &self.name)
            + opt::len(2, &self.message)
            + opt::len(3, &self.stack)
            + opt::len(4, &self.peer_message)
            + opt::len(5, &self.peer_stack)
            + opt::len(6, &self.operation)
            + opt::len(7, &self.code)
    }

    pub fn encode(&self, dst: &mut Vec<u8>) {
        opt::put(1, &self.name, dst);
        opt::put(2, &self.message, dst);
        opt::put(3, &self.stack, dst);
        opt::put(4, &self.peer_message, dst);
        opt::put(5, &self.peer_stack, dst);
        opt::put(6, &self.operation, dst);
        opt::put(7, &self.code, dst);
    }
}

/// `noslated.data.InvokeResponse`: `oneof maybe { error = 1; result = 2; }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvokeResponse<'a> {
    Error(InvokeErrorResponse<'a>),
    Result(InvokeResult<'a>),
}

/// An `InvokeResponse` decoded without allocating: a result's headers are
/// left in its bytes `raw` (already checked) for
/// [`InvokeResult::decode_each`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMember<'a> {
    Error(InvokeErrorResponse<'a>),
    Result { raw: &'a [u8], status: Option<i32>, body: Option<&'a [u8]> },
}

impl<'a> ResponseMember<'a> {
    /// The same verdict as [`InvokeResponse::decode`].
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut m = None;
        let mut r = Reader::new(buf);
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => m = Some(ResponseMember::Error(InvokeErrorResponse::decode(v.as_bytes(field)?)?)),
                2 => {
                    let raw = v.as_bytes(field)?;
                    let (status, body) = InvokeResult::decode_each(raw, |_, _| {})?;
                    m = Some(ResponseMember::Result { raw, status, body });
                }
                _ => {}
            }
        }
        m.ok_or(DecodeError::EmptyOneof)
    }
}

impl<'a> InvokeResponse<'a> {
    /// Decodes one response message. The last oneof member seen wins;
    /// neither set is [`DecodeError::EmptyOneof`] (malformed, docs/noslated-protocol.md §6.4).
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(match ResponseMember::decode(buf)? {
            ResponseMember::Error(e) => InvokeResponse::Error(e),
            ResponseMember::Result { raw, .. } => InvokeResponse::Result(InvokeResult::decode(raw)?),
        })
    }

    fn member(&self) -> (u32, usize) {
        match self {
            InvokeResponse::Error(e) => (1, e.encoded_len()),
            InvokeResponse::Result(r) => (2, r.encoded_len()),
        }
    }

    pub fn encoded_len(&self) -> usize {
        let (field, len) = self.member();
        bytes_field_len(field, len)
    }

    pub fn encode(&self, dst: &mut Vec<u8>) {
        let (field, len) = self.member();
        put_key(dst, field, WIRE_LEN);
        put_varint(dst, len as u64);
        match self {
            InvokeResponse::Error(e) => e.encode(dst),
            InvokeResponse::Result(r) => r.encode(dst),
        }
    }
}

/// Bytes of an `InvokeResponse` payload that [`body_only_result`] may need:
/// two keys and two varints of up to 5 bytes (any length ≤ 2^35).
pub const BODY_ONLY_PREFIX_MAX: usize = 12;

/// Recognises the streaming fast path: if the `InvokeResponse` payload of
/// `msg_len` bytes, whose first bytes are `msg_prefix`, is exactly
/// `result{ body }` — `0x12 varint(L1) 0x1a varint(L2)` with the body running
/// to the end of the message — returns the offset of the body, so the body
/// can be forwarded as it arrives instead of buffering the whole message.
///
/// Returns `None` when the shape differs or `msg_prefix` is too short to
/// tell; with `min(msg_len, BODY_ONLY_PREFIX_MAX)` bytes available, `None`
/// always means "use the full decoder".
pub fn body_only_result(msg_prefix: &[u8], msg_len: usize) -> Option<usize> {
    let mut pos = 0;
    if *msg_prefix.first()? != key_value(2, WIRE_LEN) as u8 {
        return None;
    }
    pos += 1;
    let l1 = short_varint(msg_prefix, &mut pos)?;
    if pos.checked_add(l1)? != msg_len {
        return None;
    }
    if *msg_prefix.get(pos)? != key_value(3, WIRE_LEN) as u8 {
        return None;
    }
    pos += 1;
    let l2 = short_varint(msg_prefix, &mut pos)?;
    if pos.checked_add(l2)? != msg_len {
        return None;
    }
    Some(pos)
}

/// A varint of at most 5 bytes (a message length), `None` if longer or
/// incomplete.
fn short_varint(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let mut v = 0u64;
    for i in 0..5 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return usize::try_from(v).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// docs/noslated-protocol.md §7.6: the framed InvokeRequest head.
    const DOC_INVOKE_REQUEST: &str = "00 00 00 00 40
        0a 05 68 65 6c 6c 6f
        12 01 2f
        1a 04 50 4f 53 54
        22 1a 0a 0c 63 6f 6e 74 65 6e 74 2d 74 79 70 65
              12 0a 74 65 78 74 2f 70 6c 61 69 6e
        31 00 00 80 56 fe bc 78 42
        3a 02 68 69
        42 05 72 65 71 2d 31";

    const DOC_RESPONSE_HEAD: &str = "00 00 00 00 21 12 1f 08 c8 01 12 1a 0a 0c 63 6f 6e 74 65 6e 74 2d 74 79 70 65 12 0a 74 65 78 74 2f 70 6c 61 69 6e";
    const DOC_BODY_CHUNK: &str = "00 00 00 00 06 12 04 1a 02 68 69";
    const DOC_ERROR: &str = "00 00 00 00 20 0a 1e 0a 05 45 72 72 6f 72 12 13 72 61 74 65 20 6c 69 6d 69 74 20 65 78 63 65 65 64 65 64 38 08";

    const CT: &[(&[u8], &[u8])] = &[(b"content-type", b"text/plain")];

    fn doc_head() -> InvokeRequestHead<'static> {
        InvokeRequestHead {
            name: "hello",
            url: Some(b"/"),
            method: Some(b"POST"),
            headers: CT,
            baggage: &[],
            deadline: Some(1_700_000_000_000.0),
            request_id: Some(b"req-1"),
        }
    }

    fn framed_head(head: &InvokeRequestHead<'_>, body: &[u8]) -> Vec<u8> {
        let len = head.encoded_len(body.len());
        let mut out = grpc::message_prefix(len as u32).to_vec();
        head.encode_with_body_prefix(body.len(), &mut out);
        out.extend_from_slice(body);
        assert_eq!(out.len(), 5 + len);
        out
    }

    #[test]
    fn varint_lengths() {
        for (v, n) in [(0u64, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (u64::from(u32::MAX), 5), (u64::MAX, 10)]
        {
            assert_eq!(varint_len(v), n, "{v}");
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), n);
            let mut pos = 0;
            assert_eq!(get_varint(&buf, &mut pos), Ok(v));
            assert_eq!(pos, n);
        }
    }

    #[test]
    fn negative_int32_is_ten_bytes() {
        let mut buf = Vec::new();
        put_int32(&mut buf, 7, -1);
        assert_eq!(buf, hex("38 ff ff ff ff ff ff ff ff ff 01"));
        assert_eq!(int32_field_len(7, -1), buf.len());
        let (f, v) = Reader::new(&buf).next_field().unwrap().unwrap();
        assert_eq!(v.as_i32(f), Ok(-1));
    }

    #[test]
    fn over_long_varints_rejected() {
        // 11 bytes of continuation, and a 10th byte carrying bit 64+.
        let mut pos = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut pos), Err(DecodeError::BadVarint));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        pos = 0;
        assert_eq!(get_varint(&ten, &mut pos), Err(DecodeError::BadVarint));
        ten[9] = 0x01;
        pos = 0;
        assert_eq!(get_varint(&ten, &mut pos), Ok(u64::MAX));
        // As a value inside a message.
        let mut msg = vec![0x08];
        msg.extend_from_slice(&[0xff; 11]);
        assert_eq!(SetFunctionProfileResponse::decode(&msg), Err(DecodeError::BadVarint));
    }

    #[test]
    fn reader_rejects_groups_field_zero_and_bad_wire_types() {
        assert_eq!(Reader::new(&[0x0b]).next_field(), Err(DecodeError::BadWireType { field: 1, wire: 3 }));
        assert_eq!(Reader::new(&[0x0c]).next_field(), Err(DecodeError::BadWireType { field: 1, wire: 4 }));
        assert_eq!(Reader::new(&[0x0e]).next_field(), Err(DecodeError::BadWireType { field: 1, wire: 6 }));
        assert_eq!(Reader::new(&[0x00, 0x00]).next_field(), Err(DecodeError::BadFieldNumber(0)));
        // Field number 2^29 (one above the maximum).
        let mut big = Vec::new();
        put_varint(&mut big, 1 << 32);
        assert_eq!(Reader::new(&big).next_field(), Err(DecodeError::BadFieldNumber(1 << 29)));
        // Length larger than the rest, and larger than usize can hold.
        assert_eq!(Reader::new(&[0x0a, 0x05, 1, 2]).next_field(), Err(DecodeError::Truncated));
        let mut huge = vec![0x0a];
        put_varint(&mut huge, u64::MAX);
        assert_eq!(Reader::new(&huge).next_field(), Err(DecodeError::Truncated));
    }

    #[test]
    fn doc_invoke_request_head_matches() {
        let doc = hex(DOC_INVOKE_REQUEST);
        assert_eq!(doc.len(), 5 + 64);
        let ours = framed_head(&doc_head(), b"hi");
        assert_eq!(ours.len(), doc.len());
        // Same prefix (same length), same fields; only 7/8 order differs.
        assert_eq!(ours[..5], doc[..5]);
        let a = InvokeRequest::decode(&doc[5..]).unwrap();
        let b = InvokeRequest::decode(&ours[5..]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.name, Some("hello"));
        assert_eq!(a.url, Some("/"));
        assert_eq!(a.method, Some("POST"));
        assert_eq!(a.headers, vec![(&b"content-type"[..], &b"text/plain"[..])]);
        assert_eq!(a.deadline, Some(1.7e12));
        assert_eq!(a.body, Some(&b"hi"[..]));
        assert_eq!(a.request_id, Some("req-1"));
        // Every byte up to the deadline is identical; the body comes last.
        let deadline_end = doc.len() - 4 - 7;
        assert_eq!(ours[..deadline_end], doc[..deadline_end]);
        assert_eq!(ours[deadline_end..], hex("42 05 72 65 71 2d 31 3a 02 68 69")[..]);
    }

    #[test]
    fn invoke_request_head_without_body_and_empty_members() {
        let head = InvokeRequestHead {
            name: "",
            url: None,
            method: None,
            headers: &[(b"", b"")],
            baggage: &[(b"k", b"v")],
            deadline: None,
            request_id: Some(b""),
        };
        let mut out = Vec::new();
        head.encode_with_body_prefix(0, &mut out);
        assert_eq!(out.len(), head.encoded_len(0));
        assert_eq!(out, hex("0a 00 22 04 0a 00 12 00 2a 06 0a 01 6b 12 01 76 42 00"));
        let m = InvokeRequest::decode(&out).unwrap();
        assert_eq!(m.name, Some(""));
        assert_eq!(m.body, None);
        assert_eq!(m.request_id, Some(""));
        assert_eq!(m.baggage, vec![(&b"k"[..], &b"v"[..])]);
    }

    #[test]
    fn invalid_utf8_header_values_are_sanitized() {
        let headers: &[(&[u8], &[u8])] = &[(b"x-a", b"caf\xe9 \xf0\x9f\x98\x80 \xff\xfe")];
        let head = InvokeRequestHead {
            name: "f",
            url: Some(b"/\x80"),
            method: Some(b"GET"),
            headers,
            baggage: &[],
            deadline: None,
            request_id: None,
        };
        let body = vec![7u8; 300];
        let framed = framed_head(&head, &body);
        let m = InvokeRequest::decode(&framed[5..]).unwrap();
        assert_eq!(m.url, Some("/\u{fffd}"));
        assert_eq!(std::str::from_utf8(m.headers[0].1).unwrap(), "caf\u{fffd} \u{1F600} \u{fffd}\u{fffd}");
        assert_eq!(m.headers[0].1, sanitize(headers[0].1).as_bytes());
        assert_eq!(m.body, Some(&body[..]));
        for s in [&b""[..], b"abc", b"\xff", b"\xe2\x82", b"a\xe2\x82\xacb\xc0"] {
            assert_eq!(sanitized_len(s), sanitize(s).len());
        }
    }

    #[test]
    fn doc_chunk_prefix() {
        let p = body_chunk_prefix(4);
        assert_eq!(p.as_bytes(), &hex("00 00 00 00 06 3a 04")[..]);
        let mut framed = p.as_bytes().to_vec();
        framed.extend_from_slice(b"more");
        assert_eq!(framed, hex("00 00 00 00 06 3a 04 6d 6f 72 65"));
        // Multi-byte length varint, and the empty chunk.
        let p = body_chunk_prefix(16384);
        assert_eq!(p.as_bytes(), &hex("00 00 00 40 04 3a 80 80 01")[..]);
        assert_eq!(body_chunk_prefix(0).as_bytes(), &hex("00 00 00 00 02 3a 00")[..]);
        // Largest allowed message still frames correctly.
        let max_body = grpc::MAX_MESSAGE_LEN - 1 - 4;
        let p = body_chunk_prefix(max_body);
        let len = u32::from_be_bytes(p.as_bytes()[1..5].try_into().unwrap());
        assert_eq!(len as usize, grpc::MAX_MESSAGE_LEN);
        // Absurd sizes do not panic.
        let _ = body_chunk_prefix(usize::MAX);
    }

    #[test]
    fn doc_response_vectors() {
        let head = InvokeResponse::Result(InvokeResult {
            status: Some(200),
            headers: vec![(b"content-type", b"text/plain")],
            body: None,
        });
        let chunk = InvokeResponse::Result(InvokeResult { status: None, headers: vec![], body: Some(b"hi") });
        let error = InvokeResponse::Error(InvokeErrorResponse {
            name: Some("Error"),
            message: Some("rate limit exceeded"),
            code: Some(8),
            ..InvokeErrorResponse::default()
        });
        for (msg, doc) in [(head, DOC_RESPONSE_HEAD), (chunk, DOC_BODY_CHUNK), (error, DOC_ERROR)] {
            let doc = hex(doc);
            let mut ours = grpc::message_prefix(msg.encoded_len() as u32).to_vec();
            msg.encode(&mut ours);
            assert_eq!(ours, doc);
            assert_eq!(InvokeResponse::decode(&doc[5..]).unwrap(), msg);
        }
    }

    #[test]
    fn invoke_response_oneof_rules() {
        assert_eq!(InvokeResponse::decode(&[]), Err(DecodeError::EmptyOneof));
        // Only an unknown field.
        assert_eq!(InvokeResponse::decode(&hex("18 01")), Err(DecodeError::EmptyOneof));
        // error then result: result wins; result then error: error wins.
        let bytes = hex("0a 00 12 02 08 05");
        let m = InvokeResponse::decode(&bytes).unwrap();
        assert_eq!(m, InvokeResponse::Result(InvokeResult { status: Some(5), ..InvokeResult::default() }));
        let bytes = hex("12 00 0a 02 38 01");
        let m = InvokeResponse::decode(&bytes).unwrap();
        assert_eq!(m, InvokeResponse::Error(InvokeErrorResponse { code: Some(1), ..InvokeErrorResponse::default() }));
        // result{} with nothing inside is a valid (empty) chunk.
        assert_eq!(InvokeResponse::decode(&hex("12 00")).unwrap(), InvokeResponse::Result(InvokeResult::default()));
        // A wrong wire type for a oneof member.
        assert_eq!(InvokeResponse::decode(&hex("10 01")), Err(DecodeError::WrongWireType { field: 2 }));
    }

    #[test]
    fn invoke_error_round_trip_all_fields() {
        let e = InvokeResponse::Error(InvokeErrorResponse {
            name: Some("NoslatedError"),
            message: Some("Noslated request failed: CanonicalCode::TIMEOUT"),
            stack: Some("at x\n at y"),
            peer_message: Some(""),
            peer_stack: Some("Error: foobar"),
            operation: Some("Trigger"),
            code: Some(-2),
        });
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), e.encoded_len());
        assert_eq!(InvokeResponse::decode(&buf).unwrap(), e);
    }

    #[test]
    fn invoke_result_with_invalid_utf8_headers_decodes_raw() {
        // Header bytes are passed through unchecked.
        let bytes = hex("12 06 0a 01 ff 12 01 fe");
        let r = InvokeResult::decode(&bytes).unwrap();
        assert_eq!(r.headers, vec![(&b"\xff"[..], &b"\xfe"[..])]);
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(again, bytes);
        // But a string field of the error is checked.
        assert_eq!(InvokeErrorResponse::decode(&hex("12 01 ff")), Err(DecodeError::InvalidUtf8 { field: 2 }));
    }

    fn unknown_fields() -> Vec<u8> {
        // Unknown fields 50..53 of every accepted wire type.
        let mut u = Vec::new();
        put_key(&mut u, 50, WIRE_VARINT);
        put_varint(&mut u, u64::MAX);
        put_key(&mut u, 51, WIRE_FIXED64);
        u.extend_from_slice(&[1; 8]);
        put_bytes(&mut u, 52, b"skip me");
        put_key(&mut u, 53, WIRE_FIXED32);
        u.extend_from_slice(&[2; 4]);
        u
    }

    fn full_profile() -> FunctionProfile {
        FunctionProfile {
            name: Some("hello".into()),
            runtime: Some("nodejs".into()),
            url: Some("file:///code".into()),
            signature: Some("md5:1".into()),
            handler: Some("index.handler".into()),
            initializer: Some("index.init".into()),
            source_file: Some("index.js".into()),
            resource_limit: Some(ResourceLimit { memory: Some(134217728), cpu: Some(0.5) }),
            worker: Some(FunctionProfileWorker {
                initialization_timeout: Some(10000),
                max_activate_requests: Some(0),
                reservation_count: Some(-1),
                fast_fail_requests_on_starting: Some(false),
                replica_count_limit: Some(10),
                v8_options: vec!["--a".into(), "".into()],
                shrink_strategy: Some("LCC".into()),
                exec_argv: vec!["--b".into()],
                disposable: Some(true),
                disable_seed: Some(false),
                disable_request_queue: Some(true),
                dispatch_mode: Some("round-robin".into()),
                concurrency_sliding_window_size: Some(60000),
                concurrency_sliding_bucket_count: Some(6),
                ema_concurrency_alpha: Some(0.5),
                concurrency_expand_threshold: Some(0.7),
                concurrency_shrink_threshold: Some(0.0),
                expand_cooldown: Some(1000),
                shrink_cooldown: Some(60000),
                scale_factor: Some(0.5),
                precision_zero_threshold: Some(0.01),
                concurrency_stats_mode: Some("instant".into()),
                shrink_cooldown_on_startup: Some(false),
            }),
            environments: vec![KeyValuePair::new("A", ""), KeyValuePair::new("", "b")],
            rate_limit: Some(RateLimit { max_token_count: Some(100), tokens_per_fill: Some(0), fill_interval: None }),
            namespace: Some(String::new()),
        }
    }

    /// Every prefix of a valid encoding must fail to decode or decode to
    /// something else, never panic. (A cut at a field boundary is a valid,
    /// shorter message, so only "no panic" and "not equal" are asserted.)
    fn check_cuts<T: Message + PartialEq + fmt::Debug>(m: &T) {
        let buf = m.to_vec();
        for cut in 0..buf.len() {
            if let Ok(d) = T::decode(&buf[..cut]) {
                assert_ne!(&d, m, "cut at {cut}");
            }
        }
    }

    #[test]
    fn function_profile_round_trip_and_presence() {
        let p = full_profile();
        let buf = p.to_vec();
        assert_eq!(buf.len(), p.encoded_len());
        assert_eq!(FunctionProfile::decode(&buf).unwrap(), p);
        check_cuts(&p);

        // Explicit false / 0 / "" are on the wire.
        let w = FunctionProfileWorker { shrink_cooldown_on_startup: Some(false), ..Default::default() };
        assert_eq!(w.to_vec(), hex("b8 01 00"));
        let w = FunctionProfileWorker { reservation_count: Some(0), ..Default::default() };
        assert_eq!(w.to_vec(), hex("18 00"));
        assert!(FunctionProfileWorker::default().to_vec().is_empty());
        // An empty embedded message is still present.
        let p = FunctionProfile { worker: Some(FunctionProfileWorker::default()), ..Default::default() };
        assert_eq!(p.to_vec(), hex("4a 00"));
        assert_eq!(FunctionProfile::decode(&hex("4a 00")).unwrap(), p);
    }

    #[test]
    fn worker_field_numbers_and_types() {
        // One field at a time, to pin the table against docs/noslated-protocol.md §6.3.
        let cases: Vec<(FunctionProfileWorker, &str)> = vec![
            (FunctionProfileWorker { initialization_timeout: Some(1), ..Default::default() }, "08 01"),
            (FunctionProfileWorker { max_activate_requests: Some(1), ..Default::default() }, "10 01"),
            (FunctionProfileWorker { fast_fail_requests_on_starting: Some(true), ..Default::default() }, "20 01"),
            (FunctionProfileWorker { replica_count_limit: Some(1), ..Default::default() }, "28 01"),
            (FunctionProfileWorker { v8_options: vec!["a".into()], ..Default::default() }, "32 01 61"),
            (FunctionProfileWorker { shrink_strategy: Some("a".into()), ..Default::default() }, "3a 01 61"),
            (FunctionProfileWorker { exec_argv: vec!["a".into()], ..Default::default() }, "42 01 61"),
            (FunctionProfileWorker { disposable: Some(true), ..Default::default() }, "48 01"),
            (FunctionProfileWorker { disable_seed: Some(true), ..Default::default() }, "50 01"),
            (FunctionProfileWorker { disable_request_queue: Some(true), ..Default::default() }, "58 01"),
            (FunctionProfileWorker { dispatch_mode: Some("a".into()), ..Default::default() }, "62 01 61"),
            (FunctionProfileWorker { concurrency_sliding_window_size: Some(1), ..Default::default() }, "68 01"),
            (FunctionProfileWorker { concurrency_sliding_bucket_count: Some(1), ..Default::default() }, "70 01"),
            (FunctionProfileWorker { ema_concurrency_alpha: Some(1.0), ..Default::default() }, "7d 00 00 80 3f"),
            (
                FunctionProfileWorker { concurrency_expand_threshold: Some(1.0), ..Default::default() },
                "85 01 00 00 80 3f",
            ),
            (
                FunctionProfileWorker { concurrency_shrink_threshold: Some(1.0), ..Default::default() },
                "8d 01 00 00 80 3f",
            ),
            (FunctionProfileWorker { expand_cooldown: Some(1), ..Default::default() }, "90 01 01"),
            (FunctionProfileWorker { shrink_cooldown: Some(1), ..Default::default() }, "98 01 01"),
            (FunctionProfileWorker { scale_factor: Some(1.0), ..Default::default() }, "a5 01 00 00 80 3f"),
            (FunctionProfileWorker { precision_zero_threshold: Some(1.0), ..Default::default() }, "ad 01 00 00 80 3f"),
            (FunctionProfileWorker { concurrency_stats_mode: Some("a".into()), ..Default::default() }, "b2 01 01 61"),
            (FunctionProfileWorker { shrink_cooldown_on_startup: Some(true), ..Default::default() }, "b8 01 01"),
        ];
        for (w, bytes) in cases {
            assert_eq!(w.to_vec(), hex(bytes), "{w:?}");
            assert_eq!(FunctionProfileWorker::decode(&hex(bytes)).unwrap(), w);
        }
    }

    #[test]
    fn profile_messages_round_trip_with_unknown_fields() {
        let profiles = vec![full_profile(), FunctionProfile::default()];
        let req = SetFunctionProfileRequest { profiles: profiles.clone(), mode: Some("IMMEDIATELY".into()) };
        let buf = req.to_vec();
        let mut borrowed = Vec::new();
        encode_set_function_profile_request(&profiles, Some("IMMEDIATELY"), &mut borrowed);
        assert_eq!(borrowed, buf);
        assert_eq!(set_function_profile_request_len(&profiles, Some("IMMEDIATELY")), buf.len());
        assert_eq!(SetFunctionProfileRequest::decode(&buf).unwrap(), req);
        check_cuts(&req);

        // Unknown fields interleaved at the top level are skipped.
        let mut with_unknown = unknown_fields();
        with_unknown.extend_from_slice(&buf);
        with_unknown.extend_from_slice(&unknown_fields());
        assert_eq!(SetFunctionProfileRequest::decode(&with_unknown).unwrap(), req);

        let get = GetFunctionProfileResponse { profiles };
        assert_eq!(GetFunctionProfileResponse::decode(&get.to_vec()).unwrap(), get);

        for set in [None, Some(false), Some(true)] {
            let r = SetFunctionProfileResponse { set };
            assert_eq!(SetFunctionProfileResponse::decode(&r.to_vec()).unwrap(), r);
            let r = SetPlatformEnvironmentVariablesResponse { set };
            let mut b = unknown_fields();
            r.encode(&mut b);
            assert_eq!(SetPlatformEnvironmentVariablesResponse::decode(&b).unwrap(), r);
        }
        assert_eq!(SetFunctionProfileResponse { set: Some(false) }.to_vec(), hex("08 00"));
    }

    #[test]
    fn unknown_fields_skipped_in_every_message() {
        let u = unknown_fields();
        assert_eq!(Empty::decode(&u), Ok(Empty));
        assert_eq!(Empty.to_vec(), Vec::<u8>::new());
        assert_eq!(KeyValuePair::decode(&u).unwrap(), KeyValuePair::default());
        assert_eq!(PlaneHealthyResponse::decode(&u).unwrap(), PlaneHealthyResponse::default());
        assert_eq!(InvokeResult::decode(&u).unwrap(), InvokeResult::default());
        assert_eq!(InvokeErrorResponse::decode(&u).unwrap(), InvokeErrorResponse::default());
        assert_eq!(InvokeRequest::decode(&u).unwrap(), InvokeRequest::default());
        let mut msg = u.clone();
        msg.extend_from_slice(&hex(DOC_BODY_CHUNK)[5..]);
        msg.extend_from_slice(&u);
        assert!(matches!(
            InvokeResponse::decode(&msg),
            Ok(InvokeResponse::Result(InvokeResult { body: Some(b"hi"), .. }))
        ));
    }

    #[test]
    fn wrong_wire_type_for_known_fields() {
        // name (string) as varint; health (bool) as bytes; memory as fixed32;
        // cpu (float) as varint; deadline (double) as fixed32.
        assert_eq!(PlaneHealthyResponse::decode(&hex("08 01")), Err(DecodeError::WrongWireType { field: 1 }));
        assert_eq!(PlaneHealthyResponse::decode(&hex("12 00")), Err(DecodeError::WrongWireType { field: 2 }));
        assert_eq!(ResourceLimit::decode(&hex("0d 00 00 00 00")), Err(DecodeError::WrongWireType { field: 1 }));
        assert_eq!(ResourceLimit::decode(&hex("10 01")), Err(DecodeError::WrongWireType { field: 2 }));
        assert_eq!(InvokeRequest::decode(&hex("35 00 00 00 00")), Err(DecodeError::WrongWireType { field: 6 }));
        // An error nested two levels deep surfaces.
        assert_eq!(SetFunctionProfileRequest::decode(&hex("0a 04 4a 02 08 ff")), Err(DecodeError::Truncated));
    }

    #[test]
    fn last_scalar_wins_and_repeated_appends() {
        let bytes = hex("10 01 10 00 0a 01 61 0a 01 62");
        let m = PlaneHealthyResponse::decode(&bytes).unwrap();
        assert_eq!(m.health, Some(false));
        assert_eq!(m.name, Some("b"));
        let w = FunctionProfileWorker::decode(&hex("32 01 61 08 05 32 01 62 08 07")).unwrap();
        assert_eq!(w.v8_options, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(w.initialization_timeout, Some(7));
        // int32 from a 64-bit varint keeps the low 32 bits; bool is "non-zero".
        let mut b = vec![0x08];
        put_varint(&mut b, 0x1_0000_0005);
        assert_eq!(ResourceLimit::decode(&b).unwrap().memory, Some(5));
        assert_eq!(SetFunctionProfileResponse::decode(&hex("08 02")).unwrap().set, Some(true));
    }

    #[test]
    fn plane_healthy_round_trip() {
        let m = PlaneHealthyResponse {
            name: Some("DataPlane"),
            health: Some(false),
            reason: Some("Circuit Breaker Enabled"),
        };
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(b.len(), m.encoded_len());
        assert_eq!(PlaneHealthyResponse::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            let _ = PlaneHealthyResponse::decode(&b[..cut]);
        }
    }

    #[test]
    fn platform_env_request_encoding() {
        let envs = vec![("TZ".to_string(), "UTC".to_string()), ("EMPTY".to_string(), String::new())];
        let mut b = Vec::new();
        SetPlatformEnvironmentVariablesRequest::encode_pairs(&envs, &mut b);
        assert_eq!(b.len(), SetPlatformEnvironmentVariablesRequest::pairs_len(&envs));
        let d = SetPlatformEnvironmentVariablesRequest::decode(&b).unwrap();
        assert_eq!(d.envs, vec![KeyValuePair::new("TZ", "UTC"), KeyValuePair::new("EMPTY", "")]);
        assert_eq!(d.to_vec(), b);
        assert_eq!(b[..9], hex("0a 09 0a 02 54 5a 12 03 55 54 43")[..9]);
    }

    #[test]
    fn truncation_at_every_cut_of_invoke_messages() {
        for doc in [DOC_INVOKE_REQUEST, DOC_RESPONSE_HEAD, DOC_BODY_CHUNK, DOC_ERROR] {
            let full = hex(doc);
            let msg = &full[5..];
            for cut in 0..msg.len() {
                let _ = InvokeRequest::decode(&msg[..cut]);
                let r = InvokeResponse::decode(&msg[..cut]);
                if doc != DOC_INVOKE_REQUEST {
                    // The outer length always points past the cut.
                    assert!(r.is_err(), "cut {cut} of {doc}");
                }
            }
        }
    }

    fn response_payload(msg: &InvokeResponse<'_>) -> Vec<u8> {
        let mut b = Vec::new();
        msg.encode(&mut b);
        b
    }

    #[test]
    fn body_only_result_positive() {
        for len in [0usize, 1, 2, 125, 126, 127, 128, 16380, 16384, 1 << 20, grpc::MAX_MESSAGE_LEN - 8] {
            let body = vec![0xaa; len];
            let payload = response_payload(&InvokeResponse::Result(InvokeResult {
                body: Some(&body),
                ..InvokeResult::default()
            }));
            let prefix = &payload[..payload.len().min(BODY_ONLY_PREFIX_MAX)];
            let off = body_only_result(prefix, payload.len()).unwrap();
            assert_eq!(&payload[off..], &body[..], "len {len}");
            // Split prefixes: too few bytes → None, never a wrong offset.
            for cut in 0..off {
                assert_eq!(body_only_result(&payload[..cut], payload.len()), None);
            }
            for cut in off..prefix.len() {
                assert_eq!(body_only_result(&payload[..cut], payload.len()), Some(off));
            }
        }
        // The worked body chunk (docs/noslated-protocol.md §7.6).
        let doc = hex(DOC_BODY_CHUNK);
        assert_eq!(body_only_result(&doc[5..], 6), Some(4));
        // Non-minimal varints still give the right offset.
        let odd = hex("12 85 00 1a 82 00 68 69");
        assert_eq!(body_only_result(&odd, odd.len()), Some(6));
    }

    #[test]
    fn body_only_result_negative() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("12 04 1a 02 68 69", 7),       // message longer than the result
            ("12 04 1a 02 68 69", 5),       // shorter
            ("12 04 1a 01 68 69", 6),       // body does not reach the end
            ("12 05 1a 02 68 69 08", 7),    // trailing field inside result
            ("12 04 08 c8 01 00", 6),       // status first
            ("0a 04 1a 02 68 69", 6),       // error member
            ("12 06 08 00 1a 02 68 69", 8), // status before body
            ("1a 02 68 69", 4),             // not wrapped in result
            ("12 ff ff ff ff ff ff", 99),   // over-long varint
        ];
        for (bytes, len) in cases {
            assert_eq!(body_only_result(&hex(bytes), *len), None, "{bytes} / {len}");
        }
        // A head is decoded normally.
        let doc = hex(DOC_RESPONSE_HEAD);
        assert_eq!(body_only_result(&doc[5..], doc.len() - 5), None);
        assert_eq!(body_only_result(&[0x12], usize::MAX), None);
    }
}
