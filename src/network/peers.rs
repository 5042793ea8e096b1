//! The peer registry: which addresses are known and connected, the inbound and outbound
//! slots with their per-IP and per-subnet caps, and the misbehaviour scores that lead to a
//! timed ban.
//!
//! Scores and bans are kept per [`BanTarget`]: the IP address of a connection before its
//! handshake, the proven node key after it. Never the ephemeral port: a peer that reconnects
//! from another port is the same peer, inbound or outbound alike.
//!
//! Shared by every connection task through `DashMap`s; no entry guard is ever held across an
//! `.await` (each method takes and drops its guards inside).

use crate::types::PublicKey;
use dashmap::DashMap;
use std::net::{IpAddr, SocketAddr};
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
/// Most scores remembered; the oldest without a running ban are forgotten first.
pub const MAX_STANDINGS: usize = 10_000;
/// Most outbound sessions to masternodes of the current set, beyond `max_outbound`.
pub const MAX_MASTERNODE_OUTBOUND: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Debug)]
pub struct PeerLimits {
    pub max_inbound: usize,
    /// Outbound slots for seeds and gossiped addresses; dials to masternodes of the current
    /// set do not count against them (they have their own, bounded by the set).
    pub max_outbound: usize,
    /// Inbound connections from one IP address.
    pub max_inbound_per_ip: usize,
    /// Inbound connections from one /24 (IPv4) or /64 (IPv6) subnet.
    pub max_inbound_per_subnet: usize,
    /// Whether the two caps above apply to loopback connections too. Off by default: a
    /// localnet runs every node on 127.0.0.1.
    pub cap_loopback: bool,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_inbound: 117,
            max_outbound: 64,
            max_inbound_per_ip: 8,
            max_inbound_per_subnet: 16,
            cap_loopback: false,
        }
    }
}

/// Who a score or a ban is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    Ip(IpAddr),
    Node(PublicKey),
}

/// The subnet an address belongs to for the inbound caps and eviction: its /24 (IPv4) or /64
/// (IPv6). An IPv4-mapped IPv6 address counts as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet([u8; 9]);

impl Subnet {
    pub fn of(ip: IpAddr) -> Subnet {
        // The first byte names the family, so the two kinds of group never collide.
        let mut g = [0u8; 9];
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        match (v4, ip) {
            (Some(v4), _) => {
                g[0] = 4;
                g[1..4].copy_from_slice(&v4.octets()[..3]);
            }
            (None, IpAddr::V6(v6)) => {
                g[0] = 6;
                g[1..9].copy_from_slice(&v6.octets()[..8]);
            }
            (None, IpAddr::V4(_)) => {}
        }
        Subnet(g)
    }
}

/// What the registry knows about one address.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub node_key: Option<PublicKey>,
    pub connected: Option<Direction>,
    /// Whether the connection holds a masternode outbound slot (not a `max_outbound` one).
    pub masternode_slot: bool,
    pub last_seen: Instant,
    /// Whether the address accepts connections (learned from configuration, the chain or
    /// gossip), as opposed to an inbound peer's ephemeral port.
    pub dialable: bool,
}

/// A score and, once it reached the threshold or an operator said so, a ban.
#[derive(Clone, Copy, Debug)]
struct Standing {
    score: u32,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("peer {0} is banned")]
    Banned(SocketAddr),
    #[error("peer {0} is already connected")]
    AlreadyConnected(SocketAddr),
    #[error("no free {0:?} slot")]
    Full(Direction),
    #[error("{0} already has {1} inbound connections from its IP address")]
    IpFull(IpAddr, usize),
    #[error("{0} already has {1} inbound connections from its subnet")]
    SubnetFull(IpAddr, usize),
}

/// Which slot a connection asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Inbound,
    /// An outbound slot for a seed or a gossiped address.
    Outbound,
    /// An outbound slot for a masternode of the current set.
    Masternode,
}

/// Peers by address, scores by IP and key.
pub struct PeerRegistry {
    peers: DashMap<SocketAddr, PeerInfo>,
    standings: DashMap<BanTarget, Standing>,
    per_ip: DashMap<IpAddr, usize>,
    per_subnet: DashMap<Subnet, usize>,
    limits: PeerLimits,
    inbound: AtomicUsize,
    outbound: AtomicUsize,
    masternode_outbound: AtomicUsize,
}

