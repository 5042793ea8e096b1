//! Issue 11 §1 and §6 on a real database: what layer 1 makes final, a block can include.
//!
//! A registration claims its collateral at layer 1 like an input (so a spend of it conflicts
//! instead of racing it into a block), its collateral must be confirmed on both layers, and the
//! operator key must sign it. The block builder tries each candidate against the block so far,
//! stays within the byte and count limits, carries the rest and leaves out what the rule
//! refuses, never failing the block.

mod chain;

use chain::{key, kh, TestChain, FUNDS, NET};
use timed::ledger::LedgerError;
use timed::mempool::{Mempool, PoolError, PoolLimits};
use timed::types::codec::MAX_BLOCK_BYTES;
use timed::types::transfer::sign_all;
use timed::types::{
    Amount, BlsPublicKey, BlsSecretKey, BlsSignature, Canonical, MasternodeRegistration, OutPoint,
    SecretKey, Signature, Tier, Transaction, TxError, TxPayload, UtxoState, ATOMS_PER_TIME,
};

fn state(c: &TestChain, op: &OutPoint) -> Option<UtxoState> {
    c.ledger.utxo(op).map(|r| r.state)
}

/// Key 1 with a confirmed Bronze collateral and a confirmed fee coin of its own.
struct Owner {
    key: SecretKey,
    collateral: OutPoint,
    fee_coin: OutPoint,
}

const FEE_COIN: Amount = Amount(100 * ATOMS_PER_TIME - 10_000);

/// A chain where key 1 holds a confirmed collateral (from eleven genesis outputs) and a fee
/// coin; genesis outputs 33.. stay free for other tests.
fn chain_with_owner(extra: usize) -> (TestChain, Owner) {
    let mut c = TestChain::new(33 + extra);
    let owner = key(1);
    let ins: Vec<OutPoint> = (0..33).step_by(3).map(|i| c.genesis_outputs[i]).collect();
    let funding = c.transfer(
        &owner,
        &ins,
        &[
            (kh(&owner), Tier::Bronze.collateral()),
            (kh(&owner), FEE_COIN),
        ],
    );
    c.commit(vec![funding.clone()]);
    (
        c,
        Owner {
            key: owner,
            collateral: OutPoint::new(funding.txid(), 0),
            fee_coin: OutPoint::new(funding.txid(), 1),
        },
    )
}

/// A registration of `operator` on `collateral`, paid from `fee_coin` (owned by `owner`),
/// signed by the owner and by `signer` as the operator.
fn registration(
    c: &TestChain,
    owner: &SecretKey,
    fee_coin: OutPoint,
    collateral: OutPoint,
    operator: &SecretKey,
    signer: &SecretKey,
) -> Transaction {
    let mut tx = c.transfer(
        owner,
        &[fee_coin],
        &[(kh(owner), Amount(FEE_COIN.0 - 10_000))],
    );
    tx.payload = TxPayload::from(MasternodeRegistration::new(
        Tier::Bronze,
        collateral,
        operator,
        "127.0.0.1:24100".into(),
    ));
    sign_all(NET, &mut tx, owner);
    tx.sign_operator(NET, signer);
    tx
}

fn register(c: &TestChain, o: &Owner, operator: &SecretKey) -> Transaction {
    registration(c, &o.key, o.fee_coin, o.collateral, operator, operator)
}

/// A transfer of the collateral away.
fn spend_collateral(c: &TestChain, o: &Owner) -> Transaction {
    c.transfer(
        &o.key,
        &[o.collateral],
        &[(kh(&key(9)), Amount(Tier::Bronze.collateral().0 - 10_000))],
    )
}

