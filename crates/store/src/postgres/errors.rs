//! Errors: PostgreSQL's, mapped to the store's (conflicts by constraint, which may be
//! retried), and the transaction error that carries them.

use super::*;

// ---------------------------------------------------------------------------------------------
// Errors

/// An error inside a transaction: either from the database (and maybe worth another try) or a
/// decision of ours.
#[derive(Debug)]
pub(super) enum TxError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl From<serde_json::Error> for TxError {
    fn from(e: serde_json::Error) -> Self {
        TxError::Store(e.into())
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Sql(e) => e.into(),
            TxError::Store(e) => e,
        }
    }
}

impl TxError {
    /// Deadlock detected or serialisation failure: the transaction was rolled back and running
    /// it again is correct.
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            TxError::Sql(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
            }
            _ => false,
        }
    }
}

/// Whether a PostgreSQL failure may pass on a second try: the connection was lost or could not
/// be made (an I/O error, TLS, a pool that timed out), or the server says so by its SQLSTATE
/// class: 08 connection exception, 40 transaction rollback (serialization failure, deadlock),
/// 53 insufficient resources, 57P01-57P03 (the server is shutting down or starting).
pub(super) fn pg_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("40")
                || c.starts_with("53")
                || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(conflict_message(db.constraint()).into())
            }
            sqlx::Error::PoolClosed => StoreError::Closed,
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Corrupt(e.to_string()),
            sqlx::Error::PoolTimedOut => {
                StoreError::database("timed out waiting for a database connection", true)
            }
            _ => {
                let retryable = pg_retryable(&e);
                StoreError::Database(DbError::from_cause(e, retryable))
            }
        }
    }
}

/// A message fit for an API client (409) for a unique constraint.
pub(super) fn conflict_message(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some("endpoints_pkey") => "an endpoint with this id already exists",
        Some("api_keys_pkey") | Some("api_keys_key_hash_key") => "this API key already exists",
        Some("events_pkey") => "an event with this id already exists",
        Some("deliveries_pkey") => "a delivery with this id already exists",
        _ => "already exists",
    }
}

/// Runs `$body` (which uses the transaction `$tx` and `?`) in a transaction, committing at the
/// end, and runs it all again when PostgreSQL aborted it for a deadlock or serialisation
/// failure. `$body` must therefore only borrow what it uses.
macro_rules! in_tx {
    ($pool:expr, |$tx:ident| $body:block) => {{
        let mut tries = 0u32;
        loop {
            tries += 1;
            let r: std::result::Result<_, TxError> = async {
                let mut $tx = $pool.begin().await?;
                let v = $body;
                $tx.commit().await?;
                Ok(v)
            }
            .await;
            match r {
                Err(e) if e.is_retryable() && tries < MAX_TRIES => {
                    tracing::debug!(tries, "postgres transaction lost a race, running it again");
                    tokio::time::sleep(Duration::from_millis(u64::from(tries) * 5)).await;
                }
                other => break other.map_err(StoreError::from),
            }
        }
    }};
}
