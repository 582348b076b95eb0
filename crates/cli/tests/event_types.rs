//! The event-type catalogue over real HTTP: CRUD, schemas checked on publish, bounds (no
//! fetching, no backtracking, size and depth), and names with `/` in paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_catalogue_validates_payloads_on_publish() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();
    let schema = json!({
        "type": "object",
        "required": ["invoice", "amount"],
        "properties": {
            "invoice": {"type": "string", "pattern": "^in_[a-z0-9]+$"},
            "amount": {"type": "integer", "minimum": 0}
        }
    });
    let (st, v) = api
        .post(
            "/api/v1/event-types",
            json!({"name": "invoice.paid", "description": "An invoice was paid", "schema": schema,
                   "example": {"invoice": "in_1", "amount": 4200}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["validate"], true);
    assert_eq!(v["schema"], schema);
    let (st, _) = api
        .post("/api/v1/event-types", json!({"name": "invoice.paid"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Publishing: a matching payload is accepted, another refused with the schema's reason.
    let (st, v) = api
        .post(
            "/api/v1/events",
            json!({"type": "invoice.paid", "payload": {"invoice": "in_7", "amount": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    for (bad, needle) in [
        (json!({"invoice": "in_7"}), "amount"),
        (json!({"invoice": "in_7", "amount": -5}), "/amount"),
        (json!({"invoice": "xx", "amount": 5}), "/invoice"),
        (json!([1, 2]), "object"),
    ] {
        let (st, v) = api
            .post(
                "/api/v1/events",
                json!({"type": "invoice.paid", "payload": bad}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "SCHEMA_MISMATCH");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    // Types outside the catalogue are not checked.
    let (st, _) = api
        .post("/api/v1/events", json!({"type": "other", "payload": [1]}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);

    // Turning validation off, then deleting the type, lets anything through again.
    let (st, v) = api
        .call(
            "PATCH",
            "/api/v1/event-types/invoice.paid",
            Some(json!({"validate": false, "deprecated": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["validate"].as_bool(), v["deprecated"].as_bool()),
        (Some(false), Some(true))
    );
    let (st, _) = api
        .post(
            "/api/v1/events",
            json!({"type": "invoice.paid", "payload": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = api
        .call(
            "PATCH",
            "/api/v1/event-types/invoice.paid",
            Some(json!({"validate": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = api
        .post(
            "/api/v1/events",
            json!({"type": "invoice.paid", "payload": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = api
        .call("DELETE", "/api/v1/event-types/invoice.paid", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = api
        .post(
            "/api/v1/events",
            json!({"type": "invoice.paid", "payload": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = api.get("/api/v1/event-types/invoice.paid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Schemas never fetch anything, stay bounded, and an example must match.
    for (bad, why) in [
        (
            json!({"name": "x", "schema": {"$ref": "http://127.0.0.1:9/s.json"}}),
            "not fetched",
        ),
        (
            json!({"name": "x", "schema": {"$ref": "file:///etc/passwd"}}),
            "not fetched",
        ),
        (
            json!({"name": "x", "schema": {"type": "string", "pattern": "(a)\\1"}}),
            "schema",
        ),
        (
            json!({"name": "x", "schema": {"description": "d".repeat(70_000)}}),
            "larger",
        ),
        (
            json!({"name": "x", "schema": {"type": "object"}, "example": 3}),
            "example",
        ),
        (json!({"name": "x", "validate": true}), "needs a schema"),
        (json!({"name": "x.*"}), "letters"),
    ] {
        let (st, v) = api.post("/api/v1/event-types", bad.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(why),
            "{why}: {v}"
        );
    }
    // A pattern that backtracks catastrophically elsewhere is linear here.
    let (st, _) = api
        .post(
            "/api/v1/event-types",
            json!({"name": "slow", "schema": {"type": "string", "pattern": "^(a+)+$"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let started = std::time::Instant::now();
    let (st, _) = api
        .post(
            "/api/v1/events",
            json!({"type": "slow", "payload": format!("{}!", "a".repeat(200_000))}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Names with `/` and `:` work in paths (percent-encoded); listing is by name, paged.
    let (st, _) = api
        .post("/api/v1/event-types", json!({"name": "user/created:v2"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = api.get("/api/v1/event-types/user%2Fcreated:v2").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "user/created:v2");
    let (_, v) = api.get("/api/v1/event-types?limit=1").await;
    assert_eq!(v["data"][0]["name"], "slow");
    assert_eq!(v["has_more"], true);
    let (_, v) = api
        .get(&format!("/api/v1/event-types?limit=1&before={}", "slow"))
        .await;
    assert_eq!(v["data"][0]["name"], "user/created:v2");
    let (_, v) = api
        .get("/api/v1/event-types?before=user%2Fcreated:v2")
        .await;
    assert_eq!(v["data"], json!([]));
    let (st, _) = api.get("/api/v1/event-types?before=a%20b").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
