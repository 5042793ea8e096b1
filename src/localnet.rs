//! `timed localnet`: a whole network of masternodes on this machine, with one command.
//!
//! ```text
//! DIR/genesis.json      the chain: N bronze masternodes and a funded faucet
//! DIR/faucet.key        the faucet's secret key
//! DIR/nodeK/timed.toml  node K's config (start it alone: timed --config DIR/nodeK/timed.toml)
//! DIR/nodeK/node.key    node K's identity and masternode operator key
//! DIR/nodeK/db/         node K's database;  DIR/nodeK/timed.log  its log
//! DIR/localnet.json     what is running: RPC URLs, P2P addresses, pids, the faucet
//! ```
//!
//! Running it again resumes the same chain; `--reset` deletes these files and starts over.
//! Ctrl-C or SIGTERM stops every node this command started, gracefully.

use crate::cli::LocalnetArgs;
use crate::client;
use crate::clock::wall_clock_ms;
use crate::config::genesis::{GenesisAllocation, GenesisFile, GenesisMasternodeEntry};
use crate::config::keyfile;
use crate::types::{Address, Network, SecretKey, Tier};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NET: Network = Network::Localnet;
/// Ports between one node and the next.
pub const PORT_STRIDE: u16 = 10;
pub const DEFAULT_NODES: u16 = 4;
pub const DEFAULT_BASE_PORT: u16 = 24200;
/// What the faucet holds at genesis, in TIME.
pub const FAUCET_TIME: &str = "1000000";
/// How long the nodes have to form a quorum and commit a block.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long nodes have to stop after SIGTERM before they are killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    #[error("node {node} exited during start-up ({status}); see its log {log}:\n{tail}")]
    NodeFailed {
        node: usize,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the nodes did not commit a block within {0:?}; see the logs in {1}")]
    NotReady(Duration, PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalnetError + '_ {
    move |source| LocalnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One node's place in the local network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalNode {
    pub name: String,
    pub rpc_url: String,
    /// Prometheus metrics and probes (`/metrics`, `/health`, `/ready`), no credentials.
    #[serde(default)]
    pub metrics_url: String,
    /// The node's block explorer (a web page, no credentials).
    #[serde(default)]
    pub explorer_url: String,
    pub p2p_addr: String,
    pub datadir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The node's RPC cookie (`__cookie__:<hex>`, HTTP Basic), rewritten at every start.
    pub rpc_cookie: PathBuf,
    pub node_key: String,
    pub pid: Option<u32>,
}

/// `DIR/localnet.json`: everything a script needs to talk to the running network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalnetInfo {
    pub network: Network,
    pub base_port: u16,
    pub block_interval_ms: u64,
    pub genesis: PathBuf,
    /// How RPC clients authenticate.
    pub rpc_auth: String,
    pub faucet: Faucet,
    pub nodes: Vec<LocalNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Faucet {
    pub address: String,
    pub key_file: PathBuf,
    pub amount: String,
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{i}"))
}

/// Refuses a base port whose range for `n` nodes would run past 65535.
fn check_port_room(base: u16, n: usize) -> Result<(), LocalnetError> {
    if u32::from(base) + u32::from(PORT_STRIDE) * n as u32 > u32::from(u16::MAX) {
        return Err(LocalnetError::Invalid(format!(
            "--base-port {base} leaves no room for {n} nodes"
        )));
    }
    Ok(())
}

/// Node `i`'s P2P and RPC ports; `check_port_room` has ruled out overflow.
fn ports(base: u16, i: usize) -> (u16, u16) {
    let p2p = base + PORT_STRIDE * i as u16;
    (p2p, p2p + 1)
}

/// Node `i`'s metrics URL (the RPC port + 1, the default `metrics_bind`) and its explorer
/// there.
fn http_urls(base: u16, i: usize) -> (String, String) {
    let metrics = format!("http://127.0.0.1:{}", ports(base, i).1 + 1);
    let explorer = format!("{metrics}{}/", crate::explorer::PREFIX);
    (metrics, explorer)
}

/// Deletes what a local network consists of in `dir`, and nothing else.
fn reset(dir: &Path) -> Result<(), LocalnetError> {
    for f in ["genesis.json", "faucet.key", "localnet.json"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    for i in 0.. {
        let d = node_dir(dir, i);
        if !d.exists() {
            break;
        }
        std::fs::remove_dir_all(&d).map_err(io(&d))?;
    }
    Ok(())
}

/// Each of `n` nodes' page cache (MiB): a share of what one node would take on this machine,
/// never below sled's 64 MiB floor of `storage::cache`.
fn node_cache_mb(n: usize) -> u64 {
    let one_node = crate::storage::cache::default_cache_bytes() >> 20;
    (one_node / n.max(1) as u64).max(64)
}

/// Writes a node's config file (always, so a changed base port takes effect).
fn write_config(dir: &Path, i: usize, n: usize, base: u16) -> Result<PathBuf, LocalnetError> {
    let (p2p, rpc) = ports(base, i);
    let peers: Vec<String> = (0..n)
        .filter(|j| *j != i)
        .map(|j| format!("127.0.0.1:{}", ports(base, j).0))
        .collect();
    let text = format!(
        "# Written by `timed localnet`; start this node alone with:\n\
         #   timed --config {cfg}\n\
         network = \"localnet\"\n\
         datadir = \".\"\n\
         genesis = \"../genesis.json\"\n\
         node_key = \"node.key\"\n\
         listen = \"127.0.0.1:{p2p}\"\n\
         rpc_bind = \"127.0.0.1:{rpc}\"\n\
         # a development network: no RPC rate limit, so `timed bench` can push it\n\
         rpc_rate_limit = 0\n\
         # the nodes share this machine: each takes a share of the cache one node would\n\
         db_cache_mb = {cache_mb}\n\
         peers = {peers:?}\n",
        cfg = node_dir(dir, i).join("timed.toml").display(),
        cache_mb = node_cache_mb(n),
    );
    let path = node_dir(dir, i).join("timed.toml");
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}

/// Creates keys and the genesis for a new network of `n` nodes (public so test harnesses that
/// wire the nodes differently, such as tests/cluster/wan, make the same network).
pub fn create(
    dir: &Path,
    n: usize,
    base: u16,
    block_interval_ms: u64,
    slot_engine_voters: Option<u64>,
) -> Result<GenesisFile, LocalnetError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let faucet = SecretKey::generate();
    keyfile::write_new(&dir.join("faucet.key"), &faucet)?;
    let mut masternodes = Vec::new();
    for i in 0..n {
        let d = node_dir(dir, i);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        let key = SecretKey::generate();
        keyfile::write_new(&d.join("node.key"), &key)?;
        masternodes.push(GenesisMasternodeEntry::new(
            Tier::Bronze,
            &key,
            Address::from_public_key(NET, &key.public_key()).to_string(),
            format!("127.0.0.1:{}", ports(base, i).0),
        ));
    }
    let genesis = GenesisFile {
        network: NET,
        timestamp_ms: wall_clock_ms(),
        block_interval_ms,
        slot_engine_voters,
        allocations: vec![GenesisAllocation {
            address: Address::from_public_key(NET, &faucet.public_key()).to_string(),
            amount: FAUCET_TIME.to_string(),
        }],
        masternodes,
    };
    let path = dir.join("genesis.json");
    let text = serde_json::to_string_pretty(&genesis)
        .map_err(|e| LocalnetError::Invalid(format!("cannot encode the genesis: {e}")))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(genesis)
}

fn read_genesis(dir: &Path) -> Result<GenesisFile, LocalnetError> {
    let path = dir.join("genesis.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    GenesisFile::from_json(&text).map_err(|e| {
        LocalnetError::Invalid(format!("{} is not a genesis file: {e}", path.display()))
    })
}

