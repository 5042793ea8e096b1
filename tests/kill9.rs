//! kill -9 under load: a 4-node localnet of real `timed` processes takes a steady stream of
//! transfers while a seeded random node is SIGKILLed at random moments and restarted, again
//! and again. After every restart the database opens, every transfer any node ever reported
//! final is final on every node, all nodes hold the same block and UTXO-set commitment at
//! every height, and each node's live UTXO set matches the commitment of its tip.
//!
//! ```text
//! load thread ─sendrawtransaction (random live node)─► nodes ─getrawtransaction─► "final" list
//! kill loop: pick node + moment (random, right after a block, mid-backup, mid-catch-up)
//!   ─► SIGKILL ─► restart ─► check: opens, catches up, finals final everywhere,
//!                                   block hash + commitment agree per height
//! ```
//!
//! `TIMED_KILL9_CYCLES` sets the cycle count of the long run, `TIMED_KILL9_SEED` replays a run
//! (each run prints its seed). The load's timing is not seeded, only which node dies and when.

mod cluster;

use cluster::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use timed::localnet::LocalnetInfo;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Canonical, OutPoint, SecretKey, TxOutput};

const CYCLES_ENV: &str = "TIMED_KILL9_CYCLES";
const SEED_ENV: &str = "TIMED_KILL9_SEED";
/// Transfers offered per second, all the time.
const RATE: u64 = 20;
/// Coins the faucet is split into; each transfer spends one and its output comes back once
/// final, so this bounds the transfers in flight.
const COINS: usize = 200;
const COIN_ATOMS: u64 = 100_000_000;
const FEE: u64 = 10_000;
/// A transfer not seen final this long after it was sent is sent again (same bytes, so the
/// same txid) to another node: the one it went to may have died holding it.
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Blocks the others go on while a node is down before a catch-up kill.
const CATCH_UP_GAP: u64 = 10;
const BATCH: usize = 1_000;

#[test]
fn kill9_under_load_a_few_times() {
    run(4, seed());
}

#[test]
#[ignore = "long (7 to 15 minutes): TIMED_KILL9_CYCLES=100 cargo test --test kill9 -- --ignored --nocapture"]
fn kill9_under_load_a_hundred_times() {
    let cycles = std::env::var(CYCLES_ENV)
        .ok()
        .map(|c| c.parse().expect("TIMED_KILL9_CYCLES: a number"))
        .unwrap_or(100);
    run(cycles, seed());
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().expect("TIMED_KILL9_SEED: a number"),
        Err(_) => rand::random(),
    }
}

/// Where and when a kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// Anywhere in the next two seconds: mostly mid vote batch, under this load.
    Random,
    /// Within 100 ms of the node's height moving: during or right after a block commit.
    AfterBlock,
    /// While `timed backup` reads the node's database.
    DuringBackup,
    /// Down while the others go on, restarted, and killed again while it syncs blocks.
    DuringCatchUp,
    /// A fifth, non-voting node wiped and fast-synced, killed while it fetches the headers
    /// and the UTXO snapshot or installs it.
    DuringFastSync,
}

const MOMENTS: [Moment; 5] = [
    Moment::Random,
    Moment::AfterBlock,
    Moment::DuringBackup,
    Moment::DuringCatchUp,
    Moment::DuringFastSync,
];

