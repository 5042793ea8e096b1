//! A seeded, virtual-time network of real consensus drivers.
//!
//! Every node runs the real `ConsensusDriver` (both engines, the real ledger and pool on a
//! real sled database in a temporary directory); only the network and the clock are
//! simulated. One ChaCha RNG seeded from the scenario's seed decides everything random, so a
//! seed replays exactly.

#![allow(dead_code)]

mod byzantine;
mod clients;
pub mod wan;

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
    ConsensusDriver, DriverConfig, NodeEvent, Output, TimerKind, WireMessage, RELAY_FANOUT,
};
use timed::consensus::evidence_store;
use timed::consensus::finality::{FinalityConfig, Millis};
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::consensus::set_store;
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Block, BlockHash, Canonical, ConsensusVote, Hash32, KeyHash, Network, OutPoint,
    PublicKey, SecretKey, Signature, Tier, Transaction, TxOutput, Txid, VoteBatch,
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

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub tier: Tier,
    pub byzantine: Option<Byzantine>,
    /// Index of another node whose key this one shares (a "twin").
    pub twin_of: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: Vec<NodeSpec>,
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    pub min_delay: Millis,
    pub max_delay: Millis,
    /// Nodes cut off from the rest between the two times.
    pub partition: Option<(BTreeSet<usize>, Millis, Millis)>,
    /// An honest node that crashes and restarts at these times.
    pub crash: Option<(usize, Millis, Millis)>,
    /// Faults (drops, partition) stop at this time; liveness is judged after it.
    pub heal_at: Millis,
    pub transfers: usize,
    pub double_spends: usize,
    /// Genesis outputs the clients spend (one transfer or double spend each).
    pub genesis_outputs: usize,
    /// Clients submit their transfers within this many milliseconds.
    pub submit_span: Millis,
    pub block_interval: Millis,
    /// Virtual time allowed after healing for liveness.
    pub liveness_deadline: Millis,
    /// Nodes outside the genesis set that register (with collateral from genesis) at a time.
    pub joins: Vec<(usize, Millis)>,
    /// Genesis masternodes whose collateral their owner spends at a time (they leave).
    pub leaves: Vec<(usize, Millis)>,
    /// Whether the shell flushes before a durable message (a vote batch) leaves, as the
    /// node's flusher does. Off only to show that a crash then loses promised locks and the
    /// simulation sees it.
    pub vote_barrier: bool,
    /// Most transactions in one block.
    pub max_block_txs: usize,
    /// A world-sized network with costs and meters (measurements only; see `wan`).
    pub wan: Option<wan::Wan>,
}

impl Scenario {
    /// A random scenario: 4 to 10 nodes of unequal tiers, faulty weight below a third, drops
    /// up to 30%, maybe a partition, maybe a crash.
    pub fn random(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let n = rng.gen_range(4..=10);
        let tiers = [Tier::Bronze, Tier::Silver, Tier::Gold];
        let uniform = rng.gen_bool(0.4);
        let mut nodes: Vec<NodeSpec> = (0..n)
            .map(|_| NodeSpec {
                tier: if uniform {
                    Tier::Bronze
                } else {
                    *tiers.choose(&mut rng).unwrap_or(&Tier::Bronze)
                },
                byzantine: None,
                twin_of: None,
            })
            .collect();
        let total: u64 = nodes.iter().map(|s| s.tier.weight()).sum();
        let behaviours = [
            Byzantine::Silent,
            Byzantine::Equivocate,
            Byzantine::VoteConflicts,
            Byzantine::BadSignatures,
            Byzantine::SwapSignaturesProposer,
            Byzantine::SwapSignaturesRelay,
        ];
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut faulty = 0u64;
        for i in order {
            let w = nodes[i].tier.weight();
            if 3 * (faulty + w) < total && rng.gen_bool(0.5) {
                faulty += w;
                nodes[i].byzantine =
                    Some(*behaviours.choose(&mut rng).unwrap_or(&Byzantine::Silent));
            }
        }
        let honest: Vec<usize> = (0..n).filter(|i| nodes[*i].byzantine.is_none()).collect();
        let heal_at = rng.gen_range(4_000..10_000);
        let partition = rng.gen_bool(0.3).then(|| {
            let k = rng.gen_range(1..=n / 2);
            let group: BTreeSet<usize> = (0..n)
                .collect::<Vec<_>>()
                .choose_multiple(&mut rng, k)
                .copied()
                .collect();
            let start = rng.gen_range(0..heal_at / 2);
            (group, start, rng.gen_range(start + 500..=heal_at))
        });
        let crash = rng.gen_bool(0.3).then(|| {
            let node = *honest.choose(&mut rng).unwrap_or(&0);
            let at = rng.gen_range(500..heal_at / 2);
            (node, at, rng.gen_range(at + 200..=heal_at))
        });
        Scenario {
            seed,
            nodes,
            drop_rate: rng.gen_range(0.0..0.3),
            duplicate_rate: rng.gen_range(0.0..0.1),
            min_delay: 1,
            max_delay: rng.gen_range(5..200),
            partition,
            crash,
            heal_at,
            transfers: rng.gen_range(5..30),
            double_spends: rng.gen_range(0..4),
            genesis_outputs: 200,
            submit_span: heal_at.max(3_000),
            block_interval: 1_000,
            liveness_deadline: 60_000,
            joins: Vec::new(),
            leaves: Vec::new(),
            vote_barrier: true,
            max_block_txs: 1_000,
            wan: None,
        }
    }

