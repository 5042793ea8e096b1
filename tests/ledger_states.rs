//! The UTXO manager on a real database: every state transition, legal and illegal; block
//! application and its atomicity; the commitment against full recomputation; the address
//! index; registration checks.

mod chain;

use chain::{key, kh, TestChain, FUNDS, NET};
use proptest::prelude::*;
use timed::ledger::LedgerError;
use timed::types::transfer::sign_all;
use timed::types::{
    Amount, MasternodeRegistration, OutPoint, Tier, Transaction, TxError, TxPayload, UtxoState,
    ATOMS_PER_TIME,
};

fn state(c: &TestChain, op: &OutPoint) -> Option<UtxoState> {
    c.ledger.utxo(op).map(|r| r.state)
}

/// A transfer of genesis output `i` to key 9, keeping `fee` atoms as fee.
fn pay(c: &TestChain, i: usize, fee: u64) -> Transaction {
    c.transfer(
        c.owner_of(i),
        &[c.genesis_outputs[i]],
        &[(kh(&key(9)), Amount(FUNDS.0 - fee))],
    )
}

#[test]
fn unspent_locked_released_finalized_confirmed() {
    let mut c = TestChain::new(6);
    let op = c.genesis_outputs[0];
    let tx = pay(&c, 0, 1_000);
    assert_eq!(state(&c, &op), Some(UtxoState::Unspent));
    assert!(c.ledger.lock_inputs(&tx).unwrap());
    assert_eq!(state(&c, &op), Some(UtxoState::Locked(tx.txid())));
    assert!(
        !c.ledger.lock_inputs(&tx).unwrap(),
        "locking again is a no-op"
    );
    assert_eq!(c.ledger.release_locks(&tx).unwrap(), 1);
    assert_eq!(state(&c, &op), Some(UtxoState::Unspent));
    c.ledger.lock_inputs(&tx).unwrap();
    assert!(c.finalize(&tx).unwrap());
    assert_eq!(state(&c, &op), Some(UtxoState::SpentFinalized(tx.txid())));
    assert!(!c.finalize(&tx).unwrap(), "finalizing again is a no-op");
    // Final outputs exist at once, unconfirmed.
    let out = OutPoint::new(tx.txid(), 0);
    let rec = c.ledger.utxo(&out).unwrap();
    assert_eq!(rec.state, UtxoState::Unspent);
    assert!(!rec.entry.is_confirmed());
    // A block confirms it: the spent output leaves, the new one is confirmed.
    c.commit(vec![tx.clone()]);
    assert_eq!(state(&c, &op), None);
    assert!(c.ledger.utxo(&out).unwrap().entry.is_confirmed());
    assert!(c.ledger.final_tx(&tx.txid()).is_none());
    assert!(matches!(
        c.ledger.check_transaction(&tx),
        Err(LedgerError::AlreadyConfirmed { height: 1, .. })
    ));
    // Unspent straight to final works too (a quorum outranks the lack of a local lock).
    let tx2 = pay(&c, 1, 1_000);
    assert!(c.finalize(&tx2).unwrap());
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let c = TestChain::new(6);
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 0, 2_000);
    c.ledger.lock_inputs(&a).unwrap();
    // Locked by another: refused, and a refused multi-input lock leaves every input alone.
    let both = c.transfer(
        c.owner_of(0),
        &[c.genesis_outputs[3], c.genesis_outputs[0]],
        &[(kh(&key(9)), Amount(FUNDS.0))],
    );
    assert!(matches!(
        c.ledger.lock_inputs(&both),
        Err(LedgerError::InputLocked { locked_by, .. }) if locked_by == a.txid()
    ));
    assert_eq!(state(&c, &c.genesis_outputs[3]), Some(UtxoState::Unspent));
    assert!(matches!(
        c.ledger.lock_inputs(&b),
        Err(LedgerError::InputLocked { .. })
    ));
    // Spent by a final transaction: refused for locking and for finalizing another.
    c.finalize(&a).unwrap();
    assert!(
        matches!(c.ledger.lock_inputs(&b), Err(LedgerError::InputSpent { spent_by, .. }) if spent_by == a.txid())
    );
    assert!(matches!(
        c.finalize(&b),
        Err(LedgerError::InputSpent { .. })
    ));
    // Missing input.
    let ghost = c.transfer(
        c.owner_of(1),
        &[OutPoint::new(a.txid(), 5)],
        &[(kh(&key(9)), Amount(1))],
    );
    assert!(matches!(
        c.ledger.check_transaction(&ghost),
        Err(LedgerError::MissingInput { .. })
    ));
    // Wrong key: key 2 signs for key 1's output.
    let stolen = c.transfer(
        &key(2),
        &[c.genesis_outputs[3]],
        &[(kh(&key(9)), Amount(1))],
    );
    assert!(matches!(
        c.ledger.check_transaction(&stolen),
        Err(LedgerError::WrongKey { .. })
    ));
    // Outputs above inputs, and overflowing outputs.
    let greedy = c.transfer(
        c.owner_of(1),
        &[c.genesis_outputs[1]],
        &[(kh(&key(9)), Amount(FUNDS.0 + 1))],
    );
    assert!(matches!(
        c.ledger.check_transaction(&greedy),
        Err(LedgerError::OutputsExceedInputs { .. })
    ));
    let overflow = c.transfer(
        c.owner_of(1),
        &[c.genesis_outputs[1]],
        &[
            (kh(&key(9)), Amount(u64::MAX)),
            (kh(&key(8)), Amount(u64::MAX)),
        ],
    );
    assert!(matches!(
        c.ledger.check_transaction(&overflow),
        Err(LedgerError::Tx(TxError::OutputOverflow { .. }))
    ));
    assert_eq!(state(&c, &c.genesis_outputs[1]), Some(UtxoState::Unspent));
}

