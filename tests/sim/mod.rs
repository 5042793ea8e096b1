//! A seeded, virtual-time network of real consensus drivers.
//!
//! Every node runs the real `ConsensusDriver` (both engines, the real ledger and pool on a
//! real sled database in a temporary directory); only the network and the clock are
//! simulated. One ChaCha RNG seeded from the scenario's seed decides everything random, so a
//! seed replays exactly.

#![allow(dead_code)]

mod byzantine;
mod checks;
mod clients;
mod delivery;
mod events;
mod scenarios;
mod tx_relay;
pub mod wan;

pub use scenarios::{NodeSpec, Scenario};

use byzantine::corrupt;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use timed::consensus::bft::BftConfig;
use timed::consensus::certificate::verify_commit;
use timed::consensus::driver::{
    ConsensusDriver, DriverConfig, DriverError, NodeEvent, Output, TimerKind, WireMessage,
    RELAY_FANOUT,
};
use timed::consensus::evidence_store;
use timed::consensus::finality::{FinalityConfig, Millis};
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::consensus::set_store;
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::network::tx_relay::TxRelay;
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Block, BlockHash, Canonical, CompactProposal, ConsensusVote, Hash32, KeyHash, Network,
    OutPoint, PublicKey, SecretKey, Signature, Tier, Transaction, TxOutput, Txid, VoteBatch,
};

pub const NETWORK: Network = Network::Localnet;
pub const EPOCH: Millis = 1_700_000_000_000;

/// How a faulty node misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// Sends different votes and proposals to different halves of the network.
    Equivocate,
    /// Votes at layer 1 for every transaction it sees, conflicting or not.
    VoteConflicts,
    /// Corrupts the signatures of half of what it sends.
    BadSignatures,
    /// Behaves honestly, but shares its key with another node: together they equivocate.
    Twin,
    /// Proposes blocks whose transactions carry garbage signatures, half the time with a
    /// witness root that matches them (and a proposal signed over it), half the time with the
    /// honest block's (stale) root.
    SwapSignaturesProposer,
    /// Relays what it receives (proposals, synced blocks) with the transactions' signatures
    /// swapped for garbage, racing the genuine copies.
    SwapSignaturesRelay,
    /// Behaves honestly, and for every transaction it receives also floods validly signed
    /// vote batches naming [`JUNK_PER_TX`] random txids no one has (a member's junk flood).
    JunkVotes,
}

/// Junk txids a `JunkVotes` node names per transaction it receives.
pub const JUNK_PER_TX: usize = 200;

/// Virtual milliseconds before a measurement's window: the wallets' coins become final.
pub const WARM_UP: Millis = 2_000;

/// How long a measurement's wallet waits before it submits a refused transaction again.
pub const RETRY_MS: Millis = 100;

/// Coins a measurement's wallets split each genesis output into.
pub const SPLIT: usize = 500;

/// What went wrong, with enough to debug it.
#[derive(Debug)]
pub enum Violation {
    ConflictingFinality {
        outpoint: OutPoint,
        a: Txid,
        b: Txid,
    },
    /// An honest node signed two conflicting votes (at either layer): `by` reported it.
    HonestEquivocation {
        voter: timed::types::PublicKey,
        by: usize,
    },
    ConflictingBlocks {
        height: u64,
        a: BlockHash,
        b: BlockHash,
        node: usize,
    },
    BadCertificate {
        node: usize,
        height: u64,
        reason: String,
    },
    CommitmentDisagrees {
        height: u64,
    },
    /// An honest node stored a body whose signatures do not verify, or a body that differs
    /// from another honest node's at the same height.
    BadBody {
        node: usize,
        height: u64,
        reason: String,
    },
    /// An honest node's stored chain does not replay from genesis on a fresh ledger.
    ReplayFailed {
        node: usize,
        height: u64,
        reason: String,
    },
    Liveness(String),
    NodeFailed {
        node: usize,
        error: String,
    },
}

