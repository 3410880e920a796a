//! `GET /api/calls/ice-servers`: STUN and TURN servers for WebRTC, with
//! time-limited TURN credentials in the TURN REST scheme (coturn's
//! `use-auth-secret`): username `expiry:user_id`, password the base64
//! HMAC-SHA1 of the username under the shared secret.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use protocol::ApiResponse;
use protocol::time::now_millis;
use serde::Serialize;
use sha1::Sha1;

use super::ok;
use crate::extract::Caller;
use crate::{ApiFailure, SidecarState};

#[derive(Debug, Serialize)]
pub(crate) struct IceServer {
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct IceServers {
    ice_servers: Vec<IceServer>,
    /// Seconds the TURN credential stays valid.
    ttl: u64,
}

/// The TURN REST password for `username`.
fn turn_password(secret: &str, username: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

pub(crate) async fn ice_servers(
    State(state): State<SidecarState>,
    caller: Caller,
) -> Result<Json<ApiResponse<IceServers>>, ApiFailure> {
    let ice = &state.config.ice;
    let mut servers = Vec::new();
    if !ice.stun_urls.is_empty() {
        servers.push(IceServer { urls: ice.stun_urls.clone(), username: None, credential: None });
    }
    if let (false, Some(secret)) = (ice.turn_urls.is_empty(), ice.turn_secret.as_deref()) {
        let expiry = now_millis() / 1000 + i64::try_from(ice.turn_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let username = format!("{expiry}:{}", caller.user_id);
        let credential = turn_password(secret, &username);
        servers.push(IceServer { urls: ice.turn_urls.clone(), username: Some(username), credential: Some(credential) });
    }
    Ok(ok("获取成功", IceServers { ice_servers: servers, ttl: ice.turn_ttl.as_secs() }))
}
