//! Domain types shared by every backend.
//!
//! Times are unix milliseconds (`i64`) everywhere in the store; the API layer renders RFC 3339.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unix time in milliseconds.
pub type Millis = i64;

/// The current time in unix milliseconds.
pub fn now_millis() -> Millis {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `<prefix>_<ulid>` with the ULID in lower case (`evt_01j…`): one allocation, where formatting
/// the ULID, lower-casing it and joining took three.
pub fn prefixed_ulid(prefix: &str, id: ulid::Ulid) -> String {
    let mut buf = [0u8; ulid::ULID_LEN];
    let enc = id.array_to_str(&mut buf);
    enc.make_ascii_lowercase();
    let mut s = String::with_capacity(prefix.len() + 1 + ulid::ULID_LEN);
    s.push_str(prefix);
    s.push('_');
    s.push_str(enc);
    s
}

/// A new prefixed identifier: `ep_01j…` (ULID of the current time, lower case).
pub fn new_prefixed_id(prefix: &str) -> String {
    prefixed_ulid(prefix, ulid::Ulid::new())
}

/// The subscriptions an event of type `event_type` goes to: the type itself, every trailing
/// wildcard over it (`invoice.paid.late` → `invoice.paid.*`, `invoice.*`) and `*` (every type).
/// At most one key per `.` plus two: each is one exact lookup in the subscriptions' index.
pub fn subscription_keys(event_type: &str) -> Vec<String> {
    let mut keys = Vec::with_capacity(event_type.matches('.').count() + 2);
    keys.push(event_type.to_owned());
    for (i, _) in event_type
        .match_indices('.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        keys.push(format!("{}*", &event_type[..=i]));
    }
    keys.push("*".to_owned());
    keys
}

/// A receiver of outbound webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Event types this endpoint receives; empty means every type.
    pub event_types: Vec<String>,
    /// Custom request headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// A secret value echoed inside every delivered payload (possibly encrypted at rest).
    pub developer_payload: Option<String>,
    pub signature_schemes: Vec<String>,
    pub rate_limit_per_second: Option<u32>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Millis>,
    pub client_certificate_id: Option<String>,
    /// Delays in seconds before each retry (retry `n` waits `retry_schedule[n - 1]`; the
    /// delivery fails for good after `len + 1` attempts). Empty: the deployment's backoff.
    #[serde(default)]
    pub retry_schedule: Vec<u32>,
    /// A payload filter (JSON text, docs/filters.md): events it does not match are not
    /// delivered here. `None`: every subscribed event.
    #[serde(default)]
    pub filter: Option<String>,
    /// A transformation (a Rhai script, docs/transformations.md) run on each request before it
    /// is signed and sent. `None`: sent as published.
    #[serde(default)]
    pub transformation: Option<String>,
    pub consecutive_failures: i64,
    pub failing_since: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What an endpoint secret signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// A symmetric `whsec_` secret (HMAC schemes).
    Hmac,
    /// An ed25519 private key `whsk_` (`standard-webhooks-v1a`).
    Ed25519,
}

impl SecretKind {
    /// As stored: `hmac`, `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Hmac => "hmac",
            SecretKind::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<SecretKind> {
        match s {
            "hmac" => Some(SecretKind::Hmac),
            "ed25519" => Some(SecretKind::Ed25519),
            _ => None,
        }
    }
}

/// A signing secret of an endpoint. `secret` is as stored (possibly encrypted at rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub id: i64,
    pub endpoint_id: String,
    pub kind: SecretKind,
    pub secret: String,
    pub created_at: Millis,
    /// When set, the secret stops being used at this time (rotation grace period).
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    /// The payload as JSON text (already validated).
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
    /// The inbound source that produced the event, if any.
    pub source_id: Option<String>,
    /// When set, deliveries are created for exactly these endpoints (those that exist), whatever
    /// their event-type filter; when `None`, for every endpoint subscribed to the event type.
    pub only_endpoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
    pub source_id: Option<String>,
}

/// Ask `create_event` to lease the new deliveries to this dispatcher right away (the in-process
/// fast path), instead of leaving them for the claim loop.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub owner: String,
    pub until: Millis,
    /// At most this many deliveries are leased; the rest are left due for the claim loop.
    pub max: usize,
}

