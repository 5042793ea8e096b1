//! The set in memory: every output's entry in one map, and the layer-1 state of the few that
//! are not `Unspent` in another.
//!
//! Nearly every output is unspent at any moment (only those a transaction in flight holds are
//! locked or spent at layer 1), and a state costs 33 bytes: kept beside each entry, it made
//! an entry of the map 136 bytes instead of 96, nearly a third of the set's memory for a
//! value that is almost always the same (BENCHMARKS.md, "Memory at 1,000,000 outputs").
//!
//! Readers take no lock and may run while the one writer changes the set, so the two maps are
//! read and written in an order that never shows an output in a state it was not in: readers
//! look at the state first, then the entry; a removal takes the entry first, then the state.
//! A reader then sees an output leaving either as it was or as gone. A state changes by one
//! write to one map. Only an output inserted already claimed (at open, and when a snapshot is
//! installed: no block or layer-1 step creates one) may be seen as `Unspent` for that moment.

use super::UtxoRecord;
use crate::types::{Amount, KeyHash, OutPoint, TxOutput, UtxoEntry, UtxoState};
use dashmap::DashMap;

/// An entry as the map keeps it: 35 bytes without padding, so a (key, entry) pair is 72 bytes
/// instead of `UtxoEntry`'s 96 (an `Option<u64>` and a `bool` after a 28-byte output pad to
/// 56). hashbrown leaves about half the buckets of a large map empty, so at 1,000,000 outputs
/// that is ≈ 50 MB (BENCHMARKS.md, "Memory at 1,000,000 outputs").
#[derive(Clone, Copy)]
struct Packed {
    amount: [u8; 8],
    key_hash: [u8; 20],
    /// The height, little-endian; [`UNCONFIRMED`] while its transaction is not in a block.
    height: [u8; 6],
    coinbase: bool,
}

/// The packed height of an output not yet in a block.
const UNCONFIRMED: [u8; 6] = [0xff; 6];
/// The highest height a packed entry holds: 2^48 − 2, over 17 million years of 2-second
/// blocks. A larger one (never reached) is kept as this.
const MAX_PACKED_HEIGHT: u64 = (1 << 48) - 2;

impl Packed {
    fn pack(e: &UtxoEntry) -> Packed {
        let height = match e.height {
            None => UNCONFIRMED,
            Some(h) => {
                let mut b = [0u8; 6];
                b.copy_from_slice(&h.min(MAX_PACKED_HEIGHT).to_le_bytes()[..6]);
                b
            }
        };
        Packed {
            amount: e.output.amount.0.to_le_bytes(),
            key_hash: e.output.key_hash.0,
            height,
            coinbase: e.coinbase,
        }
    }

    fn unpack(&self) -> UtxoEntry {
        let height = (self.height != UNCONFIRMED).then(|| {
            let mut b = [0u8; 8];
            b[..6].copy_from_slice(&self.height);
            u64::from_le_bytes(b)
        });
        UtxoEntry {
            output: TxOutput {
                amount: Amount(u64::from_le_bytes(self.amount)),
                key_hash: KeyHash(self.key_hash),
            },
            height,
            coinbase: self.coinbase,
        }
    }
}

#[derive(Default)]
pub(super) struct Outputs {
    entries: DashMap<OutPoint, Packed>,
    /// The outputs whose state is not `Unspent`.
    claims: DashMap<OutPoint, UtxoState>,
}

impl Outputs {
    pub(super) fn get(&self, outpoint: &OutPoint) -> Option<UtxoRecord> {
        let state = self.claims.get(outpoint).map_or(UtxoState::Unspent, |s| *s);
        self.entries.get(outpoint).map(|entry| UtxoRecord {
            entry: entry.unpack(),
            state,
        })
    }

    pub(super) fn state(&self, outpoint: &OutPoint) -> Option<UtxoState> {
        self.get(outpoint).map(|r| r.state)
    }

