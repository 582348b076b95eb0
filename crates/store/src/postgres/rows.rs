//! Row mapping: the columns read for each type and how a row becomes a value; page helpers.

use super::*;

// ---------------------------------------------------------------------------------------------
// Row mapping

/// No stored key holds a NUL (both backends refuse one in what they store) and PostgreSQL cannot
/// even bind one: a key with a NUL names nothing, as in SQLite, rather than failing the query.
pub(crate) fn names_nothing(key: &str) -> bool {
    key.contains('\0')
}

/// The row `sql` reads for the key `$1`, mapped by `map`; none for a key that names nothing.
pub(super) async fn by_key<T>(
    pool: &PgPool,
    sql: &str,
    key: &str,
    map: impl Fn(&PgRow) -> Result<T>,
) -> Result<Option<T>> {
    if names_nothing(key) {
        return Ok(None);
    }
    sqlx::query(sql)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(map)
        .transpose()
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
