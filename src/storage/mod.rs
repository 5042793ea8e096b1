//! The database: sled for the chain, an append-only log for layer 1's short-lived records and
//! the write-ahead of everything, the confirmed UTXO set in memory with set files; typed
//! reads, atomic batches, and the flush point.
//!
//! Storage knows record layouts, never consensus rules. All methods block on disk I/O, so async
//! code calls them through `spawn_blocking`. Every record read back is decoded strictly; a
//! record that fails to decode is reported as corrupt with its tree and key, never unwrapped.
//!
//! ```text
//! append(batch) ─► layer-1 log: tables in memory + appends ────────────────┐
//! commit(batch) ─► one log frame: its layer-1 writes + the redo of its ────┼─► flush: log synced
//!                  other writes, synced; then the UTXO set takes its own   │
//!                  (memory) and sled applies the rest (no txn)             │
//! checkpoint()  ─► sled flushed + barrier, a set file if one is due ───────┘  (now and then)
//!                  ─► log marker drops the redo both hold
//! ```
//!
//! **Three stores.** `utxo_states`, `final_txs` and `pending_txs` change with every lock and
//! every finalization and empty out one block later; they live in memory and in the layer-1
//! log (`layer1-v3.log`, see `layer1_log`), so a transaction costs sled nothing until its
//! block. `tx_index` and `address_txs` only grow: their recent tail lives in the same log, the
//! rest in sorted run files beside it (see `indexes`), read through [`Storage::get`] and
//! [`Storage::index_scan`]. `utxos`, the confirmed set, lives in memory and in set files
//! (see `utxo_set`): a block's outputs cost map updates, not sled writes. So a block costs
//! sled only its own few records (location, hash, certificate, tip). The other trees are
//! sled's.
//!
//! **The log is the write-ahead log.** A commit is durable once its log frame is synced: the
//! frame carries its other writes too (a *redo* group), and sled applies them afterwards as
//! plain batches, without a sled transaction and without a flush on the committing thread
//! (a sled transaction and flush were most of a block's commit time). A [`checkpoint`]
//! (sled's flush and the barrier, a set file when the set's redo since the last one is big,
//! then a log marker) lets the log forget what both sled and the set's file hold; at open,
//! the groups kept are applied again, in order, to whichever lacks them, before anything
//! reads. A commit too big for one frame falls back to a sled transaction, flushed at once;
//! a snapshot's set, too big for one, goes to a set file first (see `utxo_set`). The layer-1
//! part of a commit is durable no later than its other part, as before: a writer that
//! removes layer-1 records because of what its other part does (a block, a snapshot) still
//! removes them in a second batch (see `ledger::apply` and `ledger::snapshot`), which the
//! ledger reconciles at open if a crash comes between.
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
mod log_table;
mod migrations;
mod runs;
pub mod schema;
mod utxo_set;

pub use batch::WriteBatch;
pub use block_files::BlockFileError;
pub use datadir_lock::{DataDirLock, LockError, LOCK_FILE};
pub use durability::BarrierError;
pub use indexes::IndexError;
pub use layer1_log::LogError;
pub use schema::{TreeId, SCHEMA_VERSION};
pub use utxo_set::SetError;