fn previous_base_port(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join("localnet.json")).ok()?;
    serde_json::from_str::<LocalnetInfo>(&text)
        .ok()
        .map(|i| i.base_port)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends `sig` to a child we started.
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects; a stale pid at worst gets ESRCH.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A node process whose config file alone decides its settings: this command's `TIMED_*`
/// variables (one `TIMED_DATADIR` would put every node in one directory) and systemd's
/// notification variables (meant for this process, not its children) are not passed on.
/// `TIMED_LOG_*` and `TIMED_DB_CACHE_MB` are, so the nodes log and size their caches as
/// asked (each node, not the whole localnet, takes that much cache).
fn node_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    for (name, _) in std::env::vars_os() {
        let drop = name.to_str().is_some_and(|n| {
            (n.starts_with("TIMED_") && !n.starts_with("TIMED_LOG_") && n != "TIMED_DB_CACHE_MB")
                || matches!(n, "NOTIFY_SOCKET" | "WATCHDOG_USEC" | "WATCHDOG_PID")
        });
        if drop {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Stops the children: SIGTERM, then SIGKILL after `STOP_TIMEOUT`.
pub fn stop_all(children: &mut [(usize, Child)]) {
    for (_, c) in children.iter_mut() {
        // A child already reaped has no pid any more: its number may be another process's.
        if matches!(c.try_wait(), Ok(None)) {
            signal(c.id(), libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (i, c) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    tracing::info!(node = *i, %status, "node stopped");
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    tracing::warn!(node = *i, "node did not stop in time; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
}

/// Polls the nodes until every one reports a committed block, or a node dies.
fn wait_ready(
    nodes: &[LocalNode],
    children: &mut [(usize, Child)],
    dir: &Path,
) -> Result<(), LocalnetError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for (i, c) in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let log = nodes[*i].log.clone();
                return Err(LocalnetError::NodeFailed {
                    node: *i,
                    status: status.to_string(),
                    tail: log_tail(&log, 20),
                    log,
                });
            }
        }
        let ready = nodes.iter().all(|n| {
            client::with_cookie(&n.rpc_url, &n.rpc_cookie)
                .and_then(|url| {
                    client::call(&url, "getblockcount", json!([]), Duration::from_secs(2))
                })
                .ok()
                .and_then(|v| v.as_u64())
                .is_some_and(|h| h >= 1)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LocalnetError::NotReady(READY_TIMEOUT, dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_table(info: &LocalnetInfo) {
    println!();
    println!(
        "{:<6} {:<24} {:<18} data dir",
        "node", "RPC URL", "P2P address"
    );
    for n in &info.nodes {
        println!(
            "{:<6} {:<24} {:<18} {}",
            n.name,
            n.rpc_url,
            n.p2p_addr,
            n.datadir.display()
        );
    }
    println!();
    println!(
        "faucet: {} ({} TIME), key {}",
        info.faucet.address,
        info.faucet.amount,
        info.faucet.key_file.display()
    );
    println!("RPC credentials: each node's <data dir>/.cookie (HTTP Basic), e.g.");
    if let Some(n) = info.nodes.first() {
        println!(
            "  timed wallet balance --rpc {} --rpc-cookie {} --address {}",
            n.rpc_url,
            n.rpc_cookie.display(),
            info.faucet.address
        );
    }
    if let Some(n) = info.nodes.first() {
        println!(
            "block explorer: {} (each node's is in localnet.json, beside its metrics URL)",
            n.explorer_url
        );
    }
    println!("stop one node: kill <pid>; start it again: timed --config <data dir>/timed.toml");
    println!("Ctrl-C stops the network.");
}

/// Runs `timed localnet` until Ctrl-C or SIGTERM.
pub async fn run(args: LocalnetArgs) -> Result<(), LocalnetError> {
    let dir = if args.dir.is_absolute() {
        args.dir.clone()
    } else {
        std::env::current_dir()
            .map_err(io(&args.dir))?
            .join(&args.dir)
    };
    if args.reset {
        reset(&dir)?;
    }
    let existing = dir.join("genesis.json").exists();
    let base = args
        .base_port
        .or_else(|| existing.then(|| previous_base_port(&dir)).flatten())
        .unwrap_or(DEFAULT_BASE_PORT);
    if !existing {
        check_port_room(base, usize::from(args.nodes.unwrap_or(DEFAULT_NODES)))?;
    }
    let genesis = if existing {
        let g = read_genesis(&dir)?;
        if let Some(n) = args.nodes {
            if usize::from(n) != g.masternodes.len() {
                return Err(LocalnetError::Invalid(format!(
                    "{} holds a localnet of {} nodes; run without --nodes to resume it, or add --reset to start a new one of {n}",
                    dir.display(),
                    g.masternodes.len()
                )));
            }
        }
        if args.slot_engine_voters.is_some() && args.slot_engine_voters != g.slot_engine_voters {
            return Err(LocalnetError::Invalid(format!(
                "{} holds a localnet whose genesis fixed slot_engine_voters at {}; run without --slot-engine-voters to resume it, or add --reset to start a new one",
                dir.display(),
                g.slot_engine_voters
                    .map_or_else(|| "the default".to_string(), |v| v.to_string())
            )));
        }
        tracing::info!(dir = %dir.display(), nodes = g.masternodes.len(), "resuming the local network");
        g
    } else {
        let n = args.nodes.unwrap_or(DEFAULT_NODES);
        create(
            &dir,
            usize::from(n),
            base,
            args.block_interval,
            args.slot_engine_voters,
        )?
    };
    let n = genesis.masternodes.len();
    check_port_room(base, n)?;
    let exe = std::env::current_exe().map_err(io(Path::new("timed")))?;
    let mut nodes = Vec::new();
    let mut children = Vec::new();
    for i in 0..n {
        let config = write_config(&dir, i, n, base)?;
        let datadir = node_dir(&dir, i);
        let log = datadir.join("timed.log");
        let (p2p, rpc) = ports(base, i);
        let key = keyfile::read(&datadir.join("node.key"))?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let child = node_command(&exe)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(&exe))?;
        let (metrics_url, explorer_url) = http_urls(base, i);
        nodes.push(LocalNode {
            name: format!("node{i}"),
            rpc_url: format!("http://127.0.0.1:{rpc}"),
            metrics_url,
            explorer_url,
            p2p_addr: format!("127.0.0.1:{p2p}"),
            datadir: datadir.clone(),
            config,
            log,
            rpc_cookie: datadir.join(crate::client::COOKIE_FILE),
            node_key: key.public_key().to_hex(),
            pid: Some(child.id()),
        });
        children.push((i, child));
    }
    println!(
        "started {n} nodes in {}; waiting for a quorum and the first block...",
        dir.display()
    );
    let ready = {
        let nodes = nodes.clone();
        let dir2 = dir.clone();
        let mut kids = std::mem::take(&mut children);
        let (r, kids) = tokio::task::spawn_blocking(move || {
            let r = wait_ready(&nodes, &mut kids, &dir2);
            (r, kids)
        })
        .await
        .map_err(|e| LocalnetError::Invalid(format!("start-up task failed: {e}")))?;
        children = kids;
        r
    };
    if let Err(e) = ready {
        stop_all(&mut children);
        return Err(e);
    }
    let faucet_key = keyfile::read(&dir.join("faucet.key"))?;
    let info = LocalnetInfo {
        network: NET,
        base_port: base,
        block_interval_ms: genesis.block_interval_ms,
        genesis: dir.join("genesis.json"),
        rpc_auth: "HTTP Basic with the contents of each node's rpc_cookie file \
                   (__cookie__:<hex>), rewritten at every start of the node"
            .into(),
        faucet: Faucet {
            address: Address::from_public_key(NET, &faucet_key.public_key()).to_string(),
            key_file: dir.join("faucet.key"),
            amount: FAUCET_TIME.to_string(),
        },
        nodes,
    };
    let path = dir.join("localnet.json");
    let text = serde_json::to_string_pretty(&info)
        .map_err(|e| LocalnetError::Invalid(format!("cannot encode localnet.json: {e}")))?;
    let tmp = dir.join("localnet.json.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    print_table(&info);
    println!("wrote {}", path.display());

    watch_until_signal(&mut children).await;
    println!("stopping {} nodes...", children.len());
    tokio::task::spawn_blocking(move || stop_all(&mut children))
        .await
        .map_err(|e| LocalnetError::Invalid(format!("stop task failed: {e}")))?;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, telling the user when a node exits meanwhile.
async fn watch_until_signal(children: &mut [(usize, Child)]) {
    let mut reported = vec![false; children.len()];
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        #[cfg(unix)]
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term_recv = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term_recv => return,
            _ = tick.tick() => {}
        }
        for (k, (i, c)) in children.iter_mut().enumerate() {
            if !reported[k] {
                if let Ok(Some(status)) = c.try_wait() {
                    reported[k] = true;
                    tracing::warn!(node = *i, %status, "node exited; start it again with `timed --config <dir>/node{i}/timed.toml`");
                }
            }
        }
    }
}
