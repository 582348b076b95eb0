//! Writes shared by the store's delivery operations: subscriptions, endpoint enabling,
//! attempts, recorded outcomes (through the shared state machine) and retention passes.

use super::*;

/// Event-type subscriptions: one row per type, or a single `*` row for "every type".
pub(super) fn write_event_types(
    conn: &Connection,
    endpoint_id: &str,
    types: &[String],
) -> Result<()> {
    conn.prepare_cached("DELETE FROM endpoint_event_types WHERE endpoint_id = ?1")?
        .execute([endpoint_id])?;
    let mut ins = conn.prepare_cached(
        "INSERT OR IGNORE INTO endpoint_event_types (event_type, endpoint_id) VALUES (?1, ?2)",
    )?;
    if types.is_empty() {
        ins.execute(params!["*", endpoint_id])?;
    } else {
        for t in types {
            ins.execute(params![t, endpoint_id])?;
        }
    }
    Ok(())
}

/// The live endpoints subscribed to `event_type` (exactly, by a trailing wildcard, or to
/// everything), each once, appended to `out`: one statement whose `IN` list holds the
/// subscription keys (one index seek each). Statements are cached per key count (at most one
/// per `.` in a type, plus two).
pub(super) fn subscribers(
    conn: &Connection,
    event_type: &str,
    mut out: Vec<crate::filter::Target>,
) -> Result<Vec<crate::filter::Target>> {
    let keys = crate::subscription_keys(event_type);
    let mut sql = String::with_capacity(160 + keys.len() * 4);
    sql.push_str(
        "SELECT e.id, e.enabled, e.filter FROM endpoint_event_types t \
         JOIN endpoints e ON e.id = t.endpoint_id WHERE t.event_type IN (",
    );
    for i in 1..=keys.len() {
        if i > 1 {
            sql.push(',');
        }
        sql.push('?');
        sql.push_str(&i.to_string());
    }
    sql.push_str(") AND e.deleted_at IS NULL");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(keys.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)? != 0,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let t = row?;
        if !out.iter().any(|(o, _, _)| *o == t.0) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Pauses an endpoint's pending deliveries (it was disabled, by hand or by the breaker).
fn pause_pending(conn: &Connection, endpoint_id: &str, now: Millis) -> Result<()> {
    conn.prepare_cached(concat!(
        "UPDATE deliveries SET status = ",
        st!(paused),
        ", updated_at = ?2 WHERE endpoint_id = ?1 AND status = ",
        st!(pending)
    ))?
    .execute(params![endpoint_id, now])?;
    Ok(())
}

pub(super) fn set_enabled_tx(
    conn: &Connection,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
    now: Millis,
) -> Result<bool> {
    let changed = if enabled {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, disabled_at = NULL, \
             consecutive_failures = 0, failing_since = NULL, updated_at = ?2 \
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, now])?
    } else {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, disabled_at = ?3, updated_at = ?3 \
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, reason, now])?
    };
    if changed == 0 {
        return Ok(false);
    }
    if enabled {
        conn.prepare_cached(concat!(
            "UPDATE deliveries SET status = ",
            st!(pending),
            ", next_attempt_at = ?2, lease_owner = NULL, updated_at = ?2 \
             WHERE endpoint_id = ?1 AND status = ",
            st!(paused)
        ))?
        .execute(params![id, now])?;
    } else {
        pause_pending(conn, id, now)?;
    }
    Ok(true)
}

pub(super) fn insert_attempt(
    conn: &Connection,
    delivery_id: &str,
    a: &NewAttempt,
    outcome: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, \
         response_body, response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
         request_headers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        delivery_id,
        a.attempt_no,
        a.started_at,
        a.duration_ms,
        a.status_code,
        a.response_body,
        a.response_truncated as i64,
        a.error_class,
        a.error_message,
        a.local_addr,
        a.remote_addr,
        outcome,
        a.request_headers,
    ])?;
    Ok(())
}

