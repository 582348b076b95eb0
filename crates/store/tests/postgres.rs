//! The PostgreSQL store against a real server: the shared conformance suite, several instances
//! on one database, and a differential check of `record_outcomes` against SQLite.
//!
//! `HOOKWARDEN_TEST_DATABASE_URL` names a server and a database to connect to for
//! administration (e.g. `postgres://postgres@127.0.0.1:5432/test`); every test creates its own
//! databases from there and drops them at the end. Without it, each test says it is skipped (on
//! stderr) and returns; `.ci/run` sets it, and `HOOKWARDEN_REQUIRE_POSTGRES=1` (which `.ci/run`
//! sets too) makes a missing URL a failure instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]
#![cfg(feature = "postgres")]

use hookwarden_store::postgres::{PgOptions, PgStore};
use hookwarden_store::sqlite::{SqliteOptions, SqliteStore};
use hookwarden_store::*;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const URL_VAR: &str = "HOOKWARDEN_TEST_DATABASE_URL";

/// The admin URL, or `None` (the test is skipped) when none is given.
fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ if std::env::var_os("HOOKWARDEN_REQUIRE_POSTGRES").is_some() => panic!(
            "{URL_VAR} is not set but HOOKWARDEN_REQUIRE_POSTGRES is: the PostgreSQL store tests \
             need a server (e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {
            eprintln!(
                "skipped: the PostgreSQL store tests run only with {URL_VAR} set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test; .ci/run sets it)"
            );
            None
        }
    }
}

/// The admin URL pointed at another database.
fn url_for(admin: &str, db: &str) -> String {
    let sep = if admin.contains('?') { '&' } else { '?' };
    format!("{admin}{sep}dbname={db}")
}

/// Databases created by one test, dropped when it ends (even when it panics).
struct Databases {
    admin: String,
    names: Mutex<Vec<String>>,
}

impl Databases {
    /// `None` when no server is given (the test is skipped).
    fn new() -> Option<Arc<Databases>> {
        Some(Arc::new(Databases {
            admin: admin_url()?,
            names: Mutex::new(Vec::new()),
        }))
    }

    /// Creates a brand-new empty database and returns its URL.
    async fn create(&self) -> String {
        let name = format!(
            "hw_test_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let mut last_err = None;
        for attempt in 0..5u64 {
            match PgConnection::connect(&self.admin).await {
                Ok(mut c) => {
                    let r = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                    match r {
                        Ok(_) => {
                            self.names.lock().unwrap().push(name.clone());
                            return url_for(&self.admin, &name);
                        }
                        // e.g. "source database is being accessed by other users"
                        Err(e) => last_err = Some(e.to_string()),
                    }
                }
                Err(e) => last_err = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
        }
        panic!(
            "cannot create a test database through {URL_VAR}: {}",
            last_err.unwrap_or_default()
        );
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        let admin = self.admin.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut c) = PgConnection::connect(&admin).await else {
                    return;
                };
                for n in names {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
                let _ = c.close().await;
            });
        })
        .join();
    }
}

fn opts() -> PgOptions {
    PgOptions {
        max_connections: 4,
        ..PgOptions::default()
    }
}

