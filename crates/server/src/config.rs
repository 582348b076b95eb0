//! Configuration: one TOML file plus `HOOKWARDEN_*` environment variables (`__` between levels,
//! e.g. `HOOKWARDEN_EGRESS__ALLOW_HTTP=true`). Every option has a safe default.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use hookwarden_store::sqlite::{DEFAULT_REPLAY_KEYS_MAX, Synchronous};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub delivery: DeliveryConfig,
    pub circuit_breaker: BreakerConfig,
    pub egress: EgressConfig,
    pub security: SecurityConfig,
    pub metrics: MetricsConfig,
    /// Receiving webhooks (`/in/{token}`).
    pub inbound: crate::inbound::config::InboundConfig,
    /// Usage alerts (`source.anomaly`, `endpoint.failing`).
    pub alerts: crate::alerts::AlertsConfig,
    /// The receiver security probe (`POST /api/v1/endpoints/{id}/probe`).
    pub probe: crate::probe::ProbeConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the API (and ingest) listener.
    pub listen: String,
    /// Where the embedded database and the instance lock live.
    pub data_dir: PathBuf,
    /// The externally visible base URL (used to build inbound webhook URLs).
    pub public_url: Option<String>,
    /// Largest request body accepted by the API, in bytes.
    pub max_body_bytes: usize,
    /// Most stored bytes one page of a listing holds (past its first row): a page stops before
    /// the row that would go over, whatever its `limit`.
    pub max_page_bytes: usize,
    /// Most concurrent client connections; further connections wait in the accept queue.
    pub max_connections: usize,
    /// Most concurrent connections of one client address (an IPv6 /64 counts as one address);
    /// further ones are refused with `503 TOO_MANY_CONNECTIONS`. Peers in
    /// `inbound.trusted_proxies` (load balancers, which carry many clients) are not counted.
    /// Default 256: room for an application server whose pooled clients post events (a pool
    /// of N keeps up to N connections open and briefly more while it replaces closed ones),
    /// while 40 addresses cannot take the 10,000 slots. 0: no per-address bound.
    pub max_connections_per_peer: usize,
    /// Time allowed for a client to send its request headers, counted from the connection's
    /// start or the end of the previous response (so it also closes idle keep-alive
    /// connections).
    pub header_read_timeout_secs: u64,
    /// Longest a response write may wait for the client to read; then the connection is closed.
    pub write_timeout_secs: u64,
    /// Time allowed to handle one API request.
    pub request_timeout_secs: u64,
    /// On SIGTERM, how long in-flight deliveries may take to finish.
    pub shutdown_grace_secs: u64,
    /// Serve HTTPS on the listener with these certificate files (see [`crate::tls`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./hookwarden-data"),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
            max_connections: 10_000,
            max_connections_per_peer: 256,
            header_read_timeout_secs: 10,
            write_timeout_secs: 15,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            tls: None,
        }
    }
}

/// Default of `server.max_page_bytes` (4 MiB).
pub const DEFAULT_MAX_PAGE_BYTES: usize = hookwarden_store::Page::DEFAULT_MAX_BYTES;
/// Bounds of `server.max_page_bytes`.
pub const MAX_PAGE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 65_536..=268_435_456;

/// Largest `storage.sqlite_replay_keys_max` accepted (about 3 GB of memory when full).
pub const MAX_REPLAY_KEYS_MAX: usize = 100_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite:///path/to/file.db` (default: `<data_dir>/hookwarden.db`) or
    /// `postgres://user:password@host:5432/db` (several instances sharing one database).
    pub url: Option<String>,
    /// `full` (survives power loss) or `normal` (survives a killed process).
    pub sqlite_synchronous: Synchronous,
    /// SQLite: live inbound replay keys (message ids or content hashes within their source's
    /// replay window) kept in memory, about 30 bytes each. Past this many, new keys are checked
    /// and recorded in a key-ordered table instead: slower, still durable, never refused.
    pub sqlite_replay_keys_max: usize,
    /// PostgreSQL: most connections this instance opens.
    pub max_connections: u32,
    /// PostgreSQL: apply pending migrations at start (under a lock). When false, `serve`
    /// refuses an outdated schema and `hookwarden migrate` must run first.
    pub migrate_on_start: bool,
    /// Finished deliveries (with their attempts), idempotency keys and delivered events older
    /// than this many days are deleted in bounded batches. 0 keeps everything.
    pub retention_days: u64,
    /// How often the retention sweep runs, seconds.
    pub retention_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            sqlite_synchronous: Synchronous::default(),
            sqlite_replay_keys_max: DEFAULT_REPLAY_KEYS_MAX,
            max_connections: 20,
            migrate_on_start: true,
            retention_days: 30,
            retention_interval_secs: 600,
        }
    }
}

