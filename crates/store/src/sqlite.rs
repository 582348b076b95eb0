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
mod replay;
mod sealed;
mod sources;

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

/// What a job does once the batch's commit is known (told the commit error, if any).
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;

trait WriteJob: Send {
    /// Runs the job inside the open transaction; returns what to do once the commit is known,
    /// and whether the transaction must be rolled back (an unguarded job failed after writing).
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, bool);
    fn fail(self: Box<Self>, err: StoreError);
    /// When it was handed to the writer.
    fn submitted(&self) -> Instant;
}

struct Job<T, F> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
    /// Run inside a savepoint of its own, so that its failure undoes only its own writes.
    guarded: bool,
    submitted: Instant,
}

fn run_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]).map(|_| ()))
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, bool) {
        let Job {
            f, reply, guarded, ..
        } = *self;
        let (result, poisoned) = if guarded {
            // Cached statements: parsing SAVEPOINT/RELEASE for every job cost a fifth of the
            // writer thread's time in the delivery benchmark.
            let result = match run_statement(conn, "SAVEPOINT job") {
                Err(e) => Err(StoreError::from(e)),
                Ok(()) => {
                    let r = f(conn);
                    let end = if r.is_ok() {
                        run_statement(conn, "RELEASE job")
                    } else {
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    };
                    match (r, end) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(StoreError::from(e)),
                    }
                }
            };
            (result, false)
        } else {
            // Without a savepoint, a failure after a completed change cannot be undone alone:
            // the writer rolls the whole transaction back. (A failed statement undoes its own
            // partial changes, so a job that changed nothing before failing leaves it intact.)
            let before = conn.total_changes();
            let r = f(conn);
            let poisoned = r.is_err() && conn.total_changes() != before;
            (r, poisoned)
        };
        let done: Completion = Box::new(move |commit_err: Option<&StoreError>| {
            let out = match (result, commit_err) {
                (Ok(_), Some(e)) => Err(match e {
                    StoreError::Database(d) => StoreError::Database(d.context("commit failed")),
                    other => StoreError::database(format!("commit failed: {other}"), false),
                }),
                (r, _) => r,
            };
            let _ = reply.send(out);
        });
        (done, poisoned)
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }

    fn submitted(&self) -> Instant {
        self.submitted
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

/// How often the checkpointer looks at the WAL while writes are arriving, and while idle.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(50);
const CHECKPOINT_IDLE: Duration = Duration::from_millis(500);
/// How often it looks while the WAL waits to be started over (see [`WAL_RESTART_PAGES`]).
const CHECKPOINT_CATCH_UP: Duration = Duration::from_millis(2);
/// WAL pages (4 KiB) past which the WAL is started over from its beginning. SQLite can only do
/// that at the start of a write transaction that sees every page already checkpointed, which a
/// writer that never pauses does not see: so the writer, between two batches, checkpoints the
/// pages the checkpointer has not copied yet. That checkpoint stalls every write until its
/// copy and fsync are done, so the writer waits until the checkpointer (woken early, running
/// back to back) is at most [`WAL_RESTART_GAP_PAGES`] behind: copying and syncing a handful
/// of pages takes a few milliseconds where catching up on 50 ms of writes took 15–35 ms.
/// (SQLite's own automatic checkpoint copied and synced everything every 1,000 pages.)
const WAL_RESTART_PAGES: i64 = 4096;
/// How far behind the checkpointer may be for the writer's restart checkpoint.
const WAL_RESTART_GAP_PAGES: i64 = 256;
/// Past this size the writer checkpoints whatever the gap (a checkpointer that cannot keep up
/// must not let the WAL grow without bound).
const WAL_MAX_PAGES: i64 = 2 * WAL_RESTART_PAGES;

/// What the writer and the checkpointer know of the WAL.
#[derive(Default)]
struct WalState {
    /// Pages in the WAL after the writer's last commit (its WAL hook).
    pages: AtomicI64,
    /// The checkpointer's last pass: pages in the WAL then, and how many it had copied.
    seen: AtomicI64,
    copied: AtomicI64,
    /// The checkpointer's last catch-up pass copied nothing although pages remain (a reader
    /// still needs them): waking it early is pointless until that changes.
    stuck: AtomicBool,
    /// The checkpointer's last pass ran while the WAL waited to be started over and copied
    /// everything it saw: what remains was written since, and waiting will not shrink it.
    caught_up: AtomicBool,
    /// Held around every checkpoint, the checkpointer's and the writer's: the writer's restart
    /// checkpoint waits for a pass in progress instead of finding SQLite's checkpoint lock
    /// taken and giving up (which, with passes back to back, it did again and again).
    gate: Mutex<()>,
    signal: Mutex<Signal>,
    wake: Condvar,
}

#[derive(Default)]
struct Signal {
    /// Look at the WAL now rather than after the usual interval.
    now: bool,
    stop: bool,
}

impl WalState {
    fn signal(&self, f: impl FnOnce(&mut Signal)) {
        if let Ok(mut s) = self.signal.lock() {
            f(&mut s);
            self.wake.notify_one();
        }
    }

    /// Pages the checkpointer has yet to copy; all of them when its last pass was of an
    /// earlier generation of the WAL (it saw more pages than there are now).
    fn behind(&self, pages: i64) -> i64 {
        let seen = self.seen.load(Ordering::Relaxed);
        let copied = self.copied.load(Ordering::Relaxed);
        if seen <= pages && copied <= seen {
            pages - copied
        } else {
            pages
        }
    }

    /// Whether the writer should checkpoint (and so start the WAL over) before its next batch.
    fn restart_now(&self) -> bool {
        let pages = self.pages.load(Ordering::Relaxed);
        if pages < WAL_RESTART_PAGES {
            return false;
        }
        let caught_up =
            self.caught_up.load(Ordering::Relaxed) && self.seen.load(Ordering::Relaxed) <= pages;
        if pages >= WAL_MAX_PAGES || caught_up || self.behind(pages) <= WAL_RESTART_GAP_PAGES {
            return true;
        }
        if !self.stuck.load(Ordering::Relaxed) {
            self.signal(|s| s.now = true);
        }
        false
    }
}

/// After a checkpoint pass (`(pages in the WAL, pages copied)`, `None` if it failed or the
/// database is not in WAL mode): how long to wait before the next one, whether it was stuck,
/// and whether it caught up (see [`WalState::caught_up`]).
/// While the WAL waits to be started over, passes run back to back — unless one copied nothing
/// of what remains (`copied_before` is the previous pass's count), which means a reader still
/// needs those pages: then at the usual pace.
fn after_pass(
    wal_pages: i64,
    copied_before: i64,
    pass: Option<(i64, i64)>,
) -> (Duration, bool, bool) {
    match pass {
        Some((seen, copied)) if wal_pages >= WAL_RESTART_PAGES => {
            let stuck = copied < seen && copied == copied_before;
            let wait = if stuck {
                CHECKPOINT_BUSY
            } else {
                CHECKPOINT_CATCH_UP
            };
            (wait, stuck, copied == seen)
        }
        // More was written since the last look: look again soon.
        Some((seen, _)) if seen > 0 => (CHECKPOINT_BUSY, false, false),
        _ => (CHECKPOINT_IDLE, false, false),
    }
}

/// Copies committed WAL pages into the database file, beside the writer (`PASSIVE` never
/// blocks the writer or readers). Once every page is copied and no reader still needs the old
/// ones, the writer's next transaction starts the WAL over from its beginning, so the WAL file
/// stays about as large as what is written between two restarts.
fn checkpointer_loop(conn: Connection, wal: Arc<WalState>) {
    let mut wait = CHECKPOINT_IDLE;
    loop {
        {
            let Ok(guard) = wal.signal.lock() else { return };
            let Ok((mut s, _)) = wal
                .wake
                .wait_timeout_while(guard, wait, |s| !s.now && !s.stop)
            else {
                return;
            };
            if s.stop {
                return;
            }
            s.now = false;
        }
        // (busy, pages in the WAL, pages checkpointed); -1 when not in WAL mode.
        let pass = {
            let Ok(_gate) = wal.gate.lock() else { return };
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        };
        let copied_before = wal.copied.load(Ordering::Relaxed);
        if let Ok((seen, copied)) = pass {
            wal.seen.store(seen, Ordering::Relaxed);
            wal.copied.store(copied, Ordering::Relaxed);
        }
        let (next, stuck, caught_up) =
            after_pass(wal.pages.load(Ordering::Relaxed), copied_before, pass.ok());
        wal.stuck.store(stuck, Ordering::Relaxed);
        wal.caught_up.store(caught_up, Ordering::Relaxed);
        wait = next;
    }
}

/// Schema migrations: (version, name, SQL). Versions are explicit so that features developed in
/// parallel can each add theirs; every version not yet recorded in `schema_migrations` is applied
/// in ascending order, each in its own transaction.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("sqlite/0001_init.sql")),
    (2, "retention", include_str!("sqlite/0002_retention.sql")),
    (
        10,
        "client_certificates",
        include_str!("sqlite/0010_client_certificates.sql"),
    ),
    (
        20,
        "sources_audit",
        include_str!("sqlite/0020_sources_audit.sql"),
    ),
    (35, "console", include_str!("sqlite/0035_console.sql")),
    (
        40,
        "events_by_type",
        include_str!("sqlite/0040_events_by_type.sql"),
    ),
    (50, "replay_log", include_str!("sqlite/0050_replay_log.sql")),
    (
        60,
        "finished_without_in_list",
        include_str!("sqlite/0060_finished_without_in_list.sql"),
    ),
    (
        70,
        "replay_log_by_expiry",
        include_str!("sqlite/0070_replay_log_by_expiry.sql"),
    ),
    (
        80,
        "audit_by_source",
        include_str!("sqlite/0080_audit_by_source.sql"),
    ),
    (
        100,
        "api_key_lifecycle",
        include_str!("sqlite/0100_api_key_lifecycle.sql"),
    ),
];

