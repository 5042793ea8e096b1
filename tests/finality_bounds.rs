//! Layer-1 state stays bounded under junk (issue 11 §3), and `TxFinalized` follows the
//! ledger's acceptance (§9): one real consensus driver on a real sled database, fed the
//! messages its peers would send.
//!
//! `TIMED_FLOOD_VARIANTS` sets how many junk conflicting variants the flood sends (default one
//! million); `TIMED_FLOOD_VOTES` how many junk txids the junk-voting masternode signs.

use std::sync::Arc;
use std::time::Instant;
use timed::consensus::bft::BftConfig;
use timed::consensus::driver::{
    ConsensusDriver, DriverConfig, NodeEvent, Output, TimerKind, WireMessage, FINAL_BACKLOG_BLOCKS,
};
use timed::consensus::finality::{FinalityConfig, MAX_RIVALS, MAX_UNKNOWN_PER_VOTER};
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::consensus::MasternodeSet;
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::{PoolError, PoolLimits};
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::vote::MAX_BATCH_TXIDS;
use timed::types::{
    Amount, Hash32, Network, OutPoint, SecretKey, Tier, Transaction, TxOutput, Txid, VoteBatch,
    ATOMS_PER_TIME,
};

const NET: Network = Network::Localnet;
/// Genesis outputs of the honest client and of the attacker.
const CLIENT_OUTPUTS: usize = 12;
const ATTACKER_OUTPUTS: usize = 4;

struct Node {
    driver: ConsensusDriver,
    _dir: tempfile::TempDir,
    keys: Vec<SecretKey>,
    client: SecretKey,
    attacker: SecretKey,
    funding: Txid,
    set: Arc<MasternodeSet>,
    now: u64,
    seq: u64,
    events: Vec<NodeEvent>,
}

impl Node {
    /// Masternode 0 of four Bronze masternodes, on a fresh database.
    fn open() -> Node {
        Node::open_with(1_000)
    }

    /// The same, proposing blocks of at most `max_block_txs` transactions.
    fn open_with(max_block_txs: usize) -> Node {
        let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
        let client = SecretKey::from_bytes(&[77; 32]);
        let attacker = SecretKey::from_bytes(&[88; 32]);
        let mut allocations = Vec::new();
        for _ in 0..CLIENT_OUTPUTS {
            allocations.push((client.public_key().key_hash(), Amount(10 * ATOMS_PER_TIME)));
        }
        for _ in 0..ATTACKER_OUTPUTS {
            allocations.push((
                attacker.public_key().key_hash(),
                Amount(10 * ATOMS_PER_TIME),
            ));
        }
        let genesis = GenesisSpec {
            timestamp_ms: 1_000,
            rules: Default::default(),
            allocations,
            masternodes: keys
                .iter()
                .map(|k| {
                    GenesisMasternode::new(
                        Tier::Bronze,
                        k,
                        k.public_key().key_hash(),
                        String::new(),
                    )
                })
                .collect(),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(&dir.path().join("db"), 16 << 20).expect("open sled");
        let params = LedgerParams {
            network: NET,
            rewards: RewardSchedule {
                initial: Amount(ATOMS_PER_TIME),
                halving_interval: 0,
            },
        };
        let ledger = Arc::new(Ledger::open(storage, params).expect("ledger"));
        let cfg = DriverConfig {
            network: NET,
            key: Some(keys[0].clone()),
            finality: FinalityConfig::new(NET),
            // Blocks are not what these tests look at: no block timer is ever fired.
            bft: BftConfig::new(NET, 3_600_000),
            pool: PoolLimits::default(),
            max_block_txs,
        };
        let (driver, _) = ConsensusDriver::open(cfg, ledger, &genesis, 2_000).expect("driver");
        let (block, set) = genesis.build();
        Node {
            driver,
            _dir: dir,
            keys,
            client,
            attacker,
            funding: block.transactions[0].txid(),
            set: Arc::new(set),
            now: 2_000,
            seq: 0,
            events: Vec::new(),
        }
    }

    fn client_output(&self, i: usize) -> OutPoint {
        OutPoint::new(self.funding, i as u32)
    }

    fn attacker_output(&self, i: usize) -> OutPoint {
        OutPoint::new(self.funding, (CLIENT_OUTPUTS + i) as u32)
    }

    fn take(&mut self, out: Vec<Output>) -> Vec<Output> {
        for o in &out {
            if let Output::Event(e) = o {
                self.events.push(e.clone());
            }
        }
        out
    }

    fn deliver(&mut self, msg: WireMessage) -> Vec<Output> {
        self.now += 1;
        let out = self.driver.on_message(1, msg, self.now).expect("driver");
        self.take(out)
    }

    /// Fires the vote-batch timer, so this node's own votes go out.
    fn flush(&mut self) {
        self.now += 10;
        let out = self
            .driver
            .on_timer(TimerKind::VoteBatch, self.now)
            .expect("driver");
        self.take(out);
    }

    fn vote(&mut self, voter: usize, txids: Vec<Txid>) -> Vec<Output> {
        self.seq += 1;
        let batch = VoteBatch::sign(
            &self.keys[voter],
            NET,
            (self.set.height(), self.set.hash()),
            self.seq,
            txids,
        );
        self.deliver(WireMessage::VoteBatch(Arc::new(batch)))
    }

    fn finalized(&self, txid: &Txid) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, NodeEvent::TxFinalized(t, _) if t == txid))
    }
}

