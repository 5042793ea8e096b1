//! TimeCoin's consensus views: `getconsensusinfo`, `masternodelist`, `masternodestatus`,
//! `gettransactionfinality`, `waittransactionfinality`, `listevidence`.

use super::blockchain::parse_hash;
use super::error::*;
use crate::consensus::driver::NodeEvent;
use crate::consensus::evidence_store;
use crate::consensus::masternodes::Masternode;
use crate::context::NodeContext;
use crate::types::{Address, Canonical, PublicKey, Txid};
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `waittransactionfinality` waits this long unless told otherwise, and at most the maximum.
const DEFAULT_WAIT_SECS: u64 = 30;
const MAX_WAIT_SECS: u64 = 600;
/// Most `waittransactionfinality` calls waiting at once, node-wide: each wakes at every block.
const MAX_WAITERS: usize = 256;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("getconsensusinfo", |_, ctx, _| async move {
        let tip = ctx.ledger.tip();
        let state = ctx.consensus.view().state();
        let (height, round, step, proposer) =
            (state.height, state.round, state.step.clone(), state.proposer);
        let set = ctx.masternodes.load();
        RpcResult::Ok(json!({
            "height": height,
            "round": round,
            "step": step,
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
            .map(|m| masternode_json(ctx, m, &connected))
            .collect())
    })?;
    m.register_method("masternodestatus", |p, ctx, _| {
        let key: Option<String> = p.sequence().optional_next().map_err(invalid_param)?;
        let key = match key {
            None => ctx.node_key,
            Some(k) => PublicKey::from_hex(&k)
                .ok_or_else(|| err(INVALID_PARAMETER, "operator_key must be 64 hex characters"))?,
        };
        let set = ctx.masternodes.load();
        let connected = ctx.network.connected_keys();
        RpcResult::Ok(match set.get(&key) {
            Some(m) => {
                let mut v = masternode_json(ctx, m, &connected);
                v["status"] = json!("ENABLED");
                v["is_self"] = json!(key == ctx.node_key);
                v
            }
            None => json!({
                "operator_key": key.to_hex(),
                "status": "NOT_REGISTERED",
                "is_self": key == ctx.node_key,
            }),
        })
    })?;
    m.register_async_method("gettransactionfinality", |p, ctx, _| async move {
        let text: String = p.sequence().next().map_err(invalid_param)?;
        let txid = parse_hash("txid", &text)?;
        finality(&ctx, txid).await?.ok_or_else(|| {
            err(
                INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction",
            )
        })
    })?;
    // Per node (per RPC module), not per process.
    let waiters = Arc::new(tokio::sync::Semaphore::new(MAX_WAITERS));
    m.register_async_method("waittransactionfinality", move |p, ctx, _| {
        let waiters = waiters.clone();
        async move {
        let mut seq = p.sequence();
        let text: String = seq.next().map_err(invalid_param)?;
        let timeout: Option<u64> = seq.optional_next().map_err(invalid_param)?;
        let txid = parse_hash("txid", &text)?;
        let timeout = timeout.unwrap_or(DEFAULT_WAIT_SECS);
        if timeout > MAX_WAIT_SECS {
            return Err(err(
                INVALID_PARAMETER,
                format!("timeout is at most {MAX_WAIT_SECS} seconds"),
            ));
        }
        let Ok(_waiting) = waiters.try_acquire() else {
            return Err(err(
                MISC_ERROR,
                format!("{MAX_WAITERS} waits are already in progress: poll gettransactionfinality instead"),
            ));
        };
        wait_final(&ctx, txid, Duration::from_secs(timeout)).await
        }
    })?;
    m.register_async_method("listevidence", |_, ctx, _| async move {
        let storage = ctx.ledger.storage().clone();
        let list = tokio::task::spawn_blocking(move || {
            evidence_store::list(&storage, evidence_store::MAX_LISTED, false, |_| true)
        })
        .await
        .map_err(|e| err(MISC_ERROR, format!("evidence read failed: {e}")))?
        .map_err(|e| err(MISC_ERROR, format!("evidence read failed: {e}")))?;
        let set = ctx.masternodes.load();
        RpcResult::Ok(
            list.iter()
                .map(|ev| {
                    json!({
                        "id": ev.id().to_hex(),
                        "layer": ev.layer().number(),
                        "offender": ev.offender().to_hex(),
                        "height": ev.height(),
                        "description": ev.describe(),
                        "offender_in_set": set.contains_voter(&ev.offender()),
                        "hex": hex::encode(ev.to_bytes()),
                    })
                })
                .collect::<Vec<Value>>(),
        )
    })?;
    Ok(())
}

fn masternode_json(ctx: &NodeContext, m: &Masternode, connected: &[PublicKey]) -> Value {
    json!({
        "operator_key": m.operator_key.to_hex(),
        "address": Address::from_public_key(ctx.params.network, &m.operator_key).to_string(),
        "tier": m.tier.name(),
        "weight": m.tier.weight(),
        "collateral": { "txid": m.collateral.txid.to_hex(), "vout": m.collateral.index },
        "p2p_addr": m.p2p_addr,
        "bls_key": m.bls_key.to_hex(),
        "registered_height": m.registered_height,
        "connected": connected.contains(&m.operator_key) || m.operator_key == ctx.node_key,
    })
}

/// Where a transaction stands, with the votes that finalized it while the node still holds
/// them (until a block confirms it; then the block's commit certificate is the proof).
async fn finality(ctx: &NodeContext, txid: Txid) -> RpcResult<Option<Value>> {
    let Some((_, status)) = super::rawtx::lookup(ctx, txid).await? else {
        return Ok(None);
    };
    // The published proof, not the engine: a status read never queues behind consensus. It
    // holds what made the transaction final and every vote since, until a block confirms it.
    let proof = ctx.consensus.finality_proofs().get(&txid);
    let set = ctx.masternodes.load();
    let cert = proof.as_ref().map(|p| {
        p.batches
            .iter()
            .map(|b| {
                json!({
                    "voter": b.voter.to_hex(),
                    "weight": set.weight_of(&b.voter),
                    "set_height": b.set_height,
                    "set_hash": b.set_hash.to_hex(),
                    "sequence": b.sequence,
                    "txids": b.txids.len(),
                    "signature": b.signature.to_hex(),
                })
            })
            .collect::<Vec<_>>()
    });
    // Under the slot engine: one certificate for the batch and the txid's path to its root,
    // checkable offline against the set's BLS keys (`masternodelist`); `proof` is its
    // canonical encoding.
    let slot = proof.as_ref().and_then(|p| p.slot.as_ref()).map(|s| {
        // Signer weights from the current set when the certificate names it (after a set
        // change it may name the one before).
        let voters: Vec<&Masternode> = set.members().filter(|m| m.weight() > 0).collect();
        let signer_weight = (set.hash() == s.certificate.set_hash).then(|| {
            s.certificate
                .signer_positions()
                .filter_map(|p| voters.get(p))
                .map(|m| m.weight())
                .sum::<u64>()
        });
        let encoded = crate::types::Canonical::to_bytes(&**s);
        json!({
            "slot": s.certificate.slot,
            "set_hash": s.certificate.set_hash.to_hex(),
            "root": s.certificate.root.to_hex(),
            "signers": s.certificate.signer_positions().count(),
            "signer_weight": signer_weight,
            "aggregate": hex::encode(s.certificate.aggregate.0),
            "path": {
                "index": s.path.index,
                "leaves": s.path.leaves,
                "siblings": s.path.siblings.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
            },
            "bytes": encoded.len(),
            "proof": hex::encode(encoded),
        })
    });
    let state = if status.block.is_some() {
        "confirmed"
    } else if status.final_l1 {
        "final"
    } else {
        "pending"
    };
    let mut v = json!({
        "txid": txid.to_hex(),
        "state": state,
        "final": state != "pending",
        "weight": status.weight,
        "quorum": status.quorum,
        "certificate": match slot {
            Some(slot) => Some(json!({ "slot": slot })),
            None => cert.filter(|c| !c.is_empty()).map(|batches| json!({ "batches": batches })),
        },
    });
    if let Some(ms) = proof.and_then(|p| p.finalized_after_ms) {
        v["time_to_finality_ms"] = json!(ms);
    }
    if let Some((height, hash, _, _)) = status.block {
        v["blockheight"] = json!(height);
        v["blockhash"] = json!(hash.to_hex());
    }
    Ok(Some(v))
}

/// Waits for finality (or the timeout), then answers like `gettransactionfinality`.
async fn wait_final(ctx: &NodeContext, txid: Txid, timeout: Duration) -> RpcResult<Value> {
    // Subscribe before looking, so a finality between the look and the wait is not missed.
    let mut events = ctx.consensus.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = finality(ctx, txid).await? {
            if v["final"] == json!(true) {
                return Ok(v);
            }
        }
        let woke = tokio::time::timeout_at(deadline, async {
            loop {
                // A wait must not hold the node's shutdown for its whole timeout.
                let event = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return false,
                    e = events.recv() => e,
                };
                match event {
                    Ok(NodeEvent::TxsFinalized(txs)) if txs.iter().any(|(t, _)| *t == txid) => {
                        return true
                    }
                    Ok(NodeEvent::BlockCommitted { .. }) => return true,
                    Ok(_) => {}
                    // Missed events: look again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        match woke {
            Ok(true) => continue,
            Ok(false) => return Err(err(MISC_ERROR, "the node is shutting down")),
            Err(_) => {
                return finality(ctx, txid).await?.ok_or_else(|| {
                    err(
                        INVALID_ADDRESS_OR_KEY,
                        "No such mempool or blockchain transaction",
                    )
                })
            }
        }
    }
}
