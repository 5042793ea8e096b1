//! Layer-1 finality as the network grows (issue 15): the real drivers in the seeded
//! simulation, over a WAN of five regions with one CPU and one uplink per node
//! (`tests/sim/wan.rs`). SCALING.md's figures.
//!
//! `cargo test --test scaling` runs a small world as a smoke. The figures and plots:
//! `cargo test --release --test scaling scaling_figures -- --ignored --nocapture`, with
//! `TIMED_SCALE_NODES=4,10,30,100 TIMED_SCALE_RATES=100,5000 TIMED_SCALE_SECONDS=1` (the
//! defaults) and `TIMED_SCALE_OUT=benches/scaling`: it writes `figures.csv` and the SVG plots
//! there and prints SCALING.md's table. The plots draw `figures-step1.csv` of the same
//! directory behind the new figures, faint (step 1's measurement, all-to-all at every size).

mod sim;

use sim::wan::Figures;
use sim::{Scenario, Sim};
use std::fmt::Write as _;
use std::path::Path;

/// Virtual time a run may take after the load to finish what it started.
const DRAIN_MS: u64 = 30_000;

fn measure(nodes: usize, rate: usize, seconds: u64) -> Figures {
    // `TIMED_SCALE_SLOT_VOTERS=<n>`: the slot engine from n voters (0: never, the all-to-all
    // engine at every size; the node's default otherwise), to compare the two back to back.
    let slot_voters = std::env::var("TIMED_SCALE_SLOT_VOTERS")
        .ok()
        .and_then(|s| s.parse().ok());
    measure_with(nodes, rate, seconds, slot_voters)
}

fn measure_with(nodes: usize, rate: usize, seconds: u64, slot_voters: Option<usize>) -> Figures {
    let mut sc = Scenario::world(nodes as u64 * 1_000 + rate as u64, nodes, rate, seconds);
    if let Some(v) = slot_voters {
        sc.slot_engine_voters = v;
    }
    // `TIMED_SCALE_ADMISSION_FLOOR=<n>`: pools take n local submits whatever the recent
    // finality rate, so a burst from a cold network measures the engine rather than the
    // admission control's ramp (which refuses most of a first second at 5,000 tx/s).
    if let Some(floor) = std::env::var("TIMED_SCALE_ADMISSION_FLOOR")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        sc.admission_floor = floor;
    }
    // `TIMED_SCALE_FANOUT=<n>`: how many voters each node passes a slot's batch to (the
    // node's 32 unless told; at or above the set's size the aggregator sends it to every
    // voter itself, as before stop 45), to compare the two back to back.
    if let Some(fanout) = std::env::var("TIMED_SCALE_FANOUT")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        sc.announce_fanout = fanout;
    }
    // `TIMED_SCALE_DB_CACHE_MB=<n>`: each simulated node's sled cache (16 MB unless told):
    // lowered, 1,000 databases fit in this machine's memory.
    if let Some(mb) = std::env::var("TIMED_SCALE_DB_CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        sc.db_cache_bytes = mb << 20;
    }
    // `TIMED_SCALE_SILENT=<n>`: up to n masternodes send nothing at all, under a third of the
    // weight, to measure what faulty relays cost: the slot tree's fallback, the transactions'
    // asks.
    if let Some(n) = std::env::var("TIMED_SCALE_SILENT")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        silence(&mut sc, n);
    }
    match Sim::new(sc).measure(DRAIN_MS) {
        Ok(f) => f,
        Err(v) => panic!("{nodes} nodes at {rate} tx/s: {v:?}"),
    }
}

/// Makes up to `n` masternodes silent, in key order, each only while the silent weight stays
/// under a third of the set's (the most any engine is built to survive); prints the share.
fn silence(sc: &mut Scenario, n: usize) {
    let total: u64 = sc.nodes.iter().map(|s| s.tier.weight()).sum();
    let (mut silent, mut count) = (0, 0);
    for spec in sc.nodes.iter_mut() {
        let w = spec.tier.weight();
        if count < n && 3 * (silent + w) < total {
            spec.byzantine = Some(sim::Byzantine::Silent);
            silent += w;
            count += 1;
        }
    }
    println!("{count} masternodes silent, {silent} of {total} weight");
}

