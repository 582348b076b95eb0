//! Receiver security probes: the stored reports, and the retired signing secrets a probe signs
//! with to see whether a receiver still accepts them after a rotation's grace has ended.

use crate::{Listed, Millis, Page, Result, SecretRecord};
use async_trait::async_trait;

/// One probe of an endpoint's receiver, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// `prb_…` (a ULID: ids sort by creation).
    pub id: String,
    pub endpoint_id: String,
    pub created_at: Millis,
    /// What started it: `manual`, `endpoint_created`, `url_changed`, `secret_rotated`,
    /// `scheduled`.
    pub trigger: String,
    /// The overall grade (`A`, `B`, `C`, `F`, `inconclusive`).
    pub grade: String,
    /// The report as JSON text (bounded by the prober: a fixed number of cases, each with a
    /// bounded response excerpt).
    pub report: String,
}

impl ProbeRecord {
    pub(crate) fn check_storable(&self) -> Result<()> {
        crate::text::storable("probe id", &self.id)?;
        crate::text::storable("endpoint id", &self.endpoint_id)?;
        crate::text::storable("probe trigger", &self.trigger)?;
        crate::text::storable("probe grade", &self.grade)?;
        crate::text::storable("probe report", &self.report)
    }
}

/// The grade of a probe claimed and not finished (a row that is not listed).
pub const RUNNING: &str = "running";

/// What [`ProbeStore::claim_probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The probe is recorded as running: send it, then [`ProbeStore::finish_probe`].
    Claimed,
    /// The endpoint's newest probe (running or finished) started at this time, less than the
    /// minimum interval ago.
    TooSoon { last_at: Millis },
}

/// Persistence of probe reports and access to retired secrets.
#[async_trait]
pub trait ProbeStore: Send + Sync + 'static {
    /// Records a probe as running before anything is sent, unless the endpoint's newest probe
    /// (by any instance, finished or not) started less than `min_interval_ms` before
    /// `probe.created_at`; keeps only the newest `keep` rows of the endpoint. One decision per
    /// endpoint at a time (the endpoint row is locked), so instances cannot both claim.
    /// `NotFound` when the endpoint does not exist (or was deleted). `probe.grade` and
    /// `probe.report` are ignored.
    async fn claim_probe(
        &self,
        probe: ProbeRecord,
        min_interval_ms: i64,
        keep: usize,
    ) -> Result<Claim>;
    /// Stores the report of a claimed probe (nothing when its row is gone: the endpoint was
    /// deleted, or the row pruned).
    async fn finish_probe(&self, id: &str, grade: &str, report: String) -> Result<()>;
    /// An endpoint's finished reports, newest first (keyset by id; rows are bounded, only
    /// `page.limit` bounds a page).
    async fn list_probes(&self, endpoint_id: &str, page: Page) -> Result<Listed<ProbeRecord>>;
    /// The most recently retired secret of `kind` of the endpoint: the one whose grace ended
    /// last, at or before `now` and after `retired_after`. Never an active secret.
    async fn retired_secret(
        &self,
        endpoint_id: &str,
        kind: crate::SecretKind,
        now: Millis,
        retired_after: Millis,
    ) -> Result<Option<SecretRecord>>;
    /// Deletes up to `batch` secrets whose grace ended before `retired_before` (kept until then
    /// for probes only); returns how many went.
    async fn purge_retired_secrets(&self, retired_before: Millis, batch: usize) -> Result<u64>;
    /// Up to `limit` enabled endpoints without a probe since `since`, by id (for scheduled
    /// probes).
    async fn endpoints_due_for_probe(&self, since: Millis, limit: usize) -> Result<Vec<String>>;
}