#[test]
fn locks_and_finality_survive_a_restart() {
    let c = TestChain::new(6);
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 1, 1_000);
    c.ledger.lock_inputs(&a).unwrap();
    c.finalize(&b).unwrap();
    c.ledger.storage().flush().unwrap();
    let c = c.reopened();
    assert_eq!(
        state(&c, &c.genesis_outputs[0]),
        Some(UtxoState::Locked(a.txid()))
    );
    assert_eq!(
        state(&c, &c.genesis_outputs[1]),
        Some(UtxoState::SpentFinalized(b.txid()))
    );
    assert_eq!(c.ledger.final_tx(&b.txid()).as_deref(), Some(&b));
    assert!(c.ledger.utxo(&OutPoint::new(b.txid(), 0)).is_some());
}

#[test]
fn final_change_is_spendable_before_any_block_and_a_block_confirms_the_chain() {
    let mut c = TestChain::new(3);
    let k1 = key(1);
    let first = c.transfer(
        &k1,
        &[c.genesis_outputs[0]],
        &[
            (kh(&key(9)), Amount(ATOMS_PER_TIME)),
            (kh(&k1), Amount(FUNDS.0 - ATOMS_PER_TIME - 1_000)),
        ],
    );
    c.finalize(&first).unwrap();
    let change = OutPoint::new(first.txid(), 1);
    let second = c.transfer(
        &k1,
        &[change],
        &[(kh(&key(8)), Amount(FUNDS.0 - ATOMS_PER_TIME - 2_000))],
    );
    assert!(c.ledger.check_transaction(&second).is_ok());
    c.ledger.lock_inputs(&second).unwrap();
    c.finalize(&second).unwrap();
    // The child alone cannot go in a block before its parent.
    assert!(matches!(
        c.try_next_block(vec![second.clone()]),
        Err(LedgerError::UnconfirmedInput { .. })
    ));
    c.commit(vec![first.clone(), second.clone()]);
    assert!(c.ledger.utxo(&change).is_none());
    assert!(c
        .ledger
        .utxo(&OutPoint::new(second.txid(), 0))
        .unwrap()
        .entry
        .is_confirmed());
}

