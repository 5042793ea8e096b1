//! Why the ledger refuses a transaction, a state transition or a block.

use crate::storage::StorageError;
use crate::types::{Amount, BlockError, BlockHash, Hash32, OutPoint, TxError, Txid};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(
        "transaction {txid}: input {outpoint} does not exist (unknown or already spent in a block)"
    )]
    MissingInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid}: input {outpoint} is locked by pending transaction {locked_by}")]
    InputLocked {
        txid: Txid,
        outpoint: OutPoint,
        locked_by: Txid,
    },
    #[error(
        "transaction {txid}: input {outpoint} is already spent by final transaction {spent_by}"
    )]
    InputSpent {
        txid: Txid,
        outpoint: OutPoint,
        spent_by: Txid,
    },
    #[error("transaction {txid} is already final")]
    AlreadyFinal { txid: Txid },
    #[error("transaction {txid} is already confirmed at height {height}")]
    AlreadyConfirmed { txid: Txid, height: u64 },
    #[error("transaction {txid}: input {index}'s public key does not own output {outpoint}")]
    WrongKey {
        txid: Txid,
        index: usize,
        outpoint: OutPoint,
    },
    #[error("transaction {txid}: input amounts overflow")]
    InputOverflow { txid: Txid },
    #[error("transaction {txid}: outputs ({outputs}) exceed inputs ({inputs})")]
    OutputsExceedInputs {
        txid: Txid,
        inputs: Amount,
        outputs: Amount,
    },
    #[error("transaction {txid}: invalid masternode registration: {reason}")]
    BadRegistration { txid: Txid, reason: String },
    #[error(
        "transaction {txid}: collateral {outpoint} is not an output confirmed in an earlier block"
    )]
    CollateralUnconfirmed { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid}: {outpoint} is the collateral of registration {registration}, earlier in this block")]
    CollateralClaimed {
        txid: Txid,
        outpoint: OutPoint,
        registration: Txid,
    },
    #[error("transaction {txid}: input {outpoint} is not confirmed in an earlier block or earlier in this block")]
    UnconfirmedInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid} spends {outpoint}, which final transaction {final_txid} spends: a certified block conflicts with layer-1 finality")]
    ConflictsWithFinal {
        txid: Txid,
        outpoint: OutPoint,
        final_txid: Txid,
    },
    #[error("block at height {got} does not extend the tip: expected height {expected}")]
    NotNextHeight { expected: u64, got: u64 },
    #[error("block {height} names parent {got}, but the tip is {expected}")]
    WrongParent {
        height: u64,
        expected: BlockHash,
        got: BlockHash,
    },
    #[error("block {height}: timestamp {got} ms is not after its parent's {parent} ms")]
    TimestampNotIncreasing { height: u64, parent: u64, got: u64 },
    #[error("block {height}: coinbase pays {got}, the rules allow exactly {expected}")]
    BadCoinbase {
        height: u64,
        expected: Amount,
        got: Amount,
    },
    #[error("block {height}: fees overflow")]
    FeeOverflow { height: u64 },
    #[error("block {height}: header commits to UTXO set {claimed}, applying it gives {computed}")]
    CommitmentMismatch {
        height: u64,
        claimed: Hash32,
        computed: Hash32,
    },
    #[error("block {height}: certificate is for height {cert_height} / block {cert_block}")]
    CertificateMismatch {
        height: u64,
        cert_height: u64,
        cert_block: BlockHash,
    },
    #[error("the ledger already has a genesis block")]
    GenesisExists,
    #[error("the ledger has no genesis block yet")]
    NoGenesis,
    #[error("a snapshot can only replace a ledger that holds just the genesis (tip is {tip})")]
    SnapshotOverChain { tip: u64 },
    #[error(
        "the UTXO set on disk ({outputs} outputs) does not match the chain tip at height \
         {height}: the tip commits to {claimed}, the stored outputs to {computed}. The database \
         is damaged: restore the data directory from a backup (`timed restore`), or move it \
         aside and let the node sync again"
    )]
    StoredSetMismatch {
        height: u64,
        outputs: u64,
        claimed: Hash32,
        computed: Hash32,
    },
}

impl LedgerError {
    /// True when the error proves the sender broke a rule no honest node breaks (as opposed
    /// to a race such as a conflicting spend or a missing input that may simply be late).
    pub fn is_peer_fault(&self) -> bool {
        match self {
            LedgerError::Tx(_)
            | LedgerError::Block(_)
            | LedgerError::WrongKey { .. }
            | LedgerError::InputOverflow { .. }
            | LedgerError::OutputsExceedInputs { .. }
            | LedgerError::BadRegistration { .. }
            | LedgerError::BadCoinbase { .. }
            | LedgerError::FeeOverflow { .. }
            | LedgerError::CommitmentMismatch { .. }
            | LedgerError::TimestampNotIncreasing { .. } => true,
            LedgerError::Storage(_)
            | LedgerError::MissingInput { .. }
            | LedgerError::InputLocked { .. }
            | LedgerError::InputSpent { .. }
            | LedgerError::AlreadyFinal { .. }
            | LedgerError::AlreadyConfirmed { .. }
            | LedgerError::UnconfirmedInput { .. }
            | LedgerError::CollateralUnconfirmed { .. }
            | LedgerError::CollateralClaimed { .. }
            | LedgerError::ConflictsWithFinal { .. }
            | LedgerError::NotNextHeight { .. }
            | LedgerError::WrongParent { .. }
            | LedgerError::CertificateMismatch { .. }
            | LedgerError::GenesisExists
            | LedgerError::NoGenesis
            | LedgerError::SnapshotOverChain { .. }
            | LedgerError::StoredSetMismatch { .. } => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, LedgerError>;
