//! The docs tell the truth about what is generated from code: the settings table of
//! docs/configuration.md is exactly what the settings declare. `BLESS=1` rewrites it.

use std::path::PathBuf;

const BEGIN: &str = "<!-- settings:begin -->\n";
const END: &str = "<!-- settings:end -->";

#[test]
fn the_settings_table_is_generated_from_the_declarations() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let start = doc.find(BEGIN).expect("a settings:begin marker") + BEGIN.len();
    let end = doc.find(END).expect("a settings:end marker");
    let table = flowgate_settings::markdown_table();
    if doc[start..end] == table {
        return;
    }
    if std::env::var_os("BLESS").is_some() {
        let fresh = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, fresh).expect("write docs/configuration.md");
        return;
    }
    panic!(
        "docs/configuration.md's settings table is stale; run \
         `BLESS=1 cargo test -p flowgate-tests --test suite docs::`"
    );
}
