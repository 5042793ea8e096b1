//! Publishing finality proofs for peers (`consensus::proofs`). Runs on the consensus task,
//! which alone reads the finality engine; the sync server answers `GetFinality` from the view,
//! off this task.
//!
//! ```text
//! step outputs ─ TxFinalized ─────────────► publish the engine's certificate
//!              ─ own VoteBatch ──┐
//! step inputs  ─ peer VoteBatch ─┴ final txids ► publish again (the certificate grew)
//!              ─ BlockCommitted ──────────► forget what is no longer final and unconfirmed
//! ```
//!
//! A certificate keeps growing after finality: after a set change, members' late and re-cast
//! votes are what a peer that missed the old set's quorum needs (the engine counts them, and
//! the driver's own `serve_finality` serves them), so the view follows every vote for a final
//! transaction, not only the moment it became final.

use super::{ConsensusDriver, NodeEvent, Output, WireMessage};
use crate::consensus::proofs::{FinalityProof, FinalityProofs};
use crate::types::{Txid, VoteBatch};
use std::collections::HashSet;
use std::sync::Arc;

impl ConsensusDriver {
    /// Publishes the proofs of the transactions a step made final or voted for (`voted`:
    /// txids of the peer vote batches it took in), and after a committed block forgets those
    /// no longer final and unconfirmed (what `GetFinality` serves).
    pub fn publish_proofs(&mut self, out: &[Output], voted: &[Txid], view: &FinalityProofs) {
        let mut committed = false;
        // Published below with the engine's state after the whole step: the votes of this
        // step are in them already, so they need no refresh.
        let mut published: HashSet<Txid> = HashSet::new();
        for o in out {
            match o {
                Output::Event(NodeEvent::TxFinalized(txid, tx)) => {
                    let finalized_after_ms = self.finalized_after.remove(txid);
                    let proof = FinalityProof {
                        tx: Arc::clone(tx),
                        batches: self.certificate_batches(txid),
                        slot: self.slots.as_ref().and_then(|s| s.proof(txid)),
                        finalized_after_ms,
                    };
                    if !view.publish(*txid, proof) {
                        tracing::debug!(%txid, "finality proof view full; not published");
                    }
                    published.insert(*txid);
                }
                Output::Event(NodeEvent::BlockCommitted { .. }) => committed = true,
                _ => {}
            }
        }
        // Only what this step finalized is timed: nothing left over outlives it.
        self.finalized_after.clear();
        let own_votes = out.iter().filter_map(|o| match o {
            Output::BroadcastDurable(WireMessage::VoteBatch(b)) => Some(&b.txids),
            _ => None,
        });
        for txid in own_votes.flatten().chain(voted) {
            if !published.contains(txid) {
                self.refresh_proof(txid, view);
            }
        }
        if committed && !view.is_empty() {
            // The engine forgets what a block confirmed (and its rivals): no disk read.
            view.retain(|txid| self.is_layer1_final(txid));
        }
    }

    /// Publishes the proof of every transaction final and not yet in a block (at open: the
    /// engine got them back from the database, and the view starts empty).
    pub fn refresh_final_proofs(&self, view: &FinalityProofs) {
        for (txid, _) in self.ledger.final_txs() {
            self.refresh_proof(&txid, view);
        }
    }

    /// Publishes the proof of `txid` again if it is final (its certificate may have grown),
    /// reusing the body already published: this runs for every vote on the hot path.
    fn refresh_proof(&self, txid: &Txid, view: &FinalityProofs) {
        if !self.is_layer1_final(txid) {
            return;
        }
        match view.get(txid) {
            Some(published) => {
                let batches = self.certificate_batches(txid);
                let same = batches.len() == published.batches.len()
                    && batches
                        .iter()
                        .zip(&published.batches)
                        .all(|(a, b)| Arc::ptr_eq(a, b));
                if !same {
                    let proof = FinalityProof {
                        tx: Arc::clone(&published.tx),
                        batches,
                        slot: published.slot.clone(),
                        finalized_after_ms: published.finalized_after_ms,
                    };
                    view.publish(*txid, proof);
                }
            }
            None => self.publish_proof(txid, view),
        }
    }

    fn publish_proof(&self, txid: &Txid, view: &FinalityProofs) {
        if let Some(proof) = self.finality_proof(txid) {
            if !view.publish(*txid, proof) {
                tracing::debug!(%txid, "finality proof view full; not published");
            }
        }
    }

    /// What `serve_finality` answers: the transaction (pool or final, not yet in a block) and
    /// the batches the finality engine holds for it.
    fn finality_proof(&self, txid: &Txid) -> Option<FinalityProof> {
        let tx = match self.mempool.get(txid) {
            Some(e) => Arc::clone(&e.tx),
            None => self.ledger.final_tx(txid)?,
        };
        Some(FinalityProof {
            tx,
            batches: self.certificate_batches(txid),
            slot: self.slots.as_ref().and_then(|s| s.proof(txid)),
            finalized_after_ms: None,
        })
    }

    fn certificate_batches(&self, txid: &Txid) -> Vec<Arc<VoteBatch>> {
        self.finality
            .certificate(txid)
            .map(|c| c.batches)
            .unwrap_or_default()
    }
}
