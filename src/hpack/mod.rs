//! HPACK header compression (RFC 7541) for the HTTP/2 side of the proxy.
//!
//! [`Decoder`] turns complete header blocks from the peer (a Node.js HTTP/2
//! server, i.e. nghttp2, which Huffman-codes values and indexes aggressively)
//! into `(name, value)` callbacks. It owns the dynamic table, so it must see
//! every block of the connection, in order: a block that fails to decode
//! leaves the table undefined and the caller must tear the connection down
//! with COMPRESSION_ERROR (RFC 9113 §4.3).
//!
//! [`Encoder`] writes our request blocks. It never inserts into the peer's
//! dynamic table, so it has no state to keep in sync and the peer's table
//! size is irrelevant: fields are fully indexed when the static table has
//! them, otherwise sent as "literal without indexing".
//!
//! Both are sans-IO: bytes in, callbacks or bytes out. Values that are not
//! Huffman-coded are handed to the callback straight from the input block;
//! Huffman-coded strings are decoded into buffers the decoder reuses.

pub mod huffman;
mod table;

use std::fmt;

use table::{DynamicTable, Entry, StaticMatch, ENTRY_OVERHEAD, STATIC_TABLE, STATIC_TABLE_LEN};

/// Initial dynamic table size of both endpoints until a size update says
/// otherwise: the initial SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Largest integer the decoder accepts (§5.1 lets decoders limit integers).
/// Nothing we decode (indices, string lengths, table sizes) is legitimately
/// near 2^28; the cap keeps arithmetic far from overflow on 32-bit targets.
const MAX_INTEGER: u64 = 1 << 28;

/// Continuation octets needed to carry any integer up to [`MAX_INTEGER`]
/// (7 bits each, §5.1). A longer encoding can only be zero-padding.
const MAX_INTEGER_CONTINUATION_OCTETS: u32 = 5;

/// Why a header block could not be decoded. Every variant is a
/// COMPRESSION_ERROR at the HTTP/2 layer (RFC 9113 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderError {
    /// The block ends inside a representation (truncated block).
    NeedMore,
    /// An integer exceeds the decoder's limit (§5.1).
    IntegerOverflow,
    /// An index is 0 or beyond the static plus dynamic tables (§2.3.3).
    InvalidIndex(usize),
    /// A Huffman string has bad padding or contains EOS (§5.2).
    InvalidHuffman,
    /// A dynamic table size update exceeds the size we advertised (§6.3).
    InvalidTableSizeUpdate,
    /// A dynamic table size update follows a field representation (§4.2).
    SizeUpdateNotAtStart,
    /// The decoded header list exceeds SETTINGS_MAX_HEADER_LIST_SIZE
    /// (RFC 9113 §6.5.2).
    HeaderListTooLarge,
    /// An integer is encoded with more continuation octets than any value
    /// within the decoder's 2^28 limit needs (zero-padded, §5.1).
    InvalidRepresentation,
}

impl fmt::Display for DecoderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecoderError::NeedMore => f.write_str("HPACK block is truncated"),
            DecoderError::IntegerOverflow => f.write_str("HPACK integer exceeds the limit"),
            DecoderError::InvalidIndex(index) => write!(f, "HPACK index {index} is out of range"),
            DecoderError::InvalidHuffman => f.write_str("invalid HPACK Huffman string"),
            DecoderError::InvalidTableSizeUpdate => {
                f.write_str("HPACK table size update exceeds the advertised maximum")
            }
            DecoderError::SizeUpdateNotAtStart => f.write_str("HPACK table size update after a header field"),
            DecoderError::HeaderListTooLarge => f.write_str("header list exceeds the maximum size"),
            DecoderError::InvalidRepresentation => f.write_str("HPACK integer has superfluous continuation octets"),
        }
    }
}

impl std::error::Error for DecoderError {}

/// The representation a field block's next octet starts (RFC 7541 §6).
/// They are told apart by the number of leading zero bits of that octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    /// `1xxxxxxx`, §6.1.
    Indexed,
    /// `01xxxxxx`, §6.2.1.
    LiteralIncrementalIndexing,
    /// `001xxxxx`, §6.3.
    TableSizeUpdate,
    /// `0001xxxx`, §6.2.3.
    LiteralNeverIndexed,
    /// `0000xxxx`, §6.2.2.
    LiteralWithoutIndexing,
}

