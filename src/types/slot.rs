//! Layer 1 for large sets (SCALING.md, step 2): what travels between a slot's aggregator and
//! the voters, and the certificate that makes a batch of transactions final.
//!
//! ```text
//! aggregator ──BatchAnnouncement(slot, txids)──► every masternode
//! voter      ──SlotShare(BLS over (set, slot, root))──► aggregator        (locked them all)
//! voter      ──LockReport(txids it cannot lock)──────► aggregator        (otherwise)
//! aggregator ──SlotCertificate(root, signer bitmap, one aggregate)──► everyone
//! ```
//!
//! A share is a voter's lock on every transaction of the batch, so a certificate (shares of
//! more than two thirds of the weight over one root) makes each of them final, as today's
//! quorum of vote batches does; only what one signature covers changed.

use super::codec::{self, MAX_VOTE_BYTES};
use super::hash::{tag, Hash32, MerklePath};
use super::keys::{PublicKey, SecretKey, Signature};
use super::network::Network;
use super::transaction::Txid;
use super::BlsSignature;
use bincode::{Decode, Encode};

/// Length of a slot: how often a batch can become final. A transaction waits half a slot for
/// its batch on average, and at 5,000 tx/s a slot's batch (250 txids, 8 kB) reaches 1,000
/// masternodes one copy after another in 64 ms on a 1 Gbit/s uplink. At 30 masternodes in
/// the world simulation, 50 ms slots instead of 100 took p50 from 475 to 428 ms. A certificate
/// costs each node one aggregate check (≈ 1.3 ms): 20 a second.
pub const SLOT_MS: u64 = 50;
/// Most txids one announced batch may hold (and one lock report may name).
pub const MAX_SLOT_TXIDS: usize = 4096;
/// Most masternodes a signer bitmap can name (bytes of bitmap × 8). Far above any set the
/// genesis and registration rules let form; it only bounds what a peer can make us allocate.
pub const MAX_SIGNERS: usize = 65_536;

/// The slot that holds `now_ms`.
pub fn slot_at(now_ms: u64) -> u64 {
    now_ms / SLOT_MS
}

/// The root a batch's certificate signs: the Merkle root of its txids in announced order.
pub fn batch_root(txids: &[Txid]) -> Hash32 {
    super::hash::merkle_root(txids)
}

/// What every share of a batch signs: the network, the set the voter locks under, the slot and
/// the batch's root. Equal shares over equal messages are what lets them add into one.
pub fn share_message(network: Network, set_hash: &Hash32, slot: u64, root: &Hash32) -> [u8; 36] {
    let mut h = Hash32::hasher(tag::SLOT_SHARE);
    h.update(&set_hash.0);
    h.update(&slot.to_le_bytes());
    h.update(&root.0);
    let body = Hash32::from_hasher(&h);
    let mut m = [0u8; 36];
    m[..4].copy_from_slice(&network.id());
    m[4..].copy_from_slice(&body.0);
    m
}

/// An aggregator's batch for a slot, signed with its operator key so that a voter knows who
/// asks (and two different announcements for one slot and narrowing are its signatures).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BatchAnnouncement {
    pub set_hash: Hash32,
    pub slot: u64,
    /// 0 for the slot's batch; `k` for its `k`th narrowing (the batch again without the txids
    /// that kept a quorum out, see `consensus::finality::slots`).
    pub narrowing: u32,
    pub aggregator: PublicKey,
    pub txids: Vec<Txid>,
    pub signature: Signature,
}

crate::canonical!(BatchAnnouncement, "batch announcement", MAX_VOTE_BYTES);

impl BatchAnnouncement {
    fn signing_message(&self, network: Network) -> [u8; 36] {
        let mut h = Hash32::hasher(tag::SLOT_ANNOUNCEMENT);
        codec::encode_into(&self.set_hash, &mut h);
        codec::encode_into(&self.slot, &mut h);
        codec::encode_into(&self.narrowing, &mut h);
        codec::encode_into(&self.aggregator, &mut h);
        codec::encode_into(&self.txids, &mut h);
        let body = Hash32::from_hasher(&h);
        let mut m = [0u8; 36];
        m[..4].copy_from_slice(&network.id());
        m[4..].copy_from_slice(&body.0);
        m
    }

    pub fn sign(
        key: &SecretKey,
        network: Network,
        set_hash: Hash32,
        (slot, narrowing): (u64, u32),
        txids: Vec<Txid>,
    ) -> BatchAnnouncement {
        let mut a = BatchAnnouncement {
            set_hash,
            slot,
            narrowing,
            aggregator: key.public_key(),
            txids,
            signature: Signature([0; 64]),
        };
        a.signature = key.sign(&a.signing_message(network));
        a
    }

    /// The signature, and the shape a voter relies on: a bounded, non-empty list of distinct
    /// txids.
    pub fn verify(&self, network: Network) -> bool {
        let mut sorted = self.txids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        !self.txids.is_empty()
            && self.txids.len() <= MAX_SLOT_TXIDS
            && sorted.len() == self.txids.len()
            && super::signature::verify(
                &self.aggregator,
                &self.signing_message(network),
                &self.signature,
            )
    }

