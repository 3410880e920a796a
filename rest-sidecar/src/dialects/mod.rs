//! The seed dialects' REST mounts: each an adapter over the same service
//! layer and account flows as `/api`, with its own paths, envelope, ids,
//! pagination and error codes. A dialect decodes its request into the same
//! call `/api` makes and shapes the answer; it decides nothing itself.
//!
//! Errors are mapped in one place per dialect: every failure is first the
//! canonical [`ApiFailure`] (the service's one error enum read once), and
//! the dialect's [`Shape`] turns it into its own body and status.

pub(crate) mod couple;
pub(crate) mod dating;
pub(crate) mod simple;
pub(crate) mod smellpin;

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use serde::de::DeserializeOwned;

use crate::extract::Caller;
use crate::{ApiFailure, SidecarState};

tokio::task_local! {
    /// The request id of the request being answered (`X-Request-ID`, the
    /// client's or one minted): seed 000 echoes it in every body.
    static REQUEST_ID: String;
}

/// Runs the rest of the request with its id at hand for the envelope.
pub(crate) async fn with_request_id(request: Request, next: Next) -> Response {
    let id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
    REQUEST_ID.scope(id, next.run(request)).await
}

/// The id of the request being answered, or empty outside one.
pub(crate) fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A dialect's error `body` with `status`, and `Retry-After` when the
/// failure says when to come back.
pub(crate) fn failure_response(status: u16, body: serde_json::Value, retry_after: Option<u64>) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// A reply's `data` as JSON; a value that cannot be written is logged
/// and answered as the dialect's internal error.
pub(crate) fn data_value<S>(data: impl serde::Serialize) -> Result<serde_json::Value, Failure<S>> {
    serde_json::to_value(data).map_err(|error| {
        tracing::error!(%error, "reply not encoded");
        Failure::new(ErrorCode::Internal, "internal error")
    })
}

/// How a dialect writes a failure.
pub(crate) trait Shape: Send + Sync + 'static {
    fn failure(failure: ApiFailure) -> Response;
}

/// A failed dialect request: the canonical failure, written in the
/// dialect's shape `S`.
#[derive(Debug)]
pub(crate) struct Failure<S>(pub(crate) ApiFailure, PhantomData<S>);

impl<S> Failure<S> {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self(ApiFailure::new(code, detail), PhantomData)
    }
}

impl<S: Shape> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        S::failure(self.0)
    }
}

impl<S, E: Into<ApiFailure>> From<E> for Failure<S> {
    fn from(error: E) -> Self {
        Self(error.into(), PhantomData)
    }
}

/// A JSON body; bad ones are the dialect's 400s.
#[derive(Debug)]
pub(crate) struct Body<T, S>(pub(crate) T, PhantomData<S>);

impl<T: DeserializeOwned, S: Shape, St: Send + Sync> FromRequest<St> for Body<T, S> {
    type Rejection = Failure<S>;

    async fn from_request(request: Request, state: &St) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(Failure::from(rejection)),
        }
    }
}

/// Query parameters; bad ones are the dialect's 400s.
#[derive(Debug)]
pub(crate) struct Query<T, S>(pub(crate) T, PhantomData<S>);

impl<T: DeserializeOwned, S: Shape, St: Send + Sync> FromRequestParts<St> for Query<T, S> {
    type Rejection = Failure<S>;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(Failure::from(rejection)),
        }
    }
}

/// A path parameter; a bad one (a non-numeric id) is the dialect's 400.
#[derive(Debug)]
pub(crate) struct Path<T, S>(pub(crate) T, PhantomData<S>);

impl<T: DeserializeOwned + Send, S: Shape, St: Send + Sync> FromRequestParts<St> for Path<T, S> {
    type Rejection = Failure<S>;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(Failure::from(rejection)),
        }
    }
}

/// The caller of a dialect request: the same token check as `/api` (a
/// token of any contract is accepted), refused in the dialect's shape.
#[derive(Debug)]
pub(crate) struct User<S>(pub(crate) Caller, PhantomData<S>);

impl<S: Shape> FromRequestParts<SidecarState> for User<S> {
    type Rejection = Failure<S>;

    async fn from_request_parts(parts: &mut Parts, state: &SidecarState) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, state).await.map(|caller| Self(caller, PhantomData)).map_err(Failure::from)
    }
}

impl<S> User<S> {
    pub(crate) fn id(&self) -> i64 {
        self.0.user_id
    }
}

/// The field a validation message names, when it starts with one
/// (`phone must be ...`, serde's ``missing field `phone` ``, or a
/// deserialisation error's `phone: invalid type ...` path).
pub(crate) fn field_of(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let detail = detail.rsplit("target type: ").next().unwrap_or(detail);
    let is_name = |word: &str| !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
    if let Some((path, _)) = detail.split_once(": ")
        && is_name(path)
    {
        return Some(path.to_owned());
    }
    let word = detail.split_whitespace().next()?;
    let rest = &detail[word.len()..];
    (is_name(word) && (rest.starts_with(" must") || rest.starts_with(" is") || rest.starts_with(" may")))
        .then(|| word.to_owned())
}

/// Whether a 400's detail says a required field was missing.
pub(crate) fn is_missing(detail: &str) -> bool {
    detail.contains("missing field `")
}

#[cfg(test)]
mod tests {
    use super::{field_of, is_missing};

    #[test]
    fn fields_are_read_from_the_details_that_name_them() {
        let missing =
            "Failed to deserialize the JSON body into the target type: missing field `phone` at line 1 column 2";
        assert_eq!(field_of(missing).as_deref(), Some("phone"));
        assert!(is_missing(missing));
        let typed = "Failed to deserialize the JSON body into the target type: code: invalid type: integer `1`";
        assert_eq!(field_of(typed).as_deref(), Some("code"));
        assert_eq!(field_of("phone must be 11 digits").as_deref(), Some("phone"));
        assert_eq!(field_of("content is longer than 4096 characters").as_deref(), Some("content"));
        assert_eq!(field_of("give a password or an SMS code"), None);
    }
}
