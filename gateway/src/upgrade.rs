//! `GET /ws`: checks the handshake and the token before upgrading, then
//! reads the raw connection with tokio-tungstenite under our own limits and
//! writes it with [`wire::Writer`].

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ApiError, ErrorCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{Gateway, connection, wire};
use protocol::Encoding;
use protocol::dialect::{Dialect, dating, simple};
use protocol::frame::MSGPACK_PROTOCOL;

/// Room for reading a connection's frames: a dozen commands of a typical
/// size per read.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// A refused upgrade, in the envelope of the contract the client speaks.
fn refuse(encoding: Encoding, code: ErrorCode, detail: &str) -> Response {
    let (status, body) = match encoding {
        Encoding::Dialect(Dialect::Dating) => dating::error_body(code, detail, &[], ""),
        Encoding::Dialect(Dialect::Simple) => simple::error_body(code, detail),
        // Seeds 003 and 004 have no socket of their own; their clients use `/ws`.
        Encoding::Dialect(Dialect::SmellPin | Dialect::Couple)
        | Encoding::Json
        | Encoding::MsgPack
        | Encoding::CompactJson => {
            (code.http_status(), serde_json::to_value(ApiError::new(code, detail)).unwrap_or_default())
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

/// The token from `Authorization: Bearer` or `?token=`.
fn token(request: &Request) -> Option<String> {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    header.or_else(|| query_value(request, "token").map(str::to_owned))
}

/// The value of `name` in the request's query string, if given.
fn query_value<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// What a client of `/ws` asked of its connection in the query string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `?echo=0`: the connection is not sent `message.new` for its own
    /// sends, whose `message.ack` carries the same message.
    pub(crate) echo: bool,
    /// `?batch=1`: frames that leave together are packed into one (see
    /// [`crate::codec::pack`]).
    pub(crate) batch: bool,
}

/// The yes-or-no query parameter `name` (`0`, `1`, `false`, `true`), or
/// `default` when absent; `Err` with what to answer for another value.
fn flag(request: &Request, name: &str, default: bool) -> Result<bool, String> {
    match query_value(request, name) {
        None => Ok(default),
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(_) => Err(format!("{name} must be 0, 1, false or true")),
    }
}

/// `GET /ws`: the canonical contract.
pub(crate) async fn upgrade(State(gateway): State<Gateway>, request: Request) -> Response {
    let offer = request.headers().get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|value| value.to_str().ok());
    let (encoding, protocol) = Encoding::negotiate(offer);
    let asked = flag(&request, "echo", true).and_then(|echo| {
        Ok((Options { echo, batch: flag(&request, "batch", false)? }, flag(&request, "compact", false)?))
    });
    let (options, compact) = match asked {
        Ok(asked) => asked,
        Err(detail) => return refuse(encoding, ErrorCode::BadRequest, &detail),
    };
    // `?compact=1`: the JSON events without their members at a default.
    let encoding = match (compact, encoding) {
        (true, Encoding::Json) => Encoding::CompactJson,
        (true, _) => {
            let detail =
                format!("compact=1 is a form of JSON text frames; it does not combine with {MSGPACK_PROTOCOL}");
            return refuse(encoding, ErrorCode::BadRequest, &detail);
        }
        (false, encoding) => encoding,
    };
    upgrade_as(&gateway, request, (encoding, options), protocol)
}

/// A dialect's WebSocket (`/v1?token=`, `/api/v1/ws`): its frames are JSON
/// text, one event each, and its own sends come back as its document says.
pub(crate) fn upgrade_dialect(gateway: &Gateway, request: Request, dialect: Dialect) -> Response {
    upgrade_as(gateway, request, (Encoding::Dialect(dialect), Options { echo: true, batch: false }), None)
}

fn upgrade_as(
    gateway: &Gateway,
    mut request: Request,
    (encoding, options): (Encoding, Options),
    protocol: Option<&'static str>,
) -> Response {
    let headers = request.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|value| value == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return refuse(encoding, ErrorCode::BadRequest, "a WebSocket upgrade is required");
    };
    if !is_upgrade || !version_ok {
        return refuse(encoding, ErrorCode::BadRequest, "a WebSocket (version 13) upgrade is required");
    }
    let user = match token(&request) {
        Some(token) => match gateway.inner.tokens.verify(&token) {
            Ok(claims) => Some(claims),
            Err(code) => {
                metrics::counter!("switchboard_ws_auth_failures_total").increment(1);
                return refuse(encoding, code, code.message());
            }
        },
        None => None,
    };
    let Ok(permit) = gateway.inner.permits.clone().try_acquire_owned() else {
        metrics::counter!("switchboard_ws_refused_total", "reason" => "capacity").increment(1);
        return refuse(encoding, ErrorCode::Unavailable, "this node is at its connection limit");
    };
    // Loopback is this machine: a local proxy (declare it with
    // `--trusted-proxy` and its clients are counted each on their own) or
    // a load generator, neither of which is one client.
    let ip = ops::client_ip(request.headers(), request.extensions(), &gateway.inner.config.trusted_proxies)
        .filter(|ip| !ip.is_loopback());
    let slot = match ip.map(|ip| gateway.inner.addresses.take(ip)) {
        Some(None) => {
            metrics::counter!("switchboard_ws_refused_total", "reason" => "per_address").increment(1);
            return refuse(encoding, ErrorCode::TooManyRequests, "too many connections from this address");
        }
        Some(slot) => slot,
        None => None,
    };
    // A socket without a token holds a place until its `auth` frame (or
    // the auth timeout): those places are few, so silent sockets cannot
    // take the node.
    let waiting = if user.is_some() {
        None
    } else if let Ok(waiting) = gateway.inner.unauthenticated.clone().try_acquire_owned() {
        Some(waiting)
    } else {
        metrics::counter!("switchboard_ws_refused_total", "reason" => "unauthenticated").increment(1);
        let detail = "too many connections waiting to authenticate: send the token with the upgrade";
        return refuse(encoding, ErrorCode::Unavailable, detail);
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = WebSocketConfig::default()
        // Held by every connection for its whole life, idle or not: a frame
        // longer than this is read into room reserved for its whole length,
        // so this bounds only how many small frames one read takes.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(gateway.inner.config.hard_frame_bytes))
        .max_frame_size(Some(gateway.inner.config.hard_frame_bytes));
    let tracker = gateway.inner.tasks.clone();
    let gateway = gateway.clone();
    tracker.spawn(async move {
        // Boxed: gone once the socket is in (see `connection::admit`).
        let admitted = Box::pin(async {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "upgrade failed");
                    return None;
                }
            };
            let socket = wire::open(upgraded, config).await;
            connection::admit(&gateway, socket, encoding, user, waiting).await
        })
        .await;
        if let Some(admitted) = admitted {
            connection::serve(gateway, admitted, encoding, options).await;
        }
        drop((permit, slot));
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}
