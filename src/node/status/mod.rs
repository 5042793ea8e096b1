//! The node's status port (`metrics_bind`, localhost by default, so a scraper never needs RPC
//! credentials): a small hyper HTTP/1.1 server that answers `GET` (and `HEAD`) on
//! `/metrics`, `/health` and `/ready`, and the explorer's pages under `/explorer/`; or, on the
//! explorer's own port (`explorer = "IP:PORT"`), the explorer alone.
//!
//! ```text
//! GET /metrics    ─► sample.rs: the node's state now ─► metrics::record ─► metrics::encode
//! GET /health     ─► 200 while the process serves
//! GET /ready      ─► ready.rs: synced and connected to a quorum? 200 : 503 + reason
//! GET /explorer/… ─► crate::explorer (the block explorer, when it shares this port)
//! ```
//!
//! ```text
//! accept ─► connection slot (at most MAX_CONNECTIONS) ─► hyper http1, one request,
//!           headers within HEADER_TIMEOUT, whole exchange within CONNECTION_TIMEOUT
//!           (an explorer event stream: within the life it asks for, explorer::LongLived)
//! ```
//!
//! Bounded on every side, since the port may be reachable by more than the scraper: request
//! heads are capped at MAX_HEAD_BYTES, bodies are never read, each connection carries one
//! request, and it ends with the node's shutdown token. Event streams take at most
//! `explorer::MAX_STREAMS` of the slots, so pages and scrapes always find one.

mod ready;
mod sample;

use crate::context::NodeContext;
use crate::explorer::{Body, Explorer, LongLived, PREFIX};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
pub use sample::render;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Connections served at once; more wait in the kernel's accept queue. Twice the explorer's
/// event streams, so streams never take them all.
pub const MAX_CONNECTIONS: usize = 2 * crate::explorer::MAX_STREAMS;
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
    #[error("cannot serve the explorer on {addr} (explorer; \"off\" turns it off): {source}")]
    BindExplorer {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What one listening port answers.
#[derive(Clone)]
struct Routes {
    /// `/metrics`, `/health`, `/ready`.
    metrics: bool,
    /// `/explorer/...`.
    explorer: Option<Arc<Explorer>>,
}

/// Where the node's HTTP ports listen.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bound {
    pub metrics: Option<SocketAddr>,
    /// The explorer's own port, when it has one (else it is on `metrics`, if given one).
    pub explorer: Option<SocketAddr>,
}

/// The explorer to serve, and where: on a port of its own, or (`None`) on the metrics port.
pub struct ExplorerSite {
    pub explorer: Arc<Explorer>,
    pub own_port: Option<SocketAddr>,
}

/// Binds `ctx.params.metrics_bind` (if set) and the explorer's own port (if it has one), and
/// serves them on `tasks` until the node's shutdown token is cancelled.
pub async fn start(
    ctx: Arc<NodeContext>,
    site: Option<ExplorerSite>,
    tasks: &TaskTracker,
) -> Result<Bound, MetricsError> {
    let mut bound = Bound::default();
    let own_port = site.as_ref().and_then(|s| s.own_port);
    let explorer = site.map(|s| s.explorer);
    if let Some(addr) = ctx.params.metrics_bind {
        let bind = |source| MetricsError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        bound.metrics = Some(listener.local_addr().map_err(bind)?);
        let routes = Routes {
            metrics: true,
            explorer: explorer.clone().filter(|_| own_port.is_none()),
        };
        tasks.spawn(accept_loop(
            Arc::clone(&ctx),
            routes,
            listener,
            tasks.clone(),
        ));
    }
    if let (Some(addr), Some(explorer)) = (own_port, explorer) {
        let bind = |source| MetricsError::BindExplorer { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        bound.explorer = Some(listener.local_addr().map_err(bind)?);
        let routes = Routes {
            metrics: false,
            explorer: Some(explorer),
        };
        tasks.spawn(accept_loop(ctx, routes, listener, tasks.clone()));
    }
    Ok(bound)
}

async fn accept_loop(
    ctx: Arc<NodeContext>,
    routes: Routes,
    listener: TcpListener,
    tasks: TaskTracker,
) {
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
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually out of file descriptors: wait rather than spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        let routes = routes.clone();
        tasks.spawn(async move {
            serve_connection(ctx, routes, stream, peer.ip()).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    ctx: Arc<NodeContext>,
    routes: Routes,
    stream: tokio::net::TcpStream,
    peer: IpAddr,
) {
    let shutdown = ctx.shutdown.clone();
    // How long this connection may last (milliseconds); an event stream lengthens it.
    let life_ms = Arc::new(AtomicU64::new(CONNECTION_TIMEOUT.as_millis() as u64));
    let life = Arc::clone(&life_ms);
    let service = hyper::service::service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        let routes = routes.clone();
        let life = Arc::clone(&life);
        async move {
            let r = respond(&ctx, &routes, &req, peer).await;
            if let Some(LongLived(d)) = r.extensions().get::<LongLived>() {
                let ms = CONNECTION_TIMEOUT.saturating_add(*d).as_millis() as u64;
                life.store(ms, Ordering::Relaxed);
            }
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let started = tokio::time::Instant::now();
    loop {
        let ends = started + Duration::from_millis(life_ms.load(Ordering::Relaxed));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "metrics: connection error");
                }
                return;
            }
            _ = tokio::time::sleep_until(ends) => {
                // The response may have lengthened the life meanwhile.
                if tokio::time::Instant::now() >= started + Duration::from_millis(life_ms.load(Ordering::Relaxed)) {
                    tracing::debug!("metrics: connection timed out");
                    return;
                }
            }
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Whether `path` is the explorer's (`/explorer` or below it, not `/explorerx`).
fn is_explorer(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

async fn respond(
    ctx: &NodeContext,
    routes: &Routes,
    req: &Request<Incoming>,
    peer: IpAddr,
) -> Response<Body> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    if let Some(explorer) = &routes.explorer {
        if is_explorer(path) || (!routes.metrics && path == "/") {
            if path == "/" {
                // The explorer's own port: its root is the explorer.
                let mut r = text(StatusCode::PERMANENT_REDIRECT, PLAIN, String::new());
                r.headers_mut().insert(
                    http::header::LOCATION,
                    http::HeaderValue::from_static("/explorer/"),
                );
                return r;
            }
            return explorer.respond(req.method(), req.uri(), peer).await;
        }
    }
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
    if !routes.metrics {
        return text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: the explorer is at /explorer/\n".to_string(),
        );
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            render(ctx).await,
        ),
        "/health" => text(StatusCode::OK, PLAIN, "OK\n".to_string()),
        "/ready" => match ready::of_node(ctx) {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n".to_string()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            match routes.explorer {
                Some(_) => "not found: try /metrics, /health, /ready or /explorer/\n",
                None => "not found: try /metrics, /health or /ready\n",
            }
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_prefix_and_below_are_the_explorers() {
        for (path, ours) in [
            ("/explorer", true),
            ("/explorer/", true),
            ("/explorer/api/summary", true),
            ("/explorers", false),
            ("/metrics", false),
        ] {
            assert_eq!(super::is_explorer(path), ours, "{path}");
        }
    }
}
