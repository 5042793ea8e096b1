//! Applying a committed block: validate everything first, then write one atomic batch.
//!
//! ```text
//! Block ─► check_structure ─► link to tip ─► walk txs in order ─► signatures (batched)
//!       ─► coinbase = reward + fees ─► commitment == header ─► BlockPlan
//! BlockPlan + certificate ─► one atomic batch (blocks, commit, utxos, states, index, tip)
//!                         ─► flush ─► memory (DashMap, tip, commitment)
//! ```
//! A block that fails any check leaves the database and memory exactly as they were.

use super::walk::Walker;
use super::{lock, Ledger, LedgerError, Result, UtxoCommitment, UtxoRecord};
use crate::storage::schema::{height_key, meta_key};
use crate::storage::{ChainTip, TreeId, WriteBatch};
use crate::types::hash::merkle_root;
use crate::types::signature::{verify_batch, VerifyItem};
use crate::types::{
    Amount, Block, BlockError, BlockHash, BlockHeader, CommitCertificate, Hash32, OutPoint,
    Transaction, TxError, TxLocation, TxPayload, Txid, UtxoState,
};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Signatures verified per batch call while checking a block.
const SIGNATURE_CHUNK: usize = 256;
/// Commitments remembered (see [`Ledger::commitment_after_walk`]): a few rounds' proposals.
const COMMITMENT_MEMO: usize = 4;
/// Walks remembered for the commit (see [`WalkMemo`]): a few rounds' proposals.
const WALK_MEMO: usize = 4;
/// Blocks remembered as well formed (see [`WellFormed`]): a few rounds' proposals.
const WELL_FORMED: usize = 4;

/// Blocks whose structure was checked, known by their allocation.
///
/// A proposal's structure (its roots over every txid and signature) is checked when it
/// arrives, again when it is planned and again when it commits: three hashings of every
/// transaction of the block on the hot path. Holding the `Arc` keeps its allocation from
/// being reused and its contents from changing (a `Block` changes only through `&mut`, which
/// a shared `Arc` never gives; the one cell inside, each transaction's txid cache, holds a
/// value derived from the rest), so a block at the same address is the block that was
/// checked; any other copy, even with the same hash, is checked again.
#[derive(Default)]
pub(super) struct WellFormed(Vec<Arc<Block>>);

impl WellFormed {
    fn contains(&self, block: &Block) -> bool {
        self.0.iter().any(|b| std::ptr::eq(b.as_ref(), block))
    }

    fn remember(&mut self, block: Arc<Block>) {
        if self.0.len() >= WELL_FORMED {
            self.0.remove(0);
        }
        self.0.push(block);
    }

    /// Forgets the blocks at or below a committed height: none can be planned again.
    fn forget_through(&mut self, height: u64) {
        self.0.retain(|b| b.header.height > height);
    }
}

/// What a commitment after a block depends on: the tip it builds on (its commitment too) and
/// the block's txids.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CommitmentKey {
    tip: Option<BlockHash>,
    base: UtxoCommitment,
    txids_root: Hash32,
}

/// The last few commitments computed, newest last.
#[derive(Default)]
pub(super) struct CommitmentMemo(Vec<(CommitmentKey, UtxoCommitment)>);

impl CommitmentMemo {
    fn get(&self, key: &CommitmentKey) -> Option<UtxoCommitment> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| c.clone())
    }

    fn remember(&mut self, key: CommitmentKey, commitment: UtxoCommitment) {
        if self.0.len() >= COMMITMENT_MEMO {
            self.0.remove(0);
        }
        self.0.push((key, commitment));
    }
}

/// What a walk depends on besides layer-1 states: the tip it was walked on and the block's
/// transactions, in order, each in full (the witness root covers signatures too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WalkKey {
    tip: BlockHash,
    tx_root: Hash32,
    witness_root: Hash32,
}

/// The walks of blocks validated or built on the current tip, kept for their commit.
///
/// Every block is walked twice otherwise: when it is validated (or built, by its proposer)
/// and again when it commits, one transaction at a time with a lookup per input and output,
/// a third of the commit's time. A kept walk is used only while the tip is the one it was
/// walked on and every layer-1 state it read is still the same (see
/// [`Ledger::take_walk`]); anything else walks again.
#[derive(Default)]
pub(super) struct WalkMemo(Vec<(WalkKey, Walk)>);

