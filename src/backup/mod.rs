//! Backups of the whole database and UTXO snapshots at a certified height, as files.
//!
//! ```text
//! timed backup ──RPC `backup`──► node: state trees copied between two consensus inputs,
//!                                 history (≤ that height) copied after ─► FILE
//!      (node stopped: the same, on the data directory opened directly)
//! timed restore  FILE ─► temp dir: records written, checksum + tip + commitment checked ─► rename
//! timed snapshot export ──RPC `dumptxoutset`──► headers 1..=T + UTXO set at T ─► FILE
//! timed snapshot import  FILE ─► HeaderChain from genesis (fast sync's checks) ─► commitment
//!                                 ─► ConsensusDriver::import_snapshot in a temp dir ─► rename
//! ```
//!
//! Both files share one container (`container.rs`): magic, version, header, LZ4 chunks and a
//! BLAKE3 checksum of everything. Nothing is installed before the checksum and every content
//! check passed, and installing is a rename, so a bad file changes nothing.

pub mod command;
pub mod container;
pub mod dump;
pub mod files;
pub mod progress;
pub mod restore;
pub mod snapshot;

use crate::consensus::driver::DriverError;
use crate::consensus::set_store::SetStoreError;
use crate::ledger::LedgerError;
use crate::storage::StorageError;
use container::FormatError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("masternode sets: {0}")]
    SetStore(#[from] SetStoreError),
    #[error("consensus: {0}")]
    Driver(#[from] DriverError),
    #[error("{0} already exists; choose a new file name (a backup never overwrites a file)")]
    Exists(PathBuf),
    #[error(
        "{0} already holds a database; restore into a new data directory, or pass --force to \
         replace it (the old one is kept beside it)"
    )]
    TargetInUse(PathBuf),
    #[error("no database at {0}: is this the node's data directory?")]
    NoDatabase(PathBuf),
    #[error("the database holds no chain yet")]
    NoTip,
    #[error("the file is corrupt: {0}")]
    Content(String),
    #[error("the file does not match its own header: {0}")]
    Mismatch(String),
    #[error("the snapshot does not verify: {0}")]
    Verify(String),
    #[error("the file is for {found}, this node is configured for {expected}")]
    WrongChain { found: String, expected: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Rpc(#[from] crate::client::ClientError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

pub type Result<T> = std::result::Result<T, BackupError>;

/// Adds the path to an I/O error.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}
