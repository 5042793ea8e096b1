//! The indexes that only grow (`tx_index`, `address_txs`): their recent tail in sled, the
//! rest in run files (see `runs`), and the thread that moves one into the other.
//!
//! Commits write index records to sled as before (through the log, so they are durable with
//! their block). Once a tail passes [`TAIL_RECORDS`], the mover thread copies it, sorted, into
//! a new run (synced and visible to readers first), then removes from sled exactly the
//! records it copied (a compare-and-swap each, so a record rewritten meanwhile stays). The
//! removals bypass the log: if a crash loses them, the records are in sled and in a run,
//! which reads tolerate, and the next move copies them again. The same thread merges runs.
//!
//! Readers look in sled first and in the runs after. A point read is safe as it is (a record
//! leaves sled only after its run is visible); a scan holds the index's `moving` lock, which
//! the mover takes while it installs a run and removes its records, so a scan never misses a
//! record that moved under it.
//!
//! A simulation's journaled database has no mover: everything stays in sled, so a seeded run
//! does the same thing every time.

use super::runs::{Merged, RunError, RunSet, Source};
use super::schema::TreeId;
use super::StorageError;
use crate::types::{Canonical, TxLocation};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records in sled past which a tail moves to a run; also the size of a tier-0 run.
pub const TAIL_RECORDS: u64 = 65_536;
/// Most records one move copies (a database upgraded with a whole index in sled moves it in
/// pieces, each held in memory once).
const MAX_MOVE: usize = 4 * TAIL_RECORDS as usize;
/// How often the thread looks, unless woken.
const POLL: Duration = Duration::from_secs(1);
/// After a failure, how long before it tries again.
const RETRY: Duration = Duration::from_secs(30);

