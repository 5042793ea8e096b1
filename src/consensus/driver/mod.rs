//! The synchronous shell around both engines: verifies what arrives, feeds the engines, and
//! carries out their effects against the ledger, the pool and the disk.
//!
//! ```text
//! message / timer ──verify──► FinalityEngine ─┐
//!                           └► BftEngine ─────┤ effects
//!                                             ▼
//!     ledger (lock, finalize, build, validate, commit) · safety state · Outputs
//! ```
//!
//! It does blocking I/O (sled) but nothing async: the tokio service runs it on a blocking
//! thread and the simulation runs it directly, so both exercise the same code. Sending,
//! timers and the clock belong to whoever drives it: it returns them as [`Output`]s.
//!
//! Persist before you promise: a lock is committed and the database flushed before the vote
//! batch naming it is returned for broadcast; the BFT safety state is flushed before the
//! signed vote or proposal that follows it.

mod block_jobs;
mod blocks;
mod compact;
mod effects;
mod evidence;
mod fast_sync;
mod intake;
mod proofs;
mod slots;
mod status;
mod transactions;
pub use block_jobs::{BuiltProposal, CheckedProposal, ProposalCheck, ProposalRequest};
pub use blocks::{
    block_page, check_record, is_corrupt, is_corrupt_set_read, report_unservable, BlockPage,
};
pub use fast_sync::header_page;
pub use intake::{Dropped, IgnoredPeers, MAX_FINALITY_BATCHES};

