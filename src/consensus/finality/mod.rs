//! Layer 1: instant finality by masternode votes (in the family of FastPay and Dash
//! InstantSend). A pure state machine: no sockets, no disk, no clock.
//!
//! ```text
//! Transaction ─► inputs free or ours? ─yes─► PersistLock ─► buffer txid ─► (timer / full)
//!                     │no                                              ─► sign batch
//!                     └─► ConflictDetected                             ─► BroadcastVotes
//! VoteBatch (verified) ─► voter in set? ─► tally each txid by weight ─► > 2/3 ─► Finalized
//! ```
//!
//! Rules (DESIGN.md §4): an honest masternode locks the inputs of the first valid spend it
//! sees and never votes for another spend of them (rule 1, 4); the lock is persisted before
//! the vote leaves (the shell flushes before executing `BroadcastVotes`); a transaction is final
//! when voters with more than two thirds of the weight name it (rule 3); two quorums overlap in
//! more than a third, so two conflicting spends cannot both be final while less than a third of
//! the weight is faulty.

pub mod tally;

use crate::consensus::MasternodeSet;
use crate::types::vote::MAX_BATCH_TXIDS;
use crate::types::{Hash32, Network, OutPoint, PublicKey, SecretKey, Transaction, Txid, VoteBatch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tally::Tally;

/// Milliseconds on the driver's clock.
pub type Millis = u64;

/// Most transactions tracked at once, as tallies and as bodies; new ones beyond it are
/// dropped, so a flood of votes or conflicting spends cannot grow memory without bound.
pub const MAX_TRACKED: usize = 1_000_000;

#[derive(Clone, Debug)]
pub struct FinalityConfig {
    pub network: Network,
    /// How long a txid may wait in the vote buffer before the batch is signed and sent.
    pub batch_interval_ms: Millis,
    /// A batch is sent at once when it holds this many txids.
    pub max_batch: usize,
}

impl FinalityConfig {
    pub fn new(network: Network) -> FinalityConfig {
        FinalityConfig {
            network,
            batch_interval_ms: 5,
            max_batch: MAX_BATCH_TXIDS,
        }
    }
}

/// Proof that a transaction is final: the signed batches of voters holding more than two
/// thirds of the weight, each naming the txid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalityCertificate {
    pub txid: Txid,
    pub batches: Vec<Arc<VoteBatch>>,
}

impl FinalityCertificate {
    /// Checks the certificate against a set: signatures, membership, that each batch names
    /// the txid, one vote per voter, and a quorum of weight.
    pub fn verify(&self, set: &MasternodeSet, network: Network) -> bool {
        let mut seen = BTreeSet::new();
        let mut weight = 0u64;
        for b in &self.batches {
            if !b.txids.contains(&self.txid) || !b.verify(network) || !seen.insert(b.voter) {
                return false;
            }
            weight += set.weight_of(&b.voter);
        }
        set.has_quorum(weight)
    }
}

