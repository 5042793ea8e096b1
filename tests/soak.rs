//! The soak's smoke run: `timed bench --soak` against a real 2-node localnet for a few short
//! windows. The hour-long soak (benches/soak/run.sh, RELIABILITY.md "Soak") runs the same
//! command; this checks that its rows and samples are there and that the coins go round.

mod cluster;

use cluster::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};

#[test]
fn a_short_soak_samples_every_node_each_window_and_spends_its_coins_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet_of(2, &dir, free_base_port(2), &mut procs);
    for n in &info.nodes {
        wait_for("a first block", || height(&n.rpc_url).filter(|h| *h >= 1));
    }
    let csv = tmp.path().join("soak.csv");
    let log = tmp.path().join("bench.out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    cmd.args([
        "bench",
        "--rates",
        "40",
        "--soak",
        "16s",
        "--sample-every",
        "4s",
    ])
    .arg("--localnet")
    .arg(&dir)
    .arg("--csv")
    .arg(&csv)
    .stdin(Stdio::null());
    spawn_command(cmd, &log, &mut procs);
    let bench = procs.0.last_mut().unwrap();
    let status = wait_exit(bench, "timed bench --soak to finish");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "timed bench --soak failed:\n{out}");
    assert!(out.contains("soak done"), "{out}");

    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<HashMap<&str, &str>> = lines
        .map(|l| header.iter().copied().zip(l.split(',')).collect())
        .collect();
    // 16 s of 4 s windows, each followed by a short drain.
    assert!((2..=4).contains(&rows.len()), "{text}\n{out}");
    let num = |row: &HashMap<&str, &str>, col: &str| -> f64 {
        let cell = row.get(col).copied().unwrap_or("");
        cell.parse()
            .unwrap_or_else(|_| panic!("{col} = {cell:?}\n{text}"))
    };
    for row in &rows {
        // Only the first window's coins were split from the faucet: later windows spend the
        // outputs of earlier ones.
        assert!(num(row, "final_per_s") > 10.0, "{text}\n{out}");
        assert!(num(row, "p50_ms") > 0.0);
        for i in 0..2 {
            assert!(num(row, &format!("node{i}_rss_mb")) > 1.0, "{text}");
            assert!(num(row, &format!("node{i}_open_files")) >= 3.0, "{text}");
            assert!(num(row, &format!("node{i}_db_mb")) > 0.0, "{text}");
            assert!(num(row, &format!("node{i}_cpu_cores")) >= 0.0, "{text}");
        }
    }
    let elapsed: Vec<f64> = rows.iter().map(|r| num(r, "elapsed_s")).collect();
    assert!(elapsed.windows(2).all(|w| w[0] < w[1]), "{elapsed:?}");
}
