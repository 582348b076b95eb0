//! Guard: resolve once, check, connect to exactly the checked address. Real sockets, loopback
//! only; every address that is not on 127.0.0.0/8 or ::1 is only ever classified, never dialled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookwarden_netguard::{
    AddressPolicy, Guard, IpNet, Resolve, ResolveFuture, SequenceResolver, StaticResolver,
    TargetHost, UrlPolicy,
};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn nets(s: &str) -> Vec<IpNet> {
    s.split_whitespace()
        .map(|n| n.parse().expect("net"))
        .collect()
}

fn name(s: &str) -> TargetHost {
    TargetHost::Domain(s.to_owned())
}

fn loopback_guard(resolver: impl Resolve) -> Guard {
    Guard::new(
        AddressPolicy::new(nets("127.0.0.0/8"), vec![]),
        Arc::new(resolver),
    )
}

/// Whether `listener` gets a connection within `wait`.
async fn saw_connection(listener: &TcpListener, wait: Duration) -> Option<SocketAddr> {
    match tokio::time::timeout(wait, listener.accept()).await {
        Ok(Ok((_, peer))) => Some(peer),
        _ => None,
    }
}

/// Counts lookups, answering from a static map.
struct Counting {
    inner: StaticResolver,
    count: Arc<AtomicUsize>,
}

impl Resolve for Counting {
    fn resolve(&self, host: &str) -> ResolveFuture {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(host)
    }
}

#[tokio::test]
async fn connects_to_allowed_loopback_by_name_and_literal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let guard = loopback_guard(Counting {
        inner: StaticResolver::new().with("hook.test", [ip("127.0.0.1")]),
        count: count.clone(),
    });

    let c = guard
        .connect(&name("hook.test"), addr.port(), None, T)
        .await
        .expect("connects");
    assert_eq!(c.remote, addr);
    assert_eq!(c.local.ip(), ip("127.0.0.1"));
    assert!(c.stream.nodelay().expect("nodelay"));
    let peer = saw_connection(&listener, T).await.expect("server saw it");
    assert_eq!(peer, c.local);
    assert_eq!(count.load(Ordering::SeqCst), 1, "exactly one lookup");

    let c = guard
        .connect(&TargetHost::Ip(ip("127.0.0.1")), addr.port(), None, T)
        .await
        .expect("connects");
    assert_eq!(c.remote, addr);
    assert!(saw_connection(&listener, T).await.is_some());
    // Literals are not looked up.
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Mapped literal: normalised, connected over IPv4.
    let c = guard
        .connect(
            &TargetHost::Ip(ip("::ffff:127.0.0.1")),
            addr.port(),
            None,
            T,
        )
        .await
        .expect("connects");
    assert_eq!(c.remote, addr);
    assert!(saw_connection(&listener, T).await.is_some());
}

