//! Layer 1 for large sets: when the set has [`FinalityConfig::slot_engine_voters`] voters or
//! more, the slot engine (`finality::slots`) decides finality and today's all-to-all engine
//! keeps only its bookkeeping (rival bounds, regossip, the pool's view), its vote batches no
//! longer sent: at a thousand masternodes they are the traffic that does not scale
//! (SCALING.md).
//!
//! ```text
//! transaction ─► all-to-all engine (tracks, locks) ─► slot engine (locks, shares, certificates)
//! SlotAnnouncement / SlotShare / LockReport / SlotCertificate ─► slot engine
//! slot engine ─► PersistLock ─► ledger;  SendShare ─► flush, then to the aggregator only
//!             ─► SendAnnouncement ─► to the voters named (this node's children in the slot's
//!                                    tree; a node outside the set gets batches by asking)
//!             ─► BroadcastCertificate ─► flush, then every peer;  Finalized ─► ledger, pool
//!             ─► FetchBatch ─► GetSlotBatch to the peer whose certificate named a batch
//!                              this node missed
//! GetSlotBatch ─► the signed announcement, once per peer and batch
//! ```
//!
//! The choice follows the set, so every node switches at the same block; a lock taken under
//! either engine is a ledger lock that both honour.

use super::*;
use crate::consensus::finality::slots::{
    SetKeys, SlotConfig, SlotEffect, SlotEngine, SlotInput, SLOT_WINDOW,
};
use crate::types::slot::slot_at;
use std::collections::HashSet;

/// Voters whose share senders are remembered (far above any set).
const MAX_SHARE_SENDERS: usize = 65_536;
/// Batch announcements served to peers that missed them, remembered for the engine's window
/// so that each is answered once per peer (far above what honest peers ask).
const MAX_BATCHES_SERVED: usize = 65_536;

impl ConsensusDriver {
    /// Whether `set` is decided by the slot engine.
    pub(super) fn wants_slots(&self, set: &MasternodeSet) -> bool {
        let threshold = self.cfg.finality.slot_engine_voters;
        threshold > 0 && set.members().filter(|m| m.weight() > 0).count() >= threshold
    }

    /// Hands layer 1 to the slot engine (`Some`) or back to all-to-all votes (`None`). Only
    /// one engine votes: the all-to-all engine keeps its books either way.
    pub(super) fn use_slots(&mut self, engine: Option<SlotEngine>) {
        self.finality.set_voting(engine.is_none());
        self.slots = engine;
    }

    /// Starts the slot engine if the current set asks for it (at open, after a snapshot).
    pub(super) fn choose_layer1(&mut self) -> Result<()> {
        let engine = if self.wants_slots(&self.set) {
            tracing::info!(
                voters = self.set.len(),
                threshold = self.cfg.finality.slot_engine_voters,
                "layer 1 runs on the slot engine (the set has the chain's slot_engine_voters)"
            );
            Some(self.new_slot_engine()?)
        } else {
            None
        };
        self.use_slots(engine);
        Ok(())
    }

    /// A slot engine for the current set, with the ledger's locks (taken under either engine).
    pub(super) fn new_slot_engine(&self) -> Result<SlotEngine> {
        let keys = Arc::new(SetKeys::of(&self.set, None));
        let mut locks = Vec::new();
        for (key, _) in self.ledger.storage().records(TreeId::UtxoStates)? {
            if let Some(op) = OutPoint::from_key(&key) {
                match self.ledger.utxo(&op).map(|r| r.state) {
                    Some(UtxoState::Locked(txid)) | Some(UtxoState::SpentFinalized(txid)) => {
                        locks.push((op, txid))
                    }
                    _ => {}
                }
            }
        }
        Ok(SlotEngine::new(
            SlotConfig {
                announce_fanout: self.cfg.finality.announce_fanout,
                ..SlotConfig::new(self.cfg.network)
            },
            self.cfg.key.clone(),
            keys,
            locks,
        ))
    }

    /// After a block: starts, feeds or stops the slot engine as the new set asks. A node
    /// that starts it gives it the transactions pending in the pool.
    pub(super) fn slots_after_block(
        &mut self,
        confirmed: Vec<Arc<Transaction>>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if !self.wants_slots(&self.set) {
            self.use_slots(None);
            return Ok(());
        }
        if let Some(engine) = &self.slots {
            let keys = if engine.keys().set_hash() == self.set.hash() {
                Arc::clone(engine.keys())
            } else {
                Arc::new(SetKeys::of(&self.set, Some(engine.keys())))
            };
            return self.run_slots(
                SlotInput::BlockCommitted { keys, confirmed },
                None,
                now,
                out,
            );
        }
        tracing::info!(
            voters = self.set.len(),
            threshold = self.cfg.finality.slot_engine_voters,
            "the set reached the chain's slot_engine_voters: layer 1 switches to the slot engine"
        );
        let engine = self.new_slot_engine()?;
        self.use_slots(Some(engine));
        self.feed_pool_to_slots(now, out)
    }

