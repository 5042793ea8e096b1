//! The protocol's one hash function: BLAKE3, 32 bytes, with a domain tag per use.
//!
//! Every hashed object gets its own tag (`txid`, `block`, `vote batch`...), so bytes that are
//! valid as one kind of object can never be passed off as the hash of another.

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A 32-byte BLAKE3 digest, shown as lowercase hex. Ordered as its bytes are.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Hash32(pub [u8; 32]);

/// The bytes' lexicographic order, decided by the first eight bytes as one big-endian number
/// in all but one case in 2^64: the ordered maps of txids that consensus searches on every
/// vote compare this way without a call to `memcmp` per step.
impl Ord for Hash32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let head = |h: &Hash32| {
            let mut first = [0u8; 8];
            first.copy_from_slice(&h.0[..8]);
            u64::from_be_bytes(first)
        };
        head(self)
            .cmp(&head(other))
            .then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for Hash32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Domain tags. One per kind of hashed object; never reuse one for another purpose.
pub mod tag {
    pub const TXID: &str = "timecoin/txid/v1";
    pub const BLOCK: &str = "timecoin/block-header/v1";
    pub const MERKLE_LEAF: &str = "timecoin/merkle-leaf/v1";
    pub const MERKLE_NODE: &str = "timecoin/merkle-node/v1";
    pub const VOTE_BATCH: &str = "timecoin/vote-batch/v1";
    pub const ADDRESS: &str = "timecoin/address/v1";
    pub const CHECKSUM: &str = "timecoin/address-checksum/v1";
    /// v2: an output's LtHash expansion (v1 was its Ristretto point).
    pub const UTXO_ELEMENT: &str = "timecoin/utxo-element/v2";
    /// The digest of the UTXO set's LtHash state, as a header carries it.
    pub const UTXO_SET: &str = "timecoin/utxo-set/v1";
    pub const MASTERNODE_SET: &str = "timecoin/masternode-set/v1";
    pub const CONSENSUS_VOTE: &str = "timecoin/consensus-vote/v1";
    pub const PROPOSAL: &str = "timecoin/proposal/v1";
    pub const COMMIT: &str = "timecoin/commit-certificate/v1";
    pub const HELLO: &str = "timecoin/hello/v1";
    /// Leaf of a block's witness root: one transaction's full encoding, signatures included.
    pub const WITNESS: &str = "timecoin/witness/v1";
    /// Id of a piece of equivocation evidence.
    pub const EVIDENCE: &str = "timecoin/evidence/v1";
    /// Local only (never signed or stored): the dedup key of a flooded P2P message.
    pub const GOSSIP: &str = "timecoin/gossip/v1";
    /// Key material of a node's BLS key, from its operator key's secret.
    pub const BLS_KEY: &str = "timecoin/bls-key/v1";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid hash {0:?}: expected 64 hex characters")]
pub struct HashParseError(pub String);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// Hashes `data` under a domain `tag`.
    pub fn digest(tag: &str, data: &[u8]) -> Hash32 {
        let mut h = Self::hasher(tag);
        h.update(data);
        Hash32(*h.finalize().as_bytes())
    }

    /// A BLAKE3 hasher already keyed with a domain tag, for hashing in pieces.
    pub fn hasher(tag: &str) -> blake3::Hasher {
        let mut h = blake3::Hasher::new();
        h.update(&(tag.len() as u32).to_le_bytes());
        h.update(tag.as_bytes());
        h
    }

    pub fn from_hasher(h: &blake3::Hasher) -> Hash32 {
        Hash32(*h.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash32, HashParseError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| HashParseError(s.to_string()))?;
        Ok(Hash32(out))
    }
}

/// Merkle root over a list of leaf hashes (transaction ids).
///
/// Leaves and inner nodes carry different tags, and an odd node is promoted unchanged instead of
/// being paired with itself, which avoids Bitcoin's duplicate-leaf ambiguity (CVE-2012-2459).
pub fn merkle_root(leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return Hash32::ZERO;
    }
    let mut level: Vec<Hash32> = leaves
        .iter()
        .map(|l| Hash32::digest(tag::MERKLE_LEAF, &l.0))
        .collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [a, b] => {
                    let mut h = Hash32::hasher(tag::MERKLE_NODE);
                    h.update(&a.0);
                    h.update(&b.0);
                    next.push(Hash32::from_hasher(&h));
                }
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl FromStr for Hash32 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash32::from_hex(s)
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash32::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn orders_as_its_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), head in any::<[u8; 8]>()) {
            prop_assert_eq!(Hash32(a).cmp(&Hash32(b)), a.cmp(&b));
            // The same first eight bytes: the rest decides.
            let (mut a2, mut b2) = (a, b);
            a2[..8].copy_from_slice(&head);
            b2[..8].copy_from_slice(&head);
            prop_assert_eq!(Hash32(a2).cmp(&Hash32(b2)), a2.cmp(&b2));
        }
    }

    #[test]
    fn tags_separate_domains() {
        assert_ne!(
            Hash32::digest(tag::TXID, b"x"),
            Hash32::digest(tag::BLOCK, b"x")
        );
    }

    #[test]
    fn merkle_root_distinguishes_duplicated_last_leaf() {
        let a = Hash32::digest(tag::TXID, b"a");
        let b = Hash32::digest(tag::TXID, b"b");
        let c = Hash32::digest(tag::TXID, b"c");
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b, c, c]));
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(merkle_root(&[a]), a);
        assert_eq!(merkle_root(&[]), Hash32::ZERO);
    }

    #[test]
    fn hex_round_trip_and_rejection() {
        let h = Hash32::digest(tag::TXID, b"a");
        assert_eq!(Hash32::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash32::from_hex("zz").is_err());
        assert!(Hash32::from_hex(&"a".repeat(63)).is_err());
    }
}
