//! `cargo xtask bench`: each benchmark measures xdp-ingress and a peer in the same run and
//! prints the ratio. Benchmarks are ignored tests of the e2e crate, run one at a time in release
//! mode so load generators and the code under test do not fight over the two cores.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::{
    build_ebpf,
    cmd::{self, is_root, step},
    provision, report,
};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only these benchmarks (by name); all when empty.
    names: Vec<String>,
    /// List the benchmarks and exit.
    #[arg(long)]
    list: bool,
    /// Also write target/bench/report.md (tables and SVG charts) from the results under
    /// target/bench/, the runs of earlier invocations included.
    #[arg(long)]
    report: bool,
    /// Run nothing: only write the report from the results already there (implies --report).
    #[arg(long)]
    no_run: bool,
}

struct Bench {
    name: &'static str,
    what: &'static str,
    /// The ignored test target in the e2e crate.
    test: &'static str,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "xdp-parse",
        what: "in-kernel ns/packet of the XDP parser vs a bare XDP_PASS program (BPF_PROG_TEST_RUN, 1e6 repeats)",
        test: "bench_xdp",
    },
    Bench {
        name: "control-plane",
        what: "translation time and snapshot memory for 1k/3k/10k Ingresses (10k: 20k Services / 100k endpoints); event-to-live percentiles; the daemon from a manifest directory: cold start to ready, RSS, a changed file to live",
        test: "bench_control_plane",
    },
    Bench {
        name: "l7",
        what: "L7 proxy req/s and p99 vs nginx and HAProxy (1 worker each): HTTP/1.1 keep-alive, HTTPS, HTTP/2 (wrk, h2load)",
        test: "bench_l7",
    },
    Bench {
        name: "limits",
        what: "per-request cost of a rate limit: none vs per-node (in-memory GCRA) vs cluster-wide (Redis), req/s ratios and us/request (wrk, 1 worker)",
        test: "bench_limits",
    },
    Bench {
        name: "l4-node",
        what: "L4 through the node on veth: UDP small-packet pps and TCP connections/s, XDP vs kube-proxy's iptables and nftables rules vs plain routing, CPU per packet from /proc/stat",
        test: "bench_l4_node",
    },
    Bench {
        name: "l4",
        what: "in-kernel ns/packet of every L4 path (new flow, established, affinity, NAT, reply, drop) vs a bare XDP_PASS (BPF_PROG_TEST_RUN, 1e6 runs)",
        test: "bench_l4",
    },
];

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.list {
        for b in BENCHES {
            println!("{:<16} {}", b.name, b.what);
        }
        return Ok(());
    }
    for n in &args.names {
        if !BENCHES.iter().any(|b| b.name == n) {
            bail!("unknown benchmark {n}; `cargo xtask bench --list` lists them");
        }
    }
    let dir = testbed::bench_out::bench_dir();
    let all: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
    if args.no_run {
        return write_report(&dir, &all);
    }
    if !is_root() {
        bail!("benchmarks attach XDP programs and build network namespaces: run as root");
    }
    // The benches build the same network-namespace beds as the tests: a machine that never
    // ran `cargo xtask test` lacked `ethtool` ("topology: is ethtool installed?").
    provision::debian(&[provision::TOPOLOGY_PACKAGES, provision::BENCH_PACKAGES].concat())?;
    build_ebpf::build()?;
    step("building the daemon (release)");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--package",
        "ingress-userspace",
        "--bins",
    ]))?;
    let release_bin = cmd::root().join("target/release/xdp-ingress");
    for b in BENCHES
        .iter()
        .filter(|b| args.names.is_empty() || args.names.iter().any(|n| n == b.name))
    {
        step(&format!("bench {}: {}", b.name, b.what));
        tee(
            cmd::cargo()
                .args([
                    "test",
                    "--release",
                    "--package",
                    "xdp-ingress-e2e",
                    "--test",
                    b.test,
                    "--",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("XDP_INGRESS_BIN", &release_bin),
            &dir.join(format!("{}.log", b.name)),
        )?;
    }
    if args.report {
        write_report(&dir, &all)?;
    }
    Ok(())
}

fn write_report(dir: &std::path::Path, names: &[&str]) -> anyhow::Result<()> {
    let path = report::write(dir, names)?;
    cmd::note(&format!("report: {}", path.display()));
    Ok(())
}

/// Runs `c` like [`cmd::run`], also copying its stdout (the printed tables) to `log`.
fn tee(c: &mut Command, log: &std::path::Path) -> anyhow::Result<()> {
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    eprintln!("    $ {:?}", c);
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the benchmark's output")?;
            println!("{line}");
            let _ = writeln!(file, "{line}");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("benchmark failed ({status})");
    }
    Ok(())
}
