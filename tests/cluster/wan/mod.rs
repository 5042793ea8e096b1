//! A localnet of real `timed` processes whose links have WAN delay, jitter, loss and bandwidth,
//! and can be cut and healed while the nodes run (see `proxy` for the link model).
//!
//! ```text
//!  DIR/genesis.json, DIR/nodeK/{timed.toml,node.key,timed.log}, DIR/localnet.json
//!  node A's config: listen on its own port, announce nothing, peers = its proxies A→B, A→C…
//! ```
//!
//! Each node dials the others only through the proxy of that directed pair: its configured
//! peers are its proxies, its genesis entry has no P2P address and it announces none, so no
//! node learns another's real port and no byte between two nodes bypasses a link. The nodes
//! still dial each other (both ways; they keep one session per key), back off and reconnect as
//! they do anywhere. `DIR/localnet.json` is written as `timed localnet` writes it, so
//! `timed bench --localnet DIR` drives the network.

pub mod proxy;

use super::{register_cookie, spawn_node, wait_for, Procs};
use proxy::{serve_pair, Link, LinkSpec, Links};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use timed::config::genesis::GenesisFile;
use timed::localnet::{Faucet, LocalNode, LocalnetInfo, FAUCET_TIME, PORT_STRIDE};
use timed::types::Address;
use tokio_util::sync::CancellationToken;

/// How the network is made.
#[derive(Clone, Debug)]
pub struct WanOptions {
    pub nodes: usize,
    /// Every link's settings at the start.
    pub link: LinkSpec,
    pub block_interval_ms: u64,
    /// Config lines appended to node K's `timed.toml` (`(K, lines)`).
    pub extra_config: Vec<(usize, String)>,
}

impl WanOptions {
    pub fn new(nodes: usize, link: LinkSpec) -> WanOptions {
        WanOptions {
            nodes,
            link,
            block_interval_ms: 500,
            extra_config: Vec::new(),
        }
    }
}

/// A running WAN localnet: the proxies run on their own runtime, stopped on drop; the node
/// processes are in the caller's `Procs`.
pub struct WanNet {
    pub info: LocalnetInfo,
    pub links: Arc<Links>,
    pub dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for WanNet {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl WanNet {
    pub fn url(&self, node: usize) -> &str {
        &self.info.nodes[node].rpc_url
    }

    pub fn urls(&self) -> Vec<String> {
        self.info.nodes.iter().map(|n| n.rpc_url.clone()).collect()
    }

    /// Cuts every link between the two groups, both ways (connections stay open, silent).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        self.links.cut(&proxy::between(a, b), false);
    }

    /// Cuts `links` on and off (`down`, then `up`) until the returned `Flapping` is dropped;
    /// with `reset`, every cut also closes the connections that use them.
    pub fn flap(&self, links: Vec<Link>, down: Duration, up: Duration, reset: bool) -> Flapping {
        let flapping = Flapping {
            stop: CancellationToken::new(),
            cycles: Arc::new(AtomicU64::new(0)),
        };
        let (l, stop, cycles) = (
            Arc::clone(&self.links),
            flapping.stop.clone(),
            Arc::clone(&flapping.cycles),
        );
        if let Some(rt) = &self.runtime {
            rt.spawn(async move {
                loop {
                    l.cut(&links, reset);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(down) => {}
                    }
                    l.heal(&links);
                    cycles.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(up) => {}
                    }
                }
                l.heal(&links);
            });
        }
        flapping
    }

    /// Writes a `localnet.json` naming only `nodes` into `dir` (created), so `timed bench`
    /// can drive a subset of the network (the majority side of a partition).
    pub fn info_of(&self, nodes: &[usize], dir: &Path) -> PathBuf {
        let mut info = self.info.clone();
        info.nodes = nodes.iter().map(|&i| self.info.nodes[i].clone()).collect();
        std::fs::create_dir_all(dir).expect("a directory for localnet.json");
        let path = dir.join("localnet.json");
        let text = serde_json::to_string_pretty(&info).expect("localnet.json");
        std::fs::write(&path, text).expect("write localnet.json");
        dir.to_path_buf()
    }
}

/// A link going down and up; dropping it stops that (the link is left up).
pub struct Flapping {
    stop: CancellationToken,
    cycles: Arc<AtomicU64>,
}

impl Flapping {
    /// Cuts healed so far.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }
}