#[test]
fn a_pending_registration_locks_its_collateral_against_a_spend() {
    let (c, o) = chain_with_owner(0);
    let reg = register(&c, &o, &key(7));
    let spend = spend_collateral(&c, &o);
    assert!(c.ledger.lock_inputs(&reg).unwrap());
    assert_eq!(
        state(&c, &o.collateral),
        Some(UtxoState::Locked(reg.txid()))
    );
    assert!(matches!(
        c.ledger.check_transaction(&spend),
        Err(LedgerError::InputLocked { locked_by, .. }) if locked_by == reg.txid()
    ));
    assert!(c.ledger.lock_inputs(&spend).is_err());
    // Releasing the registration frees the collateral with its input.
    assert_eq!(c.ledger.release_locks(&reg).unwrap(), 2);
    assert_eq!(state(&c, &o.collateral), Some(UtxoState::Unspent));
    assert!(c.ledger.check_transaction(&spend).is_ok());
}

#[test]
fn a_final_registration_holds_its_collateral_until_its_block_then_frees_it() {
    let (mut c, o) = chain_with_owner(0);
    let reg = register(&c, &o, &key(7));
    let spend = spend_collateral(&c, &o);
    assert!(c.finalize(&reg).unwrap());
    assert_eq!(
        state(&c, &o.collateral),
        Some(UtxoState::SpentFinalized(reg.txid()))
    );
    // Layer 1 refuses the spend, and so does a block placing it.
    assert!(matches!(
        c.ledger.check_transaction(&spend),
        Err(LedgerError::InputSpent { spent_by, .. }) if spent_by == reg.txid()
    ));
    assert!(matches!(
        c.finalize(&spend),
        Err(LedgerError::InputSpent { .. })
    ));
    assert!(matches!(
        c.try_next_block(vec![spend.clone()]),
        Err(LedgerError::ConflictsWithFinal { .. })
    ));
    // Once the registration is in a block, the collateral is an ordinary output again:
    // spending it is how the masternode leaves.
    c.commit(vec![reg.clone()]);
    assert_eq!(state(&c, &o.collateral), Some(UtxoState::Unspent));
    let c = c.reopened();
    assert_eq!(
        state(&c, &o.collateral),
        Some(UtxoState::Unspent),
        "the release is on disk"
    );
    let mut c = c;
    assert!(c.ledger.check_transaction(&spend).is_ok());
    c.ledger.lock_inputs(&spend).unwrap();
    c.finalize(&spend).unwrap();
    c.commit(vec![spend.clone()]);
    assert!(c.ledger.utxo(&o.collateral).is_none());
}

#[test]
fn a_final_spend_of_the_collateral_refuses_the_registration() {
    let (c, o) = chain_with_owner(0);
    let reg = register(&c, &o, &key(7));
    let spend = spend_collateral(&c, &o);
    assert!(c.finalize(&spend).unwrap());
    assert!(matches!(
        c.ledger.check_transaction(&reg),
        Err(LedgerError::InputSpent { spent_by, .. }) if spent_by == spend.txid()
    ));
    assert!(c.ledger.lock_inputs(&reg).is_err());
    assert!(matches!(
        c.finalize(&reg),
        Err(LedgerError::InputSpent { .. })
    ));
}

#[test]
fn a_collateral_must_be_confirmed_on_both_layers() {
    let (mut c, o) = chain_with_owner(3);
    // A final, unconfirmed output of exactly the collateral amount.
    let owner = &o.key;
    let parent = c.transfer(
        owner,
        &[o.collateral],
        &[(kh(owner), Amount(Tier::Bronze.collateral().0))],
    );
    // Pays no fee: fine at the ledger level (fees are the pool's policy).
    c.finalize(&parent).unwrap();
    let fresh = OutPoint::new(parent.txid(), 0);
    let reg = registration(&c, owner, o.fee_coin, fresh, &key(7), &key(7));
    assert!(matches!(
        c.ledger.check_transaction(&reg),
        Err(LedgerError::CollateralUnconfirmed { outpoint, .. }) if outpoint == fresh
    ));
    assert!(c.ledger.lock_inputs(&reg).is_err());
    // The block rule agrees, even with the parent placed first in the same block.
    assert!(matches!(
        c.try_next_block(vec![parent.clone(), reg.clone()]),
        Err(LedgerError::CollateralUnconfirmed { .. })
    ));
    // Once the parent is confirmed, the same registration is accepted.
    c.commit(vec![parent]);
    assert!(c.ledger.check_transaction(&reg).is_ok());
    c.commit(vec![reg]);
}

