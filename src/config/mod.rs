//! Configuration: the raw TOML file (`NodeConfig`) and the validated values the node runs on
//! (`NodeParams`). Precedence: command-line flag (or its `TIMED_*` environment variable) >
//! config file > network default. Unknown keys are an error, never silently ignored.

pub mod genesis;

use crate::consensus::genesis::GenesisSpec;
use crate::network::peers::PeerLimits;
use crate::types::Network;
use genesis::{GenesisError, GenesisFile};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Blocks behind before a new node fast-syncs (see `NodeConfig::fast_sync_after`).
pub const DEFAULT_FAST_SYNC_AFTER: u64 = 1_000;
/// RPC requests per second per client address, unless configured.
pub const DEFAULT_RPC_RATE_LIMIT: u32 = 2_000;
/// Most configured peers.
pub const MAX_CONFIG_PEERS: usize = 1_000;

/// The config file as written: every key optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// mainnet, testnet or localnet.
    pub network: Option<Network>,
    /// Data directory; relative paths are relative to the config file.
    pub datadir: Option<PathBuf>,
    /// The genesis file (JSON); relative to the config file.
    pub genesis: Option<PathBuf>,
    /// The node's key file (its identity, and its masternode operator key); created if
    /// missing. Default: `<datadir>/node.key`.
    pub node_key: Option<PathBuf>,
    /// Where to accept peers (`host:port`); `""` for outbound only.
    pub listen: Option<String>,
    /// The address announced to peers; default: `listen`.
    pub advertise: Option<String>,
    /// Where the JSON-RPC server listens.
    pub rpc_bind: Option<String>,
    /// Peers to connect to besides the masternodes (`host:port`).
    pub peers: Option<Vec<String>>,
    pub max_inbound: Option<usize>,
    pub max_outbound: Option<usize>,
    /// A new node at least this many blocks behind its best peer downloads certified headers
    /// and a UTXO snapshot instead of replaying every block; 0 never does.
    pub fast_sync_after: Option<u64>,
    /// RPC credentials besides the cookie (both or neither).
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    /// Salted credentials in Bitcoin's `rpcauth` form, `user:salt$hmac-sha256-hex` (the
    /// output of Bitcoin's `share/rpcauth/rpcauth.py` works unchanged).
    pub rpc_auth: Option<Vec<String>>,
    /// Clients (IP addresses or CIDR ranges) allowed to call RPC besides loopback; required
    /// before `rpc_bind` may name a non-loopback address.
    pub rpc_allow_ip: Option<Vec<String>>,
    /// Where the Prometheus `/metrics`, `/health` and `/ready` endpoints listen; `""` turns
    /// them off. Default: loopback, the RPC port + 1.
    pub metrics_bind: Option<String>,
    /// Most RPC requests per second from one client address (twice that in a burst); 0 for
    /// no limit. Default 2000.
    pub rpc_rate_limit: Option<u32>,
}

/// What the command line contributes (flags and their environment variables).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub network: Option<Network>,
    pub datadir: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct NodeParams {
    pub network: Network,
    pub datadir: PathBuf,
    pub genesis: GenesisSpec,
    pub block_interval_ms: u64,
    pub node_key: PathBuf,
    pub listen: Option<SocketAddr>,
    pub advertise: String,
    pub rpc_bind: SocketAddr,
    pub peers: Vec<String>,
    pub limits: PeerLimits,
    pub fast_sync_after: u64,
    /// Configured RPC user and password, accepted besides the cookie.
    pub rpc_user: Option<(String, String)>,
    /// Salted `rpcauth` entries, checked as given (`user:salt$hash`).
    pub rpc_auth: Vec<String>,
    /// Remote clients allowed besides loopback.
    pub rpc_allow_ip: Vec<ipnet::IpNet>,
    /// The metrics/health endpoint, if on.
    pub metrics_bind: Option<SocketAddr>,
    /// RPC requests per second per client address; 0 = unlimited.
    pub rpc_rate_limit: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file: {0}")]
    File(#[from] ReadFileError),
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("config key `{key}` = {value:?} is not valid: {allowed}")]
    Invalid {
        key: &'static str,
        value: String,
        allowed: String,
    },
    #[error(
        "no genesis is defined for {0} yet: set `genesis = \"<file>\"` in the config file \
         (a localnet makes its own with `timed localnet`)"
    )]
    NoGenesis(Network),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
}