impl PeerRegistry {
    pub fn new(limits: PeerLimits) -> PeerRegistry {
        PeerRegistry {
            peers: DashMap::new(),
            standings: DashMap::new(),
            per_ip: DashMap::new(),
            per_subnet: DashMap::new(),
            limits,
            inbound: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            masternode_outbound: AtomicUsize::new(0),
        }
    }

    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    fn counter(&self, s: Slot) -> (&AtomicUsize, usize) {
        match s {
            Slot::Inbound => (&self.inbound, self.limits.max_inbound),
            Slot::Outbound => (&self.outbound, self.limits.max_outbound),
            Slot::Masternode => (&self.masternode_outbound, MAX_MASTERNODE_OUTBOUND),
        }
    }

    /// Remembers an address that accepts connections (from configuration, the chain, or
    /// gossip).
    pub fn learn(&self, addr: SocketAddr, now: Instant) {
        self.remember(addr, now, true);
    }

    fn remember(&self, addr: SocketAddr, now: Instant, dialable: bool) {
        if self.peers.len() >= MAX_KNOWN && !self.peers.contains_key(&addr) {
            self.forget_oldest_unconnected();
        }
        let mut e = self.peers.entry(addr).or_insert_with(|| PeerInfo {
            addr,
            node_key: None,
            connected: None,
            masternode_slot: false,
            last_seen: now,
            dialable,
        });
        e.dialable |= dialable;
    }