    /// Gives the slot engine every transaction in the pool (after it started).
    pub(super) fn feed_pool_to_slots(&mut self, now: Millis, out: &mut Vec<Output>) -> Result<()> {
        let pending: Vec<Arc<Transaction>> = self
            .mempool
            .iter_by_fee_rate()
            .map(|e| Arc::clone(&e.tx))
            .collect();
        for tx in pending {
            let input = self.slot_input(tx);
            self.run_slots(input, None, now, out)?;
        }
        Ok(())
    }

    /// How the slot engine gets a verified transaction (without this node's share when it
    /// spends an output from before the snapshot this node was installed from).
    pub(super) fn slot_input(&self, tx: Arc<Transaction>) -> SlotInput {
        if self.spends_unproven(&tx) {
            SlotInput::TransactionWithoutVote(tx)
        } else {
            SlotInput::Transaction(tx)
        }
    }

    /// A slot message from peer `from`. Announcements are signed by their aggregator: checked
    /// here, before the engine (the network already dropped those of non-members).
    pub(super) fn on_slot_message(
        &mut self,
        from: PeerId,
        msg: WireMessage,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if self.slots.is_none() {
            self.dropped(Dropped::Irrelevant);
            return Ok(());
        }
        let input = match msg {
            WireMessage::SlotAnnouncement(a) => {
                if !a.verify(self.cfg.network) {
                    let reason = format!("slot {} announcement with a bad signature", a.slot);
                    self.fault(from, intake::OVER_CAP_POINTS, reason, out);
                    return Ok(());
                }
                SlotInput::Announcement(a)
            }
            WireMessage::SlotShare(share) => {
                // Whose connection carried each voter's share: a share found bad later, in a
                // sum, is that connection's fault (the network checks that a share comes
                // from its voter's own session), not the fault of whoever sent the last one.
                if self.share_senders.len() >= MAX_SHARE_SENDERS {
                    self.share_senders.clear();
                }
                self.share_senders.insert(share.voter, from);
                SlotInput::Share(share)
            }
            WireMessage::LockReport(report) => {
                if report.cannot_lock.len() > crate::types::slot::MAX_SLOT_TXIDS {
                    self.dropped(Dropped::OverCap);
                    return Ok(());
                }
                SlotInput::Report((*report).clone())
            }
            WireMessage::SlotCertificate(certificate) => SlotInput::Certificate(certificate),
            WireMessage::SlotFinality { tx, proof } => SlotInput::Proven { tx, proof },
            _ => return Ok(()),
        };
        self.run_slots(input, Some(from), now, out)
    }

    pub(super) fn run_slots(
        &mut self,
        input: SlotInput,
        from: Option<PeerId>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let Some(engine) = self.slots.as_mut() else {
            return Ok(());
        };
        let effects = engine.step(input, now);
        if tracing::enabled!(tracing::Level::TRACE) {
            for e in &effects {
                tracing::trace!(effect = ?std::mem::discriminant(e), detail = %slot_effect_label(e), "slot engine");
            }
        }
        let mut applied_any = false;
        // Locks the ledger refused in this step: the engine forgets them, and no share of a
        // batch naming one leaves (it would promise a lock this node does not hold).
        let mut refused: HashSet<Txid> = HashSet::new();
        for effect in effects {
            match effect {
                SlotEffect::PersistLock(tx) => match self.ledger.lock_inputs(&tx) {
                    Ok(_) => {}
                    Err(LedgerError::Storage(e)) => return Err(e.into()),
                    Err(e) => {
                        let txid = tx.txid();
                        tracing::warn!(%txid, error = %e, "lock refused by the ledger");
                        if let Some(engine) = self.slots.as_mut() {
                            engine.unlock(&txid);
                        }
                        refused.insert(txid);
                    }
                },
                // Persist before you promise: a share is this node's lock on every
                // transaction of the batch, so it leaves after the flush.
                SlotEffect::SendShare { to, share } => {
                    let names_refused = !refused.is_empty()
                        && self
                            .slots
                            .as_ref()
                            .and_then(|e| e.announcement(share.slot, &share.root))
                            .is_none_or(|a| a.txids.iter().any(|t| refused.contains(t)));
                    if names_refused {
                        tracing::warn!(slot = share.slot, root = %share.root, "share withheld: its batch names a lock the ledger refused");
                        continue;
                    }
                    out.push(Output::SendToNodeDurable(to, WireMessage::SlotShare(share)))
                }
                SlotEffect::SendReport { to, report } => out.push(Output::SendToNode(
                    to,
                    WireMessage::LockReport(Arc::new(report)),
                )),
                SlotEffect::SendAnnouncement {
                    to,
                    announcement,
                    past_tree,
                } => {
                    if past_tree {
                        crate::metrics::slot_announcements_past_tree(to.len());
                    }
                    for voter in to {
                        out.push(Output::SendToNode(
                            voter,
                            WireMessage::SlotAnnouncement(Arc::clone(&announcement)),
                        ));
                    }
                }
                // It holds this node's own share: durable first, like a share.
                SlotEffect::BroadcastCertificate(certificate) => out.push(
                    Output::BroadcastDurable(WireMessage::SlotCertificate(certificate)),
                ),
                SlotEffect::Finalized { tx, proof } => {
                    tracing::trace!(txid = %proof.txid, slot = proof.certificate.slot, "final by certificate");
                    applied_any |= self.layer1_final(tx, now, out)?;
                }
                SlotEffect::Refused { voter, why } => {
                    self.dropped(Dropped::BadSignature);
                    // A bad share: the connection that carried it. Anything else: the peer
                    // that sent what was refused.
                    let culprit = match voter {
                        Some(v) => self.share_senders.get(&v).copied(),
                        None => from,
                    };
                    if let Some(peer) = culprit {
                        let reason = match voter {
                            Some(v) => format!("{why} (the share of {v})"),
                            None => why,
                        };
                        self.fault(peer, intake::OVER_CAP_POINTS, reason, out);
                    }
                }
                // New to this node and checked: a few peers get it too, covering whom the
                // aggregator's broadcast missed (the network drops copies it has seen).
                SlotEffect::RelayCertificate(certificate) => {
                    out.push(Output::Relay(WireMessage::SlotCertificate(certificate)))
                }
                // The peer whose certificate named a batch this node missed holds it.
                SlotEffect::FetchBatch { slot, root } => {
                    if let Some(peer) = from {
                        out.push(Output::SendTo(
                            peer,
                            WireMessage::GetSlotBatch { slot, root },
                        ));
                    }
                }
                SlotEffect::ScheduleTick { at } => out.push(Output::Timer {
                    timer: TimerKind::Slot,
                    at,
                }),
            }
        }
        self.after_final(applied_any, now, out)
    }

