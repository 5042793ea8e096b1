//! What Byzantine nodes do to the messages they send: swapped signatures, equivocation and
//! corruption (see [`Byzantine`]).

use super::*;

impl Sim {
    /// Garbage in place of every input signature of the block's transactions. With
    /// `reseal`, the roots are recomputed so the header matches the garbage.
    fn swap_block(&mut self, block: &Block, reseal: bool) -> Block {
        let mut block = block.clone();
        if block.transactions.iter().any(|t| !t.inputs.is_empty()) {
            self.altered += 1;
        }
        for tx in block.transactions.iter_mut() {
            for input in Arc::make_mut(tx).inputs.iter_mut() {
                let mut garbage = [0u8; 64];
                self.rng.fill(&mut garbage[..]);
                input.signature = Signature(garbage);
            }
        }
        if reseal {
            block.seal_roots();
        }
        block
    }

    /// A proposal with swapped signatures: re-signed over the resealed block by `proposer`'s
    /// key, or (without a key) the original proposal signature over the stale header.
    pub(super) fn swap_proposal(
        &mut self,
        p: &timed::types::Proposal,
        proposer: Option<&SecretKey>,
    ) -> Arc<timed::types::Proposal> {
        match proposer {
            Some(key) => {
                let block = self.swap_block(&p.block, true);
                Arc::new(timed::types::Proposal::sign(
                    key,
                    NETWORK,
                    p.height,
                    p.round,
                    p.valid_round,
                    block,
                ))
            }
            None => {
                let mut q = (*p).clone();
                q.block = Arc::new(self.swap_block(&p.block, false));
                Arc::new(q)
            }
        }
    }

    /// The full proposal behind a compact one, its transfers taken from every transaction
    /// the simulation made; `None` if one is unknown (the Byzantine node then sends it as is).
    pub(super) fn full_proposal(&self, cp: &CompactProposal) -> Option<timed::types::Proposal> {
        let transfers: Option<Vec<Arc<Transaction>>> = (cp.txids.iter())
            .map(|t| self.txs.get(t).map(Arc::clone))
            .collect();
        Some(cp.fill(transfers?))
    }

    /// [`Sim::swap_proposal`] for a proposal that travels compact. Unresealed, the swap does
    /// not show (the bodies are not sent); resealed, the header no longer matches the bodies
    /// the validators hold, which ask the proposer for the full (and swapped) block.
    pub(super) fn swap_compact(
        &mut self,
        cp: &Arc<CompactProposal>,
        proposer: Option<&SecretKey>,
    ) -> Arc<CompactProposal> {
        let swapped = match self.full_proposal(cp) {
            Some(full) => self.swap_proposal(&full, proposer),
            None => return Arc::clone(cp),
        };
        CompactProposal::of(&swapped).map_or_else(|| Arc::clone(cp), Arc::new)
    }

    /// What a signature-swapping relay makes of a message it passes on.
    pub(super) fn swap_relayed(&mut self, msg: WireMessage) -> WireMessage {
        match msg {
            WireMessage::Proposal(p) => WireMessage::Proposal(self.swap_proposal(&p, None)),
            // No signatures to swap: it swaps two txids, which no longer match the header.
            WireMessage::CompactProposal(p) if p.txids.len() >= 2 => {
                let mut q = (*p).clone();
                q.txids.swap(0, 1);
                self.altered += 1;
                WireMessage::CompactProposal(Arc::new(q))
            }
            WireMessage::Blocks(blocks) => {
                let reseal = self.rng.gen_bool(0.5);
                WireMessage::Blocks(
                    blocks
                        .into_iter()
                        .map(|(b, c)| (Arc::new(self.swap_block(&b, reseal)), c))
                        .collect(),
                )
            }
            other => other,
        }
    }

    /// A second, conflicting version of a vote or proposal, signed with the node's key.
    pub(super) fn equivocal(&mut self, i: usize, msg: &WireMessage) -> Option<WireMessage> {
        let key = self.nodes[i].key.clone();
        match msg {
            WireMessage::Vote(v) => {
                let other = match v.block_hash {
                    Some(_) => None,
                    None => Some(Hash32(self.rng.gen())),
                };
                Some(WireMessage::Vote(ConsensusVote::sign(
                    &key, NETWORK, v.kind, v.height, v.round, other,
                )))
            }
            WireMessage::Proposal(p) => {
                Some(WireMessage::Proposal(Arc::new(Self::retimed(&key, p))))
            }
            WireMessage::CompactProposal(cp) => {
                let twin = Self::retimed(&key, &self.full_proposal(cp)?);
                Some(WireMessage::CompactProposal(Arc::new(CompactProposal::of(
                    &twin,
                )?)))
            }
            _ => None,
        }
    }
}

impl Sim {
    /// `p` one millisecond later, signed by `key`: another block for the same round.
    fn retimed(key: &SecretKey, p: &timed::types::Proposal) -> timed::types::Proposal {
        let mut block = (*p.block).clone();
        block.header.timestamp_ms += 1;
        timed::types::Proposal::sign(key, NETWORK, p.height, p.round, p.valid_round, block)
    }
}

pub(super) fn corrupt(msg: WireMessage) -> WireMessage {
    match msg {
        WireMessage::Vote(mut v) => {
            v.signature.0[10] ^= 0x55;
            WireMessage::Vote(v)
        }
        WireMessage::VoteBatch(b) => {
            let mut b = (*b).clone();
            b.signature.0[10] ^= 0x55;
            WireMessage::VoteBatch(Arc::new(b))
        }
        WireMessage::Proposal(p) => {
            let mut p = (*p).clone();
            p.signature.0[10] ^= 0x55;
            WireMessage::Proposal(Arc::new(p))
        }
        WireMessage::CompactProposal(p) => {
            let mut p = (*p).clone();
            p.signature.0[10] ^= 0x55;
            WireMessage::CompactProposal(Arc::new(p))
        }
        WireMessage::SlotShare(mut share) => {
            share.signature.0[10] ^= 0x55;
            WireMessage::SlotShare(share)
        }
        WireMessage::SlotAnnouncement(a) => {
            let mut a = (*a).clone();
            a.signature.0[10] ^= 0x55;
            WireMessage::SlotAnnouncement(Arc::new(a))
        }
        other => other,
    }
}
