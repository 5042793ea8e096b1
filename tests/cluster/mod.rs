//! Shared by the multi-process tests: start a localnet of real `timed` processes on free
//! loopback ports, talk to it over RPC, wait on conditions, and kill everything on drop.
#![allow(dead_code)]

pub mod wan;

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use timed::client;
use timed::localnet::LocalnetInfo;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Canonical, Network, OutPoint, SecretKey, TxOutput};

pub const NET: Network = Network::Localnet;
/// Generous: a debug build on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// Kills every process it holds when dropped, so a failing test leaves nothing running.
pub struct Procs(pub Vec<Child>, pub Vec<u32>);

impl Drop for Procs {
    fn drop(&mut self) {
        for pid in &self.1 {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port whose P2P, RPC and metrics ports for `n` nodes are all free right now.
///
/// A localnet's node `i` takes `base + 10 i` to `base + 10 i + 2`. The tests of one binary run
/// in parallel threads and a stopped localnet's ports look free while its test restarts it, so
/// free-looking is not enough: each call takes the next blocks of a range that this process
/// walks once, from a start drawn per process, and no two calls in one process share a port.
pub fn free_base_port(n: u16) -> u16 {
    /// Blocks of 100 ports from 20,000: below Linux's ephemeral range (32768+), where
    /// outgoing connections take their ports.
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = 120;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let need = (u32::from(n) * 10).div_ceil(100).max(1);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut block = *next.get_or_insert_with(|| rand::random::<u32>() % BLOCKS);
    for _ in 0..BLOCKS {
        if block + need > BLOCKS {
            block = 0;
        }
        let base = (FIRST + block * 100) as u16;
        block += need;
        let all_free = (0..n).all(|i| {
            let p = base + 10 * i;
            (p..p + 3).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            *next = Some(block);
            return base;
        }
    }
    panic!("no free port range found");
}

/// A test's temporary directory, kept (and named on stderr) when the test fails, so the
/// nodes' logs of a failure that happens once in many runs can still be read.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> TestDir {
        TestDir(tempfile::tempdir().expect("a temporary directory"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!(
                "the failed test's files are kept in {}",
                self.0.path().display()
            );
        }
    }
}

/// Each node's cookie file by its RPC URL; read at every call, since a restarted node
/// writes a new cookie.
static COOKIES: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

pub fn register_cookie(url: &str, cookie: PathBuf) {
    COOKIES.lock().unwrap().push((url.to_string(), cookie));
}

pub fn cookie_for(url: &str) -> Option<PathBuf> {
    let cookies = COOKIES.lock().unwrap();
    cookies
        .iter()
        .rev()
        .find(|(u, _)| u == url)
        .map(|(_, c)| c.clone())
}

/// Calls a node's RPC with its current cookie.
pub fn call(url: &str, method: &str, params: Value) -> Result<Value, client::ClientError> {
    let authed = match cookie_for(url) {
        Some(c) => client::with_cookie(url, &c)?,
        None => url.to_string(),
    };
    client::call(&authed, method, params, Duration::from_secs(10))
}

/// Polls `f` until it returns Some, or fails the test after `DEADLINE` with `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn height(url: &str) -> Option<u64> {
    call(url, "getblockcount", json!([])).ok()?.as_u64()
}

pub fn start_localnet(dir: &Path, base: u16, procs: &mut Procs) -> LocalnetInfo {
    start_localnet_of(4, dir, base, procs)
}

/// `timed localnet` of `nodes` masternodes in `dir`, once every node has committed a block.
pub fn start_localnet_of(nodes: u16, dir: &Path, base: u16, procs: &mut Procs) -> LocalnetInfo {
    start_localnet_with(nodes, &[], dir, base, procs)
}

/// [`start_localnet_of`] with more `timed localnet` flags (`extra`).
pub fn start_localnet_with(
    nodes: u16,
    extra: &[&str],
    dir: &Path,
    base: u16,
    procs: &mut Procs,
) -> LocalnetInfo {
    let info_path = dir.join("localnet.json");
    let _ = std::fs::remove_file(&info_path);
    std::fs::create_dir_all(dir).expect("create the localnet directory");
    // Kept beside the nodes' logs, so a localnet that fails to start says why.
    let out_path = dir.join("localnet.out");
    let out = std::fs::File::create(&out_path).expect("create localnet.out");
    let err = out.try_clone().expect("clone localnet.out");
    let child = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["localnet", "--block-interval", "500ms", "--nodes"])
        .arg(nodes.to_string())
        .arg("--base-port")
        .arg(base.to_string())
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start timed localnet");
    procs.0.push(child);
    let at = procs.0.len() - 1;
    let info: LocalnetInfo = wait_for("localnet.json", || {
        if let Ok(Some(status)) = procs.0[at].try_wait() {
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            panic!("timed localnet exited ({status}) before it was ready:\n{output}");
        }
        let text = std::fs::read_to_string(&info_path).ok()?;
        serde_json::from_str(&text).ok()
    });
    procs.1.extend(info.nodes.iter().filter_map(|n| n.pid));
    for n in &info.nodes {
        register_cookie(&n.rpc_url, n.rpc_cookie.clone());
    }
    info
}

/// A localnet of `nodes` masternodes, created by `timed localnet` and stopped again (each
/// node stopped cleanly); every node's cookie is registered.
pub fn stopped_localnet_of(nodes: u16, dir: &Path) -> LocalnetInfo {
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet_of(nodes, dir, free_base_port(nodes), &mut procs);
    let mut localnet = procs.0.remove(0);
    signal(localnet.id(), "-TERM");
    assert!(wait_exit(&mut localnet, "localnet to stop").success());
    for n in &info.nodes {
        if let Some(pid) = n.pid {
            wait_for("the node process to end", || {
                process_gone(pid).then_some(())
            });
        }
    }
    info
}

/// GET `url`: status and body (any status); None if nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    match ureq::get(url).call() {
        Ok(r) => Some((r.status(), r.into_string().ok()?)),
        Err(ureq::Error::Status(s, r)) => Some((s, r.into_string().ok()?)),
        Err(ureq::Error::Transport(_)) => None,
    }
}

