//! `/api/v1/event-types`: the deployment's event-type catalogue, with optional JSON Schemas
//! checked on publish.

use super::endpoints::validate_event_type;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{PageQuery, Paged};
use crate::catalogue;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::times::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use hookwarden_store::EventType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// Longest description.
const MAX_DESCRIPTION: usize = 2048;

/// A catalogued event type.
#[derive(Serialize, ToSchema)]
#[schema(as = EventType)]
pub(crate) struct EventTypeView {
    /// The type events carry (`invoice.paid`).
    name: String,
    description: String,
    /// The JSON Schema of the payload, if any.
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// Payloads published with this type must match `schema` (else `422 SCHEMA_MISMATCH`).
    validate: bool,
    deprecated: bool,
    /// An example payload.
    #[schema(value_type = Option<Object>)]
    example: Option<Value>,
    created_at: String,
    updated_at: String,
}

impl From<EventType> for EventTypeView {
    fn from(t: EventType) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        EventTypeView {
            name: t.name,
            description: t.description,
            schema: parse(t.schema),
            validate: t.validate,
            deprecated: t.deprecated,
            example: parse(t.example),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEventType {
    /// 1 to 128 letters, digits and `. _ - : /`.
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema (draft 2020-12 unless it says otherwise) for the payload: self-contained
    /// (no remote or file references), at most 64 KiB, 32 levels deep; `pattern` uses a
    /// linear-time engine (no look-arounds or back-references).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// Check published payloads against `schema` (default true when a schema is given).
    #[serde(default)]
    validate: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    /// An example payload (checked against `schema`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    example: Option<Value>,
}

/// Only the fields given change; `null` removes the schema or the example.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateEventType {
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Object>)]
    schema: Option<Option<Value>>,
    #[serde(default)]
    validate: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Object>)]
    example: Option<Option<Value>>,
}

/// Checks the schema, the example against it, and the validate flag; returns the stored text.
fn checked(
    schema: Option<&Value>,
    example: Option<&Value>,
    validate: bool,
) -> ApiResult<(Option<String>, Option<String>)> {
    let invalid = |m: String| ApiError::invalid("INVALID_SCHEMA", m);
    let compiled = schema
        .map(catalogue::compile)
        .transpose()
        .map_err(invalid)?;
    if validate && compiled.is_none() {
        return Err(invalid("validate needs a schema".into()));
    }
    if let Some(ex) = example {
        if catalogue::depth(ex) > catalogue::MAX_SCHEMA_DEPTH
            || serde_json::to_string(ex)
                .map(|s| s.len())
                .unwrap_or(usize::MAX)
                > catalogue::MAX_SCHEMA_BYTES
        {
            return Err(invalid("the example is too large or too deep".into()));
        }
        if let Some(v) = &compiled
            && let Some(e) = catalogue::first_error(v, ex)
        {
            return Err(invalid(format!(
                "the example does not match the schema: {e}"
            )));
        }
    }
    let text = |v: Option<&Value>| v.map(|v| v.to_string());
    Ok((text(schema), text(example)))
}

fn check_description(d: &str) -> ApiResult<()> {
    if d.len() > MAX_DESCRIPTION || d.contains('\0') {
        return Err(ApiError::invalid(
            "VALIDATION_FAILED",
            format!("description is at most {MAX_DESCRIPTION} bytes, without NUL"),
        ));
    }
    Ok(())
}

/// Adds an event type to the catalogue.
#[utoipa::path(
    post,
    path = "/event-types",
    tag = "event-types",
    request_body = CreateEventType,
    responses(
        (status = 201, description = "The event type", body = EventTypeView),
        (status = 409, description = "The name exists (`CONFLICT`)", body = ErrorBody),
        (status = 422, description = "Invalid name (`INVALID_EVENT_TYPE`), schema or example (`INVALID_SCHEMA`)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateEventType>,
) -> ApiResult<(StatusCode, axum::Json<EventTypeView>)> {
    validate_event_type(&req.name)?;
    let description = req.description.unwrap_or_default();
    check_description(&description)?;
    let validate = req.validate.unwrap_or(req.schema.is_some());
    let (schema, example) = checked(req.schema.as_ref(), req.example.as_ref(), validate)?;
    let now = state.clock.now_millis();
    let t = EventType {
        name: req.name,
        description,
        schema,
        validate,
        deprecated: req.deprecated.unwrap_or(false),
        example,
        created_at: now,
        updated_at: now,
    };
    state.event_types.create_event_type(t.clone()).await?;
    state.catalogue.changed();
    Ok((StatusCode::CREATED, axum::Json(t.into())))
}

/// A page of the catalogue.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventTypeQuery {
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<usize>,
    /// The `next_before` of the previous page: the names after it come.
    #[param(max_length = 128)]
    before: Option<String>,
}

