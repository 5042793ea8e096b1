//! The slot engine in real processes: a localnet whose genesis runs layer 1 on the slot
//! engine from one voter (`timed localnet --slot-engine-voters 1`) finalizes payments over
//! real TCP, hands out a proof that `timed wallet verify-finality` checks with no node, and a
//! masternode killed and restarted catches up.

mod cluster;

use cluster::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use timed::types::SecretKey;

const PAY: u64 = 100_000_000;

/// `timed wallet verify-finality` on the two files, with no node running for it to ask.
fn verify(proof: &Path, masternodes: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["wallet", "verify-finality", "--proof"])
        .arg(proof)
        .arg("--masternodes")
        .arg(masternodes)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run timed wallet verify-finality")
}

#[test]
fn a_slot_engine_localnet_finalizes_proves_offline_and_a_restarted_node_catches_up() {
    let tmp = TestDir::new();
    let dir = tmp.path().join("net");
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet_with(
        4,
        &["--slot-engine-voters", "1"],
        &dir,
        free_base_port(4),
        &mut procs,
    );
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let (faucet, mut coin, mut have) = faucet_coins(&info, &urls[0]);

    // Payments final on every node; the first whose finality answer still carries its slot
    // certificate (a block confirming it first drops the layer-1 proof) is the one proven.
    let (txid, finality) = wait_for("a payment's slot certificate", || {
        let to = SecretKey::generate();
        let (txid, change, left) = send(&urls[0], &faucet, coin, have, PAY, &to);
        (coin, have) = (change, left);
        let v = call(&urls[2], "waittransactionfinality", json!([txid, 60])).ok()?;
        v.pointer("/certificate/slot/proof")?;
        Some((txid, v))
    });
    assert_eq!(finality["final"], json!(true), "{finality}");
    for url in &urls {
        wait_final_and_confirmed(url, &txid);
    }

    // The wallet checks it offline against the set that signed it, and names that set.
    let proof_file = tmp.path().join("finality.json");
    std::fs::write(&proof_file, finality.to_string()).unwrap();
    let list = call(&urls[1], "masternodelist", json!([])).unwrap();
    let list_file = tmp.path().join("masternodes.json");
    std::fs::write(&list_file, list.to_string()).unwrap();
    let out = verify(&proof_file, &list_file);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&text).expect("verify-finality prints JSON");
    assert_eq!(report["txid"], json!(txid));
    assert_eq!(report["network"], json!("localnet"));
    assert!(
        report["signer_weight"].as_u64().unwrap() * 3 > 2 * 4,
        "{report}"
    );
    let tip = call(&urls[1], "getbestblockhash", json!([])).unwrap();
    let header = call(&urls[1], "getblockheader", json!([tip])).unwrap();
    assert_eq!(report["set_hash"], header["nextmasternodesethash"]);

    // A list with one BLS key swapped is another set: refused, and said why.
    let mut forged = list.clone();
    let (a, b) = (forged[0]["bls_key"].clone(), forged[1]["bls_key"].clone());
    forged[0]["bls_key"] = b;
    forged[1]["bls_key"] = a;
    std::fs::write(&list_file, forged.to_string()).unwrap();
    let out = verify(&proof_file, &list_file);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the certificate names set"), "{err}");

    // One of four killed: the other three still hold a quorum and go on; the fourth,
    // restarted, catches up on what they did without it.
    let victim = info.nodes[3].pid.expect("the node's pid");
    signal(victim, "-KILL");
    wait_for("the killed node to be gone", || {
        process_gone(victim).then_some(())
    });
    let mut while_down = Vec::new();
    for _ in 0..2 {
        let to = SecretKey::generate();
        let (txid, change, left) = send(&urls[1], &faucet, coin, have, PAY, &to);
        (coin, have) = (change, left);
        for url in &urls[..3] {
            wait_final_and_confirmed(url, &txid);
        }
        while_down.push(txid);
    }
    let tip = height(&urls[0]).unwrap();
    spawn_node(
        &info.nodes[3].config,
        &tmp.path().join("node3-restarted.log"),
        &mut procs,
    );
    wait_for("the restarted node to catch up", || {
        (height(&urls[3])? >= tip).then_some(())
    });
    for txid in &while_down {
        wait_final_and_confirmed(&urls[3], txid);
    }
    // And it takes part again: a payment sent through it is final everywhere.
    let to = SecretKey::generate();
    let (txid, _, _) = send(&urls[3], &faucet, coin, have, PAY, &to);
    for url in &urls {
        wait_final_and_confirmed(url, &txid);
    }
}
