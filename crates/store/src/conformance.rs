//! The behaviour every [`Store`] backend must have, as one suite of checks that each backend's
//! tests run against a fresh, empty store. Compiled for this crate's tests and, with the
//! `conformance` feature, for other test crates (tests/postgres.rs, backends elsewhere); never
//! part of the library otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed check panics with what it expected"
)]

use crate::*;
use std::collections::BTreeMap;

mod bounded;
mod event_types;
mod probes;
mod recoveries;
mod text;

pub use bounded::{
    certificate_pages_bounded_in_bytes, pages_bounded_in_bytes, source_pages_bounded_in_bytes,
};
pub use event_types::event_type_store;
pub use probes::probe_store;
pub use recoveries::recovery_store;
pub use text::{audit_payload_bytes, nul_in_text};

pub(crate) fn endpoint(id: &str, types: &[&str]) -> Endpoint {
    Endpoint {
        id: id.into(),
        url: format!("https://{id}.example/hook"),
        description: String::new(),
        event_types: types.iter().map(|s| s.to_string()).collect(),
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
        created_at: 1_000,
        updated_at: 1_000,
    }
}

fn event(id: &str, ty: &str, at: Millis) -> NewEvent {
    NewEvent {
        id: id.into(),
        event_type: ty.into(),
        payload: r#"{"a":1}"#.into(),
        idempotency_key: None,
        created_at: at,
        source_id: None,
        only_endpoints: None,
    }
}

pub(crate) fn attempt(no: i64, at: Millis, code: Option<i64>) -> NewAttempt {
    NewAttempt {
        attempt_no: no,
        started_at: at,
        duration_ms: 3,
        status_code: code,
        response_body: Some("ok".into()),
        response_truncated: false,
        error_class: if code.is_some_and(|c| c < 300) {
            None
        } else {
            Some("http_status".into())
        },
        error_message: None,
        local_addr: Some("127.0.0.1:5000".into()),
        remote_addr: Some("127.0.0.1:443".into()),
        request_headers: None,
    }
}

pub(crate) const NO_BREAKER: BreakerPolicy = BreakerPolicy {
    enabled: false,
    failure_threshold: 1,
    min_failing_ms: 0,
};

fn created(r: CreateEventResult) -> (Event, Vec<CreatedDelivery>) {
    match r {
        CreateEventResult::Created { event, deliveries } => (event, deliveries),
        CreateEventResult::Duplicate { .. } => panic!("expected a new event"),
    }
}

/// Runs every check. `fresh` must return a new, empty store each time it is called.
pub async fn run_all<S: Store + ApiKeyStore, F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    fresh()
        .await
        .ping()
        .await
        .expect("a fresh store answers a ping");
    api_keys_and_first_start(&fresh().await).await;
    endpoint_crud_and_subscriptions(&fresh().await).await;
    idempotency(&fresh().await).await;
    claiming_and_leases(&fresh().await).await;
    outcomes_and_breaker(&fresh().await).await;
    failure_count_follows_the_order_of_a_batch(&fresh().await).await;
    late_reports_change_nothing(&fresh().await).await;
    secret_rotation(&fresh().await).await;
    wildcard_subscriptions(&fresh().await).await;
    payload_filters(&fresh().await).await;
    disable_pauses_and_enable_resumes(&fresh().await).await;
    delete_cancels(&fresh().await).await;
    pagination(&fresh().await).await;
    events_by_type(&fresh().await).await;
    retention(&fresh().await).await;
    delivery_statistics(&fresh().await).await;
    nul_in_text(&fresh().await).await;
    pages_bounded_in_bytes(&fresh().await).await;
}

pub async fn api_keys_and_first_start<S: Store + ApiKeyStore>(s: &S) {
    assert!(s.take_first_start().await.unwrap());
    assert!(!s.take_first_start().await.unwrap());
    let new_key = |id: &str, hash: u8, expires_at: Option<Millis>| NewApiKey {
        id: id.into(),
        key_hash: [hash; 32],
        prefix: "hwk_abcd".into(),
        name: format!("name of {id}"),
        description: "test".into(),
        created_at: 5,
        expires_at,
    };
    let k = s.create_api_key(new_key("key_1", 7, None)).await.unwrap();
    assert_eq!(k.name, "name of key_1");
    assert_eq!(s.find_api_key([7; 32], 10).await.unwrap(), Some(k.clone()));
    assert_eq!(s.find_api_key([8; 32], 10).await.unwrap(), None);
    assert!(matches!(
        s.create_api_key(new_key("key_1b", 7, None)).await,
        Err(StoreError::Conflict(_))
    ));
    // Expiry: usable before, not at or after.
    let e = s
        .create_api_key(new_key("key_2", 9, Some(100)))
        .await
        .unwrap();
    assert_eq!(s.find_api_key([9; 32], 99).await.unwrap(), Some(e));
    assert_eq!(s.find_api_key([9; 32], 100).await.unwrap(), None);
    assert_eq!(s.count_usable_api_keys(99).await.unwrap(), 2);
    assert_eq!(s.count_usable_api_keys(100).await.unwrap(), 1);
    // Use is recorded and only moves forward.
    s.touch_api_key("key_1", 50).await.unwrap();
    s.touch_api_key("key_1", 40).await.unwrap();
    assert_eq!(
        s.get_api_key("key_1").await.unwrap().unwrap().last_used_at,
        Some(50)
    );
    // Revocation: refused from then on, listed with its time, the first time kept.
    assert!(s.revoke_api_key("key_1", 60).await.unwrap());
    assert!(s.revoke_api_key("key_1", 70).await.unwrap());
    assert!(!s.revoke_api_key("key_none", 70).await.unwrap());
    assert_eq!(s.find_api_key([7; 32], 61).await.unwrap(), None);
    let listed = s.list_api_keys(Page::new(None, 10)).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key_2", "key_1"]);
    assert!(!listed.more);
    let first = s.list_api_keys(Page::new(None, 1)).await.unwrap();
    assert_eq!((first.len(), first.more), (1, true));
    assert_eq!(listed[1].revoked_at, Some(60));
    assert!(!listed[1].usable_at(61) && listed[1].usable_at(59));
    let next = s
        .list_api_keys(Page::new(Some("key_2".into()), 10))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(s.count_usable_api_keys(61).await.unwrap(), 1);
}

pub async fn endpoint_crud_and_subscriptions<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_b", &["invoice.paid"]), "whsec_b".into())
        .await
        .unwrap();
    let got = s.get_endpoint("ep_b").await.unwrap().unwrap();
    assert_eq!(got.event_types, vec!["invoice.paid".to_string()]);

    let (_, d) = created(
        s.create_event(event("evt_1", "invoice.paid", 10), None, 0)
            .await
            .unwrap(),
    );
    let mut eps: Vec<_> = d.iter().map(|d| d.endpoint_id.clone()).collect();
    eps.sort();
    assert_eq!(eps, vec!["ep_a", "ep_b"]);
    let (_, d) = created(
        s.create_event(event("evt_2", "user.created", 11), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].endpoint_id, "ep_a");

    // Changing the filter changes routing.
    let mut b = got.clone();
    b.event_types = vec!["user.created".into()];
    b.description = "changed".into();
    assert!(s.update_endpoint(b).await.unwrap());
    let (_, d) = created(
        s.create_event(event("evt_3", "user.created", 12), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(d.len(), 2);
    assert_eq!(
        s.get_endpoint("ep_b").await.unwrap().unwrap().description,
        "changed"
    );
    // A retry schedule is stored, changed and cleared like any other field.
    let mut b = s.get_endpoint("ep_b").await.unwrap().unwrap();
    assert!(b.retry_schedule.is_empty());
    b.retry_schedule = vec![5, 300, 2_592_000];
    assert!(s.update_endpoint(b.clone()).await.unwrap());
    assert_eq!(
        s.get_endpoint("ep_b")
            .await
            .unwrap()
            .unwrap()
            .retry_schedule,
        vec![5, 300, 2_592_000]
    );
    b.retry_schedule.clear();
    assert!(s.update_endpoint(b).await.unwrap());
    assert!(
        s.get_endpoint("ep_b")
            .await
            .unwrap()
            .unwrap()
            .retry_schedule
            .is_empty()
    );
    let mut c = endpoint("ep_c", &["none.such"]);
    c.retry_schedule = vec![1];
    s.create_endpoint(c, "whsec_c".into()).await.unwrap();
    assert_eq!(
        s.get_endpoint("ep_c")
            .await
            .unwrap()
            .unwrap()
            .retry_schedule,
        vec![1]
    );
    assert!(
        !s.update_endpoint(endpoint("ep_missing", &[]))
            .await
            .unwrap()
    );

    // Explicit routing ignores the filter and skips unknown ids.
    let mut ev = event("evt_4", "other", 13);
    ev.only_endpoints = Some(vec!["ep_b".into(), "ep_nope".into(), "ep_b".into()]);
    let (_, d) = created(s.create_event(ev, None, 0).await.unwrap());
    assert_eq!(d.len(), 1);

    let listed = s
        .list_deliveries(
            DeliveryFilter {
                event_id: Some("evt_1".into()),
                ..Default::default()
            },
            Page::new(None, 10),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d.status == DeliveryStatus::Pending));
    assert_eq!(
        s.get_event("evt_1").await.unwrap().unwrap().payload,
        r#"{"a":1}"#
    );
}

