//! The OpenAPI document served at `/api/v1/openapi.json` by the real `hookwarden serve`: valid
//! OpenAPI 3.1 in shape, listing exactly the expected operations, each of which is really routed
//! (not the 404 fallback, not 405), with the bearer requirement on exactly the admin routes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every operation the server serves (with metrics enabled, the default).
const EXPECTED: &[&str] = &[
    "GET /",
    "GET /health",
    "GET /metrics",
    "POST /in/{token}",
    "GET /api/v1/openapi.json",
    "GET /api/v1/security/egress-ips",
    "GET /api/v1/security/client-certificates",
    "POST /api/v1/api-keys",
    "GET /api/v1/api-keys",
    "GET /api/v1/api-keys/{id}",
    "POST /api/v1/api-keys/{id}/revoke",
    "POST /api/v1/endpoints",
    "GET /api/v1/endpoints",
    "GET /api/v1/endpoints/{id}",
    "PATCH /api/v1/endpoints/{id}",
    "DELETE /api/v1/endpoints/{id}",
    "POST /api/v1/endpoints/{id}/secret/rotate",
    "POST /api/v1/endpoints/{id}/enable",
    "POST /api/v1/endpoints/{id}/disable",
    "POST /api/v1/endpoints/{id}/probe",
    "POST /api/v1/event-types",
    "GET /api/v1/event-types",
    "GET /api/v1/event-types/{name}",
    "PATCH /api/v1/event-types/{name}",
    "DELETE /api/v1/event-types/{name}",
    "GET /api/v1/endpoints/{id}/public-keys",
    "POST /api/v1/endpoints/{id}/signing-key/rotate",
    "GET /api/v1/endpoints/{id}/probes",
    "POST /api/v1/endpoints/{id}/dry-run",
    "POST /api/v1/endpoints/{id}/recover",
    "POST /api/v1/recoveries",
    "GET /api/v1/recoveries",
    "GET /api/v1/recoveries/{id}",
    "POST /api/v1/recoveries/{id}/cancel",
    "POST /api/v1/events/{id}/deliveries",
    "GET /api/v1/endpoints/{id}/deliveries",
    "POST /api/v1/events",
    "GET /api/v1/events",
    "GET /api/v1/events/{id}",
    "GET /api/v1/events/{id}/deliveries",
    "GET /api/v1/deliveries",
    "GET /api/v1/deliveries/{id}",
    "GET /api/v1/deliveries/{id}/attempts",
    "POST /api/v1/deliveries/{id}/retry",
    "GET /api/v1/stats",
    "GET /api/v1/stats/deliveries",
    "GET /api/v1/stats/ingest",
    "POST /api/v1/client-certificates",
    "GET /api/v1/client-certificates",
    "GET /api/v1/client-certificates/{id}",
    "DELETE /api/v1/client-certificates/{id}",
    "POST /api/v1/client-certificates/{id}/retire",
    "POST /api/v1/sources",
    "GET /api/v1/sources",
    "GET /api/v1/sources/{id}",
    "PATCH /api/v1/sources/{id}",
    "DELETE /api/v1/sources/{id}",
    "POST /api/v1/sources/{id}/rotate",
    "POST /api/v1/sources/{id}/revoke",
    "GET /api/v1/sources/{id}/audit",
    "GET /api/v1/sources/{id}/stats",
    "GET /api/v1/inbound/audit",
];

/// Operations without the API key.
const PUBLIC: &[&str] = &[
    "GET /",
    "GET /health",
    "POST /in/{token}",
    "GET /api/v1/openapi.json",
    "GET /api/v1/security/egress-ips",
    "GET /api/v1/security/client-certificates",
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `"METHOD /path"` → operation.
fn operations(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            out.insert(format!("{} {path}", method.to_uppercase()), op.clone());
        }
    }
    out
}

