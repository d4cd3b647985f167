//! HPACK Huffman coding of string literals (RFC 7541 §5.2, Appendix B).
//!
//! The canonical code of Appendix B is kept as one table of `(code, length)`
//! pairs, `CODES`. Everything else is derived from it at compile time:
//! a binary code tree and, from that tree, a decoding state machine that
//! consumes four input bits per step. A state is an internal node of the
//! tree (the code is complete, so 257 leaves give exactly 256 internal
//! nodes and a state fits in a `u8`); since the shortest code is 5 bits, a
//! nibble completes at most one symbol, so one table entry holds at most one
//! output byte.
//!
//! Invariants enforced by the decoder (§5.2): the padding after the last
//! symbol is the most significant bits of EOS (all ones) and at most 7 bits
//! long, and EOS itself never appears inside the string. Either violation is
//! [`DecoderError::InvalidHuffman`].

use super::DecoderError;

/// Number of symbols in the code: the 256 byte values plus EOS (Appendix B).
const SYMBOL_COUNT: usize = 257;

/// The end-of-string symbol (Appendix B, last row); it must never be decoded.
const EOS: u16 = 256;

/// Longest padding a valid encoding may carry (RFC 7541 §5.2: "padding
/// strictly longer than 7 bits MUST be treated as a decoding error").
const MAX_PADDING_BITS: usize = 7;

/// Internal nodes of the code tree; the code is complete (its Kraft sum is
/// exactly one, checked by a test), so a binary tree with 257 leaves has 256.
const NODE_COUNT: usize = SYMBOL_COUNT - 1;

/// The Huffman code of RFC 7541 Appendix B: `CODES[symbol] = (code, bit
/// length)`, with the code right-aligned ("code as hex aligned to LSB").
/// Transcribed row by row; the tests check that it is the canonical code
/// its lengths define, that it is complete, and the Appendix C examples.
#[rustfmt::skip]
pub(crate) const CODES: [(u32, u8); SYMBOL_COUNT] = [
    // 0..=31: control characters
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    // 32..=47: ' ' ! " # $ % & ' ( ) * + , - . /
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    // 48..=63: 0-9 : ; < = > ?
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    // 64..=95: @ A-Z [ \ ] ^ _
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    // 96..=127: ` a-z { | } ~ DEL
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    // 128..=159
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    // 160..=191
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    // 192..=223
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    // 224..=255
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    // 256: EOS
    (0x3fffffff, 30),
];

/// Marks a tree child as a leaf; the low bits hold the symbol. Internal
/// children hold a node index (< 256), and 0 means "no child yet" (the root
/// is nobody's child).
const LEAF: u16 = 0x8000;

/// The code tree: `TREE[node][bit]` is the child reached by `bit`.
/// Built at compile time; a malformed [`CODES`] (a code that is a prefix of
/// another, or an incomplete code) fails the build instead of the decoder.
const TREE: [[u16; 2]; NODE_COUNT] = build_tree();

const fn build_tree() -> [[u16; 2]; NODE_COUNT] {
    let mut tree = [[0u16; 2]; NODE_COUNT];
    let mut allocated = 1; // node 0 is the root
    let mut symbol = 0;
    while symbol < SYMBOL_COUNT {
        let (code, len) = CODES[symbol];
        let mut node = 0;
        let mut bit = len;
        while bit > 1 {
            bit -= 1;
            let branch = ((code >> bit) & 1) as usize;
            let child = tree[node][branch];
            if child == 0 {
                assert!(allocated < NODE_COUNT, "Huffman code is not prefix-free");
                tree[node][branch] = allocated as u16;
                node = allocated;
                allocated += 1;
            } else {
                assert!(child & LEAF == 0, "Huffman code is not prefix-free");
                node = child as usize;
            }
        }
        let branch = (code & 1) as usize;
        assert!(tree[node][branch] == 0, "Huffman code is not prefix-free");
        tree[node][branch] = LEAF | symbol as u16;
        symbol += 1;
    }
    // Complete code: every internal node has both children.
    let mut node = 0;
    while node < NODE_COUNT {
        assert!(tree[node][0] != 0 && tree[node][1] != 0, "Huffman code is incomplete");
        node += 1;
    }
    tree
}

/// One step of the decoding state machine: the state reached after four
/// bits, and the symbol completed on the way, if any.
#[derive(Clone, Copy)]
struct Step {
    next: u8,
    symbol: u8,
    flags: u8,
}

/// `Step::flags`: a symbol was completed; `Step::symbol` is valid.
const EMITS: u8 = 1;
/// `Step::flags`: the bits spell EOS, which may not appear in a string (§5.2).
const FAILS: u8 = 2;

