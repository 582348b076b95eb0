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
use crate::row::{self, ATTEMPT_COLS, DELIVERY_COLS, ENDPOINT_COLS, EVENT_COLS};
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

// First: the `in_tx!` macro is used by the modules after it.
#[macro_use]
mod errors;
mod api_keys;
mod certs;
mod deliveries;
mod event_types;
mod probes;
mod recoveries;
mod rows;
mod schema;
mod sealed;
mod sources;

use deliveries::*;
use errors::*;
use rows::*;
use schema::*;

use crate::new_prefixed_id as new_id;

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
        let retry_schedule = serde_json::to_string(&ep.retry_schedule)?;
        in_tx!(self.pool, |tx| {
            sqlx::query(&format!(
                "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
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
            .bind(&retry_schedule)
            .bind(&ep.filter)
            .bind(&ep.transformation)
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
        let sql =
            format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = $1 AND deleted_at IS NULL");
        by_key(&self.pool, &sql, id, row::endpoint).await
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
            row::endpoint,
        )
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<bool> {
        ep.check_storable()?;
        let event_types = serde_json::to_string(&ep.event_types)?;
        let headers = serde_json::to_string(&ep.headers)?;
        let schemes = serde_json::to_string(&ep.signature_schemes)?;
        let retry_schedule = serde_json::to_string(&ep.retry_schedule)?;
        in_tx!(self.pool, |tx| {
            let n = sqlx::query(
                "UPDATE endpoints SET url = $2, description = $3, event_types = $4, headers = $5, \
                 developer_payload = $6, signature_schemes = $7, rate_limit_per_second = $8, \
                 client_certificate_id = $9, updated_at = $10, retry_schedule = $11, \
                 filter = $12, transformation = $13 WHERE id = $1 AND deleted_at IS NULL",
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
            .bind(&retry_schedule)
            .bind(&ep.filter)
            .bind(&ep.transformation)
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
                sqlx::query(concat!(
                    "UPDATE deliveries SET status = ",
                    st!(cancelled),
                    ", completed_at = $2, updated_at = $2, \
                     lease_owner = NULL WHERE endpoint_id = $1 AND status IN (",
                    st!(pending),
                    ", ",
                    st!(paused),
                    ")"
                ))
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Its secrets go with it (retired ones too: they were kept for probes only).
                sqlx::query("DELETE FROM endpoint_secrets WHERE endpoint_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM endpoint_probes WHERE endpoint_id = $1")
                    .bind(id)
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
            "SELECT id, endpoint_id, secret, created_at, expires_at, kind FROM endpoint_secrets \
             WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id DESC",
        )
        .bind(endpoint_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row::secret)
        .collect()
    }

    async fn rotate_secret(
        &self,
        endpoint_id: &str,
        new_secret: String,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        self.rotate_kind(
            endpoint_id,
            SecretKind::Hmac,
            new_secret,
            old_expires_at,
            now,
        )
        .await
    }

    async fn rotate_signing_key(
        &self,
        endpoint_id: &str,
        new_key: String,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        self.rotate_kind(
            endpoint_id,
            SecretKind::Ed25519,
            new_key,
            old_expires_at,
            now,
        )
        .await
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
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE id = $1");
        by_key(&self.pool, &sql, id, row::event).await
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
            row::event,
        )
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1");
        by_key(&self.pool, &sql, id, row::delivery).await
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
            row::delivery,
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
            row::attempt,
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
            concat!(
                "SELECT (completed_at - $2) / $3 AS b, \
             COUNT(*) FILTER (WHERE status = ",
                st!(succeeded),
                "), COUNT(*) FILTER (WHERE status = ",
                st!(failed),
                ") \
             FROM deliveries WHERE endpoint_id = $1 AND status IN (",
                st!(succeeded),
                ", ",
                st!(failed),
                ") \
             AND completed_at >= $2 AND completed_at < $4 GROUP BY b ORDER BY b LIMIT $5"
            )
        } else {
            concat!(
                "SELECT (completed_at - $2) / $3 AS b, \
             COUNT(*) FILTER (WHERE status = ",
                st!(succeeded),
                "), COUNT(*) FILTER (WHERE status = ",
                st!(failed),
                ") \
             FROM deliveries WHERE $1::text IS NULL AND status IN (",
                st!(succeeded),
                ", ",
                st!(failed),
                ", ",
                st!(cancelled),
                ") \
             AND completed_at >= $2 AND completed_at < $4 GROUP BY b ORDER BY b LIMIT $5"
            )
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
                concat!(
                    "UPDATE deliveries SET status = $3, next_attempt_at = $2, lease_owner = NULL, \
                 completed_at = NULL, updated_at = $2 WHERE id = $1 AND status <> ",
                    st!(cancelled),
                    " \
                 RETURNING {cols}"
                ),
                cols = DELIVERY_COLS
            ))
            .bind(id)
            .bind(now)
            .bind(status)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(row::delivery)
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
        let rows = sqlx::query(concat!(
            "WITH picked AS MATERIALIZED ( \
               SELECT id, next_attempt_at AS due_at FROM deliveries \
               WHERE status = ",
            st!(pending),
            " AND next_attempt_at <= $3 \
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
             ORDER BY c.due_at, c.id"
        ))
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
            sqlx::query(concat!(
                "UPDATE deliveries SET status = ",
                st!(failed),
                ", last_error = 'event missing', completed_at = $2, \
                 lease_owner = NULL WHERE id = ANY($1) AND status = ",
                st!(pending),
                " AND lease_owner = $3"
            ))
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
            Some(owner) => sqlx::query(concat!(
                "UPDATE deliveries SET next_attempt_at = $1, lease_owner = NULL \
                 WHERE status = ",
                st!(pending),
                " AND lease_owner = $2"
            ))
            .bind(now)
            .bind(owner),
            None => sqlx::query(concat!(
                "UPDATE deliveries SET next_attempt_at = $1, lease_owner = NULL \
                 WHERE status = ",
                st!(pending),
                " AND lease_owner IS NOT NULL"
            ))
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
        let (due, oldest): (i64, Option<i64>) = sqlx::query_as(concat!(
            "SELECT count(*), min(next_attempt_at) FROM deliveries \
             WHERE status = ",
            st!(pending),
            " AND next_attempt_at <= $1"
        ))
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
        let oldest: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT next_attempt_at FROM deliveries WHERE status = ",
            st!(pending),
            " AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT 1"
        ))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let due: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM (SELECT 1 FROM deliveries \
             WHERE status = ",
            st!(pending),
            " AND next_attempt_at <= $1 LIMIT $2) AS due"
        ))
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

impl PgStore {
    /// Rotates the endpoint's secrets of one kind (see [`Store::rotate_secret`]).
    async fn rotate_kind(
        &self,
        endpoint_id: &str,
        kind: SecretKind,
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
                     WHERE endpoint_id = $1 AND kind = $4 \
                     AND (expires_at IS NULL OR expires_at > $3)",
                )
                .bind(endpoint_id)
                .bind(old_expires_at)
                .bind(now)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at, kind) \
                     VALUES ($1, $2, $3, NULL, $4)",
                )
                .bind(endpoint_id)
                .bind(&new_secret)
                .bind(now)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
                true
            }
        })
    }
}
