//! Reusable buffers, so that the steady state allocates nothing.
//!
//! Received bytes are handed on as `Bytes` slices of the buffer they were
//! read into (zero-copy), so a buffer is busy until the last of its slices
//! is written and dropped. Instead of allocating a new buffer meanwhile, a
//! busy buffer is parked in a [`BufPool`] and taken back, whole, once it is
//! free again (`BytesMut::try_reclaim`): the allocation cycles, it is not
//! repeated. A pool keeps at most `max` buffers, the most recently parked;
//! an older one is simply dropped (freed when its last slice goes).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Parked buffers larger than this are not kept (a rare large read).
const MAX_KEPT_CAPACITY: usize = 1 << 20;

/// Asks below this may take a parked buffer of up to twice this size.
const MIN_FIT: usize = 4096;

pub struct BufPool {
    spare: VecDeque<BytesMut>,
    max: usize,
}

impl BufPool {
    pub fn new(max: usize) -> BufPool {
        BufPool { spare: VecDeque::with_capacity(max), max }
    }

    /// An empty buffer with room for at least `want` bytes: a parked one
    /// that is free again if there is one (and not more than twice as
    /// large: a small ask must not pin a large buffer), else a new one.
    pub fn take(&mut self, want: usize) -> BytesMut {
        // Oldest first: the longest parked is the likeliest to be free.
        for _ in 0..self.spare.len() {
            let Some(mut buf) = self.spare.pop_front() else { break };
            if buf.try_reclaim(want) && buf.capacity() <= 2 * want.max(MIN_FIT) {
                return buf;
            }
            self.spare.push_back(buf);
        }
        BytesMut::with_capacity(want)
    }

    /// Park a buffer whose bytes are no longer needed here (its slices may
    /// still be in flight elsewhere). A full pool lets its oldest go, so
    /// what it keeps follows the sizes asked for now.
    pub fn put(&mut self, mut buf: BytesMut) {
        buf.clear();
        if !has_storage(&buf) || buf.capacity() > MAX_KEPT_CAPACITY || self.max == 0 {
            return;
        }
        if self.spare.len() == self.max {
            self.spare.pop_front();
        }
        self.spare.push_back(buf);
    }

    /// Let go of a read buffer that holds nothing more: one of its own is
    /// parked, one `carved` from a [`Scratch`] arena is simply dropped
    /// (parked slices of one arena buffer would keep each other from ever
    /// being free). `buf` is left empty, without storage.
    pub fn release(&mut self, buf: &mut BytesMut, carved: &mut bool) {
        let buf = std::mem::take(buf);
        if !std::mem::take(carved) {
            self.put(buf);
        }
    }

    /// Make room for `want` more bytes in `buf`, keeping what it holds:
    /// in place if it is free, else in a buffer of at least `size` bytes
    /// from the pool (the bytes held — a partial frame or chunk line — are
    /// copied over and `buf`'s old storage is parked). Asking for the same
    /// `size` each time lets parked buffers fit the next request.
    pub fn refill(&mut self, buf: &mut BytesMut, want: usize, size: usize) {
        if buf.try_reclaim(want) {
            return;
        }
        let old = self.move_to_fresh(buf, want, size);
        self.put(old);
    }

    /// [`BufPool::refill`] for a read buffer that may be `carved` from a
    /// [`Scratch`] arena: that one moves to a buffer of its own and is not
    /// parked (see [`BufPool::release`]).
    pub fn refill_read(&mut self, buf: &mut BytesMut, carved: &mut bool, want: usize, size: usize) {
        if std::mem::take(carved) {
            self.move_to_fresh(buf, want, size);
        } else {
            self.refill(buf, want, size);
        }
    }

    /// Move what `buf` holds into a buffer of at least `size` bytes with room
    /// for `want` more; the old storage is returned.
    fn move_to_fresh(&mut self, buf: &mut BytesMut, want: usize, size: usize) -> BytesMut {
        let mut fresh = self.take(size.max(buf.len() + want));
        fresh.extend_from_slice(buf);
        std::mem::replace(buf, fresh)
    }

    pub fn len(&self) -> usize {
        self.spare.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spare.is_empty()
    }
}

/// Whether `buf` has storage to reuse: `BytesMut::new()` (what a parked
/// buffer leaves behind) has none, and parking it would only push out a
/// real one. A used-up view (no room left) still has its storage.
fn has_storage(buf: &BytesMut) -> bool {
    buf.capacity() > 0 || buf.as_ptr() != BytesMut::new().as_ptr()
}

impl Default for BufPool {
    fn default() -> BufPool {
        BufPool::new(8)
    }
}

/// Small owned heads (chunk-size lines, gRPC prefixes, response heads,
/// request heads) are carved out of one scratch buffer: a refcount per head
/// instead of an allocation per head. A full buffer is parked and taken
/// back once its heads are gone.
#[derive(Default)]
pub struct Scratch {
    buf: BytesMut,
    vec: Vec<u8>,
    chunks: BufPool,
}

/// Scratch buffers are at least this large, so small heads share one.
const SCRATCH_CHUNK: usize = 4096;

impl Scratch {
    pub fn bytes(&mut self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.reserve(len);
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.split().freeze()
    }

