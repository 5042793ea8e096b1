//! Finality proofs published for peers: the transaction and the vote batches that made it
//! final at layer 1, for every transaction final and not yet in a block.
//!
//! ```text
//! consensus task: a step's outputs ─ TxFinalized ─► publish (tx + certificate batches)
//!                                  └ BlockCommitted ─► forget what a block confirmed
//! sync server (blocking pool): GetFinality ─► get ─► Finality reply, within the peer's budget
//! ```
//!
//! The certificate lives in the finality engine, which only its owner may read; peers asking
//! for it (a validator missing a proposal's transaction, a node that heard votes for an
//! unknown txid) are answered from this view instead, so their requests never queue behind
//! consensus. Bounded by `MAX_PUBLISHED_PROOFS`: past it a new proof is not published, and
//! the sync server answers with the transaction from the database alone.

use crate::types::slot::SlotFinalityProof;
use crate::types::{PublicKey, Transaction, Txid, VoteBatch};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Proofs held at most: far above the final transactions a chain carries between two blocks.
pub const MAX_PUBLISHED_PROOFS: usize = 65_536;

/// A transaction final at layer 1 and the signed vote batches that made it so.
#[derive(Clone, Debug)]
pub struct FinalityProof {
    pub tx: Arc<Transaction>,
    pub batches: Vec<Arc<VoteBatch>>,
    /// Under the slot engine (large sets): the batch certificate and the txid's path to its
    /// root, in place of vote batches.
    pub slot: Option<Arc<SlotFinalityProof>>,
    /// From this node first pooling the transaction to this node seeing it final, when it saw
    /// both (not for one learned final from a peer's proof or after a restart). Local to this
    /// node: what its explorer and `gettransactionfinality` show, never sent to peers.
    pub finalized_after_ms: Option<u64>,
}

/// The published proofs, written by the consensus task, read by anyone.
///
/// This node's own vote batches are in a proof as soon as the engine counts them, before the
/// flush that makes their locks durable; `get` leaves them out until the flusher says they
/// are flushed (`mark_flushed`), so no vote reaches a peer this way before its locks are
/// persisted.
#[derive(Default)]
pub struct FinalityProofs {
    proofs: DashMap<Txid, Arc<FinalityProof>>,
    /// This node's operator key, if it votes.
    own: Option<PublicKey>,
    /// The highest sequence of its own batches flushed so far (sequences only grow).
    flushed_through: AtomicU64,
}

impl FinalityProofs {
    /// A view for a node voting with `own` (`None` for one that does not vote).
    pub fn new(own: Option<PublicKey>) -> FinalityProofs {
        FinalityProofs {
            own,
            ..FinalityProofs::default()
        }
    }

    /// Own batches up to `sequence` are durable: proofs may show them.
    pub fn mark_flushed(&self, sequence: u64) {
        self.flushed_through.fetch_max(sequence, Ordering::AcqRel);
    }

    /// Publishes the proof of `txid`; false if the view is full (it is not published).
    pub fn publish(&self, txid: Txid, proof: FinalityProof) -> bool {
        if self.proofs.len() >= MAX_PUBLISHED_PROOFS && !self.proofs.contains_key(&txid) {
            return false;
        }
        self.proofs.insert(txid, Arc::new(proof));
        true
    }

    pub fn get(&self, txid: &Txid) -> Option<Arc<FinalityProof>> {
        let proof = self.proofs.get(txid).map(|p| Arc::clone(&p))?;
        let Some(own) = self.own else {
            return Some(proof);
        };
        let flushed = self.flushed_through.load(Ordering::Acquire);
        let unflushed = |b: &Arc<VoteBatch>| b.voter == own && b.sequence > flushed;
        if !proof.batches.iter().any(unflushed) {
            return Some(proof);
        }
        let batches = proof.batches.iter().filter(|b| !unflushed(b)).cloned();
        Some(Arc::new(FinalityProof {
            tx: Arc::clone(&proof.tx),
            batches: batches.collect(),
            slot: proof.slot.clone(),
            finalized_after_ms: proof.finalized_after_ms,
        }))
    }

    /// Keeps only the proofs of transactions `keep` says are still final and unconfirmed.
    pub fn retain(&self, mut keep: impl FnMut(&Txid) -> bool) {
        self.proofs.retain(|txid, _| keep(txid));
    }

    pub fn len(&self) -> usize {
        self.proofs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.proofs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    fn proof() -> FinalityProof {
        FinalityProof {
            tx: Arc::new(Transaction::new(
                1,
                vec![],
                vec![],
                crate::types::TxPayload::Transfer,
            )),
            batches: vec![],
            slot: None,
            finalized_after_ms: None,
        }
    }

    #[test]
    fn the_view_is_bounded_and_forgets_what_it_is_told() {
        let view = FinalityProofs::default();
        for i in 0..MAX_PUBLISHED_PROOFS as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            assert!(view.publish(Hash32(id), proof()));
        }
        assert!(!view.publish(Hash32([0xff; 32]), proof()), "full");
        assert!(
            view.publish(Hash32([0; 32]), proof()),
            "a known one is replaced"
        );
        assert_eq!(view.len(), MAX_PUBLISHED_PROOFS);
        view.retain(|t| t.0[3] % 2 == 0);
        assert_eq!(view.len(), MAX_PUBLISHED_PROOFS / 2);
        assert!(view.get(&Hash32([0; 32])).is_some());
        assert!(view.publish(Hash32([0xff; 32]), proof()), "room again");
    }

    #[test]
    fn own_votes_show_only_once_flushed() {
        use crate::types::SecretKey;
        let me = SecretKey::from_bytes(&[1; 32]);
        let peer = SecretKey::from_bytes(&[2; 32]);
        let view = FinalityProofs::new(Some(me.public_key()));
        let txid = Hash32([7; 32]);
        let batch = |k: &SecretKey, seq| {
            Arc::new(VoteBatch::sign(
                k,
                crate::types::Network::Localnet,
                (0, Hash32([0; 32])),
                seq,
                vec![txid],
            ))
        };
        let mut p = proof();
        p.batches = vec![batch(&peer, 9), batch(&me, 5), batch(&me, 6)];
        view.publish(txid, p);
        let shown = |view: &FinalityProofs| -> Vec<u64> {
            let got = view.get(&txid).expect("published");
            got.batches.iter().map(|b| b.sequence).collect()
        };
        assert_eq!(shown(&view), vec![9], "no own vote before its flush");
        view.mark_flushed(5);
        assert_eq!(shown(&view), vec![9, 5]);
        view.mark_flushed(6);
        view.mark_flushed(4);
        assert_eq!(shown(&view), vec![9, 5, 6], "flushed marks only grow");
    }
}
