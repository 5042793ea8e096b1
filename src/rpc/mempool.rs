//! The pool of transactions waiting for finality: `getmempoolinfo`, `getrawmempool`,
//! `getmempoolentry`, `estimatesmartfee`.
//!
//! TimeCoin's pool holds transactions only until a quorum of masternodes votes for them
//! (usually well under a second), so it is small and fees do not compete for block space:
//! the fee that gets a transaction accepted is the pool's minimum rate, at any target.

use super::blockchain::parse_hash;
use super::error::*;
use super::json::amount;
use crate::context::NodeContext;
use crate::types::{Amount, Txid};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("getmempoolinfo", |_, ctx, _| async move {
        let state = ctx.consensus.view().state();
        let (count, bytes, limits) = (state.pool_count, state.pool_bytes, state.pool_limits);
        RpcResult::Ok(json!({
            "loaded": true,
            "size": count,
            "bytes": bytes,
            "usage": bytes,
            "total_fee": Value::Null,
            "maxmempool": limits.max_bytes,
            "maxcount": limits.max_count,
            "mempoolminfee": fee_per_kb(limits.min_fee_rate),
            "minrelaytxfee": fee_per_kb(limits.min_fee_rate),
            "unbroadcastcount": 0,
        }))
    })?;
    m.register_async_method("getrawmempool", |p, ctx, _| async move {
        let verbose: Option<bool> = p.sequence().optional_next().map_err(invalid_param)?;
        let entries = entries(&ctx, None).await?;
        if verbose.unwrap_or(false) {
            let map: serde_json::Map<String, Value> = entries
                .into_iter()
                .map(|e| (e.txid.to_hex(), e.to_json()))
                .collect();
            RpcResult::Ok(Value::Object(map))
        } else {
            Ok(json!(entries
                .iter()
                .map(|e| e.txid.to_hex())
                .collect::<Vec<_>>()))
        }
    })?;
    m.register_async_method("getmempoolentry", |p, ctx, _| async move {
        let text: String = p.sequence().next().map_err(invalid_param)?;
        let txid = parse_hash("txid", &text)?;
        match entries(&ctx, Some(txid)).await?.into_iter().next() {
            Some(e) => RpcResult::Ok(e.to_json()),
            None => Err(err(INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")),
        }
    })?;
    m.register_method("estimatesmartfee", |p, ctx, _| {
        let mut seq = p.sequence();
        let target: i64 = seq.next().map_err(invalid_param)?;
        let _mode: Option<String> = seq.optional_next().map_err(invalid_param)?;
        if !(1..=1008).contains(&target) {
            return Err(err(
                INVALID_PARAMETER,
                "Invalid conf_target, must be between 1 and 1008",
            ));
        }
        RpcResult::Ok(json!({ "feerate": min_fee_per_kb(ctx), "blocks": 1 }))
    })?;
    Ok(())
}

/// A rate in atoms per byte as TIME per 1,000 bytes (Bitcoin's fee-rate unit).
fn fee_per_kb(atoms_per_byte: u64) -> Value {
    amount(Amount(atoms_per_byte.saturating_mul(1000)))
}

/// The pool's minimum fee rate in TIME per kB.
pub fn min_fee_per_kb(ctx: &NodeContext) -> Value {
    fee_per_kb(ctx.pool_limits.min_fee_rate)
}

/// One waiting transaction as `getmempoolentry` shows it.
struct Entry {
    txid: Txid,
    size: usize,
    fee: Amount,
    time: u64,
    weight: u64,
    quorum: u64,
}

impl Entry {
    fn to_json(&self) -> Value {
        json!({
            "vsize": self.size,
            "size": self.size,
            "weight": self.size * 4,
            "fee": amount(self.fee),
            "fees": { "base": amount(self.fee), "modified": amount(self.fee) },
            "time": self.time,
            "height": Value::Null,
            "depends": [],
            "finality": { "weight": self.weight, "quorum": self.quorum },
        })
    }
}

/// Every pool entry (or just `only`), from the view consensus publishes after each step.
async fn entries(ctx: &NodeContext, only: Option<Txid>) -> RpcResult<Vec<Entry>> {
    let view = ctx.consensus.view();
    let quorum = view.state().quorum_weight;
    let pick = match only {
        Some(t) => view.pending(&t).map(|p| (t, p)).into_iter().collect(),
        None => view.all_pending(),
    };
    let mut entries: Vec<Entry> = pick
        .into_iter()
        .map(|(txid, p)| Entry {
            txid,
            size: p.size,
            fee: p.fee,
            time: p.added_unix,
            weight: p.weight,
            quorum,
        })
        .collect();
    // Highest fee rate first, as the pool orders them (ties: older first).
    entries.sort_by(|a, b| {
        let rate = |e: &Entry| u128::from(e.fee.0) * 1000 / (e.size.max(1) as u128);
        rate(b)
            .cmp(&rate(a))
            .then(a.time.cmp(&b.time))
            .then(a.txid.cmp(&b.txid))
    });
    Ok(entries)
}
