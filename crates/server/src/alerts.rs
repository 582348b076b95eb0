//! Usage alerts: operational events raised from what this instance sees.
//!
//! | event type | kind | raised when |
//! |---|---|---|
//! | `source.anomaly` | `ip_not_allowed` | ≥ `threshold` requests to one source refused with `IP_NOT_ALLOWED` within `window_secs` |
//! | `source.anomaly` | `spike` | the requests to one source in the current `window_secs` reach `min_requests` and `factor` × its baseline (an EWMA of past windows) |
//! | `endpoint.failing` | `endpoint_failing` | ≥ `min_attempts` delivery attempts to one endpoint within `window_secs`, of which at least `failure_rate` failed |
//!
//! Each (kind, subject) alerts at most once per `rate_limit_secs`. Detection is in memory and per
//! instance (with several instances each one alerts on the traffic it sees). Memory is bounded:
//! at most `max_tracked` sources and `max_tracked` endpoints, each with a fixed-size state.
//!
//! The hot paths (ingest, delivery attempts) only take a short uncontended lock around a map
//! lookup and a few integer updates, never across an await; an alert, when one fires, is handed
//! to a bounded channel and published as an event by a background task, through the same path
//! as `endpoint.disabled`.

use crate::clock::SharedClock;
use hookwarden_store::{Millis, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::{error, warn};

/// Alerts waiting to be published; beyond this they are dropped (and counted).
const QUEUE: usize = 256;
/// Sample client addresses kept per `ip_not_allowed` alert.
const SAMPLE_IPS: usize = 5;
/// Sliding windows are kept as this many buckets (10 % granularity).
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Detect and emit usage alerts at all.
    pub enabled: bool,
    /// One alert per (kind, subject) at most this often.
    pub rate_limit_secs: u64,
    /// Most sources, and most endpoints, tracked at once (idle ones are forgotten first).
    pub max_tracked: usize,
    pub ip_not_allowed: IpNotAllowedConfig,
    pub spike: SpikeConfig,
    pub endpoint_failing: EndpointFailingConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rate_limit_secs: 900,
            max_tracked: 10_000,
            ip_not_allowed: IpNotAllowedConfig::default(),
            spike: SpikeConfig::default(),
            endpoint_failing: EndpointFailingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpNotAllowedConfig {
    pub enabled: bool,
    /// Refusals (`IP_NOT_ALLOWED`) to one source…
    pub threshold: u32,
    /// …within this many seconds.
    pub window_secs: u64,
}

impl Default for IpNotAllowedConfig {
    fn default() -> Self {
        IpNotAllowedConfig {
            enabled: true,
            threshold: 10,
            window_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeConfig {
    pub enabled: bool,
    /// Requests are counted per window of this many seconds.
    pub window_secs: u64,
    /// A window alerts when it reaches `factor` × the baseline…
    pub factor: f64,
    /// …and at least this many requests (idle sources do not alert on a handful).
    pub min_requests: u32,
    /// The baseline is an exponentially weighted average over about this many windows.
    pub baseline_windows: u32,
    /// Windows a source must have been observed before it can alert (after a start, baselines
    /// are learnt again).
    pub warmup_windows: u32,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            enabled: true,
            window_secs: 60,
            factor: 5.0,
            min_requests: 100,
            baseline_windows: 30,
            warmup_windows: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFailingConfig {
    pub enabled: bool,
    /// Alert when at least this fraction of the attempts failed…
    pub failure_rate: f64,
    /// …out of at least this many attempts…
    pub min_attempts: u32,
    /// …within this many seconds.
    pub window_secs: u64,
}

impl Default for EndpointFailingConfig {
    fn default() -> Self {
        EndpointFailingConfig {
            enabled: true,
            failure_rate: 0.5,
            min_attempts: 20,
            window_secs: 300,
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let window = |name: &str, secs: u64| {
            if (1..=7 * 86_400).contains(&secs) {
                Ok(())
            } else {
                Err(crate::config::ConfigError(format!(
                    "alerts.{name}.window_secs must be 1..=604800"
                )))
            }
        };
        window("ip_not_allowed", self.ip_not_allowed.window_secs)?;
        window("spike", self.spike.window_secs)?;
        window("endpoint_failing", self.endpoint_failing.window_secs)?;
        if self.rate_limit_secs > 7 * 86_400 {
            return Err(crate::config::ConfigError(
                "alerts.rate_limit_secs must be at most 604800".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_tracked) {
            return Err(crate::config::ConfigError(
                "alerts.max_tracked must be 1..=1000000".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.ip_not_allowed.threshold) {
            return Err(crate::config::ConfigError(
                "alerts.ip_not_allowed.threshold must be 1..=1000000".into(),
            ));
        }
        let s = &self.spike;
        if !(s.factor.is_finite() && (1.0..=1000.0).contains(&s.factor)) {
            return Err(crate::config::ConfigError(
                "alerts.spike.factor must be 1..=1000".into(),
            ));
        }
        if s.min_requests == 0 {
            return Err(crate::config::ConfigError(
                "alerts.spike.min_requests must be at least 1".into(),
            ));
        }
        if !(1..=10_000).contains(&s.baseline_windows) {
            return Err(crate::config::ConfigError(
                "alerts.spike.baseline_windows must be 1..=10000".into(),
            ));
        }
        if s.warmup_windows > 10_000 {
            return Err(crate::config::ConfigError(
                "alerts.spike.warmup_windows must be at most 10000".into(),
            ));
        }
        let f = &self.endpoint_failing;
        if !(f.failure_rate.is_finite() && f.failure_rate > 0.0 && f.failure_rate <= 1.0) {
            return Err(crate::config::ConfigError(
                "alerts.endpoint_failing.failure_rate must be in (0, 1]".into(),
            ));
        }
        if f.min_attempts == 0 {
            return Err(crate::config::ConfigError(
                "alerts.endpoint_failing.min_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One alert to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `source.anomaly` or `endpoint.failing`.
    pub event_type: &'static str,
    /// `ip_not_allowed`, `spike` or `endpoint_failing` (the metric label).
    pub kind: &'static str,
    /// The source or endpoint id.
    pub subject: String,
    /// The event payload.
    pub payload: serde_json::Value,
}

/// A sliding window of two counters, kept as [`BUCKETS`] buckets.
#[derive(Debug, Clone, Default)]
struct Window {
    /// Bucket number (time / bucket width) of the newest bucket.
    head: i64,
    counts: [[u32; 2]; BUCKETS],
}

impl Window {
    fn advance(&mut self, now: Millis, width: i64) {
        let e = now.div_euclid(width);
        if e <= self.head {
            // Same bucket, or a clock that went back: count it in the newest bucket.
            return;
        }
        let gap = e - self.head;
        if gap >= BUCKETS as i64 {
            self.counts = [[0; 2]; BUCKETS];
        } else {
            for k in 1..=gap {
                self.counts[(self.head + k).rem_euclid(BUCKETS as i64) as usize] = [0; 2];
            }
        }
        self.head = e;
    }

    fn add(&mut self, now: Millis, width: i64, a: u32, b: u32) {
        self.advance(now, width);
        let c = &mut self.counts[self.head.rem_euclid(BUCKETS as i64) as usize];
        c[0] = c[0].saturating_add(a);
        c[1] = c[1].saturating_add(b);
    }

    fn sums(&self) -> (u64, u64) {
        self.counts.iter().fold((0, 0), |(a, b), c| {
            (a + u64::from(c[0]), b + u64::from(c[1]))
        })
    }
}

/// Requests per fixed window against an exponentially weighted baseline.
#[derive(Debug, Clone, Default)]
struct SpikeState {
    /// Window number (time / window) being counted; `None` before the first request.
    window: Option<i64>,
    count: u32,
    baseline: f64,
    /// Windows completed since tracking began (saturating).
    completed: u32,
}

#[derive(Debug, Default)]
struct SourceState {
    last_seen: Millis,
    refused: Window,
    samples: Vec<String>,
    spike: SpikeState,
    fired_ip: Option<Millis>,
    fired_spike: Option<Millis>,
}

#[derive(Debug, Default)]
struct EndpointState {
    last_seen: Millis,
    /// [attempts, failures]
    attempts: Window,
    fired: Option<Millis>,
}

/// A bounded map of per-subject states.
struct Tracked<S> {
    map: HashMap<Box<str>, S>,
    last_prune: Millis,
}

impl<S: Default> Tracked<S> {
    fn new() -> Self {
        Tracked {
            map: HashMap::new(),
            last_prune: Millis::MIN,
        }
    }

    /// The state of `id`, created when there is room. When the map is full, subjects idle for
    /// longer than `idle_ms` are forgotten first (at most one sweep per second); when there is
    /// still no room, `None` (the subject is not tracked).
    fn entry(
        &mut self,
        id: &str,
        now: Millis,
        cap: usize,
        idle_ms: i64,
        last_seen: impl Fn(&S) -> Millis,
    ) -> Option<&mut S> {
        if !self.map.contains_key(id) {
            if self.map.len() >= cap {
                if now.saturating_sub(self.last_prune) < 1000 {
                    return None;
                }
                self.last_prune = now;
                let cut = now.saturating_sub(idle_ms);
                self.map.retain(|_, s| last_seen(s) >= cut);
                if self.map.len() >= cap {
                    return None;
                }
            }
            self.map.insert(id.into(), S::default());
        }
        self.map.get_mut(id)
    }
}

/// Thresholds in milliseconds and derived constants.
#[derive(Debug, Clone)]
struct Tuned {
    cfg: AlertsConfig,
    rate_limit_ms: i64,
    ip_bucket_ms: i64,
    spike_window_ms: i64,
    alpha: f64,
    fail_bucket_ms: i64,
    /// How long an idle subject's state is worth keeping.
    idle_ms: i64,
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Tuned {
    fn new(cfg: AlertsConfig) -> Tuned {
        let bucket = |secs: u64| (secs_ms(secs) / BUCKETS as i64).max(1);
        let rate_limit_ms = secs_ms(cfg.rate_limit_secs);
        let spike_window_ms = secs_ms(cfg.spike.window_secs).max(1);
        let idle_ms = [
            rate_limit_ms,
            secs_ms(cfg.ip_not_allowed.window_secs),
            secs_ms(cfg.endpoint_failing.window_secs),
            spike_window_ms.saturating_mul(2),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Tuned {
            rate_limit_ms,
            ip_bucket_ms: bucket(cfg.ip_not_allowed.window_secs),
            spike_window_ms,
            alpha: 2.0 / (f64::from(cfg.spike.baseline_windows) + 1.0),
            fail_bucket_ms: bucket(cfg.endpoint_failing.window_secs),
            idle_ms,
            cfg,
        }
    }

    /// Whether an alert last fired at `last` may fire again at `now` (and if so, records it).
    fn allow(&self, last: &mut Option<Millis>, now: Millis) -> bool {
        match *last {
            // A clock that went back counts as "within the limit".
            Some(at) if now.saturating_sub(at) < self.rate_limit_ms => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The detectors. Pure: time comes from the caller (tests inject it).
pub struct Detectors {
    t: Tuned,
    sources: Mutex<Tracked<SourceState>>,
    endpoints: Mutex<Tracked<EndpointState>>,
}

impl Detectors {
    pub fn new(cfg: AlertsConfig) -> Detectors {
        Detectors {
            t: Tuned::new(cfg),
            sources: Mutex::new(Tracked::new()),
            endpoints: Mutex::new(Tracked::new()),
        }
    }

    /// One request to a source (any outcome). `ip_refused`: it was refused with
    /// `IP_NOT_ALLOWED`, from `client_ip`. Returns the alerts that fire now (usually none; no
    /// allocation then).
    pub fn ingest(
        &self,
        source_id: &str,
        ip_refused: bool,
        client_ip: Option<&str>,
        now: Millis,
    ) -> Vec<Alert> {
        let t = &self.t;
        let (ip_on, spike_on) = (t.cfg.ip_not_allowed.enabled, t.cfg.spike.enabled);
        let ip_counted = ip_refused && ip_on;
        if !(spike_on || ip_counted) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let Ok(mut map) = self.sources.lock() else {
            return out;
        };
        let Some(s) = map.entry(source_id, now, t.cfg.max_tracked, t.idle_ms, |s| {
            s.last_seen
        }) else {
            return out;
        };
        s.last_seen = now;
        if ip_refused && ip_on {
            let c = &t.cfg.ip_not_allowed;
            s.refused.advance(now, t.ip_bucket_ms);
            if s.refused.sums().0 == 0 {
                s.samples.clear();
            }
            s.refused.add(now, t.ip_bucket_ms, 1, 0);
            if let Some(ip) = client_ip
                && s.samples.len() < SAMPLE_IPS
                && !s.samples.iter().any(|x| x == ip)
            {
                s.samples.push(ip.to_owned());
            }
            let count = s.refused.sums().0;
            if count >= u64::from(c.threshold) && t.allow(&mut s.fired_ip, now) {
                out.push(Alert {
                    event_type: "source.anomaly",
                    kind: "ip_not_allowed",
                    subject: source_id.to_owned(),
                    payload: json!({
                        "kind": "ip_not_allowed",
                        "source_id": source_id,
                        "count": count,
                        "threshold": c.threshold,
                        "window_secs": c.window_secs,
                        "sample_client_ips": s.samples,
                        "detected_at": crate::times::rfc3339(now),
                    }),
                });
            }
        }
        if spike_on {
            let c = &t.cfg.spike;
            let sp = &mut s.spike;
            let w = now.div_euclid(t.spike_window_ms);
            match sp.window {
                None => sp.window = Some(w),
                Some(cur) if w > cur => {
                    // Close the window that ended, then the empty ones in between.
                    let n = f64::from(sp.count);
                    sp.baseline = if sp.completed == 0 {
                        n
                    } else {
                        t.alpha * n + (1.0 - t.alpha) * sp.baseline
                    };
                    let empty = (w - cur - 1).min(100_000);
                    sp.baseline *= (1.0 - t.alpha).powi(empty as i32);
                    sp.completed = sp
                        .completed
                        .saturating_add(1)
                        .saturating_add(u32::try_from(empty).unwrap_or(u32::MAX));
                    sp.window = Some(w);
                    sp.count = 0;
                }
                Some(_) => {}
            }
            sp.count = sp.count.saturating_add(1);
            let count = f64::from(sp.count);
            if sp.completed >= c.warmup_windows
                && sp.count >= c.min_requests
                && count >= c.factor * sp.baseline
                && t.allow(&mut s.fired_spike, now)
            {
                let baseline = (sp.baseline * 100.0).round() / 100.0;
                out.push(Alert {
                    event_type: "source.anomaly",
                    kind: "spike",
                    subject: source_id.to_owned(),
                    payload: json!({
                        "kind": "spike",
                        "source_id": source_id,
                        "count": sp.count,
                        "window_secs": c.window_secs,
                        "baseline": baseline,
                        "factor": c.factor,
                        "min_requests": c.min_requests,
                        "detected_at": crate::times::rfc3339(now),
                    }),
                });
            }
        }
        out
    }

    /// One delivery attempt to an endpoint, and whether it succeeded.
    pub fn attempt(&self, endpoint_id: &str, success: bool, now: Millis) -> Option<Alert> {
        let t = &self.t;
        let c = &t.cfg.endpoint_failing;
        if !c.enabled {
            return None;
        }
        let mut map = self.endpoints.lock().ok()?;
        let e = map.entry(endpoint_id, now, t.cfg.max_tracked, t.idle_ms, |s| {
            s.last_seen
        })?;
        e.last_seen = now;
        e.attempts
            .add(now, t.fail_bucket_ms, 1, if success { 0 } else { 1 });
        let (attempts, failures) = e.attempts.sums();
        let rate = failures as f64 / attempts.max(1) as f64;
        if attempts >= u64::from(c.min_attempts)
            && rate >= c.failure_rate
            && t.allow(&mut e.fired, now)
        {
            return Some(Alert {
                event_type: "endpoint.failing",
                kind: "endpoint_failing",
                subject: endpoint_id.to_owned(),
                payload: json!({
                    "endpoint_id": endpoint_id,
                    "attempts": attempts,
                    "failures": failures,
                    "failure_rate": (rate * 1000.0).round() / 1000.0,
                    "threshold": c.failure_rate,
                    "min_attempts": c.min_attempts,
                    "window_secs": c.window_secs,
                    "detected_at": crate::times::rfc3339(now),
                }),
            });
        }
        None
    }

    /// Subjects tracked now (sources, endpoints).
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.sources.lock().map(|m| m.map.len()).unwrap_or(0),
            self.endpoints.lock().map(|m| m.map.len()).unwrap_or(0),
        )
    }
}

/// The detectors wired to the event publisher: what the ingest route and the dispatcher call.
pub struct Alerts {
    detectors: Detectors,
    tx: mpsc::Sender<Alert>,
    /// What the windows are measured on.
    clock: SharedClock,
}

impl Alerts {
    /// The alerts and the receiving end of their queue (see [`spawn_publisher`]).
    pub fn new(cfg: AlertsConfig, clock: SharedClock) -> (Arc<Alerts>, mpsc::Receiver<Alert>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Arc::new(Alerts {
                detectors: Detectors::new(cfg),
                tx,
                clock,
            }),
            rx,
        )
    }

    pub fn observe_ingest(&self, source_id: &str, ip_refused: bool, client_ip: Option<&str>) {
        let now = self.clock.now_millis();
        for a in self.detectors.ingest(source_id, ip_refused, client_ip, now) {
            self.emit(a);
        }
    }

    pub fn observe_attempt(&self, endpoint_id: &str, success: bool) {
        if let Some(a) = self
            .detectors
            .attempt(endpoint_id, success, self.clock.now_millis())
        {
            self.emit(a);
        }
    }

    /// Raises an alert decided elsewhere (a probe grade that dropped): counted, logged and
    /// published like the detectors' own.
    pub fn raise(&self, a: Alert) {
        self.emit(a);
    }

    fn emit(&self, a: Alert) {
        metrics::counter!("hookwarden_alerts_total", "kind" => a.kind).increment(1);
        warn!(
            alert = a.kind,
            event_type = a.event_type,
            subject = %a.subject,
            details = %a.payload,
            "usage alert"
        );
        if self.tx.try_send(a).is_err() {
            metrics::counter!("hookwarden_alerts_dropped_total").increment(1);
            warn!("usage alert queue full; alert not published");
        }
    }
}

/// Publishes queued alerts as operational events (delivered to subscribed endpoints and listed
/// by `GET /api/v1/events`).
pub fn spawn_publisher(
    mut rx: mpsc::Receiver<Alert>,
    dispatcher: Arc<crate::dispatch::Dispatcher>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            let ev = NewEvent {
                id: crate::crypto::new_id("evt"),
                event_type: a.event_type.into(),
                payload: a.payload.to_string(),
                idempotency_key: None,
                created_at: dispatcher.clock().now_millis(),
                source_id: None,
                only_endpoints: None,
            };
            if let Err(e) = dispatcher.publish(ev).await {
                error!(error = %e, event_type = a.event_type, subject = %a.subject, "could not emit a usage alert");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// A whole minute, so that test windows line up with the detectors' windows.
    const T0: i64 = 1_699_999_980_000;

    fn cfg() -> AlertsConfig {
        AlertsConfig::default()
    }

    #[test]
    fn defaults_are_valid_and_bad_values_refused() {
        cfg().validate().unwrap();
        let mut c = cfg();
        c.spike.factor = f64::NAN;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.endpoint_failing.failure_rate = 0.0;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.ip_not_allowed.window_secs = 0;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.max_tracked = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn window_slides_and_forgets() {
        let mut w = Window::default();
        let width = 1000;
        w.add(T0, width, 1, 0);
        w.add(T0 + 5_000, width, 1, 1);
        assert_eq!(w.sums(), (2, 1));
        // 9.5 s later the first bucket has slid out, the second is still in.
        w.add(T0 + 10_500, width, 0, 0);
        assert_eq!(w.sums(), (1, 1));
        w.add(T0 + 100_000, width, 0, 0);
        assert_eq!(w.sums(), (0, 0));
        // A clock that goes back counts in the newest bucket.
        w.add(T0, width, 3, 0);
        assert_eq!(w.sums(), (3, 0));
    }

    #[test]
    fn ip_not_allowed_fires_at_the_threshold_once_per_rate_limit() {
        let d = Detectors::new(cfg());
        for i in 0..9 {
            let ip = format!("203.0.113.{}", i % 7);
            assert!(d.ingest("src_a", true, Some(&ip), T0 + i * 1000).is_empty());
        }
        // Accepted requests do not count towards it.
        assert!(
            d.ingest("src_a", false, Some("198.51.100.1"), T0 + 9_000)
                .is_empty()
        );
        let a = d.ingest("src_a", true, Some("203.0.113.9"), T0 + 10_000);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].event_type, a[0].kind),
            ("source.anomaly", "ip_not_allowed")
        );
        let p = &a[0].payload;
        assert_eq!(p["source_id"], "src_a");
        assert_eq!(p["count"], 10);
        assert_eq!(p["window_secs"], 300);
        assert_eq!(p["sample_client_ips"].as_array().unwrap().len(), SAMPLE_IPS);
        assert_eq!(p["sample_client_ips"][0], "203.0.113.0");
        // Rate-limited for 15 minutes, then fires again while refusals continue.
        for i in 0..50 {
            assert!(
                d.ingest("src_a", true, None, T0 + 11_000 + i * 1000)
                    .is_empty()
            );
        }
        let mut fired = 0;
        for i in 0..20 {
            fired += d
                .ingest("src_a", true, None, T0 + 15 * MIN + 10_000 + i * 1000)
                .len();
        }
        assert_eq!(fired, 1);
        // Another source has its own count.
        assert!(d.ingest("src_b", true, None, T0 + 16 * MIN).is_empty());
    }

    #[test]
    fn ip_not_allowed_needs_the_refusals_within_the_window() {
        let d = Detectors::new(cfg());
        // 9 refusals spread over far more than 5 minutes never reach 10 in one window.
        for i in 0..40 {
            assert!(
                d.ingest("src_a", true, None, T0 + i * MIN).is_empty(),
                "{i}"
            );
        }
    }

    fn spike_cfg() -> AlertsConfig {
        let mut c = cfg();
        c.spike = SpikeConfig {
            enabled: true,
            window_secs: 60,
            factor: 5.0,
            min_requests: 100,
            baseline_windows: 10,
            warmup_windows: 3,
        };
        c
    }

    /// `n` requests spread over window `w` (counted from T0).
    fn traffic(d: &Detectors, src: &str, w: i64, n: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(d.ingest(src, false, None, T0 + w * MIN + i * (MIN / n.max(1))));
        }
        out
    }

    #[test]
    fn spike_fires_well_above_the_baseline_only() {
        let d = Detectors::new(spike_cfg());
        // A steady 50 per minute: no alert (and the first windows are warm-up anyway).
        for w in 0..10 {
            assert!(traffic(&d, "src_a", w, 50).is_empty(), "window {w}");
        }
        // Three times the baseline: no alert.
        assert!(traffic(&d, "src_a", 10, 150).is_empty());
        // A burst of 600 in the next minute: one alert, at 5 × baseline.
        let a = traffic(&d, "src_a", 11, 600);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].kind, "spike");
        let p = &a[0].payload;
        let baseline = p["baseline"].as_f64().unwrap();
        assert!((50.0..150.0).contains(&baseline), "{p}");
        let count = p["count"].as_f64().unwrap();
        assert!(
            count >= 5.0 * baseline && count < 5.0 * baseline + 2.0,
            "{p}"
        );
        // Still bursting in the next windows: rate-limited.
        assert!(traffic(&d, "src_a", 12, 2000).is_empty());
    }

    #[test]
    fn idle_sources_need_the_minimum_and_warm_up_holds_alerts() {
        let d = Detectors::new(spike_cfg());
        // An idle source: 0–3 requests per window, then 40 (8× but under min_requests).
        for w in 0..10 {
            assert!(traffic(&d, "src_idle", w, w % 4).is_empty());
        }
        assert!(traffic(&d, "src_idle", 10, 40).is_empty());
        // A source seen for the first time with a burst is still warming up.
        let d = Detectors::new(spike_cfg());
        assert!(traffic(&d, "src_new", 0, 1000).is_empty());
        assert!(traffic(&d, "src_new", 1, 1000).is_empty());
    }

    #[test]
    fn quiet_windows_decay_the_baseline() {
        let d = Detectors::new(spike_cfg());
        for w in 0..10 {
            assert!(traffic(&d, "src_a", w, 300).is_empty());
        }
        // An hour of silence, then 300 again: the baseline has decayed, so it is a spike.
        let a = traffic(&d, "src_a", 70, 300);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].payload["baseline"].as_f64().unwrap() < 10.0);
    }

    #[test]
    fn endpoint_failing_needs_rate_and_minimum_attempts() {
        let d = Detectors::new(cfg());
        // 19 failures: under the minimum of 20 attempts.
        for i in 0..19 {
            assert!(d.attempt("ep_a", false, T0 + i * 1000).is_none());
        }
        let a = d
            .attempt("ep_a", false, T0 + 19_000)
            .expect("fires at 20 attempts");
        assert_eq!(
            (a.event_type, a.kind),
            ("endpoint.failing", "endpoint_failing")
        );
        assert_eq!(a.payload["attempts"], 20);
        assert_eq!(a.payload["failures"], 20);
        assert_eq!(a.payload["failure_rate"], 1.0);
        // Rate-limited afterwards.
        for i in 0..100 {
            assert!(d.attempt("ep_a", false, T0 + 20_000 + i * 100).is_none());
        }
        // 40 % failures never alert at a 50 % threshold.
        let d = Detectors::new(cfg());
        for i in 0..200 {
            assert!(d.attempt("ep_b", i % 5 < 3, T0 + i * 1000).is_none(), "{i}");
        }
        // Failures spread thinner than the window never reach the minimum.
        let d = Detectors::new(cfg());
        for i in 0..100 {
            assert!(d.attempt("ep_c", false, T0 + i * 20_000).is_none());
        }
    }

    #[test]
    fn tracked_subjects_are_bounded_and_idle_ones_forgotten() {
        let mut c = cfg();
        c.max_tracked = 3;
        let d = Detectors::new(c);
        for i in 0..3 {
            d.ingest(&format!("src_{i}"), false, None, T0);
            d.attempt(&format!("ep_{i}"), true, T0);
        }
        // Full: a fourth subject is not tracked while the others are recent.
        d.ingest("src_x", false, None, T0 + 1000);
        d.attempt("ep_x", false, T0 + 1000);
        assert_eq!(d.tracked(), (3, 3));
        // Once they have been idle long enough, they make room.
        let later = T0 + 16 * MIN;
        d.ingest("src_x", false, None, later);
        d.attempt("ep_x", false, later);
        assert_eq!(d.tracked(), (1, 1));
    }

    #[test]
    fn disabled_detectors_stay_silent() {
        let mut c = cfg();
        c.ip_not_allowed.enabled = false;
        c.spike.enabled = false;
        c.endpoint_failing.enabled = false;
        let d = Detectors::new(c);
        for i in 0..100 {
            assert!(d.ingest("src_a", true, None, T0 + i).is_empty());
            assert!(d.attempt("ep_a", false, T0 + i).is_none());
        }
        assert_eq!(d.tracked(), (0, 0));
    }
}
