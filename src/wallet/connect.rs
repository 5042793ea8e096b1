//! From command-line flags to a node's RPC endpoint, for `timed wallet` and `timed rpc`:
//! which URL, which credentials, and what to tell the user when the node is not there.
//!
//! ```text
//! --rpc URL ──────────────┐ else the config file's rpc_bind, else 127.0.0.1:<network's port>
//! --rpc-cookie FILE ──────┤ first credentials found win:
//! --rpc-user/--rpc-password (TIMED_RPC_USER / TIMED_RPC_PASSWORD)
//! user:password@ in --rpc │
//! <datadir>/.cookie ──────┘ datadir: --datadir, else the config file's, else the network's
//!                           (only when the URL is that data directory's node: its rpc_bind)
//! ```
//!
//! The cookie is the local node's admin password: it goes only to the address that node
//! listens on. `--rpc` pointed anywhere else (another machine, another port) without
//! credentials sends none, so a mistyped or hostile URL never learns it.

use super::args::RpcArgs;
use crate::client::COOKIE_FILE;
use crate::client::{ClientError, Credentials, Endpoint};
use crate::config::{default_datadir, default_ports, ConfigError, NodeConfig, Overrides};
use crate::types::Network;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a single call may take (a `send` waits for the node's verdict).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--rpc-user needs --rpc-password (or TIMED_RPC_PASSWORD)")]
    MissingPassword,
    #[error("--rpc-password needs --rpc-user (or TIMED_RPC_USER)")]
    MissingUser,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the node at {url} runs {node}, but --network (or the config file) says {flags}")]
    WrongNetwork {
        url: String,
        node: Network,
        flags: Network,
    },
    #[error("the node at {url} reports a chain this tool does not know: {chain}")]
    UnknownChain { url: String, chain: String },
}

/// A node to talk to, and the network the flags name (if they name one).
#[derive(Clone, Debug)]
pub struct Node {
    pub endpoint: Endpoint,
    /// `--network`, or the config file's `network`.
    pub flag_network: Option<Network>,
}

/// What the config file given with `--config` says about reaching its node.
#[derive(Default)]
struct FileHints {
    network: Option<Network>,
    datadir: Option<PathBuf>,
    rpc_bind: Option<String>,
}

fn file_hints(config: Option<&Path>) -> Result<FileHints, ConfigError> {
    let Some(path) = config else {
        return Ok(FileHints::default());
    };
    let file = NodeConfig::load(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(FileHints {
        network: file.network,
        // Relative to the config file, as the node reads it.
        datadir: file.datadir.map(|d| base.join(d)),
        rpc_bind: file.rpc_bind,
    })
}

/// An `http://` URL for a node's `rpc_bind` (an unspecified address means this machine).
fn url_for_bind(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => format!("http://{bind}"),
    }
}

