//! `/api/v1/api-keys`: the admin API keys themselves. A key is shown once, when it is made;
//! afterwards only its id, name, prefix and times.

use super::extract::{ApiJson, ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged, paged};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::keys::{self, KeyError, KeySpec};
use crate::state::AppState;
use crate::times::{rfc3339, rfc3339_opt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookwarden_store::{ApiKey, now_millis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The longest lifetime `expires_in_secs` may ask for (ten years).
const MAX_LIFETIME_SECS: u64 = 10 * 366 * 86_400;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateApiKey {
    /// What the key is for, shown in listings (1 to 200 bytes).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// When the key stops working: RFC 3339 or unix milliseconds. Default: never.
    #[serde(default)]
    expires_at: Option<String>,
    /// Or: how long from now the key works, in seconds.
    #[serde(default)]
    #[schema(minimum = 1)]
    expires_in_secs: Option<u64>,
}

/// An admin API key as listed (never the key).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub(super) struct ApiKeyView {
    id: String,
    name: String,
    /// The first characters of the key (`hwk_abcd`).
    prefix: String,
    description: String,
    /// `active`, `expired` or `revoked`.
    #[schema(value_type = String)]
    status: &'static str,
    created_at: String,
    expires_at: Option<String>,
    /// Recorded at most once a minute per instance.
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        let now = now_millis();
        let status = if k.revoked_at.is_some_and(|r| r <= now) {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        ApiKeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            description: k.description,
            status,
            created_at: rfc3339(k.created_at),
            expires_at: rfc3339_opt(k.expires_at),
            last_used_at: rfc3339_opt(k.last_used_at),
            revoked_at: rfc3339_opt(k.revoked_at),
        }
    }
}

/// A new key: the record, and the key itself (shown this once).
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKeyView,
    /// The key (`hwk_…`): store it now, it is never shown again.
    secret: String,
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::Invalid(m) => ApiError::invalid("VALIDATION_FAILED", m),
            KeyError::Store(e) => e.into(),
        }
    }
}

/// Makes an admin API key. The response carries the key once (`secret`); only its SHA-256 is
/// stored.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Made", body = CreatedApiKey),
        (status = 422, description = "Invalid request (`VALIDATION_FAILED`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<impl IntoResponse> {
    let now = state.clock.now_millis();
    let expires_at = match (req.expires_at.as_deref(), req.expires_in_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "VALIDATION_FAILED",
                "give expires_at or expires_in_secs, not both",
            ));
        }
        (Some(t), None) => Some(
            crate::times::parse_time("expires_at", t)
                .map_err(|e| ApiError::invalid("VALIDATION_FAILED", e.message))?,
        ),
        (None, Some(secs)) if (1..=MAX_LIFETIME_SECS).contains(&secs) => {
            Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)))
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "VALIDATION_FAILED",
                format!("expires_in_secs must be 1..={MAX_LIFETIME_SECS}"),
            ));
        }
        (None, None) => None,
    };
    if req.name.trim().is_empty() {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            "name must not be empty",
        ));
    }
    let spec = KeySpec {
        name: req.name,
        description: req.description.unwrap_or_default(),
        expires_at,
    };
    let (secret, record) = keys::create(&*state.keys, spec, state.clock.now_millis()).await?;
    tracing::info!(api_key_id = %record.id, "admin API key created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            key: record.into(),
            secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api-keys",
    params(PageQuery),
    responses((status = 200, description = "A page of admin API keys, newest first (revoked and expired ones too)", body = Paged<ApiKeyView>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<ApiKeyView>>> {
    let page = q.page(state.config.server.max_page_bytes)?;
    let rows = state.keys.list_api_keys(page).await?;
    Ok(axum::Json(paged(rows, |k| k.id.clone(), ApiKeyView::from)))
}

async fn load(state: &AppState, id: &str) -> ApiResult<ApiKey> {
    state
        .keys
        .get_api_key(id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))
}

#[utoipa::path(
    get,
    path = "/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "API key id (`key_…`)")),
    responses(
        (status = 200, description = "The key's record", body = ApiKeyView),
        (status = 404, description = "No such key (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<ApiKeyView>> {
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Revokes a key: refused from now on, by this instance at once and by every instance sharing
/// the database within half a second. Revoking a revoked key changes nothing.
#[utoipa::path(
    post,
    path = "/api-keys/{id}/revoke",
    tag = "api-keys",
    params(("id" = String, Path, description = "API key id (`key_…`)")),
    responses(
        (status = 200, description = "The key, now revoked", body = ApiKeyView),
        (status = 404, description = "No such key (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<ApiKeyView>> {
    if !state
        .keys
        .revoke_api_key(&id, state.clock.now_millis())
        .await?
    {
        return Err(ApiError::not_found("API key"));
    }
    state.api_keys.clear();
    tracing::info!(api_key_id = %id, "admin API key revoked");
    Ok(axum::Json(load(&state, &id).await?.into()))
}
