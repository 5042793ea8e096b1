//! The live feed: committed blocks and finalized transactions for every open page, and the
//! finality certificates kept for pages opened later.
//!
//! ```text
//! subscribeblocks ───┐ (in process, while someone uses the explorer)
//! subscribefinality ─┴► feed task ─► broadcast ─► each open event stream (events.rs)
//!                         └ txid ─try_send─► keeper task ─ gettransactionfinality ─► Kept
//! ```
//!
//! Why keep certificates: the node holds a transaction's vote batches only until a block
//! confirms it (then the block's commit certificate is the proof), which on a fast chain is
//! well before anyone opens the transaction's page. The keeper copies each certificate the
//! moment the transaction is final, at most [`KEEP_PER_SECOND`] a second, and remembers the
//! last [`KEPT`]. At that moment the node may still be making its own vote durable (its
//! batch is shown only once flushed, so the answer can fall short of the quorum for a few
//! milliseconds): the keeper asks again, [`KEEP_ATTEMPTS`] times at most, until the
//! certificate's weight reaches the quorum.
//!
//! An explorer nobody uses costs nothing: the feed subscribes on the first request and lets
//! go once no page has asked for anything for [`IDLE_AFTER`] and no event stream is open.

use super::api::ReadOnly;
use governor::{DefaultDirectRateLimiter, Quota};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Events held for event streams that are behind; one that falls further is told to resync.
pub const LIVE_QUEUE: usize = 1_024;
/// Notifications queued in each in-process subscription.
const SUBSCRIPTION_QUEUE: usize = 4_096;
/// Certificates copied per second at most (each is one read through consensus).
pub const KEEP_PER_SECOND: u32 = 50;
/// Transactions waiting for their certificate to be copied; past it they are skipped.
const KEEP_QUEUE: usize = 256;
/// Reads of one certificate at most while it falls short of the quorum, and the wait between.
pub const KEEP_ATTEMPTS: usize = 10;
const KEEP_RETRY: Duration = Duration::from_millis(50);
/// Certificates remembered (the oldest goes first).
pub const KEPT: usize = 10_000;
/// The feed stops this long after the last request, once no event stream is open.
pub const IDLE_AFTER: Duration = Duration::from_secs(120);
/// How often an active feed checks whether it is still wanted.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// Wait before subscribing again after the node closed a subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// `last_use_ms` before the first request.
const NEVER_USED: u64 = u64::MAX;

/// What open pages are told.
#[derive(Clone, Debug)]
pub enum Live {
    /// A committed block: height, hash, time, tx count.
    Block(Arc<Value>),
    /// A transaction final at layer 1: its txid.
    Final(Arc<Value>),
    /// Events were missed: reload what is shown.
    Resync,
}

/// Finality answers copied while the node still held their vote batches.
#[derive(Default)]
struct Kept {
    by_txid: HashMap<String, Arc<Value>>,
    order: VecDeque<String>,
}

/// Shared between the feed task, the keeper and the request handlers.
pub struct Feed {
    live: broadcast::Sender<Live>,
    kept: Mutex<Kept>,
    /// Milliseconds since `epoch` of the last request, or [`NEVER_USED`].
    last_use_ms: AtomicU64,
    epoch: Instant,
    active: AtomicBool,
    wake: Notify,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            live: broadcast::channel(LIVE_QUEUE).0,
            kept: Mutex::new(Kept::default()),
            last_use_ms: AtomicU64::new(NEVER_USED),
            epoch: Instant::now(),
            active: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// A request arrived: the feed runs (or starts) until the explorer is idle again.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_use_ms.store(now, Ordering::Relaxed);
        if !self.active.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.live.subscribe()
    }

    /// The finality answer kept for `txid`, if the keeper copied one.
    pub fn kept(&self, txid: &str) -> Option<Arc<Value>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.by_txid.get(txid).cloned()
    }

    fn keep(&self, txid: String, finality: Value) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept
            .by_txid
            .insert(txid.clone(), Arc::new(finality))
            .is_none()
        {
            kept.order.push_back(txid);
        }
        while kept.order.len() > KEPT {
            if let Some(old) = kept.order.pop_front() {
                kept.by_txid.remove(&old);
            }
        }
    }

    fn idle(&self) -> bool {
        let last = self.last_use_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        let quiet = last == NEVER_USED || now.saturating_sub(last) > IDLE_AFTER.as_millis() as u64;
        self.live.receiver_count() == 0 && quiet
    }
}

/// Starts the feed and its keeper on `tasks`; they end with `shutdown`.
pub fn start(
    api: ReadOnly,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Arc<Feed> {
    let feed = Arc::new(Feed::new());
    let (to_keeper, keeper_rx) = mpsc::channel(KEEP_QUEUE);
    tasks.spawn(run(
        Arc::clone(&feed),
        api.clone(),
        to_keeper,
        shutdown.clone(),
    ));
    tasks.spawn(keep_certificates(
        Arc::clone(&feed),
        api,
        keeper_rx,
        shutdown,
    ));
    feed
}

async fn run(
    feed: Arc<Feed>,
    api: ReadOnly,
    to_keeper: mpsc::Sender<String>,
    shutdown: CancellationToken,
) {
    loop {
        if feed.idle() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = feed.wake.notified() => {}
            }
        }
        feed.active.store(true, Ordering::Release);
        // Runs until idle (then waits for the next request) or until shutdown.
        while !shutdown.is_cancelled() && !feed.idle() {
            follow(&feed, &api, &to_keeper, &shutdown).await;
            if !feed.idle() {
                // The node closed a subscription (or refused one): pages may have missed
                // events, so they reload.
                let _ = feed.live.send(Live::Resync);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
                }
            }
        }
        feed.active.store(false, Ordering::Release);
        // A request between the last idle check and here saw the feed active and did not
        // wake it: the check at the top of the loop catches it.
        tracing::debug!("explorer idle: live feed stopped");
    }
}

