//! Step tables for the finality engine: each rule of DESIGN.md §4, one input at a time.

use super::*;
use crate::consensus::Masternode;
use crate::types::transfer::signed_transfer;
use crate::types::{Amount, Hash32, Tier, TxOutput};

const NET: Network = Network::Localnet;

fn keys(n: u8) -> Vec<SecretKey> {
    (1..=n).map(|i| SecretKey::from_bytes(&[i; 32])).collect()
}

fn set_of(keys: &[SecretKey], tier: Tier) -> Arc<MasternodeSet> {
    Arc::new(MasternodeSet::new(
        0,
        keys.iter()
            .enumerate()
            .map(|(i, k)| Masternode::of(k, tier, OutPoint::new(Hash32([i as u8; 32]), 0))),
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
fn a_large_set_batches_votes_less_often() {
    // 200 masternodes: a batch every 20 ms rather than every 5, so each node checks about
    // 10,000 batch signatures a second rather than 40,000.
    let ks = keys(200);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let tx = spend(&ks[0], OutPoint::new(Hash32([9; 32]), 0), 5);
    let fx = e.step(FinalityInput::Transaction(tx), 100);
    assert!(
        fx.iter()
            .any(|f| matches!(f, FinalityEffect::ScheduleBatchTimer { at: 120 })),
        "{fx:?}"
    );
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

fn member(k: &SecretKey, tier: Tier, i: u8) -> Masternode {
    Masternode::of(k, tier, OutPoint::new(Hash32([100 + i; 32]), 0))
}

fn vote(k: &SecretKey, set: &MasternodeSet, seq: u64, txids: Vec<Txid>) -> FinalityInput {
    FinalityInput::VoteBatch(Arc::new(VoteBatch::sign(k, NET, bound(set), seq, txids)))
}

fn change_set(e: &mut FinalityEngine, set: &Arc<MasternodeSet>) -> Vec<FinalityEffect> {
    e.step(
        FinalityInput::BlockCommitted {
            set: Arc::clone(set),
            confirmed: Vec::new(),
        },
        100,
    )
}

fn finalized(fx: &[FinalityEffect]) -> Vec<Txid> {
    fx.iter()
        .filter_map(|f| match f {
            FinalityEffect::Finalized { tx, .. } => Some(tx.txid()),
            _ => None,
        })
        .collect()
}

/// Five keys; S_prev: the first four as Bronze; S_cur: the same plus a Gold newcomer (the
/// fifth) holding 100 of 104, a quorum of S_cur on its own.
fn gold_joins_four_bronze() -> (Vec<SecretKey>, Arc<MasternodeSet>, Arc<MasternodeSet>) {
    let ks = keys(5);
    let old = set_of(&ks[..4], Tier::Bronze);
    let mut members: Vec<Masternode> = old.members().cloned().collect();
    members.push(member(&ks[4], Tier::Gold, 4));
    let new = Arc::new(MasternodeSet::new(1, members));
    (ks, old, new)
}

/// Two spends of one outpoint by one owner.
fn double_spend() -> (OutPoint, Arc<Transaction>, Arc<Transaction>) {
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let owner = SecretKey::from_bytes(&[70; 32]);
    (op, variant(&owner, op, 0), variant(&owner, op, 1))
}

/// A spend with an output amount that makes each variant's txid differ.
fn variant(owner: &SecretKey, op: OutPoint, n: u64) -> Arc<Transaction> {
    spend(owner, op, 1_000 + n)
}

#[test]
fn rivals_beyond_the_bound_are_refused_before_any_bookkeeping() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    for n in 0..=MAX_RIVALS as u64 {
        let tx = variant(&ks[1], op, n);
        assert_eq!(e.admits(&tx), Ok(()));
        e.step(FinalityInput::Transaction(tx), 0);
    }
    let before = e.counts();
    assert_eq!(before.known, MAX_RIVALS + 1);
    for n in 100..200 {
        let tx = variant(&ks[1], op, n);
        assert!(
            matches!(e.admits(&tx), Err(Refusal::TooManyRivals { outpoint, .. }) if outpoint == op)
        );
        let fx = e.step(FinalityInput::Transaction(tx), 1);
        assert!(fx.is_empty(), "a refused rival leaves no trace: {fx:?}");
    }
    assert_eq!(e.counts(), before);
    // A rival a third of the weight vouches for still comes in (a quorum may choose it).
    let chosen = variant(&ks[1], op, 500);
    e.step(vote(&ks[1], &set, 1, vec![chosen.txid()]), 2);
    e.step(vote(&ks[2], &set, 1, vec![chosen.txid()]), 2);
    assert_eq!(e.admits(&chosen), Ok(()));
}

#[test]
fn votes_for_unseen_txids_are_bounded_per_voter_and_expire() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let junk: Vec<Txid> = (0..MAX_UNKNOWN_PER_VOTER as u32 + 5_000)
        .map(|i| Hash32::digest("junk", &i.to_le_bytes()))
        .collect();
    for (seq, chunk) in junk.chunks(MAX_BATCH_TXIDS).enumerate() {
        e.step(vote(&ks[1], &set, seq as u64, chunk.to_vec()), 1);
    }
    assert_eq!(e.counts().unknown_tallies, MAX_UNKNOWN_PER_VOTER);
    // Another voter is not crowded out, and an honest transfer still becomes final.
    let tx = spend(&ks[2], OutPoint::new(Hash32([8; 32]), 0), 5);
    e.step(vote(&ks[2], &set, 1, vec![tx.txid()]), 2);
    e.step(vote(&ks[3], &set, 1, vec![tx.txid()]), 2);
    assert_eq!(e.weight_for(&tx.txid()), 2);
    let mut fx = e.step(FinalityInput::Transaction(Arc::clone(&tx)), 3);
    fx.extend(e.step(FinalityInput::BatchTimer, 10));
    assert_eq!(finalized(&fx), vec![tx.txid()]);
    // Junk nobody sends a body for is forgotten after the time to live.
    for _ in 0..UNKNOWN_TTL_REGOSSIPS {
        e.step(FinalityInput::Regossip, 20);
    }
    let c = e.counts();
    assert_eq!(c.unknown_tallies, 0, "{c:?}");
    assert_eq!(c.tallies, 1, "only the final transaction is still tracked");
    // Its junk batches are released with them.
    assert_eq!(c.batches, 3);
}

#[test]
fn confirming_a_spend_forgets_every_rival_and_what_pointed_to_them() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let other = OutPoint::new(Hash32([7; 32]), 1);
    let a = variant(&ks[1], op, 0);
    // A rival that also spends another outpoint: this node voted for it and locked both.
    let b = Arc::new(signed_transfer(
        NET,
        &ks[1],
        &[other, op],
        vec![TxOutput {
            amount: Amount(3),
            key_hash: ks[1].public_key().key_hash(),
        }],
    ));
    e.step(FinalityInput::Transaction(Arc::clone(&b)), 0);
    e.step(FinalityInput::BatchTimer, 5);
    e.step(FinalityInput::Transaction(Arc::clone(&a)), 6);
    e.step(vote(&ks[2], &set, 1, vec![a.txid()]), 7);
    e.step(vote(&ks[3], &set, 1, vec![b.txid()]), 7);
    assert_eq!(e.counts().known, 2);
    e.step(
        FinalityInput::BlockCommitted {
            set: Arc::clone(&set),
            confirmed: vec![Arc::clone(&a)],
        },
        8,
    );
    let c = e.counts();
    assert_eq!(
        c,
        TrackedCounts::default(),
        "nothing about the confirmed spend or its rival is left"
    );
    // `other` is free again: its only spend can never be final.
    let c2 = spend(&ks[1], other, 2);
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&c2)), 9);
    assert!(fx.contains(&FinalityEffect::PersistLock(c2)));
}

