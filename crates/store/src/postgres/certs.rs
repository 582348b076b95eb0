//! [`CertificateStore`] for PostgreSQL: client certificates, and the published egress ranges in
//! the `meta` table. Same semantics as the SQLite backend (the conformance suite is the contract).

use super::{MAX_TRIES, PgStore, TxError, bounded_page, by_key, limit_of, names_nothing};
use crate::certs::*;
use crate::row::{self, CERTIFICATE_COLS};
use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use std::time::Duration;

/// `pg_advisory_xact_lock` key serialising changes of the published ranges between instances
/// that start together ("hwranges").
const RANGES_LOCK: i64 = 0x6877_7261_6e67_6573;

async fn read_ranges(
    c: &mut PgConnection,
) -> std::result::Result<Option<PublishedRanges>, TxError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM meta WHERE key = $1 OR key = $2")
            .bind(RANGES_KEY)
            .bind(RANGES_AT_KEY)
            .fetch_all(&mut *c)
            .await?;
    let get = |key: &str| rows.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let (Some(list), Some(at)) = (get(RANGES_KEY), get(RANGES_AT_KEY)) else {
        return Ok(None);
    };
    Ok(Some(PublishedRanges::from_meta(&list, &at)?))
}

#[async_trait]
impl CertificateStore for PgStore {
    async fn create_certificate(&self, cert: ClientCertificate) -> Result<()> {
        cert.check_storable()?;
        let n = sqlx::query(&format!(
            "INSERT INTO client_certificates ({CERTIFICATE_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&cert.id)
        .bind(&cert.name)
        .bind(&cert.certificate_pem)
        .bind(&cert.private_key)
        .bind(&cert.subject)
        .bind(&cert.issuer)
        .bind(&cert.serial)
        .bind(&cert.sha256)
        .bind(&cert.sha1)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(cert.generated)
        .bind(cert.status.as_str())
        .bind(cert.created_at)
        .bind(cert.retired_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "client certificate {} already exists",
                cert.id
            )));
        }
        Ok(())
    }

    async fn get_certificate(&self, id: &str) -> Result<Option<ClientCertificate>> {
        let sql = format!("SELECT {CERTIFICATE_COLS} FROM client_certificates WHERE id = $1");
        by_key(&self.pool, &sql, id, row::certificate).await
    }

    async fn list_certificates(&self, page: Page) -> Result<Listed<ClientCertificate>> {
        let limit = limit_of(&page);
        let candidates: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT id, {} FROM client_certificates \
             WHERE ($1::text IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            crate::listing::certificate_size()
        ))
        .bind(page.before.as_deref())
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        bounded_page(
            &self.pool,
            candidates,
            limit as usize,
            page.max_bytes,
            &format!("SELECT {CERTIFICATE_COLS} FROM client_certificates WHERE id = ANY($1) ORDER BY id DESC"),
            row::certificate,
        )
        .await
    }

    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateStatus,
        now: Millis,
    ) -> Result<bool> {
        if names_nothing(id) {
            return Ok(false);
        }
        let q = match status {
            CertificateStatus::Active => sqlx::query(
                "UPDATE client_certificates SET status = 'active', retired_at = NULL \
                 WHERE id = $1",
            )
            .bind(id),
            CertificateStatus::Retiring => sqlx::query(
                "UPDATE client_certificates SET status = 'retiring', \
                 retired_at = COALESCE(retired_at, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(now),
        };
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    async fn delete_certificate(&self, id: &str) -> Result<CertificateDeletion> {
        if names_nothing(id) {
            return Ok(CertificateDeletion::NotFound);
        }
        in_tx!(self.pool, |tx| {
            let exists = sqlx::query("SELECT 1 FROM client_certificates WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                CertificateDeletion::NotFound
            } else {
                let endpoints: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM endpoints WHERE client_certificate_id = $1 \
                     AND deleted_at IS NULL ORDER BY id LIMIT 100",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                if endpoints.is_empty() {
                    sqlx::query("DELETE FROM client_certificates WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    CertificateDeletion::Deleted
                } else {
                    CertificateDeletion::InUse { endpoints }
                }
            }
        })
    }

    async fn published_ranges(&self) -> Result<Option<PublishedRanges>> {
        let mut c = self.pool.acquire().await?;
        read_ranges(&mut c).await.map_err(StoreError::from)
    }

    async fn sync_published_ranges(&self, ranges: Vec<String>, now: Millis) -> Result<RangesSync> {
        let ranges = &ranges;
        in_tx!(self.pool, |tx| {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(RANGES_LOCK)
                .execute(&mut *tx)
                .await?;
            let stored = read_ranges(&mut tx).await?;
            let (sync, writes) = RangesSync::of(stored, ranges.clone(), now)?;
            for (key, value) in writes {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
            sync
        })
    }
}
