//! One step of the simulation: an event reaches its node (when the node's CPU is free, in a
//! measurement), the real driver handles it, and what it says goes out.

use super::*;

impl Sim {
    pub(super) fn step(&mut self, event: Event) -> Result<(), Violation> {
        let Some(w) = &self.wan else {
            return self.step_now(event);
        };
        // One event at a time per node: what reaches a busy node waits in its inbox.
        let (arrived, event) = match event {
            Event::Wake(i) => {
                self.waking[i] = false;
                match self.inbox[i].pop_front() {
                    Some(e) => e,
                    None => return Ok(()),
                }
            }
            e => match e.node() {
                Some(i) if w.busy_until(i, self.now).is_some() || !self.inbox[i].is_empty() => {
                    self.inbox[i].push_back((self.now, e));
                    self.wake_later(i);
                    return Ok(());
                }
                _ => (self.now, e),
            },
        };
        let node = event.node();
        if let (Some(w), Some(i)) = (&mut self.wan, node) {
            w.waited(i, event.kind(), arrived, self.now);
        }
        let result = self.step_now(event);
        if let Some(w) = &mut self.wan {
            w.settle();
        }
        if let Some(i) = node.filter(|i| !self.inbox[*i].is_empty()) {
            self.wake_later(i);
        }
        result
    }

    /// Queues node `i`'s next `Wake` for when its CPU is free, unless one is queued.
    pub(super) fn wake_later(&mut self, i: usize) {
        if self.waking[i] {
            return;
        }
        let now = self.now;
        let at = (self.wan.as_ref())
            .and_then(|w| w.busy_until(i, now))
            .unwrap_or(now);
        self.waking[i] = true;
        self.defer(at, Event::Wake(i));
    }

    /// Charges node `i`'s CPU with what its driver just took (a measured run only).
    pub(super) fn charge(&mut self, i: usize, kind: &'static str, started: Duration) {
        let took = wan::thread_cpu().saturating_sub(started);
        if let Some(w) = &mut self.wan {
            w.charge(i, kind, self.now, took);
        }
    }

    /// The set node `i`'s finality engine holds, as a vote batch binds to it.
    fn bound_set(&self, i: usize) -> (u64, Hash32) {
        self.nodes[i]
            .driver
            .as_ref()
            .map_or((0, Hash32::ZERO), |d| {
                (d.finality().set().height(), d.finality().set().hash())
            })
    }

