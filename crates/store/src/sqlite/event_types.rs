//! [`EventTypeStore`] for SQLite.

use super::{SqliteStore, limit_of};
use crate::event_types::*;
use crate::row::{self, EVENT_TYPE_COLS};
use crate::{Listed, Page, Result, StoreError};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl EventTypeStore for SqliteStore {
    async fn create_event_type(&self, t: EventType) -> Result<()> {
        t.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO event_types ({EVENT_TYPE_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))?
                .execute(params![
                    t.name,
                    t.description,
                    t.schema,
                    t.validate,
                    t.deprecated,
                    t.example,
                    t.created_at,
                    t.updated_at
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "the event type {} exists",
                    t.name
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let sql = format!("SELECT {EVENT_TYPE_COLS} FROM event_types WHERE name = ?1");
        self.by_key(sql, name, |r| row::event_type(r)).await
    }

    async fn list_event_types(&self, page: Page) -> Result<Listed<EventType>> {
        self.read(move |c| {
            let limit = limit_of(&page);
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_TYPE_COLS} FROM event_types WHERE (?1 IS NULL OR name > ?1) \
                 ORDER BY name LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![page.before, limit + 1], |r| row::event_type(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Listed::of_one_more(rows, limit))
        })
        .await
    }

    async fn update_event_type(&self, t: EventType) -> Result<bool> {
        t.check_storable()?;
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE event_types SET description = ?2, schema = ?3, validate = ?4, \
                     deprecated = ?5, example = ?6, updated_at = ?7 WHERE name = ?1",
                )?
                .execute(params![
                    t.name,
                    t.description,
                    t.schema,
                    t.validate,
                    t.deprecated,
                    t.example,
                    t.updated_at
                ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            Ok(c.prepare_cached("DELETE FROM event_types WHERE name = ?1")?
                .execute([name])?
                > 0)
        })
        .await
    }

    async fn validated_event_types(&self, limit: usize) -> Result<Vec<EventType>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_TYPE_COLS} FROM event_types \
                 WHERE validate = 1 AND schema IS NOT NULL ORDER BY name LIMIT ?1"
            ))?;
            let rows = stmt
                .query_map([limit], |r| row::event_type(r))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::fresh;

    #[tokio::test]
    async fn event_type_store_conformance() {
        let (s, _dir) = fresh().await;
        crate::conformance::event_type_store(&s).await;
    }
}
