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
    /// What a layer-1 slot share signs (BLS): set, slot and batch root.
    pub const SLOT_SHARE: &str = "timecoin/slot-share/v1";
    /// What an aggregator's batch announcement signs.
    pub const SLOT_ANNOUNCEMENT: &str = "timecoin/slot-announcement/v1";
    /// The draw that picks a slot's aggregator by weight.
    pub const SLOT_AGGREGATOR: &str = "timecoin/slot-aggregator/v1";
    /// Key material of a node's BLS key, from its operator key's secret.
    pub const BLS_KEY: &str = "timecoin/bls-key/v1";
    /// The rules a genesis file fixes for its chain, as the genesis header names them.
    pub const CHAIN_RULES: &str = "timecoin/chain-rules/v1";
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
    let mut level: Vec<Hash32> = leaves.iter().map(merkle_leaf).collect();
    while level.len() > 1 {
        level = merkle_level_up(&level);
    }
    level.first().copied().unwrap_or(Hash32::ZERO)
}

/// Proof that one leaf is the `index`th of `leaves` under a [`merkle_root`]: what a wallet keeps
/// to show its transaction is in a certified batch without the batch's other txids.
///
/// The index and the leaf count fix which levels pair the node with a sibling (an odd node at
/// the end of a level is promoted without one), so a path proves one position and no other.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MerklePath {
    pub index: u32,
    pub leaves: u32,
    /// The sibling at each level that has one, from the leaves up.
    pub siblings: Vec<Hash32>,
}

/// The path of `leaves[index]`, or `None` past the end.
pub fn merkle_path(leaves: &[Hash32], index: usize) -> Option<MerklePath> {
    MerkleTree::new(leaves).path(index)
}

/// Every level of a Merkle tree, kept so that the paths of many leaves (every transaction of a
/// certified batch) cost a lookup each rather than a rebuild each.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` holds the hashed leaves; the last level holds the root alone.
    levels: Vec<Vec<Hash32>>,
}

impl MerkleTree {
    pub fn new(leaves: &[Hash32]) -> MerkleTree {
        let mut levels = vec![leaves.iter().map(merkle_leaf).collect::<Vec<_>>()];
        while let Some(top) = levels.last().filter(|l| l.len() > 1) {
            let up = merkle_level_up(top);
            levels.push(up);
        }
        MerkleTree { levels }
    }

    /// The same as [`merkle_root`] of the leaves.
    pub fn root(&self) -> Hash32 {
        match self.levels.last().map(Vec::as_slice) {
            Some([root]) => *root,
            _ => Hash32::ZERO,
        }
    }

    pub fn path(&self, index: usize) -> Option<MerklePath> {
        let count = self.levels.first()?.len();
        if index >= count {
            return None;
        }
        let mut position = index;
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(position ^ 1) {
                siblings.push(*sibling);
            }
            position /= 2;
        }
        Some(MerklePath {
            index: u32::try_from(index).ok()?,
            leaves: u32::try_from(count).ok()?,
            siblings,
        })
    }
}

impl MerklePath {
    /// The root this path leads to from `leaf`, or `None` if the path is malformed (an index
    /// past the count, or a sibling too many or too few).
    pub fn root_of(&self, leaf: &Hash32) -> Option<Hash32> {
        if self.index >= self.leaves {
            return None;
        }
        let (mut position, mut width) = (self.index as usize, self.leaves as usize);
        let mut siblings = self.siblings.iter();
        let mut node = merkle_leaf(leaf);
        while width > 1 {
            if (position ^ 1) < width {
                let sibling = siblings.next()?;
                node = if position % 2 == 0 {
                    merkle_node(&node, sibling)
                } else {
                    merkle_node(sibling, &node)
                };
            }
            position /= 2;
            width = width.div_ceil(2);
        }
        match siblings.next() {
            Some(_) => None,
            None => Some(node),
        }
    }
}

fn merkle_leaf(leaf: &Hash32) -> Hash32 {
    Hash32::digest(tag::MERKLE_LEAF, &leaf.0)
}

fn merkle_node(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Hash32::hasher(tag::MERKLE_NODE);
    h.update(&left.0);
    h.update(&right.0);
    Hash32::from_hasher(&h)
}

/// The level above: pairs hashed, an odd last node promoted unchanged.
fn merkle_level_up(level: &[Hash32]) -> Vec<Hash32> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => merkle_node(a, b),
            [single, ..] => *single,
            [] => Hash32::ZERO,
        })
        .collect()
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

    proptest! {
        #[test]
        fn a_merkle_path_proves_its_leaf_and_position(
            seeds in proptest::collection::vec(any::<u64>(), 1..70),
            pick in any::<usize>(),
        ) {
            let leaves: Vec<Hash32> =
                seeds.iter().map(|s| Hash32::digest(tag::TXID, &s.to_le_bytes())).collect();
            let root = merkle_root(&leaves);
            let index = pick % leaves.len();
            let path = merkle_path(&leaves, index).unwrap();
            prop_assert_eq!(path.root_of(&leaves[index]), Some(root));
            prop_assert_eq!(MerkleTree::new(&leaves).root(), root);
            // Another leaf, or the same leaf claimed at another position, does not lead there.
            let stranger = Hash32::digest(tag::TXID, b"stranger");
            prop_assert_ne!(path.root_of(&stranger), Some(root));
            let moved = MerklePath { index: (path.index + 1) % path.leaves, ..path.clone() };
            if moved.index != path.index && leaves[moved.index as usize] != leaves[index] {
                prop_assert_ne!(moved.root_of(&leaves[index]), Some(root));
            }
            let mut extra = path.clone();
            extra.siblings.push(root);
            prop_assert_eq!(extra.root_of(&leaves[index]), None);
            prop_assert!(merkle_path(&leaves, leaves.len()).is_none());
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
