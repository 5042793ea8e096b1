//! The slot engine alone (keys, certificates, the collector) and a seeded network of slot
//! engines with Byzantine members: bad shares, silent aggregators, reports that try to
//! censor, and double spends split across the set.

use super::*;
use crate::consensus::{Masternode, MasternodeSet};
use crate::types::transfer::signed_transfer;
use crate::types::{Amount, BlsSignature, Tier, TxOutput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NET: Network = Network::Localnet;

fn operators(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            SecretKey::from_bytes(&seed)
        })
        .collect()
}

fn set_keys(ops: &[SecretKey], tiers: &[Tier]) -> Arc<SetKeys> {
    let set = MasternodeSet::new(
        0,
        ops.iter().enumerate().map(|(i, k)| {
            Masternode::of(
                k,
                tiers[i % tiers.len()],
                OutPoint::new(Hash32([i as u8; 32]), 0),
            )
        }),
    );
    Arc::new(SetKeys::of(&set, None))
}

fn spend(owner: &SecretKey, coin: u32, to: u64) -> Arc<Transaction> {
    Arc::new(signed_transfer(
        NET,
        owner,
        &[OutPoint::new(Hash32([200; 32]), coin)],
        vec![TxOutput {
            amount: Amount(to),
            key_hash: owner.public_key().key_hash(),
        }],
    ))
}

fn share(op: &SecretKey, keys: &SetKeys, slot: u64, root: Hash32) -> BlsSignature {
    let m = crate::types::slot::share_message(NET, &keys.set_hash(), slot, &root);
    BlsSecretKey::from_operator(op).sign(&m)
}

/// The engine of the first of four Bronze members, with the set's operators and keys.
fn first_of_four() -> (Vec<SecretKey>, Arc<SetKeys>, SlotEngine) {
    let ops = operators(4);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let engine = SlotEngine::new(
        SlotConfig::new(NET),
        Some(ops[0].clone()),
        Arc::clone(&keys),
        Vec::new(),
    );
    (ops, keys, engine)
}

/// The first slot from `from_ms` on whose aggregator is not `not`, and that aggregator's key.
fn slot_led_by_another<'a>(
    keys: &SetKeys,
    ops: &'a [SecretKey],
    not: &SecretKey,
    from_ms: Millis,
) -> (u64, &'a SecretKey) {
    let slot = (slot_at(from_ms)..)
        .find(|s| keys.aggregator(*s) != Some(not.public_key()))
        .expect("another member leads some slot");
    let aggregator = ops
        .iter()
        .find(|k| Some(k.public_key()) == keys.aggregator(slot))
        .expect("the aggregator is a member");
    (slot, aggregator)
}

/// A member that is not the aggregator of the slot at 10 s, in a set of four Bronze members,
/// holding payments received a second before.
struct Holder {
    ops: Vec<SecretKey>,
    keys: Arc<SetKeys>,
    engine: SlotEngine,
    txs: Vec<Arc<Transaction>>,
    now: Millis,
    slot: u64,
    /// The operator key of the slot's aggregator.
    aggregator: SecretKey,
}

fn voter_holding_payments(count: u32) -> Holder {
    let ops = operators(4);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let now: Millis = 10_000;
    let slot = slot_at(now);
    let aggregator = ops
        .iter()
        .find(|k| Some(k.public_key()) == keys.aggregator(slot))
        .unwrap()
        .clone();
    let voter = ops
        .iter()
        .find(|k| k.public_key() != aggregator.public_key())
        .unwrap();
    let mut engine = SlotEngine::new(
        SlotConfig::new(NET),
        Some(voter.clone()),
        Arc::clone(&keys),
        Vec::new(),
    );
    let owner = SecretKey::from_bytes(&[77; 32]);
    let txs = payments(&owner, count);
    for tx in &txs {
        engine.step(SlotInput::Transaction(Arc::clone(tx)), now - 1_000);
    }
    Holder {
        ops,
        keys,
        engine,
        txs,
        now,
        slot,
        aggregator,
    }
}

// ---- keys and certificates -------------------------------------------------------------

#[test]
fn aggregators_are_drawn_by_weight() {
    let ops = operators(6);
    let keys = set_keys(&ops, &[Tier::Gold, Tier::Bronze]);
    let gold = keys
        .voters()
        .iter()
        .find(|v| v.weight == Tier::Gold.weight());
    let gold = gold.map(|v| v.operator_key);
    let turns = (0..6_000u64)
        .filter(|s| keys.aggregator(*s) == gold)
        .count();
    let share = Tier::Gold.weight() as f64 / keys.total_weight() as f64;
    let measured = turns as f64 / 6_000.0;
    assert!(
        (measured - share).abs() < 0.03,
        "a gold member aggregates {measured:.3} of the slots, its weight is {share:.3}"
    );
}

