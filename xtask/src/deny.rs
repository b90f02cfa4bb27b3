//! `cargo xtask deny`: the dependency policy of `deny.toml` (cargo-deny): licenses, sources and
//! bans fail on any finding; advisories need the RustSec database from the network. When it
//! cannot be fetched, or the copy is older than a week, the check says so in red and uses the
//! copy it has, or skips advisories when it has none; with `XDP_INGRESS_REQUIRE_ADVISORIES=1`
//! that is a failure instead (for a CI that reaches the database).

use std::process::Command;

use anyhow::{Context, bail};

use crate::{
    cmd::{self, note, probe, step},
    provision,
};

/// Pinned so CI's result does not change with a new release; `--locked` uses its lock file.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Where cargo-deny keeps the advisory database of `deny.toml`'s `db-urls` (its default
/// `db-path`, one directory per URL).
fn advisory_dbs_dir() -> std::path::PathBuf {
    provision::cargo_bin_dir()
        .parent()
        .map(|p| p.join("advisory-dbs"))
        .unwrap_or_else(|| "/root/.cargo/advisory-dbs".into())
}

pub fn run() -> anyhow::Result<()> {
    install()?;
    step("cargo deny: licenses, sources, bans (deny.toml)");
    // `--offline` reads every platform's dependencies; a host build downloads only its own
    // (e.g. not the Android-only ones behind rustls-platform-verifier), so fetch them first.
    cmd::run(
        Command::new("cargo")
            .args(["fetch", "--locked"])
            .current_dir(cmd::root()),
    )?;
    // Duplicate versions are warnings with long inclusion graphs; `cargo deny check bans` shows them.
    cmd::run(deny().args([
        "--offline",
        "check",
        "--hide-inclusion-graph",
        "licenses",
        "sources",
        "bans",
    ]))?;

    step("cargo deny: RustSec advisories");
    let fetched = Command::new(deny_bin())
        .args(["--locked", "fetch", "db"])
        .current_dir(cmd::root())
        .output()
        .context("starting cargo-deny")?;
    let fetch_error = (!fetched.status.success()).then(|| {
        String::from_utf8_lossy(&fetched.stderr)
            .lines()
            .filter(|l| l.contains("fatal:") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n    ")
    });
    let problem = match (newest_cached_db(), &fetch_error) {
        (None, _) => Some(
            "no RustSec advisory database could be fetched: ADVISORIES NOT CHECKED".to_string(),
        ),
        (Some(db), _) if db.age_days > STALE_DAYS => Some(format!(
            "the RustSec advisory database is {} days old (last advisory {}): advisories newer \
             than that are not checked",
            db.age_days, db.date
        )),
        (Some(db), Some(_)) => Some(format!(
            "the RustSec advisory database could not be refreshed; checking against the copy \
             of {}",
            db.date
        )),
        (Some(_), None) => None,
    };
    let checkable = newest_cached_db().is_some();
    if let Some(msg) = problem {
        eprintln!("\n\x1b[1;31m!!! {msg}\x1b[0m");
        if let Some(why) = &fetch_error {
            eprintln!("    fetch: {why}");
        }
        eprintln!();
        if std::env::var("XDP_INGRESS_REQUIRE_ADVISORIES").is_ok_and(|v| v == "1") {
            bail!(
                "XDP_INGRESS_REQUIRE_ADVISORIES=1: advisories could not be checked on fresh data"
            );
        }
    }
    if checkable {
        cmd::run(deny().args(["--offline", "check", "advisories"]))?;
    }
    Ok(())
}

/// A database older than this (days since its newest advisory commit) is called stale.
const STALE_DAYS: u64 = 7;

struct CachedDb {
    date: String,
    age_days: u64,
}

/// The newest cached advisory database (by its last commit), if there is one.
fn newest_cached_db() -> Option<CachedDb> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dirs = std::fs::read_dir(advisory_dbs_dir()).ok()?;
    dirs.filter_map(|e| e.ok())
        .filter(|e| e.path().join("crates").is_dir())
        .filter_map(|e| {
            let out = cmd::output(
                Command::new("git")
                    .args(["log", "-1", "--format=%ct %cs"])
                    .current_dir(e.path()),
            )
            .ok()?;
            let (secs, date) = out.trim().split_once(' ')?;
            let secs: u64 = secs.parse().ok()?;
            Some((secs, date.to_string()))
        })
        .max()
        .map(|(secs, date)| CachedDb {
            date,
            age_days: now.saturating_sub(secs) / 86_400,
        })
}

fn deny_bin() -> std::path::PathBuf {
    let bin = provision::cargo_bin_dir().join("cargo-deny");
    if bin.is_file() {
        bin
    } else {
        "cargo-deny".into()
    }
}

fn deny() -> Command {
    let mut c = Command::new(deny_bin());
    c.arg("--locked").current_dir(cmd::root());
    c
}

/// Installs the pinned cargo-deny when missing (built from crates.io once, a few minutes; kept in
/// `~/.cargo/bin` for later runs).
fn install() -> anyhow::Result<()> {
    let have = cmd::output(Command::new(deny_bin()).arg("--version")).unwrap_or_default();
    if have.trim() == format!("cargo-deny {CARGO_DENY_VERSION}") {
        note(&format!("cargo-deny {CARGO_DENY_VERSION}: present"));
        return Ok(());
    }
    if probe(Command::new(deny_bin()).arg("--version")) {
        note(&format!(
            "cargo-deny: `{}` found, installing {CARGO_DENY_VERSION}",
            have.trim()
        ));
    } else {
        note(&format!(
            "cargo-deny: missing, building {CARGO_DENY_VERSION} (a few minutes, once)"
        ));
    }
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]))
}
