//! Bounded single-producer/single-consumer rings between pipeline stages.
//!
//! A ring is a fixed array of slots allocated once by [`bounded`] and split into a [`Producer`]
//! and a [`Consumer`]. Neither handle is `Clone` and every operation takes `&mut self`, so the
//! type system enforces one producer and one consumer. Pushing and popping never allocate.
//!
//! ```text
//!             Producer (stage N thread)                 Consumer (stage N+1 thread)
//!                      │ push                                      ▲ pop
//!                      ▼                                           │
//!   ┌──────────┬──────────┬──────────┬──────────┬──────────┬──────────┐
//!   │ slot 0   │ slot 1   │ slot 2   │ slot 3   │  ...     │ slot d-1 │   d = ring_depth
//!   │ FrameBuf │ FrameBuf │  (empty) │  (empty) │          │ FrameBuf │
//!   └──────────┴──────────┴──────────┴──────────┴──────────┴──────────┘
//!        ▲ head (oldest, next pop)          ▲ tail (next push)
//!
//!   full + DropOldest: the item under `head` is evicted and handed back to the producer,
//!                      the new item takes the tail slot; `dropped_oldest += 1`.
//!   full + Block:      the item is handed back as `Push::Full`; `full_waits += 1`. The act
//!                      layer (`io::stages`) backs off and retries with `try_push`.
//! ```
//!
//! Every accepted item is stamped with its push number, which travels in the slot with it. The
//! consumer keeps the number it expects next, so a pop also tells how many items were evicted
//! between the previous item it popped and this one
//! ([`Consumer::evicted_before_last_pop`]): the gap is learned in the same step as the item
//! that follows it, never from a counter read at some other time. A stage after the encoder
//! needs exactly that to know that the frame in hand may reference one it never saw.
//!
//! Counters live on two cache lines: one written only by the producer (`pushed`,
//! `dropped_oldest`, `full_waits`), one written only by the consumer (`popped`). At rest
//! `pushed == popped + dropped_oldest + len`.
//!
//! # Memory ordering
//!
//! The rings are built on [`crossbeam_queue::ArrayQueue`]. Each slot carries a stamp; a push
//! writes the value and then stores the stamp with `Release`, and a pop loads the stamp with
//! `Acquire` before reading the value (crossbeam-queue 0.3.14, `src/array_queue.rs`,
//! `push_or_else` / `force_push` / `pop`). So a successful push *happens-before* the pop that
//! returns the item: every byte the producer wrote into a frame buffer before pushing it is
//! visible to the consumer that pops it. `force_push` moves `head` with a `SeqCst` CAS, so an
//! eviction and a concurrent pop never both take the same item.
//!
//! Closing uses one more flag per side: a dropped [`Producer`] stores `producer_gone` with
//! `Release` after its last push; the consumer loads it with `Acquire` when the ring looks
//! empty and pops once more, so items pushed just before the close are still delivered and
//! [`Pop::Closed`] is reported only once the ring is drained.
//!
//! Statistics counters use `Relaxed`: they order nothing and are read only for reporting.
//!
//! This module decides only: it never waits, sleeps or reads a clock. Waiting for room or for
//! data is the act layer's job (`io::stages`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::config::Backpressure;

/// Errors from building a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// A ring needs at least one slot.
    #[error("ring depth must be at least 1")]
    ZeroDepth,
}

/// Counter snapshot of one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingStats {
    /// Slots in the ring.
    pub capacity: usize,
    /// Items in the ring when the snapshot was taken.
    pub len: usize,
    /// Items accepted by the ring (including those that evicted an older item).
    pub pushed: u64,
    /// Items handed to the consumer.
    pub popped: u64,
    /// Items evicted by [`Backpressure::DropOldest`] and handed back to the producer.
    pub dropped_oldest: u64,
    /// Pushes that found the ring full under [`Backpressure::Block`] (one per blocked item,
    /// however long it then waited).
    pub full_waits: u64,
}

