//! The BFT engine's safety state: what this validator signed and what it is locked on.
//!
//! Persisted (and flushed) before any signature leaves the node — Aptos' "persist before you
//! sign" rule — so a validator that crashes and restarts can never sign a second, different
//! vote for the same height, round and step, and never forgets a lock.

use crate::types::{Block, ConsensusVote, Proposal};
use bincode::{Decode, Encode};

/// The steps of a round, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Step {
    /// Waiting for the block interval to pass after the previous commit.
    NewHeight,
    Propose,
    Prevote,
    Precommit,
    /// Decided; waiting for the shell to apply the block.
    Commit,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SafetyState {
    pub height: u64,
    pub round: u32,
    /// Signed in (height, round), if any.
    pub proposal: Option<Proposal>,
    pub prevote: Option<ConsensusVote>,
    pub precommit: Option<ConsensusVote>,
    /// lockedRound / lockedValue of the paper.
    pub locked: Option<(u32, Block)>,
    /// validRound / validValue of the paper.
    pub valid: Option<(u32, Block)>,
}

crate::canonical!(
    SafetyState,
    "consensus safety state",
    3 * crate::types::codec::MAX_BLOCK_BYTES
);

impl SafetyState {
    pub fn new(height: u64) -> SafetyState {
        SafetyState {
            height,
            round: 0,
            proposal: None,
            prevote: None,
            precommit: None,
            locked: None,
            valid: None,
        }
    }

    /// Moves to a later round of the same height, keeping locks.
    pub fn enter_round(&mut self, round: u32) {
        if round > self.round {
            self.round = round;
            self.proposal = None;
            self.prevote = None;
            self.precommit = None;
        }
    }
}
