//! `timed bench`: the end-to-end load generator. It offers transfers to a localnet at fixed
//! rates and measures what a user sees: how many become final at layer 1, and how long after
//! they were sent.
//!
//! ```text
//! faucet ─split (≤900 outputs each, wait final)─► outputs owned by 256 bench keys
//!                                  │ one output per 1-in-1-out transfer, signed before a step
//!   32 senders ─sendrawtransaction (one, or --batch N per JSON-RPC batch)─► node0, node1, …
//!        │ (index, submit time)        (round robin, paced: i-th due at i/rate)
//!        ▼
//!   1 watcher per node ◄─ws subscribefinality─ that node: latency = notification − submit time
//!        (polls getrawtransaction only while a node has closed the subscription)
//! ```
//!
//! *Offered* is the target rate. The schedule does not wait for the nodes, but at most
//! `SENDERS` requests are in flight: when a node answers `sendrawtransaction` more slowly than
//! that allows (its back-pressure), *sent* — transfers accepted per second of the window — falls
//! below offered, and what is due after the window is not sent. A node past its capacity
//! refuses at once ("mempool full", counted as *rejected*). *Final* counts transfers seen final
//! within the window plus a drain of up to `DRAIN`, over the time from the step's start to the
//! last one seen: the throughput the network sustained. Latency runs from just before the
//! submit request (so it includes the RPC) to the finality notification from the node the
//! transfer was sent to. Steps run back to back, so a backlog left by one step loads the next.
//! Generator and nodes share the cores; the last column says how much the generator took.

mod machine_limit;
mod process;
mod soak;
mod watcher;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use timed::cli::BenchArgs;
use timed::client::{self, ClientError};
use timed::config::keyfile::{self, KeyFileError};
use timed::localnet::LocalnetInfo;
use timed::types::codec::MAX_TX_BYTES;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Canonical, KeyHash, OutPoint, SecretKey, TxOutput, TxPayload};
use timed::wallet::send::{self, Coin, SendError};

/// Outputs per split transaction (a node allows 1,000 outputs and 100,000 bytes).
const SPLIT_OUTPUTS: usize = 900;
/// What each pre-split output holds; a transfer sends it on, less the fee.
const OUTPUT_ATOMS: u64 = 1_000_000;
const OWNER_KEYS: usize = 256;
/// Atoms per byte; the node's minimum is 1.
const FEE_RATE: u64 = 2;
const SENDERS: usize = 32;
/// How long after a step's window transfers may still become final and count.
const DRAIN: Duration = Duration::from_secs(10);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TRANSFERS: u64 = 2_000_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Rpc(#[from] ClientError),
}

