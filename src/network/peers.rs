//! The peer registry: which peers are known, connected and banned, with inbound and outbound
//! limits and a misbehaviour score that leads to a timed ban.
//!
//! Shared by every connection task through a `DashMap`; no entry guard is ever held across an
//! `.await` (each method takes and drops its guard inside).

use crate::types::PublicKey;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Score at which a peer is banned.
pub const BAN_THRESHOLD: u32 = 100;
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most peers remembered (connected or not); the oldest unconnected are forgotten first.
pub const MAX_KNOWN: usize = 10_000;
/// Entries forgotten in one go when the registry is full.
pub const FORGET_AT_ONCE: usize = MAX_KNOWN / 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Debug)]
pub struct PeerLimits {
    pub max_inbound: usize,
    pub max_outbound: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_inbound: 117,
            max_outbound: 64,
        }
    }
}

/// What the registry knows about one address.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub node_key: Option<PublicKey>,
    pub connected: Option<Direction>,
    pub score: u32,
    pub banned_until: Option<Instant>,
    pub last_seen: Instant,
    /// Whether the address accepts connections (learned from configuration, the chain or
    /// gossip), as opposed to an inbound peer's ephemeral port.
    pub dialable: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("peer {0} is banned")]
    Banned(SocketAddr),
    #[error("peer {0} is already connected")]
    AlreadyConnected(SocketAddr),
    #[error("no free {0:?} slot")]
    Full(Direction),
}

/// Peers by address.
pub struct PeerRegistry {
    peers: DashMap<SocketAddr, PeerInfo>,
    limits: PeerLimits,
    inbound: AtomicUsize,
    outbound: AtomicUsize,
}

impl PeerRegistry {
    pub fn new(limits: PeerLimits) -> PeerRegistry {
        PeerRegistry {
            peers: DashMap::new(),
            limits,
            inbound: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
        }
    }

    fn counter(&self, d: Direction) -> (&AtomicUsize, usize) {
        match d {
            Direction::Inbound => (&self.inbound, self.limits.max_inbound),
            Direction::Outbound => (&self.outbound, self.limits.max_outbound),
        }
    }

    /// Remembers an address that accepts connections (from configuration, the chain, or
    /// gossip).
    pub fn learn(&self, addr: SocketAddr, now: Instant) {
        self.remember(addr, now, true);
    }

    fn remember(&self, addr: SocketAddr, now: Instant, dialable: bool) {
        if self.peers.len() >= MAX_KNOWN && !self.peers.contains_key(&addr) {
            self.forget_oldest_unconnected(now);
        }
        let mut e = self.peers.entry(addr).or_insert_with(|| PeerInfo {
            addr,
            node_key: None,
            connected: None,
            score: 0,
            banned_until: None,
            last_seen: now,
            dialable,
        });
        e.dialable |= dialable;
    }

    /// Makes room: the oldest `FORGET_AT_ONCE` entries that are neither connected nor under a
    /// running ban go (an expired ban is forgotten like any other entry). One pass over the
    /// registry frees many slots, so an `Addr` of new addresses into a full registry costs a
    /// scan per `FORGET_AT_ONCE` of them, not one each.
    fn forget_oldest_unconnected(&self, now: Instant) {
        let mut old: Vec<(Instant, SocketAddr)> = self
            .peers
            .iter()
            .filter(|p| p.connected.is_none() && p.banned_until.is_none_or(|u| u <= now))
            .map(|p| (p.last_seen, p.addr))
            .collect();
        if old.len() > FORGET_AT_ONCE {
            old.select_nth_unstable(FORGET_AT_ONCE);
            old.truncate(FORGET_AT_ONCE);
        }
        for (_, a) in old {
            self.peers.remove(&a);
        }
    }