impl Drop for Flapping {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Writes node `i`'s config: its own ports, no announced address, its proxies as peers.
fn write_config(dir: &Path, i: usize, p2p: u16, proxies: &[String], extra: &str) -> PathBuf {
    let d = dir.join(format!("node{i}"));
    let text = format!(
        "network = \"localnet\"\ndatadir = \".\"\ngenesis = \"../genesis.json\"\n\
         node_key = \"node.key\"\nlisten = \"127.0.0.1:{p2p}\"\nadvertise = \"\"\n\
         rpc_bind = \"127.0.0.1:{}\"\nrpc_rate_limit = 0\npeers = {proxies:?}\n{extra}\n",
        p2p + 1
    );
    let path = d.join("timed.toml");
    std::fs::write(&path, text).expect("write a node config");
    path
}

/// Creates a network in `dir` (empty), starts its proxies and nodes, and waits until every
/// node has committed a block.
pub fn start_wan(dir: &Path, opts: &WanOptions, procs: &mut Procs) -> WanNet {
    let n = opts.nodes;
    let base = super::free_base_port(n as u16);
    let mut genesis: GenesisFile =
        timed::localnet::create(dir, n, base, opts.block_interval_ms, None)
            .expect("create the network");
    // No node may learn another's real address: they meet only through the proxies.
    genesis
        .masternodes
        .iter_mut()
        .for_each(|m| m.p2p_addr.clear());
    let genesis_path = dir.join("genesis.json");
    std::fs::write(
        &genesis_path,
        serde_json::to_string_pretty(&genesis).unwrap(),
    )
    .expect("write the genesis");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the proxy runtime");
    let links = Arc::new(Links::new(opts.link));
    let p2p = |i: usize| base + PORT_STRIDE * i as u16;
    let mut proxies = vec![Vec::new(); n];
    for (a, list) in proxies.iter_mut().enumerate() {
        for b in (0..n).filter(|b| *b != a) {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("a proxy port");
            let addr = listener.local_addr().expect("the proxy's address");
            list.push(addr.to_string());
            let target = ([127, 0, 0, 1], p2p(b)).into();
            runtime.spawn(serve_pair(Arc::clone(&links), (a, b), listener, target));
        }
    }

    let mut nodes = Vec::new();
    for (i, peers) in proxies.iter().enumerate() {
        let extra: Vec<&str> = (opts.extra_config.iter())
            .filter(|(k, _)| *k == i)
            .map(|(_, l)| l.as_str())
            .collect();
        let config = write_config(dir, i, p2p(i), peers, &extra.join("\n"));
        let datadir = dir.join(format!("node{i}"));
        let log = datadir.join("timed.log");
        let pid = spawn_node(&config, &log, procs);
        let rpc_url = format!("http://127.0.0.1:{}", p2p(i) + 1);
        let rpc_cookie = datadir.join(".cookie");
        register_cookie(&rpc_url, rpc_cookie.clone());
        let key = timed::config::keyfile::read(&datadir.join("node.key")).expect("node key");
        // The node serves metrics and the explorer on its RPC port + 1.
        let metrics_url = format!("http://127.0.0.1:{}", p2p(i) + 2);
        let explorer_url = format!("{metrics_url}{}/", timed::explorer::PREFIX);
        nodes.push(LocalNode {
            name: format!("node{i}"),
            rpc_url,
            metrics_url,
            explorer_url,
            p2p_addr: format!("127.0.0.1:{}", p2p(i)),
            datadir,
            config,
            log,
            rpc_cookie,
            node_key: key.public_key().to_hex(),
            pid: Some(pid),
        });
    }
    let faucet_key = timed::config::keyfile::read(&dir.join("faucet.key")).expect("faucet key");
    let info = LocalnetInfo {
        network: super::NET,
        base_port: base,
        block_interval_ms: opts.block_interval_ms,
        genesis: genesis_path,
        rpc_auth: "HTTP Basic with each node's rpc_cookie file".into(),
        faucet: Faucet {
            address: Address::from_public_key(super::NET, &faucet_key.public_key()).to_string(),
            key_file: dir.join("faucet.key"),
            amount: FAUCET_TIME.to_string(),
        },
        nodes,
    };
    let net = WanNet {
        info,
        links,
        dir: dir.to_path_buf(),
        runtime: Some(runtime),
    };
    net.info_of(&(0..n).collect::<Vec<_>>(), dir);
    for url in net.urls() {
        wait_for(&format!("a first block on {url}"), || {
            (super::height(&url)? >= 1).then_some(())
        });
    }
    let keys: Vec<String> = net.info.nodes.iter().map(|n| n.node_key.clone()).collect();
    for (url, key) in net.urls().iter().zip(&keys) {
        wait_for(&format!("{url} settled with every other node"), || {
            settled(url, key, &keys).then_some(())
        });
    }
    net
}

/// Whether the node at `url` (key `me`) holds the session it keeps with every other node of
/// `keys`: one each, and towards every larger key the one it dialled itself (both ends keep
/// the session dialled by the smaller key). Until then a dial still under way or in backoff
/// may replace a session, and a test that cuts a link meanwhile tests that race instead:
/// with one direction cut, a replacement is accepted at one end and never at the other.
fn settled(url: &str, me: &str, keys: &[String]) -> bool {
    let Ok(peers) = super::call(url, "getpeerinfo", json!([])) else {
        return false;
    };
    let Some(peers) = peers.as_array() else {
        return false;
    };
    let others: Vec<&String> = keys.iter().filter(|k| *k != me).collect();
    others.iter().all(|k| {
        let sessions: Vec<&serde_json::Value> = (peers.iter())
            .filter(|p| p["nodekey"].as_str() == Some(k.as_str()))
            .collect();
        // Keys are lowercase hex of equal length: string order is byte order.
        let dialled_by_me = me < k.as_str();
        sessions.len() == 1 && sessions[0]["inbound"].as_bool() == Some(!dialled_by_me)
    })
}

/// Node `node`'s consensus position: (height, round).
pub fn consensus_position(url: &str) -> Option<(u64, u64)> {
    let v = super::call(url, "getconsensusinfo", json!([])).ok()?;
    Some((v["height"].as_u64()?, v["round"].as_u64()?))
}