#[test]
fn a_small_world_under_the_slot_engine_finalizes_every_payment() {
    // Five masternodes over the WAN with the slot engine's threshold lowered to them: every
    // payment final everywhere, each by a certificate (an announcement, shares to one
    // aggregator, a broadcast certificate: three hops, each across regions at least 20 ms).
    let f = measure_with(5, 100, 1, Some(4));
    assert_eq!(f.final_everywhere, 100, "{f:?}");
    assert!(f.p50_origin_ms >= 60, "{f:?}");
    assert!(f.vote_batches_in_per_s > 0.0, "{f:?}");
}

#[test]
fn a_small_world_finalizes_every_payment_and_meters_the_traffic() {
    let f = measure(4, 100, 1);
    assert_eq!(f.submitted, 100);
    assert_eq!(f.final_everywhere, 100, "{f:?}");
    // Every byte one honest node sends another receives (there are only honest nodes).
    assert!((f.bytes_in_per_s - f.bytes_out_per_s).abs() < 1.0, "{f:?}");
    assert!(f.bytes_out_per_s > 0.0 && f.verifications_per_s > 0.0 && f.cpu_cores > 0.0);
    // Four nodes sit in four regions at least 20 ms apart, and a quorum needs three of them:
    // no payment is final anywhere before a vote crossed a region.
    assert!(f.p50_origin_ms >= 20, "{f:?}");
    assert!(f.p99_all_ms >= f.p50_all_ms);
}

fn list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// One measurement, run by [`measure_apart`] in a process of its own: `TIMED_SCALE_ONE` is
/// `nodes,rate,seconds`, and the figures go to the file `TIMED_SCALE_ROW` as a CSV row.
#[test]
#[ignore = "run by scaling_figures, one process per measurement"]
fn scaling_one() {
    let spec = std::env::var("TIMED_SCALE_ONE").expect("TIMED_SCALE_ONE=nodes,rate,seconds");
    let v: Vec<usize> = spec
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let [n, rate, seconds] = v[..] else {
        panic!("TIMED_SCALE_ONE={spec}: expected nodes,rate,seconds");
    };
    // The machine's pace first, in the same run: the row's CPU figures are this core's time.
    println!("{}", one_core());
    let f = measure(n, rate, seconds as u64);
    let row = std::env::var("TIMED_SCALE_ROW").expect("TIMED_SCALE_ROW=<file>");
    std::fs::write(row, f.to_csv()).expect("write the row");
    println!("{}\n{}\n{}", Figures::CSV_HEADER, f.to_csv(), f.profile);
    // Process-wide: every simulated node's, over the whole run (the drain included).
    println!(
        "slot batches sent past the tree by their aggregators: {} copies",
        timed::metrics::slot_announcements_past_tree_count()
    );
}

