//! Peers: `getpeerinfo`, `getconnectioncount`.

use super::error::RpcResult;
use crate::node::NodeContext;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_method("getconnectioncount", |_, ctx, _| -> RpcResult<usize> {
        Ok(ctx.network.peer_count())
    })?;
    m.register_method("getpeerinfo", |_, ctx, _| -> RpcResult<Vec<Value>> {
        Ok(ctx
            .network
            .peer_snapshots()
            .into_iter()
            .map(|p| {
                let mut v = json!({
                    "id": p.id,
                    "addr": p.addr.to_string(),
                    "addrbind": p.listen_addr,
                    "nodekey": p.node_key.to_hex(),
                    "inbound": p.inbound,
                    "version": p.version,
                    "conntime": p.connected_at_secs,
                    "startingheight": p.starting_height,
                    "synced_blocks": p.best_height,
                    "bytessent": p.bytes_sent,
                    "bytesrecv": p.bytes_recv,
                    "msgssent": p.msgs_sent,
                    "msgsrecv": p.msgs_recv,
                    "banscore": p.score,
                    "masternode": ctx.is_masternode(&p.node_key),
                });
                if let Some(ping) = p.ping_secs {
                    v["pingtime"] = json!(ping);
                }
                v
            })
            .collect())
    })?;
    Ok(())
}
