//! Deadlines for the event loop: a hierarchical hashed timer wheel.
//!
//! Time is cut into ticks of [`TICK`] (1 ms) counted from the wheel's origin.
//! A deadline `at` belongs to the tick boundary at or after it
//! (`ceil((at - origin) / TICK)`), so a timer is never due before its
//! `Instant` and at most one tick after it. The wheel has [`LEVELS`] levels of
//! 64 slots: a slot of level `l` spans 64^l ticks, so six levels span 2^36
//! ticks (about 795 days); a deadline farther than that parks in the top level
//! and is placed again when its slot comes round. A timer sits in the level
//! of the highest base-64 digit in which its tick differs from the current
//! one; when the wheel reaches a slot of level `l > 0`, its timers move down
//! to lower levels (each timer moves at most `LEVELS - 1` times), and a slot
//! of level 0 holds timers of a single tick, which move to the due queue.
//!
//! Storage is a slab of entries, each on one doubly linked list (a slot or
//! the due queue), so `add` and `cancel` are O(1), `pop_due` is amortised
//! O(1), and a freed entry is reused by the next `add` (no allocation in
//! steady state). A [`TimerKey`] names the slab index and a sequence number
//! unique to that `add`: cancelling a timer that has fired or was cancelled,
//! even if its entry now holds another timer, does nothing. Each level keeps
//! a 64-bit map of its occupied slots, so the next expiration (the `poll`
//! timeout) is found with one bit scan per level, not a scan of the slots.
//!
//! Owners cancel their timers when they go away (so the wheel holds only
//! what is live), and each timer also carries the generation of what it
//! belongs to: a timer that fires for a finished exchange is ignored, so a
//! missed cancel is harmless.
//!
//! Order: timers are returned in order of their tick; within one tick the
//! order is unspecified, and a timer added with a deadline the wheel has
//! already passed is returned after the timers already due. The server pops
//! every due timer on each turn of its loop and relies on no order.

use std::time::{Duration, Instant};

/// The wheel's resolution, in milliseconds.
const TICK_MS: u64 = 1;
const TICK_NANOS: u128 = TICK_MS as u128 * 1_000_000;
/// The wheel's resolution: a timer fires at most this much after its deadline
/// (plus the poll's own rounding, which mio does up to the next millisecond).
pub const TICK: Duration = Duration::from_millis(TICK_MS);

/// Slots per level: one bit each in a `u64` occupancy map.
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Levels of the wheel; together they span `WHEEL_SPAN` ticks.
pub const LEVELS: usize = 6;
const WHEEL_SPAN: u64 = 1 << (SLOT_BITS * LEVELS as u32);
/// Ticks are capped here (millions of years) so that tick arithmetic cannot
/// overflow; a deadline that far is never due.
const MAX_TICK: u64 = 1 << 62;

/// "No entry" in the slab's links.
const NIL: u32 = u32::MAX;

/// Identifies one added timer, for `cancel`: the slab index of its entry and
/// the sequence number of the `add` (an entry reused by a later `add` has
/// another, so a stale key matches nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey {
    index: u32,
    seq: u64,
}

/// The list an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// On the free list (no timer).
    Free,
    /// Due: waiting for `pop_due`.
    Due,
    /// In the wheel.
    Slot { level: u8, slot: u8 },
}