    /// Set changes during conflicting spends: a heavy (Gold) node joins the Bronze/Silver
    /// genesis set by registration, then one genesis masternode leaves by spending its
    /// collateral, while owners keep signing conflicting spends around both changes. Faulty
    /// nodes vote for every spend they see, with weight below a third of every set the
    /// network passes through.
    pub fn set_changes(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e7c);
        let base = rng.gen_range(4..=6);
        let mut nodes: Vec<NodeSpec> = (0..base)
            .map(|_| NodeSpec {
                tier: if rng.gen_bool(0.3) {
                    Tier::Silver
                } else {
                    Tier::Bronze
                },
                byzantine: None,
                twin_of: None,
            })
            .collect();
        nodes.push(NodeSpec {
            tier: Tier::Gold,
            byzantine: None,
            twin_of: None,
        });
        let joiner = base;
        let leaver = rng.gen_range(0..base);
        // Faulty weight below a third of each set: before the join, after it, after the leave.
        let weight = |members: &[usize], nodes: &[NodeSpec]| -> u64 {
            members.iter().map(|i| nodes[*i].tier.weight()).sum()
        };
        let sets: Vec<Vec<usize>> = vec![
            (0..base).collect(),
            (0..=base).collect(),
            (0..=base).filter(|i| *i != leaver).collect(),
        ];
        let mut order: Vec<usize> = (0..base).filter(|i| *i != leaver).collect();
        order.shuffle(&mut rng);
        for i in order {
            nodes[i].byzantine = Some(Byzantine::VoteConflicts);
            let safe = sets.iter().all(|set| {
                let faulty: Vec<usize> = set
                    .iter()
                    .copied()
                    .filter(|j| nodes[*j].byzantine.is_some())
                    .collect();
                3 * weight(&faulty, &nodes) < weight(set, &nodes)
            });
            if !safe || rng.gen_bool(0.4) {
                nodes[i].byzantine = None;
            }
        }
        let join_at = rng.gen_range(1_500..3_000);
        let leave_at = join_at + rng.gen_range(1_500..3_000);
        Scenario {
            seed,
            nodes,
            drop_rate: rng.gen_range(0.0..0.1),
            duplicate_rate: 0.05,
            min_delay: 1,
            max_delay: rng.gen_range(5..80),
            partition: None,
            crash: None,
            heal_at: leave_at + 2_000,
            transfers: 12,
            double_spends: 6,
            genesis_outputs: 200,
            submit_span: leave_at + 1_500,
            block_interval: 500,
            liveness_deadline: 60_000,
            joins: vec![(joiner, join_at)],
            leaves: vec![(leaver, leave_at)],
            vote_barrier: true,
            max_block_txs: 1_000,
            wan: None,
        }
    }

    /// A measurement (issue 15): `nodes` masternodes of mixed tiers (about 60 % Bronze, 30 %
    /// Silver, 10 % Gold) spread over the world's regions, wallets offering `rate`
    /// transactions a second to random nodes for `seconds`, no faults.
    pub fn world(seed: u64, nodes: usize, rate: usize, seconds: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3041d);
        let tiers: Vec<Tier> = (0..nodes)
            .map(|_| match rng.gen_range(0..10) {
                0 => Tier::Gold,
                1..=3 => Tier::Silver,
                _ => Tier::Bronze,
            })
            .collect();
        let transfers = rate * seconds as usize;
        // The coins are split before the window (see `schedule_load`).
        let window = (WARM_UP, WARM_UP + seconds * 1_000);
        Scenario {
            transfers,
            double_spends: 0,
            genesis_outputs: transfers.div_ceil(SPLIT),
            submit_span: window.1,
            // The node's default (`config/genesis.rs`).
            block_interval: 2_000,
            max_block_txs: timed::node::MAX_BLOCK_TXS,
            wan: Some(wan::Wan::world(window)),
            ..Scenario::calm(seed, &tiers)
        }
    }

    /// No faults at all.
    pub fn calm(seed: u64, tiers: &[Tier]) -> Scenario {
        Scenario {
            seed,
            nodes: tiers
                .iter()
                .map(|t| NodeSpec {
                    tier: *t,
                    byzantine: None,
                    twin_of: None,
                })
                .collect(),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            min_delay: 1,
            max_delay: 20,
            partition: None,
            crash: None,
            heal_at: 0,
            transfers: 20,
            double_spends: 2,
            genesis_outputs: 200,
            submit_span: 3_000,
            block_interval: 1_000,
            liveness_deadline: 30_000,
            joins: Vec::new(),
            leaves: Vec::new(),
            vote_barrier: true,
            max_block_txs: 1_000,
            wan: None,
        }
    }
}

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
            Event::Timer { node, .. } | Event::Submit { node, .. } => Some(*node),
            Event::Crash(_) | Event::Restart(_) | Event::Wake(_) => None,
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
    wan: Option<wan::WanState>,
    /// Per node, events that reached it while its CPU was busy, in arrival order (`wan`).
    inbox: Vec<std::collections::VecDeque<Event>>,
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
        DriverConfig {
            network: NETWORK,
            key: Some(key.clone()),
            finality: FinalityConfig::new(NETWORK),
            bft,
            pool: PoolLimits::default(),
            max_block_txs: self.sc.max_block_txs,
        }
    }

    fn start_node(&mut self, i: usize) -> Result<(), Violation> {
        let storage =
            Storage::open_simulating_power_loss(&self.nodes[i].dir.path().join("db"), 16 << 20)
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

    fn send(&mut self, from: usize, to: usize, msg: WireMessage) {
        if from == to || self.partitioned(from, to) {
            return;
        }
        if self.faults_active() && self.rng.gen_bool(self.sc.drop_rate) {
            return;
        }
        let copies = if self.faults_active() && self.rng.gen_bool(self.sc.duplicate_rate) {
            2
        } else {
            1
        };
        if let Some(w) = &mut self.wan {
            let at = w.route(from, to, &msg, self.now, &mut self.rng);
            self.push(at, Event::Deliver { to, from, msg });
            return;
        }
        for _ in 0..copies {
            let delay = self.rng.gen_range(self.sc.min_delay..=self.sc.max_delay);
            self.push(
                self.now + delay,
                Event::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, msg: WireMessage) {
        for to in 0..self.nodes.len() {
            self.send(from, to, msg.clone());
        }
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
                Output::Broadcast(msg) => self.emit(i, None, msg),
                Output::Relay(msg) => {
                    let others: Vec<usize> = (0..self.nodes.len()).filter(|j| *j != i).collect();
                    let chosen: Vec<usize> = others
                        .choose_multiple(&mut self.rng, RELAY_FANOUT)
                        .copied()
                        .collect();
                    for to in chosen {
                        self.emit(i, Some(to), msg.clone());
                    }
                }
                Output::BroadcastDurable(msg) => {
                    // The node's flusher: the locks this message promises are made durable
                    // before it leaves.
                    if self.sc.vote_barrier {
                        if let Some(storage) = &self.nodes[i].storage {
                            storage.flush().map_err(|e| Violation::NodeFailed {
                                node: i,
                                error: e.to_string(),
                            })?;
                        }
                    }
                    self.emit(i, None, msg)
                }
                Output::SendTo(peer, msg) => self.emit(i, Some(peer as usize), msg),
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
                Output::Event(e) => self.on_node_event(i, e)?,
            }
        }
        Ok(())
    }

    /// Sends what node `i` said, through its Byzantine behaviour if it has one.
    fn emit(&mut self, i: usize, to: Option<usize>, msg: WireMessage) {
        let deliver = |sim: &mut Sim, m: WireMessage| match to {
            Some(t) => sim.send(i, t, m),
            None => sim.broadcast(i, m),
        };
        match self.nodes[i].spec.byzantine {
            None
            | Some(Byzantine::VoteConflicts)
            | Some(Byzantine::Twin)
            | Some(Byzantine::JunkVotes) => deliver(self, msg),
            Some(Byzantine::Silent) => {}
            Some(Byzantine::SwapSignaturesProposer) => {
                let msg = match msg {
                    WireMessage::Proposal(p) if p.proposer == self.nodes[i].key.public_key() => {
                        let reseal = self.rng.gen_bool(0.5);
                        let key = self.nodes[i].key.clone();
                        WireMessage::Proposal(self.swap_proposal(&p, reseal.then_some(&key)))
                    }
                    other => other,
                };
                deliver(self, msg)
            }
            Some(Byzantine::SwapSignaturesRelay) => {
                let msg = self.swap_relayed(msg);
                deliver(self, msg)
            }
            Some(Byzantine::BadSignatures) => {
                if self.rng.gen_bool(0.5) {
                    deliver(self, corrupt(msg));
                } else {
                    deliver(self, msg);
                }
            }
            Some(Byzantine::Equivocate) => {
                let twin = self.equivocal(i, &msg);
                match (to, twin) {
                    (None, Some(other)) => {
                        let n = self.nodes.len();
                        for t in 0..n {
                            let m = if t % 2 == 0 {
                                msg.clone()
                            } else {
                                other.clone()
                            };
                            self.send(i, t, m);
                        }
                    }
                    _ => deliver(self, msg),
                }
            }
        }
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
            NodeEvent::BlockCommitted { height, hash } => match self.committed.get(&height) {
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

    fn step(&mut self, event: Event) -> Result<(), Violation> {
        let Some(w) = &self.wan else {
            return self.step_now(event);
        };
        // One event at a time per node: what reaches a busy node waits in its inbox.
        let event = match event {
            Event::Wake(i) => {
                self.waking[i] = false;
                match self.inbox[i].pop_front() {
                    Some(e) => e,
                    None => return Ok(()),
                }
            }
            e => match e.node() {
                Some(i) if w.busy_until(i, self.now).is_some() || !self.inbox[i].is_empty() => {
                    self.inbox[i].push_back(e);
                    self.wake_later(i);
                    return Ok(());
                }
                _ => e,
            },
        };
        let node = event.node();
        let result = self.step_now(event);
        if let Some(w) = &mut self.wan {
            w.settle();
        }
        if let Some(i) = node.filter(|i| !self.inbox[*i].is_empty()) {
            self.wake_later(i);
        }
        result
    }

    /// Queues node `i`'s next `Wake` for when its CPU is free, unless one is queued.
    fn wake_later(&mut self, i: usize) {
        if self.waking[i] {
            return;
        }
        let now = self.now;
        let at = (self.wan.as_ref())
            .and_then(|w| w.busy_until(i, now))
            .unwrap_or(now);
        self.waking[i] = true;
        self.defer(at, Event::Wake(i));
    }

    /// Charges node `i`'s CPU with what its driver just took (a measured run only).
    fn charge(&mut self, i: usize, started: Duration) {
        let took = wan::thread_cpu().saturating_sub(started);
        if let Some(w) = &mut self.wan {
            w.charge(i, self.now, took);
        }
    }

    fn step_now(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver { to, from, msg } => {
                if self.nodes[to].spec.byzantine == Some(Byzantine::VoteConflicts) {
                    if let WireMessage::Transaction(tx) = &msg {
                        let key = self.nodes[to].key.clone();
                        // Bound to the set this node holds, so its double votes count.
                        let bound = self.nodes[to]
                            .driver
                            .as_ref()
                            .map_or((0, Hash32::ZERO), |d| {
                                (d.finality().set().height(), d.finality().set().hash())
                            });
                        let batch =
                            VoteBatch::sign(&key, NETWORK, bound, self.seq, vec![tx.txid()]);
                        self.broadcast(to, WireMessage::VoteBatch(Arc::new(batch)));
                    }
                }
                if self.nodes[to].spec.byzantine == Some(Byzantine::JunkVotes) {
                    if let WireMessage::Transaction(_) = &msg {
                        let key = self.nodes[to].key.clone();
                        let bound = self.nodes[to]
                            .driver
                            .as_ref()
                            .map_or((0, Hash32::ZERO), |d| {
                                (d.finality().set().height(), d.finality().set().hash())
                            });
                        let junk: Vec<Txid> =
                            (0..JUNK_PER_TX).map(|_| Hash32(self.rng.gen())).collect();
                        let batch = VoteBatch::sign(&key, NETWORK, bound, self.seq, junk);
                        self.broadcast(to, WireMessage::VoteBatch(Arc::new(batch)));
                    }
                }
                let relay_key = match &msg {
                    WireMessage::Proposal(p) => Some((to, true, p.height, p.round)),
                    WireMessage::Blocks(b) => b.last().map(|(_, c)| (to, false, c.height, 0)),
                    _ => None,
                };
                if self.nodes[to].spec.byzantine == Some(Byzantine::SwapSignaturesRelay)
                    && relay_key.is_some_and(|k| self.relayed.insert(k))
                {
                    // Pass it on at once, altered: the copy races the genuine one.
                    let altered = self.swap_relayed(msg.clone());
                    self.broadcast(to, altered);
                }
                let now = self.now;
                let Some(driver) = self.nodes[to].driver.as_mut() else {
                    return Ok(());
                };
                if let Some(w) = &mut self.wan {
                    // A transaction the node holds already is answered from a lookup.
                    let known = match &msg {
                        WireMessage::Transaction(tx) => {
                            let txid = tx.txid();
                            driver.mempool().contains(&txid) || driver.finality().is_final(&txid)
                        }
                        _ => false,
                    };
                    w.received(to, now, &msg, known);
                }
                let started = wan::thread_cpu();
                let out = driver.on_message(from as u64, msg, now);
                self.charge(to, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node: to,
                    error: e.to_string(),
                })?;
                self.handle_outputs(to, out)
            }
            Event::Timer {
                node,
                generation,
                timer,
            } => {
                if generation != self.nodes[node].generation {
                    return Ok(());
                }
                let now = self.now;
                let Some(driver) = self.nodes[node].driver.as_mut() else {
                    return Ok(());
                };
                let started = wan::thread_cpu();
                let out = driver.on_timer(timer, now);
                self.charge(node, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node,
                    error: e.to_string(),
                })?;
                self.handle_outputs(node, out)
            }
            Event::Submit {
                node,
                tx,
                expect_final,
            } => {
                self.pending_submits -= 1;
                let now = self.now;
                let Some(driver) = self.nodes[node].driver.as_mut() else {
                    // The node is down: the client tries again a little later.
                    self.push(
                        now + 500,
                        Event::Submit {
                            node,
                            tx,
                            expect_final,
                        },
                    );
                    return Ok(());
                };
                let started = wan::thread_cpu();
                let (verdict, out) = driver.submit_transaction((*tx).clone(), now);
                self.charge(node, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node,
                    error: e.to_string(),
                })?;
                if verdict.is_err() && self.wan.is_some() {
                    // A measurement's wallet tries again, as real ones do when the pool is
                    // full ("try again shortly") or its coin's split is not final there yet.
                    self.push(
                        now + RETRY_MS,
                        Event::Submit {
                            node,
                            tx: Arc::clone(&tx),
                            expect_final,
                        },
                    );
                }
                if expect_final && verdict.is_ok() {
                    self.expected_final.insert(tx.txid());
                }
                self.handle_outputs(node, out)
            }
            Event::Crash(node) => {
                // A power cut, not only a process exit: what no barrier covered is gone.
                if let Some(storage) = self.nodes[node].storage.take() {
                    let lost = storage
                        .lose_unflushed()
                        .map_err(|e| Violation::NodeFailed {
                            node,
                            error: e.to_string(),
                        })?;
                    if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
                        eprintln!(
                            "t={} node {node} crashes, losing {lost} unsynced log frames",
                            self.now - EPOCH
                        );
                    }
                }
                self.nodes[node].driver = None;
                self.nodes[node].generation += 1;
                Ok(())
            }
            Event::Restart(node) => self.start_node(node),
            Event::Wake(_) => Ok(()),
        }
    }

    fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.spec.byzantine.is_none())
            .map(|n| {
                n.driver
                    .as_ref()
                    .and_then(|d| d.ledger().height())
                    .unwrap_or(0)
            })
            .collect()
    }

    fn final_everywhere(&self, txid: &Txid) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.spec.byzantine.is_none())
            .all(|n| {
                n.finals.contains(txid)
                    || n.driver.as_ref().is_some_and(|d| {
                        d.ledger()
                            .storage()
                            .tx_location(txid)
                            .ok()
                            .flatten()
                            .is_some()
                    })
            })
    }

    /// Every expected transaction final on every honest node, and every honest node at least
    /// two blocks past where the highest was at healing.
    fn live(&self, base: &[u64]) -> bool {
        let target = base.iter().max().copied().unwrap_or(0) + 2;
        self.pending_submits == 0
            && self
                .nodes
                .iter()
                .filter(|n| n.spec.byzantine.is_none())
                .all(|n| n.driver.is_some())
            && self.heights().iter().all(|h| *h >= target)
            && self.expected_final.iter().all(|t| self.final_everywhere(t))
    }

    /// Final checks on every honest node's database: certificates and commitments.
    fn finish(mut self) -> Result<Report, Violation> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.spec.byzantine.is_some() {
                continue;
            }
            let Some(d) = &node.driver else { continue };
            // The scheduled set changes took effect everywhere.
            for (j, _) in &self.sc.joins {
                let key = self.nodes[*j].key.public_key();
                if !d.set().contains_voter(&key) || !d.finality().set().contains_voter(&key) {
                    return Err(Violation::Liveness(format!("node {i}: {j} never joined")));
                }
            }
            for (l, _) in &self.sc.leaves {
                if d.set().get(&self.nodes[*l].key.public_key()).is_some() {
                    return Err(Violation::Liveness(format!("node {i}: {l} never left")));
                }
            }
            let storage = d.ledger().storage();
            let tip = d.ledger().height().unwrap_or(0);
            for h in 1..=tip {
                let block = storage.block_at(h).ok().flatten();
                let cert = storage.commit_at(h).ok().flatten();
                let set =
                    set_store::load_at(storage, h - 1).map_err(|e| Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    })?;
                let (Some(block), Some(cert)) = (block, cert) else {
                    return Err(Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: "missing".into(),
                    });
                };
                verify_commit(&cert, &set, NETWORK, h, &block.hash()).map_err(|e| {
                    Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    }
                })?;
                if self.committed.get(&h) != Some(&block.hash()) {
                    return Err(Violation::CommitmentDisagrees { height: h });
                }
            }
            let header = storage.block_at(tip).ok().flatten();
            if header.map(|b| b.header.utxo_commitment) != Some(d.ledger().commitment().digest()) {
                return Err(Violation::CommitmentDisagrees { height: tip });
            }
            if d.ledger().commitment() != d.ledger().recompute_commitment() {
                return Err(Violation::CommitmentDisagrees { height: tip });
            }
        }
        self.check_bodies_and_replay()?;
        let heights = self.heights();
        for h in &heights {
            self.hasher.update(&h.to_le_bytes());
        }
        let mut evidence_against = Vec::new();
        let mut voters = Vec::new();
        for node in self.nodes.iter().filter(|n| n.spec.byzantine.is_none()) {
            let Some(d) = &node.driver else { continue };
            let held = evidence_store::list(d.ledger().storage(), 10_000, false, |_| true)
                .map_err(|e| Violation::NodeFailed {
                    node: 0,
                    error: e.to_string(),
                })?;
            evidence_against.push(held.iter().map(|e| e.offender()).collect());
            voters.push(
                d.set()
                    .members()
                    .filter(|m| m.weight() > 0)
                    .map(|m| m.operator_key)
                    .collect(),
            );
        }
        Ok(Report {
            digest: Hash32(*self.hasher.finalize().as_bytes()),
            heights,
            finalized: self.expected_final.len(),
            events: self.event_count,
            keys: self.nodes.iter().map(|n| n.key.public_key()).collect(),
            evidence_against,
            voters,
            altered: self.altered,
        })
    }
}