#[test]
fn an_announcement_tree_reaches_every_voter_once_and_rotates_by_slot() {
    for (n, fanout) in [(1, 2), (2, 2), (5, 1), (7, 2), (40, 3), (200, 32), (200, 5)] {
        let ops = operators(n);
        let keys = set_keys(&ops, &[Tier::Bronze, Tier::Gold]);
        let mut inner_by_slot = Vec::new();
        for slot in [0u64, 1, 7, u64::MAX] {
            let Some(root) = keys.aggregator(slot) else {
                panic!("a set of {n} has an aggregator")
            };
            // Walk the tree from the root, as the announcement travels.
            let mut reached: HashMap<PublicKey, usize> = HashMap::new();
            let mut level = vec![root];
            let mut depth = 0;
            let mut inner = BTreeSet::new();
            while !level.is_empty() {
                let mut next = Vec::new();
                for from in &level {
                    let to = keys.announce_targets(slot, &root, from, fanout);
                    assert!(to.len() <= fanout, "n {n}: {} children", to.len());
                    if !to.is_empty() {
                        inner.insert(*from);
                    }
                    for t in to {
                        *reached.entry(t).or_default() += 1;
                        next.push(t);
                    }
                }
                level = next;
                depth += 1;
                assert!(depth <= n + 1, "n {n}: the tree has a cycle");
            }
            assert_eq!(reached.len(), n - 1, "n {n} slot {slot}: every other voter");
            assert!(
                reached.values().all(|c| *c == 1),
                "n {n}: reached once each"
            );
            assert!(!reached.contains_key(&root));
            inner_by_slot.push(inner);
        }
        if n > fanout + 1 {
            assert!(
                inner_by_slot.windows(2).any(|w| w[0] != w[1]),
                "n {n}: the relays change with the slot"
            );
        }
    }
    // Not a voter: sends nothing, and nothing is sent for a stranger's slot.
    let ops = operators(5);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let stranger = SecretKey::from_bytes(&[9; 32]).public_key();
    let root = ops[0].public_key();
    assert!(keys.announce_targets(3, &root, &stranger, 2).is_empty());
    assert!(keys.announce_targets(3, &stranger, &stranger, 2).is_empty());
}

#[test]
fn set_keys_carry_decoded_keys_into_the_next_set() {
    let ops = operators(5);
    let first = set_keys(&ops[..4], &[Tier::Bronze]);
    let set = MasternodeSet::new(
        1,
        ops.iter()
            .enumerate()
            .map(|(i, k)| Masternode::of(k, Tier::Bronze, OutPoint::new(Hash32([i as u8; 32]), 0))),
    );
    let next = SetKeys::of(&set, Some(&first));
    assert_eq!(next.len(), 5);
    assert!(next.voters().iter().all(|v| v.valid.is_some()));
    for (i, op) in ops.iter().enumerate() {
        let position = next.position(&op.public_key()).unwrap();
        assert_eq!(
            next.voter(position).unwrap().operator_key,
            op.public_key(),
            "{i}"
        );
    }
}

#[test]
fn a_certificate_is_refused_for_each_way_it_can_be_wrong() {
    let ops = operators(7);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let root = Hash32::digest("test", b"root");
    let mut collector = ShareCollector::new(&keys, NET, 3, root);
    for op in &ops[..5] {
        collector
            .add(&keys, &op.public_key(), share(op, &keys, 3, root))
            .unwrap();
    }
    let good = collector
        .certify(&keys, None)
        .certificate
        .expect("5 of 7 is a quorum");
    assert_eq!(keys.check(&good, NET), Ok(()));
    assert!(
        keys.check(&good, Network::Testnet).is_err(),
        "bound to its network"
    );

    let mut wrong_set = good.clone();
    wrong_set.set_hash = root;
    assert!(matches!(
        keys.check(&wrong_set, NET),
        Err(CertificateError::WrongSet { .. })
    ));
    let mut long = good.clone();
    long.signers.push(0);
    assert!(matches!(
        keys.check(&long, NET),
        Err(CertificateError::BitmapLength { .. })
    ));
    let mut past_end = good.clone();
    past_end.signers[0] |= 0x80;
    assert!(matches!(
        keys.check(&past_end, NET),
        Err(CertificateError::SignerOutOfRange { position: 7, .. })
    ));
    let mut few = good.clone();
    few.signers = SlotCertificate::bitmap(7, 0..4);
    assert!(matches!(
        keys.check(&few, NET),
        Err(CertificateError::NoQuorum { .. })
    ));
    let mut claims_more = good.clone();
    claims_more.signers = SlotCertificate::bitmap(7, 0..6);
    assert!(matches!(
        keys.check(&claims_more, NET),
        Err(CertificateError::BadAggregate { .. })
    ));
    let mut other_root = good.clone();
    other_root.root = Hash32::ZERO;
    assert!(matches!(
        keys.check(&other_root, NET),
        Err(CertificateError::BadAggregate { .. })
    ));
}

#[test]
fn while_a_change_is_fresh_a_certificate_needs_the_set_before_too() {
    // Three of seven members leave and three join: the new set's seven signers hold only four
    // sevenths of the old set, not a quorum of it.
    let ops = operators(10);
    let before = set_keys(&ops[..7], &[Tier::Bronze]);
    let after_set = MasternodeSet::new(
        1,
        ops[3..].iter().enumerate().map(|(i, k)| {
            Masternode::of(
                k,
                Tier::Bronze,
                OutPoint::new(Hash32([50 + i as u8; 32]), 0),
            )
        }),
    );
    let after = SetKeys::of(&after_set, Some(&before));
    let root = Hash32::digest("test", b"root");
    let mut collector = ShareCollector::new(&after, NET, 5, root);
    for op in &ops[3..] {
        collector
            .add(&after, &op.public_key(), share(op, &after, 5, root))
            .unwrap();
    }
    assert!(
        collector
            .certify(&after, Some(&before))
            .certificate
            .is_none(),
        "no certificate while the old set's quorum is missing"
    );
    let certificate = collector.certify(&after, None).certificate.unwrap();
    assert_eq!(after.check(&certificate, NET), Ok(()));
    assert!(matches!(
        after.check_joint(Some(&before), &certificate, NET),
        Err(CertificateError::NoPreviousQuorum { slot: 5 })
    ));
    // With five of the old seven staying, the same certificate shape holds both quorums.
    let stay = set_keys(&ops[..5], &[Tier::Bronze]);
    let ops_now: Vec<SecretKey> = ops[..5].iter().chain(&ops[7..]).cloned().collect();
    let now_set = MasternodeSet::new(
        1,
        ops_now.iter().enumerate().map(|(i, k)| {
            Masternode::of(
                k,
                Tier::Bronze,
                OutPoint::new(Hash32([80 + i as u8; 32]), 0),
            )
        }),
    );
    let now_keys = SetKeys::of(&now_set, Some(&stay));
    let mut collector = ShareCollector::new(&now_keys, NET, 6, root);
    for op in &ops_now {
        collector
            .add(&now_keys, &op.public_key(), share(op, &now_keys, 6, root))
            .unwrap();
    }
    let both = collector
        .certify(&now_keys, Some(&stay))
        .certificate
        .unwrap();
    assert_eq!(now_keys.check_joint(Some(&stay), &both, NET), Ok(()));
}

