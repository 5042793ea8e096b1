//! Counts and times every JSON-RPC call (batch members one by one) for the metrics port:
//! `timed_rpc_requests_total{method,result}` and `timed_rpc_request_duration_seconds{method}`.
//!
//! The method label is the called name only when the server knows the method; any other
//! name is `unknown`, so a client cannot grow the label set by inventing names.

use jsonrpsee::server::middleware::rpc::RpcServiceT;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::error::METHOD_NOT_FOUND_CODE;
use jsonrpsee::types::Request;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// The label of calls to methods the server does not have.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The layer for `RpcServiceBuilder`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<'a, S> RpcServiceT<'a> for RpcMetrics<S>
where
    S: RpcServiceT<'a>,
    S::Future: 'a,
{
    type Future = Pin<Box<dyn Future<Output = MethodResponse> + Send + 'a>>;

    fn call(&self, request: Request<'a>) -> Self::Future {
        let method = request.method_name().to_string();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let label = if response.as_error_code() == Some(METHOD_NOT_FOUND_CODE) {
                UNKNOWN_METHOD
            } else {
                method.as_str()
            };
            crate::metrics::rpc_call(label, response.is_success(), started.elapsed());
            response
        })
    }
}
