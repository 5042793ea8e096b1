//! Layer 1 for large sets: rotating aggregators over transaction batches, BLS certificates
//! (SCALING.md, "Step 2's engine"). A pure state machine like [`super::FinalityEngine`]: no
//! sockets, no disk, no clock; the shell feeds verified inputs and `now`.
//!
//! ```text
//! Transaction ─► inputs free or ours? ─yes─► PersistLock, pending
//!                                     └no──► pending, not lockable here (a rival holds them)
//! Tick (every slot) ─► aggregator of this slot? ─► announce the pending txids it locked and
//!                      has held for `settle_ms`, that no batch in flight names, to the top of
//!                      the slot's tree; no quorum after `ANNOUNCE_FALLBACK_MS`? ─► to every
//!                      voter not heard from
//! Announcement ─► new? ─► SendAnnouncement to my children in the slot's tree
//!              ─► can I lock every txid? ─yes─► PersistLock (new ones), SendShare ─► aggregator
//!                                        └no──► SendReport(txids I cannot lock) ─► aggregator
//! Share ─► collector; quorum? ─► sum checked once (bad shares found by halves)
//!                                ─► BroadcastCertificate, Finalized
//! Reports ─► quorum out of reach? ─► announce the batch without the txids that keep it out
//! Certificate ─► checked against the set's keys ─► batch held? ─yes─► Finalized (with the
//!                                                                  txid's Merkle path)
//!                                                  └no──► FetchBatch from its sender
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
//! set overlap in an honest member, which never locks two spends. In that window a
//! certificate of the set before still counts, checked against that set alone (any
//! certificate of the new set in the window needs the same set's quorum): a node that
//! switched sets, a joiner above all, learns what the old set made final just before.
//!
//! *Dissemination.* An announcement travels down a tree of the set's voters rooted at its
//! aggregator, `ANNOUNCE_FANOUT` children a node, rotated by the slot
//! ([`SetKeys::announce_targets`]): at 990 masternodes the aggregator sending it to every
//! voter itself was the network's busiest uplink (SCALING.md, stop 45). A voter below a
//! silent relay is sent the batch by its aggregator once the quorum is late
//! (`ANNOUNCE_FALLBACK_MS`). Nodes outside the set are not in the tree: they finalize from
//! certificates and ask for the batches (below).
//!
//! *Catch-up.* A certificate travels without its batch's txids (at 1,000 masternodes they
//! made it 16 kB to every peer, a second copy of the announcement). A node that missed the
//! announcement keeps the checked certificate aside and asks its sender for the signed
//! announcement (`FetchBatch`; each further copy of the certificate asks its own sender); the
//! announcement finalizes the batch when it comes, without a share. A body that comes after
//! its certificate is final on arrival while the batch is held ([`SLOT_WINDOW`] slots).
//!
//! *Joiners* follow today's engine (see [`super`]): a node outside the set takes no lock, and
//! a member new to the set takes none and shares nothing while its first window is open,
//! since it cannot know which spend the old set may already have made final on some node;
//! certificates still finalize for it (the old set's too, in the window). When the window
//! closes it joins the pending decisions: it locks each pending spend whose inputs no lock of
//! its own and no other pending spend claims, and stays out of the contested ones (a
//! certificate decides those for it). Members only share, so the joint rule needs the old
//! set's quorum in the window either way; a joiner that holds more than a third of the new
//! set's weight delays layer 1 until the window closes (one block). The residual limit of
//! [`super`] remains: a joiner that by its window's close has seen neither a spend final
//! under the old set nor its certificate may take the rival as uncontested.

mod aggregator;
mod certificates;
mod collect;
mod keys;
#[cfg(test)]
mod tests;
mod voter;

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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// How long a txid named by an announcement stays out of later batches, waiting for its
/// certificate (an aggregator that withholds it delays the txid by this much).
pub const IN_FLIGHT_MS: Millis = 300;
/// Slots behind or ahead of this node's clock an announcement may name (five seconds).
pub const SLOT_WINDOW: u64 = 5_000 / SLOT_MS;
/// Narrowed announcements an aggregator makes for one batch after reports.
pub const MAX_NARROWINGS: u32 = 3;
/// Announcements a voter takes for one slot: the batch, its narrowings, the contested spends
/// announced alone, and room for a set change.
pub const MAX_BATCHES_PER_SLOT: usize = 2 * (1 + MAX_NARROWINGS as usize + MAX_CONTESTED_BATCHES);
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
/// Checked certificates of batches whose announcement this node has not seen, kept while it
/// asks for the announcement (a window's worth of slots, each with a few batches).
pub const MAX_UNANNOUNCED_CERTIFICATES: usize = 256;
/// Senders of one such certificate that are asked for its announcement.
pub const MAX_BATCH_FETCHES: u8 = 3;
/// Voters a node passes an announcement to ([`SetKeys::announce_targets`]): two levels reach
/// 1,056 voters, and no node sends more than 32 copies of a batch (≤ 4 MB at the largest).
pub const ANNOUNCE_FANOUT: usize = 32;
/// How long an aggregator waits for a batch's quorum before it sends the announcement itself
/// to every voter that has neither shared nor reported: what a silent or slow relay of the
/// tree kept from them. Past an honest quorum's time (two WAN hops out, one back, and the
/// wait for bodies), so an honest network rarely pays it.
pub const ANNOUNCE_FALLBACK_MS: Millis = 500;

