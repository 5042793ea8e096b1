//! A peer session's life: accepting, admitting (slots per IP and subnet, eviction of the least
//! useful inbound peer), registering one session per key, greeting, and the misbehaviour
//! scores and bans that end sessions.

use super::*;

impl NetworkService {
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

    pub(super) async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
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

    /// Handshake, registration, and the peer's life; true if the handshake succeeded.
    pub(super) async fn run_session(
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
                        crate::network::handshake::HandshakeError::SelfConnection
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
                clock_offset_ms: crate::network::clock::offset_ms(hello.timestamp_ms, now_ms),
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
    pub(super) fn learn_announced(&self, hello: &Hello) {
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
    pub(super) fn register(&self, handle: &Arc<PeerHandle>) -> bool {
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

    pub(super) fn unregister(&self, handle: &PeerHandle) {
        self.peers.remove(&handle.id);
        self.tx_relay().forget_peer(handle.id);
        if let Some(sync) = self.sync_server.get() {
            sync.budgets.forget(handle.id);
        }
        self.by_key
            .remove_if(&handle.node_key, |_, id| *id == handle.id);
    }

    /// First words to a new peer: our addresses, and a sync request if it is ahead.
    pub(super) fn greet(&self, handle: &PeerHandle) {
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

    pub(super) fn shareable_addrs(&self) -> Vec<String> {
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
    pub(super) fn score_targets(addr: SocketAddr, key: Option<PublicKey>) -> Vec<BanTarget> {
        let mut targets: Vec<BanTarget> = key.map(BanTarget::Node).into_iter().collect();
        if !addr.ip().is_loopback() {
            targets.push(BanTarget::Ip(addr.ip()));
        }
        targets
    }

    pub(super) fn penalize(&self, addr: SocketAddr, key: Option<PublicKey>, points: u32) {
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
    pub(super) fn close_pending(&self, ip: std::net::IpAddr) {
        for p in self.pending.iter() {
            if p.key().ip() == ip {
                p.value().1.cancel();
            }
        }
    }

    /// Checks an inbound connection against bans and the per-IP and per-subnet caps, then
    /// takes its slot, evicting the least useful inbound peer if the slots are full.
    pub(super) fn admit_inbound(
        &self,
        addr: SocketAddr,
        now: Instant,
    ) -> Result<(), crate::network::peers::AdmitError> {
        if self.registry.is_banned(&addr, now) {
            return Err(crate::network::peers::AdmitError::Banned(addr));
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
    pub(super) fn evict_inbound(&self) -> bool {
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
        self.penalize(
            p.addr,
            Some(p.node_key),
            crate::network::peers::BAN_THRESHOLD,
        );
    }
}
