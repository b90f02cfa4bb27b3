//! The trust model as a table: who connects, with which configuration and headers, and
//! which client address and forwarding headers come out.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName};

use super::*;
use crate::proxy::{
    ProxyArgs,
    args::parse_cidr,
    headers::{X_FORWARDED_FOR, add_forwarding},
};

/// Flags as `--name=value` strings (the ConfigMap keys' names).
fn cfg(flags: &[&str]) -> TrustConfig {
    use clap::{Args, Command, FromArgMatches};
    let argv = std::iter::once("p").chain(flags.iter().copied());
    let m = ProxyArgs::augment_args(Command::new("p")).get_matches_from(argv);
    TrustConfig::from_args(&ProxyArgs::from_arg_matches(&m).unwrap())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn sock(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

/// What the pod receives: (X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host,
/// X-Forwarded-Port, Forwarded).
fn forwarded(c: &Client) -> [String; 6] {
    let mut h = HeaderMap::new();
    add_forwarding(&mut h, c, "app.test", &X_FORWARDED_FOR);
    [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
    ]
    .map(|n| h[n].to_str().unwrap().to_string())
}

struct Case {
    name: &'static str,
    flags: &'static [&'static str],
    peer: &'static str,
    proxied: Option<&'static str>,
    sent: &'static [(&'static str, &'static str)],
    client: &'static str,
    xff: &'static str,
}

const LB: &[&str] = &[
    "--use-forwarded-headers",
    "--proxy-real-ip-cidr=10.0.0.0/8,fd00::/8",
];
const LB_FULL: &[&str] = &[
    "--use-forwarded-headers",
    "--compute-full-forwarded-for",
    "--proxy-real-ip-cidr=10.0.0.0/8",
];

#[test]
fn client_address_and_forwarded_for() {
    let cases = [
        Case {
            name: "default: a spoofed X-Forwarded-For is replaced",
            flags: &[],
            peer: "198.51.100.7",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "198.51.100.7",
            xff: "198.51.100.7",
        },
        Case {
            name: "default: even from an address inside proxy-real-ip-cidr",
            flags: &["--proxy-real-ip-cidr=198.51.100.0/24"],
            peer: "198.51.100.7",
            proxied: None,
            sent: &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-real-ip", "203.0.113.8"),
            ],
            client: "198.51.100.7",
            xff: "198.51.100.7",
        },
        Case {
            name: "use-forwarded-headers, untrusted peer: ignored",
            flags: LB,
            peer: "198.51.100.7",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "198.51.100.7",
            xff: "198.51.100.7",
        },
        Case {
            name: "trusted peer: the entry it names",
            flags: LB,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "recursive: right to left past trusted hops, a spoofed left part ignored",
            flags: LB,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[(
                "x-forwarded-for",
                "1.2.3.4, 203.0.113.7, 10.1.1.1 ,10.0.0.9",
            )],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "recursive over several field lines, empty entries skipped",
            flags: LB,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[
                ("x-forwarded-for", "203.0.113.7,, "),
                ("x-forwarded-for", "10.0.0.3"),
            ],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "every entry trusted: the left-most",
            flags: LB,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "10.9.9.9, 10.0.0.3")],
            client: "10.9.9.9",
            xff: "10.9.9.9",
        },
        Case {
            name: "malformed entry: the walk stops at the last trusted hop (nginx)",
            flags: LB,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7, not-an-ip, 10.0.0.3")],
            client: "10.0.0.3",
            xff: "10.0.0.3",
        },
        Case {
            name: "entries with ports, IPv6 and bracketed IPv6",
            flags: LB,
            peer: "fd00::2",
            proxied: None,
            sent: &[(
                "x-forwarded-for",
                "[2001:db8::7]:4711, 10.0.0.3:80, fd00::9",
            )],
            client: "2001:db8::7",
            xff: "2001:db8::7",
        },
        Case {
            name: "IPv4-mapped peer is matched as IPv4",
            flags: LB,
            peer: "::ffff:10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "default CIDR 0.0.0.0/0 trusts no IPv6 peer",
            flags: &["--use-forwarded-headers"],
            peer: "2001:db8::2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "2001:db8::2",
            xff: "2001:db8::2",
        },
        Case {
            name: "default CIDR 0.0.0.0/0 trusts every IPv4 peer (as ingress-nginx)",
            flags: &["--use-forwarded-headers"],
            peer: "198.51.100.7",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "compute-full-forwarded-for: the peer appended to what it sent",
            flags: LB_FULL,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "1.2.3.4, 203.0.113.7")],
            client: "203.0.113.7",
            xff: "1.2.3.4, 203.0.113.7, 10.0.0.2",
        },
        Case {
            name: "compute-full-forwarded-for, nothing received: the peer",
            flags: LB_FULL,
            peer: "10.0.0.2",
            proxied: None,
            sent: &[],
            client: "10.0.0.2",
            xff: "10.0.0.2",
        },
        Case {
            name: "compute-full-forwarded-for from an untrusted peer: replaced",
            flags: LB_FULL,
            peer: "198.51.100.7",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "198.51.100.7",
            xff: "198.51.100.7",
        },
        Case {
            name: "compute-full-forwarded-for without use-forwarded-headers: replaced",
            flags: &[
                "--compute-full-forwarded-for",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "10.0.0.2",
            xff: "10.0.0.2",
        },
        Case {
            name: "enable-real-ip: the address only",
            flags: &["--enable-real-ip", "--proxy-real-ip-cidr=10.0.0.0/8"],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "forwarded-for-header names another header",
            flags: &[
                "--use-forwarded-headers",
                "--forwarded-for-header=X-Client-IP",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-client-ip", "203.0.113.7"),
            ],
            client: "203.0.113.7",
            xff: "203.0.113.7",
        },
        Case {
            name: "forwarded-for-header Forwarded: for= nodes, quoted IPv6 with port",
            flags: &[
                "--use-forwarded-headers",
                "--forwarded-for-header=Forwarded",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[(
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\";by=x, For=10.0.0.3",
            )],
            client: "2001:db8::7",
            xff: "2001:db8::7",
        },
        Case {
            name: "Forwarded: an obfuscated node ends the walk",
            flags: &[
                "--use-forwarded-headers",
                "--forwarded-for-header=Forwarded",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[("forwarded", "for=203.0.113.7, for=_hidden, for=10.0.0.3")],
            client: "10.0.0.3",
            xff: "10.0.0.3",
        },
        Case {
            name: "proxy protocol from a trusted balancer: its source, headers ignored",
            flags: &["--use-proxy-protocol", "--proxy-real-ip-cidr=10.0.0.0/8"],
            peer: "10.0.0.2",
            proxied: Some("198.51.100.7"),
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "198.51.100.7",
            xff: "198.51.100.7",
        },
        Case {
            name: "proxy protocol from an untrusted peer: the peer",
            flags: &["--use-proxy-protocol", "--proxy-real-ip-cidr=10.0.0.0/8"],
            peer: "198.51.100.9",
            proxied: Some("203.0.113.7"),
            sent: &[],
            client: "198.51.100.9",
            xff: "198.51.100.9",
        },
        Case {
            name: "proxy protocol LOCAL: the peer",
            flags: &["--use-proxy-protocol", "--proxy-real-ip-cidr=10.0.0.0/8"],
            peer: "10.0.0.2",
            proxied: None,
            sent: &[],
            client: "10.0.0.2",
            xff: "10.0.0.2",
        },
        Case {
            name: "proxy protocol IPv6 source",
            flags: &["--use-proxy-protocol", "--proxy-real-ip-cidr=10.0.0.0/8"],
            peer: "10.0.0.2",
            proxied: Some("2001:db8::7"),
            sent: &[],
            client: "2001:db8::7",
            xff: "2001:db8::7",
        },
        Case {
            name: "proxy protocol + compute-full: the PROXY source appended",
            flags: &[
                "--use-proxy-protocol",
                "--use-forwarded-headers",
                "--compute-full-forwarded-for",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: Some("10.2.0.1"),
            sent: &[("x-forwarded-for", "203.0.113.7")],
            client: "203.0.113.7",
            xff: "203.0.113.7, 10.2.0.1",
        },
        // ingress-nginx e2e settings/proxy_protocol.go "should trust X-Forwarded headers when
        // the client IP address is trusted": nginx.tmpl's X-Forwarded-For-Proxy-Protocol.
        Case {
            name: "proxy protocol + use-forwarded-headers, trusted PROXY source: X-Forwarded-For",
            flags: &[
                "--use-proxy-protocol",
                "--use-forwarded-headers",
                "--proxy-real-ip-cidr=10.0.0.0/8,192.168.0.1/32",
            ],
            peer: "10.0.0.2",
            proxied: Some("192.168.0.1"),
            sent: &[("x-forwarded-for", "192.168.0.111")],
            client: "192.168.0.111",
            xff: "192.168.0.111",
        },
        Case {
            name: "proxy protocol + use-forwarded-headers, untrusted PROXY source: the source",
            flags: &[
                "--use-proxy-protocol",
                "--use-forwarded-headers",
                "--proxy-real-ip-cidr=10.0.0.0/8",
            ],
            peer: "10.0.0.2",
            proxied: Some("192.168.0.1"),
            sent: &[("x-forwarded-for", "192.168.0.111")],
            client: "192.168.0.1",
            xff: "192.168.0.1",
        },
        Case {
            name: "proxy protocol + use-forwarded-headers, untrusted peer: the peer",
            flags: &[
                "--use-proxy-protocol",
                "--use-forwarded-headers",
                "--proxy-real-ip-cidr=10.0.0.0/8,192.168.0.1/32",
            ],
            peer: "198.51.100.9",
            proxied: Some("192.168.0.1"),
            sent: &[("x-forwarded-for", "192.168.0.111")],
            client: "198.51.100.9",
            xff: "198.51.100.9",
        },
        Case {
            name: "proxy protocol + enable-real-ip: the PROXY source (real_ip_header proxy_protocol)",
            flags: &[
                "--use-proxy-protocol",
                "--enable-real-ip",
                "--proxy-real-ip-cidr=10.0.0.0/8,192.168.0.1/32",
            ],
            peer: "10.0.0.2",
            proxied: Some("192.168.0.1"),
            sent: &[("x-forwarded-for", "192.168.0.111")],
            client: "192.168.0.1",
            xff: "192.168.0.1",
        },
    ];
    for c in cases {
        let cfg = cfg(c.flags);
        let origin = cfg.origin(
            sock(c.peer),
            c.proxied.map(|ip| Proxied {
                source: sock(ip),
                destination: "10.9.0.1:443".parse().unwrap(),
            }),
            "10.0.0.1:443".parse().unwrap(),
            true,
        );
        let got = origin.client(&cfg, &headers(c.sent));
        let want: IpAddr = c.client.parse().unwrap();
        assert_eq!(got.addr, want, "{}: client", c.name);
        let [xff, real_ip, ..] = forwarded(&got);
        assert_eq!(xff, c.xff, "{}: X-Forwarded-For", c.name);
        assert_eq!(real_ip, c.client, "{}: X-Real-IP", c.name);
    }
}

#[test]
fn proto_host_and_port_only_from_trusted_senders_with_use_forwarded_headers() {
    let sent = headers(&[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
        ("x-forwarded-port", "8443"),
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7;proto=https"),
    ]);
    let http = |cfg: &TrustConfig, peer: &str| {
        cfg.origin(sock(peer), None, "10.0.0.1:80".parse().unwrap(), false)
            .client(cfg, &sent)
    };
    // Default: what the proxy saw.
    let c = http(&cfg(&[]), "10.0.0.2");
    assert!(!c.https());
    assert_eq!(
        forwarded(&c),
        [
            "10.0.0.2",
            "10.0.0.2",
            "http",
            "app.test",
            "80",
            "for=10.0.0.2;host=app.test;proto=http"
        ]
    );
    // Trusted L7 balancer: passed on (ingress-nginx's $pass_access_scheme, $best_http_host,
    // $pass_server_port); Forwarded is rewritten for the real client.
    let c = http(&cfg(LB), "10.0.0.2");
    assert!(c.https(), "ssl-redirect must see the balancer's https");
    assert_eq!(
        forwarded(&c),
        [
            "203.0.113.7",
            "203.0.113.7",
            "https",
            "public.example",
            "8443",
            "for=203.0.113.7;host=public.example;proto=https"
        ]
    );
    // The same headers from outside the CIDRs: replaced.
    let c = http(&cfg(LB), "198.51.100.7");
    assert_eq!(forwarded(&c)[2..5], ["http", "app.test", "80"]);
    // enable-real-ip believes the address only.
    let c = http(
        &cfg(&["--enable-real-ip", "--proxy-real-ip-cidr=10.0.0.0/8"]),
        "10.0.0.2",
    );
    assert_eq!(c.addr, "203.0.113.7".parse::<IpAddr>().unwrap());
    assert_eq!(forwarded(&c)[2..5], ["http", "app.test", "80"]);
    // compute-full-forwarded-for appends our element to the received Forwarded.
    let c = http(&cfg(LB_FULL), "10.0.0.2");
    assert_eq!(
        forwarded(&c)[5],
        "for=203.0.113.7;proto=https, for=10.0.0.2;host=public.example;proto=https"
    );
    // A chain of balancers: the first element of X-Forwarded-Host (lua_ingress.lua
    // `parse_x_forwarded_host`), blanks trimmed; an empty first element is not believed.
    let chain = |xfh: &str| {
        let h = headers(&[("x-forwarded-host", xfh)]);
        let cfg = cfg(LB);
        let c = cfg
            .origin(
                sock("10.0.0.2"),
                None,
                "10.0.0.1:80".parse().unwrap(),
                false,
            )
            .client(&cfg, &h);
        (
            c.best_host("app.test").to_string(),
            forwarded(&c)[3].clone(),
        )
    };
    for (xfh, best) in [
        ("a.example, b.example", "a.example"),
        (" a.example:8443 ,b.example,c", "a.example:8443"),
        ("a.example", "a.example"),
        (", b.example", "app.test"),
        (" ", "app.test"),
    ] {
        assert_eq!(chain(xfh), (best.to_string(), best.to_string()), "{xfh:?}");
    }
    // Empty received values fall back to what the proxy saw.
    let empty = headers(&[("x-forwarded-proto", ""), ("x-forwarded-port", " ")]);
    let cfg = cfg(LB);
    let c = cfg
        .origin(
            sock("10.0.0.2"),
            None,
            "10.0.0.1:80".parse().unwrap(),
            false,
        )
        .client(&cfg, &empty);
    assert_eq!(forwarded(&c)[2..5], ["http", "app.test", "80"]);
}

#[test]
fn nodes_parse_as_nginx_reads_them() {
    for (s, want) in [
        ("198.51.100.7", Some("198.51.100.7")),
        (" 198.51.100.7 ", Some("198.51.100.7")),
        ("198.51.100.7:4711", Some("198.51.100.7")),
        ("2001:db8::7", Some("2001:db8::7")),
        ("[2001:db8::7]", Some("2001:db8::7")),
        ("[2001:db8::7]:4711", Some("2001:db8::7")),
        ("::ffff:198.51.100.7", Some("198.51.100.7")),
        ("198.51.100.7:99999", None),
        ("198.51.100.7:", None),
        ("[2001:db8::7]x", None),
        ("[198.51.100.7]", None),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("1.2.3", None),
    ] {
        assert_eq!(parse_node(s), want.map(|w| w.parse().unwrap()), "{s:?}");
    }
}

#[test]
fn trusting_everyone_is_flagged() {
    assert!(!cfg(&[]).trusts_any_sender(), "nothing believed by default");
    assert!(cfg(&["--use-forwarded-headers"]).trusts_any_sender());
    assert!(cfg(&["--use-proxy-protocol"]).trusts_any_sender());
    assert!(!cfg(LB).trusts_any_sender());
}

#[test]
fn trusted_list_is_never_everyone_when_empty() {
    let mut c = cfg(&[]);
    c.trusted.clear();
    assert!(!c.trusts("10.0.0.1".parse().unwrap()));
    c.trusted = vec![parse_cidr("::/0").unwrap()];
    assert!(c.trusts("2001:db8::1".parse().unwrap()));
    assert!(!c.trusts("10.0.0.1".parse().unwrap()));
}

/// Scheme and port as ingress-nginx derives them (lua_ingress.lua `rewrite`, nginx.tmpl
/// `$pass_server_port`), with the e2e tests of settings/proxy_protocol.go and
/// settings/listen_nondefault_ports.go.
#[test]
fn scheme_and_port_from_proxy_header_and_https_port() {
    // (flags, PROXY destination port, TLS, local port, received headers) -> (proto, port,
    // redirect port)
    type Row = (
        &'static [&'static str],
        Option<u16>,
        bool,
        u16,
        &'static [(&'static str, &'static str)],
        (&'static str, &'static str, &'static str),
    );
    const PP: &[&str] = &["--use-proxy-protocol"];
    const PP_LB: &[&str] = &["--use-proxy-protocol", "--use-forwarded-headers"];
    let rows: &[Row] = &[
        // "should respect port passed by the PROXY Protocol"
        (PP, Some(1234), false, 80, &[], ("http", "1234", "80")),
        // "should respect proto passed by the PROXY Protocol server port"
        (PP, Some(443), false, 80, &[], ("https", "443", "80")),
        // "should enable PROXY Protocol for HTTPS": 443 is the HTTPS port, 1234 passed on.
        (PP, Some(1234), true, 443, &[], ("https", "1234", "443")),
        // A LOCAL header: the connection's own port.
        (PP, None, false, 80, &[], ("http", "80", "80")),
        // Forwarded headers replace the PROXY values, except that destination 443 is https.
        (
            PP_LB,
            Some(443),
            false,
            80,
            &[("x-forwarded-proto", "http"), ("x-forwarded-port", "8080")],
            ("https", "8080", "8080"),
        ),
        (
            PP_LB,
            Some(1234),
            false,
            80,
            &[("x-forwarded-proto", "https")],
            ("https", "1234", "80"),
        ),
        // Headers are not believed without use-forwarded-headers.
        (
            PP,
            Some(1234),
            false,
            80,
            &[("x-forwarded-proto", "https"), ("x-forwarded-port", "9")],
            ("http", "1234", "80"),
        ),
        // listen_nondefault_ports.go: --https-port 1443 is passed on as 443, --http-port
        // 1080 as itself.
        (
            &["--http-port=1080", "--https-port=1443"],
            None,
            true,
            1443,
            &[],
            ("https", "443", "1443"),
        ),
        (
            &["--http-port=1080", "--https-port=1443"],
            None,
            false,
            1080,
            &[],
            ("http", "1080", "1080"),
        ),
        // A believed X-Forwarded-Port naming the HTTPS port too (the same text comparison).
        (
            &["--use-forwarded-headers", "--https-port=1443"],
            None,
            false,
            80,
            &[("x-forwarded-port", "1443")],
            ("http", "443", "1443"),
        ),
    ];
    for (flags, dest, tls, local, sent, want) in rows {
        let cfg = cfg(flags);
        let proxied = dest.map(|port| Proxied {
            source: sock("192.168.0.1"),
            destination: SocketAddr::new("192.168.0.11".parse().unwrap(), port),
        });
        let local = SocketAddr::new("10.0.0.1".parse().unwrap(), *local);
        let c = cfg
            .origin(sock("10.0.0.2"), proxied, local, *tls)
            .client(&cfg, &headers(sent));
        let got = forwarded(&c);
        assert_eq!(
            (
                got[2].as_str(),
                got[4].as_str(),
                c.redirect_port.to_str().unwrap()
            ),
            *want,
            "{flags:?} {dest:?} tls={tls} {sent:?}"
        );
        assert_eq!(
            c.https(),
            want.0 == "https",
            "ssl-redirect follows the scheme"
        );
    }
    // A PROXY header from an untrusted peer is not read for the port either.
    let cfg = cfg(&["--use-proxy-protocol", "--proxy-real-ip-cidr=10.0.0.0/8"]);
    let c = cfg
        .origin(
            sock("198.51.100.9"),
            Some(Proxied {
                source: sock("192.168.0.1"),
                destination: "192.168.0.11:443".parse().unwrap(),
            }),
            "10.0.0.1:80".parse().unwrap(),
            false,
        )
        .client(&cfg, &HeaderMap::new());
    assert_eq!(forwarded(&c)[2..5], ["http", "app.test", "80"]);
}
