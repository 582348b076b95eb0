//! Public security information (no API key): the egress ranges receivers allow-list and the
//! client certificates they pin.

use super::extract::ApiQuery;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::times::rfc3339;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hookwarden_store::{CertificateStatus, Page};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// At most this many certificates are published.
const MAX_PUBLISHED: usize = 1000;

/// How long one reading of the published certificates serves every request: an unauthenticated
/// route must not cost a database scan per request.
const PUBLISHED_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The published certificates, read at most once per [`PUBLISHED_TTL`] (concurrent requests
/// wait for the one reading in progress).
#[derive(Default)]
pub struct PublishedCache {
    /// Bumped by every change of the certificates: a reading made before it is stale.
    generation: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<(std::time::Instant, u64, Arc<PublishedCertificates>)>>,
}

/// Public routes: no API key (and no security requirement in the OpenAPI document).
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(egress_ips))
        .routes(routes!(client_certificates))
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatQuery {
    /// `text`: one range per line (`text/plain`); anything else: JSON.
    format: Option<String>,
}

/// `{"ranges": [...], "updated_at": "..."}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct EgressIps {
    /// CIDR ranges deliveries leave from.
    ranges: Vec<String>,
    /// RFC 3339.
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PublishedCertificates {
    certificates: Vec<PublishedCertificate>,
}

impl PublishedCache {
    /// Forgets the last reading (a certificate was added, retired or deleted, here or on
    /// another instance).
    pub fn clear(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    async fn get(&self, state: &AppState) -> ApiResult<Arc<PublishedCertificates>> {
        let mut last = self.last.lock().await;
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some((at, g, v)) = last.as_ref()
            && *g == generation
            && at.elapsed() < PUBLISHED_TTL
        {
            return Ok(v.clone());
        }
        let v = Arc::new(read_published(state).await?);
        *last = Some((std::time::Instant::now(), generation, v.clone()));
        Ok(v)
    }
}

fn wants_text(q: &FormatQuery, headers: &HeaderMap) -> bool {
    match q.format.as_deref() {
        Some(f) => f.eq_ignore_ascii_case("text"),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json")),
    }
}

fn last_modified(ms: i64) -> Option<HeaderValue> {
    let t = crate::times::system_time(ms)?;
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok()
}

/// `GET /api/v1/security/egress-ips`: `{"ranges": [...], "updated_at": "..."}`, or one range
/// per line with `?format=text` or `Accept: text/plain`.
#[utoipa::path(
    get,
    path = "/security/egress-ips",
    tag = "security",
    params(FormatQuery),
    responses(
        (status = 200, description = "The published egress ranges (with `Last-Modified`)",
            content(
                (EgressIps = "application/json"),
                (String = "text/plain; charset=utf-8"),
            )),
    )
)]
pub(crate) async fn egress_ips(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<FormatQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let stored = state.certs.published_ranges().await?;
    let (ranges, updated_at) = match stored {
        Some(p) => (p.ranges, p.updated_at),
        None => (Vec::new(), state.clock.now_millis()),
    };
    let mut resp = if wants_text(&q, &headers) {
        let mut body = ranges.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    } else {
        axum::Json(EgressIps {
            ranges,
            updated_at: rfc3339(updated_at),
        })
        .into_response()
    };
    if let Some(lm) = last_modified(updated_at) {
        resp.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PublishedCertificate {
    id: String,
    subject: String,
    issuer: String,
    serial: String,
    sha256: String,
    sha1: String,
    not_before: String,
    not_after: String,
    /// `active` or `retiring`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// `GET /api/v1/security/client-certificates`: every certificate not deleted (active and
/// retiring), with thumbprints for pinning.
#[utoipa::path(
    get,
    path = "/security/client-certificates",
    tag = "security",
    responses((status = 200, description = "Certificates receivers may pin (at most 1000)",
        body = PublishedCertificates))
)]
pub(crate) async fn client_certificates(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let published = state.published_certs.get(&state).await?;
    Ok(axum::Json(&*published).into_response())
}

async fn read_published(state: &AppState) -> ApiResult<PublishedCertificates> {
    let mut out = Vec::new();
    let mut before = None;
    // Bounded: every round adds at least one certificate or ends the loop.
    while out.len() < MAX_PUBLISHED {
        let rows = state
            .certs
            .list_certificates(
                Page::new(before.clone(), 250).with_max_bytes(state.config.server.max_page_bytes),
            )
            .await?;
        let more = rows.more && !rows.is_empty();
        before = rows.last().map(|c| c.id.clone());
        out.extend(rows.into_iter().map(|c| PublishedCertificate {
            status: match c.status {
                CertificateStatus::Active => "active",
                CertificateStatus::Retiring => "retiring",
            },
            id: c.id,
            subject: c.subject,
            issuer: c.issuer,
            serial: c.serial,
            sha256: c.sha256,
            sha1: c.sha1,
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
        }));
        if !more {
            break;
        }
    }
    out.truncate(MAX_PUBLISHED);
    Ok(PublishedCertificates { certificates: out })
}