fn pay(key: &SecretKey, inputs: &[OutPoint], amount: u64) -> Transaction {
    signed_transfer(
        NET,
        key,
        inputs,
        vec![TxOutput {
            amount: Amount(amount),
            key_hash: key.public_key().key_hash(),
        }],
    )
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident and peak memory of this process, in KiB (Linux), for the benchmark record.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn junk_variants_and_a_junk_voter_leave_honest_transfers_final_with_bounded_state() {
    let variants = env_count("TIMED_FLOOD_VARIANTS", 1_000_000);
    let junk_votes = env_count("TIMED_FLOOD_VOTES", 1_000_000);
    let mut node = Node::open();
    let (rss_start, _) = memory_kib();
    let started = Instant::now();

    // The attacker's first spend of each output is locked and voted for.
    for i in 0..ATTACKER_OUTPUTS {
        let op = node.attacker_output(i);
        let first = pay(&node.attacker, &[op], 9 * ATOMS_PER_TIME);
        node.deliver(WireMessage::Transaction(Arc::new(first)));
    }
    node.flush();
    // Zero-fee conflicting variants, validly signed: refused by the fee rule, never stored.
    for i in 0..ATTACKER_OUTPUTS {
        let op = node.attacker_output(i);
        for n in 0..50u64 {
            let free = pay(&node.attacker, &[op], 10 * ATOMS_PER_TIME - n);
            node.deliver(WireMessage::Transaction(Arc::new(free)));
        }
    }
    assert_eq!(node.driver.finality().counts().known, ATTACKER_OUTPUTS);
    // Fee-paying variants: at most MAX_RIVALS per output are kept.
    for i in 0..ATTACKER_OUTPUTS {
        let op = node.attacker_output(i);
        for n in 0..20u64 {
            let rival = pay(&node.attacker, &[op], 8 * ATOMS_PER_TIME - n);
            node.deliver(WireMessage::Transaction(Arc::new(rival)));
        }
    }
    let bound = ATTACKER_OUTPUTS * (1 + MAX_RIVALS);
    assert_eq!(node.driver.finality().counts().known, bound);
    // The flood: a million more variants, refused at the door before any signature check
    // (so whether they are validly signed changes nothing of the node's cost).
    let template = pay(&node.attacker, &[node.attacker_output(0)], 1);
    for n in 0..variants {
        let mut tx = template.clone();
        tx.inputs[0].prev_out = node.attacker_output(n % ATTACKER_OUTPUTS);
        tx.outputs[0].amount = Amount(7 * ATOMS_PER_TIME - n as u64);
        node.deliver(WireMessage::Transaction(Arc::new(tx)));
    }
    let flood_done = started.elapsed();
    // A junk-voting Bronze masternode signs batches of txids nobody has seen.
    let mut n: u64 = 0;
    while (n as usize) < junk_votes {
        let take = MAX_BATCH_TXIDS.min(junk_votes - n as usize);
        let txids: Vec<Txid> = (n..n + take as u64)
            .map(|i| Hash32::digest("junk", &i.to_le_bytes()))
            .collect();
        n += take as u64;
        node.vote(1, txids);
    }
    let votes_done = started.elapsed();

    // Honest transfers still become final: this node's vote and two others'.
    let mut honest = Vec::new();
    for i in 0..CLIENT_OUTPUTS {
        let tx = pay(&node.client, &[node.client_output(i)], 9 * ATOMS_PER_TIME);
        honest.push(tx.txid());
        node.deliver(WireMessage::Transaction(Arc::new(tx)));
    }
    node.flush();
    node.vote(2, honest.clone());
    node.vote(3, honest.clone());
    for txid in &honest {
        assert!(node.finalized(txid), "honest transfer {txid} is final");
    }

    let counts = node.driver.finality().counts();
    let (rss_end, peak) = memory_kib();
    eprintln!(
        "flood: {variants} junk variants in {flood_done:?}, {junk_votes} junk votes in {:?}; \
         tracked {counts:?}; pool {} entries; RSS {} -> {} KiB (peak {} KiB)",
        votes_done - flood_done,
        node.driver.mempool().len(),
        rss_start,
        rss_end,
        peak
    );
    assert!(counts.known <= bound + CLIENT_OUTPUTS, "{counts:?}");
    assert!(
        counts.unknown_tallies <= MAX_UNKNOWN_PER_VOTER,
        "one voter cannot grow the tallies past its bound: {counts:?}"
    );
    assert!(
        counts.tallies <= counts.known + MAX_UNKNOWN_PER_VOTER,
        "{counts:?}"
    );
}

#[test]
fn a_final_child_is_reported_only_once_the_ledger_has_its_parent() {
    let mut node = Node::open();
    let (g0, g1) = (node.client_output(0), node.client_output(1));
    // This node locks g0 to R.
    let r = pay(&node.client, &[g0], 9 * ATOMS_PER_TIME);
    node.deliver(WireMessage::Transaction(Arc::new(r)));
    node.flush();
    // Elsewhere the client's P (spending g1) and child C (spending g0 and P's output) are
    // final; this node has seen neither.
    let p = pay(&node.client, &[g1], 9 * ATOMS_PER_TIME);
    let c = pay(
        &node.client,
        &[g0, OutPoint::new(p.txid(), 0)],
        17 * ATOMS_PER_TIME,
    );
    for voter in 1..=3 {
        node.vote(voter, vec![c.txid()]);
    }
    // The body arrives with its proof: final at layer 1, but the ledger lacks its parent.
    node.deliver(WireMessage::Finality {
        tx: Arc::new(c.clone()),
        batches: Vec::new(),
    });
    assert!(node.driver.finality().is_final(&c.txid()));
    assert!(
        !node.finalized(&c.txid()),
        "no TxFinalized before the ledger accepted it"
    );
    assert!(node.driver.ledger().final_tx(&c.txid()).is_none());
    // The parent arrives and becomes final: the child is applied and reported after it.
    node.deliver(WireMessage::Transaction(Arc::new(p.clone())));
    node.flush();
    node.vote(1, vec![p.txid()]);
    node.vote(2, vec![p.txid()]);
    let order: Vec<Txid> = node
        .events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::TxFinalized(t, _) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![p.txid(), c.txid()]);
    assert!(node.driver.ledger().final_tx(&c.txid()).is_some());
}

