//! What a scrape reads from the running node before it encodes: state, not events, so these
//! values are exact at scrape time instead of accumulated. Readiness, the masternode weight
//! within reach, the chain's pace and the clock offset come from published views: nothing
//! here waits on consensus.

use super::ready;
use crate::clock::wall_clock_ms;
use crate::context::NodeContext;
use crate::metrics::{self, NodeSample};
use std::path::Path;

/// Samples the node's state into the gauges and encodes every metric as Prometheus text.
pub async fn render(ctx: &NodeContext) -> String {
    metrics::record(&sample(ctx).await);
    metrics::encode()
}

async fn sample(ctx: &NodeContext) -> NodeSample {
    let tip = ctx.ledger.tip().map(|tip| {
        let age_ms = wall_clock_ms().saturating_sub(tip.timestamp_ms);
        (tip.height, age_ms as f64 / 1000.0)
    });
    let state = ctx.consensus.view().state();
    let queues = ctx.consensus.queue_depths();
    let (mut inbound, mut outbound) = (0, 0);
    for p in ctx.network.peer_snapshots() {
        if p.inbound {
            inbound += 1;
        } else {
            outbound += 1;
        }
    }
    let set = ctx.masternodes.load();
    let reach = ready::reach(&ctx.node_key, &ctx.network.connected_keys(), &set);
    let mut sample = NodeSample {
        tip,
        round: state.round,
        pool_transactions: state.pool_count as u64,
        pool_bytes: state.pool_bytes as u64,
        door_queue: queues.door as u64,
        owner_queue: queues.owner as u64,
        inbound_peers: inbound,
        outbound_peers: outbound,
        ready: ready::of_node(ctx).is_ok(),
        disk_low: ctx.disk.is_low(),
        block_interval_s: ctx.params.block_interval_ms as f64 / 1000.0,
        masternodes: set.members().filter(|m| m.weight() > 0).count() as u64,
        masternode_weight: set.total_weight(),
        quorum_weight: set.quorum_weight(),
        masternodes_connected: reach.masternodes,
        connected_weight: reach.weight,
        clock_offset_s: ctx.network.clock_offset_ms().unwrap_or(0) as f64 / 1000.0,
        ..NodeSample::default()
    };
    let storage = ctx.storage.clone();
    let datadir = ctx.params.datadir.clone();
    let disk = tokio::task::spawn_blocking(move || {
        (
            storage.size_on_disk(),
            resident_memory(),
            filesystem(&datadir),
        )
    });
    match disk.await {
        Ok((size, memory, fs)) => {
            match size {
                Ok(bytes) => sample.database_bytes = Some(bytes),
                Err(e) => tracing::warn!(error = %e, "metrics: cannot read the database size"),
            }
            sample.resident_bytes = memory;
            match fs {
                Ok(disk) => sample.disk = Some(disk),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot read the data directory's filesystem")
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: sampling task failed"),
    }
    sample
}

/// Bytes available to this (unprivileged) process and the size of the filesystem holding
/// `datadir`.
fn filesystem(datadir: &Path) -> std::io::Result<(u64, u64)> {
    Ok((fs2::available_space(datadir)?, fs2::total_space(datadir)?))
}

/// This process's resident set size in bytes, if the OS tells it.
fn resident_memory() -> Option<u64> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map(|p| p.memory())
}