/// Which database a configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Most HTTP requests in flight at once, over all endpoints.
    pub concurrency: usize,
    pub request_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Backoff before retry n (n = 1, 2, …) is `initial * multiplier^(n-1)`, capped at `max`,
    /// then spread by ±`jitter` (a fraction).
    pub backoff_initial_secs: u64,
    pub backoff_multiplier: f64,
    pub backoff_max_secs: u64,
    pub jitter: f64,
    /// A receiver's `Retry-After` is honoured up to this many seconds.
    pub retry_after_max_secs: u64,
    /// Extra HTTP statuses to retry besides 408, 429 and 5xx (e.g. 404 while a receiver deploys).
    pub retry_on_status: Vec<u16>,
    /// Bytes of the response body read (the rest is discarded).
    pub max_response_body_bytes: usize,
    /// Bytes of the response body kept in the attempt log.
    pub stored_response_bytes: usize,
    /// How long a dispatcher owns a claimed delivery before others may take it over.
    pub lease_secs: u64,
    /// How often the dispatcher looks for due deliveries (it is also woken on new work).
    pub claim_interval_ms: u64,
    /// An idempotency key returns the first event for this long.
    pub idempotency_ttl_secs: u64,
    pub user_agent: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 512,
            request_timeout_secs: 15,
            connect_timeout_secs: 5,
            max_attempts: 15,
            backoff_initial_secs: 5,
            backoff_multiplier: 2.0,
            backoff_max_secs: 86_400,
            jitter: 0.2,
            retry_after_max_secs: 86_400,
            retry_on_status: Vec::new(),
            max_response_body_bytes: 64 * 1024,
            stored_response_bytes: 4096,
            lease_secs: 300,
            claim_interval_ms: 1000,
            idempotency_ttl_secs: 86_400,
            user_agent: format!("Hookwarden/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Consecutive failed attempts…
    pub failure_threshold: i64,
    /// …spanning at least this long disable the endpoint.
    pub min_failing_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 20,
            min_failing_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Exceptions to the default denial of internal address ranges (e.g. `["127.0.0.0/8"]` for
    /// local development). Deny ranges still win.
    pub allow_ranges: Vec<String>,
    /// Extra ranges that are always refused.
    pub deny_ranges: Vec<String>,
    /// Allow `http://` endpoint URLs (default: `https` only).
    pub allow_http: bool,
    /// Local addresses deliveries leave from (spread across them). Empty: the OS chooses.
    pub bind_addresses: Vec<IpAddr>,
    /// The egress ranges published at `/api/v1/security/egress-ips` for receivers' firewalls.
    pub published_ranges: Vec<String>,
    /// PEM files with extra trusted root certificates (private CAs of receivers).
    pub extra_ca_files: Vec<PathBuf>,
    /// Fixed DNS answers (host → addresses), checked by the same policy as real answers.
    pub resolve_overrides: BTreeMap<String, Vec<IpAddr>>,
    /// Ask the system's DNS for names not in `resolve_overrides` (default true). When false, no
    /// DNS query is ever sent: only `resolve_overrides` answer and every other name is unknown
    /// (deliveries to it fail with a DNS error). For isolated test and fuzzing setups.
    pub system_resolver: bool,
    /// Egress proxies (`hookwarden egress-proxy` or any HTTP CONNECT proxy). When set, every
    /// outbound connection is a CONNECT tunnel through one of them, spread across them with
    /// health checks and failover; never a direct connection.
    pub proxies: Vec<crate::security::EgressProxyConfig>,
    /// How often each egress proxy is probed (default 10 s).
    pub proxy_health_interval_secs: Option<u64>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow_ranges: Vec::new(),
            deny_ranges: Vec::new(),
            allow_http: false,
            bind_addresses: Vec::new(),
            published_ranges: Vec::new(),
            extra_ca_files: Vec::new(),
            resolve_overrides: BTreeMap::new(),
            system_resolver: true,
            proxies: Vec::new(),
            proxy_health_interval_secs: None,
        }
    }
}

