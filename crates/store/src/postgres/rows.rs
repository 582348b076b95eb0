//! Row mapping: the columns read for each type and how a row becomes a value; page helpers.

use super::*;

// ---------------------------------------------------------------------------------------------
// Row mapping

pub(super) const ENDPOINT_COLS: &str = "id, url, description, event_types, headers, developer_payload, \
    signature_schemes, rate_limit_per_second, enabled, disabled_reason, disabled_at, \
    client_certificate_id, consecutive_failures, failing_since, created_at, updated_at";

pub(super) fn endpoint_from_row(r: &PgRow) -> Result<Endpoint> {
    let event_types: String = r.try_get(3)?;
    let headers: String = r.try_get(4)?;
    let schemes: String = r.try_get(6)?;
    let rate: Option<i64> = r.try_get(7)?;
    Ok(Endpoint {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        description: r.try_get(2)?,
        event_types: serde_json::from_str(&event_types)?,
        headers: serde_json::from_str(&headers)?,
        developer_payload: r.try_get(5)?,
        signature_schemes: serde_json::from_str(&schemes)?,
        rate_limit_per_second: rate.and_then(|v| u32::try_from(v).ok()),
        enabled: r.try_get(8)?,
        disabled_reason: r.try_get(9)?,
        disabled_at: r.try_get(10)?,
        client_certificate_id: r.try_get(11)?,
        consecutive_failures: r.try_get(12)?,
        failing_since: r.try_get(13)?,
        created_at: r.try_get(14)?,
        updated_at: r.try_get(15)?,
    })
}

pub(super) const EVENT_COLS: &str =
    "id, event_type, payload, idempotency_key, created_at, source_id";

pub(super) fn event_from_row(r: &PgRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get(0)?,
        event_type: r.try_get(1)?,
        payload: r.try_get(2)?,
        idempotency_key: r.try_get(3)?,
        created_at: r.try_get(4)?,
        source_id: r.try_get(5)?,
    })
}

pub(super) const DELIVERY_COLS: &str = "id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at, completed_at";

pub(super) fn delivery_from_row(r: &PgRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        endpoint_id: r.try_get(2)?,
        status: DeliveryStatus::from_i64(i64::from(r.try_get::<i16, _>(3)?)),
        attempt_count: r.try_get(4)?,
        next_attempt_at: r.try_get(5)?,
        last_status_code: r.try_get(6)?,
        last_error: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        completed_at: r.try_get(10)?,
    })
}

pub(super) const ATTEMPT_COLS: &str = "id, delivery_id, attempt_no, started_at, duration_ms, status_code, \
    response_body, response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
    request_headers";

pub(super) fn attempt_from_row(r: &PgRow) -> Result<Attempt> {
    Ok(Attempt {
        id: r.try_get(0)?,
        delivery_id: r.try_get(1)?,
        attempt_no: r.try_get(2)?,
        started_at: r.try_get(3)?,
        duration_ms: r.try_get(4)?,
        status_code: r.try_get(5)?,
        response_body: r.try_get(6)?,
        response_truncated: r.try_get(7)?,
        error_class: r.try_get(8)?,
        error_message: r.try_get(9)?,
        local_addr: r.try_get(10)?,
        remote_addr: r.try_get(11)?,
        outcome: r.try_get(12)?,
        request_headers: r.try_get(13)?,
    })
}

pub(super) fn secret_from_row(r: &PgRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        id: r.try_get(0)?,
        endpoint_id: r.try_get(1)?,
        secret: r.try_get(2)?,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
    })
}

/// No stored key holds a NUL (both backends refuse one in what they store) and PostgreSQL cannot
/// even bind one: a key with a NUL names nothing, as in SQLite, rather than failing the query.
pub(crate) fn names_nothing(key: &str) -> bool {
    key.contains('\0')
}

pub(super) fn limit_of(page: &Page) -> i64 {
    i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(100)
}

/// The page made of `candidates` (keys and stored sizes, in page order, up to `limit + 1`): the
/// rows [`cut`] keeps, read by `rows_sql` (which takes the keys as the array `$1` and returns
/// the rows in page order) — and only those.
pub(super) async fn bounded_page<K, T>(
    pool: &PgPool,
    candidates: Vec<(K, i64)>,
    limit: usize,
    max_bytes: usize,
    rows_sql: &str,
    map: impl Fn(&PgRow) -> Result<T>,
) -> Result<Listed<T>>
where
    Vec<K>: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    let (keys, more) = cut(candidates, limit, max_bytes);
    if keys.is_empty() {
        return Ok(Listed::new(Vec::new(), more));
    }
    let rows = sqlx::query(rows_sql).bind(keys).fetch_all(pool).await?;
    Ok(Listed::new(
        rows.iter().map(map).collect::<Result<Vec<_>>>()?,
        more,
    ))
}

pub(super) const fn status_i16(s: DeliveryStatus) -> i16 {
    // as_i64 is 0..=4.
    s.as_i64() as i16
}

pub(super) const PENDING: i16 = status_i16(DeliveryStatus::Pending);
pub(super) const PAUSED: i16 = status_i16(DeliveryStatus::Paused);
