//! [`EventTypeStore`] for PostgreSQL. Same semantics as the SQLite backend (the conformance
//! suite is the contract).

use super::{PgStore, by_key, limit_of, names_nothing};
use crate::event_types::*;
use crate::row::{self, EVENT_TYPE_COLS};
use crate::{Listed, Page, Result, StoreError};
use async_trait::async_trait;

#[async_trait]
impl EventTypeStore for PgStore {
    async fn create_event_type(&self, t: EventType) -> Result<()> {
        t.check_storable()?;
        let n = sqlx::query(&format!(
            "INSERT INTO event_types ({EVENT_TYPE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.schema)
        .bind(t.validate)
        .bind(t.deprecated)
        .bind(&t.example)
        .bind(t.created_at)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "the event type {} exists",
                t.name
            )));
        }
        Ok(())
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let sql = format!("SELECT {EVENT_TYPE_COLS} FROM event_types WHERE name = $1");
        by_key(&self.pool, &sql, name, row::event_type).await
    }

    async fn list_event_types(&self, page: Page) -> Result<Listed<EventType>> {
        let limit = limit_of(&page);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_TYPE_COLS} FROM event_types WHERE ($1::text IS NULL OR name > $1) \
             ORDER BY name LIMIT $2"
        ))
        .bind(page.before.as_deref().filter(|b| !names_nothing(b)))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(row::event_type)
            .collect::<Result<Vec<_>>>()?;
        Ok(Listed::of_one_more(rows, limit))
    }

    async fn update_event_type(&self, t: EventType) -> Result<bool> {
        t.check_storable()?;
        if names_nothing(&t.name) {
            return Ok(false);
        }
        Ok(sqlx::query(
            "UPDATE event_types SET description = $2, schema = $3, validate = $4, \
             deprecated = $5, example = $6, updated_at = $7 WHERE name = $1",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.schema)
        .bind(t.validate)
        .bind(t.deprecated)
        .bind(&t.example)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        if names_nothing(name) {
            return Ok(false);
        }
        Ok(sqlx::query("DELETE FROM event_types WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn validated_event_types(&self, limit: usize) -> Result<Vec<EventType>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_TYPE_COLS} FROM event_types \
             WHERE validate AND schema IS NOT NULL ORDER BY name LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row::event_type).collect()
    }
}
