//! The embedded SQLite backend.
//!
//! One writer thread owns the only read-write connection. Callers hand it closures; it runs as
//! many as are waiting inside one `BEGIN IMMEDIATE … COMMIT` (each in its own savepoint, so one
//! caller's failure never undoes another's work) and answers every caller only after the commit
//! is durable. Reads run on a small pool of read-only connections (WAL mode lets them proceed
//! while the writer works). A checkpointer thread with its own connection copies committed
//! pages into the database file concurrently (`PASSIVE`), so a checkpoint's copying and fsync
//! do not stall commits — with SQLite's automatic checkpoint they did, every few thousand
//! writes, for tens of milliseconds. The writer checkpoints only to start the WAL over, and
//! only once the checkpointer has nearly caught up (see [`WAL_RESTART_PAGES`]).

use crate::listing::{self, cut};
use crate::machine::{self, DeliveryRow, EndpointRow};
use crate::row::{self, ATTEMPT_COLS, DELIVERY_COLS, ENDPOINT_COLS, EVENT_COLS};
use crate::text::{recorded_outcomes, storable};
use crate::types::*;
use crate::{Listed, Result, Store, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};

mod api_keys;
mod certs;
mod checkpoint;
mod deliveries;
mod event_types;
mod probes;
mod recoveries;
mod replay;
mod rows;
mod schema;
mod sealed;
mod sources;
#[cfg(test)]
mod tests;
mod writer;

use checkpoint::*;
use deliveries::*;
use rows::*;
use schema::*;
use writer::*;
pub use writer::{COMMITS_TOTAL, WRITE_SECONDS};

/// How hard SQLite works to make a commit survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit (group commit makes that one fsync per batch). Survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only. Survives a killed process, not a power cut.
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Read-only connections for queries.
    pub readers: usize,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    pub busy_timeout_ms: u64,
    /// Live inbound replay keys kept in memory (about 30 bytes each); past this many, new keys
    /// are checked and recorded in a key-ordered table instead (slower, never refused).
    pub replay_keys_max: usize,
}

/// Default of [`SqliteOptions::replay_keys_max`] (about 60 MB of memory when full).
pub const DEFAULT_REPLAY_KEYS_MAX: usize = 2_000_000;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            readers: 4,
            max_batch: 1024,
            busy_timeout_ms: 5_000,
            replay_keys_max: DEFAULT_REPLAY_KEYS_MAX,
        }
    }
}

