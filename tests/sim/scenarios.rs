//! The networks the simulation runs: random fault scenarios, set changes, calm networks and
//! the measurement's world.

use super::*;

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
    /// Local submits a node's pool always takes (`PoolLimits::admission_floor`).
    pub admission_floor: usize,
    /// Voters from which the slot engine decides layer 1 (the node's default, or lowered so
    /// small networks run it).
    pub slot_engine_voters: usize,
    /// Voters each node passes a slot's batch to (the node's default, or lowered so that a
    /// few nodes form a tree of several levels).
    pub announce_fanout: usize,
    /// Each node's sled page cache. A thousand simulated nodes at the node's 16 MB each would
    /// hold 16 GB of cache alone; measurements at that size lower it.
    pub db_cache_bytes: u64,
    /// A node that hears no aggregator's announcement, only the answers to its own
    /// `GetSlotBatch` requests: it finalizes from certificates by asking for their batches.
    pub deaf_to_announcements: Option<usize>,
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
            submit_span: heal_at.max(3_000),
            liveness_deadline: 60_000,
            ..Scenario::calm(seed, &[])
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
            heal_at: leave_at + 2_000,
            transfers: 12,
            double_spends: 6,
            submit_span: leave_at + 1_500,
            block_interval: 500,
            liveness_deadline: 60_000,
            joins: vec![(joiner, join_at)],
            leaves: vec![(leaver, leave_at)],
            ..Scenario::calm(seed, &[])
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
            max_block_txs: timed::consensus::driver::MAX_BLOCK_TXS,
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
            deaf_to_announcements: None,
            vote_barrier: true,
            max_block_txs: 1_000,
            wan: None,
            slot_engine_voters: timed::consensus::finality::SLOT_ENGINE_VOTERS,
            announce_fanout: timed::consensus::finality::slots::ANNOUNCE_FANOUT,
            admission_floor: timed::mempool::admission::FLOOR,
            db_cache_bytes: 16 << 20,
        }
    }
}
