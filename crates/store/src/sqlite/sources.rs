//! [`SourceStore`] for SQLite: sources, their token hashes, seen keys and the audit log.

use super::{SqliteStore, bounded_page, limit_of, new_id, sized};
use crate::row::{self, SOURCE_COLS, TOKEN_COLS};
use crate::sources::*;
use crate::sources::{audit_bound, audit_id};
use crate::{DeliveryStatus, Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::{Arc, Mutex, MutexGuard};

use super::replay::{self, Admit};

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| StoreError::database("the replay index lock is poisoned", false))
}

/// The transaction of one accepted inbound request (see [`SourceStore::accept_inbound`]).
fn accept_tx(
    c: &Connection,
    a: InboundAccept,
    index: &Mutex<replay::ReplayIndex>,
    admitted: &Mutex<Option<(replay::Key, Millis)>>,
) -> Result<AcceptOutcome> {
    let ev = a.event;
    let now = ev.created_at;
    let source_id = ev
        .source_id
        .clone()
        .ok_or_else(|| StoreError::Conflict("an inbound event needs a source".into()))?;
    if let Some(seen) = &a.seen
        && replayed(c, index, admitted, &source_id, seen, now)?
    {
        return Ok(AcceptOutcome::Replayed);
    }
    c.prepare_cached(
        "INSERT INTO events (id, event_type, payload, idempotency_key, created_at, source_id) \
         VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
    )?
    .execute(params![ev.id, ev.event_type, ev.payload, now, source_id])?;
    let targets = crate::filter::admitted(route_targets(c, &a.route)?, &ev.event_type, &ev.payload);
    let deliveries = targets.len();
    if !targets.is_empty() {
        let mut ins = c.prepare_cached(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, \
             next_attempt_at, lease_owner, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, NULL, ?5, ?5)",
        )?;
        for (endpoint_id, enabled) in targets {
            let status = if enabled {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Paused
            };
            ins.execute(params![
                new_id("dlv"),
                ev.id,
                endpoint_id,
                status.as_i64(),
                now
            ])?;
        }
    }
    let mut audit = a.audit;
    audit.event_id = Some(ev.id.clone());
    let audit_id = insert_audit_row(c, &audit)?;
    Ok(AcceptOutcome::Accepted {
        event_id: ev.id,
        audit_id,
        deliveries,
    })
}

/// The replay check of one accepted request, inside its transaction: whether `seen` is live
/// (a replay); if not, it is recorded — in memory and the log, or in `inbound_seen` past the
/// in-memory bound. What it admitted to memory is put in `admitted`, for the caller to undo if
/// the transaction fails.
fn replayed(
    c: &Connection,
    index: &Mutex<replay::ReplayIndex>,
    admitted: &Mutex<Option<(replay::Key, Millis)>>,
    source_id: &str,
    seen: &SeenKey,
    now: Millis,
) -> Result<bool> {
    let k = replay::key(source_id, &seen.key_hash);
    let (admit, table_in_use) = {
        let mut idx = lock(index)?;
        let admit = idx.admit(k, seen.expires_at, now);
        if admit == Admit::Table {
            idx.table_in_use = true;
        }
        (admit, idx.table_in_use)
    };
    match admit {
        Admit::Replay => Ok(true),
        Admit::Logged => {
            if table_in_use && seen_in_table(c, source_id, &seen.key_hash, now)? {
                lock(index)?.forget(k, seen.expires_at);
                return Ok(true);
            }
            *lock(admitted)? = Some((k, seen.expires_at));
            replay::log(c, source_id, &seen.key_hash, seen.expires_at)?;
            Ok(false)
        }
        Admit::Table => {
            // One statement: a new key is inserted, an expired one renewed; a live one is left
            // alone (no row changed), which is a replay.
            let changed = c
                .prepare_cached(
                    "INSERT INTO inbound_seen (source_id, key_hash, expires_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (source_id, key_hash) \
                     DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE inbound_seen.expires_at <= ?4",
                )?
                .execute(params![source_id, &seen.key_hash[..], seen.expires_at, now])?;
            Ok(changed == 0)
        }
    }
}

/// Whether `inbound_seen` (keys past the in-memory bound, or from before it) holds this key live.
fn seen_in_table(c: &Connection, source_id: &str, key_hash: &[u8], now: Millis) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM inbound_seen \
         WHERE source_id = ?1 AND key_hash = ?2 AND expires_at > ?3)",
    )?
    .query_row(params![source_id, key_hash, now], |r| r.get(0))?)
}

