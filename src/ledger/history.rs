//! Address history: which transactions touched an address (paid it or spent from it), in
//! chain order, for light wallets (`getaddresstxids`, `timed wallet history`).
//!
//! A transaction's place is fixed when it becomes final here (at the height of the block
//! expected to carry it, tip + 1, and the moment) or, for one this node first meets in a
//! block, by that block. Its record is written with the block that confirms it; until then
//! the history of a final transaction comes from memory. Blocks are final, so the index only
//! grows. A node that fast-synced has no history below its snapshot.

use super::{Ledger, Result};
use crate::storage::schema::meta_key;
use crate::storage::{TreeId, WriteBatch};
use crate::types::{Hash32, KeyHash, Transaction, Txid};
use std::collections::BTreeSet;

/// Where a transaction sorts in a history: by height, then by when it became final here
/// (milliseconds; a block's timestamp for one first met in a block), then by its position
/// in that block, so a wallet's payments in one block list in the order they were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub height: u64,
    pub time_ms: u64,
    pub position: u32,
}

const KEY_LEN: usize = 20 + 8 + 8 + 4 + 32;

/// `key hash ‖ height ‖ time ‖ position (big endian) ‖ txid`: a prefix scan gives an
/// address's history in chain order.
pub fn history_key(key_hash: &KeyHash, order: Order, txid: &Txid) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..20].copy_from_slice(&key_hash.0);
    k[20..28].copy_from_slice(&order.height.to_be_bytes());
    k[28..36].copy_from_slice(&order.time_ms.to_be_bytes());
    k[36..40].copy_from_slice(&order.position.to_be_bytes());
    k[40..].copy_from_slice(&txid.0);
    k
}

/// The order and txid of a history key; `None` if it is not one.
fn parse_history_key(k: &[u8]) -> Option<(Order, Txid)> {
    if k.len() != KEY_LEN {
        return None;
    }
    let be64 = |r: std::ops::Range<usize>| -> Option<u64> {
        Some(u64::from_be_bytes(k[r].try_into().ok()?))
    };
    let order = Order {
        height: be64(20..28)?,
        time_ms: be64(28..36)?,
        position: u32::from_be_bytes(k[36..40].try_into().ok()?),
    };
    Some((order, Hash32(k[40..].try_into().ok()?)))
}

/// The addresses a transaction touches: its outputs' and its inputs' owners.
pub fn touched(tx: &Transaction) -> BTreeSet<KeyHash> {
    let mut set: BTreeSet<KeyHash> = tx.outputs.iter().map(|o| o.key_hash).collect();
    if !tx.is_coinbase() {
        set.extend(tx.inputs.iter().map(|i| i.public_key.key_hash()));
    }
    set
}

/// Adds `tx` (whose id the caller has: `txid`) to the history of every address it touches.
pub fn record(batch: &mut WriteBatch, tx: &Transaction, txid: &Txid, order: Order) {
    for kh in touched(tx) {
        batch.put_raw(
            TreeId::AddressTxs,
            history_key(&kh, order, txid),
            Vec::new(),
        );
    }
}

/// The order of the `index`-th transaction of a block met first in that block.
pub fn block_order(block: &crate::types::Block, index: usize) -> Order {
    Order {
        height: block.header.height,
        time_ms: block.header.timestamp_ms,
        position: index as u32,
    }
}

/// Transactions indexed per write while building the index for an older database.
const MIGRATION_BATCH_TXS: usize = 10_000;

impl Ledger {
    /// The order of a transaction final now at layer 1: at the height of the block that
    /// will carry it, at this moment.
    pub fn final_order(&self, now_ms: u64) -> Order {
        Order {
            height: self.height().map_or(0, |h| h + 1),
            time_ms: now_ms,
            position: 0,
        }
    }

    /// The transactions touching `key_hash` at heights `start..=end`, in order, skipping
    /// the first `skip` and returning at most `limit`.
    pub fn address_txids(
        &self,
        key_hash: &KeyHash,
        start: u64,
        end: u64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Order, Txid)>> {
        let lo = history_key(
            key_hash,
            Order {
                height: start,
                time_ms: 0,
                position: 0,
            },
            &Hash32([0; 32]),
        );
        let hi = history_key(
            key_hash,
            Order {
                height: end,
                time_ms: u64::MAX,
                position: u32::MAX,
            },
            &Hash32([0xff; 32]),
        );
        // Final transactions not yet in a block, from memory; merged with the first
        // `skip + limit` stored records, which hold every stored record that can make the page.
        let mut unconfirmed: Vec<(Order, Txid)> = self
            .finals
            .iter()
            .filter(|f| {
                (start..=end).contains(&f.order.height) && touched(&f.tx).contains(key_hash)
            })
            .map(|f| (f.order, *f.key()))
            .collect();
        unconfirmed.sort();
        let mut out = Vec::new();
        let want = skip.saturating_add(limit);
        self.storage
            .index_scan(TreeId::AddressTxs, &lo, &hi, |k, _| {
                if let Some(entry) = parse_history_key(k) {
                    out.push(entry);
                }
                Ok(out.len() < want)
            })?;
        out.extend(unconfirmed);
        out.sort();
        out.dedup();
        Ok(out.into_iter().skip(skip).take(limit).collect())
    }

    /// Builds the index from the stored blocks, once, for a database
    /// written before the index existed. Returns how many transactions it indexed.
    pub(super) fn build_history_if_missing(&self) -> Result<usize> {
        let meta = self.storage.tree(TreeId::Meta);
        if meta
            .contains_key(meta_key::ADDRESS_HISTORY)
            .map_err(crate::storage::StorageError::from)?
        {
            return Ok(0);
        }
        // Written in pieces, so a long chain never sits in one batch in memory. Records are
        // keyed by what they describe, so a build cut short by a crash is redone harmlessly:
        // the flag goes last.
        let mut batch = WriteBatch::new();
        let (mut count, mut pending) = (0, 0);
        if let Some(tip) = self.height() {
            for height in 0..=tip {
                // A fast-synced node has no bodies below its snapshot.
                if let Some(block) = self.storage.block_at(height)? {
                    for (i, tx) in block.transactions.iter().enumerate() {
                        record(&mut batch, tx, &tx.txid(), block_order(&block, i));
                    }
                    count += block.transactions.len();
                    pending += block.transactions.len();
                }
                if pending >= MIGRATION_BATCH_TXS {
                    self.storage.commit(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
        }
        batch.put_raw(TreeId::Meta, meta_key::ADDRESS_HISTORY, vec![1]);
        self.storage.commit(batch)?;
        Ok(count)
    }
}
