#![forbid(unsafe_code)]
//! Hookwarden's server: the admin API, the outbound dispatcher and (later) inbound ingest, wired
//! together by [`start`].

pub mod alerts;
pub mod api;
pub mod catalogue;
pub mod certs;
pub mod changes;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod dispatch;
pub mod error;
pub mod http_server;
pub mod inbound;
pub mod keys;
pub mod metrics;
pub mod probe;
pub mod recovery;
pub mod retention;
pub mod secrets;
pub mod security;
pub mod state;
pub mod storage;
pub mod times;
pub mod tls;
pub mod transform;

use config::Config;
use dispatch::endpoints::EndpointCache;
use dispatch::{Dispatcher, DispatcherOptions, DispatcherTasks};
use hookwarden_egress::client::{ClientConfig, GuardedClient};
use hookwarden_netguard::{
    AddressPolicy, Guard, PeerLimiter, Resolve, StaticResolver, SystemResolver, UrlPolicy,
};
use hookwarden_store::{CertificateStore, SourceStore, Store};
use state::AppState;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot use data directory {dir}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(
        "another hookwarden process is using {0} (only one `serve` may own an embedded database)"
    )]
    Locked(String),
    #[error("storage: {0}")]
    Store(#[from] hookwarden_store::StoreError),
    #[error("secrets at rest: {0}")]
    Secrets(#[from] secrets::SecretsError),
    #[error("egress: {0}")]
    Egress(String),
    #[error("{0}")]
    Inbound(config::ConfigError),
    #[error("server.tls: {0}")]
    Tls(tls::TlsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// The process-wide lock on an embedded database's data directory.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory and takes its exclusive lock (held until dropped).
pub fn lock_data_dir(config: &Config) -> Result<DataDirLock, StartError> {
    let dir = config
        .sqlite_path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        dir
    };
    let err = |source| StartError::DataDir {
        dir: dir.display().to_string(),
        source,
    };
    private_dir(&dir).map_err(err)?;
    let file = private_open(&dir.join("hookwarden.lock")).map_err(err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StartError::Locked(dir.display().to_string()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
    }
    // The database and its WAL files: readable by their owner only. SQLite gives the WAL and
    // shared-memory files the database file's mode, so a new database starts as an empty file
    // made 0600 here.
    let db = config.sqlite_path();
    drop(private_open(&db).map_err(err)?);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        make_private(std::path::Path::new(&p), 0o600).map_err(err)?;
    }
    Ok(DataDirLock { _file: file })
}

/// Creates `dir` (and its parents) as needed; a directory made here is 0700. An existing one
/// that others can read is reported, not changed (it may be shared on purpose).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other users; `chmod 700` it (its files are kept 0600)"
            );
        }
    }
    Ok(())
}

/// Opens (creating if needed, 0600) a file without truncating it, and makes it 0600.
fn private_open(path: &std::path::Path) -> std::io::Result<File> {
    let mut o = File::options();
    o.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o.open(path)?;
    make_private(path, 0o600)?;
    Ok(f)
}

