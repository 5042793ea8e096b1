//! One connected peer: its send queues, its counters, and the task that reads and writes its
//! socket.
//!
//! ```text
//!             ┌── priority queue (votes, proposals, blocks, pings) ──┐
//! senders ────┤                                                      ├─► writer ─► socket
//!             └── bulk queue (transactions, addresses) ──────────────┘   (priority first)
//! socket ─► reader (MAC) ─► rate limit ─► decompress ─► decode ─► ping/pong/addr here,
//!                                                              consensus to the network
//! ```
//!
//! Both queues are bounded: when a peer cannot keep up, what does not fit is dropped (peers
//! re-send what matters), so one slow peer never stalls the node. The writer always drains the
//! priority queue first, so a flood of transactions never delays a vote, and writes every frame
//! already waiting in one flush (up to `MAX_COALESCED_BYTES`).

use super::frame::Frame;
use super::message::NetMessage;
use super::peers::Direction;
use super::session::Connection;
use crate::consensus::driver::PeerId;
use crate::types::PublicKey;
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames waiting in each of a peer's send queues.
pub const SEND_QUEUE: usize = 4_096;
/// Bytes waiting in a peer's queues at most: a peer that asks for many large replies and does
/// not read them cannot make this node hold more.
pub const MAX_QUEUED_BYTES: u64 = 64 << 20;
/// Bytes of queued frames written to a peer in one go before the writer flushes.
const MAX_COALESCED_BYTES: u64 = 256 << 10;
/// How often a peer is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A peer that sends nothing for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(60);
/// Messages a peer may send per second on average, and in a burst.
pub const MSGS_PER_SEC: u32 = 20_000;
pub const MSGS_BURST: u32 = 50_000;
/// Bytes a peer may send per second on average (the burst is two full frames).
pub const BYTES_PER_SEC: u32 = 32 << 20;
/// Misbehaviour points per `DROPS_PER_POINT` messages dropped for exceeding the rate.
pub const DROPS_PER_POINT: u64 = 100;

/// Counters of one peer, readable at any time (RPC `getpeerinfo`).
#[derive(Default)]
pub struct PeerStats {
    pub bytes_sent: AtomicU64,
    pub bytes_recv: AtomicU64,
    pub msgs_sent: AtomicU64,
    pub msgs_recv: AtomicU64,
    pub msgs_dropped_out: AtomicU64,
    pub msgs_rate_limited: AtomicU64,
    /// Compressed frames it sent that were within its rate, hence decompressed.
    pub frames_decompressed: AtomicU64,
    /// Bytes queued for sending and not yet written.
    pub queued_bytes: AtomicU64,
    /// Last measured round trip, in microseconds; 0 until the first pong.
    pub ping_us: AtomicU64,
    /// Highest chain height this peer is proven to have (by verified votes, proposals or
    /// certified blocks); 0 until then. The hello's claim is `starting_height`, a hint.
    pub best_height: AtomicU64,
    /// Consensus messages it sent signed by keys outside the masternode set.
    pub not_member: AtomicU64,
    /// When the peer last sent a consensus message this node had not seen (wall-clock
    /// milliseconds; 0 if never): useful peers are protected from eviction.
    pub novel_at_ms: AtomicU64,
}

/// A live peer as the rest of the node sees it.
pub struct PeerHandle {
    pub id: PeerId,
    pub addr: SocketAddr,
    /// Where the peer accepts connections, as its hello said.
    pub listen_addr: String,
    pub node_key: PublicKey,
    /// The peer process's instance nonce: a new one for the same key means it restarted.
    pub instance: u64,
    pub direction: Direction,
    pub version: u32,
    pub starting_height: u64,
    /// The peer's clock minus ours, from its hello's timestamp at the handshake.
    pub clock_offset_ms: i64,
    pub connected_at: SystemTime,
    pub stats: PeerStats,
    priority: mpsc::Sender<Frame>,
    bulk: mpsc::Sender<Frame>,
    /// Cancelled to close this peer.
    pub close: CancellationToken,
}

/// What a peer task reports to the network layer.
pub trait PeerEvents: Send + Sync + 'static {
    /// A consensus message arrived (already decoded, not yet verified).
    fn on_consensus(&self, peer: &PeerHandle, frame: Frame, msg: NetMessage);
    /// Addresses the peer shared.
    fn on_addrs(&self, peer: &PeerHandle, addrs: Vec<String>);
    /// The peer broke the protocol; `points` toward a ban.
    fn on_misbehaviour(&self, peer: &PeerHandle, points: u32, why: &str);
}

