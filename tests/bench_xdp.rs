//! In-kernel cost of the XDP program per frame shape, next to a bare XDP_PASS program measured
//! in the same run (BPF_PROG_TEST_RUN, 1e6 repeats each). Run by `cargo xtask bench xdp-parse`.

use etherparse::PacketBuilder;
use ingress_common::{PROG_XDP_INGRESS, PROG_XDP_PASS};
use testbed::xdp_run::XdpTestRun;

const REPEAT: u32 = 1_000_000;

fn frame(v6: bool, tcp: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut v = Vec::new();
    let payload = [0u8; 64];
    let res = match (v6, tcp) {
        (false, true) => eth
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 80, 1, 65535)
            .write(&mut v, &payload),
        (false, false) => eth
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(40000, 53)
            .write(&mut v, &payload),
        (true, true) => {
            let (a, b) = (
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            );
            eth.ipv6(a, b, 64)
                .tcp(40000, 80, 1, 65535)
                .write(&mut v, &payload)
        }
        (true, false) => {
            let (a, b) = (
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            );
            eth.ipv6(a, b, 64).udp(40000, 53).write(&mut v, &payload)
        }
    };
    res.expect("build frame");
    v
}

#[test]
#[ignore = "benchmark: cargo xtask bench xdp-parse"]
fn xdp_parse_cost_vs_bare_pass() {
    if !testbed::require_root() {
        return;
    }
    let mut pass = XdpTestRun::load(PROG_XDP_PASS).expect("load xdp_pass");
    let mut prog = XdpTestRun::load(PROG_XDP_INGRESS).expect("load xdp_ingress");
    let mut out = testbed::bench_out::BenchOut::new("xdp-parse");
    let mut text = format!(
        "{:<28} {:>10} {:>10} {:>8}\n",
        "frame (no service: pass)", "xdp_pass", "ingress", "ratio"
    );
    for (name, f) in [
        ("ipv4 tcp", frame(false, true)),
        ("ipv4 udp", frame(false, false)),
        ("ipv6 tcp", frame(true, true)),
        ("ipv6 udp", frame(true, false)),
    ] {
        let base = pass.time_per_run(&f, REPEAT).expect("run pass");
        let cost = prog.time_per_run(&f, REPEAT).expect("run ingress");
        let ratio = cost.as_nanos() as f64 / base.as_nanos().max(1) as f64;
        text += &format!(
            "{name:<28} {:>8}ns {:>8}ns {ratio:>7.2}x\n",
            base.as_nanos(),
            cost.as_nanos()
        );
        out.bar(
            "XDP parser ns per packet",
            "ns",
            name,
            "xdp_pass",
            base.as_nanos() as f64,
        );
        out.bar(
            "XDP parser ns per packet",
            "ns",
            name,
            "xdp_ingress",
            cost.as_nanos() as f64,
        );
    }
    println!("{text}");
    out.table(&text);
    out.write();
}
