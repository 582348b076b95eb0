//! Sending features over real HTTP: payload filters, transformations (and their dry run),
//! recoveries (an endpoint's recover, bulk retry by filter, cancel, overlap refused, on SQLite
//! and on two PostgreSQL instances) and sending an old event to a new endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hookwarden_signatures::Scheme;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn body_of(c: &Captured) -> Value {
    serde_json::from_slice(&c.body).unwrap()
}

/// Deliveries of an endpoint with this status (at most 250).
async fn count(api: &Api, ep: &str, status: &str) -> usize {
    let (st, v) = api
        .get(&format!(
            "/api/v1/deliveries?endpoint_id={ep}&status={status}&limit=250"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().len()
}

async fn wait_count(api: &Api, ep: &str, status: &str, n: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let c = count(api, ep, status).await;
        if c == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ep}: {c} {status}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics_text(s: &Server) -> String {
    let auth = format!("Bearer {}", s.key);
    let (st, _, body) = s
        .api()
        .raw(
            "GET",
            "/metrics",
            &[("authorization", auth.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn payload_filters_keep_events_from_endpoints_they_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();
    let rx = Receiver::start().await;

    // Refused on write, with where and why.
    for (filter, needle) in [
        (json!({"amount": 1}), "start at `data`"),
        (json!({"data.amount": {"$gte": true}}), "$.data.amount.$gte"),
        (json!({"data.x": {"$regex": "("}}), "pattern"),
        (json!([1]), "JSON object"),
    ] {
        let (st, v) = api
            .post(
                "/api/v1/endpoints",
                json!({"url": rx.url("/x"), "filter": filter}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "INVALID_FILTER", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }

    let filter = json!({"data.amount": {"$gte": 100}, "data.currency": {"$in": ["EUR", "USD"]}});
    let rx_all = Receiver::start().await;
    let (big, _) = api
        .endpoint(json!({"url": rx.url("/big"), "event_types": ["order.*"], "filter": filter}))
        .await;
    let (all, _) = api
        .endpoint(json!({"url": rx_all.url("/all"), "event_types": ["order.*"]}))
        .await;
    let (st, v) = api.get(&format!("/api/v1/endpoints/{big}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["filter"], filter);
    for (n, amount, currency) in [
        (1, 5, "EUR"),
        (2, 150, "EUR"),
        (3, 150, "GBP"),
        (4, 999, "USD"),
    ] {
        api.event(
            "order.placed",
            json!({"n": n, "amount": amount, "currency": currency}),
        )
        .await;
    }
    rx_all.wait_count(4, 20).await;
    rx.wait_count(2, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 2);
    let mut to_big: Vec<i64> = rx
        .all()
        .iter()
        .map(|c| body_of(c)["data"]["n"].as_i64().unwrap())
        .collect();
    to_big.sort();
    assert_eq!(to_big, [2, 4]);
    // Not delivered means no delivery at all, and counted.
    assert_eq!(count(&api, &big, "succeeded").await, 2);
    assert_eq!(count(&api, &all, "succeeded").await, 4);
    let text = metrics_text(&s).await;
    assert!(
        text.contains(&format!(
            "hookwarden_events_filtered_total{{endpoint_id=\"{big}\"}} 2"
        )),
        "{text}"
    );

    // Removing the filter delivers everything again.
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{big}"),
            Some(json!({"filter": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["filter"].is_null());
    api.event(
        "order.placed",
        json!({"n": 5, "amount": 1, "currency": "XXX"}),
    )
    .await;
    rx.wait_count(3, 20).await;
}

const TRANSFORM: &str = r#"
fn handler(webhook) {
    if webhook.payload.data.test == true {
        webhook.cancel = true;
        return webhook;
    }
    webhook.payload.data.amount_eur = webhook.payload.data.amount / 100.0;
    webhook.payload.remove("timestamp");
    webhook.headers["X-Amount-Eur"] = `${webhook.payload.data.amount_eur}`;
    print(`${webhook.event_type} to ${webhook.url}`);
    webhook
}
"#;

#[tokio::test]
async fn transformations_change_what_is_signed_and_sent_and_can_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();
    let rx = Receiver::start().await;

    for (script, needle) in [
        ("fn other(w) { w }", "fn handler"),
        ("fn handler(w) { w", "does not compile"),
        ("fn handler(w) { nope }", "does not compile"),
    ] {
        let (st, v) = api
            .post(
                "/api/v1/endpoints",
                json!({"url": rx.url("/x"), "transformation": script}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "INVALID_TRANSFORMATION", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let (ep, secret) = api
        .endpoint(json!({"url": rx.url("/tx"), "transformation": TRANSFORM,
                         "headers": {"x-tenant": "acme"}}))
        .await;

    // Dry run first: nothing is sent.
    let (st, v) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/dry-run"),
            json!({"event_type": "invoice.paid", "payload": {"amount": 1250}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(v["request"]["body"]["data"]["amount_eur"], 12.5, "{v}");
    assert!(v["request"]["body"].get("timestamp").is_none());
    let headers = v["request"]["headers"].as_array().unwrap();
    let header = |n: &str| {
        headers
            .iter()
            .find(|h| h[0] == n)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    assert_eq!(header("x-amount-eur").as_deref(), Some("12.5"));
    assert_eq!(header("x-tenant").as_deref(), Some("acme"));
    assert!(header("webhook-signature").unwrap().starts_with("****"));
    assert_eq!(
        v["transformation"]["logs"],
        json!([format!("invoice.paid to {}", rx.url("/tx"))])
    );
    // Drafts: a filter that does not match, a transformation that fails, one that cancels.
    let (_, v) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/dry-run"),
            json!({"event_type": "invoice.paid", "payload": {"amount": 1},
                   "filter": {"data.amount": {"$gt": 10}}}),
        )
        .await;
    assert_eq!(
        (&v["delivered"], &v["filter"]["matched"]),
        (&json!(false), &json!(false)),
        "{v}"
    );
    let (_, v) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/dry-run"),
            json!({"event_type": "invoice.paid", "payload": {},
                   "transformation": "fn handler(w) { w.headers[\"content-type\"] = \"x\"; w }"}),
        )
        .await;
    assert!(
        v["transformation"]["error"]
            .as_str()
            .unwrap()
            .contains("set by Hookwarden"),
        "{v}"
    );
    let (_, v) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/dry-run"),
            json!({"event_type": "invoice.paid", "payload": {"test": true}}),
        )
        .await;
    assert_eq!(v["transformation"]["cancelled"], true, "{v}");
    assert!(v["request"].is_null());
    let (st, v) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/dry-run"),
            json!({"event_type": "invoice.paid", "payload": {}, "transformation": "fn x() {}"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(rx.count(), 0);

    // Delivered: the transformed body is what is signed.
    api.event("invoice.paid", json!({"amount": 990})).await;
    let got = rx.wait_count(1, 20).await;
    let c = &got[0];
    let body = body_of(c);
    assert_eq!(body["data"]["amount_eur"], 9.9);
    assert!(body.get("timestamp").is_none());
    assert_eq!(c.headers["x-amount-eur"], "9.9");
    assert_eq!(c.headers["x-tenant"], "acme");
    hookwarden_signatures::verify(
        Scheme::StandardWebhooks,
        &[secret.as_str()],
        &c.headers,
        &c.body,
        unix_now(),
        300,
    )
    .unwrap();

    // Cancelled: nothing sent, the delivery says why.
    let evt = api.event("invoice.paid", json!({"test": true})).await;
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 20, |v| {
            v["data"][0]["status"] == "cancelled"
        })
        .await;
    assert!(
        v["data"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("cancelled by the endpoint's transformation"),
        "{v}"
    );
    assert_eq!(rx.count(), 1);

    // A runaway script is stopped; the attempt fails as `transformation` and is retried.
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{ep}"),
            Some(json!({"transformation": "fn handler(w) { loop { } w }"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let evt = api.event("invoice.paid", json!({"amount": 1})).await;
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 20, |v| {
            v["data"][0]["attempt_count"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(v["data"][0]["status"], "pending", "retried: {v}");
    let dlv = v["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, a) = api.get(&format!("/api/v1/deliveries/{dlv}/attempts")).await;
    assert_eq!(a["data"][0]["error_class"], "transformation", "{a}");
    assert!(
        a["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("stopped"),
        "{a}"
    );
    // Removing it, the retry goes out as published.
    api.call(
        "PATCH",
        &format!("/api/v1/endpoints/{ep}"),
        Some(json!({"transformation": null})),
    )
    .await;
    let got = rx.wait_count(2, 20).await;
    assert_eq!(body_of(&got[1])["data"], json!({"amount": 1}));
    let text = metrics_text(&s).await;
    for outcome in ["applied", "cancelled", "failed"] {
        assert!(
            text.contains(&format!(
                "hookwarden_transformations_total{{outcome=\"{outcome}\"}}"
            )),
            "{text}"
        );
    }
}

/// Publishes `n` events of `ty` (payload `{"n": i}`) and waits until every delivery to `ep`
/// failed for good.
async fn failed_events(api: &Api, ep: &str, ty: &str, from: usize, n: usize, failed_before: usize) {
    for i in from..from + n {
        api.event(ty, json!({"n": i})).await;
    }
    wait_count(api, ep, "failed", failed_before + n, 60).await;
}

/// The recovered requests a receiver got, by payload `n`, in arrival order.
fn ns(got: &[Captured]) -> Vec<i64> {
    got.iter()
        .map(|c| body_of(c)["data"]["n"].as_i64().unwrap())
        .collect()
}

/// The recovery scenario on the servers given (`a` creates jobs; `b` is asked for overlapping
/// ones: the same server on SQLite, another instance on PostgreSQL).
async fn recovery_scenario(a: &Api, b: &Api) {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let (ep, _) = a
        .endpoint(json!({"url": rx.url("/r"), "event_types": ["order.*", "user.*"]}))
        .await;
    let (other, _) = a
        .endpoint(json!({"url": rx.url("/other"), "event_types": ["nothing"]}))
        .await;
    let t0 = unix_now() * 1000 - 1000;
    failed_events(a, &ep, "order.placed", 0, 130, 0).await;
    let failed_requests = rx.count();
    assert_eq!(failed_requests, 130);

    // The first request of the recovery hangs for a while; with one request at a time and the
    // dispatcher's memory full, the job waits on its first batch meanwhile.
    rx.push(Reply {
        delay: Duration::from_secs(3),
        ..Reply::status(200)
    });
    rx.set_default(Reply::status(200));
    let (st, job) = a
        .post(
            &format!("/api/v1/endpoints/{ep}/recover"),
            json!({"since": t0.to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        (&job["status"], &job["total"]),
        (&json!("running"), &json!(130))
    );
    let id = job["id"].as_str().unwrap().to_owned();
    // While it runs, an overlapping window is refused (any instance); another endpoint's is not.
    let (st, v) = b
        .post(
            "/api/v1/recoveries",
            json!({"endpoint_id": ep, "since": (t0 + 5).to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "RECOVERY_OVERLAPS");
    assert!(v["error"]["message"].as_str().unwrap().contains(&id), "{v}");
    let (st, v) = b
        .post(
            &format!("/api/v1/endpoints/{other}/recover"),
            json!({"since": t0.to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let v = a
        .wait_for(&format!("/api/v1/recoveries/{id}"), 60, |v| {
            v["status"] == "completed"
        })
        .await;
    assert_eq!(v["requeued"], 130, "{v}");
    wait_count(a, &ep, "succeeded", 130, 60).await;
    // Each once, batch after batch in the order the events were created (within a batch,
    // dispatched in order; requests in flight together may swap places).
    let recovered = ns(&rx.all()[failed_requests..]);
    assert_eq!(recovered.len(), 130);
    let mut first: Vec<i64> = recovered[..100].to_vec();
    first.sort();
    assert_eq!(first, (0..100).collect::<Vec<i64>>(), "{recovered:?}");
    let mut rest: Vec<i64> = recovered[100..].to_vec();
    rest.sort();
    assert_eq!(rest, (100..130).collect::<Vec<i64>>(), "{recovered:?}");

    // Bulk retry by filter: only `user.*`, then cancelled after its first batch.
    rx.set_default(Reply::status(500));
    let t1 = unix_now() * 1000 - 500;
    failed_events(a, &ep, "user.created", 1000, 120, 0).await;
    failed_events(a, &ep, "order.placed", 2000, 5, 120).await;
    let before = rx.count();
    rx.push(Reply {
        delay: Duration::from_secs(3),
        ..Reply::status(200)
    });
    rx.set_default(Reply::status(200));
    let (st, job) = a
        .post(
            "/api/v1/recoveries",
            json!({"event_type": "user.*", "since": t1.to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 120, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Its first batch is made due (and waits on the hanging request): cancel it now.
    a.wait_for(&format!("/api/v1/recoveries/{id}"), 20, |v| {
        v["requeued"] == 100
    })
    .await;
    let (st, v) = b
        .post(&format!("/api/v1/recoveries/{id}/cancel"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    // What it had made due goes out; nothing more.
    wait_count(a, &ep, "succeeded", 230, 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(a, &ep, "failed").await, 25);
    assert_eq!(count(a, &ep, "pending").await, 0);
    let v = a.get(&format!("/api/v1/recoveries/{id}")).await.1;
    assert_eq!(
        (&v["status"], &v["requeued"]),
        (&json!("cancelled"), &json!(100)),
        "{v}"
    );
    let mut sent_again = ns(&rx.all()[before..]);
    sent_again.sort();
    assert_eq!(sent_again, (1000..1100).collect::<Vec<i64>>());
    let (_, list) = a.get("/api/v1/recoveries").await;
    assert_eq!(list["data"][0]["id"], id.as_str());
}

#[tokio::test]
async fn recovery_sends_what_failed_again_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with("", "concurrency = 1\nmax_attempts = 1");
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    recovery_scenario(&api, &api).await;

    // Invalid requests.
    for (body, code) in [
        (json!({"since": "yesterday"}), "INVALID_QUERY"),
        (
            json!({"since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"}),
            "INVALID_WINDOW",
        ),
        (
            json!({"since": "0", "endpoint_id": "ep_nope"}),
            "ENDPOINT_NOT_FOUND",
        ),
        (
            json!({"since": "0", "event_type": "bad type"}),
            "INVALID_EVENT_TYPE",
        ),
    ] {
        let (st, v) = api.post("/api/v1/recoveries", body).await;
        assert!(st.is_client_error(), "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    let (st, _) = api
        .post("/api/v1/endpoints/ep_nope/recover", json!({"since": "0"}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = api.get("/api/v1/recoveries/rcv_nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn recovery_on_two_postgres_instances() {
    let Some(db) = Db::create("hw_recover").await else {
        return;
    };
    let cfg = test_config_with(
        &format!(
            "[storage]\nurl = \"{}\"\nmax_connections = 4\n{}",
            db.url,
            common::pg::security_section()
        ),
        "concurrency = 1\nmax_attempts = 1",
    )
    .replace("[storage]\nsqlite_synchronous = \"normal\"\n", "");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_in(d1.path(), &cfg, None);
    let b = Server::start_in(d2.path(), &cfg, Some(a.key.clone()));
    recovery_scenario(&a.api(), &b.api()).await;
}

#[tokio::test]
async fn an_old_event_goes_to_an_endpoint_made_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();
    let rx = Receiver::start().await;
    let evt = api.event("invoice.paid", json!({"amount": 7})).await;
    let (late, _) = api
        .endpoint(json!({"url": rx.url("/late"), "event_types": ["other"],
                         "filter": {"data.amount": {"$gt": 100}}}))
        .await;
    let (st, d) = api
        .post(
            &format!("/api/v1/events/{evt}/deliveries"),
            json!({"endpoint_id": late}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(
        (&d["endpoint_id"], &d["event_id"]),
        (&json!(late), &json!(evt))
    );
    let got = rx.wait_count(1, 20).await;
    assert_eq!(body_of(&got[0])["id"], evt.as_str());
    let (st, v) = api
        .post(
            &format!("/api/v1/events/{evt}/deliveries"),
            json!({"endpoint_id": late}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "DELIVERY_EXISTS");
    let (st, v) = api
        .post(
            &format!("/api/v1/events/{evt}/deliveries"),
            json!({"endpoint_id": "ep_nope"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "ENDPOINT_NOT_FOUND");
    let (st, _) = api
        .post(
            "/api/v1/events/evt_nope/deliveries",
            json!({"endpoint_id": late}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
