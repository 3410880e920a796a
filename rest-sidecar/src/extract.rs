//! Extractors whose rejections are seed 002's error envelope, and the
//! authenticated caller.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use protocol::ErrorCode;

use crate::{ApiFailure, SidecarState};

/// A JSON body; malformed, mistyped or oversized bodies answer 400/413 in
/// the envelope.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiFailure))]
pub(crate) struct Body<T>(pub(crate) T);

/// Query parameters; bad ones answer 400 in the envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiFailure))]
pub(crate) struct Query<T>(pub(crate) T);

/// Path parameters; bad ones (a non-numeric id) answer 400 in the envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiFailure))]
pub(crate) struct Path<T>(pub(crate) T);

/// The caller, from a valid, unrevoked `Authorization: Bearer` access token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) user_id: i64,
    pub(crate) claims: crate::tokens::Claims,
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<SidecarState> for Caller {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &SidecarState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| ApiFailure::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let claims = state.tokens.verify(token).map_err(|code| ApiFailure::new(code, code.message()))?;
        Ok(Self { user_id: claims.sub, claims })
    }
}

/// The client's IP address, when the server runs with connect info (it
/// does under [`crate::run`]); keys per-address rate limits.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddr(pub(crate) Option<std::net::IpAddr>);

impl ClientAddr {
    pub(crate) fn from_parts(parts: &Parts) -> Self {
        Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|axum::extract::ConnectInfo(addr)| addr.ip()),
        )
    }

    /// A rate-limit key for this address.
    pub(crate) fn key(&self) -> String {
        self.0.map_or_else(|| "addr:unknown".to_owned(), |ip| format!("addr:{ip}"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}
