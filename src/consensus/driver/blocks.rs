//! Blocks: the rules of a proposal (checked beside the owner, `block_jobs`, as this node's own
//! is built there), committing a decided block, and serving and applying blocks for sync.

use super::block_jobs::ProposalCheck;
use super::evidence::check_block_evidence;
use super::{
    ConsensusDriver, DriverError, NodeEvent, Output, PeerId, Result, WireMessage, EVIDENCE_PREFIX,
    MAX_SYNC_BLOCKS,
};
use crate::consensus::bft::BftInput;
use crate::consensus::certificate::verify_commit;
use crate::consensus::finality::{FinalityInput, Millis};
use crate::consensus::set_store;
use crate::consensus::MasternodeSet;
use crate::ledger::{split_reward, Ledger, LedgerError};
use crate::storage::{StorageError, TreeId, WriteBatch};
use crate::types::{
    Block, Canonical, CommitCertificate, KeyHash, Network, OutPoint, Transaction, TxOutput, Txid,
};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

impl ConsensusDriver {
    /// Checks a proposed block. `None` means "not yet": some transactions are not final here,
    /// and their proofs have been asked for, or the block is being checked beside the owner
    /// ([`Output::CheckProposal`]).
    pub(super) fn validate_proposal(
        &mut self,
        block: &Arc<Block>,
        out: &mut Vec<Output>,
    ) -> Result<Option<bool>> {
        let height = block.header.height;
        let Some(tip) = self.ledger.tip() else {
            return Ok(Some(false));
        };
        if height != tip.height + 1 {
            return Ok(Some(false));
        }
        // Layer 2 only orders what layer 1 decided: every transaction must be final.
        let mut missing = BTreeSet::new();
        for tx in block.transactions.iter().skip(1) {
            let txid = tx.txid();
            if self.ledger.final_tx(&txid).is_none() {
                missing.insert(txid);
            }
        }
        if !missing.is_empty() {
            tracing::debug!(
                height,
                missing = missing.len(),
                "proposal waits for finality proofs"
            );
            for txid in &missing {
                out.push(Output::Broadcast(WireMessage::GetFinality(*txid)));
            }
            self.awaiting_finality
                .insert(block.hash(), (Arc::clone(block), missing));
            return Ok(None);
        }
        // Checked beside the owner (`block_jobs`); the engine hears the verdict when it is.
        out.push(Output::CheckProposal(Box::new(ProposalCheck::new(
            Arc::clone(block),
            tip.hash,
            self.block_rules(),
        ))));
        Ok(None)
    }

    /// What the next block is checked against besides the ledger.
    pub(super) fn block_rules(&self) -> BlockRules {
        BlockRules {
            prev_set: Arc::clone(&self.prev_set),
            set: Arc::clone(&self.set),
            network: self.cfg.network,
        }
    }

