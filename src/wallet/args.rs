//! The wallet's command line (`timed wallet ...`) and how any client command reaches a node's
//! RPC: defined here, beside the code that runs them, so the wallet needs nothing of the
//! daemon's command line; `cli` puts them into `timed`'s.

use clap::Subcommand;
use std::path::PathBuf;

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
    /// Check a layer-1 finality proof offline, with no node: that a quorum of the masternode
    /// set signed the batch holding the transaction. Prints the set's hash, to compare with
    /// the nextmasternodesethash of a block header you trust (getblockheader).
    VerifyFinality {
        /// The proof: its hex, or a file holding it or the JSON gettransactionfinality printed
        /// (its certificate.slot.proof, present under the slot engine until a block confirms
        /// the transaction).
        #[arg(long, value_name = "HEX|FILE")]
        proof: String,
        /// A file with the JSON masternodelist printed for the set the certificate names.
        #[arg(long, value_name = "FILE")]
        masternodes: PathBuf,
    },
    /// Register a masternode: names a collateral output of exactly the tier's amount owned by
    /// --key (already confirmed in a block), and the operator (node) key that will vote, which
    /// signs the registration too.
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
        /// The operator's node key file (its public key is registered; it signs its consent).
        #[arg(long)]
        operator_key: PathBuf,
        /// The masternode's public P2P address, `host:port`.
        #[arg(long)]
        p2p_addr: String,
        #[arg(long)]
        wait: bool,
    },
}
