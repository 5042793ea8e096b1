//! Masternode tiers and the on-chain registration payload.

use super::amount::{Amount, ATOMS_PER_TIME};
use super::bls::{BlsPublicKey, BlsSecretKey, BlsSignature};
use super::keys::{PublicKey, SecretKey, Signature};
use super::transaction::OutPoint;
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest P2P address a registration may carry (`host:port`).
pub const MAX_P2P_ADDR_LEN: usize = 255;

/// A masternode tier: its collateral and its voting weight.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Bronze,
    Silver,
    Gold,
}

impl Tier {
    /// The exact collateral the tier locks.
    pub fn collateral(self) -> Amount {
        Amount(
            ATOMS_PER_TIME
                * match self {
                    Tier::Free => 0,
                    Tier::Bronze => 1_000,
                    Tier::Silver => 10_000,
                    Tier::Gold => 100_000,
                },
        )
    }

    /// Voting weight in both consensus layers. Free masternodes do not vote.
    pub fn weight(self) -> u64 {
        match self {
            Tier::Free => 0,
            Tier::Bronze => 1,
            Tier::Silver => 10,
            Tier::Gold => 100,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Bronze => "bronze",
            Tier::Silver => "silver",
            Tier::Gold => "gold",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown tier {0:?}: expected free, bronze, silver or gold")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "free" => Ok(Tier::Free),
            "bronze" => Ok(Tier::Bronze),
            "silver" => Ok(Tier::Silver),
            "gold" => Ok(Tier::Gold),
            _ => Err(UnknownTier(s.to_string())),
        }
    }
}

/// The payload of a registration transaction.
///
/// The collateral is an existing, confirmed output of exactly `tier.collateral()`; the
/// transaction proves ownership by spending, in the same transaction, at least one input signed
/// by the key that owns the collateral output. At layer 1 the collateral is claimed like an
/// input (see `Transaction::claimed_outpoints`), so a spend of it conflicts with the
/// registration until the registration is in a block. The operator consents by signing
/// `network id || txid` with `operator_key` (the txid leaves this signature out, as it leaves
/// out input signatures), so nobody can register another's node. The node's BLS key comes with
/// its proof of possession (see `types::bls`), checked with the signatures. The masternode exists from
/// the block after the one that contains the registration until the block after the collateral
/// is spent.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MasternodeRegistration {
    pub tier: Tier,
    pub collateral: OutPoint,
    /// The node's identity key: it signs handshakes, votes and proposals.
    pub operator_key: PublicKey,
    /// Where peers reach it, `host:port`.
    pub p2p_addr: String,
    /// The node's BLS key (derived from its operator key's secret): it signs the shares that
    /// add up to finality certificates.
    pub bls_key: BlsPublicKey,
    /// `bls_key`'s proof of possession for `operator_key`.
    pub bls_pop: BlsSignature,
    /// The operator key's signature of `network id || txid`: its consent to be registered.
    pub operator_signature: Signature,
}

impl MasternodeRegistration {
    /// A registration of `operator`'s node, with its BLS key and proof of possession. The
    /// operator signature is left empty: it covers the txid, so it is made last
    /// (`Transaction::sign_operator`).
    pub fn new(
        tier: Tier,
        collateral: OutPoint,
        operator: &SecretKey,
        p2p_addr: String,
    ) -> MasternodeRegistration {
        let (bls_key, bls_pop) = BlsSecretKey::registration_keys(operator);
        MasternodeRegistration {
            tier,
            collateral,
            operator_key: operator.public_key(),
            p2p_addr,
            bls_key,
            bls_pop,
            operator_signature: Signature([0; 64]),
        }
    }
}
