//! Layer 1 for large sets: rotating aggregators over transaction batches, BLS certificates
//! (SCALING.md, "Step 2's engine"). A pure state machine like [`super::FinalityEngine`]: no
//! sockets, no disk, no clock; the shell feeds verified inputs and `now`.
//!
//! ```text
//! Transaction ─► inputs free or ours? ─yes─► PersistLock, pending
//!                                     └no──► pending, not lockable here (a rival holds them)
//! Tick (every slot) ─► aggregator of this slot? ─► announce the pending txids it locked and
//!                      has held for `settle_ms`, that no batch in flight names
//! Announcement ─► can I lock every txid? ─yes─► PersistLock (new ones), SendShare ─► aggregator
//!                                        └no──► SendReport(txids I cannot lock) ─► aggregator
//! Share ─► collector; quorum? ─► sum checked once (bad shares found by halves)
//!                                ─► BroadcastCertificate, Finalized
//! Reports ─► quorum out of reach? ─► announce the batch without the txids that keep it out
//! Certificate ─► checked against the set's keys ─► Finalized (with the txid's Merkle path)
//! ```
//!
//! Rules (DESIGN.md §4, as today's engine): a masternode locks the inputs of the first valid
//! spend it sees and never shares a batch holding another spend of them; the lock is durable
//! before the share leaves (the shell flushes before executing `SendShare`); a transaction is
//! final when a certificate of more than two thirds of the weight covers it. A share is a lock
//! on every transaction of its batch, so two certificates covering conflicting spends need an
//! honest voter to have locked both: impossible with faulty weight below a third.
//!
//! *Censorship.* A report asks the aggregator to leave txids out; it does so only when the
//! shares it can still get cannot reach a quorum, and then removes the most-reported txids
//! first, only until the voters able to lock the rest weigh a quorum. So reports from less
//! than a third of the weight never remove a transaction that the rest can lock.
//!
//! *Silent aggregators.* Slots follow each other every [`SLOT_MS`]; a transaction that a
//! silent aggregator did not announce, or whose certificate it withheld, is announced by the
//! next slot's aggregator once [`IN_FLIGHT_MS`] passed. With faulty weight `f` a slot is lost
//! with probability `f`, so a transaction waits `f / (1 − f)` extra slots on average (half a
//! slot at a third). SCALING.md's spec had a second aggregator take over the same slot after
//! 300 ms; with slots this short the next slot comes first, so the engine does without.
//!
//! *Set changes* follow today's joint transition rule: from the block that changes the set
//! until the next one, a certificate counts only if its signers (members of the new set) also
//! hold a quorum of the set before (members that left cannot sign under the new set, so if
//! they held a third of the old one, layer 1 waits for the next block). Two quorums of one
//! set overlap in an honest member, which never locks two spends.
//!
//! *Catch-up.* A certificate travels with its batch's txids, so a node that missed the
//! announcement still uses it; a body that comes after its certificate is final on arrival
//! while the batch is held ([`SLOT_WINDOW`] slots).
//!
//! Not yet in this engine (SCALING.md): the joiner rules of today's engine, and answering
//! `GetFinality` with a [`SlotFinalityProof`] (a node that missed a certificate for longer than
//! the window waits for the block).

mod collect;
mod keys;
#[cfg(test)]
mod tests;

pub use collect::{Certification, ShareCollector, ShareError};
pub use keys::{CertificateError, SetKeys, Voter};

use super::Millis;
use crate::types::hash::MerkleTree;
use crate::types::slot::{
    batch_root, slot_at, BatchAnnouncement, LockReport, SlotCertificate, SlotFinalityProof,
    SlotShare, MAX_SLOT_TXIDS, SLOT_MS,
};
use crate::types::{BlsSecretKey, Hash32, Network, OutPoint, PublicKey, SecretKey};
use crate::types::{Transaction, Txid};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How long a txid named by an announcement stays out of later batches, waiting for its
/// certificate (an aggregator that withholds it delays the txid by this much).
pub const IN_FLIGHT_MS: Millis = 300;
/// Slots behind or ahead of this node's clock an announcement may name.
pub const SLOT_WINDOW: u64 = 50;
/// Narrowed announcements an aggregator makes for one batch after reports.
pub const MAX_NARROWINGS: u32 = 3;
/// How long a voter waits for the bodies a batch names before it reports them missing.
pub const BODY_WAIT_MS: Millis = 100;
/// Batches a voter holds waiting for bodies at once.
pub const MAX_DEFERRED: usize = 64;
/// Contested spends (a rival of one of their inputs is pending too) an aggregator announces
/// per slot, each as a batch of its own.
pub const MAX_CONTESTED_BATCHES: usize = 4;
/// Transactions tracked at once (bodies pending or final and not yet confirmed). The shell's
/// pool admits far fewer; this only guards the engine.
pub const MAX_TRACKED: usize = 1_000_000;
/// Txids certified while this node lacks their bodies, remembered until their batch expires.
pub const MAX_CERTIFIED_WITHOUT_BODY: usize = 65_536;

