//! The outbound dispatcher: publishes events, claims due deliveries, signs and sends them through
//! the guarded client, records every attempt and decides what happens next.
//!
//! Two ways in: the fast path (deliveries leased to this process in the same transaction that
//! stored the event, dispatched at once) and the claim loop (due deliveries: retries, expired
//! leases, overflow). Outcomes are written in batches. Work in memory is bounded by `max_load`.

pub mod endpoints;
pub mod retry;

use crate::clock::SharedClock;
use crate::config::{BreakerConfig, DeliveryConfig};
use endpoints::{Admit, AttemptOutcome, EndpointCache, EndpointRuntime, LoadError};
use hookwarden_egress::client::{GuardedClient, OutboundRequest};
use hookwarden_signatures::Outbound;
use hookwarden_store::{
    BreakerPolicy, Claimed, CreateEventResult, LeaseRequest, NewAttempt, NewEvent, Next, Outcome,
    Store, StoreError,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use retry::{RetryPolicy, Verdict};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tracing::{debug, error, info, warn};

/// Longest a rate-limited delivery waits in memory before it is deferred in the database.
const MAX_RATE_WAIT: Duration = Duration::from_secs(2);

pub struct DispatcherOptions {
    pub delivery: DeliveryConfig,
    pub breaker: BreakerConfig,
    /// This process's lease owner name (unique per instance and start).
    pub owner: String,
    /// Release every lease at start (single-instance SQLite: leases in the file belong to dead
    /// processes).
    pub release_all_leases_at_start: bool,
    /// Usage alerts: every attempt feeds `endpoint.failing`.
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    /// What every due time, lease end and recorded time is read from.
    pub clock: SharedClock,
}

pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    client: GuardedClient,
    endpoints: Arc<EndpointCache>,
    cfg: DeliveryConfig,
    policy: RetryPolicy,
    breaker: BreakerPolicy,
    owner: String,
    lease: Duration,
    /// Deliveries held in memory (waiting or in flight).
    load: AtomicUsize,
    max_load: usize,
    permits: Arc<Semaphore>,
    wake_claimer: Notify,
    idle: Notify,
    outcomes: mpsc::UnboundedSender<Msg>,
    stopping: AtomicBool,
    alerts: Option<Arc<crate::alerts::Alerts>>,
    clock: SharedClock,
}

impl Inner {
    fn now_millis(&self) -> hookwarden_store::Millis {
        self.clock.now_millis()
    }
}

