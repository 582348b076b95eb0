//! `/api/v1/client-certificates`: client certificates presented to endpoints (mTLS). Private
//! keys are accepted (or generated) here and never returned.

use super::extract::{ApiJson, ApiPath, ApiQuery, Id};
use super::{PageQuery, Paged, paged};
use crate::certs::{self, GenerateRequest};
use crate::crypto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::times::{rfc3339, rfc3339_opt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hookwarden_store::{CertificateDeletion, CertificateStatus, ClientCertificate};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

const MAX_NAME: usize = 200;

/// Either `certificate_pem` and `private_key_pem`, or `generate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateCertificate {
    #[serde(default)]
    name: Option<String>,
    /// Upload: the chain in PEM, leaf first…
    #[serde(default)]
    certificate_pem: Option<String>,
    /// …and the leaf's private key in PEM.
    #[serde(default)]
    private_key_pem: Option<String>,
    /// Or: generate a self-signed certificate.
    #[serde(default)]
    generate: Option<GenerateRequest>,
}

/// What the admin API shows (never the private key).
#[derive(Serialize, ToSchema)]
#[schema(as = ClientCertificate)]
pub(super) struct CertificateView {
    id: String,
    name: String,
    /// `active` or `retiring`.
    #[schema(value_type = String)]
    status: &'static str,
    subject: String,
    issuer: String,
    serial: String,
    sha256: String,
    sha1: String,
    not_before: String,
    not_after: String,
    generated: bool,
    certificate_pem: String,
    created_at: String,
    retired_at: Option<String>,
}

impl From<ClientCertificate> for CertificateView {
    fn from(c: ClientCertificate) -> Self {
        CertificateView {
            id: c.id,
            name: c.name,
            status: c.status.as_str(),
            subject: c.subject,
            issuer: c.issuer,
            serial: c.serial,
            sha256: c.sha256,
            sha1: c.sha1,
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            generated: c.generated,
            certificate_pem: c.certificate_pem,
            created_at: rfc3339(c.created_at),
            retired_at: rfc3339_opt(c.retired_at),
        }
    }
}

/// Adds a client certificate: uploaded (chain and key in PEM) or generated (self-signed). The
/// private key is stored encrypted when a master key is configured and never returned.
#[utoipa::path(
    post,
    path = "/client-certificates",
    tag = "client-certificates",
    request_body = CreateCertificate,
    responses(
        (status = 201, description = "Added", body = CertificateView),
        (status = 422, description = "Invalid certificate, key or request (`VALIDATION_FAILED`, `CERTIFICATE_INVALID`, `CERTIFICATE_EXPIRED`, `CERTIFICATE_KEY_MISMATCH`…)", body = ErrorBody),
        (status = 409, description = "Conflict (`CONFLICT`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateCertificate>,
) -> ApiResult<impl IntoResponse> {
    let now = state.clock.now_millis();
    let name = req.name.unwrap_or_default();
    if name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("name must be at most {MAX_NAME} bytes of printable text"),
        ));
    }
    let (cert_pem, key_pem, generated) =
        match (req.generate, req.certificate_pem, req.private_key_pem) {
            (Some(g), None, None) => {
                let (c, k) = certs::generate(&g, now)?;
                (c, k, true)
            }
            (None, Some(c), Some(k)) => (c, k, false),
            _ => {
                return Err(ApiError::invalid(
                    "VALIDATION_FAILED",
                    "give either certificate_pem and private_key_pem, or generate",
                ));
            }
        };
    let info = certs::inspect(&cert_pem, &key_pem, now)?;
    let cert = ClientCertificate {
        id: crypto::new_id("cert"),
        name,
        certificate_pem: cert_pem,
        private_key: state.secrets.seal(&key_pem),
        subject: info.subject,
        issuer: info.issuer,
        serial: info.serial,
        sha256: info.sha256,
        sha1: info.sha1,
        not_before: info.not_before,
        not_after: info.not_after,
        generated,
        status: CertificateStatus::Active,
        created_at: now,
        retired_at: None,
    };
    state.certs.create_certificate(cert.clone()).await?;
    state.published_certs.clear();
    tracing::info!(certificate_id = %cert.id, sha256 = %cert.sha256, generated, "client certificate added");
    Ok((StatusCode::CREATED, axum::Json(CertificateView::from(cert))))
}

