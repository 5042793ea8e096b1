//! WebSocket subscriptions: committed blocks, finalized transactions, and activity on a set
//! of addresses.
//!
//! ```text
//! consensus events ─► hub (one task; a step's finals stay one event) ─► broadcast
//!                                                         ├─► subscriber ─try_send─► WS
//!                                                         └─► subscriber ...
//! ```
//!
//! Nothing here can slow the node: the hub's channel is bounded and a receiver that falls
//! behind loses its place (and is closed); each subscriber only `try_send`s into its
//! connection's bounded buffer, and a full buffer closes the subscription with a reason.

use crate::consensus::driver::NodeEvent;
use crate::context::NodeContext;
use crate::ledger::history::touched;
use crate::rpc_api::catalog::SUBSCRIPTIONS;
use crate::types::{Address, KeyHash, Txid};
use jsonrpsee::core::server::{SubscriptionCloseResponse, SubscriptionMessage};
use jsonrpsee::types::Params;
use jsonrpsee::{PendingSubscriptionSink, RpcModule};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events the hub can hold for subscribers that are behind.
pub const HUB_QUEUE: usize = 4_096;
/// How long one notification may wait for room in its subscriber's queue. Finality comes in
/// bursts (one vote round finalizes hundreds of transactions at once), which a full queue
/// absorbs while the subscriber reads; one that takes nothing for this long is dropped. While
/// it waits, only its own place in the hub falls back (dropped past `HUB_QUEUE` events), so
/// neither the node nor other subscribers wait for it.
const SLOW_SUBSCRIBER: std::time::Duration = std::time::Duration::from_secs(2);
/// Most addresses one `subscribeaddresses` may watch.
pub const MAX_WATCHED: usize = 1_000;

/// What subscribers see.
#[derive(Clone, Debug)]
pub enum HubEvent {
    Block(Arc<Value>),
    /// What one step of consensus made final, in order (one event, however many: see
    /// `NodeEvent::TxsFinalized`).
    Finals(Arc<[Final]>),
    /// The hub itself missed consensus events: every subscriber is closed.
    Missed,
}

/// A final transaction, with the addresses it pays or spends from.
#[derive(Clone, Debug)]
pub struct Final {
    pub txid: Txid,
    pub touched: BTreeSet<KeyHash>,
}

pub type Hub = broadcast::Sender<HubEvent>;

pub fn hub() -> Hub {
    broadcast::channel(HUB_QUEUE).0
}

/// Turns consensus events into subscriber events until the node stops.
pub async fn run_hub(ctx: Arc<NodeContext>, hub: Hub) {
    let mut events = ctx.consensus.subscribe();
    loop {
        let event = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Subscribers would miss events without knowing: close them instead.
                tracing::warn!(missed = n, "subscription hub fell behind consensus events");
                let _ = hub.send(HubEvent::Missed);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if hub.receiver_count() == 0 {
            continue;
        }
        let out = match event {
            // Everything shown comes with the event: no block is read back (a block of
            // thousands of transactions decoded while finality events pile up behind it).
            NodeEvent::BlockCommitted {
                height,
                hash,
                time_ms,
                transactions,
            } => HubEvent::Block(Arc::new(json!({
                "height": height,
                "hash": hash.to_hex(),
                "time": time_ms / 1000,
                "time_ms": time_ms,
                "nTx": transactions,
            }))),
            NodeEvent::TxsFinalized(txs) => HubEvent::Finals(
                txs.iter()
                    .map(|(txid, tx)| Final {
                        txid: *txid,
                        touched: touched(tx),
                    })
                    .collect(),
            ),
            _ => continue,
        };
        let _ = hub.send(out);
    }
}

pub fn register(m: &mut RpcModule<Arc<NodeContext>>, hub: Hub) -> Result<(), super::RpcError> {
    for &(subscribe, notification, unsubscribe, _, _) in SUBSCRIPTIONS {
        let hub = hub.clone();
        m.register_subscription(
            subscribe,
            notification,
            unsubscribe,
            move |params, pending, ctx, _| {
                let rx = hub.subscribe();
                async move { serve(subscribe, params, pending, &ctx, rx).await }
            },
        )?;
    }
    Ok(())
}

/// What a subscription wants to hear about.
enum Filter {
    Blocks,
    Finality,
    Addresses(BTreeSet<KeyHash>, Arc<Vec<(KeyHash, String)>>),
}

fn parse_filter(
    method: &str,
    params: Params<'static>,
    ctx: &NodeContext,
) -> Result<Filter, String> {
    match method {
        "subscribeblocks" => Ok(Filter::Blocks),
        "subscribefinality" => Ok(Filter::Finality),
        _ => {
            let list: Vec<String> = params
                .sequence()
                .next()
                .map_err(|_| "expected a list of addresses".to_string())?;
            if list.is_empty() || list.len() > MAX_WATCHED {
                return Err(format!("watch 1 to {MAX_WATCHED} addresses"));
            }
            let mut set = BTreeSet::new();
            let mut names = Vec::new();
            for text in list {
                let a = Address::parse(&text, ctx.params.network)
                    .map_err(|e| format!("invalid address: {e}"))?;
                if set.insert(a.key_hash) {
                    names.push((a.key_hash, text));
                }
            }
            Ok(Filter::Addresses(set, Arc::new(names)))
        }
    }
}

async fn serve(
    method: &str,
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    ctx: &NodeContext,
    mut rx: broadcast::Receiver<HubEvent>,
) -> SubscriptionCloseResponse {
    let filter = match parse_filter(method, params, ctx) {
        Ok(f) => f,
        Err(why) => {
            pending
                .reject(super::error::err(super::error::INVALID_PARAMETER, why))
                .await;
            return SubscriptionCloseResponse::None;
        }
    };
    let Ok(sink) = pending.accept().await else {
        return SubscriptionCloseResponse::None;
    };
    let close = |why: &str| SubscriptionCloseResponse::NotifErr(SubscriptionMessage::from(why));
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return SubscriptionCloseResponse::None,
            e = rx.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return close("subscriber fell behind and missed events; subscribe again")
            }
            Err(broadcast::error::RecvError::Closed) => return close("the node is stopping"),
        };
        if matches!(event, HubEvent::Missed) {
            return close("the node fell behind and missed events; subscribe again");
        }
        let messages: Vec<Value> = match (&filter, event) {
            (Filter::Blocks, HubEvent::Block(b)) => vec![(*b).clone()],
            (Filter::Finality, HubEvent::Finals(finals)) => finals
                .iter()
                .map(|f| json!({ "txid": f.txid.to_hex() }))
                .collect(),
            (Filter::Addresses(watch, names), HubEvent::Finals(finals)) => finals
                .iter()
                .flat_map(|f| {
                    names
                        .iter()
                        .filter(|(kh, _)| watch.contains(kh) && f.touched.contains(kh))
                        .map(|(_, addr)| {
                            json!({ "address": addr, "txid": f.txid.to_hex(), "state": "final" })
                        })
                })
                .collect(),
            _ => Vec::new(),
        };
        for m in messages {
            let Ok(msg) = SubscriptionMessage::from_json(&m) else {
                continue;
            };
            match tokio::time::timeout(SLOW_SUBSCRIBER, sink.send(msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return SubscriptionCloseResponse::None,
                Err(_) => {
                    return close(
                        "subscriber too slow: it took no notification for 2 s; subscribe again",
                    )
                }
            }
        }
    }
}
