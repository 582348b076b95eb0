//! `/api/v1/events` and `/api/v1/deliveries`.

use super::endpoints::validate_event_type;
use super::extract::{ApiJson, ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged, paged};
use crate::crypto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::times::{rfc3339, rfc3339_opt};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hookwarden_store::{
    Attempt, AttemptPage, CreateEventResult, Delivery, DeliveryFilter, DeliveryStatus, Event,
    EventFilter, NewEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateEvent {
    /// 1 to 128 letters, digits and `. _ - : /`; endpoints subscribe by type.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/-]+$")]
    event_type: String,
    /// Any JSON value, delivered as is.
    #[schema(value_type = Value)]
    payload: Box<RawValue>,
    /// The same key within `delivery.idempotency_ttl_secs` returns the first event (also as the
    /// `Idempotency-Key` header).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    idempotency_key: Option<String>,
}

/// The answer to `POST /events`.
#[derive(Serialize, ToSchema)]
pub(super) struct EventCreated {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created_at: String,
    /// Deliveries created (one per subscribed endpoint).
    deliveries: usize,
    /// `true` when the idempotency key matched an earlier event (status 200).
    duplicate: bool,
}

/// A delivery's attempts, oldest first. A page holds at most `limit` attempts and at most
/// `server.max_page_bytes` of stored data (a single larger attempt comes alone).
#[derive(Serialize, ToSchema)]
pub(super) struct AttemptList {
    data: Vec<AttemptView>,
    /// More attempts follow: pass `next_after` as `after` for them.
    has_more: bool,
    next_after: Option<String>,
}

/// `GET /deliveries/{id}/attempts` query: every attempt by default, in pages when they are
/// large.
#[derive(Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AttemptQuery {
    /// Attempts per page, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_after` of the previous page.
    #[param(max_length = 20, pattern = "^[0-9]+$")]
    after: Option<String>,
}

/// `GET /stats`.
#[derive(Serialize, ToSchema)]
pub(super) struct Stats {
    deliveries: hookwarden_store::DeliveryCounts,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
pub(super) struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[schema(value_type = Value)]
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

#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
pub(super) struct DeliveryView {
    id: String,
    event_id: String,
    endpoint_id: String,
    /// `pending`, `succeeded`, `failed`, `paused` or `cancelled`.
    #[schema(value_type = String)]
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

#[derive(Serialize, ToSchema)]
#[schema(as = Attempt)]
pub(super) struct AttemptView {
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
    /// The request headers as sent, `[name, value]` pairs with secret values masked; `null`
    /// for attempts recorded before headers were kept.
    request_headers: Option<Vec<(String, String)>>,
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
            request_headers: a
                .request_headers
                .as_deref()
                .and_then(|h| serde_json::from_str(h).ok()),
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

/// Publishes an event: one delivery per enabled endpoint subscribed to its type.
#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Same as the `idempotency_key` field (they must agree when both are given)")),
    request_body = CreateEvent,
    responses(
        (status = 202, description = "Accepted; deliveries are queued", body = EventCreated),
        (status = 200, description = "Duplicate: the event first published with this idempotency key", body = EventCreated),
        (status = 409, description = "The idempotency key was used for a different event (`IDEMPOTENCY_KEY_REUSED`)", body = ErrorBody),
        (status = 422, description = "Invalid event (`INVALID_EVENT_TYPE`, `INVALID_IDEMPOTENCY_KEY`, `VALIDATION_FAILED`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
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
    if let Err(reason) = state
        .catalogue
        .check(&req.event_type, req.payload.get())
        .await?
    {
        return Err(ApiError::invalid(
            "SCHEMA_MISMATCH",
            format!(
                "the payload does not match the schema of {}: {reason}",
                req.event_type
            ),
        ));
    }
    let (asked_type, asked_payload) = (req.event_type.clone(), req.payload);
    let event = NewEvent {
        id: crypto::new_id("evt"),
        event_type: req.event_type,
        payload: asked_payload.get().to_owned(),
        idempotency_key: key,
        created_at: state.clock.now_millis(),
        source_id: None,
        only_endpoints: None,
    };
    let result = state.dispatcher.publish(event).await?;
    metrics::counter!("hookwarden_events_published_total").increment(1);
    let (event, deliveries, duplicate) = match result {
        CreateEventResult::Created { event, deliveries } => (event, deliveries.len(), false),
        CreateEventResult::Duplicate { event, deliveries } => {
            // As payment APIs do: a key names one request; reusing it for another is an error,
            // not a silent answer about the first.
            if event.event_type != asked_type || !same_json(&event.payload, asked_payload.get()) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "IDEMPOTENCY_KEY_REUSED",
                    "this idempotency key was used for a different event (type or payload); \
                     use a new key",
                ));
            }
            (event, deliveries, true)
        }
    };
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(EventCreated {
            id: event.id,
            event_type: event.event_type,
            created_at: rfc3339(event.created_at),
            deliveries,
            duplicate,
        }),
    ))
}

