//! The metrics port of real `timed` processes: `/metrics` parses as Prometheus text, holds
//! every `timed_*` family (and passes `promtool check metrics` where promtool is installed),
//! and its counters move when a transfer is finalized; `/health` answers while the process
//! runs; `/ready` says 503 while a node sees no quorum of masternodes and 200 once it does.

mod cluster;

use cluster::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use timed::types::{Amount, Canonical, Hash32, OutPoint, SecretKey, TxOutput};
use timed::wallet::{keyfile, transfer::signed_transfer};

/// Every family the metrics port must expose, with its Prometheus type.
const FAMILIES: &[(&str, &str)] = &[
    ("timed_build_info", "gauge"),
    ("timed_chain_height", "gauge"),
    ("timed_consensus_round", "gauge"),
    ("timed_blocks_committed_total", "counter"),
    ("timed_last_block_age_seconds", "gauge"),
    ("timed_transactions_finalized_total", "counter"),
    ("timed_finality_latency_seconds", "histogram"),
    ("timed_mempool_transactions", "gauge"),
    ("timed_mempool_bytes", "gauge"),
    ("timed_mempool_rejections_total", "counter"),
    ("timed_peers", "gauge"),
    ("timed_network_bytes_total", "counter"),
    ("timed_network_messages_total", "counter"),
    ("timed_peer_bans_total", "counter"),
    ("timed_equivocations_total", "counter"),
    ("timed_consensus_dropped_total", "counter"),
    ("timed_block_builder_skipped_total", "counter"),
    ("timed_storage_corrupt_records_total", "counter"),
    ("timed_sync_requests_refused_total", "counter"),
    ("timed_p2p_frames_decompressed_total", "counter"),
    ("timed_rpc_requests_total", "counter"),
    ("timed_rpc_request_duration_seconds", "histogram"),
    ("timed_database_size_bytes", "gauge"),
    ("timed_process_resident_memory_bytes", "gauge"),
];

/// One scrape, parsed: `# TYPE` lines and samples (name, labels, value).
struct Scrape {
    text: String,
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses the Prometheus text format; any line it cannot read fails the test.
    fn parse(text: String) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line: name and type");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample: series and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label k=v");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_string(), v.expect("quoted label value").to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            assert!(name.starts_with("timed_"), "{name} lacks the timed_ prefix");
            samples.push((name, labels, value));
        }
        Scrape {
            text,
            types,
            samples,
        }
    }

    /// The sum of the samples named `name` whose labels include every pair of `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

/// GET on the metrics port: status, content type and body; None if nothing answers.
fn get(url: &str) -> Option<(u16, String, String)> {
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_string();
    Some((status, content_type, response.into_string().ok()?))
}

/// The metrics URL of the node whose RPC is at `rpc_url` (default: the RPC port + 1).
fn metrics_base(rpc_url: &str) -> String {
    let (host, port) = rpc_url.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("RPC port");
    format!("{host}:{}", port + 1)
}

fn scrape(base: &str) -> Scrape {
    let (status, content_type, body) = get(&format!("{base}/metrics")).expect("metrics answer");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(body)
}

/// Runs `promtool check metrics` on the text, or says why it did not.
fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("SKIPPED promtool check: promtool is not installed (Debian: apt-get install prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scraped text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready(base: &str) -> Option<(u16, String)> {
    get(&format!("{base}/ready")).map(|(s, _, body)| (s, body))
}

