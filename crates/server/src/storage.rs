//! Opening the configured database: the embedded SQLite file (default) or PostgreSQL (several
//! instances sharing one database), behind the same traits.

use crate::StartError;
use crate::config::{Backend, Config};
use hookwarden_store::postgres::{PgOptions, PgStore};
use hookwarden_store::sqlite::{SqliteOptions, SqliteStore};
use hookwarden_store::{
    ApiKeyStore, CertificateStore, EventTypeStore, ProbeStore, RecoveryStore, SealedStore,
    SourceStore, Store,
};
use std::sync::Arc;

/// The opened database, as each trait the server uses.
#[derive(Clone)]
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub certs: Arc<dyn CertificateStore>,
    pub sources: Arc<dyn SourceStore>,
    pub keys: Arc<dyn ApiKeyStore>,
    pub sealed: Arc<dyn SealedStore>,
    pub probes: Arc<dyn ProbeStore>,
    pub event_types: Arc<dyn EventTypeStore>,
    pub recoveries: Arc<dyn RecoveryStore>,
    backend: Opened,
}

#[derive(Clone)]
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Stores {
    /// True when the database may be shared with other instances (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Opened::Postgres(_))
    }

    /// Closes the database (SQLite: flushes the writer; PostgreSQL: closes the pool).
    pub async fn close(&self) {
        match &self.backend {
            Opened::Sqlite(s) => s.close(),
            Opened::Postgres(p) => p.close().await,
        }
    }
}

fn pg_options(config: &Config, migrate_on_connect: bool) -> PgOptions {
    PgOptions {
        max_connections: config.storage.max_connections,
        migrate_on_connect,
        application_name: format!("hookwarden/{}", env!("CARGO_PKG_VERSION")),
        ..PgOptions::default()
    }
}

/// Opens the configured store. SQLite migrates on open; PostgreSQL migrates (under an
/// advisory lock, so instances starting together are safe) when `storage.migrate_on_start`.
pub async fn open(config: &Config) -> Result<Stores, StartError> {
    match config.backend() {
        Backend::Sqlite(path) => {
            let opts = SqliteOptions {
                synchronous: config.storage.sqlite_synchronous,
                replay_keys_max: config.storage.sqlite_replay_keys_max,
                ..SqliteOptions::default()
            };
            let s = Arc::new(SqliteStore::open(&path, opts)?);
            Ok(Stores {
                store: s.clone(),
                certs: s.clone(),
                sources: s.clone(),
                keys: s.clone(),
                sealed: s.clone(),
                probes: s.clone(),
                event_types: s.clone(),
                recoveries: s.clone(),
                backend: Opened::Sqlite(s),
            })
        }
        Backend::Postgres(url) => {
            let p = Arc::new(
                PgStore::connect(&url, pg_options(config, config.storage.migrate_on_start)).await?,
            );
            Ok(Stores {
                store: p.clone(),
                certs: p.clone(),
                sources: p.clone(),
                keys: p.clone(),
                sealed: p.clone(),
                probes: p.clone(),
                event_types: p.clone(),
                recoveries: p.clone(),
                backend: Opened::Postgres(p),
            })
        }
    }
}

/// `hookwarden migrate`: applies pending schema migrations and describes what it did.
pub async fn migrate(config: &Config) -> Result<String, StartError> {
    match config.backend() {
        Backend::Sqlite(path) => {
            let s = SqliteStore::open(&path, SqliteOptions::default())?;
            s.close();
            Ok(format!("sqlite database {} is up to date", path.display()))
        }
        Backend::Postgres(url) => {
            let p = PgStore::connect_unchecked(&url, pg_options(config, false)).await?;
            let m = p.migrate().await?;
            p.close().await;
            Ok(if m.applied.is_empty() {
                format!("postgres schema is up to date (version {})", m.to_version)
            } else {
                format!(
                    "postgres schema migrated from version {} to {} (applied {:?})",
                    m.from_version, m.to_version, m.applied
                )
            })
        }
    }
}
