//! [`RecoveryStore`] for PostgreSQL. Same semantics as the SQLite backend (the conformance suite
//! is the contract): new recoveries are decided one at a time under an advisory lock, a step
//! holds its job's row lock, and the deliveries it makes due again are row-locked and changed
//! only while still failed.

use super::{MAX_TRIES, PgStore, TxError, limit_of, names_nothing};
use crate::recoveries::*;
use crate::row::{self, DELIVERY_COLS, RECOVERY_COLS};
use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use std::time::Duration;

/// `pg_advisory_xact_lock` key serialising the creation of recoveries ("hw-rcvry").
const CREATE_LOCK: i64 = 0x6877_2d72_6376_7279;

/// The failed deliveries a filter selects, after a cursor, in sending order. Parameters:
/// $1 endpoint, $2 since, $3 until, $4 exact type, $5 type prefix, $6 cursor time, $7 cursor id.
const SELECTED: &str = "FROM deliveries d \
     JOIN endpoints ep ON ep.id = d.endpoint_id AND ep.deleted_at IS NULL \
     JOIN events e ON e.id = d.event_id \
     WHERE d.status = 2 \
     AND ($1::text IS NULL OR d.endpoint_id = $1) \
     AND d.created_at >= $2 AND d.created_at < $3 \
     AND ($4::text IS NULL OR e.event_type = $4) \
     AND ($5::text IS NULL OR left(e.event_type, length($5)) = $5) \
     AND ($6::bigint IS NULL OR (d.created_at, d.id) > ($6, $7::text))";