#[derive(Clone, Debug)]
pub enum FinalityInput {
    /// A transaction the shell has verified (structure, signatures) and checked against the
    /// ledger's confirmed state.
    Transaction(Arc<Transaction>),
    /// A vote batch whose signature the shell has verified.
    VoteBatch(Arc<VoteBatch>),
    /// The vote-batch timer fired.
    BatchTimer,
    /// Time to send again this node's batches for transactions not yet confirmed in a block
    /// (final ones too: a peer that missed votes cannot finalize, nor accept a block with the
    /// transaction, until it has them).
    Regossip,
    /// A block was committed: the set for the next height, and the transactions it confirmed
    /// (their inputs are gone from the set; nothing about them needs tracking any more).
    BlockCommitted {
        set: Arc<MasternodeSet>,
        confirmed: Vec<Arc<Transaction>>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinalityEffect {
    /// Lock the transaction's inputs to it in the ledger. Must be durable before the next
    /// `BroadcastVotes` leaves the node.
    PersistLock(Arc<Transaction>),
    /// Flush storage, then send this batch to every peer.
    BroadcastVotes(Arc<VoteBatch>),
    /// Feed `BatchTimer` at this time.
    ScheduleBatchTimer { at: Millis },
    /// The transaction is final: record it in the ledger and tell whoever waits.
    Finalized {
        tx: Arc<Transaction>,
        certificate: FinalityCertificate,
    },
    /// A quorum named a transaction this node has not seen: fetch it from a peer.
    FetchTransaction(Txid),
    /// Two different transactions spend one outpoint: their signer equivocated. Only that
    /// owner's coins are affected (they may stay locked forever).
    ConflictDetected {
        outpoint: OutPoint,
        first: Txid,
        second: Txid,
    },
}

pub struct FinalityEngine {
    config: FinalityConfig,
    key: Option<SecretKey>,
    me: Option<PublicKey>,
    set: Arc<MasternodeSet>,
    /// Outpoint → the transaction this node locked it to (or saw final).
    locks: HashMap<OutPoint, Txid>,
    /// Bodies of transactions being voted on or waited for.
    known: HashMap<Txid, Arc<Transaction>>,
    tallies: HashMap<Txid, Tally>,
    /// Signed batches still referenced by a tally, with the number of tallies using each.
    batches: HashMap<Hash32, (Arc<VoteBatch>, usize)>,
    finalized: BTreeSet<Txid>,
    voted: BTreeSet<Txid>,
    buffer: Vec<Txid>,
    timer_armed: bool,
    next_sequence: u64,
    fetch_requested: BTreeSet<Txid>,
    /// Voted-for txids without a body, seen since the last regossip / before it.
    unknown_recent: BTreeSet<Txid>,
    unknown_older: BTreeSet<Txid>,
}

impl FinalityEngine {
    /// `key` is the operator key of a masternode (`None` on a node that only observes).
    /// `locks` are the locks the ledger holds (from before a restart) and `finalized` the
    /// transactions final but not yet confirmed; `first_sequence` must exceed any sequence
    /// this key signed before.
    pub fn new(
        config: FinalityConfig,
        key: Option<SecretKey>,
        set: Arc<MasternodeSet>,
        locks: impl IntoIterator<Item = (OutPoint, Txid)>,
        finalized: impl IntoIterator<Item = Txid>,
        first_sequence: u64,
    ) -> FinalityEngine {
        let me = key.as_ref().map(SecretKey::public_key);
        let locks: HashMap<OutPoint, Txid> = locks.into_iter().collect();
        // Transactions we locked before a restart were voted for (or were about to be):
        // never vote for anything else on those inputs; re-voting for them is harmless.
        let voted = BTreeSet::new();
        FinalityEngine {
            config,
            key,
            me,
            set,
            locks,
            known: HashMap::new(),
            tallies: HashMap::new(),
            batches: HashMap::new(),
            finalized: finalized.into_iter().collect(),
            voted,
            buffer: Vec::new(),
            timer_armed: false,
            next_sequence: first_sequence,
            fetch_requested: BTreeSet::new(),
            unknown_recent: BTreeSet::new(),
            unknown_older: BTreeSet::new(),
        }
    }

    pub fn set(&self) -> &Arc<MasternodeSet> {
        &self.set
    }

    /// After a restart: votes again for every transaction this node holds a lock for (locks
    /// persisted before a crash may never have been sent, and votes sent before it are lost
    /// from memory while peers may still need them). Voting again for the transaction an
    /// input is locked to is always safe: it is the same choice.
    pub fn resume(&mut self) -> Vec<FinalityEffect> {
        let mut fx = Vec::new();
        if !self.am_voter() {
            return fx;
        }
        let mut txids: Vec<Txid> = self.locks.values().copied().collect();
        txids.sort();
        txids.dedup();
        for txid in txids {
            if self.voted.insert(txid) {
                self.buffer.push(txid);
                if self.buffer.len() >= self.config.max_batch {
                    self.flush_batch(&mut fx);
                }
            }
        }
        self.flush_batch(&mut fx);
        fx
    }

    pub fn is_final(&self, txid: &Txid) -> bool {
        self.finalized.contains(txid)
    }

    /// Weight of the votes seen for `txid` under the current set.
    pub fn weight_for(&self, txid: &Txid) -> u64 {
        self.tallies.get(txid).map_or(0, Tally::weight)
    }

    /// The certificate of a final transaction still tracked (until a block confirms it).
    pub fn certificate(&self, txid: &Txid) -> Option<FinalityCertificate> {
        let tally = self.tallies.get(txid)?;
        let batches = tally
            .voters()
            .filter_map(|(_, id)| self.batches.get(id).map(|(b, _)| Arc::clone(b)))
            .collect();
        Some(FinalityCertificate {
            txid: *txid,
            batches,
        })
    }

    fn am_voter(&self) -> bool {
        self.me.is_some_and(|me| self.set.contains_voter(&me))
    }

    pub fn step(&mut self, input: FinalityInput, now: Millis) -> Vec<FinalityEffect> {
        let mut fx = Vec::new();
        match input {
            FinalityInput::Transaction(tx) => self.on_transaction(tx, now, &mut fx),
            FinalityInput::VoteBatch(batch) => self.on_vote_batch(batch, &mut fx),
            FinalityInput::BatchTimer => {
                self.timer_armed = false;
                self.flush_batch(&mut fx);
            }
            FinalityInput::Regossip => self.regossip(&mut fx),
            FinalityInput::BlockCommitted { set, confirmed } => {
                self.on_block(set, confirmed, &mut fx)
            }
        }
        fx
    }

    fn on_transaction(&mut self, tx: Arc<Transaction>, now: Millis, fx: &mut Vec<FinalityEffect>) {
        let txid = tx.txid();
        if self.finalized.contains(&txid) {
            return;
        }
        if self.known.len() >= MAX_TRACKED && !self.tallies.contains_key(&txid) {
            // Full: only transactions someone already voted for may still come in.
            return;
        }
        self.fetch_requested.remove(&txid);
        self.known.insert(txid, Arc::clone(&tx));
        // A quorum may already have named it while we lacked the body.
        if self.try_finalize(&txid, fx) {
            return;
        }
        let mut conflict = false;
        for outpoint in tx.claimed_outpoints() {
            if let Some(other) = self.locks.get(&outpoint) {
                if *other != txid {
                    conflict = true;
                    fx.push(FinalityEffect::ConflictDetected {
                        outpoint,
                        first: *other,
                        second: txid,
                    });
                }
            }
        }
        if conflict || !self.am_voter() || self.voted.contains(&txid) {
            return;
        }
        let fresh = tx
            .claimed_outpoints()
            .any(|op| !self.locks.contains_key(&op));
        for outpoint in tx.claimed_outpoints() {
            self.locks.insert(outpoint, txid);
        }
        if fresh {
            fx.push(FinalityEffect::PersistLock(Arc::clone(&tx)));
        }
        self.voted.insert(txid);
        self.buffer.push(txid);
        if self.buffer.len() >= self.config.max_batch {
            self.flush_batch(fx);
        } else if !self.timer_armed {
            self.timer_armed = true;
            fx.push(FinalityEffect::ScheduleBatchTimer {
                at: now + self.config.batch_interval_ms,
            });
        }
    }

    fn flush_batch(&mut self, fx: &mut Vec<FinalityEffect>) {
        if self.buffer.is_empty() {
            return;
        }
        let Some(key) = &self.key else {
            self.buffer.clear();
            return;
        };
        let txids = std::mem::take(&mut self.buffer);
        let batch = Arc::new(VoteBatch::sign(
            key,
            self.config.network,
            self.set.height(),
            self.next_sequence,
            txids,
        ));
        self.next_sequence += 1;
        fx.push(FinalityEffect::BroadcastVotes(Arc::clone(&batch)));
        self.on_vote_batch(batch, fx);
    }

    fn on_vote_batch(&mut self, batch: Arc<VoteBatch>, fx: &mut Vec<FinalityEffect>) {
        if !self.set.contains_voter(&batch.voter) || batch.txids.len() > MAX_BATCH_TXIDS {
            return;
        }
        let id = batch.id();
        let mut uses = 0;
        let mut newly_weighty = Vec::new();
        for txid in &batch.txids {
            if self.finalized.contains(txid) {
                continue;
            }
            if !self.tallies.contains_key(txid) && self.tallies.len() >= MAX_TRACKED {
                continue;
            }
            let tally = self.tallies.entry(*txid).or_default();
            if tally.add(batch.voter, id, &self.set) {
                uses += 1;
                newly_weighty.push(*txid);
            }
            // A masternode vouches for a transaction this node has not seen. It usually
            // arrives on its own a moment later; if it has not by the regossip after next, ask
            // (the body may be rare after crashes and loss).
            if !self.known.contains_key(txid) && self.unknown_recent.len() < MAX_TRACKED {
                self.unknown_recent.insert(*txid);
            }
        }
        if uses > 0 {
            self.batches.entry(id).or_insert((batch, 0)).1 += uses;
        }
        for txid in newly_weighty {
            self.try_finalize(&txid, fx);
        }
    }

    /// Declares `txid` final if its tally is a quorum and its body is known. Returns whether
    /// it is (now) final.
    fn try_finalize(&mut self, txid: &Txid, fx: &mut Vec<FinalityEffect>) -> bool {
        if self.finalized.contains(txid) {
            return true;
        }
        let Some(tally) = self.tallies.get(txid) else {
            return false;
        };
        if !self.set.has_quorum(tally.weight()) {
            return false;
        }
        let Some(tx) = self.known.get(txid).cloned() else {
            if self.fetch_requested.insert(*txid) {
                fx.push(FinalityEffect::FetchTransaction(*txid));
            }
            return false;
        };
        let certificate = self.certificate(txid).unwrap_or(FinalityCertificate {
            txid: *txid,
            batches: Vec::new(),
        });
        self.finalized.insert(*txid);
        for outpoint in tx.claimed_outpoints() {
            self.locks.insert(outpoint, *txid);
        }
        fx.push(FinalityEffect::Finalized { tx, certificate });
        true
    }

    fn on_block(
        &mut self,
        set: Arc<MasternodeSet>,
        confirmed: Vec<Arc<Transaction>>,
        fx: &mut Vec<FinalityEffect>,
    ) {
        for tx in &confirmed {
            let txid = tx.txid();
            for input in &tx.inputs {
                self.locks.remove(&input.prev_out);
            }
            // A registration's claim on its collateral ends with its block; a lock another
            // transaction holds on it stays (the collateral is still unspent).
            for outpoint in tx.claimed_outpoints().skip(tx.inputs.len()) {
                if self.locks.get(&outpoint) == Some(&txid) {
                    self.locks.remove(&outpoint);
                }
            }
            self.forget(&txid);
            self.finalized.remove(&txid);
        }
        self.set = set;
        let mut tracked: Vec<Txid> = self.tallies.keys().copied().collect();
        tracked.sort();
        for txid in &tracked {
            if let Some(t) = self.tallies.get_mut(txid) {
                t.recount(&self.set);
            }
        }
        // Votes cast under the old set count again under the new one; some may now suffice.
        for txid in tracked {
            self.try_finalize(&txid, fx);
        }
    }

    fn forget(&mut self, txid: &Txid) {
        self.known.remove(txid);
        self.voted.remove(txid);
        self.fetch_requested.remove(txid);
        if let Some(tally) = self.tallies.remove(txid) {
            for (_, id) in tally.voters() {
                if let Some((_, uses)) = self.batches.get_mut(id) {
                    *uses -= 1;
                    if *uses == 0 {
                        self.batches.remove(id);
                    }
                }
            }
        }
    }

    /// Most own batches sent again per regossip.
    const REGOSSIP_BATCHES: usize = 64;

    fn regossip(&mut self, fx: &mut Vec<FinalityEffect>) {
        let older = std::mem::replace(
            &mut self.unknown_older,
            std::mem::take(&mut self.unknown_recent),
        );
        for txid in older {
            if !self.known.contains_key(&txid)
                && !self.finalized.contains(&txid)
                && self.tallies.contains_key(&txid)
                && self.fetch_requested.insert(txid)
            {
                fx.push(FinalityEffect::FetchTransaction(txid));
            }
        }
        let Some(me) = self.me else { return };
        let mut mine: Vec<&Arc<VoteBatch>> = self
            .batches
            .values()
            .map(|(b, _)| b)
            .filter(|b| b.voter == me)
            .collect();
        mine.sort_by_key(|b| b.sequence);
        for b in mine.into_iter().take(Self::REGOSSIP_BATCHES) {
            fx.push(FinalityEffect::BroadcastVotes(Arc::clone(b)));
        }
    }

    /// Transactions waiting for votes, for the shell to send again.
    pub fn pending(&self) -> Vec<Arc<Transaction>> {
        let mut txs: Vec<&Arc<Transaction>> = self
            .known
            .iter()
            .filter(|(id, _)| !self.finalized.contains(*id))
            .map(|(_, tx)| tx)
            .collect();
        txs.sort_by_key(|t| t.txid());
        txs.into_iter().cloned().collect()
    }

    /// Diagnostics: txids waiting in the vote buffer, whether the batch timer is armed, and
    /// whether this node has voted for `txid`.
    pub fn vote_state(&self, txid: &Txid) -> (usize, bool, bool) {
        (
            self.buffer.len(),
            self.timer_armed,
            self.voted.contains(txid),
        )
    }

    /// Locks currently held, for tests and diagnostics.
    pub fn locks(&self) -> BTreeMap<OutPoint, Txid> {
        self.locks.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests;
