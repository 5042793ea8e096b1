//! A bounded memory of recently rejected txids, so a flood of one bad transaction costs a hash
//! lookup instead of a full validation each time (Bitcoin Core's `m_recent_rejects`).

use crate::types::Txid;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Times are milliseconds on the caller's clock (see `Mempool::insert`).
pub struct RejectCache {
    ttl_ms: u64,
    capacity: usize,
    reasons: HashMap<Txid, (u64, String)>,
    /// Insertion order, to expire and evict the oldest first.
    order: VecDeque<(u64, Txid)>,
}

impl RejectCache {
    pub fn new(capacity: usize, ttl: Duration) -> RejectCache {
        RejectCache {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            reasons: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers that `txid` was rejected for `reason`.
    pub fn insert(&mut self, txid: Txid, reason: String, now: u64) {
        self.expire(now);
        while self.reasons.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.reasons.remove(&old);
                }
                None => break,
            }
        }
        let expires = now.saturating_add(self.ttl_ms);
        if self.reasons.insert(txid, (expires, reason)).is_none() {
            self.order.push_back((expires, txid));
        }
    }

    /// The reason `txid` was rejected, if that was less than the TTL ago.
    pub fn get(&mut self, txid: &Txid, now: u64) -> Option<String> {
        self.expire(now);
        self.reasons.get(txid).map(|(_, r)| r.clone())
    }

    pub fn len(&self) -> usize {
        self.reasons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(expires, txid)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            // Only drop the reason if it was not refreshed by a later insert.
            if self.reasons.get(&txid).is_some_and(|(e, _)| *e <= now) {
                self.reasons.remove(&txid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    #[test]
    fn entries_expire_and_capacity_evicts_oldest() {
        let t0: u64 = 1_700_000_000_000;
        let mut c = RejectCache::new(2, Duration::from_secs(10));
        c.insert(Hash32([1; 32]), "bad".into(), t0);
        assert_eq!(c.get(&Hash32([1; 32]), t0 + 9_000), Some("bad".into()));
        assert_eq!(c.get(&Hash32([1; 32]), t0 + 10_000), None);

        c.insert(Hash32([2; 32]), "a".into(), t0);
        c.insert(Hash32([3; 32]), "b".into(), t0);
        c.insert(Hash32([4; 32]), "c".into(), t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&Hash32([2; 32]), t0), None);
        assert_eq!(c.get(&Hash32([4; 32]), t0), Some("c".into()));
    }
}
