//! A world-sized network for the simulation (issue 15, SCALING.md): regions with WAN delays
//! between them, one uplink and one CPU per node, and meters of what each node sends,
//! receives, verifies and spends.
//!
//! Off unless a scenario sets [`Scenario::wan`](super::Scenario): the fault scenarios keep
//! their uniform delays and replay seed for seed. When on, a node handles one event at a time:
//! an event that reaches a busy node waits until its CPU is free, and the CPU is charged the
//! CPU time the real driver took for the event on this machine (one core). So the figures are the
//! driver's own costs, queued in virtual time. It also makes a run depend on this machine's
//! speed, which a measurement wants and a correctness test must not: only measurements turn it
//! on.

use super::{Millis, EPOCH};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use timed::consensus::driver::WireMessage;
use timed::network::auth::TAG_BYTES;
use timed::network::message::NetMessage;
use timed::types::{Hash32, Txid};

/// The world a measurement runs in.
#[derive(Clone, Debug)]
pub struct Wan {
    /// Nodes are spread over this many regions, round robin.
    pub regions: usize,
    /// One-way delay between two nodes of one region (drawn per message).
    pub within: (Millis, Millis),
    /// One-way delay between two regions (drawn once per pair of regions; each message adds up
    /// to a tenth of it as jitter).
    pub between: (Millis, Millis),
    /// Each node's uplink: a broadcast leaves one copy after another at this rate.
    pub uplink_bytes_per_s: u64,
    /// When wallets send, in virtual milliseconds after the epoch. Meters run from its start
    /// to the end of the run (everything final, or the drain's end), so the set-up before it
    /// stays out of the rates and the work a backlog leaves after it stays in.
    pub window: (Millis, Millis),
}

impl Wan {
    /// Five regions 20–150 ms apart (one way), 2–10 ms inside a region, 1 Gbit/s uplinks.
    pub fn world(window: (Millis, Millis)) -> Wan {
        Wan {
            regions: 5,
            within: (2, 10),
            between: (20, 150),
            uplink_bytes_per_s: 125_000_000,
            window,
        }
    }
}

/// One node's meters over the window.
#[derive(Clone, Debug, Default)]
pub struct NodeMeter {
    pub bytes_out: u64,
    /// What `bytes_out` carried, by the kind of message (`kind_of`).
    pub bytes_out_by_kind: BTreeMap<&'static str, u64>,
    pub bytes_in: u64,
    /// What `bytes_in` carried: transactions, layer-1 vote batches, layer-2 proposals and votes.
    pub bytes_in_transactions: u64,
    pub bytes_in_vote_batches: u64,
    pub bytes_in_bft: u64,
    pub messages_in: u64,
    /// Signatures in what it took in, leaving out transactions it already held (the driver
    /// answers those from a lookup).
    pub verifications: u64,
    /// Time the real driver spent on this node's events.
    pub cpu: Duration,
}

/// The world's state during a run.
pub struct WanState {
    pub model: Wan,
    /// Honest nodes: a transaction is final everywhere when final on this many.
    honest: usize,
    region: Vec<usize>,
    /// One-way base delay between regions, milliseconds.
    base: Vec<Vec<Millis>>,
    /// Virtual microseconds (since the epoch) at which each node's CPU and uplink are free.
    cpu_free: Vec<u64>,
    uplink_free: Vec<u64>,
    /// When what the node being stepped says leaves it (its CPU is done), microseconds.
    depart: u64,
    pub meters: Vec<NodeMeter>,
    /// Each submitted transaction: the node it went to and when.
    submitted: HashMap<Txid, (usize, Millis)>,
    /// Honest nodes each transaction is final on so far.
    final_on: HashMap<Txid, usize>,
    /// Layer-1 finality latency, milliseconds: at the node the wallet submitted to, and at
    /// every honest node.
    pub latency_origin: Vec<Millis>,
    pub latency_all: Vec<Millis>,
    /// Transactions final on every honest node.
    pub final_everywhere: usize,
    /// When each height was first committed anywhere.
    pub commits: BTreeMap<u64, Millis>,
    /// Where the time goes, over the window: CPU and events per kind of event, and how long
    /// events of each kind waited for a busy CPU (microseconds).
    cpu_by_kind: BTreeMap<&'static str, (Duration, u64)>,
    wait_by_kind: BTreeMap<&'static str, u64>,
    /// The slot engine's path, for transactions submitted in the window: when the first
    /// announcement naming each left its aggregator, and when the first certificate of each
    /// batch left (by root), with the batch each txid was certified in.
    seen_announcements: std::collections::HashSet<[u8; 64]>,
    batches: HashMap<Hash32, Vec<Txid>>,
    announced: HashMap<Txid, Millis>,
    certified: HashMap<Hash32, Millis>,
    certified_in: HashMap<Txid, Hash32>,
    /// At the wallet's node: submit → announcement, announcement → certificate, certificate
    /// → final there.
    phases: [Vec<Millis>; 3],
}