const AUDIT_COLS: &str = "id, source_id, token_prefix, received_at, client_ip, peer_addr, \
    user_agent, outcome, reason, status, body_bytes, latency_us, tls, event_id, message_id, \
    count, sampled, payload";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let status: i64 = r.get(9)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        entry: NewAuditEntry {
            source_id: Some(r.get::<_, String>(1)?).filter(|s| s != NO_SOURCE),
            token_prefix: r.get(2)?,
            received_at: r.get(3)?,
            client_ip: r.get(4)?,
            peer_addr: r.get(5)?,
            user_agent: r.get(6)?,
            outcome: r.get(7)?,
            reason: r.get(8)?,
            status: u16::try_from(status).unwrap_or(0),
            body_bytes: r.get(10)?,
            latency_us: r.get(11)?,
            tls: r.get::<_, i64>(12)? != 0,
            event_id: r.get(13)?,
            message_id: r.get(14)?,
            count: r.get(15)?,
            sampled: r.get::<_, i64>(16)? != 0,
            payload: payload_of(r, 17)?,
        },
    })
}

/// A logged payload: bytes (a BLOB), or the text entries held before payloads were kept as
/// bytes (the column's declared type is TEXT; SQLite stores a bound BLOB as it is).
fn payload_of(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Arc<[u8]>>> {
    use rusqlite::types::ValueRef;
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(Some(Arc::from(b))),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            "payload".into(),
            other.data_type(),
        )),
    }
}

fn tokens_of(c: &Connection, source_id: &str) -> Result<Vec<SourceToken>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM source_tokens WHERE source_id = ?1 \
         ORDER BY created_at DESC, prefix DESC LIMIT 100"
    ))?;
    let rows = stmt.query_map([source_id], |r| row::source_token(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn record_of(c: &Connection, source: Source) -> Result<SourceRecord> {
    let mut tokens = tokens_of(c, &source.id)?.into_iter();
    let current_token = tokens.next();
    let other_tokens = tokens.collect();
    Ok(SourceRecord {
        source,
        current_token,
        other_tokens,
    })
}

fn insert_token(c: &Connection, source_id: &str, t: &NewSourceToken) -> Result<()> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO source_tokens (token_hash, source_id, prefix, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            &t.token_hash[..],
            source_id,
            t.prefix,
            t.created_at
        ])?;
    if n == 0 {
        return Err(StoreError::Conflict("token already exists".into()));
    }
    Ok(())
}

/// `source_id` of audit entries whose token matched no source: the audit log's key is
/// (source_id, id), and a key column cannot be NULL.
const NO_SOURCE: &str = "";

/// Sorts after every audit id (`aud_` and an ASCII ULID): the open upper end of a key range.
const AUDIT_ID_ABOVE_ALL: &str = "\u{10FFFF}";

/// The sources an audit query reads: the one asked for, the entries of unknown tokens, or every
/// source found in the log (each one found by a seek on the key's first column).
fn audit_scope(c: &Connection, source_id: Option<&str>, unknown_only: bool) -> Result<Vec<String>> {
    match (source_id, unknown_only) {
        (Some(s), _) => Ok(vec![s.to_owned()]),
        (None, true) => Ok(vec![NO_SOURCE.to_owned()]),
        (None, false) => {
            let mut out: Vec<String> = Vec::new();
            let unknown = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM inbound_audit WHERE source_id = ?1)")?
                .query_row([NO_SOURCE], |r| r.get::<_, bool>(0))?;
            if unknown {
                out.push(NO_SOURCE.to_owned());
            }
            let mut next = c.prepare_cached(
                "SELECT source_id FROM inbound_audit WHERE source_id > ?1 \
                 ORDER BY source_id LIMIT 1",
            )?;
            let mut after = NO_SOURCE.to_owned();
            while let Some(s) = next
                .query_row([&after], |r| r.get::<_, String>(0))
                .optional()?
            {
                out.push(s.clone());
                after = s;
            }
            Ok(out)
        }
    }
}

/// Formatted once: the writer inserts an audit row for every inbound request.
static AUDIT_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO inbound_audit ({AUDIT_COLS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    )
});

fn insert_audit_row(c: &Connection, e: &NewAuditEntry) -> Result<String> {
    let id = audit_id(e.received_at);
    c.prepare_cached(&AUDIT_INSERT)?.execute(params![
        id,
        e.source_id.as_deref().unwrap_or(NO_SOURCE),
        e.token_prefix,
        e.received_at,
        e.client_ip,
        e.peer_addr,
        e.user_agent,
        e.outcome,
        e.reason,
        i64::from(e.status),
        e.body_bytes,
        e.latency_us,
        i64::from(e.tls),
        e.event_id,
        e.message_id,
        e.count.max(1),
        i64::from(e.sampled),
        e.payload.as_deref(),
    ])?;
    Ok(id)
}