struct Entry<T> {
    what: Option<T>,
    at: Instant,
    tick: u64,
    seq: u64,
    prev: u32,
    next: u32,
    place: Place,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List { head: NIL, tail: NIL };

pub struct Timers<T> {
    origin: Instant,
    /// Every tick up to this one has been reached: timers of these ticks are
    /// on `due`, later ones in the wheel.
    elapsed: u64,
    entries: Vec<Entry<T>>,
    /// Head of the free list (linked through `next`).
    free: u32,
    seq: u64,
    len: usize,
    due: List,
    slots: [[List; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers::starting_at(Instant::now())
    }
}

impl<T> Timers<T> {
    /// A wheel whose tick 0 is `origin`. Deadlines before it are due at once
    /// (but still never returned by `pop_due` before their `Instant`).
    pub fn starting_at(origin: Instant) -> Self {
        Timers {
            origin,
            elapsed: 0,
            entries: Vec::new(),
            free: NIL,
            seq: 0,
            len: 0,
            due: EMPTY,
            slots: [[EMPTY; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
        }
    }

    pub fn add(&mut self, at: Instant, what: T) -> TimerKey {
        self.seq += 1;
        let entry = Entry {
            what: Some(what),
            at,
            tick: self.tick_of(at),
            seq: self.seq,
            prev: NIL,
            next: NIL,
            place: Place::Free,
        };
        let index = if self.free != NIL {
            let index = self.free;
            self.free = self.entries[index as usize].next;
            self.entries[index as usize] = entry;
            index
        } else {
            let index = u32::try_from(self.entries.len()).ok().filter(|&i| i != NIL).expect("too many timers");
            self.entries.push(entry);
            index
        };
        self.len += 1;
        self.place(index);
        TimerKey { index, seq: self.seq }
    }

    /// Remove a timer that has not fired yet (a no-op if it has, or if it was
    /// cancelled already).
    pub fn cancel(&mut self, key: TimerKey) {
        let Some(entry) = self.entries.get(key.index as usize) else { return };
        if entry.seq != key.seq || entry.place == Place::Free {
            return;
        }
        self.unlink(key.index);
        self.release(key.index);
    }

    /// Time until the wheel must next be looked at: zero when a timer is due,
    /// else the next tick boundary at which a slot of the wheel is reached.
    /// That is never later than the earliest deadline's tick, and may be
    /// earlier when the next slot belongs to a higher level (its timers then
    /// move down and the next call tells the rest): the loop neither
    /// oversleeps a deadline nor wakes up with nothing to do more than
    /// `LEVELS - 1` times per timer (a slot's wake-up serves all its timers).
    /// The loop's freeze check compares a poll's sleep with the timeout it
    /// was given, so these shorter timeouts only let it notice shorter stops.
    /// O(`LEVELS`).
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.due.head != NIL {
            return Some(self.entries[self.due.head as usize].at.saturating_duration_since(now));
        }
        let (_, _, deadline) = self.next_expiration()?;
        let reached = now.saturating_duration_since(self.origin);
        Some(Duration::from_millis(deadline.saturating_mul(TICK_MS)).saturating_sub(reached))
    }

    /// Remove and return a timer that is due at `now` (its deadline's tick
    /// boundary has passed), or None. `now` should not go backwards (as
    /// `Instant::now()` does not); if it does, nothing is returned early.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let now_tick = self.tick_reached(now);
        if now_tick > self.elapsed {
            self.advance(now_tick);
        }
        let head = self.due.head;
        if head == NIL || self.entries[head as usize].at > now {
            return None;
        }
        self.unlink(head);
        self.release(head)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick boundary at or after `at`.
    fn tick_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        nanos.div_ceil(TICK_NANOS).min(u128::from(MAX_TICK)) as u64
    }

    /// The last tick boundary at or before `now`.
    fn tick_reached(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        (nanos / TICK_NANOS).min(u128::from(MAX_TICK)) as u64
    }

    /// Move the wheel to `now_tick`, taking every slot whose start has been
    /// reached, earliest first.
    fn advance(&mut self, now_tick: u64) {
        while let Some((level, slot, deadline)) = self.next_expiration() {
            if deadline > now_tick {
                break;
            }
            self.elapsed = deadline;
            let list = std::mem::replace(&mut self.slots[level][slot], EMPTY);
            self.occupied[level] &= !(1 << slot);
            let mut index = list.head;
            while index != NIL {
                let next = self.entries[index as usize].next;
                self.place(index);
                index = next;
            }
        }
        self.elapsed = now_tick;
    }

