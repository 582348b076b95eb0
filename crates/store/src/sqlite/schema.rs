//! The schema: migrations (`NNNN_*.sql` beside this file) and connection settings.

use super::*;

/// Schema migrations: (version, name, SQL). Versions are explicit so that features developed in
/// parallel can each add theirs; every version not yet recorded in `schema_migrations` is applied
/// in ascending order, each in its own transaction.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("0001_init.sql")),
    (2, "retention", include_str!("0002_retention.sql")),
    (
        10,
        "client_certificates",
        include_str!("0010_client_certificates.sql"),
    ),
    (20, "sources_audit", include_str!("0020_sources_audit.sql")),
    (35, "console", include_str!("0035_console.sql")),
    (
        40,
        "events_by_type",
        include_str!("0040_events_by_type.sql"),
    ),
    (50, "replay_log", include_str!("0050_replay_log.sql")),
    (
        60,
        "finished_without_in_list",
        include_str!("0060_finished_without_in_list.sql"),
    ),
    (
        70,
        "replay_log_by_expiry",
        include_str!("0070_replay_log_by_expiry.sql"),
    ),
    (
        80,
        "audit_by_source",
        include_str!("0080_audit_by_source.sql"),
    ),
    (
        100,
        "api_key_lifecycle",
        include_str!("0100_api_key_lifecycle.sql"),
    ),
    (
        110,
        "endpoint_probes",
        include_str!("0110_endpoint_probes.sql"),
    ),
    (
        120,
        "endpoint_retry_schedule",
        include_str!("0120_endpoint_retry_schedule.sql"),
    ),
    (
        130,
        "endpoint_signing_keys",
        include_str!("0130_endpoint_signing_keys.sql"),
    ),
    (140, "event_types", include_str!("0140_event_types.sql")),
    (
        150,
        "endpoint_filter_transformation",
        include_str!("0150_endpoint_filter_transformation.sql"),
    ),
    (160, "recoveries", include_str!("0160_recoveries.sql")),
];

/// Page cache of the writer (and checkpointer) connection, in KiB. Small on purpose: when a
/// B-tree page splits, SQLite briefly renumbers a page to the (never used) lock-byte page, which
/// makes the commit that follows walk its whole page cache to drop pages "past the end" —
/// with 32 MB (about 8,000 pages) that walk took 15 % of the writer thread's time in the
/// `ingest` benchmark, with 8 MB 5 %. The operating system's page cache serves the pages this
/// one misses.
pub(super) const WRITER_CACHE_KIB: u32 = 8192;

pub(super) fn configure(conn: &Connection, opts_sync: Synchronous, busy_ms: u64) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(busy_ms))?;
    // Every statement of the store stays prepared (rusqlite's default cache holds 16, fewer
    // than the store uses, so hot statements were parsed again and again).
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF; \
         PRAGMA cache_size=-{WRITER_CACHE_KIB};"
    ))?;
    let sync = match opts_sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))?;
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, i64::MAX)
}

/// Applies the pending migrations up to version `upto` (tests build older databases with it).
pub(super) fn migrate_to(conn: &mut Connection, upto: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
           version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    // Databases from before this table recorded their level in user_version.
    let legacy: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if legacy > 0 {
        let tx = conn.transaction()?;
        for (version, name, _) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= legacy) {
            tx.execute(
                "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, 0)",
                params![version, name],
            )?;
        }
        tx.execute_batch("PRAGMA user_version=0")?;
        tx.commit()?;
    }
    let applied: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let known_max = MIGRATIONS.iter().map(|(v, _, _)| *v).max().unwrap_or(0);
    if let Some(newer) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|(k, _, _)| k == *v))
    {
        return Err(StoreError::database(
            format!(
                "database has schema migration {newer}, unknown to this binary (it knows up to {known_max}); \
             run a newer hookwarden"
            ),
            false,
        ));
    }
    let mut pending: Vec<&(i64, &str, &str)> = MIGRATIONS
        .iter()
        .filter(|(v, _, _)| !applied.contains(v) && *v <= upto)
        .collect();
    pending.sort_by_key(|(v, _, _)| *v);
    for (version, name, sql) in pending {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now_millis()],
        )?;
        tx.commit()?;
    }
    Ok(())
}