fn us(ms: Millis) -> u64 {
    (ms - EPOCH) * 1_000
}

fn ms(us: u64) -> Millis {
    EPOCH + us.div_ceil(1_000)
}

/// CPU time this thread has used: what a node's driver spends on an event, without the time
/// the thread waited for a core (the machine is shared; a wall clock would charge that too).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What a message takes on the wire: its body, the frame's length prefix, type and flags, and
/// the session MAC. Bodies over a kilobyte may travel compressed; votes over random txids do
/// not compress, so this counts them plain.
pub fn wire_bytes(msg: &WireMessage) -> u64 {
    (NetMessage::Consensus(msg.clone()).to_frame().body.len() + 6 + TAG_BYTES) as u64
}

/// What a measurement files a message's CPU and wait under.
pub fn kind_of(msg: &WireMessage) -> &'static str {
    match msg {
        WireMessage::Transaction(_) => "transaction",
        WireMessage::TxInv(_) | WireMessage::GetTxs(_) => "transaction relay",
        WireMessage::VoteBatch(_) => "vote batch",
        WireMessage::Proposal(_)
        | WireMessage::CompactProposal(_)
        | WireMessage::GetProposal { .. } => "bft proposal",
        WireMessage::Vote(_) => "bft vote",
        WireMessage::SlotAnnouncement(_) => "slot announcement",
        WireMessage::SlotShare(_) => "slot share",
        WireMessage::LockReport(_) => "lock report",
        WireMessage::SlotCertificate(_) => "slot certificate",
        WireMessage::GetSlotBatch { .. } => "slot batch request",
        WireMessage::Blocks(_) | WireMessage::GetBlocks { .. } => "block sync",
        _ => "other message",
    }
}

/// Signatures a node checks to take `msg` in.
pub fn signatures_in(msg: &WireMessage) -> u64 {
    match msg {
        WireMessage::Transaction(tx) => tx.inputs.len() as u64,
        // A proposal's transactions are final already on an honest validator, which checks
        // only what it does not hold: count the proposer's signature.
        WireMessage::VoteBatch(_)
        | WireMessage::Vote(_)
        | WireMessage::Proposal(_)
        | WireMessage::CompactProposal(_) => 1,
        WireMessage::Finality { tx, batches } => (tx.inputs.len() + batches.len()) as u64,
        WireMessage::Blocks(blocks) => blocks
            .iter()
            .map(|(b, c)| (b.transactions.len() + c.precommits.len()) as u64)
            .sum(),
        WireMessage::Evidence(_) => 2,
        // A slot's announcement (ed25519) and certificate (one aggregate check); shares are
        // checked in their sum, once per certificate, at the aggregator.
        WireMessage::SlotAnnouncement(_) | WireMessage::SlotCertificate(_) => 1,
        _ => 0,
    }
}

