//! [`RecoveryStore`] for SQLite: every write runs in the one writer, so decisions (overlap, the
//! cursor) are serial by construction.

use super::{SqliteStore, limit_of};
use crate::recoveries::*;
use crate::row::{self, DELIVERY_COLS, RECOVERY_COLS};
use crate::{DeliveryStatus, Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

/// The failed deliveries a filter selects, after a cursor, in sending order. Parameters:
/// ?1 endpoint, ?2 since, ?3 until, ?4 exact type, ?5 type prefix, ?6 cursor time, ?7 cursor id.
const SELECTED: &str = concat!(
    "FROM deliveries d \
     JOIN endpoints ep ON ep.id = d.endpoint_id AND ep.deleted_at IS NULL \
     JOIN events e ON e.id = d.event_id \
     WHERE d.status = ",
    st!(failed),
    " AND (?1 IS NULL OR d.endpoint_id = ?1) \
     AND d.created_at >= ?2 AND d.created_at < ?3 \
     AND (?4 IS NULL OR e.event_type = ?4) \
     AND (?5 IS NULL OR substr(e.event_type, 1, length(?5)) = ?5) \
     AND (?6 IS NULL OR d.created_at > ?6 OR (d.created_at = ?6 AND d.id > ?7))"
);

fn get(c: &Connection, id: &str) -> Result<Option<Recovery>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {RECOVERY_COLS} FROM recoveries WHERE id = ?1"
    ))?
    .query_row([id], |r| row::recovery(r))
    .optional()?)
}

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn create_recovery(
        &self,
        id: &str,
        filter: RecoveryFilter,
        now: Millis,
    ) -> Result<Recovery> {
        filter.check_storable(id)?;
        let id = id.to_owned();
        self.write(move |c| {
            let running = c
                .prepare_cached(&format!(
                    "SELECT {RECOVERY_COLS} FROM recoveries WHERE status = 'running'"
                ))?
                .query_map([], |r| row::recovery(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if let Some(r) = overlapping(&running, &filter) {
                return Err(StoreError::Conflict(format!(
                    "recovery {} is running over an overlapping window",
                    r.id
                )));
            }
            let (exact, prefix) = filter.type_params();
            let total: i64 = c
                .prepare_cached(&format!("SELECT count(*) {SELECTED}"))?
                .query_row(
                    params![
                        filter.endpoint_id,
                        filter.since,
                        filter.until,
                        exact,
                        prefix,
                        None::<i64>,
                        None::<String>
                    ],
                    |r| r.get(0),
                )?;
            c.prepare_cached(
                "INSERT INTO recoveries (id, endpoint_id, event_type, since_at, until_at, status, \
                 total, requeued, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, 0, ?7, ?7)",
            )?
            .execute(params![
                id,
                filter.endpoint_id,
                filter.event_type,
                filter.since,
                filter.until,
                total,
                now
            ])?;
            get(c, &id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn get_recovery(&self, id: &str) -> Result<Option<Recovery>> {
        let id = id.to_owned();
        self.read(move |c| get(c, &id)).await
    }

    async fn list_recoveries(&self, page: Page) -> Result<Listed<Recovery>> {
        self.read(move |c| {
            let limit = limit_of(&page);
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {RECOVERY_COLS} FROM recoveries WHERE (?1 IS NULL OR id < ?1) \
                     ORDER BY id DESC LIMIT ?2"
                ))?
                .query_map(params![page.before, limit + 1], |r| row::recovery(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Listed::of_one_more(rows, limit))
        })
        .await
    }

    async fn cancel_recovery(&self, id: &str, now: Millis) -> Result<Option<Recovery>> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE recoveries SET status = 'cancelled', finished_at = ?2, updated_at = ?2, \
                 lease_owner = NULL WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![id, now])?;
            get(c, &id)
        })
        .await
    }

    async fn claim_recovery(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Recovery>> {
        let owner = owner.to_owned();
        self.write(move |c| {
            let id: Option<String> = c
                .prepare_cached(
                    "SELECT id FROM recoveries WHERE status = 'running' \
                     AND (lease_owner IS NULL OR lease_until <= ?1) ORDER BY created_at, id LIMIT 1",
                )?
                .query_row([now], |r| r.get(0))
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            c.prepare_cached(
                "UPDATE recoveries SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1",
            )?
            .execute(params![id, owner, lease_until])?;
            get(c, &id)
        })
        .await
    }

    async fn recovery_step(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        batch: usize,
    ) -> Result<RecoveryStep> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        let batch = i64::try_from(batch.min(10_000)).unwrap_or(0);
        self.write(move |c| {
            let state: Option<(Option<String>, Option<Millis>, Option<String>)> = c
                .prepare_cached(
                    "SELECT lease_owner, cursor_at, cursor_id FROM recoveries \
                     WHERE id = ?1 AND status = 'running'",
                )?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((lease_owner, cursor_at, cursor_id)) = state else {
                return Ok(RecoveryStep {
                    recovery: get(c, &id)?,
                    requeued: Vec::new(),
                    owned: false,
                });
            };
            if lease_owner.as_deref() != Some(owner.as_str()) {
                return Ok(RecoveryStep {
                    recovery: get(c, &id)?,
                    requeued: Vec::new(),
                    owned: false,
                });
            }
            let Some(job) = get(c, &id)? else {
                return Err(StoreError::NotFound);
            };
            let (exact, prefix) = job.filter.type_params();
            let picked: Vec<(String, Millis)> = if batch == 0 {
                Vec::new()
            } else {
                c.prepare_cached(&format!(
                    "SELECT d.id, d.created_at {SELECTED} ORDER BY d.created_at, d.id LIMIT ?8"
                ))?
                .query_map(
                    params![
                        job.filter.endpoint_id,
                        job.filter.since,
                        job.filter.until,
                        exact,
                        prefix,
                        cursor_at,
                        cursor_id,
                        batch
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut requeue = c.prepare_cached(concat!(
                "UPDATE deliveries SET \
                 status = CASE WHEN (SELECT enabled FROM endpoints WHERE id = deliveries.endpoint_id) = 1 \
                          THEN ",
                st!(pending),
                " ELSE ",
                st!(paused),
                " END, \
                 next_attempt_at = ?2, lease_owner = NULL, completed_at = NULL, updated_at = ?3 \
                 WHERE id = ?1 AND status = ",
                st!(failed)
            ))?;
            let mut requeued = Vec::with_capacity(picked.len());
            for (i, (did, _)) in picked.iter().enumerate() {
                let at = now.saturating_add(i64::try_from(i).unwrap_or(0));
                if requeue.execute(params![did, at, now])? == 1 {
                    requeued.push(did.clone());
                }
            }
            let done = batch > 0 && (picked.len() as i64) < batch;
            let (cursor_at, cursor_id) = match picked.last() {
                Some((did, at)) => (Some(*at), Some(did.clone())),
                None => (cursor_at, cursor_id),
            };
            c.prepare_cached(
                "UPDATE recoveries SET requeued = requeued + ?2, cursor_at = ?3, cursor_id = ?4, \
                 lease_until = ?5, updated_at = ?6, \
                 status = CASE WHEN ?7 THEN 'completed' ELSE status END, \
                 finished_at = CASE WHEN ?7 THEN ?6 ELSE finished_at END, \
                 lease_owner = CASE WHEN ?7 THEN NULL ELSE lease_owner END \
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                requeued.len() as i64,
                cursor_at,
                cursor_id,
                lease_until,
                now,
                done
            ])?;
            Ok(RecoveryStep {
                recovery: get(c, &id)?,
                requeued,
                owned: true,
            })
        })
        .await
    }

    async fn count_waiting(&self, ids: &[String], cutoff: Millis) -> Result<u64> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(concat!(
                "SELECT count(*) FROM deliveries WHERE id = ?1 AND status = ",
                st!(pending),
                " AND (lease_owner IS NOT NULL OR next_attempt_at <= ?2)"
            ))?;
            let mut n = 0u64;
            for id in &ids {
                let k: i64 = stmt.query_row(params![id, cutoff], |r| r.get(0))?;
                n += u64::try_from(k).unwrap_or(0);
            }
            Ok(n)
        })
        .await
    }

    async fn purge_recoveries(&self, finished_before: Millis, batch: usize) -> Result<u64> {
        let batch = i64::try_from(batch.clamp(1, 10_000)).unwrap_or(1000);
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM recoveries WHERE id IN (SELECT id FROM recoveries \
                     WHERE status <> 'running' AND finished_at < ?1 LIMIT ?2)",
                )?
                .execute(params![finished_before, batch])?;
            Ok(n as u64)
        })
        .await
    }

    async fn add_delivery(
        &self,
        delivery_id: &str,
        event_id: &str,
        endpoint_id: &str,
        now: Millis,
    ) -> Result<AddDelivery> {
        crate::text::storable("delivery id", delivery_id)?;
        let (did, eid, epid) = (
            delivery_id.to_owned(),
            event_id.to_owned(),
            endpoint_id.to_owned(),
        );
        self.write(move |c| {
            let event: Option<i64> = c
                .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
                .query_row([&eid], |r| r.get(0))
                .optional()?;
            if event.is_none() {
                return Ok(AddDelivery::NoEvent);
            }
            let enabled: Option<bool> = c
                .prepare_cached("SELECT enabled FROM endpoints WHERE id = ?1 AND deleted_at IS NULL")?
                .query_row([&epid], |r| r.get(0))
                .optional()?;
            let Some(enabled) = enabled else {
                return Ok(AddDelivery::NoEndpoint);
            };
            let by = |c: &Connection, sql: &str, key: &[&str]| -> Result<Option<crate::Delivery>> {
                Ok(c.prepare_cached(sql)?
                    .query_row(rusqlite::params_from_iter(key), |r| row::delivery(r))
                    .optional()?)
            };
            if let Some(d) = by(
                c,
                &format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE event_id = ?1 AND endpoint_id = ?2 \
                     ORDER BY id LIMIT 1"
                ),
                &[&eid, &epid],
            )? {
                return Ok(AddDelivery::Exists(d));
            }
            let status = if enabled {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Paused
            };
            c.prepare_cached(
                "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, \
                 next_attempt_at, lease_owner, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, NULL, ?5, ?5)",
            )?
            .execute(params![did, eid, epid, status.as_i64(), now])?;
            by(
                c,
                &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"),
                &[&did],
            )?
            .map(AddDelivery::Created)
            .ok_or(StoreError::NotFound)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::fresh;

    #[tokio::test]
    async fn recovery_store_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::recovery_store(&s).await;
    }
}
