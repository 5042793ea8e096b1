//! Skewed clocks between real `timed` processes: a 4-node localnet whose nodes' wall clocks
//! are 0, +5 s, −5 s and +60 s off (then −60 s for the last) keeps finalizing transfers and
//! committing blocks, the far-off node's own proposals are committed too, every block's
//! timestamp keeps the header rules, and the far-off node tells its operator by how much its
//! clock is off (log, `getnetworkinfo`, `timed_clock_offset_seconds`).
//!
//! The offsets come from `TIMED_TEST_CLOCK_OFFSET_MS` (see `timed::clock`), set per process.

mod cluster;

use cluster::*;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use timed::clock::TEST_OFFSET_ENV;
use timed::consensus::bft::BftConfig;
use timed::localnet::LocalnetInfo;
use timed::types::{OutPoint, SecretKey};

/// Blocks every phase must see committed (after the skewed nodes are up).
const BLOCKS_PER_PHASE: u64 = 12;

#[test]
fn skewed_clocks_keep_finalizing_and_producing_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let mut nodes = LiveNode::all(&info);
    let (faucet, mut coin, mut have) = faucet_coins(&info, &nodes[0].url);

    for (phase, far) in [(1, 60_000i64), (2, -60_000)] {
        let offsets = [0, 5_000, -5_000, far];
        for (i, offset) in offsets.iter().enumerate().skip(1) {
            if phase == 1 || i == 3 {
                restart_with_offset(&mut nodes[i], *offset, phase, &mut procs);
            }
        }
        (coin, have) = check_phase(&info, &nodes, far, (&faucet, coin, have));
        println!(
            "phase {phase}: offsets {offsets:?} ms: blocks, finality and warnings as expected"
        );
    }
}

/// SIGTERM, then start the node again with its clock `offset_ms` off.
fn restart_with_offset(node: &mut LiveNode, offset_ms: i64, phase: u32, procs: &mut Procs) {
    signal(node.pid, "-TERM");
    wait_for("the node to stop", || process_gone(node.pid).then_some(()));
    node.restart(
        &format!("skew-{phase}-{offset_ms}.log"),
        &[(TEST_OFFSET_ENV, offset_ms.to_string())],
        procs,
    );
    wait_for("the restarted node to answer", || height(&node.url));
}

/// With node 3 `far_ms` off: blocks keep coming (some proposed by node 3), transfers sent to
/// every node become final everywhere, timestamps keep the rules, node 3 warns. Returns the
/// faucet's next coin.
fn check_phase(
    info: &LocalnetInfo,
    nodes: &[LiveNode],
    far_ms: i64,
    (faucet, mut coin, mut have): (&SecretKey, OutPoint, u64),
) -> (OutPoint, u64) {
    let far = &nodes[3];
    wait_for("node 3 to see its three peers", || {
        let peers = call(&far.url, "getpeerinfo", json!([])).ok()?;
        (peers.as_array()?.len() == 3).then_some(())
    });

    // The operator of the far-off node is told, with the offset (peers minus ours).
    let expect_s = -far_ms / 1000;
    let side = if far_ms > 0 { "ahead of" } else { "behind" };
    // Each handshake measures a peer's offset: wait until all three peers' are in.
    wait_for("getnetworkinfo to show the offset and a warning", || {
        let net = call(&far.url, "getnetworkinfo", json!([])).ok()?;
        let offset_s = net["timeoffset"].as_i64()?;
        let warning = net["warnings"].as_str()?;
        ((offset_s - expect_s).abs() <= 6 && warning.contains(side)).then_some(())
    });
    wait_for("timed_clock_offset_seconds to show the offset", || {
        let gauge = metric(&far.metrics_url, "timed_clock_offset_seconds")?;
        ((gauge - expect_s as f64).abs() <= 6.0).then_some(())
    });
    wait_for("the clock warning in node 3's log", || {
        let log = std::fs::read_to_string(&far.log).ok()?;
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("clock is") && l.contains(side))
            .then_some(())
    });

    // Blocks keep coming, and node 3's turns as proposer are not lost.
    let h0 = wait_for("a height", || height(&nodes[0].url));
    let mut proposed_by_far = 0;
    let mut next = h0 + 1;
    wait_for("blocks, one of them proposed by node 3", || {
        for n in nodes {
            if height(&n.url)? < next {
                return None;
            }
        }
        let hash = call(&nodes[0].url, "getblockhash", json!([next])).ok()?;
        let header = call(&nodes[0].url, "getblockheader", json!([hash])).ok()?;
        if header["proposer"].as_str() == Some(far.key.as_str()) {
            proposed_by_far += 1;
        }
        next += 1;
        (next > h0 + BLOCKS_PER_PHASE && proposed_by_far > 0).then_some(())
    });

    // A transfer sent to each node becomes final and confirmed on every node.
    for sender in nodes {
        let to = SecretKey::generate();
        let (txid, change, left) = send(&sender.url, faucet, coin, have, 100_000_000, &to);
        for n in nodes {
            wait_final_and_confirmed(&n.url, &txid);
        }
        (coin, have) = (change, left);
    }

    check_timestamps(&nodes[0].url, info);
    (coin, have)
}

/// Every block is dated after its parent and no further ahead of the true time (this test's
/// unshifted clock) than the drift a validator allows a proposal.
fn check_timestamps(url: &str, info: &LocalnetInfo) {
    let drift = BftConfig::new(info.network, info.block_interval_ms).max_clock_drift_ms;
    let top = height(url).unwrap();
    let true_now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let params: Vec<Value> = (0..=top).map(|h| json!([h])).collect();
    let hashes = call_batch(url, "getblockhash", &params).unwrap();
    let params: Vec<Value> = hashes.into_iter().map(|h| json!([h.unwrap()])).collect();
    let headers = call_batch(url, "getblockheader", &params).unwrap();
    let times: Vec<u64> = (headers.into_iter())
        .map(|h| h.unwrap()["time_ms"].as_u64().unwrap())
        .collect();
    for (h, pair) in times.windows(2).enumerate() {
        assert!(
            pair[1] > pair[0],
            "block {} is dated {} ms, not after its parent's {} ms",
            h + 1,
            pair[1],
            pair[0]
        );
    }
    // A second of slack for the time the proposal took to arrive at the last validator.
    let limit = true_now_ms + drift + 1_000;
    let ahead: Vec<(usize, u64)> = (times.iter().copied().enumerate())
        .filter(|(_, t)| *t > limit)
        .collect();
    assert!(
        ahead.is_empty(),
        "blocks dated more than {drift} ms ahead of the true time ({true_now_ms}): {ahead:?}"
    );
}

/// A gauge's value from the node's Prometheus endpoint (None while it cannot be read).
fn metric(metrics_url: &str, name: &str) -> Option<f64> {
    let body = ureq::get(&format!("{metrics_url}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}
