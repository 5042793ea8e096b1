//! The metrics port of real `timed` processes: `/metrics` parses as Prometheus text, holds
//! every `timed_*` family (and passes `promtool check metrics` where promtool is installed),
//! and its counters move when a transfer is finalized; `/health` answers while the process
//! runs; `/ready` says 503 while a node sees no quorum of masternodes and 200 once it does,
//! and the gauges the alerts watch (`timed_ready`, the masternode weight) say the same.
//!
//! What is built on the metrics is checked here too: every metric that the Grafana dashboard
//! (config/grafana/timed.json) and the alert rules (config/prometheus/alerts.yml) name is on
//! a live node's `/metrics`; the rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), and every dashboard query parses as PromQL.

mod cluster;

use cluster::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use timed::config::keyfile;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Canonical, Hash32, OutPoint, SecretKey, TxOutput};

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
    ("timed_consensus_queue", "gauge"),
    ("timed_submit_stage_duration_seconds", "histogram"),
    ("timed_network_bytes_total", "counter"),
    ("timed_network_messages_total", "counter"),
    ("timed_peer_bans_total", "counter"),
    ("timed_equivocations_total", "counter"),
    ("timed_consensus_dropped_total", "counter"),
    ("timed_block_builder_skipped_total", "counter"),
    ("timed_storage_corrupt_records_total", "counter"),
    ("timed_sync_requests_refused_total", "counter"),
    ("timed_p2p_frames_decompressed_total", "counter"),
    ("timed_slot_announcements_past_tree_total", "counter"),
    ("timed_tx_asks_timed_out_total", "counter"),
    ("timed_rpc_requests_total", "counter"),
    ("timed_rpc_request_duration_seconds", "histogram"),
    ("timed_database_size_bytes", "gauge"),
    ("timed_process_resident_memory_bytes", "gauge"),
    ("timed_ready", "gauge"),
    ("timed_block_interval_seconds", "gauge"),
    ("timed_masternodes", "gauge"),
    ("timed_masternodes_connected", "gauge"),
    ("timed_masternode_weight", "gauge"),
    ("timed_masternode_connected_weight", "gauge"),
    ("timed_masternode_quorum_weight", "gauge"),
    ("timed_disk_available_bytes", "gauge"),
    ("timed_disk_size_bytes", "gauge"),
    ("timed_disk_low", "gauge"),
    ("timed_clock_offset_seconds", "gauge"),
];

/// The shipped Grafana dashboard and alert rules, relative to the crate root.
const DASHBOARD: &str = "config/grafana/timed.json";
const ALERTS: &str = "config/prometheus/alerts.yml";
const ALERT_TESTS: &str = "config/prometheus/alerts_test.yml";
const PROMETHEUS_CONFIG: &str = "config/prometheus/prometheus.yml";

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `timed_*` name in a file (queries, and metrics its text points operators to).
fn metric_names_in(path: &str) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(repo_file(path)).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("timed_") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// Every query of the dashboard with its panel's title, Grafana's variables filled in as for
/// all nodes of job `timed`, `rate_interval` and `range` for the time windows.
fn dashboard_queries(rate_interval: &str, range: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file(DASHBOARD)).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let filled = expr
                .replace("$__rate_interval", rate_interval)
                .replace("$__range", range)
                .replace("$job", "timed")
                .replace("$instance", ".*");
            out.push((panel["title"].as_str().unwrap().to_string(), filled));
        }
    }
    out
}

