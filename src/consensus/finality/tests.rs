//! Step tables for the finality engine: each rule of DESIGN.md §4, one input at a time.

use super::*;
use crate::consensus::Masternode;
use crate::types::{Amount, Hash32, Tier, TxOutput};
use crate::wallet::transfer::signed_transfer;

const NET: Network = Network::Localnet;

fn keys(n: u8) -> Vec<SecretKey> {
    (1..=n).map(|i| SecretKey::from_bytes(&[i; 32])).collect()
}

fn set_of(keys: &[SecretKey], tier: Tier) -> Arc<MasternodeSet> {
    Arc::new(MasternodeSet::new(
        0,
        keys.iter().enumerate().map(|(i, k)| Masternode {
            operator_key: k.public_key(),
            tier,
            collateral: OutPoint::new(Hash32([i as u8; 32]), 0),
            p2p_addr: String::new(),
            registered_height: 0,
        }),
    ))
}

/// What a batch cast under `set` names it by.
fn bound(set: &MasternodeSet) -> (u64, Hash32) {
    (set.height(), set.hash())
}

fn spend(owner: &SecretKey, op: OutPoint, amount: u64) -> Arc<Transaction> {
    Arc::new(signed_transfer(
        NET,
        owner,
        &[op],
        vec![TxOutput {
            amount: Amount(amount),
            key_hash: owner.public_key().key_hash(),
        }],
    ))
}

fn engine(key: &SecretKey, set: &Arc<MasternodeSet>) -> FinalityEngine {
    FinalityEngine::new(
        FinalityConfig::new(NET),
        Some(key.clone()),
        Arc::clone(set),
        Vec::new(),
        Vec::new(),
        0,
    )
}

fn batches(fx: &[FinalityEffect]) -> Vec<Arc<VoteBatch>> {
    fx.iter()
        .filter_map(|e| match e {
            FinalityEffect::BroadcastVotes(b) => Some(Arc::clone(b)),
            _ => None,
        })
        .collect()
}

#[test]
fn locks_are_persisted_before_the_vote_leaves() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let tx = spend(&ks[0], OutPoint::new(Hash32([9; 32]), 0), 5);
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&tx)), 0);
    assert_eq!(fx[0], FinalityEffect::PersistLock(Arc::clone(&tx)));
    assert!(matches!(
        fx[1],
        FinalityEffect::ScheduleBatchTimer { at: 5 }
    ));
    let fx = e.step(FinalityInput::BatchTimer, 5);
    let sent = batches(&fx);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].txids, vec![tx.txid()]);
    // Its own vote counts.
    assert_eq!(e.weight_for(&tx.txid()), 1);
}

#[test]
fn never_votes_for_two_spends_of_one_outpoint() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let a = spend(&ks[1], op, 5);
    let b = spend(&ks[1], op, 6);
    e.step(FinalityInput::Transaction(Arc::clone(&a)), 0);
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&b)), 1);
    assert!(fx.iter().any(|f| matches!(f, FinalityEffect::ConflictDetected { first, second, .. } if *first == a.txid() && *second == b.txid())));
    assert!(!fx
        .iter()
        .any(|f| matches!(f, FinalityEffect::PersistLock(_))));
    let sent = batches(&e.step(FinalityInput::BatchTimer, 5));
    assert_eq!(sent[0].txids, vec![a.txid()]);
}

