//! Wiring: open the data directory and the database, load the ledger, run until told to stop.
//!
//! Today the node holds its storage and ledger and shuts down cleanly; the network, consensus
//! and RPC tasks join this wiring as they are built.

use crate::ledger::{Ledger, LedgerError, LedgerParams, RewardSchedule};
use crate::storage::{Storage, StorageError};
use crate::types::{Amount, Network};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database")]
    Storage(#[from] StorageError),
    #[error("cannot load the ledger")]
    Ledger(#[from] LedgerError),
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
}

/// Chain rules per network. Rewards: 10 TIME a block, halving every 210,000 blocks.
pub fn ledger_params(network: Network) -> LedgerParams {
    LedgerParams {
        network,
        rewards: RewardSchedule {
            initial: Amount(10 * crate::types::ATOMS_PER_TIME),
            halving_interval: 210_000,
        },
    }
}

/// The running node's shared state.
pub struct Node {
    pub storage: Storage,
    pub ledger: Arc<Ledger>,
}

impl Node {
    /// Creates the data directory if needed and opens the database and ledger. Blocking.
    pub fn open(data_dir: &Path, network: Network) -> Result<Node, NodeError> {
        std::fs::create_dir_all(data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let storage = Storage::open_default(&data_dir.join("db"))?;
        let ledger = Arc::new(Ledger::open(storage.clone(), ledger_params(network))?);
        Ok(Node { storage, ledger })
    }
}

/// Runs the node until SIGINT or SIGTERM, then flushes the database and returns.
pub async fn run(data_dir: PathBuf, network: Network) -> Result<(), NodeError> {
    let dir = data_dir.clone();
    let node = tokio::task::spawn_blocking(move || Node::open(&dir, network))
        .await
        .map_err(|e| NodeError::Signals(std::io::Error::other(e)))??;
    match node.ledger.tip() {
        Some(tip) => tracing::info!(
            height = tip.height,
            hash = %tip.hash,
            utxos = node.ledger.utxo_count(),
            "ledger loaded"
        ),
        None => tracing::info!("ledger is empty (no genesis block yet)"),
    }
    tracing::info!(datadir = %data_dir.display(), %network, "timed running; Ctrl-C to stop");
    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down: flushing the database");
    let storage = node.storage.clone();
    tokio::task::spawn_blocking(move || storage.flush())
        .await
        .map_err(|e| NodeError::Signals(std::io::Error::other(e)))??;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_shutdown_signal() -> Result<(), NodeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(NodeError::Signals)?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.map_err(NodeError::Signals)?;
    Ok(())
}
