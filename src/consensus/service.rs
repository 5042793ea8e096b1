//! The owner of consensus: one thread that owns the [`ConsensusDriver`], feeds it commands
//! and timer expiries, publishes what it knows, and hands what it says to a [`Transport`].
//!
//! ```text
//! network ─deliver─┐                            ┌─► Transport (broadcast / send)
//! RPC ────submit───┼─► bounded channel ─► owner ─┼─► flusher ─flush, then send─► Transport
//!                  │         (its own thread:    ├─► timers (earliest first)
//!                  │          driver runs inline)├─► views (status, proofs) ─► RPC, metrics
//!                  │                             ├─► events (broadcast channel)
//!                  │  block work done ◄─ beside ◄┘ (blocking pool: this node's proposal
//!                  └─────────────────────────────┘  built, another's checked)
//! ```
//!
//! The driver does disk I/O and signature checks, so the owner runs on a thread of its own
//! (taken from the blocking pool for the node's life) and calls it directly: no hop to
//! another thread per message. It waits for commands and timers through the runtime's handle.
//! Commands already queued when it wakes are handled together (up to
//! [`MAX_COMMANDS_PER_HOP`]) before one publish and one dispatch of their outputs. Messages
//! from peers go through `try_send`: when consensus falls behind, excess peer messages are
//! dropped (peers send again) rather than letting a flood grow memory or stall the network
//! task.
//!
//! The owner can be paused (the node's disk guard does it when the data directory's disk runs
//! low): it then steps the driver for nothing, so nothing is written, locked or voted. Local
//! submits are refused with the reason, peers' messages are not taken (they come again, and
//! what the node missed it catches up by the normal sync once it resumes), timers wait, block
//! work that comes back from beside the owner waits for the resume, and only reads of the
//! driver's state are answered.

use super::door::{self, Arrival};
use super::driver::{
    BuiltProposal, CheckedProposal, ConsensusDriver, DriverError, Dropped, IgnoredPeers, NodeEvent,
    Output, PeerId, TimerKind, WireMessage,
};
use super::finality::Millis;
use super::proofs::FinalityProofs;
use super::status::ConsensusView;
use crate::mempool::{PoolError, VerifiedTx};
use crate::types::{Transaction, Txid};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Commands waiting for the consensus task.
pub const COMMAND_QUEUE: usize = 16_384;
/// Most queued commands handled before their outputs go out: large enough to amortize the
/// publish and dispatch under load, small enough that timers and sends are not held back.
pub const MAX_COMMANDS_PER_HOP: usize = 256;
/// Votes waiting for the flush that makes their locks durable. When the disk cannot keep up,
/// the consensus task waits here rather than promise faster than it persists.
pub const DURABLE_QUEUE: usize = 16_384;
/// Events kept for slow subscribers before they miss some.
pub const EVENT_QUEUE: usize = 4_096;
/// Block work done beside the owner and waiting for it: a proposal or two per round.
const FINISHED_QUEUE: usize = 16;

/// Where consensus messages go: the P2P layer, or a test's in-memory network.
pub trait Transport: Send + Sync + 'static {
    fn broadcast(&self, msg: WireMessage);
    /// Sends `msg` to a few peers at random (`driver::RELAY_FANOUT`); a transport that cannot
    /// choose sends it to all.
    fn relay(&self, msg: WireMessage) {
        self.broadcast(msg)
    }
    fn send(&self, peer: PeerId, msg: WireMessage);
    /// Sends `msg` to the node whose key is `node`, if connected to it (a layer-1 share to
    /// its slot's aggregator); dropped otherwise, as a lost packet would be.
    fn send_to_node(&self, node: &crate::types::PublicKey, msg: WireMessage);
    /// A peer served provably wrong data. Called directly for every fault, so none is lost
    /// (the event channel drops what a lagging subscriber has not read).
    fn punish(&self, peer: PeerId, why: &str);
    /// A peer sent what only a misbehaving node sends: `points` toward its ban. Called
    /// directly, like `punish`, so no points are lost.
    fn penalize(&self, peer: PeerId, points: u32, why: &str);
}

