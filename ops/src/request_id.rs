//! `X-Request-ID` on every response: the client's own, or one minted here.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderName, HeaderValue, Request};
use tower::ServiceBuilder;
use tower::layer::util::Stack;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};

const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Mints `<process start in ms, hex>-<counter>`: unique per process and
/// across restarts, without a random source per request.
#[derive(Clone, Debug)]
pub struct MintRequestId {
    prefix: &'static str,
    counter: &'static AtomicU64,
}

impl MakeRequestId for MintRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}

/// Sets `X-Request-ID` on each request that lacks one and copies it to the response.
pub fn layer()
-> ServiceBuilder<Stack<PropagateRequestIdLayer, Stack<SetRequestIdLayer<MintRequestId>, tower::layer::util::Identity>>>
{
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| format!("{:x}", protocol::time::now_millis()));
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(HEADER, MintRequestId { prefix, counter: &COUNTER }))
        .layer(PropagateRequestIdLayer::new(HEADER))
}
