//! Prometheus metrics. Counters and histograms are recorded where things happen; the figures
//! that need a database query (the due queue, the endpoints' circuit breakers) are refreshed when
//! `/metrics` is scraped, at most once per `metrics.refresh_interval_ms`, with queries whose cost
//! does not grow with the number of stored deliveries (see [`hookwarden_store::Store::queue_stats`]).
//!
//! Label cardinality: `endpoint_id` and `source` labels take one value per configured endpoint or
//! source (operators create them, clients cannot), and unknown inbound tokens share the `source`
//! value `unknown`. Attempt latency comes twice: `hookwarden_delivery_attempt_seconds`, fine
//! buckets, no endpoint label; and `hookwarden_endpoint_attempt_seconds{endpoint_id}`, four
//! coarse buckets (7 series per endpoint), so per-endpoint latency stays affordable with
//! thousands of endpoints.

use crate::state::AppState;
use hookwarden_egress::proxy::{METRICS_UPKEEP_INTERVAL, spawn_metrics_upkeep};
use hookwarden_store::{Endpoint, Page};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Buckets of the per-endpoint latency histogram (a full `Matcher` wins over the suffix one).
const ENDPOINT_BUCKETS: &[f64] = &[0.05, 0.25, 1.0, 5.0];
/// Buckets of the SQLite writes' latency, most of which is well under a millisecond.
const WRITE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The recorder `serve` installs (bucket bounds per histogram), not installed.
pub fn build() -> Option<(PrometheusRecorder, PrometheusHandle)> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
            ],
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("hookwarden_endpoint_attempt_seconds".into()),
            ENDPOINT_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full(hookwarden_store::sqlite::WRITE_SECONDS.into()),
            WRITE_BUCKETS,
        )
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    Some((recorder, handle))
}

/// Installs the global recorder once per process and starts its upkeep thread (see
/// [`spawn_metrics_upkeep`]); later calls (several servers in one test process) share it.
pub fn install() -> Option<PrometheusHandle> {
    static INSTALLED: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let (recorder, handle) = build()?;
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            spawn_metrics_upkeep(handle.clone(), METRICS_UPKEEP_INTERVAL);
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "hookwarden_events_published_total",
        "Events accepted by the API"
    );
    describe_counter!(
        "hookwarden_delivery_attempts_total",
        "Delivery attempts by endpoint and outcome (succeeded and failed are final, retrying \
         schedules another attempt)"
    );
    describe_histogram!(
        "hookwarden_endpoint_attempt_seconds",
        "Duration of every delivery attempt (errors included), by endpoint, in coarse buckets"
    );
    describe_counter!(
        "hookwarden_delivery_attempt_errors_total",
        "Failed delivery attempts by error class (http_status, dns, connect, tls, timeout, \
         policy, proxy, protocol, config, internal)"
    );
    describe_histogram!(
        "hookwarden_delivery_attempt_seconds",
        "Duration of delivery attempts that got an HTTP response"
    );
    describe_counter!(
        "hookwarden_deliveries_claimed_total",
        "Due deliveries claimed"
    );
    describe_counter!(
        "hookwarden_outcomes_recorded_total",
        "Delivery outcomes written"
    );
    describe_counter!(
        "hookwarden_circuit_breaker_trips_total",
        "Endpoints disabled by the circuit breaker"
    );
    describe_counter!(
        "hookwarden_deliveries_rate_deferred_total",
        "Deliveries deferred by an endpoint rate limit"
    );
    describe_counter!("hookwarden_api_auth_failures_total", "Refused API keys");
    describe_gauge!(
        "hookwarden_deliveries_due",
        "Deliveries due and not held by any dispatcher (counted up to metrics.max_due_count)"
    );
    describe_gauge!(
        "hookwarden_oldest_due_delivery_age_seconds",
        "Age of the oldest due delivery (0 when none is due)"
    );
    describe_gauge!(
        "hookwarden_deliveries_in_memory",
        "Deliveries held by this process"
    );
    describe_counter!(
        "hookwarden_inbound_requests_total",
        "Inbound webhook requests by source and outcome code (ACCEPTED, HANDSHAKE or the refusal \
         code)"
    );
    describe_histogram!(
        "hookwarden_inbound_latency_seconds",
        "Time to answer inbound webhook requests"
    );
    describe_counter!(
        "hookwarden_retention_deleted_total",
        "Rows deleted by the retention sweep, by table"
    );
    describe_counter!(
        "hookwarden_tls_certificate_reloads_total",
        "Listener certificate reloads by result (loaded, refused)"
    );
    describe_counter!(
        "hookwarden_tls_handshake_failures_total",
        "Failed TLS handshakes on the listener, by reason"
    );
    describe_counter!(
        "hookwarden_alerts_total",
        "Usage alerts raised, by kind (ip_not_allowed, spike, endpoint_failing)"
    );
    describe_counter!(
        "hookwarden_alerts_dropped_total",
        "Usage alerts not published because the alert queue was full"
    );
    describe_histogram!(
        hookwarden_store::sqlite::WRITE_SECONDS,
        "Writes to the embedded SQLite database: time from submission to the end of their \
         batch's transaction (queue, batch and commit)"
    );
    describe_counter!(
        hookwarden_store::sqlite::COMMITS_TOTAL,
        "Batches of writes committed together by the SQLite writer thread"
    );
    describe_gauge!(
        "hookwarden_metrics_refresh_errors",
        "1 when the last refresh of the database-backed gauges failed"
    );
}

