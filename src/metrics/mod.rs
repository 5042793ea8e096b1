//! Prometheus metrics (`timed_*`): the registry and what every layer reports to it. Served by
//! the node's status port (`node::status`: `/metrics`, `/health`, `/ready`).
//!
//! ```text
//! peer tasks, pool, consensus, RPC ──counters, histograms──► Metrics (one per process)
//! GET /metrics ─► node::status samples the node's state now (height, round, pool, peers,
//!                 readiness, masternode weight, clock offset, database size, disk, memory)
//!                 ─► record(NodeSample) ─► encode(): Prometheus text 0.0.4
//! ```
//!
//! At the bottom of the layers beside `types`: every module may report here, and this module
//! imports none of them (the node's state reaches it as a plain [`NodeSample`]).
//!
//! Counters live in one process-wide registry rather than in `NodeContext`: they are bumped
//! from code that has no context (peer tasks, the pool, the consensus driver), a process runs
//! one node, and a counter shared by in-process test nodes only adds up. What is state
//! (height, pool size, peers...) is not pushed: it is read at scrape time, so it cannot drift.

mod node_gauges;

use crate::types::EvidenceLayer;
use node_gauges::NodeGauges;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "timed";
/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Finality latency buckets: 5 ms doubling to ~41 s.
const FINALITY_BUCKETS: (f64, u16) = (0.005, 14);
/// RPC latency buckets: 0.5 ms doubling to ~16 s.
const RPC_BUCKETS: (f64, u16) = (0.0005, 16);
/// Consensus owner busy-time buckets (a block's commit, a burst of commands): 0.25 ms doubling
/// to ~8 s. Anything the owner spends here, every vote and submit behind it waits.
const OWNER_BUCKETS: (f64, u16) = (0.00025, 16);

/// Why the pool refused a transaction: a fixed set, so the label cannot grow.
pub const REJECT_REASONS: [&str; 12] = [
    "already_known",
    "recently_rejected",
    "invalid",
    "missing_input",
    "input_locked",
    "input_spent",
    "conflict",
    "fee_too_low",
    "pool_full",
    "backlogged",
    "blocks_behind",
    "internal",
];

/// What led to a ban.
#[derive(Clone, Copy, Debug)]
pub enum BanReason {
    /// Misbehaviour points reached the threshold, or proven Byzantine data.
    Misbehaviour,
    /// An operator's `setban`.
    Operator,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// Where a local submit waits before the owner's verdict (see [`submit_stage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitStage {
    /// Queued at the door, before its batch's check starts.
    DoorQueue,
    /// The door's signature check of the batch it is in.
    DoorCheck,
    /// Queued for the consensus owner after the door.
    OwnerQueue,
}

impl SubmitStage {
    const ALL: [SubmitStage; 3] = [
        SubmitStage::DoorQueue,
        SubmitStage::DoorCheck,
        SubmitStage::OwnerQueue,
    ];