/// Resolves the flags into a [`Node`]; nothing is sent yet.
pub fn connect(globals: &Overrides, args: &RpcArgs) -> Result<Node, ConnectError> {
    let file = file_hints(globals.config.as_deref())?;
    let flag_network = globals.keys.network.or(file.network);
    let network = flag_network.unwrap_or(Network::Mainnet);
    // The URL of the node that owns the data directory's cookie.
    let own_url = match &file.rpc_bind {
        Some(bind) => url_for_bind(bind),
        None => format!("http://127.0.0.1:{}", default_ports(network).1),
    };
    let url = args.rpc.clone().unwrap_or_else(|| own_url.clone());
    let datadir = globals
        .keys
        .datadir
        .clone()
        .or(file.datadir)
        .unwrap_or_else(|| default_datadir(network));
    let start = match &globals.config {
        Some(c) => format!("timed --config {}", c.display()),
        None => match network {
            Network::Mainnet => "timed".to_string(),
            Network::Testnet => "timed --network testnet".to_string(),
            Network::Localnet => "timed localnet".to_string(),
        },
    };
    let mut endpoint = Endpoint::from_url(&url).with_hint(format!(
        "\n  is timed running? start it with `{start}`, or point --rpc at a running node"
    ));
    match (&args.rpc_cookie, &args.rpc_user, &args.rpc_password) {
        (Some(cookie), _, _) => {
            endpoint = endpoint.with_credentials(Credentials::from_cookie(cookie)?);
        }
        (None, Some(user), Some(password)) => {
            endpoint = endpoint.with_credentials(Credentials::new(
                user.clone(),
                password.clone(),
                format!("--rpc-user {user}"),
            ));
        }
        (None, Some(_), None) => return Err(ConnectError::MissingPassword),
        (None, None, Some(_)) => return Err(ConnectError::MissingUser),
        (None, None, None) if endpoint.has_url_credentials() => {}
        (None, None, None) if !same_node(&url, &own_url) => {
            endpoint = endpoint.with_no_credentials_note(format!(
                "no credentials: the local node's cookie is only sent to its own RPC address \
                 ({own_url}); for another node give --rpc-user/--rpc-password or --rpc-cookie"
            ));
        }
        (None, None, None) => {
            // The local node's cookie, if this user can read it; if not, the call goes out
            // without credentials and a refusal says which cookie was looked for.
            let cookie = datadir.join(COOKIE_FILE);
            endpoint = match Credentials::from_cookie(&cookie) {
                Ok(c) => endpoint.with_credentials(c),
                Err(_) if !cookie.exists() => endpoint.with_no_credentials_note(format!(
                    "no credentials, as there is no cookie at {}",
                    cookie.display()
                )),
                Err(e) => endpoint.with_no_credentials_note(format!("no credentials: {e}")),
            };
        }
    }
    Ok(Node {
        endpoint,
        flag_network,
    })
}

