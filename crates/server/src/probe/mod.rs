//! The receiver security probe: sends an endpoint a short, fixed series of probe events, one
//! correctly signed and the others forged, stale or replayed, through the normal guarded egress
//! path (same egress addresses, client certificate and URL policy), and reports which ones the
//! receiver refused. See docs/probe.md.
//!
//! Bounded: at most [`MAX_REQUESTS`] requests, one at a time, never retried, each within
//! `probe.request_timeout_secs` and all within `probe.deadline_secs`, spaced by the endpoint's
//! rate limit; one probe per endpoint at a time and at most one per `probe.min_interval_secs`.

pub mod plan;
pub mod report;

use crate::clock::SharedClock;
use crate::crypto::SecretBox;
use crate::dispatch::endpoints::{Admit, EndpointCache, RateLimiter};
use hookwarden_egress::ErrorClass;
use hookwarden_egress::client::{ClientIdentity, GuardedClient, OutboundRequest, SendError};
use hookwarden_signatures::Scheme;
use hookwarden_store::{Millis, ProbeRecord, ProbeStore, StoreError};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use plan::{Keys, Planned};
use report::{Answer, CaseKind, CaseResult, Expect, Grade, Observed, Report, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most requests one probe sends (every case, with all four schemes, plus replay and mTLS).
pub const MAX_REQUESTS: usize = 2 + 4 * CaseKind::PER_SCHEME.len() + 2;
/// Below this much time left, a request is not sent.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(100);
/// Response bytes kept per case.
const EXCERPT_BYTES: usize = 200;

/// `[probe]`: the receiver security probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Each probe request's time limit (at most `delivery.request_timeout_secs`).
    pub request_timeout_secs: u64,
    /// The whole probe's time limit: cases not sent by then are inconclusive. The API answers
    /// when the probe is done, so a probe run through it also ends half a second before
    /// `server.request_timeout_secs`.
    pub deadline_secs: u64,
    /// One probe per endpoint at most this often (`429 PROBE_RATE_LIMITED` otherwise).
    pub min_interval_secs: u64,
    /// Reports kept per endpoint (the oldest go).
    pub keep_reports: usize,
    /// How long a secret retired by a rotation is kept (sealed) after its grace ends, so that
    /// probes can check the receiver no longer accepts it. Deleted with the endpoint.
    pub retired_secret_days: u64,
    /// Probe automatically when an endpoint is created, its URL changes or its secret rotates.
    pub automatic: bool,
    /// Probe every enabled endpoint at least this often (hours; 0: never on a schedule).
    pub schedule_hours: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            request_timeout_secs: 5,
            deadline_secs: 20,
            min_interval_secs: 60,
            keep_reports: 50,
            retired_secret_days: 30,
            automatic: false,
            schedule_hours: 0,
        }
    }
}

impl ProbeConfig {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let err = |m: String| Err(crate::config::ConfigError(m));
        if !(1..=60).contains(&self.request_timeout_secs) {
            return err("probe.request_timeout_secs must be 1..=60".into());
        }
        if !(1..=600).contains(&self.deadline_secs) {
            return err("probe.deadline_secs must be 1..=600".into());
        }
        if self.min_interval_secs > 86_400 {
            return err("probe.min_interval_secs must be at most 86400".into());
        }
        if !(1..=1000).contains(&self.keep_reports) {
            return err("probe.keep_reports must be 1..=1000".into());
        }
        if self.retired_secret_days > 3650 {
            return err("probe.retired_secret_days must be at most 3650".into());
        }
        if self.schedule_hours > 24 * 366 {
            return err("probe.schedule_hours must be at most 8784".into());
        }
        Ok(())
    }
}

/// What a probe is sent to and signed with.
pub struct Target {
    pub url: String,
    pub schemes: Vec<Scheme>,
    /// Active secrets, newest first.
    pub secrets: Vec<String>,
    /// The secret retired last (grace ended), if one is kept.
    pub retired: Option<String>,
    /// The endpoint's custom headers.
    pub headers: HeaderMap,
    pub identity: Option<Arc<ClientIdentity>>,
    pub limiter: Option<Arc<RateLimiter>>,
}

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct RunLimits {
    pub request_timeout: Duration,
    pub deadline: Duration,
    pub user_agent: HeaderValue,
}

