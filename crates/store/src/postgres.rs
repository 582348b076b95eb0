//! The PostgreSQL backend: any number of Hookwarden instances sharing one database.
//!
//! Semantics are those of the SQLite backend (the conformance suite is the contract); what
//! differs is how they are kept when several processes write at once:
//!
//! - Claiming uses `FOR UPDATE SKIP LOCKED` over the partial index of pending deliveries, so
//!   instances never wait for each other and never claim the same due delivery twice. A lease is
//!   `next_attempt_at` moved to the lease's end plus `lease_owner`, exactly as in SQLite: an
//!   expired lease is simply due again.
//! - Writes that read before they write lock what they read, always in the same order
//!   (endpoints by id, then deliveries by id), so concurrent writers serialise instead of
//!   deciding on stale rows. A deadlock or serialisation failure that PostgreSQL reports anyway
//!   (bulk updates can still meet in another order) makes the whole transaction run again.
//! - `record_outcomes` is a fixed handful of statements per batch, whatever its size: it locks
//!   the rows involved, replays SQLite's per-outcome logic (circuit breaker and lease guards
//!   included) in memory, and writes the results back with `UNNEST` arrays.
//! - Idempotency keys are a primary key, so two instances racing with one key make one event.
//! - Migrations run in one transaction under an advisory lock; the applied versions are rows of
//!   `schema_migrations` (as in the SQLite backend: every known version not recorded is applied).

use crate::listing::{self, cut};
use crate::machine::{self, DeliveryRow, EndpointRow};
use crate::text::{recorded_outcomes, storable};
use crate::types::*;
use crate::{DbError, Listed, Result, Store, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Row};
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Schema migrations, applied in order; a migration is never edited once released.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("postgres/0001_init.sql")),
    (
        10,
        "client_certificates",
        include_str!("postgres/0010_client_certificates.sql"),
    ),
    (
        20,
        "sources_audit",
        include_str!("postgres/0020_sources_audit.sql"),
    ),
    (35, "console", include_str!("postgres/0035_console.sql")),
    (
        40,
        "events_by_type",
        include_str!("postgres/0040_events_by_type.sql"),
    ),
    (
        90,
        "audit_payload_bytes",
        include_str!("postgres/0090_audit_payload_bytes.sql"),
    ),
    (
        100,
        "api_key_lifecycle",
        include_str!("postgres/0100_api_key_lifecycle.sql"),
    ),
];

/// `pg_advisory_xact_lock` key serialising migrations of one database ("hookward").
const MIGRATION_LOCK: i64 = 0x686f_6f6b_7761_7264;

/// How often a transaction that lost a deadlock or serialisation race is tried in all.
const MAX_TRIES: u32 = 5;

/// Connection pool and session settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections this instance opens.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout_ms: u64,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout_ms: Option<u64>,
    /// Server-side `statement_timeout` for every statement (migrations are exempt).
    pub statement_timeout_ms: Option<u64>,
    /// Run pending migrations in [`PgStore::connect`]. When false, `connect` refuses a database
    /// whose schema is not current (run `hookwarden migrate`, i.e. [`PgStore::migrate`], first).
    pub migrate_on_connect: bool,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            idle_timeout_ms: Some(600_000),
            statement_timeout_ms: Some(30_000),
            migrate_on_connect: true,
            application_name: "hookwarden".into(),
        }
    }
}

/// What [`PgStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The newest schema migration found (0 for an empty database).
    pub from_version: i32,
    /// The newest schema migration now (the newest this binary knows).
    pub to_version: i32,
    /// The migrations applied by this call, in order (empty when none were pending).
    pub applied: Vec<i32>,
}

/// The PostgreSQL store. Cheap to clone (a handle on one connection pool).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Changes heard on [`CHANGES_CHANNEL`], fanned out to this process's caches.
    changes: tokio::sync::broadcast::Sender<crate::Change>,
    /// Whether the LISTEN task runs (started by the first [`Store::watch_changes`]).
    listening: Arc<std::sync::atomic::AtomicBool>,
}

