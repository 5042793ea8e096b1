//! The delaying, partitioning TCP proxy between the nodes of a WAN localnet: one listener per
//! directed pair (A dials B through the listener of pair A→B), per-link settings in a shared
//! table that the test changes while the nodes run.
//!
//! ```text
//!  node A ──dial──► listener A→B ──connect──► node B
//!            bytes A→B: read ─ stamp ─► delay line (link A→B) ─ due ─► write to B
//!            bytes B→A: read ─ stamp ─► delay line (link B→A) ─ due ─► write to A
//! ```
//!
//! Every chunk read gets a due time when it is read: departure from the link's token bucket
//! (bandwidth, shared by every connection on that link), plus the one-way delay, plus uniform
//! jitter, plus a retransmission penalty when the chunk is "lost". Due times never go back
//! within a stream, because TCP delivers in order: a late chunk holds up those behind it
//! (head-of-line blocking), as a retransmission does.
//!
//! Loss is modelled as that retransmission delay, not as dropped bytes: the nodes speak TCP,
//! where a lost segment arrives one retransmission timeout late, and dropping bytes from a
//! stream would only corrupt framing (which no real network does). Each 1,448-byte segment of a
//! chunk is lost with the link's probability; a chunk with a lost segment arrives
//! `RTT + TCP_RTO_MIN` late, Linux's retransmission timeout for a steady connection.
//!
//! A cut link delivers nothing: bytes due while it is cut wait (as unacknowledged segments do)
//! and arrive one delay after the heal; a connection cannot be opened while either direction of
//! its pair is cut (the SYN or the SYN-ACK would be lost), so the dialler's attempt hangs until
//! the heal or its own timeout. A cut with `reset` also closes the pair's open connections, as
//! a NAT or firewall that forgets them does. One direction can be cut alone: that is an
//! asymmetric partition at the level of messages (on real TCP the other direction would also
//! stall once its window filled, for want of acknowledgements).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Linux's minimum retransmission timeout (`TCP_RTO_MIN`).
pub const TCP_RTO_MIN: Duration = Duration::from_millis(200);
/// Payload bytes per TCP segment on a 1,500-byte MTU path.
const SEGMENT_BYTES: usize = 1_448;
/// Largest chunk read at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks in flight per direction of a connection; past it the proxy stops reading, so the
/// sender feels back-pressure as from a full TCP window (at most 4 MiB held per direction).
const CHUNKS_IN_FLIGHT: usize = 256;
/// Burst of a link's token bucket (or 50 ms at the link's rate, if that is more).
const BURST_BYTES: f64 = 64.0 * 1024.0;

/// What one direction of a link does to the bytes it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkSpec {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Each chunk's delay is drawn uniformly from `delay ± jitter`.
    pub jitter: Duration,
    /// Probability that a TCP segment is lost (and arrives a retransmission timeout late).
    pub loss: f64,
    /// Bytes per second, or unlimited.
    pub bandwidth: Option<u64>,
}

impl LinkSpec {
    /// A long-haul link: `delay_ms` one way, 10 % jitter, 1 % loss, unlimited bandwidth.
    pub fn wan(delay_ms: u64) -> LinkSpec {
        LinkSpec {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(delay_ms / 10),
            loss: 0.01,
            bandwidth: None,
        }
    }

    /// The delay a lost segment adds: a round trip (the lost segment's and its missing
    /// acknowledgement's) plus the minimum retransmission timeout.
    fn retransmission(&self) -> Duration {
        2 * self.delay + TCP_RTO_MIN
    }
}

/// A directed link: bytes from node `.0` to node `.1`.
pub type Link = (usize, usize);

struct LinkState {
    spec: LinkSpec,
    cut: bool,
    /// Bumped by a resetting cut: connections opened under an older value close.
    resets: u64,
    tokens: f64,
    refilled: Instant,
}

impl LinkState {
    fn new(spec: LinkSpec) -> LinkState {
        LinkState {
            spec,
            cut: false,
            resets: 0,
            tokens: BURST_BYTES,
            refilled: Instant::now(),
        }
    }

    /// When a chunk of `len` bytes read at `now` is due at the far end, before ordering.
    fn due(&mut self, len: usize, now: Instant) -> Instant {
        let depart = match self.spec.bandwidth {
            Some(rate) if rate > 0 => {
                let rate = rate as f64;
                let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
                self.tokens = (self.tokens + rate * elapsed).min(BURST_BYTES.max(rate / 20.0));
                self.refilled = now;
                self.tokens -= len as f64;
                now + Duration::from_secs_f64((-self.tokens).max(0.0) / rate)
            }
            _ => now,
        };
        let spec = &self.spec;
        let mut delay = spec.delay;
        if !spec.jitter.is_zero() {
            let j = spec.jitter.as_secs_f64();
            let d = spec.delay.as_secs_f64() + rand::random::<f64>() * 2.0 * j - j;
            delay = Duration::from_secs_f64(d.max(0.0));
        }
        let segments = len.div_ceil(SEGMENT_BYTES) as i32;
        let p_any = 1.0 - (1.0 - spec.loss.clamp(0.0, 1.0)).powi(segments);
        if spec.loss > 0.0 && rand::random::<f64>() < p_any {
            delay += spec.retransmission();
        }
        depart + delay
    }
}

