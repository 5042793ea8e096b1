//! Equivocation evidence: two messages signed by one masternode that no honest masternode ever
//! signs together.
//!
//! * Layer 2: two prevotes (or two precommits) for one height and round naming different
//!   blocks (or a block and nil). Tendermint's safety rests on nobody doing this.
//! * Layer 1: two vote batches of one voter naming two different transactions that claim the
//!   same outpoint (as an input, or as a registration's collateral, which layer 1 locks like
//!   an input). An honest masternode locks an outpoint to the first transaction it votes for
//!   and never votes for another, so both batches together prove a broken promise.
//!
//! Evidence needs no trust in whoever relays it: [`Evidence::verify`] checks both signatures,
//! that one key signed both, the conflict itself and that the key is a voting member. It is
//! stored, gossiped, carried in blocks and, once in a block, removes the offender from the
//! masternode set after that block (see `consensus::masternodes`).
//!
//! A pair has one canonical order (by vote body hash, or by txid), so one offence has exactly
//! one encoding and one [`Evidence::id`].

use super::codec::{self, Canonical};
use super::hash::{tag, Hash32};
use super::keys::PublicKey;
use super::network::Network;
use super::transaction::{OutPoint, Transaction, TxPayload, Txid};
use super::vote::{ConsensusVote, VoteBatch, VoteKind};
use bincode::{Decode, Encode};

/// Largest encoded evidence: two full vote batches and two full transactions fit.
pub const MAX_EVIDENCE_BYTES: usize = 512 * 1024;

/// Who may sign votes: the masternode set the evidence is checked against.
pub trait Membership {
    /// Whether `key` is a voting member (weight above zero).
    fn is_voter(&self, key: &PublicKey) -> bool;
}

/// Two conflicting messages signed by one masternode.
// Evidence is rare and travels behind an `Arc` or in a short `Vec`: boxing the larger variant
// would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Evidence {
    /// Two votes of one kind at one height and round for different blocks.
    Layer2 { a: ConsensusVote, b: ConsensusVote },
    /// Two vote batches of one voter for two transactions claiming `outpoint`.
    Layer1 {
        outpoint: OutPoint,
        first: (VoteBatch, Transaction),
        second: (VoteBatch, Transaction),
    },
}

crate::canonical!(Evidence, "evidence", MAX_EVIDENCE_BYTES);

/// Which layer an offence broke (the metric's label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EvidenceLayer {
    Layer1,
    Layer2,
}

impl EvidenceLayer {
    /// 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            EvidenceLayer::Layer1 => 1,
            EvidenceLayer::Layer2 => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            EvidenceLayer::Layer1 => "1",
            EvidenceLayer::Layer2 => "2",
        }
    }
}

/// Why evidence is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("evidence is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("the two messages are signed by different keys")]
    DifferentSigners,
    #[error("the two messages do not conflict: {0}")]
    NoConflict(&'static str),
    #[error("the pair is not in canonical order")]
    NotCanonical,
    #[error("a signature of {signer} is invalid")]
    BadSignature { signer: PublicKey },
    #[error("{signer} is not a voting member of the masternode set")]
    NotMember { signer: PublicKey },
}

impl Evidence {
    /// Layer-2 evidence from two conflicting votes, in canonical order.
    pub fn layer2(a: ConsensusVote, b: ConsensusVote) -> Evidence {
        if a.body_hash() <= b.body_hash() {
            Evidence::Layer2 { a, b }
        } else {
            Evidence::Layer2 { a: b, b: a }
        }
    }

    /// Layer-1 evidence from two batches voting for conflicting transactions, in canonical
    /// order.
    pub fn layer1(
        outpoint: OutPoint,
        x: (VoteBatch, Transaction),
        y: (VoteBatch, Transaction),
    ) -> Evidence {
        let (first, second) = if x.1.txid() <= y.1.txid() {
            (x, y)
        } else {
            (y, x)
        };
        Evidence::Layer1 {
            outpoint,
            first,
            second,
        }
    }

