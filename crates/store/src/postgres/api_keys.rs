//! [`ApiKeyStore`] for PostgreSQL. Same semantics as the SQLite backend (the conformance suite
//! is the contract).

use super::{PgStore, by_key, limit_of};
use crate::api_keys::*;
use crate::row::{self, API_KEY_COLS};
use crate::{Millis, Page, Result};
use async_trait::async_trait;

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey> {
        key.check_storable()?;
        sqlx::query(
            "INSERT INTO api_keys (id, key_hash, prefix, name, description, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.key_hash[..])
        .bind(&key.prefix)
        .bind(&key.name)
        .bind(&key.description)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(key.into_stored())
    }

    async fn find_api_key(&self, key_hash: [u8; 32], now: Millis) -> Result<Option<ApiKey>> {
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLS} FROM api_keys WHERE key_hash = $1 \
             AND (revoked_at IS NULL OR revoked_at > $2) \
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(&key_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row::api_key).transpose()
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE id = $1");
        by_key(&self.pool, &sql, id, row::api_key).await
    }

    async fn list_api_keys(&self, page: Page) -> Result<crate::Listed<ApiKey>> {
        let limit = limit_of(&page);
        let rows = sqlx::query(&format!(
            "SELECT {API_KEY_COLS} FROM api_keys WHERE ($1::text IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(page.before.as_deref())
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.iter().map(row::api_key).collect::<Result<Vec<_>>>()?;
        Ok(crate::Listed::of_one_more(rows, limit))
    }

    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = CASE \
             WHEN revoked_at IS NULL OR revoked_at > $2 THEN $2 ELSE revoked_at END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn count_usable_api_keys(&self, now: Millis) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_keys \
             WHERE (revoked_at IS NULL OR revoked_at > $1) \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
