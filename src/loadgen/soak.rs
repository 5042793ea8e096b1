//! `timed bench --soak`: one steady rate for a long time (an hour, a day), to see whether
//! anything grows that should not — memory, open files, the database, latency.
//!
//! ```text
//! one window's worth of outputs ─sign (pay back to the owner)─► run_step (offer, drain)
//!        ▲                                                         │
//!        └── outputs of the transfers seen final, unsent ones kept ┤
//!                                                                  ▼
//!            each node: RSS, open files, db bytes, CPU ◄── sample ── row (stdout, --csv)
//! ```
//!
//! Each transfer pays its input, less the fee, back to the key that owns it, so the same
//! coins go round and the UTXO set stays the size it started at: what grows is what the node
//! keeps (blocks, indexes), not the bench's own outputs. A transfer that was accepted but not
//! seen final within the window and its drain is dropped from the round (its output's state is
//! unknown); unsent and rejected ones are signed again (the same bytes: signing is
//! deterministic). Windows run back to back; each row's latency percentiles are the window's
//! own, its node figures a sample taken as the window ends.

use super::{
    machine_limit::MachineLimit, process, run_step, sign_transfers, transfer_fee, Figures,
    LoadError, Outcome, Owned, PayTo,
};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use timed::localnet::LocalnetInfo;
use timed::types::{Hash32, OutPoint, SecretKey};

/// What to run.
pub(super) struct Plan {
    pub rate: u32,
    pub batch: usize,
    /// The span of one row: its transfers are offered over it, then drained.
    pub window: Duration,
    /// Windows start until this much time has passed.
    pub length: Duration,
    pub csv: Option<PathBuf>,
}

/// One node's use of the machine, sampled at the end of a window.
#[derive(Clone, Copy, Debug, Default)]
struct NodeSample {
    rss_mb: Option<f64>,
    open_files: Option<usize>,
    db_mb: Option<f64>,
    /// CPU since the previous sample, in cores.
    cpu_cores: Option<f64>,
}

const MB: f64 = 1024.0 * 1024.0;

/// Runs the soak; the coins come from `split_funds`, one per transfer of a window.
pub(super) fn run(
    info: &LocalnetInfo,
    urls: &[String],
    keys: &[SecretKey],
    mut coins: Vec<Owned>,
    plan: &Plan,
    limit: &MachineLimit,
) -> Result<(), LoadError> {
    let fee = transfer_fee(info);
    let mut csv = match &plan.csv {
        Some(path) => {
            let mut file = std::fs::File::create(path).map_err(super::io(path))?;
            writeln!(file, "{}", csv_header(info.nodes.len())).map_err(super::io(path))?;
            Some((path, file))
        }
        None => None,
    };
    let (rate, mins) = (plan.rate, plan.length.as_secs_f64() / 60.0);
    println!("\nsoak: {rate} transfers/s for {mins:.0} min, a row per window");
    println!("{HEADER}");
    let started = Instant::now();
    let mut cpu_seen: Vec<(Option<f64>, Instant)> = (info.nodes.iter())
        .map(|n| (n.pid.and_then(|p| process::cpu_seconds(Some(p))), started))
        .collect();
    let (mut final_total, mut unseen_total) = (0usize, 0usize);
    while started.elapsed() < plan.length && !coins.is_empty() {
        let txs = sign_transfers(info, keys, &coins, PayTo::Owner);
        let pace = (plan.rate, plan.batch, plan.window);
        let (step, figures) = run_step(urls, &txs, pace, limit.transfers_per_sec);
        let samples: Vec<NodeSample> = (info.nodes.iter().zip(&mut cpu_seen))
            .map(|(node, cpu)| sample(node.pid, &node.datadir.join("db"), cpu))
            .collect();
        let elapsed = started.elapsed().as_secs_f64();
        let finals = step.latencies_ms.len();
        let unseen = (step.outcomes.iter())
            .filter(|o| **o == Outcome::Accepted)
            .count();
        final_total += finals;
        unseen_total += unseen;
        print_row(elapsed, &figures, step.rejected, &samples);
        if let Some((path, file)) = csv.as_mut() {
            let row = csv_row(elapsed, plan.rate, &figures, step.rejected, &samples);
            writeln!(file, "{row}").map_err(super::io(path))?;
            file.flush().map_err(super::io(path))?;
        }
        coins = next_round(&coins, &txs, &step.outcomes, fee);
    }
    println!(
        "\nsoak done after {:.0} s: {final_total} transfers final, {unseen_total} accepted but \
         not seen final within their window and drain",
        started.elapsed().as_secs_f64()
    );
    if coins.is_empty() {
        println!("soak stopped early: no coins left to spend");
    }
    Ok(())
}

/// The coins for the next window: each final transfer's output, and the inputs of those not
/// sent or refused.
fn next_round(
    coins: &[Owned],
    txs: &[(String, String)],
    outcomes: &[Outcome],
    fee: u64,
) -> Vec<Owned> {
    (coins.iter().zip(txs).zip(outcomes))
        .filter_map(|((coin, (txid, _)), outcome)| match outcome {
            Outcome::Final => Some(Owned {
                key: coin.key,
                outpoint: OutPoint::new(Hash32::from_hex(txid).ok()?, 0),
                atoms: coin.atoms.saturating_sub(fee),
            }),
            Outcome::Unsent | Outcome::Rejected => Some(*coin),
            Outcome::Accepted => None,
        })
        // A coin too small to pay another fee leaves the round.
        .filter(|c| c.atoms > 2 * fee)
        .collect()
}