pub(super) enum Command {
    Message {
        from: PeerId,
        msg: WireMessage,
    },
    /// A local submit the door checked (at `at`).
    SubmitVerified {
        at: std::time::Instant,
        vtx: VerifiedTx,
        reply: oneshot::Sender<Result<Txid, SubmitError>>,
    },
    /// A peer's transaction the door checked.
    VerifiedTransaction {
        from: PeerId,
        vtx: VerifiedTx,
    },
    /// A read of the driver's state (pool, engines) for RPC; runs between two inputs.
    Query(Box<dyn FnOnce(&ConsensusDriver) + Send>),
    ImportSnapshot(Box<SnapshotImport>),
}

/// A verified snapshot for a fresh node, and where to say how its installation went.
pub struct SnapshotImport {
    pub last: super::snapshot::HeaderEntry,
    pub set: super::MasternodeSet,
    pub prev_set: super::MasternodeSet,
    pub entries: Vec<crate::ledger::snapshot::SnapshotEntry>,
    pub reply: oneshot::Sender<Result<(), String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] PoolError),
    #[error("the consensus service has stopped")]
    Stopped,
    /// The owner is paused (see the module docs); the reason says why and what resumes it.
    #[error("the node is not taking new transactions: {0}")]
    Paused(String),
}

/// A cloneable way to talk to the consensus task.
#[derive(Clone)]
pub struct ConsensusHandle {
    commands: mpsc::Sender<Command>,
    /// Transactions go through the door, which checks their signatures in batches.
    door: mpsc::Sender<Arrival>,
    events: broadcast::Sender<NodeEvent>,
    /// Peers the driver stopped reading (they sent forgeries): dropped before the queue.
    ignored: IgnoredPeers,
    /// Finality proofs the task publishes after each step, for the sync server.
    proofs: Arc<FinalityProofs>,
    /// The engines' and the pool's state, published after each step, for RPC and metrics.
    status: Arc<ConsensusView>,
    /// Why the owner is paused, if it is: set by whoever watches the node's resources.
    pause: Arc<watch::Sender<Option<String>>>,
}

/// How much waits at each stage before the owner (see [`ConsensusHandle::queue_depths`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueDepths {
    /// Transactions waiting for the door's signature checks.
    pub door: usize,
    /// Commands waiting for the owner.
    pub owner: usize,
}

/// The pool's answer to a submit put in line ([`ConsensusHandle::enqueue`]).
pub struct Verdict(oneshot::Receiver<Result<Txid, SubmitError>>);

impl Verdict {
    pub async fn answer(self) -> Result<Txid, SubmitError> {
        self.0.await.map_err(|_| SubmitError::Stopped)?
    }
}

impl ConsensusHandle {
    /// What waits at the door and for the owner now: the queue that stays full at a node's
    /// ceiling is the stage that limits it.
    pub fn queue_depths(&self) -> QueueDepths {
        let waiting = |max: usize, free: usize| max.saturating_sub(free);
        QueueDepths {
            door: waiting(self.door.max_capacity(), self.door.capacity()),
            owner: waiting(self.commands.max_capacity(), self.commands.capacity()),
        }
    }

    /// Submits a transaction from a local client and waits for the pool's verdict.
    pub async fn submit(&self, tx: Transaction) -> Result<Txid, SubmitError> {
        self.enqueue(tx).await?.answer().await
    }

    /// Puts a transaction from a local client in line at the door and returns at once; the
    /// returned [`Verdict`] waits for the pool's answer. Submits reach the pool in the order
    /// they were put in line (the door and the owner's submit lane are both first in, first
    /// out), so a caller may put several in line before the first verdict comes back.
    pub async fn enqueue(&self, tx: Transaction) -> Result<Verdict, SubmitError> {
        // Refused before the door spends signature checks on it; one that races a pause is
        // refused by the owner.
        if let Some(reason) = self.paused() {
            return Err(SubmitError::Paused(reason));
        }
        let (reply, answer) = oneshot::channel();
        self.door
            .send(Arrival::Submit {
                at: std::time::Instant::now(),
                tx: Arc::new(tx),
                reply,
            })
            .await
            .map_err(|_| SubmitError::Stopped)?;
        Ok(Verdict(answer))
    }

