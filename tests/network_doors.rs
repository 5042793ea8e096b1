//! The connection manager under attack, over real TCP on loopback with in-process network
//! services: an impostor replaying a masternode's handshake while it restarts, inbound
//! floods against a masternode's place, outbound slots full of gossiped junk, and a
//! misbehaving local peer that reconnects from new ports.
//!
//! Loopback offers a whole /8, so "other IPs" are 127.x.y.z source addresses.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timed::network::frame::{Frame, FrameCodec};
use timed::network::handshake::LocalIdentity;
use timed::network::manager::{NetworkParams, NetworkService};
use timed::network::peers::{PeerLimits, Slot};
use timed::network::session::{self, Connection};
use timed::types::{Hash32, Network, PublicKey, SecretKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{Decoder, Framed};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const GENESIS: Hash32 = Hash32([9; 32]);
/// Generous for loopback on a loaded machine, and below the 60 s after which a silent
/// session is declared dead (so a stale session cannot simply time out within it).
const DEADLINE: Duration = Duration::from_secs(40);

struct Node {
    net: Arc<NetworkService>,
    addr: Option<SocketAddr>,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn node(key: &SecretKey, listen: bool, seeds: Vec<String>, limits: PeerLimits) -> Node {
    let stop = CancellationToken::new();
    let net = NetworkService::new(
        NetworkParams {
            network: Network::Localnet,
            genesis: GENESIS,
            key: key.clone(),
            listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
            advertise: String::new(),
            seeds,
            limits,
        },
        stop.clone(),
        TaskTracker::new(),
    );
    let addr = net.start().await.unwrap();
    Node { net, addr, stop }
}

fn hostile_identity() -> LocalIdentity {
    LocalIdentity {
        network: Network::Localnet,
        genesis: GENESIS,
        listen_addr: String::new(),
        nonce: rand::random(),
    }
}

/// Waits for `cond`, polling; panics naming `what` at the deadline.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sessions_of(n: &NetworkService, key: &PublicKey) -> Vec<SocketAddr> {
    n.peer_snapshots()
        .into_iter()
        .filter(|p| p.node_key == *key)
        .map(|p| p.addr)
        .collect()
}

/// A hostile node from source IP `from`: completes the handshake under `key` and returns
/// the session, or `None` if the node closed the connection first.
async fn hostile_session(from: &str, to: SocketAddr, key: &SecretKey) -> Option<Connection> {
    session_with_clock(from, to, key, timed::consensus::service::wall_clock_ms()).await
}

/// As `hostile_session`, from a node whose clock reads `now_ms`.
async fn session_with_clock(
    from: &str,
    to: SocketAddr,
    key: &SecretKey,
    now_ms: u64,
) -> Option<Connection> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = sock.connect(to).await.ok()?;
    session::open(stream, &hostile_identity(), key, 0, now_ms)
        .await
        .ok()
        .map(|(c, _)| c)
}

