//! Wiring: open the data directory, the database and the ledger, start consensus, the P2P
//! network and the RPC server as supervised tokio tasks, and stop them all in order.
//!
//! ```text
//!  signals / RPC stop ──► shutdown token ──► every loop ends
//!  consensus service ◄──deliver── network ◄── peers        (Transport: consensus ──► network)
//!        │ events (commits, finality)
//!        └──► follower: network height + masternode targets, logs
//!  RPC ──reads──► storage, ledger, consensus.query, network
//! ```
//!
//! The consensus service is critical: if it fails, the node cannot keep its promises, so it
//! stops with the error. Shutdown stops the RPC server first (no new work), then the network
//! and consensus, then flushes the database.

mod checkpoints;
mod disk_fault;
mod disk_guard;
mod fast_sync;
pub mod shutdown;
pub mod status;
pub mod systemd;

use crate::context::{DiskStatus, NodeContext, SyncProgress};
pub use disk_fault::{classify, DiskFault, LostData, CLEAN_STOP_FILE};

use crate::clock::wall_clock_ms;
use crate::config::keyfile::{self, KeyFileError};
use crate::config::{ExplorerPlace, NodeParams};
use crate::consensus::bft::BftConfig;
use crate::consensus::driver::{
    ConsensusDriver, DriverConfig, DriverError, NodeEvent, MAX_BLOCK_TXS,
};
use crate::consensus::service;
use crate::consensus::{set_store, MasternodeSet};
use crate::ledger::{Ledger, LedgerError, LedgerParams};
use crate::network::manager::{NetworkError, NetworkParams, NetworkService, NetworkTransport};
use crate::storage::{DataDirLock, LockError, Storage, StorageError};
use crate::types::{PublicKey, SecretKey};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often sync progress is sampled (and logged while behind).
pub const SYNC_REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits for tasks before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("node key: {0}")]
    Key(#[from] KeyFileError),
    #[error("cannot open the database: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot load the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("consensus: {0}")]
    Consensus(#[from] DriverError),
    #[error("consensus stopped unexpectedly")]
    ConsensusEnded,
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    #[error(transparent)]
    Metrics(#[from] status::MetricsError),
    #[error(transparent)]
    Explorer(#[from] crate::explorer::ExplorerError),
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
    #[error("a startup task failed: {0}")]
    Join(String),
    #[error("cannot load the masternode set: {0}")]
    SetStore(#[from] crate::consensus::set_store::SetStoreError),
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
    #[error(transparent)]
    Lost(#[from] LostData),
}

impl NodeError {
    /// The process's exit status: a disk fault's own (see [`DiskFault::exit_code`]), else 1.
    pub fn exit_code(&self) -> u8 {
        classify(self).map_or(1, DiskFault::exit_code)
    }
}

/// The transaction pool's limits (the same for every node: fee policy is network-wide).
fn pool_limits() -> crate::mempool::PoolLimits {
    crate::mempool::PoolLimits::default()
}

/// Reads the node key, or creates it on first start.
pub fn load_or_create_key(path: &std::path::Path) -> Result<SecretKey, KeyFileError> {
    if path.exists() {
        return keyfile::read(path);
    }
    let key = SecretKey::generate();
    keyfile::write_new(path, &key)?;
    tracing::info!(path = %path.display(), key = %key.public_key(), "created a new node key");
    Ok(key)
}

fn masternode_targets(set: &MasternodeSet) -> Vec<(PublicKey, String)> {
    set.members()
        .filter(|m| m.tier.weight() > 0)
        .map(|m| (m.operator_key, m.p2p_addr.clone()))
        .collect()
}

struct Opened {
    storage: Storage,
    ledger: Arc<Ledger>,
    driver: ConsensusDriver,
    initial: Vec<crate::consensus::driver::Output>,
    key: SecretKey,
}

/// Blocking: the data directory and its lock, the key, the database, the ledger and the
/// consensus driver.
fn open(params: &NodeParams, status: &dyn Fn(&str)) -> Result<Opened, NodeError> {
    let key = load_or_create_key(&params.node_key)?;
    status("opening the database");
    let db = params.datadir.join("db");
    let storage = Storage::open(&db, params.db_cache)?;
    disk_fault::check_clean_stop(&db, &storage)?;
    status("loading the UTXO set");
    let ledger = Arc::new(Ledger::open(
        storage.clone(),
        LedgerParams::of(params.network),
    )?);
    let cfg = DriverConfig {
        network: params.network,
        key: Some(key.clone()),
        finality: params.finality_config(),
        bft: BftConfig::new(params.network, params.block_interval_ms),
        pool: pool_limits(),
        max_block_txs: MAX_BLOCK_TXS,
    };
    status("starting consensus");
    let (driver, initial) =
        ConsensusDriver::open(cfg, Arc::clone(&ledger), &params.genesis, wall_clock_ms())?;
    Ok(Opened {
        storage,
        ledger,
        driver,
        initial,
        key,
    })
}

/// Runs the node until SIGINT, SIGTERM or RPC `stop`, then shuts down in order.
pub async fn run(params: NodeParams) -> Result<(), NodeError> {
    let offset_ms = crate::clock::test_offset_ms()?;
    if offset_ms != 0 {
        tracing::warn!(
            offset_ms,
            "{} is set: this node's wall clock is shifted (testing only)",
            crate::clock::TEST_OFFSET_ENV
        );
    }
    // Before anything else in the directory: a second node must not even read the key.
    let p = params.clone();
    let lock = tokio::task::spawn_blocking(move || claim_datadir(&p))
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
    let (cookie, cookie_path) =
        crate::rpc::auth::write_cookie(&params.datadir).map_err(|source| NodeError::DataDir {
            path: params.datadir.join(crate::client::COOKIE_FILE),
            source,
        })?;
    let user_password = params
        .rpc_user
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let credentials = Arc::new(crate::rpc::auth::Credentials::new(
        &cookie,
        user_password,
        &params.rpc_auth,
    ));
    // The RPC port answers from now on: "warming up" (-28) until the node is ready.
    let rpc = match crate::rpc::listen(&params, credentials).await {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&cookie_path);
            return Err(e.into());
        }
    };
    let result = serve(params, &rpc, &cookie_path).await;
    // On an early failure the RPC server and the cookie go too (a second stop is harmless).
    shutdown::wait_for("RPC requests in flight", SHUTDOWN_GRACE, rpc.stop()).await;
    let _ = std::fs::remove_file(&cookie_path);
    drop(lock);
    result
}

/// Creates the data directory and takes its lock.
fn claim_datadir(params: &NodeParams) -> Result<DataDirLock, NodeError> {
    std::fs::create_dir_all(&params.datadir).map_err(|source| NodeError::DataDir {
        path: params.datadir.clone(),
        source,
    })?;
    Ok(DataDirLock::acquire(&params.datadir)?)
}

/// Opens everything, serves until told to stop, and stops in order.
async fn serve(
    params: NodeParams,
    rpc: &crate::rpc::Listening,
    cookie_path: &std::path::Path,
) -> Result<(), NodeError> {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let p = params.clone();
    let status = rpc.status_setter();
    let opened = tokio::task::spawn_blocking(move || open(&p, &*status))
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
    let Opened {
        storage,
        ledger,
        driver,
        initial,
        key,
    } = opened;
    let tip = ledger
        .tip()
        .ok_or(NodeError::Ledger(LedgerError::NoGenesis))?;
    let genesis = storage
        .block_hash_at(0)?
        .ok_or(NodeError::Ledger(LedgerError::NoGenesis))?;
    let set = Arc::clone(driver.set());
    let am_masternode = set.contains_voter(&key.public_key());

    let network = NetworkService::new(
        NetworkParams {
            network: params.network,
            genesis,
            key: key.clone(),
            listen: params.listen,
            advertise: params.advertise.clone(),
            seeds: params.peers.clone(),
            limits: params.limits.clone(),
        },
        shutdown.clone(),
        tasks.clone(),
    );
    network.set_height(tip.height);
    network.set_masternodes(masternode_targets(&set));
    let transport = Arc::new(NetworkTransport(Arc::clone(&network)));
    let (consensus, mut consensus_task) =
        service::spawn(driver, initial, transport, shutdown.clone(), &tasks);
    // Before the network brings work: a node started on a full disk takes none.
    let disk = Arc::new(DiskStatus::default());
    let mut guard = disk_guard::DiskGuard::new(
        params.datadir.clone(),
        params.min_free_disk,
        Arc::clone(&disk),
        consensus.clone(),
    );
    let guard = tokio::task::spawn_blocking(move || {
        guard.check();
        guard
    })
    .await
    .map_err(|e| NodeError::Join(e.to_string()))?;
    tasks.spawn(guard.run(shutdown.clone()));
    tasks.spawn(checkpoints::run(storage.clone(), shutdown.clone()));
    network.attach_consensus(consensus.clone());
    network.attach_sync_server(Arc::new(crate::network::sync_server::SyncServer::new(
        Arc::clone(&ledger),
        consensus.finality_proofs(),
        shutdown.clone(),
        tasks.clone(),
    )));
    let fast_sync = if tip.height == 0 && params.fast_sync_after > 0 {
        let (to, replies) = tokio::sync::mpsc::channel(fast_sync::REPLY_QUEUE);
        network.begin_fast_sync(to);
        let genesis_set =
            MasternodeSet::new(0, set_store::load_at(&storage, 0)?.members().cloned());
        Some((replies, genesis_set))
    } else {
        None
    };
    network.start().await?;

    let ctx = Arc::new(NodeContext {
        params: params.clone(),
        node_key: key.public_key(),
        storage: storage.clone(),
        ledger: Arc::clone(&ledger),
        consensus,
        network: Arc::clone(&network),
        sync: SyncProgress::default(),
        masternodes: ArcSwap::new(set),
        shutdown: shutdown.clone(),
        started: Instant::now(),
        pool_limits: pool_limits(),
        disk,
    });
    let methods = match rpc.open(Arc::clone(&ctx)) {
        Ok(m) => m,
        Err(e) => {
            shutdown.cancel();
            return Err(e.into());
        }
    };
    let explorer =
        start_explorer(&params, &methods, &shutdown, &tasks).inspect_err(|_| shutdown.cancel())?;
    let http = status::start(Arc::clone(&ctx), explorer, &tasks)
        .await
        .inspect_err(|_| shutdown.cancel())?;
    let rpc_addr = rpc.addr;
    tasks.spawn(follow_events(Arc::clone(&ctx)));
    tasks.spawn(report_sync(Arc::clone(&ctx)));
    if let Some(every) = systemd::watchdog_interval() {
        tasks.spawn(systemd::watchdog(Arc::clone(&ctx), every));
    }
    if let Some((replies, genesis_set)) = fast_sync {
        tasks.spawn(fast_sync::run(
            Arc::clone(&ctx),
            replies,
            genesis,
            genesis_set,
            params.fast_sync_after,
            rpc.warmup(),
        ));
    }
    tracing::info!(
        network = %params.network,
        datadir = %params.datadir.display(),
        height = tip.height,
        node_key = %key.public_key(),
        masternode = am_masternode,
        rpc = %rpc_addr,
        metrics = ?http.metrics,
        explorer = ?explorer_url(&params, &http),
        cookie = %cookie_path.display(),
        p2p = ?params.listen,
        "timed running"
    );
    // The database is open and the RPC port is bound: clients can connect now.
    systemd::ready(&format!(
        "running at block {}, RPC on {rpc_addr}",
        tip.height
    ));

    let (ended, signal_error) = tokio::select! {
        r = wait_for_shutdown_signal() => (None, r.err()),
        _ = shutdown.cancelled() => (None, None),
        r = &mut consensus_task => (Some(r), None),
    };
    // Consensus ending on its own, even without an error, is a failure: nothing asked it to.
    // (Checked before this node cancels the token itself: RPC `stop` cancels it too.)
    let consensus_ended_alone = ended.is_some() && !shutdown.is_cancelled();
    let stopping = Instant::now();
    tracing::info!("shutting down");
    systemd::stopping();
    shutdown.cancel();
    shutdown::wait_for("RPC requests in flight", SHUTDOWN_GRACE, rpc.stop()).await;
    // The cookie is only valid while the node runs.
    let _ = std::fs::remove_file(cookie_path);
    tasks.close();
    shutdown::wait_for(
        "the network, sync server, metrics and consensus helper tasks",
        SHUTDOWN_GRACE,
        tasks.wait(),
    )
    .await;
    let consensus_result = match ended {
        Some(r) => r,
        // The consensus task finishes the batch it is running (its writes land whole).
        None => shutdown::wait_for("the consensus task", SHUTDOWN_GRACE, consensus_task)
            .await
            .unwrap_or(Ok(Ok(()))),
    };
    // Flush whatever happened: committed state must reach the disk even after a failure.
    let flushing = storage.clone();
    let flush =
        tokio::task::spawn_blocking(move || flushing.flush().and_then(|()| flushing.checkpoint()))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?;
    match consensus_result {
        Err(join) => return Err(NodeError::Join(join.to_string())),
        Ok(Err(e)) => {
            let e = NodeError::Consensus(e);
            match classify(&e) {
                Some(fault) => {
                    tracing::error!(error = %e, what_to_do = %fault.remedy(&params.datadir),
                    "consensus failed: the node stopped without voting further")
                }
                None => tracing::error!(error = %e, "consensus failed; the node stopped"),
            }
            return Err(e);
        }
        Ok(Ok(())) if consensus_ended_alone => return Err(NodeError::ConsensusEnded),
        Ok(Ok(())) => {}
    }
    flush?;
    // Flushed and stopped cleanly: the next start can tell whether the database lost data.
    let db = params.datadir.join("db");
    let marked = tokio::task::spawn_blocking(move || disk_fault::write_clean_stop(&db, &storage))
        .await
        .map_err(|e| NodeError::Join(e.to_string()))?;
    if let Err(e) = marked {
        tracing::warn!(error = %e, "cannot write the clean-stop mark");
    }
    if let Some(e) = signal_error {
        return Err(e);
    }
    tracing::info!(
        ms = stopping.elapsed().as_millis() as u64,
        "stopped cleanly"
    );
    Ok(())
}

/// The block explorer and where it is served, unless it is off (or rides on a metrics port
/// that is off).
fn start_explorer(
    params: &NodeParams,
    methods: &jsonrpsee::Methods,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Option<status::ExplorerSite>, NodeError> {
    let own_port = match params.explorer {
        ExplorerPlace::Off => return Ok(None),
        ExplorerPlace::Metrics if params.metrics_bind.is_none() => return Ok(None),
        ExplorerPlace::Metrics => None,
        ExplorerPlace::Own(addr) => Some(addr),
    };
    let explorer_params = crate::explorer::ExplorerParams {
        rate_limit: params.explorer_rate_limit,
    };
    let explorer =
        crate::explorer::Explorer::start(methods, explorer_params, shutdown.clone(), tasks)?;
    Ok(Some(status::ExplorerSite { explorer, own_port }))
}

/// The explorer's address for the log line.
fn explorer_url(params: &NodeParams, http: &status::Bound) -> Option<String> {
    let at = match params.explorer {
        ExplorerPlace::Off => None,
        ExplorerPlace::Metrics => http.metrics,
        ExplorerPlace::Own(_) => http.explorer,
    };
    at.map(|a| format!("http://{a}{}/", crate::explorer::PREFIX))
}

/// Follows consensus events: keeps the network's height and masternode targets current and
/// logs what an operator wants to see.
async fn follow_events(ctx: Arc<NodeContext>) {
    let mut events = ctx.consensus.subscribe();
    loop {
        let event = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(NodeEvent::BlockCommitted { height, hash, .. }) => {
                ctx.network.set_height(height);
                let storage = ctx.storage.clone();
                let set =
                    tokio::task::spawn_blocking(move || set_store::load_at(&storage, height)).await;
                match set {
                    Ok(Ok(set)) => {
                        if set.hash() != ctx.masternodes.load().hash() {
                            tracing::info!(
                                height,
                                masternodes = set.len(),
                                "masternode set changed"
                            );
                            ctx.network.set_masternodes(masternode_targets(&set));
                            ctx.masternodes.store(Arc::new(set));
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::error!(height, error = %e, "cannot load the masternode set")
                    }
                    Err(e) => tracing::error!(height, error = %e, "masternode set task failed"),
                }
                if !ctx.sync.snapshot(height).syncing {
                    tracing::info!(height, %hash, "block committed");
                } else {
                    tracing::debug!(height, %hash, "block applied from sync");
                }
            }
            Ok(NodeEvent::TxsFinalized(txs)) => {
                for (txid, _) in txs.iter() {
                    tracing::debug!(%txid, "transaction final");
                }
            }
            Ok(NodeEvent::DoubleSpend {
                outpoint,
                first,
                second,
            }) => tracing::warn!(
                %outpoint, %first, %second,
                "conflicting spends of one output (the owner signed both); its coins stay locked"
            ),
            Ok(NodeEvent::VoteEquivocation {
                voter, outpoint, ..
            }) => tracing::warn!(
                %voter, %outpoint,
                "masternode signed layer-1 votes for two spends of one output (evidence kept in the event)"
            ),
            Ok(NodeEvent::Equivocation {
                validator,
                height,
                round,
            }) => tracing::warn!(
                %validator, height, round, "masternode signed two different votes"
            ),
            // Faults and misbehaviour points are delivered to the network by the consensus
            // service itself (`Transport::punish`/`penalize`), losslessly; this follower may
            // lag and miss events. Single finals never come here: the service merges them
            // into `TxsFinalized`.
            Ok(
                NodeEvent::PeerFault { .. }
                | NodeEvent::PeerMisbehaved { .. }
                | NodeEvent::TxFinalized(..),
            ) => {}
            Ok(NodeEvent::PeerHeight { peer, height }) => {
                ctx.network.peer_proved_height(peer, height)
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "event follower lagged");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Samples sync progress, logs it while the node is behind its peers, and shows it in
/// `systemctl status`.
async fn report_sync(ctx: Arc<NodeContext>) {
    let mut tick = tokio::time::interval(SYNC_REPORT_EVERY);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        ctx.sync.set_target(ctx.network.best_peer_height());
        let height = ctx.ledger.height().unwrap_or(0);
        let s = ctx.sync.sample(height, Instant::now());
        systemd::status(&systemd::sync_status(height, &s, ctx.network.peer_count()));
        if s.syncing {
            tracing::info!(
                height,
                target = s.target,
                blocks_per_sec = format!("{:.1}", s.blocks_per_sec),
                seconds_left = ?s.seconds_left,
                "syncing"
            );
        }
    }
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
