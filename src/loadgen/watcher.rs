//! Seeing transfers become final: one watcher per node, subscribed to that node's finality
//! notifications over WebSocket (`subscribefinality`), records each transfer's latency when
//! the node it was sent to reports it final.
//!
//! ```text
//! senders ─(index, sent at)─► watcher of node k ─┐ outstanding: txid → (index, sent at)
//! node k ─ws: {"txid": ...} ───► watcher of node k ─┴► latency = notification − sent at
//!                                   └ subscription lost ─► poll getrawtransaction (fallback)
//! ```
//!
//! A subscription costs the node one small message per final transaction; polling costs it a
//! status read per outstanding transfer per cycle, which grows with the backlog and loaded
//! the very nodes it measured. The poll stays as the fallback when a node closes the
//! subscription (a subscriber that falls behind is dropped); the step's notes say when it ran.
//! A notification can beat the sender's own record of the transfer (the submit's reply is
//! still on its way): it is kept until the record arrives.

use super::{lock, post, set_outcome, Outcome, Step, RPC_TIMEOUT};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

/// How long a read waits for a notification before the watcher looks at its other inputs.
const READ_SLICE: Duration = Duration::from_millis(5);
/// Poll cycle when the subscription is lost, and how often to subscribe again.
const POLL_EVERY: Duration = Duration::from_millis(20);
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);
/// Transfers asked about per poll batch.
const POLL_BATCH: usize = 50;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// What one watcher needs to know about the step.
pub(super) struct Watch<'a> {
    /// Every transfer of the step: (txid, hex).
    pub txs: &'a [(String, String)],
    /// Transfer index by txid, for the whole step.
    pub index: &'a HashMap<String, usize>,
    /// This watcher's node, and how many nodes the senders spread transfers over.
    pub node: usize,
    pub nodes: usize,
    /// Transfers per request (which node transfer `i` went to: [`super::node_for`]).
    pub batch: usize,
    pub url: &'a str,
    pub deadline: Instant,
}

/// Records the latency of every transfer sent to `w.node` until the senders are done and
/// nothing is outstanding, or `w.deadline`.
pub(super) fn watch(w: Watch<'_>, rx: mpsc::Receiver<(usize, Instant)>, step: &Mutex<Step>) {
    let agent = ureq::AgentBuilder::new().timeout(RPC_TIMEOUT).build();
    let mut outstanding: HashMap<usize, Instant> = HashMap::new();
    // Final before the sender recorded it: index → when the node said so.
    let mut early: HashMap<usize, Instant> = HashMap::new();
    let mut socket = subscribe(w.url).ok();
    let mut last_try = Instant::now();
    let mut last_poll = Instant::now();
    // Outstanding when a subscription was taken again after it ended: each is asked about
    // once (one final while nobody listened is found so; one final later is heard).
    let mut unheard: Vec<usize> = Vec::new();
    loop {
        let senders_done = loop {
            match rx.try_recv() {
                Ok((i, sent_at)) => match early.remove(&i) {
                    Some(seen) => record(step, i, sent_at, seen),
                    None => {
                        outstanding.insert(i, sent_at);
                    }
                },
                Err(e) => break e == mpsc::TryRecvError::Disconnected,
            }
        };
        if (senders_done && outstanding.is_empty()) || Instant::now() > w.deadline {
            return;
        }
        // Every `POLL_EVERY` only: the subscription must be read at its own pace.
        if !unheard.is_empty() && socket.is_some() && last_poll.elapsed() >= POLL_EVERY {
            last_poll = Instant::now();
            let take = unheard.len().min(POLL_BATCH);
            let which: Vec<usize> = (unheard.drain(..take))
                .filter(|i| outstanding.contains_key(i))
                .collect();
            ask(&agent, &w, &which, &mut outstanding, step);
        }
        match socket.as_mut().map(next_final) {
            Some(Ok(Some(txid))) => {
                let seen = Instant::now();
                let Some(&i) = w.index.get(&txid) else {
                    continue;
                };
                if super::node_for(i, w.batch, w.nodes) != w.node {
                    continue;
                }
                match outstanding.remove(&i) {
                    Some(sent_at) => record(step, i, sent_at, seen),
                    None => {
                        early.insert(i, seen);
                    }
                }
            }
            Some(Ok(None)) => {}
            Some(Err(e)) => {
                let mut s = lock(step);
                s.watch_lost += 1;
                s.first_watch_error.get_or_insert(e);
                drop(s);
                socket = None;
                last_try = Instant::now();
            }
            None => {
                if last_try.elapsed() >= RESUBSCRIBE_EVERY {
                    last_try = Instant::now();
                    socket = subscribe(w.url).ok();
                    if socket.is_some() {
                        unheard = outstanding.keys().copied().collect();
                    }
                }
                if last_poll.elapsed() >= POLL_EVERY && !outstanding.is_empty() {
                    last_poll = Instant::now();
                    poll(&agent, &w, &mut outstanding, step);
                } else {
                    std::thread::sleep(READ_SLICE);
                }
            }
        }
    }
}