impl WanState {
    pub fn new(model: Wan, nodes: usize, honest: usize, rng: &mut ChaCha8Rng) -> WanState {
        let r = model.regions.max(1);
        // Symmetric: one draw per pair of regions.
        let mut base = vec![vec![0; r]; r];
        for (a, b) in (0..r).flat_map(|a| (a + 1..r).map(move |b| (a, b))) {
            let d = rng.gen_range(model.between.0..=model.between.1);
            base[a][b] = d;
            base[b][a] = d;
        }
        WanState {
            model,
            honest,
            region: (0..nodes).map(|i| i % r).collect(),
            base,
            cpu_free: vec![0; nodes],
            uplink_free: vec![0; nodes],
            depart: 0,
            meters: vec![NodeMeter::default(); nodes],
            submitted: HashMap::new(),
            final_on: HashMap::new(),
            latency_origin: Vec::new(),
            latency_all: Vec::new(),
            final_everywhere: 0,
            commits: BTreeMap::new(),
            cpu_by_kind: BTreeMap::new(),
            wait_by_kind: BTreeMap::new(),
            seen_announcements: Default::default(),
            batches: HashMap::new(),
            announced: HashMap::new(),
            certified: HashMap::new(),
            certified_in: HashMap::new(),
            phases: Default::default(),
        }
    }

    /// Whether wallets send at `at`.
    fn offered(&self, at: Millis) -> bool {
        let t = at - EPOCH;
        t >= self.model.window.0 && t < self.model.window.1
    }

    /// Whether the meters run at `at`.
    fn in_window(&self, at: Millis) -> bool {
        at - EPOCH >= self.model.window.0
    }

    /// When node `i` can take its next event, if its CPU is busy past the millisecond `now`
    /// (events within one millisecond queue on its CPU in microseconds, so the clock's
    /// granularity does not cap a node at one event a millisecond).
    pub fn busy_until(&self, i: usize, now: Millis) -> Option<Millis> {
        let free = self.cpu_free[i];
        (free >= us(now) + 1_000).then(|| EPOCH + free / 1_000)
    }

    /// Node `i` spent `took` on an event at `now`: its CPU is busy that long, and what it
    /// says leaves when it is done.
    pub fn charge(&mut self, i: usize, kind: &'static str, now: Millis, took: Duration) {
        let start = us(now).max(self.cpu_free[i]);
        self.cpu_free[i] = start + took.as_micros() as u64;
        self.depart = self.cpu_free[i];
        if self.in_window(now) {
            self.meters[i].cpu += took;
            let k = self.cpu_by_kind.entry(kind).or_default();
            k.0 += took;
            k.1 += 1;
        }
    }

    /// An event of `kind` that reached node `i` at `arrived` is taken at `now` (it waited
    /// for the node's CPU in between; the CPU of one event before it may run past `now` by
    /// under a millisecond, which this leaves out).
    pub fn waited(&mut self, _i: usize, kind: &'static str, arrived: Millis, now: Millis) {
        if self.in_window(now) {
            *self.wait_by_kind.entry(kind).or_default() += (now - arrived) * 1_000;
        }
    }

    /// Node `i` took `msg` in at `now`; a `known` one costs no signature check.
    pub fn received(&mut self, i: usize, now: Millis, msg: &WireMessage, known: bool) {
        if self.in_window(now) {
            let m = &mut self.meters[i];
            m.messages_in += 1;
            if !known {
                m.verifications += signatures_in(msg);
            }
        }
    }

