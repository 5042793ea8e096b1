//! The genesis file: the chain's first block, its first masternodes and its block interval,
//! as JSON that people can read and diff. Every node of a chain must load the same file; the
//! handshake compares the resulting genesis hashes.

use crate::consensus::genesis::{ChainRules, GenesisMasternode, GenesisSpec};
use crate::types::bls::{self, BlsPublicKey, BlsSecretKey, BlsSignature};
use crate::types::masternode::MAX_P2P_ADDR_LEN;
use crate::types::{Address, Amount, Network, PublicKey, SecretKey, Tier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most entries (allocations and masternodes together) a genesis file may list: the genesis
/// coinbase pays each one an output, and a transaction has at most this many.
pub const MAX_GENESIS_ENTRIES: usize = crate::types::transaction::MAX_TX_OUTPUTS;
/// Largest genesis file read.
pub const MAX_GENESIS_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub network: Network,
    pub timestamp_ms: u64,
    /// Target time between blocks, in milliseconds.
    pub block_interval_ms: u64,
    /// Voters from which layer 1 runs the slot engine (`consensus::finality::slots`) instead
    /// of every masternode voting to every other; absent, the node's default
    /// (`consensus::finality::SLOT_ENGINE_VOTERS`). A rule of the chain, like the block
    /// interval: every node of it must read the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_engine_voters: Option<u64>,
    pub allocations: Vec<GenesisAllocation>,
    pub masternodes: Vec<GenesisMasternodeEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAllocation {
    pub address: String,
    /// Decimal TIME, e.g. "1000000" or "0.5".
    pub amount: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMasternodeEntry {
    pub tier: String,
    /// The operator (node) key, 64 hex characters.
    pub operator_key: String,
    /// Address owning the collateral output.
    pub owner: String,
    /// Public P2P address (`host:port`).
    pub p2p_addr: String,
    /// The node's BLS key, 96 hex characters (`timed masternode-keys` prints it).
    pub bls_key: String,
    /// Its proof of possession for `operator_key`, 192 hex characters.
    pub bls_pop: String,
}

/// The public keys a genesis entry (or a registration) names for a node, as
/// `timed masternode-keys` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct MasternodeKeys {
    pub operator_key: String,
    pub bls_key: String,
    pub bls_pop: String,
}

impl MasternodeKeys {
    /// The keys of the node whose operator (node) key is `operator`.
    pub fn of(operator: &SecretKey) -> MasternodeKeys {
        let (bls_key, bls_pop) = BlsSecretKey::registration_keys(operator);
        MasternodeKeys {
            operator_key: operator.public_key().to_hex(),
            bls_key: bls_key.to_hex(),
            bls_pop: bls_pop.to_hex(),
        }
    }
}

impl GenesisMasternodeEntry {
    /// The entry of `operator`'s node, whose collateral `owner` (an address) owns.
    pub fn new(tier: Tier, operator: &SecretKey, owner: String, p2p_addr: String) -> Self {
        let keys = MasternodeKeys::of(operator);
        GenesisMasternodeEntry {
            tier: tier.name().to_string(),
            operator_key: keys.operator_key,
            owner,
            p2p_addr,
            bls_key: keys.bls_key,
            bls_pop: keys.bls_pop,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file: {0}")]
    File(#[from] super::ReadFileError),
    #[error("genesis file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl GenesisFile {
    /// Reads and validates a genesis file for `network`.
    pub fn load(path: &Path, network: Network) -> Result<(GenesisFile, GenesisSpec), GenesisError> {
        let invalid = |reason: String| GenesisError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let text = super::read_bounded(path, MAX_GENESIS_BYTES)?;
        GenesisFile::parse(&text, network).map_err(invalid)
    }

    /// Parses and validates the text of a genesis file for `network`.
    pub fn parse(text: &str, network: Network) -> Result<(GenesisFile, GenesisSpec), String> {
        let file = GenesisFile::from_json(text)?;
        if file.network != network {
            return Err(format!(
                "it is for {}, this node runs {}",
                file.network, network
            ));
        }
        let spec = file.to_spec()?;
        Ok((file, spec))
    }

    /// The file's fields, unchecked. A file written before masternodes had BLS keys says so,
    /// rather than only that a field is missing.
    pub fn from_json(text: &str) -> Result<GenesisFile, String> {
        serde_json::from_str(text).map_err(|e| {
            let without_bls = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| {
                    let first = v.get("masternodes")?.as_array()?.first()?.clone();
                    Some(first.get("operator_key").is_some() && first.get("bls_key").is_none())
                })
                .unwrap_or(false);
            if without_bls {
                format!(
                    "{e}: its masternodes have no BLS keys, so it was written by an older timed \
                     (before registrations carried BLS keys); that chain cannot continue: make a \
                     new genesis (`timed localnet --reset` for a local network)"
                )
            } else {
                e.to_string()
            }
        })
    }

    /// Checks every entry and builds the specification the consensus code uses.
    pub fn to_spec(&self) -> Result<GenesisSpec, String> {
        if self.allocations.len() + self.masternodes.len() > MAX_GENESIS_ENTRIES {
            return Err(format!(
                "more than {MAX_GENESIS_ENTRIES} entries (allocations and masternodes \
                 together: the genesis coinbase pays each an output)"
            ));
        }
        if self.block_interval_ms == 0 {
            return Err("block_interval_ms must be at least 1".into());
        }
        if self.slot_engine_voters == Some(0) {
            return Err(
                "slot_engine_voters must be at least 1 (leave it out for the default)".into(),
            );
        }
        let net = self.network;
        let mut allocations = Vec::new();
        for (i, a) in self.allocations.iter().enumerate() {
            let addr = Address::parse(&a.address, net)
                .map_err(|e| format!("allocations[{i}].address {:?}: {e}", a.address))?;
            let amount = Amount::parse_decimal(&a.amount)
                .map_err(|e| format!("allocations[{i}].amount {:?}: {e}", a.amount))?;
            allocations.push((addr.key_hash, amount));
        }
        let mut masternodes = Vec::new();
        for (i, m) in self.masternodes.iter().enumerate() {
            let tier: Tier = m
                .tier
                .parse()
                .map_err(|e| format!("masternodes[{i}].tier: {e}"))?;
            if tier.weight() == 0 {
                return Err(format!("masternodes[{i}].tier: a free node has no vote"));
            }
            let operator_key = PublicKey::from_hex(&m.operator_key).ok_or_else(|| {
                format!("masternodes[{i}].operator_key: expected 64 hex characters")
            })?;
            let owner = Address::parse(&m.owner, net)
                .map_err(|e| format!("masternodes[{i}].owner {:?}: {e}", m.owner))?;
            // The bound an on-chain registration obeys (a peer's hello carries no more).
            if m.p2p_addr.len() > MAX_P2P_ADDR_LEN {
                return Err(format!(
                    "masternodes[{i}].p2p_addr: {} bytes, at most {MAX_P2P_ADDR_LEN}",
                    m.p2p_addr.len()
                ));
            }
            let bls_key = BlsPublicKey::from_hex(&m.bls_key)
                .ok_or_else(|| format!("masternodes[{i}].bls_key: expected 96 hex characters"))?;
            let bls_pop = BlsSignature::from_hex(&m.bls_pop)
                .ok_or_else(|| format!("masternodes[{i}].bls_pop: expected 192 hex characters"))?;
            if !bls::verify_possession(&bls_key, &operator_key, &bls_pop) {
                return Err(format!(
                    "masternodes[{i}]: bls_pop is not bls_key's proof of possession for \
                     operator_key (copy all three from `timed masternode-keys`)"
                ));
            }
            masternodes.push(GenesisMasternode {
                tier,
                operator_key,
                owner: owner.key_hash,
                p2p_addr: m.p2p_addr.clone(),
                bls_key,
            });
        }
        if masternodes.is_empty() {
            return Err("a chain needs at least one masternode".into());
        }
        let spec = GenesisSpec {
            timestamp_ms: self.timestamp_ms,
            rules: ChainRules {
                block_interval_ms: self.block_interval_ms,
                slot_engine_voters: self
                    .slot_engine_voters
                    .unwrap_or(ChainRules::default().slot_engine_voters),
            },
            allocations,
            masternodes,
        };
        // One coinbase pays every entry: it must be a transaction like any other (at most
        // MAX_TX_OUTPUTS outputs, MAX_TX_BYTES bytes), or the chain starts with a block its own
        // rules refuse.
        spec.build()
            .0
            .check_structure()
            .map_err(|e| format!("the genesis block it describes is not valid: {e}"))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SecretKey;

    fn sample() -> GenesisFile {
        let operator = SecretKey::from_bytes(&[1; 32]);
        let addr = Address::from_public_key(Network::Localnet, &operator.public_key()).to_string();
        GenesisFile {
            network: Network::Localnet,
            timestamp_ms: 1,
            block_interval_ms: 2_000,
            slot_engine_voters: None,
            allocations: vec![GenesisAllocation {
                address: addr.clone(),
                amount: "10.5".into(),
            }],
            masternodes: vec![GenesisMasternodeEntry::new(
                Tier::Bronze,
                &operator,
                addr,
                "127.0.0.1:1".into(),
            )],
        }
    }

    #[test]
    fn a_good_file_builds_and_bad_entries_are_named() {
        let spec = sample().to_spec().unwrap();
        assert_eq!(spec.allocations[0].1, Amount(1_050_000_000));
        let mut bad = sample();
        bad.allocations[0].amount = "1.123456789".into();
        assert!(bad.to_spec().unwrap_err().contains("allocations[0].amount"));
        let mut bad = sample();
        bad.masternodes[0].operator_key = "zz".into();
        assert!(bad.to_spec().unwrap_err().contains("operator_key"));
        let mut bad = sample();
        bad.masternodes[0].tier = "free".into();
        assert!(bad.to_spec().unwrap_err().contains("no vote"));
        let mut bad = sample();
        bad.masternodes[0].bls_key = "00".repeat(48);
        assert!(bad.to_spec().unwrap_err().contains("proof of possession"));
        // Another node's key and proof: valid together, but not for this operator key.
        let other = MasternodeKeys::of(&SecretKey::from_bytes(&[2; 32]));
        let mut bad = sample();
        bad.masternodes[0].bls_key = other.bls_key;
        bad.masternodes[0].bls_pop = other.bls_pop;
        assert!(bad
            .to_spec()
            .unwrap_err()
            .contains("masternodes[0]: bls_pop"));
        let mut bad = sample();
        bad.masternodes[0].bls_pop = "ab".into();
        assert!(bad.to_spec().unwrap_err().contains("bls_pop: expected 192"));
        let mut bad = sample();
        bad.slot_engine_voters = Some(0);
        assert!(bad.to_spec().unwrap_err().contains("slot_engine_voters"));
    }

    #[test]
    fn the_slot_engine_threshold_is_written_only_when_set() {
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(!text.contains("slot_engine_voters"), "{text}");
        let mut one = sample();
        one.slot_engine_voters = Some(1);
        let text = serde_json::to_string(&one).unwrap();
        let (file, _) = GenesisFile::parse(&text, Network::Localnet).unwrap();
        assert_eq!(file.slot_engine_voters, Some(1));
    }

    /// A node that reads the same file with one rule changed is on another chain: the
    /// handshake compares genesis hashes, so it is turned away instead of joining and stalling.
    #[test]
    fn every_chain_rule_is_in_the_genesis_hash() {
        let hash = |f: &GenesisFile| f.to_spec().unwrap().build().0.hash();
        let base = hash(&sample());
        let mut slower = sample();
        slower.block_interval_ms += 1;
        let mut slots = sample();
        slots.slot_engine_voters = Some(1);
        assert_ne!(hash(&slower), base);
        assert_ne!(hash(&slots), base);
        // Leaving the threshold out means the default: the same chain as writing it.
        let mut explicit = sample();
        explicit.slot_engine_voters = Some(crate::consensus::finality::SLOT_ENGINE_VOTERS as u64);
        assert_eq!(hash(&explicit), base);
    }

    #[test]
    fn a_genesis_from_before_bls_keys_says_so() {
        let mut value = serde_json::to_value(sample()).unwrap();
        let entry = value["masternodes"][0].as_object_mut().unwrap();
        entry.remove("bls_key");
        entry.remove("bls_pop");
        let err = GenesisFile::parse(&value.to_string(), Network::Localnet).unwrap_err();
        assert!(err.contains("missing field `bls_key`"), "{err}");
        assert!(err.contains("--reset"), "{err}");
        let err = GenesisFile::from_json("{").unwrap_err();
        assert!(!err.contains("BLS"), "{err}");
    }

    /// Seen while writing the `genesis_file` fuzz target's property (the genesis block passes
    /// the checks of any block): 10,000 entries were allowed, a coinbase holds 1,000 outputs.
    #[test]
    fn a_genesis_whose_coinbase_breaks_the_transaction_rules_is_refused() {
        let mut big = sample();
        let one = big.allocations[0].clone();
        big.allocations = vec![one; crate::types::transaction::MAX_TX_OUTPUTS];
        let err = big.to_spec().unwrap_err();
        assert!(err.contains("more than 1000 entries"), "{err}");
        big.allocations.pop();
        assert!(big.to_spec().is_ok());
        let mut long = sample();
        long.masternodes[0].p2p_addr = format!("{}:1", "a".repeat(MAX_P2P_ADDR_LEN));
        assert!(long.to_spec().unwrap_err().contains("p2p_addr"));
    }
}
