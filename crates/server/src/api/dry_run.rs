//! `POST /endpoints/{id}/dry-run`: what the endpoint would be sent for a sample event, through its
//! payload filter and transformation (or drafts of them), signed as a delivery would be. Nothing
//! is sent or stored.

use super::endpoints::{validate_event_type, validate_filter, validate_transformation};
use super::extract::{ApiJson, ApiPath, Id};
use crate::dispatch::endpoints::LoadError;
use crate::dispatch::{delivery_body, delivery_headers, masked_headers_json};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::transform::Transformation;
use axum::extract::State;
use hookwarden_store::Claimed;
use hookwarden_store::filter::PayloadFilter;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A sample event, and optionally drafts of the filter and transformation to try instead of the
/// endpoint's own.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunRequest {
    /// The sample event's type.
    event_type: String,
    /// The sample event's payload (`data` in the body).
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// A draft filter to try (`null`: none); absent: the endpoint's.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Object>)]
    filter: Option<Option<serde_json::Value>>,
    /// A draft transformation to try (`null`: none); absent: the endpoint's.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    transformation: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FilterResult {
    /// Whether a filter applies (the endpoint's or the draft).
    set: bool,
    /// Whether the sample passes it (true without a filter).
    matched: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TransformationResult {
    set: bool,
    /// The script set `webhook.cancel`: nothing would be sent.
    cancelled: bool,
    /// Why it failed (a delivery attempt would fail the same way and be retried).
    error: Option<String>,
    /// `print` and `debug` lines (at most 50).
    logs: Vec<String>,
}

/// The request as it would be sent.
#[derive(Serialize, ToSchema)]
pub(crate) struct DryRunHttpRequest {
    method: &'static str,
    url: String,
    /// `[name, value]` in sending order; secrets and signatures masked.
    #[schema(value_type = Vec<Vec<String>>)]
    headers: Vec<(String, String)>,
    /// The JSON body.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DryRunResult {
    /// Whether a request would be sent.
    delivered: bool,
    filter: FilterResult,
    transformation: TransformationResult,
    request: Option<DryRunHttpRequest>,
}

/// Shows what this endpoint would be sent for a sample event: whether its payload filter lets
/// the event through, what its transformation makes of the request (its `print` lines too), and
/// the request itself, signed with the endpoint's secrets (shown masked). Drafts of a filter or
/// transformation can be tried before they are saved. Nothing is sent or stored.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/dry-run",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    request_body = DryRunRequest,
    responses(
        (status = 200, description = "What would be sent", body = DryRunResult),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "An invalid draft or sample (`INVALID_FILTER`, `INVALID_TRANSFORMATION`, `INVALID_EVENT_TYPE`), or an endpoint that cannot sign (`ENDPOINT_UNUSABLE`)", body = ErrorBody),
    )
)]
pub(crate) async fn dry_run(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<DryRunRequest>,
) -> ApiResult<axum::Json<DryRunResult>> {
    validate_event_type(&req.event_type)?;
    let rt = match state.dispatcher.endpoints().get(&id).await {
        Ok(Some(rt)) => rt,
        Ok(None) => return Err(ApiError::not_found("endpoint")),
        Err(LoadError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::invalid("ENDPOINT_UNUSABLE", e.to_string())),
    };
    let filter_text = match req.filter {
        Some(draft) => draft.as_ref().map(validate_filter).transpose()?,
        None => rt.endpoint.filter.clone(),
    };
    let matched = match &filter_text {
        None => true,
        // A stored filter that no longer compiles matches nothing, as in delivery.
        Some(text) => PayloadFilter::compile_text(text)
            .map(|f| f.matches(&req.event_type, &req.payload))
            .unwrap_or(false),
    };
    let transformation: Option<Result<Arc<Transformation>, String>> = match req.transformation {
        Some(draft) => draft
            .map(validate_transformation)
            .transpose()?
            .map(|t| Transformation::compile(&t).map(Arc::new).map_err(|e| e.0)),
        None => rt.transformation.clone().map(|r| r.map_err(|e| e.0)),
    };
    let mut result = DryRunResult {
        delivered: false,
        filter: FilterResult {
            set: filter_text.is_some(),
            matched,
        },
        transformation: TransformationResult {
            set: transformation.is_some(),
            cancelled: false,
            error: None,
            logs: Vec::new(),
        },
        request: None,
    };
    if !matched {
        return Ok(axum::Json(result));
    }
    let now = state.clock.now_millis();
    let job = Claimed {
        delivery_id: "dlv_dry_run".into(),
        event_id: crate::crypto::new_id("evt"),
        endpoint_id: id.clone(),
        event_type: req.event_type.clone(),
        payload: Arc::from(req.payload.to_string()),
        event_created_at: now,
        attempt_count: 0,
        lease_until: now,
    };
    let mut body = delivery_body(&job, rt.developer_payload.as_deref());
    let mut added = Default::default();
    match transformation {
        None => {}
        Some(Err(e)) => {
            result.transformation.error = Some(e);
            return Ok(axum::Json(result));
        }
        Some(Ok(t)) => {
            let out = t
                .run_blocking(
                    job.event_id.clone(),
                    job.event_type.clone(),
                    crate::times::rfc3339(now),
                    rt.endpoint.url.clone(),
                    body,
                )
                .await;
            match out {
                Err(e) => {
                    result.transformation.error = Some(e.0);
                    return Ok(axum::Json(result));
                }
                Ok(out) => {
                    result.transformation.logs = out.logs;
                    if out.cancelled {
                        result.transformation.cancelled = true;
                        return Ok(axum::Json(result));
                    }
                    body = out.body;
                    added = out.headers;
                }
            }
        }
    }
    let ua = HeaderValue::from_str(&state.config.delivery.user_agent)
        .unwrap_or(HeaderValue::from_static("Hookwarden"));
    let mut headers = delivery_headers(&rt, &job, 1, &body, now / 1000, &ua)
        .map_err(|e| ApiError::invalid("ENDPOINT_UNUSABLE", e.to_string()))?;
    headers.extend(added);
    let headers: Vec<(String, String)> =
        serde_json::from_str(&masked_headers_json(&headers)).unwrap_or_default();
    result.delivered = true;
    result.request = Some(DryRunHttpRequest {
        method: "POST",
        url: rt.endpoint.url.clone(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    Ok(axum::Json(result))
}
