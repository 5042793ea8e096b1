//! The sync server: answers peers' requests for blocks, certified headers and UTXO-snapshot
//! pages from the database, on the blocking pool, never on the consensus thread, and makes
//! each request cost the asker.
//!
//! ```text
//! peer reader ─GetBlocks/GetHeaders/GetSnapshot─► admit (per peer: one in flight, byte bucket)
//!      │ refused: dropped, counted; every REFUSALS_PER_POINT a misbehaviour point
//!      ▼ admitted
//! tracked task ─► permit (SERVE_CONCURRENCY across peers) ─► spawn_blocking: read sled, encode
//!      ─► the peer's send queue ─► bytes charged to its bucket ─► next request may come
//! ```
//!
//! `GetFinality` (the proof that a transaction is final at layer 1) is served the same way,
//! from the view the consensus task publishes (`consensus::proofs`) or else the database, but
//! a validator missing a proposal's transactions asks for all of them at once: a peer may
//! have up to `MAX_FINALITY_QUEUE` of them waiting, drained by one task in batches of
//! `FINALITY_BATCH`, each request charged at least `MIN_REQUEST_COST` to the same bucket.
//!
//! Consensus traffic never waits behind these requests: they never enter its queue. A peer's
//! bucket refills at `SERVE_BYTES_PER_SEC`; a reply may overdraw it (a page is sent whole),
//! and the peer is refused until the debt is paid back. Honest clients ask one page at a time
//! and wait for it, so they are never refused for long; a flood is dropped at the cost of an
//! atomic check and, past `REFUSALS_PER_POINT` refusals a point, gets its sender banned.
//!
//! A damaged record is reported (error log, `timed_storage_corrupt_records_total`), not
//! served, and the node keeps running: the asker times out and asks someone else. The
//! node then asks its peers for that block, and consensus rewrites the record from a copy
//! that matches the height index and carries a valid certificate.

use super::frame::Frame;
use super::message::NetMessage;
use super::peer::PeerHandle;
use crate::consensus::driver::{
    block_page, header_page, is_corrupt, is_corrupt_set_read, report_unservable, PeerId,
    WireMessage,
};
use crate::consensus::proofs::FinalityProofs;
use crate::consensus::snapshot::snapshot_page;
use crate::ledger::snapshot::SnapshotEntry;
use crate::ledger::Ledger;
use dashmap::DashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bytes of replies a peer may receive per second on average.
pub const SERVE_BYTES_PER_SEC: u64 = 8 << 20;
/// Bytes a peer may receive at once (a full bucket): two of the largest pages.
pub const SERVE_BURST_BYTES: u64 = 2 * super::frame::MAX_FRAME_BYTES as u64;
/// Requests answered at once across all peers: each holds a blocking thread while it reads.
pub const SERVE_CONCURRENCY: usize = 2;
/// Refused requests per misbehaviour point. An honest client has at most one request in
/// flight and rarely a second (a retry racing a late reply); a flood of thousands a second
/// reaches the ban threshold within seconds.
pub const REFUSALS_PER_POINT: u64 = 50;
/// `GetFinality` requests one peer may have waiting: a block's worth of transactions
/// (`consensus::driver::MAX_BLOCK_TXS`), what a validator missing a whole proposal asks for at once.
pub const MAX_FINALITY_QUEUE: usize = 20_000;
/// `GetFinality` requests answered per trip to the blocking pool.
pub const FINALITY_BATCH: usize = 64;
/// Bytes every request is charged, whether or not it has a reply: asking for unknown
/// transactions costs the asker's budget too, not only this node's lookups.
pub const MIN_REQUEST_COST: u64 = 4 * 1024;
/// Damaged block heights waiting to be fetched again.
pub const MAX_PENDING_REPAIRS: usize = 64;
/// A snapshot taken for one client is served to fresh requests for this long: taking one is
/// a pass over the whole UTXO set, so peers cannot make this node take one per request.
pub const SNAPSHOT_REUSE: Duration = Duration::from_secs(60);

