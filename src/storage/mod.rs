//! The sled database: typed reads, atomic multi-tree batches, and the flush point.
//!
//! Storage knows record layouts, never consensus rules. All methods block on disk I/O, so async
//! code calls them through `spawn_blocking`. Every record read back is decoded strictly; a
//! record that fails to decode is reported as corrupt with its tree and key, never unwrapped.
//!
//! ```text
//! stage(batch) ──► staged writes (memory) ─┐
//! commit(batch) ───────────────────────────┴─► one sled batch/transaction ─► flush: durable
//! ```
//!
//! **Staged writes.** Layer 1 writes a little for every lock and every finalization; as one
//! sled transaction each, those were the largest share of a busy node's CPU. So the ledger
//! *stages* them and the consensus owner commits what it staged once per burst of work
//! ([`commit_staged`](Storage::commit_staged)). Every commit and every flush lands the staged
//! writes first, in order and in the same atomic batch, so nothing can overtake them, and a
//! flush (the barrier before a vote leaves) always covers them: persist-before-promise holds
//! as before. Staged writes are not yet visible to readers of the trees; the ledger keeps in
//! memory what it reads back itself (the UTXO set and the final transactions), and the owner
//! commits before it publishes a burst, so a reader that saw an event finds its records.

pub mod batch;
pub mod cache;
mod durability;
pub mod schema;
mod staging;

pub use batch::WriteBatch;
pub use durability::BarrierError;
pub use schema::{TreeId, SCHEMA_VERSION};

use crate::types::{
    Block, BlockHash, Canonical, CommitCertificate, Hash32, KeyHash, OutPoint, TxLocation, Txid,
    UtxoEntry, UtxoState,
};
use bincode::{Decode, Encode};
use schema::{height_key, meta_key};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "database at {path} is in use by another process (is another timed running on this data directory?)"
    )]
    Locked { path: PathBuf },
    #[error("corrupt record in tree {tree}, key {key}: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "database schema version {found} was written by a newer timed (this one supports {supported}); upgrade timed"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error(
        "database schema version {found} is older than {supported} and cannot be upgraded in place; resync into a new data directory"
    )]
    OlderSchema { found: u32, supported: u32 },
    #[error(transparent)]
    Barrier(#[from] BarrierError),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// The committed tip of the chain, written in the same batch as the block it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ChainTip {
    pub height: u64,
    pub hash: BlockHash,
    pub timestamp_ms: u64,
    /// The UTXO-set accumulator after this block (see `ledger::commitment`).
    pub utxo_accumulator: [u8; 32],
}

crate::canonical!(ChainTip, "chain tip", 256);

/// Handle to the open database. Cheap to clone; all clones share one sled instance.
#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    durability: Arc<durability::Durability>,
    staged: Arc<staging::Staged>,
}