fn run(cycles: usize, seed: u64) {
    println!("kill9: {cycles} cycles, seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = TestDir::new();
    let dir = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let mut nodes = LiveNode::all(&info);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let load = Load::start(&info, &urls);
    wait_for("the load to get going", || {
        (load.finals.lock().unwrap().len() >= 20).then_some(())
    });

    let mut syncer = Syncer::new(&info, &dir);
    let mut checks = Checks::default();
    let mut counts = [0usize; MOMENTS.len()];
    let (mut backups_hit, mut installs_hit) = (0, 0);
    for cycle in 0..cycles {
        let victim = rng.gen_range(0..nodes.len());
        let moment = MOMENTS[rng.gen_range(0..MOMENTS.len())];
        counts[MOMENTS.iter().position(|m| *m == moment).unwrap()] += 1;
        let others: Vec<usize> = (0..nodes.len()).filter(|i| *i != victim).collect();
        if moment == Moment::DuringFastSync {
            // Far enough ahead that the syncer takes a snapshot rather than the blocks.
            wait_for("a chain worth a snapshot", || {
                (height(&nodes[victim].url)? >= 30).then_some(())
            });
            let reported = load.finals.lock().unwrap().len();
            installs_hit +=
                usize::from(syncer.kill_during_install(&mut rng, cycle, reported, &mut procs));
            let finals = load.finals.lock().unwrap().clone();
            checks.verify(&nodes, usize::MAX, &finals);
            syncer.verify(&nodes, &finals, &checks);
            println!(
                "kill9 cycle {}/{cycles}: the fast-syncing node killed; after its restart it \
                 holds the certified state and follows the chain",
                cycle + 1,
            );
            continue;
        }
        match moment {
            Moment::Random => {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..2_000)));
                kill(&nodes[victim]);
            }
            Moment::AfterBlock => {
                let h = wait_for("the victim's height", || height(&nodes[victim].url));
                wait_for("a block on the victim", || {
                    (height(&nodes[victim].url)? > h).then_some(())
                });
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
                kill(&nodes[victim]);
            }
            Moment::DuringBackup => {
                let mut backup = start_backup(&nodes[victim], cycle);
                // A backup of this small database takes tens of milliseconds.
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
                if matches!(backup.try_wait(), Ok(None)) {
                    backups_hit += 1;
                }
                kill(&nodes[victim]);
                // The backup ends, with or without its node: it never hangs.
                wait_exit(&mut backup, "timed backup to end after its node died");
            }
            Moment::DuringCatchUp => {
                kill(&nodes[victim]);
                let h = wait_for("a height", || height(&nodes[others[0]].url));
                wait_for("the others to go on", || {
                    (height(&nodes[others[0]].url)? >= h + CATCH_UP_GAP).then_some(())
                });
                restart(&mut nodes[victim], cycle, "catchup", &mut procs);
                wait_ready(&nodes[victim]);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
                kill(&nodes[victim]);
            }
            Moment::DuringFastSync => unreachable!("handled above"),
        }
        restart(&mut nodes[victim], cycle, "restart", &mut procs);
        wait_ready(&nodes[victim]);
        let finals = load.finals.lock().unwrap().clone();
        checks.verify(&nodes, victim, &finals);
        syncer.verify(&nodes, &finals, &checks);
        println!(
            "kill9 cycle {}/{cycles}: node {victim} killed ({moment:?}); {} transfers final, \
             all final on all nodes; chains and commitments agree up to height {}",
            cycle + 1,
            finals.len(),
            checks.chain.len()
        );
    }
    let sent = load.sent.load(Ordering::Relaxed);
    let finals = load.stop();
    // The last word: everything final so far, on every node, after the last restart.
    checks.checked = vec![0; nodes.len()];
    checks.verify(&nodes, usize::MAX, &finals);
    syncer.verify(&nodes, &finals, &checks);
    println!(
        "kill9 done: seed {seed}, {cycles} kills (random {}, after a block {}, during a backup {} \
         [{backups_hit} while it ran], during catch-up {}, during a fast sync {} \
         [{installs_hit} before it was done]), {sent} transfers offered, {} reported final \
         (with the faucet's split), 0 lost; {} heights agree on all nodes",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        finals.len(),
        checks.chain.len()
    );
}

/// The run's directory, kept (and named) when the test fails, for the nodes' logs.
/// SIGKILL, then wait until the process is gone (its database lock with it).
fn kill(node: &LiveNode) {
    signal(node.pid, "-9");
    wait_for("the killed node to be gone", || {
        process_gone(node.pid).then_some(())
    });
}

fn restart(node: &mut LiveNode, cycle: usize, what: &str, procs: &mut Procs) {
    node.restart(&format!("kill9-{cycle}-{what}.log"), &[], procs);
}

/// Waits until the restarted node answers RPC: its database opened. Fails at once, with the
/// log, if it exits instead.
fn wait_ready(node: &LiveNode) {
    wait_for("the restarted node to answer", || {
        assert!(
            !process_gone(node.pid),
            "node {} exited after a restart:\n{}",
            node.url,
            log_tail(&node.log, 30)
        );
        height(&node.url)
    });
}

