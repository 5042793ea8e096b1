//! The free-space guard's last reading (`node`'s disk guard writes it), read by `/ready`, the
//! metrics and RPC without waiting on the guard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the guard last saw, for `/ready` and the metrics (read without waiting on it).
#[derive(Debug, Default)]
pub struct DiskStatus {
    low: AtomicBool,
    free: AtomicU64,
    reserve: AtomicU64,
}

impl DiskStatus {
    /// Whether the node is paused for disk space.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub(crate) fn set_low(&self, low: bool) {
        self.low.store(low, Ordering::Relaxed);
    }

    pub(crate) fn set_free(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
    }

    pub(crate) fn set_reserve(&self, reserve: u64) {
        self.reserve.store(reserve, Ordering::Relaxed);
    }

    /// Free bytes at the last sample, and the reserve.
    pub fn free_and_reserve(&self) -> (u64, u64) {
        (
            self.free.load(Ordering::Relaxed),
            self.reserve.load(Ordering::Relaxed),
        )
    }
}
