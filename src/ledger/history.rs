//! Address history: which transactions touched an address (paid it or spent from it), in
//! chain order, for light wallets (`getaddresstxids`, `timed wallet history`).
//!
//! A record is written in the same batch as the state change it describes: at layer-1
//! finality (ordered at the height of the block expected to carry it, tip + 1) or, for a
//! transaction this node first meets in a block, with that block. Blocks are final, so the
//! index only grows. A node that fast-synced has no history below its snapshot.

use super::{Ledger, Result};
use crate::storage::schema::meta_key;
use crate::storage::{TreeId, WriteBatch};
use crate::types::{Hash32, KeyHash, Transaction, Txid};
use std::collections::BTreeSet;

/// `key hash ‖ height (big endian) ‖ txid`: a prefix scan gives an address's history in
/// height order.
pub fn history_key(key_hash: &KeyHash, height: u64, txid: &Txid) -> [u8; 60] {
    let mut k = [0u8; 60];
    k[..20].copy_from_slice(&key_hash.0);
    k[20..28].copy_from_slice(&height.to_be_bytes());
    k[28..].copy_from_slice(&txid.0);
    k
}

/// The addresses a transaction touches: its outputs' and its inputs' owners.
pub fn touched(tx: &Transaction) -> BTreeSet<KeyHash> {
    let mut set: BTreeSet<KeyHash> = tx.outputs.iter().map(|o| o.key_hash).collect();
    if !tx.is_coinbase() {
        set.extend(tx.inputs.iter().map(|i| i.public_key.key_hash()));
    }
    set
}

/// Adds `tx` to the history of every address it touches.
pub fn record(batch: &mut WriteBatch, tx: &Transaction, height: u64) {
    let txid = tx.txid();
    for kh in touched(tx) {
        batch.put_raw(
            TreeId::AddressTxs,
            history_key(&kh, height, &txid),
            Vec::new(),
        );
    }
}

impl Ledger {
    /// The transactions touching `key_hash` at heights `start..=end`, in order, skipping
    /// the first `skip` and returning at most `limit`.
    pub fn address_txids(
        &self,
        key_hash: &KeyHash,
        start: u64,
        end: u64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(u64, Txid)>> {
        let tree = self.storage.tree(TreeId::AddressTxs);
        let lo = history_key(key_hash, start, &Hash32([0; 32]));
        let hi = history_key(key_hash, end, &Hash32([0xff; 32]));
        let mut out = Vec::new();
        for item in tree.range(lo..=hi).skip(skip).take(limit) {
            let (k, _) = item.map_err(crate::storage::StorageError::from)?;
            if k.len() != 60 {
                continue;
            }
            let mut h = [0u8; 8];
            h.copy_from_slice(&k[20..28]);
            let mut t = [0u8; 32];
            t.copy_from_slice(&k[28..]);
            out.push((u64::from_be_bytes(h), Hash32(t)));
        }
        Ok(out)
    }

    /// Builds the index from the stored blocks and final transactions, once, for a database
    /// written before the index existed. Returns how many transactions it indexed.
    pub(super) fn build_history_if_missing(&self) -> Result<usize> {
        let meta = self.storage.tree(TreeId::Meta);
        if meta
            .contains_key(meta_key::ADDRESS_HISTORY)
            .map_err(crate::storage::StorageError::from)?
        {
            return Ok(0);
        }
        let mut batch = WriteBatch::new();
        let mut count = 0;
        let tip = self.height();
        if let Some(tip) = tip {
            for height in 0..=tip {
                // A fast-synced node has no bodies below its snapshot.
                if let Some(block) = self.storage.block_at(height)? {
                    for tx in &block.transactions {
                        record(&mut batch, tx, height);
                        count += 1;
                    }
                }
            }
        }
        for item in self.storage.tree(TreeId::FinalTxs).iter() {
            let (k, _) = item.map_err(crate::storage::StorageError::from)?;
            if let Ok(txid) = <[u8; 32]>::try_from(k.as_ref()) {
                if let Some(tx) = self.final_tx(&Hash32(txid))? {
                    record(&mut batch, &tx, tip.map_or(0, |t| t + 1));
                    count += 1;
                }
            }
        }
        batch.put_raw(TreeId::Meta, meta_key::ADDRESS_HISTORY, vec![1]);
        self.storage.commit(batch)?;
        Ok(count)
    }
}
