//! Transactions passed on by announcement: a node that took a peer's transaction tells a few
//! peers its txid, and a peer that lacks it asks for the body (inv, getdata, body, as Bitcoin
//! relays). Pushing the body to a few peers from every node made each node receive each
//! transaction about nine times (once from its originator, eight times relayed), most of a
//! large network's traffic (SCALING.md, stop 46). A txid is 32 bytes; a transfer ≈ 250.
//!
//! ```text
//! pool took it ─► held (served to peers it was announced to) ─► outbox ─flush─► TxInv to 8
//! TxInv from P ─► held or asked already? ─yes─► P noted (an announcer to ask if the first fails)
//!                                       └─no──► GetTxs to P, an answer due by ASK_TIMEOUT_MS
//! GetTxs from P ─► bodies of those announced to P (each once) ─► Transaction frames
//! Transaction from P ─► checks run; asked again only if none passed by the deadline
//! deadline passed ─► ask the next announcer, if any; else forget the txid
//! ```
//!
//! A local submit still pushes its body to every peer (the shell does that, and holds nothing:
//! nobody was told to ask): the originator's peers (every masternode, in a masternode's mesh)
//! get the body with no round trip, and the announcements behind it cost each of them 32
//! bytes a copy. A transaction no peer is known to hold is pushed whole too
//! ([`TxRelay::held_elsewhere`]), so the only holder's crash cannot lose it.
//!
//! What an adversary can do with it, and the bounds: a peer that announces and never answers,
//! or answers with a copy the checks refuse (a txid does not cover signatures), delays the
//! body by one `ASK_TIMEOUT_MS` per such announcer ahead of an honest one; the honest
//! announcers wait in line (`MAX_ANNOUNCERS`), regossip announces again every half second, and
//! a refused copy scores its sender. A peer can ask only for what was announced to it, once per
//! announcement, so a request never makes this node send more than it chose to offer. Asks in
//! flight are bounded per peer and in all (`MAX_ASKED_PER_PEER`, `MAX_WANTED`), bodies held
//! by count and age (`MAX_HELD`, `HOLD_MS`), each announcer's line and the outbox likewise.
//!
//! The structure is pure (time is passed in, randomness is the caller's), so the simulation
//! relays with the same code as the network.

use crate::consensus::driver::PeerId;
use crate::consensus::finality::Millis;
use crate::types::{Transaction, Txid};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// How long an asked peer has to answer before the next announcer is asked: a round trip
/// across the world (≈ 300 ms) with room for a busy peer's queue.
pub const ASK_TIMEOUT_MS: Millis = 1_000;
/// How long a taken body is kept for peers that may ask: an announcement is answered within a
/// round trip, or after the announcers ahead timed out (`MAX_ANNOUNCERS` × `ASK_TIMEOUT_MS`);
/// regossip announces a pending transaction again (and holds it again) every half second.
/// Most bodies are final and in a block long before: these are the only copies kept then.
pub const HOLD_MS: Millis = 5_000;
/// How often the outboxes are flushed: a transaction waits at most this long per hop, and
/// the announcements of a busy node share frames.
pub const FLUSH_MS: Millis = 20;
/// Most txids in one announcement or request.
pub const MAX_TXIDS_PER_FRAME: usize = 4_096;
/// Most bodies held for serving: `HOLD_MS` at 20,000 transactions a second, ≈ 40 MB of
/// transfers.
pub const MAX_HELD: usize = 100_000;
/// Most txids asked for and not yet taken.
pub const MAX_WANTED: usize = 200_000;
/// Most txids asked of one peer and not yet answered: a peer announcing made-up txids holds
/// only its own share of the asks.
pub const MAX_ASKED_PER_PEER: usize = 16_384;
/// Announcers remembered per txid asked for, to ask in turn if the first fails.
pub const MAX_ANNOUNCERS: usize = 4;
/// Peers remembered per body, as holders (not announced to) or as told (may ask).
const MAX_PEERS_PER_TX: usize = 16;
/// Txids waiting for the next flush; beyond, announcements are dropped (regossip announces
/// pending ones again).
pub const MAX_OUTBOX: usize = 65_536;

/// A body this node took, for peers that ask.
struct Held {
    tx: Arc<Transaction>,
    at: Millis,
    /// Peers that sent or announced it: not announced to.
    holders: Vec<PeerId>,
    /// Peers it was announced to, each of which may ask for it once.
    told: Vec<PeerId>,
}

