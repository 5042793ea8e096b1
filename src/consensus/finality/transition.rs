//! Set changes at block boundaries (the joint transition rule in the module above): the
//! block's confirmations clean up every rival, the tallies shift (S_cur votes become S_prev
//! votes, older ones are dropped), held batches for the new set are replayed, and this node
//! casts its votes again under the new set. The next block closes the window (S_prev becomes
//! S_cur).
//!
//! ```text
//! BlockCommitted ─► forget confirmed + rivals ─► set changed? ─yes─► shift tallies
//!                                                                 ─► replay held batches
//!                                                                 ─► recast locks, join pending
//!                ─► try_finalize every tally
//! ```

use super::tally::Tally;
use super::{FinalityEffect, FinalityEngine};
use crate::consensus::MasternodeSet;
use crate::types::{PublicKey, Transaction, Txid};
use std::collections::BTreeSet;
use std::sync::Arc;

impl FinalityEngine {
    /// Casts again, bound to the current set, every lock this node holds, and votes for the
    /// pending transactions whose inputs it has not locked otherwise (a new member's part in
    /// pending decisions). Nothing here can be a second choice for an input.
    pub(super) fn recast(&mut self, fx: &mut Vec<FinalityEffect>) {
        if !self.am_voter() {
            return;
        }
        let mut txids: Vec<Txid> = self.locks.values().copied().collect();
        txids.sort();
        txids.dedup();
        for txid in txids {
            // Only what this node could have signed: never an abstained transaction, and never
            // one whose outpoints are not all locked to it (a final transaction recorded
            // beside this node's own lock on a rival of it would make it sign both).
            if !self.abstain.contains(&txid) && self.all_locked_to(&txid) {
                self.buffer_vote(txid, fx);
            }
        }
        self.join_pending(fx);
    }

    /// Votes for the pending transactions this node may choose and has not voted for (a new
    /// member's part in pending decisions), then signs the batch.
    fn join_pending(&mut self, fx: &mut Vec<FinalityEffect>) {
        if !self.am_voter() {
            return;
        }
        // Among rivals, the one with the most support so far goes first: joining it is what
        // lets the decision complete.
        let mut pending: Vec<(std::cmp::Reverse<u64>, Txid, Arc<Transaction>)> = self
            .known
            .iter()
            .filter(|(id, _)| {
                !self.finalized.contains(*id)
                    && !self.voted.contains(*id)
                    && !self.abstain.contains(*id)
            })
            .map(|(id, tx)| {
                let support = self.tallies.get(id).map_or(0, Tally::prev_weight);
                (std::cmp::Reverse(support), *id, Arc::clone(tx))
            })
            .collect();
        pending.sort_by_key(|(support, id, _)| (*support, *id));
        for (_, _, tx) in pending {
            if self.conflicts(&tx).is_empty() && self.may_choose(&tx) {
                self.vote_for(&tx, fx);
            }
        }
        self.flush_batch(fx);
    }

    /// Whether every outpoint `txid` claims is locked to it (its body must be known; without
    /// it nothing can be said, and the body comes back through the pool after a restart).
    fn all_locked_to(&self, txid: &Txid) -> bool {
        self.known.get(txid).is_some_and(|tx| {
            tx.claimed_outpoints()
                .all(|op| self.locks.get(&op) == Some(txid))
        })
    }