/// What became of a pushed item.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an evicted or returned item must be recycled or dropped deliberately"]
pub enum Push<T> {
    /// The item is in the ring.
    Queued,
    /// The item is in the ring; the ring was full and the oldest item was evicted to make room.
    /// It is handed back so its buffer can be recycled. Only under [`Backpressure::DropOldest`].
    Evicted(T),
    /// The ring is full and the policy is [`Backpressure::Block`]: the item is handed back.
    /// Wait, then offer it again with [`Producer::try_push`].
    Full(T),
    /// The consumer is gone; the item is handed back and will never be delivered.
    Closed(T),
}

/// What a pop found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<T> {
    /// The oldest queued item.
    Item(T),
    /// Nothing queued right now; the producer is still there.
    Empty,
    /// The producer is gone and every item it pushed has been popped.
    Closed,
}

#[derive(Debug, Default)]
struct ProducerCounters {
    pushed: AtomicU64,
    dropped_oldest: AtomicU64,
    full_waits: AtomicU64,
}

#[derive(Debug, Default)]
struct ConsumerCounters {
    popped: AtomicU64,
}

#[derive(Debug)]
struct Shared<T> {
    /// Items with their push numbers (see the module docs).
    queue: ArrayQueue<(u64, T)>,
    producer: CachePadded<ProducerCounters>,
    consumer: CachePadded<ConsumerCounters>,
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
}

/// Adds one to a counter that has a single writer (the side that owns it): a plain load and
/// store, no locked read-modify-write, because no other thread ever writes it.
fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

impl<T> Shared<T> {
    fn stats(&self) -> RingStats {
        RingStats {
            capacity: self.queue.capacity(),
            len: self.queue.len(),
            pushed: self.producer.pushed.load(Ordering::Relaxed),
            popped: self.consumer.popped.load(Ordering::Relaxed),
            dropped_oldest: self.producer.dropped_oldest.load(Ordering::Relaxed),
            full_waits: self.producer.full_waits.load(Ordering::Relaxed),
        }
    }
}

/// Type-erased read access to a ring's counters.
trait StatsSource: Send + Sync {
    fn stats(&self) -> RingStats;
}

impl<T: Send> StatsSource for Shared<T> {
    fn stats(&self) -> RingStats {
        Shared::stats(self)
    }
}

/// Builds a ring of `depth` slots with the given full-ring policy.
///
/// All slots are allocated here; nothing is allocated afterwards.
///
/// ```
/// use punktfunk_engine::config::Backpressure;
/// use punktfunk_engine::ring::{self, Pop, Push};
///
/// let (mut tx, mut rx) = ring::bounded(2, Backpressure::DropOldest).unwrap();
/// assert_eq!(tx.push(1), Push::Queued);
/// assert_eq!(tx.push(2), Push::Queued);
/// assert_eq!(tx.push(3), Push::Evicted(1)); // full: the oldest goes back to the caller
/// assert_eq!(rx.pop(), Pop::Item(2));
/// assert_eq!(rx.evicted_before_last_pop(), 1); // 2 follows an item the consumer never saw
/// drop(tx);
/// assert_eq!(rx.pop(), Pop::Item(3));
/// assert_eq!(rx.pop(), Pop::Closed);
/// assert_eq!(rx.stats().dropped_oldest, 1);
/// ```
pub fn bounded<T: Send>(
    depth: usize,
    backpressure: Backpressure,
) -> Result<(Producer<T>, Consumer<T>), RingError> {
    if depth == 0 {
        return Err(RingError::ZeroDepth);
    }
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(depth),
        producer: CachePadded::new(ProducerCounters::default()),
        consumer: CachePadded::new(ConsumerCounters::default()),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
    });
    Ok((
        Producer {
            shared: Arc::clone(&shared),
            backpressure,
            next_seq: 0,
        },
        Consumer {
            shared,
            expected_seq: 0,
            evicted_before_last: 0,
        },
    ))
}

