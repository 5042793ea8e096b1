//! Wallet-side helpers: key files, building and signing transactions, spending a key's
//! outputs and reading an address's history through a node's RPC, checking a finality proof
//! offline, and the `timed wallet` command line.

pub mod args;
pub mod command;
pub mod connect;
pub mod history;
pub mod proof;
pub mod send;
