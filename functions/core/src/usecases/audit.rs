//! The audit: proof, at any time, that no start a tenant was answered for was lost. For the
//! requests accepted in a window it counts where each one is (its instance created, of
//! which handed off; dead-lettered; in flight within the grace period; overdue past it) and
//! checks that they add up to what was accepted, listing whatever does not.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Flowgate;
use crate::error::Error;
use crate::model::RequestStatus;
use crate::ports::{AuditFacts, AuditGroup, PendingRequest};

/// The longest window one audit counts.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);
/// The most overdue (and unaccounted) requests an audit lists by id.
pub const LISTED: usize = 100;

/// The window an audit counts, as a caller gives it: `from` (inclusive) and `to`
/// (exclusive), RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AuditParams {
    /// The window's start (RFC 3339, inclusive): requests accepted at or after it.
    #[cfg_attr(feature = "clap", arg(long))]
    pub from: DateTime<Utc>,
    /// The window's end (RFC 3339, exclusive): requests accepted before it.
    #[cfg_attr(feature = "clap", arg(long))]
    pub to: DateTime<Utc>,
}

impl AuditParams {
    /// The window, checked: its end after its start, at most [`MAX_WINDOW`] long.
    fn window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
        if self.to <= self.from {
            return Err(Error::invalid("to", "must be after from"));
        }
        if (self.to - self.from).to_std().unwrap_or(Duration::MAX) > MAX_WINDOW {
            return Err(Error::invalid(
                "to",
                format!(
                    "the window is at most {}; audit a longer span window by window",
                    humantime::format_duration(MAX_WINDOW)
                ),
            ));
        }
        Ok((self.from, self.to))
    }
}

/// How many requests are where, in total or for one workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests accepted in the window (every durable acknowledgement).
    pub accepted: u64,
    /// Of them, those whose instance exists.
    pub created: u64,
    /// Of the created, those handed to their target.
    pub dispatched: u64,
    /// Of them, those dead-lettered (visible, with a reason), archived ones included.
    pub dead: u64,
    /// Of the dead, those whose instance exists and whose hand-off failed.
    pub dead_hand_offs: u64,
    /// Of the dead, those archived from the dead-letter queue.
    pub archived: u64,
    /// Of them, those accepted and not yet settled, within the grace period.
    pub in_flight: u64,
    /// Of them, those accepted and not yet settled, past the grace period (the reconciler
    /// re-sends them).
    pub overdue: u64,
    /// Of them, those waiting for a slot under their workflow's concurrency limit.
    #[serde(default)]
    pub waiting: u64,
    /// Of them, those skipped by their workflow's concurrency limit (no instance, by
    /// policy, with a reason).
    #[serde(default)]
    pub skipped: u64,
    /// Of them, those in none of the above: a status that claims an instance the store
    /// does not hold. Always 0 while the invariant holds.
    pub unaccounted: u64,
}

impl Counts {
    fn add(&mut self, group: &AuditGroup) {
        let n = group.count;
        self.accepted += n;
        match where_it_is(group) {
            Place::Created { dispatched } => {
                self.created += n;
                if dispatched {
                    self.dispatched += n;
                }
            }
            Place::Dead { archived, hand_off } => {
                self.dead += n;
                if archived {
                    self.archived += n;
                }
                if hand_off {
                    self.dead_hand_offs += n;
                }
            }
            Place::InFlight => self.in_flight += n,
            Place::Overdue => self.overdue += n,
            Place::Waiting => self.waiting += n,
            Place::Skipped => self.skipped += n,
            Place::Unaccounted => self.unaccounted += n,
        }
    }

    /// Whether every accepted request is in exactly one place.
    fn holds(&self) -> bool {
        self.unaccounted == 0
            && self.accepted
                == self.created
                    + self.dead
                    + self.in_flight
                    + self.overdue
                    + self.waiting
                    + self.skipped
    }
}

/// Where a group of requests is.
enum Place {
    Created { dispatched: bool },
    Dead { archived: bool, hand_off: bool },
    InFlight,
    Overdue,
    Waiting,
    Skipped,
    Unaccounted,
}

/// The rule: a request is created when its status says so and its instance exists; dead
/// when dead-lettered or archived; in flight or overdue while accepted, by the cutoff.
fn where_it_is(group: &AuditGroup) -> Place {
    match group.status {
        RequestStatus::Created | RequestStatus::Dispatched if group.instance => Place::Created {
            dispatched: group.status == RequestStatus::Dispatched,
        },
        RequestStatus::Created | RequestStatus::Dispatched => Place::Unaccounted,
        RequestStatus::Dead | RequestStatus::Archived => Place::Dead {
            archived: group.status == RequestStatus::Archived,
            hand_off: group.instance,
        },
        RequestStatus::Accepted if group.past_grace => Place::Overdue,
        RequestStatus::Accepted => Place::InFlight,
        RequestStatus::Waiting => Place::Waiting,
        RequestStatus::Skipped => Place::Skipped,
    }
}

/// The invariant, and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invariant {
    /// What is checked.
    pub equation: String,
    /// Whether it holds.
    pub holds: bool,
}

/// An overdue request, with its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    /// Its id.
    pub request_id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// How long since its last send (or its acceptance), in whole seconds.
    pub age_seconds: u64,
}