/// A batch of outcomes inside the writer's transaction: the rows they touch are read, the
/// shared state machine ([`crate::machine`]) decides, and the changed rows are written back,
/// each conditional on the state read.
pub(super) fn record_outcomes_tx(
    conn: &Connection,
    outcomes: &[Outcome],
    breaker: &BreakerPolicy,
    now: Millis,
) -> Result<Vec<TrippedEndpoint>> {
    let mut deliveries: HashMap<String, DeliveryRow> = HashMap::new();
    {
        let mut read = conn.prepare_cached(
            "SELECT endpoint_id, status, attempt_count, next_attempt_at, lease_owner, \
             last_status_code, last_error, completed_at, updated_at FROM deliveries WHERE id = ?1",
        )?;
        for o in outcomes {
            if deliveries.contains_key(&o.delivery_id) {
                continue;
            }
            let row = read
                .query_row([&o.delivery_id], |r| row::delivery_state(r, 0))
                .optional()?;
            if let Some(row) = row {
                deliveries.insert(o.delivery_id.clone(), row);
            }
        }
    }
    let mut endpoints: HashMap<String, EndpointRow> = HashMap::new();
    {
        let mut read = conn.prepare_cached(
            "SELECT enabled, deleted_at IS NOT NULL, consecutive_failures, failing_since, \
             disabled_reason, disabled_at, updated_at FROM endpoints WHERE id = ?1",
        )?;
        let ids: BTreeSet<&str> = outcomes
            .iter()
            .map(|o| o.endpoint_id.as_str())
            .chain(deliveries.values().map(|d| d.endpoint_id.as_str()))
            .collect();
        for id in ids {
            let row = read
                .query_row([id], |r| row::endpoint_state(r, 0))
                .optional()?;
            if let Some(row) = row {
                endpoints.insert(id.to_owned(), row);
            }
        }
    }

    let applied = machine::apply(&mut endpoints, &mut deliveries, outcomes, breaker, now);

    for (id, d) in deliveries.iter().filter(|(_, d)| d.dirty) {
        // Conditional on the state read: the only writer cannot have moved it meanwhile, and if
        // it ever did, the batch is refused rather than overwriting it (before its attempts and
        // endpoint rows are written).
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, attempt_count = ?3, next_attempt_at = ?4, \
                 lease_owner = ?5, last_status_code = ?6, last_error = ?7, completed_at = ?8, \
                 updated_at = ?9 \
                 WHERE id = ?1 AND status = ?10 AND lease_owner IS ?11 AND next_attempt_at = ?12",
            )?
            .execute(params![
                id,
                d.status,
                d.attempt_count,
                d.next_attempt_at,
                d.lease_owner,
                d.last_status_code,
                d.last_error,
                d.completed_at,
                d.updated_at,
                d.read.status,
                d.read.lease_owner,
                d.read.next_attempt_at
            ])?;
        if changed != 1 {
            return Err(StoreError::database(
                "a delivery changed while its outcome was being recorded",
                true,
            ));
        }
    }
    for &(i, label) in &applied.attempts {
        if let Some((o, a)) = outcomes.get(i).and_then(|o| Some((o, o.attempt.as_ref()?))) {
            insert_attempt(conn, &o.delivery_id, a, label)?;
        }
    }
    for (id, ep) in endpoints.iter().filter(|(_, e)| e.dirty) {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = ?2, disabled_reason = ?3, disabled_at = ?4, \
             consecutive_failures = ?5, failing_since = ?6, updated_at = ?7 WHERE id = ?1",
        )?
        .execute(params![
            id,
            i64::from(ep.enabled),
            ep.disabled_reason,
            ep.disabled_at,
            ep.consecutive_failures,
            ep.failing_since,
            ep.updated_at
        ])?;
    }
    // The tripped endpoints' other pending deliveries pause (those of the batch already did).
    for t in &applied.tripped {
        pause_pending(conn, &t.endpoint_id, now)?;
    }
    Ok(applied.tripped)
}

/// Finished deliveries (succeeded, failed, cancelled) completed before ?1, oldest first: the
/// condition repeats deliveries_finished's word for word, so that SQLite uses that index.
pub(super) const FINISHED_BEFORE_SQL: &str = concat!(
    "SELECT id FROM deliveries WHERE status > ",
    st!(pending),
    " AND status <> ",
    st!(paused),
    " \
     AND completed_at < ?1 ORDER BY completed_at LIMIT ?2"
);

/// One bounded retention pass (see [`Store::purge_finished`]).
pub(super) fn purge_tx(c: &Connection, older_than: Millis, batch: i64) -> Result<PurgeCounts> {
    let mut counts = PurgeCounts::default();
    let ids: Vec<String> = c
        .prepare_cached(FINISHED_BEFORE_SQL)?
        .query_map(params![older_than, batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut budget = batch;
    for id in &ids {
        if budget <= 0 {
            break;
        }
        let n = c
            .prepare_cached(
                "DELETE FROM attempts WHERE id IN \
                 (SELECT id FROM attempts WHERE delivery_id = ?1 LIMIT ?2)",
            )?
            .execute(params![id, budget])?;
        counts.attempts += n as u64;
        budget -= i64::try_from(n).unwrap_or(i64::MAX);
    }
    // A delivery goes once all its attempts are gone (a later call finishes the rest).
    let mut del = c.prepare_cached(
        "DELETE FROM deliveries WHERE id = ?1 \
         AND NOT EXISTS (SELECT 1 FROM attempts WHERE delivery_id = ?1)",
    )?;
    for id in &ids {
        counts.deliveries += del.execute([id])? as u64;
    }
    counts.idempotency_keys = c
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE key IN \
             (SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![older_than, batch])? as u64;
    counts.events = c
        .prepare_cached(
            "DELETE FROM events WHERE id IN \
             (SELECT e.id FROM events e WHERE e.created_at < ?1 \
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
              AND NOT EXISTS (SELECT 1 FROM idempotency_keys k \
                              WHERE k.key = e.idempotency_key AND k.event_id = e.id) \
              ORDER BY e.created_at LIMIT ?2)",
        )?
        .execute(params![older_than, batch])? as u64;
    Ok(counts)
}