/// Samples one node now; `cpu` holds its CPU seconds and the time at the previous sample.
fn sample(pid: Option<u32>, db: &std::path::Path, cpu: &mut (Option<f64>, Instant)) -> NodeSample {
    let now = Instant::now();
    let cpu_now = pid.and_then(|p| process::cpu_seconds(Some(p)));
    let secs = now.saturating_duration_since(cpu.1).as_secs_f64().max(1e-3);
    let cpu_cores = match (cpu.0, cpu_now) {
        (Some(a), Some(b)) => Some((b - a) / secs),
        _ => None,
    };
    *cpu = (cpu_now, now);
    NodeSample {
        rss_mb: pid.and_then(process::rss_bytes).map(|b| b as f64 / MB),
        open_files: pid.and_then(process::open_files),
        db_mb: process::dir_bytes(db).map(|b| b as f64 / MB),
        cpu_cores,
    }
}

const HEADER: &str = "  min  final/s rejected   p50 ms   p90 ms   p99 ms   max ms  gen cores  \
                      node RSS MB      open files       db MB          CPU cores";

fn print_row(elapsed: f64, f: &Figures, rejected: usize, nodes: &[NodeSample]) {
    let each = |field: &dyn Fn(&NodeSample) -> String| {
        nodes.iter().map(field).collect::<Vec<_>>().join("/")
    };
    let num = |v: Option<f64>, digits: usize| v.map_or("?".into(), |v| format!("{v:.digits$}"));
    println!(
        "{:>5.1} {:>8.0} {:>8} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>10}  {}  {}  {}  {}",
        elapsed / 60.0,
        f.final_per_s,
        rejected,
        f.p50,
        f.p90,
        f.p99,
        f.max,
        num(f.gen_cores, 2),
        each(&|n| num(n.rss_mb, 0)),
        each(&|n| n.open_files.map_or("?".into(), |k| k.to_string())),
        each(&|n| num(n.db_mb, 0)),
        each(&|n| num(n.cpu_cores, 2)),
    );
}

fn csv_header(nodes: usize) -> String {
    let mut columns: Vec<String> = [
        "elapsed_s",
        "offered_per_s",
        "sent_per_s",
        "final_per_s",
        "rejected",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "gen_cores",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    for i in 0..nodes {
        for what in ["rss_mb", "open_files", "db_mb", "cpu_cores"] {
            columns.push(format!("node{i}_{what}"));
        }
    }
    columns.join(",")
}

/// A CSV row; an unknown figure is an empty cell.
fn csv_row(elapsed: f64, rate: u32, f: &Figures, rejected: usize, nodes: &[NodeSample]) -> String {
    let cell = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or(String::new(), |v| format!("{v:.3}"))
    };
    let mut cells = vec![
        format!("{elapsed:.1}"),
        rate.to_string(),
        cell(Some(f.sent_per_s)),
        cell(Some(f.final_per_s)),
        rejected.to_string(),
        cell(Some(f.p50)),
        cell(Some(f.p90)),
        cell(Some(f.p99)),
        cell(Some(f.max)),
        cell(f.gen_cores),
    ];
    for n in nodes {
        cells.push(cell(n.rss_mb));
        cells.push(n.open_files.map_or(String::new(), |k| k.to_string()));
        cells.push(cell(n.db_mb));
        cells.push(cell(n.cpu_cores));
    }
    cells.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coin(key: usize, atoms: u64) -> Owned {
        Owned {
            key,
            outpoint: OutPoint::new(Hash32([key as u8; 32]), 7),
            atoms,
        }
    }

    #[test]
    fn final_transfers_go_round_and_unknown_ones_leave() {
        let coins = [
            coin(1, 1_000),
            coin(2, 1_000),
            coin(3, 1_000),
            coin(4, 1_000),
        ];
        let txid = |b: u8| Hash32([b; 32]).to_hex();
        let txs: Vec<(String, String)> = (10..14).map(|b| (txid(b), String::new())).collect();
        let outcomes = [
            Outcome::Final,
            Outcome::Accepted,
            Outcome::Rejected,
            Outcome::Unsent,
        ];
        let next = next_round(&coins, &txs, &outcomes, 100);
        assert_eq!(next.len(), 3);
        assert_eq!(next[0].key, 1);
        assert_eq!(next[0].outpoint, OutPoint::new(Hash32([10; 32]), 0));
        assert_eq!(next[0].atoms, 900);
        assert_eq!((next[1].key, next[1].atoms), (3, 1_000));
        assert_eq!(next[1].outpoint, coins[2].outpoint);
        assert_eq!(next[2].outpoint, coins[3].outpoint);
        // A coin that could not pay two more fees leaves.
        let next = next_round(&[coin(1, 250)], &txs[..1], &[Outcome::Final], 100);
        assert!(next.is_empty());
    }

    #[test]
    fn csv_rows_have_a_cell_per_column_and_blank_unknowns() {
        let f = Figures {
            sent_per_s: 100.0,
            final_per_s: 99.5,
            p50: 12.0,
            p90: f64::NAN,
            p99: 30.0,
            max: 31.0,
            of_limit: 1.0,
            gen_cores: None,
        };
        let nodes = [
            NodeSample {
                rss_mb: Some(40.0),
                open_files: Some(55),
                db_mb: Some(3.5),
                cpu_cores: Some(0.25),
            },
            NodeSample::default(),
        ];
        let header = csv_header(2);
        let row = csv_row(60.0, 100, &f, 0, &nodes);
        assert_eq!(header.split(',').count(), row.split(',').count());
        assert!(row.starts_with("60.0,100,100.000,99.500,0,12.000,,30.000,31.000,,40.000,55,"));
        assert!(row.ends_with(",,,,"), "{row}");
        assert!(header.ends_with("node1_cpu_cores"));
    }
}