    /// Makes room: the oldest `FORGET_AT_ONCE` entries that are not connected go (bans live
    /// in `standings`, not here). One pass over the
    /// registry frees many slots, so an `Addr` of new addresses into a full registry costs a
    /// scan per `FORGET_AT_ONCE` of them, not one each.
    fn forget_oldest_unconnected(&self) {
        let mut old: Vec<(Instant, SocketAddr)> = self
            .peers
            .iter()
            .filter(|p| p.connected.is_none())
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

    fn target_banned(&self, t: &BanTarget, now: Instant) -> bool {
        self.standings
            .get(t)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Whether the IP address of `addr` is banned (the port does not matter).
    pub fn is_banned(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.target_banned(&BanTarget::Ip(addr.ip()), now)
    }

    /// Whether a node key is banned.
    pub fn is_key_banned(&self, key: &PublicKey, now: Instant) -> bool {
        self.target_banned(&BanTarget::Node(*key), now)
    }

    fn capped(&self, ip: IpAddr) -> bool {
        self.limits.cap_loopback || !ip.is_loopback()
    }

    /// Whether an inbound connection from `ip` would pass the per-IP and per-subnet caps
    /// (checked before eviction: a crowd from one place cannot evict anybody).
    pub fn check_inbound_caps(&self, ip: IpAddr) -> Result<(), AdmitError> {
        if !self.capped(ip) {
            return Ok(());
        }
        let at_ip = self.per_ip.get(&ip).map_or(0, |n| *n);
        if at_ip >= self.limits.max_inbound_per_ip {
            return Err(AdmitError::IpFull(ip, at_ip));
        }
        let at_subnet = self.per_subnet.get(&Subnet::of(ip)).map_or(0, |n| *n);
        if at_subnet >= self.limits.max_inbound_per_subnet {
            return Err(AdmitError::SubnetFull(ip, at_subnet));
        }
        Ok(())
    }

    /// Takes the per-IP and per-subnet places of an inbound connection, or says why not.
    fn take_caps(&self, ip: IpAddr) -> Result<(), AdmitError> {
        if !self.capped(ip) {
            return Ok(());
        }
        {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.limits.max_inbound_per_ip {
                return Err(AdmitError::IpFull(ip, *n));
            }
            *n += 1;
        }
        let mut s = self.per_subnet.entry(Subnet::of(ip)).or_insert(0);
        if *s >= self.limits.max_inbound_per_subnet {
            let at = *s;
            drop(s);
            self.release_ip(ip);
            return Err(AdmitError::SubnetFull(ip, at));
        }
        *s += 1;
        Ok(())
    }

    fn release_ip(&self, ip: IpAddr) {
        if let Some(mut n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
        }
        self.per_ip.remove_if(&ip, |_, n| *n == 0);
    }

    fn release_caps(&self, ip: IpAddr) {
        if !self.capped(ip) {
            return;
        }
        self.release_ip(ip);
        let g = Subnet::of(ip);
        if let Some(mut n) = self.per_subnet.get_mut(&g) {
            *n = n.saturating_sub(1);
        }
        self.per_subnet.remove_if(&g, |_, n| *n == 0);
    }

    /// Takes a connection slot for `addr`, or says why not. `over_limit` lets an inbound
    /// connection in although the inbound slots are full: the caller has just evicted a
    /// peer whose slot is being freed.
    pub fn admit(
        &self,
        addr: SocketAddr,
        slot: Slot,
        over_limit: bool,
        now: Instant,
    ) -> Result<(), AdmitError> {
        if self.is_banned(&addr, now) {
            return Err(AdmitError::Banned(addr));
        }
        let dir = match slot {
            Slot::Inbound => Direction::Inbound,
            Slot::Outbound | Slot::Masternode => Direction::Outbound,
        };
        if slot == Slot::Inbound {
            self.take_caps(addr.ip())?;
        }
        let undo_caps = || {
            if slot == Slot::Inbound {
                self.release_caps(addr.ip());
            }
        };
        let (counter, max) = self.counter(slot);
        let limit = if over_limit { usize::MAX } else { max };
        if counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            undo_caps();
            return Err(AdmitError::Full(dir));
        }
        self.remember(addr, now, dir == Direction::Outbound);
        let mut entry = match self.peers.get_mut(&addr) {
            Some(e) => e,
            None => {
                counter.fetch_sub(1, Ordering::AcqRel);
                undo_caps();
                return Err(AdmitError::Full(dir));
            }
        };
        if entry.connected.is_some() {
            counter.fetch_sub(1, Ordering::AcqRel);
            drop(entry);
            undo_caps();
            return Err(AdmitError::AlreadyConnected(addr));
        }
        entry.connected = Some(dir);
        entry.masternode_slot = slot == Slot::Masternode;
        entry.last_seen = now;
        Ok(())
    }

    /// Records the key a connected peer proved in its handshake.
    pub fn identify(&self, addr: &SocketAddr, key: PublicKey) {
        if let Some(mut p) = self.peers.get_mut(addr) {
            p.node_key = Some(key);
        }
    }

    /// Frees the connection slot of `addr`.
    pub fn disconnected(&self, addr: &SocketAddr) {
        let freed = self.peers.get_mut(addr).and_then(|mut p| {
            let dir = p.connected.take()?;
            Some(match dir {
                Direction::Inbound => Slot::Inbound,
                Direction::Outbound if p.masternode_slot => Slot::Masternode,
                Direction::Outbound => Slot::Outbound,
            })
        });
        if let Some(slot) = freed {
            self.counter(slot).0.fetch_sub(1, Ordering::AcqRel);
            if slot == Slot::Inbound {
                self.release_caps(addr.ip());
            }
        }
    }

    /// Makes room for a new standing: the oldest one without a running ban goes.
    fn forget_oldest_standing(&self, now: Instant) {
        let oldest = self
            .standings
            .iter()
            .filter(|s| s.banned_until.is_none_or(|u| u <= now))
            .min_by_key(|s| s.last_seen)
            .map(|s| *s.key());
        if let Some(t) = oldest {
            self.standings.remove(&t);
        }
    }

    fn standing(
        &self,
        t: BanTarget,
        now: Instant,
    ) -> dashmap::mapref::one::RefMut<'_, BanTarget, Standing> {
        if self.standings.len() >= MAX_STANDINGS && !self.standings.contains_key(&t) {
            self.forget_oldest_standing(now);
        }
        let mut s = self.standings.entry(t).or_insert(Standing {
            score: 0,
            banned_until: None,
            last_seen: now,
        });
        s.last_seen = now;
        s
    }

    /// Adds to the misbehaviour score of `target`; returns true if that banned it.
    pub fn penalize(&self, target: BanTarget, points: u32, now: Instant) -> bool {
        let mut s = self.standing(target, now);
        s.score = s.score.saturating_add(points);
        if s.score >= BAN_THRESHOLD && s.banned_until.is_none_or(|u| u <= now) {
            s.banned_until = Some(now + BAN_DURATION);
            crate::metrics::peer_banned(crate::metrics::BanReason::Misbehaviour);
            return true;
        }
        false
    }

    /// The misbehaviour score of `target`.
    pub fn score(&self, target: &BanTarget) -> u32 {
        self.standings.get(target).map_or(0, |s| s.score)
    }