#[test]
fn bad_shares_are_found_by_halves_and_the_rest_certifies() {
    let ops = operators(10);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let root = Hash32::digest("test", b"root");
    let mut collector = ShareCollector::new(&keys, NET, 1, root);
    // Two voters send shares of another root; a third sends bytes that are no signature.
    for (i, op) in ops.iter().enumerate() {
        let signature = match i {
            2 | 5 => share(op, &keys, 1, Hash32::ZERO),
            7 => BlsSignature([0xAB; 96]),
            _ => share(op, &keys, 1, root),
        };
        collector.add(&keys, &op.public_key(), signature).unwrap();
    }
    let outcome = collector.certify(&keys, None);
    let mut bad = outcome.bad.clone();
    bad.sort();
    let mut expected = vec![
        ops[2].public_key(),
        ops[5].public_key(),
        ops[7].public_key(),
    ];
    expected.sort();
    assert_eq!(bad, expected);
    let certificate = outcome.certificate.expect("7 good of 10 is a quorum");
    assert_eq!(keys.check(&certificate, NET), Ok(()));
    assert_eq!(certificate.signer_positions().count(), 7);
    assert_eq!(
        collector.add(&keys, &ops[2].public_key(), share(&ops[2], &keys, 1, root)),
        Err(ShareError::Refused(ops[2].public_key())),
        "a voter whose share failed is not counted for the batch again"
    );
    assert_eq!(
        collector.add(&keys, &ops[0].public_key(), share(&ops[0], &keys, 1, root)),
        Err(ShareError::Duplicate(ops[0].public_key()))
    );
    let stranger = SecretKey::from_bytes(&[99; 32]);
    assert!(matches!(
        collector.add(
            &keys,
            &stranger.public_key(),
            share(&stranger, &keys, 1, root)
        ),
        Err(ShareError::NotAVoter(_))
    ));
}

// ---- a seeded network of slot engines --------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Honest,
    /// Never announces as aggregator, never answers (no shares, no reports).
    Silent,
    /// Sends shares that do not check, and as aggregator withholds its certificates.
    BadShares,
    /// Reports every txid of every batch as one it cannot lock.
    Censor,
}

#[derive(Clone, Debug)]
enum Msg {
    Tx(Arc<Transaction>),
    Announcement(Arc<BatchAnnouncement>),
    Share(SlotShare),
    Report(LockReport),
    /// A certificate and the node that sent it (asked for the batch if the receiver
    /// missed the announcement).
    Certificate(Arc<SlotCertificate>, usize),
    Tick,
}

struct Node {
    op: SecretKey,
    fault: Fault,
    engine: SlotEngine,
    finalized: BTreeMap<Txid, Arc<SlotFinalityProof>>,
    refused: usize,
}

struct Net {
    rng: ChaCha8Rng,
    now: Millis,
    seq: u64,
    queue: BTreeMap<(Millis, u64), (usize, Msg)>,
    nodes: Vec<Node>,
    keys: Arc<SetKeys>,
    /// The sender of the certificate being delivered.
    certificate_from: Option<usize>,
    fanout: usize,
    /// Announcements sent down the tree (or past it), by receiver and batch.
    announcements: HashMap<(usize, u64, Hash32), u32>,
    /// Batches the censors already reported.
    censored: HashSet<(u64, Hash32)>,
    /// Batches an aggregator sent past the tree (`past_tree`: the fallback past a silent
    /// relay).
    fallbacks: usize,
}

impl Net {
    fn new(seed: u64, faults: &[Fault], tiers: &[Tier]) -> Net {
        Net::with_fanout(seed, faults, tiers, ANNOUNCE_FANOUT)
    }

    fn with_fanout(seed: u64, faults: &[Fault], tiers: &[Tier], fanout: usize) -> Net {
        let ops = operators(faults.len());
        let keys = set_keys(&ops, tiers);
        let config = SlotConfig {
            announce_fanout: fanout,
            ..SlotConfig::new(NET)
        };
        let nodes = ops
            .iter()
            .zip(faults)
            .map(|(op, fault)| Node {
                op: op.clone(),
                fault: *fault,
                engine: SlotEngine::new(
                    config.clone(),
                    Some(op.clone()),
                    Arc::clone(&keys),
                    Vec::new(),
                ),
                finalized: BTreeMap::new(),
                refused: 0,
            })
            .collect();
        let mut net = Net {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 1_000,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            keys,
            certificate_from: None,
            fanout,
            announcements: HashMap::new(),
            censored: HashSet::new(),
            fallbacks: 0,
        };
        for i in 0..net.nodes.len() {
            net.push(1_000, i, Msg::Tick);
        }
        net
    }

