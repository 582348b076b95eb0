//! Recovery routes (docs/recovery.md): `POST /endpoints/{id}/recover`, `POST /recoveries` (bulk
//! retry by filter), `GET /recoveries[/{id}]`, `POST /recoveries/{id}/cancel`, and
//! `POST /events/{id}/deliveries` (an old event to an endpoint that did not have it).

use super::endpoints::validate_event_type;
use super::events::DeliveryView;
use super::extract::{ApiJson, ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged, paged};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::times::{parse_time, rfc3339, rfc3339_opt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookwarden_store::{AddDelivery, Recovery, RecoveryFilter, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Which failed deliveries to send again: created in `[since, until)`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverRequest {
    /// RFC 3339 time or unix milliseconds: deliveries created at or after it.
    since: String,
    /// RFC 3339 time or unix milliseconds (exclusive); absent: now.
    #[serde(default)]
    until: Option<String>,
}

/// A bulk retry: failed deliveries created in `[since, until)`, of one endpoint or all, of one
/// event type (a trailing wildcard such as `invoice.*` too) or all.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRecovery {
    #[serde(default)]
    endpoint_id: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    since: String,
    #[serde(default)]
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Recovery)]
pub(crate) struct RecoveryView {
    /// `rcv_…`
    id: String,
    /// `null`: every endpoint.
    endpoint_id: Option<String>,
    /// `null`: every type.
    event_type: Option<String>,
    since: String,
    until: String,
    /// `running`, `completed` or `cancelled`.
    #[schema(value_type = String)]
    status: &'static str,
    /// Failed deliveries in the window when it started.
    total: i64,
    /// Sent again so far.
    requeued: i64,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
}

impl From<Recovery> for RecoveryView {
    fn from(r: Recovery) -> Self {
        RecoveryView {
            id: r.id,
            endpoint_id: r.filter.endpoint_id,
            event_type: r.filter.event_type,
            since: rfc3339(r.filter.since),
            until: rfc3339(r.filter.until),
            status: r.status.as_str(),
            total: r.total,
            requeued: r.requeued,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            finished_at: rfc3339_opt(r.finished_at),
        }
    }
}

fn window(state: &AppState, since: &str, until: Option<&str>) -> ApiResult<(i64, i64)> {
    let since = parse_time("since", since)?;
    let until = match until {
        Some(u) => parse_time("until", u)?,
        None => state.clock.now_millis().saturating_add(1),
    };
    if since < 0 || since >= until {
        return Err(ApiError::invalid(
            "INVALID_WINDOW",
            "since must be before until (and not before 1970)",
        ));
    }
    Ok((since, until))
}

async fn start(state: &AppState, filter: RecoveryFilter) -> ApiResult<RecoveryView> {
    let now = state.clock.now_millis();
    let r = state
        .recoveries
        .create_recovery(&crate::crypto::new_id("rcv"), filter, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "RECOVERY_OVERLAPS", m),
            other => other.into(),
        })?;
    state.recoverer.wake();
    Ok(r.into())
}

/// Sends again every delivery to this endpoint that failed for good and was created in the
/// window, in the order they were created, a batch at a time, within the endpoint's rate limit
/// (Svix's "recover"). Answers at once with the job; follow it with `GET /recoveries/{id}`.
/// Refused while a running recovery of this endpoint overlaps the window.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/recover",
    tag = "recoveries",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    request_body = RecoverRequest,
    responses(
        (status = 202, description = "The recovery, running", body = RecoveryView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "A running recovery overlaps (`RECOVERY_OVERLAPS`)", body = ErrorBody),
        (status = 422, description = "Invalid window (`INVALID_WINDOW`)", body = ErrorBody),
    )
)]
pub(crate) async fn recover(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<RecoverRequest>,
) -> ApiResult<impl IntoResponse> {
    if state.store.get_endpoint(&id).await?.is_none() {
        return Err(ApiError::not_found("endpoint"));
    }
    let (since, until) = window(&state, &req.since, req.until.as_deref())?;
    let r = start(
        &state,
        RecoveryFilter {
            endpoint_id: Some(id),
            event_type: None,
            since,
            until,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r)))
}

