//! A masternode joins a running localnet through the chain and leaves it again, driven by the
//! `timed wallet` commands an operator would type: funded from the faucet, it registers its
//! collateral, becomes a voter from the next block (proven by finality that needs its vote),
//! and spending the collateral removes it.

mod cluster;

use cluster::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use timed::config::keyfile;
use timed::types::transfer::signed_transfer;
use timed::types::{Address, Amount, Canonical, Hash32, OutPoint, SecretKey, TxOutput};

/// Runs `timed wallet <args>` and returns its first output line (the txid).
/// The node's cookie is added after `--rpc URL`, as an operator would pass it.
fn wallet(args: &[&str]) -> String {
    let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if let Some(i) = full.iter().position(|a| a == "--rpc") {
        if let Some(cookie) = full.get(i + 1).and_then(|u| cookie_for(u)) {
            full.push("--rpc-cookie".into());
            full.push(cookie.display().to_string());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_timed"))
        .arg("wallet")
        .args(&full)
        .output()
        .expect("run timed wallet");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "timed wallet {args:?} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().next().unwrap_or_default().to_string()
}

fn masternodes(url: &str) -> usize {
    call(url, "masternodelist", json!([]))
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_masternode_registers_votes_and_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(5);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let faucet = path(&info.faucet.key_file).to_string();

    // The operator's owner key is funded from the faucet: the collateral, then fee money.
    let owner_key = dir.join("owner.key");
    keyfile::write_new(&owner_key, &SecretKey::generate()).unwrap();
    let owner =
        Address::from_public_key(NET, &keyfile::read(&owner_key).unwrap().public_key()).to_string();
    let collateral_tx = wallet(&[
        "send", "--rpc", &urls[0], "--key", &faucet, "--to", &owner, "--amount", "1000", "--wait",
    ]);
    wallet(&[
        "send", "--rpc", &urls[1], "--key", &faucet, "--to", &owner, "--amount", "5", "--wait",
    ]);

    // The fifth node starts as a plain node with its own key...
    let p2p = format!("127.0.0.1:{}", base + 40);
    let (cfg, url5) = extra_node(
        &dir,
        "node4",
        &info.genesis,
        base + 40,
        &info.nodes[0].p2p_addr,
        "",
    );
    let operator_key = dir.join("node4").join("node.key");
    keyfile::write_new(&operator_key, &SecretKey::generate()).unwrap();
    spawn_node(&cfg, &dir.join("node4.log"), &mut procs);
    wait_for("node 4 to sync", || {
        (height(&url5)? + 1 >= height(&urls[0])?).then_some(())
    });

    // ...and registers once the collateral is in a block (a registration names a confirmed
    // output): a voter from the block after the registration.
    wait_final_and_confirmed(&urls[2], &collateral_tx);
    let reg = wallet(&[
        "register-masternode",
        "--rpc",
        &urls[2],
        "--key",
        path(&owner_key),
        "--tier",
        "bronze",
        "--collateral",
        &format!("{collateral_tx}:0"),
        "--operator-key",
        path(&operator_key),
        "--p2p-addr",
        &p2p,
        "--wait",
    ]);
    wait_final_and_confirmed(&urls[0], &reg);
    for url in urls.iter().chain([&url5]) {
        wait_for("five masternodes everywhere", || {
            (masternodes(url) == 5).then_some(())
        });
    }
    // The registration carried the node's BLS key, the one `timed masternode-keys` derives
    // from its key file.
    let keys = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["masternode-keys", "--key", path(&operator_key)])
        .output()
        .unwrap();
    assert!(keys.status.success(), "{keys:?}");
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let list = call(&urls[0], "masternodelist", json!([])).unwrap();
    let joined = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["operator_key"] == keys["operator_key"])
        .expect("the new masternode is listed");
    assert_eq!(joined["bls_key"], keys["bls_key"]);
    let info5 = call(&url5, "getconsensusinfo", json!([])).unwrap();
    assert_eq!(info5["is_masternode"], json!(true));
    assert_eq!(info5["total_weight"], json!(5));
    assert_eq!(info5["quorum_weight"], json!(4));
    wait_for("the masternodes to connect to node 4", || {
        let list = call(&urls[0], "masternodelist", json!([])).ok()?;
        list.as_array()?
            .iter()
            .all(|m| m["connected"] == json!(true))
            .then_some(())
    });

    // With node 3 frozen, weight 4 of 5 remains: only a quorum if node 4 votes.
    let p3 = info.nodes[3].pid.unwrap();
    signal(p3, "-STOP");
    let someone = Address::from_public_key(NET, &SecretKey::generate().public_key()).to_string();
    let tx = wallet(&[
        "send", "--rpc", &url5, "--key", &faucet, "--to", &someone, "--amount", "1", "--wait",
    ]);
    for url in urls[..3].iter().chain([&url5]) {
        wait_final_and_confirmed(url, &tx);
    }
    signal(p3, "-CONT");

    // Spending the collateral removes the masternode from the next block. The wallet never
    // spends a registered collateral by accident, so the owner sends it explicitly by amount:
    // its only other coin cannot cover 1,000 TIME.
    let cookie = cookie_for(&urls[0]).unwrap();
    let err = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args([
            "wallet",
            "send",
            "--rpc",
            &urls[0],
            "--key",
            path(&owner_key),
            "--to",
            &someone,
            "--amount",
            "999",
        ])
        .arg("--rpc-cookie")
        .arg(&cookie)
        .output()
        .unwrap();
    assert!(
        !err.status.success(),
        "the wallet refused to spend the collateral"
    );
    assert!(String::from_utf8_lossy(&err.stderr).contains("spendable"));
    let owner_secret = keyfile::read(&owner_key).unwrap();
    let collateral = OutPoint::new(Hash32::from_hex(&collateral_tx).unwrap(), 0);
    let spend = signed_transfer(
        NET,
        &owner_secret,
        &[collateral],
        vec![TxOutput {
            amount: Amount(999 * 100_000_000),
            key_hash: owner_secret.public_key().key_hash(),
        }],
    );
    call(
        &urls[1],
        "sendrawtransaction",
        json!([hex::encode(spend.to_bytes())]),
    )
    .unwrap();
    wait_final_and_confirmed(&urls[0], &spend.txid().to_hex());
    for url in urls.iter().chain([&url5]) {
        wait_for("node 4 to leave the set", || {
            (masternodes(url) == 4).then_some(())
        });
    }
    let info5 = call(&url5, "getconsensusinfo", json!([])).unwrap();
    assert_eq!(info5["is_masternode"], json!(false));
    // The four go on without it.
    let tx = wallet(&[
        "send", "--rpc", &urls[0], "--key", &faucet, "--to", &someone, "--amount", "1", "--wait",
    ]);
    wait_final_and_confirmed(&urls[3], &tx);
}
