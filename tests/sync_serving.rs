//! Sync requests against a real localnet, from a peer written here that speaks the wire
//! protocol: a flood of `GetHeaders`/`GetBlocks`/`GetSnapshot` is throttled and its sender
//! cut off while blocks keep coming and a payment finalizes; a node whose block record is
//! damaged on disk does not serve it, stays up, and repairs it from a peer.

mod cluster;

use cluster::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use timed::config::keyfile;
use timed::consensus::driver::WireMessage;
use timed::localnet::LocalnetInfo;
use timed::network::frame::Frame;
use timed::network::handshake::LocalIdentity;
use timed::network::message::NetMessage;
use timed::network::session::{self, Connection};
use timed::types::{Amount, Hash32, OutPoint, SecretKey};

/// Requests the hostile peer sends: enough to be banned many times over under the budget.
const FLOOD: u64 = 30_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a session to `addr` as a fresh, unstaked node.
async fn connect(addr: &str, genesis: Hash32) -> Connection {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let me = LocalIdentity {
        network: NET,
        genesis,
        listen_addr: String::new(),
        nonce: rand::random(),
    };
    let key = SecretKey::generate();
    let now = timed::consensus::service::wall_clock_ms();
    let (conn, _) = session::open(stream, &me, &key, 0, now).await.unwrap();
    conn
}

