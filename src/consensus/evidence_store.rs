//! Persistence of equivocation evidence in the `consensus` tree.
//!
//! ```text
//! key:   "equivocation/" ‖ offender key (32) ‖ evidence id (32)
//! value: the evidence's canonical encoding
//! ```
//! Keys group an offender's evidence together, so "is it known", "how many against this key"
//! and "one piece per offender" are prefix scans. Only verified evidence against a voting
//! member is written (the driver checks first), at most `MAX_PER_OFFENDER` pieces per key: a
//! member that equivocates over and over cannot fill the disk, and one piece is all a block
//! needs to exclude it.

use crate::storage::{Storage, StorageError, TreeId, WriteBatch};
use crate::types::{Canonical, Evidence, Hash32, PublicKey};

/// Prefix of the evidence records.
pub const PREFIX: &[u8] = b"equivocation/";
/// Most pieces of evidence kept per offender.
pub const MAX_PER_OFFENDER: usize = 4;
/// Most records `list` returns (RPC): every offender's first pieces fit.
pub const MAX_LISTED: usize = 4_096;

fn offender_prefix(offender: &PublicKey) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&offender.0);
    k
}

fn key(ev: &Evidence, id: &Hash32) -> Vec<u8> {
    let mut k = offender_prefix(&ev.offender());
    k.extend_from_slice(&id.0);
    k
}

/// What [`store`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A new record.
    New,
    /// Already held (same id).
    Known,
    /// The offender already has `MAX_PER_OFFENDER` records; this one was not kept.
    Full,
}

/// Writes verified evidence (durably, as a commit) unless it is known or its offender's quota
/// is full. Reads go through the storage's view of the last commit, not a sled scan: this
/// runs on the consensus owner, which must not wait for sled to apply a block.
pub fn store(storage: &Storage, ev: &Evidence) -> Result<Stored, StorageError> {
    let id = ev.id();
    let k = key(ev, &id);
    if storage.contains(TreeId::Consensus, &k)? {
        return Ok(Stored::Known);
    }
    let held = storage
        .keys_with_prefix(TreeId::Consensus, &offender_prefix(&ev.offender()))?
        .len();
    if held >= MAX_PER_OFFENDER {
        return Ok(Stored::Full);
    }
    let mut batch = WriteBatch::new();
    batch.put_raw(TreeId::Consensus, k, ev.to_bytes());
    storage.commit(batch)?;
    Ok(Stored::New)
}

/// Whether this exact piece of evidence is held.
pub fn contains(storage: &Storage, ev: &Evidence) -> Result<bool, StorageError> {
    storage.contains(TreeId::Consensus, &key(ev, &ev.id()))
}

/// Up to `limit` records in key order (offender, then id), one per offender when
/// `one_per_offender`; records that no longer decode are skipped with a warning.
pub fn list(
    storage: &Storage,
    limit: usize,
    one_per_offender: bool,
    mut keep: impl FnMut(&Evidence) -> bool,
) -> Result<Vec<Evidence>, StorageError> {
    let mut out: Vec<Evidence> = Vec::new();
    for item in storage.tree(TreeId::Consensus).scan_prefix(PREFIX) {
        if out.len() >= limit {
            break;
        }
        let (k, raw) = item?;
        let ev = match Evidence::from_bytes(&raw) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(key = %hex::encode(&k), error = %e, "skipping a damaged evidence record");
                continue;
            }
        };
        if one_per_offender && out.last().is_some_and(|l| l.offender() == ev.offender()) {
            continue;
        }
        if keep(&ev) {
            out.push(ev);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConsensusVote, Network, SecretKey, VoteKind};

    fn evidence(k: &SecretKey, round: u32) -> Evidence {
        let n = Network::Localnet;
        Evidence::layer2(
            ConsensusVote::sign(k, n, VoteKind::Prevote, 3, round, None),
            ConsensusVote::sign(k, n, VoteKind::Prevote, 3, round, Some(Hash32([1; 32]))),
        )
    }

    #[test]
    fn deduplicated_and_bounded_per_offender() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db"), 1 << 20).unwrap();
        let k = SecretKey::from_bytes(&[1; 32]);
        assert_eq!(store(&storage, &evidence(&k, 0)).unwrap(), Stored::New);
        assert_eq!(store(&storage, &evidence(&k, 0)).unwrap(), Stored::Known);
        for r in 1..MAX_PER_OFFENDER as u32 {
            assert_eq!(store(&storage, &evidence(&k, r)).unwrap(), Stored::New);
        }
        assert_eq!(store(&storage, &evidence(&k, 99)).unwrap(), Stored::Full);
        let other = SecretKey::from_bytes(&[2; 32]);
        assert_eq!(store(&storage, &evidence(&other, 0)).unwrap(), Stored::New);
        assert!(contains(&storage, &evidence(&other, 0)).unwrap());
        assert_eq!(
            list(&storage, 100, false, |_| true).unwrap().len(),
            MAX_PER_OFFENDER + 1
        );
        let firsts = list(&storage, 100, true, |_| true).unwrap();
        assert_eq!(firsts.len(), 2);
        assert_ne!(firsts[0].offender(), firsts[1].offender());
    }
}