    /// Pauses the owner with the reason (refused submits name it), or resumes it with
    /// `None`. A pause takes effect before the owner's next step.
    pub fn set_paused(&self, reason: Option<String>) {
        self.pause.send_replace(reason);
    }

    /// Why the owner is paused, if it is.
    pub fn paused(&self) -> Option<String> {
        self.pause.borrow().clone()
    }

    /// Reads the driver's state (the pool, the engines) between two inputs. The closure runs
    /// on the owner's thread and must be quick: consensus waits for it. Prefer [`Self::view`].
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ConsensusDriver) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn FnOnce(&ConsensusDriver) + Send> = Box::new(move |d| {
            let _ = reply.send(f(d));
        });
        self.commands
            .send(Command::Query(job))
            .await
            .map_err(|_| SubmitError::Stopped)?;
        answer.await.map_err(|_| SubmitError::Stopped)
    }

    /// Installs a verified snapshot (fast sync of a new node); the error says why it was
    /// refused (e.g. blocks arrived meanwhile).
    pub async fn import_snapshot(
        &self,
        last: super::snapshot::HeaderEntry,
        set: super::MasternodeSet,
        prev_set: super::MasternodeSet,
        entries: Vec<crate::ledger::snapshot::SnapshotEntry>,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        let job = SnapshotImport {
            last,
            set,
            prev_set,
            entries,
            reply,
        };
        self.commands
            .send(Command::ImportSnapshot(Box::new(job)))
            .await
            .map_err(|_| "the consensus service has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the consensus service has stopped".to_string())?
    }

    /// Hands over a message from a peer; returns false if it was dropped (queue full or
    /// service stopped). A peer the driver stopped reading is dropped here and counts as
    /// handed over: it must not be offered again.
    pub fn deliver(&self, from: PeerId, msg: WireMessage) -> bool {
        if self.ignored.contains(&from) {
            crate::metrics::consensus_dropped(Dropped::FaultyPeer.label());
            return true;
        }
        if self.pause.borrow().is_some() {
            // Not taken: the network forgets it was seen, so it can come again after a resume.
            return false;
        }
        match msg {
            WireMessage::Transaction(tx) => {
                self.door.try_send(Arrival::Relayed { from, tx }).is_ok()
            }
            msg => self
                .commands
                .try_send(Command::Message { from, msg })
                .is_ok(),
        }
    }

    /// Finality and commit events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The finality proofs of transactions final and not yet in a block, kept current by the
    /// consensus task: `GetFinality` is answered from here, never from the task's queue.
    pub fn finality_proofs(&self) -> Arc<FinalityProofs> {
        Arc::clone(&self.proofs)
    }

    /// The state of the engines and the pool as of the task's last step, and the pooled
    /// transactions with their vote weight: read without queueing behind consensus.
    pub fn view(&self) -> Arc<ConsensusView> {
        Arc::clone(&self.status)
    }
}

/// Milliseconds since the Unix epoch: the clock the driver's timers and block timestamps use
/// (the node's one wall clock, [`crate::clock`]).
pub fn wall_clock_ms() -> Millis {
    crate::clock::wall_clock_ms()
}