/// After a flood, a live peer keeps its session: it pings, so only a ban can end it (a silent
/// session would end after 60 s anyway, and hide whether the budget did it).
async fn stay_alive(sink: &mut (impl futures_util::Sink<Frame> + Unpin)) {
    loop {
        let ping = NetMessage::Ping(rand::random()).to_frame();
        if sink.send(ping).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Meanwhile blocks keep coming and a payment from the faucet finalizes and is confirmed.
fn payment_goes_through(info: &LocalnetInfo, url: &str, genesis: Hash32) {
    let start = height(url).unwrap();
    wait_for("blocks during the flood", || {
        (height(url)? >= start + 3).then_some(())
    });
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let g = call(url, "getblock", json!([genesis.to_hex(), 2])).unwrap();
    let coinbase = Hash32::from_hex(g["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();
    let (txid, _, _) = send(
        url,
        &faucet,
        OutPoint::new(coinbase, 0),
        have,
        100_000_000,
        &SecretKey::generate(),
    );
    wait_final_and_confirmed(url, &txid);
}

fn genesis_of(url: &str) -> Hash32 {
    Hash32::from_hex(
        call(url, "getblockhash", json!([0]))
            .unwrap()
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn sync_floods_are_throttled_and_damaged_records_do_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let node = &info.nodes[0];
    let url = node.rpc_url.clone();
    wait_for("a few blocks", || (height(&url)? >= 3).then_some(()));
    let genesis = genesis_of(&url);
    let rt = runtime();

    // The flood: every kind of sync request, as fast as the socket takes them, while
    // counting the replies and noticing when the node hangs up.
    let replies = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let conn = rt.block_on(connect(&node.p2p_addr, genesis));
    {
        let (replies, sent, closed) = (replies.clone(), sent.clone(), closed.clone());
        rt.spawn(async move {
            let (mut sink, mut stream) = conn.split();
            let reader = async {
                while let Some(Ok(raw)) = stream.next().await {
                    let Ok(frame) = raw.finish() else { break };
                    if let Ok(NetMessage::Consensus(
                        WireMessage::Blocks(_) | WireMessage::Headers(_) | WireMessage::Snapshot(_),
                    )) = NetMessage::from_frame(&frame)
                    {
                        replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            let writer = async {
                for i in 0..FLOOD {
                    let msg = match i % 3 {
                        0 => WireMessage::GetHeaders { from_height: 1 },
                        1 => WireMessage::GetBlocks { from_height: 1 },
                        _ => WireMessage::GetSnapshot { height: 0, page: 0 },
                    };
                    if sink
                        .feed(NetMessage::Consensus(msg).to_frame())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    if i % 256 == 0 && sink.flush().await.is_err() {
                        return;
                    }
                }
                let _ = sink.flush().await;
                stay_alive(&mut sink).await;
            };
            tokio::select! {
                _ = reader => {}
                _ = writer => {}
            }
            closed.store(true, Ordering::Relaxed);
        });
    }

    payment_goes_through(&info, &url, genesis);

    // The flood was throttled: its sender was cut off (banned) after a small share of
    // answers.
    wait_for("the flooding peer cut off", || {
        closed.load(Ordering::Relaxed).then_some(())
    });
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        replies.load(Ordering::Relaxed),
    );
    assert!(
        answered * 20 < sent.max(1),
        "{answered} answers to {sent} requests"
    );

    // A damaged block record: node 0 stops, block 1's body is overwritten, it restarts.
    let pid = node.pid.unwrap();
    signal(pid, "-TERM");
    wait_for("node 0 stopped", || {
        (!node.rpc_cookie.exists() && cluster::process_gone(pid)).then_some(())
    });
    let lock = wait_for("node 0's lock", || {
        timed::storage::DataDirLock::acquire(&node.datadir).ok()
    });
    {
        let storage = timed::storage::Storage::open(&node.datadir.join("db"), 16 << 20).unwrap();
        let h1 = storage.block_hash_at(1).unwrap().unwrap();
        cluster::damage_block_body(&storage, &node.datadir.join("db"), &h1);
    }
    drop(lock);
    let log = node.log.with_extension("restart.log");
    spawn_node(&node.config, &log, &mut procs);
    wait_for("node 0 back", || {
        node.rpc_cookie.exists().then_some(())?;
        height(&url)
    });

    // A syncing peer asks from the damaged block: nothing is served, the node keeps
    // committing, fetches the block from a peer, rewrites the record, and serves it.
    let mut conn = rt.block_on(connect(&node.p2p_addr, genesis));
    let msg = NetMessage::Consensus(WireMessage::GetBlocks { from_height: 1 });
    rt.block_on(conn.send(msg.to_frame())).unwrap();
    wait_for("the damaged record reported", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("damaged database record").then_some(())
    });
    let before = height(&url).unwrap();
    wait_for("node 0 still committing blocks", || {
        (height(&url)? > before + 1).then_some(())
    });
    let _guard = rt.enter();
    let first = rt
        .block_on(tokio::time::timeout(DEADLINE, async {
            let ask = NetMessage::Consensus(WireMessage::GetBlocks { from_height: 1 }).to_frame();
            loop {
                conn.send(ask.clone()).await.unwrap();
                let wait = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(frame)) = session::read_frame(&mut conn).await {
                        if let Ok(NetMessage::Consensus(WireMessage::Blocks(b))) =
                            NetMessage::from_frame(&frame)
                        {
                            return b.first().map(|(b, _)| b.header.height);
                        }
                    }
                    None
                });
                if let Ok(Some(h)) = wait.await {
                    return h;
                }
            }
        }))
        .expect("blocks from height 2 within the deadline");
    assert_eq!(first, 1, "the damaged block is served again once repaired");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("repaired a damaged block record"), "{text}");
}

#[test]
fn finality_request_floods_are_cut_by_their_budget_while_blocks_and_payments_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let node = &info.nodes[0];
    let url = node.rpc_url.clone();
    wait_for("a few blocks", || (height(&url)? >= 3).then_some(()));
    let genesis = genesis_of(&url);
    let rt = runtime();

    // The flood: `GetFinality` for transactions no one has, as fast as the socket takes
    // them. Each costs the node a lookup and no reply; before, each also took a turn on the
    // consensus task, with no budget, and its sender was never cut off.
    let sent = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let conn = rt.block_on(connect(&node.p2p_addr, genesis));
    {
        let (sent, closed) = (sent.clone(), closed.clone());
        rt.spawn(async move {
            let (mut sink, mut stream) = conn.split();
            let reader = async { while let Some(Ok(_)) = stream.next().await {} };
            let writer = async {
                for _ in 0..FLOOD {
                    let ask = WireMessage::GetFinality(Hash32(rand::random()));
                    if sink
                        .feed(NetMessage::Consensus(ask).to_frame())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 256 == 0 && sink.flush().await.is_err() {
                        return;
                    }
                }
                stay_alive(&mut sink).await;
            };
            tokio::select! {
                _ = reader => {}
                _ = writer => {}
            }
            closed.store(true, Ordering::Relaxed);
        });
    }

    payment_goes_through(&info, &url, genesis);

    // The budget cut the flood: past it, refusals earned its sender a ban (the flood stays
    // within the per-peer message rate's burst, so only the request budget can have done it).
    wait_for("the flooding peer cut off", || {
        closed.load(Ordering::Relaxed).then_some(())
    });
    assert!(sent.load(Ordering::Relaxed) > 0);
}

// The floods here stay within a peer's message-rate burst: what cuts them off is the request
// budget, not the frame rate limit.
const _: () = assert!(FLOOD <= timed::network::peer::MSGS_BURST as u64);