/// A txid asked for, or whose body is being checked.
struct Wanted {
    /// The peer asked, if any (`None`: a body came unasked and is being checked).
    asked: Option<PeerId>,
    deadline: Millis,
    /// Who else announced it, in order, to ask if the asked one fails.
    announcers: Vec<PeerId>,
    /// Peers that sent or announced it.
    holders: Vec<PeerId>,
}

/// Counts of what the relay did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Asks that passed their deadline with no body taken.
    pub timed_out: u64,
    /// Bodies served to peers that asked.
    pub served: u64,
}

/// One node's transaction relay: bodies held, txids asked for, announcements waiting.
#[derive(Default)]
pub struct TxRelay {
    held: HashMap<Txid, Held>,
    wanted: HashMap<Txid, Wanted>,
    /// Deadlines in the order they were set (every one is now + `ASK_TIMEOUT_MS`, so the
    /// order is the deadlines'); an entry whose txid was taken or given a later deadline
    /// since is skipped when it comes up.
    deadlines: VecDeque<(Millis, Txid)>,
    asked_per_peer: HashMap<PeerId, usize>,
    /// Txids to announce at the next flush.
    outbox: Vec<Txid>,
    /// When held bodies were last swept for age.
    swept_at: Millis,
    counts: RelayCounts,
}

fn note(list: &mut Vec<PeerId>, peer: PeerId) {
    if list.len() < MAX_PEERS_PER_TX && !list.contains(&peer) {
        list.push(peer);
    }
}

impl TxRelay {
    pub fn new() -> TxRelay {
        TxRelay::default()
    }

    /// This node took `tx` (its pool accepted it): held for peers that will be told of it.
    pub fn took(&mut self, tx: Arc<Transaction>, now: Millis) {
        let txid = tx.txid();
        let holders = match self.wanted.remove(&txid) {
            Some(w) => {
                self.unask(w.asked);
                w.holders
            }
            None => Vec::new(),
        };
        if let Some(h) = self.held.get_mut(&txid) {
            h.at = now;
            for p in holders {
                note(&mut h.holders, p);
            }
            return;
        }
        if self.held.len() >= MAX_HELD {
            self.sweep(now);
            if self.held.len() >= MAX_HELD {
                return;
            }
        }
        self.held.insert(
            txid,
            Held {
                tx,
                at: now,
                holders,
                told: Vec::new(),
            },
        );
    }

    /// Whether a peer is known to hold `txid` (it sent or announced it). A transaction no
    /// peer is known to hold (this node's own submit, whose pushes may all have been lost) is
    /// pushed whole by the shells rather than announced: an announcement would point at this
    /// node alone, and a crash of this node before anyone asked would lose it (the
    /// simulation's slot seed 108).
    pub fn held_elsewhere(&self, txid: &Txid) -> bool {
        self.held.get(txid).is_some_and(|h| !h.holders.is_empty())
    }

    /// Queues `txid` (held) for the next flush. Announcing again (regossip) may tell a peer
    /// twice: an announcement lost with a full queue or a dropped connection is made good, and
    /// a peer that holds it ignores 32 bytes.
    pub fn announce(&mut self, txid: Txid) {
        if self.outbox.len() < MAX_OUTBOX && self.held.contains_key(&txid) {
            self.outbox.push(txid);
        }
    }

    /// The announcements of one flush, per peer, in frames of at most `MAX_TXIDS_PER_FRAME`:
    /// each txid to the first `fanout` of `peers`, in an order drawn once per flush, that are
    /// not known to hold it. Each transaction still goes to `fanout` random peers, but one
    /// flush's go to the same few in one frame each: drawn per transaction, at 1,000 peers
    /// every announcement was a frame of its own (SCALING.md, stop 46).
    pub fn take_outbox(
        &mut self,
        peers: &[PeerId],
        fanout: usize,
        rng: &mut impl Rng,
    ) -> Vec<(PeerId, Vec<Txid>)> {
        let queued = std::mem::take(&mut self.outbox);
        if queued.is_empty() || peers.is_empty() {
            return Vec::new();
        }
        let mut order = peers.to_vec();
        order.shuffle(rng);
        let mut lists: Vec<Vec<Txid>> = vec![Vec::new(); order.len()];
        for txid in queued {
            let Some(h) = self.held.get_mut(&txid) else {
                continue;
            };
            let mut told = 0;
            for (k, p) in order.iter().enumerate() {
                if told == fanout {
                    break;
                }
                if h.holders.contains(p) {
                    continue;
                }
                lists[k].push(txid);
                if !h.told.contains(p) {
                    if h.told.len() >= MAX_PEERS_PER_TX {
                        h.told.remove(0);
                    }
                    h.told.push(*p);
                }
                told += 1;
            }
        }
        let mut out = Vec::new();
        for (peer, txids) in order.into_iter().zip(lists) {
            for chunk in txids.chunks(MAX_TXIDS_PER_FRAME) {
                out.push((peer, chunk.to_vec()));
            }
        }
        out
    }

