//! The checkpointer thread: copies committed WAL pages into the database file beside the
//! writer, so that a checkpoint never stalls commits.

use super::*;

/// How often the checkpointer looks at the WAL while writes are arriving, and while idle.
pub(super) const CHECKPOINT_BUSY: Duration = Duration::from_millis(50);
pub(super) const CHECKPOINT_IDLE: Duration = Duration::from_millis(500);
/// How often it looks while the WAL waits to be started over (see [`WAL_RESTART_PAGES`]).
pub(super) const CHECKPOINT_CATCH_UP: Duration = Duration::from_millis(2);
/// WAL pages (4 KiB) past which the WAL is started over from its beginning. SQLite can only do
/// that at the start of a write transaction that sees every page already checkpointed, which a
/// writer that never pauses does not see: so the writer, between two batches, checkpoints the
/// pages the checkpointer has not copied yet. That checkpoint stalls every write until its
/// copy and fsync are done, so the writer waits until the checkpointer (woken early, running
/// back to back) is at most [`WAL_RESTART_GAP_PAGES`] behind: copying and syncing a handful
/// of pages takes a few milliseconds where catching up on 50 ms of writes took 15–35 ms.
/// (SQLite's own automatic checkpoint copied and synced everything every 1,000 pages.)
pub(super) const WAL_RESTART_PAGES: i64 = 4096;
/// How far behind the checkpointer may be for the writer's restart checkpoint.
pub(super) const WAL_RESTART_GAP_PAGES: i64 = 256;
/// Past this size the writer checkpoints whatever the gap (a checkpointer that cannot keep up
/// must not let the WAL grow without bound).
pub(super) const WAL_MAX_PAGES: i64 = 2 * WAL_RESTART_PAGES;

/// What the writer and the checkpointer know of the WAL.
#[derive(Default)]
pub(super) struct WalState {
    /// Pages in the WAL after the writer's last commit (its WAL hook).
    pub(super) pages: AtomicI64,
    /// The checkpointer's last pass: pages in the WAL then, and how many it had copied.
    pub(super) seen: AtomicI64,
    pub(super) copied: AtomicI64,
    /// The checkpointer's last catch-up pass copied nothing although pages remain (a reader
    /// still needs them): waking it early is pointless until that changes.
    pub(super) stuck: AtomicBool,
    /// The checkpointer's last pass ran while the WAL waited to be started over and copied
    /// everything it saw: what remains was written since, and waiting will not shrink it.
    pub(super) caught_up: AtomicBool,
    /// Held around every checkpoint, the checkpointer's and the writer's: the writer's restart
    /// checkpoint waits for a pass in progress instead of finding SQLite's checkpoint lock
    /// taken and giving up (which, with passes back to back, it did again and again).
    pub(super) gate: Mutex<()>,
    pub(super) signal: Mutex<Signal>,
    pub(super) wake: Condvar,
}

#[derive(Default)]
pub(super) struct Signal {
    /// Look at the WAL now rather than after the usual interval.
    pub(super) now: bool,
    pub(super) stop: bool,
}

impl WalState {
    pub(super) fn signal(&self, f: impl FnOnce(&mut Signal)) {
        if let Ok(mut s) = self.signal.lock() {
            f(&mut s);
            self.wake.notify_one();
        }
    }

    /// Pages the checkpointer has yet to copy; all of them when its last pass was of an
    /// earlier generation of the WAL (it saw more pages than there are now).
    pub(super) fn behind(&self, pages: i64) -> i64 {
        let seen = self.seen.load(Ordering::Relaxed);
        let copied = self.copied.load(Ordering::Relaxed);
        if seen <= pages && copied <= seen {
            pages - copied
        } else {
            pages
        }
    }

    /// Whether the writer should checkpoint (and so start the WAL over) before its next batch.
    pub(super) fn restart_now(&self) -> bool {
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
pub(super) fn after_pass(
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
pub(super) fn checkpointer_loop(conn: Connection, wal: Arc<WalState>) {
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