/// `STEPS[state][nibble]`, most significant bit of the nibble first.
const STEPS: [[Step; 16]; NODE_COUNT] = build_steps();

const fn build_steps() -> [[Step; 16]; NODE_COUNT] {
    let mut steps = [[Step { next: 0, symbol: 0, flags: 0 }; 16]; NODE_COUNT];
    let mut state = 0;
    while state < NODE_COUNT {
        let mut nibble = 0;
        while nibble < 16 {
            let mut node = state;
            let mut step = Step { next: 0, symbol: 0, flags: 0 };
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = TREE[node][(nibble >> bit) & 1];
                if child & LEAF == 0 {
                    node = child as usize;
                } else if child & !LEAF == EOS {
                    step.flags |= FAILS;
                    node = 0;
                    break;
                } else {
                    step.flags |= EMITS;
                    step.symbol = (child & 0xff) as u8;
                    node = 0;
                }
            }
            step.next = node as u8;
            steps[state][nibble] = step;
            nibble += 1;
        }
        state += 1;
    }
    steps
}

/// `ACCEPTING[state]`: the input may end in this state, i.e. the bits since
/// the last symbol are a prefix of EOS (all ones) of at most 7 bits (§5.2).
const ACCEPTING: [bool; NODE_COUNT] = build_accepting();

const fn build_accepting() -> [bool; NODE_COUNT] {
    let mut accepting = [false; NODE_COUNT];
    accepting[0] = true;
    let mut node = 0;
    let mut depth = 0;
    while depth < MAX_PADDING_BITS {
        // EOS is 30 one-bits, so the first 7 steps along it are internal.
        node = TREE[node][1] as usize;
        accepting[node] = true;
        depth += 1;
    }
    accepting
}

/// Decodes the Huffman-coded string `src`, appending the bytes to `dst`.
///
/// On error `dst` may hold a partial result; callers discard it.
pub fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), DecoderError> {
    // The shortest code is 5 bits, so the output is at most 8/5 of the input.
    dst.reserve(src.len().saturating_mul(8) / 5);
    let mut state = 0u8;
    for &byte in src {
        state = advance(state, byte >> 4, dst)?;
        state = advance(state, byte & 0x0f, dst)?;
    }
    if ACCEPTING[usize::from(state)] {
        Ok(())
    } else {
        Err(DecoderError::InvalidHuffman)
    }
}

/// Feeds one nibble to the state machine.
#[inline(always)]
fn advance(state: u8, nibble: u8, dst: &mut Vec<u8>) -> Result<u8, DecoderError> {
    let step = STEPS[usize::from(state)][usize::from(nibble & 0x0f)];
    if step.flags != 0 {
        if step.flags & FAILS != 0 {
            return Err(DecoderError::InvalidHuffman);
        }
        dst.push(step.symbol);
    }
    Ok(step.next)
}