/// Starts the consensus task. `initial` are the outputs `ConsensusDriver::open` returned.
/// The task ends when `shutdown` is cancelled (Ok) or the driver fails (Err: the node must
/// stop, since consensus can no longer keep its promises). Its helpers (the door's verifier
/// and the flusher) run in `tasks`: the door ends at the shutdown, the flusher once the owner
/// has ended and every vote it queued has left.
pub fn spawn(
    driver: ConsensusDriver,
    initial: Vec<Output>,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> (
    ConsensusHandle,
    tokio::task::JoinHandle<Result<(), DriverError>>,
) {
    let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let proofs = Arc::new(FinalityProofs::new(driver.operator_key()));
    let status = Arc::new(ConsensusView::default());
    let (to_door, arrivals) = mpsc::channel(door::DOOR_QUEUE);
    let (pause, paused) = watch::channel(None);
    tasks.spawn(door::run(
        driver.network(),
        arrivals,
        commands.clone(),
        Arc::clone(&status),
        shutdown.clone(),
    ));
    let handle = ConsensusHandle {
        commands,
        door: to_door,
        events: events.clone(),
        ignored: driver.ignored_peers(),
        proofs: Arc::clone(&proofs),
        status: Arc::clone(&status),
        pause: Arc::new(pause),
    };
    let (durable, to_flush) = mpsc::channel(DURABLE_QUEUE);
    let (failed, flush_failed) = mpsc::channel(1);
    let storage = driver.ledger().storage().clone();
    let flushed = Arc::clone(&proofs);
    tasks.spawn(flusher(
        storage,
        to_flush,
        Arc::clone(&transport),
        flushed,
        failed,
    ));
    let (done, finished) = mpsc::channel(FINISHED_QUEUE);
    let beside = Beside {
        ledger: Arc::clone(driver.ledger()),
        done,
        tasks: tasks.clone(),
    };
    let outlets = Outlets {
        transport,
        events,
        durable,
        beside,
    };
    let channels = Channels {
        commands: receiver,
        finished,
        flush_failed,
        paused,
        views: Views { proofs, status },
    };
    // The owner has a thread of its own (one of the blocking pool's, for good): the driver's
    // disk writes and signature checks run there directly, with no hop to another thread
    // per step. It waits for commands and timers through the runtime's handle.
    let task = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        runtime.block_on(run(driver, initial, outlets, channels, shutdown))
    });
    (handle, task)
}

/// Where the driver's outputs go.
struct Outlets {
    transport: Arc<dyn Transport>,
    events: broadcast::Sender<NodeEvent>,
    /// To the flusher: messages that leave only after a flush.
    durable: mpsc::Sender<(Option<crate::types::PublicKey>, WireMessage)>,
    beside: Beside,
}

/// Block work done beside the owner (`driver::block_jobs`), back for it.
enum Finished {
    Built(Box<BuiltProposal>),
    Checked(CheckedProposal),
}

/// Runs block work on the blocking pool: the owner goes on deciding meanwhile and hears of the
/// result through `done`.
struct Beside {
    ledger: Arc<crate::ledger::Ledger>,
    done: mpsc::Sender<Finished>,
    tasks: TaskTracker,
}

impl Beside {
    fn start(&self, job: impl FnOnce(&crate::ledger::Ledger) -> Finished + Send + 'static) {
        let ledger = Arc::clone(&self.ledger);
        let done = self.done.clone();
        self.tasks.spawn(async move {
            match tokio::task::spawn_blocking(move || job(&ledger)).await {
                // The owner may have stopped: then no one waits for it.
                Ok(finished) => {
                    let _ = done.send(finished).await;
                }
                // The round's timeout moves the engine on without it.
                Err(e) => tracing::error!(error = %e, "block work beside the owner failed"),
            }
        });
    }
}

/// Group commit for votes: waits for the first durable message, takes every other one
/// already waiting, flushes storage once on the blocking pool, then sends them all in order.
/// The consensus task goes on deciding meanwhile; a flush failure stops it (through
/// `failed`): a node that cannot persist its locks must not vote.
async fn flusher(
    storage: crate::storage::Storage,
    mut queue: mpsc::Receiver<(Option<crate::types::PublicKey>, WireMessage)>,
    transport: Arc<dyn Transport>,
    proofs: Arc<FinalityProofs>,
    failed: mpsc::Sender<DriverError>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(more) = queue.try_recv() {
            group.push(more);
        }
        let s = storage.clone();
        // A vote promises layer-1 records only (locks, and the finality it saw): syncing the
        // layer-1 log makes them durable; sled is flushed with each block.
        let flushed = match tokio::task::spawn_blocking(move || s.sync_layer1()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DriverError::Storage(e)),
            Err(e) => Err(DriverError::Panicked(e.to_string())),
        };
        if let Err(e) = flushed {
            // A node that cannot persist its locks must not vote: it stops, and the node
            // exits with a status that says why (a full disk: systemd restarts it).
            tracing::error!(error = %e, "flushing locks before votes failed: consensus stops, no vote leaves");
            let _ = failed.send(e).await;
            return;
        }
        for (to, msg) in group {
            if let WireMessage::VoteBatch(b) = &msg {
                // Its locks are durable now: the finality proofs served to peers may show it.
                proofs.mark_flushed(b.sequence);
            }
            match to {
                Some(node) => transport.send_to_node(&node, msg),
                None => transport.broadcast(msg),
            }
        }
    }
}

