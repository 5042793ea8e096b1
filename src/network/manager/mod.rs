//! The connection manager: accepts and dials peers, keeps one session per node key, floods
//! gossip without echoes, routes sync requests, and carries consensus messages both ways.
//!
//! ```text
//! listener ─accept─┐
//! dialer ──dial────┼─► session::open (hello) ─► register (one per key) ─► peer::run
//!   ▲ masternodes  │                                                        │
//!   │ seeds, gossip│              consensus ◄── on_consensus (dedup) ◄──────┘
//!   └──────────────┘              consensus ──► Transport::broadcast ─► every peer but holders
//! ```
//!
//! Discovery follows the chain: the node dials every masternode of the current set at the
//! address its registration (or its signed hello) gives, so block production never waits for
//! gossip. A masternode is identified by its key, not its IP, so many may share one host.
//!
//! One service, one file per concern: this file holds its state and what the rest of the node
//! reads of it; `dialer.rs` whom to dial and when (and the repair and upkeep loops);
//! `sessions.rs` accepting, the session's life, admission, eviction and scores; `router.rs`
//! what goes where (flood, relay, sync and finality requests, consensus both ways);
//! `relay.rs` transactions passed on by announcement.

use super::eviction::{self, Candidate};
use super::frame::Frame;
use super::gossip::{message_id, SeenCache};
use super::handshake::{Hello, LocalIdentity};
use super::message::{NetMessage, MAX_ADDRS};
use super::peer::{self, PeerEnd, PeerEvents, PeerHandle, PeerMeta};
use super::peers::{BanTarget, Direction, PeerLimits, PeerRegistry, Slot, Subnet};
use super::session;
use super::sync_server::{is_sync_request, Admission, FinalityAdmission, SyncServer};
use super::tx_relay::{self, TxRelay};
use crate::clock::wall_clock_ms;
use crate::consensus::driver::{PeerId, WireMessage, RELAY_FANOUT};
use crate::consensus::service::{ConsensusHandle, Transport};
use crate::types::{BlockHash, Network, PublicKey, SecretKey};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use rand::seq::SliceRandom;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod dialer;
mod relay;
mod router;
mod sessions;

pub use router::NetworkTransport;

/// How often the dialer looks for peers to connect to.
pub const DIAL_EVERY: Duration = Duration::from_millis(500);
/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest wait before dialling an address again after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often blocks found damaged are asked for again.
pub const REPAIR_EVERY: Duration = Duration::from_secs(1);
/// How often addresses are shared and stale state is cleaned.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(30);
/// Misbehaviour points per this many consensus messages signed by a non-member: an honest
/// peer a set change ahead sends a few; thousands are a flood.
pub const NOT_MEMBER_DROPS_PER_POINT: u64 = 100;

/// Keys whose votes, batches and proposals are worth a signature check: the current
/// masternode set and the one before it (a set change settles over a block or two).
#[derive(Default)]
struct MemberKeys {
    current: HashSet<PublicKey>,
    previous: HashSet<PublicKey>,
}

impl MemberKeys {
    /// Unknown (no set published yet) lets everything through to consensus, which checks.
    fn admits(&self, key: &PublicKey) -> bool {
        self.current.is_empty() || self.current.contains(key) || self.previous.contains(key)
    }
}

/// The key that signed a consensus message, for those that are signed by one.
fn signer(msg: &WireMessage) -> Option<&PublicKey> {
    match msg {
        WireMessage::VoteBatch(b) => Some(&b.voter),
        WireMessage::Vote(v) => Some(&v.validator),
        WireMessage::Proposal(p) => Some(&p.proposer),
        WireMessage::CompactProposal(p) => Some(&p.proposer),
        WireMessage::SlotAnnouncement(a) => Some(&a.aggregator),
        WireMessage::SlotShare(s) => Some(&s.voter),
        WireMessage::LockReport(r) => Some(&r.voter),
        _ => None,
    }
}

/// What the network layer needs to know to run.
#[derive(Clone)]
pub struct NetworkParams {
    pub network: Network,
    pub genesis: BlockHash,
    pub key: SecretKey,
    /// Where to accept connections (`None`: outbound only).
    pub listen: Option<SocketAddr>,
    /// The address announced to peers (`host:port`); empty if none.
    pub advertise: String,
    /// Addresses to dial besides the masternodes (configured peers).
    pub seeds: Vec<String>,
    pub limits: PeerLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot listen for peers on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A peer's public facts and counters, for `getpeerinfo`.
#[derive(Clone, Debug)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub listen_addr: String,
    pub node_key: PublicKey,
    pub inbound: bool,
    pub version: u32,
    pub connected_at_secs: u64,
    pub starting_height: u64,
    pub best_height: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    /// Frames dropped for exceeding the peer's rate limit.
    pub msgs_rate_limited: u64,
    /// Compressed frames within the rate, hence decompressed.
    pub frames_decompressed: u64,
    pub ping_secs: Option<f64>,
    pub score: u32,
    /// The peer's clock minus ours at the handshake, in milliseconds.
    pub clock_offset_ms: i64,
}

