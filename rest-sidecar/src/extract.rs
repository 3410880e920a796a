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
    pub(crate) claims: protocol::Claims,
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
/// does under [`crate::run`]); keys per-address rate limits. Behind a
/// trusted proxy (`SidecarConfig::trusted_proxies`) it is the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy, so
/// clients behind one proxy are not limited as one.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddr(pub(crate) Option<std::net::IpAddr>);

impl ClientAddr {
    pub(crate) fn from_parts(parts: &Parts, trusted: &[ipnet::IpNet]) -> Self {
        Self(ops::client_ip(&parts.headers, &parts.extensions, trusted))
    }

    /// A rate-limit key for this address.
    pub(crate) fn key(&self) -> String {
        self.0.map_or_else(|| "addr:unknown".to_owned(), |ip| format!("addr:{ip}"))
    }
}

impl FromRequestParts<SidecarState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &SidecarState) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts, &state.config.trusted_proxies))
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ConnectInfo;
    use axum::http::Request;

    use super::ClientAddr;

    fn addr(peer: &str, forwarded: &[&str], trusted: &[&str]) -> Option<String> {
        let mut request = Request::builder();
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        ClientAddr::from_parts(&parts, &trusted).0.map(|ip| ip.to_string())
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let some = |ip: &str| Some(ip.to_owned());
        // No trusted proxy: the header is the client's to forge, and ignored.
        assert_eq!(addr("10.0.0.9:5000", &["1.2.3.4"], &[]), some("10.0.0.9"));
        // Through the trusted proxy: the address it saw.
        assert_eq!(addr("10.0.0.9:5000", &["1.2.3.4"], &["10.0.0.0/24"]), some("1.2.3.4"));
        // A forged entry before the real one is not believed: the nearest untrusted hop wins.
        assert_eq!(addr("10.0.0.9:5000", &["6.6.6.6, 1.2.3.4"], &["10.0.0.0/24"]), some("1.2.3.4"));
        // Chains of trusted proxies are walked; headers may repeat.
        assert_eq!(addr("10.0.0.9:5000", &["1.2.3.4", "10.0.0.7"], &["10.0.0.0/24"]), some("1.2.3.4"));
        // Garbage stops the walk at the last address that could be trusted.
        assert_eq!(addr("10.0.0.9:5000", &["1.2.3.4, not-an-ip"], &["10.0.0.0/24"]), some("10.0.0.9"));
        // No header at all: the proxy itself.
        assert_eq!(addr("10.0.0.9:5000", &[], &["10.0.0.9/32"]), some("10.0.0.9"));
    }
}