/// Sets `mode` on `path` when it exists (unix).
fn make_private(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o777 != mode => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Builds the SSRF guard from the egress configuration.
pub fn build_guard(config: &Config) -> Result<Arc<Guard>, StartError> {
    let allow = config::parse_ranges(&config.egress.allow_ranges)?;
    let deny = config::parse_ranges(&config.egress.deny_ranges)?;
    let mut overrides = StaticResolver::new();
    for (host, ips) in &config.egress.resolve_overrides {
        overrides.insert(host, ips.iter().copied());
    }
    let resolver: Arc<dyn Resolve> = if !config.egress.system_resolver {
        // No fallback: names outside the overrides are unknown, and nothing is queried.
        Arc::new(overrides)
    } else if config.egress.resolve_overrides.is_empty() {
        Arc::new(SystemResolver::new())
    } else {
        Arc::new(overrides.with_fallback(Arc::new(SystemResolver::new())))
    };
    Ok(Arc::new(Guard::new(
        AddressPolicy::new(allow, deny),
        resolver,
    )))
}

pub fn url_policy(config: &Config) -> UrlPolicy {
    UrlPolicy {
        allow_http: config.egress.allow_http,
        allowed_ports: None,
    }
}

/// Builds the guarded outbound client (the only way Hookwarden makes outbound requests).
pub fn build_client(config: &Config, guard: Arc<Guard>) -> Result<GuardedClient, StartError> {
    let mut extra_roots = Vec::new();
    for path in &config.egress.extra_ca_files {
        extra_roots.push(std::fs::read_to_string(path).map_err(|e| {
            StartError::Egress(format!("egress.extra_ca_files: {}: {e}", path.display()))
        })?);
    }
    let d = &config.delivery;
    let cfg = ClientConfig {
        connect_timeout: Duration::from_secs(d.connect_timeout_secs),
        request_timeout: Duration::from_secs(d.request_timeout_secs),
        max_response_body: d.max_response_body_bytes,
        pool_idle_timeout: Duration::from_secs(90),
        // Every connection in flight may go back to the pool: a smaller cap closed and
        // reopened connections to busy receivers under load.
        pool_max_idle_per_host: d.concurrency,
        bind_addresses: config.egress.bind_addresses.clone(),
        extra_root_certs_pem: extra_roots,
        url_policy: url_policy(config),
        user_agent: d.user_agent.clone(),
        proxies: security::proxy_endpoints(&config.egress)?,
        proxy_health_interval: security::proxy_health_interval(&config.egress),
    };
    GuardedClient::new(cfg, guard).map_err(|e| StartError::Egress(e.to_string()))
}

/// A running server.
pub struct Running {
    pub local_addr: SocketAddr,
    /// The separate metrics listener's address (`metrics.listen`), when configured.
    pub metrics_addr: Option<SocketAddr>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    /// Set on the very first start of a database: the bootstrap admin API key.
    pub first_start_key: Option<String>,
    /// True when the database holds no usable admin API key (all revoked or expired, or the
    /// bootstrap key was never shown): `hookwarden keys create` makes one.
    pub no_usable_key: bool,
    /// Where the master key that seals secrets at rest came from.
    pub key_source: secrets::KeySource,
    state: Arc<AppState>,
    dispatcher_tasks: DispatcherTasks,
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stores: storage::Stores,
    _lock: Option<DataDirLock>,
}

/// Opens storage, starts the dispatcher and binds the listener. The server runs on the system
/// clock.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with_clock(config, clock::system()).await
}

