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
use std::collections::hash_map::Entry;

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

/// The keys are spread over this many hash maps (by the key's low bits, which are uniform: a
/// key is a SHA-256 prefix). A hash map grows by moving every entry into a table twice the
/// size, all at once: one map of 229,376 keys took 42 ms to grow, on the writer thread, which
/// stalled every write behind it (it was the p99 of the `ingest` benchmark at 70 % load), and a
/// full index would stall for about half a second. Shards grow one at a time, each 1/256th of
/// the work; so does pruning.
const SHARDS: usize = 256;

/// Pruning a shard is due when it doubled since the last prune (at least this many keys).
const MIN_SHARD_PRUNE_AT: usize = 256;

struct Shard {
    live: HashMap<Key, Millis>,
    /// Expired keys are dropped when the shard reaches this size (amortised: the next prune is
    /// due only after it doubled again).
    prune_at: usize,
}

impl Shard {
    /// Drops every key expired at `now`; returns how many were dropped and the earliest
    /// expiry of those kept.
    fn prune(&mut self, now: Millis) -> (usize, Millis) {
        let before = self.live.len();
        let mut earliest = Millis::MAX;
        self.live.retain(|_, e| {
            let keep = *e > now;
            if keep {
                earliest = earliest.min(*e);
            }
            keep
        });
        self.prune_at = (self.live.len() * 2).max(MIN_SHARD_PRUNE_AT);
        (before - self.live.len(), earliest)
    }
}

pub(crate) struct ReplayIndex {
    shards: Box<[Shard]>,
    /// Keys in all shards.
    len: usize,
    max: usize,
    /// No key expires before this (a lower bound): while the index is full, a prune of every
    /// shard before then would free nothing.
    earliest: Millis,
    /// `inbound_seen` may hold live keys (written before this version, or past `max`).
    pub(crate) table_in_use: bool,
}

impl ReplayIndex {
    pub(crate) fn new(max: usize) -> ReplayIndex {
        ReplayIndex {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    live: HashMap::new(),
                    prune_at: MIN_SHARD_PRUNE_AT,
                })
                .collect(),
            len: 0,
            max: max.max(1),
            earliest: Millis::MAX,
            table_in_use: false,
        }
    }

    fn shard(&self, k: Key) -> &Shard {
        &self.shards[(k as usize) % SHARDS]
    }

    fn shard_mut(&mut self, k: Key) -> &mut Shard {
        &mut self.shards[(k as usize) % SHARDS]
    }

    /// Records `k` until `expires_at` (the later of two expiries if it is there already).
    fn put(&mut self, k: Key, expires_at: Millis) {
        match self.shard_mut(k).live.entry(k) {
            Entry::Occupied(mut e) => {
                let kept = e.get_mut();
                *kept = (*kept).max(expires_at);
            }
            Entry::Vacant(e) => {
                e.insert(expires_at);
                self.len += 1;
            }
        }
        self.earliest = self.earliest.min(expires_at);
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
            idx.put(key(&source_id, &key_hash), expires_at);
        }
        for shard in idx.shards.iter_mut() {
            shard.prune_at = (shard.live.len() * 2).max(MIN_SHARD_PRUNE_AT);
        }
        idx.table_in_use = conn
            .prepare("SELECT EXISTS (SELECT 1 FROM inbound_seen WHERE expires_at > ?1)")?
            .query_row([now], |r| r.get::<_, bool>(0))?;
        Ok(idx)
    }

    pub(crate) fn is_live(&self, k: Key, now: Millis) -> bool {
        self.shard(k).live.get(&k).is_some_and(|&e| e > now)
    }

    /// Checks `k` and, unless it is a replay or the index is full, records it until
    /// `expires_at`.
    pub(crate) fn admit(&mut self, k: Key, expires_at: Millis, now: Millis) -> Admit {
        if self.is_live(k, now) {
            return Admit::Replay;
        }
        let shard = self.shard_mut(k);
        if shard.live.len() >= shard.prune_at {
            let (dropped, _) = shard.prune(now);
            self.len -= dropped;
        }
        if self.len >= self.max && !self.shard(k).live.contains_key(&k) {
            // Full: only a prune of every shard can make room, and only once a key expired.
            if now >= self.earliest {
                self.prune(now);
            }
            if self.len >= self.max {
                return Admit::Table;
            }
        }
        // Not live here: absent, or expired before `now` < `expires_at`.
        self.put(k, expires_at);
        Admit::Logged
    }

    /// Undoes an [`Admit::Logged`] whose transaction did not commit (only if the entry is
    /// still the one it made).
    pub(crate) fn forget(&mut self, k: Key, expires_at: Millis) {
        let shard = self.shard_mut(k);
        if shard.live.get(&k) == Some(&expires_at) {
            shard.live.remove(&k);
            self.len -= 1;
        }
    }

    /// Drops every key expired at `now`.
    pub(crate) fn prune(&mut self, now: Millis) {
        let mut earliest = Millis::MAX;
        for shard in self.shards.iter_mut() {
            let (dropped, e) = shard.prune(now);
            self.len -= dropped;
            earliest = earliest.min(e);
        }
        self.earliest = earliest;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(
            self.len,
            self.shards.iter().map(|s| s.live.len()).sum::<usize>()
        );
        self.len
    }
}

