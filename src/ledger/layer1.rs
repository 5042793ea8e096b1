//! Layer-1 transitions of outputs: check, lock, release, finalize.
//!
//! ```text
//! Unspent ──lock_inputs(tx)──► Locked(tx) ──finalize(tx)──► SpentFinalized(tx)
//!    ▲                             │
//!    └──────release_locks(tx)──────┘
//! ```
//! Each call is all-or-nothing: every input is checked before anything is written, and the
//! writes of one call are one atomic batch. An illegal transition (locking an output another
//! transaction holds, or one already spent) is refused and changes nothing.
//!
//! A registration's collateral goes through the same transitions as an input
//! ([`Transaction::claimed_outpoints`]): locked to the registration, then held by it once it is
//! final, so a spend of the collateral conflicts with the registration instead of racing it
//! into a block. When the block that confirms the registration commits, the claim ends and the
//! collateral is `Unspent` again (apply.rs): spending it later is how a masternode leaves.
//!
//! **Why the two layers agree on registrations.** Layer 1 accepts a registration only if its
//! collateral is confirmed (in a committed block) and not claimed by anything else; the block
//! rule (apply.rs) accepts it only if the collateral was confirmed before the block and neither
//! spent nor claimed earlier in the block. A confirmed output leaves the set only when a block
//! spends it, and while the registration is final nothing else can be final on the collateral
//! (it is claimed), so no final spend can be placed before the registration: every final
//! registration stays placeable, in any order the builder picks.

use super::{Ledger, LedgerError, Result, UtxoRecord};
use crate::storage::{schema::final_record, TreeId, WriteBatch};
use crate::types::{
    Amount, Canonical, OutPoint, Tier, Transaction, TxPayload, Txid, UtxoEntry, UtxoState,
};
use std::sync::Arc;

/// What a transaction brings, once the ledger has accepted its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxCheck {
    pub input_total: Amount,
    pub output_total: Amount,
    pub fee: Amount,
}

impl Ledger {
    /// Where `tx` was confirmed, if a block holds it. A confirmed transaction's inputs have
    /// left the set for good (an outpoint names its transaction, so it never comes back): one
    /// whose inputs are all in memory cannot be confirmed, and only the others cost a read of
    /// the transaction index, which grows with the chain and outgrows sled's cache (a random
    /// disk read per transaction on a long-running node).
    pub fn confirmed_location(
        &self,
        tx: &Transaction,
        txid: &Txid,
    ) -> crate::storage::Result<Option<crate::types::TxLocation>> {
        if !tx.inputs.is_empty() && tx.inputs.iter().all(|i| self.utxos.contains(&i.prev_out)) {
            return Ok(None);
        }
        self.storage.tx_location(txid)
    }