    fn label(self) -> &'static str {
        match self {
            SubmitStage::DoorQueue => "door_queue",
            SubmitStage::DoorCheck => "door_check",
            SubmitStage::OwnerQueue => "owner_queue",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabel {
    layer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    direction: &'static str,
    message_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// One frame type's counters, resolved once so a message costs four atomic adds, not a
/// label lookup.
struct FrameCounters {
    bytes_in: Counter,
    bytes_out: Counter,
    msgs_in: Counter,
    msgs_out: Counter,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process-wide registry and its metrics.
pub struct Metrics {
    registry: Registry,
    chain_height: Gauge,
    consensus_round: Gauge,
    last_block_age: Gauge<f64, AtomicU64>,
    mempool_transactions: Gauge,
    mempool_bytes: Gauge,
    peers: Family<DirectionLabel, Gauge>,
    consensus_queue: Family<QueueLabel, Gauge>,
    database_size: Gauge,
    resident_memory: Gauge,
    node: NodeGauges,
    blocks_committed: Counter,
    transactions_finalized: Counter,
    finality_latency: Histogram,
    block_commit: Histogram,
    block_build: Histogram,
    owner_busy: Histogram,
    submit_stages: HistogramFamily<StageLabel>,
    mempool_rejections: Family<ReasonLabel, Counter>,
    bans: Family<ReasonLabel, Counter>,
    equivocations: Family<LayerLabel, Counter>,
    consensus_dropped: Family<ReasonLabel, Counter>,
    frames: Vec<FrameCounters>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_latency: HistogramFamily<MethodLabel>,
    block_builder_skipped: Counter,
    storage_corrupt_records: Counter,
    sync_requests_refused: Counter,
    p2p_frames_decompressed: Counter,
    slot_announcements_past_tree: Counter,
    tx_asks_timed_out: Counter,
}

fn owner_histogram() -> Histogram {
    Histogram::new(exponential_buckets(OWNER_BUCKETS.0, 2.0, OWNER_BUCKETS.1))
}

fn rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(RPC_BUCKETS.0, 2.0, RPC_BUCKETS.1))
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix(PREFIX);
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "Version of this timed binary (always 1)",
            build,
        );

        let chain_height = Gauge::default();
        r.register(
            "chain_height",
            "Height of the last committed block",
            chain_height.clone(),
        );
        let consensus_round = Gauge::default();
        r.register(
            "consensus_round",
            "BFT round at the height being decided",
            consensus_round.clone(),
        );
        let last_block_age = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "last_block_age",
            "Time since the timestamp of the last committed block",
            Unit::Seconds,
            last_block_age.clone(),
        );
        let mempool_transactions = Gauge::default();
        r.register(
            "mempool_transactions",
            "Transactions in the pool",
            mempool_transactions.clone(),
        );
        let mempool_bytes = Gauge::default();
        r.register_with_unit(
            "mempool",
            "Encoded size of the transactions in the pool",
            Unit::Bytes,
            mempool_bytes.clone(),
        );
        let peers = Family::<DirectionLabel, Gauge>::default();
        // Every series of a fixed label set exists from the start, at 0, so a rate or an
        // alert on it does not wait for its first event.
        for direction in ["inbound", "outbound"] {
            let _ = peers.get_or_create_owned(&DirectionLabel { direction });
        }
        r.register("peers", "Connected peers by direction", peers.clone());
        let consensus_queue = Family::<QueueLabel, Gauge>::default();
        for queue in ["door", "owner"] {
            let _ = consensus_queue.get_or_create_owned(&QueueLabel { queue });
        }
        r.register(
            "consensus_queue",
            "Work waiting at a stage of consensus: transactions at the door (signature checks), \
             commands for the owner",
            consensus_queue.clone(),
        );
        let database_size = Gauge::default();
        r.register_with_unit(
            "database_size",
            "Size of the sled database on disk",
            Unit::Bytes,
            database_size.clone(),
        );
        let resident_memory = Gauge::default();
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the timed process",
            Unit::Bytes,
            resident_memory.clone(),
        );

        let node = NodeGauges::register(&mut r);

        let blocks_committed = Counter::default();
        r.register(
            "blocks_committed",
            "Blocks committed (or installed by fast sync) by this process",
            blocks_committed.clone(),
        );
        let storage_corrupt_records = Counter::default();
        r.register(
            "storage_corrupt_records",
            "Damaged database records found while serving or reading (not served; see the log)",
            storage_corrupt_records.clone(),
        );
        let sync_requests_refused = Counter::default();
        r.register(
            "sync_requests_refused",
            "Peer sync requests dropped for exceeding the per-peer budget",
            sync_requests_refused.clone(),
        );
        let p2p_frames_decompressed = Counter::default();
        r.register(
            "p2p_frames_decompressed",
            "Compressed P2P frames decompressed (only frames within their sender's rate limit)",
            p2p_frames_decompressed.clone(),
        );
        let transactions_finalized = Counter::default();
        r.register(
            "transactions_finalized",
            "Transactions that reached layer-1 finality in this process",
            transactions_finalized.clone(),
        );
        let finality_latency = Histogram::new(exponential_buckets(
            FINALITY_BUCKETS.0,
            2.0,
            FINALITY_BUCKETS.1,
        ));
        r.register_with_unit(
            "finality_latency",
            "From a transaction entering this node's pool to its finality (layer 1, or its block if first)",
            Unit::Seconds,
            finality_latency.clone(),
        );
        let block_commit = owner_histogram();
        r.register_with_unit(
            "block_commit_duration",
            "Time the consensus owner spent applying a decided block (ledger, disk, pool, finality)",
            Unit::Seconds,
            block_commit.clone(),
        );
        let block_build = owner_histogram();
        r.register_with_unit(
            "block_build_duration",
            "Time spent building this node's proposal, beside the consensus owner (final set ordered, walked, committed to)",
            Unit::Seconds,
            block_build.clone(),
        );
        let owner_busy = owner_histogram();
        r.register_with_unit(
            "consensus_burst_duration",
            "Time the consensus owner spent on one burst of queued commands or due timers",
            Unit::Seconds,
            owner_busy.clone(),
        );
        let submit_stages: HistogramFamily<StageLabel> =
            Family::new_with_constructor(owner_histogram as fn() -> Histogram);
        for stage in SubmitStage::ALL {
            let _ = submit_stages.get_or_create(&StageLabel {
                stage: stage.label(),
            });
        }
        r.register_with_unit(
            "submit_stage_duration",
            "Time a local submit spent at each stage before the pool's verdict: waiting at the door, the door's signature check of its batch, waiting in the consensus owner's queue",
            Unit::Seconds,
            submit_stages.clone(),
        );
        let mempool_rejections = Family::<ReasonLabel, Counter>::default();
        for reason in REJECT_REASONS {
            let _ = mempool_rejections.get_or_create_owned(&ReasonLabel { reason });
        }
        r.register(
            "mempool_rejections",
            "Transactions the pool refused, by reason",
            mempool_rejections.clone(),
        );
        let bans = Family::<ReasonLabel, Counter>::default();
        for reason in ["misbehaviour", "operator"] {
            let _ = bans.get_or_create_owned(&ReasonLabel { reason });
        }
        r.register("peer_bans", "Peers banned, by reason", bans.clone());
        let equivocations = Family::<LayerLabel, Counter>::default();
        for layer in [EvidenceLayer::Layer1, EvidenceLayer::Layer2] {
            let _ = equivocations.get_or_create_owned(&LayerLabel {
                layer: layer.label(),
            });
        }
        r.register(
            "equivocations",
            "Equivocation evidence stored by this process, by consensus layer (1 or 2)",
            equivocations.clone(),
        );
        let consensus_dropped = Family::<ReasonLabel, Counter>::default();
        for reason in CONSENSUS_DROP_REASONS {
            let _ = consensus_dropped.get_or_create_owned(&ReasonLabel { reason });
        }
        r.register(
            "consensus_dropped",
            "Peer consensus messages dropped before the engines (most before any signature check), by reason",
            consensus_dropped.clone(),
        );

        let net_bytes = Family::<MessageLabels, Counter>::default();
        let net_msgs = Family::<MessageLabels, Counter>::default();
        let frames = (0..=u8::MAX)
            .map(|k| {
                let message_type = crate::types::frame_kind::name(k);
                let get = |f: &Family<MessageLabels, Counter>, direction| {
                    f.get_or_create_owned(&MessageLabels {
                        direction,
                        message_type,
                    })
                };
                FrameCounters {
                    bytes_in: get(&net_bytes, "in"),
                    bytes_out: get(&net_bytes, "out"),
                    msgs_in: get(&net_msgs, "in"),
                    msgs_out: get(&net_msgs, "out"),
                }
            })
            .collect();
        r.register_with_unit(
            "network",
            "P2P bytes (frame headers included) by direction and message type",
            Unit::Bytes,
            net_bytes,
        );
        r.register(
            "network_messages",
            "P2P messages by direction and message type",
            net_msgs,
        );

        let rpc_requests = Family::<RpcLabels, Counter>::default();
        r.register(
            "rpc_requests",
            "JSON-RPC calls by method and result (ok or error)",
            rpc_requests.clone(),
        );
        let rpc_latency: HistogramFamily<MethodLabel> =
            Family::new_with_constructor(rpc_histogram as fn() -> Histogram);
        r.register_with_unit(
            "rpc_request_duration",
            "JSON-RPC call duration by method",
            Unit::Seconds,
            rpc_latency.clone(),
        );

        let block_builder_skipped = Counter::default();
        r.register(
            "block_builder_skipped",
            "Final transactions the block builder could not place (each is a bug to report)",
            block_builder_skipped.clone(),
        );

        let slot_announcements_past_tree = Counter::default();
        r.register(
            "slot_announcements_past_tree",
            "Copies of a slot batch its aggregator sent voters itself because the quorum was late \
             (a relay of the slot's tree silent or slow)",
            slot_announcements_past_tree.clone(),
        );

        let tx_asks_timed_out = Counter::default();
        r.register(
            "tx_asks_timed_out",
            "Transactions asked of a peer that announced them and not received in time (the next \
             announcer was asked): a peer that announces what it does not serve",
            tx_asks_timed_out.clone(),
        );

        Metrics {
            registry: r,
            chain_height,
            consensus_round,
            last_block_age,
            mempool_transactions,
            mempool_bytes,
            peers,
            consensus_queue,
            database_size,
            resident_memory,
            node,
            blocks_committed,
            transactions_finalized,
            finality_latency,
            block_commit,
            block_build,
            owner_busy,
            submit_stages,
            mempool_rejections,
            bans,
            equivocations,
            consensus_dropped,
            frames,
            rpc_requests,
            rpc_latency,
            block_builder_skipped,
            storage_corrupt_records,
            sync_requests_refused,
            p2p_frames_decompressed,
            slot_announcements_past_tree,
            tx_asks_timed_out,
        }
    }

    fn frame(&self, kind: u8) -> &FrameCounters {
        // `frames` has one entry for each of the 256 byte values.
        &self.frames[usize::from(kind)]
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn global() -> &'static Metrics {
    &METRICS
}

