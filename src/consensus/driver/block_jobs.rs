//! Block work done beside the owner: building this node's proposal, and checking another's.
//!
//! ```text
//! engine: BuildProposal ─► owner: ProposalRequest (time, payees, carried certificate)
//!   ─► Output::BuildProposal ─► beside (the node's blocking pool; the simulation: inline)
//!        ProposalRequest::build: the final set ordered, walked, committed to
//!   ─► on_proposal_built: still on the tip? evidence, next set's hash ─► engine: ProposalBuilt
//!
//! engine: ValidateProposal ─► owner: every transaction final here? (else ask, wait)
//!   ─► Output::CheckProposal ─► beside: ProposalCheck::run (certificate, evidence, the walk,
//!        coinbase, next set)
//!   ─► on_proposal_checked: still on the tip? ─► engine: ProposalValidity
//! ```
//!
//! Both walk up to a block's worth of transactions against the block rule and expand the UTXO
//! commitment: on a busy node they were the largest piece of the owner's time, during which no
//! vote or submit was handled. The ledger reads from shared maps (`&self`), so the work runs
//! beside the owner: layer 1 goes on finalizing meanwhile (a build takes the final set as it
//! finds it; a check needs only transactions already final, whose states layer 1 no longer
//! changes), and a block committed meanwhile makes the result stale, which the owner drops (the
//! engine, past that height, would too). The walk either keeps for the commit is compared
//! with the states at the commit, as before. What needs the owner's own state (the evidence it
//! holds, the set after the block) is added when a built proposal comes back.

use super::blocks::{payees, spent_outpoints, BlockRules};
use super::{ConsensusDriver, Output, Result};
use crate::consensus::bft::BftInput;
use crate::consensus::finality::Millis;
use crate::ledger::{BlockTemplate, BuiltBlock, Ledger, LedgerError};
use crate::types::{Block, BlockHash};
use std::sync::Arc;

/// What the owner decided for a proposal (height, round and the template's proposer-side
/// fields); the candidates are the ledger's final set when it is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalRequest {
    pub height: u64,
    pub round: u32,
    template: BlockTemplate,
}

/// A built proposal on its way back to the owner ([`ConsensusDriver::on_proposal_built`]).
#[derive(Debug)]
pub struct BuiltProposal {
    height: u64,
    round: u32,
    outcome: std::result::Result<BuiltBlock, LedgerError>,
}

impl ProposalRequest {
    /// Builds the block from the ledger's final set as it is now. Runs on any thread: it reads
    /// the ledger and remembers its walk for the commit, nothing else.
    pub fn build(mut self, ledger: &Ledger) -> BuiltProposal {
        self.template.transactions = ledger.final_candidates();
        BuiltProposal {
            height: self.height,
            round: self.round,
            outcome: ledger.build_block(self.template),
        }
    }
}

/// Another's proposal to check beside the owner: every transaction in it is final here.
#[derive(Clone, Debug)]
pub struct ProposalCheck {
    block: Arc<Block>,
    /// The tip it was asked on: the check is void once another block is committed.
    tip: BlockHash,
    rules: BlockRules,
}

impl PartialEq for ProposalCheck {
    fn eq(&self, other: &Self) -> bool {
        self.block.hash() == other.block.hash()
            && self.tip == other.tip
            && self.rules.same_as(&other.rules)
    }
}

impl Eq for ProposalCheck {}

/// A checked proposal on its way back to the owner ([`ConsensusDriver::on_proposal_checked`]).
#[derive(Debug)]
pub struct CheckedProposal {
    block: Arc<Block>,
    tip: BlockHash,
    /// Why it is invalid, if it is.
    verdict: std::result::Result<(), String>,
}

impl ProposalCheck {
    pub(super) fn new(block: Arc<Block>, tip: BlockHash, rules: BlockRules) -> ProposalCheck {
        ProposalCheck { block, tip, rules }
    }

