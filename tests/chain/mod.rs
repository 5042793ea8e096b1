//! A ledger on a real sled database in a temporary directory, with a genesis that funds a
//! few keys, and helpers to sign transfers and commit blocks.

#![allow(dead_code)]

use std::sync::Arc;
use tempfile::TempDir;
use timed::ledger::{
    build_genesis, BlockTemplate, BuiltBlock, Ledger, LedgerError, LedgerParams, RewardSchedule,
};
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Block, CommitCertificate, Hash32, KeyHash, Network, OutPoint, PublicKey, SecretKey,
    Transaction, TxOutput, ATOMS_PER_TIME,
};

pub const NET: Network = Network::Localnet;
pub const REWARD: Amount = Amount(50 * ATOMS_PER_TIME);
/// Each genesis output holds this much.
pub const FUNDS: Amount = Amount(100 * ATOMS_PER_TIME);

pub struct TestChain {
    pub dir: TempDir,
    pub ledger: Arc<Ledger>,
    pub keys: Vec<SecretKey>,
    /// Genesis outputs; output `i` belongs to `keys[i % keys.len()]`.
    pub genesis_outputs: Vec<OutPoint>,
    clock: u64,
}

pub fn params() -> LedgerParams {
    LedgerParams {
        network: NET,
        rewards: RewardSchedule {
            initial: REWARD,
            halving_interval: 0,
        },
    }
}

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

pub fn kh(k: &SecretKey) -> KeyHash {
    k.public_key().key_hash()
}

impl TestChain {
    /// A chain whose genesis pays `outputs` outputs of `FUNDS` to keys 1..=3 in turn.
    pub fn new(outputs: usize) -> TestChain {
        let dir = tempfile::tempdir().unwrap();
        let keys = vec![key(1), key(2), key(3)];
        let ledger = Arc::new(Ledger::open(open_storage(&dir), params()).unwrap());
        let allocations: Vec<(KeyHash, Amount)> = (0..outputs)
            .map(|i| (kh(&keys[i % keys.len()]), FUNDS))
            .collect();
        let genesis = build_genesis(&allocations, 1_000, Hash32::ZERO, Hash32::ZERO);
        ledger.apply_genesis(&genesis).unwrap();
        let txid = genesis.transactions[0].txid();
        TestChain {
            dir,
            ledger,
            keys,
            genesis_outputs: (0..outputs)
                .map(|i| OutPoint::new(txid, i as u32))
                .collect(),
            clock: 1_000,
        }
    }

    pub fn owner_of(&self, genesis_index: usize) -> &SecretKey {
        &self.keys[genesis_index % self.keys.len()]
    }

    /// A signed transfer by `from` of `inputs` to `outputs`.
    pub fn transfer(
        &self,
        from: &SecretKey,
        inputs: &[OutPoint],
        outputs: &[(KeyHash, Amount)],
    ) -> Transaction {
        signed_transfer(
            NET,
            from,
            inputs,
            outputs
                .iter()
                .map(|(key_hash, amount)| TxOutput {
                    amount: *amount,
                    key_hash: *key_hash,
                })
                .collect(),
        )
    }

    /// The next block with these transactions, built by the ledger.
    pub fn next_block(&mut self, txs: Vec<Transaction>) -> Block {
        self.try_next_block(txs).unwrap()
    }

    /// Like `next_block`, returning the builder's refusal of the first transaction it could
    /// not place instead of panicking.
    pub fn try_next_block(&mut self, txs: Vec<Transaction>) -> Result<Block, LedgerError> {
        let built = self.build(txs, usize::MAX)?;
        match built.skipped.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(built.block),
        }
    }

    /// Layer 1 finalizes `tx` now: the chain's clock, a moment after its last block.
    pub fn finalize(&self, tx: &Transaction) -> Result<bool, LedgerError> {
        self.ledger.finalize(tx, self.clock + 1)
    }

    /// What the builder makes of these candidates (placed, skipped, carried), at most
    /// `max_transactions` of them.
    pub fn build(
        &mut self,
        txs: Vec<Transaction>,
        max_transactions: usize,
    ) -> Result<BuiltBlock, LedgerError> {
        self.clock += 1_000;
        self.ledger.build_block(BlockTemplate {
            timestamp_ms: self.clock,
            round: 0,
            proposer: PublicKey([0; 32]),
            payees: vec![(kh(&self.keys[0]), 1)],
            transactions: txs.into_iter().map(std::sync::Arc::new).collect(),
            max_transactions,
            next_masternode_set_hash: Hash32::ZERO,
            last_commit: None,
        })
    }

    /// A certificate naming the block (the ledger checks only that; signatures and weights
    /// are consensus's job and are tested there).
    pub fn cert(block: &Block) -> CommitCertificate {
        CommitCertificate {
            height: block.header.height,
            round: 0,
            block_hash: block.hash(),
            precommits: Vec::new(),
        }
    }

    pub fn commit(&mut self, txs: Vec<Transaction>) -> Block {
        let block = self.next_block(txs);
        self.ledger
            .apply_block(&block, &Self::cert(&block))
            .unwrap();
        block
    }

    /// Closes the ledger and opens it again from disk (sled allows one open instance per
    /// directory, so the old one is dropped first).
    pub fn reopened(self) -> TestChain {
        let TestChain {
            dir,
            ledger,
            keys,
            genesis_outputs,
            clock,
        } = self;
        drop(ledger);
        let ledger = Arc::new(Ledger::open(open_storage(&dir), params()).unwrap());
        TestChain {
            dir,
            ledger,
            keys,
            genesis_outputs,
            clock,
        }
    }
}

/// Opens the database (`Storage::open` itself waits while a just-dropped instance still
/// holds sled's lock).
fn open_storage(dir: &TempDir) -> Storage {
    Storage::open(&dir.path().join("db"), 16 << 20).unwrap()
}
