//! The block explorer: a live, read-only web page served by the node itself, under
//! `/explorer/` on the metrics port (or on a port of its own, `explorer = "IP:PORT"`).
//!
//! ```text
//! browser ─GET /explorer/…─► HTTP server (metrics/server.rs: slots, timeouts)
//!                            └► Explorer::respond ─ rate limit per client address
//!    /explorer/  explorer.js  explorer.css ─► assets.rs (compiled in)
//!    /explorer/api/<view>?…  ─► views.rs ─► read-only RPC methods, in process (api.rs)
//!    /explorer/api/search?q= ─► search.rs
//!    /explorer/events        ─► events.rs (server-sent events) ◄─ feed.rs ◄─ subscriptions
//! ```
//!
//! Read-only by construction: the explorer holds only the RPC methods of
//! [`api::READ_ONLY`] (public chain data; no wallet, no admin, no files, no cookie), reads
//! no request body and answers only `GET`/`HEAD`. It imports nothing of the node but
//! `types`: the node hands it its RPC method table, so it shows exactly what RPC answers.

mod api;
mod assets;
mod events;
mod feed;
mod search;
mod views;

pub use api::READ_ONLY;
pub use events::STREAM_LIFE;

use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{header, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use jsonrpsee::Methods;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the explorer lives on a shared port.
pub const PREFIX: &str = "/explorer";
/// Event streams open at once, and from one client address: the rest of the port's
/// connections stay free for pages and scrapes.
pub const MAX_STREAMS: usize = 32;
pub const MAX_STREAMS_PER_IP: usize = 4;
/// Requests per second per client address unless configured (twice that in a burst).
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// How often the rate limiter forgets addresses that went quiet.
const FORGET_QUIET_EVERY: Duration = Duration::from_secs(60);
/// Default length of the block list.
const DEFAULT_BLOCKS: u64 = 10;

/// A response body: whole, or a stream of events.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// Set on a response whose connection must outlive the server's usual per-connection time
/// (an event stream): how long it may last.
#[derive(Clone, Copy, Debug)]
pub struct LongLived(pub Duration);

#[derive(Debug, thiserror::Error)]
pub enum ExplorerError {
    #[error("the explorer reads the RPC method {0}, which this node does not have")]
    MissingMethod(&'static str),
}

/// What the node's configuration decides.
#[derive(Clone, Copy, Debug)]
pub struct ExplorerParams {
    /// Requests per second per client address (twice that in a burst); 0 for no limit.
    pub rate_limit: u32,
}

/// Streams open per client address.
type StreamsByIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A place among the open event streams; given back when the stream ends.
struct StreamSlot {
    _global: OwnedSemaphorePermit,
    by_ip: StreamsByIp,
    ip: IpAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// The explorer: its method table, live feed, limits.
pub struct Explorer {
    api: api::ReadOnly,
    feed: Arc<feed::Feed>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    streams: Arc<Semaphore>,
    streams_by_ip: StreamsByIp,
    shutdown: CancellationToken,
}

impl Explorer {
    /// Takes the read-only methods out of `methods` and starts the live feed on `tasks`.
    pub fn start(
        methods: &Methods,
        params: ExplorerParams,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<Explorer>, ExplorerError> {
        let api = api::ReadOnly::new(methods).map_err(ExplorerError::MissingMethod)?;
        let feed = feed::start(api.clone(), shutdown.clone(), tasks);
        let rate = NonZeroU32::new(params.rate_limit).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
            DefaultKeyedRateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        let explorer = Arc::new(Explorer {
            api,
            feed,
            rate,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            streams_by_ip: StreamsByIp::default(),
            shutdown: shutdown.clone(),
        });
        if explorer.rate.is_some() {
            let e = Arc::clone(&explorer);
            tasks.spawn(async move {
                let mut every = tokio::time::interval(FORGET_QUIET_EVERY);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = every.tick() => {}
                    }
                    if let Some(rate) = &e.rate {
                        rate.retain_recent();
                    }
                }
            });
        }
        Ok(explorer)
    }

    /// Answers a request whose path starts with [`PREFIX`], from the client at `peer`.
    pub async fn respond(&self, method: &Method, uri: &Uri, peer: IpAddr) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the explorer is read-only: GET only\n",
            );
            return with_header(r, header::ALLOW, "GET, HEAD");
        }
        if let Some(rate) = &self.rate {
            if rate.check_key(&peer).is_err() {
                let r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests from your address: slow down",
                );
                return with_header(r, header::RETRY_AFTER, "1");
            }
        }
        self.feed.touch();
        let path = uri.path().strip_prefix(PREFIX).unwrap_or(uri.path());
        if path.is_empty() {
            // Relative links in the page need the trailing slash.
            let r = text(StatusCode::PERMANENT_REDIRECT, "");
            return with_header(r, header::LOCATION, "/explorer/");
        }
        if path == "/events" {
            return self.events(peer);
        }
        if let Some(view) = path.strip_prefix("/api/") {
            let query = Query::parse(uri.query());
            return match self.view(view, &query).await {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(e) => error(e.status, &e.message),
            };
        }
        match assets::find(path) {
            Some(a) => {
                let mut r = Response::new(full(a.body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                );
                r
            }
            None => error(StatusCode::NOT_FOUND, &format!("no page {}", uri.path())),
        }
    }

    async fn view(&self, view: &str, q: &Query) -> Result<Value, views::ViewError> {
        let api = &self.api;
        match view {
            "summary" => views::summary(api).await,
            "blocks" => {
                let count = q.number("count")?.unwrap_or(DEFAULT_BLOCKS);
                views::blocks(api, count, q.number("top")?).await
            }
            "block" => views::block(api, q.required("id")?).await,
            "tx" => views::tx(api, &self.feed, q.required("txid")?).await,
            "address" => views::address(api, q.required("address")?).await,
            "masternodes" => views::masternodes(api).await,
            "pool" => views::pool(api).await,
            "peers" => views::peers(api).await,
            "search" => search::resolve(api, q.get("q").unwrap_or(""))
                .await
                .map(|found| found.to_json())
                .map_err(|e| views::ViewError {
                    status: match e {
                        search::SearchError::NotFound(_) => StatusCode::NOT_FOUND,
                        search::SearchError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::BAD_REQUEST,
                    },
                    message: e.to_string(),
                }),
            other => Err(views::ViewError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "no view {other}: summary, blocks, block, tx, address, masternodes, pool, \
                     peers or search"
                ),
            }),
        }
    }

    fn events(&self, peer: IpAddr) -> Response<Body> {
        let busy = || {
            let r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live pages are open: close some, or reload later",
            );
            with_header(r, header::RETRY_AFTER, "30")
        };
        let Ok(global) = Arc::clone(&self.streams).try_acquire_owned() else {
            return busy();
        };
        {
            let mut by_ip = self.streams_by_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = by_ip.entry(peer).or_insert(0);
            if *n >= MAX_STREAMS_PER_IP {
                return busy();
            }
            *n += 1;
        }
        let slot = StreamSlot {
            _global: global,
            by_ip: Arc::clone(&self.streams_by_ip),
            ip: peer,
        };
        let body = events::body(self.feed.subscribe(), slot, self.shutdown.clone());
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Tells a reverse proxy (nginx) not to hold events back in its buffer.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r.extensions_mut().insert(LongLived(STREAM_LIFE));
        r
    }
}