/// Runs promtool with `args` (paths relative to the crate root), or says why it did not;
/// a failure fails the test with promtool's output.
fn promtool(args: &[&str]) {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            eprintln!(
                "SKIPPED promtool {}: promtool is not installed (Debian: apt-get install prometheus)",
                args.join(" ")
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    // The submit went through every stage before the pool's verdict.
    for stage in ["door_queue", "door_check", "owner_queue"] {
        grew(
            "timed_submit_stage_duration_seconds_count",
            &[("stage", stage)],
        );
    }
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

    // What the dashboard and the alerts query exists on a live node.
    for file in [DASHBOARD, ALERTS] {
        let names = metric_names_in(file);
        assert!(names.len() > 10, "{file} names only {names:?}");
        for name in names {
            assert!(
                after.has(&name),
                "{file} names {name}, which /metrics lacks"
            );
        }
    }
    // The gauges behind the alerts, on a healthy 4-masternode localnet (500 ms blocks).
    for (name, value) in [
        ("timed_ready", 1.0),
        ("timed_block_interval_seconds", 0.5),
        ("timed_masternodes", 4.0),
        ("timed_masternodes_connected", 4.0),
        ("timed_masternode_weight", 4.0),
        ("timed_masternode_connected_weight", 4.0),
        ("timed_masternode_quorum_weight", 3.0),
    ] {
        assert_eq!(after.sum(name, &[]), value, "{name}");
    }
    let (free, size) = (
        after.sum("timed_disk_available_bytes", &[]),
        after.sum("timed_disk_size_bytes", &[]),
    );
    assert!(free > 0.0 && size >= free, "disk: {free} of {size}");
    // All four nodes share this machine's clock; only the handshake's own delay separates
    // them (a bound far above any delay, far below a wrong clock).
    let offset = after.sum("timed_clock_offset_seconds", &[]);
    assert!(offset.abs() < 60.0, "clock offset {offset}");
    // RPC reports the same measurement in bitcoind's whole seconds.
    let network = call(&urls[0], "getnetworkinfo", json!([])).unwrap();
    assert!(
        network["timeoffset"].as_i64().unwrap().abs() < 60,
        "{network}"
    );
    let peers = call(&urls[0], "getpeerinfo", json!([])).unwrap();
    for p in peers.as_array().unwrap() {
        assert!(p["timeoffset"].as_i64().unwrap().abs() < 60, "{p}");
    }

    // Two of four masternodes die: node 0 holds 2 of 4 weight, no quorum, so not ready.
    for i in [1, 2] {
        signal(info.nodes[i].pid.unwrap(), "-9");
    }
    let reason = wait_for("node 0 to report no quorum", || {
        let (status, body) = ready(&m0)?;
        (status == 503).then_some(body)
    });
    assert!(reason.starts_with("no quorum"), "{reason}");
    // The gauges the alerts watch say the same.
    let alone = wait_for("the weight gauge to drop", || {
        let s = scrape(&m0);
        (s.sum("timed_masternode_connected_weight", &[]) == 2.0).then_some(s)
    });
    assert_eq!(alone.sum("timed_masternodes_connected", &[]), 2.0);
    assert_eq!(alone.sum("timed_masternode_quorum_weight", &[]), 3.0);
    assert_eq!(alone.sum("timed_ready", &[]), 0.0);
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

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", ALERTS]);
    promtool(&["test", "rules", ALERT_TESTS]);
    promtool(&["check", "config", PROMETHEUS_CONFIG]);
}

/// The dashboard imports into Grafana and provisions from a file as it is: its data source
/// is a variable (no `__inputs` to fill in), every panel uses it, ids are unique, and every
/// query, with Grafana's variables filled in, parses as PromQL.
#[test]
fn dashboard_is_self_contained_and_its_queries_parse() {
    let text = std::fs::read_to_string(repo_file(DASHBOARD)).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["uid"], "timed-nodes");
    assert!(dash["id"].is_null(), "an id would clash on import");
    assert!(dash.get("__inputs").is_none());
    let variables: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let instance = &dash["templating"]["list"][2];
    assert_eq!(
        (&instance["multi"], &instance["includeAll"]),
        (&json!(true), &json!(true))
    );

    let mut ids = std::collections::BTreeSet::new();
    let mut queries = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        let pos = &panel["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{title}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("timed_"), "{title}: {expr}");
            // Every query follows the node selection.
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr}");
            queries.push(expr.to_string());
        }
    }
    assert!(queries.len() >= 30, "{} queries", queries.len());

    // promtool parses PromQL only inside rule files: one recording rule per query.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let filled = dashboard_queries("1m", "6h");
    assert_eq!(filled.len(), queries.len());
    for (i, (_, filled)) in filled.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(filled).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