/// Bulk retry: sends again the deliveries that failed for good and match the filter (endpoint,
/// event type, creation window), as a recovery job.
#[utoipa::path(
    post,
    path = "/recoveries",
    tag = "recoveries",
    request_body = CreateRecovery,
    responses(
        (status = 202, description = "The recovery, running", body = RecoveryView),
        (status = 409, description = "A running recovery overlaps (`RECOVERY_OVERLAPS`)", body = ErrorBody),
        (status = 422, description = "Invalid filter (`INVALID_WINDOW`, `INVALID_EVENT_TYPE`, `ENDPOINT_NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateRecovery>,
) -> ApiResult<impl IntoResponse> {
    if let Some(ep) = &req.endpoint_id
        && state.store.get_endpoint(ep).await?.is_none()
    {
        return Err(ApiError::invalid(
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {ep}"),
        ));
    }
    let event_type = match req.event_type.as_deref() {
        None | Some("*") => None,
        Some(t) => {
            validate_event_type(t.strip_suffix(".*").unwrap_or(t))?;
            Some(t.to_owned())
        }
    };
    let (since, until) = window(&state, &req.since, req.until.as_deref())?;
    let r = start(
        &state,
        RecoveryFilter {
            endpoint_id: req.endpoint_id,
            event_type,
            since,
            until,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r)))
}

/// Recoveries, newest first.
#[utoipa::path(
    get,
    path = "/recoveries",
    tag = "recoveries",
    params(PageQuery),
    responses((status = 200, description = "A page of recoveries", body = Paged<RecoveryView>))
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<RecoveryView>>> {
    let page = q.page(state.config.server.max_page_bytes)?;
    let listed = state.recoveries.list_recoveries(page).await?;
    Ok(axum::Json(paged(
        listed,
        |r| r.id.clone(),
        RecoveryView::from,
    )))
}

/// A recovery and its progress.
#[utoipa::path(
    get,
    path = "/recoveries/{id}",
    tag = "recoveries",
    params(("id" = String, Path, description = "Recovery id (`rcv_…`)")),
    responses(
        (status = 200, description = "The recovery", body = RecoveryView),
        (status = 404, description = "No such recovery (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<RecoveryView>> {
    state
        .recoveries
        .get_recovery(&id)
        .await?
        .map(|r| axum::Json(r.into()))
        .ok_or_else(|| ApiError::not_found("recovery"))
}

/// Cancels a running recovery: nothing more is sent again (what it already made due stays due).
/// A finished one is returned as it is.
#[utoipa::path(
    post,
    path = "/recoveries/{id}/cancel",
    tag = "recoveries",
    params(("id" = String, Path, description = "Recovery id (`rcv_…`)")),
    responses(
        (status = 200, description = "The recovery", body = RecoveryView),
        (status = 404, description = "No such recovery (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<RecoveryView>> {
    let r = state
        .recoveries
        .cancel_recovery(&id, state.clock.now_millis())
        .await?
        .ok_or_else(|| ApiError::not_found("recovery"))?;
    state.recoverer.wake();
    Ok(axum::Json(r.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddDeliveryRequest {
    /// The endpoint to send the event to (`ep_…`); it need not be subscribed to its type, nor
    /// have existed when the event was published.
    endpoint_id: String,
}

/// Sends an existing event to an endpoint that did not get it (one created later, or not
/// subscribed then): a new delivery, due now (paused while the endpoint is disabled). The
/// endpoint's payload filter does not apply: this is an explicit send.
#[utoipa::path(
    post,
    path = "/events/{id}/deliveries",
    tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_…`)")),
    request_body = AddDeliveryRequest,
    responses(
        (status = 201, description = "The new delivery", body = DeliveryView),
        (status = 404, description = "No such event (`NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "The event already has a delivery to this endpoint (`DELIVERY_EXISTS`: retry it with `POST /deliveries/{id}/retry`)", body = ErrorBody),
        (status = 422, description = "No such endpoint (`ENDPOINT_NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn add_delivery(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<AddDeliveryRequest>,
) -> ApiResult<impl IntoResponse> {
    let added = state
        .recoveries
        .add_delivery(
            &crate::crypto::new_id("dlv"),
            &id,
            &req.endpoint_id,
            state.clock.now_millis(),
        )
        .await?;
    match added {
        AddDelivery::Created(d) => {
            state.dispatcher.wake();
            Ok((StatusCode::CREATED, axum::Json(DeliveryView::from(d))))
        }
        AddDelivery::Exists(d) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "DELIVERY_EXISTS",
            format!(
                "event {id} already has delivery {} to {}; retry it with POST /api/v1/deliveries/{}/retry",
                d.id, req.endpoint_id, d.id
            ),
        )),
        AddDelivery::NoEvent => Err(ApiError::not_found("event")),
        AddDelivery::NoEndpoint => Err(ApiError::invalid(
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {}", req.endpoint_id),
        )),
    }
}
