//! Recovery: sending again what failed for good (an endpoint's recover, a bulk retry by filter),
//! as a job with a cursor that any instance can carry on, and sending an old event to an
//! endpoint that did not have it.

use crate::{Delivery, Listed, Millis, Page, Result};
use async_trait::async_trait;
use serde::Serialize;

/// Which failed deliveries a recovery sends again: those created in `[since, until)`, of one
/// endpoint or all, of one event type (or a trailing wildcard `invoice.*`) or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryFilter {
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub since: Millis,
    pub until: Millis,
}

impl RecoveryFilter {
    /// Refuses a NUL in the new job's id or in the filter's text.
    pub(crate) fn check_storable(&self, id: &str) -> Result<()> {
        crate::text::storable("recovery id", id)?;
        crate::text::storable_opt("endpoint id", self.endpoint_id.as_deref())?;
        crate::text::storable_opt("event type", self.event_type.as_deref())
    }

    /// The event type as SQL parameters: (exact type, prefix of a trailing wildcard).
    pub(crate) fn type_params(&self) -> (Option<String>, Option<String>) {
        match self.event_type.as_deref() {
            None | Some("*") => (None, None),
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix.to_owned())),
                None => (Some(t.to_owned()), None),
            },
        }
    }

    fn overlaps(&self, other: &RecoveryFilter) -> bool {
        let same_endpoints = match (&self.endpoint_id, &other.endpoint_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_endpoints && self.since < other.until && other.since < self.until
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStatus {
    Running,
    Completed,
    Cancelled,
}

impl RecoveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStatus::Running => "running",
            RecoveryStatus::Completed => "completed",
            RecoveryStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<RecoveryStatus> {
        Some(match s {
            "running" => RecoveryStatus::Running,
            "completed" => RecoveryStatus::Completed,
            "cancelled" => RecoveryStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A recovery job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// `rcv_…` (a ULID: ids sort by creation).
    pub id: String,
    pub filter: RecoveryFilter,
    pub status: RecoveryStatus,
    /// Failed deliveries in the window when it started.
    pub total: i64,
    /// Deliveries sent again so far.
    pub requeued: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
}

/// What one [`RecoveryStore::recovery_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryStep {
    /// The job after the step (`None`: it is gone).
    pub recovery: Option<Recovery>,
    /// The deliveries this step made due again, in sending order.
    pub requeued: Vec<String>,
    /// False when the job's lease is not `owner`'s any more (nothing was done).
    pub owned: bool,
}

/// What [`RecoveryStore::add_delivery`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddDelivery {
    /// A new delivery, due now (paused when the endpoint is disabled).
    Created(Delivery),
    /// The event already has a delivery to this endpoint (retry that one instead).
    Exists(Delivery),
    NoEvent,
    NoEndpoint,
}

/// Persistence of recoveries.
#[async_trait]
pub trait RecoveryStore: Send + Sync + 'static {
    /// Records a running recovery with `total` counted, unless a running one overlaps it (same
    /// endpoint, or either for every endpoint, and overlapping windows): `Conflict` naming it.
    /// Instances decide one at a time.
    async fn create_recovery(
        &self,
        id: &str,
        filter: RecoveryFilter,
        now: Millis,
    ) -> Result<Recovery>;
    async fn get_recovery(&self, id: &str) -> Result<Option<Recovery>>;
    /// Newest first.
    async fn list_recoveries(&self, page: Page) -> Result<Listed<Recovery>>;
    /// Cancels a running recovery (what it already sent again stays due). `None`: no such job.
    async fn cancel_recovery(&self, id: &str, now: Millis) -> Result<Option<Recovery>>;
    /// Leases to `owner` the oldest running recovery nobody holds (or whose lease ended).
    async fn claim_recovery(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Recovery>>;
    /// Under `owner`'s lease (renewed to `lease_until`): makes the next `batch` failed
    /// deliveries after the job's cursor due again, ordered by creation time then id, due one
    /// millisecond apart from `now` in that order (paused when their endpoint is disabled;
    /// deliveries of deleted endpoints are skipped); moves the cursor past them in the same
    /// transaction (a delivery is sent again once per job, whoever carries it on); completes
    /// the job when fewer than `batch` were left. `batch` 0 only renews the lease.
    async fn recovery_step(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        batch: usize,
    ) -> Result<RecoveryStep>;
    /// How many of `ids` are still waiting for the outcome of their first try since being made
    /// due at or before `cutoff`: pending and either due by then or held by a dispatcher (in
    /// flight). One retried later, deferred by its rate limit, paused or finished is not.
    async fn count_waiting(&self, ids: &[String], cutoff: Millis) -> Result<u64>;
    /// Deletes up to `batch` recoveries that finished (completed or cancelled) before
    /// `finished_before`; returns how many went. Running ones are never deleted.
    async fn purge_recoveries(&self, finished_before: Millis, batch: usize) -> Result<u64>;
    /// A delivery of event `event_id` to endpoint `endpoint_id` (which need not be subscribed,
    /// nor have existed when the event was published), due now.
    async fn add_delivery(
        &self,
        delivery_id: &str,
        event_id: &str,
        endpoint_id: &str,
        now: Millis,
    ) -> Result<AddDelivery>;
}

/// Whether a new recovery may start beside the running ones: the first running one it overlaps.
pub(crate) fn overlapping<'a>(
    running: &'a [Recovery],
    filter: &RecoveryFilter,
) -> Option<&'a Recovery> {
    running.iter().find(|r| r.filter.overlaps(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ep: Option<&str>, since: Millis, until: Millis) -> RecoveryFilter {
        RecoveryFilter {
            endpoint_id: ep.map(str::to_owned),
            event_type: None,
            since,
            until,
        }
    }

    #[test]
    fn overlap_needs_the_same_endpoints_and_a_common_instant() {
        assert!(f(Some("a"), 0, 10).overlaps(&f(Some("a"), 9, 20)));
        assert!(!f(Some("a"), 0, 10).overlaps(&f(Some("a"), 10, 20)));
        assert!(!f(Some("a"), 0, 10).overlaps(&f(Some("b"), 0, 10)));
        assert!(f(None, 0, 10).overlaps(&f(Some("b"), 5, 6)));
        assert!(f(Some("b"), 5, 6).overlaps(&f(None, 0, 10)));
    }

    #[test]
    fn type_params() {
        let mut x = f(None, 0, 1);
        assert_eq!(x.type_params(), (None, None));
        x.event_type = Some("*".into());
        assert_eq!(x.type_params(), (None, None));
        x.event_type = Some("invoice.*".into());
        assert_eq!(x.type_params(), (None, Some("invoice.".into())));
        x.event_type = Some("invoice.paid".into());
        assert_eq!(x.type_params(), (Some("invoice.paid".into()), None));
    }
}
