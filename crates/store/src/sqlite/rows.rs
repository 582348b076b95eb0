//! Row mapping: the columns read for each type and how a row becomes a value; page helpers.

use super::*;

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

impl SqliteStore {
    /// The row `sql` reads for the key `?1`, mapped by `map`.
    pub(super) async fn by_key<T: Send + 'static>(
        &self,
        sql: String,
        key: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        let key = key.to_owned();
        self.read(move |c| Ok(c.prepare_cached(&sql)?.query_row([key], map).optional()?))
            .await
    }
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
