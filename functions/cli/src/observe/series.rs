//! The operator page's live charts: per tenant, how many requests were accepted, created
//! and dead-lettered in each second of the last 15 minutes, and the accept-to-created lag's
//! p50 and p99 in each 10 seconds. Kept in memory, in fixed rings: a tenant's view costs the
//! same whatever its traffic.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use flowgate_core::metrics::{Labels, Metric};

/// Seconds of history kept.
pub const WINDOW_SECS: usize = 900;
/// Seconds in one lag slot.
pub const LAG_SLOT_SECS: usize = 10;
const LAG_SLOTS: usize = WINDOW_SECS / LAG_SLOT_SECS;
/// Lag buckets: bucket `i` holds lags up to 1 ms × 1.5^i (the last, anything longer).
const LAG_BUCKETS: usize = 40;
/// The most tenants given a view; later ones are not charted (the page says so).
pub const MAX_TENANTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Second {
    at: i64,
    counts: [u32; 3],
}

#[derive(Clone, Copy)]
struct LagSlot {
    at: i64,
    buckets: [u32; LAG_BUCKETS],
}

struct Rings {
    seconds: Vec<Second>,
    lag: Vec<LagSlot>,
}

impl Rings {
    fn new() -> Self {
        Self {
            seconds: vec![Second::default(); WINDOW_SECS],
            lag: vec![
                LagSlot {
                    at: 0,
                    buckets: [0; LAG_BUCKETS],
                };
                LAG_SLOTS
            ],
        }
    }

    fn count(&mut self, now: i64, which: usize, n: u32) {
        let slot = &mut self.seconds[now.rem_euclid(WINDOW_SECS as i64) as usize];
        if slot.at != now {
            *slot = Second {
                at: now,
                counts: [0; 3],
            };
        }
        slot.counts[which] = slot.counts[which].saturating_add(n);
    }

    fn lag(&mut self, now: i64, seconds: f64) {
        let start = now - now.rem_euclid(LAG_SLOT_SECS as i64);
        let index = (start / LAG_SLOT_SECS as i64).rem_euclid(LAG_SLOTS as i64) as usize;
        let slot = &mut self.lag[index];
        if slot.at != start {
            *slot = LagSlot {
                at: start,
                buckets: [0; LAG_BUCKETS],
            };
        }
        let bucket = lag_bucket(seconds);
        slot.buckets[bucket] = slot.buckets[bucket].saturating_add(1);
    }
}

/// The bucket of a lag: the first whose bound is at least it.
fn lag_bucket(seconds: f64) -> usize {
    (0..LAG_BUCKETS)
        .find(|&i| seconds <= bucket_bound(i))
        .unwrap_or(LAG_BUCKETS - 1)
}

fn bucket_bound(i: usize) -> f64 {
    0.001 * 1.5f64.powi(i as i32)
}

/// One second's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountPoint {
    /// The second, in Unix seconds.
    pub t: i64,
    /// Start requests accepted (new ones, not replays).
    pub accepted: u32,
    /// Instances created.
    pub created: u32,
    /// Requests dead-lettered.
    pub dead: u32,
}

/// One lag slot's percentiles, in seconds (bucket bounds: within a factor of 1.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagPoint {
    /// The slot's first second, in Unix seconds.
    pub t: i64,
    /// Instances created in the slot.
    pub n: u32,
    /// The median lag.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// A tenant's charts, oldest point first, ending at the current second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    /// The current second.
    pub now: i64,
    /// Seconds per count point.
    pub count_resolution_secs: usize,
    /// Seconds per lag point.
    pub lag_resolution_secs: usize,
    /// Every second of the window (zeros where nothing happened).
    pub counts: Vec<CountPoint>,
    /// Every lag slot of the window that saw a creation.
    pub lag: Vec<LagPoint>,
    /// False when this tenant has no view (more than the server keeps).
    pub tracked: bool,
}

/// Every tenant's rings.
#[derive(Default)]
pub struct LiveSeries {
    tenants: Mutex<HashMap<String, Rings>>,
}

