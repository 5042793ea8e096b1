//! The driver's door on a real ledger (sled in a temp dir): what a peer's consensus messages
//! cost and earn before they reach the engines. Forged signatures and invalid transactions
//! score points (and after enough, the sender is not read at all); a non-member's correctly
//! signed messages are dropped without a word; a height counts only when a verified message
//! of a member backs it; a proposer's absurd timestamp cannot overflow the clock check.

use std::sync::Arc;
use timed::consensus::bft::BftConfig;
use timed::consensus::driver::{
    ConsensusDriver, DriverConfig, NodeEvent, Output, WireMessage, MAX_FINALITY_BATCHES,
};
use timed::consensus::finality::FinalityConfig;
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, ConsensusVote, Hash32, Network, OutPoint, Proposal, SecretKey, Signature, Tier,
    TxOutput, VoteBatch, VoteKind, ATOMS_PER_TIME,
};

const NET: Network = Network::Localnet;
const NOW: u64 = 1_700_000_000_000;

struct Node {
    driver: ConsensusDriver,
    keys: Vec<SecretKey>,
    _dir: tempfile::TempDir,
}

/// A full node (no key of its own) of a four-masternode chain at genesis.
fn node() -> Node {
    let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
    let genesis = GenesisSpec {
        timestamp_ms: NOW,
        rules: Default::default(),
        allocations: vec![(keys[0].public_key().key_hash(), Amount(ATOMS_PER_TIME))],
        masternodes: keys
            .iter()
            .map(|k| {
                GenesisMasternode::new(Tier::Bronze, k, k.public_key().key_hash(), String::new())
            })
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
    let params = LedgerParams {
        network: NET,
        rewards: RewardSchedule {
            initial: Amount(ATOMS_PER_TIME),
            halving_interval: 0,
        },
    };
    let ledger = Arc::new(Ledger::open(storage, params).unwrap());
    let cfg = DriverConfig {
        network: NET,
        key: None,
        finality: FinalityConfig::new(NET),
        bft: BftConfig::new(NET, 1_000),
        pool: PoolLimits::default(),
        max_block_txs: 1_000,
    };
    let (driver, _) = ConsensusDriver::open(cfg, ledger, &genesis, NOW).unwrap();
    Node {
        driver,
        keys,
        _dir: dir,
    }
}

fn events(out: &[Output]) -> Vec<&NodeEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn points(out: &[Output]) -> Vec<(u64, u32)> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            NodeEvent::PeerMisbehaved { peer, points, .. } => Some((*peer, *points)),
            _ => None,
        })
        .collect()
}

fn forged_vote(n: &Node, height: u64, i: u8) -> ConsensusVote {
    ConsensusVote {
        kind: VoteKind::Prevote,
        height,
        round: 0,
        block_hash: None,
        validator: n.keys[1].public_key(),
        signature: Signature([i; 64]),
    }
}

#[test]
fn forged_signatures_score_and_then_the_sender_is_not_read() {
    let mut n = node();
    let out = n
        .driver
        .on_message(7, WireMessage::Vote(forged_vote(&n, 1 << 50, 1)), NOW)
        .unwrap();
    assert_eq!(points(&out), vec![(7, 50)], "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Event(NodeEvent::PeerHeight { .. })
                | Output::Broadcast(_)
                | Output::BroadcastDurable(_)
        )),
        "a forged height neither counts nor starts a sync: {out:?}"
    );
    let batch = VoteBatch {
        voter: n.keys[2].public_key(),
        set_height: 0,
        set_hash: Hash32::ZERO,
        sequence: 1,
        txids: vec![Hash32([3; 32])],
        signature: Signature([9; 64]),
    };
    let out = n
        .driver
        .on_message(7, WireMessage::VoteBatch(Arc::new(batch)), NOW)
        .unwrap();
    assert_eq!(points(&out), vec![(7, 50)]);
    // 100 points: nothing more from peer 7 is read, even a valid vote.
    let valid = ConsensusVote::sign(&n.keys[1], NET, VoteKind::Prevote, 5, 0, None);
    let out = n
        .driver
        .on_message(7, WireMessage::Vote(valid.clone()), NOW)
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
    // The same vote from another peer proves that height 4 is committed somewhere.
    let out = n
        .driver
        .on_message(8, WireMessage::Vote(valid), NOW)
        .unwrap();
    assert!(
        events(&out).contains(&&NodeEvent::PeerHeight { peer: 8, height: 4 }),
        "{out:?}"
    );
}

#[test]
fn a_non_members_signed_messages_are_dropped_without_effect() {
    let mut n = node();
    let outsider = SecretKey::from_bytes(&[42; 32]);
    let vote = ConsensusVote::sign(&outsider, NET, VoteKind::Precommit, 1 << 40, 0, None);
    let batch = VoteBatch::sign(&outsider, NET, (0, Hash32::ZERO), 1, vec![Hash32([5; 32])]);
    let genesis = n.driver.ledger().storage().block_at(0).unwrap().unwrap();
    let proposal = Proposal::sign(&outsider, NET, 1, 0, None, genesis);
    for msg in [
        WireMessage::Vote(vote),
        WireMessage::VoteBatch(Arc::new(batch)),
        WireMessage::Proposal(Arc::new(proposal)),
    ] {
        let out = n.driver.on_message(3, msg, NOW).unwrap();
        assert!(
            out.is_empty(),
            "no height, no sync request, no fault: {out:?}"
        );
    }
}

#[test]
fn invalid_transactions_and_oversized_replies_score_points() {
    let mut n = node();
    let sender = SecretKey::from_bytes(&[50; 32]);
    let mut tx = signed_transfer(
        NET,
        &sender,
        &[OutPoint::new(Hash32([1; 32]), 0)],
        vec![TxOutput {
            amount: Amount(1_000),
            key_hash: sender.public_key().key_hash(),
        }],
    );
    tx.inputs[0].signature.0[0] ^= 1;
    let tx = Arc::new(tx);
    let out = n
        .driver
        .on_message(4, WireMessage::Transaction(Arc::clone(&tx)), NOW)
        .unwrap();
    assert_eq!(points(&out), vec![(4, 20)], "{out:?}");
    let junk = Arc::new(VoteBatch::sign(
        &n.keys[0],
        NET,
        (0, n.driver.set().hash()),
        1,
        vec![Hash32([6; 32])],
    ));
    let out = n
        .driver
        .on_message(
            5,
            WireMessage::Finality {
                tx,
                batches: vec![junk; MAX_FINALITY_BATCHES + 1],
            },
            NOW,
        )
        .unwrap();
    assert_eq!(points(&out), vec![(5, 50)], "{out:?}");
}

#[test]
fn a_proposers_absurd_timestamp_cannot_overflow_the_clock_check() {
    let mut n = node();
    let height = n.driver.bft().height();
    let proposer = n.driver.set().proposer(height, 0).unwrap();
    let key = n
        .keys
        .iter()
        .find(|k| k.public_key() == proposer)
        .unwrap()
        .clone();
    for stamp in [1u64 << 63, u64::MAX, 0] {
        let mut block = n.driver.ledger().storage().block_at(0).unwrap().unwrap();
        block.header.height = height;
        block.header.timestamp_ms = stamp;
        let p = Proposal::sign(&key, NET, height, 0, None, block);
        // Sampled (it is the round's proposer) and refused as a block; never a panic.
        n.driver
            .on_message(2, WireMessage::Proposal(Arc::new(p)), NOW)
            .unwrap();
    }
}
