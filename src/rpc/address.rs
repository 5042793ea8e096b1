//! Address queries light wallets need without a node wallet, in Dash's (insight) shapes:
//! `getaddressutxos`, `getaddressbalance`.

use super::error::{err, internal, RpcResult, INVALID_ADDRESS_OR_KEY, INVALID_PARAMETER};
use crate::node::NodeContext;
use crate::types::{Address, KeyHash, UtxoState};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most addresses one call may name.
pub const MAX_ADDRESSES: usize = 100;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_blocking_method("getaddressutxos", |p, ctx, _| getaddressutxos(p, &ctx))?;
    m.register_blocking_method("getaddressbalance", |p, ctx, _| getaddressbalance(p, &ctx))?;
    Ok(())
}

/// Accepts `"addr"`, `["addr", ...]` or `{"addresses": [...]}` (Dash's form).
fn addresses(p: Params, ctx: &NodeContext) -> RpcResult<Vec<(String, KeyHash)>> {
    let first: Value = p
        .sequence()
        .next()
        .map_err(|e| err(INVALID_PARAMETER, e.message().to_string()))?;
    let list: Vec<Value> = match first {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("addresses") {
            Some(Value::Array(a)) => a,
            _ => return Err(err(INVALID_PARAMETER, "expected {\"addresses\": [...]}")),
        },
        _ => {
            return Err(err(
                INVALID_PARAMETER,
                "expected an address or a list of addresses",
            ))
        }
    };
    if list.len() > MAX_ADDRESSES {
        return Err(err(
            INVALID_PARAMETER,
            format!("at most {MAX_ADDRESSES} addresses per call"),
        ));
    }
    list.into_iter()
        .map(|v| {
            let text = v
                .as_str()
                .ok_or_else(|| err(INVALID_PARAMETER, "addresses must be strings"))?;
            let a = Address::parse(text, ctx.params.network)
                .map_err(|e| err(INVALID_ADDRESS_OR_KEY, format!("Invalid address: {e}")))?;
            Ok((text.to_string(), a.key_hash))
        })
        .collect()
}

fn getaddressutxos(p: Params, ctx: &NodeContext) -> RpcResult<Vec<Value>> {
    let mut out = Vec::new();
    for (text, kh) in addresses(p, ctx)? {
        for (op, rec) in ctx.ledger.address_utxos(&kh).map_err(internal)? {
            // Outputs a pending or final spend has claimed are not the owner's to spend.
            if rec.state != UtxoState::Unspent {
                continue;
            }
            out.push(json!({
                "address": text,
                "txid": op.txid.to_hex(),
                "outputIndex": op.index,
                "satoshis": rec.entry.output.amount.atoms(),
                "value": super::json::amount(rec.entry.output.amount),
                "height": rec.entry.height,
                "coinbase": rec.entry.coinbase,
            }));
        }
    }
    Ok(out)
}

fn getaddressbalance(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let (mut confirmed, mut unconfirmed, mut spending, mut count) = (0u64, 0u64, 0u64, 0usize);
    for (_, kh) in addresses(p, ctx)? {
        let b = ctx.ledger.address_balance(&kh).map_err(internal)?;
        confirmed = confirmed.saturating_add(b.confirmed.atoms());
        unconfirmed = unconfirmed.saturating_add(b.unconfirmed.atoms());
        spending = spending.saturating_add(b.spending.atoms());
        count += b.utxo_count;
    }
    Ok(json!({
        "balance": confirmed.saturating_add(unconfirmed),
        "confirmed": confirmed,
        "unconfirmed": unconfirmed,
        "spending": spending,
        "utxos": count,
    }))
}
