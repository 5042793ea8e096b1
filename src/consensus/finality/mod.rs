//! Layer 1: instant finality by masternode votes (in the family of FastPay and Dash
//! InstantSend). A pure state machine: no sockets, no disk, no clock.
//!
//! ```text
//! Transaction ─► admits? (rivals per outpoint) ─► stored ─► inputs free or ours? ─yes─► PersistLock
//!                     │no: dropped, nothing kept            │no                 ─► buffer txid
//!                                                           └─► ConflictDetected ─► sign batch
//! VoteBatch (verified) ─► bound to S_cur / S_prev? ─► voter a member? ─► equivocation? ─► tally
//!                         │other set: held (bounded) until that set arrives
//! tally: quorum of S_cur bound to S_cur AND quorum of S_prev ─► Finalized
//! ```
//!
//! Rules (DESIGN.md §4): an honest masternode locks the inputs of the first valid spend it
//! sees and never votes for another spend of them (rule 1, 4); the lock is persisted before
//! the vote leaves (the shell flushes before executing `BroadcastVotes`); a transaction is final
//! when voters with more than two thirds of the weight name it (rule 3).
//!
//! # Set changes: the joint transition rule (rule 5)
//!
//! Each [`VoteBatch`] names the set it is cast under by its hash. The engine holds the current
//! set `S_cur` (after the last committed block) and `S_prev`, the set before the most recent
//! change (equal to `S_cur` when there was none). A transaction is final when
//!
//! * votes bound to `S_cur` carry more than two thirds of `S_cur`'s weight, **and**
//! * votes of `S_prev`'s members (bound to `S_prev` or `S_cur`) carry more than two thirds of
//!   `S_prev`'s weight.
//!
//! *Argument.* Let sets change `S_0, S_1, …` at block boundaries. A node whose engine holds
//! `(S_k, S_k-1)` finalizes only with a quorum of `S_k` and one of `S_k-1`. Take two
//! conflicting spends `X` and `Y` finalized on any two nodes whose current sets are the same
//! (`S_k` and `S_k`) or adjacent (`S_k` and `S_k+1`). Both finalities contain a quorum of one
//! common set (`S_k`). Two quorums of one set overlap in more than a third of its weight; with
//! faulty weight below a third of that set, the overlap holds an honest member, and an honest
//! member never votes for two spends of one outpoint whatever set it votes under (its locks
//! survive set changes and restarts). So `X` and `Y` cannot both be final.
//!
//! *Assumption.* Faulty weight is below a third of **each** set (`S_k` and every neighbour).
//!
//! *The window.* S_prev is held from the block that changes the set until the next block
//! commits; then S_prev becomes S_cur. Members leaving the set keep voting while the window
//! is open. An unbounded window would be stronger, but a heavy member that leaves and goes
//! offline would then hold S_prev's quorum out of reach until the next change, and a change
//! needs a final registration: layer 1 would stop for good (one coin holder could do it).
//!
//! *Joiners.* After the window closes the new set decides alone, and a heavy joiner may hold
//! most of its weight. A joiner was not voting when the pending spends arrived, so it cannot
//! know which one the old set may already have made final on some node, and a rival may still
//! be on its way to it. So while its first window is open a joiner votes only for what a
//! quorum of either set already names (then no rival can be final under that set), at once
//! when such a quorum appears; when the window closes it joins the pending decisions like any
//! member, except on an outpoint it holds no lock on and knows two spends of, where it keeps
//! following a quorum and otherwise stays out. Every node counts every signed vote, a double
//! voter's included, so a certificate proves the same everywhere, and a node that finalizes a
//! contested spend publishes its certificate. Set-change seeds 34 (a joiner picked a side of a
//! double spend by itself) and 414 (a joiner voted at the join for the spend it held while the
//! rival, in flight to it, was final under the old set) were these cases.
//!
//! *Residual limit.* A joiner that has not seen the first spend by the time its window closes,
//! not even its body, votes for the rival as an uncontested spend. If the first spend was
//! final under the old set and is still unconfirmed, its voters re-send its body and votes
//! every regossip and its finalizer published the certificate, so this needs the network to
//! keep all of that from the joiner for a whole block interval, and faulty plus joining weight
//! above two thirds of the new set. Closing it fully needs the old set to hand its locks over
//! through a block.
//!
//! On each change this node, if a member of the new set, casts its locks again bound to the
//! new set (same choice: always safe), and votes for the pending transactions it knows whose
//! inputs it has not locked otherwise: new members take part in pending decisions.
//!
//! # Bounds (issue 11 §3)
//!
//! Nothing a peer sends is stored before it is admitted: the shell checks structure, fee and
//! signatures first, and [`FinalityEngine::admits`] keeps at most [`MAX_RIVALS`] rival spends
//! per outpoint beside its first. Votes for txids this node has not seen are capped per voter
//! ([`MAX_UNKNOWN_PER_VOTER`]) and expire after [`UNKNOWN_TTL_REGOSSIPS`] regossips without a
//! body unless a third of a set vouches. When a block confirms a spend, every rival of its
//! inputs is forgotten (body, tally, lock, batch references).
//!
//! # Equivocation (§8)
//!
//! A voter naming two different transactions that spend one outpoint (both bodies known) is
//! reported once per (voter, outpoint) with both signed batches. Its votes keep counting, on
//! every node alike: a certificate is the same proof wherever it is checked (see
//! `note_equivocation`), and rivals per outpoint are bounded by [`MAX_RIVALS`] anyway.

