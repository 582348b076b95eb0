#![forbid(unsafe_code)]
//! Hookwarden's storage: domain types, the [`Store`] trait, and its backends.
//!
//! The embedded SQLite backend ([`sqlite::SqliteStore`]) is the default. Every write goes
//! through one writer thread that commits many callers' writes in one transaction (group
//! commit), so durability costs one fsync per batch, not per request.
//!
//! The PostgreSQL backend ([`postgres::PgStore`], cargo feature `postgres`, on by default) lets
//! several instances share one database.

/// A delivery status as the SQL literal both backends store ([`DeliveryStatus::as_i64`]), for
/// statements built with `concat!`: `concat!("… WHERE status = ", st!(pending))`. A test keeps
/// the two in step.
macro_rules! st {
    (pending) => {
        "0"
    };
    (succeeded) => {
        "1"
    };
    (failed) => {
        "2"
    };
    (paused) => {
        "3"
    };
    (cancelled) => {
        "4"
    };
}

mod api_keys;
mod certs;
#[doc(hidden)]
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod event_types;
pub mod filter;
mod listing;
mod machine;
#[cfg(feature = "postgres")]
pub mod postgres;
mod probes;
mod recoveries;
mod row;
mod sealed;
mod sources;
pub mod sqlite;
pub mod text;
mod types;

pub use api_keys::*;
pub use certs::*;
pub use error::{DbError, StoreError};
pub use event_types::*;
pub use listing::Listed;
pub use probes::*;
pub use recoveries::*;
pub use sealed::*;
pub use sources::*;
pub use types::*;

use async_trait::async_trait;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Hookwarden persists. Implementations must be safe to share between tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// Returns true exactly once per database: on the first call ever (first start).
    async fn take_first_start(&self) -> Result<bool>;

    // --- endpoints ---
    async fn create_endpoint(&self, endpoint: Endpoint, secret: String) -> Result<()>;
    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>>;
    async fn list_endpoints(&self, page: Page) -> Result<Listed<Endpoint>>;
    /// Replaces the mutable fields (url, description, event types, headers, developer payload,
    /// schemes, rate limit, client certificate). Enabling/disabling goes through
    /// [`Store::set_endpoint_enabled`]. Returns false when the endpoint does not exist.
    async fn update_endpoint(&self, endpoint: Endpoint) -> Result<bool>;
    /// Disabling pauses the endpoint's pending deliveries; enabling resumes them (due now) and
    /// resets the circuit-breaker counters. Returns false when the endpoint does not exist.
    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: Millis,
    ) -> Result<bool>;
    /// Soft-deletes the endpoint and cancels its undelivered deliveries.
    async fn delete_endpoint(&self, id: &str, now: Millis) -> Result<bool>;
    /// Secrets usable at `now`, newest first.
    async fn active_secrets(&self, endpoint_id: &str, now: Millis) -> Result<Vec<SecretRecord>>;
    /// Adds `new_secret` as the current HMAC secret; the previously active HMAC secrets expire
    /// at `old_expires_at` (never later than an expiry they already had).
    async fn rotate_secret(
        &self,
        endpoint_id: &str,
        new_secret: String,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool>;
    /// [`Store::rotate_secret`] for the endpoint's ed25519 signing keys (`standard-webhooks-v1a`),
    /// which rotate on their own; with none yet, adds the first.
    async fn rotate_signing_key(
        &self,
        endpoint_id: &str,
        new_key: String,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool>;

    // --- events and deliveries ---
    /// Stores the event and one delivery per matching endpoint in one transaction.
    /// `idempotency_ttl_ms`: a key used within this time returns the first event.
    async fn create_event(
        &self,
        event: NewEvent,
        lease: Option<LeaseRequest>,
        idempotency_ttl_ms: i64,
    ) -> Result<CreateEventResult>;
    async fn get_event(&self, id: &str) -> Result<Option<Event>>;
    /// Events newest first, optionally only some types.
    async fn list_events(&self, filter: EventFilter, page: Page) -> Result<Listed<Event>>;
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>>;
    async fn list_deliveries(&self, filter: DeliveryFilter, page: Page)
    -> Result<Listed<Delivery>>;
    /// A delivery's attempts, oldest first.
    async fn list_attempts(&self, delivery_id: &str, page: AttemptPage) -> Result<Listed<Attempt>>;
    /// Succeeded and failed deliveries per bucket of completion time (`endpoint_id`: one
    /// endpoint's; `None`: all). Buckets without any are absent; a range that is not valid
    /// ([`StatsRange::is_valid`]) has none.
    async fn delivery_stats(
        &self,
        endpoint_id: Option<&str>,
        range: StatsRange,
    ) -> Result<Vec<DeliveryStatBucket>>;
    /// Makes a delivery due now (whatever its state, unless its endpoint was deleted).
    async fn retry_delivery(&self, id: &str, now: Millis) -> Result<Option<Delivery>>;

    // --- dispatching ---
    /// Leases up to `limit` due deliveries of enabled endpoints to `owner` until `lease_until`.
    async fn claim_due(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Claimed>>;
    /// Records attempts and moves deliveries on, in one transaction; updates the endpoints'
    /// failure counters and disables the endpoints that trip the breaker (returned).
    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
        breaker: BreakerPolicy,
        now: Millis,
    ) -> Result<Vec<TrippedEndpoint>>;
    /// Releases leases so the deliveries are due at once: those of `owner`, or all of them.
    async fn release_leases(&self, owner: Option<&str>, now: Millis) -> Result<u64>;
    async fn delivery_counts(&self, now: Millis) -> Result<DeliveryCounts>;
    /// The due queue for monitoring, cheap whatever the table size: due deliveries counted up
    /// to `cap` (a range scan of the due index that stops there) and the oldest due time (one
    /// index seek). [`Store::delivery_counts`] counts every row; this never does.
    async fn queue_stats(&self, now: Millis, cap: i64) -> Result<QueueStats>;

    // --- retention ---
    /// Deletes, in bounded batches, what is finished and older than `older_than`: succeeded,
    /// failed and cancelled deliveries completed before it (with their attempts), idempotency
    /// keys created before it, and events created before it that have no delivery and no
    /// idempotency key left. At most `batch` rows per table go per call (a delivery goes only
    /// once all its attempts are gone), so a caller loops until [`PurgeCounts::total`] is 0.
    /// Keys are deleted by age alone: keep `older_than` further back than the idempotency TTL.
    async fn purge_finished(&self, older_than: Millis, batch: usize) -> Result<PurgeCounts>;

    /// A cheap round trip to the database (for health checks): no table is read.
    async fn ping(&self) -> Result<()>;

    // --- several instances ---
    /// True when other instances may share this database (their caches must hear of changes).
    fn is_shared(&self) -> bool {
        false
    }
    /// Tells every instance sharing the database (this one included) that a cached object
    /// changed. Call it after the change is committed. A single-instance backend does nothing.
    async fn announce_change(&self, _change: &Change) -> Result<()> {
        Ok(())
    }
    /// Changes announced by any instance, as they arrive. `None` for single-instance backends.
    /// [`Change::All`] means announcements may have been missed (a lost connection): drop every
    /// cached object.
    fn watch_changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
}

/// A change to an object that instances cache, announced across instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Endpoint(String),
    Source(String),
    Certificate(String),
    /// Forget everything cached.
    All,
}

