//! The driver's door on a real ledger (sled in a temp dir): what a peer's consensus messages
//! cost and earn before they reach the engines. Forged signatures and invalid transactions
//! score points (and after enough, the sender is not read at all); a non-member's correctly
//! signed messages are dropped without a word; a height counts only when a verified message
//! of a member backs it; a proposer's absurd timestamp cannot overflow the clock check.

use std::sync::Arc;
use timed::consensus::bft::BftConfig;
use timed::consensus::driver::{
    ConsensusDriver, DriverConfig, NodeEvent, Output, TimerKind, WireMessage, MAX_FINALITY_BATCHES,
};
use timed::consensus::finality::FinalityConfig;
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, CommitCertificate, CompactProposal, ConsensusVote, Hash32, Network, OutPoint, Proposal,
    SecretKey, Signature, Tier, TxOutput, VoteBatch, VoteKind, ATOMS_PER_TIME,
};

const NET: Network = Network::Localnet;
const NOW: u64 = 1_700_000_000_000;

struct Node {
    driver: ConsensusDriver,
    keys: Vec<SecretKey>,
    /// What the driver asked for when it opened (its first timers).
    started: Vec<Output>,
    _dir: tempfile::TempDir,
}

/// A full node (no key of its own) of a four-masternode chain at genesis.
fn node() -> Node {
    node_with(None)
}