    fn push(&mut self, at: Millis, to: usize, msg: Msg) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (to, msg));
    }

    fn delay(&mut self) -> Millis {
        self.rng.gen_range(5..80)
    }

    fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.nodes.iter().position(|n| n.op.public_key() == *key)
    }

    /// Sends `tx` from a wallet to the nodes `to` (each after its own delay).
    fn submit(&mut self, tx: &Arc<Transaction>, to: &[usize]) {
        for &i in to {
            let at = self.now + self.delay();
            self.push(at, i, Msg::Tx(Arc::clone(tx)));
        }
    }

    /// Sends every payment to every node, `gap` ms apart, then runs `settle` ms more.
    fn pay_everyone(&mut self, txs: &[Arc<Transaction>], gap: Millis, settle: Millis) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        for tx in txs {
            self.submit(tx, &all);
            let end = self.now + gap;
            self.run_until(end);
        }
        let end = self.now + settle;
        self.run_until(end);
    }

    fn run_until(&mut self, end: Millis) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), (to, msg)) = entry.remove_entry();
            self.now = at;
            self.deliver(to, msg);
            self.check_safety();
        }
        self.now = end;
    }

    fn deliver(&mut self, to: usize, msg: Msg) {
        let fault = self.nodes[to].fault;
        let input = match msg {
            Msg::Tx(tx) => SlotInput::Transaction(tx),
            Msg::Announcement(a) => {
                // The shell checks the signature and shape before the engine sees it.
                if !a.verify(NET) || fault == Fault::Silent {
                    return;
                }
                SlotInput::Announcement(a)
            }
            Msg::Share(s) => SlotInput::Share(s),
            Msg::Report(r) => SlotInput::Report(r),
            Msg::Certificate(certificate, sender) => {
                self.certificate_from = Some(sender);
                SlotInput::Certificate(certificate)
            }
            Msg::Tick => SlotInput::Tick,
        };
        let now = self.now;
        let effects = self.nodes[to].engine.step(input, now);
        for effect in effects {
            self.execute(to, effect);
        }
        self.certificate_from = None;
    }

    fn execute(&mut self, from: usize, effect: SlotEffect) {
        let fault = self.nodes[from].fault;
        let n = self.nodes.len();
        match effect {
            SlotEffect::PersistLock(_) => {}
            SlotEffect::ScheduleTick { at } => self.push(at, from, Msg::Tick),
            SlotEffect::SendShare { to, mut share } => {
                if fault == Fault::Silent {
                    return;
                }
                if fault == Fault::BadShares {
                    share.signature = BlsSignature([0x11; 96]);
                }
                if fault == Fault::Censor {
                    return;
                }
                if let Some(i) = self.index_of(&to) {
                    let at = self.now + self.delay();
                    self.push(at, i, Msg::Share(share));
                }
            }
            SlotEffect::SendReport { to, report } => {
                if fault == Fault::Silent {
                    return;
                }
                if let Some(i) = self.index_of(&to) {
                    let at = self.now + self.delay();
                    self.push(at, i, Msg::Report(report));
                }
            }
            SlotEffect::SendAnnouncement {
                to,
                announcement: a,
                past_tree,
            } => {
                if fault == Fault::Silent {
                    return;
                }
                let me = self.nodes[from].op.public_key();
                let tree = self.keys.announce_targets(a.slot, &me, &me, self.fanout);
                if past_tree {
                    assert_eq!(me, a.aggregator, "only the aggregator sends past the tree");
                    self.fallbacks += 1;
                } else if me == a.aggregator {
                    assert_eq!(to, tree, "the aggregator starts the slot's tree");
                }
                for key in &to {
                    if let Some(i) = self.index_of(key) {
                        *self.announcements.entry((i, a.slot, a.root())).or_default() += 1;
                        let at = self.now + self.delay();
                        self.push(at, i, Msg::Announcement(Arc::clone(&a)));
                    }
                }
                // A censor answers every batch, even its own, with a report naming all of it.
                if self.censored.insert((a.slot, a.root())) {
                    self.censor_reports(&a);
                }
            }
            SlotEffect::BroadcastCertificate(certificate) => {
                if fault != Fault::Honest {
                    return;
                }
                for i in (0..n).filter(|i| *i != from) {
                    let at = self.now + self.delay();
                    self.push(at, i, Msg::Certificate(Arc::clone(&certificate), from));
                }
            }
            // The sender answers with the announcement it holds, as the shell's
            // `GetSlotBatch` does.
            SlotEffect::FetchBatch { slot, root } => {
                let Some(sender) = self.certificate_from else {
                    return;
                };
                if let Some(a) = self.nodes[sender].engine.announcement(slot, &root) {
                    let at = self.now + self.delay();
                    self.push(at, from, Msg::Announcement(a));
                }
            }
            SlotEffect::Finalized { tx, proof } => {
                assert_eq!(proof.txid, tx.txid());
                assert!(
                    proof.path_holds(),
                    "the proof's path leads to the certified root"
                );
                assert_eq!(self.keys.check(&proof.certificate, NET), Ok(()));
                self.nodes[from].finalized.insert(proof.txid, proof);
            }
            SlotEffect::Refused { .. } => self.nodes[from].refused += 1,
            // Every node here hears every broadcast: relays would only repeat them.
            SlotEffect::RelayCertificate { .. } => {}
        }
    }

    /// Every censor reports every txid of an announcement to its aggregator.
    fn censor_reports(&mut self, a: &BatchAnnouncement) {
        let Some(to) = self.index_of(&a.aggregator) else {
            return;
        };
        let censors: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].fault == Fault::Censor)
            .collect();
        for c in censors {
            let report = LockReport {
                set_hash: a.set_hash,
                slot: a.slot,
                root: a.root(),
                voter: self.nodes[c].op.public_key(),
                cannot_lock: a.txids.clone(),
            };
            let at = self.now + self.delay();
            self.push(at, to, Msg::Report(report));
        }
    }

    /// No two honest nodes hold conflicting spends final (one outpoint, two txids).
    fn check_safety(&self) {
        let mut spent_by: HashMap<OutPoint, Txid> = HashMap::new();
        for node in self.nodes.iter().filter(|n| n.fault == Fault::Honest) {
            for proof in node.finalized.values() {
                let inputs = self.inputs_of(&proof.txid);
                for op in inputs {
                    let first = spent_by.entry(op).or_insert(proof.txid);
                    assert_eq!(*first, proof.txid, "two spends of {op:?} final");
                }
            }
        }
    }

    fn inputs_of(&self, txid: &Txid) -> Vec<OutPoint> {
        SPENDS.with(|s| s.borrow().get(txid).cloned().unwrap_or_default())
    }

    fn honest_final_everywhere(&self, txid: &Txid) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.fault == Fault::Honest)
            .all(|n| n.finalized.contains_key(txid))
    }
}