    /// A peer missed the announcement of a batch it saw certified: the signed announcement,
    /// once per peer and batch (a request is 50 bytes and the answer up to 130 kB, so a
    /// repeat is not answered again).
    pub(super) fn serve_slot_batch(
        &mut self,
        from: PeerId,
        (slot, root): (u64, Hash32),
        now: Millis,
        out: &mut Vec<Output>,
    ) {
        let Some(announcement) = self
            .slots
            .as_ref()
            .and_then(|s| s.announcement(slot, &root))
        else {
            self.dropped(Dropped::Irrelevant);
            return;
        };
        // Batches older than the engine's window are gone from it, so their answers can go too.
        let oldest = slot_at(now).saturating_sub(SLOT_WINDOW);
        self.batches_served = self.batches_served.split_off(&(oldest, Hash32::ZERO, 0));
        if self.batches_served.len() >= MAX_BATCHES_SERVED
            || !self.batches_served.insert((slot, root, from))
        {
            self.dropped(Dropped::Irrelevant);
            return;
        }
        out.push(Output::SendTo(
            from,
            WireMessage::SlotAnnouncement(announcement),
        ));
    }

    /// Whether layer 1 made `txid` final (under either engine).
    pub(super) fn is_layer1_final(&self, txid: &Txid) -> bool {
        self.finality.is_final(txid) || self.slots.as_ref().is_some_and(|s| s.is_final(txid))
    }
}

/// A short description of a slot effect, for trace logs.
fn slot_effect_label(e: &SlotEffect) -> String {
    match e {
        SlotEffect::PersistLock(tx) => format!("lock {}", tx.txid()),
        SlotEffect::SendShare { share, .. } => {
            format!("share slot {} root {}", share.slot, share.root)
        }
        SlotEffect::SendReport { report, .. } => {
            format!(
                "report slot {} cannot lock {}",
                report.slot,
                report.cannot_lock.len()
            )
        }
        SlotEffect::SendAnnouncement {
            to,
            announcement: a,
            ..
        } => {
            format!(
                "announce slot {} n{} txids {} to {} voters",
                a.slot,
                a.narrowing,
                a.txids.len(),
                to.len()
            )
        }
        SlotEffect::BroadcastCertificate(certificate) => {
            format!(
                "certificate slot {} root {}",
                certificate.slot, certificate.root
            )
        }
        SlotEffect::RelayCertificate(certificate) => {
            format!("relay certificate slot {}", certificate.slot)
        }
        SlotEffect::FetchBatch { slot, root } => {
            format!("ask for the announcement of slot {slot} root {root}")
        }
        SlotEffect::Finalized { proof, .. } => format!("final {}", proof.txid),
        SlotEffect::Refused { why, .. } => format!("refused: {why}"),
        SlotEffect::ScheduleTick { at } => format!("tick at {at}"),
    }
}
