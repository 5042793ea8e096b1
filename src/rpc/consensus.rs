//! TimeCoin's consensus views: `getconsensusinfo`, `masternodelist`.

use super::error::{err, RpcResult, MISC_ERROR};
use crate::node::NodeContext;
use crate::types::Address;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("getconsensusinfo", |_, ctx, _| async move {
        let tip = ctx.ledger.tip();
        let (height, round, step, proposer) = ctx
            .consensus
            .query(|d| {
                let b = d.bft();
                let proposer = b.set().proposer(b.height(), b.round());
                (b.height(), b.round(), format!("{:?}", b.step_name()), proposer)
            })
            .await
            .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?;
        let set = ctx.masternodes.load();
        RpcResult::Ok(json!({
            "height": height,
            "round": round,
            "step": step.to_lowercase(),
            "proposer": proposer.map(|p| p.to_hex()),
            "masternodes": set.len(),
            "total_weight": set.total_weight(),
            "quorum_weight": set.quorum_weight(),
            "is_masternode": set.contains_voter(&ctx.node_key),
            "last_block_time": tip.as_ref().map(|t| t.timestamp_ms / 1000),
            "last_block_time_ms": tip.as_ref().map(|t| t.timestamp_ms),
            "connected_masternodes": ctx.network.connected_keys().iter().filter(|k| set.contains_voter(k)).count(),
        }))
    })?;
    m.register_method("masternodelist", |_, ctx, _| -> RpcResult<Vec<Value>> {
        let set = ctx.masternodes.load();
        let connected = ctx.network.connected_keys();
        Ok(set
            .members()
            .map(|m| {
                json!({
                    "operator_key": m.operator_key.to_hex(),
                    "address": Address::from_public_key(ctx.params.network, &m.operator_key).to_string(),
                    "tier": m.tier.name(),
                    "weight": m.tier.weight(),
                    "collateral": { "txid": m.collateral.txid.to_hex(), "vout": m.collateral.index },
                    "p2p_addr": m.p2p_addr,
                    "registered_height": m.registered_height,
                    "connected": connected.contains(&m.operator_key) || m.operator_key == ctx.node_key,
                })
            })
            .collect())
    })?;
    Ok(())
}
