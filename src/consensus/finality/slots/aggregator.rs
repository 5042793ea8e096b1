//! The aggregator's side of the slot engine: a batch announced at its slot, shares summed
//! into a certificate, reports narrowing the batch when its quorum is out of reach.

use super::*;

impl SlotEngine {
    pub(super) fn on_tick(&mut self, now: Millis, out: &mut Vec<SlotEffect>) {
        let slot = slot_at(now);
        self.expire(slot, now);
        // Batches that waited long enough for bodies: answered with what is here.
        let due: Vec<(u64, Hash32)> = self
            .deferred
            .iter()
            .filter(|(_, d)| now >= d.until)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(d) = self.deferred.remove(&key) {
                for t in &d.missing {
                    if let Some(w) = self.awaited.get_mut(t) {
                        w.retain(|k| *k != key);
                        if w.is_empty() {
                            self.awaited.remove(t);
                        }
                    }
                }
                self.vote(key.1, d.announcement, now, true, out);
            }
        }
        self.send_to_unheard(now, out);
        let Some(me) = self.me() else { return };
        if self.last_announced == Some(slot) || self.keys.aggregator(slot) != Some(me) {
            return;
        }
        // Outpoints two pending transactions claim: a spend of one of them may be locked
        // the other way by some voters, and would hold up a whole batch.
        let mut claims: HashMap<OutPoint, u32> = HashMap::new();
        for p in self.pending.values() {
            for op in p.tx.claimed_outpoints() {
                *claims.entry(op).or_default() += 1;
            }
        }
        let mut batch = Vec::new();
        let mut contested = Vec::new();
        for (txid, p) in &self.pending {
            let ready = p.locked
                && now >= p.since + self.config.settle_ms
                && self.in_flight.get(txid).is_none_or(|until| now >= *until);
            if !ready {
                continue;
            }
            if p.tx
                .claimed_outpoints()
                .any(|op| claims.get(&op).is_some_and(|n| *n > 1))
            {
                if contested.len() < MAX_CONTESTED_BATCHES {
                    contested.push(*txid);
                }
            } else if batch.len() < MAX_SLOT_TXIDS {
                batch.push(*txid);
            }
        }
        if batch.is_empty() && contested.is_empty() {
            return;
        }
        self.last_announced = Some(slot);
        if !batch.is_empty() {
            self.announce(slot, 0, batch, now, out);
        }
        // Each contested spend alone: it is final only if a quorum locked this side, and the
        // voters that locked the other cannot hold up anything else.
        for txid in contested {
            self.announce(slot, 0, vec![txid], now, out);
        }
    }

    /// Batches of this node's that reached no quorum in [`ANNOUNCE_FALLBACK_MS`]: sent once,
    /// directly, to every voter that has neither shared nor reported (a silent or slow relay
    /// of the tree may have kept it from them). Costs the burst the tree avoids only when
    /// relays fail, and only for those they failed.
    fn send_to_unheard(&mut self, now: Millis, out: &mut Vec<SlotEffect>) {
        let keys = Arc::clone(&self.keys);
        let me = self.me();
        for agg in &mut self.aggregating {
            if agg.fallback_sent || now < agg.announced_at + ANNOUNCE_FALLBACK_MS {
                continue;
            }
            agg.fallback_sent = true;
            let to: Vec<PublicKey> = keys
                .voters()
                .iter()
                .map(|v| v.operator_key)
                .filter(|v| {
                    Some(*v) != me && !agg.collector.has(&keys, v) && !agg.reports.contains_key(v)
                })
                .collect();
            if !to.is_empty() {
                out.push(SlotEffect::SendAnnouncement {
                    to,
                    announcement: Arc::clone(&agg.announcement),
                    past_tree: true,
                });
            }
        }
    }

    /// Signs and sends an announcement, and starts collecting its shares (this node's own
    /// among them).
    pub(super) fn announce(
        &mut self,
        slot: u64,
        narrowings: u32,
        txids: Vec<Txid>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let Some((key, _)) = &self.key else { return };
        let announcement = Arc::new(BatchAnnouncement::sign(
            key,
            self.config.network,
            self.keys.set_hash(),
            (slot, narrowings),
            txids,
        ));
        let root = announcement.root();
        self.aggregating.push(Aggregation {
            slot,
            narrowings,
            members: announcement.txids.iter().copied().collect(),
            announcement: Arc::clone(&announcement),
            collector: ShareCollector::new(&self.keys, self.config.network, slot, root),
            reports: BTreeMap::new(),
            announced_at: now,
            fallback_sent: false,
        });
        let me = key.public_key();
        let to = self
            .keys
            .announce_targets(slot, &me, &me, self.config.announce_fanout);
        out.push(SlotEffect::SendAnnouncement {
            to,
            announcement: Arc::clone(&announcement),
            past_tree: false,
        });
        // This node votes on its own batch as any voter does, and counts its own share here
        // (its locks were persisted when the transactions came, before any send).
        let mut own = Vec::new();
        self.on_announcement(&announcement, now, &mut own);
        for effect in own {
            match effect {
                SlotEffect::SendShare { to, share } if Some(to) == self.me() => {
                    self.on_share(share, now, out);
                }
                other => out.push(other),
            }
        }
    }

    pub(super) fn on_share(&mut self, share: SlotShare, now: Millis, out: &mut Vec<SlotEffect>) {
        if share.set_hash != self.keys.set_hash() {
            return;
        }
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == share.slot && a.collector.root() == share.root)
        else {
            return;
        };
        if let Err(e) = agg.collector.add(&keys, &share.voter, share.signature) {
            if matches!(e, ShareError::NotAVoter(_) | ShareError::UnusableKey(_)) {
                out.push(SlotEffect::Refused {
                    voter: Some(share.voter),
                    why: e.to_string(),
                });
            }
            return;
        }
        let certification = agg.collector.certify(&keys, self.prev_keys.as_deref());
        for voter in certification.bad {
            out.push(SlotEffect::Refused {
                voter: Some(voter),
                why: format!("share of slot {} did not check", share.slot),
            });
        }
        if let Some(certificate) = certification.certificate {
            let certificate = Arc::new(certificate);
            self.aggregating
                .retain(|a| !(a.slot == share.slot && a.collector.root() == share.root));
            out.push(SlotEffect::BroadcastCertificate(Arc::clone(&certificate)));
            self.keep_certificate(&certificate);
            self.finalize(&certificate, out);
        } else {
            self.maybe_narrow(share.slot, share.root, now, out);
        }
    }

    pub(super) fn on_report(&mut self, report: LockReport, now: Millis, out: &mut Vec<SlotEffect>) {
        if report.set_hash != self.keys.set_hash() || self.keys.position(&report.voter).is_none() {
            return;
        }
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == report.slot && a.collector.root() == report.root)
        else {
            return;
        };
        if agg.collector.has(&keys, &report.voter) {
            return;
        }
        let in_batch: BTreeSet<Txid> = report
            .cannot_lock
            .iter()
            .filter(|t| agg.members.contains(t))
            .copied()
            .collect();
        if in_batch.is_empty() {
            return;
        }
        agg.reports.insert(report.voter, in_batch);
        self.maybe_narrow(report.slot, report.root, now, out);
    }

    /// When the voters that reported leave too little weight for a quorum on the batch,
    /// announces it again without the txids that keep the most weight out, removing only
    /// as many as the quorum needs. The reports carry over (restricted to what is left), so
    /// a voter that reported stays counted out of the txids it named.
    pub(super) fn maybe_narrow(
        &mut self,
        slot: u64,
        root: Hash32,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let keys = Arc::clone(&self.keys);
        let Some(agg) = self
            .aggregating
            .iter()
            .find(|a| a.slot == slot && a.collector.root() == root)
        else {
            return;
        };
        let reported: u64 = agg.reports.keys().map(|v| keys.weight_of(v)).sum();
        if keys.has_quorum(keys.total_weight().saturating_sub(reported))
            || agg.narrowings >= MAX_NARROWINGS
        {
            return;
        }
        // Most-reported first (weight of the reporters), ties by txid; who reported each.
        let mut against: BTreeMap<Txid, (u64, Vec<&PublicKey>)> = BTreeMap::new();
        for (voter, txids) in &agg.reports {
            for t in txids {
                let entry = against.entry(*t).or_default();
                entry.0 += keys.weight_of(voter);
                entry.1.push(voter);
            }
        }
        let mut order: Vec<(Txid, (u64, Vec<&PublicKey>))> = against.into_iter().collect();
        order.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        // Remove txids until the voters left able to lock the rest weigh a quorum: a voter
        // becomes able when the last txid it reported is gone (counted down, once each).
        let mut left: HashMap<&PublicKey, usize> =
            agg.reports.iter().map(|(v, t)| (v, t.len())).collect();
        let mut able = keys.total_weight().saturating_sub(reported);
        let mut removed: BTreeSet<Txid> = BTreeSet::new();
        for (txid, (_, reporters)) in order {
            removed.insert(txid);
            for voter in reporters {
                if let Some(n) = left.get_mut(voter) {
                    *n -= 1;
                    if *n == 0 {
                        able += keys.weight_of(voter);
                    }
                }
            }
            if keys.has_quorum(able) {
                break;
            }
        }
        let rest: Vec<Txid> = agg
            .announcement
            .txids
            .iter()
            .filter(|t| !removed.contains(t))
            .copied()
            .collect();
        let narrowings = agg.narrowings + 1;
        let carried: BTreeMap<PublicKey, BTreeSet<Txid>> = agg
            .reports
            .iter()
            .map(|(v, cannot)| (*v, cannot.difference(&removed).copied().collect()))
            .filter(|(_, cannot): &(PublicKey, BTreeSet<Txid>)| !cannot.is_empty())
            .collect();
        self.aggregating
            .retain(|a| !(a.slot == slot && a.collector.root() == root));
        if rest.is_empty() {
            return;
        }
        let next_root = batch_root(&rest);
        self.announce(slot, narrowings, rest, now, out);
        if let Some(next) = self
            .aggregating
            .iter_mut()
            .find(|a| a.slot == slot && a.collector.root() == next_root)
        {
            next.reports = carried;
        }
    }
}