    /// The stateless rules of a proposed block (witness root, roots, sizes) checked before the
    /// engine sees it: a copy whose transactions were altered in transit carries the genuine
    /// block's hash, so letting the engine judge it would mark the genuine block invalid too.
    /// The sender relayed provably altered data: a fault.
    pub(super) fn proposal_well_formed(
        &self,
        from: PeerId,
        p: &crate::types::Proposal,
        out: &mut Vec<Output>,
    ) -> bool {
        match self.ledger.check_well_formed(&p.block) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(height = p.height, error = %e, "malformed proposal dropped");
                out.push(Output::Event(NodeEvent::PeerFault {
                    peer: from,
                    reason: format!("relayed a malformed proposal: {e}"),
                }));
                false
            }
        }
    }

    /// Applies a decided block: ledger, set, pool, finality engine, in that order.
    pub(super) fn commit_block(
        &mut self,
        block: &Block,
        certificate: CommitCertificate,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        // Wall time for the operator's metric only; no decision reads it.
        let started = std::time::Instant::now();
        let height = block.header.height;
        let (next, changes) = self.set.after_block(block, &spent_outpoints(block));
        let mut extra = WriteBatch::new();
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            set_store::write(&mut extra, &next);
        }
        let outcome = self
            .ledger
            .apply_block_with(block, &certificate, extra)
            .map_err(|source| match source {
                LedgerError::Storage(e) => DriverError::Storage(e),
                source => DriverError::Commit { height, source },
            })?;
        self.keep_block_evidence(block)?;
        let removed = self.mempool.remove_for_block(&outcome);
        // What the block confirmed left the pool final now (what layer 1 finalized first had
        // left already and was counted then).
        let confirmed: HashSet<&Txid> = outcome.txids.iter().collect();
        for entry in removed.iter().filter(|e| confirmed.contains(&e.txid)) {
            crate::metrics::finality_latency(now.saturating_sub(entry.added_at));
        }
        self.prev_set = std::mem::replace(&mut self.set, Arc::new(next));
        self.last_commit = Some(certificate);
        self.awaiting_finality.clear();
        let confirmed: Vec<Arc<Transaction>> = block.transactions.iter().skip(1).cloned().collect();
        // The layer-1 engine for the new set first: when the set falls below the slot
        // engine's size, the all-to-all engine votes again, and its set change below casts
        // its locks under the new set (what the slot engine's certificates decided no longer
        // counts for peers that did not see them).
        self.slots_after_block(confirmed.clone(), now, out)?;
        self.run_finality(
            FinalityInput::BlockCommitted {
                set: Arc::clone(&self.set),
                confirmed,
            },
            now,
            out,
        )?;
        self.compact_after_commit(height, out);
        out.push(Output::Event(NodeEvent::BlockCommitted {
            height,
            hash: outcome.hash,
            time_ms: block.header.timestamp_ms,
            transactions: Some(block.transactions.len()),
        }));
        crate::metrics::block_commit(started.elapsed());
        Ok(())
    }

    /// Answers a block request from the simulation's in-memory network (real nodes answer
    /// in the network's sync server, off this thread). A damaged record is reported and
    /// not served: it never stops consensus.
    pub(super) fn serve_blocks(&mut self, from: PeerId, from_height: u64, out: &mut Vec<Output>) {
        match block_page(self.ledger.storage(), from_height) {
            Ok(page) if !page.blocks.is_empty() => {
                out.push(Output::SendTo(from, WireMessage::Blocks(page.blocks)))
            }
            Ok(_) => {}
            Err(e) => report_unservable("blocks", from_height, &e, is_corrupt(&e)),
        }
    }

    /// Applies blocks fetched from peer `from`, each only with a certificate that verifies
    /// against the set at its height. Stops at the first that does not fit. A peer serving a
    /// bad certificate, or a certified block that conflicts with one this node committed, is
    /// reported as a fault (the network bans it); a conflicting block with a *valid*
    /// certificate is kept as evidence: a third or more of the weight signed two blocks.
    pub(super) fn apply_synced_blocks(
        &mut self,
        from: PeerId,
        blocks: Vec<(Arc<Block>, CommitCertificate)>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let mut applied_any = false;
        for (block, cert) in blocks.into_iter().take(MAX_SYNC_BLOCKS as usize) {
            let Some(tip) = self.ledger.tip() else { break };
            let height = block.header.height;
            let hash = block.hash();
            if height <= tip.height {
                self.check_known_block(from, &block, &cert, out)?;
                continue;
            }
            if height != tip.height + 1 {
                break;
            }
            if let Err(e) = verify_commit(&cert, &self.set, self.cfg.network, height, &hash) {
                tracing::warn!(height, error = %e, "synced block has a bad certificate");
                out.push(Output::Event(NodeEvent::PeerFault {
                    peer: from,
                    reason: format!("served block {height} with a bad certificate: {e}"),
                }));
                break;
            }
            if let Err(e) = self.ledger.check_well_formed(&block) {
                // Certified hash, altered body (e.g. swapped signatures): the server lies.
                tracing::warn!(height, error = %e, "synced block is malformed");
                out.push(Output::Event(NodeEvent::PeerFault {
                    peer: from,
                    reason: format!("served block {height} with an altered body: {e}"),
                }));
                break;
            }
            if let Err(reason) = self.block_rules().check(&self.ledger, &block, &tip.hash) {
                tracing::warn!(height, %reason, "synced block is invalid");
                break;
            }
            let time = block.header.timestamp_ms;
            self.commit_block(&block, cert, now, out)?;
            let effects = self.bft.step(
                BftInput::Committed {
                    height,
                    block_time_ms: time,
                    set: Arc::clone(&self.set),
                },
                now,
            );
            self.run_bft_effects(effects, now, out)?;
            applied_any = true;
        }
        if applied_any {
            // There may be more: ask again from the new tip.
            let from_height = self.ledger.height().map_or(0, |h| h + 1);
            out.push(Output::Broadcast(WireMessage::GetBlocks { from_height }));
        }
        Ok(())
    }

    /// A peer sent a block this node committed: if this node's record of it is damaged, the
    /// copy (the block the height index names, with the body its header commits to) replaces
    /// it. This is how a damaged record found while serving is repaired.
    fn repair_if_damaged(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        height: u64,
    ) -> Result<()> {
        let storage = self.ledger.storage();
        let hash = block.hash();
        let damaged = match (storage.block_by_hash(&hash), storage.commit_at(height)) {
            (Ok(Some(b)), Ok(Some(c))) => check_record(&b, &c, height, &hash).is_err(),
            (Err(e), _) | (_, Err(e)) => is_corrupt(&e),
            _ => false,
        };
        if !damaged || check_record(block, cert, height, &hash).is_err() {
            return Ok(());
        }
        let signers = set_store::load_at(storage, height.saturating_sub(1))?;
        if let Err(e) = verify_commit(cert, &signers, self.cfg.network, height, &hash) {
            tracing::warn!(height, error = %e, "a copy of a damaged block came with a bad certificate");
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.put(TreeId::Blocks, hash.0, block);
        batch.put(
            TreeId::Commits,
            crate::storage::schema::height_key(height),
            cert,
        );
        storage.commit(batch)?;
        storage.flush()?;
        tracing::warn!(height, %hash, "repaired a damaged block record with a copy from a peer");
        Ok(())
    }

    /// A synced block at a height this node has committed: fine if it is the same block;
    /// otherwise the peer is at fault, and a valid certificate on it is kept as evidence.
    fn check_known_block(
        &mut self,
        from: PeerId,
        block: &Block,
        cert: &CommitCertificate,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let height = block.header.height;
        let hash = block.hash();
        let storage = self.ledger.storage();
        let Some(ours) = storage.block_hash_at(height)? else {
            return Ok(());
        };
        if ours == hash {
            return self.repair_if_damaged(block, cert, height);
        }
        let signers = set_store::load_at(storage, height.saturating_sub(1))?;
        let reason = match verify_commit(cert, &signers, self.cfg.network, height, &hash) {
            Ok(()) => {
                let mut key = EVIDENCE_PREFIX.to_vec();
                key.extend_from_slice(&height.to_be_bytes());
                key.extend_from_slice(&hash.0);
                let record = crate::types::codec::encode(&(block.clone(), cert.clone()));
                let mut batch = WriteBatch::new();
                batch.put_raw(TreeId::Consensus, key, record);
                storage.commit(batch)?;
                storage.flush()?;
                tracing::error!(
                    height, ours = %ours, theirs = %hash,
                    "a second block at a committed height carries a valid certificate: more than a \
                     third of the masternode weight signed both; evidence kept in the consensus tree"
                );
                format!("served a conflicting certified block at height {height}")
            }
            Err(e) => format!("served a block conflicting with committed height {height}: {e}"),
        };
        out.push(Output::Event(NodeEvent::PeerFault { peer: from, reason }));
        Ok(())
    }
}

