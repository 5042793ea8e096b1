//! Spending a key's outputs through a node's RPC: fetch the outputs, pick coins, sign, submit,
//! and optionally wait for layer-1 finality. Used by `timed wallet` and by tests.
//!
//! ```text
//! getaddressutxos ─► largest first until amount + fee ─► sign ─► sendrawtransaction
//!                                                                 └─(wait)─► getrawtransaction
//! ```

use crate::client::{ClientError, Rpc};
use crate::types::transfer::signed_with_payload;
use crate::types::{
    Address, Amount, Canonical, Hash32, Network, OutPoint, SecretKey, Transaction, TxOutput,
    TxPayload, Txid,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Default fee rate, in atoms per byte (the node's minimum is 1).
pub const DEFAULT_FEE_RATE: u64 = 2;
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Rpc(#[from] ClientError),
    #[error("insufficient funds: {address} has {have} TIME spendable, this needs {need} TIME (amount + fee)")]
    InsufficientFunds {
        address: String,
        have: Amount,
        need: Amount,
    },
    #[error("the node returned an output list this wallet cannot read: {0}")]
    BadReply(String),
    #[error("amounts overflow")]
    Overflow,
    #[error("transaction {txid} was not final within {timeout:?}")]
    NotFinal { txid: Txid, timeout: Duration },
}

/// One spendable output of the key.
#[derive(Clone, Copy, Debug)]
pub struct Coin {
    pub outpoint: OutPoint,
    pub amount: Amount,
}

/// The key's unspent, unclaimed outputs, as the node at `url` knows them.
pub fn coins<N: Rpc + ?Sized>(
    node: &N,
    network: Network,
    key: &SecretKey,
) -> Result<Vec<Coin>, SendError> {
    let addr = Address::from_public_key(network, &key.public_key()).to_string();
    let reply = node.call("getaddressutxos", json!([[addr]]), RPC_TIMEOUT)?;
    let list = reply
        .as_array()
        .ok_or_else(|| SendError::BadReply(reply.to_string()))?;
    list.iter()
        .map(|u| {
            let txid = u["txid"]
                .as_str()
                .and_then(|t| Hash32::from_hex(t).ok())
                .ok_or_else(|| SendError::BadReply(u.to_string()))?;
            let index = u["outputIndex"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| SendError::BadReply(u.to_string()))?;
            let atoms = u["satoshis"]
                .as_u64()
                .ok_or_else(|| SendError::BadReply(u.to_string()))?;
            Ok(Coin {
                outpoint: OutPoint::new(txid, index),
                amount: Amount(atoms),
            })
        })
        .collect()
}

/// Builds and signs a transaction from `coins` paying `outputs` (plus change to the key) at
/// `fee_rate`, choosing the largest coins first.
pub fn build(
    network: Network,
    key: &SecretKey,
    mut coins: Vec<Coin>,
    outputs: Vec<TxOutput>,
    payload: TxPayload,
    fee_rate: u64,
) -> Result<Transaction, SendError> {
    coins.sort_by_key(|c| std::cmp::Reverse(c.amount));
    let pay = Amount::checked_sum(outputs.iter().map(|o| o.amount)).ok_or(SendError::Overflow)?;
    let change_to = key.public_key().key_hash();
    let mut chosen: Vec<OutPoint> = Vec::new();
    let mut have = Amount(0);
    let mut fee = Amount(0);
    for coin in &coins {
        chosen.push(coin.outpoint);
        have = have.checked_add(coin.amount).ok_or(SendError::Overflow)?;
        // Size with a change output: the fee is paid on the bytes actually sent.
        let mut probe = outputs.clone();
        probe.push(TxOutput {
            amount: Amount(0),
            key_hash: change_to,
        });
        let size = signed_with_payload(network, key, &chosen, probe, payload.clone()).encoded_len();
        fee = Amount(size as u64 * fee_rate);
        let need = pay.checked_add(fee).ok_or(SendError::Overflow)?;
        if have >= need {
            let mut outs = outputs.clone();
            let change = Amount(have.0 - need.0);
            if change.0 > 0 {
                outs.push(TxOutput {
                    amount: change,
                    key_hash: change_to,
                });
            }
            return Ok(signed_with_payload(network, key, &chosen, outs, payload));
        }
    }
    Err(SendError::InsufficientFunds {
        address: Address::from_public_key(network, &key.public_key()).to_string(),
        have,
        need: pay.checked_add(fee).ok_or(SendError::Overflow)?,
    })
}

/// Submits a signed transaction; returns its txid.
pub fn submit<N: Rpc + ?Sized>(node: &N, tx: &Transaction) -> Result<Txid, SendError> {
    node.call(
        "sendrawtransaction",
        json!([hex::encode(tx.to_bytes())]),
        RPC_TIMEOUT,
    )?;
    Ok(tx.txid())
}

/// Polls until `txid` is final at layer 1; returns how long that took from `since`.
pub fn wait_final<N: Rpc + ?Sized>(
    node: &N,
    txid: &Txid,
    since: Instant,
    timeout: Duration,
) -> Result<Duration, SendError> {
    loop {
        let v: Value = node.call(
            "getrawtransaction",
            json!([txid.to_hex(), true]),
            RPC_TIMEOUT,
        )?;
        if v["instantlock"] == json!(true) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > timeout {
            return Err(SendError::NotFinal {
                txid: *txid,
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