    /// The hash of the canonical encoding: the evidence's id in storage, gossip and blocks.
    pub fn id(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::EVIDENCE);
        codec::encode_into(self, &mut h);
        Hash32::from_hasher(&h)
    }

    /// The masternode that signed both messages.
    pub fn offender(&self) -> PublicKey {
        match self {
            Evidence::Layer2 { a, .. } => a.validator,
            Evidence::Layer1 { first, .. } => first.0.voter,
        }
    }

    pub fn layer(&self) -> EvidenceLayer {
        match self {
            Evidence::Layer2 { .. } => EvidenceLayer::Layer2,
            Evidence::Layer1 { .. } => EvidenceLayer::Layer1,
        }
    }

    /// The height the offence names: the votes' height at layer 2, the set height of the
    /// first batch at layer 1.
    pub fn height(&self) -> u64 {
        match self {
            Evidence::Layer2 { a, .. } => a.height,
            Evidence::Layer1 { first, .. } => first.0.set_height,
        }
    }

    /// Checks everything but membership and the signatures: sameness of signer, the conflict
    /// and the canonical order. Cheap; done before any signature work.
    pub fn check_conflict(&self) -> Result<(), EvidenceError> {
        let size = self.to_bytes().len();
        if size > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge {
                size,
                max: MAX_EVIDENCE_BYTES,
            });
        }
        match self {
            Evidence::Layer2 { a, b } => {
                if a.validator != b.validator {
                    return Err(EvidenceError::DifferentSigners);
                }
                if a.kind != b.kind || a.height != b.height || a.round != b.round {
                    return Err(EvidenceError::NoConflict(
                        "votes of different kinds, heights or rounds",
                    ));
                }
                if a.block_hash == b.block_hash {
                    return Err(EvidenceError::NoConflict("both votes name the same block"));
                }
                if a.body_hash() >= b.body_hash() {
                    return Err(EvidenceError::NotCanonical);
                }
            }
            Evidence::Layer1 {
                outpoint,
                first,
                second,
            } => {
                if first.0.voter != second.0.voter {
                    return Err(EvidenceError::DifferentSigners);
                }
                let (t1, t2) = (first.1.txid(), second.1.txid());
                if t1 == t2 {
                    return Err(EvidenceError::NoConflict("the same transaction twice"));
                }
                if t1 > t2 {
                    return Err(EvidenceError::NotCanonical);
                }
                if !votes_for(&first.0, &t1) || !votes_for(&second.0, &t2) {
                    return Err(EvidenceError::NoConflict(
                        "a batch does not vote for its transaction",
                    ));
                }
                if !claims(&first.1, outpoint) || !claims(&second.1, outpoint) {
                    return Err(EvidenceError::NoConflict(
                        "a transaction does not claim the outpoint",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Full verification against the set the offender is a member of: the conflict, the
    /// membership, then both signatures.
    pub fn verify(&self, set: &impl Membership, network: Network) -> Result<(), EvidenceError> {
        self.check_conflict()?;
        let signer = self.offender();
        if !set.is_voter(&signer) {
            return Err(EvidenceError::NotMember { signer });
        }
        let ok = match self {
            Evidence::Layer2 { a, b } => a.verify(network) && b.verify(network),
            Evidence::Layer1 { first, second, .. } => {
                first.0.verify(network) && second.0.verify(network)
            }
        };
        if !ok {
            return Err(EvidenceError::BadSignature { signer });
        }
        Ok(())
    }

    /// A one-line description for logs and RPC.
    pub fn describe(&self) -> String {
        match self {
            Evidence::Layer2 { a, b } => format!(
                "{} at height {} round {}: {} and {}",
                match a.kind {
                    VoteKind::Prevote => "prevotes",
                    VoteKind::Precommit => "precommits",
                },
                a.height,
                a.round,
                a.block_hash.map_or("nil".to_string(), |h| h.to_hex()),
                b.block_hash.map_or("nil".to_string(), |h| h.to_hex()),
            ),
            Evidence::Layer1 {
                outpoint,
                first,
                second,
            } => format!(
                "layer-1 votes for {} and {}, both claiming {outpoint}",
                first.1.txid(),
                second.1.txid()
            ),
        }
    }
}

fn votes_for(batch: &VoteBatch, txid: &Txid) -> bool {
    batch.txids.contains(txid)
}

/// Whether `tx` claims `outpoint` at layer 1: spends it, or locks it as a collateral.
fn claims(tx: &Transaction, outpoint: &OutPoint) -> bool {
    tx.inputs.iter().any(|i| i.prev_out == *outpoint)
        || matches!(&tx.payload, TxPayload::MasternodeRegistration(r) if r.collateral == *outpoint)
}

/// Root of a block's evidence list: the merkle root of the ids, zero when empty.
pub fn evidence_root(evidence: &[Evidence]) -> Hash32 {
    let ids: Vec<Hash32> = evidence.iter().map(Evidence::id).collect();
    super::hash::merkle_root(&ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::amount::Amount;
    use crate::types::keys::{KeyHash, SecretKey, Signature};
    use crate::types::transaction::{TxInput, TxOutput, TX_VERSION};
    use std::collections::BTreeSet;

    struct Set(BTreeSet<PublicKey>);
    impl Membership for Set {
        fn is_voter(&self, key: &PublicKey) -> bool {
            self.0.contains(key)
        }
    }

    fn spend(op: OutPoint, amount: u64) -> Transaction {
        Transaction::new(
            TX_VERSION,
            vec![TxInput {
                prev_out: op,
                public_key: SecretKey::from_bytes(&[9; 32]).public_key(),
                signature: Signature([0; 64]),
            }],
            vec![TxOutput {
                amount: Amount(amount),
                key_hash: KeyHash([1; 20]),
            }],
            TxPayload::Transfer,
        )
    }

    #[test]
    fn layer2_evidence_needs_one_signer_one_round_two_blocks() {
        let k = SecretKey::from_bytes(&[1; 32]);
        let set = Set([k.public_key()].into());
        let n = Network::Localnet;
        let a = ConsensusVote::sign(&k, n, VoteKind::Prevote, 5, 1, Some(Hash32([1; 32])));
        let b = ConsensusVote::sign(&k, n, VoteKind::Prevote, 5, 1, None);
        let ev = Evidence::layer2(a.clone(), b.clone());
        assert_eq!(ev.verify(&set, n), Ok(()));
        assert_eq!(
            ev,
            Evidence::layer2(b.clone(), a.clone()),
            "one canonical order"
        );
        assert_eq!(Evidence::from_bytes(&ev.to_bytes()), Ok(ev.clone()));

        // Not a member, wrong network, same block, other round, other signer.
        assert!(matches!(
            ev.verify(&Set(BTreeSet::new()), n),
            Err(EvidenceError::NotMember { .. })
        ));
        assert!(matches!(
            ev.verify(&set, Network::Testnet),
            Err(EvidenceError::BadSignature { .. })
        ));
        let same = Evidence::layer2(a.clone(), a.clone());
        assert!(matches!(
            same.verify(&set, n),
            Err(EvidenceError::NoConflict(_))
        ));
        let later = ConsensusVote::sign(&k, n, VoteKind::Prevote, 5, 2, None);
        assert!(matches!(
            Evidence::layer2(a.clone(), later).verify(&set, n),
            Err(EvidenceError::NoConflict(_))
        ));
        let other = SecretKey::from_bytes(&[2; 32]);
        let theirs = ConsensusVote::sign(&other, n, VoteKind::Prevote, 5, 1, None);
        assert_eq!(
            Evidence::layer2(a.clone(), theirs).verify(&set, n),
            Err(EvidenceError::DifferentSigners)
        );
        // A forged signature is caught.
        let mut forged = b;
        forged.block_hash = Some(Hash32([7; 32]));
        assert!(matches!(
            Evidence::layer2(a, forged).verify(&set, n),
            Err(EvidenceError::BadSignature { .. })
        ));
    }

    #[test]
    fn layer1_evidence_needs_two_votes_for_two_claims_of_one_outpoint() {
        let k = SecretKey::from_bytes(&[1; 32]);
        let set = Set([k.public_key()].into());
        let n = Network::Localnet;
        let op = OutPoint::new(Hash32([3; 32]), 0);
        let (x, y) = (spend(op, 5), spend(op, 6));
        let bx = VoteBatch::sign(&k, n, (0, Hash32::ZERO), 1, vec![x.txid()]);
        let by = VoteBatch::sign(&k, n, (0, Hash32::ZERO), 2, vec![Hash32([4; 32]), y.txid()]);
        let ev = Evidence::layer1(op, (bx.clone(), x.clone()), (by.clone(), y.clone()));
        assert_eq!(ev.verify(&set, n), Ok(()));
        assert_eq!(ev.offender(), k.public_key());
        assert_eq!(ev.layer(), EvidenceLayer::Layer1);
        assert_eq!(Evidence::from_bytes(&ev.to_bytes()), Ok(ev));

        // Two transactions that do not share the outpoint are no conflict.
        let z = spend(OutPoint::new(Hash32([3; 32]), 1), 6);
        let bz = VoteBatch::sign(&k, n, (0, Hash32::ZERO), 3, vec![z.txid()]);
        assert!(matches!(
            Evidence::layer1(op, (bx.clone(), x.clone()), (bz, z)).verify(&set, n),
            Err(EvidenceError::NoConflict(_))
        ));
        // A batch that does not name its transaction proves nothing.
        assert!(matches!(
            Evidence::layer1(op, (bx.clone(), x.clone()), (bx.clone(), y.clone())).verify(&set, n),
            Err(EvidenceError::NoConflict(_))
        ));
        // Batches of two different voters are two honest opinions.
        let other = SecretKey::from_bytes(&[2; 32]);
        let bo = VoteBatch::sign(&other, n, (0, Hash32::ZERO), 1, vec![y.txid()]);
        assert_eq!(
            Evidence::layer1(op, (bx, x), (bo, y)).verify(&set, n),
            Err(EvidenceError::DifferentSigners)
        );
    }
}
