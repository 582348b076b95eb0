//! `POST /in/{token}`: the ingest route.
//!
//! Checks, in this order, each refusal with its own stable code:
//!
//! | check | status | code |
//! |---|---|---|
//! | token unknown (or rotated out) | 404 | `WEBHOOK_NOT_FOUND` |
//! | token revoked | 410 | `WEBHOOK_REVOKED` |
//! | plain HTTP while HTTPS is required | 403 | `HTTPS_REQUIRED` |
//! | client address not in the allowlist | 403 | `IP_NOT_ALLOWED` |
//! | body over `inbound.max_body_bytes` | 413 | `PAYLOAD_TOO_LARGE` |
//! | signature missing or invalid | 401 | `SIGNATURE_INVALID` |
//! | signed timestamp outside the tolerance | 401 | `TIMESTAMP_OUT_OF_TOLERANCE` |
//! | message already accepted within the replay window | 409 | `REPLAYED` |
//!
//! then a provider handshake is answered (200) or the event is stored with its audit entry and
//! routed (202 `{"success": true, "id": "evt_…"}`). A source that cannot be used (a secret that
//! cannot be decrypted, no secret for a preset that needs one) answers 503
//! `SOURCE_MISCONFIGURED`, so that providers retry once the operator has fixed it.

use super::Inbound;
use super::cache::{LookupError, SourceRuntime};
use super::token;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::tls::ConnectionTls;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hookwarden_signatures::inbound::{InboundErrorKind, handshake_response, verify_inbound};
use hookwarden_store::{AcceptOutcome, InboundAccept, NewAuditEntry, NewEvent, SeenKey};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Longest user agent kept in the audit log.
const MAX_USER_AGENT: usize = 256;
/// Longest payload kept in the audit log (when the source logs payloads).
const MAX_LOGGED_PAYLOAD: usize = 64 * 1024;

struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    reason: Option<String>,
}

fn refusal(status: StatusCode, code: &'static str, message: &'static str) -> Refusal {
    Refusal {
        status,
        code,
        message,
        reason: None,
    }
}

impl Refusal {
    fn because(mut self, reason: impl Into<String>) -> Refusal {
        self.reason = Some(reason.into());
        self
    }
}

fn not_found() -> Refusal {
    refusal(
        StatusCode::NOT_FOUND,
        "WEBHOOK_NOT_FOUND",
        "Webhook not found",
    )
}

fn misconfigured() -> Refusal {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "SOURCE_MISCONFIGURED",
        "This webhook source is misconfigured; the operator has been told",
    )
}

fn unavailable() -> Refusal {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        "Temporarily unavailable, retry later",
    )
}

/// What one request has told us so far, for its audit entry.
struct Ctx {
    started: Instant,
    entry: NewAuditEntry,
}

/// The answer to an accepted webhook.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `true`.
    success: bool,
    /// The event made from it (`evt_…`).
    id: String,
}

