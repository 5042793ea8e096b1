//! Finality from certificates: a peer's certificate or proof checked against the set, and
//! every transaction of a certified batch that this node holds made final.

use super::*;

impl SlotEngine {
    /// Whether `certificate` holds under this node's set (and the set before a fresh change).
    /// One that does not is refused as the sender's fault, except around a set change: an
    /// honest certificate may name the set before, or come from an aggregator whose change
    /// window closed a block before this node's did (not usable here; the block confirms its
    /// transactions).
    ///
    /// While a change's window is open, a certificate of the set before counts too, checked
    /// against that set alone: a quorum of it locked the batch, and a certificate of the new
    /// set needs a quorum of the set before as well in the window, so the two overlap in an
    /// honest member. This is how a node that switched sets learns what the old set made
    /// final just before the change; a joiner must, before its window closes and its weight
    /// counts alone. After the window such a certificate proves nothing here (the new set
    /// alone may have decided the rival).
    fn usable(&self, certificate: &SlotCertificate, out: &mut Vec<SlotEffect>) -> bool {
        let checked = match self.prev_keys.as_deref() {
            Some(prev) if certificate.set_hash == prev.set_hash() => {
                prev.check(certificate, self.config.network)
            }
            prev => self
                .keys
                .check_joint(prev, certificate, self.config.network),
        };
        match checked {
            Ok(()) => true,
            Err(CertificateError::WrongSet { .. } | CertificateError::NoPreviousQuorum { .. }) => {
                false
            }
            Err(e) => {
                out.push(SlotEffect::Refused {
                    voter: None,
                    why: e.to_string(),
                });
                false
            }
        }
    }

    pub(super) fn on_certificate(
        &mut self,
        certificate: &Arc<SlotCertificate>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let key = (certificate.slot, certificate.root);
        let current = slot_at(now);
        if self.certificates.contains_key(&key)
            || certificate.slot + SLOT_WINDOW < current
            || certificate.slot > current + SLOT_WINDOW
        {
            return;
        }
        // Checked already, waiting for its announcement: another sender to ask, a few times
        // (the copy is the same certificate, so its signature needs no second check).
        if let Some((held, asked)) = self.unannounced.get_mut(&key) {
            if **held == **certificate && *asked < MAX_BATCH_FETCHES {
                *asked += 1;
                out.push(SlotEffect::FetchBatch {
                    slot: key.0,
                    root: key.1,
                });
            }
            return;
        }
        if !self.usable(certificate, out) {
            return;
        }
        self.aggregating
            .retain(|a| !(a.slot == certificate.slot && a.collector.root() == certificate.root));
        out.push(SlotEffect::RelayCertificate(Arc::clone(certificate)));
        if !self.batches.contains_key(&key) {
            if self.unannounced.len() >= MAX_UNANNOUNCED_CERTIFICATES {
                return;
            }
            self.unannounced.insert(key, (Arc::clone(certificate), 1));
            out.push(SlotEffect::FetchBatch {
                slot: key.0,
                root: key.1,
            });
            return;
        }
        self.keep_certificate(certificate);
        self.finalize(certificate, out);
    }

    /// A proof from a peer: the certificate checked against the set (and the set before a
    /// fresh change), the txid's path to its root; then the transaction is final here too.
    pub(super) fn on_proven(
        &mut self,
        tx: Arc<Transaction>,
        proof: &Arc<SlotFinalityProof>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let txid = tx.txid();
        if self.finalized.contains_key(&txid) || proof.txid != txid {
            return;
        }
        if !proof.path_holds() {
            out.push(SlotEffect::Refused {
                voter: None,
                why: format!("finality proof of {txid} whose path does not lead to its root"),
            });
            return;
        }
        if !self.usable(&proof.certificate, out) {
            return;
        }
        if !self.pending.contains_key(&txid) {
            self.on_transaction(Arc::clone(&tx), false, now, out);
        }
        let Some(p) = self.pending.remove(&txid) else {
            return;
        };
        self.certified.remove(&txid);
        self.mark_final(p.tx, Arc::clone(proof), out);
    }

    /// Records `tx` final with `proof` and says so.
    pub(super) fn mark_final(
        &mut self,
        tx: Arc<Transaction>,
        proof: Arc<SlotFinalityProof>,
        out: &mut Vec<SlotEffect>,
    ) {
        let txid = proof.txid;
        // A certificate outranks this node's lock: a quorum locked this spend.
        for op in tx.claimed_outpoints() {
            self.locks.insert(op, txid);
        }
        self.in_flight.remove(&txid);
        self.finalized.insert(txid, Arc::clone(&proof));
        out.push(SlotEffect::Finalized { tx, proof });
    }

    /// Keeps a checked certificate for the batch's window, so a body that comes later is
    /// final on arrival.
    pub(super) fn keep_certificate(&mut self, certificate: &Arc<SlotCertificate>) {
        let key = (certificate.slot, certificate.root);
        self.certificates.insert(key, Arc::clone(certificate));
    }

    /// Every transaction of a checked certificate's batch that this node holds is final.
    pub(super) fn finalize(
        &mut self,
        certificate: &Arc<SlotCertificate>,
        out: &mut Vec<SlotEffect>,
    ) {
        let Some(batch) = self.batches.get(&(certificate.slot, certificate.root)) else {
            return;
        };
        let batch = Arc::clone(batch);
        let tree = MerkleTree::new(&batch.txids);
        for (index, txid) in batch.txids.iter().enumerate() {
            if self.finalized.contains_key(txid) {
                continue;
            }
            let Some(p) = self.pending.remove(txid) else {
                if self.certified.len() < MAX_CERTIFIED_WITHOUT_BODY {
                    self.certified
                        .insert(*txid, (certificate.slot, certificate.root));
                }
                continue;
            };
            let Some(path) = tree.path(index) else {
                continue;
            };
            let proof = Arc::new(SlotFinalityProof {
                txid: *txid,
                path,
                certificate: (**certificate).clone(),
            });
            self.mark_final(p.tx, proof, out);
        }
    }
}
