//! The database: sled for the chain and the confirmed state, an append-only log for layer 1's
//! short-lived records; typed reads, atomic batches, and the flush point.
//!
//! Storage knows record layouts, never consensus rules. All methods block on disk I/O, so async
//! code calls them through `spawn_blocking`. Every record read back is decoded strictly; a
//! record that fails to decode is reported as corrupt with its tree and key, never unwrapped.
//!
//! ```text
//! append(batch) ─► layer-1 log: tables in memory + appends ───────────────┐
//! commit(batch) ─► one log frame: its layer-1 writes + the redo of its ───┼─► flush: log synced
//!                  sled writes, synced; then sled applies them (no txn)   │
//! checkpoint()  ─► sled flushed + barrier ─► log marker drops the redo ───┘  (now and then)
//! ```
//!
//! **Two stores.** `utxo_states`, `final_txs` and `pending_txs` change with every lock and
//! every finalization and empty out one block later; they live in memory and in the layer-1
//! log (`layer1-v2.log`, see `layer1_log`), so a transaction costs sled nothing until its
//! block. `tx_index` and `address_txs` only grow: their recent tail lives in the same log, the
//! rest in sorted run files beside it (see `indexes`), read through [`Storage::get`] and
//! [`Storage::index_scan`]; so a block costs sled only its outputs and its own records. The
//! other trees are sled's.
//!
//! **The log is the write-ahead log.** A commit is durable once its log frame is synced: the
//! frame carries its sled writes too (a *redo* group), and sled applies them afterwards as
//! plain batches, without a sled transaction and without a flush on the committing thread
//! (a sled transaction and flush were most of a block's commit time). A [`checkpoint`]
//! (sled's flush and the barrier, then a log marker) lets the log forget what sled holds; at
//! open, the groups no checkpoint covered are applied again, in order, before anything reads.
//! A commit too big for one frame (a snapshot's set) falls back to a sled transaction,
//! flushed at once. The layer-1 part of a commit is durable no later than its sled part, as
//! before: a writer that removes layer-1 records because of what its sled part does (a
//! block, a snapshot) still removes them in a second batch (see `ledger::apply` and
//! `ledger::snapshot`), which the ledger reconciles at open if a crash comes between.
//!
//! [`checkpoint`]: Storage::checkpoint

mod applier;
pub mod batch;
pub mod block_files;
pub mod cache;
pub mod datadir_lock;
mod durability;
mod indexes;
mod layer1_log;
mod runs;
pub mod schema;

pub use batch::WriteBatch;
pub use block_files::BlockFileError;
pub use datadir_lock::{DataDirLock, LockError, LOCK_FILE};
pub use durability::BarrierError;
pub use indexes::IndexError;
pub use layer1_log::LogError;
pub use schema::{TreeId, SCHEMA_VERSION};

use crate::types::utxo_commitment::{UtxoCommitment, STATE_BYTES};
use crate::types::{
    Block, BlockHash, Canonical, CommitCertificate, Hash32, OutPoint, TxLocation, Txid, UtxoEntry,
    UtxoState,
};
use bincode::{Decode, Encode};
use schema::{height_key, meta_key};
use sled::Transactional;
use std::collections::BTreeMap;
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
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    BlockFile(#[from] BlockFileError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Apply(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// The committed tip of the chain, written in the same batch as the block it names.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ChainTip {
    pub height: u64,
    pub hash: BlockHash,
    pub timestamp_ms: u64,
    /// The UTXO set's LtHash state after this block (see `types::utxo_commitment`); the
    /// header carries its digest.
    pub utxo_state: Box<[u8; STATE_BYTES]>,
}

crate::canonical!(ChainTip, "chain tip", 4096);

/// The chain tip as schema 7 and earlier stored it: a 32-byte Ristretto accumulator, read only
/// by the upgrade to schema 8.
#[derive(Encode, Decode)]
struct TipV7 {
    height: u64,
    hash: BlockHash,
    timestamp_ms: u64,
    utxo_accumulator: [u8; 32],
}

crate::canonical!(TipV7, "schema-7 chain tip", 256);

/// Handle to the open database. Cheap to clone; all clones share one sled instance.
#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    durability: Arc<durability::Durability>,
    log: Arc<layer1_log::Layer1Log>,
    /// Block bodies; the `blocks` tree holds their locations (see `block_files`).
    blocks: Arc<block_files::BlockFiles>,
    /// Where `tx_index` and `address_txs` keep all but their recent tail (see `indexes`);
    /// `None` in a simulation's journaled database, which keeps them whole in sled.
    indexes: Option<Arc<indexes::Indexes>>,
    /// One commit at a time, so commits land in the order they were made.
    writer: Arc<std::sync::Mutex<()>>,
    /// Applies commits' sled writes off the committing thread; `None` when commits apply
    /// them themselves (a simulation's journaled database, or if the thread could not start).
    applier: Option<Arc<applier::Applier>>,
    /// The newest redo group sled has applied, when commits apply it themselves.
    applied: Arc<std::sync::atomic::AtomicU64>,
    /// sled holds writes neither a redo group nor a flush covers (bulk loads): the next
    /// `flush` flushes sled too.
    unlogged: Arc<std::sync::atomic::AtomicBool>,
    /// Someone else (the node's checkpoint task) checkpoints; otherwise commits do, once the
    /// redo backlog is big (see [`Storage::checkpoint_due`]).
    background_checkpoints: Arc<std::sync::atomic::AtomicBool>,
    /// One checkpoint at a time.
    checkpointing: Arc<std::sync::Mutex<()>>,
}