/// Waits until `txid` is final at layer 1 on the node at `url`, then until it is in a block.
pub fn wait_final_and_confirmed(url: &str, txid: &str) {
    wait_for(&format!("{txid} final on {url}"), || {
        let v = call(url, "getrawtransaction", json!([txid, true])).ok()?;
        (v["instantlock"] == json!(true)).then_some(())
    });
    wait_for(&format!("{txid} in a block on {url}"), || {
        let v = call(url, "getrawtransaction", json!([txid, true])).ok()?;
        v.get("blockhash").map(|_| ())
    });
}

/// The faucet's key and its genesis output with the amount: what the first payment spends.
pub fn faucet_coins(info: &LocalnetInfo, url: &str) -> (SecretKey, OutPoint, u64) {
    let key = timed::config::keyfile::read(&info.faucet.key_file).expect("the faucet key");
    let genesis_hash = call(url, "getblockhash", json!([0])).expect("the genesis hash");
    let genesis = call(url, "getblock", json!([genesis_hash, 2])).expect("the genesis block");
    let coinbase = genesis["tx"][0]["txid"]
        .as_str()
        .and_then(|t| timed::types::Hash32::from_hex(t).ok())
        .expect("the genesis coinbase txid");
    let have = Amount::parse_decimal(&info.faucet.amount)
        .expect("the faucet amount")
        .atoms();
    (key, OutPoint::new(coinbase, 0), have)
}

pub fn send(
    url: &str,
    key: &SecretKey,
    from: OutPoint,
    have: u64,
    pay: u64,
    to: &SecretKey,
) -> (String, OutPoint, u64) {
    let fee = 10_000;
    let change = have - pay - fee;
    let tx = signed_transfer(
        NET,
        key,
        &[from],
        vec![
            TxOutput {
                amount: Amount(pay),
                key_hash: to.public_key().key_hash(),
            },
            TxOutput {
                amount: Amount(change),
                key_hash: key.public_key().key_hash(),
            },
        ],
    );
    let txid = call(
        url,
        "sendrawtransaction",
        json!([hex::encode(tx.to_bytes())]),
    )
    .expect("sendrawtransaction")
    .as_str()
    .expect("txid string")
    .to_string();
    assert_eq!(txid, tx.txid().to_hex());
    (txid, OutPoint::new(tx.txid(), 1), change)
}

pub fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    wait_for(what, || child.try_wait().ok().flatten())
}

/// Writes a config for an extra (non-masternode) node of the localnet in `dir`; `extra` is
/// appended to it (more keys).
pub fn extra_node(
    dir: &Path,
    name: &str,
    genesis: &Path,
    port: u16,
    peer: &str,
    extra: &str,
) -> (PathBuf, String) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("timed.toml");
    std::fs::write(
        &cfg,
        format!(
            "network = \"localnet\"\ndatadir = \".\"\ngenesis = {:?}\nlisten = \"127.0.0.1:{port}\"\n\
             rpc_bind = \"127.0.0.1:{}\"\npeers = [{peer:?}]\n{extra}\n",
            genesis.display().to_string(),
            port + 1
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}", port + 1);
    register_cookie(&url, d.join(".cookie"));
    (cfg, url)
}