struct Timers {
    heap: BinaryHeap<Reverse<(Millis, u64)>>,
    kinds: std::collections::HashMap<u64, TimerKind>,
    seq: u64,
}

impl Timers {
    fn add(&mut self, at: Millis, kind: TimerKind) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.kinds.insert(self.seq, kind);
    }

    fn next_at(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Millis) -> Option<TimerKind> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((_, seq)) = self.heap.pop()?;
                self.kinds.remove(&seq)
            }
            _ => None,
        }
    }
}

/// What the consensus task reads from and publishes to (besides its outlets).
struct Channels {
    commands: mpsc::Receiver<Command>,
    /// Block work done beside the owner.
    finished: mpsc::Receiver<Finished>,
    /// From the flusher, if a flush failed.
    flush_failed: mpsc::Receiver<DriverError>,
    /// Why the owner is paused, if it is (see the module docs).
    paused: watch::Receiver<Option<String>>,
    views: Views,
}

/// What the task publishes after each step, for readers that must not wait for it.
#[derive(Clone)]
struct Views {
    proofs: Arc<FinalityProofs>,
    status: Arc<ConsensusView>,
}

impl Views {
    /// Publishes a step's effects: `touched` are the txids its inputs named, `full` asks for a
    /// reconcile of the whole pool.
    fn publish(&self, d: &mut ConsensusDriver, out: &[Output], touched: &[Txid], full: bool) {
        d.publish_proofs(out, touched, &self.proofs);
        d.publish_status(out, touched, full, &self.status);
    }
}