/// Every `$ref` in `v`, which must point into `#/components/...` and exist.
fn check_refs(doc: &Value, v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                let r = r.as_str().expect("$ref is a string");
                let ptr = r.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {r}"));
                assert!(doc.pointer(ptr).is_some(), "{at}: dangling $ref {r}");
            }
            for (k, x) in m {
                check_refs(doc, x, &format!("{at}/{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x, at)),
        _ => {}
    }
}

async fn fetch_doc(api: &Api) -> Value {
    let (status, headers, body) = api.raw("GET", "/api/v1/openapi.json", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).expect("the document is JSON")
}

#[tokio::test]
async fn document_lists_every_route_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &test_config(""), None);
    let api = server.api();
    // Public: no key needed (and a wrong one is not looked at).
    let doc = fetch_doc(&api.with_key("wrong")).await;

    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Hookwarden API");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert!(doc["components"]["schemas"]["Error"].is_object());
    check_refs(&doc, &doc, "#");

    let ops = operations(&doc);
    let got: BTreeSet<&str> = ops.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = EXPECTED.iter().copied().collect();
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "documented but not expected"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "expected but not documented"
    );

    let mut ids = BTreeSet::new();
    for (name, op) in &ops {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}"));
        assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{name}"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{name}: no success response"
        );
        for (status, r) in responses {
            assert!(r["description"].is_string(), "{name} {status}");
            let code: u16 = status
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {status}"));
            if code >= 400 {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{name} {status}: refusals use the error envelope"
                );
            }
        }
        // Every operation can fail inside; documented so clients handle it.
        assert!(
            responses.contains_key("500") && responses.contains_key("503"),
            "{name}"
        );
        let security = &op["security"];
        if PUBLIC.contains(&name.as_str()) {
            assert!(security.is_null(), "{name} must be public: {security}");
        } else {
            assert_eq!(security, &serde_json::json!([{"api_key": []}]), "{name}");
            assert!(responses.contains_key("401"), "{name}: 401 not documented");
        }
        // Path parameters are declared, and named as in the path.
        let path = name.split_once(' ').unwrap().1;
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_path, "{name}");
        if !in_path.is_empty() || op["parameters"].is_array() {
            assert!(responses.contains_key("400"), "{name}: 400 not documented");
        }
        if op["requestBody"]["content"]
            .as_object()
            .is_some_and(|c| c.len() == 1 && c.contains_key("application/json"))
        {
            for s in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(s), "{name}: {s} not documented");
            }
        }
    }
    // Request and response bodies name their schemas.
    for schema in [
        "Endpoint",
        "CreateEndpoint",
        "UpdateEndpoint",
        "CreatedEndpoint",
        "Event",
        "CreateEvent",
        "Delivery",
        "Attempt",
        "ClientCertificate",
        "Source",
        "CreateSource",
        "AuditEntry",
        "DeliveryCounts",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // `deny_unknown_fields` request bodies say so.
    assert_eq!(
        doc["components"]["schemas"]["CreateEndpoint"]["additionalProperties"],
        false
    );

    // Every documented operation is routed: without a key, admin routes answer 401 and public
    // ones anything but the fallbacks; methods not documented on a path answer 405.
    let no_key = api.with_key("");
    for name in ops.keys() {
        let (method, path) = name.split_once(' ').unwrap();
        let concrete = path.replace("{id}", "x_1").replace("{token}", "t_1");
        let (status, _, body) = no_key.raw(method, &concrete, &[], vec![]).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let fallback = v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("No such") && m.ends_with("route"));
        assert!(
            !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
            "{name} is documented but not routed: {status} {v}"
        );
        if !PUBLIC.contains(&name.as_str()) {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {v}");
        }
    }
    let paths: BTreeSet<&str> = ops.keys().map(|n| n.split_once(' ').unwrap().1).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if ops.contains_key(&format!("{method} {path}")) {
                continue;
            }
            let concrete = path.replace("{id}", "x_1").replace("{token}", "t_1");
            let (status, _, body) = api.raw(method, &concrete, &[], vec![]).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is routed but not documented: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // Ids that cannot name a resource are refused before storage sees them (a NUL byte made
    // PostgreSQL fail with a 500).
    let long = "a".repeat(65);
    for name in ops.keys().filter(|n| n.contains("{id}")) {
        let (method, path) = name.split_once(' ').unwrap();
        for bad in ["a%00b", "a%20b", "%C3%A9", long.as_str()] {
            let concrete = path.replace("{id}", bad);
            let (status, _, body) = api
                .raw(
                    method,
                    &concrete,
                    &[("authorization", &format!("Bearer {}", server.key))],
                    vec![],
                )
                .await;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("INVALID_PATH")),
                "{method} {concrete}: {v}"
            );
        }
    }
    let (status, v) = api.get("/api/v1/deliveries?endpoint_id=a%00b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_QUERY", "{v}");

    // Bodies over `server.max_body_bytes` get the documented JSON 413, also on the routes whose
    // body is optional (read raw).
    let auth = format!("Bearer {}", server.key);
    let big = vec![b' '; 1024 * 1024 + 1];
    for p in [
        "/api/v1/endpoints/x_1/secret/rotate",
        "/api/v1/sources/x_1/rotate",
        "/api/v1/events",
    ] {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let (status, h, body) = api.raw("POST", p, &headers, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
        assert_eq!(h["content-type"], "application/json", "{p}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE", "{p}");
    }
    // Unknown paths are the JSON 404, also under /api/v1.
    for p in ["/api/v1/nope", "/nope"] {
        let (status, v) = api.get(p).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(v["error"]["code"], "NOT_FOUND", "{p}");
    }
}

#[tokio::test]
async fn metrics_documented_as_configured() {
    // Public metrics: documented without a security requirement.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &test_config("[metrics]\npublic = true\n"), None);
    let doc = fetch_doc(&server.api()).await;
    let op = &doc["paths"]["/metrics"]["get"];
    assert!(op.is_object(), "{}", doc["paths"]);
    assert!(op["security"].is_null(), "{op}");
    assert!(
        op["responses"]["200"]["content"]["text/plain; version=0.0.4"].is_object(),
        "{op}"
    );
    let (status, _, _) = server
        .api()
        .with_key("")
        .raw("GET", "/metrics", &[], vec![])
        .await;
    assert_eq!(status, StatusCode::OK);
    drop(server);

    // Disabled: neither served nor documented.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir.path(),
        &test_config("[metrics]\nenabled = false\n"),
        None,
    );
    let doc = fetch_doc(&server.api()).await;
    assert!(doc["paths"]["/metrics"].is_null(), "{}", doc["paths"]);
    let (status, _) = server.api().get("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
