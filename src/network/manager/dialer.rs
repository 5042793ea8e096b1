//! Whom the node dials and when: every masternode of the set, seeds and learned addresses,
//! with backoff; and the loops that repair missing masternode sessions and keep the rest tidy.

use super::*;

impl NetworkService {
    /// Every address to dial now: masternodes first, then configured seeds, then gossip.
    pub(super) fn dial_targets(&self, now: Instant) -> Vec<(String, Option<PublicKey>)> {
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

    pub(super) async fn dial_loop(self: Arc<Self>) {
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

    pub(super) fn note_dial_result(&self, addr: &str, ok: bool) {
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
    pub(super) async fn dial(self: &Arc<Self>, addr: &str, masternode: bool) -> bool {
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

    /// Asks peers for blocks whose record the sync server found damaged; consensus rewrites
    /// the record from a matching, certified copy.
    pub(super) async fn repair_loop(self: Arc<Self>) {
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

    pub(super) async fn maintain_loop(self: Arc<Self>) {
        let mut tick = ticker(MAINTAIN_EVERY);
        while self.next_tick(&mut tick).await {
            let now = Instant::now();
            self.backoff.retain(|_, b| b.next_try + BACKOFF_MAX > now);
            self.send_all(&NetMessage::Addr(self.shareable_addrs()));
        }
    }
}
