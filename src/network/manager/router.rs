//! What goes where: consensus messages flooded to every peer or relayed to a few (a
//! transaction by announcement, `relay.rs`), requests for blocks to a peer that has them,
//! sync and finality requests to their servers, and what peers send on to consensus, once,
//! whoever sent it first.

use super::*;

impl NetworkService {
    /// A sync request: served by the sync server within the peer's budget, never queued for
    /// consensus. Dropped (and counted toward a ban when abusive) over budget.
    pub(super) fn on_sync_request(&self, peer: &PeerHandle, msg: WireMessage) {
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
    pub(super) fn on_finality_request(
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
    pub(super) fn send_all(&self, msg: &NetMessage) {
        let (frame, priority) = (msg.to_frame(), msg.is_priority());
        for p in self.peers.iter() {
            p.send_frame(frame.clone(), priority);
        }
    }

    /// Sends a consensus message to every peer except those that sent it to us.
    pub(super) fn flood(&self, msg: WireMessage) {
        match msg {
            WireMessage::Transaction(tx) => self.push_transaction(tx),
            m => self.send_to_some(m, usize::MAX),
        }
    }

    /// Sends a consensus message to `RELAY_FANOUT` peers at random among those that did not
    /// send it to us; a transaction goes by announcement (`relay.rs`).
    pub(super) fn relay(&self, msg: WireMessage) {
        match msg {
            WireMessage::Transaction(tx) => self.announce_transaction(tx),
            m => self.send_to_some(m, RELAY_FANOUT),
        }
    }

    /// Sends a consensus message to up to `fanout` peers, at random, among those that did not
    /// send it to us; marks it seen, so their echoes are dropped.
    pub(super) fn send_to_some(&self, msg: WireMessage, fanout: usize) {
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
    pub(super) fn request_blocks(&self, from_height: u64) {
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

/// The voter a message must come from directly (not relayed).
fn direct_sender(msg: &WireMessage) -> Option<&crate::types::PublicKey> {
    match msg {
        WireMessage::SlotShare(s) => Some(&s.voter),
        WireMessage::LockReport(r) => Some(&r.voter),
        _ => None,
    }
}

fn is_flooded(msg: &WireMessage) -> bool {
    matches!(
        msg,
        WireMessage::Transaction(_)
            | WireMessage::VoteBatch(_)
            | WireMessage::Proposal(_)
            | WireMessage::CompactProposal(_)
            | WireMessage::Vote(_)
            | WireMessage::Evidence(_)
            | WireMessage::SlotAnnouncement(_)
            | WireMessage::SlotCertificate(_)
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
        // Shares and lock reports go from a voter straight to the slot's aggregator and are
        // never relayed: one that names another voter than the session's proven key is
        // forged. (A share's BLS signature is checked only in the sum; a forged one counted
        // first would shut the real voter out of the batch.)
        if let Some(voter) = direct_sender(&msg) {
            if *voter != peer.node_key {
                self.on_misbehaviour(peer, 10, "a slot share or report in another voter's name");
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
        match &msg {
            WireMessage::TxInv(txids) => return self.on_tx_inv(peer, txids),
            WireMessage::GetTxs(txids) => return self.on_get_txs(peer, txids),
            _ => {}
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
        if let WireMessage::Transaction(tx) = &msg {
            self.on_transaction_body(peer, tx.txid());
        }
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

    fn send_to_node(&self, node: &crate::types::PublicKey, msg: WireMessage) {
        let peer = self
            .0
            .peers
            .iter()
            .find(|p| p.node_key == *node)
            .map(|p| Arc::clone(&p));
        if let Some(p) = peer {
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
