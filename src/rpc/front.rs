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
use super::error::IN_WARMUP;
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

/// How long a client may take to send a request's headers; it also closes a keep-alive
/// connection idle that long (bitcoind's `rpcservertimeout` default is the same 30 s).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A connection is closed (between requests) after this long; clients reconnect.
pub const MAX_CONNECTION_LIFE: std::time::Duration = std::time::Duration::from_secs(3600);

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

/// Where requests go: nowhere yet while the node warms up (each call gets -28 and the
/// status), then the node's methods.
pub struct Door {
    make: arc_swap::ArcSwapOption<MakeService>,
    status: arc_swap::ArcSwap<String>,
}

impl Door {
    pub fn new(status: &str) -> Door {
        Door {
            make: arc_swap::ArcSwapOption::empty(),
            status: arc_swap::ArcSwap::from_pointee(status.to_string()),
        }
    }

    pub fn set_status(&self, status: &str) {
        self.status.store(Arc::new(status.to_string()));
    }

    pub fn open(&self, make: MakeService) {
        self.make.store(Some(Arc::new(make)));
    }
}

/// Accepts connections until `stop` fires.
pub async fn serve(listener: TcpListener, policy: Arc<Policy>, door: Arc<Door>, stop: StopHandle) {
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
        let door = Arc::clone(&door);
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let policy = Arc::clone(&policy);
            let make = door.make.load_full();
            let status = door.status.load_full();
            async move {
                Ok::<_, std::convert::Infallible>(
                    handle(req.map(HttpBody::new), remote, &policy, make, &status).await,
                )
            }
        });
        let stopped = stop.clone().shutdown();
        tokio::spawn(async move {
            let _slot = slot;
            // HTTP/1.1 only (what Bitcoin clients speak; no multiplexed streams per slot),
            // with a deadline for each request's headers, so a silent client frees its slot.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(socket), svc)
                .with_upgrades();
            let lifetime = tokio::time::sleep(MAX_CONNECTION_LIFE);
            tokio::pin!(conn, stopped, lifetime);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Let requests in flight finish; take no new ones.
                _ = &mut stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = &mut lifetime => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(BODY_TIMEOUT, conn).await;
                }
            }
        });
    }
}

async fn handle(
    req: HttpRequest,
    remote: SocketAddr,
    policy: &Policy,
    make: Option<Arc<MakeService>>,
    status: &str,
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
    let is_ws = jsonrpsee::server::ws::is_upgrade_request(&req);
    let mut svc = match &make {
        Some(make) => make(),
        None if is_ws => {
            return response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("warming up: {status}\n"),
            )
        }
        // Warming up: the body is read and every request in it answered with -28.
        None => tower::util::BoxService::new(tower::service_fn(|_: HttpRequest| async {
            Err::<HttpResponse, BoxError>("warming up".into())
        })),
    };
    if is_ws {
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
    let limited = http_body_util::Limited::new(body, policy.max_body).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, limited).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return rpc_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                compat::INVALID_REQUEST,
                &format!("Request body larger than {} bytes", policy.max_body),
            )
        }
        Ok(Err(_)) => return response(StatusCode::BAD_REQUEST, "text/plain", "unreadable body\n"),
        Err(_) => {
            return response(
                StatusCode::REQUEST_TIMEOUT,
                "text/plain",
                "the request body did not arrive in time\n",
            )
        }
    };
    let mut prepared = compat::prepare(&body);
    // A batch costs one token per request (the first was taken above).
    if let (Some(rate), Some(extra)) = (&policy.rate, prepared.requests().checked_sub(1)) {
        if let Some(n) = NonZeroU32::new(extra.min(u32::MAX as usize) as u32) {
            if !matches!(rate.check_key_n(&remote.ip(), n), Ok(Ok(()))) {
                return rpc_refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    compat::INVALID_REQUEST,
                    "Too many requests from this address: slow down",
                );
            }
        }
    }
    if make.is_none() {
        let (status_code, body) = prepared
            .refuse_all(IN_WARMUP, &format!("Warming up: {status}"))
            .finish(None);
        return response(status_code, "application/json", body.unwrap_or_default());
    }
    let forwarded = match prepared.forward.take() {
        None => None,
        Some(text) => {
            let mut inner = http::Request::from_parts(parts, HttpBody::from(text));
            inner.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            inner.headers_mut().remove(header::CONTENT_LENGTH);
            let resp = match svc.call(inner).await {
                Ok(resp) => resp,
                Err(e) => {
                    return rpc_refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        -1,
                        &format!("internal error: {e}"),
                    )
                }
            };
            // jsonrpsee refusing outright (too many connections in flight): say so.
            if resp.status() != StatusCode::OK {
                let status = resp.status();
                tracing::debug!(%status, "RPC request refused by the server");
                return rpc_refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -1,
                    &format!("The node is busy ({status}): try again"),
                );
            }
            match resp.into_body().collect().await {
                Ok(b) => Some(b.to_bytes()),
                Err(e) => {
                    tracing::debug!(error = %e, "RPC reply body failed");
                    Some(Bytes::new())
                }
            }
        }
    };
    match prepared.finish(forwarded.as_deref()) {
        (status, Some(body)) => response(status, "application/json", body),
        (status, None) => {
            let mut r = HttpResponse::new(HttpBody::empty());
            *r.status_mut() = status;
            r
        }
    }
}
