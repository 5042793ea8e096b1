//! The pool of transactions waiting for finality: `getmempoolinfo`, `getrawmempool`,
//! `getmempoolentry`, `estimatesmartfee`.
//!
//! TimeCoin's pool holds transactions only until a quorum of masternodes votes for them
//! (usually well under a second), so it is small and fees do not compete for block space:
//! the fee that gets a transaction accepted is the pool's minimum rate, at any target.

use super::blockchain::parse_hash;
use super::error::*;
use super::json::amount;
use crate::node::NodeContext;
use crate::types::{Amount, Txid};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("getmempoolinfo", |_, ctx, _| async move {
        let (count, bytes, limits) = ctx
            .consensus
            .query(|d| {
                let pool = d.mempool();
                (pool.len(), pool.stats().bytes(), *pool.limits())
            })
            .await
            .map_err(|_| stopping())?;
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

fn stopping() -> jsonrpsee::types::ErrorObjectOwned {
    err(MISC_ERROR, "the node is shutting down")
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

/// Every pool entry (or just `only`), read in one hop to the consensus task.
async fn entries(ctx: &NodeContext, only: Option<Txid>) -> RpcResult<Vec<Entry>> {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ctx.consensus
        .query(move |d| {
            let now = Instant::now();
            let quorum = d.finality().set().quorum_weight();
            let pool = d.mempool();
            let pick: Vec<_> = match only {
                Some(t) => pool.get(&t).into_iter().cloned().collect(),
                None => pool.iter_by_fee_rate().cloned().collect(),
            };
            pick.into_iter()
                .map(|e| Entry {
                    txid: e.txid,
                    size: e.size,
                    fee: e.fee,
                    time: now_unix.saturating_sub(now.duration_since(e.added_at).as_secs()),
                    weight: d.finality().weight_for(&e.txid),
                    quorum,
                })
                .collect()
        })
        .await
        .map_err(|_| stopping())
}
