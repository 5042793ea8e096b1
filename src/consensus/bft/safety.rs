//! The BFT engine's safety state: what this validator signed and what it is locked on.
//!
//! Persisted (and flushed) before any signature leaves the node — Aptos' "persist before you
//! sign" rule — so a validator that crashes and restarts can never sign a second, different
//! vote for the same height, round and step, and never forgets a lock.
//!
//! The state holds up to three blocks (the signed proposal's, the locked and the valid value),
//! each up to a block's size. It is persisted as a [`SafetyRecord`] that names those blocks by
//! hash, a few hundred bytes, plus each distinct block in a record of its own, so every record
//! written fits the decode limit of what reads it back, however full the blocks are.

use crate::types::codec::MAX_VOTE_BYTES;
use crate::types::{Block, BlockHash, ConsensusVote, Proposal, PublicKey, Signature};
use bincode::{Decode, Encode};
use std::sync::Arc;

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
    pub locked: Option<(u32, Arc<Block>)>,
    /// validRound / validValue of the paper.
    pub valid: Option<(u32, Arc<Block>)>,
}

/// A proposal this validator signed, with its block named by hash.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedProposal {
    pub height: u64,
    pub round: u32,
    pub valid_round: Option<u32>,
    pub block: BlockHash,
    pub proposer: PublicKey,
    pub signature: Signature,
}

/// The persisted form of [`SafetyState`]: blocks by hash (stored apart, see the module doc).
/// Fixed-size fields and two votes: bounded by construction.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SafetyRecord {
    pub height: u64,
    pub round: u32,
    pub proposal: Option<SignedProposal>,
    pub prevote: Option<ConsensusVote>,
    pub precommit: Option<ConsensusVote>,
    pub locked: Option<(u32, BlockHash)>,
    pub valid: Option<(u32, BlockHash)>,
}

crate::canonical!(SafetyRecord, "consensus safety record", MAX_VOTE_BYTES);

/// A safety record names a block that is not stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the consensus safety record names block {0}, which is not stored")]
pub struct MissingSafetyBlock(pub BlockHash);

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

impl SafetyState {
    /// The record to persist, and the distinct blocks it names (to store apart).
    pub fn to_record(&self) -> (SafetyRecord, Vec<&Block>) {
        let mut blocks: Vec<&Block> = Vec::with_capacity(3);
        let proposal = self.proposal.as_ref().map(|p| SignedProposal {
            height: p.height,
            round: p.round,
            valid_round: p.valid_round,
            block: p.block.hash(),
            proposer: p.proposer,
            signature: p.signature,
        });
        let locked = self.locked.as_ref().map(|(r, b)| (*r, b.hash()));
        let valid = self.valid.as_ref().map(|(r, b)| (*r, b.hash()));
        let candidates = [
            self.proposal.as_ref().map(|p| p.block.as_ref()),
            self.locked.as_ref().map(|(_, b)| b.as_ref()),
            self.valid.as_ref().map(|(_, b)| b.as_ref()),
        ];
        let mut seen: Vec<BlockHash> = Vec::with_capacity(3);
        for b in candidates.into_iter().flatten() {
            let h = b.hash();
            if !seen.contains(&h) {
                seen.push(h);
                blocks.push(b);
            }
        }
        let record = SafetyRecord {
            height: self.height,
            round: self.round,
            proposal,
            prevote: self.prevote.clone(),
            precommit: self.precommit.clone(),
            locked,
            valid,
        };
        (record, blocks)
    }

    /// Rebuilds the state from its record, fetching the blocks it names with `load`.
    pub fn from_record(
        record: SafetyRecord,
        mut load: impl FnMut(&BlockHash) -> Option<Block>,
    ) -> Result<SafetyState, MissingSafetyBlock> {
        let mut fetch = |h: &BlockHash| load(h).map(Arc::new).ok_or(MissingSafetyBlock(*h));
        let proposal = match record.proposal {
            Some(p) => Some(Proposal {
                height: p.height,
                round: p.round,
                valid_round: p.valid_round,
                block: fetch(&p.block)?,
                proposer: p.proposer,
                signature: p.signature,
            }),
            None => None,
        };
        let locked = match record.locked {
            Some((r, h)) => Some((r, fetch(&h)?)),
            None => None,
        };
        let valid = match record.valid {
            Some((r, h)) => Some((r, fetch(&h)?)),
            None => None,
        };
        Ok(SafetyState {
            height: record.height,
            round: record.round,
            proposal,
            prevote: record.prevote,
            precommit: record.precommit,
            locked,
            valid,
        })
    }
}
