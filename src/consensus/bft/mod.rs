//! Layer 2: Tendermint BFT blocks (Buchman, Kwon, Milosevic, "The latest gossip on BFT
//! consensus", arXiv 1807.04938, Algorithm 1). A pure state machine: `step(input, now)` returns
//! effects; it never touches sockets, the disk or a clock.
//!
//! ```text
//! NewHeight ─timeout─► Propose ─proposal / timeout─► Prevote ─polka / timeout─► Precommit
//!     ▲                                                                            │
//!     └──────────── Committed (shell applied the block) ◄── Commit ◄── +2/3 precommits
//! ```
//!
//! Line numbers in comments refer to Algorithm 1 of the paper. "2f+1" is read as "more than
//! two thirds of the weight" and "f+1" as "more than one third", with tier weights.
//! Every signature is preceded by a `PersistSafety` effect: the shell makes that state durable
//! before it executes the `Broadcast` that follows.

pub mod safety;
pub mod vote_keeper;

pub use safety::{SafetyState, Step};

use crate::consensus::finality::Millis;
use crate::consensus::MasternodeSet;
use crate::types::{
    Block, BlockHash, CommitCertificate, ConsensusVote, Network, Proposal, PublicKey, SecretKey,
    VoteKind,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use vote_keeper::{Added, VoteKeeper, MAX_ROUNDS_AHEAD};

/// Messages of the next height kept until this node gets there.
const MAX_FUTURE_MESSAGES: usize = 10_000;
/// Of those, most from one signer: a proposal, a prevote and a precommit for each round the
/// engine can reach. A member flooding next-height messages fills its own share only.
pub const MAX_FUTURE_PER_SIGNER: usize = 3 * (MAX_ROUNDS_AHEAD as usize + 1);

#[derive(Clone, Debug)]
pub struct BftConfig {
    pub network: Network,
    /// Time from one commit to the next proposal.
    pub block_interval_ms: Millis,
    pub timeout_propose_ms: Millis,
    pub timeout_prevote_ms: Millis,
    pub timeout_precommit_ms: Millis,
    /// Added to each timeout per round, so rounds grow until the network's delay fits.
    pub timeout_delta_ms: Millis,
    /// A proposal whose timestamp is further ahead of this node's clock (or of the last
    /// block's time, if that is later) gets a nil prevote.
    pub max_clock_drift_ms: Millis,
    /// How often own votes and the current proposal are sent again (messages may be lost).
    pub rebroadcast_ms: Millis,
}

impl BftConfig {
    pub fn new(network: Network, block_interval_ms: Millis) -> BftConfig {
        BftConfig {
            network,
            block_interval_ms,
            timeout_propose_ms: 1_000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_delta_ms: 500,
            max_clock_drift_ms: 5_000,
            rebroadcast_ms: 1_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    NewHeight,
    Propose,
    Prevote,
    Precommit,
    Rebroadcast,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeout {
    pub height: u64,
    pub round: u32,
    pub kind: TimeoutKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsensusMessage {
    Proposal(Arc<Proposal>),
    Vote(ConsensusVote),
}

// `ProposalBuilt` carries a whole block once per round; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum BftInput {
    /// A proposal whose signature the shell has verified.
    Proposal(Arc<Proposal>),
    /// A vote whose signature the shell has verified.
    Vote(ConsensusVote),
    /// The block the shell built after `BuildProposal`.
    ProposalBuilt {
        height: u64,
        round: u32,
        block: Block,
    },
    /// The shell's verdict on a proposed block (ledger rules, layer-1 finality of every
    /// transaction, coinbase payees).
    ProposalValidity {
        height: u64,
        hash: BlockHash,
        valid: bool,
    },
    Timeout(Timeout),
    /// The shell applied the block at `height` (decided here or fetched by sync); `set` signs
    /// the next one.
    Committed {
        height: u64,
        block_time_ms: Millis,
        set: Arc<MasternodeSet>,
    },
}

#[derive(Clone, Debug)]
pub enum BftEffect {
    /// Build a block for this height and answer with `ProposalBuilt`.
    BuildProposal {
        height: u64,
        round: u32,
    },
    /// Check a proposed block and answer with `ProposalValidity`.
    ValidateProposal {
        height: u64,
        block: Arc<Block>,
    },
    /// Make this state durable before executing any later effect.
    PersistSafety(Box<SafetyState>),
    Broadcast(ConsensusMessage),
    /// Send to a few peers at random: a re-send, which every node makes, so a few copies from
    /// each reach the whole network without every node sending to every other.
    Relay(ConsensusMessage),
    ScheduleTimeout {
        timeout: Timeout,
        at: Millis,
    },
    /// Decided: apply the block with its certificate, then send `Committed`.
    Commit {
        block: Arc<Block>,
        certificate: CommitCertificate,
    },
    /// A validator signed two different votes for one height, round and step.
    Equivocation(Box<(ConsensusVote, ConsensusVote)>),
    /// Messages from a later height: this node may be behind and should ask for blocks.
    Behind {
        seen_height: u64,
    },
}

pub struct BftEngine {
    cfg: BftConfig,
    key: Option<SecretKey>,
    me: Option<PublicKey>,
    set: Arc<MasternodeSet>,
    height: u64,
    round: u32,
    step: Step,
    prev_block_time_ms: Millis,
    safety: SafetyState,
    /// First proposal from the round's proposer, per round.
    proposals: HashMap<u32, Arc<Proposal>>,
    validity: HashMap<BlockHash, bool>,
    validation_requested: BTreeSet<BlockHash>,
    votes: VoteKeeper,
    future: Vec<BftInput>,
    /// Messages in `future` per signer, bounded by [`MAX_FUTURE_PER_SIGNER`].
    future_by_signer: BTreeMap<PublicKey, usize>,
    /// Rounds in which the "first time" rules (lines 34, 36, 47) already fired.
    prevote_timeout_set: BTreeSet<u32>,
    polka_seen: BTreeSet<u32>,
    precommit_timeout_set: BTreeSet<u32>,
}

impl BftEngine {
    /// An engine for `height` (one above the last committed block, made at
    /// `prev_block_time_ms`). `safety` is the persisted state, if any: when it is for this
    /// height, the engine resumes its round and locks.
    pub fn new(
        cfg: BftConfig,
        key: Option<SecretKey>,
        set: Arc<MasternodeSet>,
        height: u64,
        prev_block_time_ms: Millis,
        safety: Option<SafetyState>,
    ) -> BftEngine {
        let me = key.as_ref().map(SecretKey::public_key);
        let safety = match safety {
            Some(s) if s.height == height => s,
            _ => SafetyState::new(height),
        };
        BftEngine {
            cfg,
            key,
            me,
            set,
            height,
            round: safety.round,
            step: Step::NewHeight,
            prev_block_time_ms,
            safety,
            proposals: HashMap::new(),
            validity: HashMap::new(),
            validation_requested: BTreeSet::new(),
            votes: VoteKeeper::default(),
            future: Vec::new(),
            future_by_signer: BTreeMap::new(),
            prevote_timeout_set: BTreeSet::new(),
            polka_seen: BTreeSet::new(),
            precommit_timeout_set: BTreeSet::new(),
        }
    }

    /// Schedules the start of the first round; call once after `new`.
    pub fn start(&mut self, now: Millis) -> Vec<BftEffect> {
        let mut fx = Vec::new();
        self.schedule_new_height(now, &mut fx);
        fx
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    /// The proposal this engine holds for `round` of `height`, if that is its height.
    pub fn proposal(&self, height: u64, round: u32) -> Option<&Arc<Proposal>> {
        (height == self.height)
            .then(|| self.proposals.get(&round))
            .flatten()
    }

    pub fn round(&self) -> u32 {
        self.round
    }

    pub fn step_name(&self) -> Step {
        self.step
    }

    pub fn set(&self) -> &Arc<MasternodeSet> {
        &self.set
    }

    pub fn safety(&self) -> &SafetyState {
        &self.safety
    }

    /// A one-line summary of the round state, for logs and failing simulations.
    pub fn describe(&self) -> String {
        let mut rounds: Vec<&u32> = self.proposals.keys().collect();
        rounds.sort();
        let proposals: Vec<String> = rounds
            .iter()
            .map(|r| {
                let p = &self.proposals[*r];
                let h = p.block.hash();
                // The prevote weight for it at its valid round: what line 28 waits for.
                let polka = p.valid_round.map(|vr| {
                    self.votes
                        .round(vr)
                        .map_or(0, |v| v.prevotes.weight_for(&Some(h)))
                });
                format!(
                    "r{r}:{}:vr{:?}:{:?}:polka{:?}",
                    &h.to_hex()[..6],
                    p.valid_round,
                    self.validity.get(&h),
                    polka
                )
            })
            .collect();
        let votes = self.votes.round(self.round).map(|v| {
            (
                v.prevotes.total(),
                v.prevotes.weight_for(&None),
                v.precommits.total(),
                v.precommits.weight_for(&None),
            )
        });
        format!(
            "h{} r{} {:?} locked {:?} valid {:?} proposals [{}] votes(prevote total,nil, precommit total,nil) {:?}",
            self.height,
            self.round,
            self.step,
            self.safety.locked.as_ref().map(|(r, b)| (*r, b.hash().to_hex()[..6].to_string())),
            self.safety.valid.as_ref().map(|(r, b)| (*r, b.hash().to_hex()[..6].to_string())),
            proposals.join(" "),
            votes
        )
    }

    pub fn step(&mut self, input: BftInput, now: Millis) -> Vec<BftEffect> {
        let mut fx = Vec::new();
        match input {
            BftInput::Proposal(p) => self.on_proposal(p, &mut fx),
            BftInput::Vote(v) => self.on_vote(v, &mut fx),
            BftInput::ProposalBuilt {
                height,
                round,
                block,
            } => self.on_built(height, round, block, &mut fx),
            BftInput::ProposalValidity {
                height,
                hash,
                valid,
            } => {
                if height == self.height {
                    self.validity.insert(hash, valid);
                }
            }
            BftInput::Timeout(t) => self.on_timeout(t, now, &mut fx),
            BftInput::Committed {
                height,
                block_time_ms,
                set,
            } => {
                if height >= self.height {
                    self.next_height(height + 1, block_time_ms, set, now, &mut fx);
                }
            }
        }
        self.evaluate(now, &mut fx);
        fx
    }

    // ---- inputs ------------------------------------------------------------------------

    fn on_proposal(&mut self, p: Arc<Proposal>, fx: &mut Vec<BftEffect>) {
        if p.height != self.height {
            self.not_this_height(p.height, BftInput::Proposal(p), fx);
            return;
        }
        if self.set.proposer(p.height, p.round) != Some(p.proposer)
            || p.round > self.round + MAX_ROUNDS_AHEAD
            || p.block.header.height != p.height
            || p.valid_round.is_some_and(|vr| vr >= p.round)
        {
            return;
        }
        if self.proposals.contains_key(&p.round) {
            return;
        }
        let hash = p.block.hash();
        if !self.validity.contains_key(&hash) && self.validation_requested.insert(hash) {
            fx.push(BftEffect::ValidateProposal {
                height: self.height,
                block: Arc::clone(&p.block),
            });
        }
        self.proposals.insert(p.round, p);
    }

    fn on_vote(&mut self, v: ConsensusVote, fx: &mut Vec<BftEffect>) {
        if v.height != self.height {
            self.not_this_height(v.height, BftInput::Vote(v), fx);
            return;
        }
        if !self.set.contains_voter(&v.validator) || v.round > self.round + MAX_ROUNDS_AHEAD {
            return;
        }
        // The block proposed in the vote's round, or re-proposed with it as the valid round
        // (the polka line 28 waits for).
        let wanted = v.block_hash.is_some_and(|h| {
            self.proposals.iter().any(|(r, p)| {
                (*r == v.round || p.valid_round == Some(v.round)) && p.block.hash() == h
            })
        });
        if let Added::Conflicting(pair) = self.votes.add(v, &self.set, wanted) {
            fx.push(BftEffect::Equivocation(pair));
        }
    }

    fn not_this_height(&mut self, height: u64, input: BftInput, fx: &mut Vec<BftEffect>) {
        let signer = match &input {
            BftInput::Proposal(p) => Some(p.proposer),
            BftInput::Vote(v) => Some(v.validator),
            _ => None,
        };
        if let (Some(signer), true) = (signer, height == self.height + 1) {
            let kept = self.future_by_signer.entry(signer).or_insert(0);
            if self.future.len() < MAX_FUTURE_MESSAGES && *kept < MAX_FUTURE_PER_SIGNER {
                *kept += 1;
                self.future.push(input);
            }
        }
        if height > self.height {
            // Peers are past this height: the block may be committed already. The shell
            // asks for it (rate-limited); the buffered messages cover the case where it is not.
            fx.push(BftEffect::Behind {
                seen_height: height,
            });
        }
    }

    fn on_built(&mut self, height: u64, round: u32, block: Block, fx: &mut Vec<BftEffect>) {
        if height != self.height || round != self.round || self.step != Step::Propose {
            return;
        }
        if self.set.proposer(height, round) != self.me || self.me.is_none() {
            return;
        }
        self.validity.insert(block.hash(), true);
        self.propose(Arc::new(block), None, fx);
    }

    fn on_timeout(&mut self, t: Timeout, now: Millis, fx: &mut Vec<BftEffect>) {
        if t.height != self.height {
            return;
        }
        match t.kind {
            TimeoutKind::NewHeight => {
                if self.step == Step::NewHeight {
                    let round = self.round;
                    self.start_round(round, now, fx);
                    self.schedule_rebroadcast(now, fx);
                }
            }
            // Line 57.
            TimeoutKind::Propose => {
                if t.round == self.round && self.step == Step::Propose {
                    self.prevote(None, fx);
                }
            }
            // Line 61.
            TimeoutKind::Prevote => {
                if t.round == self.round && self.step == Step::Prevote {
                    self.precommit(None, fx);
                }
            }
            // Line 65.
            TimeoutKind::Precommit => {
                if t.round == self.round && self.step != Step::Commit {
                    self.start_round(self.round + 1, now, fx);
                }
            }
            TimeoutKind::Rebroadcast => {
                if self.step != Step::Commit {
                    self.rebroadcast(fx);
                }
                self.schedule_rebroadcast(now, fx);
            }
        }
    }

    // ---- the rules ---------------------------------------------------------------------

    /// Applies every rule whose condition holds, until none does.
    fn evaluate(&mut self, now: Millis, fx: &mut Vec<BftEffect>) {
        loop {
            if self.step == Step::Commit || self.step == Step::NewHeight {
                // Line 49 still applies in NewHeight: a decision does not need our round.
                if self.step == Step::NewHeight && self.try_decide(fx) {
                    return;
                }
                return;
            }
            if self.try_decide(fx) {
                return;
            }
            if self.try_round_skip(now, fx) {
                continue;
            }
            let before = (self.round, self.step);
            match self.step {
                Step::Propose => self.rules_in_propose(now, fx),
                Step::Prevote | Step::Precommit => self.rules_after_propose(now, fx),
                Step::NewHeight | Step::Commit => {}
            }
            if (self.round, self.step) == before {
                return;
            }
        }
    }

    /// Line 49: a proposal of some round with +2/3 precommits for it: decide.
    fn try_decide(&mut self, fx: &mut Vec<BftEffect>) -> bool {
        let mut rounds: Vec<u32> = self.proposals.keys().copied().collect();
        rounds.sort_unstable();
        for r in rounds {
            let Some(p) = self.proposals.get(&r).cloned() else {
                continue;
            };
            let hash = p.block.hash();
            let Some(votes) = self.votes.round(r) else {
                continue;
            };
            if !self
                .set
                .has_quorum(votes.precommits.weight_for(&Some(hash)))
            {
                continue;
            }
            if self.validity.get(&hash) != Some(&true) {
                continue;
            }
            let certificate = CommitCertificate {
                height: self.height,
                round: r,
                block_hash: hash,
                precommits: votes.precommits.votes_for(&Some(hash)),
            };
            self.step = Step::Commit;
            fx.push(BftEffect::Commit {
                block: Arc::clone(&p.block),
                certificate,
            });
            return true;
        }
        false
    }

    /// Line 55: more than a third of the weight is in a later round: join it.
    fn try_round_skip(&mut self, now: Millis, fx: &mut Vec<BftEffect>) -> bool {
        let later = (self.round + 1..=self.round + MAX_ROUNDS_AHEAD)
            .rev()
            .find(|r| {
                self.set
                    .has_one_third(self.votes.round_participation(*r, &self.set))
            });
        match later {
            Some(r) => {
                self.start_round(r, now, fx);
                true
            }
            None => false,
        }
    }

    /// Lines 22 and 28.
    fn rules_in_propose(&mut self, now: Millis, fx: &mut Vec<BftEffect>) {
        let Some(p) = self.proposals.get(&self.round).cloned() else {
            return;
        };
        let hash = p.block.hash();
        let Some(&valid) = self.validity.get(&hash) else {
            return;
        };
        // "Now" is at least the time a quorum certified for the last block: a node whose
        // clock is behind that knows so, and judges against the certified time instead of
        // refusing every proposal (a validator with a correct clock still bounds it).
        let timely = p.block.header.timestamp_ms
            <= now.max(self.prev_block_time_ms) + self.cfg.max_clock_drift_ms;
        let locked = self.safety.locked.as_ref();
        match p.valid_round {
            None => {
                // Line 22.
                let free = locked.is_none_or(|(_, b)| b.hash() == hash);
                let vote = (valid && timely && free).then_some(hash);
                self.prevote(vote, fx);
            }
            Some(vr) => {
                // Line 28.
                let polka = self
                    .votes
                    .round(vr)
                    .is_some_and(|v| self.set.has_quorum(v.prevotes.weight_for(&Some(hash))));
                if !polka {
                    return;
                }
                let free = locked.is_none_or(|(lr, b)| *lr <= vr || b.hash() == hash);
                let vote = (valid && timely && free).then_some(hash);
                self.prevote(vote, fx);
            }
        }
    }

    /// Lines 34, 36, 44 and 47.
    fn rules_after_propose(&mut self, now: Millis, fx: &mut Vec<BftEffect>) {
        let round = self.round;
        // The round's tallies, read in place: this runs on every vote, and copying the round's
        // votes each time made a height's work grow with the square of the set (a thousand
        // validators: two thousand votes copied per arriving vote).
        let Some(votes) = self.votes.round(round) else {
            return;
        };
        let nil_prevotes = votes.prevotes.weight_for(&None);
        let prevotes = votes.prevotes.total();
        let precommits = votes.precommits.total();
        let polka = match self.proposals.get(&round) {
            Some(p) if !self.polka_seen.contains(&round) => {
                let hash = p.block.hash();
                let weight = votes.prevotes.weight_for(&Some(hash));
                Some((Arc::clone(p), hash, weight))
            }
            _ => None,
        };
        // Line 36: a valid proposal with a polka, first time in this round.
        if let Some((p, hash, weight)) = polka {
            if self.validity.get(&hash) == Some(&true) && self.set.has_quorum(weight) {
                self.polka_seen.insert(round);
                self.safety.valid = Some((round, p.block.clone()));
                if self.step == Step::Prevote {
                    self.safety.locked = Some((round, p.block.clone()));
                    self.precommit(Some(hash), fx);
                    return;
                }
                fx.push(BftEffect::PersistSafety(Box::new(self.safety.clone())));
            }
        }
        if self.step == Step::Prevote {
            // Line 44.
            if self.set.has_quorum(nil_prevotes) {
                self.precommit(None, fx);
                return;
            }
            // Line 34.
            if self.set.has_quorum(prevotes) && self.prevote_timeout_set.insert(round) {
                self.schedule(TimeoutKind::Prevote, self.cfg.timeout_prevote_ms, now, fx);
            }
        }
        // Line 47.
        if self.set.has_quorum(precommits) && self.precommit_timeout_set.insert(round) {
            self.schedule(
                TimeoutKind::Precommit,
                self.cfg.timeout_precommit_ms,
                now,
                fx,
            );
        }
    }

    // ---- actions -----------------------------------------------------------------------

    /// Line 11: StartRound.
    fn start_round(&mut self, round: u32, now: Millis, fx: &mut Vec<BftEffect>) {
        self.round = round;
        self.step = Step::Propose;
        if round > self.safety.round {
            self.safety.enter_round(round);
        }
        if self.me.is_some() && self.set.proposer(self.height, round) == self.me {
            // Lines 14-19: re-propose the valid value if there is one.
            if let Some(p) = self.safety.proposal.clone().filter(|p| p.round == round) {
                fx.push(BftEffect::Broadcast(ConsensusMessage::Proposal(Arc::new(
                    p,
                ))));
            } else if let Some((vr, block)) = self.safety.valid.clone() {
                self.validity.insert(block.hash(), true);
                self.propose(block, Some(vr), fx);
            } else {
                fx.push(BftEffect::BuildProposal {
                    height: self.height,
                    round,
                });
            }
        }
        self.schedule(TimeoutKind::Propose, self.cfg.timeout_propose_ms, now, fx);
    }

    fn propose(&mut self, block: Arc<Block>, valid_round: Option<u32>, fx: &mut Vec<BftEffect>) {
        let Some(key) = &self.key else { return };
        if self.safety.round == self.round && self.safety.proposal.is_some() {
            return;
        }
        let p = Proposal::sign(
            key,
            self.cfg.network,
            self.height,
            self.round,
            valid_round,
            block,
        );
        self.safety.round = self.round;
        self.safety.proposal = Some(p.clone());
        fx.push(BftEffect::PersistSafety(Box::new(self.safety.clone())));
        let p = Arc::new(p);
        fx.push(BftEffect::Broadcast(ConsensusMessage::Proposal(
            Arc::clone(&p),
        )));
        self.proposals.entry(self.round).or_insert(p);
    }

    fn prevote(&mut self, value: Option<BlockHash>, fx: &mut Vec<BftEffect>) {
        self.step = Step::Prevote;
        self.sign_vote(VoteKind::Prevote, value, fx);
    }

    fn precommit(&mut self, value: Option<BlockHash>, fx: &mut Vec<BftEffect>) {
        self.step = Step::Precommit;
        self.sign_vote(VoteKind::Precommit, value, fx);
    }

    /// Signs (or, if already signed for this height, round and step, repeats) a vote. A
    /// non-voter only moves through the steps.
    fn sign_vote(&mut self, kind: VoteKind, value: Option<BlockHash>, fx: &mut Vec<BftEffect>) {
        let Some(key) = &self.key else { return };
        if !self.set.contains_voter(&key.public_key()) {
            return;
        }
        let stored = match kind {
            VoteKind::Prevote => &self.safety.prevote,
            VoteKind::Precommit => &self.safety.precommit,
        };
        let vote = match stored {
            Some(v) if v.height == self.height && v.round == self.round => v.clone(),
            _ => {
                let v = ConsensusVote::sign(
                    key,
                    self.cfg.network,
                    kind,
                    self.height,
                    self.round,
                    value,
                );
                self.safety.round = self.round;
                match kind {
                    VoteKind::Prevote => self.safety.prevote = Some(v.clone()),
                    VoteKind::Precommit => self.safety.precommit = Some(v.clone()),
                }
                fx.push(BftEffect::PersistSafety(Box::new(self.safety.clone())));
                v
            }
        };
        self.votes.add(vote.clone(), &self.set, false);
        fx.push(BftEffect::Broadcast(ConsensusMessage::Vote(vote)));
    }

    /// Sends again the current proposal, the polka that justifies re-proposing it (others'
    /// prevotes at its valid round: a node that missed them could never accept it), and this
    /// node's own recent votes: to a few peers, not all (every node re-sends, and a stalled
    /// height at a thousand masternodes would otherwise cost each a thousand copies of the
    /// block a second).
    fn rebroadcast(&mut self, fx: &mut Vec<BftEffect>) {
        if let Some(p) = self.proposals.get(&self.round) {
            fx.push(BftEffect::Relay(ConsensusMessage::Proposal(Arc::clone(p))));
            if let Some(vr) = p.valid_round {
                let hash = Some(p.block.hash());
                if let Some(votes) = self.votes.round(vr) {
                    for v in votes.prevotes.votes_for(&hash) {
                        fx.push(BftEffect::Relay(ConsensusMessage::Vote(v)));
                    }
                }
            }
        }
        // Own votes of this round and the one before: nodes still in the previous round need
        // our precommits there to reach their precommit timeout and follow us.
        if let Some(me) = self.me {
            for round in self.round.saturating_sub(1)..=self.round {
                for v in self.votes.votes_of(round, &me) {
                    fx.push(BftEffect::Relay(ConsensusMessage::Vote(v)));
                }
            }
        }
        // After the first round (the height stalled): every vote of this round held, others'
        // too. A node that joined the round because more than a third of the weight was in it
        // (line 55) passes that third on, so nodes still in an earlier round follow even if
        // they cannot hear some of its voters directly (a peer they stopped reading, a link
        // down one way). Without it, honest nodes split across two rounds, each short of what
        // moves it, waited forever (simulation seed 330 with compact proposals).
        if self.round > 0 {
            if let Some(votes) = self.votes.round(self.round) {
                let others = [&votes.prevotes, &votes.precommits]
                    .into_iter()
                    .flat_map(|vs| vs.all())
                    .filter(|v| Some(v.validator) != self.me);
                for v in others {
                    fx.push(BftEffect::Relay(ConsensusMessage::Vote(v)));
                }
            }
        }
    }

    fn next_height(
        &mut self,
        height: u64,
        block_time_ms: Millis,
        set: Arc<MasternodeSet>,
        now: Millis,
        fx: &mut Vec<BftEffect>,
    ) {
        self.height = height;
        self.round = 0;
        self.step = Step::NewHeight;
        self.prev_block_time_ms = block_time_ms;
        self.set = set;
        self.safety = SafetyState::new(height);
        self.proposals.clear();
        self.validity.clear();
        self.validation_requested.clear();
        self.votes = VoteKeeper::default();
        self.prevote_timeout_set.clear();
        self.polka_seen.clear();
        self.precommit_timeout_set.clear();
        self.schedule_new_height(now, fx);
        let future = std::mem::take(&mut self.future);
        self.future_by_signer.clear();
        for input in future {
            match input {
                BftInput::Proposal(p) => self.on_proposal(p, fx),
                BftInput::Vote(v) => self.on_vote(v, fx),
                _ => {}
            }
        }
    }

    fn schedule_new_height(&mut self, now: Millis, fx: &mut Vec<BftEffect>) {
        // One interval after the last block, but never more than one interval from now: a
        // block dated ahead of this node's clock (a fast proposer, or this clock slow) must
        // not keep it out of the next height until its clock gets there.
        let after_block = self.prev_block_time_ms + self.cfg.block_interval_ms;
        let at = after_block.min(now + self.cfg.block_interval_ms).max(now);
        fx.push(BftEffect::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind: TimeoutKind::NewHeight,
            },
            at,
        });
    }

    fn schedule_rebroadcast(&mut self, now: Millis, fx: &mut Vec<BftEffect>) {
        fx.push(BftEffect::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind: TimeoutKind::Rebroadcast,
            },
            at: now + self.cfg.rebroadcast_ms,
        });
    }

    /// Timeouts grow with the round: the view change of the paper.
    fn schedule(&mut self, kind: TimeoutKind, base: Millis, now: Millis, fx: &mut Vec<BftEffect>) {
        let grow = self.cfg.timeout_delta_ms * u64::from(self.round);
        fx.push(BftEffect::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                kind,
            },
            at: now + base + grow,
        });
    }
}

#[cfg(test)]
mod tests;
