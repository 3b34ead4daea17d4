//! The formats a setting's value can take, with their parsers and their wording in the docs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The form of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A duration in humantime form (`500ms`, `30s`, `2m`), within bounds.
    Duration {
        /// The shortest accepted.
        min: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// A whole number, within bounds.
    Count {
        /// The smallest accepted.
        min: u64,
        /// The largest accepted.
        max: u64,
    },
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A comma-separated list of words from a fixed set.
    List(&'static [&'static str]),
    /// `host:port`.
    Address,
    /// A filesystem path.
    Path,
    /// `true` or `false`.
    Flag,
    /// Free text (a name, a URL).
    Text,
    /// Free text that may be empty.
    OptionalText,
}

impl Format {
    /// How the docs describe the format.
    pub fn describe(&self) -> String {
        match self {
            Format::Duration { min, max } => format!(
                "duration, {} to {}",
                humantime::format_duration(*min),
                humantime::format_duration(*max)
            ),
            Format::Count { min, max } => format!("whole number, {min} to {max}"),
            Format::Choice(words) => format!("one of {}", words.join(", ")),
            Format::List(words) => format!("comma-separated, of {}", words.join(", ")),
            Format::Address => "host:port".into(),
            Format::Flag => "true or false".into(),
            Format::Path => "path".into(),
            Format::Text => "text".into(),
            Format::OptionalText => "text, may be empty".into(),
        }
    }

    /// A placeholder for the value in usage text.
    pub fn value_name(&self) -> &'static str {
        match self {
            Format::Duration { .. } => "DURATION",
            Format::Count { .. } => "N",
            Format::Choice(_) => "WORD",
            Format::List(_) => "LIST",
            Format::Address => "HOST:PORT",
            Format::Flag => "BOOL",
            Format::Path => "PATH",
            Format::Text | Format::OptionalText => "TEXT",
        }
    }

    /// Parses a duration and checks it is within this format's bounds.
    pub fn duration(&self, text: &str) -> Result<Duration, String> {
        let value = parse_duration(text)?;
        match self {
            Format::Duration { min, max } if value < *min || value > *max => {
                Err(format!("is out of range: {}", self.describe()))
            }
            _ => Ok(value),
        }
    }

    /// Parses a whole number and checks it is within this format's bounds.
    pub fn count<T: TryFrom<u64>>(&self, text: &str) -> Result<T, String> {
        let value: u64 = text
            .parse()
            .map_err(|_| format!("is not a whole number ({})", self.describe()))?;
        if let Format::Count { min, max } = self
            && !(*min..=*max).contains(&value)
        {
            return Err(format!("is out of range: {}", self.describe()));
        }
        T::try_from(value).map_err(|_| format!("is out of range: {}", self.describe()))
    }
}

/// Parses a humantime duration, with an error that shows the expected form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("is not a duration: {e} (examples: 500ms, 30s, 2m, 7d)"))
}

pub(crate) fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("is not a host:port address ({e})"))
}

pub(crate) fn path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(PathBuf::from(text))
}

pub(crate) fn text(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(text.to_owned())
}

pub(crate) fn choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(text))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            format!("is not one of {}", words.join(", "))
        })
}

pub(crate) fn list<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<Vec<T>, String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if items.is_empty() {
        let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        return Err(format!("names none of {}", words.join(", ")));
    }
    items
        .into_iter()
        .map(|item| choice(item, choices).map_err(|e| format!("({item:?}) {e}")))
        .collect()
}

pub(crate) fn flag(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("is not true or false".into()),
    }
}