    /// The first occupied slot the wheel reaches, as (level, slot, first
    /// tick). A lower level's slots all come before any higher level's: a
    /// timer of level `l` shares every digit above `l` with `elapsed`, so it
    /// lies before the next slot boundary of level `l + 1`.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&o| o != 0)?;
        let shift = SLOT_BITS * level as u32;
        // Look from the slot after the current one: the current slot of a
        // level below the top is always empty (its timers' ticks differ in
        // that digit), and in the top level it comes round last.
        let start = ((self.elapsed >> shift) + 1) & SLOT_MASK;
        let slot = (start + u64::from(self.occupied[level].rotate_right(start as u32).trailing_zeros())) & SLOT_MASK;
        let slot_span = 1u64 << shift;
        let level_span = slot_span << SLOT_BITS;
        let mut deadline = (self.elapsed & !(level_span - 1)) + slot * slot_span;
        if deadline <= self.elapsed {
            deadline += level_span;
        }
        Some((level, slot as usize, deadline))
    }

    /// Put a linked-out entry where its tick says: the due queue if reached,
    /// else the slot of the highest digit in which it differs from `elapsed`.
    fn place(&mut self, index: u32) {
        let tick = self.entries[index as usize].tick;
        if tick <= self.elapsed {
            self.push_back(Place::Due, index);
            return;
        }
        let differ = (self.elapsed ^ tick) | SLOT_MASK;
        let level = if differ >= WHEEL_SPAN {
            // Beyond the wheel's span: park in the top level, placed again
            // when that slot comes round.
            LEVELS - 1
        } else {
            (u64::BITS - 1 - differ.leading_zeros()) as usize / SLOT_BITS as usize
        };
        let slot = (tick >> (SLOT_BITS * level as u32)) & SLOT_MASK;
        self.occupied[level] |= 1 << slot;
        self.push_back(Place::Slot { level: level as u8, slot: slot as u8 }, index);
    }

    fn list_mut(&mut self, place: Place) -> &mut List {
        match place {
            Place::Due => &mut self.due,
            Place::Slot { level, slot } => &mut self.slots[level as usize][slot as usize],
            Place::Free => unreachable!("the free list is singly linked"),
        }
    }

    fn push_back(&mut self, place: Place, index: u32) {
        let tail = self.list_mut(place).tail;
        let entry = &mut self.entries[index as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.place = place;
        if tail == NIL {
            self.list_mut(place).head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.list_mut(place).tail = index;
    }

    fn unlink(&mut self, index: u32) {
        let Entry { prev, next, place, .. } = self.entries[index as usize];
        if prev == NIL {
            self.list_mut(place).head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.list_mut(place).tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if let Place::Slot { level, slot } = place {
            if self.slots[level as usize][slot as usize].head == NIL {
                self.occupied[level as usize] &= !(1 << slot);
            }
        }
    }

    /// Give a linked-out entry back to the free list; returns its timer.
    fn release(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        entry.place = Place::Free;
        entry.prev = NIL;
        entry.next = self.free;
        self.free = index;
        self.len -= 1;
        entry.what.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MS: Duration = Duration::from_millis(1);

    /// Every timer due at `now`, in the order popped.
    fn drain<T>(t: &mut Timers<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| t.pop_due(now)).collect()
    }

    #[test]
    fn fires_in_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.add(now + Duration::from_millis(20), "b");
        t.add(now + Duration::from_millis(10), "a");
        t.add(now + Duration::from_millis(10), "a2");
        let first = t.next_timeout(now).unwrap();
        // The deadline's tick boundary: at most one tick after it.
        assert!(first >= Duration::from_millis(10) && first < Duration::from_millis(10) + TICK, "{first:?}");
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
        // Due at the tick boundary at or after `now`.
        assert_eq!(t.pop_due(now + TICK), Some("b"));
        assert!(t.is_empty());
    }

    #[test]
    fn never_early_at_most_one_tick_late() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        // Off a tick boundary: due at the next boundary, not before `at`.
        let at = base + Duration::from_micros(10_300);
        t.add(at, 1);
        assert_eq!(t.pop_due(at - Duration::from_nanos(1)), None);
        assert_eq!(t.pop_due(at), None, "due at the tick boundary, 0.7 ms later");
        let boundary = base + Duration::from_millis(11);
        assert_eq!(t.next_timeout(at), Some(boundary - at));
        assert_eq!(t.pop_due(boundary - Duration::from_nanos(1)), None);
        assert_eq!(t.pop_due(boundary), Some(1));
        // On a boundary: due exactly then.
        let at = base + Duration::from_millis(20);
        t.add(at, 2);
        assert_eq!(t.pop_due(at - Duration::from_nanos(1)), None);
        assert_eq!(t.pop_due(at), Some(2));
    }

    #[test]
    fn past_deadlines_are_due_at_once() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base + Duration::from_secs(1));
        // Before the origin, and behind the wheel after it has moved.
        t.add(base, "before origin");
        let now = base + Duration::from_secs(5);
        assert_eq!(t.pop_due(now), Some("before origin"));
        t.add(now - Duration::from_secs(2), "behind");
        t.add(now, "now");
        assert_eq!(t.next_timeout(now), Some(Duration::ZERO));
        assert_eq!(drain(&mut t, now), ["behind", "now"]);
        assert_eq!(t.next_timeout(now), None);
    }

