//! Transactions into consensus: a local submit (the admission limit first), a peer's
//! transaction (relayed when the pool took it, its sender scored when only a misbehaving node
//! would send it), and the one path both take into the pool and the layer-1 engines.
//!
//! ```text
//! submit ─► backlog over the admission limit, or blocks far behind layer 1? ─yes─► "mempool full"
//!   │                                        peer transaction ─► accept ─ok─► relay to a few peers
//!   ▼                                                                  └─ peer's fault ─► points
//! accept: final / pooled / in a block already? ─► engine has room for one more rival?
//!   ─► signatures (unless the door checked them) ─► pool ─► engines, when the pool took it,
//!      a quorum vouches for it, or it is a rival that pays the fee
//! ```

use super::*;

impl ConsensusDriver {
    /// A transaction from a local client (RPC or wallet): verified, pooled, voted on, and
    /// broadcast. The pool's verdict is returned so the client hears why it was refused;
    /// while the pool holds more than a backlog window of finality (`mempool::admission`),
    /// the verdict is "mempool full" before any work is done.
    pub fn submit_transaction(
        &mut self,
        tx: Transaction,
        now: Millis,
    ) -> (std::result::Result<Txid, PoolError>, Result<Vec<Output>>) {
        self.submit(Arc::new(tx), None, now)
    }

    /// [`Self::submit_transaction`] for a transaction whose structure and signatures the
    /// door already checked (`consensus::door`): none is checked again here.
    pub fn submit_verified(
        &mut self,
        vtx: VerifiedTx,
        now: Millis,
    ) -> (std::result::Result<Txid, PoolError>, Result<Vec<Output>>) {
        self.submit(Arc::clone(vtx.tx()), Some(vtx), now)
    }

    fn submit(
        &mut self,
        tx: Arc<Transaction>,
        pre: Option<VerifiedTx>,
        now: Millis,
    ) -> (std::result::Result<Txid, PoolError>, Result<Vec<Output>>) {
        let mut out = Vec::new();
        let txid = tx.txid();
        let refusal = self.blocks_behind(&txid).or_else(|| {
            let limit = self.admission.limit(now);
            let pending = self.mempool.len();
            (pending >= limit).then_some(PoolError::Backlogged {
                txid,
                pending,
                limit,
            })
        });
        if let Some(refusal) = refusal {
            // Already final or pooled is still the answer for those (not "try again").
            if !self.is_layer1_final(&txid) && !self.mempool.contains(&txid) {
                crate::metrics::mempool_rejected(refusal.reason_label());
                return (Err(refusal), Ok(out));
            }
        }
        let verdict = self.accept_transaction(Arc::clone(&tx), pre, now, &mut out);
        match verdict {
            Ok(Ok(txid)) => {
                out.push(Output::Broadcast(WireMessage::Transaction(tx)));
                (Ok(txid), Ok(out))
            }
            Ok(Err(e)) => (Err(e), Ok(out)),
            Err(fatal) => (Ok(tx.txid()), Err(fatal)),
        }
    }

