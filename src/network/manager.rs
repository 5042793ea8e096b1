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

use super::eviction::{self, Candidate};
use super::frame::Frame;
use super::gossip::{message_id, SeenCache};
use super::handshake::{Hello, LocalIdentity};
use super::message::{NetMessage, MAX_ADDRS};
use super::peer::{self, PeerEnd, PeerEvents, PeerHandle, PeerMeta};
use super::peers::{BanTarget, Direction, PeerLimits, PeerRegistry, Slot, Subnet};
use super::session;
use super::sync_server::{is_sync_request, Admission, FinalityAdmission, SyncServer};
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

    /// Closes the connection to `addr` (if any) and bans it until `until`.
    pub fn ban(&self, addr: SocketAddr, until: Instant) {
        self.registry.ban(addr, until, Instant::now());
        for p in self.peers.iter() {
            if p.addr.ip() == addr.ip() {
                p.close.cancel();
            }
        }
        self.close_pending(addr.ip());
    }

    /// Bans a node key until `until` (RPC `setban` of a key) and closes its sessions.
    pub fn ban_key(&self, key: PublicKey, until: Instant) {
        self.registry.ban_key(key, until, Instant::now());
        for p in self.peers.iter() {
            if p.node_key == key {
                p.close.cancel();
            }
        }
    }

    /// Adds an address to dial (RPC `addnode`).
    pub fn add_peer_addr(&self, addr: SocketAddr) {
        self.registry.learn(addr, Instant::now());
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
        Ok(bound)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a peer failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let now = Instant::now();
            if let Err(e) = self.admit_inbound(addr, now) {
                tracing::debug!(%addr, error = %e, "refused an inbound peer");
                continue;
            }
            let close = self.shutdown.child_token();
            self.pending.insert(addr, (now, close.clone()));
            let me = Arc::clone(&self);
            self.tasks.spawn(async move {
                me.run_session(stream, addr, Direction::Inbound, close)
                    .await;
                me.pending.remove(&addr);
                me.registry.disconnected(&addr);
            });
        }
    }

    /// Every address to dial now: masternodes first, then configured seeds, then gossip.
    fn dial_targets(&self, now: Instant) -> Vec<(String, Option<PublicKey>)> {
        let mut targets = Vec::new();
        for (key, addr) in self.masternodes.load().iter() {
            if self.by_key.contains_key(key) {
                continue;
            }
            let addr = self
                .announced
                .get(key)
                .map(|a| a.clone())
                .unwrap_or_else(|| addr.clone());
            if !addr.is_empty() {
                targets.push((addr, Some(*key)));
            }
        }
        let outbound = self.registry.slot_count(Slot::Outbound);
        let room = self.params.limits.max_outbound.saturating_sub(outbound);
        let connected: HashSet<String> = self
            .peers
            .iter()
            .flat_map(|p| [p.addr.to_string(), p.listen_addr.clone()])
            .collect();
        for seed in &self.params.seeds {
            if !connected.contains(seed) {
                targets.push((seed.clone(), None));
            }
        }
        for addr in self.registry.candidates(now, room) {
            let a = addr.to_string();
            if !connected.contains(&a) && a != self.params.advertise {
                targets.push((a, None));
            }
        }
        let mut seen = HashSet::new();
        targets.retain(|(a, _)| seen.insert(a.clone()) && !connected.contains(a));
        targets
    }

    /// Waits for the next tick of `tick`; false once the node is shutting down.
    async fn next_tick(&self, tick: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tick.tick() => true,
        }
    }

    async fn dial_loop(self: Arc<Self>) {
        let mut tick = ticker(DIAL_EVERY);
        while self.next_tick(&mut tick).await {
            let now = Instant::now();
            for (addr, key) in self.dial_targets(now) {
                if self.dialing.contains_key(&addr)
                    || self.backoff.get(&addr).is_some_and(|b| b.next_try > now)
                {
                    continue;
                }
                self.dialing.insert(addr.clone(), ());
                let me = Arc::clone(&self);
                self.tasks.spawn(async move {
                    let ok = me.dial(&addr, key.is_some()).await;
                    me.dialing.remove(&addr);
                    me.note_dial_result(&addr, ok);
                });
            }
        }
    }

    fn note_dial_result(&self, addr: &str, ok: bool) {
        if ok {
            self.backoff.remove(addr);
            return;
        }
        let now = Instant::now();
        let mut b = self.backoff.entry(addr.to_string()).or_insert(Backoff {
            next_try: now,
            wait: BACKOFF_MIN / 2,
        });
        b.wait = (b.wait * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        // Never shorten a longer wait (the day-long one after dialling ourselves).
        b.next_try = b.next_try.max(now + b.wait);
    }

    /// Dials `addr` and runs the session to its end; true if a session was established. A
    /// masternode of the current set is dialled on its own slots, which gossiped addresses
    /// can never fill; the slot is taken before connecting.
    async fn dial(self: &Arc<Self>, addr: &str, masternode: bool) -> bool {
        // A silent name server or address must not hold the node's shutdown for the timeout.
        let resolving = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host(addr));
        let resolved = match self.unless_shutdown(resolving).await {
            Some(Ok(Ok(mut it))) => it.next(),
            _ => None,
        };
        let Some(sock) = resolved else {
            tracing::debug!(addr, "cannot resolve peer address");
            return false;
        };
        let slot = if masternode {
            Slot::Masternode
        } else {
            Slot::Outbound
        };
        if let Err(e) = self.registry.admit(sock, slot, false, Instant::now()) {
            tracing::debug!(addr, error = %e, "not dialling");
            return false;
        }
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(sock));
        let established = match self.unless_shutdown(connecting).await {
            Some(Ok(Ok(stream))) => {
                let close = self.shutdown.child_token();
                self.run_session(stream, sock, Direction::Outbound, close)
                    .await
            }
            Some(Ok(Err(e))) => {
                tracing::debug!(addr, error = %e, "connect failed");
                false
            }
            Some(Err(_)) => {
                tracing::debug!(addr, "connect timed out");
                false
            }
            None => false,
        };
        self.registry.disconnected(&sock);
        established
    }

    /// `fut`'s output, or None once the node is shutting down.
    async fn unless_shutdown<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            v = fut => Some(v),
        }
    }

    /// Handshake, registration, and the peer's life; true if the handshake succeeded.
    async fn run_session(
        self: &Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        dir: Direction,
        close: CancellationToken,
    ) -> bool {
        let height = self.height.load(Ordering::Relaxed);
        let now_ms = wall_clock_ms();
        let opened = tokio::select! {
            // Evicted or banned while still in the handshake.
            _ = close.cancelled() => return false,
            o = session::open(stream, &self.identity, &self.params.key, height, now_ms) => o,
        };
        self.pending.remove(&addr);
        let (conn, hello) = match opened {
            Ok(x) => x,
            Err(e) => {
                if matches!(
                    e,
                    session::SessionError::Refused(
                        super::handshake::HandshakeError::SelfConnection
                    )
                ) {
                    tracing::debug!(%addr, "dialled ourselves; forgetting the address");
                    // Never dial it again this run.
                    self.backoff.insert(
                        addr.to_string(),
                        Backoff {
                            next_try: Instant::now() + Duration::from_secs(86_400),
                            wait: BACKOFF_MAX,
                        },
                    );
                } else if e.is_misbehaviour() {
                    tracing::warn!(%addr, error = %e, "peer failed the handshake");
                    self.penalize(addr, None, 50);
                } else {
                    tracing::info!(%addr, error = %e, "handshake failed");
                }
                return false;
            }
        };
        if self.registry.is_key_banned(&hello.node_key, Instant::now()) {
            tracing::debug!(%addr, key = %hello.node_key, "refused a banned node key");
            return false;
        }
        self.learn_announced(&hello);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (handle, queues) = PeerHandle::new(
            PeerMeta {
                id,
                addr,
                listen_addr: hello.listen_addr.clone(),
                node_key: hello.node_key,
                instance: hello.instance,
                direction: dir,
                version: hello.version,
                starting_height: hello.best_height,
                clock_offset_ms: super::clock::offset_ms(hello.timestamp_ms, now_ms),
            },
            close,
        );
        let handle = Arc::new(handle);
        if !self.register(&handle) {
            tracing::debug!(%addr, key = %hello.node_key, "already connected to this node");
            // Back off from this address: the node is reachable another way.
            return false;
        }
        self.registry.identify(&addr, hello.node_key);
        tracing::info!(%addr, key = %hello.node_key, ?dir, height = hello.best_height, "peer connected");
        self.check_clock();
        self.greet(&handle);
        let end = peer::run(conn, &handle, queues, self.as_ref()).await;
        self.unregister(&handle);
        tracing::info!(%addr, key = %hello.node_key, reason = %end, "peer disconnected");
        if matches!(end, PeerEnd::Dead) {
            self.penalize(addr, Some(hello.node_key), 0);
        }
        true
    }

    /// A signed hello is the announcement of a node's address: masternodes are dialled there.
    fn learn_announced(&self, hello: &Hello) {
        if hello.listen_addr.is_empty() {
            return;
        }
        if let Ok(a) = hello.listen_addr.parse::<SocketAddr>() {
            self.registry.learn(a, Instant::now());
        }
        // Only masternodes of the current set are dialled by key: nobody else's announcement
        // is kept, so keys made up by the thousand cannot grow this map.
        if self
            .masternodes
            .load()
            .iter()
            .any(|(k, _)| *k == hello.node_key)
        {
            self.announced
                .insert(hello.node_key, hello.listen_addr.clone());
        }
    }

    /// Keeps one session per node key. A key that proved itself from a new process (another
    /// instance nonce) restarted: its new session replaces the old one, which is stale (the
    /// proof is fresh and made for this node, so nobody else can claim the key's place).
    /// When two sessions of one process exist (both sides dialled at once), both ends keep
    /// the one dialled by the smaller key, so they agree without talking.
    fn register(&self, handle: &Arc<PeerHandle>) -> bool {
        let me = self.params.key.public_key();
        let dialer = |h: &PeerHandle| match h.direction {
            Direction::Outbound => me,
            Direction::Inbound => h.node_key,
        };
        let mut replaced = None;
        {
            let mut entry = self.by_key.entry(handle.node_key).or_insert(handle.id);
            if *entry != handle.id {
                // `peers` is another map: taking it under this entry cannot deadlock, and
                // doing so closes the window in which a second session could slip by.
                if let Some(existing) = self.peers.get(&*entry).map(|e| Arc::clone(&e)) {
                    let (new_dialer, old_dialer) = (dialer(handle), dialer(&existing));
                    let restarted = existing.instance != handle.instance;
                    if !restarted && (new_dialer == old_dialer || old_dialer.0 < new_dialer.0) {
                        return false;
                    }
                    replaced = Some(existing);
                }
                *entry = handle.id;
            }
            self.peers.insert(handle.id, Arc::clone(handle));
        }
        if let Some(old) = replaced {
            old.close.cancel();
        }
        true
    }

    fn unregister(&self, handle: &PeerHandle) {
        self.peers.remove(&handle.id);
        if let Some(sync) = self.sync_server.get() {
            sync.budgets.forget(handle.id);
        }
        self.by_key
            .remove_if(&handle.node_key, |_, id| *id == handle.id);
    }

    /// First words to a new peer: our addresses, and a sync request if it is ahead.
    fn greet(&self, handle: &PeerHandle) {
        handle.send(&NetMessage::Addr(self.shareable_addrs()));
        let ours = self.height.load(Ordering::Relaxed);
        // The hello's height is only a hint, but asking costs little: whatever comes back is
        // applied only with certificates that verify.
        if handle.starting_height > ours && !self.hold_block_sync.load(Ordering::Acquire) {
            handle.send(&NetMessage::Consensus(WireMessage::GetBlocks {
                from_height: ours + 1,
            }));
        }
    }

    fn shareable_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        if !self.params.advertise.is_empty() {
            addrs.push(self.params.advertise.clone());
        }
        for p in self.peers.iter() {
            if !p.listen_addr.is_empty() {
                addrs.push(p.listen_addr.clone());
            }
        }
        for (_, a) in self.masternodes.load().iter() {
            addrs.push(a.clone());
        }
        addrs.sort();
        addrs.dedup();
        addrs.truncate(MAX_ADDRS);
        addrs
    }

    /// Where misbehaviour is counted: the proven node key once the handshake is done, and the
    /// IP address (never the ephemeral port), inbound and outbound alike. A loopback IP is
    /// shared by every local process (a localnet, a Tor or proxy front end), so it is never
    /// scored: a local peer is judged by its key, and a local connection that fails its
    /// handshake is only closed.
    fn score_targets(addr: SocketAddr, key: Option<PublicKey>) -> Vec<BanTarget> {
        let mut targets: Vec<BanTarget> = key.map(BanTarget::Node).into_iter().collect();
        if !addr.ip().is_loopback() {
            targets.push(BanTarget::Ip(addr.ip()));
        }
        targets
    }

    fn penalize(&self, addr: SocketAddr, key: Option<PublicKey>, points: u32) {
        let now = Instant::now();
        if points == 0 {
            return;
        }
        for target in Self::score_targets(addr, key) {
            if self.registry.penalize(target, points, now) {
                tracing::warn!(%addr, banned = ?target, "peer banned for misbehaviour");
                for p in self.peers.iter() {
                    let hit = match target {
                        BanTarget::Node(k) => p.node_key == k,
                        BanTarget::Ip(ip) => p.addr.ip() == ip,
                    };
                    if hit {
                        p.close.cancel();
                    }
                }
                if let BanTarget::Ip(ip) = target {
                    self.close_pending(ip);
                }
            }
        }
    }

    /// Consensus verified something signed that puts `peer` at `height` or beyond.
    pub fn peer_proved_height(&self, peer: PeerId, height: u64) {
        if let Some(p) = self.peers.get(&peer) {
            p.saw_height(height);
        }
    }

    /// Scores `points` against a peer that sent what only a misbehaving node sends.
    pub fn penalize_peer(&self, peer: PeerId, points: u32, why: &str) {
        let Some(p) = self.peers.get(&peer).map(|p| Arc::clone(&p)) else {
            return;
        };
        tracing::debug!(addr = %p.addr, key = %p.node_key, points, why, "peer misbehaved");
        self.penalize(p.addr, Some(p.node_key), points);
    }

    /// Closes the handshakes in progress from `ip`.
    fn close_pending(&self, ip: std::net::IpAddr) {
        for p in self.pending.iter() {
            if p.key().ip() == ip {
                p.value().1.cancel();
            }
        }
    }

    /// Checks an inbound connection against bans and the per-IP and per-subnet caps, then
    /// takes its slot, evicting the least useful inbound peer if the slots are full.
    fn admit_inbound(
        &self,
        addr: SocketAddr,
        now: Instant,
    ) -> Result<(), super::peers::AdmitError> {
        if self.registry.is_banned(&addr, now) {
            return Err(super::peers::AdmitError::Banned(addr));
        }
        self.registry.check_inbound_caps(addr.ip())?;
        let full =
            self.registry.connected_count(Direction::Inbound) >= self.registry.limits().max_inbound;
        let evicted = full && self.evict_inbound();
        self.registry.admit(addr, Slot::Inbound, evicted, now)
    }

    /// Closes the least useful inbound connection; false if every one is protected. The
    /// closed connection's slot is freed when its task ends; the newcomer takes it at once,
    /// so the count may exceed the limit by the connections being closed (each one counted
    /// once: a closing connection is no candidate).
    fn evict_inbound(&self) -> bool {
        let set: HashSet<PublicKey> = self.masternodes.load().iter().map(|(k, _)| *k).collect();
        let mut candidates: Vec<Candidate<(u8, PeerId, SocketAddr)>> = Vec::new();
        let mut closers: std::collections::HashMap<(u8, PeerId, SocketAddr), CancellationToken> =
            std::collections::HashMap::new();
        let now = Instant::now();
        for p in self.peers.iter() {
            if p.direction != Direction::Inbound || p.close.is_cancelled() {
                continue;
            }
            let age = p.connected_at.elapsed().unwrap_or_default();
            let id = (1, p.id, p.addr);
            candidates.push(Candidate {
                id,
                subnet: Subnet::of(p.addr.ip()),
                connected_at: now.checked_sub(age).unwrap_or(now),
                ping_us: p.stats.ping_us.load(Ordering::Relaxed),
                novel_at_ms: p.stats.novel_at_ms.load(Ordering::Relaxed),
                masternode: set.contains(&p.node_key),
            });
            closers.insert(id, p.close.clone());
        }
        for e in self.pending.iter() {
            let (at, close) = e.value();
            if close.is_cancelled() {
                continue;
            }
            let id = (0, 0, *e.key());
            candidates.push(Candidate {
                id,
                subnet: Subnet::of(e.key().ip()),
                connected_at: *at,
                ping_us: 0,
                novel_at_ms: 0,
                masternode: false,
            });
            closers.insert(id, close.clone());
        }
        match eviction::select_victim(&candidates).and_then(|v| closers.remove(&v).map(|c| (v, c)))
        {
            Some(((_, _, addr), close)) => {
                tracing::debug!(%addr, "inbound slots full: evicting the least useful peer");
                close.cancel();
                true
            }
            None => false,
        }
    }

    /// Reports a peer that served provably wrong consensus data (bans it at once).
    pub fn punish(&self, peer: PeerId, why: &str) {
        let Some(p) = self.peers.get(&peer).map(|p| Arc::clone(&p)) else {
            return;
        };
        tracing::warn!(addr = %p.addr, key = %p.node_key, why, "banning peer");
        self.penalize(p.addr, Some(p.node_key), super::peers::BAN_THRESHOLD);
    }

    /// Asks peers for blocks whose record the sync server found damaged; consensus rewrites
    /// the record from a matching, certified copy.
    async fn repair_loop(self: Arc<Self>) {
        let mut tick = ticker(REPAIR_EVERY);
        while self.next_tick(&mut tick).await {
            let Some(sync) = self.sync_server.get() else {
                continue;
            };
            for height in sync.take_damaged() {
                let msg = NetMessage::Consensus(WireMessage::GetBlocks {
                    from_height: height,
                });
                let peers: Vec<Arc<PeerHandle>> = self
                    .peers
                    .iter()
                    .filter(|p| p.best_height() >= height)
                    .map(|p| Arc::clone(&p))
                    .collect();
                if !peers.is_empty() {
                    let pick = rand::random::<u64>() as usize % peers.len();
                    tracing::info!(height, peer = %peers[pick].addr, "asking a peer for a damaged block");
                    peers[pick].send(&msg);
                }
            }
        }
    }

    async fn maintain_loop(self: Arc<Self>) {
        let mut tick = ticker(MAINTAIN_EVERY);
        while self.next_tick(&mut tick).await {
            let now = Instant::now();
            self.backoff.retain(|_, b| b.next_try + BACKOFF_MAX > now);
            self.send_all(&NetMessage::Addr(self.shareable_addrs()));
        }
    }

    /// A sync request: served by the sync server within the peer's budget, never queued for
    /// consensus. Dropped (and counted toward a ban when abusive) over budget.
    fn on_sync_request(&self, peer: &PeerHandle, msg: WireMessage) {
        let Some(sync) = self.sync_server.get() else {
            return;
        };
        if let WireMessage::GetFinality(txid) = msg {
            return self.on_finality_request(sync, peer, txid);
        }
        match sync.budgets.admit(peer.id, Instant::now()) {
            Admission::Serve => match self.peers.get(&peer.id).map(|p| Arc::clone(&p)) {
                Some(handle) => sync.serve(handle, msg),
                None => sync.budgets.finish(peer.id, 0, Instant::now()),
            },
            Admission::Refused { penalize } => {
                if penalize {
                    self.on_misbehaviour(peer, 1, "sync requests beyond its budget");
                }
            }
        }
    }

    /// Queues a `GetFinality` for the sync server, within the peer's budget.
    fn on_finality_request(
        &self,
        sync: &Arc<SyncServer>,
        peer: &PeerHandle,
        txid: crate::types::Txid,
    ) {
        match sync.budgets.admit_finality(peer.id, txid, Instant::now()) {
            FinalityAdmission::Drain => match self.peers.get(&peer.id).map(|p| Arc::clone(&p)) {
                Some(handle) => sync.serve_finality(handle),
                None => sync.budgets.abandon_finality(peer.id),
            },
            FinalityAdmission::Queued => {}
            FinalityAdmission::Refused { penalize } => {
                if penalize {
                    self.on_misbehaviour(peer, 1, "finality requests beyond its budget");
                }
            }
        }
    }

    /// Sends `msg` to every peer, encoded once.
    fn send_all(&self, msg: &NetMessage) {
        let (frame, priority) = (msg.to_frame(), msg.is_priority());
        for p in self.peers.iter() {
            p.send_frame(frame.clone(), priority);
        }
    }

    /// Sends a consensus message to every peer except those that sent it to us.
    fn flood(&self, msg: WireMessage) {
        self.send_to_some(msg, usize::MAX)
    }

    /// Sends a consensus message to `RELAY_FANOUT` peers at random among those that did not
    /// send it to us.
    fn relay(&self, msg: WireMessage) {
        self.send_to_some(msg, RELAY_FANOUT)
    }

    /// Sends a consensus message to up to `fanout` peers, at random, among those that did not
    /// send it to us; marks it seen, so their echoes are dropped.
    fn send_to_some(&self, msg: WireMessage, fanout: usize) {
        let msg = NetMessage::Consensus(msg);
        let (frame, priority) = (msg.to_frame(), msg.is_priority());
        let id = message_id(&frame);
        self.seen.mark(id, None, Instant::now());
        let holders = self.seen.holders(&id);
        let mut to: Vec<Arc<PeerHandle>> = (self.peers.iter())
            .filter(|p| !holders.contains(&p.id))
            .map(|p| Arc::clone(&p))
            .collect();
        let chosen = if fanout < to.len() {
            to.partial_shuffle(&mut rand::thread_rng(), fanout).0
        } else {
            &mut to[..]
        };
        for p in chosen.iter() {
            p.send_frame(frame.clone(), priority);
        }
    }

    /// Sends a block request to the peer that is furthest ahead, or to all if none is known
    /// to be ahead (the request was triggered by a message of a later height).
    fn request_blocks(&self, from_height: u64) {
        if self.hold_block_sync.load(Ordering::Acquire) {
            return;
        }
        let msg = NetMessage::Consensus(WireMessage::GetBlocks { from_height });
        // A random peer among those proven to have the height (a claim in a hello does not
        // choose: a liar would be asked first and never answer): a peer may lack old blocks
        // (fast-synced), so never always the same one. Consensus asks again soon if nothing
        // comes.
        let ahead: Vec<Arc<PeerHandle>> = self
            .peers
            .iter()
            .filter(|p| p.best_height() >= from_height)
            .map(|p| Arc::clone(&p))
            .collect();
        if ahead.is_empty() {
            self.send_all(&msg);
        } else {
            let pick = rand::random::<u64>() as usize % ahead.len();
            ahead[pick].send(&msg);
        }
    }
}

