//! The layer-1 tables (`utxo_states`, `final_txs`, `pending_txs`) and the recent tails of the
//! indexes that only grow (`tx_index`, `address_txs`): kept in memory, made durable by an
//! append-only log beside the sled database.
//!
//! Layer 1 changes a few records for every lock and every finalization, and forgets them one
//! block later; an index tail gains a few records per transaction and leaves for the index
//! files (`indexes`) once it is a few seconds of traffic long. Written into sled, those
//! short-lived records were most of a busy node's disk work (each sled write rewrites a page
//! in memory and appends it to sled's log, and sled's space grows with the writes, not with
//! what stays). Here each change is one append to the log, and the live records stay in
//! memory.
//!
//! ```text
//! append(batch) ─► tables (memory, read at once) + buffer ─► sync: write, fdatasync
//!                                                               │ (the barrier before a vote)
//!                                          log grown 2× past what is live ─► compact:
//!                                          write the tables to layer1.log.new, fsync, rename
//! ```
//!
//! **Redo of commits.** The log is also the database's write-ahead log: a commit's sled and
//! UTXO-set writes go into the same frame as its layer-1 writes, as a numbered *redo* group,
//! and are durable once that frame is synced; sled then applies its part without a
//! transaction and flushes in its own time, the set its part in memory. A *checkpoint* (sled
//! flushed and its barrier passed, see `Storage`) appends a marker with three numbers: the
//! newest group sled holds, the newest group dropped (also covered by a set file, see
//! `utxo_set`), and the newest group numbered. Groups between the two are kept with their set
//! writes only. At open, the groups kept are handed back to be applied again, in order, to
//! whichever store lacks them (blind puts and removals: applying them twice gives the same
//! records).
//!
//! A batch is one frame (`length ‖ checksum ‖ operations`), so it comes back whole or not at
//! all. At open the log is replayed; a frame cut short by a crash, or one whose checksum fails,
//! ends the replay there and the file is truncated to the last whole frame, with a warning:
//! only what no barrier covered can be in it.

use super::log_table::{Record, Table};
use super::schema::TreeId;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The log's file name in the data directory's database folder.
pub const FILE_NAME: &str = "layer1-v3.log";
/// The names of the log in older schemas: before its checkpoint markers named sled's
/// coverage and the log's apart (schema 8 and older), and before it held index tails (schema
/// 6 and older). An older binary would read the newer frames as damage and cut the log short
/// there, dropping the locks behind them; under the new name it finds no log of its own, then
/// refuses the newer schema before it writes anything. Each old format is a subset of the new.
const OLD_FILE_NAMES: [&str; 2] = ["layer1-v2.log", "layer1.log"];

/// The trees kept here rather than in sled. Their position is their slot number in a frame:
/// new trees go at the end.
pub const LOGGED: [TreeId; 5] = [
    TreeId::UtxoStates,
    TreeId::FinalTxs,
    TreeId::PendingTxs,
    TreeId::TxIndex,
    TreeId::AddressTxs,
];

/// A frame longer than this is damage, not data: writers split larger batches.
const MAX_FRAME: usize = 64 << 20;
/// Writers close a frame once its payload reaches this size (one transaction's records are a
/// few hundred bytes; only bulk loads and compaction reach it).
const FRAME_TARGET: usize = 16 << 20;
/// A dropped tail longer than this is more than a crash between two syncs leaves (appends are
/// synced at least every [`WRITE_OUT_BYTES`]): logged as an error, not a warning.
const CRASH_TAIL_BYTES: usize = 2 * WRITE_OUT_BYTES + FRAME_TARGET;
/// Compaction waits until the log holds at least this much...
///
/// A compaction rewrites everything live, under the lock every append takes; at 2× live and
/// 8 MiB a busy node (≈ 4 MB of appends a second, a few MB live) rewrote its live records every
/// two seconds, as many bytes as it appended. At 4× and 32 MiB it does so every seven or so,
/// and an open replays at most that much more (a fraction of a second).
const COMPACT_MIN_BYTES: u64 = 32 << 20;
/// ...and this many times what is live.
const COMPACT_RATIO: u64 = 4;
/// Buffered appends are written out (not synced) once they reach this size.
const WRITE_OUT_BYTES: usize = 1 << 20;
/// Records the index mover copies or removes per hold of the lock (≈ a millisecond's work).
const LOCK_STEP: usize = 4_096;

const PUT: u8 = 1;
const REMOVE: u8 = 0;
/// Slots past the tables' in a frame: a sled write to redo is slot `REDO_BASE + tree index`;
/// `REDO_SEQ` (key: the group's number) opens a redo group, whose writes follow it in the same
/// frame; `CHECKPOINT` (key: a group number) says sled holds every group up to it durably.
const REDO_BASE: u8 = 64;
const REDO_SEQ: u8 = 250;
const CHECKPOINT: u8 = 251;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("layer-1 log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer-1 log {path}: a record for tree {tree}, which is not kept in the log")]
    NotLogged { path: PathBuf, tree: &'static str },
    #[error("layer-1 log {path} failed earlier ({reason}); restart the node")]
    Poisoned { path: PathBuf, reason: String },
}

/// A commit's sled writes, kept until a checkpoint covers them.
#[derive(Clone, Debug)]
pub(super) struct Redo {
    pub(super) seq: u64,
    pub(super) ops: Vec<(TreeId, Vec<u8>, Option<Vec<u8>>)>,
    bytes: u64,
}

pub(super) struct Layer1Log {
    inner: Mutex<Inner>,
    /// Held by a [`sync`](Layer1Log::sync) for its whole length: syncs take turns, while
    /// appends, which take only `inner`, go on during an `fdatasync`.
    syncing: Mutex<()>,
}

