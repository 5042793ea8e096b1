//! Configuration: the raw TOML file (`NodeConfig`), what the command line adds
//! (`Overrides`), and the validated values the node runs on (`NodeParams`); and the other
//! files an operator hands the node and its clients: the genesis (`genesis`) and secret key
//! files (`keyfile`).
//!
//! ```text
//!  flags ─┐ (clap; a flag beats its TIMED_* variable)
//!  TIMED_*┴► Overrides ─┐
//!  config file ─────────┴► sources::Effective (merged, defaults filled, origin of each key)
//!                                │ validate()              │ render()
//!                                ▼                         ▼
//!                           NodeParams               timed --print-config
//! ```
//!
//! Precedence: command-line flag > `TIMED_*` environment variable > config file > network
//! default. Unknown keys are an error, never silently ignored; every value is checked before
//! the node touches its data directory, with an error naming the key, the value and what is
//! allowed.

pub mod genesis;
pub mod keyfile;
mod sources;

pub use sources::{state_directory, Effective, Origin, KEYS};

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
/// Where the explorer is served unless configured: on the metrics port.
pub const DEFAULT_EXPLORER: &str = "metrics";
/// Free space (MiB) the data directory's disk keeps before the node stops taking new work.
pub const DEFAULT_MIN_FREE_DISK_MB: u64 = 256;
/// `db_cache_mb`'s bounds: below 16 MiB sled thrashes; 1 TiB is past any machine's memory.
pub const DB_CACHE_MB: std::ops::RangeInclusive<u64> = 16..=1 << 20;
/// The backup directory's name inside the data directory, unless configured.
pub const DEFAULT_BACKUP_DIR: &str = "backups";
/// Most configured peers.
pub const MAX_CONFIG_PEERS: usize = 1_000;
/// Most connections of one direction a config may ask for.
pub const MAX_CONNECTION_LIMIT: usize = 10_000;
/// The log filter when neither `RUST_LOG` nor `log_level` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Longest `log_level` filter accepted.
pub const MAX_LOG_LEVEL_LEN: usize = 1_000;

/// How log lines are written: for people, or one JSON object a line for log shippers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The config file as written: every key optional. A key added here needs a line in
/// `sources::KEYS` (a test checks) and, for its flag, one in `cli::NodeFlags`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// Inbound connections from one IP address (loopback exempt).
    pub max_inbound_per_ip: Option<usize>,
    /// Inbound connections from one /24 (IPv4) or /64 (IPv6) subnet (loopback exempt).
    pub max_inbound_per_subnet: Option<usize>,
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
    /// The block explorer: `"metrics"` (under `/explorer/` on the metrics port, the
    /// default), `"off"`, or an address and port of its own (`"0.0.0.0:24203"`: public
    /// chain data only, so it may face the world where metrics should not).
    pub explorer: Option<String>,
    /// Most explorer requests per second from one client address (twice that in a burst); 0
    /// for no limit (behind a reverse proxy every client shares its address: limit there).
    /// Default 50.
    pub explorer_rate_limit: Option<u32>,
    /// Free space (MiB) kept on the data directory's disk: below it the node stops taking
    /// new work (submits refused, no votes, no blocks) until space returns; 0 turns the
    /// guard off. Default 256.
    pub min_free_disk_mb: Option<u64>,
    /// Memory (MiB) for the database's page cache, like bitcoind's `dbcache`. Default: an
    /// eighth of the machine's memory, between 64 MiB and 2 GiB; a localnet gives each of
    /// its nodes a share of that.
    pub db_cache_mb: Option<u64>,
    /// Log filter in `RUST_LOG` syntax (`info`, `timed::network=debug,info`); `RUST_LOG`,
    /// when set, wins, so one run can be made verbose without editing the file.
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// The only directory the RPC methods `backup` and `dumptxoutset` write into (a
    /// relative file name resolves inside it); relative to the config file. Default:
    /// `<datadir>/backups`.
    pub backup_dir: Option<PathBuf>,
    /// Per-user RPC method lists, bitcoind's `rpcwhitelist`: `user:method,method,...`; a
    /// user with entries may call only the methods every one of them lists.
    pub rpc_whitelist: Option<Vec<String>>,
    /// bitcoind's `rpcwhitelistdefault`: whether a user without an `rpc_whitelist` entry may
    /// call nothing. Default: true when any `rpc_whitelist` entry is set, else false.
    pub rpc_whitelist_default: Option<bool>,
}