/// The embedded SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Shared with the writer and the checkpointer (which `stop` tells to stop).
    wal: Arc<WalState>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Every live inbound replay key (see `sqlite/replay.rs`); used by the writer thread.
    replay: Arc<Mutex<replay::ReplayIndex>>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    path: PathBuf,
    busy_timeout_ms: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    /// Stops the checkpointer, then the writer after the queued writes (it checkpoints and
    /// truncates the WAL last, which fails while another checkpoint is running).
    fn stop(&self) {
        if let Ok(mut c) = self.checkpointer.lock()
            && let Some(handle) = c.take()
        {
            self.wal.signal(|s| s.stop = true);
            let _ = handle.join();
        }
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.writer_thread.lock()
            && let Some(handle) = t.take()
        {
            let _ = handle.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        configure(&conn, opts.synchronous, opts.busy_timeout_ms)?;
        migrate(&mut conn)?;
        let replay = replay::ReplayIndex::load(&conn, opts.replay_keys_max, now_millis())?;
        // The checkpointer thread checkpoints; the writer must not stall a commit doing it.
        // The WAL hook (which replaces SQLite's automatic checkpoint) only notes the WAL's size
        // after each commit, for the writer's restarts.
        let wal = Arc::new(WalState::default());
        {
            let wal = wal.clone();
            conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                wal.pages.store(i64::from(pages), Ordering::Relaxed);
                Ok(())
            }))?;
        }
        let ckpt_conn = Connection::open(path)?;
        configure(&ckpt_conn, opts.synchronous, opts.busy_timeout_ms)?;

        let readers = opts.readers.max(1);
        let mut pool = Vec::with_capacity(readers);
        for _ in 0..readers {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_millis(opts.busy_timeout_ms))?;
            pool.push(r);
        }

        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let max_batch = opts.max_batch.max(1);
        let writer_wal = wal.clone();
        let handle = std::thread::Builder::new()
            .name("hookwarden-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch, writer_wal))?;
        let ckpt_wal = wal.clone();
        let ckpt = std::thread::Builder::new()
            .name("hookwarden-sqlite-checkpoint".into())
            .spawn(move || checkpointer_loop(ckpt_conn, ckpt_wal))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                wal,
                checkpointer: Mutex::new(Some(ckpt)),
                replay: Arc::new(Mutex::new(replay)),
                readers: Mutex::new(pool),
                reader_permits: Semaphore::new(readers),
                path: path.to_path_buf(),
                busy_timeout_ms: opts.busy_timeout_ms,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's next transaction and returns once it is committed. `f` runs
    /// in a savepoint of its own: if it fails, its writes are undone and the other jobs of the
    /// batch commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// [`write`](Self::write) without the savepoint, for jobs on the hot path that fail only
    /// when the database does (disk full, I/O error): a savepoint copies every page a job
    /// changes first into a sub-journal, a tenth of the writer's time in the ingest benchmark.
    /// If such a job fails after a change, the whole transaction is rolled back and every job
    /// of the batch run before it fails too (each caller sees a failed commit); the jobs after
    /// it run in a new transaction.
    pub async fn write_unguarded<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, guarded: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            f,
            reply,
            guarded,
            submitted: Instant::now(),
        });
        {
            let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
            match guard.as_ref() {
                Some(sender) => {
                    if let Err(mpsc::SendError(job)) = sender.send(job) {
                        job.fail(StoreError::Closed);
                    }
                }
                None => job.fail(StoreError::Closed),
            }
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .reader_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = {
                let mut pool = inner.readers.lock().map_err(|_| StoreError::Closed)?;
                pool.pop()
            };
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_millis(inner.busy_timeout_ms))?;
                    c
                }
            };
            let r = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::database(format!("reader task failed: {e}"), false))?
    }

    /// Stops the writer after the queued writes; later writes fail with `Closed`.
    pub fn close(&self) {
        self.inner.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Row mapping

use crate::new_prefixed_id as new_id;

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn take_first_start(&self) -> Result<bool> {
        let now = now_millis();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start', ?1)",
                )?
                .execute([now.to_string()])?;
            Ok(n == 1)
        })
        .await
    }

    async fn create_endpoint(&self, ep: Endpoint, secret: String) -> Result<()> {
        ep.check_storable()?;
        storable("secret", &secret)?;
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ))?
            .execute(params![
                ep.id,
                ep.url,
                ep.description,
                serde_json::to_string(&ep.event_types)?,
                serde_json::to_string(&ep.headers)?,
                ep.developer_payload,
                serde_json::to_string(&ep.signature_schemes)?,
                ep.rate_limit_per_second,
                ep.enabled as i64,
                ep.disabled_reason,
                ep.disabled_at,
                ep.client_certificate_id,
                ep.consecutive_failures,
                ep.failing_since,
                ep.created_at,
                ep.updated_at,
                serde_json::to_string(&ep.retry_schedule)?,
                ep.filter,
                ep.transformation,
            ])?;
            write_event_types(c, &ep.id, &ep.event_types)?;
            c.prepare_cached(
                "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at) VALUES (?1, ?2, ?3, NULL)",
            )?
            .execute(params![ep.id, secret, ep.created_at])?;
            Ok(())
        })
        .await
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        let sql =
            format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ?1 AND deleted_at IS NULL");
        self.by_key(sql, id, |r| row::endpoint(r)).await
    }

    async fn list_endpoints(&self, page: Page) -> Result<Listed<Endpoint>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let limit = limit_of(&page);
            let candidates: Vec<(String, i64)> = sized(
                &mut tx.prepare_cached(&format!(
                    "SELECT id, {} FROM endpoints WHERE deleted_at IS NULL \
                     AND (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
                    listing::endpoint_size()
                ))?,
                params![page.before, limit + 1],
            )?;
            let mut one = tx.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ?1"
            ))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], |r| row::endpoint(r)).optional()?)
            })
        })
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<bool> {
        ep.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE endpoints SET url = ?2, description = ?3, event_types = ?4, headers = ?5, \
                     developer_payload = ?6, signature_schemes = ?7, rate_limit_per_second = ?8, \
                     client_certificate_id = ?9, updated_at = ?10, retry_schedule = ?11, \
                     filter = ?12, transformation = ?13 WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![
                    ep.id,
                    ep.url,
                    ep.description,
                    serde_json::to_string(&ep.event_types)?,
                    serde_json::to_string(&ep.headers)?,
                    ep.developer_payload,
                    serde_json::to_string(&ep.signature_schemes)?,
                    ep.rate_limit_per_second,
                    ep.client_certificate_id,
                    ep.updated_at,
                    serde_json::to_string(&ep.retry_schedule)?,
                    ep.filter,
                    ep.transformation,
                ])?;
            if n == 0 {
                return Ok(false);
            }
            write_event_types(c, &ep.id, &ep.event_types)?;
            Ok(true)
        })
        .await
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
        let id = id.to_owned();
        self.write(move |c| set_enabled_tx(c, &id, enabled, reason.as_deref(), now))
            .await
    }

    async fn delete_endpoint(&self, id: &str, now: Millis) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE endpoints SET deleted_at = ?2, enabled = 0, updated_at = ?2 \
                     WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![id, now])?;
            if n == 0 {
                return Ok(false);
            }
            c.prepare_cached("DELETE FROM endpoint_event_types WHERE endpoint_id = ?1")?
                .execute([&id])?;
            c.prepare_cached(concat!(
                "UPDATE deliveries SET status = ",
                st!(cancelled),
                ", completed_at = ?2, updated_at = ?2, lease_owner = NULL \
                 WHERE endpoint_id = ?1 AND status IN (",
                st!(pending),
                ", ",
                st!(paused),
                ")"
            ))?
            .execute(params![id, now])?;
            // Its secrets go with it (retired ones too: they were kept for probes only).
            c.prepare_cached("DELETE FROM endpoint_secrets WHERE endpoint_id = ?1")?
                .execute([&id])?;
            c.prepare_cached("DELETE FROM endpoint_probes WHERE endpoint_id = ?1")?
                .execute([&id])?;
            Ok(true)
        })
        .await
    }

    async fn active_secrets(&self, endpoint_id: &str, now: Millis) -> Result<Vec<SecretRecord>> {
        let id = endpoint_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, endpoint_id, secret, created_at, expires_at, kind FROM endpoint_secrets \
                 WHERE endpoint_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY id DESC",
            )?;
            let rows = stmt.query_map(params![id, now], |r| row::secret(r))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
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
        ev: NewEvent,
        lease: Option<LeaseRequest>,
        idempotency_ttl_ms: i64,
    ) -> Result<CreateEventResult> {
        ev.check_storable()?;
        self.write_unguarded(move |c| {
            let now = ev.created_at;
            if let Some(key) = &ev.idempotency_key {
                let prior: Option<(String, i64)> = c
                    .prepare_cached("SELECT event_id, created_at FROM idempotency_keys WHERE key = ?1")?
                    .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((event_id, created_at)) = prior {
                    if now.saturating_sub(created_at) < idempotency_ttl_ms {
                        let event = c
                            .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"))?
                            .query_row([&event_id], |r| row::event(r))
                            .optional()?
                            .ok_or_else(|| StoreError::Corrupt("idempotency key without event".into()))?;
                        let deliveries: i64 = c
                            .prepare_cached("SELECT count(*) FROM deliveries WHERE event_id = ?1")?
                            .query_row([&event_id], |r| r.get(0))?;
                        return Ok(CreateEventResult::Duplicate {
                            event,
                            deliveries: usize::try_from(deliveries).unwrap_or(0),
                        });
                    }
                    c.prepare_cached("DELETE FROM idempotency_keys WHERE key = ?1")?
                        .execute([key])?;
                }
                c.prepare_cached(
                    "INSERT INTO idempotency_keys (key, event_id, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![key, ev.id, now])?;
            }
            c.prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![ev.id, ev.event_type, ev.payload, ev.idempotency_key, now, ev.source_id])?;

            // (endpoint id, enabled, filter)
            let targets: Vec<crate::filter::Target> = match &ev.only_endpoints {
                Some(ids) => {
                    let mut stmt = c.prepare_cached(
                        "SELECT id, enabled, filter FROM endpoints WHERE id = ?1 AND deleted_at IS NULL",
                    )?;
                    let mut out: Vec<crate::filter::Target> = Vec::with_capacity(ids.len());
                    for id in ids {
                        if out.iter().any(|(o, _, _)| o == id) {
                            continue;
                        }
                        if let Some(t) = stmt
                            .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0, r.get::<_, Option<String>>(2)?)))
                            .optional()?
                        {
                            out.push(t);
                        }
                    }
                    out
                }
                None => subscribers(c, &ev.event_type, Vec::new())?,
            };
            let targets = crate::filter::admitted(targets, &ev.event_type, &ev.payload);

            let mut ins = c.prepare_cached(
                "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
                 lease_owner, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?7)",
            )?;
            let mut leased_left = lease.as_ref().map(|l| l.max).unwrap_or(0);
            let mut deliveries = Vec::with_capacity(targets.len());
            for (endpoint_id, enabled) in targets {
                let id = new_id("dlv");
                let status = if enabled { DeliveryStatus::Pending } else { DeliveryStatus::Paused };
                let (next_at, owner) = match &lease {
                    Some(l) if enabled && leased_left > 0 => {
                        leased_left -= 1;
                        (l.until, Some(l.owner.as_str()))
                    }
                    _ => (now, None),
                };
                ins.execute(params![id, ev.id, endpoint_id, status.as_i64(), next_at, owner, now])?;
                deliveries.push(CreatedDelivery { id, endpoint_id, leased: owner.is_some() });
            }
            Ok(CreateEventResult::Created {
                event: Event {
                    id: ev.id,
                    event_type: ev.event_type,
                    payload: ev.payload,
                    idempotency_key: ev.idempotency_key,
                    created_at: now,
                    source_id: ev.source_id,
                },
                deliveries,
            })
        })
        .await
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>> {
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1");
        self.by_key(sql, id, |r| row::event(r)).await
    }

    async fn list_events(&self, filter: EventFilter, page: Page) -> Result<Listed<Event>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let limit = limit_of(&page);
            let size = listing::event_size();
            let candidates: Vec<(String, i64)> = if filter.event_types.is_empty() {
                sized(
                    &mut tx.prepare_cached(&format!(
                        "SELECT id, {size} FROM events WHERE (?1 IS NULL OR id < ?1) \
                         ORDER BY id DESC LIMIT ?2"
                    ))?,
                    params![page.before, limit + 1],
                )?
            } else {
                // The (event_type, id) index answers each type newest first.
                let types = serde_json::to_string(&filter.event_types)?;
                sized(
                    &mut tx.prepare_cached(&format!(
                        "SELECT id, {size} FROM events \
                         WHERE event_type IN (SELECT value FROM json_each(?3)) \
                           AND (?1 IS NULL OR id < ?1) \
                         ORDER BY id DESC LIMIT ?2"
                    ))?,
                    params![page.before, limit + 1, types],
                )?
            };
            let mut one =
                tx.prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], |r| row::event(r)).optional()?)
            })
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1");
        self.by_key(sql, id, |r| row::delivery(r)).await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        page: Page,
    ) -> Result<Listed<Delivery>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let status = filter.status.map(|s| s.as_i64());
            let size = listing::delivery_size();
            let sql = match (&filter.event_id, &filter.endpoint_id) {
                (Some(_), _) => format!(
                    "SELECT id, {size} FROM deliveries WHERE event_id = ?1 \
                     AND (?2 IS NULL OR endpoint_id = ?2) AND (?3 IS NULL OR status = ?3) \
                     AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
                ),
                (None, Some(_)) => format!(
                    "SELECT id, {size} FROM deliveries WHERE endpoint_id = ?2 \
                     AND (?1 IS NULL) AND (?3 IS NULL OR status = ?3) \
                     AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
                ),
                (None, None) => format!(
                    "SELECT id, {size} FROM deliveries WHERE (?1 IS NULL) AND (?2 IS NULL) \
                     AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
                ),
            };
            let limit = limit_of(&page);
            let candidates: Vec<(String, i64)> = sized(
                &mut tx.prepare_cached(&sql)?,
                params![filter.event_id, filter.endpoint_id, status, page.before, limit + 1],
            )?;
            let mut one = tx.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"
            ))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], |r| row::delivery(r)).optional()?)
            })
        })
        .await
    }

    async fn list_attempts(&self, delivery_id: &str, page: AttemptPage) -> Result<Listed<Attempt>> {
        let id = delivery_id.to_owned();
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let limit = i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(1000);
            let candidates: Vec<(i64, i64)> = sized(
                &mut tx.prepare_cached(&format!(
                    "SELECT id, {} FROM attempts WHERE delivery_id = ?1 \
                     AND (?2 IS NULL OR id > ?2) ORDER BY id ASC LIMIT ?3",
                    listing::attempt_size()
                ))?,
                params![id, page.after, limit + 1],
            )?;
            let mut one = tx.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE id = ?1"
            ))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], |r| row::attempt(r)).optional()?)
            })
        })
        .await
    }

    async fn delivery_stats(
        &self,
        endpoint_id: Option<&str>,
        range: StatsRange,
    ) -> Result<Vec<DeliveryStatBucket>> {
        if !range.is_valid() {
            return Ok(Vec::new());
        }
        let endpoint_id = endpoint_id.map(str::to_owned);
        self.read(move |c| {
            // Each variant's WHERE repeats its partial index's condition word for word, so
            // SQLite uses deliveries_endpoint_finished / deliveries_finished.
            let sql = if endpoint_id.is_some() {
                concat!(
                    "SELECT (completed_at - ?2) / ?3 AS b, SUM(status = ",
                    st!(succeeded),
                    "), SUM(status = ",
                    st!(failed),
                    ") \
                 FROM deliveries WHERE endpoint_id = ?1 AND status IN (",
                    st!(succeeded),
                    ", ",
                    st!(failed),
                    ") \
                 AND completed_at >= ?2 AND completed_at < ?4 GROUP BY b ORDER BY b LIMIT ?5"
                )
            } else {
                concat!(
                    "SELECT (completed_at - ?2) / ?3 AS b, SUM(status = ",
                    st!(succeeded),
                    "), SUM(status = ",
                    st!(failed),
                    ") \
                 FROM deliveries WHERE ?1 IS NULL AND status > ",
                    st!(pending),
                    " AND status <> ",
                    st!(paused),
                    " \
                 AND completed_at >= ?2 AND completed_at < ?4 GROUP BY b ORDER BY b LIMIT ?5"
                )
            };
            let rows = c
                .prepare_cached(sql)?
                .query_map(
                    params![
                        endpoint_id,
                        range.since,
                        range.bucket_ms,
                        range.until,
                        StatsRange::MAX_BUCKETS
                    ],
                    |r| {
                        Ok(DeliveryStatBucket {
                            bucket_start: range.since + r.get::<_, i64>(0)? * range.bucket_ms,
                            succeeded: r.get(1)?,
                            failed: r.get(2)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter(|b| b.succeeded + b.failed > 0)
                .collect())
        })
        .await
    }

    async fn retry_delivery(&self, id: &str, now: Millis) -> Result<Option<Delivery>> {
        let id = id.to_owned();
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                concat!("UPDATE deliveries SET \
                 status = CASE WHEN (SELECT enabled FROM endpoints WHERE id = deliveries.endpoint_id) = 1 \
                          THEN ", st!(pending), " ELSE ", st!(paused), " END, \
                 next_attempt_at = ?2, lease_owner = NULL, completed_at = NULL, updated_at = ?2 \
                 WHERE id = ?1 AND status <> ", st!(cancelled), " RETURNING {cols}"),
                cols = DELIVERY_COLS
            ))?
            .query_row(params![id, now], |r| row::delivery(r))
            .optional()?)
        })
        .await
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let owner = owner.to_owned();
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(1000);
        self.write_unguarded(move |c| {
            let mut stmt = c.prepare_cached(concat!(
                "UPDATE deliveries SET next_attempt_at = ?1, lease_owner = ?2 \
                 WHERE id IN (SELECT id FROM deliveries WHERE status = ",
                st!(pending),
                " AND next_attempt_at <= ?3 \
                              ORDER BY next_attempt_at LIMIT ?4) \
                 RETURNING id, event_id, endpoint_id, attempt_count"
            ))?;
            let rows = stmt.query_map(params![lease_until, owner, now, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let claimed = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let mut ev_stmt = c.prepare_cached(
                "SELECT event_type, payload, created_at FROM events WHERE id = ?1",
            )?;
            let mut cache: std::collections::HashMap<String, (String, Arc<str>, i64)> =
                std::collections::HashMap::new();
            let mut out = Vec::with_capacity(claimed.len());
            for (delivery_id, event_id, endpoint_id, attempt_count) in claimed {
                let ev = match cache.get(&event_id) {
                    Some(ev) => ev.clone(),
                    None => {
                        let Some((t, p, at)) = ev_stmt
                            .query_row([&event_id], |r| {
                                Ok((
                                    r.get::<_, String>(0)?,
                                    r.get::<_, String>(1)?,
                                    r.get::<_, i64>(2)?,
                                ))
                            })
                            .optional()?
                        else {
                            // An orphan delivery (its event was purged): finish it as failed.
                            c.prepare_cached(concat!(
                                "UPDATE deliveries SET status = ",
                                st!(failed),
                                ", last_error = 'event missing', \
                                 completed_at = ?2, lease_owner = NULL WHERE id = ?1"
                            ))?
                            .execute(params![delivery_id, now])?;
                            continue;
                        };
                        let v = (t, Arc::<str>::from(p), at);
                        cache.insert(event_id.clone(), v.clone());
                        v
                    }
                };
                out.push(Claimed {
                    delivery_id,
                    event_id,
                    endpoint_id,
                    event_type: ev.0,
                    payload: ev.1,
                    event_created_at: ev.2,
                    attempt_count,
                    lease_until,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
        breaker: BreakerPolicy,
        now: Millis,
    ) -> Result<Vec<TrippedEndpoint>> {
        let outcomes = recorded_outcomes(outcomes);
        self.write_unguarded(move |c| record_outcomes_tx(c, &outcomes, &breaker, now))
            .await
    }

    async fn release_leases(&self, owner: Option<&str>, now: Millis) -> Result<u64> {
        let owner = owner.map(str::to_owned);
        self.write(move |c| {
            let n = c
                .prepare_cached(concat!(
                    "UPDATE deliveries SET next_attempt_at = ?1, lease_owner = NULL \
                     WHERE status = ",
                    st!(pending),
                    " AND lease_owner IS NOT NULL AND (?2 IS NULL OR lease_owner = ?2)"
                ))?
                .execute(params![now, owner])?;
            Ok(n as u64)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.prepare_cached("SELECT 1")?
                .query_row([], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn delivery_counts(&self, now: Millis) -> Result<DeliveryCounts> {
        self.read(move |c| {
            let mut counts = DeliveryCounts::default();
            let mut stmt =
                c.prepare_cached("SELECT status, count(*) FROM deliveries GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                match DeliveryStatus::from_i64(status) {
                    DeliveryStatus::Pending => counts.pending = n,
                    DeliveryStatus::Succeeded => counts.succeeded = n,
                    DeliveryStatus::Failed => counts.failed = n,
                    DeliveryStatus::Paused => counts.paused = n,
                    DeliveryStatus::Cancelled => counts.cancelled = n,
                }
            }
            let (due, oldest): (i64, Option<i64>) = c
                .prepare_cached(concat!(
                    "SELECT count(*), min(next_attempt_at) FROM deliveries \
                     WHERE status = ",
                    st!(pending),
                    " AND next_attempt_at <= ?1"
                ))?
                .query_row([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            counts.due = due;
            counts.oldest_due_age_ms = oldest.map(|o| now.saturating_sub(o)).unwrap_or(0);
            Ok(counts)
        })
        .await
    }

    async fn queue_stats(&self, now: Millis, cap: i64) -> Result<QueueStats> {
        let cap = cap.max(0);
        self.read(move |c| {
            let oldest: Option<i64> = c
                .prepare_cached(QUEUE_OLDEST_SQLITE)?
                .query_row([now], |r| r.get(0))
                .optional()?;
            let due: i64 = c
                .prepare_cached(QUEUE_DUE_SQLITE)?
                .query_row(params![now, cap], |r| r.get(0))?;
            Ok(QueueStats {
                due,
                due_capped: due >= cap,
                oldest_due_at: oldest,
            })
        })
        .await
    }

    async fn purge_finished(&self, older_than: Millis, batch: usize) -> Result<PurgeCounts> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        if batch == 0 {
            return Ok(PurgeCounts::default());
        }
        self.write(move |c| purge_tx(c, older_than, batch)).await
    }
}

impl SqliteStore {
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
        let id = endpoint_id.to_owned();
        self.write(move |c| {
            let exists: Option<i64> = c
                .prepare_cached("SELECT 1 FROM endpoints WHERE id = ?1 AND deleted_at IS NULL")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Ok(false);
            }
            c.prepare_cached(
                "UPDATE endpoint_secrets SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) \
                 WHERE endpoint_id = ?1 AND kind = ?4 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .execute(params![id, old_expires_at, now, kind.as_str()])?;
            c.prepare_cached(
                "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at, kind) \
                 VALUES (?1, ?2, ?3, NULL, ?4)",
            )?
            .execute(params![id, new_secret, now, kind.as_str()])?;
            c.prepare_cached("UPDATE endpoints SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            Ok(true)
        })
        .await
    }
}