/// `[security]`: the master key that seals every secret at rest (XChaCha20-Poly1305). See
/// [`crate::secrets`] for where it comes from when none is set.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Base64 of 32 random bytes (`hookwarden secrets new-key` makes one). Keep it out of the
    /// config file: use `HOOKWARDEN_SECURITY__MASTER_KEY`, or `master_key_file`.
    pub master_key: Option<String>,
    /// A file holding the master key (base64; a secret manager's mounted file, say). Further
    /// lines are earlier keys still being rotated out.
    pub master_key_file: Option<PathBuf>,
    /// Earlier master keys, still opened (never used to seal) while `hookwarden secrets rotate`
    /// re-seals what they sealed.
    pub previous_master_keys: Vec<String>,
    /// Files holding earlier master keys.
    pub previous_master_key_files: Vec<PathBuf>,
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("master_key_file", &self.master_key_file)
            .field("previous_master_keys", &self.previous_master_keys.len())
            .field("previous_master_key_files", &self.previous_master_key_files)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics`.
    pub enabled: bool,
    /// Without an API key (for scrapers on a trusted network), on whichever listener serves it.
    pub public: bool,
    /// A separate listener that serves only `/metrics` (e.g. `127.0.0.1:9464`). When set, the
    /// main listener stops serving `/metrics` unless `main_listener` is true.
    pub listen: Option<String>,
    /// With `listen`: also serve `/metrics` on the main listener.
    pub main_listener: bool,
    /// Endpoints that get per-endpoint circuit-breaker series (newest first); beyond it,
    /// `hookwarden_endpoint_series_truncated` is 1.
    pub max_endpoint_series: usize,
    /// Due deliveries are counted up to this many per refresh (the count stops there).
    pub max_due_count: i64,
    /// The gauges that need a database query are refreshed at most this often; scrapes in
    /// between get the previous values.
    pub refresh_interval_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            public: false,
            listen: None,
            main_listener: false,
            max_endpoint_series: 1000,
            max_due_count: 100_000,
            refresh_interval_ms: 5000,
        }
    }
}

impl MetricsConfig {
    /// Whether the main listener serves `/metrics`.
    pub fn on_main_listener(&self) -> bool {
        self.enabled && (self.listen.is_none() || self.main_listener)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// A configuration error as an operator reads it: the key as written in the file (dotted, no
/// internal profile prefix), where it came from (the file, or the environment variable), and
/// what is wrong in plain words.
fn describe(e: figment::Error) -> String {
    use figment::error::Kind;
    let plain = |expected: &str| -> String {
        match expected {
            "usize" | "u64" | "u32" | "u16" | "u8" | "i64" | "i32" => "a whole number".into(),
            "f64" | "f32" => "a number".into(),
            other => other.to_owned(),
        }
    };
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let from = match &e.metadata {
                Some(m) if m.name.contains("environment") => format!(
                    " (environment variable HOOKWARDEN_{})",
                    key.to_ascii_uppercase().replace('.', "__")
                ),
                Some(m) => match &m.source {
                    Some(figment::Source::File(p)) => format!(" (in {})", p.display()),
                    _ => String::new(),
                },
                None => String::new(),
            };
            let what = match &e.kind {
                Kind::UnknownField(_, expected) => format!(
                    "unknown key {key}; the keys here are: {}",
                    expected.join(", ")
                ),
                Kind::UnknownVariant(v, expected) => {
                    format!("{key}: {v:?} is not one of: {}", expected.join(", "))
                }
                Kind::InvalidType(actual, expected) => {
                    format!("{key} must be {}, not {actual}", plain(expected))
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("{key}: {actual} is not {}", plain(expected))
                }
                Kind::MissingField(f) if key.is_empty() => format!("{f} is required"),
                Kind::MissingField(f) => format!("{key}.{f} is required"),
                other if key.is_empty() => other.to_string(),
                other => format!("{key}: {other}"),
            };
            format!("{what}{from}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Config {
    /// Defaults, then the TOML file (if any), then `HOOKWARDEN_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::prefixed("HOOKWARDEN_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        if let Ok(url) = std::env::var("HOOKWARDEN_DATABASE_URL") {
            fig = fig.merge(Serialized::default("storage.url", url));
        }
        let cfg: Config = fig.extract().map_err(|e| ConfigError(describe(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.delivery;
        if d.concurrency == 0 || d.concurrency > 100_000 {
            return Err(ConfigError(
                "delivery.concurrency must be 1..=100000".into(),
            ));
        }
        if d.max_attempts == 0 || d.max_attempts > 1000 {
            return Err(ConfigError("delivery.max_attempts must be 1..=1000".into()));
        }
        if !(1.0..=10.0).contains(&d.backoff_multiplier) {
            return Err(ConfigError(
                "delivery.backoff_multiplier must be 1..=10".into(),
            ));
        }
        if !(0.0..=1.0).contains(&d.jitter) {
            return Err(ConfigError("delivery.jitter must be 0..=1".into()));
        }
        // Every duration has a ceiling: an absurd value must fail here, not overflow later.
        for (name, v, max) in [
            (
                "delivery.request_timeout_secs",
                d.request_timeout_secs,
                3600,
            ),
            ("delivery.connect_timeout_secs", d.connect_timeout_secs, 600),
            (
                "delivery.backoff_initial_secs",
                d.backoff_initial_secs,
                86_400,
            ),
            ("delivery.backoff_max_secs", d.backoff_max_secs, 30 * 86_400),
            (
                "delivery.retry_after_max_secs",
                d.retry_after_max_secs,
                30 * 86_400,
            ),
            ("delivery.lease_secs", d.lease_secs, 7 * 86_400),
            (
                "delivery.idempotency_ttl_secs",
                d.idempotency_ttl_secs,
                30 * 86_400,
            ),
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
                3600,
            ),
            (
                "server.shutdown_grace_secs",
                self.server.shutdown_grace_secs,
                3600,
            ),
        ] {
            if !(1..=max).contains(&v) {
                return Err(ConfigError(format!("{name} must be 1..={max}")));
            }
        }
        if d.claim_interval_ms == 0 || d.claim_interval_ms > 60_000 {
            return Err(ConfigError(
                "delivery.claim_interval_ms must be 1..=60000".into(),
            ));
        }
        if d.lease_secs < d.request_timeout_secs + 10 {
            return Err(ConfigError(
                "delivery.lease_secs must exceed delivery.request_timeout_secs by at least 10 s"
                    .into(),
            ));
        }
        if d.stored_response_bytes > d.max_response_body_bytes {
            return Err(ConfigError(
                "delivery.stored_response_bytes cannot exceed max_response_body_bytes".into(),
            ));
        }
        for s in &d.retry_on_status {
            if !(100..=599).contains(s) {
                return Err(ConfigError(format!(
                    "delivery.retry_on_status: {s} is not an HTTP status"
                )));
            }
        }
        if self.circuit_breaker.failure_threshold < 1 {
            return Err(ConfigError(
                "circuit_breaker.failure_threshold must be >= 1".into(),
            ));
        }
        if self.server.max_body_bytes == 0 || self.server.max_connections == 0 {
            return Err(ConfigError("server limits must be positive".into()));
        }
        for (name, v) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("server.write_timeout_secs", self.server.write_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(ConfigError(format!("{name} must be 1..=3600")));
            }
        }
        if !MAX_PAGE_BYTES_RANGE.contains(&self.server.max_page_bytes) {
            return Err(ConfigError(format!(
                "server.max_page_bytes must be {}..={}",
                MAX_PAGE_BYTES_RANGE.start(),
                MAX_PAGE_BYTES_RANGE.end()
            )));
        }
        for (name, list) in [
            ("egress.allow_ranges", &self.egress.allow_ranges),
            ("egress.deny_ranges", &self.egress.deny_ranges),
            ("egress.published_ranges", &self.egress.published_ranges),
        ] {
            parse_ranges(list).map_err(|e| ConfigError(format!("{name}: {}", e.0)))?;
        }
        if let Some(tls) = &self.server.tls {
            tls.validate().map_err(|e| ConfigError(e.to_string()))?;
        }
        if let Some(u) = &self.server.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(ConfigError(
                "server.public_url must start with https:// (or http://)".into(),
            ));
        }
        self.inbound.validate()?;
        self.alerts.validate()?;
        self.probe.validate()?;
        let m = &self.metrics;
        if m.max_endpoint_series > 10_000 {
            return Err(ConfigError(
                "metrics.max_endpoint_series must be at most 10000".into(),
            ));
        }
        if !(1..=100_000_000).contains(&m.max_due_count) {
            return Err(ConfigError(
                "metrics.max_due_count must be 1..=100000000".into(),
            ));
        }
        if m.refresh_interval_ms > 3_600_000 {
            return Err(ConfigError(
                "metrics.refresh_interval_ms must be at most 3600000".into(),
            ));
        }
        if let Some(l) = &m.listen
            && l.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError(format!(
                "metrics.listen: {l:?} is not an address:port"
            )));
        }
        if let Some(url) = &self.storage.url
            && !url.starts_with("sqlite:")
            && !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
        {
            return Err(ConfigError(format!(
                "storage.url: unsupported database URL scheme {:?} (use sqlite: or postgres://)",
                url.split(':').next().unwrap_or("")
            )));
        }
        if self.storage.max_connections == 0 || self.storage.max_connections > 1000 {
            return Err(ConfigError(
                "storage.max_connections must be 1..=1000".into(),
            ));
        }
        if self.storage.retention_days > 0 {
            let keep_secs = self.storage.retention_days.saturating_mul(86_400);
            if keep_secs <= self.delivery.idempotency_ttl_secs {
                return Err(ConfigError(
                    "storage.retention_days must keep more than delivery.idempotency_ttl_secs"
                        .into(),
                ));
            }
        }
        if !(1..=MAX_REPLAY_KEYS_MAX).contains(&self.storage.sqlite_replay_keys_max) {
            return Err(ConfigError(format!(
                "storage.sqlite_replay_keys_max must be between 1 and {MAX_REPLAY_KEYS_MAX}"
            )));
        }
        if self.storage.retention_interval_secs == 0 {
            return Err(ConfigError(
                "storage.retention_interval_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The database this configuration selects.
    pub fn backend(&self) -> Backend {
        match &self.storage.url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Backend::Postgres(url.clone())
            }
            _ => Backend::Sqlite(self.sqlite_path()),
        }
    }

    /// The SQLite file to use.
    pub fn sqlite_path(&self) -> PathBuf {
        match &self.storage.url {
            Some(url) if url.starts_with("sqlite:") => {
                let p = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                PathBuf::from(p)
            }
            _ => self.server.data_dir.join("hookwarden.db"),
        }
    }
}

