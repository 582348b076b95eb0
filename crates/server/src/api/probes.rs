//! `POST /endpoints/{id}/probe` and `GET /endpoints/{id}/probes`: the receiver security probe.

use super::extract::{ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::probe::report::Report;
use crate::probe::{ProbeError, Stored, Trigger};
use crate::state::AppState;
use crate::times::rfc3339;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Most reports per page (each holds every case with a response excerpt).
const MAX_PROBES_PER_PAGE: usize = 20;

/// A probe of an endpoint's receiver and what it found.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProbeView {
    /// `prb_…`
    id: String,
    endpoint_id: String,
    /// RFC 3339.
    created_at: String,
    /// `manual`, `endpoint_created`, `url_changed`, `secret_rotated` or `scheduled`.
    trigger: String,
    #[serde(flatten)]
    report: Report,
}

impl From<Stored> for ProbeView {
    fn from(s: Stored) -> ProbeView {
        ProbeView {
            id: s.record.id,
            endpoint_id: s.record.endpoint_id,
            created_at: rfc3339(s.record.created_at),
            trigger: s.record.trigger,
            report: s.report,
        }
    }
}

/// Probes the endpoint's receiver now: sends it a short, fixed series of `hookwarden.probe`
/// requests through the normal egress path (one correctly signed; the others unsigned, forged,
/// stale, replayed, signed with a retired secret, or without the client certificate) and reports
/// which ones it refused. Answers when the probe is done (within `probe.deadline_secs`). At most
/// one probe per endpoint per `probe.min_interval_secs`.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/probe",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 201, description = "The report", body = ProbeView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "A probe of this endpoint is running (`PROBE_IN_PROGRESS`), or the endpoint is disabled (`ENDPOINT_DISABLED`)", body = ErrorBody),
        (status = 422, description = "The endpoint cannot sign or send (`ENDPOINT_UNUSABLE`)", body = ErrorBody),
        (status = 429, description = "Probed less than `probe.min_interval_secs` ago (`PROBE_RATE_LIMITED`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub(crate) async fn probe(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> Response {
    match state.prober.probe_endpoint(&id, Trigger::Manual).await {
        Ok(stored) => (StatusCode::CREATED, axum::Json(ProbeView::from(stored))).into_response(),
        Err(e) => refusal(e),
    }
}

fn refusal(e: ProbeError) -> Response {
    match e {
        ProbeError::NotFound => ApiError::not_found("endpoint").into_response(),
        ProbeError::Disabled => ApiError::new(
            StatusCode::CONFLICT,
            "ENDPOINT_DISABLED",
            "the endpoint is disabled: enable it to probe its receiver (deliveries do not reach it either)",
        )
        .into_response(),
        ProbeError::InProgress => ApiError::new(
            StatusCode::CONFLICT,
            "PROBE_IN_PROGRESS",
            "a probe of this endpoint is running; its report will be listed when it is done",
        )
        .into_response(),
        ProbeError::RateLimited {
            retry_after_secs, ..
        } => {
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "PROBE_RATE_LIMITED",
                e.to_string(),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        ProbeError::Unusable(m) => ApiError::invalid(
            "ENDPOINT_UNUSABLE",
            format!("the endpoint cannot be probed: {m}"),
        )
        .into_response(),
        ProbeError::Store(e) => ApiError::from(e).into_response(),
    }
}

/// The endpoint's probe reports, newest first (the last `probe.keep_reports` are kept; at most
/// 20 per page).
#[utoipa::path(
    get,
    path = "/endpoints/{id}/probes",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)"), PageQuery),
    responses(
        (status = 200, description = "A page of reports", body = Paged<ProbeView>),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_probes(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<ProbeView>>> {
    let mut page = q.page(state.config.server.max_page_bytes)?;
    page.limit = page.limit.min(MAX_PROBES_PER_PAGE);
    if state.store.get_endpoint(&id).await?.is_none() {
        return Err(ApiError::not_found("endpoint"));
    }
    let (rows, more) = state.prober.list(&id, page).await?;
    let has_more = more && !rows.is_empty();
    let next_before = if has_more {
        rows.last().map(|r| r.record.id.clone())
    } else {
        None
    };
    Ok(axum::Json(Paged {
        data: rows.into_iter().map(ProbeView::from).collect(),
        has_more,
        next_before,
    }))
}
