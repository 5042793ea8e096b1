//! Bounded, named waits for the node's way out. A stop should take well under a second (as
//! bitcoind's usually does); when one part holds it up, the log says which part and for how
//! long at most, and the node goes on without it after the grace rather than hang.
//!
//! ```text
//! signal / RPC stop ─► token cancelled ─► RPC: no new requests, answer those in flight
//!   ─► cookie removed ─► network, sync server, metrics, followers end ─► consensus task ends
//!   ─► storage flushed ─► "stopped cleanly in N ms"
//! ```

use std::future::Future;
use std::time::Duration;

/// A wait shorter than this is not worth a log line.
pub const NOTICEABLE: Duration = Duration::from_millis(250);

/// Waits for `fut`, at most `grace`. Once the wait passes [`NOTICEABLE`] it logs that it is
/// waiting for `what`; past `grace` it logs that it gives up, and returns None.
pub async fn wait_for<F: Future>(what: &str, grace: Duration, fut: F) -> Option<F::Output> {
    tokio::pin!(fut);
    if let Ok(v) = tokio::time::timeout(NOTICEABLE.min(grace), &mut fut).await {
        return Some(v);
    }
    tracing::info!(?grace, "shutdown: waiting for {what}");
    match tokio::time::timeout(grace.saturating_sub(NOTICEABLE), fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "shutdown: {what} did not end in time; going on without"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_with_its_future_or_gives_up_after_the_grace() {
        let quick = wait_for("a quick part", Duration::from_secs(60), async { 7 }).await;
        assert_eq!(quick, Some(7));
        // Past the noticeable mark, well within the grace.
        let slow = wait_for("a slow part", Duration::from_secs(60), async {
            tokio::time::sleep(NOTICEABLE * 2).await;
            8
        })
        .await;
        assert_eq!(slow, Some(8));
        let stuck = wait_for("a stuck part", NOTICEABLE * 2, std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
    }
}
