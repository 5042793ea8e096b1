//! Proposals on the wire. A block's transfers travel by txid ([`CompactProposal`]): every
//! validator must hold each one final before it may vote for the block, so it has the bodies
//! already. Each node fills the proposal in from its final transactions, passes the compact
//! form on to a few peers (the proposer too sends it to a few, not to all), and hands the full
//! proposal to the engine. At 1,000 masternodes the proposer's thousand full copies of every
//! block were more than a 1 Gbit/s uplink (SCALING.md).
//!
//! ```text
//!  CompactProposal from peer P
//!    ├─ same proposal seen already → drop (still waiting for it: ask P too, for what is
//!    │                                  missing or for the whole)
//!    ├─ stale, not the round's proposer, not a member, bad signature → drop (+ fault)
//!    ├─ txids, evidence or certificate not what the signed header commits to → P's fault
//!    ├─ some transfer not final here → GetFinality(txid) to P; wait, look again as
//!    │                                  transactions become final
//!    └─ filled in → Block::check_structure
//!         ├─ witness root differs (a transfer's owner signed it twice) → GetProposal to P
//!         ├─ anything else wrong → P's fault (an honest node checks before passing it on)
//!         └─ ok → relay the compact form (the first of its round, of the height being
//!                 decided); the full proposal to the engine
//! ```

use super::effects::take_completed;
use super::intake::Dropped;
use super::{ConsensusDriver, NodeEvent, Output, PeerId, Result, WireMessage};
use crate::consensus::bft::BftInput;
use crate::consensus::finality::Millis;
use crate::types::block::BlockError;
use crate::types::{CompactProposal, Hash32, Proposal, Transaction, Txid};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most compact proposals waiting for transactions at once: the current round's, a few later
/// rounds' and the next height's. A member signing proposals of far heights fills only this.
const MAX_WAITING: usize = 8;
/// Most proposals remembered as seen; the oldest heights go first.
const MAX_SEEN: usize = 256;
/// Most transactions asked of one peer for one proposal. A peer queues at most a block's
/// worth of finality requests (`network::sync_server::MAX_FINALITY_QUEUE`) and scores the
/// rest; a node missing more than this is far behind at layer 1 and takes the block by sync.
const MAX_ASKED: usize = 1_000;

/// Points against a peer that sent a compact proposal whose contents do not match its header.
const ALTERED_POINTS: u32 = 100;

/// A compact proposal waiting for bodies of transfers not final here yet.
struct Waiting {
    proposal: Arc<CompactProposal>,
    /// The first peer that sent it: asked for the full proposal if need be.
    sender: PeerId,
    missing: BTreeSet<Txid>,
    /// Peers already asked for the missing transactions.
    asked: BTreeSet<PeerId>,
}

/// What this node remembers about proposals in flight.
#[derive(Default)]
pub(super) struct CompactState {
    /// Proposals taken in (or sent) by (height, hash of what the proposer signed).
    seen: BTreeSet<(u64, Hash32)>,
    waiting: BTreeMap<(u64, Hash32), Waiting>,
    /// Full proposals served, one per peer per (height, round): the answer is a whole block.
    served: BTreeSet<(u64, u32, PeerId)>,
    /// Proposals the bodies held here filled in to another witness root, with their round and
    /// the peers asked for the full one: a later copy's sender is asked too, so one peer that
    /// never answers cannot keep the proposal from this node.
    fetching: BTreeMap<(u64, Hash32), (u32, BTreeSet<PeerId>)>,
}

impl CompactState {
    /// Forgets proposals of heights up to `height`, committed now.
    pub(super) fn committed(&mut self, height: u64) {
        self.seen.retain(|(h, _)| *h > height);
        self.waiting.retain(|(h, _), _| *h > height);
        self.served.retain(|(h, _, _)| *h > height);
        self.fetching.retain(|(h, _), _| *h > height);
    }

    fn note_seen(&mut self, key: (u64, Hash32)) {
        self.seen.insert(key);
        while self.seen.len() > MAX_SEEN {
            self.seen.pop_first();
        }
    }
}

