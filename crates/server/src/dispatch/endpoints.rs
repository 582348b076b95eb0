//! What the dispatcher keeps in memory per endpoint: decrypted secrets, parsed schemes, the
//! custom headers as a ready `HeaderMap`, and the rate limiter.

use crate::clock::SharedClock;
use crate::crypto::SecretBox;
use crate::transform::{TransformError, Transformation};
use hookwarden_egress::client::ClientIdentity;
use hookwarden_signatures::Scheme;
use hookwarden_store::{CertificateStore, Endpoint, Millis, Store, StoreError};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Spaces requests `1/rate` apart (GCRA without burst). Deliveries that would have to wait long
/// are deferred in the database instead of held in memory, spread one interval apart.
#[derive(Debug)]
pub struct RateLimiter {
    pub per_second: u32,
    interval: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    /// The theoretical arrival time of the next request.
    tat: Instant,
    /// Where the next deferred delivery is placed.
    defer_cursor: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send after waiting this long (zero: now). The slot is reserved.
    Wait(Duration),
    /// Too far out: make the delivery due again this far in the future.
    Defer(Duration),
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            per_second,
            interval: Duration::from_secs_f64(1.0 / f64::from(per_second.max(1))),
            state: Mutex::new(LimiterState {
                tat: now,
                defer_cursor: now,
            }),
        }
    }

    pub fn admit(&self, now: Instant, max_wait: Duration) -> Admit {
        let Ok(mut s) = self.state.lock() else {
            return Admit::Defer(Duration::from_secs(1));
        };
        let slot = s.tat.max(now);
        let wait = slot - now;
        if wait <= max_wait {
            s.tat = slot + self.interval;
            return Admit::Wait(wait);
        }
        let at = s.defer_cursor.max(slot);
        s.defer_cursor = at + self.interval;
        Admit::Defer(at - now)
    }
}

pub struct EndpointRuntime {
    pub endpoint: Endpoint,
    /// Plain HMAC signing secrets, newest first.
    pub secrets: Vec<String>,
    /// Ed25519 private keys (`whsk_`) of `standard-webhooks-v1a`, newest first.
    pub signing_keys: Vec<String>,
    pub schemes: Vec<Scheme>,
    pub headers: HeaderMap,
    pub developer_payload: Option<String>,
    pub limiter: Option<Arc<RateLimiter>>,
    /// The client certificate presented to this endpoint (mTLS).
    pub identity: Option<Arc<ClientIdentity>>,
    /// This endpoint's per-attempt metrics, registered once instead of looked up per attempt.
    pub metrics: Arc<AttemptMetrics>,
    /// The endpoint's transformation, compiled (or why it does not compile: each attempt then
    /// fails with that reason until it is fixed).
    pub transformation: Option<Result<Arc<Transformation>, TransformError>>,
    fresh_until: Instant,
    /// When the first of `secrets` stops signing (the end of a rotation's grace period), on the
    /// server's clock: the runtime is reloaded from then on.
    secrets_expire_at: Option<Millis>,
}

/// Names only: the runtime holds opened secrets, custom header values and the developer payload.
impl std::fmt::Debug for EndpointRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRuntime")
            .field("endpoint_id", &self.endpoint.id)
            .field("secrets", &self.secrets.len())
            .field("signing_keys", &self.signing_keys.len())
            .field("schemes", &self.schemes)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("developer_payload", &self.developer_payload.is_some())
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// The metric handles every attempt to one endpoint updates, each registered on first use (a
/// series appears once it has something to count) and then kept, instead of being looked up by
/// its labels on every attempt.
pub struct AttemptMetrics {
    endpoint_id: String,
    /// By outcome: succeeded, retrying, failed.
    attempts: [std::sync::OnceLock<metrics::Counter>; 3],
    seconds: std::sync::OnceLock<metrics::Histogram>,
}