thread_local! {
    /// Inputs of every transaction a test made, for the safety check.
    static SPENDS: std::cell::RefCell<HashMap<Txid, Vec<OutPoint>>> =
        std::cell::RefCell::new(HashMap::new());
}

fn tracked(tx: Arc<Transaction>) -> Arc<Transaction> {
    SPENDS.with(|s| {
        s.borrow_mut()
            .insert(tx.txid(), tx.inputs.iter().map(|i| i.prev_out).collect())
    });
    tx
}

fn payments(owner: &SecretKey, count: u32) -> Vec<Arc<Transaction>> {
    (0..count).map(|c| tracked(spend(owner, c, 1))).collect()
}

fn run_payments(faults: &[Fault], seed: u64) -> Net {
    let mut net = Net::new(seed, faults, &[Tier::Bronze, Tier::Silver, Tier::Gold]);
    let owner = SecretKey::from_bytes(&[77; 32]);
    net.pay_everyone(&payments(&owner, 40), 10, 3_000);
    net
}

#[test]
fn honest_nodes_finalize_every_payment_with_one_certificate_per_batch() {
    let owner = SecretKey::from_bytes(&[77; 32]);
    let net = run_payments(&[Fault::Honest; 7], 1);
    for tx in payments(&owner, 40) {
        assert!(
            net.honest_final_everywhere(&tx.txid()),
            "{} not final",
            tx.txid()
        );
    }
    // Forty payments in 400 ms fit a handful of slots: far fewer certificates than payments.
    let certificates: BTreeSet<Hash32> = net.nodes[0]
        .finalized
        .values()
        .map(|p| p.certificate.root)
        .collect();
    assert!(
        certificates.len() < 20,
        "{} certificates",
        certificates.len()
    );
}

/// Ten equal members, `faulty` of them as given, pay thirty payments to all: every one is
/// final at every honest member.
fn ten_pay_thirty(seed: u64, faulty: &[(usize, Fault)], fanout: usize) -> Net {
    let mut faults = [Fault::Honest; 10];
    for (i, fault) in faulty {
        faults[*i] = *fault;
    }
    let mut net = Net::with_fanout(seed, &faults, &[Tier::Bronze], fanout);
    let owner = SecretKey::from_bytes(&[77; 32]);
    let txs = payments(&owner, 30);
    net.pay_everyone(&txs, 15, 5_000);
    for tx in &txs {
        assert!(
            net.honest_final_everywhere(&tx.txid()),
            "seed {seed}: {} not final",
            tx.txid()
        );
    }
    net
}

#[test]
fn byzantine_members_below_a_third_stop_nothing() {
    // 10 equal-weight members, 3 faulty: a silent one, one sending bad shares (and withholding
    // its certificates), one reporting every txid to censor it.
    for seed in 0..8 {
        let faulty = [
            (1, Fault::Silent),
            (4, Fault::BadShares),
            (8, Fault::Censor),
        ];
        let net = ten_pay_thirty(seed, &faulty, ANNOUNCE_FANOUT);
        let refused: usize = net.nodes.iter().map(|n| n.refused).sum();
        assert!(refused > 0, "seed {seed}: the bad shares were found");
    }
}

#[test]
fn announcements_travel_down_the_tree_once_to_each_voter() {
    // A fanout of 2 over 12 voters: three levels. Every batch reaches each voter once, and
    // the aggregator never needs to send it past the tree.
    let owner = SecretKey::from_bytes(&[77; 32]);
    let mut net = Net::with_fanout(5, &[Fault::Honest; 12], &[Tier::Bronze, Tier::Gold], 2);
    let txs = payments(&owner, 30);
    net.pay_everyone(&txs, 10, 3_000);
    for tx in &txs {
        assert!(net.honest_final_everywhere(&tx.txid()), "{}", tx.txid());
    }
    assert!(!net.announcements.is_empty());
    assert!(
        net.announcements.values().all(|c| *c == 1),
        "each voter is sent each batch once"
    );
    assert_eq!(net.fallbacks, 0, "an honest tree needs no fallback");
}

#[test]
fn silent_relays_are_bypassed_by_the_aggregator() {
    // A fanout of 2 over 10 equal voters, 3 of them silent: the voters below a silent relay
    // hear a batch only when its aggregator, missing their answers, sends it to them itself.
    for seed in 0..8 {
        let faulty = [(0, Fault::Silent), (3, Fault::Silent), (7, Fault::Silent)];
        let net = ten_pay_thirty(seed, &faulty, 2);
        assert!(net.fallbacks > 0, "seed {seed}: some relay was silent");
    }
}

