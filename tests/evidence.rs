//! Issue 11 §8 at the driver: equivocation evidence is verified, stored once, gossiped, and
//! refused (with the sender at fault) when it proves nothing. Layer-1 evidence is fed straight
//! to `record_evidence`, as the finality engine's conflict detection does.

use std::sync::Arc;
use timed::consensus::bft::BftConfig;
use timed::consensus::driver::{ConsensusDriver, DriverConfig, NodeEvent, Output, WireMessage};
use timed::consensus::evidence_store;
use timed::consensus::finality::FinalityConfig;
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, ConsensusVote, Evidence, EvidenceError, Hash32, Network, OutPoint, SecretKey, Tier,
    TxOutput, VoteBatch, VoteKind, ATOMS_PER_TIME,
};

const NET: Network = Network::Localnet;
const NOW: u64 = 1_700_000_000_000;

struct Node {
    _dir: tempfile::TempDir,
    driver: ConsensusDriver,
    keys: Vec<SecretKey>,
    client: SecretKey,
    genesis_txid: Hash32,
}

/// A driver for masternode 0 of four Bronze masternodes, with one client output.
fn node() -> Node {
    let keys: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
    let client = SecretKey::from_bytes(&[40; 32]);
    let genesis = GenesisSpec {
        timestamp_ms: NOW,
        rules: Default::default(),
        allocations: vec![(client.public_key().key_hash(), Amount(100 * ATOMS_PER_TIME))],
        masternodes: keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                GenesisMasternode::new(
                    Tier::Bronze,
                    k,
                    k.public_key().key_hash(),
                    format!("127.0.0.1:{}", 30000 + i),
                )
            })
            .collect(),
    };
    let genesis_txid = genesis.build().0.transactions[0].txid();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
    let params = LedgerParams {
        network: NET,
        rewards: RewardSchedule {
            initial: Amount(10 * ATOMS_PER_TIME),
            halving_interval: 0,
        },
    };
    let ledger = Arc::new(Ledger::open(storage, params).unwrap());
    let cfg = DriverConfig {
        network: NET,
        key: Some(keys[0].clone()),
        finality: FinalityConfig::new(NET),
        bft: BftConfig::new(NET, 1_000),
        pool: PoolLimits::default(),
        max_block_txs: 1_000,
    };
    let (driver, _) = ConsensusDriver::open(cfg, ledger, &genesis, NOW).unwrap();
    Node {
        _dir: dir,
        driver,
        keys,
        client,
        genesis_txid,
    }
}

/// Masternode `voter` votes at layer 1 for two transfers of the client's one output.
fn double_vote(n: &Node, voter: &SecretKey) -> Evidence {
    let op = OutPoint::new(n.genesis_txid, 0);
    let spend = |amount: u64| {
        signed_transfer(
            NET,
            &n.client,
            &[op],
            vec![TxOutput {
                amount: Amount(amount),
                key_hash: n.client.public_key().key_hash(),
            }],
        )
    };
    let (x, y) = (spend(99 * ATOMS_PER_TIME), spend(98 * ATOMS_PER_TIME));
    let bx = VoteBatch::sign(voter, NET, (0, Hash32::ZERO), 1, vec![x.txid()]);
    let by = VoteBatch::sign(voter, NET, (0, Hash32::ZERO), 2, vec![y.txid()]);
    Evidence::layer1(op, (bx, x), (by, y))
}

fn broadcasts_evidence(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Broadcast(WireMessage::Evidence(_))))
}

#[test]
fn layer1_evidence_is_verified_stored_once_and_gossiped() {
    let mut n = node();
    let offender = n.keys[2].clone();
    let ev = double_vote(&n, &offender);

    let mut out = Vec::new();
    assert_eq!(
        n.driver.record_evidence(ev.clone(), &mut out).unwrap(),
        Ok(true)
    );
    assert!(broadcasts_evidence(&out), "new evidence is gossiped");

    let mut again = Vec::new();
    assert_eq!(
        n.driver.record_evidence(ev.clone(), &mut again).unwrap(),
        Ok(false)
    );
    assert!(
        again.is_empty(),
        "known evidence is neither stored nor relayed twice"
    );

    let held = evidence_store::list(n.driver.ledger().storage(), 100, false, |_| true).unwrap();
    assert_eq!(held, vec![ev]);

    // A non-member's double vote proves nothing about the set.
    let stranger = SecretKey::from_bytes(&[77; 32]);
    let mut out = Vec::new();
    assert!(matches!(
        n.driver
            .record_evidence(double_vote(&n, &stranger), &mut out)
            .unwrap(),
        Err(EvidenceError::NotMember { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn forged_evidence_from_a_peer_faults_the_peer_and_is_not_relayed() {
    let mut n = node();
    let k = n.keys[1].clone();
    let a = ConsensusVote::sign(&k, NET, VoteKind::Precommit, 1, 0, Some(Hash32([1; 32])));
    let mut b = ConsensusVote::sign(&k, NET, VoteKind::Precommit, 1, 0, None);
    // The signature is of a nil vote; the body now names a block: a forgery.
    b.block_hash = Some(Hash32([2; 32]));
    let forged = Evidence::layer2(a.clone(), b);
    let out = n
        .driver
        .on_message(7, WireMessage::Evidence(Arc::new(forged)), NOW)
        .unwrap();
    assert!(!broadcasts_evidence(&out));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::PeerFault { peer: 7, .. }))));
    assert!(
        evidence_store::list(n.driver.ledger().storage(), 100, false, |_| true)
            .unwrap()
            .is_empty()
    );

    // The genuine pair is accepted from a peer, relayed, and reported as an equivocation.
    let b = ConsensusVote::sign(&k, NET, VoteKind::Precommit, 1, 0, None);
    let out = n
        .driver
        .on_message(
            7,
            WireMessage::Evidence(Arc::new(Evidence::layer2(a, b))),
            NOW,
        )
        .unwrap();
    assert!(broadcasts_evidence(&out));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::Equivocation { .. }))));
}
