//! The SSRF acceptance table: every case is run against the direct guarded client, against the
//! egress proxy (raw `CONNECT` and absolute-form requests, as any HTTP client would send them),
//! and against the guarded client sending through the proxy. Every internal target is refused
//! and never reached; the "public" examples (names that resolve, through test resolvers, to the
//! lab range 127.0.0.2/32) are allowed.
//!
//! The internal twin of the public test server listens on 127.0.0.1 with the same port: any
//! spelling, redirect or rebinding that slipped through would land there, and it must see
//! nothing. Refused non-loopback addresses are refused before any packet is sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hookwarden_egress::client::{
    ClientConfig, ErrorClass, GuardedClient, OutboundRequest, ProxyEndpoint,
};
use hookwarden_netguard::{
    AddressPolicy, Guard, IpNet, Resolve, ResolveFuture, SequenceResolver, StaticResolver,
    UrlPolicy,
};
use http::{Method, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Reaches the public server.
    Allowed,
    /// Refused, nothing reaches any server.
    Refused,
    /// The public server answers 302 to an internal address, which is not followed.
    Redirect,
}

struct Case {
    name: &'static str,
    url: String,
    expect: Expect,
}

fn cases(port: u16) -> Vec<Case> {
    use Expect::*;
    let p = port;
    let c = |name, url: String, expect| Case { name, url, expect };
    vec![
        // Address spellings of 127.0.0.1.
        c(
            "loopback literal",
            format!("http://127.0.0.1:{p}/"),
            Refused,
        ),
        c("decimal", format!("http://2130706433:{p}/"), Refused),
        c("hex parts", format!("http://0x7f.1:{p}/"), Refused),
        c("short form", format!("http://127.1:{p}/"), Refused),
        c("octal", format!("http://0177.0.0.1:{p}/"), Refused),
        c("hex whole", format!("http://0x7f000001:{p}/"), Refused),
        c(
            "trailing dot literal",
            format!("http://127.0.0.1.:{p}/"),
            Refused,
        ),
        c(
            "zero padded",
            format!("http://127.000.000.001:{p}/"),
            Refused,
        ),
        c(
            "percent-encoded",
            format!("http://%31%32%37.0.0.1:{p}/"),
            Refused,
        ),
        c(
            "full-width digits",
            format!("http://１２７.０.０.１:{p}/"),
            Refused,
        ),
        // IPv6 forms, embedded IPv4.
        c("ipv6 loopback", format!("http://[::1]:{p}/"), Refused),
        c(
            "ipv4-mapped",
            format!("http://[::ffff:127.0.0.1]:{p}/"),
            Refused,
        ),
        c(
            "ipv4-mapped hex",
            format!("http://[::ffff:7f00:1]:{p}/"),
            Refused,
        ),
        c(
            "ipv4-mapped long",
            format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/"),
            Refused,
        ),
        c(
            "ipv4-compatible",
            format!("http://[::127.0.0.1]:{p}/"),
            Refused,
        ),
        c("nat64", format!("http://[64:ff9b::7f00:1]:{p}/"), Refused),
        c(
            "nat64 local-use",
            format!("http://[64:ff9b:1::7f00:1]:{p}/"),
            Refused,
        ),
        c("6to4", format!("http://[2002:7f00:1::]:{p}/"), Refused),
        c(
            "teredo",
            format!("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/"),
            Refused,
        ),
        c("ipv6 unspecified", format!("http://[::]:{p}/"), Refused),
        // Unspecified and localhost names.
        c("unspecified", format!("http://0.0.0.0:{p}/"), Refused),
        c("zero", format!("http://0:{p}/"), Refused),
        c("localhost", format!("http://localhost:{p}/"), Refused),
        c(
            "localhost mixed case dot",
            format!("http://LOCALHOST.:{p}/"),
            Refused,
        ),
        c(
            "sub.localhost",
            format!("http://api.localhost:{p}/"),
            Refused,
        ),
        // Other special-purpose ranges (refused before any packet).
        c("private 10/8", "http://10.0.0.1/".into(), Refused),
        c("private 172.16/12", "http://172.16.0.1/".into(), Refused),
        c("private 192.168/16", "http://192.168.1.1/".into(), Refused),
        c(
            "cloud metadata",
            "http://169.254.169.254/latest/meta-data/".into(),
            Refused,
        ),
        c("cgnat", "http://100.64.0.1/".into(), Refused),
        c("unique local v6", "http://[fd00::1]/".into(), Refused),
        c("link-local v6", "http://[fe80::1]/".into(), Refused),
        c("site-local v6", "http://[fec0::1]/".into(), Refused),
        c("multicast", "http://224.0.0.1/".into(), Refused),
        c("broadcast", "http://255.255.255.255/".into(), Refused),
        c("documentation", "http://192.0.2.1/".into(), Refused),
        c("benchmarking", "http://198.18.0.1/".into(), Refused),
        c("reserved 240/4", "http://240.0.0.1/".into(), Refused),
        c("ietf protocol", "http://192.0.0.170/".into(), Refused),
        c("6to4 relay", "http://192.88.99.1/".into(), Refused),
        // Names whose answers are internal.
        c(
            "name to loopback",
            format!("http://internal.example:{p}/"),
            Refused,
        ),
        c("name to private", "http://private.example/".into(), Refused),
        c(
            "name to metadata",
            "http://metadata.example/".into(),
            Refused,
        ),
        c(
            "name to ipv6 loopback",
            format!("http://v6.example:{p}/"),
            Refused,
        ),
        c(
            "name to mapped",
            format!("http://mapped.example:{p}/"),
            Refused,
        ),
        c(
            "name to nat64",
            format!("http://nat64.example:{p}/"),
            Refused,
        ),
        c(
            "mixed answers",
            format!("http://mixed.example:{p}/"),
            Refused,
        ),
        // Userinfo and parser-confusion tricks.
        c(
            "userinfo host",
            format!("http://public.example@127.0.0.1:{p}/"),
            Refused,
        ),
        c(
            "credentials",
            format!("http://user:pass@public.example:{p}/"),
            Refused,
        ),
        c("empty userinfo", format!("http://@127.0.0.1:{p}/"), Refused),
        c(
            "fragment at",
            format!("http://127.0.0.1:{p}#@public.example:{p}/"),
            Refused,
        ),
        c(
            "backslash at",
            format!("http://public.example:{p}\\@127.0.0.1:{p}/"),
            Refused,
        ),
        // Redirects to internal addresses are not followed.
        c(
            "redirect to loopback",
            format!("http://public.example:{p}/redirect?to=http://127.0.0.1:{p}/"),
            Redirect,
        ),
        c(
            "redirect to metadata",
            format!("http://public.example:{p}/redirect?to=http://169.254.169.254/"),
            Redirect,
        ),
        // Public examples.
        c(
            "public name",
            format!("http://public.example:{p}/"),
            Allowed,
        ),
        c(
            "public name mixed case dot",
            format!("http://PUBLIC.Example.:{p}/"),
            Allowed,
        ),
        c("lab address", format!("http://127.0.0.2:{p}/"), Allowed),
    ]
}

fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with("public.example", [ip("127.0.0.2")])
        .with("internal.example", [ip("127.0.0.1")])
        .with("private.example", [ip("10.0.0.1")])
        .with("metadata.example", [ip("169.254.169.254")])
        .with("v6.example", [ip("::1")])
        .with("mapped.example", [ip("::ffff:127.0.0.1")])
        .with("nat64.example", [ip("64:ff9b::a9fe:a9fe")])
        .with("mixed.example", [ip("127.0.0.2"), ip("127.0.0.1")])
}

fn lab_policy() -> AddressPolicy {
    let allow: Vec<IpNet> = vec!["127.0.0.2/32".parse().expect("net")];
    AddressPolicy::new(allow, vec![])
}

fn client(resolver: Arc<dyn Resolve>, proxies: Vec<ProxyEndpoint>) -> GuardedClient {
    let cfg = ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        url_policy: UrlPolicy {
            allow_http: true,
            allowed_ports: None,
        },
        proxies,
        ..ClientConfig::default()
    };
    GuardedClient::new(cfg, Arc::new(Guard::new(lab_policy(), resolver))).expect("client")
}

fn proxy_toml(port: u16) -> String {
    format!(
        r#"
[egress]
allow_ranges = ["127.0.0.2/32"]
bind_addresses = ["127.0.0.3"]
[limits]
connect_timeout_secs = 2
[policy]
action = "open"
allowed_ports = [80, 443, {port}]
"#
    )
}

/// The authority as written in the URL (what a client puts in `CONNECT`), port 80 added.
fn raw_authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split('/').next().unwrap_or(rest);
    let has_port = match auth.rfind(']') {
        Some(i) => auth[i..].contains(':'),
        None => auth.contains(':'),
    };
    if has_port {
        auth.to_owned()
    } else {
        format!("{auth}:80")
    }
}

