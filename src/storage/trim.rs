//! Handing memory that big sled batches freed back to the system, off the committing thread.
//!
//! A sled transaction keeps every page version it makes until it ends (its epoch stays
//! pinned), and sled's epochs free that garbage over the next seconds: a block of many
//! thousand records frees tens to hundreds of MB at once, in the middle of glibc's heaps, where
//! glibc keeps it. Resident memory then stays at the batch's peak for good (measured: 170 MB
//! resident after a 25,500-output block, 75 MB after `malloc_trim`). So a while after a big
//! batch, a thread of its own trims. Not after every block: a trim holds glibc's arena locks
//! while it walks the heaps and the pages it returns fault back in, and trimming after every
//! loaded block raised the soak's p99 latency from ≈ 190 to ≈ 280 ms. At most one trim a
//! minute.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sled batch this large leaves enough freed memory behind to trim.
const BIG_BATCH_OPS: usize = 10_000;
/// How long after a big batch to trim: sled's epochs have freed its garbage by then.
const TRIM_DELAY: Duration = Duration::from_secs(5);
/// At most one trim in this long.
const MIN_TRIM_INTERVAL: Duration = Duration::from_secs(60);

pub(super) struct Trimmer {
    last: Mutex<Option<Instant>>,
    /// To the trimming thread, which ends when this is dropped. `None` if it could not start
    /// (memory is then only returned as glibc does by itself).
    wake: Option<SyncSender<()>>,
}

impl Trimmer {
    pub(super) fn start() -> Trimmer {
        let (wake, requests) = sync_channel::<()>(1);
        let started = std::thread::Builder::new()
            .name("timed-trim".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    std::thread::sleep(TRIM_DELAY);
                    release_freed_memory();
                }
            });
        if let Err(e) = &started {
            tracing::warn!(error = %e, "could not start the memory-trimming thread");
        }
        Trimmer {
            last: Mutex::new(None),
            wake: started.ok().map(|_| wake),
        }
    }

    /// Called for each sled commit of `ops` writes.
    pub(super) fn on_commit(&self, ops: usize) {
        if ops < BIG_BATCH_OPS {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < MIN_TRIM_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Some(wake) = &self.wake {
            // Full means a trim is already waiting: one is enough.
            let _ = wake.try_send(());
        }
    }
}

fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's own heaps to the system; it
    // takes each arena's lock and touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}
