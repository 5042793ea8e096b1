//! Step tables for the Tendermint engine, one rule of Algorithm 1 (by line) per test.

use super::*;
use crate::consensus::Masternode;
use crate::types::block::BLOCK_VERSION;
use crate::types::{BlockHeader, Hash32, OutPoint, Tier};

const NET: Network = Network::Localnet;
const NOW: Millis = 1_000_000;

fn keys() -> Vec<SecretKey> {
    (1..=4u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect()
}

fn set_of(keys: &[SecretKey]) -> Arc<MasternodeSet> {
    Arc::new(MasternodeSet::new(
        0,
        keys.iter()
            .enumerate()
            .map(|(i, k)| Masternode::of(k, Tier::Bronze, OutPoint::new(Hash32([i as u8; 32]), 0))),
    ))
}

fn block(height: u64, stamp: u64) -> Block {
    Block {
        header: BlockHeader {
            version: BLOCK_VERSION,
            height,
            prev_hash: Hash32::ZERO,
            timestamp_ms: NOW - 1_000 + stamp,
            round: 0,
            proposer: crate::types::PublicKey([0; 32]),
            tx_root: Hash32::ZERO,
            witness_root: Hash32::ZERO,
            utxo_commitment: Hash32::ZERO,
            next_masternode_set_hash: Hash32::ZERO,
            last_commit_hash: Hash32::ZERO,
            evidence_root: Hash32::ZERO,
        },
        last_commit: None,
        transactions: Vec::new(),
        evidence: Vec::new(),
    }
}

struct Fixture {
    keys: Vec<SecretKey>,
    set: Arc<MasternodeSet>,
}

impl Fixture {
    fn new() -> Fixture {
        let keys = keys();
        let set = set_of(&keys);
        Fixture { keys, set }
    }

    fn key_of(&self, pk: PublicKey) -> &SecretKey {
        self.keys.iter().find(|k| k.public_key() == pk).unwrap()
    }

    /// An engine for a validator that proposes none of rounds 0 to 2 of height 1, already in
    /// round 0.
    fn validator(&self) -> (BftEngine, SecretKey) {
        let proposers: Vec<PublicKey> = (0..3).filter_map(|r| self.set.proposer(1, r)).collect();
        let key = self
            .keys
            .iter()
            .find(|k| !proposers.contains(&k.public_key()))
            .unwrap()
            .clone();
        let mut e = self.engine(&key, None);
        e.step(timeout(1, 0, TimeoutKind::NewHeight), NOW);
        (e, key)
    }

    fn engine(&self, key: &SecretKey, safety: Option<SafetyState>) -> BftEngine {
        let mut e = BftEngine::new(
            BftConfig::new(NET, 1_000),
            Some(key.clone()),
            Arc::clone(&self.set),
            1,
            0,
            safety,
        );
        e.start(NOW);
        e
    }

    fn proposal(&self, round: u32, vr: Option<u32>, b: Block) -> BftInput {
        let proposer = self.set.proposer(1, round).unwrap();
        BftInput::Proposal(Arc::new(Proposal::sign(
            self.key_of(proposer),
            NET,
            1,
            round,
            vr,
            b,
        )))
    }

    fn votes(
        &self,
        kind: VoteKind,
        round: u32,
        value: Option<BlockHash>,
        n: usize,
        skip: &PublicKey,
    ) -> Vec<BftInput> {
        self.keys
            .iter()
            .filter(|k| k.public_key() != *skip)
            .take(n)
            .map(|k| BftInput::Vote(ConsensusVote::sign(k, NET, kind, 1, round, value)))
            .collect()
    }
}

fn timeout(height: u64, round: u32, kind: TimeoutKind) -> BftInput {
    BftInput::Timeout(Timeout {
        height,
        round,
        kind,
    })
}

fn valid(b: &Block) -> BftInput {
    BftInput::ProposalValidity {
        height: 1,
        hash: b.hash(),
        valid: true,
    }
}

fn sent_vote(fx: &[BftEffect], kind: VoteKind) -> Option<Option<BlockHash>> {
    fx.iter().find_map(|e| match e {
        BftEffect::Broadcast(ConsensusMessage::Vote(v)) if v.kind == kind => Some(v.block_hash),
        _ => None,
    })
}

#[test]
fn line_11_proposer_builds_and_others_wait_with_a_timeout() {
    let f = Fixture::new();
    let proposer = f.set.proposer(1, 0).unwrap();
    let mut p = f.engine(f.key_of(proposer), None);
    let fx = p.step(timeout(1, 0, TimeoutKind::NewHeight), NOW);
    assert!(fx.iter().any(|e| matches!(
        e,
        BftEffect::BuildProposal {
            height: 1,
            round: 0
        }
    )));
    let fx = p.step(
        BftInput::ProposalBuilt {
            height: 1,
            round: 0,
            block: block(1, 0),
        },
        NOW,
    );
    let persisted = fx
        .iter()
        .position(|e| matches!(e, BftEffect::PersistSafety(_)));
    let sent = fx
        .iter()
        .position(|e| matches!(e, BftEffect::Broadcast(ConsensusMessage::Proposal(_))));
    assert!(
        persisted.unwrap() < sent.unwrap(),
        "persist before signing leaves: {fx:?}"
    );

    let (_, _) = f.validator();
    let other = f.keys.iter().find(|k| k.public_key() != proposer).unwrap();
    let mut v = f.engine(other, None);
    let fx = v.step(timeout(1, 0, TimeoutKind::NewHeight), NOW);
    assert!(fx.iter().any(|e| matches!(
        e,
        BftEffect::ScheduleTimeout {
            timeout: Timeout {
                kind: TimeoutKind::Propose,
                ..
            },
            ..
        }
    )));
}

#[test]
fn line_22_prevotes_a_valid_proposal_and_nil_for_an_invalid_or_future_one() {
    let f = Fixture::new();
    let b = block(1, 0);
    let (mut e, _) = f.validator();
    let fx = e.step(f.proposal(0, None, b.clone()), NOW);
    assert!(fx
        .iter()
        .any(|x| matches!(x, BftEffect::ValidateProposal { .. })));
    assert_eq!(
        sent_vote(&e.step(valid(&b), NOW), VoteKind::Prevote),
        Some(Some(b.hash()))
    );

    let (mut e, _) = f.validator();
    e.step(f.proposal(0, None, b.clone()), NOW);
    let fx = e.step(
        BftInput::ProposalValidity {
            height: 1,
            hash: b.hash(),
            valid: false,
        },
        NOW,
    );
    assert_eq!(sent_vote(&fx, VoteKind::Prevote), Some(None));

    // A timestamp far ahead of this node's clock: nil.
    let late = block(1, 10_000_000);
    let (mut e, _) = f.validator();
    e.step(f.proposal(0, None, late.clone()), NOW);
    assert_eq!(
        sent_vote(&e.step(valid(&late), NOW), VoteKind::Prevote),
        Some(None)
    );
}

/// A node whose clock is a minute behind the chain's: it starts the next height within one
/// interval (not when its clock reaches the last block's time), and judges a proposal's
/// timestamp against the last block's certified time, so it neither sits out every height
/// nor refuses every proposal; one dated beyond the drift limit past that time is still nil.
#[test]
fn a_slow_clock_goes_by_the_last_blocks_time() {
    let f = Fixture::new();
    let interval = 1_000;
    let chain_ms = NOW + 60_000;
    let (_, key) = f.validator();
    let slow = || {
        let mut e = BftEngine::new(
            BftConfig::new(NET, interval),
            Some(key.clone()),
            Arc::clone(&f.set),
            1,
            chain_ms,
            None,
        );
        let fx = e.start(NOW);
        let at = fx.iter().find_map(|e| match e {
            BftEffect::ScheduleTimeout { timeout, at }
                if timeout.kind == TimeoutKind::NewHeight =>
            {
                Some(*at)
            }
            _ => None,
        });
        assert_eq!(
            at,
            Some(NOW + interval),
            "the next height waits one interval"
        );
        e.step(timeout(1, 0, TimeoutKind::NewHeight), NOW + interval);
        e
    };
    let now = NOW + interval;
    let drift = BftConfig::new(NET, interval).max_clock_drift_ms;
    // `block(_, stamp)` dates it NOW - 1_000 + stamp.
    let on_time = block(1, chain_ms - NOW + 1_000 + 500);
    let mut e = slow();
    e.step(f.proposal(0, None, on_time.clone()), now);
    assert_eq!(
        sent_vote(&e.step(valid(&on_time), now), VoteKind::Prevote),
        Some(Some(on_time.hash()))
    );
    let too_far = block(1, chain_ms - NOW + 1_000 + drift + 1);
    let mut e = slow();
    e.step(f.proposal(0, None, too_far.clone()), now);
    assert_eq!(
        sent_vote(&e.step(valid(&too_far), now), VoteKind::Prevote),
        Some(None)
    );
}

#[test]
fn line_57_propose_timeout_prevotes_nil() {
    let f = Fixture::new();
    let (mut e, _) = f.validator();
    let fx = e.step(timeout(1, 0, TimeoutKind::Propose), NOW + 5_000);
    assert_eq!(sent_vote(&fx, VoteKind::Prevote), Some(None));
}

#[test]
fn line_36_polka_locks_and_precommits_after_persisting() {
    let f = Fixture::new();
    let b = block(1, 0);
    let (mut e, me) = f.validator();
    e.step(f.proposal(0, None, b.clone()), NOW);
    e.step(valid(&b), NOW);
    let mut fx = Vec::new();
    for v in f.votes(VoteKind::Prevote, 0, Some(b.hash()), 2, &me.public_key()) {
        fx = e.step(v, NOW);
    }
    assert_eq!(sent_vote(&fx, VoteKind::Precommit), Some(Some(b.hash())));
    let persist = fx
        .iter()
        .position(|x| matches!(x, BftEffect::PersistSafety(s) if s.locked.is_some()));
    let send = fx
        .iter()
        .position(|x| matches!(x, BftEffect::Broadcast(ConsensusMessage::Vote(_))));
    assert!(persist.unwrap() < send.unwrap());
    assert_eq!(
        e.safety().locked.as_ref().map(|(r, b)| (*r, b.hash())),
        Some((0, b.hash()))
    );
}

#[test]
fn line_44_nil_polka_precommits_nil() {
    let f = Fixture::new();
    let (mut e, me) = f.validator();
    e.step(timeout(1, 0, TimeoutKind::Propose), NOW);
    let mut fx = Vec::new();
    for v in f.votes(VoteKind::Prevote, 0, None, 2, &me.public_key()) {
        fx = e.step(v, NOW);
    }
    assert_eq!(sent_vote(&fx, VoteKind::Precommit), Some(None));
}

#[test]
fn line_49_decides_with_a_certificate_of_more_than_two_thirds() {
    let f = Fixture::new();
    let b = block(1, 0);
    let (mut e, me) = f.validator();
    e.step(f.proposal(0, None, b.clone()), NOW);
    e.step(valid(&b), NOW);
    let votes = f.votes(VoteKind::Precommit, 0, Some(b.hash()), 3, &me.public_key());
    let mut commit = None;
    for (i, v) in votes.into_iter().enumerate() {
        let fx = e.step(v, NOW);
        let c = fx.iter().find_map(|x| match x {
            BftEffect::Commit { certificate, .. } => Some(certificate.clone()),
            _ => None,
        });
        if i < 2 {
            assert!(c.is_none(), "two of four is not a quorum");
        }
        commit = commit.or(c);
    }
    let cert = commit.expect("decided");
    assert!(crate::consensus::certificate::verify_commit(&cert, &f.set, NET, 1, &b.hash()).is_ok());
}

#[test]
fn line_55_more_than_a_third_in_a_later_round_moves_there() {
    let f = Fixture::new();
    let (mut e, me) = f.validator();
    for v in f.votes(VoteKind::Prevote, 3, None, 2, &me.public_key()) {
        e.step(v, NOW);
    }
    assert_eq!(e.round(), 3);
}

#[test]
fn after_a_round_skip_the_rebroadcast_passes_on_the_third_that_moved_it() {
    // Two of four (more than a third) prevote in round 3: this node joins them. Peers still
    // in round 0 may not hear those two directly; the re-send carries their votes too.
    let f = Fixture::new();
    let (mut e, me) = f.validator();
    let skip = f.votes(VoteKind::Prevote, 3, None, 2, &me.public_key());
    for v in skip.clone() {
        e.step(v, NOW);
    }
    assert_eq!(e.round(), 3);
    let fx = e.step(timeout(1, 3, TimeoutKind::Rebroadcast), NOW + 1_000);
    let relayed: Vec<&ConsensusVote> = fx
        .iter()
        .filter_map(|x| match x {
            BftEffect::Relay(ConsensusMessage::Vote(v)) => Some(v),
            _ => None,
        })
        .collect();
    for input in &skip {
        let BftInput::Vote(v) = input else {
            unreachable!("votes() makes votes")
        };
        assert!(relayed.contains(&v), "{v:?} not passed on: {relayed:?}");
    }
    // Round 0 stays quiet: nothing but own votes is re-sent there.
    let (mut e0, _) = f.validator();
    for v in f.votes(VoteKind::Prevote, 0, None, 1, &me.public_key()) {
        e0.step(v, NOW);
    }
    let fx = e0.step(timeout(1, 0, TimeoutKind::Rebroadcast), NOW + 1_000);
    assert!(
        fx.iter().all(|x| !matches!(x, BftEffect::Relay(ConsensusMessage::Vote(v)) if v.validator != me.public_key())),
        "{fx:?}"
    );
}

#[test]
fn line_65_precommit_timeout_starts_the_next_round_with_longer_timeouts() {
    let f = Fixture::new();
    let (mut e, _) = f.validator();
    let fx = e.step(timeout(1, 0, TimeoutKind::Precommit), NOW);
    assert_eq!(e.round(), 1);
    let at = fx.iter().find_map(|x| match x {
        BftEffect::ScheduleTimeout {
            timeout:
                Timeout {
                    kind: TimeoutKind::Propose,
                    round: 1,
                    ..
                },
            at,
        } => Some(*at),
        _ => None,
    });
    let cfg = BftConfig::new(NET, 1_000);
    assert_eq!(
        at,
        Some(NOW + cfg.timeout_propose_ms + cfg.timeout_delta_ms)
    );
}

#[test]
fn line_28_a_locked_validator_needs_a_newer_polka_to_change_its_mind() {
    let f = Fixture::new();
    let a = block(1, 0);
    let b = block(1, 1);
    let (mut e, me) = f.validator();
    e.step(f.proposal(0, None, a.clone()), NOW);
    e.step(valid(&a), NOW);
    for v in f.votes(VoteKind::Prevote, 0, Some(a.hash()), 2, &me.public_key()) {
        e.step(v, NOW);
    }
    assert!(e.safety().locked.is_some());
    // Round 1 proposes another value without a polka: nil.
    e.step(timeout(1, 0, TimeoutKind::Precommit), NOW);
    e.step(f.proposal(1, None, b.clone()), NOW);
    let fx = e.step(valid(&b), NOW);
    assert_eq!(sent_vote(&fx, VoteKind::Prevote), Some(None));
    // Round 2 re-proposes `b` with a polka at round 1 (newer than the lock): prevote it.
    e.step(timeout(1, 1, TimeoutKind::Precommit), NOW);
    for v in f.votes(VoteKind::Prevote, 1, Some(b.hash()), 3, &me.public_key()) {
        e.step(v, NOW);
    }
    let fx = e.step(f.proposal(2, Some(1), b.clone()), NOW);
    assert_eq!(sent_vote(&fx, VoteKind::Prevote), Some(Some(b.hash())));
}

#[test]
fn re_asking_after_a_restart_returns_the_same_vote() {
    let f = Fixture::new();
    let b = block(1, 0);
    let (mut e, me) = f.validator();
    e.step(f.proposal(0, None, b.clone()), NOW);
    let first = sent_vote(&e.step(valid(&b), NOW), VoteKind::Prevote);
    assert_eq!(first, Some(Some(b.hash())));
    // Crash; restart from the persisted safety state; now the proposal looks invalid.
    let mut again = f.engine(&me, Some(e.safety().clone()));
    again.step(timeout(1, 0, TimeoutKind::NewHeight), NOW);
    again.step(f.proposal(0, None, b.clone()), NOW);
    let fx = again.step(
        BftInput::ProposalValidity {
            height: 1,
            hash: b.hash(),
            valid: false,
        },
        NOW,
    );
    assert_eq!(
        sent_vote(&fx, VoteKind::Prevote),
        first,
        "never a second, different vote"
    );
}

#[test]
fn equivocation_is_reported() {
    let f = Fixture::new();
    let (mut e, me) = f.validator();
    let other = f
        .keys
        .iter()
        .find(|k| k.public_key() != me.public_key())
        .unwrap();
    e.step(
        BftInput::Vote(ConsensusVote::sign(
            other,
            NET,
            VoteKind::Prevote,
            1,
            0,
            None,
        )),
        NOW,
    );
    let fx = e.step(
        BftInput::Vote(ConsensusVote::sign(
            other,
            NET,
            VoteKind::Prevote,
            1,
            0,
            Some(Hash32([1; 32])),
        )),
        NOW,
    );
    assert!(fx.iter().any(|x| matches!(x, BftEffect::Equivocation(_))));
}

#[test]
fn an_equivocator_spraying_other_values_first_still_counts_for_a_proposed_block() {
    // Simulation seed 637: the Byzantine validator's other halves filled its places at two
    // nodes, its genuine prevote for the proposal came later and was dropped, and those
    // nodes never saw the polka the others locked on: the height stalled.
    let f = Fixture::new();
    let b = block(1, 0);
    let (mut e, me) = f.validator();
    e.step(f.proposal(0, None, b.clone()), NOW);
    e.step(valid(&b), NOW);
    let others: Vec<&SecretKey> = f
        .keys
        .iter()
        .filter(|k| k.public_key() != me.public_key())
        .collect();
    let prevote = |k: &SecretKey, value| {
        BftInput::Vote(ConsensusVote::sign(k, NET, VoteKind::Prevote, 1, 0, value))
    };
    for junk in [1u8, 2, 3] {
        e.step(prevote(others[0], Some(Hash32([junk; 32]))), NOW);
    }
    e.step(prevote(others[1], Some(b.hash())), NOW);
    assert!(
        e.safety().locked.is_none(),
        "mine and one other: no polka yet"
    );
    e.step(prevote(others[0], Some(b.hash())), NOW);
    assert_eq!(
        e.safety().locked.as_ref().map(|(r, l)| (*r, l.hash())),
        Some((0, b.hash())),
        "the equivocator's vote for the proposed block counts"
    );
}

#[test]
fn one_signer_flooding_the_next_height_cannot_crowd_out_the_others() {
    let f = Fixture::new();
    let (mut e, me) = f.validator();
    let others: Vec<&SecretKey> = f
        .keys
        .iter()
        .filter(|k| k.public_key() != me.public_key())
        .collect();
    // A member sends more next-height messages than the whole buffer holds (the engine
    // trusts the shell to have checked signatures, so these need none).
    let flooder = others[0].public_key();
    for round in 0..MAX_FUTURE_MESSAGES as u32 + 10 {
        e.step(
            BftInput::Vote(ConsensusVote {
                kind: VoteKind::Prevote,
                height: 2,
                round,
                block_hash: None,
                validator: flooder,
                signature: crate::types::Signature([0; 64]),
            }),
            NOW,
        );
    }
    // Two others (more than a third) prevote in round 3 of height 2.
    for k in &others[1..] {
        e.step(
            BftInput::Vote(ConsensusVote::sign(k, NET, VoteKind::Prevote, 2, 3, None)),
            NOW,
        );
    }
    e.step(
        BftInput::Committed {
            height: 1,
            block_time_ms: NOW,
            set: Arc::clone(&f.set),
        },
        NOW,
    );
    assert_eq!(e.height(), 2);
    e.step(timeout(2, 0, TimeoutKind::NewHeight), NOW);
    assert_eq!(e.round(), 3, "the honest votes were kept and replayed");
}