    /// Checks the block on the tip it was asked on. Runs on any thread: it reads the ledger and
    /// remembers its walk for the commit, nothing else.
    pub fn run(self, ledger: &Ledger) -> CheckedProposal {
        let verdict = self.rules.check(ledger, &self.block, &self.tip);
        CheckedProposal {
            block: self.block,
            tip: self.tip,
            verdict,
        }
    }
}

impl ConsensusDriver {
    /// The request for this node's proposal at `height`/`round`, if it can propose there (it
    /// has a key, and the ledger's tip is the height before).
    pub(super) fn request_proposal(
        &self,
        height: u64,
        round: u32,
        now: Millis,
    ) -> Option<ProposalRequest> {
        let key = self.cfg.key.as_ref()?;
        if self.ledger.height().map(|h| h + 1) != Some(height) {
            return None;
        }
        Some(ProposalRequest {
            height,
            round,
            template: BlockTemplate {
                timestamp_ms: self.proposal_time(now),
                round,
                proposer: key.public_key(),
                payees: payees(&self.set, self.last_commit.as_ref()),
                transactions: Vec::new(),
                max_transactions: self.cfg.max_block_txs,
                next_masternode_set_hash: Default::default(),
                last_commit: self.last_commit.clone(),
            },
        })
    }

    /// A proposal this node asked for ([`Output::BuildProposal`]) is built: unless a block
    /// was committed meanwhile, the evidence this node holds and the next set's hash complete
    /// it, and the engine proposes it (if it is still at that height, round and step).
    pub fn on_proposal_built(&mut self, built: BuiltProposal, now: Millis) -> Result<Vec<Output>> {
        let BuiltProposal {
            height,
            round,
            outcome,
        } = built;
        let built = match outcome {
            Ok(b) => b,
            Err(LedgerError::Storage(e)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(height, error = %e, "cannot build a proposal");
                return Ok(Vec::new());
            }
        };
        if self.ledger.tip().map(|t| t.hash) != Some(built.block.header.prev_hash) {
            tracing::debug!(
                height,
                round,
                "a block was committed while the proposal was built: dropped"
            );
            return Ok(Vec::new());
        }
        // Layer 1 made these final, yet the block rule refuses them: a disagreement between
        // the layers (a bug). The block goes ahead without them.
        for (txid, reason) in &built.skipped {
            tracing::warn!(height, %txid, %reason, "final transaction left out of the proposal");
            crate::metrics::block_builder_skipped();
        }
        if built.carried > 0 {
            tracing::debug!(height, carried = built.carried, "block full: rest carried");
        }
        let mut block = built.block;
        self.add_evidence(&mut block)?;
        let (next, _) = self.set.after_block(&block, &spent_outpoints(&block));
        block.header.next_masternode_set_hash = next.hash();
        tracing::debug!(
            height,
            round,
            txs = block.transactions.len(),
            "built proposal"
        );
        let mut out = Vec::new();
        let effects = self.bft.step(
            BftInput::ProposalBuilt {
                height,
                round,
                block,
            },
            now,
        );
        self.run_bft_effects(effects, now, &mut out)?;
        Ok(out)
    }

    /// Another's proposal is checked ([`Output::CheckProposal`]): unless a block was committed
    /// meanwhile, the engine hears whether it is valid.
    pub fn on_proposal_checked(
        &mut self,
        checked: CheckedProposal,
        now: Millis,
    ) -> Result<Vec<Output>> {
        let CheckedProposal {
            block,
            tip,
            verdict,
        } = checked;
        let height = block.header.height;
        if self.ledger.tip().map(|t| t.hash) != Some(tip) {
            tracing::debug!(
                height,
                "a block was committed while a proposal was checked: dropped"
            );
            return Ok(Vec::new());
        }
        if let Err(reason) = &verdict {
            tracing::warn!(height, hash = %block.hash(), %reason, "invalid proposal");
        }
        let mut out = Vec::new();
        let effects = self.bft.step(
            BftInput::ProposalValidity {
                height,
                hash: block.hash(),
                valid: verdict.is_ok(),
            },
            now,
        );
        self.run_bft_effects(effects, now, &mut out)?;
        Ok(out)
    }
}