/// Page cache of the writer (and checkpointer) connection, in KiB. Small on purpose: when a
/// B-tree page splits, SQLite briefly renumbers a page to the (never used) lock-byte page, which
/// makes the commit that follows walk its whole page cache to drop pages "past the end" —
/// with 32 MB (about 8,000 pages) that walk took 15 % of the writer thread's time in the
/// `ingest` benchmark, with 8 MB 5 %. The operating system's page cache serves the pages this
/// one misses.
const WRITER_CACHE_KIB: u32 = 8192;

fn configure(conn: &Connection, opts_sync: Synchronous, busy_ms: u64) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(busy_ms))?;
    // Every statement of the store stays prepared (rusqlite's default cache holds 16, fewer
    // than the store uses, so hot statements were parsed again and again).
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF; \
         PRAGMA cache_size=-{WRITER_CACHE_KIB};"
    ))?;
    let sync = match opts_sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, i64::MAX)
}

/// Applies the pending migrations up to version `upto` (tests build older databases with it).
fn migrate_to(conn: &mut Connection, upto: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
           version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    // Databases from before this table recorded their level in user_version.
    let legacy: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if legacy > 0 {
        let tx = conn.transaction()?;
        for (version, name, _) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= legacy) {
            tx.execute(
                "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, 0)",
                params![version, name],
            )?;
        }
        tx.execute_batch("PRAGMA user_version=0")?;
        tx.commit()?;
    }
    let applied: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let known_max = MIGRATIONS.iter().map(|(v, _, _)| *v).max().unwrap_or(0);
    if let Some(newer) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|(k, _, _)| k == *v))
    {
        return Err(StoreError::database(
            format!(
                "database has schema migration {newer}, unknown to this binary (it knows up to {known_max}); \
             run a newer hookwarden"
            ),
            false,
        ));
    }
    let mut pending: Vec<&(i64, &str, &str)> = MIGRATIONS
        .iter()
        .filter(|(v, _, _)| !applied.contains(v) && *v <= upto)
        .collect();
    pending.sort_by_key(|(v, _, _)| *v);
    for (version, name, sql) in pending {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now_millis()],
        )?;
        tx.commit()?;
    }
    Ok(())
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

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn WriteJob>>,
    max_batch: usize,
    wal: Arc<WalState>,
) {
    let mut jobs: Vec<Box<dyn WriteJob>> = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut submitted: Vec<Instant> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        if wal.restart_now() {
            // See WAL_RESTART_PAGES. After a pass in progress (the gate), so that it is not
            // skipped; incomplete (a reader still needs old pages) is fine: the next batch
            // tries again.
            let _gate = wal.gate.lock();
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        submitted.extend(jobs.iter().map(|j| j.submitted()));
        let mut queue = jobs.drain(..);
        'batch: loop {
            if let Err(e) = run_statement(&conn, "BEGIN IMMEDIATE") {
                let e = match StoreError::from(e) {
                    StoreError::Database(d) => d,
                    other => crate::DbError::new(other.to_string(), false),
                };
                for job in queue.by_ref() {
                    job.fail(StoreError::Database(e.clone()));
                }
                break 'batch;
            }
            for job in queue.by_ref() {
                let (done, poisoned) = job.run(&conn);
                completions.push(done);
                // An unguarded job failed half-way, or a failed job ended the transaction
                // itself (SQLite rolls it back on some errors: disk full, I/O error; the jobs
                // after it would otherwise each commit on their own): nothing of this
                // transaction commits. The rest of the batch goes on in a new one.
                if poisoned || conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                    let err = StoreError::database(
                        "rolled back: a job of the same batch failed after writing",
                        true,
                    );
                    for done in completions.drain(..) {
                        done(Some(&err));
                    }
                    continue 'batch;
                }
            }
            let commit = run_statement(&conn, "COMMIT").map_err(StoreError::from);
            if commit.is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let err = commit.err();
            for done in completions.drain(..) {
                done(err.as_ref());
            }
            break 'batch;
        }
        record_batch(&mut submitted);
    }
    // Channel closed: checkpoint so the WAL does not linger.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