use super::bft::{BftConfig, BftEffect, BftEngine, BftInput, ConsensusMessage, Timeout};
use super::finality::slots::SlotInput;
use super::finality::{
    FinalityConfig, FinalityEffect, FinalityEngine, FinalityInput, Millis, Refusal,
};
use super::genesis::GenesisSpec;
use super::set_store::{self, SetStoreError};
use super::MasternodeSet;
use crate::consensus::proofs::MAX_PUBLISHED_PROOFS;
use crate::ledger::{Ledger, LedgerError};
use crate::mempool::admission::Admission;
use crate::mempool::{Mempool, PoolError, PoolLimits, VerifiedTx};
use crate::storage::{StorageError, TreeId, WriteBatch};
use crate::types::{
    Block, CommitCertificate, CompactProposal, ConsensusVote, Hash32, Network, OutPoint, Proposal,
    SecretKey, Transaction, Txid, UtxoState, VoteBatch,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Prefix of conflicting certified blocks kept as evidence (`prefix ‖ height ‖ hash`).
pub const EVIDENCE_PREFIX: &[u8] = b"evidence/";
/// Proposal timestamps further than this from this node's clock (median of recent ones)
/// mean one of the clocks is wrong: the operator is warned.
pub const CLOCK_WARN_MS: i64 = 2_000;
/// Recent proposal clock offsets kept for that median.
const CLOCK_SAMPLES: usize = 16;
/// Least time between two clock warnings.
const CLOCK_WARN_EVERY_MS: Millis = 60_000;
/// Vote-batch ids remembered as already verified: a minute of four voters at their fastest
/// (a batch every 5 ms each). A batch sent again later than that (a regossip of a transaction
/// no block has confirmed yet) costs one signature check. 200,000 held ≈ 26 MB.
const SEEN_BATCHES: usize = 50_000;
/// Final transactions kept while the ledger lacks one of their parents, retried as blocks
/// and other final transactions arrive.
pub const MAX_AWAITING_PARENTS: usize = 20_000;

/// A bounded set of recently seen ids: the oldest are forgotten first.
struct SeenSet {
    ids: std::collections::HashSet<crate::types::Hash32>,
    order: VecDeque<crate::types::Hash32>,
    capacity: usize,
}

impl SeenSet {
    fn new(capacity: usize) -> SeenSet {
        SeenSet {
            ids: std::collections::HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&self, id: &crate::types::Hash32) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: crate::types::Hash32) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// Least time between two requests for blocks.
pub const SYNC_RETRY_MS: Millis = 500;
/// Most blocks served in one sync reply.
pub const MAX_SYNC_BLOCKS: u32 = 64;

/// Identifies a peer to reply to; its meaning belongs to the network layer.
pub type PeerId = u64;

#[derive(Clone)]
pub struct DriverConfig {
    pub network: Network,
    /// The masternode operator key, if this node votes.
    pub key: Option<SecretKey>,
    pub finality: FinalityConfig,
    pub bft: BftConfig,
    pub pool: PoolLimits,
    /// Most transactions a proposed block carries.
    pub max_block_txs: usize,
}

/// What nodes say to each other about consensus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireMessage {
    Transaction(Arc<Transaction>),
    /// Txids of transactions the sender took, for a peer to ask for those it lacks
    /// (`network::tx_relay`); handled by the network, never by the driver.
    TxInv(Arc<Vec<Txid>>),
    /// Asks the peer that announced them for these transactions' bodies; handled by the
    /// network.
    GetTxs(Arc<Vec<Txid>>),
    VoteBatch(Arc<VoteBatch>),
    /// A full proposal: the answer to `GetProposal`.
    Proposal(Arc<Proposal>),
    /// How proposals travel: transfers by txid, relayed by every node that filled it in.
    CompactProposal(Arc<CompactProposal>),
    /// Asks the peer that sent a compact proposal for the full one: sent when the bodies
    /// held here fill it in to another block (a transfer signed twice by its owner).
    GetProposal {
        height: u64,
        round: u32,
    },
    Vote(ConsensusVote),
    /// Asks for a transaction and the vote batches that make it final.
    GetFinality(Txid),
    Finality {
        tx: Arc<Transaction>,
        batches: Vec<Arc<VoteBatch>>,
    },
    /// Asks for committed blocks from a height on.
    GetBlocks {
        from_height: u64,
    },
    Blocks(Vec<(Arc<Block>, CommitCertificate)>),
    /// Asks for certified headers from a height on (fast sync of a new node).
    GetHeaders {
        from_height: u64,
    },
    Headers(Arc<Vec<super::snapshot::HeaderEntry>>),
    /// Asks for a page of the confirmed UTXO set at `height` (0: at the tip).
    GetSnapshot {
        height: u64,
        page: u32,
    },
    Snapshot(Arc<super::snapshot::SnapshotPage>),
    /// Proof that a masternode equivocated; flooded, verified before it is relayed.
    Evidence(Arc<crate::types::Evidence>),
    /// Layer 1 for large sets (`finality::slots`): a slot aggregator's batch, flooded.
    SlotAnnouncement(Arc<crate::types::slot::BatchAnnouncement>),
    /// A voter's BLS share of a batch, sent to the slot's aggregator only.
    SlotShare(crate::types::slot::SlotShare),
    /// A voter's list of a batch's txids it cannot lock, sent to the aggregator only.
    LockReport(Arc<crate::types::slot::LockReport>),
    /// A batch's certificate, flooded without the batch's txids: every voter holds the
    /// announcement, and one that missed it asks the sender (`GetSlotBatch`). At 1,000
    /// masternodes the txids made each certificate 16 kB to every peer (SCALING.md).
    SlotCertificate(Arc<crate::types::slot::SlotCertificate>),
    /// Asks a peer that sent a certificate for the announcement of its batch; answered with
    /// the `SlotAnnouncement`, once per peer and batch.
    GetSlotBatch {
        slot: u64,
        root: Hash32,
    },
    /// The answer to `GetFinality` for a transaction the slot engine made final: its body,
    /// its batch's certificate and its path to the batch's root.
    SlotFinality {
        tx: Arc<Transaction>,
        proof: Arc<crate::types::slot::SlotFinalityProof>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    VoteBatch,
    /// The slot engine's slot timer.
    Slot,
    /// Send again what peers may have missed: pending transactions and own vote batches.
    Regossip,
    Bft(Timeout),
}

/// How often pending transactions and own votes are sent again.
pub const REGOSSIP_MS: Millis = 500;

/// Peers a relayed message goes to ([`Output::Relay`]); a transaction's txid is announced to
/// this many and its body asked for by those that lack it (`network::tx_relay`). Gossip to
/// this many random peers from every node that takes it reaches all but about e^-8 (0.03 %)
/// of a network even if its originator reached only one node; regossip covers the rest.
pub const RELAY_FANOUT: usize = 8;

/// Most transactions a proposed block carries (`DriverConfig::max_block_txs` of a node): a
/// proposer's choice, not a consensus rule (a block's rule is `MAX_BLOCK_BYTES`, ≈ 40,000
/// transfers). Blocks must confirm what layer 1 finalizes, or what is final waits in memory
/// (and local submits wait, `blocks_behind`): at 10,000 one node of a one-second localnet was
/// held at the blocks' rate (11,000 a second with the backlog) while its layer 1 could
/// finalize 20,000 (stop 44). 20,000 (≈ 4 MB of transfers; built and checked beside the
/// consensus owner, `block_jobs`) with the limits sized by a block's worth at or above one
/// block: a voter's votes for bodies not yet here (`MAX_UNKNOWN_PER_VOTER`), the proposals'
/// parents awaited (`MAX_AWAITING_PARENTS`), a peer's finality requests
/// (`network::sync_server::MAX_FINALITY_QUEUE`), and the proofs published beyond the final
/// backlog's bound (`FINAL_BACKLOG_BLOCKS`).
pub const MAX_BLOCK_TXS: usize = 20_000;

/// Blocks' worth of final transactions waiting for a block beyond which local submits are
/// refused (see `blocks_behind`): a few blocks, so a burst finalizes at once and the next
/// blocks drain it, while a sustained rate above the blocks' is refused at the door. Kept
/// below the finality proofs a node publishes (`proofs::MAX_PUBLISHED_PROOFS`, 65,536: three
/// blocks of 20,000), so every waiting transaction's proof can still be served to a validator
/// that lacks it.
pub const FINAL_BACKLOG_BLOCKS: usize = 3;

/// Something the driver tells the outside about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A transaction final at layer 1 and accepted by the ledger, with its body (listeners
    /// need not read it back from the database).
    TxFinalized(Txid, Arc<Transaction>),
    /// The transactions one step of the consensus service made final, in that order. The
    /// service's event channel carries finality only this way (it merges a step's
    /// `TxFinalized`): one vote batch can finalize thousands at once, which as one event
    /// each would overrun every listener's queue in a single step.
    TxsFinalized(Arc<[(Txid, Arc<Transaction>)]>),
    /// With what a block notification shows, so listeners need not read the block back.
    BlockCommitted {
        height: u64,
        hash: crate::types::BlockHash,
        time_ms: u64,
        /// `None` for the tip a UTXO snapshot installed (its body is not held).
        transactions: Option<usize>,
    },
    DoubleSpend {
        outpoint: OutPoint,
        first: Txid,
        second: Txid,
    },
    /// A masternode signed layer-1 votes for two transactions spending one outpoint; the two
    /// signed batches (with the transactions) are the evidence.
    VoteEquivocation {
        voter: crate::types::PublicKey,
        outpoint: OutPoint,
        first: (Arc<VoteBatch>, Arc<Transaction>),
        second: (Arc<VoteBatch>, Arc<Transaction>),
    },
    Equivocation {
        validator: crate::types::PublicKey,
        height: u64,
        round: u32,
    },
    /// A peer sent provably wrong consensus data; the network bans it.
    PeerFault { peer: PeerId, reason: String },
    /// A peer sent something only a misbehaving node sends (a bad signature, an invalid
    /// transaction, a message over a cap): `points` toward its ban.
    PeerMisbehaved {
        peer: PeerId,
        points: u32,
        reason: String,
    },
    /// A peer is proven to be at `height` or beyond (a verified vote or proposal of the next
    /// height, or certified blocks it served): the only heights sync and readiness believe.
    PeerHeight { peer: PeerId, height: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Broadcast(WireMessage),
    /// Send to [`RELAY_FANOUT`] peers chosen at random: a transaction this node passes on (by
    /// announcing its txid; the shell's relay serves the body to those that ask), a
    /// compact proposal (its proposer too sends it to a few, and every node that fills it in
    /// passes it on), or a periodic re-send of the current proposal and votes. Relaying to
    /// every peer made each node receive each message once per peer, most of a large
    /// network's traffic (SCALING.md).
    Relay(WireMessage),
    /// Send to every peer once storage is flushed: a vote, which promises that the locks it
    /// relies on survive a crash (persist before promise). The shell flushes once for all
    /// such messages waiting (group commit), off the consensus thread, and sends them in order.
    BroadcastDurable(WireMessage),
    SendTo(PeerId, WireMessage),
    /// Send to the node whose operator key this is (a share to its slot's aggregator).
    SendToNode(crate::types::PublicKey, WireMessage),
    /// [`Output::SendToNode`] once storage is flushed, as [`Output::BroadcastDurable`].
    SendToNodeDurable(crate::types::PublicKey, WireMessage),
    Timer {
        timer: TimerKind,
        at: Millis,
    },
    /// Build this node's proposal beside the driver ([`ProposalRequest::build`] reads only
    /// the shared ledger) and hand the result to [`ConsensusDriver::on_proposal_built`].
    BuildProposal(Box<ProposalRequest>),
    /// Check another's proposal beside the driver ([`ProposalCheck::run`] reads only the
    /// shared ledger) and hand the verdict to [`ConsensusDriver::on_proposal_checked`].
    CheckProposal(Box<ProposalCheck>),
    Event(NodeEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    SetStore(#[from] SetStoreError),
    #[error("cannot apply genesis: {0}")]
    Genesis(LedgerError),
    #[error(
        "genesis in the database ({stored}) differs from this network's ({expected}): the \
         database was made for another genesis file, or by a timed that hashed genesis \
         differently; use another datadir (a localnet: `timed localnet --reset`)"
    )]
    GenesisMismatch {
        stored: crate::types::BlockHash,
        expected: crate::types::BlockHash,
    },
    #[error("committing the decided block at height {height} failed: {source}")]
    Commit {
        height: u64,
        #[source]
        source: LedgerError,
    },
    #[error(transparent)]
    Safety(#[from] crate::consensus::safety_store::SafetyStoreError),
    #[error("the consensus driver is no longer available (an earlier call failed)")]
    Stopped,
    #[error("the consensus driver panicked: {0}")]
    Panicked(String),
}

pub type Result<T> = std::result::Result<T, DriverError>;

pub struct ConsensusDriver {
    cfg: DriverConfig,
    ledger: Arc<Ledger>,
    mempool: Mempool,
    finality: FinalityEngine,
    /// Layer 1 for large sets (`slots`): `Some` while the set has
    /// `FinalityConfig::slot_engine_voters` voters or more.
    slots: Option<crate::consensus::finality::slots::SlotEngine>,
    /// The peer that delivered each voter's latest slot share (`slots`).
    share_senders: HashMap<crate::types::PublicKey, PeerId>,
    /// Batch announcements served to peers that missed them: (slot, root, peer).
    batches_served: BTreeSet<(u64, Hash32, PeerId)>,
    bft: BftEngine,
    /// Signs the next block (the set after the tip).
    set: Arc<MasternodeSet>,
    /// Signed the tip (needed to check the certificate the next block carries).
    prev_set: Arc<MasternodeSet>,
    /// The certificate of the tip, as this node collected or received it.
    last_commit: Option<CommitCertificate>,
    /// Ids of vote batches already verified and counted: a batch sent again (regossip,
    /// finality replies) costs a hash lookup, not a signature check.
    seen_batches: SeenSet,
    /// What the door remembers per peer: points scored, verified heights.
    intake: intake::Intake,
    /// The finality rate, which bounds the backlog local submits may add to.
    admission: Admission,
    /// How long each transaction made final by the last step took from this node pooling it,
    /// in ms: taken by `publish_proofs` into the proofs it publishes.
    finalized_after: HashMap<Txid, u64>,
    /// Recent (proposal timestamp − local clock) offsets, in milliseconds.
    clock_offsets: VecDeque<i64>,
    last_clock_warning: Option<Millis>,
    /// When blocks were last asked for, to ask at most once per `SYNC_RETRY_MS`.
    last_sync_request: Option<Millis>,
    /// Compact proposals in flight: seen, waiting for transactions, served in full.
    compact: compact::CompactState,
    /// Proposals waiting for finality proofs of some of their transactions.
    awaiting_finality: BTreeMap<crate::types::BlockHash, (Arc<Block>, BTreeSet<Txid>)>,
    /// Final transactions the ledger refused for a missing parent: retried after each block
    /// and each transaction the ledger accepts as final (`MAX_AWAITING_PARENTS` at most).
    awaiting_parents: BTreeMap<Txid, Arc<Transaction>>,
    /// Tip height when `awaiting_parents` was last retried.
    parents_checked_at: Option<u64>,
    /// Transactions the ledger accepted as final since proposals waiting on them were last
    /// looked at.
    applied_final: Vec<Txid>,
    /// The height of the UTXO snapshot this node was installed from, if any: it abstains
    /// from voting on spends of outputs confirmed at or below it (see `fast_sync.rs`).
    snapshot_height: Option<u64>,
    /// The UTXO snapshot being served, taken at one height so its pages agree.
    snapshot: Option<(
        u64,
        Millis,
        Arc<Vec<crate::ledger::snapshot::SnapshotEntry>>,
    )>,
}

impl ConsensusDriver {
    /// Opens the driver on a ledger: applies the genesis if the ledger is empty, reloads the
    /// masternode set, the locks and the safety state. Returns the first outputs (timers).
    pub fn open(
        cfg: DriverConfig,
        ledger: Arc<Ledger>,
        genesis: &GenesisSpec,
        now: Millis,
    ) -> Result<(ConsensusDriver, Vec<Output>)> {
        let (genesis_block, genesis_set) = genesis.build();
        let storage = ledger.storage().clone();
        match storage.block_hash_at(0)? {
            None => {
                ledger
                    .apply_genesis(&genesis_block)
                    .map_err(DriverError::Genesis)?;
                let mut batch = WriteBatch::new();
                set_store::write(&mut batch, &genesis_set);
                storage.commit(batch)?;
                storage.flush()?;
            }
            Some(stored) if stored != genesis_block.hash() => {
                return Err(DriverError::GenesisMismatch {
                    stored,
                    expected: genesis_block.hash(),
                })
            }
            Some(_) => {}
        }
        let tip = ledger
            .tip()
            .ok_or(DriverError::Genesis(LedgerError::NoGenesis))?;
        let set = Arc::new(set_store::load_at(&storage, tip.height)?);
        let prev_set = Arc::new(set_store::load_at(&storage, tip.height.saturating_sub(1))?);
        let last_commit = storage.commit_at(tip.height)?;

        let mut locks = Vec::new();
        let mut finalized = Vec::new();
        let mut finalized_spends = Vec::new();
        for (key, _) in storage.records(TreeId::UtxoStates)? {
            if let Some(op) = OutPoint::from_key(&key) {
                match ledger.utxo(&op).map(|r| r.state) {
                    Some(UtxoState::Locked(txid)) => locks.push((op, txid)),
                    Some(UtxoState::SpentFinalized(txid)) => {
                        locks.push((op, txid));
                        finalized.push(txid);
                        finalized_spends.push((op, txid));
                    }
                    _ => {}
                }
            }
        }
        let safety = crate::consensus::safety_store::load(&storage)?;
        // Sequence numbers only need to differ from earlier batches of this key; the clock
        // gives that across restarts.
        let finality = FinalityEngine::new(
            cfg.finality.clone(),
            cfg.key.clone(),
            Arc::clone(&set),
            locks,
            finalized,
            now,
        )
        // The transition window lasts one block: open after a restart exactly when the tip
        // block changed the set (then the set that signed it is S_prev).
        .with_previous_set(Arc::clone(&prev_set));
        let mut bft = BftEngine::new(
            cfg.bft.clone(),
            cfg.key.clone(),
            Arc::clone(&set),
            tip.height + 1,
            tip.timestamp_ms,
            safety,
        );
        let admission_floor = cfg.pool.admission_floor;
        let mempool = Mempool::new(cfg.network, cfg.pool);
        let first = bft.start(now);
        let mut driver = ConsensusDriver {
            cfg,
            ledger,
            mempool,
            finality,
            slots: None,
            share_senders: HashMap::new(),
            batches_served: Default::default(),
            bft,
            set,
            prev_set,
            last_commit,
            last_sync_request: None,
            seen_batches: SeenSet::new(SEEN_BATCHES),
            intake: intake::Intake::default(),
            admission: Admission::with_floor(admission_floor),
            finalized_after: HashMap::new(),
            clock_offsets: VecDeque::new(),
            last_clock_warning: None,
            compact: Default::default(),
            awaiting_finality: BTreeMap::new(),
            awaiting_parents: BTreeMap::new(),
            parents_checked_at: None,
            applied_final: Vec::new(),
            snapshot: None,
            snapshot_height: fast_sync::installed_snapshot_height(&storage)?,
        };
        let mut out = vec![Output::Timer {
            timer: TimerKind::Regossip,
            at: now + REGOSSIP_MS,
        }];
        let mut not_ours = driver.abstained_finals(&finalized_spends);
        // Bodies of what this node had locked before it stopped: back into the pool below, so
        // they are gossiped again.
        let reading = |e| match e {
            LedgerError::Storage(s) => DriverError::Storage(s),
            other => DriverError::Genesis(other),
        };
        let pending = driver.ledger.pending_locked().map_err(reading)?;
        // Final but unconfirmed transactions go back to the engine with their bodies, so this
        // node votes for them again (peers that missed its vote may need it to finalize, and
        // the block carrying them waits for that), except where it had locked a rival: its
        // lock record still holds that rival, and voting for both is an equivocation.
        let rival_claims: BTreeSet<OutPoint> = pending
            .iter()
            .flat_map(|tx| tx.claimed_outpoints())
            .collect();
        let final_txids: BTreeSet<Txid> = finalized_spends.iter().map(|(_, t)| *t).collect();
        for txid in final_txids {
            let Some(tx) = driver.ledger.final_tx(&txid) else {
                continue;
            };
            if tx.claimed_outpoints().any(|op| rival_claims.contains(&op)) {
                not_ours.insert(txid);
            }
            driver.finality.restore_final(tx);
        }
        // Before the engine resumes: under the slot engine it must not vote again.
        driver.choose_layer1()?;
        let resumed = driver.finality.resume_except(&not_ours);
        driver.run_finality_effects(resumed, now, &mut out)?;
        for tx in pending {
            driver
                .accept_transaction(Arc::new(tx), None, now, &mut out)?
                .ok();
        }
        driver.run_bft_effects(first, now, &mut out)?;
        Ok((driver, out))
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The masternode operator key this node votes with, if any.
    pub fn network(&self) -> Network {
        self.cfg.network
    }

    pub fn operator_key(&self) -> Option<crate::types::PublicKey> {
        self.cfg.key.as_ref().map(SecretKey::public_key)
    }

    pub fn set(&self) -> &Arc<MasternodeSet> {
        &self.set
    }

    pub fn finality(&self) -> &FinalityEngine {
        &self.finality
    }

    pub fn bft(&self) -> &BftEngine {
        &self.bft
    }

    /// A message from peer `from`.
    pub fn on_message(
        &mut self,
        from: PeerId,
        msg: WireMessage,
        now: Millis,
    ) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        if self.ignores(from) {
            return Ok(out);
        }
        match msg {
            WireMessage::Transaction(tx) => {
                self.relay_peer_transaction(from, tx, None, now, &mut out)?
            }
            WireMessage::VoteBatch(batch) => self.accept_batch(from, batch, now, &mut out)?,
            WireMessage::Proposal(p) => {
                let network = self.cfg.network;
                if self.admit_proposal(
                    from,
                    (p.height, p.round, p.proposer),
                    || p.verify(network),
                    &mut out,
                ) && self.proposal_well_formed(from, &p, &mut out)
                {
                    self.take_proposal(p, now, &mut out)?;
                }
            }
            WireMessage::CompactProposal(p) => self.on_compact_proposal(from, p, now, &mut out)?,
            WireMessage::GetProposal { height, round } => {
                self.serve_proposal(from, (height, round), &mut out)
            }
            WireMessage::Vote(v) => {
                if self.admit_vote(from, &v, &mut out) {
                    self.run_bft(BftInput::Vote(v), now, &mut out)?;
                }
            }
            WireMessage::GetFinality(txid) => self.serve_finality(from, txid, &mut out)?,
            WireMessage::Finality { tx, batches } => {
                if batches.len() > MAX_FINALITY_BATCHES {
                    self.dropped(Dropped::OverCap);
                    let reason = format!("finality reply with {} vote batches", batches.len());
                    self.fault(from, intake::OVER_CAP_POINTS, reason, &mut out);
                    return Ok(out);
                }
                self.accept_peer_transaction(from, Arc::clone(&tx), None, now, &mut out)?
                    .ok();
                let txid = tx.txid();
                for b in batches {
                    if b.txids.contains(&txid) {
                        self.accept_proof_batch(from, b, now, &mut out)?;
                    } else {
                        self.dropped(Dropped::Irrelevant);
                    }
                }
            }
            WireMessage::GetBlocks { from_height } => {
                self.serve_blocks(from, from_height, &mut out)
            }
            WireMessage::Blocks(blocks) => {
                if blocks.len() > MAX_SYNC_BLOCKS as usize {
                    self.dropped(Dropped::OverCap);
                    let reason = format!("sync reply of {} blocks", blocks.len());
                    self.fault(from, intake::OVER_CAP_POINTS, reason, &mut out);
                    return Ok(out);
                }
                let before = self.ledger.height();
                self.apply_synced_blocks(from, blocks, now, &mut out)?;
                // Certified blocks it served and this node applied: the peer has them.
                if let Some(after) = self.ledger.height().filter(|h| Some(*h) > before) {
                    self.note_height(from, after, &mut out);
                }
            }
            WireMessage::GetHeaders { from_height } => {
                self.serve_headers(from, from_height, &mut out)
            }
            WireMessage::GetSnapshot { height, page } => {
                self.serve_snapshot(from, height, page, now, &mut out)
            }
            WireMessage::Evidence(ev) => self.accept_evidence(from, ev, &mut out)?,
            // Replies for a fast sync in progress; the network hands them to it, not here.
            WireMessage::Headers(_) | WireMessage::Snapshot(_) => {}
            // The transactions' relay is the network's (`network::tx_relay`).
            WireMessage::TxInv(_) | WireMessage::GetTxs(_) => {}
            msg @ (WireMessage::SlotAnnouncement(_)
            | WireMessage::SlotShare(_)
            | WireMessage::LockReport(_)
            | WireMessage::SlotCertificate(_)) => self.on_slot_message(from, msg, now, &mut out)?,
            WireMessage::GetSlotBatch { slot, root } => {
                self.serve_slot_batch(from, (slot, root), now, &mut out)
            }
            WireMessage::SlotFinality { tx, proof } => {
                self.accept_peer_transaction(from, Arc::clone(&tx), None, now, &mut out)?
                    .ok();
                self.on_slot_message(from, WireMessage::SlotFinality { tx, proof }, now, &mut out)?
            }
        }
        Ok(out)
    }

    /// Verifies a vote batch once (after the door's cheaper checks) and hands it to the
    /// finality engine; repeats are dropped.
    fn accept_batch(
        &mut self,
        from: PeerId,
        batch: Arc<VoteBatch>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if !self.admit_batch(from, &batch, out) {
            return Ok(());
        }
        self.run_finality(FinalityInput::VoteBatch(batch), now, out)
    }

    /// A batch of a finality proof this node asked for. One already verified is counted
    /// again rather than dropped as a repeat: the engine may have let its votes expire (a
    /// txid with no body for `UNKNOWN_TTL_REGOSSIPS`), and this proof is how they come back.
    /// Counting a vote twice is a no-op in the tally.
    fn accept_proof_batch(
        &mut self,
        from: PeerId,
        batch: Arc<VoteBatch>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if batch.txids.len() <= crate::types::vote::MAX_BATCH_TXIDS
            && self.seen_batches.contains(&batch.id())
        {
            return self.run_finality(FinalityInput::VoteBatch(batch), now, out);
        }
        self.accept_batch(from, batch, now, out)
    }

    /// Tracks how far proposers' clocks are from ours and warns when the median of recent
    /// proposals is off by more than `CLOCK_WARN_MS`: a node whose clock is wrong prevotes nil
    /// on good proposals (or proposes blocks others refuse).
    fn observe_clock(&mut self, timestamp_ms: Millis, now: Millis) {
        // A proposer chooses its timestamp: any u64. Saturating, so no value can overflow.
        let signed = |ms: Millis| i64::try_from(ms).unwrap_or(i64::MAX);
        let offset = signed(timestamp_ms).saturating_sub(signed(now));
        if self.clock_offsets.len() == CLOCK_SAMPLES {
            self.clock_offsets.pop_front();
        }
        self.clock_offsets.push_back(offset);
        let Some(median) = self.proposal_clock_offset() else {
            return;
        };
        let due = self
            .last_clock_warning
            .is_none_or(|last| now >= last.saturating_add(CLOCK_WARN_EVERY_MS));
        if median.unsigned_abs() > CLOCK_WARN_MS as u64 && due {
            self.last_clock_warning = Some(now);
            tracing::warn!(
                median_offset_ms = median,
                "this node's clock disagrees with its peers' proposals; check NTP (timedatectl)"
            );
        }
    }

    /// The median of recent proposals' (timestamp − our clock), once there are enough of
    /// them to outvote a minority of wrong clocks.
    fn proposal_clock_offset(&self) -> Option<i64> {
        if self.clock_offsets.len() < CLOCK_SAMPLES / 2 {
            return None;
        }
        let mut sorted: Vec<i64> = self.clock_offsets.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[sorted.len() / 2])
    }

    /// The timestamp for our own proposal: our clock, pulled back by how far it runs ahead of
    /// the other proposers' (the median offset, once beyond `CLOCK_WARN_MS`). Validators
    /// refuse a proposal dated more than the drift limit ahead of them, so a node whose clock
    /// is fast would lose every turn as proposer; dating it earlier never breaks a rule (the
    /// block builder still keeps it above the parent's), and a minority of proposers cannot
    /// move the median.
    fn proposal_time(&self, now: Millis) -> Millis {
        match self.proposal_clock_offset() {
            Some(median) if median < -CLOCK_WARN_MS => now.saturating_sub(median.unsigned_abs()),
            _ => now,
        }
    }

    /// A timer set by an earlier [`Output::Timer`] fired.
    pub fn on_timer(&mut self, timer: TimerKind, now: Millis) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        match timer {
            TimerKind::VoteBatch => self.run_finality(FinalityInput::BatchTimer, now, &mut out)?,
            TimerKind::Slot => self.run_slots(SlotInput::Tick, None, now, &mut out)?,
            TimerKind::Regossip => {
                self.run_finality(FinalityInput::Regossip, now, &mut out)?;
                out.push(Output::Timer {
                    timer: TimerKind::Regossip,
                    at: now + REGOSSIP_MS,
                });
            }
            TimerKind::Bft(t) => self.run_bft(BftInput::Timeout(t), now, &mut out)?,
        }
        Ok(out)
    }

    fn serve_finality(&mut self, from: PeerId, txid: Txid, out: &mut Vec<Output>) -> Result<()> {
        let tx = match self.mempool.get(&txid) {
            Some(e) => Some(Arc::clone(&e.tx)),
            None => self.ledger.final_tx(&txid),
        };
        if let Some(tx) = tx {
            if let Some(proof) = self.slots.as_ref().and_then(|s| s.proof(&txid)) {
                out.push(Output::SendTo(
                    from,
                    WireMessage::SlotFinality { tx, proof },
                ));
                return Ok(());
            }
            let batches = self
                .finality
                .certificate(&txid)
                .map(|c| c.batches)
                .unwrap_or_default();
            out.push(Output::SendTo(from, WireMessage::Finality { tx, batches }));
        }
        Ok(())
    }

    // ---- running the engines ----------------------------------------------------------
}
