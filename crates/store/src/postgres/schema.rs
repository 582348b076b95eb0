//! The schema: migrations (`NNNN_*.sql` beside this file), applied in order under an
//! advisory lock; which of them a database still lacks.

use super::*;

/// Schema migrations, applied in order; a migration is never edited once released.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("0001_init.sql")),
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
    (
        90,
        "audit_payload_bytes",
        include_str!("0090_audit_payload_bytes.sql"),
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

/// `pg_advisory_xact_lock` key serialising migrations of one database ("hookward").
pub(super) const MIGRATION_LOCK: i64 = 0x686f_6f6b_7761_7264;

pub(super) fn latest_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

/// The known migrations not in `recorded`, in ascending version order; an error when the
/// database records one this binary does not know (it was migrated by a newer binary).
pub(super) fn pending_migrations(
    recorded: &[i32],
) -> Result<Vec<(i32, &'static str, &'static str)>> {
    if let Some(unknown) = recorded
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|m| m.0 == **v))
    {
        return Err(StoreError::database(
            format!(
                "database has schema migration {unknown}, unknown to this binary (it knows up to {}); \
             run a newer hookwarden",
                latest_version()
            ),
            false,
        ));
    }
    let mut pending: Vec<_> = MIGRATIONS
        .iter()
        .copied()
        .filter(|m| !recorded.contains(&m.0))
        .collect();
    pending.sort_by_key(|m| m.0);
    Ok(pending)
}