pub async fn idempotency<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    let mut e1 = event("evt_1", "t", 1_000);
    e1.idempotency_key = Some("k1".into());
    let (first, _) = created(s.create_event(e1, None, 86_400_000).await.unwrap());
    let mut e2 = event("evt_2", "t", 2_000);
    e2.idempotency_key = Some("k1".into());
    match s.create_event(e2, None, 86_400_000).await.unwrap() {
        CreateEventResult::Duplicate { event, deliveries } => {
            assert_eq!(event.id, first.id);
            assert_eq!(deliveries, 1);
        }
        CreateEventResult::Created { .. } => panic!("duplicate key created a new event"),
    }
    assert!(s.get_event("evt_2").await.unwrap().is_none());
    // After the key's lifetime the key may be used again.
    let mut e3 = event("evt_3", "t", 1_000 + 86_400_000);
    e3.idempotency_key = Some("k1".into());
    let (third, _) = created(s.create_event(e3, None, 86_400_000).await.unwrap());
    assert_eq!(third.id, "evt_3");
}

pub async fn claiming_and_leases<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    // Fast path: leased at creation, not claimable until the lease ends.
    let lease = LeaseRequest {
        owner: "me".into(),
        until: 60_000,
        max: 1,
    };
    let (_, d) = created(
        s.create_event(event("evt_1", "t", 100), Some(lease), 0)
            .await
            .unwrap(),
    );
    assert!(d[0].leased);
    s.create_event(event("evt_2", "t", 101), None, 0)
        .await
        .unwrap();
    let c = s.claim_due("other", 200, 30_000, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].event_id, "evt_2");
    assert_eq!(&*c[0].payload, r#"{"a":1}"#);
    assert_eq!(c[0].attempt_count, 0);
    // Nothing else is due now; after the fast-path lease expires, it is claimable again.
    assert!(
        s.claim_due("other", 300, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.claim_due("other", 60_001, 90_000, 10).await.unwrap();
    let ids: Vec<_> = again.iter().map(|c| c.event_id.as_str()).collect();
    assert!(
        ids.contains(&"evt_1"),
        "expired lease must be claimable: {ids:?}"
    );
    // Releasing makes everything due at once.
    assert!(s.release_leases(None, 70_000).await.unwrap() >= 1);
    assert_eq!(
        s.claim_due("x", 70_000, 100_000, 10).await.unwrap().len(),
        2
    );
    let counts = s.delivery_counts(70_000).await.unwrap();
    assert_eq!(counts.pending, 2);
    queue_stats_are_bounded(s).await;
}

/// `queue_stats`: due deliveries counted up to the cap, the oldest due time, leased ones not
/// due. Runs on a store whose two deliveries of `ep_a` are leased until 100 000.
async fn queue_stats_are_bounded<S: Store>(s: &S) {
    let q = s.queue_stats(70_000, 100).await.unwrap();
    assert_eq!(q, QueueStats::default(), "leased deliveries are not due");
    for (i, at) in [(3, 80_000), (4, 81_000), (5, 82_000)] {
        s.create_event(event(&format!("evt_{i}"), "t", at), None, 0)
            .await
            .unwrap();
    }
    let q = s.queue_stats(90_000, 100).await.unwrap();
    assert_eq!(
        (q.due, q.due_capped, q.oldest_due_at),
        (3, false, Some(80_000))
    );
    let q = s.queue_stats(90_000, 2).await.unwrap();
    assert_eq!(
        (q.due, q.due_capped, q.oldest_due_at),
        (2, true, Some(80_000))
    );
    let q = s.queue_stats(81_500, 100).await.unwrap();
    assert_eq!(
        (q.due, q.oldest_due_at),
        (2, Some(80_000)),
        "not yet due is not counted"
    );
    let q = s.queue_stats(50_000, 100).await.unwrap();
    assert_eq!((q.due, q.oldest_due_at), (0, None));
}

/// Endpoint `ep_a` (all types), `n` events at 100 ms (n ≤ 10) and their deliveries, claimed by
/// "me" until 10 000.
async fn claimed_on_one_endpoint<S: Store>(s: &S, n: usize) -> Vec<Claimed> {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    for i in 0..n {
        s.create_event(event(&format!("evt_{i}"), "t", 100), None, 0)
            .await
            .unwrap();
    }
    let c = s.claim_due("me", 100, 10_000, 10).await.unwrap();
    assert_eq!(c.len(), n);
    c
}

/// A worker whose lease expired (and passed to another worker, or to itself again under a new
/// lease) or was released reports late: the delivery and the breaker stay as they are, and the
/// attempt is logged as `superseded`. The report of the current lease holder applies.
pub async fn late_reports_change_nothing<S: Store>(s: &S) {
    let trip_at_once = BreakerPolicy {
        enabled: true,
        failure_threshold: 1,
        min_failing_ms: 0,
    };
    let first = claimed_on_one_endpoint(s, 4).await; // "me", lease until 10_000
    let report = |c: &Claimed, owner: &str, until: Millis, next: Next, code: Option<i64>| Outcome {
        delivery_id: c.delivery_id.clone(),
        endpoint_id: c.endpoint_id.clone(),
        attempt: code.map(|code| attempt(1, 150, Some(code))),
        next,
        lease_owner: owner.into(),
        lease_until: until,
    };
    // The lease expires; another worker claims everything and finishes two deliveries.
    let second = s.claim_due("other", 20_000, 30_000, 10).await.unwrap();
    assert_eq!(second.len(), 4, "expired leases are claimable");
    let by_id = |id: &str| second.iter().find(|c| c.delivery_id == id).unwrap().clone();
    let (d0, d1) = (by_id(&first[0].delivery_id), by_id(&first[1].delivery_id));
    assert_eq!(d0.lease_until, 30_000);
    s.record_outcomes(
        vec![
            report(&d0, "other", 30_000, Next::Succeeded, Some(200)),
            report(&d1, "other", 30_000, Next::Failed, Some(400)),
        ],
        NO_BREAKER,
        20_100,
    )
    .await
    .unwrap();
    let snapshot = || async {
        let mut out = Vec::new();
        for c in &first {
            out.push(s.get_delivery(&c.delivery_id).await.unwrap().unwrap());
        }
        let ep = s.get_endpoint("ep_a").await.unwrap().unwrap();
        (out, ep.enabled, ep.consecutive_failures, ep.failing_since)
    };
    let before = snapshot().await;

    // The first worker reports late on all four: a failure that would trip the breaker at
    // once, a success, a retry and a deferral (two of them held by "other" right now).
    let tripped = s
        .record_outcomes(
            vec![
                report(&first[0], "me", 10_000, Next::Failed, Some(500)),
                report(&first[1], "me", 10_000, Next::Succeeded, Some(200)),
                report(
                    &first[2],
                    "me",
                    10_000,
                    Next::Retry { at: 99_000 },
                    Some(503),
                ),
                report(&first[3], "me", 10_000, Next::Defer { at: 99_000 }, None),
            ],
            trip_at_once,
            20_200,
        )
        .await
        .unwrap();
    assert!(tripped.is_empty(), "a late failure tripped the breaker");
    assert_eq!(snapshot().await, before, "a late report moved something");
    let outcomes_of = |id: String| async move {
        s.list_attempts(&id, AttemptPage::default())
            .await
            .unwrap()
            .rows
            .into_iter()
            .map(|a| a.outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outcomes_of(first[0].delivery_id.clone()).await,
        ["succeeded", "superseded"],
        "the late attempt is logged, marked as such"
    );

    // The current holder's report applies; the same worker under its new lease too.
    let d2 = by_id(&first[2].delivery_id);
    s.record_outcomes(
        vec![report(
            &d2,
            "other",
            30_000,
            Next::Retry { at: 40_000 },
            Some(503),
        )],
        NO_BREAKER,
        20_300,
    )
    .await
    .unwrap();
    let d = s.get_delivery(&d2.delivery_id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.next_attempt_at, d.attempt_count),
        (DeliveryStatus::Pending, 40_000, 1)
    );
    let again = s.claim_due("other", 40_000, 50_000, 10).await.unwrap();
    let d2 = again
        .iter()
        .find(|c| c.delivery_id == d2.delivery_id)
        .unwrap()
        .clone();
    // Released (a shutdown) before the report: late too.
    s.release_leases(Some("other"), 40_001).await.unwrap();
    let before = s.get_delivery(&d2.delivery_id).await.unwrap().unwrap();
    s.record_outcomes(
        vec![report(&d2, "other", 50_000, Next::Failed, Some(400))],
        NO_BREAKER,
        40_002,
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_delivery(&d2.delivery_id).await.unwrap().unwrap(),
        before
    );

    // Leased at creation (the publish fast path): a report under that lease applies; so does
    // one for a delivery paused meanwhile (its endpoint disabled by hand) that still holds it.
    let leased_event = |id: &'static str| async move {
        let lease = LeaseRequest {
            owner: "fast".into(),
            until: 70_000,
            max: 10,
        };
        match s
            .create_event(event(id, "t", 60_000), Some(lease), 0)
            .await
            .unwrap()
        {
            CreateEventResult::Created { deliveries, .. } => {
                assert!(
                    deliveries.len() == 1 && deliveries[0].leased,
                    "{deliveries:?}"
                );
                deliveries[0].clone()
            }
            CreateEventResult::Duplicate { .. } => panic!("not a duplicate"),
        }
    };
    let fast_report = |d: &CreatedDelivery, next: Next, code: i64| Outcome {
        delivery_id: d.id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        attempt: Some(attempt(1, 60_001, Some(code))),
        next,
        lease_owner: "fast".into(),
        lease_until: 70_000,
    };
    let fast = leased_event("evt_fast").await;
    s.record_outcomes(
        vec![fast_report(&fast, Next::Succeeded, 200)],
        NO_BREAKER,
        60_002,
    )
    .await
    .unwrap();
    let d = s.get_delivery(&fast.id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Succeeded, 1));

    let paused = leased_event("evt_paused").await;
    assert!(
        s.set_endpoint_enabled("ep_a", false, Some("manual".into()), 60_010)
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_delivery(&paused.id).await.unwrap().unwrap().status,
        DeliveryStatus::Paused
    );
    s.record_outcomes(
        vec![fast_report(&paused, Next::Retry { at: 80_000 }, 503)],
        NO_BREAKER,
        60_020,
    )
    .await
    .unwrap();
    let d = s.get_delivery(&paused.id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.attempt_count, d.next_attempt_at),
        (DeliveryStatus::Paused, 1, 80_000),
        "the holder's report applies; the delivery stays paused"
    );
}