pub fn spawn_node(cfg: &Path, log: &Path, procs: &mut Procs) -> u32 {
    spawn_node_with_env(cfg, log, &[], procs)
}

/// [`spawn_node`] with extra environment variables (such as a test clock offset).
pub fn spawn_node_with_env(
    cfg: &Path,
    log: &Path,
    env: &[(&str, String)],
    procs: &mut Procs,
) -> u32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null());
    spawn_command(cmd, log, procs)
}

/// Spawns `cmd` with its output in `log`, held by `procs`; its pid.
pub fn spawn_command(mut cmd: Command, log: &Path, procs: &mut Procs) -> u32 {
    let out = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let pid = child.id();
    procs.0.push(child);
    pid
}

/// Whether process `pid` has ended (gone, or a zombie not yet reaped). A node removes its
/// cookie and releases its data-directory lock a moment before the process (and with it the
/// database's own file lock) is gone: wait for this before opening its database.
///
/// A killed process's main thread turns zombie while its other threads may still be exiting
/// and holding the shared descriptors (the flock on the data directory with them): only a
/// zombie with no other thread left counts as gone.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.count())
                .unwrap_or(0);
            zombie && threads <= 1
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// Calls `method` once for each of `params` in one JSON-RPC batch (the node takes up to
/// 1,000), with the node's current cookie: each call's result or error, in order.
pub fn call_batch(
    url: &str,
    method: &str,
    params: &[Value],
) -> Result<Vec<Result<Value, Value>>, String> {
    let authed = match cookie_for(url) {
        Some(c) => client::with_cookie(url, &c).map_err(|e| e.to_string())?,
        None => url.to_string(),
    };
    let body: Vec<Value> = (params.iter().enumerate())
        .map(|(i, p)| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": p}))
        .collect();
    let reply: Value = ureq::post(&authed)
        .timeout(Duration::from_secs(60))
        .send_json(Value::Array(body))
        .map_err(|e| format!("{method} batch: {}", e.kind()))?
        .into_json()
        .map_err(|e| format!("{method} batch: {e}"))?;
    let mut out: Vec<Option<Result<Value, Value>>> = vec![None; params.len()];
    for r in reply.as_array().ok_or("the batch reply is not an array")? {
        let i = r["id"].as_u64().ok_or("a reply without id")? as usize;
        let slot = out.get_mut(i).ok_or("a reply with an unknown id")?;
        *slot = Some(match &r["error"] {
            Value::Null => Ok(r["result"].clone()),
            e => Err(e.clone()),
        });
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| format!("{method} batch: a call went unanswered")))
        .collect()
}

/// The last `lines` lines of a log file, for a failure message.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A localnet node as a test drives it: when the test restarts it, its pid and log follow.
pub struct LiveNode {
    pub url: String,
    pub metrics_url: String,
    pub config: PathBuf,
    /// The node's public key, hex (as block headers name their proposer).
    pub key: String,
    pub pid: u32,
    /// Its log since the last restart (the localnet's log before the first).
    pub log: PathBuf,
}

impl LiveNode {
    /// The localnet's nodes as `timed localnet` started them.
    pub fn all(info: &LocalnetInfo) -> Vec<LiveNode> {
        (info.nodes.iter())
            .map(|n| LiveNode {
                url: n.rpc_url.clone(),
                metrics_url: n.metrics_url.clone(),
                config: n.config.clone(),
                key: n.node_key.clone(),
                pid: n.pid.expect("the localnet reports node pids"),
                log: n.log.clone(),
            })
            .collect()
    }

    /// Starts the (stopped) node again from its config with `env`, logging to `log_name`
    /// beside its config.
    pub fn restart(&mut self, log_name: &str, env: &[(&str, String)], procs: &mut Procs) {
        let log = self.config.with_file_name(log_name);
        self.pid = spawn_node_with_env(&self.config, &log, env, procs);
        self.log = log;
    }
}

/// Flips one byte of block `hash`'s body in its block file (the database `db`, opened by the
/// caller, of a stopped node): what a bad disk sector does.
pub fn damage_block_body(
    storage: &timed::storage::Storage,
    db: &Path,
    hash: &timed::types::BlockHash,
) {
    use timed::storage::block_files::{file_name, Location, DIR_NAME};
    let raw = storage
        .tree(timed::storage::TreeId::Blocks)
        .get(hash.0)
        .unwrap()
        .expect("the block is stored");
    let at = Location::from_bytes(&raw).expect("a block file location");
    let path = db.join(DIR_NAME).join(file_name(at.file));
    let mut bytes = std::fs::read(&path).unwrap();
    // Past the record's 8-byte header, inside the block.
    bytes[at.offset as usize + 8 + at.len as usize / 2] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}
