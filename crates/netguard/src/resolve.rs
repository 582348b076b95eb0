//! Name resolution behind a small trait, so tests and operators can substitute answers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;

/// The future a [`Resolve`] implementation returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>>;

/// At most this many addresses of one answer are kept (the rest are dropped).
pub const MAX_ANSWERS: usize = 32;

/// Resolves a host name to addresses.
///
/// `host` is a domain name as [`TargetHost::Domain`](crate::TargetHost) holds it (lowercase, no
/// trailing dot). An unknown name should be an error of kind [`io::ErrorKind::NotFound`].
/// Implementations need not check anything: [`Guard`](crate::Guard) checks every answer.
pub trait Resolve: Send + Sync + 'static {
    /// Look `host` up.
    fn resolve(&self, host: &str) -> ResolveFuture;
}

impl<R: Resolve + ?Sized> Resolve for Arc<R> {
    fn resolve(&self, host: &str) -> ResolveFuture {
        (**self).resolve(host)
    }
}

/// The system's DNS configuration through hickory-resolver (no blocking `getaddrinfo` threads).
///
/// - Name servers, search domains and options come from `/etc/resolv.conf`. When that file is
///   missing, unreadable, unparsable or lists no name server, the resolver falls back to what
///   glibc does in that case: a name server on the local host (`127.0.0.1:53` and `[::1]:53`), and
///   logs a warning. It never silently sends queries to a third-party public resolver.
/// - `/etc/hosts` is always consulted first, so `localhost` resolves without any query.
/// - Each query is bounded: at most 3 s per attempt, at most 2 attempts. [`Guard`](crate::Guard)
///   adds its own overall bound.
/// - Positive answers are cached (up to 1024 records, for their TTL).
#[derive(Clone)]
pub struct SystemResolver {
    inner: TokioResolver,
}

impl SystemResolver {
    /// The system configuration, or the local fallback described above.
    pub fn new() -> Self {
        match Self::from_system_conf() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot use /etc/resolv.conf; falling back to a name server on 127.0.0.1:53"
                );
                Self::with_nameservers(
                    &[
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ],
                    53,
                )
            }
        }
    }

    /// The system configuration, failing if `/etc/resolv.conf` is unusable.
    pub fn from_system_conf() -> io::Result<Self> {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self::build(config, opts))
    }

    /// Explicit name servers (plain DNS over UDP, with TCP fallback).
    pub fn with_nameservers(ips: &[IpAddr], port: u16) -> Self {
        let group = NameServerConfigGroup::from_ips_clear(ips, port, true);
        Self::build(
            ResolverConfig::from_parts(None, vec![], group),
            ResolverOpts::default(),
        )
    }

    fn build(config: ResolverConfig, mut opts: ResolverOpts) -> Self {
        opts.timeout = opts
            .timeout
            .clamp(Duration::from_millis(100), Duration::from_secs(3));
        opts.attempts = opts.attempts.clamp(1, 2);
        opts.use_hosts_file = ResolveHosts::Always;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        opts.cache_size = 1024;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Self {
            inner: builder.build(),
        }
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemResolver")
            .field("name_servers", &self.inner.config().name_servers().len())
            .finish()
    }
}

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> ResolveFuture {
        let inner = self.inner.clone();
        let host = host.to_owned();
        Box::pin(async move {
            match inner.lookup_ip(host.as_str()).await {
                Ok(lookup) => Ok(lookup.iter().take(MAX_ANSWERS).collect()),
                Err(e) if e.is_no_records_found() => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address records for {host}"),
                )),
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        })
    }
}

fn normalize_name(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn not_found(host: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such host: {host}"))
}

/// Fixed answers from a map (names compared case-insensitively, trailing dot ignored). For tests,
/// and for operator overrides in front of another resolver ([`StaticResolver::with_fallback`]).
/// An unknown name is a `NotFound` error unless there is a fallback.
#[derive(Clone, Default)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl StaticResolver {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an entry (builder style).
    pub fn with(mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.insert(host, ips);
        self
    }

    /// Add or replace an entry. An empty list answers "no addresses".
    pub fn insert(&mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) {
        self.map.insert(
            normalize_name(host),
            ips.into_iter().take(MAX_ANSWERS).collect(),
        );
    }

    /// Ask `fallback` for names not in the map.
    pub fn with_fallback(mut self, fallback: Arc<dyn Resolve>) -> Self {
        self.fallback = Some(fallback);
        self
    }
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticResolver")
            .field("map", &self.map)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, host: &str) -> ResolveFuture {
        match self.map.get(&normalize_name(host)) {
            Some(ips) => {
                let ips = ips.clone();
                Box::pin(async move { Ok(ips) })
            }
            None => match &self.fallback {
                Some(fb) => fb.resolve(host),
                None => {
                    let err = not_found(host);
                    Box::pin(async move { Err(err) })
                }
            },
        }
    }
}