pub mod certificate;
pub mod slots;
pub mod tally;
mod transition;
mod votes;

pub use certificate::FinalityCertificate;

use crate::consensus::MasternodeSet;
use crate::types::vote::MAX_BATCH_TXIDS;
use crate::types::{Hash32, Network, OutPoint, PublicKey, SecretKey, Transaction, Txid, VoteBatch};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tally::Tally;

/// Milliseconds on the driver's clock.
pub type Millis = u64;

/// Last-resort bound on transactions tracked at once, as tallies and as bodies. The bounds
/// below keep the engine far from it; it only guards against a bug in them.
pub const MAX_TRACKED: usize = 1_000_000;
/// Rival spends of one outpoint kept beside the first one seen (or the one it is locked to).
/// Only the owner of an output can sign rivals; more than a few only serve to flood.
pub const MAX_RIVALS: usize = 3;
/// Votes one masternode may have outstanding for txids this node has no body for.
pub const MAX_UNKNOWN_PER_VOTER: usize = 32_768;
/// Regossips (of `REGOSSIP_MS` each in the shell) after which a tally without a body is
/// forgotten, unless a third of a set's weight vouches for it.
pub const UNKNOWN_TTL_REGOSSIPS: u64 = 120;
/// Txids held in batches bound to a set this node does not hold yet (a node one block ahead
/// votes under the next set); replayed when that set arrives.
pub const MAX_FUTURE_TXIDS: usize = 65_536;
/// (voter, outpoint) equivocations remembered.
pub const MAX_EQUIVOCATIONS: usize = 65_536;
/// Most pending transactions sent again per regossip, in rotation.
pub const REGOSSIP_TXS: usize = 256;
/// Most own batches sent again per regossip.
const REGOSSIP_BATCHES: usize = 64;
/// An own batch whose every txid is decided here goes again only every this many regossips.
const FINAL_BATCH_REGOSSIPS: u64 = 8;
/// Masternodes per millisecond of vote-batch interval. A node receives one batch per
/// interval from each voter, so with a fixed interval its signature checks grow with the set
/// (about 200,000 a second at 1,000 masternodes and 5 ms). Past 50 masternodes the interval
/// grows with the set instead (`n / 10` ms), holding a node near 10,000 batch checks a second
/// whatever the set's size for at most `n / 10` ms more latency (SCALING.md).
const MASTERNODES_PER_INTERVAL_MS: usize = 10;

#[derive(Clone, Debug)]
pub struct FinalityConfig {
    pub network: Network,
    /// How long a txid may wait in the vote buffer before the batch is signed and sent.
    pub batch_interval_ms: Millis,
    /// A batch is sent at once when it holds this many txids.
    pub max_batch: usize,
    /// From this many voters on, the slot engine ([`slots`]) decides layer 1 instead of
    /// all-to-all vote batches (0: never).
    pub slot_engine_voters: usize,
    /// `slots::ANNOUNCE_FANOUT`: how many voters each node passes a slot's batch to. Not a
    /// node option (every node must lay the tree out alike); tests lower it so that a few
    /// nodes form a tree of several levels.
    pub announce_fanout: usize,
}

/// Voters from which the slot engine decides layer 1: below it every masternode naming
/// every transaction to every other is cheap and one exchange faster (SCALING.md).
pub const SLOT_ENGINE_VOTERS: usize = 64;

