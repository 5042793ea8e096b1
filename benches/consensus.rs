//! Consensus throughput in the seeded simulation, without faults: layer-1 transactions
//! finalized per second of CPU (4 and 10 masternodes, votes batched), and BFT heights
//! committed per second of CPU. Every node runs the real driver on a real (tmpfs) sled
//! database; the network and clock are simulated, so wall time here is CPU time.
//!
//! Run: `cargo bench --bench consensus`

#[path = "../tests/sim/mod.rs"]
mod sim;

use sim::{Scenario, Sim};
use std::time::Instant;
use timed::types::Tier;

fn layer1(nodes: usize, transfers: usize) {
    let mut sc = Scenario::calm(42, &vec![Tier::Bronze; nodes]);
    sc.transfers = transfers;
    sc.double_spends = 0;
    sc.genesis_outputs = transfers;
    // All transfers arrive within 200 ms of virtual time: a burst the batches absorb.
    sc.submit_span = 200;
    let started = Instant::now();
    let report = Sim::new(sc).run().expect("calm network is live");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "layer1/{nodes}_masternodes: {} transfers final on all nodes in {:.2} s CPU = {:.0} tx/s (heights {:?})",
        report.finalized,
        secs,
        report.finalized as f64 / secs,
        report.heights
    );
}

fn bft(nodes: usize) {
    let mut sc = Scenario::calm(43, &vec![Tier::Bronze; nodes]);
    sc.transfers = 0;
    sc.double_spends = 0;
    sc.block_interval = 0;
    sc.liveness_deadline = 60_000;
    let started = Instant::now();
    let report = Sim::new(sc)
        .run_until_height(100)
        .expect("calm network is live");
    let secs = started.elapsed().as_secs_f64();
    let heights = report.heights.iter().min().copied().unwrap_or(0);
    println!(
        "bft/{nodes}_masternodes: {heights} heights committed on all nodes in {:.2} s CPU = {:.1} commits/s",
        secs,
        heights as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need to read.
    for n in [4, 10] {
        layer1(n, 990);
    }
    for n in [4, 10] {
        bft(n);
    }
}