fn start_backup(node: &LiveNode, cycle: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .arg("--config")
        .arg(&node.config)
        .args(["backup", "--to"])
        .arg(format!("kill9-{cycle}.tbak"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start timed backup")
}

/// A full node (no vote) that joins by fast sync: wiped, started, and killed while it
/// fetches or installs the snapshot; after its restart it must hold the certified state and
/// follow every transfer made final from then on. (Below its snapshot it holds no blocks
/// and no transactions, by design: the UTXO commitment covers them.)
struct Syncer {
    node: LiveNode,
    db: PathBuf,
    running: bool,
    /// How many of the final transfers were seen final on it (or were reported before it
    /// was last wiped).
    checked: usize,
}

impl Syncer {
    fn new(info: &LocalnetInfo, dir: &std::path::Path) -> Syncer {
        let port = free_base_port(1);
        let (config, url) = extra_node(
            dir,
            "syncer",
            &info.genesis,
            port,
            &info.nodes[0].p2p_addr,
            "fast_sync_after = 10",
        );
        Syncer {
            node: LiveNode {
                url,
                metrics_url: String::new(),
                config: config.clone(),
                key: String::new(),
                pid: 0,
                log: PathBuf::new(),
            },
            db: config.with_file_name("db"),
            running: false,
            checked: 0,
        }
    }

    /// Wipes and starts the node, kills it at a fast-sync step, starts it again; whether the
    /// kill came before the install was done.
    fn kill_during_install(
        &mut self,
        rng: &mut StdRng,
        cycle: usize,
        reported: usize,
        procs: &mut Procs,
    ) -> bool {
        if self.running {
            kill(&self.node);
        }
        match std::fs::remove_dir_all(&self.db) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("wipe the db: {e}"),
            _ => {}
        }
        self.checked = reported;
        restart(&mut self.node, cycle, "fastsync", procs);
        let step = ["fast sync: downloading", "fast sync: headers verified"][rng.gen_range(0..2)];
        // Polled tightly: a snapshot of this size is fetched and installed in milliseconds.
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.node.log).unwrap_or_default();
            if log.contains(step) {
                break;
            }
            assert!(
                !process_gone(self.node.pid) && start.elapsed() < DEADLINE,
                "the syncer never logged {step:?}:\n{}",
                log_tail(&self.node.log, 30)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..10)));
        kill(&self.node);
        let log = std::fs::read_to_string(&self.node.log).unwrap_or_default();
        let before_done = !log.contains("fast sync done");
        restart(&mut self.node, cycle, "after-fastsync", procs);
        wait_ready(&self.node);
        self.running = true;
        before_done
    }

    fn verify(&mut self, nodes: &[LiveNode], finals: &[String], checks: &Checks) {
        if !self.running {
            return;
        }
        let target = (nodes.iter().filter_map(|n| height(&n.url)).max()).expect("a live node");
        wait_for("the syncer to catch up", || {
            (height(&self.node.url)? >= target).then_some(())
        });
        tip_matches_utxo_set(&self.node.url);
        // From the first height it holds (its snapshot's, or 1) to where all agree.
        let top = (checks.chain.len() as u64).min(height(&self.node.url).unwrap_or(0));
        let params: Vec<Value> = (1..=top).map(|h| json!([h])).collect();
        let mut held = Vec::new();
        for chunk in params.chunks(BATCH) {
            held.extend(call_batch(&self.node.url, "getblockhash", chunk).expect("getblockhash"));
        }
        let first = held.iter().position(|h| h.is_ok()).unwrap_or(held.len());
        for (i, h) in held.iter().enumerate().skip(first) {
            let hash = h.clone().expect("every height above the snapshot's");
            assert_eq!(
                hash.as_str(),
                Some(checks.chain[i].0.as_str()),
                "the syncer disagrees at height {}",
                i + 1
            );
        }
        // Transfers in blocks up to its snapshot are in its UTXO set, not its index: keep
        // those a node with every block places above the snapshot, or in no block yet.
        let base = if first == 0 { 0 } else { first as u64 + 1 };
        let params: Vec<Value> = (finals[self.checked..].iter())
            .map(|t| json!([t, true]))
            .collect();
        let mut above = Vec::new();
        for (chunk, txids) in params
            .chunks(BATCH)
            .zip(finals[self.checked..].chunks(BATCH))
        {
            let replies = call_batch(&nodes[0].url, "getrawtransaction", chunk)
                .expect("getrawtransaction batch");
            for (txid, reply) in txids.iter().zip(replies) {
                let at = reply.expect("a final transfer")["blockheight"].as_u64();
                if at.is_none_or(|h| h > base) {
                    above.push(txid.clone());
                }
            }
        }
        all_final(&self.node.url, &above);
        self.checked = finals.len();
    }
}