    /// Peer `from` announced `txids`: those this node neither holds nor asked for already,
    /// to ask `from` for now (within the bounds on asks).
    pub fn on_announced(&mut self, from: PeerId, txids: &[Txid], now: Millis) -> Vec<Txid> {
        let mut ask = Vec::new();
        for txid in txids.iter().take(MAX_TXIDS_PER_FRAME) {
            if let Some(h) = self.held.get_mut(txid) {
                note(&mut h.holders, from);
                continue;
            }
            if let Some(w) = self.wanted.get_mut(txid) {
                note(&mut w.holders, from);
                if w.asked != Some(from)
                    && w.announcers.len() < MAX_ANNOUNCERS
                    && !w.announcers.contains(&from)
                {
                    w.announcers.push(from);
                }
                continue;
            }
            let asked = self.asked_per_peer.get(&from).copied().unwrap_or(0);
            if self.wanted.len() >= MAX_WANTED || asked >= MAX_ASKED_PER_PEER {
                continue;
            }
            self.asked_per_peer.insert(from, asked + 1);
            let deadline = now.saturating_add(ASK_TIMEOUT_MS);
            self.deadlines.push_back((deadline, *txid));
            self.wanted.insert(
                *txid,
                Wanted {
                    asked: Some(from),
                    deadline,
                    announcers: Vec::new(),
                    holders: vec![from],
                },
            );
            ask.push(*txid);
        }
        ask
    }

    /// A body of `txid` came from `from` (asked or not) and goes to the checks: announcements
    /// of it ask nobody until the deadline, by which the pool has taken it or refused it.
    pub fn on_body(&mut self, from: PeerId, txid: Txid, now: Millis) {
        if let Some(h) = self.held.get_mut(&txid) {
            note(&mut h.holders, from);
            return;
        }
        let full = self.wanted.len() >= MAX_WANTED;
        match self.wanted.get_mut(&txid) {
            Some(w) => {
                note(&mut w.holders, from);
                if w.asked == Some(from) {
                    // Answered: the peer's share of asks is free again; the deadline stands.
                    w.asked = None;
                    self.unask(Some(from));
                }
            }
            None if !full => {
                let deadline = now.saturating_add(ASK_TIMEOUT_MS);
                self.deadlines.push_back((deadline, txid));
                self.wanted.insert(
                    txid,
                    Wanted {
                        asked: None,
                        deadline,
                        announcers: Vec::new(),
                        holders: vec![from],
                    },
                );
            }
            None => {}
        }
    }

    /// The bodies `from` asks for that were announced to it, each served once per
    /// announcement.
    pub fn serve(&mut self, from: PeerId, txids: &[Txid]) -> Vec<Arc<Transaction>> {
        let mut bodies = Vec::new();
        for txid in txids.iter().take(MAX_TXIDS_PER_FRAME) {
            if let Some(h) = self.held.get_mut(txid) {
                if let Some(i) = h.told.iter().position(|p| *p == from) {
                    // Not a holder yet: the body may be lost on the way or refused, and a
                    // holder is never told again (the simulation's seed 307: a Gold voter
                    // whose served copy was lost was never offered it again, and the quorum
                    // that needed its weight waited for ever).
                    h.told.swap_remove(i);
                    bodies.push(Arc::clone(&h.tx));
                }
            }
        }
        self.counts.served += bodies.len() as u64;
        bodies
    }

    /// Asks past their deadline go to the next announcer (returned per peer, in the order
    /// they fell due); those with none left are forgotten, so a later announcement asks
    /// again. Bodies held longer than `HOLD_MS` are dropped, once a second.
    pub fn expire(&mut self, now: Millis) -> Vec<(PeerId, Vec<Txid>)> {
        let mut asks: BTreeMap<PeerId, Vec<Txid>> = BTreeMap::new();
        while let Some(&(deadline, txid)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(w) = self.wanted.get_mut(&txid) else {
                continue;
            };
            if w.deadline != deadline {
                continue;
            }
            let asked = w.asked.take();
            self.counts.timed_out += u64::from(asked.is_some());
            let mut next = None;
            while !w.announcers.is_empty() {
                let p = w.announcers.remove(0);
                if self.asked_per_peer.get(&p).copied().unwrap_or(0) < MAX_ASKED_PER_PEER {
                    next = Some(p);
                    break;
                }
            }
            match next {
                Some(p) => {
                    w.asked = Some(p);
                    w.deadline = now.saturating_add(ASK_TIMEOUT_MS);
                    self.deadlines.push_back((w.deadline, txid));
                    *self.asked_per_peer.entry(p).or_default() += 1;
                    asks.entry(p).or_default().push(txid);
                }
                None => {
                    self.wanted.remove(&txid);
                }
            }
            self.unask(asked);
        }
        if now.saturating_sub(self.swept_at) >= 1_000 {
            self.sweep(now);
        }
        asks.into_iter().collect()
    }

