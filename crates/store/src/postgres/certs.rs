//! [`CertificateStore`] for PostgreSQL: client certificates, and the published egress ranges in
//! the `meta` table. Same semantics as the SQLite backend (the conformance suite is the contract).

use super::{MAX_TRIES, PgStore, TxError, bounded_page, limit_of, names_nothing};
use crate::certs::*;
use crate::{Listed, Millis, Page, Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::time::Duration;

const COLS: &str = "id, name, certificate_pem, private_key, subject, issuer, serial, sha256, sha1, \
    not_before, not_after, generated, status, created_at, retired_at";

const RANGES_KEY: &str = "egress.published_ranges";
const RANGES_AT_KEY: &str = "egress.published_ranges_updated_at";

/// `pg_advisory_xact_lock` key serialising changes of the published ranges between instances
/// that start together ("hwranges").
const RANGES_LOCK: i64 = 0x6877_7261_6e67_6573;

fn cert_from_row(r: &PgRow) -> Result<ClientCertificate> {
    let status: String = r.try_get(12)?;
    let status = CertificateStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown certificate status {status:?}")))?;
    Ok(ClientCertificate {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        certificate_pem: r.try_get(2)?,
        private_key: r.try_get(3)?,
        subject: r.try_get(4)?,
        issuer: r.try_get(5)?,
        serial: r.try_get(6)?,
        sha256: r.try_get(7)?,
        sha1: r.try_get(8)?,
        not_before: r.try_get(9)?,
        not_after: r.try_get(10)?,
        generated: r.try_get(11)?,
        status,
        created_at: r.try_get(13)?,
        retired_at: r.try_get(14)?,
    })
}

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
    let ranges: Vec<String> = serde_json::from_str(&list)?;
    let updated_at = at
        .parse::<Millis>()
        .map_err(|e| StoreError::Corrupt(format!("{RANGES_AT_KEY}: {e}")))?;
    Ok(Some(PublishedRanges { ranges, updated_at }))
}

#[async_trait]
impl CertificateStore for PgStore {
    async fn create_certificate(&self, cert: ClientCertificate) -> Result<()> {
        cert.check_storable()?;
        let n = sqlx::query(&format!(
            "INSERT INTO client_certificates ({COLS}) \
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
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!(
            "SELECT {COLS} FROM client_certificates WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(cert_from_row)
        .transpose()
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
            &format!("SELECT {COLS} FROM client_certificates WHERE id = ANY($1) ORDER BY id DESC"),
            cert_from_row,
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
            let before = stored
                .as_ref()
                .map(|s| s.ranges.clone())
                .unwrap_or_default();
            match stored.filter(|s| &s.ranges == ranges) {
                Some(current) => RangesSync {
                    current,
                    previous: None,
                },
                None => {
                    // First sync of an empty list: nothing was published and nothing is: record
                    // it quietly (the time is when publishing started to be tracked).
                    let changed = &before != ranges;
                    for (key, value) in [
                        (RANGES_KEY, serde_json::to_string(ranges)?),
                        (RANGES_AT_KEY, now.to_string()),
                    ] {
                        sqlx::query(
                            "INSERT INTO meta (key, value) VALUES ($1, $2) \
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(key)
                        .bind(value)
                        .execute(&mut *tx)
                        .await?;
                    }
                    RangesSync {
                        current: PublishedRanges {
                            ranges: ranges.clone(),
                            updated_at: now,
                        },
                        previous: changed.then_some(before),
                    }
                }
            }
        })
    }
}
