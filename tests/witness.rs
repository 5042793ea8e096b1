//! Issue 11 §2: a block commits to its transactions' signatures (the witness root), and the
//! ledger never commits a body whose signatures do not verify, even for a transaction that is
//! final on this node.

mod chain;

use chain::{key, kh, TestChain, FUNDS};
use timed::ledger::LedgerError;
use timed::types::{Amount, BlockError, Signature, Transaction, TxError};

/// A transfer of genesis output `i` to key 9.
fn pay(c: &TestChain, i: usize) -> Transaction {
    c.transfer(
        c.owner_of(i),
        &[c.genesis_outputs[i]],
        &[(kh(&key(9)), Amount(FUNDS.0 - 1_000))],
    )
}

fn garbage(tx: &mut Transaction) {
    for (n, input) in tx.inputs.iter_mut().enumerate() {
        input.signature = Signature([0x5a ^ n as u8; 64]);
    }
}

#[test]
fn the_witness_root_binds_every_signature_byte() {
    let mut c = TestChain::new(4);
    let tx = pay(&c, 0);
    let block = c.next_block(vec![tx]);
    assert!(block.check_structure().is_ok());
    let mut swapped = block.clone();
    garbage(std::sync::Arc::make_mut(&mut swapped.transactions[1]));
    assert_eq!(
        swapped.hash(),
        block.hash(),
        "the header, and so the hash, is unchanged"
    );
    assert_eq!(
        swapped.check_structure(),
        Err(BlockError::BadWitnessRoot { height: 1 }),
        "a body altered under a certified hash is refused"
    );
    // Resealed, it is another block with another hash: a certificate for the first never
    // covers it.
    swapped.seal_roots();
    assert!(swapped.check_structure().is_ok());
    assert_ne!(swapped.hash(), block.hash());
}

#[test]
fn a_final_transaction_with_swapped_signatures_is_verified_and_refused() {
    let mut c = TestChain::new(4);
    let tx = pay(&c, 0);
    // Final here: its inputs are SpentFinalized by its txid and its body is stored.
    assert!(c.finalize(&tx).unwrap());
    let genuine = c.next_block(vec![tx.clone()]);

    // A Byzantine proposer: same txid, garbage signatures, a witness root that matches.
    let mut swapped = genuine.clone();
    garbage(std::sync::Arc::make_mut(&mut swapped.transactions[1]));
    swapped.seal_roots();
    assert!(swapped.check_structure().is_ok());
    assert_eq!(swapped.transactions[1].txid(), tx.txid());
    match c.ledger.plan_block(&swapped) {
        Err(LedgerError::Tx(TxError::BadSignature { txid, index: 0 })) => {
            assert_eq!(txid, tx.txid())
        }
        other => panic!("swapped signatures must be refused, got {other:?}"),
    }
    assert!(c
        .ledger
        .apply_block(&swapped, &TestChain::cert(&swapped))
        .is_err());
    assert_eq!(c.ledger.height(), Some(0), "nothing was committed");

    // The genuine body (byte-equal to the stored final copy) is accepted.
    c.ledger
        .apply_block(&genuine, &TestChain::cert(&genuine))
        .unwrap();
    let stored = c.ledger.storage().block_at(1).unwrap().unwrap();
    assert_eq!(stored, genuine);
    assert!(stored.transactions[1].verify_signatures(chain::NET).is_ok());
}

/// The ledger skips checking a block's structure again only for the very copy it checked
/// (`Ledger::check_well_formed`): an altered copy under the same hash is still refused when
/// it is planned or committed.
#[test]
fn a_checked_block_is_known_by_its_copy_not_by_its_hash() {
    let mut c = TestChain::new(4);
    let tx = pay(&c, 0);
    assert!(c.finalize(&tx).unwrap());
    let genuine = std::sync::Arc::new(c.next_block(vec![tx]));
    c.ledger.check_well_formed(&genuine).unwrap();

    let mut swapped = (*genuine).clone();
    garbage(std::sync::Arc::make_mut(&mut swapped.transactions[1]));
    let swapped = std::sync::Arc::new(swapped);
    assert_eq!(swapped.hash(), genuine.hash());
    let refused = Err(BlockError::BadWitnessRoot { height: 1 });
    assert_eq!(c.ledger.check_well_formed(&swapped), refused);
    assert!(matches!(
        c.ledger.plan_block(&swapped),
        Err(LedgerError::Block(BlockError::BadWitnessRoot { height: 1 }))
    ));
    assert!(c
        .ledger
        .apply_block(&swapped, &TestChain::cert(&swapped))
        .is_err());
    assert_eq!(c.ledger.height(), Some(0), "nothing was committed");

    // The checked copy plans and commits.
    c.ledger.plan_block(&genuine).unwrap();
    c.ledger
        .apply_block(&genuine, &TestChain::cert(&genuine))
        .unwrap();
    assert_eq!(c.ledger.height(), Some(1));
}
