//! Finality from certificates: a peer's certificate or proof checked against the set, and
//! every transaction of a certified batch that this node holds made final.

use super::*;

impl SlotEngine {
    /// Whether `certificate` holds under this node's set (and the set before a fresh change).
    /// One that does not is refused as the sender's fault, except around a set change: an
    /// honest certificate may name the set before, or come from an aggregator whose change
    /// window closed a block before this node's did (not usable here; the block confirms its
    /// transactions).
    fn usable(&self, certificate: &SlotCertificate, out: &mut Vec<SlotEffect>) -> bool {
        match self
            .keys
            .check_joint(self.prev_keys.as_deref(), certificate, self.config.network)
        {
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
        txids: Arc<Vec<Txid>>,
        now: Millis,
        out: &mut Vec<SlotEffect>,
    ) {
        let key = (certificate.slot, certificate.root);
        let current = slot_at(now);
        if self.certificates.contains_key(&key)
            || certificate.slot + SLOT_WINDOW < current
            || certificate.slot > current + SLOT_WINDOW
            || txids.is_empty()
            || txids.len() > MAX_SLOT_TXIDS
        {
            return;
        }
        // The txids travel beside the certificate, unsigned: the batch's own when this node
        // holds it (so it never relays a stranger's list), else checked against the root.
        let txids = match self.batches.get(&key) {
            Some(batch) => Arc::clone(&batch.txids),
            None if batch_root(&txids) == certificate.root => txids,
            None => {
                out.push(SlotEffect::Refused {
                    voter: None,
                    why: format!(
                        "certificate of slot {} with txids of another batch",
                        certificate.slot
                    ),
                });
                return;
            }
        };
        if !self.usable(certificate, out) {
            return;
        }
        self.aggregating
            .retain(|a| !(a.slot == certificate.slot && a.collector.root() == certificate.root));
        out.push(SlotEffect::RelayCertificate {
            certificate: Arc::clone(certificate),
            txids: Arc::clone(&txids),
        });
        if !self.batches.contains_key(&key) {
            let Some(aggregator) = self.keys.aggregator(certificate.slot) else {
                return;
            };
            self.batches.insert(key, Batch { txids, aggregator });
            self.roots_by_slot
                .entry(certificate.slot)
                .or_default()
                .push(certificate.root);
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
        let txids = Arc::clone(&batch.txids);
        let tree = MerkleTree::new(&txids);
        for (index, txid) in txids.iter().enumerate() {
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
