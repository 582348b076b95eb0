//! Retention: finished deliveries (with their attempts), expired idempotency keys and events
//! that have nothing left are deleted in bounded batches, so tables do not grow without bound.
//! Every instance may run the sweep; the batches are small, independent transactions, so
//! several sweepers on one PostgreSQL database only share the work.

use crate::clock::SharedClock;
use hookwarden_store::{Millis, PurgeCounts, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Rows per table per transaction: small enough not to hold locks or the SQLite writer long.
pub const BATCH: usize = 1000;
/// Most batches per sweep; the rest waits for the next sweep.
const MAX_BATCHES: usize = 10_000;

/// Deletes everything finished before `older_than`, batch after batch, until nothing is left
/// (or `MAX_BATCHES` batches ran). Returns what was deleted.
pub async fn sweep(
    store: &dyn Store,
    older_than: Millis,
    batch: usize,
) -> Result<PurgeCounts, StoreError> {
    let mut total = PurgeCounts::default();
    for _ in 0..MAX_BATCHES {
        let c = store.purge_finished(older_than, batch).await?;
        if c.total() == 0 {
            break;
        }
        total.deliveries += c.deliveries;
        total.attempts += c.attempts;
        total.events += c.events;
        total.idempotency_keys += c.idempotency_keys;
        // Let the dispatcher's writes through between batches.
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// Runs [`sweep`] every `interval`, deleting what finished more than `keep` ago on `clock`. A
/// `keep` of zero disables retention (no task is started).
pub fn spawn(
    store: Arc<dyn Store>,
    keep: Duration,
    interval: Duration,
    clock: SharedClock,
) -> Option<tokio::task::JoinHandle<()>> {
    if keep.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let older_than = clock
                .now_millis()
                .saturating_sub(keep.as_millis() as Millis);
            match sweep(&*store, older_than, BATCH).await {
                Ok(c) if c.total() > 0 => {
                    metrics::counter!("hookwarden_retention_deleted_total", "table" => "deliveries")
                        .increment(c.deliveries);
                    metrics::counter!("hookwarden_retention_deleted_total", "table" => "attempts")
                        .increment(c.attempts);
                    metrics::counter!("hookwarden_retention_deleted_total", "table" => "events")
                        .increment(c.events);
                    metrics::counter!(
                        "hookwarden_retention_deleted_total",
                        "table" => "idempotency_keys"
                    )
                    .increment(c.idempotency_keys);
                    info!(
                        deliveries = c.deliveries,
                        attempts = c.attempts,
                        events = c.events,
                        idempotency_keys = c.idempotency_keys,
                        "retention sweep deleted old rows"
                    );
                }
                Ok(_) => debug!("retention sweep: nothing to delete"),
                Err(StoreError::Closed) => return,
                Err(e) => warn!(error = %e, "retention sweep failed; will try again"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwarden_store::sqlite::{SqliteOptions, SqliteStore};

    #[tokio::test]
    async fn sweep_on_an_empty_store_deletes_nothing_and_disabled_spawns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap(),
        );
        let c = sweep(&*store, hookwarden_store::now_millis(), 10)
            .await
            .unwrap();
        assert_eq!(c.total(), 0);
        let clock = crate::clock::system();
        assert!(spawn(store, Duration::ZERO, Duration::from_secs(1), clock).is_none());
    }
}
