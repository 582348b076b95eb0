//! `/api/v1/endpoints`: receivers of outbound webhooks.

use super::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged, paged};
use crate::crypto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::times::{rfc3339, rfc3339_opt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookwarden_signatures::Scheme;
use hookwarden_store::{Endpoint, SecretKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use utoipa::ToSchema;

const MAX_EVENT_TYPES: usize = 100;
const MAX_HEADERS: usize = 20;
const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_DEVELOPER_PAYLOAD: usize = 1024;
const MAX_DESCRIPTION: usize = 512;
pub(crate) const MAX_GRACE_SECS: u64 = 30 * 86_400;
const DEFAULT_GRACE_SECS: u64 = 86_400;

/// Headers Hookwarden sets itself (or that would break HTTP framing); never configurable.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
];

/// Whether Hookwarden sets (or HTTP itself defines) this header, so that a custom header may not
/// name it: the reserved names, and every `content-*`, `x-hookwarden-*`, `proxy-*` and
/// `webhook-*` header. `content-*` describe the body Hookwarden sends (a custom
/// `content-encoding: gzip` would make receivers misread the signed bytes).
pub(crate) fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name)
        || ["content-", "x-hookwarden-", "proxy-", "webhook-"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Header names whose values are masked when an endpoint or an attempt's request is shown:
/// those containing `auth` (so `authorization`), `cookie`, `token`, `secret`, `signature`,
/// `key` or `password`, in any case.
pub(crate) fn is_sensitive_header(name: &str) -> bool {
    // Called for every header of every delivery attempt: one pass over the name, trying only
    // the words that begin with the byte at hand (eight substring searches per header were 3 %
    // of `serve`'s CPU in the delivery benchmark).
    let n = name.as_bytes();
    let at =
        |i: usize, w: &[u8]| n.len() - i >= w.len() && n[i..i + w.len()].eq_ignore_ascii_case(w);
    (0..n.len()).any(|i| match n[i].to_ascii_lowercase() {
        b'a' => at(i, b"auth"),
        b'c' => at(i, b"cookie"),
        b't' => at(i, b"token"),
        b's' => at(i, b"secret") || at(i, b"signature"),
        b'k' => at(i, b"key"),
        b'p' => at(i, b"password"),
        _ => false,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEndpoint {
    /// `https://…` (or `http://…` with `egress.allow_http`); checked against the egress policy.
    #[schema(max_length = 2048)]
    url: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    developer_payload: Option<String>,
    #[serde(default)]
    signature_schemes: Option<Vec<String>>,
    #[serde(default)]
    rate_limit_per_second: Option<u32>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Bring your own signing secret (`whsec_` + base64 of 24..=64 bytes).
    #[serde(default)]
    secret: Option<String>,
    /// A client certificate (`cert_…`, active) to present to this endpoint (mTLS).
    #[serde(default)]
    client_certificate_id: Option<String>,
    /// Delays in seconds before each retry, e.g. `[5, 300, 1800, 7200]` (at most 50, each 1 s to
    /// 30 days): retry `n` waits the `n`th, and the delivery fails for good after one attempt
    /// more than the list has. Empty or absent: the deployment's backoff (`[delivery]`).
    #[serde(default)]
    #[schema(max_items = 50)]
    retry_schedule: Option<Vec<u32>>,
    /// A payload filter (docs/filters.md), e.g. `{"data.amount": {"$gte": 100}}`: events it
    /// does not match are not delivered here (and are counted). Refused with
    /// `INVALID_FILTER` when it does not compile.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Value>,
    /// A transformation (docs/transformations.md): a Rhai script defining
    /// `fn handler(webhook)`, run on each request before it is signed and sent. Refused with
    /// `INVALID_TRANSFORMATION` when it does not compile.
    #[serde(default)]
    #[schema(max_length = 65536)]
    transformation: Option<String>,
}

/// Only the fields given change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateEndpoint {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// A string sets it, `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    developer_payload: Option<Option<String>>,
    #[serde(default)]
    signature_schemes: Option<Vec<String>>,
    /// A number sets it (0 or `null`: unlimited).
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<u32>)]
    rate_limit_per_second: Option<Option<u32>>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Attach (`"cert_…"`, must be active) or detach (`null`) a client certificate.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    client_certificate_id: Option<Option<String>>,
    /// A list sets the endpoint's retry schedule (as on create); `[]` or `null` returns it to the
    /// deployment's backoff.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Vec<u32>>, max_items = 50)]
    retry_schedule: Option<Option<Vec<u32>>>,
    /// A filter sets it (as on create), `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Object>)]
    filter: Option<Option<serde_json::Value>>,
    /// A script sets it (as on create), `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    transformation: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Endpoint)]
pub(crate) struct EndpointView {
    id: String,
    url: String,
    description: String,
    event_types: Vec<String>,
    /// Values of sensitive headers (authorization, tokens, keys…) are masked.
    headers: BTreeMap<String, String>,
    /// `true` when a developer payload is set (it is only returned when created).
    has_developer_payload: bool,
    signature_schemes: Vec<String>,
    rate_limit_per_second: Option<u32>,
    enabled: bool,
    disabled_reason: Option<String>,
    disabled_at: Option<String>,
    client_certificate_id: Option<String>,
    /// Delays in seconds before each retry; empty: the deployment's backoff.
    retry_schedule: Vec<u32>,
    /// The payload filter, if any.
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Value>,
    /// The transformation script, if any.
    transformation: Option<String>,
    consecutive_failures: i64,
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        EndpointView {
            headers: e
                .headers
                .into_iter()
                .map(|(k, v)| {
                    let shown = if is_sensitive_header(&k) { mask(&v) } else { v };
                    (k, shown)
                })
                .collect(),
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            has_developer_payload: e.developer_payload.is_some(),
            signature_schemes: e.signature_schemes,
            rate_limit_per_second: e.rate_limit_per_second,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            disabled_at: rfc3339_opt(e.disabled_at),
            client_certificate_id: e.client_certificate_id,
            retry_schedule: e.retry_schedule,
            filter: e
                .filter
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
            transformation: e.transformation,
            consecutive_failures: e.consecutive_failures,
            failing_since: rfc3339_opt(e.failing_since),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// `****` and, for values longer than 8 characters, their last 4.
pub(crate) fn mask(v: &str) -> String {
    let n = v.chars().count();
    if n <= 8 {
        "****".into()
    } else {
        let tail: String = v.chars().skip(n - 4).collect();
        format!("****{tail}")
    }
}

/// A sensitive header sent back with the masked value it was shown with keeps its stored
/// value, so that a client can edit other headers without knowing (or wiping) the secret ones.
fn keep_masked(
    new: BTreeMap<String, String>,
    old: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    new.into_iter()
        .map(|(k, v)| {
            let stored = old
                .iter()
                .find(|(ok, _)| ok.eq_ignore_ascii_case(&k))
                .map(|(_, ov)| ov);
            match stored {
                Some(ov) if v.starts_with("****") && is_sensitive_header(&k) && mask(ov) == v => {
                    (k, ov.clone())
                }
                _ => (k, v),
            }
        })
        .collect()
}

pub(crate) fn validate_event_type(t: &str) -> ApiResult<()> {
    if t.is_empty() || t.len() > 128 {
        return Err(ApiError::invalid(
            "INVALID_EVENT_TYPE",
            "event types are 1 to 128 characters",
        ));
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
    {
        return Err(ApiError::invalid(
            "INVALID_EVENT_TYPE",
            format!("event type {t:?} may only contain letters, digits and . _ - : /"),
        ));
    }
    Ok(())
}

fn validate_event_types(types: Vec<String>) -> ApiResult<Vec<String>> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid(
            "INVALID_EVENT_TYPE",
            format!("at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        // `*` is every type (the empty list); `invoice.*` every type under `invoice.`, at any
        // depth. A wildcard only ends a subscription, after a dot.
        if t == "*" {
            return Ok(Vec::new());
        }
        match t.strip_suffix(".*") {
            Some(prefix) => validate_event_type(prefix)?,
            None => validate_event_type(&t)?,
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out.sort();
    Ok(out)
}

fn validate_headers(headers: BTreeMap<String, String>) -> ApiResult<BTreeMap<String, String>> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(
            "INVALID_HEADER",
            format!("at most {MAX_HEADERS} custom headers"),
        ));
    }
    let mut total = 0;
    let mut out = BTreeMap::new();
    for (k, v) in headers {
        let name = k.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.len() > 64 {
            return Err(ApiError::invalid(
                "INVALID_HEADER",
                format!("{k:?} is not a valid header name"),
            ));
        }
        if is_reserved_header(&name) {
            return Err(ApiError::invalid(
                "RESERVED_HEADER",
                format!("header {k:?} is set by Hookwarden and cannot be overridden"),
            ));
        }
        if v.len() > 1024
            || http::HeaderValue::from_str(&v).is_err()
            || v.bytes().any(|b| b < 0x20 && b != b'\t')
        {
            return Err(ApiError::invalid(
                "INVALID_HEADER",
                format!("invalid value for header {k:?}"),
            ));
        }
        total += name.len() + v.len();
        if out.insert(name, v).is_some() {
            return Err(ApiError::invalid(
                "INVALID_HEADER",
                format!("header {k:?} given twice"),
            ));
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(ApiError::invalid(
            "INVALID_HEADER",
            "custom headers exceed 8 KiB",
        ));
    }
    Ok(out)
}

fn validate_schemes(schemes: Vec<String>) -> ApiResult<Vec<String>> {
    if schemes.is_empty() {
        return Err(ApiError::invalid(
            "INVALID_SIGNATURE_SCHEME",
            "at least one signature scheme is required",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for s in schemes {
        let scheme = Scheme::from_str(&s).map_err(|_| {
            ApiError::invalid(
                "INVALID_SIGNATURE_SCHEME",
                format!(
                    "unknown signature scheme {s:?}; known: {}",
                    Scheme::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let name = scheme.as_str().to_owned();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    // A receiver must be able to check the body it got: a date signature alone would let
    // anyone who saw one delivery send any body for as long as the date is accepted.
    if !out
        .iter()
        .filter_map(|s| Scheme::from_str(s).ok())
        .any(|s| s.signs_body())
    {
        return Err(ApiError::invalid(
            "INVALID_SIGNATURE_SCHEME",
            "date-sha1 does not sign the body: add a scheme that does (standard-webhooks, github-sha256 or hub-sha1)",
        ));
    }
    Ok(out)
}

fn validate_text(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.len() > max || v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("{field} must be at most {max} bytes of printable text"),
        ));
    }
    Ok(())
}

/// Most delays in a retry schedule.
pub(crate) const MAX_RETRY_SCHEDULE: usize = 50;
/// Longest delay in a retry schedule: 30 days (as `delivery.backoff_max_secs`).
const MAX_RETRY_DELAY_SECS: u32 = 30 * 86_400;

fn validate_retry_schedule(s: Vec<u32>) -> ApiResult<Vec<u32>> {
    if s.len() > MAX_RETRY_SCHEDULE {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("retry_schedule holds at most {MAX_RETRY_SCHEDULE} delays"),
        ));
    }
    if s.iter().any(|d| !(1..=MAX_RETRY_DELAY_SECS).contains(d)) {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("each retry_schedule delay is 1 to {MAX_RETRY_DELAY_SECS} seconds"),
        ));
    }
    Ok(s)
}

fn validate_rate(r: Option<u32>) -> ApiResult<Option<u32>> {
    match r {
        Some(0) | None => Ok(None),
        Some(r) if r <= 100_000 => Ok(Some(r)),
        Some(_) => Err(ApiError::invalid(
            "VALIDATION_FAILED",
            "rate_limit_per_second must be at most 100000",
        )),
    }
}

/// A payload filter that compiles, as the text stored (`INVALID_FILTER` otherwise).
pub(crate) fn validate_filter(f: &serde_json::Value) -> ApiResult<String> {
    hookwarden_store::filter::PayloadFilter::compile(f)
        .map_err(|e| ApiError::invalid("INVALID_FILTER", format!("filter {e}")))?;
    serde_json::to_string(f).map_err(|_| ApiError::internal())
}

/// A transformation that compiles (`INVALID_TRANSFORMATION` otherwise).
pub(crate) fn validate_transformation(t: String) -> ApiResult<String> {
    if t.contains('\0') {
        return Err(ApiError::invalid(
            "INVALID_TRANSFORMATION",
            "transformation holds a NUL character",
        ));
    }
    crate::transform::Transformation::compile(&t)
        .map_err(|e| ApiError::invalid("INVALID_TRANSFORMATION", format!("transformation {e}")))?;
    Ok(t)
}

pub(crate) fn validate_custom_secret(s: &str) -> ApiResult<()> {
    use base64::Engine;
    let raw = s
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    match raw {
        Some(r) if (24..=64).contains(&r.len()) => Ok(()),
        _ => Err(ApiError::invalid(
            "INVALID_SECRET",
            "a signing secret is whsec_ followed by base64 of 24 to 64 bytes",
        )),
    }
}

/// Creates an endpoint. The answer holds its signing secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/endpoints",
    tag = "endpoints",
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created", body = CreatedEndpoint),
        (status = 422, description = "Invalid field (`URL_*`, `INVALID_HEADER`, `RESERVED_HEADER`, \
            `INVALID_EVENT_TYPE`, `INVALID_SIGNATURE_SCHEME`, `INVALID_SECRET`, \
            `CERTIFICATE_NOT_FOUND`, `INVALID_FILTER`, `INVALID_TRANSFORMATION`, `VALIDATION_FAILED`…)", body = ErrorBody),
        (status = 409, description = "Conflict (`CONFLICT`)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateEndpoint>,
) -> ApiResult<impl IntoResponse> {
    let url = state.check_endpoint_url(&req.url).await?;
    let description = req.description.unwrap_or_default();
    validate_text("description", &description, MAX_DESCRIPTION)?;
    let event_types = validate_event_types(req.event_types.unwrap_or_default())?;
    let headers = validate_headers(req.headers.unwrap_or_default())?;
    if let Some(p) = &req.developer_payload {
        validate_text("developer_payload", p, MAX_DEVELOPER_PAYLOAD)?;
    }
    let schemes = validate_schemes(
        req.signature_schemes
            .unwrap_or_else(|| vec![Scheme::StandardWebhooks.as_str().to_owned()]),
    )?;
    let rate = validate_rate(req.rate_limit_per_second)?;
    let client_certificate_id = match &req.client_certificate_id {
        Some(c) => Some(super::certificates::check_attachable(&state, c).await?),
        None => None,
    };
    let secret = match req.secret {
        Some(s) => {
            validate_custom_secret(&s)?;
            s
        }
        None => crypto::new_signing_secret(),
    };
    let now = state.clock.now_millis();
    let enabled = req.enabled.unwrap_or(true);
    let ep = Endpoint {
        id: crypto::new_id("ep"),
        url,
        description,
        event_types,
        headers: crate::secrets::seal_headers(&state.secrets, &headers),
        developer_payload: req
            .developer_payload
            .as_deref()
            .map(|p| state.secrets.seal(p)),
        signature_schemes: schemes,
        rate_limit_per_second: rate,
        enabled,
        disabled_reason: (!enabled).then(|| "manual".to_owned()),
        disabled_at: (!enabled).then_some(now),
        client_certificate_id,
        retry_schedule: validate_retry_schedule(req.retry_schedule.unwrap_or_default())?,
        filter: req.filter.as_ref().map(validate_filter).transpose()?,
        transformation: req
            .transformation
            .map(validate_transformation)
            .transpose()?,
        consecutive_failures: 0,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .create_endpoint(ep.clone(), state.secrets.seal(&secret))
        .await?;
    let public_key = ensure_signing_key(&state, &ep).await?;
    state
        .prober
        .changed(&ep.id, crate::probe::Trigger::EndpointCreated);
    let body = CreatedEndpoint {
        endpoint: EndpointView::from(Endpoint { headers, ..ep }),
        secret,
        public_key,
        developer_payload: req.developer_payload,
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// Lists endpoints, newest first.
#[utoipa::path(
    get,
    path = "/endpoints",
    tag = "endpoints",
    params(PageQuery),
    responses((status = 200, description = "A page of endpoints", body = Paged<EndpointView>))
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<EndpointView>>> {
    let page = q.page(state.config.server.max_page_bytes)?;
    let listed = state.store.list_endpoints(page).await?;
    let more = listed.more;
    let rows = listed
        .into_iter()
        .map(|e| opened(&state, e))
        .collect::<ApiResult<Vec<_>>>()?;
    let rows = hookwarden_store::Listed::new(rows, more);
    Ok(axum::Json(paged(
        rows,
        |e| e.id.clone(),
        EndpointView::from,
    )))
}

/// The endpoint with its custom header values opened (they are sealed at rest).
fn opened(state: &AppState, mut e: Endpoint) -> ApiResult<Endpoint> {
    e.headers = crate::secrets::open_headers(&state.secrets, &e.headers).map_err(|err| {
        tracing::error!(endpoint_id = %e.id, error = %err, "cannot open an endpoint's headers");
        ApiError::internal()
    })?;
    Ok(e)
}

/// The endpoint, its custom header values opened.
async fn load(state: &AppState, id: &str) -> ApiResult<Endpoint> {
    let e = state
        .store
        .get_endpoint(id)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))?;
    opened(state, e)
}

#[utoipa::path(
    get,
    path = "/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<EndpointView>> {
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Changes the fields given; `enabled` enables or disables it.
#[utoipa::path(
    patch,
    path = "/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The updated endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid field (as on create)", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<UpdateEndpoint>,
) -> ApiResult<axum::Json<EndpointView>> {
    let mut ep = load(&state, &id).await?;
    let mut url_changed = false;
    if let Some(url) = req.url {
        let url = state.check_endpoint_url(&url).await?;
        url_changed = url != ep.url;
        ep.url = url;
    }
    if let Some(d) = req.description {
        validate_text("description", &d, MAX_DESCRIPTION)?;
        ep.description = d;
    }
    if let Some(t) = req.event_types {
        ep.event_types = validate_event_types(t)?;
    }
    if let Some(h) = req.headers {
        ep.headers = validate_headers(keep_masked(h, &ep.headers))?;
    }
    if let Some(p) = req.developer_payload {
        if let Some(p) = &p {
            validate_text("developer_payload", p, MAX_DEVELOPER_PAYLOAD)?;
        }
        ep.developer_payload = p.as_deref().map(|p| state.secrets.seal(p));
    }
    if let Some(s) = req.signature_schemes {
        ep.signature_schemes = validate_schemes(s)?;
    }
    if let Some(r) = req.rate_limit_per_second {
        ep.rate_limit_per_second = validate_rate(r)?;
    }
    if let Some(c) = req.client_certificate_id {
        ep.client_certificate_id = match c {
            Some(c) => Some(super::certificates::check_attachable(&state, &c).await?),
            None => None,
        };
    }
    if let Some(s) = req.retry_schedule {
        ep.retry_schedule = validate_retry_schedule(s.unwrap_or_default())?;
    }
    if let Some(f) = req.filter {
        ep.filter = f.as_ref().map(validate_filter).transpose()?;
    }
    if let Some(t) = req.transformation {
        ep.transformation = t.map(validate_transformation).transpose()?;
    }
    let now = state.clock.now_millis();
    ep.updated_at = now;
    ep.headers = crate::secrets::seal_headers(&state.secrets, &ep.headers);
    if !state.store.update_endpoint(ep).await? {
        return Err(ApiError::not_found("endpoint"));
    }
    if let Some(enabled) = req.enabled {
        set_enabled(&state, &id, enabled).await?;
    }
    ensure_signing_key(&state, &load(&state, &id).await?).await?;
    state.dispatcher.endpoints().changed(&id).await;
    if url_changed {
        state.prober.changed(&id, crate::probe::Trigger::UrlChanged);
    }
    Ok(axum::Json(load(&state, &id).await?.into()))
}

async fn set_enabled(state: &AppState, id: &str, enabled: bool) -> ApiResult<()> {
    let reason = (!enabled).then(|| "manual".to_owned());
    if !state
        .store
        .set_endpoint_enabled(id, enabled, reason, state.clock.now_millis())
        .await?
    {
        return Err(ApiError::not_found("endpoint"));
    }
    state.dispatcher.endpoints().changed(id).await;
    if enabled {
        state.dispatcher.wake();
    }
    Ok(())
}

/// Enables the endpoint (also one the circuit breaker disabled); its pending deliveries resume.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/enable",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn enable(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<EndpointView>> {
    set_enabled(&state, &id, true).await?;
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Disables the endpoint: its deliveries wait until it is enabled again.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/disable",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn disable(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<EndpointView>> {
    set_enabled(&state, &id, false).await?;
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Deletes the endpoint; its pending deliveries are cancelled.
#[utoipa::path(
    delete,
    path = "/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    if !state
        .store
        .delete_endpoint(&id, state.clock.now_millis())
        .await?
    {
        return Err(ApiError::not_found("endpoint"));
    }
    state.dispatcher.endpoints().changed(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// With `standard-webhooks-v1a` among the endpoint's schemes and no active ed25519 key: makes
/// one (sealed at rest) and returns its public key.
async fn ensure_signing_key(state: &AppState, ep: &Endpoint) -> ApiResult<Option<String>> {
    let v1a = Scheme::StandardWebhooksV1a.as_str();
    if !ep.signature_schemes.iter().any(|s| s == v1a) {
        return Ok(None);
    }
    let now = state.clock.now_millis();
    let has_key = state
        .store
        .active_secrets(&ep.id, now)
        .await?
        .iter()
        .any(|r| r.kind == SecretKind::Ed25519);
    if has_key {
        return Ok(None);
    }
    let (key, public) = new_signing_key()?;
    if !state
        .store
        .rotate_signing_key(&ep.id, state.secrets.seal(&key), now, now)
        .await?
    {
        return Err(ApiError::not_found("endpoint"));
    }
    state.dispatcher.endpoints().changed(&ep.id).await;
    Ok(Some(public))
}

/// The grace period of a rotation, seconds: the default when absent, refused above the
/// maximum.
fn grace_secs(asked: Option<u64>) -> ApiResult<u64> {
    let grace = asked.unwrap_or(DEFAULT_GRACE_SECS);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("grace_period_seconds must be at most {MAX_GRACE_SECS}"),
        ));
    }
    Ok(grace)
}

/// A new ed25519 signing key (`whsk_…`, from the CSPRNG) and its public key (`whpk_…`).
fn new_signing_key() -> ApiResult<(String, String)> {
    let key = hookwarden_signatures::ed25519_private_key(crypto::random_bytes::<32>());
    let public = hookwarden_signatures::ed25519_public_key(&key).ok_or_else(ApiError::internal)?;
    Ok((key, public))
}

/// One ed25519 public key of an endpoint.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublicKeyView {
    /// `whpk_` + base64 of the 32-byte ed25519 public key: what receivers verify `v1a,`
    /// signatures with.
    public_key: String,
    created_at: String,
    /// Set during a rotation's grace: until then this key signs too.
    expires_at: Option<String>,
}

/// The endpoint's active ed25519 public keys (`standard-webhooks-v1a`), newest first: during a
/// rotation's grace, both keys sign every delivery.
#[utoipa::path(
    get,
    path = "/endpoints/{id}/public-keys",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    responses(
        (status = 200, description = "The public keys", body = super::Listing<PublicKeyView>),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn public_keys(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<super::Listing<PublicKeyView>>> {
    load(&state, &id).await?;
    let records = state
        .store
        .active_secrets(&id, state.clock.now_millis())
        .await?;
    let mut data = Vec::new();
    for r in records
        .into_iter()
        .filter(|r| r.kind == SecretKind::Ed25519)
    {
        let key = state.secrets.open(&r.secret).map_err(|e| {
            tracing::error!(endpoint_id = %id, error = %e, "a signing key cannot be opened");
            ApiError::internal()
        })?;
        let public_key =
            hookwarden_signatures::ed25519_public_key(&key).ok_or_else(ApiError::internal)?;
        data.push(PublicKeyView {
            public_key,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339_opt(r.expires_at),
        });
    }
    Ok(axum::Json(super::Listing { data }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedSigningKey {
    endpoint_id: String,
    /// The new public key (`whpk_…`).
    public_key: String,
    /// Until then the previous keys sign too (RFC 3339).
    previous_keys_expire_at: String,
}

/// Rotates the ed25519 signing key of `standard-webhooks-v1a`; the previous keys keep signing
/// for the grace period (both `v1a,` signatures are sent). The body is optional.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/signing-key/rotate",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    request_body(content = Option<RotateKeyRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new public key", body = RotatedSigningKey),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid request, or the endpoint does not use standard-webhooks-v1a (`VALIDATION_FAILED`)", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_signing_key(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    body: ApiBytes,
) -> ApiResult<impl IntoResponse> {
    let req: RotateKeyRequest = body.json_or_default(|e| {
        ApiError::invalid(
            "VALIDATION_FAILED",
            format!("invalid rotation request: {e}"),
        )
    })?;
    let grace = grace_secs(req.grace_period_seconds)?;
    let ep = load(&state, &id).await?;
    if !ep
        .signature_schemes
        .iter()
        .any(|s| s == Scheme::StandardWebhooksV1a.as_str())
    {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            "the endpoint does not sign with standard-webhooks-v1a",
        ));
    }
    let (key, public_key) = new_signing_key()?;
    let now = state.clock.now_millis();
    let expires = now + i64::try_from(grace * 1000).unwrap_or(i64::MAX);
    if !state
        .store
        .rotate_signing_key(&id, state.secrets.seal(&key), expires, now)
        .await?
    {
        return Err(ApiError::not_found("endpoint"));
    }
    state.dispatcher.endpoints().changed(&id).await;
    state
        .prober
        .changed(&id, crate::probe::Trigger::SecretRotated);
    Ok(axum::Json(RotatedSigningKey {
        endpoint_id: id,
        public_key,
        previous_keys_expire_at: rfc3339(expires),
    }))
}

/// Optional body of a signing-key rotation (empty: the defaults).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RotateKeyRequest {
    /// How long the previous keys keep signing too (default 86400, at most 2592000).
    #[schema(maximum = 2_592_000)]
    grace_period_seconds: Option<u64>,
}

/// Optional body of a secret rotation (empty: the defaults).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RotateRequest {
    /// How long the previous secrets keep signing too (default 86400, at most 2592000).
    #[schema(maximum = 2_592_000)]
    grace_period_seconds: Option<u64>,
    /// Bring your own new secret (`whsec_` + base64 of 24..=64 bytes).
    secret: Option<String>,
}

/// The answer to `POST /endpoints`: the endpoint, with its signing secret (shown only here and
/// on rotation) and its developer payload.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// The signing secret (`whsec_…`).
    secret: String,
    /// With `standard-webhooks-v1a`: the ed25519 public key receivers verify with (`whpk_…`);
    /// also at `GET /endpoints/{id}/public-keys`. The private key never leaves Hookwarden.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    developer_payload: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    endpoint_id: String,
    /// The new signing secret (`whsec_…`).
    secret: String,
    /// Until then the previous secrets sign too (RFC 3339).
    previous_secrets_expire_at: String,
}

/// Rotates the signing secret; the previous secrets keep signing for the grace period. The body
/// is optional.
#[utoipa::path(
    post,
    path = "/endpoints/{id}/secret/rotate",
    tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id (`ep_…`)")),
    request_body(content = Option<RotateRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 404, description = "No such endpoint (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid request (`VALIDATION_FAILED`, `INVALID_SECRET`)", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_secret(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    body: ApiBytes,
) -> ApiResult<impl IntoResponse> {
    // The body is optional: empty or `null` means the defaults.
    let req: RotateRequest = body.json_or_default(|e| {
        ApiError::invalid(
            "VALIDATION_FAILED",
            format!("invalid rotation request: {e}"),
        )
    })?;
    let grace = grace_secs(req.grace_period_seconds)?;
    let secret = match req.secret {
        Some(s) => {
            validate_custom_secret(&s)?;
            s
        }
        None => crypto::new_signing_secret(),
    };
    let now = state.clock.now_millis();
    let expires = now + i64::try_from(grace * 1000).unwrap_or(i64::MAX);
    if !state
        .store
        .rotate_secret(&id, state.secrets.seal(&secret), expires, now)
        .await?
    {
        return Err(ApiError::not_found("endpoint"));
    }
    state.dispatcher.endpoints().changed(&id).await;
    state
        .prober
        .changed(&id, crate::probe::Trigger::SecretRotated);
    Ok(axum::Json(RotatedSecret {
        endpoint_id: id,
        secret,
        previous_secrets_expire_at: rfc3339(expires),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules() {
        let ok = BTreeMap::from([("X-Customer-Waf".to_string(), "allow-hookwarden".to_string())]);
        assert_eq!(
            validate_headers(ok).unwrap().keys().next().unwrap(),
            "x-customer-waf"
        );
        for bad in [
            "Host",
            "content-length",
            "Webhook-Signature",
            "x-hookwarden-attempt",
            "proxy-authorization",
            "Content-Encoding",
            "content-md5",
            "content-range",
            "content-language",
            "bad header",
            "",
        ] {
            let m = BTreeMap::from([(bad.to_string(), "v".to_string())]);
            assert!(validate_headers(m).is_err(), "{bad}");
        }
        let m = BTreeMap::from([("x-a".to_string(), "line\r\nInjected: 1".to_string())]);
        assert!(validate_headers(m).is_err());
        let m = BTreeMap::from([("x-a".to_string(), "a".repeat(2000))]);
        assert!(validate_headers(m).is_err());
        let dup = BTreeMap::from([
            ("X-A".to_string(), "1".to_string()),
            ("x-a".to_string(), "2".to_string()),
        ]);
        assert!(validate_headers(dup).is_err());
    }

    #[test]
    fn event_type_rules() {
        assert!(validate_event_type("invoice.paid").is_ok());
        assert!(validate_event_type("a/b:c-d_e").is_ok());
        for bad in ["", "has space", "émoji", "a\nb", &"x".repeat(129)] {
            assert!(validate_event_type(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_event_types(vec!["b".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        // Trailing wildcards after a dot; `*` alone is every type (the empty list).
        assert_eq!(
            validate_event_types(vec!["invoice.*".into(), "a.b.*".into()]).unwrap(),
            vec!["a.b.*", "invoice.*"]
        );
        assert!(
            validate_event_types(vec!["x".into(), "*".into()])
                .unwrap()
                .is_empty()
        );
        for bad in ["invoice*", "*.paid", "in*voice", ".*", "a.**", "a.*.b"] {
            assert!(validate_event_types(vec![bad.into()]).is_err(), "{bad}");
        }
        // An event itself never has a wildcard type.
        assert!(validate_event_type("invoice.*").is_err());
    }

    #[test]
    fn scheme_and_secret_rules() {
        assert_eq!(
            validate_schemes(vec!["hub-sha1".into(), "hub-sha1".into()]).unwrap(),
            vec!["hub-sha1"]
        );
        assert!(validate_schemes(vec![]).is_err());
        assert!(validate_schemes(vec!["md5".into()]).is_err());
        assert!(validate_custom_secret(&crypto::new_signing_secret()).is_ok());
        assert!(validate_custom_secret("whsec_c2hvcnQ=").is_err());
        assert!(validate_custom_secret("nope").is_err());
    }

    #[test]
    fn masked_values_sent_back_keep_the_secret() {
        let old: BTreeMap<String, String> = [
            (
                "Authorization".to_string(),
                "Bearer s3cret-value".to_string(),
            ),
            ("X-Tenant".to_string(), "acme".to_string()),
        ]
        .into();
        let new: BTreeMap<String, String> = [
            ("authorization".to_string(), mask("Bearer s3cret-value")),
            ("X-Tenant".to_string(), "****".to_string()),
        ]
        .into();
        let got = keep_masked(new, &old);
        assert_eq!(got["authorization"], "Bearer s3cret-value");
        // Not sensitive: the value is taken as typed.
        assert_eq!(got["X-Tenant"], "****");
        // A different mask is a new value.
        let new: BTreeMap<String, String> =
            [("Authorization".to_string(), "****zzzz".to_string())].into();
        assert_eq!(keep_masked(new, &old)["Authorization"], "****zzzz");
    }

    #[test]
    fn sensitive_headers_are_masked() {
        assert_eq!(mask("Bearer abcdefghijkl"), "****ijkl");
        assert_eq!(mask("short"), "****");
        assert!(is_sensitive_header("Authorization"));
        assert!(is_sensitive_header("X-Api-Key"));
        assert!(!is_sensitive_header("X-Customer-Waf"));
        // Anywhere in the name, in any case.
        assert!(is_sensitive_header("x-hub-signature-256"));
        assert!(is_sensitive_header("X-SESSION-TOKEN"));
        assert!(is_sensitive_header("set-Cookie"));
        assert!(is_sensitive_header("KEY"));
        assert!(!is_sensitive_header("ke"));
        assert!(!is_sensitive_header(""));
        assert!(!is_sensitive_header("webhook-id"));
    }

    /// The one-pass check says what searching the name for each word says, for names with and
    /// without the words, at every position, in any case, and cut short.
    #[test]
    fn the_sensitive_header_check_matches_a_plain_search() {
        const SENSITIVE_WORDS: [&str; 7] = [
            "auth",
            "cookie",
            "token",
            "secret",
            "signature",
            "key",
            "password",
        ];
        let reference = |name: &str| {
            let n = name.to_ascii_lowercase();
            SENSITIVE_WORDS.iter().any(|w| n.contains(w))
        };
        let mut names: Vec<String> = [
            "content-type",
            "user-agent",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "X-Hub-Signature-256",
            "x-hookwarden-auth-date",
            "Authorization",
            "X-API-KEY",
            "x-monkey",
            "passwor",
            "x-passWord-hint",
            "cookiejar",
            "s",
            "sig",
            "secre",
            "tok",
            "",
            "k",
            "ke",
            "AUTH",
            "x-tokenized",
            "set-cookie",
            "x-customer-waf",
            "x-sign",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for w in SENSITIVE_WORDS {
            for pre in ["", "x-", "a", "ss", "KK-"] {
                for post in ["", "-1", "s", "x"] {
                    names.push(format!("{pre}{w}{post}"));
                    names.push(format!("{pre}{}{post}", w.to_ascii_uppercase()));
                    names.push(format!("{pre}{}{post}", &w[..w.len() - 1]));
                    names.push(format!("{pre}{}{post}", &w[1..]));
                }
            }
        }
        for name in &names {
            assert_eq!(is_sensitive_header(name), reference(name), "{name:?}");
        }
    }
}