    pub fn is_banned(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.peers
            .get(addr)
            .and_then(|p| p.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Takes a connection slot for `addr`, or says why not.
    pub fn admit(&self, addr: SocketAddr, dir: Direction, now: Instant) -> Result<(), AdmitError> {
        if self.is_banned(&addr, now) {
            return Err(AdmitError::Banned(addr));
        }
        let (counter, max) = self.counter(dir);
        if counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(AdmitError::Full(dir));
        }
        self.remember(addr, now, dir == Direction::Outbound);
        let mut entry = match self.peers.get_mut(&addr) {
            Some(e) => e,
            None => {
                counter.fetch_sub(1, Ordering::AcqRel);
                return Err(AdmitError::Full(dir));
            }
        };
        if entry.connected.is_some() {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(AdmitError::AlreadyConnected(addr));
        }
        entry.connected = Some(dir);
        entry.last_seen = now;
        Ok(())
    }

    /// Records the key a connected peer proved in its hello.
    pub fn identify(&self, addr: &SocketAddr, key: PublicKey) {
        if let Some(mut p) = self.peers.get_mut(addr) {
            p.node_key = Some(key);
        }
    }

    /// Frees the connection slot of `addr`.
    pub fn disconnected(&self, addr: &SocketAddr) {
        if let Some(mut p) = self.peers.get_mut(addr) {
            if let Some(dir) = p.connected.take() {
                self.counter(dir).0.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Adds to a peer's misbehaviour score; returns true if that banned it.
    pub fn penalize(&self, addr: &SocketAddr, points: u32, now: Instant) -> bool {
        self.remember(*addr, now, false);
        let Some(mut p) = self.peers.get_mut(addr) else {
            return false;
        };
        p.score = p.score.saturating_add(points);
        if p.score >= BAN_THRESHOLD && p.banned_until.is_none_or(|u| u <= now) {
            p.banned_until = Some(now + BAN_DURATION);
            crate::metrics::peer_banned(crate::metrics::BanReason::Misbehaviour);
            return true;
        }
        false
    }

    /// Bans until `until` (operator's `setban`, or proof of Byzantine behaviour).
    pub fn ban(&self, addr: SocketAddr, until: Instant, now: Instant) {
        self.remember(addr, now, false);
        if let Some(mut p) = self.peers.get_mut(&addr) {
            p.banned_until = Some(until);
        }
        crate::metrics::peer_banned(crate::metrics::BanReason::Operator);
    }

    /// Lifts the ban on `addr`; returns whether there was one.
    pub fn unban(&self, addr: &SocketAddr, now: Instant) -> bool {
        match self.peers.get_mut(addr) {
            Some(mut p) if p.banned_until.is_some_and(|u| u > now) => {
                p.banned_until = None;
                p.score = 0;
                true
            }
            _ => false,
        }
    }

    /// Addresses banned now, with when each ban ends.
    pub fn banned(&self, now: Instant) -> Vec<(SocketAddr, Instant)> {
        let mut out: Vec<_> = self
            .peers
            .iter()
            .filter_map(|p| p.banned_until.filter(|u| *u > now).map(|u| (p.addr, u)))
            .collect();
        out.sort();
        out
    }

    /// Stops dialing `addr` (RPC `addnode remove`); returns whether it was known.
    pub fn forget_dialable(&self, addr: &SocketAddr) -> bool {
        match self.peers.get_mut(addr) {
            Some(mut p) if p.dialable => {
                p.dialable = false;
                true
            }
            _ => false,
        }
    }

    /// Lifts every ban and resets scores.
    pub fn clear_bans(&self) {
        for mut p in self.peers.iter_mut() {
            p.banned_until = None;
            p.score = 0;
        }
    }

    pub fn connected_count(&self, dir: Direction) -> usize {
        self.counter(dir).0.load(Ordering::Acquire)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<PeerInfo> {
        self.peers.get(addr).map(|p| p.clone())
    }

    /// Known addresses that are neither connected nor banned, oldest-seen first: candidates
    /// to dial and to share in address gossip.
    pub fn candidates(&self, now: Instant, max: usize) -> Vec<SocketAddr> {
        let mut c: Vec<(Instant, SocketAddr)> = self
            .peers
            .iter()
            .filter(|p| {
                p.dialable && p.connected.is_none() && p.banned_until.is_none_or(|u| u <= now)
            })
            .map(|p| (p.last_seen, p.addr))
            .collect();
        c.sort();
        c.into_iter().take(max).map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn limits_and_duplicates() {
        let now = Instant::now();
        let r = PeerRegistry::new(PeerLimits {
            max_inbound: 2,
            max_outbound: 1,
        });
        assert_eq!(r.admit(addr(1), Direction::Inbound, now), Ok(()));
        assert_eq!(
            r.admit(addr(1), Direction::Inbound, now),
            Err(AdmitError::AlreadyConnected(addr(1)))
        );
        assert_eq!(r.admit(addr(2), Direction::Inbound, now), Ok(()));
        assert_eq!(
            r.admit(addr(3), Direction::Inbound, now),
            Err(AdmitError::Full(Direction::Inbound))
        );
        assert_eq!(r.admit(addr(3), Direction::Outbound, now), Ok(()));
        assert_eq!(r.connected_count(Direction::Inbound), 2);
        r.disconnected(&addr(1));
        assert_eq!(r.connected_count(Direction::Inbound), 1);
        assert_eq!(r.admit(addr(4), Direction::Inbound, now), Ok(()));
    }

    #[test]
    fn misbehaviour_leads_to_a_timed_ban() {
        let now = Instant::now();
        let r = PeerRegistry::new(PeerLimits::default());
        assert!(!r.penalize(&addr(1), 60, now));
        assert!(r.penalize(&addr(1), 60, now));
        assert!(r.is_banned(&addr(1), now));
        assert_eq!(
            r.admit(addr(1), Direction::Inbound, now),
            Err(AdmitError::Banned(addr(1)))
        );
        assert!(!r.is_banned(&addr(1), now + BAN_DURATION + Duration::from_secs(1)));
        r.clear_bans();
        assert!(!r.is_banned(&addr(1), now));
        assert!(
            !r.candidates(now, 10).contains(&addr(1)),
            "an inbound peer's port is not an address to dial"
        );
        r.learn(addr(1), now);
        assert!(r.candidates(now, 10).contains(&addr(1)));
    }
}
