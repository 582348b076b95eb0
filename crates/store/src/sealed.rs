//! The columns that hold sealed secrets, read and rewritten in bulk: the server seals values
//! stored in clear by earlier releases, and re-seals everything with a new master key
//! (`hookwarden secrets rotate`). The store never sees a key: it hands out stored values and
//! swaps one for another only if it is still what was handed out (compare and swap), so a
//! pass running beside live instances never overwrites a newer value.

use crate::Result;
use async_trait::async_trait;

/// A column whose values are sealed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    /// `endpoint_secrets.secret`: signing secrets (a row per secret).
    EndpointSecrets,
    /// `endpoints.developer_payload` (rows without one are skipped).
    DeveloperPayloads,
    /// `endpoints.headers`: a JSON object whose values are sealed one by one (names stay
    /// readable).
    EndpointHeaders,
    /// `sources.secrets`: a JSON array of sealed verification secrets.
    SourceSecrets,
    /// `client_certificates.private_key`.
    CertificateKeys,
}

impl SealedColumn {
    /// Every sealed column.
    pub const ALL: [SealedColumn; 5] = [
        SealedColumn::EndpointSecrets,
        SealedColumn::DeveloperPayloads,
        SealedColumn::EndpointHeaders,
        SealedColumn::SourceSecrets,
        SealedColumn::CertificateKeys,
    ];

    /// `table.column`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            SealedColumn::EndpointSecrets => "endpoint_secrets.secret",
            SealedColumn::DeveloperPayloads => "endpoints.developer_payload",
            SealedColumn::EndpointHeaders => "endpoints.headers",
            SealedColumn::SourceSecrets => "sources.secrets",
            SealedColumn::CertificateKeys => "client_certificates.private_key",
        }
    }

    /// How the stored text holds its secrets.
    pub fn shape(self) -> SealedShape {
        match self {
            SealedColumn::EndpointHeaders => SealedShape::JsonObjectValues,
            SealedColumn::SourceSecrets => SealedShape::JsonArray,
            _ => SealedShape::Value,
        }
    }

    /// `(table, key column, value column, key is an integer)`.
    pub(crate) fn sql(self) -> (&'static str, &'static str, &'static str, bool) {
        match self {
            SealedColumn::EndpointSecrets => ("endpoint_secrets", "id", "secret", true),
            SealedColumn::DeveloperPayloads => ("endpoints", "id", "developer_payload", false),
            SealedColumn::EndpointHeaders => ("endpoints", "id", "headers", false),
            SealedColumn::SourceSecrets => ("sources", "id", "secrets", false),
            SealedColumn::CertificateKeys => ("client_certificates", "id", "private_key", false),
        }
    }
}

/// How a column's text holds sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedShape {
    /// The text is one sealed value.
    Value,
    /// A JSON array of sealed values.
    JsonArray,
    /// A JSON object whose values are sealed.
    JsonObjectValues,
}

/// One row of a sealed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The row's key (an integer key as its decimal text).
    pub key: String,
    /// The stored text.
    pub value: String,
}

/// Bulk access to the sealed columns, and the `meta` entries that go with them.
#[async_trait]
pub trait SealedStore: Send + Sync + 'static {
    /// Up to `limit` rows of `column` (non-null values), in key order, after `after`.
    async fn sealed_rows(
        &self,
        column: SealedColumn,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<SealedRow>>;
    /// Stores `new` in place of `old` if the row still holds `old`; false otherwise (changed or
    /// gone since it was read).
    async fn replace_sealed(
        &self,
        column: SealedColumn,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<bool>;
    /// A `meta` entry.
    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    /// Stores a `meta` entry unless one exists; returns the entry that is stored now (the
    /// caller's, or the one another instance wrote first).
    async fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String>;
    /// Replaces a `meta` entry if it still holds `old`; false otherwise.
    async fn meta_replace(&self, key: &str, old: &str, new: &str) -> Result<bool>;
    /// Rewrites the storage of the sealed columns so that values they held before (secrets
    /// an earlier release stored in clear, or sealed with a retired key) are not left in freed
    /// pages: SQLite `VACUUM` and a truncating WAL checkpoint (the whole database, so run it
    /// when nothing else writes: at start, or with `serve` stopped); PostgreSQL `VACUUM FULL` of
    /// the four small tables that hold secrets.
    async fn compact_sealed(&self) -> Result<()>;
}
