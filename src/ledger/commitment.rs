//! The UTXO-set commitment: an elliptic-curve multiset hash (ECMH) over Ristretto255.
//!
//! Each output maps to a curve point by hashing it (BLAKE3 XOF, 64 bytes, then Ristretto's
//! uniform hash-to-group); the set's commitment is the sum of its points. So
//!
//! * adding or removing an output costs one hash-to-point and one point addition, whatever the
//!   size of the set (incremental);
//! * the sum does not depend on the order of insertion (order-independent);
//! * finding two different sets with one sum means solving discrete logarithms in the group
//!   (collision-resistant), unlike XOR or a plain sum of hashes, which fall to linear algebra
//!   (Wagner's generalized birthday attack). Bitcoin Core's MuHash3072 gives the same
//!   properties with a multiplicative group; a curve point is smaller and faster here.
//!
//! The header stores the compressed point, 32 bytes.

use crate::types::hash::{tag, Hash32};
use crate::types::{codec, OutPoint, UtxoEntry};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::Identity;

/// A running multiset hash of the confirmed UTXO set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtxoCommitment {
    acc: RistrettoPoint,
}

impl Default for UtxoCommitment {
    fn default() -> Self {
        Self::empty()
    }
}

impl UtxoCommitment {
    /// The commitment of the empty set.
    pub fn empty() -> Self {
        UtxoCommitment {
            acc: RistrettoPoint::identity(),
        }
    }

    /// Restores a saved accumulator; `None` if the bytes are not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        CompressedRistretto(*bytes)
            .decompress()
            .map(|acc| UtxoCommitment { acc })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.acc.compress().to_bytes()
    }

    /// The 32-byte value a block header carries.
    pub fn digest(&self) -> Hash32 {
        Hash32(self.to_bytes())
    }

    pub fn insert(&mut self, outpoint: &OutPoint, entry: &UtxoEntry) {
        self.acc += element(outpoint, entry);
    }

    pub fn remove(&mut self, outpoint: &OutPoint, entry: &UtxoEntry) {
        self.acc -= element(outpoint, entry);
    }

    /// Recomputes a commitment from scratch, streaming over the set.
    pub fn of_set<'a, I>(items: I) -> Self
    where
        I: IntoIterator<Item = (&'a OutPoint, &'a UtxoEntry)>,
    {
        let mut c = Self::empty();
        for (op, entry) in items {
            c.insert(op, entry);
        }
        c
    }
}

fn element(outpoint: &OutPoint, entry: &UtxoEntry) -> RistrettoPoint {
    let mut h = Hash32::hasher(tag::UTXO_ELEMENT);
    h.update(&outpoint.to_key());
    codec::encode_into(entry, &mut h);
    let mut wide = [0u8; 64];
    h.finalize_xof().fill(&mut wide);
    RistrettoPoint::from_uniform_bytes(&wide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Amount, KeyHash, TxOutput};

    fn item(i: u8) -> (OutPoint, UtxoEntry) {
        (
            OutPoint::new(Hash32([i; 32]), u32::from(i)),
            UtxoEntry {
                output: TxOutput {
                    amount: Amount(u64::from(i) + 1),
                    key_hash: KeyHash([i; 20]),
                },
                height: Some(u64::from(i)),
                coinbase: false,
            },
        )
    }

    #[test]
    fn order_independent_and_removal_undoes_insertion() {
        let items: Vec<_> = (0..10).map(item).collect();
        let forward = UtxoCommitment::of_set(items.iter().map(|(o, e)| (o, e)));
        let backward = UtxoCommitment::of_set(items.iter().rev().map(|(o, e)| (o, e)));
        assert_eq!(forward, backward);
        let mut c = forward;
        c.remove(&items[3].0, &items[3].1);
        c.insert(&items[3].0, &items[3].1);
        assert_eq!(c, forward);
        for (o, e) in &items {
            c.remove(o, e);
        }
        assert_eq!(c, UtxoCommitment::empty());
    }

    #[test]
    fn distinguishes_duplicates_and_round_trips() {
        let (o, e) = item(1);
        let mut once = UtxoCommitment::empty();
        once.insert(&o, &e);
        let mut twice = once;
        twice.insert(&o, &e);
        assert_ne!(once, twice);
        assert_ne!(twice, UtxoCommitment::empty());
        assert_eq!(UtxoCommitment::from_bytes(&once.to_bytes()), Some(once));
    }
}