/// What has been verified so far.
#[derive(Default)]
struct Checks {
    /// (block hash, UTXO commitment) by height - 1, as the first node asked reported them.
    chain: Vec<(String, String)>,
    /// Per node: how many of the final transfers were seen final there.
    checked: Vec<usize>,
    /// Per node: the height up to which its chain was compared.
    compared: Vec<u64>,
}

impl Checks {
    fn verify(&mut self, nodes: &[LiveNode], victim: usize, finals: &[String]) {
        self.checked.resize(nodes.len(), 0);
        self.compared.resize(nodes.len(), 0);
        // The restarted node catches up with where the others are now.
        let target = (0..nodes.len())
            .filter(|i| *i != victim)
            .filter_map(|i| height(&nodes[i].url))
            .max()
            .expect("a live node");
        if let Some(v) = nodes.get(victim) {
            wait_for("the restarted node to catch up", || {
                (height(&v.url)? >= target).then_some(())
            });
            // Everything it had before dying is checked again, not only what is new.
            self.checked[victim] = 0;
            self.compared[victim] = 0;
        }
        for (i, node) in nodes.iter().enumerate() {
            all_final(&node.url, &finals[self.checked[i]..]);
            self.checked[i] = finals.len();
        }
        let top = (nodes.iter())
            .map(|n| wait_for("a height", || height(&n.url)))
            .min()
            .unwrap_or(0);
        for (i, node) in nodes.iter().enumerate() {
            self.compare_chain(&node.url, self.compared[i] + 1, top);
            self.compared[i] = top;
            tip_matches_utxo_set(&node.url);
        }
    }

