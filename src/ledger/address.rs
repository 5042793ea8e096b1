//! Address queries: an address's outputs and balance, from the [`AddressIndex`] (confirmed
//! outputs) and the final transactions in memory (unconfirmed ones).

use super::{Ledger, Result, UtxoRecord};
use crate::types::{Amount, KeyHash, OutPoint, UtxoState};
use std::collections::BTreeSet;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The confirmed outputs of each address, in memory beside the set it indexes.
///
/// The whole UTXO set is in memory already, so the index is derived from it at open rather
/// than stored: kept in sled (schema 4 and before) it cost three writes of every transfer's
/// nine on the sled thread, and sled's resident page state for as many keys, to save a scan at
/// start. An ordered set of (owner, outpoint) pairs: ≈ 80 bytes an output, one range per
/// query, one write lock per block.
#[derive(Debug, Default)]
pub struct AddressIndex(RwLock<BTreeSet<(KeyHash, OutPoint)>>);

/// Built in one go at open (one sort, no lock per output).
impl FromIterator<(KeyHash, OutPoint)> for AddressIndex {
    fn from_iter<I: IntoIterator<Item = (KeyHash, OutPoint)>>(pairs: I) -> Self {
        AddressIndex(RwLock::new(pairs.into_iter().collect()))
    }
}

impl AddressIndex {
    /// The index for a run of changes (a block's), under one lock.
    pub fn write(&self) -> RwLockWriteGuard<'_, BTreeSet<(KeyHash, OutPoint)>> {
        // Poisoning only marks a panic elsewhere; the set itself is always whole.
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeSet<(KeyHash, OutPoint)>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The confirmed outpoints `owner` holds, in order.
    pub fn outpoints(&self, owner: &KeyHash) -> Vec<OutPoint> {
        let from = (*owner, OutPoint::new(crate::types::Hash32([0; 32]), 0));
        self.read()
            .range(from..)
            .take_while(|(o, _)| o == owner)
            .map(|(_, op)| *op)
            .collect()
    }
}

/// What an address holds, split the way a wallet shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressBalance {
    /// In outputs created by committed blocks and not being spent.
    pub confirmed: Amount,
    /// In outputs of transactions final at layer 1 but not yet in a block; spendable now.
    pub unconfirmed: Amount,
    /// In outputs a pending or final transaction is spending.
    pub spending: Amount,
    pub utxo_count: usize,
}

impl AddressBalance {
    /// What the owner can spend right now.
    pub fn spendable(&self) -> Option<Amount> {
        self.confirmed.checked_add(self.unconfirmed)
    }
}

impl Ledger {
    /// The outputs an address owns, in outpoint order.
    pub fn address_utxos(&self, key_hash: &KeyHash) -> Result<Vec<(OutPoint, UtxoRecord)>> {
        let mut outpoints: BTreeSet<OutPoint> =
            self.by_address.outpoints(key_hash).into_iter().collect();
        // Final transactions are a block's worth at most: scanning them beats an index.
        for f in self.finals.iter() {
            for (i, output) in f.tx.outputs.iter().enumerate() {
                if output.key_hash == *key_hash {
                    outpoints.insert(OutPoint::new(*f.key(), i as u32));
                }
            }
        }
        Ok(outpoints
            .into_iter()
            .filter_map(|op| self.utxo(&op).map(|rec| (op, rec)))
            .collect())
    }

    pub fn address_balance(&self, key_hash: &KeyHash) -> Result<AddressBalance> {
        let mut b = AddressBalance::default();
        for (_, rec) in self.address_utxos(key_hash)? {
            let amount = rec.entry.output.amount;
            // Saturating: the sum of all coins fits in u64 by the coinbase rules, so this never
            // saturates on a valid chain; it only keeps a corrupt record from panicking.
            let bucket = match (rec.state, rec.entry.is_confirmed()) {
                (UtxoState::Unspent, true) => &mut b.confirmed,
                (UtxoState::Unspent, false) => &mut b.unconfirmed,
                _ => &mut b.spending,
            };
            *bucket = Amount(bucket.0.saturating_add(amount.0));
            b.utxo_count += 1;
        }
        Ok(b)
    }
}
