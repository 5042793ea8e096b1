//! The RPC server's front door: accepts TCP connections and decides, per connection and per
//! request, what reaches jsonrpsee.
//!
//! ```text
//! TCP ─► allowed IP? ─► unauthenticated slot (oldest closed past the cap; closed after
//!        `auth_deadline` unless authenticated) ─► hyper (HTTP/1.1, WS upgrade)
//!        GET /health ─► 200, no auth
//!        credentials ─► 401 after a fixed delay, connection closed
//!        authenticated slot (slots.rs) ─► 503 and closed when none is free
//!        rate limit per client IP and per user ─► 429
//!        WebSocket upgrade ─► jsonrpsee (same slot, same deadline, calls charged to the
//!                             same rate limits and method lists: connection_limit.rs)
//!        POST ─► bounded body ─► compat::prepare ─► method lists (403) ─► jsonrpsee
//!                                                                   ─► compat::finish
//! ```
//!
//! Nothing is spent before the credentials are checked but an unauthenticated slot, which a
//! newer connection can always take: a local user without credentials cannot keep an
//! authenticated client out, nor spend its rate tokens. Everything here is bounded:
//! connections (slots.rs), bodies (read through a limit), batches (compat), requests per
//! second per client address and per user (keyed token buckets).

use super::auth::{Credentials, REFUSAL_DELAY};
use super::compat::{self, Forward};
use super::error::IN_WARMUP;
use super::slots::{ConnSlot, Refused, SlotIo, Slots};
use super::warmup::Warmup;
use crate::rpc_api::whitelist::Whitelist;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, StopHandle};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::Service;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long a client may take to send a request's headers; it also closes a keep-alive
/// connection idle that long (bitcoind's `rpcservertimeout` default is the same 30 s).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection is closed (between requests) after this long; clients reconnect. A
/// WebSocket ends then too.
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(3600);
/// Connections that have not yet sent valid credentials; past this the oldest is closed.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// A connection that has not sent valid credentials this long after it opened is closed.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(10);

/// What the front door enforces.
pub struct Policy {
    pub credentials: Arc<Credentials>,
    /// Remote clients allowed besides loopback.
    pub allow: Vec<ipnet::IpNet>,
    /// Requests per second per client address; `None` = unlimited.
    pub rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Requests per second per user (the same rate); `None` = unlimited.
    pub rate_per_user: Option<DefaultKeyedRateLimiter<String>>,
    /// Which methods each user may call.
    pub whitelist: Whitelist,
    /// Authenticated connections (HTTP and WebSocket together).
    pub max_connections: usize,
    /// Connections still waiting to authenticate.
    pub max_unauthenticated: usize,
    pub auth_deadline: Duration,
    /// A connection's life, and the grace after it for a request in flight.
    pub max_life: Duration,
    pub close_grace: Duration,
    pub max_body: usize,
}

/// Who is calling, handed to jsonrpsee with a WebSocket upgrade so that each call on the
/// socket is charged and checked as an HTTP request of the same client would be.
#[derive(Clone)]
pub struct Caller {
    pub user: Arc<str>,
    pub ip: IpAddr,
    pub policy: Arc<Policy>,
}

impl Policy {
    /// The defaults for everything but who may connect, how often, and what they may call.
    pub fn new(
        credentials: Arc<Credentials>,
        allow: Vec<ipnet::IpNet>,
        per_second: u32,
        whitelist: Whitelist,
    ) -> Policy {
        Policy {
            credentials,
            allow,
            rate: Policy::rate_limiter(per_second),
            rate_per_user: Policy::rate_limiter(per_second),
            whitelist,
            max_connections: super::MAX_CONNECTIONS as usize,
            max_unauthenticated: MAX_UNAUTHENTICATED,
            auth_deadline: AUTH_DEADLINE,
            max_life: MAX_CONNECTION_LIFE,
            close_grace: BODY_TIMEOUT,
            max_body: super::MAX_REQUEST_BYTES as usize,
        }
    }

    pub fn rate_limiter<K: Hash + Eq + Clone>(
        per_second: u32,
    ) -> Option<DefaultKeyedRateLimiter<K>> {
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

    /// Spends `n` requests of the client address's and the user's budgets; false if either
    /// is exhausted.
    pub fn charge(&self, ip: IpAddr, user: &str, n: usize) -> bool {
        let Some(n) = NonZeroU32::new(n.min(u32::MAX as usize) as u32) else {
            return true;
        };
        let by_ip = self
            .rate
            .as_ref()
            .is_none_or(|r| matches!(r.check_key_n(&ip, n), Ok(Ok(()))));
        by_ip
            && self
                .rate_per_user
                .as_ref()
                .is_none_or(|r| matches!(r.check_key_n(&user.to_string(), n), Ok(Ok(()))))
    }

    fn forget_idle_clients(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
        }
        if let Some(rate) = &self.rate_per_user {
            rate.retain_recent();
        }
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
    /// What the node is doing; read here only while the door is shut.
    pub warmup: Arc<Warmup>,
}

impl Door {
    pub fn new(status: &str) -> Door {
        Door {
            make: arc_swap::ArcSwapOption::empty(),
            warmup: Arc::new(Warmup::new(status)),
        }
    }