struct Inner {
    dir: PathBuf,
    /// Shared with a sync running outside the lock (compaction replaces it; the sync keeps
    /// the handle it started with).
    file: Arc<File>,
    tables: [Table; LOGGED.len()],
    /// Frames appended and not yet written to the file.
    buffer: Vec<u8>,
    /// Bytes in the file (written, maybe not synced).
    written: u64,
    /// Bytes the last fdatasync covered.
    synced: u64,
    /// Bytes of keys and values in the tables.
    live: u64,
    /// Why the log cannot be written any more (a failure that left it in doubt).
    poisoned: Option<String>,
    /// Redo groups no checkpoint has covered yet, oldest first.
    redo: VecDeque<Redo>,
    /// Bytes of keys and values in `redo`.
    redo_bytes: u64,
    /// The number the next redo group gets.
    next_seq: u64,
    /// The newest redo group sled holds durably (groups up to it are kept only for the UTXO
    /// set's file, see `utxo_set`, and only its writes).
    sled_through: u64,
    /// The newest redo group dropped: what an open must find in sled and in a set file.
    dropped_through: u64,
}

/// One write: (tree, key, value or removal).
pub(super) type Op<'a> = (TreeId, &'a [u8], Option<&'a [u8]>);

impl Layer1Log {
    /// Opens (or creates) the log in `dir` and replays it.
    pub(super) fn open(dir: &Path) -> Result<Layer1Log, LogError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            if let Some(old) = OLD_FILE_NAMES
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.exists())
            {
                std::fs::rename(&old, &path).map_err(at(&path))?;
                sync_dir(dir)?;
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(at(&path))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(at(&path))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            tables: new_tables(),
            buffer: Vec::new(),
            written: 0,
            synced: 0,
            live: 0,
            poisoned: None,
            redo: VecDeque::new(),
            redo_bytes: 0,
            next_seq: 1,
            sled_through: 0,
            dropped_through: 0,
        };
        let whole = inner.replay(&raw);
        inner.keep_only_set_writes();
        let dropped = raw.len() - whole;
        if dropped > CRASH_TAIL_BYTES {
            tracing::error!(
                path = %path.display(),
                at_byte = whole,
                dropped_bytes = dropped,
                "the layer-1 log is damaged before its end, further back than a crash leaves: \
                 the records after the damage are dropped; check the disk (dmesg, smartctl)"
            );
        } else if dropped > 0 {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = dropped,
                "the layer-1 log ends in a frame cut short or damaged, as a crash between two \
                 syncs leaves it; the unsynced tail was dropped"
            );
        }
        if dropped > 0 {
            inner.file.set_len(whole as u64).map_err(at(&path))?;
            inner.file.sync_all().map_err(at(&path))?;
        }
        inner.written = whole as u64;
        inner.synced = whole as u64;
        sync_dir(dir)?;
        Ok(Layer1Log {
            inner: Mutex::new(inner),
            syncing: Mutex::new(()),
        })
    }

    /// Applies `ops` to the tables at once and appends them to the log as one frame, durable
    /// at the next [`sync`](Self::sync).
    /// Batches larger than [`FRAME_TARGET`] (bulk loads only) span several frames and are not
    /// atomic.
    pub(super) fn append(&self, ops: &[Op<'_>]) -> Result<(), LogError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.lock().append(ops)
    }

    /// Appends `ops` (layer-1 writes) and `redo` (sled writes) as one frame, so a crash keeps
    /// both or neither, and returns the redo group's number. Durable at the next
    /// [`sync`](Self::sync), which the caller makes at once; it fails only before changing
    /// anything. The caller checks [`fits_one_frame`] first.
    pub(super) fn append_redo(&self, ops: &[Op<'_>], redo: &[Op<'_>]) -> Result<u64, LogError> {
        let mut inner = self.lock();
        inner.check_usable()?;
        inner.check_logged(ops)?;
        let seq = inner.next_seq;
        let mut group = Redo {
            seq,
            ops: Vec::with_capacity(redo.len()),
            bytes: 0,
        };
        let buffer = &mut inner.buffer;
        buffer.reserve(encoded_len(ops) + encoded_len(redo) + 16 + FRAME_HEADER);
        let frame = begin_frame(buffer);
        for (tree, key, value) in ops {
            if let Some(slot) = slot(*tree) {
                encode_op(buffer, slot, key, *value);
            }
        }
        encode_op(buffer, REDO_SEQ as usize, &seq.to_le_bytes(), None);
        for (tree, key, value) in redo {
            encode_op(buffer, usize::from(REDO_BASE) + tree.index(), key, *value);
            group.bytes += op_bytes(key, *value);
            group
                .ops
                .push((*tree, key.to_vec(), value.map(<[u8]>::to_vec)));
        }
        end_frame(buffer, frame);
        for (tree, key, value) in ops {
            if let Some(slot) = slot(*tree) {
                inner.apply(slot, key, value.map(<[u8]>::to_vec));
            }
        }
        inner.push_redo(group);
        Ok(seq)
    }

    /// Records that sled holds every redo group up to `sled_through` durably, and that no
    /// one needs the groups up to `drop_through` (at most `sled_through`) any more: those are
    /// dropped, and of the others sled holds only the UTXO set's writes are kept (the set's
    /// file is the one thing that may still lack them). The marker is durable at the next
    /// sync; until then a crash only redoes them.
    pub(super) fn checkpoint(&self, sled_through: u64, drop_through: u64) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner.check_usable()?;
        let drop_through = drop_through.min(sled_through);
        inner.sled_through = inner.sled_through.max(sled_through);
        inner.drop_redo_through(drop_through);
        inner.keep_only_set_writes();
        let mut payload = Vec::with_capacity(32);
        let key = checkpoint_key(sled_through, drop_through, inner.next_seq - 1);
        encode_op(&mut payload, CHECKPOINT as usize, &key, None);
        push_frame(&mut inner.buffer, &payload);
        Ok(())
    }

    /// The newest redo group dropped (see [`checkpoint`](Self::checkpoint)): a set file
    /// older than it would lack what the log no longer holds.
    pub(super) fn dropped_through(&self) -> u64 {
        self.lock().dropped_through
    }

    /// The newest redo group the log holds or held (0: none yet).
    pub(super) fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Refuses every later write: something the log holds is in doubt (`why` says what). The
    /// node stops; the next open replays the file as it is.
    pub(super) fn poison(&self, why: &str) {
        let mut inner = self.lock();
        if inner.poisoned.is_none() {
            inner.poisoned = Some(why.to_string());
        }
    }

    /// The redo groups the log keeps, oldest first, and the newest one sled holds (to apply
    /// again at open what sled and the UTXO set lack).
    pub(super) fn pending_redo(&self) -> (Vec<Redo>, u64) {
        let inner = self.lock();
        (inner.redo.iter().cloned().collect(), inner.sled_through)
    }

    /// How many redo groups wait for sled's checkpoint, and their bytes.
    pub(super) fn redo_backlog(&self) -> (usize, u64) {
        let inner = self.lock();
        let behind = inner
            .redo
            .iter()
            .rev()
            .take_while(|g| g.seq > inner.sled_through);
        behind.fold((0, 0), |(n, bytes), g| (n + 1, bytes + g.bytes))
    }

    /// Makes every append so far durable (write, then `fdatasync`), and compacts the log when
    /// it has grown well past what is live.
    ///
    /// The `fdatasync` runs outside the log's lock: commits and layer-1 steps append while
    /// the disk works (an `fdatasync` under the lock held every append of the node for its
    /// length, a serial hand-off between the consensus owner and the vote flusher). What this
    /// sync promises is fixed when it starts: the bytes written by then.
    pub(super) fn sync(&self) -> Result<(), LogError> {
        let _turn = self
            .syncing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (file, target, path, behind) = {
            let mut inner = self.lock();
            inner.check_usable()?;
            inner.write_out()?;
            let behind = inner.synced < inner.written;
            (Arc::clone(&inner.file), inner.written, inner.path(), behind)
        };
        if behind {
            let result = file.sync_data();
            let mut inner = self.lock();
            if let Err(e) = result {
                // Whether the kernel still holds the pages is unknown after a failed fsync:
                // nothing written since the last good one can be trusted.
                inner.poisoned = Some(format!("fdatasync failed: {e}"));
                return Err(at(&path)(e));
            }
            // Only a sync compacts, and syncs take turns: the file is still the one synced.
            inner.synced = inner.synced.max(target);
        }
        let mut inner = self.lock();
        if inner.written >= COMPACT_MIN_BYTES
            && inner.written > COMPACT_RATIO * inner.live.max(1 << 20)
        {
            inner.compact()?;
        }
        Ok(())
    }

    pub(super) fn get(&self, tree: TreeId, key: &[u8]) -> Option<Vec<u8>> {
        let slot = slot(tree)?;
        self.lock().tables[slot].get(key).cloned()
    }

    /// A copy of one table's records whose keys are in `from..=to`, in key order.
    pub(super) fn range(&self, tree: TreeId, from: &[u8], to: &[u8]) -> Vec<Record> {
        match slot(tree) {
            Some(slot) => self.lock().tables[slot].range(from, to),
            None => Vec::new(),
        }
    }

    /// A copy of the first records of one table with keys past `after` (from the start, if
    /// `None`), in key order, up to `most` of those `keep` accepts (the others are passed
    /// over). Looks at [`LOCK_STEP`] records per hold of the lock, so commits and votes wait
    /// for one step at most.
    pub(super) fn next_records(
        &self,
        tree: TreeId,
        after: Option<&[u8]>,
        most: usize,
        keep: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(slot) = slot(tree) else {
            return Vec::new();
        };
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut from: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        while out.len() < most {
            let inner = self.lock();
            let mut seen = 0;
            for (k, v) in inner.tables[slot].after(from.as_deref()) {
                seen += 1;
                if keep(k, v) {
                    out.push((k.to_vec(), v.to_vec()));
                }
                if out.len() == most || seen == LOCK_STEP {
                    from = Some(k.to_vec());
                    break;
                }
            }
            if seen < LOCK_STEP {
                break;
            }
        }
        out
    }

    /// How many records one table holds.
    pub(super) fn len(&self, tree: TreeId) -> usize {
        slot(tree).map_or(0, |slot| self.lock().tables[slot].len())
    }

    /// Removes each of `records` that still has the value given (a record written again
    /// meanwhile stays), [`LOCK_STEP`] records per append, durable at the next
    /// [`sync`](Self::sync). Returns how many it removed.
    pub(super) fn remove_unchanged(
        &self,
        tree: TreeId,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<usize, LogError> {
        let Some(slot) = slot(tree) else {
            return Ok(0);
        };
        let mut removed = 0;
        for step in records.chunks(LOCK_STEP) {
            let mut inner = self.lock();
            let ops: Vec<Op<'_>> = step
                .iter()
                .filter(|(k, v)| inner.tables[slot].get(k) == Some(v))
                .map(|(k, _)| (tree, k.as_slice(), None))
                .collect();
            if !ops.is_empty() {
                inner.append(&ops)?;
            }
            removed += ops.len();
        }
        Ok(removed)
    }

    /// A copy of one table's records, in key order.
    pub(super) fn records(&self, tree: TreeId) -> Vec<Record> {
        match slot(tree) {
            Some(slot) => self.lock().tables[slot].sorted(),
            None => Vec::new(),
        }
    }

    /// Forgets every append the last sync did not cover, as a power cut would, and reloads
    /// the tables from the file. Returns how many frames were lost.
    pub(super) fn lose_unsynced(&self) -> Result<usize, LogError> {
        let mut inner = self.lock();
        let path = inner.path();
        let mut lost = count_frames(&inner.buffer);
        inner.buffer.clear();
        let mut raw = Vec::new();
        let mut file = File::open(&path).map_err(at(&path))?;
        file.read_to_end(&mut raw).map_err(at(&path))?;
        let synced = (inner.synced as usize).min(raw.len());
        lost += count_frames(&raw[synced..]);
        inner.file.set_len(synced as u64).map_err(at(&path))?;
        inner.tables = new_tables();
        inner.live = 0;
        inner.redo.clear();
        inner.redo_bytes = 0;
        inner.next_seq = 1;
        inner.sled_through = 0;
        inner.dropped_through = 0;
        let whole = inner.replay(&raw[..synced]);
        inner.written = whole as u64;
        inner.synced = whole as u64;
        Ok(lost)
    }

    /// Size of the log file and of the live records, in bytes.
    pub(super) fn sizes(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.written + inner.buffer.len() as u64, inner.live)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-append leaves whole records: the tables change one record at a time.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Layer1Log {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "the layer-1 log could not be written at close");
        }
    }
}