#[tokio::test]
async fn default_policy_refuses_loopback_without_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let guard = Guard::new(
        AddressPolicy::default(),
        Arc::new(StaticResolver::new().with("hook.test", [ip("127.0.0.1")])),
    );
    for host in [
        TargetHost::Ip(ip("127.0.0.1")),
        TargetHost::Ip(ip("::ffff:127.0.0.1")),
        TargetHost::Ip(ip("0.0.0.0")),
        name("hook.test"),
    ] {
        let err = guard
            .connect(&host, port, None, T)
            .await
            .expect_err("denied");
        assert_eq!(err.code(), "DESTINATION_DENIED", "{host}");
        assert!(!err.is_retryable());
        assert!(err.denied().is_some());
    }
    assert!(
        saw_connection(&listener, Duration::from_millis(200))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn any_denied_answer_rejects_the_name() {
    // Only resolve_checked here: the public-looking addresses are never dialled.
    let resolver = StaticResolver::new()
        .with("mixed.test", [ip("93.184.216.34"), ip("10.0.0.1")])
        .with(
            "mixed-allowed.test",
            [ip("127.0.0.1"), ip("169.254.169.254")],
        )
        .with("mapped.test", [ip("::ffff:10.0.0.1")])
        .with(
            "public.test",
            [
                ip("93.184.216.34"),
                ip("::ffff:93.184.216.34"),
                ip("2606:2800:220:1::1"),
            ],
        );
    let guard = loopback_guard(resolver);
    for (host, code) in [
        ("mixed.test", "private"),
        ("mixed-allowed.test", "link_local"),
        ("mapped.test", "private"),
    ] {
        let err = guard.resolve_checked(&name(host)).await.expect_err(host);
        assert_eq!(err.code(), "DESTINATION_DENIED");
        assert_eq!(err.denied().map(|d| d.code()), Some(code), "{host}");
        assert!(err.to_string().contains(host), "{err}");
    }
    let ok = guard
        .resolve_checked(&name("public.test"))
        .await
        .expect("public");
    assert_eq!(
        ok,
        vec![ip("93.184.216.34"), ip("2606:2800:220:1::1")],
        "normalised and deduplicated"
    );
}

#[tokio::test]
async fn rebinding_uses_only_the_checked_answer() {
    // The operator allows only 127.0.0.2 (our stand-in for "a public address"). The first lookup
    // answers 127.0.0.2; every later lookup answers 127.0.0.1, which is denied. The connect must
    // go to 127.0.0.2, and a listener on 127.0.0.1 at the same port must see nothing.
    let allowed = TcpListener::bind("127.0.0.2:0").await.expect("bind .2");
    let port = allowed.local_addr().expect("addr").port();
    let decoy = TcpListener::bind(("127.0.0.1", port)).await.ok();
    let resolver = Arc::new(SequenceResolver::new().with(
        "rebind.test",
        vec![vec![ip("127.0.0.2")], vec![ip("127.0.0.1")]],
    ));
    let guard = Guard::new(
        AddressPolicy::new(nets("127.0.0.2/32"), vec![]),
        resolver.clone() as Arc<dyn Resolve>,
    );
    let c = guard
        .connect(&name("rebind.test"), port, None, T)
        .await
        .expect("first answer connects");
    assert_eq!(c.remote, SocketAddr::new(ip("127.0.0.2"), port));
    assert_eq!(resolver.queries("rebind.test"), 1, "one lookup per connect");
    assert!(saw_connection(&allowed, T).await.is_some());
    if let Some(decoy) = &decoy {
        assert!(
            saw_connection(decoy, Duration::from_millis(200))
                .await
                .is_none()
        );
    }

    // The second connect sees the rebound answer and is refused before any packet is sent.
    let err = guard
        .connect(&name("rebind.test"), port, None, T)
        .await
        .expect_err("rebound answer denied");
    assert_eq!(err.code(), "DESTINATION_DENIED");
    assert_eq!(err.denied().map(|d| d.code()), Some("loopback"));
    assert_eq!(resolver.queries("rebind.test"), 2);
    if let Some(decoy) = &decoy {
        assert!(
            saw_connection(decoy, Duration::from_millis(200))
                .await
                .is_none()
        );
    }
}

#[tokio::test]
async fn rebinding_to_private_is_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let resolver = Arc::new(SequenceResolver::new().with(
        "rebind.test",
        vec![vec![ip("127.0.0.1")], vec![ip("10.0.0.1")]],
    ));
    let guard = Guard::new(
        AddressPolicy::new(nets("127.0.0.0/8"), vec![]),
        resolver.clone() as Arc<dyn Resolve>,
    );
    let c = guard
        .connect(&name("rebind.test"), port, None, T)
        .await
        .expect("first");
    assert_eq!(c.remote.ip(), ip("127.0.0.1"));
    let err = guard
        .connect(&name("rebind.test"), port, None, T)
        .await
        .expect_err("second");
    assert_eq!(err.denied().map(|d| d.code()), Some("private"));
}

#[tokio::test]
async fn binds_to_the_requested_source_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let guard = loopback_guard(StaticResolver::new());
    let c = guard
        .connect(
            &TargetHost::Ip(addr.ip()),
            addr.port(),
            Some(ip("127.0.0.2")),
            T,
        )
        .await
        .expect("connects");
    assert_eq!(c.local.ip(), ip("127.0.0.2"));
    let peer = saw_connection(&listener, T).await.expect("accepted");
    assert_eq!(peer.ip(), ip("127.0.0.2"));

    // A bind address of the other family leaves nothing to try.
    let err = guard
        .connect(&TargetHost::Ip(addr.ip()), addr.port(), Some(ip("::1")), T)
        .await
        .expect_err("family mismatch");
    assert_eq!(err.code(), "CONNECT_ERROR");
}

#[tokio::test]
async fn ipv6_loopback_when_allowed() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let addr = listener.local_addr().expect("addr");
    let guard = Guard::new(
        AddressPolicy::new(nets("::1/128"), vec![]),
        Arc::new(StaticResolver::new().with("v6.test", [ip("::1")])),
    );
    let c = guard
        .connect(&name("v6.test"), addr.port(), None, T)
        .await
        .expect("connects");
    assert_eq!(c.remote, addr);
    assert!(saw_connection(&listener, T).await.is_some());
    // 127.0.0.0/8 alone does not allow ::1.
    let err = loopback_guard(StaticResolver::new())
        .connect(&TargetHost::Ip(ip("::1")), addr.port(), None, T)
        .await
        .expect_err("::1 not allowed");
    assert_eq!(err.code(), "DESTINATION_DENIED");
}

