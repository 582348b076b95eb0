//! [`ProbeStore`] for PostgreSQL. Same semantics as the SQLite backend (the conformance suite
//! is the contract).

use super::{MAX_TRIES, PgStore, TxError, limit_of, names_nothing};
use crate::probes::*;
use crate::row::{self, PROBE_COLS};
use crate::{Listed, Millis, Page, Result, SecretRecord, StoreError};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl ProbeStore for PgStore {
    async fn claim_probe(
        &self,
        probe: ProbeRecord,
        min_interval_ms: i64,
        keep: usize,
    ) -> Result<Claim> {
        probe.check_storable()?;
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        in_tx!(self.pool, |tx| {
            // Locks the endpoint: instances decide one at a time, and a delete waits.
            let exists = sqlx::query(
                "SELECT 1 FROM endpoints WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            )
            .bind(&probe.endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(TxError::from(StoreError::NotFound));
            }
            let (last,): (Option<Millis>,) = sqlx::query_as(
                "SELECT MAX(created_at) FROM endpoint_probes WHERE endpoint_id = $1",
            )
            .bind(&probe.endpoint_id)
            .fetch_one(&mut *tx)
            .await?;
            match last {
                Some(last) if probe.created_at < last.saturating_add(min_interval_ms) => {
                    Claim::TooSoon { last_at: last }
                }
                _ => {
                    sqlx::query(
                        "INSERT INTO endpoint_probes \
                         (id, endpoint_id, created_at, triggered_by, grade, report) \
                         VALUES ($1, $2, $3, $4, $5, '{}')",
                    )
                    .bind(&probe.id)
                    .bind(&probe.endpoint_id)
                    .bind(probe.created_at)
                    .bind(&probe.trigger)
                    .bind(RUNNING)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "DELETE FROM endpoint_probes WHERE endpoint_id = $1 AND id < \
                         (SELECT id FROM endpoint_probes WHERE endpoint_id = $1 \
                          ORDER BY id DESC LIMIT 1 OFFSET $2 - 1)",
                    )
                    .bind(&probe.endpoint_id)
                    .bind(keep)
                    .execute(&mut *tx)
                    .await?;
                    Claim::Claimed
                }
            }
        })
    }

    async fn finish_probe(&self, id: &str, grade: &str, report: String) -> Result<()> {
        crate::text::storable("probe grade", grade)?;
        crate::text::storable("probe report", &report)?;
        if names_nothing(id) {
            return Ok(());
        }
        sqlx::query("UPDATE endpoint_probes SET grade = $2, report = $3 WHERE id = $1")
            .bind(id)
            .bind(grade)
            .bind(&report)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_probes(&self, endpoint_id: &str, page: Page) -> Result<Listed<ProbeRecord>> {
        let limit = limit_of(&page);
        if names_nothing(endpoint_id) {
            return Ok(Listed::of_one_more(Vec::new(), limit));
        }
        let rows = sqlx::query(&format!(
            "SELECT {PROBE_COLS} FROM endpoint_probes WHERE endpoint_id = $1 \
             AND grade <> 'running' AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(endpoint_id)
        .bind(page.before.as_deref().filter(|b| !names_nothing(b)))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.iter().map(row::probe).collect::<Result<Vec<_>>>()?;
        Ok(Listed::of_one_more(rows, limit))
    }

    async fn retired_secret(
        &self,
        endpoint_id: &str,
        kind: crate::SecretKind,
        now: Millis,
        retired_after: Millis,
    ) -> Result<Option<SecretRecord>> {
        if names_nothing(endpoint_id) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, endpoint_id, secret, created_at, expires_at, kind FROM endpoint_secrets \
             WHERE endpoint_id = $1 AND expires_at <= $2 AND expires_at > $3 AND kind = $4 \
             ORDER BY expires_at DESC, id DESC LIMIT 1",
        )
        .bind(endpoint_id)
        .bind(now)
        .bind(retired_after)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row::secret).transpose()
    }

    async fn purge_retired_secrets(&self, retired_before: Millis, batch: usize) -> Result<u64> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        Ok(sqlx::query(
            "DELETE FROM endpoint_secrets WHERE id IN (SELECT id FROM endpoint_secrets \
             WHERE expires_at IS NOT NULL AND expires_at < $1 LIMIT $2)",
        )
        .bind(retired_before)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn endpoints_due_for_probe(&self, since: Millis, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(100);
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT e.id FROM endpoints e WHERE e.deleted_at IS NULL AND e.enabled \
             AND NOT EXISTS (SELECT 1 FROM endpoint_probes p \
                             WHERE p.endpoint_id = e.id AND p.created_at > $1) \
             ORDER BY e.id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
