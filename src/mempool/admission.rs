//! Admission control for local submits: the pool takes no more than about
//! [`BACKLOG_MS`] of finality at the rate the network has been finalizing, and refuses the
//! rest at once.
//!
//! ```text
//! finalized transactions ─► rate (per second, smoothed) ─┐
//!                                                        ▼
//! local submit ─► pool holds < max(FLOOR, rate × BACKLOG_MS)? ─ no ─► "mempool full" (-26)
//!                                                               └ yes ─► verify, pool, vote
//! ```
//!
//! Past its capacity a network that queues everything it is offered makes every transaction
//! wait behind seconds of backlog, and spends its time on work (gossip, votes, status reads)
//! for transactions that will be late anyway. Refusing the excess at the door keeps latency
//! near one backlog window and the finalized rate near its peak; the client learns at once
//! and may retry. Transactions relayed by peers are not refused here: some node admitted
//! them, and a quorum may already be voting for them.
//!
//! Time is the caller's (`now` in milliseconds), so the simulation controls it.

/// How much finality the pool may hold, at the recent rate.
pub const BACKLOG_MS: u64 = 1_000;
/// The pool always takes this many, whatever the rate (at start, or on a quiet network).
pub const FLOOR: usize = 500;
/// The rate is measured over windows this long, each weighing `SMOOTHING` in the average.
const WINDOW_MS: u64 = 500;
const SMOOTHING: f64 = 0.5;

/// The smoothed finality rate and the backlog limit it implies.
#[derive(Debug)]
pub struct Admission {
    /// Transactions finalized per second, smoothed over recent windows.
    rate: f64,
    window_start: u64,
    in_window: u64,
    floor: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::with_floor(FLOOR)
    }
}

impl Admission {
    /// Admission that always takes `floor` transactions (`PoolLimits::admission_floor`).
    pub fn with_floor(floor: usize) -> Admission {
        Admission {
            rate: 0.0,
            window_start: 0,
            in_window: 0,
            floor,
        }
    }

    /// `n` transactions became final at `now`.
    pub fn on_finalized(&mut self, n: u64, now: u64) {
        self.roll(now);
        self.in_window += n;
    }

    /// How many transactions the pool may hold before local submits are refused.
    pub fn limit(&mut self, now: u64) -> usize {
        self.roll(now);
        let at_rate = self.rate * BACKLOG_MS as f64 / 1000.0;
        self.floor.max(at_rate as usize)
    }

    /// Closes the windows that ended before `now`; an empty window pulls the rate down.
    fn roll(&mut self, now: u64) {
        if self.window_start == 0 || now < self.window_start {
            self.window_start = now;
            return;
        }
        while now >= self.window_start + WINDOW_MS {
            let measured = self.in_window as f64 * 1000.0 / WINDOW_MS as f64;
            self.rate = SMOOTHING * measured + (1.0 - SMOOTHING) * self.rate;
            self.in_window = 0;
            self.window_start += WINDOW_MS;
            if self.rate < 1.0 && now >= self.window_start + WINDOW_MS {
                // Long idle: nothing more to average.
                self.rate = 0.0;
                self.window_start = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_finality_rate_and_never_drops_below_the_floor() {
        let mut a = Admission::default();
        assert_eq!(a.limit(1_000), FLOOR, "nothing measured yet");
        // 5,000 final/s for five seconds.
        let mut now = 1_000;
        for _ in 0..500 {
            now += 10;
            a.on_finalized(50, now);
        }
        let limit = a.limit(now);
        assert!((4_500..=5_000).contains(&limit), "{limit}");
        // Then nothing for ten seconds: back to the floor.
        assert_eq!(a.limit(now + 10_000), FLOOR);
    }

    #[test]
    fn a_clock_going_back_restarts_the_window() {
        let mut a = Admission::default();
        a.on_finalized(10, 5_000);
        a.on_finalized(10, 4_000);
        assert_eq!(a.limit(4_100), FLOOR);
    }
}