/// Sends the probe to `target` and judges the answers. `now_secs`: the signing clock.
pub async fn execute(
    client: &GuardedClient,
    target: &Target,
    limits: &RunLimits,
    probe_id: &str,
    now_secs: i64,
) -> Report {
    let started = Instant::now();
    let keys = Keys {
        active: &target.secrets,
        retired: target.retired.as_deref(),
    };
    let schemes: Vec<String> = target
        .schemes
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let planned = plan::plan(
        probe_id,
        &target.schemes,
        &keys,
        target.identity.is_some(),
        now_secs,
        &mut plan::OsRandom,
    );
    let (planned, not_applicable) = match planned {
        Ok(p) => p,
        Err(e) => {
            return Report {
                grade: Grade::Inconclusive,
                summary: format!("nothing was sent: the endpoint's secrets cannot sign ({e})"),
                url: target.url.clone(),
                schemes,
                requests_sent: 0,
                duration_ms: 0,
                cases: Vec::new(),
                not_applicable: Vec::new(),
            };
        }
    };
    let mut cases = Vec::with_capacity(planned.len());
    let mut sent = 0u32;
    let mut stop: Option<&'static str> = None;
    for p in &planned {
        let expected = if p.kind == CaseKind::Valid {
            Expect::Accept
        } else {
            Expect::Refuse
        };
        let (observed, answer) = match stop {
            Some(why) => (
                Observed {
                    error: Some("NOT_SENT".into()),
                    ..Observed::default()
                },
                Answer::Unknown(why),
            ),
            None if limits.deadline.saturating_sub(started.elapsed()) < MIN_REQUEST_TIME => {
                stop = Some("not sent: the probe's time limit was reached");
                (
                    Observed {
                        error: Some("NOT_SENT".into()),
                        ..Observed::default()
                    },
                    Answer::Unknown("not sent: the probe's time limit was reached"),
                )
            }
            None => {
                pace(target.limiter.as_deref(), started, limits.deadline).await;
                sent += 1;
                // Never past the deadline, whatever the request's own limit.
                let left = limits.deadline.saturating_sub(started.elapsed());
                let timeout = limits.request_timeout.min(left).max(MIN_REQUEST_TIME);
                send_one(client, target, timeout, &limits.user_agent, probe_id, p).await
            }
        };
        let (verdict, reason) = report::judge(p.kind, answer, &observed);
        let scheme = p.scheme.map(|s| s.as_str().to_owned());
        let advice = (verdict == Verdict::Fail).then(|| p.kind.advice(scheme.as_deref()));
        if p.kind == CaseKind::Valid && verdict != Verdict::Pass && stop.is_none() {
            // The rest would mean nothing: not sent.
            stop = Some("not sent: the correctly signed request was not accepted");
        }
        metrics::counter!(
            "hookwarden_probe_cases_total",
            "case" => p.kind.as_str(),
            "verdict" => verdict_str(verdict),
        )
        .increment(1);
        cases.push(CaseResult {
            case: p.kind,
            scheme,
            description: p.kind.description().into(),
            expected,
            observed,
            verdict,
            reason,
            advice,
        });
    }
    let (grade, summary) = report::grade(&cases);
    metrics::counter!("hookwarden_probes_total", "grade" => grade.as_str()).increment(1);
    Report {
        grade,
        summary,
        url: target.url.clone(),
        schemes,
        requests_sent: sent,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cases,
        not_applicable,
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Waits for the endpoint's rate limit (never past the deadline).
async fn pace(limiter: Option<&RateLimiter>, started: Instant, deadline: Duration) {
    let Some(l) = limiter else { return };
    let left = deadline.saturating_sub(started.elapsed());
    let wait = match l.admit(Instant::now(), left) {
        Admit::Wait(d) | Admit::Defer(d) => d,
    };
    tokio::time::sleep(wait.min(left)).await;
}

async fn send_one(
    client: &GuardedClient,
    target: &Target,
    timeout: Duration,
    user_agent: &HeaderValue,
    probe_id: &str,
    p: &Planned,
) -> (Observed, Answer) {
    let mut headers = target.headers.clone();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::USER_AGENT, user_agent.clone());
    headers.insert(
        HeaderName::from_static("x-hookwarden-event-type"),
        HeaderValue::from_static("hookwarden.probe"),
    );
    if let Ok(v) = HeaderValue::from_str(probe_id) {
        headers.insert(HeaderName::from_static("x-hookwarden-probe-id"), v);
    }
    if let Ok(v) = HeaderValue::from_str(p.kind.as_str()) {
        headers.insert(HeaderName::from_static("x-hookwarden-probe-case"), v);
    }
    for (name, value) in &p.signature {
        // An empty value is a valid header value: the empty-list case sends one.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let req = OutboundRequest {
        url: target.url.clone(),
        method: Method::POST,
        headers,
        body: p.body.clone().into(),
        identity: if p.with_identity {
            target.identity.clone()
        } else {
            None
        },
        timeout: Some(timeout),
    };
    let started = Instant::now();
    let result = client.send(req).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(resp) => {
            let keep = resp.body.len().min(EXCERPT_BYTES);
            let excerpt = (keep > 0).then(|| {
                let mut t = String::from_utf8_lossy(&resp.body[..keep]).into_owned();
                if resp.body.len() > keep || resp.body_truncated {
                    t.push('…');
                }
                t
            });
            let status = resp.status.as_u16();
            let answer = if resp.status.is_success() {
                Answer::Accepted
            } else if status == 429 {
                Answer::Unknown(
                    "the receiver rate-limited the probe, which says nothing about the request",
                )
            } else {
                Answer::Refused
            };
            (
                Observed {
                    status: Some(status),
                    error: None,
                    body_excerpt: excerpt,
                    duration_ms,
                },
                answer,
            )
        }
        Err(e) => {
            let answer = error_answer(&e);
            (
                Observed {
                    status: None,
                    error: Some(e.code().to_owned()),
                    body_excerpt: None,
                    duration_ms,
                },
                answer,
            )
        }
    }
}