fn invalid(message: impl Into<String>) -> LoadError {
    LoadError::Invalid(message.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A `timed localnet` this command started; stopped (SIGTERM, then SIGKILL) when dropped.
struct Localnet {
    child: Child,
    dir: PathBuf,
    node_pids: Vec<u32>,
    remove_dir: bool,
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status();
}

impl Drop for Localnet {
    fn drop(&mut self) {
        kill("-TERM", self.child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.node_pids.iter().for_each(|p| kill("-KILL", *p));
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("localnet files and logs kept in {}", self.dir.display());
        }
    }
}

/// A base port with every node's P2P and RPC port free right now, below the ephemeral range
/// (32768 and up) so that client sockets in TIME_WAIT never hold one.
fn free_base_port(n: u16) -> Result<u16, LoadError> {
    for _ in 0..200 {
        let base = 10_000 + (rand::random::<u16>() % 220) * 100;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if (0..n).all(|i| free(base + 10 * i) && free(base + 10 * i + 1)) {
            return Ok(base);
        }
    }
    Err(invalid("no free port range for the localnet"))
}

fn start_localnet(nodes: u16) -> Result<(Localnet, LocalnetInfo), LoadError> {
    if !(1..=64).contains(&nodes) {
        return Err(invalid("--start takes 1 to 64 nodes"));
    }
    let dir = std::env::temp_dir().join(format!("timed-bench-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let log = dir.join("localnet.out");
    let out = std::fs::File::create(&log).map_err(io(&log))?;
    let err = out.try_clone().map_err(io(&log))?;
    let exe = std::env::current_exe().map_err(io(Path::new("timed")))?;
    let base = free_base_port(nodes)?;
    let args = format!("localnet --block-interval 1s --nodes {nodes} --base-port {base} --dir");
    let child = Command::new(&exe)
        .args(args.split(' '))
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(&exe))?;
    let mut net = Localnet {
        child,
        dir: dir.clone(),
        node_pids: Vec::new(),
        remove_dir: false,
    };
    let shown = dir.display();
    println!("starting a localnet of {nodes} nodes in {shown} ...");
    let started = Instant::now();
    let path = dir.join("localnet.json");
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(info) = serde_json::from_str::<LocalnetInfo>(&text) {
                net.node_pids = info.nodes.iter().filter_map(|n| n.pid).collect();
                let secs = started.elapsed().as_secs_f64();
                println!("localnet ready after {secs:.1} s");
                return Ok((net, info));
            }
        }
        let failed = match net.child.try_wait() {
            Ok(Some(status)) => format!("timed localnet exited ({status})"),
            _ if started.elapsed() > START_TIMEOUT => format!("no localnet in {START_TIMEOUT:?}"),
            _ => String::new(),
        };
        if !failed.is_empty() {
            return Err(invalid(format!("{failed}; see {}", log.display())));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_localnet(dir: &Path) -> Result<LocalnetInfo, LoadError> {
    let path = dir.join("localnet.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not a localnet.json: {e}", path.display())))
}

/// An output a bench key can spend: the key's index, where it is, what it holds.
#[derive(Clone, Copy, Debug)]
struct Owned {
    key: usize,
    outpoint: OutPoint,
    atoms: u64,
}

/// Splits the faucet's funds into `count` outputs of `OUTPUT_ATOMS`, owned round-robin by
/// `keys`. Each split spends the previous one's change.
fn split_funds(
    info: &LocalnetInfo,
    url: &str,
    keys: &[SecretKey],
    count: usize,
) -> Result<Vec<Owned>, LoadError> {
    let net = info.network;
    let faucet = keyfile::read(&info.faucet.key_file)?;
    let mut coins = send::coins(url, net, &faucet)?;
    let mut owned = Vec::with_capacity(count);
    let started = Instant::now();
    while owned.len() < count {
        let n = (count - owned.len()).min(SPLIT_OUTPUTS);
        let outputs: Vec<TxOutput> = (owned.len()..owned.len() + n)
            .map(|j| TxOutput {
                amount: Amount(OUTPUT_ATOMS),
                key_hash: keys[j % keys.len()].public_key().key_hash(),
            })
            .collect();
        let tx = send::build(net, &faucet, coins, outputs, TxPayload::Transfer, FEE_RATE)?;
        if tx.encoded_len() > MAX_TX_BYTES {
            return Err(invalid("a split transaction is too large"));
        }
        let txid = send::submit(url, &tx)?;
        wait_final(url, &txid.to_hex(), false)?;
        for i in 0..n {
            owned.push(Owned {
                key: owned.len() % keys.len(),
                outpoint: OutPoint::new(txid, i as u32),
                atoms: OUTPUT_ATOMS,
            });
        }
        coins = match tx.outputs.get(n) {
            Some(change) => vec![Coin {
                outpoint: OutPoint::new(txid, n as u32),
                amount: change.amount,
            }],
            None => send::coins(url, net, &faucet)?,
        };
    }
    let secs = started.elapsed().as_secs_f64();
    println!("split the faucet into {count} outputs in {secs:.1} s");
    // Blocks that create thousands of outputs are heavy to apply: let them land before the
    // first step rather than in it.
    if let Some(last) = owned.last() {
        wait_final(url, &last.outpoint.txid.to_hex(), true)?;
    }
    Ok(owned)
}

/// Polls until `txid` is final at layer 1 (and, with `in_block`, in a block). Unlike
/// `send::wait_final` it retries "no such transaction": a node briefly reports that for a
/// transaction it has just accepted.
fn wait_final(url: &str, txid: &str, in_block: bool) -> Result<(), LoadError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client::call(url, "getrawtransaction", json!([txid, true]), RPC_TIMEOUT) {
            Ok(v)
                if v["instantlock"] == json!(true) && (!in_block || v["blockhash"].is_string()) =>
            {
                return Ok(())
            }
            Ok(_) => {}
            Err(ClientError::Rpc { code: -5, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            return Err(invalid(format!("split {txid}: not final in 60 s")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where a transfer's one output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PayTo {
    /// A fresh random address: the output leaves the bench.
    Random,
    /// Back to the key that spent it, so a soak can spend it again.
    Owner,
}

/// Every transfer pays this fee: they all have one shape (1 input, 1 output), and a smaller
/// amount never encodes longer, so a probe paying the whole of an output bounds their size.
fn transfer_fee(info: &LocalnetInfo) -> u64 {
    let to = TxOutput {
        amount: Amount(OUTPUT_ATOMS),
        key_hash: KeyHash([0; 20]),
    };
    let probe = OutPoint::new(Default::default(), 0);
    let tx = signed_transfer(info.network, &SecretKey::generate(), &[probe], vec![to]);
    FEE_RATE * tx.encoded_len() as u64
}

/// Signs one 1-in-1-out transfer per output, paying it on less the fee; returns (txid hex,
/// tx hex) for each.
fn sign_transfers(
    info: &LocalnetInfo,
    keys: &[SecretKey],
    outs: &[Owned],
    pay_to: PayTo,
) -> Vec<(String, String)> {
    let fee = transfer_fee(info);
    (outs.iter())
        .map(|out| {
            let key_hash = match pay_to {
                PayTo::Random => KeyHash(rand::random()),
                PayTo::Owner => keys[out.key].public_key().key_hash(),
            };
            let to = TxOutput {
                amount: Amount(out.atoms.saturating_sub(fee)),
                key_hash,
            };
            signed_transfer(info.network, &keys[out.key], &[out.outpoint], vec![to])
        })
        .map(|tx| (tx.txid().to_hex(), hex::encode(tx.to_bytes())))
        .collect()
}

/// What became of one transfer of a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Outcome {
    /// Not sent within the window: its input is still unspent.
    #[default]
    Unsent,
    Rejected,
    /// Accepted, not seen final.
    Accepted,
    Final,
}

/// What one step's threads record, under a lock (a few thousand updates a second at most).
#[derive(Default)]
struct Step {
    /// Per transfer of the step, by index.
    outcomes: Vec<Outcome>,
    offered: usize,
    accepted: usize,
    rejected: usize,
    first_error: Option<String>,
    last_sent: Option<Instant>,
    latencies_ms: Vec<f64>,
    last_final: Option<Instant>,
    poll_errors: usize,
    /// Times a node closed the finality subscription (its watcher polled meanwhile).
    watch_lost: usize,
    first_watch_error: Option<String>,
}

fn lock(step: &Mutex<Step>) -> MutexGuard<'_, Step> {
    step.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records transfer `i`'s outcome; a final one stays final (its notification can beat the
/// submit's reply).
fn set_outcome(s: &mut Step, i: usize, outcome: Outcome) {
    if let Some(o) = s.outcomes.get_mut(i) {
        if *o != Outcome::Final {
            *o = outcome;
        }
    }
}

/// POSTs a JSON-RPC request or batch on `agent`'s kept-alive connection; the parsed reply.
/// (`client::call` opens a connection per call: thousands a second leave the ephemeral ports
/// in TIME_WAIT.) Errors never quote the URL, which carries the node's cookie.
fn post(agent: &ureq::Agent, url: &str, body: Value) -> Result<Value, String> {
    match agent.post(url).send_json(body) {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => r.into_json().map_err(|_| format!("HTTP {code}")),
        Err(ureq::Error::Transport(t)) => {
            Err(format!("{}: {}", t.kind(), t.message().unwrap_or("")))
        }
    }
}

/// Sends sender `first`'s share of the transfers, each group when its last transfer is due,
/// until the window closes: every `SENDERS`-th group of `batch` consecutive transfers, from
/// group `first`, each to one node in turn. Consecutive groups go to different senders, so
/// the batches of all senders arrive spread over time as independent clients' would, not all
/// together once every sender has filled one.
fn sender(
    txs: &[(String, String)],
    first: usize,
    (rate, batch, t0, window_end): (u32, usize, Instant, Instant),
    urls: &[String],
    to_watchers: Vec<mpsc::Sender<(usize, Instant)>>,
    step: &Mutex<Step>,
) {
    let agent = ureq::AgentBuilder::new().timeout(RPC_TIMEOUT).build();
    let batch = batch.max(1);
    for g in (first..txs.len().div_ceil(batch)).step_by(SENDERS) {
        let group: Vec<usize> = (g * batch..((g + 1) * batch).min(txs.len())).collect();
        let last = g * batch + group.len() - 1;
        let due = t0 + Duration::from_nanos(last as u64 * 1_000_000_000 / u64::from(rate));
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        } else if now > window_end {
            break;
        }
        let node = node_for(g * batch, batch, urls.len());
        submit(&agent, txs, &urls[node], &group, &to_watchers[node], step);
    }
}

/// The node transfer `i` is sent to: groups of `batch` consecutive transfers go to the nodes
/// in turn.
fn node_for(i: usize, batch: usize, nodes: usize) -> usize {
    (i / batch.max(1)) % nodes.max(1)
}

/// Submits `group` to one node (a single request, or a JSON-RPC batch) and records each
/// verdict; accepted transfers go to the node's watcher.
fn submit(
    agent: &ureq::Agent,
    txs: &[(String, String)],
    url: &str,
    group: &[usize],
    watcher: &mpsc::Sender<(usize, Instant)>,
    step: &Mutex<Step>,
) {
    let request = |i: usize| json!({"jsonrpc": "2.0", "id": i, "method": "sendrawtransaction", "params": [txs[i].1]});
    let sent_at = Instant::now();
    let verdicts: Vec<(usize, Result<(), String>)> = if let [i] = group {
        let result = post(agent, url, request(*i)).and_then(|reply| match &reply["error"] {
            Value::Null => Ok(()),
            error => Err(error.to_string()),
        });
        vec![(*i, result)]
    } else {
        let body = Value::Array(group.iter().map(|i| request(*i)).collect());
        match post(agent, url, body) {
            Ok(Value::Array(replies)) => (replies.iter())
                .filter_map(|r| {
                    let i = usize::try_from(r["id"].as_u64()?).ok()?;
                    let verdict = match &r["error"] {
                        Value::Null => Ok(()),
                        error => Err(error.to_string()),
                    };
                    Some((i, verdict))
                })
                .collect(),
            Ok(other) => group.iter().map(|i| (*i, Err(other.to_string()))).collect(),
            Err(e) => group.iter().map(|i| (*i, Err(e.clone()))).collect(),
        }
    };
    let mut s = lock(step);
    s.last_sent = Some(Instant::now());
    for (i, verdict) in verdicts {
        match verdict {
            Ok(()) => {
                s.accepted += 1;
                set_outcome(&mut s, i, Outcome::Accepted);
                let _ = watcher.send((i, sent_at));
            }
            Err(e) => {
                s.rejected += 1;
                set_outcome(&mut s, i, Outcome::Rejected);
                s.first_error.get_or_insert(e);
            }
        }
    }
}

/// One step's figures: what its row of the table shows.
#[derive(Clone, Copy, Debug)]
struct Figures {
    sent_per_s: f64,
    final_per_s: f64,
    /// Latency percentiles (50, 90, 99, 100) in ms; NaN where nothing became final.
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    /// final/s as a share of the machine's limit, in percent.
    of_limit: f64,
    /// The generator's own CPU over the step, in cores: it shares the machine with the nodes.
    gen_cores: Option<f64>,
}

/// Offers `txs` at `rate` for `window`, then drains.
fn run_step(
    urls: &[String],
    txs: &[(String, String)],
    (rate, batch, window): (u32, usize, Duration),
    limit: f64,
) -> (Step, Figures) {
    let cpu_before = process::cpu_seconds(None);
    let t0 = Instant::now() + Duration::from_millis(50);
    // A little slack so a sender a few ms late still sends the step's last transfers.
    let window_end = t0 + window + Duration::from_millis(100);
    let deadline = t0 + window + DRAIN;
    let step = Mutex::new(Step {
        offered: txs.len(),
        outcomes: vec![Outcome::Unsent; txs.len()],
        ..Step::default()
    });
    let (to_watchers, receivers): (Vec<_>, Vec<_>) =
        (0..urls.len()).map(|_| mpsc::channel()).unzip();
    let index: HashMap<String, usize> = (txs.iter().enumerate())
        .map(|(i, (txid, _))| (txid.clone(), i))
        .collect();
    std::thread::scope(|scope| {
        let step = &step;
        let index = &index;
        for (node, (rx, url)) in receivers.into_iter().zip(urls).enumerate() {
            let w = watcher::Watch {
                txs,
                index,
                node,
                nodes: urls.len(),
                batch,
                url,
                deadline,
            };
            scope.spawn(move || watcher::watch(w, rx, step));
        }
        for k in 0..SENDERS {
            let to = to_watchers.clone();
            let pace = (rate, batch, t0, window_end);
            scope.spawn(move || sender(txs, k, pace, urls, to, step));
        }
        drop(to_watchers);
    });
    let mut s = step
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    s.latencies_ms.sort_by(f64::total_cmp);
    let since =
        |t: Option<Instant>| t.map_or(0.0, |t| t.saturating_duration_since(t0).as_secs_f64());
    let sent_secs = since(s.last_sent).max(window.as_secs_f64());
    let l = &s.latencies_ms;
    let pct = |q: f64| {
        let rank = (q * l.len() as f64).ceil() as usize;
        l.get(rank.max(1) - 1).copied().unwrap_or(f64::NAN)
    };
    let final_per_s = l.len() as f64 / since(s.last_final).max(1e-3);
    let gen_cores = match (cpu_before, process::cpu_seconds(None)) {
        (Some(a), Some(b)) => Some((b - a) / t0.elapsed().as_secs_f64().max(1e-3)),
        _ => None,
    };
    let figures = Figures {
        sent_per_s: s.accepted as f64 / sent_secs,
        final_per_s,
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        max: pct(1.0),
        of_limit: 100.0 * final_per_s / limit.max(1.0),
        gen_cores,
    };
    (s, figures)
}

/// Prints a step's row of the table under `HEADER`.
fn print_row((rate, batch): (u32, usize), s: &Step, f: &Figures) {
    let gen_cores = f.gen_cores.map_or("?".into(), |c| format!("{c:.2}"));
    println!(
        "{:>9} {:>5} {:>8.0} {:>8.0} {:>7} {:>7} {:>9} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.2}% {:>10}",
        rate,
        batch,
        f.sent_per_s,
        f.final_per_s,
        s.accepted,
        s.latencies_ms.len(),
        s.rejected,
        f.p50,
        f.p90,
        f.p99,
        f.max,
        f.of_limit,
        gen_cores,
    );
}

const HEADER: &str = "offered/s batch   sent/s  final/s    sent   final  rejected   p50 ms   p90 ms   p99 ms   max ms  of limit  gen cores";

fn print_notes((rate, batch): (u32, usize), s: &Step) {
    let rate = format!("{rate}/s in batches of {batch}");
    let unsent = s.offered.saturating_sub(s.accepted + s.rejected);
    let not_final = s.accepted.saturating_sub(s.latencies_ms.len());
    if let Some(e) = &s.first_error {
        println!("{rate}: {} rejected; the first: {e}", s.rejected);
    }
    if unsent > 0 {
        let offered = s.offered;
        println!("{rate}: {unsent} of {offered} not sent within the window");
    }
    if not_final > 0 {
        let drain = DRAIN.as_secs();
        println!("{rate}: {not_final} sent but not seen final by the window + {drain} s");
    }
    if s.watch_lost > 0 {
        let why = s.first_watch_error.as_deref().unwrap_or("");
        let n = s.watch_lost;
        println!(
            "{rate}: a node closed the finality subscription {n} times ({why}); polled meanwhile"
        );
    }
    if s.poll_errors > 0 {
        println!("{rate}: {} poll batches failed", s.poll_errors);
    }
}

/// Runs `timed bench`.
pub fn run(args: &BenchArgs) -> Result<(), LoadError> {
    // Every rate with every submit batch size, in that order.
    let plan: Vec<(u32, usize)> = (args.rates.iter())
        .flat_map(|r| args.batch.iter().map(move |b| (*r, *b)))
        .collect();
    if args.batch.is_empty() || args.batch.iter().any(|b| !(1..=1000).contains(b)) {
        return Err(invalid("--batch: sizes from 1 to 1000"));
    }
    // A soak spends one window's worth of outputs over and over.
    let step_ms = match args.soak {
        Some(_) if plan.len() != 1 => {
            return Err(invalid("--soak takes one rate and one --batch size"))
        }
        Some(_) => args.sample_every,
        None => args.duration,
    };
    let per_step: Vec<u64> = (plan.iter())
        .map(|(r, _)| (u64::from(*r) * step_ms / 1000).max(1))
        .collect();
    let total = per_step.iter().sum::<u64>() as usize;
    if args.rates.is_empty() || args.rates.contains(&0) || total as u64 > MAX_TRANSFERS {
        let most = format!("at most {MAX_TRANSFERS} transfers in all");
        return Err(invalid(format!("--rates: positive, {most}")));
    }
    let (mut guard, info) = match (&args.localnet, args.start) {
        (Some(dir), _) => (None, read_localnet(dir)?),
        (None, Some(n)) => {
            let (g, i) = start_localnet(n)?;
            (Some(g), i)
        }
        (None, None) => return Err(invalid("give --localnet DIR or --start N")),
    };
    if info.nodes.is_empty() {
        return Err(invalid("the localnet has no nodes"));
    }
    // Each URL carries the node's cookie credentials (HTTP Basic), read once now.
    let urls = (info.nodes.iter())
        .map(|n| client::with_cookie(&n.rpc_url, &n.rpc_cookie))
        .collect::<Result<Vec<String>, _>>()?;
    let keys: Vec<SecretKey> = (0..OWNER_KEYS).map(|_| SecretKey::generate()).collect();
    let outputs = split_funds(&info, &urls[0], &keys, total)?;
    println!(
        "{} nodes, {step_ms} ms per {}, {SENDERS} senders; finality seen through each node's \
         finality subscription",
        urls.len(),
        if args.soak.is_some() {
            "window"
        } else {
            "rate"
        },
    );
    let limit = machine_limit::measure(urls.len());
    print_limit(&limit, urls.len());
    if let Some(soak_ms) = args.soak {
        let plan = soak::Plan {
            rate: args.rates[0],
            batch: args.batch[0],
            window: Duration::from_millis(args.sample_every),
            length: Duration::from_millis(soak_ms),
            csv: args.csv.clone(),
        };
        soak::run(&info, &urls, &keys, outputs, &plan, &limit)?;
    } else {
        println!("\n{HEADER}");
        let mut steps = Vec::new();
        let mut next = 0;
        for (&(rate, batch), n) in plan.iter().zip(per_step.iter().map(|n| *n as usize)) {
            let txs = sign_transfers(&info, &keys, &outputs[next..next + n], PayTo::Random);
            next += n;
            let window = Duration::from_millis(args.duration);
            let (step, figures) =
                run_step(&urls, &txs, (rate, batch, window), limit.transfers_per_sec);
            print_row((rate, batch), &step, &figures);
            steps.push(((rate, batch), step));
        }
        println!();
        steps.iter().for_each(|(step, s)| print_notes(*step, s));
    }
    if let Some(g) = guard.as_mut() {
        g.remove_dir = true;
    }
    Ok(())
}

fn print_limit(limit: &machine_limit::MachineLimit, nodes: usize) {
    println!(
        "machine limit, measured now on {} threads: sign {:.0}/s, batch verify {:.0}/s; the \
         cryptography alone allows {:.0} transfers/s here (1 signature + {} verifications \
         each); last column: final/s as a share of it",
        limit.threads, limit.signs_per_sec, limit.verifies_per_sec, limit.transfers_per_sec, nodes
    );
}
