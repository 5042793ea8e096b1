//! Address queries light wallets need without a node wallet, in Dash's (insight) shapes:
//! `getaddressutxos`, `getaddressbalance`, `getaddresstxids`; Bitcoin's `listunspent` for
//! named addresses; `validateaddress`.

use super::error::{database, err, RpcResult, INVALID_ADDRESS_OR_KEY, INVALID_PARAMETER};
use crate::context::NodeContext;
use crate::types::{Address, KeyHash, Network, UtxoState};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most addresses one call may name.
pub const MAX_ADDRESSES: usize = 100;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_blocking_method("getaddressutxos", |p, ctx, _| getaddressutxos(p, &ctx))?;
    m.register_blocking_method("getaddressbalance", |p, ctx, _| getaddressbalance(p, &ctx))?;
    m.register_blocking_method("getaddresstxids", |p, ctx, _| getaddresstxids(p, &ctx))?;
    m.register_blocking_method("listunspent", |p, ctx, _| listunspent(p, &ctx))?;
    m.register_method("validateaddress", |p, ctx, _| validateaddress(p, ctx))?;
    Ok(())
}

/// Accepts `"addr"`, `["addr", ...]` or `{"addresses": [...]}` (Dash's form).
fn addresses(p: Params, ctx: &NodeContext) -> RpcResult<Vec<(String, KeyHash)>> {
    let first: Value = p.sequence().next().map_err(super::error::invalid_param)?;
    address_list(first, ctx.params.network)
}

pub(crate) fn address_list(first: Value, network: Network) -> RpcResult<Vec<(String, KeyHash)>> {
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
    // Each address once: a repeated one would be counted (and read) twice.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let text = v
            .as_str()
            .ok_or_else(|| err(INVALID_PARAMETER, "addresses must be strings"))?;
        let a = Address::parse(text, network)
            .map_err(|e| err(INVALID_ADDRESS_OR_KEY, format!("Invalid address: {e}")))?;
        if seen.insert(a.key_hash) {
            out.push((text.to_string(), a.key_hash));
        }
    }
    Ok(out)
}

fn getaddressutxos(p: Params, ctx: &NodeContext) -> RpcResult<Vec<Value>> {
    let mut out = Vec::new();
    for (text, kh) in addresses(p, ctx)? {
        for (op, rec) in ctx.ledger.address_utxos(&kh).map_err(database)? {
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
        let b = ctx.ledger.address_balance(&kh).map_err(database)?;
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

/// Default and largest page of `getaddresstxids`.
pub const TXIDS_PAGE: usize = 1_000;
pub const MAX_TXIDS_PAGE: usize = 10_000;
/// Deepest `skip` (each page reads skip + limit entries per address).
pub const MAX_TXIDS_SKIP: usize = 100_000;

/// `{"addresses": [...], "start": h, "end": h, "skip": n, "limit": n}` (or just addresses):
/// txids touching the addresses in chain order. Transactions final but not yet in a block
/// sort at the height after the tip.
fn getaddresstxids(p: Params, ctx: &NodeContext) -> RpcResult<Vec<String>> {
    let first: Value = p.sequence().next().map_err(super::error::invalid_param)?;
    let num = |key: &str| -> RpcResult<Option<u64>> {
        match first.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                err(
                    INVALID_PARAMETER,
                    format!("{key} must be a non-negative integer"),
                )
            }),
        }
    };
    let start = num("start")?.unwrap_or(0);
    let end = num("end")?.unwrap_or(u64::MAX);
    let skip = num("skip")?.unwrap_or(0) as usize;
    let limit = num("limit")?.map_or(TXIDS_PAGE, |l| l as usize);
    if limit == 0 || limit > MAX_TXIDS_PAGE {
        return Err(err(
            INVALID_PARAMETER,
            format!("limit must be 1 to {MAX_TXIDS_PAGE}"),
        ));
    }
    if skip > MAX_TXIDS_SKIP {
        return Err(err(
            INVALID_PARAMETER,
            format!("skip is at most {MAX_TXIDS_SKIP}: page by height with start and end"),
        ));
    }
    if start > end {
        return Err(err(INVALID_PARAMETER, "start must not be above end"));
    }
    let list = address_list(first, ctx.params.network)?;
    // Merged across addresses in chain order; a transaction touching two of them once.
    let mut all: Vec<(crate::ledger::history::Order, crate::types::Txid)> = Vec::new();
    for (_, kh) in &list {
        // Each address's page could hold the merged page's whole window.
        all.extend(
            ctx.ledger
                .address_txids(kh, start, end, 0, skip.saturating_add(limit))
                .map_err(database)?,
        );
    }
    all.sort();
    all.dedup();
    Ok(all
        .into_iter()
        .skip(skip)
        .take(limit)
        .map(|(_, t)| t.to_hex())
        .collect())
}

/// Bitcoin's `listunspent minconf maxconf [addresses]`: the node has no wallet, so the
/// addresses are required.
fn listunspent(p: Params, ctx: &NodeContext) -> RpcResult<Vec<Value>> {
    let mut seq = p.sequence();
    let minconf: Option<u64> = seq.optional_next().map_err(super::error::invalid_param)?;
    let maxconf: Option<u64> = seq.optional_next().map_err(super::error::invalid_param)?;
    let addrs: Option<Value> = seq.optional_next().map_err(super::error::invalid_param)?;
    let Some(addrs) = addrs.filter(|a| !a.is_null()) else {
        return Err(err(
            INVALID_PARAMETER,
            "timed has no wallet: name the addresses, listunspent minconf maxconf [\"addr\", ...]",
        ));
    };
    let (minconf, maxconf) = (minconf.unwrap_or(1), maxconf.unwrap_or(9_999_999));
    let tip = ctx.ledger.height().unwrap_or(0);
    let mut out = Vec::new();
    for (text, kh) in address_list(addrs, ctx.params.network)? {
        for (op, rec) in ctx.ledger.address_utxos(&kh).map_err(database)? {
            if rec.state != UtxoState::Unspent {
                continue;
            }
            let confirmations = rec.entry.height.map_or(0, |h| tip.saturating_sub(h) + 1);
            if confirmations < minconf || confirmations > maxconf {
                continue;
            }
            out.push(json!({
                "txid": op.txid.to_hex(),
                "vout": op.index,
                "address": text,
                "scriptPubKey": hex::encode(rec.entry.output.key_hash.0),
                "amount": super::json::amount(rec.entry.output.amount),
                "confirmations": confirmations,
                "spendable": true,
                "solvable": true,
                "safe": true,
                // Final at layer 1 even with 0 confirmations: spendable and irreversible.
                "instantlock": true,
            }));
        }
    }
    Ok(out)
}

fn validateaddress(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let text: String = p.sequence().next().map_err(super::error::invalid_param)?;
    Ok(match Address::parse(&text, ctx.params.network) {
        Ok(a) => json!({
            "isvalid": true,
            "address": a.to_string(),
            "scriptPubKey": hex::encode(a.key_hash.0),
            "isscript": false,
            "iswitness": false,
        }),
        Err(e) => json!({ "isvalid": false, "error": e.to_string() }),
    })
}
