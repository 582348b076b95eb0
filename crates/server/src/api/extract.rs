//! Extractors whose rejections are JSON errors with stable codes.

use crate::error::ApiError;
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

/// `axum::Json` with `ApiError` rejections (400 INVALID_JSON, 413, 415, 422).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path` with `ApiError` rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with `ApiError` rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