#[utoipa::path(
    get,
    path = "/client-certificates",
    tag = "client-certificates",
    params(PageQuery),
    responses((status = 200, description = "A page of client certificates", body = Paged<CertificateView>))
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Paged<CertificateView>>> {
    let page = q.page(state.config.server.max_page_bytes)?;
    let rows = state.certs.list_certificates(page).await?;
    Ok(axum::Json(paged(
        rows,
        |c| c.id.clone(),
        CertificateView::from,
    )))
}

async fn load(state: &AppState, id: &str) -> ApiResult<ClientCertificate> {
    state
        .certs
        .get_certificate(id)
        .await?
        .ok_or_else(|| ApiError::not_found("client certificate"))
}

#[utoipa::path(
    get,
    path = "/client-certificates/{id}",
    tag = "client-certificates",
    params(("id" = String, Path, description = "Client certificate id (`cert_…`)")),
    responses(
        (status = 200, description = "The certificate", body = CertificateView),
        (status = 404, description = "No such certificate (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<CertificateView>> {
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Marks the certificate `retiring`: still presented by the endpoints that use it and still
/// published, but it can no longer be attached. Delete it once no endpoint uses it.
#[utoipa::path(
    post,
    path = "/client-certificates/{id}/retire",
    tag = "client-certificates",
    params(("id" = String, Path, description = "Client certificate id (`cert_…`)")),
    responses(
        (status = 200, description = "The certificate, now `retiring`", body = CertificateView),
        (status = 404, description = "No such certificate (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(super) async fn retire(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<axum::Json<CertificateView>> {
    if !state
        .certs
        .set_certificate_status(&id, CertificateStatus::Retiring, state.clock.now_millis())
        .await?
    {
        return Err(ApiError::not_found("client certificate"));
    }
    state.published_certs.clear();
    Ok(axum::Json(load(&state, &id).await?.into()))
}

/// Deletes a certificate that no endpoint uses.
#[utoipa::path(
    delete,
    path = "/client-certificates/{id}",
    tag = "client-certificates",
    params(("id" = String, Path, description = "Client certificate id (`cert_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such certificate (`NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "Attached to endpoints (`CERTIFICATE_IN_USE`)", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    match state.certs.delete_certificate(&id).await? {
        CertificateDeletion::Deleted => {
            state.published_certs.clear();
            Ok(StatusCode::NO_CONTENT)
        }
        CertificateDeletion::NotFound => Err(ApiError::not_found("client certificate")),
        CertificateDeletion::InUse { endpoints } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "CERTIFICATE_IN_USE",
            format!(
                "the certificate is attached to endpoints ({}); detach it first",
                endpoints.join(", ")
            ),
        )),
    }
}

/// For `PATCH /endpoints/{id}`: the certificate must exist and be active.
pub(super) async fn check_attachable(state: &AppState, id: &str) -> ApiResult<String> {
    if id.len() > 64 {
        return Err(ApiError::invalid(
            "CERTIFICATE_NOT_FOUND",
            "no such client certificate",
        ));
    }
    match state.certs.get_certificate(id).await? {
        None => Err(ApiError::invalid(
            "CERTIFICATE_NOT_FOUND",
            format!("no client certificate {id}"),
        )),
        Some(c) if c.status != CertificateStatus::Active => Err(ApiError::invalid(
            "CERTIFICATE_NOT_ACTIVE",
            format!("client certificate {id} is {}", c.status.as_str()),
        )),
        Some(c) if c.not_after <= state.clock.now_millis() => Err(ApiError::invalid(
            "CERTIFICATE_EXPIRED",
            format!("client certificate {id} has expired"),
        )),
        Some(c) => Ok(c.id),
    }
}
