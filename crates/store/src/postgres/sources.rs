//! [`SourceStore`] for PostgreSQL: sources, their token hashes, seen keys and the audit log.
//! Same semantics as the SQLite backend (the conformance suite is the contract); safe when
//! several instances accept for the same source at once (the seen key's primary key decides).

use super::{MAX_TRIES, PgStore, TxError, limit_of, names_nothing, new_id, status_i16};
use crate::listing::cut;
use crate::row::{self, SOURCE_COLS, TOKEN_COLS};
use crate::sources::*;
use crate::sources::{audit_bound, audit_id};
use crate::{DeliveryStatus, Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::time::Duration;

/// Written: the logged payload goes to `payload_bytes` (schema 90).
const AUDIT_COLS: &str = "id, source_id, token_prefix, received_at, client_ip, peer_addr, \
    user_agent, outcome, reason, status, body_bytes, latency_us, tls, event_id, message_id, \
    count, sampled, payload_bytes";

/// Read: the payload as bytes, from `payload_bytes` or, for entries written before schema 90,
/// the UTF-8 of their text `payload`.
const AUDIT_READ: &str = "id, source_id, token_prefix, received_at, client_ip, peer_addr, \
    user_agent, outcome, reason, status, body_bytes, latency_us, tls, event_id, message_id, \
    count, sampled, COALESCE(payload_bytes, convert_to(payload, 'UTF8'))";

/// The stored length of an entry's payload (either column).
const AUDIT_PAYLOAD_LEN: &str = "COALESCE(octet_length(payload_bytes), octet_length(payload))";

fn audit_from_row(r: &PgRow) -> Result<AuditEntry> {
    let status: i32 = r.try_get(9)?;
    Ok(AuditEntry {
        id: r.try_get(0)?,
        entry: NewAuditEntry {
            source_id: r.try_get(1)?,
            token_prefix: r.try_get(2)?,
            received_at: r.try_get(3)?,
            client_ip: r.try_get(4)?,
            peer_addr: r.try_get(5)?,
            user_agent: r.try_get(6)?,
            outcome: r.try_get(7)?,
            reason: r.try_get(8)?,
            status: u16::try_from(status).unwrap_or(0),
            body_bytes: r.try_get(10)?,
            latency_us: r.try_get(11)?,
            tls: r.try_get(12)?,
            event_id: r.try_get(13)?,
            message_id: r.try_get(14)?,
            count: r.try_get(15)?,
            sampled: r.try_get(16)?,
            payload: r.try_get::<Option<Vec<u8>>, _>(17)?.map(Into::into),
        },
    })
}

async fn record_of(c: &mut PgConnection, source: Source) -> Result<SourceRecord> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLS} FROM source_tokens WHERE source_id = $1 \
         ORDER BY created_at DESC, prefix DESC LIMIT 100"
    ))
    .bind(&source.id)
    .fetch_all(&mut *c)
    .await?;
    let mut tokens = rows
        .iter()
        .map(|r| row::source_token(r, 0))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let current_token = tokens.next();
    Ok(SourceRecord {
        source,
        current_token,
        other_tokens: tokens.collect(),
    })
}

async fn insert_token(
    c: &mut PgConnection,
    source_id: &str,
    t: &NewSourceToken,
) -> std::result::Result<(), TxError> {
    let n = sqlx::query(
        "INSERT INTO source_tokens (token_hash, source_id, prefix, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(&t.token_hash[..])
    .bind(source_id)
    .bind(&t.prefix)
    .bind(t.created_at)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::Conflict("token already exists".into()).into());
    }
    Ok(())
}

