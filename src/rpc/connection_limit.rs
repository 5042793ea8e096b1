//! Per-connection limits for WebSocket clients, which the front door cannot see: once
//! upgraded, a connection's messages go straight to jsonrpsee, which starts a task for each.
//! jsonrpsee builds this layer once per WebSocket connection (and once per HTTP request,
//! where the front door's per-address limits already apply), so its state is per connection:
//! at most `MAX_IN_FLIGHT` calls running at once and `rate` calls per second; past either, a
//! call is answered with an error at once instead of queuing.

use super::error::err;
use governor::{DefaultDirectRateLimiter, Quota};
use jsonrpsee::server::middleware::rpc::RpcServiceT;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::Request;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Calls one connection may have running at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The layer for `RpcServiceBuilder`; `per_second` 0 means no rate limit.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimitLayer {
    pub per_second: u32,
}

impl<S> tower::Layer<S> for ConnectionLimitLayer {
    type Service = ConnectionLimit<S>;
    fn layer(&self, inner: S) -> ConnectionLimit<S> {
        let rate = NonZeroU32::new(self.per_second).map(|r| {
            let burst = NonZeroU32::new(self.per_second.saturating_mul(2)).unwrap_or(r);
            Arc::new(DefaultDirectRateLimiter::direct(
                Quota::per_second(r).allow_burst(burst),
            ))
        });
        ConnectionLimit {
            inner,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            rate,
        }
    }
}

#[derive(Clone)]
pub struct ConnectionLimit<S> {
    inner: S,
    in_flight: Arc<Semaphore>,
    rate: Option<Arc<DefaultDirectRateLimiter>>,
}

impl<'a, S> RpcServiceT<'a> for ConnectionLimit<S>
where
    S: RpcServiceT<'a>,
    S::Future: Send + 'a,
{
    type Future = Pin<Box<dyn Future<Output = MethodResponse> + Send + 'a>>;

    fn call(&self, request: Request<'a>) -> Self::Future {
        let refuse = |request: Request<'a>, why: &str| {
            let response = MethodResponse::error(request.id, err(-32600, why));
            Box::pin(std::future::ready(response)) as Self::Future
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return refuse(
                request,
                "Too many calls in flight on this connection: wait for replies",
            );
        };
        if self.rate.as_ref().is_some_and(|r| r.check().is_err()) {
            return refuse(request, "Too many calls on this connection: slow down");
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let r = response.await;
            drop(permit);
            r
        })
    }
}
