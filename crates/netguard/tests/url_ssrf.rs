//! Table-driven SSRF cases for endpoint URLs: every spelling of an address must become the
//! address it names, and the default policy must refuse every internal one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

use std::net::IpAddr;

use hookwarden_netguard::{
    AddressPolicy, IpNet, MAX_URL_LEN, TargetHost, TargetScheme, UrlPolicy, parse_endpoint_url,
};

#[derive(Debug, Clone, Copy)]
enum Want {
    /// Parses to this address literal; `public` says whether the default policy permits it.
    Ip(&'static str, bool),
    /// Parses to this domain name (checked later, after resolution), except `localhost` names
    /// which the default policy refuses at once.
    Domain(&'static str),
    /// Refused with this code.
    Refused(&'static str),
}
use Want::{Domain, Ip, Refused};

const CASES: &[(&str, Want)] = &[
    // Loopback in every spelling.
    ("https://127.0.0.1/", Ip("127.0.0.1", false)),
    ("https://127.0.0.1:443/hook", Ip("127.0.0.1", false)),
    ("https://2130706433/", Ip("127.0.0.1", false)),
    ("https://0x7f.1/", Ip("127.0.0.1", false)),
    ("https://0X7F.1/", Ip("127.0.0.1", false)),
    ("https://127.1/", Ip("127.0.0.1", false)),
    ("https://127.0.1/", Ip("127.0.0.1", false)),
    ("https://0177.0.0.1/", Ip("127.0.0.1", false)),
    ("https://0x7f000001/", Ip("127.0.0.1", false)),
    ("https://017700000001/", Ip("127.0.0.1", false)),
    ("https://0x7f.0x0.0x0.0x1/", Ip("127.0.0.1", false)),
    ("https://127.000.000.001/", Ip("127.0.0.1", false)),
    ("https://127.0.0.1./", Ip("127.0.0.1", false)),
    ("https://%31%32%37.0.0.1/", Ip("127.0.0.1", false)),
    ("https://%30x7f.1/", Ip("127.0.0.1", false)),
    (
        "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
        Ip("127.0.0.1", false),
    ),
    (
        "https://127\u{3002}0\u{3002}0\u{3002}1/",
        Ip("127.0.0.1", false),
    ),
    ("https://127.0.0.2/", Ip("127.0.0.2", false)),
    ("https://[::1]/", Ip("::1", false)),
    ("https://[0:0:0:0:0:0:0:1]/", Ip("::1", false)),
    ("https://[::1]:8443/", Ip("::1", false)),
    ("https://[::ffff:127.0.0.1]/", Ip("::ffff:127.0.0.1", false)),
    ("https://[::ffff:7f00:1]/", Ip("::ffff:127.0.0.1", false)),
    (
        "https://[0::ffff:7f00:0001]/",
        Ip("::ffff:127.0.0.1", false),
    ),
    ("https://[::127.0.0.1]/", Ip("::127.0.0.1", false)),
    (
        "https://[64:ff9b::7f00:1]/",
        Ip("64:ff9b::127.0.0.1", false),
    ),
    ("https://[2002:7f00:1::]/", Ip("2002:7f00:1::", false)),
    // Unspecified ("this host").
    ("https://0/", Ip("0.0.0.0", false)),
    ("https://0.0.0.0/", Ip("0.0.0.0", false)),
    ("https://0x0/", Ip("0.0.0.0", false)),
    ("https://[::]/", Ip("::", false)),
    // Cloud metadata and link-local.
    (
        "https://169.254.169.254/latest/meta-data/",
        Ip("169.254.169.254", false),
    ),
    ("https://2852039166/", Ip("169.254.169.254", false)),
    ("https://0xA9FEA9FE/", Ip("169.254.169.254", false)),
    ("https://0251.0376.0251.0376/", Ip("169.254.169.254", false)),
    ("https://169.254.43518/", Ip("169.254.169.254", false)),
    (
        "https://[::ffff:a9fe:a9fe]/",
        Ip("::ffff:169.254.169.254", false),
    ),
    ("https://[fd00:ec2::254]/", Ip("fd00:ec2::254", false)),
    ("https://[fe80::1]/", Ip("fe80::1", false)),
    ("https://[fe80::1%25eth0]/", Refused("URL_INVALID")),
    // Private, CGNAT, documentation, benchmarking, multicast, broadcast, reserved.
    ("https://10.0.0.1/", Ip("10.0.0.1", false)),
    ("https://10.1/", Ip("10.0.0.1", false)),
    ("https://0xa.0.0.1/", Ip("10.0.0.1", false)),
    ("https://172.16.0.1/", Ip("172.16.0.1", false)),
    ("https://192.168.1.1:8443/", Ip("192.168.1.1", false)),
    ("https://3232235777/", Ip("192.168.1.1", false)),
    ("https://100.64.0.1/", Ip("100.64.0.1", false)),
    ("https://192.0.2.1/", Ip("192.0.2.1", false)),
    ("https://198.18.0.1/", Ip("198.18.0.1", false)),
    ("https://224.0.0.1/", Ip("224.0.0.1", false)),
    ("https://255.255.255.255/", Ip("255.255.255.255", false)),
    ("https://4294967295/", Ip("255.255.255.255", false)),
    ("https://240.0.0.1/", Ip("240.0.0.1", false)),
    ("https://[fc00::1]/", Ip("fc00::1", false)),
    ("https://[fec0::1]/", Ip("fec0::1", false)),
    ("https://[ff02::1]/", Ip("ff02::1", false)),
    ("https://[2001:db8::1]/", Ip("2001:db8::1", false)),
    ("https://[64:ff9b::a00:1]/", Ip("64:ff9b::10.0.0.1", false)),
    // Public literals are accepted (and never connected to in tests).
    ("https://93.184.216.34/", Ip("93.184.216.34", true)),
    ("https://1572395042/", Ip("93.184.216.34", true)),
    (
        "https://[::ffff:93.184.216.34]/",
        Ip("::ffff:93.184.216.34", true),
    ),
    (
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        Ip("2606:2800:220:1:248:1893:25c8:1946", true),
    ),
    // Not addresses.
    ("https://1.2.3.4.5/", Refused("URL_INVALID")),
    ("https://256.0.0.1/", Refused("URL_INVALID")),
    ("https://0x100000000/", Refused("URL_INVALID")),
    ("https://[::1/", Refused("URL_INVALID")),
    ("https://[127.0.0.1]/", Refused("URL_INVALID")),
    // Names.
    (
        "https://hooks.example.com/in?x=1",
        Domain("hooks.example.com"),
    ),
    ("https://HOOKS.Example.COM./in", Domain("hooks.example.com")),
    ("https://exa%6dple.com/", Domain("example.com")),
    ("https://ex\u{00ad}ample.com/", Domain("example.com")),
    (
        "https://b\u{fc}cher.example/",
        Domain("xn--bcher-kva.example"),
    ),
    ("https://a_b.example/", Domain("a_b.example")),
    ("https://127.0.0.1.nip.io/", Domain("127.0.0.1.nip.io")),
    ("https:hooks.example.com/", Domain("hooks.example.com")),
    (
        "https://hooks.example.com/%0d%0aHost:%20evil",
        Domain("hooks.example.com"),
    ),
    ("https://localhost/", Domain("localhost")),
    ("https://LOCALHOST./", Domain("localhost")),
    ("https://api.localhost/", Domain("api.localhost")),
    ("https://example..com/", Refused("URL_HOST_INVALID")),
    ("https://*.example.com/", Refused("URL_HOST_INVALID")),
    ("https://exa!mple.com/", Refused("URL_HOST_INVALID")),
    // Credentials and parser-confusion tricks.
    (
        "https://public.example@127.0.0.1/",
        Refused("URL_USERINFO_NOT_ALLOWED"),
    ),
    (
        "https://user:pass@hooks.example.com/",
        Refused("URL_USERINFO_NOT_ALLOWED"),
    ),
    ("https://@127.0.0.1/", Refused("URL_USERINFO_NOT_ALLOWED")),
    (
        "https://:@hooks.example.com/",
        Refused("URL_USERINFO_NOT_ALLOWED"),
    ),
    (
        "https://hooks.example.com:443@127.0.0.1/",
        Refused("URL_USERINFO_NOT_ALLOWED"),
    ),
    (
        "https://hooks.example.com%40127.0.0.1/",
        Refused("URL_INVALID"),
    ),
    (
        "https://127.0.0.1#@public.example/",
        Refused("URL_FRAGMENT_NOT_ALLOWED"),
    ),
    (
        "https://hooks.example.com/#frag",
        Refused("URL_FRAGMENT_NOT_ALLOWED"),
    ),
    (
        "https://hooks.example.com/#",
        Refused("URL_FRAGMENT_NOT_ALLOWED"),
    ),
    (
        "https://public.example\\@127.0.0.1/",
        Refused("URL_INVALID_CHARACTER"),
    ),
    ("https:\\\\127.0.0.1/", Refused("URL_INVALID_CHARACTER")),
    (
        "https://127.0.0.1\\.public.example/",
        Refused("URL_INVALID_CHARACTER"),
    ),
    (
        "https://hooks.exa\tmple.com/",
        Refused("URL_INVALID_CHARACTER"),
    ),
    ("https://127.0.0.\n1/", Refused("URL_INVALID_CHARACTER")),
    (
        "https://hooks.example.com/\r\nX-Injected: 1",
        Refused("URL_INVALID_CHARACTER"),
    ),
    (
        " https://hooks.example.com/",
        Refused("URL_INVALID_CHARACTER"),
    ),
    (
        "https://hooks.example.com/ ",
        Refused("URL_INVALID_CHARACTER"),
    ),
    (
        "https://hooks.example.com/\u{0}",
        Refused("URL_INVALID_CHARACTER"),
    ),
    (
        "https://hooks.example.com/\u{a0}",
        Refused("URL_INVALID_CHARACTER"),
    ),
    ("https://exa mple.com/", Refused("URL_INVALID_CHARACTER")),
    // Schemes.
    (
        "http://hooks.example.com/",
        Refused("URL_SCHEME_NOT_ALLOWED"),
    ),
    ("HTTP://127.0.0.1/", Refused("URL_SCHEME_NOT_ALLOWED")),
    ("HTTPS://HOOKS.EXAMPLE.COM/", Domain("hooks.example.com")),
    (
        "ftp://hooks.example.com/",
        Refused("URL_SCHEME_NOT_ALLOWED"),
    ),
    ("file:///etc/passwd", Refused("URL_SCHEME_NOT_ALLOWED")),
    (
        "gopher://127.0.0.1:6379/_INFO",
        Refused("URL_SCHEME_NOT_ALLOWED"),
    ),
    ("dict://127.0.0.1:11211/", Refused("URL_SCHEME_NOT_ALLOWED")),
    ("ws://hooks.example.com/", Refused("URL_SCHEME_NOT_ALLOWED")),
    ("javascript:alert(1)", Refused("URL_SCHEME_NOT_ALLOWED")),
    ("data:text/plain,hi", Refused("URL_SCHEME_NOT_ALLOWED")),
    ("//hooks.example.com/", Refused("URL_INVALID")),
    ("hooks.example.com/path", Refused("URL_INVALID")),
    ("", Refused("URL_INVALID")),
    // Hosts and ports.
    ("https://", Refused("URL_INVALID")),
    ("https:///", Refused("URL_INVALID")),
    ("https://:443/", Refused("URL_INVALID")),
    (
        "https://hooks.example.com:0/",
        Refused("URL_PORT_NOT_ALLOWED"),
    ),
    ("https://hooks.example.com:65536/", Refused("URL_INVALID")),
    ("https://hooks.example.com:-1/", Refused("URL_INVALID")),
];

fn code_of(input: &str, opts: &UrlPolicy, policy: &AddressPolicy) -> Result<TargetHost, String> {
    let t = parse_endpoint_url(input, opts).map_err(|e| e.code().to_owned())?;
    t.check_target(policy).map_err(|e| e.code().to_owned())?;
    Ok(t.host)
}

#[test]
fn ssrf_table() {
    assert!(CASES.len() >= 40);
    let opts = UrlPolicy::default();
    let policy = AddressPolicy::default();
    let mut failures = Vec::new();
    for (input, want) in CASES {
        let parsed = parse_endpoint_url(input, &opts);
        let ok = match (want, &parsed) {
            (Ip(addr, public), Ok(t)) => {
                let addr: IpAddr = addr.parse().expect("test address");
                let host_ok = t.host == TargetHost::Ip(addr);
                let check = t.check_target(&policy);
                let policy_ok = match check {
                    Ok(()) => *public,
                    Err(ref e) => !*public && e.code() == "URL_ADDRESS_DENIED",
                };
                host_ok && policy_ok && t.scheme == TargetScheme::Https
            }
            (Domain(d), Ok(t)) => {
                let localhost = t.host.is_localhost_name();
                let check = t.check_target(&policy);
                t.host == TargetHost::Domain((*d).to_owned()) && check.is_ok() != localhost
            }
            (Refused(code), Err(e)) => e.code() == *code,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: want {want:?}, got {parsed:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn too_long() {
    let opts = UrlPolicy::default();
    let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
    let err = parse_endpoint_url(&long, &opts).expect_err("too long");
    assert_eq!(err.code(), "URL_TOO_LONG");
    let just = format!(
        "https://h.example/{}",
        "a".repeat(MAX_URL_LEN - "https://h.example/".len())
    );
    assert_eq!(just.len(), MAX_URL_LEN);
    assert!(parse_endpoint_url(&just, &opts).is_ok());
    // The bound holds for the normalised URL too, which is what is stored and checked again:
    // WHATWG percent-encodes non-ASCII, so 700 `é` (1,400 bytes) become 4,200 (found by fuzzing).
    let short_but_wide = format!("https://h.example/{}", "é".repeat(700));
    assert!(short_but_wide.len() <= MAX_URL_LEN);
    let err = parse_endpoint_url(&short_but_wide, &opts).expect_err("normalised too long");
    assert_eq!(err.code(), "URL_TOO_LONG");
}

#[test]
fn http_only_when_allowed() {
    let opts = UrlPolicy {
        allow_http: true,
        allowed_ports: None,
    };
    let t = parse_endpoint_url("http://hooks.example.com/x", &opts).expect("http allowed");
    assert_eq!(t.scheme, TargetScheme::Http);
    assert_eq!(t.port, 80);
    let t = parse_endpoint_url("https://hooks.example.com/x", &opts).expect("https");
    assert_eq!(t.port, 443);
    let err = parse_endpoint_url("ftp://hooks.example.com/", &opts).expect_err("ftp");
    assert_eq!(err.code(), "URL_SCHEME_NOT_ALLOWED");
    assert!(err.to_string().contains("https or http"));
}

#[test]
fn allowed_ports() {
    let opts = UrlPolicy {
        allow_http: false,
        allowed_ports: Some(vec![443, 8443]),
    };
    assert_eq!(
        parse_endpoint_url("https://h.example/", &opts)
            .expect("443")
            .port,
        443
    );
    assert_eq!(
        parse_endpoint_url("https://h.example:8443/", &opts)
            .expect("8443")
            .port,
        8443
    );
    let err = parse_endpoint_url("https://h.example:22/", &opts).expect_err("22");
    assert_eq!(err.code(), "URL_PORT_NOT_ALLOWED");
}

#[test]
fn allow_ranges_let_literals_through_and_deny_wins() {
    let opts = UrlPolicy::default();
    let nets = |s: &str| -> Vec<IpNet> { s.split(' ').map(|n| n.parse().expect("net")).collect() };
    let policy = AddressPolicy::new(nets("127.0.0.0/8 10.0.0.0/8"), nets("10.66.0.0/16"));
    for (input, want) in [
        ("https://127.0.0.1/", Ok(())),
        ("https://0x7f.1/", Ok(())),
        ("https://[::ffff:127.0.0.1]/", Ok(())),
        ("https://localhost/", Ok(())),
        ("https://10.1.2.3/", Ok(())),
        ("https://10.66.0.1/", Err("URL_ADDRESS_DENIED")),
        ("https://[::ffff:10.66.0.1]/", Err("URL_ADDRESS_DENIED")),
        ("https://[::1]/", Err("URL_ADDRESS_DENIED")),
        ("https://169.254.169.254/", Err("URL_ADDRESS_DENIED")),
    ] {
        let got = code_of(input, &opts, &policy).map(|_| ());
        assert_eq!(got, want.map_err(str::to_owned), "{input}");
    }
}

#[test]
fn target_fields_and_url_normalised() {
    let t = parse_endpoint_url(
        "https://HOOKS.example.com.:8443/a/b?c=d",
        &UrlPolicy::default(),
    )
    .expect("ok");
    assert_eq!(t.host.to_string(), "hooks.example.com");
    assert_eq!(t.port, 8443);
    assert_eq!(t.url.as_str(), "https://hooks.example.com.:8443/a/b?c=d");
    let t = parse_endpoint_url("https://0x7f.1:443/", &UrlPolicy::default()).expect("ok");
    assert_eq!(t.url.as_str(), "https://127.0.0.1/");
    assert_eq!(t.host.ip(), Some("127.0.0.1".parse().expect("ip")));
    assert_eq!(t.host.domain(), None);
}

#[test]
fn error_messages_are_clear() {
    let err = parse_endpoint_url("https://127.0.0.1/", &UrlPolicy::default())
        .expect("parses")
        .check_target(&AddressPolicy::default())
        .expect_err("denied");
    assert_eq!(
        err.to_string(),
        "URL host is not allowed: destination 127.0.0.1 is a loopback address and is not allowed"
    );
    let err = parse_endpoint_url("gopher://x/", &UrlPolicy::default()).expect_err("scheme");
    assert_eq!(
        err.to_string(),
        "URL scheme \"gopher\" is not allowed (use https)"
    );
}

#[test]
fn target_host_from_uri_host() {
    let h = |s: &str| TargetHost::from_host_str(s);
    assert_eq!(h("[::1]"), Some(TargetHost::Ip("::1".parse().expect("ip"))));
    assert_eq!(
        h("127.0.0.1"),
        Some(TargetHost::Ip("127.0.0.1".parse().expect("ip")))
    );
    assert_eq!(
        h("Hooks.Example.com."),
        Some(TargetHost::Domain("hooks.example.com".into()))
    );
    assert_eq!(h("127.1"), None);
    assert_eq!(h("0x7f.1"), None);
    assert_eq!(h("2130706433"), None);
    assert_eq!(h(""), None);
    assert_eq!(h("[::1"), None);
    assert_eq!(h("a b"), None);
}