/// What a run produced, for determinism checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub digest: Hash32,
    pub heights: Vec<u64>,
    pub finalized: usize,
    pub events: usize,
    /// Every node's operator key, by index.
    pub keys: Vec<PublicKey>,
    /// Per honest node (running at the end): offenders it holds evidence against.
    pub evidence_against: Vec<BTreeSet<PublicKey>>,
    /// Per honest node (running at the end): the voters of its current masternode set.
    pub voters: Vec<BTreeSet<PublicKey>>,
    /// Blocks Byzantine nodes sent with swapped signatures.
    pub altered: usize,
    /// `GetSlotBatch` requests made (a node that missed an announcement asked for it), and
    /// the answers that reached a node deaf to announcements.
    pub batch_requests: usize,
    pub batch_answers: usize,
    /// Per node, the submitted transfers it made final at layer 1 (not through a block).
    pub layer1_finals: Vec<usize>,
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        msg: WireMessage,
    },
    Timer {
        node: usize,
        generation: u64,
        timer: TimerKind,
    },
    Submit {
        node: usize,
        tx: Arc<Transaction>,
        expect_final: bool,
    },
    /// A node's transaction relay flushes its announcements and passes late asks on.
    RelayTick {
        node: usize,
        generation: u64,
    },
    Crash(usize),
    Restart(usize),
    /// A busy node's CPU is free: it takes the next event waiting in its inbox (`wan`).
    Wake(usize),
}

impl Event {
    /// The node whose driver handles the event (whose CPU it takes, in a measurement).
    fn node(&self) -> Option<usize> {
        match self {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. }
            | Event::Submit { node, .. }
            | Event::RelayTick { node, .. } => Some(*node),
            Event::Crash(_) | Event::Restart(_) | Event::Wake(_) => None,
        }
    }

    /// What a measurement files the event's CPU and wait under.
    fn kind(&self) -> &'static str {
        match self {
            Event::Deliver { msg, .. } => wan::kind_of(msg),
            Event::Timer { timer, .. } => match timer {
                TimerKind::VoteBatch => "timer: vote batch",
                TimerKind::Slot => "timer: slot",
                TimerKind::Regossip => "timer: regossip",
                TimerKind::Bft(_) => "timer: bft",
            },
            Event::Submit { .. } => "submit",
            Event::RelayTick { .. } => "timer: tx relay",
            Event::Crash(_) | Event::Restart(_) | Event::Wake(_) => "other",
        }
    }
}

struct SimNode {
    key: SecretKey,
    spec: NodeSpec,
    driver: Option<ConsensusDriver>,
    /// The driver's database, journaling what no barrier covered yet: a crash loses it.
    storage: Option<Storage>,
    generation: u64,
    finals: BTreeSet<Txid>,
    /// The node's transaction relay (`tx_relay.rs`), and whether its tick is queued.
    relay: TxRelay,
    relay_tick: bool,
    /// Last, so it is dropped last: sled flushes when the database closes, which must come
    /// before its directory is removed.
    dir: tempfile::TempDir,
}

pub struct Sim {
    sc: Scenario,
    rng: ChaCha8Rng,
    now: Millis,
    seq: u64,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<SimNode>,
    genesis: GenesisSpec,
    /// Every transaction ever submitted, by txid (to look up inputs of finals).
    txs: HashMap<Txid, Arc<Transaction>>,
    expected_final: BTreeSet<Txid>,
    final_spends: HashMap<OutPoint, Txid>,
    committed: BTreeMap<u64, BlockHash>,
    hasher: blake3::Hasher,
    event_count: usize,
    client_keys: Vec<SecretKey>,
    /// Client submissions not yet made: liveness is only judged once all are in.
    pending_submits: usize,
    /// What a signature-swapping relay has passed on, as (relay node, is a proposal, height,
    /// round): each once, so relays do not bounce (and, resealing, multiply) copies between
    /// them forever. Keyed by what an altered copy cannot change.
    relayed: BTreeSet<(usize, bool, u64, u32)>,
    /// Blocks sent with at least one signature swapped (the attack was really tried).
    altered: usize,
    /// Batch announcements asked for and not yet answered, as (asked, asking, slot, root),
    /// and how many requests were made.
    batch_asks: BTreeSet<(usize, usize, u64, Hash32)>,
    batch_requests: usize,
    batch_answers: usize,
    wan: Option<wan::WanState>,
    /// Per node, events that reached it while its CPU was busy, in arrival order (`wan`).
    /// With the time each event reached the node.
    inbox: Vec<std::collections::VecDeque<(Millis, Event)>>,
    /// Per node, whether a `Wake` is queued.
    waking: Vec<bool>,
}