/// One peer's request budget.
#[derive(Debug)]
struct Budget {
    in_flight: bool,
    /// `GetFinality` requests waiting to be answered, and whether a task is draining them.
    finality: std::collections::VecDeque<crate::types::Txid>,
    finality_draining: bool,
    /// Bytes the peer may still receive; negative while a large reply is being paid off.
    tokens: f64,
    refilled: Instant,
    refused: u64,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            in_flight: false,
            finality: Default::default(),
            finality_draining: false,
            tokens: SERVE_BURST_BYTES as f64,
            refilled: now,
            refused: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens =
            (self.tokens + secs * SERVE_BYTES_PER_SEC as f64).min(SERVE_BURST_BYTES as f64);
        self.refilled = now;
    }
}

/// What [`SyncServer::admit`] decided about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Serve it; call [`SyncServer::finish`] when the reply is queued.
    Serve,
    /// Dropped; `penalize` when the peer earned a misbehaviour point with it.
    Refused { penalize: bool },
}

/// What [`SyncBudgets::admit_finality`] decided about a `GetFinality` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalityAdmission {
    /// Queued, and no task drains the peer's queue: start one ([`SyncServer::serve_finality`]).
    Drain,
    /// Queued behind others; the running task answers it.
    Queued,
    /// Dropped; `penalize` when the peer earned a misbehaviour point with it.
    Refused { penalize: bool },
}

/// Whether a message is a request the sync server answers.
pub fn is_sync_request(msg: &WireMessage) -> bool {
    matches!(
        msg,
        WireMessage::GetBlocks { .. }
            | WireMessage::GetHeaders { .. }
            | WireMessage::GetSnapshot { .. }
            | WireMessage::GetFinality(_)
    )
}

/// A UTXO snapshot taken at one height, so that all its pages agree.
struct TakenSnapshot {
    height: u64,
    taken: Instant,
    entries: Arc<Vec<SnapshotEntry>>,
}

/// Every connected peer's request budget.
#[derive(Default)]
pub struct SyncBudgets {
    budgets: DashMap<PeerId, Budget>,
}

/// Counts a refused request; whether it earns its sender a misbehaviour point.
fn refuse(b: &mut Budget) -> bool {
    b.refused += 1;
    crate::metrics::sync_request_refused();
    b.refused % REFUSALS_PER_POINT == 0
}

impl SyncBudgets {
    /// Decides whether `peer` may have a request served now, and if so marks it in flight.
    pub fn admit(&self, peer: PeerId, now: Instant) -> Admission {
        let mut b = self.budgets.entry(peer).or_insert_with(|| Budget::new(now));
        b.refill(now);
        if !b.in_flight && b.tokens > 0.0 {
            b.in_flight = true;
            return Admission::Serve;
        }
        Admission::Refused {
            penalize: refuse(&mut b),
        }
    }

    /// The reply to an admitted request is queued (or there was none): `bytes` are charged,
    /// at least `MIN_REQUEST_COST`.
    pub fn finish(&self, peer: PeerId, bytes: u64, now: Instant) {
        if let Some(mut b) = self.budgets.get_mut(&peer) {
            b.refill(now);
            b.tokens -= bytes.max(MIN_REQUEST_COST) as f64;
            b.in_flight = false;
        }
    }

    /// Queues `peer`'s request for the finality proof of `txid`, if its budget has room.
    pub fn admit_finality(
        &self,
        peer: PeerId,
        txid: crate::types::Txid,
        now: Instant,
    ) -> FinalityAdmission {
        let mut b = self.budgets.entry(peer).or_insert_with(|| Budget::new(now));
        b.refill(now);
        if b.tokens > 0.0 && b.finality.len() < MAX_FINALITY_QUEUE {
            b.finality.push_back(txid);
            if b.finality_draining {
                return FinalityAdmission::Queued;
            }
            b.finality_draining = true;
            return FinalityAdmission::Drain;
        }
        FinalityAdmission::Refused {
            penalize: refuse(&mut b),
        }
    }

    /// The next requests of `peer`'s finality queue, at most `max`; none when the queue is
    /// empty, and then the draining task must end (a new request starts another).
    fn next_finality(&self, peer: PeerId, max: usize) -> Vec<crate::types::Txid> {
        let Some(mut b) = self.budgets.get_mut(&peer) else {
            return Vec::new();
        };
        let n = b.finality.len().min(max);
        let batch: Vec<_> = b.finality.drain(..n).collect();
        if batch.is_empty() {
            b.finality_draining = false;
        }
        batch
    }

