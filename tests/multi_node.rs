//! Real `timed` processes on loopback: `timed localnet` starts four masternodes that finalize
//! transfers and commit blocks; a node killed with SIGKILL comes back and catches up; hostile
//! bytes on a P2P port change nothing; SIGTERM stops everything cleanly; a second run resumes
//! the same chain.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use timed::localnet::LocalnetInfo;
use timed::rpc::client;
use timed::types::{Amount, Canonical, Hash32, Network, OutPoint, SecretKey, TxOutput};
use timed::wallet::{keyfile, transfer::signed_transfer};

const NET: Network = Network::Localnet;
/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// Kills every process it holds when dropped, so a failing test leaves nothing running.
struct Procs(Vec<Child>, Vec<u32>);

impl Drop for Procs {
    fn drop(&mut self) {
        for pid in &self.1 {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port whose P2P and RPC ports for `n` nodes are all free right now.
fn free_base_port(n: u16) -> u16 {
    // Tests in this file run in parallel threads: each takes its own slice of the range.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    for _ in 0..200 {
        let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = (rand::random::<u16>() % 300) * 100;
        let base = 30_000 + (start + slot * 100) % 30_000;
        let all_free = (0..n).all(|i| {
            let p = base + 10 * i;
            TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free port range found");
}

fn call(url: &str, method: &str, params: Value) -> Result<Value, client::ClientError> {
    client::call(url, method, params, Duration::from_secs(10))
}

/// Polls `f` until it returns Some, or fails the test after `DEADLINE` with `what`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn height(url: &str) -> Option<u64> {
    call(url, "getblockcount", json!([])).ok()?.as_u64()
}

fn start_localnet(dir: &Path, base: u16, procs: &mut Procs) -> LocalnetInfo {
    let info_path = dir.join("localnet.json");
    let _ = std::fs::remove_file(&info_path);
    let child = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args([
            "localnet",
            "--nodes",
            "4",
            "--block-interval",
            "500ms",
            "--base-port",
        ])
        .arg(base.to_string())
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start timed localnet");
    procs.0.push(child);
    let info: LocalnetInfo = wait_for("localnet.json", || {
        let text = std::fs::read_to_string(&info_path).ok()?;
        serde_json::from_str(&text).ok()
    });
    procs.1.extend(info.nodes.iter().filter_map(|n| n.pid));
    info
}

/// Waits until `txid` is final at layer 1 on the node at `url`, then until it is in a block.
fn wait_final_and_confirmed(url: &str, txid: &str) {
    wait_for(&format!("{txid} final on {url}"), || {
        let v = call(url, "getrawtransaction", json!([txid, true])).ok()?;
        (v["instantlock"] == json!(true)).then_some(())
    });
    wait_for(&format!("{txid} in a block on {url}"), || {
        let v = call(url, "getrawtransaction", json!([txid, true])).ok()?;
        v.get("blockhash").map(|_| ())
    });
}

fn send(
    url: &str,
    key: &SecretKey,
    from: OutPoint,
    have: u64,
    pay: u64,
    to: &SecretKey,
) -> (String, OutPoint, u64) {
    let fee = 10_000;
    let change = have - pay - fee;
    let tx = signed_transfer(
        NET,
        key,
        &[from],
        vec![
            TxOutput {
                amount: Amount(pay),
                key_hash: to.public_key().key_hash(),
            },
            TxOutput {
                amount: Amount(change),
                key_hash: key.public_key().key_hash(),
            },
        ],
    );
    let txid = call(
        url,
        "sendrawtransaction",
        json!([hex::encode(tx.to_bytes())]),
    )
    .expect("sendrawtransaction")
    .as_str()
    .expect("txid string")
    .to_string();
    assert_eq!(txid, tx.txid().to_hex());
    (txid, OutPoint::new(tx.txid(), 1), change)
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    wait_for(what, || child.try_wait().ok().flatten())
}

#[test]
fn localnet_finalizes_survives_a_crash_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    assert_eq!(urls.len(), 4);

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

    // Hostile bytes on a P2P port: garbage, then a frame claiming 4 GiB. The node keeps going.
    for payload in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 0],
    ] {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(&info.nodes[0].p2p_addr) {
            let _ = s.write_all(&payload);
        }
    }

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

/// Writes a config for an extra (non-masternode) node of the localnet in `dir`.
fn extra_node(dir: &Path, name: &str, genesis: &Path, port: u16, peer: &str) -> (PathBuf, String) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("timed.toml");
    std::fs::write(
        &cfg,
        format!(
            "network = \"localnet\"\ndatadir = \".\"\ngenesis = {:?}\nlisten = \"127.0.0.1:{port}\"\n\
             rpc_bind = \"127.0.0.1:{}\"\npeers = [{peer:?}]\n",
            genesis.display().to_string(),
            port + 1
        ),
    )
    .unwrap();
    (cfg, format!("http://127.0.0.1:{}", port + 1))
}

fn spawn_node(cfg: &Path, log: &Path, procs: &mut Procs) -> u32 {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_timed"))
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let pid = child.id();
    procs.0.push(child);
    pid
}

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn no_progress_without_quorum_and_late_nodes_sync_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(6);
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

    // After 50 blocks, a new node syncs from zero to the same best block.
    wait_for("50 blocks", || (height(&urls[0])? >= 50).then_some(()));
    let (cfg, late_url) = extra_node(
        &dir,
        "late",
        &info.genesis,
        base + 40,
        &info.nodes[1].p2p_addr,
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
}
