//! The RPC server's front door: accepts TCP connections and decides, per connection and per
//! request, what reaches jsonrpsee.
//!
//! ```text
//! TCP ─► allowed IP? ─► connection slot? ─► hyper (HTTP/1.1, WS upgrade)
//!        GET /health ─► 200, no auth
//!        rate limit per IP ─► 429 │ credentials ─► 401 after a fixed delay
//!        WebSocket upgrade ─► jsonrpsee
//!        POST ─► bounded body ─► compat::prepare ─► jsonrpsee ─► compat::finish
//! ```
//!
//! Everything here is bounded: connections (a semaphore), bodies (read through a limit),
//! batches (compat), requests per second per client address (a keyed token bucket).

use super::auth::{Credentials, REFUSAL_DELAY};
use super::compat;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, StopHandle};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the front door enforces.
pub struct Policy {
    pub credentials: Arc<Credentials>,
    /// Remote clients allowed besides loopback.
    pub allow: Vec<ipnet::IpNet>,
    /// Requests per second per client address; `None` = unlimited.
    pub rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    pub max_connections: usize,
    pub max_body: usize,
}

impl Policy {
    pub fn rate_limiter(per_second: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        Some(DefaultKeyedRateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ))
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<HttpBody>,
) -> HttpResponse {
    let mut r = HttpResponse::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON-RPC error outside any request (bitcoind's legacy shape).
fn rpc_refusal(status: StatusCode, code: i64, message: &str) -> HttpResponse {
    let body = serde_json::json!({"result": null, "error": {"code": code, "message": message}, "id": null});
    response(status, "application/json", body.to_string())
}

/// Makes the jsonrpsee service for one request (type-erased, so middleware can change).
pub type MakeService =
    Arc<dyn Fn() -> tower::util::BoxService<HttpRequest, HttpResponse, BoxError> + Send + Sync>;

/// Accepts connections until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    policy: Arc<Policy>,
    make: MakeService,
    stop: StopHandle,
) {
    let slots = Arc::new(Semaphore::new(policy.max_connections));
    let mut accepted: u64 = 0;
    loop {
        let (mut socket, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::debug!(error = %e, "RPC accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.clone().shutdown() => break,
        };
        if !policy.allows_ip(remote.ip()) {
            tracing::debug!(%remote, "RPC connection from an address not in rpc_allow_ip refused");
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
            continue;
        };
        accepted += 1;
        if accepted % 1024 == 0 {
            if let Some(rate) = &policy.rate {
                rate.retain_recent();
            }
        }
        let _ = socket.set_nodelay(true);
        let policy = Arc::clone(&policy);
        let make = Arc::clone(&make);
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let policy = Arc::clone(&policy);
            let make = Arc::clone(&make);
            async move {
                Ok::<_, std::convert::Infallible>(
                    handle(req.map(HttpBody::new), remote, &policy, make).await,
                )
            }
        });
        let stopped = stop.clone().shutdown();
        tokio::spawn(async move {
            let _slot = slot;
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(socket), svc);
            tokio::pin!(conn, stopped);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = &mut stopped => {
                    // Let requests in flight finish; take no new ones.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn handle(
    req: HttpRequest,
    remote: SocketAddr,
    policy: &Policy,
    make: MakeService,
) -> HttpResponse {
    if req.uri().path() == "/health" && req.method() == http::Method::GET {
        return response(StatusCode::OK, "text/plain", "OK\n");
    }
    if let Some(rate) = &policy.rate {
        if rate.check_key(&remote.ip()).is_err() {
            return rpc_refusal(
                StatusCode::TOO_MANY_REQUESTS,
                -32600,
                "Too many requests from this address: slow down",
            );
        }
    }
    if !policy
        .credentials
        .allows(req.headers().get(header::AUTHORIZATION))
    {
        tokio::time::sleep(REFUSAL_DELAY).await;
        let mut r = response(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "authentication required\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
        return r;
    }
    let mut svc = make();
    if jsonrpsee::server::ws::is_upgrade_request(&req) {
        return svc.call(req).await.unwrap_or_else(|e| {
            response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            )
        });
    }
    if req.method() != http::Method::POST {
        return response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "JSON-RPC requests are POSTed\n",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, policy.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return rpc_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                compat::INVALID_REQUEST,
                &format!("Request body larger than {} bytes", policy.max_body),
            )
        }
    };
    let prepared = compat::prepare(&body);
    let forwarded = match &prepared.forward {
        None => None,
        Some(v) => {
            let mut inner = http::Request::from_parts(parts, HttpBody::from(v.to_string()));
            inner.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            inner.headers_mut().remove(header::CONTENT_LENGTH);
            match svc.call(inner).await {
                Ok(resp) => match resp.into_body().collect().await {
                    Ok(b) => Some(b.to_bytes()),
                    Err(e) => {
                        tracing::debug!(error = %e, "RPC reply body failed");
                        Some(Bytes::new())
                    }
                },
                Err(e) => {
                    return rpc_refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        -1,
                        &format!("internal error: {e}"),
                    )
                }
            }
        }
    };
    match prepared.finish(forwarded.as_deref()) {
        (status, Some(body)) => response(status, "application/json", body),
        (status, None) => response(status, "application/json", ""),
    }
}