    pub fn root(&self) -> Hash32 {
        batch_root(&self.txids)
    }
}

/// A voter's BLS signature of [`share_message`]: "I locked every transaction of this batch".
/// Sent to the slot's aggregator only.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SlotShare {
    pub set_hash: Hash32,
    pub slot: u64,
    pub root: Hash32,
    pub voter: PublicKey,
    pub signature: BlsSignature,
}

crate::canonical!(SlotShare, "slot share", 1024);

/// A voter's answer when it cannot lock the whole batch: the txids it cannot lock (a body it
/// lacks, an input locked to a rival). Unsigned: it only asks the aggregator to leave them
/// out, and a report can remove a transaction only when its sender's weight is needed for the
/// quorum (see `consensus::finality::slots`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LockReport {
    pub set_hash: Hash32,
    pub slot: u64,
    pub root: Hash32,
    pub voter: PublicKey,
    pub cannot_lock: Vec<Txid>,
}

crate::canonical!(LockReport, "lock report", MAX_VOTE_BYTES);

/// Proof that the transactions of batch `root` are final: the aggregate of the shares of
/// voters holding more than two thirds of the weight of set `set_hash`, and which voters those
/// are (bit `i` = the set's `i`th voter in key order).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SlotCertificate {
    pub set_hash: Hash32,
    pub slot: u64,
    pub root: Hash32,
    pub signers: Vec<u8>,
    pub aggregate: BlsSignature,
}

crate::canonical!(SlotCertificate, "slot certificate", 16 * 1024);

impl SlotCertificate {
    /// Positions of the signers, in order (bits past the set's end are the verifier's to
    /// refuse).
    pub fn signer_positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.signers.iter().enumerate().flat_map(|(byte, bits)| {
            (0..8).filter_map(move |bit| (bits & (1 << bit) != 0).then_some(byte * 8 + bit))
        })
    }

    /// A bitmap of `len` positions with `positions` set.
    pub fn bitmap(len: usize, positions: impl IntoIterator<Item = usize>) -> Vec<u8> {
        let mut bits = vec![0u8; len.div_ceil(8)];
        for p in positions {
            if let Some(byte) = bits.get_mut(p / 8) {
                *byte |= 1 << (p % 8);
            }
        }
        bits
    }
}

/// What a wallet keeps to prove its transaction final offline: the certificate of the batch
/// that holds it and the txid's path to the batch's root (about 600 bytes at 1,000
/// masternodes, whatever the batch's size).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SlotFinalityProof {
    pub txid: Txid,
    pub path: MerklePath,
    pub certificate: SlotCertificate,
}

crate::canonical!(SlotFinalityProof, "slot finality proof", 32 * 1024);

impl SlotFinalityProof {
    /// Whether the path leads from the txid to the certified root. The certificate itself is
    /// checked against the set's keys (`consensus::finality::slots::SetKeys`).
    pub fn path_holds(&self) -> bool {
        self.path.root_of(&self.txid) == Some(self.certificate.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_is_signed_and_well_formed() {
        let key = SecretKey::from_bytes(&[7; 32]);
        let txids: Vec<Txid> = (0u8..5).map(|i| Hash32::digest(tag::TXID, &[i])).collect();
        let a = BatchAnnouncement::sign(&key, Network::Localnet, Hash32::ZERO, (9, 0), txids);
        assert!(a.verify(Network::Localnet));
        assert!(!a.verify(Network::Testnet), "bound to its network");
        let mut other = a.clone();
        other.slot = 10;
        assert!(!other.verify(Network::Localnet), "the slot is signed");
        let mut twice = a.clone();
        twice.txids.push(twice.txids[0]);
        assert!(!twice.verify(Network::Localnet), "a txid twice is refused");
        let empty = BatchAnnouncement::sign(&key, Network::Localnet, Hash32::ZERO, (9, 0), vec![]);
        assert!(!empty.verify(Network::Localnet));
    }

    #[test]
    fn a_bitmap_round_trips_its_positions() {
        let bits = SlotCertificate::bitmap(20, [0, 3, 8, 19, 25]);
        assert_eq!(bits.len(), 3);
        let cert = SlotCertificate {
            set_hash: Hash32::ZERO,
            slot: 0,
            root: Hash32::ZERO,
            signers: bits,
            aggregate: BlsSignature([0; 96]),
        };
        assert_eq!(cert.signer_positions().collect::<Vec<_>>(), [0, 3, 8, 19]);
    }

    #[test]
    fn shares_of_different_batches_sign_different_messages() {
        let set = Hash32::digest(tag::TXID, b"set");
        let root = Hash32::digest(tag::TXID, b"root");
        let m = share_message(Network::Localnet, &set, 1, &root);
        assert_ne!(m, share_message(Network::Localnet, &set, 2, &root));
        assert_ne!(m, share_message(Network::Localnet, &Hash32::ZERO, 1, &root));
        assert_ne!(m, share_message(Network::Localnet, &set, 1, &set));
        assert_ne!(m, share_message(Network::Testnet, &set, 1, &root));
        assert_eq!(slot_at(1_234), 1_234 / SLOT_MS);
        assert_eq!(slot_at(SLOT_MS * 7), 7);
    }
}