#[test]
fn final_at_more_than_two_thirds_counting_each_voter_once() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let tx = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    e.step(FinalityInput::Transaction(Arc::clone(&tx)), 0);
    e.step(FinalityInput::BatchTimer, 5);
    let vote =
        |k: &SecretKey, seq| Arc::new(VoteBatch::sign(k, NET, bound(&set), seq, vec![tx.txid()]));
    // The same voter twice, in two batches: still one vote.
    assert!(e
        .step(FinalityInput::VoteBatch(vote(&ks[1], 1)), 6)
        .is_empty());
    assert!(e
        .step(FinalityInput::VoteBatch(vote(&ks[1], 2)), 6)
        .is_empty());
    assert_eq!(e.weight_for(&tx.txid()), 2);
    // A non-member's vote is ignored.
    let outsider = SecretKey::from_bytes(&[99; 32]);
    assert!(e
        .step(FinalityInput::VoteBatch(vote(&outsider, 1)), 6)
        .is_empty());
    assert_eq!(e.weight_for(&tx.txid()), 2);
    // Third of four: 3 > 2/3 * 4.
    let fx = e.step(FinalityInput::VoteBatch(vote(&ks[2], 1)), 7);
    let FinalityEffect::Finalized {
        tx: done,
        certificate,
    } = &fx[0]
    else {
        panic!("expected finality, got {fx:?}");
    };
    assert_eq!(done.txid(), tx.txid());
    assert_eq!(certificate.batches.len(), 3);
    assert!(certificate.verify(&set, &set, NET));
    assert!(e.is_final(&tx.txid()));
}

#[test]
fn votes_for_an_unknown_transaction_fetch_it() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let tx = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    for (i, k) in ks.iter().enumerate().skip(1) {
        let b = Arc::new(VoteBatch::sign(
            k,
            NET,
            bound(&set),
            i as u64,
            vec![tx.txid()],
        ));
        let fx = e.step(FinalityInput::VoteBatch(b), 1);
        // At quorum the body is asked for at once.
        let expected = if i == 3 {
            vec![FinalityEffect::FetchTransaction(tx.txid())]
        } else {
            Vec::new()
        };
        assert_eq!(fx, expected, "vote {i}");
    }
    // Below quorum, a vote for an unknown transaction leads to a fetch at the second regossip
    // after it (it usually arrives on its own first).
    let other = spend(&ks[2], OutPoint::new(Hash32([8; 32]), 0), 5);
    let b = Arc::new(VoteBatch::sign(
        &ks[1],
        NET,
        bound(&set),
        50,
        vec![other.txid()],
    ));
    e.step(FinalityInput::VoteBatch(b), 1);
    let fetches = |fx: &[FinalityEffect]| {
        fx.iter()
            .filter(|f| matches!(f, FinalityEffect::FetchTransaction(t) if *t == other.txid()))
            .count()
    };
    assert_eq!(fetches(&e.step(FinalityInput::Regossip, 2)), 0);
    assert_eq!(fetches(&e.step(FinalityInput::Regossip, 3)), 1);
    assert_eq!(
        fetches(&e.step(FinalityInput::Regossip, 4)),
        0,
        "asked once"
    );
    // The body arrives: final at once, even though it conflicts with nothing we voted.
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&tx)), 2);
    assert!(matches!(&fx[0], FinalityEffect::Finalized { .. }));
}

#[test]
fn after_a_restart_the_same_transaction_is_voted_again_and_a_conflict_never() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let a = spend(&ks[1], op, 5);
    let b = spend(&ks[1], op, 6);
    // The ledger held the lock for `a` when the node stopped.
    let mut e = FinalityEngine::new(
        FinalityConfig::new(NET),
        Some(ks[0].clone()),
        Arc::clone(&set),
        vec![(op, a.txid())],
        Vec::new(),
        100,
    );
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&b)), 0);
    assert!(fx.iter().all(|f| !matches!(
        f,
        FinalityEffect::PersistLock(_) | FinalityEffect::ScheduleBatchTimer { .. }
    )));
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&a)), 0);
    assert!(
        !fx.iter()
            .any(|f| matches!(f, FinalityEffect::PersistLock(_))),
        "lock already durable"
    );
    let sent = batches(&e.step(FinalityInput::BatchTimer, 5));
    assert_eq!(sent[0].txids, vec![a.txid()]);
    assert_eq!(e.weight_for(&a.txid()), 1);
}
