//! The admin API (`/api/v1`), health and metrics routes.

mod api_keys;
mod certificates;
mod dry_run;
pub(crate) mod endpoints;
mod event_types;
mod events;
pub mod extract;
pub mod openapi;
mod probes;
mod recoveries;
pub(crate) mod security;
mod sources;
mod stats;

use crate::error::{ApiError, ApiResult, ErrorBody};

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A page of results: newest first; pass `next_before` as `before` to get the next page. A page
/// holds at most `limit` items and at most `server.max_page_bytes` of stored data (a single
/// larger item comes alone): it may hold fewer than `limit` with `has_more` true.
#[derive(Serialize, ToSchema)]
pub struct Paged<T: Serialize> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_before: Option<String>,
}

/// A short, whole list (not paged).
#[derive(Serialize, ToSchema)]
pub struct Listing<T: Serialize> {
    pub data: Vec<T>,
}

/// The whole HTTP surface. Every route is registered with `routes!` on an `OpenApiRouter`, so the
/// OpenAPI document ([`openapi`]) lists exactly the routes served; see [`openapi`] for the
/// pattern to follow when adding one.
pub fn router(state: Arc<AppState>) -> Router {
    let mut authed = OpenApiRouter::default()
        .routes(routes!(endpoints::create, endpoints::list))
        .routes(routes!(
            endpoints::get_one,
            endpoints::update,
            endpoints::delete
        ))
        .routes(routes!(endpoints::rotate_secret))
        .routes(routes!(endpoints::public_keys))
        .routes(routes!(endpoints::rotate_signing_key))
        .routes(routes!(endpoints::enable))
        .routes(routes!(endpoints::disable))
        .routes(routes!(probes::probe))
        .routes(routes!(probes::list_probes))
        .routes(routes!(dry_run::dry_run))
        .routes(routes!(recoveries::recover))
        .routes(routes!(recoveries::create, recoveries::list))
        .routes(routes!(recoveries::get_one))
        .routes(routes!(recoveries::cancel))
        .routes(routes!(events::endpoint_deliveries))
        .routes(routes!(event_types::create, event_types::list))
        .routes(routes!(
            event_types::get_one,
            event_types::update,
            event_types::delete
        ))
        .routes(routes!(events::create, events::list))
        .routes(routes!(events::get_one))
        .routes(routes!(events::event_deliveries, recoveries::add_delivery))
        .routes(routes!(events::list_deliveries))
        .routes(routes!(events::get_delivery))
        .routes(routes!(events::attempts))
        .routes(routes!(events::retry))
        .routes(routes!(events::stats))
        .routes(routes!(stats::deliveries))
        .routes(routes!(stats::ingest_all))
        .routes(routes!(certificates::create, certificates::list))
        .routes(routes!(certificates::get_one, certificates::delete))
        .routes(routes!(certificates::retire))
        .routes(routes!(sources::create, sources::list))
        .routes(routes!(sources::get_one, sources::update, sources::delete))
        .routes(routes!(sources::rotate))
        .routes(routes!(sources::revoke))
        .routes(routes!(sources::source_audit))
        .routes(routes!(stats::source))
        .routes(routes!(sources::all_audit))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::get_one))
        .routes(routes!(api_keys::revoke))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    openapi::require_api_key(authed.get_openapi_mut());

    let api = OpenApiRouter::default()
        .merge(authed)
        .merge(security::routes())
        .routes(routes!(openapi::openapi_json))
        .fallback(api_not_found);

    let mut app = OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", api)
        .routes(routes!(crate::inbound::ingest::ingest))
        .routes(routes!(health))
        .routes(routes!(root));
    if state.config.metrics.on_main_listener() {
        app = app.merge(metrics_routes(&state));
    }
    let (app, mut doc) = app.split_for_parts();
    openapi::finish(&mut doc);
    // The console's pages and assets are not API routes: they are not in the document.
    app.merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(openapi::Document::new(&doc)))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.server.max_body_bytes,
        ))
        .layer(main_hardening(&state))
        .with_state(state)
}