/// Receives a webhook on a source's secret URL: checks (in order) the token, HTTPS, the
/// allowlist, the body size, the signature and timestamp, and replays; every request is audited.
#[utoipa::path(
    post,
    path = "/in/{token}",
    tag = "inbound",
    params(("token" = String, Path, description = "The secret token of the source's URL")),
    request_body(
        description = "The provider's webhook, verified byte for byte as received",
        content(
            (Value = "application/json"),
            (HashMap<String, String> = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 202, description = "Accepted and stored as an event", body = Accepted),
        (status = 200, description = "A provider handshake, answered as the provider expects",
            content((Value = "application/json"), (String = "text/plain"))),
        (status = 400, description = "The body could not be read (`BODY_READ_FAILED`)", body = ErrorBody),
        (status = 401, description = "`SIGNATURE_INVALID` or `TIMESTAMP_OUT_OF_TOLERANCE`", body = ErrorBody),
        (status = 403, description = "`HTTPS_REQUIRED` or `IP_NOT_ALLOWED`", body = ErrorBody),
        (status = 404, description = "Unknown or rotated-out token (`WEBHOOK_NOT_FOUND`)", body = ErrorBody),
        (status = 408, description = "The body took too long to arrive (`BODY_TIMEOUT`)", body = ErrorBody),
        (status = 409, description = "Already accepted within the replay window (`REPLAYED`)", body = ErrorBody),
        (status = 410, description = "Revoked (`WEBHOOK_REVOKED`)", body = ErrorBody),
        (status = 413, description = "Body over `inbound.max_body_bytes` (`PAYLOAD_TOO_LARGE`)", body = ErrorBody),
        (status = 503, description = "`SOURCE_MISCONFIGURED` or `UNAVAILABLE`: retry later", body = ErrorBody),
    )
)]
pub async fn ingest(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let inbound = state.inbound.clone();
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let tls = parts.extensions.get::<ConnectionTls>().is_some_and(|t| t.0);
    let raw_token = parts.uri.path().rsplit('/').next().unwrap_or("");
    let client_ip = inbound.client_ip.client_ip(peer.ip(), &parts.headers);
    let mut ctx = Ctx {
        started: Instant::now(),
        entry: NewAuditEntry {
            token_prefix: token::display_prefix(raw_token),
            received_at: inbound.clock.now_millis(),
            client_ip: Some(client_ip.to_string()),
            peer_addr: peer.to_string(),
            // Any bytes the HTTP parser let through (UTF-8 or not) are recorded, lossily.
            user_agent: parts.headers.get(header::USER_AGENT).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(MAX_USER_AGENT)
                    .collect()
            }),
            tls,
            count: 1,
            ..Default::default()
        },
    };
    match check_and_accept(
        &state, &inbound, &mut ctx, &parts, body, raw_token, peer, client_ip,
    )
    .await
    {
        Ok(resp) => resp,
        Err(r) => {
            let resp = ApiError::new(r.status, r.code, r.message).into_response();
            ctx.entry.outcome = r.code.to_owned();
            ctx.entry.reason = r.reason;
            ctx.entry.status = r.status.as_u16();
            record(&inbound, ctx).await;
            resp
        }
    }
}

/// Writes a non-accepted entry (through flood control), counts and logs it.
async fn record(inbound: &Inbound, mut ctx: Ctx) {
    ctx.entry.latency_us = i64::try_from(ctx.started.elapsed().as_micros()).unwrap_or(i64::MAX);
    observe(inbound, &ctx.entry, None);
    if let Some(e) = inbound.audit.admit(ctx.entry)
        && let Err(err) = inbound.store.insert_audit(vec![e]).await
    {
        warn!(error = %err, "could not write an inbound audit entry");
    }
}

