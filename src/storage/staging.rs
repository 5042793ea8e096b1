//! Staged writes, and the one path by which any write reaches sled.
//!
//! Every commit goes through [`Staged::commit`], which holds one mutex while it writes: the
//! staged writes and the commit's own land as one atomic batch, and commits from different
//! threads land one after another, never interleaved, so no write can overtake one staged
//! before it. Whatever is still staged when the last handle to the database goes is committed
//! then (sled itself flushes on drop), so a clean stop loses nothing that was staged.

use super::batch::WriteBatch;
use super::durability::Durability;
use super::schema::TreeId;
use super::{Result, StorageError};
use sled::Transactional;
use std::sync::{Arc, Mutex, MutexGuard};

pub(super) struct Staged {
    pending: Mutex<WriteBatch>,
    trees: Vec<sled::Tree>,
    durability: Arc<Durability>,
}

impl Staged {
    pub(super) fn new(trees: Vec<sled::Tree>, durability: Arc<Durability>) -> Staged {
        Staged {
            pending: Mutex::new(WriteBatch::new()),
            trees,
            durability,
        }
    }

    pub(super) fn stage(&self, batch: WriteBatch) {
        self.lock().extend(batch);
    }

    /// Writes the staged writes followed by `batch`, atomically. If the write fails, the
    /// staged writes stay staged: whoever commits or flushes next tries them again (and a
    /// flush that cannot land them fails, so no vote leaves without its lock, whichever
    /// thread's commit failed first).
    pub(super) fn commit(&self, batch: WriteBatch) -> Result<()> {
        let mut pending = self.lock();
        if pending.is_empty() {
            return self.write(&batch);
        }
        let mut all = std::mem::take(&mut *pending);
        let staged = all.len();
        all.extend(batch);
        // Held until written: a commit from another thread waits, so it lands after these.
        let written = self.write(&all);
        if written.is_err() {
            all.ops.truncate(staged);
            *pending = all;
        }
        written
    }

    /// Drops the staged writes (a simulated power cut) and says how many there were.
    pub(super) fn discard(&self) -> usize {
        std::mem::take(&mut *self.lock()).len()
    }

    fn lock(&self) -> MutexGuard<'_, WriteBatch> {
        // A panic mid-extend leaves whole writes behind: each is a complete (tree, key, value).
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id.index()]
    }

    fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.durability.journaling() {
            let mut undo = Vec::with_capacity(batch.ops.len());
            for (tree, key, _) in &batch.ops {
                undo.push((*tree, key.clone(), self.tree(*tree).get(key)?));
            }
            self.durability.record(undo);
        }
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
            if let Some((tree, single)) = per_tree.pop() {
                self.tree(tree).apply_batch(single)?;
            }
            return Ok(());
        }
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
}

impl Drop for Staged {
    fn drop(&mut self) {
        let left = std::mem::take(&mut *self.lock());
        if let Err(e) = self.write(&left) {
            tracing::error!(error = %e, "staged writes could not be committed at close");
        }
    }
}