impl Sim {
    fn ledger_params() -> LedgerParams {
        LedgerParams {
            network: NETWORK,
            rewards: RewardSchedule {
                initial: Amount(10 * timed::types::ATOMS_PER_TIME),
                halving_interval: 0,
            },
        }
    }

    /// Issue 11 §2: every honest node stored exactly the certified bodies, with signatures
    /// that verify. All honest nodes hold byte-identical blocks at each height, and the
    /// longest chain replays from genesis on a fresh ledger that verifies every signature (it
    /// holds no final transactions, so nothing is taken as already verified).
    fn check_bodies_and_replay(&self) -> Result<(), Violation> {
        let mut reference: BTreeMap<u64, (usize, Vec<u8>)> = BTreeMap::new();
        let mut longest: Option<(usize, u64)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.spec.byzantine.is_some() {
                continue;
            }
            let Some(d) = &node.driver else { continue };
            let storage = d.ledger().storage();
            let tip = d.ledger().height().unwrap_or(0);
            if longest.is_none_or(|(_, h)| tip > h) {
                longest = Some((i, tip));
            }
            for h in 1..=tip {
                let Some(block) = storage.block_at(h).ok().flatten() else {
                    continue;
                };
                let bytes = block.to_bytes();
                match reference.get(&h) {
                    Some((other, b)) if *b != bytes => {
                        return Err(Violation::BadBody {
                            node: i,
                            height: h,
                            reason: format!("differs from node {other}'s body"),
                        })
                    }
                    Some(_) => {}
                    None => {
                        reference.insert(h, (i, bytes));
                    }
                }
            }
        }
        let Some((i, tip)) = longest else {
            return Ok(());
        };
        let storage = self.nodes[i]
            .driver
            .as_ref()
            .map(|d| d.ledger().storage().clone());
        let Some(storage) = storage else {
            return Ok(());
        };
        let fail = |height: u64, reason: String| Violation::ReplayFailed {
            node: i,
            height,
            reason,
        };
        let dir = sim_dir();
        let fresh = Storage::open(&dir.path().join("replay"), 16 << 20)
            .map_err(|e| fail(0, e.to_string()))?;
        let ledger =
            Ledger::open(fresh, Self::ledger_params()).map_err(|e| fail(0, e.to_string()))?;
        ledger
            .apply_genesis(&self.genesis.build().0)
            .map_err(|e| fail(0, e.to_string()))?;
        for h in 1..=tip {
            let block = storage.block_at(h).ok().flatten();
            let cert = storage.commit_at(h).ok().flatten();
            let (Some(block), Some(cert)) = (block, cert) else {
                return Err(fail(h, "block or certificate missing".into()));
            };
            for tx in block.transactions.iter().skip(1) {
                tx.verify_signatures(NETWORK)
                    .map_err(|e| Violation::BadBody {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    })?;
            }
            ledger
                .apply_block(&block, &cert)
                .map_err(|e| fail(h, e.to_string()))?;
        }
        Ok(())
    }
}
