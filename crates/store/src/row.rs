//! Stored rows, read the same way by both backends: how a row becomes a value is written once
//! here, over [`ReadRow`] (`rusqlite::Row::get` or `sqlx::Row::try_get` column by column), and
//! each backend only says how a column it cannot read fails.

use crate::api_keys::ApiKey;
use crate::certs::{CertificateStatus, ClientCertificate};
use crate::machine::{DeliveryRow, EndpointRow};
use crate::sources::{Source, SourceToken};
use crate::types::{Attempt, Delivery, DeliveryStatus, Endpoint, Event, SecretRecord};

/// A row of one backend, and the error its reads fail with.
pub(crate) trait StoredRow {
    type Error;
    /// Column `i` holds text that is not what this version writes there.
    fn corrupt(i: usize, why: String) -> Self::Error;
    /// Column `i` holds JSON that does not parse as what this version writes there.
    fn bad_json(i: usize, e: serde_json::Error) -> Self::Error;
    /// Column `i`, a delivery status as its number (the backends store it as integers of
    /// different widths).
    fn status(&self, i: usize) -> Result<i64, Self::Error>;
}

/// Column `i` of a row as a `T`.
pub(crate) trait Col<T>: StoredRow {
    fn col(&self, i: usize) -> Result<T, Self::Error>;
}

/// A row whose columns read as the types the stored values are made of.
pub(crate) trait ReadRow:
    StoredRow + Col<String> + Col<Option<String>> + Col<i64> + Col<Option<i64>> + Col<bool>
{
}

impl<R> ReadRow for R where
    R: StoredRow + Col<String> + Col<Option<String>> + Col<i64> + Col<Option<i64>> + Col<bool>
{
}

impl StoredRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn corrupt(i: usize, why: String) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, why.into())
    }

    fn bad_json(i: usize, e: serde_json::Error) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    }

    fn status(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
}

/// SQLite's booleans are integers, read as `value != 0`.
impl<T: rusqlite::types::FromSql> Col<T> for rusqlite::Row<'_> {
    fn col(&self, i: usize) -> rusqlite::Result<T> {
        self.get(i)
    }
}

#[cfg(feature = "postgres")]
impl StoredRow for sqlx::postgres::PgRow {
    type Error = crate::StoreError;

    fn corrupt(_: usize, why: String) -> crate::StoreError {
        crate::StoreError::Corrupt(why)
    }

    fn bad_json(_: usize, e: serde_json::Error) -> crate::StoreError {
        e.into()
    }

    fn status(&self, i: usize) -> crate::Result<i64> {
        let status: i16 = sqlx::Row::try_get(self, i)?;
        Ok(i64::from(status))
    }
}

#[cfg(feature = "postgres")]
impl<T> Col<T> for sqlx::postgres::PgRow
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    fn col(&self, i: usize) -> crate::Result<T> {
        Ok(sqlx::Row::try_get(self, i)?)
    }
}

/// Column `i`, JSON text, parsed.
fn json<R: ReadRow, T: serde::de::DeserializeOwned>(r: &R, i: usize) -> Result<T, R::Error> {
    let text: String = r.col(i)?;
    serde_json::from_str(&text).map_err(|e| R::bad_json(i, e))
}

/// An endpoint's columns, as [`endpoint`] reads them.
pub(crate) const ENDPOINT_COLS: &str = "id, url, description, event_types, headers, developer_payload, \
    signature_schemes, rate_limit_per_second, enabled, disabled_reason, disabled_at, \
    client_certificate_id, consecutive_failures, failing_since, created_at, updated_at, \
    retry_schedule, filter, transformation";

/// Columns: [`ENDPOINT_COLS`].
pub(crate) fn endpoint<R: ReadRow>(r: &R) -> Result<Endpoint, R::Error> {
    let rate: Option<i64> = r.col(7)?;
    Ok(Endpoint {
        id: r.col(0)?,
        url: r.col(1)?,
        description: r.col(2)?,
        event_types: json(r, 3)?,
        headers: json(r, 4)?,
        developer_payload: r.col(5)?,
        signature_schemes: json(r, 6)?,
        rate_limit_per_second: rate.and_then(|v| u32::try_from(v).ok()),
        enabled: r.col(8)?,
        disabled_reason: r.col(9)?,
        disabled_at: r.col(10)?,
        client_certificate_id: r.col(11)?,
        consecutive_failures: r.col(12)?,
        failing_since: r.col(13)?,
        created_at: r.col(14)?,
        updated_at: r.col(15)?,
        retry_schedule: json(r, 16)?,
        filter: r.col(17)?,
        transformation: r.col(18)?,
    })
}

/// An event's columns, as [`event`] reads them.
pub(crate) const EVENT_COLS: &str =
    "id, event_type, payload, idempotency_key, created_at, source_id";

