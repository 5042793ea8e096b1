//! The aggregator's side of one batch: shares in, a certificate out.
//!
//! Shares are not checked one by one (a BLS check is ≈ 0.9 ms: 0.6 s for the 667 shares of a
//! set of 1,000). Once they carry a quorum, the aggregator adds them and checks the sum once
//! (≈ 1.3 ms). Only when that fails does it look for the bad ones, by halves: `b` bad shares
//! among `n` cost about `2·b·log2(n)` checks. A bad share is refused and its voter's share of
//! this batch no longer counted; it proves nothing to third parties (anyone can send bytes in
//! a voter's name), so it is the sending peer's fault, not evidence.

use super::keys::SetKeys;
use crate::types::bls::{self, ValidBlsKey};
use crate::types::slot::{share_message, SlotCertificate};
use crate::types::{BlsSignature, Hash32, Network, PublicKey};
use std::collections::{BTreeMap, BTreeSet};

/// Why a share is not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("share from {0}, which is not a voter of the set")]
    NotAVoter(PublicKey),
    #[error("voter {0} has no usable BLS key")]
    UnusableKey(PublicKey),
    #[error("a share of voter {0} was already counted for this batch")]
    Duplicate(PublicKey),
    #[error("an earlier share of voter {0} for this batch had a bad signature")]
    Refused(PublicKey),
}

/// What [`ShareCollector::certify`] found.
#[derive(Debug, Default)]
pub struct Certification {
    /// The certificate, if the good shares hold a quorum.
    pub certificate: Option<SlotCertificate>,
    /// Voters whose shares did not check, now refused for this batch.
    pub bad: Vec<PublicKey>,
}

/// The shares gathered for one batch (set, slot, root).
#[derive(Debug)]
pub struct ShareCollector {
    set_hash: Hash32,
    slot: u64,
    root: Hash32,
    message: [u8; 36],
    shares: BTreeMap<usize, BlsSignature>,
    weight: u64,
    refused: BTreeSet<usize>,
}

impl ShareCollector {
    pub fn new(keys: &SetKeys, network: Network, slot: u64, root: Hash32) -> ShareCollector {
        ShareCollector {
            set_hash: keys.set_hash(),
            slot,
            root,
            message: share_message(network, &keys.set_hash(), slot, &root),
            shares: BTreeMap::new(),
            weight: 0,
            refused: BTreeSet::new(),
        }
    }

    pub fn root(&self) -> Hash32 {
        self.root
    }

    /// Weight of the shares held (not yet checked).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    pub fn has(&self, keys: &SetKeys, voter: &PublicKey) -> bool {
        keys.position(voter)
            .is_some_and(|p| self.shares.contains_key(&p))
    }

    /// Holds `voter`'s share for checking with the others.
    pub fn add(
        &mut self,
        keys: &SetKeys,
        voter: &PublicKey,
        signature: BlsSignature,
    ) -> Result<(), ShareError> {
        let position = keys.position(voter).ok_or(ShareError::NotAVoter(*voter))?;
        let Some(member) = keys.voter(position) else {
            return Err(ShareError::NotAVoter(*voter));
        };
        if member.valid.is_none() {
            return Err(ShareError::UnusableKey(*voter));
        }
        if self.refused.contains(&position) {
            return Err(ShareError::Refused(*voter));
        }
        if self.shares.contains_key(&position) {
            return Err(ShareError::Duplicate(*voter));
        }
        self.shares.insert(position, signature);
        self.weight = self.weight.saturating_add(member.weight);
        Ok(())
    }

    /// Whether the shares held carry a quorum of the set and, while a change's window is
    /// open, of the set before it.
    fn enough(&self, keys: &SetKeys, prev: Option<&SetKeys>) -> bool {
        keys.has_quorum(self.weight) && keys.prev_quorum(prev, self.shares.keys().copied())
    }

    /// Once the shares held carry a quorum ([`SetKeys::prev_quorum`] too): adds them up and
    /// checks the sum; if it fails, finds and drops the bad shares, and certifies what is
    /// left if it is still enough.
    pub fn certify(&mut self, keys: &SetKeys, prev: Option<&SetKeys>) -> Certification {
        let mut outcome = Certification::default();
        if !self.enough(keys, prev) {
            return outcome;
        }
        let positions: Vec<usize> = self.shares.keys().copied().collect();
        let bad = self.find_bad(keys, &positions);
        for position in &bad {
            if let Some(voter) = keys.voter(*position) {
                self.weight = self.weight.saturating_sub(voter.weight);
                outcome.bad.push(voter.operator_key);
            }
            self.shares.remove(position);
            self.refused.insert(*position);
        }
        if !self.enough(keys, prev) {
            return outcome;
        }
        let signatures: Vec<BlsSignature> = self.shares.values().copied().collect();
        // Every share left is inside a subset whose sum checked, so the whole sum decodes.
        if let Some(aggregate) = bls::aggregate(&signatures) {
            outcome.certificate = Some(SlotCertificate {
                set_hash: self.set_hash,
                slot: self.slot,
                root: self.root,
                signers: SlotCertificate::bitmap(keys.len(), self.shares.keys().copied()),
                aggregate,
            });
        }
        outcome
    }

    /// The positions among `positions` whose shares are bad: none if their sum checks,
    /// otherwise the bad ones of each half.
    fn find_bad(&self, keys: &SetKeys, positions: &[usize]) -> Vec<usize> {
        if positions.is_empty() || self.sum_checks(keys, positions) {
            return Vec::new();
        }
        if let [single] = positions {
            return vec![*single];
        }
        let (left, right) = positions.split_at(positions.len() / 2);
        let mut bad = self.find_bad(keys, left);
        bad.extend(self.find_bad(keys, right));
        bad
    }

    fn sum_checks(&self, keys: &SetKeys, positions: &[usize]) -> bool {
        let mut signatures = Vec::with_capacity(positions.len());
        let mut voter_keys: Vec<&ValidBlsKey> = Vec::with_capacity(positions.len());
        for p in positions {
            let (Some(signature), Some(key)) = (
                self.shares.get(p),
                keys.voter(*p).and_then(|v| v.valid.as_ref()),
            ) else {
                return false;
            };
            signatures.push(*signature);
            voter_keys.push(key);
        }
        bls::aggregate(&signatures)
            .is_some_and(|sum| bls::verify_aggregate(&voter_keys, &self.message, &sum))
    }
}