/// The pushing end of a ring. Dropping it closes the ring.
#[derive(Debug)]
pub struct Producer<T: Send> {
    shared: Arc<Shared<T>>,
    backpressure: Backpressure,
    /// Push number of the next accepted item.
    next_seq: u64,
}

impl<T: Send> Producer<T> {
    /// Offers an item, applying the ring's [`Backpressure`] policy when it is full.
    ///
    /// Under [`Backpressure::Block`] a full ring returns [`Push::Full`] and counts one
    /// `full_waits`; retry the returned item with [`Producer::try_push`], which does not count
    /// again.
    pub fn push(&mut self, item: T) -> Push<T> {
        if self.shared.consumer_gone.load(Ordering::Acquire) {
            return Push::Closed(item);
        }
        match self.backpressure {
            Backpressure::DropOldest => {
                let evicted = self.shared.queue.force_push((self.next_seq, item));
                self.next_seq = self.next_seq.wrapping_add(1);
                bump(&self.shared.producer.pushed);
                match evicted {
                    None => Push::Queued,
                    Some((_, old)) => {
                        bump(&self.shared.producer.dropped_oldest);
                        Push::Evicted(old)
                    }
                }
            }
            Backpressure::Block => match self.try_push(item) {
                Push::Full(item) => {
                    bump(&self.shared.producer.full_waits);
                    Push::Full(item)
                }
                other => other,
            },
        }
    }

    /// Offers an item without ever evicting: [`Push::Full`] hands it back when there is no room,
    /// whatever the policy. Counts nothing on a full ring; meant for the retry loop after
    /// [`Producer::push`] returned [`Push::Full`].
    pub fn try_push(&mut self, item: T) -> Push<T> {
        if self.shared.consumer_gone.load(Ordering::Acquire) {
            return Push::Closed(item);
        }
        match self.shared.queue.push((self.next_seq, item)) {
            Ok(()) => {
                self.next_seq = self.next_seq.wrapping_add(1);
                bump(&self.shared.producer.pushed);
                Push::Queued
            }
            Err((_, item)) => Push::Full(item),
        }
    }

    /// The policy this ring applies when full.
    pub fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    /// Whether the consumer has been dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Acquire)
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.shared.stats()
    }

    /// A handle that reads this ring's counters from any thread.
    pub fn monitor(&self) -> RingMonitor
    where
        T: 'static,
    {
        RingMonitor {
            source: Arc::clone(&self.shared) as Arc<dyn StatsSource>,
        }
    }
}

impl<T: Send> Drop for Producer<T> {
    fn drop(&mut self) {
        // Release: every push above happens-before a consumer that observes the close.
        self.shared.producer_gone.store(true, Ordering::Release);
    }
}

/// The popping end of a ring. Dropping it makes further pushes return [`Push::Closed`].
#[derive(Debug)]
pub struct Consumer<T: Send> {
    shared: Arc<Shared<T>>,
    /// Push number of the item that follows the last one popped, if none was evicted.
    expected_seq: u64,
    evicted_before_last: u64,
}

impl<T: Send> Consumer<T> {
    /// Takes the oldest item, or says why there is none. After [`Pop::Item`],
    /// [`evicted_before_last_pop`](Self::evicted_before_last_pop) says how many items were
    /// evicted just before it.
    pub fn pop(&mut self) -> Pop<T> {
        if let Some(slot) = self.shared.queue.pop() {
            return Pop::Item(self.accept(slot));
        }
        if !self.shared.producer_gone.load(Ordering::Acquire) {
            return Pop::Empty;
        }
        // The producer is gone; an item it pushed between our pop and the flag load is now
        // visible (its push happens-before the Release store we just acquired).
        match self.shared.queue.pop() {
            Some(slot) => Pop::Item(self.accept(slot)),
            None => Pop::Closed,
        }
    }