    /// Bans the IP address of `addr` until `until` (operator's `setban`); the port does not
    /// matter.
    pub fn ban(&self, addr: SocketAddr, until: Instant, now: Instant) {
        self.standing(BanTarget::Ip(addr.ip()), now).banned_until = Some(until);
        crate::metrics::peer_banned(crate::metrics::BanReason::Operator);
    }

    /// Bans a node key until `until` (operator's `setban` of a key): its sessions end and it
    /// is refused from any address.
    pub fn ban_key(&self, key: PublicKey, until: Instant, now: Instant) {
        self.standing(BanTarget::Node(key), now).banned_until = Some(until);
        crate::metrics::peer_banned(crate::metrics::BanReason::Operator);
    }

    /// Lifts the ban on a node key; returns whether there was one.
    pub fn unban_key(&self, key: &PublicKey, now: Instant) -> bool {
        self.lift(&BanTarget::Node(*key), now)
    }

    /// Lifts the ban on the IP address of `addr`; returns whether there was one.
    pub fn unban(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.lift(&BanTarget::Ip(addr.ip()), now)
    }

    fn lift(&self, target: &BanTarget, now: Instant) -> bool {
        match self.standings.get_mut(target) {
            Some(mut s) if s.banned_until.is_some_and(|u| u > now) => {
                s.banned_until = None;
                s.score = 0;
                true
            }
            _ => false,
        }
    }

