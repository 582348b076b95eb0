//! [`ProbeStore`]: reports kept per endpoint and bounded, retired secrets found and purged,
//! everything removed with its endpoint.

use super::endpoint;
use crate::*;

/// Claims and finishes a probe (no minimum interval).
async fn insert<S: ProbeStore>(s: &S, p: ProbeRecord, keep: usize) -> Result<()> {
    let (id, grade, report) = (p.id.clone(), p.grade.clone(), p.report.clone());
    assert_eq!(s.claim_probe(p, 0, keep).await?, Claim::Claimed);
    s.finish_probe(&id, &grade, report).await
}

fn report(id: &str, ep: &str, at: Millis, grade: &str) -> ProbeRecord {
    ProbeRecord {
        id: id.into(),
        endpoint_id: ep.into(),
        created_at: at,
        trigger: "manual".into(),
        grade: grade.into(),
        report: format!(r#"{{"grade":"{grade}"}}"#),
    }
}

fn page(limit: usize, before: Option<&str>) -> Page {
    Page {
        before: before.map(str::to_owned),
        limit,
        max_bytes: usize::MAX,
    }
}

/// Not part of [`super::run_all`] (a backend gains it when it implements the trait). Needs a
/// fresh store.
pub async fn probe_store<S: Store + ProbeStore>(s: &S) {
    s.create_endpoint(endpoint("ep_a", &[]), "whsec_a1".into())
        .await
        .unwrap();
    s.create_endpoint(endpoint("ep_b", &[]), "whsec_b1".into())
        .await
        .unwrap();

    // Reports: newest first, per endpoint, the oldest pruned past `keep`.
    for i in 1..=5 {
        insert(s, report(&format!("prb_a{i}"), "ep_a", i * 10, "A"), 3)
            .await
            .unwrap();
    }
    insert(s, report("prb_b1", "ep_b", 7, "F"), 3)
        .await
        .unwrap();
    let listed = s.list_probes("ep_a", page(10, None)).await.unwrap();
    assert!(!listed.more);
    let ids: Vec<_> = listed.rows.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["prb_a5", "prb_a4", "prb_a3"]);
    assert_eq!(listed.rows[0], report("prb_a5", "ep_a", 50, "A"));
    let first = s.list_probes("ep_a", page(2, None)).await.unwrap();
    assert!(first.more);
    let rest = s
        .list_probes("ep_a", page(2, Some("prb_a4")))
        .await
        .unwrap();
    assert_eq!(rest.rows.len(), 1);
    assert_eq!(rest.rows[0].id, "prb_a3");
    assert!(!rest.more);
    // Another endpoint's report is never listed under this one.
    let b = s.list_probes("ep_b", page(10, None)).await.unwrap();
    assert_eq!(b.rows.len(), 1);
    assert_eq!(b.rows[0].grade, "F");
    assert!(
        s.list_probes("ep_nope", page(10, None))
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    assert!(matches!(
        s.claim_probe(report("prb_x", "ep_nope", 1, "A"), 0, 3)
            .await,
        Err(StoreError::NotFound)
    ));

    // The minimum interval counts from the newest probe, running ones included; a running
    // probe is not listed until it is finished.
    assert_eq!(
        s.claim_probe(report("prb_a6", "ep_a", 55, "A"), 10, 3)
            .await
            .unwrap(),
        Claim::TooSoon { last_at: 50 }
    );
    assert_eq!(
        s.claim_probe(report("prb_a6", "ep_a", 60, "A"), 10, 3)
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        s.claim_probe(report("prb_a7", "ep_a", 65, "A"), 10, 3)
            .await
            .unwrap(),
        Claim::TooSoon { last_at: 60 }
    );
    let ids: Vec<_> = s
        .list_probes("ep_a", page(10, None))
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        ids,
        ["prb_a5", "prb_a4"],
        "running row kept out of listings; oldest pruned"
    );
    s.finish_probe("prb_a6", "C", r#"{"grade":"C"}"#.into())
        .await
        .unwrap();
    let listed = s.list_probes("ep_a", page(10, None)).await.unwrap();
    assert_eq!(listed.rows[0].id, "prb_a6");
    assert_eq!(listed.rows[0].grade, "C");
    // Finishing a row that is gone changes nothing.
    s.finish_probe("prb_gone", "A", "{}".into()).await.unwrap();

    // Due for a scheduled probe: enabled endpoints without a report since `since`.
    assert_eq!(
        s.endpoints_due_for_probe(5, 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(s.endpoints_due_for_probe(20, 10).await.unwrap(), ["ep_b"]);
    assert_eq!(s.endpoints_due_for_probe(100, 1).await.unwrap(), ["ep_a"]);
    s.set_endpoint_enabled("ep_b", false, Some("manual".into()), 60)
        .await
        .unwrap();
    assert_eq!(s.endpoints_due_for_probe(100, 10).await.unwrap(), ["ep_a"]);

    // Retired secrets: only those whose grace has ended, the last to end first.
    assert!(
        s.retired_secret("ep_a", SecretKind::Hmac, 1_000, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.rotate_secret("ep_a", "whsec_a2".into(), 2_000, 1_500)
            .await
            .unwrap()
    );
    // During the grace the old secret is active, not retired.
    assert!(
        s.retired_secret("ep_a", SecretKind::Hmac, 1_999, 0)
            .await
            .unwrap()
            .is_none()
    );
    let r = s
        .retired_secret("ep_a", SecretKind::Hmac, 2_000, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.secret.as_str(), r.expires_at), ("whsec_a1", Some(2_000)));
    assert!(
        s.rotate_secret("ep_a", "whsec_a3".into(), 3_000, 2_500)
            .await
            .unwrap()
    );
    let r = s
        .retired_secret("ep_a", SecretKind::Hmac, 5_000, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.secret, "whsec_a2");
    // Retired too long ago: not offered.
    assert!(
        s.retired_secret("ep_a", SecretKind::Hmac, 5_000, 3_000)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.retired_secret("ep_b", SecretKind::Hmac, 5_000, 0)
            .await
            .unwrap()
            .is_none()
    );
    // Purged once kept long enough; active secrets never are.
    assert_eq!(s.purge_retired_secrets(2_500, 100).await.unwrap(), 1);
    assert_eq!(s.purge_retired_secrets(2_500, 100).await.unwrap(), 0);
    assert_eq!(
        s.retired_secret("ep_a", SecretKind::Hmac, 5_000, 0)
            .await
            .unwrap()
            .unwrap()
            .secret,
        "whsec_a2"
    );
    assert_eq!(s.purge_retired_secrets(i64::MAX, 100).await.unwrap(), 1);
    let active: Vec<_> = s
        .active_secrets("ep_a", 5_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.secret)
        .collect();
    assert_eq!(active, ["whsec_a3"]);

    // Signing keys rotate on their own and are retired by kind.
    assert!(
        s.rotate_signing_key("ep_a", "whsk_k1".into(), 4_000, 3_500)
            .await
            .unwrap()
    );
    assert!(
        s.rotate_signing_key("ep_a", "whsk_k2".into(), 4_500, 4_000)
            .await
            .unwrap()
    );
    let active: Vec<_> = s
        .active_secrets("ep_a", 4_200)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.secret))
        .collect();
    assert_eq!(
        active,
        [
            (SecretKind::Ed25519, "whsk_k2".to_string()),
            (SecretKind::Ed25519, "whsk_k1".to_string()),
            (SecretKind::Hmac, "whsec_a3".to_string())
        ]
    );
    let r = s
        .retired_secret("ep_a", SecretKind::Ed25519, 5_000, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.secret, "whsk_k1");
    assert_eq!(
        s.retired_secret("ep_a", SecretKind::Hmac, 5_000, 0)
            .await
            .unwrap(),
        None,
        "the HMAC secret retired before was purged"
    );
    // An HMAC rotation leaves the signing keys alone.
    assert!(
        s.rotate_secret("ep_a", "whsec_a5".into(), 5_000, 4_800)
            .await
            .unwrap()
    );
    let kinds: Vec<_> = s
        .active_secrets("ep_a", 4_900)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [SecretKind::Hmac, SecretKind::Ed25519, SecretKind::Hmac]
    );

    // Deleting an endpoint removes its secrets (retired ones too) and its reports.
    assert!(
        s.rotate_secret("ep_a", "whsec_a4".into(), 6_000, 5_500)
            .await
            .unwrap()
    );
    assert!(s.delete_endpoint("ep_a", 7_000).await.unwrap());
    assert!(
        s.retired_secret("ep_a", SecretKind::Hmac, 8_000, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.retired_secret("ep_a", SecretKind::Ed25519, 8_000, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.active_secrets("ep_a", 7_000).await.unwrap().is_empty());
    assert!(
        s.list_probes("ep_a", page(10, None))
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    assert_eq!(s.purge_retired_secrets(i64::MAX, 100).await.unwrap(), 0);
    assert!(matches!(
        s.claim_probe(report("prb_a9", "ep_a", 8_000, "A"), 0, 3)
            .await,
        Err(StoreError::NotFound)
    ));
    // The other endpoint's are untouched.
    assert_eq!(
        s.list_probes("ep_b", page(10, None))
            .await
            .unwrap()
            .rows
            .len(),
        1
    );
}