    /// `bytes` copied into the arena as a `BytesMut` of exactly their
    /// length (it grows, if ever, into storage of its own).
    pub fn carve(&mut self, bytes: &[u8]) -> BytesMut {
        self.reserve(bytes.len());
        self.buf.extend_from_slice(bytes);
        self.buf.split()
    }

    /// Make room for `n` more bytes.
    pub fn reserve(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n {
            self.chunks.refill(&mut self.buf, n, n.max(SCRATCH_CHUNK).next_power_of_two());
        }
    }

    /// The buffer to write a head into; [`Scratch::take`] hands it out.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes an encoder writes into a `Vec` (kept, with its capacity, for
    /// the next one), copied out as a scratch head: a copy of a small head
    /// instead of an allocation.
    pub fn encoded(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let mut vec = std::mem::take(&mut self.vec);
        vec.clear();
        encode(&mut vec);
        let bytes = self.bytes(&[&vec]);
        self.vec = vec;
        bytes
    }

    /// What was written into [`Scratch::buf`] since the last take.
    pub fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_buffer_comes_back_once_its_slices_are_gone() {
        let mut pool = BufPool::new(4);
        let mut buf = pool.take(1024);
        buf.extend_from_slice(b"head and body");
        let slice = buf.split_to(4).freeze();
        let first = buf.as_ptr();
        pool.put(buf);
        // Still referenced: a new buffer.
        let other = pool.take(1024);
        assert_ne!(other.as_ptr(), first);
        drop(slice);
        // Free again: the same storage, from its start.
        let again = pool.take(1024);
        assert!(again.capacity() >= 1024 && again.is_empty());
        assert_eq!(again.as_ptr(), first.wrapping_sub(4));
    }

    #[test]
    fn a_small_ask_does_not_take_a_large_buffer() {
        let mut pool = BufPool::new(4);
        pool.put(BytesMut::with_capacity(64 * 1024));
        assert_eq!(pool.take(4096).capacity(), 4096, "a new small buffer");
        assert_eq!(pool.len(), 1);
        assert!(pool.take(40 * 1024).capacity() >= 64 * 1024, "the parked one fits this ask");
        assert!(pool.is_empty());
    }

    #[test]
    fn refill_keeps_the_bytes_held() {
        let mut pool = BufPool::new(4);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(b"0123456789abcdef");
        let busy = buf.split_to(10).freeze();
        pool.refill(&mut buf, 64, 128);
        assert_eq!(&buf[..], b"abcdef");
        assert!(buf.capacity() - buf.len() >= 64 && buf.capacity() >= 128);
        assert_eq!(pool.len(), 1);
        assert_eq!(&busy[..], b"0123456789");
    }

    #[test]
    fn the_pool_is_bounded_and_keeps_the_newest() {
        let mut pool = BufPool::new(2);
        let held: Vec<Bytes> = (0..4)
            .map(|_| {
                let mut b = BytesMut::with_capacity(8);
                b.extend_from_slice(b"x");
                let s = b.split().freeze();
                pool.put(b);
                s
            })
            .collect();
        assert_eq!((pool.len(), held.len()), (2, 4));
        // The two kept are the last two parked.
        drop(held);
        let a = pool.take(8);
        let b = pool.take(8);
        assert!(a.capacity() >= 8 && b.capacity() >= 8 && pool.is_empty());
    }

    #[test]
    fn nothing_is_parked_for_a_buffer_without_storage() {
        let mut pool = BufPool::new(2);
        pool.put(BytesMut::new());
        pool.put(std::mem::take(&mut BytesMut::new()));
        assert!(pool.is_empty());
        // A used-up view keeps its storage: it is parked.
        let mut b = BytesMut::with_capacity(8);
        b.extend_from_slice(&[1; 8]);
        let all = b.split().freeze();
        assert_eq!(b.capacity(), 0);
        pool.put(b);
        assert_eq!(pool.len(), 1);
        drop(all);
        assert!(pool.take(8).capacity() >= 8);
    }

    #[test]
    fn scratch_heads_are_independent() {
        let mut s = Scratch::default();
        let a = s.bytes(&[b"12", b"\r\n"]);
        let b = s.bytes(&[b"ff"]);
        assert_eq!((&a[..], &b[..]), (&b"12\r\n"[..], &b"ff"[..]));
    }

    #[test]
    fn carved_buffers_are_exact_and_never_parked() {
        let mut s = Scratch::default();
        let mut pool = BufPool::new(4);
        let mut a = s.carve(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!((a.len(), a.capacity()), (18, 18));
        let mut carved = true;
        pool.release(&mut a, &mut carved);
        assert!(pool.is_empty() && !carved && a.capacity() == 0);
        // A buffer of its own is parked.
        let mut own = pool.take(64);
        pool.release(&mut own, &mut carved);
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn scratch_reuses_its_chunks() {
        let mut s = Scratch::default();
        let first = s.bytes(&[&[0u8; SCRATCH_CHUNK]]);
        let ptr = first.as_ptr();
        drop(first);
        // The chunk is full and free: taken back rather than reallocated.
        let second = s.bytes(&[&[1u8; SCRATCH_CHUNK]]);
        assert_eq!(second.as_ptr(), ptr);
    }
}
