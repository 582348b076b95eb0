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
    Database(DbError),
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
            rusqlite::Error::SqliteFailure(f, _) => {
                // Another connection holds a lock: the same statement may well pass in a moment.
                let retryable = matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                );
                StoreError::Database(DbError::from_cause(e, retryable))
            }
            _ => StoreError::Database(DbError::from_cause(e, false)),
        }
    }
}

/// A database failure: what happened, the backend's own error when there is one, and whether
/// trying again may help (a lock held elsewhere, a connection lost or not to be had in time, a
/// serialization failure) or will not (a bad statement, a full disk, a refused schema).
#[derive(Debug, Clone)]
pub struct DbError {
    message: String,
    retryable: bool,
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl DbError {
    /// A failure Hookwarden itself detected (no backend error behind it).
    pub fn new(message: impl Into<String>, retryable: bool) -> DbError {
        DbError {
            message: message.into(),
            retryable,
            cause: None,
        }
    }

    /// A backend error, kept as it was.
    pub fn from_cause(
        cause: impl std::error::Error + Send + Sync + 'static,
        retryable: bool,
    ) -> DbError {
        DbError {
            message: cause.to_string(),
            retryable,
            cause: Some(std::sync::Arc::new(cause)),
        }
    }

    /// The same failure, said in a wider context (`commit failed: …`), cause and retryability
    /// kept.
    pub fn context(&self, what: &str) -> DbError {
        DbError {
            message: format!("{what}: {}", self.message),
            ..self.clone()
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The backend's own error (`rusqlite::Error`, `sqlx::Error`), to downcast when a caller
    /// must tell its cases apart.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

/// The message already carries the cause's text; the cause is not repeated as
/// [`std::error::Error::source`], so that an error chain prints it once.
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl StoreError {
    /// A database failure Hookwarden detected itself.
    pub fn database(message: impl Into<String>, retryable: bool) -> StoreError {
        StoreError::Database(DbError::new(message, retryable))
    }

    /// Whether trying the same operation again may succeed: a database that is busy, locked,
    /// unreachable for a moment or out of connections; an interrupted read or write. Never for
    /// a refusal (not found, conflict, invalid text), corrupt data or a store that is shut down.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(d) => d.is_retryable(),
            StoreError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            StoreError::NotFound
            | StoreError::Conflict(_)
            | StoreError::Corrupt(_)
            | StoreError::InvalidText(_)
            | StoreError::Closed => false,
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
        let other = StoreError::from(other);
        assert!(matches!(&other, StoreError::Database(_)));
        assert!(!other.is_retryable(), "a bad statement stays bad");
        // The backend's error is kept, and said once.
        let StoreError::Database(d) = &other else {
            unreachable!()
        };
        assert!(d.cause().is_some_and(|c| c.is::<rusqlite::Error>()));
        assert_eq!(
            other.to_string(),
            format!("database error: {}", d.cause().unwrap())
        );
        assert!(
            std::error::Error::source(&other).is_none(),
            "a chain would say it twice"
        );
    }

    #[test]
    fn a_busy_database_is_worth_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = rusqlite::Connection::open(&path).unwrap();
        a.execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let b = rusqlite::Connection::open(&path).unwrap();
        b.busy_timeout(std::time::Duration::ZERO).unwrap();
        let busy = StoreError::from(b.execute("INSERT INTO t VALUES (2)", []).unwrap_err());
        assert!(busy.is_retryable(), "{busy}");
        assert!(!StoreError::Closed.is_retryable());
        assert!(!StoreError::NotFound.is_retryable());
        assert!(StoreError::database("pool timed out", true).is_retryable());
    }
}