/// The query string's parameters, decoded.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned();
        Query(pairs.collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> Result<&str, views::ViewError> {
        match self.get(key).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(views::ViewError::bad_request(format!("missing ?{key}="))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<u64>, views::ViewError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                views::ViewError::bad_request(format!("{key} must be a whole number, not {v:?}"))
            }),
        }
    }
}

fn with_header(
    mut r: Response<Body>,
    name: header::HeaderName,
    value: &'static str,
) -> Response<Body> {
    r.headers_mut()
        .insert(name, HeaderValue::from_static(value));
    r
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Live data: a cached answer would be stale within a block.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `{"error": message}` with `status`: what the page shows the user.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explorer over stand-in methods (each answers 7), with `rate` requests a second.
    fn explorer(rate: u32) -> (Arc<Explorer>, CancellationToken) {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let e = Explorer::start(
            &api::stand_ins(READ_ONLY),
            ExplorerParams { rate_limit: rate },
            shutdown.clone(),
            &tasks,
        )
        .unwrap();
        (e, shutdown)
    }

    async fn request(e: &Explorer, method: Method, path: &str, ip: [u8; 4]) -> Response<Body> {
        e.respond(&method, &path.parse().unwrap(), IpAddr::from(ip))
            .await
    }

    async fn get(e: &Explorer, path: &str, ip: [u8; 4]) -> (StatusCode, String) {
        let r = request(e, Method::GET, path, ip).await;
        let status = r.status();
        if r.extensions().get::<LongLived>().is_some() {
            return (status, String::new());
        }
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn each_address_gets_its_own_rate_and_the_excess_gets_429() {
        let (e, shutdown) = explorer(2);
        // A burst of twice the rate passes; the next request is refused.
        for _ in 0..4 {
            assert_eq!(
                get(&e, "/explorer/explorer.css", [10, 0, 0, 1]).await.0,
                StatusCode::OK
            );
        }
        let (status, body) = get(&e, "/explorer/explorer.css", [10, 0, 0, 1]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(body.contains("slow down"), "{body}");
        assert_eq!(get(&e, "/explorer/", [10, 0, 0, 2]).await.0, StatusCode::OK);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn writes_unknown_paths_and_bad_queries_are_refused_with_a_reason() {
        let (e, shutdown) = explorer(0);
        let post = request(&e, Method::POST, "/explorer/api/summary", [127, 0, 0, 1]).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let table = [
            ("/explorer", StatusCode::PERMANENT_REDIRECT, ""),
            (
                "/explorer/nothing",
                StatusCode::NOT_FOUND,
                "no page /explorer/nothing",
            ),
            (
                "/explorer/api/wallet",
                StatusCode::NOT_FOUND,
                "no view wallet",
            ),
            (
                "/explorer/api/tx",
                StatusCode::BAD_REQUEST,
                "missing ?txid=",
            ),
            (
                "/explorer/api/blocks?count=ten",
                StatusCode::BAD_REQUEST,
                "count must be a whole number",
            ),
            (
                "/explorer/api/blocks?count=1000",
                StatusCode::BAD_REQUEST,
                "count must be 1 to 25",
            ),
            (
                "/explorer/api/search?q=hello%20there",
                StatusCode::BAD_REQUEST,
                "hello there is not",
            ),
        ];
        for (path, status, says) in table {
            let (got, body) = get(&e, path, [127, 0, 0, 1]).await;
            assert_eq!(got, status, "{path}: {body}");
            assert!(body.contains(says), "{path}: {body}");
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn event_streams_are_capped_per_address() {
        let (e, shutdown) = explorer(0);
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS_PER_IP {
            let r = request(&e, Method::GET, "/explorer/events", [10, 0, 0, 9]).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert!(r.extensions().get::<LongLived>().is_some());
            open.push(r);
        }
        assert_eq!(
            get(&e, "/explorer/events", [10, 0, 0, 9]).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&e, "/explorer/events", [10, 0, 0, 8]).await.0,
            StatusCode::OK
        );
        open.pop();
        assert_eq!(
            get(&e, "/explorer/events", [10, 0, 0, 9]).await.0,
            StatusCode::OK,
            "a closed stream frees its place"
        );
        shutdown.cancel();
    }
}
