//! Talks to systemd for a `Type=notify` unit (`config/timed.service`): `READY=1` once the
//! database is open and the RPC port is bound (so `systemctl start` returns when clients can
//! connect), `STATUS=` lines while the node runs (shown by `systemctl status`), `STOPPING=1`
//! when shutdown begins, and `WATCHDOG=1` at half the unit's `WatchdogSec`.
//!
//! Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing. A message is one
//! datagram on a local socket, sent in place: it never waits on the network.

use crate::context::{NodeContext, SyncSnapshot};
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

/// Tells systemd the node is up, with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)], "READY");
}

/// Replaces the status line `systemctl status` shows.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)], "STATUS");
}

/// Tells systemd shutdown has begun (so a slow stop is not mistaken for a hang).
pub fn stopping() {
    send(
        &[NotifyState::Stopping, NotifyState::Status("shutting down")],
        "STOPPING",
    );
}

fn send(states: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(notification = what, error = %e, "cannot notify systemd");
    }
}

/// How often to ping systemd's watchdog: half of `$WATCHDOG_USEC`, if systemd set it for
/// this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .map(|limit| limit / 2)
        .filter(|every| !every.is_zero())
}

/// Pings the watchdog while the node is alive: each ping follows an answer from the consensus
/// task, so a wedged node stops pinging and systemd restarts it (`Restart=on-failure`).
pub async fn watchdog(ctx: Arc<NodeContext>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(every, ctx.consensus.query(|_| ())).await {
            Ok(Ok(())) => send(&[NotifyState::Watchdog], "WATCHDOG"),
            Ok(Err(_)) => return,
            Err(_) => tracing::warn!(
                waited = ?every,
                "consensus did not answer; withholding the systemd watchdog ping"
            ),
        }
    }
}

/// The status line for where sync stands.
pub fn sync_status(height: u64, s: &SyncSnapshot, peers: usize) -> String {
    if s.syncing {
        let left = s
            .seconds_left
            .map(|secs| format!(", about {secs} s left"))
            .unwrap_or_default();
        format!(
            "syncing: block {height} of {} ({:.1} blocks/s{left}), {peers} peers",
            s.target, s.blocks_per_sec
        )
    } else {
        format!("synced at block {height}, {peers} peers")
    }
}
