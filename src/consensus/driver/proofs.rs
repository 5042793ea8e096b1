//! Publishing finality proofs for peers (`consensus::proofs`): after each step, the
//! certificates of the transactions it made final go to the shared view, and a committed
//! block takes out what it confirmed. Runs on the consensus task, which alone reads the
//! finality engine; the sync server answers `GetFinality` from the view, off this task.

use super::{ConsensusDriver, NodeEvent, Output};
use crate::consensus::proofs::{FinalityProof, FinalityProofs};
use crate::types::Txid;
use std::sync::Arc;

impl ConsensusDriver {
    /// Publishes the proofs of the transactions `out` reports final, and after a committed
    /// block forgets those no longer final and unconfirmed (what `GetFinality` serves).
    pub fn publish_proofs(&self, out: &[Output], view: &FinalityProofs) {
        let mut committed = false;
        for o in out {
            match o {
                Output::Event(NodeEvent::TxFinalized(txid)) => {
                    if let Some(proof) = self.finality_proof(txid) {
                        if !view.publish(*txid, proof) {
                            tracing::debug!(%txid, "finality proof view full; not published");
                        }
                    }
                }
                Output::Event(NodeEvent::BlockCommitted { .. }) => committed = true,
                _ => {}
            }
        }
        if committed && !view.is_empty() {
            view.retain(|txid| matches!(self.ledger.final_tx(txid), Ok(Some(_))));
        }
    }

    /// The transaction and the batches the finality engine holds for it, if it is known.
    fn finality_proof(&self, txid: &Txid) -> Option<FinalityProof> {
        let tx = match self.mempool.get(txid) {
            Some(e) => Arc::clone(&e.tx),
            None => Arc::new(self.ledger.final_tx(txid).ok().flatten()?),
        };
        let batches = self
            .finality
            .certificate(txid)
            .map(|c| c.batches)
            .unwrap_or_default();
        Some(FinalityProof { tx, batches })
    }
}
