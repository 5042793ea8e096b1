//! The client side of fast sync: a new node that is far behind downloads certified headers
//! from genesis and the UTXO set at the last one instead of replaying every block.
//!
//! ```text
//! wait for a peer ≥ fast_sync_after blocks ahead ─► snapshot page 0 (fixes height T)
//!   ─► headers 1..=T, each certificate checked (HeaderChain) ─► snapshot pages 1..n
//!   ─► commitment == header T's ─► consensus installs it ─► block sync from T+1
//! ```
//!
//! Any failure (a silent or lying peer, a commitment that does not match) ends the attempt:
//! the peer is banned if it lied, and the node falls back to plain block sync, which is always
//! correct, only slower.
//!
//! From the first request to a peer until the attempt ends, the node's chain state is genesis
//! waiting to be replaced: RPC calls that read it get -28 with the step and how far along it
//! is (the [`Warmup`] status), not genesis figures.

use crate::consensus::driver::{PeerId, WireMessage};
use crate::consensus::snapshot::{check_snapshot, HeaderChain, SnapshotPage};
use crate::consensus::MasternodeSet;
use crate::context::NodeContext;
use crate::rpc::warmup::Warmup;
use crate::types::BlockHash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait for a peer that is far enough ahead before giving up on fast sync.
pub const FIND_PEER_FOR: Duration = Duration::from_secs(30);
/// How long one reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// Replies waiting for the fast-sync task.
pub const REPLY_QUEUE: usize = 64;
/// Largest snapshot taken (pages of `SNAPSHOT_PAGE` outputs): 20 million outputs, about
/// 2 GiB in memory while it is checked. A larger set needs a streaming install.
pub const MAX_SNAPSHOT_PAGES: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
enum FastSyncError {
    #[error("no reply from peer {0} within {REPLY_TIMEOUT:?}")]
    Silent(PeerId),
    #[error("peer {peer} lied: {reason}")]
    Lied { peer: PeerId, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Runs a fast sync if a peer is at least `min_behind` blocks ahead; always ends by handing
/// over to block sync. `replies` is what the network routes to us; `warmup` tells RPC
/// clients how far along the sync is while it runs.
pub async fn run(
    ctx: Arc<NodeContext>,
    mut replies: mpsc::Receiver<(PeerId, WireMessage)>,
    genesis: BlockHash,
    genesis_set: MasternodeSet,
    min_behind: u64,
    warmup: Arc<Warmup>,
) {
    let target = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        t = find_peer(&ctx, min_behind) => t,
    };
    let next = match target {
        None => {
            tracing::info!("no peer is far enough ahead for a snapshot; syncing block by block");
            1
        }
        Some(peer) => {
            warmup.set(format!(
                "fast sync: asking peer {peer} for its UTXO snapshot"
            ));
            // A sync under way is abandoned at shutdown: nothing of it is stored until the
            // consensus task installs the whole snapshot in one batch.
            let synced = tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                r = sync_from(&ctx, peer, &mut replies, genesis, genesis_set, &warmup) => r,
            };
            warmup.clear();
            match synced {
                Ok(height) => height + 1,
                Err(e) => {
                    if let FastSyncError::Lied { peer, reason } = &e {
                        ctx.network.punish(*peer, reason);
                    }
                    tracing::warn!(error = %e, "fast sync failed; syncing block by block instead");
                    ctx.ledger.height().unwrap_or(0) + 1
                }
            }
        }
    };
    ctx.network.end_fast_sync(next);
}

/// `done` of `total` as a whole percentage (0 of 0 is done).
fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    (u128::from(done) * 100 / u128::from(total)) as u64
}

