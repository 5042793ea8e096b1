//! Checkpoints on a task of their own: sled flushed now and then, so the log's redo stays
//! short, and no commit waits for sled's flush (see `storage`, "The log is the write-ahead
//! log").

use crate::storage::Storage;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the backlog is looked at.
const TICK: Duration = Duration::from_secs(1);
/// A backlog below the size that makes a checkpoint due is still checkpointed this often, so
/// a restart after a crash has little to apply again.
const AT_LEAST_EVERY: Duration = Duration::from_secs(10);

/// Runs until `shutdown`; the node's own stop flushes and checkpoints last.
pub async fn run(storage: Storage, shutdown: CancellationToken) {
    storage.checkpoint_in_background();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let (groups, _) = storage.redo_backlog();
        if groups == 0 || !(storage.checkpoint_due() || last.elapsed() >= AT_LEAST_EVERY) {
            continue;
        }
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint()).await {
            Ok(Ok(())) => last = Instant::now(),
            // Commits stay durable in the log; only the redo grows until a checkpoint works.
            Ok(Err(e)) => {
                tracing::error!(error = %e, "checkpoint failed: sled could not be flushed; the layer-1 log keeps the redo until it can")
            }
            Err(e) => tracing::error!(error = %e, "the checkpoint task panicked"),
        }
    }
}
