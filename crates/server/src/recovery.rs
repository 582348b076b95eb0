//! Running recoveries (docs/recovery.md): failed deliveries sent again by a job, in the order
//! they were created, a batch at a time.
//!
//! Any instance may carry a job: it is leased in the store ([`RecoveryStore::claim_recovery`])
//! and each step makes the next batch due again and moves the job's cursor in one transaction,
//! so a delivery is sent again once per job even when an instance dies mid-way and another
//! takes over. The next batch waits until every delivery of the previous one has had the outcome
//! of its first try (or a bounded time): batches go in order, and within a batch deliveries are
//! made due in order and dispatched in that order (with several requests in flight at once, as
//! for any delivery, they may arrive slightly out of order). The dispatcher sends them like any
//! other delivery: within the endpoint's rate limit, at least once, with its retries.

use crate::clock::SharedClock;
use crate::dispatch::Dispatcher;
use hookwarden_store::{Millis, Recovery, RecoveryStatus, RecoveryStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Deliveries made due again per step.
pub const BATCH: usize = 100;
/// How long a job is leased for (renewed while it runs).
const LEASE: Duration = Duration::from_secs(60);
/// How often a batch's first tries are checked.
const POLL: Duration = Duration::from_millis(200);
/// Longest wait for a batch's first tries before the next batch goes anyway (they are queued;
/// order is then only as good as the dispatcher's).
const MAX_BATCH_WAIT: Duration = Duration::from_secs(600);
/// How often an idle instance looks for jobs nobody carries (one created, or left by an
/// instance that stopped).
const IDLE: Duration = Duration::from_secs(5);

/// How often finished jobs older than the retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub struct Recoverer {
    store: Arc<dyn RecoveryStore>,
    /// Finished jobs are kept this long (`storage.retention_days`; zero: forever).
    keep: Duration,
    dispatcher: Arc<Dispatcher>,
    clock: SharedClock,
    owner: String,
    wake: Notify,
}

fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Recoverer {
    pub fn new(
        store: Arc<dyn RecoveryStore>,
        dispatcher: Arc<Dispatcher>,
        clock: SharedClock,
        owner: String,
        keep: Duration,
    ) -> Arc<Recoverer> {
        Arc::new(Recoverer {
            store,
            keep,
            dispatcher,
            clock,
            owner,
            wake: Notify::new(),
        })
    }

    /// A job was created or cancelled: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut purged = Instant::now();
            loop {
                let _ = tokio::time::timeout(IDLE, me.wake.notified()).await;
                if !me.keep.is_zero() && purged.elapsed() >= PURGE_EVERY {
                    purged = Instant::now();
                    me.purge().await;
                }
                loop {
                    let now = me.clock.now_millis();
                    match me
                        .store
                        .claim_recovery(&me.owner, now, now.saturating_add(ms(LEASE)))
                        .await
                    {
                        Ok(Some(job)) => me.run(job).await,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not claim a recovery");
                            break;
                        }
                    }
                }
            }
        })
    }

    /// Deletes finished jobs older than the retention, in bounded batches.
    async fn purge(&self) {
        let before = self.clock.now_millis().saturating_sub(ms(self.keep));
        for _ in 0..100 {
            match self.store.purge_recoveries(before, 1000).await {
                Ok(0) => return,
                Ok(n) => tracing::debug!(recoveries = n, "finished recoveries purged"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge finished recoveries");
                    return;
                }
            }
        }
    }

    /// Carries a claimed job on until it completes, is cancelled, or is lost to another
    /// instance.
    async fn run(&self, job: Recovery) {
        tracing::info!(recovery_id = %job.id, total = job.total, requeued = job.requeued, "recovery running");
        let mut errors = 0u32;
        loop {
            let now = self.clock.now_millis();
            let step = match self
                .store
                .recovery_step(
                    &job.id,
                    &self.owner,
                    now,
                    now.saturating_add(ms(LEASE)),
                    BATCH,
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    errors += 1;
                    tracing::warn!(recovery_id = %job.id, error = %e, "recovery step failed");
                    if errors >= 5 {
                        // The lease runs out and this or another instance takes it up again.
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            errors = 0;
            if !step.owned {
                return;
            }
            if !step.requeued.is_empty() {
                metrics::counter!("hookwarden_recovered_deliveries_total")
                    .increment(step.requeued.len() as u64);
                self.dispatcher.wake();
            }
            match &step.recovery {
                Some(r) if r.status == RecoveryStatus::Running => {}
                Some(r) => {
                    tracing::info!(recovery_id = %r.id, status = r.status.as_str(), requeued = r.requeued, "recovery finished");
                    return;
                }
                None => return,
            }
            if !self.wait_first_tries(&job.id, &step.requeued, now).await {
                return;
            }
        }
    }

    /// Waits until every delivery of the batch made due at `at` has had its first try. False
    /// when the job was cancelled or lost meanwhile.
    async fn wait_first_tries(&self, id: &str, batch: &[String], at: Millis) -> bool {
        if batch.is_empty() {
            return true;
        }
        let cutoff = at.saturating_add(i64::try_from(batch.len()).unwrap_or(i64::MAX));
        let started = Instant::now();
        let mut renewed = Instant::now();
        loop {
            match self.store.count_waiting(batch, cutoff).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(recovery_id = %id, error = %e, "could not check a recovery batch")
                }
            }
            if started.elapsed() >= MAX_BATCH_WAIT {
                return true;
            }
            tokio::time::sleep(POLL).await;
            if renewed.elapsed() >= LEASE / 3 {
                renewed = Instant::now();
                let now = self.clock.now_millis();
                match self
                    .store
                    .recovery_step(id, &self.owner, now, now.saturating_add(ms(LEASE)), 0)
                    .await
                {
                    Ok(s) if !s.owned => return false,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(recovery_id = %id, error = %e, "could not renew a recovery")
                    }
                }
            }
        }
    }
}
