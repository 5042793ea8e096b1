//! The transaction pool against a real ledger: acceptance, fee-rate order, minimum fee, the
//! first-seen conflict rule, limits and eviction, the reject cache and its expiry, and removal
//! after a block.

mod chain;

use chain::{key, kh, TestChain, FUNDS, NET};
use std::time::Duration;
use timed::ledger::LedgerError;
use timed::mempool::{Mempool, PoolError, PoolLimits, VerifiedTx};
use timed::types::{Amount, Transaction, TxError};

fn pay(c: &TestChain, i: usize, fee: u64) -> Transaction {
    c.transfer(
        c.owner_of(i),
        &[c.genesis_outputs[i]],
        &[(kh(&key(9)), Amount(FUNDS.0 - fee))],
    )
}

fn verified(tx: Transaction) -> VerifiedTx {
    Mempool::verify(NET, tx).unwrap()
}

fn limits() -> PoolLimits {
    PoolLimits {
        max_count: 1_000,
        max_bytes: 1 << 20,
        min_fee_rate: 1,
        reject_cache_size: 100,
        reject_ttl: Duration::from_secs(60),
        ..PoolLimits::default()
    }
}

#[test]
fn accepts_orders_by_fee_rate_and_counts() {
    let c = TestChain::new(6);
    let mut pool = Mempool::new(NET, limits());
    let now: u64 = 1_700_000_000_000;
    for (i, fee) in [(0, 2_000), (1, 9_000), (2, 5_000)] {
        pool.insert(verified(pay(&c, i, fee)), &c.ledger, now)
            .unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.count(), 3);
    assert!(stats.bytes() > 0);
    let fees: Vec<u64> = pool.iter_by_fee_rate().map(|e| e.fee.0).collect();
    assert_eq!(fees, vec![9_000, 5_000, 2_000]);
}

#[test]
fn fee_below_the_minimum_rate_is_refused_and_remembered() {
    let c = TestChain::new(3);
    let mut pool = Mempool::new(NET, limits());
    let now: u64 = 1_700_000_000_000;
    let cheap = verified(pay(&c, 0, 10));
    let txid = cheap.txid();
    assert!(matches!(
        pool.insert(cheap.clone(), &c.ledger, now),
        Err(PoolError::FeeTooLow { min: 1, .. })
    ));
    assert!(matches!(
        pool.insert(cheap.clone(), &c.ledger, now),
        Err(PoolError::RecentlyRejected { .. })
    ));
    // After the TTL it is judged afresh.
    let later = now + 61_000;
    assert!(pool.recently_rejected(&txid, later).is_none());
    assert!(matches!(
        pool.insert(cheap, &c.ledger, later),
        Err(PoolError::FeeTooLow { .. })
    ));
    assert_eq!(pool.len(), 0);
}

#[test]
fn first_seen_wins_and_ledger_locks_are_respected() {
    let c = TestChain::new(6);
    let mut pool = Mempool::new(NET, limits());
    let now: u64 = 1_700_000_000_000;
    let a = pay(&c, 0, 1_000);
    let b = pay(&c, 0, 50_000);
    pool.insert(verified(a.clone()), &c.ledger, now).unwrap();
    let err = pool.insert(verified(b), &c.ledger, now).unwrap_err();
    assert!(
        matches!(&err, PoolError::Conflict { existing, .. } if *existing == a.txid()),
        "{err}"
    );
    assert!(!err.is_peer_fault());
    // An output the ledger holds locked for another transaction.
    let x = pay(&c, 1, 1_000);
    let y = pay(&c, 1, 2_000);
    c.ledger.lock_inputs(&x).unwrap();
    let err = pool.insert(verified(y), &c.ledger, now).unwrap_err();
    assert!(
        matches!(&err, PoolError::Ledger { source, .. } if matches!(**source, LedgerError::InputLocked { .. })),
        "{err}"
    );
    assert_eq!(pool.len(), 1);
}

#[test]
fn bad_signatures_are_peer_faults_and_flagged_exactly() {
    let c = TestChain::new(6);
    let mut txs: Vec<Transaction> = (0..6).map(|i| pay(&c, i, 1_000)).collect();
    txs[4].inputs[0].signature.0[1] ^= 0x10;
    let verdicts = Mempool::verify_many(NET, txs);
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(v.is_ok(), i != 4, "transaction {i}");
    }
    let err = verdicts.into_iter().nth(4).unwrap().unwrap_err();
    assert!(matches!(
        err,
        PoolError::Invalid(TxError::BadSignature { index: 0, .. })
    ));
    assert!(err.is_peer_fault());
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_rate_or_refuses_a_cheaper_newcomer() {
    let c = TestChain::new(8);
    let mut pool = Mempool::new(
        NET,
        PoolLimits {
            max_count: 3,
            ..limits()
        },
    );
    let now: u64 = 1_700_000_000_000;
    for (i, fee) in [(0, 3_000), (1, 5_000), (2, 7_000)] {
        pool.insert(verified(pay(&c, i, fee)), &c.ledger, now)
            .unwrap();
    }
    // Pays less than everything in the full pool: refused, pool unchanged.
    let cheap = pay(&c, 3, 2_000);
    assert!(matches!(
        pool.insert(verified(cheap), &c.ledger, now),
        Err(PoolError::PoolFull { .. })
    ));
    assert_eq!(pool.len(), 3);
    // Pays more than the cheapest: the cheapest goes.
    let lowest = pay(&c, 0, 3_000).txid();
    let rich = pay(&c, 4, 6_000);
    let inserted = pool.insert(verified(rich), &c.ledger, now).unwrap();
    assert_eq!(inserted.evicted, vec![lowest]);
    assert!(!pool.contains(&lowest));
    assert_eq!(pool.stats().count(), 3);

    // The byte limit works the same way.
    let one = verified(pay(&c, 5, 3_000));
    let mut small = Mempool::new(
        NET,
        PoolLimits {
            max_bytes: one.size() * 2,
            ..limits()
        },
    );
    small.insert(one, &c.ledger, now).unwrap();
    small
        .insert(verified(pay(&c, 6, 4_000)), &c.ledger, now)
        .unwrap();
    let bigger_fee = small
        .insert(verified(pay(&c, 7, 9_000)), &c.ledger, now)
        .unwrap();
    assert_eq!(bigger_fee.evicted.len(), 1);
    assert!(small.stats().bytes() <= small.limits().max_bytes);
}

#[test]
fn a_block_removes_only_its_transactions_and_their_conflicts() {
    let mut c = TestChain::new(8);
    let mut pool = Mempool::new(NET, limits());
    let now: u64 = 1_700_000_000_000;
    let keep = pay(&c, 0, 1_000);
    let included = pay(&c, 1, 1_000);
    let loser = pay(&c, 2, 1_000);
    for tx in [&keep, &included, &loser] {
        pool.insert(verified(tx.clone()), &c.ledger, now).unwrap();
    }
    // The block carries `included` and a different spend of `loser`'s input.
    let winner = pay(&c, 2, 7_000);
    let block = c.next_block(vec![included.clone(), winner]);
    let outcome = c
        .ledger
        .apply_block(&block, &TestChain::cert(&block))
        .unwrap();
    let removed: Vec<_> = pool
        .remove_for_block(&outcome)
        .iter()
        .map(|e| e.txid)
        .collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&included.txid()) && removed.contains(&loser.txid()));
    assert!(pool.contains(&keep.txid()));
    assert_eq!(pool.stats().count(), 1);
}
