//! Applying a committed block: validate everything first, then write one atomic batch.
//!
//! ```text
//! Block ─► check_structure ─► link to tip ─► walk txs in order ─► signatures (batched)
//!       ─► coinbase = reward + fees ─► commitment == header ─► BlockPlan
//! BlockPlan + certificate ─► one sled batch (blocks, commit, utxos, states, index, tip)
//!                         ─► flush ─► memory (DashMap, tip, commitment)
//! ```
//! A block that fails any check leaves the database and memory exactly as they were.

use super::{lock, Ledger, LedgerError, Result, UtxoCommitment, UtxoRecord};
use crate::storage::schema::{address_key, height_key, meta_key};
use crate::storage::{ChainTip, TreeId, WriteBatch};
use crate::types::signature::{verify_batch, VerifyItem};
use crate::types::{
    Amount, Block, BlockHash, CommitCertificate, Hash32, OutPoint, Transaction, TxError,
    TxLocation, TxPayload, Txid, UtxoEntry, UtxoState,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Signatures verified per batch call while checking a block.
const SIGNATURE_CHUNK: usize = 256;

/// Everything a valid block changes, computed without writing anything.
#[derive(Debug)]
pub struct BlockPlan {
    pub height: u64,
    pub hash: BlockHash,
    /// Records leaving the set (spent by the block), as they were before it.
    removed: Vec<(OutPoint, UtxoRecord)>,
    /// Outputs the block leaves in the set, now confirmed, with the state they keep.
    added: Vec<(OutPoint, UtxoRecord)>,
    txids: Vec<Txid>,
    /// Pending transactions whose locks the block overrode: they can never be final now.
    pub evicted: Vec<Txid>,
    pub fees: Amount,
    pub commitment: UtxoCommitment,
    tip: ChainTip,
}

/// What committing a block did, for the mempool and consensus to follow up.
#[derive(Debug, Clone)]
pub struct BlockOutcome {
    pub height: u64,
    pub hash: BlockHash,
    pub txids: Vec<Txid>,
    pub evicted: Vec<Txid>,
    pub spent: Vec<OutPoint>,
}

impl Ledger {
    /// Validates `block` as the next block on the tip and returns what it would change.
    pub fn plan_block(&self, block: &Block) -> Result<BlockPlan> {
        block.check_structure()?;
        let header = &block.header;
        let height = header.height;
        let tip = self.tip().ok_or(LedgerError::NoGenesis)?;
        if height != tip.height + 1 {
            return Err(LedgerError::NotNextHeight {
                expected: tip.height + 1,
                got: height,
            });
        }
        if header.prev_hash != tip.hash {
            return Err(LedgerError::WrongParent {
                height,
                expected: tip.hash,
                got: header.prev_hash,
            });
        }
        if header.timestamp_ms <= tip.timestamp_ms {
            return Err(LedgerError::TimestampNotIncreasing {
                height,
                parent: tip.timestamp_ms,
                got: header.timestamp_ms,
            });
        }
        let walk = self.walk_transactions(height, &block.transactions, true)?;
        let reward = self.params.rewards.reward_at(height);
        let expected = reward
            .checked_add(walk.fees)
            .ok_or(LedgerError::FeeOverflow { height })?;
        let coinbase_total = block.transactions[0].total_output().ok_or(LedgerError::Tx(
            TxError::OutputOverflow {
                txid: walk.txids[0],
            },
        ))?;
        if coinbase_total != expected {
            return Err(LedgerError::BadCoinbase {
                height,
                expected,
                got: coinbase_total,
            });
        }
        self.finish_plan(block, walk)
    }

    /// Validates a genesis block: height 0, no parent, only a coinbase (its outputs are the
    /// initial allocation), and the commitment it claims.
    pub fn plan_genesis(&self, genesis: &Block) -> Result<BlockPlan> {
        if self.tip().is_some() {
            return Err(LedgerError::GenesisExists);
        }
        genesis.check_structure()?;
        let h = &genesis.header;
        if h.height != 0 {
            return Err(LedgerError::NotNextHeight {
                expected: 0,
                got: h.height,
            });
        }
        if h.prev_hash != Hash32::ZERO {
            return Err(LedgerError::WrongParent {
                height: 0,
                expected: Hash32::ZERO,
                got: h.prev_hash,
            });
        }
        let walk = self.walk_transactions(0, &genesis.transactions, false)?;
        self.finish_plan(genesis, walk)
    }

    /// The tip's commitment moved by a walk's changes: confirmed outputs leave, new ones join.
    fn commitment_after_walk(&self, walk: &Walk) -> UtxoCommitment {
        let mut commitment = self.commitment();
        for (op, rec) in &walk.removed {
            if rec.entry.is_confirmed() {
                commitment.remove(op, &rec.entry);
            }
        }
        for (op, rec) in &walk.added {
            commitment.insert(op, &rec.entry);
        }
        commitment
    }

    fn finish_plan(&self, block: &Block, walk: Walk) -> Result<BlockPlan> {
        let height = block.header.height;
        let commitment = self.commitment_after_walk(&walk);
        if commitment.digest() != block.header.utxo_commitment {
            return Err(LedgerError::CommitmentMismatch {
                height,
                claimed: block.header.utxo_commitment,
                computed: commitment.digest(),
            });
        }
        let hash = block.hash();
        Ok(BlockPlan {
            height,
            hash,
            removed: walk.removed,
            added: walk.added,
            txids: walk.txids,
            evicted: walk.evicted.into_iter().collect(),
            fees: walk.fees,
            commitment,
            tip: ChainTip {
                height,
                hash,
                timestamp_ms: block.header.timestamp_ms,
                utxo_accumulator: commitment.to_bytes(),
            },
        })
    }

    /// The UTXO commitment the block with these transactions would carry at the next height.
    /// Proposers use it to fill in the header.
    pub fn commitment_after(&self, transactions: &[Transaction], height: u64) -> Result<Hash32> {
        let walk = self.walk_transactions(height, transactions, height > 0)?;
        Ok(self.commitment_after_walk(&walk).digest())
    }

    /// Walks the block's transactions in order against the set plus what earlier transactions
    /// of the block created.
    fn walk_transactions(
        &self,
        height: u64,
        transactions: &[Transaction],
        check_signatures: bool,
    ) -> Result<Walk> {
        let mut created: BTreeMap<OutPoint, UtxoEntry> = BTreeMap::new();
        let mut spent: HashSet<OutPoint> = HashSet::new();
        let mut removed: Vec<(OutPoint, UtxoRecord)> = Vec::new();
        let mut evicted: BTreeSet<Txid> = BTreeSet::new();
        let mut txids = Vec::with_capacity(transactions.len());
        let mut messages: Vec<[u8; 36]> = Vec::new();
        let mut to_verify: Vec<(usize, usize)> = Vec::new();
        let mut fees = Amount::ZERO;

        for (tx_index, tx) in transactions.iter().enumerate() {
            let txid = tx.txid();
            txids.push(txid);
            if let Some(loc) = self.storage.tx_location(&txid)? {
                return Err(LedgerError::AlreadyConfirmed {
                    txid,
                    height: loc.height,
                });
            }
            let mut input_total = Amount::ZERO;
            let mut finalized_here = true;
            for (index, input) in tx.inputs.iter().enumerate() {
                let outpoint = input.prev_out;
                let entry = if let Some(entry) = created.remove(&outpoint) {
                    // Created earlier in this block; this node may already hold it as the
                    // output of a final transaction, with a layer-1 state of its own.
                    if let Some(rec) = self.utxo(&outpoint) {
                        match rec.state {
                            UtxoState::SpentFinalized(by) if by != txid => {
                                return Err(LedgerError::ConflictsWithFinal {
                                    txid,
                                    outpoint,
                                    final_txid: by,
                                })
                            }
                            UtxoState::Locked(by) if by != txid => {
                                evicted.insert(by);
                            }
                            _ => {}
                        }
                        removed.push((outpoint, rec));
                    }
                    finalized_here = false;
                    entry
                } else {
                    if spent.contains(&outpoint) {
                        return Err(LedgerError::MissingInput { txid, outpoint });
                    }
                    let rec = self
                        .utxo(&outpoint)
                        .ok_or(LedgerError::MissingInput { txid, outpoint })?;
                    if !rec.entry.is_confirmed() {
                        return Err(LedgerError::UnconfirmedInput { txid, outpoint });
                    }
                    match rec.state {
                        UtxoState::Unspent => finalized_here = false,
                        UtxoState::Locked(by) => {
                            finalized_here = false;
                            if by != txid {
                                evicted.insert(by);
                            }
                        }
                        UtxoState::SpentFinalized(by) if by == txid => {}
                        UtxoState::SpentFinalized(by) => {
                            return Err(LedgerError::ConflictsWithFinal {
                                txid,
                                outpoint,
                                final_txid: by,
                            })
                        }
                    }
                    spent.insert(outpoint);
                    removed.push((outpoint, rec));
                    rec.entry
                };
                if input.public_key.key_hash() != entry.output.key_hash {
                    return Err(LedgerError::WrongKey {
                        txid,
                        index,
                        outpoint,
                    });
                }
                input_total = input_total
                    .checked_add(entry.output.amount)
                    .ok_or(LedgerError::InputOverflow { txid })?;
            }
            // A transaction this node finalized was verified when it arrived; others are
            // verified here, in batches below. "Finalized here" means byte-equal to the copy
            // this node verified and stored: the txid leaves signatures out, so the same id
            // with other signature bytes (a swapping proposer or relay) is checked in full.
            if finalized_here && !self.is_verified_final_copy(tx, &txid)? {
                finalized_here = false;
            }
            if check_signatures && !tx.inputs.is_empty() && !finalized_here {
                messages.push(Transaction::signing_message(self.params.network, &txid));
                for index in 0..tx.inputs.len() {
                    to_verify.push((tx_index, index));
                }
            }
            if !tx.is_coinbase() {
                let output_total = tx
                    .total_output()
                    .ok_or(LedgerError::Tx(TxError::OutputOverflow { txid }))?;
                let fee = input_total.checked_sub(output_total).ok_or(
                    LedgerError::OutputsExceedInputs {
                        txid,
                        inputs: input_total,
                        outputs: output_total,
                    },
                )?;
                fees = fees
                    .checked_add(fee)
                    .ok_or(LedgerError::FeeOverflow { height })?;
            }
            if let TxPayload::MasternodeRegistration(_) = &tx.payload {
                self.check_registration(tx, &txid, |op| {
                    if spent.contains(op) {
                        return None;
                    }
                    created.get(op).copied().or_else(|| {
                        self.utxo(op)
                            .filter(|r| r.entry.is_confirmed())
                            .map(|r| r.entry)
                    })
                })?;
            }
            for (i, output) in tx.outputs.iter().enumerate() {
                created.insert(
                    OutPoint::new(txid, i as u32),
                    UtxoEntry {
                        output: *output,
                        height: Some(height),
                        coinbase: tx.is_coinbase(),
                    },
                );
            }
        }

        self.verify_block_signatures(transactions, &txids, &messages, &to_verify)?;

        let added = created
            .into_iter()
            .map(|(op, entry)| {
                let state = self.utxo(&op).map_or(UtxoState::Unspent, |r| r.state);
                (op, UtxoRecord { entry, state })
            })
            .collect();
        Ok(Walk {
            removed,
            added,
            txids,
            evicted,
            fees,
        })
    }

    /// Whether `tx` is byte for byte the final transaction this node verified and stored
    /// (one read and one comparison: the honest case stays cheap).
    fn is_verified_final_copy(&self, tx: &Transaction, txid: &Txid) -> Result<bool> {
        let stored = self
            .storage
            .tree(crate::storage::TreeId::FinalTxs)
            .get(txid.0)
            .map_err(crate::storage::StorageError::from)?;
        Ok(stored.is_some_and(|raw| raw.as_ref() == crate::types::codec::encode(tx).as_slice()))
    }

    fn verify_block_signatures(
        &self,
        transactions: &[Transaction],
        txids: &[Txid],
        messages: &[[u8; 36]],
        to_verify: &[(usize, usize)],
    ) -> Result<()> {
        // `messages` holds one entry per transaction that needs checking, in order.
        let mut msg_of_tx = BTreeMap::new();
        let mut next = 0;
        for &(tx_index, _) in to_verify {
            if let std::collections::btree_map::Entry::Vacant(v) = msg_of_tx.entry(tx_index) {
                v.insert(next);
                next += 1;
            }
        }
        for chunk in to_verify.chunks(SIGNATURE_CHUNK) {
            let items: Vec<VerifyItem<'_>> = chunk
                .iter()
                .map(|&(t, i)| {
                    let input = &transactions[t].inputs[i];
                    VerifyItem {
                        public_key: &input.public_key,
                        message: &messages[msg_of_tx[&t]],
                        signature: &input.signature,
                    }
                })
                .collect();
            let verdicts = verify_batch(&items);
            if let Some(pos) = verdicts.iter().position(|ok| !ok) {
                let (t, index) = chunk[pos];
                return Err(LedgerError::Tx(TxError::BadSignature {
                    txid: txids[t],
                    index,
                }));
            }
        }
        Ok(())
    }

    /// Validates and commits the next block with its certificate. The certificate's signatures
    /// and weights are consensus's business; here it must name this block.
    pub fn apply_block(&self, block: &Block, cert: &CommitCertificate) -> Result<BlockOutcome> {
        self.apply_block_with(block, cert, WriteBatch::new())
    }

    /// Like [`apply_block`](Self::apply_block), with extra writes (for example masternode-set
    /// changes) that must land in the same atomic batch.
    pub fn apply_block_with(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        extra: WriteBatch,
    ) -> Result<BlockOutcome> {
        let _w = self.write_guard();
        let plan = self.plan_block(block)?;
        if cert.height != plan.height || cert.block_hash != plan.hash {
            return Err(LedgerError::CertificateMismatch {
                height: plan.height,
                cert_height: cert.height,
                cert_block: cert.block_hash,
            });
        }
        self.commit_plan(block, Some(cert), plan, extra)
    }

    /// Applies the genesis block to an empty ledger.
    pub fn apply_genesis(&self, genesis: &Block) -> Result<BlockOutcome> {
        let _w = self.write_guard();
        let plan = self.plan_genesis(genesis)?;
        self.commit_plan(genesis, None, plan, WriteBatch::new())
    }

    fn commit_plan(
        &self,
        block: &Block,
        cert: Option<&CommitCertificate>,
        plan: BlockPlan,
        extra: WriteBatch,
    ) -> Result<BlockOutcome> {
        let mut batch = WriteBatch::new();
        for (op, rec) in &plan.removed {
            batch.remove(TreeId::Utxos, op.to_key());
            batch.remove(TreeId::UtxoStates, op.to_key());
            batch.remove(
                TreeId::AddressIndex,
                address_key(&rec.entry.output.key_hash, op),
            );
        }
        for (op, rec) in &plan.added {
            batch.put(TreeId::Utxos, op.to_key(), &rec.entry);
            batch.put_raw(
                TreeId::AddressIndex,
                address_key(&rec.entry.output.key_hash, op),
                Vec::new(),
            );
        }
        for (index, txid) in plan.txids.iter().enumerate() {
            let loc = TxLocation {
                height: plan.height,
                index: index as u32,
            };
            batch.put(TreeId::TxIndex, txid.0, &loc);
            batch.remove(TreeId::FinalTxs, txid.0);
            batch.remove(TreeId::PendingTxs, txid.0);
        }
        // A transaction final here at layer 1 was put in the history then, at its order.
        let final_txs = self.storage.tree(TreeId::FinalTxs);
        for (i, (tx, txid)) in block.transactions.iter().zip(&plan.txids).enumerate() {
            let known = final_txs
                .contains_key(txid.0)
                .map_err(crate::storage::StorageError::from)?;
            if !known {
                super::history::record(&mut batch, tx, super::history::block_order(block, i));
            }
        }
        // Transactions the block made impossible keep their locks (the owner equivocated)
        // but need no body any more.
        for txid in &plan.evicted {
            batch.remove(TreeId::PendingTxs, txid.0);
        }
        batch.put(TreeId::Blocks, plan.hash.0, block);
        batch.put_raw(
            TreeId::BlockHashes,
            height_key(plan.height),
            plan.hash.0.to_vec(),
        );
        if let Some(cert) = cert {
            batch.put(TreeId::Commits, height_key(plan.height), cert);
        }
        batch.put(TreeId::Meta, meta_key::TIP, &plan.tip);
        batch.extend(extra);
        self.storage.commit(batch)?;
        self.storage.flush()?;

        for (op, _) in &plan.removed {
            self.utxos.remove(op);
        }
        for (op, rec) in &plan.added {
            self.utxos.insert(*op, *rec);
        }
        *lock(&self.commitment) = plan.commitment;
        self.tip.store(Some(Arc::new(plan.tip)));
        Ok(BlockOutcome {
            height: plan.height,
            hash: plan.hash,
            txids: plan.txids,
            evicted: plan.evicted,
            spent: plan.removed.iter().map(|(op, _)| *op).collect(),
        })
    }
}

struct Walk {
    removed: Vec<(OutPoint, UtxoRecord)>,
    added: Vec<(OutPoint, UtxoRecord)>,
    txids: Vec<Txid>,
    evicted: BTreeSet<Txid>,
    fees: Amount,
}
