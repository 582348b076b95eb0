use thiserror::Error;

/// A storage failure. `Conflict`, `NotFound` and `InvalidText` are for callers to map to
/// 409/404/422; everything else is an internal error that must never leak details to API
/// clients.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Text that cannot be stored (a NUL character), refused the same way by every backend.
    #[error("{0} contains a NUL character")]
    InvalidText(&'static str),
    #[error("the store is shut down")]
    Closed,
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            // A unique or primary-key violation is a conflict (409), as on PostgreSQL.
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict("already exists".into())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn sqlite_unique_violations_are_conflicts() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE); INSERT INTO t VALUES (1, 'a');")
            .unwrap();
        let pk = c.execute("INSERT INTO t VALUES (1, 'b')", []).unwrap_err();
        assert!(matches!(StoreError::from(pk), StoreError::Conflict(_)));
        let uq = c.execute("INSERT INTO t VALUES (2, 'a')", []).unwrap_err();
        assert!(matches!(StoreError::from(uq), StoreError::Conflict(_)));
        let other = c.execute("INSERT INTO nope VALUES (1)", []).unwrap_err();
        assert!(matches!(StoreError::from(other), StoreError::Database(_)));
    }
}
