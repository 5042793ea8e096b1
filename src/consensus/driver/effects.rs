//! Carrying out what the engines decide: the finality engine's effects (locks persisted
//! before votes leave, final transactions into the ledger, certificates published) and the
//! BFT engine's (proposals built and checked, safety state persisted, blocks committed).

use super::*;

impl ConsensusDriver {
    pub(super) fn run_finality(
        &mut self,
        input: FinalityInput,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let effects = self.finality.step(input, now);
        self.run_finality_effects(effects, now, out)
    }

    pub(super) fn run_finality_effects(
        &mut self,
        effects: Vec<FinalityEffect>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let mut applied_any = false;
        for effect in effects {
            match effect {
                FinalityEffect::PersistLock(tx) => match self.ledger.lock_inputs(&tx) {
                    Ok(_) => {}
                    Err(LedgerError::Storage(e)) => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(txid = %tx.txid(), error = %e, "lock refused by the ledger")
                    }
                },
                // Under the slot engine this engine only keeps its books: no vote leaves.
                FinalityEffect::BroadcastVotes(_) if self.slots.is_some() => {}
                FinalityEffect::BroadcastVotes(batch) => {
                    // Persist before you promise: every lock this batch votes on is written
                    // (not yet flushed); the shell flushes before the batch leaves. Every
                    // batch takes that path, resent ones too, so none overtakes a flush.
                    out.push(Output::BroadcastDurable(WireMessage::VoteBatch(batch)));
                }
                FinalityEffect::ScheduleBatchTimer { at } => out.push(Output::Timer {
                    timer: TimerKind::VoteBatch,
                    at,
                }),
                FinalityEffect::Finalized { tx, certificate } => {
                    // A double spend decided: publish the proof, so every node (and a
                    // masternode joining next) learns which side won, including votes a
                    // double-voting masternode showed only to this node.
                    // Durable: it may hold this node's own vote, just cast.
                    if self.finality.is_contested(&tx) {
                        out.push(Output::BroadcastDurable(WireMessage::Finality {
                            tx: Arc::clone(&tx),
                            batches: certificate.batches,
                        }));
                    }
                    applied_any |= self.layer1_final(tx, now, out)?;
                }
                FinalityEffect::Gossip(tx) => out.push(Output::Relay(WireMessage::Transaction(tx))),
                FinalityEffect::VoteEquivocation {
                    outpoint,
                    first,
                    second,
                } => {
                    let voter = second.0.voter;
                    // Stored, gossiped and put in a later block, which removes the voter
                    // from the set (record_evidence logs it).
                    let evidence = crate::types::Evidence::Layer1 {
                        outpoint,
                        first: ((*first.0).clone(), (*first.1).clone()),
                        second: ((*second.0).clone(), (*second.1).clone()),
                    };
                    if let Err(e) = self.record_evidence(evidence, out)? {
                        tracing::warn!(%voter, %outpoint, error = %e, "layer-1 equivocation not kept as evidence");
                    }
                    out.push(Output::Event(NodeEvent::VoteEquivocation {
                        voter,
                        outpoint,
                        first,
                        second,
                    }));
                }
                FinalityEffect::FetchTransaction(txid) => {
                    out.push(Output::Broadcast(WireMessage::GetFinality(txid)))
                }
                FinalityEffect::ConflictDetected {
                    outpoint,
                    first,
                    second,
                } => out.push(Output::Event(NodeEvent::DoubleSpend {
                    outpoint,
                    first,
                    second,
                })),
            }
        }
        self.after_final(applied_any, now, out)
    }

    /// A transaction layer 1 made final (under either engine): out of the pool, into the
    /// ledger. Returns whether the ledger took it.
    pub(super) fn layer1_final(
        &mut self,
        tx: Arc<Transaction>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<bool> {
        self.admission.on_finalized(1, now);
        if let Some(entry) = self.mempool.remove(&tx.txid()) {
            let ms = now.saturating_sub(entry.added_at);
            crate::metrics::finality_latency(ms);
            if self.finalized_after.len() < MAX_PUBLISHED_PROOFS {
                self.finalized_after.insert(entry.txid, ms);
            }
        }
        self.apply_final(tx, now, out)
    }

    /// What final transactions unblock: children waiting for a parent, proposals waiting
    /// for finality.
    pub(super) fn after_final(
        &mut self,
        applied_any: bool,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        // A block or a final parent may have made a waiting child applicable.
        let tip = self.ledger.height();
        if !self.awaiting_parents.is_empty() && (applied_any || tip != self.parents_checked_at) {
            self.parents_checked_at = tip;
            // Each pass applies at least one or stops: chains of children resolve in order.
            loop {
                let waiting = std::mem::take(&mut self.awaiting_parents);
                let mut progress = false;
                for tx in waiting.into_values() {
                    progress |= self.apply_final(tx, now, out)?;
                }
                if !progress || self.awaiting_parents.is_empty() {
                    break;
                }
            }
        }
        if !self.applied_final.is_empty() {
            let newly_final = std::mem::take(&mut self.applied_final);
            self.recheck_awaiting(&newly_final, now, out)?;
        }
        Ok(())
    }

    /// Records a transaction layer 1 made final in the ledger and reports it. `TxFinalized`
    /// follows only the ledger's acceptance: a child whose parent the ledger lacks waits in
    /// `awaiting_parents` (its parent is final elsewhere and arrives by gossip or in a block).
    /// Returns whether the ledger accepted it.
    pub(super) fn apply_final(
        &mut self,
        tx: Arc<Transaction>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<bool> {
        let txid = tx.txid();
        match self.ledger.finalize_shared(&tx, now) {
            Ok(_) | Err(LedgerError::AlreadyConfirmed { .. }) => {
                self.awaiting_parents.remove(&txid);
                out.push(Output::Event(NodeEvent::TxFinalized(txid, Arc::clone(&tx))));
                self.applied_final.push(txid);
                Ok(true)
            }
            Err(LedgerError::Storage(e)) => Err(e.into()),
            Err(LedgerError::MissingInput { outpoint, .. }) => {
                if self.awaiting_parents.len() < MAX_AWAITING_PARENTS {
                    tracing::debug!(%txid, %outpoint, "final transaction waits for its parent");
                    self.awaiting_parents.insert(txid, tx);
                } else {
                    tracing::warn!(
                        %txid, %outpoint,
                        "final transaction dropped: too many wait for parents; block sync brings it"
                    );
                }
                Ok(false)
            }
            Err(e) => {
                tracing::error!(%txid, error = %e, "the ledger refuses a transaction layer 1 made final");
                Ok(false)
            }
        }
    }

    pub(super) fn run_bft(
        &mut self,
        input: BftInput,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let effects = self.bft.step(input, now);
        self.run_bft_effects(effects, now, out)
    }

    pub(super) fn run_bft_effects(
        &mut self,
        effects: Vec<BftEffect>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let mut queue: VecDeque<BftEffect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let mut follow_up = Vec::new();
            match effect {
                // Built beside the owner (`block_jobs`); the engine hears of it when it is.
                BftEffect::BuildProposal { height, round } => {
                    if let Some(request) = self.request_proposal(height, round, now) {
                        out.push(Output::BuildProposal(Box::new(request)));
                    }
                }
                BftEffect::ValidateProposal { height, block } => {
                    if let Some(valid) = self.validate_proposal(&block, out)? {
                        let hash = block.hash();
                        follow_up = self.bft.step(
                            BftInput::ProposalValidity {
                                height,
                                hash,
                                valid,
                            },
                            now,
                        );
                    }
                }
                BftEffect::PersistSafety(state) => {
                    crate::consensus::safety_store::persist(self.ledger.storage(), &state)?;
                }
                // A proposal goes out compact, to a few peers, who pass it on (`compact`).
                BftEffect::Broadcast(ConsensusMessage::Proposal(p))
                | BftEffect::Relay(ConsensusMessage::Proposal(p)) => {
                    if let Some(msg) = self.compact_to_send(&p) {
                        out.push(Output::Relay(msg));
                    }
                }
                BftEffect::Broadcast(ConsensusMessage::Vote(v)) => {
                    out.push(Output::Broadcast(WireMessage::Vote(v)))
                }
                BftEffect::Relay(ConsensusMessage::Vote(v)) => {
                    out.push(Output::Relay(WireMessage::Vote(v)))
                }
                BftEffect::ScheduleTimeout { timeout, at } => out.push(Output::Timer {
                    timer: TimerKind::Bft(timeout),
                    at,
                }),
                BftEffect::Commit { block, certificate } => {
                    let height = block.header.height;
                    let time = block.header.timestamp_ms;
                    self.commit_block(&block, certificate, now, out)?;
                    follow_up = self.bft.step(
                        BftInput::Committed {
                            height,
                            block_time_ms: time,
                            set: Arc::clone(&self.set),
                        },
                        now,
                    );
                }
                BftEffect::Equivocation(pair) => {
                    let (a, b) = *pair;
                    if let Err(e) =
                        self.record_evidence(crate::types::Evidence::layer2(a, b), out)?
                    {
                        tracing::debug!(error = %e, "equivocation seen but not provable");
                    }
                }
                BftEffect::Behind { .. } => {
                    if self
                        .last_sync_request
                        .is_none_or(|last| now >= last + SYNC_RETRY_MS)
                    {
                        self.last_sync_request = Some(now);
                        let from_height = self.ledger.height().map_or(0, |h| h + 1);
                        out.push(Output::Broadcast(WireMessage::GetBlocks { from_height }));
                    }
                }
            }
            queue.extend(follow_up);
        }
        Ok(())
    }

    pub(super) fn recheck_awaiting(
        &mut self,
        newly_final: &[Txid],
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let ready = take_completed(&mut self.awaiting_finality, newly_final, |(_, m)| m);
        for (_, (block, _)) in ready {
            let effects = vec![BftEffect::ValidateProposal {
                height: block.header.height,
                block,
            }];
            self.run_bft_effects(effects, now, out)?;
        }
        self.recheck_compact(newly_final, now, out)
    }
}

/// Takes out of `waiting` the entries whose missing transactions (`missing` of an entry) are
/// all final now that `newly_final` are.
pub(super) fn take_completed<K: Ord + Copy, V>(
    waiting: &mut BTreeMap<K, V>,
    newly_final: &[Txid],
    missing: impl Fn(&mut V) -> &mut BTreeSet<Txid>,
) -> Vec<(K, V)> {
    let mut ready = Vec::new();
    for (key, entry) in waiting.iter_mut() {
        let m = missing(entry);
        for txid in newly_final {
            m.remove(txid);
        }
        if m.is_empty() {
            ready.push(*key);
        }
    }
    ready
        .into_iter()
        .filter_map(|k| waiting.remove(&k).map(|v| (k, v)))
        .collect()
}
