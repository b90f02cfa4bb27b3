//! In-kernel cost per packet of each L4 path (BPF_PROG_TEST_RUN, 1e6 runs), next to a bare
//! XDP_PASS program measured in the same run. Prints a table; asserts nothing about speed.
//!
//! The kernel reuses one buffer across a `repeat` run, so a path that rewrites the frame would
//! see its own output from the second round on. Paths that leave the frame as it is are timed
//! with one `repeat = 1e6` run; rewriting paths with 1e6 runs of `repeat = 1` (fresh frame each
//! time), averaging the kernel-measured duration. The baseline is measured both ways, and each
//! path is compared with the baseline measured the same way.
//!
//! New flows are new: each run of a "new flow" case carries another 5-tuple (source port
//! stepped; at most [`NEW_FLOWS`] runs, so the flow table never fills). They run after every
//! other case, so those meet the table as primed. A SYN repeated on one tuple meets its own
//! live flow and takes the reopen path (release, then re-create both entries): its own row.
//!
//! `cargo test -p xdp-ingress-e2e --test bench_l4 -- --ignored --nocapture`
//! (`L4_BENCH_REPEAT` overrides the repeat count).

mod l4common;

use std::{net::SocketAddr, time::Duration};

use aya::programs::{SchedClassifier, Xdp};
use ingress_common::{
    PROG_XDP_INGRESS, PROG_XDP_PASS,
    l4::{PROG_TC_NIC_EGRESS, PROG_TC_REPLY},
};
use l4common::{
    endpoint, ifindex, load, service, sk_buff, static_neigh, tcp_frame, test_run, udp_frame, xdp_md,
};
use testbed::{NODE_IFACE, Topology};
use xdp_ingress::{
    dataplane::{L4Options, L4Sync},
    model::{Endpoint, EndpointState, IpPrefix, L4Protocol, L4Service, Snapshot},
};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CLIENT: [u8; 4] = [198, 18, 0, 1];
const NODE: [u8; 4] = [198, 18, 0, 2];

/// Runs of each new-flow case: the three together stay well below the default flow table
/// (65536 flows), which no run clears.
const NEW_FLOWS: u32 = 15_000;

fn repeat() -> u32 {
    std::env::var("L4_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn svc(name: &str, proto: L4Protocol, port: u16, eps: &[(SocketAddr, Option<&str>)]) -> L4Service {
    let eps = eps
        .iter()
        .map(|(a, n)| Endpoint {
            node_name: n.map(Into::into),
            ..endpoint(*a, EndpointState::Active)
        })
        .collect();
    service(name, proto, port, eps)
}

fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool) -> Vec<u8> {
    let (src, dst) = ((src, sport).into(), (dst, dport).into());
    tcp_frame([MAC, MAC], src, dst, 1, syn, &[0u8; 64])
}

fn tcp6(dport: u16, syn: bool) -> Vec<u8> {
    tcp6_from(40000, dport, syn)
}

fn tcp6_from(sport: u16, dport: u16, syn: bool) -> Vec<u8> {
    let src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let (src, dst) = ((src, sport).into(), (dst, dport).into());
    tcp_frame([MAC, MAC], src, dst, 1, syn, &[0u8; 64])
}

/// The `i`th new 5-tuple's source port (1024..61024) and, for IPv4, address (198.18.x.y).
fn new_source(i: u32) -> ([u8; 4], u16) {
    let (hi, lo) = (i / 60_000, i % 60_000);
    ([198, 18, 100 + hi as u8, 1], 1024 + lo as u16)
}

/// A frame per run: a new case builds its `i`th frame, the others reuse one.
enum Frames {
    One(Vec<u8>),
    New(fn(u32) -> Vec<u8>),
}

fn udp4(dport: u16) -> Vec<u8> {
    let (src, dst) = ((CLIENT, 40000).into(), (NODE, dport).into());
    udp_frame([MAC, MAC], src, dst, &[0u8; 64])
}

/// Mean kernel-measured time over `n` single runs, each on a fresh copy of the frame.
fn time_fresh(n: u32, mut once: impl FnMut() -> Duration) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        total += once();
    }
    total.as_nanos() as f64 / f64::from(n)
}

fn xdp_time(prog: &Xdp, frame: &[u8], ifindex: u32, n: u32) -> Duration {
    test_run(prog, frame, &xdp_md(frame.len(), ifindex), n)
        .0
        .duration
}

fn tc_time(prog: &SchedClassifier, frame: &[u8], ifindex: u32, n: u32) -> Duration {
    test_run(prog, frame, &sk_buff(ifindex), n).0.duration
}