/// Counts, logs and feeds the usage alerts: once per request, whatever its outcome. `counter`:
/// the request's series of `hookwarden_inbound_requests_total` when the caller holds it.
fn observe(inbound: &Inbound, e: &NewAuditEntry, counter: Option<&metrics::Counter>) {
    if let (Some(alerts), Some(source_id)) = (&inbound.alerts, &e.source_id) {
        alerts.observe_ingest(
            source_id,
            e.outcome == "IP_NOT_ALLOWED",
            e.client_ip.as_deref(),
        );
    }
    let source = e.source_id.as_deref().unwrap_or("unknown");
    match counter {
        Some(c) => c.increment(1),
        None => metrics::counter!(
            "hookwarden_inbound_requests_total",
            "source" => source.to_owned(),
            "outcome" => e.outcome.clone(),
        )
        .increment(1),
    }
    inbound
        .latency_histogram()
        .record(e.latency_us as f64 / 1_000_000.0);
    let fields = (
        source,
        e.outcome.as_str(),
        e.status,
        e.client_ip.as_deref().unwrap_or(""),
    );
    if e.status < 300 {
        info!(
            source = %fields.0, outcome = fields.1, status = fields.2, client_ip = fields.3,
            peer = %e.peer_addr, token = %e.token_prefix, reason = e.reason.as_deref(),
            body_bytes = e.body_bytes, latency_us = e.latency_us, tls = e.tls,
            event_id = e.event_id.as_deref(), "inbound request"
        );
    } else {
        debug!(
            source = %fields.0, outcome = fields.1, status = fields.2, client_ip = fields.3,
            peer = %e.peer_addr, token = %e.token_prefix, reason = e.reason.as_deref(),
            body_bytes = e.body_bytes, latency_us = e.latency_us, tls = e.tls,
            "inbound request refused"
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_and_accept(
    state: &AppState,
    inbound: &Inbound,
    ctx: &mut Ctx,
    parts: &http::request::Parts,
    body: Body,
    raw_token: &str,
    peer: SocketAddr,
    client_ip: IpAddr,
) -> Result<Response, Refusal> {
    let now = ctx.entry.received_at;
    let tls = ctx.entry.tls;
    // 1. The token: anything not shaped like one cannot match and is not looked up.
    if !token::well_formed(raw_token) {
        return Err(not_found().because("TOKEN_MALFORMED"));
    }
    let rt = match inbound
        .cache
        .lookup(token::hash(raw_token), &*inbound.store, &inbound.secrets)
        .await
    {
        Ok(Some(rt)) => rt,
        Ok(None) => return Err(not_found().because("TOKEN_UNKNOWN")),
        Err(LookupError::Store(e)) => {
            warn!(error = %e, "inbound source lookup failed");
            return Err(unavailable().because("STORE_ERROR"));
        }
        Err(e @ LookupError::Unusable { .. }) => {
            warn!(error = %e, "inbound source is unusable");
            if let LookupError::Unusable { source_id, .. } = e {
                ctx.entry.source_id = Some(source_id);
            }
            return Err(misconfigured().because("SOURCE_UNUSABLE"));
        }
    };
    ctx.entry.source_id = Some(rt.source_id.clone());
    // 2. Revoked, or rotated out.
    if rt.token.revoked_at.is_some_and(|at| at <= now) {
        return Err(refusal(
            StatusCode::GONE,
            "WEBHOOK_REVOKED",
            "Webhook has been revoked",
        ));
    }
    if !rt.token.live_at(now) {
        return Err(not_found().because("TOKEN_EXPIRED"));
    }
    // 3. HTTPS.
    let peer_ip = peer.ip().to_canonical();
    let peer_trusted = inbound.trusted.contains(peer_ip);
    let proxied_https = peer_trusted
        && forwarded_https(
            &parts.headers,
            inbound
                .client_ip
                .headers
                .contains(&hookwarden_netguard::ForwardedHeader::Forwarded),
        );
    if inbound.https_required && !tls && !proxied_https {
        let loopback_dev =
            inbound.config.allow_loopback_http && peer_ip.is_loopback() && !peer_trusted;
        if !loopback_dev {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "HTTPS_REQUIRED",
                "HTTPS is required",
            ));
        }
    }
    // 4. The allowlist.
    if !rt.allowlist.is_empty() && !rt.allowlist.contains(client_ip) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "IP_NOT_ALLOWED",
            "Client IP address is not allowed",
        ));
    }
    // 5. The body, bounded.
    // Bounded a little below the request timeout, so that a slow body is refused (and
    // audited) rather than cut off with the handler.
    let read_limit = std::time::Duration::from_secs(
        state
            .config
            .server
            .request_timeout_secs
            .saturating_sub(1)
            .max(1),
    );
    let body = read_body(inbound, ctx, &parts.headers, body, read_limit).await?;
    ctx.entry.body_bytes = body.len() as i64;
    if rt.log_payloads {
        ctx.entry.payload = Some(Arc::from(logged_prefix(&body)));
    }
    // 6–7. Signature, then timestamp.
    let secrets = rt.secret_refs();
    let url = if rt.preset.uses_url() {
        request_url(inbound, parts, tls || proxied_https)
    } else {
        String::new()
    };
    let info = match verify_inbound(
        &rt.preset,
        &secrets,
        &url,
        &parts.headers,
        &body,
        now / 1000,
    ) {
        Ok(info) => info,
        Err(e) => {
            return Err(match e.kind() {
                InboundErrorKind::Config => {
                    warn!(source = %rt.source_id, error = %e, "inbound source cannot verify");
                    misconfigured().because(e.reason())
                }
                InboundErrorKind::TimestampOutOfTolerance => refusal(
                    StatusCode::UNAUTHORIZED,
                    "TIMESTAMP_OUT_OF_TOLERANCE",
                    "Timestamp is outside the tolerance window",
                )
                .because(e.reason()),
                InboundErrorKind::SignatureInvalid => refusal(
                    StatusCode::UNAUTHORIZED,
                    "SIGNATURE_INVALID",
                    "Signature missing or invalid",
                )
                .because(e.reason()),
            });
        }
    };
    ctx.entry.message_id = info.message_id.clone();
    // Provider handshakes (after the signature was verified).
    if let Some(h) = handshake_response(&rt.preset, &secrets, &body, &parts.headers) {
        ctx.entry.outcome = "HANDSHAKE".into();
        ctx.entry.status = 200;
        let entry = std::mem::take(&mut ctx.entry);
        record(
            inbound,
            Ctx {
                started: ctx.started,
                entry,
            },
        )
        .await;
        return Ok(([(header::CONTENT_TYPE, h.content_type)], h.body).into_response());
    }
    // 8. Replay, and acceptance, in one transaction.
    accept(state, inbound, ctx, &rt, &parts.headers, &body, &info).await
}