#[test]
fn a_transaction_missing_at_a_third_is_left_out_and_the_rest_certifies() {
    // One payment reaches only 3 of 7 nodes at first: the others report it, the aggregator
    // narrows the batch, and the other payments become final without waiting for it.
    let mut net = Net::new(3, &[Fault::Honest; 7], &[Tier::Bronze]);
    let owner = SecretKey::from_bytes(&[77; 32]);
    let txs = payments(&owner, 10);
    let all: Vec<usize> = (0..7).collect();
    for tx in &txs[1..] {
        net.submit(tx, &all);
    }
    net.submit(&txs[0], &[0, 1, 2]);
    let end = net.now + 1_500;
    net.run_until(end);
    for tx in &txs[1..] {
        assert!(net.honest_final_everywhere(&tx.txid()));
    }
    assert!(!net.nodes[0].finalized.contains_key(&txs[0].txid()));
    // Its body reaches the rest; a later slot finalizes it.
    net.submit(&txs[0], &[3, 4, 5, 6]);
    let end = net.now + 1_500;
    net.run_until(end);
    assert!(net.honest_final_everywhere(&txs[0].txid()));
}

#[test]
fn a_double_spend_split_across_the_set_never_finalizes_both() {
    for seed in 0..30 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Net::new(seed, &[Fault::Honest; 7], &[Tier::Bronze, Tier::Gold]);
        let owner = SecretKey::from_bytes(&[88; 32]);
        let x = tracked(spend(&owner, 0, 1));
        let y = tracked(spend(&owner, 0, 2));
        let mut order: Vec<usize> = (0..7).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let split = rng.gen_range(1..7);
        net.submit(&x, &order[..split]);
        net.submit(&y, &order[split..]);
        // Both bodies reach everyone later (as relays would): locks decide.
        let end = net.now + 200;
        net.run_until(end);
        net.submit(&x, &order[split..]);
        net.submit(&y, &order[..split]);
        let end = net.now + 3_000;
        net.run_until(end);
        // check_safety ran after every event; at most one of them is final anywhere.
        let x_final = net
            .nodes
            .iter()
            .any(|n| n.finalized.contains_key(&x.txid()));
        let y_final = net
            .nodes
            .iter()
            .any(|n| n.finalized.contains_key(&y.txid()));
        assert!(!(x_final && y_final), "seed {seed}");
    }
}

#[test]
fn a_wallets_proof_is_small_and_checks_offline() {
    // 100 equal voters, a batch of 500 txids (a slot at 5,000 tx/s), 67 shares.
    let ops = operators(100);
    let keys = set_keys(&ops, &[Tier::Bronze]);
    let txids: Vec<Txid> = (0u32..500)
        .map(|i| Hash32::digest("test", &i.to_le_bytes()))
        .collect();
    let root = crate::types::slot::batch_root(&txids);
    let mut collector = ShareCollector::new(&keys, NET, 42, root);
    for op in &ops[..67] {
        collector
            .add(&keys, &op.public_key(), share(op, &keys, 42, root))
            .unwrap();
    }
    let certificate = collector.certify(&keys, None).certificate.unwrap();
    let path = MerkleTree::new(&txids).path(123).unwrap();
    let proof = SlotFinalityProof {
        txid: txids[123],
        path,
        certificate,
    };
    let bytes = crate::types::Canonical::to_bytes(&proof);
    eprintln!("a slot finality proof: {} bytes", bytes.len());
    assert!(bytes.len() < 600, "{} bytes", bytes.len());
    // Offline: decode, follow the path, check the certificate against the set's keys.
    let decoded = <SlotFinalityProof as crate::types::Canonical>::from_bytes(&bytes).unwrap();
    assert!(decoded.path_holds());
    assert_eq!(keys.check(&decoded.certificate, NET), Ok(()));
    let mut other = decoded.clone();
    other.txid = txids[124];
    assert!(!other.path_holds(), "the path proves one txid");
}

#[test]
fn an_aggregator_cannot_flood_a_voter_with_batches_for_its_slot() {
    let mut h = voter_holding_payments(40);
    let mut answers = 0;
    for (i, tx) in h.txs.iter().enumerate() {
        let a = BatchAnnouncement::sign(
            &h.aggregator,
            NET,
            h.keys.set_hash(),
            (h.slot, i as u32),
            vec![tx.txid()],
        );
        let fx = h.engine.step(SlotInput::Announcement(Arc::new(a)), h.now);
        answers += fx
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    SlotEffect::SendShare { .. } | SlotEffect::SendReport { .. }
                )
            })
            .count();
    }
    assert_eq!(
        answers, MAX_BATCHES_PER_SLOT,
        "one slot's announcements are bounded"
    );
}

#[test]
fn a_block_forgets_what_it_confirmed_and_every_rival_of_it() {
    let (_, keys, mut engine) = first_of_four();
    let owner = SecretKey::from_bytes(&[88; 32]);
    let x = spend(&owner, 0, 1);
    let y = spend(&owner, 0, 2);
    let fx = engine.step(SlotInput::Transaction(Arc::clone(&y)), 1_000);
    assert!(fx
        .iter()
        .any(|e| matches!(e, SlotEffect::PersistLock(t) if t.txid() == y.txid())));
    engine.step(SlotInput::Transaction(Arc::clone(&x)), 1_001);
    assert_eq!(engine.pending.len(), 2);
    // A block confirms x (decided elsewhere): y, locked here, is forgotten with its lock.
    engine.step(
        SlotInput::BlockCommitted {
            keys: Arc::clone(&keys),
            confirmed: vec![Arc::clone(&x)],
        },
        1_500,
    );
    assert!(engine.pending.is_empty());
    assert!(engine.locks.is_empty());
}