#[test]
#[ignore = "benchmark: cargo test -p xdp-ingress-e2e --test bench_l4 -- --ignored --nocapture"]
fn l4_paths_in_kernel_cost_per_packet() {
    if !testbed::require_root() {
        return;
    }
    let n = repeat();
    let topo = Topology::new(1).expect("topology");
    static_neigh(&topo, [198, 18, 0, 9].into(), [0x02, 0, 0, 0, 0, 9]);
    let nic = ifindex(&topo, NODE_IFACE);
    let pod_if = ifindex(&topo, &topo.pods[0].node_iface);

    let mut ebpf = load(
        &[PROG_XDP_INGRESS, PROG_XDP_PASS],
        &[PROG_TC_REPLY, PROG_TC_NIC_EGRESS],
    );

    let pods: Vec<(SocketAddr, Option<&str>)> = (0..3)
        .map(|i| (format!("198.19.{i}.2:8080").parse().unwrap(), None))
        .chain((0..3).map(|i| (format!("[2001:db8:1:{i}::2]:8080").parse().unwrap(), None)))
        .collect();
    let mut sticky = svc("sticky", L4Protocol::Tcp, 30081, &pods);
    sticky.client_ip_affinity = Some(Duration::from_secs(10800));
    let mut ranges = svc("ranges", L4Protocol::Tcp, 30083, &pods);
    ranges.source_ranges = vec![IpPrefix {
        addr: "203.0.113.0".parse().unwrap(),
        len: 24,
    }];
    // One new connection per second per source, bursts of 1: primed below, so every SYN of
    // the timed case meets the whole check (limit, source LRU, GCRA) and is dropped.
    let mut syn_limited = svc("synlimit", L4Protocol::Tcp, 30084, &pods);
    syn_limited.syn_rate_limit = Some(xdp_ingress::model::SynRateLimit {
        per_second: 1,
        burst: 1,
    });
    let remote: SocketAddr = "198.18.0.9:9000".parse().unwrap();
    let snap = Snapshot {
        version: 1,
        l4: vec![
            svc("web", L4Protocol::Tcp, 30080, &pods),
            sticky,
            ranges,
            svc("dns", L4Protocol::Udp, 30053, &pods),
            svc("remote", L4Protocol::Tcp, 30090, &[(remote, Some("other"))]),
            syn_limited,
        ],
        ..Default::default()
    };
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this".into()),
        ..L4Options::default()
    });
    sync.apply(&mut ebpf, &snap).unwrap();
    // The proxy on :80 of every node address under the node-wide SYN limit, 1 per second,
    // bursts of 1: primed below, so the timed SYN meets the whole check and is dropped.
    xdp_ingress::dataplane::syn_listeners::write(
        &mut ebpf,
        &["[::]:80".parse().unwrap()],
        Some(xdp_ingress::model::SynRateLimit {
            per_second: 1,
            burst: 1,
        }),
    )
    .unwrap();

    let xdp: &Xdp = ebpf.program(PROG_XDP_INGRESS).unwrap().try_into().unwrap();
    let pass: &Xdp = ebpf.program(PROG_XDP_PASS).unwrap().try_into().unwrap();
    let tc: &SchedClassifier = ebpf.program(PROG_TC_REPLY).unwrap().try_into().unwrap();
    let tc_egress: &SchedClassifier = ebpf
        .program(PROG_TC_NIC_EGRESS)
        .unwrap()
        .try_into()
        .unwrap();

    let mut frag = tcp4(CLIENT, 40000, NODE, 30080, true);
    frag[20] = 0x20;
    // Prime flows so "established" runs hit conntrack.
    let est = tcp4(CLIENT, 40001, NODE, 30080, false);
    let est6 = tcp6(30080, false);
    let remote_est = tcp4(CLIENT, 40002, NODE, 30090, false);
    let pod_reply = tcp4([198, 19, 0, 2], 8080, CLIENT, 40001, false);
    // (name, frame(s), rewrites the frame?)
    let cases: Vec<(&str, Frames, bool)> = vec![
        (
            "no service (node's own port)",
            Frames::One(tcp4(CLIENT, 40000, NODE, 22, false)),
            false,
        ),
        (
            "no service, SYN (no proxy listener)",
            Frames::One(tcp4(CLIENT, 40000, NODE, 22, true)),
            false,
        ),
        (
            "SYN over the limit at proxy listener",
            Frames::One(tcp4(CLIENT, 40007, NODE, 80, true)),
            false,
        ),
        ("IPv4 fragment", Frames::One(frag), false),
        (
            "source range drop",
            Frames::One(tcp4(CLIENT, 40000, NODE, 30083, true)),
            false,
        ),
        (
            "new TCP flow (SYN, Maglev)",
            Frames::New(|i| {
                let (src, sport) = new_source(i);
                tcp4(src, sport, NODE, 30080, true)
            }),
            true,
        ),
        (
            "SYN on a live flow (reopen)",
            Frames::One(tcp4(CLIENT, 40000, NODE, 30080, true)),
            true,
        ),
        ("established TCP flow", Frames::One(est.clone()), true),
        (
            "affinity hit (new flow, SYN)",
            Frames::New(|i| tcp4(CLIENT, new_source(i).1, NODE, 30081, true)),
            true,
        ),
        (
            "SYN over its source's limit (drop)",
            Frames::One(tcp4(CLIENT, 40005, NODE, 30084, true)),
            false,
        ),
        ("UDP flow", Frames::One(udp4(30053)), true),
        (
            "IPv6 new flow (SYN)",
            Frames::New(|i| tcp6_from(new_source(i).1, 30080, true)),
            true,
        ),
        ("IPv6 established", Frames::One(est6.clone()), true),
        (
            "remote endpoint (SNAT + XDP_TX)",
            Frames::One(remote_est.clone()),
            true,
        ),
    ];
    let rows = topo.node.enter(|| {
        // Prime conntrack and affinity for the established and affinity cases: only a SYN
        // opens a flow.
        for f in [
            tcp4(CLIENT, 40001, NODE, 30080, true),
            tcp6(30080, true),
            tcp4(CLIENT, 40002, NODE, 30090, true),
        ] {
            xdp_time(xdp, &f, nic, 1);
        }
        xdp_time(xdp, &tcp4(CLIENT, 40003, NODE, 30081, true), nic, 1);
        // Spends the source's burst at the SYN-limited service.
        xdp_time(xdp, &tcp4(CLIENT, 40004, NODE, 30084, true), nic, 1);
        // And at the proxy's listener.
        xdp_time(xdp, &tcp4(CLIENT, 40006, NODE, 80, true), nic, 1);
        // The kernel reports the mean per run for a repeat run.
        let base_rep = xdp_time(pass, &est, nic, n).as_nanos() as f64;
        let base_fresh = time_fresh(n, || xdp_time(pass, &est, nic, 1));
        let mut rows = vec![
            ("bare xdp_pass, one repeat run".to_string(), base_rep, 1.0),
            ("bare xdp_pass, single runs".to_string(), base_fresh, 1.0),
        ];
        // The new-flow cases last: the flows they leave would otherwise weigh on the others.
        let mut order: Vec<usize> = (0..cases.len()).collect();
        order.sort_by_key(|&i| matches!(cases[i].1, Frames::New(_)));
        let mut timed = vec![(String::new(), 0.0, 0.0); cases.len()];
        for i in order {
            let (name, frames, rewrites) = &cases[i];
            let (t, base) = match frames {
                Frames::One(f) if *rewrites => {
                    (time_fresh(n, || xdp_time(xdp, f, nic, 1)), base_fresh)
                }
                Frames::One(f) => (xdp_time(xdp, f, nic, n).as_nanos() as f64, base_rep),
                Frames::New(make) => {
                    let mut i = 0;
                    let t = time_fresh(n.min(NEW_FLOWS), || {
                        let f = make(i);
                        i += 1;
                        xdp_time(xdp, &f, nic, 1)
                    });
                    (t, base_fresh)
                }
            };
            timed[i] = (name.to_string(), t, t / base);
        }
        rows.extend(timed);
        let t = time_fresh(n, || tc_time(tc_egress, &pod_reply, nic, 1));
        rows.push((
            "tc NIC egress: pod reply reverse NAT".into(),
            t,
            t / base_fresh,
        ));
        let t = time_fresh(n, || tc_time(tc, &pod_reply, pod_if, 1));
        rows.push((
            "tc pod ingress: reply NAT + redirect".into(),
            t,
            t / base_fresh,
        ));
        rows
    });
    let mut text = format!(
        "\nL4 in-kernel cost per packet, BPF_PROG_TEST_RUN, {n} runs per path (new flows: {})\n",
        n.min(NEW_FLOWS)
    );
    text += &format!(
        "{:<36} {:>10} {:>10} {:>12}\n",
        "path", "ns/pkt", "x xdp_pass", "ns over bare"
    );
    let mut out = testbed::bench_out::BenchOut::new("l4");
    for (i, (name, ns, ratio)) in rows.iter().enumerate() {
        // Each path's own baseline: the row's time over its ratio.
        let over = if i < 2 { 0.0 } else { ns - ns / ratio };
        text += &format!("{name:<36} {ns:>10.1} {ratio:>10.2} {over:>12.1}\n");
        // The chart keeps the main paths, under short names that fit under a bar.
        let short = [
            ("bare xdp_pass, single runs", "bare"),
            ("new TCP flow (SYN, Maglev)", "new flow"),
            ("SYN on a live flow (reopen)", "reopen"),
            ("established TCP flow", "established"),
            ("UDP flow", "UDP"),
            ("IPv6 established", "v6 est."),
            ("remote endpoint (SNAT + XDP_TX)", "remote"),
        ];
        if let Some((_, label)) = short.iter().find(|(n, _)| n == name) {
            out.bar(
                "L4 in-kernel ns per packet (single runs)",
                "ns",
                label,
                "ns/pkt",
                *ns,
            );
        }
    }
    println!("{text}");
    out.table(&text);
    out.write();
}