/// Why a file a person wrote could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
}

/// Reads a text file of at most `max` bytes (a larger one is refused without being read
/// whole, however it changes meanwhile).
pub fn read_bounded(path: &Path, max: u64) -> Result<String, ReadFileError> {
    use std::io::Read;
    let read_err = |source| ReadFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(max + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > max {
        return Err(ReadFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(text)
}

/// Default P2P and RPC ports of a network.
pub fn default_ports(network: Network) -> (u16, u16) {
    match network {
        Network::Mainnet => (24000, 24001),
        Network::Testnet => (24100, 24101),
        Network::Localnet => (24200, 24201),
    }
}

/// The default data directory of a network: `~/.timecoin[/<network>]`.
pub fn default_datadir(network: Network) -> PathBuf {
    let base = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".timecoin");
    match network {
        Network::Mainnet => base,
        other => base.join(other.name()),
    }
}

impl NodeConfig {
    /// Reads a config file (bounded in size, unknown keys refused).
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read_bounded(path, MAX_CONFIG_BYTES)?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

fn socket(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key,
        value: value.to_string(),
        allowed: "an IP address and port, such as 127.0.0.1:24201".into(),
    })
}

impl NodeParams {
    /// Merges the command line, the config file (if any) and the defaults, and validates.
    pub fn resolve(over: &Overrides) -> Result<NodeParams, ConfigError> {
        let (file, base) = match &over.config {
            Some(path) => (
                NodeConfig::load(path)?,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None => (NodeConfig::default(), PathBuf::new()),
        };
        let relative = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let network = over.network.or(file.network).unwrap_or(Network::Mainnet);
        let datadir = match (&over.datadir, &file.datadir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => relative(d),
            (None, None) => default_datadir(network),
        };
        let genesis_path = file.genesis.as_ref().map(relative);
        let (gfile, genesis) = match &genesis_path {
            Some(p) => GenesisFile::load(p, network)?,
            None => return Err(ConfigError::NoGenesis(network)),
        };
        let node_key = file
            .node_key
            .as_ref()
            .map(relative)
            .unwrap_or_else(|| datadir.join("node.key"));
        let (p2p_port, rpc_port) = default_ports(network);
        let listen_text = file
            .listen
            .clone()
            .unwrap_or_else(|| format!("0.0.0.0:{p2p_port}"));
        let listen = if listen_text.is_empty() {
            None
        } else {
            Some(socket("listen", &listen_text)?)
        };
        let advertise = match (&file.advertise, listen) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) if !l.ip().is_unspecified() => l.to_string(),
            _ => String::new(),
        };
        let rpc_text = file
            .rpc_bind
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{rpc_port}"));
        let rpc_bind = socket("rpc_bind", &rpc_text)?;
        let peers = file.peers.clone().unwrap_or_default();
        if peers.len() > MAX_CONFIG_PEERS {
            return Err(ConfigError::Invalid {
                key: "peers",
                value: format!("{} entries", peers.len()),
                allowed: format!("at most {MAX_CONFIG_PEERS}"),
            });
        }
        for p in &peers {
            if !p.contains(':') || p.len() > crate::network::handshake::MAX_LISTEN_ADDR_LEN {
                return Err(ConfigError::Invalid {
                    key: "peers",
                    value: p.clone(),
                    allowed: "host:port entries".into(),
                });
            }
        }
        let rpc_user = match (&file.rpc_user, &file.rpc_password) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') && p.len() >= 16 => {
                Some((u.clone(), p.clone()))
            }
            (u, _) => {
                return Err(ConfigError::Invalid {
                    key: "rpc_user",
                    value: u.clone().unwrap_or_default(),
                    allowed: "rpc_user (non-empty, no ':') and rpc_password (16 characters or \
                              more) together, or neither"
                        .into(),
                })
            }
        };
        let rpc_auth = file.rpc_auth.clone().unwrap_or_default();
        for entry in &rpc_auth {
            if !valid_rpc_auth(entry) {
                return Err(ConfigError::Invalid {
                    key: "rpc_auth",
                    value: entry.clone(),
                    allowed: "entries of the form user:salt$hash (hash = 64 hex digits), as \
                              printed by Bitcoin's rpcauth.py"
                        .into(),
                });
            }
        }
        let mut rpc_allow_ip = Vec::new();
        for entry in file.rpc_allow_ip.clone().unwrap_or_default() {
            rpc_allow_ip.push(parse_allow_ip(&entry)?);
        }
        if !rpc_bind.ip().is_loopback() && rpc_allow_ip.is_empty() {
            return Err(ConfigError::Invalid {
                key: "rpc_bind",
                value: rpc_text,
                allowed: "a loopback address, unless `rpc_allow_ip` lists the clients allowed \
                          to connect (RPC controls the node; it is never opened to everyone by \
                          default)"
                    .into(),
            });
        }
        let metrics_text = file
            .metrics_bind
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", rpc_bind.port().saturating_add(1)));
        let metrics_bind = if metrics_text.is_empty() {
            None
        } else {
            Some(socket("metrics_bind", &metrics_text)?)
        };
        let defaults = PeerLimits::default();
        let limits = PeerLimits {
            max_inbound: file.max_inbound.unwrap_or(defaults.max_inbound),
            max_outbound: file.max_outbound.unwrap_or(defaults.max_outbound),
        };
        for (key, v) in [
            ("max_inbound", limits.max_inbound),
            ("max_outbound", limits.max_outbound),
        ] {
            if v > 10_000 {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    allowed: "at most 10000".into(),
                });
            }
        }
        Ok(NodeParams {
            network,
            datadir,
            genesis,
            block_interval_ms: gfile.block_interval_ms,
            node_key,
            listen,
            advertise,
            rpc_bind,
            peers,
            limits,
            fast_sync_after: file.fast_sync_after.unwrap_or(DEFAULT_FAST_SYNC_AFTER),
            rpc_user,
            rpc_auth,
            rpc_allow_ip,
            metrics_bind,
            rpc_rate_limit: file.rpc_rate_limit.unwrap_or(DEFAULT_RPC_RATE_LIMIT),
        })
    }
}