/// Columns: [`EVENT_COLS`].
pub(crate) fn event<R: ReadRow>(r: &R) -> Result<Event, R::Error> {
    Ok(Event {
        id: r.col(0)?,
        event_type: r.col(1)?,
        payload: r.col(2)?,
        idempotency_key: r.col(3)?,
        created_at: r.col(4)?,
        source_id: r.col(5)?,
    })
}

/// A delivery's columns, as [`delivery`] reads them.
pub(crate) const DELIVERY_COLS: &str = "id, event_id, endpoint_id, status, attempt_count, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at, completed_at";

/// Columns: [`DELIVERY_COLS`].
pub(crate) fn delivery<R: ReadRow>(r: &R) -> Result<Delivery, R::Error> {
    Ok(Delivery {
        id: r.col(0)?,
        event_id: r.col(1)?,
        endpoint_id: r.col(2)?,
        status: DeliveryStatus::from_i64(r.status(3)?),
        attempt_count: r.col(4)?,
        next_attempt_at: r.col(5)?,
        last_status_code: r.col(6)?,
        last_error: r.col(7)?,
        created_at: r.col(8)?,
        updated_at: r.col(9)?,
        completed_at: r.col(10)?,
    })
}

/// Columns `at..at + 7`: `enabled, deleted_at IS NOT NULL, consecutive_failures, failing_since,
/// disabled_reason, disabled_at, updated_at` (an endpoint as the state machine reads it).
pub(crate) fn endpoint_state<R: ReadRow>(r: &R, at: usize) -> Result<EndpointRow, R::Error> {
    Ok(EndpointRow {
        enabled: r.col(at)?,
        deleted: r.col(at + 1)?,
        consecutive_failures: r.col(at + 2)?,
        failing_since: r.col(at + 3)?,
        disabled_reason: r.col(at + 4)?,
        disabled_at: r.col(at + 5)?,
        updated_at: r.col(at + 6)?,
        dirty: false,
    })
}

/// Columns `at..at + 9`: `endpoint_id, status, attempt_count, next_attempt_at, lease_owner,
/// last_status_code, last_error, completed_at, updated_at` (a delivery as the state machine
/// reads it).
pub(crate) fn delivery_state<R: ReadRow>(r: &R, at: usize) -> Result<DeliveryRow, R::Error> {
    Ok(DeliveryRow::read(
        r.col(at)?,
        r.status(at + 1)?,
        r.col(at + 2)?,
        r.col(at + 3)?,
        r.col(at + 4)?,
        r.col(at + 5)?,
        r.col(at + 6)?,
        r.col(at + 7)?,
        r.col(at + 8)?,
    ))
}

/// An attempt's columns, as [`attempt`] reads them.
pub(crate) const ATTEMPT_COLS: &str = "id, delivery_id, attempt_no, started_at, duration_ms, status_code, \
    response_body, response_truncated, error_class, error_message, local_addr, remote_addr, outcome, \
    request_headers";

/// Columns: [`ATTEMPT_COLS`].
pub(crate) fn attempt<R: ReadRow>(r: &R) -> Result<Attempt, R::Error> {
    Ok(Attempt {
        id: r.col(0)?,
        delivery_id: r.col(1)?,
        attempt_no: r.col(2)?,
        started_at: r.col(3)?,
        duration_ms: r.col(4)?,
        status_code: r.col(5)?,
        response_body: r.col(6)?,
        response_truncated: r.col(7)?,
        error_class: r.col(8)?,
        error_message: r.col(9)?,
        local_addr: r.col(10)?,
        remote_addr: r.col(11)?,
        outcome: r.col(12)?,
        request_headers: r.col(13)?,
    })
}

/// Columns: `id, endpoint_id, secret, created_at, expires_at, kind`.
pub(crate) fn secret<R: ReadRow>(r: &R) -> Result<SecretRecord, R::Error> {
    let kind: String = r.col(5)?;
    Ok(SecretRecord {
        id: r.col(0)?,
        endpoint_id: r.col(1)?,
        kind: crate::types::SecretKind::parse(&kind)
            .ok_or_else(|| R::corrupt(5, format!("unknown secret kind {kind:?}")))?,
        secret: r.col(2)?,
        created_at: r.col(3)?,
        expires_at: r.col(4)?,
    })
}

/// An API key's columns, as [`api_key`] reads them.
pub(crate) const API_KEY_COLS: &str =
    "id, name, prefix, description, created_at, expires_at, last_used_at, revoked_at";

/// Columns: [`API_KEY_COLS`].
pub(crate) fn api_key<R: ReadRow>(r: &R) -> Result<ApiKey, R::Error> {
    Ok(ApiKey {
        id: r.col(0)?,
        name: r.col(1)?,
        prefix: r.col(2)?,
        description: r.col(3)?,
        created_at: r.col(4)?,
        expires_at: r.col(5)?,
        last_used_at: r.col(6)?,
        revoked_at: r.col(7)?,
    })
}