/// A `tx_index` value in a run: height and position, big endian (sled's is varint-encoded).
const TX_VALUE_LEN: usize = 12;
/// An `address_txs` key: key hash ‖ height ‖ time ‖ position ‖ txid (`ledger::history`).
const HISTORY_KEY_LEN: usize = 20 + 8 + 8 + 4 + 32;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Runs(#[from] RunError),
    #[error("database error in an index's tail: {0}")]
    Sled(#[from] sled::Error),
}

/// One index: its sled tree (the tail) and its runs.
struct Index {
    tree_id: TreeId,
    tree: sled::Tree,
    runs: RunSet,
    /// Records added to the tail since it was last counted (an estimate: rewrites count).
    tail: AtomicU64,
    /// Held by scans (read) and by the mover while records change place (write).
    moving: RwLock<()>,
    /// sled's value → the run's fixed-width value (`None`: a damaged record, left in sled).
    to_run: fn(&[u8]) -> Option<Vec<u8>>,
    /// The run's value → sled's.
    from_run: fn(&[u8]) -> Vec<u8>,
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
    /// Opens the run files under `db_path`. The mover starts with [`Indexes::start`]; it
    /// counts each tail once, then moves and merges as they grow.
    pub(super) fn open(db_path: &Path, trees: &[sled::Tree]) -> Result<Indexes, StorageError> {
        let dir = db_path.join(super::runs::DIR_NAME);
        let index =
            |id: TreeId, key_len, value_len, to_run, from_run| -> Result<Index, StorageError> {
                Ok(Index {
                    tree_id: id,
                    tree: trees[id.index()].clone(),
                    runs: RunSet::open(&dir, id.name(), key_len, value_len)
                        .map_err(IndexError::from)?,
                    tail: AtomicU64::new(0),
                    moving: RwLock::new(()),
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
        Ok(Indexes {
            shared: Arc::new(Shared {
                indexes,
                stop: AtomicBool::new(false),
                wake: Mutex::new(false),
                woken: Condvar::new(),
            }),
            thread: Mutex::new(None),
        })
    }

    /// Starts the mover (once the database is upgraded and its redo applied).
    pub(super) fn start(&self) -> Result<(), StorageError> {
        let mut slot = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let worker = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name("timed-index-mover".into())
            .spawn(move || worker.run())
            .map_err(|e| StorageError::Apply(format!("could not start the index mover: {e}")))?;
        *slot = Some(thread);
        Ok(())
    }

    /// Whether `tree` is one of these indexes.
    pub(super) fn holds(&self, tree: TreeId) -> bool {
        self.index(tree).is_some()
    }

    fn index(&self, tree: TreeId) -> Option<&Index> {
        self.shared.indexes.iter().find(|i| i.tree_id == tree)
    }

    /// Counts the index records `ops` add to the tails, waking the mover once one is due.
    pub(super) fn count(&self, batch: &super::WriteBatch) {
        for index in &self.shared.indexes {
            let n = (batch.ops.iter())
                .filter(|(t, _, v)| *t == index.tree_id && v.is_some())
                .count() as u64;
            if n == 0 {
                continue;
            }
            let before = index.tail.fetch_add(n, Ordering::SeqCst);
            if before < TAIL_RECORDS && before + n >= TAIL_RECORDS {
                self.shared.wake();
            }
        }
    }

    /// A record of `tree` from its runs (sled's value format), for a key sled lacks.
    pub(super) fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(index) = self.index(tree) else {
            return Ok(None);
        };
        let found = index.runs.get(key).map_err(IndexError::from)?;
        Ok(found.map(|v| (index.from_run)(&v)))
    }

    /// Calls `visit` with each record of `tree` (sled's tail and the runs merged, in key
    /// order, values as sled holds them) whose key is in `from..=to`, until it returns false.
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
        let _no_moves = index.moving.read().unwrap_or_else(|p| p.into_inner());
        let from_run = index.from_run;
        let mut sources: Vec<Source<'_>> = (index.runs.sources(from).into_iter())
            .map(|run| Box::new(run.map(move |r| r.map(|(k, v)| (k, from_run(&v))))) as Source<'_>)
            .collect();
        let tail = index
            .tree
            .range(from..)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_error));
        // The tail is newest: listed last, it wins over a run.
        sources.push(Box::new(tail));
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

    /// Run files, records in them and bytes, per index: for logs and `size_on_disk`.
    pub(super) fn stats(&self) -> Vec<(&'static str, (usize, u64, u64))> {
        (self.shared.indexes.iter())
            .map(|i| (i.tree_id.name(), i.runs.stats()))
            .collect()
    }
}

fn sled_error(e: sled::Error) -> RunError {
    RunError::Io {
        path: "sled".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Drop for Indexes {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Shared {
    fn wake(&self) {
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.woken.notify_all();
    }

    fn sleep(&self, how_long: Duration) {
        let woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        let (mut woken, _) = self
            .woken
            .wait_timeout_while(woken, how_long, |w| {
                !*w && !self.stop.load(Ordering::SeqCst)
            })
            .unwrap_or_else(|p| p.into_inner());
        *woken = false;
    }

    fn run(&self) {
        for index in &self.indexes {
            index.tail.store(index.tree.len() as u64, Ordering::SeqCst);
        }
        while !self.stop.load(Ordering::SeqCst) {
            let mut pause = POLL;
            for index in &self.indexes {
                if let Err(e) = self.work(index) {
                    tracing::warn!(index = index.tree_id.name(), error = %e, "could not move an index into its files; it stays in the database meanwhile");
                    pause = RETRY;
                }
            }
            self.sleep(pause);
        }
    }

    /// Moves the tail while it is due, then merges runs while any are due.
    fn work(&self, index: &Index) -> Result<(), IndexError> {
        while index.tail.load(Ordering::SeqCst) >= TAIL_RECORDS && !self.stop.load(Ordering::SeqCst)
        {
            let moved = move_tail(index)?;
            if moved < TAIL_RECORDS {
                // Part of what was counted were rewrites or damaged records: count afresh.
                index.tail.store(index.tree.len() as u64, Ordering::SeqCst);
                break;
            }
            let left = index.tail.load(Ordering::SeqCst).saturating_sub(moved);
            index.tail.store(left, Ordering::SeqCst);
        }
        loop {
            if self.stop.load(Ordering::SeqCst)
                || !index.runs.merge_once(TAIL_RECORDS, &self.stop)?
            {
                return Ok(());
            }
        }
    }
}

/// Copies up to [`MAX_MOVE`] records of the tail into a new run, then removes them from sled.
/// Returns how many it moved.
fn move_tail(index: &Index) -> Result<u64, IndexError> {
    let mut records: Vec<(sled::IVec, sled::IVec, Vec<u8>)> = Vec::new();
    for item in index.tree.iter().take(MAX_MOVE) {
        let (k, v) = item?;
        // A record of the wrong shape (damaged) stays in sled, where reads report it.
        if k.len() != index.runs.key_len() {
            continue;
        }
        if let Some(run_value) = (index.to_run)(&v) {
            records.push((k, v, run_value));
        }
    }
    let _moving = index.moving.write().unwrap_or_else(|p| p.into_inner());
    let moved = index
        .runs
        .add(records.iter().map(|(k, _, r)| (k.as_ref(), r.as_slice())))?;
    for (k, v, _) in &records {
        // Only what the run holds: a record rewritten meanwhile stays in sled (and wins).
        let _ = index
            .tree
            .compare_and_swap(k, Some(v), None as Option<&[u8]>)?;
    }
    Ok(moved)
}
