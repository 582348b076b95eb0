//! [`RecoveryStore`]: failed deliveries sent again in creation order under a job's lease, once
//! per job; overlapping jobs refused while one runs; cancel; an old event sent to an endpoint
//! that did not have it.

use super::{NO_BREAKER, attempt, endpoint};
use crate::*;

fn filter(ep: Option<&str>, ty: Option<&str>, since: Millis, until: Millis) -> RecoveryFilter {
    RecoveryFilter {
        endpoint_id: ep.map(str::to_owned),
        event_type: ty.map(str::to_owned),
        since,
        until,
    }
}

/// Not part of [`super::run_all`] (a backend gains it when it implements the trait). Needs a
/// fresh store.
pub async fn recovery_store<S: Store + RecoveryStore>(s: &S) {
    for ep in ["ep_r", "ep_s"] {
        s.create_endpoint(endpoint(ep, &[]), "whsec_r".into())
            .await
            .unwrap();
    }
    // Five events, created at 10..=14, each delivered to both endpoints; every delivery fails.
    for i in 0..5 {
        let ty = if i % 2 == 0 {
            "invoice.paid"
        } else {
            "user.created"
        };
        let ev = NewEvent {
            id: format!("evt_r{i}"),
            event_type: ty.into(),
            payload: "{}".into(),
            idempotency_key: None,
            created_at: 10 + i,
            source_id: None,
            only_endpoints: None,
        };
        s.create_event(ev, None, 0).await.unwrap();
    }
    let claimed = s.claim_due("w", 100, 10_000, 100).await.unwrap();
    assert_eq!(claimed.len(), 10);
    let outcomes = claimed
        .iter()
        .map(|c| Outcome {
            delivery_id: c.delivery_id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            attempt: Some(attempt(1, 150, Some(500))),
            next: Next::Failed,
            lease_owner: "w".into(),
            lease_until: c.lease_until,
        })
        .collect();
    s.record_outcomes(outcomes, NO_BREAKER, 200).await.unwrap();
    let of = |ep: &str, i: i64| {
        claimed
            .iter()
            .find(|c| c.endpoint_id == ep && c.event_id == format!("evt_r{i}"))
            .unwrap()
            .delivery_id
            .clone()
    };

    // ep_r, events created in [11, 14): r1, r2, r3.
    let r = s
        .create_recovery("rcv_1", filter(Some("ep_r"), None, 11, 14), 300)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.total, r.requeued, r.created_at),
        (RecoveryStatus::Running, 3, 0, 300)
    );
    // While it runs: an overlapping window of the same endpoint, or of every endpoint, is
    // refused; another endpoint, or a window beside it, is not.
    for f in [
        filter(Some("ep_r"), None, 13, 20),
        filter(None, Some("user.*"), 0, 12),
    ] {
        match s.create_recovery("rcv_x", f, 300).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("rcv_1"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    let beside = s
        .create_recovery("rcv_2", filter(Some("ep_r"), None, 14, 20), 300)
        .await
        .unwrap();
    assert_eq!(beside.total, 1);
    let other = s
        .create_recovery(
            "rcv_3",
            filter(Some("ep_s"), Some("invoice.*"), 0, 100),
            300,
        )
        .await
        .unwrap();
    assert_eq!(other.total, 3, "r0, r2, r4 are invoice.*");
    let cancelled = s.cancel_recovery("rcv_2", 310).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.finished_at),
        (RecoveryStatus::Cancelled, Some(310))
    );
    assert_eq!(s.get_recovery("rcv_nope").await.unwrap(), None);

    // The oldest running job goes to the first worker; the next to the second.
    let a = s.claim_recovery("w1", 400, 1_000).await.unwrap().unwrap();
    assert_eq!(a.id, "rcv_1");
    let b = s.claim_recovery("w2", 400, 10_000).await.unwrap().unwrap();
    assert_eq!(b.id, "rcv_3");
    assert_eq!(s.claim_recovery("w3", 400, 1_000).await.unwrap(), None);
    // Not the holder: nothing happens.
    let step = s
        .recovery_step("rcv_1", "w2", 410, 1_000, 10)
        .await
        .unwrap();
    assert!(!step.owned && step.requeued.is_empty());

    let step = s.recovery_step("rcv_1", "w1", 500, 2_000, 2).await.unwrap();
    assert!(step.owned);
    assert_eq!(step.requeued, [of("ep_r", 1), of("ep_r", 2)]);
    let job = step.recovery.unwrap();
    assert_eq!((job.status, job.requeued), (RecoveryStatus::Running, 2));
    let d1 = s.get_delivery(&of("ep_r", 1)).await.unwrap().unwrap();
    let d2 = s.get_delivery(&of("ep_r", 2)).await.unwrap().unwrap();
    assert_eq!(
        (d1.status, d1.next_attempt_at, d1.completed_at),
        (DeliveryStatus::Pending, 500, None)
    );
    assert_eq!(
        (d2.status, d2.next_attempt_at),
        (DeliveryStatus::Pending, 501)
    );
    assert_eq!(
        s.count_waiting(&step.requeued, 501).await.unwrap(),
        2,
        "due, not tried yet"
    );
    // The lease ended: another worker carries the job on from its cursor.
    assert_eq!(s.claim_recovery("w3", 1_999, 3_000).await.unwrap(), None);
    let taken = s.claim_recovery("w3", 2_000, 3_000).await.unwrap().unwrap();
    assert_eq!(taken.id, "rcv_1");
    let step = s
        .recovery_step("rcv_1", "w1", 2_010, 4_000, 2)
        .await
        .unwrap();
    assert!(!step.owned, "the old holder lost it");
    let step = s
        .recovery_step("rcv_1", "w3", 2_010, 4_000, 0)
        .await
        .unwrap();
    assert!(
        step.owned && step.requeued.is_empty(),
        "batch 0 only renews"
    );
    let step = s
        .recovery_step("rcv_1", "w3", 2_020, 4_000, 2)
        .await
        .unwrap();
    assert_eq!(step.requeued, [of("ep_r", 3)]);
    let job = step.recovery.unwrap();
    assert_eq!(
        (job.status, job.requeued, job.finished_at),
        (RecoveryStatus::Completed, 3, Some(2_020))
    );
    // Claimed by a dispatcher: in flight, still waiting; its outcome recorded: done.
    let claimed = s.claim_due("w", 2_100, 9_000, 100).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(s.count_waiting(&[of("ep_r", 3)], 2_100).await.unwrap(), 1);
    let outcomes = claimed
        .iter()
        .map(|c| Outcome {
            delivery_id: c.delivery_id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            attempt: Some(attempt(2, 2_150, Some(503))),
            next: Next::Retry { at: 50_000 },
            lease_owner: "w".into(),
            lease_until: c.lease_until,
        })
        .collect();
    s.record_outcomes(outcomes, NO_BREAKER, 2_160)
        .await
        .unwrap();
    assert_eq!(
        s.count_waiting(&[of("ep_r", 1), of("ep_r", 3)], 2_100)
            .await
            .unwrap(),
        0,
        "retried later: its first try is over"
    );
    // Nothing failed left in the window: a new recovery finds nothing (no conflict now).
    let again = s
        .create_recovery("rcv_4", filter(Some("ep_r"), None, 11, 14), 2_200)
        .await
        .unwrap();
    assert_eq!(again.total, 0);

    // A disabled endpoint's deliveries come back paused; a deleted endpoint's are skipped.
    s.set_endpoint_enabled("ep_s", false, None, 2_300)
        .await
        .unwrap();
    let step = s
        .recovery_step("rcv_3", "w2", 2_330, 9_000, 10)
        .await
        .unwrap();
    assert_eq!(step.requeued, [of("ep_s", 0), of("ep_s", 2), of("ep_s", 4)]);
    assert_eq!(step.recovery.unwrap().status, RecoveryStatus::Completed);
    let d = s.get_delivery(&of("ep_s", 0)).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Paused);
    s.create_endpoint(endpoint("ep_gone", &["nothing"]), "whsec_g".into())
        .await
        .unwrap();

    // Listing: newest first.
    let listed = s.list_recoveries(Page::new(None, 10)).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["rcv_4", "rcv_3", "rcv_2", "rcv_1"]);
    let listed = s
        .list_recoveries(Page::new(Some("rcv_3".into()), 1))
        .await
        .unwrap();
    assert_eq!(listed[0].id, "rcv_2");
    assert!(listed.more);

    // Finished jobs go with retention; running ones stay.
    assert_eq!(
        s.purge_recoveries(2_100, 10).await.unwrap(),
        2,
        "rcv_1 and rcv_2"
    );
    assert_eq!(s.purge_recoveries(2_100, 10).await.unwrap(), 0);
    assert_eq!(
        s.purge_recoveries(i64::MAX, 10).await.unwrap(),
        1,
        "rcv_3; rcv_4 runs"
    );
    let listed = s.list_recoveries(Page::new(None, 10)).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["rcv_4"]);

    // An old event to an endpoint that did not exist when it was published.
    match s
        .add_delivery("dlv_new1", "evt_r0", "ep_gone", 3_000)
        .await
        .unwrap()
    {
        AddDelivery::Created(d) => {
            assert_eq!(
                (
                    d.event_id.as_str(),
                    d.endpoint_id.as_str(),
                    d.status,
                    d.next_attempt_at
                ),
                ("evt_r0", "ep_gone", DeliveryStatus::Pending, 3_000)
            );
        }
        other => panic!("expected a new delivery, got {other:?}"),
    }
    assert!(matches!(
        s.add_delivery("dlv_new2", "evt_r0", "ep_gone", 3_000).await.unwrap(),
        AddDelivery::Exists(d) if d.id == "dlv_new1"
    ));
    assert!(matches!(
        s.add_delivery("dlv_new3", "evt_r0", "ep_r", 3_000).await.unwrap(),
        AddDelivery::Exists(d) if d.id == of("ep_r", 0)
    ));
    assert_eq!(
        s.add_delivery("dlv_new4", "evt_nope", "ep_r", 3_000)
            .await
            .unwrap(),
        AddDelivery::NoEvent
    );
    assert_eq!(
        s.add_delivery("dlv_new5", "evt_r0", "ep_nope", 3_000)
            .await
            .unwrap(),
        AddDelivery::NoEndpoint
    );
    s.delete_endpoint("ep_gone", 3_100).await.unwrap();
    assert_eq!(
        s.add_delivery("dlv_new6", "evt_r1", "ep_gone", 3_200)
            .await
            .unwrap(),
        AddDelivery::NoEndpoint
    );
    s.create_endpoint(endpoint("ep_off", &["nothing"]), "whsec_o".into())
        .await
        .unwrap();
    s.set_endpoint_enabled("ep_off", false, None, 3_300)
        .await
        .unwrap();
    match s
        .add_delivery("dlv_new7", "evt_r1", "ep_off", 3_400)
        .await
        .unwrap()
    {
        AddDelivery::Created(d) => assert_eq!(d.status, DeliveryStatus::Paused),
        other => panic!("expected a paused delivery, got {other:?}"),
    }
}