/// Whether two JSON texts hold the same value (object member order and whitespace aside).
fn same_json(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Most event types one listing may ask for.
const MAX_LISTED_TYPES: usize = 10;

/// `GET /events` query: pagination and an optional type filter.
#[derive(Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventQuery {
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<usize>,
    /// The `next_before` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    pub before: Option<String>,
    /// Only events of these types, comma-separated (at most 10), e.g.
    /// `endpoint.disabled,endpoint.failing,source.anomaly`.
    #[param(max_length = 1300)]
    pub event_type: Option<String>,
}

impl EventQuery {
    fn filter(&self) -> ApiResult<EventFilter> {
        let Some(list) = &self.event_type else {
            return Ok(EventFilter::default());
        };
        let mut event_types: Vec<String> = Vec::new();
        for t in list.split(',').map(str::trim) {
            validate_event_type(t).map_err(|_| {
                ApiError::bad_request(
                    "INVALID_QUERY",
                    "event_type is a comma-separated list of event types",
                )
            })?;
            if !event_types.iter().any(|e| e == t) {
                event_types.push(t.to_owned());
            }
        }
        if event_types.len() > MAX_LISTED_TYPES {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("at most {MAX_LISTED_TYPES} event types per listing"),
            ));
        }
        Ok(EventFilter { event_types })
    }
}

/// Lists events, newest first, optionally only some types.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(EventQuery),
    responses((status = 200, description = "A page of events", body = Paged<EventView>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<axum::Json<Paged<EventView>>> {
    let filter = q.filter()?;
    let page = PageQuery {
        limit: q.limit,
        before: q.before,
    }
    .page(state.config.server.max_page_bytes)?;
    let rows = state.store.list_events(filter, page).await?;
    let p = paged(rows, |e| e.id.clone(), |e| e);
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

#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_…`)")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 404, description = "No such event (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<EventView>> {
    let e = state
        .store
        .get_event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(axum::Json(e.try_into()?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveryQuery {
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<usize>,
    /// The `next_before` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    before: Option<String>,
    /// `pending`, `succeeded`, `failed`, `paused` or `cancelled`.
    #[param(pattern = "^(pending|succeeded|failed|paused|cancelled)$")]
    status: Option<String>,
    #[param(value_type = Option<String>)]
    endpoint_id: Option<Id>,
    #[param(value_type = Option<String>)]
    event_id: Option<Id>,
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
    .page(state.config.server.max_page_bytes)?;
    if let Some(s) = q.status {
        filter.status = Some(DeliveryStatus::parse(&s).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                "status must be pending, succeeded, failed, paused or cancelled",
            )
        })?);
    }
    if filter.endpoint_id.is_none() {
        filter.endpoint_id = q.endpoint_id.map(|i| i.0);
    }
    if filter.event_id.is_none() {
        filter.event_id = q.event_id.map(|i| i.0);
    }
    let rows = state.store.list_deliveries(filter, page).await?;
    Ok(axum::Json(paged(
        rows,
        |d| d.id.clone(),
        DeliveryView::from,
    )))
}

/// Lists deliveries, newest first, optionally filtered.
#[utoipa::path(
    get,
    path = "/deliveries",
    tag = "events",
    params(DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = Paged<DeliveryView>))
)]
pub(super) async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    deliveries(&state, DeliveryFilter::default(), q).await
}

