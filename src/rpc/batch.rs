//! A batch's calls, handed to jsonrpsee one by one, overlapping where order allows.
//!
//! ```text
//! [call 0, call 1, …] ─► call 0 ─► in line (a submit queued at the door) or done ─► call 1 …
//!                        a call that is not a submit first waits for every earlier call
//! replies, as they end ─► one JSON array (each names its position: compat::finish)
//! ```
//!
//! jsonrpsee runs a batch's calls strictly one after another, so a batch of 50 transfers waits
//! for 50 round trips through the door and the consensus owner, one at a time, and the node
//! sits idle between them. Here a submit lets the next call start as soon as it has its place
//! in line ([`InLine::reached`]), not when its verdict is back: the batch's transfers are
//! checked at the door together and reach the pool in the batch's order, each judged as it
//! would be one call at a time. Any other call starts only after
//! every earlier one has ended, so it sees their effects, exactly as in a strictly ordered
//! batch.

use super::connection_limit::MAX_IN_FLIGHT;
use super::front::{BoxError, MakeService};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpRequest};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tower::Service;

/// The methods whose calls say when they are in line ([`InLine::reached`]); a call of any
/// other method waits for every earlier call of its batch to end.
const IN_LINE: &[&str] = &["sendrawtransaction"];

/// Handed to a call (in its request's extensions): the method says through it when the call
/// has its place in line, so the batch's next call may start.
#[derive(Clone)]
pub struct InLine(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl InLine {
    fn new() -> (InLine, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (InLine(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// The call has its place in line: what comes after it may start. Later calls are no-ops.
    pub fn reached(&self) {
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }
}

/// Calls each request of a batch (its position and text, in order; `methods` the method of
/// each) and returns the replies as one JSON array, or why the batch got none: its replies
/// together passed `max_reply` bytes (jsonrpsee bounded a whole batch's replies the same).
pub async fn call_in_line(
    make: &MakeService,
    calls: Vec<(usize, String)>,
    methods: &[String],
    max_reply: usize,
) -> Result<Bytes, String> {
    let mut running = FuturesUnordered::new();
    let mut replies: Vec<Bytes> = Vec::with_capacity(calls.len());
    let mut reply_bytes = 0usize;
    let mut keep = |reply: Bytes, replies: &mut Vec<Bytes>| -> Result<(), String> {
        reply_bytes = reply_bytes.saturating_add(reply.len() + 1);
        if reply_bytes > max_reply {
            return Err(format!(
                "the batch's replies are larger than {max_reply} bytes: ask for less in each batch"
            ));
        }
        if !reply.is_empty() {
            replies.push(reply);
        }
        Ok(())
    };
    for (i, (position, text)) in calls.into_iter().enumerate() {
        let in_line = methods
            .get(i)
            .is_some_and(|m| IN_LINE.contains(&m.as_str()));
        if !in_line {
            // It must see what every earlier call did.
            while let Some(reply) = running.next().await {
                keep(reply, &mut replies)?;
            }
        }
        // As many in flight as one WebSocket may have: a batch of 1,000 submits does not put
        // 1,000 in the door's queue at once, ahead of peers' relays.
        while running.len() >= MAX_IN_FLIGHT {
            if let Some(reply) = running.next().await {
                keep(reply, &mut replies)?;
            }
        }
        let (signal, mut reached) = InLine::new();
        let mut request = HttpRequest::new(HttpBody::from(text));
        *request.method_mut() = http::Method::POST;
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        request.extensions_mut().insert(signal.clone());
        let svc = make();
        running.push(async move {
            let reply = call_one(svc, request, position).await;
            // Ended without saying it was in line (refused, or not a submit): ended is enough.
            signal.reached();
            reply
        });
        loop {
            tokio::select! {
                biased;
                _ = &mut reached => break,
                Some(reply) = running.next() => keep(reply, &mut replies)?,
            }
        }
    }
    while let Some(reply) = running.next().await {
        keep(reply, &mut replies)?;
    }
    let mut body = Vec::with_capacity(reply_bytes + 2);
    body.push(b'[');
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(reply);
    }
    body.push(b']');
    Ok(Bytes::from(body))
}

/// One call's reply body (empty for a notification); when jsonrpsee gives none, an error
/// reply for the request at `position` that says why.
async fn call_one(
    mut svc: tower::util::BoxService<HttpRequest, jsonrpsee::server::HttpResponse, BoxError>,
    request: HttpRequest,
    position: usize,
) -> Bytes {
    let failed = |why: String| {
        let error = serde_json::json!({"code": -1, "message": why});
        Bytes::from(
            serde_json::json!({"jsonrpc": "2.0", "id": position, "error": error}).to_string(),
        )
    };
    let response = match svc.call(request).await {
        Ok(r) => r,
        Err(e) => return failed(format!("internal error: {e}")),
    };
    if response.status() != StatusCode::OK {
        return failed(format!(
            "The node is busy ({}): try again",
            response.status()
        ));
    }
    match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => failed(format!("the reply could not be read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::server::{stop_channel, Server};
    use jsonrpsee::RpcModule;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    /// Calls of "hold" in flight, and the most at once (one test uses them).
    static HOLDING: AtomicUsize = AtomicUsize::new(0);
    static HIGHEST: AtomicUsize = AtomicUsize::new(0);

    fn note(log: &Log, what: String) {
        log.lock().unwrap().push(what);
    }

    /// A server whose `sendrawtransaction` says it is in line at once, then (for "wait")
    /// ends only once a later call has started; `echo` just notes when it runs.
    fn server(log: Log) -> MakeService {
        let mut m = RpcModule::new(log);
        m.register_async_method("sendrawtransaction", |p, log, ext| async move {
            let name: String = p.one().unwrap();
            if name == "hold" {
                // Counts the calls in flight at once.
                if let Some(signal) = ext.get::<InLine>() {
                    signal.reached();
                }
                let now = HOLDING.fetch_add(1, Ordering::SeqCst) + 1;
                HIGHEST.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                HOLDING.fetch_sub(1, Ordering::SeqCst);
                return name;
            }
            note(&log, format!("start {name}"));
            if let Some(signal) = ext.get::<InLine>() {
                signal.reached();
            }
            if name == "wait" {
                for _ in 0..5_000 {
                    if log.lock().unwrap().len() > 1 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            note(&log, format!("end {name}"));
            name
        })
        .unwrap();
        m.register_async_method("echo", |p, log, _| async move {
            let name: String = p.one().unwrap();
            note(&log, format!("start {name}"));
            name
        })
        .unwrap();
        let (stop, handle) = stop_channel();
        std::mem::forget(handle);
        let builder = Server::builder().to_service_builder();
        let methods: jsonrpsee::server::Methods = m.into();
        Arc::new(move || {
            tower::util::BoxService::new(builder.clone().build(methods.clone(), stop.clone()))
        })
    }

    fn request(position: usize, method: &str, name: &str) -> (usize, String) {
        let r = json!({"jsonrpc": "2.0", "id": position, "method": method, "params": [name]});
        (position, r.to_string())
    }

    #[tokio::test]
    async fn submits_overlap_in_order_and_any_other_call_waits_for_all_before_it() {
        let log: Log = Arc::default();
        let make = server(Arc::clone(&log));
        let calls = vec![
            request(0, "sendrawtransaction", "wait"),
            request(1, "sendrawtransaction", "next"),
            request(2, "echo", "after"),
        ];
        let methods = ["sendrawtransaction", "sendrawtransaction", "echo"].map(String::from);
        let body = call_in_line(&make, calls, &methods, 1 << 20).await.unwrap();
        // The second submit started while the first waited for it; the read came after both.
        assert_eq!(
            *log.lock().unwrap(),
            [
                "start wait",
                "start next",
                "end next",
                "end wait",
                "start after"
            ]
        );
        let mut replies: Vec<Value> = serde_json::from_slice(&body).unwrap();
        replies.sort_by_key(|r| r["id"].as_u64());
        let results: Vec<&Value> = replies.iter().map(|r| &r["result"]).collect();
        assert_eq!(results, [&json!("wait"), &json!("next"), &json!("after")]);
    }

    #[tokio::test]
    async fn at_most_a_connection_s_worth_of_submits_overlap() {
        let make = server(Arc::default());
        let calls: Vec<_> = (0..300)
            .map(|i| request(i, "sendrawtransaction", "hold"))
            .collect();
        let methods = vec!["sendrawtransaction".to_string(); 300];
        let body = call_in_line(&make, calls, &methods, 1 << 20).await.unwrap();
        let replies: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(replies.len(), 300);
        let highest = HIGHEST.load(Ordering::SeqCst);
        assert!(highest > 1, "submits overlap");
        assert!(highest <= MAX_IN_FLIGHT, "{highest} in flight at once");
    }

    #[tokio::test]
    async fn replies_past_the_limit_refuse_the_batch() {
        let make = server(Arc::default());
        let calls: Vec<_> = (0..10).map(|i| request(i, "echo", "0123456789")).collect();
        let methods = vec!["echo".to_string(); 10];
        let refused = call_in_line(&make, calls, &methods, 200).await;
        assert!(refused.is_err_and(|why| why.contains("larger than 200 bytes")));
    }
}