/// Whether the other side ends `conn` before the deadline (reading and dropping frames).
async fn closed_by_peer(conn: &mut Connection) -> bool {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match conn.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A TCP relay to `to` that records the bytes of its first connection's dialler and can be
/// frozen: it then stops forwarding but keeps both sockets open, as a crashed host whose
/// connection the other side has not noticed yet.
async fn freezable_relay(
    to: SocketAddr,
    freeze: CancellationToken,
) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&recorded);
    tokio::spawn(async move {
        let (mut a, _) = l.accept().await.unwrap();
        let mut b = TcpStream::connect(to).await.unwrap();
        let (mut buf_a, mut buf_b) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            tokio::select! {
                _ = freeze.cancelled() => break,
                r = a.read(&mut buf_a) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        rec.lock().unwrap().extend_from_slice(&buf_a[..n]);
                        if b.write_all(&buf_a[..n]).await.is_err() { break; }
                    }
                },
                r = b.read(&mut buf_b) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => if a.write_all(&buf_b[..n]).await.is_err() { break; },
                },
            }
        }
        // Frozen: hold the node's side open and silent until the test ends.
        drop(a);
        std::future::pending::<()>().await;
        drop(b);
    });
    (addr, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_replaying_a_masternodes_handshake_is_refused_and_the_restarted_masternode_regains_its_place(
) {
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let n_addr = n.addr.unwrap();
    let m_key = SecretKey::generate();
    let m_pub = m_key.public_key();
    n.net.set_masternodes(vec![(m_pub, String::new())]);

    // M reaches N through a relay that records what M sends.
    let freeze = CancellationToken::new();
    let (relay, recorded) = freezable_relay(n_addr, freeze.clone()).await;
    let m1 = node(
        &m_key,
        false,
        vec![relay.to_string()],
        PeerLimits::default(),
    )
    .await;
    wait_for("M's first session at N", || {
        sessions_of(&n.net, &m_pub).len() == 1
    })
    .await;
    let stale = sessions_of(&n.net, &m_pub)[0];

    // M crashes: N does not notice (the relay holds its socket open, silent).
    freeze.cancel();
    drop(m1);

    // The impostor replays M's captured hello and proof to N on a new connection.
    let mut captured = bytes::BytesMut::from(&recorded.lock().unwrap()[..]);
    let hello: Frame = FrameCodec.decode(&mut captured).unwrap().unwrap();
    let proof: Frame = FrameCodec.decode(&mut captured).unwrap().unwrap();
    let mut impostor = Framed::new(TcpStream::connect(n_addr).await.unwrap(), FrameCodec);
    let impostor_addr = impostor.get_ref().local_addr().unwrap();
    impostor.send(hello).await.unwrap();
    impostor.send(proof).await.unwrap();
    let refused = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(_)) = impostor.next().await {}
    })
    .await;
    assert!(refused.is_ok(), "N closes the impostor's connection");
    assert!(!sessions_of(&n.net, &m_pub).contains(&impostor_addr));

    // The real M restarts (a new process, the same key) and dials N directly: its fresh
    // proof wins over the stale session.
    let m2 = node(
        &m_key,
        false,
        vec![n_addr.to_string()],
        PeerLimits::default(),
    )
    .await;
    wait_for("the restarted M to take its place at N", || {
        let s = sessions_of(&n.net, &m_pub);
        s.len() == 1 && s[0] != stale
    })
    .await;
    assert!(n.net.connected_keys().contains(&m_pub));
    drop(m2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_floods_cannot_keep_a_masternode_out() {
    let limits = PeerLimits {
        max_inbound: 4,
        max_outbound: 4,
        max_inbound_per_ip: 2,
        max_inbound_per_subnet: 3,
        cap_loopback: true,
    };
    let n = node(&SecretKey::generate(), true, vec![], limits).await;
    let n_addr = n.addr.unwrap();
    let m_key = SecretKey::generate();
    n.net
        .set_masternodes(vec![(m_key.public_key(), String::new())]);

    // One IP opens ten connections: it gets its two.
    let mut held = Vec::new();
    for _ in 0..10 {
        if let Some(c) = hostile_session("127.5.5.5", n_addr, &SecretKey::generate()).await {
            held.push(c);
        }
    }
    wait_for("the per-IP cap", || n.net.peer_count() == 2).await;
    // Many IPs fill every inbound slot with sessions that never answer.
    for i in 1..=8u8 {
        let from = format!("127.6.{i}.1");
        if let Some(c) = hostile_session(&from, n_addr, &SecretKey::generate()).await {
            held.push(c);
        }
    }
    wait_for("the inbound slots to be full", || n.net.peer_count() >= 4).await;

    // The masternode still gets in, by evicting one of them.
    let m = node(
        &m_key,
        false,
        vec![n_addr.to_string()],
        PeerLimits::default(),
    )
    .await;
    wait_for("the masternode's session", || {
        n.net.connected_keys().contains(&m_key.public_key())
    })
    .await;
    drop((m, held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_slots_full_of_gossiped_junk_still_dial_masternodes() {
    // Three junk nodes that accept sessions and then say nothing.
    let mut junk = Vec::new();
    for _ in 0..3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        junk.push(l.local_addr().unwrap());
        tokio::spawn(async move {
            let key = SecretKey::generate();
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                let now = timed::consensus::service::wall_clock_ms();
                if let Ok((c, _)) = session::open(s, &hostile_identity(), &key, 0, now).await {
                    held.push(c);
                }
            }
        });
    }
    let limits = PeerLimits {
        max_outbound: 2,
        ..PeerLimits::default()
    };
    let n = node(&SecretKey::generate(), false, vec![], limits).await;
    for a in &junk {
        n.net.add_peer_addr(*a);
    }
    wait_for("junk to fill the outbound slots", || {
        n.net.registry.slot_count(Slot::Outbound) == 2 && n.net.peer_count() == 2
    })
    .await;

    let m_key = SecretKey::generate();
    let m = node(&m_key, true, vec![], PeerLimits::default()).await;
    n.net
        .set_masternodes(vec![(m_key.public_key(), m.addr.unwrap().to_string())]);
    wait_for("N to dial the masternode", || {
        n.net.connected_keys().contains(&m_key.public_key())
    })
    .await;
    assert_eq!(n.net.registry.slot_count(Slot::Outbound), 2);
    assert_eq!(n.net.registry.slot_count(Slot::Masternode), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_local_peer_stays_banned_when_it_reconnects_from_new_ports() {
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let n_addr = n.addr.unwrap();
    let bad = SecretKey::generate();
    let mut conn = hostile_session("127.0.0.1", n_addr, &bad)
        .await
        .expect("a first session");
    // Authenticated frames of no known type: 20 points each.
    for _ in 0..5 {
        let _ = conn
            .send(Frame {
                kind: 200,
                body: vec![1, 2, 3],
            })
            .await;
    }
    assert!(
        closed_by_peer(&mut conn).await,
        "N drops the peer it banned"
    );
    assert!(n
        .net
        .registry
        .is_key_banned(&bad.public_key(), std::time::Instant::now()));
    // From new ports: the key is still banned, each session is closed at once.
    for _ in 0..3 {
        match hostile_session("127.0.0.1", n_addr, &bad).await {
            None => {}
            Some(mut c) => assert!(closed_by_peer(&mut c).await, "a banned key is refused"),
        }
    }
    assert!(!n.net.connected_keys().contains(&bad.public_key()));
    // Other local peers are unaffected: loopback as an address is not banned.
    let good = SecretKey::generate();
    let mut ok = hostile_session("127.0.0.1", n_addr, &good)
        .await
        .expect("another local node connects");
    wait_for("the honest local peer", || {
        n.net.connected_keys().contains(&good.public_key())
    })
    .await;
    let _ = ok
        .send(timed::network::message::NetMessage::Ping(1).to_frame())
        .await;
}

/// Frames of one compressed flood: enough that their claimed bytes outrun the peer's byte
/// budget many times over, however slowly this machine sends them.
const COMPRESSED_FLOOD: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_frames_past_a_peers_rate_are_dropped_without_being_decompressed() {
    use timed::network::message::NetMessage;
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let n_addr = n.addr.unwrap();
    let bad = SecretKey::generate();
    let mut conn = hostile_session("127.0.0.61", n_addr, &bad)
        .await
        .expect("the flooder's session");
    wait_for("the flooder's session at N", || {
        !sessions_of(&n.net, &bad.public_key()).is_empty()
    })
    .await;
    // A valid `Addr` of 300 KB (1,000 junk addresses) that the session compresses to a
    // couple of kilobytes: each frame claims 300 KB once expanded.
    let addr = NetMessage::Addr(vec!["x".repeat(290); 1_000]).to_frame();
    let before = timed::metrics::frames_decompressed();
    for _ in 0..COMPRESSED_FLOOD {
        conn.feed(addr.clone()).await.expect("the node reads on");
    }
    conn.flush().await.expect("the node reads on");
    let hostile = || {
        n.net
            .peer_snapshots()
            .into_iter()
            .find(|p| p.node_key == bad.public_key())
    };
    wait_for("N to read the whole flood", || {
        hostile().is_some_and(|p| p.msgs_recv >= COMPRESSED_FLOOD)
    })
    .await;
    let p = hostile().expect("the flooder is still connected: dropping is not a ban");
    let decompressed = timed::metrics::frames_decompressed() - before;
    let admitted = p.msgs_recv - p.msgs_rate_limited;
    assert!(
        p.msgs_rate_limited >= COMPRESSED_FLOOD / 4,
        "most of the flood is over the byte budget: {} of {COMPRESSED_FLOOD} dropped",
        p.msgs_rate_limited
    );
    assert_eq!(
        p.frames_decompressed, admitted,
        "exactly the admitted frames are decompressed"
    );
    // The process-wide counter (other tests in this binary may add a few frames of their
    // own): the dropped frames never reached a decompressor.
    assert!(
        decompressed < admitted + COMPRESSED_FLOOD / 8,
        "{decompressed} frames decompressed, {admitted} admitted, {} dropped",
        p.msgs_rate_limited
    );

    // An honest peer is served meanwhile: its ping is answered.
    let good = SecretKey::generate();
    let mut ok = hostile_session("127.0.0.62", n_addr, &good)
        .await
        .expect("an honest peer connects");
    ok.send(NetMessage::Ping(77).to_frame()).await.unwrap();
    let pong = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(f)) = session::read_frame(&mut ok).await {
            if NetMessage::from_frame(&f) == Ok(NetMessage::Pong(77)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pong, Ok(true), "the honest peer's ping is answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_key_ban_ends_the_session_and_refuses_the_key_from_any_address() {
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let n_addr = n.addr.unwrap();
    let banned = SecretKey::generate();
    let mut conn = hostile_session("127.0.0.71", n_addr, &banned)
        .await
        .expect("a first session");
    wait_for("the session at N", || {
        n.net.connected_keys().contains(&banned.public_key())
    })
    .await;
    // The operator bans the key (RPC `setban <key> add`).
    let now = std::time::Instant::now();
    n.net
        .ban_key(banned.public_key(), now + Duration::from_secs(600));
    assert!(
        closed_by_peer(&mut conn).await,
        "the banned key's session ends"
    );
    // From another address, the key is refused all the same.
    if let Some(mut c) = hostile_session("127.0.0.72", n_addr, &banned).await {
        assert!(closed_by_peer(&mut c).await, "a banned key is refused");
    }
    // The node forgets the session a moment after the socket closes.
    wait_for("the banned key gone from N", || {
        !n.net.connected_keys().contains(&banned.public_key())
    })
    .await;
    // Lifted (`setban <key> remove`), it connects again.
    assert!(n
        .net
        .registry
        .unban_key(&banned.public_key(), std::time::Instant::now()));
    let _again = hostile_session("127.0.0.73", n_addr, &banned)
        .await
        .expect("the key connects once the ban is lifted");
    wait_for("the key back at N", || {
        n.net.connected_keys().contains(&banned.public_key())
    })
    .await;
}

/// Each peer's clock offset is what its hello's timestamp says against this node's clock at
/// the handshake, and the node's own offset (`getnetworkinfo`'s `timeoffset`,
/// `timed_clock_offset_seconds`) is their median: one peer far off cannot move it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_clock_offsets_are_measured_at_the_handshake_and_their_median_ignores_an_outlier() {
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let n_addr = n.addr.unwrap();
    assert_eq!(n.net.clock_offset_ms(), None, "no peers, no offset");
    let now = timed::consensus::service::wall_clock_ms();
    // Two peers 30 s ahead, one 4 minutes behind (inside the 5 minutes a hello may be off).
    let peers = [
        ("127.0.0.81", now + 30_000, 30_000),
        ("127.0.0.82", now + 30_000, 30_000),
        ("127.0.0.83", now - 240_000, -240_000),
    ];
    let mut held = Vec::new();
    let mut keys = Vec::new();
    for (from, clock, _) in peers {
        let key = SecretKey::generate();
        held.push(
            session_with_clock(from, n_addr, &key, clock)
                .await
                .expect("a session"),
        );
        keys.push(key.public_key());
    }
    wait_for("three sessions at N", || n.net.peer_snapshots().len() == 3).await;
    // The measurement includes the handshake's own delay on loopback: milliseconds, far
    // inside this tolerance and far from the offsets set.
    let near = |got: i64, want: i64| (got - want).abs() < 10_000;
    for (key, (_, _, offset)) in keys.iter().zip(peers) {
        let p = n
            .net
            .peer_snapshots()
            .into_iter()
            .find(|p| p.node_key == *key)
            .unwrap();
        assert!(
            near(p.clock_offset_ms, offset),
            "{} vs {offset}",
            p.clock_offset_ms
        );
    }
    let median = n.net.clock_offset_ms().unwrap();
    assert!(near(median, 30_000), "median {median}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_shares_in_another_voters_name_get_their_sender_banned() {
    use timed::consensus::driver::WireMessage;
    use timed::network::message::NetMessage;
    use timed::types::slot::SlotShare;
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let sender = SecretKey::generate();
    let victim = SecretKey::generate();
    let mut conn = hostile_session("127.0.0.1", n.addr.unwrap(), &sender)
        .await
        .expect("a session");
    let share = |voter: PublicKey| {
        NetMessage::Consensus(WireMessage::SlotShare(SlotShare {
            set_hash: Hash32([1; 32]),
            slot: 7,
            root: Hash32([2; 32]),
            voter,
            signature: timed::types::BlsSignature([0; 96]),
        }))
        .to_frame()
    };
    // Its own shares (sent straight to an aggregator, as a voter does) cost it nothing.
    for _ in 0..20 {
        conn.send(share(sender.public_key())).await.unwrap();
    }
    // A pong answers a ping sent after them: the node has read every share by then.
    conn.send(NetMessage::Ping(77).to_frame()).await.unwrap();
    let ponged = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(raw)) = conn.next().await {
            let message = raw.finish().ok().map(|f| NetMessage::from_frame(&f));
            if message == Some(Ok(NetMessage::Pong(77))) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ponged,
        Ok(true),
        "the node answers after the voter's own shares"
    );
    assert!(
        !n.net
            .registry
            .is_key_banned(&sender.public_key(), std::time::Instant::now()),
        "a voter's own shares are not held against it"
    );
    // Shares naming another voter are forged: a relay never carries them.
    for _ in 0..12 {
        if conn.send(share(victim.public_key())).await.is_err() {
            break;
        }
    }
    assert!(closed_by_peer(&mut conn).await, "the forger is dropped");
    assert!(n
        .net
        .registry
        .is_key_banned(&sender.public_key(), std::time::Instant::now()));
}

/// Reads `conn` until `stop` holds for a message: every consensus message read before it
/// (the others, such as addresses and pings, are skipped), and that message.
async fn read_until(
    conn: &mut Connection,
    stop: impl Fn(&timed::network::message::NetMessage) -> bool,
) -> (
    Vec<timed::consensus::driver::WireMessage>,
    timed::network::message::NetMessage,
) {
    use timed::network::message::NetMessage;
    let mut before = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(raw)) = conn.next().await {
            let Some(Ok(message)) = raw.finish().ok().map(|f| NetMessage::from_frame(&f)) else {
                continue;
            };
            if stop(&message) {
                return Some(message);
            }
            if let NetMessage::Consensus(w) = message {
                before.push(w);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(message)) => (before, message),
        _ => panic!("the awaited message never came"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_travel_by_announcement_and_a_peer_gets_only_the_bodies_it_was_offered() {
    use timed::consensus::driver::WireMessage;
    use timed::consensus::service::Transport;
    use timed::network::manager::NetworkTransport;
    use timed::network::message::NetMessage;
    use timed::types::transfer::signed_transfer;
    use timed::types::{Amount, OutPoint, TxOutput};
    let n = node(&SecretKey::generate(), true, vec![], PeerLimits::default()).await;
    let mut conn = hostile_session("127.0.0.1", n.addr.unwrap(), &SecretKey::generate())
        .await
        .expect("a session");
    // A second peer, which announces what the node then takes "from" it.
    let mut source = hostile_session("127.0.0.1", n.addr.unwrap(), &SecretKey::generate())
        .await
        .expect("a second session");
    wait_for("the sessions", || n.net.peer_count() == 2).await;
    let owner = SecretKey::generate();
    let pay = |n: u8| {
        let out = TxOutput {
            amount: Amount(1_000),
            key_hash: owner.public_key().key_hash(),
        };
        let spent = OutPoint::new(Hash32([n; 32]), 0);
        Arc::new(signed_transfer(
            Network::Localnet,
            &owner,
            &[spent],
            vec![out],
        ))
    };
    let (tx, other) = (pay(1), pay(2));
    let ask =
        |txids: Vec<Hash32>| NetMessage::Consensus(WireMessage::GetTxs(Arc::new(txids))).to_frame();
    let is_pong = |k: u64| move |m: &NetMessage| *m == NetMessage::Pong(k);
    let bodies = |msgs: &[WireMessage]| {
        (msgs.iter())
            .filter(|m| matches!(m, WireMessage::Transaction(_)))
            .count()
    };

    // Replies to requests travel in the bulk queue, behind which a pong may overtake them:
    // a pong says a request was read, the next bulk message that nothing was sent before it.

    // Asked for before it was offered: nothing comes.
    conn.send(ask(vec![tx.txid()])).await.unwrap();
    conn.send(NetMessage::Ping(1).to_frame()).await.unwrap();
    read_until(&mut conn, is_pong(1)).await;

    // The other peer announces it (the node asks it for the body), and consensus takes it:
    // the first peer hears its txid, not its body.
    let relay = |t: &Arc<timed::types::Transaction>| {
        NetworkTransport(Arc::clone(&n.net)).relay(WireMessage::Transaction(Arc::clone(t)))
    };
    let txid = tx.txid();
    let announced = NetMessage::Consensus(WireMessage::TxInv(Arc::new(vec![txid])));
    source.send(announced.to_frame()).await.unwrap();
    let asked_source = NetMessage::Consensus(WireMessage::GetTxs(Arc::new(vec![txid])));
    read_until(&mut source, |m| *m == asked_source).await;
    relay(&tx);
    let (before, _) = read_until(
        &mut conn,
        |m| matches!(m, NetMessage::Consensus(WireMessage::TxInv(t)) if t.contains(&txid)),
    )
    .await;
    assert_eq!(
        bodies(&before),
        0,
        "announced, not pushed, and not served unoffered"
    );

    // Asked twice, served once; a body it was not offered is not served.
    for _ in 0..2 {
        conn.send(ask(vec![txid, other.txid()])).await.unwrap();
    }
    let is_body = |id: Hash32| {
        move |m: &NetMessage| match m {
            NetMessage::Consensus(WireMessage::Transaction(t)) => t.txid() == id,
            _ => false,
        }
    };
    read_until(&mut conn, is_body(txid)).await;
    conn.send(NetMessage::Ping(2).to_frame()).await.unwrap();
    let (mut between, _) = read_until(&mut conn, is_pong(2)).await;

    // A local submit's body goes to every peer at once, no announcement first; nothing else
    // was served before it.
    NetworkTransport(Arc::clone(&n.net)).broadcast(WireMessage::Transaction(Arc::clone(&other)));
    between.extend(read_until(&mut conn, is_body(other.txid())).await.0);
    assert_eq!(bodies(&between), 0, "each offered body served once");

    // What the peer announces and the node lacks, the node asks it for, once.
    let unknown = pay(3).txid();
    let inv = NetMessage::Consensus(WireMessage::TxInv(Arc::new(vec![unknown, txid])));
    conn.send(inv.to_frame()).await.unwrap();
    let (_, asked) = read_until(&mut conn, |m| {
        matches!(m, NetMessage::Consensus(WireMessage::GetTxs(_)))
    })
    .await;
    assert_eq!(
        asked,
        NetMessage::Consensus(WireMessage::GetTxs(Arc::new(vec![unknown]))),
        "only what it lacks"
    );
    conn.send(inv.to_frame()).await.unwrap();
    conn.send(NetMessage::Ping(3).to_frame()).await.unwrap();
    read_until(&mut conn, is_pong(3)).await;
    // A transaction no peer is known to hold (this node's own, sent again) goes whole: an
    // announcement would point at this node alone.
    let last = pay(4);
    relay(&last);
    let (after, _) = read_until(&mut conn, is_body(last.txid())).await;
    assert!(
        !after.iter().any(|m| matches!(m, WireMessage::GetTxs(_))),
        "asked already: not asked again before the deadline"
    );
}
