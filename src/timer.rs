//! Deadlines for the event loop: an ordered set of (instant, sequence) keys.
//!
//! The earliest deadline becomes the `poll` timeout. Owners cancel their
//! timers when they go away (so the set stays as small as what is live), and
//! each timer also carries the generation of what it belongs to: a timer that
//! fires for a finished exchange is ignored, so a missed cancel is harmless.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Identifies one added timer, for `cancel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey(Instant, u64);

pub struct Timers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { queue: BTreeMap::new(), seq: 0 }
    }
}

impl<T> Timers<T> {
    pub fn add(&mut self, at: Instant, what: T) -> TimerKey {
        self.seq += 1;
        self.queue.insert((at, self.seq), what);
        TimerKey(at, self.seq)
    }

    /// Remove a timer that has not fired yet (a no-op if it has).
    pub fn cancel(&mut self, key: TimerKey) {
        self.queue.remove(&(key.0, key.1));
    }

    /// Time until the earliest deadline (zero when already due).
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.queue.keys().next().map(|(at, _)| at.saturating_duration_since(now))
    }

    /// Remove and return the earliest timer that is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let first = *self.queue.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.queue.remove(&first)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.add(now + Duration::from_millis(20), "b");
        t.add(now + Duration::from_millis(10), "a");
        t.add(now + Duration::from_millis(10), "a2");
        assert_eq!(t.next_timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(15);
        assert_eq!(t.pop_due(later), Some("a"));
        assert_eq!(t.pop_due(later), Some("a2"));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cancel_removes_only_that_timer() {
        let mut t = Timers::default();
        let now = Instant::now();
        let a = t.add(now, "a");
        t.add(now, "b");
        t.cancel(a);
        t.cancel(a);
        assert_eq!(t.pop_due(now), Some("b"));
        assert!(t.is_empty());
    }
}