/// In one batch of outcomes, the endpoint's failure count is that of the failures after its
/// last success, in the batch's order (several successes, then a failure, count one).
pub async fn failure_count_follows_the_order_of_a_batch<S: Store>(s: &S) {
    let c = claimed_on_one_endpoint(s, 8).await;
    let out = |c: &Claimed, ok: bool| Outcome {
        delivery_id: c.delivery_id.clone(),
        endpoint_id: c.endpoint_id.clone(),
        attempt: Some(attempt(1, 150, Some(if ok { 200 } else { 503 }))),
        next: if ok {
            Next::Succeeded
        } else {
            Next::Retry { at: 5_000 }
        },
        lease_owner: "me".into(),
        lease_until: c.lease_until,
    };
    let failures = || async {
        s.get_endpoint("ep_a")
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures
    };
    // failure, success, success, failure: one.
    let batch = [(0, false), (1, true), (2, true), (3, false)];
    s.record_outcomes(
        batch.iter().map(|&(i, ok)| out(&c[i], ok)).collect(),
        NO_BREAKER,
        200,
    )
    .await
    .unwrap();
    assert_eq!(failures().await, 1);
    // failure, success, failure, success: none.
    let batch = [(4, false), (5, true), (6, false), (7, true)];
    s.record_outcomes(
        batch.iter().map(|&(i, ok)| out(&c[i], ok)).collect(),
        NO_BREAKER,
        300,
    )
    .await
    .unwrap();
    assert_eq!(failures().await, 0);
}

pub async fn outcomes_and_breaker<S: Store>(s: &S) {
    let c = claimed_on_one_endpoint(s, 3).await;
    let out = |c: &Claimed, next: Next, code: i64| Outcome {
        delivery_id: c.delivery_id.clone(),
        endpoint_id: c.endpoint_id.clone(),
        attempt: Some(attempt(1, 150, Some(code))),
        next,
        lease_owner: "me".into(),
        lease_until: c.lease_until,
    };
    let tripped = s
        .record_outcomes(
            vec![
                out(&c[0], Next::Succeeded, 200),
                out(&c[1], Next::Retry { at: 5_000 }, 503),
                out(&c[2], Next::Failed, 400),
            ],
            NO_BREAKER,
            200,
        )
        .await
        .unwrap();
    assert!(tripped.is_empty());
    let d0 = s.get_delivery(&c[0].delivery_id).await.unwrap().unwrap();
    assert_eq!(
        (d0.status, d0.attempt_count, d0.last_status_code),
        (DeliveryStatus::Succeeded, 1, Some(200))
    );
    let d1 = s.get_delivery(&c[1].delivery_id).await.unwrap().unwrap();
    assert_eq!(
        (d1.status, d1.next_attempt_at),
        (DeliveryStatus::Pending, 5_000)
    );
    let d2 = s.get_delivery(&c[2].delivery_id).await.unwrap().unwrap();
    assert_eq!(d2.status, DeliveryStatus::Failed);
    let atts = s
        .list_attempts(&c[1].delivery_id, AttemptPage::default())
        .await
        .unwrap();
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].outcome, "retrying");
    assert_eq!(atts[0].local_addr.as_deref(), Some("127.0.0.1:5000"));
    // 2 failures in a row so far (the success came first).
    assert_eq!(
        s.get_endpoint("ep_a")
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        2
    );

    // A stale owner cannot move a delivery someone else holds now.
    let re = s.claim_due("other", 5_000, 20_000, 10).await.unwrap();
    assert_eq!(re.len(), 1);
    s.record_outcomes(
        vec![out(&re[0], Next::Retry { at: 6_000 }, 500)],
        NO_BREAKER,
        5_100,
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_delivery(&re[0].delivery_id)
            .await
            .unwrap()
            .unwrap()
            .next_attempt_at,
        20_000
    );
    // Nor count towards the breaker: its report is late.
    assert_eq!(
        s.get_endpoint("ep_a")
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        2
    );

    // The breaker trips once the threshold and minimum duration are both reached.
    let breaker = BreakerPolicy {
        enabled: true,
        failure_threshold: 3,
        min_failing_ms: 1_000,
    };
    let mut o = out(&re[0], Next::Retry { at: 30_000 }, 500);
    o.lease_owner = "other".into();
    o.lease_until = re[0].lease_until;
    let tripped = s.record_outcomes(vec![o], breaker, 5_200).await.unwrap();
    assert_eq!(tripped.len(), 1, "3 failures since 150 ms, 5 s ago");
    assert_eq!(tripped[0].endpoint_id, "ep_a");
    let ep = s.get_endpoint("ep_a").await.unwrap().unwrap();
    assert!(!ep.enabled);
    assert_eq!(ep.disabled_reason.as_deref(), Some("circuit_breaker"));
    assert_eq!(
        s.get_delivery(&re[0].delivery_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Paused
    );
    // Re-enabling resumes (due now) and resets the counters.
    assert!(
        s.set_endpoint_enabled("ep_a", true, None, 40_000)
            .await
            .unwrap()
    );
    let d = s.get_delivery(&re[0].delivery_id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.next_attempt_at),
        (DeliveryStatus::Pending, 40_000)
    );
    assert_eq!(
        s.get_endpoint("ep_a")
            .await
            .unwrap()
            .unwrap()
            .consecutive_failures,
        0
    );

    // Manual retry of a finished delivery.
    let r = s
        .retry_delivery(&c[2].delivery_id, 50_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Pending, 50_000)
    );
    assert!(
        s.retry_delivery("dlv_nope", 50_000)
            .await
            .unwrap()
            .is_none()
    );

    // Deferral moves the time without counting an attempt.
    let cl = s.claim_due("me", 50_000, 60_000, 10).await.unwrap();
    let target = cl
        .iter()
        .find(|x| x.delivery_id == c[2].delivery_id)
        .unwrap();
    s.record_outcomes(
        vec![Outcome {
            delivery_id: target.delivery_id.clone(),
            endpoint_id: target.endpoint_id.clone(),
            attempt: None,
            next: Next::Defer { at: 55_000 },
            lease_owner: "me".into(),
            lease_until: target.lease_until,
        }],
        NO_BREAKER,
        50_001,
    )
    .await
    .unwrap();
    let d = s.get_delivery(&c[2].delivery_id).await.unwrap().unwrap();
    assert_eq!((d.next_attempt_at, d.attempt_count), (55_000, 1));
}