/// Parses CIDR ranges and single addresses (`10.0.0.0/8`, `203.0.113.7`, `2001:db8::/32`).
pub fn parse_ranges(list: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| ConfigError(format!("{s:?} is not an IP address or CIDR range")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(!c.egress.allow_http);
        assert!(c.egress.allow_ranges.is_empty());
        assert_eq!(c.delivery.max_attempts, 15);
        assert_eq!(c.delivery.request_timeout_secs, 15);
    }

    #[test]
    fn file_and_env_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[egress]\nallow_http = true\nallow_ranges = [\"127.0.0.0/8\"]\n[delivery]\nmax_attempts = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert!(c.egress.allow_http);
        assert_eq!(c.delivery.max_attempts, 3);
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[test]
    fn rejects_bad_values_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[egress]\nallow_rangez = []\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        std::fs::write(&path, "[egress]\nallow_ranges = [\"not-a-range\"]\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        let mut c = Config::default();
        c.delivery.lease_secs = 5;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.storage.url = Some("mysql://x".into());
        assert!(c.validate().is_err());
        // Durations that would panic or overflow later are refused here.
        for set in [
            (|c: &mut Config| c.delivery.retry_after_max_secs = 0) as fn(&mut Config),
            |c| c.delivery.connect_timeout_secs = u64::MAX,
            |c| c.server.shutdown_grace_secs = u64::MAX,
            |c| c.server.write_timeout_secs = 0,
            |c| c.delivery.claim_interval_ms = 0,
        ] {
            let mut c = Config::default();
            set(&mut c);
            assert!(c.validate().is_err());
        }
        let mut c = Config::default();
        c.storage.retention_days = 1;
        c.delivery.idempotency_ttl_secs = 2 * 86_400;
        assert!(c.validate().is_err(), "retention shorter than idempotency");
    }

    #[test]
    fn metrics_listener_and_alerts_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[metrics]\nlisten = \"127.0.0.1:9464\"\n[alerts]\nrate_limit_secs = 60\n\
             [alerts.spike]\nfactor = 3.5\n[alerts.endpoint_failing]\nmin_attempts = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9464"));
        assert!(!c.metrics.on_main_listener());
        assert_eq!(c.alerts.rate_limit_secs, 60);
        assert_eq!(c.alerts.spike.factor, 3.5);
        assert_eq!(c.alerts.endpoint_failing.min_attempts, 5);
        assert_eq!(c.alerts.ip_not_allowed.threshold, 10, "defaults stay");
        assert!(Config::default().metrics.on_main_listener());
        std::fs::write(&path, "[metrics]\nlisten = \"localhost\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
        std::fs::write(&path, "[alerts.spike]\nfactr = 2\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }

    #[test]
    fn storage_url_selects_the_backend() {
        let mut c = Config::default();
        assert!(matches!(c.backend(), Backend::Sqlite(p) if p.ends_with("hookwarden.db")));
        c.storage.url = Some("sqlite:///tmp/x.db".into());
        assert_eq!(c.backend(), Backend::Sqlite(PathBuf::from("/tmp/x.db")));
        c.storage.url = Some("postgres://u@127.0.0.1:5432/hw".into());
        c.validate().unwrap();
        assert_eq!(
            c.backend(),
            Backend::Postgres("postgres://u@127.0.0.1:5432/hw".into())
        );
        c.storage.url = Some("postgresql://u@h/db".into());
        assert!(matches!(c.backend(), Backend::Postgres(_)));
    }

    #[test]
    fn replay_keys_bound_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        assert_eq!(
            Config::default().storage.sqlite_replay_keys_max,
            DEFAULT_REPLAY_KEYS_MAX
        );
        std::fs::write(&path, "[storage]\nsqlite_replay_keys_max = 5000\n").unwrap();
        assert_eq!(
            Config::load(Some(&path))
                .unwrap()
                .storage
                .sqlite_replay_keys_max,
            5000
        );
        for bad in ["0", "100000001", "-1"] {
            std::fs::write(
                &path,
                format!("[storage]\nsqlite_replay_keys_max = {bad}\n"),
            )
            .unwrap();
            assert!(Config::load(Some(&path)).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_byte_bound_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        assert_eq!(Config::default().server.max_page_bytes, 4 * 1024 * 1024);
        std::fs::write(&path, "[server]\nmax_page_bytes = 1048576\n").unwrap();
        assert_eq!(
            Config::load(Some(&path)).unwrap().server.max_page_bytes,
            1_048_576
        );
        for bad in ["0", "65535", "268435457", "-1"] {
            std::fs::write(&path, format!("[server]\nmax_page_bytes = {bad}\n")).unwrap();
            assert!(Config::load(Some(&path)).is_err(), "{bad}");
        }
    }

    #[test]
    fn configuration_errors_name_the_key_as_written_and_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nmax_connections = \"lots\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains("server.max_connections must be a whole number, not string \"lots\"")
                && e.contains(&path.display().to_string())
                && !e.contains("default."),
            "{e}"
        );
        std::fs::write(&path, "[serverr]\nx = 1\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains("unknown key serverr; the keys here are: server, storage")
                && !e.contains("``"),
            "{e}"
        );
    }

    #[test]
    fn ranges_accept_single_addresses() {
        let r = parse_ranges(&["10.1.2.3".into(), "192.168.1.0/24".into(), "::1".into()]).unwrap();
        assert_eq!(r[0].to_string(), "10.1.2.3/32");
        assert_eq!(r[2].to_string(), "::1/128");
    }
}
