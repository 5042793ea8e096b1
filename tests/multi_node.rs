//! Real `timed` processes on loopback: `timed localnet` starts four masternodes that finalize
//! transfers and commit blocks; a node killed with SIGKILL comes back and catches up; hostile
//! bytes on a P2P port change nothing; SIGTERM stops everything cleanly; a second run resumes
//! the same chain.

mod cluster;

use cluster::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use timed::client;
use timed::config::keyfile;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Canonical, Hash32, OutPoint, SecretKey, TxOutput};

#[test]
fn localnet_finalizes_survives_a_crash_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    assert_eq!(urls.len(), 4);

    // The RPC wants the node's cookie; only /health is open.
    let refused = client::call(
        &urls[0],
        "getblockcount",
        json!([]),
        Duration::from_secs(10),
    );
    assert!(
        matches!(&refused, Err(client::ClientError::Unauthorized { .. })),
        "{refused:?}"
    );
    let health = ureq::get(&format!("{}/health", urls[0])).call().unwrap();
    assert_eq!(health.status(), 200);

    // Every node sees the three others.
    for url in &urls {
        wait_for("full mesh", || {
            let peers = call(url, "getpeerinfo", json!([])).ok()?;
            (peers.as_array()?.len() == 3).then_some(())
        });
    }

    // A transfer from the faucet's genesis output is final everywhere, then confirmed.
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let genesis_hash = call(&urls[0], "getblockhash", json!([0])).unwrap();
    let genesis = call(&urls[0], "getblock", json!([genesis_hash, 2])).unwrap();
    let coinbase = Hash32::from_hex(genesis["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();
    let alice = SecretKey::generate();
    let (tx1, change, have) = send(
        &urls[0],
        &faucet,
        OutPoint::new(coinbase, 0),
        have,
        5 * 100_000_000,
        &alice,
    );
    for url in &urls {
        wait_final_and_confirmed(url, &tx1);
    }
    let v = call(&urls[2], "getrawtransaction", json!([tx1, true])).unwrap();
    assert_eq!(v["vout"][0]["value"], json!(5.0));
    assert!(
        v["finalized"]["weight"].as_u64().unwrap() >= v["finalized"]["quorum"].as_u64().unwrap()
    );

    // A double spend sent to two nodes at once: never both final, anywhere.
    let (carol, dave) = (SecretKey::generate(), SecretKey::generate());
    let spend = |to: &SecretKey| {
        let tx = signed_transfer(
            NET,
            &alice,
            &[OutPoint::new(Hash32::from_hex(&tx1).unwrap(), 0)],
            vec![TxOutput {
                amount: Amount(4 * 100_000_000),
                key_hash: to.public_key().key_hash(),
            }],
        );
        (tx.txid().to_hex(), hex::encode(tx.to_bytes()))
    };
    let ((ta, ha), (tb, hb)) = (spend(&carol), spend(&dave));
    let (u0, u1) = (urls[0].clone(), urls[1].clone());
    let a = std::thread::spawn(move || call(&u0, "sendrawtransaction", json!([ha])));
    let b = std::thread::spawn(move || call(&u1, "sendrawtransaction", json!([hb])));
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    assert!(
        ra.is_ok() || rb.is_ok(),
        "at least one spend is accepted somewhere: {ra:?} {rb:?}"
    );
    let h_ds = height(&urls[0]).unwrap();
    wait_for("blocks after the double spend", || {
        (height(&urls[0])? >= h_ds + 3).then_some(())
    });
    let is_final = |url: &str, txid: &str| {
        call(url, "getrawtransaction", json!([txid, true]))
            .map(|v| v["instantlock"] == json!(true))
            .unwrap_or(false)
    };
    let final_a = urls.iter().any(|u| is_final(u, &ta));
    let final_b = urls.iter().any(|u| is_final(u, &tb));
    assert!(
        !(final_a && final_b),
        "both conflicting spends became final"
    );

    // Sending it again is refused as already in the chain (-27); garbage is a decode error (-22).
    let err = call(&urls[1], "sendrawtransaction", json!(["00ff"])).unwrap_err();
    assert!(
        matches!(err, client::ClientError::Rpc { code: -22, .. }),
        "{err}"
    );

    // Hostile bytes on a P2P port: a frame of an unknown type, then a length prefix of
    // 4 GiB. Each connection is refused with a log line; the network keeps finalizing below.
    for payload in [
        vec![0, 0, 0, 3, 200, 0, 1],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&info.nodes[0].p2p_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(&payload);
        // The node answers with its hello, then closes the connection.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    wait_for("the hostile peers in node 0's log", || {
        let log = std::fs::read_to_string(&info.nodes[0].log).ok()?;
        (log.matches("peer failed the handshake").count() >= 2).then_some(())
    });

    // Kill node 3 outright; the other three (3 of 4 > 2/3) keep finalizing and committing.
    let killed = info.nodes[3].pid.unwrap();
    Command::new("kill")
        .arg("-9")
        .arg(killed.to_string())
        .status()
        .unwrap();
    let h_kill = height(&urls[0]).unwrap();
    let bob = SecretKey::generate();
    let (tx2, _, _) = send(&urls[1], &faucet, change, have, 100_000_000, &bob);
    for url in &urls[..3] {
        wait_final_and_confirmed(url, &tx2);
    }
    wait_for("blocks without node 3", || {
        (height(&urls[0])? >= h_kill + 3).then_some(())
    });

    // Node 3 restarts from its own data and catches up, including the transfer it missed.
    let mut node3 = Command::new(env!("CARGO_BIN_EXE_timed"))
        .arg("--config")
        .arg(&info.nodes[3].config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node3_pid = node3.id();
    procs.1.push(node3_pid);
    wait_for("node 3 to catch up", || {
        (height(&urls[3])? >= height(&urls[0])?.saturating_sub(1)).then_some(())
    });
    wait_final_and_confirmed(&urls[3], &tx2);
    // Nothing it had finalized before the crash is lost.
    wait_final_and_confirmed(&urls[3], &tx1);
    // Its UTXO set matches the commitment its tip block certifies.
    wait_for("node 3's commitment to match its tip", || {
        let chain = call(&urls[3], "getblockchaininfo", json!([])).ok()?;
        let tip = call(&urls[3], "getblock", json!([chain["bestblockhash"], 1])).ok()?;
        (tip["utxocommitment"] == chain["utxocommitment"]).then_some(())
    });
    assert_eq!(
        call(&urls[3], "getblockhash", json!([h_kill + 2])).unwrap(),
        call(&urls[0], "getblockhash", json!([h_kill + 2])).unwrap(),
        "node 3 follows the same chain"
    );

    // SIGTERM: the restarted node and the localnet (with its three nodes) stop cleanly.
    Command::new("kill")
        .arg(node3_pid.to_string())
        .status()
        .unwrap();
    assert!(wait_exit(&mut node3, "node 3 to stop").success());
    let mut localnet = procs.0.remove(0);
    Command::new("kill")
        .arg(localnet.id().to_string())
        .status()
        .unwrap();
    assert!(wait_exit(&mut localnet, "localnet to stop").success());
    let stopped_at = info
        .nodes
        .iter()
        .map(|n| n.rpc_url.clone())
        .collect::<Vec<_>>();
    assert!(
        height(&stopped_at[0]).is_none(),
        "node 0 stopped with the localnet"
    );

    // A second run resumes the same chain.
    let h_before = 1 + h_kill;
    let info2 = start_localnet(&dir, base, &mut procs);
    assert_eq!(info2.faucet.address, info.faucet.address);
    let h_after = height(&info2.nodes[0].rpc_url).unwrap();
    assert!(h_after >= h_before, "resumed at {h_after}, had {h_before}");
    let v = call(
        &info2.nodes[2].rpc_url,
        "getrawtransaction",
        json!([tx1, true]),
    )
    .unwrap();
    assert!(v.get("blockhash").is_some());
    let mut localnet = procs.0.remove(0);
    Command::new("kill")
        .arg(localnet.id().to_string())
        .status()
        .unwrap();
    assert!(wait_exit(&mut localnet, "localnet to stop again").success());
}

#[test]
fn no_progress_without_quorum_and_late_nodes_sync_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(7);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let genesis_hash = call(&urls[0], "getblockhash", json!([0])).unwrap();
    let genesis = call(&urls[0], "getblock", json!([genesis_hash, 2])).unwrap();
    let coinbase = Hash32::from_hex(genesis["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();

    // Two of four frozen: no quorum, so nothing is finalized or committed anywhere.
    let (p2, p3) = (info.nodes[2].pid.unwrap(), info.nodes[3].pid.unwrap());
    signal(p2, "-STOP");
    signal(p3, "-STOP");
    // A block already precommitted before the freeze may still land; wait until it has.
    std::thread::sleep(Duration::from_secs(2));
    let h_frozen = height(&urls[0]).unwrap();
    let (tx, _, _) = send(
        &urls[0],
        &faucet,
        OutPoint::new(coinbase, 0),
        have,
        100_000_000,
        &SecretKey::generate(),
    );
    // Proving that nothing happens needs a span of time: five block intervals.
    std::thread::sleep(Duration::from_secs(5));
    for url in &urls[..2] {
        assert_eq!(
            height(url),
            Some(h_frozen),
            "a block was committed without a quorum"
        );
        let v = call(url, "getrawtransaction", json!([tx, true])).unwrap();
        assert_eq!(v["instantlock"], json!(false), "final without a quorum");
    }
    signal(p2, "-CONT");
    signal(p3, "-CONT");
    for url in &urls {
        wait_final_and_confirmed(url, &tx);
    }

    // A node of another chain is refused, and the network goes on.
    let mut other: Value =
        serde_json::from_str(&std::fs::read_to_string(&info.genesis).unwrap()).unwrap();
    other["timestamp_ms"] = json!(other["timestamp_ms"].as_u64().unwrap() + 1);
    let other_genesis = dir.join("other-genesis.json");
    std::fs::write(&other_genesis, other.to_string()).unwrap();
    let (cfg, stranger_url) = extra_node(
        &dir,
        "stranger",
        &other_genesis,
        base + 50,
        &info.nodes[0].p2p_addr,
        "",
    );
    let stranger_log = dir.join("stranger.log");
    spawn_node(&cfg, &stranger_log, &mut procs);
    wait_for("the stranger to be refused", || {
        let log = std::fs::read_to_string(&stranger_log).ok()?;
        log.contains("follows another chain").then_some(())
    });
    assert_eq!(
        call(&stranger_url, "getconnectioncount", json!([])).unwrap(),
        json!(0)
    );

    // After 50 blocks, a new node syncs from zero to the same best block, block by block...
    wait_for("50 blocks", || (height(&urls[0])? >= 50).then_some(()));
    let (cfg, late_url) = extra_node(
        &dir,
        "late",
        &info.genesis,
        base + 40,
        &info.nodes[1].p2p_addr,
        "fast_sync_after = 0",
    );
    spawn_node(&cfg, &dir.join("late.log"), &mut procs);
    wait_for("the late node to sync", || {
        let h = height(&late_url)?;
        (h >= 50 && h + 1 >= height(&urls[0])?).then_some(())
    });
    let h = height(&late_url).unwrap();
    assert_eq!(
        call(&late_url, "getblockhash", json!([h])).unwrap(),
        call(&urls[0], "getblockhash", json!([h])).unwrap()
    );
    wait_final_and_confirmed(&late_url, &tx);

    // ...and another from certified headers and a UTXO snapshot, without the blocks.
    let (cfg, snap_url) = extra_node(
        &dir,
        "snap",
        &info.genesis,
        base + 60,
        &info.nodes[2].p2p_addr,
        "fast_sync_after = 20",
    );
    let snap_log = dir.join("snap.log");
    spawn_node(&cfg, &snap_log, &mut procs);
    wait_for("the snapshot node to catch up", || {
        let h = height(&snap_url)?;
        (h >= 50 && h + 1 >= height(&urls[0])?).then_some(())
    });
    let log = std::fs::read_to_string(&snap_log).unwrap();
    assert!(log.contains("UTXO snapshot installed"), "{log}");
    let h = height(&snap_url).unwrap();
    assert_eq!(
        call(&snap_url, "getblockhash", json!([h])).unwrap(),
        call(&urls[0], "getblockhash", json!([h])).unwrap()
    );
    // The funds are there though block 1 never was.
    assert!(call(&snap_url, "getblockhash", json!([1])).is_err());
    let faucet_addr = json!([[info.faucet.address.clone()]]);
    wait_for("the same faucet balance", || {
        let a = call(&snap_url, "getaddressbalance", faucet_addr.clone()).ok()?;
        let b = call(&urls[0], "getaddressbalance", faucet_addr.clone()).ok()?;
        (a["confirmed"] == b["confirmed"]).then_some(())
    });
}