/// Everything a failed block must leave untouched.
fn snapshot(c: &TestChain) -> (Option<u64>, timed::types::Hash32, Vec<Option<UtxoState>>) {
    let ops = &c.genesis_outputs;
    (
        c.ledger.height(),
        c.ledger.recompute_commitment().digest(),
        ops.iter().map(|op| state(c, op)).collect(),
    )
}

#[test]
fn invalid_blocks_are_refused_with_distinct_errors_and_change_nothing() {
    let mut c = TestChain::new(6);
    c.commit(vec![pay(&c, 5, 1_000)]);
    let before = snapshot(&c);
    let good = pay(&c, 0, 1_000);
    let base = c.next_block(vec![good.clone()]);
    let check =
        |c: &TestChain, block: &timed::types::Block, expect: &dyn Fn(&LedgerError) -> bool| {
            let err = c
                .ledger
                .apply_block(block, &TestChain::cert(block))
                .unwrap_err();
            assert!(expect(&err), "unexpected error: {err}");
            assert_eq!(snapshot(c), before, "a refused block changed state ({err})");
        };

    let mut b = base.clone();
    b.header.prev_hash = timed::types::Hash32([9; 32]);
    check(&c, &b, &|e| matches!(e, LedgerError::WrongParent { .. }));

    let mut b = base.clone();
    b.header.height += 1;
    check(&c, &b, &|e| {
        matches!(e, LedgerError::NotNextHeight { .. } | LedgerError::Block(_))
    });

    let mut b = base.clone();
    b.header.timestamp_ms = 1;
    check(&c, &b, &|e| {
        matches!(e, LedgerError::TimestampNotIncreasing { .. })
    });

    let mut b = base.clone();
    b.header.utxo_commitment = timed::types::Hash32([1; 32]);
    check(&c, &b, &|e| {
        matches!(e, LedgerError::CommitmentMismatch { .. })
    });

    // Coinbase paying one atom too many (roots fixed up so only the amount is wrong).
    let mut b = base.clone();
    std::sync::Arc::make_mut(&mut b.transactions[0]).outputs[0]
        .amount
        .0 += 1;
    b.seal_roots();
    check(&c, &b, &|e| matches!(e, LedgerError::BadCoinbase { .. }));

    // A bad signature.
    let mut bad = pay(&c, 1, 1_000);
    bad.inputs[0].signature.0[3] ^= 1;
    let mut b = c.next_block(vec![good.clone()]);
    b.transactions.push(std::sync::Arc::new(bad));
    b.seal_roots();
    check(&c, &b, &|e| {
        matches!(
            e,
            LedgerError::Tx(TxError::BadSignature { .. })
                | LedgerError::BadCoinbase { .. }
                | LedgerError::CommitmentMismatch { .. }
        )
    });

    // A double spend inside one block.
    let twin = pay(&c, 0, 2_000);
    let mut b = base.clone();
    b.transactions.push(std::sync::Arc::new(twin));
    b.seal_roots();
    check(&c, &b, &|e| matches!(e, LedgerError::MissingInput { .. }));

    // Spending an output created later in the same block.
    let parent = pay(&c, 2, 1_000);
    let child = c.transfer(
        &key(9),
        &[OutPoint::new(parent.txid(), 0)],
        &[(kh(&key(8)), Amount(FUNDS.0 - 5_000))],
    );
    let mut b = base.clone();
    b.transactions.push(std::sync::Arc::new(child));
    b.transactions.push(std::sync::Arc::new(parent));
    b.seal_roots();
    check(&c, &b, &|e| matches!(e, LedgerError::MissingInput { .. }));

    // A certificate for another block.
    let mut cert = TestChain::cert(&base);
    cert.block_hash = timed::types::Hash32([3; 32]);
    assert!(matches!(
        c.ledger.apply_block(&base, &cert),
        Err(LedgerError::CertificateMismatch { .. })
    ));
    assert_eq!(snapshot(&c), before);

    // And the untouched database says the same after a reopen.
    let c2 = c.reopened();
    assert_eq!(snapshot(&c2), before);
}