/// The time limit and security headers of every response (both listeners).
fn hardening(state: &AppState) -> crate::http_server::Hardening {
    crate::http_server::Hardening::new(Duration::from_secs(
        state.config.server.request_timeout_secs,
    ))
}

/// The main listener's: [`hardening`], and with `[server.tls]` no plain HTTP (see
/// [`crate::http_server::HttpsOnly`]).
fn main_hardening(state: &AppState) -> crate::http_server::Hardening {
    let h = hardening(state);
    if state.config.server.tls.is_none() {
        return h;
    }
    let client_ip = &state.inbound.client_ip;
    let public_base = state
        .config
        .server
        .public_url
        .as_deref()
        .filter(|u| u.starts_with("https://"))
        .map(|u| {
            // Only scheme and authority: the request's own path follows.
            let rest = &u["https://".len()..];
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("https://{authority}")
        });
    h.https_only(crate::http_server::HttpsOnly {
        trusted_proxies: client_ip.trusted_list(),
        rfc7239: client_ip
            .headers
            .contains(&hookwarden_netguard::ForwardedHeader::Forwarded),
        public_base,
    })
}

/// `/metrics`, behind an API key unless `metrics.public`.
fn metrics_routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let mut metrics = OpenApiRouter::default().routes(routes!(metrics_route));
    if !state.config.metrics.public {
        metrics = metrics.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
        openapi::require_api_key(metrics.get_openapi_mut());
    }
    metrics
}

/// The separate metrics listener (`metrics.listen`): `/metrics` and nothing else.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    let (routes, _) = metrics_routes(&state).split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .layer(hardening(&state))
        .with_state(state)
}

/// Service name, version and where the API is.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses((status = 200, description = "Service name, version and API base path", body = RootInfo))
)]
async fn root() -> axum::Json<RootInfo> {
    axum::Json(RootInfo {
        service: "hookwarden",
        version: env!("CARGO_PKG_VERSION"),
        api: "/api/v1",
        console: "/console/",
    })
}

#[derive(Serialize, ToSchema)]
pub struct RootInfo {
    #[schema(value_type = String)]
    service: &'static str,
    #[schema(value_type = String)]
    version: &'static str,
    #[schema(value_type = String)]
    api: &'static str,
    /// The web console (a page, not part of this API).
    #[schema(value_type = String)]
    console: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(value_type = String)]
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String)]
    storage: &'static str,
    /// Deliveries this instance holds in memory (claimed, queued or in flight).
    deliveries_in_memory: usize,
}

/// Liveness and storage reachability, cheap enough for load balancers to poll often (queue
/// figures are in `/metrics` and `/api/v1/stats`).
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Up, and storage answers", body = Health),
        (status = 503, description = "Storage unavailable (`UNAVAILABLE`)", body = ErrorBody),
    )
)]
async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(Health {
            status: "ok",
            storage: state.store.backend(),
            deliveries_in_memory: state.dispatcher.load(),
        })
        .into_response(),
        Err(_) => ApiError::unavailable("storage unavailable").into_response(),
    }
}

/// Prometheus metrics (text exposition format 0.0.4). Needs the admin API key unless
/// `metrics.public = true`; absent when `metrics.enabled = false`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format",
            content_type = "text/plain; version=0.0.4", body = String),
    )
)]
async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            state.scraper.render(&state, h).await,
        )
            .into_response(),
        None => ApiError::unavailable("metrics recorder not installed").into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such route")
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such API route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this route",
    )
}

