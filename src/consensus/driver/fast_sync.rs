//! The driver's side of fast sync: serving certified headers and UTXO-snapshot pages, and
//! installing a verified snapshot in a fresh node.

use super::{ConsensusDriver, DriverError, Output, PeerId, Result, WireMessage};
use crate::consensus::bft::BftEngine;
use crate::consensus::finality::{FinalityEngine, Millis};
use crate::consensus::snapshot::{HeaderEntry, SnapshotPage, MAX_HEADERS, SNAPSHOT_PAGE};
use crate::consensus::{set_store, MasternodeSet};
use crate::ledger::snapshot::SnapshotEntry;
use crate::ledger::LedgerError;
use crate::mempool::Mempool;
use crate::storage::{Storage, WriteBatch};
use crate::types::Canonical;
use std::sync::Arc;

/// How long a snapshot taken for one client is served to fresh requests.
pub const SNAPSHOT_REUSE_MS: Millis = 60_000;

impl ConsensusDriver {
    pub(super) fn serve_headers(
        &mut self,
        from: PeerId,
        from_height: u64,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let page = header_page(self.ledger.storage(), from_height)?;
        if !page.is_empty() {
            out.push(Output::SendTo(from, WireMessage::Headers(Arc::new(page))));
        }
        Ok(())
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
        let pages = entries.len().div_ceil(SNAPSHOT_PAGE).max(1) as u32;
        if page >= pages {
            return;
        }
        let start = page as usize * SNAPSHOT_PAGE;
        let slice = entries[start..(start + SNAPSHOT_PAGE).min(entries.len())].to_vec();
        out.push(Output::SendTo(
            from,
            WireMessage::Snapshot(Arc::new(SnapshotPage {
                height,
                page,
                pages,
                entries: slice,
            })),
        ));
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
        let mut extra = WriteBatch::new();
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
        let locks: Vec<_> = entries
            .iter()
            .filter_map(|(op, _, lock)| lock.map(|t| (*op, t)))
            .collect();
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
            locks,
            Vec::new(),
            now,
        );
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
        })];
        self.run_bft_effects(first, now, &mut out)?;
        tracing::info!(height, outputs = entries.len(), "UTXO snapshot installed");
        Ok(Ok(out))
    }
}

/// Up to `MAX_HEADERS` certified headers from `from_height` (at least 1), each with the new
/// masternode set when it changes it; at most half a block's size in bytes. Empty when this
/// node lacks the block before `from_height` (it was fast-synced past it). What fast sync
/// serves, and what a snapshot file carries.
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
    // Like block pages, header pages stay well inside one frame.
    let mut bytes = 0usize;
    for h in start..start.saturating_add(MAX_HEADERS as u64) {
        let (Some(block), Some(cert)) = (storage.block_at(h)?, storage.commit_at(h)?) else {
            break;
        };
        bytes += block.header.to_bytes().len() + cert.to_bytes().len();
        if !page.is_empty() && bytes > crate::types::codec::MAX_BLOCK_BYTES / 2 {
            break;
        }
        let header = block.header;
        let next_set = if header.next_masternode_set_hash != prev_next {
            Some(set_store::load_at(storage, h)?.members().cloned().collect())
        } else {
            None
        };
        prev_next = header.next_masternode_set_hash;
        page.push(HeaderEntry {
            header,
            cert,
            next_set,
        });
    }
    Ok(page)
}