#[test]
fn a_block_places_one_claim_per_collateral_and_no_spend_after_it() {
    let (mut c, o) = chain_with_owner(3);
    let reg = register(&c, &o, &key(7));
    let spend = spend_collateral(&c, &o);
    // A second registration of the same collateral, paid from another coin of the owner.
    let other_fee = c.genesis_outputs[33];
    let mut second = c.transfer(
        &o.key,
        &[other_fee],
        &[(kh(&o.key), Amount(FUNDS.0 - 10_000))],
    );
    second.payload = TxPayload::from(MasternodeRegistration::new(
        Tier::Bronze,
        o.collateral,
        &key(8),
        "127.0.0.1:24200".into(),
    ));
    sign_all(NET, &mut second, &o.key);
    second.sign_operator(NET, &key(8));
    // Layer 1: the first claim wins.
    c.ledger.lock_inputs(&reg).unwrap();
    assert!(matches!(
        c.ledger.check_transaction(&second),
        Err(LedgerError::InputLocked { .. })
    ));
    c.ledger.release_locks(&reg).unwrap();
    // The block rule: the same claim, within one block.
    for later in [second.clone(), spend.clone()] {
        let built = c
            .build(vec![reg.clone(), later.clone()], usize::MAX)
            .unwrap();
        assert_eq!(
            built.block.transactions.len(),
            2,
            "coinbase and the registration"
        );
        assert!(matches!(
            &built.skipped[..],
            [(txid, LedgerError::CollateralClaimed { registration, .. })]
                if *txid == later.txid() && *registration == reg.txid()
        ));
    }
}

#[test]
fn a_registration_needs_its_operators_signature() {
    let (mut c, o) = chain_with_owner(0);
    let victim = key(7);
    let attacker = key(8);
    // The attacker names the victim's operator key with their own collateral and signs the
    // operator part with their own key (or leaves it empty): refused at the door...
    let forged = registration(&c, &o.key, o.fee_coin, o.collateral, &victim, &attacker);
    let err = Mempool::verify(NET, forged.clone()).unwrap_err();
    assert!(
        matches!(&err, PoolError::Invalid(TxError::BadOperatorSignature { txid }) if *txid == forged.txid()),
        "{err}"
    );
    let mut empty = forged.clone();
    if let TxPayload::MasternodeRegistration(r) = &mut empty.payload {
        r.operator_signature = Signature([0; 64]);
    }
    assert!(Mempool::verify(NET, empty).is_err());
    assert_eq!(
        forged.verify_signatures(NET),
        Err(TxError::BadOperatorSignature {
            txid: forged.txid()
        })
    );
    // ...and in a block: the builder leaves it out, and a block carrying it is invalid.
    let built = c.build(vec![forged.clone()], usize::MAX).unwrap();
    assert!(matches!(
        &built.skipped[..],
        [(_, LedgerError::Tx(TxError::BadOperatorSignature { .. }))]
    ));
    let good = register(&c, &o, &victim);
    assert_eq!(
        good.txid(),
        forged.txid(),
        "the operator signature is not part of the txid"
    );
    let mut block = c.next_block(vec![good.clone()]);
    block.transactions[1] = std::sync::Arc::new(forged.clone());
    // Roots resealed, so the operator signature is what the block check must catch (left
    // alone, the witness root alone would refuse the swapped body).
    block.seal_roots();
    assert!(matches!(
        c.ledger.apply_block(&block, &TestChain::cert(&block)),
        Err(LedgerError::Tx(TxError::BadOperatorSignature { .. }))
    ));
    // The victim's own registration passes everywhere.
    assert!(Mempool::verify(NET, good.clone()).is_ok());
    assert!(c.ledger.check_transaction(&good).is_ok());
    c.commit(vec![good.clone()]);
    assert_eq!(
        Transaction::from_bytes(&good.to_bytes()).unwrap(),
        good,
        "the signature round-trips"
    );
}

