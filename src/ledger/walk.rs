//! The block rule for one transaction at a time: a [`Walker`] holds what the earlier
//! transactions of a block did (outputs created, outputs spent, collaterals claimed, fees) and
//! checks the next transaction against the set plus that.
//!
//! ```text
//! tx ─► check (reads only: the walk so far + the ledger) ─► Step ─► apply (the walk moves on)
//! ```
//! Checking changes nothing, so a caller can try a transaction and drop it: the block builder
//! tries each final transaction against the running plan and leaves out what does not fit,
//! while a block being validated fails at its first bad transaction. Both use the same rule, so
//! what the builder places, validators accept.

use super::apply::Walk;
use super::{Ledger, LedgerError, Result, UtxoRecord};
use crate::types::{Amount, OutPoint, Transaction, TxError, TxPayload, Txid, UtxoEntry, UtxoState};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The state of a walk through a block's transactions.
pub(super) struct Walker {
    height: u64,
    /// Outputs created earlier in this block and not spent by it yet.
    created: BTreeMap<OutPoint, UtxoEntry>,
    /// Outputs of the set before the block that the block spent.
    spent: HashSet<OutPoint>,
    /// Collaterals claimed by registrations earlier in this block, and by which.
    claimed: HashMap<OutPoint, Txid>,
    removed: Vec<(OutPoint, UtxoRecord)>,
    evicted: BTreeSet<Txid>,
    released: Vec<OutPoint>,
    pub(super) txids: Vec<Txid>,
    pub(super) fees: Amount,
    /// Whether an input created earlier in the block had no record in the ledger (its
    /// transaction not final here): what layer 1 later does with it was never looked at.
    /// Today that parent's own inputs change state when it becomes final, which the kept
    /// walk's comparison already sees; this keeps the walk from being reused without relying
    /// on that argument.
    unseen_inputs: bool,
}

/// A transaction that passed [`Walker::check`], with what applying it changes.
pub(super) struct Step<'a> {
    tx: &'a Transaction,
    txid: Txid,
    /// Inputs created earlier in the block.
    from_block: Vec<OutPoint>,
    /// Inputs from the set before the block.
    from_set: Vec<OutPoint>,
    removed: Vec<(OutPoint, UtxoRecord)>,
    evicted: Vec<Txid>,
    released: Option<OutPoint>,
    fees: Amount,
    /// Whether an input created earlier in the block had no record in the ledger.
    unseen_inputs: bool,
    /// Whether its signatures need checking: not when this node finalized it (its inputs are
    /// all `SpentFinalized` by it here), because they were verified when it arrived.
    pub(super) needs_signatures: bool,
}

impl Walker {
    pub(super) fn new(height: u64, expected: usize) -> Walker {
        Walker {
            height,
            created: BTreeMap::new(),
            spent: HashSet::new(),
            claimed: HashMap::new(),
            removed: Vec::new(),
            evicted: BTreeSet::new(),
            released: Vec::new(),
            txids: Vec::with_capacity(expected),
            fees: Amount::ZERO,
            unseen_inputs: false,
        }
    }

