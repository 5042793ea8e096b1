//! Persistence of the masternode set: the full set is written under the height after which it
//! applies, only when it changes, in the same atomic batch as the block that changed it.

use super::masternodes::{Masternode, MasternodeSet};
use crate::storage::schema::height_key;
use crate::storage::{Storage, StorageError, TreeId, WriteBatch};
use crate::types::codec::{self, CodecError};

/// Most masternodes a stored set may hold when read back.
const MAX_SET_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SetStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("masternode set stored for height {height} is corrupt: {source}")]
    Corrupt {
        height: u64,
        #[source]
        source: CodecError,
    },
    #[error("no masternode set is stored at or below height {0}")]
    Missing(u64),
}

/// Adds the write of `set` (valid after `set.height()`) to `batch`.
pub fn write(batch: &mut WriteBatch, set: &MasternodeSet) {
    let members: Vec<Masternode> = set.members().cloned().collect();
    batch.put_raw(
        TreeId::Masternodes,
        height_key(set.height()),
        codec::encode(&members),
    );
}

/// The set valid after `height`: the last one written at or below it.
pub fn load_at(storage: &Storage, height: u64) -> Result<MasternodeSet, SetStoreError> {
    let tree = storage.tree(TreeId::Masternodes);
    let found = tree
        .range(..=height_key(height))
        .next_back()
        .transpose()
        .map_err(StorageError::from)?;
    let Some((key, raw)) = found else {
        return Err(SetStoreError::Missing(height));
    };
    let mut hk = [0u8; 8];
    if key.len() == 8 {
        hk.copy_from_slice(&key);
    }
    let at = u64::from_be_bytes(hk);
    let members: Vec<Masternode> =
        codec::decode::<Vec<Masternode>, MAX_SET_BYTES>("masternode set", &raw)
            .map_err(|source| SetStoreError::Corrupt { height: at, source })?;
    // The stored height is when it last changed; it applies unchanged up to `height`.
    Ok(MasternodeSet::new(height, members))
}
