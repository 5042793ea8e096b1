//! Building blocks that the ledger will accept: the genesis block, and the next block from a
//! list of candidate transactions (what a proposer does).
//!
//! ```text
//! candidates (parents first) ─► room left? parent placed? ─► walk.check ─► signatures ─► place
//!                                     └─ no: carry to a later block     └─ fails: skip, report
//! placed ─► coinbase (reward + fees) ─► merkle root, UTXO commitment ─► Block (≤ MAX_BLOCK_BYTES)
//! ```
//! Whatever layer 1 made final, some block can include: one candidate the rule refuses is left
//! out and reported (it is a bug), never failing the block.

use super::walk::Walker;
use super::{Ledger, LedgerError, Result, UtxoCommitment};
use crate::types::block::{witness_root, BLOCK_VERSION};
use crate::types::codec::{self, MAX_BLOCK_BYTES};
use crate::types::hash::merkle_root;
use crate::types::transaction::TX_VERSION;
use crate::types::{
    Amount, Block, BlockHeader, CommitCertificate, Hash32, KeyHash, OutPoint, PublicKey,
    Transaction, TxOutput, TxPayload, Txid, UtxoEntry,
};
use std::collections::HashSet;
use std::sync::Arc;

/// The genesis block: one coinbase at height 0 paying the initial allocations. It has no
/// parent; its `prev_hash` names the chain's rules instead (`consensus::genesis::ChainRules`),
/// so chains that differ only in a rule have different genesis hashes.
pub fn build_genesis(
    allocations: &[(KeyHash, Amount)],
    timestamp_ms: u64,
    rules: Hash32,
    masternode_set_hash: Hash32,
) -> Block {
    let coinbase = Arc::new(Transaction::new(
        TX_VERSION,
        Vec::new(),
        allocations
            .iter()
            .map(|(key_hash, amount)| TxOutput {
                amount: *amount,
                key_hash: *key_hash,
            })
            .collect(),
        TxPayload::Coinbase { height: 0 },
    ));
    let txid = coinbase.txid();
    let mut commitment = UtxoCommitment::empty();
    for (i, out) in coinbase.outputs.iter().enumerate() {
        let entry = UtxoEntry {
            output: *out,
            height: Some(0),
            coinbase: true,
        };
        commitment.insert(&OutPoint::new(txid, i as u32), &entry);
    }
    Block {
        header: BlockHeader {
            version: BLOCK_VERSION,
            height: 0,
            prev_hash: rules,
            timestamp_ms,
            round: 0,
            proposer: PublicKey([0; 32]),
            tx_root: merkle_root(&[txid]),
            witness_root: witness_root(std::slice::from_ref(&coinbase)),
            utxo_commitment: commitment.digest(),
            next_masternode_set_hash: masternode_set_hash,
            last_commit_hash: Hash32::ZERO,
            evidence_root: Hash32::ZERO,
        },
        last_commit: None,
        transactions: vec![coinbase],
        evidence: Vec::new(),
    }
}

/// Splits `total` among payees in proportion to their weights, in integers: each gets
/// `total * weight / sum` rounded down, and the remainder goes to the first payee, so the
/// outputs add up to `total` exactly. Payees whose share is zero get no output.
pub fn split_reward(total: Amount, payees: &[(KeyHash, u64)]) -> Vec<TxOutput> {
    let weight_sum: u128 = payees.iter().map(|(_, w)| u128::from(*w)).sum();
    if weight_sum == 0 || total == Amount::ZERO {
        return Vec::new();
    }
    let mut shares: Vec<u64> = payees
        .iter()
        .map(|(_, w)| {
            // share <= total because weight <= weight_sum, so it fits in u64.
            (u128::from(total.0) * u128::from(*w) / weight_sum) as u64
        })
        .collect();
    let paid: u64 = shares.iter().sum();
    shares[0] += total.0 - paid;
    payees
        .iter()
        .zip(shares)
        .filter(|(_, s)| *s > 0)
        .map(|((key_hash, _), s)| TxOutput {
            amount: Amount(s),
            key_hash: *key_hash,
        })
        .collect()
}