    /// Checks `tx` (whose id is `txid`) as the next transaction of the block. Changes nothing.
    /// The caller has checked its structure (no input twice).
    pub(super) fn check<'a>(
        &self,
        ledger: &Ledger,
        tx: &'a Transaction,
        txid: Txid,
    ) -> Result<Step<'a>> {
        if let Some(loc) = ledger.confirmed_location(tx, &txid)? {
            return Err(LedgerError::AlreadyConfirmed {
                txid,
                height: loc.height,
            });
        }
        let mut step = Step {
            tx,
            txid,
            from_block: Vec::new(),
            from_set: Vec::new(),
            removed: Vec::new(),
            evicted: Vec::new(),
            released: None,
            fees: self.fees,
            unseen_inputs: false,
            needs_signatures: false,
        };
        let mut input_total = Amount::ZERO;
        let mut finalized_here = true;
        for (index, input) in tx.inputs.iter().enumerate() {
            let outpoint = input.prev_out;
            if let Some(registration) = self.claimed.get(&outpoint) {
                return Err(LedgerError::CollateralClaimed {
                    txid,
                    outpoint,
                    registration: *registration,
                });
            }
            let entry = if let Some(entry) = self.created.get(&outpoint).copied() {
                // Created earlier in this block; this node may already hold it as the output
                // of a final transaction, with a layer-1 state of its own.
                if let Some(rec) = ledger.utxo(&outpoint) {
                    match rec.state {
                        UtxoState::SpentFinalized(by) if by != txid => {
                            return Err(LedgerError::ConflictsWithFinal {
                                txid,
                                outpoint,
                                final_txid: by,
                            })
                        }
                        UtxoState::Locked(by) if by != txid => step.evicted.push(by),
                        _ => {}
                    }
                    step.removed.push((outpoint, rec));
                } else {
                    step.unseen_inputs = true;
                }
                finalized_here = false;
                step.from_block.push(outpoint);
                entry
            } else {
                if self.spent.contains(&outpoint) {
                    return Err(LedgerError::MissingInput { txid, outpoint });
                }
                let rec = ledger
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
                            step.evicted.push(by);
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
                step.from_set.push(outpoint);
                step.removed.push((outpoint, rec));
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
        // "Finalized here" means equal to the copy this node verified and keeps, signatures
        // included: the txid leaves signatures out, so the same id with other signature bytes
        // (a swapping proposer or relay) is checked in full.
        if finalized_here && !ledger.is_verified_final_copy(tx, &txid) {
            finalized_here = false;
        }
        step.needs_signatures = !tx.inputs.is_empty() && !finalized_here;
        if !tx.is_coinbase() {
            let output_total = tx
                .total_output()
                .ok_or(LedgerError::Tx(TxError::OutputOverflow { txid }))?;
            let fee =
                input_total
                    .checked_sub(output_total)
                    .ok_or(LedgerError::OutputsExceedInputs {
                        txid,
                        inputs: input_total,
                        outputs: output_total,
                    })?;
            step.fees = self.fees.checked_add(fee).ok_or(LedgerError::FeeOverflow {
                height: self.height,
            })?;
        }
        if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
            step.released = self.check_collateral(ledger, tx, &txid, reg.collateral)?;
        }
        Ok(step)
    }

    /// The block rule for a registration's collateral, matching layer 1's (layer1.rs explains
    /// why they agree): confirmed before this block, not spent and not claimed earlier in it.
    /// Returns the collateral if this node holds a layer-1 claim on it for this registration,
    /// which ends with the block.
    fn check_collateral(
        &self,
        ledger: &Ledger,
        tx: &Transaction,
        txid: &Txid,
        collateral: OutPoint,
    ) -> Result<Option<OutPoint>> {
        if let Some(registration) = self.claimed.get(&collateral) {
            return Err(LedgerError::CollateralClaimed {
                txid: *txid,
                outpoint: collateral,
                registration: *registration,
            });
        }
        ledger.check_registration(tx, txid, |op| {
            if self.spent.contains(op) || self.created.contains_key(op) {
                return None;
            }
            ledger
                .utxo(op)
                .map(|r| r.entry)
                .filter(UtxoEntry::is_confirmed)
        })?;
        // A final spend of the collateral on this node would contradict the registration's
        // finality: the same safety violation as a conflicting input.
        match ledger.utxo(&collateral).map(|r| r.state) {
            Some(UtxoState::SpentFinalized(by)) if by != *txid => {
                Err(LedgerError::ConflictsWithFinal {
                    txid: *txid,
                    outpoint: collateral,
                    final_txid: by,
                })
            }
            Some(UtxoState::SpentFinalized(_)) => Ok(Some(collateral)),
            Some(UtxoState::Locked(by)) if by == *txid => Ok(Some(collateral)),
            _ => Ok(None),
        }
    }

    /// Adds a checked transaction to the walk.
    pub(super) fn apply(&mut self, step: Step<'_>) {
        let Step {
            tx,
            txid,
            from_block,
            from_set,
            removed,
            evicted,
            released,
            fees,
            unseen_inputs,
            needs_signatures: _,
        } = step;
        self.unseen_inputs |= unseen_inputs;
        for op in &from_block {
            self.created.remove(op);
        }
        self.spent.extend(from_set);
        self.removed.extend(removed);
        self.evicted.extend(evicted);
        self.fees = fees;
        if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
            self.claimed.insert(reg.collateral, txid);
        }
        self.released.extend(released);
        for (i, output) in tx.outputs.iter().enumerate() {
            self.created.insert(
                OutPoint::new(txid, i as u32),
                UtxoEntry {
                    output: *output,
                    height: Some(self.height),
                    coinbase: tx.is_coinbase(),
                },
            );
        }
        self.txids.push(txid);
    }

    /// Adds the block's coinbase, checked last, as its first transaction. The walk is the one
    /// the block in order would give: the coinbase spends nothing, and nothing placed before
    /// it could spend its outputs (they did not exist yet). The builder learns the fees, and
    /// so the coinbase, only after placing every candidate.
    pub(super) fn apply_coinbase(&mut self, step: Step<'_>) {
        debug_assert!(step.tx.is_coinbase());
        self.apply(step);
        self.txids.rotate_right(1);
    }

    /// What the whole walk changes: created outputs keep the layer-1 state this node has for
    /// them (a final transaction's outputs may already be locked or spent at layer 1).
    pub(super) fn finish(self, ledger: &Ledger) -> Walk {
        let added = self
            .created
            .into_iter()
            .map(|(op, entry)| {
                let state = ledger.utxo(&op).map_or(UtxoState::Unspent, |r| r.state);
                (op, UtxoRecord { entry, state })
            })
            .collect();
        Walk {
            removed: self.removed,
            added,
            txids: self.txids,
            evicted: self.evicted,
            released: self.released,
            fees: self.fees,
            unseen_inputs: self.unseen_inputs,
        }
    }
}