struct Backoff {
    next_try: Instant,
    wait: Duration,
}

/// The shared state of the P2P layer.
pub struct NetworkService {
    params: NetworkParams,
    identity: LocalIdentity,
    pub registry: PeerRegistry,
    peers: DashMap<PeerId, Arc<PeerHandle>>,
    by_key: DashMap<PublicKey, PeerId>,
    seen: SeenCache,
    /// Transactions passed on by announcement: bodies held for peers, asks in flight.
    tx_relay: std::sync::Mutex<TxRelay>,
    /// The relay's clock starts here (its deadlines are milliseconds since).
    started: Instant,
    next_id: AtomicU64,
    consensus: OnceLock<ConsensusHandle>,
    /// Answers sync requests off the consensus thread (blocks, headers, snapshot pages).
    sync_server: OnceLock<Arc<SyncServer>>,
    /// Masternodes of the current set other than this node: key and announced address.
    masternodes: ArcSwap<Vec<(PublicKey, String)>>,
    /// Who may sign consensus messages: checked before they queue for consensus.
    members: ArcSwap<MemberKeys>,
    /// Addresses announced in proven hellos by masternodes of the current set (their newest
    /// address); at most one per member.
    announced: DashMap<PublicKey, String>,
    backoff: DashMap<String, Backoff>,
    dialing: DashMap<String, ()>,
    /// Inbound connections still in their handshake: when they were accepted and how to
    /// close them (they hold inbound slots and can be evicted).
    pending: DashMap<SocketAddr, (Instant, CancellationToken)>,
    /// This node's chain height, for hellos and sync decisions.
    height: AtomicU64,
    /// While a fast sync runs, block sync waits, and header and snapshot replies go to it.
    fast_sync: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<(PeerId, WireMessage)>>>,
    hold_block_sync: std::sync::atomic::AtomicBool,
    /// Whether the operator was told that the peers' clocks disagree with ours; cleared
    /// once they agree again, so each drift is logged once.
    clock_warned: std::sync::atomic::AtomicBool,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl NetworkService {
    pub fn new(
        params: NetworkParams,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<NetworkService> {
        let identity = LocalIdentity {
            network: params.network,
            genesis: params.genesis,
            listen_addr: params.advertise.clone(),
            nonce: rand::random(),
        };
        Arc::new(NetworkService {
            registry: PeerRegistry::new(params.limits.clone()),
            params,
            identity,
            peers: DashMap::new(),
            by_key: DashMap::new(),
            seen: SeenCache::new(),
            tx_relay: std::sync::Mutex::new(TxRelay::new()),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            consensus: OnceLock::new(),
            sync_server: OnceLock::new(),
            masternodes: ArcSwap::from_pointee(Vec::new()),
            members: ArcSwap::from_pointee(MemberKeys::default()),
            announced: DashMap::new(),
            backoff: DashMap::new(),
            dialing: DashMap::new(),
            pending: DashMap::new(),
            height: AtomicU64::new(0),
            fast_sync: std::sync::Mutex::new(None),
            hold_block_sync: std::sync::atomic::AtomicBool::new(false),
            clock_warned: std::sync::atomic::AtomicBool::new(false),
            shutdown,
            tasks,
        })
    }

    /// Connects the network to consensus; messages arriving before this are dropped.
    pub fn attach_consensus(&self, handle: ConsensusHandle) {
        let _ = self.consensus.set(handle);
    }

    /// Connects the sync server; sync requests arriving before this are dropped.
    pub fn attach_sync_server(&self, server: Arc<SyncServer>) {
        let _ = self.sync_server.set(server);
    }

    /// The current masternode set (key, address); this node's own entry is skipped.
    pub fn set_masternodes(&self, list: Vec<(PublicKey, String)>) {
        let me = self.params.key.public_key();
        let current: HashSet<PublicKey> = list.iter().map(|(k, _)| *k).collect();
        let previous = self.members.load().current.clone();
        self.members
            .store(Arc::new(MemberKeys { current, previous }));
        self.masternodes.store(Arc::new(
            list.into_iter().filter(|(k, _)| *k != me).collect(),
        ));
    }

    pub fn set_height(&self, height: u64) {
        self.height.store(height, Ordering::Relaxed);
    }

    /// The highest height any connected peer is proven to have (see
    /// [`NetworkService::peer_proved_height`]); what hellos claim does not count.
    pub fn best_peer_height(&self) -> u64 {
        self.peers
            .iter()
            .map(|p| p.best_height())
            .max()
            .unwrap_or(0)
    }

    /// The highest height connected peers *claim* in their hellos: a hint, never proof;
    /// fast sync uses it only to decide whether waiting for a proven height is worth it.
    pub fn best_claimed_height(&self) -> u64 {
        self.peers
            .iter()
            .map(|p| p.starting_height)
            .max()
            .unwrap_or(0)
    }

    /// Starts routing fast-sync replies to `to` and holds block sync until
    /// [`NetworkService::end_fast_sync`].
    pub fn begin_fast_sync(&self, to: tokio::sync::mpsc::Sender<(PeerId, WireMessage)>) {
        self.hold_block_sync.store(true, Ordering::Release);
        if let Ok(mut f) = self.fast_sync.lock() {
            *f = Some(to);
        }
    }

    /// Ends a fast sync and resumes block sync from `next_height`.
    pub fn end_fast_sync(&self, next_height: u64) {
        if let Ok(mut f) = self.fast_sync.lock() {
            *f = None;
        }
        self.hold_block_sync.store(false, Ordering::Release);
        self.request_blocks(next_height);
    }

    /// The connected peer proven furthest ahead: its id and height.
    pub fn best_peer(&self) -> Option<(PeerId, u64)> {
        self.peers
            .iter()
            .map(|p| (p.id, p.best_height()))
            .max_by_key(|(id, h)| (*h, std::cmp::Reverse(*id)))
    }

    /// Sends a consensus message to one peer; false if it is gone or its queue is full.
    pub fn send_to(&self, peer: PeerId, msg: WireMessage) -> bool {
        self.peers
            .get(&peer)
            .map(|p| Arc::clone(&p))
            .is_some_and(|p| p.send(&NetMessage::Consensus(msg)))
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Keys of the connected peers.
    pub fn connected_keys(&self) -> Vec<PublicKey> {
        self.by_key.iter().map(|e| *e.key()).collect()
    }

    pub fn peer_snapshots(&self) -> Vec<PeerSnapshot> {
        let mut out: Vec<PeerSnapshot> = self
            .peers
            .iter()
            .map(|p| {
                let s = &p.stats;
                let ping = s.ping_us.load(Ordering::Relaxed);
                PeerSnapshot {
                    id: p.id,
                    addr: p.addr,
                    listen_addr: p.listen_addr.clone(),
                    node_key: p.node_key,
                    inbound: p.direction == Direction::Inbound,
                    version: p.version,
                    connected_at_secs: p
                        .connected_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    starting_height: p.starting_height,
                    best_height: p.best_height(),
                    bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
                    bytes_recv: s.bytes_recv.load(Ordering::Relaxed),
                    msgs_sent: s.msgs_sent.load(Ordering::Relaxed),
                    msgs_recv: s.msgs_recv.load(Ordering::Relaxed),
                    msgs_rate_limited: s.msgs_rate_limited.load(Ordering::Relaxed),
                    frames_decompressed: s.frames_decompressed.load(Ordering::Relaxed),
                    ping_secs: (ping > 0).then(|| ping as f64 / 1e6),
                    score: self.registry.score(&BanTarget::Node(p.node_key)),
                    clock_offset_ms: p.clock_offset_ms,
                }
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// The median of the connected peers' clock offsets (their clock minus ours, at their
    /// handshakes), or None without peers: the median, so a few wrong clocks cannot move it.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        super::clock::median(self.peers.iter().map(|p| p.clock_offset_ms).collect())
    }

    /// Logs a warning when the peers' median clock offset goes beyond the limit (once per
    /// excursion), as bitcoind does at startup: a drifting clock costs a masternode its
    /// proposals before anything else shows it.
    fn check_clock(&self) {
        let median = self.clock_offset_ms();
        match super::clock::warning(median) {
            Some(text) => {
                if !self.clock_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(offset_ms = median.unwrap_or(0), "{text}");
                }
            }
            None => self.clock_warned.store(false, Ordering::Relaxed),
        }
    }

    /// Starts the listener, the dialer and the maintenance loop on the task tracker.
    pub async fn start(self: &Arc<Self>) -> Result<Option<SocketAddr>, NetworkError> {
        let mut bound = None;
        if let Some(addr) = self.params.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| NetworkError::Listen { addr, source })?;
            bound = listener.local_addr().ok();
            tracing::info!(addr = %addr, "listening for peers");
            let me = Arc::clone(self);
            self.tasks
                .spawn(async move { me.accept_loop(listener).await });
        }
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.dial_loop().await });
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.maintain_loop().await });
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.repair_loop().await });
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.tx_relay_loop().await });
        Ok(bound)
    }

    /// Waits for the next tick of `tick`; false once the node is shutting down.
    async fn next_tick(&self, tick: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tick.tick() => true,
        }
    }

    /// `fut`'s output, or None once the node is shutting down.
    async fn unless_shutdown<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            v = fut => Some(v),
        }
    }
}

/// An interval that skips missed ticks instead of bursting to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