/// An audit of one tenant's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// The window's start (inclusive).
    pub from: DateTime<Utc>,
    /// The window's end (exclusive).
    pub to: DateTime<Utc>,
    /// When it was counted.
    pub as_of: DateTime<Utc>,
    /// The grace period that parts in-flight from overdue, in seconds.
    pub grace_seconds: u64,
    /// Every workflow together.
    #[serde(flatten)]
    pub total: Counts,
    /// `accepted = created + dead + in_flight + overdue + waiting + skipped`, checked.
    pub invariant: Invariant,
    /// Each workflow's counts, by code.
    pub by_workflow: BTreeMap<String, Counts>,
    /// The overdue requests, oldest first (at most [`LISTED`]).
    pub overdue_requests: Vec<Overdue>,
    /// The unaccounted requests' ids (at most [`LISTED`]).
    pub unaccounted_requests: Vec<String>,
    /// Whether each instance was looked up (false: a request's status is taken at its
    /// word, on a store that cannot look them up without a read each).
    pub instances_checked: bool,
    /// Whether the window lies within the retention period: false when part of it is older,
    /// and finished requests from then may have been removed and are not counted.
    pub complete: bool,
    /// Why the counts may be incomplete, when they may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Audit {
    /// The audit of `facts`, counted at `now` with `grace`, for a store that keeps finished
    /// requests for `retention`.
    fn of(
        facts: AuditFacts,
        window: (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
        grace: Duration,
        retention: Duration,
    ) -> Self {
        let mut total = Counts::default();
        let mut by_workflow: BTreeMap<String, Counts> = BTreeMap::new();
        for group in &facts.groups {
            total.add(group);
            by_workflow
                .entry(group.workflow.clone())
                .or_default()
                .add(group);
        }
        let retained_since = now - chrono::Duration::from_std(retention).unwrap_or_default();
        let complete = window.0 >= retained_since;
        Self {
            from: window.0,
            to: window.1,
            as_of: now,
            grace_seconds: grace.as_secs(),
            invariant: Invariant {
                equation: "accepted = created + dead + in_flight + overdue + waiting + skipped"
                    .into(),
                holds: total.holds(),
            },
            total,
            by_workflow,
            overdue_requests: facts
                .overdue
                .into_iter()
                .map(|p: PendingRequest| Overdue {
                    age_seconds: (now - p.since).num_seconds().max(0) as u64,
                    request_id: p.request_id,
                    workflow: p.workflow,
                })
                .collect(),
            unaccounted_requests: facts.missing_instances,
            instances_checked: facts.instances_checked,
            complete,
            note: (!complete).then(|| {
                format!(
                    "the window begins before the retention period ({} days): finished \
                     requests accepted before {} may have been removed, and are not counted",
                    retention.as_secs() / 86_400,
                    retained_since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }),
        }
    }
}

impl Flowgate {
    /// Audits the requests `tenant` accepted in the window.
    pub async fn audit(&self, tenant: &str, params: &AuditParams) -> Result<Audit, Error> {
        let window = params.window()?;
        let now = Utc::now();
        let cutoff = now - chrono::Duration::from_std(self.grace).unwrap_or_default();
        let facts = self
            .store
            .audit(tenant, window.0, window.1, cutoff, LISTED)
            .await?;
        Ok(Audit::of(facts, window, now, self.grace, self.retention))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(
        workflow: &str,
        status: RequestStatus,
        past: bool,
        instance: bool,
        n: u64,
    ) -> AuditGroup {
        AuditGroup {
            workflow: workflow.into(),
            status,
            past_grace: past,
            instance,
            count: n,
        }
    }

    #[test]
    fn every_request_is_in_one_place_and_a_missing_instance_breaks_the_invariant() {
        use RequestStatus as S;
        let now = Utc::now();
        let window = (now - chrono::Duration::hours(1), now);
        let day = Duration::from_secs(86_400);
        let facts = AuditFacts {
            groups: vec![
                group("a", S::Created, false, true, 5),
                group("a", S::Dispatched, true, true, 3),
                group("a", S::Dead, true, true, 1),
                group("a", S::Dead, true, false, 2),
                group("b", S::Archived, false, false, 1),
                group("b", S::Accepted, false, false, 4),
                group("b", S::Accepted, true, false, 2),
            ],
            instances_checked: true,
            ..AuditFacts::default()
        };
        let audit = Audit::of(facts.clone(), window, now, Duration::from_secs(60), day);
        let t = &audit.total;
        assert_eq!(
            (
                t.accepted,
                t.created,
                t.dispatched,
                t.dead,
                t.in_flight,
                t.overdue
            ),
            (18, 8, 3, 4, 4, 2)
        );
        assert_eq!((t.dead_hand_offs, t.archived, t.unaccounted), (1, 1, 0));
        assert!(audit.invariant.holds);
        assert_eq!(audit.by_workflow["b"].accepted, 7);
        assert!(audit.complete);
        let mut broken = facts;
        broken.groups.push(group("a", S::Created, false, false, 1));
        broken.missing_instances.push("r-9".into());
        let audit = Audit::of(broken, window, now, Duration::from_secs(60), day);
        assert_eq!(audit.total.unaccounted, 1);
        assert!(!audit.invariant.holds);
        assert_eq!(audit.unaccounted_requests, ["r-9"]);
        // A window older than the retention says so.
        let old = (now - chrono::Duration::days(3), now);
        let audit = Audit::of(
            AuditFacts::default(),
            old,
            now,
            Duration::from_secs(60),
            day,
        );
        assert!(!audit.complete);
        assert!(audit.note.is_some_and(|n| n.contains("retention")));
    }
}