/// [`start`] on another clock. **For in-process tests**: with a [`clock::ManualClock`] a test
/// crosses a grace period, a breaker, alert or replay window, a retry delay or a key's expiry by
/// advancing the clock instead of sleeping. No configuration, variable, flag or route leads
/// here: `hookwarden serve` always calls [`start`].
pub async fn start_with_clock(
    config: Config,
    clock: clock::SharedClock,
) -> Result<Running, StartError> {
    config.validate()?;
    // An embedded database belongs to one process; PostgreSQL is shared by design.
    let lock = match config.backend() {
        config::Backend::Sqlite(_) => Some(lock_data_dir(&config)?),
        config::Backend::Postgres(_) => None,
    };
    let stores = storage::open(&config).await?;
    let shared = stores.is_shared();
    let dyn_store: Arc<dyn Store> = stores.store.clone();
    let cert_store: Arc<dyn CertificateStore> = stores.certs.clone();
    let (secrets, key_source) = secrets::at_start(&config, &*stores.sealed).await?;
    info!(key_id = secrets.key_id(), source = %key_source, "secrets at rest are sealed with the master key");
    let guard = build_guard(&config)?;
    let client = build_client(&config, guard.clone())?;
    let endpoints = Arc::new(
        EndpointCache::new(
            dyn_store.clone(),
            secrets.clone(),
            // Shared database: changes are announced, and the TTL bounds staleness when an
            // announcement is lost.
            Duration::from_secs(if shared { 1 } else { 5 }),
        )
        .with_certificates(cert_store.clone())
        .with_clock(clock.clone()),
    );
    let (alerts, alert_rx) = if config.alerts.enabled {
        let (a, rx) = alerts::Alerts::new(config.alerts.clone(), clock.clone());
        (Some(a), Some(rx))
    } else {
        (None, None)
    };
    let owner = crypto::new_id("dispatcher");
    let (dispatcher, dispatcher_tasks) = Dispatcher::start(
        dyn_store.clone(),
        client.clone(),
        endpoints.clone(),
        DispatcherOptions {
            delivery: config.delivery.clone(),
            breaker: config.circuit_breaker.clone(),
            owner: owner.clone(),
            // Alone on its database, every lease is a dead process's; shared, other
            // instances' leases are live and expire on their own.
            release_all_leases_at_start: !shared,
            alerts: alerts.clone(),
            clock: clock.clone(),
        },
    )
    .await?;
    let dispatcher = Arc::new(dispatcher);
    let prober = Arc::new(probe::Prober::new(probe::ProberParts {
        cfg: config.probe.clone(),
        client,
        probes: stores.probes.clone(),
        endpoints: endpoints.clone(),
        secrets: secrets.clone(),
        clock: clock.clone(),
        user_agent: config.delivery.user_agent.clone(),
        delivery_timeout: Duration::from_secs(config.delivery.request_timeout_secs),
        server_request_timeout: Duration::from_secs(config.server.request_timeout_secs),
        alerts: alerts.clone(),
        dispatcher: Arc::downgrade(&dispatcher),
    }));
    security::sync_published_ranges(&*cert_store, &dispatcher, &config).await?;
    let recoverer = recovery::Recoverer::new(
        stores.recoveries.clone(),
        dispatcher.clone(),
        clock.clone(),
        owner.clone(),
        Duration::from_secs(config.storage.retention_days.saturating_mul(86_400)),
    );

    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.server.listen.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.server.listen.clone(),
        source,
    })?;

    let metrics_listener = match config.metrics.listen.as_deref() {
        Some(addr) if config.metrics.enabled => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen {
                    addr: addr.to_owned(),
                    source,
                })?,
        ),
        _ => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Listen {
            addr: config.metrics.listen.clone().unwrap_or_default(),
            source,
        })?),
        None => None,
    };

    let tls = match &config.server.tls {
        Some(t) => Some(hookwarden_server_tls(t)?),
        None => None,
    };
    let source_store: Arc<dyn SourceStore> = stores.sources.clone();
    let inbound = inbound::Inbound::new(
        source_store,
        secrets.clone(),
        config.inbound.clone(),
        tls.is_some(),
        config.server.public_url.clone(),
        alerts.clone(),
        clock.clone(),
    )
    .map_err(StartError::Inbound)?;
    let mut background = inbound.spawn_tasks();
    if let Some(rx) = alert_rx {
        background.push(alerts::spawn_publisher(rx, dispatcher.clone()));
    }
    background.extend(retention::spawn(
        dyn_store.clone(),
        Duration::from_secs(config.storage.retention_days.saturating_mul(86_400)),
        Duration::from_secs(config.storage.retention_interval_secs),
        clock.clone(),
    ));
    background.push(recoverer.spawn());
    background.push(prober.spawn_upkeep(Duration::from_secs(
        config.storage.retention_interval_secs.clamp(1, 3600),
    )));
    let published_certs = Arc::new(api::security::PublishedCache::default());
    {
        let (endpoints, inbound) = (endpoints.clone(), inbound.clone());
        let published = published_certs.clone();
        let on_change: changes::Invalidator = Arc::new(move |c: &hookwarden_store::Change| {
            use hookwarden_store::Change;
            match c {
                Change::Endpoint(id) => endpoints.invalidate(id),
                Change::Certificate(_) => {
                    endpoints.invalidate_all();
                    published.clear();
                }
                Change::Source(id) => inbound.cache.invalidate_source(id),
                Change::All => {
                    endpoints.invalidate_all();
                    inbound.cache.clear();
                    published.clear();
                }
            }
        });
        background.extend(changes::spawn_watcher(&dyn_store, vec![on_change]));
    }
    if let Some(t) = &tls {
        background.push(t.spawn_reloader());
    }

    let config = Arc::new(config);
    let state = Arc::new(AppState {
        config: config.clone(),
        clock: clock.clone(),
        store: dyn_store,
        dispatcher,
        secrets,
        guard,
        url_policy: url_policy(&config),
        keys: stores.keys.clone(),
        api_keys: keys::ApiKeyCache::default(),
        metrics: metrics::install(),
        scraper: metrics::Scraper::new(Duration::from_millis(config.metrics.refresh_interval_ms)),
        alerts,
        certs: cert_store,
        inbound,
        published_certs,
        prober,
        recoveries: stores.recoveries.clone(),
        recoverer,
        event_types: stores.event_types.clone(),
        // Shared database: other instances' changes show within a second.
        catalogue: catalogue::Catalogue::new(
            stores.event_types.clone(),
            Duration::from_secs(if shared { 1 } else { 5 }),
        ),
    });
    let app = api::router(state.clone());
    // Load balancers in `inbound.trusted_proxies` carry many clients: not counted per peer.
    let proxies = config
        .inbound
        .client_ip()
        .map_err(StartError::Inbound)?
        .trusted_list();
    let write_timeout = Duration::from_secs(config.server.write_timeout_secs);
    let limits = http_server::ListenerLimits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        write_timeout,
        peers: PeerLimiter::new(config.server.max_connections_per_peer, proxies.clone()),
        drain: Duration::from_secs(5),
    };
    // The bootstrap key is made only now that everything that can fail at start has worked
    // (listeners bound, TLS loaded): a start that fails never consumes it unseen.
    let (first_start_key, no_usable_key) =
        bootstrap_key(&*state.store, &*state.keys, clock.now_millis()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped2 = stopped.clone();
    let metrics_server = metrics_listener.map(|l| {
        let limits = http_server::ListenerLimits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            write_timeout,
            // A scraper needs a connection or two: one address may not take the 64.
            peers: PeerLimiter::new(config.server.max_connections_per_peer.min(16), proxies),
            drain: Duration::from_secs(2),
        };
        let app = api::metrics_router(state.clone());
        tokio::spawn(http_server::serve(l, app, limits, None, async move {
            let _ = stopped2.changed().await;
        }))
    });
    let mut stopped = stopped;
    let server = tokio::spawn(http_server::serve(listener, app, limits, tls, async move {
        let _ = stopped.changed().await;
    }));
    info!(
        %local_addr,
        metrics = metrics_addr.map(|a| a.to_string()),
        storage = state.store.backend(),
        %owner,
        "hookwarden started"
    );
    Ok(Running {
        local_addr,
        metrics_addr,
        metrics_server,
        first_start_key,
        no_usable_key,
        key_source,
        state,
        dispatcher_tasks,
        server,
        stop,
        background,
        stores,
        _lock: lock,
    })
}