/// The settings of every directed link, changed by the test while connections run. The lock
/// is never held across an await; waiters learn of changes through `changed`.
pub struct Links {
    state: Mutex<HashMap<Link, LinkState>>,
    default: LinkSpec,
    changed: watch::Sender<u64>,
}

impl Links {
    pub fn new(default: LinkSpec) -> Links {
        Links {
            state: Mutex::new(HashMap::new()),
            default,
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Link, LinkState>> {
        // A panic elsewhere in the test must not hide its own message behind a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, link: Link, f: impl FnOnce(&mut LinkState) -> T) -> T {
        let mut state = self.lock();
        let s = state
            .entry(link)
            .or_insert_with(|| LinkState::new(self.default));
        f(s)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Sets one direction's delay, jitter, loss and bandwidth.
    pub fn set(&self, link: Link, spec: LinkSpec) {
        self.with(link, |s| s.spec = spec);
        self.notify();
    }

    pub fn spec(&self, link: Link) -> LinkSpec {
        self.with(link, |s| s.spec)
    }

    /// Cuts the given directions; with `reset`, also closes the connections that use them.
    pub fn cut(&self, links: &[Link], reset: bool) {
        for &l in links {
            self.with(l, |s| {
                s.cut = true;
                if reset {
                    s.resets += 1;
                }
            });
        }
        self.notify();
    }

    /// Heals the given directions.
    pub fn heal(&self, links: &[Link]) {
        for &l in links {
            self.with(l, |s| s.cut = false);
        }
        self.notify();
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.lock().values_mut().for_each(|s| s.cut = false);
        self.notify();
    }

    fn is_cut(&self, link: Link) -> bool {
        self.with(link, |s| s.cut)
    }

    /// The pair's reset count: both directions' resets.
    fn resets(&self, (a, b): Link) -> u64 {
        self.with((a, b), |s| s.resets) + self.with((b, a), |s| s.resets)
    }

    /// Waits until `up` holds; false if the proxy is gone.
    async fn wait_until(&self, up: impl Fn(&Links) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        while !up(self) {
            if rx.changed().await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Every link whose one end is in `a` and the other in `b`, both directions.
pub fn between(a: &[usize], b: &[usize]) -> Vec<Link> {
    let mut links = Vec::new();
    for &x in a {
        for &y in b {
            links.push((x, y));
            links.push((y, x));
        }
    }
    links
}

/// Accepts node `from`'s connections to node `to` on `listener` and carries them to `target`.
pub async fn serve_pair(
    links: Arc<Links>,
    (from, to): Link,
    listener: TcpListener,
    target: SocketAddr,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(carry(Arc::clone(&links), (from, to), client, target));
    }
}

/// One connection from `from` to `to`, until either end closes or a reset cuts it.
async fn carry(links: Arc<Links>, (from, to): Link, client: TcpStream, target: SocketAddr) {
    if !(links
        .wait_until(|l| !l.is_cut((from, to)) && !l.is_cut((to, from)))
        .await)
    {
        return;
    }
    let epoch = links.resets((from, to));
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let forward = pipe(Arc::clone(&links), (from, to), cr, sw);
    let back = pipe(Arc::clone(&links), (to, from), sr, cw);
    let reset = links.wait_until(|l| l.resets((from, to)) != epoch);
    tokio::select! {
        _ = async { tokio::join!(forward, back) } => {}
        _ = reset => {}
    }
}

/// One direction of a connection: a reader that stamps each chunk with its due time and a
/// writer that delivers it then (later if the link is cut meanwhile).
async fn pipe(
    links: Arc<Links>,
    link: Link,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = {
        let links = Arc::clone(&links);
        async move {
            let mut last_due = Instant::now();
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.truncate(n);
                let due = links.with(link, |s| s.due(n, Instant::now())).max(last_due);
                last_due = due;
                if tx.send((due, buf)).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if links.is_cut(link) {
                if !links.wait_until(|l| !l.is_cut(link)).await {
                    return;
                }
                // The retransmission after the heal still crosses the link.
                tokio::time::sleep(links.spec(link).delay).await;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
