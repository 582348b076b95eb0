//! The event-type catalogue: one for the deployment, with an optional JSON Schema per type.

use crate::{Listed, Millis, Page, Result};
use async_trait::async_trait;

/// A catalogued event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType {
    /// The type, as events carry it (`invoice.paid`).
    pub name: String,
    pub description: String,
    /// A JSON Schema (JSON text) for the payload.
    pub schema: Option<String>,
    /// Refuse published payloads that do not match `schema`.
    pub validate: bool,
    pub deprecated: bool,
    /// An example payload (JSON text), shown with the type.
    pub example: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl EventType {
    pub(crate) fn check_storable(&self) -> Result<()> {
        crate::text::storable("event type name", &self.name)?;
        crate::text::storable("event type description", &self.description)?;
        crate::text::storable("event type schema", self.schema.as_deref().unwrap_or(""))?;
        crate::text::storable("event type example", self.example.as_deref().unwrap_or(""))
    }
}

/// Persistence of the event-type catalogue.
#[async_trait]
pub trait EventTypeStore: Send + Sync + 'static {
    /// `Conflict` when the name exists.
    async fn create_event_type(&self, t: EventType) -> Result<()>;
    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>>;
    /// By name; `page.before` is the last name of the previous page (names after it come).
    async fn list_event_types(&self, page: Page) -> Result<Listed<EventType>>;
    /// Replaces every field but `name` and `created_at`. False when unknown.
    async fn update_event_type(&self, t: EventType) -> Result<bool>;
    async fn delete_event_type(&self, name: &str) -> Result<bool>;
    /// The types whose payloads are validated, at most `limit` (for the validators' cache).
    async fn validated_event_types(&self, limit: usize) -> Result<Vec<EventType>>;
}