/// Appends the Huffman coding of `src` to `dst`, padded with the most
/// significant bits of EOS (§5.2).
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(encoded_len(src));
    // At most 7 pending bits plus one 30-bit code: fits in a u64.
    let mut pending: u64 = 0;
    let mut pending_bits: u32 = 0;
    for &byte in src {
        let (code, len) = CODES[usize::from(byte)];
        pending = (pending << len) | u64::from(code);
        pending_bits += u32::from(len);
        while pending_bits >= 8 {
            pending_bits -= 8;
            dst.push((pending >> pending_bits) as u8);
        }
        pending &= (1 << pending_bits) - 1;
    }
    if pending_bits > 0 {
        let pad = 8 - pending_bits;
        dst.push(((pending << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// Length in bytes of the Huffman coding of `src`, padding included.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&byte| usize::from(CODES[usize::from(byte)].1)).sum();
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn decoded(src: &[u8]) -> Result<Vec<u8>, DecoderError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    /// Appendix B is a canonical code: sorting symbols by (length, symbol),
    /// each code is the previous one plus one, shifted left by the length
    /// difference. Any transcription slip in a code or a length breaks this.
    #[test]
    fn table_is_the_canonical_code_of_its_lengths() {
        let mut order: Vec<usize> = (0..SYMBOL_COUNT).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut expected: u64 = 0;
        let mut previous_len = CODES[order[0]].1;
        for (i, &symbol) in order.iter().enumerate() {
            let (code, len) = CODES[symbol];
            if i > 0 {
                expected = (expected + 1) << (len - previous_len);
            }
            assert_eq!(u64::from(code), expected, "symbol {symbol}");
            assert!(u64::from(code) < 1 << len, "symbol {symbol} code wider than its length");
            previous_len = len;
        }
        // The last code is all ones: the code is complete (Kraft sum 1).
        let (eos_code, eos_len) = CODES[usize::from(EOS)];
        assert_eq!(u64::from(eos_code), (1u64 << eos_len) - 1);
    }

    #[test]
    fn kraft_sum_is_exactly_one() {
        let sum: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(sum, 1 << 30);
    }

    #[test]
    fn lengths_per_rfc_spot_checks() {
        assert_eq!(CODES[usize::from(b'a')], (0x3, 5));
        assert_eq!(CODES[usize::from(b'0')], (0x0, 5));
        assert_eq!(CODES[usize::from(b' ')], (0x14, 6));
        assert_eq!(CODES[usize::from(b'\\')], (0x7fff0, 19));
        assert_eq!(CODES[255], (0x3ffffee, 26));
        assert_eq!(CODES[10], (0x3ffffffc, 30));
    }

    /// RFC 7541 Appendix C.4 and C.6 Huffman strings.
    const RFC_STRINGS: [(&str, &str); 10] = [
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("307", "640e ff"),
        ("private", "aec3 771a 4b"),
        ("Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
        ("https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"),
        ("gzip", "9bd9 ab"),
    ];

    #[test]
    fn rfc_examples_encode_and_decode() {
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let cookie_hex = "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 \
                          ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07";
        for (plain, coded) in RFC_STRINGS.iter().copied().chain([(cookie, cookie_hex)]) {
            let coded = hex(coded);
            let mut out = Vec::new();
            encode(plain.as_bytes(), &mut out);
            assert_eq!(out, coded, "encode {plain:?}");
            assert_eq!(encoded_len(plain.as_bytes()), coded.len());
            assert_eq!(decoded(&coded).unwrap(), plain.as_bytes(), "decode {plain:?}");
        }
    }

    #[test]
    fn every_byte_round_trips_alone_and_together() {
        let all: Vec<u8> = (0..=255).collect();
        for &byte in &all {
            let mut coded = Vec::new();
            encode(&[byte], &mut coded);
            assert_eq!(decoded(&coded).unwrap(), [byte]);
        }
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        assert_eq!(coded.len(), encoded_len(&all));
        assert_eq!(decoded(&coded).unwrap(), all);
    }

    #[test]
    fn random_strings_round_trip() {
        // xorshift: deterministic, no dependency.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let plain: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut coded = Vec::new();
            encode(&plain, &mut coded);
            assert_eq!(coded.len(), encoded_len(&plain));
            assert_eq!(decoded(&coded).unwrap(), plain);
        }
    }

    #[test]
    fn empty_string() {
        assert_eq!(decoded(&[]).unwrap(), b"");
        let mut out = Vec::new();
        encode(b"", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn padding_must_be_ones() {
        // 'a' = 00011, then padding 000 instead of 111.
        assert_eq!(decoded(&[0b0001_1000]), Err(DecoderError::InvalidHuffman));
        assert_eq!(decoded(&[0b0001_1111]).unwrap(), b"a");
        // Partially-ones padding.
        assert_eq!(decoded(&[0b0001_1101]), Err(DecoderError::InvalidHuffman));
    }

    #[test]
    fn padding_longer_than_seven_bits_is_rejected() {
        // A whole byte of ones is 8 bits of padding.
        assert_eq!(decoded(&[0xff]), Err(DecoderError::InvalidHuffman));
        // 'a' (5 bits) followed by 11 one-bits.
        assert_eq!(decoded(&[0b0001_1111, 0xff]), Err(DecoderError::InvalidHuffman));
        // '0' (5 bits) followed by 11 one-bits spanning two bytes.
        assert_eq!(decoded(&[0b0000_0111, 0b1111_1111]), Err(DecoderError::InvalidHuffman));
    }

    #[test]
    fn truncated_symbol_is_rejected() {
        // First byte of a 13-bit code that is not all ones ('\0' = 1ff8).
        assert_eq!(decoded(&[0xff, 0xc0]), Err(DecoderError::InvalidHuffman));
    }

    #[test]
    fn eos_in_string_is_rejected() {
        // EOS (30 ones) padded with two ones.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(DecoderError::InvalidHuffman));
        // 'a' then EOS then padding.
        let mut bits: u64 = 0b00011;
        bits = (bits << 30) | 0x3fff_ffff;
        bits = (bits << 5) | 0b11111; // total 40 bits
        let bytes = bits.to_be_bytes();
        assert_eq!(decoded(&bytes[3..]), Err(DecoderError::InvalidHuffman));
    }

    #[test]
    fn go_fuzz_regression() {
        assert_eq!(decoded(b"00\x91\xff\xff\xff\xff\xc8"), Err(DecoderError::InvalidHuffman));
    }
}