/// A client certificate's columns, as [`certificate`] reads them.
pub(crate) const CERTIFICATE_COLS: &str = "id, name, certificate_pem, private_key, subject, issuer, serial, \
    sha256, sha1, not_before, not_after, generated, status, created_at, retired_at";

/// Columns: [`CERTIFICATE_COLS`].
pub(crate) fn certificate<R: ReadRow>(r: &R) -> Result<ClientCertificate, R::Error> {
    let status: String = r.col(12)?;
    let status = CertificateStatus::parse(&status)
        .ok_or_else(|| R::corrupt(12, format!("unknown certificate status {status:?}")))?;
    Ok(ClientCertificate {
        id: r.col(0)?,
        name: r.col(1)?,
        certificate_pem: r.col(2)?,
        private_key: r.col(3)?,
        subject: r.col(4)?,
        issuer: r.col(5)?,
        serial: r.col(6)?,
        sha256: r.col(7)?,
        sha1: r.col(8)?,
        not_before: r.col(9)?,
        not_after: r.col(10)?,
        generated: r.col(11)?,
        status,
        created_at: r.col(13)?,
        retired_at: r.col(14)?,
    })
}

/// A source's columns, as [`source`] reads them.
pub(crate) const SOURCE_COLS: &str = "id, name, verification, secrets, allowed_cidrs, replay_window_secs, \
    log_payloads, forward_to, event_type, created_at, updated_at";

/// Columns: [`SOURCE_COLS`].
pub(crate) fn source<R: ReadRow>(r: &R) -> Result<Source, R::Error> {
    Ok(Source {
        id: r.col(0)?,
        name: r.col(1)?,
        verification: r.col(2)?,
        secrets: json(r, 3)?,
        allowed_cidrs: json(r, 4)?,
        replay_window_secs: r.col(5)?,
        log_payloads: r.col(6)?,
        forward_to: json(r, 7)?,
        event_type: r.col(8)?,
        created_at: r.col(9)?,
        updated_at: r.col(10)?,
    })
}

/// A source token's columns, as [`source_token`] reads them.
pub(crate) const TOKEN_COLS: &str = "prefix, created_at, expires_at, revoked_at";

/// Columns `at..at + 4`: [`TOKEN_COLS`].
pub(crate) fn source_token<R: ReadRow>(r: &R, at: usize) -> Result<SourceToken, R::Error> {
    Ok(SourceToken {
        prefix: r.col(at)?,
        created_at: r.col(at + 1)?,
        expires_at: r.col(at + 2)?,
        revoked_at: r.col(at + 3)?,
    })
}

/// A probe report's columns, as [`probe`] reads them.
pub(crate) const PROBE_COLS: &str = "id, endpoint_id, created_at, triggered_by, grade, report";

/// Columns: [`PROBE_COLS`].
pub(crate) fn probe<R: ReadRow>(r: &R) -> Result<crate::probes::ProbeRecord, R::Error> {
    Ok(crate::probes::ProbeRecord {
        id: r.col(0)?,
        endpoint_id: r.col(1)?,
        created_at: r.col(2)?,
        trigger: r.col(3)?,
        grade: r.col(4)?,
        report: r.col(5)?,
    })
}

/// An event type's columns, as [`event_type`] reads them.
pub(crate) const EVENT_TYPE_COLS: &str =
    "name, description, schema, validate, deprecated, example, created_at, updated_at";

/// Columns: [`EVENT_TYPE_COLS`].
pub(crate) fn event_type<R: ReadRow>(r: &R) -> Result<crate::event_types::EventType, R::Error> {
    Ok(crate::event_types::EventType {
        name: r.col(0)?,
        description: r.col(1)?,
        schema: r.col(2)?,
        validate: r.col(3)?,
        deprecated: r.col(4)?,
        example: r.col(5)?,
        created_at: r.col(6)?,
        updated_at: r.col(7)?,
    })
}

/// A recovery's columns, as [`recovery`] reads them.
pub(crate) const RECOVERY_COLS: &str = "id, endpoint_id, event_type, since_at, until_at, status, \
    total, requeued, created_at, updated_at, finished_at";

/// Columns: [`RECOVERY_COLS`].
pub(crate) fn recovery<R: ReadRow>(r: &R) -> Result<crate::Recovery, R::Error> {
    let status: String = r.col(5)?;
    Ok(crate::Recovery {
        id: r.col(0)?,
        filter: crate::RecoveryFilter {
            endpoint_id: r.col(1)?,
            event_type: r.col(2)?,
            since: r.col(3)?,
            until: r.col(4)?,
        },
        status: crate::RecoveryStatus::parse(&status)
            .ok_or_else(|| R::corrupt(5, format!("unknown recovery status {status:?}")))?,
        total: r.col(6)?,
        requeued: r.col(7)?,
        created_at: r.col(8)?,
        updated_at: r.col(9)?,
        finished_at: r.col(10)?,
    })
}