/// Consensus committed a block.
pub fn block_committed() {
    global().blocks_committed.inc();
}

/// A transaction became final (at layer 1, or by its block).
pub fn transaction_finalized() {
    global().transactions_finalized.inc();
}

/// New equivocation evidence was stored.
pub fn equivocation(layer: EvidenceLayer) {
    global()
        .equivocations
        .get_or_create(&LayerLabel {
            layer: layer.label(),
        })
        .inc();
}

/// A transaction became final `since` after it entered the pool.
pub fn finality_latency(ms: u64) {
    global().finality_latency.observe(ms as f64 / 1000.0);
}

/// The consensus owner applied a decided block in `took`.
pub fn block_commit(took: Duration) {
    global().block_commit.observe(took.as_secs_f64());
}

/// A worker built this node's proposal in `took`.
pub fn block_build(took: Duration) {
    global().block_build.observe(took.as_secs_f64());
}

/// The consensus owner handled one burst of commands (or due timers) in `took`.
pub fn consensus_burst(took: Duration) {
    global().owner_busy.observe(took.as_secs_f64());
}

/// A local submit spent `took` at `stage`: the stage whose time grows at a node's ceiling is
/// the one that holds its clients back.
pub fn submit_stage(stage: SubmitStage, took: Duration) {
    global()
        .submit_stages
        .get_or_create(&StageLabel {
            stage: stage.label(),
        })
        .observe(took.as_secs_f64());
}