/// Runs one measurement in a child process: a hundred sled databases a run, closed at its
/// end, once hung this process in sled's final flush (sled 0.34's flush can wait forever,
/// spacejam/sled#1412). The child's figures are in once it wrote its row; a child that then
/// does not exit within a minute is killed and the run goes on.
fn measure_apart(n: usize, rate: usize, seconds: u64) -> Figures {
    let row = tempfile::NamedTempFile::new().expect("a temporary file");
    // The child's databases, removed when this returns however the child ended.
    let shm = Path::new("/dev/shm");
    let dbs = (if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    })
    .expect("a directory for the measurement's databases");
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = std::process::Command::new(exe)
        .args(["scaling_one", "--exact", "--ignored", "--nocapture"])
        .env("TIMED_SCALE_ONE", format!("{n},{rate},{seconds}"))
        .env("TIMED_SCALE_ROW", row.path())
        .env("TIMED_SIM_TMP", dbs.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a measurement");
    let read = || {
        std::fs::read_to_string(row.path())
            .ok()
            .and_then(|s| Figures::from_csv(s.trim()))
    };
    let mut written: Option<std::time::Instant> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return read().unwrap_or_else(|| panic!("{n} nodes at {rate} tx/s: {status}"));
        }
        match (written, read()) {
            (None, Some(_)) => written = Some(std::time::Instant::now()),
            (Some(at), Some(f)) if at.elapsed() > std::time::Duration::from_secs(60) => {
                eprintln!("  (the measurement's process did not exit after its figures: killed)");
                let _ = child.kill();
                let _ = child.wait();
                return f;
            }
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[ignore = "minutes: SCALING.md's figures (see the module doc)"]
fn scaling_figures() {
    let nodes = list("TIMED_SCALE_NODES", "4,10,30,100");
    let rates = list("TIMED_SCALE_RATES", "100,5000");
    let seconds = list("TIMED_SCALE_SECONDS", "1")
        .first()
        .copied()
        .unwrap_or(1) as u64;
    let out = std::env::var("TIMED_SCALE_OUT").unwrap_or_else(|_| "benches/scaling".into());
    let out = Path::new(&out);
    if std::env::var_os("TIMED_SCALE_REPLOT").is_some() {
        // The table and the plots again from the figures a run wrote, without measuring.
        let rows = read_rows(&out.join("figures.csv")).expect("read figures.csv");
        println!("{}", table_header());
        for f in &rows {
            println!("{}", table_row(f));
        }
        return write_plots(out, &rows);
    }
    std::fs::create_dir_all(out).expect("output directory");
    let machine = one_core();
    println!("{machine}\n");
    std::fs::write(out.join("machine.txt"), format!("{machine}\n")).expect("write machine.txt");
    let mut rows: Vec<Figures> = Vec::new();
    let mut csv = format!("{}\n", Figures::CSV_HEADER);
    println!("{}", table_header());
    for &rate in &rates {
        for &n in &nodes {
            let started = std::time::Instant::now();
            let f = measure_apart(n, rate, seconds);
            println!("{}", table_row(&f));
            eprintln!(
                "  ({n} nodes at {rate} tx/s took {:.0?})",
                started.elapsed()
            );
            let _ = writeln!(csv, "{}", f.to_csv());
            std::fs::write(out.join("figures.csv"), &csv).expect("write figures.csv");
            rows.push(f);
        }
    }
    write_plots(out, &rows);
}

/// The rows of a figures CSV, or None when there is no such file.
fn read_rows(path: &Path) -> Option<Vec<Figures>> {
    let csv = std::fs::read_to_string(path).ok()?;
    Some(csv.lines().skip(1).filter_map(Figures::from_csv).collect())
}

/// Step 1's figures (all-to-all layer 1 at every size), kept beside the current ones so each
/// plot shows what the slot engine changed: `figures-step1.csv` in the output directory.
const STEP1_CSV: &str = "figures-step1.csv";

/// The four plots of SCALING.md, one line per offered rate; step 1's lines behind them, faint,
/// when `figures-step1.csv` is there.
fn write_plots(out: &Path, rows: &[Figures]) {
    let step1 = read_rows(&out.join(STEP1_CSV)).unwrap_or_default();
    let mut rates: Vec<usize> = rows
        .iter()
        .chain(&step1)
        .map(|f| f.offered_per_s.round() as usize)
        .collect();
    rates.sort_unstable();
    rates.dedup();
    // Traffic and CPU per node grow with the number of peers: each line goes on to 1,000
    // masternodes (dashed) along its last measured segment, unless that segment ends at a
    // node out of CPU (its rates are then what one core could take, not what the load asks).
    // Signature checks are not extended: the vote interval grows with the set past 50
    // masternodes, which bends that line. Nor is latency: past a node's capacity it grows
    // without bound rather than along a line. The grey line is issue 15's goal at 1,000
    // masternodes, where it has one.
    let plots: [Plot; 4] = [
        Plot {
            file: "traffic.svg",
            title: "Consensus traffic received per node",
            unit: "MB/s",
            extend: true,
            goal: Some(10.0),
            value: |f| f.bytes_in_per_s / 1e6,
        },
        Plot {
            file: "verifications.svg",
            title: "Signatures verified per node",
            unit: "per second",
            extend: false,
            goal: None,
            value: |f| f.verifications_per_s,
        },
        Plot {
            file: "cpu.svg",
            title: "Consensus CPU per node (one core of this machine)",
            unit: "cores",
            extend: true,
            goal: Some(1.0),
            value: |f| f.cpu_cores,
        },
        Plot {
            file: "finality.svg",
            title: "Layer-1 finality p99 at the wallet's node",
            unit: "ms",
            extend: false,
            goal: Some(2_000.0),
            value: |f| f.p99_origin_ms as f64,
        },
    ];
    for plot in plots {
        let mut series: Vec<Series> = Vec::new();
        for (faint, set) in [(true, &step1[..]), (false, rows)] {
            for (k, r) in rates.iter().enumerate() {
                let mut at_rate: Vec<&Figures> = (set.iter())
                    .filter(|f| f.offered_per_s.round() as usize == *r)
                    .collect();
                if at_rate.is_empty() {
                    continue;
                }
                // Rows measured apart may be appended to the CSV in any order.
                at_rate.sort_by_key(|f| f.nodes);
                let points: Vec<(f64, f64)> = (at_rate.iter())
                    .map(|f| (f.nodes as f64, (plot.value)(f)))
                    .collect();
                let saturated = at_rate.last().is_some_and(|f| f.max_cpu_cores >= SATURATED);
                let label = if faint {
                    format!("{r} tx/s, step 1 (all-to-all at every size)")
                } else {
                    format!("{r} tx/s, now (slot engine from 64 masternodes)")
                };
                series.push(Series {
                    label,
                    colour: COLOURS[k % COLOURS.len()],
                    faint,
                    beyond: (plot.extend && !saturated)
                        .then(|| extend_to(&points, 1_000.0))
                        .flatten(),
                    points,
                });
            }
        }
        let image = svg(plot.title, plot.unit, &series, plot.goal);
        std::fs::write(out.join(plot.file), image).expect("write a plot");
    }
    println!("wrote {}", out.display());
}

/// Cores at which a node counts as out of CPU (one core each in the simulation).
const SATURATED: f64 = 0.9;

struct Plot {
    file: &'static str,
    title: &'static str,
    unit: &'static str,
    /// Whether the lines go on to 1,000 masternodes.
    extend: bool,
    goal: Option<f64>,
    value: fn(&Figures) -> f64,
}

/// This machine's own pace on one core, measured now: the CPU figures are this core's time,
/// so they compare across machines only beside it.
fn one_core() -> String {
    use std::time::{Duration, Instant};
    use timed::types::signature::verify;
    use timed::types::SecretKey;
    let key = SecretKey::generate();
    let public = key.public_key();
    let for_a_while = Duration::from_millis(300);
    let (started, mut signs) = (Instant::now(), 0u64);
    while started.elapsed() < for_a_while {
        std::hint::black_box(key.sign(&signs.to_le_bytes()));
        signs += 1;
    }
    let sign_rate = signs as f64 / started.elapsed().as_secs_f64();
    let signature = key.sign(b"timecoin");
    let (started, mut verifies) = (Instant::now(), 0u64);
    while started.elapsed() < for_a_while {
        std::hint::black_box(verify(&public, b"timecoin", &signature));
        verifies += 1;
    }
    let verify_rate = verifies as f64 / started.elapsed().as_secs_f64();
    format!(
        "machine, one core, same run: {sign_rate:.0} signatures/s, {verify_rate:.0} verifications/s \
         (one at a time, as the simulated driver checks them)"
    )
}

fn table_header() -> String {
    "| nodes | offered tx/s | final everywhere | in MB/s per node (txs / votes / BFT) | out MB/s (max) | \
     verified sig/s per node | CPU cores per node (max) | p50 / p99 at wallet's node ms | \
     p50 / p99 at every node ms | block time ms |\n\
     |---|---|---|---|---|---|---|---|---|---|"
        .into()
}

fn table_row(f: &Figures) -> String {
    format!(
        "| {} | {:.0} | {} of {} | {:.2} ({:.2} / {:.2} / {:.2}) | {:.2} ({:.2}) | {:.0} | {:.2} ({:.2}) | {} / {} | {} / {} | {} |",
        f.nodes,
        f.offered_per_s,
        f.final_everywhere,
        f.submitted,
        f.bytes_in_per_s / 1e6,
        f.transactions_in_per_s / 1e6,
        f.vote_batches_in_per_s / 1e6,
        f.bft_in_per_s / 1e6,
        f.bytes_out_per_s / 1e6,
        f.max_bytes_out_per_s / 1e6,
        f.verifications_per_s,
        f.cpu_cores,
        f.max_cpu_cores,
        f.p50_origin_ms,
        f.p99_origin_ms,
        f.p50_all_ms,
        f.p99_all_ms,
        if f.block_time_ms > 0.0 {
            format!("{:.0}", f.block_time_ms)
        } else {
            "–".into()
        }
    )
}

/// One colour per offered rate, the same in both sets of lines.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

struct Series {
    label: String,
    colour: &'static str,
    /// Drawn thin and pale: the figures before, for comparison.
    faint: bool,
    points: Vec<(f64, f64)>,
    /// Where the last measured segment, continued as a straight line, reaches.
    beyond: Option<(f64, f64)>,
}

/// The last two points' line continued to `x`: a per-node figure that grows with the number
/// of peers grows linearly once its fixed part is small. None when the line already ends
/// within a tenth of `x` (measured there: nothing to guess).
fn extend_to(points: &[(f64, f64)], x: f64) -> Option<(f64, f64)> {
    let [.., (x1, y1), (x2, y2)] = points else {
        return None;
    };
    let y = y2 + (y2 - y1) / (x2 - x1) * (x - x2);
    (*x2 < 0.9 * x && x2 > x1 && y > 0.0).then_some((x, y))
}

/// A figure with as many decimals as it needs to be read.
fn short(y: f64) -> String {
    if y >= 100.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

/// A log–log line plot: nodes across, the figure up, one line per offered rate.
fn svg(title: &str, unit: &str, series: &[Series], goal: Option<f64>) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().chain(s.beyond))
        .chain(goal.map(|g| (1_000.0, g)))
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .collect();
    let decade = |v: f64, up: bool| {
        let l = v.log10();
        10f64.powf(if up { l.ceil() } else { l.floor() })
    };
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        all.iter().map(pick).fold(init, f)
    };
    let (x0, x1) = (
        decade(fold(f64::min, f64::MAX, |p| p.0), false),
        decade(fold(f64::max, 1.0, |p| p.0), true),
    );
    let y0 = decade(fold(f64::min, f64::MAX, |p| p.1), false);
    let y1 = decade(fold(f64::max, 1e-9, |p| p.1), true).max(y0 * 10.0);
    let x1 = x1.max(x0 * 10.0);
    let px =
        |x: f64| left + (x.log10() - x0.log10()) / (x1.log10() - x0.log10()) * (w - left - right);
    let py = |y: f64| {
        h - bottom - (y.log10() - y0.log10()) / (y1.log10() - y0.log10()) * (h - top - bottom)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">masternodes</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{unit}</text>\n",
        w / 2.0,
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
    );
    let mut tick = x0;
    while tick <= x1 * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            px(tick),
            top,
            h - bottom,
            h - bottom + 16.0,
            tick
        );
        tick *= 10.0;
    }
    let mut tick = y0;
    while tick <= y1 * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>",
            left,
            py(tick),
            w - right,
            left - 6.0,
            py(tick) + 4.0,
            tick
        );
        tick *= 10.0;
    }
    if let Some(g) = goal {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#888\" \
             stroke-dasharray=\"2 3\"/><text x=\"{1}\" y=\"{2:.1}\" fill=\"#666\" \
             text-anchor=\"end\">goal at 1,000 masternodes: {3} {unit}</text>",
            py(g),
            w - right,
            py(g) - 5.0,
            short(g)
        );
    }
    for (k, se) in series.iter().enumerate() {
        let colour = se.colour;
        let pts: Vec<String> = (se.points.iter())
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(s, "<g opacity=\"{}\">", if se.faint { 0.35 } else { 1.0 });
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{}\" points=\"{}\"/>",
            if se.faint { 1.5 } else { 2.5 },
            pts.join(" ")
        );
        if let (Some(last), Some((x, y))) = (se.points.last(), se.beyond) {
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
                 stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" \
                 fill=\"{colour}\" text-anchor=\"end\">{}</text>",
                px(last.0),
                py(last.1),
                px(x),
                py(y),
                px(x) - 4.0,
                py(y) - 6.0,
                short(y)
            );
        }
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            left + 10.0,
            top + 16.0 + 16.0 * k as f64,
            se.label
        );
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}