/// `hookwarden_sqlite_write_seconds`: how long each write waited, from its submission to the
/// end of its batch's transaction (the queue, the other writes of the batch and the commit's
/// fsync). `hookwarden_sqlite_commits_total`: batches the writer ran (one transaction each,
/// unless a failed job had part of it rolled back); writes per commit is the histogram's count
/// over it.
pub const WRITE_SECONDS: &str = "hookwarden_sqlite_write_seconds";
/// See [`WRITE_SECONDS`].
pub const COMMITS_TOTAL: &str = "hookwarden_sqlite_commits_total";

fn record_batch(submitted: &mut Vec<Instant>) {
    let now = Instant::now();
    let waited = metrics::histogram!(WRITE_SECONDS);
    for at in submitted.drain(..) {
        waited.record(now.saturating_duration_since(at));
    }
    metrics::counter!(COMMITS_TOTAL).increment(1);
}

// ---------------------------------------------------------------------------------------------
// Row mapping

use crate::new_prefixed_id as new_id;

const ENDPOINT_COLS: &str = "id, url, description, event_types, headers, developer_payload, \
    signature_schemes, rate_limit_per_second, enabled, disabled_reason, disabled_at, \
    client_certificate_id, consecutive_failures, failing_since, created_at, updated_at";

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
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
const QUEUE_OLDEST_SQLITE: &str = "SELECT next_attempt_at FROM deliveries \
     WHERE status = 0 AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT 1";
/// Due deliveries, counted up to a cap: a range scan of `deliveries_due` that stops there.
const QUEUE_DUE_SQLITE: &str = "SELECT count(*) FROM (SELECT 1 FROM deliveries \
     WHERE status = 0 AND next_attempt_at <= ?1 LIMIT ?2)";

const EVENT_COLS: &str = "id, event_type, payload, idempotency_key, created_at, source_id";

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        event_type: r.get(1)?,
        payload: r.get(2)?,
        idempotency_key: r.get(3)?,
        created_at: r.get(4)?,
        source_id: r.get(5)?,
    })
}

const DELIVERY_COLS: &str = "id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at, completed_at";

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
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

fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
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

fn limit_of(page: &Page) -> i64 {
    i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(100)
}

