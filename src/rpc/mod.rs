//! The JSON-RPC server (jsonrpsee, HTTP and WebSocket on one port): Bitcoin's method names,
//! parameters, result shapes and error codes, so wallets written for bitcoind work.
//!
//! ```text
//! client ─HTTP/WS─► jsonrpsee ─► blockchain.rs  (reads: storage, ledger)
//!                             ├► rawtx.rs       (reads + submit through consensus)
//!                             ├► network.rs     (peer registry)
//!                             ├► address.rs     (address outputs and balances)
//!                             ├► consensus.rs   (round state, masternodes)
//!                             ├► control.rs     (stop, uptime)
//!                             └► backup.rs      (backup, dumptxoutset: files on the node)
//! ```
//!
//! Reads that touch sled run as blocking methods; the only state change an RPC client can
//! cause is a transaction submitted through the consensus service, or a stop.

mod address;
pub mod auth;
mod backup;
mod blockchain;
pub mod client;
mod consensus;
mod control;
pub mod error;
mod json;
mod network;
mod rawtx;

use crate::node::NodeContext;
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::RpcModule;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: u32 = 8 << 20;
/// Largest response sent.
pub const MAX_RESPONSE_BYTES: u32 = 64 << 20;
/// Most simultaneous connections.
pub const MAX_CONNECTIONS: u32 = 128;

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
}

/// Every method, on one module.
pub fn module(ctx: Arc<NodeContext>) -> Result<RpcModule<Arc<NodeContext>>, RpcError> {
    let mut m = RpcModule::new(ctx);
    blockchain::register(&mut m)?;
    rawtx::register(&mut m)?;
    network::register(&mut m)?;
    control::register(&mut m)?;
    address::register(&mut m)?;
    consensus::register(&mut m)?;
    backup::register(&mut m)?;
    Ok(m)
}

/// Binds the server and starts serving; returns the bound address and the handle that stops it.
pub async fn start(
    ctx: Arc<NodeContext>,
    bind: SocketAddr,
    credentials: Arc<auth::Credentials>,
) -> Result<(SocketAddr, ServerHandle), RpcError> {
    let server = Server::builder()
        .set_http_middleware(tower::ServiceBuilder::new().layer(auth::AuthLayer(credentials)))
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(MAX_CONNECTIONS)
        .build(bind)
        .await
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let addr = server
        .local_addr()
        .map_err(|source| RpcError::Bind { addr: bind, source })?;
    let handle = server.start(module(ctx)?);
    Ok((addr, handle))
}