    /// Charges answered finality requests: their reply bytes, at least `MIN_REQUEST_COST`
    /// each.
    fn charge(&self, peer: PeerId, requests: usize, bytes: u64, now: Instant) {
        if let Some(mut b) = self.budgets.get_mut(&peer) {
            b.refill(now);
            let least = MIN_REQUEST_COST.saturating_mul(requests as u64);
            b.tokens -= bytes.max(least) as f64;
        }
    }

    /// The draining task stops early (shutdown, the peer closed): what waits is dropped.
    pub fn abandon_finality(&self, peer: PeerId) {
        if let Some(mut b) = self.budgets.get_mut(&peer) {
            b.finality.clear();
            b.finality_draining = false;
        }
    }

    /// Forgets a disconnected peer's budget.
    pub fn forget(&self, peer: PeerId) {
        self.budgets.remove(&peer);
    }
}

pub struct SyncServer {
    ledger: Arc<Ledger>,
    proofs: Arc<FinalityProofs>,
    pub budgets: SyncBudgets,
    permits: Arc<Semaphore>,
    snapshot: Mutex<Option<TakenSnapshot>>,
    damaged: Mutex<std::collections::BTreeSet<u64>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl SyncServer {
    pub fn new(
        ledger: Arc<Ledger>,
        proofs: Arc<FinalityProofs>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> SyncServer {
        SyncServer {
            ledger,
            proofs,
            budgets: SyncBudgets::default(),
            permits: Arc::new(Semaphore::new(SERVE_CONCURRENCY)),
            snapshot: Mutex::new(None),
            damaged: Mutex::new(Default::default()),
            shutdown,
            tasks,
        }
    }

    /// Answers an admitted request from `peer` on a tracked task: reads on the blocking pool,
    /// queues the reply, charges its bytes.
    pub fn serve(self: &Arc<Self>, peer: Arc<PeerHandle>, request: WireMessage) {
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let id = peer.id;
            let permit = tokio::select! {
                _ = me.shutdown.cancelled() => None,
                _ = peer.close.cancelled() => None,
                p = Arc::clone(&me.permits).acquire_owned() => p.ok(),
            };
            let Some(permit) = permit else {
                me.budgets.finish(id, 0, Instant::now());
                return;
            };
            let reader = Arc::clone(&me);
            let reply = tokio::task::spawn_blocking(move || {
                let reply = reader.answer(&request).map(|m| {
                    let m = NetMessage::Consensus(m);
                    (m.to_frame(), m.is_priority())
                });
                drop(permit);
                reply
            })
            .await;
            let bytes = match reply {
                Ok(Some((frame, priority))) => send(&peer, frame, priority),
                Ok(None) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "serving a sync request failed");
                    0
                }
            };
            me.budgets.finish(id, bytes, Instant::now());
        });
    }

    /// Drains `peer`'s finality queue on a tracked task, a batch per trip to the blocking
    /// pool, until it is empty; call when [`SyncBudgets::admit_finality`] says `Drain`.
    pub fn serve_finality(self: &Arc<Self>, peer: Arc<PeerHandle>) {
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let id = peer.id;
            loop {
                let batch = me.budgets.next_finality(id, FINALITY_BATCH);
                if batch.is_empty() {
                    return;
                }
                let permit = tokio::select! {
                    _ = me.shutdown.cancelled() => None,
                    _ = peer.close.cancelled() => None,
                    p = Arc::clone(&me.permits).acquire_owned() => p.ok(),
                };
                let Some(permit) = permit else {
                    me.budgets.abandon_finality(id);
                    return;
                };
                let reader = Arc::clone(&me);
                let requests = batch.len();
                let replies = tokio::task::spawn_blocking(move || {
                    let replies: Vec<Frame> = batch
                        .iter()
                        .filter_map(|txid| reader.answer_finality(txid))
                        .map(|m| NetMessage::Consensus(m).to_frame())
                        .collect();
                    drop(permit);
                    replies
                })
                .await;
                let bytes = match replies {
                    Ok(frames) => frames.into_iter().map(|f| send(&peer, f, true)).sum(),
                    Err(e) => {
                        tracing::error!(error = %e, "serving finality requests failed");
                        0
                    }
                };
                me.budgets.charge(id, requests, bytes, Instant::now());
            }
        });
    }

    /// The finality proof of `txid`: from the view the consensus task publishes, else the
    /// transaction alone from the database (final, or pending with this node's lock; the
    /// asker then has the transaction to check and vote on, and the votes come by gossip).
    /// `None` when this node does not know it. Blocking.
    pub fn answer_finality(&self, txid: &crate::types::Txid) -> Option<WireMessage> {
        if let Some(p) = self.proofs.get(txid) {
            if let Some(proof) = &p.slot {
                return Some(WireMessage::SlotFinality {
                    tx: Arc::clone(&p.tx),
                    proof: Arc::clone(proof),
                });
            }
            return Some(WireMessage::Finality {
                tx: Arc::clone(&p.tx),
                batches: p.batches.clone(),
            });
        }
        let stored = match self.ledger.final_tx(txid) {
            Some(tx) => Ok(Some(tx)),
            None => self
                .ledger
                .storage()
                .get::<crate::types::Transaction>(crate::storage::TreeId::PendingTxs, &txid.0)
                .map(|tx| tx.map(Arc::new))
                .map_err(|e| e.to_string()),
        };
        match stored {
            Ok(tx) => tx.map(|tx| WireMessage::Finality {
                tx,
                batches: Vec::new(),
            }),
            Err(e) => {
                tracing::warn!(%txid, error = %e, "cannot read a transaction a peer asked for");
                None
            }
        }
    }

    /// The reply to a sync request, read from the database; `None` when there is nothing to
    /// send (unknown heights, a damaged record, a snapshot page out of range). Blocking.
    pub fn answer(&self, request: &WireMessage) -> Option<WireMessage> {
        let storage = self.ledger.storage();
        match *request {
            WireMessage::GetBlocks { from_height } => match block_page(storage, from_height) {
                Ok(page) => {
                    if let Some(h) = page.damaged {
                        self.note_damaged(h);
                    }
                    (!page.blocks.is_empty()).then_some(WireMessage::Blocks(page.blocks))
                }
                Err(e) => {
                    report_unservable("blocks", from_height, &e, is_corrupt(&e));
                    None
                }
            },
            WireMessage::GetHeaders { from_height } => match header_page(storage, from_height) {
                Ok(page) => (!page.is_empty()).then(|| WireMessage::Headers(Arc::new(page))),
                Err(e) => {
                    report_unservable("headers", from_height, &e, is_corrupt_set_read(&e));
                    None
                }
            },
            WireMessage::GetSnapshot { height, page } => {
                let (height, entries) = self.snapshot_at(height)?;
                snapshot_page(height, &entries, page).map(|p| WireMessage::Snapshot(Arc::new(p)))
            }
            _ => None,
        }
    }

    /// Remembers a damaged block to fetch again from peers (at most `MAX_PENDING_REPAIRS`).
    fn note_damaged(&self, height: u64) {
        if let Ok(mut d) = self.damaged.lock() {
            if d.len() < MAX_PENDING_REPAIRS {
                d.insert(height);
            }
        }
    }

    /// Heights of damaged blocks found since the last call: the network asks peers for them,
    /// and consensus rewrites a record whose copy matches its index (`repair_if_damaged`).
    pub fn take_damaged(&self) -> Vec<u64> {
        self.damaged
            .lock()
            .map(|mut d| std::mem::take(&mut *d).into_iter().collect())
            .unwrap_or_default()
    }

    /// The snapshot pages are cut from: for height 0 (a fresh client) one younger than
    /// `SNAPSHOT_REUSE`, else a new one at the tip; for another height, the one taken there
    /// if it is still held. The ledger takes it under its write guard, so the set and its
    /// height agree.
    fn snapshot_at(&self, height: u64) -> Option<(u64, Arc<Vec<SnapshotEntry>>)> {
        let mut held = self.snapshot.lock().ok()?;
        let now = Instant::now();
        if let Some(s) = held.as_ref() {
            let usable = if height == 0 {
                now.saturating_duration_since(s.taken) < SNAPSHOT_REUSE
            } else {
                s.height == height
            };
            if usable {
                return Some((s.height, Arc::clone(&s.entries)));
            }
        }
        if height != 0 {
            return None;
        }
        let (tip, entries) = self.ledger.snapshot_entries();
        let tip = tip?;
        let entries = Arc::new(entries);
        *held = Some(TakenSnapshot {
            height: tip.height,
            taken: now,
            entries: Arc::clone(&entries),
        });
        Some((tip.height, entries))
    }
}