#[derive(Clone, Debug)]
pub struct SlotConfig {
    pub network: Network,
    /// How long a transaction is held before its aggregator announces it (about one WAN hop,
    /// so most voters hold its body when the announcement comes).
    pub settle_ms: Millis,
}

impl SlotConfig {
    pub fn new(network: Network) -> SlotConfig {
        SlotConfig {
            network,
            settle_ms: 150,
        }
    }
}

#[derive(Clone, Debug)]
pub enum SlotInput {
    /// A transaction the shell verified and admitted (structure, signatures, fee, ledger).
    Transaction(Arc<Transaction>),
    /// A verified transaction this node tracks and finalizes on a certificate but never
    /// shares: it spends an output installed from a snapshot, whose lock history nobody
    /// certified (as `FinalityInput::TransactionWithoutVote`).
    TransactionWithoutVote(Arc<Transaction>),
    /// An announcement whose signature and shape the shell checked
    /// (`BatchAnnouncement::verify`).
    Announcement(Arc<BatchAnnouncement>),
    /// A share sent to this node as an aggregator (checked here, with the others).
    Share(SlotShare),
    Report(LockReport),
    /// A certificate from a peer, not yet checked, with the txids of its batch (so a node
    /// that missed the announcement can use it).
    Certificate {
        certificate: Arc<SlotCertificate>,
        txids: Arc<Vec<Txid>>,
    },
    /// A peer's answer to `GetFinality`: a transaction (verified and admitted like any) and
    /// the proof that a certificate covers it, not yet checked. How a node that missed the
    /// certificate catches up.
    Proven {
        tx: Arc<Transaction>,
        proof: Arc<SlotFinalityProof>,
    },
    /// The slot timer fired.
    Tick,
    /// A block was committed: the set for the next height, and the txids it confirmed.
    BlockCommitted {
        keys: Arc<SetKeys>,
        confirmed: Vec<Txid>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotEffect {
    /// Lock the transaction's inputs to it. Durable before the next `SendShare` leaves.
    PersistLock(Arc<Transaction>),
    /// Flush storage, then send this share to the aggregator.
    SendShare {
        to: PublicKey,
        share: SlotShare,
    },
    SendReport {
        to: PublicKey,
        report: LockReport,
    },
    BroadcastAnnouncement(Arc<BatchAnnouncement>),
    /// Flush storage (the certificate holds this node's own share), then send it with its
    /// batch's txids to every peer.
    BroadcastCertificate {
        certificate: Arc<SlotCertificate>,
        txids: Arc<Vec<Txid>>,
    },
    /// A certificate this node had not seen, checked: pass it to a few peers.
    RelayCertificate {
        certificate: Arc<SlotCertificate>,
        txids: Arc<Vec<Txid>>,
    },
    /// The transaction is final; `proof` is what a wallet checks offline.
    Finalized {
        tx: Arc<Transaction>,
        proof: Arc<SlotFinalityProof>,
    },
    /// A share or certificate that did not check came in `voter`'s name: the sending peer's
    /// fault (a bad share proves nothing against the voter itself).
    Refused {
        voter: Option<PublicKey>,
        why: String,
    },
    /// Feed `Tick` at this time.
    ScheduleTick {
        at: Millis,
    },
}

struct Pending {
    tx: Arc<Transaction>,
    since: Millis,
    /// Whether this node locked its inputs to it (false: a rival holds one of them).
    locked: bool,
}

/// An announced batch this node knows (to finalize what a certificate of it covers).
struct Batch {
    txids: Arc<Vec<Txid>>,
    aggregator: PublicKey,
}

/// A batch this node will answer once the bodies it lacks arrive (or `until`).
struct Deferred {
    txids: Arc<Vec<Txid>>,
    aggregator: PublicKey,
    missing: BTreeSet<Txid>,
    until: Millis,
}

/// This node's work as a slot's aggregator.
struct Aggregation {
    slot: u64,
    narrowings: u32,
    txids: Arc<Vec<Txid>>,
    collector: ShareCollector,
    /// Voters that answered with a report, and what they cannot lock.
    reports: BTreeMap<PublicKey, BTreeSet<Txid>>,
}

pub struct SlotEngine {
    config: SlotConfig,
    key: Option<(SecretKey, BlsSecretKey)>,
    keys: Arc<SetKeys>,
    /// The set before the most recent change, from the block that changed it until the next
    /// block (the joint transition rule of [`super`]): a certificate needs a quorum of both.
    prev_keys: Option<Arc<SetKeys>>,
    pending: BTreeMap<Txid, Pending>,
    locks: HashMap<OutPoint, Txid>,
    /// Final and not yet confirmed, with the proof a wallet gets.
    finalized: BTreeMap<Txid, Arc<SlotFinalityProof>>,
    /// Announced batches by slot and root (one root may come back in a later slot), and
    /// roots by slot for expiry.
    batches: HashMap<(u64, Hash32), Batch>,
    roots_by_slot: BTreeMap<u64, Vec<Hash32>>,
    /// Txids named by an announcement, until when they stay out of new batches.
    in_flight: HashMap<Txid, Millis>,
    /// Checked certificates of the batches held, by slot and root.
    certificates: HashMap<(u64, Hash32), Arc<SlotCertificate>>,
    /// Txids a checked certificate covers whose bodies this node lacks, and which certificate.
    certified: HashMap<Txid, (u64, Hash32)>,
    /// Roots this node shared (never twice), with their slot for expiry.
    shared: BTreeSet<(u64, Hash32)>,
    aggregating: Vec<Aggregation>,
    /// Batches waiting for bodies before this node answers, and who waits for which body.
    deferred: BTreeMap<(u64, Hash32), Deferred>,
    awaited: HashMap<Txid, Vec<(u64, Hash32)>>,
    /// The last slot this node announced as its aggregator.
    last_announced: Option<u64>,
    next_tick: Option<Millis>,
}

impl SlotEngine {
    /// `key` is this node's operator key (`None` on a node that only observes); its BLS key is
    /// derived from it. `locks` are the locks the ledger holds from before a restart.
    pub fn new(
        config: SlotConfig,
        key: Option<SecretKey>,
        keys: Arc<SetKeys>,
        locks: impl IntoIterator<Item = (OutPoint, Txid)>,
    ) -> SlotEngine {
        SlotEngine {
            config,
            key: key.map(|k| {
                let bls = BlsSecretKey::from_operator(&k);
                (k, bls)
            }),
            keys,
            prev_keys: None,
            pending: BTreeMap::new(),
            locks: locks.into_iter().collect(),
            finalized: BTreeMap::new(),
            batches: HashMap::new(),
            roots_by_slot: BTreeMap::new(),
            certificates: HashMap::new(),
            certified: HashMap::new(),
            in_flight: HashMap::new(),
            shared: BTreeSet::new(),
            aggregating: Vec::new(),
            deferred: BTreeMap::new(),
            awaited: HashMap::new(),
            last_announced: None,
            next_tick: None,
        }
    }

    pub fn is_final(&self, txid: &Txid) -> bool {
        self.finalized.contains_key(txid)
    }

    /// The proof that `txid` is final, while it is final and not yet in a block.
    pub fn proof(&self, txid: &Txid) -> Option<Arc<SlotFinalityProof>> {
        self.finalized.get(txid).cloned()
    }

    pub fn keys(&self) -> &Arc<SetKeys> {
        &self.keys
    }

    fn me(&self) -> Option<PublicKey> {
        self.key.as_ref().map(|(k, _)| k.public_key())
    }

    pub fn step(&mut self, input: SlotInput, now: Millis) -> Vec<SlotEffect> {
        let mut out = Vec::new();
        match input {
            SlotInput::Transaction(tx) => self.on_transaction(tx, true, now, &mut out),
            SlotInput::TransactionWithoutVote(tx) => self.on_transaction(tx, false, now, &mut out),
            SlotInput::Announcement(a) => self.on_announcement(&a, now, &mut out),
            SlotInput::Share(share) => self.on_share(share, now, &mut out),
            SlotInput::Report(report) => self.on_report(report, now, &mut out),
            SlotInput::Certificate { certificate, txids } => {
                self.on_certificate(&certificate, txids, now, &mut out)
            }
            SlotInput::Proven { tx, proof } => self.on_proven(tx, &proof, now, &mut out),
            SlotInput::Tick => {
                self.next_tick = None;
                self.on_tick(now, &mut out);
            }
            SlotInput::BlockCommitted { keys, confirmed } => self.on_block(keys, &confirmed, now),
        }
        self.arm_tick(now, &mut out);
        out
    }

    fn arm_tick(&mut self, now: Millis, out: &mut Vec<SlotEffect>) {
        if self.next_tick.is_some() || self.key.is_none() {
            return;
        }
        let at = (slot_at(now) + 1) * SLOT_MS;
        self.next_tick = Some(at);
        out.push(SlotEffect::ScheduleTick { at });
    }

    fn on_transaction(
        &mut self,
        tx: Arc<Transaction>,
        may_vote: bool,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let txid = tx.txid();
        if self.pending.contains_key(&txid)
            || self.finalized.contains_key(&txid)
            || self.pending.len() + self.finalized.len() >= MAX_TRACKED
        {
            return;
        }
        let free = tx
            .claimed_outpoints()
            .all(|op| self.locks.get(&op).is_none_or(|t| *t == txid));
        let locked = free && may_vote && self.key.is_some();
        if locked {
            for op in tx.claimed_outpoints() {
                self.locks.insert(op, txid);
            }
            out.push(SlotEffect::PersistLock(Arc::clone(&tx)));
        }
        self.pending.insert(
            txid,
            Pending {
                tx,
                since: now,
                locked,
            },
        );
        // Batches waiting for this body: answered once they have them all.
        if let Some(waiting) = self.awaited.remove(&txid) {
            for key in waiting {
                let complete = match self.deferred.get_mut(&key) {
                    Some(d) => {
                        d.missing.remove(&txid);
                        d.missing.is_empty()
                    }
                    None => false,
                };
                if complete {
                    if let Some(d) = self.deferred.remove(&key) {
                        self.vote(key.0, key.1, d.txids, d.aggregator, now, true, out);
                    }
                }
            }
        }
        // Certified before its body came: final now.
        if let Some(key) = self.certified.remove(&txid) {
            if let Some(certificate) = self.certificates.get(&key).cloned() {
                self.finalize(&certificate, out);
            }
        }
    }

    fn on_tick(&mut self, now: Millis, out: &mut Vec<SlotEffect>) {
        let slot = slot_at(now);
        self.expire(slot, now);
        // Batches that waited long enough for bodies: answered with what is here.
        let due: Vec<(u64, Hash32)> = self
            .deferred
            .iter()
            .filter(|(_, d)| now >= d.until)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(d) = self.deferred.remove(&key) {
                for t in &d.missing {
                    if let Some(w) = self.awaited.get_mut(t) {
                        w.retain(|k| *k != key);
                        if w.is_empty() {
                            self.awaited.remove(t);
                        }
                    }
                }
                self.vote(key.0, key.1, d.txids, d.aggregator, now, true, out);
            }
        }
        let Some(me) = self.me() else { return };
        if self.last_announced == Some(slot) || self.keys.aggregator(slot) != Some(me) {
            return;
        }
        // Outpoints two pending transactions claim: a spend of one of them may be locked
        // the other way by some voters, and would hold up a whole batch.
        let mut claims: HashMap<OutPoint, u32> = HashMap::new();
        for p in self.pending.values() {
            for op in p.tx.claimed_outpoints() {
                *claims.entry(op).or_default() += 1;
            }
        }
        let mut batch = Vec::new();
        let mut contested = Vec::new();
        for (txid, p) in &self.pending {
            let ready = p.locked
                && now >= p.since + self.config.settle_ms
                && self.in_flight.get(txid).is_none_or(|until| now >= *until);
            if !ready {
                continue;
            }
            if p.tx
                .claimed_outpoints()
                .any(|op| claims.get(&op).is_some_and(|n| *n > 1))
            {
                if contested.len() < MAX_CONTESTED_BATCHES {
                    contested.push(*txid);
                }
            } else if batch.len() < MAX_SLOT_TXIDS {
                batch.push(*txid);
            }
        }
        if batch.is_empty() && contested.is_empty() {
            return;
        }
        self.last_announced = Some(slot);
        if !batch.is_empty() {
            self.announce(slot, 0, batch, now, out);
        }
        // Each contested spend alone: it is final only if a quorum locked this side, and the
        // voters that locked the other cannot hold up anything else.
        for txid in contested {
            self.announce(slot, 0, vec![txid], now, out);
        }
    }

    /// Signs and sends an announcement, and starts collecting its shares (this node's own
    /// among them).
    fn announce(
        &mut self,
        slot: u64,
        narrowings: u32,
        txids: Vec<Txid>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let Some((key, _)) = &self.key else { return };
        let announcement = Arc::new(BatchAnnouncement::sign(
            key,
            self.config.network,
            self.keys.set_hash(),
            (slot, narrowings),
            txids,
        ));
        let root = announcement.root();
        self.aggregating.push(Aggregation {
            slot,
            narrowings,
            txids: Arc::new(announcement.txids.clone()),
            collector: ShareCollector::new(&self.keys, self.config.network, slot, root),
            reports: BTreeMap::new(),
        });
        out.push(SlotEffect::BroadcastAnnouncement(Arc::clone(&announcement)));
        // This node votes on its own batch as any voter does, and counts its own share here
        // (its locks were persisted when the transactions came, before any send).
        let mut own = Vec::new();
        self.on_announcement(&announcement, now, &mut own);
        for effect in own {
            match effect {
                SlotEffect::SendShare { to, share } if Some(to) == self.me() => {
                    self.on_share(share, now, out);
                }
                other => out.push(other),
            }
        }
    }

    fn on_announcement(&mut self, a: &BatchAnnouncement, now: Millis, out: &mut Vec<SlotEffect>) {
        let current = slot_at(now);
        if a.set_hash != self.keys.set_hash()
            || a.slot + SLOT_WINDOW < current
            || a.slot > current + SLOT_WINDOW
            || self.keys.aggregator(a.slot) != Some(a.aggregator)
        {
            return;
        }
        let root = a.root();
        if self.batches.contains_key(&(a.slot, root)) {
            return;
        }
        let txids = Arc::new(a.txids.clone());
        for txid in txids.iter() {
            self.in_flight.insert(*txid, now + IN_FLIGHT_MS);
        }
        self.batches.insert(
            (a.slot, root),
            Batch {
                txids: Arc::clone(&txids),
                aggregator: a.aggregator,
            },
        );
        self.roots_by_slot.entry(a.slot).or_default().push(root);
        self.vote(a.slot, root, txids, a.aggregator, now, false, out);
    }

    /// Shares the batch if this node can lock all of it, and reports what it cannot otherwise.
    ///
    /// A batch naming bodies this node has not received yet (and no spend it locked the other
    /// way) waits up to [`BODY_WAIT_MS`] for them: a late share costs less than a report,
    /// which may send the whole batch round again (`final_answer` ends the wait).
    #[allow(clippy::too_many_arguments)]
    fn vote(
        &mut self,
        slot: u64,
        root: Hash32,
        txids: Arc<Vec<Txid>>,
        aggregator: PublicKey,
        now: Millis,
        final_answer: bool,
        out: &mut Vec<SlotEffect>,
    ) {
        let Some((key, _)) = &self.key else { return };
        let voter = key.public_key();
        if self.keys.position(&voter).is_none() || self.shared.contains(&(slot, root)) {
            return;
        }
        let cannot_lock: Vec<Txid> = txids
            .iter()
            .filter(|t| {
                !self.finalized.contains_key(*t) && !self.pending.get(*t).is_some_and(|p| p.locked)
            })
            .copied()
            .collect();
        let only_missing = cannot_lock.iter().all(|t| !self.pending.contains_key(t));
        if !cannot_lock.is_empty()
            && only_missing
            && !final_answer
            && self.deferred.len() < MAX_DEFERRED
        {
            for t in &cannot_lock {
                self.awaited.entry(*t).or_default().push((slot, root));
            }
            self.deferred.insert(
                (slot, root),
                Deferred {
                    txids,
                    aggregator,
                    missing: cannot_lock.into_iter().collect(),
                    until: now + BODY_WAIT_MS,
                },
            );
            return;
        }
        let Some((_, bls)) = &self.key else { return };
        if !cannot_lock.is_empty() {
            out.push(SlotEffect::SendReport {
                to: aggregator,
                report: LockReport {
                    set_hash: self.keys.set_hash(),
                    slot,
                    root,
                    voter,
                    cannot_lock,
                },
            });
            return;
        }
        let message = crate::types::slot::share_message(
            self.config.network,
            &self.keys.set_hash(),
            slot,
            &root,
        );
        let share = SlotShare {
            set_hash: self.keys.set_hash(),
            slot,
            root,
            voter,
            signature: bls.sign(&message),
        };
        self.shared.insert((slot, root));
        out.push(SlotEffect::SendShare {
            to: aggregator,
            share,
        });
    }

    fn on_share(&mut self, share: SlotShare, now: Millis, out: &mut Vec<SlotEffect>) {
        if share.set_hash != self.keys.set_hash() {
            return;
        }
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == share.slot && a.collector.root() == share.root)
        else {
            return;
        };
        if let Err(e) = agg.collector.add(&keys, &share.voter, share.signature) {
            if matches!(e, ShareError::NotAVoter(_) | ShareError::UnusableKey(_)) {
                out.push(SlotEffect::Refused {
                    voter: Some(share.voter),
                    why: e.to_string(),
                });
            }
            return;
        }
        let certification = agg.collector.certify(&keys, self.prev_keys.as_deref());
        for voter in certification.bad {
            out.push(SlotEffect::Refused {
                voter: Some(voter),
                why: format!("share of slot {} did not check", share.slot),
            });
        }
        if let Some(certificate) = certification.certificate {
            let certificate = Arc::new(certificate);
            let txids = Arc::clone(&agg.txids);
            self.aggregating
                .retain(|a| !(a.slot == share.slot && a.collector.root() == share.root));
            out.push(SlotEffect::BroadcastCertificate {
                certificate: Arc::clone(&certificate),
                txids,
            });
            self.keep_certificate(&certificate);
            self.finalize(&certificate, out);
        } else {
            self.maybe_narrow(share.slot, share.root, now, out);
        }
    }

