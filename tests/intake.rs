//! Unstaked peers against a real 4-node localnet (issue 11 §7, issue 16 §4). A hostile peer
//! written here speaks the wire protocol: it claims a height of 10^15 in its hello and in a
//! garbage-signed vote (neither may hold `/ready` at "syncing" nor set
//! `initialblockdownload`), then floods each kind of junk (forged-signature vote batches and
//! votes, messages signed by a non-member, invalid transactions) while honest payments go
//! on. Every payment becomes final, every kind of attacker is disconnected for it, and a new
//! node still syncs. Finality latencies with and without the flood are printed, never
//! asserted (`cargo test --test intake -- --nocapture`; `TIMED_INTAKE_PAYMENTS` sets how many
//! payments each phase measures).

mod cluster;

use cluster::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timed::config::keyfile;
use timed::consensus::driver::WireMessage;
use timed::network::frame::Frame;
use timed::network::handshake::LocalIdentity;
use timed::network::message::NetMessage;
use timed::network::session;
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Block, Canonical, ConsensusVote, Hash32, OutPoint, Proposal, PublicKey, SecretKey,
    Signature, TxOutput, VoteBatch, VoteKind,
};

/// The height the hostile peer claims.
const FAKE_HEIGHT: u64 = 1_000_000_000_000_000;
/// Junk frames an attacker sends between two 20 ms pauses: up to 5,000 a second each, four
/// attackers at once, on the machine that also runs the four nodes.
const BURST: u64 = 100;

/// What one attacker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Junk {
    /// Vote batches naming a masternode's key, with a signature that does not verify.
    ForgedBatches,
    /// BFT votes naming a masternode's key, with a signature that does not verify.
    ForgedVotes,
    /// Batches, votes and proposals correctly signed by a key outside the set.
    NonMember,
    /// Transactions whose input signature does not verify.
    InvalidTransactions,
}

/// Counters of one attacker loop.
#[derive(Default)]
struct AttackStats {
    sessions: AtomicU64,
    /// Sessions the node ended while the attacker was still sending.
    closed_by_node: AtomicU64,
    frames: AtomicU64,
}