/// What the audit log keeps of a body: its bytes as received, up to [`MAX_LOGGED_PAYLOAD`]; a
/// text body cut inside a character is cut before that character, so that it still reads as
/// text.
fn logged_prefix(body: &[u8]) -> &[u8] {
    if body.len() <= MAX_LOGGED_PAYLOAD {
        return body;
    }
    let cut = &body[..MAX_LOGGED_PAYLOAD];
    match std::str::from_utf8(cut) {
        Err(e) if e.error_len().is_none() => &cut[..e.valid_up_to()],
        _ => cut,
    }
}

/// Whether the right-most `X-Forwarded-Proto` (the one the nearest proxy set) is `https`; with
/// `rfc7239` (the operator reads `Forwarded`), also when the right-most `Forwarded` element says
/// `proto=https`.
pub(crate) fn forwarded_https(headers: &HeaderMap, rfc7239: bool) -> bool {
    let last = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
    };
    let xfp = last("x-forwarded-proto")
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    xfp || (rfc7239
        && last("forwarded")
            .and_then(|v| hookwarden_netguard::forwarded_last_param(v, "proto"))
            .is_some_and(|p| p.eq_ignore_ascii_case("https")))
}

async fn read_body(
    inbound: &Inbound,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    body: Body,
    read_limit: std::time::Duration,
) -> Result<bytes::Bytes, Refusal> {
    let max = inbound.config.max_body_bytes;
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body is too large",
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        && len > max as u64
    {
        ctx.entry.body_bytes = i64::try_from(len).unwrap_or(i64::MAX);
        return Err(too_large().because("CONTENT_LENGTH"));
    }
    let collected = tokio::time::timeout(
        read_limit,
        http_body_util::Limited::new(body, max).collect(),
    )
    .await;
    let Ok(collected) = collected else {
        return Err(refusal(
            StatusCode::REQUEST_TIMEOUT,
            "BODY_TIMEOUT",
            "The request body took too long to arrive",
        ));
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            ctx.entry.body_bytes = max as i64 + 1;
            Err(too_large().because("BODY_LIMIT"))
        }
        Err(_) => Err(refusal(
            StatusCode::BAD_REQUEST,
            "BODY_READ_FAILED",
            "The request body could not be read",
        )),
    }
}

/// The public URL the provider called (Twilio signs it): `server.public_url` + path and query,
/// or, without it, the scheme and `Host` of the request.
fn request_url(inbound: &Inbound, parts: &http::request::Parts, https: bool) -> String {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| parts.uri.path());
    if let Some(base) = &inbound.public_url {
        return format!("{base}{pq}");
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}{pq}")
}

/// The event payload: the body when it is JSON; otherwise a JSON object carrying it (as text
/// when it is UTF-8, else base64) with its content type.
pub fn event_payload(body: &[u8], content_type: Option<&str>) -> String {
    if let Ok(raw) = serde_json::from_slice::<Box<serde_json::value::RawValue>>(body) {
        return Box::<str>::from(raw).into_string();
    }
    let ct = content_type.map(str::to_owned);
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::json!({"content_type": ct, "body": text}).to_string(),
        Err(_) => serde_json::json!({
            "content_type": ct,
            "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
        })
        .to_string(),
    }
}

