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
    /// within [`MAX_INTEGER`] needs (zero-padded, §5.1).
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
            DecoderError::SizeUpdateNotAtStart => {
                f.write_str("HPACK table size update after a header field")
            }
            DecoderError::HeaderListTooLarge => f.write_str("header list exceeds the maximum size"),
            DecoderError::InvalidRepresentation => {
                f.write_str("HPACK integer has superfluous continuation octets")
            }
        }
    }
}

impl std::error::Error for DecoderError {}

/// First-octet patterns of the representations (RFC 7541 §6), as
/// (mask, pattern, prefix bits of the integer that follows).
const INDEXED: (u8, u8, u8) = (0x80, 0x80, 7); // §6.1
const LITERAL_INCREMENTAL_INDEXING: (u8, u8, u8) = (0xc0, 0x40, 6); // §6.2.1
const TABLE_SIZE_UPDATE: (u8, u8, u8) = (0xe0, 0x20, 5); // §6.3
const LITERAL_NEVER_INDEXED: (u8, u8, u8) = (0xf0, 0x10, 4); // §6.2.3
const LITERAL_WITHOUT_INDEXING: (u8, u8, u8) = (0xf0, 0x00, 4); // §6.2.2

/// Huffman flag of a string literal's first octet (§5.2).
const HUFFMAN_FLAG: u8 = 0x80;
/// Prefix bits of a string literal's length (§5.2).
const STRING_LENGTH_PREFIX: u8 = 7;

/// Reads an integer with an N-bit prefix (§5.1), advancing `input`.
fn decode_integer(input: &mut &[u8], prefix_bits: u8) -> Result<usize, DecoderError> {
    let (&first, mut rest) = input.split_first().ok_or(DecoderError::NeedMore)?;
    let prefix_max = (1u8 << prefix_bits) - 1;
    let mut value = u64::from(first & prefix_max);
    if value < u64::from(prefix_max) {
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
fn encode_integer(value: usize, prefix_bits: u8, flags: u8, dst: &mut Vec<u8>) {
    let prefix_max = (1u8 << prefix_bits) - 1;
    if value < usize::from(prefix_max) {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | prefix_max);
    let mut rest = value - usize::from(prefix_max);
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
fn decode_string<'b>(
    input: &mut &'b [u8],
    scratch: &mut Vec<u8>,
) -> Result<Literal<'b>, DecoderError> {
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
        let Decoder {
            table,
            max_table_size,
            name_scratch,
            value_scratch,
        } = self;
        let mut input = block;
        let mut list_size: usize = 0;
        // §4.2: size updates are only allowed before the first field.
        let mut at_block_start = true;

        while let Some(&first) = input.first() {
            if first & TABLE_SIZE_UPDATE.0 == TABLE_SIZE_UPDATE.1 {
                if !at_block_start {
                    return Err(DecoderError::SizeUpdateNotAtStart);
                }
                let new_size = decode_integer(&mut input, TABLE_SIZE_UPDATE.2)?;
                if new_size > *max_table_size {
                    return Err(DecoderError::InvalidTableSizeUpdate);
                }
                table.set_max_size(new_size);
                continue;
            }
            at_block_start = false;

            if first & INDEXED.0 == INDEXED.1 {
                let index = decode_integer(&mut input, INDEXED.2)?;
                let (name, value) = lookup(table, index)?;
                account(&mut list_size, name, value, max_list_size)?;
                emit(name, value);
                continue;
            }

            let (prefix_bits, indexing) =
                if first & LITERAL_INCREMENTAL_INDEXING.0 == LITERAL_INCREMENTAL_INDEXING.1 {
                    (LITERAL_INCREMENTAL_INDEXING.2, true)
                } else {
                    // Never-indexed only matters to intermediaries that
                    // re-encode with HPACK (§7.1.3); we forward over HTTP/1.1.
                    debug_assert!(
                        first & LITERAL_NEVER_INDEXED.0 == LITERAL_NEVER_INDEXED.1
                            || first & LITERAL_WITHOUT_INDEXING.0 == LITERAL_WITHOUT_INDEXING.1
                    );
                    (LITERAL_WITHOUT_INDEXING.2, false)
                };
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
                NameSource::Dynamic(position) => table
                    .get(position)
                    .map(Entry::name)
                    .ok_or(DecoderError::InvalidIndex(name_index))?,
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
fn account(
    list_size: &mut usize,
    name: &[u8],
    value: &[u8],
    max_list_size: usize,
) -> Result<(), DecoderError> {
    let field_size = name
        .len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD);
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
    pub fn encode<'a, I: IntoIterator<Item = (&'a [u8], &'a [u8])>>(
        &mut self,
        fields: I,
        dst: &mut Vec<u8>,
    ) {
        for (name, value) in fields {
            match table::find_static(name, value) {
                StaticMatch::Field(index) => encode_integer(index, INDEXED.2, INDEXED.1, dst),
                StaticMatch::Name(index) => {
                    encode_integer(
                        index,
                        LITERAL_WITHOUT_INDEXING.2,
                        LITERAL_WITHOUT_INDEXING.1,
                        dst,
                    );
                    encode_string(value, dst);
                }
                StaticMatch::None => {
                    encode_integer(0, LITERAL_WITHOUT_INDEXING.2, LITERAL_WITHOUT_INDEXING.1, dst);
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

