//! The JSON-RPC server (jsonrpsee, HTTP and WebSocket on one port): Bitcoin's method names,
//! parameters, result shapes and error codes, so wallets written for bitcoind work.
//!
//! ```text
//! client ─HTTP/WS─► front.rs (allowed IPs, slots.rs, auth, rate limits, method lists
//!                             (rpc_api/whitelist.rs), body limit)
//!                   └► compat.rs (Bitcoin 1.0 dialect, named params, batches)
//!                      └► batch.rs (a batch's calls one by one, submits overlapping) ─► jsonrpsee
//!   jsonrpsee ─► blockchain.rs    (chain, UTXO reads: storage, ledger)
//!             ├► mempool.rs       (waiting transactions, fee estimate)
//!             ├► rawtx.rs         (lookup with finality fields, submit through consensus)
//!             ├► rawbuild.rs      (create, sign, decode without a wallet)
//!             ├► address.rs       (address outputs, balances, history)
//!             ├► consensus.rs     (round state, masternodes, finality certificates)
//!             ├► commits.rs       (block commit certificates, masternode participation)
//!             ├► network.rs       (peers, bans, addnode)
//!             ├► control.rs       (help from rpc_api/catalog.rs, stop, uptime)
//!             ├► backup.rs        (backup, dumptxoutset: files written by the node)
//!             └► subscriptions.rs (WebSocket: blocks, finality, address activity)
//! ```
//!
//! Reads that touch sled run as blocking methods; the only state change an RPC client can
//! cause is a transaction submitted through the consensus service, or a stop.

pub(crate) mod address;
pub mod auth;
pub(crate) mod backup;
pub(crate) mod batch;
pub(crate) mod blockchain;
mod commits;
pub(crate) mod compat;
mod connection_limit;
mod consensus;
mod control;
pub mod error;
mod front;
pub(crate) mod json;
mod mempool;
mod metrics_layer;
pub(crate) mod network;
pub(crate) mod rawbuild;
mod rawtx;
mod slots;
mod subscriptions;
pub mod warmup;

use crate::context::NodeContext;
use crate::rpc_api::catalog;
use jsonrpsee::server::{
    stop_channel, BatchRequestConfig, Methods, PingConfig, Server, ServerHandle,
};
use jsonrpsee::RpcModule;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: u32 = 8 << 20;
/// Largest response sent.
pub const MAX_RESPONSE_BYTES: u32 = 64 << 20;
/// Most simultaneous authenticated connections (HTTP and WebSocket together).
pub const MAX_CONNECTIONS: u32 = 128;
/// Most WebSocket subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 32;
/// Messages queued for one WebSocket connection; a subscription waits (up to 2 s) for room.
pub const SUBSCRIBER_QUEUE: u32 = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot start the RPC server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("RPC method table: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
    #[error("RPC method table: {0} is registered but not in the catalog, or listed but missing")]
    Catalog(String),
}

/// Every method and subscription, on one module.
pub fn module(
    ctx: Arc<NodeContext>,
    hub: subscriptions::Hub,
) -> Result<RpcModule<Arc<NodeContext>>, RpcError> {
    let mut m = RpcModule::new(ctx);
    subscriptions::register(&mut m, hub)?;
    blockchain::register(&mut m)?;
    rawtx::register(&mut m)?;
    rawbuild::register(&mut m)?;
    network::register(&mut m)?;
    mempool::register(&mut m)?;
    control::register(&mut m)?;
    address::register(&mut m)?;
    consensus::register(&mut m)?;
    commits::register(&mut m)?;
    backup::register(&mut m)?;
    check_catalog(m.method_names())?;
    Ok(m)
}

/// The catalog (help, named parameters, README) and the registered methods are the same set,
/// so nothing is listed that does not exist and nothing exists unlisted.
fn check_catalog<'a>(registered: impl Iterator<Item = &'a str>) -> Result<(), RpcError> {
    let registered: std::collections::BTreeSet<&str> = registered.collect();
    let subscriptions = catalog::SUBSCRIPTIONS
        .iter()
        .flat_map(|(sub, _, unsub, _, _)| [*sub, *unsub]);
    let listed: std::collections::BTreeSet<&str> = catalog::METHODS
        .iter()
        .map(|m| m.name)
        .chain(subscriptions)
        .collect();
    match registered.symmetric_difference(&listed).next() {
        Some(name) => Err(RpcError::Catalog(name.to_string())),
        None => Ok(()),
    }
}

