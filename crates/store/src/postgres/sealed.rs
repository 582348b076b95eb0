//! [`SealedStore`] for PostgreSQL. Same semantics as the SQLite backend.

use super::PgStore;
use crate::Result;
use crate::sealed::*;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl SealedStore for PgStore {
    async fn sealed_rows(
        &self,
        column: SealedColumn,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<SealedRow>> {
        let (table, key, value, int_key) = column.sql();
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(1000);
        let after_cond = match (&after, int_key) {
            (None, _) => String::new(),
            (Some(_), true) => format!("AND {key} > $2::bigint"),
            (Some(_), false) => format!("AND {key} > $2"),
        };
        let sql = format!(
            "SELECT {key}::text, {value} FROM {table} \
             WHERE {value} IS NOT NULL {after_cond} ORDER BY {key} LIMIT $1"
        );
        let mut q = sqlx::query(&sql).bind(limit);
        if let Some(a) = &after {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(SealedRow {
                    key: r.try_get(0)?,
                    value: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn replace_sealed(
        &self,
        column: SealedColumn,
        key_value: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let (table, key, value, int_key) = column.sql();
        let key_expr = if int_key { "$1::bigint" } else { "$1" };
        let r = sqlx::query(&format!(
            "UPDATE {table} SET {value} = $3 WHERE {key} = {key_expr} AND {value} = $2"
        ))
        .bind(key_value)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn compact_sealed(&self) -> Result<()> {
        let mut tables: Vec<&str> = SealedColumn::ALL.iter().map(|c| c.sql().0).collect();
        tables.sort_unstable();
        tables.dedup();
        sqlx::query(&format!("VACUUM FULL {}", tables.join(", ")))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn meta_replace(&self, key: &str, old: &str, new: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE meta SET value = $3 WHERE key = $1 AND value = $2")
            .bind(key)
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