#[test]
fn metrics_count_a_transfer_and_ready_follows_the_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base_port = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base_port, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let m0 = metrics_base(&urls[0]);

    // Alive, and ready once it sees the other three (a quorum with its own weight).
    let (status, _, body) = get(&format!("{m0}/health")).expect("health answers");
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    wait_for("node 0 ready", || (ready(&m0)?.0 == 200).then_some(()));
    let (status, _, _) = get(&format!("{m0}/nothing-here")).unwrap();
    assert_eq!(status, 404);

    // Every family, typed as Prometheus expects, and a text promtool accepts.
    let before = scrape(&m0);
    for (family, kind) in FAMILIES {
        assert_eq!(
            before.types.get(*family).map(String::as_str),
            Some(*kind),
            "family {family} missing or mistyped in:\n{}",
            before.text
        );
    }
    assert_eq!(
        before.sum(
            "timed_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for name in [
        "timed_chain_height",
        "timed_consensus_round",
        "timed_last_block_age_seconds",
        "timed_mempool_transactions",
        "timed_mempool_bytes",
        "timed_database_size_bytes",
        "timed_process_resident_memory_bytes",
        "timed_finality_latency_seconds_count",
    ] {
        assert!(before.has(name), "no sample of {name}");
    }
    assert!(before.sum("timed_database_size_bytes", &[]) > 0.0);
    assert!(before.sum("timed_process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.sum("timed_network_messages_total", &[("direction", "in")]) > 0.0);
    assert!(before.sum("timed_network_bytes_total", &[("direction", "out")]) > 0.0);
    promtool_check(&before.text);

    // A transfer from the faucet, final and in a block: the counters move.
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let genesis_hash = call(&urls[0], "getblockhash", json!([0])).unwrap();
    let genesis = call(&urls[0], "getblock", json!([genesis_hash, 2])).unwrap();
    let coinbase = Hash32::from_hex(genesis["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();
    let (txid, _, _) = send(
        &urls[0],
        &faucet,
        OutPoint::new(coinbase, 0),
        have,
        100_000_000,
        &SecretKey::generate(),
    );
    wait_final_and_confirmed(&urls[0], &txid);
    // The same output spent again is refused by the pool, and counted with its reason.
    let again = signed_transfer(
        NET,
        &faucet,
        &[OutPoint::new(coinbase, 0)],
        vec![TxOutput {
            amount: Amount(have - 10_000_000),
            key_hash: SecretKey::generate().public_key().key_hash(),
        }],
    );
    assert!(call(
        &urls[0],
        "sendrawtransaction",
        json!([hex::encode(again.to_bytes())])
    )
    .is_err());
    // A method the server does not have is counted under one `unknown` label.
    assert!(call(&urls[0], "no_such_method_here", json!([])).is_err());

    let tx_height = call(&urls[0], "getrawtransaction", json!([txid, true])).unwrap()["height"]
        .as_u64()
        .or_else(|| height(&urls[0]))
        .unwrap();
    let after = wait_for("the committed block in the metrics", || {
        let s = scrape(&m0);
        (s.sum("timed_chain_height", &[]) >= tx_height as f64).then_some(s)
    });
    let grew = |name: &str, with: &[(&str, &str)]| {
        assert!(
            after.sum(name, with) > before.sum(name, with),
            "{name} {with:?} did not grow: {} -> {}",
            before.sum(name, with),
            after.sum(name, with)
        );
    };
    grew("timed_transactions_finalized_total", &[]);
    grew("timed_finality_latency_seconds_count", &[]);
    grew("timed_blocks_committed_total", &[]);
    grew(
        "timed_rpc_requests_total",
        &[("method", "sendrawtransaction"), ("result", "ok")],
    );
    grew(
        "timed_rpc_request_duration_seconds_count",
        &[("method", "sendrawtransaction")],
    );
    grew(
        "timed_rpc_requests_total",
        &[("method", "unknown"), ("result", "error")],
    );
    grew(
        "timed_network_messages_total",
        &[("direction", "out"), ("message_type", "transaction")],
    );
    grew(
        "timed_network_bytes_total",
        &[("direction", "out"), ("message_type", "transaction")],
    );
    assert!(
        after.sum("timed_mempool_rejections_total", &[])
            > before.sum("timed_mempool_rejections_total", &[]),
        "the refused double spend is not counted:\n{}",
        after.text
    );
    assert!(!after.text.contains("no_such_method_here"));
    promtool_check(&after.text);

    // Two of four masternodes die: node 0 holds 2 of 4 weight, no quorum, so not ready.
    for i in [1, 2] {
        signal(info.nodes[i].pid.unwrap(), "-9");
    }
    let reason = wait_for("node 0 to report no quorum", || {
        let (status, body) = ready(&m0)?;
        (status == 503).then_some(body)
    });
    assert!(reason.starts_with("no quorum"), "{reason}");
    let (status, _, _) = get(&format!("{m0}/health")).unwrap();
    assert_eq!(status, 200, "alive, though not ready");
    wait_for("node 0's peer gauge to drop", || {
        (scrape(&m0).sum("timed_peers", &[]) == 1.0).then_some(())
    });

    // They come back from their own data: node 0 is ready again, and so are they once synced.
    for i in [1, 2] {
        let child = Command::new(env!("CARGO_BIN_EXE_timed"))
            .arg("--config")
            .arg(&info.nodes[i].config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        procs.1.push(child.id());
        procs.0.push(child);
    }
    wait_for("node 0 ready again", || {
        (ready(&m0)?.0 == 200).then_some(())
    });
    for url in &urls[1..3] {
        let m = metrics_base(url);
        wait_for("a restarted node ready", || {
            (ready(&m)?.0 == 200).then_some(())
        });
    }
}