/// The RPC port, bound and answering: at first every call gets -28 (warming up) with what
/// the node is doing, then, once [`Listening::open`] hands it the node, the methods.
pub struct Listening {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    door: Arc<front::Door>,
    stop: jsonrpsee::server::StopHandle,
    /// The accept loop and one task per HTTP connection (a WebSocket's only until the
    /// upgrade: jsonrpsee runs it and ends it at the stop).
    connections: TaskTracker,
}

/// Binds the RPC port early (before the database opens), as bitcoind does: clients get
/// "warming up" rather than "connection refused" while the node loads. Bind address, allowed
/// clients and rate limit come from the node's parameters.
pub async fn listen(
    params: &crate::config::NodeParams,
    credentials: Arc<auth::Credentials>,
) -> Result<Listening, RpcError> {
    let policy = front::Policy::new(
        credentials,
        params.rpc_allow_ip.clone(),
        params.rpc_rate_limit,
        params.rpc_whitelist.clone(),
    );
    listen_on(params.rpc_bind, policy).await
}

async fn listen_on(bind: SocketAddr, policy: front::Policy) -> Result<Listening, RpcError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let policy = Arc::new(policy);
    let door = Arc::new(front::Door::new("starting"));
    let (stop, handle) = stop_channel();
    let connections = TaskTracker::new();
    connections.spawn(front::serve(
        listener,
        policy,
        Arc::clone(&door),
        stop.clone(),
        connections.clone(),
    ));
    Ok(Listening {
        addr,
        handle,
        door,
        stop,
        connections,
    })
}

impl Listening {
    /// Stops taking connections and requests, and resolves once the requests in flight are
    /// answered (idle connections close at once; the caller bounds the wait). Calling it
    /// again is harmless.
    pub async fn stop(&self) {
        // Already stopped is fine: this runs on every way out of the node.
        let _ = self.handle.stop();
        self.connections.close();
        self.connections.wait().await
    }

    /// Sets what the node is doing while calls are refused with -28 (callable from the
    /// blocking thread that opens the database).
    pub fn status_setter(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let warmup = self.warmup();
        Box::new(move |status| warmup.set(status))
    }

    /// What the node is doing while its chain state cannot be read: set it (a fast sync) and
    /// calls that read the state get -28 with it until it is cleared.
    pub fn warmup(&self) -> Arc<warmup::Warmup> {
        Arc::clone(&self.door.warmup)
    }