impl Representation {
    fn of(first: u8) -> Self {
        match first.leading_zeros() {
            0 => Representation::Indexed,
            1 => Representation::LiteralIncrementalIndexing,
            2 => Representation::TableSizeUpdate,
            3 => Representation::LiteralNeverIndexed,
            _ => Representation::LiteralWithoutIndexing,
        }
    }

    /// Width of the integer prefix (index or size) in the first octet.
    fn prefix_bits(self) -> u8 {
        match self {
            Representation::Indexed => 7,
            Representation::LiteralIncrementalIndexing => 6,
            Representation::TableSizeUpdate => 5,
            Representation::LiteralNeverIndexed | Representation::LiteralWithoutIndexing => 4,
        }
    }

    /// The fixed bits above the prefix.
    fn pattern(self) -> u8 {
        match self {
            Representation::Indexed => 0x80,
            Representation::LiteralIncrementalIndexing => 0x40,
            Representation::TableSizeUpdate => 0x20,
            Representation::LiteralNeverIndexed => 0x10,
            Representation::LiteralWithoutIndexing => 0x00,
        }
    }
}

/// Huffman flag of a string literal's first octet (§5.2).
const HUFFMAN_FLAG: u8 = 0x80;
/// Prefix bits of a string literal's length (§5.2).
const STRING_LENGTH_PREFIX: u8 = 7;

/// Reads an integer with an N-bit prefix (§5.1), advancing `input`.
fn decode_integer(input: &mut &[u8], prefix_bits: u8) -> Result<usize, DecoderError> {
    let (&first, mut rest) = input.split_first().ok_or(DecoderError::NeedMore)?;
    // u64 arithmetic: an 8-bit prefix (RFC 7541 C.1.3) would overflow u8.
    let prefix_max = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(first) & prefix_max;
    if value < prefix_max {
        *input = rest;
        return Ok(value as usize);
    }
    let mut shift = 0;
    while shift < 7 * MAX_INTEGER_CONTINUATION_OCTETS {
        let (&octet, tail) = rest.split_first().ok_or(DecoderError::NeedMore)?;
        rest = tail;
        value += u64::from(octet & 0x7f) << shift;
        if value > MAX_INTEGER {
            return Err(DecoderError::IntegerOverflow);
        }
        if octet & 0x80 == 0 {
            *input = rest;
            return usize::try_from(value).map_err(|_| DecoderError::IntegerOverflow);
        }
        shift += 7;
    }
    Err(DecoderError::InvalidRepresentation)
}

/// Appends an integer with an N-bit prefix (§5.1); `flags` fills the bits
/// above the prefix in the first octet.
pub fn encode_integer(value: usize, prefix_bits: u8, flags: u8, dst: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        dst.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

/// Where a decoded string lives: borrowed from the block, or decoded into
/// one of the decoder's scratch buffers.
enum Literal<'b> {
    Raw(&'b [u8]),
    Decoded,
}

/// Reads a string literal (§5.2), advancing `input`. A Huffman-coded
/// string is decoded into `scratch`.
fn decode_string<'b>(input: &mut &'b [u8], scratch: &mut Vec<u8>) -> Result<Literal<'b>, DecoderError> {
    let huffman = input.first().ok_or(DecoderError::NeedMore)? & HUFFMAN_FLAG != 0;
    let len = decode_integer(input, STRING_LENGTH_PREFIX)?;
    if input.len() < len {
        return Err(DecoderError::NeedMore);
    }
    let (raw, rest) = input.split_at(len);
    *input = rest;
    if huffman {
        scratch.clear();
        huffman::decode(raw, scratch)?;
        Ok(Literal::Decoded)
    } else {
        Ok(Literal::Raw(raw))
    }
}

