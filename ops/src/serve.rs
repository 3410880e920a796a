use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use protocol::{ApiError, ErrorCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a client may take over each part of an HTTP request before
/// the server gives up on it: what keeps a slow or silent client
/// (slowloris) from holding a connection, a task and a file descriptor.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// From the connection's start (or the previous response) to the end
    /// of the request's headers; past it the connection is closed.
    pub header_read: Duration,
    /// The longest wait for the next piece of a request body; past it the
    /// request fails and the connection is closed.
    pub body_idle: Duration,
    /// From the request's headers to the response's headers, the body's
    /// upload included; past it the answer is 408. A streamed response
    /// body (a file download) and an upgraded WebSocket are not bound by it.
    pub request: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_idle: Duration::from_secs(20),
            request: Duration::from_secs(120),
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and
/// lets in-flight requests finish; cancels `shutdown` when the server
/// stops on its own (an error), so the caller's helpers stop too.
///
/// Each request carries its peer's `ConnectInfo<SocketAddr>`, and is held
/// to `limits`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "http listening");
    let request_limit = limits.request;
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle)).layer(
        axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
            within(request_limit, request, next)
        }),
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before
                    // it was taken: accepting again at once would spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Realtime frames are small: without TCP_NODELAY, Nagle's algorithm
        // holds a frame back until the client's delayed ACK (40 ms on Linux).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stopping = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // The request in flight is answered; then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "http connection ended");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    shutdown.cancel();
    Ok(())
}

/// `next` answering within `limit`, else 408 in seed 002's error envelope.
async fn within(limit: Duration, request: Request, next: axum::middleware::Next) -> Response {
    if let Ok(response) = tokio::time::timeout(limit, next.run(request)).await {
        return response;
    }
    metrics::counter!("switchboard_http_timeouts_total", "stage" => "request").increment(1);
    let error = ApiError::new(ErrorCode::RequestTimeout, format!("no answer within {} s", limit.as_secs()));
    (StatusCode::REQUEST_TIMEOUT, axum::Json(error)).into_response()
}
