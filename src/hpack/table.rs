//! HPACK indexing tables (RFC 7541 §2.3): the static table of Appendix A
//! and the decoder's dynamic table.
//!
//! The dynamic table owns a copy of every entry inserted by the peer's
//! encoder, newest first, so that index 62 is always the most recent
//! insertion (§2.3.3). Its invariant is `size <= max_size`, where `size` is
//! the sum of the §4.1 entry sizes; insertion and size reduction evict the
//! oldest entries to keep it (§4.3, §4.4).

use std::collections::VecDeque;

/// Per-entry overhead added to name and value lengths when sizing the
/// dynamic table (RFC 7541 §4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

/// Number of entries in the static table (RFC 7541 Appendix A); dynamic
/// indices start right after it (§2.3.3).
pub(crate) const STATIC_TABLE_LEN: usize = 61;

/// RFC 7541 Appendix A, in index order: `STATIC_TABLE[i - 1]` is index `i`.
pub(crate) const STATIC_TABLE: [(&[u8], &[u8]); STATIC_TABLE_LEN] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// How a field matches the static table, for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaticMatch {
    /// Name and value match the entry at this index (§6.1 applies).
    Field(usize),
    /// Only the name matches; this is the lowest such index (§6.2.2 applies).
    Name(usize),
    None,
}

/// Longest name in the static table (`access-control-allow-origin`).
const MAX_STATIC_NAME: usize = 27;

/// For each name length, the static table positions whose name is that
/// long, as a bit set (61 entries fit a `u64`).
const NAMES_BY_LEN: [u64; MAX_STATIC_NAME + 1] = {
    let mut by_len = [0u64; MAX_STATIC_NAME + 1];
    let mut i = 0;
    while i < STATIC_TABLE_LEN {
        by_len[STATIC_TABLE[i].0.len()] |= 1 << i;
        i += 1;
    }
    by_len
};

/// Looks `(name, value)` up in the static table, visiting only the entries
/// whose name has the same length (a few, instead of 61), in index order.
pub(crate) fn find_static(name: &[u8], value: &[u8]) -> StaticMatch {
    let mut found = StaticMatch::None;
    let mut candidates = NAMES_BY_LEN.get(name.len()).copied().unwrap_or(0);
    while candidates != 0 {
        let position = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        let (entry_name, entry_value) = STATIC_TABLE[position];
        if entry_name != name {
            continue;
        }
        let index = position + 1;
        if entry_value == value {
            return StaticMatch::Field(index);
        }
        if found == StaticMatch::None {
            found = StaticMatch::Name(index);
        }
    }
    found
}

/// One dynamic table entry; name and value share one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    pub(crate) fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len().saturating_add(value.len()));
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Entry { bytes: bytes.into_boxed_slice(), name_len: name.len() }
    }

    pub(crate) fn name(&self) -> &[u8] {
        self.bytes.get(..self.name_len).unwrap_or_default()
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.bytes.get(self.name_len..).unwrap_or_default()
    }

    /// Entry size per RFC 7541 §4.1.
    pub(crate) fn size(&self) -> usize {
        self.bytes.len().saturating_add(ENTRY_OVERHEAD)
    }
}

/// The decoder's dynamic table (RFC 7541 §2.3.2), newest entry first.
#[derive(Debug)]
pub(crate) struct DynamicTable {
    entries: VecDeque<Entry>,
    /// Sum of [`Entry::size`] over `entries`.
    size: usize,
    /// Current maximum size, as last set by a §6.3 size update.
    max_size: usize,
}

impl DynamicTable {
    pub(crate) fn new(max_size: usize) -> Self {
        DynamicTable { entries: VecDeque::new(), size: 0, max_size }
    }

    /// Entry by position, 0 being the newest (HPACK index 62).
    pub(crate) fn get(&self, position: usize) -> Option<&Entry> {
        self.entries.get(position)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Applies a dynamic table size update (§4.3, §6.3), evicting as needed.
    pub(crate) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_until_fits(0);
    }

    /// Inserts `entry` as the newest entry (§4.4). An entry larger than the
    /// whole table is not an error: it empties the table and is dropped.
    pub(crate) fn insert(&mut self, entry: Entry) {
        let entry_size = entry.size();
        if entry_size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_until_fits(entry_size);
        self.size += entry_size;
        self.entries.push_front(entry);
    }

