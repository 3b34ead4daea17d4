//! The in-process hand-off: when the API and a consumer share a process, a start accepted
//! with its message is handed to that consumer in memory once its write is durable, as its
//! first delivery. Nothing here is the source of truth: the start's row says it is due
//! again after the visibility timeout, so a crash (or a consumer that never takes it) costs
//! a delay, never a start. Bounded: past its capacity, a start waits in its row for the
//! next receive, as it does when no consumer runs here.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use flowgate_core::ports::Delivery;

/// Deliveries held in memory at most.
pub const CAPACITY: usize = 8_192;

/// Deliveries of one tenant held in memory at most: a tenant with a backlog leaves room
/// for the others, whose starts are then handed over (and served in turn) at once.
pub const PER_TENANT: usize = CAPACITY / 4;

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

/// A reserved place in the hand-off, for one tenant; given back when dropped unused.
pub(crate) struct Slot<'a>(&'a HandOff, String);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fair().give_back(&self.1, 1);
    }
}

/// The deliveries waiting, by tenant, served in turn: each tenant's turn takes as many as
/// its weight.
#[derive(Default)]
struct Fair {
    /// Places taken (waiting deliveries and reservations), in all and by tenant.
    taken: usize,
    by_tenant: HashMap<String, usize>,
    /// Each tenant's waiting deliveries, oldest first.
    queues: HashMap<String, VecDeque<Delivery>>,
    /// The tenants with deliveries waiting, in turn.
    ring: VecDeque<String>,
    /// Each tenant's weight (1 when not named).
    weights: HashMap<String, u32>,
}

impl Fair {
    fn give_back(&mut self, tenant: &str, n: usize) {
        self.taken -= n;
        if let Some(count) = self.by_tenant.get_mut(tenant) {
            *count -= n;
            if *count == 0 {
                self.by_tenant.remove(tenant);
            }
        }
    }
}

/// The deliveries waiting for this process's consumer.
#[derive(Default)]
pub(crate) struct HandOff {
    /// Whether a consumer receives in this process.
    consumer: AtomicBool,
    fair: Mutex<Fair>,
}

impl HandOff {
    /// A hand-off that serves tenants in turn by these weights (a tenant not named weighs 1).
    pub(crate) fn weighted(weights: &[(String, u32)]) -> Self {
        let handoff = Self::default();
        handoff.fair().weights = weights.iter().cloned().collect();
        handoff
    }

    fn fair(&self) -> std::sync::MutexGuard<'_, Fair> {
        self.fair
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says a consumer receives here (from its first receive on).
    pub(crate) fn consumer_here(&self) {
        self.consumer.store(true, Ordering::Release);
    }

    /// A place for one start of `tenant`, if a consumer receives here and there is room
    /// (in all, and for that tenant).
    pub(crate) fn reserve(&self, tenant: &str) -> Option<Slot<'_>> {
        if !self.consumer.load(Ordering::Acquire) {
            return None;
        }
        let mut fair = self.fair();
        let mine = fair.by_tenant.get(tenant).copied().unwrap_or(0);
        if fair.taken >= CAPACITY || mine >= PER_TENANT {
            return None;
        }
        fair.taken += 1;
        *fair.by_tenant.entry(tenant.to_owned()).or_default() += 1;
        Some(Slot(self, tenant.to_owned()))
    }

    /// Hands `delivery` over in the place `slot` reserved.
    pub(crate) fn hand(&self, slot: Slot<'_>, delivery: Delivery) {
        let tenant = slot.1.clone();
        // The place stays taken until the delivery is taken.
        std::mem::forget(slot);
        let mut fair = self.fair();
        let queue = fair.queues.entry(tenant.clone()).or_default();
        queue.push_back(delivery);
        if queue.len() == 1 {
            fair.ring.push_back(tenant);
        }
    }

    /// Up to `max` deliveries handed over: tenants in turn, each turn as many of its oldest
    /// as its weight.
    pub(crate) fn take(&self, max: usize) -> Vec<Delivery> {
        let mut fair = self.fair();
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(tenant) = fair.ring.pop_front() else {
                break;
            };
            let weight = fair.weights.get(&tenant).copied().unwrap_or(1) as usize;
            let queue = fair.queues.entry(tenant.clone()).or_default();
            let n = weight.min(max - taken.len()).min(queue.len());
            let turn: Vec<Delivery> = queue.drain(..n).collect();
            let left = !queue.is_empty();
            if left {
                fair.ring.push_back(tenant.clone());
            } else {
                fair.queues.remove(&tenant);
            }
            fair.give_back(&tenant, turn.len());
            taken.extend(turn);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tenant: &str, n: usize) -> Delivery {
        Delivery {
            message_id: format!("{tenant}{n}"),
            receipt: String::new(),
            receive_count: 1,
            tenant: Some(tenant.to_owned()),
            request_id: None,
            body: String::new(),
            traceparent: None,
        }
    }

    #[test]
    fn tenants_are_served_in_turn_by_weight_and_one_cannot_fill_it() {
        let handoff = HandOff::weighted(&[("heavy".to_owned(), 3)]);
        handoff.consumer_here();
        for n in 0..PER_TENANT {
            let slot = handoff.reserve("busy").expect("room");
            handoff.hand(slot, delivery("busy", n));
        }
        assert!(
            handoff.reserve("busy").is_none(),
            "a tenant's share is bounded"
        );
        for n in 0..4 {
            let slot = handoff.reserve("heavy").expect("room for another tenant");
            handoff.hand(slot, delivery("heavy", n));
        }
        let slot = handoff.reserve("quiet").expect("room for another tenant");
        handoff.hand(slot, delivery("quiet", 0));
        let order: Vec<String> = handoff.take(8).into_iter().map(|d| d.message_id).collect();
        assert_eq!(
            order,
            [
                "busy0", "heavy0", "heavy1", "heavy2", "quiet0", "busy1", "heavy3", "busy2"
            ]
        );
        assert!(
            handoff.reserve("busy").is_some(),
            "places taken are given back"
        );
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