    /// Serves every method from now on. Returns the method table, for readers in this
    /// process (the explorer) that answer from the same handlers.
    pub fn open(&self, ctx: Arc<NodeContext>) -> Result<Methods, RpcError> {
        let builder = Server::builder()
            .set_rpc_middleware(
                jsonrpsee::server::RpcServiceBuilder::new()
                    .layer(metrics_layer::RpcMetricsLayer)
                    .layer(connection_limit::ConnectionLimitLayer)
                    .layer(warmup::WarmupLayer(self.warmup())),
            )
            .max_request_body_size(MAX_REQUEST_BYTES)
            .max_response_body_size(MAX_RESPONSE_BYTES)
            // Calls in flight and open WebSockets together. The front door bounds the
            // connections (`MAX_CONNECTIONS`) and a batch (`compat::MAX_BATCH`), whose calls
            // may all be in flight at once (`batch.rs`): this bound never refuses first.
            .max_connections(MAX_CONNECTIONS * (compat::MAX_BATCH as u32 + 1))
            // A WebSocket that stops answering pings is closed, freeing its place.
            .enable_ws_ping(
                PingConfig::new()
                    .ping_interval(std::time::Duration::from_secs(30))
                    .inactive_limit(std::time::Duration::from_secs(90)),
            )
            .set_batch_request_config(BatchRequestConfig::Limit(compat::MAX_BATCH as u32))
            .max_subscriptions_per_connection(MAX_SUBSCRIPTIONS_PER_CONNECTION)
            .set_message_buffer_capacity(SUBSCRIBER_QUEUE)
            .to_service_builder();
        let hub = subscriptions::hub();
        let methods: Methods = module(Arc::clone(&ctx), hub.clone())?.into();
        // Tracked with the connections, so `stop` waits for it (it ends at the shutdown).
        self.connections.spawn(subscriptions::run_hub(ctx, hub));
        let stop = self.stop.clone();
        let served = methods.clone();
        self.door.open(Arc::new(move || {
            tower::util::BoxService::new(builder.clone().build(served.clone(), stop.clone()))
        }));
        self.door.warmup.clear();
        Ok(methods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Before the node is handed over, every call gets -28 with what the node is doing, in
    /// the caller's dialect, over real TCP; `/health` already answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_get_warming_up_until_the_node_opens() {
        let creds = Arc::new(auth::Credentials::new("c00k1e", None, &[]));
        let policy = front::Policy::new(creds, Vec::new(), 0, Default::default());
        let rpc = listen_on("127.0.0.1:0".parse().unwrap(), policy)
            .await
            .unwrap();
        (rpc.status_setter())("loading the UTXO set");
        let url = format!("http://127.0.0.1:{}/", rpc.addr.port());
        let (legacy, modern, health) = tokio::task::spawn_blocking(move || {
            let post = |body: Value| {
                let r = ureq::post(&url)
                    .set("Authorization", "Basic X19jb29raWVfXzpjMDBrMWU=")
                    .send_string(&body.to_string());
                let (status, text) = match r {
                    Ok(r) => (r.status(), r.into_string().unwrap()),
                    Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
                    Err(e) => panic!("{e}"),
                };
                (status, serde_json::from_str::<Value>(&text).unwrap())
            };
            let legacy = post(json!({"method": "getblockcount", "params": [], "id": 5}));
            let modern =
                post(json!({"jsonrpc": "2.0", "method": "getblockcount", "params": [], "id": 6}));
            let health = ureq::get(&format!("{url}health")).call().unwrap().status();
            (legacy, modern, health)
        })
        .await
        .unwrap();
        assert_eq!(legacy.0, 500);
        assert_eq!(legacy.1["error"]["code"], -28);
        assert_eq!(legacy.1["id"], 5);
        assert!(legacy.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loading the UTXO set"));
        assert_eq!(modern.0, 200);
        assert_eq!(modern.1["error"]["code"], -28);
        assert_eq!(modern.1["jsonrpc"], "2.0");
        assert_eq!(health, 200);
        let _ = rpc.handle.stop();
    }

    /// A server with the front door of `policy` and two stand-in methods behind it (the
    /// real middleware, no node), on a runtime of its own so blocking clients can drive it.
    fn serve_stand_in(policy: front::Policy) -> (tokio::runtime::Runtime, Listening) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rpc = rt
            .block_on(listen_on("127.0.0.1:0".parse().unwrap(), policy))
            .unwrap();
        let mut m = RpcModule::new(());
        m.register_method(
            "getblockcount",
            |_, _, _| -> Result<u64, jsonrpsee::types::ErrorObjectOwned> { Ok(7) },
        )
        .unwrap();
        m.register_method(
            "stop",
            |_, _, _| -> Result<&'static str, jsonrpsee::types::ErrorObjectOwned> {
                Ok("stopping")
            },
        )
        .unwrap();
        let builder = Server::builder()
            .set_rpc_middleware(
                jsonrpsee::server::RpcServiceBuilder::new()
                    .layer(connection_limit::ConnectionLimitLayer)
                    .layer(warmup::WarmupLayer(rpc.warmup())),
            )
            .to_service_builder();
        let methods: Methods = m.into();
        let stop = rpc.stop.clone();
        rpc.door.open(Arc::new(move || {
            tower::util::BoxService::new(builder.clone().build(methods.clone(), stop.clone()))
        }));
        rpc.door.warmup.clear();
        (rt, rpc)
    }

    const COOKIE_AUTH: &str = "Basic X19jb29raWVfXzpjMDBrMWU="; // __cookie__:c00k1e

    fn cookie_policy() -> front::Policy {
        let creds = Arc::new(auth::Credentials::new("c00k1e", None, &[]));
        front::Policy::new(creds, Vec::new(), 0, Default::default())
    }

