//! `/api` handlers, one module per resource. Each handler checks input and
//! permission, calls the store or the send pipeline, and shapes the reply.

pub(crate) mod auth;
pub(crate) mod calls;
pub(crate) mod chats;
pub(crate) mod contacts;
pub(crate) mod files;
pub(crate) mod messages;
pub(crate) mod notifications;
pub(crate) mod server;
pub(crate) mod users;

use axum::Json;
use protocol::ApiResponse;
use serde::Serialize;

/// A success envelope around `data`.
pub(crate) fn ok<T: Serialize>(message: &str, data: T) -> Json<ApiResponse<T>> {
    Json(ApiResponse::ok(message, data))
}

/// The `{}` of seed 002's data-less successes.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}