#[test]
fn regossip_rotates_through_every_pending_transaction() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let n = REGOSSIP_TXS + REGOSSIP_TXS / 2;
    for i in 0..n {
        let op = OutPoint::new(Hash32([9; 32]), i as u32);
        e.step(FinalityInput::Transaction(spend(&ks[1], op, 5)), 0);
    }
    let gossiped = |fx: Vec<FinalityEffect>| -> Vec<Txid> {
        fx.into_iter()
            .filter_map(|f| match f {
                FinalityEffect::Gossip(tx) => Some(tx.txid()),
                _ => None,
            })
            .collect()
    };
    let first = gossiped(e.step(FinalityInput::Regossip, 1));
    let second = gossiped(e.step(FinalityInput::Regossip, 2));
    assert_eq!(first.len(), REGOSSIP_TXS);
    let all: BTreeSet<Txid> = first.iter().chain(&second).copied().collect();
    assert_eq!(all.len(), n, "two rounds cover every pending transaction");
}

#[test]
fn regossip_sends_own_batches_of_decided_transactions_seldom() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&ks[0], &set);
    let decided = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    let open = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 1), 5);
    e.step(FinalityInput::Transaction(Arc::clone(&decided)), 0);
    let first = batches(&e.step(FinalityInput::BatchTimer, 5));
    e.step(FinalityInput::Transaction(Arc::clone(&open)), 6);
    let second = batches(&e.step(FinalityInput::BatchTimer, 11));
    assert_eq!(first[0].txids, vec![decided.txid()]);
    assert_eq!(second[0].txids, vec![open.txid()]);
    let resent = batches(&e.step(FinalityInput::Regossip, 12));
    assert_eq!(resent, vec![Arc::clone(&first[0]), Arc::clone(&second[0])]);
    for (seq, k) in ks.iter().enumerate().skip(1).take(2) {
        let b = VoteBatch::sign(k, NET, bound(&set), seq as u64, vec![decided.txid()]);
        e.step(FinalityInput::VoteBatch(Arc::new(b)), 13);
    }
    assert!(e.is_final(&decided.txid()));
    // The first batch did its work here: over FINAL_BATCH_REGOSSIPS regossips it goes once
    // (a peer may still lack this vote), the one still waiting for votes every time.
    let mut first_sent = 0;
    for at in 0..FINAL_BATCH_REGOSSIPS {
        let resent = batches(&e.step(FinalityInput::Regossip, 14 + at));
        assert!(resent.contains(&second[0]));
        first_sent += resent.iter().filter(|b| **b == first[0]).count();
    }
    assert_eq!(first_sent, 1);
}

