//! The command line: `timed [run]` starts the node, `timed localnet` starts a local network,
//! `timed wallet` and `timed rpc` talk to a node, `timed keygen` makes a key file.

use crate::config::Overrides;
use crate::types::Network;
use clap::{Parser, Subcommand, ValueEnum};
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

    /// Data directory (default: ~/.timecoin, or ~/.timecoin/<network> for other networks).
    #[arg(long, global = true, env = "TIMED_DATADIR")]
    pub datadir: Option<PathBuf>,

    /// Log format: human-readable text, or JSON for log shippers. Levels come from RUST_LOG.
    #[arg(long, global = true, env = "TIMED_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Back up the whole database to a new file, consistent at one height: through the
    /// running node's RPC, or directly when the node is stopped.
    Backup(crate::backup::command::BackupArgs),
    /// Restore a backup into a data directory (--datadir) that holds no database yet.
    Restore(crate::backup::command::RestoreArgs),
    /// Export or import the UTXO set at a certified height, verified from genesis.
    #[command(subcommand)]
    Snapshot(crate::backup::command::SnapshotCommand),
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
    /// Delete the existing local network in --dir and start a new chain.
    #[arg(long)]
    pub reset: bool,
}

/// How to reach a node's RPC. Without flags: the node of `--config`, or of `--network` on
/// this machine, with the cookie of its data directory.
#[derive(Debug, Clone, clap::Args)]
pub struct RpcArgs {
    /// The node's JSON-RPC URL [default: the config file's rpc_bind, else
    /// http://127.0.0.1:<the network's RPC port>: 24001 mainnet, 24101 testnet, 24201 localnet].
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// The node's cookie file [default: <datadir>/.cookie, datadir from --datadir, the config
    /// file or the network].
    #[arg(long, value_name = "FILE")]
    pub rpc_cookie: Option<PathBuf>,
    /// A user configured on the node (`rpc_user`), instead of the cookie.
    #[arg(long, env = "TIMED_RPC_USER")]
    pub rpc_user: Option<String>,
    /// The password of --rpc-user.
    #[arg(long, env = "TIMED_RPC_PASSWORD", hide_env_values = true)]
    pub rpc_password: Option<String>,
}

/// Whose coins: an address, or the key file that owns them.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct OwnerArgs {
    /// The address.
    #[arg(long)]
    pub address: Option<String>,
    /// A key file whose address to use.
    #[arg(long)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a new key file (owner-only permissions, never overwritten) and print its address
    /// on --network (default mainnet).
    New {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's address on --network, or else on the node's network.
    Address {
        #[command(flatten)]
        rpc: RpcArgs,
        #[arg(long)]
        key: PathBuf,
    },
    /// Show what an address holds.
    Balance {
        #[command(flatten)]
        rpc: RpcArgs,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// List an address's unspent outputs and their state (confirmed, final or being spent).
    Utxos {
        #[command(flatten)]
        rpc: RpcArgs,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// Pay an address from a key's outputs.
    Send {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Key file that owns the coins.
        #[arg(long)]
        key: PathBuf,
        /// Destination address.
        #[arg(long)]
        to: String,
        /// Amount in TIME, such as 1.5.
        #[arg(long)]
        amount: String,
        /// Fee rate in atoms per byte (the node's minimum is 1).
        #[arg(long, default_value_t = crate::wallet::send::DEFAULT_FEE_RATE,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        fee_rate: u64,
        /// Return only once the transfer is final, and print how long that took.
        #[arg(long)]
        wait: bool,
    },
    /// List an address's transactions, newest last, with the net amount each moved.
    History {
        #[command(flatten)]
        rpc: RpcArgs,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Show only the last N transactions (0: all).
        #[arg(long, default_value_t = 100)]
        last: usize,
    },
    /// Register a masternode: names a collateral output of exactly the tier's amount owned by
    /// --key, and the operator (node) key that will vote.
    RegisterMasternode {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Key file owning the collateral (also pays the fee).
        #[arg(long)]
        key: PathBuf,
        /// bronze (1,000 TIME), silver (10,000) or gold (100,000).
        #[arg(long)]
        tier: crate::types::Tier,
        /// The collateral output, `txid:vout`.
        #[arg(long)]
        collateral: String,
        /// The operator's node key file (its public key is registered).
        #[arg(long)]
        operator_key: PathBuf,
        /// The masternode's public P2P address, `host:port`.
        #[arg(long)]
        p2p_addr: String,
        #[arg(long)]
        wait: bool,
    },
}

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
    /// What the flags (and their environment variables) say about the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            network: self.network,
            datadir: self.datadir.clone(),
            config: self.config.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("2h").is_err());
        assert!(parse_duration_ms("fast").is_err());
    }
}
