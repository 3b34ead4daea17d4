//! The integration suite, one binary: each module was once its own test target. One
//! binary links once, which keeps a clean build small (each linked test binary is tens of
//! megabytes) and quick. Run one module with `cargo test -p flowgate-tests --test suite <module>::`.

mod backfills;
mod backfills_aws;
mod batch;
mod capacity_aws;
mod conformance_aws;
mod conformance_embedded;
mod dashboard;
mod dlq_aws;
mod dlq_embedded;
mod docs;
mod dolphin;
mod handoff;
mod handoff_aws;
mod lambda;
mod lambda_build;
mod openapi;
mod pipeline;
mod pipeline_aws;
mod router;
mod runs;
mod runs_aws;
mod schedules;
mod schedules_aws;
mod security;
mod targets_aws;
mod template;
mod usecases;
mod work;

/// Every file of this directory is a module of the binary: one left out would never run.
#[test]
fn every_file_of_the_suite_is_one_of_its_modules() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite");
    let main = include_str!("main.rs");
    for entry in std::fs::read_dir(&here).expect("the suite's directory") {
        let path = entry.expect("an entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            assert!(
                main.lines().any(|l| l == format!("mod {stem};")),
                "tests/tests/suite/{stem}.rs is not declared in main.rs, so it never runs"
            );
        }
    }
}
