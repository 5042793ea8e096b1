//! The door: transactions are checked (structure and every signature) before they reach the
//! owner of consensus, in batches, on the blocking pool.
//!
//! ```text
//! RPC submit ──────────┐                       ┌─ valid ───► SubmitVerified / VerifiedTransaction
//! peer Transaction ────┼─► queue ─► batch ─────┤                                   ─► owner
//!   (already pooled? ──┼── passed on as is:    ├─ invalid submit ─► the client's error, at once
//!    the owner says so)│   no signature work)  └─ invalid from a peer ─► owner, unverified: it
//!                      │                          checks again and scores the peer
//!                      └ queue full ─► a peer's is dropped (it sends again); a submit waits
//! ```
//!
//! Signatures are most of a transaction's CPU cost in the owner. Checking them here takes
//! them off the owner's thread (which decides one thing at a time) and checks a whole burst
//! with one batch verification, about half the cost of checking them one by one. Only what
//! passed reaches the owner as verified; the rare invalid one from a peer goes to the owner
//! as it came, so the one place that scores peers does so.

use super::driver::{PeerId, WireMessage};
use super::service::{Command, SubmitError};
use super::status::ConsensusView;
use crate::mempool::Mempool;
use crate::metrics::{self, SubmitStage};
use crate::types::{Network, Transaction, Txid};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Transactions waiting at the door.
pub const DOOR_QUEUE: usize = 16_384;
/// Most transactions checked in one batch.
pub const DOOR_BATCH: usize = 512;

/// A transaction waiting at the door.
pub(super) enum Arrival {
    Submit {
        /// When it reached the door (for `timed_submit_stage_duration_seconds`).
        at: Instant,
        tx: Arc<Transaction>,
        reply: oneshot::Sender<Result<Txid, SubmitError>>,
    },
    Relayed {
        from: PeerId,
        tx: Arc<Transaction>,
    },
}

/// Checks what arrives in batches and hands it to the owner's queue, until either side closes.
pub(super) async fn run(
    network: Network,
    mut arrivals: mpsc::Receiver<Arrival>,
    owner: mpsc::Sender<Command>,
    view: Arc<ConsensusView>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            arrival = arrivals.recv() => match arrival {
                Some(a) => a,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < DOOR_BATCH {
            match arrivals.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        // A relayed transaction this node already pooled needs no check: the owner answers
        // "already in the pool" from a lookup.
        let (known, fresh): (Vec<Arrival>, Vec<Arrival>) = batch.into_iter().partition(
            |a| matches!(a, Arrival::Relayed { tx, .. } if view.pending(&tx.txid()).is_some()),
        );
        for a in known {
            if let Arrival::Relayed { from, tx } = a {
                let msg = WireMessage::Transaction(tx);
                if owner.send(Command::Message { from, msg }).await.is_err() {
                    return;
                }
            }
        }
        let checking = Instant::now();
        for a in &fresh {
            if let Arrival::Submit { at, .. } = a {
                metrics::submit_stage(SubmitStage::DoorQueue, checking.duration_since(*at));
            }
        }
        let txs: Vec<Arc<Transaction>> = (fresh.iter())
            .map(|a| match a {
                Arrival::Submit { tx, .. } => Arc::clone(tx),
                Arrival::Relayed { tx, .. } => Arc::clone(tx),
            })
            .collect();
        let verdicts =
            match tokio::task::spawn_blocking(move || Mempool::verify_many(network, txs)).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "transaction checks failed; the door closes");
                    return;
                }
            };
        let checked = Instant::now();
        for a in &fresh {
            if let Arrival::Submit { .. } = a {
                metrics::submit_stage(SubmitStage::DoorCheck, checked.duration_since(checking));
            }
        }
        for (arrival, verdict) in fresh.into_iter().zip(verdicts) {
            let cmd = match (arrival, verdict) {
                (Arrival::Submit { reply, .. }, Ok(vtx)) => Command::SubmitVerified {
                    vtx,
                    reply,
                    at: checked,
                },
                (Arrival::Submit { reply, .. }, Err(e)) => {
                    metrics::mempool_rejected(e.reason_label());
                    let _ = reply.send(Err(SubmitError::Rejected(e)));
                    continue;
                }
                (Arrival::Relayed { from, .. }, Ok(vtx)) => {
                    Command::VerifiedTransaction { from, vtx }
                }
                (Arrival::Relayed { from, tx }, Err(_)) => Command::Message {
                    from,
                    msg: WireMessage::Transaction(tx),
                },
            };
            if owner.send(cmd).await.is_err() {
                return;
            }
        }
    }
}