#[tokio::test]
async fn tries_each_checked_address_in_turn() {
    let listener = TcpListener::bind("127.0.0.3:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // 127.0.0.4 has no listener on that port: refused, then 127.0.0.3 accepts.
    let guard =
        loopback_guard(StaticResolver::new().with("two.test", [ip("127.0.0.4"), ip("127.0.0.3")]));
    let c = guard
        .connect(&name("two.test"), port, None, T)
        .await
        .expect("second works");
    assert_eq!(c.remote, SocketAddr::new(ip("127.0.0.3"), port));
}

#[tokio::test]
async fn connection_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let guard = loopback_guard(StaticResolver::new());
    let err = guard
        .connect(&TargetHost::Ip(ip("127.0.0.1")), port, None, T)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "CONNECT_ERROR");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn connect_timeout_on_full_backlog() {
    // A listener that never accepts, with its backlog filled: further SYNs are dropped.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let guard = loopback_guard(StaticResolver::new());
    let host = TargetHost::Ip(addr.ip());
    let mut held = Vec::new();
    let mut timed_out = false;
    for _ in 0..8 {
        let started = std::time::Instant::now();
        match guard
            .connect(&host, addr.port(), None, Duration::from_millis(300))
            .await
        {
            Ok(c) => held.push(c),
            Err(e) => {
                assert_eq!(e.code(), "CONNECT_TIMEOUT", "{e}");
                assert!(started.elapsed() < Duration::from_secs(3));
                timed_out = true;
                break;
            }
        }
    }
    assert!(
        timed_out,
        "the backlog never filled ({} connections)",
        held.len()
    );
}

#[tokio::test]
async fn dns_failures() {
    struct Failing;
    impl Resolve for Failing {
        fn resolve(&self, _host: &str) -> ResolveFuture {
            Box::pin(async { Err(io::Error::other("SERVFAIL")) })
        }
    }
    struct Hanging;
    impl Resolve for Hanging {
        fn resolve(&self, _host: &str) -> ResolveFuture {
            Box::pin(std::future::pending())
        }
    }
    let guard = loopback_guard(StaticResolver::new().with("empty.test", []));
    let err = guard
        .connect(&name("missing.test"), 1, None, T)
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "DNS_NO_ADDRESSES");
    let err = guard
        .connect(&name("empty.test"), 1, None, T)
        .await
        .expect_err("empty");
    assert_eq!(err.code(), "DNS_NO_ADDRESSES");
    let err = loopback_guard(Failing)
        .connect(&name("x.test"), 1, None, T)
        .await
        .expect_err("servfail");
    assert_eq!(err.code(), "DNS_ERROR");
    assert!(err.to_string().contains("SERVFAIL"));
    let started = std::time::Instant::now();
    let err = loopback_guard(Hanging)
        .with_resolve_timeout(Duration::from_millis(100))
        .connect(&name("x.test"), 1, None, T)
        .await
        .expect_err("hangs");
    assert_eq!(err.code(), "DNS_TIMEOUT");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn check_url_combines_parse_and_policy() {
    let guard = loopback_guard(StaticResolver::new());
    let opts = UrlPolicy {
        allow_http: true,
        allowed_ports: None,
    };
    assert!(guard.check_url("http://127.0.0.1:8080/hook", &opts).is_ok());
    assert!(guard.check_url("http://localhost:8080/hook", &opts).is_ok());
    let err = guard
        .check_url("http://10.0.0.1/hook", &opts)
        .expect_err("private");
    assert_eq!(err.code(), "URL_ADDRESS_DENIED");
    let err = guard
        .check_url("http://127.0.0.1/hook", &UrlPolicy::default())
        .expect_err("http off");
    assert_eq!(err.code(), "URL_SCHEME_NOT_ALLOWED");
}

#[tokio::test]
async fn huge_timeouts_do_not_overflow() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let guard = loopback_guard(StaticResolver::new()).with_resolve_timeout(Duration::MAX);
    let c = guard
        .connect(&TargetHost::Ip(addr.ip()), addr.port(), None, Duration::MAX)
        .await
        .expect("connects");
    assert_eq!(c.remote, addr);
}
