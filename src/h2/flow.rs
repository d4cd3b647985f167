//! Flow-control windows (RFC 9113 §5.2, §6.9).
//!
//! Windows are signed: a SETTINGS_INITIAL_WINDOW_SIZE decrease can push a
//! send window below zero (§6.9.2), and the sender must then wait until
//! WINDOW_UPDATEs bring it back above zero. No window may ever exceed
//! 2^31-1 (§6.9.1).
//!
//! The receive side never credits the peer on its own: bytes are credited
//! when the consumer releases them, and a WINDOW_UPDATE is due only once at
//! least half of the window has been released, so a steady stream costs one
//! WINDOW_UPDATE per half window rather than one per DATA frame.

use super::frame::MAX_WINDOW_SIZE;

/// A window increment or settings change would take a window past 2^31-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOverflow;

/// How much we may still send (on one stream or on the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWindow {
    available: i64,
}

impl SendWindow {
    pub fn new(initial: u32) -> SendWindow {
        SendWindow { available: i64::from(initial) }
    }

    /// May be zero or negative.
    pub fn available(&self) -> i64 {
        self.available
    }

    /// Octets usable now: zero when the window is closed or negative.
    pub fn usable(&self) -> usize {
        usize::try_from(self.available.max(0)).unwrap_or(usize::MAX)
    }

    /// A WINDOW_UPDATE from the peer (§6.9.1).
    pub fn increase(&mut self, increment: u32) -> Result<(), WindowOverflow> {
        self.adjust(i64::from(increment))
    }

    /// A change of SETTINGS_INITIAL_WINDOW_SIZE by `delta` (§6.9.2).
    pub fn adjust(&mut self, delta: i64) -> Result<(), WindowOverflow> {
        let next = self.available + delta;
        if next > i64::from(MAX_WINDOW_SIZE) {
            return Err(WindowOverflow);
        }
        self.available = next;
        Ok(())
    }

    /// We sent `n` octets of DATA payload (padding included).
    pub fn consume(&mut self, n: usize) {
        self.available -= n as i64;
    }
}

/// The peer exceeded the window we granted (§6.9.1: FLOW_CONTROL_ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowExceeded;

/// What the peer may still send us, and the credit we owe it.
///
/// Invariant: `window + unreleased + unannounced == target`, where `window`
/// is the credit the peer has, `unreleased` the octets received and not yet
/// consumed, and `unannounced` the consumed octets not yet returned with a
/// WINDOW_UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvWindow {
    target: u32,
    window: i64,
    unreleased: u32,
    unannounced: u32,
}

impl RecvWindow {
    /// The peer starts with `target` octets of credit.
    pub fn new(target: u32) -> RecvWindow {
        let target = target.min(MAX_WINDOW_SIZE);
        RecvWindow { target, window: i64::from(target), unreleased: 0, unannounced: 0 }
    }

    /// Credit the peer still has.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Octets received but not yet released.
    pub fn unreleased(&self) -> u32 {
        self.unreleased
    }

    /// The peer sent a DATA frame of `flow_len` octets (padding included).
    pub fn receive(&mut self, flow_len: u32) -> Result<(), WindowExceeded> {
        if i64::from(flow_len) > self.window {
            return Err(WindowExceeded);
        }
        self.window -= i64::from(flow_len);
        self.unreleased += flow_len;
        Ok(())
    }

    /// The consumer is done with `n` received octets. Releasing more than
    /// was received is clamped, so a confused caller cannot inflate the
    /// window past what we advertised.
    pub fn release(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.unreleased);
        self.unreleased -= n;
        self.unannounced += n;
    }

    /// The WINDOW_UPDATE increment to send now, if at least half of the
    /// window has been consumed and released.
    pub fn take_update(&mut self) -> Option<u32> {
        if self.unannounced == 0 || self.unannounced < self.target.div_ceil(2) {
            return None;
        }
        Some(self.take_all())
    }

    /// Announce every released octet regardless of the threshold.
    pub fn take_all(&mut self) -> u32 {
        let n = self.unannounced;
        self.unannounced = 0;
        self.window += i64::from(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_goes_negative_and_recovers() {
        let mut w = SendWindow::new(65_535);
        w.consume(65_535);
        assert_eq!(w.usable(), 0);
        w.adjust(-1_000).unwrap();
        assert_eq!(w.available(), -1_000);
        assert_eq!(w.usable(), 0);
        w.increase(1_500).unwrap();
        assert_eq!(w.usable(), 500);
    }

    #[test]
    fn send_window_overflow() {
        let mut w = SendWindow::new(MAX_WINDOW_SIZE);
        assert_eq!(w.increase(1), Err(WindowOverflow));
        assert_eq!(w.available(), i64::from(MAX_WINDOW_SIZE));
        w.consume(10);
        w.increase(10).unwrap();
        assert_eq!(w.adjust(1), Err(WindowOverflow));
    }

    #[test]
    fn recv_window_updates_after_half() {
        let mut w = RecvWindow::new(1_000);
        w.receive(600).unwrap();
        w.release(300);
        assert_eq!(w.take_update(), None);
        w.release(199);
        assert_eq!(w.take_update(), None);
        w.release(1);
        assert_eq!(w.take_update(), Some(500));
        assert_eq!(w.window(), 900);
        assert_eq!(w.unreleased(), 100);
    }

    #[test]
    fn recv_window_rejects_excess_and_clamps_release() {
        let mut w = RecvWindow::new(100);
        assert_eq!(w.receive(101), Err(WindowExceeded));
        w.receive(100).unwrap();
        assert_eq!(w.receive(1), Err(WindowExceeded));
        w.release(usize::MAX);
        assert_eq!(w.take_update(), Some(100));
        assert_eq!(w.window(), 100);
        assert_eq!(w.take_all(), 0);
    }
}