impl FinalityConfig {
    pub fn new(network: Network) -> FinalityConfig {
        FinalityConfig {
            network,
            batch_interval_ms: 5,
            max_batch: MAX_BATCH_TXIDS,
            slot_engine_voters: SLOT_ENGINE_VOTERS,
            announce_fanout: slots::ANNOUNCE_FANOUT,
        }
    }
}

#[derive(Clone, Debug)]
pub enum FinalityInput {
    /// A transaction the shell has verified (structure, signatures, fee) and checked against
    /// the ledger's confirmed state, and that [`FinalityEngine::admits`].
    Transaction(Arc<Transaction>),
    /// A verified transaction this node tracks (counts others' votes, finalizes) but must not
    /// vote for: it spends an output whose layer-1 lock history this node cannot prove (it
    /// was installed from a snapshot, whose locks nobody certified).
    TransactionWithoutVote(Arc<Transaction>),
    /// A vote batch whose signature the shell has verified.
    VoteBatch(Arc<VoteBatch>),
    /// The vote-batch timer fired.
    BatchTimer,
    /// Time to send again this node's batches for transactions not yet confirmed in a block
    /// (final ones too: a peer that missed votes cannot finalize, nor accept a block with the
    /// transaction, until it has them), and some pending transactions.
    Regossip,
    /// A block was committed: the set for the next height, and the transactions it confirmed
    /// (their inputs are gone from the set; nothing about them or their rivals needs tracking
    /// any more).
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
    /// Send this pending transaction to peers again (some may have missed it).
    Gossip(Arc<Transaction>),
    /// Two different transactions spend one outpoint: their signer equivocated. Only that
    /// owner's coins are affected (they may stay locked forever).
    ConflictDetected {
        outpoint: OutPoint,
        first: Txid,
        second: Txid,
    },
    /// One masternode signed votes for two different transactions spending `outpoint`: both
    /// signed batches with the transactions they name are the evidence.
    VoteEquivocation {
        outpoint: OutPoint,
        first: (Arc<VoteBatch>, Arc<Transaction>),
        second: (Arc<VoteBatch>, Arc<Transaction>),
    },
}

/// Why [`FinalityEngine::admits`] refuses a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `outpoint` already has its first spend (`existing`) and `MAX_RIVALS` rivals.
    TooManyRivals { outpoint: OutPoint, existing: Txid },
    /// `MAX_TRACKED` transactions are tracked.
    Full,
}

/// How many entries the engine tracks, for tests, metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedCounts {
    pub known: usize,
    pub tallies: usize,
    pub unknown_tallies: usize,
    pub batches: usize,
    pub locks: usize,
    pub outpoints: usize,
    pub future_txids: usize,
    pub equivocations: usize,
}

pub struct FinalityEngine {
    config: FinalityConfig,
    key: Option<SecretKey>,
    /// False while the slot engine decides layer 1 (`driver::slots`): this engine then signs
    /// and counts no vote of its own, so its tallies hold only what peers sent.
    voting: bool,
    me: Option<PublicKey>,
    /// S_cur and its hash.
    set: Arc<MasternodeSet>,
    set_hash: Hash32,
    /// S_prev (the set before the most recent change) and its hash.
    prev: Arc<MasternodeSet>,
    prev_hash: Hash32,
    /// Outpoint → the transaction this node locked it to (or saw final).
    locks: HashMap<OutPoint, Txid>,
    /// Bodies of transactions being voted on or waited for, in txid order (so that walking
    /// them costs no sort).
    known: BTreeMap<Txid, Arc<Transaction>>,
    /// Outpoint → the known transactions spending it, first seen first.
    spenders: HashMap<OutPoint, Vec<Txid>>,
    tallies: HashMap<Txid, Tally>,
    /// Signed batches still referenced by a tally, with the number of references.
    batches: HashMap<Hash32, (Arc<VoteBatch>, usize)>,
    /// Voter → tallies without a body this voter has a vote in.
    unknown_votes: HashMap<PublicKey, usize>,
    /// (regossip round, txid) of tallies created without a body, oldest first.
    unknown_expiry: VecDeque<(u64, Txid)>,
    regossip_round: u64,
    /// Batches bound to a set this node does not hold (yet), oldest first.
    future: VecDeque<Arc<VoteBatch>>,
    future_txids: usize,
    /// (voter, outpoint) pairs proven to have equivocated (reported once each).
    equivocators: BTreeSet<(PublicKey, OutPoint)>,
    /// Looked up for every transaction and vote, never walked: hashed, not ordered.
    finalized: HashSet<Txid>,
    /// Txids this node voted for under the current set (looked up, never walked).
    voted: HashSet<Txid>,
    buffer: Vec<Txid>,
    timer_armed: bool,
    next_sequence: u64,
    fetch_requested: BTreeSet<Txid>,
    /// Transactions this node tracks but never signs: they spend outputs whose layer-1 lock
    /// history it cannot prove (installed from a snapshot). Cleared with the rest of a txid.
    abstain: BTreeSet<Txid>,
    /// Voted-for txids without a body, seen since the last regossip / before it.
    unknown_recent: BTreeSet<Txid>,
    unknown_older: BTreeSet<Txid>,
    /// Last txid sent again by the regossip rotation.
    regossip_cursor: Option<Txid>,
}

