//! Checking a commit certificate: more than two thirds of the set's weight precommitted to the
//! block at its height and round, each signature valid, each validator counted once.

use super::MasternodeSet;
use crate::types::signature::{verify_batch, VerifyItem};
use crate::types::{BlockHash, CommitCertificate, Network, VoteKind};
use std::collections::BTreeSet;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("certificate is for block {got}, expected {expected}")]
    WrongBlock { expected: BlockHash, got: BlockHash },
    #[error("certificate at height {height}: vote {index} is not a precommit for the block at round {round}")]
    ForeignVote {
        height: u64,
        round: u32,
        index: usize,
    },
    #[error("certificate at height {height}: validator of vote {index} is not in the set or votes twice")]
    BadValidator { height: u64, index: usize },
    #[error("certificate at height {height}: signature of vote {index} is invalid")]
    BadSignature { height: u64, index: usize },
    #[error(
        "certificate at height {height}: weight {weight} is not more than two thirds of {total}"
    )]
    NoQuorum {
        height: u64,
        weight: u64,
        total: u64,
    },
}

/// Verifies `cert` for block `hash` at `height` against `set` (the set that signs `height`).
pub fn verify_commit(
    cert: &CommitCertificate,
    set: &MasternodeSet,
    network: Network,
    height: u64,
    hash: &BlockHash,
) -> Result<(), CertificateError> {
    if cert.height != height {
        return Err(CertificateError::WrongHeight {
            expected: height,
            got: cert.height,
        });
    }
    if cert.block_hash != *hash {
        return Err(CertificateError::WrongBlock {
            expected: *hash,
            got: cert.block_hash,
        });
    }
    let mut seen = BTreeSet::new();
    let mut weight = 0u64;
    for (index, v) in cert.precommits.iter().enumerate() {
        if v.kind != VoteKind::Precommit
            || v.height != height
            || v.round != cert.round
            || v.block_hash != Some(*hash)
        {
            return Err(CertificateError::ForeignVote {
                height,
                round: cert.round,
                index,
            });
        }
        if !set.contains_voter(&v.validator) || !seen.insert(v.validator) {
            return Err(CertificateError::BadValidator { height, index });
        }
        weight += set.weight_of(&v.validator);
    }
    if !set.has_quorum(weight) {
        return Err(CertificateError::NoQuorum {
            height,
            weight,
            total: set.total_weight(),
        });
    }
    let messages: Vec<[u8; 36]> = cert
        .precommits
        .iter()
        .map(|v| v.signing_message(network))
        .collect();
    let items: Vec<VerifyItem> = cert
        .precommits
        .iter()
        .zip(&messages)
        .map(|(v, m)| VerifyItem {
            public_key: &v.validator,
            message: m,
            signature: &v.signature,
        })
        .collect();
    if let Some(index) = verify_batch(&items).iter().position(|ok| !ok) {
        return Err(CertificateError::BadSignature { height, index });
    }
    Ok(())
}
