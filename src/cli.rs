//! The command line: `timed [run]` starts the node, `timed localnet` starts a local network,
//! `timed wallet` and `timed rpc` talk to a node, `timed keygen` makes a key file.

pub use crate::config::LogFormat;
use crate::config::{NodeConfig, Overrides};
use crate::types::Network;
use clap::{parser::ValueSource, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "timed",
    version,
    about = "TimeCoin full-node daemon: instant masternode finality and BFT blocks"
)]
pub struct Cli {
    /// Config file (TOML); its keys are overridden by flags and TIMED_* variables.
    #[arg(long, global = true, env = "TIMED_CONFIG")]
    pub config: Option<PathBuf>,

    /// Network to join: mainnet, testnet or localnet (default: the config file's, or mainnet).
    #[arg(long, global = true, env = "TIMED_NETWORK")]
    pub network: Option<Network>,

    /// Data directory (default: ~/.timecoin, or ~/.timecoin/<network> for other networks;
    /// $STATE_DIRECTORY under systemd).
    #[arg(long, global = true, env = "TIMED_DATADIR")]
    pub datadir: Option<PathBuf>,

    /// Log format: human-readable text (the default), or JSON for log shippers.
    #[arg(long, global = true, env = "TIMED_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Print the effective configuration, with where each value came from, and exit.
    #[arg(long)]
    pub print_config: bool,