/// Both ends of a peer's queues: the handle for senders, the receivers for its task.
pub struct PeerQueues {
    priority: mpsc::Receiver<Frame>,
    bulk: mpsc::Receiver<Frame>,
}

/// Everything a new peer handle is built from.
pub struct PeerMeta {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub listen_addr: String,
    pub node_key: PublicKey,
    pub instance: u64,
    pub direction: Direction,
    pub version: u32,
    pub starting_height: u64,
    pub clock_offset_ms: i64,
}

impl PeerHandle {
    pub fn new(meta: PeerMeta, close: CancellationToken) -> (PeerHandle, PeerQueues) {
        let (ptx, prx) = mpsc::channel(SEND_QUEUE);
        let (btx, brx) = mpsc::channel(SEND_QUEUE);
        let stats = PeerStats::default();
        (
            PeerHandle {
                id: meta.id,
                addr: meta.addr,
                listen_addr: meta.listen_addr,
                node_key: meta.node_key,
                instance: meta.instance,
                direction: meta.direction,
                version: meta.version,
                starting_height: meta.starting_height,
                clock_offset_ms: meta.clock_offset_ms,
                connected_at: SystemTime::now(),
                stats,
                priority: ptx,
                bulk: btx,
                close,
            },
            PeerQueues {
                priority: prx,
                bulk: brx,
            },
        )
    }

