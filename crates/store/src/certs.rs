//! Client certificates (mTLS identities presented to endpoints) and the published egress ranges:
//! the security material that receivers pin or allow-list.

use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use serde::Serialize;

/// Where a client certificate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// Usable: may be attached to endpoints.
    Active,
    /// On its way out: still presented by the endpoints that use it and still published (so
    /// receivers keep trusting it during a rotation), but it can no longer be attached.
    Retiring,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "active",
            CertificateStatus::Retiring => "retiring",
        }
    }

    pub fn parse(s: &str) -> Option<CertificateStatus> {
        match s {
            "active" => Some(CertificateStatus::Active),
            "retiring" => Some(CertificateStatus::Retiring),
            _ => None,
        }
    }
}

/// A client certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub id: String,
    pub name: String,
    /// The certificate chain in PEM, leaf first (public).
    pub certificate_pem: String,
    /// The leaf's private key in PEM, as stored: encrypted when a master key is configured.
    /// Never returned by the API.
    pub private_key: String,
    /// The leaf's subject (RFC 4514 string).
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex of the leaf's serial number.
    pub serial: String,
    /// Lowercase hex SHA-256 of the leaf's DER.
    pub sha256: String,
    /// Lowercase hex SHA-1 of the leaf's DER.
    pub sha1: String,
    pub not_before: Millis,
    pub not_after: Millis,
    /// Made by Hookwarden (`generate`) rather than uploaded.
    pub generated: bool,
    pub status: CertificateStatus,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
}

/// What [`CertificateStore::delete_certificate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateDeletion {
    Deleted,
    NotFound,
    /// Endpoints (not deleted) still use the certificate: nothing was deleted.
    InUse {
        endpoints: Vec<String>,
    },
}

/// The published egress ranges and when the list last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedRanges {
    pub ranges: Vec<String>,
    pub updated_at: Millis,
}

/// The result of [`CertificateStore::sync_published_ranges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangesSync {
    /// What is stored now.
    pub current: PublishedRanges,
    /// The list before, when it changed (`None`: unchanged). A database that never had a list
    /// counts as having had an empty one.
    pub previous: Option<Vec<String>>,
}

/// The `meta` entry that holds the published ranges (a JSON array).
pub(crate) const RANGES_KEY: &str = "egress.published_ranges";
/// The `meta` entry that holds when the published ranges last changed (decimal milliseconds).
pub(crate) const RANGES_AT_KEY: &str = "egress.published_ranges_updated_at";

impl PublishedRanges {
    /// The ranges as `meta` holds them: `list` from [`RANGES_KEY`], `at` from [`RANGES_AT_KEY`].
    pub(crate) fn from_meta(list: &str, at: &str) -> Result<PublishedRanges> {
        let ranges: Vec<String> = serde_json::from_str(list)?;
        let updated_at = at
            .parse::<Millis>()
            .map_err(|e| StoreError::Corrupt(format!("{RANGES_AT_KEY}: {e}")))?;
        Ok(PublishedRanges { ranges, updated_at })
    }
}

impl RangesSync {
    /// Syncing `ranges` at `now` over the `stored` list: its result, and the `meta` entries to
    /// write for it (none when `stored` is already `ranges`).
    pub(crate) fn of(
        stored: Option<PublishedRanges>,
        ranges: Vec<String>,
        now: Millis,
    ) -> Result<(RangesSync, Vec<(&'static str, String)>)> {
        let before = stored
            .as_ref()
            .map(|s| s.ranges.clone())
            .unwrap_or_default();
        if let Some(current) = stored.filter(|s| s.ranges == ranges) {
            let sync = RangesSync {
                current,
                previous: None,
            };
            return Ok((sync, Vec::new()));
        }
        // First sync of an empty list: nothing was published and nothing is: record it quietly
        // (the time is when publishing started to be tracked).
        let changed = before != ranges;
        let writes = vec![
            (RANGES_KEY, serde_json::to_string(&ranges)?),
            (RANGES_AT_KEY, now.to_string()),
        ];
        let sync = RangesSync {
            current: PublishedRanges {
                ranges,
                updated_at: now,
            },
            previous: changed.then_some(before),
        };
        Ok((sync, writes))
    }
}

/// Persistence of client certificates and of the published egress ranges.
#[async_trait]
pub trait CertificateStore: Send + Sync + 'static {
    /// Fails with `Conflict` when the id exists.
    async fn create_certificate(&self, cert: ClientCertificate) -> Result<()>;
    async fn get_certificate(&self, id: &str) -> Result<Option<ClientCertificate>>;
    /// Newest first, keyset paginated like the other lists.
    async fn list_certificates(&self, page: Page) -> Result<Listed<ClientCertificate>>;
    /// Sets the status (and `retired_at` when it becomes `Retiring`, cleared when `Active`).
    /// Returns false when the certificate does not exist.
    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateStatus,
        now: Millis,
    ) -> Result<bool>;
    /// Deletes the certificate unless an endpoint that is not deleted uses it (checked in the
    /// same transaction).
    async fn delete_certificate(&self, id: &str) -> Result<CertificateDeletion>;

    /// The stored list, if one was ever stored.
    async fn published_ranges(&self) -> Result<Option<PublishedRanges>>;
    /// Stores `ranges` (already normalised) as the published list. When it differs from the
    /// stored list (compared in one transaction) `updated_at` becomes `now` and the previous list
    /// is returned; when it is the same, nothing changes.
    async fn sync_published_ranges(&self, ranges: Vec<String>, now: Millis) -> Result<RangesSync>;
}
