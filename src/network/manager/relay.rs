//! The transactions' relay on real connections (`network::tx_relay` holds the rules): a local
//! submit pushed whole to every peer, a peer's transaction announced to a few, bodies served
//! to peers that were told, and one loop that flushes the announcements and passes late asks
//! on to the next announcer.
//!
//! ```text
//! consensus ─Broadcast(tx)─► push_transaction ─► body to every peer
//! consensus ─Relay(tx)─────► announce_transaction ─► held; txid in the outbox
//! every FLUSH_MS ─► TxInv to RELAY_FANOUT peers (drawn per flush); GetTxs for late asks
//! TxInv from P ─► GetTxs to P for what is new     GetTxs from P ─► the bodies P was told of
//! ```

use super::*;
use crate::consensus::finality::Millis;
use crate::types::{Transaction, Txid};

impl NetworkService {
    /// The relay's tables. Every call leaves them consistent (none panics midway), so a lock
    /// a panicking thread poisoned is taken as it is.
    pub(super) fn tx_relay(&self) -> std::sync::MutexGuard<'_, TxRelay> {
        self.tx_relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn relay_clock(&self) -> Millis {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A transaction this node's pool took from a peer (or sends again): held for the peers
    /// it is announced to, and queued for the next flush, which announces it to
    /// `RELAY_FANOUT` peers not known to hold it; pushed whole to as many if no peer is known
    /// to hold it (`TxRelay::held_elsewhere`).
    pub(super) fn announce_transaction(&self, tx: Arc<Transaction>) {
        let txid = tx.txid();
        let elsewhere = {
            let mut relay = self.tx_relay();
            relay.took(Arc::clone(&tx), self.relay_clock());
            let elsewhere = relay.held_elsewhere(&txid);
            if elsewhere {
                relay.announce(txid);
            }
            elsewhere
        };
        if !elsewhere {
            // No peer is known to hold it (this node's own, sent again): the body itself.
            self.send_to_some(WireMessage::Transaction(tx), RELAY_FANOUT);
        }
    }

    /// A transaction this node's client submitted: its body pushed to every peer (no round
    /// trip for the network's first hop). Not held: no peer was told to ask for it; regossip,
    /// which announces it, holds it then.
    pub(super) fn push_transaction(&self, tx: Arc<Transaction>) {
        self.send_to_some(WireMessage::Transaction(tx), usize::MAX);
    }

    /// A peer's transaction arrived (before its checks): no one is asked for it meanwhile.
    pub(super) fn on_transaction_body(&self, peer: &PeerHandle, txid: Txid) {
        self.tx_relay().on_body(peer.id, txid, self.relay_clock());
    }

    /// A peer announced txids: asks it for those this node neither holds nor asked for.
    pub(super) fn on_tx_inv(&self, peer: &PeerHandle, txids: &[Txid]) {
        let ask = self
            .tx_relay()
            .on_announced(peer.id, txids, self.relay_clock());
        if !ask.is_empty() {
            peer.send(&NetMessage::Consensus(WireMessage::GetTxs(Arc::new(ask))));
        }
    }

    /// A peer asks for bodies: those announced to it, each once.
    pub(super) fn on_get_txs(&self, peer: &PeerHandle, txids: &[Txid]) {
        let bodies = self.tx_relay().serve(peer.id, txids);
        for tx in bodies {
            peer.send(&NetMessage::Consensus(WireMessage::Transaction(tx)));
        }
    }

    /// Flushes the announcements every `FLUSH_MS` and asks the next announcer for what the
    /// last one asked did not deliver in time.
    pub(super) async fn tx_relay_loop(&self) {
        let mut tick = ticker(Duration::from_millis(tx_relay::FLUSH_MS));
        let mut timed_out = 0;
        while self.next_tick(&mut tick).await {
            let peers: Vec<PeerId> = self.peers.iter().map(|p| p.id).collect();
            let (announcements, asks, counts) = {
                let mut relay = self.tx_relay();
                let announcements =
                    relay.take_outbox(&peers, RELAY_FANOUT, &mut rand::thread_rng());
                (
                    announcements,
                    relay.expire(self.relay_clock()),
                    relay.counts(),
                )
            };
            crate::metrics::tx_asks_timed_out(counts.timed_out.saturating_sub(timed_out));
            timed_out = counts.timed_out;
            for (peer, txids) in announcements {
                self.send_to(peer, WireMessage::TxInv(Arc::new(txids)));
            }
            for (peer, txids) in asks {
                self.send_to(peer, WireMessage::GetTxs(Arc::new(txids)));
            }
        }
    }
}
