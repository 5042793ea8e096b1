//! Per-call limits for WebSocket clients, which the front door cannot see: once upgraded, a
//! connection's messages go straight to jsonrpsee, which starts a task for each. jsonrpsee
//! builds this layer once per WebSocket connection (and once per HTTP request, where the front
//! door's checks already ran), so its state is per connection: at most `MAX_IN_FLIGHT` calls
//! running at once. Each WebSocket call is also charged to its client's rate limits (per
//! address and per user, the buckets HTTP requests draw from) and checked against the user's
//! method list, through the [`Caller`] the front door attached to the upgrade request; past
//! any limit a call is answered with an error at once instead of queuing.

use super::error::err;
use super::front::Caller;
use jsonrpsee::server::middleware::rpc::RpcServiceT;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::Request;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Calls one connection may have running at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The layer for `RpcServiceBuilder`.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimitLayer;

impl<S> tower::Layer<S> for ConnectionLimitLayer {
    type Service = ConnectionLimit<S>;
    fn layer(&self, inner: S) -> ConnectionLimit<S> {
        ConnectionLimit {
            inner,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

#[derive(Clone)]
pub struct ConnectionLimit<S> {
    inner: S,
    in_flight: Arc<Semaphore>,
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
        if let Some(caller) = request.extensions().get::<Caller>() {
            let method = request.method_name();
            if !caller.policy.whitelist.allows(&caller.user, method) {
                tracing::warn!(user = %caller.user, method, "RPC user not allowed to call this method");
                let why = format!(
                    "RPC user {} is not allowed to call method {method}",
                    caller.user
                );
                return refuse(request, &why);
            }
            if !caller.policy.charge(caller.ip, &caller.user, 1) {
                return refuse(
                    request,
                    "Too many requests from this address or user: slow down",
                );
            }
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return refuse(
                request,
                "Too many calls in flight on this connection: wait for replies",
            );
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let r = response.await;
            drop(permit);
            r
        })
    }
}