/// How long a reopen waits for sled's file lock (see `Storage::open_with`): 10 s, generous
/// for a loaded machine.
const LOCK_RETRIES: u32 = 500;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Redo a commit leaves for a checkpoint: past either bound, one is due.
const CHECKPOINT_GROUPS: usize = 64;
const CHECKPOINT_BYTES: u64 = 4 << 20;

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
        let open = || {
            sled::Config::new()
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
                })
        };
        // sled lets go of its file lock only when the write jobs its thread pool still runs
        // for a database this process just closed have finished: a reopen right after a close
        // (a restart in one process, a test) waits that long, then gives up. Another process's
        // lock is caught earlier by the data directory's own lock.
        let mut attempts = 0;
        let db = loop {
            match open() {
                Err(StorageError::Locked { .. }) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                other => break other?,
            }
        };
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let durability = Arc::new(durability::Durability::open(path, journal)?);
        let log = Arc::new(layer1_log::Layer1Log::open(path)?);
        let blocks = Arc::new(block_files::BlockFiles::open(path)?);
        // A journaled database (a simulation) applies in the committer's thread, so a seeded
        // run does the same thing every time.
        let applier = if journal {
            None
        } else {
            let handles = trees.clone();
            let apply = move |batch: &WriteBatch| apply_plain(&handles, batch);
            match applier::Applier::start(Box::new(apply)) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the sled-apply thread; commits apply their sled writes themselves");
                    None
                }
            }
        };
        let mut storage = Storage {
            db,
            trees,
            durability,
            log,
            blocks,
            indexes: None,
            writer: Arc::new(std::sync::Mutex::new(())),
            applier,
            applied: Default::default(),
            unlogged: Default::default(),
            background_checkpoints: Default::default(),
            checkpointing: Default::default(),
        };
        storage.check_schema()?;
        storage.redo_pending()?;
        // Only now: the files are this schema's, and the redo applied may have written the
        // tails an older schema kept in sled, which the indexes take into their files.
        if !journal {
            let indexes = indexes::Indexes::open(path, &storage.trees, Arc::clone(&storage.log))?;
            storage.indexes = Some(Arc::new(indexes));
        }
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
                self.db.flush()?;
                self.durability.barrier()?;
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
                    // Left non-empty by an upgrade from 4 cut short: emptied now.
                    std::cmp::Ordering::Equal if !self.tree(TreeId::AddressIndex).is_empty() => {
                        self.empty_retired_address_index()
                    }
                    std::cmp::Ordering::Equal => Ok(()),
                    std::cmp::Ordering::Greater => Err(StorageError::NewerSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                    // Each step leaves the next version, then the next check takes it on.
                    std::cmp::Ordering::Less if found == 1 => {
                        self.migrate_from_1()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 2 => {
                        self.migrate_from_2()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 3 => {
                        self.migrate_from_3()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 4 => {
                        if meta.contains_key(meta_key::MOVING_BLOCK_BODIES)? {
                            self.move_block_bodies()?;
                        }
                        self.migrate_from_4()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 5 => {
                        self.migrate_from_5()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 6 => {
                        self.migrate_from_6()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 7 => {
                        self.migrate_from_7()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less => Err(StorageError::OlderSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                }
            }
        }
    }

    /// Schema 1 kept the layer-1 trees in sled: their records move into the log (durably,
    /// before sled forgets them; a crash in between only repeats the move), and a final
    /// transaction's record gains its history order, taken as "the next block" (the time it
    /// became final was not kept).
    /// A schema-1 final record (the transaction alone) with its history order: the one
    /// schema 1 gave its history record at finality, found under its first output's owner,
    /// so the record its block writes is the same one and the history lists it once.
    fn v1_final_record(&self, key: &[u8], tx: &[u8], next_height: u64) -> Result<Vec<u8>> {
        const HISTORY_KEY_LEN: usize = 20 + schema::FINAL_ORDER_LEN + 32;
        let owner = crate::types::Transaction::from_bytes(tx)
            .ok()
            .and_then(|t| t.outputs.first().map(|o| o.key_hash));
        if let Some(owner) = owner {
            for item in self.tree(TreeId::AddressTxs).scan_prefix(owner.0) {
                let (k, _) = item?;
                if k.len() == HISTORY_KEY_LEN && k[20 + schema::FINAL_ORDER_LEN..] == *key {
                    let mut v = k[20..20 + schema::FINAL_ORDER_LEN].to_vec();
                    v.extend_from_slice(tx);
                    return Ok(v);
                }
            }
        }
        Ok(schema::final_record(next_height, 0, 0, tx))
    }

    fn migrate_from_1(&self) -> Result<()> {
        let next_height = self.tip()?.map_or(0, |t| t.height + 1);
        let mut moved = Vec::new();
        let mut batch = WriteBatch::new();
        // Schema 1's layer-1 trees (the index tails joined the log later, from sled's trees).
        for tree in [TreeId::UtxoStates, TreeId::FinalTxs, TreeId::PendingTxs] {
            for item in self.tree(tree).iter() {
                let (key, value) = item?;
                let value = if tree == TreeId::FinalTxs {
                    self.v1_final_record(&key, &value, next_height)?
                } else {
                    value.to_vec()
                };
                moved.push((tree, key.to_vec(), value));
                batch.remove(tree, key);
            }
        }
        // Schema 1 kept the outputs of final transactions in sled too; now memory rebuilds
        // them from `final_txs`.
        for item in self.tree(TreeId::Utxos).iter() {
            let (key, raw) = item?;
            let entry: UtxoEntry = decode_record(TreeId::Utxos, &key, &raw)?;
            if let (None, Some(op)) = (entry.height, OutPoint::from_key(&key)) {
                batch.remove(TreeId::Utxos, &key);
                batch.remove(
                    TreeId::AddressIndex,
                    schema::address_key(&entry.output.key_hash, &op),
                );
            }
        }
        let ops: Vec<layer1_log::Op<'_>> = moved
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), Some(v.as_slice())))
            .collect();
        self.log.append(&ops)?;
        self.log.sync()?;
        let count = moved.len();
        let mut sled_part = batch;
        sled_part.put_raw(
            TreeId::Meta,
            meta_key::SCHEMA_VERSION,
            2u32.to_be_bytes().to_vec(),
        );
        self.write_sled(&sled_part)?;
        self.flush()?;
        tracing::info!(
            records = count,
            "database upgraded from schema 1: layer-1 records moved to the layer-1 log"
        );
        Ok(())
    }

    /// Schema 3 keeps the same records; its layer-1 log also carries sled's redo, which a
    /// schema-2 binary would take for damage. The new number makes such a binary refuse the
    /// database instead.
    fn migrate_from_2(&self) -> Result<()> {
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &3u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 2 (the layer-1 log now also carries sled's redo)"
        );
        Ok(())
    }

    /// Schema 4 keeps block bodies in the block files: the redo a schema-3 node left is
    /// applied first (its `blocks` writes are bodies), then the database is marked schema 4
    /// *and* "moving" before the first body moves, so a binary that reads bodies from sled
    /// refuses it from then on; the move itself resumes at the next open if cut short.
    fn migrate_from_3(&self) -> Result<()> {
        self.redo_pending()?;
        let mut marks = sled::Batch::default();
        marks.insert(meta_key::SCHEMA_VERSION, &4u32.to_be_bytes());
        marks.insert(meta_key::MOVING_BLOCK_BODIES, &[]);
        self.tree(TreeId::Meta).apply_batch(marks)?;
        self.db.flush()?;
        self.durability.barrier()?;
        self.move_block_bodies()
    }

    /// Schema 5 builds the address index in memory: the redo a schema-4 node left is applied
    /// first (it may write the index), then the database is marked schema 5 *before* the
    /// stored index is emptied, so a schema-4 binary never opens a half-emptied index (it
    /// refuses the newer schema); an emptying cut short is finished at the next open.
    fn migrate_from_4(&self) -> Result<()> {
        self.redo_pending()?;
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &5u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        self.empty_retired_address_index()
    }

    /// Schema 6 keeps most of `tx_index` and `address_txs` in run files beside sled (see
    /// `indexes`): nothing moves now (the mover takes the records from sled as it does any
    /// tail, in the background), but the number goes up first, so a schema-5 binary, which
    /// would not look in the files, refuses the database.
    fn migrate_from_5(&self) -> Result<()> {
        // An upgrade from 4 cut short leaves the retired index to empty first.
        if !self.tree(TreeId::AddressIndex).is_empty() {
            self.empty_retired_address_index()?;
        }
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &6u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 5 (indexes that only grow move to files beside it)"
        );
        Ok(())
    }

    /// Schema 7 keeps the index tails in the layer-1 log (renamed when it was opened, so a
    /// schema-6 binary finds no log it could misread). What schema 6 left in sled's tails
    /// moves to run files when the indexes open, before the node starts (`Indexes::open`);
    /// the number goes up first, so a schema-6 binary never looks for them in sled.
    fn migrate_from_6(&self) -> Result<()> {
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &7u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 6 (the indexes' recent records are kept in the \
             layer-1 log, not in sled)"
        );
        Ok(())
    }

    /// Schema 8 keeps the UTXO set's LtHash state with the tip (schema 7 kept a Ristretto
    /// point): the redo a schema-7 node left is applied first (it writes tips and outputs),
    /// then the state is recomputed from the confirmed outputs, and the new tip and the number
    /// land in one atomic batch, so a crash in between leaves schema 7 to upgrade again.
    /// A chain begun before schema 8 has headers that commit with the old accumulator (and a
    /// different genesis hash): the node refuses it when it compares genesis.
    fn migrate_from_7(&self) -> Result<()> {
        self.redo_pending()?;
        let meta = self.tree(TreeId::Meta);
        let mut batch = sled::Batch::default();
        let mut outputs = 0u64;
        if let Some(raw) = meta.get(meta_key::TIP)? {
            let old: TipV7 = decode_record(TreeId::Meta, meta_key::TIP, &raw)?;
            let mut commitment = UtxoCommitment::empty();
            self.for_each_utxo(|outpoint, entry| {
                commitment.insert(&outpoint, &entry);
                outputs += 1;
            })?;
            let tip = ChainTip {
                height: old.height,
                hash: old.hash,
                timestamp_ms: old.timestamp_ms,
                utxo_state: commitment.to_bytes(),
            };
            batch.insert(meta_key::TIP, tip.to_bytes());
        }
        batch.insert(meta_key::SCHEMA_VERSION, &8u32.to_be_bytes());
        meta.apply_batch(batch)?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            outputs,
            "database upgraded from schema 7 (the UTXO commitment's state, recomputed from the \
             confirmed outputs, is kept with the tip)"
        );
        Ok(())
    }

    /// Removes the schema-4 address index in flushed steps (it holds a record per output, so
    /// memory and sled's log stay small while it goes), then says so once.
    fn empty_retired_address_index(&self) -> Result<()> {
        const STEP: usize = 65_536;
        let index = self.tree(TreeId::AddressIndex);
        let mut removed = 0usize;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in index.iter().keys().take(STEP) {
                batch.remove(key?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            index.apply_batch(batch)?;
            self.db.flush()?;
            removed += n;
        }
        self.durability.barrier()?;
        tracing::info!(
            records = removed,
            "the address index is now built in memory at start; its stored copy was removed"
        );
        Ok(())
    }

    /// Moves the bodies still in sled to the block files, a bounded step at a time (each
    /// flushed: memory and the disk's second copy stay small), then clears the mark. A
    /// location is never a body's size (a header alone is longer), so none moves twice.
    fn move_block_bodies(&self) -> Result<()> {
        const STEP_BODIES: usize = 256;
        const STEP_BYTES: usize = 64 << 20;
        let mut moved = 0usize;
        let mut after: Option<sled::IVec> = None;
        loop {
            let mut bodies: Vec<(sled::IVec, sled::IVec)> = Vec::new();
            let mut bytes = 0usize;
            let from = match after.take() {
                Some(k) => std::ops::Bound::Excluded(k),
                None => std::ops::Bound::Unbounded,
            };
            for item in self
                .tree(TreeId::Blocks)
                .range::<sled::IVec, _>((from, std::ops::Bound::Unbounded))
            {
                let (hash, value) = item?;
                if value.len() != block_files::LOCATION_LEN {
                    bytes += value.len();
                    bodies.push((hash, value));
                    if bodies.len() == STEP_BODIES || bytes >= STEP_BYTES {
                        break;
                    }
                }
            }
            if bodies.is_empty() {
                break;
            }
            let raw: Vec<&[u8]> = bodies.iter().map(|(_, v)| v.as_ref()).collect();
            let locations = self.blocks.append(&raw)?;
            let mut batch = sled::Batch::default();
            for ((hash, _), at) in bodies.iter().zip(locations) {
                batch.insert(hash, &at.to_bytes()[..]);
            }
            self.tree(TreeId::Blocks).apply_batch(batch)?;
            self.db.flush()?;
            moved += bodies.len();
            after = bodies.pop().map(|(hash, _)| hash);
            tracing::info!(blocks = moved, "moving block bodies to the block files");
        }
        self.tree(TreeId::Meta)
            .remove(meta_key::MOVING_BLOCK_BODIES)?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            blocks = moved,
            "database upgraded from schema 3: block bodies moved to the block files"
        );
        Ok(())
    }

    /// Applies the redo groups no checkpoint covered (a crash or power cut came after their
    /// commit was durable and before sled had them), then checkpoints.
    fn redo_pending(&self) -> Result<()> {
        let pending = self.log.pending_redo();
        let Some(last) = pending.last().map(|g| g.seq) else {
            return Ok(());
        };
        let writes: usize = pending.iter().map(|g| g.ops.len()).sum();
        let commits = pending.len();
        for group in pending {
            self.write_sled_plain(&WriteBatch { ops: group.ops })?;
        }
        self.applied
            .store(last, std::sync::atomic::Ordering::SeqCst);
        if let Some(a) = &self.applier {
            a.set_applied(last);
        }
        self.checkpoint()?;
        tracing::info!(
            commits,
            writes,
            "applied again the commits sled had not flushed before the last stop"
        );
        Ok(())
    }

    /// A sled tree, for scans and iteration: waits until sled holds every commit made so far
    /// (see `applier`), so what it shows is never behind [`get`](Self::get). Take it again
    /// after a later commit: a reference kept across one shows sled as it was. Writes go
    /// through [`commit`](Self::commit), never here (they would bypass the log). Of
    /// `tx_index` and `address_txs` sled holds only the recent tail: read those through
    /// [`get`](Self::get) and [`index_scan`](Self::index_scan).
    pub fn tree(&self, id: TreeId) -> &sled::Tree {
        if let Some(a) = &self.applier {
            a.wait_idle();
        }
        &self.trees[id.index()]
    }

    /// One record's bytes, as the last commit left it (queued for sled or in it).
    fn get_raw(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if tree.is_logged() {
            if let Some(v) = self.log.get(tree, key) {
                return Ok(Some(v));
            }
            // An index that only grows: its files after its tail, since a record leaves the
            // tail only once its file is visible.
            return match &self.indexes {
                Some(ix) if ix.holds(tree) => ix.get(tree, key),
                _ => Ok(None),
            };
        }
        if let Some(queued) = self.applier.as_ref().and_then(|a| a.get(tree, key)) {
            return Ok(queued);
        }
        Ok(self.trees[tree.index()].get(key)?.map(|v| v.to_vec()))
    }

    /// Reads and strictly decodes one record.
    pub fn get<T: Canonical>(&self, tree: TreeId, key: &[u8]) -> Result<Option<T>> {
        match self.get_raw(tree, key)? {
            None => Ok(None),
            Some(raw) => decode_record(tree, key, &raw).map(Some),
        }
    }

    /// Whether a record exists.
    pub fn contains(&self, tree: TreeId, key: &[u8]) -> Result<bool> {
        if tree.is_logged() {
            return Ok(self.get_raw(tree, key)?.is_some());
        }
        if let Some(queued) = self.applier.as_ref().and_then(|a| a.get(tree, key)) {
            return Ok(queued.is_some());
        }
        Ok(self.trees[tree.index()].contains_key(key)?)
    }

    /// The keys of `tree` that start with `prefix`, in order, as the last commit left them,
    /// without waiting for sled to catch up (for the consensus owner's own small records).
    pub fn keys_with_prefix(&self, tree: TreeId, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        // The queue first: a commit sled applies meanwhile shows in the scan after it.
        let queued = match &self.applier {
            Some(a) => a.queued_with_prefix(tree, prefix),
            None => Vec::new(),
        };
        let mut keys = std::collections::BTreeSet::new();
        for item in self.trees[tree.index()].scan_prefix(prefix).keys() {
            keys.insert(item?.to_vec());
        }
        for (key, value) in queued {
            match value {
                Some(_) => keys.insert(key),
                None => keys.remove(&key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Waits until sled holds every commit made so far; fails if one could not be applied.
    fn drain(&self) -> Result<()> {
        if let Some(a) = &self.applier {
            a.wait_idle();
            if let Some(why) = a.failure() {
                return Err(StorageError::Apply(why));
            }
        }
        Ok(())
    }

    /// The newest commit sled holds.
    fn applied_seq(&self) -> u64 {
        match &self.applier {
            Some(a) => a.applied(),
            None => self.applied.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Every record of one tree, in key order: for backups and for loading at start. For
    /// `tx_index` and `address_txs` that is the whole index in memory: stream those with
    /// [`index_scan`](Self::index_scan) instead.
    pub fn records(&self, tree: TreeId) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        if self.indexes.as_ref().is_some_and(|ix| ix.holds(tree)) {
            let mut all = Vec::new();
            self.index_scan(tree, &[], &[0xff; 256], |k, v| {
                all.push((k.into(), v.into()));
                Ok(true)
            })?;
            return Ok(all);
        }
        if tree.is_logged() {
            return Ok(self
                .log
                .records(tree)
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect());
        }
        Ok(self
            .tree(tree)
            .iter()
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Applies every write of `batch` atomically and durably: one log frame holds its layer-1
    /// writes and the redo of its sled writes, synced, then sled applies them (see the module
    /// docs). Commits land one at a time, in order. A failure after the frame is synced leaves
    /// the commit to be applied at the next open.
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        let batch = self.store_block_bodies(batch)?;
        let one_at_a_time = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (logged, sled_part): (Vec<_>, Vec<_>) =
            batch.ops.into_iter().partition(|(t, _, _)| t.is_logged());
        let ops: Vec<layer1_log::Op<'_>> = logged
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
            .collect();
        if sled_part.is_empty() {
            if !ops.is_empty() {
                self.log.append(&ops)?;
                self.log.sync()?;
            }
            return Ok(());
        }
        let redo: Vec<layer1_log::Op<'_>> = sled_part
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
            .collect();
        if !layer1_log::fits_one_frame(&ops, &redo) {
            // Bigger than a log frame: sled's own transaction, flushed at once. First a
            // checkpoint, so no older redo is left to be applied over it after a crash.
            self.checkpoint()?;
            if !ops.is_empty() {
                self.log.append(&ops)?;
                self.log.sync()?;
            }
            drop((ops, redo));
            self.write_sled(&WriteBatch { ops: sled_part })?;
            drop(one_at_a_time);
            return self.checkpoint();
        }
        if let Some(why) = self.applier.as_ref().and_then(|a| a.failure()) {
            return Err(StorageError::Apply(why));
        }
        let seq = self.log.append_redo(&ops, &redo)?;
        let synced = self.log.sync();
        drop((ops, redo));
        // Even if the sync failed, the frame stays in the log (a later sync may yet write it):
        // sled gets its half too, so no checkpoint can ever cover a group sled never had.
        match &self.applier {
            Some(a) => a
                .enqueue(seq, WriteBatch { ops: sled_part })
                .map_err(StorageError::Apply)?,
            None => {
                if let Err(e) = self.write_sled_plain(&WriteBatch { ops: sled_part }) {
                    // A group sled may lack: the log must not drop it (the node stops).
                    self.log
                        .poison(&format!("sled could not apply commit {seq}: {e}"));
                    return Err(e);
                }
                self.applied.store(seq, std::sync::atomic::Ordering::SeqCst);
            }
        }
        synced?;
        drop(one_at_a_time);
        if !self
            .background_checkpoints
            .load(std::sync::atomic::Ordering::SeqCst)
            && self.checkpoint_due()
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// How many commits' redo waits for a checkpoint, and its bytes.
    pub fn redo_backlog(&self) -> (usize, u64) {
        self.log.redo_backlog()
    }

    /// Whether the redo backlog is big enough to checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        let (groups, bytes) = self.log.redo_backlog();
        groups >= CHECKPOINT_GROUPS || bytes >= CHECKPOINT_BYTES
    }

    /// From now on commits leave checkpoints to the caller (the node runs them on a task of
    /// their own, so no commit waits for sled's flush).
    pub fn checkpoint_in_background(&self) {
        self.background_checkpoints
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until sled holds every commit so far, flushes it through the barrier, then lets
    /// the log forget the redo it covers. Commits go on meanwhile: only those applied before
    /// the flush began are covered.
    pub fn checkpoint(&self) -> Result<()> {
        let _one = self
            .checkpointing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Everything committed so far, so a clean stop leaves nothing to apply again.
        self.drain()?;
        let through = self.applied_seq();
        // Cleared before the flush (a direct write after this point sets it again), put back
        // if the flush fails.
        let unlogged = self
            .unlogged
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let flushed = self
            .db
            .flush()
            .map_err(StorageError::from)
            .and_then(|_| Ok(self.durability.barrier()?));
        if let Err(e) = flushed {
            if unlogged {
                self.unlogged
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return Err(e);
        }
        if through > 0 {
            self.log.checkpoint(through)?;
        }
        // On this thread, not a committer's: the marker's sync, and any compaction due. So a
        // checkpoint leaves everything so far durable, whatever `flush` would have.
        self.log.sync()?;
        Ok(())
    }

    /// Loads records in bulk (a restore into a directory no node uses yet): each sled tree's
    /// writes as one batch, with no atomicity across trees, the index records as a run file
    /// each, and the layer-1 writes appended.
    pub fn import(&self, batch: WriteBatch) -> Result<()> {
        let batch = self.store_block_bodies(batch)?;
        self.checkpoint()?;
        let mut per_tree: Vec<sled::Batch> =
            TreeId::ALL.iter().map(|_| Default::default()).collect();
        let mut used = [false; TreeId::ALL.len()];
        let mut logged = WriteBatch::new();
        let mut index_records = std::collections::BTreeMap::<TreeId, Vec<_>>::new();
        for (tree, key, value) in batch.ops {
            let to_run = self.indexes.as_ref().is_some_and(|ix| ix.holds(tree));
            let value = match value {
                Some(v) if to_run => {
                    index_records.entry(tree).or_default().push((key, v));
                    continue;
                }
                other => other,
            };
            if tree.is_logged() {
                logged.ops.push((tree, key, value));
                continue;
            }
            used[tree.index()] = true;
            match value {
                Some(v) => per_tree[tree.index()].insert(key, v),
                None => per_tree[tree.index()].remove(key),
            }
        }
        for ((tree, b), used) in TreeId::ALL.iter().zip(per_tree).zip(used) {
            if used {
                self.tree(*tree).apply_batch(b)?;
            }
        }
        if let Some(ix) = &self.indexes {
            for (tree, records) in index_records {
                ix.import(tree, records)?;
            }
        }
        self.unlogged
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.append(logged)
    }

    /// Applies layer-1 writes (to `utxo_states`, `final_txs`, `pending_txs` only) at once, as
    /// one atomic batch, durable at the next [`flush`](Self::flush): the barrier before a
    /// vote leaves covers them.
    pub fn append(&self, batch: WriteBatch) -> Result<()> {
        let ops: Vec<layer1_log::Op<'_>> = batch
            .ops
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
            .collect();
        Ok(self.log.append(&ops)?)
    }

    /// Makes everything committed or appended so far durable: the log synced (commits are
    /// durable with it), and sled flushed through the device's cache only if a bulk load
    /// wrote around the log. Called before a promise leaves the node (a lock voted on, a vote
    /// cast) and after each block.
    pub fn flush(&self) -> Result<()> {
        if let Some(why) = self.applier.as_ref().and_then(|a| a.failure()) {
            return Err(StorageError::Apply(why));
        }
        self.log.sync()?;
        if self.unlogged.load(std::sync::atomic::Ordering::SeqCst) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the layer-1 appends durable (the log only, not sled): the barrier before a vote
    /// leaves, since everything a vote promises is a layer-1 record.
    pub fn sync_layer1(&self) -> Result<()> {
        if let Some(why) = self.applier.as_ref().and_then(|a| a.failure()) {
            return Err(StorageError::Apply(why));
        }
        Ok(self.log.sync()?)
    }

    /// Takes the database to what a power cut followed by a restart would leave, and returns
    /// how many log frames were lost (appends no sync covered). In a database opened with
    /// [`open_simulating_power_loss`](Self::open_simulating_power_loss) (which journals sled's
    /// writes) sled goes back to its last checkpoint first, and the redo the log kept is
    /// applied again, as an open does.
    pub fn lose_unflushed(&self) -> Result<usize> {
        self.drain()?;
        let lost = self.log.lose_unsynced()?;
        let undo = self.durability.take_unflushed();
        for (tree, key, old) in undo.into_iter().rev() {
            match old {
                Some(value) => self.tree(tree).insert(key, value)?,
                None => self.tree(tree).remove(key)?,
            };
        }
        self.db.flush()?;
        // What the next open would do: the synced redo applied again.
        self.redo_pending()?;
        Ok(lost)
    }

    /// Bytes on disk: sled's files, the layer-1 log, the block files and the index files.
    pub fn size_on_disk(&self) -> Result<u64> {
        let runs: u64 = (self.indexes.iter())
            .flat_map(|ix| ix.stats())
            .map(|(_, (_, _, bytes))| bytes)
            .sum();
        Ok(self.db.size_on_disk()? + self.log.sizes().0 + self.blocks.size_on_disk() + runs)
    }

    /// Calls `visit` with each record of an index that only grows (`tx_index`,
    /// `address_txs`) whose key is in `from..=to`, in key order, until it returns false:
    /// the tail and the index files together, values as the tail holds them.
    pub fn index_scan(
        &self,
        tree: TreeId,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        match &self.indexes {
            Some(ix) if ix.holds(tree) => ix.scan(tree, from, to, visit),
            // A simulation's database: the whole index is its tail.
            _ => {
                for (k, v) in self.log.range(tree, from, to) {
                    if !visit(&k, &v)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Index files per index (files, records, bytes): for tests that wait for the mover.
    #[cfg(test)]
    fn index_file_stats(&self) -> Vec<(&'static str, (usize, u64, u64))> {
        self.indexes.iter().flat_map(|ix| ix.stats()).collect()
    }

    /// Moves the bodies a batch writes to `blocks` into the block files (synced), leaving
    /// their locations in the batch: what sled and the log's redo then hold.
    fn store_block_bodies(&self, mut batch: WriteBatch) -> Result<WriteBatch> {
        let at: Vec<usize> = batch
            .ops
            .iter()
            .enumerate()
            .filter(|(_, (t, _, v))| *t == TreeId::Blocks && v.is_some())
            .map(|(i, _)| i)
            .collect();
        if at.is_empty() {
            return Ok(batch);
        }
        let bodies: Vec<&[u8]> = at
            .iter()
            .filter_map(|&i| batch.ops[i].2.as_deref())
            .collect();
        let locations = self.blocks.append(&bodies)?;
        for (i, location) in at.into_iter().zip(locations) {
            batch.ops[i].2 = Some(location.to_bytes().to_vec());
        }
        Ok(batch)
    }

    /// A block's canonical bytes, read from its block file.
    pub fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>> {
        let Some(raw) = self.get_raw(TreeId::Blocks, &hash.0)? else {
            return Ok(None);
        };
        let damaged = |reason: String| StorageError::Corrupt {
            tree: TreeId::Blocks.name(),
            key: hash.to_string(),
            reason,
        };
        let at = block_files::Location::from_bytes(&raw).ok_or_else(|| {
            damaged(format!(
                "expected a {}-byte block file location, found {} bytes",
                block_files::LOCATION_LEN,
                raw.len()
            ))
        })?;
        match self.blocks.read(at) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e @ BlockFileError::Damaged { .. }) => Err(damaged(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a batch the log's redo covers: one plain sled batch per tree, the chain tip
    /// (`meta`) last, so a reader never sees a tip ahead of the records it names.
    fn write_sled_plain(&self, batch: &WriteBatch) -> Result<()> {
        self.journal(batch)?;
        apply_plain(&self.trees, batch)
    }

    /// Journal mode: the old values of the keys `batch` writes, for `lose_unflushed`.
    fn journal(&self, batch: &WriteBatch) -> Result<()> {
        if self.durability.journaling() {
            let mut undo = Vec::with_capacity(batch.ops.len());
            for (tree, key, _) in &batch.ops {
                undo.push((*tree, key.clone(), self.tree(*tree).get(key)?));
            }
            self.durability.record(undo);
        }
        Ok(())
    }

    /// Writes a batch of sled trees atomically (a sled transaction when it spans trees).
    fn write_sled(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.journal(batch)?;
        let mut per_tree: Vec<(TreeId, sled::Batch)> = Vec::new();
        for (tree, key, value) in &batch.ops {
            let slot = match per_tree.iter().position(|(t, _)| t == tree) {
                Some(i) => i,
                None => {
                    per_tree.push((*tree, sled::Batch::default()));
                    per_tree.len() - 1
                }
            };
            match value {
                Some(v) => per_tree[slot].1.insert(key.as_slice(), v.as_slice()),
                None => per_tree[slot].1.remove(key.as_slice()),
            }
        }
        if per_tree.len() == 1 {
            self.unlogged
                .store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some((tree, single)) = per_tree.pop() {
                self.tree(tree).apply_batch(single)?;
            }
            return Ok(());
        }
        self.unlogged
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let trees: Vec<&sled::Tree> = per_tree.iter().map(|(t, _)| self.tree(*t)).collect();
        let result: sled::transaction::TransactionResult<(), ()> =
            trees.as_slice().transaction(|views| {
                for (view, (_, b)) in views.iter().zip(&per_tree) {
                    view.apply_batch(b)?;
                }
                Ok(())
            });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Storage(s) => StorageError::Sled(s),
            sled::transaction::TransactionError::Abort(()) => {
                unreachable!("the batch closure never aborts")
            }
        })
    }

    pub fn was_recovered(&self) -> bool {
        self.db.was_recovered()
    }

    // ---- typed reads -------------------------------------------------------------------

    pub fn tip(&self) -> Result<Option<ChainTip>> {
        self.get(TreeId::Meta, meta_key::TIP)
    }

    pub fn block_hash_at(&self, height: u64) -> Result<Option<BlockHash>> {
        match self.get_raw(TreeId::BlockHashes, &height_key(height))? {
            None => Ok(None),
            Some(raw) => {
                let bytes: [u8; 32] =
                    raw.as_slice()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt {
                            tree: TreeId::BlockHashes.name(),
                            key: height.to_string(),
                            reason: format!("expected a 32-byte hash, found {} bytes", raw.len()),
                        })?;
                Ok(Some(Hash32(bytes)))
            }
        }
    }

    pub fn block_by_hash(&self, hash: &BlockHash) -> Result<Option<Block>> {
        match self.block_bytes(hash)? {
            None => Ok(None),
            Some(raw) => decode_record(TreeId::Blocks, &hash.0, &raw).map(Some),
        }
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

    /// Calls `f` with every confirmed output, for loading the ledger at start (layer-1
    /// states are the ledger's to apply: see `Ledger::open`). Streams: a million outputs
    /// never sit in one list beside the map they are loaded into.
    pub fn for_each_utxo(&self, mut f: impl FnMut(OutPoint, UtxoEntry)) -> Result<()> {
        for item in self.tree(TreeId::Utxos).iter() {
            let (key, raw) = item?;
            let outpoint = OutPoint::from_key(&key).ok_or_else(|| StorageError::Corrupt {
                tree: TreeId::Utxos.name(),
                key: hex::encode(&key),
                reason: "key is not a 36-byte outpoint".into(),
            })?;
            let entry: UtxoEntry = decode_record(TreeId::Utxos, &key, &raw)?;
            f(outpoint, entry);
        }
        Ok(())
    }
}

/// Writes of one tree in one batch from which sled takes them in two halves at once (by key
/// range, one half on another thread). A snapshot's set is one such batch, and sled spends it
/// copying leaves: two cores do that in about half the time. Sled holds a batch only after the
/// log does, so a crash between the halves is redone at the next open like any other.
const PARALLEL_APPLY_MIN: usize = 16_384;

/// One write: a key and its new value, or `None` to remove it.
type Write<'a> = (&'a Vec<u8>, &'a Option<Vec<u8>>);

/// Writes `batch` into sled as one plain batch per tree (two for a tree past
/// [`PARALLEL_APPLY_MIN`] writes), `meta` (the chain tip) last, so a reader never sees a tip
/// ahead of the records it names.
fn apply_plain(trees: &[sled::Tree], batch: &WriteBatch) -> Result<()> {
    let mut per_tree: Vec<Vec<Write<'_>>> = TreeId::ALL.iter().map(|_| Vec::new()).collect();
    for (tree, key, value) in &batch.ops {
        per_tree[tree.index()].push((key, value));
    }
    let meta = std::mem::take(&mut per_tree[TreeId::Meta.index()]);
    for (tree, writes) in TreeId::ALL
        .iter()
        .zip(per_tree)
        .chain([(&TreeId::Meta, meta)])
    {
        let tree = &trees[tree.index()];
        match writes.len() {
            0 => {}
            n if n < PARALLEL_APPLY_MIN => tree.apply_batch(sled_batch(writes))?,
            _ => apply_in_halves(tree, writes)?,
        }
    }
    Ok(())
}

fn sled_batch<'a>(writes: impl IntoIterator<Item = Write<'a>>) -> sled::Batch {
    let mut b = sled::Batch::default();
    for (key, value) in writes {
        match value {
            Some(v) => b.insert(key.as_slice(), v.as_slice()),
            None => b.remove(key.as_slice()),
        }
    }
    b
}

/// One tree's writes (in batch order) as two sled batches split at the median key, applied
/// at once. The last write of a key wins, as within one sled batch.
fn apply_in_halves(tree: &sled::Tree, writes: Vec<Write<'_>>) -> Result<()> {
    let last: BTreeMap<&Vec<u8>, &Option<Vec<u8>>> = writes.into_iter().collect();
    let half = last.len() / 2;
    let low = sled_batch(last.iter().take(half).map(|(k, v)| (*k, *v)));
    let high = sled_batch(last.iter().skip(half).map(|(k, v)| (*k, *v)));
    std::thread::scope(|s| {
        let other = s.spawn(|| tree.apply_batch(high));
        let mine = tree.apply_batch(low);
        let theirs = other.join().map_err(|_| {
            StorageError::Apply("the thread writing half of a batch into sled panicked".into())
        })?;
        mine.and(theirs).map_err(StorageError::from)
    })
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

    /// Marks the database as an older schema wrote it, flushed, for an upgrade test.
    fn mark_schema(s: &Storage, version: u32) {
        s.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &version.to_be_bytes())
            .unwrap();
        s.db.flush().unwrap();
    }

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

    /// A tree's writes past `PARALLEL_APPLY_MIN` go into sled in two halves at once; the last
    /// write of a key still wins wherever the key falls, and the tip lands with them.
    #[test]
    fn a_large_batch_lands_whole_in_halves_with_the_last_write_of_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let n = PARALLEL_APPLY_MIN as u32 * 2 + 3;
        let key = |i: u32| OutPoint::new(Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes()), i);
        let mut b = WriteBatch::new();
        for i in 0..n {
            b.put_raw(TreeId::Utxos, key(i).to_key(), vec![1]);
        }
        // Every third written again, every fifth removed after: the later write wins.
        for i in (0..n).step_by(3) {
            b.put_raw(TreeId::Utxos, key(i).to_key(), vec![2]);
        }
        for i in (0..n).step_by(5) {
            b.remove(TreeId::Utxos, key(i).to_key());
        }
        b.put_raw(TreeId::Meta, b"probe", vec![9]);
        apply_plain(&s.trees, &b).unwrap();
        let tree = s.tree(TreeId::Utxos);
        for i in 0..n {
            let got = tree.get(key(i).to_key()).unwrap().map(|v| v.to_vec());
            let want = match (i % 5, i % 3) {
                (0, _) => None,
                (_, 0) => Some(vec![2]),
                _ => Some(vec![1]),
            };
            assert_eq!(got, want, "key {i}");
        }
        let removed = (0..n).step_by(5).count();
        assert_eq!(tree.len(), n as usize - removed);
        assert_eq!(
            s.tree(TreeId::Meta)
                .get(b"probe")
                .unwrap()
                .map(|v| v.to_vec()),
            Some(vec![9])
        );
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
    fn a_power_cut_keeps_every_commit_and_loses_only_unsynced_appends() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"kept", vec![1]);
        b.put_raw(TreeId::Peers, b"changed", vec![1]);
        b.put_raw(TreeId::Peers, b"removed", vec![1]);
        s.commit(b).unwrap();
        s.checkpoint().unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Peers, b"changed", vec![2]);
        b.put_raw(TreeId::Peers, b"changed", vec![3]);
        b.remove(TreeId::Peers, b"removed");
        b.put_raw(TreeId::Masternodes, b"new", vec![2]);
        s.commit(b).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::PendingTxs, [9u8; 32], vec![9]);
        s.append(b).unwrap();
        // The cut takes sled back to the checkpoint and the log to its last sync; the open
        // after it applies the second commit again from its redo.
        assert_eq!(s.lose_unflushed().unwrap(), 1, "the one unsynced append");
        let get = |t, k: &[u8]| s.tree(t).get(k).unwrap().map(|v| v.to_vec());
        assert_eq!(get(TreeId::Peers, b"kept"), Some(vec![1]));
        assert_eq!(get(TreeId::Peers, b"changed"), Some(vec![3]));
        assert_eq!(get(TreeId::Peers, b"removed"), None);
        assert_eq!(get(TreeId::Masternodes, b"new"), Some(vec![2]));
        assert!(s.log.get(TreeId::PendingTxs, &[9u8; 32]).is_none());
        assert_eq!(s.lose_unflushed().unwrap(), 0, "nothing since the cut");
        drop(s);
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(
            s.redo_backlog().0,
            0,
            "the cut's open checkpointed what it applied"
        );
        assert_eq!(
            s.tree(TreeId::Peers)
                .get(b"changed")
                .unwrap()
                .unwrap()
                .as_ref(),
            &[3]
        );
    }

    #[test]
    fn commits_not_yet_in_sled_are_applied_again_at_open_and_read_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            for i in 0..200u32 {
                let mut b = WriteBatch::new();
                b.put_raw(TreeId::Peers, i.to_be_bytes(), vec![1; 100]);
                b.put_raw(TreeId::Masternodes, b"last", i.to_be_bytes().to_vec());
                if i > 0 {
                    b.remove(TreeId::Peers, (i - 1).to_be_bytes());
                }
                s.commit(b).unwrap();
                // Whether sled has it yet or not, a read sees the commit.
                assert!(s.contains(TreeId::Peers, &i.to_be_bytes()).unwrap());
                assert!(!s
                    .contains(TreeId::Peers, &(i.wrapping_sub(1)).to_be_bytes())
                    .unwrap());
            }
            assert!(
                s.redo_backlog().0 > 0,
                "no checkpoint yet: the log holds the redo"
            );
            // Closed without a flush or checkpoint, as a crash after the last commit.
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.redo_backlog().0, 0);
        assert_eq!(s.tree(TreeId::Peers).len(), 1);
        assert_eq!(
            s.tree(TreeId::Masternodes)
                .get(b"last")
                .unwrap()
                .unwrap()
                .as_ref(),
            &199u32.to_be_bytes()
        );
    }

    #[test]
    fn the_barrier_covers_values_sled_keeps_as_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Commits, b"big", vec![7; 4 << 20]);
        s.commit(b).unwrap();
        s.checkpoint().unwrap();
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
    fn block_bodies_live_in_the_block_files_and_sled_keeps_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let hash = Hash32([5; 32]);
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Blocks, hash.0, vec![9; 300_000]);
            s.commit(b).unwrap();
            assert_eq!(s.block_bytes(&hash).unwrap(), Some(vec![9; 300_000]));
            let in_sled = s.tree(TreeId::Blocks).get(hash.0).unwrap().unwrap();
            assert_eq!(in_sled.len(), block_files::LOCATION_LEN);
            assert!(s.size_on_disk().unwrap() > 300_000);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.block_bytes(&hash).unwrap(), Some(vec![9; 300_000]));
        assert_eq!(s.block_bytes(&Hash32([6; 32])).unwrap(), None);
        // A location that points nowhere is a corrupt record, named.
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Meta, b"x", vec![]);
        s.commit(b).unwrap();
        s.tree(TreeId::Blocks)
            .insert(hash.0, &[0u8; 3][..])
            .unwrap();
        let err = s.block_bytes(&hash).unwrap_err().to_string();
        assert!(err.contains("blocks") && err.contains("location"), "{err}");
    }

    #[test]
    fn a_schema_3_database_moves_its_block_bodies_to_the_block_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let blocks = s.tree(TreeId::Blocks);
            for i in 0..600u32 {
                let mut hash = [0u8; 32];
                hash[..4].copy_from_slice(&i.to_be_bytes());
                blocks
                    .insert(hash, vec![i as u8; 100 + i as usize])
                    .unwrap();
            }
            mark_schema(&s, 3);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        for i in 0..600u32 {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_be_bytes());
            assert_eq!(
                s.block_bytes(&Hash32(hash)).unwrap(),
                Some(vec![i as u8; 100 + i as usize])
            );
            let in_sled = s.tree(TreeId::Blocks).get(hash).unwrap().unwrap();
            assert_eq!(in_sled.len(), block_files::LOCATION_LEN);
        }
        let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
        assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert!(!s
            .tree(TreeId::Meta)
            .contains_key(meta_key::MOVING_BLOCK_BODIES)
            .unwrap());
    }

    #[test]
    fn a_move_of_block_bodies_cut_short_resumes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let moved = Hash32([1; 32]);
        let left = Hash32([2; 32]);
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Blocks, moved.0, vec![1; 500]);
            s.commit(b).unwrap();
            s.checkpoint().unwrap();
            // As a move cut short leaves it: schema 4 and marked, one body moved, one still
            // in sled.
            s.tree(TreeId::Blocks).insert(left.0, vec![2; 700]).unwrap();
            s.tree(TreeId::Meta)
                .insert(meta_key::MOVING_BLOCK_BODIES, &[])
                .unwrap();
            mark_schema(&s, 4);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.block_bytes(&moved).unwrap(), Some(vec![1; 500]));
        assert_eq!(s.block_bytes(&left).unwrap(), Some(vec![2; 700]));
        assert!(!s
            .tree(TreeId::Meta)
            .contains_key(meta_key::MOVING_BLOCK_BODIES)
            .unwrap());
    }

    #[test]
    fn a_schema_4_database_drops_its_stored_address_index() {
        let dir = tempfile::tempdir().unwrap();
        let utxo = OutPoint::new(Hash32([3; 32]), 0);
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Utxos, utxo.to_key(), vec![1, 2, 3]);
            // A schema-4 node's last block, still only in the log's redo: its index write
            // must not come back after the upgrade emptied the tree.
            b.put_raw(TreeId::AddressIndex, [7u8; 56], vec![]);
            s.commit(b).unwrap();
            s.tree(TreeId::AddressIndex)
                .insert([8u8; 56], &[][..])
                .unwrap();
            mark_schema(&s, 4);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert!(s.tree(TreeId::AddressIndex).is_empty());
        assert_eq!(
            s.tree(TreeId::Utxos).get(utxo.to_key()).unwrap().as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
        assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        // An emptying cut short (marked 5, records left) is finished at the next open.
        s.tree(TreeId::AddressIndex)
            .insert([9u8; 56], &[][..])
            .unwrap();
        s.db.flush().unwrap();
        drop(s);
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert!(s.tree(TreeId::AddressIndex).is_empty());
    }

    #[test]
    fn layer1_writes_are_read_at_once_and_survive_a_flush_and_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let op = OutPoint::new(Hash32([5; 32]), 1);
        let locked = UtxoState::Locked(Hash32([6; 32]));
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            b.put(TreeId::UtxoStates, op.to_key(), &locked);
            b.put_raw(TreeId::PendingTxs, [1u8; 32], vec![1]);
            s.append(b).unwrap();
            assert_eq!(s.utxo_state(&op).unwrap(), locked, "visible at once");
            assert!(s.tree(TreeId::UtxoStates).is_empty(), "not in sled");
            s.flush().unwrap();
            let mut b = WriteBatch::new();
            b.remove(TreeId::PendingTxs, [1u8; 32]);
            b.put_raw(TreeId::PendingTxs, [2u8; 32], vec![2]);
            s.append(b).unwrap();
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.utxo_state(&op).unwrap(), locked);
        let pending: Vec<_> = s
            .records(TreeId::PendingTxs)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(pending, vec![(vec![2u8; 32], vec![2])]);
    }

    #[test]
    fn a_power_cut_loses_the_layer1_writes_no_flush_covered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::FinalTxs, b"flushed", vec![1]);
        s.append(b).unwrap();
        s.flush().unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::FinalTxs, b"appended", vec![1]);
        b.remove(TreeId::FinalTxs, b"flushed");
        s.append(b).unwrap();
        assert_eq!(s.lose_unflushed().unwrap(), 1, "one batch, one frame");
        assert!(s.log.get(TreeId::FinalTxs, b"flushed").is_some());
        assert!(s.log.get(TreeId::FinalTxs, b"appended").is_none());
    }

    #[test]
    fn a_commit_is_durable_whole_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::UtxoStates, b"lock", vec![1]);
        b.put_raw(TreeId::Peers, b"peer", vec![1]);
        s.commit(b).unwrap();
        // No flush, no checkpoint: the commit's frame carries both halves.
        s.lose_unflushed().unwrap();
        assert!(s.log.get(TreeId::UtxoStates, b"lock").is_some());
        assert!(s.tree(TreeId::Peers).get(b"peer").unwrap().is_some());
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

    /// Waits (generously) for the mover to write a run of each index.
    fn wait_until_both_indexes_have_files(s: &Storage) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while (s.index_file_stats().iter()).any(|(_, (files, _, _))| *files == 0) {
            assert!(
                std::time::Instant::now() < deadline,
                "the tails never moved to files"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// One `tx_index` and one `address_txs` record for each transaction number in `range`.
    fn index_batch(range: std::ops::Range<u32>) -> WriteBatch {
        let mut b = WriteBatch::new();
        for i in range {
            let txid = blake3::hash(&i.to_be_bytes());
            let loc = TxLocation {
                height: u64::from(i),
                index: i % 7,
            };
            b.put(TreeId::TxIndex, txid.as_bytes(), &loc);
            let mut hk = [0u8; 72];
            hk[..20].copy_from_slice(&[(i % 3) as u8; 20]);
            hk[20..28].copy_from_slice(&u64::from(i).to_be_bytes());
            hk[40..].copy_from_slice(txid.as_bytes());
            b.put_raw(TreeId::AddressTxs, hk, Vec::new());
        }
        b
    }

    /// Commits `index_batch` records `0..total`, `per_batch` to a commit.
    fn commit_index_batches(s: &Storage, total: u32, per_batch: u32) {
        for start in (0..total).step_by(per_batch as usize) {
            s.commit(index_batch(start..(start + per_batch).min(total)))
                .unwrap();
        }
    }

    #[test]
    fn grown_indexes_move_to_their_files_and_read_the_same_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let total = indexes::TAIL_RECORDS as u32 + 5_000;
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            commit_index_batches(&s, total, 10_000);
            wait_until_both_indexes_have_files(&s);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert!((s.log.len(TreeId::TxIndex) as u64) < indexes::TAIL_RECORDS);
        assert!(
            s.tree(TreeId::TxIndex).is_empty(),
            "sled holds no index records"
        );
        for i in [0u32, 1, 4_242, total - 1] {
            let txid = Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes());
            assert_eq!(
                s.tx_location(&txid).unwrap(),
                Some(TxLocation {
                    height: u64::from(i),
                    index: i % 7
                })
            );
        }
        assert_eq!(s.tx_location(&Hash32([7; 32])).unwrap(), None);
        // One address's history in order, from files and tail together; a bounded scan stops.
        let mut heights = Vec::new();
        s.index_scan(TreeId::AddressTxs, &[1; 20], &[1; 72], |k, v| {
            assert!(v.is_empty());
            heights.push(u64::from_be_bytes(k[20..28].try_into().unwrap()));
            Ok(true)
        })
        .unwrap();
        let expected: Vec<u64> = (0..u64::from(total)).filter(|i| i % 3 == 1).collect();
        assert_eq!(heights, expected);
        let mut locations = 0;
        s.index_scan(TreeId::TxIndex, &[], &[0xff; 32], |_, v| {
            TxLocation::from_bytes(v).unwrap();
            locations += 1;
            Ok(locations < 10)
        })
        .unwrap();
        assert_eq!(locations, 10);
        assert!(s.size_on_disk().unwrap() > 0);
        // Every way of reading a record finds it, in the tail or in a file.
        let moved = Hash32(*blake3::hash(&3u32.to_be_bytes()).as_bytes());
        assert!(s.contains(TreeId::TxIndex, &moved.0).unwrap());
        assert_eq!(s.records(TreeId::TxIndex).unwrap().len(), total as usize);
        assert_eq!(s.records(TreeId::AddressTxs).unwrap().len(), total as usize);
    }

    #[test]
    fn a_schema_7_database_gets_the_lthash_state_of_its_outputs_in_its_tip() {
        use crate::types::{Amount, KeyHash, TxOutput};
        let dir = tempfile::tempdir().unwrap();
        let outputs: Vec<(OutPoint, UtxoEntry)> = (0..50u8)
            .map(|i| {
                (
                    OutPoint::new(Hash32([i; 32]), u32::from(i)),
                    UtxoEntry {
                        output: TxOutput {
                            amount: Amount(1_000 + u64::from(i)),
                            key_hash: KeyHash([i; 20]),
                        },
                        height: Some(3),
                        coinbase: false,
                    },
                )
            })
            .collect();
        let old = TipV7 {
            height: 3,
            hash: Hash32([7; 32]),
            timestamp_ms: 1_234,
            utxo_accumulator: [9; 32],
        };
        {
            let s = Storage::open(dir.path(), 1 << 26).unwrap();
            let mut b = WriteBatch::new();
            for (op, entry) in &outputs {
                b.put(TreeId::Utxos, op.to_key(), entry);
            }
            b.put_raw(TreeId::Meta, meta_key::TIP, old.to_bytes());
            s.commit(b).unwrap();
            s.checkpoint().unwrap();
            mark_schema(&s, 7);
        }
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
        assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        let tip = s.tip().unwrap().unwrap();
        assert_eq!(
            (tip.height, tip.hash, tip.timestamp_ms),
            (3, Hash32([7; 32]), 1_234)
        );
        let expected = UtxoCommitment::of_set(outputs.iter().map(|(o, e)| (o, e)));
        assert_eq!(UtxoCommitment::from_bytes(&tip.utxo_state), expected);
        drop(s);
        // Opened again: nothing left to upgrade, the tip as written.
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.tip().unwrap().unwrap(), tip);
    }

    #[test]
    fn a_schema_6_database_moves_its_sled_tails_to_files_and_keeps_its_layer1_log() {
        let dir = tempfile::tempdir().unwrap();
        let total = indexes::TAIL_RECORDS as u32 + 1_000;
        let lock = OutPoint {
            txid: Hash32([5; 32]),
            index: 1,
        };
        {
            // Schema 6: the indexes' tails in sled (here the whole index, as a schema-5
            // database upgraded in the background leaves it), locks in `layer1.log`.
            let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
            for start in (0..total).step_by(20_000) {
                apply_plain(&s.trees, &index_batch(start..(start + 20_000).min(total))).unwrap();
            }
            // A damaged record stays readable as damaged, as it was in sled.
            s.tree(TreeId::TxIndex)
                .insert([9u8; 32], &[0xff; 3])
                .unwrap();
            let mut b = WriteBatch::new();
            b.put(
                TreeId::UtxoStates,
                lock.to_key(),
                &UtxoState::Locked(Hash32([6; 32])),
            );
            s.append(b).unwrap();
            s.flush().unwrap();
            s.checkpoint().unwrap();
            mark_schema(&s, 6);
        }
        std::fs::rename(
            dir.path().join(layer1_log::FILE_NAME),
            dir.path().join("layer1.log"),
        )
        .unwrap();
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
        assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert!(s.tree(TreeId::TxIndex).is_empty() && s.tree(TreeId::AddressTxs).is_empty());
        let damaged = s.tx_location(&Hash32([9; 32])).unwrap_err();
        assert!(damaged.to_string().contains("tx_index"), "{damaged}");
        assert_eq!(
            s.utxo_state(&lock).unwrap(),
            UtxoState::Locked(Hash32([6; 32]))
        );
        for i in [0u32, 77, total - 1] {
            let txid = Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes());
            assert_eq!(
                s.tx_location(&txid).unwrap().map(|l| l.height),
                Some(u64::from(i))
            );
        }
        assert_eq!(s.records(TreeId::AddressTxs).unwrap().len(), total as usize);
        drop(s);
        assert!(!dir.path().join("layer1.log").exists());
        let dir_files = std::fs::read_dir(dir.path().join(runs::DIR_NAME))
            .unwrap()
            .count();
        assert!(dir_files >= 2);
    }
}