/// An interval that skips missed ticks instead of bursting to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

fn is_flooded(msg: &WireMessage) -> bool {
    matches!(
        msg,
        WireMessage::Transaction(_)
            | WireMessage::VoteBatch(_)
            | WireMessage::Proposal(_)
            | WireMessage::Vote(_)
            | WireMessage::Evidence(_)
    )
}

impl PeerEvents for NetworkService {
    fn on_consensus(&self, peer: &PeerHandle, frame: Frame, msg: NetMessage) {
        let NetMessage::Consensus(msg) = msg else {
            return;
        };
        if is_sync_request(&msg) {
            self.on_sync_request(peer, msg);
            return;
        }
        // Heights are recorded only once consensus verified what carries them
        // (`peer_proved_height`). Signed consensus messages from keys outside the set are
        // dropped here, before they queue for a signature check.
        if let Some(key) = signer(&msg) {
            if !self.members.load().admits(key) {
                crate::metrics::consensus_dropped(
                    crate::consensus::driver::Dropped::NotMember.label(),
                );
                let n = peer.stats.not_member.fetch_add(1, Ordering::Relaxed) + 1;
                if n % NOT_MEMBER_DROPS_PER_POINT == 0 {
                    self.penalize(peer.addr, Some(peer.node_key), 1);
                }
                return;
            }
        }
        if matches!(msg, WireMessage::Headers(_) | WireMessage::Snapshot(_)) {
            let to = self.fast_sync.lock().ok().and_then(|f| f.clone());
            if let Some(to) = to {
                let _ = to.try_send((peer.id, msg));
            }
            return;
        }
        let Some(consensus) = self.consensus.get() else {
            return;
        };
        if !is_flooded(&msg) {
            consensus.deliver(peer.id, msg);
            return;
        }
        let now = Instant::now();
        let id = message_id(&frame);
        if self.seen.check_and_note(&id, peer.id, now) {
            return;
        }
        // Marked first, so a re-flood racing the delivery skips the sender; forgotten if
        // consensus had no room, so the message can come again.
        self.seen.mark(id, Some(peer.id), now);
        if !consensus.deliver(peer.id, msg) {
            self.seen.forget(&id);
            return;
        }
        // Something we had not seen: this peer is useful, which protects it from eviction.
        peer.stats
            .novel_at_ms
            .store(wall_clock_ms(), Ordering::Relaxed);
    }