/// The replay key of an accepted request: its signed message id when the scheme signs one;
/// otherwise the signed timestamp and the body (a captured request replayed as is).
fn seen_key(
    rt: &SourceRuntime,
    info: &hookwarden_signatures::inbound::VerifiedInfo,
    body: &[u8],
    now: i64,
) -> Option<SeenKey> {
    if rt.replay_window_ms <= 0 {
        return None;
    }
    let mut h = Sha256::new();
    match (&info.message_id, info.message_id_signed) {
        (Some(id), true) => {
            h.update(b"id\0");
            h.update(id.as_bytes());
        }
        _ => {
            h.update(b"content\0");
            h.update(info.timestamp.unwrap_or(0).to_be_bytes());
            h.update(body);
        }
    }
    // The key lives for the replay window, and at least until the signed timestamp it was
    // accepted with falls out of tolerance: a replay inside the tolerance is always refused,
    // whatever the window (and whichever way the sender's clock is off).
    let mut expires_at = now.saturating_add(rt.replay_window_ms);
    if let (Some(ts), Some(tol)) = (info.timestamp, rt.preset.tolerance_secs()) {
        let acceptable_until = ts
            .saturating_add(i64::from(tol))
            .saturating_add(1)
            .saturating_mul(1000);
        expires_at = expires_at.max(acceptable_until);
    }
    Some(SeenKey {
        key_hash: h.finalize().into(),
        expires_at,
    })
}

