//! `--iface auto`: the interface that carries the node's default route (IPv4 first, then IPv6),
//! read from /proc so no netlink round trip is needed at start-up.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no default route in this network namespace; pass --iface NAME")]
    NoDefaultRoute,
}

/// Resolves `auto` to the default route's interface; any other name is returned as given.
pub fn resolve(requested: &str) -> Result<String, IfaceError> {
    if requested != "auto" {
        return Ok(requested.to_string());
    }
    let v4 = read("/proc/net/route")?;
    if let Some(i) = default_v4(&v4) {
        return Ok(i);
    }
    // A host without IPv6 has no such file: that only means no IPv6 default route.
    let v6 = read("/proc/net/ipv6_route").unwrap_or_default();
    default_v6(&v6).ok_or(IfaceError::NoDefaultRoute)
}

fn read(path: &str) -> Result<String, IfaceError> {
    std::fs::read_to_string(Path::new(path)).map_err(|source| IfaceError::Read {
        path: path.to_string(),
        source,
    })
}

/// `/proc/net/route`: `Iface Destination Gateway Flags ... Metric Mask ...` in hex; the default
/// route has destination and mask 0. The lowest metric wins, as in the kernel.
fn default_v4(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, metric, mask) = (f.first()?, f.get(1)?, f.get(6)?, f.get(7)?);
            let up = u32::from_str_radix(f.get(3)?, 16).ok()? & 0x1 != 0;
            (up && *dest == "00000000" && *mask == "00000000")
                .then(|| Some((metric.parse::<u32>().ok()?, iface.to_string())))?
        })
        .min()
        .map(|(_, i)| i)
}

/// `/proc/net/ipv6_route`: `dest dest_len src src_len next_hop metric refcnt use flags iface`;
/// the default route is `::/0` through a gateway (not the `lo` unreachable entries).
fn default_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, len, metric, iface) = (f.first()?, f.get(1)?, f.get(5)?, f.get(9)?);
            let all_zero = dest.chars().all(|c| c == '0');
            (all_zero && *len == "00" && *iface != "lo")
                .then(|| Some((u32::from_str_radix(metric, 16).ok()?, iface.to_string())))?
        })
        .min()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
        eth0\t00000000\t010011AC\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t000011AC\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn picks_the_default_route_with_the_lowest_metric() {
        assert_eq!(default_v4(ROUTE).as_deref(), Some("eth0"));
    }

    #[test]
    fn no_default_route_means_none() {
        let only_local = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t000011AC\t00000000\t0001\t0\t0\t100\t0000FFFF\n";
        assert_eq!(default_v4(only_local), None);
        assert_eq!(default_v4(""), None);
    }

    #[test]
    fn falls_back_to_the_ipv6_default_route() {
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 bond0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_v6(v6).as_deref(), Some("bond0"));
    }

    #[test]
    fn a_named_interface_is_taken_as_given() {
        assert_eq!(resolve("ens3").ok().as_deref(), Some("ens3"));
    }
}