fn endpoint(id: &str) -> Endpoint {
    Endpoint {
        id: id.into(),
        url: format!("https://{id}.example/hook"),
        description: String::new(),
        event_types: vec![],
        headers: BTreeMap::new(),
        developer_payload: None,
        signature_schemes: vec!["standard-webhooks".into()],
        rate_limit_per_second: None,
        enabled: true,
        disabled_reason: None,
        disabled_at: None,
        client_certificate_id: None,
        retry_schedule: Vec::new(),
        filter: None,
        transformation: None,
        consecutive_failures: 0,
        failing_since: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn event(id: &str, at: Millis) -> NewEvent {
    NewEvent {
        id: id.into(),
        event_type: "t".into(),
        payload: format!(r#"{{"id":"{id}"}}"#),
        idempotency_key: None,
        created_at: at,
        source_id: None,
        only_endpoints: None,
    }
}

#[tokio::test]
async fn conformance_suite() {
    let Some(dbs) = Databases::new() else { return };
    conformance::run_all(|| {
        let dbs = dbs.clone();
        async move {
            let url = dbs.create().await;
            PgStore::connect(&url, opts()).await.unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_safe_when_instances_start_together() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    // Refuses an unmigrated database when told not to migrate.
    let err = PgStore::connect(
        &url,
        PgOptions {
            migrate_on_connect: false,
            ..opts()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("hookwarden migrate"), "{err}");

    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, opts()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every instance starts"));
    }
    let latest = stores[0].schema_version().await.unwrap();
    assert!(latest >= 20, "every migration applied: {latest}");
    let again = stores[1].migrate().await.unwrap();
    assert_eq!((again.from_version, again.to_version), (latest, latest));
    assert!(again.applied.is_empty());
    // The schema is usable and shared.
    assert!(stores[2].take_first_start().await.unwrap());
    assert!(!stores[3].take_first_start().await.unwrap());
    let s = PgStore::connect(
        &url,
        PgOptions {
            migrate_on_connect: false,
            ..opts()
        },
    )
    .await
    .unwrap();
    s.close().await;
    assert!(matches!(
        s.take_first_start().await,
        Err(StoreError::Closed)
    ));
    // A database migrated by a newer binary is refused, with or without migrating.
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    for migrate_on_connect in [true, false] {
        let err = PgStore::connect(
            &url,
            PgOptions {
                migrate_on_connect,
                ..opts()
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("unknown to this binary"), "{err}");
    }
}

/// A database at the schema before migration 90 keeps its audit entries through it: text
/// payloads read back as their UTF-8 bytes, beside new entries of any bytes, and are sized for
/// bounded pages like them.
#[tokio::test]
async fn audit_payloads_survive_the_bytes_migration() {
    use sqlx::Executor;
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    c.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    for (version, name, sql) in [
        (1, "init", include_str!("../src/postgres/0001_init.sql")),
        (
            10,
            "client_certificates",
            include_str!("../src/postgres/0010_client_certificates.sql"),
        ),
        (
            20,
            "sources_audit",
            include_str!("../src/postgres/0020_sources_audit.sql"),
        ),
        (
            35,
            "console",
            include_str!("../src/postgres/0035_console.sql"),
        ),
        (
            40,
            "events_by_type",
            include_str!("../src/postgres/0040_events_by_type.sql"),
        ),
    ] {
        c.execute(sql).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let at: Millis = 1_700_000_000_000;
    let id = |ms: Millis, n: u128| {
        format!(
            "aud_{}",
            ulid::Ulid::from_parts(ms as u64, n)
                .to_string()
                .to_ascii_lowercase()
        )
    };
    for (i, payload) in [Some("h\u{e9}llo"), None].into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO inbound_audit (id, source_id, token_prefix, received_at, peer_addr, \
             outcome, status, body_bytes, latency_us, payload) \
             VALUES ($1, 'src_a', 'wh_ab', $2, '192.0.2.1:1', 'ACCEPTED', 202, 6, 10, $3)",
        )
        .bind(id(at + i as i64, 1))
        .bind(at + i as i64)
        .bind(payload)
        .execute(&mut c)
        .await
        .unwrap();
    }
    let _ = c.close().await;

    let s = PgStore::connect(&url, opts()).await.unwrap();
    assert!(s.schema_version().await.unwrap() >= 90);
    let mut e = NewAuditEntry {
        source_id: Some("src_a".into()),
        token_prefix: "wh_ab".into(),
        received_at: at + 5,
        peer_addr: "192.0.2.1:2".into(),
        outcome: "SIGNATURE_INVALID".into(),
        status: 401,
        count: 1,
        ..Default::default()
    };
    e.payload = Some(Arc::from(&b"\0\xff"[..]));
    s.insert_audit(vec![e]).await.unwrap();
    let got = s
        .list_audit(AuditFilter::default(), Page::new(None, 10))
        .await
        .unwrap();
    let payloads: Vec<Option<&[u8]>> = got.iter().map(|e| e.entry.payload.as_deref()).collect();
    assert_eq!(
        payloads,
        [Some(&b"\0\xff"[..]), None, Some("h\u{e9}llo".as_bytes())]
    );
    let one = s
        .list_audit(
            AuditFilter::default(),
            Page::new(None, 10).with_max_bytes(1),
        )
        .await
        .unwrap();
    assert_eq!((one.len(), one.more), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_claim_each_delivery_exactly_once() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PgStore::connect(&url, opts()).await.unwrap()));
    }
    for i in 0..10 {
        stores[0]
            .create_endpoint(endpoint(&format!("ep_{i}")), "whsec".into())
            .await
            .unwrap();
    }
    // 500 events x 10 endpoints = 5,000 due deliveries, created through all three instances.
    let mut tasks = Vec::new();
    for (n, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in (n..500).step_by(3) {
                s.create_event(event(&format!("evt_{i:04}"), 1_000 + i as i64), None, 0)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(stores[1].delivery_counts(10_000).await.unwrap().due, 5_000);

    let started = Instant::now();
    let mut claimers = Vec::new();
    for (n, s) in stores.iter().enumerate() {
        for k in 0..2 {
            let s = s.clone();
            claimers.push(tokio::spawn(async move {
                let owner = format!("instance_{n}_{k}");
                let mut got = Vec::new();
                loop {
                    let batch = s.claim_due(&owner, 10_000, 3_600_000, 97).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    assert!(batch.iter().all(|c| c.lease_until == 3_600_000));
                    got.extend(batch.into_iter().map(|c| c.delivery_id));
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    let mut per_claimer = Vec::new();
    for c in claimers {
        let got = c.await.unwrap();
        per_claimer.push(got.len());
        all.extend(got);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        5_000,
        "claimed in all (per claimer: {per_claimer:?})"
    );
    assert_eq!(unique.len(), 5_000, "a delivery was claimed twice");
    let counts = stores[2].delivery_counts(10_000).await.unwrap();
    assert_eq!((counts.pending, counts.due), (5_000, 0));
    eprintln!(
        "3 instances x 2 claimers claimed 5,000 deliveries in {:?} (per claimer: {per_claimer:?})",
        started.elapsed()
    );
    // Once the leases end everything is due again, exactly once more.
    let again = stores[0]
        .claim_due("late", 3_600_001, 7_200_000, 10_000)
        .await
        .unwrap();
    assert_eq!(again.len(), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_raced_from_two_instances_makes_one_event() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let a = Arc::new(PgStore::connect(&url, opts()).await.unwrap());
    let b = Arc::new(PgStore::connect(&url, opts()).await.unwrap());
    for s in [&a, &b] {
        // Warm both pools so the race is between statements, not connection set-up.
        s.list_events(EventFilter::default(), Page::new(None, 1))
            .await
            .unwrap();
    }
    a.create_endpoint(endpoint("ep_a"), "whsec".into())
        .await
        .unwrap();
    for k in 0..30 {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let race = |s: Arc<PgStore>, side: &'static str| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut e = event(&format!("evt_{k:02}_{side}"), 1_000);
                e.idempotency_key = Some(format!("key_{k}"));
                barrier.wait().await;
                s.create_event(e, None, 86_400_000).await.unwrap()
            })
        };
        let ta = race(a.clone(), "a");
        let tb = race(b.clone(), "b");
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let (winner, loser) = match (&ra, &rb) {
            (CreateEventResult::Created { event, .. }, CreateEventResult::Duplicate { .. }) => {
                (event.id.clone(), rb)
            }
            (CreateEventResult::Duplicate { .. }, CreateEventResult::Created { event, .. }) => {
                (event.id.clone(), ra)
            }
            _ => panic!("key_{k}: expected one created and one duplicate: {ra:?} / {rb:?}"),
        };
        match loser {
            CreateEventResult::Duplicate { event, deliveries } => {
                assert_eq!(event.id, winner);
                assert_eq!(deliveries, 1);
            }
            CreateEventResult::Created { .. } => unreachable!(),
        }
    }
    let events = a
        .list_events(EventFilter::default(), Page::new(None, 1000))
        .await
        .unwrap();
    assert_eq!(events.len(), 30);
    assert_eq!(b.delivery_counts(2_000).await.unwrap().pending, 30);
}

#[tokio::test]
async fn a_large_outcome_batch_is_recorded_at_once() {
    let Some(dbs) = Databases::new() else { return };
    let s = PgStore::connect(&dbs.create().await, opts()).await.unwrap();
    for i in 0..4 {
        s.create_endpoint(endpoint(&format!("ep_{i}")), "whsec".into())
            .await
            .unwrap();
    }
    for i in 0..750 {
        s.create_event(event(&format!("evt_{i:04}"), 100), None, 0)
            .await
            .unwrap();
    }
    let claimed = s.claim_due("me", 100, 60_000, 10_000).await.unwrap();
    assert_eq!(claimed.len(), 3_000);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Outcome {
            delivery_id: c.delivery_id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            attempt: Some(NewAttempt {
                attempt_no: 1,
                started_at: 150,
                duration_ms: 2,
                status_code: Some(if i % 2 == 0 { 200 } else { 500 }),
                // A peer may send anything, NUL included.
                response_body: Some("bin\0ary".into()),
                response_truncated: false,
                error_class: None,
                error_message: None,
                local_addr: None,
                remote_addr: None,
                request_headers: None,
            }),
            next: if i % 2 == 0 {
                Next::Succeeded
            } else {
                Next::Retry { at: 10_000 }
            },
            lease_owner: "me".into(),
            lease_until: c.lease_until,
        })
        .collect();
    let started = Instant::now();
    let tripped = s
        .record_outcomes(
            outcomes,
            BreakerPolicy {
                enabled: true,
                failure_threshold: 1_000_000,
                min_failing_ms: 0,
            },
            200,
        )
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("record_outcomes: 3,000 outcomes in {took:?}");
    assert!(tripped.is_empty());
    let counts = s.delivery_counts(200).await.unwrap();
    assert_eq!((counts.succeeded, counts.pending), (1_500, 1_500));
    let atts = s
        .list_attempts(&claimed[0].delivery_id, AttemptPage::default())
        .await
        .unwrap();
    assert_eq!(atts[0].response_body.as_deref(), Some("bin\u{FFFD}ary"));
    assert!(took < Duration::from_secs(20), "{took:?}");
}

// ---------------------------------------------------------------------------------------------
// Differential: the same random workload on SQLite and PostgreSQL ends in the same state.

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Everything observable about the workload's rows, keyed by (event id, endpoint id) since
/// delivery ids differ between the backends; each row rendered with `Debug`.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    endpoints: Vec<String>,
    deliveries: Vec<String>,
    attempts: Vec<String>,
    counts: DeliveryCounts,
}

async fn snapshot<S: Store>(
    s: &S,
    keys: &BTreeMap<(String, String), String>,
    now: Millis,
) -> Snapshot {
    let mut endpoints = Vec::new();
    for e in s.list_endpoints(Page::new(None, 100)).await.unwrap() {
        endpoints.push(format!(
            "{} enabled={} reason={:?} disabled_at={:?} failures={} since={:?} updated={}",
            e.id,
            e.enabled,
            e.disabled_reason,
            e.disabled_at,
            e.consecutive_failures,
            e.failing_since,
            e.updated_at,
        ));
    }
    let mut deliveries = Vec::new();
    let mut attempts = Vec::new();
    for (key, id) in keys {
        let d = s.get_delivery(id).await.unwrap().unwrap();
        deliveries.push(format!(
            "{key:?} {:?} attempts={} next={} code={:?} error={:?} updated={} completed={:?}",
            d.status,
            d.attempt_count,
            d.next_attempt_at,
            d.last_status_code,
            d.last_error,
            d.updated_at,
            d.completed_at,
        ));
        for a in s.list_attempts(id, AttemptPage::default()).await.unwrap() {
            attempts.push(format!(
                "{key:?} no={} code={:?} outcome={} class={:?} message={:?}",
                a.attempt_no, a.status_code, a.outcome, a.error_class, a.error_message
            ));
        }
    }
    Snapshot {
        endpoints,
        deliveries,
        attempts,
        counts: s.delivery_counts(now).await.unwrap(),
    }
}

#[tokio::test]
async fn record_outcomes_behaves_exactly_like_sqlite() {
    let Some(dbs) = Databases::new() else { return };
    for seed in [7u64, 1_234_567, 0xdead_beef, 42] {
        let pg = PgStore::connect(&dbs.create().await, opts()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lite = SqliteStore::open(&dir.path().join("d.db"), SqliteOptions::default()).unwrap();
        run_differential(seed, &pg, &lite).await;
        pg.close().await;
    }
}

async fn run_differential(seed: u64, pg: &PgStore, lite: &SqliteStore) {
    let mut rng = Rng(seed);
    let eps = ["ep_a", "ep_b", "ep_c"];
    for ep in eps {
        pg.create_endpoint(endpoint(ep), "whsec".into())
            .await
            .unwrap();
        lite.create_endpoint(endpoint(ep), "whsec".into())
            .await
            .unwrap();
    }
    // (event id, endpoint id) -> delivery id, per backend.
    let mut pg_ids = BTreeMap::new();
    let mut lite_ids = BTreeMap::new();
    let owners = ["a", "b", "c"];
    let mut now: Millis = 1_000;
    let mut n_events = 0;
    let mut trips_seen = 0;
    let mut last_until = 0;
    // The lease each delivery was last claimed under (by its key), to report under it.
    let mut leases: BTreeMap<(String, String), (&str, Millis)> = BTreeMap::new();
    for round in 0..60 {
        now += 1 + rng.below(400) as i64;
        for _ in 0..rng.below(3) {
            let id = format!("evt_{n_events:03}");
            n_events += 1;
            for (store_ids, r) in [
                (&mut pg_ids, pg.create_event(event(&id, now), None, 0).await),
                (
                    &mut lite_ids,
                    lite.create_event(event(&id, now), None, 0).await,
                ),
            ] {
                let CreateEventResult::Created { deliveries, .. } = r.unwrap() else {
                    panic!("created");
                };
                for d in deliveries {
                    store_ids.insert((id.clone(), d.endpoint_id), d.id);
                }
            }
        }
        // Claim everything due (no limit, so both backends claim the same set).
        if rng.below(3) > 0 {
            let owner = owners[rng.below(2) as usize];
            let until = now + 1 + rng.below(800) as i64;
            last_until = until;
            let a = pg.claim_due(owner, now, until, 10_000).await.unwrap();
            let b = lite.claim_due(owner, now, until, 10_000).await.unwrap();
            assert_eq!(a.len(), b.len(), "seed {seed} round {round}: claims differ");
            for c in &a {
                if let Some((key, _)) = pg_ids.iter().find(|(_, id)| **id == c.delivery_id) {
                    leases.insert(key.clone(), (owner, c.lease_until));
                }
            }
        }
        // Leases let go (a shutdown), now and then.
        if rng.below(12) == 0 {
            let owner = owners[rng.below(3) as usize];
            let a = pg.release_leases(Some(owner), now).await.unwrap();
            let b = lite.release_leases(Some(owner), now).await.unwrap();
            assert_eq!(a, b, "seed {seed} round {round}: releases differ");
        }
        if rng.below(10) == 0 {
            let ep = eps[rng.below(3) as usize];
            let on = rng.below(2) == 0;
            let reason = (!on).then(|| "manual".to_string());
            let a = pg
                .set_endpoint_enabled(ep, on, reason.clone(), now)
                .await
                .unwrap();
            let b = lite
                .set_endpoint_enabled(ep, on, reason, now)
                .await
                .unwrap();
            assert_eq!(a, b);
        }
        if rng.below(8) == 0 && !pg_ids.is_empty() {
            let key = pg_ids
                .keys()
                .nth(rng.below(pg_ids.len() as u64) as usize)
                .unwrap()
                .clone();
            let a = pg
                .retry_delivery(&pg_ids[&key], now)
                .await
                .unwrap()
                .map(|d| d.status);
            let b = lite
                .retry_delivery(&lite_ids[&key], now)
                .await
                .unwrap()
                .map(|d| d.status);
            assert_eq!(a, b);
        }
        if pg_ids.is_empty() {
            continue;
        }
        // A batch of outcomes over random deliveries (repeats, stale owners and all).
        let breaker = BreakerPolicy {
            enabled: rng.below(4) > 0,
            failure_threshold: 1 + rng.below(6) as i64,
            min_failing_ms: rng.below(1_500) as i64,
        };
        let mut batch_pg = Vec::new();
        let mut batch_lite = Vec::new();
        for _ in 0..rng.below(25) {
            let key = pg_ids
                .keys()
                .nth(rng.below(pg_ids.len() as u64) as usize)
                .unwrap()
                .clone();
            let code = [200, 410, 500, 503][rng.below(4) as usize];
            let next = match rng.below(6) {
                0 | 1 => Next::Succeeded,
                2 => Next::Retry {
                    at: now + rng.below(1_000) as i64,
                },
                3 => Next::Failed,
                4 => Next::Defer {
                    at: now + rng.below(500) as i64,
                },
                _ => Next::Cancel,
            };
            let attempt = (rng.below(5) > 0).then(|| NewAttempt {
                attempt_no: 1 + rng.below(5) as i64,
                started_at: now - rng.below(300) as i64,
                duration_ms: 5,
                status_code: Some(code),
                response_body: None,
                response_truncated: false,
                error_class: (code >= 300).then(|| "http_status".to_string()),
                error_message: (rng.below(2) == 0).then(|| format!("got {code}")),
                local_addr: None,
                remote_addr: None,
                request_headers: None,
            });
            // Mostly the lease the delivery was last claimed under (current, or late if it was
            // let go or claimed again since); sometimes another owner or a lease that never was.
            let (owner, lease_until) = match (leases.get(&key), rng.below(4)) {
                (Some(&(o, u)), 0 | 1) => (o.to_string(), u),
                (_, 2) => (owners[rng.below(3) as usize].to_string(), last_until),
                _ => (
                    owners[rng.below(3) as usize].to_string(),
                    now + rng.below(800) as i64,
                ),
            };
            for (batch, ids) in [(&mut batch_pg, &pg_ids), (&mut batch_lite, &lite_ids)] {
                batch.push(Outcome {
                    delivery_id: ids[&key].clone(),
                    endpoint_id: key.1.clone(),
                    attempt: attempt.clone(),
                    next,
                    lease_owner: owner.clone(),
                    lease_until,
                });
            }
        }
        let a = pg.record_outcomes(batch_pg, breaker, now).await.unwrap();
        let b = lite
            .record_outcomes(batch_lite, breaker, now)
            .await
            .unwrap();
        assert_eq!(a, b, "seed {seed} round {round}: tripped endpoints differ");
        trips_seen += a.len();
        let sa = snapshot(pg, &pg_ids, now).await;
        let sb = snapshot(lite, &lite_ids, now).await;
        assert_eq!(sa, sb, "seed {seed} round {round}: states differ");
    }
    eprintln!(
        "seed {seed}: {} deliveries, {trips_seen} breaker trips",
        pg_ids.len()
    );
    assert!(
        trips_seen > 0,
        "seed {seed}: the workload never tripped the breaker"
    );
}

// ---------------------------------------------------------------------------------------------
// Measurement (run by hand: cargo test -p hookwarden-store --test postgres -- --ignored --nocapture)

async fn time_claims(s: &PgStore, calls: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut claimed = 0;
    for _ in 0..calls {
        let t = Instant::now();
        let got = s
            .claim_due("me", 1_000_000, 2_000_000_000, 100)
            .await
            .unwrap();
        times.push(t.elapsed());
        claimed += got.len();
    }
    times.sort();
    (
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        claimed,
    )
}

#[tokio::test]
#[ignore = "measurement: fills a database with 1M rows"]
async fn claim_latency_with_a_million_finished_rows() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    let mut c = PgConnection::connect(&url).await.unwrap();
    // Baseline: 20k due deliveries and nothing else.
    sqlx::raw_sql(
        "INSERT INTO events (id, event_type, payload, created_at) VALUES ('evt_x', 't', '{}', 1);
         INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, next_attempt_at,
                                 created_at, updated_at)
           SELECT 'dlv_d' || lpad(g::text, 8, '0'), 'evt_x', 'ep_' || (g % 50), 0, 0,
                  1000 + g, g, g FROM generate_series(1, 20000) g;
         ANALYZE deliveries;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let (b50, b99, n) = time_claims(&s, 100).await;
    assert_eq!(n, 10_000);
    // Then 1M finished and 200k waiting (retry far in the future) deliveries beside them.
    let started = Instant::now();
    sqlx::raw_sql(
        "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, next_attempt_at,
                                 created_at, updated_at, completed_at)
           SELECT 'dlv_f' || lpad(g::text, 8, '0'), 'evt_x', 'ep_' || (g % 50), 1 + (g % 2), 1, g,
                  g, g, g FROM generate_series(1, 1000000) g;
         INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, next_attempt_at,
                                 created_at, updated_at)
           SELECT 'dlv_w' || lpad(g::text, 8, '0'), 'evt_x', 'ep_' || (g % 50), 0, 3,
                  9000000000 + g, g, g FROM generate_series(1, 200000) g;
         ANALYZE deliveries;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    eprintln!("filled in {:?}", started.elapsed());
    let (p50, p99, n) = time_claims(&s, 100).await;
    assert_eq!(n, 10_000);
    eprintln!(
        "claim_due(limit 100): 20k due only: p50 {b50:?} p99 {b99:?}; \
         with 1M finished + 200k waiting: p50 {p50:?} p99 {p99:?}"
    );
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM deliveries WHERE status = 0 AND next_attempt_at <= 1000000 \
         ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    eprintln!("{}", plan.join("\n"));
    let t = Instant::now();
    let mut purged = 0;
    loop {
        let n = s.purge_finished(2_000_000, 10_000).await.unwrap();
        if n.total() == 0 {
            break;
        }
        purged += n.deliveries;
    }
    eprintln!(
        "purge_finished(batch 10,000): {purged} finished deliveries in {:?}",
        t.elapsed()
    );
    let _ = c.close().await;
    s.close().await;
}

/// Events per second through `create_event`, one caller at a time and many at once, on both
/// backends; tells whether PostgreSQL needs group commit of its own (SQLite has it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn create_event_throughput() {
    let Some(dbs) = Databases::new() else { return };
    let pg = Arc::new(
        PgStore::connect(
            &dbs.create().await,
            PgOptions {
                max_connections: 10,
                ..opts()
            },
        )
        .await
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let lite =
        Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
    async fn run<S: Store>(s: Arc<S>, tag: &str, callers: usize, per: usize) -> f64 {
        let t = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|k| {
                let s = s.clone();
                let tag = tag.to_string();
                tokio::spawn(async move {
                    for i in 0..per {
                        let mut e = event(&format!("evt_{tag}_{k}_{i}"), 1_000);
                        e.idempotency_key = Some(format!("{tag}_{k}_{i}"));
                        s.create_event(e, None, 86_400_000).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (callers * per) as f64 / t.elapsed().as_secs_f64()
    }
    pg.create_endpoint(endpoint("ep_a"), "w".into())
        .await
        .unwrap();
    pg.create_endpoint(endpoint("ep_b"), "w".into())
        .await
        .unwrap();
    lite.create_endpoint(endpoint("ep_a"), "w".into())
        .await
        .unwrap();
    lite.create_endpoint(endpoint("ep_b"), "w".into())
        .await
        .unwrap();
    for (callers, per) in [(1, 1_000), (8, 250), (32, 100)] {
        let p = run(pg.clone(), &format!("p{callers}"), callers, per).await;
        let l = run(lite.clone(), &format!("l{callers}"), callers, per).await;
        eprintln!(
            "create_event (key, 2 deliveries) with {callers:>2} concurrent callers: \
             postgres {p:.0}/s, sqlite {l:.0}/s"
        );
    }
}

#[tokio::test]
async fn source_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::source_store(&s).await;
}

#[tokio::test]
async fn audit_payload_bytes_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::audit_payload_bytes(&s).await;
}

#[tokio::test]
async fn source_pages_bounded_in_bytes_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::source_pages_bounded_in_bytes(&s).await;
}

#[tokio::test]
async fn certificate_pages_bounded_in_bytes_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::certificate_pages_bounded_in_bytes(&s).await;
}

#[tokio::test]
async fn ingest_statistics_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::ingest_statistics(&s).await;
}

/// Two instances accepting the same message at once: exactly one wins, the other is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_message_raced_from_two_instances_is_accepted_once() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let a = PgStore::connect(&url, opts()).await.unwrap();
    let b = PgStore::connect(&url, opts()).await.unwrap();
    let t0 = 1_700_000_000_000;
    let src = Source {
        id: "src_race".into(),
        name: "race".into(),
        verification: r#"{"type":"github"}"#.into(),
        secrets: vec![],
        allowed_cidrs: vec![],
        replay_window_secs: 300,
        log_payloads: false,
        forward_to: vec![],
        event_type: "inbound.github".into(),
        created_at: t0,
        updated_at: t0,
    };
    let tok = NewSourceToken {
        token_hash: [7; 32],
        prefix: "wh_race".into(),
        created_at: t0,
    };
    a.create_source(src, tok).await.unwrap();
    for round in 0..20u8 {
        let accept = |id: String| InboundAccept {
            event: NewEvent {
                source_id: Some("src_race".into()),
                ..event(&id, t0 + 1)
            },
            route: InboundRoute::default(),
            seen: Some(SeenKey {
                key_hash: [round; 32],
                expires_at: t0 + 300_000,
            }),
            audit: NewAuditEntry {
                source_id: Some("src_race".into()),
                received_at: t0 + 1,
                outcome: "ACCEPTED".into(),
                status: 202,
                count: 1,
                ..Default::default()
            },
        };
        let (x, y) = tokio::join!(
            a.accept_inbound(accept(format!("evt_a{round}"))),
            b.accept_inbound(accept(format!("evt_b{round}")))
        );
        let accepted = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|o| matches!(o, AcceptOutcome::Accepted { .. }))
            .count();
        assert_eq!(accepted, 1, "round {round}");
    }
}

#[tokio::test]
async fn sealed_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::sealed_store(&s).await;
}

#[tokio::test]
async fn event_type_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::event_type_store(&s).await;
}

#[tokio::test]
async fn recovery_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::recovery_store(&s).await;
}

#[tokio::test]
async fn probe_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::probe_store(&s).await;
}

