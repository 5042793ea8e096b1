//! The genesis block and the first masternode set, from one specification.
//!
//! Genesis masternodes are ordinary masternodes whose collateral outputs the genesis coinbase
//! creates: spending one removes that masternode, as for any other.

use super::masternodes::{Masternode, MasternodeSet};
use crate::ledger::build_genesis;
use crate::types::hash::{tag, Hash32};
use crate::types::{
    codec, Amount, Block, BlsPublicKey, BlsSecretKey, KeyHash, OutPoint, PublicKey, SecretKey, Tier,
};
use bincode::Encode;

/// Block interval of a chain whose genesis names none (localnets, tests).
pub const DEFAULT_BLOCK_INTERVAL_MS: u64 = 2_000;

/// The rules of a chain that its genesis file fixes besides its first coins and masternodes.
///
/// Every node of a chain must run them alike (two nodes on different layer-1 engines never
/// agree on a transaction), so their hash is in the genesis header: a node whose file differs
/// in one of them has another genesis hash, and the handshake turns it away with a clear
/// message instead of letting it join and stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode)]
pub struct ChainRules {
    /// Target time between blocks.
    pub block_interval_ms: u64,
    /// Voters from which layer 1 runs the slot engine (`consensus::finality::slots`).
    pub slot_engine_voters: u64,
}

impl Default for ChainRules {
    fn default() -> Self {
        ChainRules {
            block_interval_ms: DEFAULT_BLOCK_INTERVAL_MS,
            slot_engine_voters: super::finality::SLOT_ENGINE_VOTERS as u64,
        }
    }
}

impl ChainRules {
    pub fn hash(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::CHAIN_RULES);
        codec::encode_into(self, &mut h);
        Hash32::from_hasher(&h)
    }
}

#[derive(Clone, Debug)]
pub struct GenesisMasternode {
    pub tier: Tier,
    pub operator_key: PublicKey,
    /// Owner of the collateral output.
    pub owner: KeyHash,
    pub p2p_addr: String,
    /// Checked against its proof of possession when the genesis file was read.
    pub bls_key: BlsPublicKey,
}

impl GenesisMasternode {
    /// The entry of `operator`'s node (its BLS key derived from it), for chains made in code.
    pub fn new(tier: Tier, operator: &SecretKey, owner: KeyHash, p2p_addr: String) -> Self {
        GenesisMasternode {
            tier,
            operator_key: operator.public_key(),
            owner,
            p2p_addr,
            bls_key: BlsSecretKey::from_operator(operator).public_key(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GenesisSpec {
    pub timestamp_ms: u64,
    pub rules: ChainRules,
    pub allocations: Vec<(KeyHash, Amount)>,
    pub masternodes: Vec<GenesisMasternode>,
}

impl GenesisSpec {
    /// The genesis block and the masternode set that signs block 1.
    pub fn build(&self) -> (Block, MasternodeSet) {
        let mut outputs: Vec<(KeyHash, Amount)> = self.allocations.clone();
        let first_collateral = outputs.len();
        for m in &self.masternodes {
            outputs.push((m.owner, m.tier.collateral()));
        }
        // The set refers to the coinbase's txid, which does not depend on the header: build
        // once to learn it, then again with the set's hash in the header.
        let rules = self.rules.hash();
        let probe = build_genesis(&outputs, self.timestamp_ms, rules, Default::default());
        let txid = probe.transactions[0].txid();
        let set = MasternodeSet::new(
            0,
            self.masternodes
                .iter()
                .enumerate()
                .map(|(i, m)| Masternode {
                    operator_key: m.operator_key,
                    tier: m.tier,
                    collateral: OutPoint::new(txid, (first_collateral + i) as u32),
                    p2p_addr: m.p2p_addr.clone(),
                    bls_key: m.bls_key,
                    registered_height: 0,
                }),
        );
        let genesis = build_genesis(&outputs, self.timestamp_ms, rules, set.hash());
        debug_assert_eq!(genesis.transactions[0].txid(), txid);
        (genesis, set)
    }
}
