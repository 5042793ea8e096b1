//! Which inbound peer to drop when the inbound slots are full and someone new knocks, after
//! Bitcoin Core's `SelectNodeToEvict`.
//!
//! An attacker can open many connections, but it cannot cheaply be a masternode of the
//! current set, be close to us (low latency), have been connected for long, or have sent us
//! consensus messages we had not seen. Peers with any of those properties are protected;
//! among the rest, the youngest connection of the most crowded subnet goes, so a crowd from
//! one place evicts itself first. A pure function: the caller gathers the facts.

use super::peers::Subnet;
use std::collections::BTreeMap;
use std::time::Instant;

/// Lowest-latency peers protected.
pub const PROTECT_LOW_PING: usize = 4;
/// Peers that most recently sent novel consensus messages protected.
pub const PROTECT_NOVEL: usize = 4;

/// What eviction knows about one inbound connection (in handshake or established).
#[derive(Clone, Debug)]
pub struct Candidate<T> {
    pub id: T,
    pub subnet: Subnet,
    pub connected_at: Instant,
    /// Measured round trip in microseconds; 0 while unknown.
    pub ping_us: u64,
    /// When it last sent a consensus message we had not seen (a wall-clock millisecond
    /// count); 0 if never.
    pub novel_at_ms: u64,
    /// A masternode of the current set: never evicted.
    pub masternode: bool,
}

/// The connection to evict, or `None` if every one is protected (the newcomer is refused).
pub fn select_victim<T: Ord + Clone>(candidates: &[Candidate<T>]) -> Option<T> {
    let mut rest: Vec<&Candidate<T>> = candidates.iter().filter(|c| !c.masternode).collect();
    // Lowest measured latency.
    rest.sort_by(|a, b| {
        (a.ping_us == 0, a.ping_us, &a.id).cmp(&(b.ping_us == 0, b.ping_us, &b.id))
    });
    let measured = rest.iter().take_while(|c| c.ping_us > 0).count();
    rest.drain(..measured.min(PROTECT_LOW_PING));
    // Most recent novel consensus messages.
    rest.sort_by(|a, b| (b.novel_at_ms, &a.id).cmp(&(a.novel_at_ms, &b.id)));
    let novel = rest.iter().take_while(|c| c.novel_at_ms > 0).count();
    rest.drain(..novel.min(PROTECT_NOVEL));
    // The longest-connected half.
    rest.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
    rest.drain(..rest.len() / 2);
    // The most crowded subnet (ties: the one with the youngest member) loses its youngest.
    let mut groups: BTreeMap<Subnet, Vec<&Candidate<T>>> = BTreeMap::new();
    for c in rest {
        groups.entry(c.subnet).or_default().push(c);
    }
    let youngest = |g: &Vec<&Candidate<T>>| g.iter().map(|c| (c.connected_at, c.id.clone())).max();
    groups
        .values()
        .max_by(|a, b| (a.len(), youngest(a)).cmp(&(b.len(), youngest(b))))
        .and_then(youngest)
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    fn cand(id: u32, ip: &str, age_s: u64, base: Instant) -> Candidate<u32> {
        Candidate {
            id,
            subnet: Subnet::of(ip.parse::<IpAddr>().unwrap()),
            connected_at: base - Duration::from_secs(age_s),
            ping_us: 0,
            novel_at_ms: 0,
            masternode: false,
        }
    }

    #[test]
    fn the_crowded_subnet_loses_its_youngest() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut c = Vec::new();
        // Eight honest-looking old peers from different subnets.
        for i in 0..8 {
            c.push(cand(i, &format!("10.{i}.0.1"), 5_000 + u64::from(i), now));
        }
        // Six young ones from one subnet.
        for i in 0..6 {
            c.push(cand(
                100 + i,
                &format!("192.0.2.{i}"),
                10 + u64::from(i),
                now,
            ));
        }
        assert_eq!(select_victim(&c), Some(100));
    }

    #[test]
    fn masternodes_fast_and_useful_peers_are_protected() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut mn = cand(1, "192.0.2.1", 1, now);
        mn.masternode = true;
        assert_eq!(select_victim(&[mn.clone()]), None);
        let mut fast = cand(2, "192.0.2.2", 1, now);
        fast.ping_us = 300;
        let mut novel = cand(3, "192.0.2.3", 1, now);
        novel.novel_at_ms = 42;
        assert_eq!(
            select_victim(&[mn.clone(), fast.clone(), novel.clone()]),
            None
        );
        let junk = cand(4, "198.51.100.1", 0, now);
        assert_eq!(select_victim(&[mn, fast, novel, junk]), Some(4));
    }
}
