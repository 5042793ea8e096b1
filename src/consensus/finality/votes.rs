//! Counting vote batches: binding to one of the two sets, the per-voter bound on votes for
//! unseen txids, batches held for a set not yet known, and layer-1 equivocation.
//!
//! ```text
//! batch ─► set_hash = S_cur / S_prev? ─no─► held (MAX_FUTURE_TXIDS) until that set arrives
//!            │yes, voter a member
//!            ▼
//!   per txid: body known? ─yes─► same voter named a rival spend? ─yes─► VoteEquivocation (still counts)
//!             │no: under MAX_UNKNOWN_PER_VOTER for this voter? ─no─► ignored
//!             ▼
//!           tally.add ─► try_finalize
//! ```

use super::tally::Binding;
use super::{
    FinalityEffect, FinalityEngine, MAX_EQUIVOCATIONS, MAX_FUTURE_TXIDS, MAX_TRACKED,
    MAX_UNKNOWN_PER_VOTER,
};
use crate::types::vote::MAX_BATCH_TXIDS;
use crate::types::{Hash32, OutPoint, PublicKey, Transaction, Txid, VoteBatch};
use std::sync::Arc;

impl FinalityEngine {
    pub(super) fn on_vote_batch(&mut self, batch: Arc<VoteBatch>, fx: &mut Vec<FinalityEffect>) {
        if batch.txids.len() > MAX_BATCH_TXIDS {
            return;
        }
        let voter = batch.voter;
        let binding = if batch.set_hash == self.set_hash {
            Binding::Cur
        } else if batch.set_hash == self.prev_hash {
            Binding::Prev
        } else {
            self.hold_future(batch);
            return;
        };
        let member = match binding {
            Binding::Cur => self.set.contains_voter(&voter) || self.prev.contains_voter(&voter),
            Binding::Prev => self.prev.contains_voter(&voter),
        };
        if !member {
            return;
        }
        let id = batch.id();
        let mut uses = 0;
        let mut newly_weighty = Vec::new();
        for txid in &batch.txids {
            // Votes for a transaction already final here still count: after a set change
            // they are the certificate this node serves to peers that missed the first one,
            // and this node's own recast batch must stay referenced to be sent again.
            let body = self.known.get(txid).cloned();
            match &body {
                Some(tx) => self.note_equivocation(&batch, txid, tx, fx),
                None => {
                    let tally = self.tallies.get(txid);
                    if tally.is_none() && self.tallies.len() >= MAX_TRACKED {
                        continue;
                    }
                    let new_voter = !tally.is_some_and(|t| t.has_voted(&voter));
                    let outstanding = self.unknown_votes.get(&voter).copied().unwrap_or(0);
                    if new_voter && outstanding >= MAX_UNKNOWN_PER_VOTER {
                        continue;
                    }
                }
            }
            let created = !self.tallies.contains_key(txid);
            let tally = self.tallies.entry(*txid).or_default();
            let new_voter = !tally.has_voted(&voter);
            if !tally.add(voter, id, binding, &self.set, &self.prev) {
                continue;
            }
            uses += 1;
            newly_weighty.push(*txid);
            if body.is_none() {
                if new_voter {
                    *self.unknown_votes.entry(voter).or_default() += 1;
                }
                if created {
                    self.unknown_expiry.push_back((self.regossip_round, *txid));
                }
                // A masternode vouches for a transaction this node has not seen. It usually
                // arrives on its own a moment later; if it has not by the regossip after
                // next, ask (the body may be rare after crashes and loss).
                self.unknown_recent.insert(*txid);
            }
        }
        if uses > 0 {
            self.batches.entry(id).or_insert((batch, 0)).1 += uses;
        }
        for txid in newly_weighty {
            self.ratify(&txid, fx);
            self.try_finalize(&txid, fx);
        }
    }

    /// Keeps a batch bound to a set this node does not hold, within `MAX_FUTURE_TXIDS`.
    pub(super) fn hold_future(&mut self, batch: Arc<VoteBatch>) {
        let n = batch.txids.len();
        if n > MAX_FUTURE_TXIDS {
            return;
        }
        self.future_txids += n;
        self.future.push_back(batch);
        while self.future_txids > MAX_FUTURE_TXIDS {
            match self.future.pop_front() {
                Some(old) => self.future_txids -= old.txids.len(),
                None => break,
            }
        }
    }