    fn on_addrs(&self, _peer: &PeerHandle, addrs: Vec<String>) {
        let now = Instant::now();
        for a in addrs.iter().take(MAX_ADDRS) {
            if *a == self.params.advertise {
                continue;
            }
            if let Ok(sock) = a.parse::<SocketAddr>() {
                if !sock.ip().is_unspecified() && sock.port() != 0 {
                    self.registry.learn(sock, now);
                }
            }
        }
    }

    fn on_misbehaviour(&self, peer: &PeerHandle, points: u32, why: &str) {
        tracing::debug!(addr = %peer.addr, points, why, "peer misbehaved");
        self.penalize(peer.addr, Some(peer.node_key), points);
    }
}

/// The consensus side of the network: what the consensus service calls to send.
pub struct NetworkTransport(pub Arc<NetworkService>);

impl Transport for NetworkTransport {
    fn broadcast(&self, msg: WireMessage) {
        match msg {
            WireMessage::GetBlocks { from_height } => self.0.request_blocks(from_height),
            m if is_flooded(&m) => self.0.flood(m),
            m => self.0.send_all(&NetMessage::Consensus(m)),
        }
    }

    fn relay(&self, msg: WireMessage) {
        self.0.relay(msg)
    }

    fn send(&self, peer: PeerId, msg: WireMessage) {
        if let Some(p) = self.0.peers.get(&peer).map(|p| Arc::clone(&p)) {
            p.send(&NetMessage::Consensus(msg));
        }
    }

    fn punish(&self, peer: PeerId, why: &str) {
        self.0.punish(peer, why);
    }

    fn penalize(&self, peer: PeerId, points: u32, why: &str) {
        self.0.penalize_peer(peer, points, why);
    }
}
