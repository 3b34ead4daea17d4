//! Paging of listings: one limit check, one cursor codec and one page cut, shared by every
//! listing (instances, dead letters) and every host.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::Page;

/// The page sizes a listing allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBounds {
    /// The size when the client names none.
    pub default: usize,
    /// The largest size.
    pub max: usize,
}

/// A workflow's instances.
pub const INSTANCES: PageBounds = PageBounds {
    default: 20,
    max: 100,
};

/// The dead-letter queue.
pub const DEAD_LETTERS: PageBounds = PageBounds {
    default: 100,
    max: 1000,
};

/// `limit` and `cursor`, as a client gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PageParams {
    /// How many items, as text.
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A checked page request: how many items, and after which position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<C> {
    /// How many items.
    pub limit: usize,
    /// The position the page starts after.
    pub after: Option<C>,
}

impl<C: DeserializeOwned> PageRequest<C> {
    /// Checks the limit against `bounds` and decodes the cursor.
    pub fn parse(params: &PageParams, bounds: PageBounds) -> Result<Self, Error> {
        let limit = match params.limit.as_deref() {
            None => bounds.default,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=bounds.max).contains(n))
                .ok_or_else(|| {
                    Error::invalid(
                        "limit",
                        format!("must be a whole number from 1 to {}", bounds.max),
                    )
                })?,
        };
        let after = match params.cursor.as_deref() {
            None => None,
            Some(text) => Some(
                decode_cursor(text)
                    .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API returned"))?,
            ),
        };
        Ok(Self { limit, after })
    }

    /// How many items to fetch: one more than the page, to tell whether another exists.
    pub fn probe(&self) -> usize {
        self.limit + 1
    }
}

/// Cuts items fetched with [`PageRequest::probe`] to a page; `next_cursor` is the position
/// of its last item when another page exists.
pub fn page<T, C: Serialize>(
    mut items: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> C,
) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| encode_cursor(&cursor_of(last)))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A cursor's opaque text form: URL-safe base64 of its JSON.
pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Parses [`encode_cursor`]'s text form; `None` if it is not one.
pub fn decode_cursor<T: DeserializeOwned>(text: &str) -> Option<T> {
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<&str>, cursor: Option<&str>) -> PageParams {
        PageParams {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        let ok = PageRequest::<u32>::parse(&params(None, None), INSTANCES).expect("default");
        assert_eq!((ok.limit, ok.after), (20, None));
        for bad in ["0", "101", "x", "-1"] {
            assert!(PageRequest::<u32>::parse(&params(Some(bad), None), INSTANCES).is_err());
        }
        assert!(PageRequest::<u32>::parse(&params(None, Some("bogus")), INSTANCES).is_err());
        let cursor = encode_cursor(&7u32);
        let ok = PageRequest::<u32>::parse(&params(Some("100"), Some(&cursor)), INSTANCES);
        assert_eq!(ok.expect("valid").after, Some(7));
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let full = page(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(full.items, [1, 2]);
        assert_eq!(
            full.next_cursor.as_deref().and_then(decode_cursor::<i32>),
            Some(2)
        );
        assert_eq!(page(vec![1, 2], 2, |n| *n).next_cursor, None);
    }
}