/// A node of that chain, a masternode if given one of its keys.
fn node_with(key: Option<SecretKey>) -> Node {
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
        key,
        finality: FinalityConfig::new(NET),
        bft: BftConfig::new(NET, 1_000),
        pool: PoolLimits::default(),
        max_block_txs: 1_000,
    };
    let (driver, started) = ConsensusDriver::open(cfg, ledger, &genesis, NOW).unwrap();
    Node {
        driver,
        keys,
        started,
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

/// The masternode that proposes round 0 of height 1, run until its proposal goes out; with
/// the compact form it sent.
fn proposer() -> (Node, Arc<CompactProposal>) {
    let mut p = node_with(Some(proposer_key()));
    let cp = run_until(&mut p, |o| match o {
        Output::Relay(WireMessage::CompactProposal(cp)) => Some(Arc::clone(cp)),
        _ => None,
    });
    (p, cp)
}

/// The key of the masternode that proposes round 0 of height 1.
fn proposer_key() -> SecretKey {
    let n = node();
    (n.keys.iter())
        .find(|k| n.driver.set().proposer(1, 0) == Some(k.public_key()))
        .unwrap()
        .clone()
}

/// Runs `p` from its start (its timers in order, its block work inline, as the simulation
/// does) until `pick` takes one of its outputs.
fn run_until<T>(p: &mut Node, mut pick: impl FnMut(&Output) -> Option<T>) -> T {
    let mut timers: Vec<(u64, TimerKind)> = Vec::new();
    let mut out = std::mem::take(&mut p.started);
    let mut now = NOW;
    for _ in 0..50 {
        let mut built = Vec::new();
        for o in out {
            if let Some(found) = pick(&o) {
                return found;
            }
            match o {
                Output::Timer { timer, at } => timers.push((at, timer)),
                Output::BuildProposal(request) => built.push(request.build(p.driver.ledger())),
                _ => {}
            }
        }
        out = Vec::new();
        for b in built {
            out.extend(p.driver.on_proposal_built(b, now).unwrap());
        }
        if !out.is_empty() {
            continue;
        }
        timers.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let (at, timer) = timers.pop().expect("a timer to run");
        now = at;
        out = p.driver.on_timer(timer, at).unwrap();
    }
    panic!("the output looked for never came");
}

/// Block work runs beside the owner, so a block can be committed while this node's proposal
/// is built or another's is checked: the late result is dropped, neither proposed nor voted
/// on, and the node goes on at the next height.
#[test]
fn block_work_that_finishes_after_a_commit_is_dropped() {
    let (first, cp) = proposer();
    let block = Arc::clone(&first.driver.bft().proposal(1, 0).expect("proposed").block);
    let certificate = CommitCertificate {
        height: 1,
        round: 0,
        block_hash: block.hash(),
        precommits: (first.keys.iter())
            .map(|k| ConsensusVote::sign(k, NET, VoteKind::Precommit, 1, 0, Some(block.hash())))
            .collect(),
    };
    let committed = || WireMessage::Blocks(vec![(Arc::clone(&block), certificate.clone())]);

    // The same masternode on another machine, asked to build that round's proposal.
    let mut builder = node_with(Some(proposer_key()));
    let request = run_until(&mut builder, |o| match o {
        Output::BuildProposal(r) => Some(r.clone()),
        _ => None,
    });
    let built = request.build(builder.driver.ledger());
    // A full node checking the proposal.
    let mut checker = node();
    let out = (checker.driver)
        .on_message(7, WireMessage::CompactProposal(Arc::clone(&cp)), NOW)
        .unwrap();
    let check = out
        .iter()
        .find_map(|o| match o {
            Output::CheckProposal(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the proposal is checked beside the owner");
    let checked = check.run(checker.driver.ledger());

    // Block 1 is committed (fetched by sync here) before either result comes back.
    for n in [&mut builder, &mut checker] {
        n.driver.on_message(5, committed(), NOW).unwrap();
        assert_eq!(n.driver.ledger().height(), Some(1), "block 1 committed");
    }
    let out = builder.driver.on_proposal_built(built, NOW).unwrap();
    assert!(
        sent(&out).is_empty(),
        "a stale proposal is not proposed: {out:?}"
    );
    let out = checker.driver.on_proposal_checked(checked, NOW).unwrap();
    assert!(
        sent(&out).is_empty(),
        "a stale check is not voted on: {out:?}"
    );
    // Both go on at height 2 as if the late work had never been asked for.
    for n in [&builder, &checker] {
        assert_eq!(n.driver.bft().height(), 2);
    }
}

fn sent(out: &[Output]) -> Vec<&Output> {
    out.iter()
        .filter(|o| !matches!(o, Output::Event(_) | Output::Timer { .. }))
        .collect()
}

#[test]
fn a_compact_proposal_is_filled_in_passed_on_and_served_in_full_once() {
    let (_p, cp) = proposer();
    let mut n = node();
    let out = n
        .driver
        .on_message(7, WireMessage::CompactProposal(Arc::clone(&cp)), NOW)
        .unwrap();
    assert!(
        out.contains(&Output::Relay(WireMessage::CompactProposal(Arc::clone(
            &cp
        )))),
        "{out:?}"
    );
    let held = Arc::clone(n.driver.bft().proposal(1, 0).expect("the engine holds it"));
    assert_eq!(held.block.hash(), cp.header.hash());
    // A second copy (another peer relays it) costs a lookup and sends nothing.
    let again = n
        .driver
        .on_message(8, WireMessage::CompactProposal(Arc::clone(&cp)), NOW)
        .unwrap();
    assert!(sent(&again).is_empty(), "{again:?}");
    let ask = || WireMessage::GetProposal {
        height: 1,
        round: 0,
    };
    let out = n.driver.on_message(9, ask(), NOW).unwrap();
    assert_eq!(out, vec![Output::SendTo(9, WireMessage::Proposal(held))]);
    let out = n.driver.on_message(9, ask(), NOW).unwrap();
    assert!(out.is_empty(), "a whole block once per peer: {out:?}");
}

#[test]
fn a_compact_proposal_altered_in_transit_scores_its_relay_and_the_genuine_copy_still_counts() {
    let (_p, cp) = proposer();
    let mut n = node();
    let mut altered = (*cp).clone();
    altered.txids.push(Hash32([7; 32]));
    let out = n
        .driver
        .on_message(7, WireMessage::CompactProposal(Arc::new(altered)), NOW)
        .unwrap();
    assert_eq!(points(&out), vec![(7, 100)], "{out:?}");
    assert!(sent(&out).is_empty(), "nothing passed on: {out:?}");
    assert!(n.driver.bft().proposal(1, 0).is_none());
    n.driver
        .on_message(8, WireMessage::CompactProposal(cp), NOW)
        .unwrap();
    assert!(n.driver.bft().proposal(1, 0).is_some());
}

#[test]
fn a_compact_proposal_asks_its_senders_for_what_is_not_final_here_and_a_later_one_waits() {
    let (p, cp) = proposer();
    // The proposer's block with one more transfer, which no other node holds final.
    let mut full = (**p.driver.bft().proposal(1, 0).unwrap()).clone();
    let owner = SecretKey::from_bytes(&[60; 32]);
    let transfer = signed_transfer(
        NET,
        &owner,
        &[OutPoint::new(Hash32([2; 32]), 0)],
        vec![TxOutput {
            amount: Amount(1_000),
            key_hash: owner.public_key().key_hash(),
        }],
    );
    let txid = transfer.txid();
    let block = Arc::make_mut(&mut full.block);
    block.transactions.push(std::sync::Arc::new(transfer));
    block.seal_roots();
    let key = (p.keys.iter())
        .find(|k| k.public_key() == cp.proposer)
        .unwrap();
    let signed = Proposal::sign(key, NET, 1, 0, None, full.block.clone());
    let cp = Arc::new(CompactProposal::of(&signed).unwrap());
    // The same block as another member's proposal of the next height: kept, not asked for.
    let mut later = (*full.block).clone();
    later.header.height = 2;
    let later = Proposal::sign(&p.keys[0], NET, 2, 0, None, later);
    let later = Arc::new(CompactProposal::of(&later).unwrap());
    let mut n = node();
    let out = n
        .driver
        .on_message(9, WireMessage::CompactProposal(later), NOW)
        .unwrap();
    assert!(sent(&out).is_empty(), "{out:?}");
    for (from, asked) in [(7, true), (8, true), (8, false)] {
        let out = n
            .driver
            .on_message(from, WireMessage::CompactProposal(Arc::clone(&cp)), NOW)
            .unwrap();
        let ask = Output::SendTo(from, WireMessage::GetFinality(txid));
        let expected = if asked { vec![&ask] } else { Vec::new() };
        assert_eq!(sent(&out), expected, "from {from}");
    }
    assert!(n.driver.bft().proposal(1, 0).is_none(), "it waits");
}

#[test]
fn a_compact_proposal_filled_in_to_another_witness_root_is_fetched_whole_from_each_sender_once() {
    let (p, _) = proposer();
    let mut n = node();
    // A transfer final here: the genesis allocation of key 0, voted final by three of four.
    let owner = n.keys[0].clone();
    let (coin, _) = n
        .driver
        .ledger()
        .address_utxos(&owner.public_key().key_hash())
        .unwrap()[0];
    let tx = signed_transfer(
        NET,
        &owner,
        &[coin],
        vec![TxOutput {
            amount: Amount(ATOMS_PER_TIME / 2),
            key_hash: owner.public_key().key_hash(),
        }],
    );
    let txid = tx.txid();
    n.driver
        .on_message(3, WireMessage::Transaction(Arc::new(tx.clone())), NOW)
        .unwrap();
    let set = (0, n.driver.set().hash());
    for (seq, key) in n.keys[1..].iter().enumerate() {
        let batch = VoteBatch::sign(key, NET, set, seq as u64 + 1, vec![txid]);
        n.driver
            .on_message(4, WireMessage::VoteBatch(Arc::new(batch)), NOW)
            .unwrap();
    }
    assert!(n.driver.ledger().final_tx(&txid).is_some(), "final here");
    // The proposer's block carries the same transfer under another signature.
    let mut full = (**p.driver.bft().proposal(1, 0).unwrap()).clone();
    let mut other = tx;
    other.inputs[0].signature.0[0] ^= 1;
    let block = Arc::make_mut(&mut full.block);
    block.transactions.push(std::sync::Arc::new(other));
    block.seal_roots();
    let proposer = full.proposer;
    let key = p.keys.iter().find(|k| k.public_key() == proposer).unwrap();
    let signed = Proposal::sign(key, NET, 1, 0, None, full.block);
    let cp = Arc::new(CompactProposal::of(&signed).unwrap());
    for (from, asked) in [(7, true), (8, true), (8, false)] {
        let out = n
            .driver
            .on_message(from, WireMessage::CompactProposal(Arc::clone(&cp)), NOW)
            .unwrap();
        let ask = Output::SendTo(
            from,
            WireMessage::GetProposal {
                height: 1,
                round: 0,
            },
        );
        let expected = if asked { vec![&ask] } else { Vec::new() };
        assert_eq!(sent(&out), expected, "from {from}");
        assert!(points(&out).is_empty(), "nobody is at fault: {out:?}");
    }
    assert!(n.driver.bft().proposal(1, 0).is_none(), "it waits");
    // The whole proposal comes; a later copy of the compact form asks nothing more.
    n.driver
        .on_message(7, WireMessage::Proposal(Arc::new(signed)), NOW)
        .unwrap();
    assert!(n.driver.bft().proposal(1, 0).is_some());
    let out = n
        .driver
        .on_message(9, WireMessage::CompactProposal(cp), NOW)
        .unwrap();
    assert!(sent(&out).is_empty(), "{out:?}");
}