    pub(super) fn step_now(&mut self, event: Event) -> Result<(), Violation> {
        let kind = event.kind();
        // Every log line of the step names the node and the virtual time (`RUST_LOG`).
        let node = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. }
            | Event::Submit { node, .. }
            | Event::RelayTick { node, .. }
            | Event::Crash(node)
            | Event::Restart(node) => Some(*node),
            _ => None,
        };
        let _span = tracing::trace_span!("sim", node, t = self.now - EPOCH).entered();
        match event {
            Event::Deliver { to, from, msg } => {
                if self.nodes[to].spec.byzantine == Some(Byzantine::VoteConflicts) {
                    if let WireMessage::Transaction(tx) = &msg {
                        let key = self.nodes[to].key.clone();
                        // Bound to the set this node holds, so its double votes count.
                        let bound = self.bound_set(to);
                        let batch =
                            VoteBatch::sign(&key, NETWORK, bound, self.seq, vec![tx.txid()]);
                        self.broadcast(to, WireMessage::VoteBatch(Arc::new(batch)));
                    }
                }
                if self.nodes[to].spec.byzantine == Some(Byzantine::JunkVotes) {
                    if let WireMessage::Transaction(_) = &msg {
                        let key = self.nodes[to].key.clone();
                        let bound = self.bound_set(to);
                        let junk: Vec<Txid> =
                            (0..JUNK_PER_TX).map(|_| Hash32(self.rng.gen())).collect();
                        let batch = VoteBatch::sign(&key, NETWORK, bound, self.seq, junk);
                        self.broadcast(to, WireMessage::VoteBatch(Arc::new(batch)));
                    }
                }
                let relay_key = match &msg {
                    WireMessage::Proposal(p) => Some((to, true, p.height, p.round)),
                    WireMessage::CompactProposal(p) => Some((to, true, p.height, p.round)),
                    WireMessage::Blocks(b) => b.last().map(|(_, c)| (to, false, c.height, 0)),
                    _ => None,
                };
                if self.nodes[to].spec.byzantine == Some(Byzantine::SwapSignaturesRelay)
                    && relay_key.is_some_and(|k| self.relayed.insert(k))
                {
                    // Pass it on at once, altered: the copy races the genuine one.
                    let altered = self.swap_relayed(msg.clone());
                    self.broadcast(to, altered);
                }
                if self.nodes[to].driver.is_none() {
                    return Ok(());
                }
                let Some(msg) = self.relay_message(to, from, msg) else {
                    return Ok(());
                };
                let now = self.now;
                let Some(driver) = self.nodes[to].driver.as_mut() else {
                    return Ok(());
                };
                if let Some(w) = &mut self.wan {
                    // A transaction the node holds already is answered from a lookup.
                    let known = match &msg {
                        WireMessage::Transaction(tx) => {
                            let txid = tx.txid();
                            driver.mempool().contains(&txid) || driver.finality().is_final(&txid)
                        }
                        _ => false,
                    };
                    w.received(to, now, &msg, known);
                }
                let started = wan::thread_cpu();
                let out = driver.on_message(from as u64, msg, now);
                self.charge(to, kind, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node: to,
                    error: e.to_string(),
                })?;
                self.handle_outputs(to, out)
            }
            Event::Timer {
                node,
                generation,
                timer,
            } => {
                if generation != self.nodes[node].generation {
                    return Ok(());
                }
                let now = self.now;
                let Some(driver) = self.nodes[node].driver.as_mut() else {
                    return Ok(());
                };
                let started = wan::thread_cpu();
                let out = driver.on_timer(timer, now);
                self.charge(node, kind, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node,
                    error: e.to_string(),
                })?;
                self.handle_outputs(node, out)
            }
            Event::Submit {
                node,
                tx,
                expect_final,
            } => {
                self.pending_submits -= 1;
                let now = self.now;
                let Some(driver) = self.nodes[node].driver.as_mut() else {
                    // The node is down: the client tries again a little later.
                    self.push(
                        now + 500,
                        Event::Submit {
                            node,
                            tx,
                            expect_final,
                        },
                    );
                    return Ok(());
                };
                let started = wan::thread_cpu();
                let (verdict, out) = driver.submit_transaction((*tx).clone(), now);
                self.charge(node, kind, started);
                let out = out.map_err(|e| Violation::NodeFailed {
                    node,
                    error: e.to_string(),
                })?;
                if verdict.is_err() && self.wan.is_some() {
                    // A measurement's wallet tries again, as real ones do when the pool is
                    // full ("try again shortly") or its coin's split is not final there yet.
                    self.push(
                        now + RETRY_MS,
                        Event::Submit {
                            node,
                            tx: Arc::clone(&tx),
                            expect_final,
                        },
                    );
                }
                if expect_final && verdict.is_ok() {
                    self.expected_final.insert(tx.txid());
                }
                self.handle_outputs(node, out)
            }
            Event::RelayTick { node, generation } => {
                if generation == self.nodes[node].generation {
                    self.relay_tick(node);
                }
                Ok(())
            }
            Event::Crash(node) => {
                // A power cut, not only a process exit: what no barrier covered is gone.
                if let Some(storage) = self.nodes[node].storage.take() {
                    let lost = storage
                        .lose_unflushed()
                        .map_err(|e| Violation::NodeFailed {
                            node,
                            error: e.to_string(),
                        })?;
                    if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
                        eprintln!(
                            "t={} node {node} crashes, losing {lost} unsynced log frames",
                            self.now - EPOCH
                        );
                    }
                }
                self.nodes[node].driver = None;
                self.nodes[node].generation += 1;
                self.nodes[node].relay = TxRelay::new();
                self.nodes[node].relay_tick = false;
                Ok(())
            }
            Event::Restart(node) => self.start_node(node),
            Event::Wake(_) => Ok(()),
        }
    }
}
