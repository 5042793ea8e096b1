//! Real `timed` processes over emulated WAN links (tests/cluster/wan): partitions, a flapping
//! link, a slow node, and the figures of BENCHMARKS.md's WAN section.
//!
//! `cargo test --test wan` runs the 2–2 split, a one-way cut and a check of the proxy itself.
//! The rest are long and ignored:
//! `cargo test --release --test wan -- --ignored --skip wan_figures --nocapture`; the figures
//! alone: `cargo test --release --test wan wan_figures -- --ignored --nocapture` with
//! `TIMED_WAN_NODES=4,7 TIMED_WAN_DELAYS_MS=25,50,150 TIMED_WAN_RATES=100,1000
//! TIMED_WAN_DURATION=10s TIMED_WAN_LOSS_PERMILLE=10` (these are the defaults).

mod cluster;

use cluster::wan::proxy::{between, LinkSpec};
use cluster::wan::{start_wan, WanNet, WanOptions};
use cluster::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use timed::types::{Hash32, OutPoint, SecretKey};

const TIME: u64 = 100_000_000;

fn finality(url: &str, txid: &str) -> Option<Value> {
    call(url, "gettransactionfinality", json!([txid])).ok()
}

fn is_final(url: &str, txid: &str) -> bool {
    call(url, "getrawtransaction", json!([txid, true]))
        .ok()
        .is_some_and(|v| v["instantlock"] == json!(true))
}

fn wait_final_on(urls: &[String], txid: &str) {
    for url in urls {
        wait_for(&format!("{txid} final on {url}"), || {
            is_final(url, txid).then_some(())
        });
    }
}

fn outpoint(txid: &str, vout: u32) -> OutPoint {
    OutPoint::new(Hash32::from_hex(txid).expect("a txid"), vout)
}

/// Every node holds the same block at every height up to the lowest tip.
fn assert_one_chain(urls: &[String]) {
    let low = urls
        .iter()
        .filter_map(|u| height(u))
        .min()
        .expect("heights");
    for h in 1..=low {
        let hashes: Vec<Value> = (urls.iter())
            .map(|u| call(u, "getblockhash", json!([h])).expect("getblockhash"))
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "two blocks at height {h}: {hashes:?}"
        );
    }
}

/// Waits until every node has passed `target` and they agree on the chain.
fn wait_all_past(urls: &[String], target: u64) {
    for url in urls {
        wait_for(&format!("{url} past height {target}"), || {
            (height(url)? > target).then_some(())
        });
    }
    assert_one_chain(urls);
}

fn tip(urls: &[String]) -> u64 {
    urls.iter().filter_map(|u| height(u)).max().unwrap_or(0)
}

/// Four masternodes on links of `spec`. Dropped in this order: proxies, nodes, files.
fn four_nodes(spec: LinkSpec) -> (WanNet, Procs, TestDir) {
    let tmp = TestDir::new();
    let mut procs = Procs(Vec::new(), Vec::new());
    let net = start_wan(tmp.path(), &WanOptions::new(4, spec), &mut procs);
    (net, procs, tmp)
}

/// Honest nodes never sign two conflicting votes: nobody holds evidence against anyone.
fn assert_no_evidence(urls: &[String]) {
    for url in urls {
        let evidence = call(url, "listevidence", json!([])).expect("listevidence");
        assert_eq!(
            evidence.as_array().map(Vec::len),
            Some(0),
            "{url}: {evidence}"
        );
    }
}