/// On the first start of a database, the bootstrap admin key (and marks the database started);
/// otherwise whether no usable key exists at `now`.
async fn bootstrap_key(
    store: &dyn Store,
    keys: &dyn hookwarden_store::ApiKeyStore,
    now: hookwarden_store::Millis,
) -> Result<(Option<String>, bool), StartError> {
    if store.take_first_start().await? {
        let spec = keys::KeySpec {
            name: "bootstrap".into(),
            description: "bootstrap key created on first start".into(),
            expires_at: None,
        };
        let (key, _) = keys::create(keys, spec, now).await.map_err(|e| match e {
            keys::KeyError::Store(e) => StartError::Store(e),
            keys::KeyError::Invalid(m) => StartError::Config(config::ConfigError(m)),
        })?;
        return Ok((Some(key), false));
    }
    let usable = keys.count_usable_api_keys(now).await?;
    Ok((None, usable == 0))
}

/// Loads `[server.tls]` (the certificate files must be readable and valid at start).
fn hookwarden_server_tls(cfg: &tls::TlsConfig) -> Result<Arc<tls::TlsTerminator>, StartError> {
    let t = tls::TlsTerminator::new(cfg).map_err(StartError::Tls)?;
    info!(cert = %cfg.cert_file.display(), "TLS enabled on the listener");
    Ok(t)
}

impl Running {
    /// Stops accepting requests, drains in-flight deliveries (up to the configured grace) and
    /// closes storage.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        if let Some(m) = self.metrics_server {
            let _ = m.await;
        }
        self.state.inbound.flush_audit(true).await;
        for t in &self.background {
            t.abort();
        }
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        self.state
            .dispatcher
            .shutdown(self.dispatcher_tasks, grace)
            .await;
        self.stores.close().await;
        info!("hookwarden stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwarden_netguard::TargetHost;

    /// `egress.system_resolver = false`: only the overrides answer; every other name is unknown
    /// without asking anything. `localhost` is never asked of a resolver (RFC 6761): it is the
    /// loopback addresses the policy allows, here 127.0.0.1 and not ::1.
    #[tokio::test]
    async fn without_the_system_resolver_only_overrides_answer() {
        let mut config = Config::default();
        config.egress.allow_ranges = vec!["127.0.0.0/8".into()];
        config
            .egress
            .resolve_overrides
            .insert("pinned.test".into(), vec!["127.0.0.2".parse().unwrap()]);
        let host = |h: &str| TargetHost::Domain(h.into());

        let loopback = vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()];
        let system = build_guard(&config).unwrap();
        assert_eq!(
            system.resolve_checked(&host("localhost")).await.unwrap(),
            loopback
        );

        config.egress.system_resolver = false;
        let isolated = build_guard(&config).unwrap();
        assert_eq!(
            isolated.resolve_checked(&host("localhost")).await.unwrap(),
            loopback
        );
        let err = isolated
            .resolve_checked(&host("unknown.test"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "DNS_NO_ADDRESSES", "{err}");
        assert_eq!(
            isolated
                .resolve_checked(&host("pinned.test"))
                .await
                .unwrap(),
            vec!["127.0.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
    }
}
