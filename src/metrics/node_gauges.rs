//! The gauges that the shipped alert rules and dashboard (config/prometheus, config/grafana)
//! are built on and that no event feeds: readiness, the masternode weight this node reaches
//! against the quorum, the block interval the chain aims at, the disk under the data
//! directory (and whether the node paused for it), and the clock offset from peers. All are read at scrape time by sample.rs.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

pub(super) struct NodeGauges {
    pub ready: Gauge,
    pub disk_low: Gauge,
    pub block_interval: Gauge<f64, AtomicU64>,
    pub masternodes: Gauge,
    pub masternodes_connected: Gauge,
    pub masternode_weight: Gauge,
    pub masternode_connected_weight: Gauge,
    pub masternode_quorum_weight: Gauge,
    pub disk_available: Gauge,
    pub disk_size: Gauge,
    pub clock_offset: Gauge<f64, AtomicU64>,
}

impl NodeGauges {
    pub fn register(r: &mut Registry) -> NodeGauges {
        let g = NodeGauges {
            ready: Gauge::default(),
            disk_low: Gauge::default(),
            block_interval: Gauge::default(),
            masternodes: Gauge::default(),
            masternodes_connected: Gauge::default(),
            masternode_weight: Gauge::default(),
            masternode_connected_weight: Gauge::default(),
            masternode_quorum_weight: Gauge::default(),
            disk_available: Gauge::default(),
            disk_size: Gauge::default(),
            clock_offset: Gauge::default(),
        };
        let counts: [(&str, &str, Option<Unit>, &Gauge); 9] = [
            (
                "ready",
                "1 when /ready answers 200 (synced and connected to a quorum of masternodes), else 0",
                None,
                &g.ready,
            ),
            (
                "masternodes",
                "Voting masternodes in the set that signs the next block",
                None,
                &g.masternodes,
            ),
            (
                "masternodes_connected",
                "Voting masternodes this node is connected to, itself included",
                None,
                &g.masternodes_connected,
            ),
            (
                "masternode_weight",
                "Voting weight of the whole masternode set",
                None,
                &g.masternode_weight,
            ),
            (
                "masternode_connected_weight",
                "Voting weight of the masternodes this node is connected to, its own included",
                None,
                &g.masternode_connected_weight,
            ),
            (
                "masternode_quorum_weight",
                "Smallest weight that is a quorum (more than two thirds of the set's weight)",
                None,
                &g.masternode_quorum_weight,
            ),
            (
                "disk_available",
                "Space available to timed on the filesystem holding the data directory",
                Some(Unit::Bytes),
                &g.disk_available,
            ),
            (
                "disk_low",
                "1 while the node takes no new work because the data directory's disk has less free space than min_free_disk_mb, else 0",
                None,
                &g.disk_low,
            ),
            (
                "disk_size",
                "Size of the filesystem holding the data directory",
                Some(Unit::Bytes),
                &g.disk_size,
            ),
        ];
        for (name, help, unit, gauge) in counts {
            match unit {
                Some(unit) => r.register_with_unit(name, help, unit, gauge.clone()),
                None => r.register(name, help, gauge.clone()),
            }
        }
        let seconds: [(&str, &str, &Gauge<f64, AtomicU64>); 2] = [
            (
                "block_interval",
                "Time between blocks that the chain aims at (genesis block_interval)",
                &g.block_interval,
            ),
            (
                "clock_offset",
                "Median over connected peers of their clock minus this node's, at their handshakes (0 without peers)",
                &g.clock_offset,
            ),
        ];
        for (name, help, gauge) in seconds {
            r.register_with_unit(name, help, Unit::Seconds, gauge.clone());
        }
        g
    }
}