impl WalkMemo {
    fn take(&mut self, key: &WalkKey) -> Option<Walk> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn remember(&mut self, key: WalkKey, walk: Walk) {
        self.0.retain(|(k, _)| k.tip == key.tip && *k != key);
        if self.0.len() >= WALK_MEMO {
            self.0.remove(0);
        }
        self.0.push((key, walk));
    }
}

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
    /// Collaterals whose layer-1 claim ends: their registration is in this block.
    released: Vec<OutPoint>,
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
    /// Checks a block's structure ([`Block::check_structure`]) and remembers this copy as
    /// checked, so planning and committing it do not check it again ([`WellFormed`]). Only a
    /// block for the next height is remembered: a member signing proposals for heights far
    /// ahead would otherwise hold the memo's room (and their memory) and push the real next
    /// block out.
    pub fn check_well_formed(&self, block: &Arc<Block>) -> std::result::Result<(), BlockError> {
        if lock(&self.well_formed).contains(block) {
            return Ok(());
        }
        block.check_structure()?;
        let next = self.tip().map_or(0, |t| t.height + 1);
        if block.header.height == next {
            lock(&self.well_formed).remember(Arc::clone(block));
        }
        Ok(())
    }

    /// Validates `block` as the next block on the tip and returns what it would change. The
    /// walk is kept for the block's commit ([`WalkMemo`]).
    pub fn plan_block(&self, block: &Block) -> Result<BlockPlan> {
        let tip = self.tip().ok_or(LedgerError::NoGenesis)?;
        self.check_header(block)?;
        let walk = self.walk_transactions(block.header.height, &block.transactions, true)?;
        let kept = walk.clone();
        let plan = self.plan_with_walk(block, walk)?;
        self.remember_walk(tip.hash, &block.header, kept);
        Ok(plan)
    }

    /// Keeps the walk of a block walked on tip `tip` (a built block's header may change
    /// after, its transactions not), for its commit; not if a block committed meanwhile.
    pub(super) fn remember_walk(&self, tip: BlockHash, header: &BlockHeader, walk: Walk) {
        if self.tip().map(|t| t.hash) == Some(tip) {
            lock(&self.walk_memo).remember(walk_key(tip, header), walk);
        }
    }

    /// The kept walk of `block` on the current tip, if every layer-1 state it read is still
    /// what it read: the states of the outputs it spends (they decided what it evicted and
    /// whether it conflicts with a final spend) are compared; a walk that found an input
    /// with no record yet, or a block with a registration (its collateral's state is not
    /// kept), walks again. The states of the outputs it creates are read again now (a lock
    /// or a finalization since may have spent one at layer 1). A block this node built, or
    /// validated once all its transactions were final here (the driver waits for that),
    /// keeps those states to its commit: this is their usual path. A proposal validated and
    /// never committed costs the copy of its walk.
    fn take_walk(&self, block: &Block) -> Option<Walk> {
        let tip = self.tip()?;
        let mut walk = lock(&self.walk_memo).take(&walk_key(tip.hash, &block.header))?;
        let registers = (block.transactions.iter())
            .any(|tx| matches!(tx.payload, TxPayload::MasternodeRegistration(_)));
        let unchanged = !walk.unseen_inputs
            && !registers
            && walk.released.is_empty()
            && walk
                .removed
                .iter()
                .all(|(op, rec)| self.utxo(op).map(|now| now.state) == Some(rec.state));
        if !unchanged {
            return None;
        }
        for (op, rec) in &mut walk.added {
            rec.state = self.utxo(op).map_or(UtxoState::Unspent, |now| now.state);
        }
        Some(walk)
    }

    /// The rules of the block that need no walk: its structure, and its place on the tip.
    fn check_header(&self, block: &Block) -> Result<()> {
        if !lock(&self.well_formed).contains(block) {
            block.check_structure()?;
        }
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
        Ok(())
    }

    /// The rest of a block's plan once its transactions are walked: the coinbase pays the
    /// reward and the fees exactly, and the header's commitment is the walk's.
    fn plan_with_walk(&self, block: &Block, walk: Walk) -> Result<BlockPlan> {
        let height = block.header.height;
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
        let walk = self.walk_transactions(0, &genesis.transactions, false)?;
        self.finish_plan(genesis, walk)
    }

    /// The tip's commitment moved by a walk's changes: confirmed outputs leave, new ones join.
    ///
    /// A block is planned up to three times (built, validated, committed), and expanding
    /// every output it spends or creates (2 KiB of hash output each) is work worth doing
    /// once, so the result is remembered for the tip and the block's transactions: the
    /// commitment depends on nothing else (a txid covers the inputs and outputs; signatures
    /// and the rest of the header do not count).
    pub(super) fn commitment_after_walk(&self, walk: &Walk) -> UtxoCommitment {
        let key = CommitmentKey {
            tip: self.tip().map(|t| t.hash),
            base: self.commitment(),
            txids_root: merkle_root(&walk.txids),
        };
        if let Some(known) = lock(&self.commitment_memo).get(&key) {
            return known;
        }
        let mut commitment = key.base.clone();
        for (op, rec) in &walk.removed {
            if rec.entry.is_confirmed() {
                commitment.remove(op, &rec.entry);
            }
        }
        for (op, rec) in &walk.added {
            commitment.insert(op, &rec.entry);
        }
        lock(&self.commitment_memo).remember(key, commitment.clone());
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
            released: walk.released,
            fees: walk.fees,
            tip: ChainTip {
                height,
                hash,
                timestamp_ms: block.header.timestamp_ms,
                utxo_state: commitment.to_bytes(),
            },
            commitment,
        })
    }

    /// Walks the block's transactions in order against the set plus what earlier transactions
    /// of the block created.
    pub(super) fn walk_transactions(
        &self,
        height: u64,
        transactions: &[Arc<Transaction>],
        check_signatures: bool,
    ) -> Result<Walk> {
        let mut walker = Walker::new(height, transactions.len());
        let mut to_verify: Vec<usize> = Vec::new();
        for (tx_index, tx) in transactions.iter().enumerate() {
            let step = walker.check(self, tx, tx.txid())?;
            if check_signatures && step.needs_signatures {
                to_verify.push(tx_index);
            }
            walker.apply(step);
        }
        self.verify_block_signatures(transactions, &walker.txids, &to_verify)?;
        Ok(walker.finish(self))
    }

    /// Whether `tx` is the very final transaction this node verified and stored, signatures
    /// included (one lookup in memory and one comparison: the honest case stays cheap).
    pub(super) fn is_verified_final_copy(&self, tx: &Transaction, txid: &Txid) -> bool {
        self.finals
            .get(txid)
            // The block's body is usually the very one finalized here (a proposal built or
            // filled in from the final set shares it): then there is nothing to compare.
            .is_some_and(|stored| std::ptr::eq(&*stored.tx, tx) || *stored.tx == *tx)
    }

    /// Verifies every signature of the transactions at `to_verify`, in batches.
    fn verify_block_signatures(
        &self,
        transactions: &[Arc<Transaction>],
        txids: &[Txid],
        to_verify: &[usize],
    ) -> Result<()> {
        let messages: Vec<[u8; 36]> = to_verify
            .iter()
            .map(|&t| Transaction::signing_message(self.params.network, &txids[t]))
            .collect();
        // (transaction index, item index within it) for every signature, in order.
        let mut items: Vec<VerifyItem<'_>> = Vec::new();
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for (&t, msg) in to_verify.iter().zip(&messages) {
            for (j, item) in transactions[t].verify_items(msg).into_iter().enumerate() {
                items.push(item);
                owners.push((t, j));
            }
        }
        for (chunk, owner_chunk) in items
            .chunks(SIGNATURE_CHUNK)
            .zip(owners.chunks(SIGNATURE_CHUNK))
        {
            let verdicts = verify_batch(chunk);
            if let Some(pos) = verdicts.iter().position(|ok| !ok) {
                let (t, item) = owner_chunk[pos];
                return Err(LedgerError::Tx(
                    transactions[t].signature_error(txids[t], item),
                ));
            }
        }
        for &t in to_verify {
            transactions[t].check_possession(txids[t])?;
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
        self.check_header(block)?;
        let walk = match self.take_walk(block) {
            Some(walk) => walk,
            None => self.walk_transactions(block.header.height, &block.transactions, true)?,
        };
        let plan = self.plan_with_walk(block, walk)?;
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
        // The block's records go to the database first, durably; the layer-1 records it ends are
        // removed from the log only then (a crash between leaves them, and the next open drops
        // them: see the module docs of `ledger`).
        let mut batch = WriteBatch::new();
        let mut layer1 = WriteBatch::new();
        for (op, rec) in &plan.removed {
            // An output of a transaction final here was only in memory.
            if rec.entry.is_confirmed() {
                batch.remove(TreeId::Utxos, op.to_key());
            }
            // Looked up now, not in the plan: a lock or finalization since the block was
            // planned wrote a record the plan's copy of the state does not show.
            if self.storage.contains(TreeId::UtxoStates, &op.to_key())? {
                layer1.remove(TreeId::UtxoStates, op.to_key());
            }
        }
        for (op, rec) in &plan.added {
            batch.put(TreeId::Utxos, op.to_key(), &rec.entry);
        }
        for (i, (tx, txid)) in block.transactions.iter().zip(&plan.txids).enumerate() {
            let loc = TxLocation {
                height: plan.height,
                index: i as u32,
            };
            batch.put(TreeId::TxIndex, txid.0, &loc);
            // A transaction final here keeps the history order it had since then; its final
            // record goes. Anything else may have a pending body (locked here, final
            // elsewhere).
            let order = match self.finals.get(txid) {
                Some(f) => {
                    layer1.remove(TreeId::FinalTxs, txid.0);
                    f.order
                }
                None => {
                    layer1.remove(TreeId::PendingTxs, txid.0);
                    super::history::block_order(block, i)
                }
            };
            super::history::record(&mut batch, tx, txid, order);
        }
        // A registration in the block no longer claims its collateral at layer 1: spending it
        // from now on is how the masternode leaves the set.
        for op in &plan.released {
            layer1.remove(TreeId::UtxoStates, op.to_key());
        }
        // Transactions the block made impossible keep their locks (the owner equivocated)
        // but need no body any more.
        for txid in &plan.evicted {
            layer1.remove(TreeId::PendingTxs, txid.0);
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
        self.storage.append(layer1)?;

        {
            let mut by_address = self.by_address.write();
            for (op, rec) in &plan.removed {
                if rec.entry.is_confirmed() {
                    by_address.remove(&(rec.entry.output.key_hash, *op));
                }
            }
            for (op, rec) in &plan.added {
                by_address.insert((rec.entry.output.key_hash, *op));
            }
        }
        for (op, _) in &plan.removed {
            self.utxos.remove(op);
        }
        for (op, rec) in &plan.added {
            self.utxos.insert(*op, *rec);
        }
        for op in &plan.released {
            self.utxos.set_state(op, UtxoState::Unspent);
        }
        for txid in &plan.txids {
            self.finals.remove(txid);
        }
        crate::tables::shrink_if_sparse(&self.finals, TABLE_FLOOR);
        self.utxos.shrink_if_sparse(TABLE_FLOOR);
        *lock(&self.commitment) = plan.commitment;
        // Walked on the tip that just went.
        lock(&self.walk_memo).clear();
        lock(&self.well_formed).forget_through(plan.height);
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

/// Tables smaller than this are never shrunk after a block (steady load keeps them there).
const TABLE_FLOOR: usize = 1 << 14;

/// The key a block's walk is kept under.
fn walk_key(tip: BlockHash, header: &BlockHeader) -> WalkKey {
    WalkKey {
        tip,
        tx_root: header.tx_root,
        witness_root: header.witness_root,
    }
}

/// What walking a block's transactions changes (see [`Walker`]).
#[derive(Clone)]
pub(super) struct Walk {
    pub(super) removed: Vec<(OutPoint, UtxoRecord)>,
    pub(super) added: Vec<(OutPoint, UtxoRecord)>,
    pub(super) txids: Vec<Txid>,
    pub(super) evicted: BTreeSet<Txid>,
    /// Collaterals whose layer-1 claim ends because their registration is in the block.
    pub(super) released: Vec<OutPoint>,
    pub(super) fees: Amount,
    /// See `Walker`: some input's layer-1 state was never looked at.
    pub(super) unseen_inputs: bool,
}
