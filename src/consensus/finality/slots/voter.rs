//! The voter's side of the slot engine: an announcement answered with a share (the batch
//! locked) or a report (what cannot be locked), after waiting briefly for missing bodies.

use super::*;

impl SlotEngine {
    pub(super) fn on_announcement(
        &mut self,
        a: &Arc<BatchAnnouncement>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let current = slot_at(now);
        let root = a.root();
        // The announcement this node asked for, of a batch already certified: final now,
        // and no share (the quorum is made). The certificate was checked when it came, so
        // the batch is taken whatever set it names: it may be the set before a change this
        // node made meanwhile (how a joiner learns what the old set finalized just before).
        // Its children in the tree saw the certificate too and ask for themselves.
        if let Some((certificate, _)) = self.unannounced.remove(&(a.slot, root)) {
            self.hold_batch(root, a);
            self.keep_certificate(&certificate);
            self.finalize(&certificate, out);
            return;
        }
        if a.set_hash != self.keys.set_hash()
            || a.slot + SLOT_WINDOW < current
            || a.slot > current + SLOT_WINDOW
            || self.keys.aggregator(a.slot) != Some(a.aggregator)
        {
            return;
        }
        // An aggregator announces a batch, its narrowings and a few contested spends per
        // slot; more is a flood (each costs a signature and holds its txids).
        let announced = self.roots_by_slot.get(&a.slot).map_or(0, Vec::len);
        if self.batches.contains_key(&(a.slot, root)) || announced >= MAX_BATCHES_PER_SLOT {
            return;
        }
        for txid in &a.txids {
            self.in_flight.insert(*txid, now + IN_FLIGHT_MS);
        }
        self.hold_batch(root, a);
        // Passed down the slot's tree before this node's own answer, whatever it is (a
        // joiner or a voter that cannot lock the batch still relays it).
        if let Some(me) = self.me() {
            let to =
                self.keys
                    .announce_targets(a.slot, &a.aggregator, &me, self.config.announce_fanout);
            if !to.is_empty() && me != a.aggregator {
                out.push(SlotEffect::SendAnnouncement {
                    to,
                    announcement: Arc::clone(a),
                    past_tree: false,
                });
            }
        }
        self.vote(root, Arc::clone(a), now, false, out);
    }

    /// Keeps an announced batch (by slot and root, expired with its slot): what certificates
    /// finalize and what peers that missed it are sent.
    fn hold_batch(&mut self, root: Hash32, a: &Arc<BatchAnnouncement>) {
        self.batches.insert((a.slot, root), Arc::clone(a));
        self.roots_by_slot.entry(a.slot).or_default().push(root);
    }

    /// Shares the batch if this node can lock all of it, and reports what it cannot otherwise.
    ///
    /// A batch naming bodies this node has not received yet (and no spend it locked the other
    /// way) waits up to [`BODY_WAIT_MS`] for them: a late share costs less than a report,
    /// which may send the whole batch round again (`final_answer` ends the wait).
    pub(super) fn vote(
        &mut self,
        root: Hash32,
        announcement: Arc<BatchAnnouncement>,
        now: Millis,
        final_answer: bool,
        out: &mut Vec<SlotEffect>,
    ) {
        let Some((key, _)) = &self.key else { return };
        let (slot, aggregator) = (announcement.slot, announcement.aggregator);
        let voter = key.public_key();
        if self.keys.position(&voter).is_none()
            || self.shared.contains(&(slot, root))
            || self.is_joiner()
        {
            return;
        }
        let cannot_lock: Vec<Txid> = announcement
            .txids
            .iter()
            .filter(|t| {
                !self.finalized.contains_key(*t) && !self.pending.get(*t).is_some_and(|p| p.locked)
            })
            .copied()
            .collect();
        let only_missing = cannot_lock.iter().all(|t| !self.pending.contains_key(t));
        if !cannot_lock.is_empty()
            && only_missing
            && !final_answer
            && self.deferred.len() < MAX_DEFERRED
        {
            for t in &cannot_lock {
                self.awaited.entry(*t).or_default().push((slot, root));
            }
            self.deferred.insert(
                (slot, root),
                Deferred {
                    announcement,
                    missing: cannot_lock.into_iter().collect(),
                    until: now + BODY_WAIT_MS,
                },
            );
            return;
        }
        let Some((_, bls)) = &self.key else { return };
        if !cannot_lock.is_empty() {
            out.push(SlotEffect::SendReport {
                to: aggregator,
                report: LockReport {
                    set_hash: self.keys.set_hash(),
                    slot,
                    root,
                    voter,
                    cannot_lock,
                },
            });
            return;
        }
        let message = crate::types::slot::share_message(
            self.config.network,
            &self.keys.set_hash(),
            slot,
            &root,
        );
        let share = SlotShare {
            set_hash: self.keys.set_hash(),
            slot,
            root,
            voter,
            signature: bls.sign(&message),
        };
        self.shared.insert((slot, root));
        out.push(SlotEffect::SendShare {
            to: aggregator,
            share,
        });
    }
}