/// `user:salt$hash`, with a 64-hex-digit HMAC-SHA256.
fn valid_rpc_auth(entry: &str) -> bool {
    let Some((user, rest)) = entry.split_once(':') else {
        return false;
    };
    let Some((salt, hash)) = rest.split_once('$') else {
        return false;
    };
    !user.is_empty()
        && !salt.is_empty()
        && hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An IP address (a single host) or a CIDR range.
fn parse_allow_ip(entry: &str) -> Result<ipnet::IpNet, ConfigError> {
    entry
        .parse::<ipnet::IpNet>()
        .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            key: "rpc_allow_ip",
            value: entry.to_string(),
            allowed: "IP addresses or CIDR ranges, such as 10.0.0.5 or 192.168.1.0/24".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = toml::from_str::<NodeConfig>("netwrok = \"localnet\"").unwrap_err();
        assert!(err.to_string().contains("netwrok"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timed.toml");
        std::fs::write(&path, "network = \"localnet\"\n").unwrap();
        let over = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        assert!(matches!(
            NodeParams::resolve(&over),
            Err(ConfigError::NoGenesis(Network::Localnet))
        ));
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert!(matches!(
            read_bounded(&path, 99),
            Err(ReadFileError::TooLarge { max: 99, .. })
        ));
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_bounded(&dir.path().join("missing.toml"), 10),
            Err(ReadFileError::Read { .. })
        ));
        assert!(matches!(
            socket("rpc_bind", "localhost"),
            Err(ConfigError::Invalid {
                key: "rpc_bind",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod example {
    /// The annotated example in `config/` parses: every key it shows is a real key.
    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../config/localnet.toml");
        let cfg: super::NodeConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.network, Some(crate::types::Network::Localnet));
        assert_eq!(cfg.peers.map(|p| p.len()), Some(3));
    }
}