/// Where a literal's name comes from (§6.2): a table or the block itself.
enum NameSource<'b> {
    Static(&'static [u8]),
    Dynamic(usize),
    Literal(Literal<'b>),
}

/// HPACK decoder for one HTTP/2 connection (peer → us).
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// SETTINGS_HEADER_TABLE_SIZE we advertised: the bound for size updates.
    max_table_size: usize,
    name_scratch: Vec<u8>,
    value_scratch: Vec<u8>,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE we advertised, the
    /// upper bound for dynamic table size updates. The table itself starts at
    /// [`DEFAULT_TABLE_SIZE`] (RFC 9113 §6.5.2) until the peer sends an update;
    /// keeping more entries than the peer's encoder assumes is harmless,
    /// since indices count from the newest entry.
    pub fn new(max_table_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            max_table_size,
            name_scratch: Vec::new(),
            value_scratch: Vec::new(),
        }
    }

    /// Current dynamic table size in §4.1 octets.
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Number of entries in the dynamic table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION payloads
    /// already joined), calling `emit(name, value)` per field in order.
    ///
    /// `max_list_size` bounds the sum of `name.len() + value.len() + 32` over
    /// the fields (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 §6.5.2); a field
    /// that would exceed it is not emitted. After any error the dynamic table
    /// is unspecified and the connection must be closed (RFC 9113 §4.3).
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        emit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecoderError> {
        let Decoder { table, max_table_size, name_scratch, value_scratch } = self;
        let mut input = block;
        let mut list_size: usize = 0;
        // §4.2: size updates are only allowed before the first field.
        let mut at_block_start = true;

        while let Some(&first) = input.first() {
            let representation = Representation::of(first);
            let prefix_bits = representation.prefix_bits();
            let indexing = match representation {
                Representation::TableSizeUpdate => {
                    if !at_block_start {
                        return Err(DecoderError::SizeUpdateNotAtStart);
                    }
                    let new_size = decode_integer(&mut input, prefix_bits)?;
                    if new_size > *max_table_size {
                        return Err(DecoderError::InvalidTableSizeUpdate);
                    }
                    table.set_max_size(new_size);
                    continue;
                }
                Representation::Indexed => {
                    at_block_start = false;
                    let index = decode_integer(&mut input, prefix_bits)?;
                    let (name, value) = lookup(table, index)?;
                    account(&mut list_size, name, value, max_list_size)?;
                    emit(name, value);
                    continue;
                }
                Representation::LiteralIncrementalIndexing => true,
                // Never-indexed only binds intermediaries that re-encode with
                // HPACK (§7.1.3); we forward these fields over HTTP/1.1.
                Representation::LiteralWithoutIndexing | Representation::LiteralNeverIndexed => false,
            };
            at_block_start = false;

            let name_index = decode_integer(&mut input, prefix_bits)?;
            let name_source = if name_index == 0 {
                NameSource::Literal(decode_string(&mut input, name_scratch)?)
            } else if let Some(&(name, _)) = STATIC_TABLE.get(name_index - 1) {
                NameSource::Static(name)
            } else {
                // Resolved to a position now, borrowed only after the value
                // is decoded (the scratch buffers and table are disjoint).
                let position = name_index
                    .checked_sub(STATIC_TABLE_LEN + 1)
                    .filter(|&position| table.get(position).is_some())
                    .ok_or(DecoderError::InvalidIndex(name_index))?;
                NameSource::Dynamic(position)
            };
            let value_literal = decode_string(&mut input, value_scratch)?;

            let name: &[u8] = match name_source {
                NameSource::Static(name) => name,
                NameSource::Dynamic(position) => {
                    table.get(position).map(Entry::name).ok_or(DecoderError::InvalidIndex(name_index))?
                }
                NameSource::Literal(Literal::Raw(name)) => name,
                NameSource::Literal(Literal::Decoded) => name_scratch,
            };
            let value: &[u8] = match value_literal {
                Literal::Raw(value) => value,
                Literal::Decoded => value_scratch,
            };
            account(&mut list_size, name, value, max_list_size)?;
            emit(name, value);
            if indexing {
                // Copy before inserting: eviction may drop the entry the
                // name was taken from (§4.4).
                let entry = Entry::new(name, value);
                table.insert(entry);
            }
        }
        Ok(())
    }
}

/// Resolves a §2.3.3 index against the static then the dynamic table.
fn lookup(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), DecoderError> {
    if index == 0 {
        return Err(DecoderError::InvalidIndex(index));
    }
    if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
        return Ok((name, value));
    }
    index
        .checked_sub(STATIC_TABLE_LEN + 1)
        .and_then(|position| table.get(position))
        .map(|entry| (entry.name(), entry.value()))
        .ok_or(DecoderError::InvalidIndex(index))
}

/// Adds a field to the header list size (RFC 9113 §6.5.2 accounting).
fn account(list_size: &mut usize, name: &[u8], value: &[u8], max_list_size: usize) -> Result<(), DecoderError> {
    let field_size = name.len().saturating_add(value.len()).saturating_add(ENTRY_OVERHEAD);
    *list_size = list_size.saturating_add(field_size);
    if *list_size > max_list_size {
        return Err(DecoderError::HeaderListTooLarge);
    }
    Ok(())
}

