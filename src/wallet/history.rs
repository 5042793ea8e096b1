//! An address's transaction history with the net amount each transaction moved, from a node
//! without a node wallet: the txids come from the address index, the bodies from the
//! transaction index, and the amounts are computed here from the raw transactions, exactly.
//!
//! ```text
//! getaddresstxids (paged, chain order) ─► last N txids ─► getrawtransaction each
//!     ─► received (outputs to the address) − spent (its inputs' previous outputs) = net
//! ```

use crate::client::{ClientError, Rpc};
use crate::types::{Amount, Canonical, Hash32, KeyHash, OutPoint, Transaction, Txid};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Txids asked for per `getaddresstxids` call.
pub const PAGE: usize = 1000;
/// Most txids one history reads from the node (32 MB of txids): beyond that, the address is
/// not one a command-line wallet should page through.
pub const MAX_TXIDS: usize = 1_000_000;
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Rpc(#[from] ClientError),
    #[error("the node sent a reply this wallet cannot read: {0}")]
    BadReply(String),
    #[error("the node sent transaction {got} when asked for {asked}")]
    WrongTransaction { asked: Txid, got: Txid },
    #[error("the address has more than {MAX_TXIDS} transactions; too many to list here")]
    TooMany,
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the block at this height.
    Block(u64),
    /// Final at layer 1, not yet in a block.
    Final,
    /// Still collecting votes.
    Pending,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Block(h) => write!(f, "height {h}"),
            Place::Final => f.write_str("final, unconfirmed"),
            Place::Pending => f.write_str("pending"),
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub txid: Txid,
    /// Atoms the address gained (positive) or lost (negative, fee included).
    pub net: i128,
    pub place: Place,
}

/// `+1.50000000` / `-0.00001000`: a signed amount in TIME.
pub fn signed_time(atoms: i128) -> String {
    let sign = if atoms < 0 { '-' } else { '+' };
    // |net| ≤ the sum of a transaction's outputs or inputs, each a u64 amount.
    let magnitude = u64::try_from(atoms.unsigned_abs()).unwrap_or(u64::MAX);
    format!("{sign}{}", Amount(magnitude).to_decimal_string())
}

/// What `tx` moved for the owner of `key_hash`: its outputs to the address minus the previous
/// outputs its inputs signed by the address spend. `None` if such a previous output is unknown
/// to `prev` (the caller fetches it and asks again).
pub fn net_amount(
    tx: &Transaction,
    key_hash: &KeyHash,
    prev: impl Fn(&OutPoint) -> Option<Amount>,
) -> Result<i128, OutPoint> {
    let received: i128 = tx
        .outputs
        .iter()
        .filter(|o| &o.key_hash == key_hash)
        .map(|o| i128::from(o.amount.atoms()))
        .sum();
    let mut spent: i128 = 0;
    if !tx.is_coinbase() {
        for input in tx.inputs.iter() {
            if &input.public_key.key_hash() == key_hash {
                let value = prev(&input.prev_out).ok_or(input.prev_out)?;
                spent += i128::from(value.atoms());
            }
        }
    }
    Ok(received - spent)
}

/// Every txid of the address in chain order, read page by page.
fn all_txids<N: Rpc + ?Sized>(node: &N, address: &str) -> Result<Vec<Txid>, HistoryError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut skip = 0usize;
    loop {
        let page = node.call(
            "getaddresstxids",
            json!([{ "addresses": [address], "skip": skip, "limit": PAGE }]),
            RPC_TIMEOUT,
        )?;
        let list = page
            .as_array()
            .ok_or_else(|| HistoryError::BadReply(page.to_string()))?;
        for t in list {
            let txid = t
                .as_str()
                .and_then(|s| Hash32::from_hex(s).ok())
                .ok_or_else(|| HistoryError::BadReply(t.to_string()))?;
            // A transaction final between two pages moves from tip+1 into its block: it may
            // show up twice, and the first place is as good as the second.
            if seen.insert(txid) {
                out.push(txid);
            }
        }
        if out.len() > MAX_TXIDS {
            return Err(HistoryError::TooMany);
        }
        if list.len() < PAGE {
            return Ok(out);
        }
        skip += list.len();
    }
}