    #[command(flatten)]
    pub node: NodeFlags,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Keys whose value came from a TIMED_* variable rather than a flag (filled by
    /// `parse_args`).
    #[arg(skip)]
    pub from_env: Vec<&'static str>,
}

/// The node's config keys as flags, each with its `TIMED_<KEY>` variable; a flag or variable
/// replaces the config file's value (a list whole).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Node options (each replaces the config file key of that name)")]
pub struct NodeFlags {
    /// The chain's genesis file (JSON).
    #[arg(long, env = "TIMED_GENESIS", value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// The node's key file (created if missing) [default: <datadir>/node.key].
    #[arg(long, env = "TIMED_NODE_KEY", value_name = "FILE")]
    pub node_key: Option<PathBuf>,
    /// Where to accept P2P connections; "" for outbound only [default: 0.0.0.0:<P2P port>].
    #[arg(long, env = "TIMED_LISTEN", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// The address announced to peers [default: --listen unless a wildcard].
    #[arg(long, env = "TIMED_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Peers to dial besides the masternodes, comma-separated.
    #[arg(
        long,
        env = "TIMED_PEERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub peers: Option<Vec<String>>,
    /// Most inbound P2P connections.
    #[arg(long, env = "TIMED_MAX_INBOUND", value_name = "N")]
    pub max_inbound: Option<usize>,
    /// Most outbound P2P connections.
    #[arg(long, env = "TIMED_MAX_OUTBOUND", value_name = "N")]
    pub max_outbound: Option<usize>,
    /// Most inbound P2P connections from one IP address.
    #[arg(long, env = "TIMED_MAX_INBOUND_PER_IP", value_name = "N")]
    pub max_inbound_per_ip: Option<usize>,
    /// Most inbound P2P connections from one /24 (IPv4) or /64 (IPv6) subnet.
    #[arg(long, env = "TIMED_MAX_INBOUND_PER_SUBNET", value_name = "N")]
    pub max_inbound_per_subnet: Option<usize>,
    /// Blocks behind before a new node fast-syncs; 0 never does.
    #[arg(long, env = "TIMED_FAST_SYNC_AFTER", value_name = "BLOCKS")]
    pub fast_sync_after: Option<u64>,
    /// Where the JSON-RPC server listens [default: 127.0.0.1:<RPC port>].
    #[arg(long, env = "TIMED_RPC_BIND", value_name = "IP:PORT")]
    pub rpc_bind: Option<String>,
    /// RPC user accepted besides the cookie (with --rpc-password).
    #[arg(long, env = "TIMED_RPC_USER", value_name = "USER")]
    pub rpc_user: Option<String>,
    /// RPC password (prefer TIMED_RPC_PASSWORD or the config file: flags show in `ps`).
    #[arg(
        long,
        env = "TIMED_RPC_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub rpc_password: Option<String>,
    /// Salted RPC credentials, user:salt$hash (Bitcoin's rpcauth.py), comma-separated.
    #[arg(
        long,
        env = "TIMED_RPC_AUTH",
        value_name = "ENTRY,...",
        value_delimiter = ','
    )]
    pub rpc_auth: Option<Vec<String>>,
    /// Remote RPC clients allowed besides loopback (IPs or CIDR ranges), comma-separated.
    #[arg(
        long,
        env = "TIMED_RPC_ALLOW_IP",
        value_name = "IP,...",
        value_delimiter = ','
    )]
    pub rpc_allow_ip: Option<Vec<String>>,
    /// Where /metrics, /health and /ready listen; "" turns them off [default: RPC port + 1].
    #[arg(long, env = "TIMED_METRICS_BIND", value_name = "IP:PORT")]
    pub metrics_bind: Option<String>,
    /// Most RPC requests per second from one client address (twice that in a burst); 0 for
    /// no limit [default: 2000].
    #[arg(long, env = "TIMED_RPC_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rpc_rate_limit: Option<u32>,
    /// The block explorer: metrics (under /explorer/ on the metrics port), off, or an
    /// IP:PORT of its own [default: metrics].
    #[arg(long, env = "TIMED_EXPLORER", value_name = "metrics|off|IP:PORT")]
    pub explorer: Option<String>,
    /// Most explorer requests per second from one client address (twice that in a burst); 0
    /// for no limit [default: 50].
    #[arg(long, env = "TIMED_EXPLORER_RATE_LIMIT", value_name = "PER_SECOND")]
    pub explorer_rate_limit: Option<u32>,
    /// Free space (MiB) kept on the data directory's disk; below it the node stops taking
    /// new work until space returns; 0 turns the guard off [default: 256].
    #[arg(long, env = "TIMED_MIN_FREE_DISK_MB", value_name = "MIB")]
    pub min_free_disk_mb: Option<u64>,
    /// Memory (MiB) for the database's page cache, like bitcoind's -dbcache [default: an
    /// eighth of the machine's memory, 64 MiB to 2 GiB].
    #[arg(long, env = "TIMED_DB_CACHE_MB", value_name = "MIB")]
    pub db_cache_mb: Option<u64>,
    /// Log filter in RUST_LOG syntax, such as info or timed::network=debug,info (RUST_LOG,
    /// when set, wins) [default: info].
    #[arg(long, env = "TIMED_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// The only directory RPC `backup` and `dumptxoutset` write into [default:
    /// <datadir>/backups].
    #[arg(long, env = "TIMED_BACKUP_DIR", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// RPC methods a user may call, user:method,method (bitcoind's rpcwhitelist); repeat the
    /// flag or separate entries with ';'.
    #[arg(
        long,
        env = "TIMED_RPC_WHITELIST",
        value_name = "USER:METHOD,...",
        value_delimiter = ';'
    )]
    pub rpc_whitelist: Option<Vec<String>>,
    /// Whether users without an rpc_whitelist entry may call nothing (bitcoind's
    /// rpcwhitelistdefault) [default: true if any rpc_whitelist entry is set].
    #[arg(long, env = "TIMED_RPC_WHITELIST_DEFAULT", value_name = "BOOL")]
    pub rpc_whitelist_default: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (the default when no command is given).
    Run,
    /// Start a local network of N masternodes on this machine, with a funded faucet.
    Localnet(LocalnetArgs),
    /// Keys, balances, outputs, history and payments, through a node's RPC.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Call a node's JSON-RPC method and print the result, like bitcoin-cli.
    Rpc(RpcCallArgs),
    /// Load generator: submit transfers at target rates to a localnet and report finalized
    /// tx/s and finality latency percentiles.
    Bench(BenchArgs),
    /// Create a new secret key file (owner-only permissions) and print its address.
    Keygen {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a node key file's public keys as a genesis file's masternode entry names them
    /// (operator key, BLS key, and the BLS key's proof of possession), as JSON.
    MasternodeKeys {
        /// The node's key file (`<datadir>/node.key`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Back up the whole database to a new file, consistent at one height: through the
    /// running node's RPC, or directly when the node is stopped.
    Backup(crate::backup::command::BackupArgs),
    /// Restore a backup into a data directory (--datadir) that holds no database yet.
    Restore(crate::backup::command::RestoreArgs),
    /// Export or import the UTXO set at a certified height, verified from genesis.
    #[command(subcommand)]
    Snapshot(crate::backup::command::SnapshotCommand),
    /// Print the shell completion script for every command and flag (the Debian package
    /// installs the bash, zsh and fish ones).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page timed(1) as roff (`timed man | man -l -`).
    Man,
}

/// Exit status of a node that refuses to start for its configuration (sysexits' EX_CONFIG):
/// the systemd unit does not restart on it (`RestartPreventExitStatus=`), so a node
/// enabled before it is configured fails once, with the reason in the journal.
pub const EXIT_CONFIG: u8 = 78;

/// Writes `shell`'s completion script for `timed`, generated from these definitions.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "timed", out);
}