/// HPACK encoder for our requests (us → peer). Stateless by design: it
/// never inserts into the dynamic table, so it never needs to track the
/// peer's table size or evictions.
#[derive(Debug, Default)]
pub struct Encoder {
    _private: (),
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    /// Appends the encoded block for `fields` to `dst`.
    ///
    /// A field found whole in the static table is indexed (§6.1); otherwise
    /// it is a literal without indexing (§6.2.2), naming the static entry
    /// when the name is there. Strings are not Huffman-coded: our values are
    /// short and this keeps encoding a straight copy. Names must already be
    /// lower case (RFC 9113 §8.2.1); the caller guarantees it.
    pub fn encode<'a, I: IntoIterator<Item = (&'a [u8], &'a [u8])>>(&mut self, fields: I, dst: &mut Vec<u8>) {
        // The only literal we send: it leaves the peer's table untouched.
        const LITERAL: Representation = Representation::LiteralWithoutIndexing;
        for (name, value) in fields {
            match table::find_static(name, value) {
                StaticMatch::Field(index) => {
                    encode_integer(index, Representation::Indexed.prefix_bits(), Representation::Indexed.pattern(), dst)
                }
                StaticMatch::Name(index) => {
                    encode_integer(index, LITERAL.prefix_bits(), LITERAL.pattern(), dst);
                    encode_string(value, dst);
                }
                StaticMatch::None => {
                    encode_integer(0, LITERAL.prefix_bits(), LITERAL.pattern(), dst);
                    encode_string(name, dst);
                    encode_string(value, dst);
                }
            }
        }
    }
}

