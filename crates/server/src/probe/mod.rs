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
use hookwarden_store::{Claim, Millis, ProbeRecord, ProbeStore, SecretKind, StoreError};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use report::{Answer, CaseKind, CaseResult, Expect, Grade, Observed, Report, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most requests one probe sends (valid, replay, no signature, every per-scheme case with
/// every scheme, no client certificate).
pub const MAX_REQUESTS: usize = 3 + Scheme::ALL.len() * CaseKind::PER_SCHEME.len() + 1;
/// Below this much time left, a request is not sent.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(100);
/// The longest probe: every request is signed when it is sent, and a stale or future timestamp
/// (10 minutes off) must stay outside a 5-minute tolerance until the last one.
pub const MAX_DEADLINE_SECS: u64 = 240;
/// Response bytes kept per case (only for answers that were not the expected one).
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
        if self.min_interval_secs > 86_400 {
            return err("probe.min_interval_secs must be at most 86400".into());
        }
        if !(1..=200).contains(&self.keep_reports) {
            return err("probe.keep_reports must be 1..=200".into());
        }
        if !(1..=MAX_DEADLINE_SECS).contains(&self.deadline_secs) {
            return err(format!(
                "probe.deadline_secs must be 1..={MAX_DEADLINE_SECS}"
            ));
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

/// What a probe is sent to and signed with (no `Debug`: it holds opened secrets).
pub struct Target {
    pub url: String,
    pub schemes: Vec<Scheme>,
    /// Active HMAC secrets, newest first.
    pub secrets: Vec<String>,
    /// The HMAC secret retired last (grace ended), if one is kept.
    pub retired: Option<String>,
    /// Active ed25519 keys (`whsk_`), newest first.
    pub signing_keys: Vec<String>,
    /// The ed25519 key retired last.
    pub retired_signing_key: Option<String>,
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

/// Sends the probe to `target` and judges the answers. `now_secs` is read as each request is
/// signed (so no timestamp ages while the probe runs).
pub async fn execute(
    client: &GuardedClient,
    target: &Target,
    limits: &RunLimits,
    probe_id: &str,
    now_secs: &(dyn Fn() -> i64 + Send + Sync),
) -> Report {
    let started = Instant::now();
    let keys = plan::Keys {
        active: &target.secrets,
        retired: target.retired.as_deref(),
        active_ed25519: &target.signing_keys,
        retired_ed25519: target.retired_signing_key.as_deref(),
    };
    let schemes: Vec<String> = target
        .schemes
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let (cases, not_applicable) = plan::cases(&target.schemes, &keys, target.identity.is_some());
    let mut rnd = plan::OsRandom;
    let order = plan::send_order(&cases, &mut rnd);
    let mut results: Vec<Option<CaseResult>> = vec![None; cases.len()];
    let mut valid: Option<plan::Built> = None;
    let mut sent = 0u32;
    let mut stop: Option<&'static str> = None;
    for (seq, &i) in order.iter().enumerate() {
        let case = &cases[i];
        if stop.is_none() && limits.deadline.saturating_sub(started.elapsed()) < MIN_REQUEST_TIME {
            stop = Some("not sent: the probe's time limit was reached");
        }
        if stop.is_none() && !pace(target.limiter.as_deref(), started, limits.deadline).await {
            stop = Some(
                "not sent: the endpoint's rate limit leaves no room before the probe's time limit",
            );
        }
        let (observed, answer) = match stop {
            Some(why) => (not_sent(), Answer::Unknown(why)),
            None => {
                let built = if case.kind == CaseKind::Replay {
                    valid
                        .clone()
                        .ok_or(hookwarden_signatures::SignError::NoSecrets)
                } else {
                    plan::build(
                        case,
                        probe_id,
                        seq,
                        &target.schemes,
                        &keys,
                        now_secs(),
                        &mut rnd,
                    )
                };
                match built {
                    Ok(b) => {
                        if case.kind == CaseKind::Valid {
                            valid = Some(b.clone());
                        }
                        sent += 1;
                        // Never past the deadline, whatever the request's own limit.
                        let left = limits.deadline.saturating_sub(started.elapsed());
                        let timeout = limits.request_timeout.min(left).max(MIN_REQUEST_TIME);
                        let with_identity = case.kind != CaseKind::NoClientCertificate;
                        send_one(
                            client,
                            target,
                            timeout,
                            &limits.user_agent,
                            probe_id,
                            &b,
                            with_identity,
                            case.kind,
                        )
                        .await
                    }
                    Err(e) => (
                        Observed {
                            error: Some("NOT_SIGNED".into()),
                            ..Observed::default()
                        },
                        Answer::Unknown(
                            if matches!(e, hookwarden_signatures::SignError::NoSecrets) {
                                "not sent: the valid request was not sent"
                            } else {
                                "not sent: the endpoint's keys cannot sign"
                            },
                        ),
                    ),
                }
            }
        };
        let (verdict, reason) = report::judge(case.kind, answer, &observed);
        if stop.is_none() {
            if case.kind == CaseKind::Valid && verdict != Verdict::Pass {
                stop = Some("not sent: the correctly signed request was not accepted");
            } else if matches!(answer, Answer::SlowDown) {
                stop = Some("not sent: the receiver asked to slow down or was unavailable");
            }
        }
        let scheme = case.scheme.map(|s| s.as_str().to_owned());
        let advice = (verdict == Verdict::Fail).then(|| case.kind.advice(scheme.as_deref()));
        metrics::counter!(
            "hookwarden_probe_cases_total",
            "case" => case.kind.as_str(),
            "verdict" => verdict_str(verdict),
        )
        .increment(1);
        let mut observed = observed;
        if verdict == Verdict::Pass {
            // The expected answer needs no excerpt: reports stay small.
            observed.body_excerpt = None;
        }
        results[i] = Some(CaseResult {
            case: case.kind,
            scheme,
            description: case.kind.description().into(),
            expected: if case.kind == CaseKind::Valid {
                Expect::Accept
            } else {
                Expect::Refuse
            },
            observed,
            verdict,
            reason,
            advice,
        });
    }
    let cases: Vec<CaseResult> = results.into_iter().flatten().collect();
    let (grade, summary) = report::grade(&cases);
    let accepts_everything = report::accepts_everything(&cases);
    metrics::counter!("hookwarden_probes_total", "grade" => grade.as_str()).increment(1);
    Report {
        grade,
        summary,
        accepts_everything,
        url: target.url.clone(),
        schemes,
        requests_sent: sent,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cases,
        not_applicable,
    }
}

fn not_sent() -> Observed {
    Observed {
        error: Some("NOT_SENT".into()),
        ..Observed::default()
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Waits for the endpoint's rate limit; false when the next slot is past the deadline (nothing
/// is reserved then).
async fn pace(limiter: Option<&RateLimiter>, started: Instant, deadline: Duration) -> bool {
    let Some(l) = limiter else { return true };
    let left = deadline.saturating_sub(started.elapsed());
    match l.admit(Instant::now(), left.saturating_sub(MIN_REQUEST_TIME)) {
        Admit::Wait(d) => {
            tokio::time::sleep(d).await;
            true
        }
        Admit::Defer(_) => false,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts, passed once"
)]
async fn send_one(
    client: &GuardedClient,
    target: &Target,
    timeout: Duration,
    user_agent: &HeaderValue,
    probe_id: &str,
    b: &plan::Built,
    with_identity: bool,
    kind: CaseKind,
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
    // An empty value is a valid header value: the empty-list case sends one.
    if crate::dispatch::add_signature_headers(&mut headers, b.signature.clone()).is_err() {
        return (
            Observed {
                error: Some("NOT_SIGNED".into()),
                ..Observed::default()
            },
            Answer::Unknown("not sent: a signature is not a valid header value"),
        );
    }
    let req = OutboundRequest {
        url: target.url.clone(),
        method: Method::POST,
        headers,
        body: b.body.clone().into(),
        identity: if with_identity {
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
            (
                Observed {
                    status: Some(resp.status.as_u16()),
                    error: None,
                    body_excerpt: excerpt,
                    duration_ms,
                },
                report::status_answer(resp.status.as_u16()),
            )
        }
        Err(e) => (
            Observed {
                status: None,
                error: Some(e.code().to_owned()),
                body_excerpt: None,
                duration_ms,
            },
            error_answer(&e, kind),
        ),
    }
}

/// A connection the receiver closed after reading the request, or (for the request without the
/// client certificate) a handshake it refused, is a refusal; anything else says nothing.
fn error_answer(e: &SendError, kind: CaseKind) -> Answer {
    match (e.class(), e.code()) {
        (ErrorClass::Protocol, "CONNECTION_CLOSED") => Answer::Refused,
        (ErrorClass::Tls, "TLS_CLIENT_CERT_REJECTED" | "TLS_HANDSHAKE_FAILED")
            if kind == CaseKind::NoClientCertificate =>
        {
            Answer::Refused
        }
        (ErrorClass::Tls, _) => {
            Answer::Unknown("the TLS handshake failed, which says nothing about the request")
        }
        (ErrorClass::Timeout, _) => {
            Answer::Unknown("no answer within the probe's request time limit")
        }
        (ErrorClass::Policy, _) => {
            Answer::Unknown("refused by Hookwarden's egress policy: nothing was sent")
        }
        (ErrorClass::Dns | ErrorClass::Connect, _) => {
            Answer::Unknown("the receiver could not be reached")
        }
        _ => Answer::Unknown("the request could not be completed"),
    }
}

/// Why a probe could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no such endpoint")]
    NotFound,
    #[error("the endpoint is disabled: enable it to probe its receiver")]
    Disabled,
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
    /// Endpoints with a probe running in this process.
    running: Mutex<HashSet<String>>,
    /// Endpoints with an automatic probe waiting in this process (coalesced).
    pending: Mutex<HashSet<String>>,
    alerts: Option<Arc<crate::alerts::Alerts>>,
    dispatcher: std::sync::Weak<crate::dispatch::Dispatcher>,
}

/// Removes the endpoint from a set when dropped.
struct Mark(Arc<Prober>, String, fn(&Prober) -> &Mutex<HashSet<String>>);

impl Mark {
    /// Marks `id` in the set, unless it is there already.
    fn take(
        p: &Arc<Prober>,
        id: &str,
        set: fn(&Prober) -> &Mutex<HashSet<String>>,
    ) -> Option<Mark> {
        let mut s = set(p).lock().ok()?;
        s.insert(id.to_owned())
            .then(|| Mark(p.clone(), id.to_owned(), set))
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        if let Ok(mut s) = (self.2)(&self.0).lock() {
            s.remove(&self.1);
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
            pending: Mutex::new(HashSet::new()),
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

    /// The endpoint's finished reports, newest first.
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

    /// Probes endpoint `id` now and stores the report. The probe runs in a task of its own: a
    /// caller that goes away (a closed connection) neither stops it nor loses its report, and
    /// it was recorded as running before anything was sent, so the minimum interval holds.
    pub async fn probe_endpoint(
        self: &Arc<Self>,
        id: &str,
        trigger: Trigger,
    ) -> Result<Stored, ProbeError> {
        let Some(running) = Mark::take(self, id, |p| &p.running) else {
            return Err(ProbeError::InProgress);
        };
        let rt = match self.endpoints.get(id).await {
            Ok(Some(rt)) => rt,
            Ok(None) => return Err(ProbeError::NotFound),
            Err(crate::dispatch::endpoints::LoadError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ProbeError::Unusable(e.to_string())),
        };
        if !rt.endpoint.enabled {
            return Err(ProbeError::Disabled);
        }
        let now = self.clock.now_millis();
        let keep_ms = i64::try_from(self.cfg.retired_secret_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        let retired = self
            .retired(id, SecretKind::Hmac, now, keep_ms, &rt.secrets)
            .await?;
        let retired_signing_key = self
            .retired(id, SecretKind::Ed25519, now, keep_ms, &rt.signing_keys)
            .await?;
        let probe_id = crate::crypto::new_id("prb");
        let claim = ProbeRecord {
            id: probe_id.clone(),
            endpoint_id: id.to_owned(),
            created_at: now,
            trigger: trigger.as_str().to_owned(),
            grade: hookwarden_store::RUNNING.to_owned(),
            report: String::new(),
        };
        let min =
            i64::try_from(self.cfg.min_interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        match self
            .probes
            .claim_probe(claim.clone(), min, self.cfg.keep_reports)
            .await
        {
            Ok(Claim::Claimed) => {}
            Ok(Claim::TooSoon { last_at }) => {
                let left = last_at.saturating_add(min).saturating_sub(now);
                return Err(ProbeError::RateLimited {
                    retry_after_secs: u64::try_from((left + 999) / 1000).unwrap_or(1).max(1),
                    min_interval_secs: self.cfg.min_interval_secs,
                });
            }
            Err(StoreError::NotFound) => return Err(ProbeError::NotFound),
            Err(e) => return Err(e.into()),
        }
        let target = Target {
            url: rt.endpoint.url.clone(),
            schemes: rt.schemes.clone(),
            secrets: rt.secrets.clone(),
            retired,
            signing_keys: rt.signing_keys.clone(),
            retired_signing_key,
            headers: rt.headers.clone(),
            identity: rt.identity.clone(),
            limiter: rt.limiter.clone(),
        };
        let me = self.clone();
        let task = tokio::spawn(async move {
            let _running = running;
            let clock = me.clock.clone();
            let now_secs = move || clock.now_millis() / 1000;
            let report = execute(&me.client, &target, &me.limits(), &probe_id, &now_secs).await;
            let mut record = claim;
            record.grade = report.grade.as_str().to_owned();
            record.report = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
            if let Err(e) = me
                .probes
                .finish_probe(&record.id, &record.grade, record.report.clone())
                .await
            {
                tracing::warn!(probe_id = %record.id, error = %e, "could not store a probe report");
            }
            tracing::info!(
                endpoint_id = %record.endpoint_id,
                probe_id = %record.id,
                grade = report.grade.as_str(),
                trigger = %record.trigger,
                requests = report.requests_sent,
                "receiver probe"
            );
            me.check_drop(&record, &report).await;
            Stored { record, report }
        });
        task.await
            .map_err(|e| ProbeError::Unusable(format!("the probe stopped: {e}")))
    }

    /// The retired secret of `kind` a probe may sign with: kept, opened, and not equal to an
    /// active one (a custom rotation may reuse a value).
    async fn retired(
        &self,
        id: &str,
        kind: SecretKind,
        now: Millis,
        keep_ms: i64,
        active: &[String],
    ) -> Result<Option<String>, ProbeError> {
        let Some(r) = self
            .probes
            .retired_secret(id, kind, now, now.saturating_sub(keep_ms))
            .await?
        else {
            return Ok(None);
        };
        let plain = self
            .secrets
            .open(&r.secret)
            .map_err(|e| ProbeError::Unusable(e.to_string()))?;
        let reused = active.iter().any(|a| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                a.as_bytes(),
                plain.as_bytes(),
            ))
        });
        Ok((!reused).then_some(plain))
    }

    /// Compares with the newest earlier report that has a comparable grade (an accept-all
    /// receiver counts as F here: it is the worst regression, although its grade says it may
    /// verify later) and raises `endpoint.probe_grade_dropped` when it is lower.
    async fn check_drop(&self, record: &ProbeRecord, report: &Report) {
        let Some(now_rank) = drop_rank(report) else {
            return;
        };
        let page = hookwarden_store::Page {
            before: Some(record.id.clone()),
            limit: 20,
            max_bytes: usize::MAX,
        };
        let Ok((earlier, _)) = self.list(&record.endpoint_id, page).await else {
            return;
        };
        let Some((prev_grade, prev_rank)) = earlier
            .iter()
            .find_map(|s| drop_rank(&s.report).map(|r| (s.report.grade, r)))
        else {
            return;
        };
        if now_rank < prev_rank {
            self.grade_dropped(&record.endpoint_id, prev_grade, record, report);
        }
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
            "accepts_everything": report.accepts_everything,
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
    /// `probe.automatic` is on, once the minimum interval allows. One waiting probe per endpoint:
    /// further changes while it waits are covered by it.
    pub fn changed(self: &Arc<Self>, id: &str, trigger: Trigger) {
        if !self.cfg.automatic {
            return;
        }
        let Some(pending) = Mark::take(self, id, |p| &p.pending) else {
            return;
        };
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let _pending = pending;
            for _ in 0..3 {
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
                        tracing::debug!(endpoint_id = %id, error = %e, "automatic probe not run");
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

    async fn upkeep(self: &Arc<Self>) {
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
            // Another instance may have claimed it meanwhile: the claim refuses then.
            if let Err(e) = self.probe_endpoint(&id, Trigger::Scheduled).await {
                tracing::debug!(endpoint_id = %id, error = %e, "scheduled probe not run");
            }
        }
    }
}

/// A report's rank for drop detection: its grade's, or F's for a receiver that accepted every
/// request; `None` when it cannot be compared.
fn drop_rank(r: &Report) -> Option<u8> {
    r.grade.rank().or_else(|| r.accepts_everything.then_some(1))
}
