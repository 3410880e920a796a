//! What an access token says: the claims of the HS256 JWT every surface
//! (REST, WebSocket, each dialect) accepts.

use serde::{Deserialize, Serialize};

/// An access token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: i64,
    /// This token's id, for revocation.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The refresh family this token came from (one login and its
    /// refreshes): revoking the family revokes its access tokens too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}