use crate::types::utxo_commitment::{UtxoCommitment, STATE_BYTES};
use crate::types::{
    Block, BlockHash, Canonical, CommitCertificate, Hash32, OutPoint, TxLocation, Txid, UtxoEntry,
    UtxoState,
};
use bincode::{Decode, Encode};
use schema::{height_key, meta_key};
use sled::Transactional;
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
    #[error(transparent)]
    UtxoSet(#[from] SetError),
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
    /// The confirmed outputs (`utxos`), in memory and in set files (see `utxo_set`).
    utxo_set: Arc<utxo_set::UtxoSet>,
    /// A database of schema 8 or older, until its upgrade: `utxos` is still a sled tree.
    legacy_utxos: Arc<std::sync::atomic::AtomicBool>,
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
            utxo_set: Arc::new(utxo_set::UtxoSet::new(path)),
            legacy_utxos: Default::default(),
        };
        storage.check_schema()?;
        storage.load_set()?;
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

    /// Applies the redo groups the log kept to what lacks them: sled, those after its last
    /// checkpoint (a crash or power cut came after their commit was durable and before sled
    /// had them), and the UTXO set, those after its file; then checkpoints.
    fn redo_pending(&self) -> Result<()> {
        let (pending, sled_through) = self.log.pending_redo();
        let Some(last) = pending.last().map(|g| g.seq) else {
            return Ok(());
        };
        let set_from = self.utxo_set.seq();
        let (mut commits, mut writes) = (0, 0);
        for group in pending {
            let (set_part, sled_part): (Vec<_>, Vec<_>) =
                group.ops.into_iter().partition(|(t, _, _)| self.in_set(*t));
            if group.seq > sled_through && !sled_part.is_empty() {
                commits += 1;
                writes += sled_part.len();
                self.write_sled_plain(&WriteBatch { ops: sled_part })?;
            }
            if group.seq > set_from {
                self.utxo_set.apply(group.seq, &set_ops(&set_part));
            }
        }
        self.applied
            .store(last, std::sync::atomic::Ordering::SeqCst);
        if let Some(a) = &self.applier {
            a.set_applied(last);
        }
        self.checkpoint()?;
        if commits > 0 {
            tracing::info!(
                commits,
                writes,
                "applied again the commits sled had not flushed before the last stop"
            );
        }
        Ok(())
    }

    /// Loads the UTXO set from its newest file the log backs (the redo after it comes next:
    /// see [`redo_pending`](Self::redo_pending)); a schema-8 database still keeps it in sled.
    fn load_set(&self) -> Result<()> {
        if self.in_set(TreeId::Utxos) {
            (self.utxo_set).load(self.log.last_seq(), self.log.dropped_through())?;
        }
        Ok(())
    }

    /// Whether `tree`'s records live in the UTXO set rather than in sled or the log.
    fn in_set(&self, tree: TreeId) -> bool {
        tree == TreeId::Utxos && !self.legacy_utxos.load(std::sync::atomic::Ordering::SeqCst)
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
        if self.in_set(tree) {
            return Ok(self.utxo_set.get(key));
        }
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
        if tree.is_logged() || self.in_set(tree) {
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
        if self.in_set(tree) {
            let mut all = Vec::with_capacity(self.utxo_set.len());
            self.utxo_set.for_each(|k, v| {
                all.push((k.into(), v.into()));
                Ok::<(), StorageError>(())
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
        let (logged, rest): (Vec<_>, Vec<_>) =
            batch.ops.into_iter().partition(|(t, _, _)| t.is_logged());
        let (set_part, sled_part): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|(t, _, _)| self.in_set(*t));
        let ops = log_ops(&logged);
        if sled_part.is_empty() && set_part.is_empty() {
            if !ops.is_empty() {
                self.log.append(&ops)?;
                self.log.sync()?;
            }
            return Ok(());
        }
        let redo: Vec<layer1_log::Op<'_>> = log_ops(&set_part)
            .into_iter()
            .chain(log_ops(&sled_part))
            .collect();
        let fits = layer1_log::fits_one_frame(&ops, &redo);
        if !fits && set_part.is_empty() {
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
        let seq = if fits {
            let seq = self.log.append_redo(&ops, &redo)?;
            self.utxo_set.apply(seq, &set_ops(&set_part));
            seq
        } else {
            // The set's writes are too many for a frame (a snapshot's set): its file takes
            // them, written first as the state after the commit the small frame then makes
            // (see `utxo_set`: a file whose commit a crash lost is passed over).
            let sled_redo = log_ops(&sled_part);
            if !layer1_log::fits_one_frame(&ops, &sled_redo) {
                return Err(StorageError::Apply(format!(
                    "a commit of {} writes is too big for the log, even with the UTXO set's in \
                     a file of their own",
                    ops.len() + redo.len()
                )));
            }
            let next = self.log.last_seq().saturating_add(1);
            // From here a failure may leave a file standing for commit `next`: the log takes
            // no other commit under that number (it stops; the next open deletes the file).
            let give_up = |why: String| {
                self.log.poison(&why);
                StorageError::Apply(format!("{why}; restart the node"))
            };
            let prepared = (self.utxo_set.prepare(next, &set_ops(&set_part)))
                .map_err(|e| give_up(format!("the UTXO set file of commit {next}: {e}")))?;
            let seq = (self.log.append_redo(&ops, &sled_redo))
                .map_err(|e| give_up(format!("commit {next} after its UTXO set file: {e}")))?;
            if seq != next {
                // Only commits number groups, one at a time: this cannot differ.
                return Err(give_up(format!(
                    "the commit numbered {next} for its UTXO set file got {seq}"
                )));
            }
            self.utxo_set.install(prepared);
            seq
        };
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

    /// How many commits' redo waits for sled's checkpoint, and its bytes.
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
        self.checkpoint_with(true)
    }

    /// See [`checkpoint`](Self::checkpoint); `set_file`: whether to write the UTXO set's file
    /// if one is due (a bulk load in many batches writes it once, at its end).
    fn checkpoint_with(&self, set_file: bool) -> Result<()> {
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
        // The UTXO set's file, when one is due: the log keeps the redo it does not cover.
        let set_covers = match self.in_set(TreeId::Utxos) {
            true if set_file => self.utxo_set.checkpoint(false)?,
            true => self.utxo_set.covered(),
            false => through,
        };
        if through > 0 {
            self.log.checkpoint(through, set_covers)?;
        }
        // On this thread, not a committer's: the marker's sync, and any compaction due. So a
        // checkpoint leaves everything so far durable, whatever `flush` would have.
        let synced_through = self.log.last_seq();
        self.log.sync()?;
        // Files older than the newest one a synced commit backs are never loaded again.
        self.utxo_set.remove_older_files(synced_through)?;
        Ok(())
    }

    /// Loads records in bulk (a restore into a directory no node uses yet): each sled tree's
    /// writes as one batch, with no atomicity across trees, the index records as a run file
    /// each, the UTXO set's into memory (its file is written by the next [`flush`] or
    /// [`checkpoint`], which the caller makes at the end), and the layer-1 writes appended.
    ///
    /// [`flush`]: Self::flush
    /// [`checkpoint`]: Self::checkpoint
    pub fn import(&self, batch: WriteBatch) -> Result<()> {
        let batch = self.store_block_bodies(batch)?;
        self.checkpoint_with(false)?;
        let mut per_tree: Vec<sled::Batch> =
            TreeId::ALL.iter().map(|_| Default::default()).collect();
        let mut used = [false; TreeId::ALL.len()];
        let mut logged = WriteBatch::new();
        let mut index_records = std::collections::BTreeMap::<TreeId, Vec<_>>::new();
        let mut set_part = Vec::new();
        for (tree, key, value) in batch.ops {
            if self.in_set(tree) {
                set_part.push((tree, key, value));
                continue;
            }
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
        // Written to a set file by the flush the unlogged mark brings.
        self.utxo_set.apply_unlogged(&set_ops(&set_part));
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
        // What the next open would do: the set from its file, the synced redo applied again.
        self.load_set()?;
        self.redo_pending()?;
        Ok(lost)
    }

    /// Bytes on disk: sled's files, the layer-1 log, the block files, the index files and the
    /// UTXO set's file.
    pub fn size_on_disk(&self) -> Result<u64> {
        let runs: u64 = (self.indexes.iter())
            .flat_map(|ix| ix.stats())
            .map(|(_, (_, _, bytes))| bytes)
            .sum();
        let set = self.utxo_set.file_bytes();
        Ok(self.db.size_on_disk()? + self.log.sizes().0 + self.blocks.size_on_disk() + runs + set)
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
        let mut visit = |key: &[u8], raw: &[u8]| {
            let outpoint = OutPoint::from_key(key).ok_or_else(|| StorageError::Corrupt {
                tree: TreeId::Utxos.name(),
                key: hex::encode(key),
                reason: "key is not a 36-byte outpoint".into(),
            })?;
            let entry: UtxoEntry = decode_record(TreeId::Utxos, key, raw)?;
            f(outpoint, entry);
            Ok::<(), StorageError>(())
        };
        if self.in_set(TreeId::Utxos) {
            return self.utxo_set.for_each(visit);
        }
        for item in self.tree(TreeId::Utxos).iter() {
            let (key, raw) = item?;
            visit(&key, &raw)?;
        }
        Ok(())
    }
}

/// One write: a key and its new value, or `None` to remove it.
type Write<'a> = (&'a Vec<u8>, &'a Option<Vec<u8>>);

/// Writes `batch` into sled as one plain batch per tree, `meta` (the chain tip) last, so a
/// reader never sees a tip ahead of the records it names.
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
        if !writes.is_empty() {
            tree.apply_batch(sled_batch(writes))?;
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

/// A batch's writes as the log takes them.
fn log_ops(writes: &[batch::BatchOp]) -> Vec<layer1_log::Op<'_>> {
    (writes.iter())
        .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
        .collect()
}

/// A batch's `utxos` writes as the UTXO set takes them.
fn set_ops(writes: &[batch::BatchOp]) -> Vec<utxo_set::SetOp<'_>> {
    (writes.iter())
        .map(|(_, k, v)| (k.as_slice(), v.as_deref()))
        .collect()
}

fn decode_record<T: Canonical>(tree: TreeId, key: &[u8], raw: &[u8]) -> Result<T> {
    T::from_bytes(raw).map_err(|e| StorageError::Corrupt {
        tree: tree.name(),
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
