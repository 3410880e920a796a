//! Opening WebSocket connections from a chosen loopback source address.
//!
//! One source address gives about 28k ephemeral ports towards one server
//! port, so a run that holds more connections spreads them over
//! 127.0.0.1, 127.0.0.2, … (the whole 127/8 block is loopback on Linux).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket as the generator holds it.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Source addresses to spread connections over.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    count: u8,
}

impl Sources {
    /// `count` addresses from 127.0.0.1 up (1 to 254).
    pub fn new(count: u8) -> anyhow::Result<Self> {
        anyhow::ensure!((1..=254).contains(&count), "--source-addrs must be between 1 and 254");
        Ok(Self { count })
    }

    pub fn count(self) -> u8 {
        self.count
    }

    /// The source address of connection number `n`.
    pub fn for_connection(self, n: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % usize::from(self.count)) as u8))
    }
}

/// The server's socket address for `url` (loopback is checked by the caller).
pub fn server_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let parsed = reqwest::Url::parse(url)?;
    let host = parsed.host_str().context("no host in url")?;
    let port = parsed.port_or_known_default().context("no port in url")?;
    let ip: IpAddr = if host == "localhost" { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { host.parse()? };
    Ok(SocketAddr::new(ip, port))
}

/// Closes `socket` the way RFC 6455 asks: send Close, then wait (briefly)
/// for the server to close the TCP connection first, so `TIME_WAIT` lands on
/// the server's side and not on the generator's ephemeral ports.
pub async fn close(mut socket: Socket) {
    use futures_util::StreamExt;
    let _ = socket.close(None).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

/// Opens the WebSocket at `url` (served at `server`) from `source`.
pub async fn connect(url: &str, server: SocketAddr, source: IpAddr) -> anyhow::Result<Socket> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if server.is_ipv4() && source.is_ipv4() {
        // Binding before connecting picks the port at bind time, where ports
        // still in `TIME_WAIT` would otherwise make the kernel's search slow
        // (and fail once the range is used up) under churn.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("user-agent", HeaderValue::from_static("switchboard-load-tests"));
    // tungstenite zero-fills its read buffer's spare room before each read:
    // at the default 128 KiB that memset was a quarter of the generator's
    // CPU. Frames here are small; 4 KiB reads (the gateway's size) hold several.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)).await?;
    Ok(socket)
}