/// `Authorization: Bearer <admin API key>` on every protected route.
async fn require_api_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Missing Authorization: Bearer <api key>",
        )
        .into_response();
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty() && k.len() <= 256);
    let Some(key) = key else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Malformed Authorization header; expected Bearer <api key>",
        )
        .into_response();
    };
    match state
        .api_keys
        .check(&*state.keys, key, state.clock.now_millis())
        .await
    {
        Ok(Some((id, record_use))) => {
            if record_use {
                let keys = state.keys.clone();
                let clock = state.clock.clone();
                tokio::spawn(async move {
                    if let Err(e) = keys.touch_api_key(&id, clock.now_millis()).await {
                        tracing::debug!(error = %e, "could not record an API key's use");
                    }
                });
            }
            next.run(req).await
        }
        Ok(None) => {
            metrics::counter!("hookwarden_api_auth_failures_total").increment(1);
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_API_KEY",
                "Invalid API key",
            )
            .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Pagination query parameters shared by list routes.
#[derive(serde::Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 250 (default 50); a page also stops before its stored data exceeds
    /// `server.max_page_bytes`.
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<usize>,
    /// The `next_before` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    pub before: Option<String>,
}

impl PageQuery {
    /// The store page: `limit` items within `max_bytes` (`server.max_page_bytes`).
    pub fn page(&self, max_bytes: usize) -> ApiResult<hookwarden_store::Page> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=250).contains(&limit) {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                "limit must be between 1 and 250",
            ));
        }
        if let Some(b) = &self.before
            && (b.len() > 64 || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                "before is not a valid id",
            ));
        }
        Ok(hookwarden_store::Page::new(self.before.clone(), limit).with_max_bytes(max_bytes))
    }
}

/// The API page of a store page: `next_before` is its last item's id when more follow.
pub fn paged<T: Serialize, U>(
    rows: hookwarden_store::Listed<U>,
    id: impl Fn(&U) -> String,
    view: impl Fn(U) -> T,
) -> Paged<T> {
    let has_more = rows.more && !rows.is_empty();
    let next_before = if has_more { rows.last().map(&id) } else { None };
    Paged {
        data: rows.into_iter().map(view).collect(),
        has_more,
        next_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes are registered only with `routes!` on an `OpenApiRouter` (see [`openapi`]), so
    /// none can exist without documentation: plain axum registration is refused here.
    #[test]
    fn every_route_is_registered_with_its_documentation() {
        let plain = [".", "route("].concat();
        let plain_service = [".", "route_service("].concat();
        let axum_routing = ["axum::", "routing"].concat();
        for (file, text) in [
            ("api/mod.rs", include_str!("mod.rs")),
            ("api/security.rs", include_str!("security.rs")),
            ("api/endpoints.rs", include_str!("endpoints.rs")),
            ("api/events.rs", include_str!("events.rs")),
            ("api/certificates.rs", include_str!("certificates.rs")),
            ("api/api_keys.rs", include_str!("api_keys.rs")),
            ("api/stats.rs", include_str!("stats.rs")),
            ("api/sources.rs", include_str!("sources.rs")),
            ("inbound/ingest.rs", include_str!("../inbound/ingest.rs")),
        ] {
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for needle in [&plain, &plain_service, &axum_routing] {
                    assert!(
                        !line.contains(needle.as_str()),
                        "{file}:{}: register routes with `.routes(routes!(handler))`: {line}",
                        n + 1
                    );
                }
            }
        }
    }

    #[test]
    fn paging_detects_more() {
        use hookwarden_store::Listed;
        let p = paged(Listed::new(vec![5, 4], true), |x| x.to_string(), |x| x);
        assert_eq!(
            (p.data, p.has_more, p.next_before),
            (vec![5, 4], true, Some("4".into()))
        );
        let p = paged(Listed::new(vec![5], false), |x| x.to_string(), |x| x);
        assert_eq!((p.data, p.has_more, p.next_before), (vec![5], false, None));
        let p = paged(
            Listed::new(Vec::<i32>::new(), true),
            |x| x.to_string(),
            |x| x,
        );
        assert_eq!((p.data.len(), p.has_more, p.next_before), (0, false, None));
    }
}