/// The routed endpoints: listed ids that exist, plus subscribers of the listed types.
fn route_targets(c: &Connection, route: &InboundRoute) -> Result<Vec<crate::filter::Target>> {
    let mut out: Vec<crate::filter::Target> = Vec::new();
    if route.endpoint_ids.is_empty() && route.event_types.is_empty() {
        return Ok(out);
    }
    let mut by_id = c.prepare_cached(
        "SELECT id, enabled, filter FROM endpoints WHERE id = ?1 AND deleted_at IS NULL",
    )?;
    for id in &route.endpoint_ids {
        if out.iter().any(|(o, _, _)| o == id) {
            continue;
        }
        if let Some(t) = by_id
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? != 0,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()?
        {
            out.push(t);
        }
    }
    if !route.event_types.is_empty() {
        for ty in &route.event_types {
            for t in super::subscribers(c, ty, Vec::new())? {
                if !out.iter().any(|(o, _, _)| *o == t.0) {
                    out.push(t);
                }
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, s: Source, token: NewSourceToken) -> Result<()> {
        s.check_storable()?;
        token.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO sources ({SOURCE_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))?
                .execute(params![
                    s.id,
                    s.name,
                    s.verification,
                    serde_json::to_string(&s.secrets)?,
                    serde_json::to_string(&s.allowed_cidrs)?,
                    s.replay_window_secs,
                    i64::from(s.log_payloads),
                    serde_json::to_string(&s.forward_to)?,
                    s.event_type,
                    s.created_at,
                    s.updated_at,
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "source {} already exists",
                    s.id
                )));
            }
            insert_token(c, &s.id, &token)
        })
        .await
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let s = c
                .prepare_cached(&format!("SELECT {SOURCE_COLS} FROM sources WHERE id = ?1"))?
                .query_row([id], |r| row::source(r))
                .optional()?;
            s.map(|s| record_of(c, s)).transpose()
        })
        .await
    }

    async fn list_sources(&self, page: Page) -> Result<Listed<SourceRecord>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let limit = limit_of(&page);
            let candidates: Vec<(String, i64)> = sized(
                &mut tx.prepare_cached(&format!(
                    "SELECT id, {} FROM sources WHERE (?1 IS NULL OR id < ?1) \
                     ORDER BY id DESC LIMIT ?2",
                    crate::listing::source_size()
                ))?,
                params![page.before, limit + 1],
            )?;
            let mut one =
                tx.prepare_cached(&format!("SELECT {SOURCE_COLS} FROM sources WHERE id = ?1"))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                one.query_row([id], |r| row::source(r))
                    .optional()?
                    .map(|s| record_of(&tx, s))
                    .transpose()
            })
        })
        .await
    }

    async fn update_source(&self, s: Source) -> Result<bool> {
        s.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE sources SET name = ?2, verification = ?3, secrets = ?4, \
                     allowed_cidrs = ?5, replay_window_secs = ?6, log_payloads = ?7, \
                     forward_to = ?8, event_type = ?9, updated_at = ?10 WHERE id = ?1",
                )?
                .execute(params![
                    s.id,
                    s.name,
                    s.verification,
                    serde_json::to_string(&s.secrets)?,
                    serde_json::to_string(&s.allowed_cidrs)?,
                    s.replay_window_secs,
                    i64::from(s.log_payloads),
                    serde_json::to_string(&s.forward_to)?,
                    s.event_type,
                    s.updated_at,
                ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_source(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM sources WHERE id = ?1")?
                .execute([&id])?;
            if n == 0 {
                return Ok(false);
            }
            c.prepare_cached("DELETE FROM source_tokens WHERE source_id = ?1")?
                .execute([&id])?;
            c.prepare_cached("DELETE FROM inbound_seen WHERE source_id = ?1")?
                .execute([&id])?;
            Ok(true)
        })
        .await
    }

    async fn rotate_source_token(
        &self,
        id: &str,
        token: NewSourceToken,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        token.check_storable()?;
        let id = id.to_owned();
        self.write(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM sources WHERE id = ?1")?
                .query_row([&id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(false);
            }
            c.prepare_cached(
                "UPDATE source_tokens SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) \
                 WHERE source_id = ?1 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .execute(params![id, old_expires_at.max(now), now])?;
            insert_token(c, &id, &token)?;
            c.prepare_cached("UPDATE sources SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            Ok(true)
        })
        .await
    }

    async fn revoke_source(&self, id: &str, now: Millis) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM sources WHERE id = ?1")?
                .query_row([&id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(false);
            }
            c.prepare_cached(
                "UPDATE source_tokens SET revoked_at = ?2 WHERE source_id = ?1 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .execute(params![id, now])?;
            c.prepare_cached("UPDATE sources SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            Ok(true)
        })
        .await
    }

    async fn find_source_by_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenMatch>> {
        self.read(move |c| {
            let cols = SOURCE_COLS
                .split(", ")
                .map(|col| format!("s.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {cols}, t.prefix, t.created_at, t.expires_at, t.revoked_at, t.token_hash \
                 FROM source_tokens t JOIN sources s ON s.id = t.source_id WHERE t.token_hash = ?1"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row([&token_hash[..]], |r| {
                    let source = row::source(r)?;
                    let token = row::source_token(r, 11)?;
                    let stored: Vec<u8> = r.get(15)?;
                    let mut hash = [0u8; 32];
                    if stored.len() == 32 {
                        hash.copy_from_slice(&stored);
                    }
                    Ok(TokenMatch {
                        token_hash: hash,
                        token,
                        source,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn accept_inbound(&self, mut a: InboundAccept) -> Result<AcceptOutcome> {
        a.event.check_storable()?;
        a.audit = a.audit.recorded();
        let index = self.inner.replay.clone();
        // What this call admitted to the in-memory index, to undo if its transaction fails.
        let admitted: Arc<Mutex<Option<(replay::Key, Millis)>>> = Arc::default();
        let undo = admitted.clone();
        let result = self
            .write_unguarded(move |c| accept_tx(c, a, &index, &admitted))
            .await;
        if result.is_err()
            && let Some((k, expires_at)) = lock(&undo)?.take()
        {
            lock(&self.inner.replay)?.forget(k, expires_at);
        }
        result
    }

    async fn insert_audit(&self, entries: Vec<NewAuditEntry>) -> Result<Vec<String>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<NewAuditEntry> =
            entries.into_iter().map(NewAuditEntry::recorded).collect();
        self.write_unguarded(move |c| entries.iter().map(|e| insert_audit_row(c, e)).collect())
            .await
    }

    async fn list_audit(&self, f: AuditFilter, page: Page) -> Result<Listed<AuditEntry>> {
        self.read(move |c| {
            let limit = limit_of(&page);
            // One key range per source: [since, min(before, until)).
            let lower = f.since.map(audit_bound).unwrap_or_default();
            let upper = [page.before.clone(), f.until.map(audit_bound)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| AUDIT_ID_ABOVE_ALL.to_owned());
            // One snapshot for every source read, and for the rows read after.
            let tx = c.unchecked_transaction()?;
            let sources = audit_scope(&tx, f.source_id.as_deref(), f.unknown_only)?;
            let mut st = tx.prepare_cached(&format!(
                "SELECT id, {} FROM inbound_audit WHERE source_id = ?1 \
                 AND id < ?2 AND id >= ?3 AND (?4 IS NULL OR outcome = ?4) \
                 AND (?5 IS NULL OR client_ip = ?5) ORDER BY id DESC LIMIT ?6",
                crate::listing::audit_size("octet_length(payload)")
            ))?;
            // The candidates: ids and sizes only, each source's newest first.
            let keep = usize::try_from(limit + 1).unwrap_or(usize::MAX);
            let mut rows: Vec<(String, String, i64)> = Vec::new();
            let mut lower = lower;
            for source in &sources {
                let page_of_source = st
                    .query_map(
                        params![source, upper, lower, f.outcome, f.client_ip, limit + 1],
                        |r| Ok((r.get::<_, String>(0)?, source.clone(), r.get::<_, i64>(1)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.extend(page_of_source);
                // The newest `limit + 1` so far; once there are that many, the sources still to
                // read only need entries newer than the oldest kept.
                if sources.len() > 1 && rows.len() >= keep {
                    rows.sort_unstable_by(|a, b| b.0.cmp(&a.0));
                    rows.truncate(keep);
                    if let Some(oldest) = rows.last() {
                        lower = lower.max(oldest.0.clone());
                    }
                }
            }
            if sources.len() > 1 {
                rows.sort_unstable_by(|a, b| b.0.cmp(&a.0));
                rows.truncate(keep);
            }
            let candidates: Vec<((String, String), i64)> = rows
                .into_iter()
                .map(|(id, source, size)| ((source, id), size))
                .collect();
            let mut one = tx.prepare_cached(&format!(
                "SELECT {AUDIT_COLS} FROM inbound_audit WHERE source_id = ?1 AND id = ?2"
            ))?;
            bounded_page(
                candidates,
                limit as usize,
                page.max_bytes,
                |(source, id)| {
                    Ok(one
                        .query_row(params![source, id], audit_from_row)
                        .optional()?)
                },
            )
        })
        .await
    }

    async fn ingest_stats(
        &self,
        source_id: Option<&str>,
        range: crate::StatsRange,
    ) -> Result<Vec<IngestStatBucket>> {
        if !range.is_valid() {
            return Ok(Vec::new());
        }
        let source_id = source_id.map(str::to_owned);
        self.read(move |c| {
            // The id is time-ordered: the range is a key range of each source.
            let tx = c.unchecked_transaction()?;
            let sources = audit_scope(&tx, source_id.as_deref(), false)?;
            let mut st = tx.prepare_cached(
                "SELECT (received_at - ?4) / ?5 AS b, outcome, SUM(count) FROM inbound_audit \
                 WHERE source_id = ?1 AND id >= ?2 AND id < ?3 AND received_at >= ?4 \
                 AND received_at < ?6 GROUP BY b, outcome",
            )?;
            let mut sums: std::collections::BTreeMap<(i64, String), i64> = Default::default();
            for source in &sources {
                let rows = st.query_map(
                    params![
                        source,
                        audit_bound(range.since),
                        audit_bound(range.until),
                        range.since,
                        range.bucket_ms,
                        range.until,
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )?;
                for row in rows {
                    let (bucket, outcome, requests) = row?;
                    *sums.entry((bucket, outcome)).or_default() += requests;
                }
            }
            Ok(sums
                .into_iter()
                .take(usize::try_from(crate::StatsRange::MAX_BUCKETS * 64).unwrap_or(usize::MAX))
                .map(|((b, outcome), requests)| IngestStatBucket {
                    bucket_start: range.since + b * range.bucket_ms,
                    outcome,
                    requests,
                })
                .collect())
        })
        .await
    }

    async fn purge_inbound(
        &self,
        audit_older_than: Millis,
        now: Millis,
        batch: usize,
    ) -> Result<InboundPurgeCounts> {
        let batch = i64::try_from(batch.clamp(1, 100_000)).unwrap_or(1000);
        let index = self.inner.replay.clone();
        self.write(move |c| {
            let cut = audit_bound(audit_older_than);
            let mut audit_entries = 0u64;
            let mut del = c.prepare_cached(
                "DELETE FROM inbound_audit WHERE source_id = ?1 AND id IN \
                 (SELECT id FROM inbound_audit WHERE source_id = ?1 AND id < ?2 \
                  ORDER BY id LIMIT ?3)",
            )?;
            for source in audit_scope(c, None, false)? {
                let left = batch - i64::try_from(audit_entries).unwrap_or(batch);
                if left <= 0 {
                    break;
                }
                audit_entries += del.execute(params![source, cut, left])? as u64;
            }
            let mut seen_keys = c
                .prepare_cached(
                    "DELETE FROM inbound_seen WHERE (source_id, key_hash) IN \
                     (SELECT source_id, key_hash FROM inbound_seen WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now, batch])? as u64;
            // The log: expired rows go; a row counts as a forgotten key unless the key was
            // accepted again since (a renewed key has a newer, live row).
            let left = batch - i64::try_from(seen_keys).unwrap_or(batch);
            if left > 0 {
                let mut idx = lock(&index)?;
                idx.prune(now);
                let rows = c
                    .prepare_cached(
                        "SELECT expires_at, source_id, key_hash FROM inbound_seen_log \
                         WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
                    )?
                    .query_map(params![now, left], |r| {
                        Ok((
                            r.get::<_, Millis>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut del = c.prepare_cached(
                    "DELETE FROM inbound_seen_log \
                     WHERE expires_at = ?1 AND source_id = ?2 AND key_hash = ?3",
                )?;
                for (expires_at, source_id, key_hash) in rows {
                    del.execute(params![expires_at, source_id, key_hash])?;
                    if !idx.is_live(replay::key(&source_id, &key_hash), now) {
                        seen_keys += 1;
                    }
                }
            }
            let tokens = c
                .prepare_cached(
                    "DELETE FROM source_tokens WHERE token_hash IN \
                     (SELECT token_hash FROM source_tokens WHERE revoked_at IS NULL \
                      AND expires_at IS NOT NULL AND expires_at < ?1 LIMIT ?2)",
                )?
                .execute(params![audit_older_than.min(now), batch])? as u64;
            Ok(InboundPurgeCounts {
                audit_entries,
                seen_keys,
                tokens,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::tests::fresh;
    use crate::sqlite::{SqliteOptions, SqliteStore};

    #[tokio::test]
    async fn source_store_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::source_store(&s).await;
    }

    #[tokio::test]
    async fn audit_payload_bytes_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::audit_payload_bytes(&s).await;
    }

    #[tokio::test]
    async fn source_pages_bounded_in_bytes_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::source_pages_bounded_in_bytes(&s).await;
    }

    #[tokio::test]
    async fn ingest_statistics_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::ingest_statistics(&s).await;
    }

    async fn accept(s: &SqliteStore, id: &str, source: &str, at: Millis, key: u8) -> AcceptOutcome {
        s.accept_inbound(crate::conformance::inbound_accept(
            id,
            source,
            at,
            Some(key),
        ))
        .await
        .unwrap()
    }

    fn accepted(o: &AcceptOutcome) -> bool {
        matches!(o, AcceptOutcome::Accepted { .. })
    }

    /// Keys in memory (logged) and past the in-memory bound (in `inbound_seen`) are replays
    /// before and after a restart; the bound never refuses a new key.
    #[tokio::test]
    async fn replay_keys_survive_a_restart_in_memory_and_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let opts = SqliteOptions {
            replay_keys_max: 2,
            ..SqliteOptions::default()
        };
        let at = crate::now_millis();
        let s = SqliteStore::open(&path, opts.clone()).unwrap();
        for k in [1u8, 2, 3] {
            assert!(accepted(
                &accept(&s, &format!("evt_a{k}"), "src_a", at, k).await
            ));
        }
        {
            let idx = s.inner.replay.lock().unwrap();
            assert_eq!(idx.len(), 2, "the third key went past the bound");
            assert!(idx.table_in_use);
        }
        for k in [1u8, 2, 3] {
            let o = accept(&s, &format!("evt_b{k}"), "src_a", at + 1, k).await;
            assert_eq!(o, AcceptOutcome::Replayed, "key {k}");
        }
        s.close();
        drop(s);
        let s = SqliteStore::open(&path, opts).unwrap();
        for k in [1u8, 2, 3] {
            let o = accept(&s, &format!("evt_c{k}"), "src_a", at + 2, k).await;
            assert_eq!(o, AcceptOutcome::Replayed, "key {k} after a restart");
        }
        // The same key for another source is new (and goes to the table: memory is full).
        assert!(accepted(&accept(&s, "evt_d1", "src_b", at + 2, 1).await));
        assert_eq!(
            accept(&s, "evt_d2", "src_b", at + 3, 1).await,
            AcceptOutcome::Replayed
        );
        // Expired keys are accepted again, past the bound too.
        assert!(accepted(
            &accept(&s, "evt_e1", "src_a", at + 300_000, 1).await
        ));
        assert!(accepted(
            &accept(&s, "evt_e3", "src_a", at + 300_000, 3).await
        ));
    }

    /// Two requests with one key in flight at once: exactly one is accepted.
    #[tokio::test]
    async fn concurrent_requests_with_one_key_accept_one() {
        let (s, _dir) = fresh().await;
        let at = crate::now_millis();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                accept(&s, &format!("evt_{i}"), "src_a", at, 7).await
            }));
        }
        let mut n = 0;
        for t in tasks {
            if accepted(&t.await.unwrap()) {
                n += 1;
            }
        }
        assert_eq!(n, 1);
    }

    /// A key whose transaction fails is not remembered: the provider's retry is accepted.
    #[tokio::test]
    async fn a_key_is_forgotten_when_its_transaction_fails() {
        let (s, _dir) = fresh().await;
        let at = crate::now_millis();
        assert!(accepted(&accept(&s, "evt_1", "src_a", at, 1).await));
        // The event id is taken: the insert fails after the key was admitted.
        let again = crate::conformance::inbound_accept("evt_1", "src_a", at, Some(2));
        assert!(s.accept_inbound(again).await.is_err());
        assert!(accepted(&accept(&s, "evt_2", "src_a", at + 1, 2).await));
        assert_eq!(
            accept(&s, "evt_3", "src_a", at + 2, 2).await,
            AcceptOutcome::Replayed
        );
    }

    /// Listings over every source merge many sources whose entries interleave in time: pages
    /// of every size, walked to the end, give every entry once, newest first.
    #[tokio::test]
    async fn every_source_listing_merges_interleaved_sources() {
        let (s, _dir) = fresh().await;
        let t0 = 1_750_000_000_000;
        let mut batch = Vec::new();
        for i in 0..240i64 {
            // 24 sources (and unknown tokens), entries spread unevenly over time.
            let source = match i % 25 {
                0 => None,
                n => Some(format!("src_{:02}", (n * 7) % 24)),
            };
            let outcome = if i % 3 == 0 {
                "ACCEPTED"
            } else {
                "IP_NOT_ALLOWED"
            };
            batch.push(crate::conformance::audit(
                source.as_deref(),
                t0 + (i * 37) % 240 * 10 + i % 2,
                outcome,
                "192.0.2.9",
            ));
        }
        s.insert_audit(batch).await.unwrap();
        let mut expected: Vec<AuditEntry> = Vec::new();
        let mut before = None;
        for _ in 0..10 {
            let p = s
                .list_audit(AuditFilter::default(), Page::new(before, 250))
                .await
                .unwrap();
            let Some(last) = p.last() else { break };
            before = Some(last.id.clone());
            expected.extend(p);
        }
        assert_eq!(expected.len(), 240);
        assert!(expected.windows(2).all(|w| w[0].id > w[1].id));
        for (limit, outcome) in [(1, None), (7, None), (50, None), (5, Some("ACCEPTED"))] {
            let want: Vec<&String> = expected
                .iter()
                .filter(|e| outcome.is_none_or(|o| e.entry.outcome == o))
                .map(|e| &e.id)
                .collect();
            let f = AuditFilter {
                outcome: outcome.map(str::to_owned),
                since: Some(t0 + 5),
                ..Default::default()
            };
            let want: Vec<&String> = want
                .into_iter()
                .filter(|id| {
                    expected
                        .iter()
                        .any(|e| &e.id == *id && e.entry.received_at >= t0 + 5)
                })
                .collect();
            let mut got: Vec<String> = Vec::new();
            let mut before = None;
            for _ in 0..300 {
                let p = s
                    .list_audit(f.clone(), Page::new(before, limit))
                    .await
                    .unwrap();
                assert!(p.len() <= limit);
                let Some(last) = p.last() else { break };
                before = Some(last.id.clone());
                got.extend(p.into_iter().map(|e| e.id));
            }
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "limit {limit}");
        }
    }

    /// A database from before version 80 (audit keyed by id, NULL source for unknown tokens)
    /// keeps every audit entry through the migration, and the queries read them as before.
    #[tokio::test]
    async fn audit_entries_survive_the_key_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let at = crate::now_millis();
        {
            let mut c = Connection::open(&path).unwrap();
            crate::sqlite::migrate_to(&mut c, 70).unwrap();
            let mut ins = c
                .prepare(
                    "INSERT INTO inbound_audit (id, source_id, token_prefix, received_at, \
                     peer_addr, outcome, status, body_bytes, latency_us) \
                     VALUES (?1, ?2, 'wh_ab', ?3, '192.0.2.1:1', ?4, ?5, 0, 10)",
                )
                .unwrap();
            for (i, source, outcome, status) in [
                (0, Some("src_b"), "ACCEPTED", 202),
                (1, None, "WEBHOOK_NOT_FOUND", 404),
                (2, Some("src_a"), "IP_NOT_ALLOWED", 403),
                (3, Some("src_b"), "SIGNATURE_INVALID", 401),
            ] {
                ins.execute(params![audit_id(at + i), source, at + i, outcome, status])
                    .unwrap();
            }
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let list = |source_id: Option<&str>, unknown_only: bool| {
            s.list_audit(
                AuditFilter {
                    source_id: source_id.map(str::to_owned),
                    unknown_only,
                    ..Default::default()
                },
                Page::new(None, 10),
            )
        };
        let outcomes = |v: Listed<AuditEntry>| {
            v.into_iter()
                .map(|e| (e.entry.source_id, e.entry.outcome))
                .collect::<Vec<_>>()
        };
        let s_b = Some("src_b".to_string());
        assert_eq!(
            outcomes(list(None, false).await.unwrap()),
            [
                (s_b.clone(), "SIGNATURE_INVALID".to_string()),
                (Some("src_a".into()), "IP_NOT_ALLOWED".into()),
                (None, "WEBHOOK_NOT_FOUND".into()),
                (s_b.clone(), "ACCEPTED".into()),
            ]
        );
        assert_eq!(
            outcomes(list(None, true).await.unwrap()),
            [(None, "WEBHOOK_NOT_FOUND".to_string())]
        );
        assert_eq!(list(Some("src_b"), false).await.unwrap().len(), 2);
        let range = crate::StatsRange {
            since: at,
            until: at + 4,
            bucket_ms: 4,
        };
        let total: i64 = s
            .ingest_stats(None, range)
            .await
            .unwrap()
            .iter()
            .map(|b| b.requests)
            .sum();
        assert_eq!(total, 4);
        let c = s.purge_inbound(at + 2, at, 100).await.unwrap();
        assert_eq!(c.audit_entries, 2);
        assert_eq!(list(None, false).await.unwrap().len(), 2);
    }

    /// Payloads written as text (before they were kept as bytes: same schema, the column took
    /// text) read back as their UTF-8 bytes, beside new ones of any bytes, and are sized for
    /// bounded pages like them.
    #[tokio::test]
    async fn text_payloads_from_before_read_back_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let at = crate::now_millis();
        {
            let mut c = Connection::open(&path).unwrap();
            crate::sqlite::migrate_to(&mut c, 80).unwrap();
            c.execute(
                "INSERT INTO inbound_audit (id, source_id, token_prefix, received_at, \
                 peer_addr, outcome, status, body_bytes, latency_us, payload) \
                 VALUES (?1, 'src_a', 'wh_ab', ?2, '192.0.2.1:1', 'ACCEPTED', 202, 6, 10, ?3)",
                params![audit_id(at), at, "h\u{e9}llo"],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let mut e =
            crate::conformance::audit(Some("src_a"), at + 1, "SIGNATURE_INVALID", "192.0.2.1");
        e.payload = Some(Arc::from(&b"\0\xff"[..]));
        s.insert_audit(vec![e]).await.unwrap();
        let got = s
            .list_audit(AuditFilter::default(), Page::new(None, 10))
            .await
            .unwrap();
        let payloads: Vec<Option<&[u8]>> = got.iter().map(|e| e.entry.payload.as_deref()).collect();
        assert_eq!(
            payloads,
            [Some(&b"\0\xff"[..]), Some("h\u{e9}llo".as_bytes())]
        );
        let one = s
            .list_audit(
                AuditFilter::default(),
                Page::new(None, 10).with_max_bytes(1),
            )
            .await
            .unwrap();
        assert_eq!((one.len(), one.more), (1, true));
    }

    /// A database from before version 70 (the log a rowid table with an index on expiry)
    /// keeps its replay keys through the migration, and purging still removes the expired ones.
    #[tokio::test]
    async fn replay_keys_survive_the_log_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let at = crate::now_millis();
        {
            let mut c = Connection::open(&path).unwrap();
            crate::sqlite::migrate_to(&mut c, 60).unwrap();
            let mut ins = c
                .prepare(
                    "INSERT INTO inbound_seen_log (expires_at, source_id, key_hash) \
                     VALUES (?1, ?2, ?3)",
                )
                .unwrap();
            // Key 1 live, key 2 expired, key 3 logged twice (renewed after it expired).
            ins.execute(params![at + 300_000, "src_a", &[1u8; 32][..]])
                .unwrap();
            ins.execute(params![at - 1, "src_a", &[2u8; 32][..]])
                .unwrap();
            ins.execute(params![at - 5, "src_a", &[3u8; 32][..]])
                .unwrap();
            ins.execute(params![at + 300_000, "src_a", &[3u8; 32][..]])
                .unwrap();
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(
            accept(&s, "evt_1", "src_a", at, 1).await,
            AcceptOutcome::Replayed
        );
        assert_eq!(
            accept(&s, "evt_3", "src_a", at, 3).await,
            AcceptOutcome::Replayed
        );
        assert!(accepted(&accept(&s, "evt_2", "src_a", at, 2).await));
        let counts = s.purge_inbound(0, at, 100).await.unwrap();
        // The expired row of key 2 (accepted again since) and of key 3 (renewed) go, and
        // neither key is forgotten.
        assert_eq!(counts.seen_keys, 0);
        let rows: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM inbound_seen_log", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 3, "key 1, key 3's renewal and key 2's new row");
        s.close();
        drop(s);
        // The log still rebuilds the index after a restart.
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for (k, id) in [(1u8, "evt_4"), (2, "evt_5"), (3, "evt_6")] {
            assert_eq!(
                accept(&s, id, "src_a", at + 1, k).await,
                AcceptOutcome::Replayed,
                "key {k}"
            );
        }
        assert!(accepted(&accept(&s, "evt_7", "src_a", at + 1, 4).await));
    }

    #[test]
    fn audit_ids_sort_by_time() {
        let a = audit_id(1_700_000_000_000);
        let b = audit_id(1_700_000_000_001);
        assert!(a < b, "{a} {b}");
        assert!(audit_bound(1_700_000_000_000) <= a);
        assert!(audit_bound(1_700_000_000_001) > a);
        assert!(audit_bound(-5) < a);
        assert_eq!(audit_bound(i64::MAX).len(), a.len());
        let same: Vec<String> = (0..50).map(|_| audit_id(1_700_000_000_005)).collect();
        assert!(same.windows(2).all(|w| w[0] < w[1]), "{same:?}");
    }
}
