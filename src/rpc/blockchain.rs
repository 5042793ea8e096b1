//! Chain reads: `getblockchaininfo`, `getblockcount`, `getbestblockhash`, `getblockhash`,
//! `getblock`, `getblockheader`, `gettxout`, `gettxoutsetinfo`.

use super::error::{database, err, RpcResult, INVALID_ADDRESS_OR_KEY, INVALID_PARAMETER};
use super::json;
use crate::context::NodeContext;
use crate::types::{Canonical, Hash32};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

type Module = RpcModule<Arc<NodeContext>>;

pub fn register(m: &mut Module) -> Result<(), super::RpcError> {
    m.register_method("getblockcount", |_, ctx, _| -> RpcResult<u64> {
        Ok(ctx.ledger.height().unwrap_or(0))
    })?;
    m.register_method("getbestblockhash", |_, ctx, _| -> RpcResult<String> {
        Ok(ctx
            .ledger
            .tip()
            .map(|t| t.hash.to_hex())
            .unwrap_or_default())
    })?;
    m.register_blocking_method("getblockhash", |p, ctx, _| getblockhash(p, &ctx))?;
    m.register_blocking_method("getblock", |p, ctx, _| getblock(p, &ctx))?;
    // Blocking: the size on disk lists the database's files.
    m.register_blocking_method("getblockchaininfo", |_, ctx, _| getblockchaininfo(&ctx))?;
    m.register_blocking_method("getblockheader", |p, ctx, _| getblockheader(p, &ctx))?;
    m.register_method("gettxout", |p, ctx, _| gettxout(p, ctx))?;
    m.register_blocking_method("gettxoutsetinfo", |_, ctx, _| gettxoutsetinfo(&ctx))?;
    Ok(())
}

fn getblockchaininfo(ctx: &NodeContext) -> RpcResult<Value> {
    let tip = ctx.ledger.tip();
    let height = tip.as_ref().map_or(0, |t| t.height);
    let sync = ctx.sync.snapshot(height);
    Ok(json!({
        "chain": ctx.params.network.name(),
        "blocks": height,
        "headers": sync.target.max(height),
        "bestblockhash": tip.as_ref().map(|t| t.hash.to_hex()).unwrap_or_default(),
        "time": tip.as_ref().map_or(0, |t| t.timestamp_ms / 1000),
        "mediantime": tip.as_ref().map_or(0, |t| t.timestamp_ms / 1000),
        "verificationprogress": sync.progress,
        "initialblockdownload": sync.syncing,
        "utxocommitment": ctx.ledger.commitment().digest().to_hex(),
        "size_on_disk": ctx.storage.size_on_disk().unwrap_or(0),
        "pruned": false,
        "sync": {
            "syncing": sync.syncing,
            "height": height,
            "target": sync.target,
            "blocks_per_second": sync.blocks_per_sec,
            "seconds_left": sync.seconds_left,
        },
        "warnings": "",
    }))
}

fn getblockhash(p: Params, ctx: &NodeContext) -> RpcResult<String> {
    let height: i64 = p.sequence().next().map_err(super::error::invalid_param)?;
    let tip = ctx.ledger.height().unwrap_or(0);
    if height < 0 || height as u64 > tip {
        return Err(err(INVALID_PARAMETER, "Block height out of range"));
    }
    match ctx.storage.block_hash_at(height as u64).map_err(database)? {
        Some(h) => Ok(h.to_hex()),
        None => Err(err(INVALID_PARAMETER, "Block height out of range")),
    }
}

/// Parses a 64-hex hash argument, with Bitcoin's error for a malformed one.
pub(crate) fn parse_hash(what: &str, text: &str) -> RpcResult<Hash32> {
    Hash32::from_hex(text).map_err(|_| {
        err(
            INVALID_PARAMETER,
            format!(
                "{what} must be of length 64 (not {}, for '{text}') and hexadecimal",
                text.len()
            ),
        )
    })
}