/// What the command line contributes: flags and their `TIMED_*` environment variables,
/// plus the one systemd variable that changes a default.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// The config file to read (`--config`, `TIMED_CONFIG`).
    pub config: Option<PathBuf>,
    /// Keys given on the command line or in the environment; relative paths are relative to
    /// the working directory.
    pub keys: NodeConfig,
    /// Which of `keys` (and `config`) came from a `TIMED_*` variable rather than a flag.
    pub from_env: Vec<&'static str>,
    /// `$STATE_DIRECTORY`, set by systemd for a unit with `StateDirectory=`: the default data
    /// directory when no flag, variable or file names one.
    pub state_directory: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct NodeParams {
    pub network: Network,
    pub datadir: PathBuf,
    pub genesis: GenesisSpec,
    pub block_interval_ms: u64,
    /// From the genesis file (`GenesisFile::slot_engine_voters`), or the node's default.
    pub slot_engine_voters: usize,
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
    /// Where the block explorer is served, if anywhere.
    pub explorer: ExplorerPlace,
    /// Explorer requests per second per client address; 0 = unlimited.
    pub explorer_rate_limit: u32,
    /// Free space (bytes) kept on the data directory's disk; 0 = no guard.
    pub min_free_disk: u64,
    /// The database's page cache, in bytes.
    pub db_cache: u64,
    /// The log filter from the config (`RUST_LOG` overrides it when the logger starts).
    pub log_level: String,
    pub log_format: LogFormat,
    /// Where RPC-requested backup and snapshot files go (created at start if missing).
    pub backup_dir: PathBuf,
    /// Which RPC methods each user may call.
    pub rpc_whitelist: crate::rpc_api::whitelist::Whitelist,
}

/// Where the block explorer is served (config key `explorer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplorerPlace {
    Off,
    /// Under `/explorer/` on the metrics port (off too when metrics are off).
    Metrics,
    /// On a port of its own, which serves nothing else.
    Own(SocketAddr),
}

impl ExplorerPlace {
    fn parse(value: &str) -> Result<ExplorerPlace, ConfigError> {
        match value {
            "off" | "" => Ok(ExplorerPlace::Off),
            "metrics" => Ok(ExplorerPlace::Metrics),
            addr => addr.parse().map(ExplorerPlace::Own).map_err(|_| {
                invalid(
                    "explorer",
                    addr,
                    "\"metrics\" (on the metrics port), \"off\", or an IP address and port of its \
                     own, such as 127.0.0.1:24203",
                )
            }),
        }
    }
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
        "no genesis is defined for {0} yet: set `genesis = \"<file>\"` in the config file, \
         --genesis FILE or TIMED_GENESIS (a localnet makes its own with `timed localnet`)"
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
        NodeConfig::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the text of a config file (unknown keys refused); the error says where.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

fn invalid(key: &'static str, value: impl Into<String>, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.into(),
        allowed: allowed.into(),
    }
}

/// The per-source inbound caps: at least one connection per IP (0 would refuse every
/// inbound peer; `max_inbound = 0` says that), and a subnet holds at least one IP's share.
fn check_per_source_caps(limits: &PeerLimits) -> Result<(), ConfigError> {
    if limits.max_inbound_per_ip == 0 {
        return Err(invalid(
            "max_inbound_per_ip",
            "0",
            "at least 1 (to refuse inbound peers, set max_inbound = 0)",
        ));
    }
    if limits.max_inbound_per_subnet < limits.max_inbound_per_ip {
        return Err(invalid(
            "max_inbound_per_subnet",
            limits.max_inbound_per_subnet.to_string(),
            format!(
                "at least max_inbound_per_ip ({}): a subnet holds that IP",
                limits.max_inbound_per_ip
            ),
        ));
    }
    Ok(())
}

fn socket(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            value,
            "an IP address and port, such as 127.0.0.1:24201",
        )
    })
}

/// `""` (off) or a socket address.
fn optional_socket(key: &'static str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value.is_empty() {
        Ok(None)
    } else {
        socket(key, value).map(Some)
    }
}

/// A path that must name something: an empty one would silently mean the working directory.
fn non_empty_path(key: &'static str, path: Option<&PathBuf>) -> Result<PathBuf, ConfigError> {
    match path {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => Err(invalid(key, "", "a file or directory path")),
    }
}

/// `host:port`, short enough for a handshake to carry.
fn host_port(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let max = crate::network::handshake::MAX_LISTEN_ADDR_LEN;
    let ok = value.len() <= max
        && value
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            value,
            format!("host:port (at most {max} characters), such as 203.0.113.7:24000"),
        ))
    }
}