/// A connection the receiver closed or a TLS handshake it refused is a refusal; not reaching it
/// at all says nothing.
fn error_answer(e: &SendError) -> Answer {
    match e.class() {
        ErrorClass::Protocol | ErrorClass::Tls => Answer::Refused,
        ErrorClass::Timeout => Answer::Unknown("no answer within the probe's request time limit"),
        ErrorClass::Policy => {
            Answer::Unknown("refused by Hookwarden's egress policy: nothing was sent")
        }
        ErrorClass::Dns | ErrorClass::Connect => {
            Answer::Unknown("the receiver could not be reached")
        }
        _ => Answer::Unknown("the request could not be sent"),
    }
}

/// Why a probe could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no such endpoint")]
    NotFound,
    #[error("a probe of this endpoint is running")]
    InProgress,
    #[error("this endpoint was probed less than {min_interval_secs} s ago")]
    RateLimited {
        retry_after_secs: u64,
        min_interval_secs: u64,
    },
    #[error("the endpoint cannot be used: {0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What started a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    EndpointCreated,
    UrlChanged,
    SecretRotated,
    Scheduled,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::EndpointCreated => "endpoint_created",
            Trigger::UrlChanged => "url_changed",
            Trigger::SecretRotated => "secret_rotated",
            Trigger::Scheduled => "scheduled",
        }
    }
}

/// A stored probe: its report and what it was.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: ProbeRecord,
    pub report: Report,
}

/// Probes registered endpoints and keeps their reports.
pub struct Prober {
    pub cfg: ProbeConfig,
    client: GuardedClient,
    probes: Arc<dyn ProbeStore>,
    endpoints: Arc<EndpointCache>,
    secrets: SecretBox,
    clock: SharedClock,
    user_agent: HeaderValue,
    delivery_timeout: Duration,
    server_request_timeout: Duration,
    running: Mutex<HashSet<String>>,
    alerts: Option<Arc<crate::alerts::Alerts>>,
    dispatcher: std::sync::Weak<crate::dispatch::Dispatcher>,
}

/// Removes the endpoint from the running set when the probe ends (or its task is dropped).
struct Running<'a>(&'a Prober, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.running.lock() {
            r.remove(&self.1);
        }
    }
}