#[tokio::test]
async fn certificate_store_conformance() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let s = PgStore::connect(&url, opts()).await.unwrap();
    conformance::certificate_store(&s).await;
    // A second instance starting with the same list changes nothing.
    let again = PgStore::connect(&url, opts()).await.unwrap();
    let stored = hookwarden_store::CertificateStore::published_ranges(&again)
        .await
        .unwrap();
    let sync = hookwarden_store::CertificateStore::sync_published_ranges(
        &again,
        stored
            .as_ref()
            .map(|r| r.ranges.clone())
            .unwrap_or_default(),
        i64::MAX / 2,
    )
    .await
    .unwrap();
    assert_eq!(sync.previous, None);
    assert_eq!(Some(sync.current), stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_announced_by_one_instance_reach_the_others_quickly() {
    let Some(dbs) = Databases::new() else { return };
    let url = dbs.create().await;
    let a = PgStore::connect(&url, opts()).await.unwrap();
    let b = PgStore::connect(&url, opts()).await.unwrap();
    assert!(a.is_shared());
    let mut rx_a = a.watch_changes().expect("postgres watches changes");
    let mut rx_b = b.watch_changes().expect("postgres watches changes");
    // Each instance's LISTEN is asynchronous: announce until both have heard one (bounded), so
    // that neither listener is still connecting when the measured changes go out.
    let deadline = Instant::now() + Duration::from_secs(10);
    let warm = Change::Endpoint("ep_warm".into());
    let (mut a_heard, mut b_heard) = (false, false);
    while !(a_heard && b_heard) {
        a.announce_change(&warm).await.unwrap();
        let settle = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                Ok(c) = rx_a.recv() => a_heard |= c == warm,
                Ok(c) = rx_b.recv() => b_heard |= c == warm,
                _ = &mut settle => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "a change never reached both instances (a: {a_heard}, b: {b_heard})"
        );
    }
    while rx_b.try_recv().is_ok() {}
    while rx_a.try_recv().is_ok() {}
    for change in [
        Change::Source("src_1".into()),
        Change::Endpoint("ep_2".into()),
        Change::Certificate("cert_3".into()),
    ] {
        let sent = Instant::now();
        a.announce_change(&change).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match rx_b.recv().await {
                    Ok(c) if c == change => return c,
                    Ok(_) => continue,
                    Err(e) => panic!("receiving: {e}"),
                }
            }
        })
        .await
        .expect("a change must reach the other instance within one second");
        assert_eq!(heard, change);
        assert!(sent.elapsed() < Duration::from_secs(1));
        // The announcing instance hears its own change too (its caches use the same path; the
        // one-second promise is about other instances, so a loaded machine gets more time here).
        let own = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(c) = rx_a.recv().await
                    && c == change
                {
                    return c;
                }
            }
        })
        .await
        .expect("the announcing instance hears its own change");
        assert_eq!(own, change);
    }
    a.close().await;
    b.close().await;
}