/// The database-backed part of a scrape, computed at most once per refresh interval.
pub struct Scraper {
    interval: Duration,
    cached: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Scraper {
    pub fn new(interval: Duration) -> Scraper {
        Scraper {
            interval,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The exposition text: the recorder's metrics, then the per-endpoint breaker series.
    /// Concurrent scrapes wait for one refresh instead of each querying the database.
    pub async fn render(&self, state: &AppState, handle: &PrometheusHandle) -> String {
        let extra = {
            let mut cached = self.cached.lock().await;
            let fresh = cached
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < self.interval);
            if !fresh {
                let text = refresh(state).await;
                *cached = Some((Instant::now(), text));
            }
            cached.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
        };
        let mut out = handle.render();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&extra);
        out
    }
}

/// Updates the queue gauges and returns the per-endpoint series (rendered here rather than
/// through the recorder, so that deleted endpoints disappear from the output).
async fn refresh(state: &AppState) -> String {
    let m = &state.config.metrics;
    metrics::gauge!("hookwarden_deliveries_in_memory").set(state.dispatcher.load() as f64);
    let now = state.clock.now_millis();
    let mut failed = false;
    match state.store.queue_stats(now, m.max_due_count).await {
        Ok(q) => {
            metrics::gauge!("hookwarden_deliveries_due").set(q.due as f64);
            let age = q
                .oldest_due_at
                .map_or(0, |at| now.saturating_sub(at).max(0));
            metrics::gauge!("hookwarden_oldest_due_delivery_age_seconds").set(age as f64 / 1000.0);
        }
        Err(e) => {
            failed = true;
            tracing::warn!(error = %e, "metrics: queue figures unavailable");
        }
    }
    let cap = m.max_endpoint_series;
    let text = match endpoints_upto(state, cap + 1).await {
        Ok(mut eps) => {
            let truncated = eps.len() > cap;
            eps.truncate(cap);
            endpoint_series(&eps, truncated)
        }
        Err(e) => {
            failed = true;
            tracing::warn!(error = %e, "metrics: endpoint figures unavailable");
            String::new()
        }
    };
    metrics::gauge!("hookwarden_metrics_refresh_errors").set(if failed { 1.0 } else { 0.0 });
    text
}

/// Up to `want` endpoints, newest first, a page of at most 1000 per query.
async fn endpoints_upto(
    state: &AppState,
    want: usize,
) -> Result<Vec<Endpoint>, hookwarden_store::StoreError> {
    let mut out: Vec<Endpoint> = Vec::new();
    // Bounded: every round adds at least one endpoint or ends the loop.
    while out.len() < want {
        let limit = (want - out.len()).min(1000);
        let page = state
            .store
            .list_endpoints(
                Page::new(out.last().map(|e| e.id.clone()), limit)
                    .with_max_bytes(state.config.server.max_page_bytes),
            )
            .await?;
        let more = page.more && !page.is_empty();
        out.extend(page);
        if !more {
            break;
        }
    }
    Ok(out)
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// `hookwarden_endpoint_*` gauges, one series per endpoint.
pub fn endpoint_series(eps: &[Endpoint], truncated: bool) -> String {
    let mut out = String::with_capacity(64 + eps.len() * 220);
    type Family = (&'static str, &'static str, fn(&Endpoint) -> i64);
    let families: [Family; 3] = [
        (
            "hookwarden_endpoint_enabled",
            "1 when the endpoint receives deliveries, 0 when it is disabled",
            |e| i64::from(e.enabled),
        ),
        (
            "hookwarden_endpoint_circuit_open",
            "1 when the circuit breaker has disabled the endpoint, else 0",
            |e| i64::from(!e.enabled && e.disabled_reason.as_deref() == Some("circuit_breaker")),
        ),
        (
            "hookwarden_endpoint_consecutive_failures",
            "Consecutive failed attempts the circuit breaker has counted for the endpoint",
            |e| e.consecutive_failures,
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for e in eps {
            let _ = writeln!(
                out,
                "{name}{{endpoint_id=\"{}\"}} {}",
                label(&e.id),
                value(e)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP hookwarden_endpoint_series_truncated 1 when there are more endpoints than \
         metrics.max_endpoint_series (the newest ones are listed)"
    );
    let _ = writeln!(out, "# TYPE hookwarden_endpoint_series_truncated gauge");
    let _ = writeln!(
        out,
        "hookwarden_endpoint_series_truncated {}",
        i32::from(truncated)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, enabled: bool, reason: Option<&str>, failures: i64) -> Endpoint {
        Endpoint {
            id: id.into(),
            url: "https://x.example/".into(),
            description: String::new(),
            event_types: vec![],
            headers: Default::default(),
            developer_payload: None,
            signature_schemes: vec![],
            rate_limit_per_second: None,
            enabled,
            disabled_reason: reason.map(str::to_owned),
            disabled_at: None,
            client_certificate_id: None,
            retry_schedule: Vec::new(),
            filter: None,
            transformation: None,
            consecutive_failures: failures,
            failing_since: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn endpoint_series_render_each_state() {
        let text = endpoint_series(
            &[
                ep("ep_ok", true, None, 0),
                ep("ep_tripped", false, Some("circuit_breaker"), 20),
                ep("ep_manual", false, Some("maintenance"), 2),
                ep("ep_\"odd\\", true, None, 1),
            ],
            true,
        );
        for line in [
            "hookwarden_endpoint_enabled{endpoint_id=\"ep_ok\"} 1",
            "hookwarden_endpoint_circuit_open{endpoint_id=\"ep_ok\"} 0",
            "hookwarden_endpoint_enabled{endpoint_id=\"ep_tripped\"} 0",
            "hookwarden_endpoint_circuit_open{endpoint_id=\"ep_tripped\"} 1",
            "hookwarden_endpoint_consecutive_failures{endpoint_id=\"ep_tripped\"} 20",
            "hookwarden_endpoint_circuit_open{endpoint_id=\"ep_manual\"} 0",
            "hookwarden_endpoint_enabled{endpoint_id=\"ep_manual\"} 0",
            "hookwarden_endpoint_enabled{endpoint_id=\"ep_\\\"odd\\\\\"} 1",
            "# TYPE hookwarden_endpoint_circuit_open gauge",
            "hookwarden_endpoint_series_truncated 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Empty: headers only, still valid exposition.
        let text = endpoint_series(&[], false);
        assert!(text.ends_with("hookwarden_endpoint_series_truncated 0\n"));
    }
}
