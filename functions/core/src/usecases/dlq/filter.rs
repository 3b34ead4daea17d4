//! What a dead-letter operation selects, declared once: [`FilterParams`] is the form every
//! caller gives (query string, JSON body, or command-line flags), [`LetterFilter`] the one
//! checked form the use cases take, and [`Scope`] what the caller may see.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::LetterSummary;
use crate::error::Error;
use crate::paging::PageParams;

/// Which dead letters, as a caller gives it; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FilterParams {
    /// Only this tenant's letters.
    #[cfg_attr(feature = "clap", arg(long))]
    pub tenant: Option<String>,
    /// Only this workflow's letters.
    #[cfg_attr(feature = "clap", arg(long))]
    pub workflow: Option<String>,
    /// A failure kind (permanent, exhausted, poison, unknown) or a substring of the reason.
    #[cfg_attr(feature = "clap", arg(long))]
    pub error: Option<String>,
    /// Only letters dead-lettered at least this long ago (e.g. 15m, 2h, 7d).
    #[cfg_attr(feature = "clap", arg(long))]
    pub older_than: Option<String>,
    /// Only letters dead-lettered at most this long ago.
    #[cfg_attr(feature = "clap", arg(long))]
    pub newer_than: Option<String>,
}

/// The query of `GET /v1/dlq`: a filter and a page. Unknown parameters are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Which letters.
    #[serde(flatten)]
    pub filter: FilterParams,
    /// Which page.
    #[serde(flatten)]
    pub page: PageParams,
}

/// A replay, as a caller asks for it. Unknown fields are refused: a misspelt filter must
/// never widen a replay to every letter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ReplayParams {
    /// Which letters.
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub filter: FilterParams,
    /// At most this many letters.
    #[cfg_attr(feature = "clap", arg(long))]
    pub max: Option<u64>,
    /// At most this many letters per second (50, 50/s, 600/m).
    #[cfg_attr(feature = "clap", arg(long))]
    pub rate: Option<Rate>,
    /// Report what would happen, and change nothing.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub dry_run: bool,
}

/// Which letters an operation applies to, checked; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LetterFilter {
    /// Only this tenant's letters.
    pub tenant: Option<String>,
    /// Only this workflow's letters.
    pub workflow: Option<String>,
    /// A failure kind or a case-insensitive substring of the reason.
    pub error: Option<String>,
    /// Only letters dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    /// Only letters dead-lettered at most this long ago.
    pub newer_than: Option<Duration>,
}

impl TryFrom<FilterParams> for LetterFilter {
    type Error = Error;

    fn try_from(p: FilterParams) -> Result<Self, Error> {
        let age = |field: &str, text: Option<String>| {
            text.map(|t| {
                flowgate_settings::parse_duration(t.trim())
                    .map_err(|reason| Error::invalid(field, reason))
            })
            .transpose()
        };
        let text = |field: &str, value: Option<String>| match value {
            Some(v) if v.trim().is_empty() => Err(Error::invalid(field, "is empty")),
            other => Ok(other),
        };
        Ok(Self {
            tenant: text("tenant", p.tenant)?,
            workflow: text("workflow", p.workflow)?,
            error: text("error", p.error)?,
            older_than: age("older_than", p.older_than)?,
            newer_than: age("newer_than", p.newer_than)?,
        })
    }
}

impl LetterFilter {
    /// Whether the filter selects every letter.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &LetterSummary) -> bool {
        let age = Duration::from_secs(u64::try_from(letter.age_seconds).unwrap_or(0));
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        same(&self.tenant, &letter.tenant)
            && same(&self.workflow, &letter.workflow)
            && self.error.as_ref().is_none_or(|e| {
                e.eq_ignore_ascii_case(letter.error_kind.as_str())
                    || letter.error.to_lowercase().contains(&e.to_lowercase())
            })
            && self.older_than.is_none_or(|d| age >= d)
            && self.newer_than.is_none_or(|d| age <= d)
    }
}

