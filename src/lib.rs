//! timed: the TimeCoin full-node daemon.
//!
//! The map, one line per module:

/// Amounts, hashes, keys, addresses, transactions, blocks, votes and their canonical codec.
pub mod types;
