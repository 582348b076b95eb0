//! A throwaway PostgreSQL database per test.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

const URL_VAR: &str = "HOOKWARDEN_TEST_DATABASE_URL";

/// The master key PostgreSQL tests give every instance (PostgreSQL needs one configured: the
/// instances share it). Base64 of 32 bytes.
pub(crate) const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The `[security]` section with [`TEST_MASTER_KEY`].
pub(crate) fn security_section() -> String {
    format!("\n[security]\nmaster_key = \"{TEST_MASTER_KEY}\"\n")
}

/// A fresh database on the test server, dropped at the end.
pub(crate) struct Db {
    admin: String,
    name: String,
    pub url: String,
}

impl Db {
    /// A new database named `<prefix>_<ulid>` on the server `HOOKWARDEN_TEST_DATABASE_URL`
    /// names (which `.ci/run` sets). `None` without it: the test says it is skipped and returns
    /// (a failure instead when `HOOKWARDEN_REQUIRE_POSTGRES` is set, as `.ci/run` does).
    pub(crate) async fn create(prefix: &str) -> Option<Db> {
        let admin = match std::env::var(URL_VAR) {
            Ok(u) if !u.trim().is_empty() => u,
            _ if std::env::var_os("HOOKWARDEN_REQUIRE_POSTGRES").is_some() => panic!(
                "{URL_VAR} is not set but HOOKWARDEN_REQUIRE_POSTGRES is: this test needs a \
                 PostgreSQL server (e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
            ),
            _ => {
                eprintln!(
                    "skipped: this PostgreSQL test runs only with {URL_VAR} set \
                     (e.g. postgres://postgres@127.0.0.1:5432/test; .ci/run sets it)"
                );
                return None;
            }
        };
        let name = format!(
            "{prefix}_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let mut c = PgConnection::connect(&admin).await.expect("connect admin");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .await
            .expect("create database");
        let _ = c.close().await;
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}dbname={name}");
        Some(Db { admin, name, url })
    }

    /// A connection to this database.
    pub(crate) async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}
