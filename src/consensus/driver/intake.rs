//! The door of the driver: the cheap checks a peer's consensus message passes before it costs
//! a signature check, and what the driver learns from the ones that pass.
//!
//! ```text
//! peer message ─► faulty sender? ─► stale height / round window ─► signer in the set?
//!     ─► expected proposer (this height)? ─► signature ─► engine
//!                     │ each refusal counted (timed_consensus_dropped_total{reason})
//!                     └ bad signature / invalid transaction / over a cap: points to the sender
//! verified vote or proposal of height h ─► the sender's height is at least h − 1 (PeerHeight)
//! ```
//!
//! Why this order: a signature check is the most expensive thing a peer can make this thread
//! do, so everything that needs no signature (membership in the published set, who proposes
//! this round, whether the height or round can matter at all) is decided first. The network
//! layer already drops non-members (its copy of the set); this is the second line, exact to the
//! driver's set. A signature that fails strict verification is the sender's fault: honest nodes
//! only relay what they verified, so it scores points toward a ban, and once a sender has
//! [`DROP_AFTER_POINTS`] the driver stops reading it at all (peer ids are never reused).
//!
//! Heights: a peer's height is believed only when something signed and verified backs it: a
//! proposal or vote of height `h` from a member means `h − 1` is committed; certified blocks
//! it served and this node applied mean it has them. Each rise is reported once, as
//! [`NodeEvent::PeerHeight`].

use super::{ConsensusDriver, NodeEvent, Output, PeerId};
use crate::consensus::bft::vote_keeper::MAX_ROUNDS_AHEAD;
use crate::types::{ConsensusVote, PublicKey, VoteBatch};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Peers the driver no longer reads, published so the service drops their messages before
/// they queue (`ConsensusHandle::deliver`): a banned peer's backlog costs a lookup each.
pub type IgnoredPeers = Arc<dashmap::DashSet<PeerId>>;

/// Points for a vote, batch or proposal whose signature fails: only a forger sends one.
pub const BAD_SIGNATURE_POINTS: u32 = 50;
/// Points for a transaction only a misbehaving sender could send (`PoolError::is_peer_fault`).
pub const INVALID_TX_POINTS: u32 = 20;
/// Points for a message over a per-message cap no honest node exceeds.
pub const OVER_CAP_POINTS: u32 = 50;
/// Points after which the driver drops everything else from that peer unread. The network
/// bans at the same count (`network::peers::BAN_THRESHOLD`); messages already queued when the
/// ban lands then cost nothing.
pub const DROP_AFTER_POINTS: u32 = 100;
/// Most vote batches one `Finality` message may carry: a certificate has at most one batch
/// per masternode that voted, and the design's largest network has 1,000 masternodes.
pub const MAX_FINALITY_BATCHES: usize = 1_024;
/// Peers whose points and verified heights the driver remembers; the oldest connections
/// (smallest ids) are forgotten first.
const TRACKED_PEERS: usize = 4_096;

/// Why a peer's message was dropped at the door: a closed set, the metric's label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Sender already scored [`DROP_AFTER_POINTS`].
    FaultyPeer,
    /// Height below the one being decided, or a round too far ahead to be kept.
    Stale,
    /// Signer not in the masternode set (or, for vote batches, the previous one).
    NotMember,
    /// A proposal of this height from someone other than the round's proposer.
    NotProposer,
    BadSignature,
    /// More entries than any honest message has.
    OverCap,
    /// A batch in a `Finality` reply that does not name the transaction.
    Irrelevant,
    /// Contents that are not what their signer signed (a compact proposal's txids against
    /// its header), or a block that breaks the stateless rules.
    Malformed,
}

impl Dropped {
    pub const ALL: [Dropped; 8] = [
        Dropped::FaultyPeer,
        Dropped::Stale,
        Dropped::NotMember,
        Dropped::NotProposer,
        Dropped::BadSignature,
        Dropped::OverCap,
        Dropped::Irrelevant,
        Dropped::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Dropped::FaultyPeer => "faulty_peer",
            Dropped::Stale => "stale",
            Dropped::NotMember => "not_member",
            Dropped::NotProposer => "not_proposer",
            Dropped::BadSignature => "bad_signature",
            Dropped::OverCap => "over_cap",
            Dropped::Irrelevant => "irrelevant",
            Dropped::Malformed => "malformed",
        }
    }
}

/// What the door remembers per peer: points scored here and the height last reported.
#[derive(Default)]
pub(super) struct Intake {
    points: BTreeMap<PeerId, u32>,
    heights: BTreeMap<PeerId, u64>,
    /// The peers of `points` at [`DROP_AFTER_POINTS`] or more (so bounded with it).
    ignored: IgnoredPeers,
}

/// Inserts into a per-peer map, forgetting the oldest peers when it is full; returns them.
fn bounded_insert<V>(map: &mut BTreeMap<PeerId, V>, peer: PeerId, value: V) -> Vec<PeerId> {
    map.insert(peer, value);
    let mut forgotten = Vec::new();
    while map.len() > TRACKED_PEERS {
        if let Some((old, _)) = map.pop_first() {
            forgotten.push(old);
        }
    }
    forgotten
}

impl ConsensusDriver {
    /// The published set of peers this driver no longer reads.
    pub fn ignored_peers(&self) -> IgnoredPeers {
        Arc::clone(&self.intake.ignored)
    }

    /// Counts a dropped message.
    pub(super) fn dropped(&self, why: Dropped) {
        tracing::trace!(reason = why.label(), "peer message dropped at the door");
        crate::metrics::consensus_dropped(why.label());
    }

