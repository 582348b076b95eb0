//! The SQLite store's own tests (the shared contract is the conformance suite).

use super::*;

/// A store on a new database in a temporary directory (dropped with the directory).
pub(super) async fn fresh() -> (SqliteStore, tempfile::TempDir) {
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
async fn hold_writer(s: &SqliteStore, key: &'static str) -> tokio::task::JoinHandle<Result<()>> {
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
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            [],
        )?;
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