/// A Prometheus server's answer to `GET /api/v1/<path>`: its `data`, or None while it is
/// not up.
fn prometheus_api(base: &str, path: &str, query: Option<&str>) -> Option<serde_json::Value> {
    let mut request = ureq::get(&format!("{base}/api/v1/{path}"));
    if let Some(q) = query {
        request = request.query("query", q);
    }
    let body: serde_json::Value = request.call().ok()?.into_json().ok()?;
    assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
    Some(body["data"].clone())
}

/// The alerts (pending or firing) named `name` for the node whose metrics are at `target`.
fn alert_states(base: &str, name: &str, target: &str) -> Option<Vec<String>> {
    let data = prometheus_api(base, "alerts", None)?;
    Some(
        data["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["labels"]["instance"] == target)
            .map(|a| a["state"].as_str().unwrap_or("").to_string())
            .collect(),
    )
}

/// The shipped Prometheus setup against real nodes: a Prometheus server (Debian's
/// `prometheus`) scrapes a localnet under job `timed` with config/prometheus/alerts.yml
/// loaded; every dashboard query returns data, and when two of four masternodes die the
/// alerts for a lost quorum, a node not ready, no blocks and a node down go active (pending
/// is enough: their `for` windows are minutes; alerts_test.yml covers the timing).
#[test]
fn a_prometheus_server_scraping_a_localnet_has_the_dashboards_data_and_raises_the_alerts() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prometheus is not installed (Debian: apt-get install prometheus)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base_port = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&tmp.path().join("net"), base_port, &mut procs);
    let targets: Vec<String> = info
        .nodes
        .iter()
        .map(|n| {
            metrics_base(&n.rpc_url)
                .trim_start_matches("http://")
                .to_string()
        })
        .collect();
    // An RPC error, so that the dashboard's error panel has a series too.
    assert!(call(&info.nodes[0].rpc_url, "no_such_method_here", json!([])).is_err());

    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{:?}]\n\
             scrape_configs:\n  - job_name: timed\n    static_configs:\n      - targets: {:?}\n",
            repo_file(ALERTS).display().to_string(),
            targets
        ),
    )
    .unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    procs.1.push(child.id());
    procs.0.push(child);
    let prom = format!("http://{listen}");

    // Every panel of the dashboard has data from the nodes.
    for (title, query) in dashboard_queries("10s", "1m") {
        wait_for(&format!("data for panel {title:?}: {query}"), || {
            let data = prometheus_api(&prom, "query", Some(&query))?;
            (!data["result"].as_array()?.is_empty()).then_some(())
        });
    }
    // A healthy node 0 raises no quorum alert.
    let m0 = &targets[0];
    wait_for("node 0 ready, per Prometheus", || {
        let data = prometheus_api(
            &prom,
            "query",
            Some(&format!("timed_ready{{instance=\"{m0}\"}}")),
        )?;
        (data["result"][0]["value"][1] == "1").then_some(())
    });
    wait_for("no quorum alert for node 0", || {
        alert_states(&prom, "TimedMasternodeQuorumLost", m0)?
            .is_empty()
            .then_some(())
    });

    // Two of four masternodes die: node 0 keeps weight 2 of 4, below the quorum of 3.
    for i in [1, 2] {
        signal(info.nodes[i].pid.unwrap(), "-9");
    }
    for (alert, target) in [
        ("TimedMasternodeQuorumLost", m0),
        ("TimedNotReady", m0),
        ("TimedNoBlocks", m0),
        ("TimedDown", &targets[1]),
    ] {
        wait_for(&format!("{alert} active for {target}"), || {
            let states = alert_states(&prom, alert, target)?;
            states
                .iter()
                .any(|s| s == "pending" || s == "firing")
                .then_some(())
        });
    }
}
