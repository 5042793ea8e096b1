//! timed: the TimeCoin full-node daemon.
//!
//! The map, one line per module:

/// Amounts, hashes, keys, addresses, transactions, blocks, votes and their canonical codec.
pub mod types;
/// The sled database: tree layout, typed reads, atomic batches, cache sizing.
pub mod storage;
/// The UTXO manager: output states, set commitment, address index, block application.
pub mod ledger;
/// The transaction pool: verification, fee policy, limits, eviction, conflicts.
pub mod mempool;
/// The command line.
pub mod cli;
/// Wiring of the parts into a running node, and shutdown.
pub mod node;
/// Key files.
pub mod wallet;
/// The masternode set and the two consensus engines.
pub mod consensus;