#[test]
fn a_block_overrides_a_pending_lock_but_never_a_final_spend() {
    let mut c = TestChain::new(6);
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 0, 2_000);
    c.ledger.lock_inputs(&a).unwrap();
    let block = c.next_block(vec![b.clone()]);
    let outcome = c
        .ledger
        .apply_block(&block, &TestChain::cert(&block))
        .unwrap();
    assert_eq!(outcome.evicted, vec![a.txid()]);

    let x = pay(&c, 1, 1_000);
    let y = pay(&c, 1, 2_000);
    c.finalize(&x).unwrap();
    // Build the conflicting block by hand: the builder itself would refuse y.
    let mut block = c.next_block(Vec::new());
    block.transactions.push(std::sync::Arc::new(y));
    block.seal_roots();
    assert!(matches!(
        c.ledger.apply_block(&block, &TestChain::cert(&block)),
        Err(LedgerError::ConflictsWithFinal { .. })
    ));
}

/// A block's walk is kept from its validation (here: its building) to its commit; what layer 1
/// did in between is seen at the commit either way.
#[test]
fn a_block_commits_by_the_layer1_states_of_its_commit_not_of_its_validation() {
    let mut c = TestChain::new(6);
    let k1 = key(1);
    let split = |c: &TestChain, i: usize| {
        c.transfer(
            c.owner_of(i),
            &[c.genesis_outputs[i]],
            &[
                (kh(&key(9)), Amount(ATOMS_PER_TIME)),
                (kh(c.owner_of(i)), Amount(FUNDS.0 - ATOMS_PER_TIME - 1_000)),
            ],
        )
    };
    let spend_change = |c: &TestChain, parent: &Transaction, to: u8| {
        c.transfer(
            &k1,
            &[OutPoint::new(parent.txid(), 1)],
            &[(kh(&key(to)), Amount(FUNDS.0 - ATOMS_PER_TIME - 2_000))],
        )
    };
    assert_eq!(c.owner_of(0).public_key(), k1.public_key());

    // An output the block creates is locked at layer 1 after the walk: the commit keeps the
    // lock (the walk's copy of the state said unspent).
    let first = split(&c, 0);
    c.finalize(&first).unwrap();
    let block = c.next_block(vec![first.clone()]);
    let child = spend_change(&c, &first, 8);
    assert!(c.ledger.lock_inputs(&child).unwrap());
    c.ledger
        .apply_block(&block, &TestChain::cert(&block))
        .unwrap();
    let change = OutPoint::new(first.txid(), 1);
    assert_eq!(state(&c, &change), Some(UtxoState::Locked(child.txid())));
    assert!(c.ledger.utxo(&change).unwrap().entry.is_confirmed());

    // An input the block spends is finalized by a rival after the walk: refused.
    let b = pay(&c, 2, 1_000);
    let block = c.next_block(vec![b]);
    let rival = pay(&c, 2, 2_000);
    assert!(c.finalize(&rival).unwrap());
    assert!(matches!(
        c.ledger.apply_block(&block, &TestChain::cert(&block)),
        Err(LedgerError::ConflictsWithFinal { .. })
    ));

    // A parent and its child, neither final when walked; then the parent and a rival of the
    // child become final: refused, though the walk never saw the child's input.
    let parent = split(&c, 3);
    let kid = spend_change(&c, &parent, 8);
    assert_eq!(c.owner_of(3).public_key(), k1.public_key());
    let block = c.next_block(vec![parent.clone(), kid]);
    assert!(c.finalize(&parent).unwrap());
    assert!(c.finalize(&spend_change(&c, &parent, 7)).unwrap());
    assert!(matches!(
        c.ledger.apply_block(&block, &TestChain::cert(&block)),
        Err(LedgerError::ConflictsWithFinal { .. })
    ));
}

