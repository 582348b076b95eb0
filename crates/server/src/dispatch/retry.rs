//! Retry decisions: which results are retried and when.

use crate::config::DeliveryConfig;
use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};

/// The result of one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Retry after this delay (unless attempts are exhausted).
    Retry(Duration),
    Final,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial: f64,
    multiplier: f64,
    max: f64,
    jitter: f64,
    retry_after_max: Duration,
    retry_on_status: Vec<u16>,
    /// An endpoint's own delays (seconds) before each retry, used exactly (no jitter).
    schedule: Vec<u32>,
}

impl RetryPolicy {
    pub fn new(cfg: &DeliveryConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: cfg.max_attempts,
            initial: cfg.backoff_initial_secs as f64,
            multiplier: cfg.backoff_multiplier,
            max: cfg.backoff_max_secs as f64,
            jitter: cfg.jitter,
            retry_after_max: Duration::from_secs(cfg.retry_after_max_secs),
            retry_on_status: cfg.retry_on_status.clone(),
            schedule: Vec::new(),
        }
    }

    /// This policy for an endpoint with its own retry schedule: retry `n` waits `schedule[n -
    /// 1]` seconds exactly, and the delivery fails for good after `schedule.len() + 1` attempts.
    /// Which answers are retried, and `Retry-After` on 429 and 503, stay as configured.
    pub fn with_schedule(&self, schedule: &[u32]) -> RetryPolicy {
        RetryPolicy {
            max_attempts: u32::try_from(schedule.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1),
            schedule: schedule.to_vec(),
            ..self.clone()
        }
    }

    /// The delay before retry number `n` (1 = the first retry), before jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let exp = self
            .multiplier
            .powi(i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX));
        let secs = (self.initial * exp).min(self.max);
        Duration::from_secs_f64(if secs.is_finite() {
            secs.max(0.0)
        } else {
            self.max
        })
    }

    /// `base_delay(n)` spread by ±jitter, never below one second's tenth nor above the maximum.
    pub fn delay(&self, n: u32) -> Duration {
        if !self.schedule.is_empty() {
            let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
            let secs = self
                .schedule
                .get(i)
                .or(self.schedule.last())
                .copied()
                .unwrap_or(1);
            return Duration::from_secs(u64::from(secs));
        }
        let base = self.base_delay(n).as_secs_f64();
        let factor = if self.jitter > 0.0 {
            1.0 + rand::random_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * factor).clamp(0.1, self.max.max(0.1)))
    }

    pub fn is_retryable_status(&self, status: StatusCode) -> bool {
        status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || self.retry_on_status.contains(&status.as_u16())
    }

    /// Decides what follows attempt number `attempt_no` (1-based) that got `status` at `now`
    /// (an HTTP-date `Retry-After` is relative to it).
    pub fn after_status(
        &self,
        attempt_no: u32,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Verdict {
        if status.is_success() {
            return Verdict::Success;
        }
        if !self.is_retryable_status(status) {
            return Verdict::Final;
        }
        if attempt_no >= self.max_attempts {
            return Verdict::Final;
        }
        let delay = match retry_after(headers, now) {
            Some(d)
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                // `min`/`max` rather than `clamp`, which panics when the bounds cross.
                d.min(self.retry_after_max).max(Duration::from_secs(1))
            }
            _ => self.delay(attempt_no),
        };
        Verdict::Retry(delay)
    }

    /// Decides what follows a transport failure (no HTTP status).
    pub fn after_error(&self, attempt_no: u32, retryable: bool) -> Verdict {
        if !retryable || attempt_no >= self.max_attempts {
            Verdict::Final
        } else {
            Verdict::Retry(self.delay(attempt_no))
        }
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date. Bounded: absurd values are ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if v.len() > 64 {
        return None;
    }
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(365 * 86_400)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&DeliveryConfig::default())
    }

    #[test]
    fn an_endpoint_schedule_is_used_exactly_and_bounds_the_attempts() {
        let p = policy().with_schedule(&[5, 60, 3600]);
        let now = SystemTime::now();
        let none = HeaderMap::new();
        let err = StatusCode::INTERNAL_SERVER_ERROR;
        assert_eq!(
            p.after_status(1, err, &none, now),
            Verdict::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            p.after_status(2, err, &none, now),
            Verdict::Retry(Duration::from_secs(60))
        );
        assert_eq!(
            p.after_error(3, true),
            Verdict::Retry(Duration::from_secs(3600))
        );
        // Four attempts in all: the fourth is final, whatever the configured max_attempts.
        assert_eq!(p.after_status(4, err, &none, now), Verdict::Final);
        assert_eq!(p.after_error(4, true), Verdict::Final);
        // What is retried is unchanged: a 400 is final, a 429's Retry-After is honoured.
        assert_eq!(
            p.after_status(1, StatusCode::BAD_REQUEST, &none, now),
            Verdict::Final
        );
        let mut ra = HeaderMap::new();
        ra.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            p.after_status(1, StatusCode::TOO_MANY_REQUESTS, &ra, now),
            Verdict::Retry(Duration::from_secs(7))
        );
        // The configured policy itself is untouched.
        assert!(policy().max_attempts > 4);
    }

    #[test]
    fn default_schedule_grows_to_about_a_day() {
        let p = policy();
        let secs: Vec<u64> = (1..=14).map(|n| p.base_delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            vec![
                5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 40960
            ]
        );
        assert_eq!(p.base_delay(15).as_secs(), 81920);
        assert_eq!(p.base_delay(40).as_secs(), 86400);
        assert_eq!(p.base_delay(u32::MAX).as_secs(), 86400);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = policy();
        for _ in 0..200 {
            let d = p.delay(1).as_secs_f64();
            assert!((4.0..=6.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn statuses() {
        let p = policy();
        let h = HeaderMap::new();
        assert_eq!(
            p.after_status(1, StatusCode::OK, &h, SystemTime::now()),
            Verdict::Success
        );
        assert_eq!(
            p.after_status(1, StatusCode::NO_CONTENT, &h, SystemTime::now()),
            Verdict::Success
        );
        for s in [500u16, 502, 503, 504, 408, 429] {
            assert!(
                matches!(
                    p.after_status(1, StatusCode::from_u16(s).unwrap(), &h, SystemTime::now()),
                    Verdict::Retry(_)
                ),
                "{s}"
            );
        }
        for s in [400u16, 401, 403, 404, 410, 422, 301, 302] {
            assert_eq!(
                p.after_status(1, StatusCode::from_u16(s).unwrap(), &h, SystemTime::now()),
                Verdict::Final,
                "{s}"
            );
        }
        assert_eq!(
            p.after_status(15, StatusCode::BAD_GATEWAY, &h, SystemTime::now()),
            Verdict::Final
        );
        let cfg = DeliveryConfig {
            retry_on_status: vec![404],
            ..Default::default()
        };
        let p2 = RetryPolicy::new(&cfg);
        assert!(matches!(
            p2.after_status(1, StatusCode::NOT_FOUND, &h, SystemTime::now()),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = policy();
        let mut h = HeaderMap::new();
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(
            p.after_status(1, StatusCode::TOO_MANY_REQUESTS, &h, SystemTime::now()),
            Verdict::Retry(Duration::from_secs(120))
        );
        h.insert("retry-after", "99999999999".parse().unwrap());
        assert_eq!(
            p.after_status(1, StatusCode::SERVICE_UNAVAILABLE, &h, SystemTime::now()),
            Verdict::Retry(Duration::from_secs(86400))
        );
        h.insert("retry-after", "0".parse().unwrap());
        assert_eq!(
            p.after_status(1, StatusCode::TOO_MANY_REQUESTS, &h, SystemTime::now()),
            Verdict::Retry(Duration::from_secs(1))
        );
        h.insert("retry-after", "garbage".parse().unwrap());
        assert!(
            matches!(p.after_status(1, StatusCode::TOO_MANY_REQUESTS, &h, SystemTime::now()), Verdict::Retry(d) if d.as_secs() <= 6)
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert("retry-after", past.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
    }

    #[test]
    fn transport_errors() {
        let p = policy();
        assert!(matches!(p.after_error(1, true), Verdict::Retry(_)));
        assert_eq!(p.after_error(1, false), Verdict::Final);
        assert_eq!(p.after_error(15, true), Verdict::Final);
    }
}