/// Everything an attacker needs to know about its target.
#[derive(Clone)]
struct Target {
    p2p: SocketAddr,
    genesis: Hash32,
    member: PublicKey,
    block: Block,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Opens a session to the target as a fresh key claiming `FAKE_HEIGHT`.
async fn connect(t: &Target, key: &SecretKey) -> Option<session::Connection> {
    let stream = tokio::net::TcpStream::connect(t.p2p).await.ok()?;
    let me = LocalIdentity {
        network: NET,
        genesis: t.genesis,
        listen_addr: String::new(),
        nonce: rand::random(),
    };
    let (conn, _) = session::open(stream, &me, key, FAKE_HEIGHT, wall_ms())
        .await
        .ok()?;
    Some(conn)
}

fn frame(msg: WireMessage) -> Frame {
    NetMessage::Consensus(msg).to_frame()
}

/// A signature that is no one's, different for each `i`.
fn garbage_signature(i: u64) -> Signature {
    let mut s = [0x5a; 64];
    s[..8].copy_from_slice(&i.to_le_bytes());
    Signature(s)
}

/// The `i`-th junk frame of a kind (each differs, so no dedup hides the flood).
fn junk(kind: Junk, i: u64, t: &Target, key: &SecretKey) -> Frame {
    let txid = Hash32::digest("intake test junk", &i.to_le_bytes());
    match kind {
        Junk::ForgedBatches => frame(WireMessage::VoteBatch(Arc::new(VoteBatch {
            voter: t.member,
            set_height: 0,
            set_hash: Hash32::ZERO,
            sequence: i,
            txids: vec![txid],
            signature: garbage_signature(i),
        }))),
        Junk::ForgedVotes => frame(WireMessage::Vote(ConsensusVote {
            kind: VoteKind::Prevote,
            height: FAKE_HEIGHT + i,
            round: 0,
            block_hash: None,
            validator: t.member,
            signature: garbage_signature(i),
        })),
        Junk::NonMember => match i % 3 {
            0 => frame(WireMessage::VoteBatch(Arc::new(VoteBatch::sign(
                key,
                NET,
                (0, Hash32::ZERO),
                i,
                vec![txid],
            )))),
            1 => frame(WireMessage::Vote(ConsensusVote::sign(
                key,
                NET,
                VoteKind::Precommit,
                FAKE_HEIGHT,
                i as u32,
                Some(txid),
            ))),
            _ => frame(WireMessage::Proposal(Arc::new(Proposal::sign(
                key,
                NET,
                1 + i,
                0,
                None,
                t.block.clone(),
            )))),
        },
        Junk::InvalidTransactions => {
            let mut tx = signed_transfer(
                NET,
                key,
                &[OutPoint::new(txid, 0)],
                vec![TxOutput {
                    amount: Amount(1_000),
                    key_hash: key.public_key().key_hash(),
                }],
            );
            tx.inputs[0].signature.0[0] ^= 1;
            frame(WireMessage::Transaction(Arc::new(tx)))
        }
    }
}

/// Connects, floods `kind` until the node closes the session, and again, until `stop`.
async fn attack(kind: Junk, t: Target, stop: Arc<AtomicBool>, stats: Arc<AttackStats>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = SecretKey::generate();
        let Some(conn) = connect(&t, &key).await else {
            // Refused (banned, or slots full): try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        stats.sessions.fetch_add(1, Ordering::Relaxed);
        let (mut sink, mut stream) = conn.split();
        let reader = async { while let Some(Ok(_)) = stream.next().await {} };
        let writer = async {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..BURST {
                    if sink.send(junk(kind, i, &t, &key)).await.is_err() {
                        return;
                    }
                    i += 1;
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = reader => {
                if !stop.load(Ordering::Relaxed) {
                    stats.closed_by_node.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = writer => {}
        }
    }
}

/// The metrics URL of the node whose RPC is at `rpc_url` (the RPC port + 1).
fn metrics_base(rpc_url: &str) -> String {
    let (host, port) = rpc_url.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("RPC port");
    format!("{host}:{}", port + 1)
}

fn ready_status(base: &str) -> Option<(u16, String)> {
    let response = match ureq::get(&format!("{base}/ready")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let status = response.status();
    Some((status, response.into_string().ok()?))
}

/// The value of one sample of the metrics text (0 if absent).
fn metric(base: &str, sample: &str) -> f64 {
    let text = ureq::get(&format!("{base}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn ibd(url: &str) -> Option<bool> {
    call(url, "getblockchaininfo", json!([])).ok()?["initialblockdownload"].as_bool()
}

/// A chain of payments from the faucet: each spends the change of the one before.
struct Payer {
    url: String,
    faucet: SecretKey,
    coin: OutPoint,
    have: u64,
}

impl Payer {
    /// Sends `n` payments one after another; each one's time from submit to final.
    fn pay(&mut self, n: usize) -> Vec<Duration> {
        let to = SecretKey::generate();
        (0..n)
            .map(|_| {
                let started = Instant::now();
                let (txid, change, have) =
                    send(&self.url, &self.faucet, self.coin, self.have, 100_000, &to);
                // Short waits, asked again: a wait longer than the client's 10 s would fail
                // as a transport error.
                wait_for(&format!("payment {txid} final"), || {
                    let v: Value =
                        call(&self.url, "waittransactionfinality", json!([txid, 5])).ok()?;
                    (v["final"] == json!(true)).then_some(())
                });
                (self.coin, self.have) = (change, have);
                started.elapsed()
            })
            .collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "finality latency {what}: n={} p50={:?} p99={:?} max={:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default()
    );
}

#[test]
fn unstaked_floods_leave_finality_working_and_heights_need_proof() {
    let payments: usize = std::env::var("TIMED_INTAKE_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(5);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let m0 = metrics_base(&urls[0]);
    wait_for("node 0 ready", || {
        (ready_status(&m0)?.0 == 200).then_some(())
    });

    let genesis_hash = call(&urls[0], "getblockhash", json!([0])).unwrap();
    let genesis_hex = call(&urls[0], "getblock", json!([genesis_hash, 0])).unwrap();
    let block = Block::from_bytes(&hex::decode(genesis_hex.as_str().unwrap()).unwrap()).unwrap();
    let genesis = call(&urls[0], "getblock", json!([genesis_hash, 2])).unwrap();
    let coinbase = Hash32::from_hex(genesis["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let target = Target {
        p2p: info.nodes[0].p2p_addr.parse().unwrap(),
        genesis: Hash32::from_hex(genesis_hash.as_str().unwrap()).unwrap(),
        member: PublicKey::from_hex(&info.nodes[1].node_key).unwrap(),
        block,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. Heights no one proved: a hello and a garbage-signed vote claiming 10^15.
    let liar_key = SecretKey::generate();
    let mut liar = rt
        .block_on(connect(&target, &liar_key))
        .expect("liar connects");
    wait_for("the liar among node 0's peers", || {
        let peers = call(&urls[0], "getpeerinfo", json!([])).ok()?;
        peers
            .as_array()?
            .iter()
            .any(|p| p["nodekey"] == json!(liar_key.public_key().to_hex()))
            .then_some(())
    });
    let forged = junk(Junk::ForgedVotes, 0, &target, &liar_key);
    rt.block_on(liar.send(forged)).unwrap();
    let bad_signatures = "timed_consensus_dropped_total{reason=\"bad_signature\"}";
    wait_for("the forged vote refused", || {
        (metric(&m0, bad_signatures) >= 1.0).then_some(())
    });
    assert_eq!(
        ready_status(&m0).map(|r| r.0),
        Some(200),
        "an unproven height must not hold /ready: {:?}",
        ready_status(&m0)
    );
    assert_eq!(ibd(&urls[0]), Some(false));
    let info0 = call(&urls[0], "getblockchaininfo", json!([])).unwrap();
    assert!(
        info0["sync"]["target"].as_u64().unwrap() < FAKE_HEIGHT,
        "{info0}"
    );
    drop(liar);

    // 2. Honest finality without a flood.
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();
    let mut payer = Payer {
        url: urls[0].clone(),
        faucet,
        coin: OutPoint::new(coinbase, 0),
        have,
    };
    report("without a flood", payer.pay(payments));

    // 3. The same under every flood at once.
    let stop = Arc::new(AtomicBool::new(false));
    let kinds = [
        Junk::ForgedBatches,
        Junk::ForgedVotes,
        Junk::NonMember,
        Junk::InvalidTransactions,
    ];
    let stats: Vec<Arc<AttackStats>> = kinds.iter().map(|_| Arc::default()).collect();
    let attackers: Vec<_> = kinds
        .iter()
        .zip(&stats)
        .map(|(kind, s)| {
            rt.spawn(attack(
                *kind,
                target.clone(),
                Arc::clone(&stop),
                Arc::clone(s),
            ))
        })
        .collect();
    let under_flood = payer.pay(payments);
    // Each kind of attacker has been thrown out at least once by now or soon.
    for (kind, s) in kinds.iter().zip(&stats) {
        wait_for(&format!("{kind:?} attacker disconnected"), || {
            (s.closed_by_node.load(Ordering::Relaxed) >= 1).then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = rt.block_on(a);
    }
    report("under the flood", under_flood);
    for (kind, s) in kinds.iter().zip(&stats) {
        println!(
            "{kind:?}: {} frames over {} sessions, {} ended by the node",
            s.frames.load(Ordering::Relaxed),
            s.sessions.load(Ordering::Relaxed),
            s.closed_by_node.load(Ordering::Relaxed)
        );
    }
    for reason in ["not_member", "bad_signature"] {
        let sample = format!("timed_consensus_dropped_total{{reason=\"{reason}\"}}");
        println!("{sample} {}", metric(&m0, &sample));
    }

    // 4. A real higher peer still triggers sync: a new node catches up with node 0.
    let port = free_base_port(1);
    let (cfg, url) = extra_node(
        &dir,
        "late",
        &info.genesis,
        port,
        &info.nodes[0].p2p_addr,
        "",
    );
    spawn_node(&cfg, &dir.join("late.log"), &mut procs);
    let goal = height(&urls[0]).expect("node 0 height");
    wait_for("the new node synced", || {
        (height(&url)? >= goal).then_some(())
    });
    wait_for("the new node out of initial block download", || {
        (!ibd(&url)?).then_some(())
    });
}