    /// A transaction from peer `from` whose structure and signatures the door already checked
    /// (`consensus::door`).
    pub fn on_verified_transaction(
        &mut self,
        from: PeerId,
        vtx: VerifiedTx,
        now: Millis,
    ) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        if self.ignores(from) {
            return Ok(out);
        }
        let tx = Arc::clone(vtx.tx());
        self.relay_peer_transaction(from, tx, Some(vtx), now, &mut out)?;
        Ok(out)
    }

    /// Pools a peer's transaction and relays it if the pool took it.
    pub(super) fn relay_peer_transaction(
        &mut self,
        from: PeerId,
        tx: Arc<Transaction>,
        pre: Option<VerifiedTx>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        if self
            .accept_peer_transaction(from, Arc::clone(&tx), pre, now, out)?
            .is_ok()
        {
            out.push(Output::Relay(WireMessage::Transaction(tx)));
        }
        Ok(())
    }

    /// [`Self::accept_transaction`] for a peer's transaction: a verdict only a misbehaving
    /// sender earns (`PoolError::is_peer_fault`) scores points toward its ban.
    pub(super) fn accept_peer_transaction(
        &mut self,
        from: PeerId,
        tx: Arc<Transaction>,
        pre: Option<VerifiedTx>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<std::result::Result<Txid, PoolError>> {
        let verdict = self.accept_transaction(tx, pre, now, out)?;
        if let Err(e) = &verdict {
            if e.is_peer_fault() {
                self.fault(from, intake::INVALID_TX_POINTS, e.to_string(), out);
            }
        }
        Ok(verdict)
    }

    /// Verifies and pools a transaction, then hands it to the finality engine. The outer
    /// result is a storage failure; the inner one the pool's verdict. A transaction that
    /// conflicts with a pending one still reaches the engine (a quorum may have chosen it),
    /// but only if the engine has room for another rival of its inputs (asked before any
    /// signature is checked) and it pays the minimum fee rate like any other.
    pub(super) fn accept_transaction(
        &mut self,
        tx: Arc<Transaction>,
        pre: Option<VerifiedTx>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<std::result::Result<Txid, PoolError>> {
        let txid = tx.txid();
        if self.is_layer1_final(&txid) {
            let source = Box::new(LedgerError::AlreadyFinal { txid });
            return Ok(Err(PoolError::Ledger { txid, source }));
        }
        if self.mempool.contains(&txid) {
            return Ok(Err(PoolError::AlreadyInPool { txid }));
        }
        // In a block already (the engine forgot it): said before any signature is checked,
        // and the same answer however often it is asked.
        if let Some(loc) = self.ledger.confirmed_location(&tx, &txid)? {
            let source = Box::new(LedgerError::AlreadyConfirmed {
                txid,
                height: loc.height,
            });
            return Ok(Err(PoolError::Ledger { txid, source }));
        }
        match self.finality.admits(&tx) {
            Ok(()) => {}
            Err(Refusal::TooManyRivals { outpoint, existing }) => {
                return Ok(Err(PoolError::Conflict {
                    txid,
                    outpoint,
                    existing,
                }))
            }
            Err(Refusal::Full) => {
                return Ok(Err(PoolError::PoolFull {
                    txid,
                    fee_rate: 0,
                    lowest: 0,
                }))
            }
        }
        let checked = match pre {
            Some(v) => Ok(v),
            None => Mempool::verify(self.cfg.network, (*tx).clone()),
        };
        let verified = match checked {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let verdict = match self.mempool.insert(verified, &self.ledger, now) {
            Ok(_) => Ok(txid),
            Err(e) => Err(e),
        };
        let rival = match &verdict {
            Ok(_) => Some(false),
            Err(PoolError::Conflict { .. }) => Some(true),
            Err(PoolError::Ledger { source, .. })
                if matches!(**source, LedgerError::InputLocked { .. }) =>
            {
                Some(true)
            }
            Err(_) => None,
        };
        // A quorum's votes vouch for it whatever this pool says (a parent it lacks, a rival
        // of what it locked): the engine needs the body to finalize it.
        let feed = self.finality.has_quorum(&txid)
            || match rival {
                Some(false) => true,
                Some(true) => self.rival_pays_fee(&tx),
                None => false,
            };
        tracing::trace!(%txid, ?verdict, feed, "transaction received");
        if feed {
            let input = self.finality_input(Arc::clone(&tx));
            self.run_finality(input, now, out)?;
            if self.slots.is_some() {
                let input = self.slot_input(tx);
                self.run_slots(input, None, now, out)?;
            }
        }
        Ok(verdict)
    }

    /// Refuses a local submit while more transactions are final and waiting for a block than
    /// [`FINAL_BACKLOG_BLOCKS`] blocks hold. Layer 1 can finalize faster than blocks confirm (a
    /// block carries at most `max_block_txs`); what is final must stay in memory until a block
    /// takes it, so without this bound a sustained flood above the blocks' rate grew every
    /// node's memory without end (1.1 GB after 30 s at 11,000 tx/s on one node), and with it
    /// every pass over the final set (block building, regossip). Every transaction enters the
    /// network through some node's submit, so honest nodes bounding their own clients bound the
    /// network's backlog. Peers' transactions are not refused here: a refused relay comes back
    /// as the answer to this node's own `GetFinality` once the others vote for it, and refusing
    /// those answers could keep a proposal from ever filling in (a bound on what a peer injects
    /// needs the replies matched to requests; not done). A transaction a quorum already vouches
    /// for is taken: the engine needs its body.
    fn blocks_behind(&self, txid: &Txid) -> Option<PoolError> {
        let limit = FINAL_BACKLOG_BLOCKS.saturating_mul(self.cfg.max_block_txs.max(1));
        let waiting = self.ledger.final_count();
        (waiting >= limit && !self.finality.has_quorum(txid)).then_some(PoolError::BlocksBehind {
            txid: *txid,
            waiting,
            limit,
        })
    }

    /// The policy a pooled transaction meets, for a rival the pool refused as a conflict (its
    /// fee was never computed): every input exists, belongs to the signing key and is not
    /// spent by a final transaction, and the fee meets the pool's minimum rate.
    fn rival_pays_fee(&self, tx: &Transaction) -> bool {
        let txid = tx.txid();
        let mut inputs = crate::types::Amount::ZERO;
        for input in &tx.inputs {
            let Some(rec) = self.ledger.utxo(&input.prev_out) else {
                return false;
            };
            let spendable = match rec.state {
                UtxoState::Unspent | UtxoState::Locked(_) => true,
                UtxoState::SpentFinalized(by) => by == txid,
            };
            if !spendable || input.public_key.key_hash() != rec.entry.output.key_hash {
                return false;
            }
            match inputs.checked_add(rec.entry.output.amount) {
                Some(sum) => inputs = sum,
                None => return false,
            }
        }
        let Some(fee) = tx.total_output().and_then(|o| inputs.checked_sub(o)) else {
            return false;
        };
        let size = tx.encoded_len() as u64;
        fee.0 >= self.mempool.limits().min_fee_rate.saturating_mul(size)
    }
}
