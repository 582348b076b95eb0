//! Row mapping: the columns read for each type and how a row becomes a value; page helpers.

use super::*;

pub(super) const ENDPOINT_COLS: &str = "id, url, description, event_types, headers, developer_payload, \
    signature_schemes, rate_limit_per_second, enabled, disabled_reason, disabled_at, \
    client_certificate_id, consecutive_failures, failing_since, created_at, updated_at";

pub(super) fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let json_err = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let event_types: String = r.get(3)?;
    let headers: String = r.get(4)?;
    let schemes: String = r.get(6)?;
    let rate: Option<i64> = r.get(7)?;
    Ok(Endpoint {
        id: r.get(0)?,
        url: r.get(1)?,
        description: r.get(2)?,
        event_types: serde_json::from_str(&event_types).map_err(|e| json_err(3, e))?,
        headers: serde_json::from_str(&headers).map_err(|e| json_err(4, e))?,
        developer_payload: r.get(5)?,
        signature_schemes: serde_json::from_str(&schemes).map_err(|e| json_err(6, e))?,
        rate_limit_per_second: rate.and_then(|v| u32::try_from(v).ok()),
        enabled: r.get::<_, i64>(8)? != 0,
        disabled_reason: r.get(9)?,
        disabled_at: r.get(10)?,
        client_certificate_id: r.get(11)?,
        consecutive_failures: r.get(12)?,
        failing_since: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

/// The oldest due delivery: one seek in the partial index `deliveries_due`.
pub(super) const QUEUE_OLDEST_SQLITE: &str = concat!(
    "SELECT next_attempt_at FROM deliveries \
     WHERE status = ",
    st!(pending),
    " AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT 1"
);
/// Due deliveries, counted up to a cap: a range scan of `deliveries_due` that stops there.
pub(super) const QUEUE_DUE_SQLITE: &str = concat!(
    "SELECT count(*) FROM (SELECT 1 FROM deliveries \
     WHERE status = ",
    st!(pending),
    " AND next_attempt_at <= ?1 LIMIT ?2)"
);

pub(super) const EVENT_COLS: &str =
    "id, event_type, payload, idempotency_key, created_at, source_id";

pub(super) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        event_type: r.get(1)?,
        payload: r.get(2)?,
        idempotency_key: r.get(3)?,
        created_at: r.get(4)?,
        source_id: r.get(5)?,
    })
}

pub(super) const DELIVERY_COLS: &str = "id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at, completed_at";

pub(super) fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        endpoint_id: r.get(2)?,
        status: DeliveryStatus::from_i64(r.get(3)?),
        attempt_count: r.get(4)?,
        next_attempt_at: r.get(5)?,
        last_status_code: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        completed_at: r.get(10)?,
    })
}

pub(super) fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get(0)?,
        delivery_id: r.get(1)?,
        attempt_no: r.get(2)?,
        started_at: r.get(3)?,
        duration_ms: r.get(4)?,
        status_code: r.get(5)?,
        response_body: r.get(6)?,
        response_truncated: r.get::<_, i64>(7)? != 0,
        error_class: r.get(8)?,
        error_message: r.get(9)?,
        local_addr: r.get(10)?,
        remote_addr: r.get(11)?,
        outcome: r.get(12)?,
        request_headers: r.get(13)?,
    })
}

pub(super) fn limit_of(page: &Page) -> i64 {
    i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(100)
}

/// Reads `(key, stored size)` pairs: the candidates of a bounded page.
pub(super) fn sized<K: rusqlite::types::FromSql>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(K, i64)>> {
    Ok(stmt
        .query_map(params, |r| Ok((r.get::<_, K>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The page made of `candidates` (keys and stored sizes, in page order, up to `limit + 1`):
/// the rows [`cut`] keeps, each read whole by `fetch` — and only those. Call it inside the
/// transaction that read the candidates, so both reads see one snapshot.
pub(super) fn bounded_page<K, T>(
    candidates: Vec<(K, i64)>,
    limit: usize,
    max_bytes: usize,
    mut fetch: impl FnMut(&K) -> Result<Option<T>>,
) -> Result<Listed<T>> {
    let (keys, more) = cut(candidates, limit, max_bytes);
    let mut rows = Vec::with_capacity(keys.len());
    for k in &keys {
        if let Some(row) = fetch(k)? {
            rows.push(row);
        }
    }
    Ok(Listed::new(rows, more))
}
