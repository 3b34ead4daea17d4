//! The settings table of docs/configuration.md, rendered from the specs.

use crate::Host;
use crate::specs::ALL;

/// The Markdown table of every setting: flag, variable, format, default, readers, meaning.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Flag | Variable | Format | Default | Read by | Meaning |\n|---|---|---|---|---|---|\n",
    );
    for spec in ALL {
        let readers: Vec<&str> = Host::ALL
            .iter()
            .filter(|h| spec.read_by.contains(h))
            .map(|h| h.name())
            .collect();
        let default = if spec.default.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", spec.default)
        };
        out.push_str(&format!(
            "| `--{}` | `{}` | {} | {} | {} | {} |\n",
            spec.flag,
            spec.env,
            spec.format.describe(),
            default,
            readers.join(", "),
            spec.meaning
        ));
    }
    out
}
