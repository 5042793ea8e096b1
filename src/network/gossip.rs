//! Gossip deduplication: which flooded messages this node has already handled, and which peers
//! sent each one, so nothing is delivered twice and nothing is echoed back to its sender.
//!
//! ```text
//! frame from peer P ──hash──► seen? ──yes──► remember P as a holder, drop
//!                                  └─no───► deliver to consensus; on success mark seen (from P)
//! broadcast(msg) ──hash──► send to every live peer that is not a holder
//! ```
//!
//! Keys hash the whole frame (type and body), not a txid: two encodings of one transaction
//! with different signatures are different messages, so a peer cannot shadow a valid
//! transaction by sending an invalid copy first. Entries expire after `SEEN_TTL` (swept by
//! `mark` every `SWEEP_EVERY`) and the map is bounded by `MAX_SEEN`, so a flood of unique
//! messages costs bounded memory, and the memory a flood took is given back once it ends.

use super::frame::Frame;
use crate::consensus::driver::PeerId;
use crate::types::hash::{tag, Hash32};
use dashmap::DashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a message is remembered. Every copy of a flooded message arrives within a few
/// hops of network delay, seconds even across continents; a copy later than this is delivered
/// again and consensus ignores it as known. The map holds about this many seconds of traffic:
/// at 1,150 transfers/s the two minutes it once was took ≈ 40–60 MB per node (RELIABILITY.md,
/// "Stop 27").
pub const SEEN_TTL: Duration = Duration::from_secs(30);
/// How often `mark` drops expired entries.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Most messages remembered at once.
pub const MAX_SEEN: usize = 500_000;
/// Most holders remembered per message (beyond that, a few echoes are harmless).
const MAX_HOLDERS: usize = 8;

struct SeenEntry {
    at: Instant,
    holders: Vec<PeerId>,
}

/// The shared seen-set of flooded messages.
#[derive(Default)]
pub struct SeenCache {
    entries: DashMap<Hash32, SeenEntry>,
    /// When expired entries were last dropped.
    swept_at: Mutex<Option<Instant>>,
}

/// Identifies one flooded message.
pub fn message_id(frame: &Frame) -> Hash32 {
    let mut h = Hash32::hasher(tag::GOSSIP);
    h.update(&[frame.kind]);
    h.update(&frame.body);
    Hash32::from_hasher(&h)
}

impl SeenCache {
    pub fn new() -> SeenCache {
        SeenCache::default()
    }

    /// Whether `id` was handled already; if so, `from` is remembered as one of its holders.
    pub fn check_and_note(&self, id: &Hash32, from: PeerId, now: Instant) -> bool {
        match self.entries.get_mut(id) {
            Some(mut e) if now.duration_since(e.at) < SEEN_TTL => {
                if e.holders.len() < MAX_HOLDERS && !e.holders.contains(&from) {
                    e.holders.push(from);
                }
                true
            }
            _ => false,
        }
    }

    /// Marks `id` as handled, first received from `from` (`None` if this node made it).
    pub fn mark(&self, id: Hash32, from: Option<PeerId>, now: Instant) {
        self.sweep_if_due(now);
        if self.entries.len() >= MAX_SEEN {
            self.expire(now);
            if self.entries.len() >= MAX_SEEN {
                // Still full of fresh entries: a flood. Forgetting everything only costs
                // duplicate deliveries, which consensus ignores.
                self.entries.clear();
            }
        }
        let mut e = self.entries.entry(id).or_insert_with(|| SeenEntry {
            at: now,
            holders: Vec::new(),
        });
        if let Some(p) = from {
            if e.holders.len() < MAX_HOLDERS && !e.holders.contains(&p) {
                e.holders.push(p);
            }
        }
    }

    /// Forgets `id` (its delivery failed; it may come again).
    pub fn forget(&self, id: &Hash32) {
        self.entries.remove(id);
    }

    /// The peers known to hold `id` already.
    pub fn holders(&self, id: &Hash32) -> Vec<PeerId> {
        self.entries
            .get(id)
            .map(|e| e.holders.clone())
            .unwrap_or_default()
    }

    /// Drops entries older than `SEEN_TTL`, and gives back the table a flood grew once three
    /// quarters of it stand empty (`retain` alone keeps a table at its largest size for ever).
    pub fn expire(&self, now: Instant) {
        self.entries
            .retain(|_, e| now.duration_since(e.at) < SEEN_TTL);
        crate::tables::shrink_if_sparse(&self.entries, 0);
    }

    /// Expires entries if `SWEEP_EVERY` has passed since the last sweep; one caller sweeps,
    /// the others go on.
    fn sweep_if_due(&self, now: Instant) {
        let Ok(mut swept_at) = self.swept_at.try_lock() else {
            return;
        };
        match *swept_at {
            Some(at) if now.saturating_duration_since(at) < SWEEP_EVERY => return,
            Some(_) => *swept_at = Some(now),
            // The first mark starts the clock: nothing can have expired yet.
            None => {
                *swept_at = Some(now);
                return;
            }
        }
        drop(swept_at);
        self.expire(now);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b: u8) -> Frame {
        Frame {
            kind: 10,
            body: vec![b; 4],
        }
    }

    #[test]
    fn first_sight_delivers_then_repeats_are_dropped_and_holders_kept() {
        let c = SeenCache::new();
        let now = Instant::now();
        let id = message_id(&frame(1));
        assert!(!c.check_and_note(&id, 1, now));
        c.mark(id, Some(1), now);
        assert!(c.check_and_note(&id, 2, now));
        assert_eq!(c.holders(&id), vec![1, 2]);
        assert_ne!(id, message_id(&frame(2)));
    }

    #[test]
    fn entries_expire() {
        let c = SeenCache::new();
        let now = Instant::now();
        let id = message_id(&frame(1));
        c.mark(id, None, now);
        let later = now + SEEN_TTL + Duration::from_secs(1);
        assert!(!c.check_and_note(&id, 1, later));
        c.expire(later);
        assert!(c.is_empty());
    }

    #[test]
    fn marking_sweeps_expired_entries_and_gives_back_a_floods_table() {
        let c = SeenCache::new();
        let start = Instant::now();
        for i in 0..10_000u32 {
            c.mark(Hash32::digest("test", &i.to_le_bytes()), Some(1), start);
        }
        let grown = c.entries.capacity();
        assert!(grown >= 10_000);
        // Not due yet: a sweep waits `SWEEP_EVERY` after the first mark.
        let expired = start + SEEN_TTL + SWEEP_EVERY;
        c.mark(
            Hash32::digest("test", b"fresh"),
            None,
            start + SWEEP_EVERY / 2,
        );
        assert_eq!(c.len(), 10_001);
        c.mark(Hash32::digest("test", b"later"), None, expired);
        assert_eq!(c.len(), 1, "only the message marked now is left");
        assert!(c.entries.capacity() < grown / 4);
        assert!(c.check_and_note(&Hash32::digest("test", b"later"), 2, expired));
    }
}