/// Rogue-key protection: a registration's BLS key comes with a proof that its registrant holds
/// the secret, bound to the operator key. Another node's key and proof, copied whole, or a key
/// with no proof, are refused at the door, by the builder and in a block, even with every
/// ed25519 signature good.
#[test]
fn a_registration_needs_a_proof_of_possession_of_its_bls_key() {
    let (mut c, o) = chain_with_owner(0);
    let operator = key(7);
    let own = BlsSecretKey::from_operator(&operator);
    let copied = MasternodeRegistration::new(Tier::Bronze, o.collateral, &key(8), "x".into());
    let cases = [
        // Another node's key and proof, copied whole.
        (copied.bls_key, copied.bls_pop),
        // The node's own key, with a proof made for another operator key.
        (
            own.public_key(),
            own.proof_of_possession(&key(8).public_key()),
        ),
        // A key that is not a point, with no proof.
        (BlsPublicKey([0; 48]), BlsSignature([0; 96])),
    ];
    let mut bad = Vec::new();
    for (bls_key, bls_pop) in cases {
        let mut tx = register(&c, &o, &operator);
        if let TxPayload::MasternodeRegistration(r) = &mut tx.payload {
            r.bls_key = bls_key;
            r.bls_pop = bls_pop;
        }
        sign_all(NET, &mut tx, &o.key);
        tx.sign_operator(NET, &operator);
        bad.push(tx);
    }
    for tx in &bad {
        let txid = tx.txid();
        // The door's stateless checks pass (every signature is good); the pool checks the
        // proof last, once the ledger has found the inputs real and the fee paid.
        let verified = Mempool::verify(NET, tx.clone()).unwrap();
        let mut pool = Mempool::new(NET, PoolLimits::default());
        let err = pool.insert(verified, &c.ledger, 0).unwrap_err();
        assert!(
            matches!(&err, PoolError::Invalid(TxError::BadBlsPossession { txid: t }) if *t == txid),
            "{err}"
        );
        assert!(err.is_peer_fault(), "a peer sending it is penalized");
        assert!(err.to_string().contains("proof of"), "{err}");
        assert_eq!(
            tx.verify_signatures(NET),
            Err(TxError::BadBlsPossession { txid })
        );
        let built = c.build(vec![tx.clone()], usize::MAX).unwrap();
        assert!(matches!(
            &built.skipped[..],
            [(_, LedgerError::Tx(TxError::BadBlsPossession { .. }))]
        ));
        let mut block = c.next_block(vec![register(&c, &o, &operator)]);
        block.transactions[1] = std::sync::Arc::new(tx.clone());
        block.seal_roots();
        assert!(matches!(
            c.ledger.apply_block(&block, &TestChain::cert(&block)),
            Err(LedgerError::Tx(TxError::BadBlsPossession { .. }))
        ));
    }
    let good = register(&c, &o, &operator);
    let mut pool = Mempool::new(NET, PoolLimits::default());
    let verified = Mempool::verify(NET, good.clone()).unwrap();
    assert!(pool.insert(verified, &c.ledger, 0).is_ok());
    c.commit(vec![good]);
}

#[test]
fn the_builder_carries_what_does_not_fit_and_skips_what_the_rule_refuses() {
    let (mut c, o) = chain_with_owner(6);
    // Count limit: two of five independent payments, the rest carried.
    let payments: Vec<Transaction> = (33..38)
        .map(|i| {
            c.transfer(
                c.owner_of(i),
                &[c.genesis_outputs[i]],
                &[(kh(&key(9)), Amount(FUNDS.0 - 10_000))],
            )
        })
        .collect();
    let built = c.build(payments.clone(), 2).unwrap();
    assert_eq!(built.block.transactions.len(), 3);
    assert_eq!(built.carried, 3);
    assert!(built.skipped.is_empty());

    // An unplaceable candidate (a spend of the collateral placed before its registration, the
    // old halt) is left out; its child is carried with it, and the rest still go in.
    let spend = spend_collateral(&c, &o);
    let child = c.transfer(
        &key(9),
        &[OutPoint::new(spend.txid(), 0)],
        &[(kh(&key(9)), Amount(Tier::Bronze.collateral().0 - 20_000))],
    );
    let reg = register(&c, &o, &key(7));
    let mut candidates = vec![reg.clone(), spend.clone(), child];
    candidates.extend(payments.iter().cloned());
    let built = c.build(candidates, usize::MAX).unwrap();
    assert_eq!(built.skipped.len(), 1);
    assert_eq!(built.skipped[0].0, spend.txid());
    assert_eq!(built.carried, 1, "the child waits for its parent");
    assert_eq!(built.block.transactions.len(), 1 + 1 + payments.len());
    c.ledger
        .apply_block(&built.block, &TestChain::cert(&built.block))
        .unwrap();
}

