//! Building blocks that the ledger will accept: the genesis block, and the next block from a
//! list of transactions (what a proposer does).

use super::{Ledger, LedgerError, Result, UtxoCommitment};
use crate::types::block::{witness_root, BLOCK_VERSION};
use crate::types::hash::merkle_root;
use crate::types::transaction::TX_VERSION;
use crate::types::{
    Amount, Block, BlockHeader, CommitCertificate, Hash32, KeyHash, OutPoint, PublicKey,
    Transaction, TxOutput, TxPayload, UtxoEntry,
};

/// The genesis block: one coinbase at height 0 paying the initial allocations.
pub fn build_genesis(
    allocations: &[(KeyHash, Amount)],
    timestamp_ms: u64,
    masternode_set_hash: Hash32,
) -> Block {
    let coinbase = Transaction {
        version: TX_VERSION,
        inputs: Vec::new(),
        outputs: allocations
            .iter()
            .map(|(key_hash, amount)| TxOutput {
                amount: *amount,
                key_hash: *key_hash,
            })
            .collect(),
        payload: TxPayload::Coinbase { height: 0 },
    };
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
            prev_hash: Hash32::ZERO,
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
#[derive(Clone, Debug)]
pub struct BlockTemplate {
    pub timestamp_ms: u64,
    pub round: u32,
    pub proposer: PublicKey,
    /// Who shares the reward and fees, with their weights.
    pub payees: Vec<(KeyHash, u64)>,
    /// Transactions in an order where each spends only outputs that exist before it.
    pub transactions: Vec<Transaction>,
    pub next_masternode_set_hash: Hash32,
    /// The certificate of the previous block, carried in this one (`None` after genesis).
    pub last_commit: Option<CommitCertificate>,
}

impl Ledger {
    /// Builds the next block on the tip: coinbase (reward + fees split among the payees), merkle
    /// root and UTXO commitment. Fails if any transaction would make the block invalid.
    pub fn build_block(&self, template: BlockTemplate) -> Result<Block> {
        let tip = self.tip().ok_or(LedgerError::NoGenesis)?;
        let height = tip.height + 1;
        let mut fees = Amount::ZERO;
        for tx in &template.transactions {
            let input_total = self.inputs_total_for_block(tx, &template.transactions)?;
            let out = tx.total_output().ok_or(LedgerError::Tx(
                crate::types::TxError::OutputOverflow { txid: tx.txid() },
            ))?;
            let fee = input_total
                .checked_sub(out)
                .ok_or(LedgerError::OutputsExceedInputs {
                    txid: tx.txid(),
                    inputs: input_total,
                    outputs: out,
                })?;
            fees = fees
                .checked_add(fee)
                .ok_or(LedgerError::FeeOverflow { height })?;
        }
        let total = self
            .params
            .rewards
            .reward_at(height)
            .checked_add(fees)
            .ok_or(LedgerError::FeeOverflow { height })?;
        let coinbase = Transaction {
            version: TX_VERSION,
            inputs: Vec::new(),
            outputs: split_reward(total, &template.payees),
            payload: TxPayload::Coinbase { height },
        };
        let mut transactions = Vec::with_capacity(template.transactions.len() + 1);
        transactions.push(coinbase);
        transactions.extend(template.transactions);
        let txids: Vec<_> = transactions.iter().map(Transaction::txid).collect();
        let utxo_commitment = self.commitment_after(&transactions, height)?;
        Ok(Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height,
                prev_hash: tip.hash,
                timestamp_ms: template.timestamp_ms.max(tip.timestamp_ms + 1),
                round: template.round,
                proposer: template.proposer,
                tx_root: merkle_root(&txids),
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
        })
    }

    /// Sum of a transaction's inputs, looking in the set and in the outputs of the other
    /// transactions of the block being built.
    fn inputs_total_for_block(
        &self,
        tx: &Transaction,
        block_txs: &[Transaction],
    ) -> Result<Amount> {
        let txid = tx.txid();
        let mut total = Amount::ZERO;
        for input in &tx.inputs {
            let op = input.prev_out;
            let amount = match self.utxo(&op) {
                Some(rec) => rec.entry.output.amount,
                None => block_txs
                    .iter()
                    .find(|t| t.txid() == op.txid)
                    .and_then(|t| t.outputs.get(op.index as usize))
                    .map(|o| o.amount)
                    .ok_or(LedgerError::MissingInput { txid, outpoint: op })?,
            };
            total = total
                .checked_add(amount)
                .ok_or(LedgerError::InputOverflow { txid })?;
        }
        Ok(total)
    }
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