/// The deliveries of one event.
#[utoipa::path(
    get,
    path = "/events/{id}/deliveries",
    tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_…`)"), DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Paged<DeliveryView>),
        (status = 404, description = "No such event (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn event_deliveries(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
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

/// The deliveries to one endpoint (also after it was deleted).
#[utoipa::path(
    get,
    path = "/endpoints/{id}/deliveries",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)"), DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = Paged<DeliveryView>))
)]
pub(super) async fn endpoint_deliveries(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<axum::Json<Paged<DeliveryView>>> {
    let filter = DeliveryFilter {
        endpoint_id: Some(id),
        ..Default::default()
    };
    deliveries(&state, filter, q).await
}

#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    tag = "events",
    params(("id" = String, Path, description = "Delivery id (`dlv_…`)")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 404, description = "No such delivery (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn get_delivery(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<DeliveryView>> {
    let d = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(axum::Json(d.into()))
}

/// Every attempt of a delivery: status, timings, addresses and a bounded response excerpt.
#[utoipa::path(
    get,
    path = "/deliveries/{id}/attempts",
    tag = "events",
    params(("id" = String, Path, description = "Delivery id (`dlv_…`)"), AttemptQuery),
    responses(
        (status = 200, description = "The attempts", body = AttemptList),
        (status = 400, description = "Invalid `limit` or `after` (`INVALID_QUERY`)", body = ErrorBody),
        (status = 404, description = "No such delivery (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn attempts(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiQuery(q): ApiQuery<AttemptQuery>,
) -> ApiResult<axum::Json<AttemptList>> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            "limit must be between 1 and 1000",
        ));
    }
    let after = match &q.after {
        Some(a) => Some(
            Some(a)
                .filter(|a| !a.is_empty() && a.len() <= 20 && a.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|a| a.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "INVALID_QUERY",
                        "after is the next_after of a previous page",
                    )
                })?,
        ),
        None => None,
    };
    if state.store.get_delivery(&id).await?.is_none() {
        return Err(ApiError::not_found("delivery"));
    }
    let page = AttemptPage {
        after,
        limit,
        max_bytes: state.config.server.max_page_bytes,
    };
    let rows = state.store.list_attempts(&id, page).await?;
    let has_more = rows.more && !rows.is_empty();
    let next_after = if has_more {
        rows.last().map(|a| a.id.to_string())
    } else {
        None
    };
    let data: Vec<AttemptView> = rows.into_iter().map(AttemptView::from).collect();
    Ok(axum::Json(AttemptList {
        data,
        has_more,
        next_after,
    }))
}

/// Queues a delivery again, due now. A delivery whose endpoint is disabled cannot be retried
/// (`409 ENDPOINT_DISABLED`): it waits, paused, and goes out when the endpoint is enabled.
#[utoipa::path(
    post,
    path = "/deliveries/{id}/retry",
    tag = "events",
    params(("id" = String, Path, description = "Delivery id (`dlv_…`)")),
    responses(
        (status = 202, description = "Queued again", body = DeliveryView),
        (status = 404, description = "No such delivery, or a cancelled one (`NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "Its endpoint is disabled (`ENDPOINT_DISABLED`): enable it, and paused deliveries resume", body = ErrorBody),
    )
)]
pub(super) async fn retry(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<impl IntoResponse> {
    let current = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    if let Some(ep) = state.store.get_endpoint(&current.endpoint_id).await?
        && !ep.enabled
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ENDPOINT_DISABLED",
            format!(
                "endpoint {} is disabled{}: the delivery stays paused until the endpoint is enabled \
                 (POST /api/v1/endpoints/{}/enable), then it goes out",
                ep.id,
                ep.disabled_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                ep.id
            ),
        ));
    }
    let d = state
        .store
        .retry_delivery(&id, state.clock.now_millis())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(DeliveryView::from(d))))
}

/// Deliveries by status, and the queue's backlog.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "events",
    responses((status = 200, description = "Counts", body = Stats))
)]
pub(super) async fn stats(State(state): State<Arc<AppState>>) -> ApiResult<axum::Json<Stats>> {
    let c = state
        .store
        .delivery_counts(state.clock.now_millis())
        .await?;
    Ok(axum::Json(Stats { deliveries: c }))
}
