//! Persistence of the BFT safety state, bounded by construction.
//!
//! ```text
//! SafetyState ─► SafetyRecord (hashes, votes: ≤ MAX_VOTE_BYTES)  ─► consensus/bft_safety_v2
//!             └► each distinct block it names (≤ MAX_BLOCK_BYTES) ─► consensus/bft_safety_block/<hash>
//! ```
//! One atomic batch writes the record, the blocks not stored yet, and removes the blocks the
//! state no longer names, so at most three block records exist and each record read back fits
//! its decode limit (and `MAX_RECORD_BYTES`), whatever the size of the blocks.

use super::bft::safety::{MissingSafetyBlock, SafetyRecord};
use super::bft::SafetyState;
use crate::storage::{Storage, StorageError, TreeId, WriteBatch};
use crate::types::{Block, BlockHash, Canonical, CodecError};

/// Key of the safety record in the `consensus` tree. A new key: records of the old layout
/// (whole blocks inline) are not read.
const RECORD_KEY: &[u8] = b"bft_safety_v2";
/// Prefix of the keys of the blocks the record names.
const BLOCK_PREFIX: &[u8] = b"bft_safety_block/";

#[derive(Debug, thiserror::Error)]
pub enum SafetyStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored consensus safety state is corrupt: {0}")]
    Corrupt(#[from] CodecError),
    #[error(transparent)]
    MissingBlock(#[from] MissingSafetyBlock),
}

fn block_key(hash: &BlockHash) -> Vec<u8> {
    let mut key = BLOCK_PREFIX.to_vec();
    key.extend_from_slice(&hash.0);
    key
}

/// Writes `state` durably (flushed) before the caller lets any signature leave.
pub fn persist(storage: &Storage, state: &SafetyState) -> Result<(), SafetyStoreError> {
    // Read as the last commit left them, not through `Storage::tree`: that would wait for sled
    // to apply the last block, and this runs on the consensus owner right after it.
    let (record, blocks) = state.to_record();
    let wanted: Vec<Vec<u8>> = blocks.iter().map(|b| block_key(&b.hash())).collect();
    let mut batch = WriteBatch::new();
    for key in storage.keys_with_prefix(TreeId::Consensus, BLOCK_PREFIX)? {
        if !wanted.contains(&key) {
            batch.remove(TreeId::Consensus, key);
        }
    }
    for (key, block) in wanted.iter().zip(blocks) {
        if !storage.contains(TreeId::Consensus, key)? {
            batch.put_raw(TreeId::Consensus, key, block.to_bytes());
        }
    }
    batch.put_raw(TreeId::Consensus, RECORD_KEY, record.to_bytes());
    storage.commit(batch)?;
    storage.flush()?;
    Ok(())
}

/// The persisted state, if any.
pub fn load(storage: &Storage) -> Result<Option<SafetyState>, SafetyStoreError> {
    let tree = storage.tree(TreeId::Consensus);
    let Some(raw) = tree.get(RECORD_KEY).map_err(StorageError::from)? else {
        return Ok(None);
    };
    let record = SafetyRecord::from_bytes(&raw)?;
    let mut failure: Option<SafetyStoreError> = None;
    let state = SafetyState::from_record(record, |hash| {
        let raw = match tree.get(block_key(hash)) {
            Ok(raw) => raw?,
            Err(e) => {
                failure = Some(StorageError::from(e).into());
                return None;
            }
        };
        match Block::from_bytes(&raw) {
            Ok(block) if block.hash() == *hash => Some(block),
            Ok(_) => None,
            Err(e) => {
                failure = Some(e.into());
                None
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Some(state?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::codec::{MAX_BLOCK_BYTES, MAX_RECORD_BYTES};
    use crate::types::transaction::TX_VERSION;
    use crate::types::{Amount, KeyHash, Network};
    use crate::types::{
        ConsensusVote, Hash32, OutPoint, Proposal, SecretKey, Signature, Transaction, TxInput,
        TxOutput, TxPayload, VoteKind,
    };
    use std::sync::Arc;

    /// A block of about `MAX_BLOCK_BYTES` (its contents need not be valid here).
    fn full_block(height: u64) -> Block {
        let mut block = crate::ledger::build_genesis(&[], height, Hash32::ZERO, Hash32::ZERO);
        block.header.height = height;
        let mut n = 0u32;
        while block.to_bytes().len() + 100_000 < MAX_BLOCK_BYTES {
            let inputs = (0..700)
                .map(|i| TxInput {
                    prev_out: OutPoint::new(Hash32([height as u8; 32]), n * 1000 + i),
                    public_key: crate::types::PublicKey([1; 32]),
                    signature: Signature([2; 64]),
                })
                .collect();
            block
                .transactions
                .push(std::sync::Arc::new(Transaction::new(
                    TX_VERSION,
                    inputs,
                    vec![TxOutput {
                        amount: Amount(1),
                        key_hash: KeyHash([3; 20]),
                    }],
                    TxPayload::Transfer,
                )));
            n += 1;
        }
        block
    }

    fn vote(key: &SecretKey, kind: VoteKind, block: &Block) -> ConsensusVote {
        ConsensusVote::sign(key, Network::Localnet, kind, 5, 2, Some(block.hash()))
    }

    #[test]
    fn three_full_blocks_persist_in_records_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
        let key = SecretKey::from_bytes(&[4; 32]);
        let (a, b, c) = (full_block(1), full_block(2), full_block(3));
        let mut state = SafetyState::new(5);
        state.round = 2;
        state.proposal = Some(Proposal::sign(&key, Network::Localnet, 5, 2, Some(1), a));
        state.prevote = Some(vote(&key, VoteKind::Prevote, &b));
        state.precommit = Some(vote(&key, VoteKind::Precommit, &b));
        state.locked = Some((1, Arc::new(b.clone())));
        state.valid = Some((2, Arc::new(c)));
        persist(&storage, &state).unwrap();

        // Every record fits what storage reads back, however full the blocks.
        let tree = storage.tree(TreeId::Consensus);
        let mut blocks = 0;
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            assert!(v.len() <= MAX_RECORD_BYTES, "record of {} bytes", v.len());
            blocks += usize::from(k.starts_with(BLOCK_PREFIX));
        }
        assert_eq!(blocks, 3);
        assert_eq!(load(&storage).unwrap(), Some(state.clone()));

        // The next height keeps one block: the others are gone.
        let mut next = SafetyState::new(6);
        next.locked = Some((0, Arc::new(b)));
        persist(&storage, &next).unwrap();
        // `Storage::tree` again: it waits for sled to hold the commit.
        let tree = storage.tree(TreeId::Consensus);
        assert_eq!(tree.scan_prefix(BLOCK_PREFIX).count(), 1);
        assert_eq!(load(&storage).unwrap(), Some(next));
    }

    #[test]
    fn a_record_naming_a_missing_block_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
        let mut state = SafetyState::new(5);
        state.locked = Some((
            0,
            Arc::new(crate::ledger::build_genesis(
                &[],
                9,
                Hash32::ZERO,
                Hash32::ZERO,
            )),
        ));
        persist(&storage, &state).unwrap();
        let keys: Vec<_> = storage
            .tree(TreeId::Consensus)
            .scan_prefix(BLOCK_PREFIX)
            .keys()
            .map(Result::unwrap)
            .collect();
        for k in keys {
            storage.tree(TreeId::Consensus).remove(k).unwrap();
        }
        assert!(matches!(
            load(&storage),
            Err(SafetyStoreError::MissingBlock(_))
        ));
    }
}
