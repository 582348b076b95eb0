//! Admin API keys: making them, and checking them on every request.
//!
//! A key is `hwk_` + 32 random bytes; only its SHA-256 is stored. A key that is revoked (API or
//! `hookwarden keys revoke`, from any instance sharing the database) or past its expiry is refused
//! everywhere within [`KEY_RECHECK`]: that is how long an instance trusts its memory of a key
//! before asking the database again.

use crate::crypto;
use hookwarden_store::{ApiKey, ApiKeyStore, Millis, NewApiKey, StoreError};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a verified key is trusted without asking the database again. A revocation made
/// anywhere is honoured by every instance within this.
pub const KEY_RECHECK: Duration = Duration::from_millis(500);

/// A key's last use is written at most this often (a write per request would cost more than
/// the request).
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Most keys remembered at once (beyond it the memory starts afresh).
const MAX_REMEMBERED: usize = 10_000;

/// The longest a name or description may be.
pub const MAX_LABEL: usize = 200;

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub description: String,
    /// It stops working at this time.
    pub expires_at: Option<Millis>,
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a name or description: at most [`MAX_LABEL`] bytes of printable text.
pub fn check_label(what: &str, v: &str) -> Result<(), KeyError> {
    if v.len() > MAX_LABEL || v.chars().any(char::is_control) {
        return Err(KeyError::Invalid(format!(
            "{what} must be at most {MAX_LABEL} bytes of printable text"
        )));
    }
    Ok(())
}

/// Makes a key at `now` and stores its hash; returns the key (the only time it is visible) and
/// its record.
pub async fn create(
    store: &dyn ApiKeyStore,
    spec: KeySpec,
    now: Millis,
) -> Result<(String, ApiKey), KeyError> {
    check_label("name", &spec.name)?;
    check_label("description", &spec.description)?;
    if spec.expires_at.is_some_and(|e| e <= now) {
        return Err(KeyError::Invalid("expires_at must be in the future".into()));
    }
    let (key, hash) = crypto::new_api_key();
    let record = store
        .create_api_key(NewApiKey {
            id: crypto::new_id("key"),
            key_hash: hash,
            prefix: key.chars().take(8).collect(),
            name: spec.name,
            description: spec.description,
            created_at: now,
            expires_at: spec.expires_at,
        })
        .await?;
    Ok((key, record))
}

/// What an instance remembers of a key it verified.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    checked: Instant,
    expires_at: Option<Millis>,
    /// When this instance last recorded a use.
    touched: Option<Instant>,
}

/// Remembers recently verified keys (by hash) for [`KEY_RECHECK`], so the hot path asks the
/// database at most twice a second per key.
pub struct ApiKeyCache {
    ttl: Duration,
    valid: RwLock<HashMap<[u8; 32], Seen>>,
}

impl Default for ApiKeyCache {
    fn default() -> Self {
        ApiKeyCache::new(KEY_RECHECK)
    }
}

impl ApiKeyCache {
    pub fn new(ttl: Duration) -> ApiKeyCache {
        ApiKeyCache {
            ttl,
            valid: RwLock::new(HashMap::new()),
        }
    }

    /// The id of the key `key` if it is usable at `now`, or `None`. The key is hashed first, so
    /// lookups compare digests, never the secret itself. A use is recorded (in the background,
    /// at most every [`TOUCH_EVERY`]) through `touch`.
    pub async fn check(
        &self,
        store: &dyn ApiKeyStore,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let hash = crypto::hash_api_key(key);
        if let Ok(map) = self.valid.read()
            && let Some(seen) = map.get(&hash)
            && seen.checked.elapsed() < self.ttl
            && seen.expires_at.is_none_or(|e| e > now)
        {
            let due = seen.touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
            let id = seen.id.clone();
            drop(map);
            return Ok(Some((id, due && self.mark_touched(&hash))));
        }
        let found = store.find_api_key(hash, now).await?;
        let Ok(mut map) = self.valid.write() else {
            return Ok(found.map(|k| (k.id, false)));
        };
        match found {
            Some(k) => {
                if map.len() >= MAX_REMEMBERED && !map.contains_key(&hash) {
                    map.clear();
                }
                let touched = map.get(&hash).and_then(|s| s.touched);
                let due = touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
                map.insert(
                    hash,
                    Seen {
                        id: k.id.clone(),
                        checked: Instant::now(),
                        expires_at: k.expires_at,
                        touched: if due { Some(Instant::now()) } else { touched },
                    },
                );
                Ok(Some((k.id, due)))
            }
            None => {
                map.remove(&hash);
                Ok(None)
            }
        }
    }

    /// Marks the key as touched now; false when another request did so first.
    fn mark_touched(&self, hash: &[u8; 32]) -> bool {
        let Ok(mut map) = self.valid.write() else {
            return false;
        };
        match map.get_mut(hash) {
            Some(s) if s.touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY) => {
                s.touched = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Forgets every key (after a revocation made by this instance: refused at once here).
    pub fn clear(&self) {
        if let Ok(mut map) = self.valid.write() {
            map.clear();
        }
    }
}
