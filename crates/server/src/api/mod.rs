//! The admin API (`/api/v1`), health and metrics routes.

mod certificates;
mod endpoints;
mod events;
pub mod extract;
mod security;

use crate::error::{ApiError, ApiResult};
use crate::inbound::api as sources;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hookwarden_store::Millis;
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use time::macros::format_description;

/// Renders unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(ms: Millis) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

pub fn rfc3339_opt(ms: Option<Millis>) -> Option<String> {
    ms.map(rfc3339)
}

/// A page of results: newest first; pass `next_before` as `before` to get the next page.
#[derive(Serialize)]
pub struct Paged<T: Serialize> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_before: Option<String>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/endpoints", post(endpoints::create).get(endpoints::list))
        .route(
            "/endpoints/{id}",
            get(endpoints::get_one)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route(
            "/endpoints/{id}/secret/rotate",
            post(endpoints::rotate_secret),
        )
        .route("/endpoints/{id}/enable", post(endpoints::enable))
        .route("/endpoints/{id}/disable", post(endpoints::disable))
        .route(
            "/endpoints/{id}/deliveries",
            get(events::endpoint_deliveries),
        )
        .route("/events", post(events::create).get(events::list))
        .route("/events/{id}", get(events::get_one))
        .route("/events/{id}/deliveries", get(events::event_deliveries))
        .route("/deliveries", get(events::list_deliveries))
        .route("/deliveries/{id}", get(events::get_delivery))
        .route("/deliveries/{id}/attempts", get(events::attempts))
        .route("/deliveries/{id}/retry", post(events::retry))
        .route("/stats", get(events::stats))
        .route(
            "/client-certificates",
            post(certificates::create).get(certificates::list),
        )
        .route(
            "/client-certificates/{id}",
            get(certificates::get_one).delete(certificates::delete),
        )
        .route(
            "/client-certificates/{id}/retire",
            post(certificates::retire),
        )
        .route("/sources", post(sources::create).get(sources::list))
        .route(
            "/sources/{id}",
            get(sources::get_one)
                .patch(sources::update)
                .delete(sources::delete),
        )
        .route("/sources/{id}/rotate", post(sources::rotate))
        .route("/sources/{id}/revoke", post(sources::revoke))
        .route("/sources/{id}/audit", get(sources::source_audit))
        .route("/inbound/audit", get(sources::all_audit))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));

    let api = Router::new()
        .merge(authed)
        .merge(security::routes())
        .fallback(api_not_found);

    let mut app = Router::new()
        .nest("/api/v1", api)
        .route("/in/{token}", post(crate::inbound::ingest::ingest))
        .route("/health", get(health))
        .route("/", get(root));
    if state.config.metrics.enabled {
        let metrics = get(metrics_route);
        app = if state.config.metrics.public {
            app.route("/metrics", metrics)
        } else {
            app.route(
                "/metrics",
                metrics.route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    require_api_key,
                )),
            )
        };
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.server.max_body_bytes,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn root() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "service": "hookwarden",
        "version": env!("CARGO_PKG_VERSION"),
        "api": "/api/v1",
    }))
}

/// Liveness and storage reachability, cheap enough for load balancers to poll often (queue
/// figures are in `/metrics` and `/api/v1/stats`).
async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({
            "status": "ok",
            "storage": state.store.backend(),
            "deliveries_in_memory": state.dispatcher.load(),
        }))
        .into_response(),
        Err(_) => ApiError::unavailable("storage unavailable").into_response(),
    }
}

async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::refresh(&state).await;
    match &state.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
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

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
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
    match state.api_keys.check(&*state.store, key).await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
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
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub before: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> ApiResult<hookwarden_store::Page> {
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
        // One extra row tells whether there is a next page.
        Ok(hookwarden_store::Page {
            before: self.before.clone(),
            limit: limit + 1,
        })
    }
}

pub fn paged<T: Serialize, U>(
    mut rows: Vec<U>,
    limit: usize,
    id: impl Fn(&U) -> String,
    view: impl Fn(U) -> T,
) -> Paged<T> {
    let has_more = rows.len() >= limit;
    if has_more {
        rows.truncate(limit - 1);
    }
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

    #[test]
    fn rfc3339_renders_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn paging_detects_more() {
        let p = paged(vec![5, 4, 3], 3, |x| x.to_string(), |x| x);
        assert_eq!(
            (p.data, p.has_more, p.next_before),
            (vec![5, 4], true, Some("4".into()))
        );
        let p = paged(vec![5], 3, |x| x.to_string(), |x| x);
        assert_eq!((p.data, p.has_more, p.next_before), (vec![5], false, None));
    }
}