async fn run(
    mut driver: ConsensusDriver,
    initial: Vec<Output>,
    outlets: Outlets,
    channels: Channels,
    shutdown: CancellationToken,
) -> Result<(), DriverError> {
    let Channels {
        mut commands,
        mut finished,
        mut flush_failed,
        mut paused,
        views,
    } = channels;
    let d = &mut driver;
    let mut timers = Timers {
        heap: BinaryHeap::new(),
        kinds: std::collections::HashMap::new(),
        seq: 0,
    };
    // What the driver resumed at open (final transactions it votes for again) is published
    // like any step's outputs.
    views.publish(d, &initial, &[], true);
    d.refresh_final_proofs(&views.proofs);
    dispatch(initial, &outlets, &mut timers).await?;
    // Block work that came back while the owner was paused.
    let mut held: Vec<Finished> = Vec::new();
    loop {
        // Paused: commands are refused and timers wait (see the module docs).
        let pause = paused.borrow_and_update().clone();
        if pause.is_none() {
            for work in std::mem::take(&mut held) {
                finish(d, work, &views, &outlets, &mut timers).await?;
            }
        }
        let sleep = match timers.next_at() {
            Some(at) => Duration::from_millis(at.saturating_sub(wall_clock_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(e) = flush_failed.recv() => return Err(e),
            Ok(()) = paused.changed() => {}
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                if let Some(reason) = &pause {
                    refuse(d, cmd, reason);
                    continue;
                }
                // Everything already queued is handled before the outputs go out: one
                // publish and one dispatch per burst, not per message.
                let started = std::time::Instant::now();
                let mut out = Vec::new();
                let mut touched = Vec::new();
                let mut full = false;
                let mut next = Some(cmd);
                let mut handled = 0;
                while let Some(cmd) = next.take() {
                    full |= matches!(cmd, Command::ImportSnapshot(_));
                    touched_txids(&cmd, &mut touched);
                    out.extend(execute(d, cmd, &views)?);
                    handled += 1;
                    if handled < MAX_COMMANDS_PER_HOP {
                        next = commands.try_recv().ok();
                    }
                }
                views.publish(d, &out, &touched, full);
                crate::metrics::consensus_burst(started.elapsed());
                dispatch(out, &outlets, &mut timers).await?;
            }
            Some(work) = finished.recv() => {
                // Paused, it waits for the resume: nothing is proposed or voted meanwhile,
                // and the engine, which asks for a block's check once, still hears of it.
                match pause {
                    Some(_) => held.push(work),
                    None => finish(d, work, &views, &outlets, &mut timers).await?,
                }
            }
            _ = tokio::time::sleep(sleep), if pause.is_none() => {
                let now = wall_clock_ms();
                while let Some(kind) = timers.pop_due(now) {
                    // The periodic regossip also reconciles the pool's view: evictions to make
                    // room name no txid a step could see.
                    let full = matches!(kind, TimerKind::Regossip);
                    let started = std::time::Instant::now();
                    let out = d.on_timer(kind, now)?;
                    views.publish(d, &out, &[], full);
                    crate::metrics::consensus_burst(started.elapsed());
                    dispatch(out, &outlets, &mut timers).await?;
                }
            }
        }
    }
}

/// Hands block work done beside the owner to the driver, then publishes and dispatches what
/// it says, as for a burst of commands.
async fn finish(
    d: &mut ConsensusDriver,
    work: Finished,
    views: &Views,
    outlets: &Outlets,
    timers: &mut Timers,
) -> Result<(), DriverError> {
    let started = std::time::Instant::now();
    let out = match work {
        Finished::Built(p) => d.on_proposal_built(*p, wall_clock_ms())?,
        Finished::Checked(c) => d.on_proposal_checked(c, wall_clock_ms())?,
    };
    views.publish(d, &out, &[], false);
    crate::metrics::consensus_burst(started.elapsed());
    dispatch(out, outlets, timers).await
}

/// The transactions a command names: their pool entries, weights and published proofs may
/// have changed (after a set change, late votes are what a lagging peer needs).
fn touched_txids(cmd: &Command, into: &mut Vec<Txid>) {
    match cmd {
        Command::Message { msg, .. } => match msg {
            WireMessage::VoteBatch(b) => into.extend_from_slice(&b.txids),
            WireMessage::Finality { tx, .. } | WireMessage::Transaction(tx) => into.push(tx.txid()),
            _ => {}
        },
        Command::SubmitVerified { vtx, .. } | Command::VerifiedTransaction { vtx, .. } => {
            into.push(vtx.txid())
        }
        Command::Query(_) | Command::ImportSnapshot(_) => {}
    }
}

/// A command that arrives while the owner is paused: a read is answered, work that would
/// write is refused with `reason` (a client's) or not taken (a peer's: it comes again).
fn refuse(d: &ConsensusDriver, cmd: Command, reason: &str) {
    match cmd {
        Command::Query(job) => job(d),
        Command::SubmitVerified { reply, .. } => {
            let _ = reply.send(Err(SubmitError::Paused(reason.to_string())));
        }
        Command::ImportSnapshot(job) => {
            let _ = job.reply.send(Err(format!("paused: {reason}")));
        }
        Command::Message { .. } | Command::VerifiedTransaction { .. } => {}
    }
}

/// Runs one command on the driver (on the owner's thread); replies go out from here.
fn execute(
    d: &mut ConsensusDriver,
    cmd: Command,
    views: &Views,
) -> Result<Vec<Output>, DriverError> {
    match cmd {
        Command::Message { from, msg } => d.on_message(from, msg, wall_clock_ms()),
        Command::SubmitVerified { vtx, reply, at } => {
            crate::metrics::submit_stage(crate::metrics::SubmitStage::OwnerQueue, at.elapsed());
            let (verdict, out) = d.submit_verified(vtx, wall_clock_ms());
            let out = out?;
            if let Ok(txid) = &verdict {
                // Published before the client hears "accepted": a status read it sends next
                // finds the transaction (the burst's publish comes later).
                views.publish(d, &[], &[*txid], false);
            }
            let _ = reply.send(verdict.map_err(SubmitError::from));
            Ok(out)
        }
        Command::VerifiedTransaction { from, vtx } => {
            d.on_verified_transaction(from, vtx, wall_clock_ms())
        }
        Command::ImportSnapshot(job) => {
            let SnapshotImport {
                last,
                set,
                prev_set,
                entries,
                reply,
            } = *job;
            let (verdict, out) =
                match d.import_snapshot(&last, set, prev_set, entries, wall_clock_ms())? {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e.to_string()), Vec::new()),
                };
            let _ = reply.send(verdict);
            Ok(out)
        }
        Command::Query(job) => {
            job(d);
            Ok(Vec::new())
        }
    }
}

