use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

fn exporter() -> &'static Exporter {
    EXPORTER.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                // Another recorder owns the process (an embedding program):
                // serve an empty exposition rather than fail.
                tracing::warn!(%error, "metrics recorder already installed elsewhere");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        let process = metrics_process::Collector::default();
        process.describe();
        Exporter { handle, process }
    })
}

/// Installs the process-wide Prometheus recorder (once; later calls are
/// no-ops). Call it early so metrics recorded before the first scrape
/// are kept.
pub fn install_recorder() {
    exporter();
}

/// Who may read `/metrics` on a server's main listener.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// A bearer token that opens it from anywhere.
    pub token: Option<String>,
    /// A listener of its own serves `/metrics` (`--metrics-listen`): here
    /// only the token opens it.
    pub elsewhere: bool,
}

impl MetricsAccess {
    /// Whether the request may read the metrics: with the token, or (when
    /// no other listener serves them) from this machine, not through a proxy.
    fn allows(&self, request: &Request) -> bool {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if let (Some(token), Some(presented)) = (&self.token, presented) {
            return subtle::ConstantTimeEq::ct_eq(token.as_bytes(), presented.trim().as_bytes()).into();
        }
        if self.elsewhere {
            return false;
        }
        let forwarded =
            request.headers().contains_key("x-forwarded-for") || request.headers().contains_key("forwarded");
        let local = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|axum::extract::ConnectInfo(peer)| peer.ip().is_loopback());
        local && !forwarded
    }
}

/// Lets a request through to `/metrics` only if `access` allows it; others
/// get the same 404 as a path that does not exist.
pub(crate) async fn guard(
    axum::extract::State(access): axum::extract::State<std::sync::Arc<MetricsAccess>>,
    request: Request,
    next: Next,
) -> Response {
    if access.allows(&request) {
        next.run(request).await
    } else {
        metrics::counter!("switchboard_metrics_refused_total").increment(1);
        crate::not_found(request.uri().clone()).await.into_response()
    }
}

/// `GET /metrics`: Prometheus text exposition, with process metrics
/// (CPU, RSS, open fds) sampled at scrape time.
pub async fn metrics() -> Response {
    let exporter = exporter();
    exporter.process.collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], exporter.handle.render()).into_response()
}

/// Counts and times every request by method, matched route and status.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = [("method", method), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("switchboard_http_requests_total", &labels).increment(1);
    metrics::histogram!("switchboard_http_request_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}
