//! The transactions' relay between simulated nodes, with the network's own rules
//! (`timed::network::tx_relay`): a submit's body pushed to every node, a relayed transaction
//! announced to a few, bodies asked for and served, outboxes flushed and late asks passed on
//! every `FLUSH_MS` of virtual time.
//!
//! A node's relay knows its peers by connection, as the network's does: a node that restarted
//! is a new peer (`relay_id`), not a holder of what it held before it lost its pool.

use super::*;
use timed::network::tx_relay::FLUSH_MS;

impl Sim {
    /// Node `i`'s pool took `tx`: a submit's body (`pushed`) goes whole to every node; any
    /// other is held and announced to `RELAY_FANOUT` others (pushed whole to as many if no
    /// peer is known to hold it).
    pub(super) fn relay_took(&mut self, i: usize, tx: Arc<Transaction>, pushed: bool) {
        if pushed {
            return self.emit(i, None, WireMessage::Transaction(tx));
        }
        let now = self.now;
        let txid = tx.txid();
        let relay = &mut self.nodes[i].relay;
        relay.took(Arc::clone(&tx), now);
        if !relay.held_elsewhere(&txid) {
            // No peer is known to hold it: the body itself, as the network does.
            return self.send_to_few(i, WireMessage::Transaction(tx));
        }
        relay.announce(txid);
        self.relay_tick_later(i);
    }

    /// What the relay takes of a message reaching node `to` from `from`: announcements and
    /// requests end here (`None`); a body is noted and goes on to the driver.
    pub(super) fn relay_message(
        &mut self,
        to: usize,
        from: usize,
        msg: WireMessage,
    ) -> Option<WireMessage> {
        let now = self.now;
        let started = wan::thread_cpu();
        let kind = wan::kind_of(&msg);
        let peer = self.relay_id(from);
        let relay = &mut self.nodes[to].relay;
        match msg {
            WireMessage::TxInv(txids) => {
                let ask = relay.on_announced(peer, &txids, now);
                self.charge(to, kind, started);
                if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
                    let short = |t: &[Txid]| {
                        t.iter()
                            .map(|t| t.to_hex()[..8].to_string())
                            .collect::<Vec<_>>()
                    };
                    eprintln!(
                        "t={} node {to} hears {:?} from {from}, asks {:?}",
                        now - EPOCH,
                        short(&txids),
                        short(&ask)
                    );
                }
                if !ask.is_empty() {
                    self.emit(to, Some(from), WireMessage::GetTxs(Arc::new(ask)));
                    self.relay_tick_later(to);
                }
                None
            }
            WireMessage::GetTxs(txids) => {
                let bodies = relay.serve(peer, &txids);
                self.charge(to, kind, started);
                if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
                    eprintln!(
                        "t={} node {to} asked {} by {from}, serves {}",
                        now - EPOCH,
                        txids.len(),
                        bodies.len()
                    );
                }
                for tx in bodies {
                    self.emit(to, Some(from), WireMessage::Transaction(tx));
                }
                None
            }
            WireMessage::Transaction(tx) => {
                relay.on_body(peer, tx.txid(), now);
                self.relay_tick_later(to);
                Some(WireMessage::Transaction(tx))
            }
            other => Some(other),
        }
    }

    /// Node `i`'s relay tick: its announcements go out, late asks go to the next announcer;
    /// another tick follows while anything waits.
    pub(super) fn relay_tick(&mut self, i: usize) {
        self.nodes[i].relay_tick = false;
        let now = self.now;
        let others: Vec<u64> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(|j| self.relay_id(j))
            .collect();
        let started = wan::thread_cpu();
        let relay = &mut self.nodes[i].relay;
        let announcements = relay.take_outbox(&others, RELAY_FANOUT, &mut self.rng);
        let asks = relay.expire(now);
        self.charge(i, "timer: tx relay", started);
        for (peer, txids) in announcements {
            if let Some(to) = self.relay_node(peer) {
                self.emit(i, Some(to), WireMessage::TxInv(Arc::new(txids)));
            }
        }
        for (peer, txids) in asks {
            if let Some(to) = self.relay_node(peer) {
                self.emit(i, Some(to), WireMessage::GetTxs(Arc::new(txids)));
            }
        }
        self.relay_tick_later(i);
    }

    /// Queues node `i`'s next relay tick, unless one is queued or nothing waits.
    pub(super) fn relay_tick_later(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.relay_tick || node.relay.is_idle() {
            return;
        }
        node.relay_tick = true;
        let generation = node.generation;
        self.push(
            self.now + FLUSH_MS,
            Event::RelayTick {
                node: i,
                generation,
            },
        );
    }

    /// Node `j` as its peers' relays know it: one id per run of the node.
    fn relay_id(&self, j: usize) -> u64 {
        (self.nodes[j].generation * self.nodes.len() as u64) + j as u64
    }

    /// The node a relay id names, if that run of it is still the one up (a message to an
    /// earlier run is lost with its connection).
    fn relay_node(&self, id: u64) -> Option<usize> {
        let j = (id % self.nodes.len() as u64) as usize;
        (self.relay_id(j) == id).then_some(j)
    }
}
