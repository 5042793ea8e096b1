//! The masternode set: who votes, with what weight, and who proposes.
//!
//! Derived from the chain alone (genesis entries plus on-chain registrations, minus spent
//! collateral), so every honest node computes the same set, quorum and proposer for every
//! height. The set after block `h` signs block `h + 1`: a registration counts from the block
//! after the one that contains it, and spending the collateral removes the masternode from the
//! block after. A masternode proven to equivocate by evidence carried in a block also leaves
//! the set after that block (`Block::evidence`): its collateral stays where it is, unspent and
//! its owner's; the operator key may register again with a new registration transaction, but
//! the evidence stays valid against that key, so any proposer that holds it excludes the key
//! again. In practice an operator that equivocated must start over with a new operator key.

use crate::types::evidence::Membership;
use crate::types::hash::{tag, Hash32};
use crate::types::{codec, Block, BlsPublicKey, OutPoint, PublicKey, Tier, TxPayload};
use bincode::{Decode, Encode};
use std::collections::{BTreeMap, HashMap};

/// One registered masternode.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Masternode {
    pub operator_key: PublicKey,
    pub tier: Tier,
    pub collateral: OutPoint,
    pub p2p_addr: String,
    /// Its BLS key, registered with a proof of possession.
    pub bls_key: BlsPublicKey,
    /// Height of the block that registered it (0 for genesis masternodes).
    pub registered_height: u64,
}

crate::canonical!(Masternode, "masternode", 1024);

impl Masternode {
    pub fn weight(&self) -> u64 {
        self.tier.weight()
    }
}

#[cfg(test)]
impl Masternode {
    /// A genesis member for unit tests: `operator`'s node, its BLS key derived as a node's is.
    pub(crate) fn of(operator: &crate::types::SecretKey, tier: Tier, collateral: OutPoint) -> Self {
        Masternode {
            operator_key: operator.public_key(),
            tier,
            collateral,
            p2p_addr: String::new(),
            bls_key: crate::types::BlsSecretKey::from_operator(operator).public_key(),
            registered_height: 0,
        }
    }
}

/// An immutable snapshot of the set valid after a committed height.
#[derive(Clone, Debug)]
pub struct MasternodeSet {
    height: u64,
    members: BTreeMap<PublicKey, Masternode>,
    /// The set's hash, computed once: it encodes every member, and votes, certificates and
    /// RPC reads compare it often (a thousand members: ≈ 300 kB hashed per call).
    hash: Hash32,
    by_collateral: HashMap<OutPoint, PublicKey>,
    /// Voters (weight > 0) in key order with the running sum of weights up to and including
    /// each, for weighted proposer choice by binary search.
    cumulative: Vec<(PublicKey, u64)>,
    total_weight: u64,
}

/// What a block changed in the set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetChanges {
    pub added: Vec<Masternode>,
    pub removed: Vec<Masternode>,
}

impl Default for MasternodeSet {
    fn default() -> Self {
        Self::from_map(0, BTreeMap::new())
    }
}

impl MasternodeSet {
    pub fn new(height: u64, members: impl IntoIterator<Item = Masternode>) -> MasternodeSet {
        let mut map = BTreeMap::new();
        for m in members {
            map.entry(m.operator_key).or_insert(m);
        }
        Self::from_map(height, map)
    }

    fn from_map(height: u64, members: BTreeMap<PublicKey, Masternode>) -> MasternodeSet {
        let by_collateral = members
            .values()
            .map(|m| (m.collateral, m.operator_key))
            .collect();
        let mut cumulative = Vec::new();
        let mut total: u64 = 0;
        for m in members.values() {
            if m.weight() > 0 {
                // At most 100 per member: the sum cannot overflow for any real set.
                total = total.saturating_add(m.weight());
                cumulative.push((m.operator_key, total));
            }
        }
        MasternodeSet {
            height,
            hash: Self::hash_of(&members),
            members,
            by_collateral,
            cumulative,
            total_weight: total,
        }
    }

    /// The committed height after which this set applies.
    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Masternode> {
        self.members.get(key)
    }

    pub fn contains_voter(&self, key: &PublicKey) -> bool {
        self.weight_of(key) > 0
    }

    /// Voting weight of `key`; 0 for non-members and free-tier members.
    pub fn weight_of(&self, key: &PublicKey) -> u64 {
        self.members.get(key).map_or(0, Masternode::weight)
    }

    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// More than two thirds of the total weight, in integers: `3w > 2T`.
    pub fn has_quorum(&self, weight: u64) -> bool {
        self.total_weight > 0 && 3 * u128::from(weight) > 2 * u128::from(self.total_weight)
    }

    /// The smallest weight that is a quorum.
    pub fn quorum_weight(&self) -> u64 {
        (2 * u128::from(self.total_weight) / 3 + 1) as u64
    }

    /// More than one third: enough to be sure at least one honest node is among them.
    pub fn has_one_third(&self, weight: u64) -> bool {
        3 * u128::from(weight) > u128::from(self.total_weight)
    }