    /// Forgets a peer that left: its share of asks (asks made of it pass their deadline and
    /// go to the next announcer).
    pub fn forget_peer(&mut self, peer: PeerId) {
        self.asked_per_peer.remove(&peer);
    }

    /// Whether anything waits for a flush or a deadline.
    pub fn is_idle(&self) -> bool {
        self.outbox.is_empty() && self.deadlines.is_empty()
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    pub fn wanted_len(&self) -> usize {
        self.wanted.len()
    }

    pub fn counts(&self) -> RelayCounts {
        self.counts
    }

    fn unask(&mut self, peer: Option<PeerId>) {
        let Some(p) = peer else {
            return;
        };
        if let Some(n) = self.asked_per_peer.get_mut(&p) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.asked_per_peer.remove(&p);
            }
        }
    }

    fn sweep(&mut self, now: Millis) {
        self.swept_at = now;
        self.held.retain(|_, h| now.saturating_sub(h.at) < HOLD_MS);
        // A burst's tables are given back once three quarters stand empty.
        if self.held.capacity() > 4 * self.held.len().max(1_024) {
            self.held.shrink_to_fit();
        }
        if self.wanted.capacity() > 4 * self.wanted.len().max(1_024) {
            self.wanted.shrink_to_fit();
        }
        if self.deadlines.capacity() > 4 * self.deadlines.len().max(1_024) {
            self.deadlines.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::transfer::signed_transfer;
    use crate::types::{Amount, Hash32, Network, OutPoint, SecretKey, TxOutput};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tx(n: u8) -> Arc<Transaction> {
        let key = SecretKey::from_bytes(&[n; 32]);
        let out = TxOutput {
            amount: Amount(1_000),
            key_hash: key.public_key().key_hash(),
        };
        let spent = OutPoint::new(Hash32([n; 32]), 0);
        Arc::new(signed_transfer(
            Network::Localnet,
            &key,
            &[spent],
            vec![out],
        ))
    }

    #[test]
    fn a_taken_body_is_announced_to_a_few_and_served_once_to_each_told() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut r = TxRelay::new();
        let t = tx(1);
        // Peer 9 sent it: never announced back to 9.
        r.on_body(9, t.txid(), 0);
        r.took(Arc::clone(&t), 5);
        let peers: Vec<PeerId> = (1..=9).collect();
        r.announce(t.txid());
        let out = r.take_outbox(&peers, 3, &mut rng);
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|(p, txids)| *p != 9 && txids == &vec![t.txid()]));
        assert!(
            r.take_outbox(&peers, 3, &mut rng).is_empty(),
            "flushed once"
        );
        let told = out[0].0;
        assert_eq!(r.serve(told, &[t.txid()]), vec![Arc::clone(&t)]);
        assert!(
            r.serve(told, &[t.txid()]).is_empty(),
            "each announcement served once"
        );
        let stranger = (1..=8).find(|p| out.iter().all(|(q, _)| q != p)).unwrap();
        assert!(
            r.serve(stranger, &[t.txid()]).is_empty(),
            "a peer it was not announced to is not served"
        );
        // Announced again (regossip): to every peer not known to hold it (a told one that
        // did not ask may have lost the announcement; one that was served, the body), and
        // served again to one that asks again.
        r.announce(t.txid());
        let again = r.take_outbox(&peers, 8, &mut rng);
        assert_eq!(again.len(), 8);
        assert!(again.iter().any(|(p, _)| *p == told));
        assert_eq!(r.serve(told, &[t.txid()]), vec![Arc::clone(&t)]);
    }

    #[test]
    fn one_flush_announces_each_transaction_to_a_few_peers_in_one_frame_each() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut r = TxRelay::new();
        let peers: Vec<PeerId> = (1..=100).collect();
        let txs: Vec<Arc<Transaction>> = (10..60).map(tx).collect();
        for t in &txs {
            r.took(Arc::clone(t), 0);
            r.announce(t.txid());
        }
        // One of them came from peer 1: announced to eight others.
        r.on_announced(1, &[txs[0].txid()], 0);
        let out = r.take_outbox(&peers, 8, &mut rng);
        assert!(
            out.len() <= 9,
            "a frame per chosen peer, not per transaction"
        );
        for t in &txs {
            let to: Vec<PeerId> = (out.iter())
                .filter(|(_, ids)| ids.contains(&t.txid()))
                .map(|(p, _)| *p)
                .collect();
            assert_eq!(to.len(), 8);
            assert!(t.txid() != txs[0].txid() || !to.contains(&1));
        }
        // Drawn again at the next flush.
        for t in &txs {
            r.announce(t.txid());
        }
        let again = r.take_outbox(&peers, 8, &mut rng);
        let first: Vec<PeerId> = out.iter().map(|(p, _)| *p).collect();
        assert!(again.iter().any(|(p, _)| !first.contains(p)));
    }

    #[test]
    fn an_announcement_asks_once_and_a_silent_announcer_is_passed_over() {
        let mut r = TxRelay::new();
        let t = tx(2);
        let id = t.txid();
        assert_eq!(r.on_announced(1, &[id], 0), vec![id]);
        assert!(r.on_announced(2, &[id], 10).is_empty(), "asked already");
        assert!(r.on_announced(3, &[id], 20).is_empty());
        assert!(r.expire(ASK_TIMEOUT_MS - 1).is_empty(), "not due yet");
        // Peer 1 never answers: peer 2 is asked, then peer 3.
        assert_eq!(r.expire(ASK_TIMEOUT_MS), vec![(2, vec![id])]);
        assert_eq!(r.expire(2 * ASK_TIMEOUT_MS), vec![(3, vec![id])]);
        assert_eq!(r.counts().timed_out, 2);
        // Peer 3 answers; the checks pass and the pool takes it.
        r.on_body(3, id, 2 * ASK_TIMEOUT_MS + 5);
        r.took(Arc::clone(&t), 2 * ASK_TIMEOUT_MS + 6);
        assert!(r.expire(4 * ASK_TIMEOUT_MS).is_empty());
        assert_eq!(r.wanted_len(), 0);
        assert!(
            r.on_announced(4, &[id], 0).is_empty(),
            "held: nothing to ask"
        );
        assert!(r.is_idle());
    }

    #[test]
    fn a_body_being_checked_holds_back_asks_until_its_deadline() {
        let mut r = TxRelay::new();
        let id = tx(3).txid();
        r.on_body(1, id, 0);
        assert!(r.on_announced(2, &[id], 1).is_empty());
        // The copy from 1 was refused (never taken): by the deadline, announcer 2 is asked.
        assert_eq!(r.expire(ASK_TIMEOUT_MS), vec![(2, vec![id])]);
        // With nobody left to ask, the txid is forgotten and a later announcement asks again.
        assert!(r.expire(2 * ASK_TIMEOUT_MS).is_empty());
        assert_eq!(r.wanted_len(), 0);
        assert_eq!(r.on_announced(5, &[id], 3 * ASK_TIMEOUT_MS), vec![id]);
    }

    #[test]
    fn asks_are_bounded_per_peer_and_freed_by_answers_and_departures() {
        let mut r = TxRelay::new();
        let made_up: Vec<Txid> = (0..MAX_ASKED_PER_PEER as u32 + 10)
            .map(|i| Hash32::digest("test", &i.to_le_bytes()))
            .collect();
        let mut asked = 0;
        for chunk in made_up.chunks(MAX_TXIDS_PER_FRAME) {
            asked += r.on_announced(7, chunk, 0).len();
        }
        assert_eq!(
            asked, MAX_ASKED_PER_PEER,
            "a flood of made-up txids holds its share only"
        );
        // Another peer still gets its asks through.
        let real = tx(4).txid();
        assert_eq!(r.on_announced(8, &[real], 0), vec![real]);
        // Peer 7 leaves; its asks pass their deadline and are forgotten (no other announcer).
        r.forget_peer(7);
        assert!(r.expire(ASK_TIMEOUT_MS).is_empty());
        assert_eq!(r.wanted_len(), 0);
        assert_eq!(r.on_announced(7, &made_up[..3], ASK_TIMEOUT_MS).len(), 3);
    }

    #[test]
    fn held_bodies_age_out() {
        let mut r = TxRelay::new();
        r.took(tx(5), 0);
        r.took(tx(6), HOLD_MS / 2);
        r.expire(HOLD_MS);
        assert_eq!(r.held_len(), 1);
        r.expire(HOLD_MS + HOLD_MS / 2);
        assert_eq!(r.held_len(), 0);
    }
}
