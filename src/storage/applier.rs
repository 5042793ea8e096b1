//! sled's half of a commit, applied on a thread of its own.
//!
//! A commit is durable once its log frame (with the redo of its sled writes) is synced; what
//! is left is to write those records into sled, and for a block that is most of its commit
//! time (measured on the 4-node localnet at 1,000 tx/s: 300–700 ms a 2,000-transaction block,
//! against 10–25 ms for the log frame). So the committer queues the batch here and goes on.
//! Until the batch is in sled, its records are served from the overlay, so a reader never sees
//! a commit go back: [`Applier::get`] answers from the newest queued write of a key, and
//! whoever needs sled itself (scans, iteration) waits for the queue to drain first
//! ([`Applier::wait_idle`]).
//!
//! ```text
//! commit ─► log frame synced ─► enqueue(seq, batch) ─► overlay (key → newest queued value)
//!                                     │
//!                            applier thread: sled batches, in order ─► applied = seq,
//!                                                                      overlay entries dropped
//! ```

use super::schema::TreeId;
use super::WriteBatch;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Commits queued ahead of sled before the committer waits: bounds the overlay's memory when
/// sled falls behind for a while.
const MAX_QUEUED: usize = 8;

/// Writes one batch into sled (the storage's plain, per-tree batches).
pub(super) type ApplyFn = Box<dyn Fn(&WriteBatch) -> Result<(), super::StorageError> + Send>;

type Key = (TreeId, Vec<u8>);

pub(super) struct Applier {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The newest commit sled holds (what a checkpoint may cover).
    applied: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, Arc<WriteBatch>)>,
    /// The newest queued write of each key not yet in sled, and the commit that made it.
    overlay: HashMap<Key, (u64, Option<Vec<u8>>)>,
    /// Why sled could not take a commit: the node must stop (the log still holds it).
    failed: Option<String>,
    stop: bool,
}

impl Applier {
    /// Starts the thread, which applies with `apply`; it ends (and drops `apply`, with the
    /// sled handles it holds) when the applier is dropped.
    pub(super) fn start(apply: ApplyFn) -> std::io::Result<Applier> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            applied: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("timed-sled-apply".into())
            .spawn(move || worker.run(apply))?;
        Ok(Applier {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues commit `seq` (made durable in the log already). Waits while the queue is full.
    /// Fails if an earlier commit could not be applied.
    pub(super) fn enqueue(&self, seq: u64, batch: WriteBatch) -> Result<(), String> {
        let mut state = self.shared.lock();
        while state.queue.len() >= MAX_QUEUED && state.failed.is_none() {
            state = self.shared.wait(state);
        }
        if let Some(why) = &state.failed {
            return Err(why.clone());
        }
        for (tree, key, value) in &batch.ops {
            state
                .overlay
                .insert((*tree, key.clone()), (seq, value.clone()));
        }
        state.queue.push_back((seq, Arc::new(batch)));
        self.shared.changed.notify_all();
        Ok(())
    }

    /// The newest queued write of `key`: `Some(None)` if it removes the record, `None` if no
    /// queued commit touches it (sled has it right).
    pub(super) fn get(&self, tree: TreeId, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let state = self.shared.lock();
        if state.overlay.is_empty() {
            return None;
        }
        state
            .overlay
            .get(&(tree, key.to_vec()))
            .map(|(_, v)| v.clone())
    }

    /// The queued writes of `tree` whose keys start with `prefix` (a linear walk of the
    /// overlay: for the few small prefixes read on the committer's own path).
    pub(super) fn queued_with_prefix(
        &self,
        tree: TreeId,
        prefix: &[u8],
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let state = self.shared.lock();
        state
            .overlay
            .iter()
            .filter(|((t, k), _)| *t == tree && k.starts_with(prefix))
            .map(|((_, k), (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Returns once sled holds every commit queued before the call (or one failed); commits
    /// queued meanwhile do not keep it waiting.
    pub(super) fn wait_idle(&self) {
        let mut state = self.shared.lock();
        let Some(target) = state.queue.back().map(|(seq, _)| *seq) else {
            return;
        };
        while self.applied() < target && state.failed.is_none() {
            state = self.shared.wait(state);
        }
    }

    /// Why sled could not take a commit, if it could not.
    pub(super) fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// The newest commit sled holds.
    pub(super) fn applied(&self) -> u64 {
        self.shared.applied.load(Ordering::SeqCst)
    }

    /// Records that sled holds commit `seq` (a commit applied by the committer itself).
    pub(super) fn set_applied(&self, seq: u64) {
        self.shared.applied.fetch_max(seq, Ordering::SeqCst);
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            // The queue drains first: a clean close leaves sled up to date. A panic on the
            // thread already stopped it; the log holds what it did not apply.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state changes under the lock in whole steps; a panic elsewhere leaves it valid.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self, apply: ApplyFn) {
        loop {
            let next = {
                let mut state = self.lock();
                loop {
                    if state.failed.is_some() {
                        return;
                    }
                    if let Some((seq, batch)) = state.queue.front() {
                        break (*seq, Arc::clone(batch));
                    }
                    if state.stop {
                        return;
                    }
                    state = self.wait(state);
                }
            };
            let (seq, batch) = next;
            // A panic must not leave waiters hanging: it fails the applier like an error.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&batch)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    Err(super::StorageError::Apply(format!("sled panicked: {what}")))
                });
            let mut state = self.lock();
            match result {
                Ok(()) => {
                    state.queue.pop_front();
                    for (tree, key, _) in &batch.ops {
                        let k = (*tree, key.clone());
                        if state.overlay.get(&k).is_some_and(|(s, _)| *s == seq) {
                            state.overlay.remove(&k);
                        }
                    }
                    self.applied.fetch_max(seq, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::error!(error = %e, commit = seq, "sled could not apply a commit the log holds; the node stops, and the next start applies it again");
                    state.failed = Some(format!(
                        "sled could not apply commit {seq} ({e}); the log holds it: restart the node"
                    ));
                    // Nothing after it can be applied either. The overlay stays: readers keep
                    // seeing every commit that returned, until the node stops.
                    state.queue.clear();
                }
            }
            self.changed.notify_all();
        }
    }
}