/// The peer to fast-sync from: one proven at least `min_behind` blocks ahead. None at once
/// if the connected peers do not even claim that (block sync is quicker), or after
/// `FIND_PEER_FOR` without such a peer.
async fn find_peer(ctx: &NodeContext, min_behind: u64) -> Option<PeerId> {
    let deadline = tokio::time::Instant::now() + FIND_PEER_FOR;
    while tokio::time::Instant::now() < deadline {
        let ours = ctx.ledger.height().unwrap_or(0);
        if ours > 0 {
            return None;
        }
        if let Some((peer, h)) = ctx.network.best_peer() {
            if h >= ours + min_behind {
                return Some(peer);
            }
            // Heights count only once a verified vote or block proves them, which takes a
            // moment after connecting; the hellos' claims say whether that wait is worth it.
            if ctx.network.best_claimed_height() < ours + min_behind {
                return None;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Sends `msg` to `peer` and waits for its reply of the kind `pick` accepts.
async fn ask<T>(
    ctx: &NodeContext,
    replies: &mut mpsc::Receiver<(PeerId, WireMessage)>,
    peer: PeerId,
    msg: WireMessage,
    pick: impl Fn(WireMessage) -> Option<T>,
) -> Result<T, FastSyncError> {
    if !ctx.network.send_to(peer, msg) {
        return Err(FastSyncError::Other(format!("peer {peer} is gone")));
    }
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let got = tokio::time::timeout_at(deadline, replies.recv())
            .await
            .map_err(|_| FastSyncError::Silent(peer))?;
        let Some((from, reply)) = got else {
            return Err(FastSyncError::Other("the network stopped".into()));
        };
        if from == peer {
            if let Some(v) = pick(reply) {
                return Ok(v);
            }
        }
    }
}

fn snapshot_page(m: WireMessage) -> Option<Arc<SnapshotPage>> {
    match m {
        WireMessage::Snapshot(p) => Some(p),
        _ => None,
    }
}

async fn sync_from(
    ctx: &NodeContext,
    peer: PeerId,
    replies: &mut mpsc::Receiver<(PeerId, WireMessage)>,
    genesis: BlockHash,
    genesis_set: MasternodeSet,
    warmup: &Warmup,
) -> Result<u64, FastSyncError> {
    let lied = |reason: String| FastSyncError::Lied { peer, reason };
    // Page 0 fixes the height the peer's snapshot is taken at.
    let first = ask(
        ctx,
        replies,
        peer,
        WireMessage::GetSnapshot { height: 0, page: 0 },
        snapshot_page,
    )
    .await?;
    let (target, pages) = (first.height, first.pages);
    if pages > MAX_SNAPSHOT_PAGES {
        return Err(lied(format!(
            "a snapshot of {pages} pages (this node takes at most {MAX_SNAPSHOT_PAGES})"
        )));
    }
    tracing::info!(
        peer,
        height = target,
        pages,
        "fast sync: downloading headers and the UTXO snapshot"
    );

    let mut chain = HeaderChain::new(ctx.params.network, genesis, genesis_set);
    let headers_status = |height: u64| {
        format!(
            "fast sync: verifying certified headers, {height} of {target} ({}%)",
            percent(height, target)
        )
    };
    warmup.set(headers_status(chain.height()));
    while chain.height() < target {
        let from_height = chain.height() + 1;
        let page = ask(
            ctx,
            replies,
            peer,
            WireMessage::GetHeaders { from_height },
            |m| match m {
                WireMessage::Headers(h) => Some(h),
                _ => None,
            },
        )
        .await?;
        // Hundreds of certificates of many signatures each: checked on the blocking pool.
        let (back, verdict) = tokio::task::spawn_blocking(move || {
            let verdict = chain.accept_page(&page, target);
            (chain, verdict)
        })
        .await
        .map_err(|e| FastSyncError::Other(format!("header check failed: {e}")))?;
        chain = back;
        verdict.map_err(|e| lied(e.to_string()))?;
        ctx.sync.set_target(target);
        warmup.set(headers_status(chain.height()));
        tracing::info!(
            height = chain.height(),
            target,
            "fast sync: headers verified"
        );
    }

    let mut entries = first.entries.clone();
    for page in 1..pages {
        warmup.set(format!(
            "fast sync: downloading the UTXO snapshot at height {target}, page {} of {pages} ({}%)",
            page + 1,
            percent(u64::from(page), u64::from(pages))
        ));
        let p = ask(
            ctx,
            replies,
            peer,
            WireMessage::GetSnapshot {
                height: target,
                page,
            },
            snapshot_page,
        )
        .await?;
        if p.height != target || p.page != page || p.pages != pages {
            return Err(lied(format!(
                "snapshot page {page} does not belong to the snapshot at {target}"
            )));
        }
        entries.extend(p.entries.iter().cloned());
    }
    warmup.set(format!(
        "fast sync: checking and installing the UTXO snapshot at height {target} ({} outputs)",
        entries.len()
    ));
    let last = check_snapshot(&chain, target, &entries)
        .map_err(|e| lied(e.to_string()))?
        .clone();
    let (set, prev_set) = chain.sets();
    let count = entries.len();
    ctx.consensus
        .import_snapshot(last, set.clone(), prev_set.clone(), entries)
        .await
        .map_err(FastSyncError::Other)?;
    tracing::info!(
        height = target,
        outputs = count,
        "fast sync done; following blocks from here"
    );
    Ok(target)
}