impl FinalityEngine {
    /// `key` is the operator key of a masternode (`None` on a node that only observes).
    /// `locks` are the locks the ledger holds (from before a restart) and `finalized` the
    /// transactions final but not yet confirmed; `first_sequence` must exceed any sequence
    /// this key signed before. The previous set starts equal to `set`; see
    /// [`FinalityEngine::with_previous_set`].
    pub fn new(
        config: FinalityConfig,
        key: Option<SecretKey>,
        set: Arc<MasternodeSet>,
        locks: impl IntoIterator<Item = (OutPoint, Txid)>,
        finalized: impl IntoIterator<Item = Txid>,
        first_sequence: u64,
    ) -> FinalityEngine {
        let me = key.as_ref().map(SecretKey::public_key);
        let set_hash = set.hash();
        FinalityEngine {
            config,
            key,
            voting: true,
            me,
            prev: Arc::clone(&set),
            prev_hash: set_hash,
            set,
            set_hash,
            locks: locks.into_iter().collect(),
            known: BTreeMap::new(),
            spenders: HashMap::new(),
            tallies: HashMap::new(),
            batches: HashMap::new(),
            unknown_votes: HashMap::new(),
            unknown_expiry: VecDeque::new(),
            regossip_round: 0,
            future: VecDeque::new(),
            future_txids: 0,
            equivocators: BTreeSet::new(),
            finalized: finalized.into_iter().collect(),
            voted: HashSet::new(),
            buffer: Vec::new(),
            timer_armed: false,
            next_sequence: first_sequence,
            fetch_requested: BTreeSet::new(),
            abstain: BTreeSet::new(),
            unknown_recent: BTreeSet::new(),
            unknown_older: BTreeSet::new(),
            regossip_cursor: None,
        }
    }

    /// Sets S_prev, the set before the most recent change (after a restart: read back from
    /// the stored sets), so the joint rule holds across restarts.
    pub fn with_previous_set(mut self, prev: Arc<MasternodeSet>) -> FinalityEngine {
        self.prev_hash = prev.hash();
        self.prev = prev;
        self
    }

    /// S_cur.
    pub fn set(&self) -> &Arc<MasternodeSet> {
        &self.set
    }

    /// S_prev.
    pub fn previous_set(&self) -> &Arc<MasternodeSet> {
        &self.prev
    }

    /// After a restart: the body of a transaction final here but not yet confirmed (read back
    /// from the ledger), so [`FinalityEngine::resume_except`] can vote for it again and its
    /// rivals are recognised.
    pub fn restore_final(&mut self, tx: Arc<Transaction>) {
        let txid = tx.txid();
        if !self.finalized.contains(&txid) || self.known.contains_key(&txid) {
            return;
        }
        self.track(tx);
    }

    /// Keeps `tx`'s body and records it as a spender of each outpoint it claims.
    fn track(&mut self, tx: Arc<Transaction>) {
        let txid = tx.txid();
        for outpoint in tx.claimed_outpoints() {
            let spenders = self.spenders.entry(outpoint).or_default();
            if !spenders.contains(&txid) {
                spenders.push(txid);
            }
        }
        self.known.insert(txid, tx);
    }

    /// After a restart: votes again for every transaction this node holds a lock for (locks
    /// persisted before a crash may never have been sent, and votes sent before it are lost
    /// from memory while peers may still need them). Voting again for the transaction an
    /// input is locked to is always safe: it is the same choice.
    pub fn resume(&mut self) -> Vec<FinalityEffect> {
        self.resume_except(&BTreeSet::new())
    }

