//! Prevotes and precommits of one height, per round, indexed by value so that each arriving
//! vote updates its round's tallies in O(1).

use crate::consensus::MasternodeSet;
use crate::types::{BlockHash, ConsensusVote, PublicKey, VoteKind};
use std::collections::HashMap;

/// Most different values kept per validator and round: an equivocator's second vote is
/// kept (it may be needed to see a polka others saw), a third is dropped unless its value is
/// one this node must be able to count (see [`VoteKeeper::add`]).
const MAX_VALUES_PER_VALIDATOR: usize = 2;

/// The votes of one kind in one round.
///
/// Each value's tally counts a validator at most once, and the round's total counts each
/// validator once. An equivocating validator may thus count for two values, as the paper's
/// "2f+1 ⟨PREVOTE, h, r, id(v)⟩" allows: the quorum-intersection argument already counts
/// faulty validators on both sides, and without it honest nodes that received different
/// halves of an equivocation could never agree on a polka.
#[derive(Clone, Debug, Default)]
pub struct VoteSet {
    by_validator: HashMap<PublicKey, Vec<ConsensusVote>>,
    weight_by_value: HashMap<Option<BlockHash>, u64>,
    total: u64,
}

impl VoteSet {
    pub fn weight_for(&self, value: &Option<BlockHash>) -> u64 {
        self.weight_by_value.get(value).copied().unwrap_or(0)
    }

    /// Weight of all votes, whatever their value.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The votes for `value`, in validator order (for a certificate).
    pub fn votes_for(&self, value: &Option<BlockHash>) -> Vec<ConsensusVote> {
        let mut votes: Vec<ConsensusVote> = self
            .by_validator
            .values()
            .flatten()
            .filter(|v| v.block_hash == *value)
            .cloned()
            .collect();
        votes.sort_by_key(|v| v.validator);
        votes
    }

    /// Every vote, in validator order (the same order on every node, for re-gossip).
    pub fn all(&self) -> Vec<ConsensusVote> {
        let mut votes: Vec<ConsensusVote> = self.by_validator.values().flatten().cloned().collect();
        votes.sort_by_key(|v| (v.validator, v.block_hash));
        votes
    }

    /// A non-nil value with a quorum, if any.
    pub fn quorum_value(&self, set: &MasternodeSet) -> Option<BlockHash> {
        self.weight_by_value
            .iter()
            .filter(|(_, w)| set.has_quorum(**w))
            .find_map(|(v, _)| *v)
    }
}

/// What adding a vote did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    New,
    Duplicate,
    /// The validator already voted differently in this round: equivocation, with both votes.
    Conflicting(Box<(ConsensusVote, ConsensusVote)>),
}

#[derive(Clone, Debug, Default)]
pub struct RoundVotes {
    pub prevotes: VoteSet,
    pub precommits: VoteSet,
}

/// All votes of the current height.
#[derive(Clone, Debug, Default)]
pub struct VoteKeeper {
    rounds: HashMap<u32, RoundVotes>,
}

/// Highest round ahead of the current one for which votes are kept: bounds what a faulty
/// validator can make us store.
pub const MAX_ROUNDS_AHEAD: u32 = 64;

impl VoteKeeper {
    pub fn round(&self, round: u32) -> Option<&RoundVotes> {
        self.rounds.get(&round)
    }

    /// Adds a vote from a member of `set`; the caller has checked height and signature.
    ///
    /// `wanted` says the vote is for the block this node holds as the proposal of the vote's
    /// round, or as a re-proposal naming that round as its valid round. Such a vote is kept
    /// even past [`MAX_VALUES_PER_VALIDATOR`]: an equivocator that sprays a node with other
    /// values first must not keep it from counting the one vote that completes a polka
    /// others saw (line 28), or one Byzantine validator stalls the height for good
    /// (simulation seed 637). The node holds one proposal a round, so a validator's values in
    /// a round stay at two plus the proposals naming that round; counting a faulty validator
    /// for several values is as safe as for two (the type's docs).
    pub fn add(&mut self, vote: ConsensusVote, set: &MasternodeSet, wanted: bool) -> Added {
        let weight = set.weight_of(&vote.validator);
        let round = self.rounds.entry(vote.round).or_default();
        let vs = match vote.kind {
            VoteKind::Prevote => &mut round.prevotes,
            VoteKind::Precommit => &mut round.precommits,
        };
        let votes = vs.by_validator.entry(vote.validator).or_default();
        if votes.iter().any(|v| v.block_hash == vote.block_hash) {
            return Added::Duplicate;
        }
        let first = votes.first().cloned();
        if votes.len() >= MAX_VALUES_PER_VALIDATOR && !wanted {
            return match first {
                Some(f) => Added::Conflicting(Box::new((f, vote))),
                None => Added::Duplicate,
            };
        }
        if votes.is_empty() {
            vs.total += weight;
        }
        *vs.weight_by_value.entry(vote.block_hash).or_default() += weight;
        votes.push(vote.clone());
        match first {
            Some(f) => Added::Conflicting(Box::new((f, vote))),
            None => Added::New,
        }
    }

    /// Weight of distinct validators with any message in `round` (for the f+1 round skip).
    pub fn round_participation(&self, round: u32, set: &MasternodeSet) -> u64 {
        let Some(r) = self.rounds.get(&round) else {
            return 0;
        };
        let mut seen: Vec<&PublicKey> = r
            .prevotes
            .by_validator
            .keys()
            .chain(r.precommits.by_validator.keys())
            .collect();
        seen.sort();
        seen.dedup();
        seen.into_iter().map(|k| set.weight_of(k)).sum()
    }

    /// Own votes in a round, for re-gossip.
    pub fn votes_of(&self, round: u32, validator: &PublicKey) -> Vec<ConsensusVote> {
        let Some(r) = self.rounds.get(&round) else {
            return Vec::new();
        };
        [&r.prevotes, &r.precommits]
            .into_iter()
            .filter_map(|vs| vs.by_validator.get(validator))
            .flatten()
            .cloned()
            .collect()
    }
}