impl ConsensusDriver {
    /// The compact form of this node's own proposal, marked seen so its echoes are dropped.
    pub(super) fn compact_to_send(&mut self, p: &Proposal) -> Option<WireMessage> {
        let compact = CompactProposal::of(p)?;
        self.compact.note_seen((p.height, p.body_hash()));
        Some(WireMessage::CompactProposal(Arc::new(compact)))
    }

    pub(super) fn on_compact_proposal(
        &mut self,
        from: PeerId,
        cp: Arc<CompactProposal>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let key = (cp.height, cp.body_hash());
        if self.compact.seen.contains(&key) {
            self.ask_missing(key, from, out);
            self.ask_whole(key, from, out);
            return Ok(());
        }
        let network = self.cfg.network;
        if !self.admit_proposal(
            from,
            (cp.height, cp.round, cp.proposer),
            || cp.verify(network),
            out,
        ) {
            return Ok(());
        }
        if !cp.binds_to_header() {
            self.dropped(Dropped::Malformed);
            self.fault(
                from,
                ALTERED_POINTS,
                "relayed a compact proposal that does not match its header".into(),
                out,
            );
            return Ok(());
        }
        self.compact.note_seen(key);
        let missing = match self.held_transfers(&cp) {
            Ok(transfers) => return self.fill_in(from, cp, transfers, now, out),
            Err(missing) => missing,
        };
        tracing::debug!(
            height = cp.height,
            round = cp.round,
            missing = missing.len(),
            "compact proposal waits for transactions"
        );
        if self.compact.waiting.len() >= MAX_WAITING {
            // Keep the lowest heights: the current one is what the engine needs.
            match self.compact.waiting.last_key_value() {
                Some((last, _)) if *last > key => {
                    self.compact.waiting.pop_last();
                }
                _ => return Ok(()),
            }
        }
        self.compact.waiting.insert(
            key,
            Waiting {
                proposal: cp,
                sender: from,
                missing,
                asked: BTreeSet::new(),
            },
        );
        self.ask_missing(key, from, out);
        Ok(())
    }

    /// Asks `from` for the transactions a waiting proposal still lacks, once per peer: a
    /// second copy of the proposal comes from a peer that holds them all. Only for the
    /// height being decided and from its round's proposer: any member may sign a proposal
    /// of a later height, and what it lists must not cost this node requests until then.
    fn ask_missing(&mut self, key: (u64, Hash32), from: PeerId, out: &mut Vec<Output>) {
        // The height after the ledger's tip (the engine moves there after the commit).
        let Some(height) = self.ledger.height().map(|h| h + 1) else {
            return;
        };
        let Some(w) = self.compact.waiting.get_mut(&key) else {
            return;
        };
        let cp = &w.proposal;
        if cp.height != height || self.set.proposer(height, cp.round) != Some(cp.proposer) {
            return;
        }
        if !w.asked.insert(from) {
            return;
        }
        for txid in w.missing.iter().take(MAX_ASKED) {
            out.push(Output::SendTo(from, WireMessage::GetFinality(*txid)));
        }
    }

    /// After the block at `height`: forgets what it settled, and asks for what the waiting
    /// proposals of the next height lack (they were not asked for while it was later).
    pub(super) fn compact_after_commit(&mut self, height: u64, out: &mut Vec<Output>) {
        self.compact.committed(height);
        let next: Vec<((u64, Hash32), PeerId)> = (self.compact.waiting.iter())
            .filter(|((h, _), _)| *h == height + 1)
            .map(|(key, w)| (*key, w.sender))
            .collect();
        for (key, sender) in next {
            self.ask_missing(key, sender, out);
        }
    }

    /// Looks again at waiting proposals once `newly_final` are final here.
    pub(super) fn recheck_compact(
        &mut self,
        newly_final: &[Txid],
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let ready = take_completed(&mut self.compact.waiting, newly_final, |w| &mut w.missing);
        for (_, w) in ready {
            // A transfer confirmed meanwhile by a block of this height: the proposal is stale.
            if let Ok(transfers) = self.held_transfers(&w.proposal) {
                self.fill_in(w.sender, w.proposal, transfers, now, out)?;
            }
        }
        Ok(())
    }

