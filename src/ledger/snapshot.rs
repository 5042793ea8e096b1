//! Replacing a fresh ledger with a UTXO snapshot taken at a certified height, so a new node
//! need not replay every block since genesis.
//!
//! The caller has already checked the snapshot against the commitment in a header whose
//! certificate verifies: this module only installs it, as one atomic batch, and refuses to do
//! so over a ledger that has more than its genesis.

use super::{lock, Ledger, LedgerError, Result, UtxoCommitment, UtxoRecord};
use crate::storage::schema::{height_key, meta_key};
use crate::storage::{ChainTip, TreeId, WriteBatch};
use crate::types::{BlockHeader, CommitCertificate, OutPoint, Txid, UtxoEntry, UtxoState};
use std::sync::Arc;

/// One output of a snapshot, with the spend this node's peer had locked it to (if any).
pub type SnapshotEntry = (OutPoint, UtxoEntry, Option<Txid>);

impl Ledger {
    /// Installs the confirmed set `entries` as the state after `header`, certified by `cert`.
    /// Locks come along so this node never votes for a spend that conflicts with one its
    /// peers already locked. `extra` lands in the same batch (the masternode sets).
    pub fn import_snapshot(
        &self,
        header: &BlockHeader,
        cert: &CommitCertificate,
        entries: &[SnapshotEntry],
        extra: WriteBatch,
    ) -> Result<UtxoCommitment> {
        let _w = self.write_guard();
        match self.height() {
            None => return Err(LedgerError::NoGenesis),
            Some(0) => {}
            Some(tip) => return Err(LedgerError::SnapshotOverChain { tip }),
        }
        let commitment = UtxoCommitment::of_set(entries.iter().map(|(o, e, _)| (o, e)));
        let hash = header.hash();
        if commitment.digest() != header.utxo_commitment {
            return Err(LedgerError::CommitmentMismatch {
                height: header.height,
                claimed: header.utxo_commitment,
                computed: commitment.digest(),
            });
        }
        if cert.height != header.height || cert.block_hash != hash {
            return Err(LedgerError::CertificateMismatch {
                height: header.height,
                cert_height: cert.height,
                cert_block: cert.block_hash,
            });
        }
        // Three steps, each safe to be cut short by a crash (the next open reconciles): the
        // snapshot's locks land first and durably (a lock on an outpoint the old set lacks is
        // dropped at open); then the set and the tip; only then the old layer-1 records go (a
        // removal before the new set is durable could forget a lock this node voted for).
        let mut locks = WriteBatch::new();
        for (op, _, lock_txid) in entries {
            if let Some(txid) = lock_txid {
                locks.put(TreeId::UtxoStates, op.to_key(), &UtxoState::Locked(*txid));
            }
        }
        self.storage.commit(locks)?;
        let mut batch = WriteBatch::new();
        // The genesis outputs go: the snapshot is the whole set at its height.
        self.utxos.for_each_entry(|op, entry| {
            if entry.is_confirmed() {
                batch.remove(TreeId::Utxos, op.to_key());
            }
        });
        for (op, entry, _) in entries {
            batch.put(TreeId::Utxos, op.to_key(), entry);
        }
        let tip = ChainTip {
            height: header.height,
            hash,
            timestamp_ms: header.timestamp_ms,
            utxo_state: commitment.to_bytes(),
        };
        batch.put_raw(
            TreeId::BlockHashes,
            height_key(header.height),
            hash.0.to_vec(),
        );
        batch.put(TreeId::Commits, height_key(header.height), cert);
        batch.put(TreeId::Meta, meta_key::TIP, &tip);
        batch.extend(extra);
        self.storage.commit(batch)?;
        self.storage.flush()?;
        // The old layer-1 records: states of outputs the snapshot does not lock, and the final
        // and pending transactions (the snapshot's set and locks stand for them now).
        let locked: std::collections::HashSet<OutPoint> = entries
            .iter()
            .filter(|(_, _, l)| l.is_some())
            .map(|(op, _, _)| *op)
            .collect();
        let mut old = WriteBatch::new();
        for (op, _) in self.utxos.claimed() {
            if !locked.contains(&op) {
                old.remove(TreeId::UtxoStates, op.to_key());
            }
        }
        for tree in [TreeId::FinalTxs, TreeId::PendingTxs] {
            for (key, _) in self.storage.records(tree)? {
                old.remove(tree, &key);
            }
        }
        self.storage.append(old)?;
        self.storage.flush()?;
        self.finals.clear();

        self.utxos.clear();
        {
            let mut by_address = self.by_address.write();
            by_address.clear();
            by_address.extend(
                entries
                    .iter()
                    .map(|(op, entry, _)| (entry.output.key_hash, *op)),
            );
        }
        for (op, entry, lock_txid) in entries {
            let state = match lock_txid {
                Some(t) => UtxoState::Locked(*t),
                None => UtxoState::Unspent,
            };
            self.utxos.insert(
                *op,
                UtxoRecord {
                    entry: *entry,
                    state,
                },
            );
        }
        *lock(&self.commitment) = commitment.clone();
        self.tip.store(Some(Arc::new(tip)));
        Ok(commitment)
    }

    /// The confirmed set at the tip with each output's lock, in outpoint order: what a
    /// snapshot serves. Unconfirmed outputs (final, not yet in a block) are left out: the
    /// header's commitment does not cover them.
    pub fn snapshot_entries(&self) -> (Option<Arc<ChainTip>>, Vec<SnapshotEntry>) {
        let _w = self.write_guard();
        let tip = self.tip();
        let claims: std::collections::HashMap<OutPoint, UtxoState> =
            self.utxos.claimed().into_iter().collect();
        let mut entries: Vec<SnapshotEntry> = Vec::with_capacity(self.utxos.len());
        self.utxos.for_each_entry(|op, entry| {
            if entry.is_confirmed() {
                let lock = match claims.get(op) {
                    Some(UtxoState::Locked(t) | UtxoState::SpentFinalized(t)) => Some(*t),
                    Some(UtxoState::Unspent) | None => None,
                };
                entries.push((*op, *entry, lock));
            }
        });
        entries.sort_by_key(|(op, _, _)| *op);
        (tip, entries)
    }
}
