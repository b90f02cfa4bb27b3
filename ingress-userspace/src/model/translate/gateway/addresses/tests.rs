//! Address assignment: the pool's syntax, the spec's reasons for addresses that cannot be
//! used, and stability (a Gateway keeps its address while others come and go).

use std::net::IpAddr;

use gateway_api::apis::standard::gateways::Gateway;

use super::*;

fn pool(s: &str) -> AddressPool {
    AddressPool {
        ranges: s
            .split(',')
            .map(|r| r.parse().expect("pool entry"))
            .collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A Gateway created at `created` (seconds), with `addresses` (YAML flow sequence) and
/// `status` (YAML flow sequence of status addresses).
fn gw(name: &str, created: &str, addresses: &str, status: &str) -> (Key, Gateway) {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"}}\nspec:\n  gatewayClassName: xdp\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n  addresses: {addresses}\nstatus:\n  addresses: {status}\n"
    );
    let g: Gateway = yaml_serde::from_str(&yaml).expect("gateway yaml");
    (Key::new("ns", name), g)
}

fn run(gws: &[(Key, Gateway)], p: &AddressPool) -> BTreeMap<Key, Addresses> {
    assign(gws.iter().map(|(k, g)| (k, g)), p)
}

fn of(out: &BTreeMap<Key, Addresses>, name: &str) -> Addresses {
    out[&Key::new("ns", name)].clone()
}

#[test]
fn pool_entries_cidr_range_and_single_address() {
    let p = pool("10.0.0.0/30, 10.0.1.5-10.0.1.6,2001:db8::/127,192.0.2.9");
    assert!(p.contains(ip("10.0.0.1")) && p.contains(ip("10.0.0.2")));
    assert!(!p.contains(ip("10.0.0.4")));
    assert!(p.contains(ip("10.0.1.6")) && !p.contains(ip("10.0.1.7")));
    assert!(p.contains(ip("2001:db8::1")) && !p.contains(ip("2001:db8::2")));
    assert!(p.contains(ip("192.0.2.9")));
    // An IPv4-mapped IPv6 address is its IPv4 one (what a dual-stack socket reports).
    assert!(p.contains(ip("::ffff:10.0.0.1")));
    for bad in [
        "10.0.0.0/33",
        "10.0.0.9-10.0.0.1",
        "10.0.0.1-2001:db8::1",
        "example.com",
        "10.0.0.0/x",
    ] {
        assert!(bad.parse::<PoolRange>().is_err(), "{bad}");
    }
}

#[test]
fn without_a_pool_gateways_stay_on_the_node_and_written_addresses_are_not_usable() {
    let gws = [
        gw("plain", "2024-01-01T00:00:00Z", "[]", "[]"),
        gw("fixed", "2024-01-01T00:00:00Z", "[{value: 10.0.0.1}]", "[]"),
    ];
    let out = run(&gws, &AddressPool::default());
    assert_eq!(of(&out, "plain"), Addresses::Node);
    assert!(matches!(of(&out, "fixed"), Addresses::NotUsable(_)));
}

/// GatewayStaticAddresses (Gateway API v1.6 conformance): an unsupported type rejects the
/// Gateway; an address the implementation cannot use leaves it unprogrammed; a usable one is
/// exactly what it gets.
#[test]
fn static_addresses_unsupported_then_unusable_then_usable() {
    let p = pool("10.0.0.0/24");
    let all = "[{type: Hostname, value: gw.example.com}, {type: IPAddress, value: 192.0.2.1}, {type: IPAddress, value: 10.0.0.7}]";
    let out = run(&[gw("g", "2024-01-01T00:00:00Z", all, "[]")], &p);
    assert!(matches!(of(&out, "g"), Addresses::Unsupported(_)));
    let two = "[{type: IPAddress, value: 192.0.2.1}, {type: IPAddress, value: 10.0.0.7}]";
    let out = run(&[gw("g", "2024-01-01T00:00:00Z", two, "[]")], &p);
    assert!(matches!(of(&out, "g"), Addresses::NotUsable(_)));
    let one = "[{type: IPAddress, value: 10.0.0.7}]";
    let out = run(&[gw("g", "2024-01-01T00:00:00Z", one, "[]")], &p);
    assert_eq!(of(&out, "g"), Addresses::Assigned(vec![ip("10.0.0.7")]));
    // Not an IP at all, with the IPAddress type: not usable either.
    let bad = "[{type: IPAddress, value: not-an-ip}]";
    let out = run(&[gw("g", "2024-01-01T00:00:00Z", bad, "[]")], &p);
    assert!(matches!(of(&out, "g"), Addresses::NotUsable(_)));
}

#[test]
fn pool_addresses_go_oldest_first_and_are_never_shared() {
    let p = pool("10.0.0.1-10.0.0.2");
    let gws = [
        gw("young", "2024-01-03T00:00:00Z", "[]", "[]"),
        gw("old", "2024-01-01T00:00:00Z", "[]", "[]"),
        gw("youngest", "2024-01-04T00:00:00Z", "[]", "[]"),
    ];
    let out = run(&gws, &p);
    assert_eq!(of(&out, "old"), Addresses::Assigned(vec![ip("10.0.0.1")]));
    assert_eq!(of(&out, "young"), Addresses::Assigned(vec![ip("10.0.0.2")]));
    assert!(matches!(of(&out, "youngest"), Addresses::NotAssigned(_)));
}

#[test]
fn a_written_address_is_reserved_before_the_pool_is_drawn_from() {
    let p = pool("10.0.0.1-10.0.0.3");
    let gws = [
        gw("dynamic", "2024-01-01T00:00:00Z", "[]", "[]"),
        gw("fixed", "2024-01-02T00:00:00Z", "[{value: 10.0.0.1}]", "[]"),
        gw("same", "2024-01-03T00:00:00Z", "[{value: 10.0.0.1}]", "[]"),
        // An entry without a value asks for one from the pool.
        gw("empty", "2024-01-04T00:00:00Z", "[{type: IPAddress}]", "[]"),
    ];
    let out = run(&gws, &p);
    assert_eq!(of(&out, "fixed"), Addresses::Assigned(vec![ip("10.0.0.1")]));
    assert!(matches!(of(&out, "same"), Addresses::NotUsable(_)));
    assert_eq!(
        of(&out, "dynamic"),
        Addresses::Assigned(vec![ip("10.0.0.2")])
    );
    assert_eq!(of(&out, "empty"), Addresses::Assigned(vec![ip("10.0.0.3")]));
}

/// Deleting an older Gateway frees its address, but a younger one keeps the one its status
/// shows: addresses do not move under clients (nor between nodes, which read the same status).
#[test]
fn a_deleted_older_gateway_does_not_move_a_younger_ones_address() {
    let p = pool("10.0.0.1-10.0.0.9");
    let first = run(
        &[
            gw("old", "2024-01-01T00:00:00Z", "[]", "[]"),
            gw("young", "2024-01-02T00:00:00Z", "[]", "[]"),
        ],
        &p,
    );
    assert_eq!(
        of(&first, "young"),
        Addresses::Assigned(vec![ip("10.0.0.2")])
    );
    // The status writer wrote 10.0.0.2 to `young`; `old` is deleted; a newer Gateway comes.
    let after = run(
        &[
            gw(
                "young",
                "2024-01-02T00:00:00Z",
                "[]",
                "[{type: IPAddress, value: 10.0.0.2}]",
            ),
            gw("new", "2024-01-05T00:00:00Z", "[]", "[]"),
        ],
        &p,
    );
    assert_eq!(
        of(&after, "young"),
        Addresses::Assigned(vec![ip("10.0.0.2")])
    );
    assert_eq!(of(&after, "new"), Addresses::Assigned(vec![ip("10.0.0.1")]));
    // Node addresses in an old status (before the pool) are not kept.
    let before_pool = run(
        &[gw(
            "g",
            "2024-01-01T00:00:00Z",
            "[]",
            "[{type: IPAddress, value: 192.0.2.1}]",
        )],
        &p,
    );
    assert_eq!(
        of(&before_pool, "g"),
        Addresses::Assigned(vec![ip("10.0.0.1")])
    );
}

#[test]
fn a_huge_ipv6_pool_is_drawn_from_without_walking_it() {
    let p = pool("2001:db8::/64");
    let gws: Vec<_> = (0..3)
        .map(|i| {
            gw(
                &format!("g{i}"),
                &format!("2024-01-0{}T00:00:00Z", i + 1),
                "[]",
                "[]",
            )
        })
        .collect();
    let out = run(&gws, &p);
    assert_eq!(of(&out, "g2"), Addresses::Assigned(vec![ip("2001:db8::2")]));
}

/// An IPv4 CIDR of /30 or wider leaves out its network and broadcast addresses (RFC 919,
/// RFC 922: no host's address on the segment): they are never handed out, never kept from a
/// status, and written in `spec.addresses` they are `AddressNotUsable`. A /31 (RFC 3021
/// point-to-point links), a /32 and IPv6 CIDRs (IPv6 has no broadcast address) keep every
/// address; so does a `FIRST-LAST` range (its ends are as written).
#[test]
fn ipv4_cidrs_leave_out_network_and_broadcast_addresses() {
    let p = pool("10.0.0.0/30");
    assert!(!p.contains(ip("10.0.0.0")) && !p.contains(ip("10.0.0.3")));
    assert!(p.contains(ip("10.0.0.1")) && p.contains(ip("10.0.0.2")));
    assert!(!p.contains(ip("::ffff:10.0.0.3")));
    let p24 = pool("192.0.2.0/24");
    assert!(!p24.contains(ip("192.0.2.0")) && !p24.contains(ip("192.0.2.255")));
    assert!(p24.contains(ip("192.0.2.1")) && p24.contains(ip("192.0.2.254")));
    let all = pool("10.0.1.0/31,10.0.2.7/32,2001:db8::/126,10.0.3.0-10.0.3.255");
    for kept in [
        "10.0.1.0",
        "10.0.1.1",
        "10.0.2.7",
        "2001:db8::",
        "2001:db8::3",
        "10.0.3.0",
        "10.0.3.255",
    ] {
        assert!(all.contains(ip(kept)), "{kept}");
        assert!(all.excluded(ip(kept)).is_none(), "{kept}");
    }
    // Drawn in pool order: the host addresses only, then the pool is exhausted.
    let gws = [
        gw("a", "2024-01-01T00:00:00Z", "[]", "[]"),
        gw("b", "2024-01-02T00:00:00Z", "[]", "[]"),
        gw("c", "2024-01-03T00:00:00Z", "[]", "[]"),
    ];
    let out = run(&gws, &p);
    assert_eq!(of(&out, "a"), Addresses::Assigned(vec![ip("10.0.0.1")]));
    assert_eq!(of(&out, "b"), Addresses::Assigned(vec![ip("10.0.0.2")]));
    assert!(matches!(of(&out, "c"), Addresses::NotAssigned(_)));
    // Written, or kept from a status written before the pool was read this way.
    for (name, addresses, status) in [
        ("network", "[{value: 10.0.0.0}]", "[]"),
        ("broadcast", "[{value: 10.0.0.3}]", "[]"),
    ] {
        let out = run(&[gw(name, "2024-01-01T00:00:00Z", addresses, status)], &p);
        match of(&out, name) {
            Addresses::NotUsable(m) => assert!(m.contains("not a host address"), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let out = run(
        &[gw(
            "stale",
            "2024-01-01T00:00:00Z",
            "[]",
            "[{type: IPAddress, value: 10.0.0.3}]",
        )],
        &p,
    );
    assert_eq!(of(&out, "stale"), Addresses::Assigned(vec![ip("10.0.0.1")]));
}