/// Forwards both subscriptions until one ends, the explorer is idle, or shutdown.
async fn follow(
    feed: &Feed,
    api: &ReadOnly,
    to_keeper: &mpsc::Sender<String>,
    shutdown: &CancellationToken,
) {
    let subscribed = async {
        let blocks = api.subscribe("subscribeblocks", SUBSCRIPTION_QUEUE).await?;
        let finals = api
            .subscribe("subscribefinality", SUBSCRIPTION_QUEUE)
            .await?;
        Ok::<_, super::api::CallError>((blocks, finals))
    };
    let (mut blocks, mut finals) = match subscribed.await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "explorer: cannot subscribe to the node's events");
            return;
        }
    };
    let mut check = tokio::time::interval(IDLE_CHECK);
    check.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = check.tick() => if feed.idle() { return },
            b = blocks.next::<Value>() => match b {
                Some(Ok((block, _))) => { let _ = feed.live.send(Live::Block(Arc::new(block))); }
                _ => return,
            },
            f = finals.next::<Value>() => match f {
                Some(Ok((fin, _))) => {
                    if let Some(txid) = fin["txid"].as_str() {
                        // Full: this one's page shows its block's commit certificate instead.
                        let _ = to_keeper.try_send(txid.to_string());
                    }
                    let _ = feed.live.send(Live::Final(Arc::new(fin)));
                }
                _ => return,
            },
        }
    }
}

/// Copies finality certificates, at most [`KEEP_PER_SECOND`] a second.
async fn keep_certificates(
    feed: Arc<Feed>,
    api: ReadOnly,
    mut txids: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    let rate = NonZeroU32::new(KEEP_PER_SECOND).unwrap_or(NonZeroU32::MIN);
    let limiter = DefaultDirectRateLimiter::direct(Quota::per_second(rate));
    loop {
        let txid = tokio::select! {
            _ = shutdown.cancelled() => return,
            t = txids.recv() => match t { Some(t) => t, None => return },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = limiter.until_ready() => {}
        }
        for attempt in 1..=KEEP_ATTEMPTS {
            match api.call("gettransactionfinality", vec![json!(txid)]).await {
                Ok(v) if has_quorum(&v) => {
                    feed.keep(txid, v);
                    break;
                }
                // Short of the quorum to the last: keep what there is.
                Ok(v) if attempt == KEEP_ATTEMPTS && !v["certificate"].is_null() => {
                    feed.keep(txid, v);
                    break;
                }
                Ok(_) if attempt == KEEP_ATTEMPTS => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%txid, error = %e, "explorer: finality not kept");
                    break;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(KEEP_RETRY) => {}
            }
        }
    }
}

/// Whether a `gettransactionfinality` answer's certificate carries the quorum's weight.
fn has_quorum(answer: &Value) -> bool {
    let Some(batches) = answer["certificate"]["batches"].as_array() else {
        return false;
    };
    let weight: u64 = batches.iter().filter_map(|b| b["weight"].as_u64()).sum();
    answer["quorum"].as_u64().is_some_and(|q| weight >= q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_counts_once_its_batches_weigh_the_quorum() {
        let answer = |weights: &[u64]| {
            let batches: Vec<Value> = weights.iter().map(|w| json!({"weight": w})).collect();
            json!({"quorum": 3, "certificate": {"batches": batches}})
        };
        assert!(!has_quorum(&answer(&[1, 1])));
        assert!(has_quorum(&answer(&[1, 1, 1])));
        assert!(has_quorum(&answer(&[10])));
        assert!(!has_quorum(&json!({"quorum": 3, "certificate": null})));
    }

    #[test]
    fn kept_certificates_are_bounded_oldest_first() {
        let feed = Feed::new();
        for i in 0..KEPT + 3 {
            feed.keep(format!("{i:064x}"), json!({ "n": i }));
        }
        assert!(feed.kept(&format!("{:064x}", 0)).is_none());
        assert!(feed.kept(&format!("{:064x}", 2)).is_none());
        assert_eq!(feed.kept(&format!("{:064x}", 3)).unwrap()["n"], 3);
        assert_eq!(feed.kept.lock().unwrap().by_txid.len(), KEPT);
    }

    #[test]
    fn the_feed_is_wanted_while_used_or_watched() {
        let feed = Feed::new();
        assert!(feed.idle(), "nobody asked yet");
        feed.touch();
        assert!(!feed.idle(), "just used");
        // Used longer ago than IDLE_AFTER.
        feed.last_use_ms.store(0, Ordering::Relaxed);
        let Some(epoch) = Instant::now().checked_sub(IDLE_AFTER + Duration::from_secs(1)) else {
            return;
        };
        let long_ago = Feed {
            epoch,
            ..Feed::new()
        };
        long_ago.last_use_ms.store(0, Ordering::Relaxed);
        assert!(long_ago.idle());
        let watching = long_ago.subscribe();
        assert!(!long_ago.idle(), "an open event stream keeps it");
        drop(watching);
        assert!(long_ago.idle());
    }
}