    /// Evicts oldest entries until `incoming` more bytes fit (§4.4).
    fn evict_until_fits(&mut self, incoming: usize) {
        while self.size.saturating_add(incoming) > self.max_size {
            match self.entries.pop_back() {
                Some(evicted) => self.size -= evicted.size(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_table_spot_checks_against_appendix_a() {
        assert_eq!(STATIC_TABLE[0], (&b":authority"[..], &b""[..]));
        assert_eq!(STATIC_TABLE[1], (&b":method"[..], &b"GET"[..]));
        assert_eq!(STATIC_TABLE[7], (&b":status"[..], &b"200"[..]));
        assert_eq!(STATIC_TABLE[15], (&b"accept-encoding"[..], &b"gzip, deflate"[..]));
        assert_eq!(STATIC_TABLE[30].0, b"content-type");
        assert_eq!(STATIC_TABLE[45].0, b"location");
        assert_eq!(STATIC_TABLE[54].0, b"set-cookie");
        assert_eq!(STATIC_TABLE[60].0, b"www-authenticate");
        // Names are lower case; only indices 2..=14 and 16 carry values.
        for (position, (name, value)) in STATIC_TABLE.iter().enumerate() {
            let index = position + 1;
            assert!(!name.iter().any(u8::is_ascii_uppercase));
            let has_value = (2..=14).contains(&index) || index == 16;
            assert_eq!(!value.is_empty(), has_value, "index {index}");
        }
    }

    #[test]
    fn find_static_agrees_with_a_plain_scan() {
        let plain = |name: &[u8], value: &[u8]| {
            let full = STATIC_TABLE.iter().position(|&(n, v)| n == name && v == value);
            let named = STATIC_TABLE.iter().position(|&(n, _)| n == name);
            match (full, named) {
                (Some(i), _) => StaticMatch::Field(i + 1),
                (None, Some(i)) => StaticMatch::Name(i + 1),
                (None, None) => StaticMatch::None,
            }
        };
        for &(name, value) in STATIC_TABLE.iter() {
            assert_eq!(find_static(name, value), plain(name, value));
            assert_eq!(find_static(name, b"other"), plain(name, b"other"));
        }
        let long = [b'a'; 100];
        for n in [&b""[..], b"te", b"x-unknown", &long] {
            assert_eq!(find_static(n, b""), plain(n, b""));
        }
    }

    #[test]
    fn find_static_prefers_full_match_then_lowest_name() {
        assert_eq!(find_static(b":method", b"POST"), StaticMatch::Field(3));
        assert_eq!(find_static(b":method", b"PUT"), StaticMatch::Name(2));
        assert_eq!(find_static(b":status", b"200"), StaticMatch::Field(8));
        assert_eq!(find_static(b":authority", b""), StaticMatch::Field(1));
        assert_eq!(find_static(b"content-type", b"x"), StaticMatch::Name(31));
        assert_eq!(find_static(b"te", b"trailers"), StaticMatch::None);
    }

    #[test]
    fn entry_layout() {
        let entry = Entry::new(b"custom-key", b"custom-header");
        assert_eq!(entry.name(), b"custom-key");
        assert_eq!(entry.value(), b"custom-header");
        assert_eq!(entry.size(), 55); // RFC 7541 C.2.1
        let empty = Entry::new(b"", b"");
        assert_eq!((empty.name(), empty.value(), empty.size()), (&b""[..], &b""[..], 32));
    }

    #[test]
    fn insertion_evicts_oldest_and_oversized_entry_empties_table() {
        let mut table = DynamicTable::new(100);
        table.insert(Entry::new(b"a", b"1")); // 34
        table.insert(Entry::new(b"b", b"2")); // 68
        table.insert(Entry::new(b"c", b"3")); // 102 > 100: evicts "a"
        assert_eq!(table.len(), 2);
        assert_eq!(table.size(), 68);
        assert_eq!(table.get(0).unwrap().name(), b"c");
        assert_eq!(table.get(1).unwrap().name(), b"b");
        assert!(table.get(2).is_none());

        table.insert(Entry::new(&[b'x'; 60], b"")); // 92: evicts both others
        assert_eq!(table.len(), 1);
        assert_eq!(table.size(), 92);

        table.insert(Entry::new(&[b'x'; 69], b"")); // 101 > 100
        assert_eq!(table.len(), 0);
        assert_eq!(table.size(), 0);
    }

    #[test]
    fn size_update_evicts_and_zero_clears() {
        let mut table = DynamicTable::new(4096);
        for name in [b"a", b"b", b"c"] {
            table.insert(Entry::new(name, b""));
        }
        table.set_max_size(70);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(1).unwrap().name(), b"b");
        table.set_max_size(0);
        assert_eq!((table.len(), table.size(), table.max_size()), (0, 0, 0));
        table.insert(Entry::new(b"", b""));
        assert_eq!(table.len(), 0);
    }
}
