//! [`ApiKeyStore`] for SQLite.

use super::{SqliteStore, limit_of};
use crate::api_keys::*;
use crate::row::{self, API_KEY_COLS};
use crate::{Millis, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey> {
        key.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO api_keys \
                     (id, key_hash, prefix, name, description, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    key.id,
                    &key.key_hash[..],
                    key.prefix,
                    key.name,
                    key.description,
                    key.created_at,
                    key.expires_at
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict("this API key already exists".into()));
            }
            Ok(key.into_stored())
        })
        .await
    }

    async fn find_api_key(&self, key_hash: [u8; 32], now: Millis) -> Result<Option<ApiKey>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {API_KEY_COLS} FROM api_keys WHERE key_hash = ?1 \
                 AND (revoked_at IS NULL OR revoked_at > ?2) \
                 AND (expires_at IS NULL OR expires_at > ?2)"
            ))?
            .query_row(params![&key_hash[..], now], |r| row::api_key(r))
            .optional()?)
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE id = ?1");
        self.by_key(sql, id, |r| row::api_key(r)).await
    }

    async fn list_api_keys(&self, page: Page) -> Result<crate::Listed<ApiKey>> {
        self.read(move |c| {
            let limit = limit_of(&page);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {API_KEY_COLS} FROM api_keys WHERE (?1 IS NULL OR id < ?1) \
                 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![page.before, limit + 1], |r| row::api_key(r))?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(crate::Listed::of_one_more(rows, limit))
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = CASE \
                     WHEN revoked_at IS NULL OR revoked_at > ?2 THEN ?2 ELSE revoked_at END \
                     WHERE id = ?1",
                )?
                .execute(params![id, now])?;
            Ok(n == 1)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, now: Millis) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE api_keys SET last_used_at = ?2 \
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )?
            .execute(params![id, now])?;
            Ok(())
        })
        .await
    }

    async fn count_usable_api_keys(&self, now: Millis) -> Result<u64> {
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM api_keys \
                     WHERE (revoked_at IS NULL OR revoked_at > ?1) \
                     AND (expires_at IS NULL OR expires_at > ?1)",
                )?
                .query_row([now], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}