    /// POSTs `body` on a connection of its own (closed after the reply, so no pooled
    /// connection keeps a slot); the status and body, or the status 0 if the connection was
    /// closed without a reply.
    fn post(addr: SocketAddr, auth: &str, body: &str) -> (u16, String) {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build();
        let r = agent
            .post(&format!("http://{addr}/"))
            .set("Authorization", auth)
            .set("Connection", "close")
            .send_string(body);
        match r {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    fn getblockcount(addr: SocketAddr, auth: &str) -> (u16, String) {
        post(
            addr,
            auth,
            r#"{"jsonrpc":"2.0","method":"getblockcount","params":[],"id":1}"#,
        )
    }

    type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

    /// A WebSocket client, if the server upgrades the connection.
    fn websocket(addr: SocketAddr, auth: &str) -> Option<Ws> {
        use tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", auth.parse().unwrap());
        tungstenite::connect(req).ok().map(|(ws, _)| ws)
    }

    fn ws_call(ws: &mut Ws, id: u64, method: &str) -> Value {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []});
        ws.send(tungstenite::Message::text(req.to_string()))
            .unwrap();
        loop {
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                _ => continue,
            }
        }
    }

    /// A fast sync after the door opened: state reads get -28 with its progress, in both
    /// dialects and over a WebSocket; `stop` is answered; everything is once it is cleared.
    /// The stop then ends at once: nothing is in flight.
    #[test]
    fn a_warming_node_refuses_state_reads_with_its_progress() {
        let (rt, rpc) = serve_stand_in(cookie_policy());
        let addr = rpc.addr;
        let status = "fast sync: verifying certified headers, 200 of 1000 (20%)";
        rpc.warmup().set(status);
        let legacy = r#"{"method":"getblockcount","params":[],"id":3}"#;
        let (code, body) = post(addr, COOKIE_AUTH, legacy);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code, 500, "{body}");
        assert_eq!(v["error"]["code"], -28);
        assert_eq!(v["error"]["message"], format!("Warming up: {status}"));
        let (code, body) = getblockcount(addr, COOKIE_AUTH);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((code, &v["error"]["code"]), (200, &json!(-28)), "{body}");
        let (_, body) = post(addr, COOKIE_AUTH, r#"{"method":"stop","params":[],"id":4}"#);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["result"], "stopping", "{body}");
        let mut ws = websocket(addr, COOKIE_AUTH).unwrap();
        assert_eq!(ws_call(&mut ws, 1, "getblockcount")["error"]["code"], -28);

        rpc.warmup().clear();
        assert_eq!(ws_call(&mut ws, 2, "getblockcount")["result"], 7);
        let (code, body) = getblockcount(addr, COOKIE_AUTH);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((code, &v["result"]), (200, &json!(7)), "{body}");
        rt.block_on(rpc.stop());
        assert_eq!(
            getblockcount(addr, COOKIE_AUTH).0,
            0,
            "answered after the stop"
        );
    }

    /// Waits (up to a generous deadline) for `f` to return something.
    fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not before the deadline"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Issue 16 §8: a local user without credentials held every connection slot (503 for an
    /// authenticated call) and spent the address's rate tokens. Now neither idle
    /// connections nor refused credentials keep an authenticated client out.
    #[test]
    fn unauthenticated_connections_cannot_keep_an_authenticated_client_out() {
        let mut policy = cookie_policy();
        policy.rate = front::Policy::rate_limiter(5);
        policy.rate_per_user = front::Policy::rate_limiter(5);
        policy.auth_deadline = std::time::Duration::from_secs(2);
        let (_rt, rpc) = serve_stand_in(policy);
        let addr = rpc.addr;
        // More idle connections than there are slots of any kind.
        let idle: Vec<std::net::TcpStream> = (0..2 * MAX_CONNECTIONS as usize)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // And more refused guesses than the address's burst of rate tokens, at once.
        let guesses: Vec<_> = (0..20)
            .map(|_| {
                std::thread::spawn(move || getblockcount(addr, "Basic X19jb29raWVfXzp3cm9uZw==").0)
            })
            .collect();
        for g in guesses {
            assert!(matches!(g.join().unwrap(), 401 | 0));
        }
        let (status, body) = getblockcount(addr, COOKIE_AUTH);
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["result"], 7);
        // An idle connection that never authenticates is closed.
        let mut last = idle.into_iter().last().unwrap();
        last.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0u8; 16];
        let read = std::io::Read::read(&mut last, &mut buf);
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let _ = rpc.handle.stop();
    }

    /// Issue 16 §8: an upgraded WebSocket left the slot count, the connection's lifetime
    /// and the client's rate limit. Now it holds its slot until it closes, ends with the
    /// connection's life, and its calls draw from the same budgets as HTTP requests.
    #[test]
    fn websockets_keep_their_slot_share_the_rate_limit_and_end_in_time() {
        let mut policy = cookie_policy();
        policy.max_connections = 2;
        policy.rate = front::Policy::rate_limiter(1);
        policy.rate_per_user = front::Policy::rate_limiter(1);
        let (_rt, rpc) = serve_stand_in(policy);
        let addr = rpc.addr;

        // The budget spent over HTTP is spent for the WebSocket too (retried in case a
        // token refilled between the two).
        let mut ws1 = websocket(addr, COOKIE_AUTH).unwrap();
        eventually(
            "a WebSocket call refused once HTTP spent the budget",
            || {
                while getblockcount(addr, COOKIE_AUTH).0 != 429 {}
                let reply = ws_call(&mut ws1, 1, "getblockcount");
                let refused = reply["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Too many requests"));
                refused.then_some(())
            },
        );

        // Two WebSockets hold both slots: an HTTP client gets 503 until one closes (the
        // slot is checked before the rate limit).
        let ws2 = eventually("a second WebSocket", || websocket(addr, COOKIE_AUTH));
        let (status, _) = getblockcount(addr, COOKIE_AUTH);
        assert_eq!(status, 503);
        drop(ws1);
        eventually("the closed WebSocket's slot to free", || {
            (getblockcount(addr, COOKIE_AUTH).0 == 200).then_some(())
        });
        drop(ws2);
        let _ = rpc.handle.stop();
    }

    #[test]
    fn a_websocket_ends_with_its_connection_life() {
        let mut policy = cookie_policy();
        policy.max_life = std::time::Duration::from_secs(1);
        policy.close_grace = std::time::Duration::from_secs(1);
        let (_rt, rpc) = serve_stand_in(policy);
        let mut ws = websocket(rpc.addr, COOKIE_AUTH).unwrap();
        assert_eq!(ws_call(&mut ws, 1, "getblockcount")["result"], 7);
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                .unwrap();
        }
        // The server ends the session: the read fails or sees a close, long before the
        // read timeout.
        let started = std::time::Instant::now();
        let ended = loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(_)) | Err(_) => break true,
                Ok(_) => continue,
            }
        };
        assert!(ended && started.elapsed() < std::time::Duration::from_secs(60));
        let _ = rpc.handle.stop();
    }

    /// bitcoind's rpcwhitelist: a user limited to some methods gets 403 (empty body) for a
    /// request with any other, over HTTP; a JSON-RPC error per call over a WebSocket.
    #[test]
    fn method_lists_limit_users_as_bitcoind_does() {
        let creds = Arc::new(auth::Credentials::new(
            "c00k1e",
            Some(("monitor", "a password of 16+")),
            &[],
        ));
        let whitelist =
            crate::rpc_api::whitelist::Whitelist::parse(&["monitor:getblockcount".into()], None)
                .unwrap();
        let (_rt, rpc) = serve_stand_in(front::Policy::new(creds, Vec::new(), 0, whitelist));
        let addr = rpc.addr;
        let monitor = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "monitor:a password of 16+"
            )
        );
        assert_eq!(getblockcount(addr, &monitor).0, 200);
        let stop = post(addr, &monitor, r#"{"method":"stop","params":[],"id":1}"#);
        assert_eq!(stop, (403, String::new()));
        let batch = r#"[{"method":"getblockcount","id":1},{"method":"stop","id":2}]"#;
        assert_eq!(post(addr, &monitor, batch).0, 403);
        // Default: a user without an entry (the cookie here) may call nothing.
        assert_eq!(getblockcount(addr, COOKIE_AUTH).0, 403);
        let mut ws = websocket(addr, &monitor).unwrap();
        assert_eq!(ws_call(&mut ws, 1, "getblockcount")["result"], 7);
        let refused = ws_call(&mut ws, 2, "stop");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("not allowed to call method stop"),
            "{refused}"
        );
        let _ = rpc.handle.stop();
    }
}
