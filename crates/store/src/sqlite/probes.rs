//! [`ProbeStore`] for SQLite.

use super::{SqliteStore, limit_of};
use crate::probes::*;
use crate::row::{self, PROBE_COLS};
use crate::{Listed, Millis, Page, Result, SecretRecord, StoreError};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl ProbeStore for SqliteStore {
    async fn claim_probe(
        &self,
        probe: ProbeRecord,
        min_interval_ms: i64,
        keep: usize,
    ) -> Result<Claim> {
        probe.check_storable()?;
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.write(move |c| {
            let exists: Option<i64> = c
                .prepare_cached("SELECT 1 FROM endpoints WHERE id = ?1 AND deleted_at IS NULL")?
                .query_row([&probe.endpoint_id], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            let last: Option<Millis> = c
                .prepare_cached("SELECT MAX(created_at) FROM endpoint_probes WHERE endpoint_id = ?1")?
                .query_row([&probe.endpoint_id], |r| r.get(0))?;
            if let Some(last) = last
                && probe.created_at < last.saturating_add(min_interval_ms)
            {
                return Ok(Claim::TooSoon { last_at: last });
            }
            c.prepare_cached(
                "INSERT INTO endpoint_probes (id, endpoint_id, created_at, triggered_by, grade, report) \
                 VALUES (?1, ?2, ?3, ?4, ?5, '{}')",
            )?
            .execute(params![probe.id, probe.endpoint_id, probe.created_at, probe.trigger, RUNNING])?;
            c.prepare_cached(
                "DELETE FROM endpoint_probes WHERE endpoint_id = ?1 AND id < \
                 (SELECT id FROM endpoint_probes WHERE endpoint_id = ?1 \
                  ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1)",
            )?
            .execute(params![probe.endpoint_id, keep])?;
            Ok(Claim::Claimed)
        })
        .await
    }

    async fn finish_probe(&self, id: &str, grade: &str, report: String) -> Result<()> {
        crate::text::storable("probe grade", grade)?;
        crate::text::storable("probe report", &report)?;
        let (id, grade) = (id.to_owned(), grade.to_owned());
        self.write(move |c| {
            c.prepare_cached("UPDATE endpoint_probes SET grade = ?2, report = ?3 WHERE id = ?1")?
                .execute(params![id, grade, report])?;
            Ok(())
        })
        .await
    }

    async fn list_probes(&self, endpoint_id: &str, page: Page) -> Result<Listed<ProbeRecord>> {
        let id = endpoint_id.to_owned();
        self.read(move |c| {
            let limit = limit_of(&page);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROBE_COLS} FROM endpoint_probes WHERE endpoint_id = ?1 \
                 AND grade <> 'running' AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![id, page.before, limit + 1], |r| row::probe(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Listed::of_one_more(rows, limit))
        })
        .await
    }

    async fn retired_secret(
        &self,
        endpoint_id: &str,
        kind: crate::SecretKind,
        now: Millis,
        retired_after: Millis,
    ) -> Result<Option<SecretRecord>> {
        let id = endpoint_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, endpoint_id, secret, created_at, expires_at, kind FROM endpoint_secrets \
                 WHERE endpoint_id = ?1 AND expires_at <= ?2 AND expires_at > ?3 AND kind = ?4 \
                 ORDER BY expires_at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![id, now, retired_after, kind.as_str()], |r| {
                row::secret(r)
            })
            .optional()?)
        })
        .await
    }

    async fn purge_retired_secrets(&self, retired_before: Millis, batch: usize) -> Result<u64> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM endpoint_secrets WHERE id IN (SELECT id FROM endpoint_secrets \
                     WHERE expires_at IS NOT NULL AND expires_at < ?1 LIMIT ?2)",
                )?
                .execute(params![retired_before, batch])?;
            Ok(n as u64)
        })
        .await
    }

    async fn endpoints_due_for_probe(&self, since: Millis, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(100);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.id FROM endpoints e WHERE e.deleted_at IS NULL AND e.enabled = 1 \
                 AND NOT EXISTS (SELECT 1 FROM endpoint_probes p \
                                 WHERE p.endpoint_id = e.id AND p.created_at > ?1) \
                 ORDER BY e.id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![since, limit], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::fresh;

    #[tokio::test]
    async fn probe_store_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::probe_store(&s).await;
    }
}