/// `invoice.*` matches every type under `invoice.` at any depth, never `invoice` itself nor
/// `invoices.x`; each endpoint gets one delivery however many of its subscriptions match.
pub async fn wildcard_subscriptions<S: Store>(s: &S) {
    assert_eq!(
        subscription_keys("invoice.paid.late"),
        ["invoice.paid.late", "invoice.paid.*", "invoice.*", "*"]
    );
    assert_eq!(subscription_keys("ping"), ["ping", "*"]);
    s.create_endpoint(endpoint("ep_inv", &["invoice.*"]), "whsec_a".into())
        .await
        .unwrap();
    s.create_endpoint(
        endpoint("ep_both", &["invoice.*", "invoice.paid", "invoice.paid.*"]),
        "whsec_b".into(),
    )
    .await
    .unwrap();
    s.create_endpoint(endpoint("ep_all", &[]), "whsec_c".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_exact", &["invoice"]), "whsec_d".into())
        .await
        .unwrap();
    let routed = |d: Vec<CreatedDelivery>| {
        let mut eps: Vec<String> = d.into_iter().map(|d| d.endpoint_id).collect();
        eps.sort();
        eps
    };
    for (i, (ty, want)) in [
        ("invoice.paid", vec!["ep_all", "ep_both", "ep_inv"]),
        ("invoice.paid.late", vec!["ep_all", "ep_both", "ep_inv"]),
        ("invoice", vec!["ep_all", "ep_exact"]),
        ("invoices.paid", vec!["ep_all"]),
        ("user.created", vec!["ep_all"]),
    ]
    .into_iter()
    .enumerate()
    {
        let (_, d) = created(
            s.create_event(event(&format!("evt_w{i}"), ty, 10 + i as i64), None, 0)
                .await
                .unwrap(),
        );
        assert_eq!(routed(d), want, "{ty}");
    }
}

/// An endpoint's payload filter is applied in the transaction that writes the deliveries:
/// subscribed and listed (`only_endpoints`) alike; a filter that does not compile matches
/// nothing; clearing it delivers everything again.
pub async fn payload_filters<S: Store>(s: &S) {
    let mut big = endpoint("ep_big", &["order.*"]);
    big.filter = Some(r#"{"data.amount": {"$gte": 100}}"#.into());
    s.create_endpoint(big.clone(), "whsec_a".into())
        .await
        .unwrap();
    let mut broken = endpoint("ep_broken", &[]);
    broken.filter = Some(r#"{"data.amount": {"$wat": 1}}"#.into());
    s.create_endpoint(broken, "whsec_b".into()).await.unwrap();
    s.create_endpoint(endpoint("ep_plain", &["order.*"]), "whsec_c".into())
        .await
        .unwrap();
    let stored = s.get_endpoint("ep_big").await.unwrap().unwrap();
    assert_eq!(stored.filter, big.filter);
    assert_eq!(stored.transformation, None);
    let routed = |d: Vec<CreatedDelivery>| {
        let mut eps: Vec<String> = d.into_iter().map(|d| d.endpoint_id).collect();
        eps.sort();
        eps
    };
    let publish = |id: &str, payload: &str, only: Option<Vec<String>>| {
        let mut ev = event(id, "order.placed", 10);
        ev.payload = payload.into();
        ev.only_endpoints = only;
        ev
    };
    let (_, d) = created(
        s.create_event(publish("evt_f1", r#"{"amount":250}"#, None), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(routed(d), ["ep_big", "ep_plain"]);
    let (_, d) = created(
        s.create_event(publish("evt_f2", r#"{"amount":5}"#, None), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(routed(d), ["ep_plain"]);
    let (_, d) = created(
        s.create_event(
            publish(
                "evt_f3",
                r#"{"amount":5}"#,
                Some(vec!["ep_big".into(), "ep_plain".into(), "ep_broken".into()]),
            ),
            None,
            0,
        )
        .await
        .unwrap(),
    );
    assert_eq!(routed(d), ["ep_plain"]);
    big.filter = None;
    assert!(s.update_endpoint(big.clone()).await.unwrap());
    let (_, d) = created(
        s.create_event(publish("evt_f4", r#"{"amount":5}"#, None), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(routed(d), ["ep_big", "ep_plain"]);
    big.transformation = Some("fn handler(webhook) { webhook }".into());
    big.filter = Some(r#"{"type": "order.placed"}"#.into());
    assert!(s.update_endpoint(big.clone()).await.unwrap());
    let stored = s.get_endpoint("ep_big").await.unwrap().unwrap();
    assert_eq!(
        (stored.filter, stored.transformation),
        (big.filter, big.transformation)
    );
}

pub async fn secret_rotation<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_old".into())
        .await
        .unwrap();
    assert!(
        s.rotate_secret("ep_a", "whsec_new".into(), 10_000, 5_000)
            .await
            .unwrap()
    );
    let active: Vec<_> = s
        .active_secrets("ep_a", 6_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.secret)
        .collect();
    assert_eq!(active, vec!["whsec_new", "whsec_old"]);
    let active: Vec<_> = s
        .active_secrets("ep_a", 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.secret)
        .collect();
    assert_eq!(active, vec!["whsec_new"]);
    // A second rotation never extends an earlier expiry.
    assert!(
        s.rotate_secret("ep_a", "whsec_newer".into(), 1_000_000, 6_000)
            .await
            .unwrap()
    );
    let at_20k: Vec<_> = s
        .active_secrets("ep_a", 20_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.secret)
        .collect();
    assert_eq!(at_20k, vec!["whsec_newer", "whsec_new"]);
    assert!(!s.rotate_secret("ep_nope", "x".into(), 1, 1).await.unwrap());
}

pub async fn disable_pauses_and_enable_resumes<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    s.create_event(event("evt_1", "t", 100), None, 0)
        .await
        .unwrap();
    assert!(
        s.set_endpoint_enabled("ep_a", false, Some("manual".into()), 200)
            .await
            .unwrap()
    );
    // Events for a disabled endpoint wait too.
    let (_, d) = created(
        s.create_event(event("evt_2", "t", 300), None, 0)
            .await
            .unwrap(),
    );
    assert!(!d[0].leased);
    assert!(
        s.claim_due("me", 1_000, 2_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.delivery_counts(1_000).await.unwrap().paused, 2);
    assert!(
        s.set_endpoint_enabled("ep_a", true, None, 1_500)
            .await
            .unwrap()
    );
    assert_eq!(s.claim_due("me", 1_500, 2_000, 10).await.unwrap().len(), 2);
}

pub async fn delete_cancels<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    s.create_event(event("evt_1", "t", 100), None, 0)
        .await
        .unwrap();
    assert!(s.delete_endpoint("ep_a", 200).await.unwrap());
    assert!(!s.delete_endpoint("ep_a", 200).await.unwrap());
    assert!(s.get_endpoint("ep_a").await.unwrap().is_none());
    assert!(
        s.claim_due("me", 1_000, 2_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.delivery_counts(1_000).await.unwrap().cancelled, 1);
    let (_, d) = created(
        s.create_event(event("evt_2", "t", 300), None, 0)
            .await
            .unwrap(),
    );
    assert!(d.is_empty());
}

pub async fn pagination<S: Store>(s: &S) {
    for i in 0..25 {
        s.create_endpoint(endpoint(&format!("ep_{i:03}"), &[]), "whsec".into())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_endpoints(Page::new(before.clone(), 10))
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id.clone());
        seen.extend(page.into_iter().map(|e| e.id));
        assert!(seen.len() <= 25, "pagination must terminate");
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "ep_024");
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}

pub async fn events_by_type<S: Store>(s: &S) {
    for i in 0..30 {
        let ty = ["order.created", "endpoint.failing", "source.anomaly"][i % 3];
        s.create_event(event(&format!("evt_{i:03}"), ty, 100 + i as i64), None, 0)
            .await
            .unwrap();
    }
    let filter = |types: &[&str]| EventFilter {
        event_types: types.iter().map(|t| t.to_string()).collect(),
    };
    let all = s
        .list_events(filter(&[]), Page::new(None, 100))
        .await
        .unwrap();
    assert_eq!(all.len(), 30);
    // Two types, newest first, paged.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_events(
                filter(&["source.anomaly", "endpoint.failing"]),
                Page::new(before.clone(), 7),
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id.clone());
        seen.extend(page);
        assert!(seen.len() <= 20, "pagination must terminate");
    }
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|e| e.event_type != "order.created"));
    assert_eq!(seen[0].id, "evt_029");
    assert!(seen.windows(2).all(|w| w[0].id > w[1].id));
    let one = s
        .list_events(filter(&["order.created"]), Page::new(None, 100))
        .await
        .unwrap();
    assert_eq!(one.len(), 10);
    assert!(one.iter().all(|e| e.event_type == "order.created"));
    let none = s
        .list_events(filter(&["no.such"]), Page::new(None, 100))
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub async fn retention<S: Store>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_b", &["b.only"]), "whsec_b".into())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 1..=3 {
        let (_, d) = created(
            s.create_event(event(&format!("evt_{i}"), "t", 100), None, 0)
                .await
                .unwrap(),
        );
        ids.push(d[0].id.clone());
    }
    let (d1, d2, d3) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    assert_eq!(s.claim_due("me", 100, 10_000, 10).await.unwrap().len(), 3);
    let out = |id: &str, next: Next, code: i64, at: Millis| Outcome {
        delivery_id: id.into(),
        endpoint_id: "ep_a".into(),
        attempt: Some(attempt(1, at, Some(code))),
        next,
        lease_owner: "me".into(),
        lease_until: 10_000,
    };
    s.record_outcomes(
        vec![
            out(&d1, Next::Retry { at: 200 }, 503, 150),
            out(&d2, Next::Failed, 400, 150),
            out(&d3, Next::Retry { at: 1_000_000 }, 503, 150),
        ],
        NO_BREAKER,
        150,
    )
    .await
    .unwrap();
    assert_eq!(s.claim_due("me", 200, 10_000, 10).await.unwrap().len(), 1);
    s.record_outcomes(vec![out(&d1, Next::Succeeded, 200, 250)], NO_BREAKER, 300)
        .await
        .unwrap();
    // Cancelled by deleting its endpoint.
    let (_, db) = created(
        s.create_event(event("evt_b", "b.only", 100), None, 0)
            .await
            .unwrap(),
    );
    assert_eq!(db.len(), 2);
    assert!(s.delete_endpoint("ep_b", 400).await.unwrap());
    let to_a = db
        .iter()
        .find(|d| d.endpoint_id == "ep_a")
        .unwrap()
        .id
        .clone();
    s.claim_due("me", 400, 10_000, 10).await.unwrap();
    s.record_outcomes(vec![out(&to_a, Next::Succeeded, 200, 400)], NO_BREAKER, 400)
        .await
        .unwrap();
    // No deliveries at all; and one whose idempotency key is old too.
    let mut none = event("evt_none", "t", 100);
    none.only_endpoints = Some(vec![]);
    s.create_event(none, None, 0).await.unwrap();
    let mut keyed = event("evt_key", "t", 100);
    keyed.only_endpoints = Some(vec![]);
    keyed.idempotency_key = Some("k1".into());
    s.create_event(keyed, None, 86_400_000).await.unwrap();
    // Finished after the cutoff: kept.
    let (_, dn) = created(
        s.create_event(event("evt_new", "t", 100), None, 0)
            .await
            .unwrap(),
    );
    let dn = dn[0].id.clone();
    let c = s.claim_due("me", 50_000, 60_000, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    s.record_outcomes(
        vec![out(&dn, Next::Succeeded, 200, 50_000)],
        NO_BREAKER,
        50_000,
    )
    .await
    .unwrap();

    assert_eq!(
        s.purge_finished(10_000, 0).await.unwrap(),
        PurgeCounts::default()
    );
    // Bounded: at most one row per table per call; loop until nothing is left.
    let mut total = PurgeCounts::default();
    for _ in 0..50 {
        let n = s.purge_finished(10_000, 1).await.unwrap();
        assert!(
            n.deliveries <= 1 && n.attempts <= 1 && n.events <= 1 && n.idempotency_keys <= 1,
            "{n:?}"
        );
        if n.total() == 0 {
            break;
        }
        total.deliveries += n.deliveries;
        total.attempts += n.attempts;
        total.events += n.events;
        total.idempotency_keys += n.idempotency_keys;
    }
    // d1 (2 attempts), d2 (1), evt_b's two deliveries (cancelled, and succeeded with 1).
    assert_eq!(
        total,
        PurgeCounts {
            deliveries: 4,
            attempts: 4,
            events: 5,
            idempotency_keys: 1,
        }
    );
    for gone in [&d1, &d2, &to_a] {
        assert!(s.get_delivery(gone).await.unwrap().is_none(), "{gone}");
        assert!(
            s.list_attempts(gone, AttemptPage::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
    for gone in ["evt_1", "evt_2", "evt_b", "evt_none", "evt_key"] {
        assert!(s.get_event(gone).await.unwrap().is_none(), "{gone}");
    }
    // Pending work and recent history stay.
    assert_eq!(
        s.list_attempts(&d3, AttemptPage::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get_delivery(&d3).await.unwrap().unwrap().status,
        DeliveryStatus::Pending
    );
    assert!(s.get_event("evt_3").await.unwrap().is_some());
    assert!(s.get_delivery(&dn).await.unwrap().is_some());
    assert!(s.get_event("evt_new").await.unwrap().is_some());
    assert_eq!(
        s.purge_finished(10_000, 100).await.unwrap(),
        PurgeCounts::default()
    );
    // The purged key can be used again.
    let mut again = event("evt_key2", "t", 20_000);
    again.only_endpoints = Some(vec![]);
    again.idempotency_key = Some("k1".into());
    created(s.create_event(again, None, 86_400_000).await.unwrap());
}

fn certificate(id: &str, created_at: Millis) -> ClientCertificate {
    ClientCertificate {
        id: id.into(),
        name: format!("{id} name"),
        certificate_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        private_key: "enc1:sealed".into(),
        subject: "CN=hookwarden".into(),
        issuer: "CN=hookwarden".into(),
        serial: "01".into(),
        sha256: "ab".repeat(32),
        sha1: "cd".repeat(20),
        not_before: 1_000,
        not_after: 2_000,
        generated: true,
        status: CertificateStatus::Active,
        created_at,
        retired_at: None,
    }
}

/// Client certificates and published egress ranges ([`CertificateStore`]). Not part of
/// [`run_all`] (a backend gains it when it implements the trait). Needs a fresh store.
/// Finished deliveries counted per bucket of completion time, per endpoint or all; attempts keep
/// their request headers.
pub async fn delivery_statistics<S: Store>(s: &S) {
    for ep in ["ep_a", "ep_b"] {
        s.create_endpoint(endpoint(ep, &[]), "whsec_x".into())
            .await
            .unwrap();
    }
    // 4 events, one delivery per endpoint each: 8 deliveries.
    for i in 0..4 {
        s.create_event(event(&format!("evt_{i}"), "t", 100), None, 0)
            .await
            .unwrap();
    }
    let claimed = s.claim_due("me", 100, 1_000_000, 100).await.unwrap();
    assert_eq!(claimed.len(), 8);
    let headers = r#"[["content-type","application/json"],["webhook-signature","****"]]"#;
    // (completion time, next) for each claimed delivery, recorded one call per time.
    let plan: Vec<(Millis, Next)> = vec![
        (10_000, Next::Succeeded),
        (10_500, Next::Failed),
        (10_900, Next::Succeeded),
        (12_000, Next::Succeeded),
        (15_000, Next::Failed),
        (15_001, Next::Retry { at: 99_000 }),
        (19_999, Next::Succeeded),
        (20_000, Next::Succeeded),
    ];
    let mut by_endpoint: BTreeMap<String, Vec<(Millis, Next)>> = BTreeMap::new();
    for (c, (at, next)) in claimed.iter().zip(plan) {
        let mut a = attempt(
            1,
            at - 5,
            Some(if next == Next::Succeeded { 200 } else { 500 }),
        );
        a.request_headers = Some(headers.into());
        s.record_outcomes(
            vec![Outcome {
                delivery_id: c.delivery_id.clone(),
                endpoint_id: c.endpoint_id.clone(),
                attempt: Some(a),
                next,
                lease_owner: "me".into(),
                lease_until: c.lease_until,
            }],
            NO_BREAKER,
            at,
        )
        .await
        .unwrap();
        by_endpoint
            .entry(c.endpoint_id.clone())
            .or_default()
            .push((at, next));
    }
    let atts = s
        .list_attempts(&claimed[0].delivery_id, AttemptPage::default())
        .await
        .unwrap();
    assert_eq!(atts[0].request_headers.as_deref(), Some(headers));

    // All endpoints, 5 s buckets over [10 s, 20 s): 20 000 is outside, the retry is not final.
    let range = StatsRange {
        since: 10_000,
        until: 20_000,
        bucket_ms: 5_000,
    };
    let all = s.delivery_stats(None, range).await.unwrap();
    assert_eq!(
        all,
        vec![
            DeliveryStatBucket {
                bucket_start: 10_000,
                succeeded: 3,
                failed: 1
            },
            DeliveryStatBucket {
                bucket_start: 15_000,
                succeeded: 1,
                failed: 1
            },
        ]
    );
    // Per endpoint: the sums match what was recorded for that endpoint.
    for (ep, recorded) in &by_endpoint {
        let got = s.delivery_stats(Some(ep), range).await.unwrap();
        let mut want: BTreeMap<Millis, (i64, i64)> = BTreeMap::new();
        for (at, next) in recorded {
            if *at < range.since || *at >= range.until {
                continue;
            }
            let e = want.entry(range.bucket_start(*at)).or_default();
            match next {
                Next::Succeeded => e.0 += 1,
                Next::Failed => e.1 += 1,
                _ => {}
            }
        }
        want.retain(|_, (a, b)| *a + *b > 0);
        let got: BTreeMap<Millis, (i64, i64)> = got
            .into_iter()
            .map(|b| (b.bucket_start, (b.succeeded, b.failed)))
            .collect();
        assert_eq!(got, want, "{ep}");
    }
    assert!(
        s.delivery_stats(Some("ep_none"), range)
            .await
            .unwrap()
            .is_empty()
    );
    // Invalid ranges have no buckets.
    for bad in [
        StatsRange {
            since: 20_000,
            until: 10_000,
            bucket_ms: 5_000,
        },
        StatsRange {
            since: 0,
            until: 10_000,
            bucket_ms: 0,
        },
        StatsRange {
            since: 0,
            until: StatsRange::MAX_BUCKETS * 10 + 1,
            bucket_ms: 10,
        },
    ] {
        assert!(!bad.is_valid());
        assert!(s.delivery_stats(None, bad).await.unwrap().is_empty());
    }
}

/// Inbound requests per bucket and outcome, from the audit log; aggregated entries count every
/// request they stand for.
pub async fn ingest_statistics<S: Store + SourceStore>(s: &S) {
    let t0: Millis = 1_700_000_000_000;
    let mut flood = audit(Some("src_a"), t0 + 61_000, "IP_NOT_ALLOWED", "192.0.2.9");
    flood.count = 40;
    flood.sampled = true;
    s.insert_audit(vec![
        audit(Some("src_a"), t0, "ACCEPTED", "192.0.2.1"),
        audit(Some("src_a"), t0 + 59_999, "ACCEPTED", "192.0.2.1"),
        audit(Some("src_a"), t0 + 30_000, "SIGNATURE_INVALID", "192.0.2.2"),
        flood,
        audit(Some("src_b"), t0 + 1_000, "ACCEPTED", "192.0.2.3"),
        audit(None, t0 + 2_000, "TOKEN_UNKNOWN", "192.0.2.4"),
        // Outside the range.
        audit(Some("src_a"), t0 - 1, "ACCEPTED", "192.0.2.1"),
        audit(Some("src_a"), t0 + 120_000, "ACCEPTED", "192.0.2.1"),
    ])
    .await
    .unwrap();
    let range = StatsRange {
        since: t0,
        until: t0 + 120_000,
        bucket_ms: 60_000,
    };
    let row = |b: Millis, o: &str, n: i64| IngestStatBucket {
        bucket_start: t0 + b,
        outcome: o.into(),
        requests: n,
    };
    assert_eq!(
        s.ingest_stats(Some("src_a"), range).await.unwrap(),
        vec![
            row(0, "ACCEPTED", 2),
            row(0, "SIGNATURE_INVALID", 1),
            row(60_000, "IP_NOT_ALLOWED", 40),
        ]
    );
    assert_eq!(
        s.ingest_stats(None, range).await.unwrap(),
        vec![
            row(0, "ACCEPTED", 3),
            row(0, "SIGNATURE_INVALID", 1),
            row(0, "TOKEN_UNKNOWN", 1),
            row(60_000, "IP_NOT_ALLOWED", 40),
        ]
    );
    assert!(
        s.ingest_stats(Some("src_none"), range)
            .await
            .unwrap()
            .is_empty()
    );
    let bad = StatsRange {
        since: t0,
        until: t0,
        bucket_ms: 1_000,
    };
    assert!(s.ingest_stats(None, bad).await.unwrap().is_empty());
}

pub async fn certificate_store<S: Store + CertificateStore>(s: &S) {
    // Text with a NUL (say, a subject rendered from a crafted certificate) is refused.
    let mut bad = certificate("cert_nul", 5);
    bad.subject = "CN=a\0b".into();
    assert!(matches!(
        s.create_certificate(bad).await,
        Err(StoreError::InvalidText("subject"))
    ));
    assert_eq!(s.get_certificate("cert_nul").await.unwrap(), None);
    // A key with a NUL names nothing.
    assert_eq!(s.get_certificate("cert_\0").await.unwrap(), None);
    assert!(
        !s.set_certificate_status("cert_\0", CertificateStatus::Retiring, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        s.delete_certificate("cert_\0").await.unwrap(),
        CertificateDeletion::NotFound
    );
    let a = certificate("cert_a", 10);
    s.create_certificate(a.clone()).await.unwrap();
    s.create_certificate(certificate("cert_b", 20))
        .await
        .unwrap();
    assert!(matches!(
        s.create_certificate(certificate("cert_a", 30)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_certificate("cert_a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_certificate("cert_x").await.unwrap(), None);
    let all = s.list_certificates(Page::new(None, 10)).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["cert_b", "cert_a"]
    );
    let older = s
        .list_certificates(Page::new(Some("cert_b".into()), 10))
        .await
        .unwrap();
    assert_eq!(older.len(), 1);

    // Retire, re-activate.
    assert!(
        s.set_certificate_status("cert_a", CertificateStatus::Retiring, 500)
            .await
            .unwrap()
    );
    let r = s.get_certificate("cert_a").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.retired_at),
        (CertificateStatus::Retiring, Some(500))
    );
    assert!(
        s.set_certificate_status("cert_a", CertificateStatus::Retiring, 900)
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_certificate("cert_a")
            .await
            .unwrap()
            .unwrap()
            .retired_at,
        Some(500)
    );
    assert!(
        !s.set_certificate_status("cert_x", CertificateStatus::Retiring, 1)
            .await
            .unwrap()
    );

    // In use by an endpoint: not deleted. A deleted endpoint does not hold it.
    let mut ep = endpoint("ep_cert", &[]);
    ep.client_certificate_id = Some("cert_a".into());
    s.create_endpoint(ep.clone(), "whsec_x".into())
        .await
        .unwrap();
    s.update_endpoint(ep).await.unwrap();
    assert_eq!(
        s.get_endpoint("ep_cert")
            .await
            .unwrap()
            .unwrap()
            .client_certificate_id
            .as_deref(),
        Some("cert_a")
    );
    assert_eq!(
        s.delete_certificate("cert_a").await.unwrap(),
        CertificateDeletion::InUse {
            endpoints: vec!["ep_cert".into()]
        }
    );
    assert!(s.get_certificate("cert_a").await.unwrap().is_some());
    s.delete_endpoint("ep_cert", 2_000).await.unwrap();
    assert_eq!(
        s.delete_certificate("cert_a").await.unwrap(),
        CertificateDeletion::Deleted
    );
    assert_eq!(
        s.delete_certificate("cert_a").await.unwrap(),
        CertificateDeletion::NotFound
    );
    assert_eq!(s.get_certificate("cert_a").await.unwrap(), None);

    // Published ranges: first sync of an empty list is quiet; a change reports the previous list;
    // the same list again changes nothing (not even the time).
    assert_eq!(s.published_ranges().await.unwrap(), None);
    let r = s.sync_published_ranges(vec![], 100).await.unwrap();
    assert_eq!(r.previous, None);
    assert_eq!(r.current.updated_at, 100);
    let list = vec!["203.0.113.0/24".to_string(), "2001:db8::/48".to_string()];
    let r = s.sync_published_ranges(list.clone(), 200).await.unwrap();
    assert_eq!(r.previous, Some(vec![]));
    assert_eq!(
        r.current,
        PublishedRanges {
            ranges: list.clone(),
            updated_at: 200
        }
    );
    let r = s.sync_published_ranges(list.clone(), 300).await.unwrap();
    assert_eq!((r.previous, r.current.updated_at), (None, 200));
    assert_eq!(
        s.published_ranges().await.unwrap(),
        Some(PublishedRanges {
            ranges: list.clone(),
            updated_at: 200
        })
    );
    let r = s
        .sync_published_ranges(vec!["198.51.100.7/32".into()], 400)
        .await
        .unwrap();
    assert_eq!(r.previous, Some(list));
    assert_eq!(r.current.updated_at, 400);
}

fn source(id: &str, at: Millis) -> Source {
    Source {
        id: id.into(),
        name: format!("{id} name"),
        verification: r#"{"type":"github"}"#.into(),
        secrets: vec!["enc1:sealed".into()],
        allowed_cidrs: vec!["203.0.113.0/24".into()],
        replay_window_secs: 300,
        log_payloads: false,
        forward_to: vec![],
        event_type: "inbound.github".into(),
        created_at: at,
        updated_at: at,
    }
}

fn token(n: u8, at: Millis) -> NewSourceToken {
    NewSourceToken {
        token_hash: [n; 32],
        prefix: format!("wh_tok{n}"),
        created_at: at,
    }
}

pub(crate) fn audit(source_id: Option<&str>, at: Millis, outcome: &str, ip: &str) -> NewAuditEntry {
    NewAuditEntry {
        source_id: source_id.map(str::to_owned),
        token_prefix: "wh_tok1".into(),
        received_at: at,
        client_ip: Some(ip.into()),
        peer_addr: format!("{ip}:5000"),
        user_agent: Some("test".into()),
        outcome: outcome.into(),
        reason: None,
        status: if outcome == "ACCEPTED" { 202 } else { 401 },
        body_bytes: 10,
        latency_us: 100,
        tls: true,
        event_id: None,
        message_id: None,
        count: 1,
        sampled: false,
        payload: None,
    }
}

pub(crate) fn inbound_accept(
    id: &str,
    source_id: &str,
    at: Millis,
    seen: Option<u8>,
) -> InboundAccept {
    let mut event = event(id, "inbound.github", at);
    event.source_id = Some(source_id.into());
    InboundAccept {
        event,
        route: InboundRoute::default(),
        seen: seen.map(|n| SeenKey {
            key_hash: [n; 32],
            expires_at: at + 300_000,
        }),
        audit: audit(Some(source_id), at, "ACCEPTED", "203.0.113.7"),
    }
}

/// Inbound sources, tokens, replay keys and the audit log ([`SourceStore`]). Not part of
/// [`run_all`] (a backend gains it when it implements the trait). Needs a fresh store.
pub async fn source_store<S: Store + SourceStore>(s: &S) {
    let page = |before: Option<&str>| Page::new(before.map(str::to_owned), 10);
    let t0: Millis = 1_700_000_000_000;

    // Create, get, list; ids and token hashes are unique.
    let a = source("src_a", t0);
    s.create_source(a.clone(), token(1, t0)).await.unwrap();
    s.create_source(source("src_b", t0), token(2, t0))
        .await
        .unwrap();
    assert!(matches!(
        s.create_source(source("src_a", t0), token(3, t0)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_source(source("src_c", t0), token(1, t0)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_source("src_c").await.unwrap(),
        None,
        "nothing half-created"
    );
    let r = s.get_source("src_a").await.unwrap().unwrap();
    assert_eq!(r.source, a);
    let cur = r.current_token.unwrap();
    assert_eq!((cur.prefix.as_str(), cur.created_at), ("wh_tok1", t0));
    assert_eq!((cur.expires_at, cur.revoked_at), (None, None));
    assert!(r.other_tokens.is_empty());
    assert_eq!(s.get_source("src_x").await.unwrap(), None);
    let all = s.list_sources(page(None)).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.source.id.as_str()).collect::<Vec<_>>(),
        ["src_b", "src_a"]
    );
    assert_eq!(s.list_sources(page(Some("src_b"))).await.unwrap().len(), 1);

    // Lookup by token hash.
    let m = s.find_source_by_token([1; 32]).await.unwrap().unwrap();
    assert_eq!((m.token_hash, m.source.id.as_str()), ([1; 32], "src_a"));
    assert!(m.token.live_at(t0 + 1));
    assert_eq!(s.find_source_by_token([9; 32]).await.unwrap(), None);

    // Update.
    let mut a2 = a.clone();
    a2.name = "renamed".into();
    a2.secrets = vec!["s1".into(), "s2".into()];
    a2.allowed_cidrs = vec![];
    a2.forward_to = vec!["ep_x".into(), "invoice.paid".into()];
    a2.log_payloads = true;
    a2.replay_window_secs = 60;
    a2.updated_at = t0 + 5;
    assert!(s.update_source(a2.clone()).await.unwrap());
    assert_eq!(s.get_source("src_a").await.unwrap().unwrap().source, a2);
    let mut ghost = a2.clone();
    ghost.id = "src_x".into();
    assert!(!s.update_source(ghost).await.unwrap());

    // Rotation with a grace period, then at once.
    assert!(
        s.rotate_source_token("src_a", token(4, t0 + 10), t0 + 1_000, t0 + 10)
            .await
            .unwrap()
    );
    let old = s.find_source_by_token([1; 32]).await.unwrap().unwrap();
    assert_eq!(old.token.expires_at, Some(t0 + 1_000));
    assert!(old.token.live_at(t0 + 999) && !old.token.live_at(t0 + 1_000));
    let r = s.get_source("src_a").await.unwrap().unwrap();
    assert_eq!(r.current_token.unwrap().prefix, "wh_tok4");
    assert_eq!(r.other_tokens.len(), 1);
    // A later rotation never extends an earlier grace period.
    assert!(
        s.rotate_source_token("src_a", token(5, t0 + 20), t0 + 50_000, t0 + 20)
            .await
            .unwrap()
    );
    let old = s.find_source_by_token([1; 32]).await.unwrap().unwrap();
    assert_eq!(old.token.expires_at, Some(t0 + 1_000));
    let mid = s.find_source_by_token([4; 32]).await.unwrap().unwrap();
    assert_eq!(mid.token.expires_at, Some(t0 + 50_000));
    assert!(
        s.rotate_source_token("src_a", token(6, t0 + 30), t0 + 30, t0 + 30)
            .await
            .unwrap()
    );
    for n in [1u8, 4, 5] {
        let t = s.find_source_by_token([n; 32]).await.unwrap().unwrap();
        assert!(!t.token.live_at(t0 + 30), "token {n} still live");
    }
    assert!(
        s.find_source_by_token([6; 32])
            .await
            .unwrap()
            .unwrap()
            .token
            .live_at(t0 + 30)
    );
    assert!(
        !s.rotate_source_token("src_x", token(7, t0), t0, t0)
            .await
            .unwrap()
    );
    assert!(matches!(
        s.rotate_source_token("src_b", token(6, t0 + 40), t0 + 40, t0 + 40)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Revocation: live tokens (grace included) are revoked, expired ones are left alone; a
    // rotation afterwards issues a working token and the revoked one stays revoked.
    assert!(
        s.rotate_source_token("src_b", token(8, t0 + 50), t0 + 5_000, t0 + 50)
            .await
            .unwrap()
    );
    assert!(s.revoke_source("src_b", t0 + 60).await.unwrap());
    for n in [2u8, 8] {
        let t = s.find_source_by_token([n; 32]).await.unwrap().unwrap();
        assert_eq!(t.token.revoked_at, Some(t0 + 60), "token {n}");
    }
    assert!(s.revoke_source("src_a", t0 + 60).await.unwrap());
    assert_eq!(
        s.find_source_by_token([1; 32])
            .await
            .unwrap()
            .unwrap()
            .token
            .revoked_at,
        None,
        "an expired token is not revoked"
    );
    assert!(!s.revoke_source("src_x", t0).await.unwrap());
    assert!(
        s.rotate_source_token("src_b", token(9, t0 + 70), t0 + 70, t0 + 70)
            .await
            .unwrap()
    );
    let r = s.get_source("src_b").await.unwrap().unwrap();
    let cur = r.current_token.unwrap();
    assert_eq!((cur.prefix.as_str(), cur.revoked_at), ("wh_tok9", None));
    assert!(r.other_tokens.iter().all(|t| t.revoked_at == Some(t0 + 60)));
    assert_eq!(
        s.find_source_by_token([8; 32])
            .await
            .unwrap()
            .unwrap()
            .token
            .revoked_at,
        Some(t0 + 60)
    );

    // Accepting: event with its source, routed deliveries, audit entry, replay key.
    s.create_endpoint(endpoint("ep_id", &["other.type"]), "whsec_1".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_typed", &["payments.in"]), "whsec_2".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_all", &[]), "whsec_3".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_off", &["payments.in"]), "whsec_4".into())
        .await
        .unwrap();
    s.set_endpoint_enabled("ep_off", false, None, t0)
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_gone", &["payments.in"]), "whsec_5".into())
        .await
        .unwrap();
    s.delete_endpoint("ep_gone", t0).await.unwrap();

    let at = t0 + 100;
    let mut acc = inbound_accept("evt_in1", "src_b", at, Some(1));
    acc.route = InboundRoute {
        endpoint_ids: vec!["ep_id".into(), "ep_id".into(), "ep_missing".into()],
        event_types: vec!["payments.in".into()],
    };
    acc.audit.message_id = Some("msg_1".into());
    let out = s.accept_inbound(acc).await.unwrap();
    let AcceptOutcome::Accepted {
        event_id,
        audit_id,
        deliveries,
    } = out
    else {
        panic!("expected acceptance, got {out:?}")
    };
    assert_eq!((event_id.as_str(), deliveries), ("evt_in1", 4));
    let ev = s.get_event("evt_in1").await.unwrap().unwrap();
    assert_eq!(ev.source_id.as_deref(), Some("src_b"));
    assert_eq!(
        (ev.event_type.as_str(), ev.created_at),
        ("inbound.github", at)
    );
    let ds = s
        .list_deliveries(
            DeliveryFilter {
                event_id: Some("evt_in1".into()),
                ..Default::default()
            },
            page(None),
        )
        .await
        .unwrap();
    let mut got: Vec<(String, DeliveryStatus)> = ds
        .iter()
        .map(|d| (d.endpoint_id.clone(), d.status))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("ep_all".to_string(), DeliveryStatus::Pending),
            ("ep_id".to_string(), DeliveryStatus::Pending),
            ("ep_off".to_string(), DeliveryStatus::Paused),
            ("ep_typed".to_string(), DeliveryStatus::Pending),
        ]
    );
    assert!(ds.iter().all(|d| d.next_attempt_at == at));
    // Claimable at once by the dispatcher.
    let claimed = s.claim_due("owner", at, at + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let entries = s
        .list_audit(
            AuditFilter {
                source_id: Some("src_b".into()),
                ..Default::default()
            },
            page(None),
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, audit_id);
    assert_eq!(entries[0].entry.event_id.as_deref(), Some("evt_in1"));
    assert_eq!(entries[0].entry.message_id.as_deref(), Some("msg_1"));
    assert_eq!(entries[0].entry.received_at, at);

    // The same key within its lifetime is a replay and writes nothing; another source, or
    // no key, is independent; an expired key is accepted again.
    assert_eq!(
        s.accept_inbound(inbound_accept("evt_in2", "src_b", at + 1, Some(1)))
            .await
            .unwrap(),
        AcceptOutcome::Replayed
    );
    assert_eq!(s.get_event("evt_in2").await.unwrap(), None);
    assert!(matches!(
        s.accept_inbound(inbound_accept("evt_in3", "src_a", at + 1, Some(1)))
            .await
            .unwrap(),
        AcceptOutcome::Accepted { deliveries: 0, .. }
    ));
    assert!(matches!(
        s.accept_inbound(inbound_accept("evt_in4", "src_b", at + 1, None))
            .await
            .unwrap(),
        AcceptOutcome::Accepted { .. }
    ));
    assert!(matches!(
        s.accept_inbound(inbound_accept("evt_in5", "src_b", at + 300_000, Some(1)))
            .await
            .unwrap(),
        AcceptOutcome::Accepted { .. }
    ));
    assert_eq!(
        s.accept_inbound(inbound_accept("evt_in6", "src_b", at + 300_001, Some(1)))
            .await
            .unwrap(),
        AcceptOutcome::Replayed,
        "the re-accepted key is live again"
    );
    let mut no_source = inbound_accept("evt_in7", "src_b", at, None);
    no_source.event.source_id = None;
    assert!(s.accept_inbound(no_source).await.is_err());

    // Audit entries: refusals (also of unknown tokens), filters, time ranges, pagination.
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(audit(
            Some("src_a"),
            t0 + 1_000 + i,
            "SIGNATURE_INVALID",
            "198.51.100.1",
        ));
    }
    let mut flood = audit(Some("src_a"), t0 + 2_000, "IP_NOT_ALLOWED", "198.51.100.2");
    flood.count = 500;
    flood.sampled = true;
    flood.reason = Some("aggregated".into());
    batch.push(flood.clone());
    batch.push(audit(None, t0 + 2_500, "WEBHOOK_NOT_FOUND", "198.51.100.3"));
    let ids = s.insert_audit(batch).await.unwrap();
    assert_eq!(ids.len(), 7);
    assert!(s.insert_audit(vec![]).await.unwrap().is_empty());
    let list = |f: AuditFilter, before: Option<String>, limit: usize| {
        s.list_audit(f, Page::new(before, limit))
    };
    let src_a = AuditFilter {
        source_id: Some("src_a".into()),
        ..Default::default()
    };
    let got = list(src_a.clone(), None, 100).await.unwrap();
    assert_eq!(got.len(), 7, "5 refusals, 1 aggregate, 1 acceptance");
    assert!(got.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(
        got.windows(2)
            .all(|w| w[0].entry.received_at >= w[1].entry.received_at)
    );
    let agg = got.iter().find(|e| e.entry.sampled).unwrap();
    assert_eq!(agg.entry, flood);
    let f = AuditFilter {
        outcome: Some("SIGNATURE_INVALID".into()),
        ..src_a.clone()
    };
    assert_eq!(list(f, None, 100).await.unwrap().len(), 5);
    let f = AuditFilter {
        client_ip: Some("198.51.100.2".into()),
        ..src_a.clone()
    };
    assert_eq!(list(f, None, 100).await.unwrap().len(), 1);
    let f = AuditFilter {
        since: Some(t0 + 1_001),
        until: Some(t0 + 1_004),
        ..src_a.clone()
    };
    let got = list(f, None, 100).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.entry.received_at).collect::<Vec<_>>(),
        [t0 + 1_003, t0 + 1_002, t0 + 1_001]
    );
    let first = list(src_a.clone(), None, 3).await.unwrap();
    let second = list(src_a.clone(), Some(first[2].id.clone()), 3)
        .await
        .unwrap();
    let third = list(src_a.clone(), Some(second[2].id.clone()), 3)
        .await
        .unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (3, 3, 1));
    assert!(first[2].id > second[0].id && second[2].id > third[0].id);
    let unknown = AuditFilter {
        unknown_only: true,
        ..Default::default()
    };
    let got = list(unknown, None, 100).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry.outcome, "WEBHOOK_NOT_FOUND");
    let everything = list(AuditFilter::default(), None, 100).await.unwrap();
    assert_eq!(
        everything.len(),
        7 + 1 + 3,
        "every source and unknown tokens"
    );

    // Pages over every source, newest first across sources, as one long page would be.
    assert!(everything.windows(2).all(|w| w[0].id > w[1].id));
    let mut paged: Vec<String> = Vec::new();
    let mut before = None;
    for _ in 0..everything.len() {
        let p = list(AuditFilter::default(), before.clone(), 4)
            .await
            .unwrap();
        let Some(last) = p.last() else { break };
        before = Some(last.id.clone());
        paged.extend(p.iter().map(|e| e.id.clone()));
    }
    assert_eq!(
        paged,
        everything.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );

    // Retention: bounded batches of old audit entries, expired keys and rotated-out tokens;
    // revoked tokens stay (they keep answering 410).
    let cut = t0 + 2_000;
    let mut total = InboundPurgeCounts::default();
    for _ in 0..100 {
        let c = s.purge_inbound(cut, at + 300_002, 2).await.unwrap();
        assert!(c.audit_entries <= 2 && c.seen_keys <= 2 && c.tokens <= 2);
        if c.total() == 0 {
            break;
        }
        total.audit_entries += c.audit_entries;
        total.seen_keys += c.seen_keys;
        total.tokens += c.tokens;
    }
    // Audit before t0+2000: three acceptances and the 5 refusals.
    let left = list(AuditFilter::default(), None, 100).await.unwrap();
    assert!(left.iter().all(|e| e.entry.received_at >= cut), "{left:?}");
    assert_eq!(total.audit_entries as usize, everything.len() - left.len());
    assert_eq!(left.len(), 3);
    assert_eq!(
        total.seen_keys, 1,
        "src_a's key expired; src_b's was renewed"
    );
    assert!(
        s.accept_inbound(inbound_accept("evt_in8", "src_a", at + 1, Some(1)))
            .await
            .unwrap()
            != AcceptOutcome::Replayed
    );
    // Tokens 1, 4, 5 (src_a) expired before the cut; 2, 6 and 8 are revoked; 9 is current.
    assert_eq!(total.tokens, 3);
    for (n, kept) in [
        (1u8, false),
        (4, false),
        (5, false),
        (2, true),
        (8, true),
        (6, true),
    ] {
        assert_eq!(
            s.find_source_by_token([n; 32]).await.unwrap().is_some(),
            kept,
            "token {n}"
        );
    }

    // Delete: tokens and keys go, audit entries stay until retention.
    assert!(s.delete_source("src_b").await.unwrap());
    assert!(!s.delete_source("src_b").await.unwrap());
    assert_eq!(s.get_source("src_b").await.unwrap(), None);
    assert_eq!(s.find_source_by_token([9; 32]).await.unwrap(), None);
    assert_eq!(s.find_source_by_token([2; 32]).await.unwrap(), None);
    let f = AuditFilter {
        source_id: Some("src_b".into()),
        ..Default::default()
    };
    assert!(!list(f, None, 100).await.unwrap().is_empty());
    assert_eq!(s.list_sources(page(None)).await.unwrap().len(), 1);
}

/// The sealed columns: every value handed out (secrets, developer payloads, header maps, source
/// secret lists, private keys) in key order and in pages, swapped only while unchanged; `meta`
/// entries written once and swapped the same way.
pub async fn sealed_store<S: Store + SourceStore + CertificateStore + SealedStore>(s: &S) {
    let mut a = endpoint("ep_a", &[]);
    a.developer_payload = Some("payload-a".into());
    a.headers = BTreeMap::from([("authorization".to_string(), "hdr-a".to_string())]);
    s.create_endpoint(a, "secret-a".into()).await.unwrap();
    s.create_endpoint(endpoint("ep_b", &[]), "secret-b".into())
        .await
        .unwrap();
    s.rotate_secret("ep_b", "secret-b2".into(), 5_000, 1_000)
        .await
        .unwrap();
    s.create_source(source("src_a", 1_000), token(1, 1_000))
        .await
        .unwrap();
    s.create_certificate(certificate("cert_a", 10))
        .await
        .unwrap();

    // Every row of each column, in key order, paged.
    let all = |column| async move {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = s.sealed_rows(column, after.clone(), 1).await.unwrap();
            match page.last() {
                Some(last) => after = Some(last.key.clone()),
                None => break,
            }
            out.extend(page);
        }
        out
    };
    let secrets = all(SealedColumn::EndpointSecrets).await;
    let values: Vec<&str> = secrets.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, ["secret-a", "secret-b", "secret-b2"]);
    let payloads = all(SealedColumn::DeveloperPayloads).await;
    assert_eq!(payloads.len(), 1, "rows without a payload are skipped");
    assert_eq!(
        (payloads[0].key.as_str(), payloads[0].value.as_str()),
        ("ep_a", "payload-a")
    );
    let headers = all(SealedColumn::EndpointHeaders).await;
    assert_eq!(headers.len(), 2);
    assert!(headers[0].value.contains("hdr-a"));
    let sources = all(SealedColumn::SourceSecrets).await;
    assert_eq!(sources.len(), 1);
    let keys = all(SealedColumn::CertificateKeys).await;
    assert_eq!(keys[0].value, "enc1:sealed");

    // Compare and swap: only while the row still holds what was read.
    let first = &secrets[0];
    assert!(
        s.replace_sealed(
            SealedColumn::EndpointSecrets,
            &first.key,
            &first.value,
            "sealed-a"
        )
        .await
        .unwrap()
    );
    assert!(
        !s.replace_sealed(
            SealedColumn::EndpointSecrets,
            &first.key,
            &first.value,
            "again"
        )
        .await
        .unwrap(),
        "the value changed since it was read"
    );
    assert!(
        !s.replace_sealed(SealedColumn::EndpointSecrets, "999999", "x", "y")
            .await
            .unwrap()
    );
    let active = s.active_secrets("ep_a", 1_500).await.unwrap();
    assert_eq!(active[0].secret, "sealed-a");
    assert!(
        s.replace_sealed(
            SealedColumn::EndpointHeaders,
            "ep_a",
            &headers[0].value,
            "{}"
        )
        .await
        .unwrap()
    );
    assert!(
        s.get_endpoint("ep_a")
            .await
            .unwrap()
            .unwrap()
            .headers
            .is_empty()
    );
    assert!(
        s.replace_sealed(
            SealedColumn::CertificateKeys,
            "cert_a",
            "enc1:sealed",
            "enc2:k:x"
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.get_certificate("cert_a")
            .await
            .unwrap()
            .unwrap()
            .private_key,
        "enc2:k:x"
    );

    // meta: written once, swapped while unchanged.
    assert_eq!(s.meta_get("security.check").await.unwrap(), None);
    assert_eq!(
        s.meta_put_if_absent("security.check", "one").await.unwrap(),
        "one"
    );
    assert_eq!(
        s.meta_put_if_absent("security.check", "two").await.unwrap(),
        "one",
        "the first value stays"
    );
    assert!(
        !s.meta_replace("security.check", "two", "three")
            .await
            .unwrap()
    );
    assert!(
        s.meta_replace("security.check", "one", "three")
            .await
            .unwrap()
    );
    assert_eq!(
        s.meta_get("security.check").await.unwrap().as_deref(),
        Some("three")
    );
    s.compact_sealed().await.unwrap();
    assert_eq!(all(SealedColumn::EndpointSecrets).await.len(), 3);
}
