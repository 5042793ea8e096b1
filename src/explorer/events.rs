//! `GET /explorer/events`: the live feed as server-sent events (`text/event-stream`).
//!
//! ```text
//! retry: 3000            (the browser reconnects after 3 s if the stream ends)
//! event: block           data: {"height":…,"hash":…,"time":…,"nTx":…}
//! event: final           data: {"txid":…}
//! event: resync          data: {}   (events were missed: reload what is shown)
//! : keep-alive           every KEEP_ALIVE, so proxies and dead peers are noticed
//! ```
//!
//! Each stream holds one of the explorer's stream slots and ends after [`STREAM_LIFE`] (the
//! browser's `EventSource` reconnects by itself, and the page reloads what it shows), or at
//! shutdown. A stream never slows the feed: it reads a broadcast channel, and one that falls
//! behind is sent `resync` instead of what it missed.

use super::feed::Live;
use super::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

/// How long one stream lasts before the browser is made to reconnect.
pub const STREAM_LIFE: Duration = Duration::from_secs(600);
/// A comment line this often keeps an idle stream alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What the browser waits before reconnecting (milliseconds).
const RETRY_MS: u64 = 3_000;

/// One SSE message.
pub fn frame(event: &str, data: &str) -> Bytes {
    // `data` is one line of JSON (serde_json never writes a raw newline), so one data field.
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn encode(live: &Live) -> Bytes {
    match live {
        Live::Block(v) => frame("block", &v.to_string()),
        Live::Final(v) => frame("final", &v.to_string()),
        Live::Resync => frame("resync", "{}"),
    }
}

struct Stream<S> {
    rx: broadcast::Receiver<Live>,
    keep_alive: Interval,
    ends: Instant,
    shutdown: CancellationToken,
    /// Held for the stream's life: its place among the explorer's streams.
    _slot: S,
    started: bool,
}

impl<S> Stream<S> {
    /// The next chunk, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            return Some(Bytes::from(format!(
                "retry: {RETRY_MS}\n\n{}",
                String::from_utf8_lossy(&frame("hello", "{}"))
            )));
        }
        tokio::select! {
            // In this order: the end wins over waiting events.
            biased;
            _ = self.shutdown.cancelled() => None,
            _ = tokio::time::sleep_until(self.ends) => None,
            _ = self.keep_alive.tick() => Some(Bytes::from_static(b": keep-alive\n\n")),
            r = self.rx.recv() => match r {
                Ok(live) => Some(encode(&live)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(encode(&Live::Resync)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// The body of one event stream, which holds `slot` until it ends.
pub fn body<S: Send + 'static>(
    rx: broadcast::Receiver<Live>,
    slot: S,
    shutdown: CancellationToken,
) -> Body {
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = Stream {
        rx,
        keep_alive,
        ends: Instant::now() + STREAM_LIFE,
        shutdown,
        _slot: slot,
        started: false,
    };
    let chunks = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), s))
    });
    StreamBody::new(chunks).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    async fn next(body: &mut Body) -> Option<String> {
        let frame = body.frame().await?.ok()?;
        let data = frame.into_data().ok()?;
        Some(String::from_utf8_lossy(&data).into_owned())
    }

    #[tokio::test]
    async fn a_stream_says_hello_then_forwards_and_resyncs_when_behind() {
        let (tx, rx) = broadcast::channel(2);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = Arc::clone(&slots).try_acquire_owned().unwrap();
        let shutdown = CancellationToken::new();
        let mut body = body(rx, slot, shutdown.clone());
        assert_eq!(slots.available_permits(), 0, "the stream holds its slot");
        let hello = next(&mut body).await.unwrap();
        assert!(hello.starts_with("retry: 3000\n\n") && hello.contains("event: hello"));
        tx.send(Live::Block(Arc::new(json!({"height": 5}))))
            .unwrap();
        assert_eq!(
            next(&mut body).await.unwrap(),
            "event: block\ndata: {\"height\":5}\n\n"
        );
        // Three sent into a queue of two: the stream missed one and says so.
        for i in 0..3 {
            tx.send(Live::Final(Arc::new(json!({ "txid": i }))))
                .unwrap();
        }
        assert_eq!(
            next(&mut body).await.unwrap(),
            "event: resync\ndata: {}\n\n"
        );
        assert!(next(&mut body).await.unwrap().contains("\"txid\":1"));
        shutdown.cancel();
        assert_eq!(next(&mut body).await, None, "shutdown ends the stream");
        drop(body);
        assert_eq!(slots.available_permits(), 1, "and frees its slot");
    }
}
