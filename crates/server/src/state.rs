//! Shared application state.

use crate::config::Config;
use crate::crypto::SecretBox;
use crate::dispatch::Dispatcher;
use crate::error::{ApiError, ApiResult};
use crate::keys::ApiKeyCache;
use hookwarden_netguard::{Guard, UrlPolicy};
use hookwarden_store::{ApiKeyStore, CertificateStore, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

pub struct AppState {
    pub config: Arc<Config>,
    /// The server's one clock (see [`crate::clock`]).
    pub clock: crate::clock::SharedClock,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub secrets: SecretBox,
    pub guard: Arc<Guard>,
    pub url_policy: UrlPolicy,
    /// Admin API keys, and this instance's memory of those it verified.
    pub keys: Arc<dyn ApiKeyStore>,
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
    /// The public list of client certificates, read at most once a second.
    pub published_certs: Arc<crate::api::security::PublishedCache>,
    /// The receiver security probe.
    pub prober: Arc<crate::probe::Prober>,
    /// Recoveries (failed deliveries sent again) and the task that runs them.
    pub recoveries: Arc<dyn hookwarden_store::RecoveryStore>,
    pub recoverer: Arc<crate::recovery::Recoverer>,
    /// The event-type catalogue.
    pub event_types: Arc<dyn hookwarden_store::EventTypeStore>,
    /// The catalogue's compiled schemas, checked on publish.
    pub catalogue: crate::catalogue::Catalogue,
}

impl AppState {
    /// Validates an endpoint URL for storage: scheme, userinfo, port and address-literal rules,
    /// then a DNS check (a name that resolves to a denied address is refused now rather than at
    /// delivery time; a name that does not resolve yet is accepted and checked at every
    /// connection). Returns the normalised URL.
    pub async fn check_endpoint_url(&self, url: &str) -> ApiResult<String> {
        let target = self.guard.check_url(url, &self.url_policy).map_err(|e| {
            let hint = match &e {
                hookwarden_netguard::UrlError::AddressDenied(d) => allow_hint(d),
                hookwarden_netguard::UrlError::SchemeNotAllowed { scheme, .. }
                    if scheme == "http" =>
                {
                    " (plain http:// is allowed with egress.allow_http = true)"
                }
                _ => "",
            };
            ApiError::invalid(e.code(), format!("{e}{hint}"))
        })?;
        if let Err(e) = self.guard.resolve_checked(&target.host).await
            && let Some(d) = e.denied()
        {
            return Err(ApiError::invalid(
                "URL_ADDRESS_DENIED",
                format!("endpoint URL is not allowed: {e}{}", allow_hint(d)),
            ));
        }
        Ok(target.url.to_string())
    }
}

/// What to change when an internal address is refused on purpose (a local receiver, a lab
/// network): nothing to say for an operator's own deny range.
fn allow_hint(d: &hookwarden_netguard::Denied) -> &'static str {
    match d.reason {
        hookwarden_netguard::DenyReason::Category(_) => {
            " (to deliver to such addresses on purpose, add their range to egress.allow_ranges)"
        }
        hookwarden_netguard::DenyReason::DenyRange(_) => "",
    }
}
