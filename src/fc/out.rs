//! Output storage shared by the FC core and the event loop: the queue of
//! segments waiting for a client socket (and, from `crate::pool`, the
//! scratch buffer that small owned heads are carved from).
//!
//! Sans-IO: [`OutQueue::write_to`] takes any `Write` (the loop hands it the
//! socket, tests a `Vec`). Invariants: `len` is the sum of the queued
//! segments' lengths, and no empty segment is ever queued.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

pub use crate::pool::Scratch;

/// Largest number of segments handed to one `writev`.
pub const MAX_IOVECS: usize = 64;

/// Segments waiting to be written to a socket: small owned heads interleaved
/// with slices of read buffers, written with `writev`.
#[derive(Default)]
pub struct OutQueue {
    segs: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.segs.push_back(b);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The queued segments, in order (tests and fuzz targets read them).
    pub fn segments(&self) -> impl Iterator<Item = &Bytes> {
        self.segs.iter()
    }

    /// Write as much as the socket takes. Ok(true) when everything was written.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while self.len > 0 {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.segs.iter().take(MAX_IOVECS).zip(iov.iter_mut()).map(|(s, v)| *v = IoSlice::new(s)).count();
            match w.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    self.len -= written;
                    while written > 0 {
                        let Some(front) = self.segs.front_mut() else { break };
                        if written >= front.len() {
                            written -= front.len();
                            self.segs.pop_front();
                        } else {
                            let _ = front.split_to(written);
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub fn clear(&mut self) {
        self.segs.clear();
        self.len = 0;
    }
}

/// A borrowed header field: name and value.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// Header fields gathered in one pass: on the stack, or all moved to the
/// heap (in order) once there are more than `N`.
pub struct Fields<'a, const N: usize> {
    inline: [Field<'a>; N],
    len: usize,
    spilled: Vec<Field<'a>>,
}

impl<'a, const N: usize> Fields<'a, N> {
    pub fn new() -> Self {
        Fields { inline: [(&[], &[]); N], len: 0, spilled: Vec::new() }
    }

    pub fn push(&mut self, field: Field<'a>) {
        if self.len < N {
            self.inline[self.len] = field;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline);
            }
            self.spilled.push(field);
        }
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[Field<'a>] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl<const N: usize> Default for Fields<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.step == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queue_writes_in_order_at_every_step() {
        for step in 1..=12 {
            let mut q = OutQueue::default();
            q.push(Bytes::from_static(b"abc"));
            q.push(Bytes::new());
            q.push(Bytes::from_static(b"defgh"));
            assert_eq!((q.len(), q.segments().count()), (8, 2));
            let mut w = Trickle { got: Vec::new(), step };
            assert!(q.write_to(&mut w).unwrap());
            assert_eq!(w.got, b"abcdefgh");
            assert!(q.is_empty());
        }
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"x"));
        assert!(!q.write_to(&mut Trickle { got: Vec::new(), step: 0 }).unwrap());
        assert_eq!(q.len(), 1);
    }

    /// Fails with `kind` on the first `fails` calls, then takes everything;
    /// panics past 100 calls (an error retried for ever).
    struct Failing {
        kind: io::ErrorKind,
        fails: usize,
        calls: usize,
        got: Vec<u8>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            assert!(self.calls < 100, "{:?} retried for ever", self.kind);
            if self.calls <= self.fails {
                return Err(self.kind.into());
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn interrupted_is_retried_other_errors_are_returned() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        let mut w = Failing { kind: io::ErrorKind::Interrupted, fails: 2, calls: 0, got: Vec::new() };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!((w.got.as_slice(), q.is_empty()), (&b"abc"[..], true));
        q.push(Bytes::from_static(b"def"));
        let mut w = Failing { kind: io::ErrorKind::BrokenPipe, fails: usize::MAX, calls: 0, got: Vec::new() };
        assert_eq!(q.write_to(&mut w).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert!(!q.is_empty(), "nothing was written");
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn clear_drops_what_is_queued() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"stale"));
        q.clear();
        assert_eq!((q.len(), q.is_empty(), q.segments().count()), (0, true, 0));
        let mut w = Trickle { got: Vec::new(), step: 64 };
        assert!(q.write_to(&mut w).unwrap());
        assert!(w.got.is_empty(), "nothing queued before the clear may go out");
    }

    #[test]
    fn fields_spill_past_the_stack() {
        let mut fields: Fields<'_, 2> = Fields::new();
        fields.push((b"a", b"1"));
        fields.push((b"b", b"2"));
        assert_eq!(fields.as_slice().len(), 2);
        assert!(fields.spilled.is_empty());
        fields.push((b"n", b"v"));
        assert_eq!(fields.spilled.len(), 3);
        assert_eq!(fields.as_slice()[2], (&b"n"[..], &b"v"[..]));
        assert_eq!(fields.as_slice()[0], (&b"a"[..], &b"1"[..]));
    }
}