impl NodeParams {
    /// Merges the command line, the config file (if any) and the defaults, and validates.
    pub fn resolve(over: &Overrides) -> Result<NodeParams, ConfigError> {
        Effective::gather(over)?.validate()
    }

    /// Layer 1's rules for this chain.
    pub fn finality_config(&self) -> crate::consensus::finality::FinalityConfig {
        crate::consensus::finality::FinalityConfig {
            slot_engine_voters: self.slot_engine_voters,
            ..crate::consensus::finality::FinalityConfig::new(self.network)
        }
    }

    /// Checks every key of a merged config whose defaults are filled in
    /// (`Effective::values`), and loads the genesis file.
    fn validate(cfg: &NodeConfig) -> Result<NodeParams, ConfigError> {
        let network = cfg.network.unwrap_or(Network::Mainnet);
        let datadir = non_empty_path("datadir", cfg.datadir.as_ref())?;
        let node_key = non_empty_path("node_key", cfg.node_key.as_ref())?;
        let listen_text = cfg.listen.clone().unwrap_or_default();
        let listen = optional_socket("listen", &listen_text)?;
        let advertise = cfg.advertise.clone().unwrap_or_default();
        if !advertise.is_empty() {
            host_port("advertise", &advertise)?;
        }
        let rpc_text = cfg.rpc_bind.clone().unwrap_or_default();
        let rpc_bind = socket("rpc_bind", &rpc_text)?;
        let peers = cfg.peers.clone().unwrap_or_default();
        if peers.len() > MAX_CONFIG_PEERS {
            return Err(invalid(
                "peers",
                format!("{} entries", peers.len()),
                format!("at most {MAX_CONFIG_PEERS}"),
            ));
        }
        for p in &peers {
            host_port("peers", p)?;
        }
        let rpc_user = match (&cfg.rpc_user, &cfg.rpc_password) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') && p.len() >= 16 => {
                Some((u.clone(), p.clone()))
            }
            (u, _) => {
                return Err(invalid(
                    "rpc_user",
                    u.clone().unwrap_or_default(),
                    "rpc_user (non-empty, no ':') and rpc_password (16 characters or more) \
                     together, or neither",
                ))
            }
        };
        let rpc_auth = cfg.rpc_auth.clone().unwrap_or_default();
        for entry in &rpc_auth {
            if !valid_rpc_auth(entry) {
                return Err(invalid(
                    "rpc_auth",
                    entry.clone(),
                    "entries of the form user:salt$hash (hash = 64 hex digits), as printed by \
                     Bitcoin's rpcauth.py",
                ));
            }
        }
        let mut rpc_allow_ip = Vec::new();
        for entry in cfg.rpc_allow_ip.clone().unwrap_or_default() {
            rpc_allow_ip.push(parse_allow_ip(&entry)?);
        }
        if !rpc_bind.ip().is_loopback() && rpc_allow_ip.is_empty() {
            return Err(invalid(
                "rpc_bind",
                rpc_text,
                "a loopback address, unless `rpc_allow_ip` lists the clients allowed to connect \
                 (RPC controls the node; it is never opened to everyone by default)",
            ));
        }
        let metrics_bind =
            optional_socket("metrics_bind", cfg.metrics_bind.as_deref().unwrap_or(""))?;
        let explorer = ExplorerPlace::parse(cfg.explorer.as_deref().unwrap_or(DEFAULT_EXPLORER))?;
        let defaults = PeerLimits::default();
        let limits = PeerLimits {
            max_inbound: cfg.max_inbound.unwrap_or(defaults.max_inbound),
            max_outbound: cfg.max_outbound.unwrap_or(defaults.max_outbound),
            max_inbound_per_ip: cfg
                .max_inbound_per_ip
                .unwrap_or(defaults.max_inbound_per_ip),
            max_inbound_per_subnet: cfg
                .max_inbound_per_subnet
                .unwrap_or(defaults.max_inbound_per_subnet),
            ..defaults.clone()
        };
        for (key, v) in [
            ("max_inbound", limits.max_inbound),
            ("max_outbound", limits.max_outbound),
            ("max_inbound_per_ip", limits.max_inbound_per_ip),
            ("max_inbound_per_subnet", limits.max_inbound_per_subnet),
        ] {
            if v > MAX_CONNECTION_LIMIT {
                return Err(invalid(
                    key,
                    v.to_string(),
                    format!("at most {MAX_CONNECTION_LIMIT}"),
                ));
            }
        }
        check_per_source_caps(&limits)?;
        let db_cache_mb = cfg
            .db_cache_mb
            .unwrap_or_else(|| crate::storage::cache::default_cache_bytes() >> 20);
        if !DB_CACHE_MB.contains(&db_cache_mb) {
            let (lo, hi) = (DB_CACHE_MB.start(), DB_CACHE_MB.end());
            let allowed = format!("from {lo} to {hi} (MiB)");
            return Err(invalid("db_cache_mb", db_cache_mb.to_string(), allowed));
        }
        let log_level = cfg
            .log_level
            .clone()
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
        check_log_level(&log_level)?;
        let backup_dir = non_empty_path("backup_dir", cfg.backup_dir.as_ref())?;
        let rpc_whitelist = crate::rpc_api::whitelist::Whitelist::parse(
            &cfg.rpc_whitelist.clone().unwrap_or_default(),
            cfg.rpc_whitelist_default,
        )
        .map_err(|(entry, why)| invalid("rpc_whitelist", entry, why))?;
        // The genesis last: every other key is reported even on mainnet, which has none yet.
        let genesis_path = cfg
            .genesis
            .as_ref()
            .ok_or(ConfigError::NoGenesis(network))?;
        let genesis_path = non_empty_path("genesis", Some(genesis_path))?;
        let (_, genesis) = GenesisFile::load(&genesis_path, network)?;
        let rules = genesis.rules;
        Ok(NodeParams {
            network,
            datadir,
            genesis,
            block_interval_ms: rules.block_interval_ms,
            slot_engine_voters: usize::try_from(rules.slot_engine_voters).unwrap_or(usize::MAX),
            node_key,
            listen,
            advertise,
            rpc_bind,
            peers,
            limits,
            fast_sync_after: cfg.fast_sync_after.unwrap_or(DEFAULT_FAST_SYNC_AFTER),
            rpc_user,
            rpc_auth,
            rpc_allow_ip,
            metrics_bind,
            rpc_rate_limit: cfg.rpc_rate_limit.unwrap_or(DEFAULT_RPC_RATE_LIMIT),
            explorer,
            explorer_rate_limit: cfg
                .explorer_rate_limit
                .unwrap_or(crate::explorer::DEFAULT_RATE_LIMIT),
            min_free_disk: cfg
                .min_free_disk_mb
                .unwrap_or(DEFAULT_MIN_FREE_DISK_MB)
                .saturating_mul(1 << 20),
            db_cache: db_cache_mb << 20,
            log_level,
            log_format: cfg.log_format.unwrap_or_default(),
            backup_dir,
            rpc_whitelist,
        })
    }
}