/// Writes the man page timed(1), generated from these definitions.
pub fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

#[derive(Debug, Clone, clap::Args)]
pub struct LocalnetArgs {
    /// How many masternodes to run (default 4 for a new network; an existing one keeps its own).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: Option<u16>,
    /// Where the nodes' keys, configs, databases and logs live.
    #[arg(long, default_value = "localnet")]
    pub dir: PathBuf,
    /// First port; node i uses P2P port base + 10·i and RPC port base + 10·i + 1
    /// (default 24200 for a new network; an existing one keeps its own).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1024..))]
    pub base_port: Option<u16>,
    /// Time between blocks, such as 2s or 500ms (only used when creating the network).
    #[arg(long, default_value = "2s", value_parser = parse_duration_ms)]
    pub block_interval: u64,
    /// Masternodes from which layer 1 runs the slot engine (rotating aggregators, one BLS
    /// certificate per batch) instead of all-to-all votes. The default, 64, leaves a small
    /// localnet on the all-to-all engine; 1 runs the slot engine at any size. Only used when
    /// creating the network.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub slot_engine_voters: Option<u64>,
    /// Delete the existing local network in --dir and start a new chain.
    #[arg(long)]
    pub reset: bool,
}

pub use crate::wallet::args::{OwnerArgs, RpcArgs, WalletCommand};

/// `timed rpc`: bitcoin-cli's job.
#[derive(Debug, Clone, clap::Args)]
pub struct RpcCallArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Parameters are `name=value` pairs, sent as a JSON object (bitcoin-cli's `-named`,
    /// which is accepted too).
    #[arg(long)]
    pub named: bool,
    /// The method, then its parameters; each is sent as JSON if it parses as JSON (`5`,
    /// `true`, `[1,2]`, `"quoted"`), else as a string.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "METHOD [PARAMS]"
    )]
    pub call: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Use the running localnet described by DIR/localnet.json.
    #[arg(long, conflicts_with = "start")]
    pub localnet: Option<PathBuf>,
    /// Start a fresh localnet of this many nodes in a temporary directory for the run.
    #[arg(long)]
    pub start: Option<u16>,
    /// Offered rates to try, in transactions per second.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
    pub rates: Vec<u32>,
    /// How long to offer each rate, such as 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration_ms)]
    pub duration: u64,
    /// Transfers per submit request: 1 is one `sendrawtransaction` per request; more sends
    /// them in JSON-RPC batches. Several sizes (`1,50`) run each rate once per size.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// A soak: offer the one rate of `--rates` for this long (such as 60m or 24h), spending
    /// the same coins over and over, and sample the nodes every `--sample-every`.
    #[arg(long, value_parser = parse_soak_ms)]
    pub soak: Option<u64>,
    /// In a soak, the window each row of figures covers (latency percentiles, rates) and how
    /// often each node's memory, open files, database size and CPU are sampled.
    #[arg(long, default_value = "60s", value_parser = parse_duration_ms, requires = "soak")]
    pub sample_every: u64,
    /// In a soak, also write each window's row to this CSV file (`benches/soak/plot.py`
    /// draws it).
    #[arg(long, requires = "soak")]
    pub csv: Option<PathBuf>,
}

