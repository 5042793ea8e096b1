//! Why the pool refuses a transaction.

use crate::ledger::LedgerError;
use crate::types::{OutPoint, TxError, Txid};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("transaction {txid} is already in the pool")]
    AlreadyInPool { txid: Txid },
    #[error("transaction {txid} was rejected recently: {reason}")]
    RecentlyRejected { txid: Txid, reason: String },
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction {txid}: {source}")]
    Ledger {
        txid: Txid,
        #[source]
        source: Box<LedgerError>,
    },
    #[error("transaction {txid} spends {outpoint}, which pending transaction {existing} already spends (first seen wins)")]
    Conflict {
        txid: Txid,
        outpoint: OutPoint,
        existing: Txid,
    },
    #[error("transaction {txid}: fee rate {fee_rate} atoms/byte is below the minimum of {min}")]
    FeeTooLow { txid: Txid, fee_rate: u64, min: u64 },
    #[error("transaction {txid}: the pool is full and its fee rate {fee_rate} milli-atoms/byte does not beat the lowest in the pool ({lowest})")]
    PoolFull {
        txid: Txid,
        fee_rate: u64,
        lowest: u64,
    },
    /// Admission control (`mempool::admission`): local submits wait for the backlog to drain.
    #[error("mempool full: {pending} transactions are waiting for finality, about a second of it at the network's recent rate (limit {limit}); transaction {txid} was not taken, try again shortly")]
    Backlogged {
        txid: Txid,
        pending: usize,
        limit: usize,
    },
    /// Admission control: layer 1 made final more than blocks have room to confirm soon;
    /// new transactions wait until blocks catch up (final ones must stay in memory).
    #[error("mempool full: {waiting} final transactions are waiting for a block, more than the next blocks hold (limit {limit}); transaction {txid} was not taken, try again shortly")]
    BlocksBehind {
        txid: Txid,
        waiting: usize,
        limit: usize,
    },
}

impl PoolError {
    /// The verdict's label in `timed_mempool_rejections_total`: a closed set, so the metric's
    /// series stay bounded whatever is submitted.
    pub fn reason_label(&self) -> &'static str {
        match self {
            PoolError::AlreadyInPool { .. } => "already_known",
            PoolError::RecentlyRejected { .. } => "recently_rejected",
            PoolError::Invalid(_) => "invalid",
            PoolError::Conflict { .. } => "conflict",
            PoolError::FeeTooLow { .. } => "fee_too_low",
            PoolError::PoolFull { .. } => "pool_full",
            PoolError::Backlogged { .. } => "backlogged",
            PoolError::BlocksBehind { .. } => "blocks_behind",
            PoolError::Ledger { source, .. } => match **source {
                LedgerError::MissingInput { .. }
                | LedgerError::UnconfirmedInput { .. }
                | LedgerError::CollateralUnconfirmed { .. } => "missing_input",
                LedgerError::InputLocked { .. } => "input_locked",
                LedgerError::InputSpent { .. } | LedgerError::ConflictsWithFinal { .. } => {
                    "input_spent"
                }
                LedgerError::AlreadyFinal { .. } | LedgerError::AlreadyConfirmed { .. } => {
                    "already_known"
                }
                LedgerError::Storage(_) => "internal",
                _ => "invalid",
            },
        }
    }

    /// True when only a misbehaving sender could have sent this.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            PoolError::Invalid(_) => true,
            PoolError::Ledger { source, .. } => source.is_peer_fault(),
            PoolError::AlreadyInPool { .. }
            | PoolError::RecentlyRejected { .. }
            | PoolError::Conflict { .. }
            | PoolError::FeeTooLow { .. }
            | PoolError::PoolFull { .. }
            | PoolError::Backlogged { .. }
            | PoolError::BlocksBehind { .. } => false,
        }
    }

    /// Whether to remember the txid as rejected: only for verdicts that cannot change by
    /// waiting (a missing input may arrive, a conflicting pending spend may be dropped).
    pub(super) fn is_permanent(&self) -> bool {
        match self {
            PoolError::Invalid(_) | PoolError::FeeTooLow { .. } => true,
            PoolError::Ledger { source, .. } => {
                matches!(
                    **source,
                    LedgerError::InputSpent { .. } | LedgerError::AlreadyConfirmed { .. }
                ) || source.is_peer_fault()
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, PoolError>;
