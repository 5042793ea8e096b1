//! How messages travel between simulated nodes: delays, drops, partitions and the world's
//! uplinks, and what a node's outputs put on the wire.

use super::*;

impl Sim {
    pub(super) fn send(&mut self, from: usize, to: usize, msg: WireMessage) {
        if from == to || self.partitioned(from, to) {
            return;
        }
        match &msg {
            WireMessage::GetSlotBatch { slot, root } => {
                self.batch_requests += 1;
                self.batch_asks.insert((to, from, *slot, *root));
            }
            // A deaf node hears an announcement only as the answer to its own request.
            WireMessage::SlotAnnouncement(a) if self.sc.deaf_to_announcements == Some(to) => {
                if !self.batch_asks.remove(&(from, to, a.slot, a.root())) {
                    return;
                }
                self.batch_answers += 1;
            }
            _ => {}
        }
        if self.faults_active() && self.rng.gen_bool(self.sc.drop_rate) {
            return;
        }
        let copies = if self.faults_active() && self.rng.gen_bool(self.sc.duplicate_rate) {
            2
        } else {
            1
        };
        if let Some(w) = &mut self.wan {
            let at = w.route(from, to, &msg, self.now, &mut self.rng);
            self.push(at, Event::Deliver { to, from, msg });
            return;
        }
        for _ in 0..copies {
            let delay = self.rng.gen_range(self.sc.min_delay..=self.sc.max_delay);
            self.push(
                self.now + delay,
                Event::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    pub(super) fn broadcast(&mut self, from: usize, msg: WireMessage) {
        for to in 0..self.nodes.len() {
            self.send(from, to, msg.clone());
        }
    }

    /// Sends what node `i` said, through its Byzantine behaviour if it has one.
    pub(super) fn emit(&mut self, i: usize, to: Option<usize>, msg: WireMessage) {
        let deliver = |sim: &mut Sim, m: WireMessage| match to {
            Some(t) => sim.send(i, t, m),
            None => sim.broadcast(i, m),
        };
        match self.nodes[i].spec.byzantine {
            None
            | Some(Byzantine::VoteConflicts)
            | Some(Byzantine::Twin)
            | Some(Byzantine::JunkVotes) => deliver(self, msg),
            Some(Byzantine::Silent) => {}
            Some(Byzantine::SwapSignaturesProposer) => {
                let msg = match msg {
                    WireMessage::Proposal(p) if p.proposer == self.nodes[i].key.public_key() => {
                        let reseal = self.rng.gen_bool(0.5);
                        let key = self.nodes[i].key.clone();
                        WireMessage::Proposal(self.swap_proposal(&p, reseal.then_some(&key)))
                    }
                    WireMessage::CompactProposal(p)
                        if p.proposer == self.nodes[i].key.public_key() =>
                    {
                        let reseal = self.rng.gen_bool(0.5);
                        let key = self.nodes[i].key.clone();
                        WireMessage::CompactProposal(self.swap_compact(&p, reseal.then_some(&key)))
                    }
                    other => other,
                };
                deliver(self, msg)
            }
            Some(Byzantine::SwapSignaturesRelay) => {
                let msg = self.swap_relayed(msg);
                deliver(self, msg)
            }
            Some(Byzantine::BadSignatures) => {
                if self.rng.gen_bool(0.5) {
                    deliver(self, corrupt(msg));
                } else {
                    deliver(self, msg);
                }
            }
            Some(Byzantine::Equivocate) => {
                let twin = self.equivocal(i, &msg);
                match (to, twin) {
                    (None, Some(other)) => {
                        let n = self.nodes.len();
                        for t in 0..n {
                            let m = if t % 2 == 0 {
                                msg.clone()
                            } else {
                                other.clone()
                            };
                            self.send(i, t, m);
                        }
                    }
                    // Sent to a few (a proposal goes out relayed): the same halves.
                    (Some(t), Some(other)) => {
                        let m = if t % 2 == 0 { msg } else { other };
                        self.send(i, t, m);
                    }
                    _ => deliver(self, msg),
                }
            }
        }
    }
}