    /// Reports `batch`'s vote for `tx` if it equivocates (its voter also named another known
    /// spend of one of `tx`'s inputs), once per (voter, outpoint).
    ///
    /// The vote still counts. Every node must count the same signatures, or a certificate
    /// one node finalized with (and that verifies offline) would fall short at the others,
    /// which then refuse the block carrying it and, after a set change, may let a joiner
    /// pick the rival. Counting it is safe: two conflicting quorums of one set overlap in
    /// more than a third of its weight, so only a third of faulty weight could sign both.
    /// `txid` is `tx`'s (known to the caller: hashing it again per vote was an eighth of what a
    /// vote batch costs the engine).
    pub(super) fn note_equivocation(
        &mut self,
        batch: &Arc<VoteBatch>,
        txid: &Txid,
        tx: &Arc<Transaction>,
        fx: &mut Vec<FinalityEffect>,
    ) {
        let voter = batch.voter;
        // Usually no one has equivocated: the reported set is not hashed into per vote.
        let reported = !self.equivocators.is_empty();
        for outpoint in tx.claimed_outpoints() {
            if reported && self.equivocators.contains(&(voter, outpoint)) {
                return;
            }
            if let Some(first) = self.earlier_vote(&voter, &outpoint, txid) {
                self.report_equivocation(outpoint, first, (Arc::clone(batch), Arc::clone(tx)), fx);
                return;
            }
        }
    }

    /// A batch of `voter` naming another known spend of `outpoint` than `txid`, with it.
    pub(super) fn earlier_vote(
        &self,
        voter: &PublicKey,
        outpoint: &OutPoint,
        txid: &Txid,
    ) -> Option<(Arc<VoteBatch>, Arc<Transaction>)> {
        let spenders = self.spenders.get(outpoint)?;
        for other in spenders.iter().filter(|t| *t != txid) {
            let Some(votes) = self.tallies.get(other).and_then(|t| t.votes_of(voter)) else {
                continue;
            };
            let id = votes.cur.or(votes.prev)?;
            let batch = self.batches.get(&id).map(|(b, _)| Arc::clone(b))?;
            let body = self.known.get(other).cloned()?;
            return Some((batch, body));
        }
        None
    }

    pub(super) fn report_equivocation(
        &mut self,
        outpoint: OutPoint,
        first: (Arc<VoteBatch>, Arc<Transaction>),
        second: (Arc<VoteBatch>, Arc<Transaction>),
        fx: &mut Vec<FinalityEffect>,
    ) {
        let voter = second.0.voter;
        if self.equivocators.len() >= MAX_EQUIVOCATIONS {
            return;
        }
        if self.equivocators.insert((voter, outpoint)) {
            fx.push(FinalityEffect::VoteEquivocation {
                outpoint,
                first,
                second,
            });
        }
    }

    /// The body of `tx` arrived after votes for it: a voter among them that also voted for a
    /// rival spend equivocated. Reported; the vote keeps counting (see `note_equivocation`).
    pub(super) fn equivocations_in_body(
        &mut self,
        tx: &Arc<Transaction>,
        voters: &[PublicKey],
        fx: &mut Vec<FinalityEffect>,
    ) {
        let txid = tx.txid();
        for voter in voters {
            for outpoint in tx.claimed_outpoints() {
                if self.equivocators.contains(&(*voter, outpoint)) {
                    break;
                }
                let Some(first) = self.earlier_vote(voter, &outpoint, &txid) else {
                    continue;
                };
                let second = self
                    .tallies
                    .get(&txid)
                    .and_then(|t| t.votes_of(voter))
                    .and_then(|v| v.cur.or(v.prev))
                    .and_then(|id| self.batches.get(&id).map(|(b, _)| Arc::clone(b)));
                if let Some(second) = second {
                    self.report_equivocation(outpoint, first, (second, Arc::clone(tx)), fx);
                }
                break;
            }
        }
    }

    pub(super) fn release_batches(&mut self, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            if let Some((_, uses)) = self.batches.get_mut(&id) {
                *uses -= 1;
                if *uses == 0 {
                    self.batches.remove(&id);
                }
            }
        }
    }

    /// One fewer tally without a body holds a vote of `voter`.
    pub(super) fn unknown_vote_done(&mut self, voter: &PublicKey) {
        if let Some(n) = self.unknown_votes.get_mut(voter) {
            *n -= 1;
            if *n == 0 {
                self.unknown_votes.remove(voter);
            }
        }
    }
}