/// A 2–2 split: each side locks its own spend of one output, neither side finalizes anything
/// nor commits a block, nothing conflicting is final anywhere; on heal blocks and payments
/// resume on all four (the two spends stay locked: only their signer could cause that).
#[test]
fn a_two_two_split_finalizes_nothing_and_resumes_on_heal() {
    let (net, _procs, _tmp) = four_nodes(LinkSpec::wan(25));
    let urls = net.urls();
    let (faucet, coin, have) = faucet_coins(&net.info, &urls[0]);
    let alice = SecretKey::generate();
    let (t1, change, have) = send(&urls[0], &faucet, coin, have, 10 * TIME, &alice);
    wait_final_on(&urls, &t1);

    net.partition(&[0, 1], &[2, 3]);
    let split_at: Vec<u64> = urls.iter().map(|u| height(u).unwrap()).collect();
    let (bob, carol) = (SecretKey::generate(), SecretKey::generate());
    let (ta, _, _) = send(&urls[0], &alice, outpoint(&t1, 0), 10 * TIME, TIME, &bob);
    let (tb, _, _) = send(
        &urls[2],
        &alice,
        outpoint(&t1, 0),
        10 * TIME,
        2 * TIME,
        &carol,
    );
    // Each side's two votes meet: the split is what stops them, not a lost transaction.
    for (url, tx) in [
        (&urls[1], &ta),
        (&urls[0], &ta),
        (&urls[3], &tb),
        (&urls[2], &tb),
    ] {
        wait_for(&format!("two votes for {tx} on {url}"), || {
            let f = finality(url, tx)?;
            (f["weight"].as_u64()? >= 2).then_some(())
        });
    }
    // Absence can only be observed over a span: twenty block intervals of it, checked all
    // along, during which every node is asked for its status again and again.
    let watch = Instant::now();
    let mut commits_seen = Vec::new();
    while watch.elapsed() < Duration::from_secs(10) {
        for (i, url) in urls.iter().enumerate() {
            for tx in [&ta, &tb] {
                assert!(!is_final(url, tx), "{tx} final on node{i} during the split");
            }
            commits_seen.push(height(url).expect("height") - split_at[i]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A block already agreed when the cut fell may land; no second one can.
    assert!(
        commits_seen.iter().all(|n| *n <= 1),
        "blocks committed during the split: {commits_seen:?}"
    );

    net.links.heal_all();
    wait_all_past(&urls, tip(&urls) + 2);
    let dave = SecretKey::generate();
    let (t2, _, _) = send(&urls[3], &faucet, change, have, TIME, &dave);
    wait_final_on(&urls, &t2);
    for url in &urls {
        assert!(
            !(is_final(url, &ta) && is_final(url, &tb)),
            "both conflicting spends final on {url}"
        );
    }
    assert_no_evidence(&urls);
}

/// An asymmetric cut: node3 hears the others but nobody hears node3. The three finalize and
/// commit without it, and node3, which still receives every vote and block, follows: payments
/// are final on all four and node3 keeps the one chain.
#[test]
fn a_node_nobody_hears_still_follows() {
    let (net, _procs, _tmp) = four_nodes(LinkSpec::wan(25));
    let urls = net.urls();
    net.links.cut(&[(3, 0), (3, 1), (3, 2)], false);
    let cut_at = tip(&urls);
    let (faucet, mut coin, mut have) = faucet_coins(&net.info, &urls[0]);
    for _ in 0..3 {
        let to = SecretKey::generate();
        let (txid, change, left) = send(&urls[1], &faucet, coin, have, TIME, &to);
        wait_final_on(&urls, &txid);
        (coin, have) = (change, left);
    }
    wait_all_past(&urls, cut_at + 3);
    assert_no_evidence(&urls);
}

/// Runs `timed bench` on the localnet described in `dir`; its whole output.
fn bench(dir: &std::path::Path, rates: &str, duration: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args([
            "bench",
            "--rates",
            rates,
            "--duration",
            duration,
            "--localnet",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start timed bench");
    let mut out = child.stdout.take().expect("bench stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let status = wait_exit(&mut child, "timed bench to finish");
    let text = reader.join().expect("bench output");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "timed bench failed: {text}\n{err}");
    text
}

/// The bench table's rows as column name → value, by the header's names.
fn bench_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = text.lines();
    let Some(header) = lines.by_ref().find(|l| l.contains("p50")) else {
        return Vec::new();
    };
    let names: Vec<String> = header
        .replace(" ms", "")
        .replace("of limit", "of_limit")
        .replace("gen cores", "gen_cores")
        .split_whitespace()
        .map(String::from)
        .collect();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            names
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(String::from))
                .collect()
        })
        .collect()
}

/// A 3–1 split under load: the three go on finalizing and committing while `timed bench`
/// drives them; on heal the one catches up block by block and holds the same chain. (`timed`
/// fast-syncs only from an empty database, so a cut node that has blocks always replays.)
#[test]
#[ignore = "long: cargo test --release --test wan -- --ignored --skip wan_figures"]
fn a_three_one_split_under_load_goes_on_and_the_one_catches_up() {
    let (net, _procs, tmp) = four_nodes(LinkSpec::wan(25));
    let urls = net.urls();
    net.partition(&[0, 1, 2], &[3]);
    let cut_at = height(&urls[3]).unwrap();
    let three = net.info_of(&[0, 1, 2], &tmp.path().join("three"));
    let text = bench(&three, "50", "15s");
    println!("{text}");
    let rows = bench_rows(&text);
    let finalized: u64 = rows
        .first()
        .and_then(|r| r.get("final")?.parse().ok())
        .unwrap_or(0);
    assert!(finalized > 0, "nothing final on the three: {text}");
    let ahead = tip(&urls[..3]);
    assert!(ahead > cut_at + 5, "the three stopped: {ahead} vs {cut_at}");
    assert!(
        height(&urls[3]).unwrap() <= cut_at + 1,
        "the one went on alone"
    );

    net.links.heal_all();
    wait_all_past(&urls, ahead);
}

/// A link that goes down for 1 s and up for 1 s, each cut closing its connections: the two
/// nodes it joins reconnect each time, payments sent to either end of it finalize everywhere
/// throughout at least five cycles, and the four keep one chain.
#[test]
#[ignore = "long: cargo test --release --test wan -- --ignored --skip wan_figures"]
fn a_flapping_link_stops_nothing() {
    let (net, _procs, _tmp) = four_nodes(LinkSpec::wan(25));
    let urls = net.urls();
    let second = Duration::from_secs(1);
    let flapping = net.flap(between(&[0], &[1]), second, second, true);
    let (faucet, mut coin, mut have) = faucet_coins(&net.info, &urls[0]);
    let mut sent = 0;
    while flapping.cycles() < 5 || sent < 10 {
        let to = SecretKey::generate();
        let (txid, change, left) = send(&urls[sent % 2], &faucet, coin, have, TIME, &to);
        wait_final_on(&urls, &txid);
        (coin, have, sent) = (change, left, sent + 1);
    }
    drop(flapping);
    println!("{sent} payments final everywhere while the link flapped");
    wait_all_past(&urls, tip(&urls));
    assert_no_evidence(&urls);
}

/// The faucet's key and its unspent output with the amount.
type Wallet = (SecretKey, OutPoint, u64);

/// `count` payments from node0, each waited on until final there: the latencies in ms, and
/// how many certificates (while node0 still holds one) lack `without`'s vote.
fn payments(net: &WanNet, wallet: &mut Wallet, count: usize, without: &str) -> (Vec<f64>, usize) {
    let url = net.url(0);
    let (faucet, coin, have) = wallet;
    let (mut latencies, mut without_it) = (Vec::new(), 0);
    for _ in 0..count {
        let sent = Instant::now();
        let to = SecretKey::generate();
        let (txid, change, left) = send(url, faucet, *coin, *have, TIME, &to);
        // The node answers the moment the transaction is final, with its certificate then.
        let f = wait_for(&format!("{txid} final"), || {
            let f = call(url, "waittransactionfinality", json!([txid, 5])).ok()?;
            (f["final"] == json!(true)).then_some(f)
        });
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        let voters: Option<Vec<String>> = f["certificate"]["batches"].as_array().map(|b| {
            b.iter()
                .filter_map(|b| Some(b["voter"].as_str()?.to_string()))
                .collect()
        });
        if voters.is_some_and(|v| !v.iter().any(|k| k == without)) {
            without_it += 1;
        }
        (*coin, *have) = (change, left);
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, without_it)
}

/// One node 500 ms further away than the rest: the other three finalize without waiting for
/// its vote (a quorum of three needs no fourth). Latencies are printed, not asserted.
#[test]
#[ignore = "long: cargo test --release --test wan -- --ignored --skip wan_figures"]
fn a_distant_node_does_not_hold_up_the_others() {
    let near = LinkSpec::wan(25);
    let (net, _procs, _tmp) = four_nodes(near);
    let slow_key = net.info.nodes[3].node_key.clone();
    let mut wallet = faucet_coins(&net.info, net.url(0));
    let (before, _) = payments(&net, &mut wallet, 10, &slow_key);
    let far = LinkSpec {
        delay: near.delay + Duration::from_millis(500),
        ..near
    };
    for link in between(&[3], &[0, 1, 2]) {
        net.links.set(link, far);
    }
    let (after, without) = payments(&net, &mut wallet, 20, &slow_key);
    let p50 = |l: &[f64]| l[l.len() / 2];
    println!(
        "finality on node0, p50: {:.0} ms all at 25 ms; {:.0} ms with node3 at +500 ms \
         ({without} of 20 certificates without node3's vote)",
        p50(&before),
        p50(&after)
    );
    assert!(
        without > 0,
        "every payment waited for the distant node's vote"
    );
    let urls = net.urls();
    wait_all_past(&urls, tip(&urls));
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    (text.split(','))
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Intervals (ms) between the blocks of heights `from..=to` on `url` that follow a block
/// with transfers in it (so the idle minutes of a bench run, its set-up and drain, stay out):
/// their median and mean.
fn loaded_block_intervals(url: &str, from: u64, to: u64) -> (f64, f64) {
    let blocks: Vec<(f64, u64)> = (from..=to)
        .filter_map(|h| {
            let hash = call(url, "getblockhash", json!([h])).ok()?;
            let b = call(url, "getblock", json!([hash, 1])).ok()?;
            Some((b["time_ms"].as_f64()?, b["nTx"].as_u64()?))
        })
        .collect();
    let mut gaps: Vec<f64> = (blocks.windows(2))
        .filter(|w| w[0].1 > 1)
        .map(|w| w[1].0 - w[0].0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    if gaps.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (
        gaps[gaps.len() / 2],
        gaps.iter().sum::<f64>() / gaps.len() as f64,
    )
}

/// BENCHMARKS.md's WAN table: layer-1 finality percentiles (from `timed bench`) and the block
/// interval, for each node count, one-way delay (10 % jitter, 1 % loss) and offered rate.
#[test]
#[ignore = "figures: cargo test --release --test wan wan_figures -- --ignored --nocapture"]
fn wan_figures() {
    let nodes = env_list("TIMED_WAN_NODES", "4,7");
    let delays = env_list("TIMED_WAN_DELAYS_MS", "25,50,150");
    let rates = env_list("TIMED_WAN_RATES", "100,1000");
    let duration = std::env::var("TIMED_WAN_DURATION").unwrap_or_else(|_| "10s".into());
    // Per mille, so a loss-free run can be set beside the standard one.
    let loss = env_list("TIMED_WAN_LOSS_PERMILLE", "10")[0] as f64 / 1000.0;
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut table = vec![
        "| nodes | one-way | offered/s | final/s | p50 ms | p90 ms | p99 ms | block interval p50 / mean ms | nproc | load avg |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for &n in &nodes {
        for &delay in &delays {
            let tmp = tempfile::tempdir().unwrap();
            let mut procs = Procs(Vec::new(), Vec::new());
            let net = start_wan(
                tmp.path(),
                &WanOptions::new(
                    n as usize,
                    LinkSpec {
                        loss,
                        ..LinkSpec::wan(delay)
                    },
                ),
                &mut procs,
            );
            for &rate in &rates {
                let from = height(net.url(0)).unwrap();
                let load = load_average();
                let text = bench(tmp.path(), &rate.to_string(), &duration);
                let to = height(net.url(0)).unwrap();
                let (mid, mean) = loaded_block_intervals(net.url(0), from, to);
                let rows = bench_rows(&text);
                let row = rows
                    .first()
                    .unwrap_or_else(|| panic!("no table from timed bench: {text}"));
                let col = |k: &str| row.get(k).cloned().unwrap_or_else(|| "?".into());
                assert!(
                    col("final").parse::<u64>().is_ok_and(|f| f > 0),
                    "nothing final at {n} nodes, {delay} ms, {rate}/s: {text}"
                );
                let line = format!(
                    "| {n} | {delay} ms | {rate} | {} | {} | {} | {} | {mid:.0} / {mean:.0} | {nproc} | {load} |",
                    col("final/s"),
                    col("p50"),
                    col("p90"),
                    col("p99"),
                );
                println!("{line}");
                table.push(line);
            }
        }
    }
    println!("\n{}", table.join("\n"));
}

/// The proxy itself, on loopback with an echo server: a round trip takes at least both
/// delays; a cut holds bytes until the heal; a resetting cut closes the connection.
#[tokio::test]
async fn the_proxy_delays_holds_and_resets() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let delay = Duration::from_millis(50);
    let links = Arc::new(cluster::wan::proxy::Links::new(LinkSpec {
        delay,
        ..LinkSpec::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(cluster::wan::proxy::serve_pair(
        Arc::clone(&links),
        (0, 1),
        listener,
        target,
    ));
    let mut client = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let mut buf = [0u8; 4];
    let sent = Instant::now();
    client.write_all(b"ping").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert!(sent.elapsed() >= 2 * delay, "{:?}", sent.elapsed());

    links.cut(&[(0, 1)], false);
    client.write_all(b"held").await.unwrap();
    let during = tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
    assert!(during.is_err(), "bytes crossed a cut link: {during:?}");
    links.heal_all();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"held");

    links.cut(&[(1, 0)], true);
    let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut buf))
        .await
        .expect("the reset closes the connection");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // 100 kB/s one way: what passes the 64 KiB burst takes its time.
    links.heal_all();
    let rate = 100_000;
    links.set(
        (0, 1),
        LinkSpec {
            bandwidth: Some(rate),
            ..LinkSpec::default()
        },
    );
    let mut client = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let bytes = vec![7u8; 64 * 1024 + 100_000];
    let sent = Instant::now();
    let (mut r, mut w) = client.split();
    let both = async {
        tokio::join!(w.write_all(&bytes), async {
            let mut back = vec![0u8; bytes.len()];
            r.read_exact(&mut back).await.map(|_| back)
        })
    };
    let (wrote, back) = tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("the bytes come back");
    wrote.unwrap();
    assert_eq!(back.unwrap(), bytes);
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
}