    /// Like [`FinalityEngine::resume`], leaving out `not_ours`: transactions final by others'
    /// votes that this node abstained on (it never locked them itself, so it never signs them).
    pub fn resume_except(&mut self, not_ours: &BTreeSet<Txid>) -> Vec<FinalityEffect> {
        let mut fx = Vec::new();
        self.abstain.extend(not_ours.iter().copied());
        self.recast(&mut fx);
        fx
    }

    /// Turns this node's votes off (the slot engine decides) or back on.
    pub fn set_voting(&mut self, voting: bool) {
        self.voting = voting;
        if !voting {
            self.buffer.clear();
        }
    }

    pub fn is_final(&self, txid: &Txid) -> bool {
        self.finalized.contains(txid)
    }

    /// Whether votes for `txid` already make a quorum under the joint rule (its body may be
    /// missing): then a quorum of signers vouches for it, whatever this node's pool thinks.
    pub fn has_quorum(&self, txid: &Txid) -> bool {
        self.tallies
            .get(txid)
            .is_some_and(|t| t.is_quorum(&self.set, &self.prev))
    }

    /// Whether another known transaction spends one of `tx`'s outpoints.
    pub fn is_contested(&self, tx: &Transaction) -> bool {
        let txid = tx.txid();
        tx.claimed_outpoints().any(|op| self.has_rival(&op, &txid))
    }

    /// Whether `txid` still waits for a decision here: tracked and not final (a confirmed
    /// one, or a rival a block beat, is forgotten).
    fn undecided(&self, txid: &Txid) -> bool {
        self.tallies.contains_key(txid) && !self.finalized.contains(txid)
    }

    /// Whether a known transaction other than `txid` spends `outpoint`.
    fn has_rival(&self, outpoint: &OutPoint, txid: &Txid) -> bool {
        self.spenders
            .get(outpoint)
            .is_some_and(|s| s.iter().any(|t| t != txid))
    }

    /// Weight of the votes seen for `txid` toward the current set's quorum.
    pub fn weight_for(&self, txid: &Txid) -> u64 {
        self.tallies.get(txid).map_or(0, Tally::weight)
    }

    /// The certificate of a transaction still tracked (until a block confirms it).
    pub fn certificate(&self, txid: &Txid) -> Option<FinalityCertificate> {
        let tally = self.tallies.get(txid)?;
        let mut ids: Vec<Hash32> = tally.batch_ids().collect();
        ids.dedup();
        let batches = ids
            .iter()
            .filter_map(|id| self.batches.get(id).map(|(b, _)| Arc::clone(b)))
            .collect();
        Some(FinalityCertificate {
            txid: *txid,
            set_hash: self.set_hash,
            prev_set_hash: self.prev_hash,
            batches,
        })
    }

    /// A member of S_cur, or of S_prev while a transition window is open: a member that is
    /// leaving keeps voting until the window closes, so S_prev's quorum stays reachable.
    fn am_voter(&self) -> bool {
        self.me
            .is_some_and(|me| self.set.contains_voter(&me) || self.prev.contains_voter(&me))
    }

