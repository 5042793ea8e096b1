//! The driver's side of fast sync: serving certified headers and UTXO-snapshot pages, and
//! installing a verified snapshot in a fresh node.
//!
//! What a snapshot carries beyond its certified commitment is not trusted. The commitment
//! covers the outputs, not their layer-1 locks, so a server could plant, strip or invent
//! locks. A fresh node therefore installs no lock at all, and records the snapshot height
//! T durably (in the same batch as the snapshot): from then on it never casts its own vote
//! for a transaction spending an output confirmed at or below T, since it cannot know which
//! spend of that output the network (or its own key, before a wipe) already voted for. It
//! still tracks such a transaction, counts the others' votes, finalizes it on a quorum and
//! puts it in blocks; the abstention on an output ends when a block confirms its spend (the
//! output is then gone). Outputs created after T it saw created, and votes on normally.

use super::{ConsensusDriver, DriverError, Output, PeerId, Result, WireMessage};
use crate::consensus::bft::BftEngine;
use crate::consensus::finality::{FinalityEngine, FinalityInput, Millis};
use crate::consensus::snapshot::{
    entry_bytes, snapshot_page, HeaderEntry, HEADER_PAGE_BYTES, MAX_HEADERS,
};
use crate::consensus::{set_store, MasternodeSet};
use crate::ledger::snapshot::SnapshotEntry;
use crate::ledger::LedgerError;
use crate::mempool::Mempool;
use crate::storage::{Storage, WriteBatch};
use crate::types::Transaction;
use std::sync::Arc;

/// Key, in the consensus tree, of the height of the snapshot this node was installed from.
pub const SNAPSHOT_HEIGHT_KEY: &[u8] = b"installed_snapshot_height";

