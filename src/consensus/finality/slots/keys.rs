//! The set's voters as the slot engine counts them: in key order (a voter's position is its bit
//! in a certificate's signer bitmap), each with its weight and its BLS key decoded once.
//!
//! Decoding a key and checking it is in the group costs about 160 µs: 0.16 s for a set of
//! 1,000, too much to pay per certificate or per block. [`SetKeys::of`] takes the keys of the
//! previous set and decodes only the members that are new.

use crate::consensus::MasternodeSet;
use crate::types::bls::{self, ValidBlsKey};
use crate::types::hash::tag;
use crate::types::slot::{share_message, SlotCertificate};
use crate::types::{BlsPublicKey, Hash32, Network, PublicKey};
use std::collections::HashMap;

/// One voter of the set.
#[derive(Clone, Debug)]
pub struct Voter {
    pub operator_key: PublicKey,
    pub weight: u64,
    pub bls_key: BlsPublicKey,
    /// `None` if the registered key does not decode to a usable point (registrations check it;
    /// kept as `None` rather than trusted if a stored set ever says otherwise). Such a voter's
    /// weight counts in the total but it can sign nothing.
    pub valid: Option<ValidBlsKey>,
}

/// Why a certificate is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate of slot {slot} is for set {got}, not {expected}")]
    WrongSet {
        slot: u64,
        got: Hash32,
        expected: Hash32,
    },
    #[error("signer bitmap of {got} bytes; a set of {voters} voters needs {expected}")]
    BitmapLength {
        got: usize,
        expected: usize,
        voters: usize,
    },
    #[error("signer bitmap names position {position}, past the set's {voters} voters")]
    SignerOutOfRange { position: usize, voters: usize },
    #[error("signers hold {weight} of {total} weight, not more than two thirds")]
    NoQuorum { weight: u64, total: u64 },
    #[error("signers of slot {slot} hold no quorum of the set before the last change")]
    NoPreviousQuorum { slot: u64 },
    #[error("signer at position {position} has no usable BLS key")]
    UnusableKey { position: usize },
    #[error("aggregate signature of slot {slot} does not match its signers' keys")]
    BadAggregate { slot: u64 },
}

/// A set's voters with decoded keys, shared by every certificate checked against the set.
#[derive(Clone, Debug, Default)]
pub struct SetKeys {
    set_hash: Hash32,
    voters: Vec<Voter>,
    positions: HashMap<PublicKey, usize>,
    /// Running sum of weights up to and including each voter, for weighted choices.
    cumulative: Vec<u64>,
    total_weight: u64,
}

impl SetKeys {
    /// The voters of `set`, reusing the decoded keys of `previous` (the set before it) for the
    /// members it shares.
    pub fn of(set: &MasternodeSet, previous: Option<&SetKeys>) -> SetKeys {
        let known: HashMap<&BlsPublicKey, &Option<ValidBlsKey>> = previous
            .map(|p| p.voters.iter().map(|v| (&v.bls_key, &v.valid)).collect())
            .unwrap_or_default();
        let mut keys = SetKeys {
            set_hash: set.hash(),
            ..SetKeys::default()
        };
        for m in set.members().filter(|m| m.weight() > 0) {
            let valid = match known.get(&m.bls_key) {
                Some(valid) => (*valid).clone(),
                None => m.bls_key.validate(),
            };
            keys.positions.insert(m.operator_key, keys.voters.len());
            keys.total_weight = keys.total_weight.saturating_add(m.weight());
            keys.cumulative.push(keys.total_weight);
            keys.voters.push(Voter {
                operator_key: m.operator_key,
                weight: m.weight(),
                bls_key: m.bls_key,
                valid,
            });
        }
        keys
    }

    pub fn set_hash(&self) -> Hash32 {
        self.set_hash
    }

    pub fn voters(&self) -> &[Voter] {
        &self.voters
    }

