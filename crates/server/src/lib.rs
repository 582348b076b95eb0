#![forbid(unsafe_code)]
//! Hookwarden's server: the admin API, the outbound dispatcher and (later) inbound ingest, wired
//! together by [`start`].

pub mod alerts;
pub mod api;
pub mod certs;
pub mod changes;
pub mod config;
pub mod console;
pub mod crypto;
pub mod dispatch;
pub mod error;
pub mod http_server;
pub mod inbound;
pub mod metrics;
pub mod retention;
pub mod security;
pub mod state;
pub mod storage;
pub mod tls;

use config::Config;
use crypto::SecretBox;
use dispatch::endpoints::EndpointCache;
use dispatch::{Dispatcher, DispatcherOptions, DispatcherTasks};
use hookwarden_egress::client::{ClientConfig, GuardedClient};
use hookwarden_netguard::{
    AddressPolicy, Guard, Resolve, StaticResolver, SystemResolver, UrlPolicy,
};
use hookwarden_store::{CertificateStore, NewApiKey, SourceStore, Store, now_millis};
use state::{ApiKeyCache, AppState};
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot use data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(
        "another hookwarden process is using {0} (only one `serve` may own an embedded database)"
    )]
    Locked(String),
    #[error("storage: {0}")]
    Store(#[from] hookwarden_store::StoreError),
    #[error("security.master_key: {0}")]
    MasterKey(#[from] crypto::SecretBoxError),
    #[error("egress: {0}")]
    Egress(String),
    #[error("inbound: {0}")]
    Inbound(String),
    #[error("server.tls: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
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
    std::fs::create_dir_all(&dir).map_err(err)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("hookwarden.lock"))
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

/// Creates a new admin API key in `store` and returns it (the only time it is visible).
pub async fn create_api_key(
    store: &dyn Store,
    description: &str,
) -> Result<String, hookwarden_store::StoreError> {
    let (key, hash) = crypto::new_api_key();
    let prefix: String = key.chars().take(8).collect();
    store
        .create_api_key(NewApiKey {
            id: crypto::new_id("key"),
            key_hash: hash,
            prefix,
            description: description.to_owned(),
            created_at: now_millis(),
        })
        .await?;
    Ok(key)
}

/// Builds the SSRF guard from the egress configuration.
pub fn build_guard(config: &Config) -> Result<Arc<Guard>, StartError> {
    let allow = config::parse_ranges(&config.egress.allow_ranges).map_err(StartError::Egress)?;
    let deny = config::parse_ranges(&config.egress.deny_ranges).map_err(StartError::Egress)?;
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
        proxies: security::proxy_endpoints(&config.egress).map_err(StartError::Egress)?,
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
    state: Arc<AppState>,
    dispatcher_tasks: DispatcherTasks,
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stores: storage::Stores,
    _lock: Option<DataDirLock>,
}

/// Opens storage, starts the dispatcher and binds the listener.
pub async fn start(config: Config) -> Result<Running, StartError> {
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
    let secrets = SecretBox::new(config.security.master_key.as_deref())?;
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
        .with_certificates(cert_store.clone()),
    );
    let (alerts, alert_rx) = if config.alerts.enabled {
        let (a, rx) = alerts::Alerts::new(config.alerts.clone());
        (Some(a), Some(rx))
    } else {
        (None, None)
    };
    let owner = crypto::new_id("dispatcher");
    let (dispatcher, dispatcher_tasks) = Dispatcher::start(
        dyn_store.clone(),
        client,
        endpoints.clone(),
        DispatcherOptions {
            delivery: config.delivery.clone(),
            breaker: config.circuit_breaker.clone(),
            owner: owner.clone(),
            // Alone on its database, every lease is a dead process's; shared, other
            // instances' leases are live and expire on their own.
            release_all_leases_at_start: !shared,
            alerts: alerts.clone(),
        },
    )
    .await?;
    let dispatcher = Arc::new(dispatcher);
    security::sync_published_ranges(&*cert_store, &dispatcher, &config).await?;

    let first_start_key = if dyn_store.take_first_start().await? {
        Some(create_api_key(&*dyn_store, "bootstrap key created on first start").await?)
    } else {
        None
    };

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
    ));
    {
        let (endpoints, inbound) = (endpoints.clone(), inbound.clone());
        let on_change: changes::Invalidator = Arc::new(move |c: &hookwarden_store::Change| {
            use hookwarden_store::Change;
            match c {
                Change::Endpoint(id) => endpoints.invalidate(id),
                Change::Certificate(_) => endpoints.invalidate_all(),
                Change::Source(id) => inbound.cache.invalidate_source(id),
                Change::All => {
                    endpoints.invalidate_all();
                    inbound.cache.clear();
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
        store: dyn_store,
        dispatcher,
        secrets,
        guard,
        url_policy: url_policy(&config),
        api_keys: ApiKeyCache::new(Duration::from_secs(30)),
        metrics: metrics::install(),
        scraper: metrics::Scraper::new(Duration::from_millis(config.metrics.refresh_interval_ms)),
        alerts,
        certs: cert_store,
        inbound,
    });
    let app = api::router(state.clone());
    let limits = http_server::ListenerLimits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        drain: Duration::from_secs(5),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped2 = stopped.clone();
    let metrics_server = metrics_listener.map(|l| {
        let limits = http_server::ListenerLimits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
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
    info!(%local_addr, metrics = ?metrics_addr, storage = state.store.backend(), %owner, "hookwarden started");
    Ok(Running {
        local_addr,
        metrics_addr,
        metrics_server,
        first_start_key,
        state,
        dispatcher_tasks,
        server,
        stop,
        background,
        stores,
        _lock: lock,
    })
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
    /// without asking anything (not even `/etc/hosts`, which knows `localhost`).
    #[tokio::test]
    async fn without_the_system_resolver_only_overrides_answer() {
        let mut config = Config::default();
        config.egress.allow_ranges = vec!["127.0.0.0/8".into()];
        config
            .egress
            .resolve_overrides
            .insert("pinned.test".into(), vec!["127.0.0.2".parse().unwrap()]);
        let host = |h: &str| TargetHost::Domain(h.into());

        let system = build_guard(&config).unwrap();
        assert!(system.resolve_checked(&host("localhost")).await.is_ok());

        config.egress.system_resolver = false;
        let isolated = build_guard(&config).unwrap();
        let err = isolated
            .resolve_checked(&host("localhost"))
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