/// What a proposer decides; the ledger fills in the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockTemplate {
    pub timestamp_ms: u64,
    pub round: u32,
    pub proposer: PublicKey,
    /// Who shares the reward and fees, with their weights.
    pub payees: Vec<(KeyHash, u64)>,
    /// Candidates, parents before children. The builder places those that fit and leaves
    /// the rest for later blocks. Shared: a block holds the candidates it places as they are.
    pub transactions: Vec<Arc<Transaction>>,
    /// At most this many transactions besides the coinbase.
    pub max_transactions: usize,
    pub next_masternode_set_hash: Hash32,
    /// The certificate of the previous block, carried in this one (`None` after genesis).
    pub last_commit: Option<CommitCertificate>,
}

/// A block the ledger built, with the candidates it could not place.
#[derive(Debug)]
pub struct BuiltBlock {
    pub block: Block,
    /// Candidates the block rule refused, with the reason. A final transaction here is a bug
    /// (layer 1 made final what layer 2 cannot include); the block goes ahead without it.
    pub skipped: Vec<(Txid, LedgerError)>,
    /// Candidates carried to a later block: no room left (bytes or count), or a parent was
    /// not placed.
    pub carried: usize,
}

/// Bytes kept free beyond the measured frame of a block: the growth of the transaction
/// count's variable-length prefix (at most 9 bytes) and some headroom.
const BLOCK_SIZE_SLACK: usize = 64;

impl Ledger {
    /// Final transactions not yet in a block, ordered so each comes after the final
    /// transactions whose outputs it spends, and otherwise by txid (every proposer orders
    /// alike): a proposal's candidates. Depth first from each in txid order, parents found by
    /// binary search: O(n log n) in the final set with no map built, whatever the chains look
    /// like (a proposal takes the whole set on every block). How many fit in one block is
    /// [`Ledger::build_block`]'s business.
    pub fn final_candidates(&self) -> Vec<Arc<Transaction>> {
        let mut finals = self.final_txs();
        finals.sort_unstable_by_key(|(txid, _)| *txid);
        let index_of = |txid: &Txid| finals.binary_search_by(|(id, _)| id.cmp(txid)).ok();
        // 0: not reached; 1: its parents are being placed; 2: placed. A parent met in state
        // 1 would be a cycle, which txids make impossible; it is skipped, so this ends anyway.
        let mut state = vec![0u8; finals.len()];
        let mut ordered = Vec::with_capacity(finals.len());
        // (transaction, next input to look at)
        let mut path: Vec<(usize, usize)> = Vec::new();
        for root in 0..finals.len() {
            if state[root] != 0 {
                continue;
            }
            state[root] = 1;
            path.push((root, 0));
            while let Some((at, next_input)) = path.last_mut() {
                let tx = &finals[*at].1;
                match tx.inputs.get(*next_input) {
                    Some(input) => {
                        *next_input += 1;
                        if let Some(parent) = index_of(&input.prev_out.txid) {
                            if state[parent] == 0 {
                                state[parent] = 1;
                                path.push((parent, 0));
                            }
                        }
                    }
                    None => {
                        state[*at] = 2;
                        ordered.push(Arc::clone(&finals[*at].1));
                        path.pop();
                    }
                }
            }
        }
        ordered
    }