/// The `LISTEN`/`NOTIFY` channel on which instances announce changes to cached objects.
pub const CHANGES_CHANNEL: &str = "hookwarden_changes";

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error inside a transaction: either from the database (and maybe worth another try) or a
/// decision of ours.
#[derive(Debug)]
enum TxError {
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
    fn is_retryable(&self) -> bool {
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
fn pg_retryable(e: &sqlx::Error) -> bool {
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
fn conflict_message(constraint: Option<&str>) -> &'static str {
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

mod api_keys;
mod certs;
mod sealed;
mod sources;

// ---------------------------------------------------------------------------------------------
// Connecting and migrating

impl PgStore {
    /// Connects a pool to `url` (`postgres://user:pass@host:port/db?sslmode=require`) and,
    /// unless `opts.migrate_on_connect` is false, runs pending migrations (safe when several
    /// instances start at once).
    pub async fn connect(url: &str, opts: PgOptions) -> Result<PgStore> {
        let migrate = opts.migrate_on_connect;
        let store = Self::connect_unchecked(url, opts).await?;
        if migrate {
            store.migrate().await?;
        } else {
            let recorded = store.recorded_migrations().await?;
            let pending = pending_migrations(&recorded)?;
            if !pending.is_empty() {
                return Err(StoreError::database(
                    format!(
                        "the database lacks {} schema migration(s) (newest known: {}): run \
                     `hookwarden migrate`",
                        pending.len(),
                        latest_version()
                    ),
                    false,
                ));
            }
        }
        Ok(store)
    }

    /// Connects without looking at the schema (for `hookwarden migrate`, which then calls
    /// [`PgStore::migrate`] and reports what it applied).
    pub async fn connect_unchecked(url: &str, opts: PgOptions) -> Result<PgStore> {
        let mut conn = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::database(format!("invalid PostgreSQL URL: {e}"), false))?
            .application_name(&opts.application_name);
        if let Some(ms) = opts.statement_timeout_ms {
            conn = conn.options([("statement_timeout", ms.to_string())]);
        }
        let max = opts.max_connections.max(1);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .min_connections(opts.min_connections.min(max))
            .acquire_timeout(Duration::from_millis(opts.acquire_timeout_ms.max(1)))
            .idle_timeout(opts.idle_timeout_ms.map(Duration::from_millis))
            .connect_with(conn)
            .await?;
        let store = PgStore {
            pool,
            changes: tokio::sync::broadcast::channel(1024).0,
            listening: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        Ok(store)
    }

    /// Applies pending migrations, all in one transaction under an advisory lock, so that
    /// instances starting together apply each migration exactly once. Like the SQLite backend,
    /// every known version not yet recorded in `schema_migrations` is applied, in ascending
    /// order (so migrations developed in parallel may land in any order); a database that
    /// records a version this binary does not know is refused.
    pub async fn migrate(&self) -> Result<Migrated> {
        let migrated = in_tx!(self.pool, |tx| {
            // A migration may legitimately run long, and waiting for another instance's
            // migration is expected.
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .execute(&mut *tx)
            .await?;
            let recorded: Vec<i32> =
                sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                    .fetch_all(&mut *tx)
                    .await?;
            let pending = pending_migrations(&recorded)?;
            let mut applied = Vec::with_capacity(pending.len());
            for (version, name, sql) in pending {
                // Several statements: the simple-query protocol (a &str with no arguments).
                (&mut *tx).execute(sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(version, name, "applied PostgreSQL migration");
                applied.push(version);
            }
            Migrated {
                from_version: recorded.iter().copied().max().unwrap_or(0),
                to_version: latest_version(),
                applied,
            }
        })?;
        Ok(migrated)
    }

    /// Listens on [`CHANGES_CHANNEL`] until the pool closes, reconnecting after a lost
    /// connection; every (re)connection is announced as [`crate::Change::All`], since
    /// notifications sent while disconnected are lost.
    async fn listen_changes(pool: PgPool, tx: tokio::sync::broadcast::Sender<crate::Change>) {
        use sqlx::postgres::PgListener;
        let mut first = true;
        while !pool.is_closed() {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for changes; retrying");
                    let _ = tx.send(crate::Change::All);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANGES_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if !first {
                let _ = tx.send(crate::Change::All);
            }
            first = false;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let _ = tx.send(crate::Change::decode(n.payload()));
                    }
                    Ok(None) => {
                        // The connection was lost (and is re-established by the next call);
                        // whatever was announced meanwhile is unknown.
                        let _ = tx.send(crate::Change::All);
                    }
                    Err(e) => {
                        if !pool.is_closed() {
                            tracing::warn!(error = %e, "listening for changes failed; reconnecting");
                            let _ = tx.send(crate::Change::All);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// The newest schema migration recorded in the database (0 when it was never migrated).
    pub async fn schema_version(&self) -> Result<i32> {
        Ok(self
            .recorded_migrations()
            .await?
            .last()
            .copied()
            .unwrap_or(0))
    }

    async fn recorded_migrations(&self) -> Result<Vec<i32>> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        if !exists {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Closes every connection; later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn latest_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

/// The known migrations not in `recorded`, in ascending version order; an error when the
/// database records one this binary does not know (it was migrated by a newer binary).
fn pending_migrations(recorded: &[i32]) -> Result<Vec<(i32, &'static str, &'static str)>> {
    if let Some(unknown) = recorded
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|m| m.0 == **v))
    {
        return Err(StoreError::database(
            format!(
                "database has schema migration {unknown}, unknown to this binary (it knows up to {}); \
             run a newer hookwarden",
                latest_version()
            ),
            false,
        ));
    }
    let mut pending: Vec<_> = MIGRATIONS
        .iter()
        .copied()
        .filter(|m| !recorded.contains(&m.0))
        .collect();
    pending.sort_by_key(|m| m.0);
    Ok(pending)
}

// ---------------------------------------------------------------------------------------------
// Row mapping

use crate::new_prefixed_id as new_id;

const ENDPOINT_COLS: &str = "id, url, description, event_types, headers, developer_payload, \
    signature_schemes, rate_limit_per_second, enabled, disabled_reason, disabled_at, \
    client_certificate_id, consecutive_failures, failing_since, created_at, updated_at";

fn endpoint_from_row(r: &PgRow) -> Result<Endpoint> {
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

const EVENT_COLS: &str = "id, event_type, payload, idempotency_key, created_at, source_id";

fn event_from_row(r: &PgRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get(0)?,
        event_type: r.try_get(1)?,
        payload: r.try_get(2)?,
        idempotency_key: r.try_get(3)?,
        created_at: r.try_get(4)?,
        source_id: r.try_get(5)?,
    })
}

const DELIVERY_COLS: &str = "id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at, completed_at";

fn delivery_from_row(r: &PgRow) -> Result<Delivery> {
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

const ATTEMPT_COLS: &str = "id, delivery_id, attempt_no, started_at, duration_ms, status_code, \
    response_body, response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
    request_headers";

fn attempt_from_row(r: &PgRow) -> Result<Attempt> {
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

fn secret_from_row(r: &PgRow) -> Result<SecretRecord> {
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

fn limit_of(page: &Page) -> i64 {
    i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(100)
}

/// The page made of `candidates` (keys and stored sizes, in page order, up to `limit + 1`): the
/// rows [`cut`] keeps, read by `rows_sql` (which takes the keys as the array `$1` and returns
/// the rows in page order) — and only those.
async fn bounded_page<K, T>(
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

const fn status_i16(s: DeliveryStatus) -> i16 {
    // as_i64 is 0..=4.
    s.as_i64() as i16
}

const PENDING: i16 = status_i16(DeliveryStatus::Pending);
const PAUSED: i16 = status_i16(DeliveryStatus::Paused);

// ---------------------------------------------------------------------------------------------
// Shared pieces of write transactions

/// Event-type subscriptions: one row per type, or a single `*` row for "every type".
async fn write_event_types(
    c: &mut PgConnection,
    endpoint_id: &str,
    types: &[String],
) -> std::result::Result<(), TxError> {
    sqlx::query("DELETE FROM endpoint_event_types WHERE endpoint_id = $1")
        .bind(endpoint_id)
        .execute(&mut *c)
        .await?;
    let types: Vec<&str> = if types.is_empty() {
        vec!["*"]
    } else {
        types.iter().map(String::as_str).collect()
    };
    sqlx::query(
        "INSERT INTO endpoint_event_types (event_type, endpoint_id) \
         SELECT t, $2 FROM UNNEST($1::text[]) AS t ON CONFLICT DO NOTHING",
    )
    .bind(types)
    .bind(endpoint_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn set_enabled_tx(
    c: &mut PgConnection,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
    now: Millis,
) -> std::result::Result<bool, TxError> {
    let changed = if enabled {
        sqlx::query(
            "UPDATE endpoints SET enabled = TRUE, disabled_reason = NULL, disabled_at = NULL, \
             consecutive_failures = 0, failing_since = NULL, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE endpoints SET enabled = FALSE, disabled_reason = $2, disabled_at = $3, \
             updated_at = $3 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    };
    if changed == 0 {
        return Ok(false);
    }
    if enabled {
        sqlx::query(
            "UPDATE deliveries SET status = 0, next_attempt_at = $2, lease_owner = NULL, \
             updated_at = $2 WHERE endpoint_id = $1 AND status = 3",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    } else {
        sqlx::query(
            "UPDATE deliveries SET status = 3, updated_at = $2 WHERE endpoint_id = $1 AND status = 0",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// record_outcomes: lock, replay in memory, write back in bulk

/// The whole of `record_outcomes` inside one transaction: about seven statements per batch.
async fn record_outcomes_tx(
    c: &mut PgConnection,
    outcomes: &[Outcome],
    breaker: &BreakerPolicy,
    now: Millis,
) -> std::result::Result<Vec<TrippedEndpoint>, TxError> {
    let delivery_ids: Vec<&str> = outcomes
        .iter()
        .map(|o| o.delivery_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let outcome_endpoints: Vec<&str> = outcomes
        .iter()
        .map(|o| o.endpoint_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // 1. Lock the endpoints involved (those named by the outcomes and those the deliveries
    //    belong to), in id order, before any delivery: the order every writer uses.
    let rows = sqlx::query(
        "SELECT id, enabled, deleted_at IS NOT NULL, consecutive_failures, failing_since, \
         disabled_reason, disabled_at, updated_at FROM endpoints \
         WHERE id = ANY($1) OR id IN (SELECT endpoint_id FROM deliveries WHERE id = ANY($2)) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&outcome_endpoints)
    .bind(&delivery_ids)
    .fetch_all(&mut *c)
    .await?;
    let mut endpoints: HashMap<String, EndpointRow> = HashMap::with_capacity(rows.len());
    for r in &rows {
        endpoints.insert(
            r.try_get(0)?,
            EndpointRow {
                enabled: r.try_get(1)?,
                deleted: r.try_get(2)?,
                consecutive_failures: r.try_get(3)?,
                failing_since: r.try_get(4)?,
                disabled_reason: r.try_get(5)?,
                disabled_at: r.try_get(6)?,
                updated_at: r.try_get(7)?,
                dirty: false,
            },
        );
    }

    // 2. Lock the deliveries, in id order.
    let rows = sqlx::query(
        "SELECT id, endpoint_id, status, attempt_count, next_attempt_at, lease_owner, \
         last_status_code, last_error, completed_at, updated_at FROM deliveries \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&delivery_ids)
    .fetch_all(&mut *c)
    .await?;
    let mut deliveries: HashMap<String, DeliveryRow> = HashMap::with_capacity(rows.len());
    for r in &rows {
        deliveries.insert(
            r.try_get(0)?,
            DeliveryRow::read(
                r.try_get(1)?,
                i64::from(r.try_get::<i16, _>(2)?),
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
                r.try_get(9)?,
            ),
        );
    }

    // 3. The state machine, shared with SQLite.
    let applied = machine::apply(&mut endpoints, &mut deliveries, outcomes, breaker, now);
    let mut attempts = AttemptColumns::default();
    for &(i, label) in &applied.attempts {
        if let Some((o, a)) = outcomes.get(i).and_then(|o| Some((o, o.attempt.as_ref()?))) {
            attempts.push(o, a, label);
        }
    }
    let tripped = applied.tripped;
    let tripped_ids: Vec<&str> = tripped.iter().map(|t| t.endpoint_id.as_str()).collect();

    // 4. Write it all back: one statement per table.
    attempts.insert(&mut *c).await?;

    let mut ep_cols = EndpointColumns::default();
    for (id, ep) in endpoints.iter().filter(|(_, e)| e.dirty) {
        ep_cols.push(id, ep);
    }
    if !ep_cols.id.is_empty() {
        sqlx::query(
            "UPDATE endpoints e SET enabled = u.enabled, disabled_reason = u.disabled_reason, \
             disabled_at = u.disabled_at, consecutive_failures = u.consecutive_failures, \
             failing_since = u.failing_since, updated_at = u.updated_at \
             FROM UNNEST($1::text[], $2::bool[], $3::text[], $4::int8[], $5::int8[], $6::int8[], \
                         $7::int8[]) \
               AS u(id, enabled, disabled_reason, disabled_at, consecutive_failures, \
                    failing_since, updated_at) \
             WHERE e.id = u.id",
        )
        .bind(&ep_cols.id)
        .bind(&ep_cols.enabled)
        .bind(&ep_cols.disabled_reason)
        .bind(&ep_cols.disabled_at)
        .bind(&ep_cols.consecutive_failures)
        .bind(&ep_cols.failing_since)
        .bind(&ep_cols.updated_at)
        .execute(&mut *c)
        .await?;
    }

    let mut d_cols = DeliveryColumns::default();
    for (id, d) in deliveries.iter().filter(|(_, d)| d.dirty) {
        d_cols.push(id, d);
    }
    if !d_cols.id.is_empty() {
        // Conditional on the state read (under FOR UPDATE it cannot have moved; if it ever did,
        // the whole batch is refused rather than overwriting it).
        let changed = sqlx::query(
            "UPDATE deliveries d SET status = u.status, attempt_count = u.attempt_count, \
             next_attempt_at = u.next_attempt_at, lease_owner = u.lease_owner, \
             last_status_code = u.last_status_code, last_error = u.last_error, \
             completed_at = u.completed_at, updated_at = u.updated_at \
             FROM UNNEST($1::text[], $2::int2[], $3::int8[], $4::int8[], $5::text[], $6::int8[], \
                         $7::text[], $8::int8[], $9::int8[], $10::int2[], $11::text[], $12::int8[]) \
               AS u(id, status, attempt_count, next_attempt_at, lease_owner, last_status_code, \
                    last_error, completed_at, updated_at, read_status, read_lease_owner, \
                    read_next_attempt_at) \
             WHERE d.id = u.id AND d.status = u.read_status \
               AND d.lease_owner IS NOT DISTINCT FROM u.read_lease_owner \
               AND d.next_attempt_at = u.read_next_attempt_at",
        )
        .bind(&d_cols.id)
        .bind(&d_cols.status)
        .bind(&d_cols.attempt_count)
        .bind(&d_cols.next_attempt_at)
        .bind(&d_cols.lease_owner)
        .bind(&d_cols.last_status_code)
        .bind(&d_cols.last_error)
        .bind(&d_cols.completed_at)
        .bind(&d_cols.updated_at)
        .bind(&d_cols.read_status)
        .bind(&d_cols.read_lease_owner)
        .bind(&d_cols.read_next_attempt_at)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if changed != d_cols.id.len() as u64 {
            return Err(StoreError::database(
                "a delivery changed while its outcome was being recorded",
                true,
            )
            .into());
        }
    }

    if !tripped_ids.is_empty() {
        // The rest of the tripped endpoints' pending deliveries (none of them in this batch
        // can still be pending: the endpoint stayed disabled after the trip).
        sqlx::query(
            "UPDATE deliveries SET status = 3, updated_at = $2 \
             WHERE endpoint_id = ANY($1) AND status = 0",
        )
        .bind(&tripped_ids)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(tripped)
}

#[derive(Default)]
struct AttemptColumns {
    delivery_id: Vec<String>,
    attempt_no: Vec<i64>,
    started_at: Vec<i64>,
    duration_ms: Vec<i64>,
    status_code: Vec<Option<i64>>,
    response_body: Vec<Option<String>>,
    response_truncated: Vec<bool>,
    error_class: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
    local_addr: Vec<Option<String>>,
    remote_addr: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    request_headers: Vec<Option<String>>,
}

impl AttemptColumns {
    fn push(&mut self, o: &Outcome, a: &NewAttempt, label: &'static str) {
        self.delivery_id.push(o.delivery_id.clone());
        self.attempt_no.push(a.attempt_no);
        self.started_at.push(a.started_at);
        self.duration_ms.push(a.duration_ms);
        self.status_code.push(a.status_code);
        self.response_body.push(a.response_body.clone());
        self.response_truncated.push(a.response_truncated);
        self.error_class.push(a.error_class.clone());
        self.error_message.push(a.error_message.clone());
        self.local_addr.push(a.local_addr.clone());
        self.remote_addr.push(a.remote_addr.clone());
        self.outcome.push(label);
        self.request_headers.push(a.request_headers.clone());
    }

    async fn insert(&self, c: &mut PgConnection) -> std::result::Result<(), TxError> {
        if self.delivery_id.is_empty() {
            return Ok(());
        }
        // UNNEST yields rows in array order, so ids follow the order of the outcomes.
        sqlx::query(
            "INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, \
             response_body, response_truncated, error_class, error_message, local_addr, \
             remote_addr, outcome, request_headers) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
                                  $6::text[], $7::bool[], $8::text[], $9::text[], $10::text[], \
                                  $11::text[], $12::text[], $13::text[])",
        )
        .bind(&self.delivery_id)
        .bind(&self.attempt_no)
        .bind(&self.started_at)
        .bind(&self.duration_ms)
        .bind(&self.status_code)
        .bind(&self.response_body)
        .bind(&self.response_truncated)
        .bind(&self.error_class)
        .bind(&self.error_message)
        .bind(&self.local_addr)
        .bind(&self.remote_addr)
        .bind(&self.outcome)
        .bind(&self.request_headers)
        .execute(&mut *c)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct EndpointColumns<'a> {
    id: Vec<&'a str>,
    enabled: Vec<bool>,
    disabled_reason: Vec<Option<&'a str>>,
    disabled_at: Vec<Option<i64>>,
    consecutive_failures: Vec<i64>,
    failing_since: Vec<Option<i64>>,
    updated_at: Vec<i64>,
}

impl<'a> EndpointColumns<'a> {
    fn push(&mut self, id: &'a str, e: &'a EndpointRow) {
        self.id.push(id);
        self.enabled.push(e.enabled);
        self.disabled_reason.push(e.disabled_reason.as_deref());
        self.disabled_at.push(e.disabled_at);
        self.consecutive_failures.push(e.consecutive_failures);
        self.failing_since.push(e.failing_since);
        self.updated_at.push(e.updated_at);
    }
}

#[derive(Default)]
struct DeliveryColumns<'a> {
    id: Vec<&'a str>,
    read_status: Vec<i16>,
    read_lease_owner: Vec<Option<&'a str>>,
    read_next_attempt_at: Vec<i64>,
    status: Vec<i16>,
    attempt_count: Vec<i64>,
    next_attempt_at: Vec<i64>,
    lease_owner: Vec<Option<&'a str>>,
    last_status_code: Vec<Option<i64>>,
    last_error: Vec<Option<&'a str>>,
    completed_at: Vec<Option<i64>>,
    updated_at: Vec<i64>,
}

impl<'a> DeliveryColumns<'a> {
    fn push(&mut self, id: &'a str, d: &'a DeliveryRow) {
        self.id.push(id);
        // Statuses are 0..=4 (machine.rs), always an int2.
        let status = |s: i64| i16::try_from(s).unwrap_or(i16::MAX);
        self.read_status.push(status(d.read.status));
        self.read_lease_owner.push(d.read.lease_owner.as_deref());
        self.read_next_attempt_at.push(d.read.next_attempt_at);
        self.status.push(status(d.status));
        self.attempt_count.push(d.attempt_count);
        self.next_attempt_at.push(d.next_attempt_at);
        self.lease_owner.push(d.lease_owner.as_deref());
        self.last_status_code.push(d.last_status_code);
        self.last_error.push(d.last_error.as_deref());
        self.completed_at.push(d.completed_at);
        self.updated_at.push(d.updated_at);
    }
}

// ---------------------------------------------------------------------------------------------
// create_event

async fn create_event_tx(
    c: &mut PgConnection,
    ev: &NewEvent,
    lease: Option<&LeaseRequest>,
    idempotency_ttl_ms: i64,
) -> std::result::Result<CreateEventResult, TxError> {
    let now = ev.created_at;
    if let Some(key) = &ev.idempotency_key {
        // The key's primary key decides between racing instances: the loser's insert waits for
        // the winner's commit, then finds the key taken.
        let mut claimed = false;
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, event_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(&ev.id)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if inserted == 1 {
                claimed = true;
                break;
            }
            let prior: Option<(String, i64)> = sqlx::query_as(
                "SELECT event_id, created_at FROM idempotency_keys WHERE key = $1 FOR UPDATE",
            )
            .bind(key)
            .fetch_optional(&mut *c)
            .await?;
            let Some((event_id, created_at)) = prior else {
                continue; // purged meanwhile: try the insert again
            };
            if now.saturating_sub(created_at) < idempotency_ttl_ms {
                let row = sqlx::query(&format!(
                    "SELECT {EVENT_COLS}, (SELECT count(*) FROM deliveries WHERE event_id = $1) \
                     FROM events WHERE id = $1"
                ))
                .bind(&event_id)
                .fetch_optional(&mut *c)
                .await?
                .ok_or_else(|| StoreError::Corrupt("idempotency key without event".into()))?;
                let deliveries: i64 = row.try_get(6)?;
                return Ok(CreateEventResult::Duplicate {
                    event: event_from_row(&row)?,
                    deliveries: usize::try_from(deliveries).unwrap_or(0),
                });
            }
            // Expired: the key now names this event.
            sqlx::query(
                "UPDATE idempotency_keys SET event_id = $2, created_at = $3 WHERE key = $1",
            )
            .bind(key)
            .bind(&ev.id)
            .bind(now)
            .execute(&mut *c)
            .await?;
            claimed = true;
            break;
        }
        if !claimed {
            return Err(StoreError::database("idempotency key kept changing", true).into());
        }
    }

    // Insert the event and read (share-locking) the target endpoints in one round trip: the
    // lock makes a concurrent disable either wait for us (and then pause what we create) or
    // finish first (and then we see the endpoint disabled).
    let targets: Vec<(String, bool)> =
        match &ev.only_endpoints {
            Some(ids) => {
                let mut wanted: Vec<&str> = Vec::with_capacity(ids.len());
                for id in ids {
                    if !wanted.contains(&id.as_str()) {
                        wanted.push(id);
                    }
                }
                let rows: Vec<(String, bool)> = sqlx::query_as(&format!(
                "WITH ev AS (INSERT INTO events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)) \
                 SELECT id, enabled FROM endpoints WHERE id = ANY($7) AND deleted_at IS NULL \
                 ORDER BY id FOR SHARE"
            ))
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&ev.payload)
            .bind(&ev.idempotency_key)
            .bind(now)
            .bind(&ev.source_id)
            .bind(&wanted)
            .fetch_all(&mut *c)
            .await?;
                let found: HashMap<String, bool> = rows.into_iter().collect();
                wanted
                    .into_iter()
                    .filter_map(|id| found.get(id).map(|en| (id.to_owned(), *en)))
                    .collect()
            }
            None => sqlx::query_as(&format!(
                "WITH ev AS (INSERT INTO events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)) \
                 SELECT id, enabled FROM endpoints WHERE id IN \
                   (SELECT endpoint_id FROM endpoint_event_types WHERE event_type IN ($2, '*')) \
                 AND deleted_at IS NULL ORDER BY id FOR SHARE"
            ))
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&ev.payload)
            .bind(&ev.idempotency_key)
            .bind(now)
            .bind(&ev.source_id)
            .fetch_all(&mut *c)
            .await?,
        };

    let mut leased_left = lease.map(|l| l.max).unwrap_or(0);
    let mut deliveries = Vec::with_capacity(targets.len());
    let mut ids = Vec::with_capacity(targets.len());
    let mut endpoint_ids = Vec::with_capacity(targets.len());
    let mut statuses = Vec::with_capacity(targets.len());
    let mut next_ats = Vec::with_capacity(targets.len());
    let mut owners: Vec<Option<&str>> = Vec::with_capacity(targets.len());
    for (endpoint_id, enabled) in targets {
        let id = new_id("dlv");
        let status = if enabled {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Paused
        };
        let (next_at, owner) = match lease {
            Some(l) if enabled && leased_left > 0 => {
                leased_left -= 1;
                (l.until, Some(l.owner.as_str()))
            }
            _ => (now, None),
        };
        ids.push(id.clone());
        endpoint_ids.push(endpoint_id.clone());
        statuses.push(status_i16(status));
        next_ats.push(next_at);
        owners.push(owner);
        deliveries.push(CreatedDelivery {
            id,
            endpoint_id,
            leased: owner.is_some(),
        });
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, \
             next_attempt_at, lease_owner, created_at, updated_at) \
             SELECT d.id, $6, d.endpoint_id, d.status, 0, d.next_attempt_at, d.lease_owner, $7, $7 \
             FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int8[], $5::text[]) \
               AS d(id, endpoint_id, status, next_attempt_at, lease_owner)",
        )
        .bind(&ids)
        .bind(&endpoint_ids)
        .bind(&statuses)
        .bind(&next_ats)
        .bind(&owners)
        .bind(&ev.id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(CreateEventResult::Created {
        event: Event {
            id: ev.id.clone(),
            event_type: ev.event_type.clone(),
            payload: ev.payload.clone(),
            idempotency_key: ev.idempotency_key.clone(),
            created_at: now,
            source_id: ev.source_id.clone(),
        },
        deliveries,
    })
}

// ---------------------------------------------------------------------------------------------
// Retention

async fn purge_tx(
    c: &mut PgConnection,
    older_than: Millis,
    batch: i64,
) -> std::result::Result<PurgeCounts, TxError> {
    let mut counts = PurgeCounts::default();
    // Finished deliveries, oldest first; SKIP LOCKED leaves alone any that another instance is
    // touching (a manual retry, a late outcome) right now.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE status IN (1, 2, 4) AND completed_at < $1 \
         ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(older_than)
    .bind(batch)
    .fetch_all(&mut *c)
    .await?;
    if !ids.is_empty() {
        counts.attempts = sqlx::query(
            "DELETE FROM attempts WHERE id IN \
             (SELECT id FROM attempts WHERE delivery_id = ANY($1) LIMIT $2)",
        )
        .bind(&ids)
        .bind(batch)
        .execute(&mut *c)
        .await?
        .rows_affected();
        // A delivery goes once all its attempts are gone (a later call finishes the rest).
        counts.deliveries = sqlx::query(
            "DELETE FROM deliveries d WHERE d.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id)",
        )
        .bind(&ids)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    counts.idempotency_keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE key IN \
         (SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than)
    .bind(batch)
    .execute(&mut *c)
    .await?
    .rows_affected();
    // Events whose deliveries are all gone, and whose idempotency key (if any) is gone too.
    counts.events = sqlx::query(
        "DELETE FROM events WHERE id IN \
         (SELECT e.id FROM events e WHERE e.created_at < $1 \
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
          AND NOT EXISTS (SELECT 1 FROM idempotency_keys k \
                          WHERE k.key = e.idempotency_key AND k.event_id = e.id) \
          ORDER BY e.created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than)
    .bind(batch)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(counts)
}

// ---------------------------------------------------------------------------------------------
// The trait

#[async_trait]
impl Store for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn announce_change(&self, change: &crate::Change) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(change.encode())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn watch_changes(&self) -> Option<tokio::sync::broadcast::Receiver<crate::Change>> {
        let rx = self.changes.subscribe();
        if !self
            .listening
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tokio::spawn(Self::listen_changes(
                self.pool.clone(),
                self.changes.clone(),
            ));
        }
        Some(rx)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn take_first_start(&self) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('first_start', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(now_millis().to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn create_endpoint(&self, ep: Endpoint, secret: String) -> Result<()> {
        ep.check_storable()?;
        storable("secret", &secret)?;
        let event_types = serde_json::to_string(&ep.event_types)?;
        let headers = serde_json::to_string(&ep.headers)?;
        let schemes = serde_json::to_string(&ep.signature_schemes)?;
        in_tx!(self.pool, |tx| {
            sqlx::query(&format!(
                "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ))
            .bind(&ep.id)
            .bind(&ep.url)
            .bind(&ep.description)
            .bind(&event_types)
            .bind(&headers)
            .bind(&ep.developer_payload)
            .bind(&schemes)
            .bind(ep.rate_limit_per_second.map(i64::from))
            .bind(ep.enabled)
            .bind(&ep.disabled_reason)
            .bind(ep.disabled_at)
            .bind(&ep.client_certificate_id)
            .bind(ep.consecutive_failures)
            .bind(ep.failing_since)
            .bind(ep.created_at)
            .bind(ep.updated_at)
            .execute(&mut *tx)
            .await?;
            write_event_types(&mut tx, &ep.id, &ep.event_types).await?;
            sqlx::query(
                "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at) \
                 VALUES ($1, $2, $3, NULL)",
            )
            .bind(&ep.id)
            .bind(&secret)
            .bind(ep.created_at)
            .execute(&mut *tx)
            .await?;
        })
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!(
            "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(endpoint_from_row)
        .transpose()
    }

    async fn list_endpoints(&self, page: Page) -> Result<Listed<Endpoint>> {
        let limit = limit_of(&page);
        let size = listing::endpoint_size();
        let candidates: Vec<(String, i64)> = match &page.before {
            Some(before) => {
                sqlx::query_as(&format!(
                    "SELECT id, {size} FROM endpoints WHERE deleted_at IS NULL AND id < $1 \
                 ORDER BY id DESC LIMIT $2"
                ))
                .bind(before)
                .bind(limit + 1)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT id, {size} FROM endpoints WHERE deleted_at IS NULL \
                 ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit + 1)
                .fetch_all(&self.pool)
                .await?
            }
        };
        bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!(
                "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ANY($1) AND deleted_at IS NULL \
                 ORDER BY id DESC"
            ),
            endpoint_from_row,
        )
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<bool> {
        ep.check_storable()?;
        let event_types = serde_json::to_string(&ep.event_types)?;
        let headers = serde_json::to_string(&ep.headers)?;
        let schemes = serde_json::to_string(&ep.signature_schemes)?;
        in_tx!(self.pool, |tx| {
            let n = sqlx::query(
                "UPDATE endpoints SET url = $2, description = $3, event_types = $4, headers = $5, \
                 developer_payload = $6, signature_schemes = $7, rate_limit_per_second = $8, \
                 client_certificate_id = $9, updated_at = $10 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(&ep.id)
            .bind(&ep.url)
            .bind(&ep.description)
            .bind(&event_types)
            .bind(&headers)
            .bind(&ep.developer_payload)
            .bind(&schemes)
            .bind(ep.rate_limit_per_second.map(i64::from))
            .bind(&ep.client_certificate_id)
            .bind(ep.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                false
            } else {
                write_event_types(&mut tx, &ep.id, &ep.event_types).await?;
                true
            }
        })
    }

    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: Millis,
    ) -> Result<bool> {
        if let Some(r) = &reason {
            storable("reason", r)?;
        }
        if names_nothing(id) {
            return Ok(false);
        }
        in_tx!(self.pool, |tx| {
            set_enabled_tx(&mut tx, id, enabled, reason.as_deref(), now).await?
        })
    }

    async fn delete_endpoint(&self, id: &str, now: Millis) -> Result<bool> {
        if names_nothing(id) {
            return Ok(false);
        }
        in_tx!(self.pool, |tx| {
            let n = sqlx::query(
                "UPDATE endpoints SET deleted_at = $2, enabled = FALSE, updated_at = $2 \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                false
            } else {
                sqlx::query("DELETE FROM endpoint_event_types WHERE endpoint_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE deliveries SET status = 4, completed_at = $2, updated_at = $2, \
                     lease_owner = NULL WHERE endpoint_id = $1 AND status IN (0, 3)",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE endpoint_secrets SET expires_at = $2 WHERE endpoint_id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                true
            }
        })
    }

    async fn active_secrets(&self, endpoint_id: &str, now: Millis) -> Result<Vec<SecretRecord>> {
        if names_nothing(endpoint_id) {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT id, endpoint_id, secret, created_at, expires_at FROM endpoint_secrets \
             WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id DESC",
        )
        .bind(endpoint_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(secret_from_row)
        .collect()
    }

    async fn rotate_secret(
        &self,
        endpoint_id: &str,
        new_secret: String,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        storable("secret", &new_secret)?;
        if names_nothing(endpoint_id) {
            return Ok(false);
        }
        in_tx!(self.pool, |tx| {
            // Locking the endpoint serialises rotations of one endpoint across instances.
            let exists = sqlx::query(
                "UPDATE endpoints SET updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(endpoint_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if exists == 0 {
                false
            } else {
                sqlx::query(
                    "UPDATE endpoint_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2) \
                     WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > $3)",
                )
                .bind(endpoint_id)
                .bind(old_expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at) \
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(endpoint_id)
                .bind(&new_secret)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                true
            }
        })
    }

    async fn create_event(
        &self,
        event: NewEvent,
        lease: Option<LeaseRequest>,
        idempotency_ttl_ms: i64,
    ) -> Result<CreateEventResult> {
        event.check_storable()?;
        in_tx!(self.pool, |tx| {
            create_event_tx(&mut tx, &event, lease.as_ref(), idempotency_ttl_ms).await?
        })
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!("SELECT {EVENT_COLS} FROM events WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(event_from_row)
            .transpose()
    }

    async fn list_events(&self, filter: EventFilter, page: Page) -> Result<Listed<Event>> {
        // Types filter: the (event_type, id) index answers each type newest first.
        let types = (!filter.event_types.is_empty()).then_some(filter.event_types);
        let limit = limit_of(&page);
        let size = listing::event_size();
        let candidates: Vec<(String, i64)> = match &page.before {
            Some(before) => {
                sqlx::query_as(&format!(
                    "SELECT id, {size} FROM events WHERE id < $1 \
                     AND ($3::text[] IS NULL OR event_type = ANY($3)) ORDER BY id DESC LIMIT $2"
                ))
                .bind(before)
                .bind(limit + 1)
                .bind(types)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT id, {size} FROM events \
                     WHERE ($2::text[] IS NULL OR event_type = ANY($2)) ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit + 1)
                .bind(types)
                .fetch_all(&self.pool)
                .await?
            }
        };
        bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!("SELECT {EVENT_COLS} FROM events WHERE id = ANY($1) ORDER BY id DESC"),
            event_from_row,
        )
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(delivery_from_row)
        .transpose()
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Listed<Delivery>> {
        if [&filter.event_id, &filter.endpoint_id]
            .iter()
            .any(|k| k.as_deref().is_some_and(names_nothing))
        {
            return Ok(Listed::new(Vec::new(), false));
        }
        // One statement per combination of filters (each prepared once), so that every plan can
        // use the index that fits it rather than one generic plan for all.
        let mut conds: Vec<&str> = Vec::with_capacity(4);
        if filter.event_id.is_some() {
            conds.push("event_id =");
        }
        if filter.endpoint_id.is_some() {
            conds.push("endpoint_id =");
        }
        if filter.status.is_some() {
            conds.push("status =");
        }
        if page.before.is_some() {
            conds.push("id <");
        }
        let mut sql = format!("SELECT id, {} FROM deliveries", listing::delivery_size());
        for (i, cond) in conds.iter().enumerate() {
            let glue = if i == 0 { "WHERE" } else { "AND" };
            sql.push_str(&format!(" {glue} {cond} ${}", i + 1));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", conds.len() + 1));
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
        if let Some(v) = &filter.event_id {
            q = q.bind(v);
        }
        if let Some(v) = &filter.endpoint_id {
            q = q.bind(v);
        }
        if let Some(v) = filter.status {
            q = q.bind(status_i16(v));
        }
        if let Some(v) = &page.before {
            q = q.bind(v);
        }
        let limit = limit_of(&page);
        let candidates = q.bind(limit + 1).fetch_all(&self.pool).await?;
        bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ANY($1) ORDER BY id DESC"),
            delivery_from_row,
        )
        .await
    }

    async fn list_attempts(&self, delivery_id: &str, page: AttemptPage) -> Result<Listed<Attempt>> {
        if names_nothing(delivery_id) {
            return Ok(Listed::new(Vec::new(), false));
        }
        let limit = i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(1000);
        let candidates: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT id, {} FROM attempts WHERE delivery_id = $1 \
             AND ($2::int8 IS NULL OR id > $2) ORDER BY id ASC LIMIT $3",
            listing::attempt_size()
        ))
        .bind(delivery_id)
        .bind(page.after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE id = ANY($1) ORDER BY id ASC"),
            attempt_from_row,
        )
        .await
    }

    async fn delivery_stats(
        &self,
        endpoint_id: Option<&str>,
        range: StatsRange,
    ) -> Result<Vec<DeliveryStatBucket>> {
        if endpoint_id.is_some_and(names_nothing) {
            return Ok(Vec::new());
        }
        if !range.is_valid() {
            return Ok(Vec::new());
        }
        // Scans deliveries_endpoint_finished (one endpoint) or deliveries_finished (all).
        let sql = if endpoint_id.is_some() {
            "SELECT (completed_at - $2) / $3 AS b, \
             COUNT(*) FILTER (WHERE status = 1), COUNT(*) FILTER (WHERE status = 2) \
             FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 2) \
             AND completed_at >= $2 AND completed_at < $4 GROUP BY b ORDER BY b LIMIT $5"
        } else {
            "SELECT (completed_at - $2) / $3 AS b, \
             COUNT(*) FILTER (WHERE status = 1), COUNT(*) FILTER (WHERE status = 2) \
             FROM deliveries WHERE $1::text IS NULL AND status IN (1, 2, 4) \
             AND completed_at >= $2 AND completed_at < $4 GROUP BY b ORDER BY b LIMIT $5"
        };
        let rows = sqlx::query(sql)
            .bind(endpoint_id)
            .bind(range.since)
            .bind(range.bucket_ms)
            .bind(range.until)
            .bind(StatsRange::MAX_BUCKETS)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let b = DeliveryStatBucket {
                bucket_start: range.since + r.try_get::<i64, _>(0)? * range.bucket_ms,
                succeeded: r.try_get(1)?,
                failed: r.try_get(2)?,
            };
            if b.succeeded + b.failed > 0 {
                out.push(b);
            }
        }
        Ok(out)
    }

    async fn retry_delivery(&self, id: &str, now: Millis) -> Result<Option<Delivery>> {
        if names_nothing(id) {
            return Ok(None);
        }
        in_tx!(self.pool, |tx| {
            // Endpoint first (share lock: a concurrent disable or delete either finishes before
            // and we see it, or waits for us and then pauses or cancels what we made pending).
            let enabled: Option<bool> = sqlx::query_scalar(
                "SELECT enabled FROM endpoints \
                 WHERE id = (SELECT endpoint_id FROM deliveries WHERE id = $1) FOR SHARE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let status = if enabled == Some(true) {
                PENDING
            } else {
                PAUSED
            };
            sqlx::query(&format!(
                "UPDATE deliveries SET status = $3, next_attempt_at = $2, lease_owner = NULL, \
                 completed_at = NULL, updated_at = $2 WHERE id = $1 AND status <> 4 \
                 RETURNING {DELIVERY_COLS}"
            ))
            .bind(id)
            .bind(now)
            .bind(status)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(delivery_from_row)
            .transpose()?
        })
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(1000);
        // One statement: pick due rows nobody else is locking, lease them, and return them
        // with their events (each payload once per event, however many deliveries share it).
        let rows = sqlx::query(
            "WITH picked AS MATERIALIZED ( \
               SELECT id, next_attempt_at AS due_at FROM deliveries \
               WHERE status = 0 AND next_attempt_at <= $3 \
               ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE deliveries d SET next_attempt_at = $1, lease_owner = $2 \
               FROM picked WHERE d.id = picked.id \
               RETURNING d.id, d.event_id, d.endpoint_id, d.attempt_count, picked.due_at) \
             SELECT c.id, c.event_id, c.endpoint_id, c.attempt_count, e.id IS NOT NULL, \
               e.event_type, e.created_at, \
               CASE WHEN row_number() OVER (PARTITION BY c.event_id ORDER BY c.id) = 1 \
                    THEN e.payload END \
             FROM claimed c LEFT JOIN events e ON e.id = c.event_id \
             ORDER BY c.due_at, c.id",
        )
        .bind(lease_until)
        .bind(owner)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;

        let mut payloads: HashMap<String, Arc<str>> = HashMap::new();
        for r in &rows {
            if let Some(p) = r.try_get::<Option<String>, _>(7)? {
                payloads.insert(r.try_get(1)?, Arc::from(p));
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut orphans: Vec<String> = Vec::new();
        for r in &rows {
            let delivery_id: String = r.try_get(0)?;
            let event_id: String = r.try_get(1)?;
            let has_event: bool = r.try_get(4)?;
            let payload = match payloads.get(&event_id) {
                Some(p) if has_event => p.clone(),
                _ => {
                    orphans.push(delivery_id);
                    continue;
                }
            };
            out.push(Claimed {
                delivery_id,
                event_id,
                endpoint_id: r.try_get(2)?,
                event_type: r.try_get(5)?,
                payload,
                event_created_at: r.try_get(6)?,
                attempt_count: r.try_get(3)?,
                lease_until,
            });
        }
        if !orphans.is_empty() {
            // Orphan deliveries (their event was purged): finish them as failed.
            sqlx::query(
                "UPDATE deliveries SET status = 2, last_error = 'event missing', completed_at = $2, \
                 lease_owner = NULL WHERE id = ANY($1) AND status = 0 AND lease_owner = $3",
            )
            .bind(&orphans)
            .bind(now)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        }
        Ok(out)
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
        breaker: BreakerPolicy,
        now: Millis,
    ) -> Result<Vec<TrippedEndpoint>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = recorded_outcomes(outcomes);
        in_tx!(self.pool, |tx| {
            record_outcomes_tx(&mut tx, &outcomes, &breaker, now).await?
        })
    }

    async fn release_leases(&self, owner: Option<&str>, now: Millis) -> Result<u64> {
        let q = match owner {
            Some(owner) => sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1, lease_owner = NULL \
                 WHERE status = 0 AND lease_owner = $2",
            )
            .bind(now)
            .bind(owner),
            None => sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1, lease_owner = NULL \
                 WHERE status = 0 AND lease_owner IS NOT NULL",
            )
            .bind(now),
        };
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    async fn delivery_counts(&self, now: Millis) -> Result<DeliveryCounts> {
        let mut counts = DeliveryCounts::default();
        let rows: Vec<(i16, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM deliveries GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        for (status, n) in rows {
            match DeliveryStatus::from_i64(i64::from(status)) {
                DeliveryStatus::Pending => counts.pending = n,
                DeliveryStatus::Succeeded => counts.succeeded = n,
                DeliveryStatus::Failed => counts.failed = n,
                DeliveryStatus::Paused => counts.paused = n,
                DeliveryStatus::Cancelled => counts.cancelled = n,
            }
        }
        let (due, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(next_attempt_at) FROM deliveries \
             WHERE status = 0 AND next_attempt_at <= $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        counts.due = due;
        counts.oldest_due_age_ms = oldest.map(|o| now.saturating_sub(o)).unwrap_or(0);
        Ok(counts)
    }

    async fn queue_stats(&self, now: Millis, cap: i64) -> Result<QueueStats> {
        let cap = cap.max(0);
        // Both follow the partial index `deliveries_due`: a seek, and a scan bounded by `cap`.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT next_attempt_at FROM deliveries WHERE status = 0 AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let due: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM deliveries \
             WHERE status = 0 AND next_attempt_at <= $1 LIMIT $2) AS due",
        )
        .bind(now)
        .bind(cap)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            due,
            due_capped: due >= cap,
            oldest_due_at: oldest,
        })
    }

    async fn purge_finished(&self, older_than: Millis, batch: usize) -> Result<PurgeCounts> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        if batch == 0 {
            return Ok(PurgeCounts::default());
        }
        in_tx!(self.pool, |tx| {
            purge_tx(&mut tx, older_than, batch).await?
        })
    }
}