fn getblock(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let hash_text: String = seq.next().map_err(super::error::invalid_param)?;
    // Bitcoin accepts verbosity as a number, or the old boolean `verbose`.
    let verbosity: Option<Value> = seq.optional_next().map_err(super::error::invalid_param)?;
    let verbosity = match verbosity {
        None | Some(Value::Null) => 1,
        Some(Value::Bool(b)) => u8::from(b),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v @ 0..=2) => v as u8,
            _ => return Err(err(INVALID_PARAMETER, "verbosity must be 0, 1 or 2")),
        },
        Some(_) => return Err(err(super::error::TYPE_ERROR, "verbosity must be a number")),
    };
    let block = stored_block(ctx, &hash_text)?;
    if verbosity == 0 {
        return Ok(json!(hex::encode(block.to_bytes())));
    }
    let (tip, next) = tip_and_next(ctx, &block)?;
    Ok(json::block(
        ctx.params.network,
        &block,
        tip,
        next,
        verbosity,
    ))
}

fn getblockheader(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let hash_text: String = seq.next().map_err(super::error::invalid_param)?;
    let verbose: Option<bool> = seq.optional_next().map_err(super::error::invalid_param)?;
    let block = stored_block(ctx, &hash_text)?;
    if !verbose.unwrap_or(true) {
        return Ok(json!(hex::encode(block.header.to_bytes())));
    }
    let (tip, next) = tip_and_next(ctx, &block)?;
    let mut v = json::block(ctx.params.network, &block, tip, next, 1);
    if let Some(o) = v.as_object_mut() {
        o.remove("tx");
        o.remove("size");
    }
    Ok(v)
}

fn gettxout(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let txid_text: String = seq.next().map_err(super::error::invalid_param)?;
    let n: u32 = seq.next().map_err(super::error::invalid_param)?;
    let include_pool: Option<bool> = seq.optional_next().map_err(super::error::invalid_param)?;
    let txid = parse_hash("txid", &txid_text)?;
    let Some(rec) = ctx.ledger.utxo(&crate::types::OutPoint::new(txid, n)) else {
        return Ok(Value::Null);
    };
    let visible = match rec.state {
        crate::types::UtxoState::Unspent => true,
        // Spent final at layer 1: spent, whatever the view.
        crate::types::UtxoState::SpentFinalized(_) => false,
        // Claimed by a transaction still collecting votes: spent in the pool's view only.
        crate::types::UtxoState::Locked(_) => !include_pool.unwrap_or(true),
    };
    // Without the pool's view, only outputs of blocks exist (as in bitcoind).
    if !visible || (!include_pool.unwrap_or(true) && !rec.entry.is_confirmed()) {
        return Ok(Value::Null);
    }
    let tip = ctx.ledger.tip();
    let out = rec.entry.output;
    Ok(json!({
        "bestblock": tip.as_ref().map(|t| t.hash.to_hex()).unwrap_or_default(),
        "confirmations": match (rec.entry.height, &tip) {
            (Some(h), Some(t)) => t.height.saturating_sub(h) + 1,
            _ => 0,
        },
        "value": json::amount(out.amount),
        "scriptPubKey": {
            "hex": hex::encode(out.key_hash.0),
            "type": "pubkeyhash",
            "address": crate::types::Address::new(ctx.params.network, out.key_hash).to_string(),
        },
        "coinbase": rec.entry.coinbase,
        "final": true,
    }))
}

fn gettxoutsetinfo(ctx: &NodeContext) -> RpcResult<Value> {
    let s = ctx.ledger.set_summary();
    Ok(json!({
        "height": s.tip.as_ref().map_or(0, |t| t.height),
        "bestblock": s.tip.as_ref().map(|t| t.hash.to_hex()).unwrap_or_default(),
        "txouts": s.outputs,
        "total_amount": json::amount(s.total),
        "utxocommitment": s.commitment.digest().to_hex(),
        "commitment_type": "lthash16",
        "disk_size": ctx.storage.size_on_disk().unwrap_or(0),
    }))
}

/// The block a `blockhash` argument names (-8 malformed, -5 unknown, -20 unreadable).
fn stored_block(ctx: &NodeContext, hash_text: &str) -> RpcResult<crate::types::Block> {
    let hash = parse_hash("blockhash", hash_text)?;
    ctx.storage
        .block_by_hash(&hash)
        .map_err(database)?
        .ok_or_else(|| err(INVALID_ADDRESS_OR_KEY, "Block not found"))
}

/// The tip height and the hash of the block after `block`, for confirmations and links.
fn tip_and_next(
    ctx: &NodeContext,
    block: &crate::types::Block,
) -> RpcResult<(u64, Option<Hash32>)> {
    let tip = ctx.ledger.height().unwrap_or(0);
    let next = ctx
        .storage
        .block_hash_at(block.header.height + 1)
        .map_err(database)?;
    Ok((tip, next))
}
