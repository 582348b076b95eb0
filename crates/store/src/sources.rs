//! Inbound sources (secret webhook URLs), their tokens, the ids already seen (replay
//! protection) and the inbound audit log.
//!
//! A source's URL token is never stored: only its SHA-256 (`token_hash`) and a short display
//! prefix. Verification secrets are stored as the server hands them over (encrypted when a master
//! key is configured). The verification preset is opaque JSON here: the store does not interpret
//! it.

use crate::{Listed, Millis, NewEvent, Page, Result};
use async_trait::async_trait;
use serde::Serialize;

/// An inbound source: where a provider posts webhooks, and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    pub name: String,
    /// The verification preset as JSON (`{"type": "stripe", …}`), without secrets.
    pub verification: String,
    /// Verification secrets, as stored (each possibly encrypted at rest). Several are active at
    /// once during a rotation.
    pub secrets: Vec<String>,
    /// Normalised addresses and CIDR ranges; empty means any address.
    pub allowed_cidrs: Vec<String>,
    /// Message ids (or content hashes) seen within this many seconds are replays; 0 disables.
    pub replay_window_secs: i64,
    /// Keep request bodies in the audit log.
    pub log_payloads: bool,
    /// Endpoint ids and/or event types that accepted events are routed to.
    pub forward_to: Vec<String>,
    /// The type of the events this source produces.
    pub event_type: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A URL token to store: its SHA-256 and display prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSourceToken {
    pub token_hash: [u8; 32],
    /// The first characters of the token (`wh_AbCdEf`), for display.
    pub prefix: String,
    pub created_at: Millis,
}

/// One URL token of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceToken {
    pub prefix: String,
    pub created_at: Millis,
    /// After a rotation, the old token stops working at this time.
    pub expires_at: Option<Millis>,
    /// Revoked tokens answer 410 from this time on.
    pub revoked_at: Option<Millis>,
}

impl SourceToken {
    /// Whether the token still opens the source at `now` (not expired; revocation aside).
    pub fn live_at(&self, now: Millis) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// A source with its current token (the newest) and the other tokens that still work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub source: Source,
    /// The newest token (`None` only for a source created without one).
    pub current_token: Option<SourceToken>,
    /// Older tokens (expired, in their rotation grace, or revoked), newest first, at most 99.
    pub other_tokens: Vec<SourceToken>,
}

/// What a token hash maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    /// The stored hash (compare it in constant time with the one looked up).
    pub token_hash: [u8; 32],
    pub token: SourceToken,
    pub source: Source,
}

/// The replay-protection key of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenKey {
    /// SHA-256 of the message id or of the signed content (chosen by the server).
    pub key_hash: [u8; 32],
    /// The key may be forgotten after this time.
    pub expires_at: Millis,
}

/// One inbound request, refused or accepted, as written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewAuditEntry {
    /// `None` when the token matched no source.
    pub source_id: Option<String>,
    /// The first characters of the token that was used.
    pub token_prefix: String,
    pub received_at: Millis,
    /// The client address (after trusted-proxy headers).
    pub client_ip: Option<String>,
    /// The socket peer (`ip:port`).
    pub peer_addr: String,
    pub user_agent: Option<String>,
    /// `ACCEPTED`, `HANDSHAKE` or the refusal code (`SIGNATURE_INVALID`, …).
    pub outcome: String,
    /// A finer reason (`SIGNATURE_MISSING`, `TOKEN_EXPIRED`, …) when there is one.
    pub reason: Option<String>,
    pub status: u16,
    pub body_bytes: i64,
    pub latency_us: i64,
    pub tls: bool,
    /// The event created (accepted requests).
    pub event_id: Option<String>,
    /// The provider's message id, when the verification found one.
    pub message_id: Option<String>,
    /// Requests this entry stands for (more than 1 when aggregated under a flood).
    pub count: i64,
    /// True when this entry aggregates or samples several requests (flood control).
    pub sampled: bool,
    /// The body's bytes as received (a bounded prefix), only when the source has
    /// `log_payloads`: any bytes, NUL and invalid UTF-8 included, stored as bytes by both
    /// backends. Shared, not copied, when the entry is cloned (the ingest route keeps a copy of
    /// the entry it hands the store, to audit a refusal or count the acceptance).
    pub payload: Option<std::sync::Arc<[u8]>>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Time-ordered id (`aud_…`).
    pub id: String,
    pub entry: NewAuditEntry,
}

/// Filters of [`SourceStore::list_audit`]; every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries of this source; `None`: every entry, including those of unknown tokens.
    pub source_id: Option<String>,
    /// Only entries whose token matched no source.
    pub unknown_only: bool,
    /// `received_at >= since`.
    pub since: Option<Millis>,
    /// `received_at < until`.
    pub until: Option<Millis>,
    pub outcome: Option<String>,
    pub client_ip: Option<String>,
}

/// Where an accepted event goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundRoute {
    /// These endpoints (those that exist and are not deleted).
    pub endpoint_ids: Vec<String>,
    /// And every endpoint subscribed to one of these event types (or to every type).
    pub event_types: Vec<String>,
}

/// Everything an accepted request writes, in one transaction.
#[derive(Debug, Clone)]
pub struct InboundAccept {
    /// The event (`only_endpoints` is ignored: `route` decides).
    pub event: NewEvent,
    pub route: InboundRoute,
    /// Checked and recorded first: when a live key exists, nothing is written.
    pub seen: Option<SeenKey>,
    /// Its `event_id` is set to the event's id.
    pub audit: NewAuditEntry,
}

