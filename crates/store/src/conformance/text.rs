//! NUL characters and bytes that are not UTF-8: what is recorded is written whatever its bytes
//! (logged payloads byte for byte; NUL in recorded text as U+FFFD), what a client configures is
//! refused with [`StoreError::InvalidText`] and nothing is written — the same on every backend
//! (PostgreSQL text cannot hold NUL; SQLite could, and must not differ).

use super::*;
use std::sync::Arc;

fn refused<T: std::fmt::Debug>(r: Result<T>, field: &str) {
    match r {
        Err(StoreError::InvalidText(f)) => assert_eq!(f, field),
        other => panic!("{field}: expected InvalidText, got {other:?}"),
    }
}

/// Configuration and events with a NUL are refused and leave nothing behind; a delivery
/// attempt's recorded text keeps everything but the NUL.
pub async fn nul_in_text<S: Store + ApiKeyStore>(s: &S) {
    // Endpoints: every text field.
    type Edit = fn(&mut Endpoint);
    let edits: [(&str, Edit); 8] = [
        ("url", |e| e.url.push('\0')),
        ("description", |e| e.description = "a\0b".into()),
        ("event_types", |e| e.event_types = vec!["t\0".into()]),
        ("headers", |e| {
            e.headers.insert("x-a".into(), "v\0".into());
        }),
        ("headers", |e| {
            e.headers.insert("x-\0".into(), "v".into());
        }),
        ("developer_payload", |e| {
            e.developer_payload = Some("\0".into())
        }),
        ("signature_schemes", |e| {
            e.signature_schemes = vec!["\0".into()]
        }),
        ("client_certificate_id", |e| {
            e.client_certificate_id = Some("cert_\0".into())
        }),
    ];
    for (field, edit) in edits {
        let mut ep = endpoint("ep_nul", &[]);
        edit(&mut ep);
        refused(s.create_endpoint(ep, "whsec_x".into()).await, field);
        assert_eq!(s.get_endpoint("ep_nul").await.unwrap(), None, "{field}");
    }
    refused(
        s.create_endpoint(endpoint("ep_nul", &[]), "whsec_\0".into())
            .await,
        "secret",
    );
    assert_eq!(s.get_endpoint("ep_nul").await.unwrap(), None);
    let ok = endpoint("ep_ok", &["t"]);
    s.create_endpoint(ok.clone(), "whsec_ok".into())
        .await
        .unwrap();
    for (field, edit) in edits {
        let mut ep = ok.clone();
        edit(&mut ep);
        refused(s.update_endpoint(ep).await, field);
    }
    assert_eq!(s.get_endpoint("ep_ok").await.unwrap(), Some(ok.clone()));
    refused(
        s.rotate_secret("ep_ok", "whsec_\0".into(), 10, 10).await,
        "secret",
    );
    assert_eq!(s.active_secrets("ep_ok", 20).await.unwrap().len(), 1);
    refused(
        s.set_endpoint_enabled("ep_ok", false, Some("\0".into()), 10)
            .await,
        "reason",
    );
    assert!(s.get_endpoint("ep_ok").await.unwrap().unwrap().enabled);
    assert_eq!(
        s.list_endpoints(Page::new(None, 10)).await.unwrap().len(),
        1
    );

    // Events: type, payload, idempotency key; nothing is written, no delivery either.
    type EventEdit = fn(&mut NewEvent);
    let event_edits: [(&str, EventEdit); 4] = [
        ("event_type", |e| e.event_type = "t\0".into()),
        ("payload", |e| e.payload = "\"\0\"".into()),
        ("idempotency_key", |e| {
            e.idempotency_key = Some("k\0".into())
        }),
        ("only_endpoints", |e| {
            e.only_endpoints = Some(vec!["ep_\0".into()])
        }),
    ];
    for (field, edit) in event_edits {
        let mut ev = event("evt_nul", "t", 100);
        edit(&mut ev);
        refused(s.create_event(ev, None, 60_000).await, field);
        assert_eq!(s.get_event("evt_nul").await.unwrap(), None, "{field}");
    }
    assert!(
        s.list_deliveries(DeliveryFilter::default(), Page::new(None, 10))
            .await
            .unwrap()
            .is_empty()
    );
    // JSON escapes NUL: such a payload is text without one, stored and returned as it is.
    let mut ev = event("evt_escaped", "t", 100);
    ev.payload = r#"{"a":"\u0000"}"#.into();
    s.create_event(ev, None, 0).await.unwrap();
    assert_eq!(
        s.get_event("evt_escaped").await.unwrap().unwrap().payload,
        r#"{"a":"\u0000"}"#
    );

    // API keys.
    let key = |name: &str, description: &str| NewApiKey {
        id: "key_nul".into(),
        key_hash: [3; 32],
        prefix: "hwk_".into(),
        name: name.into(),
        description: description.into(),
        created_at: 1,
        expires_at: None,
    };
    refused(s.create_api_key(key("", "\0")).await, "description");
    refused(s.create_api_key(key("a\0b", "")).await, "name");
    assert_eq!(s.find_api_key([3; 32], 2).await.unwrap(), None);

    // A key with a NUL names nothing (PostgreSQL could not even look it up).
    let k = "ep_\0";
    assert_eq!(s.get_endpoint(k).await.unwrap(), None);
    assert!(!s.delete_endpoint(k, 10).await.unwrap());
    assert!(!s.set_endpoint_enabled(k, false, None, 10).await.unwrap());
    assert!(s.active_secrets(k, 10).await.unwrap().is_empty());
    assert!(!s.rotate_secret(k, "whsec_ok".into(), 10, 10).await.unwrap());
    assert_eq!(s.get_event("evt_\0").await.unwrap(), None);
    assert_eq!(s.get_delivery("dlv_\0").await.unwrap(), None);
    assert_eq!(s.retry_delivery("dlv_\0", 10).await.unwrap(), None);
    assert!(
        s.list_attempts("dlv_\0", AttemptPage::default())
            .await
            .unwrap()
            .is_empty()
    );
    let range = StatsRange {
        since: 0,
        until: 1_000,
        bucket_ms: 100,
    };
    assert!(s.delivery_stats(Some(k), range).await.unwrap().is_empty());
    for filter in [
        DeliveryFilter {
            event_id: Some("evt_\0".into()),
            ..Default::default()
        },
        DeliveryFilter {
            endpoint_id: Some(k.into()),
            ..Default::default()
        },
    ] {
        assert!(
            s.list_deliveries(filter, Page::new(None, 10))
                .await
                .unwrap()
                .is_empty()
        );
    }

    // An attempt records what the receiver sent, NUL replaced; so does the delivery's error.
    let claimed = s.claim_due("me", 100, 10_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the escaped event's delivery to ep_ok");
    let c = &claimed[0];
    let mut a = attempt(1, 150, Some(500));
    a.response_body = Some("body\0\0end \u{e9}".into());
    a.error_message = Some("bad\0".into());
    a.request_headers = Some("[[\"x-a\",\"\0\"]]".into());
    a.remote_addr = Some("127.0.0.1:1\0".into());
    s.record_outcomes(
        vec![Outcome {
            delivery_id: c.delivery_id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            attempt: Some(a),
            next: Next::Retry { at: 5_000 },
            lease_owner: "me".into(),
            lease_until: c.lease_until,
        }],
        NO_BREAKER,
        200,
    )
    .await
    .unwrap();
    let atts = s
        .list_attempts(&c.delivery_id, AttemptPage::default())
        .await
        .unwrap();
    assert_eq!(atts.len(), 1);
    let got = &atts[0];
    assert_eq!(
        got.response_body.as_deref(),
        Some("body\u{FFFD}\u{FFFD}end \u{e9}")
    );
    assert_eq!(got.error_message.as_deref(), Some("bad\u{FFFD}"));
    assert_eq!(
        got.request_headers.as_deref(),
        Some("[[\"x-a\",\"\u{FFFD}\"]]")
    );
    assert_eq!(got.remote_addr.as_deref(), Some("127.0.0.1:1\u{FFFD}"));
    let d = s.get_delivery(&c.delivery_id).await.unwrap().unwrap();
    assert_eq!(d.last_error.as_deref(), Some("http_status: bad\u{FFFD}"));
}

/// Logged payloads are bytes: any bytes (NUL, invalid UTF-8, empty) come back exactly; NUL in an
/// audit entry's text is replaced, never a failed write; a source with a NUL is refused.
pub async fn audit_payload_bytes<S: Store + SourceStore>(s: &S) {
    let t0: Millis = 1_700_000_000_000;
    s.create_source(source("src_t", t0), token(1, t0))
        .await
        .unwrap();
    let every: Vec<u8> = (0..=255u8).collect();
    let payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\0".to_vec(),
        b"a\0b".to_vec(),
        b"\xff\xfe".to_vec(),
        b"caf\xc3".to_vec(),
        "texte accentu\u{e9}".as_bytes().to_vec(),
        every.clone(),
        vec![0u8; 64 * 1024],
    ];
    let mut batch = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut e = audit(
            Some("src_t"),
            t0 + i as i64,
            "SIGNATURE_INVALID",
            "198.51.100.9",
        );
        e.payload = Some(Arc::from(p.as_slice()));
        e.message_id = Some(format!("m\0{i}"));
        e.user_agent = Some("agent\0".into());
        e.reason = Some("\0".into());
        e.token_prefix = "wh_\0".into();
        batch.push(e);
    }
    let mut unknown = audit(None, t0 + 100, "WEBHOOK_NOT_FOUND", "198.51.100.9");
    unknown.payload = Some(Arc::from(&b"\0\xff"[..]));
    batch.push(unknown);
    s.insert_audit(batch).await.unwrap();
    // Accepted: the audit entry commits with the event, whatever its bytes.
    let mut acc = inbound_accept("evt_bytes", "src_t", t0 + 200, Some(9));
    acc.audit.payload = Some(Arc::from(every.as_slice()));
    acc.audit.message_id = Some("evt_\0".into());
    assert!(matches!(
        s.accept_inbound(acc).await.unwrap(),
        AcceptOutcome::Accepted { .. }
    ));

    let all = s
        .list_audit(AuditFilter::default(), Page::new(None, 100))
        .await
        .unwrap();
    assert_eq!(all.len(), payloads.len() + 2);
    for e in all.iter() {
        let e = &e.entry;
        let i = (e.received_at - t0) as usize;
        let want: Option<&[u8]> = match i {
            100 => Some(b"\0\xff"),
            200 => Some(&every),
            i => Some(&payloads[i]),
        };
        assert_eq!(e.payload.as_deref(), want, "entry {i}");
        if i < 100 {
            assert_eq!(e.message_id, Some(format!("m\u{FFFD}{i}")));
            assert_eq!(e.user_agent.as_deref(), Some("agent\u{FFFD}"));
            assert_eq!(e.reason.as_deref(), Some("\u{FFFD}"));
            assert_eq!(e.token_prefix, "wh_\u{FFFD}");
        }
        if i == 200 {
            assert_eq!(e.message_id.as_deref(), Some("evt_\u{FFFD}"));
            assert_eq!(e.event_id.as_deref(), Some("evt_bytes"));
        }
    }

    // Sources: a NUL anywhere is refused, nothing is written.
    type Edit = fn(&mut Source);
    let edits: [(&str, Edit); 6] = [
        ("name", |s| s.name = "a\0".into()),
        ("verification", |s| {
            s.verification = "{\"type\":\"\0\"}".into()
        }),
        ("secrets", |s| s.secrets = vec!["\0".into()]),
        ("allowed_cidrs", |s| s.allowed_cidrs = vec!["\0".into()]),
        ("forward_to", |s| s.forward_to = vec!["\0".into()]),
        ("event_type", |s| s.event_type = "\0".into()),
    ];
    for (field, edit) in edits {
        let mut src = source("src_nul", t0);
        edit(&mut src);
        refused(s.create_source(src, token(2, t0)).await, field);
        assert_eq!(s.get_source("src_nul").await.unwrap(), None, "{field}");
        let mut src = source("src_t", t0);
        edit(&mut src);
        refused(s.update_source(src).await, field);
    }
    assert_eq!(
        s.get_source("src_t").await.unwrap().unwrap().source,
        source("src_t", t0)
    );
    let mut bad_token = token(3, t0 + 1);
    bad_token.prefix = "wh_\0".into();
    refused(
        s.rotate_source_token("src_t", bad_token.clone(), t0 + 1, t0 + 1)
            .await,
        "prefix",
    );
    refused(
        s.create_source(source("src_u", t0), bad_token).await,
        "prefix",
    );
    assert_eq!(s.find_source_by_token([3; 32]).await.unwrap(), None);
    assert_eq!(s.list_sources(Page::new(None, 10)).await.unwrap().len(), 1);

    // A key with a NUL names nothing.
    let k = "src_\0";
    assert_eq!(s.get_source(k).await.unwrap(), None);
    assert!(!s.delete_source(k).await.unwrap());
    assert!(!s.revoke_source(k, t0).await.unwrap());
    assert!(
        !s.rotate_source_token(k, token(4, t0), t0, t0)
            .await
            .unwrap()
    );
    for f in [
        AuditFilter {
            source_id: Some(k.into()),
            ..Default::default()
        },
        AuditFilter {
            outcome: Some("\0".into()),
            ..Default::default()
        },
        AuditFilter {
            client_ip: Some("\0".into()),
            ..Default::default()
        },
    ] {
        assert!(
            s.list_audit(f, Page::new(None, 10))
                .await
                .unwrap()
                .is_empty()
        );
    }
    let range = StatsRange {
        since: t0,
        until: t0 + 1_000,
        bucket_ms: 100,
    };
    assert!(s.ingest_stats(Some(k), range).await.unwrap().is_empty());

    // An accepted request whose event cannot be stored writes nothing, its replay key included.
    let mut acc = inbound_accept("evt_nul", "src_t", t0 + 300, Some(7));
    acc.event.event_type = "t\0".into();
    refused(s.accept_inbound(acc).await, "event_type");
    assert_eq!(s.get_event("evt_nul").await.unwrap(), None);
    assert!(matches!(
        s.accept_inbound(inbound_accept("evt_ok", "src_t", t0 + 301, Some(7)))
            .await
            .unwrap(),
        AcceptOutcome::Accepted { .. }
    ));
}
