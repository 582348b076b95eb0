//! `/api/v1/sources`: inbound sources (secret webhook URLs) and their audit log.

use crate::api::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery, Id};
use crate::api::{PageQuery, Paged, paged};
use crate::crypto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::inbound::token;
use crate::state::AppState;
use crate::times::{parse_time, rfc3339, rfc3339_opt};
use crate::tls::ConnectionTls;
use axum::Json;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use hookwarden_netguard::parse_cidr;
use hookwarden_signatures::inbound::{Preset, PresetConfig};
use hookwarden_store::{
    AuditEntry, AuditFilter, Millis, NewSourceToken, Source, SourceRecord, SourceToken, now_millis,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::warn;
use utoipa::{IntoParams, ToSchema};

const MAX_CIDRS: usize = 1000;
const MAX_FORWARD_TO: usize = 100;
const MAX_SECRETS: usize = 10;
const MAX_SECRET_LEN: usize = 4096;
const MAX_REPLAY_WINDOW_SECS: i64 = 7 * 86_400;
const MAX_GRACE_SECS: i64 = 30 * 86_400;
const DEFAULT_REPLAY_WINDOW_SECS: i64 = 300;

fn d_window() -> i64 {
    DEFAULT_REPLAY_WINDOW_SECS
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSource {
    /// 1 to 200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Client addresses or CIDR ranges allowed to call the URL (empty: any).
    #[serde(default)]
    allowed_cidrs: Vec<String>,
    /// `{"type": "<preset>", "secret": "..." | "secrets": [...], ...preset options}`; presets:
    /// `standard-webhooks`, `github`, `stripe`, `slack`, `shopify`, `twilio`, `paddle`, `zoom`,
    /// `twitch`, `discord`, `sendgrid`, `glassix`, `hookwarden`, `hmac`, `basic_auth`, `api_key`,
    /// `none` (only with `allowed_cidrs`).
    #[schema(value_type = Object)]
    verification: Value,
    /// Seconds a message id (or signed timestamp and body) is remembered against replays, 0 to
    /// 604800 (0 disables; default 300).
    #[serde(default = "d_window")]
    replay_window_seconds: i64,
    /// Keep request bodies (up to 64 KiB) in the audit log.
    #[serde(default)]
    log_payloads: bool,
    /// Endpoint ids (`ep_…`) and event types accepted webhooks are delivered to.
    #[serde(default)]
    forward_to: Vec<String>,
    /// Type of the events made from accepted webhooks (default `inbound.<preset>`).
    #[serde(default)]
    event_type: Option<String>,
}

/// Only the fields given change (as on create). A new `verification` of the same type without
/// secrets keeps the stored secrets.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct PatchSource {
    name: Option<String>,
    allowed_cidrs: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    verification: Option<Value>,
    replay_window_seconds: Option<i64>,
    log_payloads: Option<bool>,
    forward_to: Option<Vec<String>>,
    event_type: Option<String>,
}

/// Optional body of a token rotation (empty: no grace period).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RotateSource {
    /// How long the previous URL keeps working, 0 to 2592000 seconds (default 0).
    #[schema(minimum = 0, maximum = 2_592_000)]
    grace_period_seconds: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SourceToken)]
