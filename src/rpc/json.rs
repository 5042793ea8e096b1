//! JSON views of blocks and transactions in Bitcoin's shapes, with TimeCoin's finality fields.
//!
//! Amounts are decimal TIME as JSON numbers, like bitcoind's; every amount below 2^26 TIME
//! (67,108,864) prints exactly, since doubles there are closer together than one atom and
//! the shortest decimal that round-trips is the one with at most 8 decimals. Above it a
//! printed amount may be off by an atom or so (a client that needs those reads the atoms);
//! `rawbuild::parse_amount` refuses such numbers with decimals rather than guess.

use crate::types::{Address, Amount, Block, Canonical, Network, Transaction, TxPayload};
use serde_json::{json, Value};

pub fn amount(a: Amount) -> Value {
    json!(a.atoms() as f64 / crate::types::ATOMS_PER_TIME as f64)
}

/// Where a transaction stands: in a block, final at layer 1, or still collecting votes.
#[derive(Clone, Debug, Default)]
pub struct TxStatus {
    /// Height and hash of the block holding it, and the tip height.
    pub block: Option<(u64, crate::types::BlockHash, u64, u64)>,
    /// Final at layer 1 (a quorum of masternode votes).
    pub final_l1: bool,
    /// Vote weight seen for it and the quorum it needs.
    pub weight: u64,
    pub quorum: u64,
}

pub fn transaction(network: Network, tx: &Transaction, status: Option<&TxStatus>) -> Value {
    let kind = match &tx.payload {
        TxPayload::Transfer => json!("transfer"),
        TxPayload::Coinbase { height } => json!({ "coinbase": { "height": height } }),
        TxPayload::MasternodeRegistration(r) => json!({
            "masternode_registration": {
                "tier": r.tier.name(),
                "collateral": { "txid": r.collateral.txid.to_hex(), "vout": r.collateral.index },
                "operator_key": r.operator_key.to_hex(),
                "p2p_addr": r.p2p_addr,
            }
        }),
    };
    let vin: Vec<Value> = tx
        .inputs
        .iter()
        .map(|i| {
            if tx.is_coinbase() {
                json!({ "coinbase": "" })
            } else {
                json!({
                    "txid": i.prev_out.txid.to_hex(),
                    "vout": i.prev_out.index,
                    "pubkey": i.public_key.to_hex(),
                    "signature": hex::encode(i.signature.0),
                })
            }
        })
        .collect();
    let vout: Vec<Value> = tx
        .outputs
        .iter()
        .enumerate()
        .map(|(n, o)| {
            json!({
                "value": amount(o.amount),
                "n": n,
                "address": Address::new(network, o.key_hash).to_string(),
            })
        })
        .collect();
    let bytes = tx.to_bytes();
    let mut v = json!({
        "txid": tx.txid().to_hex(),
        "hash": tx.txid().to_hex(),
        "version": tx.version,
        "size": bytes.len(),
        "kind": kind,
        "vin": vin,
        "vout": vout,
        "hex": hex::encode(&bytes),
    });
    if let Some(s) = status {
        let in_block = s.block.is_some();
        v["instantlock"] = json!(s.final_l1 || in_block);
        v["finalized"] = json!({
            "final": s.final_l1 || in_block,
            "weight": s.weight,
            "quorum": s.quorum,
        });
        v["confirmations"] = json!(0);
        if let Some((height, hash, tip, time_ms)) = s.block {
            v["blockhash"] = json!(hash.to_hex());
            v["blockheight"] = json!(height);
            v["confirmations"] = json!(tip.saturating_sub(height) + 1);
            v["time"] = json!(time_ms / 1000);
            v["blocktime"] = json!(time_ms / 1000);
        }
    }
    v
}

/// `getblock` at verbosity 1 (txids) or 2 (whole transactions).
pub fn block(
    network: Network,
    block: &Block,
    tip: u64,
    next: Option<crate::types::BlockHash>,
    verbosity: u8,
) -> Value {
    let h = &block.header;
    let height = h.height;
    let txs: Vec<Value> = block
        .transactions
        .iter()
        .map(|tx| {
            if verbosity >= 2 {
                transaction(network, tx, None)
            } else {
                json!(tx.txid().to_hex())
            }
        })
        .collect();
    let mut v = json!({
        "hash": block.hash().to_hex(),
        "confirmations": tip.saturating_sub(height) + 1,
        "height": height,
        "version": h.version,
        "merkleroot": h.tx_root.to_hex(),
        "witnessroot": h.witness_root.to_hex(),
        "evidenceroot": h.evidence_root.to_hex(),
        "nEvidence": block.evidence.len(),
        "time": h.timestamp_ms / 1000,
        "time_ms": h.timestamp_ms,
        "round": h.round,
        "proposer": h.proposer.to_hex(),
        "utxocommitment": h.utxo_commitment.to_hex(),
        "nextmasternodesethash": h.next_masternode_set_hash.to_hex(),
        "nTx": block.transactions.len(),
        "size": block.to_bytes().len(),
        "tx": txs,
    });
    if height > 0 {
        v["previousblockhash"] = json!(h.prev_hash.to_hex());
    }
    if let Some(n) = next {
        v["nextblockhash"] = json!(n.to_hex());
    }
    v
}