impl Dispatcher {
    /// Starts the claim loop and the outcome writer.
    pub async fn start(
        store: Arc<dyn Store>,
        client: GuardedClient,
        endpoints: Arc<EndpointCache>,
        opts: DispatcherOptions,
    ) -> Result<(Dispatcher, DispatcherTasks), StoreError> {
        if opts.release_all_leases_at_start {
            let n = store.release_leases(None, opts.clock.now_millis()).await?;
            if n > 0 {
                info!(
                    released = n,
                    "resuming deliveries that were in flight when the previous process stopped"
                );
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let concurrency = opts.delivery.concurrency;
        let inner = Arc::new(Inner {
            store,
            client,
            endpoints,
            policy: RetryPolicy::new(&opts.delivery),
            breaker: BreakerPolicy {
                enabled: opts.breaker.enabled,
                failure_threshold: opts.breaker.failure_threshold,
                min_failing_ms: i64::try_from(opts.breaker.min_failing_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
            lease: Duration::from_secs(opts.delivery.lease_secs),
            cfg: opts.delivery,
            owner: opts.owner,
            load: AtomicUsize::new(0),
            max_load: concurrency.saturating_mul(4).max(64),
            permits: Arc::new(Semaphore::new(concurrency)),
            wake_claimer: Notify::new(),
            idle: Notify::new(),
            outcomes: tx,
            stopping: AtomicBool::new(false),
            alerts: opts.alerts,
            clock: opts.clock,
        });
        let claimer = tokio::spawn(claim_loop(inner.clone()));
        let writer = tokio::spawn(outcome_loop(inner.clone(), rx));
        Ok((Dispatcher { inner }, DispatcherTasks { claimer, writer }))
    }

    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn endpoints(&self) -> &Arc<EndpointCache> {
        &self.inner.endpoints
    }

    /// The clock the dispatcher decides by (the server's one clock).
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Wakes the claim loop (after a retry request or re-enabling an endpoint).
    pub fn wake(&self) {
        self.inner.wake_claimer.notify_one();
    }

    /// Stores an event with its deliveries and dispatches what it can right away.
    pub async fn publish(&self, event: NewEvent) -> Result<CreateEventResult, StoreError> {
        publish(&self.inner, event).await
    }

    /// Deliveries held in memory right now.
    pub fn load(&self) -> usize {
        self.inner.load.load(Ordering::Acquire)
    }

    /// Stops taking new work, waits up to `grace` for in-flight deliveries, writes every
    /// recorded outcome and hands unfinished leases back.
    pub async fn shutdown(&self, tasks: DispatcherTasks, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        inner.wake_claimer.notify_one();
        let now = Instant::now();
        let deadline = now
            .checked_add(grace)
            .unwrap_or_else(|| now + Duration::from_secs(86_400));
        while inner.load.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), inner.idle.notified()).await;
        }
        let _ = tasks.claimer.await;
        let left = inner.load.load(Ordering::Acquire);
        if left > 0 {
            warn!(
                in_flight = left,
                "shutdown grace elapsed with deliveries in flight; they will be retried"
            );
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if inner.outcomes.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        tasks.writer.abort();
        if let Err(e) = inner
            .store
            .release_leases(Some(&inner.owner), inner.now_millis())
            .await
        {
            warn!(error = %e, "could not release leases at shutdown (they expire on their own)");
        }
    }
}

pub struct DispatcherTasks {
    claimer: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

// Outcomes are nearly every message; boxing them would allocate once per delivery.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Outcome(Outcome),
    /// Answered once every outcome sent before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reserves up to `want` units of in-memory capacity; returns how many were granted.
fn reserve(inner: &Inner, want: usize) -> usize {
    let mut cur = inner.load.load(Ordering::Acquire);
    loop {
        let free = inner.max_load.saturating_sub(cur);
        let take = want.min(free);
        if take == 0 {
            return 0;
        }
        match inner
            .load
            .compare_exchange_weak(cur, cur + take, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return take,
            Err(now) => cur = now,
        }
    }
}

fn release(inner: &Inner, n: usize) {
    if n == 0 {
        return;
    }
    let before = inner.load.fetch_sub(n, Ordering::AcqRel);
    if before == n {
        inner.idle.notify_waiters();
    }
    // Capacity freed: the claim loop may have work waiting.
    if before >= inner.max_load {
        inner.wake_claimer.notify_one();
    }
}

async fn publish(inner: &Arc<Inner>, event: NewEvent) -> Result<CreateEventResult, StoreError> {
    let stopping = inner.stopping.load(Ordering::Acquire);
    let reserved = if stopping { 0 } else { reserve(inner, 256) };
    // The jobs below carry exactly the lease the store records: an outcome applies only under it.
    let lease_until = inner.now_millis() + millis(inner.lease);
    let lease = (reserved > 0).then(|| LeaseRequest {
        owner: inner.owner.clone(),
        until: lease_until,
        max: reserved,
    });
    let ttl =
        i64::try_from(inner.cfg.idempotency_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let result = inner.store.create_event(event, lease, ttl).await;
    let (used, unleased) = match &result {
        Ok(CreateEventResult::Created { event, deliveries }) => {
            let payload: Arc<str> = Arc::from(event.payload.as_str());
            let mut used = 0;
            let mut unleased = false;
            for d in deliveries {
                if d.leased {
                    used += 1;
                    let job = Claimed {
                        delivery_id: d.id.clone(),
                        event_id: event.id.clone(),
                        endpoint_id: d.endpoint_id.clone(),
                        event_type: event.event_type.clone(),
                        payload: payload.clone(),
                        event_created_at: event.created_at,
                        attempt_count: 0,
                        lease_until,
                    };
                    tokio::spawn(run_job(inner.clone(), job));
                } else {
                    unleased = true;
                }
            }
            (used, unleased)
        }
        _ => (0, false),
    };
    release(inner, reserved - used);
    if unleased {
        inner.wake_claimer.notify_one();
    }
    result
}

async fn claim_loop(inner: Arc<Inner>) {
    let interval = Duration::from_millis(inner.cfg.claim_interval_ms.max(10));
    loop {
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(interval, inner.wake_claimer.notified()).await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        // Claim while there is capacity and due work.
        loop {
            let granted = reserve(&inner, 512);
            if granted == 0 {
                break;
            }
            let now = inner.now_millis();
            let claimed = match inner
                .store
                .claim_due(&inner.owner, now, now + millis(inner.lease), granted)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    release(&inner, granted);
                    error!(error = %e, "claiming due deliveries failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            };
            let n = claimed.len();
            release(&inner, granted - n);
            for job in claimed {
                tokio::spawn(run_job(inner.clone(), job));
            }
            metrics::counter!("hookwarden_deliveries_claimed_total").increment(n as u64);
            if n < granted || inner.stopping.load(Ordering::Acquire) {
                break;
            }
        }
    }
}

async fn outcome_loop(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    // The loop holds only a weak reference: the channel's sender lives in `inner`.
    let store = inner.store.clone();
    let clock = inner.clock.clone();
    let breaker = inner.breaker;
    let weak = Arc::downgrade(&inner);
    drop(inner);
    let mut batch = Vec::with_capacity(1024);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        match first {
            Msg::Outcome(o) => batch.push(o),
            Msg::Flush(f) => flushes.push(f),
        }
        while batch.len() < 2048 && flushes.is_empty() {
            match rx.try_recv() {
                Ok(Msg::Outcome(o)) => batch.push(o),
                Ok(Msg::Flush(f)) => flushes.push(f),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
            continue;
        }
        let n = batch.len();
        let mut delay = Duration::from_millis(100);
        let tripped = loop {
            match store
                .record_outcomes(batch.clone(), breaker, clock.now_millis())
                .await
            {
                Ok(t) => break t,
                Err(e) => {
                    error!(error = %e, outcomes = n, "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if delay >= Duration::from_secs(5) && !flushes.is_empty() {
                        // Shutting down and the database keeps failing: the leases expire and
                        // the deliveries are retried (at least once).
                        break Vec::new();
                    }
                }
            }
        };
        batch.clear();
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
        metrics::counter!("hookwarden_outcomes_recorded_total").increment(n as u64);
        if let Some(inner) = weak.upgrade() {
            for t in tripped {
                inner.endpoints.changed(&t.endpoint_id).await;
                warn!(endpoint_id = %t.endpoint_id, failures = t.consecutive_failures, "circuit breaker disabled endpoint");
                metrics::counter!("hookwarden_circuit_breaker_trips_total").increment(1);
                let payload = serde_json::json!({
                    "endpoint_id": t.endpoint_id,
                    "reason": "circuit_breaker",
                    "consecutive_failures": t.consecutive_failures,
                    "failing_since": crate::times::rfc3339(t.failing_since),
                });
                let ev = NewEvent {
                    id: crate::crypto::new_id("evt"),
                    event_type: "endpoint.disabled".into(),
                    payload: payload.to_string(),
                    idempotency_key: None,
                    created_at: inner.now_millis(),
                    source_id: None,
                    only_endpoints: None,
                };
                let inner2 = inner.clone();
                tokio::spawn(async move {
                    if let Err(e) = publish(&inner2, ev).await {
                        error!(error = %e, "could not emit endpoint.disabled");
                    }
                });
            }
        }
    }
}

/// Removes this job's unit of load when dropped, whatever path the job takes.
struct LoadGuard(Arc<Inner>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        release(&self.0, 1);
    }
}

fn push(inner: &Inner, o: Outcome) {
    if inner.outcomes.send(Msg::Outcome(o)).is_err() {
        warn!("outcome writer is gone; the delivery will be retried after its lease");
    }
}

async fn run_job(inner: Arc<Inner>, job: Claimed) {
    let _load = LoadGuard(inner.clone());
    let endpoint = match inner.endpoints.get(&job.endpoint_id).await {
        Ok(Some(rt)) => rt,
        Ok(None) => {
            push(&inner, outcome(&inner, &job, None, Next::Cancel));
            return;
        }
        Err(LoadError::Store(e)) => {
            warn!(error = %e, delivery_id = %job.delivery_id, "could not load endpoint; deferring");
            let at = inner.now_millis() + 5_000;
            push(&inner, outcome(&inner, &job, None, Next::Defer { at }));
            return;
        }
        Err(e @ LoadError::Unusable(..)) => {
            error!(error = %e, delivery_id = %job.delivery_id, "endpoint unusable; deferring");
            let at = inner.now_millis() + 60_000;
            push(&inner, outcome(&inner, &job, None, Next::Defer { at }));
            return;
        }
    };
    if !endpoint.endpoint.enabled {
        // Disabled since the delivery was leased: hand it back (it becomes paused).
        push(
            &inner,
            outcome(
                &inner,
                &job,
                None,
                Next::Retry {
                    at: inner.now_millis(),
                },
            ),
        );
        return;
    }
    if let Some(limiter) = &endpoint.limiter {
        match limiter.admit(Instant::now(), MAX_RATE_WAIT) {
            Admit::Wait(w) if w.is_zero() => {}
            Admit::Wait(w) => tokio::time::sleep(w).await,
            Admit::Defer(d) => {
                let at = inner.now_millis() + millis(d);
                push(&inner, outcome(&inner, &job, None, Next::Defer { at }));
                metrics::counter!("hookwarden_deliveries_rate_deferred_total").increment(1);
                return;
            }
        }
    }
    let Ok(_permit) = inner.permits.clone().acquire_owned().await else {
        return;
    };
    // Never send on a lease that could run out mid-request: another instance may own it then.
    let margin = millis(Duration::from_secs(inner.cfg.request_timeout_secs + 5));
    if job.lease_until - inner.now_millis() < margin {
        debug!(delivery_id = %job.delivery_id, "lease too close to expiry; leaving it to be reclaimed");
        return;
    }
    let attempt_no = job.attempt_count + 1;
    let (attempt, next) = attempt_once(&inner, &endpoint, &job, attempt_no).await;
    push(&inner, outcome(&inner, &job, Some(attempt), next));
}

fn outcome(inner: &Inner, job: &Claimed, attempt: Option<NewAttempt>, next: Next) -> Outcome {
    Outcome {
        delivery_id: job.delivery_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        attempt,
        next,
        lease_owner: inner.owner.clone(),
        lease_until: job.lease_until,
    }
}

/// The delivered JSON body: `{"id","type","timestamp","data"[,"developer_payload"]}`.
pub fn delivery_body(job: &Claimed, developer_payload: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(job.payload.len() + 160);
    body.extend_from_slice(b"{\"id\":");
    let _ = serde_json::to_writer(&mut body, &job.event_id);
    body.extend_from_slice(b",\"type\":");
    let _ = serde_json::to_writer(&mut body, &job.event_type);
    body.extend_from_slice(b",\"timestamp\":\"");
    body.extend_from_slice(crate::times::rfc3339(job.event_created_at).as_bytes());
    body.extend_from_slice(b"\",\"data\":");
    body.extend_from_slice(job.payload.as_bytes());
    if let Some(p) = developer_payload {
        body.extend_from_slice(b",\"developer_payload\":");
        let _ = serde_json::to_writer(&mut body, p);
    }
    body.push(b'}');
    body
}

/// Why an attempt's headers could not be built (the attempt fails as `internal`: the event or
/// the endpoint holds something no request can carry).
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// A value Hookwarden puts in a header (event type, delivery id) is not a valid header
    /// value.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// The endpoint's secrets cannot sign.
    #[error("{0}")]
    Sign(#[from] hookwarden_signatures::SignError),
    /// A signature scheme produced a header value that is not valid (never expected).
    #[error("invalid signature header {0}")]
    InvalidSignature(&'static str),
}

/// Builds the signed request headers for one attempt.
pub fn delivery_headers(
    endpoint: &EndpointRuntime,
    job: &Claimed,
    attempt_no: i64,
    body: &[u8],
    timestamp: i64,
    user_agent: &HeaderValue,
) -> Result<HeaderMap, HeaderError> {
    let mut headers = endpoint.headers.clone();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::USER_AGENT, user_agent.clone());
    let put = |h: &mut HeaderMap, name: &'static str, value: &str| -> Result<(), HeaderError> {
        let v = HeaderValue::from_str(value).map_err(|_| HeaderError::InvalidValue(name))?;
        h.insert(HeaderName::from_static(name), v);
        Ok(())
    };
    put(&mut headers, "x-hookwarden-event-type", &job.event_type)?;
    put(&mut headers, "x-hookwarden-delivery-id", &job.delivery_id)?;
    put(
        &mut headers,
        "x-hookwarden-attempt",
        &attempt_no.to_string(),
    )?;
    let secrets: Vec<&str> = endpoint.secrets.iter().map(String::as_str).collect();
    let keys: Vec<&str> = endpoint.signing_keys.iter().map(String::as_str).collect();
    let msg = Outbound {
        msg_id: &job.event_id,
        timestamp,
        body,
    };
    for scheme in &endpoint.schemes {
        let with = if scheme.is_asymmetric() {
            &keys
        } else {
            &secrets
        };
        let signed = hookwarden_signatures::sign(*scheme, with, &msg)?;
        add_signature_headers(&mut headers, signed)?;
    }
    Ok(headers)
}

/// Adds a scheme's signed headers. `webhook-signature` is shared by `standard-webhooks` (`v1,`)
/// and `standard-webhooks-v1a` (`v1a,`): with both, their entries go in one space-separated
/// value, as the specification says.
pub fn add_signature_headers(
    headers: &mut HeaderMap,
    signed: Vec<(&'static str, String)>,
) -> Result<(), HeaderError> {
    for (name, value) in signed {
        let joined;
        let value = match headers.get(name) {
            Some(prev) if name == hookwarden_signatures::headers::WEBHOOK_SIGNATURE => {
                joined = format!("{} {value}", String::from_utf8_lossy(prev.as_bytes()));
                joined
            }
            _ => value,
        };
        let v = HeaderValue::from_str(&value).map_err(|_| HeaderError::InvalidSignature(name))?;
        headers.insert(HeaderName::from_static(name), v);
    }
    Ok(())
}

/// The request headers as recorded with an attempt: JSON `[[name, value], …]` in sending order,
/// with the values of signature headers and of every header whose name looks secret
/// (authorization, token, secret, key, signature, cookie, password…) masked.
pub fn masked_headers_json(headers: &HeaderMap) -> String {
    let pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .map(|(name, value)| {
            let n = name.as_str();
            let v = String::from_utf8_lossy(value.as_bytes());
            let shown = if crate::api::endpoints::is_sensitive_header(n) {
                crate::api::endpoints::mask(&v).into()
            } else {
                v
            };
            (n, shown)
        })
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

async fn attempt_once(
    inner: &Inner,
    endpoint: &EndpointRuntime,
    job: &Claimed,
    attempt_no: i64,
) -> (NewAttempt, Next) {
    let started_at = inner.now_millis();
    let started = Instant::now();
    let mut body = delivery_body(job, endpoint.developer_payload.as_deref());
    let ua = HeaderValue::from_str(&inner.cfg.user_agent)
        .unwrap_or(HeaderValue::from_static("Hookwarden"));
    let no = u32::try_from(attempt_no).unwrap_or(u32::MAX);
    let custom;
    let policy = if endpoint.endpoint.retry_schedule.is_empty() {
        &inner.policy
    } else {
        custom = inner
            .policy
            .with_schedule(&endpoint.endpoint.retry_schedule);
        &custom
    };
    let mut attempt = NewAttempt {
        attempt_no,
        started_at,
        duration_ms: 0,
        status_code: None,
        response_body: None,
        response_truncated: false,
        error_class: None,
        error_message: None,
        local_addr: None,
        remote_addr: None,
        request_headers: None,
    };
    let mut added = None;
    if let Some(t) = &endpoint.transformation {
        let run = match t {
            Ok(t) => {
                t.run_blocking(
                    job.event_id.clone(),
                    job.event_type.clone(),
                    crate::times::rfc3339(job.event_created_at),
                    endpoint.endpoint.url.clone(),
                    body,
                )
                .await
            }
            Err(e) => Err(e.clone()),
        };
        match run {
            Ok(out) if out.cancelled => {
                metrics::counter!("hookwarden_transformations_total", "outcome" => "cancelled")
                    .increment(1);
                attempt.duration_ms = millis(started.elapsed());
                attempt.error_class = Some("cancelled".into());
                attempt.error_message = Some("cancelled by the endpoint's transformation".into());
                return (attempt, Next::Cancel);
            }
            Ok(out) => {
                metrics::counter!("hookwarden_transformations_total", "outcome" => "applied")
                    .increment(1);
                body = out.body;
                added = Some(out.headers);
            }
            Err(e) => {
                metrics::counter!("hookwarden_transformations_total", "outcome" => "failed")
                    .increment(1);
                attempt.duration_ms = millis(started.elapsed());
                attempt.error_class = Some("transformation".into());
                attempt.error_message = Some(truncate(&format!("transformation {e}"), 1024));
                let next = match policy.after_error(no, true) {
                    Verdict::Retry(d) => Next::Retry {
                        at: inner.now_millis() + millis(d),
                    },
                    _ => Next::Failed,
                };
                return (attempt, next);
            }
        }
    }
    let mut headers =
        match delivery_headers(endpoint, job, attempt_no, &body, started_at / 1000, &ua) {
            Ok(h) => h,
            Err(e) => {
                attempt.error_class = Some("internal".into());
                attempt.error_message = Some(e.to_string());
                return (attempt, Next::Failed);
            }
        };
    if let Some(added) = added {
        // Checked by the transformation: valid, and never a header Hookwarden sets.
        headers.extend(added);
    }
    attempt.request_headers = Some(masked_headers_json(&headers));
    let req = OutboundRequest {
        url: endpoint.endpoint.url.clone(),
        method: Method::POST,
        headers,
        body: body.into(),
        identity: endpoint.identity.clone(),
        timeout: Some(Duration::from_secs(inner.cfg.request_timeout_secs)),
    };
    let result = inner.client.send(req).await;
    attempt.duration_ms = millis(started.elapsed());
    let mut error_class: Option<&'static str> = None;
    let verdict = match result {
        Ok(resp) => {
            attempt.status_code = Some(i64::from(resp.status.as_u16()));
            let keep = resp.body.len().min(inner.cfg.stored_response_bytes);
            if keep > 0 {
                attempt.response_body =
                    Some(String::from_utf8_lossy(&resp.body[..keep]).into_owned());
            }
            attempt.response_truncated = resp.body_truncated || resp.body.len() > keep;
            attempt.local_addr = resp.local_addr.map(|a| a.to_string());
            attempt.remote_addr = resp.remote_addr.map(|a| a.to_string());
            let now =
                crate::times::system_time(inner.now_millis()).unwrap_or(std::time::UNIX_EPOCH);
            let v = policy.after_status(no, resp.status, &resp.headers, now);
            if v != Verdict::Success {
                error_class = Some("http_status");
                attempt.error_class = Some("http_status".into());
                attempt.error_message = Some(format!("HTTP {}", resp.status.as_u16()));
            }
            metrics::histogram!("hookwarden_delivery_attempt_seconds")
                .record(started.elapsed().as_secs_f64());
            v
        }
        Err(e) => {
            error_class = Some(e.class().as_str());
            attempt.error_class = Some(e.class().as_str().to_owned());
            attempt.error_message = Some(truncate(&e.to_string(), 1024));
            policy.after_error(no, e.is_retryable())
        }
    };
    let outcome = match verdict {
        Verdict::Success => AttemptOutcome::Succeeded,
        Verdict::Retry(_) => AttemptOutcome::Retrying,
        Verdict::Final => AttemptOutcome::Failed,
    };
    let outcome_label = outcome.as_str();
    endpoint
        .metrics
        .record(outcome, started.elapsed().as_secs_f64());
    if let Some(class) = error_class {
        metrics::counter!("hookwarden_delivery_attempt_errors_total", "class" => class)
            .increment(1);
    }
    if let Some(a) = &inner.alerts {
        a.observe_attempt(&job.endpoint_id, verdict == Verdict::Success);
    }
    // A failed attempt is worth a line at the default level; a successful one only at debug
    // (at thousands per second it would be most of the log, and the attempt is recorded anyway).
    macro_rules! attempt_log {
        ($level:ident) => {
            tracing::$level!(
                delivery_id = %job.delivery_id,
                event_id = %job.event_id,
                endpoint_id = %job.endpoint_id,
                attempt = attempt_no,
                status = attempt.status_code,
                error_class = attempt.error_class.as_deref(),
                local_addr = attempt.local_addr.as_deref(),
                duration_ms = attempt.duration_ms,
                outcome = outcome_label,
                "delivery attempt"
            )
        };
    }
    if verdict == Verdict::Success {
        attempt_log!(debug);
    } else {
        attempt_log!(info);
    }
    let next = match verdict {
        Verdict::Success => Next::Succeeded,
        Verdict::Retry(d) => Next::Retry {
            at: inner.now_millis() + millis(d),
        },
        Verdict::Final => Next::Failed,
    };
    (attempt, next)
}

fn truncate(s: &str, max: usize) -> String {
    let head = hookwarden_netguard::truncate_str(s, max);
    if head.len() == s.len() {
        s.to_owned()
    } else {
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(payload: &str) -> Claimed {
        Claimed {
            delivery_id: "dlv_1".into(),
            event_id: "evt_1".into(),
            endpoint_id: "ep_1".into(),
            event_type: "invoice.paid".into(),
            payload: Arc::from(payload),
            event_created_at: 1_700_000_000_123,
            attempt_count: 0,
            lease_until: 0,
        }
    }

    #[test]
    fn body_is_valid_json_and_echoes_developer_payload() {
        let b = delivery_body(
            &job(r#"{"amount":5,"nested":{"x":[1,2]}}"#),
            Some("s3cr\"et"),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["type"], "invoice.paid");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["data"]["nested"]["x"][1], 2);
        assert_eq!(v["developer_payload"], "s3cr\"et");
        let b = delivery_body(&job("null"), None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(v.get("developer_payload").is_none());
    }

    #[test]
    fn recorded_headers_mask_secrets() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer abcdefghijklmnop"),
        );
        h.insert("x-api-key", HeaderValue::from_static("short"));
        h.insert(
            "webhook-signature",
            HeaderValue::from_static("v1,c2lnbmF0dXJlLXZhbHVlLWhlcmU="),
        );
        h.insert("x-tenant", HeaderValue::from_static("acme"));
        let v: Vec<(String, String)> = serde_json::from_str(&masked_headers_json(&h)).unwrap();
        let get = |n: &str| v.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("x-tenant"), Some("acme"));
        assert_eq!(get("authorization"), Some("****mnop"));
        assert_eq!(get("x-api-key"), Some("****"));
        assert_eq!(get("webhook-signature"), Some("****cmU="));
        let all = masked_headers_json(&h);
        assert!(!all.contains("abcdefghijkl") && !all.contains("c2lnbmF0dXJl"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