/// Signs a transaction whose inputs belong to different keys: each input with its own.
fn sign_each(tx: &mut Transaction, owners: &[SecretKey]) {
    tx.forget_txid();
    for (input, k) in tx.inputs.iter_mut().zip(owners) {
        input.public_key = k.public_key();
    }
    let msg = Transaction::signing_message(NET, &tx.txid());
    for (input, k) in tx.inputs.iter_mut().zip(owners) {
        input.signature = k.sign(&msg);
    }
}

#[test]
fn candidates_over_the_byte_limit_fill_blocks_and_the_rest_follows() {
    const FAN: usize = 1_000;
    const FANS: usize = 90;
    const INPUTS: usize = 700;
    let mut c = TestChain::new(FANS);
    // Fan out each genesis output into 1,000 small ones of the same owner.
    let each = Amount((FUNDS.0 - 100_000) / FAN as u64);
    let fans: Vec<Transaction> = (0..FANS)
        .map(|i| {
            let owner = c.owner_of(i);
            c.transfer(
                owner,
                &[c.genesis_outputs[i]],
                &vec![(kh(owner), each); FAN],
            )
        })
        .collect();
    c.commit(fans.clone());
    let mut coins: Vec<(OutPoint, SecretKey)> = fans
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let owner = c.owner_of(i).clone();
            (0..FAN as u32).map(move |v| (OutPoint::new(t.txid(), v), owner.clone()))
        })
        .collect();
    // Big transactions of 700 inputs each (~92 KB), well over one block's worth in total.
    let mut big = Vec::new();
    while coins.len() >= INPUTS {
        let rest = coins.split_off(INPUTS);
        let (ins, owners): (Vec<OutPoint>, Vec<SecretKey>) = coins.into_iter().unzip();
        coins = rest;
        let mut tx = c.transfer(
            &owners[0],
            &ins,
            &[(kh(&key(9)), Amount(each.0 * INPUTS as u64 - 200_000))],
        );
        sign_each(&mut tx, &owners);
        big.push(tx);
    }
    let total: usize = big.iter().map(Transaction::encoded_len).sum();
    assert!(
        total > MAX_BLOCK_BYTES + MAX_BLOCK_BYTES / 4,
        "{total} bytes"
    );

    let mut pending = big.clone();
    let mut blocks = 0;
    while !pending.is_empty() {
        let built = c.build(pending.clone(), usize::MAX).unwrap();
        assert!(built.skipped.is_empty());
        let size = built.block.to_bytes().len();
        assert!(size <= MAX_BLOCK_BYTES, "block of {size} bytes");
        assert!(
            built.block.transactions.len() > 1,
            "every block makes progress"
        );
        c.ledger
            .apply_block(&built.block, &TestChain::cert(&built.block))
            .unwrap();
        let placed: std::collections::HashSet<_> =
            built.block.transactions.iter().map(|t| t.txid()).collect();
        pending.retain(|t| !placed.contains(&t.txid()));
        blocks += 1;
    }
    assert!(blocks >= 2);
    for tx in &big {
        assert!(c
            .ledger
            .storage()
            .tx_location(&tx.txid())
            .unwrap()
            .is_some());
    }
}