async fn dispatch(
    out: Vec<Output>,
    outlets: &Outlets,
    timers: &mut Timers,
) -> Result<(), DriverError> {
    // A step's final transactions go out as one event, before any later event of the step.
    let mut finals: Vec<(Txid, Arc<Transaction>)> = Vec::new();
    let send_finals = |finals: &mut Vec<(Txid, Arc<Transaction>)>| {
        if !finals.is_empty() {
            let batch = std::mem::take(finals).into();
            // No subscriber is fine: events are for whoever listens.
            let _ = outlets.events.send(NodeEvent::TxsFinalized(batch));
        }
    };
    for o in out {
        if let Output::Event(NodeEvent::TxFinalized(txid, tx)) = o {
            crate::metrics::transaction_finalized();
            finals.push((txid, tx));
            continue;
        }
        // Before a later event, and before anything that may wait (the flusher's queue).
        if matches!(
            o,
            Output::Event(_) | Output::BroadcastDurable(_) | Output::SendToNodeDurable(..)
        ) {
            send_finals(&mut finals);
        }
        match o {
            Output::Broadcast(msg) => outlets.transport.broadcast(msg),
            Output::Relay(msg) => outlets.transport.relay(msg),
            Output::BroadcastDurable(msg) => {
                if outlets.durable.send((None, msg)).await.is_err() {
                    // The flusher ended: it failed, and `flush_failed` says why.
                    return Err(DriverError::Stopped);
                }
            }
            Output::SendToNode(node, msg) => outlets.transport.send_to_node(&node, msg),
            Output::SendToNodeDurable(node, msg) => {
                if outlets.durable.send((Some(node), msg)).await.is_err() {
                    // The flusher ended: it failed, and `flush_failed` says why.
                    return Err(DriverError::Stopped);
                }
            }
            Output::SendTo(peer, msg) => outlets.transport.send(peer, msg),
            Output::Timer { timer, at } => timers.add(at, timer),
            Output::BuildProposal(request) => outlets.beside.start(move |ledger| {
                let started = std::time::Instant::now();
                let built = request.build(ledger);
                crate::metrics::block_build(started.elapsed());
                Finished::Built(Box::new(built))
            }),
            Output::CheckProposal(check) => outlets
                .beside
                .start(move |ledger| Finished::Checked(check.run(ledger))),
            Output::Event(e) => {
                match &e {
                    NodeEvent::BlockCommitted { .. } => crate::metrics::block_committed(),
                    NodeEvent::PeerFault { peer, reason } => {
                        outlets.transport.punish(*peer, reason)
                    }
                    NodeEvent::PeerMisbehaved {
                        peer,
                        points,
                        reason,
                    } => outlets.transport.penalize(*peer, *points, reason),
                    _ => {}
                }
                // No subscriber is fine: events are for whoever listens.
                let _ = outlets.events.send(e);
            }
        }
    }
    send_finals(&mut finals);
    Ok(())
}
