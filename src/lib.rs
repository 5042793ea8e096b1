//! timed: the TimeCoin full-node daemon.
//!
//! The map, one line per module:

/// Backups of the database and UTXO snapshot files: writing, verifying, restoring.
pub mod backup;
/// The command line.
pub mod cli;
/// The JSON-RPC client the node's own tools reach a node with.
pub mod client;
/// The node's one wall clock (and its test-only offset).
pub mod clock;
/// Configuration: the config file, the genesis file, precedence and validation.
pub mod config;
/// The masternode set and the two consensus engines.
pub mod consensus;
/// The running node's shared views and handles (`NodeContext`), which `node` builds.
pub mod context;
/// The block explorer: a live, read-only web page of the chain, served by the node.
pub mod explorer;
/// Fuzz target bodies, shared by the cargo-fuzz crate (`fuzz/`) and the corpus test.
pub mod fuzzing;
/// The UTXO manager: output states, set commitment, address index, block application.
pub mod ledger;
/// `timed localnet`: N masternodes on this machine with one command.
pub mod localnet;
/// Logs: text or JSON, levels per module, journald without duplicate timestamps.
pub mod logging;
/// The transaction pool: verification, fee policy, limits, eviction, conflicts.
pub mod mempool;
/// Prometheus metrics and the `/health` and `/ready` endpoints on their own port.
pub mod metrics;
/// The P2P network: framing, handshake, peers, gossip, sync routing, connection manager.
pub mod network;
/// Wiring of the parts into a running node, and shutdown.
pub mod node;
/// The JSON-RPC server (Bitcoin-compatible) and a small client.
pub mod rpc;
/// The RPC API's vocabulary: its methods and who may call them.
pub mod rpc_api;
/// `timed rpc`: call any RPC method from the shell, like bitcoin-cli.
pub mod rpc_cli;
/// The sled database: tree layout, typed reads, atomic batches, cache sizing.
pub mod storage;
/// Upkeep of the in-memory tables shared between tasks.
pub mod tables;
/// Amounts, hashes, keys, addresses, transactions, blocks, votes and their canonical codec.
pub mod types;
/// `timed wallet`: key files, signing, balances, outputs, history and payments over RPC.
pub mod wallet;
