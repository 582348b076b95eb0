//! Prometheus metrics. Counters and histograms are recorded where things happen; gauges that
//! need a query (queue depth, oldest due delivery) are refreshed when `/metrics` is scraped.

use crate::state::AppState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder once per process; later calls return `None`.
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
            ],
        )
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

fn describe() {
    metrics::describe_counter!(
        "hookwarden_events_published_total",
        "Events accepted by the API"
    );
    metrics::describe_counter!(
        "hookwarden_delivery_attempts_total",
        "Delivery attempts by outcome (succeeded, retrying, failed)"
    );
    metrics::describe_histogram!(
        "hookwarden_delivery_attempt_seconds",
        "Duration of delivery attempts that got an HTTP response"
    );
    metrics::describe_counter!(
        "hookwarden_deliveries_claimed_total",
        "Due deliveries claimed"
    );
    metrics::describe_counter!(
        "hookwarden_outcomes_recorded_total",
        "Delivery outcomes written"
    );
    metrics::describe_counter!(
        "hookwarden_circuit_breaker_trips_total",
        "Endpoints disabled by the circuit breaker"
    );
    metrics::describe_counter!(
        "hookwarden_deliveries_rate_deferred_total",
        "Deliveries deferred by an endpoint rate limit"
    );
    metrics::describe_counter!("hookwarden_api_auth_failures_total", "Refused API keys");
    metrics::describe_gauge!(
        "hookwarden_deliveries_due",
        "Deliveries due and not held by any dispatcher"
    );
    metrics::describe_gauge!(
        "hookwarden_oldest_due_delivery_age_seconds",
        "Age of the oldest due delivery"
    );
    metrics::describe_gauge!(
        "hookwarden_deliveries_in_memory",
        "Deliveries held by this process"
    );
    metrics::describe_gauge!("hookwarden_deliveries", "Deliveries by status");
}

pub async fn refresh(state: &AppState) {
    metrics::gauge!("hookwarden_deliveries_in_memory").set(state.dispatcher.load() as f64);
    if let Ok(c) = state
        .store
        .delivery_counts(hookwarden_store::now_millis())
        .await
    {
        metrics::gauge!("hookwarden_deliveries_due").set(c.due as f64);
        metrics::gauge!("hookwarden_oldest_due_delivery_age_seconds")
            .set(c.oldest_due_age_ms as f64 / 1000.0);
        for (status, n) in [
            ("pending", c.pending),
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("paused", c.paused),
            ("cancelled", c.cancelled),
        ] {
            metrics::gauge!("hookwarden_deliveries", "status" => status).set(n as f64);
        }
    }
}