#[tokio::test]
async fn ssrf_table_direct_client() {
    let (public, internal) = twin_servers().await;
    let table = cases(public.addr.port());
    assert!(table.len() >= 40, "{} cases", table.len());
    let c = client(Arc::new(resolver()), vec![]);
    for case in &table {
        let before = public.hits();
        let r = c.send(OutboundRequest::new(Method::GET, &case.url)).await;
        match case.expect {
            Expect::Refused => {
                let e = r.expect_err(case.name);
                assert_eq!(
                    e.class(),
                    ErrorClass::Policy,
                    "{}: {e} ({})",
                    case.name,
                    e.code()
                );
                assert_eq!(public.hits(), before, "{}", case.name);
            }
            Expect::Allowed => {
                let resp = r.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(resp.status, StatusCode::OK, "{}", case.name);
                assert_eq!(&resp.body[..], b"ok from public", "{}", case.name);
            }
            Expect::Redirect => {
                let resp = r.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(resp.status, StatusCode::FOUND, "{}", case.name);
            }
        }
        assert_eq!(
            internal.hits(),
            0,
            "{} reached the internal twin",
            case.name
        );
    }
}

#[tokio::test]
async fn ssrf_table_egress_proxy_raw_requests() {
    let (public, internal) = twin_servers().await;
    let port = public.addr.port();
    let proxy = start_proxy(&proxy_toml(port), Some(Arc::new(resolver()))).await;
    let table = cases(port);
    assert!(table.len() >= 40, "{} cases", table.len());
    for case in &table {
        let before = public.hits();
        // CONNECT with the authority exactly as written.
        let authority = raw_authority(&case.url);
        let (reply, inner) = connect_and_get(proxy.listen_addr, &authority, None, "/").await;
        let path = case
            .url
            .split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned()))
            .unwrap_or_else(|| "/".into());
        match case.expect {
            Expect::Refused => {
                if let Some(r) = &reply {
                    assert!(
                        r.status == 403 || r.status == 400,
                        "CONNECT {}: {} {:?}",
                        case.name,
                        r.status,
                        r.headers
                    );
                    if r.status == 403 {
                        assert!(r.header("x-hookwarden-error").is_some(), "{}", case.name);
                    }
                }
                assert!(inner.is_none(), "{}", case.name);
                assert_eq!(public.hits(), before, "CONNECT {}", case.name);
            }
            Expect::Allowed | Expect::Redirect => {
                let r = reply.unwrap_or_else(|| panic!("{}: no CONNECT reply", case.name));
                assert_eq!(r.status, 200, "{}: {:?}", case.name, r.headers);
                assert!(
                    r.header("x-hookwarden-egress-address")
                        .is_some_and(|a| a.starts_with("127.0.0.3:")),
                    "{}: {:?}",
                    case.name,
                    r.headers
                );
                let (_, inner) = connect_and_get(proxy.listen_addr, &authority, None, &path).await;
                let inner = inner.expect("tunnelled response");
                let want = if case.expect == Expect::Allowed {
                    200
                } else {
                    302
                };
                assert_eq!(inner.status, want, "{}", case.name);
            }
        }
        // Absolute form.
        let reply = absolute_get(proxy.listen_addr, &case.url, None).await;
        match case.expect {
            Expect::Refused => {
                if let Some(r) = &reply {
                    assert!(
                        r.status == 403 || r.status == 400,
                        "GET {}: {} {:?}",
                        case.name,
                        r.status,
                        r.headers
                    );
                }
                assert_eq!(public.hits(), before, "GET {}", case.name);
            }
            Expect::Allowed => {
                let r = reply.unwrap_or_else(|| panic!("{}: no reply", case.name));
                assert_eq!(r.status, 200, "{}", case.name);
                assert_eq!(r.body, b"ok from public", "{}", case.name);
            }
            Expect::Redirect => {
                let r = reply.unwrap_or_else(|| panic!("{}: no reply", case.name));
                assert_eq!(r.status, 302, "{}", case.name);
            }
        }
        assert_eq!(
            internal.hits(),
            0,
            "{} reached the internal twin",
            case.name
        );
    }
    // Every allowed request left from the egress address.
    assert!(!public.peers().is_empty());
    assert!(
        public.peers().iter().all(|p| p.ip() == ip("127.0.0.3")),
        "{:?}",
        public.peers()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn ssrf_table_client_through_proxy() {
    let (public, internal) = twin_servers().await;
    let port = public.addr.port();
    let proxy = start_proxy(&proxy_toml(port), Some(Arc::new(resolver()))).await;
    // The client resolves and checks every name itself and asks the proxy for the checked
    // address (a generic proxy would reach whatever a name points to); the proxy, a Hookwarden
    // one, checks again on its side.
    let c = client(
        Arc::new(resolver()),
        vec![ProxyEndpoint {
            url: format!("http://{}", proxy.listen_addr),
            username: None,
            password: None,
        }],
    );
    let table = cases(port);
    assert!(table.len() >= 40, "{} cases", table.len());
    for case in &table {
        let before = public.hits();
        let r = c.send(OutboundRequest::new(Method::GET, &case.url)).await;
        match case.expect {
            Expect::Refused => {
                let e = r.expect_err(case.name);
                assert_eq!(
                    e.class(),
                    ErrorClass::Policy,
                    "{}: {e} ({})",
                    case.name,
                    e.code()
                );
                assert_eq!(public.hits(), before, "{}", case.name);
            }
            Expect::Allowed => {
                let resp = r.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(resp.status, StatusCode::OK, "{}", case.name);
                assert_eq!(resp.proxy_addr, Some(proxy.listen_addr));
                let local = resp.local_addr.expect("egress address");
                assert_eq!(local.ip(), ip("127.0.0.3"), "{}", case.name);
                assert_eq!(resp.remote_addr.map(|a| a.ip()), Some(ip("127.0.0.2")));
            }
            Expect::Redirect => {
                let resp = r.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(resp.status, StatusCode::FOUND, "{}", case.name);
            }
        }
        assert_eq!(
            internal.hits(),
            0,
            "{} reached the internal twin",
            case.name
        );
    }
    drop(c);
    proxy.shutdown().await;
}

/// Rebinding: answers public on the first query and internal on the second (and the reverse).
struct Rebinding(SequenceResolver);

impl Resolve for Rebinding {
    fn resolve(&self, host: &str) -> ResolveFuture {
        self.0.resolve(host)
    }
}

fn rebinding() -> Arc<Rebinding> {
    Arc::new(Rebinding(
        SequenceResolver::new()
            .with(
                "rebind.example",
                vec![vec![ip("127.0.0.2")], vec![ip("127.0.0.1")]],
            )
            .with(
                "late.example",
                vec![vec![ip("127.0.0.1")], vec![ip("127.0.0.2")]],
            ),
    ))
}

#[tokio::test]
async fn rebinding_direct_client_checks_what_it_connects_to() {
    let (public, internal) = twin_servers().await;
    let port = public.addr.port();
    let r = rebinding();
    let c = client(r.clone(), vec![]);
    // The check at endpoint creation sees the public answer…
    let host = hookwarden_netguard::TargetHost::Domain("rebind.example".into());
    let ok: Vec<IpAddr> = c
        .guard()
        .resolve_checked(&host)
        .await
        .expect("first answer");
    assert_eq!(ok, vec![ip("127.0.0.2")]);
    // …and the delivery resolves again, once, and refuses the internal answer.
    let e = c
        .send(OutboundRequest::new(
            Method::GET,
            format!("http://rebind.example:{port}/"),
        ))
        .await
        .expect_err("rebound to loopback");
    assert_eq!(e.code(), "DESTINATION_DENIED");
    assert_eq!(r.0.queries("rebind.example"), 2);
    // The reverse: refused first, allowed when the answer is public.
    let url = format!("http://late.example:{port}/");
    assert!(
        c.send(OutboundRequest::new(Method::GET, &url))
            .await
            .is_err()
    );
    let resp = c
        .send(OutboundRequest::new(Method::GET, &url))
        .await
        .expect("public answer");
    assert_eq!(&resp.body[..], b"ok from public");
    assert_eq!(internal.hits(), 0);
}

#[tokio::test]
async fn rebinding_proxy_resolves_once_per_tunnel() {
    let (public, internal) = twin_servers().await;
    let port = public.addr.port();
    let r = rebinding();
    let proxy = start_proxy(&proxy_toml(port), Some(r.clone())).await;
    let authority = format!("rebind.example:{port}");
    let (first, inner) = connect_and_get(proxy.listen_addr, &authority, None, "/").await;
    assert_eq!(first.expect("reply").status, 200);
    assert_eq!(inner.expect("tunnelled").body, b"ok from public");
    let (second, inner) = connect_and_get(proxy.listen_addr, &authority, None, "/").await;
    let second = second.expect("reply");
    assert_eq!(second.status, 403);
    assert_eq!(
        second.header("x-hookwarden-error"),
        Some("DESTINATION_DENIED")
    );
    assert!(inner.is_none());
    assert_eq!(r.0.queries("rebind.example"), 2);
    assert_eq!(internal.hits(), 0);
    assert_eq!(public.hits(), 1);
    proxy.shutdown().await;
}