    /// Builds the next block on the tip: the candidates that fit, in their order, each tried
    /// against the block so far (the block rule of `walk`, one transaction at a time), then the
    /// coinbase (reward + fees split among the payees), merkle root and UTXO commitment. The
    /// block never exceeds [`MAX_BLOCK_BYTES`] nor `max_transactions`; a candidate that breaks
    /// the rule is skipped and reported, never failing the block. One pass over the
    /// candidates.
    pub fn build_block(&self, template: BlockTemplate) -> Result<BuiltBlock> {
        let tip = self.tip().ok_or(LedgerError::NoGenesis)?;
        let height = tip.height + 1;
        let budget = MAX_BLOCK_BYTES.saturating_sub(frame_bound(&template, height));
        let mut walker = Walker::new(height, template.transactions.len());
        let mut used = 0usize;
        let mut left_out: HashSet<Txid> = HashSet::new();
        let mut placed: Vec<Arc<Transaction>> = Vec::new();
        let mut skipped = Vec::new();
        let mut carried = 0usize;
        for tx in template.transactions {
            let txid = tx.txid();
            let full = placed.len() >= template.max_transactions;
            let orphan = tx
                .inputs
                .iter()
                .any(|i| left_out.contains(&i.prev_out.txid));
            let size = tx.encoded_len();
            if full || orphan || used + size > budget {
                carried += 1;
                left_out.insert(txid);
                continue;
            }
            match self.try_place(&mut walker, &tx, txid) {
                Ok(()) => {
                    used += size;
                    placed.push(tx);
                }
                Err(LedgerError::Storage(e)) => return Err(LedgerError::Storage(e)),
                Err(e) => {
                    left_out.insert(txid);
                    skipped.push((txid, e));
                }
            }
        }
        let total = self
            .params
            .rewards
            .reward_at(height)
            .checked_add(walker.fees)
            .ok_or(LedgerError::FeeOverflow { height })?;
        let coinbase = Transaction::new(
            TX_VERSION,
            Vec::new(),
            split_reward(total, &template.payees),
            TxPayload::Coinbase { height },
        );
        // The walk above, with the coinbase, is the block's: no second pass over it.
        let step = walker.check(self, &coinbase, coinbase.txid())?;
        walker.apply_coinbase(step);
        let mut transactions = Vec::with_capacity(placed.len() + 1);
        transactions.push(Arc::new(coinbase));
        transactions.extend(placed);
        let walk = walker.finish(self);
        let utxo_commitment = self.commitment_after_walk(&walk).digest();
        let tx_root = merkle_root(&walk.txids);
        let block = Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height,
                prev_hash: tip.hash,
                timestamp_ms: template.timestamp_ms.max(tip.timestamp_ms + 1),
                round: template.round,
                proposer: template.proposer,
                tx_root,
                witness_root: witness_root(&transactions),
                utxo_commitment,
                next_masternode_set_hash: template.next_masternode_set_hash,
                last_commit_hash: template
                    .last_commit
                    .as_ref()
                    .map_or(Hash32::ZERO, CommitCertificate::hash),
                // The proposer adds evidence afterwards (consensus decides what is valid).
                evidence_root: Hash32::ZERO,
            },
            last_commit: template.last_commit,
            transactions,
            evidence: Vec::new(),
        };
        // The proposer adds evidence and the next set's hash to the header; the transactions
        // stay, and so does this walk: its commit need not walk them again.
        self.remember_walk(tip.hash, &block.header, walk);
        Ok(BuiltBlock {
            block,
            skipped,
            carried,
        })
    }

    /// Tries one candidate against the block so far; adds it only if it passes everything a
    /// validator will check: structure, the block rule, and its signatures when this node did
    /// not verify them on arrival.
    fn try_place(&self, walker: &mut Walker, tx: &Transaction, txid: Txid) -> Result<()> {
        tx.check_structure(false)?;
        let step = walker.check(self, tx, txid)?;
        if step.needs_signatures {
            tx.verify_signatures(self.params.network)?;
        }
        walker.apply(step);
        Ok(())
    }
}

/// An upper bound on the bytes of the block without its candidate transactions: header with
/// every number at its widest, the carried certificate, and a coinbase paying every payee the
/// largest amount.
fn frame_bound(template: &BlockTemplate, height: u64) -> usize {
    let coinbase = Transaction::new(
        TX_VERSION,
        Vec::new(),
        template
            .payees
            .iter()
            .map(|(key_hash, _)| TxOutput {
                amount: Amount(u64::MAX),
                key_hash: *key_hash,
            })
            .collect(),
        TxPayload::Coinbase { height },
    );
    let skeleton = Block {
        header: BlockHeader {
            version: BLOCK_VERSION,
            height: u64::MAX,
            prev_hash: Hash32::ZERO,
            timestamp_ms: u64::MAX,
            round: u32::MAX,
            proposer: template.proposer,
            tx_root: Hash32::ZERO,
            witness_root: Hash32::ZERO,
            utxo_commitment: Hash32::ZERO,
            next_masternode_set_hash: Hash32::ZERO,
            last_commit_hash: Hash32::ZERO,
            evidence_root: Hash32::ZERO,
        },
        last_commit: template.last_commit.clone(),
        transactions: vec![Arc::new(coinbase)],
        evidence: Vec::new(),
    };
    codec::encoded_len(&skeleton) + BLOCK_SIZE_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_split_adds_up_exactly() {
        let payees = [
            (KeyHash([1; 20]), 1),
            (KeyHash([2; 20]), 10),
            (KeyHash([3; 20]), 100),
        ];
        let outs = split_reward(Amount(1_000_003), &payees);
        let sum: u64 = outs.iter().map(|o| o.amount.0).sum();
        assert_eq!(sum, 1_000_003);
        assert_eq!(outs[2].amount, Amount(1_000_003 * 100 / 111));
        assert!(split_reward(Amount(5), &[]).is_empty());
    }
}
