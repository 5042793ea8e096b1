//! The indexes that only grow (`tx_index`, `address_txs`): their recent tail in sled, the
//! rest in run files (see `runs`), and the thread that moves one into the other.
//!
//! Commits write index records to sled as before (through the log, so they are durable with
//! their block), and count them here once sled holds them ([`TailCounts`]). Once a tail
//! passes [`TAIL_RECORDS`], the mover thread copies it, sorted, into a new run (synced and
//! visible to readers first), then removes from sled exactly the records it copied (a
//! compare-and-swap each, so a record rewritten meanwhile stays). The removals bypass the
//! log: if a crash loses them, the records are in sled and in a run, which reads tolerate,
//! and the next move copies them again. The same thread merges runs.
//!
//! Readers look in sled first and in the runs after, with no lock: a record leaves sled only
//! after its run is visible, so a point read that misses it in sled finds it in the runs, and
//! a scan reads its range of the tail (bounded: at most a few moves' worth) before it takes
//! the list of runs.
//!
//! A simulation's journaled database has no mover: everything stays in sled, so a seeded run
//! does the same thing every time.

use super::runs::{Merged, RunError, RunSet, Source};
use super::schema::TreeId;
use super::{StorageError, WriteBatch};
use crate::types::{Canonical, TxLocation};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records in sled past which a tail moves to a run (so also the smallest run a steady
/// stream of blocks makes).
pub const TAIL_RECORDS: u64 = 65_536;
/// Most records one move copies (a database upgraded with a whole index in sled moves it in
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
}

/// Records each index's tail gained since the mover last counted it (an estimate: a rewrite
/// counts too). Written by whoever applies commits to sled, read by the mover.
#[derive(Default)]
pub(super) struct TailCounts([AtomicU64; GROWING.len()]);

impl TailCounts {
    /// Counts the index records `batch` wrote (call once sled holds them).
    pub(super) fn count(&self, batch: &WriteBatch) {
        for (slot, tree) in self.0.iter().zip(GROWING) {
            let n = (batch.ops.iter())
                .filter(|(t, _, v)| *t == tree && v.is_some())
                .count() as u64;
            if n > 0 {
                slot.fetch_add(n, Ordering::SeqCst);
            }
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::SeqCst)
    }

    fn set(&self, i: usize, n: u64) {
        self.0[i].store(n, Ordering::SeqCst);
    }

    fn subtract(&self, i: usize, n: u64) {
        let _ = self.0[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
            Some(c.saturating_sub(n))
        });
    }
}

/// One index: its sled tree (the tail) and its runs.
struct Index {
    tree_id: TreeId,
    tree: sled::Tree,
    runs: RunSet,
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
    tails: Arc<TailCounts>,
    stop: AtomicBool,
    wake: Mutex<bool>,
    woken: Condvar,
}

impl Indexes {
    /// Opens the run files under `db_path` (once the database's schema is known to be this
    /// binary's) and starts the mover, which counts each tail, then moves and merges as they
    /// grow. `tails` is what commits count into.
    pub(super) fn open(
        db_path: &Path,
        trees: &[sled::Tree],
        tails: Arc<TailCounts>,
    ) -> Result<Indexes, StorageError> {
        let dir = db_path.join(super::runs::DIR_NAME);
        let index =
            |id: TreeId, key_len, value_len, to_run, from_run| -> Result<Index, StorageError> {
                Ok(Index {
                    tree_id: id,
                    tree: trees[id.index()].clone(),
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
        let shared = Arc::new(Shared {
            indexes,
            tails,
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
        // The tail's part first, whole, then the runs: a record the mover takes out of sled
        // meanwhile is in a run by the time the list is read. The tail is a few moves' worth,
        // except right after an upgrade, until the mover has taken the old index.
        let tail = (index.tree.range(from..=to))
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<Vec<_>, _>>()?;
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
        for (i, index) in self.indexes.iter().enumerate() {
            // Counted with an eye on `stop`: an upgraded database's tail is the whole index.
            let n = index
                .tree
                .iter()
                .keys()
                .take_while(|_| !self.stopping())
                .count();
            self.tails.set(i, n as u64);
        }
        while !self.stopping() {
            let mut pause = POLL;
            for (i, index) in self.indexes.iter().enumerate() {
                let worked =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(i, index)));
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
    fn work(&self, i: usize, index: &Index) -> Result<(), IndexError> {
        while self.tails.get(i) >= TAIL_RECORDS && !self.stopping() {
            let moved = move_tail(index)?;
            if moved < MAX_MOVE as u64 {
                // Every record that can move has: what is left is newer than the scan.
                self.tails.set(i, 0);
                break;
            }
            self.tails.subtract(i, moved);
        }
        loop {
            if self.stopping() || !index.runs.merge_once(TAIL_RECORDS, &self.stop)? {
                return Ok(());
            }
        }
    }
}

/// Copies up to [`MAX_MOVE`] records of the tail into a new run, then removes them from
/// sled. Returns how many it moved.
fn move_tail(index: &Index) -> Result<u64, IndexError> {
    let mut records: Vec<(sled::IVec, sled::IVec, Vec<u8>)> = Vec::new();
    for item in index.tree.iter() {
        let (k, v) = item?;
        // A record of the wrong shape (damaged) stays in sled, where reads report it.
        if k.len() != index.runs.key_len() {
            continue;
        }
        if let Some(run_value) = (index.to_run)(&v) {
            records.push((k, v, run_value));
            if records.len() == MAX_MOVE {
                break;
            }
        }
    }
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