/// A transaction's body (decoded from the node's hex, checked against its txid) and place.
fn fetch_tx<N: Rpc + ?Sized>(node: &N, txid: &Txid) -> Result<(Transaction, Place), HistoryError> {
    let v: Value = node.call(
        "getrawtransaction",
        json!([txid.to_hex(), true]),
        RPC_TIMEOUT,
    )?;
    let bad = || HistoryError::BadReply(format!("getrawtransaction {txid}: {v}"));
    let bytes = v["hex"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    let tx = Transaction::from_bytes(&bytes).map_err(|_| bad())?;
    if tx.txid() != *txid {
        return Err(HistoryError::WrongTransaction {
            asked: *txid,
            got: tx.txid(),
        });
    }
    let place = match (v["blockheight"].as_u64(), v["instantlock"].as_bool()) {
        (Some(h), _) => Place::Block(h),
        (None, Some(true)) => Place::Final,
        _ => Place::Pending,
    };
    Ok((tx, place))
}

/// The last `last` transactions of the address (all if 0), oldest first.
pub fn fetch<N: Rpc + ?Sized>(
    node: &N,
    address: &str,
    key_hash: &KeyHash,
    last: usize,
) -> Result<Vec<Entry>, HistoryError> {
    let txids = all_txids(node, address)?;
    let shown = if last == 0 {
        &txids[..]
    } else {
        &txids[txids.len().saturating_sub(last)..]
    };
    let mut bodies: HashMap<Txid, Transaction> = HashMap::new();
    let mut entries = Vec::with_capacity(shown.len());
    for txid in shown {
        let (tx, place) = fetch_tx(node, txid)?;
        // Previous transactions the address's inputs spend: usually earlier in the history
        // (already fetched); older than the shown window, fetched once here.
        let net = loop {
            let lookup = |op: &OutPoint| {
                bodies
                    .get(&op.txid)
                    .and_then(|t| t.outputs.get(op.index as usize))
                    .map(|o| o.amount)
            };
            match net_amount(&tx, key_hash, lookup) {
                Ok(net) => break net,
                Err(missing) if !bodies.contains_key(&missing.txid) => {
                    let (prev, _) = fetch_tx(node, &missing.txid)?;
                    bodies.insert(missing.txid, prev);
                }
                Err(missing) => {
                    return Err(HistoryError::BadReply(format!(
                        "{txid} spends {}:{}, an output its transaction does not have",
                        missing.txid, missing.index
                    )))
                }
            }
        };
        entries.push(Entry {
            txid: *txid,
            net,
            place,
        });
        bodies.insert(*txid, tx);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::transfer::signed_transfer;
    use crate::types::{Network, SecretKey, TxOutput};

    fn pay(to: &SecretKey, atoms: u64) -> TxOutput {
        TxOutput {
            amount: Amount(atoms),
            key_hash: to.public_key().key_hash(),
        }
    }

    #[test]
    fn net_is_received_minus_spent_with_the_fee() {
        let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
        let (a, b) = (alice.public_key().key_hash(), bob.public_key().key_hash());
        let funding = signed_transfer(
            Network::Localnet,
            &bob,
            &[OutPoint::new(Hash32([7; 32]), 0)],
            vec![pay(&alice, 500), pay(&alice, 300)],
        );
        // Alice spends both outputs: 600 to Bob, 150 change, 50 fee.
        let spend = signed_transfer(
            Network::Localnet,
            &alice,
            &[
                OutPoint::new(funding.txid(), 0),
                OutPoint::new(funding.txid(), 1),
            ],
            vec![pay(&bob, 600), pay(&alice, 150)],
        );
        let prev = |op: &OutPoint| {
            (op.txid == funding.txid())
                .then(|| funding.outputs.get(op.index as usize).map(|o| o.amount))
                .flatten()
        };
        assert_eq!(net_amount(&funding, &a, prev), Ok(800));
        assert_eq!(net_amount(&spend, &a, prev), Ok(150 - 800));
        assert_eq!(net_amount(&spend, &b, prev), Ok(600));
        // Bob's input in `funding` spends an output nobody here knows: reported, not guessed.
        assert_eq!(
            net_amount(&funding, &b, prev),
            Err(OutPoint::new(Hash32([7; 32]), 0))
        );
    }

    #[test]
    fn signed_amounts_and_places_print_for_people() {
        assert_eq!(signed_time(150_000_000), "+1.50000000");
        assert_eq!(signed_time(-1_000), "-0.00001000");
        assert_eq!(signed_time(0), "+0.00000000");
        assert_eq!(Place::Block(12).to_string(), "height 12");
        assert_eq!(Place::Final.to_string(), "final, unconfirmed");
    }
}