    /// IP addresses banned now (as `ip:0`), with when each ban ends.
    pub fn banned(&self, now: Instant) -> Vec<(SocketAddr, Instant)> {
        let mut out: Vec<_> = self
            .standings
            .iter()
            .filter_map(|s| match (s.key(), s.banned_until) {
                (BanTarget::Ip(ip), Some(u)) if u > now => Some((SocketAddr::new(*ip, 0), u)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Node keys banned now, with when each ban ends.
    pub fn banned_keys(&self, now: Instant) -> Vec<(PublicKey, Instant)> {
        let mut out: Vec<_> = self
            .standings
            .iter()
            .filter_map(|s| match (s.key(), s.banned_until) {
                (BanTarget::Node(k), Some(u)) if u > now => Some((*k, u)),
                _ => None,
            })
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
        self.standings.clear();
    }

    /// Connections in `dir`; outbound counts masternode slots too.
    pub fn connected_count(&self, dir: Direction) -> usize {
        match dir {
            Direction::Inbound => self.inbound.load(Ordering::Acquire),
            Direction::Outbound => {
                self.outbound.load(Ordering::Acquire)
                    + self.masternode_outbound.load(Ordering::Acquire)
            }
        }
    }

    /// Connections holding `slot`.
    pub fn slot_count(&self, slot: Slot) -> usize {
        self.counter(slot).0.load(Ordering::Acquire)
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
            .filter(|p| p.dialable && p.connected.is_none())
            .map(|p| (p.last_seen, p.addr))
            .filter(|(_, a)| !self.is_banned(a, now))
            .collect();
        c.sort();
        c.into_iter().take(max).map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SecretKey;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn limits(max_inbound: usize, max_outbound: usize) -> PeerLimits {
        PeerLimits {
            max_inbound,
            max_outbound,
            ..PeerLimits::default()
        }
    }

    #[test]
    fn limits_and_duplicates() {
        let now = Instant::now();
        let r = PeerRegistry::new(limits(2, 1));
        let admit = |a, s| r.admit(a, s, false, now);
        assert_eq!(admit(addr(1), Slot::Inbound), Ok(()));
        assert_eq!(
            admit(addr(1), Slot::Inbound),
            Err(AdmitError::AlreadyConnected(addr(1)))
        );
        assert_eq!(admit(addr(2), Slot::Inbound), Ok(()));
        assert_eq!(
            admit(addr(3), Slot::Inbound),
            Err(AdmitError::Full(Direction::Inbound))
        );
        assert_eq!(r.admit(addr(3), Slot::Inbound, true, now), Ok(()));
        assert_eq!(admit(addr(4), Slot::Outbound), Ok(()));
        assert_eq!(
            admit(addr(5), Slot::Outbound),
            Err(AdmitError::Full(Direction::Outbound))
        );
        // A masternode dial never finds the outbound slots full.
        assert_eq!(admit(addr(5), Slot::Masternode), Ok(()));
        assert_eq!(r.connected_count(Direction::Inbound), 3);
        assert_eq!(r.connected_count(Direction::Outbound), 2);
        r.disconnected(&addr(1));
        r.disconnected(&addr(5));
        assert_eq!(r.connected_count(Direction::Inbound), 2);
        assert_eq!(r.slot_count(Slot::Masternode), 0);
        assert_eq!(r.slot_count(Slot::Outbound), 1);
    }

    #[test]
    fn inbound_caps_per_ip_and_subnet() {
        let now = Instant::now();
        let r = PeerRegistry::new(PeerLimits {
            max_inbound: 100,
            max_inbound_per_ip: 2,
            max_inbound_per_subnet: 3,
            ..PeerLimits::default()
        });
        let at = |ip: [u8; 4], port| SocketAddr::from((ip, port));
        assert_eq!(
            r.admit(at([10, 0, 0, 1], 1), Slot::Inbound, false, now),
            Ok(())
        );
        assert_eq!(
            r.admit(at([10, 0, 0, 1], 2), Slot::Inbound, false, now),
            Ok(())
        );
        assert!(matches!(
            r.admit(at([10, 0, 0, 1], 3), Slot::Inbound, false, now),
            Err(AdmitError::IpFull(..))
        ));
        assert_eq!(
            r.admit(at([10, 0, 0, 2], 1), Slot::Inbound, false, now),
            Ok(())
        );
        assert!(matches!(
            r.admit(at([10, 0, 0, 3], 1), Slot::Inbound, false, now),
            Err(AdmitError::SubnetFull(..))
        ));
        // Even an eviction (over_limit) does not pass the caps.
        assert!(r
            .admit(at([10, 0, 0, 3], 1), Slot::Inbound, true, now)
            .is_err());
        assert_eq!(
            r.admit(at([10, 0, 1, 3], 1), Slot::Inbound, false, now),
            Ok(())
        );
        r.disconnected(&at([10, 0, 0, 1], 1));
        assert_eq!(r.check_inbound_caps("10.0.0.1".parse().unwrap()), Ok(()));
        // Loopback is exempt unless configured otherwise.
        for port in 1..10 {
            assert_eq!(r.admit(addr(port), Slot::Inbound, false, now), Ok(()));
        }
        // IPv6 groups by /64.
        assert_eq!(
            Subnet::of("2001:db8::1".parse().unwrap()),
            Subnet::of("2001:db8::ffff".parse().unwrap())
        );
        assert_ne!(
            Subnet::of("2001:db8::1".parse().unwrap()),
            Subnet::of("2001:db8:0:1::1".parse().unwrap())
        );
        assert_eq!(
            Subnet::of("::ffff:10.0.0.1".parse().unwrap()),
            Subnet::of("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn misbehaviour_leads_to_a_timed_ban_by_ip_or_key_never_by_port() {
        let now = Instant::now();
        let r = PeerRegistry::new(PeerLimits::default());
        let key = SecretKey::from_bytes(&[3; 32]).public_key();
        assert!(!r.penalize(BanTarget::Node(key), 60, now));
        assert!(r.penalize(BanTarget::Node(key), 60, now));
        assert!(r.is_key_banned(&key, now));
        assert!(!r.is_banned(&addr(1), now), "a key ban is not an IP ban");
        assert!(!r.is_key_banned(&key, now + BAN_DURATION + Duration::from_secs(1)));
        let remote = SocketAddr::from(([192, 0, 2, 7], 4000));
        assert!(r.penalize(BanTarget::Ip(remote.ip()), 100, now));
        let other_port = SocketAddr::from(([192, 0, 2, 7], 5000));
        assert_eq!(
            r.admit(other_port, Slot::Inbound, false, now),
            Err(AdmitError::Banned(other_port))
        );
        assert_eq!(
            r.admit(other_port, Slot::Outbound, false, now),
            Err(AdmitError::Banned(other_port))
        );
        assert_eq!(
            r.banned(now),
            vec![(SocketAddr::new(remote.ip(), 0), now + BAN_DURATION)]
        );
        assert_eq!(r.banned_keys(now).len(), 1);
        r.clear_bans();
        assert!(!r.is_key_banned(&key, now));
        assert!(!r.is_banned(&remote, now));
        r.admit(addr(1), Slot::Inbound, false, now).unwrap();
        r.disconnected(&addr(1));
        assert!(
            !r.candidates(now, 10).contains(&addr(1)),
            "an inbound peer's port is not an address to dial"
        );
        r.learn(addr(1), now);
        assert!(r.candidates(now, 10).contains(&addr(1)));
    }
}