/// Appends a raw (non-Huffman) string literal (§5.2).
fn encode_string(value: &[u8], dst: &mut Vec<u8>) {
    encode_integer(value.len(), STRING_LENGTH_PREFIX, 0, dst);
    dst.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = Vec<(String, String)>;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn decode_with_limit(decoder: &mut Decoder, block: &[u8], max_list_size: usize) -> Result<Fields, DecoderError> {
        let mut fields = Vec::new();
        decoder
            .decode(block, max_list_size, &mut |name, value| {
                fields.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()))
            })
            .map(|()| fields)
    }

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, DecoderError> {
        decode_with_limit(decoder, block, usize::MAX)
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect()
    }

    /// Dynamic table contents, newest first.
    fn table_of(decoder: &Decoder) -> Fields {
        decoder
            .table
            .entries()
            .map(|entry| {
                (
                    String::from_utf8_lossy(entry.name()).into_owned(),
                    String::from_utf8_lossy(entry.value()).into_owned(),
                )
            })
            .collect()
    }

    fn int(bytes: &[u8], prefix_bits: u8) -> Result<(usize, usize), DecoderError> {
        let mut input = bytes;
        let value = decode_integer(&mut input, prefix_bits)?;
        Ok((value, bytes.len() - input.len()))
    }

    // ---- C.1 integer representation ----

    #[test]
    fn c1_integers() {
        // C.1.1: 10 with a 5-bit prefix; the bits above the prefix are ignored.
        assert_eq!(int(&[0b0000_1010], 5), Ok((10, 1)));
        assert_eq!(int(&[0b1110_1010], 5), Ok((10, 1)));
        // C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(int(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
        assert_eq!(int(&[0xff, 0x9a, 0x0a, 0x55], 5), Ok((1337, 3)));
        // C.1.3: 42 at an octet boundary (8-bit prefix).
        assert_eq!(int(&[0x2a], 8), Ok((42, 1)));

        let mut out = Vec::new();
        encode_integer(10, 5, 0, &mut out);
        encode_integer(1337, 5, 0, &mut out);
        encode_integer(42, 8, 0, &mut out);
        assert_eq!(out, [0x0a, 0x1f, 0x9a, 0x0a, 0x2a]);
    }

    #[test]
    fn integer_boundaries_round_trip() {
        for prefix_bits in 1..=8u8 {
            let prefix_max = (1usize << prefix_bits) - 1;
            for value in
                [0, 1, prefix_max - 1, prefix_max, prefix_max + 1, 127 + prefix_max, 128 + prefix_max, 1 << 20, 1 << 28]
            {
                let mut out = Vec::new();
                encode_integer(value, prefix_bits, 0, &mut out);
                assert_eq!(int(&out, prefix_bits), Ok((value, out.len())), "{value} / {prefix_bits}");
            }
        }
    }

    #[test]
    fn integer_limits() {
        // 2^28 is the largest accepted value; one more overflows.
        let mut out = Vec::new();
        encode_integer((1 << 28) + 1, 5, 0, &mut out);
        assert_eq!(int(&out, 5), Err(DecoderError::IntegerOverflow));
        assert_eq!(int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], 7), Err(DecoderError::IntegerOverflow));
        // Zero-padded: 4 padding octets are tolerated, a 5th continuation is not.
        assert_eq!(int(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00], 7), Ok((127, 6)));
        assert_eq!(int(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 7), Err(DecoderError::InvalidRepresentation));
        // Truncated.
        assert_eq!(int(&[], 7), Err(DecoderError::NeedMore));
        assert_eq!(int(&[0x1f], 5), Err(DecoderError::NeedMore));
        assert_eq!(int(&[0x1f, 0x9a], 5), Err(DecoderError::NeedMore));
    }

    #[test]
    fn representation_classification_and_patterns() {
        for first in 0..=255u8 {
            let representation = Representation::of(first);
            let prefix_mask = ((1u16 << representation.prefix_bits()) - 1) as u8;
            assert_eq!(first & !prefix_mask, representation.pattern(), "{first:#04x}");
        }
        assert_eq!(Representation::of(0x1f), Representation::LiteralNeverIndexed);
        assert_eq!(Representation::of(0x0f), Representation::LiteralWithoutIndexing);
    }

    #[test]
    fn never_indexed_with_indexed_name() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x14, 0x01, b'x']), Ok(fields(&[(":path", "x")])));
        assert_eq!(d.table_len(), 0);
    }

    // ---- C.2 header field representations ----

    #[test]
    fn c2_1_literal_with_indexing() {
        let mut d = Decoder::new(4096);
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(decode(&mut d, &block), Ok(fields(&[("custom-key", "custom-header")])));
        assert_eq!(table_of(&d), fields(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
    }

    #[test]
    fn c2_2_literal_without_indexing() {
        let mut d = Decoder::new(4096);
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(decode(&mut d, &block), Ok(fields(&[(":path", "/sample/path")])));
        assert_eq!(d.table_len(), 0);
    }

    #[test]
    fn c2_3_literal_never_indexed() {
        let mut d = Decoder::new(4096);
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(decode(&mut d, &block), Ok(fields(&[("password", "secret")])));
        assert_eq!(d.table_len(), 0);
    }

    #[test]
    fn c2_4_indexed() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x82]), Ok(fields(&[(":method", "GET")])));
        assert_eq!(d.table_len(), 0);
    }

    // ---- C.3 to C.6: sequences on one decoder ----

    struct Step {
        block: &'static str,
        fields: &'static [(&'static str, &'static str)],
        table: &'static [(&'static str, &'static str)],
        size: usize,
    }

    const REQUEST_1: &[(&str, &str)] =
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
    const REQUEST_2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQUEST_3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const REQUEST_TABLE_1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const REQUEST_TABLE_2: &[(&str, &str)] = &[("cache-control", "no-cache"), (":authority", "www.example.com")];
    const REQUEST_TABLE_3: &[(&str, &str)] =
        &[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")];

    const C3: [Step; 3] = [
        Step {
            block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            fields: REQUEST_1,
            table: REQUEST_TABLE_1,
            size: 57,
        },
        Step { block: "8286 84be 5808 6e6f 2d63 6163 6865", fields: REQUEST_2, table: REQUEST_TABLE_2, size: 110 },
        Step {
            block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            fields: REQUEST_3,
            table: REQUEST_TABLE_3,
            size: 164,
        },
    ];

    const C4: [Step; 3] = [
        Step {
            block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            fields: REQUEST_1,
            table: REQUEST_TABLE_1,
            size: 57,
        },
        Step { block: "8286 84be 5886 a8eb 1064 9cbf", fields: REQUEST_2, table: REQUEST_TABLE_2, size: 110 },
        Step {
            block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            fields: REQUEST_3,
            table: REQUEST_TABLE_3,
            size: 164,
        },
    ];

    const DATE_1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE_2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    const RESPONSE_1: &[(&str, &str)] =
        &[(":status", "302"), ("cache-control", "private"), ("date", DATE_1), ("location", LOCATION)];
    const RESPONSE_2: &[(&str, &str)] =
        &[(":status", "307"), ("cache-control", "private"), ("date", DATE_1), ("location", LOCATION)];
    const RESPONSE_3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", DATE_2),
        ("location", LOCATION),
        ("content-encoding", "gzip"),
        ("set-cookie", COOKIE),
    ];
    const RESPONSE_TABLE_1: &[(&str, &str)] =
        &[("location", LOCATION), ("date", DATE_1), ("cache-control", "private"), (":status", "302")];
    const RESPONSE_TABLE_2: &[(&str, &str)] =
        &[(":status", "307"), ("location", LOCATION), ("date", DATE_1), ("cache-control", "private")];
    const RESPONSE_TABLE_3: &[(&str, &str)] = &[("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE_2)];

    const C5: [Step; 3] = [
        Step {
            block: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 \
                    3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 \
                    7777 2e65 7861 6d70 6c65 2e63 6f6d",
            fields: RESPONSE_1,
            table: RESPONSE_TABLE_1,
            size: 222,
        },
        Step { block: "4803 3330 37c1 c0bf", fields: RESPONSE_2, table: RESPONSE_TABLE_2, size: 222 },
        Step {
            block: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 \
                    3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a \
                    584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 \
                    3630 303b 2076 6572 7369 6f6e 3d31",
            fields: RESPONSE_3,
            table: RESPONSE_TABLE_3,
            size: 215,
        },
    ];

    const C6: [Step; 3] = [
        Step {
            block: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 \
                    66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            fields: RESPONSE_1,
            table: RESPONSE_TABLE_1,
            size: 222,
        },
        Step { block: "4883 640e ffc1 c0bf", fields: RESPONSE_2, table: RESPONSE_TABLE_2, size: 222 },
        Step {
            block: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a \
                    839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 \
                    72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            fields: RESPONSE_3,
            table: RESPONSE_TABLE_3,
            size: 215,
        },
    ];

    /// C.5 and C.6 run with SETTINGS_HEADER_TABLE_SIZE = 256 already in
    /// force and no size update in the blocks, so the table starts at 256.
    fn response_decoder() -> Decoder {
        let mut d = Decoder::new(256);
        d.table.set_max_size(256);
        d
    }

    fn run_sequence(mut d: Decoder, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            let block = hex(step.block);
            assert_eq!(decode(&mut d, &block), Ok(fields(step.fields)), "step {i}");
            assert_eq!(table_of(&d), fields(step.table), "table after step {i}");
            assert_eq!(d.table_size(), step.size, "size after step {i}");
        }
    }

    #[test]
    fn c3_requests_without_huffman() {
        run_sequence(Decoder::new(4096), &C3);
    }

    #[test]
    fn c4_requests_with_huffman() {
        run_sequence(Decoder::new(4096), &C4);
    }

    #[test]
    fn c5_responses_without_huffman_with_eviction() {
        run_sequence(response_decoder(), &C5);
    }

    #[test]
    fn c6_responses_with_huffman_with_eviction() {
        run_sequence(response_decoder(), &C6);
    }

    /// An RFC example sequence and the decoder it starts from.
    type Sequence = (&'static [Step], fn() -> Decoder);

    /// Every cut of every RFC block either ends on a field boundary (and
    /// yields a prefix of the fields) or is reported as truncated; the
    /// decoder state before each block is rebuilt by replaying earlier ones.
    #[test]
    fn truncation_at_every_cut_point() {
        let sequences: [Sequence; 4] = [
            (&C3, || Decoder::new(4096)),
            (&C4, || Decoder::new(4096)),
            (&C5, response_decoder),
            (&C6, response_decoder),
        ];
        for (steps, fresh) in sequences {
            for (i, step) in steps.iter().enumerate() {
                let block = hex(step.block);
                let mut truncated = 0;
                for cut in 0..block.len() {
                    let mut d = fresh();
                    for earlier in &steps[..i] {
                        decode(&mut d, &hex(earlier.block)).unwrap();
                    }
                    match decode(&mut d, &block[..cut]) {
                        Ok(got) => assert_eq!(got, fields(&step.fields[..got.len()]), "cut {cut}"),
                        Err(err) => {
                            assert_eq!(err, DecoderError::NeedMore, "cut {cut}");
                            truncated += 1;
                        }
                    }
                }
                assert!(truncated > 0);
            }
        }
    }

    // ---- errors ----

    #[test]
    fn index_zero_and_out_of_range() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x80]), Err(DecoderError::InvalidIndex(0)));
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0xbe]), Err(DecoderError::InvalidIndex(62)));
        // Literal whose name index points past the (empty) dynamic table.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x7e, 0x00]), Err(DecoderError::InvalidIndex(62)));
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x0f, 0x2f, 0x00]), Err(DecoderError::InvalidIndex(62)));
        // Index 61 is the last static entry.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0xbd]), Ok(fields(&[("www-authenticate", "")])));
        // After one insertion 62 is valid, 63 is not.
        let mut d = Decoder::new(4096);
        decode(&mut d, &hex("4001 6101 62")).unwrap();
        assert_eq!(decode(&mut d, &[0xbe]), Ok(fields(&[("a", "b")])));
        assert_eq!(decode(&mut d, &[0xbf]), Err(DecoderError::InvalidIndex(63)));
        // Huge index: overflow, not a wrap-around.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(DecoderError::IntegerOverflow));
    }

    #[test]
    fn invalid_huffman_in_name_and_value() {
        // Name: Huffman, 1 octet 0x00 = '0' + zero padding.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x40, 0x81, 0x00, 0x00]), Err(DecoderError::InvalidHuffman));
        // Value: a whole octet of padding.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x04, 0x81, 0xff]), Err(DecoderError::InvalidHuffman));
    }

    #[test]
    fn table_size_updates() {
        // Above the advertised maximum.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x3f, 0xe2, 0x1f]), Err(DecoderError::InvalidTableSizeUpdate));
        // Exactly the maximum is fine.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x3f, 0xe1, 0x1f]), Ok(vec![]));
        // After a field.
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x82, 0x20]), Err(DecoderError::SizeUpdateNotAtStart));
        // Two updates at the start (§4.2 allows the minimum then the final
        // size); shrinking to 0 empties the table.
        let mut d = Decoder::new(4096);
        decode(&mut d, &hex("4001 6101 62")).unwrap();
        assert_eq!(d.table_len(), 1);
        assert_eq!(decode(&mut d, &[0x20, 0x3f, 0x11, 0x82]), Ok(fields(&[(":method", "GET")])));
        assert_eq!((d.table_len(), d.table_size(), d.table.max_size()), (0, 0, 48));
        // A size update only also counts as a (empty) block.
        assert_eq!(decode(&mut d, &[0x20]), Ok(vec![]));
        // With a 0-size table, insertions are dropped (§4.4), not errors.
        assert_eq!(decode(&mut d, &hex("4001 6101 62")), Ok(fields(&[("a", "b")])));
        assert_eq!(d.table_len(), 0);
        // Advertising less than 4096: updates above it are refused.
        let mut d = Decoder::new(256);
        assert_eq!(decode(&mut d, &[0x3f, 0xe2, 0x01]), Err(DecoderError::InvalidTableSizeUpdate));
        assert_eq!(decode(&mut d, &[0x3f, 0xe1, 0x01]), Ok(vec![]));
    }

    #[test]
    fn header_list_size_limit() {
        // ":method: GET" counts 7 + 3 + 32 = 42.
        let mut d = Decoder::new(4096);
        assert_eq!(decode_with_limit(&mut d, &[0x82], 42), Ok(fields(&[(":method", "GET")])));
        assert_eq!(decode_with_limit(&mut d, &[0x82], 41), Err(DecoderError::HeaderListTooLarge));
        assert_eq!(decode_with_limit(&mut d, &[0x82, 0x82], 83), Err(DecoderError::HeaderListTooLarge));
        assert_eq!(decode_with_limit(&mut d, &[0x82, 0x82], 84).map(|f| f.len()), Ok(2));
        // Literals are accounted with their decoded (Huffman) length.
        let c4 = hex(C4[0].block);
        let mut d = Decoder::new(4096);
        let total = 42 + (7 + 4 + 32) + (5 + 1 + 32) + (10 + 15 + 32);
        assert!(decode_with_limit(&mut d, &c4, total).is_ok());
        let mut d = Decoder::new(4096);
        assert_eq!(decode_with_limit(&mut d, &c4, total - 1), Err(DecoderError::HeaderListTooLarge));
    }

    #[test]
    fn zero_padded_integer_is_invalid_representation() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(DecoderError::InvalidRepresentation)
        );
    }

    #[test]
    fn truncated_string_and_representations() {
        for block in [
            &[0x40][..],               // literal, no name
            &[0x40, 0x03, b'a', b'b'], // name cut short
            &[0x40, 0x01, b'a'],       // no value
            &[0x04, 0x85, 0xff, 0xff], // Huffman value cut short
            &[0x3f],                   // size update integer cut short
            &[0xff],                   // index integer cut short
        ] {
            let mut d = Decoder::new(4096);
            assert_eq!(decode(&mut d, block), Err(DecoderError::NeedMore), "{block:02x?}");
        }
    }

    #[test]
    fn every_error_displays() {
        for err in [
            DecoderError::NeedMore,
            DecoderError::IntegerOverflow,
            DecoderError::InvalidIndex(70),
            DecoderError::InvalidHuffman,
            DecoderError::InvalidTableSizeUpdate,
            DecoderError::SizeUpdateNotAtStart,
            DecoderError::HeaderListTooLarge,
            DecoderError::InvalidRepresentation,
        ] {
            assert!(!err.to_string().is_empty());
        }
        assert!(DecoderError::InvalidIndex(70).to_string().contains("70"));
    }

    /// §4.4: a literal with incremental indexing may name the entry its own
    /// insertion evicts; the name must survive the eviction.
    #[test]
    fn insertion_evicting_its_own_name_source() {
        let mut d = Decoder::new(4096);
        // Size update to 60, then insert "aaaa: b" (37 octets).
        decode(&mut d, &hex("3f1d 4004 6161 6161 0162")).unwrap();
        assert_eq!(d.table_size(), 37);
        // Name from index 62, value "cc": 38 octets, 75 > 60 evicts 62 first.
        assert_eq!(decode(&mut d, &hex("7e02 6363")), Ok(fields(&[("aaaa", "cc")])));
        assert_eq!(table_of(&d), fields(&[("aaaa", "cc")]));
        assert_eq!(d.table_size(), 38);
    }

    #[test]
    fn empty_block_and_empty_strings() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[]), Ok(vec![]));
        // Literal new name "" with value "", Huffman-flagged empty value too.
        assert_eq!(decode(&mut d, &[0x40, 0x00, 0x80]), Ok(fields(&[("", "")])));
        assert_eq!(d.table_size(), 32);
    }

    /// Random input must only ever produce errors, never panics; replayed
    /// on one decoder so the dynamic table sees junk as well.
    #[test]
    fn random_blocks_do_not_panic() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut d = Decoder::new(4096);
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode_with_limit(&mut d, &block, 1 << 16);
        }
    }

    // ---- encoder ----

    const GRPC_REQUEST: [(&str, &str); 7] = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/noslated.data.PushServer/invoke"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "11000m"),
    ];

    fn encode_fields(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::new().encode(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut out);
        out
    }

    #[test]
    fn encoder_grpc_request_round_trips() {
        let block = encode_fields(&GRPC_REQUEST);
        // :method POST and :scheme http are fully indexed (3 and 6).
        assert_eq!(&block[..2], &[0x83, 0x86]);
        // :path literal without indexing, name index 4.
        assert_eq!(block[2], 0x04);
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &block), Ok(fields(&GRPC_REQUEST)));
        assert_eq!(d.table_len(), 0, "encoder must not index");
    }

    #[test]
    fn encoder_representations() {
        // Full match: one octet.
        assert_eq!(encode_fields(&[(":status", "200")]), [0x88]);
        // Name match (lowest index for :method) + raw value.
        assert_eq!(encode_fields(&[(":method", "PUT")]), [0x02, 0x03, b'P', b'U', b'T']);
        // Name index above the 4-bit prefix: content-type is 31 = 15 + 16.
        assert_eq!(encode_fields(&[("content-type", "x")])[..3], [0x0f, 0x10, 0x01]);
        // New name.
        assert_eq!(encode_fields(&[("te", "trailers")]), hex("0002 7465 0874 7261 696c 6572 73"));
        // Long value: length needs continuation octets.
        let long = "v".repeat(300);
        let block = encode_fields(&[("x-long", &long)]);
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &block), Ok(fields(&[("x-long", &long)])));
    }

    #[test]
    fn encoder_appends_and_default() {
        let mut out = vec![0xaa];
        let mut encoder = Encoder::default();
        encoder.encode([(&b":method"[..], &b"GET"[..])], &mut out);
        encoder.encode(std::iter::empty(), &mut out);
        assert_eq!(out, [0xaa, 0x82]);
    }
}
