//! The UTXO manager: the set of spendable outputs, their layer-1 states, the set commitment and
//! the address index.
//!
//! ```text
//!             mempool check ─┐         ┌─ lock (vote) ─ release
//!  RPC reads ─► DashMap<OutPoint, UtxoRecord> ◄─┤
//!                            │         └─ finalize (quorum) ─ apply_block (commit)
//!                            ▼
//!                 sled: utxos, utxo_states, address_index, final_txs, blocks...
//! ```
//!
//! Reads are lock-free through the `DashMap`. Writers take one mutex (never across an
//! `.await`: every method here is synchronous and blocking, so async callers use
//! `spawn_blocking`). Blocks write one atomic sled batch first and only then update memory, so
//! a failed write changes nothing. Layer-1 transitions (lock, release, finalize) *stage* their
//! writes (see `storage`) and update memory at once; the consensus owner commits the staged
//! writes once per burst, and a failed commit stops it (the node exits rather than run on
//! with memory ahead of its disk).
//!
//! Transactions final at layer 1 and not yet in a block are kept in memory too, beside their
//! records in `final_txs`: proposals, proofs served to peers and RPC read them there, never
//! decoding them back from sled.

pub mod address;
pub mod apply;
pub mod builder;
pub mod commitment;
pub mod error;
pub mod history;
pub mod layer1;
pub mod reward;
pub mod snapshot;
mod walk;

pub use address::AddressBalance;
pub use apply::{BlockOutcome, BlockPlan};
pub use builder::{build_genesis, split_reward, BlockTemplate, BuiltBlock};
pub use commitment::UtxoCommitment;
pub use error::{LedgerError, Result};
pub use layer1::TxCheck;
pub use reward::RewardSchedule;

use crate::storage::{ChainTip, Storage, TreeId};
use crate::types::{Amount, Network, OutPoint, Transaction, Txid, UtxoEntry, UtxoState};
use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Chain rules the ledger enforces.
#[derive(Clone, Copy, Debug)]
pub struct LedgerParams {
    pub network: Network,
    pub rewards: RewardSchedule,
}

/// An output in the set together with its layer-1 state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtxoRecord {
    pub entry: UtxoEntry,
    pub state: UtxoState,
}

pub struct Ledger {
    storage: Storage,
    params: LedgerParams,
    utxos: DashMap<OutPoint, UtxoRecord>,
    /// Final at layer 1, not yet in a block: the `final_txs` tree's records, in memory.
    finals: DashMap<Txid, Arc<Transaction>>,
    tip: ArcSwapOption<ChainTip>,
    commitment: Mutex<UtxoCommitment>,
    commitment_memo: Mutex<apply::CommitmentMemo>,
    writer: Mutex<()>,
}

/// See [`Ledger::set_summary`].
#[derive(Clone, Debug)]
pub struct SetSummary {
    pub tip: Option<Arc<ChainTip>>,
    pub commitment: UtxoCommitment,
    pub outputs: usize,
    pub total: Amount,
}

