//! Equivocation evidence in the driver (issue 11 §8): detected or received, verified, stored,
//! gossiped, carried in blocks, and checked in others' blocks.
//!
//! ```text
//! BftEffect::Equivocation ─┐
//! layer-1 detection ───────┼─► record_evidence ─verify─► evidence_store ─new?─► Broadcast
//! WireMessage::Evidence ───┘        (set, network)                       metric, log
//! on_proposal_built ◄── one piece per offender still in the set (bounded, fits the block)
//! BlockRules::check ──► every piece verifies against the set that signs the block
//! MasternodeSet::after_block ──► the offenders leave the set after the block
//! ```

use super::{ConsensusDriver, NodeEvent, Output, PeerId, Result, WireMessage};
use crate::consensus::evidence_store::{self, Stored};
use crate::consensus::MasternodeSet;
use crate::types::block::MAX_BLOCK_EVIDENCE;
use crate::types::codec::MAX_BLOCK_BYTES;
use crate::types::{Block, Canonical, Evidence, EvidenceError, Network};
use std::sync::Arc;

impl ConsensusDriver {
    /// Verifies `ev` against the current masternode set and keeps it if it is new: stored in
    /// the consensus tree, counted in `timed_equivocations_total`, logged and gossiped. Returns
    /// whether it was new. Evidence that does not verify is dropped with the reason (the caller
    /// decides whether its sender is at fault).
    ///
    /// Layer-1 detection in the finality engine hands its conflicts here as `Evidence::layer1`.
    pub fn record_evidence(
        &mut self,
        ev: Evidence,
        out: &mut Vec<Output>,
    ) -> Result<std::result::Result<bool, EvidenceError>> {
        let storage = self.ledger.storage();
        if evidence_store::contains(storage, &ev)? {
            return Ok(Ok(false));
        }
        if let Err(e) = ev.verify(&*self.set, self.cfg.network) {
            return Ok(Err(e));
        }
        match evidence_store::store(storage, &ev)? {
            Stored::Known | Stored::Full => return Ok(Ok(false)),
            Stored::New => {}
        }
        crate::metrics::equivocation(ev.layer());
        tracing::warn!(
            offender = %ev.offender(),
            layer = ev.layer().label(),
            what = %ev.describe(),
            "masternode equivocated: evidence stored; it leaves the set once a block carries it"
        );
        if let Evidence::Layer2 { a, .. } = &ev {
            out.push(Output::Event(NodeEvent::Equivocation {
                validator: a.validator,
                height: a.height,
                round: a.round,
            }));
        }
        out.push(Output::Broadcast(WireMessage::Evidence(Arc::new(ev))));
        Ok(Ok(true))
    }

    /// Evidence from a peer. Evidence that is provably wrong (bad signature, no conflict)
    /// faults the peer; evidence against a key that is no longer a member is only stale.
    pub(super) fn accept_evidence(
        &mut self,
        from: PeerId,
        ev: Arc<Evidence>,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        match self.record_evidence((*ev).clone(), out)? {
            Ok(_) | Err(EvidenceError::NotMember { .. }) => {}
            Err(e) => out.push(Output::Event(NodeEvent::PeerFault {
                peer: from,
                reason: format!("sent invalid equivocation evidence: {e}"),
            })),
        }
        Ok(())
    }

    /// What a proposal carries: one piece of stored evidence per offender that is still a
    /// voting member of the set signing the block, at most `MAX_BLOCK_EVIDENCE`, and only as
    /// many as keep `block` within the block size limit.
    pub(super) fn add_evidence(&self, block: &mut Block) -> Result<()> {
        let set = Arc::clone(&self.set);
        let mut evidence =
            evidence_store::list(self.ledger.storage(), MAX_BLOCK_EVIDENCE, true, |ev| {
                set.contains_voter(&ev.offender())
            })?;
        // The transactions are the builder's and keep their roots; only the evidence's root
        // is set here, and the block measured only when it carries some (a full block is
        // megabytes to encode).
        let mut size = match evidence.is_empty() {
            true => 0,
            false => crate::types::codec::encoded_len(&*block),
        };
        evidence.retain(|ev| {
            // A piece and its length prefix; the list's own length prefix is under 10 bytes.
            let len = ev.to_bytes().len() + 10;
            if size + len <= MAX_BLOCK_BYTES {
                size += len;
                true
            } else {
                false
            }
        });
        if !evidence.is_empty() {
            tracing::info!(
                height = block.header.height,
                pieces = evidence.len(),
                "proposal carries equivocation evidence"
            );
        }
        block.header.evidence_root = crate::types::evidence::evidence_root(&evidence);
        block.evidence = evidence;
        Ok(())
    }

    /// Keeps the evidence a committed block carried (already verified by `BlockRules::check`), so
    /// every node holds it for RPC even if it missed the gossip: after this block the offender
    /// is no longer a member, and the gossiped copy would be refused as stale.
    pub(super) fn keep_block_evidence(&self, block: &Block) -> Result<()> {
        for ev in &block.evidence {
            if evidence_store::store(self.ledger.storage(), ev)? == Stored::New {
                crate::metrics::equivocation(ev.layer());
            }
        }
        Ok(())
    }
}

/// Every piece of evidence a block carries must verify against the set that signs it (the
/// set after the tip, `set`): a member, a real conflict, good signatures. The shape (bound, one
/// per offender, root) is `Block::check_structure`'s.
pub(super) fn check_block_evidence(
    set: &MasternodeSet,
    network: Network,
    block: &Block,
) -> std::result::Result<(), String> {
    for (index, ev) in block.evidence.iter().enumerate() {
        ev.verify(set, network)
            .map_err(|e| format!("evidence {index}: {e}"))?;
    }
    Ok(())
}
