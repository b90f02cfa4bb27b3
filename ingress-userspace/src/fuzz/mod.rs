//! Property-based fuzzing (proptest) of the code that reads untrusted input: manifest files
//! through parsing, the store and translation ([`manifests`]), random annotations on
//! Ingresses ([`annotations`]), and the proxy's request header handling ([`headers`]).
//!
//! Each target mutates seed inputs kept in `ingress-userspace/fuzz-corpus/<target>/` (add a
//! file there to steer it, e.g. the input of a bug found). The case count is small by default
//! so `cargo test` stays fast; `XDP_INGRESS_FUZZ_CASES=N` runs N cases per target, and
//! `PROPTEST_RNG_SEED` / the persisted failure (proptest's own mechanism) replays one.

mod annotations;
mod headers;
mod manifests;

use std::path::PathBuf;

/// `(file name, contents)` of every file in `fuzz-corpus/<target>`, sorted by name.
fn corpus(target: &str) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let text = std::fs::read_to_string(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// The proptest configuration of a target: `default` cases unless `XDP_INGRESS_FUZZ_CASES`
/// says otherwise; failures are not persisted to files (the message names the input).
fn config(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("XDP_INGRESS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