    fn on_report(&mut self, report: LockReport, now: Millis, out: &mut Vec<SlotEffect>) {
        if report.set_hash != self.keys.set_hash() || self.keys.position(&report.voter).is_none() {
            return;
        }
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == report.slot && a.collector.root() == report.root)
        else {
            return;
        };
        if agg.collector.has(&keys, &report.voter) {
            return;
        }
        let in_batch: BTreeSet<Txid> = report
            .cannot_lock
            .iter()
            .filter(|t| agg.txids.contains(t))
            .copied()
            .collect();
        if in_batch.is_empty() {
            return;
        }
        agg.reports.insert(report.voter, in_batch);
        self.maybe_narrow(report.slot, report.root, now, out);
    }

    /// When the voters that reported leave too little weight for a quorum on the batch,
    /// announces it again without the txids that keep the most weight out, removing only
    /// as many as the quorum needs. The reports carry over (restricted to what is left), so
    /// a voter that reported stays counted out of the txids it named.
    fn maybe_narrow(&mut self, slot: u64, root: Hash32, now: Millis, out: &mut Vec<SlotEffect>) {
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter()
            .find(|a| a.slot == slot && a.collector.root() == root)
        else {
            return;
        };
        let reported: u64 = agg
            .reports
            .keys()
            .map(|v| {
                keys.position(v)
                    .and_then(|p| keys.voter(p))
                    .map_or(0, |v| v.weight)
            })
            .sum();
        if keys.has_quorum(keys.total_weight().saturating_sub(reported))
            || agg.narrowings >= MAX_NARROWINGS
        {
            return;
        }
        // Most-reported first (weight of the reporters), ties by txid.
        let mut against: BTreeMap<Txid, u64> = BTreeMap::new();
        for (voter, txids) in &agg.reports {
            let w = keys
                .position(voter)
                .and_then(|p| keys.voter(p))
                .map_or(0, |v| v.weight);
            for t in txids {
                *against.entry(*t).or_default() += w;
            }
        }
        let mut order: Vec<(Txid, u64)> = against.into_iter().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut removed: BTreeSet<Txid> = BTreeSet::new();
        for (txid, _) in order {
            removed.insert(txid);
            let able: u64 = keys.total_weight()
                - agg
                    .reports
                    .iter()
                    .filter(|(_, cannot)| !cannot.is_subset(&removed))
                    .map(|(v, _)| {
                        keys.position(v)
                            .and_then(|p| keys.voter(p))
                            .map_or(0, |v| v.weight)
                    })
                    .sum::<u64>();
            if keys.has_quorum(able) {
                break;
            }
        }
        let rest: Vec<Txid> = agg
            .txids
            .iter()
            .filter(|t| !removed.contains(t))
            .copied()
            .collect();
        let narrowings = agg.narrowings + 1;
        let carried: BTreeMap<PublicKey, BTreeSet<Txid>> = agg
            .reports
            .iter()
            .map(|(v, cannot)| (*v, cannot.difference(&removed).copied().collect()))
            .filter(|(_, cannot): &(PublicKey, BTreeSet<Txid>)| !cannot.is_empty())
            .collect();
        self.aggregating
            .retain(|a| !(a.slot == slot && a.collector.root() == root));
        if rest.is_empty() {
            return;
        }
        let next_root = batch_root(&rest);
        self.announce(slot, narrowings, rest, now, out);
        if let Some(next) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == slot && a.collector.root() == next_root)
        {
            next.reports = carried;
        }
    }

    fn on_certificate(
        &mut self,
        certificate: &Arc<SlotCertificate>,
        txids: Arc<Vec<Txid>>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let key = (certificate.slot, certificate.root);
        let current = slot_at(now);
        if self.certificates.contains_key(&key)
            || certificate.slot + SLOT_WINDOW < current
            || certificate.slot > current + SLOT_WINDOW
            || txids.is_empty()
            || txids.len() > MAX_SLOT_TXIDS
        {
            return;
        }
        let batch = self.batches.get(&key);
        if batch.is_none() && batch_root(&txids) != certificate.root {
            out.push(SlotEffect::Refused {
                voter: None,
                why: format!(
                    "certificate of slot {} with txids of another batch",
                    certificate.slot
                ),
            });
            return;
        }
        match self
            .keys
            .check_joint(self.prev_keys.as_deref(), certificate, self.config.network)
        {
            Ok(()) => {}
            // Around a set change an honest certificate may name the set before, or come from
            // an aggregator whose change window closed a block before this node's did: not
            // usable here, and no fault of whoever passed it on.
            Err(CertificateError::WrongSet { .. } | CertificateError::NoPreviousQuorum { .. }) => {
                return
            }
            Err(e) => {
                out.push(SlotEffect::Refused {
                    voter: None,
                    why: e.to_string(),
                });
                return;
            }
        }
        self.aggregating
            .retain(|a| !(a.slot == certificate.slot && a.collector.root() == certificate.root));
        out.push(SlotEffect::RelayCertificate {
            certificate: Arc::clone(certificate),
            txids: Arc::clone(&txids),
        });
        if !self.batches.contains_key(&key) {
            let Some(aggregator) = self.keys.aggregator(certificate.slot) else {
                return;
            };
            self.batches.insert(key, Batch { txids, aggregator });
            self.roots_by_slot
                .entry(certificate.slot)
                .or_default()
                .push(certificate.root);
        }
        self.keep_certificate(certificate);
        self.finalize(certificate, out);
    }

    /// A proof from a peer: the certificate checked against the set (and the set before a
    /// fresh change), the txid's path to its root; then the transaction is final here too.
    fn on_proven(
        &mut self,
        tx: Arc<Transaction>,
        proof: &Arc<SlotFinalityProof>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let txid = tx.txid();
        if self.finalized.contains_key(&txid) || proof.txid != txid {
            return;
        }
        if !proof.path_holds() {
            out.push(SlotEffect::Refused {
                voter: None,
                why: format!("finality proof of {txid} whose path does not lead to its root"),
            });
            return;
        }
        match self.keys.check_joint(
            self.prev_keys.as_deref(),
            &proof.certificate,
            self.config.network,
        ) {
            Ok(()) => {}
            // Made final under a set this node does not hold, or by an aggregator past the
            // change window this node is in: the block confirms it.
            Err(CertificateError::WrongSet { .. } | CertificateError::NoPreviousQuorum { .. }) => {
                return
            }
            Err(e) => {
                out.push(SlotEffect::Refused {
                    voter: None,
                    why: e.to_string(),
                });
                return;
            }
        }
        if !self.pending.contains_key(&txid) {
            self.on_transaction(Arc::clone(&tx), false, now, out);
        }
        let Some(p) = self.pending.remove(&txid) else {
            return;
        };
        self.certified.remove(&txid);
        self.mark_final(p.tx, Arc::clone(proof), out);
    }

    /// Records `tx` final with `proof` and says so.
    fn mark_final(
        &mut self,
        tx: Arc<Transaction>,
        proof: Arc<SlotFinalityProof>,
        out: &mut Vec<SlotEffect>,
    ) {
        let txid = proof.txid;
        // A certificate outranks this node's lock: a quorum locked this spend.
        for op in tx.claimed_outpoints() {
            self.locks.insert(op, txid);
        }
        self.in_flight.remove(&txid);
        self.finalized.insert(txid, Arc::clone(&proof));
        out.push(SlotEffect::Finalized { tx, proof });
    }

    /// Keeps a checked certificate for the batch's window, so a body that comes later is
    /// final on arrival.
    fn keep_certificate(&mut self, certificate: &Arc<SlotCertificate>) {
        let key = (certificate.slot, certificate.root);
        self.certificates.insert(key, Arc::clone(certificate));
    }

    /// Every transaction of a checked certificate's batch that this node holds is final.
    fn finalize(&mut self, certificate: &Arc<SlotCertificate>, out: &mut Vec<SlotEffect>) {
        let Some(batch) = self.batches.get(&(certificate.slot, certificate.root)) else {
            return;
        };
        let txids = Arc::clone(&batch.txids);
        let tree = MerkleTree::new(&txids);
        for (index, txid) in txids.iter().enumerate() {
            if self.finalized.contains_key(txid) {
                continue;
            }
            let Some(p) = self.pending.remove(txid) else {
                if self.certified.len() < MAX_CERTIFIED_WITHOUT_BODY {
                    self.certified
                        .insert(*txid, (certificate.slot, certificate.root));
                }
                continue;
            };
            let Some(path) = tree.path(index) else {
                continue;
            };
            let proof = Arc::new(SlotFinalityProof {
                txid: *txid,
                path,
                certificate: (**certificate).clone(),
            });
            self.mark_final(p.tx, proof, out);
        }
    }

    fn on_block(&mut self, keys: Arc<SetKeys>, confirmed: &[Txid], now: Millis) {
        for txid in confirmed {
            if let Some(p) = self.pending.remove(txid) {
                for op in p.tx.claimed_outpoints() {
                    self.locks.remove(&op);
                }
            }
            self.finalized.remove(txid);
            self.certified.remove(txid);
            self.in_flight.remove(txid);
        }
        if keys.set_hash() != self.keys.set_hash() {
            self.prev_keys = Some(std::mem::replace(&mut self.keys, keys));
            self.aggregating.clear();
            // Batches of the old set: a share now would name the new one.
            self.deferred.clear();
            self.awaited.clear();
        } else {
            self.prev_keys = None;
        }
        self.expire(slot_at(now), now);
    }

    /// Forgets batches, shares and in-flight marks older than the window.
    fn expire(&mut self, slot: u64, now: Millis) {
        let oldest = slot.saturating_sub(SLOT_WINDOW);
        while let Some(entry) = self.roots_by_slot.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            let slot = *entry.key();
            for root in entry.remove() {
                self.batches.remove(&(slot, root));
                self.certificates.remove(&(slot, root));
            }
        }
        self.shared = self.shared.split_off(&(oldest, Hash32::ZERO));
        self.aggregating.retain(|a| a.slot >= oldest);
        self.in_flight.retain(|_, until| *until > now);
        let certificates = &self.certificates;
        self.certified
            .retain(|_, key| certificates.contains_key(key));
    }

    /// The txids and aggregator of a batch, if this node still holds it.
    pub fn batch(&self, slot: u64, root: &Hash32) -> Option<(PublicKey, Arc<Vec<Txid>>)> {
        self.batches
            .get(&(slot, *root))
            .map(|b| (b.aggregator, Arc::clone(&b.txids)))
    }
}