impl Ledger {
    /// Loads the set from the database.
    pub fn open(storage: Storage, params: LedgerParams) -> Result<Ledger> {
        let utxos = DashMap::new();
        for (op, entry, state) in storage.all_utxos()? {
            utxos.insert(op, UtxoRecord { entry, state });
        }
        let finals = DashMap::new();
        let mut damaged = crate::storage::WriteBatch::new();
        for item in storage.tree(TreeId::FinalTxs).iter() {
            let (key, raw) = item.map_err(crate::storage::StorageError::from)?;
            match <Transaction as crate::types::Canonical>::from_bytes(&raw) {
                Ok(tx) => {
                    finals.insert(tx.txid(), Arc::new(tx));
                }
                // Not worth refusing to start: the network holds the transaction too, and its
                // block brings it back. Removed, so memory and the tree agree.
                Err(e) => {
                    tracing::error!(
                        tree = TreeId::FinalTxs.name(),
                        key = %hex::encode(&key),
                        error = %e,
                        "damaged record of a final transaction removed; its block will bring it back"
                    );
                    damaged.remove(TreeId::FinalTxs, &key);
                }
            }
        }
        storage.commit(damaged)?;
        let tip = storage.tip()?;
        let commitment = match &tip {
            None => UtxoCommitment::empty(),
            Some(t) => UtxoCommitment::from_bytes(&t.utxo_accumulator)
                .ok_or(LedgerError::CorruptAccumulator { height: t.height })?,
        };
        let ledger = Ledger {
            storage,
            params,
            utxos,
            finals,
            tip: ArcSwapOption::new(tip.map(Arc::new)),
            commitment: Mutex::new(commitment),
            commitment_memo: Mutex::new(apply::CommitmentMemo::default()),
            writer: Mutex::new(()),
        };
        let indexed = ledger.build_history_if_missing()?;
        if indexed > 0 {
            tracing::info!(transactions = indexed, "built the address history index");
        }
        Ok(ledger)
    }

    pub fn params(&self) -> &LedgerParams {
        &self.params
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The committed tip, or `None` before genesis.
    pub fn tip(&self) -> Option<Arc<ChainTip>> {
        self.tip.load_full()
    }

    pub fn height(&self) -> Option<u64> {
        self.tip.load().as_ref().map(|t| t.height)
    }

    /// The commitment of the confirmed set at the tip.
    pub fn commitment(&self) -> UtxoCommitment {
        *lock(&self.commitment)
    }

    pub fn utxo(&self, outpoint: &OutPoint) -> Option<UtxoRecord> {
        self.utxos.get(outpoint).map(|r| *r)
    }

    /// Number of outputs in memory, confirmed or final-but-unconfirmed.
    pub fn utxo_count(&self) -> usize {
        self.utxos.len()
    }

    /// A transaction final at layer 1 and not yet in a block.
    pub fn final_tx(&self, txid: &Txid) -> Option<Arc<Transaction>> {
        self.finals.get(txid).map(|t| Arc::clone(&t))
    }

    /// Every transaction final at layer 1 and not yet in a block, in no particular order.
    pub fn final_txs(&self) -> Vec<Arc<Transaction>> {
        self.finals.iter().map(|t| Arc::clone(t.value())).collect()
    }

    /// How many transactions are final at layer 1 and not yet in a block.
    pub fn final_count(&self) -> usize {
        self.finals.len()
    }

    /// Recomputes the commitment of the confirmed set from scratch. Costs a pass over the set:
    /// for checks and snapshots, not for block processing.
    pub fn recompute_commitment(&self) -> UtxoCommitment {
        let mut confirmed: Vec<(OutPoint, UtxoEntry)> = self
            .utxos
            .iter()
            .filter(|r| r.entry.is_confirmed())
            .map(|r| (*r.key(), r.entry))
            .collect();
        confirmed.sort_by_key(|(op, _)| *op);
        UtxoCommitment::of_set(confirmed.iter().map(|(o, e)| (o, e)))
    }

    /// The confirmed set at the tip, summed while no block can commit: its tip, commitment,
    /// number of outputs and total amount all describe the same height.
    pub fn set_summary(&self) -> SetSummary {
        let _w = self.write_guard();
        let (mut count, mut total) = (0usize, 0u64);
        for r in self.utxos.iter().filter(|r| r.entry.is_confirmed()) {
            count += 1;
            total = total.saturating_add(r.entry.output.amount.atoms());
        }
        SetSummary {
            tip: self.tip(),
            commitment: self.commitment(),
            outputs: count,
            total: Amount(total),
        }
    }

    fn write_guard(&self) -> MutexGuard<'_, ()> {
        lock(&self.writer)
    }
}

/// Takes a std mutex, ignoring poisoning: the guarded values are plain data that a panicking
/// holder cannot leave half-written (writes go to sled first, memory after).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