impl LiveSeries {
    /// Adds a record to its tenant's rings, if it is one the page charts.
    pub fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64, now: i64) {
        let Some(tenant) = labels.tenant else { return };
        let which = match (metric, labels.outcome) {
            (Metric::Accepted, "accepted") => Some(0),
            (Metric::Created, "created") => Some(1),
            (Metric::DeadLettered, _) => Some(2),
            (Metric::Lag, _) => None,
            _ => return,
        };
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        // A known tenant (every record but its first) costs a lookup, not a key.
        if !tenants.contains_key(tenant) {
            if tenants.len() >= MAX_TENANTS {
                return;
            }
            tenants.insert(tenant.to_owned(), Rings::new());
        }
        let Some(rings) = tenants.get_mut(tenant) else {
            return;
        };
        match which {
            Some(which) => rings.count(now, which, value.max(0.0).round() as u32),
            None => rings.lag(now, value),
        }
    }

    /// `tenant`'s charts as of `now`.
    pub fn live(&self, tenant: &str, now: i64) -> Live {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let rings = tenants.get(tenant);
        let first = now - WINDOW_SECS as i64 + 1;
        let counts = (first..=now)
            .map(|t| {
                let slot = rings.map(|r| r.seconds[t.rem_euclid(WINDOW_SECS as i64) as usize]);
                let counts = slot.filter(|s| s.at == t).map_or([0; 3], |s| s.counts);
                CountPoint {
                    t,
                    accepted: counts[0],
                    created: counts[1],
                    dead: counts[2],
                }
            })
            .collect();
        let mut lag: Vec<LagPoint> = rings
            .map(|r| {
                r.lag
                    .iter()
                    .filter(|s| s.at >= first - LAG_SLOT_SECS as i64 && s.at <= now)
                    .filter_map(lag_point)
                    .collect()
            })
            .unwrap_or_default();
        lag.sort_by_key(|p| p.t);
        Live {
            now,
            count_resolution_secs: 1,
            lag_resolution_secs: LAG_SLOT_SECS,
            counts,
            lag,
            tracked: rings.is_some() || tenants.len() < MAX_TENANTS,
        }
    }
}

fn lag_point(slot: &LagSlot) -> Option<LagPoint> {
    let n: u32 = slot.buckets.iter().sum();
    if n == 0 {
        return None;
    }
    let quantile = |q: f64| {
        let rank = ((f64::from(n) * q).ceil() as u32).max(1);
        let mut seen = 0;
        for (i, c) in slot.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_bound(i);
            }
        }
        bucket_bound(LAG_BUCKETS - 1)
    };
    Some(LagPoint {
        t: slot.at,
        n,
        p50: quantile(0.5),
        p99: quantile(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_second_and_old_ones_fall_out() {
        let series = LiveSeries::default();
        let now = 1_000_000;
        series.record(
            Metric::Accepted,
            &Labels::of("a", "w", "accepted"),
            1.0,
            now - 5,
        );
        series.record(
            Metric::Accepted,
            &Labels::of("a", "w", "replayed"),
            1.0,
            now - 5,
        );
        series.record(Metric::Created, &Labels::of("a", "w", "created"), 1.0, now);
        series.record(
            Metric::DeadLettered,
            &Labels::of("a", "w", "poison"),
            1.0,
            now,
        );
        series.record(
            Metric::Accepted,
            &Labels::of("b", "w", "accepted"),
            1.0,
            now,
        );
        let live = series.live("a", now);
        assert_eq!(live.counts.len(), WINDOW_SECS);
        assert_eq!(
            live.counts.last().map(|p| (p.t, p.created, p.dead)),
            Some((now, 1, 1))
        );
        let five_ago = &live.counts[WINDOW_SECS - 6];
        assert_eq!(
            (five_ago.t, five_ago.accepted),
            (now - 5, 1),
            "replays not counted"
        );
        assert_eq!(
            live.counts.iter().map(|p| p.accepted).sum::<u32>(),
            1,
            "b's not a's"
        );
        let later = series.live("a", now + WINDOW_SECS as i64);
        assert!(
            later
                .counts
                .iter()
                .all(|p| p.accepted + p.created + p.dead == 0)
        );
    }

    #[test]
    fn lag_percentiles_come_from_the_slot() {
        let series = LiveSeries::default();
        let now = 2_000_000;
        for n in 0..100 {
            let lag = if n < 98 { 0.004 } else { 2.0 };
            series.record(Metric::Lag, &Labels::of("a", "w", ""), lag, now);
        }
        let live = series.live("a", now);
        assert_eq!(live.lag.len(), 1);
        let point = &live.lag[0];
        assert_eq!(point.n, 100);
        assert!(point.p50 >= 0.004 && point.p50 < 0.004 * 1.5, "{point:?}");
        assert!(point.p99 >= 2.0 && point.p99 < 3.0, "{point:?}");
    }
}