/// A lock the ledger refused is forgotten: the engine shares no batch on its strength and
/// the outpoint is free for the spend the ledger does hold.
#[test]
fn a_lock_the_ledger_refused_is_forgotten() {
    let (ops, keys, mut engine) = first_of_four();
    let owner = SecretKey::from_bytes(&[66; 32]);
    let y = spend(&owner, 0, 2);
    let fx = engine.step(SlotInput::Transaction(Arc::clone(&y)), 1_000);
    assert!(fx.iter().any(|e| matches!(e, SlotEffect::PersistLock(_))));
    engine.unlock(&y.txid());
    assert!(!engine.pending[&y.txid()].locked);
    assert!(engine.locks.is_empty());
    let (slot, aggregator) = slot_led_by_another(&keys, &ops, &ops[0], 1_100);
    let a = BatchAnnouncement::sign(aggregator, NET, keys.set_hash(), (slot, 0), vec![y.txid()]);
    let fx = engine.step(SlotInput::Announcement(Arc::new(a)), slot * SLOT_MS);
    assert!(
        fx.iter()
            .any(|e| matches!(e, SlotEffect::SendReport { .. }))
            && !fx.iter().any(|e| matches!(e, SlotEffect::SendShare { .. })),
        "{fx:?}"
    );
}

/// Today's joiner rule (seeds 34 and 414 of the all-to-all engine's set-change sweep): a
/// member new to the set cannot know which spend the old set may have made final, so while
/// its first window is open it locks nothing and shares nothing; when the window closes it
/// locks the spends nobody contests and stays out of the contested ones.
#[test]
fn a_joiner_locks_and_shares_nothing_in_its_first_window() {
    let ops = operators(5);
    let before = set_keys(&ops[..4], &[Tier::Bronze]);
    let after = set_keys(&ops, &[Tier::Bronze]);
    let joiner = &ops[4];
    let mut engine = SlotEngine::new(
        SlotConfig::new(NET),
        Some(joiner.clone()),
        Arc::clone(&before),
        Vec::new(),
    );
    let joined = |engine: &mut SlotEngine, keys: &Arc<SetKeys>, at: Millis| {
        engine.step(
            SlotInput::BlockCommitted {
                keys: Arc::clone(keys),
                confirmed: Vec::new(),
            },
            at,
        )
    };
    joined(&mut engine, &after, 1_000);
    assert!(engine.is_joiner());
    let owner = SecretKey::from_bytes(&[77; 32]);
    let (plain, a, b) = (
        spend(&owner, 1, 5),
        spend(&owner, 0, 1),
        spend(&owner, 0, 2),
    );
    for tx in [&plain, &a, &b] {
        let fx = engine.step(SlotInput::Transaction(Arc::clone(tx)), 1_100);
        assert!(
            !fx.iter().any(|e| matches!(e, SlotEffect::PersistLock(_))),
            "a joiner took a lock in its window: {fx:?}"
        );
    }
    // Asked for a share in its window, it stays silent (no share, no report).
    let (slot, aggregator) = slot_led_by_another(&after, &ops, joiner, 1_200);
    let announcement = BatchAnnouncement::sign(
        aggregator,
        NET,
        after.set_hash(),
        (slot, 0),
        vec![plain.txid()],
    );
    let fx = engine.step(
        SlotInput::Announcement(Arc::new(announcement)),
        slot * SLOT_MS,
    );
    assert!(
        !fx.iter().any(|e| matches!(
            e,
            SlotEffect::SendShare { .. } | SlotEffect::SendReport { .. }
        )),
        "{fx:?}"
    );
    // The next block closes the window: the uncontested spend is locked, the two rivals not.
    let fx = joined(&mut engine, &after, slot * SLOT_MS + 1_000);
    assert!(!engine.is_joiner());
    let locked: Vec<Txid> = fx
        .iter()
        .filter_map(|e| match e {
            SlotEffect::PersistLock(t) => Some(t.txid()),
            _ => None,
        })
        .collect();
    assert_eq!(locked, vec![plain.txid()]);
    assert!(engine.pending[&plain.txid()].locked);
    assert!(!engine.pending[&a.txid()].locked && !engine.pending[&b.txid()].locked);
}

