//! The command line: `timed [run]` starts the node, `timed keygen` makes a key file.

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
    /// Network to join.
    #[arg(long, global = true, env = "TIMED_NETWORK", default_value = "mainnet")]
    pub network: Network,

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
    /// Create a new secret key file (owner-only permissions) and print its address.
    Keygen {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
}

impl Cli {
    /// The data directory, defaulting per network under the user's home.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.datadir {
            return dir.clone();
        }
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".timecoin");
        match self.network {
            Network::Mainnet => base,
            other => base.join(other.name()),
        }
    }
}