/// The rules of a block beyond the ledger's, with what they are checked against: the set that
/// signed the tip (the carried certificate) and the set that signs the block (payees,
/// evidence, the next set). Two `Arc`s and the network: a check can take them beside the
/// owner.
#[derive(Clone, Debug)]
pub struct BlockRules {
    prev_set: Arc<MasternodeSet>,
    set: Arc<MasternodeSet>,
    network: Network,
}

impl BlockRules {
    /// The carried certificate, the evidence, the coinbase payees and the next set's hash;
    /// then the ledger's own checks (whose walk the ledger keeps for the block's commit).
    pub(super) fn check(
        &self,
        ledger: &Ledger,
        block: &Block,
        tip_hash: &crate::types::BlockHash,
    ) -> std::result::Result<(), String> {
        let height = block.header.height;
        match (&block.last_commit, height) {
            (None, 1) => {}
            (Some(cert), h) if h > 1 => {
                verify_commit(cert, &self.prev_set, self.network, h - 1, tip_hash)
                    .map_err(|e| format!("last commit: {e}"))?;
            }
            _ => return Err("last commit missing or unexpected".into()),
        }
        check_block_evidence(&self.set, self.network, block)?;
        let fees = ledger.plan_block(block).map_err(|e| e.to_string())?.fees;
        let reward = ledger.params().rewards.reward_at(height);
        let total = reward.checked_add(fees).ok_or("reward overflows")?;
        let expected: Vec<TxOutput> =
            split_reward(total, &payees(&self.set, block.last_commit.as_ref()));
        if block.transactions[0].outputs != expected {
            return Err("coinbase does not pay the previous commit's signers by weight".into());
        }
        let (next, _) = self.set.after_block(block, &spent_outpoints(block));
        if next.hash() != block.header.next_masternode_set_hash {
            return Err("next masternode set hash is wrong".into());
        }
        Ok(())
    }