async fn accept(
    state: &AppState,
    inbound: &Inbound,
    ctx: &mut Ctx,
    rt: &SourceRuntime,
    headers: &HeaderMap,
    body: &[u8],
    info: &hookwarden_signatures::inbound::VerifiedInfo,
) -> Result<Response, Refusal> {
    let now = ctx.entry.received_at;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = NewEvent {
        id: crate::crypto::new_id("evt"),
        event_type: rt.event_type.clone(),
        payload: event_payload(body, content_type),
        idempotency_key: None,
        created_at: now,
        source_id: Some(rt.source_id.clone()),
        only_endpoints: None,
    };
    let seen = seen_key(rt, info, body, now);
    // Taken for the accepted entry; put back if the request is refused after all (the
    // refusal is audited from it, with its own outcome, status and latency).
    let mut entry = std::mem::take(&mut ctx.entry);
    entry.outcome = "ACCEPTED".into();
    entry.status = 202;
    entry.latency_us = i64::try_from(ctx.started.elapsed().as_micros()).unwrap_or(i64::MAX);
    let outcome = inbound
        .store
        .accept_inbound(InboundAccept {
            event,
            route: rt.route.clone(),
            seen,
            audit: entry.clone(),
        })
        .await;
    match outcome {
        Ok(AcceptOutcome::Accepted {
            event_id,
            deliveries,
            ..
        }) => {
            if deliveries > 0 {
                state.dispatcher.wake();
            }
            entry.event_id = Some(event_id.clone());
            // The metric counts the whole request, commit included (the audit entry, written
            // by that commit, can only hold the time to the decision).
            entry.latency_us = i64::try_from(ctx.started.elapsed().as_micros()).unwrap_or(i64::MAX);
            observe(inbound, &entry, Some(rt.accepted_counter()));
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(Accepted {
                    success: true,
                    id: event_id,
                }),
            )
                .into_response())
        }
        Ok(AcceptOutcome::Replayed) => {
            ctx.entry = entry;
            let reason = if info.message_id_signed && info.message_id.is_some() {
                "DUPLICATE_MESSAGE_ID"
            } else {
                "DUPLICATE_CONTENT"
            };
            Err(refusal(
                StatusCode::CONFLICT,
                "REPLAYED",
                "This message has already been received",
            )
            .because(reason))
        }
        Err(e) => {
            ctx.entry = entry;
            warn!(error = %e, source = %rt.source_id, "could not store an inbound event");
            Err(unavailable().because("STORE_ERROR"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replay key outlives the tolerance of the timestamp it was accepted with, whatever
    /// the window: a capture replayed after the window but inside the tolerance is refused.
    #[test]
    fn replay_keys_live_until_the_timestamp_is_out_of_tolerance() {
        let source = hookwarden_store::Source {
            id: "src_1".into(),
            name: "n".into(),
            verification: r#"{"type":"stripe","tolerance_secs":3600}"#.into(),
            secrets: vec!["whsec_x".into()],
            allowed_cidrs: vec![],
            replay_window_secs: 300,
            log_payloads: false,
            forward_to: vec![],
            event_type: "inbound.stripe".into(),
            created_at: 0,
            updated_at: 0,
        };
        let token = hookwarden_store::SourceToken {
            prefix: "wh_x".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        let rt =
            super::super::cache::runtime(&source, token, &crate::crypto::SecretBox::ephemeral())
                .unwrap();
        let now_s = 1_800_000_000i64;
        let info = |ts: Option<i64>| hookwarden_signatures::inbound::VerifiedInfo {
            message_id: Some("evt_1".into()),
            timestamp: ts,
            message_id_signed: true,
        };
        let k = seen_key(&rt, &info(Some(now_s)), b"{}", now_s * 1000).unwrap();
        assert!(k.expires_at > (now_s + 3600) * 1000, "{}", k.expires_at);
        // A sender whose clock is ahead: acceptable until its timestamp plus the tolerance.
        let k = seen_key(&rt, &info(Some(now_s + 3000)), b"{}", now_s * 1000).unwrap();
        assert!(k.expires_at > (now_s + 6600) * 1000);
        // No timestamp: the window alone.
        let k = seen_key(&rt, &info(None), b"{}", now_s * 1000).unwrap();
        assert_eq!(k.expires_at, now_s * 1000 + 300_000);
    }

    #[test]
    fn payloads_are_json_or_wrapped() {
        assert_eq!(event_payload(br#" {"a":1} "#, None), r#"{"a":1}"#);
        let v: serde_json::Value = serde_json::from_str(&event_payload(
            b"a=1&b=2",
            Some("application/x-www-form-urlencoded"),
        ))
        .unwrap();
        assert_eq!(v["body"], "a=1&b=2");
        assert_eq!(v["content_type"], "application/x-www-form-urlencoded");
        let v: serde_json::Value =
            serde_json::from_str(&event_payload(&[0xff, 0x00], None)).unwrap();
        assert_eq!(v["body_base64"], "/wA=");
        let v: serde_json::Value = serde_json::from_str(&event_payload(b"", None)).unwrap();
        assert_eq!(v["body"], "");
    }

    #[test]
    fn logged_payloads_are_the_bytes_received() {
        assert_eq!(logged_prefix(b""), b"");
        assert_eq!(logged_prefix(b"\0\xff"), b"\0\xff");
        let big = vec![0xffu8; MAX_LOGGED_PAYLOAD + 10];
        assert_eq!(logged_prefix(&big), &big[..MAX_LOGGED_PAYLOAD]);
        // Text cut inside a character keeps whole characters only.
        let mut text = vec![b'a'; MAX_LOGGED_PAYLOAD - 1];
        text.extend_from_slice("\u{e9}\u{e9}".as_bytes());
        let kept = logged_prefix(&text);
        assert_eq!(kept.len(), MAX_LOGGED_PAYLOAD - 1);
        assert!(std::str::from_utf8(kept).is_ok());
    }

    #[test]
    fn forwarded_proto_uses_the_nearest_proxy() {
        let mut h = HeaderMap::new();
        assert!(!forwarded_https(&h, true));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(forwarded_https(&h, false));
        h.insert("x-forwarded-proto", "https, http".parse().unwrap());
        assert!(!forwarded_https(&h, false));
        h.insert("x-forwarded-proto", "http, HTTPS".parse().unwrap());
        assert!(forwarded_https(&h, false));
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=1.2.3.4;proto=http, for=10.0.0.1;proto=https"
                .parse()
                .unwrap(),
        );
        assert!(forwarded_https(&h, true));
        assert!(
            !forwarded_https(&h, false),
            "only when the operator reads Forwarded"
        );
        h.insert(
            "forwarded",
            "proto=https, for=10.0.0.1;proto=http".parse().unwrap(),
        );
        assert!(!forwarded_https(&h, true));
    }
}
