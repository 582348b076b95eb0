//! The SQLite store's replay index: every live replay key, in memory.
//!
//! A replay key is a SHA-256, so a B-tree keyed by it puts every accepted webhook on its own
//! random leaf page: in the `ingest` benchmark that page was most of what a request wrote to
//! the WAL, and the write volume drove both the throughput and the fsync tail. Here the check
//! is a hash-map lookup on the writer thread (the only writer, so check-and-insert is atomic
//! with the transaction), and the durable record is a row appended to `inbound_seen_log` in the
//! same transaction. At start every live row is loaded back. Past [`SqliteOptions::
//! replay_keys_max`](super::SqliteOptions) live keys, new keys go to the key-ordered
//! `inbound_seen` table as before (slower, never refused), and lookups check it too.

use crate::{Millis, Result};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One source's key, as kept in memory: 16 bytes of SHA-256(source id, key hash).
pub(crate) type Key = u128;

pub(crate) fn key(source_id: &str, key_hash: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update((source_id.len() as u64).to_be_bytes());
    h.update(source_id.as_bytes());
    h.update(key_hash);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    u128::from_be_bytes(k)
}

/// What [`ReplayIndex::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Live in memory: a replay.
    Replay,
    /// New (or expired): now live in memory until the given time; append it to the log.
    Logged,
    /// The index is full: check and record it in `inbound_seen` instead.
    Table,
}

pub(crate) struct ReplayIndex {
    live: HashMap<Key, Millis>,
    max: usize,
    /// Expired keys are dropped when the map reaches this size (amortised: the next prune is
    /// due only after the map doubled again).
    prune_at: usize,
    /// `inbound_seen` may hold live keys (written before this version, or past `max`).
    pub(crate) table_in_use: bool,
}

const MIN_PRUNE_AT: usize = 1 << 16;

impl ReplayIndex {
    pub(crate) fn new(max: usize) -> ReplayIndex {
        ReplayIndex {
            live: HashMap::new(),
            max: max.max(1),
            prune_at: MIN_PRUNE_AT,
            table_in_use: false,
        }
    }

    /// Every live key of the log, and whether `inbound_seen` still holds live keys.
    pub(crate) fn load(conn: &Connection, max: usize, now: Millis) -> Result<ReplayIndex> {
        let mut idx = ReplayIndex::new(max);
        let mut st = conn.prepare(
            "SELECT source_id, key_hash, expires_at FROM inbound_seen_log WHERE expires_at > ?1",
        )?;
        let rows = st.query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Millis>(2)?,
            ))
        })?;
        for row in rows {
            let (source_id, key_hash, expires_at) = row?;
            let e = idx.live.entry(key(&source_id, &key_hash)).or_insert(0);
            *e = (*e).max(expires_at);
        }
        idx.prune_at = (idx.live.len() * 2).max(MIN_PRUNE_AT);
        idx.table_in_use = conn
            .prepare("SELECT EXISTS (SELECT 1 FROM inbound_seen WHERE expires_at > ?1)")?
            .query_row([now], |r| r.get::<_, bool>(0))?;
        Ok(idx)
    }

    pub(crate) fn is_live(&self, k: Key, now: Millis) -> bool {
        self.live.get(&k).is_some_and(|&e| e > now)
    }

    /// Checks `k` and, unless it is a replay or the index is full, records it until
    /// `expires_at`.
    pub(crate) fn admit(&mut self, k: Key, expires_at: Millis, now: Millis) -> Admit {
        if self.is_live(k, now) {
            return Admit::Replay;
        }
        if self.live.len() >= self.prune_at {
            self.prune(now);
        }
        if self.live.len() >= self.max && !self.live.contains_key(&k) {
            self.prune(now);
            if self.live.len() >= self.max {
                return Admit::Table;
            }
        }
        self.live.insert(k, expires_at);
        Admit::Logged
    }

    /// Undoes an [`Admit::Logged`] whose transaction did not commit (only if the entry is
    /// still the one it made).
    pub(crate) fn forget(&mut self, k: Key, expires_at: Millis) {
        if self.live.get(&k) == Some(&expires_at) {
            self.live.remove(&k);
        }
    }

    /// Drops every key expired at `now`.
    pub(crate) fn prune(&mut self, now: Millis) {
        self.live.retain(|_, e| *e > now);
        self.prune_at = (self.live.len() * 2).max(MIN_PRUNE_AT);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }
}

/// Appends a key admitted in memory to the durable log.
pub(crate) fn log(
    c: &Connection,
    source_id: &str,
    key_hash: &[u8],
    expires_at: Millis,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO inbound_seen_log (expires_at, source_id, key_hash) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![expires_at, source_id, key_hash])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_source() {
        assert_ne!(key("src_a", &[1; 32]), key("src_b", &[1; 32]));
        assert_ne!(key("src_a", &[1; 32]), key("src_a", &[2; 32]));
        // The length prefix keeps "ab"+"c…" apart from "a"+"bc…".
        assert_ne!(key("ab", b"c"), key("a", b"bc"));
        assert_eq!(key("src_a", &[1; 32]), key("src_a", &[1; 32]));
    }

    #[test]
    fn admit_replay_expiry_and_bound() {
        let mut idx = ReplayIndex::new(2);
        assert_eq!(idx.admit(1, 100, 0), Admit::Logged);
        assert_eq!(idx.admit(1, 150, 50), Admit::Replay);
        assert_eq!(idx.admit(1, 200, 100), Admit::Logged, "expired at 100");
        assert_eq!(idx.admit(2, 300, 100), Admit::Logged);
        // Full with live keys: the third goes to the table, and stays out of memory.
        assert_eq!(idx.admit(3, 300, 150), Admit::Table);
        assert!(!idx.is_live(3, 150));
        // Once one expires there is room again.
        assert_eq!(idx.admit(3, 400, 250), Admit::Logged);
        assert_eq!(idx.len(), 2);
        // Undo only what this admission made.
        idx.forget(3, 399);
        assert!(idx.is_live(3, 250));
        idx.forget(3, 400);
        assert!(!idx.is_live(3, 250));
    }
}