async fn insert_audit_row(
    c: &mut PgConnection,
    e: &NewAuditEntry,
) -> std::result::Result<String, TxError> {
    let id = audit_id(e.received_at);
    sqlx::query(&format!(
        "INSERT INTO inbound_audit ({AUDIT_COLS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    ))
    .bind(&id)
    .bind(&e.source_id)
    .bind(&e.token_prefix)
    .bind(e.received_at)
    .bind(&e.client_ip)
    .bind(&e.peer_addr)
    .bind(&e.user_agent)
    .bind(&e.outcome)
    .bind(&e.reason)
    .bind(i32::from(e.status))
    .bind(e.body_bytes)
    .bind(e.latency_us)
    .bind(e.tls)
    .bind(&e.event_id)
    .bind(&e.message_id)
    .bind(e.count.max(1))
    .bind(e.sampled)
    .bind(e.payload.as_deref())
    .execute(&mut *c)
    .await?;
    Ok(id)
}

/// Locks the source row; false when it does not exist.
async fn lock_source(c: &mut PgConnection, id: &str) -> std::result::Result<bool, TxError> {
    if names_nothing(id) {
        return Ok(false);
    }
    Ok(
        sqlx::query("SELECT 1 FROM sources WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
            .is_some(),
    )
}

/// Records that the source changed at `now`.
async fn touch_source(
    c: &mut PgConnection,
    id: &str,
    now: Millis,
) -> std::result::Result<(), TxError> {
    sqlx::query("UPDATE sources SET updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

#[async_trait]
impl SourceStore for PgStore {
    async fn create_source(&self, s: Source, token: NewSourceToken) -> Result<()> {
        s.check_storable()?;
        token.check_storable()?;
        let secrets = serde_json::to_string(&s.secrets)?;
        let cidrs = serde_json::to_string(&s.allowed_cidrs)?;
        let forward = serde_json::to_string(&s.forward_to)?;
        in_tx!(self.pool, |tx| {
            let n = sqlx::query(&format!(
                "INSERT INTO sources ({SOURCE_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(&s.id)
            .bind(&s.name)
            .bind(&s.verification)
            .bind(&secrets)
            .bind(&cidrs)
            .bind(s.replay_window_secs)
            .bind(s.log_payloads)
            .bind(&forward)
            .bind(&s.event_type)
            .bind(s.created_at)
            .bind(s.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::Conflict(format!("source {} already exists", s.id)).into());
            }
            insert_token(&mut tx, &s.id, &token).await?;
        })
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceRecord>> {
        if names_nothing(id) {
            return Ok(None);
        }
        let mut c = self.pool.acquire().await?;
        let row = sqlx::query(&format!("SELECT {SOURCE_COLS} FROM sources WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        match row {
            Some(r) => {
                let s = row::source(&r)?;
                Ok(Some(record_of(&mut c, s).await?))
            }
            None => Ok(None),
        }
    }

    async fn list_sources(&self, page: Page) -> Result<Listed<SourceRecord>> {
        let mut c = self.pool.acquire().await?;
        let limit = limit_of(&page);
        let candidates: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT id, {} FROM sources WHERE ($1::text IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2",
            crate::listing::source_size()
        ))
        .bind(page.before.as_deref())
        .bind(limit + 1)
        .fetch_all(&mut *c)
        .await?;
        let (ids, more) = cut(candidates, limit as usize, page.max_bytes);
        if ids.is_empty() {
            return Ok(Listed::new(Vec::new(), more));
        }
        let rows = sqlx::query(&format!(
            "SELECT {SOURCE_COLS} FROM sources WHERE id = ANY($1) ORDER BY id DESC"
        ))
        .bind(&ids)
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let s = row::source(r)?;
            out.push(record_of(&mut c, s).await?);
        }
        Ok(Listed::new(out, more))
    }

    async fn update_source(&self, s: Source) -> Result<bool> {
        s.check_storable()?;
        let n = sqlx::query(
            "UPDATE sources SET name = $2, verification = $3, secrets = $4, \
             allowed_cidrs = $5, replay_window_secs = $6, log_payloads = $7, \
             forward_to = $8, event_type = $9, updated_at = $10 WHERE id = $1",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.verification)
        .bind(serde_json::to_string(&s.secrets)?)
        .bind(serde_json::to_string(&s.allowed_cidrs)?)
        .bind(s.replay_window_secs)
        .bind(s.log_payloads)
        .bind(serde_json::to_string(&s.forward_to)?)
        .bind(&s.event_type)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn delete_source(&self, id: &str) -> Result<bool> {
        if names_nothing(id) {
            return Ok(false);
        }
        in_tx!(self.pool, |tx| {
            let n = sqlx::query("DELETE FROM sources WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query("DELETE FROM source_tokens WHERE source_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM inbound_seen WHERE source_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            n > 0
        })
    }

    async fn rotate_source_token(
        &self,
        id: &str,
        token: NewSourceToken,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        token.check_storable()?;
        in_tx!(self.pool, |tx| {
            if !lock_source(&mut tx, id).await? {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE source_tokens SET expires_at = LEAST(COALESCE(expires_at, $2), $2) \
                 WHERE source_id = $1 AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(id)
            .bind(old_expires_at.max(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_token(&mut tx, id, &token).await?;
            touch_source(&mut tx, id, now).await?;
            true
        })
    }

    async fn revoke_source(&self, id: &str, now: Millis) -> Result<bool> {
        in_tx!(self.pool, |tx| {
            if !lock_source(&mut tx, id).await? {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE source_tokens SET revoked_at = $2 WHERE source_id = $1 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            touch_source(&mut tx, id, now).await?;
            true
        })
    }

    async fn find_source_by_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenMatch>> {
        let cols = SOURCE_COLS
            .split(", ")
            .map(|col| format!("s.{col}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT {cols}, t.prefix, t.created_at, t.expires_at, t.revoked_at, t.token_hash \
             FROM source_tokens t JOIN sources s ON s.id = t.source_id WHERE t.token_hash = $1"
        ))
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let stored: Vec<u8> = r.try_get(15)?;
        let mut hash = [0u8; 32];
        if stored.len() == 32 {
            hash.copy_from_slice(&stored);
        }
        Ok(Some(TokenMatch {
            token_hash: hash,
            token: row::source_token(&r, 11)?,
            source: row::source(&r)?,
        }))
    }

    async fn accept_inbound(&self, a: InboundAccept) -> Result<AcceptOutcome> {
        a.event.check_storable()?;
        let ev = &a.event;
        let now = ev.created_at;
        let source_id = ev
            .source_id
            .clone()
            .ok_or_else(|| StoreError::Conflict("an inbound event needs a source".into()))?;
        let mut audit = a.audit.clone().recorded();
        audit.event_id = Some(ev.id.clone());
        in_tx!(self.pool, |tx| {
            if let Some(seen) = &a.seen {
                // Inserted, or an expired key taken over: go on. A live key: a replay (the
                // primary key makes a concurrent duplicate wait for this one and then lose).
                let fresh = sqlx::query(
                    "INSERT INTO inbound_seen (source_id, key_hash, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (source_id, key_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                     WHERE inbound_seen.expires_at <= $4 RETURNING 1",
                )
                .bind(&source_id)
                .bind(&seen.key_hash[..])
                .bind(seen.expires_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if !fresh {
                    return Ok(AcceptOutcome::Replayed);
                }
            }
            // The event, then the routed endpoints, share-locked like `create_event` does.
            let targets: Vec<crate::filter::Target> = sqlx::query_as(
                "WITH ev AS (INSERT INTO events \
                   (id, event_type, payload, idempotency_key, created_at, source_id) \
                   VALUES ($1, $2, $3, NULL, $4, $5)) \
                 SELECT id, enabled, filter FROM endpoints WHERE deleted_at IS NULL AND \
                   (id = ANY($6) OR id IN (SELECT endpoint_id FROM endpoint_event_types \
                     WHERE event_type = ANY($7))) \
                 ORDER BY id FOR SHARE",
            )
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&ev.payload)
            .bind(now)
            .bind(&source_id)
            .bind(&a.route.endpoint_ids)
            // Every subscription key of every routed type (none: no type routes anything).
            .bind(
                a.route
                    .event_types
                    .iter()
                    .flat_map(|t| crate::subscription_keys(t))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
            let targets = crate::filter::admitted(targets, &ev.event_type, &ev.payload);
            let deliveries = targets.len();
            if !targets.is_empty() {
                let ids: Vec<String> = targets.iter().map(|_| new_id("dlv")).collect();
                let endpoint_ids: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
                let statuses: Vec<i16> = targets
                    .iter()
                    .map(|t| {
                        status_i16(if t.1 {
                            DeliveryStatus::Pending
                        } else {
                            DeliveryStatus::Paused
                        })
                    })
                    .collect();
                sqlx::query(
                    "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, \
                     next_attempt_at, lease_owner, created_at, updated_at) \
                     SELECT d.id, $4, d.endpoint_id, d.status, 0, $5, NULL, $5, $5 \
                     FROM UNNEST($1::text[], $2::text[], $3::int2[]) AS d(id, endpoint_id, status)",
                )
                .bind(&ids)
                .bind(&endpoint_ids)
                .bind(&statuses)
                .bind(&ev.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let audit_id = insert_audit_row(&mut tx, &audit).await?;
            AcceptOutcome::Accepted {
                event_id: ev.id.clone(),
                audit_id,
                deliveries,
            }
        })
    }

    async fn insert_audit(&self, entries: Vec<NewAuditEntry>) -> Result<Vec<String>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<NewAuditEntry> =
            entries.into_iter().map(NewAuditEntry::recorded).collect();
        in_tx!(self.pool, |tx| {
            let mut ids = Vec::with_capacity(entries.len());
            for e in &entries {
                ids.push(insert_audit_row(&mut tx, e).await?);
            }
            ids
        })
    }

    async fn list_audit(&self, f: AuditFilter, page: Page) -> Result<Listed<AuditEntry>> {
        if [&f.source_id, &f.outcome, &f.client_ip]
            .iter()
            .any(|k| k.as_deref().is_some_and(names_nothing))
        {
            return Ok(Listed::new(Vec::new(), false));
        }
        let limit = limit_of(&page);
        let candidates: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT id, {} FROM inbound_audit \
             WHERE ($1::text IS NULL OR source_id = $1) \
             AND (NOT $8 OR $1::text IS NOT NULL OR source_id IS NULL) \
             AND ($2::text IS NULL OR id < $2) AND ($3::text IS NULL OR id >= $3) \
             AND ($4::text IS NULL OR id < $4) AND ($5::text IS NULL OR outcome = $5) \
             AND ($6::text IS NULL OR client_ip = $6) ORDER BY id DESC LIMIT $7",
            crate::listing::audit_size(AUDIT_PAYLOAD_LEN)
        ))
        .bind(f.source_id.as_deref())
        .bind(page.before.as_deref())
        .bind(f.since.map(audit_bound))
        .bind(f.until.map(audit_bound))
        .bind(f.outcome.as_deref())
        .bind(f.client_ip.as_deref())
        .bind(limit + 1)
        .bind(f.unknown_only)
        .fetch_all(&self.pool)
        .await?;
        super::bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!("SELECT {AUDIT_READ} FROM inbound_audit WHERE id = ANY($1) ORDER BY id DESC"),
            audit_from_row,
        )
        .await
    }

    async fn ingest_stats(
        &self,
        source_id: Option<&str>,
        range: crate::StatsRange,
    ) -> Result<Vec<IngestStatBucket>> {
        if source_id.is_some_and(names_nothing) {
            return Ok(Vec::new());
        }
        if !range.is_valid() {
            return Ok(Vec::new());
        }
        // The id is time-ordered: the range is a primary-key (or source index) range.
        let sql = if source_id.is_some() {
            "SELECT (received_at - $4) / $5 AS b, outcome, SUM(count)::int8 FROM inbound_audit \
             WHERE source_id = $1 AND id >= $2 AND id < $3 AND received_at >= $4 \
             AND received_at < $6 GROUP BY b, outcome ORDER BY b, outcome LIMIT $7"
        } else {
            "SELECT (received_at - $4) / $5 AS b, outcome, SUM(count)::int8 FROM inbound_audit \
             WHERE $1::text IS NULL AND id >= $2 AND id < $3 AND received_at >= $4 \
             AND received_at < $6 GROUP BY b, outcome ORDER BY b, outcome LIMIT $7"
        };
        let rows = sqlx::query(sql)
            .bind(source_id)
            .bind(audit_bound(range.since))
            .bind(audit_bound(range.until))
            .bind(range.since)
            .bind(range.bucket_ms)
            .bind(range.until)
            .bind(crate::StatsRange::MAX_BUCKETS * 64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(IngestStatBucket {
                    bucket_start: range.since + r.try_get::<i64, _>(0)? * range.bucket_ms,
                    outcome: r.try_get(1)?,
                    requests: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn purge_inbound(
        &self,
        audit_older_than: Millis,
        now: Millis,
        batch: usize,
    ) -> Result<InboundPurgeCounts> {
        let batch = i64::try_from(batch.clamp(1, 100_000)).unwrap_or(1000);
        let cut = audit_bound(audit_older_than);
        let audit_entries = sqlx::query(
            "DELETE FROM inbound_audit WHERE id IN \
             (SELECT id FROM inbound_audit WHERE id < $1 ORDER BY id LIMIT $2)",
        )
        .bind(&cut)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let seen_keys = sqlx::query(
            "DELETE FROM inbound_seen WHERE (source_id, key_hash) IN \
             (SELECT source_id, key_hash FROM inbound_seen WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let tokens = sqlx::query(
            "DELETE FROM source_tokens WHERE token_hash IN \
             (SELECT token_hash FROM source_tokens WHERE revoked_at IS NULL \
              AND expires_at IS NOT NULL AND expires_at < $1 LIMIT $2)",
        )
        .bind(audit_older_than.min(now))
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(InboundPurgeCounts {
            audit_entries,
            seen_keys,
            tokens,
        })
    }
}
