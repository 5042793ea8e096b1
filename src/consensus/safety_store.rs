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
    let tree = storage.tree(TreeId::Consensus);
    let (record, blocks) = state.to_record();
    let wanted: Vec<Vec<u8>> = blocks.iter().map(|b| block_key(&b.hash())).collect();
    let mut batch = WriteBatch::new();
    for item in tree.scan_prefix(BLOCK_PREFIX).keys() {
        let key = item.map_err(StorageError::from)?;
        if !wanted.iter().any(|w| w.as_slice() == key.as_ref()) {
            batch.remove(TreeId::Consensus, key);
        }
    }
    for (key, block) in wanted.iter().zip(blocks) {
        if !tree.contains_key(key).map_err(StorageError::from)? {
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
