//! [`CertificateStore`] for SQLite: client certificates, and the published egress ranges in
//! the `meta` table.

use super::{SqliteStore, bounded_page, limit_of, sized};
use crate::certs::*;
use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

const COLS: &str = "id, name, certificate_pem, private_key, subject, issuer, serial, sha256, sha1, \
    not_before, not_after, generated, status, created_at, retired_at";

fn cert_from_row(r: &Row<'_>) -> rusqlite::Result<ClientCertificate> {
    let status: String = r.get(12)?;
    let status = CertificateStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            12,
            rusqlite::types::Type::Text,
            format!("unknown certificate status {status:?}").into(),
        )
    })?;
    Ok(ClientCertificate {
        id: r.get(0)?,
        name: r.get(1)?,
        certificate_pem: r.get(2)?,
        private_key: r.get(3)?,
        subject: r.get(4)?,
        issuer: r.get(5)?,
        serial: r.get(6)?,
        sha256: r.get(7)?,
        sha1: r.get(8)?,
        not_before: r.get(9)?,
        not_after: r.get(10)?,
        generated: r.get::<_, i64>(11)? != 0,
        status,
        created_at: r.get(13)?,
        retired_at: r.get(14)?,
    })
}

const RANGES_KEY: &str = "egress.published_ranges";
const RANGES_AT_KEY: &str = "egress.published_ranges_updated_at";

fn read_ranges(c: &rusqlite::Connection) -> Result<Option<PublishedRanges>> {
    let get = |key: &str| -> Result<Option<String>> {
        Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get::<_, String>(0))
            .optional()?)
    };
    let (Some(list), Some(at)) = (get(RANGES_KEY)?, get(RANGES_AT_KEY)?) else {
        return Ok(None);
    };
    let ranges: Vec<String> = serde_json::from_str(&list)?;
    let updated_at = at
        .parse::<Millis>()
        .map_err(|e| StoreError::Corrupt(format!("{RANGES_AT_KEY}: {e}")))?;
    Ok(Some(PublishedRanges { ranges, updated_at }))
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn create_certificate(&self, cert: ClientCertificate) -> Result<()> {
        cert.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO client_certificates ({COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ))?
                .execute(params![
                    cert.id,
                    cert.name,
                    cert.certificate_pem,
                    cert.private_key,
                    cert.subject,
                    cert.issuer,
                    cert.serial,
                    cert.sha256,
                    cert.sha1,
                    cert.not_before,
                    cert.not_after,
                    i64::from(cert.generated),
                    cert.status.as_str(),
                    cert.created_at,
                    cert.retired_at,
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "client certificate {} already exists",
                    cert.id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_certificate(&self, id: &str) -> Result<Option<ClientCertificate>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {COLS} FROM client_certificates WHERE id = ?1"
            ))?
            .query_row([id], cert_from_row)
            .optional()?)
        })
        .await
    }

    async fn list_certificates(&self, page: Page) -> Result<Listed<ClientCertificate>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let limit = limit_of(&page);
            let candidates: Vec<(String, i64)> = sized(
                &mut tx.prepare_cached(&format!(
                    "SELECT id, {} FROM client_certificates WHERE (?1 IS NULL OR id < ?1) \
                     ORDER BY id DESC LIMIT ?2",
                    crate::listing::certificate_size()
                ))?,
                params![page.before, limit + 1],
            )?;
            let mut one = tx.prepare_cached(&format!(
                "SELECT {COLS} FROM client_certificates WHERE id = ?1"
            ))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], cert_from_row).optional()?)
            })
        })
        .await
    }

    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateStatus,
        now: Millis,
    ) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = match status {
                CertificateStatus::Active => c
                    .prepare_cached(
                        "UPDATE client_certificates SET status = 'active', retired_at = NULL \
                         WHERE id = ?1",
                    )?
                    .execute([&id])?,
                CertificateStatus::Retiring => c
                    .prepare_cached(
                        "UPDATE client_certificates SET status = 'retiring', \
                         retired_at = COALESCE(retired_at, ?2) WHERE id = ?1",
                    )?
                    .execute(params![id, now])?,
            };
            Ok(n > 0)
        })
        .await
    }

    async fn delete_certificate(&self, id: &str) -> Result<CertificateDeletion> {
        let id = id.to_owned();
        self.write(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM client_certificates WHERE id = ?1")?
                .query_row([&id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(CertificateDeletion::NotFound);
            }
            let endpoints = c
                .prepare_cached(
                    "SELECT id FROM endpoints WHERE client_certificate_id = ?1 \
                     AND deleted_at IS NULL ORDER BY id LIMIT 100",
                )?
                .query_map([&id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if !endpoints.is_empty() {
                return Ok(CertificateDeletion::InUse { endpoints });
            }
            c.prepare_cached("DELETE FROM client_certificates WHERE id = ?1")?
                .execute([&id])?;
            Ok(CertificateDeletion::Deleted)
        })
        .await
    }

    async fn published_ranges(&self) -> Result<Option<PublishedRanges>> {
        self.read(read_ranges).await
    }

    async fn sync_published_ranges(&self, ranges: Vec<String>, now: Millis) -> Result<RangesSync> {
        self.write(move |c| {
            let stored = read_ranges(c)?;
            let before = stored
                .as_ref()
                .map(|s| s.ranges.clone())
                .unwrap_or_default();
            if let Some(current) = stored.filter(|s| s.ranges == ranges) {
                return Ok(RangesSync {
                    current,
                    previous: None,
                });
            }
            // First sync of an empty list: nothing was published and nothing is: record it
            // quietly (the time is when publishing started to be tracked).
            let changed = before != ranges;
            let mut put = c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            put.execute(params![RANGES_KEY, serde_json::to_string(&ranges)?])?;
            put.execute(params![RANGES_AT_KEY, now.to_string()])?;
            Ok(RangesSync {
                current: PublishedRanges {
                    ranges,
                    updated_at: now,
                },
                previous: changed.then_some(before),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::{SqliteOptions, SqliteStore};

    #[tokio::test]
    async fn certificate_store_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        crate::conformance::certificate_store(&s).await;
    }

    #[tokio::test]
    async fn certificate_pages_bounded_in_bytes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        crate::conformance::certificate_pages_bounded_in_bytes(&s).await;
    }
}
