//! Publishing the consensus view (`consensus::status`) after each hop of the consensus task,
//! which alone reads the engines and the pool.
//!
//! ```text
//! hop inputs  ─ submitted / relayed tx, peer vote batch ─┐
//! hop outputs ─ own vote batch, TxFinalized ─────────────┴ txids ► pending: upsert or remove
//!             ─ BlockCommitted (or `full`) ► pending: reconcile with the whole pool
//! every hop ► state: height, round, step, proposer, quorum, pool size
//! ```
//!
//! Touching only the txids a hop saw keeps the cost proportional to the work the hop did;
//! the full reconcile after a block (once a second or so) catches what a block or an eviction
//! removed without naming it.

use super::{ConsensusDriver, NodeEvent, Output, WireMessage};
use crate::consensus::status::{ConsensusState, ConsensusView, PendingTx};
use crate::types::Txid;

impl ConsensusDriver {
    /// Publishes the state after a hop: the entries of the txids it touched (`touched`: those
    /// its inputs named), of those its outputs name, and all of them after a block or when
    /// `full` (at open, after a timer or a snapshot).
    pub fn publish_status(
        &self,
        out: &[Output],
        touched: &[Txid],
        full: bool,
        view: &ConsensusView,
    ) {
        let mut reconcile = full;
        for o in out {
            match o {
                Output::Event(NodeEvent::TxFinalized(txid, _)) => view.remove(txid),
                Output::BroadcastDurable(WireMessage::VoteBatch(b)) => {
                    for txid in &b.txids {
                        self.publish_pending(txid, view);
                    }
                }
                Output::Event(NodeEvent::BlockCommitted { .. }) => reconcile = true,
                _ => {}
            }
        }
        for txid in touched {
            self.publish_pending(txid, view);
        }
        if reconcile {
            view.retain(|txid| self.mempool.contains(txid));
            for entry in self.mempool.iter_by_fee_rate() {
                self.publish_pending(&entry.txid, view);
            }
        }
        let stats = self.mempool.stats();
        let proposer = self.bft.set().proposer(self.bft.height(), self.bft.round());
        view.set_state(ConsensusState {
            height: self.bft.height(),
            round: self.bft.round(),
            step: format!("{:?}", self.bft.step_name()).to_lowercase(),
            proposer,
            quorum_weight: self.finality.set().quorum_weight(),
            pool_count: stats.count(),
            pool_bytes: stats.bytes(),
            pool_limits: *self.mempool.limits(),
        });
    }

    /// Publishes `txid`'s pool entry with its current weight, or removes it if not pooled.
    fn publish_pending(&self, txid: &Txid, view: &ConsensusView) {
        match self.mempool.get(txid) {
            Some(e) => view.upsert(
                *txid,
                PendingTx {
                    tx: std::sync::Arc::clone(&e.tx),
                    size: e.size,
                    fee: e.fee,
                    added_unix: e.added_at / 1000,
                    weight: self.finality.weight_for(txid),
                },
            ),
            None => view.remove(txid),
        }
    }
}