impl Storage {
    /// Opens (or creates) the database in `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Storage> {
        Self::open_with(path, cache_bytes, false)
    }

    /// Opens like [`open`](Self::open), journaling every write until the next
    /// [`flush`](Self::flush) so that [`lose_unflushed`](Self::lose_unflushed) can take the
    /// database back to what a power cut would leave. For simulations: the journal costs a
    /// read per write.
    pub fn open_simulating_power_loss(path: &Path, cache_bytes: u64) -> Result<Storage> {
        Self::open_with(path, cache_bytes, true)
    }

    fn open_with(path: &Path, cache_bytes: u64, journal: bool) -> Result<Storage> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StorageError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                sled::Error::Io(ref io) if io.to_string().contains("lock") => {
                    StorageError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                other => StorageError::Sled(other),
            })?;
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let durability = Arc::new(durability::Durability::open(path, journal)?);
        let staged = Arc::new(staging::Staged::new(trees.clone(), Arc::clone(&durability)));
        let storage = Storage {
            db,
            trees,
            durability,
            staged,
        };
        storage.check_schema()?;
        Ok(storage)
    }

    /// Opens with the cache sized for this machine.
    pub fn open_default(path: &Path) -> Result<Storage> {
        Self::open(path, cache::default_cache_bytes())
    }

    fn check_schema(&self) -> Result<()> {
        let meta = self.tree(TreeId::Meta);
        match meta.get(meta_key::SCHEMA_VERSION)? {
            None => {
                let empty = self.trees.iter().all(|t| t.is_empty());
                if !empty {
                    return Err(StorageError::Corrupt {
                        tree: TreeId::Meta.name(),
                        key: "schema_version".into(),
                        reason: "missing from a database that holds records".into(),
                    });
                }
                meta.insert(meta_key::SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                self.flush()?;
                Ok(())
            }
            Some(raw) => {
                let bytes: [u8; 4] =
                    raw.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                        tree: TreeId::Meta.name(),
                        key: "schema_version".into(),
                        reason: format!("expected 4 bytes, found {}", raw.len()),
                    })?;
                let found = u32::from_be_bytes(bytes);
                match found.cmp(&SCHEMA_VERSION) {
                    std::cmp::Ordering::Equal => Ok(()),
                    std::cmp::Ordering::Greater => Err(StorageError::NewerSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                    std::cmp::Ordering::Less => Err(StorageError::OlderSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                }
            }
        }
    }

    pub fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id.index()]
    }

    /// Reads and strictly decodes one record.
    pub fn get<T: Canonical>(&self, tree: TreeId, key: &[u8]) -> Result<Option<T>> {
        match self.tree(tree).get(key)? {
            None => Ok(None),
            Some(raw) => decode_record(tree, key, &raw).map(Some),
        }
    }

    /// Applies every write of `batch` atomically, after the staged writes and in the same
    /// batch: after a crash the database holds all of them or none. Not durable until the
    /// next [`flush`](Self::flush).
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        self.staged.commit(batch)
    }

    /// Holds `batch` back, to be committed with the next commit or flush (see the module
    /// docs). Its writes are not visible to reads until then.
    pub fn stage(&self, batch: WriteBatch) {
        self.staged.stage(batch);
    }

    /// Commits the staged writes, if any, as one atomic batch.
    pub fn commit_staged(&self) -> Result<()> {
        self.staged.commit(WriteBatch::new())
    }

    /// Makes everything committed so far durable, through the device's cache (see
    /// `durability`). Called before a promise leaves the node (a lock voted on, a vote cast)
    /// and after each block.
    pub fn flush(&self) -> Result<()> {
        self.commit_staged()?;
        self.db.flush()?;
        self.durability.barrier()?;
        Ok(())
    }

    /// Takes the database back to its state at the last [`flush`](Self::flush), as a power cut
    /// would, and returns how many writes were lost. Staged writes are always lost; committed
    /// ones only in a database opened with
    /// [`open_simulating_power_loss`](Self::open_simulating_power_loss), which journals them.
    pub fn lose_unflushed(&self) -> Result<usize> {
        let staged = self.staged.discard();
        let undo = self.durability.take_unflushed();
        let lost = staged + undo.len();
        for (tree, key, old) in undo.into_iter().rev() {
            match old {
                Some(value) => self.tree(tree).insert(key, value)?,
                None => self.tree(tree).remove(key)?,
            };
        }
        self.db.flush()?;
        Ok(lost)
    }

    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    pub fn was_recovered(&self) -> bool {
        self.db.was_recovered()
    }

    // ---- typed reads -------------------------------------------------------------------

    pub fn tip(&self) -> Result<Option<ChainTip>> {
        self.get(TreeId::Meta, meta_key::TIP)
    }

    pub fn block_hash_at(&self, height: u64) -> Result<Option<BlockHash>> {
        match self.tree(TreeId::BlockHashes).get(height_key(height))? {
            None => Ok(None),
            Some(raw) => {
                let bytes: [u8; 32] =
                    raw.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                        tree: TreeId::BlockHashes.name(),
                        key: height.to_string(),
                        reason: format!("expected a 32-byte hash, found {} bytes", raw.len()),
                    })?;
                Ok(Some(Hash32(bytes)))
            }
        }
    }

    pub fn block_by_hash(&self, hash: &BlockHash) -> Result<Option<Block>> {
        self.get(TreeId::Blocks, &hash.0)
    }

    pub fn block_at(&self, height: u64) -> Result<Option<Block>> {
        match self.block_hash_at(height)? {
            None => Ok(None),
            Some(hash) => self.block_by_hash(&hash),
        }
    }

    pub fn commit_at(&self, height: u64) -> Result<Option<CommitCertificate>> {
        self.get(TreeId::Commits, &height_key(height))
    }

    pub fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>> {
        self.get(TreeId::TxIndex, &txid.0)
    }

    pub fn utxo(&self, outpoint: &OutPoint) -> Result<Option<UtxoEntry>> {
        self.get(TreeId::Utxos, &outpoint.to_key())
    }

    pub fn utxo_state(&self, outpoint: &OutPoint) -> Result<UtxoState> {
        Ok(self
            .get(TreeId::UtxoStates, &outpoint.to_key())?
            .unwrap_or(UtxoState::Unspent))
    }

    /// Every output in the set with its state, for loading the ledger at start.
    pub fn all_utxos(&self) -> Result<Vec<(OutPoint, UtxoEntry, UtxoState)>> {
        let mut out = Vec::new();
        for item in self.tree(TreeId::Utxos).iter() {
            let (key, raw) = item?;
            let outpoint = OutPoint::from_key(&key).ok_or_else(|| StorageError::Corrupt {
                tree: TreeId::Utxos.name(),
                key: hex::encode(&key),
                reason: "key is not a 36-byte outpoint".into(),
            })?;
            let entry: UtxoEntry = decode_record(TreeId::Utxos, &key, &raw)?;
            let state = self.utxo_state(&outpoint)?;
            out.push((outpoint, entry, state));
        }
        Ok(out)
    }

    /// The outpoints the address index lists for `key_hash`.
    pub fn address_outpoints(&self, key_hash: &KeyHash) -> Result<Vec<OutPoint>> {
        let mut out = Vec::new();
        for item in self.tree(TreeId::AddressIndex).scan_prefix(key_hash.0) {
            let (key, _) = item?;
            let op = OutPoint::from_key(&key[20..]).ok_or_else(|| StorageError::Corrupt {
                tree: TreeId::AddressIndex.name(),
                key: hex::encode(&key),
                reason: "key is not a key hash followed by an outpoint".into(),
            })?;
            out.push(op);
        }
        Ok(out)
    }
}