#[test]
fn address_index_tracks_balances_through_every_state() {
    let mut c = TestChain::new(3);
    let k1 = key(1);
    let b = c.ledger.address_balance(&kh(&k1)).unwrap();
    assert_eq!((b.confirmed, b.utxo_count), (FUNDS, 1));
    let tx = pay(&c, 0, 1_000);
    c.ledger.lock_inputs(&tx).unwrap();
    assert_eq!(c.ledger.address_balance(&kh(&k1)).unwrap().spending, FUNDS);
    c.finalize(&tx).unwrap();
    let nine = c.ledger.address_balance(&kh(&key(9))).unwrap();
    assert_eq!(nine.unconfirmed, Amount(FUNDS.0 - 1_000));
    assert_eq!(nine.spendable(), Some(Amount(FUNDS.0 - 1_000)));
    c.commit(vec![tx]);
    let nine = c.ledger.address_balance(&kh(&key(9))).unwrap();
    assert_eq!(
        (nine.confirmed, nine.unconfirmed),
        (Amount(FUNDS.0 - 1_000), Amount::ZERO)
    );
    assert_eq!(
        c.ledger.address_balance(&kh(&k1)).unwrap().utxo_count,
        1,
        "the coinbase reward"
    );
    assert_eq!(c.ledger.address_utxos(&kh(&key(9))).unwrap().len(), 1);
    // The index is memory only: a restart builds the same one from the stored outputs.
    let before: Vec<_> = [key(1), key(9)]
        .iter()
        .map(|k| c.ledger.address_utxos(&kh(k)).unwrap())
        .collect();
    let c = c.reopened();
    let after: Vec<_> = [key(1), key(9)]
        .iter()
        .map(|k| c.ledger.address_utxos(&kh(k)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn registration_checks_the_collateral() {
    let c = TestChain::new(6);
    let owner = key(1);
    // Genesis outputs hold 100 TIME: a Bronze collateral must be exactly 1,000 TIME.
    let mut tx = pay(&c, 3, 1_000);
    tx.payload = TxPayload::from(MasternodeRegistration::new(
        Tier::Bronze,
        c.genesis_outputs[0],
        &key(7),
        "127.0.0.1:24100".into(),
    ));
    sign_all(NET, &mut tx, &owner);
    let err = c.ledger.check_transaction(&tx).unwrap_err();
    assert!(
        matches!(&err, LedgerError::BadRegistration { reason, .. } if reason.contains("needs exactly")),
        "{err}"
    );
    // Free tier is refused.
    if let TxPayload::MasternodeRegistration(r) = &mut tx.payload {
        r.tier = Tier::Free;
    }
    sign_all(NET, &mut tx, &owner);
    assert!(matches!(
        c.ledger.check_transaction(&tx),
        Err(LedgerError::BadRegistration { .. })
    ));
}

#[test]
fn registration_with_exact_collateral_owned_by_a_signer_is_accepted() {
    // Key 1 owns genesis outputs 0, 3, 6, ...: eleven of them make 1,100 TIME.
    let mut c = TestChain::new(33);
    let owner = key(1);
    let ins: Vec<OutPoint> = (0..33).step_by(3).map(|i| c.genesis_outputs[i]).collect();
    let collateral_tx = c.transfer(
        &owner,
        &ins,
        &[
            (kh(&owner), Tier::Bronze.collateral()),
            (kh(&owner), Amount(100 * ATOMS_PER_TIME - 10_000)),
        ],
    );
    c.commit(vec![collateral_tx.clone()]);
    let collateral = OutPoint::new(collateral_tx.txid(), 0);
    let fee_input = OutPoint::new(collateral_tx.txid(), 1);
    let mut reg = c.transfer(
        &owner,
        &[fee_input],
        &[(kh(&owner), Amount(100 * ATOMS_PER_TIME - 20_000))],
    );
    reg.payload = TxPayload::from(MasternodeRegistration::new(
        Tier::Bronze,
        collateral,
        &key(7),
        "127.0.0.1:24100".into(),
    ));
    sign_all(NET, &mut reg, &owner);
    reg.sign_operator(NET, &key(7));
    assert!(c.ledger.check_transaction(&reg).is_ok());
    // Signed by a key that does not own the collateral (nor the fee input): refused.
    let mut foreign = reg.clone();
    sign_all(NET, &mut foreign, &key(2));
    assert!(c.ledger.check_transaction(&foreign).is_err());
    c.commit(vec![reg]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random blocks of random transfers: after each, the incremental commitment equals a full
    /// recomputation and the header's value, also after reopening the database.
    #[test]
    fn commitment_matches_full_recomputation(plan in prop::collection::vec(prop::collection::vec((0usize..1000, 1usize..4), 0..6), 1..5)) {
        let mut c = TestChain::new(24);
        // Spendable outputs and their owners, as (outpoint, key seed, amount).
        let mut wallet: Vec<(OutPoint, u8, Amount)> = c
            .genesis_outputs
            .iter()
            .enumerate()
            .map(|(i, op)| (*op, (i % 3) as u8 + 1, FUNDS))
            .collect();
        for block_plan in plan {
            let mut txs = Vec::new();
            for (pick, outs) in block_plan {
                if wallet.is_empty() {
                    break;
                }
                let (op, seed, amount) = wallet.remove(pick % wallet.len());
                let fee = 1_000;
                let share = (amount.0 - fee) / outs as u64;
                let to: Vec<(timed::types::KeyHash, Amount)> = (0..outs).map(|j| (kh(&key(1 + (j % 3) as u8)), Amount(share))).collect();
                let tx = c.transfer(&key(seed), &[op], &to);
                for (j, _) in to.iter().enumerate() {
                    wallet.push((OutPoint::new(tx.txid(), j as u32), 1 + (j % 3) as u8, Amount(share)));
                }
                txs.push(tx);
            }
            let block = c.commit(txs);
            prop_assert_eq!(c.ledger.commitment(), c.ledger.recompute_commitment());
            prop_assert_eq!(c.ledger.commitment().digest(), block.header.utxo_commitment);
        }
        let expected = c.ledger.commitment();
        let c = c.reopened();
        prop_assert_eq!(c.ledger.commitment(), expected.clone());
        prop_assert_eq!(c.ledger.recompute_commitment(), expected);
    }
}

#[test]
fn address_history_lists_each_transaction_once_in_chain_order_and_is_rebuilt_for_old_databases() {
    let mut c = TestChain::new(3);
    let k1 = key(1);
    fn all(c: &TestChain, k: &timed::types::SecretKey) -> Vec<(u64, timed::types::Txid)> {
        heights(c.ledger.address_txids(&kh(k), 0, u64::MAX, 0, 100).unwrap())
    }
    fn heights(
        v: Vec<(timed::ledger::history::Order, timed::types::Txid)>,
    ) -> Vec<(u64, timed::types::Txid)> {
        v.into_iter().map(|(o, t)| (o.height, t)).collect()
    }
    let genesis_id = all(&c, &k1)[0].1;
    assert_eq!(all(&c, &k1).len(), 1, "funded by genesis");
    // Final at layer 1 first, then confirmed: still one entry, at the order it got when final.
    let tx = pay(&c, 0, 1_000);
    c.ledger.lock_inputs(&tx).unwrap();
    c.finalize(&tx).unwrap();
    assert_eq!(all(&c, &key(9)), vec![(1, tx.txid())]);
    c.commit(vec![tx.clone()]);
    assert_eq!(all(&c, &key(9)), vec![(1, tx.txid())]);
    // Met only in a block: recorded with the block.
    let direct = pay(&c, 1, 2_000);
    c.commit(vec![direct.clone()]);
    let nine = all(&c, &key(9));
    assert_eq!(nine, vec![(1, tx.txid()), (2, direct.txid())]);
    // The spender's history has its funding and its spend; paging skips and limits.
    let ones = all(&c, &k1);
    assert_eq!(ones[0].1, genesis_id);
    assert!(ones.iter().any(|(_, t)| *t == tx.txid()));
    assert_eq!(
        heights(c.ledger.address_txids(&kh(&key(9)), 0, 1, 0, 100).unwrap()),
        vec![(1, tx.txid())]
    );
    assert_eq!(
        heights(
            c.ledger
                .address_txids(&kh(&key(9)), 0, u64::MAX, 1, 1)
                .unwrap()
        ),
        vec![(2, direct.txid())]
    );
    // A database from before the index: wiped index, rebuilt at the next open.
    let before = all(&c, &key(9));
    let meta = c.ledger.storage().tree(timed::storage::TreeId::Meta);
    meta.remove(timed::storage::schema::meta_key::ADDRESS_HISTORY)
        .unwrap();
    c.ledger
        .storage()
        .tree(timed::storage::TreeId::AddressTxs)
        .clear()
        .unwrap();
    let c = c.reopened();
    assert_eq!(all(&c, &key(9)), before);
}

#[test]
fn layer1_writes_survive_a_clean_close_and_a_damaged_final_record_does_not_stop_the_node() {
    let c = TestChain::new(3);
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 1, 1_000);
    c.ledger.lock_inputs(&a).unwrap();
    c.finalize(&a).unwrap();
    c.ledger.lock_inputs(&b).unwrap();
    // Appended to the layer-1 log, never flushed explicitly: closing the database lands them.
    let c = c.reopened();
    assert_eq!(c.ledger.final_tx(&a.txid()).as_deref(), Some(&a));
    assert_eq!(
        state(&c, &b.inputs[0].prev_out),
        Some(UtxoState::Locked(b.txid()))
    );
    assert_eq!(c.ledger.pending_locked().unwrap(), vec![b.clone()]);
    // A final record that no longer decodes is logged and removed at open.
    let bogus = [7u8; 32];
    let mut damaged = timed::storage::WriteBatch::new();
    damaged.put_raw(
        timed::storage::TreeId::FinalTxs,
        bogus,
        b"not a transaction".to_vec(),
    );
    c.ledger.storage().append(damaged).unwrap();
    let c = c.reopened();
    assert_eq!(c.ledger.final_count(), 1);
    assert!(!c
        .ledger
        .storage()
        .contains(timed::storage::TreeId::FinalTxs, &bogus)
        .unwrap());
}

#[test]
fn layer1_records_of_transactions_a_block_confirmed_are_dropped_at_open() {
    use timed::storage::{TreeId, WriteBatch};
    let mut c = TestChain::new(3);
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 1, 1_000);
    c.ledger.lock_inputs(&a).unwrap();
    c.finalize(&a).unwrap();
    c.ledger.lock_inputs(&b).unwrap();
    let storage = c.ledger.storage().clone();
    let before: Vec<(TreeId, Vec<u8>, Vec<u8>)> = [TreeId::UtxoStates, TreeId::FinalTxs]
        .into_iter()
        .flat_map(|t| {
            storage
                .records(t)
                .unwrap()
                .into_iter()
                .map(move |(k, v)| (t, k.to_vec(), v.to_vec()))
        })
        .collect();
    assert_eq!(before.len(), 3, "two locks and a final record");
    c.commit(vec![a.clone()]);
    // Put back what the block cleaned up, as a crash between the block (durable first) and
    // its clean-up of the layer-1 log leaves it.
    let mut stale = WriteBatch::new();
    for (t, k, v) in before {
        stale.put_raw(t, k, v);
    }
    storage.append(stale).unwrap();
    drop(storage);
    let c = c.reopened();
    assert!(c.ledger.final_tx(&a.txid()).is_none());
    assert_eq!(c.ledger.final_count(), 0);
    assert_eq!(state(&c, &a.inputs[0].prev_out), None, "spent by the block");
    assert!(c
        .ledger
        .utxo(&OutPoint::new(a.txid(), 0))
        .unwrap()
        .entry
        .is_confirmed());
    // The lock of a transaction no block touched stays.
    assert_eq!(
        state(&c, &b.inputs[0].prev_out),
        Some(UtxoState::Locked(b.txid()))
    );
    let s = c.ledger.storage();
    assert!(s.records(TreeId::FinalTxs).unwrap().is_empty());
    assert_eq!(s.records(TreeId::UtxoStates).unwrap().len(), 1);
    // Balances count the confirmed output once.
    assert_eq!(
        c.ledger.address_utxos(&kh(&key(9))).unwrap().len(),
        1,
        "one output to key 9"
    );
}

#[test]
fn a_final_transaction_whose_inputs_left_the_set_is_dropped_at_open() {
    use timed::storage::schema::meta_key;
    use timed::storage::{TreeId, WriteBatch};
    // What a fast sync leaves if it is cut short after the new set is durable: a final
    // transaction its snapshot already includes, with no transaction index to say so.
    let c = TestChain::new(3);
    let a = pay(&c, 0, 1_000);
    c.finalize(&a).unwrap();
    let child = c.transfer(
        &key(9),
        &[OutPoint::new(a.txid(), 0)],
        &[(kh(&key(8)), Amount(FUNDS.0 - 2_000))],
    );
    c.ledger.lock_inputs(&child).unwrap();
    c.finalize(&child).unwrap();
    // The snapshot's set and its tip land together: the output gone, the commitment with it.
    let spent = a.inputs[0].prev_out;
    let mut gone = WriteBatch::new();
    gone.remove(TreeId::Utxos, spent.to_key());
    gone.put(TreeId::Meta, meta_key::TIP, &tip_without(&c, &spent));
    c.ledger.storage().commit(gone).unwrap();
    let c = c.reopened();
    assert_eq!(
        c.ledger.final_count(),
        0,
        "the final and the final that spent it"
    );
    assert!(c.ledger.utxo(&OutPoint::new(a.txid(), 0)).is_none());
    assert!(c.ledger.utxo(&OutPoint::new(child.txid(), 0)).is_none());
    assert!(c
        .ledger
        .storage()
        .records(TreeId::UtxoStates)
        .unwrap()
        .is_empty());
    // The other genesis outputs are untouched.
    assert_eq!(state(&c, &c.genesis_outputs[1]), Some(UtxoState::Unspent));
}

/// The tip as it would be had `spent` left the confirmed set with it.
fn tip_without(c: &TestChain, spent: &OutPoint) -> timed::storage::ChainTip {
    let mut tip = (*c.ledger.tip().unwrap()).clone();
    let entry = c.ledger.utxo(spent).unwrap().entry;
    let mut commitment = timed::types::UtxoCommitment::from_bytes(&tip.utxo_state);
    commitment.remove(spent, &entry);
    tip.utxo_state = commitment.to_bytes();
    tip
}

#[test]
fn a_stored_set_that_does_not_match_the_tip_refuses_the_open() {
    use timed::storage::{Storage, TreeId, WriteBatch};
    let c = TestChain::new(3);
    let lost = c.genesis_outputs[1];
    // What a damaged disk or a storage bug would leave: an output gone, the tip unchanged.
    let mut gone = WriteBatch::new();
    gone.remove(TreeId::Utxos, lost.to_key());
    c.ledger.storage().commit(gone).unwrap();
    let dir = c.dir.path().to_path_buf();
    drop(c.ledger);
    let storage = Storage::open(&dir.join("db"), 16 << 20).unwrap();
    let err = timed::ledger::Ledger::open(storage, chain::params())
        .err()
        .expect("a set that does not match its tip is refused");
    assert!(
        matches!(err, LedgerError::StoredSetMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("does not match the chain tip") && msg.contains("restore"),
        "{msg}"
    );
}