    /// The bodies of a compact proposal's transfers, in its order, if every one is final
    /// here; else the txids that are not (one lookup per txid either way).
    fn held_transfers(
        &self,
        cp: &CompactProposal,
    ) -> std::result::Result<Vec<Arc<Transaction>>, BTreeSet<Txid>> {
        let mut transfers = Vec::with_capacity(cp.txids.len());
        let mut missing = BTreeSet::new();
        for txid in &cp.txids {
            match self.ledger.final_tx(txid) {
                Some(tx) if missing.is_empty() => transfers.push(tx),
                Some(_) => {}
                None => {
                    missing.insert(*txid);
                }
            }
        }
        if missing.is_empty() {
            Ok(transfers)
        } else {
            Err(missing)
        }
    }

    /// Fills a compact proposal in with `transfers` (its bodies, held final here), checks
    /// it, passes it on and gives it to the engine.
    fn fill_in(
        &mut self,
        from: PeerId,
        cp: Arc<CompactProposal>,
        transfers: Vec<Arc<Transaction>>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let p = cp.fill(transfers);
        match self.ledger.check_well_formed(&p.block) {
            Ok(()) => {}
            Err(BlockError::BadWitnessRoot { .. }) => {
                // Same txids, other signatures: some owner signed a transfer twice and this
                // node holds the other copy. Nobody is at fault; the sender has the block.
                tracing::debug!(height = cp.height, "compact proposal asks for the full one");
                let key = (cp.height, cp.body_hash());
                self.compact
                    .fetching
                    .insert(key, (cp.round, BTreeSet::new()));
                self.ask_whole(key, from, out);
                return Ok(());
            }
            Err(e) => {
                self.dropped(Dropped::Malformed);
                out.push(Output::Event(NodeEvent::PeerFault {
                    peer: from,
                    reason: format!("relayed a malformed proposal: {e}"),
                }));
                return Ok(());
            }
        }
        // Passed on once per round, and only of the height being decided: a proposer that
        // signs a second block for its round, or a member that signs proposals of a later
        // height (which it may), must not get honest nodes to spread each one.
        let deciding = self.ledger.height().map(|h| h + 1) == Some(cp.height);
        if deciding && self.bft.proposal(cp.height, cp.round).is_none() {
            out.push(Output::Relay(WireMessage::CompactProposal(cp)));
        }
        self.take_proposal(Arc::new(p), now, out)
    }

    /// Asks `from` for the whole of a proposal being fetched, once per peer.
    fn ask_whole(&mut self, key: (u64, Hash32), from: PeerId, out: &mut Vec<Output>) {
        if let Some((round, asked)) = self.compact.fetching.get_mut(&key) {
            if asked.insert(from) {
                let (height, round) = (key.0, *round);
                out.push(Output::SendTo(
                    from,
                    WireMessage::GetProposal { height, round },
                ));
            }
        }
    }

    /// A full proposal, verified, into the engine.
    pub(super) fn take_proposal(
        &mut self,
        p: Arc<Proposal>,
        now: Millis,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        let key = (p.height, p.body_hash());
        self.compact.note_seen(key);
        self.compact.fetching.remove(&key);
        // Only the round's expected proposer reaches here at this height: one clock per
        // proposer, not one per whoever sends proposals.
        if p.height == self.bft.height() {
            self.observe_clock(p.block.header.timestamp_ms, now);
        }
        self.run_bft(BftInput::Proposal(p), now, out)
    }

    /// Answers a peer that could not fill in a compact proposal: the full one, once.
    pub(super) fn serve_proposal(
        &mut self,
        from: PeerId,
        (height, round): (u64, u32),
        out: &mut Vec<Output>,
    ) {
        let Some(p) = self.bft.proposal(height, round) else {
            return;
        };
        if self.compact.served.insert((height, round, from)) {
            out.push(Output::SendTo(from, WireMessage::Proposal(Arc::clone(p))));
        }
    }
}