/// Reads `(key, stored size)` pairs: the candidates of a bounded page.
fn sized<K: rusqlite::types::FromSql>(
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
fn bounded_page<K, T>(
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

/// Event-type subscriptions: one row per type, or a single `*` row for "every type".
fn write_event_types(conn: &Connection, endpoint_id: &str, types: &[String]) -> Result<()> {
    conn.prepare_cached("DELETE FROM endpoint_event_types WHERE endpoint_id = ?1")?
        .execute([endpoint_id])?;
    let mut ins = conn.prepare_cached(
        "INSERT OR IGNORE INTO endpoint_event_types (event_type, endpoint_id) VALUES (?1, ?2)",
    )?;
    if types.is_empty() {
        ins.execute(params!["*", endpoint_id])?;
    } else {
        for t in types {
            ins.execute(params![t, endpoint_id])?;
        }
    }
    Ok(())
}

fn set_enabled_tx(
    conn: &Connection,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
    now: Millis,
) -> Result<bool> {
    let changed = if enabled {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = 1, disabled_reason = NULL, disabled_at = NULL, \
             consecutive_failures = 0, failing_since = NULL, updated_at = ?2 \
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, now])?
    } else {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, disabled_at = ?3, updated_at = ?3 \
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![id, reason, now])?
    };
    if changed == 0 {
        return Ok(false);
    }
    if enabled {
        conn.prepare_cached(
            "UPDATE deliveries SET status = 0, next_attempt_at = ?2, lease_owner = NULL, updated_at = ?2 \
             WHERE endpoint_id = ?1 AND status = 3",
        )?
        .execute(params![id, now])?;
    } else {
        conn.prepare_cached(
            "UPDATE deliveries SET status = 3, updated_at = ?2 WHERE endpoint_id = ?1 AND status = 0",
        )?
        .execute(params![id, now])?;
    }
    Ok(true)
}

fn insert_attempt(
    conn: &Connection,
    delivery_id: &str,
    a: &NewAttempt,
    outcome: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, \
         response_body, response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
         request_headers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        delivery_id,
        a.attempt_no,
        a.started_at,
        a.duration_ms,
        a.status_code,
        a.response_body,
        a.response_truncated as i64,
        a.error_class,
        a.error_message,
        a.local_addr,
        a.remote_addr,
        outcome,
        a.request_headers,
    ])?;
    Ok(())
}