/// What an attempt came to, as counted in `hookwarden_delivery_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded = 0,
    Retrying = 1,
    Failed = 2,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retrying => "retrying",
            AttemptOutcome::Failed => "failed",
        }
    }
}

impl AttemptMetrics {
    pub fn new(endpoint_id: &str) -> AttemptMetrics {
        AttemptMetrics {
            endpoint_id: endpoint_id.to_owned(),
            attempts: Default::default(),
            seconds: Default::default(),
        }
    }

    /// Count one attempt and its duration.
    pub fn record(&self, outcome: AttemptOutcome, seconds: f64) {
        self.attempts[outcome as usize]
            .get_or_init(|| {
                metrics::counter!(
                    "hookwarden_delivery_attempts_total",
                    "endpoint_id" => self.endpoint_id.clone(),
                    "outcome" => outcome.as_str(),
                )
            })
            .increment(1);
        self.seconds
            .get_or_init(|| {
                metrics::histogram!(
                    "hookwarden_endpoint_attempt_seconds",
                    "endpoint_id" => self.endpoint_id.clone(),
                )
            })
            .record(seconds);
    }
}

impl std::fmt::Debug for AttemptMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptMetrics")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("endpoint {0} cannot be used: {1}")]
    Unusable(String, String),
}

/// Endpoint runtimes by id, reloaded after `ttl` (or when a secret expires, or on invalidation).
pub struct EndpointCache {
    store: Arc<dyn Store>,
    secrets: SecretBox,
    ttl: Duration,
    clock: SharedClock,
    map: RwLock<HashMap<String, Arc<EndpointRuntime>>>,
    loading: tokio::sync::Mutex<()>,
    certs: Option<Arc<dyn CertificateStore>>,
}

