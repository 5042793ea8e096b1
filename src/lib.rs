//! timed: the TimeCoin full-node daemon.
//!
//! The map, one line per module:

/// The command line.
pub mod cli;
/// The masternode set and the two consensus engines.
pub mod consensus;
/// The UTXO manager: output states, set commitment, address index, block application.
pub mod ledger;
/// The transaction pool: verification, fee policy, limits, eviction, conflicts.
pub mod mempool;
/// The P2P network: framing and the handshake so far.
pub mod network;
/// Wiring of the parts into a running node, and shutdown.
pub mod node;
/// The sled database: tree layout, typed reads, atomic batches, cache sizing.
pub mod storage;
/// Amounts, hashes, keys, addresses, transactions, blocks, votes and their canonical codec.
pub mod types;
/// Key files.
pub mod wallet;
