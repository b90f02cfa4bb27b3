//! `cargo xtask bench`: each benchmark measures xdp-ingress and a peer in the same run and
//! prints the ratio. Benchmarks are ignored tests of the e2e crate, run one at a time in release
//! mode so load generators and the code under test do not fight over the two cores.

use anyhow::bail;

use crate::{
    build_ebpf,
    cmd::{self, is_root, step},
    provision,
};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only these benchmarks (by name); all when empty.
    names: Vec<String>,
    /// List the benchmarks and exit.
    #[arg(long)]
    list: bool,
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
        what: "translation time and snapshot memory for 10k Ingresses / 20k Services / 100k endpoints; event-to-live percentiles",
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
    if !is_root() {
        bail!("benchmarks attach XDP programs and build network namespaces: run as root");
    }
    provision::debian(provision::BENCH_PACKAGES)?;
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
        cmd::run(
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
        )?;
    }
    Ok(())
}
