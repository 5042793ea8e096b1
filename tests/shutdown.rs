//! A node's way out, with real processes. SIGTERM stops a masternode of a running localnet
//! promptly and cleanly (exit 0, cookie removed, nothing it waited for left behind), and it
//! restarts with what it had: its blocks, a payment it voted for and saw confirmed, and its
//! place in consensus (the chain needs its votes again, and no node holds evidence that it
//! signed twice). Then the localnet stops on SIGTERM, as Ctrl-C stops it.
//!
//! The stop times are printed (`cargo test --test shutdown -- --nocapture`), not compared:
//! the only deadline is a liveness bound far above a healthy stop.

mod cluster;

use cluster::*;
use serde_json::json;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};
use timed::storage::Storage;
use timed::types::SecretKey;

/// A node still running this long after SIGTERM is stuck, not slow: a healthy stop takes
/// well under a second, and `timed localnet` kills a node after 15 s.
const STOP_LIVENESS: Duration = Duration::from_secs(10);

/// Sends SIGTERM to `child` and waits for its exit: the status and how long it took.
fn terminate(child: &mut Child, what: &str) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    signal(child.id(), "-TERM");
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, sent.elapsed());
        }
        assert!(
            sent.elapsed() < STOP_LIVENESS,
            "{what} still running {STOP_LIVENESS:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process of this pid still exists (a zombie counts until it is reaped).
fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_masternode_stops_promptly_on_sigterm_and_restarts_with_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, free_base_port(4), &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let node3 = &info.nodes[3];

    // Node 3 runs as this test's own child, so that its exit can be waited for: stopped in
    // the localnet (which reaps it), started again here from its own data.
    let localnet_pid = node3.pid.expect("node 3's pid");
    signal(localnet_pid, "-TERM");
    wait_for("the localnet's node 3 to exit", || {
        (!alive(localnet_pid)).then_some(())
    });
    spawn_node(&node3.config, &dir.join("node3-run1.log"), &mut procs);
    wait_for("node 3 back in step", || {
        (height(&urls[3])? + 1 >= height(&urls[0])?).then_some(())
    });

    // A payment node 3 votes for and sees in a block, just before it stops.
    let (faucet, coins, have) = faucet_coins(&info, &urls[0]);
    let (txid, _, _) = send(
        &urls[3],
        &faucet,
        coins,
        have,
        100_000_000,
        &SecretKey::generate(),
    );
    wait_final_and_confirmed(&urls[3], &txid);
    let paid_in =
        call(&urls[3], "getrawtransaction", json!([txid, true])).unwrap()["blockhash"].clone();
    let reported = height(&urls[3]).unwrap();

    let run1 = procs.0.last_mut().expect("node 3's first run");
    let (status, took) = terminate(run1, "node 3");
    println!("node 3 exited {} ms after SIGTERM", took.as_millis());
    assert!(status.success(), "exit {status}");
    assert!(!node3.rpc_cookie.exists(), "the cookie outlived the node");
    let log = std::fs::read_to_string(dir.join("node3-run1.log")).unwrap();
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(!log.contains("did not end in time"), "{log}");

    // What it flushed: at least what it reported, the payment's block included.
    let tip = {
        let storage = Storage::open_default(&node3.datadir.join("db")).unwrap();
        storage.tip().unwrap().expect("a tip")
    };
    assert!(
        tip.height >= reported,
        "flushed {} < {reported}",
        tip.height
    );

    // The restart resumes there, with the payment where it was.
    spawn_node(&node3.config, &dir.join("node3-run2.log"), &mut procs);
    wait_for("node 3's RPC after the restart", || height(&urls[3]));
    assert_eq!(
        call(&urls[3], "getblockhash", json!([tip.height])).unwrap(),
        json!(tip.hash.to_hex())
    );
    let tx = call(&urls[3], "getrawtransaction", json!([txid, true])).unwrap();
    assert_eq!(tx["blockhash"], paid_in);

    // Its votes are needed again: with node 2 frozen, blocks take nodes 0, 1 and 3.
    let frozen = info.nodes[2].pid.expect("node 2's pid");
    let h_frozen = height(&urls[0]).unwrap();
    signal(frozen, "-STOP");
    wait_for("blocks signed by node 3 while node 2 is frozen", || {
        (height(&urls[0])? >= h_frozen + 3 && height(&urls[3])? >= h_frozen + 3).then_some(())
    });
    signal(frozen, "-CONT");
    for url in &urls {
        assert_eq!(
            call(url, "listevidence", json!([])).unwrap(),
            json!([]),
            "evidence on {url}"
        );
    }

    // Both stops again: the restarted node, then the localnet with its three (Ctrl-C's path).
    let run2 = procs.0.last_mut().expect("node 3's second run");
    let (status, took) = terminate(run2, "node 3 (restarted)");
    println!(
        "node 3 (restarted) exited {} ms after SIGTERM",
        took.as_millis()
    );
    assert!(status.success(), "exit {status}");
    let localnet = &mut procs.0[0];
    let (status, took) = terminate(localnet, "the localnet");
    println!(
        "localnet of three exited {} ms after SIGTERM",
        took.as_millis()
    );
    assert!(status.success(), "exit {status}");
    for url in &urls {
        assert!(height(url).is_none(), "{url} still answers");
    }
}
