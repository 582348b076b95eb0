//! [`SealedStore`] for SQLite.

use super::SqliteStore;
use crate::Result;
use crate::sealed::*;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl SealedStore for SqliteStore {
    async fn sealed_rows(
        &self,
        column: SealedColumn,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<SealedRow>> {
        let (table, key, value, int_key) = column.sql();
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(1000);
        self.read(move |c| {
            let after_cond = match (&after, int_key) {
                (None, _) => String::new(),
                (Some(_), true) => format!("AND {key} > CAST(?2 AS INTEGER)"),
                (Some(_), false) => format!("AND {key} > ?2"),
            };
            let sql = format!(
                "SELECT CAST({key} AS TEXT), {value} FROM {table} \
                 WHERE {value} IS NOT NULL {after_cond} ORDER BY {key} LIMIT ?1"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let map = |r: &rusqlite::Row<'_>| {
                Ok(SealedRow {
                    key: r.get(0)?,
                    value: r.get(1)?,
                })
            };
            let rows = match &after {
                None => stmt.query_map(params![limit], map)?,
                Some(a) => stmt.query_map(params![limit, a], map)?,
            };
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn replace_sealed(
        &self,
        column: SealedColumn,
        key_value: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let (table, key, value, int_key) = column.sql();
        let (k, old, new) = (key_value.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |c| {
            let key_expr = if int_key { "CAST(?1 AS INTEGER)" } else { "?1" };
            let n = c
                .prepare_cached(&format!(
                    "UPDATE {table} SET {value} = ?3 WHERE {key} = {key_expr} AND {value} = ?2"
                ))?
                .execute(params![k, old, new])?;
            Ok(n == 1)
        })
        .await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))?)
        })
        .await
    }

    async fn compact_sealed(&self) -> Result<()> {
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let c = rusqlite::Connection::open(&path)?;
            c.busy_timeout(std::time::Duration::from_secs(30))?;
            c.execute_batch("PRAGMA secure_delete = ON; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(())
        })
        .await
        .map_err(|e| crate::StoreError::database(format!("compaction task failed: {e}"), false))?
    }

    async fn meta_replace(&self, key: &str, old: &str, new: &str) -> Result<bool> {
        let (key, old, new) = (key.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |c| {
            let n = c
                .prepare_cached("UPDATE meta SET value = ?3 WHERE key = ?1 AND value = ?2")?
                .execute(params![key, old, new])?;
            Ok(n == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn sealed_store_conformance() {
        let (s, _dir) = crate::sqlite::tests::fresh().await;
        crate::conformance::sealed_store(&s).await;
    }
}