#[derive(Debug, Clone)]
pub struct CreatedDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub leased: bool,
}

#[derive(Debug, Clone)]
pub enum CreateEventResult {
    Created {
        event: Event,
        deliveries: Vec<CreatedDelivery>,
    },
    /// The idempotency key was used before (within its lifetime): the first event.
    Duplicate { event: Event, deliveries: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    /// The endpoint is disabled; the delivery waits until it is enabled again.
    Paused,
    /// The endpoint was deleted.
    Cancelled,
}

impl DeliveryStatus {
    pub const fn as_i64(self) -> i64 {
        match self {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Succeeded => 1,
            DeliveryStatus::Failed => 2,
            DeliveryStatus::Paused => 3,
            DeliveryStatus::Cancelled => 4,
        }
    }
    pub fn from_i64(v: i64) -> DeliveryStatus {
        match v {
            0 => DeliveryStatus::Pending,
            1 => DeliveryStatus::Succeeded,
            2 => DeliveryStatus::Failed,
            3 => DeliveryStatus::Paused,
            _ => DeliveryStatus::Cancelled,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Paused => "paused",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            "paused" => DeliveryStatus::Paused,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    pub attempt_count: i64,
    pub next_attempt_at: Millis,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: String,
    pub attempt_no: i64,
    pub started_at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    /// The first bytes of the response body (lossy UTF-8), at most 4 KiB.
    pub response_body: Option<String>,
    pub response_truncated: bool,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    /// The local address the request left from (the egress address).
    pub local_addr: Option<String>,
    pub remote_addr: Option<String>,
    pub outcome: String,
    /// The request headers as sent, secrets masked (JSON array of `[name, value]` pairs, as the
    /// server wrote it). `None` for attempts recorded before headers were kept.
    pub request_headers: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub attempt_no: i64,
    pub started_at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub response_body: Option<String>,
    pub response_truncated: bool,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub local_addr: Option<String>,
    pub remote_addr: Option<String>,
    /// The request headers as sent, secrets masked (opaque JSON text written by the server).
    pub request_headers: Option<String>,
}

/// A delivery claimed by a dispatcher, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub payload: std::sync::Arc<str>,
    pub event_created_at: Millis,
    pub attempt_count: i64,
    pub lease_until: Millis,
}

/// What happens to a delivery after an attempt (or instead of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    /// Try again at this time.
    Retry {
        at: Millis,
    },
    /// Final failure.
    Failed,
    /// Not attempted (rate limit): make it due again at this time without counting an attempt.
    Defer {
        at: Millis,
    },
    /// The endpoint no longer exists.
    Cancel,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: String,
    pub endpoint_id: String,
    pub attempt: Option<NewAttempt>,
    pub next: Next,
    /// The lease the delivery was claimed under: its owner (the dispatcher) and its end
    /// ([`Claimed::lease_until`]). An outcome moves the delivery only while this is still its
    /// lease; a late one (the lease expired and passed on, or was released) changes nothing
    /// and its attempt is logged as `superseded` (see the store's state machine).
    pub lease_owner: String,
    pub lease_until: Millis,
}

/// The circuit breaker: an endpoint is disabled after `failure_threshold` consecutive failed
/// attempts spanning at least `min_failing_ms`.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub enabled: bool,
    pub failure_threshold: i64,
    pub min_failing_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrippedEndpoint {
    pub endpoint_id: String,
    pub consecutive_failures: i64,
    pub failing_since: Millis,
}

/// Which events a listing returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events of these types (empty: every type).
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub event_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub status: Option<DeliveryStatus>,
}

/// Keyset pagination: newest first, items with ids strictly below `before`; at most `limit`
/// items and, past the first, at most `max_bytes` of stored data (see [`crate::Listed`]).
#[derive(Debug, Clone)]
pub struct Page {
    pub before: Option<String>,
    pub limit: usize,
    /// The page stops before the row that would bring its stored bytes over this; a row larger
    /// than this alone still makes a page of its own.
    pub max_bytes: usize,
}

impl Page {
    /// The byte bound of a page unless the caller sets one (4 MiB).
    pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

