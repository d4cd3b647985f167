//! Fuzz target for the HPACK decoder and Huffman codec.
//!
//! Input layout: one octet choosing the advertised SETTINGS_HEADER_TABLE_SIZE
//! (`octet * 32`, so 8 → 256 and 128 → 4096), then header blocks, each
//! prefixed by a one-octet length. The blocks are decoded in order on one
//! decoder, so the dynamic table carries state from block to block as on a
//! real connection. The decoder may refuse anything but must never panic.
//!
//! Oracles besides "no panic":
//! - every block that decodes is re-encoded with `Encoder` and decoded by a
//!   fresh decoder to the same fields;
//! - the whole input is Huffman-decoded, and Huffman encode → decode of the
//!   input is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noslate_fc::hpack::{huffman, Decoder, Encoder};

/// Generous SETTINGS_MAX_HEADER_LIST_SIZE so most blocks reach the table.
const MAX_LIST_SIZE: usize = 64 * 1024;

/// Scale of the table-size octet; 32 is the per-entry overhead (RFC 7541 §4.1).
const TABLE_SIZE_UNIT: usize = 32;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn collect(decoder: &mut Decoder, block: &[u8], max_list_size: usize) -> Option<Fields> {
    let mut fields = Vec::new();
    decoder
        .decode(block, max_list_size, &mut |name, value| fields.push((name.to_vec(), value.to_vec())))
        .ok()
        .map(|()| fields)
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let _ = huffman::decode(data, &mut scratch);

    let mut coded = Vec::new();
    huffman::encode(data, &mut coded);
    assert_eq!(coded.len(), huffman::encoded_len(data));
    let mut round_trip = Vec::new();
    huffman::decode(&coded, &mut round_trip).expect("own Huffman output decodes");
    assert_eq!(round_trip, data);

    let Some((&table_octet, mut rest)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(usize::from(table_octet) * TABLE_SIZE_UNIT);
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        let Some(fields) = collect(&mut decoder, block, MAX_LIST_SIZE) else {
            // Any error ends the connection (RFC 9113 §4.3).
            return;
        };
        let mut encoded = Vec::new();
        Encoder::new().encode(fields.iter().map(|(name, value)| (&name[..], &value[..])), &mut encoded);
        let again = collect(&mut Decoder::new(4096), &encoded, usize::MAX);
        assert_eq!(again.as_ref(), Some(&fields));
    }
});