/// Appends a key admitted in memory to the durable log (a row already there, the same key
/// with the same expiry, is the same record).
pub(crate) fn log(
    c: &Connection,
    source_id: &str,
    key_hash: &[u8],
    expires_at: Millis,
) -> Result<()> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO inbound_seen_log (expires_at, source_id, key_hash) \
         VALUES (?1, ?2, ?3)",
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

    /// Keys spread over every shard (a map grows, all at once, only as large as its shard),
    /// and the count, expiry and pruning hold across shards.
    #[test]
    fn keys_spread_over_the_shards_and_expire_in_each() {
        let mut idx = ReplayIndex::new(usize::MAX);
        let n = 100_000u64;
        let k = |i: u64| key("src_a", &i.to_be_bytes());
        for i in 0..n {
            // Half expire at 1,000, half at 2,000.
            let exp = if i % 2 == 0 { 1_000 } else { 2_000 };
            assert_eq!(idx.admit(k(i), exp, 0), Admit::Logged);
        }
        assert_eq!(idx.len(), n as usize);
        let mean = n as usize / SHARDS;
        for shard in idx.shards.iter() {
            assert!(
                shard.live.len() > mean / 2 && shard.live.len() < mean * 2,
                "{} keys in a shard, {mean} on average",
                shard.live.len()
            );
        }
        assert_eq!(idx.admit(k(7), 3_000, 500), Admit::Replay);
        idx.prune(1_000);
        assert_eq!(idx.len(), n as usize / 2);
        assert!(!idx.is_live(k(2), 1_000));
        assert!(idx.is_live(k(3), 1_000));
        assert_eq!(idx.admit(k(2), 5_000, 1_000), Admit::Logged);
        assert_eq!(idx.len(), n as usize / 2 + 1);
    }

    /// Full: nothing is pruned before the earliest key expires, and room is made as soon as
    /// one has.
    #[test]
    fn a_full_index_makes_room_once_a_key_expired() {
        let mut idx = ReplayIndex::new(3);
        assert_eq!(idx.admit(10, 500, 0), Admit::Logged);
        assert_eq!(idx.admit(11, 900, 0), Admit::Logged);
        assert_eq!(idx.admit(12, 900, 0), Admit::Logged);
        assert_eq!(idx.earliest, 500);
        assert_eq!(idx.admit(13, 900, 499), Admit::Table);
        assert_eq!(idx.len(), 3);
        assert_eq!(
            idx.admit(13, 900, 500),
            Admit::Logged,
            "key 10 expired at 500"
        );
        assert_eq!(idx.len(), 3);
        assert!(!idx.is_live(10, 500));
        assert_eq!(idx.earliest, 900);
        assert_eq!(idx.admit(14, 1_000, 899), Admit::Table);
        // A renewed key is not a new one: it fits even when full.
        assert_eq!(idx.admit(11, 2_000, 900), Admit::Logged);
        assert_eq!(idx.len(), 3);
    }
}