    /// Queues a frame; false if the queue was full (the frame is dropped).
    pub fn send_frame(&self, frame: Frame, priority: bool) -> bool {
        let len = frame.body.len() as u64;
        let queued = self.stats.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let q = if priority { &self.priority } else { &self.bulk };
        let ok = queued + len <= MAX_QUEUED_BYTES && q.try_send(frame).is_ok();
        if !ok {
            self.stats.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.stats.msgs_dropped_out.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    pub fn send(&self, msg: &NetMessage) -> bool {
        self.send_frame(msg.to_frame(), msg.is_priority())
    }

    /// Raises the peer's known best height (never lowers it).
    pub fn saw_height(&self, height: u64) {
        self.stats.best_height.fetch_max(height, Ordering::Relaxed);
    }

    pub fn best_height(&self) -> u64 {
        self.stats.best_height.load(Ordering::Relaxed)
    }
}

fn limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    // Both constants are non-zero; `MIN` is only a fallback the compiler cannot rule out.
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// Why a peer's session ended.
#[derive(Debug)]
pub enum PeerEnd {
    Closed,
    Dead,
    Cancelled,
    Error(String),
}

impl std::fmt::Display for PeerEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerEnd::Closed => write!(f, "peer closed the connection"),
            PeerEnd::Dead => write!(f, "no message for {}s", DEAD_AFTER.as_secs()),
            PeerEnd::Cancelled => write!(f, "closed by this node"),
            PeerEnd::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Runs the peer until either side closes, it goes silent, or `handle.close` is cancelled.
pub async fn run(
    conn: Connection,
    handle: &PeerHandle,
    queues: PeerQueues,
    events: &dyn PeerEvents,
) -> PeerEnd {
    let (mut sink, mut stream) = conn.split();
    let PeerQueues {
        mut priority,
        mut bulk,
    } = queues;
    let ping_sent: std::sync::Mutex<Option<(u64, Instant)>> = std::sync::Mutex::new(None);

    let writer = async {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // `queued`: whether the frame came through a queue (and counts in its bytes).
            let (frame, queued) = tokio::select! {
                biased;
                Some(f) = priority.recv() => (f, true),
                Some(f) = bulk.recv() => (f, true),
                _ = ping.tick() => {
                    let nonce = rand::random::<u64>();
                    if let Ok(mut p) = ping_sent.lock() {
                        *p = Some((nonce, Instant::now()));
                    }
                    (NetMessage::Ping(nonce).to_frame(), false)
                }
                else => return PeerEnd::Closed,
            };
            // Every frame already queued goes out with this one in a single write: under load
            // a peer gets one syscall (and the reader one wake-up) for many messages.
            let mut coalesced = 0;
            let mut next = Some((frame, queued));
            while let Some((frame, queued)) = next.take() {
                let (kind, body) = (frame.kind, frame.body.len() as u64);
                let len = body + 6;
                if queued {
                    handle.stats.queued_bytes.fetch_sub(body, Ordering::AcqRel);
                }
                if let Err(e) = sink.feed(frame).await {
                    return PeerEnd::Error(format!("write failed: {e}"));
                }
                handle.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                handle.stats.msgs_sent.fetch_add(1, Ordering::Relaxed);
                crate::metrics::frame_sent(kind, len);
                coalesced += len;
                if coalesced < MAX_COALESCED_BYTES {
                    next = priority
                        .try_recv()
                        .or_else(|_| bulk.try_recv())
                        .ok()
                        .map(|f| (f, true));
                }
            }
            if let Err(e) = sink.flush().await {
                return PeerEnd::Error(format!("write failed: {e}"));
            }
        }
    };

    let reader = async {
        let msgs = limiter(MSGS_PER_SEC, MSGS_BURST);
        let bytes = limiter(BYTES_PER_SEC, 2 * super::frame::MAX_FRAME_BYTES as u32);
        loop {
            let raw = match tokio::time::timeout(DEAD_AFTER, stream.next()).await {
                Err(_) => return PeerEnd::Dead,
                Ok(None) => return PeerEnd::Closed,
                Ok(Some(Err(e))) => {
                    if e.is_peer_fault() {
                        events.on_misbehaviour(handle, 50, &e.to_string());
                    }
                    return PeerEnd::Error(e.to_string());
                }
                Ok(Some(Ok(f))) => f,
            };
            let len = raw.wire_len as u64;
            handle.stats.bytes_recv.fetch_add(len, Ordering::Relaxed);
            handle.stats.msgs_recv.fetch_add(1, Ordering::Relaxed);
            crate::metrics::frame_received(raw.kind, len);
            // The bucket is charged what the frame will cost once decompressed, and checked
            // before that: a frame dropped for the rate is never decompressed.
            let cost = match raw.checked_cost() {
                Ok(c) => c,
                Err(e) => {
                    events.on_misbehaviour(handle, 50, &e.to_string());
                    return PeerEnd::Error(e.to_string());
                }
            };
            let n = NonZeroU32::new(cost.min(u32::MAX as usize) as u32).unwrap_or(NonZeroU32::MIN);
            let over = msgs.check().is_err() || !matches!(bytes.check_n(n), Ok(Ok(())));
            if over {
                let dropped = handle
                    .stats
                    .msgs_rate_limited
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if dropped % DROPS_PER_POINT == 0 {
                    events.on_misbehaviour(handle, 1, "exceeds the message rate limit");
                }
                continue;
            }
            let compressed = raw.is_compressed();
            let frame = match raw.finish() {
                Ok(f) => f,
                Err(e) => {
                    events.on_misbehaviour(handle, 50, &e.to_string());
                    return PeerEnd::Error(e.to_string());
                }
            };
            if compressed {
                handle
                    .stats
                    .frames_decompressed
                    .fetch_add(1, Ordering::Relaxed);
            }
            let msg = match NetMessage::from_frame(&frame) {
                Ok(m) => m,
                Err(e) => {
                    events.on_misbehaviour(handle, 20, &format!("undecodable message: {e}"));
                    continue;
                }
            };
            match msg {
                NetMessage::Ping(n) => {
                    handle.send(&NetMessage::Pong(n));
                }
                NetMessage::Pong(n) => {
                    let sent = ping_sent.lock().ok().and_then(|mut p| p.take());
                    match sent {
                        Some((nonce, at)) if nonce == n => {
                            let us = at.elapsed().as_micros().min(u64::MAX as u128) as u64;
                            handle.stats.ping_us.store(us.max(1), Ordering::Relaxed);
                        }
                        other => {
                            if let Ok(mut p) = ping_sent.lock() {
                                *p = other;
                            }
                        }
                    }
                }
                NetMessage::Addr(addrs) => events.on_addrs(handle, addrs),
                NetMessage::Hello(_) | NetMessage::Proof(_) => {
                    events.on_misbehaviour(handle, 20, "handshake message after the handshake");
                }
                m @ NetMessage::Consensus(_) => events.on_consensus(handle, frame, m),
            }
        }
    };

    tokio::select! {
        _ = handle.close.cancelled() => PeerEnd::Cancelled,
        end = writer => end,
        end = reader => end,
    }
}
