//! Property-based fuzzing (proptest) of the code that reads untrusted input: manifest files
//! through parsing, the store and translation ([`manifests`]), random annotations on
//! Ingresses ([`annotations`]), and the proxy's request header handling ([`headers`]).
//!
//! Each target mutates seed inputs kept in `ingress-userspace/fuzz-corpus/<target>/` (add a
//! file there to steer it, e.g. the input of a bug found). The case count is small by default
//! so `cargo test` stays fast; `XDP_INGRESS_FUZZ_CASES=N` runs N cases per target and
//! `XDP_INGRESS_FUZZ_SEED=N` other inputs (the default seed is fixed: CI is repeatable).

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

/// The seed `cargo test` uses, so CI runs the same cases every time (never flaky);
/// `XDP_INGRESS_FUZZ_SEED=N` explores others.
const DEFAULT_SEED: u64 = 0x5eed_0014;

/// The proptest configuration of a target: `default` cases unless `XDP_INGRESS_FUZZ_CASES`
/// says otherwise, the seed [`DEFAULT_SEED`] unless `XDP_INGRESS_FUZZ_SEED` does; failures
/// are not persisted to files (the message names the input).
fn config(default: u32) -> proptest::test_runner::Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("XDP_INGRESS_FUZZ_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(default);
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            env("XDP_INGRESS_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
        ),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
