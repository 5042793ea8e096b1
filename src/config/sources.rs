//! Where each configuration value comes from: the layers merged key by key (flag or
//! `TIMED_*` variable, then the config file, then the network default), the origin of every
//! value kept for `timed --print-config`.
//!
//! A list key (`peers`, `rpc_auth`, `rpc_allow_ip`, `rpc_whitelist`) is replaced whole by a higher layer, never
//! appended to: what `--print-config` shows is exactly what the node uses.

use super::{
    default_datadir, default_ports, ConfigError, LogFormat, NodeConfig, NodeParams, Overrides,
    DEFAULT_FAST_SYNC_AFTER, DEFAULT_LOG_LEVEL,
};
use crate::network::peers::PeerLimits;
use crate::types::Network;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Calls `$m!` with every key of `NodeConfig`, in the order `--print-config` shows them.
macro_rules! with_keys {
    ($m:ident) => {
        $m!(
            network,
            datadir,
            genesis,
            node_key,
            listen,
            advertise,
            peers,
            max_inbound,
            max_outbound,
            max_inbound_per_ip,
            max_inbound_per_subnet,
            fast_sync_after,
            rpc_bind,
            rpc_user,
            rpc_password,
            rpc_auth,
            rpc_allow_ip,
            metrics_bind,
            rpc_rate_limit,
            explorer,
            explorer_rate_limit,
            min_free_disk_mb,
            db_cache_mb,
            log_level,
            log_format,
            backup_dir,
            rpc_whitelist,
            rpc_whitelist_default
        )
    };
}

macro_rules! key_names {
    ($($key:ident),*) => { &[$(stringify!($key)),*] };
}

/// Every config key (a test checks this against `NodeConfig`'s fields).
pub const KEYS: &[&str] = with_keys!(key_names);

/// Keys whose value `--print-config` never shows.
const SECRET_KEYS: &[&str] = &["rpc_password"];

/// Where a value came from, highest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--rpc-bind`).
    Flag,
    /// Its environment variable (`TIMED_RPC_BIND`).
    Env,
    /// The config file.
    File,
    /// systemd's `$STATE_DIRECTORY` (the data directory only).
    StateDirectory,
    /// The network's default, or one derived from other keys.
    Default,
}

/// The merged configuration before validation: every key's value and where it came from.
#[derive(Clone, Debug)]
pub struct Effective {
    /// The config file read, named by a flag (`Origin::Flag`) or `TIMED_CONFIG` (`Origin::Env`).
    pub config_file: Option<(PathBuf, Origin)>,
    /// Every key by precedence, defaults filled in; keys without a default (`genesis`,
    /// `rpc_user`, `rpc_password`) stay unset unless given.
    pub values: NodeConfig,
    origins: BTreeMap<&'static str, Origin>,
}

impl Effective {
    /// Reads the config file named by `over` (if any) and merges it under the command line.
    /// Fails only when the file cannot be read or parsed; values are checked by `validate`.
    pub fn gather(over: &Overrides) -> Result<Effective, ConfigError> {
        let (file, config_file) = match &over.config {
            Some(path) => {
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let origin = if over.from_env.contains(&"config") {
                    Origin::Env
                } else {
                    Origin::Flag
                };
                (
                    relative_to(NodeConfig::load(path)?, &base),
                    Some((path.clone(), origin)),
                )
            }
            None => (NodeConfig::default(), None),
        };
        let mut values = NodeConfig::default();
        let mut origins = BTreeMap::new();
        macro_rules! merge {
            ($($key:ident),*) => {$(
                let key = stringify!($key);
                if over.keys.$key.is_some() {
                    values.$key = over.keys.$key.clone();
                    let origin = if over.from_env.contains(&key) { Origin::Env } else { Origin::Flag };
                    origins.insert(key, origin);
                } else if file.$key.is_some() {
                    values.$key = file.$key.clone();
                    origins.insert(key, Origin::File);
                }
            )*};
        }
        with_keys!(merge);
        fill_defaults(&mut values, &mut origins, over.state_directory.as_deref());
        Ok(Effective {
            config_file,
            values,
            origins,
        })
    }

    /// Where `key`'s value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Checks every value and loads the genesis file.
    pub fn validate(&self) -> Result<NodeParams, ConfigError> {
        NodeParams::validate(&self.values)
    }

