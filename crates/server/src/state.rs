//! Shared application state.

use crate::config::Config;
use crate::crypto::{SecretBox, hash_api_key};
use crate::dispatch::Dispatcher;
use crate::error::{ApiError, ApiResult};
use hookwarden_netguard::{Guard, UrlPolicy};
use hookwarden_store::{CertificateStore, Store, StoreError};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub secrets: SecretBox,
    pub guard: Arc<Guard>,
    pub url_policy: UrlPolicy,
    pub api_keys: ApiKeyCache,
    pub metrics: Option<PrometheusHandle>,
    /// The database-backed part of `/metrics`, refreshed at most once per interval.
    pub scraper: crate::metrics::Scraper,
    /// Usage alerts (`None` when `alerts.enabled` is false).
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    /// Client certificates and the published egress ranges.
    pub certs: Arc<dyn CertificateStore>,
    /// Inbound sources, ingest and its audit log.
    pub inbound: Arc<crate::inbound::Inbound>,
}

impl AppState {
    /// Validates an endpoint URL for storage: scheme, userinfo, port and address-literal rules,
    /// then a DNS check (a name that resolves to a denied address is refused now rather than at
    /// delivery time; a name that does not resolve yet is accepted and checked at every
    /// connection). Returns the normalised URL.
    pub async fn check_endpoint_url(&self, url: &str) -> ApiResult<String> {
        let target = self
            .guard
            .check_url(url, &self.url_policy)
            .map_err(|e| ApiError::invalid(e.code(), e.to_string()))?;
        if let Err(e) = self.guard.resolve_checked(&target.host).await
            && e.denied().is_some()
        {
            return Err(ApiError::invalid(
                "URL_ADDRESS_DENIED",
                format!("endpoint URL is not allowed: {e}"),
            ));
        }
        Ok(target.url.to_string())
    }
}

/// Remembers recently verified API keys (by hash) so the hot path does not hit the database.
pub struct ApiKeyCache {
    ttl: Duration,
    valid: RwLock<HashMap<[u8; 32], Instant>>,
}

impl ApiKeyCache {
    pub fn new(ttl: Duration) -> ApiKeyCache {
        ApiKeyCache {
            ttl,
            valid: RwLock::new(HashMap::new()),
        }
    }

    /// The key is hashed first, so lookups compare digests, never the secret itself.
    pub async fn check(&self, store: &dyn Store, key: &str) -> Result<bool, StoreError> {
        let hash = hash_api_key(key);
        if let Ok(map) = self.valid.read()
            && let Some(seen) = map.get(&hash)
            && seen.elapsed() < self.ttl
        {
            return Ok(true);
        }
        let ok = store.find_api_key(hash).await?.is_some();
        if let Ok(mut map) = self.valid.write() {
            if ok {
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(hash, Instant::now());
            } else {
                map.remove(&hash);
            }
        }
        Ok(ok)
    }
}