    /// The time `msg` from `from` reaches `to`: after the sender's CPU and its uplink (one
    /// copy after another), then the link's delay.
    pub fn route(
        &mut self,
        from: usize,
        to: usize,
        msg: &WireMessage,
        now: Millis,
        rng: &mut ChaCha8Rng,
    ) -> Millis {
        let bytes = wire_bytes(msg);
        let leave = self.depart.max(us(now)).max(self.uplink_free[from])
            + bytes * 1_000_000 / self.model.uplink_bytes_per_s.max(1);
        self.uplink_free[from] = leave;
        let (ra, rb) = (self.region[from], self.region[to]);
        let delay = if ra == rb {
            rng.gen_range(self.model.within.0..=self.model.within.1)
        } else {
            let b = self.base[ra][rb];
            b + rng.gen_range(0..=b / 10)
        };
        self.trace_slot_path(msg, ms(leave));
        if self.in_window(ms(leave)) {
            self.meters[from].bytes_out += bytes;
            *(self.meters[from].bytes_out_by_kind)
                .entry(kind_of(msg))
                .or_default() += bytes;
            let m = &mut self.meters[to];
            m.bytes_in += bytes;
            match msg {
                WireMessage::Transaction(_) | WireMessage::TxInv(_) | WireMessage::GetTxs(_) => {
                    m.bytes_in_transactions += bytes
                }
                // Layer-1 votes under either engine.
                WireMessage::VoteBatch(_)
                | WireMessage::SlotAnnouncement(_)
                | WireMessage::SlotShare(_)
                | WireMessage::LockReport(_)
                | WireMessage::SlotCertificate(_)
                | WireMessage::GetSlotBatch { .. } => m.bytes_in_vote_batches += bytes,
                WireMessage::Proposal(_)
                | WireMessage::CompactProposal(_)
                | WireMessage::GetProposal { .. }
                | WireMessage::Vote(_) => m.bytes_in_bft += bytes,
                _ => {}
            }
        }
        ms(leave + delay * 1_000)
    }

