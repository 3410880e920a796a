use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

/// The client's IP address: the peer's, or, when the peer is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not itself a
/// trusted proxy, so clients behind one proxy are not counted as one.
/// `None` when the server runs without connect info ([`crate::serve`]
/// always gives it).
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer.filter(is_trusted) else { return peer };
    // Walk the chain from the nearest hop; a malformed entry ends the walk
    // (nothing before it can be trusted to be what it says).
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok());
    let hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}
