//! The free-space guard: keeps the database from ever meeting a full disk.
//!
//! ```text
//! every DISK_CHECK_EVERY ─► statvfs(datadir) ─► DiskLevel::next ─┬─► DiskStatus (/ready, metrics)
//!                                                                └─► on a change: one log line,
//!                                                                    consensus paused / resumed
//! ```
//!
//! sled 0.34 makes an I/O error sticky: after one failed write every later call fails, so a
//! database that once met ENOSPC is useless until the process restarts. The guard therefore
//! stops new work while a reserve (`min_free_disk_mb`) is still free: the consensus owner
//! stops stepping (nothing is written, locked or voted; submits are refused with the reason)
//! and resumes by itself once the free space is back above the reserve plus a quarter of it
//! (the margin keeps a disk hovering at the line from flapping). Peers see a slow node; it
//! catches up by the normal sync when it resumes. What was promised before the pause was
//! persisted before it was promised, so pausing breaks no promise.

use crate::consensus::service::ConsensusHandle;
use crate::context::DiskStatus;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the free space is sampled: a second of writes at full load is a few MiB, far
/// below any sensible reserve.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether the disk is low, given the last verdict and the free bytes now (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLevel {
    /// Below this many free bytes the node pauses; 0 = never.
    pub reserve: u64,
}

impl DiskLevel {
    /// Free bytes needed to resume: the reserve and a quarter of it more.
    pub fn resume_at(self) -> u64 {
        self.reserve.saturating_add(self.reserve / 4)
    }

    /// The verdict after seeing `free` bytes, when the last one was `low`.
    pub fn next(self, low: bool, free: u64) -> bool {
        if low {
            free < self.resume_at()
        } else {
            free < self.reserve
        }
    }
}

/// Why the owner is paused, as clients and `/ready` read it: the numbers and what to do.
pub fn low_reason(datadir: &Path, free: u64, reserve: u64) -> String {
    format!(
        "the disk holding {} has {} MiB free, below the {} MiB reserve (min_free_disk_mb): free \
         some space and the node resumes by itself",
        datadir.display(),
        free >> 20,
        reserve >> 20
    )
}

/// Free bytes available to this process on the filesystem holding `datadir`.
fn free_bytes(datadir: &Path) -> std::io::Result<u64> {
    fs2::available_space(datadir)
}

/// Samples the disk and pauses or resumes consensus on a change of verdict.
pub struct DiskGuard {
    datadir: PathBuf,
    level: DiskLevel,
    status: Arc<DiskStatus>,
    consensus: ConsensusHandle,
    /// Whether the last failed sample was logged (once per run of failures).
    warned: bool,
}

impl DiskGuard {
    pub fn new(
        datadir: PathBuf,
        reserve: u64,
        status: Arc<DiskStatus>,
        consensus: ConsensusHandle,
    ) -> DiskGuard {
        status.set_reserve(reserve);
        DiskGuard {
            datadir,
            level: DiskLevel { reserve },
            status,
            consensus,
            warned: false,
        }
    }

    /// Samples once (blocking: a statvfs). Run once before the node takes work, then by
    /// [`Self::run`].
    pub fn check(&mut self) {
        let free = match free_bytes(&self.datadir) {
            Ok(free) => {
                self.warned = false;
                free
            }
            Err(e) => {
                // The last verdict stands: a failing statvfs says nothing about the space.
                if !self.warned {
                    tracing::warn!(datadir = %self.datadir.display(), error = %e,
                        "cannot read the free space of the data directory's disk");
                    self.warned = true;
                }
                return;
            }
        };
        self.status.set_free(free);
        let was_low = self.status.is_low();
        let low = self.level.next(was_low, free);
        if low == was_low {
            return;
        }
        self.status.set_low(low);
        let (free_mib, reserve_mib) = (free >> 20, self.level.reserve >> 20);
        if low {
            let reason = low_reason(&self.datadir, free, self.level.reserve);
            tracing::error!(
                datadir = %self.datadir.display(),
                free_mib,
                reserve_mib,
                "disk low: the node stops taking new work (no submits, votes or blocks) until \
                 space is freed"
            );
            self.consensus.set_paused(Some(reason));
        } else {
            tracing::info!(
                datadir = %self.datadir.display(),
                free_mib,
                reserve_mib,
                "disk space back: the node takes new work again"
            );
            self.consensus.set_paused(None);
        }
    }

    /// Samples every [`DISK_CHECK_EVERY`] until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(DISK_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self = match tokio::task::spawn_blocking(move || {
                self.check();
                self
            })
            .await
            {
                Ok(guard) => guard,
                Err(e) => {
                    tracing::error!(error = %e, "the disk guard failed; free space is no longer watched");
                    return;
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_below_the_reserve_and_resumes_a_quarter_above_it() {
        let level = DiskLevel { reserve: 100 };
        // (was low, free, low now)
        let table = [
            (false, 1_000, false),
            (false, 100, false),
            (false, 99, true),
            (true, 99, true),
            (true, 100, true),
            (true, 124, true),
            (true, 125, false),
            (false, 0, true),
        ];
        for (i, (was, free, want)) in table.into_iter().enumerate() {
            assert_eq!(level.next(was, free), want, "row {i}");
        }
        // A reserve of 0 turns the guard off.
        let off = DiskLevel { reserve: 0 };
        assert!(!off.next(false, 0) && !off.next(true, 0));
    }

    #[test]
    fn the_reason_names_the_directory_the_numbers_and_the_remedy() {
        let r = low_reason(Path::new("/var/lib/timed"), 10 << 20, 256 << 20);
        assert_eq!(
            r,
            "the disk holding /var/lib/timed has 10 MiB free, below the 256 MiB reserve \
             (min_free_disk_mb): free some space and the node resumes by itself"
        );
    }
}
