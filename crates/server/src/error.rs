//! Every refusal is `{"success": false, "error": {"code": "...", "message": "..."}}` with a stable
//! machine-readable code.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An internal error occurred; it has been logged",
        )
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }
}

/// The body of every refusal (the `Error` schema of the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (e.g. `NOT_FOUND`, `VALIDATION_FAILED`, `WEBHOOK_REVOKED`).
    #[schema(value_type = String, examples("NOT_FOUND"))]
    pub code: &'static str,
    /// For people; may change between versions.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            success: false,
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy or shutting down: a client that honours Retry-After comes back in a second.
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

impl From<hookwarden_store::StoreError> for ApiError {
    fn from(e: hookwarden_store::StoreError) -> ApiError {
        match e {
            hookwarden_store::StoreError::NotFound => ApiError::not_found("resource"),
            hookwarden_store::StoreError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", m)
            }
            hookwarden_store::StoreError::Closed => ApiError::unavailable("shutting down"),
            // Refused alike by every backend (PostgreSQL text cannot hold NUL; SQLite could).
            hookwarden_store::StoreError::InvalidText(field) => ApiError::invalid(
                "INVALID_TEXT",
                format!("{field} must not contain a NUL character"),
            ),
            // A busy or briefly unreachable database: the client may try again.
            other if other.is_retryable() => {
                tracing::warn!(error = %other, "store busy");
                ApiError::unavailable("The database is busy; try again")
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(status, "PAYLOAD_TOO_LARGE", "Request body is too large");
        }
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Expected Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request("INVALID_JSON", format!("Malformed JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => {
                ApiError::invalid("VALIDATION_FAILED", e.body_text())
            }
            other => ApiError::bad_request("INVALID_REQUEST", other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body is too large",
            );
        }
        ApiError::bad_request("INVALID_REQUEST", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request("INVALID_PATH", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request("INVALID_QUERY", r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use hookwarden_store::StoreError;

    #[test]
    fn a_busy_store_says_try_again_and_a_broken_one_does_not() {
        let busy = ApiError::from(StoreError::database("database is locked", true)).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[axum::http::header::RETRY_AFTER], "1");
        let broken =
            ApiError::from(StoreError::database("no such table: x", false)).into_response();
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            broken
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .is_none()
        );
    }
}
