//! The in-process hand-off: when the API and a consumer share a process, a start accepted
//! with its message is handed to that consumer in memory once its write is durable, as its
//! first delivery. Nothing here is the source of truth: the start's row says it is due
//! again after the visibility timeout, so a crash (or a consumer that never takes it) costs
//! a delay, never a start. Bounded: past its capacity, a start waits in its row for the
//! next receive, as it does when no consumer runs here.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flowgate_core::ports::Delivery;

/// Deliveries held in memory at most.
pub const CAPACITY: usize = 8_192;

/// How a start accepted with its message is queued.
pub(crate) enum Queued<'a> {
    /// Not on the queue (no message was offered).
    No,
    /// Due at this time (microseconds): a receive finds it.
    Due(i64),
    /// Handed to this process's consumer, with this slot; due again at this time if not
    /// settled by then.
    Handed(Slot<'a>, i64),
}

/// A reserved place in the hand-off; given back when dropped unused.
pub(crate) struct Slot<'a>(&'a HandOff);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The deliveries waiting for this process's consumer.
#[derive(Default)]
pub(crate) struct HandOff {
    /// Whether a consumer receives in this process.
    consumer: AtomicBool,
    /// Places taken: waiting deliveries and reservations.
    reserved: AtomicUsize,
    waiting: Mutex<VecDeque<Delivery>>,
}

impl HandOff {
    /// Says a consumer receives here (from its first receive on).
    pub(crate) fn consumer_here(&self) {
        self.consumer.store(true, Ordering::Release);
    }

    /// A place for one start, if a consumer receives here and there is room.
    pub(crate) fn reserve(&self) -> Option<Slot<'_>> {
        if !self.consumer.load(Ordering::Acquire) {
            return None;
        }
        let taken = self.reserved.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self);
        (taken < CAPACITY).then_some(slot)
    }

    /// Hands `delivery` over in the place `slot` reserved.
    pub(crate) fn hand(&self, slot: Slot<'_>, delivery: Delivery) {
        // The place stays taken until the delivery is taken.
        std::mem::forget(slot);
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(delivery);
    }

    /// Up to `max` deliveries handed over, oldest first.
    pub(crate) fn take(&self, max: usize) -> Vec<Delivery> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = max.min(waiting.len());
        let taken: Vec<Delivery> = waiting.drain(..n).collect();
        self.reserved.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }
}

/// Starts whose last write took them off the queue in this process, so that the
/// acknowledgement of their delivery, which follows, needs no write of its own. A start not
/// found here (another process settled it, or the set was cleared) is acknowledged by a
/// write, as the queue's contract says.
#[derive(Default)]
pub(crate) struct Settled(Mutex<std::collections::HashSet<i64>>);

/// The most settled starts remembered; past it the set starts over.
const SETTLED_CAPACITY: usize = 65_536;

impl Settled {
    /// Remembers that the start `seq` left the queue.
    pub(crate) fn insert(&self, seq: i64) {
        let mut set = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.len() >= SETTLED_CAPACITY {
            set.clear();
        }
        set.insert(seq);
    }

    /// Whether the start `seq` left the queue (and forgets it).
    pub(crate) fn take(&self, seq: i64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&seq)
    }
}
