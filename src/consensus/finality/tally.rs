//! Per-transaction vote tallies: which masternodes named a txid, in which signed batch, and
//! the weight they add up to under the current set.

use crate::consensus::MasternodeSet;
use crate::types::{Hash32, PublicKey};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Voter → id of the first batch in which it named the transaction. A voter counts once,
    /// however many batches name the txid.
    voters: BTreeMap<PublicKey, Hash32>,
    weight: u64,
}

impl Tally {
    /// Adds a vote; returns false if this voter was already counted.
    pub fn add(&mut self, voter: PublicKey, batch_id: Hash32, set: &MasternodeSet) -> bool {
        if self.voters.contains_key(&voter) {
            return false;
        }
        self.weight += set.weight_of(&voter);
        self.voters.insert(voter, batch_id);
        true
    }

    /// Recounts the weight under a new set: voters who left count for nothing.
    pub fn recount(&mut self, set: &MasternodeSet) {
        self.weight = self.voters.keys().map(|v| set.weight_of(v)).sum();
    }

    pub fn weight(&self) -> u64 {
        self.weight
    }

    pub fn voters(&self) -> impl Iterator<Item = (&PublicKey, &Hash32)> {
        self.voters.iter()
    }

    pub fn has_voted(&self, voter: &PublicKey) -> bool {
        self.voters.contains_key(voter)
    }
}