/// A soak's length: `30m`, `100m`, `6h` (up to a week), or anything `parse_duration_ms`
/// takes.
pub fn parse_soak_ms(text: &str) -> Result<u64, String> {
    const WEEK_MINUTES: u64 = 7 * 24 * 60;
    let t = text.trim();
    let (number, minutes_each) = match (t.strip_suffix('h'), t.strip_suffix('m')) {
        (Some(hours), _) => (hours, 60),
        (None, Some(minutes)) if !t.ends_with("ms") => (minutes, 1),
        _ => return parse_duration_ms(text),
    };
    match number.trim().parse::<u64>() {
        Ok(n) if n > 0 && n.saturating_mul(minutes_each) <= WEEK_MINUTES => {
            Ok(n * minutes_each * 60_000)
        }
        _ => Err(format!(
            "{text:?}: a soak lasts from 1m to {WEEK_MINUTES}m (168h)"
        )),
    }
}

/// Parses `2s`, `500ms`, `1m` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(format!(
            "{text:?}: expected a duration such as 2s, 500ms or 1m"
        ));
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number before the unit"))?;
    match n.checked_mul(mult) {
        Some(ms) if ms > 0 && ms <= 3_600_000 => Ok(ms),
        _ => Err(format!("{text:?}: must be between 1ms and 1h")),
    }
}