/// Answers differently on each query of a name, for DNS-rebinding tests: the n-th query gets the
/// n-th answer, and every query after the last gets the last answer again. Counts queries.
#[derive(Default)]
pub struct SequenceResolver {
    state: Mutex<HashMap<String, Sequence>>,
}

struct Sequence {
    answers: Vec<Vec<IpAddr>>,
    queries: usize,
}

impl SequenceResolver {
    /// No names.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer `host` with `answers[0]`, then `answers[1]`, … (builder style).
    pub fn with(self, host: &str, answers: Vec<Vec<IpAddr>>) -> Self {
        self.lock().insert(
            normalize_name(host),
            Sequence {
                answers,
                queries: 0,
            },
        );
        self
    }

    /// How many times `host` was looked up.
    pub fn queries(&self, host: &str) -> usize {
        self.lock()
            .get(&normalize_name(host))
            .map_or(0, |s| s.queries)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sequence>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for SequenceResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequenceResolver").finish_non_exhaustive()
    }
}

impl Resolve for SequenceResolver {
    fn resolve(&self, host: &str) -> ResolveFuture {
        let answer = {
            let mut state = self.lock();
            match state.get_mut(&normalize_name(host)) {
                Some(seq) => {
                    let i = seq.queries.min(seq.answers.len().saturating_sub(1));
                    seq.queries = seq.queries.saturating_add(1);
                    Ok(seq.answers.get(i).cloned().unwrap_or_default())
                }
                None => Err(not_found(host)),
            }
        };
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[tokio::test]
    async fn static_resolver() {
        let r = StaticResolver::new()
            .with("Hook.Example.", [ip("127.0.0.1")])
            .with("empty.example", []);
        for name in ["hook.example", "HOOK.example."] {
            assert_eq!(r.resolve(name).await.expect(name), vec![ip("127.0.0.1")]);
        }
        assert!(r.resolve("empty.example").await.expect("ok").is_empty());
        let err = r.resolve("missing.example").await.expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        let with_fb = StaticResolver::new()
            .with("a.example", [ip("127.0.0.2")])
            .with_fallback(Arc::new(r));
        for (name, want) in [("a.example", "127.0.0.2"), ("hook.example", "127.0.0.1")] {
            assert_eq!(with_fb.resolve(name).await.expect(name), vec![ip(want)]);
        }
    }

    #[tokio::test]
    async fn sequence_resolver() {
        let r = SequenceResolver::new().with(
            "rebind.example",
            vec![vec![ip("127.0.0.1")], vec![ip("10.0.0.1")]],
        );
        assert_eq!(r.queries("rebind.example"), 0);
        assert_eq!(
            r.resolve("rebind.example").await.expect("1"),
            vec![ip("127.0.0.1")]
        );
        assert_eq!(
            r.resolve("rebind.example").await.expect("2"),
            vec![ip("10.0.0.1")]
        );
        assert_eq!(
            r.resolve("rebind.example").await.expect("3"),
            vec![ip("10.0.0.1")]
        );
        assert_eq!(r.queries("rebind.example"), 3);
        assert!(r.resolve("other.example").await.is_err());
        let empty = SequenceResolver::new().with("none.example", vec![]);
        assert!(empty.resolve("none.example").await.expect("ok").is_empty());
    }

    #[tokio::test]
    async fn system_resolver_localhost_from_hosts_file() {
        // `localhost` is answered from /etc/hosts (or RFC 6761 rules) without any query leaving
        // the machine.
        let r = SystemResolver::new();
        let ips = r.resolve("localhost").await.expect("localhost resolves");
        assert!(!ips.is_empty());
        assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
    }
}
