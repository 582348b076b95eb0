//! Every parser takes arbitrary input without panicking. A small deterministic generator
//! (bounded: a fixed number of inputs) mixes the characters that matter to URL, address and
//! header parsing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

use std::net::IpAddr;

use hookwarden_netguard::{
    AddressPolicy, CidrList, ClientIpConfig, ForwardedHeader, IpNet, TargetHost, UrlPolicy,
    classify, parse_cidr, parse_endpoint_url, parse_forwarded_entry,
};
use http::{HeaderMap, HeaderValue};

const PIECES: &[&str] = &[
    "https://",
    "http://",
    "ftp:",
    "//",
    "/",
    "\\",
    "@",
    ":",
    "::",
    "[",
    "]",
    "#",
    "?",
    "%",
    "%25",
    "%2e",
    ".",
    "..",
    "0x",
    "0X",
    "7f",
    "ff",
    "ffff",
    "127",
    "0",
    "1",
    "255",
    "256",
    "4294967296",
    "00000000000000000000",
    "a",
    "Z",
    "xn--",
    "-",
    "_",
    "localhost",
    "\u{ff11}",
    "\u{3002}",
    "\u{ad}",
    "\u{0}",
    "\t",
    "\n",
    " ",
    ",",
    "/8",
    "/33",
    "/128",
    "64:ff9b",
    "2002",
    "fe80",
    "%eth0",
    "\u{10ffff}",
    "\u{fe0f}",
    "ß",
    "İ",
    "\"",
    "'",
    "<",
    ">",
    "|",
    "^",
    "`",
    "{",
    "}",
];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

fn inputs(n: usize) -> Vec<String> {
    let mut rng = Lcg(0x5eed);
    (0..n)
        .map(|_| {
            let parts = 1 + rng.next() % 12;
            (0..parts)
                .map(|_| PIECES[rng.next() % PIECES.len()])
                .collect()
        })
        .collect()
}

#[test]
fn parsers_never_panic() {
    let opts = [
        UrlPolicy::default(),
        UrlPolicy {
            allow_http: true,
            allowed_ports: Some(vec![443]),
        },
    ];
    let policy = AddressPolicy::new(
        vec!["127.0.0.0/8".parse::<IpNet>().expect("net")],
        vec!["10.0.0.0/8".parse::<IpNet>().expect("net")],
    );
    let cfg = ClientIpConfig {
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
        headers: vec![
            ForwardedHeader::XForwardedFor,
            ForwardedHeader::XRealIp,
            ForwardedHeader::CfConnectingIp,
        ],
    };
    let peer: IpAddr = "10.0.0.1".parse().expect("ip");
    for s in inputs(20_000) {
        for o in &opts {
            if let Ok(t) = parse_endpoint_url(&s, o) {
                let _ = t.check_target(&policy);
                assert!(t.port != 0);
            }
            let _ = parse_endpoint_url(&format!("https://{s}/"), o);
        }
        let _ = CidrList::parse(&s);
        let _ = parse_cidr(&s);
        let _ = parse_forwarded_entry(&s);
        let _ = TargetHost::from_host_str(&s);
        let _ = s.parse::<ForwardedHeader>();
        if let Ok(v) = HeaderValue::from_str(&s) {
            let mut h = HeaderMap::new();
            h.append("x-forwarded-for", v.clone());
            h.append("x-forwarded-for", v.clone());
            h.append("x-real-ip", v);
            let _ = cfg.client_ip(peer, &h);
        }
    }
}

#[test]
fn classify_and_check_every_prefix_boundary() {
    // Walk a spread of addresses across the whole space of both families.
    let policy = AddressPolicy::default();
    let mut rng = Lcg(7);
    for i in 0..=255u32 {
        for _ in 0..64 {
            let v4 = std::net::Ipv4Addr::from((i << 24) | (rng.next() as u32 & 0x00ff_ffff));
            let _ = policy.check(IpAddr::V4(v4));
            let _ = classify(IpAddr::V4(v4));
            let hi = (u128::from(i) << 120) | (rng.next() as u128) << 64 | rng.next() as u128;
            let v6 = std::net::Ipv6Addr::from(hi);
            let _ = policy.check(IpAddr::V6(v6));
        }
    }
}
