//! What a scrape reads from the running node before it encodes: state, not events, so these
//! values are exact at scrape time instead of accumulated.

use super::{gauge_value, global, ready, DirectionLabel};
use crate::clock::wall_clock_ms;
use crate::node::NodeContext;
use std::path::Path;

/// Samples the node's state into the gauges and encodes every metric as Prometheus text.
pub async fn render(ctx: &NodeContext) -> String {
    sample(ctx).await;
    let mut text = String::new();
    // Writing to a String cannot fail; an error here would be a bug in the encoder.
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut text, &global().registry)
    {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    text
}

async fn sample(ctx: &NodeContext) {
    let m = global();
    if let Some(tip) = ctx.ledger.tip() {
        m.chain_height.set(gauge_value(tip.height));
        let age_ms = wall_clock_ms().saturating_sub(tip.timestamp_ms);
        m.last_block_age.set(age_ms as f64 / 1000.0);
    }
    let state = ctx.consensus.view().state();
    m.consensus_round.set(i64::from(state.round));
    m.mempool_transactions
        .set(gauge_value(state.pool_count as u64));
    m.mempool_bytes.set(gauge_value(state.pool_bytes as u64));
    let queues = ctx.consensus.queue_depths();
    for (queue, n) in [("door", queues.door), ("owner", queues.owner)] {
        m.consensus_queue
            .get_or_create(&super::QueueLabel { queue })
            .set(gauge_value(n as u64));
    }
    let (mut inbound, mut outbound) = (0, 0);
    for p in ctx.network.peer_snapshots() {
        if p.inbound {
            inbound += 1;
        } else {
            outbound += 1;
        }
    }
    for (direction, n) in [("inbound", inbound), ("outbound", outbound)] {
        m.peers.get_or_create(&DirectionLabel { direction }).set(n);
    }
    sample_views(ctx);
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
                Ok(bytes) => {
                    m.database_size.set(gauge_value(bytes));
                }
                Err(e) => tracing::warn!(error = %e, "metrics: cannot read the database size"),
            }
            if let Some(bytes) = memory {
                m.resident_memory.set(gauge_value(bytes));
            }
            match fs {
                Ok((available, size)) => {
                    m.node.disk_available.set(gauge_value(available));
                    m.node.disk_size.set(gauge_value(size));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot read the data directory's filesystem")
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: sampling task failed"),
    }
}

/// Readiness, the masternode weight within reach, the chain's pace and the clock offset:
/// all from published views, none waits on consensus.
fn sample_views(ctx: &NodeContext) {
    let g = &global().node;
    g.ready.set(i64::from(ready::of_node(ctx).is_ok()));
    g.disk_low.set(i64::from(ctx.disk.is_low()));
    g.block_interval
        .set(ctx.params.block_interval_ms as f64 / 1000.0);
    let set = ctx.masternodes.load();
    let voting = set.members().filter(|m| m.weight() > 0).count();
    g.masternodes.set(gauge_value(voting as u64));
    g.masternode_weight.set(gauge_value(set.total_weight()));
    g.masternode_quorum_weight
        .set(gauge_value(set.quorum_weight()));
    let reach = ready::reach(&ctx.node_key, &ctx.network.connected_keys(), &set);
    g.masternodes_connected.set(gauge_value(reach.masternodes));
    g.masternode_connected_weight.set(gauge_value(reach.weight));
    let offset_ms = ctx.network.clock_offset_ms().unwrap_or(0);
    g.clock_offset.set(offset_ms as f64 / 1000.0);
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