impl Cli {
    /// Parses the process's arguments (exiting with clap's message on a bad one), noting
    /// which values came from `TIMED_*` variables.
    pub fn parse_args() -> Cli {
        let matches = Cli::command().get_matches();
        Cli::from_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name), as `parse_args` does.
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::from_matches(&Cli::command().try_get_matches_from(args)?)
    }

    fn from_matches(matches: &ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = Cli::from_arg_matches(matches)?;
        cli.from_env = std::iter::once("config")
            .chain(crate::config::KEYS.iter().copied())
            .filter(|key| {
                matches!(
                    matches.try_get_raw(key).map(|_| matches.value_source(key)),
                    Ok(Some(ValueSource::EnvVariable))
                )
            })
            .collect();
        Ok(cli)
    }

    /// What the flags (and their environment variables) say about the configuration.
    pub fn overrides(&self) -> Overrides {
        // An empty entry (`--peers ""`) gives an empty list, replacing the file's.
        let list = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|items| items.iter().filter(|s| !s.is_empty()).cloned().collect())
        };
        let n = &self.node;
        Overrides {
            config: self.config.clone(),
            keys: NodeConfig {
                network: self.network,
                datadir: self.datadir.clone(),
                genesis: n.genesis.clone(),
                node_key: n.node_key.clone(),
                listen: n.listen.clone(),
                advertise: n.advertise.clone(),
                rpc_bind: n.rpc_bind.clone(),
                peers: list(&n.peers),
                max_inbound: n.max_inbound,
                max_outbound: n.max_outbound,
                max_inbound_per_ip: n.max_inbound_per_ip,
                max_inbound_per_subnet: n.max_inbound_per_subnet,
                fast_sync_after: n.fast_sync_after,
                rpc_user: n.rpc_user.clone(),
                rpc_password: n.rpc_password.clone(),
                rpc_auth: list(&n.rpc_auth),
                rpc_allow_ip: list(&n.rpc_allow_ip),
                metrics_bind: n.metrics_bind.clone(),
                rpc_rate_limit: n.rpc_rate_limit,
                explorer: n.explorer.clone(),
                explorer_rate_limit: n.explorer_rate_limit,
                min_free_disk_mb: n.min_free_disk_mb,
                db_cache_mb: n.db_cache_mb,
                log_level: n.log_level.clone(),
                log_format: self.log_format,
                backup_dir: n.backup_dir.clone(),
                rpc_whitelist: list(&n.rpc_whitelist),
                rpc_whitelist_default: n.rpc_whitelist_default,
            },
            from_env: self.from_env.clone(),
            state_directory: crate::config::state_directory(std::env::var_os("STATE_DIRECTORY")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_flags_become_overrides() {
        let cli = Cli::try_parse_args_from([
            "timed",
            "--network",
            "testnet",
            "--listen",
            "",
            "--peers",
            "127.0.0.1:1,127.0.0.1:2",
            "--rpc-allow-ip",
            "",
            "--max-inbound",
            "3",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--print-config",
        ])
        .unwrap();
        assert!(cli.print_config);
        let o = cli.overrides();
        assert_eq!(o.keys.network, Some(Network::Testnet));
        assert_eq!(o.keys.listen.as_deref(), Some(""));
        assert_eq!(
            o.keys.peers,
            Some(vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()])
        );
        // An empty entry clears the list (it replaces the file's).
        assert_eq!(o.keys.rpc_allow_ip, Some(vec![]));
        assert_eq!(o.keys.max_inbound, Some(3));
        assert_eq!(o.keys.log_level.as_deref(), Some("debug"));
        assert_eq!(o.keys.log_format, Some(LogFormat::Json));
        for key in ["network", "listen", "peers", "max_inbound"] {
            assert!(!o.from_env.contains(&key), "{key} came from a flag");
        }
        // A flag for every config key.
        for key in crate::config::KEYS {
            let flag = format!("--{}", key.replace('_', "-"));
            let value = match *key {
                "network" => "localnet",
                "log_format" => "text",
                "max_inbound"
                | "max_outbound"
                | "max_inbound_per_ip"
                | "max_inbound_per_subnet"
                | "fast_sync_after"
                | "rpc_rate_limit"
                | "explorer_rate_limit"
                | "min_free_disk_mb" => "1",
                "db_cache_mb" => "64",
                "rpc_whitelist_default" => "true",
                _ => "x",
            };
            let cli = Cli::try_parse_args_from(["timed", flag.as_str(), value])
                .unwrap_or_else(|e| panic!("{flag}: {e}"));
            let keys = serde_json::to_value(cli.overrides().keys).unwrap();
            assert!(!keys[key].is_null(), "{flag} does not set `{key}`");
        }
        let err = Cli::try_parse_args_from(["timed", "--max-inbound", "ten"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--max-inbound") && err.contains("ten"),
            "{err}"
        );
    }

    #[test]
    fn completions_and_man_page_cover_the_commands() {
        let mut bash = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        for word in ["wallet", "completions", "--rpc-bind", "register-masternode"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
        let mut fish = Vec::new();
        write_completions(clap_complete::Shell::Fish, &mut fish);
        assert!(String::from_utf8(fish).unwrap().contains("-l metrics-bind"));
        let mut man = Vec::new();
        write_man_page(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH timed 1"),
            "{man}"
        );
        for word in ["localnet", "snapshot", "TIMED_RPC_BIND"] {
            assert!(man.contains(word), "man page lacks {word}");
        }
        let cli = Cli::try_parse_args_from(["timed", "completions", "zsh"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Completions {
                shell: clap_complete::Shell::Zsh
            })
        ));
        assert!(Cli::try_parse_args_from(["timed", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("2h").is_err());
        assert!(parse_duration_ms("fast").is_err());
        assert_eq!(parse_soak_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_soak_ms("90s"), Ok(90_000));
        assert!(parse_soak_ms("0h").is_err());
        assert!(parse_soak_ms("169h").is_err());
        assert_eq!(parse_soak_ms("100m"), Ok(6_000_000));
        assert_eq!(parse_soak_ms("250ms"), Ok(250));
        assert!(parse_soak_ms("0m").is_err());
        assert!(parse_soak_ms("10081m").is_err());
    }
}