/// The block builder left out a final transaction it could not place.
pub fn block_builder_skipped() {
    global().block_builder_skipped.inc();
}

/// The pool refused a transaction, for `reason` (`PoolError::reason_label`).
pub fn mempool_rejected(reason: &'static str) {
    global()
        .mempool_rejections
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// A frame of type `kind` and `bytes` bytes (header included) arrived from a peer.
pub fn frame_received(kind: u8, bytes: u64) {
    let c = global().frame(kind);
    c.bytes_in.inc_by(bytes);
    c.msgs_in.inc();
}

/// A frame of type `kind` and `bytes` bytes (header included) was written to a peer.
pub fn frame_sent(kind: u8, bytes: u64) {
    let c = global().frame(kind);
    c.bytes_out.inc_by(bytes);
    c.msgs_out.inc();
}

/// Why the consensus door drops a peer's message: the closed label set of
/// `timed_consensus_dropped_total` (the driver's `Dropped::label` values; a unit test there
/// keeps the two in step, so metrics need not import consensus).
pub const CONSENSUS_DROP_REASONS: [&str; 8] = [
    "faulty_peer",
    "stale",
    "not_member",
    "not_proposer",
    "bad_signature",
    "over_cap",
    "irrelevant",
    "malformed",
];

/// A peer's consensus message was dropped at the door (`reason`: a `Dropped` label).
pub fn consensus_dropped(reason: &'static str) {
    global()
        .consensus_dropped
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// A damaged database record was found (and not served).
pub fn storage_corrupt_record() {
    global().storage_corrupt_records.inc();
}

/// A peer's sync request was dropped: one was already in flight, or its byte budget is spent.
pub fn sync_request_refused() {
    global().sync_requests_refused.inc();
}

/// A compressed P2P frame was decompressed.
pub fn frame_decompressed() {
    global().p2p_frames_decompressed.inc();
}

/// Compressed P2P frames this process has decompressed so far.
pub fn frames_decompressed() -> u64 {
    global().p2p_frames_decompressed.get()
}

/// This node, as a slot's aggregator, sent its batch to `voters` itself, past the tree.
pub fn slot_announcements_past_tree(voters: usize) {
    global().slot_announcements_past_tree.inc_by(voters as u64);
}

/// Copies of slot batches this process sent past the tree so far (every simulated node's,
/// in the simulation).
pub fn slot_announcements_past_tree_count() -> u64 {
    global().slot_announcements_past_tree.get()
}

/// Asks for announced transactions that passed their deadline unanswered.
pub fn tx_asks_timed_out(n: u64) {
    global().tx_asks_timed_out.inc_by(n);
}

/// A peer was banned.
pub fn peer_banned(why: BanReason) {
    let reason = match why {
        BanReason::Misbehaviour => "misbehaviour",
        BanReason::Operator => "operator",
    };
    global().bans.get_or_create(&ReasonLabel { reason }).inc();
}

/// A JSON-RPC call to `method` (a registered name, or `unknown`) ended after `took`.
pub fn rpc_call(method: &str, ok: bool, took: Duration) {
    let m = global();
    m.rpc_requests
        .get_or_create(&RpcLabels {
            method: method.to_string(),
            result: if ok { "ok" } else { "error" },
        })
        .inc();
    m.rpc_latency
        .get_or_create(&MethodLabel {
            method: method.to_string(),
        })
        .observe(took.as_secs_f64());
}

/// The node's state at a scrape, as its sampler (`node::status`) read it: state, not events,
/// so these values are exact at scrape time instead of accumulated. `None` where a reading
/// failed (the gauge keeps its last value).
#[derive(Clone, Debug, Default)]
pub struct NodeSample {
    /// Height of the chain tip and the age of its block, in seconds.
    pub tip: Option<(u64, f64)>,
    pub round: u32,
    pub pool_transactions: u64,
    pub pool_bytes: u64,
    pub door_queue: u64,
    pub owner_queue: u64,
    pub inbound_peers: i64,
    pub outbound_peers: i64,
    pub database_bytes: Option<u64>,
    pub resident_bytes: Option<u64>,
    /// Bytes available to the node and size of the data directory's filesystem.
    pub disk: Option<(u64, u64)>,
    pub ready: bool,
    pub disk_low: bool,
    pub block_interval_s: f64,
    pub masternodes: u64,
    pub masternode_weight: u64,
    pub quorum_weight: u64,
    pub masternodes_connected: u64,
    pub connected_weight: u64,
    pub clock_offset_s: f64,
}

/// Sets the state gauges from a scrape's sample.
pub fn record(s: &NodeSample) {
    let m = global();
    if let Some((height, age_s)) = s.tip {
        m.chain_height.set(gauge_value(height));
        m.last_block_age.set(age_s);
    }
    m.consensus_round.set(i64::from(s.round));
    m.mempool_transactions.set(gauge_value(s.pool_transactions));
    m.mempool_bytes.set(gauge_value(s.pool_bytes));
    for (queue, n) in [("door", s.door_queue), ("owner", s.owner_queue)] {
        m.consensus_queue
            .get_or_create(&QueueLabel { queue })
            .set(gauge_value(n));
    }
    for (direction, n) in [("inbound", s.inbound_peers), ("outbound", s.outbound_peers)] {
        m.peers.get_or_create(&DirectionLabel { direction }).set(n);
    }
    if let Some(bytes) = s.database_bytes {
        m.database_size.set(gauge_value(bytes));
    }
    if let Some(bytes) = s.resident_bytes {
        m.resident_memory.set(gauge_value(bytes));
    }
    let g = &m.node;
    if let Some((available, size)) = s.disk {
        g.disk_available.set(gauge_value(available));
        g.disk_size.set(gauge_value(size));
    }
    g.ready.set(i64::from(s.ready));
    g.disk_low.set(i64::from(s.disk_low));
    g.block_interval.set(s.block_interval_s);
    g.masternodes.set(gauge_value(s.masternodes));
    g.masternode_weight.set(gauge_value(s.masternode_weight));
    g.masternode_quorum_weight.set(gauge_value(s.quorum_weight));
    g.masternodes_connected
        .set(gauge_value(s.masternodes_connected));
    g.masternode_connected_weight
        .set(gauge_value(s.connected_weight));
    g.clock_offset.set(s.clock_offset_s);
}

/// Every metric as Prometheus text.
pub fn encode() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an error here would be a bug in the encoder.
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut text, &global().registry)
    {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    text
}

/// A u64 quantity as a gauge value (gauges are i64; nothing here comes near 2^63).
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_type_byte_maps_to_a_bounded_label_set() {
        let m = global();
        assert_eq!(m.frames.len(), 256);
        let mut text = String::new();
        frame_received(11, 100);
        frame_sent(250, 7);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry).unwrap();
        assert!(text.contains(
            "timed_network_messages_total{direction=\"in\",message_type=\"vote_batch\"}"
        ));
        // Unassigned bytes all land on one series, however many a peer invents.
        let unknown = text
            .lines()
            .filter(|l| {
                l.starts_with(
                    "timed_network_bytes_total{direction=\"out\",message_type=\"unknown\"}",
                )
            })
            .count();
        assert_eq!(unknown, 1, "{text}");
    }
}