impl EndpointCache {
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, ttl: Duration) -> EndpointCache {
        EndpointCache {
            store,
            secrets,
            ttl,
            clock: crate::clock::system(),
            map: RwLock::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            certs: None,
        }
    }

    /// Where endpoints' client certificates are loaded from (without it, an endpoint with a
    /// client certificate is unusable).
    pub fn with_certificates(mut self, certs: Arc<dyn CertificateStore>) -> EndpointCache {
        self.certs = Some(certs);
        self
    }

    /// The clock secret expiry is decided by (the system clock unless set).
    pub fn with_clock(mut self, clock: SharedClock) -> EndpointCache {
        self.clock = clock;
        self
    }

    async fn load_identity(
        &self,
        id: &str,
        cert_id: Option<&str>,
        previous: Option<&EndpointRuntime>,
    ) -> Result<Option<Arc<ClientIdentity>>, LoadError> {
        let Some(cert_id) = cert_id else {
            return Ok(None);
        };
        // Same certificate as before: keep the identity (and so its pooled connections).
        if let Some(prev) = previous.and_then(|p| p.identity.clone())
            && prev.id == cert_id
        {
            return Ok(Some(prev));
        }
        let certs = self.certs.as_ref().ok_or_else(|| {
            LoadError::Unusable(id.into(), "client certificates are not available".into())
        })?;
        let cert = certs.get_certificate(cert_id).await?.ok_or_else(|| {
            LoadError::Unusable(id.into(), format!("client certificate {cert_id} not found"))
        })?;
        let identity = crate::certs::identity(&cert, &self.secrets)
            .map_err(|e| LoadError::Unusable(id.into(), e.to_string()))?;
        Ok(Some(Arc::new(identity)))
    }

    fn cached(&self, id: &str) -> Option<Arc<EndpointRuntime>> {
        let map = self.map.read().ok()?;
        let rt = map.get(id)?;
        let secrets_valid = rt
            .secrets_expire_at
            .is_none_or(|at| self.clock.now_millis() < at);
        (rt.fresh_until > Instant::now() && secrets_valid).then(|| rt.clone())
    }

    /// `Ok(None)` when the endpoint does not exist (deleted).
    pub async fn get(&self, id: &str) -> Result<Option<Arc<EndpointRuntime>>, LoadError> {
        if let Some(rt) = self.cached(id) {
            return Ok(Some(rt));
        }
        let _guard = self.loading.lock().await;
        if let Some(rt) = self.cached(id) {
            return Ok(Some(rt));
        }
        let Some(endpoint) = self.store.get_endpoint(id).await? else {
            if let Ok(mut map) = self.map.write() {
                map.remove(id);
            }
            return Ok(None);
        };
        let now = self.clock.now_millis();
        let records = self.store.active_secrets(id, now).await?;
        let mut secrets = Vec::with_capacity(records.len());
        let mut signing_keys = Vec::new();
        let fresh_until = Instant::now() + self.ttl;
        let mut secrets_expire_at: Option<Millis> = None;
        for r in &records {
            let plain = self
                .secrets
                .open(&r.secret)
                .map_err(|e| LoadError::Unusable(id.into(), e.to_string()))?;
            match r.kind {
                hookwarden_store::SecretKind::Hmac => secrets.push(plain),
                hookwarden_store::SecretKind::Ed25519 => signing_keys.push(plain),
            }
            if let Some(exp) = r.expires_at {
                secrets_expire_at = Some(secrets_expire_at.map_or(exp, |e| e.min(exp)));
            }
        }
        if secrets.is_empty() {
            return Err(LoadError::Unusable(
                id.into(),
                "no active signing secret".into(),
            ));
        }
        let schemes = endpoint
            .signature_schemes
            .iter()
            .map(|s| {
                Scheme::from_str(s)
                    .map_err(|_| LoadError::Unusable(id.into(), format!("unknown scheme {s}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if schemes.iter().any(Scheme::is_asymmetric) && signing_keys.is_empty() {
            return Err(LoadError::Unusable(
                id.into(),
                "no active ed25519 signing key for standard-webhooks-v1a".into(),
            ));
        }
        let mut headers = HeaderMap::with_capacity(endpoint.headers.len());
        for (k, v) in &endpoint.headers {
            // Stored by an earlier release before the name was reserved: never sent.
            if crate::api::endpoints::is_reserved_header(k) {
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| LoadError::Unusable(id.into(), format!("bad header name {k}")))?;
            let v = self
                .secrets
                .open(v)
                .map_err(|e| LoadError::Unusable(id.into(), e.to_string()))?;
            let value = HeaderValue::from_str(&v)
                .map_err(|_| LoadError::Unusable(id.into(), format!("bad header value for {k}")))?;
            headers.insert(name, value);
        }
        let developer_payload = match &endpoint.developer_payload {
            Some(p) => Some(
                self.secrets
                    .open(p)
                    .map_err(|e| LoadError::Unusable(id.into(), e.to_string()))?,
            ),
            None => None,
        };
        let previous = self.map.read().ok().and_then(|m| m.get(id).cloned());
        let limiter = endpoint
            .rate_limit_per_second
            .filter(|r| *r > 0)
            .map(
                |rate| match previous.as_ref().and_then(|p| p.limiter.clone()) {
                    Some(l) if l.per_second == rate => l,
                    _ => Arc::new(RateLimiter::new(rate)),
                },
            );
        let identity = self
            .load_identity(
                id,
                endpoint.client_certificate_id.as_deref(),
                previous.as_deref(),
            )
            .await?;
        let metrics = previous
            .as_ref()
            .map(|p| p.metrics.clone())
            .unwrap_or_else(|| Arc::new(AttemptMetrics::new(id)));
        let transformation = match (&endpoint.transformation, previous.as_deref()) {
            (None, _) => None,
            // Unchanged: compiled once.
            (Some(t), Some(p)) if p.endpoint.transformation.as_ref() == Some(t) => {
                p.transformation.clone()
            }
            (Some(t), _) => Some(Transformation::compile(t).map(Arc::new)),
        };
        let rt = Arc::new(EndpointRuntime {
            metrics,
            transformation,
            identity,
            endpoint,
            secrets,
            signing_keys,
            schemes,
            headers,
            developer_payload,
            limiter,
            fresh_until,
            secrets_expire_at,
        });
        if let Ok(mut map) = self.map.write() {
            map.insert(id.to_owned(), rt.clone());
        }
        Ok(Some(rt))
    }

    /// After a committed change to endpoint `id` (or its secrets): reloads it here and, when
    /// other instances share the database, tells them to reload it too (awaited, so a caller
    /// that returns afterwards knows every listening instance has been told).
    pub async fn changed(&self, id: &str) {
        self.invalidate(id);
        if self.store.is_shared()
            && let Err(e) = self
                .store
                .announce_change(&hookwarden_store::Change::Endpoint(id.to_owned()))
                .await
        {
            // Other instances still reload within their cache TTL.
            tracing::warn!(endpoint = id, error = %e, "could not announce an endpoint change");
        }
    }

    /// Forces every cached endpoint to be reloaded before its next use (limiters kept).
    pub fn invalidate_all(&self) {
        let ids: Vec<String> = match self.map.read() {
            Ok(map) => map.keys().cloned().collect(),
            Err(_) => return,
        };
        for id in ids {
            self.invalidate(&id);
        }
    }

    /// Forces endpoint `id` to be reloaded before its next use, in this process only.
    pub fn invalidate(&self, id: &str) {
        if let Ok(mut map) = self.map.write()
            && let Some(rt) = map.get(id).cloned()
        {
            // Keep the limiter (its state) but force a reload.
            map.insert(
                id.to_owned(),
                Arc::new(EndpointRuntime {
                    endpoint: rt.endpoint.clone(),
                    secrets: rt.secrets.clone(),
                    signing_keys: rt.signing_keys.clone(),
                    schemes: rt.schemes.clone(),
                    headers: rt.headers.clone(),
                    developer_payload: rt.developer_payload.clone(),
                    limiter: rt.limiter.clone(),
                    identity: rt.identity.clone(),
                    metrics: rt.metrics.clone(),
                    transformation: rt.transformation.clone(),
                    fresh_until: Instant::now(),
                    secrets_expire_at: rt.secrets_expire_at,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_spaces_and_defers() {
        let l = RateLimiter::new(10); // 100 ms apart
        let t0 = Instant::now();
        assert_eq!(
            l.admit(t0, Duration::from_millis(250)),
            Admit::Wait(Duration::ZERO)
        );
        assert_eq!(
            l.admit(t0, Duration::from_millis(250)),
            Admit::Wait(Duration::from_millis(100))
        );
        assert_eq!(
            l.admit(t0, Duration::from_millis(250)),
            Admit::Wait(Duration::from_millis(200))
        );
        // The next slot (300 ms) is beyond the wait limit: deferred, spread one interval apart.
        assert_eq!(
            l.admit(t0, Duration::from_millis(250)),
            Admit::Defer(Duration::from_millis(300))
        );
        assert_eq!(
            l.admit(t0, Duration::from_millis(250)),
            Admit::Defer(Duration::from_millis(400))
        );
        // Time passes: slots free up again.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            l.admit(later, Duration::from_millis(250)),
            Admit::Wait(Duration::ZERO)
        );
    }

    #[test]
    fn limiter_never_exceeds_its_rate() {
        let l = RateLimiter::new(50);
        let t0 = Instant::now();
        let mut sends = Vec::new();
        for i in 0..500u64 {
            let now = t0 + Duration::from_millis(i * 3);
            if let Admit::Wait(w) = l.admit(now, Duration::from_secs(1)) {
                sends.push(now + w);
            }
        }
        sends.sort();
        // In any 1-second window at most 50 (+1 for the boundary) sends.
        for (i, s) in sends.iter().enumerate() {
            let n = sends[i..]
                .iter()
                .take_while(|x| **x < *s + Duration::from_secs(1))
                .count();
            assert!(n <= 51, "{n} sends in one second");
        }
    }
}