pub(super) struct TokenView {
    prefix: String,
    /// `active`, `grace` (rotated out, still working until `expires_at`), `expired` or
    /// `revoked`.
    #[schema(value_type = String)]
    state: &'static str,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

fn token_view(t: SourceToken, now: Millis) -> TokenView {
    let state = if t.revoked_at.is_some_and(|r| r <= now) {
        "revoked"
    } else if !t.live_at(now) {
        "expired"
    } else if t.expires_at.is_some() {
        "grace"
    } else {
        "active"
    };
    TokenView {
        prefix: t.prefix,
        state,
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339_opt(t.expires_at),
        revoked_at: rfc3339_opt(t.revoked_at),
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Source)]
pub(super) struct SourceView {
    id: String,
    name: String,
    /// `active` or `revoked` (the current token's state).
    #[schema(value_type = String)]
    status: &'static str,
    /// The full URL: only in the answer that created it (create, rotate).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The first characters of the current token.
    token_prefix: Option<String>,
    /// The URL with only the token prefix, for display.
    url_hint: Option<String>,
    /// The preset, without secrets.
    #[schema(value_type = Object)]
    verification: Value,
    secrets_count: usize,
    allowed_cidrs: Vec<String>,
    replay_window_seconds: i64,
    log_payloads: bool,
    forward_to: Vec<String>,
    event_type: String,
    tokens: Vec<TokenView>,
    created_at: String,
    updated_at: String,
}

fn view(r: SourceRecord, base: &str, url: Option<String>) -> SourceView {
    let now = now_millis();
    let s = r.source;
    let status = match &r.current_token {
        Some(t) if t.revoked_at.is_some_and(|at| at <= now) => "revoked",
        Some(_) => "active",
        None => "revoked",
    };
    let token_prefix = r.current_token.as_ref().map(|t| t.prefix.clone());
    let url_hint = token_prefix.as_ref().map(|p| format!("{base}/in/{p}…"));
    let tokens = r
        .current_token
        .into_iter()
        .chain(r.other_tokens)
        .map(|t| token_view(t, now))
        .collect();
    SourceView {
        status,
        url,
        token_prefix,
        url_hint,
        verification: serde_json::from_str(&s.verification).unwrap_or(Value::Null),
        secrets_count: s.secrets.len(),
        id: s.id,
        name: s.name,
        allowed_cidrs: s.allowed_cidrs,
        replay_window_seconds: s.replay_window_secs,
        log_payloads: s.log_payloads,
        forward_to: s.forward_to,
        event_type: s.event_type,
        tokens,
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

/// `server.public_url`, or the scheme and `Host` of this request.
fn base_url(state: &AppState, headers: &HeaderMap, ext: &Extensions) -> String {
    if let Some(u) = &state.inbound.public_url {
        return u.clone();
    }
    let tls = ext.get::<ConnectionTls>().is_some_and(|t| t.0);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.server.listen.clone());
    let scheme = if tls || state.inbound.https_required {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

fn invalid(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid(code, msg)
}

fn validate_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "INVALID_NAME",
            "name must be 1 to 200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn validate_window(w: i64) -> ApiResult<i64> {
    if !(0..=MAX_REPLAY_WINDOW_SECS).contains(&w) {
        return Err(invalid(
            "INVALID_REPLAY_WINDOW",
            format!("replay_window_seconds must be 0..={MAX_REPLAY_WINDOW_SECS} (0 disables)"),
        ));
    }
    Ok(w)
}

fn validate_cidrs(list: &[String]) -> ApiResult<Vec<String>> {
    if list.len() > MAX_CIDRS {
        return Err(invalid(
            "INVALID_CIDR",
            format!("at most {MAX_CIDRS} allowlist entries"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let net = parse_cidr(entry).map_err(|_| {
            invalid(
                "INVALID_CIDR",
                format!("allowed_cidrs[{i}] is not an IP address or CIDR range"),
            )
        })?;
        let s = net.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn validate_event_type(t: &str) -> ApiResult<()> {
    if t.is_empty()
        || t.len() > 128
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
    {
        return Err(invalid(
            "INVALID_EVENT_TYPE",
            "event types are 1 to 128 letters, digits and . _ - : /",
        ));
    }
    Ok(())
}

async fn validate_forward_to(state: &AppState, list: &[String]) -> ApiResult<Vec<String>> {
    if list.len() > MAX_FORWARD_TO {
        return Err(invalid(
            "INVALID_FORWARD_TO",
            format!("forward_to takes at most {MAX_FORWARD_TO} entries"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for f in list {
        if f.starts_with("ep_") {
            if f.len() > 64 || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    "INVALID_FORWARD_TO",
                    "forward_to: malformed endpoint id",
                ));
            }
            if state.store.get_endpoint(f).await?.is_none() {
                return Err(invalid(
                    "UNKNOWN_ENDPOINT",
                    format!("forward_to: endpoint {f} does not exist"),
                ));
            }
        } else {
            validate_event_type(f).map_err(|_| {
                invalid(
                    "INVALID_FORWARD_TO",
                    "forward_to entries are endpoint ids (ep_…) or event types",
                )
            })?;
        }
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    Ok(out)
}

/// Splits `{"type": …, "secret": …, "secrets": […], …}` into the preset and the secrets.
fn split_verification(v: Value) -> ApiResult<(Preset, Option<Vec<String>>)> {
    let Value::Object(mut m) = v else {
        return Err(invalid(
            "INVALID_VERIFICATION",
            "verification must be an object with a \"type\"",
        ));
    };
    let mut secrets: Option<Vec<String>> = None;
    for key in ["secret", "secrets"] {
        match m.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => secrets.get_or_insert_with(Vec::new).push(s),
            Some(Value::Array(a)) => {
                for s in a {
                    let Value::String(s) = s else {
                        return Err(invalid(
                            "INVALID_SECRET",
                            "verification.secrets must be strings",
                        ));
                    };
                    secrets.get_or_insert_with(Vec::new).push(s);
                }
            }
            Some(_) => {
                return Err(invalid(
                    "INVALID_SECRET",
                    "verification.secret must be a string",
                ));
            }
        }
    }
    if secrets.iter().flatten().any(|s| s.contains('\0')) {
        return Err(invalid(
            "INVALID_SECRET",
            "secrets must not contain a NUL character",
        ));
    }
    let m = Value::Object(m);
    if has_nul(&m) {
        return Err(invalid(
            "INVALID_VERIFICATION",
            "verification must not contain a NUL character",
        ));
    }
    let config: PresetConfig = serde_json::from_value(m)
        .map_err(|e| invalid("INVALID_VERIFICATION", format!("verification: {e}")))?;
    let preset = Preset::try_from(config)
        .map_err(|e| invalid("INVALID_VERIFICATION", format!("verification: {e}")))?;
    if let Some(s) = &secrets {
        if s.len() > MAX_SECRETS {
            return Err(invalid(
                "INVALID_SECRET",
                format!("at most {MAX_SECRETS} active secrets"),
            ));
        }
        if s.iter().any(|x| x.is_empty() || x.len() > MAX_SECRET_LEN) {
            return Err(invalid(
                "INVALID_SECRET",
                format!("secrets are 1 to {MAX_SECRET_LEN} bytes"),
            ));
        }
        let refs: Vec<&str> = s.iter().map(String::as_str).collect();
        preset
            .validate_secrets(&refs)
            .map_err(|e| invalid("INVALID_SECRET", e.to_string()))?;
    }
    Ok((preset, secrets))
}

/// Whether any string in `v`, object keys included, holds a NUL character.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn require_consistent(preset: &Preset, secrets: usize, cidrs: &[String]) -> ApiResult<()> {
    if preset.requires_secrets() && secrets == 0 {
        return Err(invalid(
            "SECRET_REQUIRED",
            format!(
                "the {} preset needs verification.secret (or secrets)",
                preset.type_name()
            ),
        ));
    }
    if matches!(preset.config(), PresetConfig::NoVerification(_)) && cidrs.is_empty() {
        return Err(invalid(
            "ALLOWLIST_REQUIRED",
            "verification type none is only allowed with a non-empty allowed_cidrs",
        ));
    }
    Ok(())
}

fn warn_if_unverified(preset: &Preset, id: &str) {
    if matches!(preset.config(), PresetConfig::NoVerification(_)) {
        warn!(source = %id, "source accepts webhooks without verification (allowlist only)");
    }
}

fn preset_json(p: &Preset) -> ApiResult<String> {
    serde_json::to_string(p.config()).map_err(|_| ApiError::internal())
}

fn new_token(now: Millis) -> (String, NewSourceToken) {
    let (tok, hash) = token::new_token();
    let prefix = tok.chars().take(token::PREFIX_LEN).collect();
    (
        tok,
        NewSourceToken {
            token_hash: hash,
            prefix,
            created_at: now,
        },
    )
}

/// Creates a source. The answer holds its secret URL (`url`), which is never shown again.
#[utoipa::path(
    post,
    path = "/sources",
    tag = "sources",
    request_body = CreateSource,
    responses(
        (status = 201, description = "Created, with its `url`", body = SourceView),
        (status = 422, description = "Invalid field (`INVALID_NAME`, `INVALID_CIDR`, `INVALID_VERIFICATION`, \
            `INVALID_SECRET`, `SECRET_REQUIRED`, `ALLOWLIST_REQUIRED`, `INVALID_FORWARD_TO`, \
            `UNKNOWN_ENDPOINT`, `INVALID_EVENT_TYPE`, `INVALID_REPLAY_WINDOW`…)", body = ErrorBody),
        (status = 409, description = "Conflict (`CONFLICT`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiJson(req): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, Json<SourceView>)> {
    let name = validate_name(&req.name)?;
    let cidrs = validate_cidrs(&req.allowed_cidrs)?;
    let window = validate_window(req.replay_window_seconds)?;
    let (preset, secrets) = split_verification(req.verification)?;
    let secrets = secrets.unwrap_or_default();
    require_consistent(&preset, secrets.len(), &cidrs)?;
    let forward_to = validate_forward_to(&state, &req.forward_to).await?;
    let event_type = match req.event_type {
        Some(t) => {
            validate_event_type(&t)?;
            t
        }
        None => format!("inbound.{}", preset.type_name()),
    };
    let now = state.clock.now_millis();
    let source = Source {
        id: crypto::new_id("src"),
        name,
        verification: preset_json(&preset)?,
        secrets: secrets.iter().map(|s| state.secrets.seal(s)).collect(),
        allowed_cidrs: cidrs,
        replay_window_secs: window,
        log_payloads: req.log_payloads,
        forward_to,
        event_type,
        created_at: now,
        updated_at: now,
    };
    warn_if_unverified(&preset, &source.id);
    let (tok, new) = new_token(now);
    let id = source.id.clone();
    state.inbound.store.create_source(source, new).await?;
    let record = state
        .inbound
        .store
        .get_source(&id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let base = base_url(&state, &headers, &ext);
    let url = format!("{base}/in/{tok}");
    Ok((StatusCode::CREATED, Json(view(record, &base, Some(url)))))
}

#[utoipa::path(
    get,
    path = "/sources",
    tag = "sources",
    params(PageQuery),
    responses((status = 200, description = "A page of sources", body = Paged<SourceView>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<SourceView>>> {
    let page = q.page(state.config.server.max_page_bytes)?;
    let rows = state.inbound.store.list_sources(page).await?;
    let base = base_url(&state, &headers, &ext);
    Ok(Json(paged(
        rows,
        |r| r.source.id.clone(),
        |r| view(r, &base, None),
    )))
}

async fn load(state: &AppState, id: &str) -> ApiResult<SourceRecord> {
    state
        .inbound
        .store
        .get_source(id)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))
}

/// After a change to a source: this instance's cache forgets it and the other instances hear of
/// it.
async fn changed(state: &AppState, id: &str) {
    state.inbound.cache.invalidate_source(id);
    crate::changes::announce(
        &*state.store,
        hookwarden_store::Change::Source(id.to_owned()),
    )
    .await;
}

#[utoipa::path(
    get,
    path = "/sources/{id}",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)")),
    responses(
        (status = 200, description = "The source", body = SourceView),
        (status = 404, description = "No such source (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn get_one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<Json<SourceView>> {
    let r = load(&state, &id).await?;
    Ok(Json(view(r, &base_url(&state, &headers, &ext), None)))
}

#[utoipa::path(
    patch,
    path = "/sources/{id}",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)")),
    request_body = PatchSource,
    responses(
        (status = 200, description = "The updated source", body = SourceView),
        (status = 404, description = "No such source (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid field (as on create)", body = ErrorBody),
    )
)]
pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<PatchSource>,
) -> ApiResult<Json<SourceView>> {
    let mut s = load(&state, &id).await?.source;
    if let Some(n) = &req.name {
        s.name = validate_name(n)?;
    }
    if let Some(c) = &req.allowed_cidrs {
        s.allowed_cidrs = validate_cidrs(c)?;
    }
    if let Some(w) = req.replay_window_seconds {
        s.replay_window_secs = validate_window(w)?;
    }
    if let Some(l) = req.log_payloads {
        s.log_payloads = l;
    }
    if let Some(f) = &req.forward_to {
        s.forward_to = validate_forward_to(&state, f).await?;
    }
    if let Some(t) = req.event_type {
        validate_event_type(&t)?;
        s.event_type = t;
    }
    let stored: Result<PresetConfig, ApiError> =
        serde_json::from_str(&s.verification).map_err(|_| {
            invalid(
                "INVALID_VERIFICATION",
                "the stored verification is unreadable: set a new one",
            )
        });
    let preset = match req.verification {
        Some(v) => {
            let (preset, secrets) = split_verification(v)?;
            match secrets {
                Some(list) => s.secrets = list.iter().map(|x| state.secrets.seal(x)).collect(),
                // Same type: the secrets stay; another type needs its own.
                None => {
                    let same = stored
                        .as_ref()
                        .is_ok_and(|c| c.type_name() == preset.type_name());
                    if !same {
                        s.secrets.clear();
                    }
                }
            }
            s.verification = preset_json(&preset)?;
            preset
        }
        None => {
            Preset::try_from(stored?).map_err(|e| invalid("INVALID_VERIFICATION", e.to_string()))?
        }
    };
    require_consistent(&preset, s.secrets.len(), &s.allowed_cidrs)?;
    warn_if_unverified(&preset, &s.id);
    s.updated_at = state.clock.now_millis();
    if !state.inbound.store.update_source(s).await? {
        return Err(ApiError::not_found("source"));
    }
    changed(&state, &id).await;
    let r = load(&state, &id).await?;
    Ok(Json(view(r, &base_url(&state, &headers, &ext), None)))
}

/// Deletes a source (its audit entries stay until retention).
#[utoipa::path(
    delete,
    path = "/sources/{id}",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such source (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    if !state.inbound.store.delete_source(&id).await? {
        return Err(ApiError::not_found("source"));
    }
    changed(&state, &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new secret URL; the previous one keeps working for the grace period. The body is
/// optional.
#[utoipa::path(
    post,
    path = "/sources/{id}/rotate",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)")),
    request_body(content = Option<RotateSource>, content_type = "application/json"),
    responses(
        (status = 200, description = "The source with its new `url`", body = SourceView),
        (status = 404, description = "No such source (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid grace period (`INVALID_GRACE_PERIOD`)", body = ErrorBody),
    )
)]
pub(super) async fn rotate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiPath(Id(id)): ApiPath<Id>,
    body: ApiBytes,
) -> ApiResult<Json<SourceView>> {
    // The body is optional: empty or `null` means the defaults.
    let req: RotateSource = body.json_or_default(|e| {
        ApiError::bad_request("INVALID_JSON", format!("Malformed JSON: {e}"))
    })?;
    if !(0..=MAX_GRACE_SECS).contains(&req.grace_period_seconds) {
        return Err(invalid(
            "INVALID_GRACE_PERIOD",
            format!("grace_period_seconds must be 0..={MAX_GRACE_SECS}"),
        ));
    }
    let now = state.clock.now_millis();
    let (tok, new) = new_token(now);
    let old_expires_at = now.saturating_add(req.grace_period_seconds.saturating_mul(1000));
    if !state
        .inbound
        .store
        .rotate_source_token(&id, new, old_expires_at, now)
        .await?
    {
        return Err(ApiError::not_found("source"));
    }
    changed(&state, &id).await;
    let r = load(&state, &id).await?;
    let base = base_url(&state, &headers, &ext);
    let url = format!("{base}/in/{tok}");
    Ok(Json(view(r, &base, Some(url))))
}

/// Revokes the source's URLs: calls get 410 `WEBHOOK_REVOKED` until it is rotated.
#[utoipa::path(
    post,
    path = "/sources/{id}/revoke",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)")),
    responses(
        (status = 200, description = "The revoked source", body = SourceView),
        (status = 404, description = "No such source (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<Json<SourceView>> {
    if !state
        .inbound
        .store
        .revoke_source(&id, state.clock.now_millis())
        .await?
    {
        return Err(ApiError::not_found("source"));
    }
    changed(&state, &id).await;
    let r = load(&state, &id).await?;
    Ok(Json(view(r, &base_url(&state, &headers, &ext), None)))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<usize>,
    /// The `next_before` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    before: Option<String>,
    /// RFC 3339 time or unix milliseconds (inclusive).
    since: Option<String>,
    /// RFC 3339 time or unix milliseconds (exclusive).
    until: Option<String>,
    /// An outcome code such as `ACCEPTED` or `IP_NOT_ALLOWED`.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Z_]+$")]
    outcome: Option<String>,
    /// An IPv4 or IPv6 address.
    client_ip: Option<String>,
    /// `/api/v1/inbound/audit` only: one source's entries.
    source_id: Option<String>,
    /// `/api/v1/inbound/audit` only: entries whose token matched no source.
    unknown: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditView {
    id: String,
    source_id: Option<String>,
    token_prefix: String,
    received_at: String,
    client_ip: Option<String>,
    peer_addr: String,
    user_agent: Option<String>,
    outcome: String,
    reason: Option<String>,
    status: u16,
    body_bytes: i64,
    latency_ms: f64,
    tls: bool,
    event_id: Option<String>,
    message_id: Option<String>,
    count: i64,
    sampled: bool,
    /// The logged body (sources with `log_payloads`: its first 64 KiB, byte for byte) when it
    /// is UTF-8 text without a NUL character.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    /// The logged body in base64 (standard alphabet, padded) when it is not such text (bytes
    /// that are not UTF-8, or a NUL). At most one of `payload` and `payload_base64` is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// A logged body as the API shows it: (`payload`, `payload_base64`).
fn payload_fields(p: Option<&[u8]>) -> (Option<String>, Option<String>) {
    use base64::Engine;
    match p {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) if !text.contains('\0') => (Some(text.to_owned()), None),
            _ => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        },
    }
}

fn audit_view(a: AuditEntry) -> AuditView {
    let e = a.entry;
    let (payload, payload_base64) = payload_fields(e.payload.as_deref());
    AuditView {
        id: a.id,
        source_id: e.source_id,
        token_prefix: e.token_prefix,
        received_at: rfc3339(e.received_at),
        client_ip: e.client_ip,
        peer_addr: e.peer_addr,
        user_agent: e.user_agent,
        outcome: e.outcome,
        reason: e.reason,
        status: e.status,
        body_bytes: e.body_bytes,
        latency_ms: e.latency_us as f64 / 1000.0,
        tls: e.tls,
        event_id: e.event_id,
        message_id: e.message_id,
        count: e.count,
        sampled: e.sampled,
        payload,
        payload_base64,
    }
}

fn audit_filter(q: &AuditQuery, source_id: Option<String>) -> ApiResult<AuditFilter> {
    let bad = |m: &str| ApiError::bad_request("INVALID_QUERY", m.to_owned());
    let outcome = match &q.outcome {
        Some(o)
            if o.is_empty()
                || o.len() > 64
                || !o.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            return Err(bad("outcome is a code such as ACCEPTED or IP_NOT_ALLOWED"));
        }
        o => o.clone(),
    };
    let client_ip = match &q.client_ip {
        Some(ip) => Some(
            ip.trim()
                .parse::<IpAddr>()
                .map_err(|_| bad("client_ip is not an IP address"))?
                .to_canonical()
                .to_string(),
        ),
        None => None,
    };
    if let Some(s) = &source_id
        && (s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(bad("source_id is not a valid id"));
    }
    Ok(AuditFilter {
        source_id,
        unknown_only: q.unknown.unwrap_or(false),
        since: q
            .since
            .as_deref()
            .map(|v| parse_time("since", v))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|v| parse_time("until", v))
            .transpose()?,
        outcome,
        client_ip,
    })
}

async fn audit_page(
    state: &AppState,
    q: AuditQuery,
    filter: AuditFilter,
) -> ApiResult<Json<Paged<AuditView>>> {
    let page = PageQuery {
        limit: q.limit,
        before: q.before,
    }
    .page(state.config.server.max_page_bytes)?;
    let rows = state.inbound.store.list_audit(filter, page).await?;
    Ok(Json(paged(rows, |a| a.id.clone(), audit_view)))
}

/// `GET /api/v1/sources/{id}/audit` (also after the source was deleted, until retention).
#[utoipa::path(
    get,
    path = "/sources/{id}/audit",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)"), AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = Paged<AuditView>))
)]
pub(super) async fn source_audit(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Paged<AuditView>>> {
    if q.source_id.is_some() || q.unknown.is_some() {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            "source_id and unknown belong to /api/v1/inbound/audit",
        ));
    }
    let filter = audit_filter(&q, Some(id))?;
    audit_page(&state, q, filter).await
}