    pub fn members(&self) -> impl Iterator<Item = &Masternode> {
        self.members.values()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The hash that block headers carry as `next_masternode_set_hash`.
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    fn hash_of(members: &BTreeMap<PublicKey, Masternode>) -> Hash32 {
        let mut h = Hash32::hasher(tag::MASTERNODE_SET);
        codec::encode_into(&(members.len() as u64), &mut h);
        for m in members.values() {
            codec::encode_into(m, &mut h);
        }
        Hash32::from_hasher(&h)
    }

    /// The proposer for `height` and `round`: a weighted round-robin. Each unit of weight is a
    /// slot; slots are visited with a stride coprime to the total weight, so over any `T`
    /// consecutive (height + round) values each voter proposes exactly `weight` times and the
    /// turns of heavy voters are spread out rather than bunched.
    pub fn proposer(&self, height: u64, round: u32) -> Option<PublicKey> {
        let total = self.total_weight;
        if total == 0 {
            return None;
        }
        let step = height.wrapping_add(u64::from(round));
        let slot = ((u128::from(step) * u128::from(stride(total))) % u128::from(total)) as u64;
        let idx = self.cumulative.partition_point(|(_, cum)| *cum <= slot);
        self.cumulative.get(idx).map(|(k, _)| *k)
    }

    /// The set after block `block` (at `self.height + 1`), which spent `spent`: registrations in
    /// it join, masternodes whose collateral it spent leave. A registration for a key or a
    /// collateral already registered changes nothing.
    pub fn after_block(&self, block: &Block, spent: &[OutPoint]) -> (MasternodeSet, SetChanges) {
        let height = block.header.height;
        let mut members = self.members.clone();
        let mut changes = SetChanges::default();
        let mut collaterals: HashMap<OutPoint, PublicKey> = self.by_collateral.clone();
        for tx in &block.transactions {
            if let TxPayload::MasternodeRegistration(reg) = &tx.payload {
                if members.contains_key(&reg.operator_key)
                    || collaterals.contains_key(&reg.collateral)
                {
                    continue;
                }
                let m = Masternode {
                    operator_key: reg.operator_key,
                    tier: reg.tier,
                    collateral: reg.collateral,
                    p2p_addr: reg.p2p_addr.clone(),
                    bls_key: reg.bls_key,
                    registered_height: height,
                };
                collaterals.insert(m.collateral, m.operator_key);
                members.insert(m.operator_key, m.clone());
                changes.added.push(m);
            }
        }
        for op in spent {
            if let Some(key) = collaterals.remove(op) {
                if let Some(m) = members.remove(&key) {
                    changes.added.retain(|a| a.operator_key != key);
                    changes.removed.push(m);
                }
            }
        }
        // Issue 11 §8: an equivocator proven in this block leaves the set after it.
        for ev in &block.evidence {
            let key = ev.offender();
            if let Some(m) = members.remove(&key) {
                collaterals.remove(&m.collateral);
                changes.added.retain(|a| a.operator_key != key);
                changes.removed.push(m);
            }
        }
        (Self::from_map(height, members), changes)
    }
}

impl Membership for MasternodeSet {
    fn is_voter(&self, key: &PublicKey) -> bool {
        self.contains_voter(key)
    }
}

/// A stride coprime to `total`, near `total / φ` so consecutive slots land far apart.
fn stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    // Integer arithmetic only: consensus output must not depend on floating point.
    let mut s = ((u128::from(total) * 618_034 / 1_000_000) as u64).max(1);
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SecretKey;

    fn mn(i: u8, tier: Tier) -> Masternode {
        Masternode {
            p2p_addr: format!("127.0.0.1:{}", 9000 + u16::from(i)),
            ..Masternode::of(
                &SecretKey::from_bytes(&[i; 32]),
                tier,
                OutPoint::new(Hash32([i; 32]), 0),
            )
        }
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let set = MasternodeSet::new(0, (1..=4).map(|i| mn(i, Tier::Bronze)));
        assert_eq!(set.total_weight(), 4);
        assert!(!set.has_quorum(2));
        assert!(set.has_quorum(3));
        assert_eq!(set.quorum_weight(), 3);
        let set = MasternodeSet::new(0, (1..=3).map(|i| mn(i, Tier::Bronze)));
        assert!(!set.has_quorum(2), "2 of 3 is exactly two thirds, not more");
        assert!(set.has_quorum(3));
        let empty = MasternodeSet::default();
        assert!(!empty.has_quorum(0));
    }

    #[test]
    fn free_tier_has_no_vote_and_weights_follow_tiers() {
        let set = MasternodeSet::new(
            0,
            [
                mn(1, Tier::Free),
                mn(2, Tier::Bronze),
                mn(3, Tier::Silver),
                mn(4, Tier::Gold),
            ],
        );
        assert_eq!(set.total_weight(), 111);
        assert!(!set.contains_voter(&mn(1, Tier::Free).operator_key));
        assert_eq!(set.weight_of(&mn(4, Tier::Gold).operator_key), 100);
    }