    /// Whether two rules are the same: the same sets and network.
    pub(super) fn same_as(&self, other: &BlockRules) -> bool {
        self.network == other.network
            && self.set.hash() == other.set.hash()
            && self.prev_set.hash() == other.prev_set.hash()
    }
}

/// Who the block at the next height pays, and with what weight: the signers of the previous
/// block's certificate, weighed by the set that signs the next block (`set`; signers who left
/// it get nothing). Right after genesis there is no certificate: the genesis set is paid.
pub(super) fn payees(
    set: &MasternodeSet,
    last_commit: Option<&CommitCertificate>,
) -> Vec<(KeyHash, u64)> {
    let keys: Vec<crate::types::PublicKey> = match last_commit {
        Some(cert) => cert.precommits.iter().map(|v| v.validator).collect(),
        None => set.members().map(|m| m.operator_key).collect(),
    };
    let mut payees: Vec<(KeyHash, u64)> = keys
        .iter()
        .filter_map(|k| {
            let w = set.weight_of(k);
            (w > 0).then(|| (k.key_hash(), w))
        })
        .collect();
    payees.sort();
    payees
}

/// Every outpoint a block's transactions spend.
pub(super) fn spent_outpoints(block: &Block) -> Vec<OutPoint> {
    block
        .transactions
        .iter()
        .flat_map(|t| t.inputs.iter().map(|i| i.prev_out))
        .collect()
}

/// A page of committed blocks for a syncing peer, and the height of a damaged record that
/// ended it early (reported already; the node asks peers for a good copy).
#[derive(Debug, Default)]
pub struct BlockPage {
    pub blocks: Vec<(Arc<Block>, CommitCertificate)>,
    pub damaged: Option<u64>,
}