    /// The effective configuration as a TOML file, each line commented with its origin, and
    /// whether the node would start with it (`timed --print-config`).
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# timed: effective configuration (flag > TIMED_* variable > config file > default)\n",
        );
        match &self.config_file {
            Some((path, origin)) => {
                let by = match origin {
                    Origin::Env => "env TIMED_CONFIG",
                    _ => "flag --config",
                };
                out.push_str(&format!("# config file: {} ({by})\n", path.display()));
            }
            None => out.push_str("# config file: none\n"),
        }
        let fields = match serde_json::to_value(&self.values) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => serde_json::Map::new(),
            Err(e) => {
                out.push_str(&format!("# cannot show the values: {e}\n"));
                serde_json::Map::new()
            }
        };
        for &key in KEYS {
            let (line, from) = match fields.get(key) {
                None | Some(serde_json::Value::Null) => {
                    (format!("# {key} is not set"), "no default".to_string())
                }
                Some(_) if SECRET_KEYS.contains(&key) => {
                    (format!("# {key} = (hidden)"), self.describe(key))
                }
                Some(v) => (format!("{key} = {}", toml_text(v)), self.describe(key)),
            };
            out.push_str(&format!("{line:<48} # {from}\n"));
        }
        match self.validate() {
            Ok(_) => out.push_str("# valid: the node starts with these values\n"),
            Err(e) => out.push_str(&format!("# NOT VALID, the node refuses to start: {e}\n")),
        }
        out
    }

    fn describe(&self, key: &str) -> String {
        match self.origin(key) {
            Origin::Flag => format!("flag --{}", key.replace('_', "-")),
            Origin::Env => format!("env TIMED_{}", key.to_uppercase()),
            Origin::File => match &self.config_file {
                Some((path, _)) => format!("config file {}", path.display()),
                None => "config file".into(),
            },
            Origin::StateDirectory => "systemd $STATE_DIRECTORY".into(),
            Origin::Default => "default".into(),
        }
    }
}

/// A JSON value (from a `NodeConfig` field) written as TOML.
fn toml_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => toml::Value::String(s.clone()).to_string(),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_text).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Makes the file's relative paths relative to the file's directory. An empty path stays
/// empty, so validation reports it instead of it silently naming that directory.
fn relative_to(mut file: NodeConfig, base: &Path) -> NodeConfig {
    for path in [
        &mut file.datadir,
        &mut file.genesis,
        &mut file.node_key,
        &mut file.backup_dir,
    ]
    .into_iter()
    .flatten()
    {
        if path.is_relative() && !path.as_os_str().is_empty() {
            // Through components(): `datadir = "."` names the directory, not `dir/.`.
            *path = base.join(&*path).components().collect();
        }
    }
    file
}

/// Fills each unset key with its network default, derived from the keys already set where
/// the default depends on them (the key file lives in the data directory, the metrics port
/// follows the RPC port).
fn fill_defaults(
    v: &mut NodeConfig,
    origins: &mut BTreeMap<&'static str, Origin>,
    state_directory: Option<&Path>,
) {
    let network = *v.network.get_or_insert(Network::Mainnet);
    if v.datadir.is_none() {
        v.datadir = Some(match state_directory {
            Some(dir) => {
                origins.insert("datadir", Origin::StateDirectory);
                dir.to_path_buf()
            }
            None => default_datadir(network),
        });
    }
    let datadir = v.datadir.clone().unwrap_or_default();
    v.node_key.get_or_insert_with(|| datadir.join("node.key"));
    v.backup_dir
        .get_or_insert_with(|| datadir.join(super::DEFAULT_BACKUP_DIR));
    let (p2p_port, rpc_port) = default_ports(network);
    let listen = v
        .listen
        .get_or_insert_with(|| format!("0.0.0.0:{p2p_port}"))
        .clone();
    v.advertise
        .get_or_insert_with(|| match listen.parse::<SocketAddr>() {
            Ok(l) if !l.ip().is_unspecified() => l.to_string(),
            _ => String::new(),
        });
    let rpc_bind = v
        .rpc_bind
        .get_or_insert_with(|| format!("127.0.0.1:{rpc_port}"))
        .clone();
    if v.metrics_bind.is_none() {
        // An unparsable rpc_bind leaves this unset; validation reports rpc_bind itself.
        if let Ok(rpc) = rpc_bind.parse::<SocketAddr>() {
            v.metrics_bind = Some(format!("127.0.0.1:{}", rpc.port().saturating_add(1)));
        }
    }
    let limits = PeerLimits::default();
    v.peers.get_or_insert_with(Vec::new);
    v.max_inbound.get_or_insert(limits.max_inbound);
    v.max_outbound.get_or_insert(limits.max_outbound);
    v.max_inbound_per_ip
        .get_or_insert(limits.max_inbound_per_ip);
    v.max_inbound_per_subnet
        .get_or_insert(limits.max_inbound_per_subnet);
    v.fast_sync_after.get_or_insert(DEFAULT_FAST_SYNC_AFTER);
    v.rpc_auth.get_or_insert_with(Vec::new);
    v.rpc_rate_limit
        .get_or_insert(super::DEFAULT_RPC_RATE_LIMIT);
    v.explorer
        .get_or_insert_with(|| super::DEFAULT_EXPLORER.to_string());
    v.explorer_rate_limit
        .get_or_insert(crate::explorer::DEFAULT_RATE_LIMIT);
    v.min_free_disk_mb
        .get_or_insert(super::DEFAULT_MIN_FREE_DISK_MB);
    v.db_cache_mb
        .get_or_insert_with(|| crate::storage::cache::default_cache_bytes() >> 20);
    v.rpc_allow_ip.get_or_insert_with(Vec::new);
    v.log_level
        .get_or_insert_with(|| DEFAULT_LOG_LEVEL.to_string());
    v.log_format.get_or_insert(LogFormat::Text);
    v.rpc_whitelist.get_or_insert_with(Vec::new);
}

/// The first of the (colon-separated) directories systemd passes in `$STATE_DIRECTORY`.
pub fn state_directory(value: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let text = value?.into_string().ok()?;
    let first = text.split(':').next()?;
    (!first.is_empty()).then(|| PathBuf::from(first))
}
