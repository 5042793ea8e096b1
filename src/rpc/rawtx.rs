//! Transactions: `sendrawtransaction`, `getrawtransaction` (with finality fields).

use super::blockchain::parse_hash;
use super::error::*;
use super::json::{self, TxStatus};
use crate::consensus::service::SubmitError;
use crate::ledger::LedgerError;
use crate::mempool::PoolError;
use crate::node::NodeContext;
use crate::types::{Canonical, Transaction, Txid};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("sendrawtransaction", |p, ctx, _| async move {
        sendrawtransaction(p, &ctx).await
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

async fn sendrawtransaction(p: Params<'static>, ctx: &NodeContext) -> RpcResult<String> {
    let hex_text: String = p.sequence().next().map_err(invalid_param)?;
    let tx = super::rawbuild::decode_hex_tx(&hex_text)?;
    let txid = tx.txid();
    let status = status_of(ctx, txid).await?;
    if status.block.is_some() {
        return Err(err(
            VERIFY_ALREADY_IN_CHAIN,
            "Transaction already in block chain",
        ));
    }
    if status.final_l1 {
        return Err(err(VERIFY_ALREADY_IN_CHAIN, "Transaction already final"));
    }
    match ctx.consensus.submit(tx).await {
        Ok(id) => Ok(id.to_hex()),
        // Sent again while it waits for votes: the same answer as the first time.
        Err(SubmitError::Rejected(PoolError::AlreadyInPool { .. })) => Ok(txid.to_hex()),
        Err(SubmitError::Rejected(e)) => Err(pool_error(&e)),
        Err(SubmitError::Stopped) => Err(err(MISC_ERROR, "the node is shutting down")),
    }
}

/// Finds a transaction (body and status) in the chain, the final set or the pool.
pub(super) async fn lookup(
    ctx: &NodeContext,
    txid: Txid,
) -> RpcResult<Option<(Transaction, TxStatus)>> {
    // A transaction moves pool → final set → block. Looking in that order means a move
    // between two looks is always caught by the later one: never "no such transaction" for
    // one that exists.
    let (weight, quorum, pooled) = ctx
        .consensus
        .query(move |d| {
            let quorum = d.finality().set().quorum_weight();
            let weight = d.finality().weight_for(&txid);
            let pooled = d.mempool().get(&txid).map(|e| (*e.tx).clone());
            (weight, quorum, pooled)
        })
        .await
        .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?;
    let storage = ctx.storage.clone();
    let ledger = Arc::clone(&ctx.ledger);
    let stored = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let final_tx = ledger.final_tx(&txid).map_err(|e| e.to_string())?;
        if let Some(loc) = storage.tx_location(&txid).map_err(|e| e.to_string())? {
            if let Some(b) = storage.block_at(loc.height).map_err(|e| e.to_string())? {
                if let Some(tx) = b.transactions.get(loc.index as usize) {
                    let block = (
                        loc.height,
                        b.hash(),
                        ledger.height().unwrap_or(0),
                        b.header.timestamp_ms,
                    );
                    return Ok(Some((tx.clone(), Some(block), true)));
                }
            }
        }
        Ok(final_tx.map(|tx| (tx, None, true)))
    })
    .await
    .map_err(internal)?
    .map_err(database)?;
    Ok(match stored {
        Some((tx, block, final_l1)) => Some((
            tx,
            TxStatus {
                block,
                final_l1,
                weight: weight.max(if final_l1 { quorum } else { 0 }),
                quorum,
            },
        )),
        None => pooled.map(|tx| {
            (
                tx,
                TxStatus {
                    block: None,
                    final_l1: false,
                    weight,
                    quorum,
                },
            )
        }),
    })
}

async fn status_of(ctx: &NodeContext, txid: Txid) -> RpcResult<TxStatus> {
    Ok(lookup(ctx, txid).await?.map(|(_, s)| s).unwrap_or_default())
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