/// `GET /api/v1/inbound/audit`: every source's entries and those of unknown tokens.
#[utoipa::path(
    get,
    path = "/inbound/audit",
    tag = "sources",
    params(AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = Paged<AuditView>))
)]
pub(super) async fn all_audit(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Paged<AuditView>>> {
    let filter = audit_filter(&q, q.source_id.clone())?;
    audit_page(&state, q, filter).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verification_secrets_are_split_off_and_checked() {
        let (p, s) = split_verification(json!({"type": "github", "secret": "a"})).unwrap();
        assert_eq!(p.type_name(), "github");
        assert_eq!(s, Some(vec!["a".to_string()]));
        let stored = preset_json(&p).unwrap();
        assert!(!stored.contains("secret"), "{stored}");
        let (_, s) =
            split_verification(json!({"type": "stripe", "secret": "a", "secrets": ["b", "c"]}))
                .unwrap();
        assert_eq!(s.unwrap().len(), 3);
        let (_, s) = split_verification(json!({"type": "discord", "public_key":
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}))
        .unwrap();
        assert_eq!(s, None);
        for (bad, code) in [
            (json!("github"), "INVALID_VERIFICATION"),
            (json!({"type": "nope"}), "INVALID_VERIFICATION"),
            (
                json!({"type": "github", "secrett": "x"}),
                "INVALID_VERIFICATION",
            ),
            (json!({"type": "github", "secret": 5}), "INVALID_SECRET"),
            (
                json!({"type": "github", "secrets": ["a", 1]}),
                "INVALID_SECRET",
            ),
            (json!({"type": "github", "secret": ""}), "INVALID_SECRET"),
            (
                json!({"type": "github", "secret": "a\u{0}"}),
                "INVALID_SECRET",
            ),
            (
                json!({"type": "hmac", "header": "x-s", "secret": "k", "template": "\u{0}"}),
                "INVALID_VERIFICATION",
            ),
            (json!({"type": "github\u{0}"}), "INVALID_VERIFICATION"),
            (
                json!({"type": "standard-webhooks", "secret": "not base64!"}),
                "INVALID_SECRET",
            ),
            (
                json!({"type": "discord", "public_key": "zz"}),
                "INVALID_VERIFICATION",
            ),
        ] {
            let e = split_verification(bad.clone())
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.code, code, "{bad}: {}", e.message);
            assert!(!e.message.contains("secrett\": \"x"), "{}", e.message);
        }
        let many: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
        let e = split_verification(json!({"type": "github", "secrets": many}))
            .err()
            .unwrap();
        assert_eq!(e.code, "INVALID_SECRET");
    }

    #[test]
    fn payloads_are_text_or_base64() {
        assert_eq!(payload_fields(None), (None, None));
        assert_eq!(payload_fields(Some(b"")), (Some(String::new()), None));
        assert_eq!(
            payload_fields(Some("caf\u{e9}".as_bytes())),
            (Some("caf\u{e9}".into()), None)
        );
        assert_eq!(payload_fields(Some(b"a\0b")), (None, Some("YQBi".into())));
        assert_eq!(payload_fields(Some(b"\xff")), (None, Some("/w==".into())));
    }

    #[test]
    fn consistency_rules() {
        let none = Preset::try_from(PresetConfig::NoVerification(Default::default())).unwrap();
        assert_eq!(
            require_consistent(&none, 0, &[]).unwrap_err().code,
            "ALLOWLIST_REQUIRED"
        );
        assert!(require_consistent(&none, 0, &["10.0.0.0/8".into()]).is_ok());
        let (gh, _) = split_verification(json!({"type": "github"})).unwrap();
        assert_eq!(
            require_consistent(&gh, 0, &[]).unwrap_err().code,
            "SECRET_REQUIRED"
        );
    }

    #[test]
    fn inputs_are_validated_and_normalised() {
        assert_eq!(
            validate_cidrs(&[
                "10.1.2.3/8".into(),
                " 2001:DB8::1 ".into(),
                "10.0.0.0/8".into()
            ])
            .unwrap(),
            vec!["10.0.0.0/8", "2001:db8::1/128"]
        );
        assert!(validate_cidrs(&["10.0.0.0/33".into()]).is_err());
        assert!(validate_cidrs(&vec!["10.0.0.1".to_string(); MAX_CIDRS + 1]).is_err());
        assert!(validate_window(0).is_ok() && validate_window(-1).is_err());
        assert!(validate_window(MAX_REPLAY_WINDOW_SECS + 1).is_err());
        assert!(validate_name(" a ").is_ok() && validate_name(" ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_event_type("invoice.paid").is_ok());
        assert!(validate_event_type("a b").is_err());
        assert_eq!(parse_time("t", "1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("t", "2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert!(parse_time("t", "yesterday").is_err());
        let q = AuditQuery {
            outcome: Some("ip_not_allowed".into()),
            ..Default::default()
        };
        assert!(audit_filter(&q, None).is_err());
        let q = AuditQuery {
            client_ip: Some("::ffff:10.0.0.1".into()),
            ..Default::default()
        };
        assert_eq!(
            audit_filter(&q, None).unwrap().client_ip.as_deref(),
            Some("10.0.0.1")
        );
    }
}