#[async_trait]
impl RecoveryStore for PgStore {
    async fn create_recovery(
        &self,
        id: &str,
        filter: RecoveryFilter,
        now: Millis,
    ) -> Result<Recovery> {
        filter.check_storable(id)?;
        let (exact, prefix) = filter.type_params();
        in_tx!(self.pool, |tx| {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CREATE_LOCK)
                .execute(&mut *tx)
                .await?;
            let running: Vec<Recovery> = sqlx::query(&format!(
                "SELECT {RECOVERY_COLS} FROM recoveries WHERE status = 'running'"
            ))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(row::recovery)
            .collect::<Result<_>>()?;
            if let Some(r) = overlapping(&running, &filter) {
                return Err(TxError::from(StoreError::Conflict(format!(
                    "recovery {} is running over an overlapping window",
                    r.id
                ))));
            }
            let (total,): (i64,) = sqlx::query_as(&format!("SELECT count(*) {SELECTED}"))
                .bind(&filter.endpoint_id)
                .bind(filter.since)
                .bind(filter.until)
                .bind(&exact)
                .bind(&prefix)
                .bind(None::<i64>)
                .bind(None::<String>)
                .fetch_one(&mut *tx)
                .await?;
            let r = sqlx::query(&format!(
                "INSERT INTO recoveries (id, endpoint_id, event_type, since_at, until_at, status, \
                 total, requeued, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, 0, $7, $7) RETURNING {RECOVERY_COLS}"
            ))
            .bind(id)
            .bind(&filter.endpoint_id)
            .bind(&filter.event_type)
            .bind(filter.since)
            .bind(filter.until)
            .bind(total)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            row::recovery(&r)?
        })
    }

    async fn get_recovery(&self, id: &str) -> Result<Option<Recovery>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!(
            "SELECT {RECOVERY_COLS} FROM recoveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(row::recovery)
        .transpose()
    }

    async fn list_recoveries(&self, page: Page) -> Result<Listed<Recovery>> {
        let limit = limit_of(&page);
        let before = page.before.filter(|b| !names_nothing(b));
        let rows = sqlx::query(&format!(
            "SELECT {RECOVERY_COLS} FROM recoveries WHERE ($1::text IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(&before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row::recovery)
        .collect::<Result<Vec<_>>>()?;
        Ok(Listed::of_one_more(rows, limit))
    }

    async fn cancel_recovery(&self, id: &str, now: Millis) -> Result<Option<Recovery>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE recoveries SET status = 'cancelled', finished_at = $2, updated_at = $2, \
             lease_owner = NULL WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.get_recovery(id).await
    }

    async fn claim_recovery(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Recovery>> {
        let r = sqlx::query(&format!(
            "UPDATE recoveries SET lease_owner = $1, lease_until = $3 WHERE id = \
             (SELECT id FROM recoveries WHERE status = 'running' \
              AND (lease_owner IS NULL OR lease_until <= $2) \
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {RECOVERY_COLS}"
        ))
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(row::recovery).transpose()
    }

    async fn recovery_step(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        batch: usize,
    ) -> Result<RecoveryStep> {
        if names_nothing(id) {
            return Ok(RecoveryStep {
                recovery: None,
                requeued: Vec::new(),
                owned: false,
            });
        }
        let batch = i64::try_from(batch.min(10_000)).unwrap_or(0);
        in_tx!(self.pool, |tx| {
            let state: Option<(Option<String>, Option<Millis>, Option<String>)> = sqlx::query_as(
                "SELECT lease_owner, cursor_at, cursor_id FROM recoveries \
                 WHERE id = $1 AND status = 'running' FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let job = sqlx::query(&format!(
                "SELECT {RECOVERY_COLS} FROM recoveries WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(row::recovery)
            .transpose()?;
            match (state, job) {
                (Some((Some(lease_owner), cursor_at, cursor_id)), Some(job))
                    if lease_owner == owner =>
                {
                    let (exact, prefix) = job.filter.type_params();
                    let picked: Vec<(String, Millis)> = if batch == 0 {
                        Vec::new()
                    } else {
                        sqlx::query_as(&format!(
                            "SELECT d.id, d.created_at {SELECTED} \
                             ORDER BY d.created_at, d.id LIMIT $8 FOR UPDATE OF d"
                        ))
                        .bind(&job.filter.endpoint_id)
                        .bind(job.filter.since)
                        .bind(job.filter.until)
                        .bind(&exact)
                        .bind(&prefix)
                        .bind(cursor_at)
                        .bind(&cursor_id)
                        .bind(batch)
                        .fetch_all(&mut *tx)
                        .await?
                    };
                    let ids: Vec<&str> = picked.iter().map(|(d, _)| d.as_str()).collect();
                    let requeued: Vec<String> = if ids.is_empty() {
                        Vec::new()
                    } else {
                        let mut done: Vec<(String, i64)> = sqlx::query_as(
                            "UPDATE deliveries d SET \
                             status = CASE WHEN ep.enabled THEN 0 ELSE 3 END, \
                             next_attempt_at = $2 + x.ord - 1, lease_owner = NULL, \
                             completed_at = NULL, updated_at = $2 \
                             FROM UNNEST($1::text[]) WITH ORDINALITY AS x(id, ord), endpoints ep \
                             WHERE d.id = x.id AND ep.id = d.endpoint_id AND d.status = 2 \
                             RETURNING d.id, x.ord",
                        )
                        .bind(&ids)
                        .bind(now)
                        .fetch_all(&mut *tx)
                        .await?;
                        done.sort_by_key(|(_, ord)| *ord);
                        done.into_iter().map(|(d, _)| d).collect()
                    };
                    let finished = batch > 0 && (picked.len() as i64) < batch;
                    let (cursor_at, cursor_id) = match picked.last() {
                        Some((d, at)) => (Some(*at), Some(d.clone())),
                        None => (cursor_at, cursor_id),
                    };
                    let r = sqlx::query(&format!(
                        "UPDATE recoveries SET requeued = requeued + $2, cursor_at = $3, \
                         cursor_id = $4, lease_until = $5, updated_at = $6, \
                         status = CASE WHEN $7 THEN 'completed' ELSE status END, \
                         finished_at = CASE WHEN $7 THEN $6 ELSE finished_at END, \
                         lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END \
                         WHERE id = $1 RETURNING {RECOVERY_COLS}"
                    ))
                    .bind(id)
                    .bind(requeued.len() as i64)
                    .bind(cursor_at)
                    .bind(&cursor_id)
                    .bind(lease_until)
                    .bind(now)
                    .bind(finished)
                    .fetch_one(&mut *tx)
                    .await?;
                    RecoveryStep {
                        recovery: Some(row::recovery(&r)?),
                        requeued,
                        owned: true,
                    }
                }
                (_, job) => RecoveryStep {
                    recovery: job,
                    requeued: Vec::new(),
                    owned: false,
                },
            }
        })
    }

    async fn count_waiting(&self, ids: &[String], cutoff: Millis) -> Result<u64> {
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|i| !names_nothing(i))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 0 \
             AND (lease_owner IS NOT NULL OR next_attempt_at <= $2)",
        )
        .bind(&ids)
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn purge_recoveries(&self, finished_before: Millis, batch: usize) -> Result<u64> {
        let batch = i64::try_from(batch.clamp(1, 10_000)).unwrap_or(1000);
        let n = sqlx::query(
            "DELETE FROM recoveries WHERE id IN (SELECT id FROM recoveries \
             WHERE status <> 'running' AND finished_at < $1 LIMIT $2)",
        )
        .bind(finished_before)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    async fn add_delivery(
        &self,
        delivery_id: &str,
        event_id: &str,
        endpoint_id: &str,
        now: Millis,
    ) -> Result<AddDelivery> {
        crate::text::storable("delivery id", delivery_id)?;
        if names_nothing(event_id) {
            return Ok(AddDelivery::NoEvent);
        }
        if names_nothing(endpoint_id) {
            return Ok(AddDelivery::NoEndpoint);
        }
        in_tx!(self.pool, |tx| {
            let event = sqlx::query("SELECT 1 FROM events WHERE id = $1")
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
            // Share-locked like `create_event`: a concurrent disable or delete either finishes
            // first (and we see it) or waits and then pauses or cancels what we add.
            let enabled: Option<bool> = sqlx::query_scalar(
                "SELECT enabled FROM endpoints WHERE id = $1 AND deleted_at IS NULL FOR SHARE",
            )
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
            if event.is_none() {
                AddDelivery::NoEvent
            } else if let Some(enabled) = enabled {
                let existing = sqlx::query(&format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE event_id = $1 \
                     AND endpoint_id = $2 ORDER BY id LIMIT 1"
                ))
                .bind(event_id)
                .bind(endpoint_id)
                .fetch_optional(&mut *tx)
                .await?;
                match existing {
                    Some(r) => AddDelivery::Exists(row::delivery(&r)?),
                    None => {
                        let r = sqlx::query(&format!(
                            "INSERT INTO deliveries (id, event_id, endpoint_id, status, \
                             attempt_count, next_attempt_at, lease_owner, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, 0, $5, NULL, $5, $5) RETURNING {DELIVERY_COLS}"
                        ))
                        .bind(delivery_id)
                        .bind(event_id)
                        .bind(endpoint_id)
                        .bind(if enabled { 0i16 } else { 3i16 })
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        AddDelivery::Created(row::delivery(&r)?)
                    }
                }
            } else {
                AddDelivery::NoEndpoint
            }
        })
    }
}