    /// Up to `limit` items below `before`, within [`Page::DEFAULT_MAX_BYTES`].
    pub fn new(before: Option<String>, limit: usize) -> Page {
        Page {
            before,
            limit,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Page {
        self.max_bytes = max_bytes;
        self
    }
}

/// A page of a delivery's attempts: oldest first, attempts after the one with id `after`; at
/// most `limit` and, past the first, at most `max_bytes` of stored data.
#[derive(Debug, Clone)]
pub struct AttemptPage {
    pub after: Option<i64>,
    pub limit: usize,
    pub max_bytes: usize,
}

impl Default for AttemptPage {
    /// From the first attempt, up to 1000 within [`Page::DEFAULT_MAX_BYTES`].
    fn default() -> Self {
        AttemptPage {
            after: None,
            limit: 1000,
            max_bytes: Page::DEFAULT_MAX_BYTES,
        }
    }
}

/// Deliveries by status (`GET /api/v1/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryCounts {
    pub pending: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub paused: i64,
    pub cancelled: i64,
    /// Pending deliveries whose time has come and that no dispatcher holds.
    pub due: i64,
    /// Age in milliseconds of the oldest due delivery (0 when none).
    pub oldest_due_age_ms: i64,
}

/// The dispatch queue as monitoring sees it (see [`crate::Store::queue_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Pending deliveries whose time has come and that no dispatcher holds, counted up to the
    /// cap asked for.
    pub due: i64,
    /// True when `due` stopped at the cap (there may be more).
    pub due_capped: bool,
    /// `next_attempt_at` of the oldest due delivery.
    pub oldest_due_at: Option<Millis>,
}

/// What one [`crate::Store::purge_finished`] call deleted. Each count is at most the `batch`
/// asked for; call again until [`PurgeCounts::total`] is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    /// Succeeded, failed and cancelled deliveries.
    pub deliveries: u64,
    /// Attempts of those deliveries.
    pub attempts: u64,
    /// Events left with no delivery (and no live idempotency key).
    pub events: u64,
    pub idempotency_keys: u64,
}

impl PurgeCounts {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.deliveries
            .saturating_add(self.attempts)
            .saturating_add(self.events)
            .saturating_add(self.idempotency_keys)
    }
}

/// A time range cut into equal buckets, for the console's charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    /// Inclusive start (the start of the first bucket).
    pub since: Millis,
    /// Exclusive end.
    pub until: Millis,
    /// Bucket width in milliseconds (> 0).
    pub bucket_ms: i64,
}

impl StatsRange {
    /// At most this many buckets per query (the API refuses more).
    pub const MAX_BUCKETS: i64 = 1000;

    /// Whether the range is usable: `since < until`, a positive bucket, at most
    /// [`StatsRange::MAX_BUCKETS`] buckets.
    pub fn is_valid(&self) -> bool {
        self.bucket_ms > 0
            && self.since < self.until
            && self.since >= 0
            && (self.until - self.since - 1) / self.bucket_ms < Self::MAX_BUCKETS
    }

    /// The start of the bucket that `at` falls in.
    pub fn bucket_start(&self, at: Millis) -> Millis {
        self.since + (at - self.since) / self.bucket_ms * self.bucket_ms
    }
}

/// Deliveries finished in one bucket: counted by completion time, final outcomes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeliveryStatBucket {
    pub bucket_start: Millis,
    pub succeeded: i64,
    pub failed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ids_are_the_lower_case_ulid() {
        for _ in 0..100 {
            let u = ulid::Ulid::new();
            assert_eq!(
                prefixed_ulid("evt", u),
                format!("evt_{}", u.to_string().to_ascii_lowercase())
            );
        }
        let u = ulid::Ulid::from_parts(0, 0);
        assert_eq!(prefixed_ulid("aud", u), "aud_00000000000000000000000000");
        let id = new_prefixed_id("ep");
        assert_eq!(id.len(), 3 + ulid::ULID_LEN);
        assert!(id.starts_with("ep_"));
        assert_eq!(id, id.to_ascii_lowercase());
        assert!(ulid::Ulid::from_string(&id[3..]).is_ok());
    }
}
