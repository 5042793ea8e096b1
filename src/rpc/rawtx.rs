//! Transactions: `sendrawtransaction`, `getrawtransaction` (with finality fields).

use super::batch::InLine;
use super::blockchain::parse_hash;
use super::error::*;
use super::json::{self, TxStatus};
use crate::consensus::service::SubmitError;
use crate::context::NodeContext;
use crate::ledger::LedgerError;
use crate::mempool::PoolError;
use crate::types::{Canonical, Transaction, Txid};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("sendrawtransaction", |p, ctx, ext| async move {
        sendrawtransaction(p, &ctx, ext.get::<InLine>()).await
    })?;
    m.register_async_method("getrawtransaction", |p, ctx, _| async move {
        getrawtransaction(p, &ctx).await
    })?;
    Ok(())
}

/// Maps the pool's verdict to Bitcoin's codes: -25 missing or spent inputs, -27 already
/// final or confirmed, -26 every other policy or consensus refusal.
fn pool_error(e: &PoolError) -> jsonrpsee::types::ErrorObjectOwned {
    let code = match e {
        PoolError::Ledger { source, .. } => match **source {
            LedgerError::MissingInput { .. } | LedgerError::InputSpent { .. } => VERIFY_ERROR,
            LedgerError::AlreadyFinal { .. } | LedgerError::AlreadyConfirmed { .. } => {
                VERIFY_ALREADY_IN_CHAIN
            }
            LedgerError::Storage(_) => MISC_ERROR,
            _ => VERIFY_REJECTED,
        },
        _ => VERIFY_REJECTED,
    };
    // The ledger's own message usually names the transaction already: say it once.
    let message = match e {
        PoolError::Ledger { txid, source } if source.to_string().contains(&txid.to_hex()) => {
            source.to_string()
        }
        _ => e.to_string(),
    };
    err(code, message)
}

/// `in_line`, when the call is part of a batch: told once the transaction is in line at the
/// door, so the batch's next call may start (`rpc::batch`).
async fn sendrawtransaction(
    p: Params<'static>,
    ctx: &NodeContext,
    in_line: Option<&InLine>,
) -> RpcResult<String> {
    let hex_text: String = p.sequence().next().map_err(invalid_param)?;
    let tx = super::rawbuild::decode_hex_tx(&hex_text)?;
    let txid = tx.txid();
    // One trip to consensus: the pool's verdict says "already final" or "already in a block"
    // itself (-27), as bitcoind's does.
    let verdict = match ctx.consensus.enqueue(tx).await {
        Ok(pending) => {
            if let Some(signal) = in_line {
                signal.reached();
            }
            pending.answer().await
        }
        Err(e) => Err(e),
    };
    match verdict {
        Ok(id) => Ok(id.to_hex()),
        // Sent again while it waits for votes: the same answer as the first time.
        Err(SubmitError::Rejected(PoolError::AlreadyInPool { .. })) => Ok(txid.to_hex()),
        Err(SubmitError::Rejected(e)) => Err(pool_error(&e)),
        Err(SubmitError::Stopped) => Err(err(MISC_ERROR, "the node is shutting down")),
        // A policy refusal of this node, for now (e.g. its disk is low): -26, with the reason.
        Err(e @ SubmitError::Paused(_)) => Err(err(VERIFY_REJECTED, e.to_string())),
    }
}

/// Finds a transaction (body and status) in the pool, the final set or the chain, without
/// waiting for consensus: the pool is read from the view consensus publishes after each step.
pub(super) async fn lookup(
    ctx: &NodeContext,
    txid: Txid,
) -> RpcResult<Option<(Arc<Transaction>, TxStatus)>> {
    // A transaction moves pool → final set → block, and leaves the published pool only once
    // the ledger holds it as final. Looking in that order means a move between two looks is
    // always caught by the later one: never "no such transaction" for one that exists.
    let view = ctx.consensus.view();
    let quorum = view.state().quorum_weight;
    if let Some(p) = view.pending(&txid) {
        let status = TxStatus {
            block: None,
            final_l1: false,
            weight: p.weight,
            quorum,
        };
        return Ok(Some((Arc::clone(&p.tx), status)));
    }
    let storage = ctx.storage.clone();
    let ledger = Arc::clone(&ctx.ledger);
    let stored = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let final_tx = ledger.final_tx(&txid);
        if let Some(loc) = storage.tx_location(&txid).map_err(|e| e.to_string())? {
            if let Some(b) = storage.block_at(loc.height).map_err(|e| e.to_string())? {
                if let Some(tx) = b.transactions.get(loc.index as usize) {
                    let block = (
                        loc.height,
                        b.hash(),
                        ledger.height().unwrap_or(0),
                        b.header.timestamp_ms,
                    );
                    return Ok(Some((tx.clone(), Some(block))));
                }
            }
        }
        Ok(final_tx.map(|tx| (tx, None)))
    })
    .await
    .map_err(internal)?
    .map_err(database)?;
    Ok(stored.map(|(tx, block)| {
        // Final and not yet in a block: the published certificate says how much weight voted.
        let voted = ctx.consensus.finality_proofs().get(&txid).map_or(0, |p| {
            let set = ctx.masternodes.load();
            p.batches.iter().map(|b| set.weight_of(&b.voter)).sum()
        });
        let status = TxStatus {
            block,
            final_l1: true,
            weight: voted.max(quorum),
            quorum,
        };
        (tx, status)
    }))
}

async fn getrawtransaction(p: Params<'static>, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let txid_text: String = seq.next().map_err(invalid_param)?;
    let verbose: Option<Value> = seq.optional_next().map_err(invalid_param)?;
    let verbose = match verbose {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
        Some(_) => return Err(err(TYPE_ERROR, "verbose must be a boolean or a number")),
    };
    let txid = parse_hash("txid", &txid_text)?;
    let Some((tx, status)) = lookup(ctx, txid).await? else {
        return Err(err(
            INVALID_ADDRESS_OR_KEY,
            "No such mempool or blockchain transaction",
        ));
    };
    if !verbose {
        return Ok(json!(hex::encode(tx.to_bytes())));
    }
    Ok(json::transaction(ctx.params.network, &tx, Some(&status)))
}