#[derive(Clone, Debug)]
pub struct SlotConfig {
    pub network: Network,
    /// How long a transaction is held before its aggregator announces it, so that voters hold
    /// its body when the announcement comes. The body goes from its originator straight to
    /// every voter, the announcement from the aggregator, which had it from the same
    /// originator: the body usually comes first however far apart the three are (the
    /// triangle inequality), and this covers jitter and the originator's queue. Measured in
    /// the world simulation at 30 masternodes, 5,000 tx/s: 150 ms → 50 ms took p50 from 561
    /// to 475 ms with no more time from announcement to certificate (SCALING.md).
    pub settle_ms: Millis,
    /// [`ANNOUNCE_FANOUT`]. Not a node option: every node must lay the tree out alike
    /// (tests lower it so that a few nodes form a tree of several levels).
    pub announce_fanout: usize,
}

impl SlotConfig {
    pub fn new(network: Network) -> SlotConfig {
        SlotConfig {
            network,
            settle_ms: 50,
            announce_fanout: ANNOUNCE_FANOUT,
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
    /// A certificate from a peer, not yet checked.
    Certificate(Arc<SlotCertificate>),
    /// A peer's answer to `GetFinality`: a transaction (verified and admitted like any) and
    /// the proof that a certificate covers it, not yet checked. How a node that missed the
    /// certificate catches up.
    Proven {
        tx: Arc<Transaction>,
        proof: Arc<SlotFinalityProof>,
    },
    /// The slot timer fired.
    Tick,
    /// A block was committed: the set for the next height, and the transactions it
    /// confirmed (they and their rivals need no tracking any more).
    BlockCommitted {
        keys: Arc<SetKeys>,
        confirmed: Vec<Arc<Transaction>>,
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
    /// Send the announcement to these voters: this node's children in the slot's tree
    /// ([`SetKeys::announce_targets`]), or, from its aggregator, the voters a late quorum
    /// has not heard from (`past_tree`).
    SendAnnouncement {
        to: Vec<PublicKey>,
        announcement: Arc<BatchAnnouncement>,
        past_tree: bool,
    },
    /// Flush storage (the certificate holds this node's own share), then send it to every
    /// peer.
    BroadcastCertificate(Arc<SlotCertificate>),
    /// A certificate this node had not seen, checked: pass it to a few peers.
    RelayCertificate(Arc<SlotCertificate>),
    /// Ask the peer that sent the certificate being handled for the announcement of batch
    /// `(slot, root)`, which this node missed.
    FetchBatch {
        slot: u64,
        root: Hash32,
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
    /// Whether this node locked its inputs to it (false: a rival holds one of them, or this
    /// node joined the set too recently to take locks).
    locked: bool,
    /// False for a spend this node must never share (`TransactionWithoutVote`).
    may_vote: bool,
}

/// A batch this node will answer once the bodies it lacks arrive (or `until`).
struct Deferred {
    announcement: Arc<BatchAnnouncement>,
    missing: BTreeSet<Txid>,
    until: Millis,
}

/// This node's work as a slot's aggregator.
struct Aggregation {
    slot: u64,
    narrowings: u32,
    announcement: Arc<BatchAnnouncement>,
    /// Its txids as a set: reports are checked against it.
    members: HashSet<Txid>,
    collector: ShareCollector,
    /// Voters that answered with a report, and what they cannot lock.
    reports: BTreeMap<PublicKey, BTreeSet<Txid>>,
    /// When it was announced; whether the voters not heard from were sent it directly.
    announced_at: Millis,
    fallback_sent: bool,
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
    /// Announced batches by slot and root (one root may come back in a later slot): to
    /// finalize what a certificate covers and to answer a peer that missed one. Roots by
    /// slot for expiry.
    batches: HashMap<(u64, Hash32), Arc<BatchAnnouncement>>,
    roots_by_slot: BTreeMap<u64, Vec<Hash32>>,
    /// Txids named by an announcement, until when they stay out of new batches.
    in_flight: HashMap<Txid, Millis>,
    /// Checked certificates of the batches held, by slot and root.
    certificates: HashMap<(u64, Hash32), Arc<SlotCertificate>>,
    /// Checked certificates of batches not held, while their announcement is asked for, with
    /// how many senders were asked.
    unannounced: BTreeMap<(u64, Hash32), (Arc<SlotCertificate>, u8)>,
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
            unannounced: BTreeMap::new(),
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

    /// The ledger refused the lock this engine took for `txid` (`PersistLock`): the engine
    /// forgets it, so it never shares a batch naming `txid` on the strength of it.
    pub fn unlock(&mut self, txid: &Txid) {
        let Some(p) = self.pending.get_mut(txid) else {
            return;
        };
        if !p.locked {
            return;
        }
        p.locked = false;
        for op in p.tx.claimed_outpoints() {
            if self.locks.get(&op) == Some(txid) {
                self.locks.remove(&op);
            }
        }
    }

    /// Whether this node votes in the current set.
    fn is_member(&self) -> bool {
        self.me()
            .is_some_and(|me| self.keys.position(&me).is_some())
    }

    /// Whether this node is a member that the most recent change brought in, while that
    /// change's window is open: it takes no lock and shares nothing yet.
    fn is_joiner(&self) -> bool {
        let Some(me) = self.me() else { return false };
        self.keys.position(&me).is_some()
            && self
                .prev_keys
                .as_ref()
                .is_some_and(|prev| prev.position(&me).is_none())
    }

    pub fn step(&mut self, input: SlotInput, now: Millis) -> Vec<SlotEffect> {
        let mut out = Vec::new();
        match input {
            SlotInput::Transaction(tx) => self.on_transaction(tx, true, now, &mut out),
            SlotInput::TransactionWithoutVote(tx) => self.on_transaction(tx, false, now, &mut out),
            SlotInput::Announcement(a) => self.on_announcement(&a, now, &mut out),
            SlotInput::Share(share) => self.on_share(share, now, &mut out),
            SlotInput::Report(report) => self.on_report(report, now, &mut out),
            SlotInput::Certificate(certificate) => self.on_certificate(&certificate, now, &mut out),
            SlotInput::Proven { tx, proof } => self.on_proven(tx, &proof, now, &mut out),
            SlotInput::Tick => {
                self.next_tick = None;
                self.on_tick(now, &mut out);
            }
            SlotInput::BlockCommitted { keys, confirmed } => {
                self.on_block(keys, &confirmed, now, &mut out)
            }
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
        // Only a member locks: a lock taken before joining would carry a side of a double
        // spend into the set past the joiner's window (set-change seed 42 with a fanout of
        // 2: a Gold node locked a spend as an observer, joined, and certified it alone while
        // its rival was final under the set before).
        let locked = free && may_vote && self.is_member() && !self.is_joiner();
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
                may_vote,
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
                        self.vote(key.1, d.announcement, now, true, out);
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

    fn on_block(
        &mut self,
        keys: Arc<SetKeys>,
        confirmed: &[Arc<Transaction>],
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let was_joiner = self.is_joiner();
        // What the block confirmed, and every rival of it: their inputs are spent for good.
        let mut spent: HashSet<OutPoint> = HashSet::new();
        for tx in confirmed {
            let txid = tx.txid();
            self.pending.remove(&txid);
            self.finalized.remove(&txid);
            self.certified.remove(&txid);
            self.in_flight.remove(&txid);
            spent.extend(tx.claimed_outpoints());
        }
        if !spent.is_empty() {
            for op in &spent {
                self.locks.remove(op);
            }
            self.pending
                .retain(|_, p| !p.tx.claimed_outpoints().any(|op| spent.contains(&op)));
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
        if was_joiner && !self.is_joiner() {
            self.join_pending(out);
        }
        self.expire(slot_at(now), now);
    }

    /// A joiner's window closed: it locks the pending spends nobody contests (no lock of its
    /// own and no other pending spend on their inputs) and stays out of the rest.
    fn join_pending(&mut self, out: &mut Vec<SlotEffect>) {
        let mut claims: HashMap<OutPoint, usize> = HashMap::new();
        for p in self.pending.values() {
            for op in p.tx.claimed_outpoints() {
                *claims.entry(op).or_default() += 1;
            }
        }
        for (txid, p) in self.pending.iter_mut() {
            let uncontested =
                p.tx.claimed_outpoints()
                    .all(|op| claims.get(&op) == Some(&1) && !self.locks.contains_key(&op));
            if p.locked || !p.may_vote || self.finalized.contains_key(txid) || !uncontested {
                continue;
            }
            for op in p.tx.claimed_outpoints() {
                self.locks.insert(op, *txid);
            }
            p.locked = true;
            out.push(SlotEffect::PersistLock(Arc::clone(&p.tx)));
        }
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
        self.unannounced = self.unannounced.split_off(&(oldest, Hash32::ZERO));
        self.shared = self.shared.split_off(&(oldest, Hash32::ZERO));
        self.aggregating.retain(|a| a.slot >= oldest);
        self.in_flight.retain(|_, until| *until > now);
        let certificates = &self.certificates;
        self.certified
            .retain(|_, key| certificates.contains_key(key));
    }

    /// The signed announcement of a batch this node holds (its txids and aggregator), for a
    /// peer that missed it or a share to check against refused locks.
    pub fn announcement(&self, slot: u64, root: &Hash32) -> Option<Arc<BatchAnnouncement>> {
        self.batches.get(&(slot, *root)).map(Arc::clone)
    }
}