    /// Notes when the first announcement naming each transaction, and the first certificate
    /// of each batch, left its sender (`leave`: its first copy's last byte).
    fn trace_slot_path(&mut self, msg: &WireMessage, leave: Millis) {
        match msg {
            WireMessage::SlotAnnouncement(a) if self.seen_announcements.insert(a.signature.0) => {
                for txid in &a.txids {
                    if self.submitted.contains_key(txid) {
                        self.announced.entry(*txid).or_insert(leave);
                    }
                }
                self.batches.insert(a.root(), a.txids.clone());
            }
            WireMessage::SlotCertificate(certificate)
                if !self.certified.contains_key(&certificate.root) =>
            {
                self.certified.insert(certificate.root, leave);
                for txid in self.batches.get(&certificate.root).into_iter().flatten() {
                    if self.submitted.contains_key(txid) {
                        self.certified_in.entry(*txid).or_insert(certificate.root);
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends a step: what is said next leaves at the clock unless a node's CPU says otherwise.
    pub fn settle(&mut self) {
        self.depart = 0;
    }

    /// A wallet sends `txid` to `node` at `at` (latency counts from here, the node's queue
    /// included): measured if inside the window.
    pub fn submitted(&mut self, txid: Txid, node: usize, at: Millis) {
        if self.offered(at) {
            self.submitted.entry(txid).or_insert((node, at));
        }
    }

    /// Honest node `i` holds `txid` final since the end of its current step.
    pub fn finalized(&mut self, i: usize, txid: Txid, now: Millis) {
        let Some((origin, at)) = self.submitted.get(&txid).copied() else {
            return;
        };
        let when = ms(self.depart).max(now);
        let latency = when - at;
        self.latency_all.push(latency);
        if origin == i {
            self.latency_origin.push(latency);
            let announced = self.announced.get(&txid).copied();
            let certified = (self.certified_in.get(&txid)).and_then(|r| self.certified.get(r));
            if let (Some(a), Some(c)) = (announced, certified.copied()) {
                self.phases[0].push(a.saturating_sub(at));
                self.phases[1].push(c.saturating_sub(a));
                self.phases[2].push(when.saturating_sub(c));
            }
        }
        let n = self.final_on.entry(txid).or_insert(0);
        *n += 1;
        if *n == self.honest {
            self.final_everywhere += 1;
        }
    }

    pub fn committed(&mut self, height: u64, now: Millis) {
        let when = ms(self.depart).max(now);
        self.commits.entry(height).or_insert(when);
    }
}

/// What a measured run reports (per node figures are means over honest nodes, with the
/// busiest node's alongside).
#[derive(Clone, Debug)]
pub struct Figures {
    pub nodes: usize,
    pub offered_per_s: f64,
    /// Seconds the meters ran: from the first send until everything was final (or the
    /// drain ended). Longer than the sending window when the network fell behind.
    pub metered_s: f64,
    pub submitted: usize,
    pub final_everywhere: usize,
    pub bytes_in_per_s: f64,
    pub transactions_in_per_s: f64,
    pub vote_batches_in_per_s: f64,
    pub bft_in_per_s: f64,
    pub bytes_out_per_s: f64,
    pub max_bytes_out_per_s: f64,
    pub verifications_per_s: f64,
    pub messages_in_per_s: f64,
    /// Cores of consensus CPU (the driver's time per second of virtual time).
    pub cpu_cores: f64,
    pub max_cpu_cores: f64,
    pub p50_origin_ms: Millis,
    pub p99_origin_ms: Millis,
    pub p50_all_ms: Millis,
    pub p99_all_ms: Millis,
    /// Mean time between consecutive blocks over the run (0: fewer than two).
    pub block_time_ms: f64,
    /// Where the time went (printed, not in the CSV row): CPU and waits per kind of event,
    /// and the slot engine's path in phases.
    pub profile: String,
}

impl Figures {
    pub const CSV_HEADER: &'static str = "nodes,offered_tx_s,metered_s,submitted,\
        final_everywhere,bytes_in_s,tx_bytes_in_s,vote_batch_bytes_in_s,bft_bytes_in_s,\
        bytes_out_s,max_bytes_out_s,verifications_s,messages_in_s,cpu_cores,max_cpu_cores,\
        p50_origin_ms,p99_origin_ms,p50_all_ms,p99_all_ms,block_time_ms";

    /// One CSV row in the order of [`Self::CSV_HEADER`].
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{:.2},{},{},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.3},{:.3},{},{},{},{},{:.0}",
            self.nodes,
            self.offered_per_s,
            self.metered_s,
            self.submitted,
            self.final_everywhere,
            self.bytes_in_per_s,
            self.transactions_in_per_s,
            self.vote_batches_in_per_s,
            self.bft_in_per_s,
            self.bytes_out_per_s,
            self.max_bytes_out_per_s,
            self.verifications_per_s,
            self.messages_in_per_s,
            self.cpu_cores,
            self.max_cpu_cores,
            self.p50_origin_ms,
            self.p99_origin_ms,
            self.p50_all_ms,
            self.p99_all_ms,
            self.block_time_ms
        )
    }

    /// The figures of a row [`Self::to_csv`] wrote.
    pub fn from_csv(row: &str) -> Option<Figures> {
        let v: Vec<f64> = row
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        let [nodes, offered, metered, submitted, finals, bytes_in, txs, votes, bft, bytes_out, max_out, verifications, messages, cpu, max_cpu, p50o, p99o, p50a, p99a, block] =
            v[..]
        else {
            return None;
        };
        Some(Figures {
            nodes: nodes as usize,
            offered_per_s: offered,
            metered_s: metered,
            submitted: submitted as usize,
            final_everywhere: finals as usize,
            bytes_in_per_s: bytes_in,
            transactions_in_per_s: txs,
            vote_batches_in_per_s: votes,
            bft_in_per_s: bft,
            bytes_out_per_s: bytes_out,
            max_bytes_out_per_s: max_out,
            verifications_per_s: verifications,
            messages_in_per_s: messages,
            cpu_cores: cpu,
            max_cpu_cores: max_cpu,
            p50_origin_ms: p50o as Millis,
            p99_origin_ms: p99o as Millis,
            p50_all_ms: p50a as Millis,
            p99_all_ms: p99a as Millis,
            block_time_ms: block,
            profile: String::new(),
        })
    }
}

fn percentile(sorted: &[Millis], p: f64) -> Millis {
    if sorted.is_empty() {
        return 0;
    }
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

impl WanState {
    /// The figures of a run that ended at `end`.
    pub fn figures(&self, honest: &[usize], offered_per_s: f64, end: Millis) -> Figures {
        let secs = ((end - EPOCH).saturating_sub(self.model.window.0)).max(1) as f64 / 1_000.0;
        let per = |f: &dyn Fn(&NodeMeter) -> f64| -> (f64, f64) {
            let v: Vec<f64> = honest.iter().map(|i| f(&self.meters[*i]) / secs).collect();
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            (mean, v.iter().copied().fold(0.0, f64::max))
        };
        let (bytes_in, _) = per(&|m| m.bytes_in as f64);
        let (transactions_in, _) = per(&|m| m.bytes_in_transactions as f64);
        let (vote_batches_in, _) = per(&|m| m.bytes_in_vote_batches as f64);
        let (bft_in, _) = per(&|m| m.bytes_in_bft as f64);
        let (bytes_out, max_out) = per(&|m| m.bytes_out as f64);
        let (verifications, _) = per(&|m| m.verifications as f64);
        let (messages_in, _) = per(&|m| m.messages_in as f64);
        let (cpu, max_cpu) = per(&|m| m.cpu.as_secs_f64());
        let mut origin = self.latency_origin.clone();
        origin.sort_unstable();
        let mut all = self.latency_all.clone();
        all.sort_unstable();
        // Over the whole run: a window of a second or two holds one block or two.
        let times: Vec<Millis> = self.commits.values().copied().collect();
        let block_time_ms = match (times.first(), times.last()) {
            (Some(a), Some(b)) if times.len() > 1 => (b - a) as f64 / (times.len() - 1) as f64,
            _ => 0.0,
        };
        Figures {
            nodes: honest.len(),
            offered_per_s,
            metered_s: secs,
            submitted: self.submitted.len(),
            final_everywhere: self.final_everywhere,
            bytes_in_per_s: bytes_in,
            transactions_in_per_s: transactions_in,
            vote_batches_in_per_s: vote_batches_in,
            bft_in_per_s: bft_in,
            bytes_out_per_s: bytes_out,
            max_bytes_out_per_s: max_out,
            verifications_per_s: verifications,
            messages_in_per_s: messages_in,
            cpu_cores: cpu,
            max_cpu_cores: max_cpu,
            p50_origin_ms: percentile(&origin, 0.50),
            p99_origin_ms: percentile(&origin, 0.99),
            p50_all_ms: percentile(&all, 0.50),
            p99_all_ms: percentile(&all, 0.99),
            block_time_ms,
            profile: self.profile(secs),
        }
    }

    /// Per kind of event: cores per node, events a second per node, mean wait for the CPU;
    /// then the slot engine's path at the wallet's node, p50 and p99 of each phase.
    fn profile(&self, secs: f64) -> String {
        use std::fmt::Write as _;
        let n = self.meters.len().max(1) as f64;
        let mut out = String::from("kind | cores per node | events/s per node | mean wait ms\n");
        for (kind, (cpu, count)) in &self.cpu_by_kind {
            let wait = self.wait_by_kind.get(kind).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{kind} | {:.4} | {:.0} | {:.1}",
                cpu.as_secs_f64() / secs / n,
                *count as f64 / secs / n,
                wait as f64 / 1_000.0 / (*count).max(1) as f64
            );
        }
        let names = [
            "submit -> announced",
            "announced -> certified",
            "certified -> final",
        ];
        // Who sent most, and what: the row's "busiest out" names no node.
        if let Some((i, m)) = (self.meters.iter().enumerate()).max_by_key(|(_, m)| m.bytes_out) {
            let mut kinds: Vec<(&str, u64)> =
                m.bytes_out_by_kind.iter().map(|(k, b)| (*k, *b)).collect();
            kinds.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
            let shares: Vec<String> = (kinds.iter().take(4))
                .map(|(k, b)| format!("{k} {:.2}", *b as f64 / secs / 1e6))
                .collect();
            let _ = writeln!(
                out,
                "busiest sender: node {i}, {:.2} MB/s out ({})",
                m.bytes_out as f64 / secs / 1e6,
                shares.join(", ")
            );
        }
        for (name, v) in names.iter().zip(&self.phases) {
            let mut v = v.clone();
            v.sort_unstable();
            let _ = writeln!(
                out,
                "{name}: p50 {} ms, p99 {} ms ({} transactions)",
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                v.len()
            );
        }
        out
    }
}
