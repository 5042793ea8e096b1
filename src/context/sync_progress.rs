//! How far behind the network this node is, and how fast it is catching up: logged while
//! syncing and reported over RPC (`getblockchaininfo`).

use std::sync::Mutex;
use std::time::Instant;

/// A node within this many blocks of its best peer counts as synced.
pub const SYNCED_WITHIN: u64 = 1;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncSnapshot {
    pub syncing: bool,
    pub target: u64,
    pub progress: f64,
    pub blocks_per_sec: f64,
    pub seconds_left: Option<u64>,
}

struct Sample {
    at: Instant,
    height: u64,
}

/// Tracks the best height peers are proven to have (`NetworkService::best_peer_height`:
/// verified messages only, never a hello's claim) against our own, with a rate from recent
/// samples. `initialblockdownload` and `/ready` follow it.
#[derive(Default)]
pub struct SyncProgress {
    target: std::sync::atomic::AtomicU64,
    last: Mutex<Option<(Sample, f64)>>,
}

impl SyncProgress {
    pub fn set_target(&self, target: u64) {
        self.target
            .store(target, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records our height now and returns where we stand.
    pub fn sample(&self, height: u64, now: Instant) -> SyncSnapshot {
        let rate = match self.last.lock() {
            Ok(mut last) => {
                let rate = match last.as_ref() {
                    Some((s, prev_rate)) => {
                        let secs = now.duration_since(s.at).as_secs_f64();
                        if secs > 0.0 {
                            let r = height.saturating_sub(s.height) as f64 / secs;
                            // Smooth so one slow page does not swing the estimate.
                            0.5 * r + 0.5 * prev_rate
                        } else {
                            *prev_rate
                        }
                    }
                    None => 0.0,
                };
                *last = Some((Sample { at: now, height }, rate));
                rate
            }
            Err(_) => 0.0,
        };
        self.view(height, rate)
    }

    /// Where we stand, without taking a new sample.
    pub fn snapshot(&self, height: u64) -> SyncSnapshot {
        let rate = self
            .last
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|(_, r)| *r))
            .unwrap_or(0.0);
        self.view(height, rate)
    }

    fn view(&self, height: u64, rate: f64) -> SyncSnapshot {
        let target = self
            .target
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(height);
        let behind = target - height;
        SyncSnapshot {
            syncing: behind > SYNCED_WITHIN,
            target,
            progress: if target == 0 {
                1.0
            } else {
                height as f64 / target as f64
            },
            blocks_per_sec: rate,
            seconds_left: (rate > 0.0 && behind > 0).then(|| (behind as f64 / rate).ceil() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_progress_rate_and_time_left() {
        let s = SyncProgress::default();
        let t0 = Instant::now();
        s.set_target(1_000);
        assert!(s.sample(0, t0).syncing);
        let snap = s.sample(100, t0 + Duration::from_secs(1));
        assert_eq!(snap.target, 1_000);
        assert!(snap.blocks_per_sec > 0.0);
        assert!(snap.seconds_left.is_some());
        let done = s.sample(1_000, t0 + Duration::from_secs(5));
        assert!(!done.syncing);
        assert_eq!(done.progress, 1.0);
    }
}