/// A pace in letters per second, from 1 a day to 100,000 a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    const SLOWEST: f64 = 1.0 / 86_400.0;
    const FASTEST: f64 = 100_000.0;

    /// A rate of `per_second` letters a second, if it is within bounds.
    pub fn per_second(per_second: f64) -> Result<Self, String> {
        if per_second.is_finite() && (Self::SLOWEST..=Self::FASTEST).contains(&per_second) {
            Ok(Self(per_second))
        } else {
            Err(format!(
                "must be a number of letters per second from 1 a day ({:.6}) to {}",
                Self::SLOWEST,
                Self::FASTEST
            ))
        }
    }

    /// Letters per second.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The time between two letters.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `50`, `50/s`, `600/m` or `10/h`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (count, per) = text.split_once('/').unwrap_or((text, "s"));
        let seconds = match per.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit /{other}: use /s, /m or /h")),
        };
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a number (examples: 50/s, 600/m)"))?;
        Self::per_second(count / seconds)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(f64),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Number(n) => Self::per_second(n),
            Given::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// What a caller may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An operator on the backend itself: every tenant, any number of letters.
    Operator,
    /// An API caller: only its own tenant, and a bounded replay per call (so a call ends
    /// within an API gateway's timeout).
    Tenant(String),
}

/// The most letters one tenant-scoped replay handles; call again for more.
pub const MAX_SCOPED_REPLAY: u64 = 1000;
/// The letters a tenant-scoped replay handles when it names no `max`.
pub const DEFAULT_SCOPED_REPLAY: u64 = 100;

impl Scope {
    /// Confines a filter to what this caller may see.
    pub fn confine(&self, mut filter: LetterFilter) -> Result<LetterFilter, Error> {
        if let Scope::Tenant(tenant) = self {
            if filter.tenant.as_ref().is_some_and(|t| t != tenant) {
                return Err(Error::invalid("tenant", "can only name your own tenant"));
            }
            filter.tenant = Some(tenant.clone());
        }
        Ok(filter)
    }

    /// Checks a replay's `max` and applies this caller's bound.
    pub fn replay_max(&self, max: Option<u64>) -> Result<Option<usize>, Error> {
        let bound = match self {
            Scope::Operator => u64::MAX,
            Scope::Tenant(_) => MAX_SCOPED_REPLAY,
        };
        let max = match (self, max) {
            (Scope::Tenant(_), None) => Some(DEFAULT_SCOPED_REPLAY),
            (_, given) => given,
        };
        match max {
            Some(m) if !(1..=bound).contains(&m) => Err(Error::invalid(
                "max",
                format!("must be a whole number from 1 to {bound}"),
            )),
            Some(m) => Ok(Some(usize::try_from(m).unwrap_or(usize::MAX))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_declaration_reads_a_query_a_body_and_refuses_unknown_fields() {
        let q: ListParams =
            serde_json::from_str(r#"{"workflow":"a","limit":"5","older_than":"1h"}"#).unwrap();
        assert_eq!(q.filter.workflow.as_deref(), Some("a"));
        assert_eq!(q.page.limit.as_deref(), Some("5"));
        assert!(serde_json::from_str::<ListParams>(r#"{"workflw":"a"}"#).is_err());
        let r: ReplayParams =
            serde_json::from_str(r#"{"workflow":"a","max":3,"rate":"600/m","dry_run":true}"#)
                .unwrap();
        assert_eq!(
            (r.max, r.rate.map(Rate::get), r.dry_run),
            (Some(3), Some(10.0), true)
        );
        assert!(serde_json::from_str::<ReplayParams>(r#"{"workflw":"a"}"#).is_err());
        assert!(serde_json::from_str::<ReplayParams>(r#"{"rate":5e-324}"#).is_err());
        assert!(serde_json::from_str::<ReplayParams>(r#"{"rate":-1}"#).is_err());
    }

    #[test]
    fn filters_and_scopes_are_checked() {
        let bad = FilterParams {
            older_than: Some("soon".into()),
            ..FilterParams::default()
        };
        assert!(LetterFilter::try_from(bad).is_err());
        let mine = Scope::Tenant("a".into());
        let other = LetterFilter {
            tenant: Some("b".into()),
            ..LetterFilter::default()
        };
        assert!(mine.confine(other).is_err());
        assert_eq!(
            mine.confine(LetterFilter::default())
                .unwrap()
                .tenant
                .as_deref(),
            Some("a")
        );
        assert_eq!(mine.replay_max(None).unwrap(), Some(100));
        assert!(mine.replay_max(Some(1001)).is_err());
        assert!(Scope::Operator.replay_max(Some(0)).is_err());
        assert_eq!(Scope::Operator.replay_max(None).unwrap(), None);
        assert_eq!("600/m".parse::<Rate>().map(Rate::get), Ok(10.0));
        assert!("fast".parse::<Rate>().is_err());
    }
}
