//! The metrics port: a small hyper HTTP/1.1 server that answers `GET` (and `HEAD`) on
//! `/metrics`, `/health` and `/ready`, and nothing else.
//!
//! ```text
//! accept ─► connection slot (at most MAX_CONNECTIONS) ─► hyper http1, one request,
//!           headers within HEADER_TIMEOUT, whole exchange within CONNECTION_TIMEOUT
//! ```
//!
//! Bounded on every side, since the port may be reachable by more than the scraper: request
//! heads are capped at MAX_HEAD_BYTES, bodies are never read, each connection carries one
//! request, and it ends with the node's shutdown token.

use super::ready;
use crate::node::NodeContext;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, response included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr} (metrics_bind; \"\" turns it off): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `ctx.params.metrics_bind` (if set) and serves it on `tasks` until the node's
/// shutdown token is cancelled. Returns the bound address, or `None` when metrics are off.
pub async fn start(
    ctx: Arc<NodeContext>,
    tasks: &TaskTracker,
) -> Result<Option<SocketAddr>, MetricsError> {
    let Some(addr) = ctx.params.metrics_bind else {
        return Ok(None);
    };
    let bind = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let t = tasks.clone();
    tasks.spawn(accept_loop(ctx, listener, t));
    Ok(Some(bound))
}

async fn accept_loop(ctx: Arc<NodeContext>, listener: TcpListener, tasks: TaskTracker) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            s = Arc::clone(&slots).acquire_owned() => s,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually out of file descriptors: wait rather than spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        tasks.spawn(async move {
            serve_connection(ctx, stream).await;
            drop(slot);
        });
    }
}

async fn serve_connection(ctx: Arc<NodeContext>, stream: tokio::net::TcpStream) {
    let shutdown = ctx.shutdown.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, std::convert::Infallible>(respond(&ctx, &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        r = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "metrics: connection error"),
            Err(_) => tracing::debug!("metrics: connection timed out"),
        },
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

async fn respond(ctx: &NodeContext, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET\n".to_string(),
        );
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            super::CONTENT_TYPE,
            super::render(ctx).await,
        ),
        "/health" => text(StatusCode::OK, PLAIN, "OK\n".to_string()),
        "/ready" => match ready::of_node(ctx) {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".to_string()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics, /health or /ready\n".to_string(),
        ),
    }
}