    pub(super) fn contains(&self, outpoint: &OutPoint) -> bool {
        self.entries.contains_key(outpoint)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn insert(&self, outpoint: OutPoint, record: UtxoRecord) {
        self.put_state(outpoint, record.state);
        self.entries.insert(outpoint, Packed::pack(&record.entry));
    }

    /// Inserts `record` unless the set holds the output already (the writer's own check: no
    /// other writer runs meanwhile).
    pub(super) fn insert_if_absent(&self, outpoint: OutPoint, record: UtxoRecord) {
        if !self.entries.contains_key(&outpoint) {
            self.insert(outpoint, record);
        }
    }

    pub(super) fn remove(&self, outpoint: &OutPoint) {
        self.entries.remove(outpoint);
        self.claims.remove(outpoint);
    }

    /// Sets the state of an output in the set; one not in the set is left out.
    pub(super) fn set_state(&self, outpoint: &OutPoint, state: UtxoState) {
        if self.entries.contains_key(outpoint) {
            self.put_state(*outpoint, state);
        }
    }

    fn put_state(&self, outpoint: OutPoint, state: UtxoState) {
        match state {
            UtxoState::Unspent => {
                self.claims.remove(&outpoint);
            }
            claimed => {
                self.claims.insert(outpoint, claimed);
            }
        }
    }

    /// Calls `f` with each output and its entry, in no particular order.
    pub(super) fn for_each_entry(&self, mut f: impl FnMut(&OutPoint, &UtxoEntry)) {
        for r in self.entries.iter() {
            f(r.key(), &r.value().unpack());
        }
    }

    /// Every output whose state is not `Unspent`, with its state.
    pub(super) fn claimed(&self) -> Vec<(OutPoint, UtxoState)> {
        self.claims.iter().map(|r| (*r.key(), *r.value())).collect()
    }

    pub(super) fn clear(&self) {
        self.entries.clear();
        self.claims.clear();
    }

    /// Gives back what a backlog grew (see `tables::shrink_if_sparse`).
    pub(super) fn shrink_if_sparse(&self, floor: usize) {
        crate::tables::shrink_if_sparse(&self.entries, floor);
        crate::tables::shrink_if_sparse(&self.claims, floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    #[test]
    fn an_entry_packs_small_and_unpacks_whole() {
        assert_eq!(std::mem::size_of::<(OutPoint, Packed)>(), 72);
        for (height, coinbase) in [
            (None, false),
            (Some(0), true),
            (Some(MAX_PACKED_HEIGHT), false),
        ] {
            let mut e = entry();
            e.height = height;
            e.coinbase = coinbase;
            e.output.amount = Amount(u64::MAX - 3);
            assert_eq!(Packed::pack(&e).unpack(), e);
        }
        let mut e = entry();
        e.height = Some(u64::MAX);
        assert_eq!(Packed::pack(&e).unpack().height, Some(MAX_PACKED_HEIGHT));
    }

    fn entry() -> UtxoEntry {
        UtxoEntry {
            output: TxOutput {
                amount: Amount(5),
                key_hash: KeyHash([1; 20]),
            },
            height: Some(1),
            coinbase: false,
        }
    }

    #[test]
    fn states_live_apart_and_leave_with_their_output() {
        let set = Outputs::default();
        let op = OutPoint::new(Hash32([1; 32]), 0);
        let locked = UtxoState::Locked(Hash32([2; 32]));
        set.insert(
            op,
            UtxoRecord {
                entry: entry(),
                state: UtxoState::Unspent,
            },
        );
        assert_eq!(set.state(&op), Some(UtxoState::Unspent));
        assert!(set.claimed().is_empty());
        set.set_state(&op, locked);
        assert_eq!(set.state(&op), Some(locked));
        assert_eq!(set.claimed(), vec![(op, locked)]);
        set.set_state(&op, UtxoState::Unspent);
        assert!(set.claimed().is_empty());
        set.set_state(&op, locked);
        set.remove(&op);
        assert_eq!(set.get(&op), None);
        assert!(set.claimed().is_empty(), "a state leaves with its output");
        // An output not in the set takes no state.
        set.set_state(&op, locked);
        assert!(set.claimed().is_empty());
        assert_eq!(set.len(), 0);
    }
}