    #[test]
    fn next_timeout_is_never_past_the_earliest_deadline_and_never_zero_early() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        assert_eq!(t.next_timeout(base), None);
        let at = base + Duration::from_secs(600) + Duration::from_micros(1);
        t.add(at, ());
        // Follow the timeouts like the loop does: a few cascade wake-ups, then
        // the deadline's boundary, with none at zero before it.
        let mut now = base;
        let mut wakes = 0;
        loop {
            let wait = t.next_timeout(now).unwrap();
            assert!(wait > Duration::ZERO);
            assert!(now + wait <= base + Duration::from_millis(600_001));
            now += wait;
            wakes += 1;
            if t.pop_due(now).is_some() {
                break;
            }
        }
        assert_eq!(now, base + Duration::from_millis(600_001));
        assert!(wakes <= LEVELS, "{wakes} wake-ups");
        assert_eq!(t.next_timeout(now), None);
    }

    #[test]
    fn stale_key_is_a_no_op() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        let old = t.add(base + MS, "old");
        assert_eq!(t.pop_due(base + MS), Some("old"));
        // The freed entry is reused by the next timer; the old key must not
        // reach it.
        let new = t.add(base + 5 * MS, "new");
        assert_eq!(new.index, old.index);
        t.cancel(old);
        assert_eq!(t.len(), 1);
        // A cancelled key, cancelled again after reuse, is a no-op too.
        t.cancel(new);
        let newer = t.add(base + 5 * MS, "newer");
        t.cancel(new);
        assert_eq!(drain(&mut t, base + 5 * MS), ["newer"]);
        t.cancel(newer);
        assert!(t.is_empty());
        // A key from another wheel, past the slab's end.
        t.cancel(TimerKey { index: 1000, seq: 1 });
    }

    #[test]
    fn cancel_in_every_position_of_a_slot_and_of_the_due_queue() {
        let base = Instant::now();
        for victim in 0..3 {
            for due in [false, true] {
                let mut t = Timers::starting_at(base);
                let at = base + 7 * MS;
                let keys: Vec<_> = (0..3).map(|i| t.add(at, i)).collect();
                if due {
                    // Reach the tick without popping: all three are queued.
                    assert_eq!(t.pop_due(at - Duration::from_nanos(1)), None);
                    t.advance(7);
                }
                t.cancel(keys[victim]);
                let left: Vec<_> = (0..3).filter(|&i| i != victim).collect();
                assert_eq!(drain(&mut t, at), left);
                assert!(t.is_empty());
                assert_eq!(t.occupied, [0; LEVELS]);
            }
        }
    }

    #[test]
    fn far_deadlines() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let day = t.add(base + hours(24), "day");
        t.add(base + hours(24) + MS, "day+1ms");
        t.add(base + hours(7), "7h");
        // Beyond the wheel's span (2^36 ms, ~795 days): parked, placed again.
        t.add(base + hours(24 * 1000), "1000 days");
        t.add(base + Duration::from_secs(u64::from(u32::MAX)), "136 years");
        assert_eq!(drain(&mut t, base + hours(7) - MS), Vec::<&str>::new());
        assert_eq!(drain(&mut t, base + hours(7)), ["7h"]);
        assert_eq!(drain(&mut t, base + hours(24) - Duration::from_nanos(1)), Vec::<&str>::new());
        assert_eq!(drain(&mut t, base + hours(24)), ["day"]);
        t.cancel(day);
        assert_eq!(drain(&mut t, base + hours(24) + MS), ["day+1ms"]);
        assert_eq!(drain(&mut t, base + hours(24 * 1000) - MS), Vec::<&str>::new());
        assert_eq!(t.len(), 2);
        assert_eq!(drain(&mut t, base + hours(24 * 1000)), ["1000 days"]);
        let years = base + Duration::from_secs(u64::from(u32::MAX));
        // Visit it on the way, as a loop following next_timeout would.
        let mut now = base + hours(24 * 1000);
        let mut wakes = 0;
        while t.pop_due(now).is_none() {
            now += t.next_timeout(now).unwrap();
            assert!(now <= years);
            wakes += 1;
        }
        assert_eq!(now, years);
        assert!(wakes < 200, "{wakes} wake-ups over 133 years");
        assert!(t.is_empty());
    }

    #[test]
    fn a_long_stop_fires_everything_passed_at_once() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        for i in 0..1000u64 {
            t.add(base + Duration::from_millis(i * 37), i);
        }
        t.add(base + Duration::from_secs(86_400), 5000);
        let thaw = base + Duration::from_secs(3600);
        let fired = drain(&mut t, thaw);
        // By tick, and all of them.
        assert_eq!(fired, (0..1000).collect::<Vec<_>>());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn many_timers_in_one_slot() {
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        // One tick, and the same level-0 slot in later rounds (ticks 64 and
        // 4096 apart land in the same slot numbers of higher levels).
        let ticks = [5u64, 5 + 64, 5 + 4096, 5 + 64 * 4096];
        let mut keys = Vec::new();
        for (round, &tick) in ticks.iter().enumerate() {
            for i in 0..2000 {
                keys.push(t.add(base + Duration::from_millis(tick), (round, i)));
            }
        }
        for key in keys.iter().step_by(2) {
            t.cancel(*key);
        }
        assert_eq!(t.len(), 4000);
        for (round, &tick) in ticks.iter().enumerate() {
            let at = base + Duration::from_millis(tick);
            assert!(t.pop_due(at - MS).is_none());
            let fired = drain(&mut t, at);
            assert_eq!(fired.len(), 1000);
            assert!(fired.iter().all(|&(r, i)| r == round && i % 2 == 1));
        }
        assert!(t.is_empty());
        // The slab kept its capacity and is reused.
        let capacity = t.entries.len();
        for i in 0..8000 {
            t.add(base + Duration::from_secs(1), (9, i));
        }
        assert_eq!(t.entries.len(), capacity);
    }

    /// xorshift64*: small and deterministic.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    /// A deadline relative to `now`: mostly near (the loop's 20 ms–10 min
    /// range), sometimes passed, sometimes hours or years away; nanoseconds
    /// off the tick grid.
    fn random_delay(rng: &mut Rng) -> (bool, Duration) {
        let nanos = match rng.below(16) {
            0 => return (true, Duration::from_nanos(rng.below(5_000_000_000))),
            1 => 0,
            2..=6 => rng.below(5_000_000),
            7..=10 => rng.below(300_000_000),
            11..=12 => rng.below(600_000_000_000),
            13..=14 => rng.below(86_400_000_000_000),
            _ => rng.below(1 << 62),
        };
        (false, Duration::from_nanos(nanos))
    }

    fn random_step(rng: &mut Rng) -> Duration {
        Duration::from_nanos(match rng.below(12) {
            0 => 0,
            1..=4 => rng.below(2_000_000),
            5..=8 => rng.below(100_000_000),
            9 => rng.below(10_000_000_000),
            10 => rng.below(3_600_000_000_000),
            _ => rng.below(100_000_000_000_000),
        })
    }

    /// The wheel against a BTreeMap model over random add / cancel / advance
    /// steps: at every `now`, exactly the timers whose deadline's tick
    /// boundary has passed are popped, none before its deadline, and
    /// `next_timeout` never reaches past the earliest boundary nor is zero
    /// with nothing due.
    #[test]
    fn differential_against_a_btreemap() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let base = Instant::now();
            let mut t = Timers::starting_at(base);
            let mut model: BTreeMap<(Instant, u64), TimerKey> = BTreeMap::new();
            let mut live: Vec<(u64, Instant)> = Vec::new();
            let mut stale: Vec<TimerKey> = Vec::new();
            let mut now = base;
            let mut next_id = 0u64;
            // The model's own tick arithmetic, not the wheel's.
            let boundary = |at: Instant| {
                let nanos = at.saturating_duration_since(base).as_nanos();
                base + Duration::from_millis(nanos.div_ceil(1_000_000) as u64)
            };
            for _ in 0..5000 {
                match rng.below(10) {
                    0..=4 => {
                        let (past, delay) = random_delay(&mut rng);
                        let at = if past { now.checked_sub(delay).unwrap_or(now) } else { now + delay };
                        next_id += 1;
                        let key = t.add(at, next_id);
                        model.insert((at, next_id), key);
                        live.push((next_id, at));
                    }
                    5..=6 if !live.is_empty() => {
                        let (id, at) = live.swap_remove(rng.below(live.len() as u64) as usize);
                        let key = model.remove(&(at, id)).unwrap();
                        t.cancel(key);
                        stale.push(key);
                    }
                    7 if !stale.is_empty() => {
                        t.cancel(stale[rng.below(stale.len() as u64) as usize]);
                    }
                    _ => {
                        now += random_step(&mut rng);
                        let mut fired = drain(&mut t, now);
                        fired.sort_unstable();
                        let mut expected: Vec<u64> =
                            model.iter().filter(|((at, _), _)| boundary(*at) <= now).map(|((_, id), _)| *id).collect();
                        expected.sort_unstable();
                        assert_eq!(fired, expected, "seed {seed}");
                        live.retain(|(id, at)| {
                            if expected.binary_search(id).is_ok() {
                                assert!(*at <= now, "fired early");
                                stale.push(model.remove(&(*at, *id)).unwrap());
                                false
                            } else {
                                true
                            }
                        });
                    }
                }
                assert_eq!(t.len(), model.len());
                match model.keys().map(|(at, _)| boundary(*at)).min() {
                    None => assert_eq!(t.next_timeout(now), None),
                    Some(first) => {
                        let wait = t.next_timeout(now).unwrap();
                        assert!(now + wait <= first.max(now), "seed {seed}: would oversleep");
                        assert!(wait > Duration::ZERO || first <= now, "seed {seed}: would spin");
                    }
                }
            }
        }
    }

    /// The event loop's use: sleep for `next_timeout` (rounded up to a
    /// millisecond, as mio does), pop everything due. Every timer fires
    /// within one tick of its deadline's boundary and the wake-ups with
    /// nothing to fire stay below `LEVELS` per timer.
    #[test]
    fn loop_driven_by_next_timeout_is_punctual() {
        let mut rng = Rng(0x5eed);
        let base = Instant::now();
        let mut t = Timers::starting_at(base);
        let mut deadlines = BTreeMap::new();
        let mut now = base;
        for id in 0..3000u64 {
            let at = now + random_delay(&mut rng).1.min(Duration::from_secs(200_000));
            t.add(at, id);
            deadlines.insert(id, at);
            if id % 10 == 0 {
                now += Duration::from_nanos(rng.below(3_000_000));
            }
        }
        // The loop starts late (the adds took time): nothing fires before it.
        let start = now;
        let mut empty_wakes = 0;
        while let Some(wait) = t.next_timeout(now) {
            now += Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64);
            let fired = drain(&mut t, now);
            if fired.is_empty() {
                empty_wakes += 1;
            }
            for id in fired {
                let at = deadlines[&id];
                assert!(at <= now && now - at.max(start) < 2 * TICK, "timer {id} late by {:?}", now - at);
            }
        }
        assert!(empty_wakes < 3000 * (LEVELS - 1), "{empty_wakes}");
    }
}
