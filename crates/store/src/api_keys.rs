//! Admin API keys: only the SHA-256 of a key is stored, with a display prefix, a name, when it
//! was made, last used, when it expires and when it was revoked.

use crate::{Millis, Page, Result};
use async_trait::async_trait;
use serde::Serialize;

/// An admin API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    /// What the key is called (unique names are not enforced: it is a label).
    pub name: String,
    /// The first characters of the key, for display (`hwk_abcd`).
    pub prefix: String,
    pub description: String,
    pub created_at: Millis,
    /// The key stops working at this time.
    pub expires_at: Option<Millis>,
    /// The last time a request used the key (recorded at most about once a minute).
    pub last_used_at: Option<Millis>,
    /// The key stopped working at this time.
    pub revoked_at: Option<Millis>,
}

impl ApiKey {
    /// Whether the key opens the API at `now`.
    pub fn usable_at(&self, now: Millis) -> bool {
        self.revoked_at.is_none_or(|r| r > now) && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub name: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

impl NewApiKey {
    /// The key as it is once stored: never used, not revoked.
    pub(crate) fn into_stored(self) -> ApiKey {
        ApiKey {
            id: self.id,
            name: self.name,
            prefix: self.prefix,
            description: self.description,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: None,
            revoked_at: None,
        }
    }
}

/// Persistence of admin API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new key. `Conflict` when the id or the hash exists.
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey>;
    /// The key with this hash when it is usable at `now` (neither revoked nor expired).
    async fn find_api_key(&self, key_hash: [u8; 32], now: Millis) -> Result<Option<ApiKey>>;
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// Newest first, keyset paginated like the other lists (revoked and expired keys too). Rows
    /// are small: only `page.limit` bounds a page.
    async fn list_api_keys(&self, page: Page) -> Result<crate::Listed<ApiKey>>;
    /// Revokes the key at `now` (a key revoked before keeps its time). False when unknown.
    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<bool>;
    /// Records a use at `now` (the recorded time only moves forward).
    async fn touch_api_key(&self, id: &str, now: Millis) -> Result<()>;
    /// Keys usable at `now`.
    async fn count_usable_api_keys(&self, now: Millis) -> Result<u64>;
}