impl Change {
    /// The wire form (`endpoint:<id>`, `source:<id>`, `certificate:<id>`, `all`).
    pub fn encode(&self) -> String {
        match self {
            Change::Endpoint(id) => format!("endpoint:{id}"),
            Change::Source(id) => format!("source:{id}"),
            Change::Certificate(id) => format!("certificate:{id}"),
            Change::All => "all".into(),
        }
    }

    /// Parses the wire form; anything unknown (a newer version's kind) reads as `All`, the
    /// safe over-approximation.
    pub fn decode(s: &str) -> Change {
        match s.split_once(':') {
            Some(("endpoint", id)) => Change::Endpoint(id.into()),
            Some(("source", id)) => Change::Source(id.into()),
            Some(("certificate", id)) => Change::Certificate(id.into()),
            _ => Change::All,
        }
    }
}

#[cfg(test)]
mod change_tests {
    use super::Change;

    #[test]
    fn change_round_trips_and_unknown_is_all() {
        for c in [
            Change::Endpoint("ep_1".into()),
            Change::Source("src_2".into()),
            Change::Certificate("cert_3".into()),
            Change::All,
        ] {
            assert_eq!(Change::decode(&c.encode()), c);
        }
        assert_eq!(Change::decode("widget:x"), Change::All);
        assert_eq!(Change::decode(""), Change::All);
    }
}

#[cfg(test)]
mod status_literals {
    use crate::DeliveryStatus;

    #[test]
    fn sql_status_literals_are_the_stored_numbers() {
        for (lit, status) in [
            (st!(pending), DeliveryStatus::Pending),
            (st!(succeeded), DeliveryStatus::Succeeded),
            (st!(failed), DeliveryStatus::Failed),
            (st!(paused), DeliveryStatus::Paused),
            (st!(cancelled), DeliveryStatus::Cancelled),
        ] {
            assert_eq!(lit, status.as_i64().to_string());
        }
    }
}