/// The result of [`SourceStore::accept_inbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Event, deliveries, seen key and audit entry are committed.
    Accepted {
        event_id: String,
        audit_id: String,
        /// Deliveries created (due now, not leased).
        deliveries: usize,
    },
    /// The seen key is live: a replay. Nothing was written.
    Replayed,
}

/// What one [`SourceStore::purge_inbound`] call deleted (each at most the batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InboundPurgeCounts {
    pub audit_entries: u64,
    pub seen_keys: u64,
    /// Rotated-out tokens (never revoked ones: they keep answering 410).
    pub tokens: u64,
}

impl InboundPurgeCounts {
    pub fn total(&self) -> u64 {
        self.audit_entries
            .saturating_add(self.seen_keys)
            .saturating_add(self.tokens)
    }
}

/// Inbound requests of one outcome in one bucket (aggregated audit entries count every request
/// they stand for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestStatBucket {
    pub bucket_start: Millis,
    /// `ACCEPTED`, `HANDSHAKE` or a refusal code.
    pub outcome: String,
    pub requests: i64,
}

/// Persistence of inbound sources, tokens, seen ids and the audit log.
#[async_trait]
pub trait SourceStore: Send + Sync + 'static {
    /// Stores a new source with its first token. `Conflict` when the id or token exists.
    async fn create_source(&self, source: Source, token: NewSourceToken) -> Result<()>;
    async fn get_source(&self, id: &str) -> Result<Option<SourceRecord>>;
    /// Newest first, keyset paginated like the other lists.
    async fn list_sources(&self, page: Page) -> Result<Listed<SourceRecord>>;
    /// Replaces the mutable fields (name, verification, secrets, allowlist, replay window,
    /// payload logging, routing, event type, `updated_at`). False when the source is unknown.
    async fn update_source(&self, source: Source) -> Result<bool>;
    /// Deletes the source, its tokens and seen keys (audit entries stay until retention).
    async fn delete_source(&self, id: &str) -> Result<bool>;
    /// Adds `token` as the current token; the tokens that still worked stop at
    /// `old_expires_at` (never later than an expiry they already had; `now` = at once).
    /// Revoked tokens stay revoked. False when the source is unknown.
    async fn rotate_source_token(
        &self,
        id: &str,
        token: NewSourceToken,
        old_expires_at: Millis,
        now: Millis,
    ) -> Result<bool>;
    /// Revokes every token of the source that still works (they answer 410 from then on).
    /// False when the source is unknown.
    async fn revoke_source(&self, id: &str, now: Millis) -> Result<bool>;
    /// The token with this hash (live, expired or revoked) and its source.
    async fn find_source_by_token(&self, token_hash: [u8; 32]) -> Result<Option<TokenMatch>>;
    /// In one transaction: checks and records the seen key (a live one means `Replayed` and
    /// nothing is written), stores the event with `source_id`, one delivery per routed endpoint
    /// (pending, due now; paused for a disabled endpoint) and the audit entry.
    async fn accept_inbound(&self, accept: InboundAccept) -> Result<AcceptOutcome>;
    /// Appends audit entries (refusals, handshakes), returning their ids.
    async fn insert_audit(&self, entries: Vec<NewAuditEntry>) -> Result<Vec<String>>;
    /// Newest first; `page.before` is an audit id.
    async fn list_audit(&self, filter: AuditFilter, page: Page) -> Result<Listed<AuditEntry>>;
    /// Requests per time bucket and outcome, from the audit log (`source_id`: one source's;
    /// `None`: every entry, unknown tokens included). Buckets without requests are absent; at
    /// most 64 outcomes per bucket; a range that is not valid ([`crate::StatsRange::is_valid`])
    /// has none.
    async fn ingest_stats(
        &self,
        source_id: Option<&str>,
        range: crate::StatsRange,
    ) -> Result<Vec<IngestStatBucket>>;
    /// One bounded retention pass: audit entries received before `audit_older_than`, seen keys
    /// expired at `now`, and rotated-out tokens that expired before `audit_older_than`. At most
    /// `batch` rows of each; call again until the total is 0.
    async fn purge_inbound(
        &self,
        audit_older_than: Millis,
        now: Millis,
        batch: usize,
    ) -> Result<InboundPurgeCounts>;
}

/// `aud_<ULID>` whose time part is `ms`: audit ids sort by reception time, and ids made by this
/// process within one millisecond sort in the order they were made (the random part counts up).
pub(crate) fn audit_id(ms: Millis) -> String {
    use std::sync::Mutex;
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    let ms = u64::try_from(ms.max(0)).unwrap_or(0).min((1u64 << 48) - 1);
    let fresh = ulid::Ulid::new().random() >> 8;
    let random = match LAST.lock() {
        Ok(mut last) => {
            let r = if last.0 == ms && last.1 < (1u128 << 80) - 1 {
                last.1 + 1
            } else {
                fresh
            };
            *last = (ms, r);
            r
        }
        Err(_) => fresh,
    };
    crate::prefixed_ulid("aud", ulid::Ulid::from_parts(ms, random))
}

/// The smallest audit id of an entry received at `ms` (for time bounds on the primary key).
pub(crate) fn audit_bound(ms: Millis) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0).min((1u64 << 48) - 1);
    crate::prefixed_ulid("aud", ulid::Ulid::from_parts(ms, 0))
}