/// Layer 1 can finalize faster than blocks confirm, and what is final stays in memory until a
/// block takes it: past `FINAL_BACKLOG_BLOCKS` blocks' worth of final transactions waiting, a
/// client's new transaction is refused ("mempool full"), answered at once and not the
/// client's fault; one already final is still answered as such; a peer's relay is still taken
/// (what another node admitted gets this node's vote, and its proposal can fill in).
#[test]
fn past_a_few_blocks_of_final_transactions_waiting_new_submits_are_refused() {
    let mut n = Node::open_with(1);
    let limit = FINAL_BACKLOG_BLOCKS;
    assert!(limit + 2 <= CLIENT_OUTPUTS);
    let transfer = |n: &Node, i: usize| pay(&n.client, &[n.client_output(i)], 9 * ATOMS_PER_TIME);
    let mut finals = Vec::new();
    for i in 0..limit {
        let tx = transfer(&n, i);
        let txid = tx.txid();
        let (verdict, out) = n.driver.submit_transaction(tx.clone(), n.now);
        assert_eq!(verdict.expect("taken below the limit"), txid);
        n.take(out.expect("driver"));
        n.flush();
        n.vote(1, vec![txid]);
        n.vote(2, vec![txid]);
        assert!(n.finalized(&txid), "transfer {i} final");
        finals.push(tx);
    }
    let tx = transfer(&n, limit);
    let (verdict, out) = n.driver.submit_transaction(tx.clone(), n.now);
    n.take(out.expect("driver"));
    match verdict {
        Err(
            e @ PoolError::BlocksBehind {
                waiting, limit: l, ..
            },
        ) => {
            assert_eq!((waiting, l), (limit, limit));
            assert!(!e.is_peer_fault());
            assert!(e.to_string().starts_with("mempool full:"), "{e}");
        }
        other => panic!("expected a refusal while blocks are behind, got {other:?}"),
    }
    // A final one sent again is told so, not "try again".
    let (again, _) = n.driver.submit_transaction(finals[0].clone(), n.now);
    assert!(
        matches!(&again, Err(PoolError::Ledger { .. })),
        "already final: {again:?}"
    );
    // A peer's relay of the refused transfer is taken, voted on and final.
    let txid = tx.txid();
    n.deliver(WireMessage::Transaction(Arc::new(tx)));
    n.flush();
    n.vote(1, vec![txid]);
    n.vote(2, vec![txid]);
    assert!(n.finalized(&txid), "a peer's relay is taken past the bound");
    // A client's transfer a quorum of the others already vouches for is taken too.
    let vouched = transfer(&n, limit + 1);
    let txid = vouched.txid();
    for voter in 1..=3 {
        n.vote(voter, vec![txid]);
    }
    let (verdict, out) = n.driver.submit_transaction(vouched, n.now);
    n.take(out.expect("driver"));
    assert_eq!(verdict.expect("a vouched transaction is taken"), txid);
    assert!(n.finalized(&txid));
}