    /// Checks a transaction against the current set (signatures aside): every input exists,
    /// is owned by the key that signs it and is not claimed by another transaction; amounts
    /// balance; a registration's collateral is right, confirmed, and claimed by nothing else.
    /// Changes nothing.
    pub fn check_transaction(&self, tx: &Transaction) -> Result<TxCheck> {
        let txid = tx.txid();
        tx.check_structure(false)?;
        if let Some(loc) = self.confirmed_location(tx, &txid)? {
            return Err(LedgerError::AlreadyConfirmed {
                txid,
                height: loc.height,
            });
        }
        let mut input_total = Amount::ZERO;
        for index in 0..tx.inputs.len() {
            let rec = self.spendable_input(&txid, index, tx)?;
            input_total = input_total
                .checked_add(rec.entry.output.amount)
                .ok_or(LedgerError::InputOverflow { txid })?;
        }
        let output_total =
            tx.total_output()
                .ok_or(LedgerError::Tx(crate::types::TxError::OutputOverflow {
                    txid,
                }))?;
        let fee =
            input_total
                .checked_sub(output_total)
                .ok_or(LedgerError::OutputsExceedInputs {
                    txid,
                    inputs: input_total,
                    outputs: output_total,
                })?;
        if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
            self.check_registration(tx, &txid, |op| {
                self.utxo(op)
                    .map(|r| r.entry)
                    .filter(UtxoEntry::is_confirmed)
            })?;
            let rec = self
                .utxo(&reg.collateral)
                .ok_or(LedgerError::CollateralUnconfirmed {
                    txid,
                    outpoint: reg.collateral,
                })?;
            claim_allowed(&txid, reg.collateral, rec.state)?;
        }
        Ok(TxCheck {
            input_total,
            output_total,
            fee,
        })
    }

    /// The record of input `index`, if this transaction may spend it.
    fn spendable_input(&self, txid: &Txid, index: usize, tx: &Transaction) -> Result<UtxoRecord> {
        let input = &tx.inputs[index];
        let outpoint = input.prev_out;
        let rec = self.utxo(&outpoint).ok_or(LedgerError::MissingInput {
            txid: *txid,
            outpoint,
        })?;
        if input.public_key.key_hash() != rec.entry.output.key_hash {
            return Err(LedgerError::WrongKey {
                txid: *txid,
                index,
                outpoint,
            });
        }
        claim_allowed(txid, outpoint, rec.state)?;
        Ok(rec)
    }

    /// Checks a registration's collateral: an output of exactly the tier's amount, owned by a
    /// key that signs one of the transaction's inputs. `lookup` answers only with outputs the
    /// caller's layer counts as confirmed: layer 1 the confirmed set, a block the set before
    /// it minus what the block spent earlier (see the module doc for why they agree).
    pub(super) fn check_registration(
        &self,
        tx: &Transaction,
        txid: &Txid,
        lookup: impl Fn(&OutPoint) -> Option<UtxoEntry>,
    ) -> Result<()> {
        let TxPayload::MasternodeRegistration(reg) = &tx.payload else {
            return Ok(());
        };
        let bad = |reason: String| LedgerError::BadRegistration {
            txid: *txid,
            reason,
        };
        if reg.tier == Tier::Free {
            return Err(bad(
                "free masternodes have no vote and need no registration".into(),
            ));
        }
        if tx.inputs.iter().any(|i| i.prev_out == reg.collateral) {
            return Err(bad(format!(
                "collateral {} is spent by the registration itself",
                reg.collateral
            )));
        }
        let entry = lookup(&reg.collateral).ok_or(LedgerError::CollateralUnconfirmed {
            txid: *txid,
            outpoint: reg.collateral,
        })?;
        if entry.output.amount != reg.tier.collateral() {
            return Err(bad(format!(
                "collateral {} holds {} TIME, tier {} needs exactly {}",
                reg.collateral,
                entry.output.amount,
                reg.tier,
                reg.tier.collateral()
            )));
        }
        if !tx
            .inputs
            .iter()
            .any(|i| i.public_key.key_hash() == entry.output.key_hash)
        {
            return Err(bad(
                "no input is signed by the key that owns the collateral".into(),
            ));
        }
        Ok(())
    }

    /// Transactions this node locked inputs for and that are not final yet (bodies kept with
    /// the locks), for resuming after a restart.
    pub fn pending_locked(&self) -> Result<Vec<Transaction>> {
        let mut out = Vec::new();
        for (_, raw) in self.storage.records(TreeId::PendingTxs)? {
            if let Ok(tx) = <Transaction as crate::types::Canonical>::from_bytes(&raw) {
                out.push(tx);
            }
        }
        Ok(out)
    }

    /// Locks every input of `tx` to it: the promise never to vote for another spend. Returns
    /// `false` if they were all locked to it already. The write is appended to the layer-1
    /// log, not synced: the caller flushes once for a whole vote batch, before the batch leaves
    /// the node.
    pub fn lock_inputs(&self, tx: &Transaction) -> Result<bool> {
        let txid = tx.txid();
        let _w = self.write_guard();
        let mut fresh = Vec::with_capacity(tx.inputs.len() + 1);
        for index in 0..tx.inputs.len() {
            let rec = self.spendable_input(&txid, index, tx)?;
            if rec.state == UtxoState::Unspent {
                fresh.push(tx.inputs[index].prev_out);
            }
        }
        if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
            let rec = self
                .utxo(&reg.collateral)
                .ok_or(LedgerError::CollateralUnconfirmed {
                    txid,
                    outpoint: reg.collateral,
                })?;
            if !rec.entry.is_confirmed() {
                return Err(LedgerError::CollateralUnconfirmed {
                    txid,
                    outpoint: reg.collateral,
                });
            }
            claim_allowed(&txid, reg.collateral, rec.state)?;
            if rec.state == UtxoState::Unspent {
                fresh.push(reg.collateral);
            }
        }
        if fresh.is_empty() {
            return Ok(false);
        }
        let mut batch = WriteBatch::new();
        let state = UtxoState::Locked(txid);
        for op in &fresh {
            batch.put(TreeId::UtxoStates, op.to_key(), &state);
        }
        // The body too: after a crash this node must still be able to show peers what it
        // voted for, or the transaction could stall with its inputs locked.
        batch.put(TreeId::PendingTxs, txid.0, tx);
        self.storage.append(batch)?;
        for op in &fresh {
            self.utxos.set_state(op, state);
        }
        Ok(true)
    }

    /// Releases the inputs `tx` holds locked (for example after a conflicting spend was
    /// confirmed, so `tx` can never be final). Inputs in other states are left alone.
    pub fn release_locks(&self, tx: &Transaction) -> Result<usize> {
        let txid = tx.txid();
        let _w = self.write_guard();
        let held: Vec<OutPoint> = tx
            .claimed_outpoints()
            .filter(|op| self.utxo(op).map(|r| r.state) == Some(UtxoState::Locked(txid)))
            .collect();
        let mut batch = WriteBatch::new();
        for op in &held {
            batch.remove(TreeId::UtxoStates, op.to_key());
        }
        batch.remove(TreeId::PendingTxs, txid.0);
        self.storage.append(batch)?;
        for op in &held {
            self.utxos.set_state(op, UtxoState::Unspent);
        }
        Ok(held.len())
    }

    /// Records that a quorum voted for `tx`: its inputs become spent, its outputs spendable
    /// (unconfirmed, in memory until its block). The records are appended to the layer-1 log
    /// (see the module docs of `ledger`). The caller has
    /// verified `tx`'s signatures: blocks skip re-verifying transactions this node finalized.
    /// A lock this node holds for a different transaction gives way, because a quorum outranks
    /// one vote; an input already spent by another final transaction is a safety violation and
    /// is refused. Returns `false` if `tx` was final already. `now_ms` is the moment its
    /// history records (the caller's clock: the ledger reads none, so a simulation controls
    /// every time it stores).
    pub fn finalize(&self, tx: &Transaction, now_ms: u64) -> Result<bool> {
        self.finalize_shared(&Arc::new(tx.clone()), now_ms)
    }

    /// [`finalize`](Self::finalize) for a transaction already shared: kept without a copy.
    pub fn finalize_shared(&self, tx: &Arc<Transaction>, now_ms: u64) -> Result<bool> {
        let txid = tx.txid();
        tx.check_structure(false)?;
        let _w = self.write_guard();
        if let Some(loc) = self.confirmed_location(tx, &txid)? {
            return Err(LedgerError::AlreadyConfirmed {
                txid,
                height: loc.height,
            });
        }
        let mut inputs = Vec::with_capacity(tx.inputs.len());
        let mut input_total = Amount::ZERO;
        for (index, input) in tx.inputs.iter().enumerate() {
            let outpoint = input.prev_out;
            let rec = self
                .utxo(&outpoint)
                .ok_or(LedgerError::MissingInput { txid, outpoint })?;
            input_total = input_total
                .checked_add(rec.entry.output.amount)
                .ok_or(LedgerError::InputOverflow { txid })?;
            if input.public_key.key_hash() != rec.entry.output.key_hash {
                return Err(LedgerError::WrongKey {
                    txid,
                    index,
                    outpoint,
                });
            }
            match rec.state {
                UtxoState::SpentFinalized(by) if by == txid => return Ok(false),
                UtxoState::SpentFinalized(by) => {
                    return Err(LedgerError::InputSpent {
                        txid,
                        outpoint,
                        spent_by: by,
                    })
                }
                UtxoState::Unspent | UtxoState::Locked(_) => inputs.push(outpoint),
            }
        }
        // The collateral is held by the registration like an input, until its block.
        if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
            let outpoint = reg.collateral;
            let rec = self
                .utxo(&outpoint)
                .ok_or(LedgerError::CollateralUnconfirmed { txid, outpoint })?;
            match rec.state {
                UtxoState::SpentFinalized(by) if by == txid => {}
                UtxoState::SpentFinalized(by) => {
                    return Err(LedgerError::InputSpent {
                        txid,
                        outpoint,
                        spent_by: by,
                    })
                }
                UtxoState::Unspent | UtxoState::Locked(_) => inputs.push(outpoint),
            }
        }
        let output_total = tx.total_output().unwrap_or(Amount(u64::MAX));
        if output_total > input_total {
            return Err(LedgerError::OutputsExceedInputs {
                txid,
                inputs: input_total,
                outputs: output_total,
            });
        }
        let mut batch = WriteBatch::new();
        let spent = UtxoState::SpentFinalized(txid);
        for op in &inputs {
            batch.put(TreeId::UtxoStates, op.to_key(), &spent);
        }
        let order = self.final_order(now_ms);
        batch.put_raw(
            TreeId::FinalTxs,
            txid.0,
            final_record(order.height, order.time_ms, order.position, &tx.to_bytes()),
        );
        batch.remove(TreeId::PendingTxs, txid.0);
        self.storage.append(batch)?;
        let created = tx.outputs.iter().enumerate().map(|(i, output)| {
            let entry = UtxoEntry {
                output: *output,
                height: None,
                coinbase: false,
            };
            (OutPoint::new(txid, i as u32), entry)
        });
        self.finals.insert(
            txid,
            super::FinalTx {
                tx: Arc::clone(tx),
                order,
            },
        );
        for op in &inputs {
            self.utxos.set_state(op, spent);
        }
        for (op, entry) in created {
            self.utxos.insert(
                op,
                UtxoRecord {
                    entry,
                    state: UtxoState::Unspent,
                },
            );
        }
        Ok(true)
    }
}

/// Whether `txid` may claim `outpoint` (as an input or a collateral) given its layer-1 state:
/// free or already ours, but not held by another transaction.
fn claim_allowed(txid: &Txid, outpoint: OutPoint, state: UtxoState) -> Result<()> {
    match state {
        UtxoState::Unspent => Ok(()),
        UtxoState::Locked(by) if by == *txid => Ok(()),
        UtxoState::Locked(by) => Err(LedgerError::InputLocked {
            txid: *txid,
            outpoint,
            locked_by: by,
        }),
        UtxoState::SpentFinalized(by) if by == *txid => {
            Err(LedgerError::AlreadyFinal { txid: *txid })
        }
        UtxoState::SpentFinalized(by) => Err(LedgerError::InputSpent {
            txid: *txid,
            outpoint,
            spent_by: by,
        }),
    }
}
