//! The node's one wall clock. Block timestamps, proposal timeliness, the handshake's
//! timestamp, layer-1 finality order and backup dates all read [`wall_clock_ms`], so a test
//! can skew a whole node's idea of "now" at one place.
//!
//! **For testing only**: `TIMED_TEST_CLOCK_OFFSET_MS` (a signed number of milliseconds, read
//! once per process) shifts this clock, so a multi-process test can run nodes whose clocks
//! are seconds or minutes off without faketime. An operator never sets it; a node that runs
//! with it logs a warning at start. Timers (`Instant`) are not shifted: a wrong wall clock
//! does not change how fast time passes.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that skews this process's wall clock, for tests.
pub const TEST_OFFSET_ENV: &str = "TIMED_TEST_CLOCK_OFFSET_MS";
/// Largest test offset accepted: a day either way is more than any test needs.
pub const MAX_TEST_OFFSET_MS: i64 = 86_400_000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error(
        "{TEST_OFFSET_ENV}={0:?}: expected whole milliseconds within ±{MAX_TEST_OFFSET_MS} \
         (a test-only setting; unset it)"
    )]
    BadTestOffset(String),
}

/// The test offset, parsed once: an environment variable is process-wide by nature, and
/// every layer that reads the clock would otherwise need it threaded through.
static TEST_OFFSET: OnceLock<Result<i64, ClockError>> = OnceLock::new();

/// Parses a test offset: `+5000`, `-60000`, `0`.
pub fn parse_test_offset(text: &str) -> Result<i64, ClockError> {
    let bad = || ClockError::BadTestOffset(text.to_string());
    let ms: i64 = text.trim().parse().map_err(|_| bad())?;
    if ms.unsigned_abs() > MAX_TEST_OFFSET_MS as u64 {
        return Err(bad());
    }
    Ok(ms)
}

/// The test offset in effect (0 unless `TIMED_TEST_CLOCK_OFFSET_MS` is set), or why the
/// value set is refused. The node calls this at start and refuses to run on an error.
pub fn test_offset_ms() -> Result<i64, ClockError> {
    TEST_OFFSET
        .get_or_init(|| match std::env::var(TEST_OFFSET_ENV) {
            Ok(text) => parse_test_offset(&text),
            Err(std::env::VarError::NotPresent) => Ok(0),
            Err(std::env::VarError::NotUnicode(raw)) => Err(ClockError::BadTestOffset(
                raw.to_string_lossy().into_owned(),
            )),
        })
        .clone()
}

/// Milliseconds since the Unix epoch (plus the test offset, if any).
pub fn wall_clock_ms() -> u64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // A refused offset stops the node at start; until then the clock reads unshifted.
    shift(system, test_offset_ms().unwrap_or(0))
}

fn shift(ms: u64, offset: i64) -> u64 {
    if offset >= 0 {
        ms.saturating_add(offset.unsigned_abs())
    } else {
        ms.saturating_sub(offset.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signed_offsets_and_refuses_the_rest() {
        assert_eq!(parse_test_offset("0"), Ok(0));
        assert_eq!(parse_test_offset("+5000"), Ok(5_000));
        assert_eq!(parse_test_offset(" -60000 "), Ok(-60_000));
        for bad in ["", "5s", "1e3", "86400001", "-86400001"] {
            assert_eq!(
                parse_test_offset(bad),
                Err(ClockError::BadTestOffset(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn shift_saturates_at_the_ends() {
        assert_eq!(shift(1_000, 500), 1_500);
        assert_eq!(shift(1_000, -500), 500);
        assert_eq!(shift(100, -500), 0);
        assert_eq!(shift(u64::MAX, 1), u64::MAX);
    }
}