    pub fn len(&self) -> usize {
        self.voters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// A voter's position (its bit in signer bitmaps).
    pub fn position(&self, key: &PublicKey) -> Option<usize> {
        self.positions.get(key).copied()
    }

    /// A voter's weight; 0 for anyone else.
    pub fn weight_of(&self, key: &PublicKey) -> u64 {
        self.position(key)
            .and_then(|p| self.voters.get(p))
            .map_or(0, |v| v.weight)
    }

    pub fn voter(&self, position: usize) -> Option<&Voter> {
        self.voters.get(position)
    }

    /// More than two thirds of the total weight (`3w > 2T`), as `MasternodeSet::has_quorum`.
    pub fn has_quorum(&self, weight: u64) -> bool {
        self.total_weight > 0 && 3 * u128::from(weight) > 2 * u128::from(self.total_weight)
    }

    /// The aggregator of `slot`: drawn by weight from a hash of the set and the slot, so every
    /// node agrees, a member aggregates in proportion to its weight, and nobody can pick a
    /// slot's aggregator by what it sends.
    pub fn aggregator(&self, slot: u64) -> Option<PublicKey> {
        if self.total_weight == 0 {
            return None;
        }
        let mut h = Hash32::hasher(tag::SLOT_AGGREGATOR);
        h.update(&self.set_hash.0);
        h.update(&slot.to_le_bytes());
        let draw = Hash32::from_hasher(&h);
        let mut head = [0u8; 16];
        head.copy_from_slice(&draw.0[..16]);
        let point = (u128::from_le_bytes(head) % u128::from(self.total_weight)) as u64;
        let index = self.cumulative.partition_point(|cum| *cum <= point);
        self.voters.get(index).map(|v| v.operator_key)
    }

    /// The voters `from` passes slot `slot`'s announcement to: a tree rooted at the
    /// aggregator in which every other voter has one parent and at most `fanout` children.
    ///
    /// The aggregator sending its batch to every voter itself put a burst of `n` copies on one
    /// uplink per slot: 16 MB at 990 masternodes, the busiest sender of the network at 32 MB/s
    /// (SCALING.md, stop 44). The tree costs every node at most `fanout` copies and the
    /// network the same `n − 1` copies as before, for one hop more per level. The other voters
    /// are laid out in key order, rotated by the slot so the inner nodes change every slot,
    /// and numbered as a heap: the aggregator sends to indices `0..fanout`, index `i` to
    /// `fanout·(i+1) ..`. Every node computes the same tree from the set alone; a voter that
    /// is not reached (a silent parent) is sent the batch by the aggregator itself once its
    /// answer is late (`ANNOUNCE_FALLBACK_MS` in the engine).
    pub fn announce_targets(
        &self,
        slot: u64,
        aggregator: &PublicKey,
        from: &PublicKey,
        fanout: usize,
    ) -> Vec<PublicKey> {
        let (Some(root), fanout) = (self.position(aggregator), fanout.max(1)) else {
            return Vec::new();
        };
        let others = self.voters.len() - 1;
        if others == 0 {
            return Vec::new();
        }
        // `others` fits in u64 and the product below in u128: no overflow for any slot.
        let offset = ((u128::from(slot) * fanout as u128) % others as u128) as usize;
        let first = if from == aggregator {
            0
        } else {
            let Some(p) = self.position(from) else {
                return Vec::new();
            };
            let q = if p < root { p } else { p - 1 };
            let index = (q + others - offset) % others;
            match index.checked_add(1).and_then(|i| i.checked_mul(fanout)) {
                Some(first) => first,
                None => return Vec::new(),
            }
        };
        (first..first.saturating_add(fanout).min(others))
            .map(|i| {
                let q = (i + offset) % others;
                let p = if q < root { q } else { q + 1 };
                self.voters[p].operator_key
            })
            .collect()
    }

    /// Whether the voters at `positions` of this set also hold a quorum of `prev`, the set
    /// before the most recent change (the joint transition rule: while the window is open a
    /// certificate needs both; `None` when there was no change).
    pub fn prev_quorum(
        &self,
        prev: Option<&SetKeys>,
        positions: impl Iterator<Item = usize>,
    ) -> bool {
        let Some(prev) = prev else { return true };
        let weight: u64 = positions
            .filter_map(|p| self.voters.get(p))
            .map(|v| prev.weight_of(&v.operator_key))
            .sum();
        prev.has_quorum(weight)
    }

    /// Checks `certificate` against this set and, while a set change's window is open, the
    /// set before it ([`SetKeys::prev_quorum`]).
    pub fn check_joint(
        &self,
        prev: Option<&SetKeys>,
        certificate: &SlotCertificate,
        network: Network,
    ) -> Result<(), CertificateError> {
        self.check(certificate, network)?;
        if !self.prev_quorum(prev, certificate.signer_positions()) {
            return Err(CertificateError::NoPreviousQuorum {
                slot: certificate.slot,
            });
        }
        Ok(())
    }

    /// Checks `certificate` against this set: its hash, the bitmap's shape, that the signers
    /// hold a quorum, and the aggregate (one pairing check over the sum of their keys).
    pub fn check(
        &self,
        certificate: &SlotCertificate,
        network: Network,
    ) -> Result<(), CertificateError> {
        if certificate.set_hash != self.set_hash {
            return Err(CertificateError::WrongSet {
                slot: certificate.slot,
                got: certificate.set_hash,
                expected: self.set_hash,
            });
        }
        let expected = self.voters.len().div_ceil(8);
        if certificate.signers.len() != expected {
            return Err(CertificateError::BitmapLength {
                got: certificate.signers.len(),
                expected,
                voters: self.voters.len(),
            });
        }
        let mut weight = 0u64;
        let mut keys: Vec<&ValidBlsKey> = Vec::new();
        for position in certificate.signer_positions() {
            let voter = self
                .voters
                .get(position)
                .ok_or(CertificateError::SignerOutOfRange {
                    position,
                    voters: self.voters.len(),
                })?;
            let key = voter
                .valid
                .as_ref()
                .ok_or(CertificateError::UnusableKey { position })?;
            weight = weight.saturating_add(voter.weight);
            keys.push(key);
        }
        if !self.has_quorum(weight) {
            return Err(CertificateError::NoQuorum {
                weight,
                total: self.total_weight,
            });
        }
        let message = share_message(
            network,
            &certificate.set_hash,
            certificate.slot,
            &certificate.root,
        );
        if !bls::verify_aggregate(&keys, &message, &certificate.aggregate) {
            return Err(CertificateError::BadAggregate {
                slot: certificate.slot,
            });
        }
        Ok(())
    }
}