/// A batch of outcomes inside the writer's transaction: the rows they touch are read, the
/// shared state machine ([`crate::machine`]) decides, and the changed rows are written back,
/// each conditional on the state read.
fn record_outcomes_tx(
    conn: &Connection,
    outcomes: &[Outcome],
    breaker: &BreakerPolicy,
    now: Millis,
) -> Result<Vec<TrippedEndpoint>> {
    let mut deliveries: HashMap<String, DeliveryRow> = HashMap::new();
    {
        let mut read = conn.prepare_cached(
            "SELECT endpoint_id, status, attempt_count, next_attempt_at, lease_owner, \
             last_status_code, last_error, completed_at, updated_at FROM deliveries WHERE id = ?1",
        )?;
        for o in outcomes {
            if deliveries.contains_key(&o.delivery_id) {
                continue;
            }
            let row = read
                .query_row([&o.delivery_id], |r| {
                    Ok(DeliveryRow::read(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })
                .optional()?;
            if let Some(row) = row {
                deliveries.insert(o.delivery_id.clone(), row);
            }
        }
    }
    let mut endpoints: HashMap<String, EndpointRow> = HashMap::new();
    {
        let mut read = conn.prepare_cached(
            "SELECT enabled, deleted_at IS NOT NULL, consecutive_failures, failing_since, \
             disabled_reason, disabled_at, updated_at FROM endpoints WHERE id = ?1",
        )?;
        let ids: BTreeSet<&str> = outcomes
            .iter()
            .map(|o| o.endpoint_id.as_str())
            .chain(deliveries.values().map(|d| d.endpoint_id.as_str()))
            .collect();
        for id in ids {
            let row = read
                .query_row([id], |r| {
                    Ok(EndpointRow {
                        enabled: r.get::<_, i64>(0)? != 0,
                        deleted: r.get(1)?,
                        consecutive_failures: r.get(2)?,
                        failing_since: r.get(3)?,
                        disabled_reason: r.get(4)?,
                        disabled_at: r.get(5)?,
                        updated_at: r.get(6)?,
                        dirty: false,
                    })
                })
                .optional()?;
            if let Some(row) = row {
                endpoints.insert(id.to_owned(), row);
            }
        }
    }

    let applied = machine::apply(&mut endpoints, &mut deliveries, outcomes, breaker, now);

    for &(i, label) in &applied.attempts {
        if let Some((o, a)) = outcomes.get(i).and_then(|o| Some((o, o.attempt.as_ref()?))) {
            insert_attempt(conn, &o.delivery_id, a, label)?;
        }
    }
    for (id, ep) in endpoints.iter().filter(|(_, e)| e.dirty) {
        conn.prepare_cached(
            "UPDATE endpoints SET enabled = ?2, disabled_reason = ?3, disabled_at = ?4, \
             consecutive_failures = ?5, failing_since = ?6, updated_at = ?7 WHERE id = ?1",
        )?
        .execute(params![
            id,
            i64::from(ep.enabled),
            ep.disabled_reason,
            ep.disabled_at,
            ep.consecutive_failures,
            ep.failing_since,
            ep.updated_at
        ])?;
    }
    for (id, d) in deliveries.iter().filter(|(_, d)| d.dirty) {
        // Conditional on the state read: the only writer cannot have moved it meanwhile, and if
        // it ever did, the batch is refused rather than overwriting it.
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, attempt_count = ?3, next_attempt_at = ?4, \
                 lease_owner = ?5, last_status_code = ?6, last_error = ?7, completed_at = ?8, \
                 updated_at = ?9 \
                 WHERE id = ?1 AND status = ?10 AND lease_owner IS ?11 AND next_attempt_at = ?12",
            )?
            .execute(params![
                id,
                d.status,
                d.attempt_count,
                d.next_attempt_at,
                d.lease_owner,
                d.last_status_code,
                d.last_error,
                d.completed_at,
                d.updated_at,
                d.read.status,
                d.read.lease_owner,
                d.read.next_attempt_at
            ])?;
        if changed != 1 {
            return Err(StoreError::database(
                "a delivery changed while its outcome was being recorded",
                true,
            ));
        }
    }
    // The tripped endpoints' other pending deliveries pause (those of the batch already did).
    for t in &applied.tripped {
        conn.prepare_cached(
            "UPDATE deliveries SET status = 3, updated_at = ?2 WHERE endpoint_id = ?1 AND status = 0",
        )?
        .execute(params![t.endpoint_id, now])?;
    }
    Ok(applied.tripped)
}

/// Finished deliveries (succeeded, failed, cancelled) completed before ?1, oldest first: the
/// condition repeats deliveries_finished's word for word, so that SQLite uses that index.
const FINISHED_BEFORE_SQL: &str = "SELECT id FROM deliveries WHERE status > 0 AND status <> 3 \
     AND completed_at < ?1 ORDER BY completed_at LIMIT ?2";

/// One bounded retention pass (see [`Store::purge_finished`]).
fn purge_tx(c: &Connection, older_than: Millis, batch: i64) -> Result<PurgeCounts> {
    let mut counts = PurgeCounts::default();
    let ids: Vec<String> = c
        .prepare_cached(FINISHED_BEFORE_SQL)?
        .query_map(params![older_than, batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut budget = batch;
    for id in &ids {
        if budget <= 0 {
            break;
        }
        let n = c
            .prepare_cached(
                "DELETE FROM attempts WHERE id IN \
                 (SELECT id FROM attempts WHERE delivery_id = ?1 LIMIT ?2)",
            )?
            .execute(params![id, budget])?;
        counts.attempts += n as u64;
        budget -= i64::try_from(n).unwrap_or(i64::MAX);
    }
    // A delivery goes once all its attempts are gone (a later call finishes the rest).
    let mut del = c.prepare_cached(
        "DELETE FROM deliveries WHERE id = ?1 \
         AND NOT EXISTS (SELECT 1 FROM attempts WHERE delivery_id = ?1)",
    )?;
    for id in &ids {
        counts.deliveries += del.execute([id])? as u64;
    }
    counts.idempotency_keys = c
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE key IN \
             (SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![older_than, batch])? as u64;
    counts.events = c
        .prepare_cached(
            "DELETE FROM events WHERE id IN \
             (SELECT e.id FROM events e WHERE e.created_at < ?1 \
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
              AND NOT EXISTS (SELECT 1 FROM idempotency_keys k \
                              WHERE k.key = e.idempotency_key AND k.event_id = e.id) \
              ORDER BY e.created_at LIMIT ?2)",
        )?
        .execute(params![older_than, batch])? as u64;
    Ok(counts)
}

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
                "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
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
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ?1 AND deleted_at IS NULL"
            ))?
            .query_row([id], endpoint_from_row)
            .optional()?)
        })
        .await
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
                Ok(one.query_row([id], endpoint_from_row).optional()?)
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
                     client_certificate_id = ?9, updated_at = ?10 WHERE id = ?1 AND deleted_at IS NULL",
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
            c.prepare_cached(
                "UPDATE deliveries SET status = 4, completed_at = ?2, updated_at = ?2, lease_owner = NULL \
                 WHERE endpoint_id = ?1 AND status IN (0, 3)",
            )?
            .execute(params![id, now])?;
            c.prepare_cached("UPDATE endpoint_secrets SET expires_at = ?2 WHERE endpoint_id = ?1")?
                .execute(params![id, now])?;
            Ok(true)
        })
        .await
    }

    async fn active_secrets(&self, endpoint_id: &str, now: Millis) -> Result<Vec<SecretRecord>> {
        let id = endpoint_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, endpoint_id, secret, created_at, expires_at FROM endpoint_secrets \
                 WHERE endpoint_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY id DESC",
            )?;
            let rows = stmt.query_map(params![id, now], |r| {
                Ok(SecretRecord {
                    id: r.get(0)?,
                    endpoint_id: r.get(1)?,
                    secret: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })?;
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
                 WHERE endpoint_id = ?1 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .execute(params![id, old_expires_at, now])?;
            c.prepare_cached(
                "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at, expires_at) VALUES (?1, ?2, ?3, NULL)",
            )?
            .execute(params![id, new_secret, now])?;
            c.prepare_cached("UPDATE endpoints SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            Ok(true)
        })
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
                            .query_row([&event_id], event_from_row)
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

            // (endpoint id, enabled)
            let targets: Vec<(String, bool)> = match &ev.only_endpoints {
                Some(ids) => {
                    let mut stmt = c.prepare_cached(
                        "SELECT id, enabled FROM endpoints WHERE id = ?1 AND deleted_at IS NULL",
                    )?;
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        if out.iter().any(|(o, _): &(String, bool)| o == id) {
                            continue;
                        }
                        if let Some(t) = stmt
                            .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0)))
                            .optional()?
                        {
                            out.push(t);
                        }
                    }
                    out
                }
                None => {
                    let mut stmt = c.prepare_cached(
                        "SELECT e.id, e.enabled FROM endpoint_event_types t \
                         JOIN endpoints e ON e.id = t.endpoint_id \
                         WHERE t.event_type IN (?1, '*') AND e.deleted_at IS NULL",
                    )?;
                    let rows = stmt.query_map([&ev.event_type], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };

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
        let id = id.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"))?
                    .query_row([id], event_from_row)
                    .optional()?,
            )
        })
        .await
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
                Ok(one.query_row([id], event_from_row).optional()?)
            })
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"
            ))?
            .query_row([id], delivery_from_row)
            .optional()?)
        })
        .await
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
                Ok(one.query_row([id], delivery_from_row).optional()?)
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
            let mut one = tx.prepare_cached(
                "SELECT id, delivery_id, attempt_no, started_at, duration_ms, status_code, response_body, \
                 response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
                 request_headers FROM attempts WHERE id = ?1",
            )?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], attempt_from_row).optional()?)
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
                "SELECT (completed_at - ?2) / ?3 AS b, SUM(status = 1), SUM(status = 2) \
                 FROM deliveries WHERE endpoint_id = ?1 AND status IN (1, 2) \
                 AND completed_at >= ?2 AND completed_at < ?4 GROUP BY b ORDER BY b LIMIT ?5"
            } else {
                "SELECT (completed_at - ?2) / ?3 AS b, SUM(status = 1), SUM(status = 2) \
                 FROM deliveries WHERE ?1 IS NULL AND status > 0 AND status <> 3 \
                 AND completed_at >= ?2 AND completed_at < ?4 GROUP BY b ORDER BY b LIMIT ?5"
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
                "UPDATE deliveries SET \
                 status = CASE WHEN (SELECT enabled FROM endpoints WHERE id = deliveries.endpoint_id) = 1 \
                          THEN 0 ELSE 3 END, \
                 next_attempt_at = ?2, lease_owner = NULL, completed_at = NULL, updated_at = ?2 \
                 WHERE id = ?1 AND status <> 4 RETURNING {DELIVERY_COLS}"
            ))?
            .query_row(params![id, now], delivery_from_row)
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
            let mut stmt = c.prepare_cached(
                "UPDATE deliveries SET next_attempt_at = ?1, lease_owner = ?2 \
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 0 AND next_attempt_at <= ?3 \
                              ORDER BY next_attempt_at LIMIT ?4) \
                 RETURNING id, event_id, endpoint_id, attempt_count",
            )?;
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
                            c.prepare_cached(
                                "UPDATE deliveries SET status = 2, last_error = 'event missing', \
                                 completed_at = ?2, lease_owner = NULL WHERE id = ?1",
                            )?
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
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = ?1, lease_owner = NULL \
                     WHERE status = 0 AND lease_owner IS NOT NULL AND (?2 IS NULL OR lease_owner = ?2)",
                )?
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
                .prepare_cached(
                    "SELECT count(*), min(next_attempt_at) FROM deliveries \
                     WHERE status = 0 AND next_attempt_at <= ?1",
                )?
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        (s, dir)
    }

    #[tokio::test]
    async fn conformance_suite() {
        let dirs = Arc::new(Mutex::new(Vec::new()));
        crate::conformance::run_all(|| {
            let dirs = dirs.clone();
            async move {
                let (s, d) = fresh().await;
                dirs.lock().unwrap().push(d);
                s
            }
        })
        .await;
    }

    #[test]
    fn the_writer_restarts_the_wal_only_once_the_checkpointer_is_close() {
        let wal = WalState::default();
        let woken = |w: &WalState| std::mem::take(&mut w.signal.lock().unwrap().now);
        // Below the restart size: nothing to do, nobody woken.
        wal.pages.store(WAL_RESTART_PAGES - 1, Ordering::Relaxed);
        assert!(!wal.restart_now());
        assert!(!woken(&wal));
        // Past it, with the checkpointer far behind: the writer waits and wakes it.
        wal.pages.store(WAL_RESTART_PAGES + 100, Ordering::Relaxed);
        wal.seen.store(WAL_RESTART_PAGES - 500, Ordering::Relaxed);
        wal.copied.store(WAL_RESTART_PAGES - 500, Ordering::Relaxed);
        assert!(!wal.restart_now());
        assert!(woken(&wal));
        // The checkpointer caught up to within the gap: the writer checkpoints the rest.
        wal.seen.store(WAL_RESTART_PAGES, Ordering::Relaxed);
        wal.copied.store(
            WAL_RESTART_PAGES + 100 - WAL_RESTART_GAP_PAGES,
            Ordering::Relaxed,
        );
        assert!(wal.restart_now());
        // A pass over an earlier, longer WAL says nothing about this one: all of it is behind.
        wal.seen.store(WAL_MAX_PAGES - 1, Ordering::Relaxed);
        wal.copied.store(WAL_MAX_PAGES - 1, Ordering::Relaxed);
        assert_eq!(wal.behind(WAL_RESTART_PAGES + 100), WAL_RESTART_PAGES + 100);
        assert!(!wal.restart_now());
        assert!(woken(&wal));
        // A catch-up pass of this WAL copied all it saw: what remains came since, so the
        // writer restarts now, whatever the gap; such a pass over an earlier, longer WAL does
        // not count.
        wal.seen.store(WAL_RESTART_PAGES, Ordering::Relaxed);
        wal.copied.store(WAL_RESTART_PAGES, Ordering::Relaxed);
        wal.pages.store(WAL_RESTART_PAGES + 2000, Ordering::Relaxed);
        wal.caught_up.store(true, Ordering::Relaxed);
        assert!(wal.restart_now());
        wal.seen.store(WAL_MAX_PAGES - 1, Ordering::Relaxed);
        wal.copied.store(WAL_MAX_PAGES - 1, Ordering::Relaxed);
        assert!(!wal.restart_now());
        assert!(woken(&wal));
        wal.caught_up.store(false, Ordering::Relaxed);
        // While the checkpointer is stuck behind a reader, the writer does not keep waking it.
        wal.stuck.store(true, Ordering::Relaxed);
        assert!(!wal.restart_now());
        assert!(!woken(&wal));
        wal.stuck.store(false, Ordering::Relaxed);
        // A checkpointer that cannot keep up does not let the WAL grow past its bound.
        wal.seen.store(0, Ordering::Relaxed);
        wal.copied.store(0, Ordering::Relaxed);
        wal.pages.store(WAL_MAX_PAGES, Ordering::Relaxed);
        assert!(wal.restart_now());
    }

    #[test]
    fn the_checkpointer_runs_back_to_back_only_while_it_makes_progress() {
        let restart = WAL_RESTART_PAGES + 10;
        // Catching up: copied more than last time.
        assert_eq!(
            after_pass(restart, 3000, Some((restart, 3900))),
            (CHECKPOINT_CATCH_UP, false, false)
        );
        // Copied everything it saw: caught up, the writer restarts next; keep looking closely.
        assert_eq!(
            after_pass(restart, 3900, Some((restart, restart))),
            (CHECKPOINT_CATCH_UP, false, true)
        );
        // Copied nothing of what remains: a reader holds it; back to the usual pace.
        assert_eq!(
            after_pass(restart, 3900, Some((restart, 3900))),
            (CHECKPOINT_BUSY, true, false)
        );
        // Below the restart size: the usual pace while written to, slow when idle or failing;
        // a pass that copied all it saw there says nothing about a restart.
        assert_eq!(
            after_pass(100, 50, Some((100, 50))),
            (CHECKPOINT_BUSY, false, false)
        );
        assert_eq!(
            after_pass(100, 50, Some((100, 100))),
            (CHECKPOINT_BUSY, false, false)
        );
        assert_eq!(
            after_pass(0, 0, Some((0, 0))),
            (CHECKPOINT_IDLE, false, false)
        );
        assert_eq!(
            after_pass(restart, 0, None),
            (CHECKPOINT_IDLE, false, false)
        );
    }

    #[test]
    fn the_checkpointer_stops_when_told_even_while_idle() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("c.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        let wal = Arc::new(WalState::default());
        let w = wal.clone();
        let t = std::thread::spawn(move || checkpointer_loop(conn, w));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let started = std::time::Instant::now();
        wal.signal(|s| s.stop = true);
        t.join().unwrap();
        // Not after the idle interval: at once.
        assert!(
            started.elapsed() < CHECKPOINT_IDLE / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn group_commit_answers_every_writer_and_isolates_failures() {
        let (s, _d) = fresh().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.write(move |c| {
                    if i % 50 == 7 {
                        // A failing job must not undo the others in its batch.
                        c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                    }
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, 'v')",
                        [format!("k{i}")],
                    )?;
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 196);
        let n: i64 = s
            .read(|c| {
                Ok(
                    c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 196);
    }

    fn put(c: &Connection, k: &str) -> Result<()> {
        c.execute("INSERT INTO meta (key, value) VALUES (?1, 'v')", [k])?;
        Ok(())
    }

    /// Holds the writer (a job that writes `key` after 300 ms) so that the jobs submitted after
    /// this returns queue up and run as one batch, in order.
    async fn hold_writer(
        s: &SqliteStore,
        key: &'static str,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let held = s.clone();
        let hold = tokio::spawn(async move {
            held.write(move |c| {
                std::thread::sleep(Duration::from_millis(300));
                put(c, key)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        hold
    }

    /// The committed `meta` keys starting with `prefix`, in order.
    async fn meta_keys(s: &SqliteStore, prefix: &str) -> Vec<String> {
        let pattern = format!("{prefix}%");
        s.read(move |c| {
            let mut st = c.prepare("SELECT key FROM meta WHERE key LIKE ?1 ORDER BY key")?;
            let rows = st.query_map([pattern], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
        .unwrap()
    }

    /// A job that ends the transaction itself (as SQLite does on some errors, here by an explicit
    /// ROLLBACK) fails with the jobs before it; the jobs after it run and commit in a new
    /// transaction rather than each on its own outside one (and then be told they failed).
    #[tokio::test]
    async fn a_job_that_ends_the_transaction_fails_its_batch_not_the_next() {
        let (s, _d) = fresh().await;
        let hold = hold_writer(&s, "r0").await;
        let (a, b, c, d) = tokio::join!(
            s.write(|c| put(c, "ra")),
            s.write_unguarded(|c| {
                c.execute_batch("ROLLBACK")?;
                Err::<(), _>(StoreError::database("gone", false))
            }),
            s.write(|c| put(c, "rc")),
            s.write_unguarded(|c| put(c, "rd")),
        );
        hold.await.unwrap().unwrap();
        assert!(a.unwrap_err().to_string().contains("rolled back"));
        assert!(b.is_err());
        c.unwrap();
        d.unwrap();
        assert_eq!(meta_keys(&s, "r").await, ["r0", "rc", "rd"]);
    }

    /// Retention finds finished deliveries through their partial index, and writing a delivery
    /// row maintains the partial indexes without a temporary B-tree (a three-value IN list in
    /// an index condition builds one for every row written).
    #[tokio::test]
    async fn finished_deliveries_index_is_used_and_cheap_to_maintain() {
        let (s, _d) = fresh().await;
        let (plan, ephemeral) = s
            .read(|c| {
                let plan = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {FINISHED_BEFORE_SQL}"))?
                    .query_map(params![1_000i64, 10], |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .join(" | ");
                let mut ephemeral = Vec::new();
                for sql in [
                    "INSERT INTO deliveries (id, event_id, endpoint_id, status, next_attempt_at, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)",
                    "UPDATE deliveries SET status = ?2, completed_at = ?3 WHERE id = ?1",
                ] {
                    let mut st = c.prepare(&format!("EXPLAIN {sql}"))?;
                    let nulls = std::iter::repeat_n(None::<i64>, st.parameter_count());
                    let ops = st
                        .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(1))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    ephemeral.push(ops.iter().filter(|op| *op == "OpenEphemeral").count());
                }
                Ok((plan, ephemeral))
            })
            .await
            .unwrap();
        assert!(plan.contains("INDEX deliveries_finished"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert_eq!(ephemeral, [0, 0]);
    }

    /// An unguarded job that fails after writing takes down its whole transaction (the jobs
    /// before it in the batch fail too), and only that one: the rest of the batch commits in a
    /// new one. An unguarded job that fails before writing anything hurts nobody.
    #[tokio::test]
    async fn an_unguarded_failure_rolls_back_its_batch_and_only_that() {
        let (s, _d) = fresh().await;
        let hold = hold_writer(&s, "u0").await;
        let (a, b, c, e, d, f) = tokio::join!(
            s.write(|c| put(c, "ua")),
            s.write_unguarded(|c| put(c, "ub")),
            s.write_unguarded(|c| {
                put(c, "uc")?;
                c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                Ok(())
            }),
            s.write(|c| put(c, "ue")),
            s.write_unguarded(|c| {
                c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                Ok(())
            }),
            s.write_unguarded(|c| put(c, "uf")),
        );
        hold.await.unwrap().unwrap();
        for (name, r) in [("a", &a), ("b", &b)] {
            let err = r.as_ref().expect_err(name).to_string();
            assert!(err.contains("rolled back"), "{name}: {err}");
        }
        assert!(c.unwrap_err().to_string().contains("no_such_table"));
        assert!(d.unwrap_err().to_string().contains("no_such_table"));
        e.unwrap();
        f.unwrap();
        assert_eq!(meta_keys(&s, "u").await, ["u0", "ue", "uf"]);
    }

    /// The monitoring queries must stay index seeks and bounded scans at any table size: no
    /// full scan of `deliveries`, no temporary sort.
    #[tokio::test]
    async fn queue_stats_queries_use_the_due_index() {
        let (s, _d) = fresh().await;
        let plans: Vec<String> = s
            .read(|c| {
                let mut out = Vec::new();
                for (sql, n) in [(QUEUE_OLDEST_SQLITE, 1), (QUEUE_DUE_SQLITE, 2)] {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let args = [1_000i64, 10];
                    let rows = stmt.query_map(rusqlite::params_from_iter(&args[..n]), |r| {
                        r.get::<_, String>(3)
                    })?;
                    out.push(rows.collect::<rusqlite::Result<Vec<_>>>()?.join(" | "));
                }
                Ok(out)
            })
            .await
            .unwrap();
        for plan in &plans {
            assert!(plan.contains("SEARCH deliveries USING"), "{plan}");
            assert!(plan.contains("INDEX deliveries_due"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }

    #[tokio::test]
    async fn data_survives_reopen_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            assert!(s.take_first_start().await.unwrap());
            s.close();
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert!(!s.take_first_start().await.unwrap());
    }

    #[tokio::test]
    async fn refuses_a_database_from_a_newer_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.write(|c| {
            c.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)", [])?;
            Ok(())
        })
        .await
        .unwrap();
        s.close();
        let err = SqliteStore::open(&path, SqliteOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown to this binary"), "{err}");
    }

    /// The writer never checkpoints (a checkpoint inside a commit stalled every writer); the
    /// checkpointer thread must keep the WAL from growing with everything ever written.
    #[tokio::test]
    async fn the_checkpointer_keeps_the_wal_small() {
        let (s, dir) = fresh().await;
        let wal = dir.path().join("t.db-wal");
        let payload = "x".repeat(1000);
        let mut n = 0;
        for round in 0..60 {
            let p = payload.clone();
            s.write(move |c| {
                let mut st = c.prepare_cached(
                    "INSERT INTO events (id, event_type, payload, created_at) VALUES (?1, 't', ?2, 0)",
                )?;
                for i in 0..800 {
                    st.execute(params![format!("evt_{round}_{i}"), p])?;
                }
                Ok(())
            })
            .await
            .unwrap();
            n += 800;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // About 48 MB went through the WAL (with index pages, more).
        let written = n * payload.len() as u64;
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        // Without restarts the WAL held every page ever written (230 MB here). With them it
        // holds WAL_RESTART_PAGES plus a few batches (about 930 pages each here): the writer
        // waits for the checkpointer to catch up (a pass that copied all it saw), and its own
        // checkpoint is skipped while the checkpointer happens to be copying.
        let bound = (WAL_RESTART_PAGES as u64 + 6 * 1000) * 4096;
        assert!(
            wal_len <= bound && wal_len < written,
            "WAL grew to {wal_len} bytes (bound {bound}) for {written} bytes of payload written"
        );
        let count: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, n as i64);
        s.close();
        // Closing checkpoints everything and truncates the WAL.
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal_len, 0);
    }

    #[tokio::test]
    async fn writes_after_close_fail_cleanly() {
        let (s, _d) = fresh().await;
        s.close();
        assert!(matches!(
            s.take_first_start().await,
            Err(StoreError::Closed)
        ));
    }
}
