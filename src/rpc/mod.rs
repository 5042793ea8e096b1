//! The JSON-RPC server (jsonrpsee, HTTP and WebSocket on one port): Bitcoin's method names,
//! parameters, result shapes and error codes, so wallets written for bitcoind work.
//!
//! ```text
//! client ─HTTP/WS─► front.rs (allowed IPs, slots, rate limit, auth, body limit)
//!                   └► compat.rs (Bitcoin 1.0 dialect, named params, batches) ─► jsonrpsee
//!   jsonrpsee ─► blockchain.rs    (chain, UTXO reads: storage, ledger)
//!             ├► mempool.rs       (waiting transactions, fee estimate)
//!             ├► rawtx.rs         (lookup with finality fields, submit through consensus)
//!             ├► rawbuild.rs      (create, sign, decode without a wallet)
//!             ├► address.rs       (address outputs, balances, history)
//!             ├► consensus.rs     (round state, masternodes, finality certificates)
//!             ├► network.rs       (peers, bans, addnode)
//!             ├► control.rs       (help from catalog.rs, stop, uptime)
//!             ├► backup.rs        (backup, dumptxoutset: files written by the node)
//!             └► subscriptions.rs (WebSocket: blocks, finality, address activity)
//! ```
//!
//! Reads that touch sled run as blocking methods; the only state change an RPC client can
//! cause is a transaction submitted through the consensus service, or a stop.

mod address;
pub mod auth;
mod backup;
mod blockchain;
pub mod catalog;
pub mod client;
mod compat;
mod connection_limit;
mod consensus;
mod control;
pub mod error;
mod front;
mod json;
mod mempool;
mod metrics_layer;
mod network;
mod rawbuild;
mod rawtx;
mod subscriptions;

use crate::node::NodeContext;
use jsonrpsee::server::{
    stop_channel, BatchRequestConfig, Methods, PingConfig, Server, ServerHandle,
};
use jsonrpsee::RpcModule;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: u32 = 8 << 20;
/// Largest response sent.
pub const MAX_RESPONSE_BYTES: u32 = 64 << 20;
/// Most simultaneous connections.
pub const MAX_CONNECTIONS: u32 = 128;
/// Most WebSocket subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 32;
/// Messages queued for one WebSocket connection before its subscriptions are dropped.
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
    /// Calls per second per client, applied per WebSocket connection too.
    rate_limit: u32,
    door: Arc<front::Door>,
    stop: jsonrpsee::server::StopHandle,
}

/// Binds the RPC port early (before the database opens), as bitcoind does: clients get
/// "warming up" rather than "connection refused" while the node loads. Bind address, allowed
/// clients and rate limit come from the node's parameters.
pub async fn listen(
    params: &crate::config::NodeParams,
    credentials: Arc<auth::Credentials>,
) -> Result<Listening, RpcError> {
    listen_on(
        params.rpc_bind,
        params.rpc_allow_ip.clone(),
        params.rpc_rate_limit,
        credentials,
    )
    .await
}

async fn listen_on(
    bind: SocketAddr,
    allow: Vec<ipnet::IpNet>,
    rate_limit: u32,
    credentials: Arc<auth::Credentials>,
) -> Result<Listening, RpcError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let policy = Arc::new(front::Policy {
        credentials,
        allow,
        rate: front::Policy::rate_limiter(rate_limit),
        max_connections: MAX_CONNECTIONS as usize,
        max_body: MAX_REQUEST_BYTES as usize,
    });
    let door = Arc::new(front::Door::new("starting"));
    let (stop, handle) = stop_channel();
    tokio::spawn(front::serve(
        listener,
        policy,
        Arc::clone(&door),
        stop.clone(),
    ));
    Ok(Listening {
        addr,
        handle,
        rate_limit,
        door,
        stop,
    })
}

impl Listening {
    /// Sets what the node is doing while calls are refused with -28 (callable from the
    /// blocking thread that opens the database).
    pub fn status_setter(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let door = Arc::clone(&self.door);
        Box::new(move |status| door.set_status(status))
    }

    /// Serves every method from now on.
    pub fn open(&self, ctx: Arc<NodeContext>) -> Result<(), RpcError> {
        let builder = Server::builder()
            .set_rpc_middleware(
                jsonrpsee::server::RpcServiceBuilder::new()
                    .layer(metrics_layer::RpcMetricsLayer)
                    .layer(connection_limit::ConnectionLimitLayer {
                        per_second: self.rate_limit,
                    }),
            )
            .max_request_body_size(MAX_REQUEST_BYTES)
            .max_response_body_size(MAX_RESPONSE_BYTES)
            // HTTP requests in flight and open WebSockets together (the front door bounds
            // the HTTP connections themselves).
            .max_connections(2 * MAX_CONNECTIONS)
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
        tokio::spawn(subscriptions::run_hub(ctx, hub));
        let stop = self.stop.clone();
        self.door.open(Arc::new(move || {
            tower::util::BoxService::new(builder.clone().build(methods.clone(), stop.clone()))
        }));
        Ok(())
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
        let rpc = listen_on("127.0.0.1:0".parse().unwrap(), Vec::new(), 0, creds)
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
}
