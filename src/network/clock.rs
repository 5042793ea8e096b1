//! How far this node's clock is from its peers'. Each hello carries the sender's wall clock;
//! the difference to ours at the handshake is kept per peer, and the median over the
//! connected peers is what `getnetworkinfo`'s `timeoffset` and `timed_clock_offset_seconds`
//! report, as bitcoind's time offset does: proposals dated more than the BFT drift limit
//! ahead are refused, so an operator needs to see a drifting clock before that bites.

/// A median peer offset larger than this is shown to the operator: the same limit at which
/// the consensus driver warns about proposals' timestamps.
pub const WARN_OFFSET_MS: i64 = crate::consensus::driver::CLOCK_WARN_MS;

/// What the operator is told when the median of the peers' clock offsets (`median_ms`:
/// theirs minus ours) is beyond [`WARN_OFFSET_MS`]; None when it is not (or no peer is
/// connected). Shown in the log and in `getnetworkinfo`'s `warnings`, as bitcoind does.
pub fn warning(median_ms: Option<i64>) -> Option<String> {
    let median = median_ms?;
    if median.unsigned_abs() <= WARN_OFFSET_MS.unsigned_abs() {
        return None;
    }
    let side = if median < 0 { "ahead of" } else { "behind" };
    Some(format!(
        "this node's clock is {:.1} s {side} its peers' (median offset {median} ms); \
         check NTP (timedatectl): block proposals dated too far ahead are refused",
        median.unsigned_abs() as f64 / 1000.0
    ))
}

/// The peer's clock minus ours, in milliseconds (negative: the peer is behind).
pub fn offset_ms(theirs_ms: u64, ours_ms: u64) -> i64 {
    // Both are Unix milliseconds, far below 2^63; saturate rather than wrap on nonsense.
    let theirs = i64::try_from(theirs_ms).unwrap_or(i64::MAX);
    let ours = i64::try_from(ours_ms).unwrap_or(i64::MAX);
    theirs.saturating_sub(ours)
}

/// The median of `offsets` (the mean of the middle two for an even count), or None if
/// there are none: a minority of wrong clocks cannot move it.
pub fn median(mut offsets: Vec<i64>) -> Option<i64> {
    if offsets.is_empty() {
        return None;
    }
    offsets.sort_unstable();
    let mid = offsets.len() / 2;
    if offsets.len() % 2 == 1 {
        return Some(offsets[mid]);
    }
    // The mean in i128, so two extreme values cannot overflow.
    let sum = i128::from(offsets[mid - 1]) + i128::from(offsets[mid]);
    Some((sum / 2) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_theirs_minus_ours() {
        assert_eq!(offset_ms(1_000, 1_500), -500);
        assert_eq!(offset_ms(2_500, 1_500), 1_000);
        assert_eq!(offset_ms(u64::MAX, 0), i64::MAX);
    }

    #[test]
    fn warning_names_the_offset_and_its_side() {
        assert_eq!(warning(None), None);
        assert_eq!(warning(Some(WARN_OFFSET_MS)), None);
        assert_eq!(warning(Some(-WARN_OFFSET_MS)), None);
        let ahead = warning(Some(-60_000)).unwrap();
        assert!(ahead.contains("60.0 s ahead of"), "{ahead}");
        let behind = warning(Some(5_500)).unwrap();
        assert!(behind.contains("5.5 s behind"), "{behind}");
    }

    #[test]
    fn median_ignores_a_minority_of_wrong_clocks() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7]), Some(7));
        assert_eq!(median(vec![40, -10, 30]), Some(30));
        // One peer an hour off among three close ones.
        assert_eq!(median(vec![3_600_000, 10, -20, 30]), Some(20));
        assert_eq!(median(vec![i64::MAX, i64::MAX]), Some(i64::MAX));
        assert_eq!(median(vec![i64::MIN, i64::MAX]), Some(0));
    }
}
