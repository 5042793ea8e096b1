//! What every part of the running node can reach: `NodeContext`, the shared, read-mostly
//! views and handles that `node` builds at start and hands to the RPC server, the status port
//! and its own tasks. Its own module, below `rpc` and `node`, so the RPC server reads the node
//! without importing the code that wires it.

mod disk_status;
mod sync_progress;

pub use disk_status::DiskStatus;
pub use sync_progress::{SyncProgress, SyncSnapshot, SYNCED_WITHIN};

use crate::config::NodeParams;
use crate::consensus::service::ConsensusHandle;
use crate::consensus::MasternodeSet;
use crate::ledger::Ledger;
use crate::mempool::PoolLimits;
use crate::network::manager::NetworkService;
use crate::storage::Storage;
use crate::types::PublicKey;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every part of the running node can reach: shared, read-mostly views and handles.
pub struct NodeContext {
    pub params: NodeParams,
    pub node_key: PublicKey,
    pub storage: Storage,
    pub ledger: Arc<Ledger>,
    pub consensus: ConsensusHandle,
    pub network: Arc<NetworkService>,
    pub sync: SyncProgress,
    /// The masternode set that signs the next block, replaced once per committed block.
    pub masternodes: ArcSwap<MasternodeSet>,
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// The pool's limits and minimum fee, as consensus runs them.
    pub pool_limits: PoolLimits,
    /// Free space on the data directory's disk, and whether the node paused for it.
    pub disk: Arc<DiskStatus>,
}

impl NodeContext {
    pub fn is_masternode(&self, key: &PublicKey) -> bool {
        self.masternodes.load().contains_voter(key)
    }
}