fn record(step: &Mutex<Step>, i: usize, sent_at: Instant, seen: Instant) {
    let mut s = lock(step);
    set_outcome(&mut s, i, Outcome::Final);
    s.latencies_ms
        .push(seen.saturating_duration_since(sent_at).as_secs_f64() * 1e3);
    s.last_final = Some(s.last_final.map_or(seen, |t| t.max(seen)));
}

/// Opens a WebSocket to the node at `url` (`http://user:password@host:port`) and subscribes
/// to finality notifications.
fn subscribe(url: &str) -> Result<Socket, String> {
    use base64::Engine;
    use tungstenite::client::IntoClientRequest;
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (userinfo, host) = rest.rsplit_once('@').ok_or("no credentials in the URL")?;
    let mut req = format!("ws://{host}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let auth = base64::engine::general_purpose::STANDARD.encode(userinfo);
    let header = format!("Basic {auth}")
        .parse()
        .map_err(|_| "bad credentials")?;
    req.headers_mut().insert("Authorization", header);
    let (mut socket, _) = tungstenite::connect(req).map_err(|e| e.to_string())?;
    let sub = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribefinality", "params": []});
    socket
        .send(tungstenite::Message::text(sub.to_string()))
        .map_err(|e| e.to_string())?;
    if let MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(READ_SLICE))
            .map_err(|e| e.to_string())?;
    }
    Ok(socket)
}

/// The txid of the next finality notification; `None` if nothing arrived within
/// `READ_SLICE` (or the message was something else); an error when the subscription ended.
fn next_final(socket: &mut Socket) -> Result<Option<String>, String> {
    let msg = match socket.read() {
        Ok(m) => m,
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.to_string()),
    };
    let text = match msg {
        tungstenite::Message::Text(t) => t,
        tungstenite::Message::Close(why) => {
            return Err(why.map_or("closed".into(), |c| c.reason.to_string()))
        }
        _ => return Ok(None),
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    if let Some(error) = v.get("params").and_then(|p| p.get("error")) {
        // The node closed the subscription and said why (e.g. this watcher fell behind).
        return Err(error.to_string());
    }
    Ok(v["params"]["result"]["txid"].as_str().map(str::to_string))
}

/// Asks the node about the oldest outstanding transfers in one batch; records those final.
fn poll(
    agent: &ureq::Agent,
    w: &Watch<'_>,
    outstanding: &mut HashMap<usize, Instant>,
    step: &Mutex<Step>,
) {
    let mut oldest: Vec<(usize, Instant)> = outstanding.iter().map(|(i, t)| (*i, *t)).collect();
    if oldest.len() > POLL_BATCH {
        oldest.select_nth_unstable_by_key(POLL_BATCH, |o| o.1);
        oldest.truncate(POLL_BATCH);
    }
    let which: Vec<usize> = oldest.iter().map(|(i, _)| *i).collect();
    ask(agent, w, &which, outstanding, step);
}

/// Asks the node about transfers `which` in one batch; records those final.
fn ask(
    agent: &ureq::Agent,
    w: &Watch<'_>,
    which: &[usize],
    outstanding: &mut HashMap<usize, Instant>,
    step: &Mutex<Step>,
) {
    if which.is_empty() {
        return;
    }
    let batch: Vec<Value> = (which.iter())
        .map(|i| {
            let txid = &w.txs[*i].0;
            json!({"jsonrpc": "2.0", "id": i, "method": "getrawtransaction", "params": [txid, true]})
        })
        .collect();
    let reply = post(agent, w.url, Value::Array(batch));
    let seen = Instant::now();
    let Ok(Value::Array(items)) = reply else {
        lock(step).poll_errors += 1;
        return;
    };
    for item in items
        .iter()
        .filter(|i| i["result"]["instantlock"] == json!(true))
    {
        let i = item["id"].as_u64().and_then(|k| usize::try_from(k).ok());
        if let Some((i, sent_at)) = i.and_then(|i| Some((i, outstanding.remove(&i)?))) {
            record(step, i, sent_at, seen);
        }
    }
}