/// Queues a reply frame; returns the bytes charged: all of them even if the peer's queue was
/// full, since the reading was done (a peer that does not read cannot ask for free).
fn send(peer: &PeerHandle, frame: Frame, priority: bool) -> u64 {
    let len = frame.body.len() as u64;
    peer.send_frame(frame, priority);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_in_flight_per_peer_and_floods_earn_points() {
        let now = Instant::now();
        let budgets = SyncBudgets::default();
        assert_eq!(budgets.admit(1, now), Admission::Serve);
        assert_eq!(
            budgets.admit(2, now),
            Admission::Serve,
            "peers are independent"
        );
        let refusals: Vec<Admission> = (0..REFUSALS_PER_POINT)
            .map(|_| budgets.admit(1, now))
            .collect();
        assert!(refusals[..refusals.len() - 1]
            .iter()
            .all(|a| *a == Admission::Refused { penalize: false }));
        assert_eq!(
            refusals.last(),
            Some(&Admission::Refused { penalize: true })
        );
        // Answered with a reply larger than the bucket: refused until it is paid back.
        budgets.finish(1, 3 * SERVE_BURST_BYTES, now);
        assert!(matches!(budgets.admit(1, now), Admission::Refused { .. }));
        assert_eq!(
            budgets.admit(1, now + Duration::from_secs(60)),
            Admission::Serve
        );
        budgets.forget(1);
        assert!(budgets.budgets.get(&1).is_none());
    }

    #[test]
    fn finality_requests_queue_up_to_a_block_drain_in_batches_and_pay_for_lookups() {
        let now = Instant::now();
        let budgets = SyncBudgets::default();
        let txid = |i: usize| crate::types::Hash32([(i % 251) as u8; 32]);
        // A validator missing a whole proposal asks for all of it at once: one drain task.
        assert_eq!(
            budgets.admit_finality(1, txid(0), now),
            FinalityAdmission::Drain
        );
        for i in 1..MAX_FINALITY_QUEUE {
            assert_eq!(
                budgets.admit_finality(1, txid(i), now),
                FinalityAdmission::Queued
            );
        }
        assert!(matches!(
            budgets.admit_finality(1, txid(0), now),
            FinalityAdmission::Refused { .. }
        ));
        // Drained in batches; once empty the task ends and a new request starts another.
        let mut answered = 0;
        loop {
            let batch = budgets.next_finality(1, FINALITY_BATCH);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= FINALITY_BATCH);
            answered += batch.len();
            // No replies (unknown transactions): each lookup is still charged.
            budgets.charge(1, batch.len(), 0, now);
        }
        assert_eq!(answered, MAX_FINALITY_QUEUE);
        // The lookups overdrew the bucket: refused until it refills.
        assert!(MAX_FINALITY_QUEUE as u64 * MIN_REQUEST_COST > SERVE_BURST_BYTES);
        assert!(matches!(
            budgets.admit_finality(1, txid(1), now),
            FinalityAdmission::Refused { .. }
        ));
        assert_eq!(
            budgets.admit_finality(1, txid(1), now + Duration::from_secs(60)),
            FinalityAdmission::Drain
        );
        // A task that stops early leaves no queue behind and no task marked running.
        budgets.abandon_finality(1);
        assert!(budgets.next_finality(1, FINALITY_BATCH).is_empty());
        assert_eq!(
            budgets.admit_finality(1, txid(2), now + Duration::from_secs(60)),
            FinalityAdmission::Drain
        );
    }

    #[test]
    fn the_byte_bucket_refills_at_its_rate_up_to_its_size() {
        let now = Instant::now();
        let mut b = Budget::new(now);
        assert!(b.tokens > 0.0);
        // Overdrawn by a huge reply: refused until the bucket refills past zero.
        b.tokens = -(SERVE_BYTES_PER_SEC as f64);
        b.refill(now + Duration::from_millis(500));
        assert!(b.tokens < 0.0);
        b.refill(now + Duration::from_millis(1_600));
        assert!(b.tokens > 0.0);
        b.refill(now + Duration::from_secs(3_600));
        assert_eq!(b.tokens, SERVE_BURST_BYTES as f64, "the bucket is capped");
    }
}
