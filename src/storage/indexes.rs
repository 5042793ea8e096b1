//! The indexes that only grow (`tx_index`, `address_txs`): their recent tail in the layer-1
//! log (in memory), the rest in run files (see `runs`), and the thread that moves one into
//! the other.
//!
//! Commits write index records to the log's tables with their block (one frame, durable
//! together). Once a tail passes [`TAIL_RECORDS`], the mover thread copies it, sorted, into a
//! new run (synced and visible to readers first), then removes from the tail exactly the
//! records it copied (those still holding the value it copied). The removals are appends,
//! durable at the log's next sync: if a crash loses them, the records are in the tail and in
//! a run, which reads tolerate, and the next move copies them again. The same thread merges
//! runs.
//!
//! Readers look in the tail first and in the runs after, with no lock: a record leaves the
//! tail only after its run is visible, so a point read that misses it in the tail finds it in
//! the runs, and a scan copies its range of the tail (bounded: at most a few moves' worth)
//! before it takes the list of runs.
//!
//! Schema 6 kept the tails in sled: at open, whatever sled still holds of them moves to runs
//! the same way before the mover starts, so reads never need to look in sled.
//!
//! A simulation's journaled database has no mover: everything stays in the tail, so a seeded
//! run does the same thing every time.

use super::layer1_log::{Layer1Log, LogError};
use super::runs::{Merged, RunError, RunSet, Source};
use super::schema::TreeId;
use super::StorageError;
use crate::types::{Canonical, TxLocation};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records in a tail past which it moves to a run (so also the smallest run a steady stream
/// of blocks makes).
pub const TAIL_RECORDS: u64 = 65_536;
/// Most records one move copies (a tail in sled left by schema 6, or a restore's, moves in
/// pieces, each held in memory once).
const MAX_MOVE: usize = 4 * TAIL_RECORDS as usize;
/// How often the thread looks.
const POLL: Duration = Duration::from_secs(1);
/// After a failure, how long before it tries again.
const RETRY: Duration = Duration::from_secs(30);

/// A `tx_index` value in a run: height and position, big endian (sled's is varint-encoded).
const TX_VALUE_LEN: usize = 12;
/// An `address_txs` key: key hash ‖ height ‖ time ‖ position ‖ txid (`ledger::history`).
const HISTORY_KEY_LEN: usize = 20 + 8 + 8 + 4 + 32;

/// The trees kept this way.
const GROWING: [TreeId; 2] = [TreeId::TxIndex, TreeId::AddressTxs];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Runs(#[from] RunError),
    #[error("database error in an index's tail: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// One index: its tail (a table of the layer-1 log) and its runs.
struct Index {
    tree_id: TreeId,
    tail: Arc<Layer1Log>,
    runs: RunSet,
    /// The tail's value → the run's fixed-width value (`None`: a damaged record, left in the
    /// tail, where reads report it).
    to_run: fn(&[u8]) -> Option<Vec<u8>>,
    /// The run's value → the tail's.
    from_run: fn(&[u8]) -> Vec<u8>,
}

impl Index {
    /// Whether a tail record has the shape a run stores (a damaged one stays in the tail).
    fn movable(&self, key: &[u8], value: &[u8]) -> bool {
        key.len() == self.runs.key_len() && (self.to_run)(value).is_some()
    }

    /// Writes `records` (in key order, each movable) as one run; returns how many it holds.
    fn write_run(&self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, IndexError> {
        let converted: Vec<(&[u8], Vec<u8>)> = records
            .iter()
            .filter_map(|(k, v)| Some((k.as_slice(), (self.to_run)(v)?)))
            .collect();
        Ok(self
            .runs
            .add(converted.iter().map(|(k, r)| (*k, r.as_slice())))?)
    }

    /// Copies up to [`MAX_MOVE`] records of the tail into a new run, then removes them from
    /// the tail. Returns how many it moved.
    fn move_tail(&self) -> Result<u64, IndexError> {
        let records =
            (self.tail).next_records(self.tree_id, None, MAX_MOVE, |k, v| self.movable(k, v));
        let moved = self.write_run(&records)?;
        // Only what the run holds: a record written again meanwhile stays (and wins).
        self.tail.remove_unchanged(self.tree_id, &records)?;
        Ok(moved)
    }

    /// Moves what schema 6 left of this index in sled (`old`) into runs, in pieces, and
    /// empties it. A damaged record goes to the tail instead, where reads report it as they
    /// did in sled.
    fn take_from_sled(&self, old: &sled::Tree) -> Result<u64, IndexError> {
        let mut total = 0;
        loop {
            let mut records = Vec::new();
            let mut damaged = Vec::new();
            let mut last = None;
            for item in old.iter() {
                let (k, v) = item?;
                last = Some(k.clone());
                if self.movable(&k, &v) {
                    records.push((k.to_vec(), v.to_vec()));
                } else {
                    damaged.push((k, v));
                }
                if records.len() == MAX_MOVE {
                    break;
                }
            }
            let Some(last) = last else {
                return Ok(total);
            };
            total += self.write_run(&records)?;
            if !damaged.is_empty() {
                let ops: Vec<super::layer1_log::Op<'_>> = (damaged.iter())
                    .map(|(k, v)| (self.tree_id, k.as_ref(), Some(v.as_ref())))
                    .collect();
                self.tail.append(&ops)?;
                self.tail.sync()?;
            }
            // The run is synced: now sled may forget everything up to the last key read.
            let mut batch = sled::Batch::default();
            for item in old.range(..=last) {
                batch.remove(item?.0);
            }
            old.apply_batch(batch)?;
            old.flush()?;
        }
    }
}

fn tx_to_run(v: &[u8]) -> Option<Vec<u8>> {
    let loc = TxLocation::from_bytes(v).ok()?;
    let mut out = Vec::with_capacity(TX_VALUE_LEN);
    out.extend_from_slice(&loc.height.to_be_bytes());
    out.extend_from_slice(&loc.index.to_be_bytes());
    Some(out)
}

fn tx_from_run(v: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 8];
    let mut i = [0u8; 4];
    if v.len() == TX_VALUE_LEN {
        h.copy_from_slice(&v[..8]);
        i.copy_from_slice(&v[8..]);
    }
    TxLocation {
        height: u64::from_be_bytes(h),
        index: u32::from_be_bytes(i),
    }
    .to_bytes()
}

fn history_to_run(v: &[u8]) -> Option<Vec<u8>> {
    v.is_empty().then(Vec::new)
}

fn history_from_run(_: &[u8]) -> Vec<u8> {
    Vec::new()
}

/// The two indexes and the thread that moves their tails.
pub(super) struct Indexes {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    indexes: Vec<Index>,
    stop: AtomicBool,
    wake: Mutex<bool>,
    woken: Condvar,
}

impl Indexes {
    /// Opens the run files under `db_path` (once the database's schema is known to be this
    /// binary's), moves into them what schema 6 left in sled's `trees`, and starts the
    /// mover, which moves each tail of `log` and merges runs as they grow.
    pub(super) fn open(
        db_path: &Path,
        trees: &[sled::Tree],
        log: Arc<Layer1Log>,
    ) -> Result<Indexes, StorageError> {
        let dir = db_path.join(super::runs::DIR_NAME);
        let index =
            |id: TreeId, key_len, value_len, to_run, from_run| -> Result<Index, StorageError> {
                Ok(Index {
                    tree_id: id,
                    tail: Arc::clone(&log),
                    runs: RunSet::open(&dir, id.name(), key_len, value_len)
                        .map_err(IndexError::from)?,
                    to_run,
                    from_run,
                })
            };
        let indexes = vec![
            index(TreeId::TxIndex, 32, TX_VALUE_LEN, tx_to_run, tx_from_run)?,
            index(
                TreeId::AddressTxs,
                HISTORY_KEY_LEN,
                0,
                history_to_run,
                history_from_run,
            )?,
        ];
        debug_assert!(indexes.iter().map(|i| i.tree_id).eq(GROWING));
        for index in &indexes {
            let old = &trees[index.tree_id.index()];
            if !old.is_empty() {
                let moved = index.take_from_sled(old).map_err(StorageError::from)?;
                tracing::info!(
                    index = index.tree_id.name(),
                    records = moved,
                    "moved the index records schema 6 kept in the database into its files"
                );
            }
        }
        let shared = Arc::new(Shared {
            indexes,
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            woken: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("timed-index-mover".into())
            .spawn(move || worker.run())
            .map_err(|e| StorageError::Apply(format!("could not start the index mover: {e}")))?;
        Ok(Indexes {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn index(&self, tree: TreeId) -> Option<&Index> {
        self.shared.indexes.iter().find(|i| i.tree_id == tree)
    }

    /// Whether `tree` is one of these indexes.
    pub(super) fn holds(&self, tree: TreeId) -> bool {
        self.index(tree).is_some()
    }

    /// A record of `tree` from its runs (the tail's value format), for a key the tail lacks.
    pub(super) fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(index) = self.index(tree) else {
            return Ok(None);
        };
        let found = index.runs.get(key).map_err(IndexError::from)?;
        Ok(found.map(|v| (index.from_run)(&v)))
    }

    /// Calls `visit` with each record of `tree` (the tail and the runs merged, in key order,
    /// values as the tail holds them) whose key is in `from..=to`, until it returns false.
    pub(super) fn scan(
        &self,
        tree: TreeId,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let Some(index) = self.index(tree) else {
            return Ok(());
        };
        // The tail's part first, whole, then the runs: a record the mover takes out of the
        // tail meanwhile is in a run by the time the list is read. The tail is a few moves'
        // worth (more only while a restore outpaces the mover).
        let tail = index.tail.range(tree, from, to);
        let from_run = index.from_run;
        let mut sources: Vec<Source<'_>> = (index.runs.sources(from).into_iter())
            .map(|run| Box::new(run.map(move |r| r.map(|(k, v)| (k, from_run(&v))))) as Source<'_>)
            .collect();
        // The tail is newest: listed last, it wins over a run.
        sources.push(Box::new(tail.into_iter().map(Ok)));
        for record in Merged::new(sources) {
            let (k, v) = record.map_err(IndexError::from)?;
            if k.as_slice() > to {
                break;
            }
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// Writes `records` of `tree` (a restore's, in any order, each key once) straight into
    /// a run, so a restored index never waits in memory for the mover. A record of the wrong
    /// shape is an error: a restore checks what it loads.
    pub(super) fn import(
        &self,
        tree: TreeId,
        mut records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StorageError> {
        let Some(index) = self.index(tree) else {
            return Ok(());
        };
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        records.dedup_by(|later, earlier| later.0 == earlier.0);
        if let Some((k, _)) = records.iter().find(|(k, v)| !index.movable(k, v)) {
            return Err(StorageError::Corrupt {
                tree: tree.name(),
                key: hex::encode(k),
                reason: "an index record of the wrong shape".into(),
            });
        }
        index.write_run(&records)?;
        Ok(())
    }

    /// Run files, records in them and bytes, per index: for `size_on_disk` and tests.
    pub(super) fn stats(&self) -> Vec<(&'static str, (usize, u64, u64))> {
        (self.shared.indexes.iter())
            .map(|i| (i.tree_id.name(), i.runs.stats()))
            .collect()
    }
}

impl Drop for Indexes {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        *self.shared.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.woken.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("the index mover stopped with a panic");
            }
        }
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn sleep(&self, how_long: Duration) {
        let woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .woken
            .wait_timeout_while(woken, how_long, |w| !*w)
            .unwrap_or_else(|p| p.into_inner());
    }

    fn run(&self) {
        while !self.stopping() {
            let mut pause = POLL;
            for index in &self.indexes {
                let worked =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(index)));
                let failure = match worked {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the mover panicked".to_string(),
                };
                tracing::warn!(index = index.tree_id.name(), error = %failure, "could not move an index into its files; it stays in the database meanwhile");
                pause = RETRY;
            }
            self.sleep(pause);
        }
    }

    /// Moves the tail while it is due, then merges runs while any are due.
    fn work(&self, index: &Index) -> Result<(), IndexError> {
        while index.tail.len(index.tree_id) as u64 >= TAIL_RECORDS && !self.stopping() {
            if index.move_tail()? < MAX_MOVE as u64 {
                // Every record that can move has (a damaged one stays): the rest is newer.
                break;
            }
        }
        loop {
            if self.stopping() || !index.runs.merge_once(TAIL_RECORDS, &self.stop)? {
                return Ok(());
            }
        }
    }
}
