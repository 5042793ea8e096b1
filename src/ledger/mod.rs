//! The UTXO manager: the set of spendable outputs, their layer-1 states, the set commitment and
//! the address index.
//!
//! ```text
//!             mempool check ─┐         ┌─ lock (vote) ─ release
//!  RPC reads ─► outputs (entries + the few claimed states) ◄─┤
//!                            │         └─ finalize (quorum) ─ apply_block (commit)
//!                            ▼
//!      layer-1 log: utxo_states, final_txs, pending_txs    utxos (set files), sled: blocks...
//! ```
//!
//! Reads are lock-free through the `DashMap`. Writers take one mutex (never across an
//! `.await`: every method here is synchronous and blocking, so async callers use
//! `spawn_blocking`). Blocks write one atomic batch first and only then update memory, so
//! a failed write changes nothing. Layer-1 transitions (lock, release, finalize) *append*
//! their records to the layer-1 log (see `storage`) and update memory at once; the barrier
//! before a vote leaves makes them durable. A failed append stops the consensus owner (the node
//! exits rather than run on with memory ahead of its disk).
//!
//! Sled and the confirmed set (`utxos`) hold the confirmed chain only: a transaction final at
//! layer 1 costs them nothing until its block. Its body (with the order it takes in address
//! histories) is its `final_txs` record; its outputs live in memory, rebuilt from those records
//! at open, and reach `utxos`, the address index and the address history with the block that
//! confirms it.
//! The address index of confirmed outputs is memory only, built from `utxos` at open (see
//! [`address::AddressIndex`]).
//! Proposals, proofs served to peers and RPC read final transactions in memory, never
//! decoding them back from disk.
//!
//! **At open** the log is reconciled with the chain: a crash between a block (durable first) and
//! its clean-up of layer-1 records leaves records of transactions the block confirmed, or of
//! outputs it spent; they are dropped.

pub mod address;
pub mod apply;
pub mod builder;
pub mod error;
pub mod history;
pub mod layer1;
mod outputs;
pub mod reward;
pub mod snapshot;
mod walk;

pub use crate::types::UtxoCommitment;
pub use address::AddressBalance;
pub use apply::{BlockOutcome, BlockPlan};
pub use builder::{build_genesis, split_reward, BlockTemplate, BuiltBlock};
pub use error::{LedgerError, Result};
pub use layer1::TxCheck;
pub use reward::RewardSchedule;

use crate::storage::schema::split_final_record;
use crate::storage::{ChainTip, Storage, TreeId, WriteBatch};
use crate::types::{Amount, Canonical, Network, OutPoint, Transaction, Txid, UtxoEntry, UtxoState};
use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Chain rules the ledger enforces.
#[derive(Clone, Copy, Debug)]
pub struct LedgerParams {
    pub network: Network,
    pub rewards: RewardSchedule,
}

impl LedgerParams {
    /// The chain rules of `network`. Rewards: 10 TIME a block, halving every 210,000 blocks.
    pub fn of(network: Network) -> LedgerParams {
        LedgerParams {
            network,
            rewards: RewardSchedule {
                initial: crate::types::Amount(10 * crate::types::ATOMS_PER_TIME),
                halving_interval: 210_000,
            },
        }
    }
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
    utxos: outputs::Outputs,
    /// The confirmed outputs of `utxos` by owner (unconfirmed ones are found in `finals`).
    by_address: address::AddressIndex,
    /// Final at layer 1, not yet in a block: the `final_txs` records, in memory.
    finals: DashMap<Txid, FinalTx>,
    tip: ArcSwapOption<ChainTip>,
    commitment: Mutex<UtxoCommitment>,
    commitment_memo: Mutex<apply::CommitmentMemo>,
    walk_memo: Mutex<apply::WalkMemo>,
    well_formed: Mutex<apply::WellFormed>,
    writer: Mutex<()>,
}

