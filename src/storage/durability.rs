//! The durability barrier, and the power-loss journal that lets a simulation check it.
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`: the pages reach the device, but
//! neither the device's write cache nor the metadata of a grown file is flushed, and large
//! values (blob files) are written without any sync. A host that loses power after such a
//! flush can come back without a lock this node already voted for, and then vote for a
//! conflicting spend. So every flush ends with a real barrier: `fdatasync` of the log file,
//! `fsync` of every blob file written since the last barrier, and `fsync` of the directories
//! whose entries changed (new blobs, sled's renamed snapshot files).
//!
//! ```text
//! commit ─► sled (page cache) ─► flush: sled writes its log ─► barrier: fdatasync(db),
//!                                                              fsync(new blobs, dirs)
//!           journal (simulation only): old values of every key written since the last barrier
//!           lose_unflushed(): puts them back — the database a power cut would leave
//! ```
//!
//! The journal exists because a simulated crash (dropping the driver) cannot lose anything on
//! its own: sled flushes when dropped. With the journal, a simulated crash loses exactly what
//! no barrier covered, so the seeded simulation checks persist-before-promise.

use super::schema::TreeId;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The failure to make written data durable.
#[derive(Debug, thiserror::Error)]
#[error("could not make {path} durable (fsync failed): {source}; the disk may be failing or full")]
pub struct BarrierError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// One write the journal can undo: the tree, the key, and the value before the write.
pub(super) type Undo = (TreeId, Vec<u8>, Option<sled::IVec>);

/// What a barrier syncs for one database directory.
pub(super) struct Durability {
    dir: PathBuf,
    /// sled's log, opened once: `fdatasync` on any descriptor of a file syncs the file.
    log: File,
    /// Blob files already synced (sled never rewrites one; it deletes it).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Old values of keys written since the last barrier, when simulating power loss.
    journal: Option<Mutex<Vec<Undo>>>,
}

impl Durability {
    /// For the database sled opened in `dir`: syncs the directory once, so the entries sled
    /// created (its log, config and blob directory) survive a power cut.
    pub(super) fn open(dir: &Path, journal: bool) -> Result<Durability, BarrierError> {
        let at = |path: PathBuf| move |source| BarrierError { path, source };
        let log_path = dir.join("db");
        let log = File::open(&log_path).map_err(at(log_path))?;
        sync_dir(dir)?;
        Ok(Durability {
            dir: dir.to_path_buf(),
            log,
            synced_blobs: Mutex::new(HashSet::new()),
            journal: journal.then(|| Mutex::new(Vec::new())),
        })
    }

    /// Makes everything sled has written durable on the device. Call after `sled::Db::flush`.
    pub(super) fn barrier(&self) -> Result<(), BarrierError> {
        self.log.sync_data().map_err(|source| BarrierError {
            path: self.dir.join("db"),
            source,
        })?;
        self.sync_new_blobs()?;
        // Renames and new entries (sled's snapshot files) in the database directory.
        sync_dir(&self.dir)?;
        if let Some(journal) = &self.journal {
            lock(journal).clear();
        }
        Ok(())
    }

    fn sync_new_blobs(&self) -> Result<(), BarrierError> {
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(BarrierError {
                    path: blobs,
                    source,
                })
            }
        };
        let mut synced = lock(&self.synced_blobs);
        let mut present = HashSet::new();
        let mut any_new = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match File::open(&path).and_then(|f| f.sync_all()) {
                    Ok(()) => any_new = true,
                    // Collected by sled between the listing and the open: nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(BarrierError { path, source }),
                }
            }
            present.insert(name);
        }
        *synced = present;
        drop(synced);
        if any_new {
            sync_dir(&blobs)?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn synced_blob_count(&self) -> usize {
        lock(&self.synced_blobs).len()
    }

    /// Whether writes are journaled for [`Self::take_unflushed`].
    pub(super) fn journaling(&self) -> bool {
        self.journal.is_some()
    }

    /// Records the old values of writes about to be made (journal mode only).
    pub(super) fn record(&self, undo: impl IntoIterator<Item = Undo>) {
        if let Some(journal) = &self.journal {
            lock(journal).extend(undo);
        }
    }

    /// The journal since the last barrier, newest last, emptied.
    pub(super) fn take_unflushed(&self) -> Vec<Undo> {
        match &self.journal {
            Some(journal) => std::mem::take(&mut *lock(journal)),
            None => Vec::new(),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), BarrierError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BarrierError {
            path: dir.to_path_buf(),
            source,
        })
}

/// A poisoned lock here only means another thread panicked mid-barrier; the sets stay valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