/// The host and port of an `http://` URL (no credentials, no path); the port defaults to 80.
fn authority(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let host_port = rest.split(['/', '?', '#']).next()?;
    let host_port = host_port.rsplit('@').next()?;
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(port) => (h, port),
            Err(_) => return None,
        },
        _ => (host_port, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `url` names the node listening at `own_url`: the same port and, as IP literals (or
/// `localhost`), the same address; a wildcard bind is reached on any loopback address. Host
/// names are never resolved: only a literal match gets the cookie.
fn same_node(url: &str, own_url: &str) -> bool {
    use std::net::IpAddr;
    let (Some((host, port)), Some((own_host, own_port))) = (authority(url), authority(own_url))
    else {
        return false;
    };
    if port != own_port {
        return false;
    }
    let ip = |h: &str| -> Option<IpAddr> {
        if h == "localhost" {
            return Some(IpAddr::from([127, 0, 0, 1]));
        }
        h.parse().ok()
    };
    match (ip(&host), ip(&own_host)) {
        (Some(a), Some(b)) => a == b || (a.is_loopback() && b.is_loopback()),
        _ => false,
    }
}

impl Node {
    /// The network the node runs (its `getblockchaininfo.chain`), checked against the flags:
    /// signatures commit to the network, so a mismatch would only make invalid transactions.
    pub fn network(&self) -> Result<Network, ConnectError> {
        let info = self
            .endpoint
            .call("getblockchaininfo", json!([]), CALL_TIMEOUT)?;
        let url = self.endpoint.display_url();
        let chain = info["chain"].as_str().unwrap_or_default();
        let node: Network = chain.parse().map_err(|_| ConnectError::UnknownChain {
            url: url.clone(),
            chain: info["chain"].to_string(),
        })?;
        match self.flag_network {
            Some(flags) if flags != node => Err(ConnectError::WrongNetwork { url, node, flags }),
            _ => Ok(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rpc: Option<&str>) -> RpcArgs {
        RpcArgs {
            rpc: rpc.map(str::to_string),
            rpc_cookie: None,
            rpc_user: None,
            rpc_password: None,
        }
    }

    #[test]
    fn defaults_follow_the_network_and_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let globals = Overrides {
            keys: crate::config::NodeConfig {
                network: Some(Network::Testnet),
                datadir: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
            ..Default::default()
        };
        let node = connect(&globals, &args(None)).unwrap();
        assert_eq!(node.endpoint.display_url(), "http://127.0.0.1:24101");

        let cfg = dir.path().join("timed.toml");
        std::fs::write(
            &cfg,
            "network = \"localnet\"\ndatadir = \"d\"\nrpc_bind = \"0.0.0.0:25011\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d").join(COOKIE_FILE), "__cookie__:ab\n").unwrap();
        let globals = Overrides {
            config: Some(cfg),
            ..Default::default()
        };
        let node = connect(&globals, &args(None)).unwrap();
        assert_eq!(node.endpoint.display_url(), "http://127.0.0.1:25011");
        assert_eq!(node.flag_network, Some(Network::Localnet));
        assert!(format!("{:?}", node.endpoint).contains("the cookie"));
    }

    /// Accepts one HTTP request, answers 401, and returns its `Authorization` header.
    fn recording_server() -> (String, std::thread::JoinHandle<Option<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") {
                        auth = Some(value.trim().to_string());
                    }
                }
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            auth
        });
        (url, handle)
    }

    /// The Authorization header a `getblockchaininfo` through `connect` sends to a recording
    /// server, with a data directory holding a cookie and `rpc_bind` in the config file.
    fn header_sent(
        rpc_bind: &str,
        rpc: Option<&str>,
        server: (String, std::thread::JoinHandle<Option<String>>),
    ) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("timed.toml");
        std::fs::write(
            &cfg,
            format!("network = \"localnet\"\ndatadir = \"d\"\nrpc_bind = \"{rpc_bind}\"\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(
            dir.path().join("d").join(COOKIE_FILE),
            "__cookie__:5ecret\n",
        )
        .unwrap();
        let globals = Overrides {
            config: Some(cfg),
            ..Default::default()
        };
        let node = connect(&globals, &args(rpc)).unwrap();
        let refused = node
            .endpoint
            .call("getblockchaininfo", json!([]), Duration::from_secs(10));
        assert!(refused.is_err());
        server.1.join().unwrap()
    }

    #[test]
    fn the_cookie_goes_only_to_its_own_node() {
        // --rpc naming another node: no credentials leave.
        let server = recording_server();
        let other = server.0.clone();
        assert_eq!(header_sent("127.0.0.1:1", Some(&other), server), None);
        // The data directory's own node (by its rpc_bind, or named by --rpc): the cookie.
        let server = recording_server();
        let bind = server.0.trim_start_matches("http://").to_string();
        let sent = header_sent(&bind, None, server).expect("the cookie is sent");
        let expected = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "__cookie__:5ecret",
        );
        assert_eq!(sent, format!("Basic {expected}"));
        let server = recording_server();
        let bind = server.0.trim_start_matches("http://").to_string();
        let url = server.0.replace("127.0.0.1", "localhost");
        assert!(header_sent(&bind, Some(&url), server).is_some());
    }

    #[test]
    fn same_node_compares_literal_addresses_and_ports() {
        let own = "http://127.0.0.1:24201";
        assert!(same_node("http://127.0.0.1:24201", own));
        assert!(same_node("http://localhost:24201/", own));
        assert!(same_node("http://127.0.0.1:24201/wallet", own));
        assert!(!same_node("http://127.0.0.1:24202", own));
        assert!(!same_node("http://example.com:24201", own));
        assert!(!same_node("http://10.0.0.1:24201", own));
        assert!(!same_node("https://127.0.0.1:24201", own));
        assert!(same_node("http://[::1]:24201", "http://[::1]:24201"));
    }

    #[test]
    fn user_without_password_and_missing_cookie_are_refused() {
        let globals = Overrides::default();
        let mut a = args(Some("http://127.0.0.1:1"));
        a.rpc_user = Some("alice".into());
        assert!(matches!(
            connect(&globals, &a),
            Err(ConnectError::MissingPassword)
        ));
        let mut a = args(Some("http://127.0.0.1:1"));
        a.rpc_cookie = Some(PathBuf::from("/nonexistent/.cookie"));
        assert!(matches!(
            connect(&globals, &a),
            Err(ConnectError::Client(ClientError::Cookie { .. }))
        ));
    }
}