/// A transaction final at layer 1 and not yet in a block.
#[derive(Clone, Debug)]
struct FinalTx {
    tx: Arc<Transaction>,
    /// Where it sorts in address histories (fixed when it became final here).
    order: history::Order,
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
    /// Loads the set from the database: the confirmed outputs (refused unless they match the
    /// tip's commitment), then the final transactions and layer-1 states from the log,
    /// reconciled with the chain (see the module docs).
    pub fn open(storage: Storage, params: LedgerParams) -> Result<Ledger> {
        let utxos = outputs::Outputs::default();
        let mut owners = Vec::new();
        // Checked against the tip before anything runs on it: a set that lost or kept an
        // output (a damaged disk, a storage bug) would otherwise show only as blocks this
        // node refuses, or builds, with a commitment no one else agrees with (≈ 0.3 µs an
        // output: a second per few million).
        let mut loaded = UtxoCommitment::empty();
        storage.for_each_utxo(|op, entry| {
            loaded.insert(&op, &entry);
            owners.push((entry.output.key_hash, op));
            utxos.insert(
                op,
                UtxoRecord {
                    entry,
                    state: UtxoState::Unspent,
                },
            );
        })?;
        let owners_len = owners.len();
        let by_address: address::AddressIndex = owners.into_iter().collect();
        let finals = DashMap::new();
        let mut stale = WriteBatch::new();
        for (key, raw) in storage.records(TreeId::FinalTxs)? {
            let decoded = split_final_record(&raw)
                .ok_or_else(|| "shorter than its history order".to_string())
                .and_then(|((height, time_ms, position), body)| {
                    Transaction::from_bytes(body)
                        .map(|tx| {
                            (
                                history::Order {
                                    height,
                                    time_ms,
                                    position,
                                },
                                tx,
                            )
                        })
                        .map_err(|e| e.to_string())
                });
            match decoded {
                Ok((order, tx)) => {
                    let txid = tx.txid();
                    if storage.tx_location(&txid)?.is_some() {
                        stale.remove(TreeId::FinalTxs, &key);
                        continue;
                    }
                    for (i, output) in tx.outputs.iter().enumerate() {
                        // Never over a confirmed output (a fast-synced node has no index to
                        // tell that a block confirmed this transaction; see below).
                        utxos.insert_if_absent(
                            OutPoint::new(txid, i as u32),
                            UtxoRecord {
                                entry: UtxoEntry {
                                    output: *output,
                                    height: None,
                                    coinbase: false,
                                },
                                state: UtxoState::Unspent,
                            },
                        );
                    }
                    finals.insert(
                        txid,
                        FinalTx {
                            tx: Arc::new(tx),
                            order,
                        },
                    );
                }
                // Not worth refusing to start: the network holds the transaction too, and its
                // block brings it back. Removed, so memory and the log agree.
                Err(e) => {
                    tracing::error!(
                        tree = TreeId::FinalTxs.name(),
                        key = %hex::encode(&key),
                        error = %e,
                        "damaged record of a final transaction removed; its block will bring it back"
                    );
                    stale.remove(TreeId::FinalTxs, &key);
                }
            }
        }
        for (key, raw) in storage.records(TreeId::UtxoStates)? {
            let op = OutPoint::from_key(&key);
            let state = match op {
                // Decoded as `Storage::get` does: a damaged lock refuses the start, named.
                Some(_) => UtxoState::from_bytes(&raw).map_err(|e| {
                    crate::storage::StorageError::Corrupt {
                        tree: TreeId::UtxoStates.name(),
                        key: hex::encode(&key),
                        reason: e.to_string(),
                    }
                })?,
                None => UtxoState::Unspent,
            };
            let claimer = match state {
                UtxoState::Locked(t) | UtxoState::SpentFinalized(t) => Some(t),
                UtxoState::Unspent => None,
            };
            let confirmed = match claimer {
                Some(t) => storage.tx_location(&t)?.is_some(),
                None => true,
            };
            match op.filter(|op| utxos.contains(op)) {
                Some(op) if !confirmed => utxos.set_state(&op, state),
                // Spent by a block, or claimed by a transaction a block confirmed (a
                // registration's collateral): the block's clean-up did not land.
                _ => stale.remove(TreeId::UtxoStates, &key),
            }
        }
        // A final transaction is live only while every input it spends is in the set and
        // marked spent by it: one a block confirmed (below a fast-sync snapshot there is no
        // index to say so) has lost its inputs. Dropping one can orphan a final that spent its
        // outputs, so repeat until nothing changes.
        loop {
            let dead: Vec<Txid> = finals
                .iter()
                .filter(|f| {
                    let txid = *f.key();
                    f.tx.inputs
                        .iter()
                        .any(|i| utxos.state(&i.prev_out) != Some(UtxoState::SpentFinalized(txid)))
                })
                .map(|f| *f.key())
                .collect();
            if dead.is_empty() {
                break;
            }
            for txid in dead {
                if let Some((_, f)) = finals.remove(&txid) {
                    for i in 0..f.tx.outputs.len() {
                        let op = OutPoint::new(txid, i as u32);
                        if utxos.get(&op).is_some_and(|r| !r.entry.is_confirmed()) {
                            utxos.remove(&op);
                        }
                    }
                }
                stale.remove(TreeId::FinalTxs, txid.0);
            }
        }
        // States of outputs that left with such a final.
        for (key, _) in storage.records(TreeId::UtxoStates)? {
            if OutPoint::from_key(&key).is_some_and(|op| !utxos.contains(&op)) {
                stale.remove(TreeId::UtxoStates, &key);
            }
        }
        // A pending body is kept while its transaction can still become final: not confirmed,
        // and every input still in the set (a block's eviction of it may not have landed).
        for (key, raw) in storage.records(TreeId::PendingTxs)? {
            let live = match Transaction::from_bytes(&raw) {
                Ok(tx) => {
                    storage.tx_location(&tx.txid())?.is_none()
                        && tx.inputs.iter().all(|i| utxos.contains(&i.prev_out))
                }
                Err(_) => false,
            };
            if !live {
                stale.remove(TreeId::PendingTxs, &key);
            }
        }
        if !stale.is_empty() {
            tracing::info!(
                records = stale.len(),
                "dropped layer-1 records of transactions already in blocks"
            );
            storage.append(stale)?;
        }
        let tip = storage.tip()?;
        let commitment = match &tip {
            None => UtxoCommitment::empty(),
            Some(t) => UtxoCommitment::from_bytes(&t.utxo_state),
        };
        if loaded.digest() != commitment.digest() {
            return Err(LedgerError::StoredSetMismatch {
                height: tip.as_ref().map_or(0, |t| t.height),
                outputs: owners_len as u64,
                claimed: commitment.digest(),
                computed: loaded.digest(),
            });
        }
        let ledger = Ledger {
            storage,
            params,
            utxos,
            by_address,
            finals,
            tip: ArcSwapOption::new(tip.map(Arc::new)),
            commitment: Mutex::new(commitment),
            commitment_memo: Mutex::new(apply::CommitmentMemo::default()),
            walk_memo: Mutex::new(apply::WalkMemo::default()),
            well_formed: Mutex::new(apply::WellFormed::default()),
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
        lock(&self.commitment).clone()
    }

    pub fn utxo(&self, outpoint: &OutPoint) -> Option<UtxoRecord> {
        self.utxos.get(outpoint)
    }

    /// Number of outputs in memory, confirmed or final-but-unconfirmed.
    pub fn utxo_count(&self) -> usize {
        self.utxos.len()
    }

    /// A transaction final at layer 1 and not yet in a block.
    pub fn final_tx(&self, txid: &Txid) -> Option<Arc<Transaction>> {
        self.finals.get(txid).map(|t| Arc::clone(&t.tx))
    }

    /// Every transaction final at layer 1 and not yet in a block, with its id, in no
    /// particular order.
    pub fn final_txs(&self) -> Vec<(Txid, Arc<Transaction>)> {
        self.finals
            .iter()
            .map(|t| (*t.key(), Arc::clone(&t.value().tx)))
            .collect()
    }

    /// How many transactions are final at layer 1 and not yet in a block.
    pub fn final_count(&self) -> usize {
        self.finals.len()
    }

    /// Recomputes the commitment of the confirmed set from scratch. Costs a pass over the set:
    /// for checks and snapshots, not for block processing.
    pub fn recompute_commitment(&self) -> UtxoCommitment {
        let mut commitment = UtxoCommitment::empty();
        self.utxos.for_each_entry(|op, entry| {
            if entry.is_confirmed() {
                commitment.insert(op, entry);
            }
        });
        commitment
    }

    /// The confirmed set at the tip, summed while no block can commit: its tip, commitment,
    /// number of outputs and total amount all describe the same height.
    pub fn set_summary(&self) -> SetSummary {
        let _w = self.write_guard();
        let (mut count, mut total) = (0usize, 0u64);
        self.utxos.for_each_entry(|_, entry| {
            if entry.is_confirmed() {
                count += 1;
                total = total.saturating_add(entry.output.amount.atoms());
            }
        });
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
/// holder cannot leave half-written (writes go to the database first, memory after).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