    /// Items evicted between the item popped before the last [`Pop::Item`] and that item (or,
    /// for the first item, before it): items this consumer never saw and that the last one
    /// follows. 0 when nothing was lost, and always 0 under [`Backpressure::Block`].
    ///
    /// An eviction always takes the oldest queued item, so every eviction counted here took an
    /// item older than the one just popped; an eviction after that pop shows at the next one.
    pub fn evicted_before_last_pop(&self) -> u64 {
        self.evicted_before_last
    }

    fn accept(&mut self, (seq, item): (u64, T)) -> T {
        bump(&self.shared.consumer.popped);
        self.evicted_before_last = seq.wrapping_sub(self.expected_seq);
        self.expected_seq = seq.wrapping_add(1);
        item
    }

    /// Whether the producer has been dropped (items may still be queued).
    pub fn is_producer_gone(&self) -> bool {
        self.shared.producer_gone.load(Ordering::Acquire)
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.shared.stats()
    }

    /// A handle that reads this ring's counters from any thread.
    pub fn monitor(&self) -> RingMonitor
    where
        T: 'static,
    {
        RingMonitor {
            source: Arc::clone(&self.shared) as Arc<dyn StatsSource>,
        }
    }
}

impl<T: Send> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Release);
    }
}

/// Reads a ring's counters without owning either end. Cloneable; keeps the ring's memory alive.
#[derive(Clone)]
pub struct RingMonitor {
    source: Arc<dyn StatsSource>,
}

impl RingMonitor {
    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        self.source.stats()
    }
}