/// The height of the snapshot this node was installed from, if it was.
pub(super) fn installed_snapshot_height(storage: &Storage) -> Result<Option<u64>> {
    let raw = storage
        .tree(crate::storage::TreeId::Consensus)
        .get(SNAPSHOT_HEIGHT_KEY)
        .map_err(crate::storage::StorageError::from)?;
    match raw {
        None => Ok(None),
        Some(raw) => {
            let bytes: [u8; 8] =
                raw.as_ref()
                    .try_into()
                    .map_err(|_| crate::storage::StorageError::Corrupt {
                        tree: crate::storage::TreeId::Consensus.name(),
                        key: String::from_utf8_lossy(SNAPSHOT_HEIGHT_KEY).into_owned(),
                        reason: format!("expected 8 bytes, found {}", raw.len()),
                    })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

/// How long a snapshot taken for one client is served to fresh requests.
pub const SNAPSHOT_REUSE_MS: Millis = 60_000;

impl ConsensusDriver {
    /// Of the final spends found at start-up, the transactions this node abstained on (they
    /// spend outputs confirmed at or below its snapshot): `resume` must not sign them.
    pub(super) fn abstained_finals(
        &self,
        spends: &[(crate::types::OutPoint, crate::types::Txid)],
    ) -> std::collections::BTreeSet<crate::types::Txid> {
        let Some(t) = self.snapshot_height else {
            return Default::default();
        };
        spends
            .iter()
            .filter(|(op, _)| {
                self.ledger
                    .utxo(op)
                    .and_then(|r| r.entry.height)
                    .is_some_and(|h| h <= t)
            })
            .map(|(_, txid)| *txid)
            .collect()
    }

    /// How the finality engine gets a verified transaction: without this node's vote when it
    /// spends an output confirmed at or below the snapshot this node was installed from.
    pub(super) fn finality_input(&self, tx: Arc<Transaction>) -> FinalityInput {
        if self.spends_unproven(&tx) {
            FinalityInput::TransactionWithoutVote(tx)
        } else {
            FinalityInput::Transaction(tx)
        }
    }

    /// Whether `tx` spends an output confirmed at or below the snapshot this node was
    /// installed from (whose lock history nobody certified): this node must not vote for it.
    pub(super) fn spends_unproven(&self, tx: &Transaction) -> bool {
        let Some(t) = self.snapshot_height else {
            return false;
        };
        let unproven = tx.inputs.iter().any(|i| {
            self.ledger
                .utxo(&i.prev_out)
                .and_then(|r| r.entry.height)
                .is_some_and(|h| h <= t)
        });
        if unproven {
            tracing::debug!(txid = %tx.txid(), snapshot = t, "not voting: spends an output from before this node's snapshot");
        }
        unproven
    }

    /// Answers a header request from the simulation's in-memory network (real nodes answer
    /// in the network's sync server). A damaged record is reported, not served.
    pub(super) fn serve_headers(&mut self, from: PeerId, from_height: u64, out: &mut Vec<Output>) {
        match header_page(self.ledger.storage(), from_height) {
            Ok(page) if !page.is_empty() => {
                out.push(Output::SendTo(from, WireMessage::Headers(Arc::new(page))))
            }
            Ok(_) => {}
            Err(e) => super::blocks::report_unservable(
                "headers",
                from_height,
                &e,
                super::blocks::is_corrupt_set_read(&e),
            ),
        }
    }

    /// Serves page `page` of the confirmed set. Page 0 of height 0 (or of a height no longer
    /// cached) takes a new snapshot at the tip; later pages come from that same snapshot, so
    /// a client gets one consistent set however many blocks commit meanwhile.
    pub(super) fn serve_snapshot(
        &mut self,
        from: PeerId,
        height: u64,
        page: u32,
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        // A fresh request (height 0) reuses a snapshot younger than `SNAPSHOT_REUSE_MS`:
        // taking one is a pass over the whole set on this thread, so peers cannot make this
        // node take one per request, and clients mid-download keep their pages.
        let fresh = |taken: Millis| now.saturating_sub(taken) < SNAPSHOT_REUSE_MS;
        let cached = self
            .snapshot
            .as_ref()
            .filter(|(h, taken, _)| {
                if height == 0 {
                    fresh(*taken)
                } else {
                    *h == height
                }
            })
            .map(|(h, _, e)| (*h, Arc::clone(e)));
        let (height, entries) = match cached {
            Some(c) => c,
            None => {
                if height != 0 {
                    return;
                }
                let (tip, entries) = self.ledger.snapshot_entries();
                let Some(tip) = tip else { return };
                let entries = Arc::new(entries);
                self.snapshot = Some((tip.height, now, Arc::clone(&entries)));
                (tip.height, entries)
            }
        };
        if let Some(p) = snapshot_page(height, &entries, page) {
            out.push(Output::SendTo(from, WireMessage::Snapshot(Arc::new(p))));
        }
    }

    /// Installs a snapshot verified against `last` (a header whose certificate chain back to
    /// genesis was checked): the ledger, both sets, the certificate, and fresh engines at
    /// the next height. Refused unless this node holds only its genesis.
    pub fn import_snapshot(
        &mut self,
        last: &HeaderEntry,
        set: MasternodeSet,
        prev_set: MasternodeSet,
        entries: Vec<SnapshotEntry>,
        now: Millis,
    ) -> Result<std::result::Result<Vec<Output>, LedgerError>> {
        let height = last.header.height;
        // Locks are not covered by the certified commitment: none is installed.
        let entries: Vec<SnapshotEntry> = entries
            .into_iter()
            .map(|(op, entry, _)| (op, entry, None))
            .collect();
        let mut extra = WriteBatch::new();
        extra.put_raw(
            crate::storage::TreeId::Consensus,
            SNAPSHOT_HEIGHT_KEY,
            height.to_be_bytes().to_vec(),
        );
        set_store::write(
            &mut extra,
            &MasternodeSet::new(height.saturating_sub(1), prev_set.members().cloned()),
        );
        set_store::write(
            &mut extra,
            &MasternodeSet::new(height, set.members().cloned()),
        );
        match self
            .ledger
            .import_snapshot(&last.header, &last.cert, &entries, extra)
        {
            Ok(_) => {}
            Err(LedgerError::Storage(e)) => return Err(DriverError::Storage(e)),
            Err(e) => return Ok(Err(e)),
        }
        self.snapshot_height = Some(height);
        self.set = Arc::new(set);
        self.prev_set = Arc::new(prev_set);
        self.last_commit = Some(last.cert.clone());
        self.awaiting_finality.clear();
        self.snapshot = None;
        self.mempool = Mempool::new(self.cfg.network, self.cfg.pool);
        self.finality = FinalityEngine::new(
            self.cfg.finality.clone(),
            self.cfg.key.clone(),
            Arc::clone(&self.set),
            Vec::new(),
            Vec::new(),
            now,
        )
        // As after a restart: the window is open when the snapshot's block changed the set.
        .with_previous_set(Arc::clone(&self.prev_set));
        self.choose_layer1()?;
        self.bft = BftEngine::new(
            self.cfg.bft.clone(),
            self.cfg.key.clone(),
            Arc::clone(&self.set),
            height + 1,
            last.header.timestamp_ms,
            None,
        );
        let first = self.bft.start(now);
        let mut out = vec![Output::Event(super::NodeEvent::BlockCommitted {
            height,
            hash: last.header.hash(),
            time_ms: last.header.timestamp_ms,
            transactions: None,
        })];
        self.run_bft_effects(first, now, &mut out)?;
        tracing::info!(height, outputs = entries.len(), "UTXO snapshot installed");
        Ok(Ok(out))
    }
}

/// Up to `MAX_HEADERS` certified headers from `from_height` (at least 1), each with the new
/// masternode set when it changes it, stopping once the page reaches `HEADER_PAGE_BYTES` (the
/// page contract in `consensus::snapshot`, which the client checks). Empty when this node
/// lacks the block before `from_height` (it was fast-synced past it). What fast sync serves,
/// and what a snapshot file carries.
pub fn header_page(
    storage: &Storage,
    from_height: u64,
) -> std::result::Result<Vec<HeaderEntry>, set_store::SetStoreError> {
    let start = from_height.max(1);
    let mut prev_next = match storage.block_at(start - 1)? {
        Some(b) => b.header.next_masternode_set_hash,
        None => return Ok(Vec::new()),
    };
    let mut page = Vec::new();
    let mut bytes = 0usize;
    for h in start..start.saturating_add(MAX_HEADERS as u64) {
        if bytes >= HEADER_PAGE_BYTES {
            break;
        }
        let (Some(block), Some(cert)) = (storage.block_at(h)?, storage.commit_at(h)?) else {
            break;
        };
        let header = block.header;
        let next_set = if header.next_masternode_set_hash != prev_next {
            Some(set_store::load_at(storage, h)?.members().cloned().collect())
        } else {
            None
        };
        prev_next = header.next_masternode_set_hash;
        let entry = HeaderEntry {
            header,
            cert,
            next_set,
        };
        bytes += entry_bytes(&entry);
        page.push(entry);
    }
    Ok(page)
}
