//! [`CertificateStore`] for SQLite: client certificates, and the published egress ranges in
//! the `meta` table.

use super::{SqliteStore, bounded_page, limit_of, sized};
use crate::certs::*;
use crate::row::{self, CERTIFICATE_COLS};
use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

fn read_ranges(c: &rusqlite::Connection) -> Result<Option<PublishedRanges>> {
    let get = |key: &str| -> Result<Option<String>> {
        Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get::<_, String>(0))
            .optional()?)
    };
    let (Some(list), Some(at)) = (get(RANGES_KEY)?, get(RANGES_AT_KEY)?) else {
        return Ok(None);
    };
    PublishedRanges::from_meta(&list, &at).map(Some)
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn create_certificate(&self, cert: ClientCertificate) -> Result<()> {
        cert.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO client_certificates ({CERTIFICATE_COLS}) \
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
        let sql = format!("SELECT {CERTIFICATE_COLS} FROM client_certificates WHERE id = ?1");
        self.by_key(sql, id, |r| row::certificate(r)).await
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
                "SELECT {CERTIFICATE_COLS} FROM client_certificates WHERE id = ?1"
            ))?;
            bounded_page(candidates, limit as usize, page.max_bytes, |id| {
                Ok(one.query_row([id], |r| row::certificate(r)).optional()?)
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
            let (sync, writes) = RangesSync::of(read_ranges(c)?, ranges, now)?;
            let mut put = c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in writes {
                put.execute(params![key, value])?;
            }
            Ok(sync)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::fresh;

    #[tokio::test]
    async fn certificate_store_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::certificate_store(&s).await;
    }

    #[tokio::test]
    async fn certificate_pages_bounded_in_bytes_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::certificate_pages_bounded_in_bytes(&s).await;
    }
}
