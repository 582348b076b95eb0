//! Pages bounded in bytes as well as rows: paging returns every row exactly once, in order; a
//! page past its first row holds at most the bound; a row over the bound comes alone; a page
//! cut by bytes says more rows follow.

use super::*;
use std::sync::Arc;

/// Walks a listing page by page (`next` gives the page after the key, `None` first) and checks
/// the rules above against `size` (the big part of each row's stored size; the store adds a
/// small allowance per row, `slack` covers it). Returns every key seen, in order.
async fn walk<T, K, F, Fut>(
    what: &str,
    limit: usize,
    max_bytes: usize,
    slack: usize,
    key: impl Fn(&T) -> K,
    size: impl Fn(&T) -> usize,
    next: F,
) -> Vec<K>
where
    K: Clone + std::fmt::Debug + PartialEq,
    F: Fn(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Listed<T>>,
{
    let mut seen: Vec<K> = Vec::new();
    let mut after: Option<K> = None;
    let mut pending_first: Option<usize> = None;
    for _ in 0..10_000 {
        let page = next(after.clone()).await;
        if let Some(first) = pending_first {
            // The page before stopped for bytes: its rows and this page's first one would not
            // have fit together (allowing the per-row allowance).
            let first_here = page.first().map(&size).unwrap_or(0);
            assert!(
                first + first_here + slack > max_bytes,
                "{what}: a page stopped at {first} bytes though a {first_here}-byte row fitted"
            );
        }
        assert!(
            !page.is_empty() || !page.more,
            "{what}: an empty page says more follow"
        );
        assert!(page.len() <= limit, "{what}: {} rows", page.len());
        let bytes: usize = page.iter().map(&size).sum();
        if page.len() > 1 {
            assert!(
                bytes <= max_bytes,
                "{what}: {} rows of {bytes} bytes over {max_bytes}",
                page.len()
            );
        }
        for row in page.iter().skip(1) {
            assert!(
                size(row) <= max_bytes,
                "{what}: a row over the bound is not alone"
            );
        }
        seen.extend(page.iter().map(&key));
        pending_first = (page.more && page.len() < limit).then_some(bytes);
        match page.last() {
            Some(last) if page.more => after = Some(key(last)),
            _ => return seen,
        }
    }
    panic!("{what}: paging does not end");
}

fn padded(n: usize) -> String {
    format!(r#"{{"p":"{}"}}"#, "x".repeat(n))
}

/// Events, deliveries, attempts and endpoints, paged under a byte bound.
pub async fn pages_bounded_in_bytes<S: Store>(s: &S) {
    // Events of mixed sizes, some over the bound.
    let max = 100_000;
    let sizes = [10, 50_000, 200_000, 30_000, 5, 99_000, 1, 60_000, 45_000];
    let mut want = Vec::new();
    for i in 0..40 {
        let mut ev = event(&format!("evt_{i:03}"), "t", 100 + i as i64);
        ev.payload = padded(sizes[i % sizes.len()]);
        s.create_event(ev, None, 0).await.unwrap();
        want.push(format!("evt_{i:03}"));
    }
    want.reverse();
    for limit in [1, 3, 7, 250] {
        let seen = walk(
            "events",
            limit,
            max,
            2_000,
            |e: &Event| e.id.clone(),
            |e: &Event| e.payload.len(),
            |before| async move {
                s.list_events(
                    EventFilter::default(),
                    Page::new(before, limit).with_max_bytes(max),
                )
                .await
                .unwrap()
            },
        )
        .await;
        assert_eq!(seen, want, "limit {limit}");
    }
    // With the type filter too, and a bound of one byte: one row per page.
    let seen = walk(
        "events by type",
        250,
        1,
        2_000,
        |e: &Event| e.id.clone(),
        |e: &Event| e.payload.len(),
        |before| async move {
            s.list_events(
                EventFilter {
                    event_types: vec!["t".into()],
                },
                Page::new(before, 250).with_max_bytes(1),
            )
            .await
            .unwrap()
        },
    )
    .await;
    assert_eq!(seen, want);
    // A generous bound changes nothing: pages by rows, `more` exactly when rows remain.
    let p = s
        .list_events(EventFilter::default(), Page::new(None, 40))
        .await
        .unwrap();
    assert_eq!((p.len(), p.more), (40, false));
    let p = s
        .list_events(EventFilter::default(), Page::new(None, 39))
        .await
        .unwrap();
    assert_eq!((p.len(), p.more), (39, true));

    // Endpoints with large descriptions; their deliveries (one per event).
    for i in 0..12 {
        let mut ep = endpoint(&format!("ep_{i:02}"), &["x"]);
        ep.description = "d".repeat([100, 40_000, 150_000][i % 3]);
        s.create_endpoint(ep, "whsec_x".into()).await.unwrap();
    }
    let seen = walk(
        "endpoints",
        5,
        max,
        5_000,
        |e: &Endpoint| e.id.clone(),
        |e: &Endpoint| e.description.len(),
        |before| async move {
            s.list_endpoints(Page::new(before, 5).with_max_bytes(max))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(seen.len(), 12);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));

    // Attempts with stored response bodies: oldest first, after the last one seen.
    let mut ev = event("evt_att", "x", 10_000);
    ev.only_endpoints = Some(vec!["ep_00".into()]);
    s.create_event(ev, None, 0).await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=9 {
        let c = s
            .claim_due("me", 20_000 * n, 20_000 * n + 1_000, 10)
            .await
            .unwrap();
        assert_eq!(c.len(), 1, "attempt {n}");
        let mut a = attempt(n, 20_000 * n, Some(500));
        a.response_body = Some("r".repeat([4_096, 30_000, 120_000][n as usize % 3]));
        s.record_outcomes(
            vec![Outcome {
                delivery_id: c[0].delivery_id.clone(),
                endpoint_id: c[0].endpoint_id.clone(),
                attempt: Some(a),
                next: Next::Retry {
                    at: 20_000 * (n + 1),
                },
                lease_owner: "me".into(),
                lease_until: c[0].lease_until,
            }],
            NO_BREAKER,
            20_000 * n + 10,
        )
        .await
        .unwrap();
        ids.push(c[0].delivery_id.clone());
    }
    let delivery = ids[0].clone();
    assert!(ids.iter().all(|d| *d == delivery));
    for limit in [1, 2, 4, 1000] {
        let delivery = delivery.clone();
        let seen = walk(
            "attempts",
            limit,
            max,
            2_000,
            |a: &Attempt| a.id,
            |a: &Attempt| a.response_body.as_deref().map_or(0, str::len),
            |after| {
                let delivery = delivery.clone();
                async move {
                    s.list_attempts(
                        &delivery,
                        AttemptPage {
                            after,
                            limit,
                            max_bytes: max,
                        },
                    )
                    .await
                    .unwrap()
                }
            },
        )
        .await;
        assert_eq!(seen.len(), 9, "limit {limit}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "oldest first");
    }
    let all = s
        .list_attempts(&delivery, AttemptPage::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|a| a.attempt_no).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );

    // Deliveries (small rows): a one-byte bound pages them one by one.
    let seen = walk(
        "deliveries",
        250,
        1,
        2_000,
        |d: &Delivery| d.id.clone(),
        |_: &Delivery| 0,
        |before| async move {
            s.list_deliveries(
                DeliveryFilter::default(),
                Page::new(before, 250).with_max_bytes(1),
            )
            .await
            .unwrap()
        },
    )
    .await;
    let total = s
        .list_deliveries(DeliveryFilter::default(), Page::new(None, 1000))
        .await
        .unwrap();
    assert_eq!(seen.len(), total.len());
    assert!(!seen.is_empty());
}

/// Audit entries (across sources and unknown tokens, and of one source) and sources, paged
/// under a byte bound.
pub async fn source_pages_bounded_in_bytes<S: Store + SourceStore>(s: &S) {
    let t0: Millis = 1_700_000_000_000;
    let max = 100_000;
    let mut big = source("src_big", t0);
    big.allowed_cidrs = (0..1000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    for (i, id) in ["src_a", "src_b", "src_c", "src_big"]
        .into_iter()
        .enumerate()
    {
        let src = if id == "src_big" {
            big.clone()
        } else {
            source(id, t0)
        };
        s.create_source(src, token(i as u8 + 1, t0)).await.unwrap();
    }
    // Interleaved entries of three sources and unknown tokens, payloads up to 64 KiB.
    let sizes = [0, 65_536, 20_000, 1, 40_000, 65_536, 5_000];
    let mut batch = Vec::new();
    for i in 0..60 {
        let src = [Some("src_a"), Some("src_b"), None, Some("src_c")][i % 4];
        let mut e = audit(src, t0 + i as i64, "SIGNATURE_INVALID", "198.51.100.1");
        e.payload = Some(Arc::from(vec![b'z'; sizes[i % sizes.len()]]));
        batch.push(e);
    }
    s.insert_audit(batch).await.unwrap();
    let size = |e: &AuditEntry| e.entry.payload.as_deref().map_or(0, |p| p.len() * 4 / 3);
    for (what, filter) in [
        ("every source", AuditFilter::default()),
        (
            "one source",
            AuditFilter {
                source_id: Some("src_b".into()),
                ..Default::default()
            },
        ),
        (
            "unknown tokens",
            AuditFilter {
                unknown_only: true,
                ..Default::default()
            },
        ),
    ] {
        let expected = s
            .list_audit(
                filter.clone(),
                Page::new(None, 1000).with_max_bytes(usize::MAX),
            )
            .await
            .unwrap();
        assert!(!expected.more);
        for limit in [1, 4, 250] {
            let filter = filter.clone();
            let seen = walk(
                what,
                limit,
                max,
                10_000,
                |e: &AuditEntry| e.id.clone(),
                size,
                |before| {
                    let filter = filter.clone();
                    async move {
                        s.list_audit(filter, Page::new(before, limit).with_max_bytes(max))
                            .await
                            .unwrap()
                    }
                },
            )
            .await;
            assert_eq!(
                seen,
                expected.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
                "{what}, limit {limit}"
            );
        }
    }
    // Sources: one with a thousand CIDRs weighs more than the bound of this walk.
    let seen = walk(
        "sources",
        250,
        10_000,
        2_000,
        |r: &SourceRecord| r.source.id.clone(),
        |r: &SourceRecord| r.source.allowed_cidrs.iter().map(String::len).sum(),
        |before| async move {
            s.list_sources(Page::new(before, 250).with_max_bytes(10_000))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(seen, ["src_c", "src_big", "src_b", "src_a"]);
    let p = s
        .list_sources(Page::new(None, 250).with_max_bytes(10_000))
        .await
        .unwrap();
    assert_eq!(p.len(), 1, "src_c, then src_big alone");
    assert!(p.more);
}

/// Client certificates, paged one by one under a tiny bound.
pub async fn certificate_pages_bounded_in_bytes<S: Store + CertificateStore>(s: &S) {
    for i in 0..5 {
        let mut c = certificate(&format!("cert_p{i}"), 100 + i);
        c.certificate_pem = "-".repeat(10_000);
        s.create_certificate(c).await.unwrap();
    }
    let seen = walk(
        "certificates",
        250,
        15_000,
        2_000,
        |c: &ClientCertificate| c.id.clone(),
        |c: &ClientCertificate| c.certificate_pem.len(),
        |before| async move {
            s.list_certificates(Page::new(before, 250).with_max_bytes(15_000))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(seen.len(), 5);
    let first = s
        .list_certificates(Page::new(None, 250).with_max_bytes(15_000))
        .await
        .unwrap();
    assert_eq!((first.len(), first.more), (1, true));
}