#[test]
fn a_certificate_of_a_missed_batch_asks_for_its_announcement_then_finalizes_without_a_share() {
    let Holder {
        ops,
        keys,
        mut engine,
        txs,
        now,
        slot,
        aggregator,
    } = voter_holding_payments(3);
    let txids: Vec<Txid> = txs.iter().map(|t| t.txid()).collect();
    // The announcement never reached this node; the certificate does.
    let a = Arc::new(BatchAnnouncement::sign(
        &aggregator,
        NET,
        keys.set_hash(),
        (slot, 0),
        txids,
    ));
    let mut collector = ShareCollector::new(&keys, NET, slot, a.root());
    for op in &ops[..3] {
        collector
            .add(&keys, &op.public_key(), share(op, &keys, slot, a.root()))
            .unwrap();
    }
    let certificate = Arc::new(collector.certify(&keys, None).certificate.unwrap());
    let count = |fx: &[SlotEffect], f: fn(&SlotEffect) -> bool| fx.iter().filter(|e| f(e)).count();
    let fetch = |e: &SlotEffect| matches!(e, SlotEffect::FetchBatch { .. });
    let fx = engine.step(SlotInput::Certificate(Arc::clone(&certificate)), now + 50);
    assert_eq!(
        fx.iter()
            .filter_map(|e| match e {
                SlotEffect::FetchBatch { slot, root } => Some((*slot, *root)),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![(slot, a.root())]
    );
    assert_eq!(
        count(&fx, |e| matches!(e, SlotEffect::RelayCertificate(_))),
        1
    );
    assert_eq!(count(&fx, |e| matches!(e, SlotEffect::Finalized { .. })), 0);
    // Further copies ask their own senders, a few times at most, and are not relayed again.
    let mut asked = 1;
    for k in 0..5 {
        let fx = engine.step(
            SlotInput::Certificate(Arc::clone(&certificate)),
            now + 51 + k,
        );
        asked += count(&fx, fetch);
        assert_eq!(
            count(&fx, |e| matches!(e, SlotEffect::RelayCertificate(_))),
            0
        );
    }
    assert_eq!(asked, MAX_BATCH_FETCHES as usize);
    // The answer finalizes every payment of the batch; no share goes out for it.
    let fx = engine.step(SlotInput::Announcement(Arc::clone(&a)), now + 120);
    assert_eq!(count(&fx, |e| matches!(e, SlotEffect::Finalized { .. })), 3);
    assert_eq!(count(&fx, |e| matches!(e, SlotEffect::SendShare { .. })), 0);
    assert!(txs.iter().all(|t| engine.is_final(&t.txid())));
    assert_eq!(engine.announcement(slot, &a.root()), Some(a));
    // Later copies of the certificate are nothing new.
    let fx = engine.step(SlotInput::Certificate(certificate), now + 130);
    assert!(fx.iter().all(|e| !fetch(e)), "{fx:?}");
}

#[test]
fn an_observer_locks_nothing_and_as_a_joiner_learns_what_the_set_before_certified() {
    // Set-change seed 42 with a fanout of 2: a Gold node locked a spend while outside the set,
    // joined, never learned that the set before had certified the rival (its certificate came
    // after the switch), and certified its own side alone once its window closed.
    let ops = operators(5);
    let before = set_keys(&ops[..4], &[Tier::Bronze]);
    let tiers = [
        Tier::Bronze,
        Tier::Bronze,
        Tier::Bronze,
        Tier::Bronze,
        Tier::Gold,
    ];
    let after = set_keys(&ops, &tiers);
    let gold = &ops[4];
    let new_engine = || {
        SlotEngine::new(
            SlotConfig::new(NET),
            Some(gold.clone()),
            Arc::clone(&before),
            Vec::new(),
        )
    };
    let owner = SecretKey::from_bytes(&[78; 32]);
    let (first, rival) = (tracked(spend(&owner, 0, 1)), tracked(spend(&owner, 0, 2)));
    let block = |engine: &mut SlotEngine, keys: &Arc<SetKeys>, at: Millis| {
        engine.step(
            SlotInput::BlockCommitted {
                keys: Arc::clone(keys),
                confirmed: Vec::new(),
            },
            at,
        )
    };
    // The set before certifies the first spend.
    let now: Millis = 10_000;
    let slot = slot_at(now);
    let Some(aggregator) = ops
        .iter()
        .find(|k| Some(k.public_key()) == before.aggregator(slot))
    else {
        panic!("the slot has an aggregator")
    };
    let announcement = Arc::new(BatchAnnouncement::sign(
        aggregator,
        NET,
        before.set_hash(),
        (slot, 0),
        vec![first.txid()],
    ));
    let mut collector = ShareCollector::new(&before, NET, slot, announcement.root());
    for op in &ops[..3] {
        let signature = share(op, &before, slot, announcement.root());
        assert_eq!(collector.add(&before, &op.public_key(), signature), Ok(()));
    }
    let Some(certificate) = collector.certify(&before, None).certificate else {
        panic!("three of four certify")
    };
    let certificate = Arc::new(certificate);

    let mut engine = new_engine();
    // Outside the set it holds only the rival's body, and takes no lock on it.
    let fx = engine.step(SlotInput::Transaction(Arc::clone(&rival)), now - 500);
    assert!(!fx.iter().any(|e| matches!(e, SlotEffect::PersistLock(_))));
    // It joins; the old set's certificate comes in the window, then the batch it asked for.
    block(&mut engine, &after, now + 10);
    assert!(engine.is_joiner());
    let fx = engine.step(SlotInput::Certificate(Arc::clone(&certificate)), now + 20);
    assert!(
        fx.iter()
            .any(|e| matches!(e, SlotEffect::FetchBatch { .. })),
        "{fx:?}"
    );
    engine.step(SlotInput::Announcement(Arc::clone(&announcement)), now + 30);
    let fx = engine.step(SlotInput::Transaction(Arc::clone(&first)), now + 40);
    assert!(
        fx.iter()
            .any(|e| matches!(e, SlotEffect::Finalized { tx, .. } if tx.txid() == first.txid())),
        "{fx:?}"
    );
    // Its window closes: the rival stays unlocked, so it can never certify it.
    let fx = block(&mut engine, &after, now + 1_000);
    assert!(!engine.is_joiner());
    assert!(
        !fx.iter().any(|e| matches!(e, SlotEffect::PersistLock(_))),
        "{fx:?}"
    );
    assert!(!engine.pending[&rival.txid()].locked);

    // After the window the set before proves nothing: its certificate is not taken.
    let mut late = new_engine();
    block(&mut late, &after, now + 10);
    block(&mut late, &after, now + 500);
    assert!(!late.is_joiner());
    let fx = late.step(SlotInput::Certificate(certificate), now + 600);
    assert!(
        !fx.iter().any(|e| matches!(
            e,
            SlotEffect::FetchBatch { .. } | SlotEffect::RelayCertificate(_)
        )),
        "{fx:?}"
    );
}
