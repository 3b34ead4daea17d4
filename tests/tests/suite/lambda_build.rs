//! What a plain `sam build` makes: each function in template.yaml is built by cargo-lambda
//! with `--release`, and its package's `[package.metadata.lambda.build]` variables must turn
//! the release profile into the size-tuned `bootstrap` profile of Cargo.toml, setting for
//! setting.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

const TEMPLATE: &str = include_str!("../../../template.yaml");
const MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The `key = value` lines of one `[section]` of a TOML file, values unquoted.
fn section(toml: &str, name: &str) -> BTreeMap<String, String> {
    let header = format!("[{name}]");
    toml.lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// The binary each `rust-cargolambda` function builds.
fn template_binaries() -> Vec<String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(TEMPLATE).expect("template parses");
    let resources = doc["Resources"].as_mapping().expect("resources");
    resources
        .values()
        .filter(|r| r["Metadata"]["BuildMethod"].as_str() == Some("rust-cargolambda"))
        .map(|r| {
            r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("a Binary build property")
                .to_owned()
        })
        .collect()
}

/// Each workspace package's `metadata`, by the name of each binary it builds.
fn metadata_by_binary() -> BTreeMap<String, Value> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut found = BTreeMap::new();
    for package in doc["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.contains(&"bin".into()))
            {
                let name = target["name"].as_str().expect("a name").to_owned();
                found.insert(name, package["metadata"].clone());
            }
        }
    }
    found
}

#[test]
fn sam_builds_every_function_with_the_bootstrap_profiles_settings() {
    let profile: BTreeMap<String, String> = section(MANIFEST, "profile.bootstrap")
        .into_iter()
        .filter(|(k, _)| k != "inherits")
        .map(|(k, v)| {
            let var = format!(
                "CARGO_PROFILE_RELEASE_{}",
                k.to_uppercase().replace('-', "_")
            );
            (var, v)
        })
        .collect();
    assert!(profile.len() >= 5, "the bootstrap profile: {profile:?}");
    let metadata = metadata_by_binary();
    let binaries = template_binaries();
    assert_eq!(binaries.len(), 3, "{binaries:?}");
    for binary in binaries {
        let vars: BTreeMap<String, String> = metadata[&binary]["lambda"]["build"]["env_var"]
            .as_array()
            .unwrap_or_else(|| panic!("{binary}: no [package.metadata.lambda.build] env_var"))
            .iter()
            .filter_map(|v| v.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            vars, profile,
            "{binary}: sam build would not use the bootstrap profile"
        );
    }
}