/// Everything a [`Prober`] is made of.
pub struct ProberParts {
    pub cfg: ProbeConfig,
    pub client: GuardedClient,
    pub probes: Arc<dyn ProbeStore>,
    pub endpoints: Arc<EndpointCache>,
    pub secrets: SecretBox,
    pub clock: SharedClock,
    pub user_agent: String,
    pub delivery_timeout: Duration,
    /// `server.request_timeout_secs`: a probe through the API ends before it.
    pub server_request_timeout: Duration,
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    pub dispatcher: std::sync::Weak<crate::dispatch::Dispatcher>,
}

impl Prober {
    pub fn new(p: ProberParts) -> Prober {
        Prober {
            user_agent: HeaderValue::from_str(&p.user_agent)
                .unwrap_or(HeaderValue::from_static("Hookwarden")),
            cfg: p.cfg,
            client: p.client,
            probes: p.probes,
            endpoints: p.endpoints,
            secrets: p.secrets,
            clock: p.clock,
            delivery_timeout: p.delivery_timeout,
            server_request_timeout: p.server_request_timeout,
            running: Mutex::new(HashSet::new()),
            alerts: p.alerts,
            dispatcher: p.dispatcher,
        }
    }

    fn limits(&self) -> RunLimits {
        // The API answers when the probe is done: end it before the request's own time limit.
        let answer_by = self
            .server_request_timeout
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(500));
        RunLimits {
            request_timeout: Duration::from_secs(self.cfg.request_timeout_secs)
                .min(self.delivery_timeout),
            deadline: Duration::from_secs(self.cfg.deadline_secs).min(answer_by),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The endpoint's reports, newest first.
    pub async fn list(
        &self,
        endpoint_id: &str,
        page: hookwarden_store::Page,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let listed = self.probes.list_probes(endpoint_id, page).await?;
        let more = listed.more;
        let rows = listed
            .into_rows()
            .into_iter()
            .filter_map(|record| {
                let report = serde_json::from_str(&record.report).ok()?;
                Some(Stored { record, report })
            })
            .collect();
        Ok((rows, more))
    }

    /// Probes endpoint `id` now and stores the report.
    pub async fn probe_endpoint(&self, id: &str, trigger: Trigger) -> Result<Stored, ProbeError> {
        let _running = {
            let mut r = self.running.lock().map_err(|_| ProbeError::InProgress)?;
            if !r.insert(id.to_owned()) {
                return Err(ProbeError::InProgress);
            }
            Running(self, id.to_owned())
        };
        let now = self.clock.now_millis();
        let last = self
            .probes
            .list_probes(
                id,
                hookwarden_store::Page {
                    before: None,
                    limit: 1,
                    max_bytes: usize::MAX,
                },
            )
            .await?
            .into_rows()
            .into_iter()
            .next();
        let min =
            i64::try_from(self.cfg.min_interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if let Some(last) = &last
            && now < last.created_at.saturating_add(min)
        {
            let left = last.created_at.saturating_add(min) - now;
            return Err(ProbeError::RateLimited {
                retry_after_secs: u64::try_from((left + 999) / 1000).unwrap_or(1).max(1),
                min_interval_secs: self.cfg.min_interval_secs,
            });
        }
        let rt = match self.endpoints.get(id).await {
            Ok(Some(rt)) => rt,
            Ok(None) => return Err(ProbeError::NotFound),
            Err(crate::dispatch::endpoints::LoadError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ProbeError::Unusable(e.to_string())),
        };
        let keep_ms = i64::try_from(self.cfg.retired_secret_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        let retired = match self
            .probes
            .retired_secret(id, now, now.saturating_sub(keep_ms))
            .await?
        {
            Some(r) => Some(
                self.secrets
                    .open(&r.secret)
                    .map_err(|e| ProbeError::Unusable(e.to_string()))?,
            ),
            None => None,
        };
        let target = Target {
            url: rt.endpoint.url.clone(),
            schemes: rt.schemes.clone(),
            secrets: rt.secrets.clone(),
            retired,
            headers: rt.headers.clone(),
            identity: rt.identity.clone(),
            limiter: rt.limiter.clone(),
        };
        let probe_id = crate::crypto::new_id("prb");
        let report = execute(&self.client, &target, &self.limits(), &probe_id, now / 1000).await;
        let record = ProbeRecord {
            id: probe_id,
            endpoint_id: id.to_owned(),
            created_at: now,
            trigger: trigger.as_str().to_owned(),
            grade: report.grade.as_str().to_owned(),
            report: serde_json::to_string(&report).unwrap_or_else(|_| "{}".into()),
        };
        match self
            .probes
            .insert_probe(record.clone(), self.cfg.keep_reports)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(ProbeError::NotFound),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            endpoint_id = id,
            probe_id = %record.id,
            grade = report.grade.as_str(),
            trigger = trigger.as_str(),
            requests = report.requests_sent,
            "receiver probe"
        );
        if let Some(prev) = last.as_ref().and_then(|l| Grade::parse(&l.grade))
            && report.grade.dropped_from(prev)
        {
            self.grade_dropped(id, prev, &record, &report);
        }
        Ok(Stored { record, report })
    }

    /// A grade that drops: an operational event (`endpoint.probe_grade_dropped`) and a usage
    /// alert.
    fn grade_dropped(&self, id: &str, previous: Grade, record: &ProbeRecord, report: &Report) {
        let failed: Vec<&str> = report
            .cases
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.case.as_str())
            .collect();
        let payload = serde_json::json!({
            "endpoint_id": id,
            "probe_id": record.id,
            "previous_grade": previous.as_str(),
            "grade": report.grade.as_str(),
            "summary": report.summary,
            "failed_cases": failed,
        });
        let alert = crate::alerts::Alert {
            event_type: "endpoint.probe_grade_dropped",
            kind: "probe_grade_dropped",
            subject: id.to_owned(),
            payload,
        };
        match &self.alerts {
            Some(a) => a.raise(alert),
            None => {
                // Alerts are off: still the operational event.
                if let Some(d) = self.dispatcher.upgrade() {
                    let ev = hookwarden_store::NewEvent {
                        id: crate::crypto::new_id("evt"),
                        event_type: alert.event_type.into(),
                        payload: alert.payload.to_string(),
                        idempotency_key: None,
                        created_at: self.clock.now_millis(),
                        source_id: None,
                        only_endpoints: None,
                    };
                    tokio::spawn(async move {
                        if let Err(e) = d.publish(ev).await {
                            tracing::error!(error = %e, "could not emit endpoint.probe_grade_dropped");
                        }
                    });
                }
            }
        }
    }

    /// After a change (creation, new URL, rotation): probes in the background when
    /// `probe.automatic` is on, once the minimum interval allows.
    pub fn changed(self: &Arc<Self>, id: &str, trigger: Trigger) {
        if !self.cfg.automatic {
            return;
        }
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            for _ in 0..2 {
                match me.probe_endpoint(&id, trigger).await {
                    Err(ProbeError::RateLimited {
                        retry_after_secs, ..
                    }) => {
                        tokio::time::sleep(Duration::from_secs(retry_after_secs)).await;
                    }
                    Err(ProbeError::InProgress) => {
                        tokio::time::sleep(Duration::from_secs(me.cfg.deadline_secs)).await;
                    }
                    Err(e) => {
                        tracing::warn!(endpoint_id = %id, error = %e, "automatic probe not run");
                        return;
                    }
                    Ok(_) => return,
                }
            }
        });
    }

    /// The upkeep loop: purges secrets kept past `retired_secret_days` and, with
    /// `schedule_hours`, probes endpoints not probed for that long (one at a time).
    pub fn spawn_upkeep(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.upkeep().await;
            }
        })
    }

    async fn upkeep(&self) {
        let now = self.clock.now_millis();
        let keep_ms = i64::try_from(self.cfg.retired_secret_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        for _ in 0..1000 {
            match self
                .probes
                .purge_retired_secrets(now.saturating_sub(keep_ms), crate::retention::BATCH)
                .await
            {
                Ok(0) => break,
                Ok(n) => tracing::debug!(secrets = n, "retired secrets purged"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge retired secrets");
                    break;
                }
            }
        }
        if self.cfg.schedule_hours == 0 {
            return;
        }
        let since: Millis = now.saturating_sub(
            i64::try_from(self.cfg.schedule_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
        );
        let due = match self.probes.endpoints_due_for_probe(since, 100).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not list endpoints due for a probe");
                return;
            }
        };
        for id in due {
            if let Err(e) = self.probe_endpoint(&id, Trigger::Scheduled).await {
                tracing::debug!(endpoint_id = %id, error = %e, "scheduled probe not run");
            }
        }
    }
}
