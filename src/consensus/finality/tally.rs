//! Per-transaction vote tallies under the joint transition rule: which masternodes named a
//! txid, in which signed batch, bound to which of the two sets the engine holds, and the
//! weight each set's count adds up to.
//!
//! ```text
//! vote bound to S_cur  ─► counts toward S_cur's quorum (weight in S_cur)
//!                     └─► and toward S_prev's quorum  (weight in S_prev, if a member)
//! vote bound to S_prev ─► counts toward S_prev's quorum only
//! ```

use crate::consensus::MasternodeSet;
use crate::types::{Hash32, PublicKey};
use std::collections::BTreeMap;

/// Which of the engine's two sets a vote is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The current set (the one after the last committed block).
    Cur,
    /// The set before the most recent change.
    Prev,
}

/// The batches in which one voter named the transaction, one per binding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoterVotes {
    pub cur: Option<Hash32>,
    pub prev: Option<Hash32>,
}

impl VoterVotes {
    fn batch_ids(&self) -> impl Iterator<Item = Hash32> {
        self.cur.into_iter().chain(self.prev)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tally {
    voters: BTreeMap<PublicKey, VoterVotes>,
    /// Weight in S_cur of the voters with a vote bound to S_cur.
    cur_weight: u64,
    /// Weight in S_prev of the voters with any vote (bound to S_cur or S_prev).
    prev_weight: u64,
}

impl Tally {
    /// Adds a vote bound to `binding`; returns false if this voter already had a vote with that
    /// binding (a voter counts once per set however many batches name the txid).
    pub fn add(
        &mut self,
        voter: PublicKey,
        batch_id: Hash32,
        binding: Binding,
        cur: &MasternodeSet,
        prev: &MasternodeSet,
    ) -> bool {
        let entry = self.voters.entry(voter).or_default();
        let first = entry.cur.is_none() && entry.prev.is_none();
        let slot = match binding {
            Binding::Cur => &mut entry.cur,
            Binding::Prev => &mut entry.prev,
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(batch_id);
        if binding == Binding::Cur {
            self.cur_weight += cur.weight_of(&voter);
        }
        if first {
            self.prev_weight += prev.weight_of(&voter);
        }
        true
    }

    /// The set changed: votes bound to the old current set are now bound to the previous one,
    /// votes bound to the old previous set count for nothing and are dropped. Returns the batch
    /// ids no longer referenced.
    pub fn shift(&mut self, cur: &MasternodeSet, prev: &MasternodeSet) -> Vec<Hash32> {
        let mut released = Vec::new();
        self.voters.retain(|_, v| {
            released.extend(v.prev);
            v.prev = v.cur.take();
            v.prev.is_some()
        });
        self.recount(cur, prev);
        released
    }

    /// The transition window closed (S_prev becomes S_cur): votes bound to the old previous
    /// set are dropped, votes bound to the current set count for both. Returns the batch ids
    /// no longer referenced.
    pub fn settle(&mut self, cur: &MasternodeSet) -> Vec<Hash32> {
        let mut released = Vec::new();
        self.voters.retain(|_, v| {
            released.extend(v.prev.take());
            v.cur.is_some()
        });
        self.recount(cur, cur);
        released
    }

    fn recount(&mut self, cur: &MasternodeSet, prev: &MasternodeSet) {
        self.cur_weight = self
            .voters
            .iter()
            .filter(|(_, v)| v.cur.is_some())
            .map(|(k, _)| cur.weight_of(k))
            .sum();
        self.prev_weight = self.voters.keys().map(|k| prev.weight_of(k)).sum();
    }

    /// Weight toward the current set's quorum.
    pub fn weight(&self) -> u64 {
        self.cur_weight
    }

    /// Weight toward the previous set's quorum.
    pub fn prev_weight(&self) -> u64 {
        self.prev_weight
    }

    /// Final under the joint rule: a quorum of S_cur bound to S_cur, and a quorum of S_prev.
    pub fn is_quorum(&self, cur: &MasternodeSet, prev: &MasternodeSet) -> bool {
        cur.has_quorum(self.cur_weight) && prev.has_quorum(self.prev_weight)
    }

    /// A quorum of either set on its own: no rival can ever gather one of that set.
    pub fn has_either_quorum(&self, cur: &MasternodeSet, prev: &MasternodeSet) -> bool {
        cur.has_quorum(self.cur_weight) || prev.has_quorum(self.prev_weight)
    }

    /// More than a third of either set: at least one honest voter vouches for it.
    pub fn has_one_third(&self, cur: &MasternodeSet, prev: &MasternodeSet) -> bool {
        cur.has_one_third(self.cur_weight) || prev.has_one_third(self.prev_weight)
    }

    pub fn voters(&self) -> impl Iterator<Item = (&PublicKey, &VoterVotes)> {
        self.voters.iter()
    }

    pub fn votes_of(&self, voter: &PublicKey) -> Option<&VoterVotes> {
        self.voters.get(voter)
    }

    pub fn has_voted(&self, voter: &PublicKey) -> bool {
        self.voters.contains_key(voter)
    }

    /// Every batch id referenced, once per (voter, binding).
    pub fn batch_ids(&self) -> impl Iterator<Item = Hash32> + '_ {
        self.voters.values().flat_map(VoterVotes::batch_ids)
    }

    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }
}