/// A filter in `RUST_LOG` syntax that the logger will accept.
fn check_log_level(filter: &str) -> Result<(), ConfigError> {
    let allowed = "a filter in RUST_LOG syntax: a level (error, warn, info, debug, trace) or \
                   comma-separated target=level pairs, such as timed::network=debug,info";
    // A bare word is a valid directive (a target at every level): `verbose` would silently
    // mean "everything from a module named verbose", so a bare word must be a level.
    let bare_word_not_a_level = filter.split(',').any(|d| {
        let d = d.trim();
        !d.contains('=') && d.parse::<tracing::level_filters::LevelFilter>().is_err()
    });
    if filter.is_empty() || filter.len() > MAX_LOG_LEVEL_LEN || bare_word_not_a_level {
        return Err(invalid("log_level", filter, allowed));
    }
    parse_log_filter(filter)
        .map(|_| ())
        .map_err(|e| invalid("log_level", filter, format!("{allowed} ({e})")))
}

/// Parses a log filter in `RUST_LOG` syntax, each comma-separated directive trimmed first.
/// tracing-subscriber 0.3.23 walks a directive's trimmed text but slices the untrimmed one
/// (tokio-rs/tracing#3297): a directive after `, ` was refused, and one with a non-ASCII
/// character after leading white space panicked (found by the `config_file` fuzz target).
pub fn parse_log_filter(
    text: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    let directives: Vec<&str> = text.split(',').map(str::trim).collect();
    // Field values match as plain text, not as regular expressions: compiling the one in a
    // fuzzed 562-byte filter took over 10 s (`config_file` fuzz target), and a filter is a
    // setting, not a program.
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(directives.join(","))
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
mod tests;