    pub fn step(&mut self, input: FinalityInput, now: Millis) -> Vec<FinalityEffect> {
        let mut fx = Vec::new();
        match input {
            FinalityInput::Transaction(tx) => self.on_transaction(tx, true, now, &mut fx),
            FinalityInput::TransactionWithoutVote(tx) => {
                self.on_transaction(tx, false, now, &mut fx)
            }
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

    /// Whether a transaction would be stored, asked before any work is spent on it (the shell
    /// asks before verifying signatures). A transaction a third of a set vouches for, or that
    /// an input is locked to, is always admitted.
    pub fn admits(&self, tx: &Transaction) -> Result<(), Refusal> {
        let txid = tx.txid();
        if self.known.contains_key(&txid) || self.finalized.contains(&txid) {
            return Ok(());
        }
        let vouched = self
            .tallies
            .get(&txid)
            .is_some_and(|t| t.has_one_third(&self.set, &self.prev));
        let locked_to = tx
            .claimed_outpoints()
            .any(|op| self.locks.get(&op) == Some(&txid));
        if vouched || locked_to {
            return Ok(());
        }
        if self.known.len() >= MAX_TRACKED {
            return Err(Refusal::Full);
        }
        for outpoint in tx.claimed_outpoints() {
            if let Some(spenders) = self.spenders.get(&outpoint) {
                if spenders.len() > MAX_RIVALS {
                    return Err(Refusal::TooManyRivals {
                        outpoint,
                        existing: spenders[0],
                    });
                }
            }
        }
        Ok(())
    }

    fn on_transaction(
        &mut self,
        tx: Arc<Transaction>,
        may_vote: bool,
        now: Millis,
        fx: &mut Vec<FinalityEffect>,
    ) {
        let txid = tx.txid();
        if self.finalized.contains(&txid) || self.known.contains_key(&txid) {
            return;
        }
        if self.admits(&tx).is_err() {
            return;
        }
        self.fetch_requested.remove(&txid);
        self.track(Arc::clone(&tx));
        if let Some(tally) = self.tallies.get(&txid) {
            // Votes came before the body: they no longer count as unknown, and they may show a
            // voter that also voted for a rival.
            let voters: Vec<PublicKey> = tally.voters().map(|(k, _)| *k).collect();
            for voter in &voters {
                self.unknown_vote_done(voter);
            }
            self.equivocations_in_body(&tx, &voters, fx);
        }
        // A quorum may already have named it while we lacked the body.
        if self.try_finalize(&txid, fx) {
            return;
        }
        let conflicts = self.conflicts(&tx);
        for (outpoint, first) in &conflicts {
            fx.push(FinalityEffect::ConflictDetected {
                outpoint: *outpoint,
                first: *first,
                second: txid,
            });
        }
        if !may_vote {
            // Tracked and counted, never signed by this node (see `abstain`).
            self.abstain.insert(txid);
        }
        if !conflicts.is_empty()
            || !may_vote
            || !self.am_voter()
            || self.voted.contains(&txid)
            || !self.may_choose(&tx)
        {
            return;
        }
        self.vote_for(&tx, fx);
        if !self.buffer.is_empty() && !self.timer_armed {
            self.timer_armed = true;
            fx.push(FinalityEffect::ScheduleBatchTimer {
                at: now + self.batch_interval(),
            });
        }
    }

    /// How long a vote waits in the buffer: the configured interval, or longer in a large set
    /// (see [`MASTERNODES_PER_INTERVAL_MS`]).
    fn batch_interval(&self) -> Millis {
        let by_size = (self.set.len() / MASTERNODES_PER_INTERVAL_MS) as Millis;
        self.config.batch_interval_ms.max(by_size)
    }

    /// Whether this node may pick `tx` for an outpoint it holds no lock on while it knows
    /// another spend of it. That happens only to a node that was not voting when the spends
    /// arrived (a masternode that just joined): it cannot know which one the old set may
    /// already have made final somewhere, so it follows a quorum of either set and otherwise
    /// stays out. Without this, a joiner heavy enough to make a quorum of the new set with
    /// the faulty weight could finalize the rival of a transaction final under the old set.
    ///
    /// A joiner (see [`FinalityEngine::is_joiner`]) follows a quorum for every transaction
    /// while its first window is open: a rival may be in flight to it, already final under
    /// the old set somewhere (set-change seed 414: it voted for the spend it had when it
    /// joined, and its weight later made that one final alone).
    fn may_choose(&self, tx: &Transaction) -> bool {
        !(self.is_joiner() || self.unlocked_contest(tx))
            || self
                .tallies
                .get(&tx.txid())
                .is_some_and(|t| t.has_either_quorum(&self.set, &self.prev))
    }

    /// A member of the current set that was not in the previous one, while the transition
    /// window is open. At the window's close it joins the pending decisions like any member.
    fn is_joiner(&self) -> bool {
        self.prev_hash != self.set_hash
            && self
                .me
                .is_some_and(|me| self.set.contains_voter(&me) && !self.prev.contains_voter(&me))
    }

    /// Whether `tx` claims an outpoint this node holds no lock on and knows another spend of.
    fn unlocked_contest(&self, tx: &Transaction) -> bool {
        let txid = tx.txid();
        tx.claimed_outpoints()
            .any(|op| !self.locks.contains_key(&op) && self.has_rival(&op, &txid))
    }

    /// Votes for `txid` if this node stayed out of it (a joiner, or one of its outpoints is
    /// contested; see [`FinalityEngine::may_choose`]) and a quorum of either set now names
    /// it: its weight may be what the other set's quorum lacks. Signed at once.
    fn ratify(&mut self, txid: &Txid, fx: &mut Vec<FinalityEffect>) {
        if self.voted.contains(txid) || self.abstain.contains(txid) || !self.am_voter() {
            return;
        }
        let Some(tx) = self.known.get(txid).cloned() else {
            return;
        };
        let stayed_out = self.is_joiner() || self.unlocked_contest(&tx);
        if stayed_out && self.conflicts(&tx).is_empty() && self.may_choose(&tx) {
            self.vote_for(&tx, fx);
            self.flush_batch(fx);
        }
    }

    /// Inputs of `tx` locked to another transaction, with that transaction.
    fn conflicts(&self, tx: &Transaction) -> Vec<(OutPoint, Txid)> {
        let txid = tx.txid();
        tx.claimed_outpoints()
            .filter_map(|op| match self.locks.get(&op) {
                Some(other) if *other != txid => Some((op, *other)),
                _ => None,
            })
            .collect()
    }

    /// Locks `tx`'s inputs (caller checked they are free or ours) and buffers the vote.
    fn vote_for(&mut self, tx: &Arc<Transaction>, fx: &mut Vec<FinalityEffect>) {
        let txid = tx.txid();
        let fresh = tx
            .claimed_outpoints()
            .any(|op| !self.locks.contains_key(&op));
        for outpoint in tx.claimed_outpoints() {
            self.locks.insert(outpoint, txid);
        }
        if fresh {
            fx.push(FinalityEffect::PersistLock(Arc::clone(tx)));
        }
        self.buffer_vote(txid, fx);
    }

    fn buffer_vote(&mut self, txid: Txid, fx: &mut Vec<FinalityEffect>) {
        if self.voted.insert(txid) {
            self.buffer.push(txid);
            if self.buffer.len() >= self.config.max_batch {
                self.flush_batch(fx);
            }
        }
    }

    fn flush_batch(&mut self, fx: &mut Vec<FinalityEffect>) {
        if self.buffer.is_empty() {
            return;
        }
        let Some(key) = self.key.as_ref().filter(|_| self.voting) else {
            self.buffer.clear();
            return;
        };
        let txids = std::mem::take(&mut self.buffer);
        let batch = Arc::new(VoteBatch::sign(
            key,
            self.config.network,
            (self.set.height(), self.set_hash),
            self.next_sequence,
            txids,
        ));
        self.next_sequence += 1;
        fx.push(FinalityEffect::BroadcastVotes(Arc::clone(&batch)));
        self.on_vote_batch(batch, fx);
    }

    /// Declares `txid` final if its tally is a quorum under the joint rule and its body is
    /// known. Returns whether it is (now) final.
    fn try_finalize(&mut self, txid: &Txid, fx: &mut Vec<FinalityEffect>) -> bool {
        if self.finalized.contains(txid) {
            return true;
        }
        let Some(tally) = self.tallies.get(txid) else {
            return false;
        };
        if !tally.is_quorum(&self.set, &self.prev) {
            return false;
        }
        let Some(tx) = self.known.get(txid).cloned() else {
            if self.fetch_requested.insert(*txid) {
                fx.push(FinalityEffect::FetchTransaction(*txid));
            }
            return false;
        };
        let Some(certificate) = self.certificate(txid) else {
            return false;
        };
        self.finalized.insert(*txid);
        for outpoint in tx.claimed_outpoints() {
            // A lock this node placed by voting for a rival stays: re-casting it later is
            // the same choice, whereas re-casting this one would sign both spends.
            self.locks.entry(outpoint).or_insert(*txid);
        }
        fx.push(FinalityEffect::Finalized { tx, certificate });
        true
    }

    /// Drops everything about `txid`: body, spender entries, tally, batch references, vote,
    /// and the locks held for it (it can no longer be final, so they promise nothing).
    fn forget(&mut self, txid: &Txid) {
        let body = self.known.remove(txid);
        if let Some(tx) = &body {
            for outpoint in tx.claimed_outpoints() {
                if let Some(spenders) = self.spenders.get_mut(&outpoint) {
                    spenders.retain(|t| t != txid);
                    if spenders.is_empty() {
                        self.spenders.remove(&outpoint);
                    }
                }
                if self.locks.get(&outpoint) == Some(txid) {
                    self.locks.remove(&outpoint);
                }
            }
        }
        self.voted.remove(txid);
        self.abstain.remove(txid);
        self.fetch_requested.remove(txid);
        if let Some(tally) = self.tallies.remove(txid) {
            let voters: Vec<PublicKey> = tally.voters().map(|(k, _)| *k).collect();
            if body.is_none() {
                for voter in &voters {
                    self.unknown_vote_done(voter);
                }
            }
            self.release_batches(tally.batch_ids().collect::<Vec<_>>());
        }
    }

    fn regossip(&mut self, fx: &mut Vec<FinalityEffect>) {
        self.regossip_round += 1;
        self.expire_unknown();
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
        self.gossip_pending(fx);
        let Some(me) = self.me else { return };
        // A batch whose every txid is decided here (final, or forgotten: confirmed by a
        // block, or a rival a block beat) has done most of its work: sending it again every
        // regossip until a block confirmed it repeated the heaviest message there is (seven
        // times the vote traffic under load). It still goes every `FINAL_BATCH_REGOSSIPS`-th
        // regossip (staggered by sequence): a peer that missed it may need this vote for its
        // own quorum, and a proposal naming the transaction may be far off (the simulation's
        // seed 16: the only holders of the finality proposed rarely). While a set change
        // settles, everything goes every time, for the joiners (the module docs' residual
        // limit counts on it).
        let settling = self.prev_hash != self.set_hash;
        let round = self.regossip_round;
        let mut mine: Vec<&Arc<VoteBatch>> = self
            .batches
            .values()
            .map(|(b, _)| b)
            .filter(|b| b.voter == me)
            .filter(|b| {
                settling
                    || round.wrapping_add(b.sequence) % FINAL_BATCH_REGOSSIPS == 0
                    || b.txids.iter().any(|t| self.undecided(t))
            })
            .collect();
        mine.sort_by_key(|b| b.sequence);
        for b in mine.into_iter().take(REGOSSIP_BATCHES) {
            fx.push(FinalityEffect::BroadcastVotes(Arc::clone(b)));
        }
    }

    /// Forgets tallies that stayed without a body for `UNKNOWN_TTL_REGOSSIPS`, unless a third
    /// of a set vouches for them (then they are looked at again a TTL later).
    fn expire_unknown(&mut self) {
        while let Some(&(round, txid)) = self.unknown_expiry.front() {
            if round + UNKNOWN_TTL_REGOSSIPS > self.regossip_round {
                break;
            }
            self.unknown_expiry.pop_front();
            if self.known.contains_key(&txid) || self.finalized.contains(&txid) {
                continue;
            }
            let Some(tally) = self.tallies.get(&txid) else {
                continue;
            };
            if tally.has_one_third(&self.set, &self.prev) {
                self.unknown_expiry.push_back((self.regossip_round, txid));
            } else {
                self.forget(&txid);
            }
        }
    }

    /// Sends again up to `REGOSSIP_TXS` pending transactions, continuing where the last
    /// regossip stopped, so every pending transaction gets its turn however many there are.
    fn gossip_pending(&mut self, fx: &mut Vec<FinalityEffect>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = match self.regossip_cursor {
            Some(c) => (Excluded(c), Unbounded),
            None => (Unbounded, Unbounded),
        };
        let mut sent = 0;
        let mut last = None;
        let tail = self.known.range(after);
        let head = self
            .regossip_cursor
            .map(|c| self.known.range(..=c))
            .into_iter()
            .flatten();
        for (txid, tx) in tail.chain(head) {
            if sent >= REGOSSIP_TXS {
                break;
            }
            last = Some(*txid);
            if self.finalized.contains(txid) {
                continue;
            }
            fx.push(FinalityEffect::Gossip(Arc::clone(tx)));
            sent += 1;
        }
        self.regossip_cursor = last;
    }

    /// Transactions waiting for votes, in txid order (linear: no sort).
    pub fn pending(&self) -> Vec<Arc<Transaction>> {
        self.known
            .iter()
            .filter(|(id, _)| !self.finalized.contains(*id))
            .map(|(_, tx)| Arc::clone(tx))
            .collect()
    }

    /// Diagnostics: txids waiting in the vote buffer, whether the batch timer is armed, and
    /// whether this node has voted for `txid` under the current set.
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

    /// How many entries each structure holds.
    pub fn counts(&self) -> TrackedCounts {
        TrackedCounts {
            known: self.known.len(),
            tallies: self.tallies.len(),
            unknown_tallies: self
                .tallies
                .keys()
                .filter(|t| !self.known.contains_key(*t))
                .count(),
            batches: self.batches.len(),
            locks: self.locks.len(),
            outpoints: self.spenders.len(),
            future_txids: self.future_txids,
            equivocations: self.equivocators.len(),
        }
    }
}

#[cfg(test)]
mod tests;
