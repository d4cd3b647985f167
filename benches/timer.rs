//! Event-loop timers: the hashed timer wheel (`noslate_fc::timer::Timers`)
//! against the ordered map it replaced (`BTreeTimers` below, the previous
//! `src/timer.rs` kept as the baseline).
//!
//! Both run with `LIVE` other timers pending, spread over a day (idle
//! timers, invoke deadlines), on a virtual clock that moves forward only, as
//! `Instant::now()` does.
//! Throughput is timer operations: add+cancel pairs, or timers added and
//! popped when due.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use noslate_fc::timer::{TimerKey, Timers};

/// Timers pending besides the measured ones (one idle timer per keep-alive
/// connection, plus deadlines).
const LIVE: u64 = 10_000;
/// Timers added per iteration.
const BATCH: u64 = 1_000;

/// The previous implementation: an ordered set of (instant, sequence) keys.
struct BTreeTimers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    seq: u64,
}

#[derive(Clone, Copy)]
struct BTreeKey(Instant, u64);

impl<T> Default for BTreeTimers<T> {
    fn default() -> Self {
        BTreeTimers { queue: BTreeMap::new(), seq: 0 }
    }
}

impl<T> BTreeTimers<T> {
    fn add(&mut self, at: Instant, what: T) -> BTreeKey {
        self.seq += 1;
        self.queue.insert((at, self.seq), what);
        BTreeKey(at, self.seq)
    }

    fn cancel(&mut self, key: BTreeKey) {
        self.queue.remove(&(key.0, key.1));
    }

    fn pop_due(&mut self, now: Instant) -> Option<T> {
        let first = *self.queue.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.queue.remove(&first)
    }
}

/// What both implementations offer the loop.
trait Queue: Default {
    type Key: Copy;
    fn add(&mut self, at: Instant, what: u64) -> Self::Key;
    fn cancel(&mut self, key: Self::Key);
    fn pop_due(&mut self, now: Instant) -> Option<u64>;
}

impl Queue for Timers<u64> {
    type Key = TimerKey;
    fn add(&mut self, at: Instant, what: u64) -> TimerKey {
        Timers::add(self, at, what)
    }
    fn cancel(&mut self, key: TimerKey) {
        Timers::cancel(self, key)
    }
    fn pop_due(&mut self, now: Instant) -> Option<u64> {
        Timers::pop_due(self, now)
    }
}

impl Queue for BTreeTimers<u64> {
    type Key = BTreeKey;
    fn add(&mut self, at: Instant, what: u64) -> BTreeKey {
        BTreeTimers::add(self, at, what)
    }
    fn cancel(&mut self, key: BTreeKey) {
        BTreeTimers::cancel(self, key)
    }
    fn pop_due(&mut self, now: Instant) -> Option<u64> {
        BTreeTimers::pop_due(self, now)
    }
}

/// splitmix64: deterministic spread of deadlines.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A queue holding `LIVE` timers spread over a day from `from` (never due
/// during a run).
fn loaded<Q: Queue>(from: Instant) -> Q {
    let mut q = Q::default();
    for i in 0..LIVE {
        let at = from + Duration::from_millis(mix(i) % 86_400_000);
        q.add(at, i);
    }
    q
}

/// Add a timer 20 ms to 10 minutes out and cancel it (an exchange's idle or
/// head timer that its exchange outlived).
fn add_cancel<Q: Queue>(q: &mut Q, now: Instant, round: u64) {
    for i in 0..BATCH {
        let at = now + Duration::from_millis(20 + mix(round ^ i) % 600_000);
        let key = q.add(at, i);
        q.cancel(black_box(key));
    }
}

/// Add timers due within the next 50 ms, move the clock 50 ms on and pop
/// them all.
fn add_pop<Q: Queue>(q: &mut Q, now: &mut Instant, round: u64) {
    for i in 0..BATCH {
        q.add(*now + Duration::from_micros(mix(round ^ i) % 50_000), i);
    }
    *now += Duration::from_millis(51);
    let mut popped = 0;
    while let Some(what) = q.pop_due(*now) {
        black_box(what);
        popped += 1;
    }
    assert_eq!(popped, BATCH);
}

fn bench<Q: Queue>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group(format!("timers/{name}"));
    group.throughput(Throughput::Elements(BATCH));

    let base = Instant::now();
    // Pending timers from 10 minutes out: the clock stays at `base`.
    let mut q: Q = loaded(base + Duration::from_secs(600));
    let mut round = 0;
    group.bench_function("add+cancel", |b| {
        b.iter(|| {
            round += 1;
            add_cancel(&mut q, base, round);
        })
    });

    // The clock moves 51 ms per iteration (hours over a run): pending timers
    // from a year out.
    let mut q: Q = loaded(base + Duration::from_secs(365 * 86_400));
    let mut now = base;
    group.bench_function("add+pop", |b| {
        b.iter(|| {
            round += 1;
            add_pop(&mut q, &mut now, round);
        })
    });
    group.finish();
}

fn bench_timers(c: &mut Criterion) {
    bench::<Timers<u64>>(c, "wheel");
    bench::<BTreeTimers<u64>>(c, "btreemap");
}

criterion_group!(benches, bench_timers);
criterion_main!(benches);
