//! The proof that a transaction is final at layer 1, checkable offline against the two sets it
//! names (the joint transition rule of the module above).

use crate::consensus::MasternodeSet;
use crate::types::{Hash32, Network, PublicKey, Txid, VoteBatch};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Proof that a transaction is final: signed batches naming the txid, bound to `set_hash`
/// (the set current when it became final) or `prev_set_hash` (the set before that one's most
/// recent change; equal to `set_hash` when there was none), whose voters hold a quorum of
/// both sets. A voter may appear twice, once per binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalityCertificate {
    pub txid: Txid,
    pub set_hash: Hash32,
    pub prev_set_hash: Hash32,
    pub batches: Vec<Arc<VoteBatch>>,
}

impl FinalityCertificate {
    /// Checks the certificate against the sets it names: their hashes, signatures, that each
    /// batch names the txid and is bound to one of the two sets, one batch per voter and
    /// binding, and the joint quorum (bound to `cur`: a quorum of `cur`; any binding: a quorum
    /// of `prev`).
    pub fn verify(&self, cur: &MasternodeSet, prev: &MasternodeSet, network: Network) -> bool {
        if cur.hash() != self.set_hash || prev.hash() != self.prev_set_hash {
            return false;
        }
        let mut seen: BTreeSet<(PublicKey, Hash32)> = BTreeSet::new();
        let mut voters: BTreeSet<PublicKey> = BTreeSet::new();
        let (mut cur_weight, mut prev_weight) = (0u64, 0u64);
        for b in &self.batches {
            let bound = b.set_hash == self.set_hash || b.set_hash == self.prev_set_hash;
            if !bound
                || !b.txids.contains(&self.txid)
                || !seen.insert((b.voter, b.set_hash))
                || !b.verify(network)
            {
                return false;
            }
            if b.set_hash == self.set_hash {
                cur_weight += cur.weight_of(&b.voter);
            }
            if voters.insert(b.voter) {
                prev_weight += prev.weight_of(&b.voter);
            }
        }
        cur.has_quorum(cur_weight) && prev.has_quorum(prev_weight)
    }
}
