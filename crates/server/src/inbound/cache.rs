//! Sources ready for ingest (preset parsed, secrets decrypted, allowlist parsed), cached by token
//! hash for a short time so the hot path does not read the database for every request.
//!
//! Changes made through this instance's API invalidate the cache at once; changes made by another
//! instance sharing the database are seen within [`CACHE_TTL`]. Token expiry and revocation times
//! are evaluated per request against the clock, so a rotation grace period ends on time.

use crate::crypto::SecretBox;
use hookwarden_netguard::CidrList;
use hookwarden_signatures::inbound::{Preset, PresetConfig};
use hookwarden_store::{InboundRoute, Source, SourceStore, SourceToken, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a looked-up source is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Most cached tokens (the map is cleared when it would grow beyond).
const MAX_ENTRIES: usize = 50_000;

/// A source as the ingest path needs it.
pub struct SourceRuntime {
    pub source_id: String,
    /// The token that was used (its expiry and revocation).
    pub token: SourceToken,
    pub preset: Preset,
    /// Decrypted verification secrets.
    pub secrets: Vec<String>,
    /// Empty: any address.
    pub allowlist: CidrList,
    pub replay_window_ms: i64,
    pub log_payloads: bool,
    pub route: InboundRoute,
    pub event_type: String,
    /// `hookwarden_inbound_requests_total{source, outcome="ACCEPTED"}`, registered on first
    /// use: an accepted request counts without cloning its labels and looking them up.
    accepted: std::sync::OnceLock<metrics::Counter>,
}

impl std::fmt::Debug for SourceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRuntime")
            .field("source_id", &self.source_id)
            .field("preset", &self.preset.type_name())
            .finish()
    }
}

impl SourceRuntime {
    /// The secrets as the verifier takes them.
    pub fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The counter of this source's accepted requests.
    pub fn accepted_counter(&self) -> &metrics::Counter {
        self.accepted.get_or_init(|| {
            metrics::counter!(
                "hookwarden_inbound_requests_total",
                "source" => self.source_id.clone(),
                "outcome" => "ACCEPTED",
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored source cannot be used (undecryptable secret, invalid stored preset).
    #[error("source {source_id} is unusable: {message}")]
    Unusable { source_id: String, message: String },
}

/// Splits `forward_to` into endpoint ids (`ep_…`) and event types.
pub fn route_of(forward_to: &[String]) -> InboundRoute {
    let (endpoint_ids, event_types) = forward_to
        .iter()
        .cloned()
        .partition(|f| f.starts_with("ep_"));
    InboundRoute {
        endpoint_ids,
        event_types,
    }
}

/// Builds the runtime form of a stored source.
pub fn runtime(
    source: &Source,
    token: SourceToken,
    secrets: &SecretBox,
) -> Result<SourceRuntime, LookupError> {
    let unusable = |message: String| LookupError::Unusable {
        source_id: source.id.clone(),
        message,
    };
    let config: PresetConfig = serde_json::from_str(&source.verification)
        .map_err(|e| unusable(format!("stored verification: {e}")))?;
    let preset = Preset::try_from(config).map_err(|e| unusable(e.to_string()))?;
    let opened = source
        .secrets
        .iter()
        .map(|s| secrets.open(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(e.to_string()))?;
    let allowlist = CidrList::parse_entries(&source.allowed_cidrs)
        .map_err(|e| unusable(format!("stored allowlist: {e}")))?;
    Ok(SourceRuntime {
        source_id: source.id.clone(),
        token,
        preset,
        secrets: opened,
        allowlist,
        replay_window_ms: source.replay_window_secs.saturating_mul(1000),
        log_payloads: source.log_payloads,
        route: route_of(&source.forward_to),
        event_type: source.event_type.clone(),
        accepted: std::sync::OnceLock::new(),
    })
}

type Entry = (Instant, Arc<SourceRuntime>);

pub struct SourceCache {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

impl Default for SourceCache {
    fn default() -> Self {
        SourceCache {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl SourceCache {
    /// The source that `token_hash` opens (whatever the token's state), if any.
    pub async fn lookup(
        &self,
        token_hash: [u8; 32],
        store: &dyn SourceStore,
        secrets: &SecretBox,
    ) -> Result<Option<Arc<SourceRuntime>>, LookupError> {
        if let Ok(map) = self.entries.read()
            && let Some((at, rt)) = map.get(&token_hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(rt.clone()));
        }
        let Some(m) = store.find_source_by_token(token_hash).await? else {
            return Ok(None);
        };
        // The database matched on the hash; confirm in constant time all the same.
        if !bool::from(m.token_hash.ct_eq(&token_hash)) {
            return Ok(None);
        }
        let rt = Arc::new(runtime(&m.source, m.token, secrets)?);
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(token_hash, (Instant::now(), rt.clone()));
        }
        Ok(Some(rt))
    }

    /// Forgets every cached token (announcements from other instances may have been lost).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            map.clear();
        }
    }

    /// Forgets every cached token of `source_id` (after a change through the API).
    pub fn invalidate_source(&self, source_id: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|_, (_, rt)| rt.source_id != source_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_to_splits_endpoints_and_types() {
        let r = route_of(&["ep_1".into(), "invoice.paid".into(), "ep_2".into()]);
        assert_eq!(r.endpoint_ids, vec!["ep_1", "ep_2"]);
        assert_eq!(r.event_types, vec!["invoice.paid"]);
    }

    #[test]
    fn runtime_refuses_unusable_sources() {
        let sb = SecretBox::ephemeral();
        let token = SourceToken {
            prefix: "wh_x".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        let mut s = Source {
            id: "src_1".into(),
            name: "n".into(),
            verification: r#"{"type":"github"}"#.into(),
            secrets: vec!["s".into()],
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            replay_window_secs: 300,
            log_payloads: false,
            forward_to: vec![],
            event_type: "inbound.github".into(),
            created_at: 0,
            updated_at: 0,
        };
        let rt = runtime(&s, token.clone(), &sb).unwrap();
        assert_eq!(rt.replay_window_ms, 300_000);
        assert!(rt.allowlist.contains("10.1.2.3".parse().unwrap()));
        s.secrets = vec!["enc1:AAAA".into()];
        assert!(
            runtime(&s, token.clone(), &sb).is_err(),
            "sealed with no key we hold"
        );
        s.secrets = vec![];
        s.verification = r#"{"type":"nope"}"#.into();
        assert!(runtime(&s, token, &sb).is_err());
    }
}