/// Up to `MAX_SYNC_BLOCKS` committed blocks with their certificates from `from_height` (at
/// least 1), stopping before the page passes one full block's size (the first always goes,
/// and a block never exceeds that size). A record that does not decode, or decodes to a
/// block other than the one the height index names, is damaged: serving it would get this
/// node banned by every honest peer, so the page ends before it and says where. Only a
/// failing database is an error.
pub fn block_page(
    storage: &crate::storage::Storage,
    from_height: u64,
) -> std::result::Result<BlockPage, StorageError> {
    let mut page = BlockPage::default();
    let mut bytes = 0usize;
    let start = from_height.max(1);
    for h in start..start.saturating_add(u64::from(MAX_SYNC_BLOCKS)) {
        let read = storage.block_hash_at(h).and_then(|hash| match hash {
            None => Ok(None),
            Some(hash) => match (storage.block_by_hash(&hash)?, storage.commit_at(h)?) {
                (Some(b), Some(c)) => check_record(&b, &c, h, &hash).map(|()| Some((b, c))),
                _ => Ok(None),
            },
        });
        let (b, c) = match read {
            Ok(Some(pair)) => pair,
            Ok(None) => break,
            Err(e) if is_corrupt(&e) => {
                report_unservable("blocks", h, &e, true);
                page.damaged = Some(h);
                break;
            }
            Err(e) => return Err(e),
        };
        bytes += b.to_bytes().len() + c.to_bytes().len();
        if !page.blocks.is_empty() && bytes > crate::types::codec::MAX_BLOCK_BYTES {
            break;
        }
        page.blocks.push((Arc::new(b), c));
    }
    Ok(page)
}

/// A stored block and certificate are the ones the height index names, and the body is the
/// one the header commits to.
pub fn check_record(
    block: &Block,
    cert: &CommitCertificate,
    height: u64,
    hash: &crate::types::BlockHash,
) -> std::result::Result<(), StorageError> {
    let damaged = |reason: String| StorageError::Corrupt {
        tree: TreeId::Blocks.name(),
        key: height.to_string(),
        reason,
    };
    if block.hash() != *hash || block.header.height != height {
        return Err(damaged(format!(
            "the record decodes to block {} at height {}, the index names {hash}",
            block.hash(),
            block.header.height
        )));
    }
    let ids: Vec<crate::types::Hash32> = block.transactions.iter().map(|t| t.txid()).collect();
    if crate::types::hash::merkle_root(&ids) != block.header.tx_root {
        return Err(damaged(
            "the body does not match the header's tx_root".into(),
        ));
    }
    if cert.block_hash != *hash || cert.height != height {
        return Err(StorageError::Corrupt {
            tree: TreeId::Commits.name(),
            key: height.to_string(),
            reason: format!("the certificate names block {}", cert.block_hash),
        });
    }
    Ok(())
}

/// A sync request this node could not answer from its database: a damaged record is an
/// error for the operator (logged, counted in `timed_storage_corrupt_records_total`); it is
/// not served, and nothing stops.
pub fn report_unservable(what: &str, from_height: u64, e: &dyn std::fmt::Display, corrupt: bool) {
    let text = e.to_string();
    if corrupt {
        crate::metrics::storage_corrupt_record();
        tracing::error!(
            what,
            from_height,
            error = %text,
            "a damaged database record was not served to a peer; the node keeps running"
        );
    } else {
        tracing::warn!(what, from_height, error = %text, "cannot serve a sync request");
    }
}

/// Whether a storage failure is a damaged record (rather than the disk or sled failing).
pub fn is_corrupt(e: &StorageError) -> bool {
    matches!(e, StorageError::Corrupt { .. })
}

/// The same for a read that also loads masternode sets.
pub fn is_corrupt_set_read(e: &set_store::SetStoreError) -> bool {
    match e {
        set_store::SetStoreError::Storage(s) => is_corrupt(s),
        set_store::SetStoreError::Corrupt { .. } => true,
        set_store::SetStoreError::Missing(_) => false,
    }
}