#[test]
fn after_a_set_change_finality_needs_a_quorum_of_both_sets() {
    // S_prev: four Bronze. S_cur: the same plus a Gold newcomer holding 100 of 104.
    let (ks, old, new) = gold_joins_four_bronze();
    let observer = SecretKey::from_bytes(&[50; 32]);
    let mut e = engine(&observer, &old);
    change_set(&mut e, &new);
    assert_eq!(e.previous_set().hash(), old.hash());
    let tx = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    e.step(FinalityInput::Transaction(Arc::clone(&tx)), 1);
    // The newcomer alone is a quorum of S_cur, but not of S_prev: not final.
    let fx = e.step(vote(&ks[4], &new, 1, vec![tx.txid()]), 2);
    assert!(finalized(&fx).is_empty(), "{fx:?}");
    // Two old members bound to S_cur: still 2 of 4 in S_prev.
    e.step(vote(&ks[0], &new, 1, vec![tx.txid()]), 3);
    let fx = e.step(vote(&ks[1], &new, 1, vec![tx.txid()]), 3);
    assert!(finalized(&fx).is_empty(), "{fx:?}");
    // A third old member's vote bound to S_prev completes S_prev's quorum.
    let fx = e.step(vote(&ks[2], &old, 1, vec![tx.txid()]), 4);
    assert_eq!(finalized(&fx), vec![tx.txid()]);
    let FinalityEffect::Finalized { certificate, .. } = &fx[0] else {
        panic!("{fx:?}");
    };
    assert!(certificate.verify(&new, &old, NET));
    assert!(!certificate.verify(&new, &new, NET), "names both sets");
    assert!(!certificate.verify(&old, &old, NET));
}

#[test]
fn old_members_alone_do_not_finalize_under_the_new_set() {
    let (ks, old, new) = gold_joins_four_bronze();
    let mut e = engine(&SecretKey::from_bytes(&[50; 32]), &old);
    let tx = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    e.step(FinalityInput::Transaction(Arc::clone(&tx)), 1);
    e.step(vote(&ks[0], &old, 1, vec![tx.txid()]), 2);
    e.step(vote(&ks[1], &old, 1, vec![tx.txid()]), 2);
    // The set changes before the third vote: old-set votes no longer decide alone.
    change_set(&mut e, &new);
    let fx = e.step(vote(&ks[2], &old, 1, vec![tx.txid()]), 3);
    assert!(finalized(&fx).is_empty(), "{fx:?}");
    let fx = e.step(vote(&ks[4], &new, 1, vec![tx.txid()]), 4);
    assert_eq!(finalized(&fx), vec![tx.txid()]);
}

#[test]
fn batches_bound_to_a_set_not_yet_held_count_once_it_arrives() {
    let ks = keys(4);
    let old = set_of(&ks, Tier::Bronze);
    let mut members: Vec<Masternode> = old.members().cloned().collect();
    let newcomer = SecretKey::from_bytes(&[60; 32]);
    members.push(member(&newcomer, Tier::Bronze, 9));
    let new = Arc::new(MasternodeSet::new(1, members));
    let mut e = engine(&SecretKey::from_bytes(&[50; 32]), &old);
    let tx = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    e.step(FinalityInput::Transaction(Arc::clone(&tx)), 1);
    // Peers one block ahead vote under the next set.
    for (i, k) in ks.iter().chain([&newcomer]).enumerate().take(4) {
        e.step(vote(k, &new, i as u64, vec![tx.txid()]), 2);
    }
    assert_eq!(e.weight_for(&tx.txid()), 0);
    assert!(e.counts().future_txids > 0);
    let fx = change_set(&mut e, &new);
    assert_eq!(finalized(&fx), vec![tx.txid()]);
}