/// The catalogue, by name.
#[utoipa::path(
    get,
    path = "/event-types",
    tag = "event-types",
    params(EventTypeQuery),
    responses((status = 200, description = "A page of event types (pass `next_before` as `before`: names after it come)", body = Paged<EventTypeView>))
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<EventTypeQuery>,
) -> ApiResult<axum::Json<Paged<EventTypeView>>> {
    if let Some(b) = &q.before {
        validate_event_type(b)
            .map_err(|_| ApiError::bad_request("INVALID_QUERY", "before is not an event type"))?;
    }
    let page = PageQuery {
        limit: q.limit,
        before: None,
    }
    .page(state.config.server.max_page_bytes)?;
    let page = hookwarden_store::Page {
        before: q.before,
        ..page
    };
    let rows = state.event_types.list_event_types(page).await?;
    Ok(axum::Json(super::paged(
        rows,
        |t| t.name.clone(),
        EventTypeView::from,
    )))
}

/// The name of an event type in a path (percent-encode `/`).
fn name_of(name: String) -> ApiResult<String> {
    validate_event_type(&name).map_err(|_| ApiError::not_found("event type"))?;
    Ok(name)
}

#[utoipa::path(
    get,
    path = "/event-types/{name}",
    tag = "event-types",
    params(("name" = String, Path, description = "The event type (`/` percent-encoded)")),
    responses(
        (status = 200, description = "The event type", body = EventTypeView),
        (status = 404, description = "Not in the catalogue (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<axum::Json<EventTypeView>> {
    let name = name_of(name)?;
    let t = state
        .event_types
        .get_event_type(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(axum::Json(t.into()))
}

#[utoipa::path(
    patch,
    path = "/event-types/{name}",
    tag = "event-types",
    params(("name" = String, Path, description = "The event type (`/` percent-encoded)")),
    request_body = UpdateEventType,
    responses(
        (status = 200, description = "The event type", body = EventTypeView),
        (status = 404, description = "Not in the catalogue (`NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "Invalid schema or example (`INVALID_SCHEMA`)", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateEventType>,
) -> ApiResult<axum::Json<EventTypeView>> {
    let name = name_of(name)?;
    let mut t = state
        .event_types
        .get_event_type(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    };
    let schema = match req.schema {
        Some(s) => s,
        None => parse(&t.schema),
    };
    let example = match req.example {
        Some(e) => e,
        None => parse(&t.example),
    };
    if let Some(d) = req.description {
        check_description(&d)?;
        t.description = d;
    }
    let validate = req.validate.unwrap_or(t.validate && schema.is_some());
    let (schema, example) = checked(schema.as_ref(), example.as_ref(), validate)?;
    t.schema = schema;
    t.example = example;
    t.validate = validate;
    if let Some(d) = req.deprecated {
        t.deprecated = d;
    }
    t.updated_at = state.clock.now_millis();
    if !state.event_types.update_event_type(t.clone()).await? {
        return Err(ApiError::not_found("event type"));
    }
    state.catalogue.changed();
    Ok(axum::Json(t.into()))
}

/// Removes the type from the catalogue (events of that type are still accepted, unchecked).
#[utoipa::path(
    delete,
    path = "/event-types/{name}",
    tag = "event-types",
    params(("name" = String, Path, description = "The event type (`/` percent-encoded)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not in the catalogue (`NOT_FOUND`)", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = name_of(name)?;
    if !state.event_types.delete_event_type(&name).await? {
        return Err(ApiError::not_found("event type"));
    }
    state.catalogue.changed();
    Ok(StatusCode::NO_CONTENT)
}
