//! `/api/v1/events` and `/api/v1/deliveries`.

use super::endpoints::validate_event_type;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{PageQuery, Paged, paged, rfc3339, rfc3339_opt};
use crate::crypto;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hookwarden_store::{
    Attempt, CreateEventResult, Delivery, DeliveryFilter, DeliveryStatus, Event, NewEvent,
    now_millis,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    #[serde(rename = "type")]
    event_type: String,
    payload: Box<RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Serialize)]
pub struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    payload: Box<RawValue>,
    idempotency_key: Option<String>,
    source_id: Option<String>,
    created_at: String,
}

impl TryFrom<Event> for EventView {
    type Error = ApiError;
    fn try_from(e: Event) -> ApiResult<EventView> {
        Ok(EventView {
            payload: RawValue::from_string(e.payload).map_err(|_| ApiError::internal())?,
            id: e.id,
            event_type: e.event_type,
            idempotency_key: e.idempotency_key,
            source_id: e.source_id,
            created_at: rfc3339(e.created_at),
        })
    }
}

#[derive(Serialize)]
pub struct DeliveryView {
    id: String,
    event_id: String,
    endpoint_id: String,
    status: &'static str,
    attempt_count: i64,
    next_attempt_at: Option<String>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    completed_at: Option<String>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| rfc3339(d.next_attempt_at)),
            id: d.id,
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
            status: d.status.as_str(),
            attempt_count: d.attempt_count,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            completed_at: rfc3339_opt(d.completed_at),
        }
    }
}

#[derive(Serialize)]
pub struct AttemptView {
    attempt: i64,
    started_at: String,
    duration_ms: i64,
    status_code: Option<i64>,
    response_body: Option<String>,
    response_truncated: bool,
    error_class: Option<String>,
    error_message: Option<String>,
    source_address: Option<String>,
    remote_address: Option<String>,
    outcome: String,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            attempt: a.attempt_no,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            response_body: a.response_body,
            response_truncated: a.response_truncated,
            error_class: a.error_class,
            error_message: a.error_message,
            source_address: a.local_addr,
            remote_address: a.remote_addr,
            outcome: a.outcome,
        }
    }
}

fn validate_idempotency_key(k: &str) -> ApiResult<()> {
    if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "INVALID_IDEMPOTENCY_KEY",
            "idempotency keys are 1 to 256 printable characters",
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateEvent>,
) -> ApiResult<impl IntoResponse> {
    validate_event_type(&req.event_type)?;
    let header_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::invalid("INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be ASCII")
                })?
                .to_owned(),
        ),
        None => None,
    };
    let key = match (req.idempotency_key, header_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "INVALID_IDEMPOTENCY_KEY",
                "the Idempotency-Key header and idempotency_key field differ",
            ));
        }
        (a, b) => a.or(b),
    };
    if let Some(k) = &key {
        validate_idempotency_key(k)?;
    }
    let event = NewEvent {
        id: crypto::new_id("evt"),
        event_type: req.event_type,
        payload: req.payload.get().to_owned(),
        idempotency_key: key,
        created_at: now_millis(),
        source_id: None,
        only_endpoints: None,
    };
    let result = state.dispatcher.publish(event).await?;
    metrics::counter!("hookwarden_events_published_total").increment(1);
    let (event, deliveries, duplicate) = match result {
        CreateEventResult::Created { event, deliveries } => (event, deliveries.len(), false),
        CreateEventResult::Duplicate { event, deliveries } => (event, deliveries, true),
    };
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(serde_json::json!({
            "id": event.id,
            "type": event.event_type,
            "created_at": rfc3339(event.created_at),
            "deliveries": deliveries,
            "duplicate": duplicate,
        })),
    ))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<EventView>>> {
    let page = q.page()?;
    let limit = page.limit;
    let rows = state.store.list_events(page).await?;
    let p = paged(rows, limit, |e| e.id.clone(), |e| e);
    let data = p
        .data
        .into_iter()
        .map(EventView::try_from)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(Paged {
        data,
        has_more: p.has_more,
        next_before: p.next_before,
    }))
}

pub async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<EventView>> {
    let e = state
        .store
        .get_event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(axum::Json(e.try_into()?))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryQuery {
    limit: Option<usize>,
    before: Option<String>,
    status: Option<String>,
    endpoint_id: Option<String>,
    event_id: Option<String>,
}

async fn deliveries(
    state: &AppState,
    mut filter: DeliveryFilter,
    q: DeliveryQuery,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    let page = PageQuery {
        limit: q.limit,
        before: q.before,
    }
    .page()?;
    if let Some(s) = q.status {
        filter.status = Some(DeliveryStatus::parse(&s).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                "status must be pending, succeeded, failed, paused or cancelled",
            )
        })?);
    }
    if filter.endpoint_id.is_none() {
        filter.endpoint_id = q.endpoint_id;
    }
    if filter.event_id.is_none() {
        filter.event_id = q.event_id;
    }
    let limit = page.limit;
    let rows = state.store.list_deliveries(filter, page).await?;
    Ok(axum::Json(paged(
        rows,
        limit,
        |d| d.id.clone(),
        DeliveryView::from,
    )))
}

pub async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    deliveries(&state, DeliveryFilter::default(), q).await
}

pub async fn event_deliveries(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    if state.store.get_event(&id).await?.is_none() {
        return Err(ApiError::not_found("event"));
    }
    let filter = DeliveryFilter {
        event_id: Some(id),
        ..Default::default()
    };
    deliveries(&state, filter, q).await
}

pub async fn endpoint_deliveries(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    let filter = DeliveryFilter {
        endpoint_id: Some(id),
        ..Default::default()
    };
    deliveries(&state, filter, q).await
}

pub async fn get_delivery(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<DeliveryView>> {
    let d = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(axum::Json(d.into()))
}

pub async fn attempts(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    if state.store.get_delivery(&id).await?.is_none() {
        return Err(ApiError::not_found("delivery"));
    }
    let rows = state.store.list_attempts(&id).await?;
    let data: Vec<AttemptView> = rows.into_iter().map(AttemptView::from).collect();
    Ok(axum::Json(serde_json::json!({ "data": data })))
}

pub async fn retry(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let d = state
        .store
        .retry_delivery(&id, now_millis())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(DeliveryView::from(d))))
}

pub async fn stats(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let c = state.store.delivery_counts(now_millis()).await?;
    Ok(axum::Json(serde_json::json!({ "deliveries": c })))
}