    /// Whether a message from `from` is dropped unread (its sender scored past the limit),
    /// counted as such: the first check of every peer entry point.
    pub(super) fn ignores(&self, from: PeerId) -> bool {
        let read = (self.intake.points.get(&from)).is_none_or(|p| *p < DROP_AFTER_POINTS);
        if !read {
            self.dropped(Dropped::FaultyPeer);
        }
        !read
    }

    /// Scores `points` against `from` here and reports them to the network, which bans.
    pub(super) fn fault(
        &mut self,
        from: PeerId,
        points: u32,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        let total = self
            .intake
            .points
            .get(&from)
            .copied()
            .unwrap_or(0)
            .saturating_add(points);
        for old in bounded_insert(&mut self.intake.points, from, total) {
            self.intake.ignored.remove(&old);
        }
        if total >= DROP_AFTER_POINTS {
            self.intake.ignored.insert(from);
        }
        out.push(Output::Event(NodeEvent::PeerMisbehaved {
            peer: from,
            points,
            reason,
        }));
    }

    /// Records that `from` is proven to be at `height` or beyond; reports each rise once.
    pub(super) fn note_height(&mut self, from: PeerId, height: u64, out: &mut Vec<Output>) {
        if self.intake.heights.get(&from).is_some_and(|h| *h >= height) {
            return;
        }
        bounded_insert(&mut self.intake.heights, from, height);
        out.push(Output::Event(NodeEvent::PeerHeight { peer: from, height }));
    }

    /// Below this node's height, or too many rounds ahead at it: nothing the engine can use.
    fn is_stale(&self, height: u64, round: u32) -> bool {
        let (h, r) = (self.bft.height(), self.bft.round());
        height < h || (height == h && round > r.saturating_add(MAX_ROUNDS_AHEAD))
    }

    /// The common tail of the BFT door: a refusal found without signature work is counted;
    /// otherwise the signature is checked (a bad one scores), and a good one proves the
    /// sender's peer has `height - 1`.
    fn admit_signed(
        &mut self,
        from: PeerId,
        refused: Option<Dropped>,
        (what, height): (&str, u64),
        verified: impl FnOnce() -> bool,
        out: &mut Vec<Output>,
    ) -> bool {
        if let Some(why) = refused {
            self.dropped(why);
            return false;
        }
        if !verified() {
            self.dropped(Dropped::BadSignature);
            let reason = format!("{what} of height {height} with a bad signature");
            self.fault(from, BAD_SIGNATURE_POINTS, reason, out);
            return false;
        }
        self.note_height(from, height.saturating_sub(1), out);
        true
    }

    /// Decides whether a BFT vote from `from` reaches the engine; verifies it last.
    pub(super) fn admit_vote(
        &mut self,
        from: PeerId,
        v: &ConsensusVote,
        out: &mut Vec<Output>,
    ) -> bool {
        let refused = if self.is_stale(v.height, v.round) {
            Some(Dropped::Stale)
        } else if !self.set.contains_voter(&v.validator) {
            Some(Dropped::NotMember)
        } else {
            None
        };
        let network = self.cfg.network;
        self.admit_signed(from, refused, ("vote", v.height), || v.verify(network), out)
    }

    /// Decides whether a proposal from `from` reaches the engine; verifies it last. Of this
    /// height only the round's proposer is heard; of a later height, any member (the set
    /// that proposes it may not be known yet), which the engine caps per proposer.
    /// `verified` checks the signature of the proposal, full or compact.
    pub(super) fn admit_proposal(
        &mut self,
        from: PeerId,
        (height, round, proposer): (u64, u32, PublicKey),
        verified: impl FnOnce() -> bool,
        out: &mut Vec<Output>,
    ) -> bool {
        let refused = if self.is_stale(height, round) {
            Some(Dropped::Stale)
        } else if height == self.bft.height() && self.set.proposer(height, round) != Some(proposer)
        {
            Some(Dropped::NotProposer)
        } else if !self.set.contains_voter(&proposer) {
            Some(Dropped::NotMember)
        } else {
            None
        };
        self.admit_signed(from, refused, ("proposal", height), verified, out)
    }

    /// Decides whether a vote batch from `from` reaches the finality engine. Batches of the
    /// previous set's members still count while a set change settles. Repeats (regossip,
    /// finality replies) cost a lookup, not a signature check.
    pub(super) fn admit_batch(
        &mut self,
        from: PeerId,
        batch: &VoteBatch,
        out: &mut Vec<Output>,
    ) -> bool {
        if batch.txids.len() > crate::types::vote::MAX_BATCH_TXIDS {
            self.dropped(Dropped::OverCap);
            let reason = format!("vote batch of {} txids", batch.txids.len());
            self.fault(from, OVER_CAP_POINTS, reason, out);
            return false;
        }
        let id = batch.id();
        if self.seen_batches.contains(&id) {
            return false;
        }
        if !self.set.contains_voter(&batch.voter) && !self.prev_set.contains_voter(&batch.voter) {
            self.dropped(Dropped::NotMember);
            return false;
        }
        if !batch.verify(self.cfg.network) {
            self.dropped(Dropped::BadSignature);
            self.fault(
                from,
                BAD_SIGNATURE_POINTS,
                "vote batch with a bad signature".into(),
                out,
            );
            return false;
        }
        self.seen_batches.insert(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Dropped;

    #[test]
    fn every_drop_reason_is_a_registered_metric_label() {
        let labels: Vec<&str> = Dropped::ALL.iter().map(|d| d.label()).collect();
        assert_eq!(labels, crate::metrics::CONSENSUS_DROP_REASONS);
    }
}
