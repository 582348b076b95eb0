//! Flood control for the inbound audit log.
//!
//! Every ingest request leaves one audit entry, but a flood of refused requests must not grow
//! the log without bound. Per source (requests to unknown tokens together count as one source)
//! the first `audit_refusals_per_second` refusals of each second are written one by one; the
//! rest of that second are folded into one aggregate entry per (source, outcome, client IP),
//! written when the second is over, with `count` = the requests it stands for, `sampled` =
//! true and `reason` = `AGGREGATED`. The number of aggregates per second is bounded too: beyond
//! [`MAX_AGGREGATES`], client addresses are no longer told apart (`client_ip` = null).
//! Accepted requests are always written one by one (in the same transaction as their event).

use hookwarden_store::{Millis, NewAuditEntry};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most aggregate entries kept per second before client addresses are merged.
pub const MAX_AGGREGATES: usize = 10_000;

type AggKey = (i64, Option<String>, String, Option<String>);

#[derive(Default)]
struct State {
    /// The second `written` counts.
    second: i64,
    /// Refusals written one by one this second, per source ("" for unknown tokens).
    written: HashMap<String, u32>,
    aggregates: HashMap<AggKey, NewAuditEntry>,
}

pub struct AuditLimiter {
    per_second: u32,
    state: Mutex<State>,
}

impl AuditLimiter {
    pub fn new(per_second: u32) -> AuditLimiter {
        AuditLimiter {
            per_second,
            state: Mutex::new(State::default()),
        }
    }

    /// Returns the entry when it is to be written now; `None` when it was folded into an
    /// aggregate (written later by [`AuditLimiter::take_aggregates`]).
    pub fn admit(&self, entry: NewAuditEntry) -> Option<NewAuditEntry> {
        let Ok(mut st) = self.state.lock() else {
            return Some(entry);
        };
        let second = entry.received_at.div_euclid(1000);
        if second != st.second {
            st.second = second;
            st.written.clear();
        }
        let source = entry.source_id.clone().unwrap_or_default();
        let n = st.written.entry(source).or_insert(0);
        if *n < self.per_second {
            *n += 1;
            return Some(entry);
        }
        let mut key: AggKey = (
            second,
            entry.source_id.clone(),
            entry.outcome.clone(),
            entry.client_ip.clone(),
        );
        if st.aggregates.len() >= MAX_AGGREGATES && !st.aggregates.contains_key(&key) {
            key.3 = None;
        }
        match st.aggregates.get_mut(&key) {
            Some(agg) => {
                agg.count = agg.count.saturating_add(entry.count.max(1));
                agg.body_bytes = agg.body_bytes.saturating_add(entry.body_bytes);
                agg.latency_us = agg.latency_us.max(entry.latency_us);
            }
            None => {
                let agg = NewAuditEntry {
                    client_ip: key.3.clone(),
                    reason: Some("AGGREGATED".into()),
                    sampled: true,
                    count: entry.count.max(1),
                    payload: None,
                    event_id: None,
                    message_id: None,
                    ..entry
                };
                st.aggregates.insert(key, agg);
            }
        }
        None
    }

    /// The aggregates of seconds before `now` (every one when `all`), removed.
    pub fn take_aggregates(&self, now: Millis, all: bool) -> Vec<NewAuditEntry> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        if st.aggregates.is_empty() {
            return Vec::new();
        }
        let current = now.div_euclid(1000);
        let done: Vec<AggKey> = st
            .aggregates
            .keys()
            .filter(|k| all || k.0 < current)
            .cloned()
            .collect();
        let mut out: Vec<NewAuditEntry> = done
            .iter()
            .filter_map(|k| st.aggregates.remove(k))
            .collect();
        out.sort_by_key(|e| e.received_at);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(src: Option<&str>, at: Millis, outcome: &str, ip: &str) -> NewAuditEntry {
        NewAuditEntry {
            source_id: src.map(str::to_owned),
            token_prefix: "wh_abcdef".into(),
            received_at: at,
            client_ip: Some(ip.into()),
            peer_addr: format!("{ip}:1"),
            outcome: outcome.into(),
            status: 403,
            body_bytes: 10,
            latency_us: 5,
            count: 1,
            ..Default::default()
        }
    }

    #[test]
    fn writes_up_to_the_rate_then_aggregates_per_source_outcome_ip() {
        let l = AuditLimiter::new(3);
        let t = 1_700_000_000_000;
        let mut written = 0;
        for i in 0..100 {
            let ip = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
            if l.admit(refusal(Some("src_a"), t + i, "IP_NOT_ALLOWED", ip))
                .is_some()
            {
                written += 1;
            }
        }
        assert_eq!(written, 3);
        // Another source and unknown tokens have their own allowance.
        assert!(
            l.admit(refusal(Some("src_b"), t, "IP_NOT_ALLOWED", "10.0.0.1"))
                .is_some()
        );
        for _ in 0..3 {
            assert!(
                l.admit(refusal(None, t, "WEBHOOK_NOT_FOUND", "10.0.0.1"))
                    .is_some()
            );
        }
        assert!(
            l.admit(refusal(None, t, "WEBHOOK_NOT_FOUND", "10.0.0.1"))
                .is_none()
        );
        // Nothing is flushed while the second is running.
        assert!(l.take_aggregates(t + 500, false).is_empty());
        let aggs = l.take_aggregates(t + 1000, false);
        assert_eq!(aggs.len(), 3, "{aggs:?}");
        let total: i64 = aggs
            .iter()
            .filter(|a| a.source_id.as_deref() == Some("src_a"))
            .map(|a| a.count)
            .sum();
        assert_eq!(total, 97);
        assert!(
            aggs.iter()
                .all(|a| a.sampled && a.reason.as_deref() == Some("AGGREGATED"))
        );
        assert!(l.take_aggregates(t + 1000, true).is_empty());
        // A new second starts a new allowance.
        assert!(
            l.admit(refusal(
                Some("src_a"),
                t + 1000,
                "IP_NOT_ALLOWED",
                "10.0.0.1"
            ))
            .is_some()
        );
    }

    #[test]
    fn aggregates_are_bounded_under_many_addresses() {
        let l = AuditLimiter::new(1);
        let t = 1_700_000_000_000;
        for i in 0..(MAX_AGGREGATES as u32 + 5_000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            l.admit(refusal(Some("src_a"), t, "IP_NOT_ALLOWED", &ip));
        }
        let aggs = l.take_aggregates(t, true);
        assert_eq!(aggs.len(), MAX_AGGREGATES + 1);
        let merged = aggs.iter().find(|a| a.client_ip.is_none()).unwrap();
        assert_eq!(merged.count, 4_999);
        let total: i64 = aggs.iter().map(|a| a.count).sum();
        assert_eq!(total, MAX_AGGREGATES as i64 + 5_000 - 1);
    }
}