impl std::fmt::Debug for RingMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RingMonitor").field(&self.stats()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn zero_depth_is_refused() {
        assert_eq!(
            bounded::<u8>(0, Backpressure::Block).unwrap_err(),
            RingError::ZeroDepth
        );
    }

    #[test]
    fn fifo_order() {
        let (mut tx, mut rx) = bounded(3, Backpressure::Block).unwrap();
        for i in 0..3 {
            assert_eq!(tx.push(i), Push::Queued);
        }
        for i in 0..3 {
            assert_eq!(rx.pop(), Pop::Item(i));
        }
        assert_eq!(rx.pop(), Pop::Empty);
    }

    #[test]
    fn drop_oldest_evicts_and_counts() {
        let (mut tx, mut rx) = bounded(2, Backpressure::DropOldest).unwrap();
        assert_eq!(tx.push(10), Push::Queued);
        assert_eq!(tx.push(11), Push::Queued);
        assert_eq!(tx.push(12), Push::Evicted(10));
        assert_eq!(tx.push(13), Push::Evicted(11));
        assert_eq!(rx.pop(), Pop::Item(12));
        assert_eq!(
            rx.evicted_before_last_pop(),
            2,
            "10 and 11 were lost before 12"
        );
        assert_eq!(rx.pop(), Pop::Item(13));
        assert_eq!(rx.evicted_before_last_pop(), 0);
        let s = rx.stats();
        assert_eq!(
            s,
            RingStats {
                capacity: 2,
                len: 0,
                pushed: 4,
                popped: 2,
                dropped_oldest: 2,
                full_waits: 0
            }
        );
    }

    #[test]
    fn block_hands_item_back_and_counts_once() {
        let (mut tx, mut rx) = bounded(1, Backpressure::Block).unwrap();
        assert_eq!(tx.push(1), Push::Queued);
        let Push::Full(item) = tx.push(2) else {
            panic!("ring of one should be full")
        };
        assert_eq!(tx.try_push(item), Push::Full(2));
        assert_eq!(tx.try_push(2), Push::Full(2));
        assert_eq!(tx.stats().full_waits, 1);
        assert_eq!(rx.pop(), Pop::Item(1));
        assert_eq!(tx.try_push(2), Push::Queued);
        assert_eq!(rx.pop(), Pop::Item(2));
        assert_eq!(rx.stats().dropped_oldest, 0);
    }

    #[test]
    fn try_push_never_evicts_even_under_drop_oldest() {
        let (mut tx, _rx) = bounded(1, Backpressure::DropOldest).unwrap();
        assert_eq!(tx.push(1), Push::Queued);
        assert_eq!(tx.try_push(2), Push::Full(2));
        assert_eq!(tx.stats().dropped_oldest, 0);
    }

    #[test]
    fn producer_drop_closes_after_drain() {
        let (mut tx, mut rx) = bounded(4, Backpressure::Block).unwrap();
        assert_eq!(tx.push("a"), Push::Queued);
        assert_eq!(tx.push("b"), Push::Queued);
        drop(tx);
        assert!(rx.is_producer_gone());
        assert_eq!(rx.pop(), Pop::Item("a"));
        assert_eq!(rx.pop(), Pop::Item("b"));
        assert_eq!(rx.pop(), Pop::Closed);
        assert_eq!(rx.pop(), Pop::Closed);
    }

    #[test]
    fn consumer_drop_closes_producer() {
        let (mut tx, rx) = bounded(4, Backpressure::DropOldest).unwrap();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push(7), Push::Closed(7));
        assert_eq!(tx.try_push(8), Push::Closed(8));
        assert_eq!(tx.stats().pushed, 0);
    }

    #[test]
    fn monitor_outlives_both_ends() {
        let (mut tx, mut rx) = bounded(2, Backpressure::Block).unwrap();
        let monitor = tx.monitor();
        assert_eq!(tx.push(1u32), Push::Queued);
        assert_eq!(rx.pop(), Pop::Item(1));
        drop((tx, rx));
        let s = monitor.stats();
        assert_eq!((s.pushed, s.popped, s.len), (1, 1, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        TryPush,
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Push), Just(Op::TryPush), Just(Op::Pop)]
    }

    proptest! {
        /// The ring behaves like a bounded VecDeque under both policies, its counters obey
        /// `pushed == popped + dropped_oldest + len` after every operation, and each pop
        /// reports exactly the evictions since the previous pop.
        #[test]
        fn matches_vecdeque_model(
            depth in 1usize..6,
            drop_oldest in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let policy = if drop_oldest { Backpressure::DropOldest } else { Backpressure::Block };
            let (mut tx, mut rx) = bounded(depth, policy).unwrap();
            let mut model = VecDeque::new();
            let mut next = 0u32;
            // Evictions since the last pop: all of them took items older than the next pop's.
            let mut evicted = 0u64;
            for op in ops {
                match op {
                    Op::Push | Op::TryPush => {
                        let v = next;
                        next += 1;
                        let got = if matches!(op, Op::Push) { tx.push(v) } else { tx.try_push(v) };
                        if model.len() < depth {
                            prop_assert_eq!(got, Push::Queued);
                            model.push_back(v);
                        } else if drop_oldest && matches!(op, Op::Push) {
                            let old = model.pop_front().unwrap();
                            model.push_back(v);
                            evicted += 1;
                            prop_assert_eq!(got, Push::Evicted(old));
                        } else {
                            prop_assert_eq!(got, Push::Full(v));
                        }
                    }
                    Op::Pop => match model.pop_front() {
                        Some(v) => {
                            prop_assert_eq!(rx.pop(), Pop::Item(v));
                            prop_assert_eq!(rx.evicted_before_last_pop(), evicted);
                            evicted = 0;
                        }
                        None => prop_assert_eq!(rx.pop(), Pop::Empty),
                    },
                }
                let s = rx.stats();
                prop_assert_eq!(s.len, model.len());
                prop_assert_eq!(s.pushed, s.popped + s.dropped_oldest + s.len as u64);
            }
            drop(tx);
            while let Some(v) = model.pop_front() {
                prop_assert_eq!(rx.pop(), Pop::Item(v));
            }
            prop_assert_eq!(rx.pop(), Pop::Closed);
        }
    }
}