impl Inner {
    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// See [`Layer1Log::append`].
    fn append(&mut self, ops: &[Op<'_>]) -> Result<(), LogError> {
        self.check_usable()?;
        self.check_logged(ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        // Encoded in place in the buffer (no payload copied), a frame closed every
        // `FRAME_TARGET` bytes.
        let buffer = &mut self.buffer;
        buffer.reserve(encoded_len(ops).min(FRAME_TARGET) + FRAME_HEADER);
        let mut frame = begin_frame(buffer);
        for (tree, key, value) in ops {
            if buffer.len() - frame - FRAME_HEADER >= FRAME_TARGET {
                end_frame(buffer, frame);
                frame = begin_frame(buffer);
            }
            if let Some(slot) = slot(*tree) {
                encode_op(buffer, slot, key, *value);
            }
        }
        end_frame(buffer, frame);
        for (tree, key, value) in ops {
            if let Some(slot) = slot(*tree) {
                self.apply(slot, key, value.map(<[u8]>::to_vec));
            }
        }
        // Written and synced at least this often, so a crash never leaves a long tail in doubt
        // (see `CRASH_TAIL_BYTES`).
        if self.buffer.len() >= WRITE_OUT_BYTES {
            self.write_out()?;
            self.sync_data()?;
        }
        Ok(())
    }

    /// Refuses a batch that names a tree the log does not keep, before anything changes.
    fn check_logged(&self, ops: &[Op<'_>]) -> Result<(), LogError> {
        match ops.iter().find(|(tree, _, _)| slot(*tree).is_none()) {
            Some((tree, _, _)) => Err(LogError::NotLogged {
                path: self.path(),
                tree: tree.name(),
            }),
            None => Ok(()),
        }
    }

    fn apply(&mut self, slot: usize, key: &[u8], value: Option<Vec<u8>>) {
        let klen = key.len() as u64;
        let old = match value {
            Some(v) => {
                self.live += klen + v.len() as u64;
                self.tables[slot].insert(key, v)
            }
            None => self.tables[slot].remove(key),
        };
        if let Some(old) = old {
            self.live = self.live.saturating_sub(klen + old.len() as u64);
        }
    }

    fn push_redo(&mut self, group: Redo) {
        self.next_seq = self.next_seq.max(group.seq.saturating_add(1));
        self.redo_bytes += group.bytes;
        self.live += group.bytes;
        self.redo.push_back(group);
    }

    /// Strips the groups sled holds down to their UTXO set writes, and forgets those left
    /// with none.
    fn keep_only_set_writes(&mut self) {
        let sled_through = self.sled_through;
        let mut freed = 0;
        for g in self.redo.iter_mut().take_while(|g| g.seq <= sled_through) {
            if g.ops.iter().any(|(t, _, _)| *t != TreeId::Utxos) {
                g.ops.retain(|(t, _, _)| *t == TreeId::Utxos);
                let kept = g
                    .ops
                    .iter()
                    .map(|(_, k, v)| op_bytes(k, v.as_deref()))
                    .sum();
                freed += g.bytes - kept;
                g.bytes = kept;
            }
        }
        self.redo
            .retain(|g| g.seq > sled_through || !g.ops.is_empty());
        self.redo_bytes = self.redo_bytes.saturating_sub(freed);
        self.live = self.live.saturating_sub(freed);
    }

    fn drop_redo_through(&mut self, through: u64) {
        self.dropped_through = self.dropped_through.max(through);
        while self.redo.front().is_some_and(|g| g.seq <= through) {
            if let Some(g) = self.redo.pop_front() {
                self.redo_bytes = self.redo_bytes.saturating_sub(g.bytes);
                self.live = self.live.saturating_sub(g.bytes);
            }
        }
    }

    /// Applies every whole frame of `raw`; returns the length of the whole frames.
    fn replay(&mut self, raw: &[u8]) -> usize {
        let mut at = 0;
        while let Some((payload, next)) = next_frame(raw, at) {
            let Some(ops) = decode_ops(payload) else {
                break;
            };
            let mut group: Option<Redo> = None;
            for (slot, key, value) in ops {
                match slot {
                    Slot::Table(slot) => self.apply(slot, &key, value),
                    Slot::RedoStart(seq) => {
                        if let Some(g) = group.replace(Redo {
                            seq,
                            ops: Vec::new(),
                            bytes: 0,
                        }) {
                            self.push_redo(g);
                        }
                    }
                    Slot::Redo(tree) => {
                        // `decode_ops` only passes redo writes that follow their group's start.
                        if let Some(g) = group.as_mut() {
                            g.bytes += op_bytes(&key, value.as_deref());
                            g.ops.push((tree, key, value));
                        }
                    }
                    Slot::Checkpoint {
                        sled_through,
                        drop_through,
                        last_seq,
                    } => {
                        self.sled_through = self.sled_through.max(sled_through);
                        self.drop_redo_through(drop_through);
                        // A compacted log may keep no group at all: the marker says how far
                        // the numbers went.
                        self.next_seq = self.next_seq.max(last_seq.saturating_add(1));
                    }
                }
            }
            if let Some(g) = group {
                self.push_redo(g);
            }
            at = next;
        }
        at
    }

    fn sync_data(&mut self) -> Result<(), LogError> {
        if self.synced < self.written {
            if let Err(e) = self.file.sync_data() {
                // Whether the kernel still holds the pages is unknown after a failed fsync:
                // nothing written since the last good one can be trusted.
                self.poisoned = Some(format!("fdatasync failed: {e}"));
                return Err(at(&self.path())(e));
            }
            self.synced = self.written;
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<(), LogError> {
        match &self.poisoned {
            Some(reason) => Err(LogError::Poisoned {
                path: self.path(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn write_out(&mut self) -> Result<(), LogError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = self.path();
        if let Err(e) = (&*self.file).write_all(&self.buffer) {
            // A short write (a full disk) leaves part of a frame: cut it, so a retry appends
            // whole frames after whole frames.
            if let Err(cut) = self.file.set_len(self.written) {
                self.poisoned = Some(format!("a failed write could not be cut back: {cut}"));
            }
            return Err(at(&path)(e));
        }
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Rewrites the log as the tables' live records: written to a new file, synced, renamed
    /// over the old one, and the directory synced, so a crash at any point leaves one whole
    /// log (the old or the new).
    ///
    /// Until the rename, a failure only costs the chance to shrink (warned, tried again at the
    /// next sync); after it, the open file is the old, unlinked one, so the log is poisoned
    /// and the node stops rather than append where no restart would look.
    fn compact(&mut self) -> Result<(), LogError> {
        let path = self.path();
        let fresh = self.dir.join(format!("{FILE_NAME}.new"));
        let mut out = Vec::with_capacity(self.live as usize + 4096);
        let mut payload = Vec::new();
        // First what the checkpoints said: sled's coverage, what was dropped, and how far the
        // numbers went.
        let key = checkpoint_key(self.sled_through, self.dropped_through, self.next_seq - 1);
        encode_op(&mut payload, CHECKPOINT as usize, &key, None);
        push_frame(&mut out, &payload);
        payload.clear();
        for (slot, table) in self.tables.iter().enumerate() {
            for (k, v) in table.iter() {
                encode_op(&mut payload, slot, k, Some(v));
                if payload.len() >= FRAME_TARGET {
                    push_frame(&mut out, &payload);
                    payload.clear();
                }
            }
        }
        if !payload.is_empty() {
            push_frame(&mut out, &payload);
        }
        // Each redo group no checkpoint covered stays one whole frame.
        for group in &self.redo {
            payload.clear();
            encode_op(
                &mut payload,
                REDO_SEQ as usize,
                &group.seq.to_le_bytes(),
                None,
            );
            for (tree, key, value) in &group.ops {
                encode_op(
                    &mut payload,
                    usize::from(REDO_BASE) + tree.index(),
                    key,
                    value.as_deref(),
                );
            }
            push_frame(&mut out, &payload);
        }
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&fresh)
            .and_then(|mut file| {
                file.write_all(&out)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&fresh, &path));
        if let Err(e) = written {
            tracing::warn!(path = %fresh.display(), error = %e, "could not compact the layer-1 log; it keeps growing until a later try succeeds");
            let _ = std::fs::remove_file(&fresh);
            return Ok(());
        }
        let reopened = sync_dir(&self.dir).and_then(|()| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(at(&path))
        });
        match reopened {
            Ok(file) => self.file = Arc::new(file),
            Err(e) => {
                self.poisoned = Some(format!("reopening after compaction failed: {e}"));
                return Err(e);
            }
        }
        tracing::debug!(
            from_bytes = self.written,
            to_bytes = out.len(),
            "compacted the layer-1 log"
        );
        self.written = out.len() as u64;
        self.synced = self.written;
        Ok(())
    }
}

/// A checkpoint marker's key: sled's coverage, what was dropped, the newest group numbered.
fn checkpoint_key(sled_through: u64, drop_through: u64, last_seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&sled_through.to_le_bytes());
    key[8..16].copy_from_slice(&drop_through.to_le_bytes());
    key[16..].copy_from_slice(&last_seq.to_le_bytes());
    key
}

/// What a redo write counts for in the log's memory.
fn op_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    (key.len() + value.map_or(0, <[u8]>::len)) as u64
}

fn slot(tree: TreeId) -> Option<usize> {
    LOGGED.iter().position(|t| *t == tree)
}

fn new_tables() -> [Table; LOGGED.len()] {
    LOGGED.map(Table::for_tree)
}

fn encode_op(out: &mut Vec<u8>, slot: usize, key: &[u8], value: Option<&[u8]>) {
    out.push(slot as u8);
    out.push(if value.is_some() { PUT } else { REMOVE });
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(v) = value {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// Where a decoded operation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Table(usize),
    RedoStart(u64),
    Redo(TreeId),
    Checkpoint {
        /// Sled holds the groups up to it.
        sled_through: u64,
        /// The groups up to it are dropped.
        drop_through: u64,
        /// The newest group numbered so far.
        last_seq: u64,
    },
}

type DecodedOp = (Slot, Vec<u8>, Option<Vec<u8>>);

/// The bytes `ops` take in a frame.
fn encoded_len(ops: &[Op<'_>]) -> usize {
    ops.iter()
        .map(|(_, k, v)| 10 + k.len() + v.map_or(0, <[u8]>::len))
        .sum()
}

/// Whether a commit of these layer-1 and sled writes fits in one frame (see
/// [`Layer1Log::append_redo`]).
pub(super) fn fits_one_frame(ops: &[Op<'_>], redo: &[Op<'_>]) -> bool {
    encoded_len(ops) + encoded_len(redo) + 16 <= FRAME_TARGET
}

/// The operations of one frame, or `None` if the payload is not well formed (damage).
fn decode_ops(mut p: &[u8]) -> Option<Vec<DecodedOp>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (head, tail) = p.split_at(n);
        *p = tail;
        Some(head)
    }
    fn len(p: &mut &[u8]) -> Option<usize> {
        let b: [u8; 4] = take(p, 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    }
    fn seq(key: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(key.try_into().ok()?))
    }
    let mut ops = Vec::new();
    let mut in_group = false;
    while !p.is_empty() {
        let head = take(&mut p, 2)?;
        let (slot, kind) = (head[0], head[1]);
        let klen = len(&mut p)?;
        let key = take(&mut p, klen)?.to_vec();
        let slot = match slot {
            s if usize::from(s) < LOGGED.len() => Slot::Table(usize::from(s)),
            REDO_SEQ => {
                in_group = true;
                Slot::RedoStart(seq(&key)?)
            }
            // Schema 8 and older wrote one number for all three.
            CHECKPOINT if key.len() == 8 => Slot::Checkpoint {
                sled_through: seq(&key)?,
                drop_through: seq(&key)?,
                last_seq: seq(&key)?,
            },
            CHECKPOINT => Slot::Checkpoint {
                sled_through: seq(key.get(..8)?)?,
                drop_through: seq(key.get(8..16)?)?,
                last_seq: seq(key.get(16..)?)?,
            },
            s if s >= REDO_BASE && in_group => {
                Slot::Redo(*TreeId::ALL.get(usize::from(s - REDO_BASE))?)
            }
            _ => return None,
        };
        let value = match kind {
            PUT => {
                let vlen = len(&mut p)?;
                Some(take(&mut p, vlen)?.to_vec())
            }
            REMOVE => None,
            _ => return None,
        };
        ops.push((slot, key, value));
    }
    Some(ops)
}

/// The first four bytes of the payload's BLAKE3 hash: the log's frames and the block files'
/// records carry it.
pub(super) fn checksum(payload: &[u8]) -> [u8; 4] {
    let h = blake3::hash(payload);
    let mut c = [0u8; 4];
    c.copy_from_slice(&h.as_bytes()[..4]);
    c
}

/// A frame's length and checksum, before its payload.
const FRAME_HEADER: usize = 8;

/// Starts a frame at the end of `out`, to be encoded in place; returns where it starts.
fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    at
}

/// Fills in the header of the frame started at `at` over everything after it.
fn end_frame(out: &mut [u8], at: usize) {
    let (header, payload) = out[at..].split_at_mut(FRAME_HEADER);
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&checksum(payload));
}

/// A frame of a payload built apart (checkpoints, compaction).
fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let at = begin_frame(out);
    out.extend_from_slice(payload);
    end_frame(out, at);
}

/// The payload of the frame at `at` and where the next one starts, if the frame is whole and
/// its checksum holds.
fn next_frame(raw: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = raw.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    if len > MAX_FRAME {
        return None;
    }
    let end = at.checked_add(8)?.checked_add(len)?;
    let payload = raw.get(at + 8..end)?;
    (checksum(payload) == header[4..8]).then_some((payload, end))
}

fn count_frames(raw: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while let Some((_, next)) = next_frame(raw, at) {
        at = next;
        n += 1;
    }
    n
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(tree: TreeId, k: &'a [u8], v: &'a [u8]) -> Op<'a> {
        (tree, k, Some(v))
    }

    /// Appends go on while another thread syncs (the `fdatasync` is outside the lock), and
    /// whatever a sync returned for survives a power cut, across compactions too.
    #[test]
    fn appends_during_syncs_keep_every_promise() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Layer1Log::open(dir.path()).unwrap());
        let mut promised = 0u32;
        let syncer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    log.sync().unwrap();
                }
            })
        };
        // Big values, rewritten in place, so the log outgrows its live records and compacts.
        let value = vec![7u8; 16 << 10];
        for i in 0..4_000u32 {
            let key = (i % 64).to_be_bytes();
            let mut v = value.clone();
            v[..4].copy_from_slice(&i.to_be_bytes());
            log.append(&[put(TreeId::FinalTxs, &key, &v)]).unwrap();
            if i % 50 == 49 {
                log.sync().unwrap();
                promised = i;
            }
        }
        syncer.join().unwrap();
        let last = promised;
        log.lose_unsynced().unwrap();
        // Every key holds at least what it held at the last promise.
        for k in 0..64u32 {
            let newest_promised = (0..=last).rev().find(|i| i % 64 == k).unwrap();
            let got = log.get(TreeId::FinalTxs, &k.to_be_bytes()).unwrap();
            let at = u32::from_be_bytes(got[..4].try_into().unwrap());
            assert!(at >= newest_promised, "key {k}: {at} < {newest_promised}");
        }
        let (file, _) = log.sizes();
        assert!(file < 4_000 * (16 << 10), "the log compacted: {file} bytes");
    }

    #[test]
    fn appends_come_back_after_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Layer1Log::open(dir.path()).unwrap();
            log.append(&[
                put(TreeId::FinalTxs, b"a", b"1"),
                put(TreeId::PendingTxs, b"b", b"2"),
            ])
            .unwrap();
            log.append(&[(TreeId::PendingTxs, b"b", None)]).unwrap();
            log.sync().unwrap();
            log.append(&[put(TreeId::UtxoStates, b"c", b"3")]).unwrap();
        }
        // A torn frame at the end: half a header.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0]).unwrap();
        drop(f);
        let log = Layer1Log::open(dir.path()).unwrap();
        assert_eq!(log.get(TreeId::FinalTxs, b"a"), Some(b"1".to_vec()));
        assert_eq!(log.get(TreeId::PendingTxs, b"b"), None);
        assert_eq!(log.get(TreeId::UtxoStates, b"c"), Some(b"3".to_vec()));
        let (file, _) = log.sizes();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            file,
            "torn tail cut"
        );
    }

    #[test]
    fn a_damaged_frame_ends_the_replay_and_a_power_cut_loses_only_the_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let log = Layer1Log::open(dir.path()).unwrap();
        log.append(&[put(TreeId::FinalTxs, b"kept", b"1")]).unwrap();
        log.sync().unwrap();
        log.append(&[put(TreeId::FinalTxs, b"lost", b"2")]).unwrap();
        log.append(&[(TreeId::FinalTxs, b"kept", None)]).unwrap();
        assert_eq!(log.lose_unsynced().unwrap(), 2);
        assert_eq!(log.get(TreeId::FinalTxs, b"kept"), Some(b"1".to_vec()));
        assert_eq!(log.get(TreeId::FinalTxs, b"lost"), None);
        log.append(&[put(TreeId::FinalTxs, b"later", b"3")])
            .unwrap();
        log.sync().unwrap();
        drop(log);
        // Flip a byte in the last frame's payload: its checksum fails, the replay stops there.
        let path = dir.path().join(FILE_NAME);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        std::fs::write(&path, &raw).unwrap();
        let log = Layer1Log::open(dir.path()).unwrap();
        assert_eq!(log.get(TreeId::FinalTxs, b"kept"), Some(b"1".to_vec()));
        assert_eq!(log.get(TreeId::FinalTxs, b"later"), None);
    }

    #[test]
    fn an_index_tail_is_read_by_range_and_loses_only_the_records_still_as_copied() {
        let dir = tempfile::tempdir().unwrap();
        let log = Layer1Log::open(dir.path()).unwrap();
        for k in [b"a", b"b", b"c", b"d"] {
            log.append(&[put(TreeId::TxIndex, k, b"1")]).unwrap();
        }
        assert_eq!(log.len(TreeId::TxIndex), 4);
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(log.range(TreeId::TxIndex, b"b", b"c")), [b"b", b"c"]);
        assert!(log.range(TreeId::TxIndex, b"c", b"b").is_empty());
        let copied = log.next_records(TreeId::TxIndex, None, 3, |k, _| k != b"b");
        assert_eq!(keys(copied.clone()), [b"a", b"c", b"d"]);
        let after_a = log.next_records(TreeId::TxIndex, Some(b"a"), 2, |_, _| true);
        assert_eq!(keys(after_a), [b"b", b"c"]);
        // Written again after the copy: it stays.
        log.append(&[put(TreeId::TxIndex, b"c", b"2")]).unwrap();
        assert_eq!(log.remove_unchanged(TreeId::TxIndex, &copied).unwrap(), 2);
        log.sync().unwrap();
        drop(log);
        let log = Layer1Log::open(dir.path()).unwrap();
        assert_eq!(keys(log.records(TreeId::TxIndex)), [b"b", b"c"]);
        assert_eq!(log.get(TreeId::TxIndex, b"c"), Some(b"2".to_vec()));
        // Past one step of the lock: the copy and the removal go on where they stopped.
        let many: Vec<[u8; 4]> = (0..3 * LOCK_STEP as u32).map(u32::to_be_bytes).collect();
        let ops: Vec<Op<'_>> = many
            .iter()
            .map(|k| put(TreeId::AddressTxs, k, b""))
            .collect();
        log.append(&ops).unwrap();
        let even = |k: &[u8], _: &[u8]| k[3] % 2 == 0;
        let copied = log.next_records(TreeId::AddressTxs, None, LOCK_STEP + 10, even);
        assert_eq!(copied.len(), LOCK_STEP + 10);
        assert_eq!(
            copied.last().unwrap().0,
            ((LOCK_STEP as u32 + 9) * 2).to_be_bytes()
        );
        let all = log.next_records(TreeId::AddressTxs, None, usize::MAX, |_, _| true);
        assert_eq!(all.len(), many.len());
        assert_eq!(
            log.remove_unchanged(TreeId::AddressTxs, &all).unwrap(),
            all.len()
        );
        assert_eq!(log.len(TreeId::AddressTxs), 0);
    }

    #[test]
    fn a_log_under_an_old_name_is_taken_over() {
        for old in OLD_FILE_NAMES {
            let dir = tempfile::tempdir().unwrap();
            {
                let log = Layer1Log::open(dir.path()).unwrap();
                log.append(&[put(TreeId::UtxoStates, b"lock", b"1")])
                    .unwrap();
                // A schema-8 checkpoint marker: one number for both meanings.
                let mut payload = Vec::new();
                encode_op(&mut payload, CHECKPOINT as usize, &5u64.to_le_bytes(), None);
                push_frame(&mut log.lock().buffer, &payload);
                log.sync().unwrap();
            }
            std::fs::rename(dir.path().join(FILE_NAME), dir.path().join(old)).unwrap();
            let log = Layer1Log::open(dir.path()).unwrap();
            assert_eq!(log.get(TreeId::UtxoStates, b"lock"), Some(b"1".to_vec()));
            assert_eq!(log.last_seq(), 5, "{old}");
            assert_eq!(log.pending_redo().1, 5, "{old}");
            assert!(!dir.path().join(old).exists());
        }
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = Layer1Log::open(dir.path()).unwrap();
        let value = vec![7u8; 1000];
        // ≈ 41 MB appended in all: past the compaction threshold.
        for round in 0..80u32 {
            for i in 0..500u32 {
                let key = (round * 500 + i).to_be_bytes();
                log.append(&[put(TreeId::FinalTxs, &key, &value)]).unwrap();
                if round < 79 {
                    log.append(&[(TreeId::FinalTxs, &key, None)]).unwrap();
                }
            }
            log.sync().unwrap();
        }
        let (file, live) = log.sizes();
        assert!(file < COMPACT_MIN_BYTES + (1 << 20), "compacted: {file}");
        assert_eq!(live, 500 * (4 + 1000));
        drop(log);
        let log = Layer1Log::open(dir.path()).unwrap();
        assert_eq!(log.records(TreeId::FinalTxs).len(), 500);
        assert!(log
            .get(TreeId::FinalTxs, &(79 * 500u32).to_be_bytes())
            .is_some());
        assert!(log.get(TreeId::FinalTxs, &0u32.to_be_bytes()).is_none());
    }

    #[test]
    fn redo_comes_back_until_a_checkpoint_covers_it_and_survives_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let lock = put(TreeId::UtxoStates, b"op", b"locked");
        {
            let log = Layer1Log::open(dir.path()).unwrap();
            let first = log
                .append_redo(&[lock], &[put(TreeId::Peers, b"a", b"1")])
                .unwrap();
            let second = log
                .append_redo(&[], &[(TreeId::Peers, b"a".as_slice(), None)])
                .unwrap();
            assert!(second > first);
            log.checkpoint(first, first).unwrap();
            log.sync().unwrap();
            assert_eq!(log.redo_backlog().0, 1);
        }
        let log = Layer1Log::open(dir.path()).unwrap();
        let (pending, sled_through) = log.pending_redo();
        assert_eq!(sled_through, pending[0].seq - 1);
        assert_eq!(pending.len(), 1, "the checkpoint covered the first");
        assert_eq!(pending[0].ops, vec![(TreeId::Peers, b"a".to_vec(), None)]);
        assert_eq!(log.get(TreeId::UtxoStates, b"op"), Some(b"locked".to_vec()));
        log.lock().compact().unwrap();
        let third = log
            .append_redo(
                &[],
                &[
                    put(TreeId::Peers, b"b", b"2"),
                    put(TreeId::Utxos, b"u", b"3"),
                ],
            )
            .unwrap();
        assert!(
            third > pending[0].seq,
            "numbers keep growing across a reopen"
        );
        log.sync().unwrap();
        drop(log);
        let log = Layer1Log::open(dir.path()).unwrap();
        let seqs: Vec<u64> = log.pending_redo().0.iter().map(|g| g.seq).collect();
        assert_eq!(seqs, vec![pending[0].seq, third]);
        // Sled holds them all; the UTXO set's file still lacks the last one's output.
        log.checkpoint(third, third - 1).unwrap();
        assert_eq!(log.redo_backlog(), (0, 0), "sled has nothing left to take");
        let (kept, _) = log.pending_redo();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].ops,
            vec![(TreeId::Utxos, b"u".to_vec(), Some(b"3".to_vec()))],
            "only the set's write is kept"
        );
        assert_eq!(log.dropped_through(), third - 1);
        log.sync().unwrap();
        log.lock().compact().unwrap();
        drop(log);
        let log = Layer1Log::open(dir.path()).unwrap();
        let (kept, sled_through) = log.pending_redo();
        assert_eq!(kept.iter().map(|g| g.seq).collect::<Vec<_>>(), vec![third]);
        assert_eq!(
            sled_through, third,
            "a compacted log remembers sled's coverage"
        );
        log.checkpoint(third, third).unwrap();
        log.lock().compact().unwrap();
        drop(log);
        let log = Layer1Log::open(dir.path()).unwrap();
        assert!(log.pending_redo().0.is_empty());
        assert_eq!(log.last_seq(), third, "and how far the numbers went");
        assert_eq!(log.dropped_through(), third, "and what it dropped");
    }

    #[test]
    fn a_tree_kept_in_sled_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Layer1Log::open(dir.path()).unwrap();
        let err = log.append(&[put(TreeId::Utxos, b"k", b"v")]).unwrap_err();
        assert!(err.to_string().contains("utxos"), "{err}");
    }
}