fn decode_record<T: Canonical>(tree: TreeId, key: &[u8], raw: &[u8]) -> Result<T> {
    T::from_bytes(raw).map_err(|e| StorageError::Corrupt {
        tree: tree.name(),
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            s.tree(TreeId::Meta)
                .insert(
                    meta_key::SCHEMA_VERSION,
                    &(SCHEMA_VERSION + 1).to_be_bytes(),
                )
                .unwrap();
            s.flush().unwrap();
        }
        let err = Storage::open(dir.path(), 1 << 26).err().unwrap();
        assert!(
            matches!(err, StorageError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer timed"));
    }

    #[test]
    fn corrupt_record_names_tree_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let op = OutPoint::new(Hash32([3; 32]), 7);
        s.tree(TreeId::Utxos)
            .insert(op.to_key(), &[0xff, 0x01][..])
            .unwrap();
        let err = s.utxo(&op).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("utxos") && msg.contains(&hex::encode(op.to_key())),
            "{msg}"
        );
    }

    #[test]
    fn a_power_cut_loses_exactly_what_no_barrier_covered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"kept", vec![1]);
        b.put_raw(TreeId::Peers, b"changed", vec![1]);
        b.put_raw(TreeId::Peers, b"removed", vec![1]);
        s.commit(b).unwrap();
        s.flush().unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"changed", vec![2]);
        b.put_raw(TreeId::Peers, b"changed", vec![3]);
        b.remove(TreeId::Peers, b"removed");
        b.put_raw(TreeId::Masternodes, b"new", vec![2]);
        s.commit(b).unwrap();
        assert_eq!(s.lose_unflushed().unwrap(), 4);
        let get = |t, k: &[u8]| s.tree(t).get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(get(TreeId::Peers, b"kept"), Some(vec![1]));
        assert_eq!(get(TreeId::Peers, b"changed"), Some(vec![1]));
        assert_eq!(get(TreeId::Peers, b"removed"), Some(vec![1]));
        assert_eq!(get(TreeId::Masternodes, b"new"), None);
        assert_eq!(s.lose_unflushed().unwrap(), 0, "nothing since the cut");
    }

    #[test]
    fn the_barrier_covers_values_sled_keeps_as_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Blocks, b"big", vec![7; 4 << 20]);
        s.commit(b).unwrap();
        s.flush().unwrap();
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs >= 1, "a 4 MiB value is a blob file");
        assert_eq!(
            s.durability.synced_blob_count(),
            blobs,
            "every blob file synced"
        );
        // A plain database loses nothing on a simulated cut.
        assert_eq!(s.lose_unflushed().unwrap(), 0);
    }

    #[test]
    fn staged_writes_land_first_with_the_next_commit_or_flush() {
        let dir = tempfile::tempdir().unwrap();
        let get = |s: &Storage, t, k: &[u8]| s.tree(t).get(k).unwrap().map(|v| v.to_vec());
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Peers, b"k", vec![1]);
            b.put_raw(TreeId::Masternodes, b"m", vec![1]);
            s.stage(b);
            assert_eq!(
                get(&s, TreeId::Peers, b"k"),
                None,
                "not visible while staged"
            );
            // A later commit lands after the staged writes: its value wins.
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Peers, b"k", vec![2]);
            s.commit(b).unwrap();
            assert_eq!(get(&s, TreeId::Peers, b"k"), Some(vec![2]));
            assert_eq!(get(&s, TreeId::Masternodes, b"m"), Some(vec![1]));
            // A flush commits what is staged.
            let mut b = WriteBatch::new();
            b.remove(TreeId::Masternodes, b"m");
            s.stage(b);
            s.flush().unwrap();
            assert_eq!(get(&s, TreeId::Masternodes, b"m"), None);
            // So does closing the database.
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Peers, b"at-close", vec![3]);
            s.stage(b);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(get(&s, TreeId::Peers, b"at-close"), Some(vec![3]));
    }

    #[test]
    fn a_power_cut_loses_what_was_staged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"staged", vec![1]);
        s.stage(b);
        assert_eq!(s.lose_unflushed().unwrap(), 1);
        s.commit_staged().unwrap();
        assert_eq!(s.tree(TreeId::Peers).get(b"staged").unwrap(), None);
    }

    #[test]
    fn multi_tree_batch_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"a", vec![1]);
        b.put_raw(TreeId::Masternodes, b"b", vec![2]);
        b.remove(TreeId::Peers, b"zz");
        s.commit(b).unwrap();
        assert_eq!(
            s.tree(TreeId::Peers).get(b"a").unwrap().unwrap().as_ref(),
            &[1]
        );
        assert_eq!(
            s.tree(TreeId::Masternodes)
                .get(b"b")
                .unwrap()
                .unwrap()
                .as_ref(),
            &[2]
        );
    }
}
