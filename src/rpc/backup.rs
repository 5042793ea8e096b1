//! Admin methods that write files on the node's machine: `backup "path"` (the whole database,
//! consistent at one height) and `dumptxoutset "path"` (Bitcoin's name: the UTXO set at the
//! tip with the certified headers to it). Like bitcoind's `backupwallet`, the path is on the
//! server, so it must be absolute, and an existing file is never overwritten.
//!
//! The consistent part of each copy runs on the consensus task through
//! `ConsensusHandle::query` (no write can happen meanwhile); the rest is written on the
//! blocking pool. One such job runs at a time.

use super::error::{err, internal, RpcResult, INVALID_PARAMETER, MISC_ERROR};
use crate::backup::{dump, snapshot, BackupError};
use crate::node::NodeContext;
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set while a backup or snapshot is being written: one at a time per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears `RUNNING` however the job ends.
struct JobSlot;

impl JobSlot {
    fn take() -> RpcResult<JobSlot> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| JobSlot)
            .map_err(|_| err(MISC_ERROR, "a backup or snapshot is already being written"))
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_async_method("backup", |p, ctx, _| async move {
        let path = destination(p)?;
        let _slot = JobSlot::take()?;
        let network = ctx.params.network;
        tracing::info!(path = %path.display(), "backup requested over RPC");
        let capture = ctx
            .consensus
            .query(move |d| dump::capture_state(d.ledger().storage(), network))
            .await
            .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?
            .map_err(failed)?;
        let storage = ctx.storage.clone();
        let summary = tokio::task::spawn_blocking(move || {
            dump::write_backup_file(&storage, capture, &path, false)
        })
        .await
        .map_err(internal)?
        .map_err(failed)?;
        serde_json::to_value(summary).map_err(internal)
    })?;
    m.register_async_method("dumptxoutset", |p, ctx, _| async move {
        let path = destination(p)?;
        let _slot = JobSlot::take()?;
        tracing::info!(path = %path.display(), "UTXO snapshot requested over RPC");
        let (tip, entries) = ctx
            .consensus
            .query(|d| d.ledger().snapshot_entries())
            .await
            .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?;
        let tip = tip.ok_or_else(|| err(MISC_ERROR, "the node has no chain yet"))?;
        let (storage, network) = (ctx.storage.clone(), ctx.params.network);
        let summary = tokio::task::spawn_blocking(move || {
            snapshot::write_snapshot_file(&storage, network, &tip, &entries, &path)
        })
        .await
        .map_err(internal)?
        .map_err(failed)?;
        serde_json::to_value(summary).map_err(internal)
    })?;
    Ok(())
}

/// The one parameter: an absolute path on the node's machine that does not exist yet.
fn destination(p: Params<'static>) -> RpcResult<PathBuf> {
    let text: String = p.sequence().next().map_err(super::error::invalid_param)?;
    let path = PathBuf::from(&text);
    if !path.is_absolute() {
        return Err(err(
            INVALID_PARAMETER,
            format!("{text:?}: the path must be absolute (it is on the node's machine)"),
        ));
    }
    if path.exists() {
        return Err(err(
            INVALID_PARAMETER,
            format!("{text} already exists; a backup never overwrites a file"),
        ));
    }
    Ok(path)
}

fn failed(e: BackupError) -> jsonrpsee::types::ErrorObjectOwned {
    err(MISC_ERROR, e.to_string())
}