#[test]
fn on_a_set_change_locks_are_cast_again_and_a_new_member_joins_pending_decisions() {
    let ks = keys(5);
    let old = set_of(&ks[..4], Tier::Bronze);
    let mut members: Vec<Masternode> = old.members().cloned().collect();
    members.push(member(&ks[4], Tier::Bronze, 4));
    let new = Arc::new(MasternodeSet::new(1, members));
    let locked = spend(&ks[1], OutPoint::new(Hash32([9; 32]), 0), 5);
    let pending = spend(&ks[2], OutPoint::new(Hash32([8; 32]), 0), 5);
    // An old member recasts its lock under the new set.
    let mut member_engine = engine(&ks[0], &old);
    member_engine.step(FinalityInput::Transaction(Arc::clone(&locked)), 0);
    member_engine.step(FinalityInput::BatchTimer, 5);
    let sent = batches(&change_set(&mut member_engine, &new));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].set_hash, new.hash());
    assert_eq!(sent[0].txids, vec![locked.txid()]);
    // The newcomer knew both while not a member, and voted for neither. While its first
    // window is open it only follows quorums (a rival may be in flight to it); when the next
    // block closes the window, it votes for both.
    let mut newcomer = engine(&ks[4], &old);
    newcomer.step(FinalityInput::Transaction(Arc::clone(&locked)), 0);
    newcomer.step(FinalityInput::Transaction(Arc::clone(&pending)), 0);
    assert!(batches(&newcomer.step(FinalityInput::BatchTimer, 5)).is_empty());
    let fx = change_set(&mut newcomer, &new);
    assert!(batches(&fx).iter().all(|b| b.txids.is_empty()), "{fx:?}");
    let fx = change_set(&mut newcomer, &new);
    assert!(fx.contains(&FinalityEffect::PersistLock(Arc::clone(&locked))));
    let sent = batches(&fx);
    assert_eq!(sent.len(), 1);
    let mut expected = vec![locked.txid(), pending.txid()];
    expected.sort();
    let mut got = sent[0].txids.clone();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn a_voter_naming_two_spends_of_one_outpoint_is_reported_once_and_still_counted() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&SecretKey::from_bytes(&[50; 32]), &set);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let a = variant(&ks[3], op, 0);
    let b = variant(&ks[3], op, 1);
    let c = variant(&ks[3], op, 2);
    for tx in [&a, &b, &c] {
        e.step(FinalityInput::Transaction(Arc::clone(tx)), 0);
    }
    e.step(vote(&ks[1], &set, 1, vec![a.txid()]), 1);
    let fx = e.step(vote(&ks[1], &set, 2, vec![b.txid()]), 2);
    let reports: Vec<_> = fx
        .iter()
        .filter_map(|f| match f {
            FinalityEffect::VoteEquivocation {
                outpoint,
                first,
                second,
            } => Some((*outpoint, first.clone(), second.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 1, "{fx:?}");
    let (outpoint, first, second) = &reports[0];
    assert_eq!(*outpoint, op);
    assert_eq!((first.0.sequence, first.1.txid()), (1, a.txid()));
    assert_eq!((second.0.sequence, second.1.txid()), (2, b.txid()));
    assert!(first.0.verify(NET) && second.0.verify(NET));
    // Every node counts every signature alike, so a certificate proves the same everywhere.
    assert_eq!(e.weight_for(&b.txid()), 1, "the second vote counts too");
    // Later votes of that voter on that outpoint: counted, not reported again.
    let fx = e.step(vote(&ks[1], &set, 3, vec![c.txid()]), 3);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(e.weight_for(&c.txid()), 1);
    assert_eq!(e.counts().equivocations, 1);
}

#[test]
fn an_equivocation_seen_before_the_second_body_is_reported_when_it_arrives() {
    let ks = keys(4);
    let set = set_of(&ks, Tier::Bronze);
    let mut e = engine(&SecretKey::from_bytes(&[50; 32]), &set);
    let op = OutPoint::new(Hash32([9; 32]), 0);
    let a = variant(&ks[3], op, 0);
    let b = variant(&ks[3], op, 1);
    e.step(FinalityInput::Transaction(Arc::clone(&a)), 0);
    e.step(vote(&ks[1], &set, 1, vec![a.txid()]), 1);
    e.step(vote(&ks[1], &set, 2, vec![b.txid()]), 1);
    assert_eq!(e.weight_for(&b.txid()), 1, "unknown body: counted for now");
    let fx = e.step(FinalityInput::Transaction(Arc::clone(&b)), 2);
    assert_eq!(
        fx.iter()
            .filter(|f| matches!(f, FinalityEffect::VoteEquivocation { outpoint, .. } if *outpoint == op))
            .count(),
        1,
        "{fx:?}"
    );
    assert_eq!(e.weight_for(&b.txid()), 1, "reported, and still counted");
}

/// Seed 34 of the set-change simulation, reduced: a double spend splits the old set 2–2 in
/// this node's view, and a Gold newcomer that alone makes a quorum of the new set joins. If
/// it picked a side by itself, that side would be final under the new set alone once the
/// transition window closes, while the other may already be final under the old set on a
/// node that saw a double-voter's vote for it.
#[test]
fn a_joiner_stays_out_of_a_contested_outpoint_until_a_quorum_of_a_set_decides_it() {
    let (ks, old, new) = gold_joins_four_bronze();
    let (op, x, y) = double_spend();
    let mut gold = engine(&ks[4], &old);
    for tx in [&x, &y] {
        gold.step(FinalityInput::Transaction(Arc::clone(tx)), 0);
    }
    gold.step(vote(&ks[0], &old, 1, vec![x.txid()]), 1);
    gold.step(vote(&ks[1], &old, 1, vec![x.txid()]), 1);
    gold.step(vote(&ks[2], &old, 1, vec![y.txid()]), 1);
    gold.step(vote(&ks[3], &old, 1, vec![y.txid()]), 1);
    let fx = change_set(&mut gold, &new);
    assert!(
        batches(&fx).iter().all(|b| b.txids.is_empty()),
        "no side before a quorum: {fx:?}"
    );
    assert!(gold.locks().is_empty());
    // The double voter's other vote reaches it (the proof a finalizing node publishes): a
    // quorum of the old set names X. The newcomer follows it, and X is final.
    let fx = gold.step(vote(&ks[3], &old, 2, vec![x.txid()]), 2);
    let sent = batches(&fx);
    assert_eq!(sent.len(), 1, "{fx:?}");
    assert_eq!(
        (sent[0].set_hash, sent[0].txids.clone()),
        (new.hash(), vec![x.txid()])
    );
    assert_eq!(finalized(&fx), vec![x.txid()]);
    assert_eq!(gold.locks().get(&op), Some(&x.txid()));
    // Y can never get its vote.
    let fx = gold.step(FinalityInput::Regossip, 3);
    assert!(batches(&fx).iter().all(|b| !b.txids.contains(&y.txid())));
}

/// Seed 414 of the set-change simulation, reduced: the Gold newcomer holds one spend when it
/// joins, and its rival is still on its way (final under the old set elsewhere, by the old
/// members that saw it first). Voting for the one it holds would let its weight finalize that
/// one alone once the window closes; it waits for a quorum while its first window is open.
#[test]
fn a_joiner_follows_quorums_while_its_first_window_is_open() {
    let (ks, old, new) = gold_joins_four_bronze();
    let (op, x, y) = double_spend();
    let mut gold = engine(&ks[4], &old);
    gold.step(FinalityInput::Transaction(Arc::clone(&x)), 0);
    gold.step(vote(&ks[0], &old, 1, vec![x.txid()]), 1);
    let fx = change_set(&mut gold, &new);
    assert!(batches(&fx).iter().all(|b| b.txids.is_empty()), "{fx:?}");
    // A transaction arriving in the window is not voted for either, until a quorum names it.
    let fx = gold.step(FinalityInput::Transaction(Arc::clone(&y)), 2);
    assert!(batches(&fx).is_empty(), "{fx:?}");
    gold.step(vote(&ks[1], &old, 1, vec![y.txid()]), 3);
    gold.step(vote(&ks[2], &old, 1, vec![y.txid()]), 3);
    let fx = gold.step(vote(&ks[3], &old, 1, vec![y.txid()]), 3);
    let sent = batches(&fx);
    assert_eq!(sent.len(), 1, "{fx:?}");
    assert_eq!(sent[0].txids, vec![y.txid()]);
    assert_eq!(finalized(&fx), vec![y.txid()]);
    assert!(gold.locks().get(&op) == Some(&y.txid()));
}
