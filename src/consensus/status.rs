//! What consensus knows, published for readers that must not queue behind it: the state of
//! the BFT round and the pool, and every pooled transaction with the vote weight it has.
//!
//! ```text
//! consensus task, after each hop ─ touched txids ─► pending (upsert / remove)
//!                                ─ block, timer ──► pending (reconcile with the pool)
//!                                └───────────────► state (ArcSwap: height, round, pool, ...)
//! RPC (getrawtransaction, getmempool*, getconsensusinfo), /metrics ─► read, never wait
//! ```
//!
//! Only the consensus task writes; a reader sees the state as of the last hop, which is what
//! a query through the task's queue answered too, without the wait. A transaction leaves
//! `pending` in the same hop that made it final (the ledger has written it by then), so a
//! reader that looks here first and in the database second never misses one that moves.

use crate::mempool::PoolLimits;
use crate::types::{Amount, PublicKey, Transaction, Txid};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::sync::Arc;

/// The engines' and the pool's state after the last hop.
#[derive(Clone, Debug, Default)]
pub struct ConsensusState {
    /// Height and round the BFT engine is deciding.
    pub height: u64,
    pub round: u32,
    /// The round's step, lower case (`propose`, `prevote`, ...).
    pub step: String,
    /// Who proposes this round.
    pub proposer: Option<PublicKey>,
    /// Vote weight that makes a transaction final in the current set.
    pub quorum_weight: u64,
    pub pool_count: usize,
    pub pool_bytes: usize,
    pub pool_limits: PoolLimits,
}

/// A pooled transaction, waiting for a quorum's votes.
#[derive(Clone, Debug)]
pub struct PendingTx {
    pub tx: Arc<Transaction>,
    pub size: usize,
    pub fee: Amount,
    /// When it entered the pool (Unix seconds).
    pub added_unix: u64,
    /// The vote weight counted for it so far.
    pub weight: u64,
}

/// The published view. Cheap to clone through its `Arc`.
#[derive(Default)]
pub struct ConsensusView {
    state: ArcSwap<ConsensusState>,
    pending: DashMap<Txid, PendingTx>,
}

impl ConsensusView {
    pub fn state(&self) -> Arc<ConsensusState> {
        self.state.load_full()
    }

    pub fn set_state(&self, state: ConsensusState) {
        self.state.store(Arc::new(state));
    }

    /// The pooled transaction `txid`, if it is waiting for votes.
    pub fn pending(&self, txid: &Txid) -> Option<PendingTx> {
        self.pending.get(txid).map(|p| p.clone())
    }

    /// Every pooled transaction (in no particular order).
    pub fn all_pending(&self) -> Vec<(Txid, PendingTx)> {
        self.pending
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }

    pub fn upsert(&self, txid: Txid, entry: PendingTx) {
        self.pending.insert(txid, entry);
    }

    pub fn remove(&self, txid: &Txid) {
        self.pending.remove(txid);
    }

    /// Keeps only the transactions `keep` says are still pooled.
    pub fn retain(&self, mut keep: impl FnMut(&Txid) -> bool) {
        self.pending.retain(|txid, _| keep(txid));
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}
