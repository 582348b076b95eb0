//! The writer thread: jobs from callers run in batches inside one transaction (group
//! commit), each in a savepoint unless it is unguarded, and each answered after the commit.

use super::*;

/// What a job does once the batch's commit is known (told the commit error, if any).
pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(super) trait WriteJob: Send {
    /// Runs the job inside the open transaction; returns what to do once the commit is known,
    /// and whether the transaction must be rolled back (an unguarded job failed after writing).
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, bool);
    fn fail(self: Box<Self>, err: StoreError);
    /// When it was handed to the writer.
    fn submitted(&self) -> Instant;
}

pub(super) struct Job<T, F> {
    pub(super) f: F,
    pub(super) reply: oneshot::Sender<Result<T>>,
    /// Run inside a savepoint of its own, so that its failure undoes only its own writes.
    pub(super) guarded: bool,
    pub(super) submitted: Instant,
}

pub(super) fn run_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
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

pub(super) fn writer_loop(
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

pub(super) fn record_batch(submitted: &mut Vec<Instant>) {
    let now = Instant::now();
    let waited = metrics::histogram!(WRITE_SECONDS);
    for at in submitted.drain(..) {
        waited.record(now.saturating_duration_since(at));
    }
    metrics::counter!(COMMITS_TOTAL).increment(1);
}
