//! The OpenAPI 3.1 document, generated from the handlers themselves and served at
//! `GET /api/v1/openapi.json` (public: it describes the API and holds no secrets).
//!
//! # Adding a route (one place, one pattern)
//!
//! 1. Annotate the handler with `#[utoipa::path(...)]`: the method, the path *relative to the
//!    router it is registered on* (admin routes are nested under `/api/v1`), a `tag`, its
//!    `params(...)` (path parameters; query structs derive `IntoParams`), its `request_body`, its
//!    success responses with their body types, and the refusals specific to it (404, 409, 422…).
//!    Bodies are the types the handler really (de)serializes, deriving `ToSchema`.
//! 2. Register it in [`super::router`] with `.routes(routes!(handler))` on the right
//!    `OpenApiRouter` (the `authed` one for admin routes). Never with plain `.route(...)`: the
//!    route and its documentation are registered together, so they cannot drift apart (a test
//!    refuses `.route(` in the API modules).
//!
//! [`finish`] then adds what every operation shares, derived from what the operation takes: the
//! bearer requirement and 401 for routes behind the API key ([`require_api_key`]), 400 for
//! malformed path or query parameters, 400/413/415/422 for JSON bodies, and 500/503.

use crate::error::ErrorBody;
use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

/// The name of the security scheme of the admin API key.
pub const API_KEY: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookwarden API",
        description = "Admin API of Hookwarden, a self-hosted webhook gateway: outbound endpoints, \
events and deliveries, client certificates (mTLS), inbound sources and their audit log, plus the \
public security information, ingest (`/in/{token}`), health and metrics. Admin routes take \
`Authorization: Bearer <admin API key>`. Every refusal is \
`{\"success\": false, \"error\": {\"code\": \"...\", \"message\": \"...\"}}` with a stable code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "endpoints", description = "Receivers of outbound webhooks"),
        (name = "events", description = "Publishing events and following their deliveries"),
        (name = "recoveries", description = "Sending again what failed for good: an endpoint's recover, bulk retries by filter"),
        (name = "client-certificates", description = "Client certificates presented to endpoints (mTLS)"),
        (name = "sources", description = "Inbound sources: secret webhook URLs and their audit log"),
        (name = "security", description = "Public: egress ranges and certificates for receivers to pin"),
        (name = "inbound", description = "Public: receiving webhooks"),
        (name = "stats", description = "Time series for charts: deliveries and inbound requests per time bucket"),
        (name = "api-keys", description = "Admin API keys: made, listed, revoked (the key itself is shown once)"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// The document's skeleton (info, tags, the error schema); the router adds the paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `(method, operation)` for every operation of a path item.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
}

/// Marks every operation in `doc` as requiring the admin API key (with its 401). Called on the
/// same router that gets the `require_api_key` layer, so the two always agree.
pub fn require_api_key(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for (_, op) in operations_mut(item) {
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(API_KEY, [])]);
            add_error(
                op,
                401,
                "Missing, malformed or invalid API key (`UNAUTHORIZED`, `INVALID_API_KEY`)",
            );
        }
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

/// Adds an error response for `status` unless the operation documents that status itself.
fn add_error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_response(description));
}

/// Adds the refusals every operation shares and the security scheme; sorts nothing, removes
/// nothing.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An admin API key (`hwk_…`) from the first start or `hookwarden keys create`",
                ))
                .build(),
        ),
    );
    for item in doc.paths.paths.values_mut() {
        for (_, op) in operations_mut(item) {
            // Handler names repeat across modules (`create`, `list`…): prefix the tag, e.g.
            // `endpoints_create`, `client_certificates_list`.
            if let (Some(tag), Some(id)) = (
                op.tags.as_ref().and_then(|t| t.first()),
                op.operation_id.as_mut(),
            ) {
                *id = format!("{}_{id}", tag.replace('-', "_"));
            }
            let params = op.parameters.as_deref().unwrap_or_default();
            let has = |kind: ParameterIn| params.iter().any(|p| p.parameter_in == kind);
            let (in_path, in_query) = (has(ParameterIn::Path), has(ParameterIn::Query));
            if in_path {
                add_error(op, 400, "Malformed path parameter (`INVALID_PATH`)");
            }
            if in_query {
                add_error(op, 400, "Malformed query parameters (`INVALID_QUERY`)");
            }
            // A JSON-only body is parsed by `ApiJson` (ingest takes any body and says so itself).
            let json_body = op.request_body.as_ref().is_some_and(|b| {
                b.content.len() == 1 && b.content.contains_key("application/json")
            });
            if json_body {
                add_error(
                    op,
                    400,
                    "Malformed JSON (`INVALID_JSON`) or parameters (`INVALID_PATH`, `INVALID_QUERY`)",
                );
                add_error(
                    op,
                    413,
                    "Body larger than `server.max_body_bytes` (`PAYLOAD_TOO_LARGE`)",
                );
                add_error(
                    op,
                    415,
                    "Missing `Content-Type: application/json` (`UNSUPPORTED_MEDIA_TYPE`)",
                );
                add_error(
                    op,
                    422,
                    "Well-formed JSON with invalid content (`VALIDATION_FAILED` or a field's code)",
                );
            }
            add_error(
                op,
                500,
                "Unexpected internal error (`INTERNAL_ERROR`; logged on the server)",
            );
            add_error(
                op,
                503,
                "Storage unavailable, shutting down, or the request took longer than \
                 `server.request_timeout_secs` (`UNAVAILABLE`, `TIMEOUT`)",
            );
        }
    }
}

/// The serialized document, shared by every request (an `Extension`).
#[derive(Clone)]
pub struct Document(pub Bytes);

impl Document {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Document {
        // Serializing plain data structures cannot fail; an empty body would fail every test.
        Document(Bytes::from(serde_json::to_vec(doc).unwrap_or_default()))
    }
}

/// This document (OpenAPI 3.1, JSON). Public: it holds no secrets.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this server",
            content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0).into_response()
}