    pub(super) fn on_block(
        &mut self,
        set: Arc<MasternodeSet>,
        confirmed: Vec<Arc<Transaction>>,
        fx: &mut Vec<FinalityEffect>,
    ) {
        for tx in &confirmed {
            let txid = tx.txid();
            // Every other spend of these inputs can never be final now: forget it all.
            let mut rivals = BTreeSet::new();
            for input in &tx.inputs {
                self.locks.remove(&input.prev_out);
                if let Some(spenders) = self.spenders.get(&input.prev_out) {
                    rivals.extend(spenders.iter().filter(|t| **t != txid).copied());
                }
            }
            // A registration's claim on its collateral ends with its block. Its rivals lost
            // the conflict and are forgotten like an input's; the collateral is unspent again,
            // so a spend sent after this block (how a masternode leaves) is a new decision.
            for outpoint in tx.claimed_outpoints().skip(tx.inputs.len()) {
                if self.locks.get(&outpoint) == Some(&txid) {
                    self.locks.remove(&outpoint);
                }
                if let Some(spenders) = self.spenders.get(&outpoint) {
                    rivals.extend(spenders.iter().filter(|t| **t != txid).copied());
                }
            }
            self.forget(&txid);
            self.finalized.remove(&txid);
            for rival in rivals {
                self.forget(&rival);
                self.finalized.remove(&rival);
            }
            for input in &tx.inputs {
                self.spenders.remove(&input.prev_out);
            }
            for outpoint in tx.claimed_outpoints().skip(tx.inputs.len()) {
                if let Some(spenders) = self.spenders.get_mut(&outpoint) {
                    spenders.retain(|t| *t != txid);
                    if spenders.is_empty() {
                        self.spenders.remove(&outpoint);
                    }
                }
            }
        }
        let hash = set.hash();
        if hash == self.set_hash {
            self.set = set;
            if self.prev_hash != self.set_hash {
                // The first block after a change closes the transition window; a joiner now
                // takes part in what is pending, by the rules of any member.
                self.settle_window();
                self.join_pending(fx);
            }
        } else {
            self.prev = std::mem::replace(&mut self.set, set);
            self.prev_hash = std::mem::replace(&mut self.set_hash, hash);
            self.shift_tallies();
            // Votes are per set: this node votes again under the new one.
            self.voted.clear();
            self.replay_future(fx);
            self.recast(fx);
        }
        let mut tracked: Vec<Txid> = self.tallies.keys().copied().collect();
        tracked.sort();
        for txid in tracked {
            self.try_finalize(&txid, fx);
        }
    }

    /// The set changed: every tally moves its S_cur votes to S_prev and drops the older ones.
    pub(super) fn shift_tallies(&mut self) {
        let (cur, prev) = (Arc::clone(&self.set), Arc::clone(&self.prev));
        self.retally(|tally| tally.shift(&cur, &prev));
    }

    /// Closes the transition window one block after a change: S_prev becomes S_cur, so the
    /// members who left stop holding layer 1 hostage (a Gold masternode that spends its
    /// collateral and goes offline must not leave S_prev's quorum out of reach forever).
    fn settle_window(&mut self) {
        self.prev = Arc::clone(&self.set);
        self.prev_hash = self.set_hash;
        let cur = Arc::clone(&self.set);
        self.retally(|tally| tally.settle(&cur));
    }

    /// Applies `change` to every tally (it returns the batch ids it stopped referencing), then
    /// releases those batches, ends the unknown-vote accounting of voters it dropped, and
    /// forgets tallies left empty for transactions neither known nor final.
    fn retally(&mut self, mut change: impl FnMut(&mut Tally) -> Vec<crate::types::Hash32>) {
        let mut txids: Vec<Txid> = self.tallies.keys().copied().collect();
        txids.sort();
        for txid in txids {
            let Some(tally) = self.tallies.get_mut(&txid) else {
                continue;
            };
            let before: Vec<PublicKey> = tally.voters().map(|(k, _)| *k).collect();
            let released = change(tally);
            let empty = tally.is_empty();
            let gone: Vec<PublicKey> = before.into_iter().filter(|k| !tally.has_voted(k)).collect();
            self.release_batches(released);
            if !self.known.contains_key(&txid) {
                for voter in &gone {
                    self.unknown_vote_done(voter);
                }
            }
            if empty && !self.known.contains_key(&txid) && !self.finalized.contains(&txid) {
                self.tallies.remove(&txid);
            }
        }
    }

    /// Feeds the held batches bound to the sets now held; keeps the others.
    pub(super) fn replay_future(&mut self, fx: &mut Vec<FinalityEffect>) {
        let held = std::mem::take(&mut self.future);
        self.future_txids = 0;
        for batch in held {
            if batch.set_hash == self.set_hash || batch.set_hash == self.prev_hash {
                self.on_vote_batch(batch, fx);
            } else {
                self.hold_future(batch);
            }
        }
    }
}