fn sim_dir() -> tempfile::TempDir {
    // A measurement's own process keeps its databases under the directory its parent gave
    // it, which the parent removes even if it had to kill the process (`tests/scaling.rs`).
    if let Some(base) = std::env::var_os("TIMED_SIM_TMP") {
        if let Ok(d) = tempfile::tempdir_in(base) {
            return d;
        }
    }
    // tmpfs makes the flushes the drivers do on every lock and vote nearly free.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

impl Sim {
    pub fn new(sc: Scenario) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let mut keys: Vec<SecretKey> = Vec::new();
        for (i, spec) in sc.nodes.iter().enumerate() {
            let key = match spec.twin_of {
                Some(j) if j < i => keys[j].clone(),
                _ => SecretKey::from_rng(&mut rng),
            };
            keys.push(key);
        }
        let client_keys: Vec<SecretKey> = (0..8).map(|_| SecretKey::from_rng(&mut rng)).collect();
        let mut seen = BTreeSet::new();
        let joiners: BTreeSet<usize> = sc.joins.iter().map(|(i, _)| *i).collect();
        let masternodes = sc
            .nodes
            .iter()
            .zip(&keys)
            .enumerate()
            .filter(|(i, (_, k))| !joiners.contains(i) && seen.insert(k.public_key()))
            .map(|(i, (spec, k))| {
                GenesisMasternode::new(
                    spec.tier,
                    k,
                    k.public_key().key_hash(),
                    format!("127.0.0.1:{}", 30000 + i),
                )
            })
            .collect();
        let mut allocations: Vec<(KeyHash, Amount)> = (0..sc.genesis_outputs)
            .map(|i| {
                (
                    client_keys[i % client_keys.len()].public_key().key_hash(),
                    Amount(100 * timed::types::ATOMS_PER_TIME),
                )
            })
            .collect();
        // Each joiner's collateral, then its fee money (see `registration`).
        for (i, _) in &sc.joins {
            let owner = keys[*i].public_key().key_hash();
            allocations.push((owner, sc.nodes[*i].tier.collateral()));
            allocations.push((owner, Amount(10 * timed::types::ATOMS_PER_TIME)));
        }
        let genesis = GenesisSpec {
            timestamp_ms: EPOCH,
            rules: Default::default(),
            allocations,
            masternodes,
        };
        let nodes = sc
            .nodes
            .iter()
            .zip(keys)
            .map(|(spec, key)| SimNode {
                key,
                spec: spec.clone(),
                dir: sim_dir(),
                driver: None,
                storage: None,
                generation: 0,
                finals: BTreeSet::new(),
                relay: TxRelay::new(),
                relay_tick: false,
            })
            .collect();
        let n = sc.nodes.len();
        let honest = sc.nodes.iter().filter(|s| s.byzantine.is_none()).count();
        let wan = (sc.wan.clone()).map(|m| wan::WanState::new(m, sc.nodes.len(), honest, &mut rng));
        Sim {
            sc,
            rng,
            now: EPOCH,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            genesis,
            txs: HashMap::new(),
            expected_final: BTreeSet::new(),
            final_spends: HashMap::new(),
            committed: BTreeMap::new(),
            hasher: blake3::Hasher::new(),
            event_count: 0,
            client_keys,
            pending_submits: 0,
            relayed: BTreeSet::new(),
            altered: 0,
            batch_asks: BTreeSet::new(),
            batch_requests: 0,
            batch_answers: 0,
            wan,
            inbox: (0..n).map(|_| Default::default()).collect(),
            waking: vec![false; n],
        }
    }

    fn push(&mut self, at: Millis, event: Event) {
        if matches!(event, Event::Submit { .. }) {
            self.pending_submits += 1;
        }
        self.defer(at, event);
    }

    /// Queues an event already counted (one a busy node takes later).
    fn defer(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn config(&self, key: &SecretKey) -> DriverConfig {
        let mut bft = BftConfig::new(NETWORK, self.sc.block_interval);
        // Fault scenarios time out sooner than a node does, to pass through more rounds in a
        // run; a measurement keeps the node's own timeouts.
        if self.sc.wan.is_none() {
            bft.timeout_propose_ms = 600;
            bft.timeout_prevote_ms = 300;
            bft.timeout_precommit_ms = 300;
            bft.timeout_delta_ms = 300;
            bft.rebroadcast_ms = 400;
        }
        let mut finality = FinalityConfig::new(NETWORK);
        finality.slot_engine_voters = self.sc.slot_engine_voters;
        finality.announce_fanout = self.sc.announce_fanout;
        DriverConfig {
            network: NETWORK,
            key: Some(key.clone()),
            finality,
            bft,
            pool: PoolLimits {
                admission_floor: self.sc.admission_floor,
                ..PoolLimits::default()
            },
            max_block_txs: self.sc.max_block_txs,
        }
    }

    fn start_node(&mut self, i: usize) -> Result<(), Violation> {
        let storage = Storage::open_simulating_power_loss(
            &self.nodes[i].dir.path().join("db"),
            self.sc.db_cache_bytes,
        )
        .map_err(|e| Violation::NodeFailed {
            node: i,
            error: e.to_string(),
        })?;
        self.nodes[i].storage = Some(storage.clone());
        let params = Self::ledger_params();
        let ledger =
            Arc::new(
                Ledger::open(storage, params).map_err(|e| Violation::NodeFailed {
                    node: i,
                    error: e.to_string(),
                })?,
            );
        let cfg = self.config(&self.nodes[i].key);
        let (driver, out) =
            ConsensusDriver::open(cfg, ledger, &self.genesis, self.now).map_err(|e| {
                Violation::NodeFailed {
                    node: i,
                    error: e.to_string(),
                }
            })?;
        self.nodes[i].driver = Some(driver);
        self.nodes[i].generation += 1;
        self.handle_outputs(i, out)
    }

    /// Whether `key` belongs to an honest node (a twin shares its original's key, which then
    /// counts as faulty).
    fn is_honest_key(&self, key: &timed::types::PublicKey) -> bool {
        let mut owners = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.key.public_key() == *key);
        owners.clone().next().is_some() && owners.all(|(i, _)| self.honest(i))
    }

    fn honest(&self, i: usize) -> bool {
        self.nodes[i].spec.byzantine.is_none()
    }

    fn faults_active(&self) -> bool {
        self.now < EPOCH + self.sc.heal_at
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        match &self.sc.partition {
            Some((group, start, end)) => {
                let t = self.now - EPOCH;
                t >= *start && t < *end && (group.contains(&a) != group.contains(&b))
            }
            None => false,
        }
    }

    /// The node's flusher: the locks a durable message promises are made durable before it
    /// leaves (unless the scenario removes the barrier to show what that breaks).
    fn flush_before_promise(&mut self, i: usize) -> Result<(), Violation> {
        if self.sc.vote_barrier {
            if let Some(storage) = &self.nodes[i].storage {
                storage.flush().map_err(|e| Violation::NodeFailed {
                    node: i,
                    error: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    fn handle_outputs(&mut self, i: usize, outputs: Vec<Output>) -> Result<(), Violation> {
        for o in outputs {
            if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
                if let Output::Broadcast(WireMessage::GetFinality(t)) = &o {
                    eprintln!(
                        "t={} node {i} asks finality of {}",
                        self.now - EPOCH,
                        &t.to_hex()[..8]
                    );
                }
                if let Output::SendTo(p, WireMessage::Finality { tx, batches }) = &o {
                    eprintln!(
                        "t={} node {i} answers {p} finality of {} with {} batches",
                        self.now - EPOCH,
                        &tx.txid().to_hex()[..8],
                        batches.len()
                    );
                }
                if let Output::BroadcastDurable(WireMessage::VoteBatch(b)) = &o {
                    eprintln!(
                        "t={} node {i} broadcasts batch seq {} set {} with {:?}",
                        self.now - EPOCH,
                        b.sequence,
                        b.set_height,
                        b.txids
                            .iter()
                            .map(|t| t.to_hex()[..8].to_string())
                            .collect::<Vec<_>>()
                    );
                }
            }
            match o {
                Output::Broadcast(WireMessage::Transaction(tx)) => self.relay_took(i, tx, true),
                Output::Relay(WireMessage::Transaction(tx)) => self.relay_took(i, tx, false),
                Output::Broadcast(msg) => self.emit(i, None, msg),
                Output::Relay(msg) => self.send_to_few(i, msg),
                Output::BroadcastDurable(msg) => {
                    self.flush_before_promise(i)?;
                    self.emit(i, None, msg)
                }
                Output::SendTo(peer, msg) => self.emit(i, Some(peer as usize), msg),
                Output::SendToNode(key, msg) => {
                    if let Some(to) = self.nodes.iter().position(|n| n.key.public_key() == key) {
                        self.emit(i, Some(to), msg);
                    }
                }
                Output::SendToNodeDurable(key, msg) => {
                    self.flush_before_promise(i)?;
                    if let Some(to) = self.nodes.iter().position(|n| n.key.public_key() == key) {
                        self.emit(i, Some(to), msg);
                    }
                }
                Output::Timer { timer, at } => {
                    let generation = self.nodes[i].generation;
                    self.push(
                        at.max(self.now),
                        Event::Timer {
                            node: i,
                            generation,
                            timer,
                        },
                    );
                }
                Output::BuildProposal(request) => self.beside(i, "build proposal", |d, now| {
                    let built = request.build(d.ledger());
                    d.on_proposal_built(built, now)
                })?,
                Output::CheckProposal(check) => self.beside(i, "check proposal", |d, now| {
                    let checked = check.run(d.ledger());
                    d.on_proposal_checked(checked, now)
                })?,
                Output::Event(e) => self.on_node_event(i, e)?,
            }
        }
        Ok(())
    }

    /// Sends what node `i` relays to `RELAY_FANOUT` other nodes at random.
    pub(super) fn send_to_few(&mut self, i: usize, msg: WireMessage) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|j| *j != i).collect();
        let chosen: Vec<usize> = others
            .choose_multiple(&mut self.rng, RELAY_FANOUT)
            .copied()
            .collect();
        for to in chosen {
            self.emit(i, Some(to), msg.clone());
        }
    }

    /// Block work a node runs beside its owner (building its proposal, checking another's),
    /// run inline: the same code in the same step, so a run stays one order of events.
    fn beside(
        &mut self,
        i: usize,
        kind: &'static str,
        job: impl FnOnce(&mut ConsensusDriver, Millis) -> Result<Vec<Output>, DriverError>,
    ) -> Result<(), Violation> {
        let now = self.now;
        let Some(driver) = self.nodes[i].driver.as_mut() else {
            return Ok(());
        };
        let started = wan::thread_cpu();
        let out = job(driver, now);
        self.charge(i, kind, started);
        let out = out.map_err(|e| Violation::NodeFailed {
            node: i,
            error: e.to_string(),
        })?;
        self.handle_outputs(i, out)
    }

    fn on_node_event(&mut self, i: usize, e: NodeEvent) -> Result<(), Violation> {
        self.event_count += 1;
        self.hasher
            .update(format!("{i}:{e:?}@{}", self.now - EPOCH).as_bytes());
        if !self.honest(i) {
            return Ok(());
        }
        if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
            match &e {
                NodeEvent::TxFinalized(t, _) => {
                    eprintln!("t={} node {i} FINAL {}", self.now - EPOCH, &t.to_hex()[..8])
                }
                NodeEvent::BlockCommitted { height, .. } => {
                    eprintln!("t={} node {i} COMMIT {height}", self.now - EPOCH)
                }
                _ => {}
            }
        }
        if let (Some(w), NodeEvent::BlockCommitted { height, .. }) = (&mut self.wan, &e) {
            w.committed(*height, self.now);
        }
        match e {
            NodeEvent::TxFinalized(txid, _) => {
                self.nodes[i].finals.insert(txid);
                if let Some(w) = &mut self.wan {
                    w.finalized(i, txid, self.now);
                }
                let tx = match self.txs.get(&txid) {
                    Some(tx) => Arc::clone(tx),
                    None => return Ok(()),
                };
                for input in &tx.inputs {
                    match self.final_spends.get(&input.prev_out) {
                        Some(other) if *other != txid => {
                            return Err(Violation::ConflictingFinality {
                                outpoint: input.prev_out,
                                a: *other,
                                b: txid,
                            })
                        }
                        _ => {
                            self.final_spends.insert(input.prev_out, txid);
                        }
                    }
                }
            }
            NodeEvent::BlockCommitted { height, hash, .. } => match self.committed.get(&height) {
                Some(other) if *other != hash => {
                    return Err(Violation::ConflictingBlocks {
                        height,
                        a: *other,
                        b: hash,
                        node: i,
                    })
                }
                _ => {
                    self.committed.insert(height, hash);
                }
            },
            NodeEvent::VoteEquivocation { voter, .. }
            | NodeEvent::Equivocation {
                validator: voter, ..
            } if self.is_honest_key(&voter) => {
                return Err(Violation::HonestEquivocation { voter, by: i });
            }
            NodeEvent::DoubleSpend { .. }
            | NodeEvent::VoteEquivocation { .. }
            | NodeEvent::Equivocation { .. }
            | NodeEvent::PeerFault { .. }
            | NodeEvent::PeerMisbehaved { .. }
            | NodeEvent::PeerHeight { .. } => {}
            // Only the consensus service merges finals; the driver reports each alone.
            NodeEvent::TxsFinalized(txs) => {
                for (txid, tx) in txs.iter() {
                    self.on_node_event(i, NodeEvent::TxFinalized(*txid, Arc::clone(tx)))?;
                }
            }
        }
        Ok(())
    }

    /// Runs the scenario; checks safety after every event and liveness at the end.
    pub fn run(self) -> Result<Report, Violation> {
        self.run_to(None)
    }

    /// Runs until every honest node has committed `height` (or liveness fails).
    pub fn run_until_height(self, height: u64) -> Result<Report, Violation> {
        self.run_to(Some(height))
    }

    fn run_to(mut self, stop_height: Option<u64>) -> Result<Report, Violation> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        self.schedule_clients();
        if let Some((node, at, back)) = self.sc.crash {
            self.push(EPOCH + at, Event::Crash(node));
            self.push(EPOCH + back, Event::Restart(node));
        }
        let heal = EPOCH + self.sc.heal_at;
        let deadline = heal + self.sc.liveness_deadline;
        let mut heights_at_heal: Option<Vec<u64>> = None;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > deadline {
                break;
            }
            self.now = at;
            if heights_at_heal.is_none() && self.now >= heal {
                heights_at_heal = Some(self.heights());
            }
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.step(event)?;
            if let Some(base) = &heights_at_heal {
                let reached = stop_height.is_none_or(|h| self.heights().iter().all(|x| *x >= h));
                if reached && self.live(base) {
                    return self.finish();
                }
            }
        }
        let base = heights_at_heal.unwrap_or_else(|| self.heights());
        if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
            for (i, n) in self.nodes.iter().enumerate() {
                let Some(d) = &n.driver else { continue };
                eprintln!("node {i}: {}", d.bft().describe());
                eprintln!("node {i}: driver set weight {} total {}, finality set weight {} total {} height {}", d.set().weight_of(&n.key.public_key()), d.set().total_weight(), d.finality().set().weight_of(&n.key.public_key()), d.finality().set().total_weight(), d.finality().set().height());
                for t in self
                    .expected_final
                    .iter()
                    .filter(|t| !self.final_everywhere(t))
                {
                    let fin = d.finality().is_final(t);
                    let w = d.finality().weight_for(t);
                    let pooled = d.mempool().contains(t);
                    let fl = d.ledger().final_tx(t).is_some();
                    let vs = d.finality().vote_state(t);
                    let state = d
                        .ledger()
                        .utxo(&self.txs[t].inputs[0].prev_out)
                        .map(|r| r.state);
                    eprintln!("node {i} tx {} final={fin} weight={w} pooled={pooled} ledger_final={fl} quorum={} vote_state={vs:?} input={state:?}", &t.to_hex()[..8], d.set().quorum_weight());
                }
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.driver {
                Some(d) => format!(
                    "h{} r{} {:?} pool {} finals {}",
                    d.bft().height(),
                    d.bft().round(),
                    d.bft().step_name(),
                    d.mempool().len(),
                    n.finals.len()
                ),
                None => "down".into(),
            })
            .collect();
        Err(Violation::Liveness(format!(
            "by {} ms after healing: nodes {states:?}; heights {:?} (at heal {:?}), {} of {} expected transactions final on every honest node",
            self.sc.liveness_deadline,
            self.heights(),
            base,
            self.expected_final.iter().filter(|t| self.final_everywhere(t)).count(),
            self.expected_final.len()
        )))
    }

    /// Runs a measurement (`Scenario::wan` set): the load, then until every transaction is
    /// final on every honest node or `drain` milliseconds past the window. Safety is checked
    /// after every event as in any run; liveness is reported in the figures, not judged.
    pub fn measure(mut self, drain: Millis) -> Result<wan::Figures, Violation> {
        let Some(window) = self.wan.as_ref().map(|w| w.model.window) else {
            return Err(Violation::Liveness(
                "a measurement needs Scenario::wan".into(),
            ));
        };
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        self.schedule_clients();
        let end = EPOCH + window.1 + drain;
        let expected = self.sc.transfers;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.step(event)?;
            let done = self.pending_submits == 0
                && self
                    .wan
                    .as_ref()
                    .is_some_and(|w| w.final_everywhere >= expected);
            if done && at >= EPOCH + window.1 {
                break;
            }
        }
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|i| self.honest(*i)).collect();
        let offered = expected as f64 * 1_000.0 / (window.1 - window.0) as f64;
        self.wan
            .as_ref()
            .map(|w| w.figures(&honest, offered, self.now))
            .ok_or_else(|| Violation::Liveness("no meters".into()))
    }
}