    /// Block hash and header UTXO commitment at each height in `from..=to` on `url` equal
    /// what the other nodes reported there.
    fn compare_chain(&mut self, url: &str, from: u64, to: u64) {
        let heights: Vec<u64> = (from..=to).collect();
        for chunk in heights.chunks(BATCH) {
            let params: Vec<Value> = chunk.iter().map(|h| json!([h])).collect();
            let hashes = call_batch(url, "getblockhash", &params).expect("getblockhash batch");
            let params: Vec<Value> = (hashes.iter())
                .map(|h| json!([h.clone().expect("a block hash at a height below the tip")]))
                .collect();
            let headers = call_batch(url, "getblockheader", &params).expect("getblockheader batch");
            for ((h, hash), header) in chunk.iter().zip(&params).zip(headers) {
                let header = header.expect("the header of a block");
                let got = (
                    hash[0].as_str().unwrap_or_default().to_string(),
                    header["utxocommitment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                let index = (*h - 1) as usize;
                if let Some(want) = self.chain.get(index) {
                    assert_eq!(&got, want, "{url} disagrees at height {h}");
                } else {
                    assert_eq!(index, self.chain.len(), "heights compared in order");
                    self.chain.push(got);
                }
            }
        }
    }
}

/// Every one of `txids` is final on `url` (waiting: a node that was down learns the newest
/// from the blocks that carry them).
fn all_final(url: &str, txids: &[String]) {
    let mut missing: Vec<String> = txids.to_vec();
    let start = Instant::now();
    while !missing.is_empty() {
        let mut still = Vec::new();
        let mut first_reply = None;
        for chunk in missing.chunks(BATCH) {
            let params: Vec<Value> = chunk.iter().map(|t| json!([t, true])).collect();
            match call_batch(url, "getrawtransaction", &params) {
                Ok(replies) => {
                    for (t, r) in chunk.iter().zip(replies) {
                        if !r.as_ref().is_ok_and(|v| v["instantlock"] == json!(true)) {
                            still.push(t.clone());
                            first_reply.get_or_insert(r);
                        }
                    }
                }
                Err(e) => {
                    still.extend_from_slice(chunk);
                    first_reply.get_or_insert(Err(json!(e)));
                }
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} transfers reported final are not final on {url}, e.g. {:?}: {:?}",
            still.len(),
            still.first(),
            first_reply.map(|r| r.map(|mut v| {
                v["hex"] = json!("...");
                v
            }))
        );
        if !still.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        missing = still;
    }
}

/// The node's live UTXO set has the commitment its best block's header certifies.
fn tip_matches_utxo_set(url: &str) {
    wait_for(&format!("{url}'s UTXO set to match its tip"), || {
        let chain = call(url, "getblockchaininfo", json!([])).ok()?;
        let tip = call(url, "getblockheader", json!([chain["bestblockhash"]])).ok()?;
        (tip["utxocommitment"] == chain["utxocommitment"]).then_some(())
    });
}

/// The steady load: `RATE` transfers a second to random nodes, and the list of those any
/// node has reported final.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    finals: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// A signed transfer not yet seen final.
struct InFlight {
    txid: String,
    hex: String,
    out: (OutPoint, u64),
    sent_at: Instant,
}

impl Load {
    fn start(info: &LocalnetInfo, urls: &[String]) -> Load {
        let (faucet, from, have) = faucet_coins(info, &urls[0]);
        let owner = SecretKey::generate();
        let mut outputs: Vec<TxOutput> = (0..COINS)
            .map(|_| TxOutput {
                amount: Amount(COIN_ATOMS),
                key_hash: owner.public_key().key_hash(),
            })
            .collect();
        outputs.push(TxOutput {
            amount: Amount(have - COINS as u64 * COIN_ATOMS - 10 * FEE),
            key_hash: faucet.public_key().key_hash(),
        });
        let split = signed_transfer(NET, &faucet, &[from], outputs);
        let split_id = split.txid();
        call(
            &urls[0],
            "sendrawtransaction",
            json!([hex::encode(split.to_bytes())]),
        )
        .expect("the split is accepted");
        wait_final_and_confirmed(&urls[0], &split_id.to_hex());
        let coins: VecDeque<(OutPoint, u64)> = (0..COINS as u32)
            .map(|i| (OutPoint::new(split_id, i), COIN_ATOMS))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let finals = Arc::new(Mutex::new(vec![split_id.to_hex()]));
        let thread = {
            let (stop, sent, finals) = (stop.clone(), sent.clone(), finals.clone());
            let urls = urls.to_vec();
            std::thread::spawn(move || load(&urls, owner, coins, (&stop, &sent, &finals)))
        };
        Load {
            stop,
            sent,
            finals,
            thread: Some(thread),
        }
    }

    /// Stops the load; the transfers reported final.
    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the load thread");
        }
        self.finals.lock().unwrap().clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn load(
    urls: &[String],
    owner: SecretKey,
    mut coins: VecDeque<(OutPoint, u64)>,
    (stop, sent, finals): (&AtomicBool, &AtomicU64, &Mutex<Vec<String>>),
) {
    let mut rng = StdRng::from_entropy();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let every = Duration::from_nanos(1_000_000_000 / RATE);
    let mut next = Instant::now();
    let mut last_poll = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some((op, have)) = coins.pop_front() {
            let tx = signed_transfer(
                NET,
                &owner,
                &[op],
                vec![TxOutput {
                    amount: Amount(have - FEE),
                    key_hash: owner.public_key().key_hash(),
                }],
            );
            let f = InFlight {
                txid: tx.txid().to_hex(),
                hex: hex::encode(tx.to_bytes()),
                out: (OutPoint::new(tx.txid(), 0), have - FEE),
                sent_at: Instant::now(),
            };
            submit(&urls[rng.gen_range(0..urls.len())], &f.hex);
            sent.fetch_add(1, Ordering::Relaxed);
            in_flight.push(f);
        }
        if last_poll.elapsed() >= Duration::from_millis(250) {
            last_poll = Instant::now();
            let url = &urls[rng.gen_range(0..urls.len())];
            let params: Vec<Value> = in_flight.iter().map(|f| json!([f.txid, true])).collect();
            for chunk_start in (0..params.len()).step_by(BATCH).rev() {
                let end = (chunk_start + BATCH).min(params.len());
                let Ok(replies) = call_batch(url, "getrawtransaction", &params[chunk_start..end])
                else {
                    continue;
                };
                for (k, r) in replies.into_iter().enumerate().rev() {
                    if r.is_ok_and(|v| v["instantlock"] == json!(true)) {
                        let f = in_flight.swap_remove(chunk_start + k);
                        finals.lock().unwrap().push(f.txid);
                        coins.push_back(f.out);
                    }
                }
            }
            for f in in_flight.iter_mut() {
                if f.sent_at.elapsed() >= RESEND_AFTER {
                    f.sent_at = Instant::now();
                    submit(&urls[rng.gen_range(0..urls.len())], &f.hex);
                }
            }
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Offers a transfer to one node. A dead node does not take it, nor one that already has
/// it: a transfer not final in time is offered again elsewhere.
fn submit(url: &str, hex: &str) {
    let _ = call(url, "sendrawtransaction", json!([hex]));
}
