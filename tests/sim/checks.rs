//! What a run must leave behind: the end-of-run checks (every honest node at one chain, the
//! stored bodies certified and replayable, liveness after healing) and the report.

use super::*;

impl Sim {
    pub(super) fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.spec.byzantine.is_none())
            .map(|n| {
                n.driver
                    .as_ref()
                    .and_then(|d| d.ledger().height())
                    .unwrap_or(0)
            })
            .collect()
    }

    pub(super) fn final_everywhere(&self, txid: &Txid) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.spec.byzantine.is_none())
            .all(|n| {
                n.finals.contains(txid)
                    || n.driver.as_ref().is_some_and(|d| {
                        d.ledger()
                            .storage()
                            .tx_location(txid)
                            .ok()
                            .flatten()
                            .is_some()
                    })
            })
    }

    /// Every expected transaction final on every honest node, and every honest node at least
    /// two blocks past where the highest was at healing.
    pub(super) fn live(&self, base: &[u64]) -> bool {
        let target = base.iter().max().copied().unwrap_or(0) + 2;
        self.pending_submits == 0
            && self
                .nodes
                .iter()
                .filter(|n| n.spec.byzantine.is_none())
                .all(|n| n.driver.is_some())
            && self.heights().iter().all(|h| *h >= target)
            && self.expected_final.iter().all(|t| self.final_everywhere(t))
    }

    /// Final checks on every honest node's database: certificates and commitments.
    pub(super) fn finish(mut self) -> Result<Report, Violation> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.spec.byzantine.is_some() {
                continue;
            }
            let Some(d) = &node.driver else { continue };
            // The scheduled set changes took effect everywhere.
            for (j, _) in &self.sc.joins {
                let key = self.nodes[*j].key.public_key();
                if !d.set().contains_voter(&key) || !d.finality().set().contains_voter(&key) {
                    return Err(Violation::Liveness(format!("node {i}: {j} never joined")));
                }
            }
            for (l, _) in &self.sc.leaves {
                if d.set().get(&self.nodes[*l].key.public_key()).is_some() {
                    return Err(Violation::Liveness(format!("node {i}: {l} never left")));
                }
            }
            let storage = d.ledger().storage();
            let tip = d.ledger().height().unwrap_or(0);
            for h in 1..=tip {
                let block = storage.block_at(h).ok().flatten();
                let cert = storage.commit_at(h).ok().flatten();
                let set =
                    set_store::load_at(storage, h - 1).map_err(|e| Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    })?;
                let (Some(block), Some(cert)) = (block, cert) else {
                    return Err(Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: "missing".into(),
                    });
                };
                verify_commit(&cert, &set, NETWORK, h, &block.hash()).map_err(|e| {
                    Violation::BadCertificate {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    }
                })?;
                if self.committed.get(&h) != Some(&block.hash()) {
                    return Err(Violation::CommitmentDisagrees { height: h });
                }
            }
            let header = storage.block_at(tip).ok().flatten();
            if header.map(|b| b.header.utxo_commitment) != Some(d.ledger().commitment().digest()) {
                return Err(Violation::CommitmentDisagrees { height: tip });
            }
            if d.ledger().commitment() != d.ledger().recompute_commitment() {
                return Err(Violation::CommitmentDisagrees { height: tip });
            }
        }
        self.check_bodies_and_replay()?;
        let heights = self.heights();
        for h in &heights {
            self.hasher.update(&h.to_le_bytes());
        }
        let mut evidence_against = Vec::new();
        let mut voters = Vec::new();
        for node in self.nodes.iter().filter(|n| n.spec.byzantine.is_none()) {
            let Some(d) = &node.driver else { continue };
            let held = evidence_store::list(d.ledger().storage(), 10_000, false, |_| true)
                .map_err(|e| Violation::NodeFailed {
                    node: 0,
                    error: e.to_string(),
                })?;
            evidence_against.push(held.iter().map(|e| e.offender()).collect());
            voters.push(
                d.set()
                    .members()
                    .filter(|m| m.weight() > 0)
                    .map(|m| m.operator_key)
                    .collect(),
            );
        }
        Ok(Report {
            digest: Hash32(*self.hasher.finalize().as_bytes()),
            heights,
            finalized: self.expected_final.len(),
            events: self.event_count,
            keys: self.nodes.iter().map(|n| n.key.public_key()).collect(),
            evidence_against,
            voters,
            altered: self.altered,
            batch_requests: self.batch_requests,
            batch_answers: self.batch_answers,
            layer1_finals: (self.nodes.iter())
                .map(|n| self.expected_final.intersection(&n.finals).count())
                .collect(),
        })
    }

    pub(super) fn ledger_params() -> LedgerParams {
        LedgerParams {
            network: NETWORK,
            rewards: RewardSchedule {
                initial: Amount(10 * timed::types::ATOMS_PER_TIME),
                halving_interval: 0,
            },
        }
    }

    /// Issue 11 §2: every honest node stored exactly the certified bodies, with signatures
    /// that verify. All honest nodes hold byte-identical blocks at each height, and the
    /// longest chain replays from genesis on a fresh ledger that verifies every signature (it
    /// holds no final transactions, so nothing is taken as already verified).
    pub(super) fn check_bodies_and_replay(&self) -> Result<(), Violation> {
        let mut reference: BTreeMap<u64, (usize, Vec<u8>)> = BTreeMap::new();
        let mut longest: Option<(usize, u64)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.spec.byzantine.is_some() {
                continue;
            }
            let Some(d) = &node.driver else { continue };
            let storage = d.ledger().storage();
            let tip = d.ledger().height().unwrap_or(0);
            if longest.is_none_or(|(_, h)| tip > h) {
                longest = Some((i, tip));
            }
            for h in 1..=tip {
                let Some(block) = storage.block_at(h).ok().flatten() else {
                    continue;
                };
                let bytes = block.to_bytes();
                match reference.get(&h) {
                    Some((other, b)) if *b != bytes => {
                        return Err(Violation::BadBody {
                            node: i,
                            height: h,
                            reason: format!("differs from node {other}'s body"),
                        })
                    }
                    Some(_) => {}
                    None => {
                        reference.insert(h, (i, bytes));
                    }
                }
            }
        }
        let Some((i, tip)) = longest else {
            return Ok(());
        };
        let storage = self.nodes[i]
            .driver
            .as_ref()
            .map(|d| d.ledger().storage().clone());
        let Some(storage) = storage else {
            return Ok(());
        };
        let fail = |height: u64, reason: String| Violation::ReplayFailed {
            node: i,
            height,
            reason,
        };
        let dir = sim_dir();
        let fresh = Storage::open(&dir.path().join("replay"), 16 << 20)
            .map_err(|e| fail(0, e.to_string()))?;
        let ledger =
            Ledger::open(fresh, Self::ledger_params()).map_err(|e| fail(0, e.to_string()))?;
        ledger
            .apply_genesis(&self.genesis.build().0)
            .map_err(|e| fail(0, e.to_string()))?;
        for h in 1..=tip {
            let block = storage.block_at(h).ok().flatten();
            let cert = storage.commit_at(h).ok().flatten();
            let (Some(block), Some(cert)) = (block, cert) else {
                return Err(fail(h, "block or certificate missing".into()));
            };
            for tx in block.transactions.iter().skip(1) {
                tx.verify_signatures(NETWORK)
                    .map_err(|e| Violation::BadBody {
                        node: i,
                        height: h,
                        reason: e.to_string(),
                    })?;
            }
            ledger
                .apply_block(&block, &cert)
                .map_err(|e| fail(h, e.to_string()))?;
        }
        Ok(())
    }
}