    pub fn open(&self, make: MakeService) {
        self.make.store(Some(Arc::new(make)));
    }
}

/// Accepts connections until `stop` fires; each connection is a task on `connections`, so
/// a shutdown can wait for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    policy: Arc<Policy>,
    door: Arc<Door>,
    stop: StopHandle,
    connections: TaskTracker,
) {
    let slots = Slots::new(policy.max_connections, policy.max_unauthenticated);
    let mut accepted: u64 = 0;
    loop {
        let (socket, remote) = tokio::select! {
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
        accepted += 1;
        if accepted % 1024 == 0 {
            policy.forget_idle_clients();
        }
        let _ = socket.set_nodelay(true);
        let slot = slots.admit();
        let io = SlotIo::new(
            socket,
            Arc::clone(&slot),
            policy.max_life + policy.close_grace,
        );
        let svc = {
            let (policy, door, slot) = (Arc::clone(&policy), Arc::clone(&door), Arc::clone(&slot));
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (policy, slot) = (Arc::clone(&policy), Arc::clone(&slot));
                let make = door.make.load_full();
                let status = door.warmup.status().unwrap_or_default();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(
                            req.map(HttpBody::new),
                            remote,
                            &policy,
                            &slot,
                            make,
                            &status,
                        )
                        .await,
                    )
                }
            })
        };
        let stopped = stop.clone().shutdown();
        let policy = Arc::clone(&policy);
        connections.spawn(async move {
            // HTTP/1.1 only (what Bitcoin clients speak; no multiplexed streams per slot),
            // with a deadline for each request's headers, so a silent client frees its slot.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .with_upgrades();
            let lifetime = tokio::time::sleep(policy.max_life);
            let unauthenticated = async {
                tokio::time::sleep(policy.auth_deadline).await;
                slot.expire();
                slot.closed().await
            };
            tokio::pin!(conn, stopped, lifetime, unauthenticated);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Let requests in flight finish; take no new ones.
                _ = &mut stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = &mut lifetime => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(policy.close_grace, conn).await;
                }
                // Closed to make room, refused a slot, or no credentials in time: dropped.
                _ = slot.closed() => {}
                _ = &mut unauthenticated => {}
            }
        });
    }
}

/// A reply that also closes the connection.
fn closing(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_many_requests() -> HttpResponse {
    rpc_refusal(
        StatusCode::TOO_MANY_REQUESTS,
        compat::INVALID_REQUEST,
        "Too many requests from this address or user: slow down",
    )
}

async fn handle(
    mut req: HttpRequest,
    remote: SocketAddr,
    policy: &Arc<Policy>,
    slot: &ConnSlot,
    make: Option<Arc<MakeService>>,
    status: &str,
) -> HttpResponse {
    if req.uri().path() == "/health" && req.method() == http::Method::GET {
        return response(StatusCode::OK, "text/plain", "OK\n");
    }
    let Some(user) = policy
        .credentials
        .user(req.headers().get(header::AUTHORIZATION))
    else {
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
        return closing(r);
    };
    if let Err(why) = slot.authenticate() {
        let message = match why {
            Refused::Full => "too many RPC connections: try again\n",
            Refused::Evicted => "the connection took too long to authenticate\n",
        };
        tracing::debug!(%remote, ?why, "authenticated RPC connection refused a slot");
        return closing(response(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            message,
        ));
    }
    if !policy.charge(remote.ip(), &user, 1) {
        return too_many_requests();
    }
    if jsonrpsee::server::ws::is_upgrade_request(&req) {
        let Some(make) = &make else {
            return response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("warming up: {status}\n"),
            );
        };
        let mut svc = make();
        req.extensions_mut().insert(Caller {
            user: Arc::from(user.as_str()),
            ip: remote.ip(),
            policy: Arc::clone(policy),
        });
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
    if !policy.charge(remote.ip(), &user, prepared.requests().saturating_sub(1)) {
        return too_many_requests();
    }
    // bitcoind's rpcwhitelist: a call the user may not make refuses the whole request.
    if let Some(method) = prepared
        .methods()
        .find(|m| !policy.whitelist.allows(&user, m))
    {
        tracing::warn!(user, method, "RPC user not allowed to call this method");
        return response(StatusCode::FORBIDDEN, "text/plain", "");
    }
    let Some(make) = make else {
        let (status_code, body) = prepared
            .refuse_all(IN_WARMUP, &format!("Warming up: {status}"))
            .finish(None);
        return response(status_code, "application/json", body.unwrap_or_default());
    };
    let forwarded = match std::mem::take(&mut prepared.forward) {
        Forward::Nothing => None,
        Forward::Batch(calls) => {
            let max_reply = super::MAX_RESPONSE_BYTES as usize;
            match super::batch::call_in_line(&make, calls, prepared.method_list(), max_reply).await
            {
                Ok(replies) => Some(replies),
                // Every request of the batch answered with why, in a batch as the client expects.
                Err(why) => {
                    let (status, body) = prepared
                        .refuse_all(compat::INVALID_REQUEST as i32, &why)
                        .finish(None);
                    return response(status, "application/json", body.unwrap_or_default());
                }
            }
        }
        Forward::Single(text) => {
            let mut svc = make();
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
