//! Commit certificates of stored blocks: `getblockcommit` (who signed a block, with what
//! weight) and `masternodeactivity` (which masternodes signed the recent ones).
//!
//! A block's commit certificate is its proof of finality at layer 2, and its signers are the
//! masternodes the next block rewards: participation proven on chain, the same on every node.

use super::blockchain::parse_hash;
use super::error::{database, err, RpcResult, INVALID_ADDRESS_OR_KEY, INVALID_PARAMETER};
use crate::consensus::set_store;
use crate::context::NodeContext;
use crate::types::{Address, PublicKey};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Blocks `masternodeactivity` looks back unless told, and at most.
pub const DEFAULT_ACTIVITY_BLOCKS: u64 = 100;
pub const MAX_ACTIVITY_BLOCKS: u64 = 1_000;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_blocking_method("getblockcommit", |p, ctx, _| getblockcommit(p, &ctx))?;
    m.register_blocking_method("masternodeactivity", |p, ctx, _| {
        masternodeactivity(p, &ctx)
    })?;
    Ok(())
}

fn getblockcommit(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let text: String = p.sequence().next().map_err(super::error::invalid_param)?;
    let hash = parse_hash("blockhash", &text)?;
    let block = ctx
        .storage
        .block_by_hash(&hash)
        .map_err(database)?
        .ok_or_else(|| err(INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    let height = block.header.height;
    let commit = ctx
        .storage
        .commit_at(height)
        .map_err(database)?
        .filter(|c| c.block_hash == hash)
        .ok_or_else(|| {
            err(
                INVALID_ADDRESS_OR_KEY,
                format!(
                    "no commit certificate is stored for block {height} (genesis has none; a \
                     fast-synced node has none below its snapshot)"
                ),
            )
        })?;
    // Block h is signed by the set in force after block h-1.
    let set = set_store::load_at(&ctx.storage, height.saturating_sub(1))
        .map_err(|e| err(super::error::DATABASE_ERROR, e.to_string()))?;
    let mut seen = BTreeSet::new();
    let signers: Vec<Value> = commit
        .precommits
        .iter()
        .filter(|v| seen.insert(v.validator))
        .map(|v| signer_json(ctx, &v.validator, set.weight_of(&v.validator)))
        .collect();
    let weight = seen
        .iter()
        .map(|k| set.weight_of(k))
        .fold(0u64, u64::saturating_add);
    Ok(json!({
        "height": height,
        "hash": hash.to_hex(),
        "round": commit.round,
        "signers": signers,
        "weight": weight,
        "quorum": set.quorum_weight(),
        "total_weight": set.total_weight(),
    }))
}

fn signer_json(ctx: &NodeContext, key: &PublicKey, weight: u64) -> Value {
    json!({
        "operator_key": key.to_hex(),
        "address": Address::from_public_key(ctx.params.network, key).to_string(),
        "weight": weight,
    })
}

fn masternodeactivity(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let blocks: Option<u64> = p
        .sequence()
        .optional_next()
        .map_err(super::error::invalid_param)?;
    let blocks = blocks.unwrap_or(DEFAULT_ACTIVITY_BLOCKS);
    if blocks == 0 || blocks > MAX_ACTIVITY_BLOCKS {
        return Err(err(
            INVALID_PARAMETER,
            format!("blocks must be 1 to {MAX_ACTIVITY_BLOCKS}"),
        ));
    }
    let tip = ctx.ledger.height().unwrap_or(0);
    let set = ctx.masternodes.load();
    // Per member: the newest height it signed in the window, and how many it signed.
    let mut activity: BTreeMap<PublicKey, (Option<u64>, u64)> =
        set.members().map(|m| (m.operator_key, (None, 0))).collect();
    let lowest = tip.saturating_sub(blocks - 1).max(1);
    for height in (lowest..=tip).rev() {
        let Some(commit) = ctx.storage.commit_at(height).map_err(database)? else {
            continue;
        };
        let signers: BTreeSet<PublicKey> = commit.precommits.iter().map(|v| v.validator).collect();
        for key in signers {
            if let Some((last, count)) = activity.get_mut(&key) {
                last.get_or_insert(height);
                *count += 1;
            }
        }
    }
    let list: Vec<Value> = set
        .members()
        .map(|m| {
            let (last, count) = activity.get(&m.operator_key).copied().unwrap_or((None, 0));
            json!({
                "operator_key": m.operator_key.to_hex(),
                "last_signed_height": last,
                "signed": count,
            })
        })
        .collect();
    Ok(json!({
        "tip": tip,
        "blocks": tip + 1 - lowest.min(tip + 1),
        "masternodes": list,
    }))
}