    #[test]
    fn proposer_turns_are_proportional_to_weight() {
        let set = MasternodeSet::new(
            0,
            [
                mn(1, Tier::Bronze),
                mn(2, Tier::Silver),
                mn(3, Tier::Bronze),
            ],
        );
        let total = set.total_weight();
        let mut counts: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for h in 0..total {
            *counts.entry(set.proposer(h, 0).unwrap()).or_default() += 1;
        }
        for m in set.members() {
            assert_eq!(counts[&m.operator_key], m.weight());
        }
        // Rounds move the turn on.
        assert_ne!(set.proposer(5, 0), set.proposer(5, 1));
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;
    use crate::types::block::BLOCK_VERSION;
    use crate::types::transaction::TX_VERSION;
    use crate::types::{
        Amount, BlockHeader, MasternodeRegistration, SecretKey, Signature, Transaction, TxInput,
        TxOutput,
    };

    fn block_with(height: u64, txs: Vec<Transaction>) -> Block {
        Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height,
                prev_hash: Hash32::ZERO,
                timestamp_ms: 0,
                round: 0,
                proposer: PublicKey([0; 32]),
                tx_root: Hash32::ZERO,
                witness_root: Hash32::ZERO,
                utxo_commitment: Hash32::ZERO,
                next_masternode_set_hash: Hash32::ZERO,
                last_commit_hash: Hash32::ZERO,
                evidence_root: Hash32::ZERO,
            },
            last_commit: None,
            transactions: txs.into_iter().map(std::sync::Arc::new).collect(),
            evidence: Vec::new(),
        }
    }

    fn registration(operator: &SecretKey, collateral: OutPoint, tier: Tier) -> Transaction {
        Transaction::new(
            TX_VERSION,
            vec![TxInput {
                prev_out: OutPoint::new(Hash32([5; 32]), 9),
                public_key: operator.public_key(),
                signature: Signature([0; 64]),
            }],
            vec![TxOutput {
                amount: Amount(1),
                key_hash: operator.public_key().key_hash(),
            }],
            TxPayload::from(MasternodeRegistration::new(
                tier,
                collateral,
                operator,
                "127.0.0.1:24100".into(),
            )),
        )
    }

    #[test]
    fn registration_joins_and_spent_collateral_leaves() {
        let genesis_key = SecretKey::from_bytes(&[1; 32]);
        let genesis = MasternodeSet::new(
            0,
            [Masternode::of(
                &genesis_key,
                Tier::Bronze,
                OutPoint::new(Hash32([1; 32]), 0),
            )],
        );
        let newcomer = SecretKey::from_bytes(&[2; 32]);
        let collateral = OutPoint::new(Hash32([2; 32]), 0);
        let b1 = block_with(1, vec![registration(&newcomer, collateral, Tier::Silver)]);
        let (after1, changes) = genesis.after_block(&b1, &[]);
        assert_eq!(changes.added.len(), 1);
        assert_eq!(after1.weight_of(&newcomer.public_key()), 10);
        assert_eq!(after1.total_weight(), 11);
        assert_ne!(after1.hash(), genesis.hash());

        // A second registration of the same collateral changes nothing.
        let other = SecretKey::from_bytes(&[3; 32]);
        let b2 = block_with(2, vec![registration(&other, collateral, Tier::Silver)]);
        let (after2, changes) = after1.after_block(&b2, &[]);
        assert!(changes.added.is_empty());
        assert_eq!(after2.hash(), after1.hash());

        // Spending the collateral removes the masternode.
        let b3 = block_with(3, Vec::new());
        let (after3, changes) = after2.after_block(&b3, &[collateral]);
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(after3.weight_of(&newcomer.public_key()), 0);
        assert_eq!(after3.total_weight(), 1);
    }

    #[test]
    fn evidence_in_a_block_excludes_the_equivocator_after_it() {
        use crate::types::{ConsensusVote, Evidence, Network, VoteKind};
        let keys: Vec<SecretKey> = (1..=4).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
        let set = MasternodeSet::new(
            0,
            keys.iter().enumerate().map(|(i, k)| {
                Masternode::of(k, Tier::Bronze, OutPoint::new(Hash32([i as u8; 32]), 0))
            }),
        );
        let bad = &keys[2];
        let n = Network::Localnet;
        let ev = Evidence::layer2(
            ConsensusVote::sign(bad, n, VoteKind::Prevote, 1, 0, None),
            ConsensusVote::sign(bad, n, VoteKind::Prevote, 1, 0, Some(Hash32([9; 32]))),
        );
        assert!(ev.verify(&set, n).is_ok());
        let mut b1 = block_with(1, Vec::new());
        b1.evidence = vec![ev.clone()];
        let (after, changes) = set.after_block(&b1, &[]);
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(changes.removed[0].operator_key, bad.public_key());
        assert!(!after.contains_voter(&bad.public_key()));
        assert_eq!(after.total_weight(), 3);
        assert_ne!(after.hash(), set.hash());
        // The same evidence no longer verifies against the set after: it cannot be replayed.
        assert!(ev.verify(&after, n).is_err());
    }
}
